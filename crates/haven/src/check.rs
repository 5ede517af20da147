//! `haven check`: decisions for URLs, for a person, a group, or a file of URLs.

use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use haven_lists::NoProgress;
use haven_policy::{Action, PolicySet, Request, Subject, decide};
use jiff::Timestamp;
use serde::Serialize;

use crate::config_file;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// The config file (default: $HAVEN_CONFIG, ./haven.toml, else the embedded demo).
    #[arg(long, env = "HAVEN_CONFIG")]
    config: Option<PathBuf>,
    /// Decide as this user (their group and school come from the config).
    #[arg(long, conflicts_with = "group")]
    user: Option<String>,
    /// Decide as this group.
    #[arg(long)]
    group: Option<String>,
    /// The school (for per-school overrides and calendars).
    #[arg(long)]
    school: Option<String>,
    /// The moment to decide for: `2026-12-01T10:00:00Z`, or school time `2026-12-01T10:00`. Default: now.
    #[arg(long)]
    at: Option<String>,
    /// One JSON object per URL.
    #[arg(long)]
    json: bool,
    /// Read URLs from FILE (one per line; `-` for standard input) and print `url<TAB>action<TAB>categories`.
    #[arg(long, value_name = "FILE")]
    batch: Option<PathBuf>,
    /// URLs or hostnames to check.
    urls: Vec<String>,
}

#[derive(Serialize)]
struct JsonDecision<'a> {
    url: &'a str,
    action: Action,
    categories: Vec<&'static str>,
    rule: String,
    list: Option<&'a str>,
    entry: Option<&'a str>,
    reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    safe_search_host: Option<&'static str>,
}

pub(crate) fn run(args: Args) -> Result<()> {
    let config = config_file::load(args.config.as_deref())?;
    // Every approved change, lapsed ones too: `--at` may ask about the past.
    let with_changes = crate::changes::apply(&config.policy, &crate::changes::for_check(&config, Timestamp::UNIX_EPOCH)?);
    let set = &with_changes;
    let who = subject(set, &args)?;
    let when = match &args.at {
        Some(at) => parse_at(at, set, &who)?,
        None => Timestamp::now(),
    };
    let index = config_file::index(&config, &NoProgress)?;
    if let Some(path) = &args.batch {
        return batch(set, &index, &who, when, path);
    }
    if args.urls.is_empty() {
        bail!("give one or more URLs to check, or --batch FILE");
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for url in &args.urls {
        let request = Request::parse(url).with_context(|| format!("{url:?} is not a URL or hostname"))?;
        let mut d = decide(set, &index, &who, when, &request);
        d.explain_model(&index, &request);
        let reason = d.explain(set, &who, request.host());
        let rule = d.rule_id(set, &who);
        if args.json {
            let j = JsonDecision {
                url,
                action: d.action,
                categories: d.categories.iter().map(|c| c.id()).collect(),
                rule,
                list: d.list.as_deref(),
                entry: d.entry.as_deref(),
                reason,
                safe_search_host: d.safe_search_host,
            };
            writeln!(out, "{}", serde_json::to_string(&j)?)?;
        } else {
            let cats = if d.categories.is_empty() { "uncategorised".to_string() } else { d.categories.to_string() };
            writeln!(out, "{:<10} {url}  [{cats}]", d.action.as_str().to_uppercase())?;
            writeln!(out, "           rule: {rule}")?;
            writeln!(out, "           {reason}")?;
        }
    }
    Ok(())
}

fn subject(set: &PolicySet, args: &Args) -> Result<Subject> {
    let school =
        match &args.school {
            Some(s) => Some(set.school(s).with_context(|| {
                format!("unknown school {s:?}; the config has: {}", set.schools.iter().map(|s| s.id.as_str()).collect::<Vec<_>>().join(", "))
            })?),
            None => None,
        };
    if let Some(u) = &args.user {
        let idx = set.user(u).with_context(|| format!("unknown user {u:?}; add them to the config ([[user]] or a [[user_import]] CSV)"))?;
        let mut s = set.subject_for_user(idx);
        s.school = school.or(s.school);
        return Ok(s);
    }
    let groups = || set.groups.iter().map(|g| g.id.as_str()).collect::<Vec<_>>().join(", ");
    let Some(g) = &args.group else {
        bail!("say who to decide for: --user NAME or --group GROUP (groups: {})", groups());
    };
    let group = set.group(g).with_context(|| format!("unknown group {g:?}; the config has: {}", groups()))?;
    Ok(Subject { user: None, group, school })
}

fn parse_at(at: &str, set: &PolicySet, who: &Subject) -> Result<Timestamp> {
    let tz = set.calendar(who).map_or_else(haven_policy::schedule::london_tz, |c| c.tz.clone());
    haven_policy::schedule::parse_instant(at, &tz).with_context(|| format!("--at {at:?}: write 2026-12-01T10:00:00Z (UTC) or 2026-12-01T10:00 (school time)"))
}

fn batch(set: &PolicySet, index: &haven_lists::ListIndex, who: &Subject, when: Timestamp, path: &PathBuf) -> Result<()> {
    let input: Box<dyn BufRead> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?))
    };
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 20, stdout.lock());
    let mut bad = 0u64;
    let mut cats = String::new();
    for line in input.split(b'\n') {
        let line = line?;
        let line = line.strip_suffix(b"\r").unwrap_or(&line);
        let text = String::from_utf8_lossy(line);
        let text = text.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let request = match haven_url::CanonicalUrl::parse_bytes(text.as_bytes()) {
            Ok(u) => Request::Url(u),
            Err(_) => {
                bad += 1;
                writeln!(out, "{text}\terror\t")?;
                continue;
            }
        };
        let d = decide(set, index, who, when, &request);
        cats.clear();
        use std::fmt::Write as _;
        let _ = write!(cats, "{}", d.categories);
        writeln!(out, "{text}\t{}\t{cats}", d.action.as_str())?;
    }
    out.flush()?;
    if bad > 0 {
        eprintln!("haven: {bad} lines were not URLs (printed with action `error`)");
    }
    Ok(())
}
