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
        // Evidence in a folder of the test's own, on every back end.
        let dir = dir.or_else(|| tempfile::tempdir().ok());
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
            if code != "000000" {
                assert_eq!(http(addr, "POST", "/login/second-factor", &c, &[("csrf", &csrf), ("code", "000000")]).status, 401);
            }
            let (c, csrf) = complete(addr, &c, &csrf, &code);
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
            assert!(a.body.contains("name=\"verdict\" value=\"real-concern\" required"), "the close form asks for a verdict");
            let no_verdict = http(addr, "POST", "/alerts/1/act", &c, &[("csrf", &csrf), ("kind", "closed"), ("note", "Safety plan in place")]);
            assert_eq!(no_verdict.status, 400, "closing needs a verdict");
            assert!(no_verdict.body.contains("real concern, or not a concern"), "{}", no_verdict.body);
            let close = [("csrf", csrf.as_str()), ("kind", "closed"), ("note", "Safety plan in place"), ("verdict", "real-concern")];
            assert_eq!(http(addr, "POST", "/alerts/1/act", &c, &close).status, 303);
            let a = http(addr, "GET", "/alerts/1", &c, &[]);
            assert!(a.body.contains("status <strong>closed</strong>") && a.body.contains("referred to CAMHS"), "{}", a.body);
            assert!(a.body.contains("<strong class=\"verdict\">real concern</strong>"), "the verdict is shown: {}", a.body);
            assert_eq!(http(addr, "POST", "/logout", &c, &[("csrf", &csrf)]).status, 303);
            assert_eq!(http(addr, "GET", "/alerts", &c, &[]).status, 303, "signed out");
        })
        .await
        .unwrap();
        let audit = store.audit_search(Some("alert:1"), None, 50).await.unwrap();
        for action in ["alert.create", "alert.read", "alert.acknowledged", "alert.action", "alert.closed"] {
            assert!(audit.iter().any(|e| e.action == action), "{action} audited");
        }
        assert!(audit.iter().any(|e| e.action == "alert.closed" && e.detail == "verdict: real concern"), "the verdict is in the audit log");
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
            let (c, csrf) = complete(addr, &c, &csrf, &code);
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
        return complete(addr, &c, &csrf, &code);
    }
    (c, csrf)
}

/// Gives the second factor for a half-signed-in session; the new session's cookie and CSRF token.
fn complete(addr: SocketAddr, half: &str, csrf: &str, code: &str) -> (String, String) {
    let r = http(addr, "POST", "/login/second-factor", half, &[("csrf", csrf), ("code", code)]);
    assert_eq!(r.status, 303, "{}", r.body);
    let c = format!("haven_session={}", r.cookie("haven_session").expect("a new session cookie"));
    assert_ne!(c, half, "the session id changes after the second factor");
    let csrf = http(addr, "GET", "/totals", &c, &[]).hidden("csrf").expect("a CSRF token on a signed-in page");
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
            let own = http(addr, "GET", "/admin/audit", &c, &[]);
            assert_eq!(own.status, 200, "a school's DSL reads their own school's audit log");
            assert!(!own.body.contains("oncall.add"), "not the trust's rows: {}", own.body);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safeguarding_leads_teach_by_example_sentences_with_reasons() {
    for (addr, store, secrets, _dir) in setups().await {
        let store2 = store.clone();
        tokio::task::spawn_blocking(move || {
            let device = secrets["device"].clone();
            let (c, csrf) = sign_in(addr, "dsl@oak.example", "dsl password 1", Some(&secrets["totp"]));
            let add = |form: &[(&str, &str)]| {
                let mut f = vec![("csrf", csrf.as_str())];
                f.extend_from_slice(form);
                http(addr, "POST", "/admin/lexicon", &c, &f)
            };
            // A disclosure in words no list carries, taught as level 5.
            let plan = "meet me at the blue bench by the canal on friday, after that you wont have to see me again";
            let example = [("kind", "example"), ("phrase", plan), ("category", "vulnerable"), ("level", "5")];
            assert_eq!(http(addr, "POST", "/admin/lexicon", &c, &[&example[..], &[("reason", "x")]].concat()).status, 403, "no CSRF token");
            let r = add(&[&example[..], &[("reason", "  ")]].concat());
            assert!(r.status == 400 && r.body.contains("give a reason"), "{}", r.body);
            let r = add(&[("kind", "example"), ("phrase", plan), ("category", "nonsense"), ("level", "5"), ("reason", "why")]);
            assert!(r.status == 400 && r.body.contains("not a category"), "{}", r.body);
            let r = add(&[("kind", "example"), ("phrase", plan), ("category", "vulnerable"), ("level", "9"), ("reason", "why")]);
            assert!(r.status == 400 && r.body.contains("levels run from 1"), "{}", r.body);
            assert_eq!(add(&[&example[..], &[("reason", "how a Year 10 pupil said goodbye before an overdose")]].concat()).status, 303);
            let answer = event(addr, &device, plan);
            assert!(answer.contains("Vulnerable person") && answer.contains("\"level\":5"), "in force for the next event: {answer}");
            // A harmless message the rules raise, taught as not a concern.
            let show = "i literally died on stage, we killed it at the dance show";
            let fine = [("kind", "example"), ("phrase", show), ("category", "none"), ("level", "3"), ("reason", "drama club talk after the show")];
            assert_eq!(add(&fine).status, 303);
            let answer = event(addr, &device, show);
            assert!(!answer.contains("\"level\":3") && !answer.contains("\"level\":4") && !answer.contains("\"level\":5"), "{answer}");
            let page = http(addr, "GET", "/admin/lexicon", &c, &[]);
            assert!(page.body.contains("Vulnerable person at level 5") && page.body.contains("Not a concern"), "{}", page.body);
            assert!(page.body.contains("drama club talk after the show"));
            // The try box says what a text was close to.
            let tried = http(addr, "POST", "/admin/lexicon/try", &c, &[("csrf", &csrf), ("text", plan)]);
            assert!(tried.body.contains("Nearest of your example sentences") && tried.body.contains("similarity 1.00"), "{}", tried.body);
            assert!(tried.body.contains("Close to") && tried.body.contains("like a DSL&#39;s example"), "{}", tried.body);
            // Removing an example needs a reason, and it no longer applies.
            let id = page.body.split("blue bench").nth(1).and_then(|rest| {
                let at = rest.find("name=\"id\" value=\"")? + 17;
                rest[at..].split('"').next().map(str::to_string)
            });
            let id = id.expect("a remove form for the example");
            assert_eq!(http(addr, "POST", "/admin/lexicon/remove", &c, &[("csrf", &csrf), ("id", &id), ("reason", "")]).status, 400);
            assert_eq!(http(addr, "POST", "/admin/lexicon/remove", &c, &[("csrf", &csrf), ("id", &id), ("reason", "the pupil has left")]).status, 303);
            let tried = http(addr, "POST", "/admin/lexicon/try", &c, &[("csrf", &csrf), ("text", plan)]);
            assert!(!tried.body.contains("like a DSL&#39;s example"), "no longer taught: {}", tried.body);
            assert!(http(addr, "GET", "/admin/lexicon", &c, &[]).body.contains("the pupil has left"), "kept as history");
            // Teachers do not teach monitoring.
            let (tc, tcsrf) = sign_in(addr, "t@oak.example", "teacher password", None);
            assert_eq!(http(addr, "POST", "/admin/lexicon", &tc, &[&[("csrf", tcsrf.as_str())][..], &fine[..]].concat()).status, 403);
        })
        .await
        .unwrap();
        let audit = store2.audit_search(None, None, 100).await.unwrap();
        let taught: Vec<&str> = audit.iter().filter(|e| e.action == "lexicon.example").map(|e| e.detail.as_str()).collect();
        assert_eq!(taught.len(), 2, "{taught:?}");
        assert!(taught.iter().any(|d| d.starts_with("treat as vulnerable at level 5: how a Year 10")), "{taught:?}");
        assert!(taught.iter().any(|d| d.starts_with("treat as not a concern: drama club")), "{taught:?}");
        assert!(audit.iter().all(|e| !e.detail.contains("blue bench")), "the sentence itself stays out of the audit log");
        assert!(audit.iter().any(|e| e.action == "lexicon.remove" && e.detail == "the pupil has left"));
    }
}

/// [`http`] with extra request headers (a reverse proxy's `X-Forwarded-For`, an API key).
fn http_with(addr: SocketAddr, method: &str, path: &str, extra: &[(&str, &str)], cookies: &str, form: &[(&str, &str)]) -> Reply {
    let body: String = form.iter().map(|(k, v)| format!("{k}={}", enc(v))).collect::<Vec<_>>().join("&");
    let extra: String = extra.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    let mut s = TcpStream::connect(addr).unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Cookie: {cookies}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
    let headers = lines.filter_map(|l| l.split_once(": ").map(|(k, v)| (k.to_string(), v.to_string()))).collect();
    Reply { status, headers, body: body.to_string() }
}

/// A code for `secret` that is wrong now (none of the three steps allowed for drift).
fn wrong_code(secret: &str) -> String {
    let now = jiff::Timestamp::now();
    let near: Vec<String> = [-30, 0, 30, 60]
        .iter()
        .filter_map(|d| haven_store::sessions::totp_code(secret, now.saturating_add(jiff::SignedDuration::from_secs(*d)).unwrap()))
        .collect();
    (0..).map(|n: u32| format!("{:06}", 314_159 + n)).find(|c| !near.contains(c)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_codes_end_the_half_signed_in_session_and_a_code_works_once() {
    for (addr, store, secrets, _dir) in setups().await {
        let (_, lead) = store.add_account("lead@trust.example", Role::TrustSafeguardingLead, None, "lead password 1", jiff::Timestamp::now()).await.unwrap();
        let lead = lead.unwrap();
        tokio::task::spawn_blocking(move || {
            // The session id changes after the second factor; the half-signed-in one is gone.
            let r = http(addr, "POST", "/login", "", &[("email", "lead@trust.example"), ("password", "lead password 1")]);
            let half = format!("haven_session={}", r.cookie("haven_session").unwrap());
            assert!(r.header("set-cookie").unwrap().contains("Max-Age=300"), "a half-signed-in session lasts minutes: {:?}", r.header("set-cookie"));
            let csrf = http(addr, "GET", "/login/second-factor", &half, &[]).hidden("csrf").unwrap();
            let code = haven_store::sessions::totp_code(&lead, jiff::Timestamp::now()).unwrap();
            let (done, _) = complete(addr, &half, &csrf, &code);
            assert_eq!(http(addr, "GET", "/alerts", &done, &[]).status, 200);
            assert_eq!(http(addr, "GET", "/alerts", &half, &[]).status, 303, "the id seen before the code no longer works");
            // The same code again, from a second sign-in: refused.
            let r = http(addr, "POST", "/login", "", &[("email", "lead@trust.example"), ("password", "lead password 1")]);
            let again = format!("haven_session={}", r.cookie("haven_session").unwrap());
            let csrf = http(addr, "GET", "/login/second-factor", &again, &[]).hidden("csrf").unwrap();
            assert_eq!(http(addr, "POST", "/login/second-factor", &again, &[("csrf", &csrf), ("code", &code)]).status, 401, "a code works once");

            // Five wrong codes end the half-signed-in session: the right one is then too late.
            let r = http(addr, "POST", "/login", "", &[("email", "dsl@oak.example"), ("password", "dsl password 1")]);
            let c = format!("haven_session={}", r.cookie("haven_session").unwrap());
            let csrf = http(addr, "GET", "/login/second-factor", &c, &[]).hidden("csrf").unwrap();
            let wrong = wrong_code(&secrets["totp"]);
            let statuses: Vec<u16> = (0..5).map(|_| http(addr, "POST", "/login/second-factor", &c, &[("csrf", &csrf), ("code", &wrong)]).status).collect();
            assert_eq!(statuses[..4], [401, 401, 401, 401]);
            assert!(statuses[4] == 401 || statuses[4] == 429, "{statuses:?}");
            let right = haven_store::sessions::totp_code(&secrets["totp"], jiff::Timestamp::now()).unwrap();
            let late = http(addr, "POST", "/login/second-factor", &c, &[("csrf", &csrf), ("code", &right)]);
            assert_eq!((late.status, late.header("location")), (303, Some("/login")), "the session was ended");
            let locked = http(addr, "POST", "/login", "", &[("email", "dsl@oak.example"), ("password", "dsl password 1")]);
            assert_eq!(locked.status, 429, "the wrong codes counted against the account");
        })
        .await
        .unwrap();
        let audit: Vec<String> = store.audit_search(None, None, 200).await.unwrap().into_iter().map(|e| e.detail).collect();
        assert!(audit.iter().any(|d| d == "replayed"), "the replay is audited");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_answer_for_an_unknown_email_and_a_network_that_keeps_guessing_waits() {
    for (addr, _store, _secrets, _dir) in setups().await {
        tokio::task::spawn_blocking(move || {
            for n in 1..=5 {
                let known = http(addr, "POST", "/login", "", &[("email", "t@oak.example"), ("password", "not it")]);
                let unknown = http(addr, "POST", "/login", "", &[("email", "nobody@oak.example"), ("password", "not it")]);
                assert_eq!(known.status, unknown.status, "attempt {n}");
                if n < 5 {
                    assert_eq!(known.body, unknown.body, "attempt {n}");
                } else {
                    assert_eq!(known.status, 429);
                    assert!(known.body.contains("locked until") && unknown.body.contains("locked until"), "an unknown e-mail locks like a real one");
                }
            }
            // One network guessing across many e-mails waits; another does not.
            let from = |ip: &'static str| [("X-Forwarded-For", ip)];
            let mut statuses = Vec::new();
            for n in 0..=haven_safeguard::signin::PER_ADDRESS {
                let email = format!("guess{n}@oak.example");
                statuses.push(http_with(addr, "POST", "/login", &from("198.51.100.9"), "", &[("email", &email), ("password", "guess")]).status);
            }
            assert!(statuses[..statuses.len() - 1].iter().all(|s| *s == 401), "{statuses:?}");
            let waits = http_with(addr, "POST", "/login", &from("198.51.100.9"), "", &[("email", "gov@oak.example"), ("password", "governor password")]);
            assert_eq!(waits.status, 429);
            assert!(waits.body.contains("this network") && waits.header("retry-after").is_some(), "{}", waits.body);
            let other = http_with(addr, "POST", "/login", &from("198.51.100.10"), "", &[("email", "gov@oak.example"), ("password", "governor password")]);
            assert_eq!(other.status, 303, "another address signs in");
            assert!(!other.header("set-cookie").unwrap().contains("Secure"), "plain HTTP: no Secure");
            // Behind a TLS reverse proxy the cookie is Secure.
            let tls =
                http_with(addr, "POST", "/login", &[("X-Forwarded-Proto", "https")], "", &[("email", "gov@oak.example"), ("password", "governor password")]);
            assert!(tls.header("set-cookie").unwrap().contains("; Secure"), "{:?}", tls.header("set-cookie"));
        })
        .await
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_admins_disable_accounts_and_revoke_keys_and_devices_in_the_browser() {
    for (addr, store, secrets, _dir) in setups().await {
        let now = jiff::Timestamp::now();
        let (_, admin_totp) = store.add_account("admin@trust.example", Role::TrustAdmin, None, "admin password 1", now).await.unwrap();
        let admin_totp = admin_totp.unwrap();
        let key = store.add_api_key("dsl@oak.example", now).await.unwrap();
        let key_id = store.api_keys().await.unwrap()[0].id;
        let device_id = store.devices().await.unwrap()[0].device.id;
        tokio::task::spawn_blocking(move || {
            let api = |key: &str| http_with(addr, "GET", "/api/v1/alerts", &[("Authorization", &format!("Bearer {key}"))], "", &[]).status;
            assert_eq!(api(&key), 200);
            let (tc, _) = sign_in(addr, "t@oak.example", "teacher password", None);
            assert_eq!(http(addr, "GET", "/totals", &tc, &[]).status, 200);
            let (dc, _) = sign_in(addr, "dsl@oak.example", "dsl password 1", Some(&secrets["totp"]));
            assert_eq!(http(addr, "GET", "/admin/accounts", &dc, &[]).status, 403, "only the trust's admins");
            let (ac, csrf) = sign_in(addr, "admin@trust.example", "admin password 1", Some(&admin_totp));
            let page = http(addr, "GET", "/admin/accounts", &ac, &[]);
            assert_eq!(page.status, 200);
            assert!(page.body.contains("t@oak.example") && page.body.contains("\">PC</td>"), "{}", page.body);
            let disable = [("email", "t@oak.example"), ("do", "disable")];
            assert_eq!(http(addr, "POST", "/admin/accounts/act", &ac, &disable).status, 403, "CSRF");
            assert_eq!(http(addr, "POST", "/admin/accounts/act", &ac, &[&disable[..], &[("csrf", &csrf)]].concat()).status, 303);
            assert_eq!(http(addr, "GET", "/totals", &tc, &[]).status, 303, "the disabled account's session ended at once");
            let refused = http(addr, "POST", "/login", "", &[("email", "t@oak.example"), ("password", "teacher password")]);
            assert!(refused.status == 403 && refused.body.contains("disabled"), "{}", refused.body);
            assert!(http(addr, "GET", "/admin/accounts", &ac, &[]).body.contains("disabled"));
            // An API key and a device token, revoked.
            assert_eq!(http(addr, "POST", "/admin/apikeys/revoke", &ac, &[("csrf", &csrf), ("id", &key_id.to_string())]).status, 303);
            assert_eq!(api(&key), 401, "a revoked key is refused");
            assert_eq!(http(addr, "POST", "/admin/devices/revoke", &ac, &[("csrf", &csrf), ("id", &device_id.to_string())]).status, 303);
            assert_eq!(send_event(addr, &secrets["device"], "nobody likes you"), 401, "a revoked device is refused");
        })
        .await
        .unwrap();
        let actions: Vec<String> = store.audit_search(None, None, 200).await.unwrap().into_iter().map(|e| e.action).collect();
        for a in ["account.disable", "apikey.revoke", "device.revoke", "accounts.read"] {
            assert!(actions.iter().any(|x| x == a), "{a} audited: {actions:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screenshots_are_sealed_at_rest_and_read_back() {
    use base64::Engine as _;
    for (addr, _store, secrets, dir) in setups().await {
        let marker = "PLAIN-SCREENSHOT-BYTES-4711";
        tokio::task::spawn_blocking(move || {
            let png = [&b"\x89PNG\r\n\x1a\n"[..], marker.as_bytes()].concat();
            let body = format!(
                r#"{{"person":"amy.pupil","text":"i am going to kill myself tonight, i have the pills","source":"typed","screenshot":"{}"}}"#,
                base64::engine::general_purpose::STANDARD.encode(&png)
            );
            let mut s = TcpStream::connect(addr).unwrap();
            write!(s, "POST /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", secrets["device"], body.len()).unwrap();
            let mut raw = String::new();
            s.read_to_string(&mut raw).unwrap();
            assert!(raw.starts_with("HTTP/1.1 201"), "{raw}");
            let (c, _) = sign_in(addr, "dsl@oak.example", "dsl password 1", Some(&secrets["totp"]));
            let shot = http_with(addr, "GET", "/alerts/1/screenshot", &[], &c, &[]);
            assert_eq!(shot.status, 200);
            assert!(shot.body.contains(marker), "read back with the key");
        })
        .await
        .unwrap();
        if let Some(dir) = dir {
            let folder = dir.path().join("evidence");
            let files: Vec<_> = std::fs::read_dir(&folder).unwrap().map(|e| e.unwrap().path()).collect();
            assert_eq!(files.len(), 1);
            let on_disk = std::fs::read(&files[0]).unwrap();
            assert!(!on_disk.windows(marker.len()).any(|w| w == marker.as_bytes()), "the bytes on disk are sealed");
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                assert_eq!(std::fs::metadata(&folder).unwrap().permissions().mode() & 0o777, 0o700);
                assert_eq!(std::fs::metadata(&files[0]).unwrap().permissions().mode() & 0o777, 0o600);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_whose_audit_row_cannot_be_written_is_refused_not_served() {
    // SQLite: another program holding the write lock past the 5-second wait stops the audit row.
    let (addr, store, secrets, _dir) = setups().await.into_iter().next().unwrap();
    let (c, _) = tokio::task::spawn_blocking({
        let secrets = secrets.clone();
        move || {
            assert_eq!(send_event(addr, &secrets["device"], "i am going to kill myself tonight, i have the pills"), 201);
            sign_in(addr, "dsl@oak.example", "dsl password 1", Some(&secrets["totp"]))
        }
    })
    .await
    .unwrap();
    let lock = store.begin().await.unwrap();
    let (page, queue) = tokio::task::spawn_blocking({
        let c = c.clone();
        move || (http(addr, "GET", "/alerts/1", &c, &[]), http(addr, "GET", "/alerts", &c, &[]))
    })
    .await
    .unwrap();
    drop(lock);
    for r in [&page, &queue] {
        assert_eq!(r.status, 503, "{}", r.body);
        assert!(r.body.contains("audit log") && !r.body.contains("kill myself") && !r.body.contains("amy.pupil"), "{}", r.body);
    }
    let again = tokio::task::spawn_blocking(move || http(addr, "GET", "/alerts/1", &c, &[])).await.unwrap();
    assert_eq!(again.status, 200, "served once the read can be audited");
    let reads = store.audit_search(Some("alert:1"), None, 50).await.unwrap();
    assert_eq!(reads.iter().filter(|e| e.action == "alert.read").count(), 1, "every read that was served is in the audit log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_sees_each_devices_last_contact_version_and_queue() {
    for (addr, store, secrets, _dir) in setups().await {
        store.add_account("it@oak.example", Role::ItTechnician, Some("oak"), "it password 12", jiff::Timestamp::now()).await.unwrap();
        let token = secrets["device"].clone();
        tokio::task::spawn_blocking(move || {
            let (c, _) = sign_in(addr, "it@oak.example", "it password 12", None);
            let before = http(addr, "GET", "/admin/devices", &c, &[]);
            assert_eq!(before.status, 200, "{}", before.body);
            assert!(before.body.contains("never seen"), "{}", before.body);
            // The extension's headers on an event: its version, queue and drops.
            let body = r#"{"person":"amy.pupil","text":"see you at practice","source":"typed"}"#;
            let mut s = TcpStream::connect(addr).unwrap();
            write!(
                s,
                "POST /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nX-Haven-Agent: haven-extension/0.1.0\r\nX-Haven-Queue: 7\r\n\
                 X-Haven-Dropped: 2\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            let mut raw = String::new();
            s.read_to_string(&mut raw).unwrap();
            assert!(raw.starts_with("HTTP/1.1 201"), "{raw}");
            let after = http(addr, "GET", "/admin/devices", &c, &[]).body;
            assert!(after.contains("just now") && after.contains("haven-extension/0.1.0"), "{after}");
            assert!(after.contains("\">7</td>") && after.contains(">2</strong>"), "queue and drops shown: {after}");
            assert!(after.contains("1 dropping events"), "{after}");
            // A teacher does not see the devices.
            let (tc, _) = sign_in(addr, "t@oak.example", "teacher password", None);
            assert_eq!(http(addr, "GET", "/admin/devices", &tc, &[]).status, 403);
        })
        .await
        .unwrap();
    }
}
