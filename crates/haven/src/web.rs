//! The safeguarding service's part of `haven serve`, and opening the record
//! for `haven admin`: the database the config names (or the SQLite file in
//! the data folder), with the config's schools synced into it.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use haven_config::Config;
use haven_store::{Role, Store};

use crate::config_file;

/// Where the web app's settings come from.
pub(crate) struct Source {
    pub(crate) config: Option<PathBuf>,
    pub(crate) listen: Vec<SocketAddr>,
}

/// Opens the record for `config` and brings its schools up to date.
pub(crate) async fn open(config: &Config) -> Result<Store> {
    let store = match &config.database {
        Some(url) => Store::open(url).await.with_context(|| "opening the database named by [data] database")?,
        None => Store::open_dir(&config.data_dir).await.with_context(|| format!("opening the safeguarding record in {}", config.data_dir.display()))?,
    };
    for s in &config.policy.schools {
        store.upsert_school(&s.id, &s.name, config.demo).await?;
    }
    Ok(store)
}

/// Demo accounts, made once on a demo configuration's first start, and printed.
async fn seed_demo(store: &Store, config: &Config) -> Result<()> {
    if !config.demo || store.account_by_email("dsl@demo.haven.invalid").await.is_ok() {
        return Ok(());
    }
    let Some(school) = config.policy.schools.last() else { return Ok(()) };
    let now = jiff::Timestamp::now();
    let (_, totp) = store.add_account("dsl@demo.haven.invalid", Role::Dsl, Some(&school.id), "demo-dsl-password", now).await?;
    store.add_account("teacher@demo.haven.invalid", Role::Teacher, Some(&school.id), "demo-teacher-password", now).await?;
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
        let event =
            haven_safeguard::ingest::Event { person: person.into(), text: text.into(), source: "typed".into(), url: None, observed_at: None, screenshot: None };
        service.ingest(&device, &event, now).await?;
    }
    eprintln!("haven: DEMO DATA — demo accounts and made-up alerts created (shown once):");
    eprintln!("haven:   DSL      dsl@demo.haven.invalid / demo-dsl-password, second factor (TOTP) secret {}", totp.unwrap_or_default());
    eprintln!("haven:   teacher  teacher@demo.haven.invalid / demo-teacher-password");
    eprintln!("haven:   device   ingest token {device_token}");
    Ok(())
}

/// What the filters tell the safeguarding service, queued so they never wait.
pub(crate) struct FilterSink(tokio::sync::mpsc::Sender<(haven_accesslog::Seen, haven_safeguard::ingest::Filtered)>);

impl haven_accesslog::Sink for FilterSink {
    fn search(&self, seen: haven_accesslog::Seen, terms: &str) {
        let _ = self.0.try_send((seen, haven_safeguard::ingest::Filtered::Search(terms.to_string())));
    }
    fn blocked(&self, seen: haven_accesslog::Seen, categories: Vec<String>) {
        // Only safeguarding categories matter; the rest never leave the filter.
        if categories.iter().filter_map(|c| haven_policy::Category::from_id(c)).any(|c| haven_alerts::from_block(c).is_some()) {
            let _ = self.0.try_send((seen, haven_safeguard::ingest::Filtered::Blocked(categories)));
        }
    }
}

/// A sink for the DNS filter and the proxy that feeds `service` (findings without a known school are logged only).
pub(crate) fn filter_sink(service: haven_safeguard::Service) -> std::sync::Arc<dyn haven_accesslog::Sink> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(haven_accesslog::Seen, haven_safeguard::ingest::Filtered)>(4096);
    tokio::spawn(async move {
        while let Some((seen, what)) = rx.recv().await {
            let Some(school) = seen.school else { continue };
            if let Err(e) = service.from_filter(&school, &seen.person, &seen.url, what, jiff::Timestamp::now()).await {
                eprintln!("haven: could not record a filter finding as an alert: {e}");
            }
        }
    });
    std::sync::Arc::new(FilterSink(tx))
}

/// Starts the web app and API; returns where they listen and the service.
/// Calendars, alert thresholds and the classifier (with the trust's own
/// lexicons) from `config`.
fn settings(config: &Config) -> Result<haven_safeguard::Settings> {
    let mut settings = haven_safeguard::Settings::new(&config.policy);
    settings.lexicons = crate::classify::lexicons(&config.lexicons).context("in [monitoring] lexicons")?;
    if !config.lexicons.is_empty() {
        let classifier = haven_textscan::Classifier::new(&settings.lexicons).with_model(haven_textscan::model::Model::shipped());
        settings.configured = std::sync::Arc::new(classifier);
    }
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

/// What a reload of the safeguarding service looks at: the config file and
/// the trust's lexicons.
fn stamp(config: &Config) -> String {
    let mut s = crate::dns::config_stamp(&config.path);
    for l in config.lexicons.iter().chain(config.school_lexicons.values().flatten()) {
        s += &crate::dns::config_stamp(l);
    }
    s
}

impl Source {
    /// The stamp of what the service was built from now.
    pub(crate) fn fingerprint(&self) -> Result<String> {
        Ok(stamp(&config_file::load(self.config.as_deref())?))
    }

    /// Puts the config's calendars, thresholds and lexicons in force in the
    /// running service, and brings the record's schools up to date.
    pub(crate) async fn reload(&self, service: &haven_safeguard::Service) -> Result<String> {
        let path = self.config.clone();
        let (config, settings) = tokio::task::spawn_blocking(move || -> Result<_> {
            let config = config_file::load(path.as_deref())?;
            let settings = settings(&config)?;
            Ok((config, settings))
        })
        .await??;
        for s in &config.policy.schools {
            service.store.upsert_school(&s.id, &s.name, config.demo).await?;
        }
        service.reload_with_record(settings).await?;
        Ok(stamp(&config))
    }
}

/// Starts the web app, API and notification worker; returns the bound
/// addresses, the service and the stamp of the config it was built from.
pub(crate) async fn start(source: &Source) -> Result<(Vec<SocketAddr>, haven_safeguard::Service, String)> {
    let config = config_file::load(source.config.as_deref())?;
    let store = open(&config).await?;
    seed_demo(&store, &config).await?;
    let mut service = haven_safeguard::Service::new(store, &config.policy);
    service.reload_with_record(settings(&config)?).await?;
    service.demo = config.demo;
    service.evidence_dir = config.data_dir.join("evidence");
    let listen = if source.listen.is_empty() { config.web_listen.clone() } else { source.listen.clone() };
    let bound = haven_safeguard::serve(service.clone(), &listen).await?;
    let n = &config.notify;
    let channels = haven_safeguard::notify::Channels {
        smtp: n.smtp.clone(),
        from: n.from.clone(),
        base_url: n.base_url.clone().unwrap_or_else(|| bound.first().map(|a| format!("http://{a}")).unwrap_or_default()),
        escalate_after: jiff::SignedDuration::from_mins(i64::from(n.escalate_after_mins)),
    };
    // Notifications wait in the database; the worker sends them and escalates.
    tokio::spawn(haven_safeguard::notify::run(service.clone(), channels, std::time::Duration::from_secs(15)));
    Ok((bound, service, stamp(&config)))
}
