//! Changes staff make on top of the trust's base policy (kept in the
//! record, made in the web app or with `haven admin change`): allow or block
//! a site or a category for a school, group, class or person, from a time,
//! until a time. They become allowances and restrictions, so `decide` needs
//! no new step and the order stays: illegal content first, whatever a change
//! says.

use jiff::Timestamp;

use crate::Target;
use crate::model::{Allowance, EntryTable, PolicySet, Restriction, Scope, Verdict};
use crate::taxonomy::{Category, CategorySet};

/// Who a change is for, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Whom {
    /// Everyone at the school.
    School,
    /// A group (`secondary`).
    Group(String),
    /// A teaching group from the MIS (`10GH`).
    Class(String),
    /// One person, by login.
    User(String),
}

impl Whom {
    /// From the record's `scope` and `scope_id`.
    pub fn parse(scope: &str, id: Option<&str>) -> Result<Self, String> {
        let named = |what: &str| id.filter(|i| !i.trim().is_empty()).map(|i| i.trim().to_string()).ok_or(format!("a change for a {what} needs its name"));
        match scope {
            "school" => Ok(Self::School),
            "group" => named("group").map(Self::Group),
            "class" => named("class").map(Self::Class),
            "user" => named("user").map(Self::User),
            other => Err(format!("{other:?} is not school, group, class or user")),
        }
    }
}

/// What a change allows or blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Aim {
    /// A site or URL prefix, canonical (see [`site_entry`]).
    Site(String),
    /// A category.
    Category(Category),
}

impl Aim {
    /// From what staff wrote: a site, or a category id.
    pub fn parse(site: Option<&str>, category: Option<&str>) -> Result<Self, String> {
        match (site.map(str::trim).filter(|s| !s.is_empty()), category.map(str::trim).filter(|c| !c.is_empty())) {
            (Some(s), None) => site_entry(s).map(Self::Site),
            (None, Some(c)) => Category::from_id(c).map(Self::Category).ok_or(format!("{c:?} is not a category; `haven lists categories` lists them")),
            _ => Err("name either a site or a category (one of them)".into()),
        }
    }
}

/// One change, as the filters apply it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Its number in the record.
    pub id: i64,
    /// School id.
    pub school: String,
    /// Who it is for.
    pub whom: Whom,
    /// Allow or block.
    pub verdict: Verdict,
    /// What.
    pub aim: Aim,
    /// In force from.
    pub from: Timestamp,
    /// Lapses at.
    pub until: Option<Timestamp>,
    /// Why, and who asked and approved (shown by `haven check` and to staff).
    pub reason: String,
}

/// A site as staff write it (`https://www.example.com/games/`) in the form
/// entries are kept and matched (`example.com/games`).
pub fn site_entry(text: &str) -> Result<String, String> {
    let text = text.trim();
    match haven_url::CanonicalUrl::parse(text) {
        Ok(u) if haven_url::canonical_host(&u.host).is_ok() && !u.host.is_empty() => {
            let host = haven_url::strip_www(&u.host).to_string();
            let mut path = u.path.trim_end_matches('/').to_string();
            if let Some(q) = &u.query {
                path.push('?');
                path.push_str(q);
            }
            Ok(format!("{host}{path}"))
        }
        _ => Err(format!("{text:?} is not a site: write a domain (example.com) or a URL prefix (example.com/games)")),
    }
}

impl PolicySet {
    /// The scope a change names at `school`, or why it names nothing known.
    pub fn scope_of(&self, school: &str, whom: &Whom) -> Result<Scope, String> {
        let s = self.school(school).ok_or(format!("no school {school:?} in the config"))?;
        match whom {
            Whom::School => Ok(Scope::School(s)),
            Whom::Group(g) => self.group(g).map(|g| Scope::Group(g, Some(s))).ok_or(format!("no group {g:?} in the config")),
            Whom::Class(c) => self.class(s, c).map(Scope::Class).ok_or(format!("no class {c:?} at {school} in the MIS import (class_column)")),
            Whom::User(u) => self.user(u).map(Scope::User).ok_or(format!("no user {u:?} in the config or the MIS import")),
        }
    }

    /// Puts a change in force on top of the base policy. Illegal content can
    /// never be allowed: such a change is refused here, and `decide` would
    /// block it first anyway.
    pub fn add_change(&mut self, c: &Change) -> Result<(), String> {
        let scope = self.scope_of(&c.school, &c.whom)?;
        let id = format!("change-{}", c.id);
        let mut entries = EntryTable::default();
        let mut categories = CategorySet::EMPTY;
        match &c.aim {
            Aim::Site(s) => {
                entries.insert(s, c.verdict);
            }
            Aim::Category(cat) if cat.is_illegal() && c.verdict == Verdict::Allow => {
                return Err(format!("{} is illegal content and can never be allowed", cat.id()));
            }
            Aim::Category(cat) => categories = [*cat].into_iter().collect(),
        }
        match c.verdict {
            Verdict::Allow => self.allowances.push(Allowance {
                id,
                scope,
                entries,
                categories,
                from: Some(c.from),
                until: c.until.unwrap_or(Timestamp::MAX),
                reason: c.reason.clone(),
            }),
            Verdict::Block => self.restrictions.push(Restriction {
                id,
                scope,
                block: Target::Categories(categories),
                entries,
                from: Some(c.from),
                until: c.until,
                reason: c.reason.clone(),
            }),
        }
        Ok(())
    }
}
