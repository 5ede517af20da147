//! What devices tell about themselves and what pupils accept on them: each
//! device's last contact (the extension's version, its offline queue), the
//! acceptable-use text accepted per version, and the key that signs the
//! policy devices obey.

use base64::Engine as _;
use jiff::Timestamp;
use sqlx::Row;

use crate::seal::Sealer;
use crate::{Store, StoreError, ms, ts};

/// What a device said when it last made contact.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contact {
    /// The agent and its version (`haven-extension/0.1.0`).
    pub agent: Option<String>,
    /// Events waiting in its offline queue.
    pub queue_depth: Option<i64>,
    /// Events it has had to drop since it was installed (queue full).
    pub dropped: Option<i64>,
}

/// A pupil's acceptance of one version of the acceptable-use text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acceptance {
    /// The school.
    pub school: String,
    /// Who accepted.
    pub person: String,
    /// Which version of the text.
    pub version: String,
    /// When.
    pub accepted_at: Timestamp,
    /// On which device, if through one.
    pub device: Option<i64>,
}

const KEY_SEAL: &str = "signing-key";

impl Store {
    /// Notes that `device` made contact at `at`, with what it said of itself.
    pub async fn device_contact(&self, device: i64, at: Timestamp, contact: &Contact) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE devices SET last_seen_at = $2, agent = COALESCE($3, agent), queue_depth = COALESCE($4, queue_depth), \
             dropped = COALESCE($5, dropped) WHERE id = $1",
        )
        .bind(device)
        .bind(ms(at))
        .bind(contact.agent.as_deref())
        .bind(contact.queue_depth)
        .bind(contact.dropped)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Records that `person` accepted `version` of the school's
    /// acceptable-use text; false when they had already.
    pub async fn record_acceptance(&self, school: &str, person: &str, version: &str, device: Option<i64>, at: Timestamp) -> Result<bool, StoreError> {
        self.require_school(school).await?;
        let done = sqlx::query(
            "INSERT INTO acceptances (school, person, version, accepted_at, device) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (school, person, version) DO NOTHING",
        )
        .bind(school)
        .bind(person.to_lowercase())
        .bind(version)
        .bind(ms(at))
        .bind(device)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Whether `person` has accepted `version` at `school`.
    pub async fn has_accepted(&self, school: &str, person: &str, version: &str) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM acceptances WHERE school = $1 AND person = $2 AND version = $3")
            .bind(school)
            .bind(person.to_lowercase())
            .bind(version)
            .fetch_one(self.pool())
            .await?;
        Ok(n > 0)
    }

    /// Acceptances, newest first (one school's, or every school's).
    pub async fn acceptances(&self, school: Option<&str>, limit: i64) -> Result<Vec<Acceptance>, StoreError> {
        let rows = sqlx::query(
            "SELECT school, person, version, accepted_at, device FROM acceptances WHERE ($1 IS NULL OR school = $1) \
             ORDER BY accepted_at DESC, id DESC LIMIT $2",
        )
        .bind(school)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Acceptance {
                    school: r.try_get("school")?,
                    person: r.try_get("person")?,
                    version: r.try_get("version")?,
                    accepted_at: ts(r.try_get("accepted_at")?),
                    device: r.try_get("device")?,
                })
            })
            .collect()
    }

    /// The signing key called `name`: the one kept, else `fresh`, kept now
    /// (so every server of a trust signs with the same key). Sealed at rest
    /// when the record has a key.
    pub async fn signing_key(&self, name: &str, fresh: &[u8], now: Timestamp) -> Result<Vec<u8>, StoreError> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let plain = b64.encode(fresh);
        let stored = match self.sealer() {
            Ok(s) => s.seal_text(&plain, KEY_SEAL),
            Err(_) => plain,
        };
        sqlx::query("INSERT INTO signing_keys (name, secret, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(stored)
            .bind(ms(now))
            .execute(self.pool())
            .await?;
        let kept: String = sqlx::query_scalar("SELECT secret FROM signing_keys WHERE name = $1").bind(name).fetch_one(self.pool()).await?;
        let text = if Sealer::is_sealed_text(&kept) { self.sealer()?.open_text(&kept, KEY_SEAL)? } else { kept };
        b64.decode(text.trim())
            .map_err(|e| StoreError::Invalid(format!("the signing key {name} in the record is damaged ({e}); delete its row to make a new one")))
    }

    /// Sets (or with `None` clears) the pupil a device belongs to.
    pub async fn set_device_owner(&self, device: i64, owner: Option<&str>) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE devices SET owner = $2 WHERE id = $1").bind(device).bind(owner).execute(self.pool()).await?;
        Ok(done.rows_affected() == 1)
    }

    /// The pupil a device belongs to, if set.
    pub async fn device_owner(&self, device: i64) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar::<_, Option<String>>("SELECT owner FROM devices WHERE id = $1").bind(device).fetch_optional(self.pool()).await?.flatten())
    }

    /// Keeps a screenshot (by SHA-256) with an alert that has none yet.
    pub async fn attach_screenshot(&self, alert: i64, sha: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE alerts SET screenshot = $2 WHERE id = $1 AND screenshot IS NULL").bind(alert).bind(sha).execute(self.pool()).await?;
        Ok(done.rows_affected() == 1)
    }
}
