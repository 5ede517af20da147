//! The proxy end to end on loopback: a real listener, real origins (HTTP, and
//! HTTPS with a test CA), real clients speaking raw HTTP/1.1 and TLS.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use haven_proxy::{Filter, ProxyServer};
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An origin that answers every request with what it received: the request
/// line and headers, one per line. `/slow` never answers.
async fn echo(req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    if req.uri().path() == "/slow" {
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
    let mut out = format!("{} {}\n", req.method(), req.uri());
    for (k, v) in req.headers() {
        out.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("?")));
    }
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    out.push_str(&format!("body: {}\n", String::from_utf8_lossy(&body)));
    Ok(Response::builder().header("connection", "keep-alive").header("keep-alive", "timeout=5").body(Full::new(Bytes::from(out))).unwrap())
}

async fn http_origin() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(s), hyper::service::service_fn(echo)));
        }
    });
    addr
}

/// A test CA and an HTTPS origin for `secure.test` signed by it.
struct TestCa {
    pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

fn test_ca() -> TestCa {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.distinguished_name.push(rcgen::DnType::CommonName, "Test origin CA");
    p.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature];
    let cert = p.self_signed(&key).unwrap();
    TestCa { pem: cert.pem(), issuer: rcgen::Issuer::new(p, key) }
}

async fn https_origin(ca: &TestCa, names: &[&str]) -> SocketAddr {
    let key = rcgen::KeyPair::generate().unwrap();
    let p = rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    let cert = p.signed_by(&key, &ca.issuer).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], PrivateKeyDer::try_from(key.serialize_der()).unwrap())
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(s).await {
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), hyper::service::service_fn(echo)).await;
                }
            });
        }
    });
    addr
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

/// A trust with pupils (gambling and a URL blocked) and staff (nothing
/// blocked), names pointed at the test origins, and `extra` in `[proxy]`.
/// The test origins are on loopback, which the proxy only reaches because
/// `allow_internal` says so.
async fn start(origin_port: u16, extra: &str, prepare: impl FnOnce(&Path)) -> Setup {
    start_with(origin_port, &format!("allow_internal = [\"127.0.0.0/8\", \"::1\"]\n{extra}"), prepare).await
}

/// [`start`] without `allow_internal`: loopback is out of bounds.
async fn start_with(origin_port: u16, extra: &str, prepare: impl FnOnce(&Path)) -> Setup {
    start_telling(origin_port, extra, prepare, None).await
}

/// [`start_with`], telling `sink` what the safeguarding service should know.
async fn start_telling(origin_port: u16, extra: &str, prepare: impl FnOnce(&Path), sink: Option<Arc<dyn haven_accesslog::Sink>>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    std::fs::write(d.join("gambling.txt"), "bet.test\n").unwrap();
    std::fs::write(d.join("iwf.txt"), "iwf-test.example\n").unwrap();
    std::fs::write(d.join("urls.txt"), "secure.test/forbidden\nplain.test/forbidden\n").unwrap();
    prepare(&d);
    // Short, unless the test sets its own.
    let idle = if extra.lines().any(|l| l.starts_with("idle_timeout_s")) { "" } else { "idle_timeout_s = 1" };
    let config = format!(
        r#"
trust = "Test Trust"
[data]
dir = "data"
[proxy]
listen = ["127.0.0.1:0"]
connect_ports = [443, {origin_port}]
{idle}
origin_timeout_s = 1
max_header_bytes = 8192
{extra}
[proxy.hosts]
"plain.test" = "127.0.0.1"
"bet.test" = "127.0.0.1"
"secure.test" = "127.0.0.1"
"bank.test" = "127.0.0.1"
"www.google.com" = "127.0.0.1"
"www.youtube.com" = "127.0.0.1"
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
block = ["gambling", "adult"]
block_sites = ["plain.test/forbidden", "secure.test/forbidden"]
safe_search = true
youtube = "strict"
[[policy]]
id = "staff"
block = []
safe_search = false
youtube = "off"
[[user]]
id = "pupil1"
group = "pupils"
school = "s"
[[user]]
id = "staff1"
group = "staff"
school = "s"
[[network]]
cidr = "127.0.0.0/8"
school = "s"
group = "pupils"
[[list]]
name = "gambling"
format = "domains"
category = "gambling"
path = "gambling.txt"
[[list]]
name = "iwf"
format = "domains"
category = "csam"
path = "iwf.txt"
"#
    );
    let path = d.join("haven.toml");
    std::fs::write(&path, config).unwrap();
    let config = haven_config::Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let (lists, _) = haven_lists::compile(&config.lists, "now", &haven_lists::NoProgress).unwrap();
    let filter = Filter { policy: config.policy, lists: lists.into(), settings: config.proxy, classifier: haven_textscan::Classifier::shipped_shared() };
    let server = ProxyServer::start_with(filter, Some(&config.data_dir.join("logs")), &config.data_dir, sink).await.unwrap_or_else(|e| panic!("{e}"));
    Setup { proxy: server.addrs[0], server: Some(server), dir: d, _dir: dir }
}

/// Sends raw bytes and reads the whole answer (the request should say `Connection: close`).
async fn raw(proxy: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    read_all(&mut s).await
}

async fn read_all(s: &mut (impl AsyncRead + Unpin)) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn get(url: &str, extra: &str) -> String {
    let host = url.split('/').nth(2).unwrap();
    format!("GET {url} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n")
}

fn basic(user: &str, pass: &str) -> String {
    use base64::Engine;
    format!("Proxy-Authorization: Basic {}\r\n", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}")))
}

fn status(answer: &str) -> u16 {
    answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn log_lines(dir: &Path) -> Vec<serde_json::Value> {
    std::thread::sleep(Duration::from_millis(400));
    let Ok(rd) = std::fs::read_dir(dir.join("data/logs")) else { return Vec::new() };
    rd.flatten()
        .flat_map(|f| std::fs::read_to_string(f.path()).unwrap_or_default().lines().map(str::to_string).collect::<Vec<_>>())
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect()
}

#[tokio::test]
async fn allows_and_strips_hop_by_hop_headers() {
    let origin = http_origin().await;
    let s = start(origin.port(), "", |_| {}).await;
    let a = raw(
        s.proxy,
        &get(
            &format!("http://plain.test:{}/hello?x=1", origin.port()),
            "Connection: x-secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=9\r\nX-Kept: yes\r\nProxy-Authorization: Basic Zm9vOmJhcg==\r\n",
        ),
    )
    .await;
    assert_eq!(status(&a), 200, "{a}");
    assert!(a.contains("GET /hello?x=1"), "origin gets origin-form: {a}");
    assert!(a.contains("x-kept: yes"));
    assert!(!a.contains("x-secret:") && !a.contains("keep-alive: timeout=9") && !a.contains("proxy-authorization"), "{a}");
    assert!(a.to_lowercase().contains("via: 1.1 haven"));
    assert!(!a.contains("keep-alive: timeout=5"), "the origin's hop-by-hop headers stay behind too: {a}");
    let logged = log_lines(&s.dir);
    assert!(logged.iter().any(|l| l["action"] == "allow" && l["transport"] == "http" && l["status"] == 200), "{logged:?}");
}

#[tokio::test]
async fn keeps_the_connection_alive_and_streams_a_request_body() {
    let origin = http_origin().await;
    let s = start(origin.port(), "", |_| {}).await;
    let mut c = TcpStream::connect(s.proxy).await.unwrap();
    let url = format!("http://plain.test:{}/post", origin.port());
    for i in 0..3 {
        let body = format!("part {i}");
        let req = format!("POST {url} HTTP/1.1\r\nHost: plain.test\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n", body.len());
        c.write_all(req.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf)).await.unwrap().unwrap();
        let a = String::from_utf8_lossy(&buf[..n]);
        assert_eq!(status(&a), 200, "request {i} on one connection: {a}");
        assert!(a.contains(&format!("body: part {i}")), "{a}");
    }
}

#[tokio::test]
async fn blocks_with_a_page_whose_buttons_become_reports() {
    let origin = http_origin().await;
    let s = start(origin.port(), "", |_| {}).await;
    let a = raw(s.proxy, &get(&format!("http://bet.test:{}/", origin.port()), "")).await;
    assert_eq!(status(&a), 403, "{a}");
    assert!(a.contains("This page is blocked") && a.contains("Gambling"), "{a}");
    assert!(a.contains("x-haven-blocked: gambling"));
    let reference = a.split("x-haven-reference: ").nth(1).unwrap().lines().next().unwrap().trim().to_string();
    assert!(a.contains(&reference) && reference.starts_with("HVN-"));
    assert!(a.contains("blocks sites about gambling for Pupils"), "a reason a child can read: {a}");
    // The "worrying" button, through the proxy as a browser would send it.
    let form = format!("ref={reference}&note=it+showed+a+scary+video");
    let post = format!(
        "POST http://block.haven.invalid/worry HTTP/1.1\r\nHost: block.haven.invalid\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    );
    let t = raw(s.proxy, &post).await;
    assert_eq!(status(&t), 200, "{t}");
    assert!(t.contains("Childline"));
    let forged = raw(s.proxy, &post.replace(&reference, "HVN-0000-0000")).await;
    assert_eq!(status(&forged), 400, "only a real block can be reported");
    let reports = haven_proxy::reports::read(&haven_proxy::reports_path(&s.dir.join("data"))).unwrap();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].kind, "worry");
    assert_eq!(reports[0].note, "it showed a scary video");
    assert!(reports[0].url.starts_with("http://bet.test:"));
    // A URL entry blocks the path, not the site.
    assert_eq!(status(&raw(s.proxy, &get(&format!("http://plain.test:{}/forbidden/x", origin.port()), "")).await), 403);
    assert_eq!(status(&raw(s.proxy, &get(&format!("http://plain.test:{}/allowed", origin.port()), "")).await), 200);
    let logged = log_lines(&s.dir);
    assert!(logged.iter().any(|l| l["action"] == "block" && l["reference"] == reference.as_str()), "{logged:?}");
}

#[tokio::test]
async fn a_page_on_the_iwf_list_gets_the_iwfs_wording_without_its_address_or_buttons() {
    let origin = http_origin().await;
    let s = start(origin.port(), "", |_| {}).await;
    let a = raw(s.proxy, &get(&format!("http://iwf-test.example:{}/some/page", origin.port()), "")).await;
    assert_eq!(status(&a), 403, "{a}");
    assert!(a.contains(haven_proxy::page::IWF_DENIED), "{a}");
    assert!(a.contains("x-haven-blocked: csam"), "{a}");
    let body = a.split("\r\n\r\n").nth(1).unwrap_or_default();
    assert!(!body.contains("iwf-test.example") && !body.contains("/some/page"), "the address is not shown again: {body}");
    assert!(!body.contains("<form") && !body.contains("block.haven.invalid") && !body.contains("This page is blocked"), "{body}");
    // Its reference cannot be reported from a crafted form either.
    let reference = a.split("x-haven-reference: ").nth(1).unwrap().lines().next().unwrap().trim().to_string();
    let form = format!("ref={reference}&note=x");
    let post = format!(
        "POST http://block.haven.invalid/review HTTP/1.1\r\nHost: block.haven.invalid\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    );
    assert_eq!(status(&raw(s.proxy, &post).await), 400);
}

#[tokio::test]
async fn search_is_forced_safe_and_its_terms_classified() {
    let origin = http_origin().await;
    let s = start(origin.port(), "", |_| {}).await;
    let a = raw(s.proxy, &get(&format!("http://www.google.com:{}/search?q=how+to+kill+myself&safe=off", origin.port()), "")).await;
    assert_eq!(status(&a), 200, "{a}");
    assert!(a.contains("safe=active") && !a.contains("safe=off"), "{a}");
    let y = raw(s.proxy, &get(&format!("http://www.youtube.com:{}/results?search_query=minecraft", origin.port()), "")).await;
    assert!(y.contains("youtube-restrict: Strict"), "{y}");
    // Suggestions while typing are not searches.
    raw(s.proxy, &get(&format!("http://www.google.com:{}/complete/search?q=how+to+ki", origin.port()), "")).await;
    let logged = log_lines(&s.dir);
    let searches: Vec<&serde_json::Value> = logged.iter().filter(|l| l.get("search").is_some()).collect();
    assert_eq!(searches.len(), 2, "{logged:?}");
    let g = searches.iter().find(|l| l["search"] == "how to kill myself").unwrap();
    assert_eq!(g["action"], "safesearch");
    assert!(g["concerns"][0].as_str().unwrap().starts_with("Vulnerable person:"), "{g}");
    assert!(g["level"].as_u64().unwrap() >= 4);
    // Staff are not forced.
    let staff_setup = start(origin.port(), "auth = \"optional\"", |d| {
        haven_proxy::auth::Accounts::set_password(&d.join("data/proxy-accounts"), "staff1", "staff-password").unwrap();
    })
    .await;
    let a = raw(staff_setup.proxy, &get(&format!("http://www.google.com:{}/search?q=x&safe=off", origin.port()), &basic("staff1", "staff-password"))).await;
    assert!(a.contains("safe=off"), "{a}");
}

#[tokio::test]
async fn authentication_and_groups() {
    let origin = http_origin().await;
    let s = start(origin.port(), "auth = \"required\"", |d| {
        let f = d.join("data/proxy-accounts");
        haven_proxy::auth::Accounts::set_password(&f, "pupil1", "pupil-password").unwrap();
        haven_proxy::auth::Accounts::set_password(&f, "staff1", "staff-password").unwrap();
    })
    .await;
    let url = format!("http://bet.test:{}/", origin.port());
    let none = raw(s.proxy, &get(&url, "")).await;
    assert_eq!(status(&none), 407, "{none}");
    assert!(none.contains("proxy-authenticate: Basic realm="), "{none}");
    let wrong = raw(s.proxy, &get(&url, &basic("pupil1", "nope"))).await;
    assert_eq!(status(&wrong), 407);
    assert_eq!(status(&raw(s.proxy, &get(&url, "Proxy-Authorization: Bearer x\r\n")).await), 407);
    let pupil = raw(s.proxy, &get(&url, &basic("pupil1", "pupil-password"))).await;
    assert_eq!(status(&pupil), 403, "pupils: gambling blocked");
    let staff = raw(s.proxy, &get(&url, &basic("Staff1", "staff-password"))).await;
    assert_eq!(status(&staff), 200, "staff: allowed: {staff}");
    let logged = log_lines(&s.dir);
    assert!(logged.iter().any(|l| l["user"] == "staff1" && l["group"] == "staff" && l["action"] == "allow"), "{logged:?}");
    assert!(logged.iter().any(|l| l["user"] == "pupil1" && l["action"] == "block"));
    assert!(logged.iter().any(|l| l["action"] == "denied"));
    assert!(!logged.iter().any(|l| l.to_string().contains("password")), "no secrets in logs");
}

#[tokio::test]
async fn origin_failures_get_short_pages() {
    let origin = http_origin().await;
    let s = start(origin.port(), "", |_| {}).await;
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
    let a = raw(s.proxy, &get(&format!("http://plain.test:{closed}/"), "")).await;
    assert_eq!(status(&a), 502, "{a}");
    assert!(a.contains("could not be reached"));
    let t = raw(s.proxy, &get(&format!("http://plain.test:{}/slow", origin.port()), "")).await;
    assert_eq!(status(&t), 504, "{t}");
    let not_proxy = raw(s.proxy, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status(&not_proxy), 400);
    assert!(not_proxy.contains("set it as the browser"));
}

#[tokio::test]
async fn oversized_heads_and_slow_clients_are_cut_off() {
    let origin = http_origin().await;
    let s = start(origin.port(), "", |_| {}).await;
    let huge = format!("X-Big: {}\r\n", "a".repeat(20_000));
    let a = raw(s.proxy, &get(&format!("http://plain.test:{}/", origin.port()), &huge)).await;
    assert_eq!(status(&a), 431, "{}", &a[..a.len().min(200)]);
    // A client that starts a request and stalls is closed after the idle timeout (1 s).
    let mut c = TcpStream::connect(s.proxy).await.unwrap();
    c.write_all(b"GET http://plain.test/ HTTP/1.1\r\nHost: pla").await.unwrap();
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut buf)).await;
    assert!(r.is_ok(), "closed, not left hanging");
    assert!(started.elapsed() < Duration::from_secs(4));
    // And an idle keep-alive connection too.
    let mut c = TcpStream::connect(s.proxy).await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut buf)).await;
    assert!(r.is_ok(), "an idle connection is closed");
}

/// CONNECT, then the reply head; the stream stays open for the tunnel.
async fn connect(proxy: SocketAddr, target: &str, extra: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{extra}\r\n").as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut b)).await {
            Ok(Ok(1)) => head.push(b[0]),
            _ => break,
        }
    }
    (s, String::from_utf8_lossy(&head).into_owned())
}

fn client_config(trusted_pem: &[&str]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for pem in trusted_pem {
        roots.add(CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()).unwrap();
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// TLS over the tunnel, then one GET; the answer, or the TLS error.
async fn tls_get(stream: TcpStream, name: &str, trusted: &[&str], path: &str) -> Result<String, String> {
    let connector = tokio_rustls::TlsConnector::from(client_config(trusted));
    let mut tls = connector.connect(ServerName::try_from(name.to_string()).unwrap(), stream).await.map_err(|e| e.to_string())?;
    tls.write_all(format!("GET {path} HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n").as_bytes()).await.map_err(|e| e.to_string())?;
    Ok(read_all(&mut tls).await)
}

fn write_pem(dir: &Path, pem: &str) -> std::path::PathBuf {
    let p = dir.join("origin-ca.pem");
    std::fs::write(&p, pem).unwrap();
    p
}

#[tokio::test]
async fn connect_by_host_tunnels_or_refuses_readably() {
    let ca = test_ca();
    let origin = https_origin(&ca, &["secure.test", "bet.test"]).await;
    let s = start(origin.port(), "", |_| {}).await;
    let (stream, head) = connect(s.proxy, &format!("secure.test:{}", origin.port()), "").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let a = tls_get(stream, "secure.test", &[&ca.pem], "/forbidden/page").await.unwrap();
    assert!(a.contains("GET /forbidden/page"), "without inspection the path is not seen: {a}");
    let (_, head) = connect(s.proxy, &format!("bet.test:{}", origin.port()), "").await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    assert!(head.contains("x-haven-blocked: gambling"), "{head}");
    let (_, head) = connect(s.proxy, "secure.test:22", "").await;
    assert!(head.starts_with("HTTP/1.1 403"), "ports other than the allowed ones: {head}");
}

#[tokio::test]
async fn connect_to_an_address_is_decided_on_the_tls_name() {
    let ca = test_ca();
    let origin = https_origin(&ca, &["secure.test", "bet.test"]).await;
    let s = start(origin.port(), "", |_| {}).await;
    let target = format!("127.0.0.1:{}", origin.port());
    let (stream, head) = connect(s.proxy, &target, "").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let a = tls_get(stream, "secure.test", &[&ca.pem], "/").await.unwrap();
    assert!(a.contains("GET /"), "{a}");
    let (stream, _) = connect(s.proxy, &target, "").await;
    assert!(tls_get(stream, "bet.test", &[&ca.pem], "/").await.is_err(), "a blocked name closes the tunnel");
    let logged = log_lines(&s.dir);
    assert!(logged.iter().any(|l| l["transport"] == "tls-sni" && l["name"] == "bet.test" && l["action"] == "block"), "{logged:?}");
    assert!(logged.iter().any(|l| l["transport"] == "tls-sni" && l["name"] == "secure.test" && l["action"] == "allow"));
}

#[tokio::test]
async fn inspection_decides_on_the_full_url_except_for_exempt_hosts() {
    let origin_ca = test_ca();
    let origin = https_origin(&origin_ca, &["secure.test", "bank.test"]).await;
    let dir = tempfile::tempdir().unwrap();
    let roots = write_pem(dir.path(), &origin_ca.pem);
    let extra = format!("inspect = true\nca_dir = \"ca\"\norigin_roots = \"{}\"\ninspect_exempt = [\"bank.test\"]", roots.display());
    let s = start(origin.port(), &extra, |d| {
        haven_proxy::tls::init_ca(&d.join("ca"), "Test Trust", (2026, 11, 23), false).unwrap();
    })
    .await;
    let school_ca = std::fs::read_to_string(haven_proxy::tls::ca_paths(&s.dir.join("ca")).0).unwrap();
    // Inspected: the school CA's leaf, the path decided.
    let (stream, head) = connect(s.proxy, &format!("secure.test:{}", origin.port()), "").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let a = tls_get(stream, "secure.test", &[&school_ca], "/fine?q=1").await.unwrap();
    assert!(a.starts_with("HTTP/1.1 200") && a.contains("GET /fine?q=1"), "{a}");
    let (stream, _) = connect(s.proxy, &format!("secure.test:{}", origin.port()), "").await;
    let b = tls_get(stream, "secure.test", &[&school_ca], "/forbidden/x").await.unwrap();
    assert!(b.starts_with("HTTP/1.1 403") && b.contains("This page is blocked"), "{b}");
    // The origin's own certificate is still checked: trusting only the school CA works.
    let (stream, _) = connect(s.proxy, &format!("secure.test:{}", origin.port()), "").await;
    assert!(tls_get(stream, "secure.test", &[&origin_ca.pem], "/").await.is_err(), "inspected: the origin's cert is not what the client sees");
    // Exempt: the origin's own certificate, untouched.
    let (stream, _) = connect(s.proxy, &format!("bank.test:{}", origin.port()), "").await;
    let c = tls_get(stream, "bank.test", &[&origin_ca.pem], "/account").await.unwrap();
    assert!(c.contains("GET /account"), "{c}");
    let logged = log_lines(&s.dir);
    assert!(logged.iter().any(|l| l["transport"] == "https" && l["action"] == "block" && l["url"].as_str().unwrap().contains("/forbidden/x")), "{logged:?}");
}

#[tokio::test]
async fn inspection_refuses_an_origin_with_a_bad_certificate() {
    let origin_ca = test_ca();
    let origin = https_origin(&origin_ca, &["secure.test"]).await;
    // The proxy does not trust the origin's CA: it must not pass the page on.
    let s = start(origin.port(), "inspect = true\nca_dir = \"ca\"", |d| {
        haven_proxy::tls::init_ca(&d.join("ca"), "Test Trust", (2026, 11, 23), false).unwrap();
    })
    .await;
    let school_ca = std::fs::read_to_string(haven_proxy::tls::ca_paths(&s.dir.join("ca")).0).unwrap();
    let (stream, _) = connect(s.proxy, &format!("secure.test:{}", origin.port()), "").await;
    let a = tls_get(stream, "secure.test", &[&school_ca], "/").await.unwrap();
    assert_eq!(status(&a), 502, "{a}");
}

#[tokio::test]
async fn the_trusts_own_lexicon_classifies_searches_after_a_reload() {
    let origin = http_origin().await;
    let s = start(origin.port(), "", |_| {}).await;
    let search = |q: &str| get(&format!("http://www.google.com:{}/search?q={q}", origin.port()), "");
    raw(s.proxy, &search("proper+melt")).await;
    // The trust adds local slang; the proxy picks it up with the next filter.
    let mut lexicons = haven_textscan::Lexicon::shipped();
    lexicons.push(haven_textscan::Lexicon::parse("language = \"en\"\n[bullying]\n\"proper melt\" = 3\n").unwrap());
    let classifier = std::sync::Arc::new(haven_textscan::Classifier::new(&lexicons).with_model(haven_textscan::model::Model::shipped()));
    let config = haven_config::Config::load(&s.dir.join("haven.toml")).unwrap_or_else(|e| panic!("{e}"));
    let (lists, _) = haven_lists::compile(&config.lists, "now", &haven_lists::NoProgress).unwrap();
    s.server.as_ref().unwrap().reload(Filter { policy: config.policy, lists: lists.into(), settings: config.proxy, classifier }).unwrap();
    raw(s.proxy, &search("proper+melt+innit")).await;
    let logged = log_lines(&s.dir);
    let concerns = |q: &str| logged.iter().find(|l| l["search"] == q).map(|l| l["concerns"].clone()).unwrap_or_else(|| panic!("{q}: {logged:?}"));
    assert!(concerns("proper melt").as_array().is_none_or(|a| a.is_empty()), "{logged:?}");
    assert!(concerns("proper melt innit")[0].as_str().unwrap().starts_with("Bullying/Violence:"), "{logged:?}");
}

/// A minimal TLS ClientHello naming `name` (or none), as one record.
fn client_hello(name: Option<&str>) -> Vec<u8> {
    let mut exts = Vec::new();
    if let Some(n) = name {
        let mut entry = vec![0u8];
        entry.extend((n.len() as u16).to_be_bytes());
        entry.extend(n.as_bytes());
        let mut list = (entry.len() as u16).to_be_bytes().to_vec();
        list.extend(entry);
        exts.extend(0u16.to_be_bytes());
        exts.extend((list.len() as u16).to_be_bytes());
        exts.extend(list);
    }
    let mut body = vec![3, 3];
    body.extend([7u8; 32]);
    body.push(0);
    body.extend([0, 2, 0x13, 0x01, 1, 0]);
    body.extend((exts.len() as u16).to_be_bytes());
    body.extend(exts);
    let mut hs = vec![1];
    hs.extend(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend(body);
    let mut rec = vec![22, 3, 1];
    rec.extend((hs.len() as u16).to_be_bytes());
    rec.extend(hs);
    rec
}

/// The same hello re-cut into two TLS records, the first `cut` bytes of the message long.
fn split_hello(hello: &[u8], cut: usize) -> (Vec<u8>, Vec<u8>) {
    let msg = &hello[5..];
    let record = |part: &[u8]| {
        let mut r = vec![22, 3, 1];
        r.extend((part.len() as u16).to_be_bytes());
        r.extend(part);
        r
    };
    (record(&msg[..cut]), record(&msg[cut..]))
}

/// Whatever comes back on a tunnel before it closes (or 3 s pass).
async fn drain(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out)).await;
    out
}

#[tokio::test]
async fn connect_with_a_trailing_dot_or_capitals_is_decided_as_the_name() {
    let origin = http_origin().await;
    let s = start(origin.port(), "", |_| {}).await;
    for target in ["iwf-test.example.:443", "IWF-TEST.example:443", "www.iwf-test.example..:443"] {
        let (_, head) = connect(s.proxy, target, "").await;
        assert!(head.starts_with("HTTP/1.1 403") && head.contains("x-haven-blocked: csam"), "{target}: {head}");
    }
    let (_, head) = connect(s.proxy, &format!("bet.test.:{}", origin.port()), "").await;
    assert!(head.starts_with("HTTP/1.1 403") && head.contains("x-haven-blocked: gambling"), "{head}");
    // Plain HTTP too: the absolute-form host is the decided one.
    let a = raw(s.proxy, &get(&format!("http://BET.test.:{}/", origin.port()), "")).await;
    assert_eq!(status(&a), 403, "{a}");
    let logged = log_lines(&s.dir);
    assert!(logged.iter().any(|l| l["name"] == "iwf-test.example" && l["action"] == "block"), "logged in canonical form: {logged:?}");
}

#[tokio::test]
async fn connect_to_an_address_in_any_numeric_form_needs_the_tls_name() {
    let ca = test_ca();
    let origin = https_origin(&ca, &["secure.test", "bet.test"]).await;
    let s = start(origin.port(), "", |_| {}).await;
    let port = origin.port();
    for host in ["2130706433", "0x7f000001", "127.1", "0177.0.0.1"] {
        let (stream, head) = connect(s.proxy, &format!("{host}:{port}"), "").await;
        assert!(head.starts_with("HTTP/1.1 200"), "{host}: {head}");
        assert!(tls_get(stream, "bet.test", &[&ca.pem], "/").await.is_err(), "{host}: a blocked TLS name closes the tunnel");
    }
    let (stream, _) = connect(s.proxy, &format!("2130706433:{port}"), "").await;
    let a = tls_get(stream, "secure.test", &[&ca.pem], "/").await.unwrap();
    assert!(a.contains("GET /"), "{a}");
    let logged = log_lines(&s.dir);
    let sni_blocks = logged.iter().filter(|l| l["transport"] == "tls-sni" && l["name"] == "bet.test" && l["action"] == "block").count();
    assert_eq!(sni_blocks, 4, "{logged:?}");
}

#[tokio::test]
async fn a_client_hello_split_over_records_and_segments_still_names_the_site() {
    let ca = test_ca();
    let origin = https_origin(&ca, &["secure.test"]).await;
    let s = start(origin.port(), "", |_| {}).await;
    let target = format!("127.0.0.1:{}", origin.port());
    for cut in [3, 20, 60] {
        let (mut stream, head) = connect(s.proxy, &target, "").await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let (first, second) = split_hello(&client_hello(Some("bet.test")), cut);
        stream.write_all(&first).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        stream.write_all(&second[..4]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        stream.write_all(&second[4..]).await.unwrap();
        assert!(drain(&mut stream).await.is_empty(), "cut at {cut}: nothing reaches the origin, nothing comes back");
    }
    let logged = log_lines(&s.dir);
    let blocked = logged.iter().filter(|l| l["transport"] == "tls-sni" && l["name"] == "bet.test" && l["action"] == "block").count();
    assert_eq!(blocked, 3, "{logged:?}");
    assert!(!logged.iter().any(|l| l["transport"] == "tls-sni" && l["action"] == "allow"), "never decided on the address: {logged:?}");
}

#[tokio::test]
async fn an_address_tunnel_without_a_readable_name_is_closed() {
    let origin = http_origin().await;
    let s = start(origin.port(), "", |_| {}).await;
    let target = format!("127.0.0.1:{}", origin.port());
    // Plain HTTP through a tunnel that needs a TLS name: refused, the origin never sees it.
    let (mut stream, head) = connect(s.proxy, &target, "").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    stream.write_all(b"GET / HTTP/1.1\r\nHost: bet.test\r\nConnection: close\r\n\r\n").await.unwrap();
    let back = drain(&mut stream).await;
    assert!(back.is_empty(), "{}", String::from_utf8_lossy(&back));
    // A hello without a name is blocked, not decided on the address.
    let (mut stream, _) = connect(s.proxy, &target, "").await;
    stream.write_all(&client_hello(None)).await.unwrap();
    assert!(drain(&mut stream).await.is_empty());
    let logged = log_lines(&s.dir);
    assert!(logged.iter().any(|l| l["transport"] == "tls-sni" && l["action"] == "refused" && l["rule"] == "tunnel-not-tls"), "{logged:?}");
    assert!(logged.iter().any(|l| l["transport"] == "tls-sni" && l["action"] == "block" && l["rule"] == "tls-without-server-name"), "{logged:?}");
}

#[tokio::test]
async fn nothing_is_forwarded_inside_the_school_network_unless_allowed() {
    let origin = http_origin().await;
    let port = origin.port();
    let s = start_with(port, "", |_| {}).await;
    for url in [format!("http://127.0.0.1:{port}/"), format!("http://2130706433:{port}/"), format!("http://[::ffff:127.0.0.1]:{port}/")] {
        let a = raw(s.proxy, &get(&url, "")).await;
        assert_eq!(status(&a), 403, "{url}: {a}");
        assert!(a.contains("inside the school network") && !a.contains("GET /"), "{url}: {a}");
    }
    // A name that resolves to loopback (as a rebinding attack would make it) is refused after resolution.
    let a = raw(s.proxy, &get(&format!("http://plain.test:{port}/"), "")).await;
    assert_eq!(status(&a), 403, "{a}");
    for target in [format!("127.0.0.1:{port}"), format!("[::1]:{port}"), format!("plain.test:{port}"), format!("0x7f.1:{port}")] {
        let (_, head) = connect(s.proxy, &target, "").await;
        assert!(head.starts_with("HTTP/1.1 403"), "{target}: {head}");
    }
    let logged = log_lines(&s.dir);
    assert!(logged.iter().filter(|l| l["action"] == "refused").count() >= 8, "{logged:?}");
    // Allowed, the origin is reached; the proxy itself never is.
    let allowed = start(port, "", |_| {}).await;
    assert_eq!(status(&raw(allowed.proxy, &get(&format!("http://127.0.0.1:{port}/"), "")).await), 200);
    let own = raw(allowed.proxy, &get(&format!("http://127.0.0.1:{}/", allowed.proxy.port()), "")).await;
    assert_eq!(status(&own), 403, "Haven's own listener: {own}");
}

#[tokio::test]
async fn the_host_header_comes_from_the_decided_url() {
    let origin = http_origin().await;
    let s = start(origin.port(), "", |_| {}).await;
    let port = origin.port();
    for url in [format!("http://plain.test:{port}/x"), format!("http://PLAIN.test.:{port}/x")] {
        let a = raw(s.proxy, &format!("GET {url} HTTP/1.1\r\nHost: bet.test\r\nConnection: close\r\n\r\n")).await;
        assert_eq!(status(&a), 200, "{url}: {a}");
        assert!(a.contains(&format!("host: plain.test:{port}\n")), "{url}: {a}");
        assert!(!a.contains("bet.test"), "the client's Host never reaches the origin: {a}");
    }
}

#[tokio::test]
async fn proxy_sign_in_is_throttled_per_account() {
    let origin = http_origin().await;
    let s = start(origin.port(), "auth = \"required\"", |d| {
        let f = d.join("data/proxy-accounts");
        haven_proxy::auth::Accounts::set_password(&f, "pupil1", "pupil-password").unwrap();
        haven_proxy::auth::Accounts::set_password(&f, "staff1", "staff-password").unwrap();
    })
    .await;
    let url = format!("http://plain.test:{}/", origin.port());
    for i in 0..haven_proxy::auth::Throttle::PER_ACCOUNT {
        let a = raw(s.proxy, &get(&url, &basic("pupil1", &format!("guess {i}")))).await;
        assert_eq!(status(&a), 407, "guess {i}: {a}");
    }
    // The same wrong password again is not another guess.
    assert_eq!(status(&raw(s.proxy, &get(&url, &basic("pupil1", "guess 0"))).await), 407);
    let locked = raw(s.proxy, &get(&url, &basic("pupil1", "pupil-password"))).await;
    assert_eq!(status(&locked), 429, "even the right password waits: {locked}");
    assert!(locked.contains("retry-after: ") && locked.contains("Too many wrong passwords"), "{locked}");
    assert_eq!(status(&raw(s.proxy, &get(&url, &basic("staff1", "staff-password"))).await), 200, "another account from the same device");
    let logged = log_lines(&s.dir);
    assert!(logged.iter().any(|l| l["action"] == "denied" && l["status"] == 429), "{logged:?}");
}

#[tokio::test]
async fn connections_over_the_cap_are_refused_at_once() {
    let origin = http_origin().await;
    let port = origin.port();
    let s = start(port, "max_connections = 2", |_| {}).await;
    // Two tunnels hold both places (tunnels outlive the 1 s head timeout).
    let (t1, h1) = connect(s.proxy, &format!("plain.test:{port}"), "").await;
    let (_t2, h2) = connect(s.proxy, &format!("plain.test:{port}"), "").await;
    assert!(h1.starts_with("HTTP/1.1 200") && h2.starts_with("HTTP/1.1 200"), "{h1} {h2}");
    assert_eq!(s.server.as_ref().unwrap().open_connections(), 2);
    let started = std::time::Instant::now();
    let over = raw(s.proxy, &get(&format!("http://plain.test:{port}/"), "")).await;
    assert_eq!(status(&over), 503, "{over}");
    assert!(started.elapsed() < Duration::from_secs(2), "refused, not queued");
    drop(t1);
    for _ in 0..50 {
        if s.server.as_ref().unwrap().open_connections() < 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status(&raw(s.proxy, &get(&format!("http://plain.test:{port}/"), "")).await), 200, "a freed place is used again");
}

#[tokio::test]
async fn an_idle_tunnel_is_closed() {
    let origin = http_origin().await;
    let port = origin.port();
    let s = start(port, "tunnel_idle_timeout_s = 1", |_| {}).await;
    let (mut t, head) = connect(s.proxy, &format!("plain.test:{port}"), "").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    t.write_all(b"GET /one HTTP/1.1\r\nHost: plain.test\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(3), t.read(&mut buf)).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("GET /one"), "the tunnel works");
    // The origin keeps its side open; the proxy closes the tunnel once nothing passes.
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(5), t.read_to_end(&mut rest)).await;
    assert!(r.is_ok(), "closed, not held open for ever");
    assert!(started.elapsed() < Duration::from_secs(4));
}

/// One HTTP/1.1 answer (head and a Content-Length body) from a kept-alive stream.
async fn one_answer(s: &mut (impl AsyncRead + Unpin)) -> String {
    let mut got = Vec::new();
    let mut b = [0u8; 1024];
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end].lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(|v| v.trim().parse::<usize>().unwrap()));
            if got.len() >= end + 4 + len.unwrap_or(0) {
                return text;
            }
        }
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut b)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&b[..n]),
            _ => return String::from_utf8_lossy(&got).into_owned(),
        }
    }
}

#[tokio::test]
async fn a_reload_while_an_inspected_tunnel_is_open_decides_its_next_request_in_the_new_policy() {
    let origin_ca = test_ca();
    let origin = https_origin(&origin_ca, &["secure.test"]).await;
    let dir = tempfile::tempdir().unwrap();
    let roots = write_pem(dir.path(), &origin_ca.pem);
    let extra = format!("auth = \"optional\"\ninspect = true\nca_dir = \"ca\"\norigin_roots = \"{}\"", roots.display());
    let s = start(origin.port(), &extra, |d| {
        haven_proxy::tls::init_ca(&d.join("ca"), "Test Trust", (2026, 11, 23), false).unwrap();
        haven_proxy::auth::Accounts::set_password(&d.join("data/proxy-accounts"), "staff1", "staff-password").unwrap();
    })
    .await;
    let school_ca = std::fs::read_to_string(haven_proxy::tls::ca_paths(&s.dir.join("ca")).0).unwrap();
    // Staff (the second group, the second user) open an inspected tunnel.
    let (stream, head) = connect(s.proxy, &format!("secure.test:{}", origin.port()), &basic("staff1", "staff-password")).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let connector = tokio_rustls::TlsConnector::from(client_config(&[&school_ca]));
    let mut tls = connector.connect(ServerName::try_from("secure.test").unwrap(), stream).await.unwrap();
    tls.write_all(b"GET /one HTTP/1.1\r\nHost: secure.test\r\n\r\n").await.unwrap();
    let first = one_answer(&mut tls).await;
    assert!(first.starts_with("HTTP/1.1 200") && first.contains("GET /one"), "{first}");
    // The new policy has one group and one user: the old indices point nowhere.
    let text = std::fs::read_to_string(s.dir.join("haven.toml")).unwrap();
    let smaller = text
        .replace("[[group]]\nid = \"staff\"\nname = \"Staff\"\n", "")
        .replace("[[policy]]\nid = \"staff\"\nblock = []\nsafe_search = false\nyoutube = \"off\"\n", "")
        .replace("[[user]]\nid = \"staff1\"\ngroup = \"staff\"\nschool = \"s\"\n", "");
    assert_ne!(smaller, text);
    std::fs::write(s.dir.join("haven.toml"), smaller).unwrap();
    let config = haven_config::Config::load(&s.dir.join("haven.toml")).unwrap_or_else(|e| panic!("{e}"));
    let (lists, _) = haven_lists::compile(&config.lists, "now", &haven_lists::NoProgress).unwrap();
    s.server
        .as_ref()
        .unwrap()
        .reload(Filter { policy: config.policy, lists: lists.into(), settings: config.proxy, classifier: haven_textscan::Classifier::shipped_shared() })
        .unwrap();
    tls.write_all(b"GET /forbidden/two HTTP/1.1\r\nHost: secure.test\r\nConnection: close\r\n\r\n").await.unwrap();
    let second = read_all(&mut tls).await;
    assert!(second.starts_with("HTTP/1.1 403") && second.contains("This page is blocked"), "decided as a pupil now, in the new policy: {second}");
}

/// Counters by name and labels (`name{k=v,…}`, labels sorted), from a
/// recorder installed once for this test binary.
#[derive(Default)]
struct Counters(std::sync::Mutex<std::collections::HashMap<String, Arc<std::sync::atomic::AtomicU64>>>);

impl metrics::Recorder for Counters {
    fn describe_counter(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_gauge(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_histogram(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        let mut labels: Vec<String> = key.labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
        labels.sort();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        metrics::Counter::from_arc(self.0.lock().unwrap().entry(name).or_default().clone())
    }
    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }
    fn register_histogram(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

fn counted(name: &str) -> u64 {
    static COUNTERS: std::sync::OnceLock<&'static Counters> = std::sync::OnceLock::new();
    let c = COUNTERS.get_or_init(|| {
        let c: &'static Counters = Box::leak(Box::default());
        metrics::set_global_recorder(c).unwrap();
        c
    });
    c.0.lock().unwrap().get(name).map_or(0, |n| n.load(std::sync::atomic::Ordering::Relaxed))
}

#[tokio::test]
async fn requests_blocks_and_refusals_are_counted() {
    let origin = http_origin().await;
    let port = origin.port();
    let blocks = "haven_blocks_total{category=gambling,service=proxy}";
    let blocked = "haven_proxy_requests_total{action=block}";
    let internal = "haven_proxy_refused_total{reason=internal_address}";
    let cap = "haven_proxy_refused_total{reason=connection_cap}";
    let before = [blocks, blocked, internal, cap].map(counted);
    let s = start(port, "max_connections = 1", |_| {}).await;
    assert_eq!(status(&raw(s.proxy, &get(&format!("http://bet.test:{port}/"), "")).await), 403);
    let (_tunnel, head) = connect(s.proxy, &format!("plain.test:{port}"), "").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(status(&raw(s.proxy, &get(&format!("http://plain.test:{port}/"), "")).await), 503);
    let strict = start_with(port, "", |_| {}).await;
    assert_eq!(status(&raw(strict.proxy, &get(&format!("http://127.0.0.1:{port}/"), "")).await), 403);
    let after = [blocks, blocked, internal, cap].map(counted);
    for (i, name) in [blocks, blocked, internal, cap].iter().enumerate() {
        assert!(after[i] > before[i], "{name}: {} then {}", before[i], after[i]);
    }
}

#[tokio::test]
async fn draining_finishes_requests_in_flight_and_closes_idle_connections() {
    let origin = http_origin().await;
    let port = origin.port();
    let s = start(port, "idle_timeout_s = 30", |_| {}).await;
    // A kept-alive connection, idle after one answer.
    let mut idle = TcpStream::connect(s.proxy).await.unwrap();
    idle.write_all(format!("GET http://plain.test:{port}/a HTTP/1.1\r\nHost: plain.test\r\n\r\n").as_bytes()).await.unwrap();
    assert!(one_answer(&mut idle).await.starts_with("HTTP/1.1 200"));
    // A request still waiting for its origin (which gives up after 1 s: 504).
    let proxy = s.proxy;
    let in_flight = tokio::spawn(async move { raw(proxy, &get(&format!("http://plain.test:{port}/slow"), "")).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    assert!(s.server.as_ref().unwrap().drain(Duration::from_secs(10)).await, "every connection ended");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert_eq!(status(&in_flight.await.unwrap()), 504, "the request in flight was answered");
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(1), idle.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the idle connection was closed");
}

#[tokio::test]
async fn a_tls_name_unlike_the_connect_host_is_decided_too() {
    let origin = http_origin().await;
    let port = origin.port();
    let s = start(port, "", |_| {}).await;
    // Allowed by name, then a hello for a blocked site: domain fronting.
    let (mut t, head) = connect(s.proxy, &format!("plain.test:{port}"), "").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let (first, second) = split_hello(&client_hello(Some("bet.test")), 30);
    t.write_all(&first).await.unwrap();
    t.write_all(&second).await.unwrap();
    assert!(drain(&mut t).await.is_empty(), "closed before the origin saw it");
    // The same name as the CONNECT: passed on as it is.
    let (mut t, _) = connect(s.proxy, &format!("plain.test:{port}"), "").await;
    t.write_all(&client_hello(Some("plain.test"))).await.unwrap();
    assert!(String::from_utf8_lossy(&drain(&mut t).await).starts_with("HTTP/1.1 400"), "the origin got the bytes (and could not read them)");
    let logged = log_lines(&s.dir);
    assert!(logged.iter().any(|l| l["transport"] == "tls-sni" && l["name"] == "bet.test" && l["action"] == "block"), "{logged:?}");
}

/// What a sink heard.
#[derive(Default)]
struct Heard(std::sync::Mutex<Vec<haven_accesslog::Finding>>);

impl haven_accesslog::Sink for Heard {
    fn tell(&self, finding: haven_accesslog::Finding) {
        self.0.lock().unwrap().push(finding);
    }
}

#[tokio::test]
async fn with_the_record_behind_it_a_worry_travels_as_a_typed_report() {
    use haven_accesslog::{Finding, ReportKind};
    let origin = http_origin().await;
    let heard = Arc::new(Heard::default());
    let s = start_telling(origin.port(), "allow_internal = [\"127.0.0.0/8\"]", |_| {}, Some(heard.clone())).await;
    let a = raw(s.proxy, &get(&format!("http://bet.test:{}/", origin.port()), "")).await;
    let reference = a.split("x-haven-reference: ").nth(1).unwrap().lines().next().unwrap().trim().to_string();
    let form = format!("ref={reference}&note=it+showed+a+scary+video");
    let post = format!(
        "POST http://block.haven.invalid/worry HTTP/1.1\r\nHost: block.haven.invalid\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    );
    assert_eq!(status(&raw(s.proxy, &post).await), 200);
    let heard = heard.0.lock().unwrap().clone();
    let gambling = haven_policy::Category::from_id("gambling").unwrap();
    assert!(matches!(&heard[0], Finding::Blocked { categories, .. } if categories.contains(gambling)), "{heard:?}");
    let Some(Finding::Report { seen, kind, reference: r, categories, words, .. }) = heard.get(1) else { panic!("no report: {heard:?}") };
    assert_eq!((*kind, r.as_str(), words.as_str()), (ReportKind::Worrying, reference.as_str(), "it showed a scary video"));
    assert!(categories.contains(gambling));
    assert_eq!(seen.school.as_deref(), Some("s"));
    assert!(seen.url.starts_with("http://bet.test:"));
    assert!(haven_proxy::reports::read(&haven_proxy::reports_path(&s.dir.join("data"))).unwrap().is_empty(), "not left in a file beside the record");
}

#[tokio::test]
async fn requests_for_hosts_no_list_names_are_counted_for_it() {
    let origin = http_origin().await;
    let s = start(origin.port(), "", |_| {}).await;
    let unlisted = Arc::new(haven_accesslog::Unlisted::new(100));
    s.server.as_ref().unwrap().count_unlisted(unlisted.clone());
    assert_eq!(status(&raw(s.proxy, &get(&format!("http://plain.test:{}/a", origin.port()), "")).await), 200);
    assert_eq!(status(&raw(s.proxy, &get(&format!("http://plain.test:{}/b", origin.port()), "")).await), 200);
    assert_eq!(status(&raw(s.proxy, &get(&format!("http://bet.test:{}/", origin.port()), "")).await), 403, "listed: gambling");
    let d = unlisted.drain();
    assert_eq!(d.hosts.len(), 1, "only the host no list names: {d:?}");
    let h = &d.hosts[0];
    assert_eq!((h.school.as_deref(), h.domain.as_str(), h.hits, h.people), (Some("s"), "plain.test", 2, 1));
}
