//! Connections to origin servers: names from the config's `[proxy.hosts]` or
//! the system resolver, plain TCP or TLS (verified), shaped as a connector
//! for hyper's pooled client so keep-alive connections to origins are reused.
//! Every address is checked after the name is resolved, so neither a name that
//! resolves (or is rebound) to an internal address nor an address written in
//! any form reaches the school's own network or Haven itself.

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
    /// Internal ranges the configuration lets the proxy reach.
    pub(crate) allow_internal: Arc<[ipnet::IpNet]>,
    /// Haven's own listeners: never reached, whatever is allowed.
    pub(crate) haven: Arc<[SocketAddr]>,
}

/// A connection refused because of where it would go.
#[derive(Debug, thiserror::Error)]
#[error("{addr} is inside the school network or Haven itself; the proxy does not forward there")]
pub(crate) struct Internal {
    pub(crate) addr: SocketAddr,
}

/// The refused address, if `e` (or what caused it) is an [`Internal`] refusal.
pub(crate) fn refused_internal(e: &(dyn std::error::Error + 'static)) -> Option<SocketAddr> {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(i) = e.downcast_ref::<Internal>() {
            return Some(i.addr);
        }
        if let Some(i) = e.downcast_ref::<io::Error>().and_then(|io| io.get_ref()).and_then(|inner| inner.downcast_ref::<Internal>()) {
            return Some(i.addr);
        }
        next = e.source();
    }
    None
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
            if !self.may_reach(a) {
                last = io::Error::new(io::ErrorKind::PermissionDenied, Internal { addr: a });
                continue;
            }
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

impl Connector {
    /// Whether the proxy may open a connection to `a`.
    pub(crate) fn may_reach(&self, a: SocketAddr) -> bool {
        let ip = a.ip().to_canonical();
        let haven = self
            .haven
            .iter()
            .any(|l| l.port() == a.port() && (l.ip().to_canonical() == ip || (l.ip().is_unspecified() && (ip.is_loopback() || ip.is_unspecified()))));
        if haven {
            return false;
        }
        (!haven_config::is_internal_address(ip) && !haven_config::is_internal_address(a.ip()))
            || self.allow_internal.iter().any(|n| n.contains(&ip) || n.contains(&a.ip()))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn connector(allow: &[&str], haven: &[&str]) -> Connector {
        Connector {
            hosts: Arc::new(BTreeMap::from([("rebound.test".to_string(), "127.0.0.1".parse().unwrap())])),
            tls: crate::tls::origin_config(None).unwrap(),
            timeout: Duration::from_secs(1),
            allow_internal: allow.iter().map(|n| n.parse().unwrap()).collect(),
            haven: haven.iter().map(|a| a.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn internal_addresses_and_havens_own_listeners_are_refused_unless_allowed() {
        let strict = connector(&[], &["127.0.0.1:8080", "[::]:3128"]);
        for a in ["127.0.0.1:80", "[::1]:443", "[::ffff:127.0.0.1]:443", "10.1.2.3:80", "169.254.169.254:80", "100.64.1.1:443", "[fd00::1]:443", "0.0.0.0:80"] {
            assert!(!strict.may_reach(a.parse().unwrap()), "{a}");
        }
        assert!(strict.may_reach("93.184.215.14:443".parse().unwrap()));
        let school = connector(&["127.0.0.0/8", "10.0.0.0/8"], &["127.0.0.1:8080", "[::]:3128"]);
        assert!(school.may_reach("127.0.0.1:9000".parse().unwrap()) && school.may_reach("10.1.2.3:80".parse().unwrap()));
        assert!(school.may_reach("[::ffff:10.1.2.3]:80".parse().unwrap()), "an IPv4-mapped form of an allowed address");
        assert!(!school.may_reach("192.168.1.1:80".parse().unwrap()), "only the ranges allowed");
        assert!(!school.may_reach("127.0.0.1:8080".parse().unwrap()), "the web app is Haven's own");
        assert!(!school.may_reach("127.0.0.1:3128".parse().unwrap()) && !school.may_reach("[::1]:3128".parse().unwrap()), "a listener on every address");
        assert!(school.may_reach("10.0.0.9:3128".parse().unwrap()), "another machine's port 3128 is not Haven's");
    }

    #[tokio::test]
    async fn a_name_that_resolves_inside_is_refused_after_resolution() {
        let e = connector(&[], &[]).tcp("rebound.test", 9).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert_eq!(refused_internal(&e), Some("127.0.0.1:9".parse().unwrap()));
        let e = connector(&[], &[]).tcp("localhost", 9).await.unwrap_err();
        assert!(refused_internal(&e).is_some(), "{e}");
    }
}
