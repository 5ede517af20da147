//! The boundary between decisions and list storage.
//!
//! `decide` asks a [`ListLookup`] what the lists say about a request; the
//! compiled, memory-mapped index in `haven-lists` implements it, and tests can
//! implement it with a few lines. Keeping it a trait keeps this crate free of I/O.

use haven_url::CanonicalUrl;

use crate::taxonomy::{Category, CategorySet};

/// What is being asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// A hostname only: a DNS question, or a CONNECT without TLS inspection.
    Host(String),
    /// A full URL: a proxied HTTP request, or HTTPS seen through inspection.
    Url(CanonicalUrl),
}

impl Request {
    /// Canonicalises a URL or bare host typed by a person or read from a log.
    pub fn parse(input: &str) -> Result<Self, haven_url::UrlError> {
        let url = CanonicalUrl::parse(input)?;
        Ok(Self::Url(url))
    }

    /// The canonical host.
    pub fn host(&self) -> &str {
        match self {
            Self::Host(h) => h,
            Self::Url(u) => &u.host,
        }
    }

    /// The URL when one is known.
    pub fn url(&self) -> Option<&CanonicalUrl> {
        match self {
            Self::Host(_) => None,
            Self::Url(u) => Some(u),
        }
    }
}

/// How a list entry matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchKind {
    /// A domain entry matched the host or one of its parent domains.
    Domain,
    /// A URL entry matched a path prefix on the host or a parent domain.
    Url,
    /// A hashed URL expression matched (illegal-content lists).
    Hash,
    /// A regular expression matched the URL.
    Expression,
}

/// How specific a match is; a more specific match wins over a less specific one.
///
/// Ordered by host labels matched, then by path length, so `a.example.com`
/// beats `example.com`, and `example.com/games` beats `example.com`.
/// Expressions are the least specific of all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Specificity {
    /// Labels in the matched host entry (`example.com` = 2).
    pub host_labels: u16,
    /// Bytes of path in the matched entry (0 for a domain entry).
    pub path_len: u16,
}

impl Specificity {
    /// The specificity of a host entry (and optional path) as written.
    pub fn of(host: &str, path: &str) -> Self {
        let labels = host.split('.').count();
        let path_len = if path == "/" { 0 } else { path.len() };
        Self { host_labels: labels.min(u16::MAX as usize) as u16, path_len: path_len.min(u16::MAX as usize) as u16 }
    }
}

/// One list entry that matched a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListMatch {
    /// The categories the list gives the entry.
    pub categories: CategorySet,
    /// Which list source (index into [`ListLookup::source_name`]).
    pub source: u16,
    /// The entry as stored (`example.com`, `example.com/games`, a hash, a regex).
    pub entry: String,
    /// How it matched.
    pub kind: MatchKind,
    /// How specific it is.
    pub specificity: Specificity,
}

/// What the hostname model makes of a request no list names: its likeliest
/// category, how sure it is, and the pieces of the name that weighed most.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelGuess {
    /// The likeliest category.
    pub category: Category,
    /// The model's probability for it, 0 to 1.
    pub confidence: f32,
    /// Words or fragments of the name that pointed there (`casino`, `bet`).
    pub evidence: Vec<String>,
}

/// Category lists, as `decide` sees them.
pub trait ListLookup {
    /// Appends every entry that matches `request` to `out`.
    fn lookup(&self, request: &Request, out: &mut Vec<ListMatch>);
    /// The configured name of list source `id` (`ut1`, `iwf`).
    fn source_name(&self, id: u16) -> &str;
    /// The hostname model's guess for a request no list names; `None` where
    /// there is no model, or it sees nothing but the benign.
    fn guess(&self, _request: &Request) -> Option<ModelGuess> {
        None
    }
    /// Fills in `guess.evidence`: asked only for someone who reads the
    /// words (`Decision::explain_model`, the suggestions queue), never while
    /// deciding, because finding them costs more than the guess itself.
    fn explain_guess(&self, _request: &Request, _guess: &mut ModelGuess) {}
}

/// One compiled index shared by every enforcement point of a snapshot (the
/// DNS filter and the proxy hold the same `Arc`, not two copies).
impl<T: ListLookup + ?Sized> ListLookup for std::sync::Arc<T> {
    fn lookup(&self, request: &Request, out: &mut Vec<ListMatch>) {
        (**self).lookup(request, out);
    }
    fn source_name(&self, id: u16) -> &str {
        (**self).source_name(id)
    }
    fn guess(&self, request: &Request) -> Option<ModelGuess> {
        (**self).guess(request)
    }
    fn explain_guess(&self, request: &Request, guess: &mut ModelGuess) {
        (**self).explain_guess(request, guess);
    }
}

/// No lists at all: decisions come from policy entries alone.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoLists;

impl ListLookup for NoLists {
    fn lookup(&self, _: &Request, _: &mut Vec<ListMatch>) {}
    fn source_name(&self, _: u16) -> &str {
        "none"
    }
}
