//! End to end in headless Chromium: a level-5 alert arrives through the
//! ingest API, the DSL is called (a local SMTP catcher, then a local webhook
//! receiver), signs in with a second factor, opens the alert, acknowledges
//! it, records an action, raises an incident, attaches evidence, closes the
//! incident and then the alert, then adds a monitoring phrase. Screenshots of the pages are saved in
//! `target/e2e-screenshots/`.
//!
//! Needs `chromedriver` and `chromium` (Debian: chromium, chromium-driver);
//! without them the test says so and passes.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fantoccini::Locator;
use haven_store::{Role, Store};

mod common;
use common::{smtp_catcher, webhook};

/// Waits (up to 10 s) until the page holds `text`; returns the page.
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

fn screenshots() -> std::path::PathBuf {
    let d = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/e2e-screenshots");
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dsl_handles_a_level_five_alert_in_the_browser() {
    if Command::new("chromedriver").arg("--version").output().is_err() {
        eprintln!("skipping: chromedriver is not installed (Debian: apt-get install chromium chromium-driver)");
        return;
    }
    let (mails, hooks) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new())));
    let smtp = smtp_catcher(mails.clone()).await;
    let hook = webhook(hooks.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_dir(dir.path()).await.unwrap();
    store.upsert_school("oak", "Oak Primary", false).await.unwrap();
    let now = jiff::Timestamp::now();
    let (_, totp) = store.add_account("dsl@oak.example", Role::Dsl, Some("oak"), "dsl password 1", now).await.unwrap();
    let (_, token) = store.add_device("oak", "Library PC", now).await.unwrap();
    store.add_oncall(Some("oak"), "DSL", Some("dsl@oak.example"), None, 1).await.unwrap();
    store.add_oncall(Some("oak"), "Head (SMS)", None, Some(&format!("http://127.0.0.1:{hook}/sms")), 2).await.unwrap();
    let mut service = haven_safeguard::Service::new(store.clone(), &haven_policy::PolicySet::default());
    service.evidence_dir = dir.path().join("evidence");
    let addr = haven_safeguard::serve(service.clone(), &["127.0.0.1:0".parse().unwrap()]).await.unwrap()[0];
    let base = format!("http://{addr}");
    let channels = haven_safeguard::notify::Channels::new(
        Some(format!("smtp://127.0.0.1:{smtp}")),
        "haven@oak.example".into(),
        base.clone(),
        jiff::SignedDuration::from_mins(10),
    );

    // The alert arrives through the ingest API.
    let body = r#"{"person":"amy.pupil","text":"i am going to kill myself tonight, i have the pills","source":"typed"}"#.to_string();
    let url = format!("{base}/api/v1/events");
    let status = tokio::task::spawn_blocking(move || {
        ureq::post(&url).header("authorization", &format!("Bearer {token}")).header("content-type", "application/json").send(body).map(|r| r.status().as_u16())
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(status, 201);
    // The worker calls the DSL at once, and the head ten minutes later.
    haven_safeguard::notify::run_once(&service, &channels, jiff::Timestamp::now()).await;
    haven_safeguard::notify::run_once(&service, &channels, jiff::Timestamp::now().saturating_add(jiff::SignedDuration::from_mins(10)).unwrap()).await;
    assert!(mails.lock().unwrap().iter().any(|m| m.contains("URGENT")), "the e-mail reached the SMTP catcher");
    assert!(hooks.lock().unwrap().iter().any(|h| h.contains("\"callout\":true")), "the webhook reached its receiver");

    // The browser.
    let (c, _driver) = common::chromium(serde_json::json!({})).await;
    let shots = screenshots();
    let shot = |name: &'static str| {
        let c = c.clone();
        let shots = shots.clone();
        async move {
            let png = c.screenshot().await.unwrap();
            std::fs::write(shots.join(format!("{name}.png")), png).unwrap();
        }
    };
    c.goto(&format!("{base}/login")).await.unwrap();
    shot("01-login").await;
    c.find(Locator::Css("input[name=email]")).await.unwrap().send_keys("dsl@oak.example").await.unwrap();
    c.find(Locator::Css("input[name=password]")).await.unwrap().send_keys("dsl password 1").await.unwrap();
    c.find(Locator::Css("form button")).await.unwrap().click().await.unwrap();
    wait_for(&c, "six-digit code").await;
    shot("02-second-factor").await;
    let code = haven_store::sessions::totp_code(totp.as_deref().unwrap(), jiff::Timestamp::now()).unwrap();
    c.find(Locator::Css("input[name=code]")).await.unwrap().send_keys(&code).await.unwrap();
    c.find(Locator::Css("main form button")).await.unwrap().click().await.unwrap();
    let queue = wait_for(&c, "most urgent first").await;
    assert!(queue.contains("amy.pupil") && queue.contains("Vulnerable person"), "{queue}");
    shot("03-alert-queue").await;
    c.find(Locator::Css("td a")).await.unwrap().click().await.unwrap();
    let page = wait_for(&c, "Evidence").await;
    assert!(page.contains("<mark>"), "the matched words are highlighted");
    shot("04-alert").await;
    c.find(Locator::XPath("//button[text()='Acknowledge']")).await.unwrap().click().await.unwrap();
    wait_for(&c, "status <strong>acknowledged</strong>").await;
    c.find(Locator::Css("textarea[name=note]")).await.unwrap().send_keys("Spoke to Amy with her form tutor; parents called; referred to CAMHS").await.unwrap();
    c.find(Locator::XPath("//button[text()='Add action']")).await.unwrap().click().await.unwrap();
    wait_for(&c, "referred to CAMHS").await;
    // Raise an incident, attach evidence, close it.
    c.find(Locator::Css("input[name=title]")).await.unwrap().send_keys("Amy: plan to end her life").await.unwrap();
    c.find(Locator::XPath("//button[text()='Raise incident']")).await.unwrap().click().await.unwrap();
    // A pupil at risk follows the safeguarding steps, not the misuse ones.
    wait_for(&c, "a risk assessment and safety plan").await;
    shot("06-incident").await;
    let file = dir.path().join("screen-notes.txt");
    std::fs::write(&file, "Notes of what was on screen, written by the DSL at 09:10").unwrap();
    c.find(Locator::Css("input[type=file]")).await.unwrap().send_keys(file.to_str().unwrap()).await.unwrap();
    c.find(Locator::Css("input[name=note]")).await.unwrap().send_keys("DSL's notes").await.unwrap();
    c.find(Locator::XPath("//button[text()='Add evidence']")).await.unwrap().click().await.unwrap();
    let sha = haven_store::secrets::token_hash("Notes of what was on screen, written by the DSL at 09:10");
    wait_for(&c, &sha).await;
    c.find(Locator::Css("textarea[name=outcome]")).await.unwrap().send_keys("Safety plan in place; CAMHS appointment booked").await.unwrap();
    c.find(Locator::Css("textarea[name=lessons]")).await.unwrap().send_keys("Remind form tutors of the signs").await.unwrap();
    c.find(Locator::XPath("//button[text()='Close incident']")).await.unwrap().click().await.unwrap();
    wait_for(&c, "status <strong>closed</strong>").await;
    shot("07-incident-closed").await;
    c.find(Locator::Css("a[href^='/alerts/']")).await.unwrap().click().await.unwrap();
    wait_for(&c, "Evidence").await;
    let close = c.find_all(Locator::Css("textarea[name=note]")).await.unwrap();
    close.last().unwrap().send_keys("Safety plan agreed with family and school nurse").await.unwrap();
    // The DSL's verdict teaches the monitoring; the form asks for it.
    c.find(Locator::Css("input[name=verdict][value=real-concern]")).await.unwrap().click().await.unwrap();
    c.find(Locator::XPath("//button[text()='Close']")).await.unwrap().click().await.unwrap();
    let done = wait_for(&c, "status <strong>closed</strong>").await;
    assert!(done.contains("status <strong>closed</strong>") && done.contains("referred to CAMHS"), "{done}");
    shot("05-alert-closed").await;
    // The DSL adds the pupils' own word for a fight to what monitoring looks for.
    c.goto(&format!("{base}/admin/lexicon")).await.unwrap();
    wait_for(&c, "Add a phrase").await;
    let form = "//form[input[@name='kind' and @value='phrase']]";
    c.find(Locator::XPath(&format!("{form}//input[@name='phrase']"))).await.unwrap().send_keys("zorblax shed").await.unwrap();
    c.find(Locator::XPath(&format!("{form}//option[@value='bullying']"))).await.unwrap().click().await.unwrap();
    c.find(Locator::XPath(&format!("{form}//input[@name='reason']"))).await.unwrap().send_keys("Year 9 slang for a fight after school").await.unwrap();
    c.find(Locator::XPath(&format!("{form}//button"))).await.unwrap().click().await.unwrap();
    // The reason is also the form's placeholder: wait for the list itself.
    let listed = wait_for(&c, "In force (1)").await;
    assert!(listed.contains("Year 9 slang for a fight after school") && listed.contains("Bullying/Violence"), "{listed}");
    c.find(Locator::XPath("//form[@action='/admin/lexicon/try']//input[@name='text']")).await.unwrap().send_keys("see you at the zorblax shed").await.unwrap();
    c.find(Locator::XPath("//form[@action='/admin/lexicon/try']//button")).await.unwrap().click().await.unwrap();
    wait_for(&c, "Bullying/Violence (level 3)").await;
    shot("08-monitoring-phrases").await;
    c.close().await.unwrap();
    let audit = store.audit_search(Some("alert:1"), None, 50).await.unwrap();
    assert!(audit.iter().any(|e| e.action == "alert.closed"));
    let audit = store.audit_search(Some("incident:1"), None, 50).await.unwrap();
    for action in ["incident.raise", "incident.evidence", "incident.close", "incident.read"] {
        assert!(audit.iter().any(|e| e.action == action), "{action}");
    }
}
