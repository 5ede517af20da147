//! The web app's listeners: a header and idle timeout, a request deadline,
//! a connection cap, a drain that lets requests finish, and `/metrics` for
//! this machine only (or a token).

use std::sync::Arc;
use std::time::{Duration, Instant};

use haven_safeguard::{Limits, MetricsHook};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn app(limits: Limits, token: Option<&str>) -> (haven_safeguard::WebServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = haven_store::Store::open_dir(dir.path()).await.unwrap();
    let service = haven_safeguard::Service::new(store, &haven_policy::PolicySet::default());
    let hook = MetricsHook { render: Arc::new(|| "haven_test_total 7\n".to_string()), token: token.map(str::to_string) };
    let server = haven_safeguard::serve_limited(service, &["127.0.0.1:0".parse().unwrap()], Some(hook), limits).await.unwrap();
    (server, dir)
}

/// Reads until the server closes; the status line's code, or None when closed without a word.
async fn status_of(s: &mut TcpStream, within: Duration) -> Option<u16> {
    let mut text = Vec::new();
    tokio::time::timeout(within, s.read_to_end(&mut text)).await.expect("the server closed the connection in time").ok()?;
    String::from_utf8_lossy(&text).split(' ').nth(1)?.parse().ok()
}

/// The status of a GET, or None when the server refused the connection or
/// closed it without a word (a drained server may do either).
async fn get(addr: std::net::SocketAddr, path: &str, headers: &str) -> Option<u16> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}\r\n").as_bytes()).await.unwrap();
    status_of(&mut s, Duration::from_secs(5)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_sends_nothing_or_trickles_a_body_is_closed() {
    let limits = Limits { header_and_idle: Duration::from_millis(300), request: Duration::from_millis(600), max_connections: 64 };
    let (server, _dir) = app(limits, None).await;
    let addr = server.addrs[0];
    let started = Instant::now();
    let mut silent = TcpStream::connect(addr).await.unwrap();
    assert_eq!(status_of(&mut silent, Duration::from_secs(3)).await.unwrap_or(408), 408, "closed, at most with a 408");
    assert!(started.elapsed() < Duration::from_secs(2), "closed after the header timeout");

    // A body promised and never sent finishes with 408 at the request deadline.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\nemail=a").await.unwrap();
    assert_eq!(status_of(&mut slow, Duration::from_secs(3)).await, Some(408));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_are_closed_at_once() {
    let limits = Limits { max_connections: 4, ..Limits::default() };
    let (server, _dir) = app(limits, None).await;
    let addr = server.addrs[0];
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = TcpStream::connect(addr).await.unwrap();
    assert_eq!(status_of(&mut extra, Duration::from_secs(2)).await, None, "closed without an answer");
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(get(addr, "/metrics", "").await, Some(200), "room again once they close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_closes_idle_connections_and_takes_no_new_ones() {
    let (server, _dir) = app(Limits::default(), None).await;
    let addr = server.addrs[0];
    // A keep-alive connection, idle after its answer.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 4096];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let started = Instant::now();
    assert!(server.drain(Duration::from_secs(5)).await, "drained");
    assert!(started.elapsed() < Duration::from_secs(2), "an idle connection does not hold the drain up");
    assert!(matches!(idle.read(&mut buf).await, Ok(0) | Err(_)), "the idle connection was closed");
    assert!(TcpStream::connect(addr).await.is_err() || get(addr, "/metrics", "").await.is_none(), "nothing new is served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_for_this_machine_or_the_token() {
    let (server, _dir) = app(Limits::default(), Some("s3cret-token")).await;
    let addr = server.addrs[0];
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    assert!(text.starts_with("HTTP/1.1 200") && text.contains("haven_test_total 7"), "{text}");
    assert_eq!(get(addr, "/metrics", "X-Forwarded-For: 203.0.113.9\r\n").await, Some(403), "a reverse proxy's client is not this machine");
    assert_eq!(get(addr, "/metrics", "X-Forwarded-For: 203.0.113.9\r\nAuthorization: Bearer wrong\r\n").await, Some(403));
    assert_eq!(get(addr, "/metrics", "X-Forwarded-For: 203.0.113.9\r\nAuthorization: Bearer s3cret-token\r\n").await, Some(200));
}
