//! Reads `haven.toml` (see `examples/haven.toml`, documented line by line) into
//! a validated [`Config`]: the trust's [`PolicySet`] and its list sources.
//!
//! Every problem is collected with its `file:line` and a hint, and the config is
//! returned only if there are none: nothing is ever half-applied.
//!
//! Architecture invariant: this crate reads files (the config, user CSVs) and
//! nothing else; it opens no sockets and reads no clock.
#![forbid(unsafe_code)]

mod check;
mod errors;
mod raw;

use std::path::{Path, PathBuf};

pub use errors::{ConfigError, Problem};
use haven_lists::SourceSpec;
use haven_policy::PolicySet;

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The config file.
    pub path: PathBuf,
    /// The trust's schools, groups, people, devices and policies.
    pub policy: PolicySet,
    /// List sources, paths resolved against the config file's folder.
    pub lists: Vec<SourceSpec>,
    /// Where Haven keeps its data (the list index, later the database).
    pub data_dir: PathBuf,
    /// The compiled list index.
    pub index_path: PathBuf,
    /// Things worth saying that do not stop Haven (an optional list that is absent).
    pub warnings: Vec<String>,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            problems: vec![Problem {
                file: path.to_path_buf(),
                line: 0,
                message: format!("cannot read the config file: {e}"),
                hint: Some("pass the path of a haven.toml with --config (see examples/haven.toml)".into()),
            }],
        })?;
        Self::parse(&text, path)
    }

    /// Validates config text; `path` names it in errors and anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        check::build(text, path)
    }
}

#[cfg(test)]
mod tests;
