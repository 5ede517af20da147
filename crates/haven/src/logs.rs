//! `haven logs`: one person's (or device's, or address's) history: DNS
//! questions and web requests through the proxy, interleaved by time.

use std::path::PathBuf;

use anyhow::{Context, Result};
use jiff::Timestamp;

use crate::config_file;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// The config file (its data folder holds the logs).
    #[arg(long, env = "HAVEN_CONFIG")]
    config: Option<PathBuf>,
    /// Only this user.
    #[arg(long)]
    user: Option<String>,
    /// Only this device.
    #[arg(long)]
    device: Option<String>,
    /// Only this client address.
    #[arg(long)]
    client: Option<String>,
    /// From (RFC 3339, or school time `2026-12-01T08:00`, or a date `2026-12-01`).
    #[arg(long)]
    since: String,
    /// Until (exclusive); default now.
    #[arg(long)]
    until: Option<String>,
    /// Only blocked queries.
    #[arg(long)]
    blocked: bool,
    /// JSON lines instead of a table.
    #[arg(long)]
    json: bool,
}

fn instant(text: &str) -> Result<Timestamp> {
    let tz = haven_policy::schedule::london_tz();
    if let Some(t) = haven_policy::schedule::parse_instant(text, &tz) {
        return Ok(t);
    }
    let d: jiff::civil::Date = text.parse().with_context(|| format!("{text:?}: write 2026-12-01, 2026-12-01T08:00 or 2026-12-01T08:00:00Z"))?;
    Ok(d.to_zoned(tz)?.timestamp())
}

pub(crate) fn run(args: Args) -> Result<()> {
    let config = config_file::load(args.config.as_deref())?;
    let since = instant(&args.since)?;
    let until = args.until.as_deref().map(instant).transpose()?;
    let dir = config.data_dir.join("logs");
    let entries = haven_dns::log::read(&dir, since, until, |e| {
        args.user.as_deref().is_none_or(|u| e.user.as_deref().is_some_and(|x| x.eq_ignore_ascii_case(u)))
            && args.device.as_deref().is_none_or(|d| e.device.as_deref() == Some(d))
            && args.client.as_deref().is_none_or(|c| e.client == c)
            && (!args.blocked || e.action == "block")
    })
    .with_context(|| format!("reading the query logs in {}", dir.display()))?;
    for e in &entries {
        if args.json {
            say!("{}", serde_json::to_string(e)?);
        } else {
            say!(
                "{}  {:<10} {:<5} {:<40} {:<15} {}",
                e.time.get(..19).unwrap_or(&e.time),
                e.action,
                e.qtype,
                e.url.as_deref().unwrap_or(&e.name),
                e.client,
                e.categories.join(",")
            );
            if let Some(terms) = &e.search {
                say!("      searched for {terms:?}{}", if e.concerns.is_empty() { String::new() } else { format!(": {}", e.concerns.join(", ")) });
            }
        }
    }
    if !args.json {
        eprintln!("{} entries", entries.len());
    }
    Ok(())
}
