//! The notification worker: sends what the outbox holds (e-mail by SMTP,
//! webhooks by HTTP POST for an SMS or voice gateway), retries failures with
//! growing waits, and escalates unacknowledged level-5 alerts down the
//! call-out list. Everything to send is in the database first, so nothing is
//! lost across a restart.

use std::time::Duration;

use haven_alerts::routing::{Address, Contact};
use haven_store::alerts::Outgoing;
use jiff::{SignedDuration, Timestamp};
use lettre::AsyncTransport;

use crate::Service;

/// Where notifications go out.
#[derive(Debug, Clone)]
pub struct Channels {
    /// `smtp://host:port` (plain, for a local relay) or `smtps://…` / `smtp://…?tls=required`.
    pub smtp: Option<String>,
    /// The From address.
    pub from: String,
    /// The web app's address, for links in messages.
    pub base_url: String,
    /// Call the next person after this long without an acknowledgement.
    pub escalate_after: SignedDuration,
}

/// One pass: escalate, then send what is due. Returns how many were sent.
pub async fn run_once(s: &Service, ch: &Channels, now: Timestamp) -> usize {
    escalate(s, ch, now).await;
    let Ok(due) = s.store.outbox(now).await else { return 0 };
    let mut sent = 0;
    for n in due {
        let ok = send(s, ch, &n).await;
        // 30 s, 1 min, 2 min … up to 15 min between tries.
        let wait = SignedDuration::from_secs(30 * (1i64 << n.attempts.clamp(0, 5))).min(SignedDuration::from_mins(15));
        let retry = now.saturating_add(wait).unwrap_or(now);
        if s.store.notification_result(n.id, ok, now, retry).await.is_ok() && ok {
            sent += 1;
        }
        // Said once per notice (and again every fifth try), not on every pass.
        if !ok && n.attempts % 5 == 0 {
            let why = if n.channel == "email" && ch.smtp.is_none() { " (no [notify] smtp relay is configured; it waits in the outbox)" } else { "" };
            eprintln!("haven: could not notify {} about alert {} by {} (try {}){why}; retrying", n.name, n.alert, n.channel, n.attempts + 1);
        }
    }
    sent
}

/// Runs the worker for ever, every `every`.
pub async fn run(s: Service, ch: Channels, every: Duration) {
    loop {
        run_once(&s, &ch, Timestamp::now()).await;
        tokio::time::sleep(every).await;
    }
}

async fn escalate(s: &Service, ch: &Channels, now: Timestamp) {
    let Ok(open) = s.store.unacknowledged_callouts().await else { return };
    for (alert, school, received) in open {
        let Ok(lists) = s.lists(&school).await else { continue };
        let calendar = s.calendar(&school);
        let list: Vec<&Contact> = haven_alerts::routing::callout_list(&lists, &calendar, received);
        let Ok(sent) = s.store.callouts_queued(alert).await else { continue };
        for c in haven_alerts::callouts_due(&list, received, ch.escalate_after, usize::try_from(sent).unwrap_or(0), now) {
            let (channel, target) = match &c.address {
                Address::Email(e) => ("email", e.clone()),
                Address::Webhook(w) => ("webhook", w.clone()),
            };
            let _ = s.store.enqueue(alert, &c.name, channel, &target, now, true).await;
            let _ = s.store.audit(now, "haven", "alert.escalated", &format!("alert:{alert}"), &c.name).await;
        }
    }
}

/// What a message says: enough to act, nothing a lost phone would leak.
fn summary(n: &Outgoing, base: &str) -> (String, String) {
    let subject = if n.callout { format!("URGENT: Haven level-5 alert {} needs you now", n.alert) } else { format!("Haven alert {} to review", n.alert) };
    let body = format!(
        "{}\n\nOpen it (sign-in and second factor required): {base}/alerts/{}\n\nNo pupil names or text are sent by e-mail or webhook.\n",
        if n.callout { "A level-5 alert (a possible threat to life) has arrived and has not been acknowledged." } else { "An alert is waiting in the queue." },
        n.alert
    );
    (subject, body)
}

async fn send(s: &Service, ch: &Channels, n: &Outgoing) -> bool {
    let (subject, body) = summary(n, &ch.base_url);
    match n.channel.as_str() {
        "email" => {
            let Some(url) = &ch.smtp else { return false };
            let Ok(transport) = lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::from_url(url).map(|b| b.timeout(Some(Duration::from_secs(15))).build())
            else {
                return false;
            };
            let Ok(msg) = lettre::Message::builder()
                .from(match ch.from.parse() {
                    Ok(f) => f,
                    Err(_) => return false,
                })
                .to(match n.target.parse() {
                    Ok(t) => t,
                    Err(_) => return false,
                })
                .subject(subject)
                .body(body)
            else {
                return false;
            };
            transport.send(msg).await.is_ok()
        }
        "webhook" => {
            let payload = serde_json::json!({
                "alert": n.alert,
                "callout": n.callout,
                "to": n.name,
                "subject": subject,
                "url": format!("{}/alerts/{}", ch.base_url, n.alert),
            });
            let target = n.target.clone();
            let _ = &s.store;
            tokio::task::spawn_blocking(move || {
                let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
                let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(15))).build().into();
                agent.post(&target).header("content-type", "application/json").send(payload.to_string()).is_ok_and(|r| r.status().is_success())
            })
            .await
            .unwrap_or(false)
        }
        _ => false,
    }
}
