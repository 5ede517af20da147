//! The web app's listeners: bounded (a connection cap, a header and idle
//! timeout, a deadline for each request's body and answer) and graceful (on
//! drain, no new connections; requests in flight finish, within a deadline).
//! Also `GET /metrics` for the process's Prometheus recorder, which the
//! binary hands in, restricted to this machine or a token.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{Semaphore, watch};

use crate::Service;

/// How far the web app's listeners go before closing a client.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A client that has not sent a whole request head this long after
    /// connecting, or after its previous answer (idle keep-alive), is closed.
    pub header_and_idle: Duration,
    /// Reading a request's body and answering it must finish in this time
    /// (evidence uploads included), else 408.
    pub request: Duration,
    /// Open connections at most, over all listeners; more are closed at once.
    pub max_connections: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self { header_and_idle: Duration::from_secs(20), request: Duration::from_secs(120), max_connections: 1024 }
    }
}

/// What `GET /metrics` answers with: the Prometheus text format, rendered on
/// request. Served to loopback clients (not through a reverse proxy), or to
/// anyone sending `Authorization: Bearer <token>` when a token is set: the
/// counts describe pupils' activity, so they are not public.
#[derive(Clone)]
pub struct MetricsHook {
    /// Renders the current metrics.
    pub render: Arc<dyn Fn() -> String + Send + Sync>,
    /// A bearer token that also allows clients elsewhere.
    pub token: Option<String>,
}

/// A running web app.
pub struct WebServer {
    /// The addresses it listens on.
    pub addrs: Vec<SocketAddr>,
    stop: watch::Sender<bool>,
    open: Arc<Semaphore>,
    max_connections: u32,
}

impl WebServer {
    /// Stops accepting, asks open connections to close after their current
    /// request, and waits up to `deadline` for them. True when all finished.
    pub async fn drain(self, deadline: Duration) -> bool {
        let _ = self.stop.send(true);
        tokio::time::timeout(deadline, self.open.acquire_many(self.max_connections)).await.is_ok()
    }
}

/// Resolves when `stop` says so; never, when the server's handle was dropped
/// (then it serves until the process ends).
async fn stopped(mut stop: watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Binds the web app and API on `addrs` (with `GET /metrics` when `metrics`
/// is given) and serves them in the background.
pub async fn serve_with(service: Service, addrs: &[SocketAddr], metrics: Option<MetricsHook>) -> std::io::Result<WebServer> {
    serve_limited(service, addrs, metrics, Limits::default()).await
}

/// [`serve_with`] within `limits`.
pub async fn serve_limited(service: Service, addrs: &[SocketAddr], metrics: Option<MetricsHook>, limits: Limits) -> std::io::Result<WebServer> {
    let mut app = crate::router(service);
    if let Some(hook) = metrics {
        app = app.merge(axum::Router::new().route("/metrics", axum::routing::get(metrics_page)).with_state(hook));
    }
    let (stop, _) = watch::channel(false);
    let open = Arc::new(Semaphore::new(limits.max_connections as usize));
    let mut bound = Vec::new();
    let mut listeners = Vec::new();
    for addr in addrs {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot listen for the web app on {addr}: {e} (is something else running there? use --listen)"))
        })?;
        bound.push(listener.local_addr()?);
        listeners.push(listener);
    }
    for listener in listeners {
        tokio::spawn(accept(listener, app.clone(), stop.subscribe(), open.clone(), limits));
    }
    Ok(WebServer { addrs: bound, stop, open, max_connections: limits.max_connections })
}

async fn accept(listener: tokio::net::TcpListener, app: axum::Router, stop: watch::Receiver<bool>, open: Arc<Semaphore>, limits: Limits) {
    let mut end = std::pin::pin!(stopped(stop.clone()));
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut end => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                // Out of file descriptors and the like: wait rather than spin.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            metrics::counter!("haven_connections_refused_total", "listener" => "web").increment(1);
            tracing::debug!(%peer, "haven: the web app has {} connections open; closing a new one", limits.max_connections);
            continue;
        };
        let (app, stop) = (app.clone(), stop.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                let mut app = app.clone();
                async move {
                    let answer = tower_service::Service::call(&mut app, req);
                    match tokio::time::timeout(limits.request, answer).await {
                        Ok(r) => r,
                        Err(_) => Ok((StatusCode::REQUEST_TIMEOUT, "the request took too long to arrive or to answer\n").into_response()),
                    }
                }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(limits.header_and_idle);
            let conn = builder.serve_connection(TokioIo::new(tcp), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                () = stopped(stop) => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
}

/// Loopback without a reverse proxy's forwarding headers: this machine.
fn from_this_machine(peer: IpAddr, headers: &HeaderMap) -> bool {
    let loopback = match peer {
        IpAddr::V4(a) => a.is_loopback(),
        IpAddr::V6(a) => a.is_loopback() || a.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    };
    loopback && !["forwarded", "x-forwarded-for", "x-real-ip"].iter().any(|h| headers.contains_key(*h))
}

/// Compares without stopping at the first difference.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn metrics_page(State(hook): State<MetricsHook>, ConnectInfo(peer): ConnectInfo<SocketAddr>, headers: HeaderMap) -> Response {
    let bearer = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let allowed =
        from_this_machine(peer.ip(), &headers) || matches!((&hook.token, bearer), (Some(t), Some(b)) if same_secret(t.as_bytes(), b.trim().as_bytes()));
    if !allowed {
        return (StatusCode::FORBIDDEN, "metrics are served to this machine only, or with Authorization: Bearer and the HAVEN_METRICS_TOKEN set for Haven\n")
            .into_response();
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], (hook.render)()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_machine_without_forwarding_headers() {
        let none = HeaderMap::new();
        assert!(from_this_machine("127.0.0.1".parse().unwrap(), &none));
        assert!(from_this_machine("::1".parse().unwrap(), &none));
        assert!(from_this_machine("::ffff:127.0.0.1".parse().unwrap(), &none));
        assert!(!from_this_machine("192.0.2.7".parse().unwrap(), &none));
        let mut forwarded = HeaderMap::new();
        forwarded.insert("x-forwarded-for", "203.0.113.9".parse().unwrap());
        assert!(!from_this_machine("127.0.0.1".parse().unwrap(), &forwarded), "a reverse proxy on this machine is not this machine");
        assert!(same_secret(b"abc", b"abc") && !same_secret(b"abc", b"abd") && !same_secret(b"abc", b"ab"));
    }
}
