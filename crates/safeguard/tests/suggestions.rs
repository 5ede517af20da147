//! The suggestions queue over real HTTP on loopback, on every back end
//! (with the forms' CSRF tokens): IT sees a host seeded through the store
//! with the model's guess, confirms it, the block appears in the decision
//! register and `decide` blocks the host; rejecting needs a reason; a
//! teacher is refused; IT of one school cannot decide another's. Then the
//! same confirmation in headless Chromium (needs `chromedriver` and
//! `chromium`; without them that test says so and passes).

mod common;

use std::time::Duration;

use fantoccini::Locator;

use common::{csrf_of, http, sign_in};
use haven_policy::changes::{Aim, Change, Whom};
use haven_policy::{Action, NoLists, Request, Verdict, decide};
use haven_store::Role;
use haven_store::suggestions::{Counted, Guess};

const CONFIG: &str = r#"
trust = "Test Trust"
[[school]]
id = "oak"
name = "Oak Academy"
[[group]]
id = "secondary"
name = "Secondary pupils"
[[policy]]
id = "secondary"
block = ["games"]
[[user]]
id = "amy.pupil"
group = "secondary"
school = "oak"
"#;

fn counted(school: &str, domain: &str, hits: u64, guess: Option<Guess>) -> Counted {
    let t = jiff::Timestamp::now();
    Counted { school: Some(school.into()), domain: domain.into(), first_seen: t, last_seen: t, hits, people: 4, guess, samples: Vec::new() }
}

fn id_of(page: &str, domain: &str) -> i64 {
    let row = page.split("<tr>").find(|r| r.contains(domain)).unwrap_or_else(|| panic!("{domain} on the page: {page}"));
    row.split("/filtering/suggestions/").nth(1).and_then(|r| r.split('/').next()).and_then(|n| n.parse().ok()).expect("a suggestion id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_confirms_a_suggestion_into_the_register_and_the_filter_blocks_it() {
    for (store, _dir) in haven_store::testing::stores().await {
        let cfg_dir = tempfile::tempdir().unwrap();
        let config = haven_config::Config::parse(CONFIG, &cfg_dir.path().join("haven.toml")).unwrap();
        store.upsert_school("oak", "Oak Academy", false).await.unwrap();
        let now = jiff::Timestamp::now();
        store.add_account("t@oak.example", Role::Teacher, Some("oak"), "teacher password", now).await.unwrap();
        store.add_account("it@oak.example", Role::ItTechnician, Some("oak"), "it password 12", now).await.unwrap();
        let guess = Guess { category: "gambling".into(), confidence: 0.91, evidence: vec!["casino".into(), "bet".into()] };
        store
            .add_unlisted(
                &[
                    counted("oak", "bigcasino.example", 25, Some(guess)),
                    counted("oak", "homework.example", 40, None),
                    counted("oak", "quiet.example", 3, None),
                    counted("elm", "elmonly.example", 50, None),
                ],
                0,
                now,
            )
            .await
            .unwrap();
        let elm_only = store.suggestions(Some("elm"), "open", 1, 10).await.unwrap()[0].id;
        let service = haven_safeguard::Service::new(store.clone(), &config.policy);
        service.reload_with_record(haven_safeguard::Settings::new(&config.policy)).await.unwrap();
        let addr = haven_safeguard::serve(service, &["127.0.0.1:0".parse().unwrap()]).await.unwrap()[0];

        // Before: nothing names the site, so Amy may visit it.
        let amy = config.policy.subject_for_user(config.policy.user("amy.pupil").unwrap());
        let visit = Request::Host("www.bigcasino.example".into());
        assert_eq!(decide(&config.policy, &NoLists, &amy, now, &visit).action, Action::Allow);

        let st = store.clone();
        let page = tokio::task::spawn_blocking(move || {
            let teacher = sign_in(addr, "t@oak.example", "teacher password");
            assert_eq!(http(addr, "GET", "/filtering/suggestions", &teacher, "").0, 403, "a teacher does not decide what sites are");
            let home = http(addr, "GET", "/filtering", &teacher, "").2;
            let form = format!("csrf={}&category=gambling", csrf_of(&home));
            assert_eq!(http(addr, "POST", "/filtering/suggestions/1/confirm", &teacher, &form).0, 403);

            let it = sign_in(addr, "it@oak.example", "it password 12");
            let (status, _, page) = http(addr, "GET", "/filtering/suggestions", &it, "");
            assert_eq!(status, 200, "{page}");
            assert!(page.contains("bigcasino.example") && page.contains("homework.example"), "{page}");
            assert!(page.find("homework.example") < page.find("bigcasino.example"), "most visited first");
            assert!(page.contains("Gambling <strong>91%</strong>") && page.contains("from: casino, bet"), "the model's guess and its words: {page}");
            assert!(!page.contains("quiet.example"), "below the threshold");
            assert!(!page.contains("elmonly.example"), "another school's");
            let casino = id_of(&page, "bigcasino.example");
            let homework = id_of(&page, "homework.example");
            let csrf = csrf_of(&page);

            assert_eq!(http(addr, "POST", &format!("/filtering/suggestions/{casino}/confirm"), &it, "csrf=wrong&category=gambling").0, 403, "CSRF");
            assert_eq!(http(addr, "POST", &format!("/filtering/suggestions/{elm_only}/confirm"), &it, &format!("csrf={csrf}&category=games")).0, 404);
            assert_eq!(http(addr, "POST", &format!("/filtering/suggestions/{homework}/reject"), &it, &format!("csrf={csrf}&reason=")).0, 400, "a reason");
            assert_eq!(http(addr, "POST", &format!("/filtering/suggestions/{casino}/confirm"), &it, &format!("csrf={csrf}&category=csam")).0, 400);
            // The model's category is the default; sent as the form sends it.
            let (status, ..) = http(addr, "POST", &format!("/filtering/suggestions/{casino}/confirm"), &it, &format!("csrf={csrf}&category=gambling"));
            assert_eq!(status, 303);
            let reject = format!("csrf={csrf}&reason=Homework+help+the+school+uses");
            assert_eq!(http(addr, "POST", &format!("/filtering/suggestions/{homework}/reject"), &it, &reject).0, 303);
            assert_eq!(http(addr, "POST", &format!("/filtering/suggestions/{casino}/confirm"), &it, &format!("csrf={csrf}&category=gambling")).0, 409, "once");

            let after = http(addr, "GET", "/filtering/suggestions", &it, "").2;
            assert!(after.contains("No unlisted site has had 20 visits yet"), "{after}");
            assert!(after.contains("confirmed as Gambling") && after.contains("rejected: Homework help the school uses"), "{after}");
            let register = http(addr, "GET", "/filtering/changes", &it, "").2;
            assert!(register.contains("bigcasino.example"), "{register}");
            assert!(register.contains("Confirmed from the suggestions queue as Gambling: 25 visits, model gambling 0.91"), "{register}");
            after
        })
        .await
        .unwrap();
        assert!(!page.is_empty());

        // The change is in force: the filters, given the record's changes, block the host.
        let rows = st.filter_changes_in_force(jiff::Timestamp::now()).await.unwrap();
        assert_eq!(rows.len(), 1);
        let c = &rows[0];
        assert_eq!((c.verdict.as_deref(), c.site.as_deref(), c.requested_by.as_str()), (Some("block"), Some("bigcasino.example"), "it@oak.example"));
        let mut policy = config.policy.clone();
        policy
            .add_change(&Change {
                id: c.id,
                school: c.school.clone(),
                whom: Whom::parse(&c.scope, c.scope_id.as_deref()).unwrap(),
                verdict: Verdict::Block,
                aim: Aim::parse(c.site.as_deref(), c.category.as_deref()).unwrap(),
                from: c.starts_at,
                until: c.until,
                reason: c.reason.clone(),
            })
            .unwrap();
        let later = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(1);
        assert_eq!(decide(&policy, &NoLists, &amy, later, &visit).action, Action::Block, "the confirmed site is blocked");
        let s = st.suggestion(id_of_store(&st, "bigcasino.example").await).await.unwrap();
        assert_eq!((s.status.as_str(), s.category.as_deref(), s.change_id), ("confirmed", Some("gambling"), Some(c.id)));
        let audit = st.audit_search(Some(&format!("suggestion:{}", s.id)), None, 10).await.unwrap();
        assert!(audit.iter().any(|a| a.action == "suggestion.confirm" && a.actor == "it@oak.example"), "{audit:?}");
    }
}

async fn id_of_store(store: &haven_store::Store, domain: &str) -> i64 {
    store.suggestions(Some("oak"), "confirmed", 1, 10).await.unwrap().into_iter().find(|s| s.domain == domain).expect("confirmed").id
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_confirms_the_models_guess_in_the_browser() {
    if std::process::Command::new("chromedriver").arg("--version").output().is_err() {
        eprintln!("skipping: chromedriver is not installed (Debian: apt-get install chromium chromium-driver)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = haven_config::Config::parse(CONFIG, &dir.path().join("haven.toml")).unwrap();
    let store = haven_store::Store::open_dir(dir.path()).await.unwrap();
    store.upsert_school("oak", "Oak Academy", false).await.unwrap();
    let now = jiff::Timestamp::now();
    store.add_account("it@oak.example", Role::ItTechnician, Some("oak"), "it password 12", now).await.unwrap();
    let guess = Guess { category: "gambling".into(), confidence: 0.91, evidence: vec!["casino".into(), "bet".into()] };
    store.add_unlisted(&[counted("oak", "bigcasino.example", 25, Some(guess))], 0, now).await.unwrap();
    let service = haven_safeguard::Service::new(store.clone(), &config.policy);
    service.reload_with_record(haven_safeguard::Settings::new(&config.policy)).await.unwrap();
    let addr = haven_safeguard::serve(service, &["127.0.0.1:0".parse().unwrap()]).await.unwrap()[0];
    let base = format!("http://{addr}");

    let (c, _driver) = common::chromium(serde_json::json!({})).await;
    c.goto(&format!("{base}/login")).await.unwrap();
    c.find(Locator::Css("input[name=email]")).await.unwrap().send_keys("it@oak.example").await.unwrap();
    c.find(Locator::Css("input[name=password]")).await.unwrap().send_keys("it password 12").await.unwrap();
    c.find(Locator::Css("form button")).await.unwrap().click().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.goto(&format!("{base}/filtering/suggestions")).await.unwrap();
    let page = wait_for(&c, "bigcasino.example").await;
    assert!(page.contains("from: casino, bet"), "{page}");
    let chosen = c.find(Locator::Css("select[name=category]")).await.unwrap().prop("value").await.unwrap();
    assert_eq!(chosen.as_deref(), Some("gambling"), "the model's category is the default");
    c.find(Locator::XPath("//button[text()='Confirm and block']")).await.unwrap().click().await.unwrap();
    wait_for(&c, "confirmed as Gambling").await;
    c.goto(&format!("{base}/filtering/changes")).await.unwrap();
    wait_for(&c, "Confirmed from the suggestions queue as Gambling").await;
    c.close().await.unwrap();

    let rows = store.filter_changes_in_force(jiff::Timestamp::now()).await.unwrap();
    assert_eq!(rows.len(), 1);
    let mut policy = config.policy.clone();
    let c = &rows[0];
    policy
        .add_change(&Change {
            id: c.id,
            school: c.school.clone(),
            whom: Whom::parse(&c.scope, c.scope_id.as_deref()).unwrap(),
            verdict: Verdict::Block,
            aim: Aim::parse(c.site.as_deref(), c.category.as_deref()).unwrap(),
            from: c.starts_at,
            until: c.until,
            reason: c.reason.clone(),
        })
        .unwrap();
    let amy = policy.subject_for_user(policy.user("amy.pupil").unwrap());
    let later = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(1);
    assert_eq!(decide(&policy, &NoLists, &amy, later, &Request::Host("bigcasino.example".into())).action, Action::Block);
}
