//! The access log, one format for the DNS filter and the proxy: one JSON line
//! per question or request, written by its own thread through a bounded
//! queue, so logging never delays an answer. When the writer falls behind,
//! entries are counted as dropped and the gap is written into the log itself;
//! on shutdown everything queued is written.
//!
//! Files are `<dir>/dns-YYYY-MM-DD.jsonl` and `<dir>/proxy-YYYY-MM-DD.jsonl`
//! (UTC dates), created readable by the owner only: they attribute browsing
//! to named pupils.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// One logged question (DNS) or request (proxy).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct QueryLog {
    /// When it was answered (RFC 3339, UTC).
    pub time: String,
    /// The client's address.
    pub client: String,
    /// The device, when known (DoH token or device record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// The user, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The group whose policy applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The school, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub school: Option<String>,
    /// The name asked for (the host, for the proxy).
    pub name: String,
    /// The record type asked for (`A`, `AAAA`, …); for the proxy, the method (`GET`, `CONNECT`).
    pub qtype: String,
    /// `allow`, `block`, `safesearch`, `canary`, `refused`, `servfail`; the
    /// proxy adds `error` (the origin failed) and `denied` (authentication).
    pub action: String,
    /// The categories the lists give the name.
    #[serde(default)]
    pub categories: Vec<String>,
    /// The deciding rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// `udp`, `tcp` or `doh`; `http`, `connect` or `tls-sni` for the proxy.
    pub transport: String,
    /// Microseconds from question to answer (to the response head, for the proxy).
    pub micros: u64,
    /// Proxy: the full URL (HTTP, or HTTPS seen through inspection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Proxy: the status sent to the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Proxy: the words searched for, when the request was a search.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<String>,
    /// Proxy: what the monitoring classifier found in the search (`Vulnerable person:4`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub concerns: Vec<String>,
    /// Proxy: the highest level among `concerns`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<u8>,
    /// Proxy: the block page's reference number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// What a filter (the DNS filter or the proxy) sees that the safeguarding
/// service should know: searches with a concern, and blocked attempts. The
/// service decides what becomes an alert; the filter only tells, and never waits.
pub trait Sink: Send + Sync {
    /// A search whose words the classifier found a concern in.
    fn search(&self, seen: Seen, terms: &str);
    /// A blocked request or question, with the category ids that blocked it.
    fn blocked(&self, seen: Seen, categories: Vec<String>);
}

/// Who did what, where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The school's id, when known.
    pub school: Option<String>,
    /// The person (login), or their device's address when nobody signed in.
    pub person: String,
    /// The address or name asked for.
    pub url: String,
}

/// A line that is not a query: the writer's note that entries were dropped.
#[derive(Debug, Serialize)]
struct DroppedNote {
    time: String,
    dropped: u64,
}

/// The asynchronous log writer.
pub struct LogWriter {
    prefix: &'static str,
    tx: Mutex<Option<SyncSender<QueryLog>>>,
    dropped: Arc<AtomicU64>,
    written: Arc<AtomicU64>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl LogWriter {
    /// Starts a writer into `dir/<prefix>-YYYY-MM-DD.jsonl` (`dns`, `proxy`)
    /// with room for `capacity` queued entries.
    pub fn start(dir: &Path, prefix: &'static str, capacity: usize) -> std::io::Result<Arc<Self>> {
        std::fs::create_dir_all(dir)?;
        let (tx, rx) = sync_channel(capacity.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let written = Arc::new(AtomicU64::new(0));
        let (d, w, dir) = (dropped.clone(), written.clone(), dir.to_path_buf());
        let thread = std::thread::Builder::new().name("haven-query-log".into()).spawn(move || write_loop(&dir, prefix, &rx, &d, &w))?;
        Ok(Arc::new(Self { prefix, tx: Mutex::new(Some(tx)), dropped, written, thread: Mutex::new(Some(thread)) }))
    }

    /// A writer that keeps nothing (logging switched off).
    pub fn disabled() -> Arc<Self> {
        Arc::new(Self { prefix: "", tx: Mutex::new(None), dropped: Arc::default(), written: Arc::default(), thread: Mutex::new(None) })
    }

    /// Queues an entry; never blocks.
    pub fn log(&self, entry: QueryLog) {
        let Ok(tx) = self.tx.lock() else { return };
        if let Some(tx) = tx.as_ref()
            && let Err(TrySendError::Full(_)) = tx.try_send(entry)
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The file prefix (`dns`, `proxy`; empty when disabled).
    pub fn prefix(&self) -> &'static str {
        self.prefix
    }

    /// Entries dropped because the writer fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Entries written.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Writes everything queued and stops the writer.
    pub fn shutdown(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        if let Some(t) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
    }
}

fn file_for(dir: &Path, prefix: &str, day: &str) -> std::io::Result<BufWriter<File>> {
    let mut opts = OpenOptions::new();
    opts.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    Ok(BufWriter::with_capacity(1 << 16, opts.open(dir.join(format!("{prefix}-{day}.jsonl")))?))
}

fn write_loop(dir: &Path, prefix: &str, rx: &Receiver<QueryLog>, dropped: &AtomicU64, written: &AtomicU64) {
    let mut current: Option<(String, BufWriter<File>)> = None;
    let mut reported = 0u64;
    loop {
        let entry = match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(e) => Some(e),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let Some(entry) = entry else {
            note_drops(&mut current, dropped, &mut reported);
            if let Some((_, w)) = current.as_mut() {
                let _ = w.flush();
            }
            continue;
        };
        let day = entry.time.get(..10).unwrap_or("unknown").to_string();
        if current.as_ref().is_none_or(|(d, _)| *d != day) {
            if let Some((_, mut w)) = current.take() {
                let _ = w.flush();
            }
            match file_for(dir, prefix, &day) {
                Ok(w) => current = Some((day, w)),
                Err(e) => {
                    eprintln!("haven: cannot write the query log in {}: {e}", dir.display());
                    dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            }
        }
        if let Some((_, w)) = current.as_mut()
            && serde_json::to_writer(&mut *w, &entry).is_ok()
            && w.write_all(b"\n").is_ok()
        {
            written.fetch_add(1, Ordering::Relaxed);
        }
        note_drops(&mut current, dropped, &mut reported);
    }
    note_drops(&mut current, dropped, &mut reported);
    if let Some((_, mut w)) = current {
        let _ = w.flush();
    }
}

/// Writes a line saying how many entries were dropped since the last such
/// line, so a reader of the log sees the gap (and says so on stderr).
fn note_drops(current: &mut Option<(String, BufWriter<File>)>, dropped: &AtomicU64, reported: &mut u64) {
    let d = dropped.load(Ordering::Relaxed);
    let Some((_, w)) = current.as_mut() else { return };
    if d > *reported {
        eprintln!("haven: the query log fell behind; {} entries were dropped", d - *reported);
        let note = DroppedNote { time: Timestamp::now().to_string(), dropped: d - *reported };
        if serde_json::to_writer(&mut *w, &note).is_ok() {
            let _ = w.write_all(b"\n");
        }
        *reported = d;
    }
}

/// Reads logged questions and requests (DNS and proxy) from `dir` between `since` and `until` that `keep` accepts.
pub fn read(dir: &Path, since: Timestamp, until: Option<Timestamp>, mut keep: impl FnMut(&QueryLog) -> bool) -> std::io::Result<Vec<QueryLog>> {
    let since_day = since.to_string()[..10].to_string();
    let until_day = until.map(|u| u.to_string()[..10].to_string());
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.flatten().map(|e| e.path()).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    files.retain(|p| {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let rest = name.strip_prefix("dns-").or_else(|| name.strip_prefix("proxy-"));
        let Some(day) = rest.and_then(|n| n.strip_suffix(".jsonl")) else { return false };
        day >= since_day.as_str() && until_day.as_deref().is_none_or(|u| day <= u)
    });
    files.sort();
    let mut out: Vec<QueryLog> = Vec::new();
    for f in files {
        for line in BufReader::new(File::open(&f)?).lines() {
            let line = line?;
            let Ok(entry) = serde_json::from_str::<QueryLog>(&line) else { continue };
            let Ok(t) = entry.time.parse::<Timestamp>() else { continue };
            if t >= since && until.is_none_or(|u| t < u) && keep(&entry) {
                out.push(entry);
            }
        }
    }
    // DNS and proxy files of one day interleave in time.
    out.sort_by(|a, b| a.time.cmp(&b.time));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: usize) -> QueryLog {
        QueryLog {
            time: "2026-12-01T10:00:00Z".into(),
            client: "127.0.0.1".into(),
            device: None,
            user: Some("pupil".into()),
            group: None,
            school: None,
            name: format!("n{i}.example"),
            qtype: "A".into(),
            action: "allow".into(),
            categories: vec![],
            rule: None,
            transport: "udp".into(),
            micros: 1,
            ..Default::default()
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_and_shutdown_writes_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let w = LogWriter::start(dir.path(), "dns", 4).unwrap();
        for i in 0..20_000 {
            w.log(entry(i));
        }
        w.shutdown();
        let (written, dropped) = (w.written(), w.dropped());
        assert_eq!(written + dropped, 20_000);
        assert!(dropped > 0, "a 4-entry queue cannot keep up with 20,000 at once");
        let text = std::fs::read_to_string(dir.path().join("dns-2026-12-01.jsonl")).unwrap();
        assert_eq!(text.lines().filter(|l| l.contains("\"name\"")).count() as u64, written);
        assert!(text.contains("\"dropped\""), "the gap is written into the log");
        let since = "2026-12-01T00:00:00Z".parse().unwrap();
        assert_eq!(read(dir.path(), since, None, |e| e.user.as_deref() == Some("pupil")).unwrap().len() as u64, written);
    }
}
