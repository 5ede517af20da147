//! `haven serve`'s list feeds: at each source's due time (its `refresh`
//! schedule on the trust's clock, from the record's last run) the sources
//! due are downloaded with their credentials, checked and swapped in
//! (`haven_lists::update::refresh`, off the async workers), every run is
//! kept in the record, and the snapshot is reloaded so the new lists are in
//! force without a restart. A failed refresh keeps the previous list and
//! tells IT.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use haven_config::Config;
use haven_config::feeds::History;
use haven_lists::NoProgress;
use haven_lists::feed::Secrets;
use haven_lists::update::{Fetch, Outcome, refresh};
use haven_store::Store;
use jiff::{SignedDuration, Timestamp};
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::snapshot::Snapshot;

/// The longest the task sleeps before looking again: a changed config
/// (new times, a new feed) is noticed within this.
const LOOK_AGAIN: Duration = Duration::from_secs(60);

/// While a feed keeps failing, IT is told again after this long.
const REMIND_AFTER: SignedDuration = SignedDuration::from_hours(24);

/// Runs for as long as Haven does. `current` is the snapshot in force (its
/// config says which feeds there are and when); `reload` makes the serve
/// loop build a new snapshot at once.
pub(crate) async fn run(current: Arc<ArcSwap<Snapshot>>, store: Store, reload: Arc<Notify>) {
    // When IT was last told about each failing feed.
    let mut told: HashMap<String, Timestamp> = HashMap::new();
    loop {
        let wait = match round(&current, &store, &reload, &mut told).await {
            Ok(wait) => wait,
            Err(e) => {
                warn!("haven: list feeds: could not read their last runs from the record ({e}); trying again in a minute");
                LOOK_AGAIN
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// Refreshes whatever is due now; how long until the next look.
async fn round(
    current: &ArcSwap<Snapshot>,
    store: &Store,
    reload: &Notify,
    told: &mut HashMap<String, Timestamp>,
) -> Result<Duration, haven_store::StoreError> {
    let snapshot = current.load_full();
    let Some(config) = snapshot.config.as_ref() else { return Ok(LOOK_AGAIN) };
    let feeds = &config.feeds;
    let histories: HashMap<String, History> =
        store.feed_states().await?.into_iter().map(|s| (s.last.source.clone(), History { last_run: Some(s.last.at), failures: s.failures })).collect();
    let now = Timestamp::now();
    let mut due = Vec::new();
    let mut next: Option<Timestamp> = None;
    for feed in &feeds.sources {
        let history = histories.get(&feed.source).copied().unwrap_or_default();
        match feed.refresh.next_due(&feeds.timezone, &history, now) {
            Some(at) if at <= now => due.push(feed.clone()),
            Some(at) => next = Some(next.map_or(at, |n| n.min(at))),
            None => {}
        }
    }
    if due.is_empty() {
        let until = next.map_or(LOOK_AGAIN, |n| Duration::try_from(n.duration_since(now)).unwrap_or(Duration::ZERO).min(LOOK_AGAIN));
        return Ok(until.max(Duration::from_millis(200)));
    }
    let outcomes = download(config, &due).await;
    let at = Timestamp::now();
    let mut any_new = false;
    for o in &outcomes {
        let before = histories.get(&o.name).map_or(0, |h| h.failures);
        match &o.result {
            Ok(f) => {
                any_new = true;
                told.remove(&o.name);
                info!(source = %o.name, entries = f.entries, bytes = f.bytes, "haven: list feed refreshed");
                store.record_feed_run(&o.name, at, true, Some(f.entries), &format!("downloaded {} bytes; {} entries in force", f.bytes, f.entries)).await?;
            }
            Err(why) => {
                warn!(source = %o.name, "haven: list feed could not be refreshed; the previous list stays in force: {why}");
                store.record_feed_run(&o.name, at, false, None, why).await?;
                // Told when a feed starts failing, and once a day while it goes on.
                let remind = told.get(&o.name).is_none_or(|t| at.duration_since(*t) >= REMIND_AFTER);
                if before == 0 || remind {
                    let retry = haven_config::feeds::retry_after(before + 1);
                    let message = format!(
                        "The list feed {:?} could not be refreshed: {why}. Haven keeps filtering with the list it has and tries again within {} minutes; \
                         the lists page shows each try.",
                        o.name,
                        retry.as_mins()
                    );
                    store.add_it_notice(None, "feed", &message, at).await?;
                    told.insert(o.name.clone(), at);
                }
            }
        }
    }
    if any_new {
        // The serve loop builds a new snapshot from the swapped-in lists now,
        // rather than on its next look at the files.
        reload.notify_one();
    }
    Ok(Duration::from_millis(200))
}

/// Downloads the feeds `due` on a blocking thread (downloads and compiling
/// take seconds to minutes); a feed whose credentials cannot be read fails
/// without being asked.
async fn download(config: &Config, due: &[haven_config::feeds::Feed]) -> Vec<Outcome> {
    let mut failed = Vec::new();
    let mut fetch = Fetch { only: Some(Vec::new()), ..Fetch::default() };
    let secrets = match &config.feeds.secrets {
        Some(path) if due.iter().any(|f| f.credentials.is_some()) => Some(Secrets::load(path).map_err(|e| e.to_string())),
        _ => None,
    };
    for feed in due {
        if let Some(name) = &feed.credentials {
            let found = match &secrets {
                Some(Ok(s)) => s.get(name).cloned().ok_or_else(|| format!("the secrets file has no entry [{name}]")),
                Some(Err(e)) => Err(e.clone()),
                None => Err("no secrets file is configured ([lists] secrets)".to_string()),
            };
            match found {
                Ok(c) => {
                    fetch.credentials.insert(feed.source.clone(), c);
                }
                Err(why) => {
                    failed.push(Outcome { name: feed.source.clone(), result: Err(why) });
                    continue;
                }
            }
        }
        if let Some(only) = &mut fetch.only {
            only.push(feed.source.clone());
        }
    }
    if fetch.only.as_ref().is_some_and(Vec::is_empty) {
        return failed;
    }
    let (specs, index_path) = (config.lists.clone(), config.index_path.clone());
    let built_at = Timestamp::now().to_string();
    match tokio::task::spawn_blocking(move || refresh(&specs, &index_path, &built_at, &NoProgress, &fetch)).await {
        Ok(mut outcomes) => {
            outcomes.extend(failed);
            outcomes
        }
        Err(e) => {
            let lost: Vec<_> = due.iter().filter(|f| !failed.iter().any(|o| o.name == f.source)).collect();
            let mut outcomes = failed;
            outcomes.extend(lost.into_iter().map(|f| Outcome { name: f.source.clone(), result: Err(format!("the refresh stopped unexpectedly ({e})")) }));
            outcomes
        }
    }
}
