//! The safeguarding service's part of `haven serve`, and opening the record
//! for `haven admin`: the database the config names (or the SQLite file in
//! the data folder), with the config's schools synced into it.

use anyhow::{Context, Result};
use haven_config::Config;
use haven_store::{Role, Store};

use crate::snapshot::Snapshot;

/// Opens the record for `config`: its schools brought up to date, its key
/// ready, files owner-only.
pub(crate) async fn open(config: &Config) -> Result<Store> {
    let store = match &config.database {
        Some(url) => Store::open(url).await.with_context(|| "opening the database named by [data] database")?,
        None => Store::open_dir(&config.data_dir).await.with_context(|| format!("opening the safeguarding record in {}", config.data_dir.display()))?,
    };
    for s in &config.policy.schools {
        store.upsert_school(&s.id, &s.name, config.demo).await?;
    }
    sync_people(&store, config).await?;
    // Whoever opens the record first makes its key and seals what was kept plain.
    crate::admin::secure_record(&store, config).await?;
    Ok(store)
}

/// Brings the record's directory of people in line with the config and its
/// MIS imports: names, year, form and teaching groups; leavers marked left.
/// Only what changed is written, so a reload with the same MIS is one read.
async fn sync_people(store: &Store, config: &Config) -> Result<()> {
    use haven_store::directory::{PersonKind, PersonRow};
    let rows: Vec<PersonRow> = config
        .people
        .iter()
        .map(|p| PersonRow {
            school: p.school.clone().unwrap_or_default(),
            login: p.login.clone(),
            display_name: p.name.clone(),
            year: p.year.clone(),
            form: p.form.clone(),
            classes: p.classes.clone(),
            kind: if p.staff { PersonKind::Staff } else { PersonKind::Pupil },
        })
        .collect();
    let synced = store.sync_people(None, &rows, jiff::Timestamp::now()).await.context("syncing the MIS's people into the record")?;
    if synced != haven_store::directory::Synced::default() {
        tracing::info!(added = synced.added, changed = synced.changed, left = synced.left, "people synced from the MIS");
    }
    Ok(())
}

/// Demo accounts, made once on a demo configuration's first start, and printed.
pub(crate) async fn seed_demo(store: &Store, config: &Config) -> Result<()> {
    if !config.demo || store.account_by_email("dsl@demo.haven.invalid").await.is_ok() {
        return Ok(());
    }
    let Some(school) = config.policy.schools.last() else { return Ok(()) };
    let now = jiff::Timestamp::now();
    let (dsl, totp) = store.add_account("dsl@demo.haven.invalid", Role::Dsl, Some(&school.id), "demo-dsl-password", now).await?;
    let (teacher, _) = store.add_account("teacher@demo.haven.invalid", Role::Teacher, Some(&school.id), "demo-teacher-password", now).await?;
    // Made-up names, so the demo shows people acting by name.
    store.set_account_name(dsl.id, Some("Sam Patel")).await?;
    store.set_account_name(teacher.id, Some("Alex Morgan")).await?;
    let (_, device_token) = store.add_device(&school.id, "Demo library PC", now).await?;
    store.add_oncall(Some(&school.id), "Demo DSL", Some("dsl@demo.haven.invalid"), None, 1).await?;
    // A few made-up alerts, so there is something to click through.
    let service = haven_safeguard::Service::new(store.clone(), &config.policy);
    let (device, _) = store.add_device(&school.id, "Demo classroom PC", now).await?;
    for (person, text) in [
        ("demo.pupil1", "i cant take it anymore, i want to kill myself tonight"),
        ("demo.pupil2", "nobody likes you, everyone hates you, go die"),
        ("demo.pupil3", "this is our little secret, dont tell your parents, send me a picture"),
        ("demo.pupil4", "my number is 07700 900123 and i live at 12 Oak Road"),
    ] {
        let event = haven_safeguard::ingest::Event {
            person: person.into(),
            text: text.into(),
            source: "typed".into(),
            url: None,
            observed_at: None,
            screenshot: None,
            title: None,
            idempotency_key: None,
        };
        service.ingest(&device, &event, now).await?;
    }
    eprintln!("haven: DEMO DATA — demo accounts and made-up alerts created (shown once):");
    eprintln!("haven:   DSL      dsl@demo.haven.invalid / demo-dsl-password, second factor (TOTP) secret {}", totp.unwrap_or_default());
    eprintln!("haven:   teacher  teacher@demo.haven.invalid / demo-teacher-password");
    eprintln!("haven:   device   ingest token {device_token}");
    Ok(())
}

/// A sink for the DNS filter and the proxy that feeds `service` through its
/// coalescing intake (findings without a known school stay in the access log).
pub(crate) fn filter_sink(service: haven_safeguard::Service) -> std::sync::Arc<haven_safeguard::intake::Intake> {
    haven_safeguard::intake::Intake::start(service, 100_000)
}

/// Calendars, alert thresholds and the classifier from `config`:
/// `classifier` is the snapshot's one monitoring classifier (the shipped
/// lexicons and the trust's own), the proxy's too; `semantic` the stage it
/// reads with (the trust's own head, if switched on), which the classifiers
/// with the record's entries and schools' lexicons read with too.
pub(crate) fn settings(
    config: &Config,
    classifier: &std::sync::Arc<haven_textscan::Classifier>,
    semantic: &std::sync::Arc<haven_textscan::semantic::Semantic>,
) -> Result<haven_safeguard::Settings> {
    let mut settings = haven_safeguard::Settings::new(&config.policy);
    settings.lexicons = crate::classify::lexicons(&config.lexicons).context("in [monitoring] lexicons")?;
    settings.configured = classifier.clone();
    settings.semantic = Some(semantic.clone());
    settings.extension = config.extension.clone();
    settings.feeds = config.feeds.clone();
    settings.approvers.clone_from(&config.approvers);
    settings.lado.clone_from(&config.lado);
    settings.retention = config.retention;
    // The history page reads the access logs where the filters write them.
    settings.logs_dir = Some(config.data_dir.join("logs"));
    for (school, files) in &config.school_lexicons {
        let own = crate::classify::lexicon_files(files).with_context(|| format!("in the lexicons of school {school}"))?;
        settings.school_lexicons.insert(school.clone(), own);
    }
    for (school, levels) in &config.alert_thresholds {
        let mut t = haven_alerts::Thresholds::default();
        for (name, level) in levels {
            if let Some(c) = haven_textscan::Concern::parse(name) {
                t.set(c, *level);
            }
        }
        settings.thresholds.insert(school.clone(), t);
    }
    Ok(settings)
}

/// Puts a snapshot's calendars, thresholds and lexicons in force in the
/// running service, and brings the record's schools up to date.
pub(crate) async fn apply(service: &haven_safeguard::Service, snapshot: &Snapshot) -> Result<()> {
    let (Some(config), Some(settings)) = (&snapshot.config, &snapshot.safeguard) else { return Ok(()) };
    for s in &config.policy.schools {
        service.store.upsert_school(&s.id, &s.name, config.demo).await?;
    }
    sync_people(&service.store, config).await?;
    service.reload_with_record(settings.clone()).await?;
    Ok(())
}

/// Starts the web app (with `/metrics` when given), API and notification
/// worker on a snapshot; returns the running web app and the service.
pub(crate) async fn start(
    snapshot: &Snapshot,
    metrics: Option<haven_safeguard::MetricsHook>,
) -> Result<(haven_safeguard::WebServer, haven_safeguard::Service)> {
    let Some(config) = &snapshot.config else { anyhow::bail!("the safeguarding service needs a config") };
    let store = open(config).await?;
    seed_demo(&store, config).await?;
    let mut service = haven_safeguard::Service::new(store, &config.policy);
    apply(&service, snapshot).await?;
    service.demo = config.demo;
    service.evidence_dir = config.data_dir.join("evidence");
    let server = haven_safeguard::serve_with(service.clone(), &snapshot.web_listen, metrics).await?;
    let bound = server.addrs.clone();
    let n = &config.notify;
    let mut channels = haven_safeguard::notify::Channels::new(
        n.smtp.clone(),
        n.from.clone(),
        n.base_url.clone().unwrap_or_else(|| bound.first().map(|a| format!("http://{a}")).unwrap_or_default()),
        jiff::SignedDuration::from_mins(i64::from(n.escalate_after_mins)),
    );
    channels.webhook_secret = std::env::var("HAVEN_WEBHOOK_SECRET").ok().or_else(|| n.webhook_secret.clone()).filter(|s| !s.is_empty());
    // Said plainly at start: a call-out list nobody can be reached on is a
    // level-5 alert that wakes no one.
    for problem in channels.unreachable(&service).await {
        eprintln!("haven: WARNING: {problem}");
    }
    // Notifications wait in the database; the worker sends them and escalates.
    // The weekly DSL digests: queued each Monday morning, sent like the notices.
    tokio::spawn(haven_safeguard::reports::run(service.clone(), channels.clone()));
    tokio::spawn(haven_safeguard::notify::run(service.clone(), channels, std::time::Duration::from_secs(15)));
    // The filtering checks' schedule ([filtering_checks] every), on the settings in force.
    tokio::spawn(haven_safeguard::checks::schedule(service.clone()));
    Ok((server, service))
}
