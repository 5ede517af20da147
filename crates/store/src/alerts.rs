//! Alerts and the notification outbox.

use jiff::Timestamp;
use serde::Serialize;
use sqlx::Row;

use crate::people::Account;
use crate::{Store, StoreError, ms, ts};

/// A new alert: who, what, how urgent, and the finding that raised it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAlert {
    /// School id.
    pub school: String,
    /// Who it concerns.
    pub person: String,
    /// Category of concern (BRIEF.md's name).
    pub category: String,
    /// Level 1–5 (the first finding's own level).
    pub level: u8,
    /// When it must be actioned.
    pub due_at: Option<Timestamp>,
    /// The finding that raised it: its time is the alert's arrival, its
    /// evidence the alert's summary.
    pub first: NewOccurrence,
}

/// One finding added to an alert: its own evidence, kept for ever.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOccurrence {
    /// When it was seen.
    pub at: Timestamp,
    /// Its own level.
    pub level: u8,
    /// Where it came from.
    pub source: String,
    /// Its text (cut to a few hundred characters).
    pub excerpt: String,
    /// The URL, if any.
    pub url: Option<String>,
    /// Matched spans, JSON.
    pub spans: String,
    /// The classifier's explanation.
    pub explanation: String,
    /// SHA-256 of its screenshot, if kept.
    pub screenshot: Option<String>,
    /// A screenshot was sent but not kept.
    pub screenshot_withheld: bool,
    /// How many identical findings this one stands for; at least 1.
    pub repeats: u32,
}

/// One occurrence as the alert page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Occurrence {
    /// RFC 3339.
    pub at: String,
    /// Its own level.
    pub level: u8,
    /// Where it came from.
    pub source: String,
    /// Its text.
    pub excerpt: String,
    /// Matched spans in it, as byte ranges.
    pub spans: Vec<[usize; 2]>,
    /// The URL, if any.
    pub url: Option<String>,
    /// The classifier's explanation.
    pub explanation: String,
    /// SHA-256 of its screenshot.
    pub screenshot: Option<String>,
    /// A screenshot was sent but withheld.
    pub screenshot_withheld: bool,
    /// How many identical findings it stands for.
    pub repeats: i64,
}

/// An alert as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alert {
    /// Id.
    pub id: i64,
    /// School id.
    pub school: String,
    /// Who it concerns.
    pub person: String,
    /// Category of concern.
    pub category: String,
    /// Level 1–5.
    pub level: u8,
    /// `open`, `acknowledged`, `closed`.
    pub status: String,
    /// RFC 3339.
    pub received_at: String,
    /// RFC 3339, or none (level 1).
    pub due_at: Option<String>,
    /// How many findings it groups.
    pub occurrences: i64,
    /// Where it came from.
    pub source: String,
    /// How it was judged when closed (`real-concern`, `not-a-concern`);
    /// `None` while open, and for alerts closed before verdicts were asked.
    pub verdict: Option<String>,
}

/// How the person closing an alert judged it: what a trust's own model
/// learns from (`haven model retrain --from-record`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// It was a real concern.
    RealConcern,
    /// It was not a concern: a false alarm.
    NotAConcern,
}

impl Verdict {
    /// As stored and sent: `real-concern`, `not-a-concern`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RealConcern => "real-concern",
            Self::NotAConcern => "not-a-concern",
        }
    }

    /// As people read it: "real concern", "not a concern".
    pub fn label(self) -> &'static str {
        match self {
            Self::RealConcern => "real concern",
            Self::NotAConcern => "not a concern",
        }
    }

    /// From [`as_str`](Self::as_str)'s form.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::RealConcern, Self::NotAConcern].into_iter().find(|v| v.as_str() == s)
    }
}

/// An alert closed with a verdict, with the words of its occurrences: what a
/// trust retrains its own model from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judged {
    /// The alert's id.
    pub alert: i64,
    /// Category of concern (BRIEF.md's name).
    pub category: String,
    /// The verdict.
    pub verdict: Verdict,
    /// Each occurrence's text and its own level, oldest first; findings
    /// that are not a person's words (blocked pages, reports) left out.
    pub texts: Vec<(String, u8)>,
}

/// A notification to send (e-mail or webhook), kept until sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Id.
    pub id: i64,
    /// The alert.
    pub alert: i64,
    /// Who.
    pub name: String,
    /// `email` or `webhook`.
    pub channel: String,
    /// Address or URL.
    pub target: String,
    /// Not before.
    pub due_at: Timestamp,
    /// Tries so far.
    pub attempts: i64,
    /// Part of a level-5 call-out.
    pub callout: bool,
    /// The same on every retry: receivers use it to drop repeats (webhook
    /// header `Idempotency-Key`, e-mail `Message-ID`).
    pub notice_id: String,
    /// A notice that other notices about the alert could not be delivered.
    pub failure: bool,
}

pub(crate) fn alert(r: &sqlx::any::AnyRow) -> Result<Alert, StoreError> {
    Ok(Alert {
        id: r.try_get("id")?,
        school: r.try_get("school")?,
        person: r.try_get("person")?,
        category: r.try_get("category")?,
        level: u8::try_from(r.try_get::<i64, _>("level")?).unwrap_or(1),
        status: r.try_get("status")?,
        received_at: ts(r.try_get("received_at")?).to_string(),
        due_at: r.try_get::<Option<i64>, _>("due_at")?.map(|t| ts(t).to_string()),
        occurrences: r.try_get("occurrences")?,
        source: r.try_get("source")?,
        verdict: r.try_get("verdict")?,
    })
}

/// What grouping needs of an open alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenRow {
    /// Id.
    pub id: i64,
    /// Category.
    pub category: String,
    /// Level.
    pub level: u8,
    /// Last finding added.
    pub last_seen: Timestamp,
}

impl Store {
    /// Stores a new alert and its first occurrence (one transaction); returns its id.
    pub async fn insert_alert(&self, a: &NewAlert) -> Result<i64, StoreError> {
        let mut tx = self.begin().await?;
        let id = tx.insert_alert(a).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// A person's open alerts at a school (for grouping repeats).
    pub async fn open_alerts(&self, school: &str, person: &str) -> Result<Vec<OpenRow>, StoreError> {
        let mut tx = self.begin().await?;
        let open = tx.open_alerts(school, person).await?;
        tx.commit().await?;
        Ok(open)
    }

    /// Adds a finding to an alert (one transaction), raising its level and deadline when given.
    pub async fn join_alert(&self, id: i64, o: &NewOccurrence, raise: Option<(u8, Option<Timestamp>)>) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        tx.join_alert(id, o, raise).await?;
        tx.commit().await
    }

    /// The alerts `who` may see, newest first (none for roles that do not see alerts).
    pub async fn alerts_for(&self, who: &Account, limit: i64) -> Result<Vec<Alert>, StoreError> {
        if !who.role.reads_alerts() {
            return Ok(Vec::new());
        }
        // Only the audiences the role reads, like the queue: a staff alert is never the DSL's.
        let cols = format!(
            "SELECT id, school, person, category, level, status, received_at, due_at, occurrences, source, verdict FROM alerts WHERE {}",
            crate::staff::audience_filter(who)
        );
        let rows = match (who.role.trust_wide(), &who.school) {
            (false, Some(s)) => {
                sqlx::query(sqlx::AssertSqlSafe(format!("{cols} AND school = $1 ORDER BY received_at DESC, id DESC LIMIT $2"))).bind(s.clone()).bind(limit)
            }
            (false, None) => return Ok(Vec::new()),
            (true, _) => sqlx::query(sqlx::AssertSqlSafe(format!("{cols} ORDER BY received_at DESC, id DESC LIMIT $1"))).bind(limit),
        }
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(alert).collect()
    }

    /// Queues a notification.
    pub async fn enqueue(&self, alert: i64, name: &str, channel: &str, target: &str, due_at: Timestamp, callout: bool) -> Result<i64, StoreError> {
        let mut c = self.pool().acquire().await?;
        enqueue_on(&mut c, alert, name, channel, target, due_at, callout, "alert").await
    }

    /// Tells `name` that the notices about `alert` could not be delivered.
    pub async fn enqueue_failure(&self, alert: i64, name: &str, channel: &str, target: &str, now: Timestamp) -> Result<i64, StoreError> {
        let mut c = self.pool().acquire().await?;
        enqueue_on(&mut c, alert, name, channel, target, now, false, "failed").await
    }

    /// Notifications due by `now`, not yet sent, given up or cancelled; call-outs first, then oldest.
    pub async fn outbox(&self, now: Timestamp) -> Result<Vec<Outgoing>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, alert, name, channel, target, due_at, attempts, callout, notice_id, purpose FROM notifications \
             WHERE sent_at IS NULL AND gave_up_at IS NULL AND cancelled_at IS NULL AND due_at <= $1 ORDER BY callout DESC, due_at, id",
        )
        .bind(ms(now))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let id: i64 = r.try_get("id")?;
                Ok(Outgoing {
                    id,
                    alert: r.try_get("alert")?,
                    name: r.try_get("name")?,
                    channel: r.try_get("channel")?,
                    target: r.try_get("target")?,
                    due_at: ts(r.try_get("due_at")?),
                    attempts: r.try_get("attempts")?,
                    callout: r.try_get::<i64, _>("callout")? != 0,
                    notice_id: r.try_get::<Option<String>, _>("notice_id")?.unwrap_or_else(|| format!("haven-notice-{id}")),
                    failure: r.try_get::<String, _>("purpose")? == "failed",
                })
            })
            .collect()
    }

    /// When the next waiting notice falls due, if any.
    pub async fn next_notice_due(&self) -> Result<Option<Timestamp>, StoreError> {
        let next: Option<i64> =
            sqlx::query_scalar("SELECT MIN(due_at) FROM notifications WHERE sent_at IS NULL AND gave_up_at IS NULL AND cancelled_at IS NULL")
                .fetch_one(self.pool())
                .await?;
        Ok(next.map(ts))
    }

    /// How many notices wait to be sent (due or not).
    pub async fn outbox_depth(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM notifications WHERE sent_at IS NULL AND gave_up_at IS NULL AND cancelled_at IS NULL")
            .fetch_one(self.pool())
            .await?)
    }

    /// Cancels notices not yet sent about alerts someone has acknowledged or
    /// closed: nobody needs waking for an alert a person already holds.
    pub async fn cancel_settled_notices(&self, now: Timestamp) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "UPDATE notifications SET cancelled_at = $1 WHERE sent_at IS NULL AND gave_up_at IS NULL AND cancelled_at IS NULL AND purpose = 'alert' \
             AND alert IN (SELECT id FROM alerts WHERE status <> 'open')",
        )
        .bind(ms(now))
        .execute(self.pool())
        .await?
        .rows_affected())
    }

    /// Marks a notification sent, or counts a failed try and retries it at `retry_at`.
    pub async fn notification_result(&self, id: i64, sent: bool, now: Timestamp, retry_at: Timestamp) -> Result<(), StoreError> {
        if sent {
            sqlx::query("UPDATE notifications SET sent_at = $2, attempts = attempts + 1, last_error = NULL WHERE id = $1")
                .bind(id)
                .bind(ms(now))
                .execute(self.pool())
                .await?;
        } else {
            sqlx::query("UPDATE notifications SET attempts = attempts + 1, due_at = $2 WHERE id = $1").bind(id).bind(ms(retry_at)).execute(self.pool()).await?;
        }
        Ok(())
    }

    /// Records why a try failed (never pupil text: a channel's own error).
    pub async fn notification_error(&self, id: i64, error: &str) -> Result<(), StoreError> {
        let error: String = error.chars().take(500).collect();
        sqlx::query("UPDATE notifications SET last_error = $2 WHERE id = $1").bind(id).bind(error).execute(self.pool()).await?;
        Ok(())
    }

    /// Stops retrying a notification after its last try.
    pub async fn give_up_notification(&self, id: i64, now: Timestamp) -> Result<(), StoreError> {
        sqlx::query("UPDATE notifications SET gave_up_at = $2, attempts = attempts + 1 WHERE id = $1").bind(id).bind(ms(now)).execute(self.pool()).await?;
        Ok(())
    }

    /// Every notice about an alert, oldest first (for the alert page and tests).
    pub async fn notices_for(&self, alert: i64) -> Result<Vec<Notice>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, channel, callout, purpose, due_at, sent_at, gave_up_at, cancelled_at, attempts, last_error FROM notifications WHERE alert = $1 ORDER BY id",
        )
        .bind(alert)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let state = if r.try_get::<Option<i64>, _>("sent_at")?.is_some() {
                    "sent"
                } else if r.try_get::<Option<i64>, _>("gave_up_at")?.is_some() {
                    "gave up"
                } else if r.try_get::<Option<i64>, _>("cancelled_at")?.is_some() {
                    "cancelled"
                } else {
                    "waiting"
                };
                Ok(Notice {
                    name: r.try_get("name")?,
                    channel: r.try_get("channel")?,
                    callout: r.try_get::<i64, _>("callout")? != 0,
                    failure: r.try_get::<String, _>("purpose")? == "failed",
                    due_at: ts(r.try_get("due_at")?).to_string(),
                    state: state.into(),
                    attempts: r.try_get("attempts")?,
                    last_error: r.try_get("last_error")?,
                })
            })
            .collect()
    }
}

/// A notice about an alert, as the alert page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notice {
    /// Who.
    pub name: String,
    /// `email` or `webhook`.
    pub channel: String,
    /// Part of a level-5 call-out.
    pub callout: bool,
    /// A notice that others could not be reached.
    pub failure: bool,
    /// When it was (or is) due.
    pub due_at: String,
    /// `sent`, `waiting`, `gave up`, `cancelled`.
    pub state: String,
    /// Tries so far.
    pub attempts: i64,
    /// Why the last try failed.
    pub last_error: Option<String>,
}

/// Queues a notice on `c`, with a random idempotency id that every retry carries.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn enqueue_on(
    c: &mut sqlx::AnyConnection,
    alert: i64,
    name: &str,
    channel: &str,
    target: &str,
    due_at: Timestamp,
    callout: bool,
    purpose: &str,
) -> Result<i64, StoreError> {
    let mut raw = [0u8; 16];
    getrandom::fill(&mut raw).map_err(|e| StoreError::Invalid(format!("no randomness for a notice id: {e}")))?;
    let notice_id: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    Ok(sqlx::query_scalar(
        "INSERT INTO notifications (alert, name, channel, target, due_at, attempts, callout, notice_id, purpose) VALUES ($1, $2, $3, $4, $5, 0, $6, $7, $8) RETURNING id",
    )
    .bind(alert)
    .bind(name)
    .bind(channel)
    .bind(target)
    .bind(ms(due_at))
    .bind(i64::from(callout))
    .bind(notice_id)
    .bind(purpose)
    .fetch_one(c)
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Role;
    use crate::testing::stores;

    fn new(school: &str, person: &str, level: u8, at: &str) -> NewAlert {
        NewAlert {
            school: school.into(),
            person: person.into(),
            category: "Vulnerable person".into(),
            level,
            due_at: Some(at.parse().unwrap()),
            first: NewOccurrence {
                at: at.parse().unwrap(),
                level,
                source: "typed".into(),
                excerpt: "…".into(),
                url: None,
                spans: "[]".into(),
                explanation: "Vulnerable person (level 5)".into(),
                screenshot: None,
                screenshot_withheld: false,
                repeats: 1,
            },
        }
    }

    #[tokio::test]
    async fn a_finding_that_raises_an_alert_becomes_its_summary() {
        let now: Timestamp = "2026-11-24T10:00:00Z".parse().unwrap();
        for (s, _dir) in stores().await {
            s.upsert_school("oak", "Oak", false).await.unwrap();
            let (dsl, _) = s.add_account("dsl@oak.example", Role::Dsl, Some("oak"), "a long password", now).await.unwrap();
            let mut first = new("oak", "amy", 4, "2026-11-24T10:00:00Z");
            first.first.excerpt = "i want to die".into();
            first.first.explanation = "Vulnerable person (level 4)".into();
            let a = s.insert_alert(&first).await.unwrap();
            let raising = NewOccurrence {
                at: "2026-11-24T10:03:00Z".parse().unwrap(),
                level: 5,
                source: "chat".into(),
                excerpt: "the pills are ready for tonight".into(),
                url: Some("https://chat.example/".into()),
                spans: "[[4, 9]]".into(),
                explanation: "Vulnerable person (level 5): close to: means at hand and a time".into(),
                screenshot: None,
                screenshot_withheld: false,
                repeats: 1,
            };
            let due: Timestamp = "2026-11-24T10:08:00Z".parse().unwrap();
            s.join_alert(a, &raising, Some((5, Some(due)))).await.unwrap();
            let d = s.alert_detail(&dsl, a).await.unwrap().unwrap();
            assert_eq!(d.alert.level, 5);
            assert_eq!((d.excerpt.as_str(), d.explanation.as_str()), (raising.excerpt.as_str(), raising.explanation.as_str()));
            assert_eq!((d.alert.source.as_str(), d.url.as_deref(), d.spans.clone()), ("chat", Some("https://chat.example/"), vec![[4, 9]]));
            let said: Vec<_> = d.evidence.iter().map(|e| (e.excerpt.as_str(), e.level)).collect();
            assert_eq!(said, [("i want to die", 4), ("the pills are ready for tonight", 5)], "the first message stays in the record");
            s.close().await;
        }
    }

    #[tokio::test]
    async fn alerts_are_seen_only_by_the_right_roles_and_notifications_survive() {
        let now: Timestamp = "2026-11-24T10:00:00Z".parse().unwrap();
        for (s, _dir) in stores().await {
            s.upsert_school("oak", "Oak", false).await.unwrap();
            s.upsert_school("elm", "Elm", false).await.unwrap();
            let a = s.insert_alert(&new("oak", "amy", 5, "2026-11-24T10:00:00Z")).await.unwrap();
            s.insert_alert(&new("elm", "ben", 3, "2026-11-24T11:00:00Z")).await.unwrap();
            let (dsl, _) = s.add_account("dsl@oak.example", Role::Dsl, Some("oak"), "a long password", now).await.unwrap();
            let (teacher, _) = s.add_account("t@oak.example", Role::Teacher, Some("oak"), "a long password", now).await.unwrap();
            let (gov, _) = s.add_account("g@oak.example", Role::Governor, Some("oak"), "a long password", now).await.unwrap();
            let (lead, _) = s.add_account("lead@trust.example", Role::TrustSafeguardingLead, None, "a long password", now).await.unwrap();
            assert_eq!(s.alerts_for(&dsl, 100).await.unwrap().iter().map(|a| a.person.as_str()).collect::<Vec<_>>(), ["amy"]);
            assert!(s.alerts_for(&teacher, 100).await.unwrap().is_empty(), "a teacher cannot read alerts");
            assert!(s.alerts_for(&gov, 100).await.unwrap().is_empty(), "a governor sees no alerts");
            assert_eq!(s.alerts_for(&lead, 100).await.unwrap().iter().map(|a| a.person.as_str()).collect::<Vec<_>>(), ["ben", "amy"], "newest first");
            let second = NewOccurrence {
                at: "2026-11-24T10:05:00Z".parse().unwrap(),
                level: 4,
                source: "search".into(),
                excerpt: "second".into(),
                url: Some("http://x.example/".into()),
                spans: "[[0, 6]]".into(),
                explanation: "second finding".into(),
                screenshot: Some("ab".repeat(32)),
                screenshot_withheld: false,
                repeats: 1,
            };
            s.join_alert(a, &second, None).await.unwrap();
            let d = s.alert_detail(&dsl, a).await.unwrap().unwrap();
            assert_ne!(d.excerpt, "second", "a finding that does not raise the alert leaves its summary");
            let open = s.open_alerts("oak", "amy").await.unwrap();
            assert_eq!(open[0].last_seen, "2026-11-24T10:05:00Z".parse::<Timestamp>().unwrap());
            assert_eq!(s.alerts_for(&dsl, 1).await.unwrap()[0].occurrences, 2);
            let n = s.enqueue(a, "DSL", "email", "dsl@oak.example", now, true).await.unwrap();
            assert_eq!(s.outbox(now).await.unwrap().len(), 1);
            s.notification_result(n, false, now, "2026-11-24T10:01:00Z".parse().unwrap()).await.unwrap();
            assert!(s.outbox(now).await.unwrap().is_empty(), "retried later");
            let later = "2026-11-24T10:02:00Z".parse().unwrap();
            assert_eq!(s.outbox(later).await.unwrap()[0].attempts, 1);
            s.notification_result(n, true, later, later).await.unwrap();
            assert!(s.outbox(later).await.unwrap().is_empty());
            let d = s.alert_detail(&dsl, a).await.unwrap().unwrap();
            assert_eq!(d.alert.status, "open");
            assert_eq!(d.evidence.len(), 2, "every occurrence keeps its own evidence");
            assert_eq!((d.evidence[1].excerpt.as_str(), d.evidence[1].source.as_str(), d.evidence[1].level), ("second", "search", 4));
            assert_eq!(d.evidence[1].screenshot.as_deref(), Some("ab".repeat(32).as_str()));
            assert_eq!(d.evidence[1].spans, vec![[0, 6]]);
            assert!(s.alert_detail(&teacher, a).await.unwrap().is_none(), "a teacher cannot read an alert");
            let elm_alert = s.alerts_for(&lead, 10).await.unwrap()[0].id;
            assert!(s.alert_detail(&dsl, elm_alert).await.unwrap().is_none(), "another school's alert");
            assert!(s.act_on_alert(&dsl, a, "acknowledged", "", now).await.unwrap());
            assert!(s.act_on_alert(&dsl, a, "action", "spoke to Amy with her form tutor", now).await.unwrap());
            assert!(!s.close_alert(&teacher, a, "fine", Verdict::NotAConcern, now).await.unwrap());
            assert!(s.act_on_alert(&dsl, a, "closed", "a reason", now).await.unwrap_err().to_string().contains("verdict"), "closing needs a verdict");
            assert!(s.close_alert(&dsl, a, "  ", Verdict::RealConcern, now).await.unwrap_err().to_string().contains("reason"));
            let d = s.alert_detail(&dsl, a).await.unwrap().unwrap();
            assert_eq!((d.alert.status.as_str(), d.alert.verdict.as_deref()), ("acknowledged", None));
            assert_eq!(d.actions.len(), 2);
            assert_eq!(d.actions[1].by.as_deref(), Some("dsl@oak.example"));
            let totals = s.totals(Some("oak")).await.unwrap();
            assert_eq!(totals, vec![Total { category: "Vulnerable person".into(), level: 5, count: 1 }]);
            s.audit(now, "account:1", "alert.read", &format!("alert:{a}"), "").await.unwrap();
            s.audit(now, "account:2", "alert.list", "alerts", "").await.unwrap();
            assert_eq!(s.audit_search(Some(&format!("alert:{a}")), None, 10).await.unwrap().len(), 3, "acknowledged, action, read");
            s.close().await;
        }
    }

    #[tokio::test]
    async fn a_close_keeps_its_verdict_and_judged_alerts_carry_their_words() {
        let now: Timestamp = "2026-11-24T10:00:00Z".parse().unwrap();
        for (s, _dir) in stores().await {
            s.upsert_school("oak", "Oak", false).await.unwrap();
            let (dsl, _) = s.add_account("dsl@oak.example", Role::Dsl, Some("oak"), "a long password", now).await.unwrap();
            let mut first = new("oak", "amy", 5, "2026-11-24T10:00:00Z");
            first.first.excerpt = "saved up my tablets".into();
            let a = s.insert_alert(&first).await.unwrap();
            let mut more = first.first.clone();
            more.at = "2026-11-24T10:01:00Z".parse().unwrap();
            more.excerpt = "friday".into();
            more.level = 3;
            s.join_alert(a, &more, None).await.unwrap();
            let mut blocked = more.clone();
            blocked.at = "2026-11-24T10:02:00Z".parse().unwrap();
            blocked.source = "filter".into();
            blocked.excerpt = "Tried to open a blocked page".into();
            s.join_alert(a, &blocked, None).await.unwrap();
            let b = s.insert_alert(&new("oak", "ben", 3, "2026-11-24T11:00:00Z")).await.unwrap();
            let c = s.insert_alert(&new("oak", "cal", 3, "2026-11-24T12:00:00Z")).await.unwrap();
            assert!(s.close_alert(&dsl, a, "safety plan in place", Verdict::RealConcern, now).await.unwrap());
            assert!(s.close_alert(&dsl, b, "a song lyric", Verdict::NotAConcern, now).await.unwrap());
            // An alert closed before verdicts were asked has none, and teaches nothing.
            sqlx::query("UPDATE alerts SET status = 'closed' WHERE id = $1").bind(c).execute(s.pool()).await.unwrap();
            let d = s.alert_detail(&dsl, a).await.unwrap().unwrap();
            assert_eq!((d.alert.status.as_str(), d.alert.verdict.as_deref()), ("closed", Some("real-concern")));
            assert_eq!(d.actions.last().map(|x| (x.kind.as_str(), x.note.as_str())), Some(("closed", "safety plan in place")));
            let audit = s.audit_search(Some(&format!("alert:{b}")), None, 10).await.unwrap();
            assert_eq!((audit[0].action.as_str(), audit[0].detail.as_str()), ("alert.closed", "verdict: not a concern"));
            let judged = s.judged_alerts().await.unwrap();
            assert_eq!(judged.len(), 2, "the alert without a verdict is left out");
            assert_eq!((judged[0].alert, judged[0].verdict, judged[0].category.as_str()), (a, Verdict::RealConcern, "Vulnerable person"));
            assert_eq!(judged[0].texts, vec![("saved up my tablets".to_string(), 5), ("friday".to_string(), 3)], "the blocked page is not words");
            assert_eq!((judged[1].alert, judged[1].verdict), (b, Verdict::NotAConcern));
            assert_eq!(Verdict::parse("not-a-concern"), Some(Verdict::NotAConcern));
            assert_eq!(Verdict::parse("maybe"), None);
            s.close().await;
        }
    }
}

/// An alert with its evidence and what has been done, for the alert page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertDetail {
    /// The summary.
    pub alert: Alert,
    /// The evidence text.
    pub excerpt: String,
    /// Matched spans in it, as byte ranges.
    pub spans: Vec<[usize; 2]>,
    /// The URL, if any.
    pub url: Option<String>,
    /// The classifier's explanation.
    pub explanation: String,
    /// SHA-256 of the screenshot kept with it, if any.
    pub screenshot: Option<String>,
    /// A screenshot was sent but withheld (possible sexual content).
    pub screenshot_withheld: bool,
    /// What staff have done, oldest first.
    pub actions: Vec<Action>,
    /// Every finding the alert groups, oldest first, each with its own evidence.
    pub evidence: Vec<Occurrence>,
}

/// One thing done about an alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Action {
    /// When (RFC 3339).
    pub at: String,
    /// Who, if a person: their name and e-mail, or the e-mail alone.
    pub by: Option<String>,
    /// `acknowledged`, `action`, `closed`.
    pub kind: String,
    /// What they wrote.
    pub note: String,
}

/// Counts for governors: no names, no text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Total {
    /// Category of concern.
    pub category: String,
    /// Level.
    pub level: u8,
    /// How many alerts.
    pub count: i64,
}

impl Store {
    /// One alert, if `who` may see it.
    pub async fn alert_detail(&self, who: &Account, id: i64) -> Result<Option<AlertDetail>, StoreError> {
        // Only the audiences the role reads: an alert about staff is never the DSL's (`staff`).
        if who.role.alert_audiences().is_empty() {
            return Ok(None);
        }
        let r = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id, school, person, category, level, status, received_at, due_at, occurrences, source, verdict, excerpt, spans, url, explanation, screenshot, screenshot_withheld FROM alerts WHERE id = $1 AND {}",
            crate::staff::audience_filter(who)
        )))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        let Some(r) = r else { return Ok(None) };
        let a = alert(&r)?;
        if !who.role.trust_wide() && who.school.as_deref() != Some(a.school.as_str()) {
            return Ok(None);
        }
        let spans: String = r.try_get("spans")?;
        let rows = sqlx::query(
            "SELECT x.at, a.email, a.name, x.kind, x.note FROM alert_actions x LEFT JOIN accounts a ON a.id = x.account WHERE x.alert = $1 ORDER BY x.at, x.id",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        let actions = rows
            .iter()
            .map(|x| {
                // Shown by name: "Sam Patel (sam@…)", the e-mail alone without one.
                let (email, name): (Option<String>, Option<String>) = (x.try_get("email")?, x.try_get("name")?);
                let by = email.map(|e| crate::names::label(name.as_deref(), &e));
                Ok(Action { at: ts(x.try_get("at")?).to_string(), by, kind: x.try_get("kind")?, note: x.try_get("note")? })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let rows = sqlx::query(
            "SELECT at, level, source, excerpt, spans, url, explanation, screenshot, screenshot_withheld, repeats FROM occurrences WHERE alert = $1 ORDER BY at, id",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        let evidence = rows
            .iter()
            .map(|x| {
                let spans: String = x.try_get("spans")?;
                Ok(Occurrence {
                    at: ts(x.try_get("at")?).to_string(),
                    level: u8::try_from(x.try_get::<i64, _>("level")?).unwrap_or(1),
                    source: x.try_get("source")?,
                    excerpt: x.try_get("excerpt")?,
                    spans: serde_json::from_str(&spans).unwrap_or_default(),
                    url: x.try_get("url")?,
                    explanation: x.try_get("explanation")?,
                    screenshot: x.try_get("screenshot")?,
                    screenshot_withheld: x.try_get::<i64, _>("screenshot_withheld")? != 0,
                    repeats: x.try_get("repeats")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Some(AlertDetail {
            evidence,
            alert: a,
            excerpt: r.try_get("excerpt")?,
            spans: serde_json::from_str(&spans).unwrap_or_default(),
            url: r.try_get("url")?,
            explanation: r.try_get("explanation")?,
            screenshot: r.try_get("screenshot")?,
            screenshot_withheld: r.try_get::<i64, _>("screenshot_withheld")? != 0,
            actions,
        }))
    }

    /// Records what someone did (`acknowledged`, `action`) and moves the
    /// status; closing is [`close_alert`](Self::close_alert), with a verdict.
    pub async fn act_on_alert(&self, who: &Account, id: i64, kind: &str, note: &str, now: Timestamp) -> Result<bool, StoreError> {
        if self.alert_detail(who, id).await?.is_none() {
            return Ok(false);
        }
        let status = match kind {
            "acknowledged" => Some("acknowledged"),
            // Issue 16's states after new (`open`) and acknowledged.
            "triaged" => Some("triaged"),
            "escalated" => Some("escalated"),
            "closed" => return Err(StoreError::Invalid("closing an alert needs a verdict: real concern or not a concern".into())),
            "action" => None,
            other => return Err(StoreError::Invalid(format!("unknown action {other:?}"))),
        };
        self.record_action(who, id, kind, note, status, None, now).await?;
        Ok(true)
    }

    /// Closes an alert with the reason and the verdict (real concern or
    /// not a concern), both in the audit log; returns whether `who` could.
    pub async fn close_alert(&self, who: &Account, id: i64, note: &str, verdict: Verdict, now: Timestamp) -> Result<bool, StoreError> {
        let note = note.trim();
        if note.is_empty() {
            return Err(StoreError::Invalid("closing an alert needs a reason".into()));
        }
        if self.alert_detail(who, id).await?.is_none() {
            return Ok(false);
        }
        self.record_action(who, id, "closed", note, Some("closed"), Some(verdict), now).await?;
        Ok(true)
    }

    /// Every alert closed with a verdict, oldest first, with the words of
    /// its occurrences (trust-wide: for the trust's own model, never sent
    /// anywhere).
    pub async fn judged_alerts(&self) -> Result<Vec<Judged>, StoreError> {
        let rows = sqlx::query(
            "SELECT a.id, a.category, a.verdict, o.excerpt, o.level FROM alerts a JOIN occurrences o ON o.alert = a.id \
             WHERE a.status = 'closed' AND a.verdict IS NOT NULL AND o.source NOT IN ('filter', 'report', 'block-page') ORDER BY a.id, o.at, o.id",
        )
        .fetch_all(self.pool())
        .await?;
        let mut out: Vec<Judged> = Vec::new();
        for r in &rows {
            let id: i64 = r.try_get("id")?;
            let verdict: String = r.try_get("verdict")?;
            let Some(verdict) = Verdict::parse(&verdict) else { continue };
            let text: String = r.try_get("excerpt")?;
            let level = u8::try_from(r.try_get::<i64, _>("level")?).unwrap_or(1);
            match out.last_mut() {
                Some(j) if j.alert == id => j.texts.push((text, level)),
                _ => out.push(Judged { alert: id, category: r.try_get("category")?, verdict, texts: vec![(text, level)] }),
            }
        }
        Ok(out)
    }

    /// The action, the new status (and verdict, when closing), the audit row.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn record_action(
        &self,
        who: &Account,
        id: i64,
        kind: &str,
        note: &str,
        status: Option<&str>,
        verdict: Option<Verdict>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO alert_actions (alert, at, account, kind, note) VALUES ($1, $2, $3, $4, $5)")
            .bind(id)
            .bind(ms(now))
            .bind(who.id)
            .bind(kind)
            .bind(note)
            .execute(self.pool())
            .await?;
        match (status, verdict) {
            (Some(st), Some(v)) => {
                sqlx::query("UPDATE alerts SET status = $2, verdict = $3 WHERE id = $1").bind(id).bind(st).bind(v.as_str()).execute(self.pool()).await?;
            }
            (Some(st), None) => {
                sqlx::query("UPDATE alerts SET status = $2 WHERE id = $1").bind(id).bind(st).execute(self.pool()).await?;
            }
            (None, _) => {}
        }
        let detail = verdict.map(|v| format!("verdict: {}", v.label())).unwrap_or_default();
        self.audit(now, &format!("account:{}", who.id), &format!("alert.{kind}"), &format!("alert:{id}"), &detail).await?;
        Ok(())
    }

    /// Anonymised totals by category and level (for governors), for one school or all.
    pub async fn totals(&self, school: Option<&str>) -> Result<Vec<Total>, StoreError> {
        let rows = sqlx::query(
            "SELECT category, level, COUNT(*) AS n FROM alerts WHERE ($1 IS NULL OR school = $1) GROUP BY category, level ORDER BY category, level",
        )
        .bind(school)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok(Total { category: r.try_get("category")?, level: u8::try_from(r.try_get::<i64, _>("level")?).unwrap_or(1), count: r.try_get("n")? }))
            .collect()
    }

    /// Unacknowledged level-5 alerts (for escalation).
    pub async fn unacknowledged_callouts(&self) -> Result<Vec<(i64, String, Timestamp)>, StoreError> {
        let rows = sqlx::query("SELECT id, school, received_at FROM alerts WHERE level >= 5 AND status = 'open'").fetch_all(self.pool()).await?;
        rows.iter().map(|r| Ok((r.try_get("id")?, r.try_get("school")?, ts(r.try_get("received_at")?)))).collect()
    }

    /// When an alert was stored (its first finding's arrival), if it exists.
    pub async fn alert_received(&self, id: i64) -> Result<Option<Timestamp>, StoreError> {
        Ok(sqlx::query_scalar::<_, i64>("SELECT received_at FROM alerts WHERE id = $1").bind(id).fetch_optional(self.pool()).await?.map(ts))
    }

    /// The e-mail addresses of the trust's admins (told when notices cannot be delivered).
    pub async fn admin_emails(&self) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar("SELECT email FROM accounts WHERE role = 'trust-admin' ORDER BY id").fetch_all(self.pool()).await?)
    }

    /// How many call-out notices an alert has had queued.
    pub async fn callouts_queued(&self, alert: i64) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM notifications WHERE alert = $1 AND callout = 1").bind(alert).fetch_one(self.pool()).await?)
    }
}
