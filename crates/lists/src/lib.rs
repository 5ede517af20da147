//! Category lists: import, the compiled index, and updates.
//!
//! Sources in several formats ([`Format`]) are read into one compiled
//! [`ListIndex`]: hash tables of exact keys (domains, and `host/path`
//! prefixes) laid out in the file, sorted digests for hashed
//! illegal-content lists, and a linear-time `RegexSet` for expressions. The
//! index is a single file that loads with one read and no parsing of entries,
//! and implements [`haven_policy::ListLookup`] for `decide`.
//!
//! Architecture invariant: this crate knows list formats and files; it never
//! decides. What a match means for a person is `haven-policy`'s business.
#![forbid(unsafe_code)]

mod compile;
pub mod feed;
pub mod format;
mod index;
pub mod source;
mod table;
pub mod update;

use std::path::{Path, PathBuf};

pub use compile::{ImportReport, compile, fingerprint};
pub use format::Format;
pub use index::{IndexHeader, ListIndex};
pub use source::{BadLine, NoProgress, Progress, SourceReport, SourceSpec};

/// Errors from importing, loading or updating lists.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A source's file or directory does not exist.
    #[error("list source {source_name:?}: {path} does not exist; check `path` in the config, or run `haven lists update` if the source has a `url`")]
    Missing {
        /// The source.
        source_name: String,
        /// The missing path.
        path: PathBuf,
    },
    /// A single-category format without `category`.
    #[error("list source {source_name:?} needs `category = \"...\"` (only UT1 trees carry their own labels)")]
    NoCategory {
        /// The source.
        source_name: String,
    },
    /// The index file is not one this version of Haven wrote.
    #[error("{path}: not a Haven list index ({why}); rebuild it with `haven lists import`")]
    BadIndex {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A download failed.
    #[error("list source {source_name:?}: download from {url} failed: {why}")]
    Download {
        /// The source.
        source_name: String,
        /// The address.
        url: String,
        /// What went wrong.
        why: String,
    },
    /// The secrets file for member feeds cannot be used.
    #[error("list secrets file {path}: {why}")]
    Secrets {
        /// The file.
        path: PathBuf,
        /// What is wrong, and the fix (never a secret).
        why: String,
    },
    /// A downloaded list was rejected by the checks.
    #[error("list source {source_name:?}: the downloaded list was rejected: {why}; the previous index is still in use")]
    Rejected {
        /// The source.
        source_name: String,
        /// Why.
        why: String,
    },
}

impl ListError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io { path: path.to_path_buf(), source }
    }
}
