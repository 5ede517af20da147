//! Forwarding to the upstream resolvers: one UDP socket per question (a
//! fresh random source port) with a random ID, responses matched by ID,
//! source and question; TCP when a reply is truncated.

use std::hash::{BuildHasher, Hasher};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::wire::{self, Question};

/// Why no upstream answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// No upstream is configured.
    #[error("no upstream resolver is configured ([dns] upstream)")]
    NoUpstream,
    /// Every upstream timed out or failed.
    #[error("no upstream resolver answered in time")]
    Timeout,
    /// Too many questions were already waiting for the upstream resolvers.
    #[error("too many questions are waiting for the upstream resolvers")]
    Busy,
}

/// Distinct questions waiting for the upstream at once (each has its own
/// socket, so this also bounds the sockets). Identical questions share one
/// (the cache coalesces them); blocks and cache hits never wait, so an
/// upstream outage does not stop them being answered.
pub(crate) const MAX_IN_FLIGHT: usize = 512;

/// The upstream resolvers.
pub(crate) struct Upstream {
    servers: Vec<SocketAddr>,
    timeout: Duration,
    in_flight: tokio::sync::Semaphore,
    busy: std::sync::atomic::AtomicU64,
    busy_metric: metrics::Counter,
}

/// A random 16-bit query ID (RandomState is seeded from the OS per thread and
/// varied per call, which is what an ID needs: unpredictable to an off-path spoofer).
fn random_id() -> u16 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    h.finish() as u16
}

impl Upstream {
    pub(crate) async fn new(servers: Vec<SocketAddr>, timeout: Duration) -> std::io::Result<Self> {
        Ok(Self {
            servers,
            timeout,
            in_flight: tokio::sync::Semaphore::new(MAX_IN_FLIGHT),
            busy: std::sync::atomic::AtomicU64::new(0),
            busy_metric: metrics::counter!("haven_dns_upstream_busy_total"),
        })
    }

    /// Questions refused so far because [`MAX_IN_FLIGHT`] were waiting.
    pub(crate) fn busy_so_far(&self) -> u64 {
        self.busy.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Asks the upstreams in order, sharing the time budget between them.
    pub(crate) async fn query(&self, q: &Question) -> Result<Message, UpstreamError> {
        if self.servers.is_empty() {
            return Err(UpstreamError::NoUpstream);
        }
        let Ok(_slot) = self.in_flight.try_acquire() else {
            let n = self.busy.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            self.busy_metric.increment(1);
            // Said at the 1st, 2nd, 4th, 8th… time, so a flood does not flood the log.
            if n.is_power_of_two() {
                tracing::warn!(
                    refused = n,
                    "haven: {MAX_IN_FLIGHT} DNS questions are already waiting for the upstream resolvers; new ones are not forwarded (is the upstream slow or unreachable?)"
                );
            }
            return Err(UpstreamError::Busy);
        };
        let per_try = self.timeout / self.servers.len() as u32;
        for server in &self.servers {
            if let Ok(Some(m)) = tokio::time::timeout(per_try, ask(*server, q)).await {
                return Ok(m);
            }
        }
        metrics::counter!("haven_dns_upstream_failures_total").increment(1);
        Err(UpstreamError::Timeout)
    }
}

/// One question on its own socket: a fresh source port from the kernel's
/// randomised ephemeral range, so a spoofer off the path must guess port and
/// ID together. Only an answer from `server`, with our ID and our question,
/// is taken; anything else is ignored while the time lasts.
async fn ask(server: SocketAddr, q: &Question) -> Option<Message> {
    let any: SocketAddr = if server.is_ipv4() { (Ipv4Addr::UNSPECIFIED, 0).into() } else { (Ipv6Addr::UNSPECIFIED, 0).into() };
    let socket = UdpSocket::bind(any).await.ok()?;
    // Connected: the kernel drops datagrams from other sources, and an ICMP
    // "port unreachable" ends the wait at once instead of at the timeout.
    socket.connect(server).await.ok()?;
    let id = random_id();
    socket.send(&wire::upstream_query(id, q)).await.ok()?;
    // Room beyond the advertised payload size, for resolvers that ignore it.
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, from) = socket.recv_from(&mut buf).await.ok()?;
        if from != server || n < 12 || u16::from_be_bytes([buf[0], buf[1]]) != id {
            continue;
        }
        let Ok(m) = Message::from_vec(&buf[..n]) else { continue };
        if m.queries.first().is_none_or(|rq| rq.name().to_lowercase() != q.query.name().to_lowercase() || rq.query_type() != q.qtype) {
            continue;
        }
        if m.metadata.truncation {
            return ask_tcp(server, q).await;
        }
        return Some(m);
    }
}

async fn ask_tcp(server: SocketAddr, q: &Question) -> Option<Message> {
    let mut stream = TcpStream::connect(server).await.ok()?;
    let id = random_id();
    let query = wire::upstream_query(id, q);
    let mut framed = (query.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&query);
    stream.write_all(&framed).await.ok()?;
    let len = stream.read_u16().await.ok()?;
    let mut body = vec![0u8; usize::from(len)];
    stream.read_exact(&mut body).await.ok()?;
    let m = Message::from_vec(&body).ok()?;
    (m.metadata.id == id).then_some(m)
}
