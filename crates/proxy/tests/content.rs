//! Pages judged by their text as they stream through the proxy: local origins
//! serve harmful and benign pages (written for these tests), whole, slowly in
//! small pieces, and as a chatbot's event stream.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use haven_proxy::{Filter, ProxyServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const ADULT: &str = "<!doctype html><html><head><title>Hot videos</title><style>.x{}</style></head><body>\
    <h1>Free porn videos</h1><p>Hot MILF and hardcore sex videos, xxx clips, horny camgirls on live sex cams.</p>\
    <p>Nudes, erotic fetish and threesome videos. Adults only. NSFW.</p></body></html>";

const CASINO: &str = "<html><body><h1>Mega Spin Casino</h1><p>Claim your bonus today: 100 free spins and a 200% deposit bonus!</p>\
    <p>Play now on over 500 slot games, live dealer roulette and blackjack. Bet now on the jackpot.</p>\
    <small>Wagering requirements apply. Min deposit &pound;10.</small></body></html>";

const NEWS: &str = "<html><head><title>Council bans casino</title><script>var ad = 'free spins deposit bonus play now bet now';</script></head>\
    <body><article><h1>Council bans new casino on high street</h1><p>The council said on Tuesday that plans for a casino \
    on the high street had been rejected after residents raised concerns about gambling addiction.</p><p>According to the \
    Gambling Commission, problem gambling affects thousands of people. A government minister said the ban was a matter \
    for the council. Betting shops and online casino advertising have been criticised by charities, which say more \
    support is needed.</p><p>The operator said it would appeal. Research published last year found that young people see \
    gambling adverts every day, and the regulator is consulting on new legislation. GamCare runs a free helpline.</p>\
    </article></body></html>";

const SUPPORT: &str = "<html><body><h1>Self-harm: getting help</h1><p>If you are self-harming, you are not alone. Self-harm is when \
    somebody intentionally damages or injures their body, such as cutting. It is usually a way of coping with difficult \
    feelings.</p><p>Talk to someone you trust, or see a GP. You can call Samaritans free on 116 123, or text SHOUT to 85258. \
    Childline is free for young people.</p><p>Warning signs include unexplained cuts, bruises or burns. Treatment and \
    recovery: counselling can help. If someone has taken an overdose or is in danger, call 999. Thoughts of suicide are a \
    crisis: get help now. NHS mental health services can support you.</p></body></html>";

/// Benign text to pad a page past the hold bound.
fn filler(n: usize) -> String {
    let mut s = String::new();
    while s.len() < n {
        s.push_str("<p>The walkers crossed the valley in the morning and reached the hills by noon, where the views were fine.</p>\n");
    }
    s
}

/// One answer an origin gives: a head, then pieces of body with pauses before them.
struct Answer {
    content_type: &'static str,
    pieces: Vec<(Duration, String)>,
    /// Chunked (no length known) rather than `Content-Length`.
    chunked: bool,
}

fn whole(content_type: &'static str, body: &str) -> Answer {
    Answer { content_type, pieces: vec![(Duration::ZERO, body.to_string())], chunked: false }
}

fn sse(deltas: &[(u64, &str)]) -> Answer {
    let pieces = deltas
        .iter()
        .map(|(ms, text)| {
            let v = serde_json::json!({ "choices": [{ "delta": { "content": text } }] });
            (Duration::from_millis(*ms), format!("data: {v}\n\n"))
        })
        .chain([(Duration::ZERO, "data: [DONE]\n\n".to_string())])
        .collect();
    Answer { content_type: "text/event-stream", pieces, chunked: true }
}

type Hits = Arc<Mutex<HashMap<String, u32>>>;

/// An origin speaking raw HTTP/1.1, one answer per connection, counting requests by path.
async fn origin(routes: HashMap<&'static str, fn() -> Answer>) -> (SocketAddr, Hits) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let hits: Hits = Arc::default();
    let counted = hits.clone();
    let routes = Arc::new(routes);
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else { return };
            let routes = routes.clone();
            let hits = counted.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if s.read(&mut b).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(b[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                // A POST's body is small in these tests; read what its length says.
                let len = head.lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0)));
                let mut body = vec![0u8; len.unwrap_or(0)];
                let _ = s.read_exact(&mut body).await;
                let path = head.split(' ').nth(1).unwrap_or("/").to_string();
                *hits.lock().unwrap().entry(path.clone()).or_insert(0) += 1;
                let Some(route) = routes.get(path.as_str()) else {
                    let _ = s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
                    return;
                };
                let a = route();
                let framing = if a.chunked {
                    "Transfer-Encoding: chunked".to_string()
                } else {
                    format!("Content-Length: {}", a.pieces.iter().map(|p| p.1.len()).sum::<usize>())
                };
                let head = format!("HTTP/1.1 200 OK\r\nContent-Type: {}\r\n{framing}\r\nConnection: close\r\n\r\n", a.content_type);
                if s.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                for (pause, piece) in a.pieces {
                    tokio::time::sleep(pause).await;
                    let out = if a.chunked { format!("{:x}\r\n{piece}\r\n", piece.len()) } else { piece };
                    if s.write_all(out.as_bytes()).await.is_err() {
                        return;
                    }
                }
                if a.chunked {
                    let _ = s.write_all(b"0\r\n\r\n").await;
                }
                let _ = s.shutdown().await;
            });
        }
    });
    (addr, hits)
}

struct Setup {
    _dir: tempfile::TempDir,
    dir: std::path::PathBuf,
    proxy: SocketAddr,
    server: Option<ProxyServer>,
}

impl Drop for Setup {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown();
        }
    }
}

/// Pupils (on loopback) have adult, gambling, self-harm and profanity blocked,
/// staff (at 127.0.0.2) nothing;
/// `content` is the `[proxy.content]` table.
async fn start(content: &str) -> Setup {
    start_full("", content, |_| {}).await
}

/// [`start`] with more `[proxy]` settings.
async fn start_full(proxy: &str, content: &str, prepare: impl FnOnce(&Path)) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    prepare(&d);
    let config = format!(
        r#"
trust = "Test Trust"
[data]
dir = "data"
[proxy]
listen = ["127.0.0.1:0"]
allow_internal = ["127.0.0.0/8"]
origin_timeout_s = 5
{proxy}
[proxy.content]
{content}
[proxy.hosts]
"pages.test" = "127.0.0.1"
"chat.test" = "127.0.0.1"
[[school]]
id = "s"
name = "Test School"
[[group]]
id = "pupils"
name = "Pupils"
[[group]]
id = "staff"
name = "Staff"
[[policy]]
id = "pupils"
block = ["gambling", "adult", "self-harm", "profanity"]
[[policy]]
id = "staff"
block = []
[[network]]
cidr = "127.0.0.2/32"
school = "s"
group = "staff"
[[network]]
cidr = "127.0.0.0/8"
school = "s"
group = "pupils"
"#
    );
    let path = d.join("haven.toml");
    std::fs::write(&path, config).unwrap();
    let config = haven_config::Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let (lists, _) = haven_lists::compile(&config.lists, "now", &haven_lists::NoProgress).unwrap();
    let filter = Filter { policy: config.policy, lists: lists.into(), settings: config.proxy, classifier: haven_textscan::Classifier::shipped_shared() };
    let server = ProxyServer::start(filter, Some(&config.data_dir.join("logs")), &config.data_dir).await.unwrap_or_else(|e| panic!("{e}"));
    Setup { proxy: server.addrs[0], server: Some(server), dir: d, _dir: dir }
}

const ON: &str = "enabled = true\nhold_ms = 100";

fn get(url: &str) -> String {
    let host = url.split('/').nth(2).unwrap();
    format!("GET {url} HTTP/1.1\r\nHost: {host}\r\nAccept: text/html\r\nAccept-Encoding: gzip, br\r\nConnection: close\r\n\r\n")
}

fn post_chat(url: &str) -> String {
    let host = url.split('/').nth(2).unwrap();
    let body = r#"{"messages":[{"role":"user","content":"hi"}],"stream":true}"#;
    format!(
        "POST {url} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// The whole answer as bytes.
async fn ask(proxy: SocketAddr, request: &str) -> Vec<u8> {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    out
}

/// (status, head, body with any chunked framing removed).
fn parse(answer: &[u8]) -> (u16, String, Vec<u8>) {
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n").expect("a head");
    let head = String::from_utf8_lossy(&answer[..split]).to_ascii_lowercase();
    let mut rest = &answer[split + 4..];
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    if !head.contains("transfer-encoding: chunked") {
        return (status, head, rest.to_vec());
    }
    let mut body = Vec::new();
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        body.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
        rest = &rest[eol + 2 + size + 2..];
    }
    (status, head, body)
}

fn log_lines(dir: &Path) -> Vec<serde_json::Value> {
    std::thread::sleep(Duration::from_millis(400));
    let Ok(rd) = std::fs::read_dir(dir.join("data/logs")) else { return Vec::new() };
    rd.flatten()
        .flat_map(|f| std::fs::read_to_string(f.path()).unwrap_or_default().lines().map(str::to_string).collect::<Vec<_>>())
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect()
}

fn pages() -> HashMap<&'static str, fn() -> Answer> {
    let mut r: HashMap<&'static str, fn() -> Answer> = HashMap::new();
    r.insert("/adult", || whole("text/html; charset=utf-8", ADULT));
    r.insert("/casino", || whole("text/html", CASINO));
    r.insert("/news", || whole("text/html; charset=utf-8", NEWS));
    r.insert("/support", || whole("text/html", SUPPORT));
    r.insert("/adult.txt", || whole("text/plain", ADULT));
    // Benign for longer than the hold, then a casino in small pieces.
    r.insert("/slow-casino", || {
        let mut pieces = vec![(Duration::ZERO, format!("<html><body>{}", filler(2000)))];
        pieces.push((Duration::from_millis(300), "<p>BEFORE-THE-TURN</p>".into()));
        for piece in CASINO.as_bytes().chunks(7) {
            pieces.push((Duration::from_millis(5), String::from_utf8_lossy(piece).into_owned()));
        }
        pieces.push((Duration::from_millis(20), format!("<p>TAIL-MARKER</p>{}</body></html>", filler(500))));
        Answer { content_type: "text/html", pieces, chunked: true }
    });
    // Benign and slow: its first bytes must not wait for the rest.
    r.insert("/slow-fine", || {
        let pieces = vec![(Duration::ZERO, "<html><body><p>FIRST</p>".to_string()), (Duration::from_millis(1500), format!("{}</body></html>", filler(3000)))];
        Answer { content_type: "text/html", pieces, chunked: true }
    });
    r.insert("/chat-harm", || {
        sse(&[
            (0, "Sure, here are "),
            (0, "some ideas. "),
            (250, "BEFORE-THE-TURN You could try Mega Spin Casino: claim your bonus of 100 free "),
            (10, "spins and a deposit bonus, play now on slot games, live dealer roulette and black"),
            (10, "jack. Bet now on the jackpot, wagering requirements apply. "),
            (50, "TAIL-MARKER and more."),
        ])
    });
    r.insert("/chat-fine", || sse(&[(0, "Photosynthesis is how plants "), (150, "make food from light, "), (10, "water and carbon dioxide.")]));
    r
}

#[tokio::test]
async fn harmful_pages_are_blocked_before_a_byte_and_logged_as_content() {
    let (o, _) = origin(pages()).await;
    let s = start(ON).await;
    for (path, category) in [("/adult", "adult"), ("/casino", "gambling")] {
        let a = ask(s.proxy, &get(&format!("http://pages.test:{}{path}", o.port()))).await;
        let (status, head, body) = parse(&a);
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, 403, "{path}: {head}");
        assert!(head.contains(&format!("x-haven-blocked: {category}")), "{head}");
        assert!(body.contains("This page is blocked") && !body.contains("free spins") && !body.contains("camgirls"), "{body}");
    }
    let logged = log_lines(&s.dir);
    for category in ["adult", "gambling"] {
        let line = logged.iter().find(|l| l["rule"] == format!("content:{category}")).unwrap_or_else(|| panic!("no content:{category} line: {logged:?}"));
        assert_eq!(line["action"], "block");
        assert_eq!(line["status"], 403);
        assert!(line["categories"].as_array().unwrap().iter().any(|c| c == category), "{line}");
        assert!(line["reference"].as_str().unwrap().starts_with("HVN-"), "{line}");
    }
    // Not HTML: not read.
    let (status, _, _) = parse(&ask(s.proxy, &get(&format!("http://pages.test:{}/adult.txt", o.port()))).await);
    assert_eq!(status, 200);
}

#[tokio::test]
async fn benign_pages_pass_byte_for_byte() {
    let (o, _) = origin(pages()).await;
    let s = start(ON).await;
    for (path, page) in [("/news", NEWS), ("/support", SUPPORT)] {
        let (status, head, body) = parse(&ask(s.proxy, &get(&format!("http://pages.test:{}{path}", o.port()))).await);
        assert_eq!(status, 200, "{path}: {head}");
        assert_eq!(String::from_utf8(body).unwrap(), page, "{path} untouched");
        assert!(head.contains(&format!("content-length: {}", page.len())), "a page read whole keeps its length: {head}");
    }
}

#[tokio::test]
async fn with_content_reading_off_harmful_pages_pass() {
    let (o, hits) = origin(pages()).await;
    let s = start("enabled = false").await;
    let (status, _, body) = parse(&ask(s.proxy, &get(&format!("http://pages.test:{}/casino", o.port()))).await);
    assert_eq!((status, String::from_utf8(body).unwrap().as_str()), (200, CASINO));
    assert_eq!(hits.lock().unwrap()["/casino"], 1);
}

#[tokio::test]
async fn a_page_turning_harmful_after_the_hold_is_replaced_mid_stream() {
    let (o, _) = origin(pages()).await;
    let s = start(ON).await;
    let (status, head, body) = parse(&ask(s.proxy, &get(&format!("http://pages.test:{}/slow-casino", o.port()))).await);
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 200, "the head went before the page turned: {head}");
    assert!(!head.contains("content-length"), "{head}");
    assert!(body.contains("BEFORE-THE-TURN"), "what came before flowed");
    assert!(body.contains("id=\"haven-blocked\"") && body.contains("This page is blocked"), "the block page replaces the rest");
    assert!(!body.contains("TAIL-MARKER"), "nothing after the verdict is sent");
    assert!(body.trim_end().ends_with("</script>"), "the answer ends with the replacement");
    let logged = log_lines(&s.dir);
    let late = logged.iter().find(|l| l["rule"] == "content:gambling").unwrap_or_else(|| panic!("{logged:?}"));
    assert_eq!((late["action"].as_str(), late["status"].as_u64()), (Some("block"), Some(200)));
    let reference = late["reference"].as_str().unwrap();
    assert!(body.contains(reference), "the replacement shows the logged reference");
}

#[tokio::test]
async fn a_benign_slow_page_is_held_no_longer_than_the_bound() {
    let (o, _) = origin(pages()).await;
    let s = start(ON).await;
    let mut c = TcpStream::connect(s.proxy).await.unwrap();
    let started = Instant::now();
    c.write_all(get(&format!("http://pages.test:{}/slow-fine", o.port())).as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("FIRST") {
        let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0);
        seen.extend_from_slice(&buf[..n]);
    }
    let first = started.elapsed();
    // hold_ms = 100: the first bytes come after the hold, long before the origin's second piece (1.5 s).
    assert!(first < Duration::from_millis(600), "first bytes after {first:?}");
    let _ = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut seen)).await;
    let (status, _, body) = parse(&seen);
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).ends_with("</body></html>"), "the whole page came");
}

#[tokio::test]
async fn a_chatbot_answer_turning_harmful_is_cut_with_a_last_event() {
    let (o, _) = origin(pages()).await;
    let s = start(ON).await;
    let (status, head, body) = parse(&ask(s.proxy, &post_chat(&format!("http://chat.test:{}/chat-harm", o.port()))).await);
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 200, "{head}");
    assert!(body.contains("Sure, here are "), "the answer's start flowed: {body}");
    assert!(body.contains("event: haven-blocked") && body.contains("Haven stopped this answer"), "{body}");
    assert!(body.ends_with("data: [DONE]\n\n"), "{body}");
    assert!(!body.contains("TAIL-MARKER"), "{body}");
    let logged = log_lines(&s.dir);
    assert!(logged.iter().any(|l| l["rule"] == "content:gambling" && l["action"] == "block" && l["qtype"] == "POST"), "{logged:?}");

    let chat_fine = format!("http://chat.test:{}/chat-fine", o.port());
    let (status, _, body) = parse(&ask(s.proxy, &post_chat(&chat_fine)).await);
    let expected: String =
        sse(&[(0, "Photosynthesis is how plants "), (0, "make food from light, "), (0, "water and carbon dioxide.")]).pieces.into_iter().map(|p| p.1).collect();
    assert_eq!((status, String::from_utf8(body).unwrap()), (200, expected), "a benign answer passes whole");
}

#[tokio::test]
async fn a_page_judged_once_is_decided_from_memory() {
    let (o, hits) = origin(pages()).await;
    let s = start(ON).await;
    let casino = format!("http://pages.test:{}/casino", o.port());
    for _ in 0..2 {
        let (status, head, _) = parse(&ask(s.proxy, &get(&casino)).await);
        assert_eq!(status, 403, "{head}");
    }
    assert_eq!(hits.lock().unwrap()["/casino"], 1, "the second visit never reached the origin");
    let news = format!("http://pages.test:{}/news", o.port());
    for _ in 0..2 {
        let (status, _, body) = parse(&ask(s.proxy, &get(&news)).await);
        assert_eq!((status, body.len()), (200, NEWS.len()));
    }
    assert_eq!(hits.lock().unwrap()["/news"], 2, "a benign page is still fetched, only not read again");
    let logged = log_lines(&s.dir);
    assert_eq!(logged.iter().filter(|l| l["rule"] == "content:gambling").count(), 2, "both visits logged as blocks: {logged:?}");
}

#[tokio::test]
async fn the_origin_is_asked_for_html_uncompressed() {
    // An origin that shows what it was asked.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        let Ok((mut s, _)) = l.accept().await else { return };
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && s.read(&mut b).await.unwrap_or(0) == 1 {
            head.push(b[0]);
        }
        let body = String::from_utf8_lossy(&head).to_ascii_lowercase();
        let answer = format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        let _ = s.write_all(answer.as_bytes()).await;
    });
    let s = start(ON).await;
    let (_, _, body) = parse(&ask(s.proxy, &get(&format!("http://pages.test:{port}/"))).await);
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("accept-encoding: identity") && !body.contains("br"), "{body}");
}

/// A TLS origin for `pages.test`, signed by its own test CA, serving the adult page; (address, CA PEM).
async fn https_adult_origin() -> (SocketAddr, String) {
    use http_body_util::Full;
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.distinguished_name.push(rcgen::DnType::CommonName, "Test origin CA");
    p.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature];
    let ca_pem = p.self_signed(&ca_key).unwrap().pem();
    let issuer = rcgen::Issuer::new(p, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["pages.test".to_string()]).unwrap().signed_by(&key, &issuer).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], rustls_pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap())
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(s).await else { return };
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(
                        hyper::Response::builder().header("content-type", "text/html").body(Full::new(bytes::Bytes::from_static(ADULT.as_bytes()))).unwrap(),
                    )
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(tls), svc).await;
            });
        }
    });
    (addr, ca_pem)
}

#[tokio::test]
async fn inside_inspected_https_pages_are_read_by_default() {
    use rustls_pki_types::pem::PemObject;
    let (o, origin_ca) = https_adult_origin().await;
    let roots = tempfile::tempdir().unwrap();
    let roots_path = roots.path().join("origin-ca.pem");
    std::fs::write(&roots_path, &origin_ca).unwrap();
    let extra = format!("inspect = true\nca_dir = \"ca\"\norigin_roots = \"{}\"\nconnect_ports = [{}]", roots_path.display(), o.port());
    // No [proxy.content] settings: reading is on because inspection is.
    let s = start_full(&extra, "", |d| {
        haven_proxy::tls::init_ca(&d.join("ca"), "Test Trust", (2026, 11, 23), false).unwrap();
    })
    .await;
    let school_ca = std::fs::read_to_string(haven_proxy::tls::ca_paths(&s.dir.join("ca")).0).unwrap();
    let mut c = TcpStream::connect(s.proxy).await.unwrap();
    c.write_all(format!("CONNECT pages.test:{0} HTTP/1.1\r\nHost: pages.test:{0}\r\n\r\n", o.port()).as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(c.read(&mut b).await.unwrap(), 1);
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&head));
    let mut trusted = rustls::RootCertStore::empty();
    trusted.add(rustls_pki_types::CertificateDer::from_pem_slice(school_ca.as_bytes()).unwrap()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(trusted)
        .with_no_client_auth();
    let mut tls =
        tokio_rustls::TlsConnector::from(Arc::new(client)).connect(rustls_pki_types::ServerName::try_from("pages.test".to_string()).unwrap(), c).await.unwrap();
    tls.write_all(b"GET /adult HTTP/1.1\r\nHost: pages.test\r\nAccept: text/html\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut out)).await;
    let (status, head, body) = parse(&out);
    assert_eq!(status, 403, "{head}");
    assert!(String::from_utf8_lossy(&body).contains("This page is blocked"));
    let logged = log_lines(&s.dir);
    assert!(logged.iter().any(|l| l["rule"] == "content:adult" && l["transport"] == "https"), "{logged:?}");
}

#[tokio::test]
async fn whether_a_page_category_blocks_is_the_persons_policy() {
    let (o, hits) = origin(pages()).await;
    let s = start(ON).await;
    let casino = format!("http://pages.test:{}/casino", o.port());
    let as_staff = || async {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let mut c = sock.connect(s.proxy).await.unwrap();
        c.write_all(get(&casino).as_bytes()).await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut out)).await;
        parse(&out)
    };
    let (status, _, body) = as_staff().await;
    assert_eq!((status, String::from_utf8(body).unwrap().as_str()), (200, CASINO), "staff block no gambling");
    let (status, _, _) = parse(&ask(s.proxy, &get(&casino)).await);
    assert_eq!(status, 403, "pupils do; the verdict was remembered from the staff visit");
    assert_eq!(hits.lock().unwrap()["/casino"], 1);
    let (status, _, body) = as_staff().await;
    assert_eq!((status, body.len()), (200, CASINO.len()), "a remembered verdict is still decided per person");
    assert_eq!(hits.lock().unwrap()["/casino"], 2);
}
