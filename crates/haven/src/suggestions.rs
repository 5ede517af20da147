//! The suggestions collector in `haven serve`: what the DNS filter and the
//! proxy counted about hosts no list names (`haven_accesslog::Unlisted`) goes
//! into the record every minute and once more on shutdown, one transaction
//! per drain (`haven_store::suggestions`).

use std::sync::Arc;
use std::time::Duration;

use haven_accesslog::Unlisted;
use haven_accesslog::unlisted::UnlistedHost;
use haven_store::Store;
use haven_store::suggestions::{Counted, Guess, Sample};
use jiff::Timestamp;

/// How often the counts go into the record.
const EVERY: Duration = Duration::from_secs(60);

fn counted(h: UnlistedHost) -> Counted {
    Counted {
        school: h.school,
        domain: h.domain,
        first_seen: h.first_seen,
        last_seen: h.last_seen,
        hits: h.hits,
        people: h.people,
        guess: h.guess.map(|g| Guess { category: g.category.id().to_string(), confidence: g.confidence, evidence: g.evidence }),
        samples: h.samples.into_iter().map(|s| Sample { url: s.url, categories: s.categories, score: s.score, at: s.at }).collect(),
    }
}

/// Writes what was counted since the last drain. A failed write loses that
/// minute's counts (said in the log): they are estimates, and holding them
/// would let memory grow while the record is away.
pub(crate) async fn drain(unlisted: &Unlisted, store: &Store) {
    let d = unlisted.drain();
    if d.hosts.is_empty() && d.not_kept == 0 {
        return;
    }
    let hosts: Vec<Counted> = d.hosts.into_iter().map(counted).collect();
    if d.not_kept > 0 {
        tracing::warn!(not_kept = d.not_kept, "suggestions: more unlisted hosts in a minute than are kept; the rest were not counted");
    }
    match store.add_unlisted(&hosts, d.not_kept, Timestamp::now()).await {
        Ok(n) => tracing::debug!(hosts = n, "suggestions: counts recorded"),
        Err(e) => tracing::warn!("suggestions: {} hosts' counts could not be recorded: {e}", hosts.len()),
    }
}

/// Drains every minute until the process ends.
pub(crate) async fn run(unlisted: Arc<Unlisted>, store: Store) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        drain(&unlisted, &store).await;
    }
}

#[cfg(test)]
mod tests {
    use haven_policy::{Category, ModelGuess};

    use super::*;

    #[tokio::test]
    async fn a_drain_adds_the_windows_counts_with_the_guess_and_samples() {
        for (store, _dir) in haven_store::testing::stores().await {
            let unlisted = Unlisted::new(2);
            let t: Timestamp = "2026-12-01T10:00:00Z".parse().unwrap();
            let guess = ModelGuess { category: Category::Gambling, confidence: 0.9, evidence: vec!["casino".into()] };
            for _ in 0..15 {
                unlisted.seen(Some("oak"), "www.bigcasino.example", "amy", Some(&guess), t);
            }
            unlisted.content_verdict(Some("oak"), "bigcasino.example", "https://bigcasino.example/", vec!["gambling".into()], 0.7, t);
            unlisted.seen(Some("oak"), "other.example", "amy", None, t);
            unlisted.seen(Some("oak"), "third.example", "amy", None, t);
            drain(&unlisted, &store).await;
            for _ in 0..10 {
                unlisted.seen(Some("oak"), "bigcasino.example", "ben", None, t);
            }
            drain(&unlisted, &store).await;
            drain(&unlisted, &store).await;
            let open = store.suggestions(Some("oak"), "open", haven_store::suggestions::THRESHOLD, 10).await.unwrap();
            assert_eq!(open.len(), 1);
            let s = &open[0];
            assert_eq!((s.domain.as_str(), s.hits, s.people), ("bigcasino.example", 25, 1));
            assert_eq!(s.guess.as_ref().map(|g| g.category.as_str()), Some("gambling"));
            assert_eq!(s.samples.len(), 1);
            assert_eq!(store.suggestion_collector().await.unwrap().not_kept, 1, "third.example had no room");
        }
    }
}
