//! Pages judged by their content, remembered by URL for a while, so a second
//! visit is decided when it is asked for, without the origin or the body.
//!
//! What is kept is the page's categories, not a decision: the same page may
//! be blocked for one group and allowed for another, and each request is
//! still decided by its person's policy. Bounded (oldest first out) and
//! expiring; the time is passed in.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use haven_policy::CategorySet;

/// What a page was judged to be.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct PageVerdict {
    /// The categories its text showed; empty for a benign page.
    pub(crate) categories: CategorySet,
    /// The highest category score (harm per 1,000 words).
    pub(crate) score: f32,
}

/// URL → verdict, at most `cap` entries, each for `ttl`.
pub(crate) struct VerdictCache {
    cap: usize,
    ttl: Duration,
    map: HashMap<String, (PageVerdict, Instant)>,
    /// URLs in the order they were stored, with when: the oldest go first.
    order: VecDeque<(String, Instant)>,
}

impl VerdictCache {
    pub(crate) fn new(cap: usize, ttl: Duration) -> Self {
        Self { cap, ttl, map: HashMap::new(), order: VecDeque::new() }
    }

    /// The verdict on `url`, if judged less than the TTL before `now`.
    pub(crate) fn get(&self, url: &str, now: Instant) -> Option<PageVerdict> {
        let (v, at) = self.map.get(url)?;
        (now.saturating_duration_since(*at) < self.ttl).then_some(*v)
    }

    /// Remembers a verdict judged at `now`.
    pub(crate) fn put(&mut self, url: &str, verdict: PageVerdict, now: Instant) {
        if self.cap == 0 {
            return;
        }
        self.map.insert(url.to_string(), (verdict, now));
        self.order.push_back((url.to_string(), now));
        // Expired entries and, past the cap, the oldest; a URL stored again
        // has a newer entry further on, so its old place is only skipped.
        while let Some((front, at)) = self.order.front() {
            let expired = now.saturating_duration_since(*at) >= self.ttl;
            if !expired && self.map.len() <= self.cap && self.order.len() <= self.cap.saturating_mul(2) {
                break;
            }
            if self.map.get(front.as_str()).is_some_and(|(_, stored)| stored == at) {
                self.map.remove(front.as_str());
            }
            self.order.pop_front();
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use haven_policy::Category;

    fn v(c: Option<Category>) -> PageVerdict {
        PageVerdict { categories: c.into_iter().collect(), score: 1.0 }
    }

    #[test]
    fn verdicts_expire_and_the_oldest_go_first() {
        let t0 = Instant::now();
        let mut c = VerdictCache::new(2, Duration::from_secs(60));
        c.put("http://a/", v(Some(Category::Adult)), t0);
        assert_eq!(c.get("http://a/", t0 + Duration::from_secs(59)), Some(v(Some(Category::Adult))));
        assert_eq!(c.get("http://a/", t0 + Duration::from_secs(60)), None, "expired");
        c.put("http://b/", v(None), t0 + Duration::from_secs(1));
        c.put("http://c/", v(None), t0 + Duration::from_secs(2));
        assert_eq!(c.len(), 2);
        assert_eq!(c.get("http://a/", t0 + Duration::from_secs(3)), None, "the oldest went");
        // Stored again: the newer verdict stays when the older place is dropped.
        c.put("http://b/", v(Some(Category::Gambling)), t0 + Duration::from_secs(3));
        c.put("http://d/", v(None), t0 + Duration::from_secs(4));
        assert_eq!(c.get("http://b/", t0 + Duration::from_secs(5)), Some(v(Some(Category::Gambling))));
        assert!(c.len() <= 2);
        for i in 0..1000 {
            c.put(&format!("http://x{i}/"), v(None), t0 + Duration::from_secs(6));
        }
        assert!(c.len() <= 2 && c.order.len() <= 4, "bounded: {} {}", c.len(), c.order.len());
    }
}
