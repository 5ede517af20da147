//! Notices for IT: what the filter's own upkeep found wrong (a filtering
//! check that failed, a list feed that could not be refreshed). They wait on
//! the IT technician's filtering page until someone marks them seen, so a
//! failure is never only a line in a log nobody reads.

use jiff::Timestamp;
use serde::Serialize;
use sqlx::Row;

use crate::{Store, StoreError, ms, ts};

/// The kinds of notice.
pub const KINDS: [&str; 2] = ["filtering-check", "feed"];

/// A notice as kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ItNotice {
    /// Id.
    pub id: i64,
    /// The school it is about; none for the whole trust (a list feed).
    pub school: Option<String>,
    /// `filtering-check` or `feed`.
    pub kind: String,
    /// What went wrong and what to do, in IT's words.
    pub message: String,
    /// RFC 3339.
    pub raised_at: String,
    /// Who marked it seen, and when (RFC 3339).
    pub seen: Option<(String, String)>,
}

impl Store {
    /// Raises a notice for IT; returns its id. Also written to the audit log.
    pub async fn add_it_notice(&self, school: Option<&str>, kind: &str, message: &str, at: Timestamp) -> Result<i64, StoreError> {
        if !KINDS.contains(&kind) {
            return Err(StoreError::Invalid(format!("IT notice kind {kind:?} must be one of {}", KINDS.join(", "))));
        }
        let id: i64 = sqlx::query_scalar("INSERT INTO it_notices (school, kind, message, raised_at) VALUES ($1, $2, $3, $4) RETURNING id")
            .bind(school)
            .bind(kind)
            .bind(message)
            .bind(ms(at))
            .fetch_one(&self.pool)
            .await?;
        self.audit(at, "haven", "it-notice", &format!("it-notice:{id}"), message).await?;
        tracing::warn!(kind, school = school.unwrap_or("trust"), "IT notice raised: {message}");
        Ok(id)
    }

    /// Notices, newest first: for one school (and the trust's) or every
    /// school; `unseen_only` leaves out those marked seen.
    pub async fn it_notices(&self, school: Option<&str>, unseen_only: bool, limit: i64) -> Result<Vec<ItNotice>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, school, kind, message, raised_at, seen_by, seen_at FROM it_notices \
             WHERE ($1 IS NULL OR school IS NULL OR school = $1) AND ($2 = 0 OR seen_at IS NULL) ORDER BY id DESC LIMIT $3",
        )
        .bind(school)
        .bind(i64::from(unseen_only))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let seen_by: Option<String> = r.get("seen_by");
                let seen_at: Option<i64> = r.get("seen_at");
                ItNotice {
                    id: r.get("id"),
                    school: r.get("school"),
                    kind: r.get("kind"),
                    message: r.get("message"),
                    raised_at: ts(r.get("raised_at")).to_string(),
                    seen: seen_by.zip(seen_at).map(|(b, a)| (b, ts(a).to_string())),
                }
            })
            .collect())
    }

    /// Marks a notice seen by `who`.
    pub async fn see_it_notice(&self, id: i64, who: &str, at: Timestamp) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE it_notices SET seen_by = $1, seen_at = $2 WHERE id = $3 AND seen_at IS NULL")
            .bind(who)
            .bind(ms(at))
            .bind(id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound { what: "unseen IT notice", name: id.to_string(), hint: "; it may have been marked seen already" });
        }
        self.audit(at, who, "it-notice-seen", &format!("it-notice:{id}"), "").await
    }
}
