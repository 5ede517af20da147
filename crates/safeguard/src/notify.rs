//! The notification worker: sends what the outbox holds (e-mail by SMTP,
//! webhooks by HTTP POST for an SMS or voice gateway, Teams or Slack), and
//! escalates unacknowledged level-5 alerts down the call-out list.
//!
//! Everything to send is in the database first, so nothing is lost across a
//! restart. The worker is woken by each commit that queues a notice (not by a
//! poll), so a level-5 call-out leaves as soon as its alert is stored. Every
//! send has an overall deadline and runs on its own task, call-outs first, so
//! a relay that accepts and never answers cannot hold anything else up. Each
//! notice carries an idempotency id that every retry repeats; retries stop when
//! the alert is acknowledged or closed, and after the last one the trust's
//! admins are told.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use haven_alerts::routing::{Address, Contact};
use haven_store::alerts::Outgoing;
use jiff::{SignedDuration, Timestamp};
use lettre::AsyncTransport;

use crate::Service;

pub mod webhook;

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
    /// Signs webhook bodies (`X-Haven-Signature`) when set.
    pub webhook_secret: Option<String>,
    /// The most one send may take, connection to answer.
    pub deadline: Duration,
    /// Tries before a notice is given up and the trust's admins are told.
    pub max_tries: i64,
}

impl Channels {
    /// Channels with the defaults: a 10-second deadline per send, 8 tries.
    pub fn new(smtp: Option<String>, from: String, base_url: String, escalate_after: SignedDuration) -> Self {
        Self { smtp, from, base_url, escalate_after, webhook_secret: None, deadline: Duration::from_secs(10), max_tries: 8 }
    }

    /// What cannot reach anyone, said plainly: for `haven serve` at start.
    pub async fn unreachable(&self, s: &Service) -> Vec<String> {
        let mut problems = Vec::new();
        let Ok(schools) = s.store.schools().await else { return problems };
        let trust = s.store.oncall(None).await.unwrap_or_default();
        for school in schools {
            let list = s.store.oncall(Some(&school.id)).await.unwrap_or_default();
            let reachable = |o: &haven_store::people::OnCall| o.webhook.is_some() || (o.email.is_some() && self.smtp.is_some());
            if !list.iter().any(reachable) {
                let why = if list.is_empty() {
                    "its call-out list is empty"
                } else {
                    "its call-out list has e-mail addresses only and no [notify] smtp relay is set"
                };
                let fix = if trust.iter().any(reachable) { "; level-5 alerts in the holidays still reach the trust's list" } else { "" };
                problems.push(format!(
                    "nobody at {} ({}) can be called for a level-5 alert: {why} (add someone with `haven admin oncall add` or on the web app's call-out page){fix}",
                    school.name, school.id
                ));
            }
        }
        problems
    }
}

/// Notices being sent now, so a pass started meanwhile does not send them again.
type InFlight = Arc<Mutex<HashSet<i64>>>;

/// One pass: escalate, cancel what nobody needs, then send what is due and
/// wait for those sends. Returns how many were sent.
pub async fn run_once(s: &Service, ch: &Channels, now: Timestamp) -> usize {
    let inflight = InFlight::default();
    let mut sent = 0;
    for task in dispatch(s, ch, now, &inflight, true).await {
        if task.await.unwrap_or(false) {
            sent += 1;
        }
    }
    sent
}

/// Runs the worker for ever: a pass whenever a commit queues a notice, a send
/// ends, or the next waiting notice falls due (at least every `every`).
pub async fn run(s: Service, ch: Channels, every: Duration) {
    let inflight = InFlight::default();
    let mut escalated: Option<std::time::Instant> = None;
    loop {
        let woken = s.outbox_wake.notified();
        let now = Timestamp::now();
        // Escalation moves in minutes: looking every few seconds is enough,
        // however many commits wake the worker.
        let escalate = escalated.is_none_or(|at| at.elapsed() >= Duration::from_secs(5));
        if escalate {
            escalated = Some(std::time::Instant::now());
        }
        // Sends run on their own; this pass only starts them.
        drop(dispatch(&s, &ch, now, &inflight, escalate).await);
        let next = s.store.next_notice_due().await.ok().flatten();
        let wait = next.map_or(every, |t| Duration::try_from(now.duration_until(t)).unwrap_or(Duration::ZERO).clamp(Duration::from_millis(50), every));
        tokio::select! {
            () = woken => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Starts a task for every due notice not already being sent; call-outs first.
async fn dispatch(s: &Service, ch: &Channels, now: Timestamp, inflight: &InFlight, escalating: bool) -> Vec<tokio::task::JoinHandle<bool>> {
    if escalating {
        escalate(s, ch, now).await;
    }
    if let Err(e) = s.store.cancel_settled_notices(now).await {
        tracing::warn!(error = %e, "could not cancel notices about acknowledged alerts");
    }
    let due = match s.store.outbox(now).await {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "could not read the notification outbox; retrying");
            return Vec::new();
        }
    };
    if let Ok(depth) = s.store.outbox_depth().await {
        metrics::gauge!("haven_outbox_depth").set(depth as f64);
    }
    let mut tasks = Vec::new();
    for n in due {
        if !inflight.lock().unwrap_or_else(PoisonError::into_inner).insert(n.id) {
            continue;
        }
        let (s, ch, inflight) = (s.clone(), ch.clone(), inflight.clone());
        tasks.push(tokio::spawn(async move {
            let result = match tokio::time::timeout(ch.deadline, send(&ch, &n)).await {
                Ok(r) => r,
                Err(_) => Err(format!("no answer within {} s", ch.deadline.as_secs())),
            };
            let ok = settle(&s, &ch, &n, result, now).await;
            inflight.lock().unwrap_or_else(PoisonError::into_inner).remove(&n.id);
            ok
        }));
    }
    tasks
}

/// Records how a send went: sent, retried later, or given up (and the trust's admins told).
async fn settle(s: &Service, ch: &Channels, n: &Outgoing, result: Result<(), String>, now: Timestamp) -> bool {
    match result {
        Ok(()) => {
            if n.callout {
                // From the alert being stored to the call-out leaving.
                if let Ok(Some(alert)) = s.store.alert_received(n.alert).await {
                    metrics::histogram!("haven_callout_seconds").record(Timestamp::now().duration_since(alert).as_secs_f64().max(0.0));
                }
            }
            metrics::counter!("haven_notices_total", "result" => "sent").increment(1);
            if let Err(e) = s.store.notification_result(n.id, true, now, now).await {
                tracing::error!(error = %e, notice = n.id, "a notice was sent but could not be marked sent; it may be sent again (same idempotency id)");
            }
            true
        }
        Err(why) => {
            metrics::counter!("haven_notices_total", "result" => "failed").increment(1);
            let _ = s.store.notification_error(n.id, &why).await;
            if n.attempts + 1 >= ch.max_tries {
                let _ = s.store.give_up_notification(n.id, now).await;
                s.health.notices_given_up.fetch_add(1, Ordering::Relaxed);
                tracing::error!(notice = n.id, alert = n.alert, to = %n.name, channel = %n.channel, "gave up notifying after {} tries: {why}", n.attempts + 1);
                if !n.failure {
                    tell_admins(s, n, now).await;
                }
            } else {
                // 5 s, 10 s, 20 s … up to 5 min between tries: a call-out that
                // failed is worth trying again soon.
                let wait = SignedDuration::from_secs(5 * (1i64 << n.attempts.clamp(0, 6))).min(SignedDuration::from_mins(5));
                let _ = s.store.notification_result(n.id, false, now, now.saturating_add(wait).unwrap_or(now)).await;
                if n.attempts % 3 == 0 {
                    tracing::warn!(notice = n.id, alert = n.alert, to = %n.name, channel = %n.channel, "could not notify (try {}): {why}; retrying", n.attempts + 1);
                }
            }
            false
        }
    }
}

/// Tells the trust's admins (and the trust's call-out list) that a notice could not be delivered.
async fn tell_admins(s: &Service, n: &Outgoing, now: Timestamp) {
    let mut told = 0;
    if let Ok(admins) = s.store.admin_emails().await {
        for email in admins {
            if s.store.enqueue_failure(n.alert, &email, "email", &email, now).await.is_ok() {
                told += 1;
            }
        }
    }
    for c in s.store.oncall(None).await.unwrap_or_default() {
        let (channel, target) = match (c.email, c.webhook) {
            (_, Some(w)) => ("webhook", w),
            (Some(e), None) => ("email", e),
            (None, None) => continue,
        };
        if s.store.enqueue_failure(n.alert, &c.name, channel, &target, now).await.is_ok() {
            told += 1;
        }
    }
    let _ = s.store.audit(now, "haven", "notice.gave_up", &format!("alert:{}", n.alert), &format!("{} by {}; {told} told", n.name, n.channel)).await;
    s.outbox_wake.notify_one();
}

async fn escalate(s: &Service, ch: &Channels, now: Timestamp) {
    let Ok(open) = s.store.unacknowledged_callouts().await else { return };
    let mut queued = false;
    for (alert, school, received) in open {
        // The same people the alert's first notice went to (a staff alert never reaches the DSLs).
        let Ok(Some((audience, person))) = s.store.alert_audience_and_person(alert).await else { continue };
        let Ok(lists) = s.lists_for(&school, audience, &person).await else { continue };
        let calendar = s.calendar(&school);
        let list: Vec<&Contact> = haven_alerts::routing::callout_list(&lists, &calendar, received);
        let Ok(sent) = s.store.callouts_queued(alert).await else { continue };
        for c in haven_alerts::callouts_due(&list, received, ch.escalate_after, usize::try_from(sent).unwrap_or(0), now) {
            let (channel, target) = match &c.address {
                Address::Email(e) => ("email", e.clone()),
                Address::Webhook(w) => ("webhook", w.clone()),
            };
            if s.store.enqueue(alert, &c.name, channel, &target, now, true).await.is_ok() {
                queued = true;
            }
            let _ = s.store.audit(now, "haven", "alert.escalated", &format!("alert:{alert}"), &c.name).await;
        }
    }
    if queued {
        s.outbox_wake.notify_one();
    }
}

/// What a message says: enough to act, nothing a lost phone would leak.
pub(crate) fn summary(n: &Outgoing, base: &str) -> (String, String) {
    let link = format!("{base}/alerts/{}", n.alert);
    if n.failure {
        return (
            format!("Haven could not deliver the notices about alert {}", n.alert),
            format!(
                "Haven tried and failed to reach someone about alert {} and has stopped trying that channel.\n\nCheck the alert (sign-in and second factor required): {link}\nand the call-out list and [notify] settings.\n",
                n.alert
            ),
        );
    }
    let subject = if n.callout { format!("URGENT: Haven level-5 alert {} needs you now", n.alert) } else { format!("Haven alert {} to review", n.alert) };
    let body = format!(
        "{}\n\nOpen it (sign-in and second factor required): {link}\n\nNo pupil names or text are sent by e-mail or webhook.\n",
        if n.callout { "A level-5 alert (a possible threat to life) has arrived and has not been acknowledged." } else { "An alert is waiting in the queue." },
    );
    (subject, body)
}

async fn send(ch: &Channels, n: &Outgoing) -> Result<(), String> {
    let (subject, body) = summary(n, &ch.base_url);
    match n.channel.as_str() {
        "email" => email(ch, &n.target, &subject, &body, &n.notice_id).await,
        "webhook" => {
            let request = webhook::Request::build(&n.target, n, &subject, &body, &ch.base_url, ch.webhook_secret.as_deref(), Timestamp::now())?;
            let deadline = ch.deadline;
            tokio::task::spawn_blocking(move || request.send(deadline)).await.map_err(|e| format!("webhook task: {e}"))?
        }
        other => Err(format!("unknown channel {other:?}")),
    }
}

/// Sends one e-mail through the `[notify]` relay (alert notices, and the
/// reports' digests); `notice_id` is its Message-ID, the same on every retry.
pub(crate) async fn email(ch: &Channels, target: &str, subject: &str, body: &str, notice_id: &str) -> Result<(), String> {
    let url = ch.smtp.as_deref().ok_or("no [notify] smtp relay is configured")?;
    let transport = lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::from_url(url)
        .map_err(|e| format!("[notify] smtp {url:?} cannot be used: {e}"))?
        .timeout(Some(ch.deadline))
        .build();
    let domain = ch.from.rsplit_once('@').map_or("haven.invalid", |(_, d)| d.trim_end_matches('>'));
    let msg = lettre::Message::builder()
        .from(ch.from.parse().map_err(|e| format!("[notify] from {:?} is not an e-mail address: {e}", ch.from))?)
        .to(target.parse().map_err(|e| format!("{target:?} is not an e-mail address: {e}"))?)
        .subject(subject)
        // Every retry has the same Message-ID, so mail systems drop repeats.
        .message_id(Some(format!("<{notice_id}@{domain}>")))
        .body(body.to_string())
        .map_err(|e| e.to_string())?;
    transport.send(msg).await.map(|_| ()).map_err(|e| format!("SMTP: {e}"))
}
