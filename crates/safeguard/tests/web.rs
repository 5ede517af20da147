//! The web app over real HTTP on loopback: sign-in with lockout and the
//! second factor, CSRF, roles, the alert flow, and the public report page.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

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

/// The app on every back end (SQLite, and PostgreSQL when `HAVEN_TEST_POSTGRES` is set).
async fn setups() -> Vec<(SocketAddr, Store, HashMap<&'static str, String>, Option<tempfile::TempDir>)> {
    let mut out = Vec::new();
    for (store, dir) in haven_store::testing::stores().await {
        store.upsert_school("oak", "Oak Primary", false).await.unwrap();
        let now = jiff::Timestamp::now();
        let mut secrets = HashMap::new();
        let (_, totp) = store.add_account("dsl@oak.example", Role::Dsl, Some("oak"), "dsl password 1", now).await.unwrap();
        secrets.insert("totp", totp.unwrap());
        store.add_account("t@oak.example", Role::Teacher, Some("oak"), "teacher password", now).await.unwrap();
        store.add_account("gov@oak.example", Role::Governor, Some("oak"), "governor password", now).await.unwrap();
        let (_, token) = store.add_device("oak", "PC", now).await.unwrap();
        secrets.insert("device", token);
        let mut service = haven_safeguard::Service::new(store.clone(), &haven_policy::PolicySet::default());
        if let Some(d) = &dir {
            service.evidence_dir = d.path().join("evidence");
        }
        let addr = haven_safeguard::serve(service, &["127.0.0.1:0".parse().unwrap()]).await.unwrap()[0];
        out.push((addr, store, secrets, dir));
    }
    out
}

fn send_event(addr: SocketAddr, token: &str, text: &str) -> u16 {
    event(addr, token, text).split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dsl_signs_in_with_a_second_factor_and_works_an_alert() {
    for (addr, store, secrets, _dir) in setups().await {
        tokio::task::spawn_blocking(move || {
            assert_eq!(send_event(addr, &secrets["device"], "i am going to kill myself tonight, i have the pills"), 201);
            // Password, then the second factor.
            let r = http(addr, "POST", "/login", "", &[("email", "dsl@oak.example"), ("password", "dsl password 1")]);
            assert_eq!(r.status, 303);
            assert_eq!(r.header("location"), Some("/login/second-factor"));
            let c = format!("haven_session={}", r.cookie("haven_session").unwrap());
            assert!(r.headers.iter().any(|(k, v)| k == "set-cookie" && v.contains("HttpOnly") && v.contains("SameSite=Strict")));
            assert_eq!(http(addr, "GET", "/alerts", &c, &[]).status, 303, "no alerts before the second factor");
            let page = http(addr, "GET", "/login/second-factor", &c, &[]);
            let csrf = page.hidden("csrf").unwrap();
            let code = haven_store::sessions::totp_code(&secrets["totp"], jiff::Timestamp::now()).unwrap();
            assert_eq!(http(addr, "POST", "/login/second-factor", &c, &[("code", &code)]).status, 403, "no CSRF token");
            assert_eq!(http(addr, "POST", "/login/second-factor", &c, &[("csrf", &csrf), ("code", "000000")]).status, if code == "000000" { 303 } else { 401 });
            assert_eq!(http(addr, "POST", "/login/second-factor", &c, &[("csrf", &csrf), ("code", &code)]).status, 303);
            // The queue and the alert.
            let q = http(addr, "GET", "/alerts", &c, &[]);
            assert_eq!(q.status, 200);
            assert!(q.body.contains("Vulnerable person") && q.body.contains("amy.pupil") && q.body.contains("l5"), "{}", q.body);
            assert_eq!(q.header("x-frame-options"), Some("DENY"));
            let a = http(addr, "GET", "/alerts/1", &c, &[]);
            assert!(a.body.contains("<mark>") && a.body.contains("Acknowledge"), "{}", a.body);
            assert_eq!(http(addr, "POST", "/alerts/1/act", &c, &[("kind", "acknowledged")]).status, 403, "CSRF");
            assert_eq!(http(addr, "POST", "/alerts/1/act", &c, &[("csrf", &csrf), ("kind", "acknowledged")]).status, 303);
            assert_eq!(
                http(addr, "POST", "/alerts/1/act", &c, &[("csrf", &csrf), ("kind", "action"), ("note", "Called parents; referred to CAMHS")]).status,
                303
            );
            assert_eq!(http(addr, "POST", "/alerts/1/act", &c, &[("csrf", &csrf), ("kind", "closed")]).status, 400, "closing needs a reason");
            assert_eq!(http(addr, "POST", "/alerts/1/act", &c, &[("csrf", &csrf), ("kind", "closed"), ("note", "Safety plan in place")]).status, 303);
            let a = http(addr, "GET", "/alerts/1", &c, &[]);
            assert!(a.body.contains("status <strong>closed</strong>") && a.body.contains("referred to CAMHS"), "{}", a.body);
            assert_eq!(http(addr, "POST", "/logout", &c, &[("csrf", &csrf)]).status, 303);
            assert_eq!(http(addr, "GET", "/alerts", &c, &[]).status, 303, "signed out");
        })
        .await
        .unwrap();
        let audit = store.audit_search(Some("alert:1"), None, 50).await.unwrap();
        for action in ["alert.create", "alert.read", "alert.acknowledged", "alert.action", "alert.closed"] {
            assert!(audit.iter().any(|e| e.action == action), "{action} audited");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_lockout_and_the_public_report() {
    for (addr, store, secrets, _dir) in setups().await {
        tokio::task::spawn_blocking(move || {
            assert_eq!(send_event(addr, &secrets["device"], "nobody likes you, everyone hates you"), 201);
            // A teacher signs in without a second factor but cannot read alerts.
            let r = http(addr, "POST", "/login", "", &[("email", "t@oak.example"), ("password", "teacher password")]);
            let c = format!("haven_session={}", r.cookie("haven_session").unwrap());
            assert_eq!(http(addr, "GET", "/alerts", &c, &[]).status, 403);
            assert_eq!(http(addr, "GET", "/alerts/1", &c, &[]).status, 404);
            // A governor sees totals without names.
            let r = http(addr, "POST", "/login", "", &[("email", "gov@oak.example"), ("password", "governor password")]);
            let g = format!("haven_session={}", r.cookie("haven_session").unwrap());
            let t = http(addr, "GET", "/totals", &g, &[]);
            assert!(t.body.contains("Bullying/Violence") && !t.body.contains("amy.pupil"), "{}", t.body);
            // Five wrong passwords lock the account, even against the right one.
            for _ in 0..4 {
                assert_eq!(http(addr, "POST", "/login", "", &[("email", "t@oak.example"), ("password", "nope")]).status, 401);
            }
            assert_eq!(http(addr, "POST", "/login", "", &[("email", "t@oak.example"), ("password", "nope")]).status, 429, "the fifth locks");
            let locked = http(addr, "POST", "/login", "", &[("email", "t@oak.example"), ("password", "teacher password")]);
            assert_eq!(locked.status, 429);
            assert!(locked.body.contains("locked until"));
            // The public report: its form token must match its cookie.
            let p = http(addr, "GET", "/report", "", &[]);
            let token = p.hidden("form").unwrap();
            let fc = format!("haven_form={}", p.cookie("haven_form").unwrap());
            let form = [
                ("form", token.as_str()),
                ("school", "oak"),
                ("text", "A boy in year 8 said an adult online asked him to keep their chats secret"),
                ("contact", ""),
            ];
            assert_eq!(http(addr, "POST", "/report", "", &form).status, 403, "no cookie: refused");
            let ok = http(addr, "POST", "/report", &fc, &form);
            assert_eq!(ok.status, 200);
            assert!(ok.body.contains("reached the safeguarding team"));
        })
        .await
        .unwrap();
        let lead = store.add_account("lead@trust.example", Role::TrustSafeguardingLead, None, "lead password", jiff::Timestamp::now()).await.unwrap().0;
        let all = store.alerts_for(&lead, 10).await.unwrap();
        assert!(all.iter().any(|a| a.source == "report"), "{all:?}");
    }
}

fn multipart(addr: SocketAddr, path: &str, cookies: &str, csrf: &str, filename: &str, content_type: &str, data: &str) -> Reply {
    let b = "XhavenBoundary";
    let body = format!(
        "--{b}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{csrf}\r\n--{b}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nfrom the pupil's phone\r\n\
         --{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: {content_type}\r\n\r\n{data}\r\n--{b}--\r\n"
    );
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "POST {path} HTTP/1.1\r\nHost: x\r\nCookie: {cookies}\r\nContent-Type: multipart/form-data; boundary={b}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Reply { status, headers: Vec::new(), body: raw }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn possibly_illegal_incidents_never_store_images() {
    for (addr, _store, secrets, _dir) in setups().await {
        tokio::task::spawn_blocking(move || {
            assert_eq!(send_event(addr, &secrets["device"], "dont tell your parents, this is our little secret, send me a picture"), 201);
            let r = http(addr, "POST", "/login", "", &[("email", "dsl@oak.example"), ("password", "dsl password 1")]);
            let c = format!("haven_session={}", r.cookie("haven_session").unwrap());
            let csrf = http(addr, "GET", "/login/second-factor", &c, &[]).hidden("csrf").unwrap();
            let code = haven_store::sessions::totp_code(&secrets["totp"], jiff::Timestamp::now()).unwrap();
            assert_eq!(http(addr, "POST", "/login/second-factor", &c, &[("csrf", &csrf), ("code", &code)]).status, 303);
            let raised = http(addr, "POST", "/alerts/1/incident", &c, &[("csrf", &csrf), ("title", "Adult grooming a pupil"), ("kind", "possibly-illegal")]);
            assert_eq!(raised.status, 303, "{}", raised.body);
            let page = http(addr, "GET", "/incidents/1", &c, &[]);
            assert!(page.body.contains("CEOP") && page.body.contains("Do not investigate the device"), "{}", page.body);
            let img = multipart(addr, "/incidents/1/evidence", &c, &csrf, "photo.png", "image/png", "\u{89}PNG fake");
            assert_eq!(img.status, 422, "images are never stored for a possibly illegal incident");
            let txt = multipart(addr, "/incidents/1/evidence", &c, &csrf, "where.txt", "text/plain", "The images are on the phone in the DSL's safe");
            assert_eq!(txt.status, 303);
            assert_eq!(multipart(addr, "/incidents/1/evidence", &c, "wrong", "w.txt", "text/plain", "x").status, 403, "CSRF");
        })
        .await
        .unwrap();
    }
}

/// Signs in (with the second factor where the role needs it); the cookie and CSRF token.
fn sign_in(addr: SocketAddr, email: &str, password: &str, totp: Option<&str>) -> (String, String) {
    let r = http(addr, "POST", "/login", "", &[("email", email), ("password", password)]);
    let c = format!("haven_session={}", r.cookie("haven_session").unwrap());
    let page = http(addr, "GET", "/login/second-factor", &c, &[]);
    let csrf = page.hidden("csrf").unwrap_or_default();
    if let Some(secret) = totp {
        let code = haven_store::sessions::totp_code(secret, jiff::Timestamp::now()).unwrap();
        assert_eq!(http(addr, "POST", "/login/second-factor", &c, &[("csrf", &csrf), ("code", &code)]).status, 303);
    }
    (c, csrf)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_out_lists_are_edited_in_the_browser_and_the_trust_searches_the_audit_log() {
    for (addr, store, secrets, _dir) in setups().await {
        let (_, lead_totp) =
            store.add_account("lead@trust.example", Role::TrustSafeguardingLead, None, "lead password 1", jiff::Timestamp::now()).await.unwrap();
        let lead_totp = lead_totp.unwrap();
        let store2 = store.clone();
        tokio::task::spawn_blocking(move || {
            let (c, csrf) = sign_in(addr, "dsl@oak.example", "dsl password 1", Some(&secrets["totp"]));
            // The form carries no CSRF token from a session: refused.
            assert_eq!(
                http(addr, "POST", "/admin/oncall", &c, &[("school", "oak"), ("name", "Head"), ("email", "head@oak.example"), ("priority", "1")]).status,
                403
            );
            let csrf_page = http(addr, "GET", "/admin/oncall", &c, &[]).hidden("csrf").unwrap();
            assert_eq!(csrf_page, csrf);
            assert_eq!(
                http(
                    addr,
                    "POST",
                    "/admin/oncall",
                    &c,
                    &[("csrf", &csrf), ("school", "oak"), ("name", "Head"), ("email", "head@oak.example"), ("priority", "1")]
                )
                .status,
                303
            );
            assert_eq!(
                http(
                    addr,
                    "POST",
                    "/admin/oncall",
                    &c,
                    &[("csrf", &csrf), ("school", ""), ("name", "Trust lead"), ("email", "l@t.example"), ("priority", "1")]
                )
                .status,
                403,
                "a school DSL cannot edit the trust's list"
            );
            assert!(http(addr, "GET", "/admin/oncall", &c, &[]).body.contains("head@oak.example"));
            assert_eq!(http(addr, "GET", "/admin/audit", &c, &[]).status, 403, "the trust searches the audit log");
            let (tc, _) = sign_in(addr, "t@oak.example", "teacher password", None);
            assert_eq!(http(addr, "GET", "/admin/oncall", &tc, &[]).status, 403);
            let (lc, _) = sign_in(addr, "lead@trust.example", "lead password 1", Some(&lead_totp));
            let a = http(addr, "GET", "/admin/audit?object=&actor=", &lc, &[]);
            assert_eq!(a.status, 200);
            assert!(a.body.contains("oncall.add") && a.body.contains("signin.totp"), "{}", a.body);
        })
        .await
        .unwrap();
        assert_eq!(store2.oncall(Some("oak")).await.unwrap().len(), 1);
    }
}

/// Sends a monitoring event; the API's answer.
fn event(addr: SocketAddr, token: &str, text: &str) -> String {
    let body = format!(r#"{{"person":"amy.pupil","text":"{text}","source":"typed"}}"#);
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "POST /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    raw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safeguarding_leads_add_and_exclude_monitoring_phrases_with_reasons() {
    for (addr, store, secrets, _dir) in setups().await {
        let store2 = store.clone();
        tokio::task::spawn_blocking(move || {
            let device = secrets["device"].clone();
            let slang = "see you at the zorblax shed after school";
            assert!(!event(addr, &device, slang).contains("Bullying"), "not a phrase Haven knows yet");
            let (c, csrf) = sign_in(addr, "dsl@oak.example", "dsl password 1", Some(&secrets["totp"]));
            let add = |form: &[(&str, &str)]| {
                let mut f = vec![("csrf", csrf.as_str())];
                f.extend_from_slice(form);
                http(addr, "POST", "/admin/lexicon", &c, &f)
            };
            let slang_form = [("kind", "phrase"), ("phrase", "zorblax shed"), ("category", "bullying"), ("weight", "3")];
            assert_eq!(http(addr, "POST", "/admin/lexicon", &c, &slang_form).status, 403, "no CSRF token");
            let r = add(&[&slang_form[..], &[("reason", " ")]].concat());
            assert_eq!(r.status, 400);
            assert!(r.body.contains("give a reason"), "{}", r.body);
            let r = add(&[("kind", "phrase"), ("phrase", "kkk"), ("category", "bullying"), ("weight", "3"), ("reason", "x")]);
            assert!(r.status == 400 && r.body.contains("under 3 letters"), "{}", r.body);
            assert_eq!(add(&[&slang_form[..], &[("reason", "Year 9 slang for a fight after school")]].concat()).status, 303);
            let answer = event(addr, &device, slang);
            assert!(answer.contains("Bullying/Violence"), "in force for the next event: {answer}");
            let tried = http(addr, "POST", "/admin/lexicon/try", &c, &[("csrf", &csrf), ("text", slang)]);
            assert!(tried.body.contains("Bullying/Violence (level 3)"), "{}", tried.body);
            // An exclusion: the film the media studies class is watching.
            let film = "suicide squad tonight at mine";
            assert!(event(addr, &device, film).contains("Vulnerable person"));
            assert_eq!(add(&[("kind", "exclude"), ("phrase", "suicide squad"), ("reason", "the film Year 10 study")]).status, 303);
            assert!(!event(addr, &device, film).contains("Vulnerable person"));
            assert!(event(addr, &device, "i want to commit suicide tonight").contains("Vulnerable person"), "the word alone still counts");
            // Removing the slang (the newest phrase is first in the table) needs a reason too.
            let listed = http(addr, "GET", "/admin/lexicon", &c, &[]);
            assert!(listed.body.contains("Year 9 slang") && listed.body.contains("the film Year 10 study"), "{}", listed.body);
            let page = http(addr, "GET", "/admin/lexicon", &c, &[]);
            let slang_id = page.body.split("zorblax shed").nth(1).and_then(|rest| {
                let at = rest.find("name=\"id\" value=\"")? + 17;
                rest[at..].split('"').next().map(str::to_string)
            });
            let slang_id = slang_id.expect("a remove form for the slang");
            assert_eq!(http(addr, "POST", "/admin/lexicon/remove", &c, &[("csrf", &csrf), ("id", &slang_id), ("reason", "")]).status, 400);
            assert_eq!(http(addr, "POST", "/admin/lexicon/remove", &c, &[("csrf", &csrf), ("id", &slang_id), ("reason", "no longer used")]).status, 303);
            assert!(!event(addr, &device, "meet at the zorblax shed at lunch").contains("Bullying"));
            assert!(http(addr, "GET", "/admin/lexicon", &c, &[]).body.contains("no longer used"), "kept as history");
            // Teachers do not decide what monitoring looks for.
            let (tc, tcsrf) = sign_in(addr, "t@oak.example", "teacher password", None);
            assert_eq!(http(addr, "GET", "/admin/lexicon", &tc, &[]).status, 403);
            assert_eq!(http(addr, "POST", "/admin/lexicon", &tc, &[("csrf", &tcsrf), ("kind", "exclude"), ("phrase", "suicide"), ("reason", "x")]).status, 403);
        })
        .await
        .unwrap();
        let actions: Vec<String> = store2.audit_search(None, None, 100).await.unwrap().into_iter().map(|e| e.action).collect();
        for a in ["lexicon.add", "lexicon.exclude", "lexicon.remove"] {
            assert!(actions.iter().any(|x| x == a), "{a} audited: {actions:?}");
        }
        assert_eq!(store2.lexicon_entries().await.unwrap().iter().filter(|e| e.removed.is_none()).count(), 1, "the exclusion is in force");
    }
}
