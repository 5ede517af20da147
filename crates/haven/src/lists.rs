//! `haven lists`: import, update, stats, categories.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use haven_lists::{ImportReport, ListIndex, Progress, SourceReport};
use haven_policy::Category;
use indicatif::{ProgressBar, ProgressStyle};

use crate::config_file;

#[derive(clap::Subcommand)]
pub(crate) enum Command {
    /// Read every list source in the config and compile the index.
    Import {
        /// The config file (default: $HAVEN_CONFIG, ./haven.toml, else the embedded demo).
        #[arg(long, env = "HAVEN_CONFIG")]
        config: Option<PathBuf>,
        /// Write the index here instead of the config's data folder.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Download the sources that have a `url`, check them and swap them in.
    Update {
        /// The config file.
        #[arg(long, env = "HAVEN_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Show what the compiled index holds.
    Stats {
        /// The config file.
        #[arg(long, env = "HAVEN_CONFIG")]
        config: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List Haven's categories.
    Categories,
}

struct Bar(ProgressBar);

impl Bar {
    fn new() -> Self {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg:24} [{bar:30}] {bytes}/{total_bytes} ({eta})")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        Self(bar)
    }
}

impl Progress for Bar {
    fn set_total(&self, bytes: u64) {
        self.0.set_length(bytes);
    }
    fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
    }
    fn message(&self, msg: &str) {
        self.0.set_message(msg.to_string());
    }
}

pub(crate) fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::Import { config, out } => {
            let config = config_file::load(config.as_deref())?;
            let start = Instant::now();
            let bar = Bar::new();
            let (index, report) = haven_lists::compile(&config.lists, &config_file::now(), &bar)?;
            bar.0.finish_and_clear();
            let path = out.unwrap_or(config.index_path.clone());
            index.save(&path)?;
            print_report(&report);
            say!(
                "compiled {} domains, {} URLs, {} digests, {} expressions into {} ({:.1} MB) in {:.2} s",
                index.header().domain_keys,
                index.header().url_keys,
                index.header().sha256_count + index.header().md5_count,
                index.header().expressions.len(),
                path.display(),
                index.size() as f64 / 1e6,
                start.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Command::Update { config } => {
            let config = config_file::load(config.as_deref())?;
            let bar = Bar::new();
            // Member feeds download with their entry of the secrets file, as `haven serve` does.
            let mut fetch = haven_lists::update::Fetch::default();
            if let Some(path) = config.feeds.secrets.as_deref().filter(|_| config.feeds.sources.iter().any(|f| f.credentials.is_some())) {
                let secrets = haven_lists::feed::Secrets::load(path)?;
                for f in &config.feeds.sources {
                    if let Some(c) = f.credentials.as_deref().and_then(|name| secrets.get(name)) {
                        fetch.credentials.insert(f.source.clone(), c.clone());
                    }
                }
            }
            let (done, report) = haven_lists::update::update_with(&config.lists, &config.index_path, &config_file::now(), &bar, &fetch)?;
            bar.0.finish_and_clear();
            if done.is_empty() {
                say!("no list source has a `url`; nothing to download (the index was rebuilt from the files)");
            }
            for u in &done {
                say!("updated {} ({:.1} MB downloaded)", u.name, u.bytes as f64 / 1e6);
            }
            print_report(&report);
            Ok(())
        }
        Command::Stats { config, json } => {
            let config = config_file::load(config.as_deref())?;
            let index = config_file::index(&config, &Bar::new())?;
            stats(&index, json)
        }
        Command::Categories => {
            for c in Category::ALL {
                let flag = if c.is_illegal() { " (illegal: always blocked)" } else { "" };
                let uksic = c.uksic().map(|u| format!(" [UKSIC: {u}]")).unwrap_or_default();
                say!("{:<22} {}{uksic}{flag}", c.id(), c.title());
            }
            Ok(())
        }
    }
}

fn print_report(report: &ImportReport) {
    for s in &report.sources {
        print_source(s);
    }
}

fn print_source(s: &SourceReport) {
    say!("{:<22} {:>9} entries  {:>6} bad lines", s.name, s.entries, s.bad_lines);
    for b in s.bad_samples.iter().take(5) {
        say!("    {}:{}: {} ({:?})", b.file.display(), b.line, b.why, b.text);
    }
    if s.bad_lines as usize > s.bad_samples.len().min(5) {
        say!("    … {} bad lines in all (`haven lists stats --json` lists the first {})", s.bad_lines, s.bad_samples.len());
    }
    for (label, lines) in &s.unmapped_labels {
        say!("    UT1 label {label:?} has no Haven category: {lines} lines not imported (map it with `labels = {{ {label} = [\"...\"] }}`)");
    }
}

fn stats(index: &ListIndex, json: bool) -> Result<()> {
    let h = index.header();
    if json {
        say!("{}", serde_json::to_string_pretty(h).context("encoding stats")?);
        return Ok(());
    }
    say!("index built {}: {:.1} MB", h.built_at, index.size() as f64 / 1e6);
    say!(
        "  {} domains, {} URL prefixes, {} SHA-256 + {} MD5 digests, {} expressions",
        h.domain_keys,
        h.url_keys,
        h.sha256_count,
        h.md5_count,
        h.expressions.len()
    );
    let mut per_category: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    for s in &h.sources {
        for (c, n) in &s.report.categories {
            *per_category.entry(c.as_str()).or_default() += n;
        }
    }
    say!("entries per category (before de-duplication):");
    for (c, n) in per_category {
        say!("  {c:<22} {n:>9}");
    }
    say!("sources:");
    for s in &h.sources {
        print_source(&s.report);
    }
    Ok(())
}
