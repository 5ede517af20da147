//! List sources: where a list lives, its format, and what its labels mean;
//! reading one into entries while counting every line that could not be used.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use haven_policy::taxonomy::ut1_label;
use haven_policy::{Category, CategorySet};
use serde::{Deserialize, Serialize};

use crate::ListError;
use crate::format::{Entry, Format, Line, parse_line};
use crate::table::TableBuilder;

/// One configured list source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceSpec {
    /// Name used in explanations and logs (`ut1`, `iwf`).
    pub name: String,
    /// Its format.
    pub format: Format,
    /// The file or directory on disk (where `haven lists update` writes downloads).
    pub path: PathBuf,
    /// Where `haven lists update` downloads it from, if anywhere.
    pub url: Option<String>,
    /// For single-category formats: the category of every entry.
    pub category: Option<Category>,
    /// For UT1 trees: labels mapped onto Haven categories, on top of the defaults.
    pub labels: BTreeMap<String, Vec<Category>>,
    /// For UT1 trees: also read `very_restrictive_expression` files.
    pub very_restrictive: bool,
}

/// A line that could not be used, with its place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadLine {
    /// The file.
    pub file: PathBuf,
    /// 1-based line number.
    pub line: usize,
    /// The line, shortened.
    pub text: String,
    /// Why it was not used.
    pub why: String,
}

/// What importing one source found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceReport {
    /// Source name.
    pub name: String,
    /// Entries read, per Haven category id.
    pub categories: BTreeMap<String, u64>,
    /// Entries read in all.
    pub entries: u64,
    /// Lines that could not be used.
    pub bad_lines: u64,
    /// The first few bad lines, for the person fixing them.
    pub bad_samples: Vec<BadLine>,
    /// UT1 labels with no mapping, and how many lines they held (not imported).
    pub unmapped_labels: BTreeMap<String, u64>,
}

const BAD_SAMPLES: usize = 20;

impl SourceReport {
    fn bad(&mut self, file: &Path, line: usize, text: &str, why: String) {
        self.bad_lines += 1;
        if self.bad_samples.len() < BAD_SAMPLES {
            let text: String = text.chars().take(100).collect();
            self.bad_samples.push(BadLine { file: file.to_path_buf(), line, text, why });
        }
    }
}

/// Receives progress while lists are read (bytes), so a CLI can draw a bar.
pub trait Progress: Sync {
    /// Total bytes to read.
    fn set_total(&self, _bytes: u64) {}
    /// Bytes just read.
    fn advance(&self, _bytes: u64) {}
    /// What is being done now.
    fn message(&self, _msg: &str) {}
}

/// Progress that goes nowhere.
pub struct NoProgress;
impl Progress for NoProgress {}

/// The value table: for each value id, the (source, category bits) that name
/// a key. Most keys are named by one source; those share one id per pair.
#[derive(Debug, Default)]
pub(crate) struct Values {
    pub(crate) table: Vec<Vec<(u16, u128)>>,
    ids: HashMap<Vec<(u16, u128)>, u32>,
    singles: HashMap<(u16, u128), u32>,
}

impl Values {
    pub(crate) fn id(&mut self, set: Vec<(u16, u128)>) -> u32 {
        if let Some(&id) = self.ids.get(&set) {
            return id;
        }
        let id = self.table.len() as u32;
        self.table.push(set.clone());
        self.ids.insert(set, id);
        id
    }

    /// The value of a key that had `old` and is now also named by `source` as `cats`.
    pub(crate) fn add(&mut self, old: Option<u32>, source: u16, cats: CategorySet) -> u32 {
        let pair = (source, cats.bits());
        let Some(old) = old else {
            if let Some(&id) = self.singles.get(&pair) {
                return id;
            }
            let id = self.id(vec![pair]);
            self.singles.insert(pair, id);
            return id;
        };
        let mut set = self.table[old as usize].clone();
        match set.iter_mut().find(|(s, _)| *s == source) {
            Some((_, bits)) if *bits | pair.1 == *bits => return old,
            Some((_, bits)) => *bits |= pair.1,
            None => {
                set.push(pair);
                set.sort_unstable_by_key(|(s, _)| *s);
            }
        }
        self.id(set)
    }
}

/// Entries gathered from every source, straight into the index's tables.
pub(crate) struct Collected {
    pub(crate) domains: TableBuilder,
    pub(crate) urls: TableBuilder,
    pub(crate) values: Values,
    pub(crate) sha256: Vec<([u8; 32], u16, CategorySet)>,
    pub(crate) md5: Vec<([u8; 16], u16, CategorySet)>,
    pub(crate) expressions: Vec<(String, u16, CategorySet)>,
}

impl Collected {
    /// Room for about `domains` and `urls` keys whose text totals at most the given bytes.
    pub(crate) fn with_capacity(domains: (usize, usize), urls: (usize, usize)) -> Self {
        Self {
            domains: TableBuilder::with_capacity(domains.0, domains.1),
            urls: TableBuilder::with_capacity(urls.0, urls.1),
            values: Values::default(),
            sha256: Vec::new(),
            md5: Vec::new(),
            expressions: Vec::new(),
        }
    }
}

/// The files a source will read, with their format and categories.
pub(crate) fn plan(spec: &SourceSpec, report: &mut SourceReport) -> Result<Vec<(PathBuf, Format, CategorySet)>, ListError> {
    let missing = |p: &Path| ListError::Missing { source_name: spec.name.clone(), path: p.to_path_buf() };
    if !spec.path.exists() {
        return Err(missing(&spec.path));
    }
    if spec.format != Format::Ut1 {
        let cats: CategorySet = spec.category.into_iter().collect();
        if cats.is_empty() {
            return Err(ListError::NoCategory { source_name: spec.name.clone() });
        }
        return Ok(vec![(spec.path.clone(), spec.format, cats)]);
    }
    let mut files = Vec::new();
    let mut dirs: Vec<_> = fs::read_dir(&spec.path).map_err(|e| ListError::io(&spec.path, e))?.filter_map(Result::ok).filter(|e| e.path().is_dir()).collect();
    dirs.sort_by_key(|e| e.file_name());
    for dir in dirs {
        let label = dir.file_name().to_string_lossy().into_owned();
        let cats: Option<CategorySet> =
            spec.labels.get(&label).map(|c| c.iter().copied().collect()).or_else(|| ut1_label(&label).map(|c| c.iter().copied().collect()));
        let mut names: Vec<_> = fs::read_dir(dir.path())
            .map_err(|e| ListError::io(&dir.path(), e))?
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for name in names {
            let format = if name.starts_with("domains") {
                Format::Domains
            } else if name.starts_with("urls") {
                Format::Urls
            } else if name == "expressions" || (spec.very_restrictive && name == "very_restrictive_expression") {
                Format::Expressions
            } else {
                continue;
            };
            let path = dir.path().join(&name);
            match cats {
                Some(c) => files.push((path, format, c)),
                None => {
                    let lines = fs::read(&path).map(|b| b.iter().filter(|&&c| c == b'\n').count() as u64).unwrap_or(0);
                    *report.unmapped_labels.entry(label.clone()).or_default() += lines;
                }
            }
        }
    }
    Ok(files)
}

/// Reads one file into `sink`, counting bad lines in `report`.
pub(crate) fn read_file(
    path: &Path,
    format: Format,
    cats: CategorySet,
    source: u16,
    sink: &mut Collected,
    report: &mut SourceReport,
    progress: &dyn Progress,
) -> Result<(), ListError> {
    // Streamed line by line: a list is never held whole in memory.
    let file = fs::File::open(path).map_err(|e| ListError::io(path, e))?;
    let mut reader = std::io::BufReader::with_capacity(1 << 16, file);
    let mut line = Vec::with_capacity(256);
    let mut added = 0u64;
    let mut i = 0usize;
    loop {
        line.clear();
        let n = std::io::BufRead::read_until(&mut reader, b'\n', &mut line).map_err(|e| ListError::io(path, e))?;
        if n == 0 {
            break;
        }
        i += 1;
        progress.advance(n as u64);
        let Ok(raw) = std::str::from_utf8(&line) else {
            report.bad(path, i, &String::from_utf8_lossy(&line), "not valid UTF-8: save the file as UTF-8".into());
            continue;
        };
        let raw = raw.trim_end_matches(['\n', '\r']);
        let entries = match parse_line(format, raw) {
            Ok(Line::Skip) => continue,
            Ok(Line::Entries(e)) => e,
            Err(why) => {
                report.bad(path, i, raw, why);
                continue;
            }
        };
        for e in entries {
            added += 1;
            match e {
                Entry::Domain(host) => {
                    let values = &mut sink.values;
                    sink.domains.upsert(host.as_bytes(), |old| values.add(old, source, cats));
                }
                Entry::Url { host, path: p } => {
                    let values = &mut sink.values;
                    sink.urls.upsert((host + &p).as_bytes(), |old| values.add(old, source, cats));
                }
                Entry::Hash(h) if h.len() == 32 => {
                    let mut a = [0u8; 32];
                    a.copy_from_slice(&h);
                    sink.sha256.push((a, source, cats));
                }
                Entry::Hash(h) => {
                    let mut a = [0u8; 16];
                    a.copy_from_slice(&h[..16]);
                    sink.md5.push((a, source, cats));
                }
                Entry::Expression(re) => match regex::Regex::new(&re) {
                    Ok(_) => sink.expressions.push((re, source, cats)),
                    Err(e) => {
                        added -= 1;
                        let first = e.to_string().lines().last().unwrap_or_default().to_string();
                        report.bad(path, i, raw, format!("invalid regular expression: {first}"));
                    }
                },
            }
        }
    }
    report.entries += added;
    for c in cats.iter() {
        *report.categories.entry(c.id().to_string()).or_default() += added;
    }
    Ok(())
}
