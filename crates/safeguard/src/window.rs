//! A person's recent monitored texts, read together: a disclosure split over
//! several lines ("cant do this anymore" / "saved up my tablets" / "friday")
//! carries no concern in any one of them. Each school+person keeps its last
//! few messages within a short span; the ingest reads them as one text beside
//! the newest message, and raises from that reading only where it says more
//! than every message did alone.
//!
//! Bounded: at most [`Limits::people`] people are held (the one longest
//! untouched is let go first, and counted), each with at most
//! [`Limits::messages`] messages of at most [`Limits::chars`] characters.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use haven_textscan::{Classification, Concern};
use jiff::{SignedDuration, Timestamp};

/// How much is read together and how much is held.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Messages read together, the newest included.
    pub messages: usize,
    /// How far back from the newest message the others may be.
    pub span: SignedDuration,
    /// People held at once; beyond it the one longest untouched is let go.
    pub people: usize,
    /// Characters kept of each message (chat lines are short; a long text is
    /// read whole on its own anyway).
    pub chars: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { messages: 6, span: SignedDuration::from_mins(10), people: 20_000, chars: 300 }
    }
}

/// One message held in a window.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// What was typed (its first [`Limits::chars`] characters).
    pub text: String,
    /// When.
    pub at: Timestamp,
    /// What the message showed read alone: each category and its level.
    pub alone: Vec<(Concern, u8)>,
    /// The event's idempotency key, so a retried event is held once.
    pub key: Option<String>,
}

/// What [`Windows::push`] gives back.
#[derive(Debug, Default)]
pub struct Pushed {
    /// The earlier messages to read with the new one, oldest first (empty:
    /// nothing to read together, or the message was held already).
    pub earlier: Vec<Message>,
    /// People let go to make room (to count).
    pub evicted: u64,
}

type Who = (String, String);

#[derive(Default)]
struct Recent {
    /// Oldest first.
    messages: VecDeque<Message>,
    /// Position in [`Inner::by_touch`].
    touched: u64,
    /// Levels already raised from a reading together, with when: the same
    /// reading again (each later message re-reads the earlier ones) is not
    /// another alert.
    raised: Vec<(Concern, u8, Timestamp)>,
}

#[derive(Default)]
struct Inner {
    people: HashMap<Who, Recent>,
    /// Least recently touched first.
    by_touch: BTreeMap<u64, Who>,
    tick: u64,
}

/// Every person's recent messages, in bounded memory.
pub struct Windows {
    limits: Limits,
    inner: Mutex<Inner>,
}

impl Default for Windows {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

impl Windows {
    /// Windows within `limits`.
    pub fn new(limits: Limits) -> Self {
        Self { limits: Limits { messages: limits.messages.max(1), people: limits.people.max(1), ..limits }, inner: Mutex::new(Inner::default()) }
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// How many people are held now.
    pub fn people(&self) -> usize {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).people.len()
    }

    /// Holds `message` in the school+person's window and returns the earlier
    /// messages within the span before it, to be read with it. A message held
    /// already (the same key, or the same text at the same time: a retry
    /// after the record failed) is not held twice, and is read with the same
    /// earlier messages again.
    pub fn push(&self, school: &str, person: &str, mut message: Message) -> Pushed {
        if let Some((cut, _)) = message.text.char_indices().nth(self.limits.chars) {
            message.text.truncate(cut);
        }
        let when = message.at;
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let inner = &mut *inner;
        inner.tick += 1;
        let tick = inner.tick;
        let who = (school.to_string(), person.to_string());
        let mut evicted = 0;
        let recent = match inner.people.get_mut(&who) {
            Some(r) => {
                inner.by_touch.remove(&r.touched);
                r
            }
            None => {
                while inner.people.len() >= self.limits.people {
                    let Some((_, oldest)) = inner.by_touch.pop_first() else { break };
                    inner.people.remove(&oldest);
                    evicted += 1;
                }
                inner.people.entry(who.clone()).or_default()
            }
        };
        recent.touched = tick;
        inner.by_touch.insert(tick, who);

        let same = |m: &Message| (m.key.is_some() && m.key == message.key) || (m.text == message.text && m.at == message.at);
        let held = recent.messages.iter().position(same);
        let from = when - self.limits.span;
        let mut earlier: Vec<Message> =
            recent.messages.iter().enumerate().filter(|&(i, m)| Some(i) != held && m.at >= from && m.at <= when).map(|(_, m)| m.clone()).collect();
        let skip = earlier.len().saturating_sub(self.limits.messages - 1);
        earlier.drain(..skip);
        if held.is_none() {
            // Kept in time order: a late event goes where it happened.
            let at = recent.messages.iter().position(|m| m.at > when).unwrap_or(recent.messages.len());
            recent.messages.insert(at, message);
        }
        // Only what a later message could still be read with is kept.
        let newest = recent.messages.back().map_or(when, |m| m.at);
        let from = newest - self.limits.span;
        while recent.messages.front().is_some_and(|m| m.at < from) || recent.messages.len() > self.limits.messages {
            recent.messages.pop_front();
        }
        recent.raised.retain(|&(_, _, at)| at >= from);
        Pushed { earlier, evicted }
    }

    /// Whether a reading together of `category` at `level`, at `at`, was
    /// raised already for this person within the span (each later message
    /// re-reads the earlier ones: the same reading is not another alert).
    pub fn raised_before(&self, school: &str, person: &str, category: Concern, level: u8, at: Timestamp) -> bool {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(recent) = inner.people.get(&(school.to_string(), person.to_string())) else { return false };
        let span = self.limits.span;
        recent.raised.iter().any(|&(c, l, t)| c == category && l >= level && t >= at - span && t <= at + span)
    }

    /// Remembers a reading together that was stored.
    pub fn note_raised(&self, school: &str, person: &str, category: Concern, level: u8, at: Timestamp) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(recent) = inner.people.get_mut(&(school.to_string(), person.to_string())) {
            recent.raised.push((category, level, at));
        }
    }
}

/// The categories a reading together shows at an alert level (2 or more)
/// above what any of its messages showed alone, with their levels.
pub fn together(window: &Classification, messages: &[&Message]) -> Vec<(Concern, u8)> {
    window
        .categories
        .iter()
        .filter(|f| f.level >= 2)
        .filter(|f| {
            let alone = messages.iter().flat_map(|m| &m.alone).filter(|(c, _)| *c == f.category).map(|(_, l)| *l).max().unwrap_or(0);
            f.level > alone
        })
        .map(|f| (f.category, f.level))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        format!("2026-11-24T{s}Z").parse().unwrap()
    }

    fn msg(text: &str, when: &str) -> Message {
        Message { text: text.into(), at: at(when), alone: Vec::new(), key: None }
    }

    #[test]
    fn earlier_messages_within_the_span_come_back_oldest_first() {
        let w = Windows::default();
        assert!(w.push("oak", "amy", msg("one", "10:00:00")).earlier.is_empty());
        assert!(w.push("oak", "ben", msg("other pupil", "10:01:00")).earlier.is_empty(), "another pupil's window");
        assert!(w.push("elm", "amy", msg("other school", "10:01:00")).earlier.is_empty(), "another school's pupil of the same login");
        let p = w.push("oak", "amy", msg("two", "10:02:00"));
        assert_eq!(p.earlier.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(), ["one"]);
        let p = w.push("oak", "amy", msg("three", "10:11:00"));
        assert_eq!(p.earlier.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(), ["two"], "ten minutes back, no more");
        let p = w.push("oak", "amy", msg("late", "10:05:00"));
        assert_eq!(p.earlier.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(), ["two"], "a late event is read with what came before it");
    }

    #[test]
    fn at_most_six_messages_are_read_together_and_each_is_cut() {
        let w = Windows::new(Limits { chars: 5, ..Limits::default() });
        for i in 0..10 {
            w.push("oak", "amy", msg(&format!("m{i} and more"), &format!("10:0{i}:00")));
        }
        let p = w.push("oak", "amy", msg("last", "10:09:30"));
        assert_eq!(p.earlier.len(), 5);
        assert_eq!(p.earlier[0].text, "m5 an");
        assert_eq!(p.earlier[4].text, "m9 an");
    }

    #[test]
    fn a_retried_event_is_held_once() {
        let w = Windows::default();
        w.push("oak", "amy", msg("one", "10:00:00"));
        let mut keyed = msg("two", "10:01:00");
        keyed.key = Some("k1".into());
        assert_eq!(w.push("oak", "amy", keyed.clone()).earlier.len(), 1);
        keyed.at = at("10:01:30"); // no observed_at: the arrival time differs
        assert_eq!(w.push("oak", "amy", keyed).earlier.len(), 1, "same key: read again with what came before, not with itself");
        assert_eq!(w.push("oak", "amy", msg("one", "10:00:00")).earlier.len(), 0, "same text, same time");
        assert_eq!(w.push("oak", "amy", msg("three", "10:02:00")).earlier.len(), 2, "one and two, each once");
    }

    #[test]
    fn memory_is_bounded_and_the_longest_untouched_goes_first() {
        let w = Windows::new(Limits { people: 3, ..Limits::default() });
        for p in ["a", "b", "c"] {
            assert_eq!(w.push("oak", p, msg("hi", "10:00:00")).evicted, 0);
        }
        w.push("oak", "a", msg("again", "10:01:00")); // a is touched: b is now the oldest
        assert_eq!(w.push("oak", "d", msg("hi", "10:02:00")).evicted, 1);
        assert_eq!(w.people(), 3);
        assert!(w.push("oak", "b", msg("back", "10:03:00")).earlier.is_empty(), "b was let go");
        assert_eq!(w.push("oak", "a", msg("third", "10:04:00")).earlier.len(), 2, "a was kept");
    }

    #[test]
    fn a_reading_together_is_raised_once_until_it_says_more() {
        let w = Windows::default();
        w.push("oak", "amy", msg("one", "10:00:00"));
        let v = Concern::VulnerablePerson;
        assert!(!w.raised_before("oak", "amy", v, 4, at("10:01:00")));
        w.note_raised("oak", "amy", v, 4, at("10:01:00"));
        assert!(w.raised_before("oak", "amy", v, 4, at("10:02:00")));
        assert!(!w.raised_before("oak", "amy", v, 5, at("10:03:00")), "higher");
        assert!(!w.raised_before("oak", "amy", Concern::Grooming, 4, at("10:03:00")), "another category");
        assert!(!w.raised_before("oak", "amy", v, 4, at("10:20:00")), "after the span, a new reading");
        assert!(!w.raised_before("oak", "ben", v, 4, at("10:02:00")), "another pupil");
    }

    #[test]
    fn together_is_what_no_message_showed_alone() {
        let found = |c: Concern, level: u8| haven_textscan::Found { category: c, level, score: 1.0 };
        let window = Classification {
            categories: vec![found(Concern::VulnerablePerson, 5), found(Concern::BullyingViolence, 3), found(Concern::OffensiveUser, 1)],
            level: Some(5),
            spans: Vec::new(),
            explanation: String::new(),
        };
        let mut a = msg("cant do this anymore", "10:00:00");
        a.alone = vec![(Concern::VulnerablePerson, 2)];
        let mut b = msg("you're a loser", "10:01:00");
        b.alone = vec![(Concern::BullyingViolence, 3)];
        assert_eq!(together(&window, &[&a, &b]), [(Concern::VulnerablePerson, 5)]);
    }
}
