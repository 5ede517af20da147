//! The answer cache: honours TTLs (RFC 2308 for negative answers), and asks
//! upstream once for many clients asking the same question at the same time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, Record, RecordType};
use tokio::sync::oneshot;

use crate::upstream::{Upstream, UpstreamError};
use crate::wire::Question;

/// Longest time an answer is kept, whatever its TTL says.
const MAX_TTL: u32 = 86_400;
/// TTL for a negative answer without an SOA to say.
const DEFAULT_NEGATIVE_TTL: u32 = 60;

/// A cached upstream answer.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) rcode: ResponseCode,
    pub(crate) answers: Vec<Record>,
    pub(crate) authorities: Vec<Record>,
    stored: Instant,
    ttl: u32,
}

impl Entry {
    fn from_message(m: Message, now: Instant) -> Self {
        let positive = m.metadata.response_code == ResponseCode::NoError && !m.answers.is_empty();
        let ttl = if positive {
            m.answers.iter().map(|r| r.ttl).min().unwrap_or(0)
        } else {
            m.authorities
                .iter()
                .find_map(|r| match &r.data {
                    RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
                    _ => None,
                })
                .unwrap_or(DEFAULT_NEGATIVE_TTL)
        };
        // SERVFAIL and the like are not cached.
        let cacheable = matches!(m.metadata.response_code, ResponseCode::NoError | ResponseCode::NXDomain);
        Self { rcode: m.metadata.response_code, answers: m.answers, authorities: m.authorities, stored: now, ttl: if cacheable { ttl.min(MAX_TTL) } else { 0 } }
    }

    /// Seconds left, or `None` when expired.
    fn remaining(&self, now: Instant) -> Option<u32> {
        let age = u32::try_from(now.saturating_duration_since(self.stored).as_secs()).unwrap_or(u32::MAX);
        (age < self.ttl).then(|| self.ttl - age)
    }

    /// The records with their TTLs counted down to now.
    pub(crate) fn aged(&self, now: Instant) -> (Vec<Record>, Vec<Record>) {
        let age = u32::try_from(now.saturating_duration_since(self.stored).as_secs()).unwrap_or(u32::MAX);
        let down = |rs: &[Record]| {
            rs.iter()
                .map(|r| {
                    let mut r = r.clone();
                    r.ttl = r.ttl.saturating_sub(age);
                    r
                })
                .collect()
        };
        (down(&self.answers), down(&self.authorities))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    name: String,
    qtype: RecordType,
    dnssec_ok: bool,
}

type Waiters = Vec<oneshot::Sender<Result<Arc<Entry>, UpstreamError>>>;

/// Hits and misses, for metrics and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Answered from the cache.
    pub hits: u64,
    /// Sent upstream (once per coalesced group).
    pub upstream_queries: u64,
}

pub(crate) struct Cache {
    shards: Vec<Mutex<HashMap<Key, Arc<Entry>>>>,
    per_shard: usize,
    inflight: Mutex<HashMap<Key, Waiters>>,
    stats: Mutex<CacheStats>,
}

impl Cache {
    pub(crate) fn new(capacity: usize) -> Self {
        let n = 16;
        Self { shards: (0..n).map(|_| Mutex::default()).collect(), per_shard: capacity.div_ceil(n).max(1), inflight: Mutex::default(), stats: Mutex::default() }
    }

    pub(crate) fn stats(&self) -> CacheStats {
        self.stats.lock().map(|s| *s).unwrap_or_default()
    }

    fn shard(&self, key: &Key) -> &Mutex<HashMap<Key, Arc<Entry>>> {
        let h = key.name.bytes().fold(usize::from(u16::from(key.qtype)), |a, b| a.wrapping_mul(31).wrapping_add(usize::from(b)));
        &self.shards[h % self.shards.len()]
    }

    fn get(&self, key: &Key, now: Instant) -> Option<Arc<Entry>> {
        let shard = self.shard(key).lock().ok()?;
        shard.get(key).filter(|e| e.remaining(now).is_some()).cloned()
    }

    fn insert(&self, key: Key, entry: Arc<Entry>, now: Instant) {
        if entry.ttl == 0 {
            return;
        }
        let Ok(mut shard) = self.shard(&key).lock() else { return };
        if shard.len() >= self.per_shard {
            // Make room for an eighth of the shard at once, so the sweep costs
            // O(1) per insert: expired answers first, then arbitrary ones (hash
            // order), which is cheaper than LRU bookkeeping on every hit.
            shard.retain(|_, e| e.remaining(now).is_some());
            let target = self.per_shard - self.per_shard / 8 - 1;
            if shard.len() > target {
                let excess = shard.len() - target;
                let victims: Vec<Key> = shard.keys().take(excess).cloned().collect();
                for k in victims {
                    shard.remove(&k);
                }
            }
        }
        shard.insert(key, entry);
    }

    /// The cached answer to `q`, if there is a fresh one.
    pub(crate) fn lookup(&self, q: &Question, now: Instant) -> Option<Arc<Entry>> {
        let key = Key { name: q.name.clone(), qtype: q.qtype, dnssec_ok: q.dnssec_ok };
        let hit = self.get(&key, now);
        if hit.is_some()
            && let Ok(mut s) = self.stats.lock()
        {
            s.hits += 1;
        }
        hit
    }

    /// The answer to `q`: from the cache, or from upstream, once for everyone
    /// asking the same question meanwhile.
    pub(crate) async fn resolve(self: &Arc<Self>, upstream: &Arc<Upstream>, q: &Question) -> Result<Arc<Entry>, UpstreamError> {
        let key = Key { name: q.name.clone(), qtype: q.qtype, dnssec_ok: q.dnssec_ok };
        let now = Instant::now();
        if let Some(e) = self.get(&key, now) {
            if let Ok(mut s) = self.stats.lock() {
                s.hits += 1;
            }
            return Ok(e);
        }
        let (tx, rx) = oneshot::channel();
        let lead = {
            let Ok(mut inflight) = self.inflight.lock() else { return Err(UpstreamError::Timeout) };
            match inflight.get_mut(&key) {
                Some(waiters) => {
                    waiters.push(tx);
                    false
                }
                None => {
                    inflight.insert(key.clone(), vec![tx]);
                    true
                }
            }
        };
        if lead {
            if let Ok(mut s) = self.stats.lock() {
                s.upstream_queries += 1;
            }
            // The upstream query runs on its own, so a client that goes away
            // (a closed TCP connection) never strands the others waiting.
            let (cache, upstream, q) = (self.clone(), upstream.clone(), q.clone());
            tokio::spawn(async move {
                let result = upstream.query(&q).await.map(|m| Arc::new(Entry::from_message(m, Instant::now())));
                if let Ok(e) = &result {
                    cache.insert(key.clone(), e.clone(), Instant::now());
                }
                let waiters = cache.inflight.lock().ok().and_then(|mut i| i.remove(&key)).unwrap_or_default();
                for w in waiters {
                    let _ = w.send(result.clone());
                }
            });
        }
        rx.await.unwrap_or(Err(UpstreamError::Timeout))
    }
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::{Message, OpCode};
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{Name, RData, Record, RecordType};

    use super::*;

    fn answer(ttl: u32) -> Arc<Entry> {
        let mut m = Message::response(1, OpCode::Query);
        m.add_answer(Record::from_rdata(Name::from_ascii("x.example.").unwrap(), ttl, RData::A(A::new(192, 0, 2, 1))));
        Arc::new(Entry::from_message(m, Instant::now()))
    }

    fn key(i: usize) -> Key {
        Key { name: format!("n{i}.example"), qtype: RecordType::A, dnssec_ok: false }
    }

    #[test]
    fn the_cache_stays_within_its_size_and_keeps_recent_answers() {
        let cache = Cache::new(160);
        let now = Instant::now();
        for i in 0..10_000 {
            cache.insert(key(i), answer(300), now);
        }
        let total: usize = cache.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert!(total <= 160, "{total}");
        assert!(total >= 160 * 3 / 4, "{total}");
        assert!(cache.get(&key(9_999), now).is_some(), "the newest answer is kept");
    }

    #[test]
    fn expired_and_uncacheable_answers_are_not_served() {
        let cache = Cache::new(100);
        let now = Instant::now();
        cache.insert(key(1), answer(1), now);
        assert!(cache.get(&key(1), now).is_some());
        assert!(cache.get(&key(1), now + std::time::Duration::from_millis(1500)).is_none());
        let mut fail = Message::response(1, OpCode::Query);
        fail.metadata.response_code = ResponseCode::ServFail;
        cache.insert(key(2), Arc::new(Entry::from_message(fail, now)), now);
        assert!(cache.get(&key(2), now).is_none(), "SERVFAIL is never cached");
    }
}
