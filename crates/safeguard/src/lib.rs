//! Haven's safeguarding service: monitoring events in, alerts with deadlines
//! and call-outs out, and the people who act on them in between. The rules
//! (thresholds, deadlines, routing, grouping) are `haven-alerts`; the
//! classifier is `haven-textscan`; the record is `haven-store`. This crate
//! wires them to the clock, the network and the browser.
#![forbid(unsafe_code)]

pub mod accounts;
pub mod admin;
pub mod api;
pub mod changes;
pub mod checks;
pub mod chronology;
pub mod extension;
pub mod governance;
pub mod history;
pub mod incidents;
pub mod ingest;
pub mod intake;
pub mod lexicon;
pub mod lists;
pub mod notify;
pub mod people;
pub mod queue;
pub mod reports;
pub mod retention;
mod serving;
pub mod signin;
pub mod suggestions;
pub mod web;
pub mod window;

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use haven_alerts::Thresholds;
use haven_policy::schedule::Calendar;
use haven_store::Store;
pub use serving::{Limits, MetricsHook, WebServer, serve_limited, serve_with};

/// What the config decides and a reload may change while alerts flow.
#[derive(Clone)]
pub struct Settings {
    /// Each school's calendar, by school id.
    pub calendars: HashMap<String, Calendar>,
    /// Each school's alert thresholds (default for schools not listed).
    pub thresholds: HashMap<String, Thresholds>,
    /// What the classifier is built from before the record's own entries:
    /// the shipped lexicons and the trust's files.
    pub lexicons: Vec<haven_textscan::Lexicon>,
    /// The classifier built from [`lexicons`](Self::lexicons).
    pub configured: Arc<haven_textscan::Classifier>,
    /// The classifier in force: `configured` with the record's own entries.
    pub classifier: Arc<haven_textscan::Classifier>,
    /// Per school id, that school's own lexicons (`[[school]] lexicons`).
    pub school_lexicons: HashMap<String, Vec<haven_textscan::Lexicon>>,
    /// Per school with its own lexicons, the classifier in force there.
    pub school_classifiers: HashMap<String, Arc<haven_textscan::Classifier>>,
    /// The semantic stage every classifier built here reads with: the
    /// shipped one, or with the trust's own retrained head
    /// (`<data dir>/model/head.bin`); it reads the DSL's example sentences.
    pub semantic: Option<Arc<haven_textscan::semantic::Semantic>>,
    /// What the browser extension is told (`[extension]`).
    pub extension: haven_config::ExtensionSettings,
    /// Each known user's group id, by lower-case login (whose typing the
    /// extension captures is decided by group).
    pub groups_by_user: HashMap<String, String>,
    /// The list feeds `haven serve` refreshes and when (for the lists page).
    pub feeds: haven_config::feeds::Feeds,
    /// The trust's base filtering policy from the config (groups, classes,
    /// users): what a filtering change or request is checked against.
    pub policy: Arc<haven_policy::PolicySet>,
    /// The roles that approve a filtering request, in order (`[filtering] approvers`).
    pub approvers: Vec<String>,
    /// The LADO, the trust's and the schools' own (`[safeguarding] lado`),
    /// shown on every incident about staff or the headteacher.
    pub lado: haven_config::Lados,
    /// Where the DNS filter and the proxy write their access logs
    /// (`<data dir>/logs`), which the history page reads; `None`: no logs.
    pub logs_dir: Option<std::path::PathBuf>,
    /// Runs the filtering checks' probes through the running filters (the
    /// binary's, which owns them); `None` where the filters do not run here.
    pub checks: Option<Arc<dyn checks::Prober>>,
    /// How long each class of data is kept (`[retention]`), for the data map.
    pub retention: haven_config::retention::Retention,
}

impl Settings {
    /// The schools of `policy`, default thresholds, the shipped classifier.
    pub fn new(policy: &haven_policy::PolicySet) -> Self {
        Self {
            calendars: policy.schools.iter().map(|s| (s.id.clone(), s.calendar.clone())).collect(),
            thresholds: HashMap::new(),
            lexicons: haven_textscan::Lexicon::shipped(),
            configured: haven_textscan::Classifier::shipped_shared(),
            classifier: haven_textscan::Classifier::shipped_shared(),
            school_lexicons: HashMap::new(),
            school_classifiers: HashMap::new(),
            semantic: Some(haven_textscan::semantic::Semantic::shipped_shared()),
            extension: haven_config::ExtensionSettings::default(),
            groups_by_user: policy.users.iter().filter_map(|u| Some((u.id.to_lowercase(), policy.groups.get(u.group)?.id.clone()))).collect(),
            feeds: haven_config::feeds::Feeds::default(),
            policy: Arc::new(policy.clone()),
            approvers: vec!["dsl".into()],
            lado: haven_config::Lados::default(),
            logs_dir: None,
            checks: None,
            retention: haven_config::retention::Retention::default(),
        }
    }

    /// The classifier for a school's events: its own, else the trust's.
    pub fn classifier_for(&self, school: &str) -> &Arc<haven_textscan::Classifier> {
        self.school_classifiers.get(school).unwrap_or(&self.classifier)
    }
}

/// What the service needs to run.
#[derive(Clone)]
pub struct Service {
    /// The record.
    pub store: Store,
    /// Calendars, thresholds and classifier, swapped whole by [`Service::reload`].
    settings: Arc<RwLock<Arc<Settings>>>,
    /// How long a repeat of one concern joins the open alert.
    pub group_window: jiff::SignedDuration,
    /// Demo data: every page says so.
    pub demo: bool,
    /// Where evidence files are kept (by SHA-256), owner-only.
    pub evidence_dir: std::path::PathBuf,
    /// What was taken, coalesced, refused or lost, for the web app and `/metrics`.
    pub health: Arc<Health>,
    /// Woken by every commit that queues a notice, so call-outs leave at once.
    pub outbox_wake: Arc<tokio::sync::Notify>,
    /// One writer at a time per person, so two events about one pupil
    /// arriving together join one alert rather than making two.
    person_locks: Arc<Vec<tokio::sync::Mutex<()>>>,
    /// Failed sign-ins by address and e-mail (in memory, bounded).
    pub sign_in: Arc<signin::Throttle>,
    /// Each person's last few messages, read together (in memory, bounded).
    pub windows: Arc<window::Windows>,
    /// The key that signs the policy devices obey, read from the record once.
    pub(crate) signer: Arc<tokio::sync::OnceCell<Arc<aws_lc_rs::signature::Ed25519KeyPair>>>,
    /// When each device's contact was last written, and what it said: a
    /// device sending many events writes its contact once a minute, not
    /// once an event.
    pub(crate) contacts: Arc<std::sync::Mutex<HashMap<i64, (std::time::Instant, haven_store::devices::Contact)>>>,
}

/// Counts the web app shows and `/metrics` exports: nothing is dropped unseen.
#[derive(Debug, Default)]
pub struct Health {
    /// Findings from the filters stored (counting coalesced repeats).
    pub findings_taken: std::sync::atomic::AtomicU64,
    /// Findings that joined an identical one still waiting.
    pub findings_coalesced: std::sync::atomic::AtomicU64,
    /// Findings refused because the intake was full.
    pub findings_dropped: std::sync::atomic::AtomicU64,
    /// Findings the record would not take after several tries.
    pub findings_failed: std::sync::atomic::AtomicU64,
    /// Notices given up on after their last try.
    pub notices_given_up: std::sync::atomic::AtomicU64,
    /// People whose recent messages were let go to hold others' (their next
    /// message is read alone).
    pub windows_evicted: std::sync::atomic::AtomicU64,
}

impl Health {
    /// Findings lost for good (refused or failed).
    pub fn findings_lost(&self) -> u64 {
        use std::sync::atomic::Ordering::Relaxed;
        self.findings_dropped.load(Relaxed) + self.findings_failed.load(Relaxed)
    }
}

impl Service {
    /// A service over `store` with the schools of `policy`.
    pub fn new(store: Store, policy: &haven_policy::PolicySet) -> Self {
        Self {
            store,
            settings: Arc::new(RwLock::new(Arc::new(Settings::new(policy)))),
            group_window: jiff::SignedDuration::from_mins(30),
            demo: false,
            evidence_dir: std::env::temp_dir().join("haven-evidence"),
            health: Arc::new(Health::default()),
            outbox_wake: Arc::new(tokio::sync::Notify::new()),
            person_locks: Arc::new((0..64).map(|_| tokio::sync::Mutex::new(())).collect()),
            sign_in: Arc::new(signin::Throttle::default()),
            windows: Arc::new(window::Windows::default()),
            signer: Arc::new(tokio::sync::OnceCell::new()),
            contacts: Arc::default(),
        }
    }

    /// Holds the writer lock for one person's alerts.
    pub(crate) async fn lock_person(&self, school: &str, person: &str) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (school, person).hash(&mut h);
        let i = usize::try_from(h.finish() % self.person_locks.len() as u64).unwrap_or(0);
        self.person_locks[i].lock().await
    }

    /// The settings in force now.
    pub fn settings(&self) -> Arc<Settings> {
        self.settings.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Puts new settings in force for every event from now on (every clone
    /// of this service shares them).
    pub fn reload(&self, settings: Settings) {
        *self.settings.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(settings);
    }

    /// Puts `settings` in force with the phrases, exclusions and example
    /// sentences safeguarding leads keep in the record (`/admin/lexicon`)
    /// added to its lexicons.
    pub async fn reload_with_record(&self, mut settings: Settings) -> Result<(), haven_store::StoreError> {
        use haven_store::lexicon::EntryKind;
        use haven_textscan::{Classifier, Concern, Example, Lexicon};
        let entries = self.store.lexicon_entries().await?;
        // Entries were checked when added; one a newer Haven would refuse is
        // left out rather than stopping the rest.
        let live: Vec<_> = entries.iter().filter(|e| e.removed.is_none() && (e.kind == EntryKind::Example || Lexicon::usable(&e.phrase).is_ok())).collect();
        let of = |kind: EntryKind| live.iter().filter(move |e| e.kind == kind);
        let phrases =
            of(EntryKind::Phrase).filter_map(|e| Some((e.category.as_deref().filter(|c| Concern::parse(c).is_some())?, e.phrase.as_str(), e.weight?)));
        let exclusions = of(EntryKind::Exclude).map(|e| (e.phrase.as_str(), e.reason.as_str()));
        let examples: Vec<Example> = of(EntryKind::Example)
            .filter_map(|e| {
                let concern = match e.category.as_deref() {
                    Some(c) => Some(Concern::parse(c)?),
                    None => None,
                };
                let level = if concern.is_some() { e.level.filter(|l| (1..=5).contains(l))? } else { 0 };
                Some(Example { text: e.phrase.clone(), concern, level, reason: e.reason.clone() })
            })
            .collect();
        let kept = if live.is_empty() { None } else { Lexicon::from_entries("record", phrases, exclusions).ok().map(|l| l.with_examples(examples)) };
        let build = |extra: &[Lexicon]| {
            let all: Vec<Lexicon> = settings.lexicons.iter().chain(extra).chain(&kept).cloned().collect();
            Arc::new(Classifier::new(&all).with_shared_model(haven_textscan::model::Model::shipped_shared()).with_semantic(settings.semantic.clone()))
        };
        settings.classifier = if kept.is_some() { build(&[]) } else { settings.configured.clone() };
        settings.school_classifiers = settings.school_lexicons.iter().map(|(school, extra)| (school.clone(), build(extra))).collect();
        self.reload(settings);
        Ok(())
    }

    /// Rebuilds the classifier in force after the record's entries changed.
    pub async fn put_record_lexicon_in_force(&self) -> Result<(), haven_store::StoreError> {
        self.reload_with_record((*self.settings()).clone()).await
    }

    /// The calendar of a school (a London Monday–Friday calendar if unknown).
    pub fn calendar(&self, school: &str) -> Calendar {
        self.settings().calendars.get(school).cloned().unwrap_or_else(Calendar::london)
    }
}

/// The answer to a read of the record whose audit entry could not be
/// written: nothing is shown that the audit log would not know about.
pub(crate) fn unaudited() -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        [(axum::http::header::RETRY_AFTER, "30")],
        "Haven could not note in the audit log who is reading this, so it is not shown. Try again in a minute; \
         if this goes on, tell IT: the database may be full, locked or down.\n",
    )
        .into_response()
}

/// Binds the web app and API on `addrs` and serves them in the background
/// until the process ends ([`serve_with`] to drain them, or add `/metrics`).
/// Returns the bound addresses.
pub async fn serve(service: Service, addrs: &[std::net::SocketAddr]) -> std::io::Result<Vec<std::net::SocketAddr>> {
    Ok(serve_with(service, addrs, None).await?.addrs)
}

/// Every route: the JSON API and the web app.
pub fn router(service: Service) -> axum::Router {
    api::routes()
        .merge(extension::routes())
        .merge(web::routes())
        .merge(incidents::routes())
        .merge(checks::routes())
        .merge(history::routes())
        .merge(people::routes())
        .merge(queue::routes())
        .merge(changes::routes())
        .merge(admin::routes())
        .merge(lexicon::routes())
        .merge(lists::routes())
        .merge(suggestions::routes())
        .merge(accounts::routes())
        .merge(reports::routes())
        .merge(governance::routes())
        .merge(retention::routes())
        .with_state(service)
}
