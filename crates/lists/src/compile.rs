//! Compiling sources into the bytes of an index file.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use haven_policy::CategorySet;
use serde::{Deserialize, Serialize};

use crate::ListError;
use crate::format::Format;
use crate::index::{IndexHeader, ListIndex, SourceInfo, VERSION};
use crate::source::{Collected, Progress, SourceReport, SourceSpec, Values, plan, read_file};

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
    let (mut domains, mut urls) = ((0usize, 0usize), (0usize, 0usize));
    for (path, format, _) in plans.iter().flatten() {
        let (lines, bytes) = count_lines(path);
        let slot = match format {
            Format::Urls => &mut urls,
            Format::Domains | Format::Hosts | Format::Ut1 => &mut domains,
            _ => continue,
        };
        slot.0 += lines;
        slot.1 += bytes;
    }
    let mut sink = Collected::with_capacity(domains, urls);
    for (i, files) in plans.iter().enumerate() {
        progress.message(&format!("reading {}", specs[i].name));
        for (path, format, cats) in files {
            read_file(path, *format, *cats, i as u16, &mut sink, &mut report.sources[i], progress)?;
        }
    }
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
    let index = encode(sink, header_sources, built_at, &fingerprint(specs))?;
    Ok((index, report))
}

/// Lines and bytes of a file, read in blocks (to size the tables before import).
fn count_lines(path: &std::path::Path) -> (usize, usize) {
    use std::io::Read;
    let Ok(mut f) = std::fs::File::open(path) else { return (0, 0) };
    let mut buf = vec![0u8; 1 << 16];
    let (mut lines, mut bytes) = (0, 0);
    while let Ok(n) = f.read(&mut buf) {
        if n == 0 {
            break;
        }
        bytes += n;
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count();
    }
    (lines + 1, bytes)
}

/// Sorts digests and folds duplicates into one value per digest.
fn grouped<K: Ord + Copy>(mut v: Vec<(K, u16, CategorySet)>, values: &mut Values) -> Vec<(K, u32)> {
    v.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut out: Vec<(K, u32)> = Vec::with_capacity(v.len());
    for (key, src, cats) in v {
        match out.last_mut() {
            Some((k, id)) if *k == key => *id = values.add(Some(*id), src, cats),
            _ => out.push((key, values.add(None, src, cats))),
        }
    }
    out
}

fn encode(sink: Collected, sources: Vec<SourceInfo>, built_at: &str, fingerprint: &str) -> Result<ListIndex, ListError> {
    let Collected { domains, urls, mut values, sha256, md5, expressions } = sink;
    let sha = grouped(sha256, &mut values);
    let md5 = grouped(md5, &mut values);
    let mut seen = HashMap::new();
    let mut exprs: Vec<(String, u64)> = Vec::new();
    for (re, src, cats) in expressions {
        let id = u64::from(values.add(None, src, cats));
        if seen.insert((re.clone(), id), ()).is_none() {
            exprs.push((re, id));
        }
    }
    let header = IndexHeader {
        version: VERSION,
        built_at: built_at.to_string(),
        fingerprint: fingerprint.to_string(),
        sources,
        values: values.table,
        expressions: exprs,
        domain_keys: domains.len() as u64,
        url_keys: urls.len() as u64,
        sha256_count: sha.len() as u64,
        md5_count: md5.len() as u64,
    };
    let ids = |d: Vec<u32>| d.into_iter().flat_map(u32::to_le_bytes).collect::<Vec<u8>>();
    ListIndex::assemble(
        header,
        [
            domains.finish(),
            urls.finish(),
            sha.iter().flat_map(|(k, _)| k.iter().copied()).collect(),
            ids(sha.iter().map(|(_, v)| *v).collect()),
            md5.iter().flat_map(|(k, _)| k.iter().copied()).collect(),
            ids(md5.iter().map(|(_, v)| *v).collect()),
        ],
        std::path::Path::new("<memory>"),
    )
}
