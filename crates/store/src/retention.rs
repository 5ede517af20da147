//! Retention: what the daily job deletes or anonymises, and legal hold.
//!
//! The decisions are pure functions of a record's facts, the periods and
//! `now` ([`alert_fate`], [`incident_fate`], [`evidence_fate`],
//! [`report_fate`], [`log_day_fate`], [`expired`]); [`Store::apply_retention`]
//! reads the facts of the records old enough to be in question, asks them,
//! and applies the answers, one transaction per record, and keeps what it
//! did in `retention_runs` with an audit row: counts per class, never
//! content. Files (the access logs, evidence files no record refers to any
//! more) are the caller's, told back with [`Store::finish_retention_run`].
//!
//! An incident under legal hold ([`Store::set_legal_hold`]) keeps itself,
//! its alerts, its evidence, and the audit rows about them.
//!
//! The periods come from the config's `[retention]` (`haven_config::retention`,
//! where each default and its reason are written); this crate takes them as
//! plain data.

use std::collections::HashSet;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::people::Account;
use crate::{Role, Store, StoreError, ms, ts};

const DAY_MS: i64 = 86_400_000;

/// The retention period of each class, in days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Periods {
    /// DNS and web access log files.
    pub logs: u32,
    /// Operational records (repeat keys, the outbox, sessions, notices, feed runs).
    pub events: u32,
    /// Closed alerts not part of a safeguarding record; reports with no alert.
    pub alerts: u32,
    /// Incidents, and alerts judged a real concern.
    pub incidents: u32,
    /// Evidence on closed incidents.
    pub evidence: u32,
    /// The audit log.
    pub audit: u32,
}

/// What becomes of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Kept as it is.
    Keep,
    /// Who and what cleared; the numbers kept.
    Anonymise,
    /// Deleted.
    Delete,
}

/// Whether something dated `at` has been kept longer than `days` at `now`
/// (exactly `days` old is still kept).
pub fn expired(days: u32, at: Timestamp, now: Timestamp) -> bool {
    now.as_millisecond() - at.as_millisecond() > i64::from(days) * DAY_MS
}

/// What the retention job knows about an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertFacts {
    /// When it was closed (`None`: still open).
    pub closed_at: Option<Timestamp>,
    /// Closed with the verdict "real concern".
    pub real_concern: bool,
    /// On an incident (it goes with the incident).
    pub on_incident: bool,
    /// Already anonymised.
    pub anonymised: bool,
}

/// An open alert, or one on an incident, is kept; one judged a real concern
/// is part of the child's safeguarding record and deleted after the
/// incidents period; any other closed alert is anonymised after the alerts
/// period.
pub fn alert_fate(p: &Periods, f: &AlertFacts, now: Timestamp) -> Fate {
    let Some(closed) = f.closed_at else { return Fate::Keep };
    if f.on_incident {
        return Fate::Keep;
    }
    if f.real_concern {
        return if expired(p.incidents, closed, now) { Fate::Delete } else { Fate::Keep };
    }
    if !f.anonymised && expired(p.alerts, closed, now) { Fate::Anonymise } else { Fate::Keep }
}

/// What the retention job knows about an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IncidentFacts {
    /// When it was closed (`None`: still open).
    pub closed_at: Option<Timestamp>,
    /// Under legal hold.
    pub held: bool,
}

/// An incident is deleted (with its alerts, actions, links and evidence)
/// once closed for longer than the incidents period, unless held.
pub fn incident_fate(p: &Periods, f: &IncidentFacts, now: Timestamp) -> Fate {
    match f.closed_at {
        Some(closed) if !f.held && expired(p.incidents, closed, now) => Fate::Delete,
        _ => Fate::Keep,
    }
}

/// Evidence on an incident closed for longer than the evidence period is
/// deleted, unless the incident is held. `incident` is its incident's facts.
pub fn evidence_fate(p: &Periods, incident: &IncidentFacts, now: Timestamp) -> Fate {
    match incident.closed_at {
        Some(closed) if !incident.held && expired(p.evidence, closed, now) => Fate::Delete,
        _ => Fate::Keep,
    }
}

/// A report with an alert goes with the alert; one without is anonymised
/// after the alerts period.
pub fn report_fate(p: &Periods, at: Timestamp, has_alert: bool, anonymised: bool, now: Timestamp) -> Fate {
    if has_alert || anonymised || !expired(p.alerts, at, now) { Fate::Keep } else { Fate::Anonymise }
}

/// A day's access log file (`dns-YYYY-MM-DD.jsonl`) is deleted once the
/// whole day, read generously (its last line may be up to a day later in
/// UTC than its name in local time), is older than the logs period.
pub fn log_day_fate(p: &Periods, day: jiff::civil::Date, now: Timestamp) -> Fate {
    let Ok(end) = day.to_zoned(jiff::tz::TimeZone::UTC).map(|z| z.timestamp()) else { return Fate::Keep };
    let end = Timestamp::from_millisecond(end.as_millisecond() + 2 * DAY_MS).unwrap_or(end);
    if expired(p.logs, end, now) { Fate::Delete } else { Fate::Keep }
}

/// How many records of each class a run deleted or anonymised.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Access log files deleted.
    pub log_files_deleted: u64,
    /// Operational rows deleted.
    pub events_deleted: u64,
    /// Alerts anonymised.
    pub alerts_anonymised: u64,
    /// Reports with no alert anonymised.
    pub reports_anonymised: u64,
    /// Alerts deleted (a real concern past its period, or on a deleted incident).
    pub alerts_deleted: u64,
    /// Incidents deleted.
    pub incidents_deleted: u64,
    /// Evidence rows deleted.
    pub evidence_deleted: u64,
    /// Evidence files deleted (no record refers to them).
    pub evidence_files_deleted: u64,
    /// Audit rows deleted.
    pub audit_deleted: u64,
    /// Incidents past their period kept because of a legal hold.
    pub held_kept: u64,
}

/// One run of the retention job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetentionRun {
    /// Row id.
    pub id: i64,
    /// When it ran.
    pub at: Timestamp,
    /// The periods it applied.
    pub periods: Periods,
    /// What it did.
    pub counts: Counts,
    /// When its file work was done too.
    pub finished_at: Option<Timestamp>,
}

/// An incident's legal hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hold {
    /// Whether it is held.
    pub held: bool,
    /// Why (set when it was held; kept when cleared, with the clearing reason after).
    pub reason: Option<String>,
    /// Who last set or cleared it.
    pub by: Option<String>,
    /// When.
    pub at: Option<Timestamp>,
}

/// How many records are read at once.
const BATCH: i64 = 500;

/// Who may set or clear a legal hold: the safeguarding leads (the chair of
/// governors on incidents about the headteacher), on incidents they see.
fn may_hold(who: &Account, school: &str, about_head: bool) -> bool {
    let here = who.role.trust_wide() || who.school.as_deref() == Some(school);
    here && match who.role {
        Role::Dsl | Role::DeputyDsl | Role::TrustSafeguardingLead => true,
        Role::ChairOfGovernors => about_head,
        _ => false,
    }
}

fn cutoff(days: u32, now: Timestamp) -> i64 {
    ms(now) - i64::from(days) * DAY_MS
}

impl Store {
    /// Sets (`hold`) or clears an incident's legal hold, with a reason; an
    /// action on the incident and an audit row (the reason stays out of the
    /// audit row). False when `who` may not, or there is no such incident.
    pub async fn set_legal_hold(&self, who: &Account, id: i64, hold: bool, reason: &str, now: Timestamp) -> Result<bool, StoreError> {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(StoreError::Invalid("a legal hold is set or cleared with a reason".into()));
        }
        let mut tx = self.begin().await?;
        let row = sqlx::query("SELECT school, about_head, legal_hold FROM incidents WHERE id = $1").bind(id).fetch_optional(tx.conn()).await?;
        let Some(row) = row else { return Ok(false) };
        let school: String = row.try_get("school")?;
        let about_head = row.try_get::<i64, _>("about_head")? != 0;
        let actor = format!("account:{}", who.id);
        if !may_hold(who, &school, about_head) {
            drop(tx);
            self.audit(now, &actor, "incident.hold.denied", &format!("incident:{id}"), "").await?;
            return Ok(false);
        }
        sqlx::query("UPDATE incidents SET legal_hold = $2, hold_reason = $3, hold_by = $4, hold_at = $5 WHERE id = $1")
            .bind(id)
            .bind(i64::from(hold))
            .bind(reason)
            .bind(&actor)
            .bind(ms(now))
            .execute(tx.conn())
            .await?;
        let note = if hold { format!("Legal hold set: {reason}") } else { format!("Legal hold cleared: {reason}") };
        sqlx::query("INSERT INTO incident_actions (incident, at, account, note) VALUES ($1, $2, $3, $4)")
            .bind(id)
            .bind(ms(now))
            .bind(who.id)
            .bind(&note)
            .execute(tx.conn())
            .await?;
        tx.audit(now, &actor, if hold { "incident.hold" } else { "incident.hold.cleared" }, &format!("incident:{id}"), "").await?;
        tx.commit().await?;
        Ok(true)
    }

    /// An incident's legal hold, if `who` may see the incident (audited).
    pub async fn legal_hold(&self, who: &Account, id: i64, now: Timestamp) -> Result<Option<(String, Hold)>, StoreError> {
        let row = sqlx::query("SELECT school, about_head, title, legal_hold, hold_reason, hold_by, hold_at FROM incidents WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        let Some(row) = row else { return Ok(None) };
        let school: String = row.try_get("school")?;
        let about_head = row.try_get::<i64, _>("about_head")? != 0;
        let actor = format!("account:{}", who.id);
        let sees = (who.role.trust_wide() || who.school.as_deref() == Some(&school))
            && match who.role {
                Role::Headteacher => !about_head,
                Role::ChairOfGovernors => about_head,
                r => r.sees_alerts(),
            };
        if !sees {
            self.audit(now, &actor, "incident.read.denied", &format!("incident:{id}"), "hold").await?;
            return Ok(None);
        }
        self.audit(now, &actor, "incident.hold.read", &format!("incident:{id}"), "").await?;
        let hold = Hold {
            held: row.try_get::<i64, _>("legal_hold")? != 0,
            reason: row.try_get("hold_reason")?,
            by: row.try_get("hold_by")?,
            at: row.try_get::<Option<i64>, _>("hold_at")?.map(ts),
        };
        Ok(Some((row.try_get("title")?, hold)))
    }

    /// Whether `who` may set or clear legal holds at all (for the page).
    pub fn may_set_holds(who: &Account) -> bool {
        matches!(who.role, Role::Dsl | Role::DeputyDsl | Role::TrustSafeguardingLead | Role::ChairOfGovernors)
    }

    /// Applies the periods at `now` to the record: incidents (and their
    /// alerts and evidence), alerts, reports, operational rows and the audit
    /// log; records the run and its audit row (counts only). Files are left
    /// to the caller, who reports them with [`finish_retention_run`](Self::finish_retention_run).
    pub async fn apply_retention(&self, p: &Periods, now: Timestamp) -> Result<RetentionRun, StoreError> {
        let mut c = Counts::default();
        self.retain_incidents(p, now, &mut c).await?;
        self.retain_alerts(p, now, &mut c).await?;
        self.retain_reports(p, now, &mut c).await?;
        self.retain_events(p, now, &mut c).await?;
        self.retain_audit(p, now, &mut c).await?;
        let mut tx = self.begin().await?;
        let periods = serde_json::to_string(p).unwrap_or_default();
        let counts = serde_json::to_string(&c).unwrap_or_default();
        let id: i64 = sqlx::query_scalar("INSERT INTO retention_runs (at, periods, counts) VALUES ($1, $2, $3) RETURNING id")
            .bind(ms(now))
            .bind(&periods)
            .bind(&counts)
            .fetch_one(tx.conn())
            .await?;
        tx.audit(now, "retention", "retention.run", &format!("retention:{id}"), &counts).await?;
        tx.commit().await?;
        tracing::info!(run = id, counts = %counts, "retention: applied");
        Ok(RetentionRun { id, at: now, periods: *p, counts: c, finished_at: None })
    }

    /// Adds what the caller did with files to run `id` (log files and
    /// evidence files deleted), with an audit row.
    pub async fn finish_retention_run(&self, id: i64, log_files: u64, evidence_files: u64, now: Timestamp) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let counts: Option<String> = sqlx::query_scalar("SELECT counts FROM retention_runs WHERE id = $1").bind(id).fetch_optional(tx.conn()).await?;
        let mut c: Counts = counts.and_then(|s| serde_json::from_str(&s).ok()).unwrap_or_default();
        c.log_files_deleted += log_files;
        c.evidence_files_deleted += evidence_files;
        let counts = serde_json::to_string(&c).unwrap_or_default();
        sqlx::query("UPDATE retention_runs SET counts = $2, finished_at = $3 WHERE id = $1").bind(id).bind(&counts).bind(ms(now)).execute(tx.conn()).await?;
        tx.audit(
            now,
            "retention",
            "retention.files",
            &format!("retention:{id}"),
            &format!("{{\"log_files_deleted\":{log_files},\"evidence_files_deleted\":{evidence_files}}}"),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The latest runs, newest first.
    pub async fn retention_runs(&self, limit: i64) -> Result<Vec<RetentionRun>, StoreError> {
        let rows = sqlx::query("SELECT id, at, periods, counts, finished_at FROM retention_runs ORDER BY at DESC, id DESC LIMIT $1")
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| {
                let periods: String = r.try_get("periods")?;
                let counts: String = r.try_get("counts")?;
                Ok(RetentionRun {
                    id: r.try_get("id")?,
                    at: ts(r.try_get("at")?),
                    periods: serde_json::from_str(&periods).map_err(|e| StoreError::Invalid(format!("retention run periods: {e}")))?,
                    counts: serde_json::from_str(&counts).unwrap_or_default(),
                    finished_at: r.try_get::<Option<i64>, _>("finished_at")?.map(ts),
                })
            })
            .collect()
    }

    /// Every evidence file (SHA-256) a record still refers to: incident
    /// evidence and screenshots on alerts and their occurrences.
    pub async fn evidence_in_use(&self) -> Result<HashSet<String>, StoreError> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT sha256 FROM evidence UNION SELECT screenshot FROM alerts WHERE screenshot IS NOT NULL \
             UNION SELECT screenshot FROM occurrences WHERE screenshot IS NOT NULL",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().collect())
    }

    async fn retain_incidents(&self, p: &Periods, now: Timestamp, c: &mut Counts) -> Result<(), StoreError> {
        // Only incidents closed before the earlier cut can be in question.
        let before = cutoff(p.incidents.min(p.evidence), now);
        let mut after = 0i64;
        loop {
            let rows = sqlx::query(
                "SELECT id, closed_at, legal_hold, (SELECT COUNT(*) FROM evidence e WHERE e.incident = incidents.id) AS files FROM incidents \
                 WHERE status = 'closed' AND closed_at IS NOT NULL AND closed_at < $1 AND id > $2 ORDER BY id LIMIT $3",
            )
            .bind(before)
            .bind(after)
            .bind(BATCH)
            .fetch_all(self.pool())
            .await?;
            let Some(last) = rows.last() else { return Ok(()) };
            after = last.try_get("id")?;
            for r in &rows {
                let id: i64 = r.try_get("id")?;
                let facts = IncidentFacts { closed_at: r.try_get::<Option<i64>, _>("closed_at")?.map(ts), held: r.try_get::<i64, _>("legal_hold")? != 0 };
                if facts.held && incident_fate(p, &IncidentFacts { held: false, ..facts }, now) == Fate::Delete {
                    c.held_kept += 1;
                }
                if incident_fate(p, &facts, now) == Fate::Delete {
                    self.delete_incident(id, c).await?;
                } else if evidence_fate(p, &facts, now) == Fate::Delete && r.try_get::<i64, _>("files")? > 0 {
                    let mut tx = self.begin().await?;
                    let n = sqlx::query("DELETE FROM evidence WHERE incident = $1").bind(id).execute(tx.conn()).await?.rows_affected();
                    tx.commit().await?;
                    c.evidence_deleted += n;
                }
            }
        }
    }

    /// Deletes an incident with its actions, links and evidence rows, and
    /// the alerts on it that no other incident still refers to.
    async fn delete_incident(&self, id: i64, c: &mut Counts) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let mut alerts: Vec<i64> = sqlx::query_scalar("SELECT alert FROM incidents WHERE id = $1 AND alert IS NOT NULL").bind(id).fetch_all(tx.conn()).await?;
        let linked: Vec<String> =
            sqlx::query_scalar("SELECT target FROM incident_links WHERE incident = $1 AND kind = 'alert'").bind(id).fetch_all(tx.conn()).await?;
        alerts.extend(linked.iter().filter_map(|t| t.parse::<i64>().ok()));
        alerts.sort_unstable();
        alerts.dedup();
        c.evidence_deleted += sqlx::query("DELETE FROM evidence WHERE incident = $1").bind(id).execute(tx.conn()).await?.rows_affected();
        sqlx::query("DELETE FROM incident_actions WHERE incident = $1").bind(id).execute(tx.conn()).await?;
        sqlx::query("DELETE FROM incident_links WHERE incident = $1 OR (kind = 'incident' AND target = $2)")
            .bind(id)
            .bind(id.to_string())
            .execute(tx.conn())
            .await?;
        sqlx::query("DELETE FROM incidents WHERE id = $1").bind(id).execute(tx.conn()).await?;
        c.incidents_deleted += 1;
        for alert in alerts {
            let still: i64 = sqlx::query_scalar(
                "SELECT (SELECT COUNT(*) FROM incidents WHERE alert = $1) + (SELECT COUNT(*) FROM incident_links WHERE kind = 'alert' AND target = $2)",
            )
            .bind(alert)
            .bind(alert.to_string())
            .fetch_one(tx.conn())
            .await?;
            let closed: Option<String> = sqlx::query_scalar("SELECT status FROM alerts WHERE id = $1").bind(alert).fetch_optional(tx.conn()).await?;
            if still == 0 && closed.as_deref() == Some("closed") {
                delete_alert(tx.conn(), alert).await?;
                c.alerts_deleted += 1;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn retain_alerts(&self, p: &Periods, now: Timestamp, c: &mut Counts) -> Result<(), StoreError> {
        // A closed alert was last seen before it was closed: only those
        // last seen before the later cut can be in question.
        let before = cutoff(p.alerts.min(p.incidents), now);
        let mut after = 0i64;
        loop {
            let rows = sqlx::query(
                "SELECT a.id, a.verdict, a.anonymised_at, a.last_seen, \
                 (SELECT MAX(x.at) FROM alert_actions x WHERE x.alert = a.id AND x.kind = 'closed') AS closed_at, \
                 (SELECT COUNT(*) FROM incidents i WHERE i.alert = a.id) + (SELECT COUNT(*) FROM incident_links l WHERE l.kind = 'alert' AND l.target = CAST(a.id AS TEXT)) AS on_incident \
                 FROM alerts a WHERE a.status = 'closed' AND a.last_seen < $1 AND a.id > $2 \
                 AND (a.anonymised_at IS NULL OR a.verdict = 'real-concern') ORDER BY a.id LIMIT $3",
            )
            .bind(before)
            .bind(after)
            .bind(BATCH)
            .fetch_all(self.pool())
            .await?;
            let Some(last) = rows.last() else { return Ok(()) };
            after = last.try_get("id")?;
            for r in &rows {
                let id: i64 = r.try_get("id")?;
                let closed = r.try_get::<Option<i64>, _>("closed_at")?.unwrap_or(r.try_get("last_seen")?);
                let facts = AlertFacts {
                    closed_at: Some(ts(closed)),
                    real_concern: r.try_get::<Option<String>, _>("verdict")?.as_deref() == Some("real-concern"),
                    on_incident: r.try_get::<i64, _>("on_incident")? > 0,
                    anonymised: r.try_get::<Option<i64>, _>("anonymised_at")?.is_some(),
                };
                match alert_fate(p, &facts, now) {
                    Fate::Keep => {}
                    Fate::Anonymise => {
                        let mut tx = self.begin().await?;
                        anonymise_alert(tx.conn(), id, now).await?;
                        tx.commit().await?;
                        c.alerts_anonymised += 1;
                    }
                    Fate::Delete => {
                        let mut tx = self.begin().await?;
                        delete_alert(tx.conn(), id).await?;
                        tx.commit().await?;
                        c.alerts_deleted += 1;
                    }
                }
            }
        }
    }

    async fn retain_reports(&self, p: &Periods, now: Timestamp, c: &mut Counts) -> Result<(), StoreError> {
        let rows = sqlx::query("SELECT id, at FROM reports WHERE alert IS NULL AND anonymised_at IS NULL AND at < $1")
            .bind(cutoff(p.alerts, now))
            .fetch_all(self.pool())
            .await?;
        for r in &rows {
            let id: i64 = r.try_get("id")?;
            if report_fate(p, ts(r.try_get("at")?), false, false, now) == Fate::Anonymise {
                c.reports_anonymised +=
                    sqlx::query("UPDATE reports SET person = NULL, words = '', contact = NULL, url = NULL, reference = NULL, anonymised_at = $2 WHERE id = $1")
                        .bind(id)
                        .bind(ms(now))
                        .execute(self.pool())
                        .await?
                        .rows_affected();
            }
        }
        Ok(())
    }

    async fn retain_events(&self, p: &Periods, now: Timestamp, c: &mut Counts) -> Result<(), StoreError> {
        let before = cutoff(p.events, now);
        for q in [
            "DELETE FROM ingest_keys WHERE at < $1",
            // Only for closed alerts: an open one's escalation reads its notices.
            "DELETE FROM notifications WHERE COALESCE(sent_at, gave_up_at, cancelled_at) < $1 AND alert IN (SELECT id FROM alerts WHERE status = 'closed')",
            "DELETE FROM sessions WHERE expires_at < $1",
            "DELETE FROM it_notices WHERE seen_at IS NOT NULL AND seen_at < $1",
            // The last run of each feed stays: when it is next due reads it.
            "DELETE FROM feed_runs WHERE at < $1 AND id NOT IN (SELECT MAX(id) FROM feed_runs GROUP BY source)",
        ] {
            let mut tx = self.begin().await?;
            c.events_deleted += sqlx::query(q).bind(before).execute(tx.conn()).await?.rows_affected();
            tx.commit().await?;
        }
        Ok(())
    }

    async fn retain_audit(&self, p: &Periods, now: Timestamp, c: &mut Counts) -> Result<(), StoreError> {
        // The rows about held incidents and their alerts stay.
        let held: Vec<i64> = sqlx::query_scalar("SELECT id FROM incidents WHERE legal_hold = 1").fetch_all(self.pool()).await?;
        let mut keep: Vec<String> = Vec::new();
        for id in held {
            keep.push(format!("incident:{id}"));
            let alert: Option<i64> = sqlx::query_scalar("SELECT alert FROM incidents WHERE id = $1").bind(id).fetch_one(self.pool()).await?;
            keep.extend(alert.map(|a| format!("alert:{a}")));
            let linked: Vec<String> =
                sqlx::query_scalar("SELECT target FROM incident_links WHERE incident = $1 AND kind = 'alert'").bind(id).fetch_all(self.pool()).await?;
            keep.extend(linked.into_iter().map(|a| format!("alert:{a}")));
        }
        let marks: Vec<String> = (0..keep.len()).map(|i| format!("${}", i + 2)).collect();
        let sql = if keep.is_empty() {
            "DELETE FROM audit WHERE at < $1".to_string()
        } else {
            format!("DELETE FROM audit WHERE at < $1 AND object NOT IN ({})", marks.join(", "))
        };
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(cutoff(p.audit, now));
        for k in &keep {
            q = q.bind(k);
        }
        let mut tx = self.begin().await?;
        c.audit_deleted += q.execute(tx.conn()).await?.rows_affected();
        tx.commit().await?;
        Ok(())
    }
}

/// Deletes an alert and everything hanging from it.
async fn delete_alert(conn: &mut sqlx::AnyConnection, id: i64) -> Result<(), StoreError> {
    for q in [
        "DELETE FROM notifications WHERE alert = $1",
        "DELETE FROM occurrences WHERE alert = $1",
        "DELETE FROM alert_actions WHERE alert = $1",
        "DELETE FROM reports WHERE alert = $1",
        "DELETE FROM alerts WHERE id = $1",
    ] {
        sqlx::query(q).bind(id).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Clears who and what from an alert, its occurrences, actions and reports;
/// the school, category, level, source and times stay for the numbers.
async fn anonymise_alert(conn: &mut sqlx::AnyConnection, id: i64, now: Timestamp) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE alerts SET person = '', excerpt = '', url = NULL, explanation = '', spans = '[]', screenshot = NULL, triage_note = NULL, \
         anonymised_at = $2 WHERE id = $1",
    )
    .bind(id)
    .bind(ms(now))
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE occurrences SET excerpt = '', url = NULL, spans = '[]', explanation = '', screenshot = NULL WHERE alert = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("UPDATE alert_actions SET note = '' WHERE alert = $1").bind(id).execute(&mut *conn).await?;
    sqlx::query("UPDATE reports SET person = NULL, words = '', contact = NULL, url = NULL, reference = NULL, anonymised_at = $2 WHERE alert = $1")
        .bind(id)
        .bind(ms(now))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

#[cfg(test)]
#[path = "retention_tests.rs"]
mod tests;
