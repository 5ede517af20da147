//! `haven serve`'s daily retention job: once a day (the first ten minutes
//! after start, then whenever the last run in the record is a day old) the
//! periods of the config's `[retention]` are applied to the record
//! (`Store::apply_retention`, the decisions pure in `haven_store::retention`),
//! then to the files: the access logs' days past their period, and evidence
//! files no record refers to any more. Each run is kept in the record
//! (`retention_runs`) with its counts and an audit row.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use arc_swap::ArcSwap;
use haven_config::retention::{Class, Retention};
use haven_store::Store;
use haven_store::retention::{Fate, Periods, RetentionRun, log_day_fate};
use jiff::Timestamp;
use tracing::{info, warn};

use crate::snapshot::Snapshot;

/// Nothing is deleted in the first minutes after a start.
const FIRST_LOOK: Duration = Duration::from_secs(600);
/// How often the task looks whether a run is due.
const LOOK_AGAIN: Duration = Duration::from_secs(3600);
/// A run is due when the last one is this old.
const EVERY: jiff::SignedDuration = jiff::SignedDuration::from_hours(23);
/// An evidence file no record refers to is kept this long after it was
/// written (an upload writes its file just before its row).
const UNREFERENCED_GRACE: Duration = Duration::from_secs(24 * 3600);

/// The config's periods as the store takes them.
pub(crate) fn periods(r: &Retention) -> Periods {
    Periods {
        logs: r.days(Class::Logs),
        events: r.days(Class::Events),
        alerts: r.days(Class::Alerts),
        incidents: r.days(Class::Incidents),
        evidence: r.days(Class::Evidence),
        audit: r.days(Class::Audit),
    }
}

/// Runs for as long as Haven does.
pub(crate) async fn run(current: Arc<ArcSwap<Snapshot>>, store: Store) {
    tokio::time::sleep(FIRST_LOOK).await;
    loop {
        let snapshot = current.load_full();
        if let Some(config) = snapshot.config.as_ref() {
            let now = Timestamp::now();
            match store.retention_runs(1).await {
                Ok(last) if last.first().is_none_or(|r| now.duration_since(r.at) >= EVERY) => {
                    match once(&store, &periods(&config.retention), &config.data_dir, now).await {
                        Ok(run) => info!(run = run.id, "haven: retention applied ({:?})", run.counts),
                        Err(e) => warn!("haven: the retention job failed ({e:#}); trying again in an hour"),
                    }
                }
                Ok(_) => {}
                Err(e) => warn!("haven: retention: could not read the last run ({e}); trying again in an hour"),
            }
        }
        tokio::time::sleep(LOOK_AGAIN).await;
    }
}

/// One run at `now`: the record, then the files in `data_dir`.
pub(crate) async fn once(store: &Store, p: &Periods, data_dir: &Path, now: Timestamp) -> Result<RetentionRun> {
    let run = store.apply_retention(p, now).await?;
    let used = store.evidence_in_use().await?;
    let (logs, evidence, periods) = (data_dir.join("logs"), data_dir.join("evidence"), *p);
    let (log_files, evidence_files) =
        tokio::task::spawn_blocking(move || (old_logs(&logs, &periods, now), unreferenced_evidence(&evidence, &used, std::time::SystemTime::now()))).await?;
    store.finish_retention_run(run.id, log_files, evidence_files, now).await?;
    Ok(store.retention_runs(1).await?.into_iter().next().unwrap_or(run))
}

/// Deletes the access logs' day files (`dns-YYYY-MM-DD.jsonl`,
/// `proxy-YYYY-MM-DD.jsonl`) past the logs period; how many.
fn old_logs(dir: &Path, p: &Periods, now: Timestamp) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut deleted = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let day = name.strip_prefix("dns-").or_else(|| name.strip_prefix("proxy-")).and_then(|n| n.strip_suffix(".jsonl"));
        let Some(Ok(day)) = day.map(str::parse::<jiff::civil::Date>) else { continue };
        if log_day_fate(p, day, now) == Fate::Delete {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => deleted += 1,
                Err(e) => warn!("haven: retention: could not delete the log file {name} ({e})"),
            }
        }
    }
    deleted
}

/// Deletes evidence files (named by SHA-256) that no record refers to,
/// once older than a day; how many.
fn unreferenced_evidence(dir: &Path, used: &HashSet<String>, now: std::time::SystemTime) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut deleted = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.len() != 64 || !name.bytes().all(|b| b.is_ascii_hexdigit()) || used.contains(&name) {
            continue;
        }
        let old = entry.metadata().and_then(|m| m.modified()).ok().and_then(|m| now.duration_since(m).ok()).is_some_and(|age| age >= UNREFERENCED_GRACE);
        if old {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => deleted += 1,
                Err(e) => warn!("haven: retention: could not delete an unreferenced evidence file ({e})"),
            }
        }
    }
    deleted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_log_days_and_unreferenced_evidence_go_the_rest_stays() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        for name in ["dns-2026-01-01.jsonl", "proxy-2026-01-01.jsonl", "dns-2026-06-01.jsonl", "notes.txt", "dns-garbage.jsonl"] {
            std::fs::write(logs.join(name), "x").unwrap();
        }
        let p = Periods { logs: 30, events: 1, alerts: 1, incidents: 1, evidence: 1, audit: 1 };
        let now: Timestamp = "2026-06-10T00:00:00Z".parse().unwrap();
        assert_eq!(old_logs(&logs, &p, now), 2);
        let mut left: Vec<String> = std::fs::read_dir(&logs).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        assert_eq!(left, ["dns-2026-06-01.jsonl", "dns-garbage.jsonl", "notes.txt"]);

        let ev = dir.path().join("evidence");
        std::fs::create_dir_all(&ev).unwrap();
        let (used, orphan) = ("a".repeat(64), "b".repeat(64));
        for name in [&used, &orphan, &"c".repeat(10)] {
            std::fs::write(ev.join(name), "sealed").unwrap();
        }
        let in_use: HashSet<String> = [used.clone()].into_iter().collect();
        assert_eq!(unreferenced_evidence(&ev, &in_use, std::time::SystemTime::now()), 0, "a fresh file waits a day");
        let later = std::time::SystemTime::now() + Duration::from_secs(2 * 24 * 3600);
        assert_eq!(unreferenced_evidence(&ev, &in_use, later), 1);
        assert!(ev.join(&used).exists() && !ev.join(&orphan).exists() && ev.join("c".repeat(10)).exists());
    }

    #[tokio::test]
    async fn a_run_applies_the_record_then_the_files_and_keeps_what_it_did() {
        for (store, _dir) in haven_store::testing::stores().await {
            let data = tempfile::tempdir().unwrap();
            let now: Timestamp = "2026-06-10T00:00:00Z".parse().unwrap();
            std::fs::create_dir_all(data.path().join("logs")).unwrap();
            std::fs::write(data.path().join("logs/proxy-2025-11-01.jsonl"), "x").unwrap();
            std::fs::write(data.path().join("logs/proxy-2026-06-09.jsonl"), "x").unwrap();
            std::fs::create_dir_all(data.path().join("evidence")).unwrap();
            let orphan = data.path().join("evidence").join("d".repeat(64));
            std::fs::write(&orphan, "sealed").unwrap();
            let two_days_ago = std::time::SystemTime::now() - Duration::from_secs(2 * 24 * 3600);
            std::fs::File::options().write(true).open(&orphan).unwrap().set_modified(two_days_ago).unwrap();
            let p = periods(&Retention::default());
            let run = once(&store, &p, data.path(), now).await.unwrap();
            assert_eq!((run.counts.log_files_deleted, run.counts.evidence_files_deleted), (1, 1));
            assert!(run.finished_at.is_some());
            assert!(!orphan.exists() && data.path().join("logs/proxy-2026-06-09.jsonl").exists());
            let audit = store.audit_search(Some(&format!("retention:{}", run.id)), None, 10).await.unwrap();
            assert_eq!(audit.len(), 2, "the run and its files");
            store.close().await;
        }
    }
}
