//! Alerts and the notification outbox.

use jiff::Timestamp;
use serde::Serialize;
use sqlx::Row;

use crate::people::Account;
use crate::{Store, StoreError, ms, ts};

/// A new alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAlert {
    /// School id.
    pub school: String,
    /// Who it concerns.
    pub person: String,
    /// Category of concern (BRIEF.md's name).
    pub category: String,
    /// Level 1–5.
    pub level: u8,
    /// When it arrived.
    pub received_at: Timestamp,
    /// When it must be actioned.
    pub due_at: Option<Timestamp>,
    /// `typed`, `search`, `chat`, `page`, `filter`, `report`.
    pub source: String,
    /// The evidence (text as seen; cut to a few hundred characters).
    pub excerpt: String,
    /// The URL, if any.
    pub url: Option<String>,
    /// The classifier's explanation.
    pub explanation: String,
    /// Matched spans, JSON (`[[start, end], …]` in the excerpt).
    pub spans: String,
    /// SHA-256 of a screenshot kept in the evidence folder.
    pub screenshot: Option<String>,
    /// A screenshot was sent but not kept (it may show sexual content).
    pub screenshot_withheld: bool,
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
}

fn alert(r: &sqlx::any::AnyRow) -> Result<Alert, StoreError> {
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
    /// Stores a new alert; returns its id.
    pub async fn insert_alert(&self, a: &NewAlert) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "INSERT INTO alerts (school, person, category, level, status, received_at, due_at, last_seen, occurrences, source, excerpt, url, explanation, spans, screenshot, screenshot_withheld) \
             VALUES ($1, $2, $3, $4, 'open', $5, $6, $5, 1, $7, $8, $9, $10, $11, $12, $13) RETURNING id",
        )
        .bind(&a.school)
        .bind(&a.person)
        .bind(&a.category)
        .bind(i64::from(a.level))
        .bind(ms(a.received_at))
        .bind(a.due_at.map(ms))
        .bind(&a.source)
        .bind(&a.excerpt)
        .bind(&a.url)
        .bind(&a.explanation)
        .bind(&a.spans)
        .bind(&a.screenshot)
        .bind(i64::from(a.screenshot_withheld))
        .fetch_one(self.pool())
        .await?)
    }

    /// A person's open alerts at a school (for grouping repeats).
    pub async fn open_alerts(&self, school: &str, person: &str) -> Result<Vec<OpenRow>, StoreError> {
        let rows = sqlx::query("SELECT id, category, level, last_seen FROM alerts WHERE school = $1 AND person = $2 AND status <> 'closed'")
            .bind(school)
            .bind(person)
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| {
                Ok(OpenRow {
                    id: r.try_get("id")?,
                    category: r.try_get("category")?,
                    level: u8::try_from(r.try_get::<i64, _>("level")?).unwrap_or(1),
                    last_seen: ts(r.try_get("last_seen")?),
                })
            })
            .collect()
    }

    /// Adds a repeat to an alert, raising its level and deadline when given.
    pub async fn join_alert(&self, id: i64, seen: Timestamp, raise: Option<(u8, Option<Timestamp>)>) -> Result<(), StoreError> {
        match raise {
            Some((level, due)) => {
                sqlx::query("UPDATE alerts SET occurrences = occurrences + 1, last_seen = $2, level = $3, due_at = $4, status = 'open' WHERE id = $1")
                    .bind(id)
                    .bind(ms(seen))
                    .bind(i64::from(level))
                    .bind(due.map(ms))
                    .execute(self.pool())
                    .await?
            }
            None => {
                sqlx::query("UPDATE alerts SET occurrences = occurrences + 1, last_seen = $2 WHERE id = $1")
                    .bind(id)
                    .bind(ms(seen))
                    .execute(self.pool())
                    .await?
            }
        };
        Ok(())
    }

    /// The alerts `who` may see, newest first (none for roles that do not see alerts).
    pub async fn alerts_for(&self, who: &Account, limit: i64) -> Result<Vec<Alert>, StoreError> {
        if !who.role.sees_alerts() {
            return Ok(Vec::new());
        }
        let cols = "SELECT id, school, person, category, level, status, received_at, due_at, occurrences, source FROM alerts";
        let rows = match (who.role.trust_wide(), &who.school) {
            (false, Some(s)) => {
                sqlx::query(sqlx::AssertSqlSafe(format!("{cols} WHERE school = $1 ORDER BY received_at DESC, id DESC LIMIT $2"))).bind(s.clone()).bind(limit)
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
        Ok(sqlx::query_scalar(
            "INSERT INTO notifications (alert, name, channel, target, due_at, attempts, callout) VALUES ($1, $2, $3, $4, $5, 0, $6) RETURNING id",
        )
        .bind(alert)
        .bind(name)
        .bind(channel)
        .bind(target)
        .bind(ms(due_at))
        .bind(i64::from(callout))
        .fetch_one(self.pool())
        .await?)
    }

    /// Notifications due by `now` and not yet sent, oldest first.
    pub async fn outbox(&self, now: Timestamp) -> Result<Vec<Outgoing>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, alert, name, channel, target, due_at, attempts, callout FROM notifications WHERE sent_at IS NULL AND due_at <= $1 ORDER BY due_at, id",
        )
        .bind(ms(now))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Outgoing {
                    id: r.try_get("id")?,
                    alert: r.try_get("alert")?,
                    name: r.try_get("name")?,
                    channel: r.try_get("channel")?,
                    target: r.try_get("target")?,
                    due_at: ts(r.try_get("due_at")?),
                    attempts: r.try_get("attempts")?,
                    callout: r.try_get::<i64, _>("callout")? != 0,
                })
            })
            .collect()
    }

    /// Marks a notification sent, or counts a failed try and retries it at `retry_at`.
    pub async fn notification_result(&self, id: i64, sent: bool, now: Timestamp, retry_at: Timestamp) -> Result<(), StoreError> {
        if sent {
            sqlx::query("UPDATE notifications SET sent_at = $2, attempts = attempts + 1 WHERE id = $1").bind(id).bind(ms(now)).execute(self.pool()).await?;
        } else {
            sqlx::query("UPDATE notifications SET attempts = attempts + 1, due_at = $2 WHERE id = $1").bind(id).bind(ms(retry_at)).execute(self.pool()).await?;
        }
        Ok(())
    }
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
            received_at: at.parse().unwrap(),
            due_at: Some(at.parse().unwrap()),
            source: "typed".into(),
            excerpt: "…".into(),
            url: None,
            explanation: "Vulnerable person (level 5)".into(),
            spans: "[]".into(),
            screenshot: None,
            screenshot_withheld: false,
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
            s.join_alert(a, "2026-11-24T10:05:00Z".parse().unwrap(), None).await.unwrap();
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
            assert!(s.alert_detail(&teacher, a).await.unwrap().is_none(), "a teacher cannot read an alert");
            let elm_alert = s.alerts_for(&lead, 10).await.unwrap()[0].id;
            assert!(s.alert_detail(&dsl, elm_alert).await.unwrap().is_none(), "another school's alert");
            assert!(s.act_on_alert(&dsl, a, "acknowledged", "", now).await.unwrap());
            assert!(s.act_on_alert(&dsl, a, "action", "spoke to Amy with her form tutor", now).await.unwrap());
            assert!(!s.act_on_alert(&teacher, a, "closed", "", now).await.unwrap());
            let d = s.alert_detail(&dsl, a).await.unwrap().unwrap();
            assert_eq!(d.alert.status, "acknowledged");
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
}

/// One thing done about an alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Action {
    /// When (RFC 3339).
    pub at: String,
    /// Who (e-mail), if a person.
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
        if !who.role.sees_alerts() {
            return Ok(None);
        }
        let r = sqlx::query(
            "SELECT id, school, person, category, level, status, received_at, due_at, occurrences, source, excerpt, spans, url, explanation, screenshot, screenshot_withheld FROM alerts WHERE id = $1",
        )
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
            "SELECT x.at, a.email, x.kind, x.note FROM alert_actions x LEFT JOIN accounts a ON a.id = x.account WHERE x.alert = $1 ORDER BY x.at, x.id",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        let actions = rows
            .iter()
            .map(|x| Ok(Action { at: ts(x.try_get("at")?).to_string(), by: x.try_get("email")?, kind: x.try_get("kind")?, note: x.try_get("note")? }))
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Some(AlertDetail {
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

    /// Records what someone did (`acknowledged`, `action`, `closed`) and moves the status.
    pub async fn act_on_alert(&self, who: &Account, id: i64, kind: &str, note: &str, now: Timestamp) -> Result<bool, StoreError> {
        if self.alert_detail(who, id).await?.is_none() {
            return Ok(false);
        }
        let status = match kind {
            "acknowledged" => Some("acknowledged"),
            "closed" => Some("closed"),
            "action" => None,
            other => return Err(StoreError::Invalid(format!("unknown action {other:?}"))),
        };
        sqlx::query("INSERT INTO alert_actions (alert, at, account, kind, note) VALUES ($1, $2, $3, $4, $5)")
            .bind(id)
            .bind(ms(now))
            .bind(who.id)
            .bind(kind)
            .bind(note)
            .execute(self.pool())
            .await?;
        if let Some(st) = status {
            sqlx::query("UPDATE alerts SET status = $2 WHERE id = $1").bind(id).bind(st).execute(self.pool()).await?;
        }
        self.audit(now, &format!("account:{}", who.id), &format!("alert.{kind}"), &format!("alert:{id}"), "").await?;
        Ok(true)
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

    /// How many call-out notices an alert has had queued.
    pub async fn callouts_queued(&self, alert: i64) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM notifications WHERE alert = $1 AND callout = 1").bind(alert).fetch_one(self.pool()).await?)
    }
}

/// What the alert queue shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueFilter {
    /// One school (trust roles); school roles always see their own.
    pub school: Option<String>,
    /// At least this level.
    pub min_level: Option<u8>,
    /// One category of concern.
    pub category: Option<String>,
    /// `open`, `acknowledged`, `closed`; `None`: everything not closed.
    pub status: Option<String>,
}

impl Store {
    /// The alert queue for `who`: most urgent first (due soonest, then highest level).
    pub async fn queue(&self, who: &Account, f: &QueueFilter, limit: i64) -> Result<Vec<Alert>, StoreError> {
        if !who.role.sees_alerts() {
            return Ok(Vec::new());
        }
        let school = if who.role.trust_wide() { f.school.clone() } else { who.school.clone() };
        if !who.role.trust_wide() && school.is_none() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT id, school, person, category, level, status, received_at, due_at, occurrences, source FROM alerts \
             WHERE ($1 IS NULL OR school = $1) AND level >= $2 AND ($3 IS NULL OR category = $3) \
             AND (($4 IS NULL AND status <> 'closed') OR status = $4) \
             ORDER BY CASE WHEN due_at IS NULL THEN 1 ELSE 0 END, due_at, level DESC, id LIMIT $5",
        )
        .bind(school)
        .bind(i64::from(f.min_level.unwrap_or(1)))
        .bind(f.category.clone())
        .bind(f.status.clone())
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(alert).collect()
    }
}
