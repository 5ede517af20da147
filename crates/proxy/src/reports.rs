//! What pupils send from the block page: "I think this should be allowed"
//! (a review request) and "I saw something worrying" (a report). With the
//! safeguarding record behind the proxy they go to it as typed findings;
//! a proxy running alone keeps them as JSON lines in its data folder,
//! owner-only, which `haven reports` also lists.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// One button press.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// When (RFC 3339, UTC).
    pub time: String,
    /// `review` (should be allowed) or `worry` (saw something worrying).
    pub kind: String,
    /// The block page's reference.
    pub reference: String,
    /// The person, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Their group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Their address.
    pub client: String,
    /// What was blocked.
    pub url: String,
    /// Its categories.
    #[serde(default)]
    pub categories: Vec<String>,
    /// The rule that blocked it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// What the pupil wrote, if anything (at most 1,000 characters).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

/// A block the pupil may still press a button about.
#[derive(Debug, Clone)]
pub struct Blocked {
    /// Who.
    pub user: Option<String>,
    /// Their group.
    pub group: Option<String>,
    /// Their address.
    pub client: String,
    /// What.
    pub url: String,
    /// Categories.
    pub categories: Vec<String>,
    /// Rule.
    pub rule: Option<String>,
    /// The school, when known.
    pub school: Option<String>,
    /// The device, when known.
    pub device: Option<String>,
    /// The categories that blocked it, typed.
    pub blocking: haven_policy::CategorySet,
}

/// Recent blocks by reference (so a button can only report a real block) and the report file.
pub struct Reports {
    path: PathBuf,
    recent: Mutex<(HashMap<String, Blocked>, VecDeque<String>)>,
    capacity: usize,
}

impl Reports {
    /// Reports kept in `path`, remembering the last `capacity` blocks.
    pub fn new(path: PathBuf, capacity: usize) -> Self {
        Self { path, recent: Mutex::new((HashMap::new(), VecDeque::new())), capacity }
    }

    /// Remembers a block under its reference.
    pub fn remember(&self, reference: &str, b: Blocked) {
        let Ok(mut r) = self.recent.lock() else { return };
        let (map, order) = &mut *r;
        if order.len() >= self.capacity
            && let Some(old) = order.pop_front()
        {
            map.remove(&old);
        }
        order.push_back(reference.to_string());
        map.insert(reference.to_string(), b);
    }

    /// The block a reference was issued for, if it is still remembered.
    pub fn recall(&self, reference: &str) -> Option<Blocked> {
        self.recent.lock().ok().and_then(|r| r.0.get(reference).cloned())
    }

    /// Records a button press for a remembered block in the report file
    /// (a proxy running without the safeguarding record); `None` when the
    /// reference is unknown.
    pub fn record(&self, kind: &str, reference: &str, note: &str, time: &str) -> std::io::Result<Option<Report>> {
        let Some(b) = self.recall(reference) else { return Ok(None) };
        let report = Report {
            time: time.to_string(),
            kind: kind.to_string(),
            reference: reference.to_string(),
            user: b.user,
            group: b.group,
            client: b.client,
            url: b.url,
            categories: b.categories,
            rule: b.rule,
            note: note.chars().take(1000).collect(),
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut opts = std::fs::OpenOptions::new();
        opts.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&self.path)?;
        let mut line = serde_json::to_vec(&report).map_err(std::io::Error::other)?;
        line.push(b'\n');
        f.write_all(&line)?;
        Ok(Some(report))
    }
}

/// Reads every report in `path` (none if it does not exist).
pub fn read(path: &Path) -> std::io::Result<Vec<Report>> {
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for line in std::io::BufReader::new(f).lines() {
        if let Ok(r) = serde_json::from_str(&line?) {
            out.push(r);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_real_references_are_recorded_and_old_ones_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let r = Reports::new(dir.path().join("reports.jsonl"), 2);
        let b = |u: &str| Blocked {
            user: Some("p1".into()),
            group: None,
            client: "127.0.0.1".into(),
            url: u.into(),
            categories: vec![],
            rule: None,
            school: None,
            device: None,
            blocking: haven_policy::CategorySet::EMPTY,
        };
        r.remember("A", b("http://a.example/"));
        r.remember("B", b("http://b.example/"));
        r.remember("C", b("http://c.example/"));
        assert!(r.record("review", "A", "", "t").unwrap().is_none(), "forgotten");
        assert!(r.record("review", "nope", "", "t").unwrap().is_none());
        let rep = r.record("worry", "C", "it showed something scary", "t").unwrap().unwrap();
        assert_eq!(rep.url, "http://c.example/");
        assert_eq!(read(&dir.path().join("reports.jsonl")).unwrap(), vec![rep]);
    }
}
