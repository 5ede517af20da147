//! `haven serve`, `haven dns --blocklist`, `haven reload` and `haven logs` as
//! processes, with hand-built DNS packets (only haven-dns knows hickory).

mod common;
use common::Running;

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A DNS query for `name`, type A, recursion desired.
fn query(id: u16, name: &str) -> Vec<u8> {
    let mut p = id.to_be_bytes().to_vec();
    p.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        p.push(label.len() as u8);
        p.extend_from_slice(label.as_bytes());
    }
    p.extend_from_slice(&[0, 0, 1, 0, 1]);
    p
}

/// (rcode, answer count) of the reply, or None on timeout.
fn ask(server: SocketAddr, name: &str) -> Option<(u8, u16)> {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    s.send_to(&query(7, name), server).unwrap();
    let mut buf = [0u8; 1500];
    let (n, _) = s.recv_from(&mut buf).ok()?;
    (n >= 12).then(|| (buf[3] & 0x0f, u16::from_be_bytes([buf[6], buf[7]])))
}

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start(args: &[&str]) -> Running {
    Running(common::haven().args(args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap())
}

fn wait_for(server: SocketAddr, name: &str, want: u8) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if ask(server, name).map(|r| r.0) == Some(want) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{name} never answered rcode {want}");
}

fn config(dir: &Path, port: u16, up: SocketAddr, blocked: &str) -> std::path::PathBuf {
    std::fs::write(dir.join("block.txt"), "casino.example\ngames.example\n").unwrap();
    let text = format!(
        r#"trust = "t"
[data]
dir = "data"
[dns]
listen = ["127.0.0.1:{port}"]
upstream = ["{up}"]
[proxy]
listen = ["127.0.0.1:0"]
[web]
listen = ["127.0.0.1:0"]
[[group]]
id = "pupils"
[[group]]
id = "staff"
[[policy]]
id = "pupils"
block = [{blocked}]
[[policy]]
id = "staff"
[[school]]
id = "s"
name = "S"
[[network]]
cidr = "127.0.0.0/8"
school = "s"
group = "pupils"
[[list]]
name = "l"
format = "domains"
category = "gambling"
path = "block.txt"
"#
    );
    let p = dir.join("haven.toml");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn serve_reloads_on_sighup_refuses_a_broken_config_and_logs_queries() {
    let dir = tempfile::tempdir().unwrap();
    let up = common::upstream();
    let port = free_port();
    let server: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let cfg = config(dir.path(), port, up, "\"gambling\"");
    let c = cfg.to_str().unwrap();
    let _run = start(&["serve", "--config", c, "--reload-every", "3600"]);
    wait_for(server, "casino.example", 3);
    assert_eq!(ask(server, "allowed.example"), Some((0, 1)));

    // A broken config is refused by `haven reload` and by the server; the old one keeps serving.
    std::fs::write(&cfg, std::fs::read_to_string(&cfg).unwrap().replace("\"gambling\"]", "\"gamblng\"]")).unwrap();
    let out = common::run(&["reload", "--config", c], None);
    assert_eq!(out.status.code(), Some(2), "{}", common::err(&out));
    let pid = std::fs::read_to_string(dir.path().join("data/haven.pid")).unwrap();
    std::process::Command::new("kill").args(["-HUP", pid.trim()]).status().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(ask(server, "casino.example").map(|r| r.0), Some(3), "still the old policy");

    // A good change is picked up by `haven reload`.
    config(dir.path(), port, up, "");
    let out = common::run(&["reload", "--config", c], None);
    assert!(out.status.success(), "{}", common::err(&out));
    wait_for(server, "casino.example", 0);

    let since = jiff::Timestamp::now().checked_sub(jiff::SignedDuration::from_hours(1)).unwrap().to_string();
    let out = common::run(&["logs", "--config", c, "--client", "127.0.0.1", "--since", &since, "--json"], None);
    assert!(out.status.success(), "{}", common::err(&out));
    let text = common::text(&out);
    assert!(text.contains("\"name\":\"allowed.example\""), "{text}");
    assert!(text.contains("\"action\":\"block\""), "{text}");
}

#[test]
fn dns_blocklist_mode_needs_no_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hosts"), "# a hosts file\n0.0.0.0 ads.example\n0.0.0.0 tracker.example\n").unwrap();
    std::fs::write(dir.path().join("plain.txt"), "casino.example\n").unwrap();
    let up = common::upstream();
    let port = free_port();
    let server: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let listen = server.to_string();
    let upstream = up.to_string();
    let _run = start(&[
        "dns",
        "--listen",
        &listen,
        "--upstream",
        &upstream,
        "--blocklist",
        dir.path().join("hosts").to_str().unwrap(),
        "--blocklist",
        dir.path().join("plain.txt").to_str().unwrap(),
    ]);
    wait_for(server, "www.ads.example", 3);
    assert_eq!(ask(server, "casino.example").map(|r| r.0), Some(3));
    assert_eq!(ask(server, "news.example"), Some((0, 1)));
}

#[test]
fn serve_notices_a_changed_list_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let up = common::upstream();
    let port = free_port();
    let server: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let cfg = config(dir.path(), port, up, "\"gambling\"");
    let _run = start(&["serve", "--config", cfg.to_str().unwrap(), "--reload-every", "1"]);
    wait_for(server, "casino.example", 3);
    assert_eq!(ask(server, "newly-listed.example").map(|r| r.0), Some(0));
    std::fs::write(dir.path().join("block.txt"), "casino.example\nnewly-listed.example\n").unwrap();
    wait_for(server, "newly-listed.example", 3);
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `GET path` on the web app, with extra header lines; (status, body).
fn http_get(port: u16, path: &str, headers: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{headers}\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split(' ').nth(1)?.parse().ok()?;
    Some((status, text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()))
}

/// The value of one series in Prometheus text (`name` with its labels, as written).
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
}

fn metrics_text(port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Some((200, body)) = http_get(port, "/metrics", "") {
            return body;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("/metrics never answered");
}

#[test]
fn a_reload_parses_the_config_once_and_metrics_are_served_to_this_machine() {
    let dir = tempfile::tempdir().unwrap();
    let up = common::upstream();
    let port = free_port();
    let web = free_tcp_port();
    let server: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let cfg = config(dir.path(), port, up, "\"gambling\"");
    let _run = start(&["serve", "--config", cfg.to_str().unwrap(), "--listen", &format!("127.0.0.1:{web}"), "--reload-every", "1"]);
    wait_for(server, "casino.example", 3);
    assert_eq!(ask(server, "allowed.example"), Some((0, 1)));
    let m = metrics_text(web);
    // One snapshot for the DNS filter, the proxy and the safeguarding service.
    assert_eq!(metric(&m, "haven_config_parses_total"), Some(1.0), "{m}");
    assert_eq!(metric(&m, "haven_list_index_loads_total"), Some(1.0), "{m}");
    assert!(metric(&m, "haven_dns_queries_total{transport=\"udp\"}").is_some_and(|n| n >= 2.0), "{m}");
    assert!(metric(&m, "haven_blocks_total{service=\"dns\",category=\"gambling\"}").is_some_and(|n| n >= 1.0), "{m}");
    assert!(metric(&m, "haven_decisions_total{service=\"dns\",action=\"allow\"}").is_some_and(|n| n >= 1.0), "{m}");

    // Timer ticks with nothing changed parse nothing.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(metric(&metrics_text(web), "haven_config_parses_total"), Some(1.0));

    // A reload (SIGHUP, as `haven reload` sends) parses once and loads the index once.
    let pid = std::fs::read_to_string(dir.path().join("data/haven.pid")).unwrap();
    std::process::Command::new("kill").args(["-HUP", pid.trim()]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let m = loop {
        let m = metrics_text(web);
        if metric(&m, "haven_reloads_total{result=\"ok\"}") == Some(1.0) || Instant::now() > deadline {
            break m;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(metric(&m, "haven_reloads_total{result=\"ok\"}"), Some(1.0), "{m}");
    assert_eq!(metric(&m, "haven_config_parses_total"), Some(2.0), "{m}");
    assert_eq!(metric(&m, "haven_list_index_loads_total"), Some(2.0), "{m}");

    // Through a reverse proxy on this machine is not this machine: pupils' volumes are not public.
    let (status, _) = http_get(web, "/metrics", "X-Forwarded-For: 203.0.113.7\r\n").unwrap();
    assert_eq!(status, 403);
}

/// A one-answer upstream that takes a second over `slow.example`.
fn slow_upstream() -> SocketAddr {
    let s = std::sync::Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap());
    let addr = s.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            let q = buf[..n].to_vec();
            let s = s.clone();
            std::thread::spawn(move || {
                if q.windows(4).any(|w| w == b"slow") {
                    std::thread::sleep(Duration::from_secs(1));
                }
                let qend = 12 + q[12..].iter().position(|&b| b == 0).unwrap_or(0) + 5;
                let mut r = q[..qend.min(q.len())].to_vec();
                r[2] = 0x81;
                r[3] = 0x80;
                r[6..12].copy_from_slice(&[0, 1, 0, 0, 0, 0]);
                r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
                let _ = s.send_to(&r, from);
            });
        }
    });
    addr
}

#[test]
fn sigterm_answers_the_questions_in_flight_flushes_the_log_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let up = slow_upstream();
    let port = free_port();
    let server: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let cfg = config(dir.path(), port, up, "\"gambling\"");
    let c = cfg.to_str().unwrap();
    let mut run = start(&["serve", "--config", c, "--reload-every", "3600"]);
    wait_for(server, "casino.example", 3);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    client.send_to(&query(9, "slow.example"), server).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    std::process::Command::new("kill").args(["-TERM", &run.0.id().to_string()]).status().unwrap();
    let mut buf = [0u8; 1500];
    let (n, _) = client.recv_from(&mut buf).expect("the question in flight is answered before Haven stops");
    assert!(n >= 12 && buf[3] & 0x0f == 0 && u16::from_be_bytes([buf[6], buf[7]]) == 1, "a real answer");
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = run.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "Haven did not stop within the drain deadline");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
    let since = jiff::Timestamp::now().checked_sub(jiff::SignedDuration::from_hours(1)).unwrap().to_string();
    let out = common::run(&["logs", "--config", c, "--client", "127.0.0.1", "--since", &since, "--json"], None);
    assert!(common::text(&out).contains("\"name\":\"slow.example\""), "the drained answer was logged: {}", common::text(&out));
}
