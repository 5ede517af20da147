//! Filtering changes kept in the record, for the filters and for
//! `haven admin change`: the record's rows become `haven_policy` changes on
//! top of the config's base policy (`haven serve` looks for new ones every
//! two seconds; `haven check` reads them too, so it explains "allowed by
//! change 41").

use anyhow::{Context, Result, bail};
use haven_config::Config;
use haven_policy::Verdict;
use haven_policy::changes::{Aim, Change, Whom};
use haven_store::Store;
use haven_store::changes::{ChangeQuery, FilterChange, NewChange};
use jiff::Timestamp;

use crate::web;

/// A record row as the filters apply it, with who asked and who approved in
/// its reason (what `haven check` and staff read).
pub(crate) fn to_policy(c: &FilterChange) -> Result<Change, String> {
    let verdict = match c.verdict.as_deref() {
        Some("allow") => Verdict::Allow,
        Some("block") => Verdict::Block,
        other => return Err(format!("change {} says neither allow nor block ({other:?})", c.id)),
    };
    let who = match (&c.decided_by, c.kind.as_str()) {
        (Some(d), "change") if *d == c.requested_by => format!("made by {d}"),
        (Some(d), _) => format!("requested by {}, approved by {d}", c.requested_by),
        (None, _) => format!("made by {}", c.requested_by),
    };
    Ok(Change {
        id: c.id,
        school: c.school.clone(),
        whom: Whom::parse(&c.scope, c.scope_id.as_deref())?,
        verdict,
        aim: Aim::parse(c.site.as_deref(), c.category.as_deref())?,
        from: c.starts_at,
        until: c.until,
        reason: format!("{} ({who})", c.reason),
    })
}

/// The changes in force now or later, as the filters apply them; a row the
/// config no longer fits (a class gone from the MIS) is logged and left out.
pub(crate) async fn in_force(store: &Store, at: Timestamp) -> Result<Vec<Change>> {
    let rows = store.filter_changes_in_force(at).await?;
    Ok(rows
        .iter()
        .filter_map(|r| match to_policy(r) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(change = r.id, "filtering change {} is not applied: {e}", r.id);
                None
            }
        })
        .collect())
}

/// For `haven check`: the record's changes when there is a record (the
/// SQLite file in the data folder, or `[data] database`); none otherwise.
pub(crate) fn for_check(config: &Config, at: Timestamp) -> Result<Vec<Change>> {
    if config.database.is_none() && !config.data_dir.join("haven.db").exists() {
        return Ok(Vec::new());
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let store = web::open(config).await?;
        in_force(&store, at).await
    })
}

/// The base policy with `changes` on top; one that no longer fits is logged.
pub(crate) fn apply(base: &haven_policy::PolicySet, changes: &[Change]) -> haven_policy::PolicySet {
    let mut set = base.clone();
    for c in changes {
        if let Err(e) = set.add_change(c) {
            tracing::warn!(change = c.id, "filtering change {} is not applied: {e}", c.id);
        }
    }
    set
}

#[derive(clap::Subcommand)]
pub(crate) enum ChangeCommand {
    /// Allow or block a site or category for a group, class or person, in
    /// force at once (within seconds in a running `haven serve`); prints its id.
    #[command(group = clap::ArgGroup::new("whom").required(true).args(["group", "class", "user"]))]
    #[command(group = clap::ArgGroup::new("verdict").required(true).args(["allow", "block"]))]
    #[command(group = clap::ArgGroup::new("aim").required(true).args(["site", "category"]))]
    Add {
        /// The school.
        #[arg(long)]
        school: String,
        /// For this group (`secondary`).
        #[arg(long)]
        group: Option<String>,
        /// For this teaching group from the MIS (`10GH`).
        #[arg(long)]
        class: Option<String>,
        /// For this person (login).
        #[arg(long)]
        user: Option<String>,
        /// Allow it.
        #[arg(long)]
        allow: bool,
        /// Block it.
        #[arg(long)]
        block: bool,
        /// A site or URL prefix (`example.com`, `example.com/games`).
        site: Option<String>,
        /// A category instead of a site (`haven lists categories`).
        #[arg(long)]
        category: Option<String>,
        /// Why (kept in the decision register).
        #[arg(long)]
        reason: String,
        /// From when: `2026-12-01T10:00:00Z`, or school time `2026-12-01T10:00`. Default: now.
        #[arg(long)]
        from: Option<String>,
        /// Until when (same forms). Default: until withdrawn.
        #[arg(long)]
        until: Option<String>,
    },
    /// Every change and request, newest first: id, state, school, for whom, what, from, until, reason, who.
    List {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// Only this school.
        #[arg(long)]
        school: Option<String>,
    },
    /// End a change early, with the reason.
    Withdraw {
        /// The change's id.
        #[arg(long)]
        id: i64,
        /// Why.
        #[arg(long)]
        reason: String,
    },
}

/// `haven admin change …` on an open record.
pub(crate) async fn admin(store: &Store, config: &Config, command: ChangeCommand, now: Timestamp) -> Result<()> {
    match command {
        ChangeCommand::Add { school, group, class, user, allow, block: _, site, category, reason, from, until } => {
            let set = &config.policy;
            let Some(s) = set.school(&school) else {
                bail!(
                    "--school {school:?} is not in the config; its schools are: {}",
                    set.schools.iter().map(|s| s.id.as_str()).collect::<Vec<_>>().join(", ")
                );
            };
            let (scope, scope_id) = match (group, class, user) {
                (Some(g), _, _) => ("group", g),
                (_, Some(c), _) => ("class", c),
                (_, _, Some(u)) => ("user", u),
                _ => bail!("say who it is for: --group, --class or --user"),
            };
            let whom = Whom::parse(scope, Some(&scope_id)).map_err(anyhow::Error::msg)?;
            set.scope_of(&school, &whom).map_err(|e| anyhow::anyhow!("{e}"))?;
            let aim = Aim::parse(site.as_deref(), category.as_deref()).map_err(anyhow::Error::msg)?;
            if let (Aim::Category(c), true) = (&aim, allow)
                && c.is_illegal()
            {
                bail!("{} is illegal content (IWF, CTIRU): nobody can allow it", c.id());
            }
            let tz = &set.schools[s].calendar.tz;
            let at = |flag: &str, text: &str| {
                haven_policy::schedule::parse_instant(text, tz)
                    .with_context(|| format!("--{flag} {text:?}: write 2026-12-01T10:00:00Z (UTC) or 2026-12-01T10:00 (school time)"))
            };
            let starts_at = from.as_deref().map(|f| at("from", f)).transpose()?.unwrap_or(now);
            let until = until.as_deref().map(|u| at("until", u)).transpose()?;
            let (site, category) = match aim {
                Aim::Site(s) => (Some(s), None),
                Aim::Category(c) => (None, Some(c.id().to_string())),
            };
            let change = NewChange {
                school,
                kind: "change".into(),
                scope: scope.into(),
                scope_id: Some(scope_id),
                verdict: Some(if allow { "allow" } else { "block" }.into()),
                site,
                category,
                reason,
                starts_at,
                until,
            };
            let id = store.add_filter_change(&change, "in-force", "admin-cli", now).await?;
            say!("{id}");
        }
        ChangeCommand::List { json, school } => {
            let rows = store.filter_changes(&ChangeQuery { school, limit: 10_000, ..ChangeQuery::default() }).await?;
            store.audit(now, "admin-cli", "filter-change.list", "filter-changes", &format!("{} rows", rows.len())).await?;
            for c in rows {
                if json {
                    let mut v = serde_json::to_value(&c)?;
                    v["status"] = c.status(now).into();
                    say!("{v}");
                } else {
                    say!(
                        "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}{}",
                        c.id,
                        c.status(now),
                        c.school,
                        c.for_whom(),
                        c.what(),
                        c.starts_at,
                        c.until.map_or_else(|| "-".into(), |u| u.to_string()),
                        c.reason,
                        c.requested_by,
                        c.decided_by.as_deref().filter(|d| *d != c.requested_by).map(|d| format!(" / {d}")).unwrap_or_default()
                    );
                }
            }
        }
        ChangeCommand::Withdraw { id, reason } => {
            store.withdraw_filter_change(id, "admin-cli", &reason, now).await?;
            say!("change {id} withdrawn");
        }
    }
    Ok(())
}
