//! Haven's filtering web proxy: an HTTP/1.1 forward proxy (absolute-form
//! requests and CONNECT) that decides every request through `haven-policy`,
//! exactly as `haven check` and the DNS filter do. Plain HTTP is decided on
//! the full URL; CONNECT on the host, or on the TLS server name when the
//! client gave a bare address; with TLS inspection, on the full URL inside.
//! Searches are forced to safe mode, and their terms classified by
//! `haven-textscan`. Bodies stream both ways; nothing is buffered whole.
//!
//! Architecture invariant: policy is never decided here, only asked; hyper
//! and rustls types stay inside this crate.
#![forbid(unsafe_code)]

pub mod auth;
mod content;
mod limits;
mod origin;
pub mod page;
pub mod probe;
pub mod reports;
pub mod search;
mod server;
pub mod sni;
pub mod tls;
mod verdicts;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use haven_accesslog::LogWriter;
use haven_config::ProxySettings;
use haven_lists::ListIndex;
use haven_policy::PolicySet;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::task::JoinHandle;

/// The proxy could not start or reload.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// A listen address could not be bound.
    #[error("cannot listen for the proxy on {addr}: {source} (is another proxy running there?)")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The accounts file.
    #[error(transparent)]
    Accounts(#[from] auth::AccountsError),
    /// The school CA (inspection).
    #[error(transparent)]
    Ca(#[from] tls::CaError),
    /// The log folder.
    #[error("cannot write the proxy log in {dir}: {source}")]
    Log {
        /// The folder.
        dir: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Everything a decision needs, replaced whole on reload.
pub struct Filter {
    /// The trust's policies.
    pub policy: PolicySet,
    /// The compiled lists (one index per snapshot, shared with the DNS filter).
    pub lists: Arc<ListIndex>,
    /// `[proxy]`.
    pub settings: ProxySettings,
    /// What search terms are classified with (the shipped lexicons and model,
    /// and the trust's own lexicons): reloaded with the rest.
    pub classifier: Arc<haven_textscan::Classifier>,
}

/// A filter made ready to serve: accounts read, CA loaded, origin client built.
pub(crate) struct Loaded {
    filter: Filter,
    verifier: auth::Verifier,
    inspector: Option<tls::Inspector>,
    connector: origin::Connector,
    client: Client<origin::Connector, server::Body>,
}

impl Loaded {
    /// `bound`: the addresses this proxy actually listens on (a configured port 0 included).
    fn new(filter: Filter, bound: &[SocketAddr]) -> Result<Self, ProxyError> {
        let s = &filter.settings;
        let accounts = auth::Accounts::load(&s.accounts)?;
        let today = {
            let d = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC).date();
            (i32::from(d.year()), d.month() as u8, d.day() as u8)
        };
        let inspector = if s.inspect { Some(tls::Inspector::load(&s.ca_dir, today)?) } else { None };
        let connector = origin::Connector {
            hosts: Arc::new(s.hosts.clone()),
            tls: tls::origin_config(s.origin_roots.as_deref())?,
            timeout: Duration::from_secs(s.origin_timeout_s),
            allow_internal: s.allow_internal.iter().copied().collect(),
            haven: s.haven_listeners.iter().chain(bound).copied().collect(),
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(256)
            .set_host(true)
            .build(connector.clone());
        Ok(Self { verifier: auth::Verifier::new(accounts, Duration::from_secs(600)), inspector, connector, client, filter })
    }
}

pub(crate) struct Shared {
    loaded: ArcSwap<Loaded>,
    log: Arc<LogWriter>,
    logging: bool,
    reports: reports::Reports,
    sink: Option<Arc<dyn Sink>>,
    /// Sign-in failures per address and account; kept across reloads.
    throttle: auth::Throttle,
    /// Argon2 checks at once: each takes tens of megabytes and a core.
    argon2: Arc<tokio::sync::Semaphore>,
    /// Client connections open now (tunnels included).
    connections: Arc<AtomicUsize>,
    /// Connections refused at the cap, for the log's sake.
    refused: AtomicU64,
    /// Set when the proxy drains: connections finish what they are doing and close.
    stop: tokio::sync::watch::Sender<bool>,
    /// Pages judged by their text, by URL; sized when the proxy starts, kept across reloads.
    verdicts: std::sync::Mutex<verdicts::VerdictCache>,
    /// Hosts no list names, for IT's suggestions; set once by `haven serve`.
    unlisted: std::sync::OnceLock<Arc<haven_accesslog::Unlisted>>,
}

impl Shared {
    fn new(loaded: Loaded, log: Arc<LogWriter>, logging: bool, reports: reports::Reports, sink: Option<Arc<dyn Sink>>) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        let content = &loaded.filter.settings.content;
        let verdicts = verdicts::VerdictCache::new(content.cache_entries, Duration::from_secs(content.cache_ttl_secs));
        Self {
            loaded: ArcSwap::from_pointee(loaded),
            log,
            logging,
            reports,
            sink,
            throttle: auth::Throttle::default(),
            argon2: Arc::new(tokio::sync::Semaphore::new(cores.clamp(1, 8))),
            connections: Arc::new(AtomicUsize::new(0)),
            refused: AtomicU64::new(0),
            stop: tokio::sync::watch::Sender::new(false),
            verdicts: std::sync::Mutex::new(verdicts),
            unlisted: std::sync::OnceLock::new(),
        }
    }
}

/// One client connection's place under `[proxy] max_connections`, given back when dropped.
pub(crate) struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(open: &Arc<AtomicUsize>, cap: usize) -> Option<Self> {
        let before = open.fetch_add(1, Ordering::AcqRel);
        if before >= cap {
            open.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Self(open.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a browser over the cap is told, written without waiting, before closing.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nRetry-After: 5\r\nConnection: close\r\nContent-Length: 55\r\n\r\nThe school web filter is busy. Try again in a moment.\r\n";

fn refuse_over_cap(shared: &Shared, tcp: &tokio::net::TcpStream, peer: SocketAddr, cap: usize) {
    metrics::counter!("haven_proxy_refused_total", "reason" => "connection_cap").increment(1);
    let n = shared.refused.fetch_add(1, Ordering::Relaxed) + 1;
    if n.is_power_of_two() {
        tracing::warn!(%peer, cap, refused = n, "proxy connection refused: max_connections reached (raise [proxy] max_connections if this is normal load)");
    }
    let _ = tcp.try_write(BUSY);
}

pub use haven_accesslog::{Seen, Sink};

/// A running proxy.
pub struct ProxyServer {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
    /// The addresses it listens on.
    pub addrs: Vec<SocketAddr>,
}

impl ProxyServer {
    /// Binds every listener and starts serving. Requests are logged into
    /// `log_dir` when given and the settings ask for it; block page reports
    /// go to `data_dir/reports.jsonl`.
    pub async fn start(filter: Filter, log_dir: Option<&Path>, data_dir: &Path) -> Result<Self, ProxyError> {
        Self::start_with(filter, log_dir, data_dir, None).await
    }

    /// [`start`](Self::start), telling `sink` about searches with concerns and blocked attempts.
    pub async fn start_with(filter: Filter, log_dir: Option<&Path>, data_dir: &Path, sink: Option<Arc<dyn Sink>>) -> Result<Self, ProxyError> {
        let listen = filter.settings.listen.clone();
        let logging = filter.settings.log && log_dir.is_some();
        let log = match log_dir {
            Some(dir) if logging => LogWriter::start(dir, "proxy", 65_536).map_err(|source| ProxyError::Log { dir: dir.display().to_string(), source })?,
            _ => LogWriter::disabled(),
        };
        let mut listeners = Vec::new();
        let mut addrs = Vec::new();
        for addr in listen {
            let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| ProxyError::Listen { addr, source })?;
            addrs.push(listener.local_addr().map_err(|source| ProxyError::Listen { addr, source })?);
            listeners.push(listener);
        }
        let loaded = Loaded::new(filter, &addrs)?;
        let shared = Arc::new(Shared::new(loaded, log, logging, reports::Reports::new(reports_path(data_dir), 100_000), sink));
        let mut tasks = Vec::new();
        for listener in listeners {
            let shared = shared.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    match listener.accept().await {
                        Ok((tcp, peer)) => {
                            // Read per connection, so a reload can change the cap.
                            let cap = shared.loaded.load().filter.settings.max_connections;
                            let Some(slot) = Slot::take(&shared.connections, cap) else {
                                refuse_over_cap(&shared, &tcp, peer, cap);
                                continue;
                            };
                            let _ = tcp.set_nodelay(true);
                            tokio::spawn(server::serve_client(shared.clone(), tcp, peer, slot));
                        }
                        // Out of file descriptors and the like: wait rather than spin.
                        Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
            }));
        }
        Ok(Self { shared, tasks, addrs })
    }

    /// Replaces policy, lists and settings at once (listen addresses excepted).
    pub fn reload(&self, filter: Filter) -> Result<(), ProxyError> {
        self.shared.loaded.store(Arc::new(Loaded::new(filter, &self.addrs)?));
        Ok(())
    }

    /// Client connections open now, tunnels included.
    pub fn open_connections(&self) -> usize {
        self.shared.connections.load(Ordering::Acquire)
    }

    /// Counts requests for hosts no list names into `unlisted` (IT's
    /// suggestions); probes are never counted. Only the first call counts.
    pub fn count_unlisted(&self, unlisted: Arc<haven_accesslog::Unlisted>) {
        let _ = self.shared.unlisted.set(unlisted);
    }

    /// Log entries (written, dropped) so far.
    pub fn log_counts(&self) -> (u64, u64) {
        (self.shared.log.written(), self.shared.log.dropped())
    }

    /// Stops accepting; requests in flight finish and their connections close
    /// (idle ones at once). True when every connection ended within
    /// `deadline`; tunnels are long-lived and usually end at [`shutdown`](Self::shutdown).
    pub async fn drain(&self, deadline: Duration) -> bool {
        for t in &self.tasks {
            t.abort();
        }
        let _ = self.shared.stop.send(true);
        let end = tokio::time::Instant::now() + deadline;
        while self.shared.connections.load(Ordering::Acquire) > 0 {
            if tokio::time::Instant::now() >= end {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// Stops accepting and writes out every queued log entry.
    pub fn shutdown(self) {
        for t in &self.tasks {
            t.abort();
        }
        self.shared.log.shutdown();
    }
}

/// Where block page reports are kept.
pub fn reports_path(data_dir: &Path) -> PathBuf {
    data_dir.join("reports.jsonl")
}

/// The whole request path without sockets, for the fuzzer
/// (`fuzz/fuzz_targets/proxy_request.rs`): bytes from a client go through
/// hyper's parser, identification, canonicalisation, the decision and the
/// pages. Everything is blocked and CONNECT allowed to no port, so no origin
/// is ever contacted.
#[doc(hidden)]
pub mod fuzzing {
    use std::sync::OnceLock;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn shared() -> &'static (tokio::runtime::Runtime, Arc<Shared>) {
        static SHARED: OnceLock<(tokio::runtime::Runtime, Arc<Shared>)> = OnceLock::new();
        SHARED.get_or_init(|| {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            // Everything blocked, uncategorised too: no origin is ever contacted.
            let policy = PolicySet::everyone("fuzz", "p", haven_policy::CategorySet::all(), Default::default(), haven_policy::Verdict::Block);
            let (lists, _) = haven_lists::compile(&[], "", &haven_lists::NoProgress).expect("empty index");
            let scratch = std::env::temp_dir().join("haven-proxy-fuzz");
            let mut settings = ProxySettings::defaults(&scratch);
            settings.auth = haven_config::ProxyAuth::Optional;
            settings.connect_ports.clear();
            settings.idle_timeout_s = 1;
            let loaded = Loaded::new(Filter { policy, lists: Arc::new(lists), settings, classifier: haven_textscan::Classifier::shipped_shared() }, &[])
                .expect("filter");
            let shared = Arc::new(Shared::new(loaded, LogWriter::disabled(), false, reports::Reports::new(scratch.join("reports.jsonl"), 16), None));
            (rt, shared)
        })
    }

    /// Serves `data` as one client connection and returns what was sent back.
    pub fn request_bytes(data: &[u8]) -> Vec<u8> {
        let (rt, shared) = shared();
        rt.block_on(async {
            let (mut client, server) = tokio::io::duplex(1 << 16);
            let slot = Slot::take(&shared.connections, usize::MAX).expect("no cap");
            let task = tokio::spawn(server::serve_client(shared.clone(), server, "192.0.2.1:40000".parse().expect("addr"), slot));
            let _ = client.write_all(data).await;
            let _ = client.shutdown().await;
            let mut out = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(2), client.read_to_end(&mut out)).await;
            task.abort();
            out
        })
    }
}
