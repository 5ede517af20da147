//! The governance record end to end: a parent accepts the acceptable-use
//! agreement from a link a teacher made (in headless Chromium), and the
//! annual filtering and monitoring review is started prefilled from the
//! record, written, and signed by the SLT lead, the DSL, IT and the
//! governor, four accounts each signing as themselves, then kept
//! read-only. Also least privilege, CSRF and the devices' API over HTTP.
//! Screenshots go to `target/e2e-screenshots/governance-*.png`.
//!
//! The browser tests need `chromedriver` and `chromium` (Debian: chromium,
//! chromium-driver); without them they say so and pass.

use std::process::Command;
use std::time::Duration;

use fantoccini::Locator;
use haven_store::agreements::Audience;
use haven_store::directory::{PersonKind, PersonRow};
use haven_store::{Role, Store};

mod common;
use common::{csrf_of, http, sign_in};

async fn wait_for(c: &fantoccini::Client, text: &str) -> String {
    for _ in 0..100 {
        if let Ok(s) = c.source().await
            && s.contains(text)
        {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the page never showed {text:?}: {}", c.source().await.unwrap_or_default());
}

fn no_browser() -> bool {
    if Command::new("chromedriver").arg("--version").output().is_err() {
        eprintln!("skipping: chromedriver is not installed (Debian: apt-get install chromium chromium-driver)");
        return true;
    }
    false
}

async fn shot(c: &fantoccini::Client, name: &str) {
    let d = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/e2e-screenshots");
    std::fs::create_dir_all(&d).unwrap();
    let png = c.screenshot().await.unwrap();
    std::fs::write(d.join(format!("governance-{name}.png")), png).unwrap();
}

fn pupil(login: &str, name: &str, year: &str, form: &str) -> PersonRow {
    PersonRow {
        school: "oak".into(),
        login: login.into(),
        display_name: Some(name.into()),
        year: Some(year.into()),
        form: Some(form.into()),
        classes: vec![],
        kind: PersonKind::Pupil,
    }
}

/// A school with three pupils in two forms, served; (store, address, folder).
async fn school() -> (Store, std::net::SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_dir(dir.path()).await.unwrap();
    store.upsert_school("oak", "Oak Academy", false).await.unwrap();
    let now = jiff::Timestamp::now();
    let rows = vec![pupil("amy.p", "Amy Pupil", "Year 8", "8AB"), pupil("ben.q", "Ben Quill", "Year 8", "8AB"), pupil("cat.r", "Cat Rowe", "Year 10", "10GH")];
    store.sync_people(Some("oak"), &rows, now).await.unwrap();
    let mut service = haven_safeguard::Service::new(store.clone(), &haven_policy::PolicySet::default());
    service.evidence_dir = dir.path().join("evidence");
    let addr = haven_safeguard::serve(service, &["127.0.0.1:0".parse().unwrap()]).await.unwrap()[0];
    (store, addr, dir)
}

async fn browser_sign_in(c: &fantoccini::Client, base: &str, email: &str, password: &str, totp: Option<&str>) {
    c.delete_all_cookies().await.unwrap();
    c.goto(&format!("{base}/login")).await.unwrap();
    c.find(Locator::Css("input[name=email]")).await.unwrap().send_keys(email).await.unwrap();
    c.find(Locator::Css("input[name=password]")).await.unwrap().send_keys(password).await.unwrap();
    c.find(Locator::Css("form button")).await.unwrap().click().await.unwrap();
    if let Some(secret) = totp {
        wait_for(c, "six-digit code").await;
        let code = haven_store::sessions::totp_code(secret, jiff::Timestamp::now()).unwrap();
        c.find(Locator::Css("input[name=code]")).await.unwrap().send_keys(&code).await.unwrap();
        c.find(Locator::Css("main form button")).await.unwrap().click().await.unwrap();
    }
    wait_for(c, "Sign out").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_accepts_the_agreement_from_a_link_and_the_record_shows_it() {
    if no_browser() {
        return;
    }
    let (store, addr, _dir) = school().await;
    let base = format!("http://{addr}");
    let now = jiff::Timestamp::now();
    store.add_account("teacher@oak.example", Role::Teacher, Some("oak"), "teacher password 1", now).await.unwrap();
    let id = store
        .publish_agreement(
            "oak",
            Audience::Parent,
            "2026-27",
            "Home–school online safety agreement",
            "I will talk with my child about staying safe online.",
            "account:1",
            now,
        )
        .await
        .unwrap();

    let (c, _driver) = common::chromium(serde_json::json!({})).await;
    browser_sign_in(&c, &base, "teacher@oak.example", "teacher password 1", None).await;
    c.goto(&format!("{base}/governance/agreements/{id}")).await.unwrap();
    let page = wait_for(&c, "Who has not accepted this version").await;
    assert!(page.contains("0 of 3 have accepted") && page.contains("Amy Pupil (amy.p)"), "{page}");
    shot(&c, "01-agreement-unsigned").await;
    // Links for form 8AB: one per pupil still to accept.
    c.find(Locator::XPath("//form[input[@name='class' and @value='8AB']]//button")).await.unwrap().click().await.unwrap();
    wait_for(&c, "Parents' links").await;
    let links = c.find_all(Locator::Css("a.agree-link")).await.unwrap();
    assert_eq!(links.len(), 2);
    let mut urls = Vec::new();
    for l in &links {
        urls.push(l.attr("href").await.unwrap().unwrap());
    }
    assert!(urls.iter().all(|u| u.starts_with(&format!("{base}/agree/hva_"))), "{urls:?}");
    shot(&c, "02-links").await;

    // The parent: no account, no session.
    c.delete_all_cookies().await.unwrap();
    c.goto(&urls[0]).await.unwrap();
    let shown = wait_for(&c, "I accept").await;
    assert!(shown.contains("Oak Academy") && shown.contains("I will talk with my child") && shown.contains("Amy Pupil"), "{shown}");
    shot(&c, "03-parent-link").await;
    c.find(Locator::Css("input[name=carer]")).await.unwrap().send_keys("Alice Pupil").await.unwrap();
    c.find(Locator::XPath("//button[text()='I accept']")).await.unwrap().click().await.unwrap();
    let thanks = wait_for(&c, "Thank you").await;
    assert!(thanks.contains("has been recorded"), "{thanks}");
    shot(&c, "04-accepted").await;
    // The link works once.
    c.goto(&urls[0]).await.unwrap();
    wait_for(&c, "This link cannot be used").await;

    // The record shows it.
    browser_sign_in(&c, &base, "teacher@oak.example", "teacher password 1", None).await;
    c.goto(&format!("{base}/governance/agreements/{id}")).await.unwrap();
    let page = wait_for(&c, "Accepted (1)").await;
    assert!(page.contains("1 of 3 have accepted") && page.contains("Alice Pupil") && !page.contains("Amy Pupil (amy.p)"), "{page}");
    shot(&c, "05-agreement-recorded").await;
    c.close().await.unwrap();
    let acc = store.agreement_acceptances(id).await.unwrap();
    assert_eq!(acc.len(), 1);
    assert_eq!((acc[0].person.as_str(), acc[0].signed_name.as_str(), acc[0].method.as_str(), acc[0].current), ("amy.p", "Alice Pupil", "link", true));
    let audit = store.audit_search(Some("person:oak/amy.p"), None, 10).await.unwrap();
    assert!(audit.iter().any(|e| e.action == "agreement.accept" && e.actor == "link"));
    assert!(audit.iter().any(|e| e.action == "agreement.link"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_review_is_filled_signed_by_four_roles_and_stored() {
    if no_browser() {
        return;
    }
    let (store, addr, _dir) = school().await;
    let base = format!("http://{addr}");
    let now = jiff::Timestamp::now();
    let (_, head_totp) = store.add_account("head@oak.example", Role::Headteacher, Some("oak"), "head password 1", now).await.unwrap();
    let (_, dsl_totp) = store.add_account("dsl@oak.example", Role::Dsl, Some("oak"), "dsl password 1", now).await.unwrap();
    store.add_account("it@oak.example", Role::ItTechnician, Some("oak"), "it password 1", now).await.unwrap();
    store.add_account("gov@oak.example", Role::Governor, Some("oak"), "gov password 1", now).await.unwrap();
    let dsl = store.account_by_email("dsl@oak.example").await.unwrap();
    store.set_account_name(dsl.id, Some("Dee Lead")).await.unwrap();
    // Something for the prefill: a failed filtering check this year.
    store
        .add_filter_checks(
            &haven_store::checks::Run {
                run: "r1".into(),
                at: now - jiff::SignedDuration::from_hours(48),
                who: "haven selftest".into(),
                origin: "command".into(),
                school: "oak".into(),
                group: "secondary".into(),
                device: None,
            },
            &[haven_store::checks::Outcome {
                probe: "iwf".into(),
                path: "dns".into(),
                target: "iwf-test".into(),
                expected: "blocked".into(),
                got: "allowed".into(),
                ok: false,
            }],
        )
        .await
        .unwrap();

    let (c, _driver) = common::chromium(serde_json::json!({})).await;
    // The DSL starts the annual review and writes it.
    browser_sign_in(&c, &base, "dsl@oak.example", "dsl password 1", dsl_totp.as_deref()).await;
    c.goto(&format!("{base}/governance/reviews")).await.unwrap();
    let due = wait_for(&c, "Start a review").await;
    assert!(due.contains("due now"), "no review yet: due now");
    c.find(Locator::XPath("//button[text()='Start review']")).await.unwrap().click().await.unwrap();
    let draft = wait_for(&c, "Save draft").await;
    assert!(draft.contains("1 check run(s), 1 probe(s), 1 failed"), "prefilled from the checks log: {draft}");
    for section in [
        "Risk profile",
        "What is blocked and allowed, and why",
        "Checks done",
        "Incidents and alerts in the period",
        "Curriculum and teaching needs",
        "bring your own device",
        "Related policies",
        "Actions",
    ] {
        assert!(draft.contains(section), "{section}");
    }
    c.find(Locator::Css("textarea[name=s_risk]")).await.unwrap().send_keys("Pupils aged 11-16; 18% SEND; sixth-form BYOD on guest Wi-Fi.").await.unwrap();
    c.find(Locator::Css("textarea[name=s_actions]")).await.unwrap().send_keys("Put guest Wi-Fi through the proxy by March (IT).").await.unwrap();
    c.find(Locator::XPath("//button[text()='Save draft']")).await.unwrap().click().await.unwrap();
    let saved = wait_for(&c, "18% SEND").await;
    let url = c.current_url().await.unwrap().to_string();
    assert!(url.contains("/governance/reviews/"), "{url}");
    assert!(saved.contains("Sign as DSL"));
    shot(&c, "10-review-draft").await;
    c.find(Locator::XPath("//button[text()='Sign as DSL']")).await.unwrap().click().await.unwrap();
    wait_for(&c, "Dee Lead (dsl@oak.example)").await;

    // The head (SLT lead), IT and the governor, each as themselves.
    for (email, password, totp, label, key) in [
        ("head@oak.example", "head password 1", head_totp.as_deref(), "SLT lead", "slt-lead"),
        ("it@oak.example", "it password 1", None, "IT", "it"),
        ("gov@oak.example", "gov password 1", None, "Governor", "governor"),
    ] {
        browser_sign_in(&c, &base, email, password, totp).await;
        c.goto(&url).await.unwrap();
        let p = wait_for(&c, &format!("Sign as {label}")).await;
        assert!(p.contains("18% SEND"), "{email} reads what they sign");
        c.find(Locator::XPath(&format!("//button[text()='Sign as {label}']"))).await.unwrap().click().await.unwrap();
        wait_for(&c, &format!("class=\"signed-{key}\">{email}")).await;
        shot(&c, &format!("11-signed-{}", label.replace(' ', "-").to_lowercase())).await;
    }
    let done = wait_for(&c, "complete, signed by all four").await;
    assert!(!done.contains("<textarea") && !done.contains("Sign as"), "read-only once signed: {done}");
    assert!(done.contains("Put guest Wi-Fi through the proxy"));
    shot(&c, "12-review-complete").await;
    c.close().await.unwrap();

    // Stored as signed.
    let id: i64 = url.rsplit('/').next().unwrap().parse().unwrap();
    let r = store.review(id).await.unwrap().unwrap();
    assert_eq!(r.state, "complete");
    assert!(r.completed_at.is_some());
    let mut roles: Vec<&str> = r.signoffs.iter().map(|s| s.role.as_str()).collect();
    roles.sort_unstable();
    assert_eq!(roles, ["dsl", "governor", "it", "slt-lead"]);
    let mut accounts: Vec<i64> = r.signoffs.iter().map(|s| s.account).collect();
    accounts.sort_unstable();
    accounts.dedup();
    assert_eq!(accounts.len(), 4, "four accounts");
    assert!(r.sections["risk"].contains("18% SEND") && r.sections["checks"].contains("1 failed"));
    let next = store.review_due("oak").await.unwrap().unwrap();
    assert!(next > now + jiff::SignedDuration::from_hours(24 * 364), "the next is due a year on");
    let audit = store.audit_search(Some(&format!("review:{id}")), None, 50).await.unwrap();
    assert_eq!(audit.iter().filter(|e| e.action == "review.sign").count(), 4);
    assert!(
        audit.iter().any(|e| e.action == "review.start") && audit.iter().any(|e| e.action == "review.save") && audit.iter().any(|e| e.action == "review.read")
    );
}

/// A raw request with extra headers; (status, body).
fn raw(addr: std::net::SocketAddr, method: &str, path: &str, headers: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    (head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0), body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_privilege_csrf_and_the_devices_api() {
    let (store, addr, _dir) = school().await;
    let now = jiff::Timestamp::now();
    store.add_account("teacher@oak.example", Role::Teacher, Some("oak"), "teacher password 1", now).await.unwrap();
    store.add_account("gov@oak.example", Role::Governor, Some("oak"), "gov password 1", now).await.unwrap();
    store.upsert_school("elm", "Elm School", false).await.unwrap();
    store.add_account("it@elm.example", Role::ItTechnician, Some("elm"), "it password 1", now).await.unwrap();
    let id = store.publish_agreement("oak", Audience::SecondaryPupil, "v1", "Pupils' agreement", "Be kind online.", "account:1", now).await.unwrap();
    let teacher = sign_in(addr, "teacher@oak.example", "teacher password 1");
    let gov = sign_in(addr, "gov@oak.example", "gov password 1");
    let elm = sign_in(addr, "it@elm.example", "it password 1");

    // A teacher records a paper copy; without the form's token nothing is kept.
    let (_, _, p) = http(addr, "GET", "/governance/agreements", &teacher, "");
    assert!(p.contains("Record a paper copy") && !p.contains("Publish a version"), "a teacher records, never publishes");
    let form = format!("agreement={id}&person=amy.p&signed_name=Amy+Pupil&date=");
    assert_eq!(http(addr, "POST", "/governance/agreements/paper", &teacher, &form).0, 403);
    assert_eq!(http(addr, "POST", "/governance/agreements/paper", &teacher, &format!("csrf={}&{form}", csrf_of(&p))).0, 303);
    let publish = format!("csrf={}&audience=staff&version=v1&title=t&body=b", csrf_of(&p));
    assert_eq!(http(addr, "POST", "/governance/agreements", &teacher, &publish).0, 403);
    // The governor sees how many, never who.
    let (status, _, g) = http(addr, "GET", &format!("/governance/agreements/{id}"), &gov, "");
    assert_eq!(status, 200);
    assert!(g.contains("1 of 3 have accepted") && !g.contains("Ben Quill") && !g.contains("Amy Pupil"), "{g}");
    let (_, _, t) = http(addr, "GET", &format!("/governance/agreements/{id}"), &teacher, "");
    assert!(t.contains("Ben Quill (ben.q)") && t.contains("Amy Pupil"), "{t}");
    // Another school's staff see nothing of it.
    assert_eq!(http(addr, "GET", &format!("/governance/agreements/{id}"), &elm, "").0, 404);
    // Teachers do not read reviews.
    assert_eq!(http(addr, "GET", "/governance/reviews", &teacher, "").0, 403);
    assert_eq!(http(addr, "GET", "/governance/reviews", &gov, "").0, 200);

    // A parent's link refuses a post from another site.
    let p = store.publish_agreement("oak", Audience::Parent, "v1", "Parents", "Text", "account:1", now).await.unwrap();
    let token = store.agreement_link(p, "cat.r", "account:1", now, now + jiff::SignedDuration::from_hours(24)).await.unwrap();
    let form = "carer=Eve";
    let (status, _) =
        raw(addr, "POST", &format!("/agree/{token}"), "Origin: https://evil.example\r\nContent-Type: application/x-www-form-urlencoded\r\n", form);
    assert_eq!(status, 403);
    let (status, _) = raw(addr, "POST", &format!("/agree/{token}"), "Sec-Fetch-Site: cross-site\r\nContent-Type: application/x-www-form-urlencoded\r\n", form);
    assert_eq!(status, 403);
    assert!(store.agreement_acceptances(p).await.unwrap().is_empty());
    assert_eq!(raw(addr, "GET", "/agree/hva_not_a_token", "", "").0, 404);

    // A device: the version in force, then an acceptance at sign-in.
    let (_, device) = store.add_device("oak", "Library PC", now).await.unwrap();
    let auth = format!("Authorization: Bearer {device}\r\n");
    let (status, body) = raw(addr, "GET", "/api/v1/agreements/current?audience=secondary-pupil", &auth, "");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((v["version"].as_str(), v["text"].as_str()), (Some("v1"), Some("Be kind online.")));
    assert_eq!(raw(addr, "GET", "/api/v1/agreements/current?audience=secondary-pupil", "", "").0, 401);
    let json = "Content-Type: application/json\r\n";
    let stale = r#"{"person":"cat.r","audience":"secondary-pupil","version":"v0"}"#;
    assert_eq!(raw(addr, "POST", "/api/v1/agreements/accept", &format!("{auth}{json}"), stale).0, 409);
    let ok = r#"{"person":"Cat.R","audience":"secondary-pupil","version":"v1"}"#;
    assert_eq!(raw(addr, "POST", "/api/v1/agreements/accept", &format!("{auth}{json}"), ok).0, 201);
    assert_eq!(raw(addr, "POST", "/api/v1/agreements/accept", &format!("{auth}{json}"), ok).0, 200, "twice is once");
    let cat = store.acceptances_of("oak", "cat.r").await.unwrap();
    assert_eq!((cat.len(), cat[0].method.as_str(), cat[0].signed_name.as_str()), (1, "device", "Cat Rowe"));
    // A new version: Cat's acceptance is no longer current, and the page says who must accept again.
    store.publish_agreement("oak", Audience::SecondaryPupil, "v2", "Pupils' agreement", "Be kind and safe online.", "account:1", now).await.unwrap();
    assert!(!store.acceptances_of("oak", "cat.r").await.unwrap()[0].current);
    // The browser extension shows the school's agreement in force (not the
    // trust's config text) and records its acceptance in the same record.
    let policy = |addr| {
        let (status, body) = raw(addr, "GET", "/api/v1/extension/policy?person=cat.r", &auth, "");
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        serde_json::from_str::<serde_json::Value>(v["payload"].as_str().unwrap()).unwrap()
    };
    let p = policy(addr);
    assert_eq!((p["acceptable_use"]["version"].as_str(), p["accepted"].as_bool()), (Some("v2"), Some(false)), "{p}");
    assert!(p["acceptable_use"]["text"].as_str().unwrap().contains("Be kind and safe online."), "{p}");
    let old = r#"{"person":"cat.r","version":"v1"}"#;
    assert_eq!(raw(addr, "POST", "/api/v1/extension/acceptance", &format!("{auth}{json}"), old).0, 409);
    let new = r#"{"person":"cat.r","version":"v2"}"#;
    assert_eq!(raw(addr, "POST", "/api/v1/extension/acceptance", &format!("{auth}{json}"), new).0, 201);
    let cat = store.acceptances_of("oak", "cat.r").await.unwrap();
    assert!(cat.iter().any(|a| a.method == "extension" && a.current), "{cat:?}");
    assert_eq!(policy(addr)["accepted"].as_bool(), Some(true));
    let (_, _, o) = http(addr, "GET", "/governance", &gov, "");
    assert!(o.contains("0 of 3") && o.contains("No filtering and monitoring review has been completed yet"), "{o}");
}
