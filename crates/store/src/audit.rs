//! The append-only audit log: every read and write of a safeguarding record,
//! by whom. Nothing in Haven updates or deletes a row here.

use jiff::Timestamp;
use sqlx::Row;

use crate::{Store, StoreError, ms, ts};

/// One audit entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// When.
    pub at: Timestamp,
    /// Who (`account:12`, `device:3`, `admin-cli`).
    pub actor: String,
    /// What (`alert.read`, `alert.list`, `alert.create`, `account.add`).
    pub action: String,
    /// On what (`alert:42`).
    pub object: String,
    /// Anything else worth keeping (never pupil text or secrets).
    pub detail: String,
}

/// Appends an entry on `c` (a pooled connection or a transaction).
pub(crate) async fn append(c: &mut sqlx::AnyConnection, at: Timestamp, actor: &str, action: &str, object: &str, detail: &str) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO audit (at, actor, action, object, detail) VALUES ($1, $2, $3, $4, $5)")
        .bind(ms(at))
        .bind(actor)
        .bind(action)
        .bind(object)
        .bind(detail)
        .execute(c)
        .await?;
    Ok(())
}

impl Store {
    /// Appends an entry.
    pub async fn audit(&self, at: Timestamp, actor: &str, action: &str, object: &str, detail: &str) -> Result<(), StoreError> {
        let mut c = self.pool().acquire().await?;
        append(&mut c, at, actor, action, object, detail).await
    }

    /// Entries about `object` (or every entry, when `None`), newest first.
    pub async fn audit_search(&self, object: Option<&str>, actor: Option<&str>, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT at, actor, action, object, detail FROM audit WHERE ($1 IS NULL OR object = $1) AND ($2 IS NULL OR actor = $2) ORDER BY at DESC, id DESC LIMIT $3",
        )
        .bind(object)
        .bind(actor)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    at: ts(r.try_get("at")?),
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    object: r.try_get("object")?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect()
    }
}
