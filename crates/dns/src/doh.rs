//! DNS-over-HTTPS (RFC 8484) at `/dns-query/<device-token>`: a school device
//! off site is identified by its own token and filtered by its owner's policy.
//!
//! Served as plain HTTP/1.1 (`[dns] doh_listen`, behind a TLS terminator or
//! on a trusted network) and over TLS by Haven itself (`[dns]
//! doh_tls_listen`), so a school laptop at home resolves through the school
//! with nothing in front. The certificate is read again when its file
//! changes, so a renewal needs no restart.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::answer::{Shared, Transport, answer_as};
use crate::server::Gate;

const DNS_MESSAGE: &str = "application/dns-message";
/// A client must send a whole request head this soon after connecting or
/// after its previous answer (so an idle keep-alive connection closes too).
const HEADER_AND_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// A POSTed DNS message must have arrived this soon after its head.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client has to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the certificate file is looked at for a renewal.
const CERT_CHECK: Duration = Duration::from_secs(30);

/// The TLS side of DoH: the certificate and key files, read again when
/// they change.
pub(crate) struct Tls {
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    state: std::sync::Mutex<TlsState>,
}

struct TlsState {
    config: Arc<rustls::ServerConfig>,
    stamp: Option<std::time::SystemTime>,
    checked: std::time::Instant,
}

fn stamp(path: &std::path::Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl Tls {
    /// Reads the files now; an error names the file and what is wrong.
    pub(crate) fn load(cert: &std::path::Path, key: &std::path::Path) -> std::io::Result<Self> {
        let config = Self::read(cert, key)?;
        Ok(Self {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            state: std::sync::Mutex::new(TlsState { config, stamp: stamp(cert), checked: std::time::Instant::now() }),
        })
    }

    fn read(cert: &std::path::Path, key: &std::path::Path) -> std::io::Result<Arc<rustls::ServerConfig>> {
        use rustls_pki_types::pem::PemObject as _;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let bad = |what: &std::path::Path, e: &dyn std::fmt::Display| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("DoH over TLS: {}: {e} (a PEM file is needed: [dns] doh_tls_cert and doh_tls_key)", what.display()),
            )
        };
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(cert).map_err(|e| bad(cert, &e))?.collect::<Result<_, _>>().map_err(|e| bad(cert, &e))?;
        if chain.is_empty() {
            return Err(bad(cert, &"no certificate in the file"));
        }
        let private = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, &e))?;
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(cert, &e))?
            .with_no_client_auth()
            .with_single_cert(chain, private)
            .map_err(|e| bad(key, &e))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// The configuration in force, read again if the certificate changed.
    fn config(&self) -> Arc<rustls::ServerConfig> {
        let mut st = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if st.checked.elapsed() >= CERT_CHECK {
            st.checked = std::time::Instant::now();
            let now = stamp(&self.cert);
            if now != st.stamp {
                match Self::read(&self.cert, &self.key) {
                    Ok(c) => {
                        st.config = c;
                        st.stamp = now;
                        tracing::info!("DoH over TLS: read the renewed certificate {}", self.cert.display());
                    }
                    // Half-written during a renewal, perhaps: keep the old one and look again.
                    Err(e) => tracing::warn!("DoH over TLS: keeping the certificate in use: {e}"),
                }
            }
        }
        st.config.clone()
    }
}

pub(crate) async fn listen(shared: Arc<Shared>, addr: SocketAddr, gate: Gate, tls: Option<Arc<Tls>>) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let open = gate.listening();
    let task = tokio::spawn(async move {
        let stopped = gate.stopped();
        let mut stopped = std::pin::pin!(stopped);
        loop {
            let accepted = tokio::select! {
                () = &mut stopped => {
                    // Closed before the drain is told this listener is done.
                    drop(listener);
                    drop(open);
                    return;
                }
                r = listener.accept() => r,
            };
            let Ok((stream, peer)) = accepted else {
                // Out of file descriptors and the like: wait rather than spin.
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            let Ok(permit) = gate.doh.clone().try_acquire_owned() else {
                metrics::counter!("haven_connections_refused_total", "listener" => "doh").increment(1);
                continue;
            };
            let (shared, gate, tls) = (shared.clone(), gate.clone(), tls.clone());
            tokio::spawn(async move {
                let _permit = permit;
                match tls {
                    None => serve(TokioIo::new(stream), shared, peer, gate).await,
                    Some(tls) => {
                        let acceptor = tokio_rustls::TlsAcceptor::from(tls.config());
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                            Ok(Ok(stream)) => serve(TokioIo::new(stream), shared, peer, gate).await,
                            _ => metrics::counter!("haven_doh_tls_handshakes_failed_total").increment(1),
                        }
                    }
                }
            });
        }
    });
    Ok((local, task))
}

/// Answers DoH requests on one connection until it closes or the server drains.
async fn serve<I>(io: I, shared: Arc<Shared>, peer: SocketAddr, gate: Gate)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| handle(shared.clone(), peer, req));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(HEADER_AND_IDLE_TIMEOUT);
    let conn = builder.serve_connection(io, service);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        () = gate.stopped() => {
            // The request being answered finishes; then the connection closes.
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

fn plain(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(text.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

async fn handle(shared: Arc<Shared>, peer: SocketAddr, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let Some(token) = req.uri().path().strip_prefix("/dns-query/").filter(|t| !t.is_empty() && !t.contains('/')) else {
        return Ok(plain(StatusCode::NOT_FOUND, "DNS-over-HTTPS is served at /dns-query/<device-token>\n"));
    };
    // A device's own token, else a filtering check's probe token.
    let (device, probe) = {
        let filter = shared.filter.load();
        match filter.doh_tokens.get(token).copied() {
            Some(d) => (Some(d), None),
            None => match crate::answer::probe_subject(&filter, token, jiff::Timestamp::now()) {
                Some(subject) => (None, Some(subject)),
                None => return Ok(plain(StatusCode::FORBIDDEN, "unknown device token\n")),
            },
        }
    };
    let packet = match *req.method() {
        Method::GET => {
            let param = req.uri().query().unwrap_or_default().split('&').find_map(|kv| kv.strip_prefix("dns="));
            match param.and_then(|p| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(p.trim_end_matches('=')).ok()) {
                Some(p) => p,
                None => return Ok(plain(StatusCode::BAD_REQUEST, "expected ?dns=<base64url DNS message>\n")),
            }
        }
        Method::POST => {
            let is_dns = req.headers().get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with(DNS_MESSAGE));
            if !is_dns {
                return Ok(plain(StatusCode::UNSUPPORTED_MEDIA_TYPE, "expected content-type application/dns-message\n"));
            }
            match tokio::time::timeout(BODY_TIMEOUT, Limited::new(req.into_body(), 65535).collect()).await {
                Ok(Ok(b)) => b.to_bytes().to_vec(),
                Ok(Err(_)) => return Ok(plain(StatusCode::PAYLOAD_TOO_LARGE, "a DNS message is at most 65535 bytes\n")),
                Err(_) => return Ok(plain(StatusCode::REQUEST_TIMEOUT, "the DNS message did not arrive in time\n")),
            }
        }
        _ => return Ok(plain(StatusCode::METHOD_NOT_ALLOWED, "use GET or POST\n")),
    };
    shared.counters.query(Transport::Doh);
    match answer_as(&shared, &packet, peer.ip(), device, probe, Transport::Doh).await {
        Some(a) => {
            let mut r = Response::new(Full::new(Bytes::from(a.bytes)));
            let h = r.headers_mut();
            h.insert("content-type", hyper::header::HeaderValue::from_static(DNS_MESSAGE));
            if let Ok(v) = hyper::header::HeaderValue::from_str(&format!("max-age={}", a.ttl)) {
                h.insert("cache-control", v);
            }
            Ok(r)
        }
        None => Ok(plain(StatusCode::BAD_REQUEST, "not a DNS query\n")),
    }
}
