//! Connections to origin servers: names from the config's `[proxy.hosts]` or
//! the system resolver, plain TCP or TLS (verified), shaped as a connector
//! for hyper's pooled client so keep-alive connections to origins are reused.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Opens TCP connections to origins.
#[derive(Clone)]
pub(crate) struct Connector {
    pub(crate) hosts: Arc<BTreeMap<String, IpAddr>>,
    pub(crate) tls: Arc<rustls::ClientConfig>,
    pub(crate) timeout: Duration,
}

/// A connection to an origin.
pub(crate) enum OriginStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Connector {
    /// A TCP connection to `host:port`, within the connect timeout.
    pub(crate) async fn tcp(&self, host: &str, port: u16) -> io::Result<TcpStream> {
        let addrs: Vec<SocketAddr> = if let Some(ip) = self.hosts.get(host) {
            vec![SocketAddr::new(*ip, port)]
        } else if let Ok(ip) = host.parse::<IpAddr>() {
            vec![SocketAddr::new(ip, port)]
        } else {
            tokio::time::timeout(self.timeout, tokio::net::lookup_host((host, port)))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("looking up {host} took too long")))??
                .collect()
        };
        let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address"));
        for a in addrs {
            match tokio::time::timeout(self.timeout, TcpStream::connect(a)).await {
                Ok(Ok(s)) => {
                    let _ = s.set_nodelay(true);
                    return Ok(s);
                }
                Ok(Err(e)) => last = e,
                Err(_) => last = io::Error::new(io::ErrorKind::TimedOut, format!("connecting to {a} took too long")),
            }
        }
        Err(last)
    }
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<OriginStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let host = uri.host().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no host"))?;
            let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
            let https = uri.scheme_str() == Some("https");
            let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
            let tcp = this.tcp(&host, port).await?;
            if !https {
                return Ok(TokioIo::new(OriginStream::Plain(tcp)));
            }
            let name = ServerName::try_from(host.clone()).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            let tls = tokio::time::timeout(this.timeout, tokio_rustls::TlsConnector::from(this.tls.clone()).connect(name, tcp))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("TLS with {host} took too long")))??;
            Ok(TokioIo::new(OriginStream::Tls(Box::new(tls))))
        })
    }
}

impl Connection for OriginStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for OriginStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for OriginStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
