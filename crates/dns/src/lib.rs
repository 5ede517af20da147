//! Haven's DNS filter: UDP and TCP on every configured address, and
//! DNS-over-HTTPS for devices off site. Every question is decided by
//! `haven-policy`, exactly as `haven check` decides, then forwarded (through a
//! TTL-honouring cache that asks upstream once for many clients), blocked
//! (NXDOMAIN or the block page's address, always with an Extended DNS Error),
//! or sent to the engine's safe-search name by CNAME.
//!
//! Architecture invariant: this is the only crate that imports hickory, and
//! hickory's types never leave it. Policy is never decided here.
#![forbid(unsafe_code)]

mod answer;
mod cache;
pub mod client;
mod counters;
mod doh;
pub use haven_accesslog as log;
mod server;
mod upstream;
mod wire;

#[cfg(test)]
mod unlisted_tests;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use answer::{Filter, Transport};
use arc_swap::ArcSwap;
pub use cache::CacheStats;
use tokio::task::JoinHandle;
pub use upstream::UpstreamError;

/// A running DNS filter.
pub struct DnsServer {
    shared: Arc<answer::Shared>,
    tasks: Vec<JoinHandle<()>>,
    stop: tokio::sync::watch::Sender<bool>,
    gate: server::Gate,
    /// The addresses it answers on (UDP and TCP share each).
    pub addrs: Vec<SocketAddr>,
    /// The DoH address, if serving DoH.
    pub doh_addr: Option<SocketAddr>,
    /// The DoH-over-TLS address, if serving it.
    pub doh_tls_addr: Option<SocketAddr>,
}

impl DnsServer {
    /// Binds every listener and starts answering. Queries are logged into
    /// `log_dir` when given and the settings ask for it.
    pub async fn start(filter: Filter, log_dir: Option<&Path>) -> std::io::Result<Self> {
        Self::start_with(filter, log_dir, None).await
    }

    /// [`start`](Self::start), telling `sink` about blocked questions.
    pub async fn start_with(filter: Filter, log_dir: Option<&Path>, sink: Option<Arc<dyn haven_accesslog::Sink>>) -> std::io::Result<Self> {
        let settings = filter.settings.clone();
        let upstream = Arc::new(upstream::Upstream::new(settings.upstream.clone(), Duration::from_millis(settings.upstream_timeout_ms)).await?);
        let log = match (log_dir, settings.log) {
            (Some(dir), true) => log::LogWriter::start(dir, "dns", 65_536)?,
            _ => log::LogWriter::disabled(),
        };
        let shared = Arc::new(answer::Shared {
            filter: ArcSwap::from_pointee(filter),
            cache: Arc::new(cache::Cache::new(settings.cache_entries)),
            upstream,
            log,
            sink,
            counters: counters::Counters::new(),
            unlisted: std::sync::OnceLock::new(),
        });
        let (stop, gate) = server::Gate::new();
        let mut tasks = Vec::new();
        let mut addrs = Vec::new();
        for addr in &settings.listen {
            match server::listen(shared.clone(), *addr, gate.clone()).await {
                Ok((local, t)) => {
                    addrs.push(local);
                    tasks.extend(t);
                }
                // A host without IPv6 still serves its IPv4 addresses.
                Err(e)
                    if addr.is_ipv6() && matches!(e.kind(), std::io::ErrorKind::AddrNotAvailable | std::io::ErrorKind::Unsupported)
                        || addr.is_ipv6() && e.raw_os_error() == Some(97) =>
                {
                    tracing::warn!("haven: warning: not listening on {addr}: {e} (no IPv6 on this host?)");
                }
                Err(e) => {
                    return Err(std::io::Error::new(e.kind(), format!("cannot listen for DNS on {addr}: {e} (is another DNS server running there?)")));
                }
            }
        }
        if addrs.is_empty() {
            return Err(std::io::Error::new(std::io::ErrorKind::AddrNotAvailable, "no DNS listen address could be bound ([dns] listen)"));
        }
        let mut doh_addr = None;
        if let Some(addr) = settings.doh_listen {
            let (local, t) = doh::listen(shared.clone(), addr, gate.clone(), None).await?;
            doh_addr = Some(local);
            tasks.push(t);
        }
        let mut doh_tls_addr = None;
        if let Some(t) = &settings.doh_tls {
            let tls = Arc::new(doh::Tls::load(&t.cert, &t.key)?);
            let (local, task) = doh::listen(shared.clone(), t.listen, gate.clone(), Some(tls))
                .await
                .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen for DNS-over-HTTPS (TLS) on {}: {e}", t.listen)))?;
            doh_tls_addr = Some(local);
            tasks.push(task);
        }
        Ok(Self { shared, tasks, stop, gate, addrs, doh_addr, doh_tls_addr })
    }

    /// Replaces policy and lists at once: each answer uses the old or the new, never a mix.
    pub fn reload(&self, filter: Filter) {
        self.shared.filter.store(Arc::new(filter));
    }

    /// Counts questions about hosts no list names into `unlisted` (IT's
    /// suggestions); probes are never counted. Only the first call counts.
    pub fn count_unlisted(&self, unlisted: Arc<log::Unlisted>) {
        let _ = self.shared.unlisted.set(unlisted);
    }

    /// Cache hits and upstream queries so far.
    pub fn cache_stats(&self) -> CacheStats {
        self.shared.cache.stats()
    }

    /// Questions not forwarded so far because too many were in flight: UDP
    /// questions dropped (the client asks again), TCP and DoH ones answered
    /// SERVFAIL (`haven_dns_udp_shed_total` and
    /// `haven_dns_upstream_busy_total` in `/metrics`).
    pub fn shed(&self) -> u64 {
        self.shared.counters.shed_so_far() + self.shared.upstream.busy_so_far()
    }

    /// Log entries (written, dropped) so far.
    pub fn log_counts(&self) -> (u64, u64) {
        (self.shared.log.written(), self.shared.log.dropped())
    }

    /// Stops listening (UDP, TCP, DoH) and waits up to `deadline` for the
    /// questions in flight to be answered and open connections to finish
    /// their current question. True when everything finished in time.
    pub async fn drain(&self, deadline: Duration) -> bool {
        let _ = self.stop.send(true);
        tokio::time::timeout(deadline, self.gate.idle()).await.is_ok()
    }

    /// Stops answering at once and writes out every queued log entry
    /// ([`drain`](Self::drain) first to let questions in flight finish).
    /// Returns the log's final counts (written, dropped).
    pub fn shutdown(self) -> (u64, u64) {
        let _ = self.stop.send(true);
        for t in &self.tasks {
            t.abort();
        }
        self.shared.log.shutdown();
        (self.shared.log.written(), self.shared.log.dropped())
    }
}

/// The whole answer path without sockets, for the fuzzer (`fuzz/fuzz_targets/dns_packet.rs`):
/// parse, identify, decide, answer, encode. No upstream is configured, so
/// allowed names get SERVFAIL at once.
#[doc(hidden)]
pub mod fuzzing {
    use std::sync::{Arc, OnceLock};

    use super::*;

    fn shared() -> &'static (tokio::runtime::Runtime, Arc<answer::Shared>) {
        static SHARED: OnceLock<(tokio::runtime::Runtime, Arc<answer::Shared>)> = OnceLock::new();
        SHARED.get_or_init(|| {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            let policy = haven_policy::PolicySet::everyone("fuzz", "p", haven_policy::CategorySet::all(), Default::default(), haven_policy::Verdict::Allow);
            let (lists, _) = haven_lists::compile(&[], "", &haven_lists::NoProgress).expect("empty index");
            let settings = haven_config::DnsSettings { log: false, ..Default::default() };
            let shared = rt.block_on(async {
                Arc::new(answer::Shared {
                    filter: ArcSwap::from_pointee(Filter { policy, lists: Arc::new(lists), settings, doh_tokens: Default::default() }),
                    cache: Arc::new(cache::Cache::new(1000)),
                    upstream: Arc::new(upstream::Upstream::new(Vec::new(), Duration::from_millis(1)).await.expect("upstream")),
                    log: log::LogWriter::disabled(),
                    sink: None,
                    counters: counters::Counters::new(),
                    unlisted: OnceLock::new(),
                })
            });
            (rt, shared)
        })
    }

    /// Answers one packet as if it came over UDP from 192.0.2.1.
    pub fn answer_packet(packet: &[u8]) -> Option<Vec<u8>> {
        let (rt, shared) = shared();
        rt.block_on(answer::answer(shared, packet, "192.0.2.1".parse().expect("ip"), None, Transport::Udp)).map(|a| a.bytes)
    }
}
