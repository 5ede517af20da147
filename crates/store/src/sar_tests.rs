//! Tests: a subject access read holds every record of the person and
//! nothing of anyone else, checked against the database, on SQLite and
//! (with `HAVEN_TEST_POSTGRES`) PostgreSQL.

use std::collections::BTreeSet;

use jiff::Timestamp;

use super::*;
use crate::Role;
use crate::alerts::{NewAlert, NewOccurrence, Verdict};
use crate::changes::NewChange;
use crate::directory::{PersonKind, PersonRow};
use crate::incidents::{Closing, Kind, NewEvidence, NewIncident};
use crate::reports::NewReport;
use crate::testing::stores;

fn alert(person: &str, words: &str, at: Timestamp) -> NewAlert {
    NewAlert {
        school: "oak".into(),
        person: person.into(),
        category: "Bullying".into(),
        level: 3,
        due_at: Some(at),
        first: NewOccurrence {
            at,
            level: 3,
            source: "chat".into(),
            excerpt: words.into(),
            url: None,
            explanation: "threat".into(),
            spans: "[]".into(),
            screenshot: Some(format!("{:0>64}", words.len())),
            screenshot_withheld: false,
            repeats: 1,
        },
    }
}

/// The ids of `sql`'s rows.
async fn ids_of(s: &Store, sql: &str) -> BTreeSet<i64> {
    sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.to_string())).fetch_all(s.pool()).await.unwrap().into_iter().collect()
}

fn ids_in(r: &SubjectRecord, kind: &str) -> BTreeSet<i64> {
    r.rows(kind).iter().filter_map(|v| v.get("id").and_then(Value::as_i64)).collect()
}

#[tokio::test]
async fn a_subject_access_read_holds_every_record_of_the_person_and_nothing_of_anyone_else() {
    let t0: Timestamp = "2026-10-01T09:00:00Z".parse().unwrap();
    for (s, _dir) in stores().await {
        s.upsert_school("oak", "Oak", false).await.unwrap();
        let (dsl, _) = s.add_account("dsl@oak.example", Role::Dsl, Some("oak"), "a long password", t0).await.unwrap();
        let (sam, _) = s.add_account("sam.teacher@oak.example", Role::Teacher, Some("oak"), "a long password", t0).await.unwrap();
        let row = |login: &str| PersonRow {
            school: "oak".into(),
            login: login.into(),
            display_name: Some(format!("{login} name")),
            year: Some("Year 9".into()),
            form: None,
            classes: Vec::new(),
            kind: PersonKind::Pupil,
        };
        s.sync_people(Some("oak"), &[row("amy"), row("ben")], t0).await.unwrap();
        for (person, words) in [("amy", "amy words one"), ("Amy", "amy words two"), ("ben", "ben private words"), ("ben", "ben more words")] {
            let id = s.insert_alert(&alert(person, words, t0)).await.unwrap();
            assert!(s.act_on_alert(&dsl, id, "acknowledged", &format!("note on {words}"), t0).await.unwrap());
        }
        let amy_alert = *ids_of(&s, "SELECT id FROM alerts WHERE LOWER(person) = 'amy'").await.first().unwrap();
        let ben_alert = *ids_of(&s, "SELECT id FROM alerts WHERE person = 'ben'").await.first().unwrap();
        assert!(s.close_alert(&dsl, amy_alert, "closed it", Verdict::RealConcern, t0).await.unwrap());
        let raise = |person: &'static str, alert: Option<i64>, title: &'static str| NewIncident {
            school: "oak",
            person: Some(person),
            alert,
            title,
            kind: Kind::Safeguarding,
            about_head: false,
        };
        let amy_inc = s.raise_incident(&dsl, &raise("amy", Some(amy_alert), "amy incident"), t0).await.unwrap().unwrap();
        let ben_inc = s.raise_incident(&dsl, &raise("ben", Some(ben_alert), "ben incident"), t0).await.unwrap().unwrap();
        for (id, who) in [(amy_inc, "amy"), (ben_inc, "ben")] {
            assert!(s.incident_action(&dsl, id, &format!("spoke to {who}'s parents"), t0).await.unwrap());
            let sha = format!("{id:0>64}");
            let e = NewEvidence { filename: &format!("{who}.png"), sha256: &sha, size: 10, note: "screenshot" };
            assert!(s.add_evidence(&dsl, id, &e, t0).await.unwrap());
        }
        let c = Closing { outcome: "supported", feedback: "", lessons: "", sanction: "" };
        assert!(s.close_incident(&dsl, amy_inc, &c, t0).await.unwrap());
        // Ben's incident links Amy: it comes as "linked", its files withheld.
        assert!(s.link_incident(&dsl, ben_inc, "person", "oak/amy", t0).await.unwrap());
        for (person, words) in [("amy", "report about amy"), ("ben", "report about ben")] {
            let r = NewReport {
                kind: "public".into(),
                school: Some("oak".into()),
                person: Some(person.into()),
                at: t0,
                reference: None,
                url: None,
                categories: Vec::new(),
                rule: None,
                words: words.into(),
                contact: None,
            };
            s.insert_report(&r).await.unwrap();
        }
        for login in ["amy", "ben"] {
            let c = NewChange {
                school: "oak".into(),
                kind: "change".into(),
                scope: "user".into(),
                scope_id: Some(login.into()),
                verdict: Some("allow".into()),
                site: Some(format!("{login}.example")),
                category: None,
                reason: format!("for {login}"),
                starts_at: t0,
                until: None,
            };
            s.add_filter_change(&c, "in-force", &format!("account:{}", dsl.id), t0).await.unwrap();
        }

        // Requests they made: a pupil's from the block page, a teacher's by e-mail.
        let ask = |by: &str| NewChange {
            school: "oak".into(),
            kind: "pupil".into(),
            scope: "school".into(),
            scope_id: None,
            verdict: Some("allow".into()),
            site: Some(format!("asked-by-{}.example", by.split('@').next().unwrap().replace(' ', "-"))),
            category: None,
            reason: "should be allowed".into(),
            starts_at: t0,
            until: None,
        };
        let amy_asked = s.add_filter_change(&ask("pupil amy"), "requested", "pupil amy", t0).await.unwrap();
        let ben_asked = s.add_filter_change(&ask("pupil ben"), "requested", "pupil ben", t0).await.unwrap();
        let sam_asked = s.add_filter_change(&ask("sam.teacher@oak.example"), "requested", "sam.teacher@oak.example", t0).await.unwrap();

        let r = s.subject_access("AMY", None, "admin-cli", t0).await.unwrap();
        assert_eq!(r.person, "amy");
        // Every record of hers, checked against the database.
        assert_eq!(ids_in(&r, "alerts"), ids_of(&s, "SELECT id FROM alerts WHERE LOWER(person) = 'amy'").await);
        assert_eq!(ids_in(&r, "alerts").len(), 2);
        assert_eq!(ids_in(&r, "occurrences"), ids_of(&s, "SELECT o.id FROM occurrences o JOIN alerts a ON a.id = o.alert WHERE LOWER(a.person) = 'amy'").await);
        assert_eq!(
            ids_in(&r, "alert_actions"),
            ids_of(&s, "SELECT x.id FROM alert_actions x JOIN alerts a ON a.id = x.alert WHERE LOWER(a.person) = 'amy'").await
        );
        assert_eq!(ids_in(&r, "incidents"), [amy_inc, ben_inc].into_iter().collect());
        let concerning: Vec<(i64, String)> =
            r.rows("incidents").iter().map(|i| (i["id"].as_i64().unwrap(), i["concerning"].as_str().unwrap().to_string())).collect();
        assert!(concerning.contains(&(amy_inc, "subject".into())) && concerning.contains(&(ben_inc, "linked".into())), "{concerning:?}");
        assert_eq!(ids_in(&r, "reports"), ids_of(&s, "SELECT id FROM reports WHERE person = 'amy'").await);
        let mut changes = ids_of(&s, "SELECT id FROM filter_changes WHERE scope_id = 'amy'").await;
        changes.insert(amy_asked);
        assert_eq!(ids_in(&r, "filter_changes"), changes);
        assert!(!ids_in(&r, "filter_changes").contains(&ben_asked));
        assert_eq!(r.rows("directory").len(), 1);
        assert!(r.rows("accounts").is_empty(), "a pupil has no account");
        // Her evidence file goes; Ben's (on the incident that links her) is withheld.
        let amy_file = r.files.iter().find(|f| f.sha256 == format!("{amy_inc:0>64}")).unwrap();
        assert_eq!(amy_file.withheld, None);
        let ben_file = r.files.iter().find(|f| f.sha256 == format!("{ben_inc:0>64}")).unwrap();
        assert!(ben_file.withheld.is_some());
        // Nothing of Ben's own records: his alerts, their words, his report, his change.
        let all = serde_json::to_string(&r.kinds).unwrap();
        for theirs in ["ben private words", "ben more words", "report about ben", "ben.example", "note on ben"] {
            assert!(!all.contains(theirs), "{theirs} leaked into Amy's export");
        }
        let bens: BTreeSet<i64> = ids_of(&s, "SELECT id FROM alerts WHERE person = 'ben'").await;
        assert!(ids_in(&r, "alerts").is_disjoint(&bens));
        // Secrets never come: no password hash or session token.
        let staff = s.subject_access("sam.teacher", None, "admin-cli", t0).await.unwrap();
        assert_eq!(ids_in(&staff, "accounts"), [sam.id].into_iter().collect());
        assert_eq!(ids_in(&staff, "filter_changes"), [sam_asked].into_iter().collect(), "the requests they made");
        let staff_json = serde_json::to_string(&staff.kinds).unwrap();
        assert!(!staff_json.contains("password_hash") && !staff_json.contains("argon2") && !staff_json.contains("id_hash"));
        // Audited: who exported whose, counts only.
        let audit = s.audit_search(Some("person:*/amy"), None, 10).await.unwrap();
        let row = audit.iter().find(|e| e.action == "sar.export").expect("the export is audited");
        assert_eq!(row.actor, "admin-cli");
        assert!(row.detail.contains("alerts=2") && !row.detail.contains("words"), "{}", row.detail);
        // The audit rows of who read her record come with it.
        let again = s.subject_access("amy", Some("oak"), "admin-cli", t0).await.unwrap();
        assert!(again.rows("audit").iter().any(|a| a["action"] == "sar.export"));
        assert!(again.rows("audit").iter().all(|a| !a["object"].as_str().unwrap_or_default().contains("ben")));
        s.close().await;
    }
}
