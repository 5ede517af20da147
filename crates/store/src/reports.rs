//! Reports from people: a pupil's "I saw something worrying" or "I think this
//! should be allowed" on the block page, and the public "report a concern"
//! page. The reporter's words are kept apart from their contact details, which
//! are never classified and never shown outside the record.

use jiff::Timestamp;
use serde::Serialize;
use sqlx::{AnyConnection, Row};

use crate::{Store, StoreError, ms, ts};

/// The kinds of report.
pub const KINDS: [&str; 3] = ["worry", "review", "public"];

/// A report to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReport {
    /// `worry` (block page: saw something worrying), `review` (block page:
    /// should be allowed) or `public` (the report-a-concern page).
    pub kind: String,
    /// The school, when known.
    pub school: Option<String>,
    /// The pupil who pressed the button, or who the report is about.
    pub person: Option<String>,
    /// When it was sent.
    pub at: Timestamp,
    /// The block page's reference.
    pub reference: Option<String>,
    /// What was blocked.
    pub url: Option<String>,
    /// The blocking categories' ids.
    pub categories: Vec<String>,
    /// The rule that blocked it.
    pub rule: Option<String>,
    /// What the reporter wrote.
    pub words: String,
    /// How to reach the reporter (public reports), kept apart from `words`.
    pub contact: Option<String>,
}

/// A report as kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Id.
    pub id: i64,
    /// `worry`, `review` or `public`.
    pub kind: String,
    /// School id.
    pub school: Option<String>,
    /// The pupil.
    pub person: Option<String>,
    /// RFC 3339.
    pub at: String,
    /// Block page reference.
    pub reference: Option<String>,
    /// What was blocked.
    pub url: Option<String>,
    /// Blocking categories.
    pub categories: Vec<String>,
    /// Blocking rule.
    pub rule: Option<String>,
    /// What the reporter wrote.
    pub words: String,
    /// The alert it raised, if any.
    pub alert: Option<i64>,
    /// `open` until IT or the DSL deals with it.
    pub status: String,
}

pub(crate) async fn insert_on(c: &mut AnyConnection, r: &NewReport) -> Result<i64, StoreError> {
    if !KINDS.contains(&r.kind.as_str()) {
        return Err(StoreError::Invalid(format!("report kind {:?} must be one of {}", r.kind, KINDS.join(", "))));
    }
    Ok(sqlx::query_scalar(
        "INSERT INTO reports (kind, school, person, at, reference, url, categories, rule, words, contact, status) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'open') RETURNING id",
    )
    .bind(&r.kind)
    .bind(&r.school)
    .bind(&r.person)
    .bind(ms(r.at))
    .bind(&r.reference)
    .bind(&r.url)
    .bind(serde_json::to_string(&r.categories).unwrap_or_else(|_| "[]".into()))
    .bind(&r.rule)
    .bind(&r.words)
    .bind(&r.contact)
    .fetch_one(c)
    .await?)
}

impl Store {
    /// Keeps a report on its own (one transaction).
    pub async fn insert_report(&self, r: &NewReport) -> Result<i64, StoreError> {
        let mut tx = self.begin().await?;
        let id = tx.insert_report(r).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Reports of one kind (or all), newest first. Contact details are not returned.
    pub async fn reports(&self, kind: Option<&str>, limit: i64) -> Result<Vec<Report>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, kind, school, person, at, reference, url, categories, rule, words, alert, status FROM reports \
             WHERE ($1 IS NULL OR kind = $1) ORDER BY at DESC, id DESC LIMIT $2",
        )
        .bind(kind)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let categories: String = r.try_get("categories")?;
                Ok(Report {
                    id: r.try_get("id")?,
                    kind: r.try_get("kind")?,
                    school: r.try_get("school")?,
                    person: r.try_get("person")?,
                    at: ts(r.try_get("at")?).to_string(),
                    reference: r.try_get("reference")?,
                    url: r.try_get("url")?,
                    categories: serde_json::from_str(&categories).unwrap_or_default(),
                    rule: r.try_get("rule")?,
                    words: r.try_get("words")?,
                    alert: r.try_get("alert")?,
                    status: r.try_get("status")?,
                })
            })
            .collect()
    }

    /// The reporter's contact details for a report (only for the alert page).
    pub async fn report_contact(&self, alert: i64) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar::<_, Option<String>>("SELECT contact FROM reports WHERE alert = $1 ORDER BY id LIMIT 1")
            .bind(alert)
            .fetch_optional(self.pool())
            .await?
            .flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::stores;

    #[tokio::test]
    async fn reports_are_kept_with_contact_details_apart() {
        let now: Timestamp = "2026-11-24T10:00:00Z".parse().unwrap();
        for (s, _dir) in stores().await {
            let r = NewReport {
                kind: "public".into(),
                school: None,
                person: None,
                at: now,
                reference: None,
                url: None,
                categories: vec![],
                rule: None,
                words: "someone is threatening my son".into(),
                contact: Some("07700 900123".into()),
            };
            let id = s.insert_report(&r).await.unwrap();
            let review = NewReport { kind: "review".into(), reference: Some("HVN-1".into()), categories: vec!["games".into()], contact: None, ..r.clone() };
            s.insert_report(&review).await.unwrap();
            let all = s.reports(None, 10).await.unwrap();
            assert_eq!(all.len(), 2);
            let public = s.reports(Some("public"), 10).await.unwrap();
            assert_eq!((public[0].id, public[0].words.as_str()), (id, "someone is threatening my son"));
            assert_eq!(s.reports(Some("review"), 10).await.unwrap()[0].categories, ["games"]);
            assert!(s.insert_report(&NewReport { kind: "gossip".into(), ..r }).await.unwrap_err().to_string().contains("worry, review, public"));
            s.close().await;
        }
    }
}
