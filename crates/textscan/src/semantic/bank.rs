//! What the semantic stage knows, written down: banks of example statements
//! per kind of concern (`semantic/concerns.toml`) and of the everyday
//! look-alikes that must not alert (`semantic/lookalikes.toml`), each facet
//! with the phrase a DSL is shown ("close to: …") and its sources.

use serde::Deserialize;

use crate::concern::Concern;

/// Why a bank could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BankError {
    /// Not valid TOML, or a field is missing.
    #[error("semantic bank: {0}")]
    Toml(#[from] toml::de::Error),
    /// A category name that is not one of the eight.
    #[error("semantic bank: facet {facet} names an unknown category {category:?} (use a name such as \"Vulnerable person\")")]
    Category { facet: String, category: String },
}

#[derive(Deserialize)]
struct File {
    kind: Vec<RawFacet>,
}

#[derive(Deserialize)]
struct RawFacet {
    id: String,
    kind: String,
    concern: String,
    #[serde(default)]
    also: Vec<String>,
    level: u8,
    close_to: String,
    examples: Vec<String>,
}

/// One facet of a kind: "gathering the means" of a suicide plan.
#[derive(Debug, Clone)]
pub struct Facet {
    /// The facet's id ("suicide-means").
    pub id: String,
    /// The kind it belongs to ("suicide-plan"), a class of the head.
    pub kind: String,
    /// Its category of concern; `None` for a look-alike.
    pub concern: Option<Concern>,
    /// Further categories it also is (sextortion is also a vulnerable child).
    pub also: Vec<Concern>,
    /// The level a DSL gives it (0 for a look-alike).
    pub level: u8,
    /// What a DSL is shown it was close to.
    pub close_to: String,
    /// The example statements.
    pub examples: Vec<String>,
}

/// Every facet of both banks.
#[derive(Debug, Clone)]
pub struct Bank {
    /// The facets, concerns first.
    pub facets: Vec<Facet>,
}

const CONCERNS: &str = include_str!("../../semantic/concerns.toml");
const LOOKALIKES: &str = include_str!("../../semantic/lookalikes.toml");

impl Bank {
    /// The banks shipped with Haven.
    pub fn shipped() -> Self {
        Self::parse(&[CONCERNS, LOOKALIKES]).expect("shipped banks parse (tested)")
    }

    /// Reads bank files.
    pub fn parse(files: &[&str]) -> Result<Self, BankError> {
        let mut facets = Vec::new();
        for text in files {
            let f: File = toml::from_str(text)?;
            for r in f.kind {
                let parse = |c: &str| Concern::parse(c).ok_or_else(|| BankError::Category { facet: r.id.clone(), category: c.to_string() });
                let concern = if r.concern.is_empty() { None } else { Some(parse(&r.concern)?) };
                let also = r.also.iter().map(|c| parse(c)).collect::<Result<Vec<_>, _>>()?;
                facets.push(Facet { id: r.id, kind: r.kind, concern, also, level: r.level.min(5), close_to: r.close_to, examples: r.examples });
            }
        }
        Ok(Self { facets })
    }

    /// The kinds, in a fixed order: the head's classes (with "other" last).
    pub fn kinds(&self) -> Vec<String> {
        let mut k: Vec<String> = self.facets.iter().map(|f| f.kind.clone()).collect();
        k.sort();
        k.dedup();
        k.push(OTHER.to_string());
        k
    }
}

/// The class of everything else: ordinary messages.
pub const OTHER: &str = "other";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_banks_parse_and_every_concern_kind_has_examples() {
        let b = Bank::shipped();
        for kind in ["suicide-plan", "suicide-ideation", "self-harm", "grooming", "sextortion", "threat-to-others", "abuse-disclosure", "exploitation"] {
            let n: usize = b.facets.iter().filter(|f| f.kind == kind).map(|f| f.examples.len()).sum();
            assert!(n >= 40, "{kind}: {n} examples");
        }
        assert!(b.facets.iter().any(|f| f.concern.is_none()), "look-alikes are there");
    }
}
