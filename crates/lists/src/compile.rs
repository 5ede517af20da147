//! Compiling sources into the bytes of an index file.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use haven_policy::CategorySet;
use serde::{Deserialize, Serialize};

use crate::{ListError, table};
use crate::index::{IndexHeader, ListIndex, MAGIC, SourceInfo, VERSION};
use crate::source::{Collected, Progress, SourceReport, SourceSpec, plan, read_file};

/// What an import found, source by source.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ImportReport {
    /// One report per source, in config order.
    pub sources: Vec<SourceReport>,
}

impl ImportReport {
    /// Bad lines across all sources.
    pub fn bad_lines(&self) -> u64 {
        self.sources.iter().map(|s| s.bad_lines).sum()
    }
}

/// A fingerprint of the sources' definitions and their files' sizes and
/// modification times: when it changes, a saved index is stale.
pub fn fingerprint(specs: &[SourceSpec]) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for s in specs {
        serde_json::to_string(s).unwrap_or_default().hash(&mut h);
        let mut files = vec![s.path.clone()];
        if s.path.is_dir() {
            for d in walk(&s.path) {
                files.push(d);
            }
        }
        files.sort();
        for f in files {
            if let Ok(m) = std::fs::metadata(&f) {
                f.hash(&mut h);
                m.len().hash(&mut h);
                m.modified().ok().hash(&mut h);
            }
        }
    }
    format!("{:016x}", h.finish())
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Reads every source and compiles them into an index.
///
/// A source that cannot be read at all fails the import (nothing is half
/// applied); bad lines inside a source are counted and reported, never fatal.
/// `built_at` is recorded in the index (the caller owns the clock).
pub fn compile(specs: &[SourceSpec], built_at: &str, progress: &dyn Progress) -> Result<(ListIndex, ImportReport), ListError> {
    let mut report = ImportReport::default();
    let mut plans = Vec::new();
    for spec in specs {
        let mut r = SourceReport { name: spec.name.clone(), ..SourceReport::default() };
        plans.push(plan(spec, &mut r)?);
        report.sources.push(r);
    }
    let total: u64 = plans.iter().flatten().filter_map(|(p, ..)| std::fs::metadata(p).ok()).map(|m| m.len()).sum();
    progress.set_total(total);
    let sink = read_all(specs, &plans, &mut report, progress)?;
    progress.message("compiling index");
    let header_sources = specs
        .iter()
        .zip(&report.sources)
        .map(|(s, r)| SourceInfo {
            name: s.name.clone(),
            format: s.format,
            location: s.url.clone().unwrap_or_else(|| s.path.display().to_string()),
            report: r.clone(),
        })
        .collect();
    let bytes = encode(sink, header_sources, built_at, &fingerprint(specs))?;
    let index = ListIndex::from_bytes(bytes, std::path::Path::new("<memory>"))?;
    Ok((index, report))
}

/// Reads every planned file on all cores: each worker fills its own
/// collection and reports, merged afterwards (the index is sorted anyway).
fn read_all(
    specs: &[SourceSpec],
    plans: &[Vec<(std::path::PathBuf, crate::format::Format, CategorySet)>],
    report: &mut ImportReport,
    progress: &dyn Progress,
) -> Result<Collected, ListError> {
    let jobs: Vec<(usize, &(std::path::PathBuf, crate::format::Format, CategorySet))> =
        plans.iter().enumerate().flat_map(|(i, files)| files.iter().map(move |f| (i, f))).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(jobs.len().max(1));
    let results: Vec<Result<(Collected, Vec<SourceReport>), ListError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut sink = Collected::default();
                    let mut reports: Vec<SourceReport> = specs.iter().map(|_| SourceReport::default()).collect();
                    loop {
                        let j = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some((i, (path, format, cats))) = jobs.get(j) else { break };
                        read_file(path, *format, *cats, *i as u16, &mut sink, &mut reports[*i], progress)?;
                    }
                    Ok((sink, reports))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    });
    let mut sink = Collected::default();
    for r in results {
        let (part, reports) = r?;
        sink.domains.extend(part.domains);
        sink.urls.extend(part.urls);
        sink.sha256.extend(part.sha256);
        sink.md5.extend(part.md5);
        sink.expressions.extend(part.expressions);
        for (total, r) in report.sources.iter_mut().zip(reports) {
            total.merge(r);
        }
    }
    // Keep the sample of bad lines in file order whichever worker read them.
    for s in &mut report.sources {
        s.bad_samples.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    }
    Ok(sink)
}

struct Values {
    table: Vec<Vec<(u16, u128)>>,
    ids: HashMap<Vec<(u16, u128)>, u64>,
}

impl Values {
    fn id(&mut self, v: Vec<(u16, u128)>) -> u64 {
        if let Some(&id) = self.ids.get(&v) {
            return id;
        }
        let id = self.table.len() as u64;
        self.table.push(v.clone());
        self.ids.insert(v, id);
        id
    }
}

/// Sorts entries by key and folds duplicates into one value per key: the list
/// of (source, categories) that name it.
fn grouped<K: Ord>(mut v: Vec<(K, u16, CategorySet)>, values: &mut Values) -> Vec<(K, u64)> {
    v.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut out = Vec::with_capacity(v.len());
    let mut singles: HashMap<(u16, u128), u64> = HashMap::new();
    let mut it = v.into_iter().peekable();
    while let Some((key, src, cats)) = it.next() {
        let first = (src, cats.bits());
        let mut set: Option<Vec<(u16, u128)>> = None;
        while let Some(next) = it.next_if(|n| n.0 == key) {
            let s = set.get_or_insert_with(|| vec![first]);
            match s.last_mut() {
                Some(last) if last.0 == next.1 => last.1 |= next.2.bits(),
                _ => s.push((next.1, next.2.bits())),
            }
        }
        let id = match set {
            // One source names the key: the common case, without allocating.
            None => *singles.entry(first).or_insert_with(|| values.id(vec![first])),
            Some(s) => values.id(s),
        };
        out.push((key, id));
    }
    out
}

fn encode(sink: Collected, sources: Vec<SourceInfo>, built_at: &str, fingerprint: &str) -> Result<Vec<u8>, ListError> {
    let mut values = Values { table: Vec::new(), ids: HashMap::new() };
    let domains = table::build(&grouped(sink.domains, &mut values));
    let urls = table::build(&grouped(sink.urls, &mut values));
    let sha = grouped(sink.sha256, &mut values);
    let md5 = grouped(sink.md5, &mut values);
    let expressions: Vec<(String, u64)> = {
        let mut seen = HashMap::new();
        let mut out: Vec<(String, u64)> = Vec::new();
        for (re, src, cats) in sink.expressions {
            let id = values.id(vec![(src, cats.bits())]);
            if seen.insert((re.clone(), id), ()).is_none() {
                out.push((re, id));
            }
        }
        out
    };
    let header = IndexHeader {
        version: VERSION,
        built_at: built_at.to_string(),
        fingerprint: fingerprint.to_string(),
        sources,
        values: values.table,
        expressions,
        domain_keys: 0,
        url_keys: 0,
        sha256_count: sha.len() as u64,
        md5_count: md5.len() as u64,
    };
    let header_json = serde_json::to_vec(&header).map_err(|e| ListError::BadIndex { path: "<memory>".into(), why: e.to_string() })?;
    let mut out = Vec::with_capacity(domains.len() + urls.len() + header_json.len() + 64);
    out.extend_from_slice(MAGIC);
    let mut section = |bytes: &[u8]| {
        out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        out.extend_from_slice(bytes);
    };
    section(&header_json);
    section(&domains);
    section(&urls);
    section(&sha.iter().flat_map(|(k, _)| k.iter().copied()).collect::<Vec<u8>>());
    section(&sha.iter().flat_map(|(_, v)| (*v as u32).to_le_bytes()).collect::<Vec<u8>>());
    section(&md5.iter().flat_map(|(k, _)| k.iter().copied()).collect::<Vec<u8>>());
    section(&md5.iter().flat_map(|(_, v)| (*v as u32).to_le_bytes()).collect::<Vec<u8>>());
    Ok(out)
}
