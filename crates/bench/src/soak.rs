//! A soak: `haven serve` as a process under DNS, proxy and ingest load at
//! once. First a short run at full speed finds the peak each load reaches
//! beside the others; then the same mix runs at a fraction of that peak for
//! the given minutes, sampling the server's resident memory and counting
//! every error (a timeout, a refused connection, an unexpected answer).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::process::{Running, free_port, haven_binary};

/// A DNS upstream answering every A question with 192.0.2.1 (TTL 0, so the cache keeps asking).
fn upstream() -> Result<u16> {
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    let port = sock.local_addr()?.port();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            if n < 12 {
                continue;
            }
            // The question only (EDNS and anything after it dropped), then one answer.
            let mut end = 12;
            while end < n && buf[end] != 0 {
                end += usize::from(buf[end]) + 1;
            }
            if end + 5 > n {
                continue;
            }
            let mut a = buf[..end + 5].to_vec();
            a[2] = 0x81;
            a[3] = 0x80;
            a[6..12].copy_from_slice(&[0, 1, 0, 0, 0, 0]);
            a.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 192, 0, 2, 1]);
            let _ = sock.send_to(&a, from);
        }
    });
    Ok(port)
}

/// An origin answering every request with a short page, keep-alive.
fn origin() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let port = l.local_addr()?.port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            std::thread::spawn(move || {
                let Ok(mut w) = s.try_clone() else { return };
                let mut r = BufReader::new(s);
                loop {
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    if w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello").is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(port)
}

fn question(id: u16, name: &str) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// Counts for one kind of load.
#[derive(Default)]
struct Counts {
    done: AtomicU64,
    errors: AtomicU64,
}

/// Paces a loop to `per_second` (no pacing when zero).
struct Pace {
    every: Option<Duration>,
    next: Instant,
}

impl Pace {
    fn new(per_second: f64) -> Self {
        Self { every: (per_second > 0.0).then(|| Duration::from_secs_f64(1.0 / per_second)), next: Instant::now() }
    }

    fn wait(&mut self) {
        if let Some(e) = self.every {
            self.next += e;
            let now = Instant::now();
            if self.next > now {
                std::thread::sleep(self.next - now);
            } else if now - self.next > Duration::from_secs(1) {
                self.next = now;
            }
        }
    }
}

fn dns_load(port: u16, rate: f64, stop: &AtomicBool, c: &Counts) {
    let Ok(sock) = UdpSocket::bind("127.0.0.1:0") else { return };
    let _ = sock.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 1500];
    let mut pace = Pace::new(rate);
    let mut i: u32 = 0;
    while !stop.load(Ordering::Relaxed) {
        i = i.wrapping_add(1);
        let id = (i & 0xffff) as u16;
        // Half blocked (answered from the index), half allowed (the cache or the upstream).
        let name = if i.is_multiple_of(2) { format!("ads{}.blocked.test", i % 1000) } else { format!("www{}.allowed.test", i % 5000) };
        let ok =
            sock.send_to(&question(id, &name), ("127.0.0.1", port)).is_ok() && matches!(sock.recv(&mut buf), Ok(n) if n >= 12 && buf[..2] == id.to_be_bytes());
        c.done.fetch_add(1, Ordering::Relaxed);
        if !ok {
            c.errors.fetch_add(1, Ordering::Relaxed);
        }
        pace.wait();
    }
}

fn proxy_load(port: u16, origin: u16, rate: f64, stop: &AtomicBool, c: &Counts) {
    let mut pace = Pace::new(rate);
    let mut conn: Option<(TcpStream, BufReader<TcpStream>)> = None;
    let mut i: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        if conn.is_none() {
            conn = TcpStream::connect(("127.0.0.1", port)).ok().and_then(|s| {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                Some((s.try_clone().ok()?, BufReader::new(s)))
            });
        }
        let url = if i.is_multiple_of(4) { "http://www.bet365.test/".to_string() } else { format!("http://ok.test:{origin}/page{}", i % 100) };
        let host = url.split('/').nth(2).unwrap_or("x").to_string();
        let ok = conn.as_mut().is_some_and(|(w, r)| {
            if w.write_all(format!("GET {url} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes()).is_err() {
                return false;
            }
            let mut status = String::new();
            if r.read_line(&mut status).unwrap_or(0) == 0 {
                return false;
            }
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    return false;
                }
                if line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; len];
            r.read_exact(&mut body).is_ok() && (status.contains(" 200 ") || status.contains(" 403 "))
        });
        if !ok {
            conn = None;
            c.errors.fetch_add(1, Ordering::Relaxed);
        }
        c.done.fetch_add(1, Ordering::Relaxed);
        pace.wait();
    }
}

fn ingest_load(port: u16, token: &str, rate: f64, stop: &AtomicBool, c: &Counts) {
    let texts = ["see you at football practice", "nobody likes you, everyone hates you", "can you send me the homework", "ur so dumb lol", "i hate mondays"];
    let mut pace = Pace::new(rate);
    let mut i: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let body = serde_json::json!({ "person": format!("pupil{}", i % 2000), "text": texts[(i % 5) as usize], "source": "chat" }).to_string();
        let req = format!(
            "POST /api/v1/events HTTP/1.1\r\nHost: haven\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let ok = TcpStream::connect(("127.0.0.1", port)).is_ok_and(|mut s| {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let mut out = String::new();
            s.write_all(req.as_bytes()).is_ok() && s.read_to_string(&mut out).is_ok() && out.starts_with("HTTP/1.1 201")
        });
        c.done.fetch_add(1, Ordering::Relaxed);
        if !ok {
            c.errors.fetch_add(1, Ordering::Relaxed);
        }
        pace.wait();
    }
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("VmRSS:").and_then(|v| v.split_whitespace().next()?.parse().ok())))
        .unwrap_or(0)
}

/// One phase: each load on its threads at its rate per second (0: as fast as it goes), for `secs`.
fn phase(ports: (u16, u16, u16, u16), token: &str, rates: [f64; 3], secs: u64, pid: u32, sample: bool) -> ([u64; 3], [u64; 3], Vec<(u64, u64)>) {
    let (dns, proxy, web, origin) = ports;
    let stop = Arc::new(AtomicBool::new(false));
    let counts: [Arc<Counts>; 3] = Default::default();
    let threads = [2usize, 2, 2];
    let mut handles = Vec::new();
    for k in 0..3 {
        for _ in 0..threads[k] {
            let (stop, c, token) = (stop.clone(), counts[k].clone(), token.to_string());
            let rate = rates[k] / threads[k] as f64;
            handles.push(std::thread::spawn(move || match k {
                0 => dns_load(dns, rate, &stop, &c),
                1 => proxy_load(proxy, origin, rate, &stop, &c),
                _ => ingest_load(web, &token, rate, &stop, &c),
            }));
        }
    }
    let start = Instant::now();
    let mut samples = Vec::new();
    while start.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_secs(if sample { 10 } else { 1 }).min(Duration::from_secs(secs)));
        if sample {
            samples.push((start.elapsed().as_secs(), rss_kb(pid)));
        }
    }
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
    let done = [0, 1, 2].map(|k| counts[k].done.load(Ordering::Relaxed));
    let errors = [0, 1, 2].map(|k| counts[k].errors.load(Ordering::Relaxed));
    (done, errors, samples)
}

/// The soak: `peak_secs` at full speed, then `minutes` at `fraction` of that peak.
pub(crate) fn run(minutes: u64, fraction: f64, peak_secs: u64) -> Result<()> {
    let haven = haven_binary()?;
    let dir = tempfile::tempdir()?;
    let (dns, proxy, web, up, org) = (free_port()?, free_port()?, free_port()?, upstream()?, origin()?);
    std::fs::write(dir.path().join("blocked.txt"), "blocked.test\nbet365.test\n")?;
    std::fs::write(
        dir.path().join("haven.toml"),
        format!(
            "trust = \"Soak\"\n[data]\ndir = \"data\"\n[dns]\nlisten = [\"127.0.0.1:{dns}\"]\nupstream = [\"127.0.0.1:{up}\"]\n[web]\nlisten = [\"127.0.0.1:{web}\"]\n\
             [proxy]\nlisten = [\"127.0.0.1:{proxy}\"]\nallow_internal = [\"127.0.0.0/8\"]\n[proxy.hosts]\n\"ok.test\" = \"127.0.0.1\"\n\
             [[school]]\nid = \"s\"\nname = \"School\"\n[[group]]\nid = \"pupils\"\n[[policy]]\nid = \"pupils\"\nblock = [\"gambling\"]\n\
             [[network]]\ncidr = \"127.0.0.0/8\"\nschool = \"s\"\ngroup = \"pupils\"\n[[list]]\nname = \"b\"\nformat = \"domains\"\ncategory = \"gambling\"\npath = \"blocked.txt\"\n"
        ),
    )?;
    let cfg = dir.path().join("haven.toml");
    let c = cfg.to_str().context("UTF-8 path")?;
    let out = Command::new(&haven).args(["admin", "--config", c, "device", "add", "--school", "s", "--name", "Soak"]).output()?;
    if !out.status.success() {
        bail!("device add: {}", String::from_utf8_lossy(&out.stderr));
    }
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let server = Running(Command::new(&haven).args(["serve", "--config", c]).env("HAVEN_LOG", "error").stdout(Stdio::null()).stderr(Stdio::null()).spawn()?);
    let pid = server.0.id();
    let ready = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", proxy)).is_err() || TcpStream::connect(("127.0.0.1", web)).is_err() {
        if Instant::now() > ready {
            bail!("haven serve never listened");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let ports = (dns, proxy, web, org);
    let (done, errors, _) = phase(ports, &token, [0.0; 3], peak_secs, pid, false);
    let peak = done.map(|d| d as f64 / peak_secs as f64);
    println!(
        "peak together ({peak_secs} s, 2 threads each): DNS {:.0} queries/s, proxy {:.0} requests/s, ingest {:.0} events/s (errors {:?})",
        peak[0], peak[1], peak[2], errors
    );
    let rates = peak.map(|p| p * fraction);
    let start_rss = rss_kb(pid);
    let (done, errors, samples) = phase(ports, &token, rates, minutes * 60, pid, true);
    let secs = (minutes * 60) as f64;
    let max = samples.iter().map(|s| s.1).max().unwrap_or(0);
    let first_third = samples.iter().take(samples.len() / 3).map(|s| s.1).max().unwrap_or(0);
    let last = samples.last().map_or(0, |s| s.1);
    println!(
        "soak {minutes} min at {:.0}% of that: DNS {:.0}/s, proxy {:.0}/s, ingest {:.0}/s; errors DNS {}, proxy {}, ingest {}; RSS at start {} MB, max in the first third {} MB, max {} MB, at the end {} MB",
        fraction * 100.0,
        done[0] as f64 / secs,
        done[1] as f64 / secs,
        done[2] as f64 / secs,
        errors[0],
        errors[1],
        errors[2],
        start_rss / 1024,
        first_third / 1024,
        max / 1024,
        last / 1024
    );
    let csv: String = samples.iter().map(|(t, kb)| format!("{t},{}\n", kb / 1024)).collect();
    let path = std::env::temp_dir().join("haven-soak-rss.csv");
    std::fs::write(&path, format!("seconds,rss_mb\n{csv}"))?;
    println!("RSS every 10 s: {}", path.display());
    Ok(())
}
