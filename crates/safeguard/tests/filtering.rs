//! The filtering pages over real HTTP on loopback, on every back end: who
//! may make, ask and approve; an approval chain (the DSL, then IT); the
//! requester told the answer; "what applies to a group"; a lesson topic
//! beside an alert from that class; and the register's search and CSV.

mod common;

use common::{csrf_of, http, sign_in, sign_in_with};
use haven_store::Role;

const CONFIG: &str = r#"
trust = "Test Trust"
[filtering]
approvers = ["dsl", "it-technician"]
[[school]]
id = "oak"
name = "Oak Academy"
[[group]]
id = "secondary"
name = "Secondary pupils"
[[policy]]
id = "secondary"
block = ["games", "gambling"]
allow_sites = ["bbc.co.uk/bitesize"]
[[user]]
id = "amy.pupil"
group = "secondary"
school = "oak"
classes = ["10GH"]
[[user]]
id = "ben.pupil"
group = "secondary"
school = "oak"
classes = ["10MA"]
"#;

fn id_from(location_page: &str) -> i64 {
    location_page.split("<h1>Filtering change ").nth(1).and_then(|r| r.split('<').next()).and_then(|n| n.trim().parse().ok()).expect("a change page")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_goes_through_the_chain_and_the_requester_sees_the_answer() {
    for (store, dir) in haven_store::testing::stores().await {
        let cfg_dir = tempfile::tempdir().unwrap();
        let config = haven_config::Config::parse(CONFIG, &cfg_dir.path().join("haven.toml")).unwrap();
        store.upsert_school("oak", "Oak Academy", false).await.unwrap();
        let now = jiff::Timestamp::now();
        store.add_account("t@oak.example", Role::Teacher, Some("oak"), "teacher password", now).await.unwrap();
        store.add_account("it@oak.example", Role::ItTechnician, Some("oak"), "it password 12", now).await.unwrap();
        let (_, totp) = store.add_account("dsl@oak.example", Role::Dsl, Some("oak"), "dsl password 1", now).await.unwrap();
        let totp = totp.unwrap();
        let service = haven_safeguard::Service::new(store.clone(), &config.policy);
        let mut settings = haven_safeguard::Settings::new(&config.policy);
        settings.approvers.clone_from(&config.approvers);
        service.reload_with_record(settings).await.unwrap();
        // An alert for Amy, of class 10GH, to see a declared topic beside.
        let (device, _) = store.add_device("oak", "Library PC", now).await.unwrap();
        let event = haven_safeguard::ingest::Event {
            person: "amy.pupil".into(),
            text: "they said join us and fight the enemies of our people, the attack is coming".into(),
            source: "typed".into(),
            url: None,
            observed_at: None,
            screenshot: None,
            title: None,
            idempotency_key: None,
        };
        let out = service.ingest(&device, &event, now).await.unwrap();
        let alert = out.alerts.first().map(|a| a.id).expect("an alert for the DSL");
        let addr = haven_safeguard::serve(service, &["127.0.0.1:0".parse().unwrap()]).await.unwrap()[0];
        let st = store.clone();
        tokio::task::spawn_blocking(move || {
            let teacher = sign_in(addr, "t@oak.example", "teacher password");
            let home = http(addr, "GET", "/filtering", &teacher, "").2;
            assert!(home.contains("The DSL, then IT decide") && !home.contains("Make a change"), "teachers ask, they do not make: {home}");
            let csrf = csrf_of(&home);
            let make = format!("csrf={csrf}&school=oak&scope=group&scope_id=secondary&verdict=allow&site=games.example&reason=mine");
            assert_eq!(http(addr, "POST", "/filtering/make", &teacher, &make).0, 403);
            assert_eq!(http(addr, "POST", "/filtering/ask", &teacher, "csrf=wrong&kind=lesson").0, 403, "CSRF");
            // A lesson unblock needs an end, and a class the MIS knows.
            let no_end = format!("csrf={csrf}&kind=lesson&school=oak&scope=class&scope_id=10GH&site=games.example&reason=Game+design");
            assert!(http(addr, "POST", "/filtering/ask", &teacher, &no_end).2.contains("needs an end time"));
            let unknown = format!("csrf={csrf}&kind=lesson&school=oak&scope=class&scope_id=11ZZ&site=games.example&until=2030-01-01T10:00&reason=x");
            assert!(http(addr, "POST", "/filtering/ask", &teacher, &unknown).2.contains("no class"));
            let illegal = format!("csrf={csrf}&kind=over-blocking&school=oak&scope=group&scope_id=secondary&category=csam&reason=x");
            assert!(http(addr, "POST", "/filtering/ask", &teacher, &illegal).2.contains("can never be allowed"));
            let ask =
                format!("csrf={csrf}&kind=lesson&school=oak&scope=class&scope_id=10GH&site=games.example&until=2030-01-01T10:00&reason=Game+design+lesson");
            let (status, _, _) = http(addr, "POST", "/filtering/ask", &teacher, &ask);
            assert_eq!(status, 303);
            let topic = format!(
                "csrf={csrf}&kind=topic&school=oak&scope=class&scope_id=10gh&from=2020-01-01T09:00&until=2030-01-01T10:00&reason=Online+radicalisation"
            );
            assert_eq!(http(addr, "POST", "/filtering/ask", &teacher, &topic).0, 303);

            // IT is second in the chain: not yet.
            let it = sign_in(addr, "it@oak.example", "it password 12");
            let it_home = http(addr, "GET", "/filtering", &it, "").2;
            assert!(it_home.contains("Nothing is waiting for you"), "{it_home}");
            let dsl = sign_in_with(addr, "dsl@oak.example", "dsl password 1", Some(&totp));
            let dsl_home = http(addr, "GET", "/filtering", &dsl, "").2;
            assert!(dsl_home.contains("Waiting for your decision (1)") && dsl_home.contains("class 10GH"), "{dsl_home}");
            let id: i64 = dsl_home.split("/filtering/changes/").nth(1).and_then(|r| r.split('"').next()).unwrap().parse().unwrap();
            let page = http(addr, "GET", &format!("/filtering/changes/{id}"), &it, "").2;
            assert_eq!(id_from(&page), id);
            assert!(page.contains("Waiting for the DSL"), "{page}");
            let approve = |who: &str, extra: &str| {
                let page = http(addr, "GET", &format!("/filtering/changes/{id}"), who, "").2;
                http(addr, "POST", &format!("/filtering/changes/{id}/decide"), who, &format!("csrf={}&decision=approve{extra}", csrf_of(&page)))
            };
            assert_eq!(approve(&it, "").0, 403, "IT waits for the DSL");
            assert_eq!(approve(&dsl, "&note=fine").0, 303);
            let page = http(addr, "GET", &format!("/filtering/changes/{id}"), &dsl, "").2;
            assert!(page.contains("waiting for a decision") && page.contains("Waiting for IT"), "{page}");
            // IT narrows it to an earlier end.
            assert_eq!(approve(&it, "&until=2029-06-01T10:00&note=end+of+year").0, 303);
            let done = http(addr, "GET", &format!("/filtering/changes/{id}"), &teacher, "").2;
            assert!(done.contains("in force") && done.contains("it@oak.example: until 2029-06-01"), "{done}");
            // The teacher sees the answer on their page.
            let mine = http(addr, "GET", "/filtering", &teacher, "").2;
            assert!(mine.contains("Your requests") && mine.contains("in force") && mine.contains("end of year"), "{mine}");

            // What applies to Year 10: the base policy and the change for one of its classes.
            let p = http(addr, "GET", "/filtering/policy?school=oak&group=secondary", &it, "").2;
            assert!(p.contains("Online games") && p.contains("bbc.co.uk/bitesize") && p.contains("allow games.example") && p.contains("10GH, 10MA"), "{p}");
            assert_eq!(http(addr, "GET", "/filtering/policy?school=oak&group=secondary", &teacher, "").0, 403);

            // The topic beside the alert from that class.
            let a = http(addr, "GET", &format!("/alerts/{alert}"), &dsl, "").2;
            assert!(a.contains("Lesson topics declared") && a.contains("Online radicalisation"), "{a}");

            // The register: the teacher sees their own; IT sees all and exports.
            let reg = http(addr, "GET", "/filtering/changes?q=radicalisation", &it, "").2;
            assert!(reg.contains("topic") && !reg.contains("Game design"), "{reg}");
            let (status, _, csv) = http(addr, "GET", "/filtering/changes?format=csv", &it, "");
            assert_eq!(status, 200);
            assert!(csv.contains("\"lesson\"") && csv.contains("t@oak.example asked") && csv.contains("dsl@oak.example approved: fine"), "{csv}");
            assert!(csv.contains("it@oak.example narrowed: until 2029-06-01"), "{csv}");
        })
        .await
        .unwrap();
        let audit = store.audit_search(Some("filter-changes"), None, 10).await.unwrap();
        assert!(audit.iter().any(|e| e.action == "filter-change.export"), "exports are audited");
        assert_eq!(st.filter_changes_in_force(now).await.unwrap().len(), 1);
        drop(dir);
    }
}
