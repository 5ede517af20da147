//! What makes signing in to the web app hard to guess through: failed
//! attempts counted per network address (passwords and second-factor codes
//! alike) and per e-mail, in memory and bounded, on top of the account
//! lockout the record keeps. An e-mail with no account is "locked" after as
//! many failures as a real one, so the answers never tell which e-mails
//! have accounts. And whether cookies are marked `Secure`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, PoisonError};

use axum::http::HeaderMap;
use haven_store::sessions::{LOCK_AFTER, LOCK_FOR};
use jiff::{SignedDuration, Timestamp};

/// Failed sign-ins (passwords and codes) from one address in [`WINDOW`]
/// before it must wait. A school's staff may share one public address, so
/// this is well above one person's typing mistakes.
pub const PER_ADDRESS: u32 = 30;
/// How long failures are remembered, and how long an address waits.
pub const WINDOW: SignedDuration = LOCK_FOR;
/// Most addresses and e-mails remembered at once; the oldest are forgotten first.
const MAX_ENTRIES: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Tally {
    since: Timestamp,
    failures: u32,
    blocked_until: Option<Timestamp>,
}

/// Failures by address and by e-mail, shared by every request the service answers.
#[derive(Debug, Default)]
pub struct Throttle {
    by_address: Mutex<HashMap<IpAddr, Tally>>,
    by_email: Mutex<HashMap<String, Tally>>,
}

/// The key for an address: IPv6 by its /64, since one home or school gets a whole /64.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut seg = v6.segments();
                seg[4..].fill(0);
                IpAddr::V6(seg.into())
            }
        },
        v4 => v4,
    }
}

fn email_key(email: &str) -> String {
    email.trim().to_ascii_lowercase()
}

fn blocked<K: std::hash::Hash + Eq>(map: &Mutex<HashMap<K, Tally>>, key: &K, now: Timestamp) -> Option<Timestamp> {
    map.lock().unwrap_or_else(PoisonError::into_inner).get(key).and_then(|t| t.blocked_until).filter(|u| *u > now)
}

/// Counts one failure; returns when the key is blocked until, once it has
/// `limit` failures (within [`WINDOW`] when `forget` is set).
fn count<K: std::hash::Hash + Eq + Clone>(map: &Mutex<HashMap<K, Tally>>, key: &K, limit: u32, forget: bool, now: Timestamp) -> Option<Timestamp> {
    let mut map = map.lock().unwrap_or_else(PoisonError::into_inner);
    let stale = |t: &Tally| match t.blocked_until {
        Some(until) => until <= now,
        None => forget && t.since.saturating_add(WINDOW).unwrap_or(now) <= now,
    };
    if map.len() >= MAX_ENTRIES && !map.contains_key(key) {
        map.retain(|_, t| !stale(t));
        if map.len() >= MAX_ENTRIES
            && let Some(oldest) = map.iter().min_by_key(|(_, t)| t.since).map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
    }
    let t = map.entry(key.clone()).or_insert(Tally { since: now, failures: 0, blocked_until: None });
    if stale(t) {
        *t = Tally { since: now, failures: 0, blocked_until: None };
    }
    t.failures += 1;
    if t.failures >= limit {
        let until = now.saturating_add(WINDOW).unwrap_or(now);
        *t = Tally { since: now, failures: 0, blocked_until: Some(until) };
        return Some(until);
    }
    None
}

impl Throttle {
    /// Until when `ip` must wait before trying again, if it must.
    pub fn address_blocked(&self, ip: IpAddr, now: Timestamp) -> Option<Timestamp> {
        blocked(&self.by_address, &address_key(ip), now)
    }

    /// Counts a failed password or code from `ip`; when it must now wait until.
    pub fn address_failed(&self, ip: IpAddr, now: Timestamp) -> Option<Timestamp> {
        count(&self.by_address, &address_key(ip), PER_ADDRESS, true, now)
    }

    /// Until when an e-mail with no account answers "locked", as a real one would.
    pub fn email_locked(&self, email: &str, now: Timestamp) -> Option<Timestamp> {
        blocked(&self.by_email, &email_key(email), now)
    }

    /// Counts a "wrong e-mail or password" answer for an e-mail with no
    /// account; after as many as lock a real account, it answers "locked"
    /// too. Like a real account's, the count does not fade with time.
    pub fn email_failed(&self, email: &str, now: Timestamp) -> Option<Timestamp> {
        count(&self.by_email, &email_key(email), LOCK_AFTER.try_into().unwrap_or(5), false, now)
    }

    /// Forgets an e-mail's failures (signed in, or the record locked or unlocked it).
    pub fn email_settled(&self, email: &str) {
        self.by_email.lock().unwrap_or_else(PoisonError::into_inner).remove(&email_key(email));
    }
}

/// Who is asking: the connection's address, or, when that is a reverse proxy
/// on this machine (loopback), the address it forwarded in `X-Forwarded-For`.
pub fn client_address(peer: Option<SocketAddr>, headers: &HeaderMap) -> IpAddr {
    let peer = peer.map_or(IpAddr::from([127, 0, 0, 1]), |p| p.ip());
    if !peer.is_loopback() {
        return peer;
    }
    // The proxy appends the address it saw last; earlier entries came from the client.
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .last()
        .and_then(|a| a.trim().parse().ok())
        .unwrap_or(peer)
}

/// Whether the browser reached Haven over HTTPS, as the reverse proxy in
/// front of it says (`X-Forwarded-Proto: https` or `Forwarded: proto=https`).
/// A client that claims it falsely only gets cookies its own browser keeps
/// to HTTPS.
pub fn over_https(headers: &HeaderMap) -> bool {
    let said = |name: &str| headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>();
    said("x-forwarded-proto").iter().any(|v| v.split(',').next().is_some_and(|p| p.trim().eq_ignore_ascii_case("https")))
        || said("forwarded").iter().any(|v| {
            v.split([';', ',']).any(|kv| {
                kv.trim()
                    .split_once('=')
                    .is_some_and(|(k, p)| k.trim().eq_ignore_ascii_case("proto") && p.trim().trim_matches('"').eq_ignore_ascii_case("https"))
            })
        })
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn an_address_waits_after_its_failures_and_the_memory_is_bounded() {
        let now: Timestamp = "2026-11-24T10:00:00Z".parse().unwrap();
        let t = Throttle::default();
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        for _ in 1..PER_ADDRESS {
            assert!(t.address_failed(ip, now).is_none());
        }
        let until = t.address_failed(ip, now).expect("blocked at the limit");
        assert_eq!(t.address_blocked(ip, now), Some(until));
        assert!(t.address_blocked("203.0.113.8".parse().unwrap(), now).is_none(), "another address is not");
        assert!(t.address_blocked(ip, until).is_none(), "the wait ends");
        let a: IpAddr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b), "one /64");
        for n in 0..(MAX_ENTRIES as u32 + 50) {
            t.address_failed(IpAddr::from(n.to_be_bytes()), now);
        }
        assert!(t.by_address.lock().unwrap().len() <= MAX_ENTRIES);
    }

    #[test]
    fn an_unknown_email_locks_like_a_real_one() {
        let now: Timestamp = "2026-11-24T10:00:00Z".parse().unwrap();
        let t = Throttle::default();
        for _ in 1..LOCK_AFTER {
            assert!(t.email_failed("Nobody@oak.example", now).is_none());
        }
        let later = now.saturating_add(SignedDuration::from_hours(2)).unwrap();
        assert!(t.email_failed("nobody@oak.example ", later).is_some(), "the count does not fade, as a real account's does not");
        assert!(t.email_locked("nobody@oak.example", later).is_some());
        t.email_settled("nobody@oak.example");
        assert!(t.email_locked("nobody@oak.example", now).is_none());
    }

    #[test]
    fn the_address_behind_a_local_reverse_proxy_and_https() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1, 198.51.100.4"));
        assert_eq!(client_address(Some("127.0.0.1:5000".parse().unwrap()), &h), "198.51.100.4".parse::<IpAddr>().unwrap());
        assert_eq!(client_address(Some("192.0.2.1:5000".parse().unwrap()), &h), "192.0.2.1".parse::<IpAddr>().unwrap(), "only a local proxy is believed");
        assert!(!over_https(&h));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert!(over_https(&h));
        let mut f = HeaderMap::new();
        f.insert("forwarded", HeaderValue::from_static("for=198.51.100.4;proto=https;host=haven.example"));
        assert!(over_https(&f));
    }
}
