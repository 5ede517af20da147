//! A person's chronology over real HTTP on loopback: the page names them
//! from the MIS, draws the timeline as inline SVG with the same entries in a
//! table, filters by kind and pages back in time; the headteacher never sees
//! an incident about the headteacher; the JSON API answers a page with its
//! cursor. On SQLite, and on PostgreSQL when `HAVEN_TEST_POSTGRES` is set.

use haven_store::alerts::{NewAlert, NewOccurrence};
use haven_store::directory::{PersonKind, PersonRow};
use haven_store::incidents::{Kind, NewIncident};
use haven_store::reports::NewReport;
use haven_store::{Role, Store};
use jiff::{SignedDuration, Timestamp};

mod common;
use common::{http, sign_in_with};

fn alert(level: u8, at: Timestamp) -> NewAlert {
    NewAlert {
        school: "oak".into(),
        person: "amy.pupil".into(),
        category: format!("Concern at level {level}"),
        level,
        due_at: Some(at),
        first: NewOccurrence {
            at,
            level,
            source: "chat".into(),
            excerpt: "words".into(),
            url: None,
            explanation: String::new(),
            spans: "[]".into(),
            screenshot: None,
            screenshot_withheld: false,
            repeats: 1,
        },
    }
}

async fn api(addr: std::net::SocketAddr, path: &str, key: &str) -> (u16, serde_json::Value) {
    let path = path.to_string();
    let key = key.to_string();
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n").unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
        let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        (status, serde_json::from_str(body).unwrap_or(serde_json::Value::Null))
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chronology_page_draws_a_timeline_names_the_pupil_and_pages() {
    for (store, _dir) in haven_store::testing::stores().await {
        run(store).await;
    }
}

async fn run(store: Store) {
    let now = Timestamp::now();
    let at = |mins: i64| now - SignedDuration::from_mins(mins);
    store.upsert_school("oak", "Oak Academy", false).await.unwrap();
    let (dsl, dsl_totp) = store.add_account("dsl@oak.example", Role::Dsl, Some("oak"), "dsl password 1", now).await.unwrap();
    let (_, head_totp) = store.add_account("head@oak.example", Role::Headteacher, Some("oak"), "head password 1", now).await.unwrap();
    store.add_account("t@oak.example", Role::Teacher, Some("oak"), "teacher password", now).await.unwrap();
    let amy = PersonRow {
        school: "oak".into(),
        login: "amy.pupil".into(),
        display_name: Some("Amy Pupil".into()),
        year: Some("Year 10".into()),
        form: Some("10GH".into()),
        classes: vec!["10A/Ma1".into(), "10B/En2".into()],
        kind: PersonKind::Pupil,
    };
    store.sync_people(None, &[amy], now).await.unwrap();
    let a5 = store.insert_alert(&alert(5, at(300))).await.unwrap();
    let a2 = store.insert_alert(&alert(2, at(200))).await.unwrap();
    let n = |title, about_head| NewIncident { school: "oak", person: Some("amy.pupil"), alert: None, title, kind: Kind::Safeguarding, about_head };
    let hers = store.raise_incident(&dsl, &n("Worrying searches", false), at(100)).await.unwrap().unwrap();
    let heads = store.raise_incident(&dsl, &n("The head's messages to her", true), at(50)).await.unwrap().unwrap();
    let report = NewReport {
        kind: "public".into(),
        school: Some("oak".into()),
        person: Some("amy.pupil".into()),
        at: at(10),
        reference: None,
        url: None,
        categories: Vec::new(),
        rule: None,
        words: "a stranger keeps messaging her".into(),
        contact: None,
    };
    store.insert_report(&report).await.unwrap();
    let key = store.add_api_key("dsl@oak.example", now).await.unwrap();
    let service = haven_safeguard::Service::new(store.clone(), &haven_policy::PolicySet::default());
    let addr = haven_safeguard::serve(service, &["127.0.0.1:0".parse().unwrap()]).await.unwrap()[0];

    let (dsl_totp, head_totp) = (dsl_totp.unwrap(), head_totp.unwrap());
    tokio::task::spawn_blocking(move || {
        let dsl = sign_in_with(addr, "dsl@oak.example", "dsl password 1", Some(&dsl_totp));
        let (status, _, page) = http(addr, "GET", "/people/oak/amy.pupil", &dsl, "");
        assert_eq!(status, 200, "{page}");
        assert!(page.contains("Chronology: Amy Pupil — amy.pupil"), "{page}");
        for said in ["<dd>Amy Pupil</dd>", "<dd>Year 10</dd>", "<dd>10GH</dd>", "<dd>10A/Ma1, 10B/En2</dd>", "<dd>Oak Academy</dd>"] {
            assert!(page.contains(said), "{said}: {page}");
        }
        // The timeline: one image, scaled to the screen, a titled mark per entry.
        let svg = page.split("<svg").nth(1).and_then(|s| s.split("</svg>").next()).expect("an inline SVG timeline");
        assert!(svg.contains("role=\"img\"") && svg.contains("viewBox=") && svg.contains("width=\"100%\""), "{svg}");
        assert!(svg.contains("aria-label=\"Timeline of 5 entries"), "{svg}");
        assert_eq!(svg.matches("<title>").count(), 5, "{svg}");
        assert!(svg.contains("Worrying searches") && svg.contains("Concern at level 5"));
        // The table says the same.
        for link in [format!("/alerts/{a5}"), format!("/alerts/{a2}"), format!("/incidents/{hers}"), format!("/incidents/{heads}")] {
            assert!(page.contains(&format!("href=\"{link}\"")), "{link}: {page}");
        }
        assert!(page.contains("a stranger keeps messaging her") && page.contains("Their web and DNS history"));

        // By kind, and back in time a page at a time.
        let (_, _, only) = http(addr, "GET", "/people/oak/amy.pupil?kind=incident", &dsl, "");
        assert!(only.contains(&format!("/incidents/{hers}")) && !only.contains(&format!("/alerts/{a5}")), "{only}");
        assert!(only.contains("aria-current=\"page\">Incidents</a>"), "{only}");
        let (_, _, first) = http(addr, "GET", "/people/oak/amy.pupil?limit=2", &dsl, "");
        assert!(first.contains("Timeline of 2 entries"), "{first}");
        let older = first.split("rel=\"next\"").next().and_then(|s| s.rsplit("href=\"").next()).and_then(|s| s.split('"').next()).unwrap();
        let older = older.replace("&amp;", "&");
        assert!(older.contains("before="), "{older}");
        let (_, _, second) = http(addr, "GET", &older, &dsl, "");
        assert!(second.contains("Timeline of 2 entries") && second.contains(">Newest</a>"), "{second}");
        assert!(second.contains(&format!("/incidents/{hers}")) && second.contains(&format!("/alerts/{a2}")), "{second}");
        assert_eq!(http(addr, "GET", "/people/oak/amy.pupil?kind=gossip", &dsl, "").0, 400);

        // The head: never the incident about the head. A teacher: nothing.
        let head = sign_in_with(addr, "head@oak.example", "head password 1", Some(&head_totp));
        let (_, _, theirs) = http(addr, "GET", "/people/oak/amy.pupil", &head, "");
        assert!(theirs.contains(&format!("/incidents/{hers}")) && !theirs.contains(&format!("/incidents/{heads}")), "{theirs}");
        assert!(!theirs.contains("The head's messages"));
        let teacher = sign_in_with(addr, "t@oak.example", "teacher password", None);
        assert_eq!(http(addr, "GET", "/people/oak/amy.pupil", &teacher, "").0, 403);
    })
    .await
    .unwrap();

    // The API: a page with the person and the cursor; the bare list without a query.
    let (status, page) = api(addr, "/api/v1/people/oak/amy.pupil?limit=3", &key).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["person"]["name"], "Amy Pupil");
    assert_eq!(page["person"]["groups"][1], "10B/En2");
    let entries = page["entries"].as_array().unwrap();
    assert_eq!(entries.iter().map(|e| e["what"].as_str().unwrap()).collect::<Vec<_>>(), vec!["report", "incident", "incident"]);
    let before = page["next_before"].as_str().unwrap().to_string();
    let (_, rest) = api(addr, &format!("/api/v1/people/oak/amy.pupil?limit=3&before={before}"), &key).await;
    assert_eq!(rest["entries"].as_array().unwrap().len(), 2);
    assert!(rest["next_before"].is_null());
    let (_, alerts) = api(addr, "/api/v1/people/oak/amy.pupil?kind=alert", &key).await;
    assert_eq!(alerts["entries"].as_array().unwrap().iter().map(|e| e["level"].as_u64().unwrap()).collect::<Vec<_>>(), vec![2, 5]);
    let (status, first) = api(addr, "/api/v1/people/oak/amy.pupil", &key).await;
    assert_eq!((status, first["entries"].as_array().map(Vec::len)), (200, Some(5)));
    assert_eq!(api(addr, "/api/v1/people/oak/amy.pupil?before=nonsense!", &key).await.0, 400);

    // Every read audited as a read of her record.
    let log = store.audit_search(Some("person:oak/amy.pupil"), None, 100).await.unwrap();
    assert_eq!(log.iter().filter(|e| e.action == "chronology.read").count(), 9, "five pages and four API reads");
    assert!(log.iter().any(|e| e.action == "chronology.read.denied"));
    store.close().await;
}
