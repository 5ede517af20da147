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
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

pub mod unlisted;
pub use unlisted::Unlisted;

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
    /// A filtering check's probe rather than a person: its result is in the
    /// checks log, so [`read`] leaves it out of people's histories.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub probe: bool,
}

/// What a filter (the DNS filter or the proxy) sees that the safeguarding
/// service should know. The filter only tells, and never waits: the sink
/// queues, and the service decides what becomes an alert.
pub trait Sink: Send + Sync {
    /// Hands one finding over.
    fn tell(&self, finding: Finding);

    /// Hands over a finding a person is waiting on (a block-page report):
    /// resolves to whether it is kept for good, so the page can say "sent"
    /// only when it is. By default the same as [`tell`](Self::tell).
    fn keep(&self, finding: Finding) -> Kept<'_> {
        self.tell(finding);
        Box::pin(std::future::ready(true))
    }
}

/// Whether a finding handed to [`Sink::keep`] is kept.
pub type Kept<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + 'a>>;

/// One finding, as typed values: nothing is written as text to be parsed back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// A search whose words the proxy's classifier found a concern in.
    Search {
        /// Who, where, when.
        seen: Seen,
        /// The words searched for.
        terms: String,
    },
    /// A blocked request or question.
    Blocked {
        /// Who, where, when.
        seen: Seen,
        /// The categories that blocked it.
        categories: haven_policy::CategorySet,
    },
    /// A button pressed on the block page.
    Report {
        /// Who, where (the blocked address), when.
        seen: Seen,
        /// Which button.
        kind: ReportKind,
        /// The block page's reference.
        reference: String,
        /// The categories that blocked it.
        categories: haven_policy::CategorySet,
        /// The rule that blocked it.
        rule: Option<String>,
        /// What the pupil wrote (at most 1,000 characters).
        words: String,
    },
}

impl Finding {
    /// Who, where, when.
    pub fn seen(&self) -> &Seen {
        match self {
            Self::Search { seen, .. } | Self::Blocked { seen, .. } | Self::Report { seen, .. } => seen,
        }
    }
}

/// The block page's two buttons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReportKind {
    /// "I saw something worrying": a safeguarding report, for the DSL.
    Worrying,
    /// "I think this should be allowed": a filtering request, for IT.
    ShouldBeAllowed,
}

impl ReportKind {
    /// The name kept in the record (`worry`, `review`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Worrying => "worry",
            Self::ShouldBeAllowed => "review",
        }
    }
}

/// Who did what, where, when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The school's id, when known.
    pub school: Option<String>,
    /// The person (login), or their device's address when nobody signed in.
    pub person: String,
    /// The device, when known.
    pub device: Option<String>,
    /// The address or name asked for.
    pub url: String,
    /// When.
    pub at: Timestamp,
}

/// A line that is not a query: the writer's note that entries were dropped
/// (the queue was full) or lost (the disk would not take them).
#[derive(Debug, Serialize)]
struct DroppedNote {
    time: String,
    dropped: u64,
    #[serde(skip_serializing_if = "is_zero")]
    lost: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The writer's counts, shared with the writer thread and `/metrics`.
struct Counts {
    /// Queue full, or the line could not be written: not in the log.
    dropped: AtomicU64,
    /// The subset of `dropped` that the disk refused (full, failing).
    lost: AtomicU64,
    written: AtomicU64,
    written_metric: metrics::Counter,
    queue_full_metric: metrics::Counter,
    write_failed_metric: metrics::Counter,
}

impl Counts {
    fn new(prefix: &'static str) -> Self {
        Self {
            dropped: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            written: AtomicU64::new(0),
            written_metric: metrics::counter!("haven_log_lines_written_total", "log" => prefix),
            queue_full_metric: metrics::counter!("haven_log_lines_dropped_total", "log" => prefix, "reason" => "queue_full"),
            write_failed_metric: metrics::counter!("haven_log_lines_dropped_total", "log" => prefix, "reason" => "write_failed"),
        }
    }

    fn queue_full(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        self.queue_full_metric.increment(1);
    }

    fn write_failed(&self, lines: u64) {
        self.dropped.fetch_add(lines, Ordering::Relaxed);
        self.lost.fetch_add(lines, Ordering::Relaxed);
        self.write_failed_metric.increment(lines);
    }

    fn written(&self, lines: u64) {
        self.written.fetch_add(lines, Ordering::Relaxed);
        self.written_metric.increment(lines);
    }
}

/// The asynchronous log writer.
pub struct LogWriter {
    prefix: &'static str,
    tx: Mutex<Option<SyncSender<QueryLog>>>,
    counts: Arc<Counts>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl LogWriter {
    /// Starts a writer into `dir/<prefix>-YYYY-MM-DD.jsonl` (`dns`, `proxy`)
    /// with room for `capacity` queued entries.
    pub fn start(dir: &Path, prefix: &'static str, capacity: usize) -> std::io::Result<Arc<Self>> {
        std::fs::create_dir_all(dir)?;
        let (tx, rx) = sync_channel(capacity.max(1));
        let counts = Arc::new(Counts::new(prefix));
        let (c, dir) = (counts.clone(), dir.to_path_buf());
        let thread = std::thread::Builder::new().name("haven-query-log".into()).spawn(move || write_loop(&dir, prefix, &rx, &c))?;
        Ok(Arc::new(Self { prefix, tx: Mutex::new(Some(tx)), counts, thread: Mutex::new(Some(thread)) }))
    }

    /// A writer that keeps nothing (logging switched off).
    pub fn disabled() -> Arc<Self> {
        Arc::new(Self { prefix: "", tx: Mutex::new(None), counts: Arc::new(Counts::new("off")), thread: Mutex::new(None) })
    }

    /// Queues an entry; never blocks.
    pub fn log(&self, entry: QueryLog) {
        let Ok(tx) = self.tx.lock() else { return };
        if let Some(tx) = tx.as_ref()
            && let Err(TrySendError::Full(_)) = tx.try_send(entry)
        {
            self.counts.queue_full();
        }
    }

    /// The file prefix (`dns`, `proxy`; empty when disabled).
    pub fn prefix(&self) -> &'static str {
        self.prefix
    }

    /// Entries not in the log: dropped because the writer fell behind, or
    /// [lost](Self::lost) because the disk would not take them.
    pub fn dropped(&self) -> u64 {
        self.counts.dropped.load(Ordering::Relaxed)
    }

    /// Entries lost because writing them failed (a full disk, a failing
    /// device, a log folder that cannot be written).
    pub fn lost(&self) -> u64 {
        self.counts.lost.load(Ordering::Relaxed)
    }

    /// Entries written (handed to the file system).
    pub fn written(&self) -> u64 {
        self.counts.written.load(Ordering::Relaxed)
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

fn file_for(dir: &Path, prefix: &str, day: &str) -> std::io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(dir.join(format!("{prefix}-{day}.jsonl")))
}

/// Bytes gathered before a write; also written after 200 ms without entries.
const BATCH_BYTES: usize = 1 << 16;

/// One day's file and the lines not yet handed to it. Lines are counted as
/// written only when the file system took them, and as lost when it refused.
struct DayFile {
    day: String,
    file: File,
    pending: Vec<u8>,
    pending_lines: u64,
    /// When lines were last handed to the file: a steady trickle is written
    /// within a second, not held until the batch fills.
    handed: std::time::Instant,
}

/// The writer thread's state.
struct Writer<'a> {
    dir: &'a Path,
    prefix: &'a str,
    counts: &'a Counts,
    current: Option<DayFile>,
    reported_dropped: u64,
    reported_lost: u64,
    last_complaint: Option<std::time::Instant>,
}

impl Writer<'_> {
    fn add(&mut self, entry: &QueryLog) {
        let day = entry.time.get(..10).unwrap_or("unknown").to_string();
        if self.current.as_ref().is_none_or(|f| f.day != day) {
            self.flush();
            self.current = None;
            match file_for(self.dir, self.prefix, &day) {
                Ok(file) => {
                    self.current = Some(DayFile { day, file, pending: Vec::with_capacity(BATCH_BYTES), pending_lines: 0, handed: std::time::Instant::now() });
                }
                Err(e) => {
                    self.counts.write_failed(1);
                    self.complain(&e);
                    return;
                }
            }
        }
        let Some(f) = self.current.as_mut() else { return };
        if serde_json::to_writer(&mut f.pending, entry).is_ok() {
            f.pending.push(b'\n');
            f.pending_lines += 1;
        }
        if f.pending.len() >= BATCH_BYTES || f.handed.elapsed() >= Duration::from_secs(1) {
            self.flush();
        }
    }

    /// Hands the pending lines to the file: written, or lost when it fails.
    fn flush(&mut self) {
        let noted = self.note_drops();
        let Some(f) = self.current.as_mut() else { return };
        if f.pending.is_empty() {
            return;
        }
        let result = f.file.write_all(&f.pending);
        f.handed = std::time::Instant::now();
        let lines = f.pending_lines;
        f.pending.clear();
        f.pending_lines = 0;
        match result {
            Ok(()) => {
                self.counts.written(lines);
                // The gap is told once it is in a file, not when it was queued.
                if let Some((dropped, lost)) = noted {
                    (self.reported_dropped, self.reported_lost) = (dropped, lost);
                }
            }
            Err(e) => {
                // Part of the batch may be on disk, cut mid-line: a reader
                // skips what does not parse, so every line is counted lost.
                self.counts.write_failed(lines);
                self.complain(&e);
            }
        }
    }

    /// Says why lines are being lost, at most once a minute.
    fn complain(&mut self, e: &std::io::Error) {
        if self.last_complaint.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
            self.last_complaint = Some(std::time::Instant::now());
            tracing::error!(
                "haven: cannot write the {} log in {}: {e}; lines are being lost ({} so far). Free some disk space or fix the folder's permissions",
                self.prefix,
                self.dir.display(),
                self.counts.lost.load(Ordering::Relaxed)
            );
        }
    }

    /// Adds a line saying how many entries were dropped or lost since the
    /// last such line that reached a file, so a reader of the log sees the
    /// gap. Returns the totals it covers.
    fn note_drops(&mut self) -> Option<(u64, u64)> {
        let dropped = self.counts.dropped.load(Ordering::Relaxed);
        let lost = self.counts.lost.load(Ordering::Relaxed);
        let f = self.current.as_mut()?;
        if dropped <= self.reported_dropped {
            return None;
        }
        let (d, l) = (dropped - self.reported_dropped, lost - self.reported_lost);
        if d > l && self.last_complaint.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
            self.last_complaint = Some(std::time::Instant::now());
            tracing::warn!("haven: the {} log fell behind; {} entries were dropped", self.prefix, d - l);
        }
        let note = DroppedNote { time: Timestamp::now().to_string(), dropped: d, lost: l };
        if serde_json::to_writer(&mut f.pending, &note).is_ok() {
            f.pending.push(b'\n');
        }
        Some((dropped, lost))
    }
}

fn write_loop(dir: &Path, prefix: &str, rx: &Receiver<QueryLog>, counts: &Counts) {
    let mut w = Writer { dir, prefix, counts, current: None, reported_dropped: 0, reported_lost: 0, last_complaint: None };
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(e) => w.add(&e),
            Err(RecvTimeoutError::Timeout) => w.flush(),
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    w.flush();
    // The note about the last drops, if flushing found any.
    w.flush();
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
            if t >= since && until.is_none_or(|u| t < u) && !entry.probe && keep(&entry) {
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

    /// A full disk: the day's file is `/dev/full`, where every write fails
    /// with "no space left on device". Every line is counted as lost, none
    /// as written; the next day's file, on a working disk, is written.
    #[cfg(target_os = "linux")]
    #[test]
    fn lines_the_disk_refuses_are_counted_as_lost() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/dev/full", dir.path().join("dns-2026-12-01.jsonl")).unwrap();
        let w = LogWriter::start(dir.path(), "dns", 100_000).unwrap();
        for i in 0..5_000 {
            w.log(entry(i));
        }
        for i in 0..10 {
            w.log(QueryLog { time: "2026-12-02T08:00:00Z".into(), ..entry(i) });
        }
        w.shutdown();
        assert_eq!(w.lost(), 5_000, "every line for the full disk is lost, and counted");
        assert_eq!(w.dropped(), 5_000, "lost lines are among the dropped");
        assert_eq!(w.written(), 10, "only the next day's lines reached a file");
        let next = std::fs::read_to_string(dir.path().join("dns-2026-12-02.jsonl")).unwrap();
        assert_eq!(next.lines().filter(|l| l.contains("\"name\"")).count(), 10);
        assert!(next.contains("\"lost\":5000"), "the gap is written where the log can be written: {next}");
    }
}
