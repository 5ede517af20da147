//! The DNS filter under pressure and at the edges: one source port per
//! upstream question, forged answers ignored, bounded UDP work and TCP
//! connections, a drain that finishes what is in flight, and reloads that
//! never mix two snapshots.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use haven_dns::{DnsServer, Filter};
use hickory_proto::op::{Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// How a test upstream behaves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mood {
    /// Answers every A question with 192.0.2.1.
    Answer,
    /// Sends a forged answer (wrong ID, then wrong question) before the true one.
    ForgeFirst,
    /// Never answers.
    Silent,
    /// Answers after 400 ms.
    Slow,
}

/// A UDP upstream that remembers the source port of every question.
async fn upstream(mood: Mood) -> (SocketAddr, Arc<Mutex<Vec<u16>>>) {
    let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = socket.local_addr().unwrap();
    let ports = Arc::new(Mutex::new(Vec::new()));
    let seen = ports.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buf).await else { continue };
            seen.lock().unwrap().push(from.port());
            let Ok(q) = Message::from_vec(&buf[..n]) else { continue };
            let socket = socket.clone();
            tokio::spawn(async move {
                let reply = |id: u16, query: Query, last: u8| {
                    let mut m = Message::response(id, OpCode::Query);
                    m.metadata.recursion_available = true;
                    m.add_answer(Record::from_rdata(query.name().clone(), 300, RData::A(A(Ipv4Addr::new(192, 0, 2, last)))));
                    m.add_query(query);
                    m.to_vec().unwrap()
                };
                let query = q.queries[0].clone();
                match mood {
                    Mood::Silent => return,
                    Mood::Slow => tokio::time::sleep(Duration::from_millis(400)).await,
                    Mood::ForgeFirst => {
                        let _ = socket.send_to(&reply(q.metadata.id.wrapping_add(1), query.clone(), 66), from).await;
                        let other = Query::query(Name::from_ascii("forged.example.").unwrap(), RecordType::A);
                        let _ = socket.send_to(&reply(q.metadata.id, other, 67), from).await;
                    }
                    Mood::Answer => {}
                }
                let _ = socket.send_to(&reply(q.metadata.id, query, 1), from).await;
            });
        }
    });
    (addr, ports)
}

/// A trust whose pupils (127.0.0.1) are denied `blocked`; `casino.example`
/// is listed in `listed`.
fn filter(dir: &Path, upstream: SocketAddr, blocked: &str, listed: &str) -> Filter {
    std::fs::write(dir.join("list.txt"), "casino.example\n").unwrap();
    let text = format!(
        r#"
trust = "bounds"
[dns]
listen = ["127.0.0.1:0"]
upstream = ["{upstream}"]
upstream_timeout_ms = 3000
doh_listen = "127.0.0.1:0"
[[school]]
id = "s"
name = "School"
[[group]]
id = "pupils"
[[policy]]
id = "pupils"
block = ["{blocked}"]
[[network]]
cidr = "127.0.0.1/32"
school = "s"
group = "pupils"
[[device]]
id = "laptop"
school = "s"
group = "pupils"
doh_token = "token-laptop-bounds"
[[list]]
name = "l"
format = "domains"
category = "{listed}"
path = "list.txt"
"#
    );
    let path = dir.join("haven.toml");
    std::fs::write(&path, text).unwrap();
    let c = haven_config::Config::load(&path).unwrap();
    let (lists, _) = haven_lists::compile(&c.lists, "test", &haven_lists::NoProgress).unwrap();
    Filter { policy: c.policy, lists: lists.into(), settings: c.dns, doh_tokens: c.doh_tokens }
}

fn query(id: u16, name: &str) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = id;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    m.to_vec().unwrap()
}

async fn ask(server: SocketAddr, name: &str) -> Option<Message> {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut buf = vec![0u8; 4096];
    for _ in 0..3 {
        s.send_to(&query(7, name), server).await.unwrap();
        if let Ok(Ok((n, _))) = tokio::time::timeout(Duration::from_millis(1500), s.recv_from(&mut buf)).await {
            return Message::from_vec(&buf[..n]).ok();
        }
    }
    None
}

fn first_a(m: &Message) -> Option<Ipv4Addr> {
    m.answers.iter().find_map(|r| match &r.data {
        RData::A(a) => Some(a.0),
        _ => None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_upstream_question_leaves_from_a_fresh_source_port() {
    let (up, ports) = upstream(Mood::Answer).await;
    let dir = tempfile::tempdir().unwrap();
    let server = DnsServer::start(filter(dir.path(), up, "gambling", "gambling"), None).await.unwrap();
    for i in 0..24 {
        let m = ask(server.addrs[0], &format!("name{i}.example")).await.expect("an answer");
        assert_eq!(first_a(&m), Some(Ipv4Addr::new(192, 0, 2, 1)));
    }
    let ports = ports.lock().unwrap().clone();
    let distinct: HashSet<u16> = ports.iter().copied().collect();
    // A port may come round again by chance; a few shared sockets would give four.
    assert!(distinct.len() >= ports.len() - 2, "{} questions left from only {} ports: {ports:?}", ports.len(), distinct.len());
    server.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_answers_with_the_wrong_id_or_question_are_ignored() {
    let (up, _) = upstream(Mood::ForgeFirst).await;
    let dir = tempfile::tempdir().unwrap();
    let server = DnsServer::start(filter(dir.path(), up, "gambling", "gambling"), None).await.unwrap();
    for i in 0..5 {
        let m = ask(server.addrs[0], &format!("bank{i}.example")).await.expect("an answer");
        assert_eq!(first_a(&m), Some(Ipv4Addr::new(192, 0, 2, 1)), "only the true answer is taken");
    }
    server.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn questions_waiting_for_the_upstream_are_bounded_and_blocks_still_answered() {
    let (up, _) = upstream(Mood::Silent).await;
    let dir = tempfile::tempdir().unwrap();
    let server = DnsServer::start(filter(dir.path(), up, "gambling", "gambling"), None).await.unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // More distinct questions than may wait for the upstream at once (512),
    // sent in small bursts so the kernel keeps them all.
    for i in 0..800u16 {
        client.send_to(&query(i, &format!("q{i}.example")), server.addrs[0]).await.unwrap();
        if i % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let shed = server.shed();
    assert!(shed >= 200, "the questions beyond the bound are dropped and counted: {shed}");
    // A block needs no upstream: it is answered while the upstream is stuck.
    let m = ask(server.addrs[0], "casino.example").await.expect("a block is answered");
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    server.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_asking_one_name_share_one_upstream_question_and_all_get_answers() {
    let (up, ports) = upstream(Mood::Slow).await;
    let dir = tempfile::tempdir().unwrap();
    let server = DnsServer::start(filter(dir.path(), up, "gambling", "gambling"), None).await.unwrap();
    // More clients than may wait for the upstream at once, all asking the
    // same name (in small bursts, so the kernel keeps every datagram).
    let mut clients = Vec::new();
    for c in 0..8u16 {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        for i in 0..80u16 {
            s.send_to(&query(c * 100 + i, "popular.example"), server.addrs[0]).await.unwrap();
            if i % 20 == 19 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        clients.push(s);
    }
    let mut answered = 0;
    for s in &clients {
        let mut buf = vec![0u8; 4096];
        for _ in 0..80 {
            let Ok(Ok((n, _))) = tokio::time::timeout(Duration::from_secs(2), s.recv_from(&mut buf)).await else { break };
            assert_eq!(first_a(&Message::from_vec(&buf[..n]).unwrap()), Some(Ipv4Addr::new(192, 0, 2, 1)));
            answered += 1;
        }
    }
    assert_eq!(answered, 640, "every client is answered");
    assert_eq!(server.shed(), 0);
    assert_eq!(ports.lock().unwrap().len(), 1, "one question went upstream");
    server.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_connections_beyond_the_cap_are_closed_at_once() {
    let (up, _) = upstream(Mood::Answer).await;
    let dir = tempfile::tempdir().unwrap();
    let server = DnsServer::start(filter(dir.path(), up, "gambling", "gambling"), None).await.unwrap();
    let mut open = Vec::new();
    for _ in 0..512 {
        open.push(TcpStream::connect(server.addrs[0]).await.unwrap());
    }
    // Let the server take them all before the one too many.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut extra = TcpStream::connect(server.addrs[0]).await.unwrap();
    let mut byte = [0u8; 1];
    let closed = tokio::time::timeout(Duration::from_secs(3), extra.read(&mut byte)).await;
    assert!(matches!(closed, Ok(Ok(0) | Err(_))), "the 513th connection is closed, not left waiting: {closed:?}");
    // One of the first still works.
    let s = &mut open[0];
    let q = query(9, "casino.example");
    s.write_all(&(q.len() as u16).to_be_bytes()).await.unwrap();
    s.write_all(&q).await.unwrap();
    let len = s.read_u16().await.unwrap();
    let mut body = vec![0; usize::from(len)];
    s.read_exact(&mut body).await.unwrap();
    assert_eq!(Message::from_vec(&body).unwrap().metadata.response_code, ResponseCode::NXDomain);
    server.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_answers_what_is_in_flight_and_takes_nothing_new() {
    let (up, _) = upstream(Mood::Slow).await;
    let dir = tempfile::tempdir().unwrap();
    let server = DnsServer::start(filter(dir.path(), up, "gambling", "gambling"), Some(&dir.path().join("logs"))).await.unwrap();
    let addr = server.addrs[0];
    let waiting = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    waiting.send_to(&query(1, "slow.example"), addr).await.unwrap();
    let mut idle_tcp = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    assert!(server.drain(Duration::from_secs(5)).await, "everything in flight finished");
    assert!(started.elapsed() < Duration::from_secs(2), "an idle TCP connection does not hold the drain up");
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(1), waiting.recv_from(&mut buf)).await.expect("the waiting question was answered").unwrap();
    assert_eq!(first_a(&Message::from_vec(&buf[..n]).unwrap()), Some(Ipv4Addr::new(192, 0, 2, 1)));
    let mut byte = [0u8; 1];
    assert!(matches!(idle_tcp.read(&mut byte).await, Ok(0) | Err(_)), "the idle TCP connection was closed");
    // Nothing new is taken.
    let late = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    late.send_to(&query(2, "casino.example"), addr).await.unwrap();
    assert!(tokio::time::timeout(Duration::from_millis(500), late.recv_from(&mut buf)).await.is_err(), "no answer after the drain");
    let logs = dir.path().join("logs");
    server.shutdown();
    let since: jiff::Timestamp = "2020-01-01T00:00:00Z".parse().unwrap();
    let entries = haven_dns::log::read(&logs, since, None, |_| true).unwrap();
    assert!(entries.iter().any(|e| e.name == "slow.example" && e.action == "allow"), "the drained answer is in the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_during_reloads_come_from_one_snapshot_or_the_other() {
    let (up, _) = upstream(Mood::Answer).await;
    let dir = tempfile::tempdir().unwrap();
    // Snapshot A lists casino.example as gambling and blocks gambling; B lists
    // it as games and blocks games. Either blocks it; A's policy with B's
    // lists (or B's with A's) would let it through.
    let a_dir = dir.path().join("a");
    let b_dir = dir.path().join("b");
    std::fs::create_dir_all(&a_dir).unwrap();
    std::fs::create_dir_all(&b_dir).unwrap();
    let server = Arc::new(DnsServer::start(filter(&a_dir, up, "gambling", "gambling"), None).await.unwrap());
    let s = server.clone();
    let reloads = tokio::spawn(async move {
        for i in 0..200 {
            let f = if i % 2 == 0 { filter(&b_dir, up, "games", "games") } else { filter(&a_dir, up, "gambling", "gambling") };
            s.reload(f);
            tokio::task::yield_now().await;
        }
    });
    let mut answered = 0;
    while !reloads.is_finished() || answered < 50 {
        let m = ask(server.addrs[0], "casino.example").await.expect("an answer");
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "a mix of two snapshots let it through");
        answered += 1;
    }
    reloads.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_closes_idle_doh_connections_after_their_answers() {
    use base64::Engine as _;
    let (up, _) = upstream(Mood::Answer).await;
    let dir = tempfile::tempdir().unwrap();
    let server = DnsServer::start(filter(dir.path(), up, "gambling", "gambling"), None).await.unwrap();
    let doh = server.doh_addr.unwrap();
    let mut s = TcpStream::connect(doh).await.unwrap();
    let q = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(query(3, "casino.example"));
    s.write_all(format!("GET /dns-query/token-laptop-bounds?dns={q} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"), "answered over DoH");
    // The connection is kept alive, idle; a drain closes it without waiting for its timeout.
    let started = std::time::Instant::now();
    assert!(server.drain(Duration::from_secs(5)).await);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(matches!(s.read(&mut buf).await, Ok(0) | Err(_)), "closed");
    assert!(TcpStream::connect(doh).await.is_err(), "no longer listening");
    server.shutdown();
}
