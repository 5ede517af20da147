//! Running Haven's servers (the DNS filter, the proxy, the safeguarding
//! service) until SIGTERM or Ctrl-C, reloading them on SIGHUP or when the
//! config, lists or lexicons change.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use arc_swap::ArcSwap;
use haven_dns::DnsServer;
use haven_proxy::ProxyServer;
use tracing::{info, warn};

use crate::snapshot::Recipe;
use crate::{exporter, web};

/// How often the record is asked whether filtering changes moved.
const CHANGES_EVERY: Duration = Duration::from_secs(2);

/// How long SIGTERM waits for requests in flight before stopping anyway.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// Runs until SIGTERM or Ctrl-C. `watch` re-checks the config and lists this
/// often and reloads when they changed.
pub(crate) fn run(recipe: Recipe, watch: Option<Duration>, pid_file: Option<PathBuf>) -> Result<()> {
    // On one core (a small box, or pinned) a single-threaded runtime avoids
    // cross-thread wake-ups; otherwise one worker per core.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let runtime = if cores == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(cores).enable_all().build()?
    };
    // Before any server starts, so every counter they make is recorded.
    let exporter = exporter::install();
    runtime.block_on(serve(recipe, exporter, watch, pid_file))
}

async fn serve(recipe: Recipe, exporter: Option<exporter::Exporter>, watch: Option<Duration>, pid_file: Option<PathBuf>) -> Result<()> {
    let started = Instant::now();
    let r = recipe.clone();
    let first = Arc::new(tokio::task::spawn_blocking(move || r.build()).await??);
    // The snapshot in force; a reload replaces it whole, or not at all.
    let current = Arc::new(ArcSwap::from(first.clone()));
    let mut sink: Option<Arc<dyn haven_accesslog::Sink>> = None;
    let mut intake = None;
    let mut web_app: Option<(haven_safeguard::Service, haven_safeguard::WebServer)> = None;
    if recipe.web.is_some() {
        let (server, service) = web::start(&first, exporter.as_ref().map(exporter::Exporter::hook)).await?;
        let taken = web::filter_sink(service.clone());
        sink = Some(taken.clone());
        intake = Some(taken);
        let addrs: Vec<String> = server.addrs.iter().map(|a| format!("http://{a}/")).collect();
        info!("haven: safeguarding web app and API ready in {:.2} s at {}", started.elapsed().as_secs_f64(), addrs.join(", "));
        web_app = Some((service, server));
    }
    // List feeds refreshed on their schedule (`crate::feeds`); one that
    // brings new lists asks for a reload through `feeds_in`.
    let feeds_in = Arc::new(tokio::sync::Notify::new());
    if let Some((service, _)) = &web_app {
        tokio::spawn(crate::feeds::run(current.clone(), service.store.clone(), feeds_in.clone()));
        // The daily retention job (`crate::retention`): `[retention]`'s periods.
        tokio::spawn(crate::retention::run(current.clone(), service.store.clone()));
    }
    // Hosts no list names, counted by the filters for IT's suggestions and
    // written into the record every minute (`crate::suggestions`).
    let unlisted = web_app.as_ref().map(|(service, _)| {
        let unlisted = Arc::new(haven_accesslog::Unlisted::default());
        tokio::spawn(crate::suggestions::run(unlisted.clone(), service.store.clone()));
        (unlisted, service.store.clone())
    });
    // The record's filtering changes, on top of the config's policy: looked
    // for every two seconds (a cheap query), so an approval is in force on
    // DNS and the proxy within seconds, in this process or another.
    let store = web_app.as_ref().map(|(service, _)| service.store.clone());
    let mut changes = Changes::default();
    if let Some(store) = &store {
        changes.refresh(store).await;
    }
    let mut dns_server: Option<DnsServer> = None;
    if let Some(filter) = first.dns_filter(&changes.in_force) {
        if filter.settings.upstream.is_empty() {
            warn!("haven: warning: no upstream resolver ([dns] upstream or --upstream): allowed names will get SERVFAIL");
        }
        let server = DnsServer::start_with(filter, first.log_dir.as_deref(), sink.clone()).await?;
        if let Some((u, _)) = &unlisted {
            server.count_unlisted(u.clone());
        }
        let addrs: Vec<String> = server.addrs.iter().map(ToString::to_string).collect();
        info!(
            "haven: DNS filter ready in {:.2} s on {} (UDP and TCP){}",
            started.elapsed().as_secs_f64(),
            addrs.join(", "),
            server.doh_addr.map(|a| format!("; DoH at http://{a}/dns-query/<token>")).unwrap_or_default()
                + &server.doh_tls_addr.map(|a| format!("; DoH over TLS at https://{a}/dns-query/<token>")).unwrap_or_default()
        );
        dns_server = Some(server);
    }
    let mut proxy_server: Option<ProxyServer> = None;
    if let Some(filter) = first.proxy_filter(&changes.in_force) {
        let inspect = filter.settings.inspect;
        let server = ProxyServer::start_with(filter, first.log_dir.as_deref(), &first.data_dir, sink.clone()).await?;
        if let Some((u, _)) = &unlisted {
            server.count_unlisted(u.clone());
        }
        let addrs: Vec<String> = server.addrs.iter().map(ToString::to_string).collect();
        info!(
            "haven: web proxy ready in {:.2} s on {}{}",
            started.elapsed().as_secs_f64(),
            addrs.join(", "),
            if inspect { " (HTTPS inspection on)" } else { "" }
        );
        proxy_server = Some(server);
    }
    let pid_file = pid_file.or_else(|| first.config.as_ref().map(|c| c.data_dir.join("haven.pid")));
    drop(first);
    if let Some(p) = &pid_file {
        if let Some(dir) = p.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = std::fs::write(p, std::process::id().to_string());
    }
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut tick = tokio::time::interval(watch.unwrap_or(Duration::from_secs(3600)));
    tick.tick().await;
    let mut changes_tick = tokio::time::interval(CHANGES_EVERY);
    changes_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let forced = tokio::select! {
            _ = hup.recv() => true,
            _ = feeds_in.notified() => true,
            _ = tick.tick(), if watch.is_some() => false,
            _ = changes_tick.tick(), if store.is_some() => {
                if let Some(store) = &store
                    && changes.refresh(store).await
                {
                    let now = current.load_full();
                    if let (Some(server), Some(filter)) = (&proxy_server, now.proxy_filter(&changes.in_force))
                        && let Err(e) = server.reload(filter)
                    {
                        warn!("haven: the proxy could not take the new filtering changes: {e}");
                    }
                    if let (Some(server), Some(filter)) = (&dns_server, now.dns_filter(&changes.in_force)) {
                        server.reload(filter);
                    }
                    info!("haven: filtering changes in force: {}", changes.in_force.len());
                }
                continue;
            }
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        };
        // A timer tick looks at file sizes and times only; nothing is parsed
        // unless something changed.
        let before = current.load_full();
        if !forced && !tokio::task::spawn_blocking(move || before.changed()).await? {
            continue;
        }
        let r = recipe.clone();
        let next = match tokio::task::spawn_blocking(move || r.build()).await? {
            Ok(s) => Arc::new(s),
            Err(e) => {
                metrics::counter!("haven_reloads_total", "result" => "refused").increment(1);
                warn!("haven: reload refused, still serving the previous configuration: {e:#}");
                continue;
            }
        };
        // The proxy's part can still fail (its accounts file, the school CA):
        // it goes first, so a refusal leaves every service on the old snapshot.
        if let (Some(server), Some(filter)) = (&proxy_server, next.proxy_filter(&changes.in_force))
            && let Err(e) = server.reload(filter)
        {
            metrics::counter!("haven_reloads_total", "result" => "refused").increment(1);
            warn!("haven: reload refused, still serving the previous configuration: {e}");
            continue;
        }
        if let Some((service, _)) = &web_app
            && let Err(e) = web::apply(service, &next).await
        {
            warn!("haven: the safeguarding service could not take the new configuration and keeps the previous one: {e:#}");
        }
        if let (Some(server), Some(filter)) = (&dns_server, next.dns_filter(&changes.in_force)) {
            server.reload(filter);
        }
        current.store(next);
        metrics::counter!("haven_reloads_total", "result" => "ok").increment(1);
        info!("haven: reloaded the configuration and lists ({})", parts(&recipe));
    }
    info!("haven: stopping: no new connections; waiting up to {} s for requests in flight", DRAIN_DEADLINE.as_secs());
    let mut said = Vec::new();
    // Every listener stops at once; then each waits for its own requests.
    let web_drained = async {
        match web_app {
            Some((_, server)) => server.drain(DRAIN_DEADLINE).await,
            None => true,
        }
    };
    let dns_drained = async {
        match dns_server {
            Some(server) => {
                let drained = server.drain(DRAIN_DEADLINE).await;
                let (written, dropped) = server.shutdown();
                Some((drained, written, dropped))
            }
            None => None,
        }
    };
    // The proxy's requests in flight get the same time, so they are logged;
    // tunnels (long-lived) end at its shutdown.
    let proxy_drained = async {
        match &proxy_server {
            Some(server) => server.drain(DRAIN_DEADLINE).await,
            None => true,
        }
    };
    let (web_drained, dns, proxy_drained) = tokio::join!(web_drained, dns_drained, proxy_drained);
    // What the filters found up to the last answer reaches the record before Haven stops.
    if let Some(intake) = &intake {
        let left = intake.flush(DRAIN_DEADLINE).await;
        if left > 0 {
            warn!("haven: {left} findings from the filters could not be recorded before stopping; they are lost");
        }
    }
    // The last minute's counts of unlisted hosts, too.
    if let Some((u, store)) = &unlisted {
        crate::suggestions::drain(u, store).await;
    }
    if !proxy_drained {
        warn!("haven: some web proxy connections (tunnels, or requests still running) were open after {} s and were cut off", DRAIN_DEADLINE.as_secs());
    }
    if !web_drained {
        warn!("haven: some web app requests were still running after {} s and were cut off", DRAIN_DEADLINE.as_secs());
    }
    if let Some((drained, written, dropped)) = dns {
        if !drained {
            warn!("haven: some DNS questions were still waiting for the upstream after {} s and were not answered", DRAIN_DEADLINE.as_secs());
        }
        said.push(format!("{written} DNS queries logged{}", if dropped > 0 { format!(" ({dropped} dropped)") } else { String::new() }));
    }
    if let Some(server) = proxy_server {
        let (written, dropped) = server.log_counts();
        server.shutdown();
        said.push(format!("{written} web requests logged{}", if dropped > 0 { format!(" ({dropped} dropped)") } else { String::new() }));
    }
    if let Some(p) = &pid_file {
        let _ = std::fs::remove_file(p);
    }
    info!("haven: stopped; {}", said.join(", "));
    Ok(())
}

/// The record's filtering changes the filters apply, and the version they
/// were read at.
#[derive(Default)]
struct Changes {
    version: Option<i64>,
    in_force: Vec<haven_policy::changes::Change>,
}

impl Changes {
    /// Reads them again if the record's version moved; whether they did.
    /// A record that cannot be read keeps the ones in force.
    async fn refresh(&mut self, store: &haven_store::Store) -> bool {
        let version = match store.filter_changes_version().await {
            Ok(v) => v,
            Err(e) => {
                warn!("haven: cannot read filtering changes from the record (the ones in force stay): {e}");
                return false;
            }
        };
        if self.version == Some(version) {
            return false;
        }
        match crate::changes::in_force(store, jiff::Timestamp::now()).await {
            Ok(c) => {
                self.in_force = c;
                self.version = Some(version);
                true
            }
            Err(e) => {
                warn!("haven: cannot read filtering changes from the record (the ones in force stay): {e:#}");
                false
            }
        }
    }
}

/// The services a reload reached, for the log line.
fn parts(recipe: &Recipe) -> String {
    let mut v = Vec::new();
    if recipe.dns.is_some() {
        v.push("DNS filter");
    }
    if recipe.proxy.is_some() {
        v.push("web proxy");
    }
    if recipe.web.is_some() {
        v.push("safeguarding service: calendars, alert thresholds, lexicons");
    }
    v.join(", ")
}
