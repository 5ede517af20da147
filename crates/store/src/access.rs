//! Who can still get in, and taking it away: staff accounts (disable,
//! enable, reset the password or second factor, unlock), API keys and device
//! tokens (revoke). Disabling an account or resetting its credentials ends
//! its sessions at once; every request checks the account is enabled.

use jiff::Timestamp;
use sqlx::Row;

use crate::people::{Account, Device};
use crate::roles::Role;
use crate::sessions::TOTP_SEALED;
use crate::{Store, StoreError, ms, secrets, ts};

/// An account as an administrator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountState {
    /// The account.
    pub account: Account,
    /// Disabled: cannot sign in, sessions ended, API keys refused.
    pub disabled: bool,
    /// Locked after failed sign-ins, until then.
    pub locked_until: Option<Timestamp>,
    /// Has a second factor set up.
    pub totp: bool,
    /// When it was made.
    pub created_at: Timestamp,
}

/// An API key as an administrator sees it (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyState {
    /// Row id (what `revoke` takes).
    pub id: i64,
    /// The account it acts as.
    pub email: String,
    /// When it was made.
    pub created_at: Timestamp,
    /// When it stops working (`None`: made before keys expired).
    pub expires_at: Option<Timestamp>,
    /// When it was revoked.
    pub revoked_at: Option<Timestamp>,
}

/// A device as an administrator sees it (never its token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceState {
    /// The device.
    pub device: Device,
    /// When it was registered.
    pub created_at: Timestamp,
    /// When its token was revoked.
    pub revoked_at: Option<Timestamp>,
    /// When it last sent anything or asked for its policy.
    pub last_seen_at: Option<Timestamp>,
    /// What it said of itself then.
    pub contact: crate::devices::Contact,
}

fn not_found(email: &str) -> StoreError {
    StoreError::NotFound { what: "account", name: email.into(), hint: "; `haven admin user list` shows the accounts" }
}

impl Store {
    /// Every account, by e-mail.
    pub async fn accounts(&self) -> Result<Vec<AccountState>, StoreError> {
        let rows =
            sqlx::query("SELECT id, email, role, school, disabled, locked_until, totp_secret IS NOT NULL AS totp, created_at FROM accounts ORDER BY email")
                .fetch_all(self.pool())
                .await?;
        rows.iter()
            .map(|r| {
                let role: String = r.try_get("role")?;
                // PostgreSQL answers the IS NOT NULL as a boolean, SQLite as 0/1.
                let totp = r.try_get::<bool, _>("totp").or_else(|_| r.try_get::<i64, _>("totp").map(|v| v != 0))?;
                Ok(AccountState {
                    account: Account {
                        id: r.try_get("id")?,
                        email: r.try_get("email")?,
                        role: Role::parse(&role).ok_or_else(|| StoreError::Invalid(format!("unknown role {role:?} in the database")))?,
                        school: r.try_get("school")?,
                    },
                    disabled: r.try_get::<i64, _>("disabled")? != 0,
                    locked_until: r.try_get::<Option<i64>, _>("locked_until")?.map(ts),
                    totp,
                    created_at: ts(r.try_get("created_at")?),
                })
            })
            .collect()
    }

    async fn account_id(&self, email: &str) -> Result<i64, StoreError> {
        sqlx::query_scalar("SELECT id FROM accounts WHERE email = $1")
            .bind(email.trim().to_ascii_lowercase())
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| not_found(email))
    }

    async fn end_sessions_of(&self, id: i64) -> Result<u64, StoreError> {
        Ok(sqlx::query("DELETE FROM sessions WHERE account = $1").bind(id).execute(self.pool()).await?.rows_affected())
    }

    /// Disables (or enables) an account; disabling ends its sessions at once.
    /// Returns the account's id.
    pub async fn set_disabled(&self, email: &str, disabled: bool, by: &str, now: Timestamp) -> Result<i64, StoreError> {
        let id = self.account_id(email).await?;
        sqlx::query("UPDATE accounts SET disabled = $2 WHERE id = $1").bind(id).bind(i64::from(disabled)).execute(self.pool()).await?;
        if disabled {
            self.end_sessions_of(id).await?;
        }
        self.audit(now, by, if disabled { "account.disable" } else { "account.enable" }, &format!("account:{id}"), "").await?;
        Ok(id)
    }

    /// Sets a new password (at least 10 characters), unlocks the account and ends its sessions.
    pub async fn reset_password(&self, email: &str, password: &str, by: &str, now: Timestamp) -> Result<i64, StoreError> {
        if password.chars().count() < 10 {
            return Err(StoreError::Invalid("the password must be at least 10 characters".into()));
        }
        let id = self.account_id(email).await?;
        let hash = secrets::hash_password_bounded(password).await.map_err(StoreError::Invalid)?;
        sqlx::query("UPDATE accounts SET password_hash = $2, failed_logins = 0, locked_until = NULL WHERE id = $1")
            .bind(id)
            .bind(hash)
            .execute(self.pool())
            .await?;
        self.end_sessions_of(id).await?;
        self.audit(now, by, "account.reset-password", &format!("account:{id}"), "").await?;
        Ok(id)
    }

    /// Gives an account a new second factor (the old authenticator stops
    /// working) and ends its sessions; returns the new secret, shown once.
    pub async fn reset_totp(&self, email: &str, by: &str, now: Timestamp) -> Result<String, StoreError> {
        let account = self.account_by_email(email).await?;
        if !account.role.needs_totp() {
            return Err(StoreError::Invalid(format!("a {} signs in without a second factor; there is none to reset", account.role.as_str())));
        }
        let secret = secrets::totp_secret();
        let sealed = self.sealer()?.seal_text(&secret, TOTP_SEALED);
        sqlx::query("UPDATE accounts SET totp_secret = $2, totp_last_step = NULL WHERE id = $1").bind(account.id).bind(sealed).execute(self.pool()).await?;
        self.end_sessions_of(account.id).await?;
        self.audit(now, by, "account.reset-totp", &format!("account:{}", account.id), "").await?;
        Ok(secret)
    }

    /// Lifts a lock after failed sign-ins.
    pub async fn unlock(&self, email: &str, by: &str, now: Timestamp) -> Result<i64, StoreError> {
        let id = self.account_id(email).await?;
        sqlx::query("UPDATE accounts SET failed_logins = 0, locked_until = NULL WHERE id = $1").bind(id).execute(self.pool()).await?;
        self.audit(now, by, "account.unlock", &format!("account:{id}"), "").await?;
        Ok(id)
    }

    /// Every API key, newest first.
    pub async fn api_keys(&self) -> Result<Vec<ApiKeyState>, StoreError> {
        let rows = sqlx::query(
            "SELECT k.id, a.email, k.created_at, k.expires_at, k.revoked_at FROM api_keys k JOIN accounts a ON a.id = k.account ORDER BY k.id DESC",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ApiKeyState {
                    id: r.try_get("id")?,
                    email: r.try_get("email")?,
                    created_at: ts(r.try_get("created_at")?),
                    expires_at: r.try_get::<Option<i64>, _>("expires_at")?.map(ts),
                    revoked_at: r.try_get::<Option<i64>, _>("revoked_at")?.map(ts),
                })
            })
            .collect()
    }

    /// Revokes an API key; `false` if there is no such key or it was already revoked.
    pub async fn revoke_api_key(&self, id: i64, by: &str, now: Timestamp) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL").bind(id).bind(ms(now)).execute(self.pool()).await?;
        let done = done.rows_affected() == 1;
        if done {
            self.audit(now, by, "apikey.revoke", &format!("apikey:{id}"), "").await?;
        }
        Ok(done)
    }

    /// Every device, by school and name.
    pub async fn devices(&self) -> Result<Vec<DeviceState>, StoreError> {
        let rows =
            sqlx::query("SELECT id, school, name, created_at, revoked_at, last_seen_at, agent, queue_depth, dropped FROM devices ORDER BY school, name, id")
                .fetch_all(self.pool())
                .await?;
        rows.iter()
            .map(|r| {
                Ok(DeviceState {
                    device: Device { id: r.try_get("id")?, school: r.try_get("school")?, name: r.try_get("name")? },
                    created_at: ts(r.try_get("created_at")?),
                    revoked_at: r.try_get::<Option<i64>, _>("revoked_at")?.map(ts),
                    last_seen_at: r.try_get::<Option<i64>, _>("last_seen_at")?.map(ts),
                    contact: crate::devices::Contact { agent: r.try_get("agent")?, queue_depth: r.try_get("queue_depth")?, dropped: r.try_get("dropped")? },
                })
            })
            .collect()
    }

    /// Revokes a device's ingest token; `false` if there is no such device or it was already revoked.
    pub async fn revoke_device(&self, id: i64, by: &str, now: Timestamp) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE devices SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL").bind(id).bind(ms(now)).execute(self.pool()).await?;
        let done = done.rows_affected() == 1;
        if done {
            self.audit(now, by, "device.revoke", &format!("device:{id}"), "").await?;
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use jiff::SignedDuration;

    use super::*;
    use crate::sessions::{Factor, SignIn};
    use crate::testing::stores;

    #[tokio::test]
    async fn leavers_lose_every_way_in_on_every_backend() {
        let now: Timestamp = "2026-11-24T10:00:00Z".parse().unwrap();
        for (s, _dir) in stores().await {
            s.upsert_school("oak", "Oak", false).await.unwrap();
            let (t, _) = s.add_account("t@oak.example", Role::Teacher, Some("oak"), "a long password", now).await.unwrap();
            let (_, old_secret) = s.add_account("dsl@oak.example", Role::Dsl, Some("oak"), "a long password", now).await.unwrap();
            let cookie = s.start_session(&t, now).await.unwrap();
            let key = s.add_api_key("t@oak.example", now).await.unwrap();
            assert!(s.session(&cookie, now).await.unwrap().is_some());
            // Disabled: the live session ends at once, the key and the password stop working.
            s.set_disabled("t@oak.example", true, "admin-cli", now).await.unwrap();
            assert!(s.session(&cookie, now).await.unwrap().is_none(), "the session ended");
            assert!(s.account_by_api_key(&key, now).await.unwrap().is_none(), "its API key is refused");
            assert_eq!(s.check_password("t@oak.example", "a long password", now).await.unwrap(), SignIn::Disabled);
            let list = s.accounts().await.unwrap();
            assert!(list.iter().any(|a| a.account.email == "t@oak.example" && a.disabled && !a.totp));
            assert!(list.iter().any(|a| a.account.email == "dsl@oak.example" && !a.disabled && a.totp));
            s.set_disabled("t@oak.example", false, "admin-cli", now).await.unwrap();
            assert_eq!(s.check_password("t@oak.example", "a long password", now).await.unwrap(), SignIn::Ok);
            assert!(s.account_by_api_key(&key, now).await.unwrap().is_some());
            // A key expires, and is revoked.
            let later = now.saturating_add(crate::people::API_KEY_FOR).unwrap();
            assert!(s.account_by_api_key(&key, later).await.unwrap().is_none(), "expired");
            let (id, short) = s.add_api_key_until("t@oak.example", now.saturating_add(SignedDuration::from_hours(1)).unwrap(), now).await.unwrap();
            assert!(s.account_by_api_key(&short, now).await.unwrap().is_some());
            assert!(s.add_api_key_until("t@oak.example", now, now).await.is_err(), "already expired");
            assert!(s.revoke_api_key(id, "admin-cli", now).await.unwrap());
            assert!(!s.revoke_api_key(id, "admin-cli", now).await.unwrap(), "once");
            assert!(s.account_by_api_key(&short, now).await.unwrap().is_none(), "revoked");
            assert!(s.api_keys().await.unwrap().iter().any(|k| k.id == id && k.revoked_at.is_some()));
            // A device's token is revoked.
            let (device, token) = s.add_device("oak", "Library PC", now).await.unwrap();
            assert!(s.revoke_device(device.id, "admin-cli", now).await.unwrap());
            assert!(s.device_by_token(&token).await.unwrap().is_none());
            assert!(s.devices().await.unwrap().iter().any(|d| d.device.id == device.id && d.revoked_at.is_some()));
            // Lock, unlock; reset the password; reset the second factor.
            for _ in 0..crate::sessions::LOCK_AFTER {
                s.check_password("t@oak.example", "wrong", now).await.unwrap();
            }
            assert!(matches!(s.check_password("t@oak.example", "a long password", now).await.unwrap(), SignIn::Locked(_)));
            s.unlock("t@oak.example", "admin-cli", now).await.unwrap();
            assert_eq!(s.check_password("t@oak.example", "a long password", now).await.unwrap(), SignIn::Ok);
            let cookie = s.start_session(&t, now).await.unwrap();
            assert!(s.reset_password("t@oak.example", "short", "admin-cli", now).await.is_err());
            s.reset_password("t@oak.example", "a new long password", "admin-cli", now).await.unwrap();
            assert!(s.session(&cookie, now).await.unwrap().is_none(), "a reset ends sessions");
            assert_eq!(s.check_password("t@oak.example", "a long password", now).await.unwrap(), SignIn::Wrong);
            assert!(s.reset_totp("t@oak.example", "admin-cli", now).await.unwrap_err().to_string().contains("without a second factor"));
            let new_secret = s.reset_totp("dsl@oak.example", "admin-cli", now).await.unwrap();
            assert_ne!(Some(new_secret.clone()), old_secret);
            let dsl = s.account_by_email("dsl@oak.example").await.unwrap();
            let half = s.start_session(&dsl, now).await.unwrap();
            let old_code = crate::sessions::totp_code(old_secret.as_deref().unwrap(), now).unwrap();
            let new_code = crate::sessions::totp_code(&new_secret, now).unwrap();
            if old_code != new_code {
                assert_eq!(s.second_factor(&half, &old_code, now).await.unwrap(), Factor::Wrong, "the old authenticator no longer works");
            }
            assert!(matches!(s.second_factor(&half, &new_code, now).await.unwrap(), Factor::Ok(_)));
            assert!(s.unlock("nobody@oak.example", "admin-cli", now).await.unwrap_err().to_string().contains("user list"));
            let audit: Vec<String> = s.audit_search(None, Some("admin-cli"), 100).await.unwrap().into_iter().map(|e| e.action).collect();
            for a in ["account.disable", "account.enable", "apikey.revoke", "device.revoke", "account.unlock", "account.reset-password", "account.reset-totp"] {
                assert!(audit.iter().any(|x| x == a), "{a} audited: {audit:?}");
            }
            s.close().await;
        }
    }
}
