//! The trust's own monitoring phrases and exclusions, kept in the record so
//! that safeguarding leads edit them in the browser, each change with a
//! reason; removing one keeps it, with who removed it, when and why.

use jiff::Timestamp;
use serde::Serialize;
use sqlx::Row;

use crate::{Store, StoreError, ms, ts};

/// One phrase (with a category and weight) or exclusion (with neither).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LexiconEntry {
    /// Its id.
    pub id: i64,
    /// The lexicon table (`bullying`, `vulnerable`, …); `None` for an exclusion.
    pub category: Option<String>,
    /// The phrase as the person typed it.
    pub phrase: String,
    /// 1 (mild) to 5 (threat to life); `None` for an exclusion.
    pub weight: Option<u8>,
    /// Why it was added.
    pub reason: String,
    /// Who added it (their e-mail).
    pub added_by: String,
    /// When.
    pub added_at: Timestamp,
    /// Who removed it, when and why, if it no longer applies.
    pub removed: Option<Removal>,
}

/// The end of an entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Removal {
    /// Who removed it.
    pub by: String,
    /// When.
    pub at: Timestamp,
    /// Why.
    pub reason: String,
}

/// What a new entry is.
#[derive(Debug, Clone, Copy)]
pub enum NewEntry<'a> {
    /// A phrase to look for, in a lexicon table, with a weight 1–5.
    Phrase {
        /// The lexicon table.
        category: &'a str,
        /// The weight.
        weight: u8,
    },
    /// A phrase that is never evidence.
    Exclusion,
}

fn reason_given(reason: &str) -> Result<&str, StoreError> {
    let r = reason.trim();
    if r.is_empty() {
        return Err(StoreError::Invalid("give a reason: the audit log and the next DSL need to know why".into()));
    }
    if r.chars().count() > 500 {
        return Err(StoreError::Invalid("keep the reason to 500 characters; put the detail in the incident or a note".into()));
    }
    Ok(r)
}

impl Store {
    /// Adds a phrase or exclusion; returns its id.
    pub async fn add_lexicon_entry(&self, entry: NewEntry<'_>, phrase: &str, reason: &str, by: &str, at: Timestamp) -> Result<i64, StoreError> {
        let reason = reason_given(reason)?;
        let phrase = phrase.trim();
        if phrase.is_empty() || phrase.len() > 200 {
            return Err(StoreError::Invalid("the phrase must be 1–200 characters".into()));
        }
        let (category, weight) = match entry {
            NewEntry::Phrase { weight, .. } if !(1..=5).contains(&weight) => {
                return Err(StoreError::Invalid(format!("weight {weight}: weights run from 1 (mild) to 5 (threat to life)")));
            }
            NewEntry::Phrase { category, weight } => (Some(category), Some(i64::from(weight))),
            NewEntry::Exclusion => (None, None),
        };
        Ok(sqlx::query_scalar(
            "INSERT INTO lexicon_entries (category, phrase, weight, reason, added_by, added_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(category)
        .bind(phrase)
        .bind(weight)
        .bind(reason)
        .bind(by)
        .bind(ms(at))
        .fetch_one(self.pool())
        .await?)
    }

    /// Ends an entry that is in force; returns whether there was one.
    pub async fn remove_lexicon_entry(&self, id: i64, reason: &str, by: &str, at: Timestamp) -> Result<bool, StoreError> {
        let reason = reason_given(reason)?;
        let done = sqlx::query("UPDATE lexicon_entries SET removed_by = $1, removed_at = $2, removed_reason = $3 WHERE id = $4 AND removed_at IS NULL")
            .bind(by)
            .bind(ms(at))
            .bind(reason)
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Every entry, newest first, those removed included.
    pub async fn lexicon_entries(&self) -> Result<Vec<LexiconEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, category, phrase, weight, reason, added_by, added_at, removed_by, removed_at, removed_reason FROM lexicon_entries ORDER BY id DESC",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let removed_at: Option<i64> = r.try_get("removed_at")?;
                let weight: Option<i64> = r.try_get("weight")?;
                Ok(LexiconEntry {
                    id: r.try_get("id")?,
                    category: r.try_get("category")?,
                    phrase: r.try_get("phrase")?,
                    weight: weight.and_then(|w| u8::try_from(w).ok()),
                    reason: r.try_get("reason")?,
                    added_by: r.try_get("added_by")?,
                    added_at: ts(r.try_get("added_at")?),
                    removed: match removed_at {
                        Some(at) => Some(Removal { by: r.try_get("removed_by")?, at: ts(at), reason: r.try_get("removed_reason")? }),
                        None => None,
                    },
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::stores;

    #[tokio::test]
    async fn entries_are_added_and_ended_with_reasons_on_every_backend() {
        let now: Timestamp = "2026-11-24T10:00:00Z".parse().unwrap();
        for (s, _dir) in stores().await {
            let bully = NewEntry::Phrase { category: "bullying", weight: 3 };
            let a = s.add_lexicon_entry(bully, "zorblax shed", "Year 9 slang for a fight after school", "account:1", now).await.unwrap();
            let b = s.add_lexicon_entry(NewEntry::Exclusion, "Dyke Road", "the road our school is on", "account:1", now).await.unwrap();
            assert!(s.add_lexicon_entry(bully, "x y z", "  ", "account:1", now).await.unwrap_err().to_string().contains("give a reason"));
            let heavy = NewEntry::Phrase { category: "bullying", weight: 9 };
            assert!(s.add_lexicon_entry(heavy, "x y z", "why", "account:1", now).await.unwrap_err().to_string().contains("1 (mild) to 5"));
            assert!(s.add_lexicon_entry(bully, " ", "why", "account:1", now).await.is_err());
            assert!(s.add_lexicon_entry(bully, "x y z", &"why ".repeat(200), "account:1", now).await.unwrap_err().to_string().contains("500 characters"));
            let all = s.lexicon_entries().await.unwrap();
            assert_eq!(all.iter().map(|e| e.id).collect::<Vec<_>>(), [b, a], "newest first");
            assert_eq!((all[1].category.as_deref(), all[1].weight), (Some("bullying"), Some(3)));
            assert_eq!((all[0].category.as_deref(), all[0].weight), (None, None));
            assert!(s.remove_lexicon_entry(a, "", "account:2", now).await.is_err(), "a removal needs a reason too");
            assert!(s.remove_lexicon_entry(a, "the slang has changed", "account:2", now).await.unwrap());
            assert!(!s.remove_lexicon_entry(a, "again", "account:2", now).await.unwrap(), "already removed");
            let ended = s.lexicon_entries().await.unwrap().into_iter().find(|e| e.id == a).unwrap();
            assert_eq!(ended.removed, Some(Removal { by: "account:2".into(), at: now, reason: "the slang has changed".into() }));
            s.close().await;
        }
    }
}
