//! Hosts no list names, counted where the filters decide, for IT's
//! suggestions queue. The DNS filter and the proxy bump [`Unlisted`] on every
//! decision about a host no list names (or that only the hostname model
//! put in a category); `haven serve` drains it into the record every minute.
//!
//! It sits on the DNS hot path, so a bump is one short critical section: a
//! lookup by `&str` in a two-level map (school, then registered domain) that
//! allocates only for a key not seen since the last drain. It is bounded: at
//! most `capacity` keys between drains; a bump for a new key beyond that is
//! counted as not kept, and the count is drained with the rest so the page
//! can say so.

use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash};
use std::sync::{Mutex, PoisonError};

use haven_policy::{Decision, ModelGuess, Rule};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// Keys held between drains unless told otherwise.
pub const KEYS: usize = 20_000;

/// Content-verdict samples kept per host (here, and in the record).
pub const SAMPLES: usize = 5;

/// Distinct people told apart per host between drains; beyond that the
/// count says "at least".
const PEOPLE: usize = 64;

/// One page-content verdict on a host, kept as a sample beside its hits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContentSample {
    /// The page.
    pub url: String,
    /// The categories the page's content pointed to (category ids).
    pub categories: Vec<String>,
    /// How sure the content analysis was, 0 to 1.
    pub score: f32,
    /// When, in unix milliseconds.
    pub at: i64,
}

/// One host's tally since the last drain.
#[derive(Debug, Clone, PartialEq)]
pub struct UnlistedHost {
    /// The school the people asking were at; `None`: the trust's (no school).
    pub school: Option<String>,
    /// The registered domain (`example.co.uk`).
    pub domain: String,
    /// First and last decision in the window.
    pub first_seen: Timestamp,
    /// Last decision in the window.
    pub last_seen: Timestamp,
    /// Decisions counted (0 when only content verdicts arrived).
    pub hits: u64,
    /// Different people (or devices, for nobody signed in) in the window,
    /// at most 64.
    pub people: u32,
    /// The hostname model's guess, when it was asked.
    pub guess: Option<ModelGuess>,
    /// Content verdicts, at most [`SAMPLES`].
    pub samples: Vec<ContentSample>,
}

/// What one drain hands over.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Drained {
    /// Every host counted since the last drain.
    pub hosts: Vec<UnlistedHost>,
    /// Bumps for new hosts refused because the window was full.
    pub not_kept: u64,
}

#[derive(Default)]
struct Tally {
    first_seen: i64,
    last_seen: i64,
    hits: u64,
    people: Vec<u64>,
    guess: Option<ModelGuess>,
    samples: Vec<ContentSample>,
}

#[derive(Default)]
struct Window {
    /// School id (`""` for the trust) → registered domain → tally.
    schools: HashMap<String, HashMap<String, Tally>>,
    keys: usize,
    not_kept: u64,
}

/// The counter shared by the DNS filter and the proxy.
pub struct Unlisted {
    window: Mutex<Window>,
    capacity: usize,
    /// Fixed for the process, so one person hashes the same in every bump;
    /// the hashes never leave memory.
    people: RandomState,
}

impl Default for Unlisted {
    fn default() -> Self {
        Self::new(KEYS)
    }
}

impl Unlisted {
    /// A counter holding at most `capacity` hosts between drains.
    pub fn new(capacity: usize) -> Self {
        Self { window: Mutex::new(Window::default()), capacity, people: RandomState::new() }
    }

    /// Whether `d` is about a host no list names: the lists gave it no
    /// category, or only the hostname model did. A staff entry of the
    /// config names the host, so it is not a suggestion.
    pub fn counts(d: &Decision) -> bool {
        (d.guess.is_some() || d.categories.is_empty()) && !matches!(d.rule, Rule::Entry { .. })
    }

    /// Counts one decision about `host` for `person` (anything that tells
    /// people apart: a login, else an address) when [`counts`](Self::counts)
    /// says so. Probes must not be handed in: the caller leaves them out.
    /// `explain` finds the words behind the model's guess; it is called
    /// only for the guess kept, once per host between drains, so the
    /// decisions themselves never pay for it.
    pub fn decision(&self, school: Option<&str>, host: &str, person: impl Hash, d: &Decision, at: Timestamp, explain: impl FnOnce(&mut ModelGuess)) {
        if Self::counts(d) {
            self.count(school, host, person, d.guess.as_ref(), at, explain);
        }
    }

    /// Counts one request for `host`, with the model's guess when it was asked.
    pub fn seen(&self, school: Option<&str>, host: &str, person: impl Hash, guess: Option<&ModelGuess>, at: Timestamp) {
        self.count(school, host, person, guess, at, |_| {});
    }

    fn count(&self, school: Option<&str>, host: &str, person: impl Hash, guess: Option<&ModelGuess>, at: Timestamp, explain: impl FnOnce(&mut ModelGuess)) {
        let Some(domain) = registered_domain(host) else { return };
        let who = self.people.hash_one(person);
        let at = at.as_millisecond();
        let mut w = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(t) = w.tally(school.unwrap_or(""), &domain, self.capacity, at) else { return };
        t.hits += 1;
        t.last_seen = t.last_seen.max(at);
        t.first_seen = t.first_seen.min(at);
        if t.people.len() < PEOPLE && !t.people.contains(&who) {
            t.people.push(who);
        }
        if t.guess.is_none()
            && let Some(g) = guess
        {
            let mut g = g.clone();
            if g.evidence.is_empty() {
                explain(&mut g);
            }
            t.guess = Some(g);
        }
    }

    /// Keeps one page-content verdict on `host` as a sample (at most
    /// [`SAMPLES`] per host between drains). A verdict on a host the record
    /// has no suggestion for is dropped when drained, so verdicts on listed
    /// sites never make one.
    pub fn content_verdict(&self, school: Option<&str>, host: &str, url: &str, categories: Vec<String>, score: f32, at: Timestamp) {
        let Some(domain) = registered_domain(host) else { return };
        let at = at.as_millisecond();
        let mut w = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(t) = w.tally(school.unwrap_or(""), &domain, self.capacity, at) else { return };
        if t.samples.len() < SAMPLES {
            t.samples.push(ContentSample { url: url.to_string(), categories, score, at });
        }
    }

    /// Takes everything counted so far and starts a new window.
    pub fn drain(&self) -> Drained {
        let w = std::mem::take(&mut *self.window.lock().unwrap_or_else(PoisonError::into_inner));
        let mut hosts = Vec::with_capacity(w.keys);
        for (school, domains) in w.schools {
            let school = (!school.is_empty()).then_some(school);
            for (domain, t) in domains {
                hosts.push(UnlistedHost {
                    school: school.clone(),
                    domain,
                    first_seen: Timestamp::from_millisecond(t.first_seen).unwrap_or(Timestamp::UNIX_EPOCH),
                    last_seen: Timestamp::from_millisecond(t.last_seen).unwrap_or(Timestamp::UNIX_EPOCH),
                    hits: t.hits,
                    people: u32::try_from(t.people.len()).unwrap_or(u32::MAX),
                    guess: t.guess,
                    samples: t.samples,
                });
            }
        }
        Drained { hosts, not_kept: w.not_kept }
    }

    /// Hosts held now.
    pub fn len(&self) -> usize {
        self.window.lock().unwrap_or_else(PoisonError::into_inner).keys
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Window {
    /// The tally for a key, made when there is room; `None` (counted as not
    /// kept) when the window is full.
    fn tally(&mut self, school: &str, domain: &str, capacity: usize, at: i64) -> Option<&mut Tally> {
        let full = self.keys >= capacity;
        let exists = self.schools.get(school).is_some_and(|d| d.contains_key(domain));
        if !exists {
            if full {
                self.not_kept += 1;
                return None;
            }
            self.keys += 1;
            let domains = match self.schools.get_mut(school) {
                Some(d) => d,
                None => self.schools.entry(school.to_string()).or_default(),
            };
            domains.insert(domain.to_string(), Tally { first_seen: at, last_seen: at, ..Tally::default() });
        }
        self.schools.get_mut(school).and_then(|d| d.get_mut(domain))
    }
}

/// Second-level labels under a two-letter country code that are not a
/// registrant's own (`example.co.uk`, `school.sch.uk`).
const SHORT_SECOND_LEVELS: &[&str] = &["ac", "co", "com", "edu", "gov", "ltd", "me", "mil", "net", "nhs", "org", "plc", "sch"];

/// Names that are never a public site: reverse lookups, local names.
const NOT_PUBLIC: &[&str] = &["arpa", "local", "localhost", "invalid", "internal", "lan", "home"];

/// The registered domain of `host`: its last two labels, or three when the
/// second-last is a short second-level label under a two-letter country
/// code. `None` for addresses, single labels and names that are never
/// public. Lower-cased; borrows when `host` already is.
pub fn registered_domain(host: &str) -> Option<Cow<'_, str>> {
    let host = host.trim_end_matches('.');
    if host.is_empty() || host.starts_with('[') || host.contains(':') || host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let mut labels = host.rsplit('.');
    let last = labels.next()?;
    let second = labels.next()?;
    if last.is_empty() || second.is_empty() || NOT_PUBLIC.iter().any(|n| n.eq_ignore_ascii_case(last)) {
        return None;
    }
    let mut len = last.len() + 1 + second.len();
    if last.len() == 2 && last.bytes().all(|b| b.is_ascii_alphabetic()) && SHORT_SECOND_LEVELS.iter().any(|s| s.eq_ignore_ascii_case(second)) {
        let third = labels.next().filter(|l| !l.is_empty())?;
        len += third.len() + 1;
    }
    let domain = &host[host.len() - len..];
    if domain.bytes().any(|b| b.is_ascii_uppercase()) { Some(Cow::Owned(domain.to_ascii_lowercase())) } else { Some(Cow::Borrowed(domain)) }
}

#[cfg(test)]
mod tests {
    use haven_policy::{Action, Category, CategorySet, Verdict};

    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn decision(categories: CategorySet, rule: Rule, guess: Option<ModelGuess>) -> Decision {
        Decision { action: Action::Allow, categories, decisive: CategorySet::EMPTY, rule, list: None, entry: None, safe_search_host: None, guess }
    }

    fn gambling() -> ModelGuess {
        ModelGuess { category: Category::Gambling, confidence: 0.91, evidence: vec!["casino".into(), "bet".into()] }
    }

    #[test]
    fn registered_domains() {
        let d = |h: &str| registered_domain(h).map(|c| c.into_owned());
        assert_eq!(d("www.example.com").as_deref(), Some("example.com"));
        assert_eq!(d("a.b.example.co.uk.").as_deref(), Some("example.co.uk"));
        assert_eq!(d("oak.sch.uk").as_deref(), Some("oak.sch.uk"));
        assert_eq!(d("cdn.Example.COM").as_deref(), Some("example.com"));
        assert_eq!(d("co.uk"), None, "a public suffix alone is nobody's");
        assert_eq!(d("news.bbc.co"), Some("bbc.co".into()), "co as a top level is a registrant's");
        assert_eq!(d("printer"), None);
        assert_eq!(d("10.0.0.1"), None);
        assert_eq!(d("[::1]"), None);
        assert_eq!(d("1.0.0.10.in-addr.arpa"), None);
        assert_eq!(d("nas.local"), None);
        assert!(matches!(registered_domain("www.example.com"), Some(Cow::Borrowed(_))), "no allocation for a lower-case name");
    }

    #[test]
    fn counts_unlisted_and_model_decisions_only() {
        let u = Unlisted::new(100);
        let t = at("2026-12-01T10:00:00Z");
        let games: CategorySet = [Category::Games].into_iter().collect();
        u.decision(Some("oak"), "play.listed.example", "amy", &decision(games, Rule::BlockedCategory, None), t, |_| {});
        u.decision(
            Some("oak"),
            "mine.example",
            "amy",
            &decision(CategorySet::EMPTY, Rule::Entry { verdict: Verdict::Allow, r#override: None }, None),
            t,
            |_| {},
        );
        assert!(u.is_empty(), "a listed host and a staff entry are not suggestions");
        let by_model: CategorySet = [Category::Gambling].into_iter().collect();
        // The decision carries the guess without its words; they are found
        // once, for the guess kept, not for every request.
        let unexplained = ModelGuess { evidence: Vec::new(), ..gambling() };
        let explained = std::cell::Cell::new(0);
        for _ in 0..3 {
            u.decision(Some("oak"), "www.bigcasino.example", "amy", &decision(by_model, Rule::Model, Some(unexplained.clone())), t, |g| {
                explained.set(explained.get() + 1);
                g.evidence = gambling().evidence;
            });
        }
        assert_eq!(explained.get(), 1, "the words are found once per host");
        u.decision(
            Some("oak"),
            "img.bigcasino.example",
            "ben",
            &decision(CategorySet::EMPTY, Rule::Default, None),
            t + jiff::SignedDuration::from_secs(5),
            |_| {},
        );
        u.decision(Some("oak"), "bigcasino.example", "amy", &decision(CategorySet::EMPTY, Rule::Default, None), t + jiff::SignedDuration::from_secs(9), |_| {});
        u.decision(None, "bigcasino.example", "amy", &decision(CategorySet::EMPTY, Rule::Default, None), t, |_| {});
        let mut d = u.drain();
        assert!(u.is_empty(), "drained");
        d.hosts.sort_by(|a, b| a.school.cmp(&b.school));
        assert_eq!(d.hosts.len(), 2, "one per school and domain: {d:?}");
        assert_eq!((d.hosts[0].school.as_deref(), d.hosts[0].hits), (None, 1), "the trust's apart from the school's");
        let oak = &d.hosts[1];
        assert_eq!((oak.domain.as_str(), oak.hits, oak.people), ("bigcasino.example", 5, 2));
        assert_eq!((oak.first_seen, oak.last_seen), (t, t + jiff::SignedDuration::from_secs(9)));
        assert_eq!(oak.guess, Some(gambling()), "the model's guess carried");
        assert_eq!(d.not_kept, 0);
    }

    #[test]
    fn bounded_and_what_is_refused_is_counted() {
        let u = Unlisted::new(3);
        let t = at("2026-12-01T10:00:00Z");
        for i in 0..5 {
            u.seen(Some("oak"), &format!("site{i}.example"), "amy", None, t);
        }
        u.seen(Some("oak"), "site1.example", "ben", None, t);
        assert_eq!(u.len(), 3);
        let d = u.drain();
        assert_eq!(d.hosts.len(), 3);
        assert_eq!(d.not_kept, 2, "two new hosts had no room");
        assert_eq!(d.hosts.iter().map(|h| h.hits).sum::<u64>(), 4, "a known host still counts when full");
        // The next window starts empty, with room again.
        u.seen(Some("oak"), "site4.example", "amy", None, t);
        assert_eq!(u.drain().not_kept, 0);
    }

    #[test]
    fn content_verdicts_are_samples_at_most_five() {
        let u = Unlisted::new(10);
        let t = at("2026-12-01T10:00:00Z");
        u.seen(Some("oak"), "bigcasino.example", "amy", None, t);
        for i in 0..7 {
            u.content_verdict(Some("oak"), "www.bigcasino.example", &format!("https://www.bigcasino.example/{i}"), vec!["gambling".into()], 0.8, t);
        }
        let d = u.drain();
        assert_eq!(d.hosts.len(), 1);
        assert_eq!(d.hosts[0].samples.len(), SAMPLES);
        assert_eq!(d.hosts[0].samples[0].url, "https://www.bigcasino.example/0");
        assert_eq!(d.hosts[0].hits, 1, "a verdict is not a hit");
    }

    /// The cost of a bump on the DNS path, with the window full:
    /// `cargo test -p haven-accesslog --release --lib bump_cost -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement, for release builds"]
    fn bump_cost() {
        let u = Unlisted::new(KEYS);
        let t = at("2026-12-01T10:00:00Z");
        let hosts: Vec<String> = (0..KEYS).map(|i| format!("www.site{i}.example")).collect();
        for h in &hosts {
            u.seen(Some("oak"), h, "amy", None, t);
        }
        let d = decision(CategorySet::EMPTY, Rule::Default, None);
        let n = 2_000_000;
        let start = std::time::Instant::now();
        for i in 0..n {
            u.decision(Some("oak"), &hosts[i % KEYS], i % 500, &d, t, |_| {});
        }
        let held = start.elapsed();
        let start = std::time::Instant::now();
        for i in 0..n {
            u.decision(Some("oak"), "www.new.example", i, &d, t, |_| {});
            if i % 1000 == 0 {
                u.drain();
            }
        }
        let fresh = start.elapsed();
        println!(
            "bump, host held: {:.0} ns; with a drain every 1,000: {:.0} ns; full window refusing: {:.0} ns",
            held.as_nanos() as f64 / n as f64,
            fresh.as_nanos() as f64 / n as f64,
            {
                let u = Unlisted::new(0);
                let start = std::time::Instant::now();
                for i in 0..n {
                    u.decision(Some("oak"), &hosts[i % KEYS], i, &d, t, |_| {});
                }
                start.elapsed().as_nanos() as f64 / n as f64
            }
        );
    }

    #[test]
    fn people_are_capped() {
        let u = Unlisted::new(10);
        let t = at("2026-12-01T10:00:00Z");
        for i in 0..100 {
            u.seen(Some("oak"), "popular.example", i, None, t);
        }
        let d = u.drain();
        assert_eq!((d.hosts[0].hits, d.hosts[0].people), (100, 64));
    }
}
