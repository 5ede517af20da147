//! The filters' findings on their way into the record. The DNS filter and the
//! proxy hand findings over without waiting ([`haven_accesslog::Sink`]); the
//! intake keeps them until the service has stored them.
//!
//! A pupil who keeps retrying a blocked site makes thousands of identical
//! findings a minute. Rather than a bounded channel that silently drops the
//! overflow, the intake coalesces: a finding identical to one still waiting
//! (same person, same search or same blocked site and categories) adds to
//! that one's count, and a repeat of one stored in the last minute waits out
//! the minute, so the record gets one occurrence a minute per repeat with how
//! many it stands for. Only when more than `capacity` *different* findings
//! wait is one refused, and then it is counted, logged and shown in the web
//! app. Reports from the block page are never coalesced or refused.

use std::collections::{HashMap, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use haven_accesslog::{Finding, Sink};

use crate::{Health, Service};

/// How long a stored finding's repeats are gathered before the next is stored.
const HOLD: Duration = Duration::from_secs(60);
/// Tries to store one finding before it is counted as failed.
const TRIES: u32 = 6;

/// Waiting findings, coalesced.
pub struct Intake {
    /// The service block-page reports are stored through while their sender waits.
    service: Option<Service>,
    state: Mutex<State>,
    wake: tokio::sync::Notify,
    capacity: usize,
    health: Arc<Health>,
    /// Set at shutdown: everything waiting is taken now, holds or not.
    draining: std::sync::atomic::AtomicBool,
    /// Findings taken but not yet stored.
    storing: std::sync::atomic::AtomicUsize,
}

#[derive(Default)]
struct State {
    /// Waiting findings by key, with how many they stand for and when they may be taken.
    waiting: HashMap<u64, (Finding, u32, Instant)>,
    order: VecDeque<u64>,
    /// When each recently stored key was stored (for the minute's hold).
    recent: HashMap<u64, Instant>,
    /// Reports from people, each on its own.
    reports: VecDeque<Finding>,
}

/// What makes two findings the same: the person and what they did (the same
/// search, or a block in the same categories).
fn key(f: &Finding) -> Option<u64> {
    let mut h = DefaultHasher::new();
    let seen = f.seen();
    (&seen.school, &seen.person).hash(&mut h);
    match f {
        Finding::Search { terms, .. } => (0u8, terms.trim().to_lowercase()).hash(&mut h),
        // Retrying one site or trying a hundred of its kind is one concern.
        Finding::Blocked { categories, .. } => (1u8, categories).hash(&mut h),
        // A person took the trouble to tell: each report stands alone.
        Finding::Report { .. } => return None,
    }
    Some(h.finish())
}

impl Intake {
    /// An intake holding at most `capacity` different findings, counting into `health`.
    pub fn new(capacity: usize, health: Arc<Health>) -> Self {
        Self {
            service: None,
            state: Mutex::new(State::default()),
            wake: tokio::sync::Notify::new(),
            capacity,
            health,
            draining: std::sync::atomic::AtomicBool::new(false),
            storing: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// An intake for `service`, with its worker storing findings in the background.
    pub fn start(service: Service, capacity: usize) -> Arc<Self> {
        let intake = Arc::new(Self { service: Some(service.clone()), ..Self::new(capacity, service.health.clone()) });
        tokio::spawn(intake.clone().run(service));
        intake
    }

    /// Findings waiting now.
    pub fn waiting(&self) -> usize {
        let st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        st.waiting.len() + st.reports.len()
    }

    /// At shutdown: stores everything waiting, repeats' holds cut short,
    /// within `deadline`. Returns how many findings could not be stored in time.
    pub async fn flush(&self, deadline: Duration) -> usize {
        self.draining.store(true, Ordering::SeqCst);
        self.wake.notify_one();
        let end = Instant::now() + deadline;
        loop {
            let left = self.waiting() + self.storing.load(Ordering::SeqCst);
            if left == 0 || Instant::now() >= end {
                return left;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Takes every finding whose hold has passed; otherwise when the next one will be ready.
    fn take_ready(&self, now: Instant) -> (Vec<(Finding, u32)>, Option<Instant>) {
        let now = if self.draining.load(Ordering::SeqCst) { now + HOLD } else { now };
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let st = &mut *st;
        st.recent.retain(|_, at| now.duration_since(*at) < HOLD);
        let mut ready: Vec<(Finding, u32)> = st.reports.drain(..).map(|f| (f, 1)).collect();
        let mut next: Option<Instant> = None;
        let mut keep = VecDeque::with_capacity(st.order.len());
        while let Some(k) = st.order.pop_front() {
            match st.waiting.get(&k) {
                Some((_, _, at)) if *at <= now => {
                    if let Some((f, n, _)) = st.waiting.remove(&k) {
                        st.recent.insert(k, now);
                        ready.push((f, n));
                    }
                }
                Some((_, _, at)) => {
                    next = Some(next.map_or(*at, |n| n.min(*at)));
                    keep.push_back(k);
                }
                None => {}
            }
        }
        st.order = keep;
        (ready, next)
    }

    /// Stores findings as they come, for ever.
    async fn run(self: Arc<Self>, service: Service) {
        loop {
            let (ready, next) = self.take_ready(Instant::now());
            self.storing.fetch_add(ready.len(), Ordering::SeqCst);
            for (finding, repeats) in ready {
                self.store(&service, finding, repeats).await;
                self.storing.fetch_sub(1, Ordering::SeqCst);
            }
            let notified = self.wake.notified();
            match next {
                Some(at) => {
                    tokio::select! {
                        () = notified => {}
                        () = tokio::time::sleep_until(at.into()) => {}
                    }
                }
                None if self.waiting() > 0 => {}
                None => notified.await,
            }
        }
    }

    /// Stores one finding, retrying a failing record for a few seconds.
    async fn store(&self, service: &Service, finding: Finding, repeats: u32) {
        let mut wait = Duration::from_millis(100);
        for attempt in 1..=TRIES {
            match service.take(&finding, repeats, jiff::Timestamp::now()).await {
                Ok(_) => {
                    self.health.findings_taken.fetch_add(u64::from(repeats), Ordering::Relaxed);
                    metrics::counter!("haven_findings_taken_total").increment(u64::from(repeats));
                    return;
                }
                Err(e) if attempt == TRIES => {
                    self.health.findings_failed.fetch_add(u64::from(repeats), Ordering::Relaxed);
                    metrics::counter!("haven_findings_dropped_total", "why" => "record failed").increment(u64::from(repeats));
                    tracing::error!(error = %e, school = ?finding.seen().school, "a filter finding could not be recorded after {TRIES} tries; it is lost");
                }
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "could not record a filter finding yet; trying again");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
            }
        }
    }
}

impl Sink for Intake {
    /// A report is stored before the pupil's page says it was sent; if the
    /// record cannot take it now, it waits in the intake like any finding
    /// and the page says so.
    fn keep(&self, finding: Finding) -> haven_accesslog::Kept<'_> {
        Box::pin(async move {
            let Some(service) = &self.service else {
                self.tell(finding);
                return true;
            };
            match service.take(&finding, 1, jiff::Timestamp::now()).await {
                Ok(_) => {
                    self.health.findings_taken.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("haven_findings_taken_total").increment(1);
                    true
                }
                Err(e) => {
                    tracing::warn!(error = %e, "a block-page report could not be stored yet; it waits in the intake");
                    self.tell(finding);
                    false
                }
            }
        })
    }

    fn tell(&self, finding: Finding) {
        // Blocks outside the safeguarding categories are policy, not concern: the access log has them.
        if let Finding::Blocked { categories, .. } = &finding
            && !categories.iter().any(|c| haven_alerts::from_block(c).is_some())
        {
            return;
        }
        let now = Instant::now();
        let k = key(&finding);
        let mut guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let st = &mut *guard;
        let Some(k) = k else {
            st.reports.push_back(finding);
            drop(guard);
            self.wake.notify_one();
            return;
        };
        if let Some((_, n, _)) = st.waiting.get_mut(&k) {
            *n = n.saturating_add(1);
            self.health.findings_coalesced.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("haven_findings_coalesced_total").increment(1);
            return;
        }
        if st.waiting.len() >= self.capacity {
            drop(guard);
            let dropped = self.health.findings_dropped.fetch_add(1, Ordering::Relaxed) + 1;
            metrics::counter!("haven_findings_dropped_total", "why" => "intake full").increment(1);
            if dropped.is_power_of_two() {
                tracing::error!(
                    dropped,
                    capacity = self.capacity,
                    "the safeguarding intake is full: findings from the filters are being refused (is the database down?)"
                );
            }
            return;
        }
        let ready = st.recent.get(&k).map_or(now, |at| *at + HOLD);
        st.waiting.insert(k, (finding, 1, ready));
        st.order.push_back(k);
        drop(guard);
        self.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use haven_accesslog::Seen;
    use haven_policy::{Category, CategorySet};

    fn blocked(person: &str, url: &str) -> Finding {
        let seen = Seen { school: Some("oak".into()), person: person.into(), device: None, url: url.into(), at: jiff::Timestamp::now() };
        Finding::Blocked { seen, categories: [Category::from_id("self-harm").unwrap()].into_iter().collect::<CategorySet>() }
    }

    #[test]
    fn identical_findings_coalesce_and_only_different_ones_past_capacity_are_refused_and_counted() {
        let health = Arc::new(Health::default());
        let intake = Intake::new(2, health.clone());
        for _ in 0..10_000 {
            intake.tell(blocked("amy", "http://harm.example/a"));
        }
        intake.tell(blocked("amy", "http://other-harm.example/b")); // same kind of site: same finding
        intake.tell(blocked("ben", "http://harm.example/"));
        intake.tell(blocked("cat", "http://harm.example/"));
        assert_eq!(intake.waiting(), 2);
        assert_eq!(health.findings_coalesced.load(Ordering::Relaxed), 10_000);
        assert_eq!(health.findings_dropped.load(Ordering::Relaxed), 1, "the third different finding is refused and counted");
        let (ready, _) = intake.take_ready(Instant::now());
        assert_eq!(ready.iter().map(|(_, n)| *n).collect::<Vec<_>>(), [10_001, 1], "nothing lost: the count travels with the finding");
        // A repeat within the minute waits out the minute.
        intake.tell(blocked("amy", "http://harm.example/a"));
        let (ready, next) = intake.take_ready(Instant::now());
        assert!(ready.is_empty() && next.is_some());
        let (ready, _) = intake.take_ready(Instant::now() + HOLD);
        assert_eq!(ready.len(), 1);
    }

    #[tokio::test]
    async fn a_block_page_report_is_in_the_record_before_the_pupil_is_told_it_was_sent() {
        use haven_accesslog::ReportKind;
        let dir = tempfile::tempdir().unwrap();
        let store = haven_store::Store::open_dir(dir.path()).await.unwrap();
        store.upsert_school("oak", "Oak", false).await.unwrap();
        let service = Service::new(store.clone(), &haven_policy::PolicySet::default());
        // No worker started: only `keep` itself can put it in the record.
        let intake = Intake { service: Some(service), ..Intake::new(10, Arc::new(Health::default())) };
        let seen = Seen { school: Some("oak".into()), person: "amy".into(), device: None, url: "http://harm.example/".into(), at: jiff::Timestamp::now() };
        let categories = [Category::from_id("self-harm").unwrap()].into_iter().collect::<CategorySet>();
        let report = Finding::Report { seen, kind: ReportKind::Worrying, reference: "HVN-1".into(), categories, rule: None, words: "scary".into() };
        assert!(intake.keep(report.clone()).await);
        let kept = store.reports(Some("worry"), 10).await.unwrap();
        assert_eq!((kept.len(), kept[0].alert.is_some()), (1, true), "stored with its alert before the answer");
        assert_eq!(intake.waiting(), 0);
        assert!(intake.keep(report).await, "pressed again: the same report, not a second");
        assert_eq!(store.reports(Some("worry"), 10).await.unwrap().len(), 1);
        // The record refusing: the page is told, and the report waits in the intake for another try.
        let blocker = store.begin().await.unwrap();
        let seen = Seen { school: Some("oak".into()), person: "ben".into(), device: None, url: "http://harm.example/".into(), at: jiff::Timestamp::now() };
        let other = Finding::Report { seen, kind: ReportKind::Worrying, reference: "HVN-2".into(), categories, rule: None, words: String::new() };
        assert!(!intake.keep(other).await);
        assert_eq!(intake.waiting(), 1);
        drop(blocker);
    }
}
