//! Suggestions for IT (`filter_suggestions`): hosts no list names, as the
//! filters counted them, with the hostname model's guess and a few
//! page-content verdicts. `haven serve` adds each minute's counts in one
//! transaction; IT confirms a suggestion, which makes a block in the change
//! register in the same transaction, or rejects it with a reason. A decided
//! host keeps counting and never reopens. Everything is kept; the queue shows
//! hosts with at least [`THRESHOLD`] visits.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};

use crate::changes::NewChange;
use crate::{Store, StoreError, audit, ms, ts};

/// Visits before a host is shown in the queue.
pub const THRESHOLD: i64 = 20;

/// Content verdicts kept per host.
pub const SAMPLES: usize = 5;

/// Where a suggestion is in its life.
pub const STATUSES: [&str; 3] = ["open", "confirmed", "rejected"];

/// One page-content verdict on a host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// The page.
    pub url: String,
    /// Category ids the content pointed to.
    pub categories: Vec<String>,
    /// How sure, 0 to 1.
    pub score: f32,
    /// When, unix milliseconds.
    pub at: i64,
}

/// The hostname model's guess, as kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Guess {
    /// Category id.
    pub category: String,
    /// 0 to 1.
    pub confidence: f32,
    /// The pieces of the name that weighed most.
    pub evidence: Vec<String>,
}

/// One host's counts from one collection window.
#[derive(Debug, Clone, PartialEq)]
pub struct Counted {
    /// School id; `None`: the trust's.
    pub school: Option<String>,
    /// Registered domain.
    pub domain: String,
    /// First visit in the window.
    pub first_seen: Timestamp,
    /// Last visit in the window.
    pub last_seen: Timestamp,
    /// Visits (0: only content verdicts, which never make a suggestion).
    pub hits: u64,
    /// Different people in the window.
    pub people: u32,
    /// The model's guess, when it was asked.
    pub guess: Option<Guess>,
    /// Content verdicts.
    pub samples: Vec<Sample>,
}

/// A suggestion as kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Suggestion {
    /// Id.
    pub id: i64,
    /// School id; `None`: the trust's.
    pub school: Option<String>,
    /// Registered domain.
    pub domain: String,
    /// First visit.
    pub first_seen: Timestamp,
    /// Latest visit.
    pub last_seen: Timestamp,
    /// Visits.
    pub hits: i64,
    /// At least this many different people (the busiest minute's).
    pub people: i64,
    /// The model's latest guess.
    pub guess: Option<Guess>,
    /// Content verdicts, oldest first.
    pub samples: Vec<Sample>,
    /// One of [`STATUSES`].
    pub status: String,
    /// Who decided.
    pub decided_by: Option<String>,
    /// When.
    pub decided_at: Option<Timestamp>,
    /// The reason given.
    pub decision: Option<String>,
    /// The category IT confirmed.
    pub category: Option<String>,
    /// The change register's row that blocks it.
    pub change_id: Option<i64>,
}

/// The collector's own counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Collector {
    /// Hosts not counted since the record began, for want of room.
    pub not_kept: i64,
    /// When that last happened.
    pub last_not_kept_at: Option<Timestamp>,
    /// When counts were last added.
    pub last_drain_at: Option<Timestamp>,
}

const COLUMNS: &str = "id, school, domain, first_seen, last_seen, hits, people, model_category, model_confidence, model_evidence, samples, status, \
                       decided_by, decided_at, decision, category, change_id";

fn row(r: &sqlx::any::AnyRow) -> Result<Suggestion, StoreError> {
    let category: Option<String> = r.try_get("model_category")?;
    let confidence: Option<i64> = r.try_get("model_confidence")?;
    let evidence: Vec<String> = serde_json::from_str(&r.try_get::<String, _>("model_evidence")?).unwrap_or_default();
    Ok(Suggestion {
        id: r.try_get("id")?,
        school: r.try_get("school")?,
        domain: r.try_get("domain")?,
        first_seen: ts(r.try_get("first_seen")?),
        last_seen: ts(r.try_get("last_seen")?),
        hits: r.try_get("hits")?,
        people: r.try_get("people")?,
        guess: category.map(|category| Guess { category, confidence: confidence.unwrap_or(0) as f32 / 1000.0, evidence }),
        samples: serde_json::from_str(&r.try_get::<String, _>("samples")?).unwrap_or_default(),
        status: r.try_get("status")?,
        decided_by: r.try_get("decided_by")?,
        decided_at: r.try_get::<Option<i64>, _>("decided_at")?.map(ts),
        decision: r.try_get("decision")?,
        category: r.try_get("category")?,
        change_id: r.try_get("change_id")?,
    })
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

/// Adds one host's window: visits added, the span widened, the guess
/// replaced by the newer one, samples appended up to [`SAMPLES`].
async fn add(c: &mut AnyConnection, h: &Counted) -> Result<bool, StoreError> {
    let scope = h.school.as_deref().unwrap_or("");
    let mut samples = None;
    if !h.samples.is_empty() {
        let kept: Option<String> = sqlx::query_scalar("SELECT samples FROM filter_suggestions WHERE scope = $1 AND domain = $2")
            .bind(scope)
            .bind(&h.domain)
            .fetch_optional(&mut *c)
            .await?;
        if kept.is_none() && h.hits == 0 {
            // A verdict on a host nobody has visited unlisted: a listed site.
            return Ok(false);
        }
        let mut all: Vec<Sample> = kept.and_then(|k| serde_json::from_str(&k).ok()).unwrap_or_default();
        all.extend(h.samples.iter().take(SAMPLES.saturating_sub(all.len())).cloned());
        samples = Some(json(&all));
    } else if h.hits == 0 {
        return Ok(false);
    }
    let (category, confidence, evidence) = match &h.guess {
        Some(g) => (Some(g.category.as_str()), Some((g.confidence.clamp(0.0, 1.0) * 1000.0).round() as i64), Some(json(&g.evidence))),
        None => (None, None, None),
    };
    sqlx::query(
        "INSERT INTO filter_suggestions (school, scope, domain, first_seen, last_seen, hits, people, model_category, model_confidence, model_evidence, samples) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, COALESCE($10, '[]'), COALESCE($11, '[]')) \
         ON CONFLICT (scope, domain) DO UPDATE SET \
           hits = filter_suggestions.hits + excluded.hits, \
           first_seen = CASE WHEN excluded.first_seen < filter_suggestions.first_seen THEN excluded.first_seen ELSE filter_suggestions.first_seen END, \
           last_seen = CASE WHEN excluded.last_seen > filter_suggestions.last_seen THEN excluded.last_seen ELSE filter_suggestions.last_seen END, \
           people = CASE WHEN excluded.people > filter_suggestions.people THEN excluded.people ELSE filter_suggestions.people END, \
           model_category = COALESCE($8, filter_suggestions.model_category), \
           model_confidence = CASE WHEN $8 IS NULL THEN filter_suggestions.model_confidence ELSE $9 END, \
           model_evidence = COALESCE($10, filter_suggestions.model_evidence), \
           samples = COALESCE($11, filter_suggestions.samples)",
    )
    .bind(h.school.as_deref())
    .bind(scope)
    .bind(&h.domain)
    .bind(ms(h.first_seen))
    .bind(ms(h.last_seen))
    .bind(i64::try_from(h.hits).unwrap_or(i64::MAX))
    .bind(i64::from(h.people))
    .bind(category)
    .bind(confidence)
    .bind(evidence)
    .bind(samples)
    .execute(&mut *c)
    .await?;
    Ok(true)
}

impl Store {
    /// Adds one collection window in one transaction; `not_kept`: hosts
    /// the collector had no room for. Returns the hosts written.
    pub async fn add_unlisted(&self, hosts: &[Counted], not_kept: u64, at: Timestamp) -> Result<usize, StoreError> {
        let mut tx = self.begin().await?;
        let mut written = 0;
        for h in hosts {
            if add(tx.conn(), h).await? {
                written += 1;
            }
        }
        let not_kept = i64::try_from(not_kept).unwrap_or(i64::MAX);
        sqlx::query(
            "INSERT INTO filter_suggestion_collector (name, not_kept, last_not_kept_at, last_drain_at) VALUES ('collector', $1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET not_kept = filter_suggestion_collector.not_kept + $1, \
             last_not_kept_at = COALESCE($2, filter_suggestion_collector.last_not_kept_at), last_drain_at = $3",
        )
        .bind(not_kept)
        .bind((not_kept > 0).then_some(ms(at)))
        .bind(ms(at))
        .execute(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(written)
    }

    /// The collector's counts.
    pub async fn suggestion_collector(&self) -> Result<Collector, StoreError> {
        let r = sqlx::query("SELECT not_kept, last_not_kept_at, last_drain_at FROM filter_suggestion_collector WHERE name = 'collector'")
            .fetch_optional(self.pool())
            .await?;
        Ok(match r {
            Some(r) => Collector {
                not_kept: r.try_get("not_kept")?,
                last_not_kept_at: r.try_get::<Option<i64>, _>("last_not_kept_at")?.map(ts),
                last_drain_at: r.try_get::<Option<i64>, _>("last_drain_at")?.map(ts),
            },
            None => Collector::default(),
        })
    }

    /// Suggestions in `status` with at least `min_hits` visits, most visited
    /// first: of one school and the trust's (`school`), or of every school.
    pub async fn suggestions(&self, school: Option<&str>, status: &str, min_hits: i64, limit: i64) -> Result<Vec<Suggestion>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM filter_suggestions WHERE status = $1 AND hits >= $2 AND ($3 IS NULL OR school = $3) \
             ORDER BY hits DESC, id LIMIT $4"
        )))
        .bind(status)
        .bind(min_hits)
        .bind(school)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(row).collect()
    }

    /// One suggestion.
    pub async fn suggestion(&self, id: i64) -> Result<Suggestion, StoreError> {
        let r =
            sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM filter_suggestions WHERE id = $1"))).bind(id).fetch_optional(self.pool()).await?;
        r.as_ref().map(row).transpose()?.ok_or(StoreError::NotFound { what: "suggestion", name: id.to_string(), hint: "" })
    }

    /// Confirms an open suggestion as `category`: `changes` (blocks in the
    /// change register, in force at once) are made, and the suggestion
    /// marked, in one transaction. Returns the changes' ids.
    pub async fn confirm_suggestion(&self, id: i64, category: &str, changes: &[NewChange], by: &str, at: Timestamp) -> Result<Vec<i64>, StoreError> {
        if changes.is_empty() {
            return Err(StoreError::Invalid("a confirmation needs the change that blocks the site".into()));
        }
        let mut tx = self.begin().await?;
        open(tx.conn(), id).await?;
        let mut ids = Vec::with_capacity(changes.len());
        for c in changes {
            ids.push(tx.add_filter_change(c, "in-force", by, at).await?);
        }
        let reason = &changes[0].reason;
        decided(tx.conn(), id, "confirmed", by, at, reason, Some(category), ids.first().copied()).await?;
        let detail = format!("{category}; change {}", ids.iter().map(i64::to_string).collect::<Vec<_>>().join(", "));
        audit::append(tx.conn(), at, by, "suggestion.confirm", &format!("suggestion:{id}"), &detail).await?;
        tx.commit().await?;
        Ok(ids)
    }

    /// Rejects an open suggestion with a reason.
    pub async fn reject_suggestion(&self, id: i64, reason: &str, by: &str, at: Timestamp) -> Result<(), StoreError> {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(StoreError::Invalid("say why it is rejected: the next person to look will read it".into()));
        }
        let mut tx = self.begin().await?;
        open(tx.conn(), id).await?;
        decided(tx.conn(), id, "rejected", by, at, reason, None, None).await?;
        audit::append(tx.conn(), at, by, "suggestion.reject", &format!("suggestion:{id}"), reason).await?;
        tx.commit().await
    }
}

async fn open(c: &mut AnyConnection, id: i64) -> Result<(), StoreError> {
    let status: Option<String> = sqlx::query_scalar("SELECT status FROM filter_suggestions WHERE id = $1").bind(id).fetch_optional(&mut *c).await?;
    match status.as_deref() {
        None => Err(StoreError::NotFound { what: "suggestion", name: id.to_string(), hint: "" }),
        Some("open") => Ok(()),
        Some(s) => Err(StoreError::Invalid(format!("suggestion {id} is already {s}"))),
    }
}

#[allow(clippy::too_many_arguments)]
async fn decided(
    c: &mut AnyConnection,
    id: i64,
    status: &str,
    by: &str,
    at: Timestamp,
    reason: &str,
    category: Option<&str>,
    change: Option<i64>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE filter_suggestions SET status = $1, decided_by = $2, decided_at = $3, decision = $4, category = $5, change_id = $6 WHERE id = $7")
        .bind(status)
        .bind(by)
        .bind(ms(at))
        .bind(reason)
        .bind(category)
        .bind(change)
        .bind(id)
        .execute(&mut *c)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use jiff::SignedDuration;

    use super::*;
    use crate::testing::stores;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn counted(school: Option<&str>, domain: &str, hits: u64, t: Timestamp) -> Counted {
        Counted { school: school.map(Into::into), domain: domain.into(), first_seen: t, last_seen: t, hits, people: 1, guess: None, samples: Vec::new() }
    }

    fn sample(i: i64) -> Sample {
        Sample { url: format!("https://bigcasino.example/{i}"), categories: vec!["gambling".into()], score: 0.75, at: i }
    }

    fn block(school: &str, site: &str, t: Timestamp) -> NewChange {
        NewChange {
            school: school.into(),
            kind: "change".into(),
            scope: "school".into(),
            scope_id: None,
            verdict: Some("block".into()),
            site: Some(site.into()),
            category: None,
            reason: "Confirmed from the suggestions queue as Gambling: 25 visits, model gambling 0.91".into(),
            starts_at: t,
            until: None,
        }
    }

    #[tokio::test]
    async fn windows_accumulate_and_samples_are_bounded() {
        for (store, _dir) in stores().await {
            let t = at("2026-12-01T10:00:00Z");
            let mut first = counted(Some("oak"), "bigcasino.example", 12, t);
            first.people = 3;
            first.guess = Some(Guess { category: "gambling".into(), confidence: 0.812, evidence: vec!["casino".into()] });
            first.samples = (0..3).map(sample).collect();
            let other = counted(None, "bigcasino.example", 2, t);
            let only_verdict = Counted { samples: vec![sample(9)], ..counted(Some("oak"), "listed.example", 0, t) };
            assert_eq!(store.add_unlisted(&[first, other, only_verdict], 0, t).await.unwrap(), 2, "a verdict alone makes no suggestion");

            let later = t + SignedDuration::from_mins(1);
            let mut second = counted(Some("oak"), "bigcasino.example", 10, later);
            second.first_seen = t - SignedDuration::from_mins(5);
            second.people = 2;
            second.samples = (3..8).map(sample).collect();
            store.add_unlisted(&[second], 4, later).await.unwrap();

            let open = store.suggestions(Some("oak"), "open", THRESHOLD, 50).await.unwrap();
            assert_eq!(open.len(), 1, "the trust's row is apart, and below the threshold anyway");
            let s = &open[0];
            assert_eq!((s.school.as_deref(), s.domain.as_str(), s.hits, s.people), (Some("oak"), "bigcasino.example", 22, 3));
            assert_eq!((s.first_seen, s.last_seen), (t - SignedDuration::from_mins(5), later));
            let g = s.guess.as_ref().expect("the guess kept when the next window had none");
            assert_eq!((g.category.as_str(), (g.confidence * 1000.0).round() as i64, g.evidence.clone()), ("gambling", 812, vec!["casino".to_string()]));
            assert_eq!(s.samples.iter().map(|x| x.at).collect::<Vec<_>>(), [0, 1, 2, 3, 4], "at most five, the first kept");
            assert!(store.suggestions(None, "open", 1, 50).await.unwrap().len() == 2, "every school and the trust's");
            assert!(store.suggestions(None, "open", 100, 50).await.unwrap().is_empty());
            // A newer guess replaces the old.
            let mut third = counted(Some("oak"), "bigcasino.example", 1, later);
            third.guess = Some(Guess { category: "games".into(), confidence: 0.4, evidence: vec!["play".into()] });
            store.add_unlisted(&[third], 0, later).await.unwrap();
            let s = store.suggestion(s.id).await.unwrap();
            assert_eq!(s.guess.map(|g| g.category), Some("games".into()));
            let c = store.suggestion_collector().await.unwrap();
            assert_eq!((c.not_kept, c.last_not_kept_at, c.last_drain_at), (4, Some(later), Some(later)));
        }
    }

    #[tokio::test]
    async fn confirm_makes_a_block_and_decided_rows_never_reopen() {
        for (store, _dir) in stores().await {
            store.upsert_school("oak", "Oak Academy", false).await.unwrap();
            let t = at("2026-12-01T10:00:00Z");
            store.add_unlisted(&[counted(Some("oak"), "bigcasino.example", 25, t), counted(Some("oak"), "homework.example", 30, t)], 0, t).await.unwrap();
            let open = store.suggestions(Some("oak"), "open", THRESHOLD, 50).await.unwrap();
            assert_eq!(open.iter().map(|s| s.domain.as_str()).collect::<Vec<_>>(), ["homework.example", "bigcasino.example"], "most visited first");
            let (homework, casino) = (open[0].id, open[1].id);

            assert!(store.reject_suggestion(homework, "  ", "it@oak", t).await.is_err(), "a reason is needed");
            store.reject_suggestion(homework, "Homework help the school uses", "it@oak", t).await.unwrap();
            let ids = store.confirm_suggestion(casino, "gambling", &[block("oak", "bigcasino.example", t)], "it@oak", t).await.unwrap();
            assert_eq!(ids.len(), 1);
            let change = store.filter_change(ids[0]).await.unwrap();
            assert_eq!((change.state.as_str(), change.verdict.as_deref(), change.site.as_deref()), ("in-force", Some("block"), Some("bigcasino.example")));
            assert!(store.filter_changes_in_force(t).await.unwrap().iter().any(|c| c.id == ids[0]));

            let s = store.suggestion(casino).await.unwrap();
            assert_eq!(
                (s.status.as_str(), s.category.as_deref(), s.change_id, s.decided_by.as_deref()),
                ("confirmed", Some("gambling"), Some(ids[0]), Some("it@oak"))
            );
            let r = store.suggestion(homework).await.unwrap();
            assert_eq!((r.status.as_str(), r.decision.as_deref()), ("rejected", Some("Homework help the school uses")));
            assert!(store.confirm_suggestion(homework, "games", &[block("oak", "homework.example", t)], "it@oak", t).await.is_err(), "decided once");
            assert!(store.reject_suggestion(casino, "changed my mind", "it@oak", t).await.is_err());
            assert_eq!(store.filter_changes_in_force(t).await.unwrap().len(), 1, "the refused confirmation made no change");

            // Still counted, never reopened.
            store.add_unlisted(&[counted(Some("oak"), "bigcasino.example", 5, t)], 0, t).await.unwrap();
            let s = store.suggestion(casino).await.unwrap();
            assert_eq!((s.hits, s.status.as_str()), (30, "confirmed"));
            assert!(store.suggestions(Some("oak"), "open", 1, 50).await.unwrap().is_empty());
            let audit = store.audit_search(Some(&format!("suggestion:{casino}")), None, 10).await.unwrap();
            assert!(audit.iter().any(|a| a.action == "suggestion.confirm"), "{audit:?}");
            assert!(store.suggestion(9999).await.is_err());
        }
    }
}
