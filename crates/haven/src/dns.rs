//! `haven dns` and the DNS part of `haven serve`: the command line, and the
//! policy of `--blocklist` mode (plain block lists, no config).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use haven_lists::{Format, NoProgress, SourceSpec};
use haven_policy::model::Verdict;
use haven_policy::safesearch::SafeSearch;
use haven_policy::{Category, CategorySet, PolicySet};

use crate::config_file;
use crate::snapshot::{DnsWants, Recipe};

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

impl DnsArgs {
    /// `haven dns`: a snapshot with the DNS filter's part only.
    pub(crate) fn recipe(self) -> Recipe {
        Recipe { config: self.config, blocklist: self.blocklist, dns: Some(DnsWants { listen: self.listen, upstream: self.upstream }), ..Recipe::default() }
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
