//! The trust's own monitoring phrases, exclusions and example sentences, kept
//! in the record so that safeguarding leads edit them in the browser, each
//! change with a reason; removing one keeps it, with who removed it, when
//! and why.

use jiff::Timestamp;
use serde::Serialize;
use sqlx::Row;

use crate::{Store, StoreError, ms, ts};

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// A phrase to look for, with a category and weight.
    Phrase,
    /// A phrase that is never evidence.
    Exclude,
    /// An example sentence: "treat messages like this as …".
    Example,
}

impl EntryKind {
    /// As stored: `phrase`, `exclude`, `example`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Phrase => "phrase",
            Self::Exclude => "exclude",
            Self::Example => "example",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Self::Phrase, Self::Exclude, Self::Example].into_iter().find(|k| k.as_str() == s)
    }
}

/// One phrase (with a category and weight), exclusion (with neither), or
/// example sentence (with a category and level, or neither: not a concern).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LexiconEntry {
    /// Its id.
    pub id: i64,
    /// Phrase, exclusion or example.
    pub kind: EntryKind,
    /// The lexicon table (`bullying`, `vulnerable`, …); `None` for an
    /// exclusion, and for an example of what is not a concern.
    pub category: Option<String>,
    /// The phrase, or the example sentence, as the person typed it.
    pub phrase: String,
    /// 1 (mild) to 5 (threat to life); `None` for an exclusion or an example.
    pub weight: Option<u8>,
    /// An example's level, 1–5; `None` for phrases, exclusions and examples
    /// of what is not a concern.
    pub level: Option<u8>,
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
    /// An example sentence: messages like it are `category` at `level`
    /// (1–5), or, with no category, not a concern.
    Example {
        /// The lexicon table, or `None`: not a concern.
        category: Option<&'a str>,
        /// The level 1–5 (ignored when not a concern).
        level: u8,
    },
}

impl NewEntry<'_> {
    /// Phrase, exclusion or example.
    pub fn kind(&self) -> EntryKind {
        match self {
            Self::Phrase { .. } => EntryKind::Phrase,
            Self::Exclusion => EntryKind::Exclude,
            Self::Example { .. } => EntryKind::Example,
        }
    }
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
    /// Adds a phrase, exclusion or example sentence; returns its id.
    pub async fn add_lexicon_entry(&self, entry: NewEntry<'_>, phrase: &str, reason: &str, by: &str, at: Timestamp) -> Result<i64, StoreError> {
        let reason = reason_given(reason)?;
        let phrase = phrase.trim();
        if let NewEntry::Example { .. } = entry {
            if phrase.is_empty() || phrase.chars().count() > 500 {
                return Err(StoreError::Invalid("the example sentence must be 1–500 characters".into()));
            }
        } else if phrase.is_empty() || phrase.len() > 200 {
            return Err(StoreError::Invalid("the phrase must be 1–200 characters".into()));
        }
        let (category, weight, level) = match entry {
            NewEntry::Phrase { weight, .. } if !(1..=5).contains(&weight) => {
                return Err(StoreError::Invalid(format!("weight {weight}: weights run from 1 (mild) to 5 (threat to life)")));
            }
            NewEntry::Phrase { category, weight } => (Some(category), Some(i64::from(weight)), None),
            NewEntry::Exclusion => (None, None, None),
            NewEntry::Example { category: Some(_), level } if !(1..=5).contains(&level) => {
                return Err(StoreError::Invalid(format!("level {level}: levels run from 1 (logged only) to 5 (threat to life)")));
            }
            NewEntry::Example { category: Some(c), level } => (Some(c), None, Some(i64::from(level))),
            NewEntry::Example { category: None, .. } => (None, None, None),
        };
        Ok(sqlx::query_scalar(
            "INSERT INTO lexicon_entries (kind, category, phrase, weight, level, reason, added_by, added_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(entry.kind().as_str())
        .bind(category)
        .bind(phrase)
        .bind(weight)
        .bind(level)
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
            "SELECT id, kind, category, phrase, weight, level, reason, added_by, added_at, removed_by, removed_at, removed_reason FROM lexicon_entries ORDER BY id DESC",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let removed_at: Option<i64> = r.try_get("removed_at")?;
                let weight: Option<i64> = r.try_get("weight")?;
                let level: Option<i64> = r.try_get("level")?;
                let kind: String = r.try_get("kind")?;
                Ok(LexiconEntry {
                    id: r.try_get("id")?,
                    kind: EntryKind::parse(&kind).ok_or_else(|| StoreError::Invalid(format!("lexicon entry of unknown kind {kind:?}")))?,
                    category: r.try_get("category")?,
                    phrase: r.try_get("phrase")?,
                    weight: weight.and_then(|w| u8::try_from(w).ok()),
                    level: level.and_then(|l| u8::try_from(l).ok()),
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
            assert_eq!((ended.kind, all[0].kind), (EntryKind::Phrase, EntryKind::Exclude));
            s.close().await;
        }
    }

    #[tokio::test]
    async fn examples_are_kept_with_their_level_or_as_no_concern_on_every_backend() {
        let now: Timestamp = "2026-11-24T10:00:00Z".parse().unwrap();
        for (s, _dir) in stores().await {
            let plan = NewEntry::Example { category: Some("vulnerable"), level: 5 };
            let text = "saved up my tablets for friday, this is goodbye";
            let a = s.add_lexicon_entry(plan, text, "a Year 10 disclosure the rules missed", "dsl@school", now).await.unwrap();
            let fine = NewEntry::Example { category: None, level: 0 };
            let b = s.add_lexicon_entry(fine, "we killed it in the dance show, dead on stage", "drama banter", "dsl@school", now).await.unwrap();
            let too_high = NewEntry::Example { category: Some("vulnerable"), level: 6 };
            assert!(s.add_lexicon_entry(too_high, text, "why", "dsl@school", now).await.unwrap_err().to_string().contains("levels run from 1"));
            assert!(s.add_lexicon_entry(plan, text, " ", "dsl@school", now).await.unwrap_err().to_string().contains("give a reason"));
            assert!(s.add_lexicon_entry(plan, &"x".repeat(501), "why", "dsl@school", now).await.unwrap_err().to_string().contains("1–500"));
            let long = "a sentence well over two hundred characters, ".repeat(6);
            assert!(s.add_lexicon_entry(plan, &long, "longer than a phrase may be", "dsl@school", now).await.is_ok());
            let all = s.lexicon_entries().await.unwrap();
            let get = |id| all.iter().find(|e| e.id == id).unwrap();
            assert_eq!((get(a).kind, get(a).category.as_deref(), get(a).level, get(a).weight), (EntryKind::Example, Some("vulnerable"), Some(5), None));
            assert_eq!((get(b).kind, get(b).category.as_deref(), get(b).level), (EntryKind::Example, None, None));
            assert_eq!(get(a).phrase, text);
            assert!(s.remove_lexicon_entry(b, "the show is over", "dsl@school", now).await.unwrap());
            let all = s.lexicon_entries().await.unwrap();
            assert_eq!(all.iter().find(|e| e.id == b).unwrap().removed.as_ref().map(|r| r.reason.as_str()), Some("the show is over"));
            s.close().await;
        }
    }
}
