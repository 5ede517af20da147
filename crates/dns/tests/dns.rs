//! The DNS filter on loopback, with a local upstream started by the test.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use haven_dns::{DnsServer, Filter};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::rdata::{A, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

// ------------------------------------------------------------ the upstream ---

#[derive(Default)]
struct Upstream {
    counts: Mutex<HashMap<String, usize>>,
}

impl Upstream {
    fn count(&self, name: &str) -> usize {
        self.counts.lock().unwrap().get(name).copied().unwrap_or(0)
    }

    fn answer(&self, packet: &[u8]) -> Option<Vec<u8>> {
        let q = Message::from_vec(packet).ok()?;
        let query = q.queries.first()?.clone();
        let name = query.name().to_ascii().trim_end_matches('.').to_lowercase();
        *self.counts.lock().unwrap().entry(name.clone()).or_default() += 1;
        let mut m = Message::response(q.metadata.id, OpCode::Query);
        m.metadata.recursion_available = true;
        m.add_query(query.clone());
        if let Some(e) = &q.edns {
            let mut edns = Edns::new();
            edns.set_max_payload(e.max_payload());
            m.set_edns(edns);
        }
        let owner = query.name().clone();
        let ttl = if name.starts_with("short.") { 1 } else { 300 };
        match (name.as_str(), query.query_type()) {
            ("nx.example", _) => {
                m.metadata.response_code = ResponseCode::NXDomain;
                let soa = SOA::new(Name::from_ascii("example.").unwrap(), Name::from_ascii("admin.example.").unwrap(), 1, 3600, 600, 86400, 30);
                m.add_authority(Record::from_rdata(Name::from_ascii("example.").unwrap(), 300, RData::SOA(soa)));
            }
            ("big.example", RecordType::TXT) => {
                for i in 0..12 {
                    m.add_answer(Record::from_rdata(owner.clone(), ttl, RData::TXT(TXT::new(vec![format!("{i:02}-{}", "x".repeat(90))]))));
                }
            }
            (_, RecordType::A) => {
                let last = if name == "forcesafesearch.google.com" { 120 } else { 1 };
                m.add_answer(Record::from_rdata(owner, ttl, RData::A(A(Ipv4Addr::new(192, 0, 2, last)))));
            }
            _ => {}
        }
        m.to_vec().ok()
    }
}

async fn start_upstream() -> (SocketAddr, Arc<Upstream>) {
    let up = Arc::new(Upstream::default());
    // The UDP port's TCP twin may be taken by another test: try another port.
    let (udp, tcp) = loop {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()).await {
            break (udp, tcp);
        }
    };
    let addr = udp.local_addr().unwrap();
    let u = up.clone();
    tokio::spawn(async move {
        let udp = Arc::new(udp);
        let mut buf = vec![0u8; 4096];
        loop {
            let (n, from) = udp.recv_from(&mut buf).await.unwrap();
            let packet = buf[..n].to_vec();
            let (u, udp) = (u.clone(), udp.clone());
            tokio::spawn(async move {
                let name = Message::from_vec(&packet).ok().and_then(|m| m.queries.first().map(|q| q.name().to_ascii()));
                if name.as_deref() == Some("slow.example.") {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                if let Some(r) = u.answer(&packet) {
                    let _ = udp.send_to(&r, from).await;
                }
            });
        }
    });
    let u = up.clone();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = tcp.accept().await.unwrap();
            let u = u.clone();
            tokio::spawn(async move {
                let len = s.read_u16().await.unwrap();
                let mut p = vec![0; usize::from(len)];
                s.read_exact(&mut p).await.unwrap();
                let r = u.answer(&p).unwrap();
                s.write_all(&(r.len() as u16).to_be_bytes()).await.unwrap();
                s.write_all(&r).await.unwrap();
            });
        }
    });
    (addr, up)
}

// ---------------------------------------------------------------- the trust ---

fn config_text(upstream: SocketAddr, block: &str, staff_block: &str) -> String {
    format!(
        r#"
trust = "DNS test"
[dns]
listen = ["127.0.0.1:0", "[::1]:0"]
upstream = ["{upstream}"]
block = "{block}"
block_page_ipv4 = "10.9.9.9"
block_page_ipv6 = "fd00::9"
upstream_timeout_ms = 400
doh_listen = "127.0.0.1:0"

[[school]]
id = "s"
name = "School"

[[group]]
id = "pupils"
[[group]]
id = "staff"

[[policy]]
id = "pupils"
block = ["gambling", "games", "circumvention"]
youtube = "strict"
[[policy]]
id = "staff"
block = [{staff_block}]
safe_search = false
youtube = "moderate"

[[network]]
cidr = "127.0.0.1/32"
school = "s"
group = "pupils"
[[network]]
cidr = "127.0.0.2/32"
school = "s"
group = "staff"
[[network]]
cidr = "::1/128"
school = "s"
group = "pupils"

[[user]]
id = "teacher"
group = "staff"
school = "s"

[[device]]
id = "laptop-1"
school = "s"
group = "pupils"
doh_token = "token-laptop-1-abcdef"
[[device]]
id = "laptop-2"
school = "s"
group = "pupils"
owner = "teacher"
doh_token = "token-laptop-2-abcdef"

[[list]]
name = "local"
format = "domains"
category = "gambling"
path = "gambling.txt"
[[list]]
name = "games"
format = "domains"
category = "games"
path = "games.txt"
[[list]]
name = "bypass"
format = "domains"
category = "circumvention"
path = "bypass.txt"
"#
    )
}

fn filter(dir: &Path, upstream: SocketAddr, block: &str, staff_block: &str) -> Filter {
    std::fs::write(dir.join("gambling.txt"), "casino.example\n").unwrap();
    std::fs::write(dir.join("games.txt"), "games.example\n").unwrap();
    std::fs::write(dir.join("bypass.txt"), "dns.google\ncloudflare-dns.com\n").unwrap();
    let path = dir.join("haven.toml");
    std::fs::write(&path, config_text(upstream, block, staff_block)).unwrap();
    let c = haven_config::Config::load(&path).unwrap();
    let (lists, _) = haven_lists::compile(&c.lists, "test", &haven_lists::NoProgress).unwrap();
    Filter { policy: c.policy, lists: lists.into(), settings: c.dns, doh_tokens: c.doh_tokens }
}

struct Fixture {
    server: DnsServer,
    upstream: Arc<Upstream>,
    upstream_addr: SocketAddr,
    dir: tempfile::TempDir,
}

async fn fixture(block: &str) -> Fixture {
    let (upstream_addr, upstream) = start_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let f = filter(dir.path(), upstream_addr, block, "");
    let server = DnsServer::start(f, Some(&dir.path().join("logs"))).await.unwrap();
    Fixture { server, upstream, upstream_addr, dir }
}

// --------------------------------------------------------------- the client ---

fn query(name: &str, qtype: RecordType, edns: bool) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = 4242;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}

async fn udp_from(source: &str, server: SocketAddr, packet: &[u8]) -> Option<Message> {
    let s = UdpSocket::bind(format!("{source}:0")).await.unwrap();
    let mut buf = vec![0u8; 65535];
    // UDP may lose a datagram (after the garbage burst, on a busy machine, the
    // server's receive queue can be full): ask again, as a stub resolver does.
    for _ in 0..3 {
        s.send_to(packet, server).await.unwrap();
        if let Ok(Ok((n, _))) = tokio::time::timeout(Duration::from_millis(1500), s.recv_from(&mut buf)).await {
            return Some(Message::from_vec(&buf[..n]).unwrap());
        }
    }
    None
}

async fn ask(f: &Fixture, name: &str, qtype: RecordType) -> Message {
    udp_from("127.0.0.1", f.server.addrs[0], &query(name, qtype, true)).await.expect("an answer")
}

async fn tcp(server: SocketAddr, packet: &[u8]) -> Message {
    let mut s = TcpStream::connect(server).await.unwrap();
    s.write_all(&(packet.len() as u16).to_be_bytes()).await.unwrap();
    s.write_all(packet).await.unwrap();
    let len = s.read_u16().await.unwrap();
    let mut body = vec![0; usize::from(len)];
    s.read_exact(&mut body).await.unwrap();
    Message::from_vec(&body).unwrap()
}

fn ede(m: &Message) -> Option<(u16, String)> {
    m.edns.as_ref()?.options().as_ref().iter().find_map(|(_, o)| match o {
        EdnsOption::Unknown(15, data) if data.len() >= 2 => Some((u16::from_be_bytes([data[0], data[1]]), String::from_utf8_lossy(&data[2..]).into_owned())),
        _ => None,
    })
}

fn addrs(m: &Message) -> Vec<IpAddr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

// -------------------------------------------------------------------- tests ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_names_are_forwarded_and_blocked_ones_get_nxdomain_with_ede() {
    let f = fixture("nxdomain").await;
    let m = ask(&f, "www.allowed.example", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(m.metadata.id, 4242);
    assert!(m.metadata.recursion_available);
    assert_eq!(addrs(&m), ["192.0.2.1".parse::<IpAddr>().unwrap()]);

    let m = ask(&f, "www.casino.example", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    let (code, text) = ede(&m).expect("an Extended DNS Error");
    assert_eq!(code, 15, "Blocked");
    assert!(text.contains("gambling"), "{text}");
    assert_eq!(f.upstream.count("www.casino.example"), 0, "blocked names never leave the school");

    // Without EDNS there is no OPT record to carry the EDE, but still NXDOMAIN.
    let m = udp_from("127.0.0.1", f.server.addrs[0], &query("casino.example", RecordType::A, false)).await.unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(m.edns.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_page_mode_answers_the_block_page_addresses() {
    let f = fixture("blockpage").await;
    let a = ask(&f, "casino.example", RecordType::A).await;
    assert_eq!(a.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addrs(&a), ["10.9.9.9".parse::<IpAddr>().unwrap()]);
    assert_eq!(ede(&a).map(|e| e.0), Some(15));
    let aaaa = ask(&f, "casino.example", RecordType::AAAA).await;
    assert_eq!(addrs(&aaaa), ["fd00::9".parse::<IpAddr>().unwrap()]);
    let mx = ask(&f, "casino.example", RecordType::MX).await;
    assert_eq!(mx.metadata.response_code, ResponseCode::NoError);
    assert!(mx.answers.is_empty());
    assert_eq!(ede(&mx).map(|e| e.0), Some(15));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safe_search_is_a_cname_with_the_targets_addresses() {
    let f = fixture("nxdomain").await;
    let m = ask(&f, "www.google.com", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    let cname = m.answers.iter().find_map(|r| match &r.data {
        RData::CNAME(c) => Some(c.0.to_ascii()),
        _ => None,
    });
    assert_eq!(cname.as_deref(), Some("forcesafesearch.google.com."));
    assert_eq!(addrs(&m), ["192.0.2.120".parse::<IpAddr>().unwrap()], "target address in the same answer");
    assert_eq!(f.upstream.count("www.google.com"), 0);

    // YouTube: strict for pupils (127.0.0.1), moderate for staff (127.0.0.2).
    let target = |m: &Message| {
        m.answers.iter().find_map(|r| match &r.data {
            RData::CNAME(c) => Some(c.0.to_ascii()),
            _ => None,
        })
    };
    let pupils = ask(&f, "www.youtube.com", RecordType::A).await;
    assert_eq!(target(&pupils).as_deref(), Some("restrict.youtube.com."));
    let staff = udp_from("127.0.0.2", f.server.addrs[0], &query("www.youtube.com", RecordType::A, true)).await.unwrap();
    assert_eq!(target(&staff).as_deref(), Some("restrictmoderate.youtube.com."));
    // Staff have no Google safe search.
    let staff = udp_from("127.0.0.2", f.server.addrs[0], &query("www.google.com", RecordType::A, true)).await.unwrap();
    assert_eq!(target(&staff), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_differ_by_client_address_and_unknown_clients_are_refused() {
    let f = fixture("nxdomain").await;
    let pupils = udp_from("127.0.0.1", f.server.addrs[0], &query("games.example", RecordType::A, true)).await.unwrap();
    assert_eq!(pupils.metadata.response_code, ResponseCode::NXDomain);
    let staff = udp_from("127.0.0.2", f.server.addrs[0], &query("games.example", RecordType::A, true)).await.unwrap();
    assert_eq!(staff.metadata.response_code, ResponseCode::NoError);
    let stranger = udp_from("127.0.0.3", f.server.addrs[0], &query("games.example", RecordType::A, true)).await.unwrap();
    assert_eq!(stranger.metadata.response_code, ResponseCode::Refused);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_clients_are_served_and_identified() {
    let f = fixture("nxdomain").await;
    let v6 = f.server.addrs.iter().find(|a| a.is_ipv6()).copied().expect("an IPv6 listener");
    let blocked = udp_from("[::1]", v6, &query("casino.example", RecordType::A, true)).await.unwrap();
    assert_eq!(blocked.metadata.response_code, ResponseCode::NXDomain);
    let allowed = tcp(v6, &query("v6.example", RecordType::A, true)).await;
    assert_eq!(addrs(&allowed).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn circumvention_is_blocked_and_the_doh_canary_says_no() {
    let f = fixture("nxdomain").await;
    assert_eq!(ask(&f, "dns.google", RecordType::A).await.metadata.response_code, ResponseCode::NXDomain);
    let canary = ask(&f, "use-application-dns.net", RecordType::A).await;
    assert_eq!(canary.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(f.upstream.count("use-application-dns.net"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_works_and_large_udp_answers_are_truncated() {
    let f = fixture("nxdomain").await;
    let m = tcp(f.server.addrs[0], &query("tcp.example", RecordType::A, false)).await;
    assert_eq!(addrs(&m), ["192.0.2.1".parse::<IpAddr>().unwrap()]);
    // Twelve 93-byte TXT strings do not fit a 512-byte UDP answer.
    let udp = udp_from("127.0.0.1", f.server.addrs[0], &query("big.example", RecordType::TXT, false)).await.unwrap();
    assert!(udp.metadata.truncation, "TC set");
    assert!(udp.answers.is_empty());
    let full = tcp(f.server.addrs[0], &query("big.example", RecordType::TXT, false)).await;
    assert_eq!(full.answers.len(), 12);
    assert!(!full.metadata.truncation);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_honours_ttls_and_coalesces_identical_questions() {
    let f = fixture("nxdomain").await;
    let first = ask(&f, "cached.example", RecordType::A).await;
    assert_eq!(first.answers[0].ttl, 300);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = ask(&f, "cached.example", RecordType::A).await;
    assert_eq!(f.upstream.count("cached.example"), 1, "served from the cache");
    assert!(second.answers[0].ttl < 300 && second.answers[0].ttl >= 298, "TTL counts down: {}", second.answers[0].ttl);

    ask(&f, "short.example", RecordType::A).await;
    ask(&f, "short.example", RecordType::A).await;
    assert_eq!(f.upstream.count("short.example"), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    ask(&f, "short.example", RecordType::A).await;
    assert_eq!(f.upstream.count("short.example"), 2, "re-asked after its 1 s TTL");

    // Negative answers are cached too, for the SOA minimum.
    assert_eq!(ask(&f, "nx.example", RecordType::A).await.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(ask(&f, "nx.example", RecordType::A).await.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(f.upstream.count("nx.example"), 1);

    // Twenty clients ask the same slow question at once: one upstream query.
    let addr = f.server.addrs[0];
    let asks: Vec<_> = (0..20).map(|_| tokio::spawn(async move { udp_from("127.0.0.1", addr, &query("slow.example", RecordType::A, true)).await })).collect();
    for a in asks {
        assert_eq!(addrs(&a.await.unwrap().unwrap()).len(), 1);
    }
    assert_eq!(f.upstream.count("slow.example"), 1);
    assert!(f.server.cache_stats().hits >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failure_is_a_quick_servfail() {
    let (dead, _) = {
        // A port with nothing behind it.
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        (s.local_addr().unwrap(), drop(s))
    };
    let dir = tempfile::tempdir().unwrap();
    let server = DnsServer::start(filter(dir.path(), dead, "nxdomain", ""), None).await.unwrap();
    let start = Instant::now();
    let m = udp_from("127.0.0.1", server.addrs[0], &query("anything.example", RecordType::A, true)).await.unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(ede(&m).map(|e| e.0), Some(22), "No Reachable Authority");
    assert!(start.elapsed() < Duration::from_secs(2), "{:?}", start.elapsed());
    // Blocks do not need the upstream.
    let m = udp_from("127.0.0.1", server.addrs[0], &query("casino.example", RecordType::A, true)).await.unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_packets_get_formerr_or_nothing_and_the_server_carries_on() {
    let f = fixture("nxdomain").await;
    let addr = f.server.addrs[0];
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut buf = vec![0u8; 4096];
    // A header that says one question, then nothing: FORMERR with our ID.
    let mut header_only = vec![0xAB, 0xCD, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0];
    s.send_to(&header_only, addr).await.unwrap();
    let (n, _) = tokio::time::timeout(Duration::from_secs(2), s.recv_from(&mut buf)).await.unwrap().unwrap();
    let m = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(m.metadata.id, 0xABCD);
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    // Too short for a header, or a response: silence.
    for junk in [vec![1, 2, 3], {
        header_only[2] = 0x81;
        header_only.clone()
    }] {
        s.send_to(&junk, addr).await.unwrap();
        assert!(tokio::time::timeout(Duration::from_millis(300), s.recv_from(&mut buf)).await.is_err());
    }
    // A pseudo-random flood of garbage.
    let mut x: u64 = 0x1234_5678;
    for _ in 0..500 {
        let len = (x % 300) as usize;
        let packet: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        s.send_to(&packet, addr).await.unwrap();
    }
    // A non-query opcode: NOTIMP.
    let mut notify = Message::new(7, MessageType::Query, OpCode::Notify);
    notify.add_query(Query::query(Name::from_ascii("example.").unwrap(), RecordType::SOA));
    let m = udp_from("127.0.0.1", addr, &notify.to_vec().unwrap()).await.unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::NotImp);
    // Garbage over TCP closes that connection only.
    let mut t = TcpStream::connect(addr).await.unwrap();
    t.write_all(&[0, 5, 1, 2, 3, 4, 5]).await.unwrap();
    assert_eq!(ask(&f, "still.example", RecordType::A).await.metadata.response_code, ResponseCode::NoError);
}

async fn doh_get(addr: SocketAddr, path: &str) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nAccept: application/dns-message\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    read_http(&mut s).await
}

async fn doh_post(addr: SocketAddr, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/dns-message\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())
            .as_bytes(),
    )
    .await
    .unwrap();
    s.write_all(body).await.unwrap();
    read_http(&mut s).await
}

async fn read_http(s: &mut TcpStream) -> (u16, Vec<u8>) {
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, raw[split + 4..].to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doh_identifies_the_device_by_token_and_refuses_unknown_tokens() {
    use base64::Engine as _;
    let f = fixture("nxdomain").await;
    let doh = f.server.doh_addr.unwrap();
    let q = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(query("games.example", RecordType::A, false));
    // laptop-1 is a pupil device: games blocked.
    let (status, body) = doh_get(doh, &format!("/dns-query/token-laptop-1-abcdef?dns={q}")).await;
    assert_eq!(status, 200);
    assert_eq!(Message::from_vec(&body).unwrap().metadata.response_code, ResponseCode::NXDomain);
    // laptop-2 belongs to a teacher: the owner's (staff) policy, games allowed. POST this time.
    let (status, body) = doh_post(doh, "/dns-query/token-laptop-2-abcdef", &query("games.example", RecordType::A, false)).await;
    assert_eq!(status, 200);
    let m = Message::from_vec(&body).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addrs(&m).len(), 1);
    let (status, _) = doh_get(doh, &format!("/dns-query/not-a-real-token-0000?dns={q}")).await;
    assert_eq!(status, 403);
    let (status, _) = doh_get(doh, "/dns-query/token-laptop-1-abcdef?dns=%%%").await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_swaps_policy_atomically() {
    let f = fixture("nxdomain").await;
    let staff = |name: &'static str| {
        let addr = f.server.addrs[0];
        async move { udp_from("127.0.0.2", addr, &query(name, RecordType::A, true)).await.unwrap().metadata.response_code }
    };
    assert_eq!(staff("games.example").await, ResponseCode::NoError);
    f.server.reload(filter(f.dir.path(), f.upstream_addr, "nxdomain", "\"games\""));
    assert_eq!(staff("games.example").await, ResponseCode::NXDomain);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_query_is_logged_and_flushed_on_shutdown() {
    let f = fixture("nxdomain").await;
    ask(&f, "logged.example", RecordType::A).await;
    ask(&f, "casino.example", RecordType::A).await;
    let dir = f.dir.path().join("logs");
    f.server.shutdown();
    let since: jiff::Timestamp = "2020-01-01T00:00:00Z".parse().unwrap();
    let entries = haven_dns::log::read(&dir, since, None, |_| true).unwrap();
    assert_eq!(entries.len(), 2);
    let blocked = entries.iter().find(|e| e.name == "casino.example").unwrap();
    assert_eq!(blocked.action, "block");
    assert_eq!(blocked.categories, ["gambling"]);
    assert_eq!(blocked.group.as_deref(), Some("pupils"));
    assert_eq!(blocked.client, "127.0.0.1");
    assert_eq!(blocked.rule.as_deref(), Some("policy:pupils:block-category"));
    assert_eq!(blocked.transport, "udp");
}

/// Keeps what the DNS filter tells the safeguarding service.
#[derive(Default)]
struct Told(std::sync::Mutex<Vec<(haven_accesslog::Seen, Vec<String>)>>);

impl haven_accesslog::Sink for Told {
    fn tell(&self, finding: haven_accesslog::Finding) {
        if let haven_accesslog::Finding::Blocked { seen, categories } = finding {
            self.0.lock().unwrap().push((seen, categories.iter().map(|c| c.id().to_string()).collect()));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_questions_are_told_to_the_safeguarding_service() {
    let (upstream_addr, _upstream) = start_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let told = Arc::new(Told::default());
    let server = DnsServer::start_with(filter(dir.path(), upstream_addr, "nxdomain", ""), None, Some(told.clone())).await.unwrap();
    let m = udp_from("127.0.0.1", server.addrs[0], &query("www.casino.example", RecordType::A, true)).await.unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    udp_from("127.0.0.1", server.addrs[0], &query("www.allowed.example", RecordType::A, true)).await.unwrap();
    let told = told.0.lock().unwrap().clone();
    assert_eq!(told.len(), 1, "only the block is told");
    let (seen, cats) = &told[0];
    assert_eq!((seen.school.as_deref(), seen.person.as_str(), seen.url.as_str()), (Some("s"), "device at 127.0.0.1", "www.casino.example"));
    assert_eq!(cats, &vec!["gambling".to_string()]);
    server.shutdown();
}

/// A test CA and a server certificate for `127.0.0.1` and `localhost` it
/// signed, written as PEM into `dir`; the CA's certificate (DER).
fn test_ca(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, rustls_pki_types::CertificateDer<'static>) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "Test school CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap().signed_by(&key, &issuer).unwrap();
    let (cert_path, key_path) = (dir.join("doh-cert.pem"), dir.join("doh-key.pem"));
    std::fs::write(&cert_path, format!("{}{}", leaf.pem(), ca_cert.pem())).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (cert_path, key_path, ca_cert.der().clone())
}

async fn doh_tls_get(addr: SocketAddr, roots: rustls::RootCertStore, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await?;
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut s = connector.connect(name, tcp).await?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut raw = Vec::new();
    // A TLS peer may close without close_notify after the answer: keep what came.
    let _ = s.read_to_end(&mut raw).await;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("an HTTP answer");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    Ok((head.split_whitespace().nth(1).unwrap().parse().unwrap(), raw[split + 4..].to_vec()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doh_over_tls_serves_a_device_off_site_with_its_owners_policy() {
    use base64::Engine as _;
    let (upstream_addr, _upstream) = start_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let mut f = filter(dir.path(), upstream_addr, "nxdomain", "");
    let (cert, key, ca) = test_ca(dir.path());
    f.settings.doh_tls = Some(haven_config::DohTls { listen: "127.0.0.1:0".parse().unwrap(), cert, key });
    let server = DnsServer::start(f, None).await.unwrap();
    let addr = server.doh_tls_addr.expect("listening for DoH over TLS");
    let mut trusting = rustls::RootCertStore::empty();
    trusting.add(ca).unwrap();
    let q = |name: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(query(name, RecordType::A, false));

    // laptop-1 is a pupil's: games blocked, at home as at school.
    let (status, body) = doh_tls_get(addr, trusting.clone(), &format!("/dns-query/token-laptop-1-abcdef?dns={}", q("games.example"))).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(Message::from_vec(&body).unwrap().metadata.response_code, ResponseCode::NXDomain);
    // laptop-2 is a teacher's: the staff policy allows games.
    let (status, body) = doh_tls_get(addr, trusting.clone(), &format!("/dns-query/token-laptop-2-abcdef?dns={}", q("games.example"))).await.unwrap();
    assert_eq!(status, 200);
    let m = Message::from_vec(&body).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addrs(&m).len(), 1);
    // An unknown token is refused over TLS too.
    let (status, _) = doh_tls_get(addr, trusting, &format!("/dns-query/not-a-real-token-0000?dns={}", q("games.example"))).await.unwrap();
    assert_eq!(status, 403);
    // A client that does not trust the school's CA cannot complete the handshake.
    assert!(doh_tls_get(addr, another_ca(), "/dns-query/token-laptop-1-abcdef").await.is_err(), "the client refuses a certificate it does not trust");
    assert!(server.drain(Duration::from_secs(2)).await);
}

/// Roots holding only some other CA than the test's.
fn another_ca() -> rustls::RootCertStore {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let mut roots = rustls::RootCertStore::empty();
    roots.add(p.self_signed(&key).unwrap().der().clone()).unwrap();
    roots
}
