//! People over real HTTP on loopback (issue 16): names from the MIS on the
//! alert queue, alert page, chronology and incident; the person search,
//! school-scoped and audited; an event for a login nobody knows (a typing
//! slip) kept and flagged unidentified, then matched to the pupil by the
//! DSL (CSRF, audited); and a filter finding from an address with no person
//! pointing at the device's history. On SQLite, and on PostgreSQL when
//! `HAVEN_TEST_POSTGRES` is set.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use haven_accesslog::Finding;
use haven_store::directory::{PersonKind, PersonRow};
use haven_store::incidents::{Kind, NewIncident};
use haven_store::{Role, Store};

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .find_map(|(_, v)| v.split(';').next()?.strip_prefix(&format!("{name}=")).map(str::to_string))
    }
    fn hidden(&self, name: &str) -> Option<String> {
        let at = self.body.find(&format!("name=\"{name}\" value=\""))? + name.len() + 15;
        Some(self.body[at..].split('"').next()?.to_string())
    }
}

fn http(addr: SocketAddr, method: &str, path: &str, cookies: &str, form: &[(&str, &str)]) -> Reply {
    let body: String = form.iter().map(|(k, v)| format!("{k}={}", enc(v))).collect::<Vec<_>>().join("&");
    let mut s = TcpStream::connect(addr).unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookies}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
    let headers = lines.filter_map(|l| l.split_once(": ").map(|(k, v)| (k.to_string(), v.to_string()))).collect();
    Reply { status, headers, body: body.to_string() }
}

fn enc(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

/// Signs in (with the second factor where the role needs it); the cookie and CSRF token.
fn sign_in(addr: SocketAddr, email: &str, password: &str, totp: Option<&str>) -> (String, String) {
    let r = http(addr, "POST", "/login", "", &[("email", email), ("password", password)]);
    let c = format!("haven_session={}", r.cookie("haven_session").unwrap());
    let Some(secret) = totp else {
        let csrf = http(addr, "GET", "/totals", &c, &[]).hidden("csrf").unwrap();
        return (c, csrf);
    };
    let csrf = http(addr, "GET", "/login/second-factor", &c, &[]).hidden("csrf").unwrap();
    let code = haven_store::sessions::totp_code(secret, jiff::Timestamp::now()).unwrap();
    let r = http(addr, "POST", "/login/second-factor", &c, &[("csrf", &csrf), ("code", &code)]);
    assert_eq!(r.status, 303, "{}", r.body);
    let c = format!("haven_session={}", r.cookie("haven_session").unwrap());
    let csrf = http(addr, "GET", "/totals", &c, &[]).hidden("csrf").unwrap();
    (c, csrf)
}

fn pupil(school: &str, login: &str, name: &str, year: &str, form: &str) -> PersonRow {
    PersonRow {
        school: school.into(),
        login: login.into(),
        display_name: Some(name.into()),
        year: Some(year.into()),
        form: Some(form.into()),
        classes: vec![form.into()],
        kind: PersonKind::Pupil,
    }
}

struct Setup {
    addr: SocketAddr,
    store: Store,
    service: haven_safeguard::Service,
    dsl_totp: String,
    device: haven_store::people::Device,
    incident: i64,
    _dir: Option<tempfile::TempDir>,
}

async fn setups() -> Vec<Setup> {
    let mut out = Vec::new();
    for (store, dir) in haven_store::testing::stores().await {
        let now = jiff::Timestamp::now();
        store.upsert_school("oak", "Oak Academy", false).await.unwrap();
        store.upsert_school("elm", "Elm Primary", false).await.unwrap();
        let (dsl, totp) = store.add_account("dsl@oak.example", Role::Dsl, Some("oak"), "dsl password 1", now).await.unwrap();
        store.add_account("t@oak.example", Role::Teacher, Some("oak"), "teacher password", now).await.unwrap();
        let people = [
            pupil("oak", "amy.pupil", "Amy Pupil", "Year 10", "10GH"),
            pupil("oak", "ben.pupil", "Ben Pupil", "Year 9", "9RA"),
            pupil("elm", "amy.elm", "Amy Elm", "Year 5", "5OW"),
        ];
        store.sync_people(None, &people, now).await.unwrap();
        let (device, _) = store.add_device("oak", "Library PC 3", now).await.unwrap();
        let incident =
            NewIncident { school: "oak", person: Some("amy.pupil"), alert: None, title: "Worrying searches", kind: Kind::Safeguarding, about_head: false };
        let incident = store.raise_incident(&dsl, &incident, now).await.unwrap().unwrap();
        let service = haven_safeguard::Service::new(store.clone(), &haven_policy::PolicySet::default());
        // The trust's directory as the config gives it: who the filters and devices may name.
        let mut settings = (*service.settings()).clone();
        for p in &people {
            settings.groups_by_user.insert(p.login.clone(), "pupils".into());
        }
        service.reload(settings);
        let addr = haven_safeguard::serve(service.clone(), &["127.0.0.1:0".parse().unwrap()]).await.unwrap()[0];
        out.push(Setup { addr, store, service, dsl_totp: totp.unwrap(), device, incident, _dir: dir });
    }
    out
}

fn event(person: &str, text: &str) -> haven_safeguard::ingest::Event {
    serde_json::from_value(serde_json::json!({ "person": person, "text": text, "source": "chat" })).unwrap()
}

async fn audited(store: &Store, action: &str) -> Vec<String> {
    store.audit_search(None, None, 500).await.unwrap().into_iter().filter(|e| e.action == action).map(|e| format!("{} {}", e.object, e.detail)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_search_unidentified_and_no_person() {
    for setup in setups().await {
        let now = jiff::Timestamp::now();
        let known = setup.service.ingest(&setup.device, &event("amy.pupil", "i want to kill myself tonight"), now).await.unwrap();
        let amy_alert = known.alerts[0].id;
        // A typing slip on the device: kept, flagged, not a new pupil.
        let typo = setup.service.ingest(&setup.device, &event("amy.pupi", "nobody would miss me if i was gone, i want to die"), now).await.unwrap();
        let typo_alert = typo.alerts[0].id;
        assert!(setup.store.alert_unidentified(typo_alert).await.unwrap());
        assert!(!setup.store.alert_unidentified(amy_alert).await.unwrap());
        // A block from an address nobody signed in at.
        let seen = haven_accesslog::Seen {
            school: Some("oak".into()),
            person: "device at 10.0.0.7".into(),
            device: None,
            url: "http://self-harm.example/".into(),
            at: now,
        };
        let finding = Finding::Blocked { seen, categories: [haven_policy::Category::from_id("self-harm").unwrap()].into_iter().collect() };
        let device_alert = setup.service.take(&finding, 1, now).await.unwrap().alerts[0].id;
        assert!(!setup.store.alert_unidentified(device_alert).await.unwrap(), "an address is no person, not an unknown login");

        let (addr, totp, incident) = (setup.addr, setup.dsl_totp.clone(), setup.incident);
        tokio::task::spawn_blocking(move || {
            let (dsl, csrf) = sign_in(addr, "dsl@oak.example", "dsl password 1", Some(&totp));
            let queue = http(addr, "GET", "/alerts", &dsl, &[]).body;
            assert!(queue.contains("Amy Pupil (Year 10, 10GH) — amy.pupil"), "{queue}");
            assert!(queue.contains("Unidentified: amy.pupi<"), "{queue}");
            assert!(queue.contains("No person identified — device at 10.0.0.7") && queue.contains("/history?subject=device&amp;id=10.0.0.7"), "{queue}");
            assert!(queue.contains("\">Oak Academy</td>"), "school names, not ids: {queue}");

            let page = http(addr, "GET", &format!("/alerts/{amy_alert}"), &dsl, &[]).body;
            assert!(page.contains("Amy Pupil (Year 10, 10GH) — amy.pupil") && page.contains("at Oak Academy"), "{page}");
            assert!(!page.contains("id=\"match\""), "a known pupil needs no match");

            let page = http(addr, "GET", &format!("/alerts/{typo_alert}"), &dsl, &[]).body;
            assert!(page.contains("id=\"match\"") && page.contains("<option value=\"amy.pupil\">Amy Pupil</option>"), "{page}");
            // Without the session's CSRF token nothing is matched.
            let r = http(addr, "POST", &format!("/alerts/{typo_alert}/match"), &dsl, &[("csrf", "forged"), ("login", "amy.pupil")]);
            assert_eq!(r.status, 403);
            // A login that is not a pupil of this school is refused.
            let r = http(addr, "POST", &format!("/alerts/{typo_alert}/match"), &dsl, &[("csrf", &csrf), ("login", "amy.elm")]);
            assert_eq!(r.status, 400, "{}", r.body);
            let r = http(addr, "POST", &format!("/alerts/{typo_alert}/match"), &dsl, &[("csrf", &csrf), ("login", "amy.pupil")]);
            assert_eq!(r.status, 303, "{}", r.body);
            let page = http(addr, "GET", &format!("/alerts/{typo_alert}"), &dsl, &[]).body;
            assert!(page.contains("Amy Pupil (Year 10, 10GH) — amy.pupil") && !page.contains("Unidentified"), "{page}");

            let chron = http(addr, "GET", "/people/oak/amy.pupil", &dsl, &[]).body;
            assert!(chron.contains("Chronology: Amy Pupil — amy.pupil"), "{chron}");
            assert!(
                chron.contains(&format!("/alerts/{typo_alert}")) && chron.contains(&format!("/alerts/{amy_alert}")),
                "the matched alert joins her chronology: {chron}"
            );
            let inc = http(addr, "GET", &format!("/incidents/{incident}"), &dsl, &[]).body;
            assert!(inc.contains("Amy Pupil (Year 10, 10GH) — amy.pupil"), "{inc}");

            // The search: this school only, links to chronologies.
            let found = http(addr, "GET", "/people?q=AMY", &dsl, &[]).body;
            assert!(found.contains("<a href=\"/people/oak/amy.pupil\">Amy Pupil (Year 10, 10GH) — amy.pupil</a>"), "{found}");
            assert!(!found.contains("Amy Elm"), "another school's pupil is out of scope: {found}");
            let (teacher, _) = sign_in(addr, "t@oak.example", "teacher password", None);
            assert_eq!(http(addr, "GET", "/people?q=amy", &teacher, &[]).status, 403);
        })
        .await
        .unwrap();

        assert_eq!(audited(&setup.store, "alert.match").await, [format!("alert:{typo_alert} amy.pupi -> amy.pupil")]);
        let searches = audited(&setup.store, "people.search").await;
        assert!(searches.len() == 1 && searches[0].contains("oak/amy.pupil"), "{searches:?}");
        assert_eq!(audited(&setup.store, "people.search.denied").await.len(), 1);
        setup.store.close().await;
    }
}
