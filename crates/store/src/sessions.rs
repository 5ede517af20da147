//! Signing in: passwords with lockout, the second factor (TOTP, RFC 6238),
//! sessions with their CSRF token, and what staff do about an alert.

use hmac::{Hmac, KeyInit, Mac};
use jiff::{SignedDuration, Timestamp};
use sqlx::Row;

use crate::people::Account;
use crate::roles::Role;
use crate::{Store, StoreError, ms, secrets, ts};

/// Failed sign-ins before an account is locked…
pub const LOCK_AFTER: i64 = 5;
/// …for this long.
pub const LOCK_FOR: SignedDuration = SignedDuration::from_mins(15);
/// A session lasts a working day at most.
pub const SESSION_FOR: SignedDuration = SignedDuration::from_hours(10);

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
    let Some(key) = base32(secret_b32) else { return false };
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let step = now.as_second().div_euclid(30);
    (-1..=1).any(|d| totp_at(&key, (step + d) as u64) == code)
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

impl Store {
    /// Checks a password, counting failures and locking after [`LOCK_AFTER`].
    pub async fn check_password(&self, email: &str, password: &str, now: Timestamp) -> Result<SignIn, StoreError> {
        let row = sqlx::query("SELECT id, password_hash, failed_logins, locked_until FROM accounts WHERE email = $1")
            .bind(email.trim().to_ascii_lowercase())
            .fetch_optional(self.pool())
            .await?;
        let Some(row) = row else {
            // The same work as a real check, so timing does not tell which e-mails have accounts.
            static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
            let dummy = DUMMY.get_or_init(|| secrets::hash_password("no such account").unwrap_or_default());
            let _ = secrets::verify_password(password, dummy);
            return Ok(SignIn::Wrong);
        };
        let id: i64 = row.try_get("id")?;
        if let Some(until) = row.try_get::<Option<i64>, _>("locked_until")?.map(ts)
            && until > now
        {
            return Ok(SignIn::Locked(until));
        }
        let hash: String = row.try_get("password_hash")?;
        if secrets::verify_password(password, &hash) {
            sqlx::query("UPDATE accounts SET failed_logins = 0, locked_until = NULL WHERE id = $1").bind(id).execute(self.pool()).await?;
            self.audit(now, &format!("account:{id}"), "signin.password", &format!("account:{id}"), "ok").await?;
            return Ok(SignIn::Ok);
        }
        let failed: i64 = row.try_get::<i64, _>("failed_logins")? + 1;
        let lock = (failed >= LOCK_AFTER).then(|| now.saturating_add(LOCK_FOR).unwrap_or(now));
        sqlx::query("UPDATE accounts SET failed_logins = $2, locked_until = $3 WHERE id = $1")
            .bind(id)
            .bind(if lock.is_some() { 0 } else { failed })
            .bind(lock.map(ms))
            .execute(self.pool())
            .await?;
        self.audit(now, &format!("account:{id}"), "signin.failed", &format!("account:{id}"), if lock.is_some() { "locked" } else { "" }).await?;
        Ok(lock.map_or(SignIn::Wrong, SignIn::Locked))
    }

    /// Starts a session after the password; returns its cookie value.
    pub async fn start_session(&self, account: &Account, now: Timestamp) -> Result<String, StoreError> {
        let id = secrets::token("hvs");
        let csrf = secrets::token("csrf");
        sqlx::query("INSERT INTO sessions (id_hash, account, csrf, second_factor, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(secrets::token_hash(&id))
            .bind(account.id)
            .bind(csrf)
            .bind(i64::from(!account.role.needs_totp()))
            .bind(ms(now))
            .bind(ms(now.saturating_add(SESSION_FOR).unwrap_or(now)))
            .execute(self.pool())
            .await?;
        Ok(id)
    }

    /// The session a cookie names, if live.
    pub async fn session(&self, cookie: &str, now: Timestamp) -> Result<Option<Session>, StoreError> {
        let row = sqlx::query(
            "SELECT a.id, a.email, a.role, a.school, s.csrf, s.second_factor FROM sessions s JOIN accounts a ON a.id = s.account \
             WHERE s.id_hash = $1 AND s.expires_at > $2",
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

    /// Checks the second factor for a session; on success the session is complete.
    pub async fn second_factor(&self, cookie: &str, code: &str, now: Timestamp) -> Result<bool, StoreError> {
        let Some(s) = self.session(cookie, now).await? else { return Ok(false) };
        let secret: Option<String> = sqlx::query_scalar("SELECT totp_secret FROM accounts WHERE id = $1").bind(s.account.id).fetch_one(self.pool()).await?;
        let ok = secret.is_some_and(|sec| totp_ok(&sec, code, now));
        if ok {
            sqlx::query("UPDATE sessions SET second_factor = 1 WHERE id_hash = $1").bind(secrets::token_hash(cookie)).execute(self.pool()).await?;
        }
        self.audit(now, &format!("account:{}", s.account.id), "signin.totp", &format!("account:{}", s.account.id), if ok { "ok" } else { "failed" }).await?;
        Ok(ok)
    }

    /// Ends a session.
    pub async fn end_session(&self, cookie: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sessions WHERE id_hash = $1").bind(secrets::token_hash(cookie)).execute(self.pool()).await?;
        Ok(())
    }

    /// The TOTP secret of an account (for tests and first set-up).
    pub async fn totp_secret_of(&self, account: i64) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar("SELECT totp_secret FROM accounts WHERE id = $1").bind(account).fetch_one(self.pool()).await?)
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
            assert!(!s.second_factor(&cookie, "000000", now).await.unwrap() || totp_ok(secret.as_deref().unwrap(), "000000", now));
            let key = base32(secret.as_deref().unwrap()).unwrap();
            let code = totp_at(&key, now.as_second().div_euclid(30) as u64);
            assert!(s.second_factor(&cookie, &code, now).await.unwrap());
            assert!(s.session(&cookie, now).await.unwrap().unwrap().complete);
            assert!(s.session(&cookie, now.saturating_add(SESSION_FOR).unwrap()).await.unwrap().is_none(), "expired");
            s.end_session(&cookie).await.unwrap();
            assert!(s.session(&cookie, now).await.unwrap().is_none());
            s.close().await;
        }
    }
}
