//! The data map and legal hold over real HTTP on loopback, on every back
//! end: the map shows the configured periods from the retention table with
//! the job's runs, to the roles that answer for the DPIA; a DSL puts an
//! incident under legal hold with a reason (CSRF-checked, audited) and the
//! retention job then keeps it.

mod common;

use common::{csrf_of, http, sign_in, sign_in_with};
use haven_config::retention::{Class, Retention};
use haven_store::Role;
use haven_store::incidents::{Closing, Kind, NewIncident};
use haven_store::retention::Periods;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_map_shows_the_periods_and_a_dsl_holds_an_incident() {
    for (store, _dir) in haven_store::testing::stores().await {
        store.upsert_school("oak", "Oak Primary", false).await.unwrap();
        let now = jiff::Timestamp::now();
        let (dsl, secret) = store.add_account("dsl@oak.example", Role::Dsl, Some("oak"), "dsl password 12", now).await.unwrap();
        let secret = secret.unwrap();
        store.add_account("it@oak.example", Role::ItTechnician, Some("oak"), "it password 12", now).await.unwrap();
        store.add_account("t@oak.example", Role::Teacher, Some("oak"), "teacher password", now).await.unwrap();
        let long_ago = now - jiff::SignedDuration::from_hours(24 * 400);
        let n = NewIncident { school: "oak", person: Some("amy"), alert: None, title: "A worry about Amy", kind: Kind::Safeguarding, about_head: false };
        let incident = store.raise_incident(&dsl, &n, long_ago).await.unwrap().unwrap();
        let c = Closing { outcome: "supported", feedback: "", lessons: "", sanction: "" };
        assert!(store.close_incident(&dsl, incident, &c, long_ago).await.unwrap());

        let mut settings = haven_safeguard::Settings::new(&haven_policy::PolicySet::default());
        let mut retention = Retention::default();
        retention.days[Class::Logs as usize] = 30;
        settings.retention = retention;
        let service = haven_safeguard::Service::new(store.clone(), &haven_policy::PolicySet::default());
        service.reload_with_record(settings).await.unwrap();
        let addr = haven_safeguard::serve(service, &["127.0.0.1:0".parse().unwrap()]).await.unwrap()[0];

        let (map, csv) = tokio::task::spawn_blocking(move || {
            let teacher = sign_in(addr, "t@oak.example", "teacher password");
            assert_eq!(http(addr, "GET", "/admin/data-map", &teacher, "").0, 403, "not for teachers");
            assert_eq!(http(addr, "GET", &format!("/incidents/{incident}/hold"), &teacher, "").0, 404);
            let it = sign_in(addr, "it@oak.example", "it password 12");
            let (status, _, map) = http(addr, "GET", "/admin/data-map", &it, "");
            assert_eq!(status, 200, "{map}");
            let (status, _, csv) = http(addr, "GET", "/admin/data-map.csv", &it, "");
            assert_eq!(status, 200);
            (map, csv)
        })
        .await
        .unwrap();
        assert!(map.contains("Filtering logs (DNS and web)") && map.contains("30 days") && map.contains("set in [retention] logs"), "{map}");
        assert!(map.contains("25 years") && map.contains("25th birthday") && map.contains("self-hosted"), "{map}");
        assert!(map.contains("None yet"), "no run yet: {map}");
        assert!(csv.starts_with("class,") && csv.contains("\"incidents\"") && csv.contains("\"30\""), "{csv}");

        let dsl_session = {
            let secret = secret.clone();
            tokio::task::spawn_blocking(move || sign_in_with(addr, "dsl@oak.example", "dsl password 12", Some(&secret))).await.unwrap()
        };
        let after = tokio::task::spawn_blocking(move || {
            let path = format!("/incidents/{incident}/hold");
            let (status, _, page) = http(addr, "GET", &path, &dsl_session, "");
            assert_eq!(status, 200, "{page}");
            assert!(page.contains("Not under legal hold") && page.contains("Put under legal hold"), "{page}");
            assert!(http(addr, "GET", &format!("/incidents/{incident}"), &dsl_session, "").2.contains(&path), "the incident page links its hold");
            let csrf = csrf_of(&page);
            assert_eq!(http(addr, "POST", &path, &dsl_session, "csrf=wrong&hold=1&reason=police").0, 403);
            assert_eq!(http(addr, "POST", &path, &dsl_session, &format!("csrf={csrf}&hold=1&reason=")).0, 400, "a reason is needed");
            assert_eq!(http(addr, "POST", &path, &dsl_session, &format!("csrf={csrf}&hold=1&reason=police+investigation")).0, 303);
            http(addr, "GET", &path, &dsl_session, "").2
        })
        .await
        .unwrap();
        assert!(after.contains("Under legal hold") && after.contains("police investigation") && after.contains("Clear the legal hold"), "{after}");
        let (_, hold) = store.legal_hold(&dsl, incident, now).await.unwrap().unwrap();
        assert!(hold.held);
        let audit = store.audit_search(Some(&format!("incident:{incident}")), None, 50).await.unwrap();
        assert!(audit.iter().any(|e| e.action == "incident.hold" && !e.detail.contains("police")), "audited, the reason kept out");

        // The job keeps the held incident, and its run shows on the map.
        let periods = Periods { logs: 30, events: 90, alerts: 30, incidents: 100, evidence: 100, audit: 3000 };
        let run = store.apply_retention(&periods, now).await.unwrap();
        assert_eq!((run.counts.incidents_deleted, run.counts.held_kept), (0, 1));
        let map = tokio::task::spawn_blocking(move || {
            let it = sign_in(addr, "it@oak.example", "it password 12");
            http(addr, "GET", "/admin/data-map", &it, "").2
        })
        .await
        .unwrap();
        assert!(map.contains("Latest retention runs") && !map.contains("None yet"), "{map}");
    }
}
