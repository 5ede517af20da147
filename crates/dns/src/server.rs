//! Listeners: UDP and TCP on every configured address, and DoH when asked.
//! Every kind of work is bounded (questions in flight over UDP, open TCP
//! and DoH connections), and every listener stops on drain while what is
//! in flight finishes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinHandle;

use crate::answer::{Shared, Transport, answer};

/// How long a TCP client may take to send a question, and may stay idle between questions.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// UDP questions being worked on at once (most waiting for an upstream
/// answer they share with others); more are dropped, as an overloaded
/// resolver does, and counted: the client asks again. The upstream itself
/// has its own bound (`upstream::MAX_IN_FLIGHT`).
pub(crate) const MAX_UDP_IN_FLIGHT: u32 = 16_384;
/// Open DNS-over-TCP connections at once; more are closed at once.
pub(crate) const MAX_TCP_CONNECTIONS: u32 = 512;
/// Open DoH connections at once; more are closed at once.
pub(crate) const MAX_DOH_CONNECTIONS: u32 = 512;

/// What bounds the listeners, and tells them to stop.
#[derive(Clone)]
pub(crate) struct Gate {
    pub(crate) stop: watch::Receiver<bool>,
    pub(crate) udp: Arc<Semaphore>,
    pub(crate) tcp: Arc<Semaphore>,
    pub(crate) doh: Arc<Semaphore>,
    /// One permit per open listener, given back only after its socket is
    /// closed, so a finished drain means nothing listens any more.
    listening: Arc<Semaphore>,
}

impl Gate {
    pub(crate) fn new() -> (watch::Sender<bool>, Self) {
        let (tx, stop) = watch::channel(false);
        let gate = Self {
            stop,
            udp: Arc::new(Semaphore::new(MAX_UDP_IN_FLIGHT as usize)),
            tcp: Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS as usize)),
            doh: Arc::new(Semaphore::new(MAX_DOH_CONNECTIONS as usize)),
            listening: Arc::new(Semaphore::new(u32::MAX as usize)),
        };
        (tx, gate)
    }

    /// Resolves when the server drains (never, if it was dropped without).
    pub(crate) async fn stopped(&self) {
        let mut stop = self.stop.clone();
        if stop.wait_for(|s| *s).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Held by a listener's task while its socket is open; taken before the
    /// task is spawned, so a drain cannot miss a listener not yet running.
    pub(crate) fn listening(&self) -> Option<OwnedSemaphorePermit> {
        self.listening.clone().try_acquire_owned().ok()
    }

    /// Waits until nothing is in flight on any listener and every listening
    /// socket is closed.
    pub(crate) async fn idle(&self) {
        let _listening = self.listening.acquire_many(u32::MAX).await;
        let _udp = self.udp.acquire_many(MAX_UDP_IN_FLIGHT).await;
        let _tcp = self.tcp.acquire_many(MAX_TCP_CONNECTIONS).await;
        let _doh = self.doh.acquire_many(MAX_DOH_CONNECTIONS).await;
    }
}

/// Binds UDP and TCP on `addr` (the same port for both, also when `addr` asks
/// for any port) and serves them.
pub(crate) async fn listen(shared: Arc<Shared>, addr: SocketAddr, gate: Gate) -> std::io::Result<(SocketAddr, Vec<JoinHandle<()>>)> {
    let (udp, tcp) = bind_pair(addr).await?;
    let (udp, local) = (Arc::new(udp), tcp.local_addr()?);
    let (udp_open, tcp_open) = (gate.listening(), gate.listening());
    let (udp_shared, udp_gate) = (shared.clone(), gate.clone());
    Ok((
        local,
        vec![
            tokio::spawn(async move {
                serve_udp(udp_shared, udp, udp_gate).await;
                drop(udp_open);
            }),
            tokio::spawn(async move {
                serve_tcp(shared, tcp, gate).await;
                drop(tcp_open);
            }),
        ],
    ))
}

/// UDP and TCP on one port. Asked for any port (`:0`), the port UDP got may
/// already be taken for TCP by another program: then another is tried.
async fn bind_pair(addr: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener)> {
    let mut tries = if addr.port() == 0 { 20 } else { 1 };
    loop {
        let udp = UdpSocket::bind(addr).await?;
        match TcpListener::bind(udp.local_addr()?).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries > 1 => tries -= 1,
            Err(e) => return Err(e),
        }
    }
}

async fn serve_udp(shared: Arc<Shared>, socket: Arc<UdpSocket>, gate: Gate) {
    let mut buf = vec![0u8; 65535];
    let stopped = gate.stopped();
    let mut stopped = std::pin::pin!(stopped);
    loop {
        let received = tokio::select! {
            () = &mut stopped => return,
            r = socket.recv_from(&mut buf) => r,
        };
        // ICMP errors from earlier sends surface here on some systems: not fatal.
        let Ok((n, from)) = received else { continue };
        shared.counters.query(Transport::Udp);
        let Ok(permit) = gate.udp.clone().try_acquire_owned() else {
            shared.counters.shed();
            continue;
        };
        let packet = buf[..n].to_vec();
        let (shared, socket) = (shared.clone(), socket.clone());
        tokio::spawn(async move {
            let _permit = permit;
            if let Some(a) = answer(&shared, &packet, from.ip(), None, Transport::Udp).await {
                let _ = socket.send_to(&a.bytes, from).await;
            }
        });
    }
}

async fn serve_tcp(shared: Arc<Shared>, listener: TcpListener, gate: Gate) {
    let stopped = gate.stopped();
    let mut stopped = std::pin::pin!(stopped);
    loop {
        let accepted = tokio::select! {
            () = &mut stopped => return,
            r = listener.accept() => r,
        };
        let Ok((stream, from)) = accepted else {
            // Out of file descriptors and the like: wait rather than spin.
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let Ok(permit) = gate.tcp.clone().try_acquire_owned() else {
            metrics::counter!("haven_connections_refused_total", "listener" => "dns-tcp").increment(1);
            continue;
        };
        let (shared, gate) = (shared.clone(), gate.clone());
        tokio::spawn(async move {
            let _permit = permit;
            tcp_connection(shared, stream, from, gate).await;
        });
    }
}

async fn tcp_connection(shared: Arc<Shared>, mut stream: TcpStream, from: SocketAddr, gate: Gate) {
    let _ = stream.set_nodelay(true);
    loop {
        // Between questions a drain closes the connection; a question already
        // being read or answered is finished first.
        let len = tokio::select! {
            () = gate.stopped() => return,
            r = tokio::time::timeout(TCP_IDLE, stream.read_u16()) => match r {
                Ok(Ok(len)) => len,
                _ => return,
            },
        };
        let mut packet = vec![0u8; usize::from(len)];
        if !matches!(tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut packet)).await, Ok(Ok(_))) {
            return;
        }
        shared.counters.query(Transport::Tcp);
        let Some(a) = answer(&shared, &packet, from.ip(), None, Transport::Tcp).await else { return };
        let Ok(len) = u16::try_from(a.bytes.len()) else { return };
        let mut framed = Vec::with_capacity(a.bytes.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&a.bytes);
        if !matches!(tokio::time::timeout(TCP_IDLE, stream.write_all(&framed)).await, Ok(Ok(()))) {
            return;
        }
    }
}
