//! Listeners: UDP and TCP on every configured address, and DoH when asked.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

use crate::answer::{Shared, Transport, answer};

/// How long an idle TCP client may keep its connection.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// Binds UDP and TCP on `addr` (the same port for both, also when `addr` asks
/// for any port) and serves them.
pub(crate) async fn listen(shared: Arc<Shared>, addr: SocketAddr) -> std::io::Result<(SocketAddr, Vec<JoinHandle<()>>)> {
    let (udp, tcp) = bind_pair(addr).await?;
    let (udp, local) = (Arc::new(udp), tcp.local_addr()?);
    let mut tasks = Vec::new();
    let s = shared.clone();
    tasks.push(tokio::spawn(serve_udp(s, udp)));
    tasks.push(tokio::spawn(serve_tcp(shared, tcp)));
    Ok((local, tasks))
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

async fn serve_udp(shared: Arc<Shared>, socket: Arc<UdpSocket>) {
    let mut buf = vec![0u8; 65535];
    loop {
        // ICMP errors from earlier sends surface here on some systems: not fatal.
        let Ok((n, from)) = socket.recv_from(&mut buf).await else { continue };
        let packet = buf[..n].to_vec();
        let (shared, socket) = (shared.clone(), socket.clone());
        tokio::spawn(async move {
            if let Some(a) = answer(&shared, &packet, from.ip(), None, Transport::Udp).await {
                let _ = socket.send_to(&a.bytes, from).await;
            }
        });
    }
}

async fn serve_tcp(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        let Ok((stream, from)) = listener.accept().await else { continue };
        tokio::spawn(tcp_connection(shared.clone(), stream, from));
    }
}

async fn tcp_connection(shared: Arc<Shared>, mut stream: TcpStream, from: SocketAddr) {
    let _ = stream.set_nodelay(true);
    loop {
        let Ok(Ok(len)) = tokio::time::timeout(TCP_IDLE, stream.read_u16()).await else { return };
        let mut packet = vec![0u8; usize::from(len)];
        if tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut packet)).await.is_err() {
            return;
        }
        let Some(a) = answer(&shared, &packet, from.ip(), None, Transport::Tcp).await else { return };
        let Ok(len) = u16::try_from(a.bytes.len()) else { return };
        let mut framed = Vec::with_capacity(a.bytes.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&a.bytes);
        if stream.write_all(&framed).await.is_err() {
            return;
        }
    }
}
