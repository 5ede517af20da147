//! `haven dns` and the DNS part of `haven serve`: build the filter from a
//! config (or from plain block lists), run it, reload it on SIGHUP or when
//! lists change, and stop cleanly on SIGTERM / Ctrl-C.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use haven_config::DnsSettings;
use haven_dns::{DnsServer, Filter};
use haven_lists::{Format, NoProgress, SourceSpec};
use haven_policy::model::{Group, Network, Policy, School, Verdict};
use haven_policy::safesearch::SafeSearch;
use haven_policy::schedule::Calendar;
use haven_policy::{Category, CategorySet, PolicySet};

use crate::config_file;

#[derive(clap::Args, Clone)]
pub(crate) struct DnsArgs {
    /// The config file (default: $HAVEN_CONFIG, ./haven.toml, else the embedded demo). Ignored with --blocklist.
    #[arg(long, env = "HAVEN_CONFIG")]
    config: Option<PathBuf>,
    /// Listen here (UDP and TCP); repeatable. Overrides `[dns] listen`.
    #[arg(long)]
    listen: Vec<SocketAddr>,
    /// Forward allowed questions here; repeatable. Overrides `[dns] upstream`.
    #[arg(long)]
    upstream: Vec<String>,
    /// Run without a config: these files (plain domains or hosts format) are one
    /// category denied to everyone. Repeatable.
    #[arg(long)]
    blocklist: Vec<PathBuf>,
}

/// Where the filter comes from, so a reload builds it the same way.
#[derive(Clone)]
pub(crate) struct Source {
    args: DnsArgs,
}

impl Source {
    pub(crate) fn new(args: DnsArgs) -> Self {
        Self { args }
    }

    fn upstreams(&self) -> Result<Vec<SocketAddr>> {
        self.args
            .upstream
            .iter()
            .map(|u| {
                u.parse::<SocketAddr>()
                    .or_else(|_| u.parse::<std::net::IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                    .with_context(|| format!("--upstream {u:?}: write an address such as 192.0.2.53 or 192.0.2.53:53"))
            })
            .collect()
    }

    /// A cheap fingerprint of what the filter would be built from (config file
    /// time, list files' sizes and times), to notice changes without building.
    pub(crate) fn fingerprint(&self) -> Result<String> {
        if !self.args.blocklist.is_empty() {
            return Ok(haven_lists::fingerprint(&self.blocklist_specs()?));
        }
        let config = config_file::load(self.args.config.as_deref())?;
        Ok(haven_lists::fingerprint(&config.lists) + &config_stamp(&config.path))
    }

    fn blocklist_specs(&self) -> Result<Vec<SourceSpec>> {
        self.args
            .blocklist
            .iter()
            .enumerate()
            .map(|(i, p)| {
                Ok(SourceSpec {
                    name: format!("blocklist-{}", i + 1),
                    format: sniff(p)?,
                    path: p.clone(),
                    url: None,
                    category: Some(Category::Blocklist),
                    labels: BTreeMap::new(),
                    very_restrictive: false,
                })
            })
            .collect()
    }

    /// Builds the filter, the log folder, and a fingerprint of what it was built from.
    pub(crate) fn build(&self) -> Result<(Filter, Option<PathBuf>, String)> {
        if !self.args.blocklist.is_empty() {
            return self.from_blocklists();
        }
        let config = config_file::load(self.args.config.as_deref())?;
        let index = config_file::index(&config, &NoProgress)?;
        let mut settings = config.dns.clone();
        if !self.args.listen.is_empty() {
            settings.listen.clone_from(&self.args.listen);
        }
        let up = self.upstreams()?;
        if !up.is_empty() {
            settings.upstream = up;
        }
        let fingerprint = haven_lists::fingerprint(&config.lists) + &config_stamp(&config.path);
        let log_dir = config.data_dir.join("logs");
        Ok((Filter { policy: config.policy, lists: index, settings, doh_tokens: config.doh_tokens }, Some(log_dir), fingerprint))
    }

    /// `--blocklist` mode: one group, everyone on any address, one blocked category.
    fn from_blocklists(&self) -> Result<(Filter, Option<PathBuf>, String)> {
        let specs = self.blocklist_specs()?;
        let (lists, report) = haven_lists::compile(&specs, &config_file::now(), &NoProgress)?;
        if report.bad_lines() > 0 {
            eprintln!("haven: {} lines of the block lists could not be used, e.g.:", report.bad_lines());
            for b in report.sources.iter().flat_map(|s| s.bad_samples.iter()).take(5) {
                eprintln!("  {}:{}: {}", b.file.display(), b.line, b.why);
            }
        }
        let mut set = PolicySet::default();
        set.trust = "haven dns --blocklist".into();
        set.schools.push(School { id: "local".into(), name: "this network".into(), calendar: Calendar::london() });
        set.policies.push(Policy {
            id: "blocklist".into(),
            block: [Category::Blocklist].into_iter().chain(CategorySet::illegal().iter()).collect(),
            allow: CategorySet::EMPTY,
            entries: Default::default(),
            safe_search: SafeSearch { search: false, youtube: haven_policy::safesearch::YoutubeMode::Off },
            uncategorised: Verdict::Allow,
        });
        set.groups.push(Group { id: "everyone".into(), name: "Everyone".into(), policy: 0 });
        for net in ["0.0.0.0/0", "::/0"] {
            set.networks.push(Network { net: net.parse()?, school: 0, group: 0 });
        }
        set.index();
        let mut settings = DnsSettings { log: false, ..DnsSettings::default() };
        if !self.args.listen.is_empty() {
            settings.listen.clone_from(&self.args.listen);
        }
        settings.upstream = self.upstreams()?;
        if settings.upstream.is_empty() {
            bail!("--blocklist needs --upstream ADDR: the resolver allowed names are forwarded to");
        }
        let fingerprint = haven_lists::fingerprint(&specs);
        Ok((Filter { policy: set, lists, settings, doh_tokens: Default::default() }, None, fingerprint))
    }
}

fn config_stamp(path: &Path) -> String {
    std::fs::metadata(path).and_then(|m| m.modified()).map(|t| format!("{t:?}")).unwrap_or_default()
}

/// Hosts format if the first entry line starts with an address, else plain domains.
fn sniff(path: &Path) -> Result<Format> {
    use std::io::Read;
    let mut head = vec![0u8; 1 << 16];
    let n = std::fs::File::open(path).and_then(|mut f| f.read(&mut head)).with_context(|| format!("reading block list {}", path.display()))?;
    let text = String::from_utf8_lossy(&head[..n]);
    let first = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'));
    let mut fields = first.unwrap_or_default().split_whitespace();
    let is_hosts = fields.next().is_some_and(|a| a.parse::<std::net::IpAddr>().is_ok()) && fields.next().is_some();
    Ok(if is_hosts { Format::Hosts } else { Format::Domains })
}

/// Runs the DNS filter until SIGTERM or Ctrl-C. `watch` re-checks the config
/// and lists this often and reloads when they changed.
pub(crate) fn run(source: Source, watch: Option<Duration>, pid_file: Option<PathBuf>) -> Result<()> {
    // On one core (a small box, or pinned) a single-threaded runtime avoids
    // cross-thread wake-ups; otherwise one worker per core.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let runtime = if cores == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(cores).enable_all().build()?
    };
    runtime.block_on(async move {
        let started = std::time::Instant::now();
        let (filter, log_dir, mut fingerprint) = {
            let s = source.clone();
            tokio::task::spawn_blocking(move || s.build()).await??
        };
        if filter.settings.upstream.is_empty() {
            eprintln!("haven: warning: no upstream resolver ([dns] upstream or --upstream): allowed names will get SERVFAIL");
        }
        let pid_file = pid_file.or_else(|| log_dir.as_ref().and_then(|d| d.parent()).map(|d| d.join("haven.pid")));
        let server = DnsServer::start(filter, log_dir.as_deref()).await?;
        if let Some(p) = &pid_file {
            if let Some(dir) = p.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let _ = std::fs::write(p, std::process::id().to_string());
        }
        let addrs: Vec<String> = server.addrs.iter().map(ToString::to_string).collect();
        eprintln!(
            "haven: DNS filter ready in {:.2} s on {} (UDP and TCP){}",
            started.elapsed().as_secs_f64(),
            addrs.join(", "),
            server.doh_addr.map(|a| format!("; DoH at http://{a}/dns-query/<token>")).unwrap_or_default()
        );
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
            let s = source.clone();
            let known = fingerprint.clone();
            // A timer tick builds nothing unless the files changed.
            let built = tokio::task::spawn_blocking(move || -> Result<Option<(Filter, String)>> {
                if !forced && s.fingerprint()? == known {
                    return Ok(None);
                }
                let (filter, _, fp) = s.build()?;
                Ok(Some((filter, fp)))
            })
            .await?;
            match built {
                Ok(Some((filter, fp))) => {
                    fingerprint = fp;
                    server.reload(filter);
                    eprintln!("haven: reloaded the configuration and lists");
                }
                Ok(None) => {}
                Err(e) => eprintln!("haven: reload refused, still serving the previous configuration: {e:#}"),
            }
        }
        let (written, dropped) = server.log_counts();
        server.shutdown();
        if let Some(p) = &pid_file {
            let _ = std::fs::remove_file(p);
        }
        eprintln!("haven: stopped; {written} queries logged{}", if dropped > 0 { format!(", {dropped} dropped") } else { String::new() });
        Ok(())
    })
}
