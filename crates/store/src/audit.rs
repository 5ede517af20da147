//! The append-only audit log: every read and write of a safeguarding record,
//! by whom. Nothing in Haven updates or deletes a row here, except the
//! retention job (`crate::retention`), which deletes rows past the audit period.

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
    /// Who `actor` is when it is an account (`account:N` or an e-mail):
    /// "Sam Patel (sam@…)", or the e-mail alone, so people read a name
    /// rather than a number.
    pub actor_name: Option<String>,
}

/// Appends an entry on `c` (a pooled connection or a transaction).
///
/// The row's `school` is the school whose DSL may read it: the object's
/// school for an alert (only a pupil's: one about staff or the head stays
/// the trust's), an incident (not one concerning the head) or a person
/// (`person:school/login`); anything else is the trust's alone (NULL).
pub(crate) async fn append(c: &mut sqlx::AnyConnection, at: Timestamp, actor: &str, action: &str, object: &str, detail: &str) -> Result<(), StoreError> {
    let (kind, rest) = object.split_once(':').unwrap_or((object, ""));
    let id = rest.parse::<i64>().ok();
    let from = match (kind, id) {
        ("alert", Some(_)) => "(SELECT school FROM alerts WHERE id = $6 AND audience = 'pupil')",
        ("incident", Some(_)) => "(SELECT school FROM incidents WHERE id = $6 AND about_head = 0)",
        _ => "$6",
    };
    let q = sqlx::query(sqlx::AssertSqlSafe(format!("INSERT INTO audit (at, actor, action, object, detail, school) VALUES ($1, $2, $3, $4, $5, {from})")))
        .bind(ms(at))
        .bind(actor)
        .bind(action)
        .bind(object)
        .bind(detail);
    let q = match (kind, id) {
        ("alert" | "incident", Some(id)) => q.bind(id),
        ("person", _) => q.bind(rest.split_once('/').map(|(school, _)| school).filter(|s| *s != "*")),
        _ => q.bind(None::<&str>),
    };
    q.execute(c).await?;
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
        self.audit_search_in(None, object, actor, limit).await
    }

    /// As [`audit_search`](Self::audit_search), within one school's rows
    /// when `school` is given (what a school's DSL reads: see [`append`]).
    pub async fn audit_search_in(&self, school: Option<&str>, object: Option<&str>, actor: Option<&str>, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT at, actor, action, object, detail FROM audit WHERE ($1 IS NULL OR object = $1) AND ($2 IS NULL OR actor = $2) AND ($3 IS NULL OR school = $3) \
             ORDER BY at DESC, id DESC LIMIT $4",
        )
        .bind(object)
        .bind(actor)
        .bind(school)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        // Names for the accounts among the actors, in one read.
        let actors = rows.iter().map(|r| r.try_get::<String, _>("actor")).collect::<Result<Vec<_>, _>>()?;
        let names = self.actor_labels(&actors).await?;
        rows.iter()
            .map(|r| {
                let actor: String = r.try_get("actor")?;
                Ok(AuditEntry {
                    at: ts(r.try_get("at")?),
                    actor_name: names.get(&actor).cloned(),
                    actor,
                    action: r.try_get("action")?,
                    object: r.try_get("object")?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect()
    }
}
