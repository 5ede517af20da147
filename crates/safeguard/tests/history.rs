//! The web and DNS history page over real HTTP on loopback, reading real
//! access-log files written in a temporary data folder: who may see whose
//! history, date ranges, the row cap, the CSV export, the audit rows, and
//! attaching lines to an incident; on SQLite, and on PostgreSQL when
//! `HAVEN_TEST_POSTGRES` is set.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use haven_accesslog::QueryLog;
use haven_store::incidents::{Kind, NewIncident};
use haven_store::{Role, Store};

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
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
    /// The values of every `name="line"` box.
    fn boxes(&self) -> Vec<String> {
        self.body.split("name=\"line\" value=\"").skip(1).filter_map(|rest| rest.split('"').next()).map(str::to_string).collect()
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

/// One logged line in the shape the DNS filter and the proxy write.
fn logged(time: &str, school: &str, user: &str, what: &str, action: &str, category: &str, transport: &str) -> QueryLog {
    let web = transport == "http";
    QueryLog {
        time: time.into(),
        client: "10.20.0.5".into(),
        device: Some("library-pc-3".into()),
        user: Some(user.into()),
        group: Some("year9".into()),
        school: Some(school.into()),
        name: if web { what.split('/').nth(2).unwrap_or(what).into() } else { what.into() },
        qtype: if web { "GET".into() } else { "A".into() },
        action: action.into(),
        categories: if category.is_empty() { vec![] } else { vec![category.into()] },
        rule: (action == "block").then(|| format!("policy:pupils:block:{category}")),
        transport: transport.into(),
        micros: 120,
        url: web.then(|| what.into()),
        status: web.then_some(if action == "block" { 403 } else { 200 }),
        ..Default::default()
    }
}

fn write_logs(dir: &std::path::Path, name: &str, lines: &[QueryLog]) {
    let text: String = lines.iter().map(|l| serde_json::to_string(l).unwrap() + "\n").collect();
    std::fs::write(dir.join(name), text).unwrap();
}

struct Setup {
    addr: SocketAddr,
    store: Store,
    dsl_totp: String,
    lead_totp: String,
    amy_incident: i64,
    bob_incident: i64,
    _dirs: (Option<tempfile::TempDir>, tempfile::TempDir),
}

/// The app on every back end, with two days of logs for Oak and a line at Elm.
async fn setups() -> Vec<Setup> {
    let mut out = Vec::new();
    for (store, dir) in haven_store::testing::stores().await {
        let now = jiff::Timestamp::now();
        store.upsert_school("oak", "Oak Primary", false).await.unwrap();
        store.upsert_school("elm", "Elm Academy", false).await.unwrap();
        let (dsl, totp) = store.add_account("dsl@oak.example", Role::Dsl, Some("oak"), "dsl password 1", now).await.unwrap();
        store.add_account("it@oak.example", Role::ItTechnician, Some("oak"), "it password 12", now).await.unwrap();
        store.add_account("t@oak.example", Role::Teacher, Some("oak"), "teacher password", now).await.unwrap();
        let (_, lead_totp) = store.add_account("lead@trust.example", Role::TrustSafeguardingLead, None, "lead password 1", now).await.unwrap();
        let incident =
            |person| NewIncident { school: "oak", person: Some(person), alert: None, title: "Worrying searches", kind: Kind::Safeguarding, about_head: false };
        let amy_incident = store.raise_incident(&dsl, &incident("amy.pupil"), now).await.unwrap().unwrap();
        let bob_incident = store.raise_incident(&dsl, &incident("bob.pupil"), now).await.unwrap().unwrap();

        let data = tempfile::tempdir().unwrap();
        let logs = data.path().join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        write_logs(
            &logs,
            "dns-2026-12-01.jsonl",
            &[
                logged("2026-12-01T09:00:00Z", "oak", "amy.pupil", "www.bet365.com", "block", "gambling", "udp"),
                logged("2026-12-01T09:10:00Z", "oak", "bob.pupil", "www.bbc.co.uk", "allow", "news", "udp"),
                logged("2026-12-01T09:20:00Z", "elm", "amy.pupil", "elm-only.test", "allow", "", "udp"),
            ],
        );
        let mut search =
            logged("2026-12-01T09:05:00Z", "oak", "amy.pupil", "https://www.google.com/search?q=how+to+hide+cuts", "allow", "search-engines", "http");
        search.search = Some("how to hide cuts".into());
        search.concerns = vec!["Self-harm:3".into()];
        let mut formula = logged("2026-12-01T09:06:00Z", "oak", "amy.pupil", "https://www.bing.com/search?q=x", "allow", "search-engines", "http");
        formula.search = Some("=HYPERLINK(\"http://evil.test\",\"click\")".into());
        write_logs(&logs, "proxy-2026-12-01.jsonl", &[search, formula]);
        // A filtering check's probe, marked in the log: never part of anyone's history.
        let probe = r#"{"time":"2026-12-01T09:30:00Z","client":"10.20.0.5","group":"year9","school":"oak","name":"probe-check.test","qtype":"A","action":"block","categories":["gambling"],"transport":"doh","micros":1,"probe":true}"#;
        std::fs::OpenOptions::new().append(true).open(logs.join("dns-2026-12-01.jsonl")).unwrap().write_all(format!("{probe}\n").as_bytes()).unwrap();
        write_logs(&logs, "dns-2026-12-03.jsonl", &[logged("2026-12-03T08:30:00Z", "oak", "amy.pupil", "later.test", "allow", "", "udp")]);
        // A busy day for the library PCs: more than a page holds.
        let busy: Vec<QueryLog> = (0..1_005)
            .map(|i| {
                let mut l =
                    logged(&format!("2026-12-05T{:02}:{:02}:{:02}Z", 8 + i / 3600, (i / 60) % 60, i % 60), "oak", "cat.pupil", "busy.test", "allow", "", "udp");
                l.device = Some("library-pc-9".into());
                l
            })
            .collect();
        write_logs(&logs, "dns-2026-12-05.jsonl", &busy);

        let service = haven_safeguard::Service::new(store.clone(), &haven_policy::PolicySet::default());
        let mut settings = (*service.settings()).clone();
        settings.logs_dir = Some(logs);
        service.reload(settings);
        let addr = haven_safeguard::serve(service, &["127.0.0.1:0".parse().unwrap()]).await.unwrap()[0];
        out.push(Setup { addr, store, dsl_totp: totp.unwrap(), lead_totp: lead_totp.unwrap(), amy_incident, bob_incident, _dirs: (dir, data) });
    }
    out
}

const AMY_DAY: &str = "/history?subject=person&id=amy.pupil&school=oak&from=2026-12-01&to=2026-12-01&dns=1&web=1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_and_schools_decide_whose_history_is_seen() {
    for setup in setups().await {
        let addr = setup.addr;
        let lead_totp = setup.lead_totp.clone();
        let dsl_totp = setup.dsl_totp.clone();
        tokio::task::spawn_blocking(move || {
            let (t, _) = sign_in(addr, "t@oak.example", "teacher password", None);
            assert_eq!(http(addr, "GET", "/history", &t, &[]).status, 403, "a teacher sees no history");
            assert_eq!(http(addr, "GET", "/history?subject=group&id=year9&school=oak", &t, &[]).status, 403);

            // IT: a group's or a device's history, without names, searches or queries; never a person's.
            let (it, _) = sign_in(addr, "it@oak.example", "it password 12", None);
            assert_eq!(http(addr, "GET", AMY_DAY, &it, &[]).status, 403, "IT never sees a named pupil's history");
            let g = http(addr, "GET", "/history?subject=group&id=year9&school=oak&from=2026-12-01&to=2026-12-01&dns=1&web=1", &it, &[]);
            assert_eq!(g.status, 200, "{}", g.body);
            assert!(g.body.contains("www.bet365.com") && g.body.contains("https://www.google.com/search"), "{}", g.body);
            assert!(!g.body.contains("amy.pupil") && !g.body.contains("how to hide cuts") && !g.body.contains("q=how"), "{}", g.body);
            assert!(!g.body.contains("elm-only.test"), "IT sees its own school only");
            assert!(!g.body.contains("probe-check.test"), "filtering checks' probes are left out");
            assert!(!g.body.contains("name=\"line\""), "IT attaches nothing to incidents");
            let elm = http(addr, "GET", "/history?subject=group&id=year9&school=elm&from=2026-12-01&to=2026-12-01&dns=1", &it, &[]);
            assert_eq!(elm.status, 403, "another school's history");

            // The row cap: a busy device's day says to narrow the range.
            let busy = http(addr, "GET", "/history?subject=device&id=library-pc-9&school=oak&from=2026-12-05&to=2026-12-05&dns=1", &it, &[]);
            assert_eq!(busy.status, 200);
            assert!(busy.body.contains("More than 1000 lines") && busy.body.contains("Narrow the range"), "{}", busy.body);
            assert_eq!(busy.body.matches("busy.test").count(), 1000);
            let by_address = http(addr, "GET", "/history?subject=device&id=10.20.0.5&school=oak&from=2026-12-01&to=2026-12-01&dns=1&web=1", &it, &[]);
            assert!(by_address.body.contains("www.bbc.co.uk"), "a device by its address");

            // A DSL: their own school only, a bounded range.
            let (d, _) = sign_in(addr, "dsl@oak.example", "dsl password 1", Some(&dsl_totp));
            assert_eq!(http(addr, "GET", "/history?subject=person&id=amy.pupil&school=elm&from=2026-12-01&to=2026-12-01&dns=1", &d, &[]).status, 403);
            let long = http(addr, "GET", "/history?subject=person&id=amy.pupil&school=oak&from=2026-11-01&to=2026-12-10&dns=1", &d, &[]);
            assert_eq!(long.status, 400);
            assert!(long.body.contains("At most 31 days") && long.body.contains("narrow the range"), "{}", long.body);
            let form = http(addr, "GET", "/history", &d, &[]);
            assert_eq!(form.status, 200);
            assert!(!form.body.contains("Elm Academy"), "a school role is offered its own school");

            // The trust's safeguarding lead: every school at once.
            let (l, _) = sign_in(addr, "lead@trust.example", "lead password 1", Some(&lead_totp));
            let all = http(addr, "GET", "/history?subject=person&id=amy.pupil&school=&from=2026-12-01&to=2026-12-01&dns=1&web=1", &l, &[]);
            assert_eq!(all.status, 200);
            assert!(all.body.contains("elm-only.test") && all.body.contains("www.bet365.com"), "{}", all.body);
        })
        .await
        .unwrap();
        let audit = setup.store.audit_search(None, None, 500).await.unwrap();
        let denied: Vec<_> = audit.iter().filter(|e| e.action == "history.read.denied").collect();
        assert!(denied.iter().any(|e| e.object == "person:oak/amy.pupil" && e.detail == "it-technician"), "{denied:?}");
        assert!(denied.iter().any(|e| e.detail == "teacher"), "{denied:?}");
        assert!(denied.iter().any(|e| e.object == "group:elm/year9"), "{denied:?}");
        assert!(
            audit.iter().any(|e| e.action == "history.read" && e.object == "device:oak/library-pc-9" && e.detail.contains("1000 lines (more not shown)")),
            "{audit:?}"
        );
        assert!(audit.iter().any(|e| e.action == "history.read" && e.object == "person:*/amy.pupil"), "the trust's view of every school");
        setup.store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dsl_reads_exports_and_attaches_history_to_an_incident() {
    for setup in setups().await {
        let addr = setup.addr;
        let totp = setup.dsl_totp.clone();
        let (amy, bob) = (setup.amy_incident, setup.bob_incident);
        tokio::task::spawn_blocking(move || {
            let (c, csrf) = sign_in(addr, "dsl@oak.example", "dsl password 1", Some(&totp));
            let day = http(addr, "GET", AMY_DAY, &c, &[]);
            assert_eq!(day.status, 200, "{}", day.body);
            assert!(day.body.contains("<strong>3</strong> line(s)"), "{}", day.body);
            for seen in ["www.bet365.com", "policy:pupils:block:gambling", "how to hide cuts", "q=how+to+hide+cuts", "library-pc-3", "10.20.0.5"] {
                assert!(day.body.contains(seen), "{seen}: {}", day.body);
            }
            for unseen in ["later.test", "www.bbc.co.uk", "elm-only.test"] {
                assert!(!day.body.contains(unseen), "{unseen}");
            }
            // The range: two days later is in a wider one.
            let wider = http(addr, "GET", "/history?subject=person&id=amy.pupil&school=oak&from=2026-12-01&to=2026-12-03&dns=1&web=1", &c, &[]);
            assert!(wider.body.contains("later.test") && wider.body.contains("<strong>4</strong> line(s)"), "{}", wider.body);
            let dns_only = http(addr, "GET", "/history?subject=person&id=amy.pupil&school=oak&from=2026-12-01&to=2026-12-01&dns=1", &c, &[]);
            assert!(dns_only.body.contains("www.bet365.com") && !dns_only.body.contains("how to hide cuts"), "{}", dns_only.body);

            // The CSV export.
            let csv = http(addr, "GET", &format!("{AMY_DAY}&format=csv"), &c, &[]);
            assert_eq!(csv.status, 200);
            assert_eq!(csv.header("content-type"), Some("text/csv; charset=utf-8"));
            assert_eq!(csv.header("content-disposition"), Some("attachment; filename=\"haven-history-person-amy.pupil-2026-12-01-to-2026-12-01.csv\""));
            let rows: Vec<&str> = csv.body.split("\r\n").filter(|l| !l.is_empty()).collect();
            assert_eq!(rows.len(), 4, "a header and three lines: {rows:?}");
            assert_eq!(rows[0], "time,source,who,group,device,address,what,action,categories,rule,search terms");
            assert_eq!(
                rows[1],
                "2026-12-01T09:00:00+00:00,dns,amy.pupil,year9,library-pc-3,10.20.0.5,www.bet365.com,block,gambling,policy:pupils:block:gambling,"
            );
            assert!(rows[2].ends_with(",how to hide cuts") && rows[2].contains(",web,"), "{}", rows[2]);
            assert!(rows[3].ends_with(",\"'=HYPERLINK(\"\"http://evil.test\"\",\"\"click\"\")\""), "a formula never runs: {}", rows[3]);

            // Attach two lines to Amy's open incident.
            let boxes = day.boxes();
            assert_eq!(boxes.len(), 3, "{}", day.body);
            assert!(day.body.contains(&format!("<option value=\"{amy}\">")) && !day.body.contains(&format!("<option value=\"{bob}\">")), "{}", day.body);
            let form = |csrf: &str, incident: i64| -> Vec<(String, String)> {
                let mut f: Vec<(String, String)> = [("csrf", csrf), ("subject", "person"), ("id", "amy.pupil"), ("school", "oak")]
                    .iter()
                    .chain(&[("from", "2026-12-01"), ("to", "2026-12-01"), ("dns", "1"), ("web", "1")])
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                f.push(("incident".into(), incident.to_string()));
                f.push(("line".into(), boxes[0].clone()));
                f.push(("line".into(), boxes[1].clone()));
                f
            };
            let post = |f: &[(String, String)]| {
                let pairs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                http(addr, "POST", "/history/attach", &c, &pairs)
            };
            assert_eq!(post(&form("wrong", amy)).status, 403, "CSRF");
            assert_eq!(post(&form(&csrf, bob)).status, 404, "Amy's lines never go to Bob's incident");
            let done = post(&form(&csrf, amy));
            assert_eq!(done.status, 303, "{}", done.body);
            assert_eq!(done.header("location"), Some(format!("/incidents/{amy}").as_str()));
            let page = http(addr, "GET", &format!("/incidents/{amy}"), &c, &[]);
            assert!(page.body.contains("Web and DNS history of amy.pupil at oak, 2026-12-01 to 2026-12-01: 2 line(s)"), "{}", page.body);
            assert!(page.body.contains("2026-12-01 09:00:00 · dns · www.bet365.com · block · gambling"), "{}", page.body);
            assert!(page.body.contains("searched for &quot;how to hide cuts&quot;"), "{}", page.body);
            // An IT technician cannot attach, even with a form.
            let (it, it_csrf) = sign_in(addr, "it@oak.example", "it password 12", None);
            let mut f = form(&it_csrf, amy);
            f[0].1 = it_csrf.clone();
            let pairs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            assert_eq!(http(addr, "POST", "/history/attach", &it, &pairs).status, 403);
        })
        .await
        .unwrap();
        let audit = setup.store.audit_search(None, None, 500).await.unwrap();
        let reads: Vec<&str> = audit.iter().filter(|e| e.action == "history.read" && e.object == "person:oak/amy.pupil").map(|e| e.detail.as_str()).collect();
        for range in ["2026-12-01..2026-12-01 dns+web, 3 lines", "2026-12-01..2026-12-03 dns+web, 4 lines", "2026-12-01..2026-12-01 dns, 1 lines"] {
            assert!(reads.contains(&range), "each view with its range: {reads:?}");
        }
        assert!(audit.iter().any(|e| e.action == "history.export" && e.object == "person:oak/amy.pupil" && e.detail.ends_with("3 lines")), "{audit:?}");
        let attached: Vec<_> = audit.iter().filter(|e| e.action == "incident.history").collect();
        assert_eq!(attached.len(), 1, "{attached:?}");
        assert_eq!(attached[0].object, format!("incident:{amy}"));
        assert_eq!(attached[0].detail, "2 lines from person:oak/amy.pupil 2026-12-01..2026-12-01 dns+web");
        assert!(!audit.iter().any(|e| e.detail.contains("hide cuts")), "no pupil's words in the audit log");
        assert!(audit.iter().any(|e| e.action == "incident.history.denied"), "IT's try is audited");
        setup.store.close().await;
    }
}
