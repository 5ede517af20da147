//! The compiled list index: one file, loaded with a single read.
//!
//! Layout: the magic `HAVENIX1`, then length-prefixed sections (little-endian
//! `u64` lengths): a JSON header (sources, value table, expressions, import
//! report), the domain table, the URL table, sorted SHA-256 digests and their
//! values, sorted MD5 digests and their values. Tables are used in place
//! (see `table`), so loading costs one read plus the header parse.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use haven_policy::model::for_each_url_key;
use haven_policy::{CategorySet, ListLookup, ListMatch, MatchKind, Request, Specificity};
use haven_url::{CanonicalUrl, HostKind, host_suffixes};
use md5::Md5;
use regex::RegexSet;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ListError;
use crate::format::Format;
use crate::source::SourceReport;
use crate::table::Table;

pub(crate) const MAGIC: &[u8; 8] = b"HAVENIX1";
pub(crate) const VERSION: u32 = 2;

/// A list source as recorded in an index.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceInfo {
    /// Source name.
    pub name: String,
    /// Its format.
    pub format: Format,
    /// Where it came from (URL or path).
    pub location: String,
    /// What importing it found.
    pub report: SourceReport,
}

/// The index's header: everything but the bulk data.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndexHeader {
    /// Format version.
    pub version: u32,
    /// When it was built (RFC 3339).
    pub built_at: String,
    /// [`crate::fingerprint`] of the sources it was built from.
    pub fingerprint: String,
    /// The sources, in source-id order.
    pub sources: Vec<SourceInfo>,
    /// Value table: for each value id, the (source, category bits) naming a key.
    pub values: Vec<Vec<(u16, u128)>>,
    /// Regular expressions and their value ids.
    pub expressions: Vec<(String, u64)>,
    /// Distinct domain keys (filled in on load).
    #[serde(default)]
    pub domain_keys: u64,
    /// Distinct URL keys (filled in on load).
    #[serde(default)]
    pub url_keys: u64,
    /// SHA-256 digests.
    pub sha256_count: u64,
    /// MD5 digests.
    pub md5_count: u64,
}

/// Shared bytes of the loaded file, sliced per section.
#[derive(Clone)]
struct Bytes {
    buf: Arc<Vec<u8>>,
    range: Range<usize>,
}

impl Bytes {
    fn owned(v: Vec<u8>) -> Self {
        let range = 0..v.len();
        Self { buf: Arc::new(v), range }
    }
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        &self.buf[self.range.clone()]
    }
}

/// The compiled lists, ready for look-ups.
pub struct ListIndex {
    header: IndexHeader,
    domains: Table<Bytes>,
    urls: Table<Bytes>,
    sha256: Bytes,
    sha256_values: Bytes,
    md5: Bytes,
    md5_values: Bytes,
    expressions: Option<RegexSet>,
    /// The hostname model asked about names no list holds, when the trust uses one.
    model: Option<std::sync::Arc<haven_hostmodel::HostModel>>,
}

impl std::fmt::Debug for ListIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListIndex").field("domains", &self.domains.len()).field("urls", &self.urls.len()).finish()
    }
}

impl ListIndex {
    /// The same index, with the hostname model behind it for names no list
    /// holds (`None`: lists only).
    pub fn with_model(mut self, model: Option<std::sync::Arc<haven_hostmodel::HostModel>>) -> Self {
        self.model = model;
        self
    }

    /// Whether a hostname model stands behind the lists.
    pub fn has_model(&self) -> bool {
        self.model.is_some()
    }

    /// Loads an index file.
    pub fn load(path: &Path) -> Result<Self, ListError> {
        let bytes = std::fs::read(path).map_err(|e| ListError::io(path, e))?;
        Self::from_bytes(bytes, path)
    }

    /// Writes the index atomically: to a temporary file beside `path`, then renamed.
    pub fn save(&self, path: &Path) -> Result<(), ListError> {
        use std::io::Write;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| ListError::io(dir, e))?;
        }
        // A name of this save's own: `haven serve`'s feed refresh and a reload
        // may both save the index at once, and must not write into one file.
        static SAVES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SAVES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = path.with_extension(format!("tmp{}-{n}", std::process::id()));
        let io = |e| ListError::io(&tmp, e);
        let header = serde_json::to_vec(&self.header).map_err(|e| ListError::BadIndex { path: path.to_path_buf(), why: e.to_string() })?;
        let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(io)?);
        out.write_all(MAGIC).map_err(io)?;
        for section in [&header[..], self.domains.bytes().as_ref(), self.urls.bytes().as_ref()]
            .into_iter()
            .chain([&self.sha256, &self.sha256_values, &self.md5, &self.md5_values].map(|b| b.as_ref()))
        {
            out.write_all(&(section.len() as u64).to_le_bytes()).map_err(io)?;
            out.write_all(section).map_err(io)?;
        }
        out.into_inner().map_err(|e| io(e.into_error()))?.sync_all().map_err(io)?;
        std::fs::rename(&tmp, path).map_err(|e| ListError::io(path, e))
    }

    /// Parses the bytes of an index file.
    pub fn from_bytes(buf: Vec<u8>, path: &Path) -> Result<Self, ListError> {
        let bad = |why: String| ListError::BadIndex { path: path.to_path_buf(), why };
        if buf.len() < 8 || &buf[..8] != MAGIC {
            return Err(bad("wrong magic bytes".into()));
        }
        let buf = Arc::new(buf);
        let mut pos = 8;
        let mut next = || -> Result<Bytes, ListError> {
            let len_bytes: [u8; 8] = buf.get(pos..pos + 8).and_then(|s| s.try_into().ok()).ok_or_else(|| bad("truncated".into()))?;
            let len = usize::try_from(u64::from_le_bytes(len_bytes)).map_err(|_| bad("section too large".into()))?;
            let start = pos + 8;
            let end = start.checked_add(len).filter(|&e| e <= buf.len()).ok_or_else(|| bad("truncated section".into()))?;
            pos = end;
            Ok(Bytes { buf: buf.clone(), range: start..end })
        };
        let header_bytes = next()?;
        let header: IndexHeader = serde_json::from_slice(header_bytes.as_ref()).map_err(|e| bad(format!("header: {e}")))?;
        if header.version != VERSION {
            return Err(bad(format!("version {} (this Haven reads {VERSION})", header.version)));
        }
        let sections = [next()?, next()?, next()?, next()?, next()?, next()?];
        Self::from_sections(header, sections, path)
    }

    /// An index from freshly compiled sections (no copy into one buffer).
    pub(crate) fn assemble(header: IndexHeader, sections: [Vec<u8>; 6], path: &Path) -> Result<Self, ListError> {
        Self::from_sections(header, sections.map(Bytes::owned), path)
    }

    fn from_sections(mut header: IndexHeader, sections: [Bytes; 6], path: &Path) -> Result<Self, ListError> {
        let bad = |why: String| ListError::BadIndex { path: path.to_path_buf(), why };
        let [domains, urls, sha256, sha256_values, md5, md5_values] = sections;
        let domains = Table::new(domains).ok_or_else(|| bad("domain table is damaged".into()))?;
        let urls = Table::new(urls).ok_or_else(|| bad("URL table is damaged".into()))?;
        let ok = |keys: &Bytes, vals: &Bytes, n: usize, w: usize| keys.as_ref().len() == n * w && vals.as_ref().len() == n * 4;
        if !ok(&sha256, &sha256_values, header.sha256_count as usize, 32) || !ok(&md5, &md5_values, header.md5_count as usize, 16) {
            return Err(bad("digest sections do not match the header".into()));
        }
        let n_values = header.values.len() as u64;
        if header.expressions.iter().any(|(_, v)| *v >= n_values) {
            return Err(bad("expression value out of range".into()));
        }
        let expressions =
            if header.expressions.is_empty() { None } else { Some(RegexSet::new(header.expressions.iter().map(|(r, _)| r)).map_err(|e| bad(e.to_string()))?) };
        header.domain_keys = domains.len() as u64;
        header.url_keys = urls.len() as u64;
        Ok(Self { header, domains, urls, sha256, sha256_values, md5, md5_values, expressions, model: None })
    }

    /// The header: sources, counts, import report.
    pub fn header(&self) -> &IndexHeader {
        &self.header
    }

    /// Size of the index's data in bytes (about the file's size).
    pub fn size(&self) -> usize {
        [self.domains.bytes(), self.urls.bytes(), &self.sha256, &self.sha256_values, &self.md5, &self.md5_values].iter().map(|b| b.as_ref().len()).sum()
    }

    fn emit(&self, value: u64, entry: &str, kind: MatchKind, specificity: Specificity, out: &mut Vec<ListMatch>) {
        let Some(v) = self.header.values.get(value as usize) else { return };
        for &(source, bits) in v {
            out.push(ListMatch { categories: CategorySet::from_bits(bits), source, entry: entry.to_string(), kind, specificity });
        }
    }

    fn lookup_domains(&self, host: &str, out: &mut Vec<ListMatch>) {
        if HostKind::of(host) != HostKind::Name {
            if let Some(v) = self.domains.get(host.as_bytes()) {
                self.emit(v, host, MatchKind::Domain, Specificity::of(host, "/"), out);
            }
            return;
        }
        for suffix in host_suffixes(host) {
            // Entries are never a bare top-level domain.
            if !suffix.contains('.') {
                break;
            }
            // An address entry is one host, not a parent of `x.10.9.8.7`.
            if suffix.as_bytes().first().is_some_and(u8::is_ascii_digit) && HostKind::of(suffix) == HostKind::Ipv4 {
                break;
            }
            if let Some(v) = self.domains.get(suffix.as_bytes()) {
                self.emit(v, suffix, MatchKind::Domain, Specificity::of(suffix, "/"), out);
            }
        }
    }

    fn lookup_urls(&self, url: &CanonicalUrl, out: &mut Vec<ListMatch>) {
        let mut key = String::new();
        let exact_only = url.host_kind() != HostKind::Name;
        for suffix in host_suffixes(&url.host) {
            if exact_only && suffix.len() != url.host.len() {
                break;
            }
            for_each_url_key(url, suffix, &mut key, |k, path_len| {
                if let Some(v) = self.urls.get(k.as_bytes()) {
                    let spec = Specificity { path_len, ..Specificity::of(suffix, "/") };
                    self.emit(v, k, MatchKind::Url, spec, out);
                }
            });
        }
    }

    fn lookup_hashes(&self, url: &CanonicalUrl, out: &mut Vec<ListMatch>) {
        for expr in url.lookup_expressions() {
            let spec = Specificity::of(expr.split('/').next().unwrap_or_default(), "/");
            if self.header.sha256_count > 0 {
                let d: [u8; 32] = Sha256::digest(expr.as_bytes()).into();
                if let Some(v) = find_digest(self.sha256.as_ref(), self.sha256_values.as_ref(), &d) {
                    self.emit(v, &expr, MatchKind::Hash, spec, out);
                }
            }
            if self.header.md5_count > 0 {
                let d: [u8; 16] = Md5::digest(expr.as_bytes()).into();
                if let Some(v) = find_digest(self.md5.as_ref(), self.md5_values.as_ref(), &d) {
                    self.emit(v, &expr, MatchKind::Hash, spec, out);
                }
            }
        }
    }

    fn lookup_expressions(&self, set: &RegexSet, text: &str, out: &mut Vec<ListMatch>) {
        // Nearly every request matches no expression: the single yes/no search
        // stops early and is far cheaper than asking which ones matched.
        if !set.is_match(text) {
            return;
        }
        for i in set.matches(text).iter() {
            let (re, v) = &self.header.expressions[i];
            self.emit(*v, re, MatchKind::Expression, Specificity::default(), out);
        }
    }
}

impl ListLookup for ListIndex {
    fn lookup(&self, request: &Request, out: &mut Vec<ListMatch>) {
        let host = request.host();
        self.lookup_domains(host, out);
        let hashed = self.header.sha256_count + self.header.md5_count > 0;
        match request {
            Request::Url(url) => {
                if self.urls.len() > 0 {
                    self.lookup_urls(url, out);
                }
                if hashed {
                    self.lookup_hashes(url, out);
                }
                if let Some(set) = &self.expressions {
                    thread_local!(static TEXT: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) });
                    TEXT.with_borrow_mut(|text| {
                        url.write_host_path(text);
                        self.lookup_expressions(set, text, out);
                    });
                }
            }
            Request::Host(h) => {
                if hashed {
                    let url = CanonicalUrl { scheme: "http".into(), host: h.clone(), port: None, path: "/".into(), query: None };
                    self.lookup_hashes(&url, out);
                }
                if let Some(set) = &self.expressions {
                    thread_local!(static TEXT: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) });
                    TEXT.with_borrow_mut(|text| {
                        text.clear();
                        text.push_str(h);
                        text.push('/');
                        self.lookup_expressions(set, text, out);
                    });
                }
            }
        }
    }

    fn source_name(&self, id: u16) -> &str {
        self.header.sources.get(id as usize).map_or("unknown", |s| s.name.as_str())
    }

    fn guess(&self, request: &Request) -> Option<haven_policy::ModelGuess> {
        let model = self.model.as_ref()?;
        haven_hostmodel::guess_request(model, request)
    }

    fn explain_guess(&self, request: &Request, guess: &mut haven_policy::ModelGuess) {
        if let Some(model) = &self.model {
            haven_hostmodel::explain_request(model, request, guess);
        }
    }
}

fn find_digest(keys: &[u8], values: &[u8], d: &[u8]) -> Option<u64> {
    let w = d.len();
    let n = keys.len() / w;
    let (mut lo, mut hi) = (0usize, n);
    while lo < hi {
        let mid = (lo + hi) / 2;
        match keys[mid * w..mid * w + w].cmp(d) {
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
            std::cmp::Ordering::Equal => {
                let v: [u8; 4] = values[mid * 4..mid * 4 + 4].try_into().ok()?;
                return Some(u64::from(u32::from_le_bytes(v)));
            }
        }
    }
    None
}
