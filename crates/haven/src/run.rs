//! Running Haven's servers (the DNS filter, the proxy, the safeguarding
//! service) until SIGTERM or Ctrl-C, reloading them on SIGHUP or when the
//! config, lists or lexicons change.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use haven_dns::DnsServer;
use haven_proxy::ProxyServer;

use crate::{dns, proxy, web};

/// Which servers to run, and where each builds its filter from.
pub(crate) struct Parts {
    pub(crate) dns: Option<dns::Source>,
    pub(crate) proxy: Option<proxy::Source>,
    pub(crate) web: Option<web::Source>,
}

/// Runs until SIGTERM or Ctrl-C. `watch` re-checks the config and lists this
/// often and reloads when they changed.
pub(crate) fn run(parts: Parts, watch: Option<Duration>, pid_file: Option<PathBuf>) -> Result<()> {
    // On one core (a small box, or pinned) a single-threaded runtime avoids
    // cross-thread wake-ups; otherwise one worker per core.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let runtime = if cores == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(cores).enable_all().build()?
    };
    runtime.block_on(serve(parts, watch, pid_file))
}

async fn serve(parts: Parts, watch: Option<Duration>, pid_file: Option<PathBuf>) -> Result<()> {
    let started = std::time::Instant::now();
    let mut data_dir = None;
    let mut sink = None;
    let mut web_service: Option<(haven_safeguard::Service, &web::Source, String)> = None;
    if let Some(source) = &parts.web {
        let (addrs, service, fingerprint) = web::start(source).await?;
        sink = Some(web::filter_sink(service.clone()));
        web_service = Some((service, source, fingerprint));
        let addrs: Vec<String> = addrs.iter().map(|a| format!("http://{a}/")).collect();
        eprintln!("haven: safeguarding web app and API ready in {:.2} s at {}", started.elapsed().as_secs_f64(), addrs.join(", "));
    }
    let mut dns_server: Option<(DnsServer, dns::Source, String)> = None;
    if let Some(source) = parts.dns.clone() {
        let s = source.clone();
        let (filter, log_dir, fingerprint) = tokio::task::spawn_blocking(move || s.build()).await??;
        if filter.settings.upstream.is_empty() {
            eprintln!("haven: warning: no upstream resolver ([dns] upstream or --upstream): allowed names will get SERVFAIL");
        }
        data_dir = log_dir.as_ref().and_then(|d| d.parent()).map(PathBuf::from);
        let server = DnsServer::start_with(filter, log_dir.as_deref(), sink.clone()).await?;
        let addrs: Vec<String> = server.addrs.iter().map(ToString::to_string).collect();
        eprintln!(
            "haven: DNS filter ready in {:.2} s on {} (UDP and TCP){}",
            started.elapsed().as_secs_f64(),
            addrs.join(", "),
            server.doh_addr.map(|a| format!("; DoH at http://{a}/dns-query/<token>")).unwrap_or_default()
        );
        dns_server = Some((server, source, fingerprint));
    }
    let mut proxy_server: Option<(ProxyServer, proxy::Source, String)> = None;
    if let Some(source) = parts.proxy.clone() {
        let s = source.clone();
        let built = tokio::task::spawn_blocking(move || s.build()).await??;
        data_dir = data_dir.or_else(|| built.log_dir.as_ref().and_then(|d| d.parent()).map(PathBuf::from));
        let inspect = built.filter.settings.inspect;
        let server = ProxyServer::start_with(built.filter, built.log_dir.as_deref(), &built.data_dir, sink.clone()).await?;
        let addrs: Vec<String> = server.addrs.iter().map(ToString::to_string).collect();
        eprintln!(
            "haven: web proxy ready in {:.2} s on {}{}",
            started.elapsed().as_secs_f64(),
            addrs.join(", "),
            if inspect { " (HTTPS inspection on)" } else { "" }
        );
        proxy_server = Some((server, source, built.fingerprint));
    }
    let pid_file = pid_file.or_else(|| data_dir.map(|d| d.join("haven.pid")));
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
    loop {
        let forced = tokio::select! {
            _ = hup.recv() => true,
            _ = tick.tick(), if watch.is_some() => false,
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        };
        if let Some((service, source, fingerprint)) = web_service.as_mut() {
            let changed = forced || source.fingerprint().map_or(true, |f| f != *fingerprint);
            if changed {
                match source.reload(service).await {
                    Ok(fp) => {
                        *fingerprint = fp;
                        eprintln!("haven: safeguarding service reloaded the configuration (calendars, alert thresholds, lexicons)");
                    }
                    Err(e) => eprintln!("haven: safeguarding reload refused, still using the previous configuration: {e:#}"),
                }
            }
        }
        if let Some((server, source, fingerprint)) = dns_server.as_mut() {
            let s = source.clone();
            let known = fingerprint.clone();
            // A timer tick builds nothing unless the files changed.
            let built = tokio::task::spawn_blocking(move || -> Result<Option<(haven_dns::Filter, String)>> {
                if !forced && s.fingerprint()? == known {
                    return Ok(None);
                }
                let (filter, _, fp) = s.build()?;
                Ok(Some((filter, fp)))
            })
            .await?;
            match built {
                Ok(Some((filter, fp))) => {
                    *fingerprint = fp;
                    server.reload(filter);
                    eprintln!("haven: DNS filter reloaded the configuration and lists");
                }
                Ok(None) => {}
                Err(e) => eprintln!("haven: DNS reload refused, still serving the previous configuration: {e:#}"),
            }
        }
        if let Some((server, source, fingerprint)) = proxy_server.as_mut() {
            let s = source.clone();
            let known = fingerprint.clone();
            let built = tokio::task::spawn_blocking(move || -> Result<Option<proxy::Built>> {
                if !forced && s.fingerprint()? == known {
                    return Ok(None);
                }
                Ok(Some(s.build()?))
            })
            .await?;
            match built.map(|b| b.map(|b| (server.reload(b.filter), b.fingerprint))) {
                Ok(Some((Ok(()), fp))) => {
                    *fingerprint = fp;
                    eprintln!("haven: web proxy reloaded the configuration and lists");
                }
                Ok(Some((Err(e), _))) => eprintln!("haven: proxy reload refused, still serving the previous configuration: {e}"),
                Ok(None) => {}
                Err(e) => eprintln!("haven: proxy reload refused, still serving the previous configuration: {e:#}"),
            }
        }
    }
    let mut said = Vec::new();
    if let Some((server, _, _)) = dns_server {
        let (written, dropped) = server.log_counts();
        server.shutdown();
        said.push(format!("{written} DNS queries logged{}", if dropped > 0 { format!(" ({dropped} dropped)") } else { String::new() }));
    }
    if let Some((server, _, _)) = proxy_server {
        let (written, dropped) = server.log_counts();
        server.shutdown();
        said.push(format!("{written} web requests logged{}", if dropped > 0 { format!(" ({dropped} dropped)") } else { String::new() }));
    }
    if let Some(p) = &pid_file {
        let _ = std::fs::remove_file(p);
    }
    eprintln!("haven: stopped; {}", said.join(", "));
    Ok(())
}
