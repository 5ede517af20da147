//! `haven lists update`: download sources that have a `url`, check them, and
//! swap them in atomically, keeping the previous lists and index on any
//! failure; and `refresh`, the same per source, for `haven serve`'s
//! scheduled feeds.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::ListError;
use crate::compile::{ImportReport, compile};
use crate::feed::Credentials;
use crate::format::Format;
use crate::source::{Progress, SourceSpec};

/// Largest download accepted (UT1's full archive is about 100 MB).
const MAX_DOWNLOAD: u64 = 1 << 30;

/// What an update did for one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Updated {
    /// Source name.
    pub name: String,
    /// Bytes downloaded.
    pub bytes: u64,
}

/// Which sources to download, and with what credentials.
#[derive(Debug, Clone, Default)]
pub struct Fetch {
    /// Only these sources (by name); `None`: every source with a `url`.
    pub only: Option<Vec<String>>,
    /// Credentials per source name, for member feeds.
    pub credentials: BTreeMap<String, Credentials>,
}

/// What a refresh did for one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Source name.
    pub name: String,
    /// Bytes downloaded and entries now in force, or why the previous list
    /// stays in force.
    pub result: Result<Fetched, String>,
}

/// A source downloaded, checked and in the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fetched {
    /// Bytes downloaded.
    pub bytes: u64,
    /// Entries the source now holds.
    pub entries: u64,
}

/// Downloads every source with a `url`, checks each download by importing
/// it on its own, swaps the new files in, compiles the full index and saves
/// it to `index_path`. On any failure the previous files and index are kept.
pub fn update(specs: &[SourceSpec], index_path: &Path, built_at: &str, progress: &dyn Progress) -> Result<(Vec<Updated>, ImportReport), ListError> {
    update_with(specs, index_path, built_at, progress, &Fetch::default())
}

/// [`update`] for the sources `fetch` picks, with their credentials: all or
/// nothing, as `haven lists update` wants.
pub fn update_with(
    specs: &[SourceSpec],
    index_path: &Path,
    built_at: &str,
    progress: &dyn Progress,
    fetch: &Fetch,
) -> Result<(Vec<Updated>, ImportReport), ListError> {
    let agents = Agents::new();
    let mut staged: Vec<(usize, PathBuf)> = Vec::new();
    let mut done = Vec::new();
    for (i, spec, url) in picked(specs, fetch) {
        progress.message(&format!("downloading {}", spec.name));
        match fetch_checked(&agents, spec, url, fetch.credentials.get(&spec.name)) {
            Ok((path, bytes)) => {
                staged.push((i, path));
                done.push(Updated { name: spec.name.clone(), bytes });
            }
            Err(e) => {
                cleanup(&staged);
                return Err(e);
            }
        }
    }
    let report = swap_in(specs, index_path, built_at, progress, &staged)?;
    Ok((done, report))
}

/// Each source `fetch` picks on its own: a download that fails or is
/// rejected keeps that source's previous list, the good ones go in together
/// (one index compiled), so a scheduled refresh of one feed never waits on
/// another. If the index cannot be compiled, nothing changes.
pub fn refresh(specs: &[SourceSpec], index_path: &Path, built_at: &str, progress: &dyn Progress, fetch: &Fetch) -> Vec<Outcome> {
    let agents = Agents::new();
    let mut staged: Vec<(usize, PathBuf)> = Vec::new();
    let mut outcomes = Vec::new();
    let mut bytes = Vec::new();
    for (i, spec, url) in picked(specs, fetch) {
        progress.message(&format!("downloading {}", spec.name));
        match fetch_checked(&agents, spec, url, fetch.credentials.get(&spec.name)) {
            Ok((path, n)) => {
                staged.push((i, path));
                bytes.push((i, n));
            }
            Err(e) => outcomes.push(Outcome { name: spec.name.clone(), result: Err(e.to_string()) }),
        }
    }
    if staged.is_empty() {
        return outcomes;
    }
    match swap_in(specs, index_path, built_at, progress, &staged) {
        Ok(report) => {
            for (i, n) in bytes {
                let entries = report.sources.iter().find(|r| r.name == specs[i].name).map_or(0, |r| r.entries);
                outcomes.push(Outcome { name: specs[i].name.clone(), result: Ok(Fetched { bytes: n, entries }) });
            }
        }
        Err(e) => {
            for (i, _) in bytes {
                outcomes.push(Outcome {
                    name: specs[i].name.clone(),
                    result: Err(format!("the download was good but the index could not be rebuilt ({e}); the previous lists stay in force")),
                });
            }
        }
    }
    outcomes
}

/// The sources `fetch` picks that have a `url`, with their place in `specs`.
fn picked<'a>(specs: &'a [SourceSpec], fetch: &'a Fetch) -> impl Iterator<Item = (usize, &'a SourceSpec, &'a str)> + 'a {
    specs.iter().enumerate().filter_map(move |(i, spec)| {
        let url = spec.url.as_deref()?;
        fetch.only.as_ref().is_none_or(|only| only.contains(&spec.name)).then_some((i, spec, url))
    })
}

/// One agent that follows redirects, and one for credentials that does not:
/// a redirect would carry a key in a custom header to wherever it points.
struct Agents {
    open: ureq::Agent,
    authenticated: ureq::Agent,
}

impl Agents {
    fn new() -> Self {
        // Install the process-wide TLS crypto provider once (aws-lc-rs, as in the rest of Haven).
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let build = |redirects: u32| -> ureq::Agent {
            ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_secs(600)))
                .timeout_connect(Some(Duration::from_secs(20)))
                .max_redirects(redirects)
                .build()
                .into()
        };
        Self { open: build(10), authenticated: build(0) }
    }
}

/// Downloads one source and checks it; the staged file or folder.
fn fetch_checked(agents: &Agents, spec: &SourceSpec, url: &str, credentials: Option<&Credentials>) -> Result<(PathBuf, u64), ListError> {
    let (path, bytes) = download(agents, spec, url, credentials)?;
    match check(spec, &path) {
        Ok(()) => Ok((path, bytes)),
        Err(e) => {
            let _ = remove(&path);
            Err(e)
        }
    }
}

fn cleanup(staged: &[(usize, PathBuf)]) {
    for (_, p) in staged {
        let _ = remove(p);
    }
}

/// Swaps every staged source in (remembering the old files), compiles the
/// index and saves it; on any failure puts the old files back.
fn swap_in(specs: &[SourceSpec], index_path: &Path, built_at: &str, progress: &dyn Progress, staged: &[(usize, PathBuf)]) -> Result<ImportReport, ListError> {
    let mut swapped: Vec<(PathBuf, Option<PathBuf>)> = Vec::new();
    let rollback = |swapped: &[(PathBuf, Option<PathBuf>)]| {
        for (path, old) in swapped.iter().rev() {
            let _ = remove(path);
            if let Some(old) = old {
                let _ = fs::rename(old, path);
            }
        }
    };
    for (i, new) in staged {
        let path = &specs[*i].path;
        let old = path.exists().then(|| sibling(path, "old"));
        if let Some(old) = &old {
            let _ = remove(old);
            if let Err(e) = fs::rename(path, old) {
                rollback(&swapped);
                cleanup(staged);
                return Err(ListError::io(path, e));
            }
        }
        if let Some(dir) = path.parent() {
            let _ = fs::create_dir_all(dir);
        }
        if let Err(e) = fs::rename(new, path) {
            swapped.push((path.clone(), old));
            rollback(&swapped);
            cleanup(staged);
            return Err(ListError::io(path, e));
        }
        swapped.push((path.clone(), old));
    }
    match compile(specs, built_at, progress).and_then(|(index, report)| index.save(index_path).map(|()| report)) {
        Ok(report) => {
            for (_, old) in &swapped {
                if let Some(old) = old {
                    let _ = remove(old);
                }
            }
            Ok(report)
        }
        Err(e) => {
            rollback(&swapped);
            Err(e)
        }
    }
}

fn sibling(path: &Path, tag: &str) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".{tag}"));
    path.with_file_name(name)
}

fn remove(p: &Path) -> std::io::Result<()> {
    if p.is_dir() { fs::remove_dir_all(p) } else { fs::remove_file(p) }
}

fn download(agents: &Agents, spec: &SourceSpec, url: &str, credentials: Option<&Credentials>) -> Result<(PathBuf, u64), ListError> {
    let fail = |why: String| ListError::Download { source_name: spec.name.clone(), url: url.to_string(), why };
    let request = match credentials {
        Some(c) => {
            let (name, value) = c.header();
            agents.authenticated.get(url).header(name, value)
        }
        None => agents.open.get(url),
    };
    let response = request.call().map_err(|e| {
        fail(match (&e, credentials.is_some()) {
            (ureq::Error::StatusCode(code @ (401 | 403)), true) => {
                format!("the feed refused the credentials (HTTP {code}); check this source's entry in the secrets file")
            }
            (ureq::Error::StatusCode(code @ (401 | 403)), false) => {
                format!("the feed wants credentials (HTTP {code}); give the source `credentials = \"NAME\"` and an entry in `[lists] secrets`")
            }
            (ureq::Error::TooManyRedirects, true) => {
                "the feed redirected elsewhere; credentials are never sent on, so give the final address as `url`".to_string()
            }
            _ => e.to_string(),
        })
    })?;
    let mut reader = response.into_body().into_reader().take(MAX_DOWNLOAD + 1);
    let part = sibling(&spec.path, "download");
    if let Some(dir) = part.parent() {
        fs::create_dir_all(dir).map_err(|e| ListError::io(dir, e))?;
    }
    let mut file = fs::File::create(&part).map_err(|e| ListError::io(&part, e))?;
    let bytes = std::io::copy(&mut reader, &mut file).map_err(|e| fail(e.to_string()))?;
    file.flush().map_err(|e| ListError::io(&part, e))?;
    if bytes > MAX_DOWNLOAD {
        let _ = fs::remove_file(&part);
        return Err(fail(format!("larger than {MAX_DOWNLOAD} bytes")));
    }
    if spec.format != Format::Ut1 {
        return Ok((part, bytes));
    }
    let dir = sibling(&spec.path, "new");
    let _ = remove(&dir);
    let unpacked = unpack_ut1(&part, &dir).map_err(|e| fail(format!("not a UT1 archive (.tar.gz): {e}")));
    let _ = fs::remove_file(&part);
    unpacked.map(|root| (root, bytes)).inspect_err(|_| {
        let _ = remove(&dir);
    })
}

/// Unpacks a UT1 archive (`blacklists.tar.gz`) and returns the directory that
/// holds the category folders.
fn unpack_ut1(archive: &Path, dir: &Path) -> std::io::Result<PathBuf> {
    let file = fs::File::open(archive)?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    fs::create_dir_all(dir)?;
    tar.unpack(dir)?;
    // The archive holds `blacklists/<category>/...`; find the level with categories.
    let mut root = dir.to_path_buf();
    for _ in 0..3 {
        let subdirs: Vec<PathBuf> = fs::read_dir(&root)?.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_dir()).collect();
        let has_lists = subdirs.iter().any(|d| d.join("domains").exists() || d.join("urls").exists());
        if has_lists {
            break;
        }
        match subdirs.as_slice() {
            [only] => root = only.clone(),
            _ => break,
        }
    }
    if root != dir {
        // Move the category level up so the staged directory is the tree itself.
        let staged = sibling(dir, "tree");
        let _ = remove(&staged);
        fs::rename(&root, &staged)?;
        fs::remove_dir_all(dir)?;
        fs::rename(&staged, dir)?;
    }
    Ok(dir.to_path_buf())
}

/// Imports the download on its own: it must yield entries, and mostly good lines.
fn check(spec: &SourceSpec, path: &Path) -> Result<(), ListError> {
    let reject = |why: String| ListError::Rejected { source_name: spec.name.clone(), why };
    if path.is_file() {
        let mut head = [0u8; 512];
        let n = fs::File::open(path).and_then(|mut f| f.read(&mut head)).map_err(|e| ListError::io(path, e))?;
        let text = String::from_utf8_lossy(&head[..n]).to_ascii_lowercase();
        if text.contains("<html") || text.contains("<!doctype") {
            return Err(reject("it is a web page, not a list (is the URL right?)".into()));
        }
    }
    let trial = SourceSpec { path: path.to_path_buf(), ..spec.clone() };
    let (_, report) = compile(std::slice::from_ref(&trial), "", &crate::NoProgress).map_err(|e| reject(e.to_string()))?;
    let r = &report.sources[0];
    if r.entries == 0 {
        return Err(reject("it has no entries".into()));
    }
    if r.bad_lines > r.entries {
        return Err(reject(format!("{} bad lines against {} entries", r.bad_lines, r.entries)));
    }
    Ok(())
}
