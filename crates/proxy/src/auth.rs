//! Proxy authentication (Basic, RFC 7617) against Haven's proxy accounts:
//! a file of `user:argon2-hash` lines that `haven proxy passwd` writes.
//! Argon2 is slow by design, so a verified password is remembered (as a
//! keyed digest, never in the clear) for a while: a browser sends it with
//! every request.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
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

/// Verifies credentials, remembering successes for `ttl`.
pub struct Verifier {
    accounts: Accounts,
    key: [u8; 32],
    ok: Mutex<HashMap<[u8; 32], Instant>>,
    ttl: Duration,
}

impl Verifier {
    /// A verifier over these accounts.
    pub fn new(accounts: Accounts, ttl: Duration) -> Self {
        let mut key = [0u8; 32];
        let _ = getrandom::fill(&mut key);
        Self { accounts, key, ok: Mutex::new(HashMap::new()), ttl }
    }

    /// Whether `user` signed in with `password`.
    pub fn verify(&self, user: &str, password: &str, now: Instant) -> bool {
        let Some(hash) = self.accounts.hashes.get(user) else { return false };
        let digest = self.digest(user, password);
        if let Ok(ok) = self.ok.lock()
            && ok.get(&digest).is_some_and(|t| now.duration_since(*t) < self.ttl)
        {
            return true;
        }
        let good = PasswordHash::new(hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok());
        if good && let Ok(mut ok) = self.ok.lock() {
            if ok.len() > 10_000 {
                ok.retain(|_, t| now.duration_since(*t) < self.ttl);
            }
            ok.insert(digest, now);
        }
        good
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
        assert!(Accounts::set_password(&path, "a:b", "x").is_err());
        std::fs::write(&path, "broken line\n").unwrap();
        assert!(Accounts::load(&path).unwrap_err().to_string().contains("haven proxy passwd"));
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
