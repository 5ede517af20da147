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
use haven_policy::{Action, CategorySet, Decision, ListLookup, ListMatch, Request as PolicyRequest, Subject, decide};
use haven_url::HostKind;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::{TokioIo, TokioTimer};
use jiff::Timestamp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::auth::{self, Credentials};
use crate::limits::{Timed, TimedBody};
use crate::page::{self, BUTTON_HOST};
use crate::reports::Blocked;
use crate::sni::{self, Peek};
use crate::{Loaded, Shared, Slot, content, search, tls};
use haven_accesslog::{Finding, ReportKind};

/// Bodies both ways: streamed, and failing with whatever stopped them (an
/// origin, a client, or a stall limit).
pub(crate) type Body = http_body_util::combinators::BoxBody<Bytes, BoxError>;
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Who is browsing, decided once per request (or once per inspected tunnel).
#[derive(Clone)]
pub(crate) struct Who {
    subject: Subject,
    /// The signed-in name, which may not be one the policy knows.
    user: Option<String>,
    /// A filtering check's probe (see `probe`): decided like anyone in its
    /// group, never forwarded, never told to the safeguarding service.
    probe: bool,
}

/// An inspected tunnel: requests inside it are for this origin, from this
/// person. By name, not by index: each request inside works out who that is
/// in the snapshot it is decided with, so a reload in between cannot mix two.
#[derive(Clone)]
pub(crate) struct Inner {
    host: String,
    port: u16,
    user: Option<String>,
}

pub(crate) fn full(body: impl Into<Bytes>) -> Body {
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

/// How long hyper waits for a request head: the head timeout, and no longer
/// than a connection may sit idle between requests (hyper's one timer does both).
fn head_timeout(s: &haven_config::ProxySettings) -> Duration {
    Duration::from_secs(s.header_timeout_s.min(s.idle_timeout_s).max(1))
}

/// Serves one client connection until it closes or idles out; `slot` is its
/// place under the connection cap, held by any tunnel it becomes.
pub(crate) async fn serve_client<I>(shared: Arc<Shared>, io: I, peer: SocketAddr, slot: Slot)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let loaded = shared.loaded.load_full();
    let s = &loaded.filter.settings;
    let slot = Arc::new(slot);
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new()).header_read_timeout(head_timeout(s)).max_buf_size(s.max_header_bytes.max(8192)).keep_alive(true);
    let io = Timed::writes(io, Duration::from_secs(s.body_timeout_s));
    let mut stop = shared.stop.subscribe();
    let svc = hyper::service::service_fn(move |req| handle(shared.clone(), peer, None, slot.clone(), req));
    let conn = b.serve_connection(TokioIo::new(io), svc).with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        // Draining: the request in flight is answered, then the connection closes.
        () = stopping(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Resolves once the proxy drains (never, if it is dropped without draining).
async fn stopping(stop: &mut tokio::sync::watch::Receiver<bool>) {
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        if stop.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

type Handled = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

fn handle(shared: Arc<Shared>, peer: SocketAddr, inner: Option<Inner>, slot: Arc<Slot>, req: Request<Incoming>) -> Handled {
    Box::pin(async move { Ok(respond(shared, peer, inner, slot, req).await) })
}

async fn respond(shared: Arc<Shared>, peer: SocketAddr, inner: Option<Inner>, slot: Arc<Slot>, mut req: Request<Incoming>) -> Response<Body> {
    let start = Instant::now();
    let loaded = shared.loaded.load_full();
    let identified = match &inner {
        Some(i) => subject(&loaded, i.user.clone(), peer).ok_or_else(not_set_up),
        None => identify(&shared, &loaded, peer, req.headers()).await,
    };
    let who = match identified {
        Ok(w) => w,
        Err(r) => {
            let mut e = entry(&loaded, None, peer, req.uri().host().unwrap_or_default(), req.method().as_str(), "http");
            e.action = "denied".into();
            finish(&shared, e, r.status(), start);
            return r;
        }
    };
    if who.probe && req.method() == Method::CONNECT {
        return crate::probe::no_tunnel();
    }
    if inner.is_none() && req.method() == Method::CONNECT {
        return connect(shared, loaded, peer, who, slot, req, start).await;
    }
    let url = match &inner {
        Some(i) => {
            let port = if i.port == 443 { String::new() } else { format!(":{}", i.port) };
            let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
            format!("https://{}{port}{pq}", i.host)
        }
        None => {
            if req.uri().host().is_none() {
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
            req.uri().to_string()
        }
    };
    let transport = if inner.is_some() { "https" } else { "http" };
    // Decided, logged and forwarded in one form: trailing dots, case, numeric
    // addresses and IDNA are settled here, once.
    let Ok(canonical) = haven_url::CanonicalUrl::parse(&url) else {
        let mut log = entry(&loaded, Some(&who), peer, req.uri().host().unwrap_or_default(), req.method().as_str(), transport);
        log.action = "refused".into();
        let r = error(StatusCode::BAD_REQUEST, "Not a web address", "The address could not be read.");
        finish(&shared, log, r.status(), start);
        return r;
    };
    let host = canonical.host.clone();
    let origin = match canonical.port {
        Some(p) => format!("{}://{host}:{p}", canonical.scheme),
        None => format!("{}://{host}", canonical.scheme),
    };
    if host == BUTTON_HOST {
        return buttons(&shared, &loaded, req).await;
    }
    if host == crate::probe::CHECK_HOST {
        return crate::probe::through(&loaded.filter.policy, &who.subject);
    }
    let mut log = entry(&loaded, Some(&who), peer, &host, req.method().as_str(), transport);
    let set = &loaded.filter.policy;
    let request = PolicyRequest::Url(canonical);
    let d = decide(set, &loaded.filter.lists, &who.subject, Timestamp::now(), &request);
    describe(&loaded, &who, &d, &mut log);
    count_unlisted(&shared, &loaded, &who, &d, &log);
    log.url = Some(url.clone());
    if d.action == Action::Block {
        // The "check this device" page asking whether Haven blocks this: the
        // answer is a small JSON it can read, and no pupil's attempt.
        if req.uri().path() == crate::probe::CHECK_PATH {
            let r = crate::probe::blocked(set, &who.subject, &d);
            finish(&shared, log, r.status(), start);
            return r;
        }
        // A probe's block is the check working, not a pupil's attempt.
        if let Some(sink) = shared.sink.as_ref().filter(|_| !who.probe) {
            let cats = if d.decisive.is_empty() { d.categories } else { d.decisive };
            sink.tell(Finding::Blocked { seen: seen(&log, peer, &url), categories: cats });
        }
        count_blocks(&d);
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
            // A glance on the request path; the safeguarding service reads
            // what the glance found, or finds worth a closer look, in full.
            let (c, closer) = loaded.filter.classifier.classify_glance(&terms);
            log.concerns = c.categories.iter().map(|f| format!("{}:{}", f.category.name(), f.level)).collect();
            log.level = c.level;
            if let Some(sink) = &shared.sink
                && (closer || !c.categories.is_empty())
                && !who.probe
            {
                sink.tell(Finding::Search { seen: seen(&log, peer, &url), terms: terms.clone() });
            }
            log.search = Some(terms);
        }
    }
    // The origin is the decided one; the path and query are the client's own
    // bytes (re-escaping them could change what the site reads), with safe search.
    let path = match req.uri().path() {
        "" => "/",
        p => p,
    };
    let target = match new_query {
        Some(q) => format!("{origin}{path}?{q}"),
        None => format!("{origin}{}", req.uri().path_and_query().map_or("/", |p| p.as_str())),
    };
    // A probe is never forwarded: the answer says what would have gone to
    // the origin, so probe credentials cannot be used to browse.
    if who.probe {
        let action = if log.action == "safesearch" { "safesearch" } else { "allow" };
        let r = crate::probe::allowed(action, &target, &log.concerns);
        finish(&shared, log, r.status(), start);
        return r;
    }
    // Pages' text: a page judged lately is decided now, without its body;
    // others are read as they stream (GET and POST: a chatbot's answer is a POST's).
    let reading = &loaded.filter.settings.content;
    let mut read_page = reading.enabled && matches!(*req.method(), Method::GET | Method::POST);
    if read_page && req.method() == Method::GET {
        let known = shared.verdicts.lock().ok().and_then(|c| c.get(&url, Instant::now()));
        if let Some(v) = known {
            read_page = false;
            metrics::counter!("haven_proxy_content_cached_total").increment(1);
            let mut judge = PageJudge::new(&shared, &loaded, &who, peer, &url, request.clone(), &log, start, content::Kind::Html, req.method());
            if let Some(r) = judge.block_now(v.categories, v.score) {
                return r;
            }
        }
    }
    if read_page {
        content::prefer_identity(req.headers_mut());
    }
    let method = req.method().clone();
    let (r, outcome) = forward(&loaded, req, &target, youtube).await;
    if let Some(action) = outcome {
        log.action = action.into();
    }
    let kind = if read_page && outcome.is_none() { content::kind_of(r.status(), r.headers()) } else { None };
    let r = match kind {
        Some(kind) => {
            let mut judge = PageJudge::new(&shared, &loaded, &who, peer, &url, request, &log, start, kind, &method);
            judge.status = r.status();
            match content::watch(r, kind, content::Bounds::of(reading), judge).await {
                content::Watched::Blocked(r) => return r,
                content::Watched::Passing(r) => r,
            }
        }
        None => r,
    };
    finish(&shared, log, r.status(), start);
    r
}

/// The list source a page's own text stands for in a decision.
const PAGE_SOURCE: u16 = u16::MAX;

/// The lists, with what a page's text showed beside them as one more
/// (least specific) match: the person's policy decides on page categories
/// exactly as on listed ones, allowances, restrictions and entries included.
struct PageLists<'a> {
    lists: &'a dyn ListLookup,
    found: CategorySet,
}

impl ListLookup for PageLists<'_> {
    fn lookup(&self, request: &PolicyRequest, out: &mut Vec<ListMatch>) {
        self.lists.lookup(request, out);
        out.push(ListMatch {
            categories: self.found,
            source: PAGE_SOURCE,
            entry: "page text".into(),
            kind: haven_policy::MatchKind::Expression,
            specificity: haven_policy::Specificity::default(),
        });
    }

    fn source_name(&self, id: u16) -> &str {
        if id == PAGE_SOURCE { "content" } else { self.lists.source_name(id) }
    }

    fn guess(&self, request: &PolicyRequest) -> Option<haven_policy::ModelGuess> {
        self.lists.guess(request)
    }
}

/// Decides what a page's text means for the person who asked for it, and
/// records a block like any other (block page, reference, log line, finding).
struct PageJudge {
    shared: Arc<Shared>,
    loaded: Arc<Loaded>,
    who: Who,
    peer: SocketAddr,
    url: String,
    request: PolicyRequest,
    log: QueryLog,
    start: Instant,
    kind: content::Kind,
    /// Only a GET's page is remembered by URL.
    remember: bool,
    /// The origin's status, for the log line of a block after the head was sent.
    status: StatusCode,
}

impl PageJudge {
    #[allow(clippy::too_many_arguments)]
    fn new(
        shared: &Arc<Shared>,
        loaded: &Arc<Loaded>,
        who: &Who,
        peer: SocketAddr,
        url: &str,
        request: PolicyRequest,
        log: &QueryLog,
        start: Instant,
        kind: content::Kind,
        method: &Method,
    ) -> Self {
        Self {
            shared: shared.clone(),
            loaded: loaded.clone(),
            who: who.clone(),
            peer,
            url: url.to_string(),
            request,
            log: log.clone(),
            start,
            kind,
            remember: kind == content::Kind::Html && method == Method::GET,
            status: StatusCode::OK,
        }
    }

    /// The decision when the page's categories block it for this person.
    fn blocks(&self, found: CategorySet) -> Option<Decision> {
        if found.is_empty() {
            return None;
        }
        let lists = PageLists { lists: &self.loaded.filter.lists, found };
        let mut d = decide(&self.loaded.filter.policy, &lists, &self.who.subject, Timestamp::now(), &self.request);
        if d.action != Action::Block {
            return None;
        }
        let from_page = d.decisive.intersection(found);
        d.decisive = if from_page.is_empty() { found } else { from_page };
        Some(d)
    }

    fn remember(&self, categories: CategorySet, score: f32) {
        // IT's suggestions queue keeps a sample of what unlisted pages said.
        if !categories.is_empty()
            && !self.who.probe
            && let Some(u) = self.shared.unlisted.get()
        {
            let school = self.who.subject.school.map(|s| self.loaded.filter.policy.schools[s].id.as_str());
            u.content_verdict(school, self.request.host(), &self.url, categories.iter().map(|c| c.id().to_string()).collect(), score, Timestamp::now());
        }
        if !self.remember {
            return;
        }
        if let Ok(mut c) = self.shared.verdicts.lock() {
            c.put(&self.url, crate::verdicts::PageVerdict { categories, score }, Instant::now());
        }
    }

    /// The log line, finding and counters of a block on the page's text.
    fn record(&mut self, d: &Decision, when: &'static str) {
        describe(&self.loaded, &self.who, d, &mut self.log);
        self.log.rule = Some(format!("content:{}", d.decisive));
        if let Some(sink) = &self.shared.sink {
            sink.tell(Finding::Blocked { seen: seen(&self.log, self.peer, &self.url), categories: d.decisive });
        }
        count_blocks(d);
        metrics::counter!("haven_proxy_content_blocks_total", "when" => when).increment(1);
    }

    /// Before anything was sent (a verdict on the held prefix, or remembered): the block page.
    fn block_now(&mut self, found: CategorySet, score: f32) -> Option<Response<Body>> {
        let d = self.blocks(found)?;
        self.record(&d, "before");
        let mut log = self.log.clone();
        let r = block_page(&self.shared, &self.loaded, &self.who, self.peer, &self.url, &d, &mut log);
        finish(&self.shared, log, r.status(), self.start);
        self.remember(found, score);
        Some(r)
    }
}

impl content::Judge for PageJudge {
    fn early(&mut self, v: &haven_textscan::page::PageVerdict) -> Option<Response<Body>> {
        self.block_now(content::categories(v), content::score(v))
    }

    fn late(&mut self, v: &haven_textscan::page::PageVerdict) -> Option<Bytes> {
        let found = content::categories(v);
        let d = self.blocks(found)?;
        self.record(&d, "after");
        let mut log = self.log.clone();
        let reference = reference();
        log.reference = Some(reference.clone());
        // Remembered for the buttons either way: a chatbot's page can link to it too.
        let block_html = remembered_block_page(&self.shared, &self.loaded, &self.who, self.peer, &self.url, &d, &log, &reference);
        let replacement = match self.kind {
            content::Kind::Html => content::html_replacement(&block_html),
            content::Kind::EventStream => content::event_replacement(&reference, &d.decisive.iter().map(|c| c.title()).collect::<Vec<_>>()),
        };
        // A second line for the same request: the first said it was allowed when its head went.
        finish(&self.shared, log, self.status, self.start);
        self.remember(found, content::score(v));
        Some(replacement)
    }

    fn judged(&mut self, v: &haven_textscan::page::PageVerdict) {
        self.remember(content::categories(v), content::score(v));
    }
}

/// Counts a block once per category that blocked it.
fn count_blocks(d: &Decision) {
    let shown = if d.decisive.is_empty() { d.categories } else { d.decisive };
    for c in shown.iter() {
        metrics::counter!("haven_blocks_total", "service" => "proxy", "category" => c.id()).increment(1);
    }
}

fn seen(log: &QueryLog, peer: SocketAddr, url: &str) -> crate::Seen {
    crate::Seen {
        school: log.school.clone(),
        person: log.user.clone().unwrap_or_else(|| format!("device at {}", peer.ip())),
        device: log.device.clone(),
        url: url.to_string(),
        at: Timestamp::now(),
    }
}

/// Works out who is asking: proxy authentication, else the address.
async fn identify(shared: &Shared, loaded: &Arc<Loaded>, peer: SocketAddr, headers: &HeaderMap) -> Result<Who, Response<Body>> {
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
    // A filtering check's probe, whatever `auth` says: a refused token is
    // a wrong password, counted against the address like one.
    if let Some(Credentials::Basic(user, password)) = &creds
        && let Some(probe) = crate::probe::subject(s.probe_key.as_ref(), &loaded.filter.policy, user, password, Timestamp::now())
    {
        return match probe {
            Some(subject) => Ok(Who { subject, user: None, probe: true }),
            None => {
                shared.throttle.failed(peer.ip(), user, Instant::now());
                Err(challenge())
            }
        };
    }
    let user = match (s.auth, creds) {
        (ProxyAuth::Off, _) | (ProxyAuth::Optional, None) => None,
        (_, Some(Credentials::Basic(user, password))) => {
            if !sign_in(shared, loaded, peer, &user, password).await? {
                return Err(challenge());
            }
            Some(user)
        }
        (_, Some(Credentials::Malformed)) | (ProxyAuth::Required, None) => return Err(challenge()),
    };
    subject(loaded, user, peer).ok_or_else(not_set_up)
}

/// Checks a password, throttled like the web sign-in: `Ok(false)` is a wrong
/// password, `Err` a refusal to check at all (too many tries, or too busy).
async fn sign_in(shared: &Shared, loaded: &Arc<Loaded>, peer: SocketAddr, user: &str, password: String) -> Result<bool, Response<Body>> {
    let now = Instant::now();
    let throttled = |wait: Duration| {
        metrics::counter!("haven_proxy_refused_total", "reason" => "sign_in_throttled").increment(1);
        let minutes = wait.as_secs().div_ceil(60).max(1);
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many wrong passwords",
            &format!("Signing in is paused for {minutes} minute(s) after too many wrong passwords. Wait, then try again, or ask the school's IT team."),
        );
        if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        r
    };
    // The address first: guesses always count against the device making them.
    shared.throttle.check_address(peer.ip(), now).map_err(throttled)?;
    // A password verified lately passes even while the account is throttled, so
    // a pupil guessing cannot lock a teacher out of the web.
    match loaded.verifier.recall(user, &password, now) {
        Some(true) => return Ok(true),
        Some(false) => return Ok(false),
        None => {}
    }
    shared.throttle.check_account(user, now).map_err(throttled)?;
    let Ok(Ok(permit)) = tokio::time::timeout(Duration::from_secs(10), shared.argon2.clone().acquire_owned()).await else {
        metrics::counter!("haven_proxy_refused_total", "reason" => "sign_in_busy").increment(1);
        return Err(error(StatusCode::SERVICE_UNAVAILABLE, "The web filter is busy", "Too many people are signing in at once. Try again in a moment."));
    };
    let l = loaded.clone();
    let u = user.to_string();
    // Argon2 takes tens of milliseconds and megabytes: off the serving threads, a few at a time.
    let ok = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        l.verifier.verify(&u, &password, Instant::now())
    })
    .await
    .unwrap_or(false);
    if ok {
        shared.throttle.succeeded(user);
    } else {
        shared.throttle.failed(peer.ip(), user, Instant::now());
    }
    Ok(ok)
}

/// Who `user` (signed in, or nobody) at `peer` is in this snapshot's policy.
fn subject(loaded: &Loaded, user: Option<String>, peer: SocketAddr) -> Option<Who> {
    let s = &loaded.filter.settings;
    let set = &loaded.filter.policy;
    let subject = set.identify(user.as_deref(), None, Some(peer.ip())).or_else(|| s.default_group.map(|group| Subject { user: None, group, school: None }));
    subject.map(|subject| Who { subject, user, probe: false })
}

fn not_set_up() -> Response<Body> {
    error(StatusCode::FORBIDDEN, "This device is not set up for the web filter", "Ask the school's IT team to add this network or device to Haven.")
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
        probe: who.is_some_and(|w| w.probe),
        ..Default::default()
    }
}

/// Counts a decision about a host no list names for IT's suggestions; a
/// probe is the check working, not a visit.
fn count_unlisted(shared: &Shared, loaded: &Loaded, who: &Who, d: &Decision, log: &QueryLog) {
    if let Some(u) = shared.unlisted.get().filter(|_| !who.probe) {
        let school = who.subject.school.map(|s| loaded.filter.policy.schools[s].id.as_str());
        u.decision(school, &log.name, log.user.as_deref().ok_or(log.client.as_str()), d, Timestamp::now(), |g| {
            loaded.filter.lists.explain_guess(&PolicyRequest::Host(log.name.clone()), g);
        });
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
    metrics::counter!("haven_proxy_requests_total", "action" => log.action.clone()).increment(1);
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
    let reference = reference();
    log.reference = Some(reference.clone());
    let shown = if d.decisive.is_empty() { d.categories } else { d.decisive };
    // A page on the IWF's list gets the IWF's own wording, no buttons, and
    // nothing that could show its address again.
    if shown.contains(haven_policy::Category::Csam) {
        let mut r = html(StatusCode::FORBIDDEN, page::iwf_block_page(&reference));
        blocked_headers(r.headers_mut(), d, &reference);
        return r;
    }
    let body = remembered_block_page(shared, loaded, who, peer, url, d, log, &reference);
    let mut r = html(StatusCode::FORBIDDEN, body);
    blocked_headers(r.headers_mut(), d, &reference);
    r
}

/// The block page, its reference kept for the buttons' reports.
#[allow(clippy::too_many_arguments)]
fn remembered_block_page(shared: &Shared, loaded: &Loaded, who: &Who, peer: SocketAddr, url: &str, d: &Decision, log: &QueryLog, reference: &str) -> String {
    let set = &loaded.filter.policy;
    let shown = if d.decisive.is_empty() { d.categories } else { d.decisive };
    shared.reports.remember(
        reference,
        Blocked {
            user: log.user.clone(),
            group: log.group.clone(),
            client: peer.ip().to_string(),
            url: url.to_string(),
            categories: log.categories.clone(),
            rule: log.rule.clone(),
            school: log.school.clone(),
            device: log.device.clone(),
            blocking: if d.decisive.is_empty() { d.categories } else { d.decisive },
        },
    );
    page::block_page(&page::Blocked {
        what: url,
        categories: shown.iter().map(|c| c.title()).collect(),
        reason: page::reason_for_child(set, &who.subject, d),
        reference,
    })
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

/// A refusal of an address inside the school network, for the browser.
fn internal_refused(addr: SocketAddr) -> Response<Body> {
    metrics::counter!("haven_proxy_refused_total", "reason" => "internal_address").increment(1);
    tracing::debug!(%addr, "refused: internal address");
    error(
        StatusCode::FORBIDDEN,
        "Blocked by Haven: this address is inside the school network",
        "The web filter does not pass requests on to the school's own network or to itself. If this is a school system people should reach through the filter, the IT team can allow its range with [proxy] allow_internal.",
    )
}

/// Sends the request on to `target` (the decided origin, the client's path),
/// with `Host` from `target` too, never the client's own. The answer, and
/// what to log instead of the decision when it was not the origin's.
async fn forward(loaded: &Loaded, req: Request<Incoming>, target: &str, youtube: Option<&'static str>) -> (Response<Body>, Option<&'static str>) {
    let (mut parts, body) = req.into_parts();
    let Ok(uri) = target.parse::<Uri>() else {
        return (error(StatusCode::BAD_REQUEST, "Not a web address", "The address could not be read."), Some("refused"));
    };
    let host = uri.host().unwrap_or_default().to_string();
    let https = uri.scheme_str() == Some("https");
    let host_header = match uri.port_u16() {
        Some(p) if p != if https { 443 } else { 80 } => format!("{host}:{p}"),
        _ => host.clone(),
    };
    parts.uri = uri;
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.remove(header::HOST);
    if let Ok(v) = HeaderValue::from_str(&host_header) {
        parts.headers.insert(header::HOST, v);
    }
    parts.headers.append(header::VIA, HeaderValue::from_static("1.1 haven"));
    if let Some(mode) = youtube {
        parts.headers.insert(HeaderName::from_static("youtube-restrict"), HeaderValue::from_static(mode));
    }
    parts.version = hyper::Version::HTTP_11;
    let s = &loaded.filter.settings;
    let body_limit = Duration::from_secs(s.body_timeout_s);
    let out = Request::from_parts(parts, TimedBody::new(body, body_limit).boxed());
    let timeout = Duration::from_secs(s.origin_timeout_s);
    match tokio::time::timeout(timeout, loaded.client.request(out)).await {
        Ok(Ok(resp)) => {
            let (mut parts, body) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            parts.headers.append(header::VIA, HeaderValue::from_static("1.1 haven"));
            // The client's connection is HTTP/1.1 whatever the origin spoke.
            parts.version = hyper::Version::HTTP_11;
            (Response::from_parts(parts, TimedBody::new(body, body_limit).boxed()), None)
        }
        Ok(Err(e)) if let Some(addr) = crate::origin::refused_internal(&e) => (internal_refused(addr), Some("refused")),
        Ok(Err(e)) if e.is_connect() => (
            error(StatusCode::BAD_GATEWAY, "The site could not be reached", &format!("{host} did not accept a connection. It may be down; try again later.")),
            Some("error"),
        ),
        Ok(Err(_)) => (
            error(
                StatusCode::BAD_GATEWAY,
                "The site sent a broken answer",
                &format!("{host} closed the connection or answered in a way that could not be read."),
            ),
            Some("error"),
        ),
        Err(_) => (
            error(StatusCode::GATEWAY_TIMEOUT, "The site took too long", &format!("{host} did not answer within {} seconds.", timeout.as_secs())),
            Some("error"),
        ),
    }
}

async fn connect(
    shared: Arc<Shared>,
    loaded: Arc<Loaded>,
    peer: SocketAddr,
    who: Who,
    slot: Arc<Slot>,
    req: Request<Incoming>,
    start: Instant,
) -> Response<Body> {
    let s = &loaded.filter.settings;
    let Some(authority) = req.uri().authority().cloned() else {
        return error(StatusCode::BAD_REQUEST, "Bad CONNECT", "CONNECT needs host:port.");
    };
    let port = authority.port_u16().unwrap_or(443);
    // The host as the decision and the connection both see it: `bet.test.`,
    // `BET.test`, `2130706433` and `0x7f.1` are `bet.test` and `127.0.0.1`.
    let Ok(host) = haven_url::canonical_host(authority.host()) else {
        let mut log = entry(&loaded, Some(&who), peer, authority.host(), "CONNECT", "connect");
        log.action = "refused".into();
        let r = text(StatusCode::BAD_REQUEST, "Blocked by Haven: that is not a host name or address\n");
        finish(&shared, log, r.status(), start);
        return r;
    };
    let address = match HostKind::of(&host) {
        HostKind::Name => None,
        _ => host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().ok(),
    };
    let ip_literal = address.is_some();
    let dial = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let mut log = entry(&loaded, Some(&who), peer, &host, "CONNECT", "connect");
    if !s.connect_ports.contains(&port) {
        log.action = "refused".into();
        let r = text(StatusCode::FORBIDDEN, &format!("Blocked by Haven: CONNECT to port {port} is not allowed\n"));
        finish(&shared, log, r.status(), start);
        return r;
    }
    if !ip_literal {
        let d = decide(&loaded.filter.policy, &loaded.filter.lists, &who.subject, Timestamp::now(), &PolicyRequest::Host(host.clone()));
        describe(&loaded, &who, &d, &mut log);
        count_unlisted(&shared, &loaded, &who, &d, &log);
        if d.action == Action::Block {
            if let Some(sink) = &shared.sink {
                let cats = if d.decisive.is_empty() { d.categories } else { d.decisive };
                sink.tell(Finding::Blocked { seen: seen(&log, peer, &format!("https://{host}/")), categories: cats });
            }
            let reference = reference();
            log.reference = Some(reference.clone());
            let cats: Vec<&str> = d.categories.iter().map(|c| c.title()).collect();
            let mut r = text(StatusCode::FORBIDDEN, &format!("Blocked by Haven: {host} ({}); reference {reference}\n", cats.join(", ")));
            blocked_headers(r.headers_mut(), &d, &reference);
            count_blocks(&d);
            finish(&shared, log, r.status(), start);
            return r;
        }
    }
    let inspect = !ip_literal && loaded.inspector.is_some() && !tls::exempt(&host, &s.inspect_exempt);
    let origin = if inspect {
        None
    } else {
        match loaded.connector.tcp(&dial, port).await {
            Ok(t) => Some(t),
            Err(e) if let Some(addr) = crate::origin::refused_internal(&e) => {
                log.action = "refused".into();
                metrics::counter!("haven_proxy_refused_total", "reason" => "internal_address").increment(1);
                tracing::debug!(%addr, "refused: internal address");
                let r = text(StatusCode::FORBIDDEN, &format!("Blocked by Haven: {host} is inside the school network ([proxy] allow_internal)\n"));
                finish(&shared, log, r.status(), start);
                return r;
            }
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
    let idle = Duration::from_secs(s.tunnel_idle_timeout_s);
    tokio::spawn(async move {
        // The tunnel keeps the connection's place under the cap until it ends.
        let slot = slot;
        let Ok(upgraded) = hyper::upgrade::on(req).await else { return };
        let client = TokioIo::new(upgraded);
        match origin {
            None => inspect_tunnel(shared, loaded, peer, Inner { host, port, user: who.user.clone() }, client, slot.clone()).await,
            Some(origin) if ip_literal => sni_tunnel(shared, loaded, who, log, Timed::idle(client, idle), origin, start).await,
            Some(origin) => name_tunnel(shared, loaded, who, log, Timed::idle(client, idle), origin, start).await,
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

/// A CONNECT to a bare address: the ClientHello's server name decides. A
/// tunnel with no readable name is blocked, never decided on the address;
/// bytes that are not TLS are refused.
async fn sni_tunnel(
    shared: Arc<Shared>,
    loaded: Arc<Loaded>,
    who: Who,
    mut log: QueryLog,
    mut client: Timed<TokioIo<hyper::upgrade::Upgraded>>,
    mut origin: TcpStream,
    start: Instant,
) {
    let mut hello = sni::Hello::new();
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = [0u8; 4096];
    // One deadline for the whole hello, however it is split.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(loaded.filter.settings.header_timeout_s.min(10));
    let peeked = loop {
        match tokio::time::timeout_at(deadline, client.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => {
                buf.extend_from_slice(&chunk[..n]);
                match hello.push(&chunk[..n]) {
                    Peek::NeedMore => {}
                    p => break p,
                }
            }
            // Closed before saying anything: nothing to decide.
            Ok(_) if buf.is_empty() => return,
            Ok(_) | Err(_) => break Peek::NoSni,
        }
    };
    log.transport = "tls-sni".into();
    let name = match &peeked {
        Peek::Sni(n) => haven_url::canonical_host(n).ok(),
        _ => None,
    };
    let Some(name) = name else {
        // Too late for a 403: the tunnel was granted. Closing it is the block.
        let (action, reason, rule) =
            if peeked == Peek::NotTls { ("refused", "not_tls", "tunnel-not-tls") } else { ("block", "no_server_name", "tls-without-server-name") };
        metrics::counter!("haven_proxy_refused_total", "reason" => reason).increment(1);
        log.action = action.into();
        log.rule = Some(rule.into());
        finish(&shared, log, StatusCode::FORBIDDEN, start);
        return;
    };
    log.name.clone_from(&name);
    let d = decide(&loaded.filter.policy, &loaded.filter.lists, &who.subject, Timestamp::now(), &PolicyRequest::Host(name));
    describe(&loaded, &who, &d, &mut log);
    count_unlisted(&shared, &loaded, &who, &d, &log);
    if d.action == Action::Block {
        count_blocks(&d);
        finish(&shared, log, StatusCode::FORBIDDEN, start);
        return;
    }
    finish(&shared, log, StatusCode::OK, start);
    if origin.write_all(&buf).await.is_ok() {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut origin).await;
    }
}

/// A CONNECT to an allowed name. The origin may speak first, so bytes flow
/// from it at once; the client's first bytes, when they are a TLS hello
/// naming another site (domain fronting), are decided on that name too
/// before they reach the origin.
async fn name_tunnel(
    shared: Arc<Shared>,
    loaded: Arc<Loaded>,
    who: Who,
    mut log: QueryLog,
    client: Timed<TokioIo<hyper::upgrade::Upgraded>>,
    origin: TcpStream,
    start: Instant,
) {
    let (mut from_client, mut to_client) = tokio::io::split(client);
    let (mut from_origin, mut to_origin) = origin.into_split();
    let downstream = async {
        let _ = tokio::io::copy(&mut from_origin, &mut to_client).await;
        let _ = to_client.shutdown().await;
    };
    // True when the client's hello named a blocked site.
    let upstream = async {
        let mut hello = sni::Hello::new();
        let mut chunk = [0u8; 4096];
        let mut buf = Vec::new();
        let named = loop {
            match from_client.read(&mut chunk).await {
                Ok(n) if n > 0 => {
                    buf.extend_from_slice(&chunk[..n]);
                    match hello.push(&chunk[..n]) {
                        Peek::NeedMore => {}
                        Peek::Sni(name) => break haven_url::canonical_host(&name).ok(),
                        Peek::NoSni | Peek::NotTls => break None,
                    }
                }
                _ => break None,
            }
        };
        if let Some(name) = named.filter(|n| *n != log.name) {
            let d = decide(&loaded.filter.policy, &loaded.filter.lists, &who.subject, Timestamp::now(), &PolicyRequest::Host(name.clone()));
            if d.action == Action::Block {
                log.transport = "tls-sni".into();
                log.name = name;
                describe(&loaded, &who, &d, &mut log);
                count_blocks(&d);
                finish(&shared, log, StatusCode::FORBIDDEN, start);
                return true;
            }
        }
        if to_origin.write_all(&buf).await.is_ok() {
            let _ = tokio::io::copy(&mut from_client, &mut to_origin).await;
        }
        let _ = to_origin.shutdown().await;
        false
    };
    tokio::pin!(upstream);
    tokio::pin!(downstream);
    let mut down_done = false;
    loop {
        tokio::select! {
            blocked = &mut upstream => {
                // A blocked name ends the tunnel at once; otherwise the origin's answer still flows.
                if !blocked && !down_done {
                    downstream.await;
                }
                return;
            }
            () = &mut downstream, if !down_done => down_done = true,
        }
    }
}

/// TLS inspection: be the site to the client (with a leaf from the school
/// CA), and serve its requests through the same decisions as plain HTTP.
async fn inspect_tunnel(shared: Arc<Shared>, loaded: Arc<Loaded>, peer: SocketAddr, inner: Inner, client: TokioIo<hyper::upgrade::Upgraded>, slot: Arc<Slot>) {
    let Some(inspector) = &loaded.inspector else { return };
    let Ok(config) = inspector.config_for(&inner.host) else { return };
    let s = &loaded.filter.settings;
    let head = head_timeout(s);
    let client = Timed::writes(client, Duration::from_secs(s.body_timeout_s));
    let Ok(Ok(tls)) = tokio::time::timeout(head, tokio_rustls::TlsAcceptor::from(config).accept(client)).await else { return };
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new()).header_read_timeout(head).max_buf_size(s.max_header_bytes.max(8192));
    let svc = hyper::service::service_fn(move |req| handle(shared.clone(), peer, Some(inner.clone()), slot.clone(), req));
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
            // With the safeguarding record behind the proxy, a report goes to it
            // as a typed finding (a worry becomes an alert for the DSL); a proxy
            // running alone keeps reports in its data folder.
            let outcome = match (&shared.sink, shared.reports.recall(&reference)) {
                (_, None) => Ok(None),
                (Some(sink), Some(b)) => {
                    let kind = if kind == "worry" { ReportKind::Worrying } else { ReportKind::ShouldBeAllowed };
                    let seen = crate::Seen {
                        school: b.school.clone(),
                        person: b.user.clone().unwrap_or_else(|| format!("device at {}", b.client)),
                        device: b.device.clone(),
                        url: b.url.clone(),
                        at: Timestamp::now(),
                    };
                    let words: String = note.chars().take(1000).collect();
                    // The pupil is told "sent" only once the record has it.
                    let report = Finding::Report { seen, kind, reference: reference.clone(), categories: b.blocking, rule: b.rule.clone(), words };
                    if sink.keep(report).await { Ok(Some(())) } else { Err(std::io::Error::other("the safeguarding record did not take the report")) }
                }
                (None, Some(_)) => shared.reports.record(kind, &reference, &note, &Timestamp::now().to_string()).map(|r| r.map(|_| ())),
            };
            match outcome {
                Ok(Some(())) => html(StatusCode::OK, page::thanks_page(kind, &reference)),
                Ok(None) => error(
                    StatusCode::BAD_REQUEST,
                    "That block is not known",
                    "The page may be old. Try opening the site again, or tell a teacher what happened.",
                ),
                Err(e) => {
                    tracing::error!(error = %e, "could not store a block page report");
                    error(StatusCode::INTERNAL_SERVER_ERROR, "Not sent", "Something went wrong. Please tell a teacher instead.")
                }
            }
        }
        _ => error(StatusCode::NOT_FOUND, "Not found", "There is nothing here."),
    }
}
