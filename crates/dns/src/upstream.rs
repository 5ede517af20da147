//! Forwarding to the upstream resolvers: shared UDP sockets with random IDs,
//! responses matched by ID, source and question; TCP when a reply is truncated.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::oneshot;

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
}

type Pending = Mutex<HashMap<u16, (SocketAddr, oneshot::Sender<Vec<u8>>)>>;

struct Channel {
    socket: Arc<UdpSocket>,
    pending: Arc<Pending>,
    ipv4: bool,
}

/// The upstream resolvers.
pub(crate) struct Upstream {
    servers: Vec<SocketAddr>,
    timeout: Duration,
    channels: Vec<Channel>,
    next: std::sync::atomic::AtomicUsize,
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
        let mut channels = Vec::new();
        let want_v4 = servers.iter().any(SocketAddr::is_ipv4);
        let want_v6 = servers.iter().any(SocketAddr::is_ipv6);
        for (bind, wanted, ipv4) in [("0.0.0.0:0", want_v4, true), ("[::]:0", want_v6, false)] {
            if !wanted {
                continue;
            }
            // A few sockets: more source ports, and IDs spread over them.
            for _ in 0..4 {
                let socket = Arc::new(UdpSocket::bind(bind).await?);
                let pending: Arc<Pending> = Arc::default();
                tokio::spawn(receive(socket.clone(), pending.clone()));
                channels.push(Channel { socket, pending, ipv4 });
            }
        }
        Ok(Self { servers, timeout, channels, next: Default::default() })
    }

    /// Asks the upstreams in order, sharing the time budget between them.
    pub(crate) async fn query(&self, q: &Question) -> Result<Message, UpstreamError> {
        if self.servers.is_empty() {
            return Err(UpstreamError::NoUpstream);
        }
        let per_try = self.timeout / self.servers.len() as u32;
        for server in &self.servers {
            if let Ok(Some(m)) = tokio::time::timeout(per_try, self.ask(*server, q)).await {
                return Ok(m);
            }
        }
        Err(UpstreamError::Timeout)
    }

    async fn ask(&self, server: SocketAddr, q: &Question) -> Option<Message> {
        let channels: Vec<&Channel> = self.channels.iter().filter(|c| c.ipv4 == server.is_ipv4()).collect();
        let start = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let channel = channels.get(start % channels.len().max(1))?;
        let (tx, rx) = oneshot::channel();
        let mut id = random_id();
        {
            let mut pending = channel.pending.lock().ok()?;
            while pending.contains_key(&id) {
                id = random_id();
            }
            pending.insert(id, (server, tx));
        }
        let _guard = Forget { pending: &channel.pending, id };
        channel.socket.send_to(&wire::upstream_query(id, q), server).await.ok()?;
        let bytes = rx.await.ok()?;
        let m = Message::from_vec(&bytes).ok()?;
        if m.queries.first().is_none_or(|rq| rq.name().to_lowercase() != q.query.name().to_lowercase() || rq.query_type() != q.qtype) {
            return None;
        }
        if m.metadata.truncation {
            return ask_tcp(server, q).await;
        }
        Some(m)
    }
}

/// Removes a pending ID when its query is done or abandoned.
struct Forget<'a> {
    pending: &'a Pending,
    id: u16,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        if let Ok(mut p) = self.pending.lock() {
            p.remove(&self.id);
        }
    }
}

async fn receive(socket: Arc<UdpSocket>, pending: Arc<Pending>) {
    let mut buf = vec![0u8; 65535];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf).await else { continue };
        if n < 12 {
            continue;
        }
        let id = u16::from_be_bytes([buf[0], buf[1]]);
        let waiter = pending.lock().ok().and_then(|mut p| match p.get(&id) {
            // Only the server we asked may answer.
            Some((server, _)) if *server == from => p.remove(&id),
            _ => None,
        });
        if let Some((_, tx)) = waiter {
            let _ = tx.send(buf[..n].to_vec());
        }
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
