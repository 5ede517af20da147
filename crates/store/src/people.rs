//! Schools, staff accounts, devices, API keys and the call-out lists.

use jiff::Timestamp;
use sqlx::Row;

use crate::roles::Role;
use crate::sessions::TOTP_SEALED;
use crate::{Store, StoreError, ms, secrets};

/// How long an API key lasts when no expiry is given.
pub const API_KEY_FOR: jiff::SignedDuration = jiff::SignedDuration::from_hours(24 * 365);

/// A school as the record knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct School {
    /// Short id (`riverside-academy`).
    pub id: String,
    /// Its name.
    pub name: String,
    /// Part of the demo trust.
    pub demo: bool,
}

/// A staff account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Row id.
    pub id: i64,
    /// Sign-in e-mail.
    pub email: String,
    /// Role.
    pub role: Role,
    /// The school, for school roles.
    pub school: Option<String>,
}

/// A device allowed to send monitoring events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Row id.
    pub id: i64,
    /// Its school.
    pub school: String,
    /// Its name.
    pub name: String,
}

/// One entry of a call-out list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnCall {
    /// Row id.
    pub id: i64,
    /// The school, or `None` for the trust's list (holidays).
    pub school: Option<String>,
    /// Who.
    pub name: String,
    /// E-mail address.
    pub email: Option<String>,
    /// Webhook URL (an SMS or voice gateway).
    pub webhook: Option<String>,
    /// Lower is called first.
    pub priority: i64,
}

fn account(row: &sqlx::any::AnyRow) -> Result<Account, StoreError> {
    let role: String = row.try_get("role")?;
    Ok(Account {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        role: Role::parse(&role).ok_or_else(|| StoreError::Invalid(format!("unknown role {role:?} in the database")))?,
        school: row.try_get("school")?,
    })
}

impl Store {
    /// Adds or renames a school (the config's schools are synced at start).
    pub async fn upsert_school(&self, id: &str, name: &str, demo: bool) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO schools (id, name, demo) VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET name = $2, demo = $3")
            .bind(id)
            .bind(name)
            .bind(i64::from(demo))
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Every school, by id.
    pub async fn schools(&self) -> Result<Vec<School>, StoreError> {
        let rows = sqlx::query("SELECT id, name, demo FROM schools ORDER BY id").fetch_all(self.pool()).await?;
        rows.iter().map(|r| Ok(School { id: r.try_get("id")?, name: r.try_get("name")?, demo: r.try_get::<i64, _>("demo")? != 0 })).collect()
    }

    pub(crate) async fn require_school(&self, school: &str) -> Result<(), StoreError> {
        let found: Option<String> = sqlx::query_scalar("SELECT id FROM schools WHERE id = $1").bind(school).fetch_optional(self.pool()).await?;
        found.map(|_| ()).ok_or(StoreError::NotFound { what: "school", name: school.into(), hint: "; `haven admin school list` shows the ids" })
    }

    /// Adds a staff account. Returns the account and, for roles that need a
    /// second factor, the new TOTP secret (shown once, never again).
    pub async fn add_account(
        &self,
        email: &str,
        role: Role,
        school: Option<&str>,
        password: &str,
        now: Timestamp,
    ) -> Result<(Account, Option<String>), StoreError> {
        let email = email.trim().to_ascii_lowercase();
        if !email.contains('@') {
            return Err(StoreError::Invalid(format!("{email:?} is not an e-mail address")));
        }
        if password.chars().count() < 10 {
            return Err(StoreError::Invalid("the password must be at least 10 characters".into()));
        }
        let school = if role.trust_wide() { None } else { school };
        match (role.trust_wide(), school) {
            (false, None) => return Err(StoreError::Invalid(format!("a {} belongs to one school: pass --school", role.as_str()))),
            (_, Some(s)) => self.require_school(s).await?,
            _ => {}
        }
        let hash = secrets::hash_password_bounded(password).await.map_err(StoreError::Invalid)?;
        let totp = role.needs_totp().then(secrets::totp_secret);
        let sealed = match &totp {
            Some(t) => Some(self.sealer()?.seal_text(t, TOTP_SEALED)),
            None => None,
        };
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO accounts (email, role, school, password_hash, totp_secret, created_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(&email)
        .bind(role.as_str())
        .bind(school)
        .bind(hash)
        .bind(sealed)
        .bind(ms(now))
        .fetch_one(self.pool())
        .await
        .map_err(|e| match e {
            sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Invalid(format!("an account for {email} already exists")),
            e => e.into(),
        })?;
        Ok((Account { id, email, role, school: school.map(str::to_string) }, totp))
    }

    /// An account by e-mail.
    pub async fn account_by_email(&self, email: &str) -> Result<Account, StoreError> {
        let row = sqlx::query("SELECT id, email, role, school FROM accounts WHERE email = $1")
            .bind(email.trim().to_ascii_lowercase())
            .fetch_optional(self.pool())
            .await?
            .ok_or(StoreError::NotFound { what: "account", name: email.into(), hint: "; add it with `haven admin user add`" })?;
        account(&row)
    }

    /// Registers a device; returns it and its ingest token (shown once).
    pub async fn add_device(&self, school: &str, name: &str, now: Timestamp) -> Result<(Device, String), StoreError> {
        self.require_school(school).await?;
        let token = secrets::token("hvd");
        let id: i64 = sqlx::query_scalar("INSERT INTO devices (school, name, token_hash, created_at) VALUES ($1, $2, $3, $4) RETURNING id")
            .bind(school)
            .bind(name)
            .bind(secrets::token_hash(&token))
            .bind(ms(now))
            .fetch_one(self.pool())
            .await?;
        Ok((Device { id, school: school.into(), name: name.into() }, token))
    }

    /// The device an ingest token belongs to (none once revoked).
    pub async fn device_by_token(&self, token: &str) -> Result<Option<Device>, StoreError> {
        let row = sqlx::query("SELECT id, school, name FROM devices WHERE token_hash = $1 AND revoked_at IS NULL")
            .bind(secrets::token_hash(token))
            .fetch_optional(self.pool())
            .await?;
        row.map(|r| Ok(Device { id: r.try_get("id")?, school: r.try_get("school")?, name: r.try_get("name")? })).transpose()
    }

    /// An API key that acts as an account for [`API_KEY_FOR`]; returned once.
    pub async fn add_api_key(&self, email: &str, now: Timestamp) -> Result<String, StoreError> {
        Ok(self.add_api_key_until(email, now.saturating_add(API_KEY_FOR).unwrap_or(now), now).await?.1)
    }

    /// An API key that acts as an account until `expires`; its id and the key (returned once).
    pub async fn add_api_key_until(&self, email: &str, expires: Timestamp, now: Timestamp) -> Result<(i64, String), StoreError> {
        if expires <= now {
            return Err(StoreError::Invalid(format!("the key would expire at {expires}, which has passed; give a later date")));
        }
        let a = self.account_by_email(email).await?;
        let key = secrets::token("hvk");
        let id = sqlx::query_scalar("INSERT INTO api_keys (account, key_hash, created_at, expires_at) VALUES ($1, $2, $3, $4) RETURNING id")
            .bind(a.id)
            .bind(secrets::token_hash(&key))
            .bind(ms(now))
            .bind(ms(expires))
            .fetch_one(self.pool())
            .await?;
        Ok((id, key))
    }

    /// The account an API key acts as at `now`: none once it expired or was
    /// revoked, or its account was disabled.
    pub async fn account_by_api_key(&self, key: &str, now: Timestamp) -> Result<Option<Account>, StoreError> {
        let row = sqlx::query(
            "SELECT a.id, a.email, a.role, a.school FROM api_keys k JOIN accounts a ON a.id = k.account              WHERE k.key_hash = $1 AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > $2) AND a.disabled = 0",
        )
        .bind(secrets::token_hash(key))
        .bind(ms(now))
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(account).transpose()
    }

    /// Adds someone to a call-out list (`school` `None`: the trust's list).
    pub async fn add_oncall(&self, school: Option<&str>, name: &str, email: Option<&str>, webhook: Option<&str>, priority: i64) -> Result<i64, StoreError> {
        if email.is_none() == webhook.is_none() {
            return Err(StoreError::Invalid("give exactly one of --email or --webhook".into()));
        }
        // A preset may come first: `twilio-sms+https://…` (see the notification worker).
        let url = webhook.map(|w| w.split_once('+').filter(|(p, _)| !p.contains(':') && !p.contains('/')).map_or(w, |(_, u)| u));
        if let (Some(w), Some(url)) = (webhook, url)
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(StoreError::Invalid(format!(
                "webhook {w:?} must be an http(s):// URL, optionally after a preset (slack+, teams+, twilio-sms+, twilio-voice+, textlocal+, clicksend+)"
            )));
        }
        if let Some(s) = school {
            self.require_school(s).await?;
        }
        Ok(sqlx::query_scalar("INSERT INTO oncall (school, name, email, webhook, priority) VALUES ($1, $2, $3, $4, $5) RETURNING id")
            .bind(school)
            .bind(name)
            .bind(email)
            .bind(webhook)
            .bind(priority)
            .fetch_one(self.pool())
            .await?)
    }

    /// A call-out list, by priority (`school` `None`: the trust's).
    pub async fn oncall(&self, school: Option<&str>) -> Result<Vec<OnCall>, StoreError> {
        let rows = match school {
            Some(s) => sqlx::query("SELECT id, school, name, email, webhook, priority FROM oncall WHERE school = $1 ORDER BY priority, id").bind(s),
            None => sqlx::query("SELECT id, school, name, email, webhook, priority FROM oncall WHERE school IS NULL ORDER BY priority, id"),
        }
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(OnCall {
                    id: r.try_get("id")?,
                    school: r.try_get("school")?,
                    name: r.try_get("name")?,
                    email: r.try_get("email")?,
                    webhook: r.try_get("webhook")?,
                    priority: r.try_get("priority")?,
                })
            })
            .collect()
    }
}

impl Store {
    /// Removes an entry from a call-out list; returns whether it existed.
    pub async fn remove_oncall(&self, id: i64) -> Result<bool, StoreError> {
        Ok(sqlx::query("DELETE FROM oncall WHERE id = $1").bind(id).execute(self.pool()).await?.rows_affected() > 0)
    }

    /// One call-out entry's school (`Some(None)` for the trust list; `None` if absent).
    pub async fn oncall_school(&self, id: i64) -> Result<Option<Option<String>>, StoreError> {
        Ok(sqlx::query_scalar::<_, Option<String>>("SELECT school FROM oncall WHERE id = $1").bind(id).fetch_optional(self.pool()).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::stores;

    #[tokio::test]
    async fn accounts_devices_keys_and_oncall_on_every_backend() {
        let now: Timestamp = "2026-11-24T10:00:00Z".parse().unwrap();
        for (s, _dir) in stores().await {
            s.upsert_school("oak", "Oak Primary", true).await.unwrap();
            s.upsert_school("oak", "Oak Primary School", true).await.unwrap();
            assert_eq!(s.schools().await.unwrap(), vec![School { id: "oak".into(), name: "Oak Primary School".into(), demo: true }]);
            let (dsl, totp) = s.add_account("DSL@oak.example", Role::Dsl, Some("oak"), "a long password", now).await.unwrap();
            assert!(totp.is_some(), "a DSL needs a second factor");
            assert_eq!(dsl.email, "dsl@oak.example");
            let (_, none) = s.add_account("t@oak.example", Role::Teacher, Some("oak"), "a long password", now).await.unwrap();
            assert!(none.is_none());
            assert!(s.add_account("dsl@oak.example", Role::Dsl, Some("oak"), "a long password", now).await.unwrap_err().to_string().contains("already exists"));
            assert!(s.add_account("x@oak.example", Role::Dsl, None, "a long password", now).await.unwrap_err().to_string().contains("--school"));
            assert!(s.add_account("y@oak.example", Role::Dsl, Some("elm"), "a long password", now).await.unwrap_err().to_string().contains("school list"));
            assert!(s.add_account("z@oak.example", Role::Dsl, Some("oak"), "short", now).await.is_err());
            let (_, token) = s.add_device("oak", "Library PC 3", now).await.unwrap();
            assert_eq!(s.device_by_token(&token).await.unwrap().unwrap().name, "Library PC 3");
            assert!(s.device_by_token("hvd_wrong").await.unwrap().is_none());
            let key = s.add_api_key("dsl@oak.example", now).await.unwrap();
            assert_eq!(s.account_by_api_key(&key, now).await.unwrap().unwrap().id, dsl.id);
            assert!(s.account_by_api_key("hvk_nope", now).await.unwrap().is_none());
            s.add_oncall(Some("oak"), "Head", Some("head@oak.example"), None, 2).await.unwrap();
            s.add_oncall(Some("oak"), "DSL", None, Some("http://127.0.0.1:9/sms"), 1).await.unwrap();
            s.add_oncall(None, "Trust lead", Some("lead@trust.example"), None, 1).await.unwrap();
            assert!(s.add_oncall(Some("oak"), "x", Some("a@b"), Some("http://x"), 1).await.is_err());
            let list = s.oncall(Some("oak")).await.unwrap();
            assert_eq!(list.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(), ["DSL", "Head"]);
            assert_eq!(s.oncall(None).await.unwrap().len(), 1);
            s.close().await;
        }
    }
}
