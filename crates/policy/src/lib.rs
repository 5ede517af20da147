//! Haven's policy engine: the filter's brain.
//!
//! Given the trust's [`PolicySet`], what the category lists say
//! ([`ListLookup`]), who is asking ([`Subject`]), when, and what they asked for
//! ([`Request`]), [`decide`] returns a [`Decision`]: allow, block or safe
//! search, with the categories, the rule, the list and entry, and a sentence a
//! person can read ([`Decision::explain`]).
//!
//! Architecture invariant: this crate is pure. No sockets, files, database or
//! clock: time is always a parameter, lists come through a trait. The DNS
//! filter, the proxy and `haven check` all decide through it, so they agree.
#![forbid(unsafe_code)]

pub mod changes;
mod decide;
mod explain;
pub mod lookup;
pub mod model;
pub mod safesearch;
pub mod schedule;
pub mod taxonomy;

pub use decide::{Action, Decision, Rule, decide};
pub use lookup::{ListLookup, ListMatch, MatchKind, ModelGuess, NoLists, Request, Specificity};
pub use model::{HostModelSettings, PolicySet, Subject, Target, Verdict};
pub use taxonomy::{Category, CategorySet};

#[cfg(test)]
mod tests;
