//! Tests: the retention job with the clock as a parameter, on SQLite and (with
//! `HAVEN_TEST_POSTGRES`) PostgreSQL: records just inside their period are
//! kept and just outside are deleted or anonymised, a legal hold keeps an
//! incident with its alert, evidence and audit rows, and each run is recorded
//! with counts and an audit row.

use jiff::{SignedDuration, Timestamp};
use sqlx::Row as _;

use super::*;
use crate::alerts::{NewAlert, NewOccurrence, Verdict};
use crate::incidents::{Closing, Kind, NewEvidence, NewIncident};
use crate::reports::NewReport;
use crate::testing::stores;

const PERIODS: Periods = Periods { logs: 10, events: 10, alerts: 30, incidents: 100, evidence: 100, audit: 200 };

fn days(n: i64) -> SignedDuration {
    SignedDuration::from_hours(24 * n)
}

fn alert(person: &str, words: &str, at: Timestamp) -> NewAlert {
    NewAlert {
        school: "oak".into(),
        person: person.into(),
        category: "Vulnerable person".into(),
        level: 3,
        due_at: Some(at),
        first: NewOccurrence {
            at,
            level: 3,
            source: "chat".into(),
            excerpt: words.into(),
            url: Some("https://example.org/chat".into()),
            explanation: "why".into(),
            spans: "[]".into(),
            screenshot: None,
            screenshot_withheld: false,
            repeats: 1,
        },
    }
}

/// An alert's person and first words, as stored; `None` when it is gone.
async fn excerpt(s: &Store, id: i64) -> Option<(String, String)> {
    let r = sqlx::query("SELECT person, excerpt FROM alerts WHERE id = $1").bind(id).fetch_optional(s.pool()).await.unwrap()?;
    Some((r.try_get("person").unwrap(), r.try_get("excerpt").unwrap()))
}

async fn count(s: &Store, sql: &'static str, id: i64) -> i64 {
    sqlx::query_scalar(sql).bind(id).fetch_one(s.pool()).await.unwrap()
}

#[test]
fn the_pure_rules_keep_just_inside_and_take_just_outside() {
    let now: Timestamp = "2026-06-01T00:00:00Z".parse().unwrap();
    let inside = now - days(30);
    let outside = now - days(30) - SignedDuration::from_millis(1);
    let f = |closed: Timestamp, real_concern: bool, on_incident: bool| AlertFacts { closed_at: Some(closed), real_concern, on_incident, anonymised: false };
    assert_eq!(alert_fate(&PERIODS, &f(inside, false, false), now), Fate::Keep);
    assert_eq!(alert_fate(&PERIODS, &f(outside, false, false), now), Fate::Anonymise);
    assert_eq!(alert_fate(&PERIODS, &f(outside, false, true), now), Fate::Keep, "goes with its incident");
    assert_eq!(alert_fate(&PERIODS, &f(outside, true, false), now), Fate::Keep, "a real concern is kept for the incidents period");
    assert_eq!(alert_fate(&PERIODS, &f(now - days(101), true, false), now), Fate::Delete);
    assert_eq!(alert_fate(&PERIODS, &AlertFacts { closed_at: None, real_concern: false, on_incident: false, anonymised: false }, now), Fate::Keep);
    let old = IncidentFacts { closed_at: Some(now - days(100) - SignedDuration::from_millis(1)), held: false };
    assert_eq!(incident_fate(&PERIODS, &old, now), Fate::Delete);
    assert_eq!(incident_fate(&PERIODS, &IncidentFacts { held: true, ..old }, now), Fate::Keep);
    assert_eq!(incident_fate(&PERIODS, &IncidentFacts { closed_at: Some(now - days(100)), held: false }, now), Fate::Keep);
    assert_eq!(incident_fate(&PERIODS, &IncidentFacts { closed_at: None, held: false }, now), Fate::Keep);
    let shorter = Periods { evidence: 50, ..PERIODS };
    assert_eq!(evidence_fate(&shorter, &IncidentFacts { closed_at: Some(now - days(60)), held: false }, now), Fate::Delete);
    assert_eq!(evidence_fate(&shorter, &IncidentFacts { closed_at: Some(now - days(60)), held: true }, now), Fate::Keep);
    let day = |s: &str| s.parse::<jiff::civil::Date>().unwrap();
    // A day's lines may run a day later in UTC than the name: the whole
    // day, read generously, must be past the period.
    assert_eq!(log_day_fate(&PERIODS, day("2026-05-21"), now), Fate::Keep);
    assert_eq!(log_day_fate(&PERIODS, day("2026-05-20"), now), Fate::Keep, "exactly 10 days after its generous end");
    assert_eq!(log_day_fate(&PERIODS, day("2026-05-19"), now), Fate::Delete);
}

#[tokio::test]
async fn the_job_deletes_and_anonymises_by_the_clock_respects_a_hold_and_records_what_it_did() {
    let now: Timestamp = "2026-06-01T12:00:00Z".parse().unwrap();
    let long_ago = now - days(400);
    let minute = SignedDuration::from_mins(1);
    for (s, _dir) in stores().await {
        s.upsert_school("oak", "Oak", false).await.unwrap();
        let (dsl, _) = s.add_account("dsl@oak.example", Role::Dsl, Some("oak"), "a long password", long_ago).await.unwrap();
        let (teacher, _) = s.add_account("t@oak.example", Role::Teacher, Some("oak"), "a long password", long_ago).await.unwrap();

        // Alerts closed as not a concern just inside and just outside 30 days.
        let a_in = s.insert_alert(&alert("amy", "inside words", long_ago)).await.unwrap();
        let a_out = s.insert_alert(&alert("amy", "outside words", long_ago)).await.unwrap();
        assert!(s.close_alert(&dsl, a_in, "nothing in it", Verdict::NotAConcern, now - days(30) + minute).await.unwrap());
        assert!(s.close_alert(&dsl, a_out, "nothing in it", Verdict::NotAConcern, now - days(30) - minute).await.unwrap());
        // Real concerns: kept for the incidents period, then deleted.
        let r_in = s.insert_alert(&alert("ben", "real inside", long_ago)).await.unwrap();
        let r_out = s.insert_alert(&alert("ben", "real outside", long_ago)).await.unwrap();
        assert!(s.close_alert(&dsl, r_in, "spoke to him", Verdict::RealConcern, now - days(100) + minute).await.unwrap());
        assert!(s.close_alert(&dsl, r_out, "spoke to him", Verdict::RealConcern, now - days(100) - minute).await.unwrap());
        // An old alert still open is kept.
        let open = s.insert_alert(&alert("cat", "still open", long_ago)).await.unwrap();

        // Incidents closed just outside 100 days: one held, one not; one just inside.
        let raise = |person: &'static str, alert: i64, title: &'static str| {
            let s = s.clone();
            let dsl = dsl.clone();
            async move {
                let n = NewIncident { school: "oak", person: Some(person), alert: Some(alert), title, kind: Kind::Safeguarding, about_head: false };
                s.raise_incident(&dsl, &n, long_ago).await.unwrap().unwrap()
            }
        };
        let mut incidents = Vec::new();
        for (person, title, closed) in
            [("dan", "to go", now - days(100) - minute), ("eve", "held", now - days(100) - minute), ("fay", "kept", now - days(100) + minute)]
        {
            let on = s.insert_alert(&alert(person, "incident words", long_ago)).await.unwrap();
            assert!(s.close_alert(&dsl, on, "raised an incident", Verdict::NotAConcern, long_ago).await.unwrap());
            let id = raise(person, on, title).await;
            let e = NewEvidence { filename: "chat.png", sha256: &format!("{:064x}", id), size: 3, note: "screenshot" };
            assert!(s.add_evidence(&dsl, id, &e, long_ago).await.unwrap());
            let c = Closing { outcome: "supported", feedback: "", lessons: "", sanction: "" };
            assert!(s.close_incident(&dsl, id, &c, closed).await.unwrap());
            incidents.push((id, on));
        }
        let [(gone, gone_alert), (held, held_alert), (kept, kept_alert)] = incidents[..] else { unreachable!() };

        // A legal hold needs a reason and a safeguarding lead.
        assert!(s.set_legal_hold(&dsl, held, true, "  ", now).await.is_err());
        assert!(!s.set_legal_hold(&teacher, held, true, "police asked", now).await.unwrap());
        assert!(s.set_legal_hold(&dsl, held, true, "police investigation", now - days(1)).await.unwrap());
        let (_, hold) = s.legal_hold(&dsl, held, now).await.unwrap().unwrap();
        assert!(hold.held);
        assert_eq!(hold.reason.as_deref(), Some("police investigation"));

        // A report with no alert, old; an idempotency key, old and new.
        let report = NewReport {
            kind: "public".into(),
            school: Some("oak".into()),
            person: Some("gus".into()),
            at: now - days(31),
            reference: None,
            url: Some("https://example.org/x".into()),
            categories: Vec::new(),
            rule: None,
            words: "worried about gus".into(),
            contact: Some("parent@example.org".into()),
        };
        let report = s.insert_report(&report).await.unwrap();
        let mut tx = s.begin().await.unwrap();
        tx.remember("device:1", "old", now - days(11), "{}").await.unwrap();
        tx.remember("device:1", "new", now - days(9), "{}").await.unwrap();
        tx.commit().await.unwrap();
        // Audit rows: the raise of every incident was written long ago.
        s.audit(now - days(199), "admin-cli", "test.recent", "thing:1", "").await.unwrap();

        let run = s.apply_retention(&PERIODS, now).await.unwrap();
        let c = &run.counts;
        assert_eq!(c.alerts_anonymised, 1, "{c:?}");
        assert_eq!(c.incidents_deleted, 1, "{c:?}");
        assert_eq!(c.alerts_deleted, 2, "the real concern outside and the deleted incident's alert: {c:?}");
        assert_eq!(c.evidence_deleted, 1, "{c:?}");
        assert_eq!(c.reports_anonymised, 1, "{c:?}");
        assert_eq!(c.held_kept, 1, "{c:?}");
        assert!(c.events_deleted >= 1, "{c:?}");
        assert!(c.audit_deleted > 0, "{c:?}");

        // Checked against the database.
        assert_eq!(excerpt(&s, a_in).await, Some(("amy".into(), "inside words".into())), "just inside: untouched");
        assert_eq!(excerpt(&s, a_out).await, Some((String::new(), String::new())), "just outside: anonymised");
        assert_eq!(excerpt(&s, r_in).await.map(|r| r.1), Some("real inside".into()));
        assert_eq!(excerpt(&s, r_out).await, None);
        assert_eq!(excerpt(&s, open).await.map(|r| r.1), Some("still open".into()));
        assert_eq!(excerpt(&s, gone_alert).await, None, "went with its incident");
        assert_eq!(excerpt(&s, held_alert).await.map(|r| r.1), Some("incident words".into()), "held with its incident");
        assert_eq!(excerpt(&s, kept_alert).await.map(|r| r.1), Some("incident words".into()));
        assert_eq!(count(&s, "SELECT COUNT(*) FROM incidents WHERE id = $1", gone).await, 0);
        assert_eq!(count(&s, "SELECT COUNT(*) FROM incident_actions WHERE incident = $1", gone).await, 0);
        assert_eq!(count(&s, "SELECT COUNT(*) FROM evidence WHERE incident = $1", gone).await, 0);
        assert_eq!(count(&s, "SELECT COUNT(*) FROM incidents WHERE id = $1", held).await, 1);
        assert_eq!(count(&s, "SELECT COUNT(*) FROM evidence WHERE incident = $1", held).await, 1);
        assert_eq!(count(&s, "SELECT COUNT(*) FROM incidents WHERE id = $1", kept).await, 1);
        assert_eq!(count(&s, "SELECT COUNT(*) FROM occurrences WHERE alert = $1 AND excerpt = ''", a_out).await, 1);
        assert_eq!(count(&s, "SELECT COUNT(*) FROM alert_actions WHERE alert = $1 AND note = ''", a_out).await, 1);
        assert_eq!(count(&s, "SELECT COUNT(*) FROM reports WHERE id = $1 AND person IS NULL AND words = '' AND contact IS NULL", report).await, 1);
        assert_eq!(count(&s, "SELECT COUNT(*) FROM ingest_keys WHERE $1 = $1 AND key = 'old'", 0).await, 0);
        assert_eq!(count(&s, "SELECT COUNT(*) FROM ingest_keys WHERE $1 = $1 AND key = 'new'", 0).await, 1);
        // The held incident's audit rows stay; the others' old rows went.
        assert!(!s.audit_search(Some(&format!("incident:{held}")), None, 100).await.unwrap().iter().all(|e| e.action != "incident.raise"));
        assert!(s.audit_search(Some(&format!("incident:{kept}")), None, 100).await.unwrap().iter().all(|e| e.action != "incident.raise"));
        assert_eq!(s.audit_search(Some("thing:1"), None, 10).await.unwrap().len(), 1, "inside the audit period");

        // The run is recorded, with its audit row: counts, never content.
        let runs = s.retention_runs(10).await.unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].counts, run.counts);
        assert_eq!(runs[0].periods, PERIODS);
        s.finish_retention_run(run.id, 3, 2, now).await.unwrap();
        let runs = s.retention_runs(10).await.unwrap();
        assert_eq!((runs[0].counts.log_files_deleted, runs[0].counts.evidence_files_deleted), (3, 2));
        assert!(runs[0].finished_at.is_some());
        let audit = s.audit_search(Some(&format!("retention:{}", run.id)), None, 10).await.unwrap();
        assert!(audit.iter().any(|e| e.action == "retention.run" && e.detail.contains("\"incidents_deleted\":1")));
        assert!(audit.iter().any(|e| e.action == "retention.files"));
        assert!(audit.iter().all(|e| !e.detail.contains("words")));

        // The evidence files still referred to: the held and kept incidents'.
        let used = s.evidence_in_use().await.unwrap();
        assert!(used.contains(&format!("{held:064x}")) && used.contains(&format!("{kept:064x}")));
        assert!(!used.contains(&format!("{gone:064x}")));

        // Running again changes nothing; clearing the hold lets it go.
        let again = s.apply_retention(&PERIODS, now).await.unwrap();
        assert_eq!((again.counts.alerts_anonymised, again.counts.incidents_deleted, again.counts.held_kept), (0, 0, 1));
        assert!(s.set_legal_hold(&dsl, held, false, "investigation over", now).await.unwrap());
        let last = s.apply_retention(&PERIODS, now + minute).await.unwrap();
        assert_eq!((last.counts.incidents_deleted, last.counts.alerts_deleted, last.counts.held_kept), (1, 1, 0));
        assert_eq!(count(&s, "SELECT COUNT(*) FROM incidents WHERE id = $1", held).await, 0);
        assert_eq!(s.retention_runs(10).await.unwrap().len(), 3);
        s.close().await;
    }
}

#[test]
fn both_migrations_0017_say_the_same() {
    let strip = |s: &str| -> Vec<String> {
        s.lines()
            .map(|l| l.split("--").next().unwrap_or("").trim().to_string())
            .filter(|l| !l.is_empty())
            .map(|l| l.replace("INTEGER PRIMARY KEY AUTOINCREMENT", "ID").replace("BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "ID"))
            .collect()
    };
    assert_eq!(strip(include_str!("../migrations/sqlite/0017_retention.sql")), strip(include_str!("../migrations/postgres/0017_retention.sql")));
}
