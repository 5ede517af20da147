//! What the governor pack and the weekly DSL digest are made of (issue 17):
//! anonymised facts about alerts (category, level, times: never the person
//! or the words), the filtering checks, the change register, incidents and
//! acceptable-use coverage over a period; and the outbox of reports sent by
//! e-mail (`report_mail`), one row per school, period and recipient.
//!
//! Alerts here are the pupils' (`audience = 'pupil'`): alerts about staff
//! and the headteacher are the headteacher's and the chair's, and a count of
//! them in a governor pack could point at a person.

use jiff::Timestamp;
use sqlx::Row;

use crate::{Store, StoreError, ms, ts};

/// One alert, anonymised: what a report counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertFact {
    /// School id.
    pub school: String,
    /// Category of concern.
    pub category: String,
    /// Level 1–5.
    pub level: u8,
    /// When it arrived.
    pub received_at: Timestamp,
    /// Its deadline, if it has one.
    pub due_at: Option<Timestamp>,
    /// The first thing anyone did about it (acknowledged, triaged, a note, closed).
    pub first_action: Option<Timestamp>,
    /// When it was closed, if it is.
    pub closed_at: Option<Timestamp>,
}

/// The filtering checks log over a period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CheckFacts {
    /// Separate runs.
    pub runs: i64,
    /// Probes.
    pub probes: i64,
    /// Probes that failed.
    pub failed: i64,
    /// Failed probes with a follow-up written.
    pub followed_up: i64,
    /// The last probe's time.
    pub last: Option<Timestamp>,
}

/// The change register over a period.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChangeFacts {
    /// Raised in the period, by kind.
    pub by_kind: Vec<(String, i64)>,
    /// Raised in the period, by state now.
    pub by_state: Vec<(String, i64)>,
    /// In force at the period's end.
    pub in_force_at_end: i64,
}

/// Incidents over a period.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IncidentFacts {
    /// Raised.
    pub opened: i64,
    /// Closed.
    pub closed: i64,
    /// Open at the end.
    pub open_at_end: i64,
    /// Raised, by flowchart branch.
    pub by_kind: Vec<(String, i64)>,
}

/// Coverage of one agreement version in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgreementFacts {
    /// School id.
    pub school: String,
    /// Audience, as shown ("Secondary pupils").
    pub audience: String,
    /// Version.
    pub version: String,
    /// Should accept it.
    pub expected: i64,
    /// Have.
    pub signed: i64,
}

/// A report e-mail waiting or sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportMail {
    /// Id.
    pub id: i64,
    /// `digest`.
    pub kind: String,
    /// School id.
    pub school: String,
    /// The period (the week's Monday).
    pub period: String,
    /// Who.
    pub name: String,
    /// Their e-mail.
    pub target: String,
    /// Subject.
    pub subject: String,
    /// Text.
    pub body: String,
    /// The Message-ID's local part, the same on every retry.
    pub notice_id: String,
    /// Tries so far.
    pub attempts: i64,
    /// When sent.
    pub sent_at: Option<Timestamp>,
}

const FACT: &str = "SELECT a.school, a.category, a.level, a.received_at, a.due_at, \
     (SELECT MIN(x.at) FROM alert_actions x WHERE x.alert = a.id) AS first_action, \
     (SELECT MAX(x.at) FROM alert_actions x WHERE x.alert = a.id AND x.kind = 'closed') AS closed_at \
     FROM alerts a WHERE a.audience = 'pupil' AND ($1 IS NULL OR a.school = $1)";

fn fact(r: &sqlx::any::AnyRow) -> Result<AlertFact, StoreError> {
    Ok(AlertFact {
        school: r.try_get("school")?,
        category: r.try_get("category")?,
        level: u8::try_from(r.try_get::<i64, _>("level")?).unwrap_or(1),
        received_at: ts(r.try_get("received_at")?),
        due_at: r.try_get::<Option<i64>, _>("due_at")?.map(ts),
        first_action: r.try_get::<Option<i64>, _>("first_action")?.map(ts),
        closed_at: r.try_get::<Option<i64>, _>("closed_at")?.map(ts),
    })
}

fn counts(rows: &[sqlx::any::AnyRow]) -> Result<Vec<(String, i64)>, StoreError> {
    rows.iter().map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)?))).collect()
}

impl Store {
    /// Pupils' alerts that arrived in `[from, to)`, at `school` or every school.
    pub async fn report_alerts(&self, school: Option<&str>, from: Timestamp, to: Timestamp) -> Result<Vec<AlertFact>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("{FACT} AND a.received_at >= $2 AND a.received_at < $3 ORDER BY a.received_at, a.id")))
            .bind(school)
            .bind(ms(from))
            .bind(ms(to))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(fact).collect()
    }

    /// Pupils' alerts closed in `[from, to)`.
    pub async fn report_closed_alerts(&self, school: Option<&str>, from: Timestamp, to: Timestamp) -> Result<Vec<AlertFact>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{FACT} AND a.status = 'closed' AND EXISTS (SELECT 1 FROM alert_actions x WHERE x.alert = a.id AND x.kind = 'closed' AND x.at >= $2 AND x.at < $3) ORDER BY a.id"
        )))
        .bind(school)
        .bind(ms(from))
        .bind(ms(to))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(fact).collect()
    }

    /// Pupils' alerts that arrived before `at` and were not closed by then
    /// (closed later, or still open): the open ones at a period's end.
    pub async fn report_open_alerts(&self, school: Option<&str>, at: Timestamp) -> Result<Vec<AlertFact>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{FACT} AND a.received_at < $2 AND (a.status <> 'closed' OR EXISTS (SELECT 1 FROM alert_actions x WHERE x.alert = a.id AND x.kind = 'closed' AND x.at >= $2)) ORDER BY a.id"
        )))
        .bind(school)
        .bind(ms(at))
        .fetch_all(self.pool())
        .await?;
        let mut out: Vec<AlertFact> = rows.iter().map(fact).collect::<Result<_, _>>()?;
        // An alert closed, reopened and closed again counts by its last closing.
        out.retain(|f| f.closed_at.is_none_or(|c| c >= at));
        Ok(out)
    }

    /// The filtering checks run in `[from, to)`.
    pub async fn report_checks(&self, school: Option<&str>, from: Timestamp, to: Timestamp) -> Result<CheckFacts, StoreError> {
        let r = sqlx::query(
            "SELECT COUNT(DISTINCT run) AS runs, COUNT(*) AS probes, COUNT(CASE WHEN ok = 0 THEN 1 END) AS failed, \
             COUNT(CASE WHEN ok = 0 AND follow_up IS NOT NULL THEN 1 END) AS followed, MAX(at) AS last \
             FROM filter_checks WHERE ($1 IS NULL OR school = $1) AND at >= $2 AND at < $3",
        )
        .bind(school)
        .bind(ms(from))
        .bind(ms(to))
        .fetch_one(self.pool())
        .await?;
        Ok(CheckFacts {
            runs: r.try_get("runs")?,
            probes: r.try_get("probes")?,
            failed: r.try_get("failed")?,
            followed_up: r.try_get("followed")?,
            last: r.try_get::<Option<i64>, _>("last")?.map(ts),
        })
    }

    /// The change register: raised in `[from, to)` by kind and state, and in force at `to`.
    pub async fn report_changes(&self, school: Option<&str>, from: Timestamp, to: Timestamp) -> Result<ChangeFacts, StoreError> {
        let by = |col: &str| {
            format!(
                "SELECT {col}, COUNT(*) AS n FROM filter_changes WHERE ($1 IS NULL OR school = $1) AND created_at >= $2 AND created_at < $3 GROUP BY {col} ORDER BY {col}"
            )
        };
        let kinds = sqlx::query(sqlx::AssertSqlSafe(by("kind"))).bind(school).bind(ms(from)).bind(ms(to)).fetch_all(self.pool()).await?;
        let states = sqlx::query(sqlx::AssertSqlSafe(by("state"))).bind(school).bind(ms(from)).bind(ms(to)).fetch_all(self.pool()).await?;
        let in_force: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM filter_changes WHERE ($1 IS NULL OR school = $1) AND state = 'in-force' AND starts_at < $2 AND (until_at IS NULL OR until_at >= $2)",
        )
        .bind(school)
        .bind(ms(to))
        .fetch_one(self.pool())
        .await?;
        Ok(ChangeFacts { by_kind: counts(&kinds)?, by_state: counts(&states)?, in_force_at_end: in_force })
    }

    /// Incidents raised and closed in `[from, to)`, open at `to`.
    pub async fn report_incidents(&self, school: Option<&str>, from: Timestamp, to: Timestamp) -> Result<IncidentFacts, StoreError> {
        let r = sqlx::query(
            "SELECT COUNT(CASE WHEN raised_at >= $2 AND raised_at < $3 THEN 1 END) AS opened, \
             COUNT(CASE WHEN closed_at >= $2 AND closed_at < $3 THEN 1 END) AS closed, \
             COUNT(CASE WHEN raised_at < $3 AND (closed_at IS NULL OR closed_at >= $3) THEN 1 END) AS open_at_end \
             FROM incidents WHERE ($1 IS NULL OR school = $1)",
        )
        .bind(school)
        .bind(ms(from))
        .bind(ms(to))
        .fetch_one(self.pool())
        .await?;
        let kinds = sqlx::query(
            "SELECT kind, COUNT(*) AS n FROM incidents WHERE ($1 IS NULL OR school = $1) AND raised_at >= $2 AND raised_at < $3 GROUP BY kind ORDER BY kind",
        )
        .bind(school)
        .bind(ms(from))
        .bind(ms(to))
        .fetch_all(self.pool())
        .await?;
        let by_kind = counts(&kinds)?.into_iter().map(|(k, n)| (crate::incidents::Kind::parse(&k).map_or(k, |kind| kind.label().to_string()), n)).collect();
        Ok(IncidentFacts { opened: r.try_get("opened")?, closed: r.try_get("closed")?, open_at_end: r.try_get("open_at_end")?, by_kind })
    }

    /// Coverage of every acceptable-use agreement version in force at
    /// `school` (or every school): how many should accept it, how many have.
    pub async fn report_agreements(&self, school: Option<&str>) -> Result<Vec<AgreementFacts>, StoreError> {
        let schools: Vec<String> = match school {
            Some(s) => vec![s.to_string()],
            None => self.schools().await?.into_iter().map(|s| s.id).collect(),
        };
        let mut out = Vec::new();
        for s in schools {
            for a in self.agreements(&s).await?.into_iter().filter(crate::agreements::Agreement::current) {
                let c = self.agreement_coverage(&a).await?;
                out.push(AgreementFacts {
                    school: s.clone(),
                    audience: a.audience.label().to_string(),
                    version: a.version.clone(),
                    expected: i64::try_from(c.expected).unwrap_or(i64::MAX),
                    signed: i64::try_from(c.signed).unwrap_or(i64::MAX),
                });
            }
        }
        Ok(out)
    }

    /// Queues a report e-mail to each of `to` (name, e-mail) for `school`'s
    /// `period`, in one transaction with its audit row; one already queued
    /// for the same kind, school, period and address is left as it is.
    /// Returns how many were queued now.
    #[allow(clippy::too_many_arguments)]
    pub async fn queue_report_mail(
        &self,
        kind: &str,
        school: &str,
        period: &str,
        to: &[(String, String)],
        subject: &str,
        body: &str,
        by: &str,
        now: Timestamp,
    ) -> Result<usize, StoreError> {
        let mut tx = self.begin().await?;
        let mut queued = 0;
        for (name, target) in to {
            let mut raw = [0u8; 16];
            getrandom::fill(&mut raw).map_err(|e| StoreError::Invalid(format!("no randomness for a notice id: {e}")))?;
            let notice_id = format!("haven-{kind}-{}", raw.iter().map(|b| format!("{b:02x}")).collect::<String>());
            let done = sqlx::query(
                "INSERT INTO report_mail (kind, school, period, name, target, subject, body, notice_id, created_at, due_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) ON CONFLICT (kind, school, period, target) DO NOTHING",
            )
            .bind(kind)
            .bind(school)
            .bind(period)
            .bind(name)
            .bind(target)
            .bind(subject)
            .bind(body)
            .bind(&notice_id)
            .bind(ms(now))
            .execute(tx.conn())
            .await?
            .rows_affected();
            queued += usize::try_from(done).unwrap_or(0);
        }
        crate::audit::append(
            tx.conn(),
            now,
            by,
            &format!("report.{kind}.queued"),
            &format!("school:{school}"),
            &format!("{period}: {queued} of {} recipients", to.len()),
        )
        .await?;
        tx.commit().await?;
        Ok(queued)
    }

    /// Report e-mails due by `now`, not sent or given up.
    pub async fn report_mail_due(&self, now: Timestamp) -> Result<Vec<ReportMail>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, kind, school, period, name, target, subject, body, notice_id, attempts, sent_at FROM report_mail \
             WHERE sent_at IS NULL AND gave_up_at IS NULL AND due_at <= $1 ORDER BY due_at, id",
        )
        .bind(ms(now))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(mail).collect()
    }

    /// Every report e-mail of a school's period (for `haven report digest` and tests).
    pub async fn report_mail_for(&self, kind: &str, school: &str, period: &str) -> Result<Vec<ReportMail>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, kind, school, period, name, target, subject, body, notice_id, attempts, sent_at FROM report_mail \
             WHERE kind = $1 AND school = $2 AND period = $3 ORDER BY target",
        )
        .bind(kind)
        .bind(school)
        .bind(period)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(mail).collect()
    }

    /// Records a try: sent, or failed (retried at `retry_at`, or given up when `give_up`).
    pub async fn report_mail_result(&self, id: i64, result: Result<(), &str>, now: Timestamp, retry_at: Timestamp, give_up: bool) -> Result<(), StoreError> {
        match result {
            Ok(()) => {
                sqlx::query("UPDATE report_mail SET sent_at = $2, attempts = attempts + 1, last_error = NULL WHERE id = $1")
                    .bind(id)
                    .bind(ms(now))
                    .execute(self.pool())
                    .await?;
            }
            Err(why) => {
                let why: String = why.chars().take(500).collect();
                sqlx::query("UPDATE report_mail SET attempts = attempts + 1, due_at = $2, last_error = $3, gave_up_at = $4 WHERE id = $1")
                    .bind(id)
                    .bind(ms(retry_at))
                    .bind(why)
                    .bind(give_up.then(|| ms(now)))
                    .execute(self.pool())
                    .await?;
            }
        }
        Ok(())
    }
}

fn mail(r: &sqlx::any::AnyRow) -> Result<ReportMail, StoreError> {
    Ok(ReportMail {
        id: r.try_get("id")?,
        kind: r.try_get("kind")?,
        school: r.try_get("school")?,
        period: r.try_get("period")?,
        name: r.try_get("name")?,
        target: r.try_get("target")?,
        subject: r.try_get("subject")?,
        body: r.try_get("body")?,
        notice_id: r.try_get("notice_id")?,
        attempts: r.try_get("attempts")?,
        sent_at: r.try_get::<Option<i64>, _>("sent_at")?.map(ts),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Role;
    use crate::alerts::Verdict;
    use crate::alerts::{NewAlert, NewOccurrence};
    use crate::changes::NewChange;
    use crate::checks::{Outcome, Run};
    use crate::incidents::{Kind, NewIncident};

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn alert(school: &str, category: &str, level: u8, at: &str, due_hours: Option<i64>) -> NewAlert {
        let at = t(at);
        NewAlert {
            school: school.into(),
            person: "pupil.one".into(),
            category: category.into(),
            level,
            due_at: due_hours.map(|h| at + jiff::SignedDuration::from_hours(h)),
            first: NewOccurrence {
                at,
                level,
                source: "typed".into(),
                excerpt: "words a pupil typed".into(),
                url: None,
                spans: "[]".into(),
                explanation: String::new(),
                screenshot: None,
                screenshot_withheld: false,
                repeats: 1,
            },
        }
    }

    #[tokio::test]
    async fn a_periods_facts_and_the_digest_outbox() {
        for (store, _dir) in crate::testing::stores().await {
            store.upsert_school("s1", "School One", false).await.unwrap();
            store.upsert_school("s2", "School Two", false).await.unwrap();
            let (dsl, _) = store.add_account("dsl@s1.example", Role::Dsl, Some("s1"), "a long enough password", t("2026-09-01T00:00:00Z")).await.unwrap();
            let a = store.insert_alert(&alert("s1", "Grooming", 4, "2026-09-08T09:00:00Z", Some(6))).await.unwrap();
            let b = store.insert_alert(&alert("s1", "Grooming", 4, "2026-09-08T10:00:00Z", Some(6))).await.unwrap();
            store.insert_alert(&alert("s1", "Oversharer", 2, "2026-09-15T10:00:00Z", Some(6))).await.unwrap();
            store.insert_alert(&alert("s2", "Oversharer", 2, "2026-09-15T10:00:00Z", None)).await.unwrap();
            store.insert_alert(&alert("s1", "Oversharer", 2, "2026-08-20T10:00:00Z", None)).await.unwrap();
            store.act_on_alert(&dsl, a, "acknowledged", "", t("2026-09-08T10:00:00Z")).await.unwrap();
            store.act_on_alert(&dsl, b, "acknowledged", "", t("2026-09-09T10:00:00Z")).await.unwrap();
            store.close_alert(&dsl, a, "spoken to", Verdict::RealConcern, t("2026-09-10T10:00:00Z")).await.unwrap();

            let (from, to) = (t("2026-09-07T00:00:00Z"), t("2026-09-21T00:00:00Z"));
            let facts = store.report_alerts(Some("s1"), from, to).await.unwrap();
            assert_eq!(facts.len(), 3, "school one's, in the period");
            assert_eq!(facts[0].first_action, Some(t("2026-09-08T10:00:00Z")));
            assert_eq!(facts[0].closed_at, Some(t("2026-09-10T10:00:00Z")));
            assert_eq!(facts[1].closed_at, None);
            assert_eq!(store.report_alerts(None, from, to).await.unwrap().len(), 4, "trust-wide");
            let closed = store.report_closed_alerts(Some("s1"), t("2026-09-07T00:00:00Z"), t("2026-09-14T00:00:00Z")).await.unwrap();
            assert_eq!(closed.len(), 1);
            assert!(store.report_closed_alerts(Some("s1"), t("2026-09-14T00:00:00Z"), to).await.unwrap().is_empty());
            // Open at the end of the first week: b (acknowledged, not closed) and the August one.
            let open = store.report_open_alerts(Some("s1"), t("2026-09-14T00:00:00Z")).await.unwrap();
            assert_eq!(open.len(), 2);
            // At the moment a was closed it was still open just before.
            assert_eq!(store.report_open_alerts(Some("s1"), t("2026-09-10T09:00:00Z")).await.unwrap().len(), 3);

            let run = Run {
                run: "r1".into(),
                at: t("2026-09-09T08:00:00Z"),
                who: "it".into(),
                origin: "command".into(),
                school: "s1".into(),
                group: "g".into(),
                device: None,
            };
            let outcome =
                |ok: bool| Outcome { probe: "p".into(), path: "dns".into(), target: "x".into(), expected: "blocked".into(), got: "blocked".into(), ok };
            let ids = store.add_filter_checks(&run, &[outcome(true), outcome(false), outcome(true)]).await.unwrap();
            store.follow_up_filter_check(ids[1], "fixed", "account:1", t("2026-09-09T09:00:00Z")).await.unwrap();
            let c = store.report_checks(Some("s1"), from, to).await.unwrap();
            assert_eq!((c.runs, c.probes, c.failed, c.followed_up, c.last), (1, 3, 1, 1, Some(t("2026-09-09T08:00:00Z"))));
            assert_eq!(store.report_checks(Some("s2"), from, to).await.unwrap().probes, 0);

            let change = NewChange {
                school: "s1".into(),
                kind: "change".into(),
                scope: "school".into(),
                verdict: Some("allow".into()),
                site: Some("example.org".into()),
                reason: "lesson".into(),
                starts_at: t("2026-09-08T00:00:00Z"),
                ..Default::default()
            };
            store.add_filter_change(&change, "in-force", "account:1", t("2026-09-08T00:00:00Z")).await.unwrap();
            let ch = store.report_changes(Some("s1"), from, to).await.unwrap();
            assert_eq!((ch.by_kind.clone(), ch.by_state.clone(), ch.in_force_at_end), (vec![("change".into(), 1)], vec![("in-force".into(), 1)], 1));

            let head = NewIncident { school: "s1", person: None, alert: Some(a), title: "t", kind: Kind::Safeguarding, about_head: false };
            store.raise_incident(&dsl, &head, t("2026-09-11T09:00:00Z")).await.unwrap().unwrap();
            let i = store.report_incidents(Some("s1"), from, to).await.unwrap();
            assert_eq!((i.opened, i.closed, i.open_at_end, i.by_kind.len()), (1, 0, 1, 1));

            // The digest outbox: once per school, week and address.
            let to_list = vec![("Sam".to_string(), "dsl@s1.example".to_string())];
            let now = t("2026-09-14T07:00:00Z");
            assert_eq!(store.queue_report_mail("digest", "s1", "2026-09-07", &to_list, "subject", "body", "haven", now).await.unwrap(), 1);
            assert_eq!(store.queue_report_mail("digest", "s1", "2026-09-07", &to_list, "subject", "body", "haven", now).await.unwrap(), 0);
            let due = store.report_mail_due(now).await.unwrap();
            assert_eq!(due.len(), 1);
            store.report_mail_result(due[0].id, Err("relay down"), now, now + jiff::SignedDuration::from_mins(1), false).await.unwrap();
            assert!(store.report_mail_due(now).await.unwrap().is_empty(), "retried later");
            let later = now + jiff::SignedDuration::from_mins(2);
            let again = store.report_mail_due(later).await.unwrap();
            assert_eq!(again[0].attempts, 1);
            store.report_mail_result(again[0].id, Ok(()), later, later, false).await.unwrap();
            let kept = store.report_mail_for("digest", "s1", "2026-09-07").await.unwrap();
            assert_eq!(kept[0].sent_at, Some(later));
            assert!(store.report_mail_due(later + jiff::SignedDuration::from_hours(1)).await.unwrap().is_empty());
            store.close().await;
        }
    }
}
