//! `haven dns` and the DNS part of `haven serve`: build the filter from a
//! config (or from plain block lists), run it, reload it on SIGHUP or when
//! lists change, and stop cleanly on SIGTERM / Ctrl-C.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use haven_config::DnsSettings;
use haven_dns::Filter;
use haven_lists::{Format, NoProgress, SourceSpec};
use haven_policy::model::Verdict;
use haven_policy::safesearch::SafeSearch;
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

impl DnsArgs {
    /// The DNS part of `haven serve`.
    pub(crate) fn new(config: Option<PathBuf>, listen: Vec<SocketAddr>, upstream: Vec<String>) -> Self {
        Self { config, listen, upstream, blocklist: Vec::new() }
    }
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
        blocklist_specs(&self.args.blocklist)
    }

    /// Builds the filter, the log folder, and a fingerprint of what it was built from.
    pub(crate) fn build(&self) -> Result<(Filter, Option<PathBuf>, String)> {
        if !self.args.blocklist.is_empty() {
            return self.build_from_blocklists();
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
    fn build_from_blocklists(&self) -> Result<(Filter, Option<PathBuf>, String)> {
        let specs = self.blocklist_specs()?;
        let (set, lists) = blocklist_policy(&specs, "haven dns --blocklist")?;
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

/// The sources named by `--blocklist` (plain domains or hosts format).
pub(crate) fn blocklist_specs(files: &[PathBuf]) -> Result<Vec<SourceSpec>> {
    files
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

/// `--blocklist` mode's policy: one group, everyone on any address, the
/// listed names (and the illegal categories) denied to all.
pub(crate) fn blocklist_policy(specs: &[SourceSpec], trust: &str) -> Result<(PolicySet, haven_lists::ListIndex)> {
    let (lists, report) = haven_lists::compile(specs, &config_file::now(), &NoProgress)?;
    if report.bad_lines() > 0 {
        eprintln!("haven: {} lines of the block lists could not be used, e.g.:", report.bad_lines());
        for b in report.sources.iter().flat_map(|s| s.bad_samples.iter()).take(5) {
            eprintln!("  {}:{}: {}", b.file.display(), b.line, b.why);
        }
    }
    let block = [Category::Blocklist].into_iter().chain(CategorySet::illegal().iter()).collect();
    let no_safe_search = SafeSearch { search: false, youtube: haven_policy::safesearch::YoutubeMode::Off };
    let set = PolicySet::everyone(trust, "blocklist", block, no_safe_search, Verdict::Allow);
    Ok((set, lists))
}

pub(crate) fn config_stamp(path: &Path) -> String {
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
