//! The List feeds page over real HTTP on loopback, on every back end: who may
//! see it, each feed's last refresh and next time, and IT's notices marked
//! seen with the session's CSRF token.

mod common;

use common::{http, sign_in};
use haven_store::Role;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_sees_each_feed_and_marks_its_notices_seen() {
    for (store, _dir) in haven_store::testing::stores().await {
        store.upsert_school("oak", "Oak Primary", false).await.unwrap();
        store.upsert_school("elm", "Elm Academy", false).await.unwrap();
        let now = jiff::Timestamp::now();
        store.add_account("it@oak.example", Role::ItTechnician, Some("oak"), "it password 12", now).await.unwrap();
        store.add_account("t@oak.example", Role::Teacher, Some("oak"), "teacher password", now).await.unwrap();
        store.record_feed_run("iwf", now - jiff::SignedDuration::from_hours(1), true, Some(1234), "1234 entries in force").await.unwrap();
        store.record_feed_run("iwf", now, false, None, "download failed: http status: 503").await.unwrap();
        let trust_notice = store.add_it_notice(None, "feed", "The list feed \"iwf\" could not be refreshed", now).await.unwrap();
        let other_school = store.add_it_notice(Some("elm"), "filtering-check", "Elm's check failed", now).await.unwrap();
        let mut settings = haven_safeguard::Settings::new(&haven_policy::PolicySet::default());
        let source = |name: &str, times: Vec<jiff::civil::Time>| haven_config::feeds::Feed {
            source: name.into(),
            refresh: haven_config::feeds::Refresh { times, every: None },
            credentials: Some("iwf".into()).filter(|_| name == "iwf"),
        };
        settings.feeds.sources =
            vec![source("iwf", vec![jiff::civil::Time::constant(6, 0, 0, 0), jiff::civil::Time::constant(18, 0, 0, 0)]), source("ut1", Vec::new())];
        let service = haven_safeguard::Service::new(store.clone(), &haven_policy::PolicySet::default());
        service.reload_with_record(settings).await.unwrap();
        let addr = haven_safeguard::serve(service, &["127.0.0.1:0".parse().unwrap()]).await.unwrap()[0];
        let seen = tokio::task::spawn_blocking(move || {
            let teacher = sign_in(addr, "t@oak.example", "teacher password");
            assert_eq!(http(addr, "GET", "/admin/lists", &teacher, "").0, 403, "not for teachers");
            let it = sign_in(addr, "it@oak.example", "it password 12");
            let (status, _, page) = http(addr, "GET", "/admin/lists", &it, "");
            assert_eq!(status, 200, "{page}");
            assert!(page.contains("iwf") && page.contains("06:00, 18:00") && page.contains("credentials [iwf]"), "{page}");
            assert!(page.contains("failed") && page.contains("1 in a row") && page.contains("503"), "{page}");
            assert!(page.contains("not scheduled"), "ut1 has no schedule: {page}");
            assert!(page.contains("could not be refreshed") && !page.contains("Elm&#39;s check failed"), "the trust's notice, not another school's: {page}");
            let csrf = page.split("name=\"csrf\" value=\"").nth(1).and_then(|r| r.split('"').next()).unwrap().to_string();
            assert_eq!(http(addr, "POST", "/admin/lists/seen", &it, &format!("csrf={csrf}&id={other_school}")).0, 403, "another school's notice");
            assert_eq!(http(addr, "POST", "/admin/lists/seen", &it, &format!("csrf=wrong&id={trust_notice}")).0, 403);
            assert_eq!(http(addr, "POST", "/admin/lists/seen", &it, &format!("csrf={csrf}&id={trust_notice}")).0, 303);
            http(addr, "GET", "/admin/lists", &it, "").2
        })
        .await
        .unwrap();
        assert!(seen.contains("None waiting"), "{seen}");
        let notices = store.it_notices(None, false, 10).await.unwrap();
        let n = notices.iter().find(|n| n.id == trust_notice).unwrap();
        assert!(n.seen.as_ref().is_some_and(|(who, _)| who.starts_with("account:")));
        assert!(notices.iter().find(|n| n.id == other_school).unwrap().seen.is_none());
        let audit = store.audit_search(Some("lists"), None, 10).await.unwrap();
        assert!(audit.iter().any(|e| e.action == "lists.read"), "reads are audited");
    }
}
