#![allow(unreachable_pub)]
//! Helpers shared by the integration tests: the shared data folder and the binary.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// `../shared/data` beside the repository, or `None` (with a note) when absent.
pub fn shared_data() -> Option<PathBuf> {
    let p = std::env::var_os("HAVEN_SHARED_DATA").map(PathBuf::from).unwrap_or_else(|| repo().join("../shared/data"));
    if p.join("lists").exists() {
        Some(p)
    } else {
        eprintln!("skipping: the shared lists are not at {} (set HAVEN_SHARED_DATA to their folder)", p.display());
        None
    }
}

pub fn haven() -> Command {
    Command::new(env!("CARGO_BIN_EXE_haven"))
}

/// Runs haven with `args`, feeding `stdin`, and returns its output.
pub fn run(args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut child = haven()
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("haven runs");
    if let Some(input) = stdin {
        let mut s = child.stdin.take().unwrap();
        let input = input.to_string();
        std::thread::spawn(move || {
            let _ = s.write_all(input.as_bytes());
        });
    }
    child.wait_with_output().unwrap()
}

pub fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The demo configuration, copied into a temporary folder with its list paths
/// pointing at the shared data, and its data folder inside the temporary folder.
pub fn demo_config(dir: &Path, shared: &Path) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("examples/haven.toml")).unwrap();
    let text = text.replace("../../shared/data/lists", &shared.join("lists").display().to_string()).replace("dir = \"../haven-data\"", "dir = \"data\"");
    std::fs::copy(repo().join("examples/users.csv"), dir.join("users.csv")).unwrap();
    // The demo's stand-in lists of test entries (the illegal-content ones may not be missing).
    std::fs::create_dir_all(dir.join("lists")).unwrap();
    for f in std::fs::read_dir(repo().join("examples/lists")).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, dir.join("lists").join(f.file_name().unwrap())).unwrap();
    }
    let path = dir.join("haven.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A child process, killed when the test ends.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port free for both TCP and UDP now (a DNS listener takes
/// both), never handed out twice in this test binary, so tests running side
/// by side cannot be given the same one.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if !given.contains(&port) && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
}

/// Waits (up to three minutes: a loaded 2-core machine building a debug
/// binary's list index is slow, and this is readiness, not a timing) until
/// something listens on `addr`.
pub fn wait_ready(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(180);
    while Instant::now() < deadline {
        if TcpStream::connect(addr).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("haven never listened on {addr}");
}

/// `haven serve` (or any long-running subcommand) with its log kept in
/// `log`, so a start that fails says why instead of only timing out.
pub fn spawn_logged(cmd: &mut Command, log: &Path) -> Running {
    let file = std::fs::File::create(log).unwrap();
    Running(cmd.stdout(Stdio::null()).stderr(file).spawn().unwrap())
}

/// Like [`wait_ready`], for a child started by [`spawn_logged`]: if it exits
/// first, or never listens, the panic carries its status and its log's end.
pub fn wait_serving(run: &mut Running, addr: SocketAddr, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(180);
    let tail = || {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    };
    while Instant::now() < deadline {
        if TcpStream::connect(addr).is_ok() {
            return;
        }
        if let Ok(Some(status)) = run.0.try_wait() {
            panic!("haven exited ({status}) before listening on {addr}; its log ends:\n{}", tail());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("haven never listened on {addr} in 180 s; its log ends:\n{}", tail());
}

/// A one-answer upstream resolver on loopback: every A question gets
/// 192.0.2.1 (rcode 0), so an allowed name is told apart from a blocked one.
pub fn upstream() -> SocketAddr {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = s.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            let q = &buf[..n];
            // The header and question, made a response with one answer.
            let qend = 12 + q[12..].iter().position(|&b| b == 0).unwrap_or(0) + 5;
            let mut r = q[..qend.min(n)].to_vec();
            r[2] = 0x81;
            r[3] = 0x80;
            r[6..12].copy_from_slice(&[0, 1, 0, 0, 0, 0]);
            r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
            let _ = s.send_to(&r, from);
        }
    });
    addr
}
