//! Call-outs in seconds: the worker is woken by the commit that queues a
//! notice, a silent mail relay or a slow webhook holds nothing else up, every
//! retry carries the same idempotency id, retries stop when someone
//! acknowledges and give up (telling the trust's admins) after the last try,
//! and each webhook preset reaches a local receiver in its own shape.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use haven_safeguard::Service;
use haven_safeguard::ingest::Event;
use haven_safeguard::notify::Channels;
use haven_store::{Role, Store};
use jiff::{SignedDuration, Timestamp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One request a receiver got.
#[derive(Debug, Clone)]
struct Got {
    head: String,
    body: String,
    at: Instant,
}

impl Got {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_string()))
    }
}

/// A webhook receiver that answers after `delay` (or never, when `None`), keeping each request.
async fn receiver(delay: Option<Duration>) -> (u16, Arc<Mutex<Vec<Got>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let keep = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else { return };
            let keep = keep.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = s.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
                            .unwrap_or(0);
                        if body.len() >= len {
                            keep.lock().unwrap().push(Got { head: head.to_string(), body: body.to_string(), at: Instant::now() });
                            break;
                        }
                    }
                }
                match delay {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending::<()>().await,
                }
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
            });
        }
    });
    (port, got)
}

/// An SMTP "relay" that accepts connections and never says a word.
async fn silent_smtp() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    port
}

fn policy(schools: &[&str]) -> haven_policy::PolicySet {
    let mut policy = haven_policy::PolicySet::default();
    for id in schools {
        let mut cal = haven_policy::schedule::Calendar::london();
        cal.terms = vec![(jiff::civil::date(2026, 1, 1), jiff::civil::date(2027, 12, 31))];
        policy.schools.push(haven_policy::model::School { id: (*id).into(), name: (*id).into(), calendar: cal });
    }
    policy
}

fn threat(person: &str) -> Event {
    Event {
        person: person.into(),
        text: "i am going to kill myself tonight, i have the pills".into(),
        source: "typed".into(),
        url: None,
        observed_at: None,
        screenshot: None,
        title: None,
        idempotency_key: None,
    }
}

async fn store(dir: &std::path::Path, schools: &[&str]) -> Store {
    let store = Store::open_dir(dir).await.unwrap();
    for s in schools {
        store.upsert_school(s, s, false).await.unwrap();
    }
    store
}

async fn wait_for(got: &Arc<Mutex<Vec<Got>>>, n: usize, within: Duration) -> Vec<Got> {
    let end = Instant::now() + within;
    loop {
        let now = got.lock().unwrap().clone();
        if now.len() >= n || Instant::now() > end {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_level_five_call_out_leaves_at_once_though_the_mail_relay_is_silent() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path(), &["oak", "elm"]).await;
    let (hook, got) = receiver(Some(Duration::ZERO)).await;
    let smtp = silent_smtp().await;
    // Oak's DSL is reached by e-mail through a relay that never answers; Elm's by webhook.
    store.add_oncall(Some("oak"), "Oak DSL", Some("dsl@oak.example"), None, 1).await.unwrap();
    store.add_oncall(Some("elm"), "Elm DSL", None, Some(&format!("http://127.0.0.1:{hook}/callout")), 1).await.unwrap();
    let (oak_pc, _) = store.add_device("oak", "PC", Timestamp::now()).await.unwrap();
    let (elm_pc, _) = store.add_device("elm", "PC", Timestamp::now()).await.unwrap();
    let s = Service::new(store.clone(), &policy(&["oak", "elm"]));
    let mut ch =
        Channels::new(Some(format!("smtp://127.0.0.1:{smtp}")), "haven@trust.example".into(), "http://127.0.0.1:1".into(), SignedDuration::from_mins(10));
    ch.deadline = Duration::from_secs(3);
    // A long poll interval: only the commit's wake-up can make it fast.
    tokio::spawn(haven_safeguard::notify::run(s.clone(), ch, Duration::from_secs(60)));
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.ingest(&oak_pc, &threat("amy"), Timestamp::now()).await.unwrap();
    let accepted = Instant::now();
    s.ingest(&elm_pc, &threat("ben"), Timestamp::now()).await.unwrap();
    let got = wait_for(&got, 1, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1, "the webhook call-out never came");
    let latency = got[0].at.duration_since(accepted);
    assert!(latency < Duration::from_secs(1), "call-out took {latency:?} behind a silent mail relay");
    assert!(got[0].body.contains("\"callout\":true"));
    // The e-mail is not lost: after its deadline it waits for a retry, with the reason.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let notices = store.notices_for(1).await.unwrap();
    assert_eq!(notices[0].state, "waiting", "{notices:?}");
    assert!(notices[0].last_error.is_some(), "the reason is kept: {notices:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_webhook_gets_the_same_idempotency_id_on_every_retry_and_retries_stop_at_acknowledgement() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path(), &["oak"]).await;
    let (hook, got) = receiver(Some(Duration::from_secs(5))).await;
    store.add_oncall(Some("oak"), "Head", None, Some(&format!("http://127.0.0.1:{hook}/slow")), 1).await.unwrap();
    let (pc, _) = store.add_device("oak", "PC", Timestamp::now()).await.unwrap();
    let s = Service::new(store.clone(), &policy(&["oak"]));
    let mut ch = Channels::new(None, "haven@oak.example".into(), "http://127.0.0.1:1".into(), SignedDuration::from_mins(10));
    ch.deadline = Duration::from_millis(300);
    let t0 = Timestamp::now();
    s.ingest(&pc, &threat("amy"), t0).await.unwrap();
    assert_eq!(haven_safeguard::notify::run_once(&s, &ch, t0).await, 0, "slower than its deadline: not counted as sent");
    let t1 = t0.saturating_add(SignedDuration::from_secs(6)).unwrap();
    haven_safeguard::notify::run_once(&s, &ch, t1).await;
    let got = wait_for(&got, 2, Duration::from_secs(2)).await;
    assert_eq!(got.len(), 2, "retried");
    let ids: Vec<String> = got.iter().map(|g| g.header("idempotency-key").unwrap()).collect();
    assert_eq!(ids[0], ids[1], "the receiver can tell it is the same call-out");
    assert_eq!(ids[0].len(), 32);
    // Acknowledged: the next try is cancelled, not sent.
    let (lead, _) = store.add_account("lead@t.example", Role::TrustSafeguardingLead, None, "a long password", t0).await.unwrap();
    assert!(store.act_on_alert(&lead, 1, "acknowledged", "", t1).await.unwrap());
    let t2 = t1.saturating_add(SignedDuration::from_mins(10)).unwrap();
    haven_safeguard::notify::run_once(&s, &ch, t2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(got.len(), 2);
    assert_eq!(store.notices_for(1).await.unwrap()[0].state, "cancelled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_last_try_the_trusts_admins_are_told() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path(), &["oak"]).await;
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
    let (hook, got) = receiver(Some(Duration::ZERO)).await;
    store.add_oncall(Some("oak"), "Head", None, Some(&format!("http://127.0.0.1:{dead}/down")), 1).await.unwrap();
    store.add_oncall(None, "Trust on call", None, Some(&format!("http://127.0.0.1:{hook}/trust")), 1).await.unwrap();
    store.add_account("admin@trust.example", Role::TrustAdmin, None, "a long password", Timestamp::now()).await.unwrap();
    let (pc, _) = store.add_device("oak", "PC", Timestamp::now()).await.unwrap();
    let s = Service::new(store.clone(), &policy(&["oak"]));
    let mut ch = Channels::new(None, "haven@oak.example".into(), "http://127.0.0.1:1".into(), SignedDuration::from_mins(600));
    ch.max_tries = 3;
    let mut t = Timestamp::now();
    s.ingest(&pc, &threat("amy"), t).await.unwrap();
    for _ in 0..3 {
        haven_safeguard::notify::run_once(&s, &ch, t).await;
        t = t.saturating_add(SignedDuration::from_mins(10)).unwrap();
    }
    let notices = store.notices_for(1).await.unwrap();
    assert_eq!((notices[0].state.as_str(), notices[0].attempts), ("gave up", 3), "{notices:?}");
    assert!(notices.iter().any(|n| n.failure && n.name == "admin@trust.example"), "the trust's admin is told: {notices:?}");
    haven_safeguard::notify::run_once(&s, &ch, t).await;
    let got = wait_for(&got, 1, Duration::from_secs(2)).await;
    assert!(got.iter().any(|g| g.body.contains("could not deliver")), "the trust's call-out list hears of it: {got:?}");
    assert_eq!(s.health.notices_given_up.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert!(store.audit_search(Some("alert:1"), None, 20).await.unwrap().iter().any(|a| a.action == "notice.gave_up"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_webhook_preset_reaches_a_local_receiver_in_its_own_shape_signed() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path(), &["oak"]).await;
    let (hook, got) = receiver(Some(Duration::ZERO)).await;
    let base = format!("127.0.0.1:{hook}");
    let presets = [
        format!("http://{base}/haven"),
        format!("slack+http://{base}/services/T0/B0/x"),
        format!("teams+http://{base}/webhookb2/x"),
        format!("twilio-sms+http://AC1:token@{base}/2010-04-01/Accounts/AC1/Messages.json#to=%2B447700900123&from=%2B447700900000"),
        format!("twilio-voice+http://AC1:token@{base}/2010-04-01/Accounts/AC1/Calls.json#to=%2B447700900123&from=%2B447700900000"),
        format!("textlocal+http://{base}/send/#apikey=k1&numbers=447700900123&sender=Haven"),
        format!("clicksend+http://user:key@{base}/v3/sms/send#to=%2B447700900123"),
    ];
    for (i, p) in presets.iter().enumerate() {
        store.add_oncall(Some("oak"), &format!("P{i}"), None, Some(p), i64::try_from(i).unwrap()).await.unwrap();
    }
    let (pc, _) = store.add_device("oak", "PC", Timestamp::now()).await.unwrap();
    let s = Service::new(store.clone(), &policy(&["oak"]));
    let mut ch = Channels::new(None, "haven@oak.example".into(), "https://haven.oak.example".into(), SignedDuration::from_mins(1));
    ch.webhook_secret = Some("shared secret".into());
    let t0 = Timestamp::now();
    s.ingest(&pc, &threat("amy"), t0).await.unwrap();
    // Escalating a minute at a time walks the whole list.
    for m in 0..presets.len() {
        haven_safeguard::notify::run_once(&s, &ch, t0.saturating_add(SignedDuration::from_mins(i64::try_from(m).unwrap())).unwrap()).await;
    }
    let got = wait_for(&got, presets.len(), Duration::from_secs(3)).await;
    assert_eq!(got.len(), presets.len(), "{got:?}");
    let by_path = |p: &str| got.iter().find(|g| g.head.lines().next().unwrap().contains(p)).cloned().unwrap_or_else(|| panic!("nothing at {p}: {got:?}"));
    let basic = |u: &str| format!("Basic {}", base64::Engine::encode(&base64::engine::general_purpose::STANDARD, u));
    let haven = by_path("/haven");
    assert!(haven.body.contains("\"callout\":true") && haven.body.contains("\"notice\""), "{haven:?}");
    let slack = by_path("/services/T0/B0/x");
    assert!(slack.body.starts_with("{\"text\":") && slack.body.contains("https://haven.oak.example/alerts/1"), "{slack:?}");
    let teams = by_path("/webhookb2/x");
    assert!(teams.body.contains("MessageCard") && teams.body.contains("Open in Haven"), "{teams:?}");
    let sms = by_path("Messages.json");
    assert_eq!(sms.header("content-type").as_deref(), Some("application/x-www-form-urlencoded"));
    assert_eq!(sms.header("authorization"), Some(basic("AC1:token")));
    assert!(sms.body.starts_with("To=%2B447700900123&From=%2B447700900000&Body=URGENT"), "{sms:?}");
    let voice = by_path("Calls.json");
    assert!(voice.body.contains("Twiml=%3CResponse%3E%3CSay") && voice.body.contains("level+5"), "{voice:?}");
    let textlocal = by_path("/send/");
    assert!(textlocal.body.starts_with("apikey=k1&numbers=447700900123&sender=Haven&message=URGENT"), "{textlocal:?}");
    let clicksend = by_path("/v3/sms/send");
    assert_eq!(clicksend.header("authorization"), Some(basic("user:key")));
    assert!(clicksend.body.contains("\"to\":\"+447700900123\""), "{clicksend:?}");
    for g in &got {
        assert!(!g.body.contains("amy") && !g.body.contains("kill myself"), "no pupil names or text leave: {g:?}");
        let sig = g.header("x-haven-signature").expect("signed");
        let t: i64 = sig.strip_prefix("t=").unwrap().split(',').next().unwrap().parse().unwrap();
        assert_eq!(sig, haven_safeguard::notify::webhook::sign("shared secret", t, &g.body), "a receiver can check it");
        assert!(g.header("idempotency-key").is_some());
    }
}

#[tokio::test]
async fn at_start_haven_says_plainly_who_cannot_be_reached() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path(), &["oak", "elm", "ash"]).await;
    store.add_oncall(Some("elm"), "Elm DSL", Some("dsl@elm.example"), None, 1).await.unwrap();
    store.add_oncall(Some("ash"), "Ash DSL", None, Some("http://127.0.0.1:9/x"), 1).await.unwrap();
    let s = Service::new(store.clone(), &policy(&["oak", "elm", "ash"]));
    let ch = Channels::new(None, "haven@t.example".into(), String::new(), SignedDuration::from_mins(10));
    let said = ch.unreachable(&s).await.join("\n");
    assert!(said.contains("oak") && said.contains("list is empty"), "{said}");
    assert!(said.contains("elm") && said.contains("no [notify] smtp relay"), "{said}");
    assert!(!said.contains("ash"), "a webhook reaches someone: {said}");
}
