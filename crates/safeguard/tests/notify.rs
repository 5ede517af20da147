//! Notifications reach a local SMTP catcher and a local webhook receiver;
//! failures are retried; an unacknowledged level-5 alert escalates.

use std::sync::{Arc, Mutex};

use haven_safeguard::notify::{Channels, run_once};
use haven_store::Store;
use jiff::{SignedDuration, Timestamp};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// A minimal SMTP server that keeps each message's text.
async fn smtp_catcher(got: Arc<Mutex<Vec<String>>>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            let got = got.clone();
            tokio::spawn(async move {
                let (r, mut w) = s.into_split();
                let mut r = BufReader::new(r);
                w.write_all(b"220 catcher ESMTP\r\n").await.unwrap();
                let mut line = String::new();
                let mut data = false;
                let mut msg = String::new();
                while r.read_line(&mut line).await.unwrap_or(0) > 0 {
                    if data {
                        if line == ".\r\n" {
                            data = false;
                            got.lock().unwrap().push(std::mem::take(&mut msg));
                            w.write_all(b"250 queued\r\n").await.unwrap();
                        } else {
                            msg.push_str(&line);
                        }
                    } else {
                        let cmd = line.to_ascii_uppercase();
                        let reply: &[u8] = if cmd.starts_with("EHLO") || cmd.starts_with("HELO") {
                            b"250-catcher\r\n250 8BITMIME\r\n"
                        } else if cmd.starts_with("DATA") {
                            data = true;
                            b"354 go on\r\n"
                        } else if cmd.starts_with("QUIT") {
                            w.write_all(b"221 bye\r\n").await.unwrap();
                            return;
                        } else {
                            b"250 ok\r\n"
                        };
                        w.write_all(reply).await.unwrap();
                    }
                    line.clear();
                }
            });
        }
    });
    port
}

/// A webhook receiver that keeps each body.
async fn webhook(got: Arc<Mutex<Vec<String>>>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else { return };
            let got = got.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut have = 0;
                loop {
                    let n = s.read(&mut buf[have..]).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    have += n;
                    let text = String::from_utf8_lossy(&buf[..have]).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len: usize = head.lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(|v| v.trim().parse().unwrap_or(0))).unwrap_or(0);
                        if body.len() >= len {
                            got.lock().unwrap().push(body.to_string());
                            break;
                        }
                    }
                }
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
            });
        }
    });
    port
}

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
    };
    let out = s.ingest(&device, &ev, t0).await.unwrap();
    assert_eq!(out.alerts[0].level, 5);
    let ch = Channels { smtp: Some(format!("smtp://127.0.0.1:{smtp}")), from: "haven@oak.example".into(), base_url: "http://127.0.0.1:8080".into(), escalate_after: SignedDuration::from_mins(10) };
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
    assert_eq!(store.outbox(t20.saturating_add(SignedDuration::from_secs(31)).unwrap()).await.unwrap().len(), 1, "queued again for a retry");
    // Acknowledged: no more call-outs.
    let lead = store.add_account("lead@t.example", haven_store::Role::TrustSafeguardingLead, None, "lead password", t0).await.unwrap().0;
    store.act_on_alert(&lead, 1, "acknowledged", "", t20).await.unwrap();
    let t40 = t0.saturating_add(SignedDuration::from_mins(40)).unwrap();
    run_once(&s, &ch, t40).await;
    assert_eq!(store.callouts_queued(1).await.unwrap(), 3, "no escalation after the acknowledgement");
}
