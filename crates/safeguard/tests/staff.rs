//! Staff are protected and protected from, over real HTTP on every back
//! end: the IT lead reads staff alerts and nothing else, the DSL's queue
//! and API never list one, the LADO is on every incident about staff or
//! the head, and people who act are shown by name. And through the real
//! notify path: a staff alert is told to the head and the IT lead, never
//! the DSL.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};

use haven_safeguard::notify::{Channels, run_once};
use haven_store::staff::Audience;
use haven_store::{Role, Store};
use jiff::{SignedDuration, Timestamp};

mod common;

struct Reply {
    status: u16,
    head: String,
    body: String,
}

fn send(addr: SocketAddr, raw: &str) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    let got = String::from_utf8_lossy(&got).to_string();
    let (head, body) = got.split_once("\r\n\r\n").unwrap_or((&got, ""));
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Reply { status, head: head.to_string(), body: body.to_string() }
}

fn http(addr: SocketAddr, method: &str, path: &str, cookies: &str, form: &[(&str, &str)]) -> Reply {
    let enc = |s: &str| s.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect::<String>();
    let body: String = form.iter().map(|(k, v)| format!("{k}={}", enc(v))).collect::<Vec<_>>().join("&");
    send(
        addr,
        &format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nCookie: {cookies}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

fn api(addr: SocketAddr, path: &str, key: &str) -> Reply {
    send(addr, &format!("GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n"))
}

fn sign_in(addr: SocketAddr, email: &str, password: &str, totp: &str) -> (String, String) {
    let r = http(addr, "POST", "/login", "", &[("email", email), ("password", password)]);
    let cookie = |r: &Reply| {
        r.head
            .lines()
            .filter(|l| l.to_lowercase().starts_with("set-cookie: haven_session="))
            .find_map(|l| l.split(';').next()?.split_once(": ").map(|(_, v)| v.to_string()))
    };
    let c = cookie(&r).unwrap();
    let hidden = |body: &str| body.split("name=\"csrf\" value=\"").nth(1).and_then(|t| t.split('"').next()).map(str::to_string);
    let csrf = hidden(&http(addr, "GET", "/login/second-factor", &c, &[]).body).unwrap();
    let code = haven_store::sessions::totp_code(totp, Timestamp::now()).unwrap();
    let r = http(addr, "POST", "/login/second-factor", &c, &[("csrf", &csrf), ("code", &code)]);
    assert_eq!(r.status, 303, "{email}: {}", r.body);
    let c = cookie(&r).unwrap();
    // The session after the second factor has its own token (every page's sign-out form holds it).
    let csrf = hidden(&http(addr, "GET", "/totals", &c, &[]).body).unwrap_or(csrf);
    (c, csrf)
}

/// An alert about `person` for `audience`, as ingest stores one.
async fn alert(store: &Store, person: &str, audience: Audience) -> i64 {
    let now = Timestamp::now();
    let first = haven_store::alerts::NewOccurrence {
        at: now,
        level: 3,
        source: "typed".into(),
        excerpt: "words".into(),
        url: None,
        explanation: String::new(),
        spans: "[]".into(),
        screenshot: None,
        screenshot_withheld: false,
        repeats: 1,
    };
    let a =
        haven_store::alerts::NewAlert { school: "oak".into(), person: person.into(), category: "Offensive user".into(), level: 3, due_at: Some(now), first };
    let mut tx = store.begin().await.unwrap();
    let id = tx.insert_alert(&a).await.unwrap();
    tx.set_audience(id, audience).await.unwrap();
    tx.commit().await.unwrap();
    id
}

fn demo_lado() -> haven_config::Lados {
    let lado = haven_config::Lado { name: "Demo LADO".into(), phone: Some("01632 960123".into()), email: Some("lado@example.org".into()) };
    haven_config::Lados { trust: Some(lado), schools: Default::default() }
}

/// The incident a raise redirected to.
fn raised(r: &Reply) -> String {
    assert_eq!(r.status, 303, "{}", r.body);
    r.head.lines().find_map(|l| l.strip_prefix("location: ").or_else(|| l.strip_prefix("Location: "))).unwrap().trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_it_lead_reads_staff_alerts_the_lado_is_on_staff_incidents_and_actors_have_names() {
    for (store, dir) in haven_store::testing::stores().await {
        let now = Timestamp::now();
        store.upsert_school("oak", "Oak Primary", false).await.unwrap();
        let add = |email: &'static str, role, name: &'static str| {
            let store = store.clone();
            async move {
                let (a, totp) = store.add_account(email, role, Some("oak"), "a long password", now).await.unwrap();
                store.set_account_name(a.id, Some(name)).await.unwrap();
                totp.unwrap_or_default()
            }
        };
        let dsl = add("dsl@oak.example", Role::Dsl, "Dee Sharma").await;
        let head = add("head@oak.example", Role::Headteacher, "Sam Patel").await;
        let lead = add("it.lead@oak.example", Role::ItLead, "Jo Lee").await;
        let chair = add("chair@oak.example", Role::ChairOfGovernors, "Pat Chair").await;
        let dsl_key = store.add_api_key("dsl@oak.example", now).await.unwrap();
        let lead_key = store.add_api_key("it.lead@oak.example", now).await.unwrap();
        // A change the IT lead made, for the register and its history.
        let change = haven_store::changes::NewChange {
            school: "oak".into(),
            kind: "change".into(),
            scope: "school".into(),
            verdict: Some("block".into()),
            site: Some("games.example".into()),
            reason: "Distracting in lessons".into(),
            starts_at: now,
            ..Default::default()
        };
        let change = store.add_filter_change(&change, "in-force", "it.lead@oak.example", now).await.unwrap();
        let pupil = alert(&store, "amy", Audience::Pupil).await;
        let staff = alert(&store, "mr.jones", Audience::Staff).await;
        let service = haven_safeguard::Service::new(store.clone(), &haven_policy::PolicySet::default());
        let mut settings = haven_safeguard::Settings::new(&haven_policy::PolicySet::default());
        settings.lado = demo_lado();
        service.reload_with_record(settings).await.unwrap();
        let again = service.clone();
        let addr = haven_safeguard::serve(service, &["127.0.0.1:0".parse().unwrap()]).await.unwrap()[0];
        let (c_dsl, c_head, c_lead, c_chair) = tokio::task::spawn_blocking(move || {
            let lc = sign_in(addr, "it.lead@oak.example", "a long password", &lead);
            // The IT lead: the staff alert, in the queue, on its page and by the API; never the pupil's.
            let queue = http(addr, "GET", "/alerts", &lc.0, &[]);
            assert_eq!(queue.status, 200, "{}", queue.body);
            assert!(queue.body.contains(&format!("/alerts/{staff}\"")), "{}", queue.body);
            assert!(!queue.body.contains(&format!("/alerts/{pupil}\"")), "never a pupil's: {}", queue.body);
            assert_eq!(http(addr, "GET", &format!("/alerts/{staff}"), &lc.0, &[]).status, 200);
            assert_eq!(http(addr, "GET", &format!("/alerts/{pupil}"), &lc.0, &[]).status, 404);
            let listed: serde_json::Value = serde_json::from_str(&api(addr, "/api/v1/alerts", &lead_key).body).unwrap();
            let ids: Vec<i64> = listed["alerts"].as_array().unwrap().iter().map(|a| a["id"].as_i64().unwrap()).collect();
            assert_eq!(ids, vec![staff]);
            assert_eq!(api(addr, &format!("/api/v1/alerts/{staff}"), &lead_key).status, 200);
            assert_eq!(api(addr, &format!("/api/v1/alerts/{pupil}"), &lead_key).status, 404);
            let acted =
                http(addr, "POST", &format!("/alerts/{staff}/act"), &lc.0, &[("csrf", &lc.1), ("kind", "action"), ("note", "Pulled the laptop's logs")]);
            assert_eq!(acted.status, 303, "{}", acted.body);
            assert_eq!(http(addr, "GET", "/incidents", &lc.0, &[]).status, 403, "no incidents for IT");
            // Filtering: the IT lead does IT's work, and is shown by name in the register and the history.
            let register = http(addr, "GET", "/filtering/changes", &lc.0, &[]);
            assert_eq!(register.status, 200, "{}", register.body);
            assert!(register.body.contains("Jo Lee (it.lead@oak.example)"), "{}", register.body);
            let one = http(addr, "GET", &format!("/filtering/changes/{change}"), &lc.0, &[]).body;
            assert!(one.matches("Jo Lee (it.lead@oak.example)").count() >= 2, "asked by and the history: {one}");

            // The DSL: never the staff alert, on the page or by the API.
            let dc = sign_in(addr, "dsl@oak.example", "a long password", &dsl);
            let queue = http(addr, "GET", "/alerts", &dc.0, &[]);
            assert!(queue.body.contains(&format!("/alerts/{pupil}\"")) && !queue.body.contains(&format!("/alerts/{staff}\"")), "{}", queue.body);
            let listed: serde_json::Value = serde_json::from_str(&api(addr, "/api/v1/alerts", &dsl_key).body).unwrap();
            let ids: Vec<i64> = listed["alerts"].as_array().unwrap().iter().map(|a| a["id"].as_i64().unwrap()).collect();
            assert_eq!(ids, vec![pupil]);
            assert_eq!(api(addr, &format!("/api/v1/alerts/{staff}"), &dsl_key).status, 404);

            // The head raises a staff incident: the LADO, linked, in the block and the flowchart.
            let hc = sign_in(addr, "head@oak.example", "a long password", &head);
            let alert_page = http(addr, "GET", &format!("/alerts/{staff}"), &hc.0, &[]);
            assert!(alert_page.body.contains("Jo Lee (it.lead@oak.example)"), "the IT lead's action by name: {}", alert_page.body);
            let at = raised(&http(
                addr,
                "POST",
                &format!("/alerts/{staff}/incident"),
                &hc.0,
                &[("csrf", &hc.1), ("title", "Mr Jones' searches"), ("kind", "staff")],
            ));
            assert_eq!(http(addr, "POST", &format!("{at}/action"), &hc.0, &[("csrf", &hc.1), ("note", "Rang the LADO")]).status, 303);
            let inc = http(addr, "GET", &at, &hc.0, &[]).body;
            for want in ["LADO contact", "Demo LADO", "href=\"tel:01632960123\"", "href=\"mailto:lado@example.org\"", "Sam Patel (head@oak.example)"] {
                assert!(inc.contains(want), "{want}: {inc}");
            }
            assert!(inc.contains("(LADO) within one working day: Demo LADO, <a href=\"tel:01632960123\">"), "the flowchart's step: {inc}");

            // One about the head, raised by the DSL: hidden from the head, the chair sees the LADO.
            let about_head = raised(&http(
                addr,
                "POST",
                &format!("/alerts/{pupil}/incident"),
                &dc.0,
                &[("csrf", &dc.1), ("title", "The head's messages"), ("kind", "staff"), ("about_head", "1")],
            ));
            assert_eq!(http(addr, "GET", &about_head, &hc.0, &[]).status, 404, "hidden from the head");
            let cc = sign_in(addr, "chair@oak.example", "a long password", &chair);
            let inc = http(addr, "GET", &about_head, &cc.0, &[]).body;
            assert!(inc.contains("chair of governors leads") && inc.contains("Demo LADO") && inc.contains("mailto:lado@example.org"), "{inc}");

            // The school's audit log, actors by name.
            let log = http(addr, "GET", "/admin/audit", &dc.0, &[]).body;
            assert!(log.contains("Sam Patel (head@oak.example)"), "{log}");
            (dc.0, hc.0, lc.0, (cc.0, at, about_head))
        })
        .await
        .unwrap();

        // Without a LADO configured, the page says so and names the key.
        again.reload_with_record(haven_safeguard::Settings::new(&haven_policy::PolicySet::default())).await.unwrap();
        let (c_chair, staff_incident, head_incident) = c_chair;
        tokio::task::spawn_blocking(move || {
            for (cookie, at) in [(&c_head, &staff_incident), (&c_chair, &head_incident)] {
                let inc = http(addr, "GET", at, cookie, &[]).body;
                assert!(inc.contains("No LADO is configured for this school") && inc.contains("[safeguarding] lado = {"), "{inc}");
            }
            let _ = (c_dsl, c_lead);
        })
        .await
        .unwrap();
        drop(dir);
        store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staff_alert_is_told_to_the_head_and_the_it_lead_never_the_dsl() {
    let mails = Arc::new(Mutex::new(Vec::new()));
    let smtp = common::smtp_catcher(mails.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_dir(dir.path()).await.unwrap();
    store.use_key_dir(&dir.path().join("keys")).unwrap();
    store.upsert_school("oak", "Oak", false).await.unwrap();
    let t0: Timestamp = "2026-11-29T02:00:00Z".parse().unwrap();
    let (device, _) = store.add_device("oak", "Staff laptop", t0).await.unwrap();
    for (email, role) in [
        ("dsl@oak.example", Role::Dsl),
        ("head@oak.example", Role::Headteacher),
        ("it.lead@oak.example", Role::ItLead),
        ("it@oak.example", Role::ItTechnician),
        ("chair@oak.example", Role::ChairOfGovernors),
    ] {
        store.add_account(email, role, Some("oak"), "a long password", t0).await.unwrap();
    }
    // The member of staff the alert is about: a teacher's login.
    store.add_account("mr.jones@oak.example", Role::Teacher, Some("oak"), "a long password", t0).await.unwrap();
    // The school's call-out list is the DSL's: a pupil's alert goes there, a staff alert must not.
    store.add_oncall(Some("oak"), "DSL", Some("dsl@oak.example"), None, 1).await.unwrap();
    let mut policy = haven_policy::PolicySet::default();
    let mut cal = haven_policy::schedule::Calendar::london();
    cal.terms = vec![(jiff::civil::date(2026, 9, 3), jiff::civil::date(2026, 12, 18))];
    policy.schools.push(haven_policy::model::School { id: "oak".into(), name: "Oak".into(), calendar: cal });
    let s = haven_safeguard::Service::new(store.clone(), &policy);
    let ev = |person: &str| haven_safeguard::ingest::Event {
        person: person.into(),
        text: "i am going to kill myself tonight, i have the pills".into(),
        source: "typed".into(),
        url: None,
        observed_at: Some(t0.to_string()),
        screenshot: None,
        title: None,
        idempotency_key: None,
    };
    let out = s.ingest(&device, &ev("mr.jones"), t0).await.unwrap();
    let id = out.alerts[0].id;
    assert_eq!((out.alerts[0].level, store.alert_audience(id).await.unwrap().as_deref()), (5, Some("staff")));
    let ch = Channels::new(Some(format!("smtp://127.0.0.1:{smtp}")), "haven@oak.example".into(), "http://127.0.0.1:8080".into(), SignedDuration::from_mins(10));
    // A level 5 calls one person at once, then the next each ten minutes: the head, then the IT lead.
    assert_eq!(run_once(&s, &ch, t0).await, 1);
    assert_eq!(run_once(&s, &ch, t0.saturating_add(SignedDuration::from_mins(10)).unwrap()).await, 1);
    let to = |m: &String| m.lines().find_map(|l| l.strip_prefix("To: ").map(str::to_string)).unwrap_or_default();
    let told: Vec<String> = mails.lock().unwrap().iter().map(to).collect();
    assert_eq!(told.len(), 2, "{told:?}");
    assert!(told[0].contains("head@oak.example") && told[1].contains("it.lead@oak.example"), "{told:?}");
    assert!(told.iter().all(|t| !t.contains("dsl@") && !t.contains("it@oak")), "never the DSL nor the technician: {told:?}");

    // An alert about the IT lead's own activity is not told to the IT lead.
    let own = s.lists_for("oak", Audience::Staff, "it.lead").await.unwrap();
    assert_eq!(own.dsls.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), vec!["head@oak.example"]);

    // One about the headteacher: the chair of governors, never the head.
    let out = s.ingest(&device, &ev("head"), t0).await.unwrap();
    let about_head = out.alerts[0].id;
    assert_eq!(store.alert_audience(about_head).await.unwrap().as_deref(), Some("head"));
    let queued: Vec<String> = store.outbox(t0).await.unwrap().into_iter().filter(|n| n.alert == about_head).map(|n| n.target).collect();
    assert_eq!(queued, vec!["chair@oak.example".to_string()]);

    // A pupil's alert still goes to the DSL's list.
    let out = s.ingest(&device, &ev("amy.pupil"), t0).await.unwrap();
    assert_eq!(store.alert_audience(out.alerts[0].id).await.unwrap().as_deref(), Some("pupil"));
    run_once(&s, &ch, t0.saturating_add(SignedDuration::from_mins(11)).unwrap()).await;
    // Sent at once, in either order: the chair (about the head) and the DSL (the pupil).
    let later: Vec<String> = mails.lock().unwrap().iter().skip(2).map(to).collect();
    assert!(later.iter().any(|t| t.contains("dsl@oak.example")) && later.iter().any(|t| t.contains("chair@oak.example")), "{later:?}");
    assert!(later.iter().all(|t| !t.contains("head@oak.example")), "{later:?}");
}
