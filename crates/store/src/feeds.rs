//! Each list feed's refreshes (`feed_runs`): when `haven serve` downloaded a
//! source, whether it worked, how many entries it holds, and what went wrong.
//! The feed task reads the latest per source to know what is due; IT reads
//! them on the lists page.

use jiff::Timestamp;
use sqlx::Row;

use crate::{Store, StoreError, ms, ts};

/// One refresh of one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedRun {
    /// Id.
    pub id: i64,
    /// The `[[list]]`'s name.
    pub source: String,
    /// When it ran.
    pub at: Timestamp,
    /// Whether the new list is in force.
    pub ok: bool,
    /// Entries the source holds after it (none when it failed).
    pub entries: Option<i64>,
    /// What happened, in IT's words.
    pub message: String,
}

/// A source's latest refresh, with what led up to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedState {
    /// The latest run.
    pub last: FeedRun,
    /// When it last worked.
    pub last_ok: Option<Timestamp>,
    /// Failed runs in a row up to the latest (0 when the latest worked).
    pub failures: u32,
}

fn run(r: &sqlx::any::AnyRow) -> FeedRun {
    FeedRun {
        id: r.get("id"),
        source: r.get("source"),
        at: ts(r.get("at")),
        ok: r.get::<i64, _>("ok") != 0,
        entries: r.get("entries"),
        message: r.get("message"),
    }
}

impl Store {
    /// Records one refresh of `source`; returns its id.
    pub async fn record_feed_run(&self, source: &str, at: Timestamp, ok: bool, entries: Option<u64>, message: &str) -> Result<i64, StoreError> {
        let entries = entries.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
        let id: i64 = sqlx::query_scalar("INSERT INTO feed_runs (source, at, ok, entries, message) VALUES ($1, $2, $3, $4, $5) RETURNING id")
            .bind(source)
            .bind(ms(at))
            .bind(i64::from(ok))
            .bind(entries)
            .bind(message)
            .fetch_one(&self.pool)
            .await?;
        Ok(id)
    }

    /// Each source's latest refresh, by source name.
    pub async fn feed_states(&self) -> Result<Vec<FeedState>, StoreError> {
        let latest = sqlx::query(
            "SELECT id, source, at, ok, entries, message FROM feed_runs WHERE id IN (SELECT MAX(id) FROM feed_runs GROUP BY source) ORDER BY source",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(latest.len());
        for r in &latest {
            let last = run(r);
            // The last success, and the failures since (every run after it).
            let last_ok: Option<i64> =
                sqlx::query_scalar("SELECT MAX(id) FROM feed_runs WHERE source = $1 AND ok = 1").bind(&last.source).fetch_one(&self.pool).await?;
            let failures: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM feed_runs WHERE source = $1 AND id > $2")
                .bind(&last.source)
                .bind(last_ok.unwrap_or(0))
                .fetch_one(&self.pool)
                .await?;
            let last_ok_at: Option<i64> = match last_ok {
                Some(id) => sqlx::query_scalar("SELECT at FROM feed_runs WHERE id = $1").bind(id).fetch_optional(&self.pool).await?,
                None => None,
            };
            out.push(FeedState { last, last_ok: last_ok_at.map(ts), failures: u32::try_from(failures).unwrap_or(u32::MAX) });
        }
        Ok(out)
    }

    /// Refreshes, newest first: of one source, or of every source.
    pub async fn feed_runs(&self, source: Option<&str>, limit: i64) -> Result<Vec<FeedRun>, StoreError> {
        let rows = sqlx::query("SELECT id, source, at, ok, entries, message FROM feed_runs WHERE ($1 IS NULL OR source = $1) ORDER BY id DESC LIMIT $2")
            .bind(source)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(run).collect())
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::stores;

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn each_sources_latest_run_last_success_and_failures_in_a_row() {
        for (store, _dir) in stores().await {
            assert!(store.feed_states().await.unwrap().is_empty());
            store.record_feed_run("iwf", at("2026-07-10T05:00:00Z"), true, Some(1200), "1200 entries").await.unwrap();
            store.record_feed_run("ut1", at("2026-07-10T05:00:01Z"), false, None, "download failed: HTTP 500").await.unwrap();
            store.record_feed_run("iwf", at("2026-07-10T17:00:00Z"), false, None, "download failed: HTTP 503").await.unwrap();
            store.record_feed_run("iwf", at("2026-07-10T17:05:00Z"), false, None, "the feed refused the credentials (HTTP 401)").await.unwrap();
            let states = store.feed_states().await.unwrap();
            assert_eq!(states.iter().map(|s| s.last.source.as_str()).collect::<Vec<_>>(), ["iwf", "ut1"]);
            let iwf = &states[0];
            assert!(!iwf.last.ok && iwf.last.entries.is_none() && iwf.last.message.contains("401"));
            assert_eq!(iwf.last.at, at("2026-07-10T17:05:00Z"));
            assert_eq!(iwf.last_ok, Some(at("2026-07-10T05:00:00Z")));
            assert_eq!(iwf.failures, 2);
            assert_eq!((states[1].last_ok, states[1].failures), (None, 1), "never worked");
            // A success ends the run of failures.
            store.record_feed_run("iwf", at("2026-07-10T17:10:00Z"), true, Some(1210), "1210 entries").await.unwrap();
            let iwf = store.feed_states().await.unwrap().remove(0);
            assert!(iwf.last.ok && iwf.failures == 0 && iwf.last.entries == Some(1210));
            let history = store.feed_runs(Some("iwf"), 10).await.unwrap();
            assert_eq!(history.len(), 4);
            assert_eq!(history[0].message, "1210 entries", "newest first");
            assert_eq!(store.feed_runs(None, 2).await.unwrap().len(), 2);
        }
    }
}
