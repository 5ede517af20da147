//! Signing in: passwords with lockout, the second factor (TOTP, RFC 6238),
//! sessions with their CSRF token, and what staff do about an alert.

use hmac::{Hmac, KeyInit, Mac};
use jiff::{SignedDuration, Timestamp};
use sqlx::Row;

use crate::people::Account;
use crate::roles::Role;
use crate::seal::Sealer;
use crate::{Store, StoreError, ms, secrets, ts};

/// Failed sign-ins before an account is locked…
pub const LOCK_AFTER: i64 = 5;
/// …for this long.
pub const LOCK_FOR: SignedDuration = SignedDuration::from_mins(15);
/// A session lasts a working day at most.
pub const SESSION_FOR: SignedDuration = SignedDuration::from_hours(10);
/// A session waiting for its second factor lasts minutes.
pub const HALF_SESSION_FOR: SignedDuration = SignedDuration::from_mins(5);
/// Wrong second-factor codes before the half-signed-in session ends.
pub const FACTOR_ATTEMPTS: i64 = 5;

/// Why a sign-in failed (said the same way to the person either way, so
/// nobody learns which e-mails have accounts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignIn {
    /// Password right.
    Ok,
    /// Wrong e-mail or password.
    Wrong,
    /// Too many failures: locked until then.
    Locked(Timestamp),
    /// Password right, but the account is disabled (only said to someone who knew the password).
    Disabled,
}

/// A signed-in session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The account.
    pub account: Account,
    /// The token every form must carry.
    pub csrf: String,
    /// Whether the second factor was given (or the role needs none).
    pub complete: bool,
}

/// Whether `code` is the TOTP code for `secret_b32` at `now`, allowing one step of clock drift.
pub fn totp_ok(secret_b32: &str, code: &str, now: Timestamp) -> bool {
    totp_step(secret_b32, code, now).is_some()
}

/// The time step `code` belongs to, if it is right for `secret_b32` at `now` (one step of drift either way).
pub fn totp_step(secret_b32: &str, code: &str, now: Timestamp) -> Option<i64> {
    let key = base32(secret_b32)?;
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let step = now.as_second().div_euclid(30);
    (-1..=1).map(|d| step + d).find(|s| totp_at(&key, *s as u64) == code)
}

/// The six-digit code for a time step (RFC 4226 dynamic truncation, HMAC-SHA1).
pub fn totp_at(key: &[u8], counter: u64) -> String {
    let Ok(mut mac) = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(key) else { return String::new() };
    mac.update(&counter.to_be_bytes());
    let h = mac.finalize().into_bytes();
    let o = usize::from(h[19] & 0x0f);
    let bin = (u32::from(h[o] & 0x7f) << 24) | (u32::from(h[o + 1]) << 16) | (u32::from(h[o + 2]) << 8) | u32::from(h[o + 3]);
    format!("{:06}", bin % 1_000_000)
}

/// The current code for a base32 secret (what an authenticator app shows).
pub fn totp_code(secret_b32: &str, now: Timestamp) -> Option<String> {
    Some(totp_at(&base32(secret_b32)?, now.as_second().div_euclid(30) as u64))
}

fn base32(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut buf, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|c| *c != b'=' && !c.is_ascii_whitespace()) {
        let v = match c.to_ascii_uppercase() {
            c @ b'A'..=b'Z' => c - b'A',
            c @ b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        buf = (buf << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    Some(out)
}

/// What the second factor came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Factor {
    /// Right: the session is complete under this new cookie (the old one is gone).
    Ok(String),
    /// Wrong (or a code already used): try again.
    Wrong,
    /// Too many wrong codes, or the half-signed-in session expired: sign in again.
    Ended,
    /// Too many failures on the account: locked until then.
    Locked(Timestamp),
}

/// The audit name of an account.
fn actor(id: i64) -> String {
    format!("account:{id}")
}

/// What a TOTP secret is sealed as.
pub(crate) const TOTP_SEALED: &str = "a TOTP secret";

impl Store {
    /// Checks a password, counting failures and locking after [`LOCK_AFTER`].
    /// An unknown e-mail gets the same answer ([`SignIn::Wrong`]) after the
    /// same argon2 work; argon2 runs within [`secrets::argon2_slots`].
    pub async fn check_password(&self, email: &str, password: &str, now: Timestamp) -> Result<SignIn, StoreError> {
        Ok(self.check_sign_in(email, password, now).await?.0)
    }

    /// [`check_password`](Self::check_password), and whether the e-mail has
    /// an account. Never show the second: the web app uses it only so that
    /// an e-mail with no account "locks" after as many failures as one with.
    pub async fn check_sign_in(&self, email: &str, password: &str, now: Timestamp) -> Result<(SignIn, bool), StoreError> {
        let row = sqlx::query("SELECT id, password_hash, locked_until, disabled FROM accounts WHERE email = $1")
            .bind(email.trim().to_ascii_lowercase())
            .fetch_optional(self.pool())
            .await?;
        let Some(row) = row else {
            let password = password.to_string();
            secrets::argon2_bounded(move || secrets::verify_password(&password, secrets::dummy_hash())).await;
            return Ok((SignIn::Wrong, false));
        };
        let id: i64 = row.try_get("id")?;
        if let Some(until) = row.try_get::<Option<i64>, _>("locked_until")?.map(ts)
            && until > now
        {
            return Ok((SignIn::Locked(until), true));
        }
        let hash: String = row.try_get("password_hash")?;
        if !secrets::verify_password_bounded(password, &hash).await {
            return Ok((self.count_failure(id, "signin.failed", now).await?, true));
        }
        // Failures counted while argon2 ran may have locked the account since.
        let cleared = sqlx::query("UPDATE accounts SET failed_logins = 0, locked_until = NULL WHERE id = $1 AND (locked_until IS NULL OR locked_until <= $2)")
            .bind(id)
            .bind(ms(now))
            .execute(self.pool())
            .await?
            .rows_affected();
        if cleared == 0 {
            let until: Option<i64> = sqlx::query_scalar("SELECT locked_until FROM accounts WHERE id = $1").bind(id).fetch_one(self.pool()).await?;
            return Ok((SignIn::Locked(until.map_or(now, ts)), true));
        }
        if row.try_get::<i64, _>("disabled")? != 0 {
            self.audit(now, &actor(id), "signin.disabled", &actor(id), "").await?;
            return Ok((SignIn::Disabled, true));
        }
        self.audit(now, &actor(id), "signin.password", &actor(id), "ok").await?;
        Ok((SignIn::Ok, true))
    }

    /// Counts one failure against an account in one statement (so parallel
    /// failures all count) and locks it at [`LOCK_AFTER`].
    async fn count_failure(&self, id: i64, action: &str, now: Timestamp) -> Result<SignIn, StoreError> {
        let lock = ms(now.saturating_add(LOCK_FOR).unwrap_or(now));
        let until: Option<i64> = sqlx::query_scalar(
            "UPDATE accounts SET \
             failed_logins = CASE WHEN failed_logins + 1 >= $2 THEN 0 ELSE failed_logins + 1 END, \
             locked_until = CASE WHEN failed_logins + 1 >= $2 THEN $3 ELSE locked_until END \
             WHERE id = $1 RETURNING locked_until",
        )
        .bind(id)
        .bind(LOCK_AFTER)
        .bind(lock)
        .fetch_one(self.pool())
        .await?;
        let locked = until.map(ts).filter(|u| *u > now);
        self.audit(now, &actor(id), action, &actor(id), if until == Some(lock) { "locked" } else { "" }).await?;
        Ok(locked.map_or(SignIn::Wrong, SignIn::Locked))
    }

    /// Starts a session after the password; returns its cookie value. One
    /// still waiting for the second factor lasts [`HALF_SESSION_FOR`].
    pub async fn start_session(&self, account: &Account, now: Timestamp) -> Result<String, StoreError> {
        let complete = !account.role.needs_totp();
        self.insert_session(account.id, complete, now).await
    }

    async fn insert_session(&self, account: i64, complete: bool, now: Timestamp) -> Result<String, StoreError> {
        let id = secrets::token("hvs");
        let csrf = secrets::token("csrf");
        let lasts = if complete { SESSION_FOR } else { HALF_SESSION_FOR };
        sqlx::query("INSERT INTO sessions (id_hash, account, csrf, second_factor, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(secrets::token_hash(&id))
            .bind(account)
            .bind(csrf)
            .bind(i64::from(complete))
            .bind(ms(now))
            .bind(ms(now.saturating_add(lasts).unwrap_or(now)))
            .execute(self.pool())
            .await?;
        Ok(id)
    }

    /// The session a cookie names, if live and its account enabled.
    pub async fn session(&self, cookie: &str, now: Timestamp) -> Result<Option<Session>, StoreError> {
        let row = sqlx::query(
            "SELECT a.id, a.email, a.role, a.school, s.csrf, s.second_factor FROM sessions s JOIN accounts a ON a.id = s.account \
             WHERE s.id_hash = $1 AND s.expires_at > $2 AND a.disabled = 0",
        )
        .bind(secrets::token_hash(cookie))
        .bind(ms(now))
        .fetch_optional(self.pool())
        .await?;
        let Some(r) = row else { return Ok(None) };
        let role: String = r.try_get("role")?;
        Ok(Some(Session {
            account: Account {
                id: r.try_get("id")?,
                email: r.try_get("email")?,
                role: Role::parse(&role).ok_or_else(|| StoreError::Invalid(format!("unknown role {role:?}")))?,
                school: r.try_get("school")?,
            },
            csrf: r.try_get("csrf")?,
            complete: r.try_get::<i64, _>("second_factor")? != 0,
        }))
    }

    /// Checks the second factor for a half-signed-in session. A code is
    /// accepted once (its time step is remembered), [`FACTOR_ATTEMPTS`] wrong
    /// codes end the session, and each wrong code counts against the account
    /// like a wrong password. On success the session id changes.
    pub async fn second_factor(&self, cookie: &str, code: &str, now: Timestamp) -> Result<Factor, StoreError> {
        let row = sqlx::query(
            "SELECT a.id, a.totp_secret, a.locked_until, s.second_factor FROM sessions s JOIN accounts a ON a.id = s.account \
             WHERE s.id_hash = $1 AND s.expires_at > $2 AND a.disabled = 0",
        )
        .bind(secrets::token_hash(cookie))
        .bind(ms(now))
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else { return Ok(Factor::Ended) };
        let id: i64 = row.try_get("id")?;
        if row.try_get::<i64, _>("second_factor")? != 0 {
            return Ok(Factor::Ok(cookie.to_string()));
        }
        if let Some(until) = row.try_get::<Option<i64>, _>("locked_until")?.map(ts)
            && until > now
        {
            self.end_session(cookie).await?;
            return Ok(Factor::Locked(until));
        }
        let secret = match row.try_get::<Option<String>, _>("totp_secret")? {
            Some(sealed) => Some(self.sealer()?.open_text(&sealed, TOTP_SEALED)?),
            None => None,
        };
        if let Some(step) = secret.as_deref().and_then(|sec| totp_step(sec, code, now)) {
            // Only a step after the last one used: a code seen over a shoulder or replayed is refused.
            let fresh =
                sqlx::query("UPDATE accounts SET totp_last_step = $2, failed_logins = 0 WHERE id = $1 AND (totp_last_step IS NULL OR totp_last_step < $2)")
                    .bind(id)
                    .bind(step)
                    .execute(self.pool())
                    .await?
                    .rows_affected()
                    == 1;
            if fresh {
                let new = self.insert_session(id, true, now).await?;
                self.end_session(cookie).await?;
                self.audit(now, &actor(id), "signin.totp", &actor(id), "ok").await?;
                return Ok(Factor::Ok(new));
            }
            self.audit(now, &actor(id), "signin.totp", &actor(id), "replayed").await?;
        }
        let tries: i64 = sqlx::query_scalar("UPDATE sessions SET factor_failures = factor_failures + 1 WHERE id_hash = $1 RETURNING factor_failures")
            .bind(secrets::token_hash(cookie))
            .fetch_optional(self.pool())
            .await?
            .unwrap_or(FACTOR_ATTEMPTS);
        let counted = self.count_failure(id, "signin.totp.failed", now).await?;
        match counted {
            SignIn::Locked(until) => {
                self.end_session(cookie).await?;
                Ok(Factor::Locked(until))
            }
            _ if tries >= FACTOR_ATTEMPTS => {
                self.end_session(cookie).await?;
                Ok(Factor::Ended)
            }
            _ => Ok(Factor::Wrong),
        }
    }

    /// Ends a session.
    pub async fn end_session(&self, cookie: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sessions WHERE id_hash = $1").bind(secrets::token_hash(cookie)).execute(self.pool()).await?;
        Ok(())
    }

    /// The TOTP secret of an account (for tests and first set-up), opened with the record's key.
    pub async fn totp_secret_of(&self, account: i64) -> Result<Option<String>, StoreError> {
        let sealed: Option<String> = sqlx::query_scalar("SELECT totp_secret FROM accounts WHERE id = $1").bind(account).fetch_one(self.pool()).await?;
        sealed.map(|s| Ok(self.sealer()?.open_text(&s, TOTP_SEALED)?)).transpose()
    }

    /// Seals TOTP secrets stored before encryption at rest; returns how many.
    pub async fn seal_plain_secrets(&self) -> Result<usize, StoreError> {
        let rows = sqlx::query("SELECT id, totp_secret FROM accounts WHERE totp_secret IS NOT NULL").fetch_all(self.pool()).await?;
        let mut sealed = 0;
        for r in rows {
            let secret: String = r.try_get("totp_secret")?;
            if Sealer::is_sealed_text(&secret) {
                continue;
            }
            let id: i64 = r.try_get("id")?;
            let done = self.sealer()?.seal_text(&secret, TOTP_SEALED);
            sqlx::query("UPDATE accounts SET totp_secret = $2 WHERE id = $1 AND totp_secret = $3")
                .bind(id)
                .bind(done)
                .bind(secret)
                .execute(self.pool())
                .await?;
            sealed += 1;
        }
        Ok(sealed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::stores;

    #[test]
    fn rfc6238_vectors() {
        // RFC 6238 appendix B, SHA-1, secret "12345678901234567890": the last six digits.
        let key = b"12345678901234567890";
        assert_eq!(totp_at(key, 59 / 30), "287082");
        assert_eq!(totp_at(key, 1_111_111_109 / 30), "081804");
        assert_eq!(totp_at(key, 2_000_000_000 / 30), "279037");
        let b32 = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"; // base32 of the same key
        let now = Timestamp::from_second(1_111_111_109).unwrap();
        assert!(totp_ok(b32, "081804", now));
        assert!(totp_ok(b32, &totp_at(key, 1_111_111_109 / 30 + 1), now), "one step of drift");
        assert!(!totp_ok(b32, &totp_at(key, 1_111_111_109 / 30 + 3), now));
        assert!(!totp_ok(b32, "12345", now) && !totp_ok(b32, "abcdef", now));
    }

    #[tokio::test]
    async fn lockout_sessions_and_the_second_factor_on_every_backend() {
        let now: Timestamp = "2026-11-24T10:00:00Z".parse().unwrap();
        for (s, _dir) in stores().await {
            s.upsert_school("oak", "Oak", false).await.unwrap();
            let (dsl, secret) = s.add_account("dsl@oak.example", Role::Dsl, Some("oak"), "a long password", now).await.unwrap();
            assert_eq!(s.check_password("dsl@oak.example", "a long password", now).await.unwrap(), SignIn::Ok);
            assert_eq!(s.check_password("nobody@oak.example", "x", now).await.unwrap(), SignIn::Wrong);
            for _ in 0..LOCK_AFTER - 1 {
                assert_eq!(s.check_password("dsl@oak.example", "wrong", now).await.unwrap(), SignIn::Wrong);
            }
            assert!(matches!(s.check_password("dsl@oak.example", "wrong", now).await.unwrap(), SignIn::Locked(_)));
            assert!(matches!(s.check_password("dsl@oak.example", "a long password", now).await.unwrap(), SignIn::Locked(_)), "even the right password waits");
            let later = now.saturating_add(LOCK_FOR).unwrap();
            assert_eq!(s.check_password("dsl@oak.example", "a long password", later).await.unwrap(), SignIn::Ok);
            let cookie = s.start_session(&dsl, now).await.unwrap();
            let sess = s.session(&cookie, now).await.unwrap().unwrap();
            assert!(!sess.complete, "a DSL needs the second factor");
            let key = base32(secret.as_deref().unwrap()).unwrap();
            let code = totp_at(&key, now.as_second().div_euclid(30) as u64);
            if code != "000000" {
                assert_eq!(s.second_factor(&cookie, "000000", now).await.unwrap(), Factor::Wrong);
            }
            let Factor::Ok(complete) = s.second_factor(&cookie, &code, now).await.unwrap() else { panic!("the right code") };
            assert_ne!(complete, cookie, "the session id changes after the second factor");
            assert!(s.session(&cookie, now).await.unwrap().is_none(), "the old id is gone");
            let sess2 = s.session(&complete, now).await.unwrap().unwrap();
            assert!(sess2.complete && sess2.csrf != sess.csrf, "a new CSRF token too");
            assert!(s.session(&complete, now.saturating_add(SESSION_FOR).unwrap()).await.unwrap().is_none(), "expired");
            s.end_session(&complete).await.unwrap();
            assert!(s.session(&complete, now).await.unwrap().is_none());
            s.close().await;
        }
    }

    /// A DSL account and a half-signed-in session for it, with its TOTP key.
    async fn half_signed_in(s: &Store, now: Timestamp) -> (Account, String, Vec<u8>) {
        s.upsert_school("oak", "Oak", false).await.unwrap();
        let (dsl, secret) = s.add_account("dsl@oak.example", Role::Dsl, Some("oak"), "a long password", now).await.unwrap();
        let cookie = s.start_session(&dsl, now).await.unwrap();
        (dsl, cookie, base32(secret.as_deref().unwrap()).unwrap())
    }

    fn wrong_code(key: &[u8], now: Timestamp) -> String {
        let step = now.as_second().div_euclid(30);
        let right: Vec<String> = (-1..=1).map(|d| totp_at(key, (step + d) as u64)).collect();
        (0..).map(|n: u32| format!("{:06}", 123_456 + n)).find(|c| !right.contains(c)).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn forty_parallel_wrong_passwords_lock_the_account_on_every_backend() {
        let now: Timestamp = "2026-11-24T10:00:00Z".parse().unwrap();
        for (s, _dir) in stores().await {
            s.upsert_school("oak", "Oak", false).await.unwrap();
            s.add_account("t@oak.example", Role::Teacher, Some("oak"), "a long password", now).await.unwrap();
            let tries: Vec<_> = (0..40)
                .map(|_| {
                    let s = s.clone();
                    tokio::spawn(async move { s.check_password("t@oak.example", "a wrong guess", now).await.unwrap() })
                })
                .collect();
            let mut wrong = 0;
            for t in tries {
                if t.await.unwrap() == SignIn::Wrong {
                    wrong += 1;
                }
            }
            assert_eq!(wrong, LOCK_AFTER - 1, "every failure counts: the fifth locks, the rest find it locked");
            assert!(matches!(s.check_password("t@oak.example", "a long password", now).await.unwrap(), SignIn::Locked(_)), "even the right password waits");
            s.close().await;
        }
    }

    #[tokio::test]
    async fn a_code_is_used_once_and_wrong_codes_end_the_half_session_on_every_backend() {
        let now: Timestamp = "2026-11-24T10:00:00Z".parse().unwrap();
        for (s, _dir) in stores().await {
            let (dsl, cookie, key) = half_signed_in(&s, now).await;
            let code = totp_at(&key, now.as_second().div_euclid(30) as u64);
            assert!(matches!(s.second_factor(&cookie, &code, now).await.unwrap(), Factor::Ok(_)));
            // The same code again, from a second sign-in within its 30 seconds: refused.
            assert_eq!(s.check_password("dsl@oak.example", "a long password", now).await.unwrap(), SignIn::Ok);
            let again = s.start_session(&dsl, now).await.unwrap();
            assert_eq!(s.second_factor(&again, &code, now).await.unwrap(), Factor::Wrong, "a replayed code is refused");
            let next = now.saturating_add(SignedDuration::from_secs(30)).unwrap();
            let next_code = totp_at(&key, next.as_second().div_euclid(30) as u64);
            assert!(matches!(s.second_factor(&again, &next_code, next).await.unwrap(), Factor::Ok(_)), "the next step's code works");

            // Five wrong codes end the half-signed-in session and count against the account.
            let later = now.saturating_add(SignedDuration::from_mins(2)).unwrap();
            let third = s.start_session(&dsl, later).await.unwrap();
            let wrong = wrong_code(&key, later);
            let mut answers = Vec::new();
            for _ in 0..FACTOR_ATTEMPTS {
                answers.push(s.second_factor(&third, &wrong, later).await.unwrap());
            }
            assert_eq!(answers[..4], [Factor::Wrong, Factor::Wrong, Factor::Wrong, Factor::Wrong]);
            assert!(matches!(answers[4], Factor::Ended | Factor::Locked(_)), "{answers:?}");
            assert!(s.session(&third, later).await.unwrap().is_none(), "the half-signed-in session is gone");
            let right = totp_at(&key, later.as_second().div_euclid(30) as u64);
            assert_eq!(s.second_factor(&third, &right, later).await.unwrap(), Factor::Ended, "even the right code is too late");
            assert!(matches!(s.check_password("dsl@oak.example", "a long password", later).await.unwrap(), SignIn::Locked(_)), "the account counted them");
            s.close().await;
        }
    }

    #[tokio::test]
    async fn a_half_signed_in_session_expires_in_minutes_on_every_backend() {
        let now: Timestamp = "2026-11-24T10:00:00Z".parse().unwrap();
        for (s, _dir) in stores().await {
            let (_, cookie, key) = half_signed_in(&s, now).await;
            let soon = now.saturating_add(HALF_SESSION_FOR).unwrap();
            assert!(s.session(&cookie, now).await.unwrap().is_some());
            assert!(s.session(&cookie, soon).await.unwrap().is_none(), "gone after {HALF_SESSION_FOR:?}");
            let code = totp_at(&key, soon.as_second().div_euclid(30) as u64);
            assert_eq!(s.second_factor(&cookie, &code, soon).await.unwrap(), Factor::Ended);
            s.close().await;
        }
    }

    #[tokio::test]
    async fn totp_secrets_are_sealed_at_rest_on_every_backend() {
        let now: Timestamp = "2026-11-24T10:00:00Z".parse().unwrap();
        for (s, dir) in stores().await {
            s.upsert_school("oak", "Oak", false).await.unwrap();
            let (dsl, secret) = s.add_account("dsl@oak.example", Role::Dsl, Some("oak"), "a long password", now).await.unwrap();
            let secret = secret.unwrap();
            let stored: String = sqlx::query_scalar("SELECT totp_secret FROM accounts WHERE id = $1").bind(dsl.id).fetch_one(s.pool()).await.unwrap();
            assert!(!stored.contains(&secret) && stored.starts_with("enc1:"), "{stored}");
            assert_eq!(s.totp_secret_of(dsl.id).await.unwrap().as_deref(), Some(secret.as_str()), "read back with the key");
            // A secret stored before encryption still works, and is sealed on start.
            let plain = secrets::totp_secret();
            sqlx::query("UPDATE accounts SET totp_secret = $2 WHERE id = $1").bind(dsl.id).bind(&plain).execute(s.pool()).await.unwrap();
            assert_eq!(s.totp_secret_of(dsl.id).await.unwrap().as_deref(), Some(plain.as_str()));
            assert_eq!(s.seal_plain_secrets().await.unwrap(), 1);
            assert_eq!(s.seal_plain_secrets().await.unwrap(), 0);
            assert_eq!(s.totp_secret_of(dsl.id).await.unwrap().as_deref(), Some(plain.as_str()));
            if let Some(dir) = &dir {
                s.close().await;
                let mut bytes = std::fs::read(dir.path().join("haven.db")).unwrap();
                bytes.extend(std::fs::read(dir.path().join("haven.db-wal")).unwrap_or_default());
                assert!(!bytes.windows(plain.len()).any(|w| w == plain.as_bytes()), "no plain secret in the database files");
                assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()));
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    assert_eq!(std::fs::metadata(dir.path()).unwrap().permissions().mode() & 0o777, 0o700, "the data folder");
                    assert_eq!(std::fs::metadata(dir.path().join("haven.db")).unwrap().permissions().mode() & 0o777, 0o600, "the database");
                }
            } else {
                s.close().await;
            }
        }
    }
}
