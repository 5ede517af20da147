//! Notifications reach a local SMTP catcher and a local webhook receiver;
//! failures are retried; an unacknowledged level-5 alert escalates.

use std::sync::{Arc, Mutex};

use haven_safeguard::notify::{Channels, run_once};
use haven_store::Store;
use jiff::{SignedDuration, Timestamp};
use tokio::net::TcpListener;

mod common;
use common::{smtp_catcher, webhook};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_outs_reach_mail_and_webhooks_retry_and_escalate() {
    let mails = Arc::new(Mutex::new(Vec::new()));
    let hooks = Arc::new(Mutex::new(Vec::new()));
    let smtp = smtp_catcher(mails.clone()).await;
    let hook = webhook(hooks.clone()).await;
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_dir(dir.path()).await.unwrap();
    store.upsert_school("oak", "Oak", false).await.unwrap();
    let t0: Timestamp = "2026-11-29T02:00:00Z".parse().unwrap();
    let (device, _) = store.add_device("oak", "PC", t0).await.unwrap();
    store.add_oncall(Some("oak"), "DSL", Some("dsl@oak.example"), None, 1).await.unwrap();
    store.add_oncall(Some("oak"), "Head (SMS gateway)", None, Some(&format!("http://127.0.0.1:{hook}/sms")), 2).await.unwrap();
    store.add_oncall(Some("oak"), "Deputy (gateway down)", None, Some(&format!("http://127.0.0.1:{dead}/sms")), 3).await.unwrap();
    let mut policy = haven_policy::PolicySet::default();
    let mut cal = haven_policy::schedule::Calendar::london();
    cal.terms = vec![(jiff::civil::date(2026, 9, 3), jiff::civil::date(2026, 12, 18))];
    policy.schools.push(haven_policy::model::School { id: "oak".into(), name: "Oak".into(), calendar: cal });
    let s = haven_safeguard::Service::new(store.clone(), &policy);
    let ev = haven_safeguard::ingest::Event {
        person: "amy.pupil".into(),
        text: "i am going to kill myself tonight, i have the pills".into(),
        source: "typed".into(),
        url: None,
        observed_at: Some(t0.to_string()),
        screenshot: None,
        title: None,
        idempotency_key: None,
    };
    let out = s.ingest(&device, &ev, t0).await.unwrap();
    assert_eq!(out.alerts[0].level, 5);
    let ch = Channels::new(Some(format!("smtp://127.0.0.1:{smtp}")), "haven@oak.example".into(), "http://127.0.0.1:8080".into(), SignedDuration::from_mins(10));
    assert_eq!(run_once(&s, &ch, t0).await, 1, "the DSL is called at once");
    let mail = mails.lock().unwrap()[0].clone();
    assert!(mail.contains("URGENT") && mail.contains("/alerts/1"), "{mail}");
    assert!(!mail.contains("kill myself") && !mail.contains("amy"), "no pupil text or names by e-mail");
    // Ten minutes without an acknowledgement: the head's SMS gateway.
    assert_eq!(run_once(&s, &ch, t0.saturating_add(SignedDuration::from_mins(10)).unwrap()).await, 1);
    assert!(hooks.lock().unwrap()[0].contains("\"callout\":true"));
    // Twenty: the deputy, whose gateway is down: retried, not lost.
    let t20 = t0.saturating_add(SignedDuration::from_mins(20)).unwrap();
    assert_eq!(run_once(&s, &ch, t20).await, 0);
    assert_eq!(store.outbox(t20.saturating_add(SignedDuration::from_mins(6)).unwrap()).await.unwrap().len(), 1, "queued again for a retry");
    // Acknowledged: no more call-outs.
    let lead = store.add_account("lead@t.example", haven_store::Role::TrustSafeguardingLead, None, "lead password", t0).await.unwrap().0;
    store.act_on_alert(&lead, 1, "acknowledged", "", t20).await.unwrap();
    let t40 = t0.saturating_add(SignedDuration::from_mins(40)).unwrap();
    run_once(&s, &ch, t40).await;
    assert_eq!(store.callouts_queued(1).await.unwrap(), 3, "no escalation after the acknowledgement");
}
