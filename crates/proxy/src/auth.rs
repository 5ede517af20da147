//! Proxy authentication (Basic, RFC 7617) against Haven's proxy accounts:
//! a file of `user:argon2-hash` lines that `haven proxy passwd` writes.
//! Argon2 is slow by design, so a verified password is remembered (as a
//! keyed digest, never in the clear) for a while: a browser sends it with
//! every request. A wrong pair is remembered too, so a browser repeating a
//! stale password on every connection costs one check, not one per request.
//! An unknown user costs the same argon2 work as a known one (a check against
//! a dummy hash), so timing does not say who has an account, and [`Throttle`]
//! refuses guessing per address and per account.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use base64::Engine as _;

/// The accounts file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccountsError {
    /// Reading or writing failed.
    #[error("proxy accounts file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not `user:hash`.
    #[error("proxy accounts file {path}:{line}: not `user:$argon2id$…`; re-set the password with `haven proxy passwd USER`")]
    Line {
        /// The file.
        path: String,
        /// The line number.
        line: usize,
    },
    /// The user name cannot be used.
    #[error("user name {0:?} cannot hold ':' or spaces, and cannot be empty")]
    Name(String),
    /// Hashing failed.
    #[error("could not hash the password: {0}")]
    Hash(String),
}

/// Proxy accounts: user → PHC hash string.
#[derive(Debug, Default, Clone)]
pub struct Accounts {
    hashes: HashMap<String, String>,
}

impl Accounts {
    /// Reads the accounts file; a missing file is no accounts.
    pub fn load(path: &Path) -> Result<Self, AccountsError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => return Err(AccountsError::Io { path: path.display().to_string(), source }),
        };
        let mut hashes = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, hash)) = line.split_once(':').filter(|(u, h)| !u.is_empty() && h.starts_with("$argon2")) else {
                return Err(AccountsError::Line { path: path.display().to_string(), line: i + 1 });
            };
            hashes.insert(user.to_ascii_lowercase(), hash.to_string());
        }
        Ok(Self { hashes })
    }

    /// Sets a password in the accounts file (created owner-only), keeping the other lines.
    pub fn set_password(path: &Path, user: &str, password: &str) -> Result<(), AccountsError> {
        if user.is_empty() || user.contains(':') || user.contains(char::is_whitespace) {
            return Err(AccountsError::Name(user.to_string()));
        }
        let hash = Argon2::default().hash_password(password.as_bytes()).map_err(|e| AccountsError::Hash(e.to_string()))?.to_string();
        let io = |source| AccountsError::Io { path: path.display().to_string(), source };
        let old = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io(e)),
        };
        let mut out: Vec<String> = old.lines().filter(|l| l.split_once(':').is_none_or(|(u, _)| !u.eq_ignore_ascii_case(user))).map(str::to_string).collect();
        out.push(format!("{}:{hash}", user.to_ascii_lowercase()));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = path.with_extension("tmp");
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        use std::io::Write;
        let mut f = opts.open(&tmp).map_err(io)?;
        f.write_all((out.join("\n") + "\n").as_bytes()).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// How many accounts there are.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }
}

/// What a `Proxy-Authorization` header says.
#[derive(Debug, PartialEq, Eq)]
pub enum Credentials {
    /// A user name and password.
    Basic(String, String),
    /// Something that is not Basic credentials.
    Malformed,
}

/// Reads a `Proxy-Authorization: Basic …` header value.
pub fn parse_header(value: &[u8]) -> Credentials {
    let Ok(text) = std::str::from_utf8(value) else { return Credentials::Malformed };
    let mut parts = text.trim().splitn(2, ' ');
    let (Some(scheme), Some(b64)) = (parts.next(), parts.next()) else { return Credentials::Malformed };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Credentials::Malformed;
    }
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else { return Credentials::Malformed };
    let Ok(pair) = String::from_utf8(raw) else { return Credentials::Malformed };
    match pair.split_once(':') {
        Some((u, p)) if !u.is_empty() => Credentials::Basic(u.to_ascii_lowercase(), p.to_string()),
        _ => Credentials::Malformed,
    }
}

/// Verifies credentials, remembering successes and failures for `ttl`.
pub struct Verifier {
    accounts: Accounts,
    key: [u8; 32],
    ok: Mutex<HashMap<[u8; 32], Instant>>,
    wrong: Mutex<HashMap<[u8; 32], Instant>>,
    ttl: Duration,
    argon2_runs: AtomicU64,
}

/// Most remembered pairs of each kind: a bound, however many are tried.
const REMEMBERED: usize = 10_000;

/// A hash of a password nobody knows, made once per process with the same
/// parameters as real ones: an unknown user is checked against it, so that
/// the answer takes as long as for a known user with a wrong password.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let mut secret = [0u8; 24];
        let _ = getrandom::fill(&mut secret);
        let password = base64::engine::general_purpose::STANDARD.encode(secret);
        Argon2::default().hash_password(password.as_bytes()).map(|h| h.to_string()).unwrap_or_default()
    })
}

fn remember(map: &Mutex<HashMap<[u8; 32], Instant>>, digest: [u8; 32], now: Instant, ttl: Duration) {
    if let Ok(mut m) = map.lock() {
        if m.len() >= REMEMBERED {
            m.retain(|_, t| now.duration_since(*t) < ttl);
            if m.len() >= REMEMBERED {
                m.clear();
            }
        }
        m.insert(digest, now);
    }
}

fn recalls(map: &Mutex<HashMap<[u8; 32], Instant>>, digest: &[u8; 32], now: Instant, ttl: Duration) -> bool {
    map.lock().is_ok_and(|m| m.get(digest).is_some_and(|t| now.duration_since(*t) < ttl))
}

impl Verifier {
    /// A verifier over these accounts.
    pub fn new(accounts: Accounts, ttl: Duration) -> Self {
        let mut key = [0u8; 32];
        let _ = getrandom::fill(&mut key);
        Self { accounts, key, ok: Mutex::new(HashMap::new()), wrong: Mutex::new(HashMap::new()), ttl, argon2_runs: AtomicU64::new(0) }
    }

    /// What is remembered about this pair: `Some(true)` verified lately,
    /// `Some(false)` refused lately, `None` never seen (argon2 must decide).
    pub fn recall(&self, user: &str, password: &str, now: Instant) -> Option<bool> {
        let digest = self.digest(user, password);
        if recalls(&self.ok, &digest, now, self.ttl) {
            Some(true)
        } else if recalls(&self.wrong, &digest, now, self.ttl) {
            Some(false)
        } else {
            None
        }
    }

    /// Whether `user` signed in with `password`. Slow (argon2) unless remembered;
    /// as slow for a user who does not exist.
    pub fn verify(&self, user: &str, password: &str, now: Instant) -> bool {
        if let Some(known) = self.recall(user, password, now) {
            return known;
        }
        let digest = self.digest(user, password);
        let (hash, exists) = match self.accounts.hashes.get(user) {
            Some(h) => (h.as_str(), true),
            None => (dummy_hash(), false),
        };
        let hash = PasswordHash::new(hash).ok().or_else(|| PasswordHash::new(dummy_hash()).ok());
        self.argon2_runs.fetch_add(1, Ordering::Relaxed);
        let matched = hash.is_some_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok());
        let good = exists && matched;
        remember(if good { &self.ok } else { &self.wrong }, digest, now, self.ttl);
        good
    }

    /// How many passwords were checked with argon2 (not answered from memory).
    pub fn argon2_runs(&self) -> u64 {
        self.argon2_runs.load(Ordering::Relaxed)
    }

    /// A keyed SHA-256 of the credentials: the key is random per process, so
    /// the remembered digests are useless outside it.
    fn digest(&self, user: &str, password: &str) -> [u8; 32] {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(self.key);
        h.update(user.as_bytes());
        h.update([0]);
        h.update(password.as_bytes());
        h.finalize().into()
    }
}

/// Refuses sign-in guessing: after `per_account` wrong passwords for one
/// account, or `per_address` from one address (an IPv6 /64 counts as one),
/// within `window`, further tries are refused until the window that started
/// with the first failure has passed. Bounded: the oldest entry makes way
/// when the table is full.
pub struct Throttle {
    windows: Mutex<HashMap<Key, Window>>,
    per_account: u32,
    per_address: u32,
    window: Duration,
    capacity: usize,
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum Key {
    Address(IpAddr),
    Account(String),
}

#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    failures: u32,
}

fn address_key(ip: IpAddr) -> Key {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mut seg = v6.segments();
            seg[4..].fill(0);
            Key::Address(IpAddr::V6(seg.into()))
        }
        v4 => Key::Address(v4),
    }
}

impl Throttle {
    /// Wrong passwords allowed per account, as the web sign-in locks after five.
    pub const PER_ACCOUNT: u32 = 5;
    /// Wrong passwords allowed per address: more, since a classroom may share one.
    pub const PER_ADDRESS: u32 = 20;
    /// How long a window of failures lasts.
    pub const WINDOW: Duration = Duration::from_secs(15 * 60);

    /// A throttle with these limits, remembering at most `capacity` addresses and accounts.
    pub fn new(per_account: u32, per_address: u32, window: Duration, capacity: usize) -> Self {
        Self { windows: Mutex::new(HashMap::new()), per_account, per_address, window, capacity: capacity.max(2) }
    }

    fn wait(&self, key: &Key, limit: u32, now: Instant) -> Option<Duration> {
        let w = self.windows.lock().ok()?.get(key).copied()?;
        let end = w.start + self.window;
        (w.failures >= limit && now < end).then(|| end - now)
    }

    /// Whether this address may try now; else how long until it may.
    pub fn check_address(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        self.wait(&address_key(ip), self.per_address, now).map_or(Ok(()), Err)
    }

    /// Whether this account may be tried now; else how long until it may.
    pub fn check_account(&self, user: &str, now: Instant) -> Result<(), Duration> {
        self.wait(&Key::Account(user.to_string()), self.per_account, now).map_or(Ok(()), Err)
    }

    /// Counts a wrong password from `ip` for `user`.
    pub fn failed(&self, ip: IpAddr, user: &str, now: Instant) {
        let Ok(mut m) = self.windows.lock() else { return };
        for key in [address_key(ip), Key::Account(user.to_string())] {
            if !m.contains_key(&key) && m.len() >= self.capacity {
                m.retain(|_, w| now.duration_since(w.start) < self.window);
                if m.len() >= self.capacity
                    && let Some(oldest) = m.iter().min_by_key(|(_, w)| w.start).map(|(k, _)| k.clone())
                {
                    m.remove(&oldest);
                }
            }
            let w = m.entry(key).or_insert(Window { start: now, failures: 0 });
            if now.duration_since(w.start) >= self.window {
                *w = Window { start: now, failures: 0 };
            }
            w.failures = w.failures.saturating_add(1);
        }
    }

    /// The right password: the account's failures are forgotten (the address's are not).
    pub fn succeeded(&self, user: &str) {
        if let Ok(mut m) = self.windows.lock() {
            m.remove(&Key::Account(user.to_string()));
        }
    }
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new(Self::PER_ACCOUNT, Self::PER_ADDRESS, Self::WINDOW, 100_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_load_verify_and_reject() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("accounts");
        Accounts::set_password(&path, "Pupil1", "correct horse").unwrap();
        Accounts::set_password(&path, "staff1", "battery staple").unwrap();
        Accounts::set_password(&path, "pupil1", "new password").unwrap();
        let a = Accounts::load(&path).unwrap();
        assert_eq!(a.len(), 2, "setting again replaces the line");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("new password"), "only the hash is stored");
        let v = Verifier::new(a, Duration::from_secs(60));
        let now = Instant::now();
        assert!(v.verify("pupil1", "new password", now));
        assert!(v.verify("pupil1", "new password", now), "remembered");
        assert!(!v.verify("pupil1", "correct horse", now));
        assert!(!v.verify("nobody", "x", now));
        let runs = v.argon2_runs();
        assert!(!v.verify("nobody", "x", now), "remembered as wrong");
        assert_eq!(v.argon2_runs(), runs, "a repeated wrong pair is not checked again");
        assert!(Accounts::set_password(&path, "a:b", "x").is_err());
        std::fs::write(&path, "broken line\n").unwrap();
        assert!(Accounts::load(&path).unwrap_err().to_string().contains("haven proxy passwd"));
    }

    #[test]
    fn an_unknown_user_costs_the_same_argon2_work() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("accounts");
        Accounts::set_password(&path, "pupil1", "right password").unwrap();
        let v = Verifier::new(Accounts::load(&path).unwrap(), Duration::from_secs(60));
        let now = Instant::now();
        let time = |user: &str, password: &str| {
            let before = v.argon2_runs();
            let t = Instant::now();
            assert!(!v.verify(user, password, now));
            assert_eq!(v.argon2_runs(), before + 1, "{user}: one argon2 check");
            t.elapsed()
        };
        // Warm the dummy hash, then compare like with like.
        time("warm-up", "x");
        let known = time("pupil1", "wrong 1");
        let unknown = time("nobody", "wrong 1");
        assert!(unknown * 3 > known, "unknown {unknown:?} vs known {known:?}: the work is the same");
    }

    #[test]
    fn throttling_per_account_and_per_address() {
        let t = Throttle::new(3, 5, Duration::from_secs(60), 1000);
        let now = Instant::now();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert!(t.check_account("pupil1", now).is_ok());
            t.failed(a, "pupil1", now);
        }
        let wait = t.check_account("pupil1", now).unwrap_err();
        assert_eq!(wait, Duration::from_secs(60));
        assert!(t.check_account("pupil2", now).is_ok(), "other accounts are not affected");
        assert!(t.check_address(a, now).is_ok(), "3 of 5 from this address");
        t.failed(a, "x", now);
        t.failed(a, "y", now);
        assert!(t.check_address(a, now).is_err(), "5 from one address");
        assert!(t.check_address(b, now).is_ok());
        let later = now + Duration::from_secs(61);
        assert!(t.check_account("pupil1", later).is_ok() && t.check_address(a, later).is_ok(), "the window passes");
        // An IPv6 /64 is one address; the right password clears the account.
        for i in 1..=5u16 {
            t.failed(IpAddr::V6([0x2001, 0xdb8, 0, 1, 0, 0, 0, i].into()), "staff", now);
        }
        assert!(t.check_address("2001:db8:0:1::99".parse().unwrap(), now).is_err());
        assert!(t.check_account("staff", now).is_err());
        t.succeeded("staff");
        assert!(t.check_account("staff", now).is_ok());
        // Bounded: a flood of accounts never grows the table past its capacity.
        let small = Throttle::new(3, 1000, Duration::from_secs(60), 10);
        for i in 0..100 {
            small.failed(a, &format!("u{i}"), now);
        }
        assert!(small.windows.lock().unwrap().len() <= 10);
    }

    #[test]
    fn header_parsing() {
        let h = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("Jo:pa:ss"));
        assert_eq!(parse_header(h.as_bytes()), Credentials::Basic("jo".into(), "pa:ss".into()));
        assert_eq!(parse_header(b"Bearer abc"), Credentials::Malformed);
        assert_eq!(parse_header(b"Basic !!!"), Credentials::Malformed);
        assert_eq!(parse_header(b"Basic"), Credentials::Malformed);
    }
}
