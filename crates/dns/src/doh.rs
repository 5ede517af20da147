//! DNS-over-HTTPS (RFC 8484) at `/dns-query/<device-token>`: a school device
//! off site is identified by its own token and filtered by its owner's policy.
//!
//! Served as HTTP/1.1 here; put TLS in front (or use the proxy, later) for
//! devices on the internet.

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

use crate::answer::{Shared, Transport, answer};
use crate::server::Gate;

const DNS_MESSAGE: &str = "application/dns-message";
/// A client must send a whole request head this soon after connecting or
/// after its previous answer (so an idle keep-alive connection closes too).
const HEADER_AND_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// A POSTed DNS message must have arrived this soon after its head.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) async fn listen(shared: Arc<Shared>, addr: SocketAddr, gate: Gate) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
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
            let (shared, gate) = (shared.clone(), gate.clone());
            tokio::spawn(async move {
                let _permit = permit;
                let service = hyper::service::service_fn(move |req| handle(shared.clone(), peer, req));
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder.timer(TokioTimer::new()).header_read_timeout(HEADER_AND_IDLE_TIMEOUT);
                let conn = builder.serve_connection(TokioIo::new(stream), service);
                let mut conn = std::pin::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => {}
                    () = gate.stopped() => {
                        // The request being answered finishes; then the connection closes.
                        conn.as_mut().graceful_shutdown();
                        let _ = conn.await;
                    }
                }
            });
        }
    });
    Ok((local, task))
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
    let Some(device) = shared.filter.load().doh_tokens.get(token).copied() else {
        return Ok(plain(StatusCode::FORBIDDEN, "unknown device token\n"));
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
    match answer(&shared, &packet, peer.ip(), Some(device), Transport::Doh).await {
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
