//! The DSL's incidents over real HTTP on every back end: the list and its
//! API, the branch an alert's concern starts on, evidence opened inline,
//! downloaded or refused, and the school's own audit log.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use haven_store::{Role, Store};

struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| l.split_once(": ").filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.to_string()))
    }
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

fn upload(addr: SocketAddr, id: i64, cookies: &str, csrf: &str, filename: &str, data: &str) -> u16 {
    let b = "XhavenBoundary";
    let body = format!(
        "--{b}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{csrf}\r\n--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n{data}\r\n--{b}--\r\n"
    );
    let raw = format!(
        "POST /incidents/{id}/evidence HTTP/1.1\r\nHost: x\r\nCookie: {cookies}\r\nContent-Type: multipart/form-data; boundary={b}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    send(addr, &raw).status
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
    let code = haven_store::sessions::totp_code(totp, jiff::Timestamp::now()).unwrap();
    let r = http(addr, "POST", "/login/second-factor", &c, &[("csrf", &csrf), ("code", &code)]);
    assert_eq!(r.status, 303, "{}", r.body);
    let c = cookie(&r).unwrap();
    let csrf = hidden(&http(addr, "GET", "/incidents", &c, &[]).body).unwrap_or(csrf);
    (c, csrf)
}

async fn alert(store: &Store, person: &str, category: &str, level: u8) -> i64 {
    let now = jiff::Timestamp::now();
    let occurrence = haven_store::alerts::NewOccurrence {
        at: now,
        level,
        source: "chat".into(),
        excerpt: "words".into(),
        url: None,
        explanation: String::new(),
        spans: "[]".into(),
        screenshot: None,
        screenshot_withheld: false,
        repeats: 1,
    };
    let a =
        haven_store::alerts::NewAlert { school: "oak".into(), person: person.into(), category: category.into(), level, due_at: Some(now), first: occurrence };
    store.insert_alert(&a).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dsl_lists_incidents_opens_evidence_and_reads_the_schools_audit_log() {
    for (store, dir) in haven_store::testing::stores().await {
        let now = jiff::Timestamp::now();
        store.upsert_school("oak", "Oak Primary", false).await.unwrap();
        let (_, totp) = store.add_account("dsl@oak.example", Role::Dsl, Some("oak"), "dsl password 1", now).await.unwrap();
        let totp = totp.unwrap();
        let key = store.add_api_key("dsl@oak.example", now).await.unwrap();
        let suicide = alert(&store, "amy", "Vulnerable person", 5).await;
        let offensive = alert(&store, "ben", "Offensive user", 3).await;
        let mut service = haven_safeguard::Service::new(store.clone(), &haven_policy::PolicySet::default());
        let folder = tempfile::tempdir().unwrap();
        service.evidence_dir = folder.path().join("evidence");
        let addr = haven_safeguard::serve(service, &["127.0.0.1:0".parse().unwrap()]).await.unwrap()[0];
        tokio::task::spawn_blocking(move || {
            let (c, csrf) = sign_in(addr, "dsl@oak.example", "dsl password 1", &totp);
            // The alert page offers the branch its concern starts on; raised without choosing, it is that branch.
            let page = http(addr, "GET", &format!("/alerts/{suicide}"), &c, &[]);
            assert!(page.body.contains("<option value=\"safeguarding\" selected>"), "{}", page.body);
            assert_eq!(http(addr, "POST", &format!("/alerts/{suicide}/incident"), &c, &[("csrf", &csrf), ("title", "Amy at risk")]).status, 303);
            assert_eq!(http(addr, "POST", &format!("/alerts/{offensive}/incident"), &c, &[("csrf", &csrf), ("title", "Ben's abuse")]).status, 303);
            let one = http(addr, "GET", "/incidents/1", &c, &[]);
            assert!(one.body.contains("A welfare concern about a pupil") && one.body.contains("safety plan"), "{}", one.body);
            assert!(!one.body.contains("sanctions under"), "a suicide risk is not a misuse case: {}", one.body);
            assert!(http(addr, "GET", "/incidents/2", &c, &[]).body.contains("sanctions under the acceptable use agreement"));

            // The list, its filters, and the API's pages.
            let list = http(addr, "GET", "/incidents?kind=misuse", &c, &[]);
            assert_eq!(list.status, 200);
            assert!(list.body.contains("Ben&#39;s abuse") || list.body.contains("Ben's abuse"), "{}", list.body);
            assert!(!list.body.contains("Amy at risk"));
            let p1: serde_json::Value = serde_json::from_str(&api(addr, "/api/v1/incidents?limit=1", &key).body).unwrap();
            assert_eq!(p1["total"], 2);
            assert_eq!(p1["incidents"][0]["title"], "Ben's abuse", "newest first");
            let next = p1["next_cursor"].as_str().unwrap();
            let p2: serde_json::Value = serde_json::from_str(&api(addr, &format!("/api/v1/incidents?limit=1&cursor={next}"), &key).body).unwrap();
            assert_eq!((p2["incidents"][0]["title"].as_str(), p2["next_cursor"].is_null()), (Some("Amy at risk"), true));
            let q: serde_json::Value = serde_json::from_str(&api(addr, "/api/v1/incidents?status=open&q=amy", &key).body).unwrap();
            assert_eq!(q["total"], 1);
            assert_eq!(api(addr, "/api/v1/incidents?cursor=bad!", &key).status, 400);

            // Evidence: a picture inline, anything else a download, both with the SHA-256.
            assert_eq!(upload(addr, 1, &c, &csrf, "message.gif", "GIF89a a picture of the message"), 303);
            assert_eq!(upload(addr, 1, &c, &csrf, "note.html", "<script>alert(1)</script>"), 303);
            let shown = http(addr, "GET", "/incidents/1", &c, &[]);
            let links: Vec<String> = shown
                .body
                .split("href=\"/incidents/1/evidence/")
                .skip(1)
                .filter_map(|t| t.split('"').next())
                .map(|n| format!("/incidents/1/evidence/{n}"))
                .collect();
            assert_eq!(links.len(), 2, "{}", shown.body);
            let gif = http(addr, "GET", &links[0], &c, &[]);
            assert_eq!((gif.status, gif.header("content-type").as_deref()), (200, Some("image/gif")));
            assert!(gif.header("content-disposition").unwrap().starts_with("inline"));
            assert_eq!(gif.header("x-evidence-sha256").unwrap().len(), 64);
            let html = http(addr, "GET", &links[1], &c, &[]);
            assert_eq!(html.header("content-type").as_deref(), Some("application/octet-stream"));
            assert!(html.header("content-disposition").unwrap().starts_with("attachment"), "never rendered");
            // Possibly illegal: the picture is refused to everyone; the note still downloads.
            assert_eq!(http(addr, "POST", "/incidents/1/branch", &c, &[("csrf", &csrf), ("kind", "possibly-illegal")]).status, 400, "a reason");
            let moved = http(addr, "POST", "/incidents/1/branch", &c, &[("csrf", &csrf), ("kind", "possibly-illegal"), ("reason", "Images of another child")]);
            assert_eq!(moved.status, 303);
            assert_eq!(http(addr, "GET", &links[0], &c, &[]).status, 403, "never shown for a possibly illegal incident");
            assert!(http(addr, "GET", &links[1], &c, &[]).header("content-disposition").unwrap().starts_with("attachment"));
            assert!(http(addr, "GET", "/incidents/1", &c, &[]).body.contains("Images of another child"));

            // The school's own audit log, actors by name.
            let log = http(addr, "GET", "/admin/audit", &c, &[]);
            assert_eq!(log.status, 200);
            for what in ["incident.evidence.read", "incident.evidence.refused", "incident.branch", "dsl@oak.example"] {
                assert!(log.body.contains(what), "{what}: {}", log.body);
            }
        })
        .await
        .unwrap();
        drop(dir);
        store.close().await;
    }
}
