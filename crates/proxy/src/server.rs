//! One client connection: who is asking, what the policy says, and then the
//! block page, a forwarded request (streamed both ways), or a tunnel.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use haven_accesslog::QueryLog;
use haven_config::ProxyAuth;
use haven_policy::safesearch::Engine;
use haven_policy::{Action, Decision, Request as PolicyRequest, Subject, decide};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::{TokioIo, TokioTimer};
use jiff::Timestamp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::auth::{self, Credentials};
use crate::page::{self, BUTTON_HOST};
use crate::reports::Blocked;
use crate::sni::{self, Peek};
use crate::{Loaded, Shared, search, tls};

pub(crate) type Body = http_body_util::combinators::BoxBody<Bytes, hyper::Error>;

/// Who is browsing, decided once per request (or once per inspected tunnel).
#[derive(Clone)]
pub(crate) struct Who {
    subject: Subject,
    /// The signed-in name, which may not be one the policy knows.
    user: Option<String>,
}

/// An inspected tunnel: requests inside it are for this origin, from this person.
#[derive(Clone)]
pub(crate) struct Inner {
    host: String,
    port: u16,
    who: Who,
}

fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into()).map_err(|never| match never {}).boxed()
}

fn html(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn error(status: StatusCode, title: &str, detail: &str) -> Response<Body> {
    html(status, page::error_page(title, detail))
}

/// Serves one client connection until it closes or idles out.
pub(crate) async fn serve_client<I>(shared: Arc<Shared>, io: I, peer: SocketAddr)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let loaded = shared.loaded.load_full();
    let s = &loaded.filter.settings;
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new()).header_read_timeout(Duration::from_secs(s.idle_timeout_s)).max_buf_size(s.max_header_bytes.max(8192)).keep_alive(true);
    let svc = hyper::service::service_fn(move |req| handle(shared.clone(), peer, None, req));
    let _ = b.serve_connection(TokioIo::new(io), svc).with_upgrades().await;
}

type Handled = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

fn handle(shared: Arc<Shared>, peer: SocketAddr, inner: Option<Inner>, req: Request<Incoming>) -> Handled {
    Box::pin(async move { Ok(respond(shared, peer, inner, req).await) })
}

async fn respond(shared: Arc<Shared>, peer: SocketAddr, inner: Option<Inner>, req: Request<Incoming>) -> Response<Body> {
    let start = Instant::now();
    let loaded = shared.loaded.load_full();
    let who = match &inner {
        Some(i) => i.who.clone(),
        None => match identify(&loaded, peer, req.headers()).await {
            Ok(w) => w,
            Err(r) => {
                let mut e = entry(&loaded, None, peer, req.uri().host().unwrap_or_default(), req.method().as_str(), "http");
                e.action = "denied".into();
                finish(&shared, e, r.status(), start);
                return r;
            }
        },
    };
    if inner.is_none() && req.method() == Method::CONNECT {
        return connect(shared, loaded, peer, who, req, start).await;
    }
    let (host, url) = match &inner {
        Some(i) => {
            let port = if i.port == 443 { String::new() } else { format!(":{}", i.port) };
            let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
            (i.host.clone(), format!("https://{}{port}{pq}", i.host))
        }
        None => {
            let Some(host) = req.uri().host().map(|h| h.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase()) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "This is a web filter",
                    "Haven is a proxy: set it as the browser's proxy rather than visiting it directly.",
                );
            };
            if req.uri().scheme_str() != Some("http") {
                return error(
                    StatusCode::BAD_REQUEST,
                    "Unsupported address",
                    "Only http:// addresses can be sent to the proxy this way; https:// uses CONNECT.",
                );
            }
            (host, req.uri().to_string())
        }
    };
    if host == BUTTON_HOST {
        return buttons(&shared, &loaded, req).await;
    }
    let transport = if inner.is_some() { "https" } else { "http" };
    let mut log = entry(&loaded, Some(&who), peer, &host, req.method().as_str(), transport);
    let Ok(canonical) = haven_url::CanonicalUrl::parse(&url) else {
        log.action = "refused".into();
        let r = error(StatusCode::BAD_REQUEST, "Not a web address", "The address could not be read.");
        finish(&shared, log, r.status(), start);
        return r;
    };
    let set = &loaded.filter.policy;
    let d = decide(set, &loaded.filter.lists, &who.subject, Timestamp::now(), &PolicyRequest::Url(canonical));
    describe(&loaded, &who, &d, &mut log);
    log.url = Some(url.clone());
    if d.action == Action::Block {
        if let Some(sink) = &shared.sink {
            let cats = if d.decisive.is_empty() { d.categories } else { d.decisive };
            sink.blocked(seen(&log, peer, &url), cats.iter().map(|c| c.id().to_string()).collect());
        }
        let r = block_page(&shared, &loaded, &who, peer, &url, &d, &mut log);
        finish(&shared, log, r.status(), start);
        return r;
    }
    // Searches: safe mode forced, terms read and classified.
    let mut new_query = None;
    let mut youtube = None;
    if let Some(found) = search::read(&host, req.uri().path(), req.uri().query()) {
        // Only searches need the group's safe-search settings (with overrides).
        let effective = set.effective(&who.subject);
        new_query = search::enforce(found.engine, effective.safe_search, req.uri().query());
        if found.engine == Engine::Youtube {
            youtube = search::youtube_header(effective.safe_search);
        }
        if new_query.is_some() || youtube.is_some() {
            log.action = "safesearch".into();
        }
        if let Some(terms) = found.terms {
            let c = loaded.filter.classifier.classify(&terms);
            log.concerns = c.categories.iter().map(|f| format!("{}:{}", f.category.name(), f.level)).collect();
            log.level = c.level;
            if let Some(sink) = &shared.sink
                && !c.categories.is_empty()
            {
                sink.search(seen(&log, peer, &url), &terms);
            }
            log.search = Some(terms);
        }
    }
    let target = match new_query {
        Some(q) => match url.split_once('?') {
            Some((base, _)) => format!("{base}?{q}"),
            None => format!("{url}?{q}"),
        },
        None => url.clone(),
    };
    let r = forward(&loaded, req, &target, youtube).await;
    if r.status() == StatusCode::BAD_GATEWAY || r.status() == StatusCode::GATEWAY_TIMEOUT {
        log.action = "error".into();
    }
    finish(&shared, log, r.status(), start);
    r
}

fn seen(log: &QueryLog, peer: SocketAddr, url: &str) -> crate::Seen {
    crate::Seen { school: log.school.clone(), person: log.user.clone().unwrap_or_else(|| format!("device at {}", peer.ip())), url: url.to_string() }
}

/// Works out who is asking: proxy authentication, else the address.
async fn identify(loaded: &Arc<Loaded>, peer: SocketAddr, headers: &HeaderMap) -> Result<Who, Response<Body>> {
    let s = &loaded.filter.settings;
    let challenge = || {
        let mut r = error(StatusCode::PROXY_AUTHENTICATION_REQUIRED, "Please sign in", "Sign in with your school user name and password to use the web.");
        let realm = s.realm.replace('"', "'");
        if let Ok(v) = HeaderValue::from_str(&format!("Basic realm=\"{realm}\", charset=\"UTF-8\"")) {
            r.headers_mut().insert(header::PROXY_AUTHENTICATE, v);
        }
        r
    };
    let creds = headers.get(header::PROXY_AUTHORIZATION).map(|v| auth::parse_header(v.as_bytes()));
    let user = match (s.auth, creds) {
        (ProxyAuth::Off, _) | (ProxyAuth::Optional, None) => None,
        (_, Some(Credentials::Basic(user, password))) => {
            let l = loaded.clone();
            let u = user.clone();
            // Argon2 takes tens of milliseconds: off the serving threads.
            let ok = tokio::task::spawn_blocking(move || l.verifier.verify(&u, &password, Instant::now())).await.unwrap_or(false);
            if !ok {
                return Err(challenge());
            }
            Some(user)
        }
        (_, Some(Credentials::Malformed)) | (ProxyAuth::Required, None) => return Err(challenge()),
    };
    let set = &loaded.filter.policy;
    let subject = set.identify(user.as_deref(), None, Some(peer.ip())).or_else(|| s.default_group.map(|group| Subject { user: None, group, school: None }));
    match subject {
        Some(subject) => Ok(Who { subject, user }),
        None => Err(error(
            StatusCode::FORBIDDEN,
            "This device is not set up for the web filter",
            "Ask the school's IT team to add this network or device to Haven.",
        )),
    }
}

fn entry(loaded: &Loaded, who: Option<&Who>, peer: SocketAddr, host: &str, method: &str, transport: &str) -> QueryLog {
    let set = &loaded.filter.policy;
    QueryLog {
        client: peer.ip().to_string(),
        user: who.and_then(|w| w.user.clone().or_else(|| w.subject.user.map(|u| set.users[u].id.clone()))),
        group: who.map(|w| set.groups[w.subject.group].id.clone()),
        school: who.and_then(|w| w.subject.school.map(|s| set.schools[s].id.clone())),
        name: host.to_string(),
        qtype: method.to_string(),
        action: "allow".into(),
        transport: transport.into(),
        ..Default::default()
    }
}

fn describe(loaded: &Loaded, who: &Who, d: &Decision, log: &mut QueryLog) {
    log.categories = d.categories.iter().map(|c| c.id().to_string()).collect();
    log.rule = Some(d.rule_id(&loaded.filter.policy, &who.subject));
    log.action = d.action.as_str().into();
    if d.action == Action::SafeSearch {
        log.action = "allow".into();
    }
}

fn finish(shared: &Shared, mut log: QueryLog, status: StatusCode, start: Instant) {
    if !shared.logging {
        return;
    }
    log.status = Some(status.as_u16());
    log.micros = start.elapsed().as_micros() as u64;
    log.time = Timestamp::now().to_string();
    shared.log.log(log);
}

/// A reference a pupil can quote: `HVN-` and eight letters and digits that are
/// hard to confuse (Crockford's alphabet), random, so it cannot be guessed.
fn reference() -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let mut raw = [0u8; 8];
    if getrandom::fill(&mut raw).is_err() {
        raw = (Instant::now().elapsed().as_nanos() as u64 ^ u64::from(std::process::id())).to_le_bytes();
    }
    let c: String = raw.iter().map(|b| ALPHABET[usize::from(b % 32)] as char).collect();
    format!("HVN-{}-{}", &c[..4], &c[4..])
}

fn block_page(shared: &Shared, loaded: &Loaded, who: &Who, peer: SocketAddr, url: &str, d: &Decision, log: &mut QueryLog) -> Response<Body> {
    let set = &loaded.filter.policy;
    let reference = reference();
    log.reference = Some(reference.clone());
    shared.reports.remember(
        &reference,
        Blocked {
            user: log.user.clone(),
            group: log.group.clone(),
            client: peer.ip().to_string(),
            url: url.to_string(),
            categories: log.categories.clone(),
            rule: log.rule.clone(),
        },
    );
    let shown = if d.decisive.is_empty() { d.categories } else { d.decisive };
    let body = page::block_page(&page::Blocked {
        what: url,
        categories: shown.iter().map(|c| c.title()).collect(),
        reason: page::reason_for_child(set, &who.subject, d),
        reference: &reference,
    });
    let mut r = html(StatusCode::FORBIDDEN, body);
    blocked_headers(r.headers_mut(), d, &reference);
    r
}

/// Headers tools can read on any block: the categories and the reference.
fn blocked_headers(h: &mut HeaderMap, d: &Decision, reference: &str) {
    let shown = if d.decisive.is_empty() { d.categories } else { d.decisive };
    let cats: Vec<&str> = shown.iter().map(|c| c.id()).collect();
    if let Ok(v) = HeaderValue::from_str(&cats.join(",")) {
        h.insert(HeaderName::from_static("x-haven-blocked"), v);
    }
    if let Ok(v) = HeaderValue::from_str(reference) {
        h.insert(HeaderName::from_static("x-haven-reference"), v);
    }
}

/// Hop-by-hop headers (RFC 9110 §7.6.1), and any the Connection header names,
/// belong to one connection and are never passed on.
fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in
        [header::CONNECTION, header::PROXY_AUTHORIZATION, header::PROXY_AUTHENTICATE, header::TE, header::TRAILER, header::TRANSFER_ENCODING, header::UPGRADE]
    {
        h.remove(n);
    }
    h.remove("keep-alive");
    h.remove("proxy-connection");
}

async fn forward(loaded: &Loaded, req: Request<Incoming>, target: &str, youtube: Option<&'static str>) -> Response<Body> {
    let (mut parts, body) = req.into_parts();
    let Ok(uri) = target.parse::<Uri>() else {
        return error(StatusCode::BAD_REQUEST, "Not a web address", "The address could not be read.");
    };
    let host = uri.host().unwrap_or_default().to_string();
    parts.uri = uri;
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.append(header::VIA, HeaderValue::from_static("1.1 haven"));
    if let Some(mode) = youtube {
        parts.headers.insert(HeaderName::from_static("youtube-restrict"), HeaderValue::from_static(mode));
    }
    parts.version = hyper::Version::HTTP_11;
    let out = Request::from_parts(parts, body);
    let timeout = Duration::from_secs(loaded.filter.settings.origin_timeout_s);
    match tokio::time::timeout(timeout, loaded.client.request(out)).await {
        Ok(Ok(resp)) => {
            let (mut parts, body) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            parts.headers.append(header::VIA, HeaderValue::from_static("1.1 haven"));
            // The client's connection is HTTP/1.1 whatever the origin spoke.
            parts.version = hyper::Version::HTTP_11;
            Response::from_parts(parts, body.boxed())
        }
        Ok(Err(e)) if e.is_connect() => {
            error(StatusCode::BAD_GATEWAY, "The site could not be reached", &format!("{host} did not accept a connection. It may be down; try again later."))
        }
        Ok(Err(_)) => error(
            StatusCode::BAD_GATEWAY,
            "The site sent a broken answer",
            &format!("{host} closed the connection or answered in a way that could not be read."),
        ),
        Err(_) => error(StatusCode::GATEWAY_TIMEOUT, "The site took too long", &format!("{host} did not answer within {} seconds.", timeout.as_secs())),
    }
}

async fn connect(shared: Arc<Shared>, loaded: Arc<Loaded>, peer: SocketAddr, who: Who, req: Request<Incoming>, start: Instant) -> Response<Body> {
    let s = &loaded.filter.settings;
    let Some(authority) = req.uri().authority().cloned() else {
        return error(StatusCode::BAD_REQUEST, "Bad CONNECT", "CONNECT needs host:port.");
    };
    let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    let port = authority.port_u16().unwrap_or(443);
    let mut log = entry(&loaded, Some(&who), peer, &host, "CONNECT", "connect");
    if !s.connect_ports.contains(&port) {
        log.action = "refused".into();
        let r = text(StatusCode::FORBIDDEN, &format!("Blocked by Haven: CONNECT to port {port} is not allowed\n"));
        finish(&shared, log, r.status(), start);
        return r;
    }
    let ip_literal = host.parse::<IpAddr>().is_ok();
    if !ip_literal {
        let d = decide(&loaded.filter.policy, &loaded.filter.lists, &who.subject, Timestamp::now(), &PolicyRequest::Host(host.clone()));
        describe(&loaded, &who, &d, &mut log);
        if d.action == Action::Block {
            if let Some(sink) = &shared.sink {
                let cats = if d.decisive.is_empty() { d.categories } else { d.decisive };
                sink.blocked(seen(&log, peer, &format!("https://{host}/")), cats.iter().map(|c| c.id().to_string()).collect());
            }
            let reference = reference();
            log.reference = Some(reference.clone());
            let cats: Vec<&str> = d.categories.iter().map(|c| c.title()).collect();
            let mut r = text(StatusCode::FORBIDDEN, &format!("Blocked by Haven: {host} ({}); reference {reference}\n", cats.join(", ")));
            blocked_headers(r.headers_mut(), &d, &reference);
            finish(&shared, log, r.status(), start);
            return r;
        }
    }
    let inspect = !ip_literal && loaded.inspector.is_some() && !tls::exempt(&host, &s.inspect_exempt);
    let origin = if inspect {
        None
    } else {
        match loaded.connector.tcp(&host, port).await {
            Ok(t) => Some(t),
            Err(e) => {
                log.action = "error".into();
                let status = if e.kind() == std::io::ErrorKind::TimedOut { StatusCode::GATEWAY_TIMEOUT } else { StatusCode::BAD_GATEWAY };
                let r = text(status, &format!("Haven could not connect to {host}:{port}\n"));
                finish(&shared, log, r.status(), start);
                return r;
            }
        }
    };
    if !ip_literal {
        finish(&shared, log.clone(), StatusCode::OK, start);
    }
    tokio::spawn(async move {
        let Ok(upgraded) = hyper::upgrade::on(req).await else { return };
        let client = TokioIo::new(upgraded);
        match origin {
            None => inspect_tunnel(shared, loaded, peer, Inner { host, port, who }, client).await,
            Some(origin) if ip_literal => sni_tunnel(shared, loaded, who, log, client, origin, start).await,
            Some(mut origin) => {
                let mut client = client;
                let _ = tokio::io::copy_bidirectional(&mut client, &mut origin).await;
            }
        }
    });
    Response::new(full(Bytes::new()))
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut r = Response::new(full(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

/// A CONNECT to a bare address: the ClientHello's server name decides.
async fn sni_tunnel(
    shared: Arc<Shared>,
    loaded: Arc<Loaded>,
    who: Who,
    mut log: QueryLog,
    mut client: TokioIo<hyper::upgrade::Upgraded>,
    mut origin: TcpStream,
    start: Instant,
) {
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = [0u8; 4096];
    let deadline = Duration::from_secs(loaded.filter.settings.idle_timeout_s.min(10));
    let peeked = loop {
        match sni::peek(&buf) {
            Peek::NeedMore if buf.len() < sni::MAX_HELLO => {}
            Peek::NeedMore => break Peek::NotTls,
            p => break p,
        }
        match tokio::time::timeout(deadline, client.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return,
        }
    };
    log.transport = "tls-sni".into();
    let name = match peeked {
        Peek::Sni(n) => n,
        // No name to decide on: the address itself is decided.
        _ => log.name.clone(),
    };
    log.name.clone_from(&name);
    let d = decide(&loaded.filter.policy, &loaded.filter.lists, &who.subject, Timestamp::now(), &PolicyRequest::Host(name));
    describe(&loaded, &who, &d, &mut log);
    if d.action == Action::Block {
        // Too late for a 403: the tunnel was granted. Closing it is the block.
        finish(&shared, log, StatusCode::FORBIDDEN, start);
        return;
    }
    finish(&shared, log, StatusCode::OK, start);
    if origin.write_all(&buf).await.is_ok() {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut origin).await;
    }
}

/// TLS inspection: be the site to the client (with a leaf from the school
/// CA), and serve its requests through the same decisions as plain HTTP.
async fn inspect_tunnel(shared: Arc<Shared>, loaded: Arc<Loaded>, peer: SocketAddr, inner: Inner, client: TokioIo<hyper::upgrade::Upgraded>) {
    let Some(inspector) = &loaded.inspector else { return };
    let Ok(config) = inspector.config_for(&inner.host) else { return };
    let idle = Duration::from_secs(loaded.filter.settings.idle_timeout_s);
    let Ok(Ok(tls)) = tokio::time::timeout(idle, tokio_rustls::TlsAcceptor::from(config).accept(client)).await else { return };
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new()).header_read_timeout(idle).max_buf_size(loaded.filter.settings.max_header_bytes.max(8192));
    let svc = hyper::service::service_fn(move |req| handle(shared.clone(), peer, Some(inner.clone()), req));
    let _ = b.serve_connection(TokioIo::new(tls), svc).await;
}

/// The block page's buttons, and the CA for IT to install.
async fn buttons(shared: &Shared, loaded: &Loaded, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    match (req.method().clone(), path.as_str()) {
        (Method::GET, "/ca.pem") => match std::fs::read(tls::ca_paths(&loaded.filter.settings.ca_dir).0) {
            Ok(pem) => {
                let mut r = Response::new(full(pem));
                r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-x509-ca-cert"));
                r
            }
            Err(_) => error(StatusCode::NOT_FOUND, "No school certificate", "This school has not set up HTTPS inspection."),
        },
        (Method::GET, "/ca") => html(StatusCode::OK, tls::install_guide(&loaded.filter.policy.trust)),
        (Method::POST, "/review" | "/worry") => {
            let kind = &path[1..];
            let Ok(body) = Limited::new(req.into_body(), 16 * 1024).collect().await else {
                return error(StatusCode::PAYLOAD_TOO_LARGE, "Too long", "That message was too long to send.");
            };
            let form = String::from_utf8_lossy(&body.to_bytes()).into_owned();
            let reference = search::get(&form, "ref").unwrap_or_default();
            let note = search::get(&form, "note").unwrap_or_default();
            match shared.reports.record(kind, &reference, &note, &Timestamp::now().to_string()) {
                Ok(Some(_)) => html(StatusCode::OK, page::thanks_page(kind, &reference)),
                Ok(None) => error(
                    StatusCode::BAD_REQUEST,
                    "That block is not known",
                    "The page may be old. Try opening the site again, or tell a teacher what happened.",
                ),
                Err(e) => {
                    eprintln!("haven: could not store a block page report: {e}");
                    error(StatusCode::INTERNAL_SERVER_ERROR, "Not sent", "Something went wrong. Please tell a teacher instead.")
                }
            }
        }
        _ => error(StatusCode::NOT_FOUND, "Not found", "There is nothing here."),
    }
}
