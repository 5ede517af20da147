//! Backups that restore: one encrypted file holding a consistent snapshot of
//! the record, the evidence files, the record's key folder and the config file.
//!
//! The record is dumped logically, every table as typed rows read inside one
//! transaction (a `BEGIN` read transaction on SQLite in WAL mode, REPEATABLE
//! READ on PostgreSQL), so a backup taken on either back end restores into
//! either, with no `pg_dump` version to match. The file:
//!
//! ```text
//! HAVEN-BACKUP\n | u32 header length | header (JSON: format, KDF and its parameters, salt, nonce prefix, chunk size)
//! then chunks:   | u32 length | ChaCha20-Poly1305(chunk), nonce = prefix(7) ‖ counter(4) ‖ last(1), AAD = the header bytes
//! ```
//!
//! The key is argon2id of the passphrase and the salt. The plain stream is a
//! sequence of entries (`kind`, u64 length, bytes): the manifest first, then
//! each table (its columns, then its rows as JSON arrays), each file (evidence,
//! keys, config), and an end mark. A wrong passphrase is told by a check of the
//! key in the header; a damaged or cut-short file fails where it is damaged,
//! and the last chunk is marked, so a truncation is always seen.
//!
//! A restore reads the whole file once to check it (authenticity, manifest,
//! row counts, evidence hashes) before anything is written, then writes the
//! evidence and keys into staging folders and the rows in one transaction,
//! and moves the staged folders into place only once the rows are committed.
//! On SQLite the rows go into a new database file that replaces `haven.db`
//! only when complete.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, AssertSqlSafe, Row};

use crate::{Backend, Store, StoreError};

/// What a backup file starts with.
pub const MAGIC: &[u8] = b"HAVEN-BACKUP\n";
/// The format this Haven writes (and the newest it reads).
pub const FORMAT: u32 = 1;
/// Plain bytes per encrypted chunk.
const CHUNK: usize = 1 << 20;
/// Rows read per query while dumping a table (inside the one transaction).
const PAGE: i64 = 5000;
/// The migrations' own table: not dumped, the schema version is in the manifest.
const MIGRATIONS_TABLE: &str = "_sqlx_migrations";

/// Why a backup could not be made, read or restored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// The record failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A file could not be read or written.
    #[error("{what}: {source}")]
    Io {
        /// Which file or folder, and what was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// The passphrase does not open this file.
    #[error("the passphrase does not open this backup (it is not the one it was made with); nothing was restored")]
    WrongPassphrase,
    /// The file is not a backup, is damaged or cut short.
    #[error("the backup is damaged: {0}; nothing was restored")]
    Damaged(String),
    /// A backup this Haven cannot restore.
    #[error("{0}")]
    Refused(String),
}

impl From<sqlx::Error> for BackupError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(StoreError::Db(e))
    }
}

impl From<sqlx::migrate::MigrateError> for BackupError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        Self::Store(StoreError::Migrate(e))
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BackupError {
    let what = what.into();
    move |source| BackupError::Io { what, source }
}

/// The argon2id parameters that turn a passphrase into the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory, KiB.
    pub m_kib: u32,
    /// Passes.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl Default for KdfParams {
    /// 64 MiB, 3 passes, 1 lane (about a second on a small server).
    fn default() -> Self {
        Self { m_kib: 64 * 1024, t_cost: 3, p_cost: 1 }
    }
}

/// The file's header, in the clear (and bound to every chunk as associated data).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Header {
    format: u32,
    kdf: String,
    #[serde(flatten)]
    params: KdfParams,
    salt: String,
    nonce_prefix: String,
    cipher: String,
    chunk: u32,
    key_check: String,
}

/// One evidence file as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSum {
    /// SHA-256 of the bytes as kept on disk, hex.
    pub sha256: String,
    /// Bytes.
    pub size: u64,
}

/// What a backup holds, written first in it and checked on restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The format.
    pub format: u32,
    /// The Haven that wrote it.
    pub haven_version: String,
    /// When, unix ms.
    pub created_ms: i64,
    /// When, RFC 3339.
    pub created: String,
    /// `sqlite` or `postgres`.
    pub backend: String,
    /// The newest migration applied to the record.
    pub schema_version: i64,
    /// Rows per table.
    pub tables: BTreeMap<String, u64>,
    /// Evidence files by their path under the evidence folder.
    pub evidence: BTreeMap<String, FileSum>,
    /// Files of the key folder by name.
    pub keys: BTreeMap<String, FileSum>,
    /// The config file: where it was, and its sum.
    pub config: Option<(String, FileSum)>,
    /// Other folders kept (the trust's own model head, the school CA), by
    /// name, each file by its path under the folder.
    #[serde(default)]
    pub folders: BTreeMap<String, BTreeMap<String, FileSum>>,
}

/// Where a backup's files come from.
#[derive(Debug, Clone)]
pub struct Sources {
    /// The evidence folder (`<data>/evidence`); absent is empty.
    pub evidence_dir: PathBuf,
    /// The record's key folder; absent means no key has been made yet.
    pub key_dir: PathBuf,
    /// The config file, if Haven runs from one.
    pub config: Option<PathBuf>,
    /// Other folders to keep, by name (`model`, `ca`); absent ones are empty.
    pub folders: Vec<(String, PathBuf)>,
    /// This Haven's version.
    pub haven_version: String,
}

/// The newest migration this Haven knows for `backend`.
pub fn known_schema_version(backend: Backend) -> i64 {
    let m = match backend {
        Backend::Sqlite => &crate::SQLITE,
        Backend::Postgres => &crate::POSTGRES,
    };
    m.iter().map(|m| m.version).max().unwrap_or(0)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A file's SHA-256 and size, as a manifest lists it.
pub fn file_sum(bytes: &[u8]) -> FileSum {
    sum(bytes)
}

fn sum(bytes: &[u8]) -> FileSum {
    FileSum { sha256: hex(&Sha256::digest(bytes)), size: bytes.len() as u64 }
}

fn random<const N: usize>() -> [u8; N] {
    let mut raw = [0u8; N];
    getrandom::fill(&mut raw).expect("the operating system's random source");
    raw
}

/// The cipher for a passphrase, and a short check of the key (kept in the
/// header, so a wrong passphrase is told apart from a damaged file).
fn derive(pass: &[u8], salt: &[u8], p: KdfParams) -> Result<(ChaCha20Poly1305, String), BackupError> {
    let params = argon2::Params::new(p.m_kib, p.t_cost, p.p_cost, Some(32)).map_err(|e| BackupError::Damaged(format!("key derivation parameters: {e}")))?;
    let mut key = [0u8; 32];
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password_into(pass, salt, &mut key)
        .map_err(|e| BackupError::Refused(format!("the passphrase cannot be used: {e}")))?;
    let check = Sha256::new().chain_update(b"haven backup key check\n").chain_update(key).finalize();
    Ok((ChaCha20Poly1305::new(&key.into()), hex(&check[..16])))
}

fn nonce(prefix: &[u8; 7], counter: u32, last: bool) -> Nonce {
    let mut n = [0u8; 12];
    n[..7].copy_from_slice(prefix);
    n[7..11].copy_from_slice(&counter.to_be_bytes());
    n[11] = u8::from(last);
    Nonce::from(n)
}

/// Encrypts a plain stream into chunks.
struct Sealing<W: Write> {
    out: W,
    cipher: ChaCha20Poly1305,
    prefix: [u8; 7],
    aad: Vec<u8>,
    counter: u32,
    buf: Vec<u8>,
    written: u64,
}

impl<W: Write> Sealing<W> {
    fn new(mut out: W, pass: &[u8], params: KdfParams) -> Result<Self, BackupError> {
        let salt: [u8; 16] = random();
        let prefix: [u8; 7] = random();
        let (cipher, key_check) = derive(pass, &salt, params)?;
        let b64 = base64::engine::general_purpose::STANDARD;
        let header = Header {
            format: FORMAT,
            kdf: "argon2id".into(),
            params,
            salt: b64.encode(salt),
            nonce_prefix: b64.encode(prefix),
            cipher: "chacha20poly1305".into(),
            chunk: CHUNK as u32,
            key_check,
        };
        let json = serde_json::to_vec(&header).expect("a header serialises");
        let mut aad = MAGIC.to_vec();
        aad.extend_from_slice(&(json.len() as u32).to_be_bytes());
        aad.extend_from_slice(&json);
        out.write_all(&aad).map_err(io("writing the backup"))?;
        Ok(Self { out, cipher, prefix, aad, counter: 0, buf: Vec::with_capacity(CHUNK), written: 0 })
    }

    fn flush_chunk(&mut self, last: bool) -> std::io::Result<()> {
        let n = nonce(&self.prefix, self.counter, last);
        let sealed = self.cipher.encrypt(&n, Payload { msg: &self.buf, aad: &self.aad }).map_err(|_| std::io::Error::other("encryption failed"))?;
        self.out.write_all(&(sealed.len() as u32).to_be_bytes())?;
        self.out.write_all(&sealed)?;
        self.counter = self.counter.checked_add(1).ok_or_else(|| std::io::Error::other("backup too large"))?;
        self.buf.clear();
        Ok(())
    }

    fn finish(mut self) -> Result<W, BackupError> {
        self.flush_chunk(true).map_err(io("writing the backup"))?;
        self.out.flush().map_err(io("writing the backup"))?;
        Ok(self.out)
    }
}

impl<W: Write> Write for Sealing<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        self.written += n as u64;
        if self.buf.len() == CHUNK {
            self.flush_chunk(false)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Decrypts chunks back into the plain stream.
struct Opening<R: Read> {
    input: R,
    cipher: ChaCha20Poly1305,
    prefix: [u8; 7],
    aad: Vec<u8>,
    counter: u32,
    plain: Vec<u8>,
    at: usize,
    done: bool,
    failure: Option<BackupError>,
}

fn read_exact_or_eof<R: Read>(r: &mut R, buf: &mut [u8]) -> std::io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "cut short")),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

impl<R: Read> Opening<R> {
    fn new(mut input: R, pass: &[u8]) -> Result<Self, BackupError> {
        let mut magic = vec![0u8; MAGIC.len()];
        if !read_exact_or_eof(&mut input, &mut magic).unwrap_or(false) || magic != MAGIC {
            return Err(BackupError::Damaged("it is not a Haven backup (no HAVEN-BACKUP header)".into()));
        }
        let mut len = [0u8; 4];
        read_exact_or_eof(&mut input, &mut len).map_err(|e| BackupError::Damaged(e.to_string()))?;
        let len = u32::from_be_bytes(len) as usize;
        if len > 64 * 1024 {
            return Err(BackupError::Damaged("its header is too long".into()));
        }
        let mut json = vec![0u8; len];
        read_exact_or_eof(&mut input, &mut json).map_err(|e| BackupError::Damaged(e.to_string()))?;
        let header: Header = serde_json::from_slice(&json).map_err(|e| BackupError::Damaged(format!("its header: {e}")))?;
        if header.format > FORMAT {
            return Err(BackupError::Refused(format!(
                "this backup is in format {} from a newer Haven; this Haven reads format {FORMAT} and older: restore it with a Haven at least as new as the one that made it",
                header.format
            )));
        }
        if header.kdf != "argon2id" || header.cipher != "chacha20poly1305" || header.chunk as usize != CHUNK {
            return Err(BackupError::Damaged(format!("unknown key derivation or cipher ({}, {}, {})", header.kdf, header.cipher, header.chunk)));
        }
        let b64 = base64::engine::general_purpose::STANDARD;
        let salt = b64.decode(&header.salt).map_err(|_| BackupError::Damaged("its salt".into()))?;
        let prefix: [u8; 7] =
            b64.decode(&header.nonce_prefix).ok().and_then(|p| p.try_into().ok()).ok_or_else(|| BackupError::Damaged("its nonce prefix".into()))?;
        if header.params.m_kib > 4 * 1024 * 1024 || header.params.t_cost > 64 || header.params.p_cost > 64 {
            return Err(BackupError::Damaged("implausible key derivation parameters".into()));
        }
        let (cipher, key_check) = derive(pass, &salt, header.params)?;
        if key_check != header.key_check {
            return Err(BackupError::WrongPassphrase);
        }
        let mut aad = MAGIC.to_vec();
        aad.extend_from_slice(&(len as u32).to_be_bytes());
        aad.extend_from_slice(&json);
        let mut me = Self { input, cipher, prefix, aad, counter: 0, plain: Vec::new(), at: 0, done: false, failure: None };
        me.next_chunk()?;
        Ok(me)
    }

    fn next_chunk(&mut self) -> Result<(), BackupError> {
        let mut len = [0u8; 4];
        match read_exact_or_eof(&mut self.input, &mut len) {
            Ok(true) => {}
            Ok(false) => return Err(BackupError::Damaged("it is cut short (its last part is missing)".into())),
            Err(e) => return Err(BackupError::Io { what: "reading the backup".into(), source: e }),
        }
        let len = u32::from_be_bytes(len) as usize;
        if !(16..=CHUNK + 16).contains(&len) {
            return Err(BackupError::Damaged(format!("part {} has an impossible length", self.counter)));
        }
        let mut sealed = vec![0u8; len];
        read_exact_or_eof(&mut self.input, &mut sealed).map_err(|_| BackupError::Damaged("it is cut short".into()))?;
        for last in [false, true] {
            let n = nonce(&self.prefix, self.counter, last);
            if let Ok(plain) = self.cipher.decrypt(&n, Payload { msg: &sealed, aad: &self.aad }) {
                self.plain = plain;
                self.at = 0;
                self.done = last;
                self.counter += 1;
                if last {
                    let mut extra = [0u8; 1];
                    if read_exact_or_eof(&mut self.input, &mut extra).unwrap_or(true) {
                        return Err(BackupError::Damaged("there are bytes after its last part".into()));
                    }
                }
                return Ok(());
            }
        }
        Err(BackupError::Damaged(format!("part {} does not authenticate", self.counter)))
    }

    fn take_failure(&mut self) -> Option<BackupError> {
        self.failure.take()
    }
}

impl<R: Read> Read for Opening<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.plain.len() {
            if self.done {
                return Ok(0);
            }
            if let Err(e) = self.next_chunk() {
                let msg = e.to_string();
                self.failure = Some(e);
                return Err(std::io::Error::other(msg));
            }
        }
        let n = buf.len().min(self.plain.len() - self.at);
        buf[..n].copy_from_slice(&self.plain[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Kinds of entry in the plain stream.
const E_MANIFEST: u8 = b'M';
const E_TABLE: u8 = b'T';
const E_ROW: u8 = b'R';
const E_FILE: u8 = b'F';
const E_END: u8 = b'E';

fn entry(w: &mut impl Write, kind: u8, body: &[u8]) -> std::io::Result<()> {
    w.write_all(&[kind])?;
    w.write_all(&(body.len() as u64).to_be_bytes())?;
    w.write_all(body)
}

/// Reads the next entry; a failure of the decryption underneath is returned as itself.
fn next_entry<R: Read>(r: &mut Opening<R>) -> Result<(u8, Vec<u8>), BackupError> {
    let mut head = [0u8; 9];
    let damaged = |r: &mut Opening<R>, e: std::io::Error| r.take_failure().unwrap_or_else(|| BackupError::Damaged(format!("its contents: {e}")));
    if let Err(e) = r.read_exact(&mut head) {
        return Err(damaged(r, e));
    }
    let len = u64::from_be_bytes(head[1..].try_into().expect("8 bytes"));
    if len > 1 << 34 {
        return Err(BackupError::Damaged("an entry has an impossible length".into()));
    }
    let mut body = Vec::new();
    if let Err(e) = r.by_ref().take(len).read_to_end(&mut body) {
        return Err(damaged(r, e));
    }
    if body.len() as u64 != len {
        return Err(BackupError::Damaged("it is cut short inside an entry".into()));
    }
    Ok((head[0], body))
}

#[derive(Serialize, Deserialize)]
struct TableHead {
    name: String,
    columns: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct FileHead {
    /// `evidence`, `keys` or `config`.
    area: String,
    path: String,
}

/// The record's tables (not the migrations' own), in an order in which every
/// table comes after the tables its foreign keys name.
async fn tables(conn: &mut sqlx::AnyConnection, backend: Backend) -> Result<Vec<String>, BackupError> {
    let (names, refs): (Vec<String>, Vec<(String, String)>) = match backend {
        Backend::Sqlite => {
            let names = sqlx::query_scalar::<_, String>("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
                .fetch_all(&mut *conn)
                .await?;
            let refs = sqlx::query("SELECT m.name, p.\"table\" FROM sqlite_master m JOIN pragma_foreign_key_list(m.name) p WHERE m.type = 'table'")
                .fetch_all(&mut *conn)
                .await?
                .iter()
                .map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<String, _>(1)?)))
                .collect::<Result<_, sqlx::Error>>()?;
            (names, refs)
        }
        Backend::Postgres => {
            let names = sqlx::query_scalar::<_, String>(
                "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
            )
            .fetch_all(&mut *conn)
            .await?;
            let refs = sqlx::query(
                "SELECT tc.table_name::text, ccu.table_name::text FROM information_schema.table_constraints tc \
                 JOIN information_schema.constraint_column_usage ccu ON tc.constraint_name = ccu.constraint_name AND tc.table_schema = ccu.table_schema \
                 WHERE tc.constraint_type = 'FOREIGN KEY' AND tc.table_schema = current_schema()",
            )
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<String, _>(1)?)))
            .collect::<Result<_, sqlx::Error>>()?;
            (names, refs)
        }
    };
    let names: BTreeSet<String> = names.into_iter().filter(|n| n != MIGRATIONS_TABLE).collect();
    let mut after: BTreeMap<&str, BTreeSet<&str>> = names.iter().map(|n| (n.as_str(), BTreeSet::new())).collect();
    for (child, parent) in &refs {
        if child != parent
            && names.contains(parent)
            && let Some(set) = after.get_mut(child.as_str())
        {
            set.insert(parent.as_str());
        }
    }
    let mut order = Vec::new();
    let mut placed = BTreeSet::new();
    while placed.len() < names.len() {
        let ready: Vec<&str> = after.iter().filter(|(n, deps)| !placed.contains(*n) && deps.iter().all(|d| placed.contains(d))).map(|(n, _)| *n).collect();
        // A cycle: take the rest in name order (the load defers or orders within).
        let ready = if ready.is_empty() { after.keys().copied().filter(|n| !placed.contains(n)).take(1).collect() } else { ready };
        for n in ready {
            placed.insert(n);
            order.push(n.to_string());
        }
    }
    Ok(order)
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// One value as the dump keeps it: integers and reals as JSON numbers, text
/// as a string, booleans, blobs as `{"base64": …}`, NULL as null.
fn value(row: &AnyRow, i: usize) -> Result<Value, sqlx::Error> {
    if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
        return Ok(v.map_or(Value::Null, Value::from));
    }
    if let Ok(v) = row.try_get::<Option<String>, _>(i) {
        return Ok(v.map_or(Value::Null, Value::from));
    }
    if let Ok(v) = row.try_get::<Option<f64>, _>(i) {
        return Ok(v.map_or(Value::Null, Value::from));
    }
    if let Ok(v) = row.try_get::<Option<bool>, _>(i) {
        return Ok(v.map_or(Value::Null, Value::from));
    }
    let v: Option<Vec<u8>> = row.try_get(i)?;
    Ok(v.map_or(Value::Null, |b| serde_json::json!({ "base64": base64::engine::general_purpose::STANDARD.encode(b) })))
}

async fn count(conn: &mut sqlx::AnyConnection, table: &str) -> Result<u64, BackupError> {
    let n: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT COUNT(*) FROM {}", quote(table)))).fetch_one(&mut *conn).await?;
    Ok(n.max(0) as u64)
}

async fn schema_version(conn: &mut sqlx::AnyConnection) -> Result<i64, BackupError> {
    Ok(sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(version) FROM _sqlx_migrations").fetch_one(&mut *conn).await?.unwrap_or(0))
}

/// Every table's rows, in a stable order: a page at a time, each page handed to `each`.
async fn read_table(
    conn: &mut sqlx::AnyConnection,
    table: &str,
    mut each: impl FnMut(&[String], Vec<Value>) -> Result<(), BackupError>,
) -> Result<(), BackupError> {
    let mut offset = 0i64;
    loop {
        // The column count orders by every column, so paging is stable.
        let probe = sqlx::query(AssertSqlSafe(format!("SELECT * FROM {} LIMIT 1", quote(table)))).fetch_optional(&mut *conn).await?;
        let Some(probe) = probe else { return Ok(()) };
        let n = probe.columns().len();
        let columns: Vec<String> = probe.columns().iter().map(|c| sqlx::Column::name(c).to_string()).collect();
        let order: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
        let rows = sqlx::query(AssertSqlSafe(format!("SELECT * FROM {} ORDER BY {} LIMIT {PAGE} OFFSET {offset}", quote(table), order.join(", "))))
            .fetch_all(&mut *conn)
            .await?;
        for row in &rows {
            let values = (0..n).map(|i| value(row, i)).collect::<Result<Vec<_>, _>>()?;
            each(&columns, values)?;
        }
        if (rows.len() as i64) < PAGE {
            return Ok(());
        }
        offset += PAGE;
    }
}

/// Every table's rows, sorted, as JSON: for comparing a record before and
/// after a restore (tests and `haven restore`'s checks).
pub async fn dump(store: &Store) -> Result<BTreeMap<String, Vec<Vec<Value>>>, BackupError> {
    let mut conn = store.pool().acquire().await?;
    let mut out = BTreeMap::new();
    for t in tables(&mut conn, store.backend).await? {
        let mut rows = Vec::new();
        read_table(&mut conn, &t, |_, v| {
            rows.push(v);
            Ok(())
        })
        .await?;
        rows.sort_by_key(|r| serde_json::to_string(r).unwrap_or_default());
        out.insert(t, rows);
    }
    Ok(out)
}

/// Every regular file under `root`, by its path relative to it (`/`-separated), sorted.
fn files_under(root: &Path) -> Result<Vec<String>, BackupError> {
    let mut out = Vec::new();
    if !root.exists() {
        return Ok(out);
    }
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        let dir = root.join(&rel);
        for e in std::fs::read_dir(&dir).map_err(io(format!("reading {}", dir.display())))? {
            let e = e.map_err(io(format!("reading {}", dir.display())))?;
            let name = e.file_name().to_string_lossy().into_owned();
            // Temporary files of a write in progress are not evidence.
            if name.starts_with('.') {
                continue;
            }
            let t = e.file_type().map_err(io(format!("reading {}", dir.display())))?;
            if t.is_dir() {
                todo.push(rel.join(&name));
            } else if t.is_file() {
                out.push(rel.join(&name).to_string_lossy().replace('\\', "/"));
            }
        }
    }
    out.sort();
    Ok(out)
}

fn read_file(path: &Path) -> Result<Vec<u8>, BackupError> {
    std::fs::read(path).map_err(io(format!("reading {}", path.display())))
}

/// Writes a backup of `store` and `src` to `out`, encrypted with `pass`;
/// returns its manifest. The rows are read inside one transaction; an
/// evidence file that changes while the backup is written fails it (run it
/// again).
pub async fn write(store: &Store, src: &Sources, pass: &[u8], params: KdfParams, now: jiff::Timestamp, out: impl Write) -> Result<Manifest, BackupError> {
    if pass.is_empty() {
        return Err(BackupError::Refused("the passphrase is empty".into()));
    }
    let mut tx = store.pool().begin().await?;
    if store.backend == Backend::Postgres {
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await?;
    }
    let order = tables(&mut tx, store.backend).await?;
    let schema = schema_version(&mut tx).await?;
    let mut counts = BTreeMap::new();
    for t in &order {
        counts.insert(t.clone(), count(&mut tx, t).await?);
    }
    let evidence_names = files_under(&src.evidence_dir)?;
    let mut evidence = BTreeMap::new();
    for name in &evidence_names {
        evidence.insert(name.clone(), sum(&read_file(&src.evidence_dir.join(name))?));
    }
    let mut keys = BTreeMap::new();
    let key_names = files_under(&src.key_dir)?;
    let mut key_bytes = Vec::new();
    for name in &key_names {
        let bytes = read_file(&src.key_dir.join(name))?;
        keys.insert(name.clone(), sum(&bytes));
        key_bytes.push((name.clone(), bytes));
    }
    let mut folders = BTreeMap::new();
    let mut folder_bytes = Vec::new();
    for (name, dir) in &src.folders {
        let mut sums = BTreeMap::new();
        for f in files_under(dir)? {
            let bytes = read_file(&dir.join(&f))?;
            sums.insert(f.clone(), sum(&bytes));
            folder_bytes.push((format!("folder:{name}"), f, bytes));
        }
        folders.insert(name.clone(), sums);
    }
    let config = match &src.config {
        Some(p) => {
            let bytes = read_file(p)?;
            Some((p.display().to_string(), bytes))
        }
        None => None,
    };
    let manifest = Manifest {
        format: FORMAT,
        haven_version: src.haven_version.clone(),
        created_ms: now.as_millisecond(),
        created: now.to_string(),
        backend: match store.backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
        .into(),
        schema_version: schema,
        tables: counts,
        evidence,
        keys,
        config: config.as_ref().map(|(p, b)| (p.clone(), sum(b))),
        folders,
    };
    let mut w = Sealing::new(out, pass, params)?;
    let werr = io("writing the backup");
    entry(&mut w, E_MANIFEST, &serde_json::to_vec(&manifest).expect("a manifest serialises")).map_err(werr)?;
    for t in &order {
        let mut head_written = false;
        let mut rows = 0u64;
        read_table(&mut tx, t, |columns, values| {
            if !head_written {
                let head = TableHead { name: t.clone(), columns: columns.to_vec() };
                entry(&mut w, E_TABLE, &serde_json::to_vec(&head).expect("serialises")).map_err(io("writing the backup"))?;
                head_written = true;
            }
            rows += 1;
            entry(&mut w, E_ROW, &serde_json::to_vec(&values).expect("serialises")).map_err(io("writing the backup"))
        })
        .await?;
        if rows != manifest.tables[t] {
            return Err(BackupError::Refused(format!(
                "table {t} changed while it was read ({rows} rows, counted {}); run the backup again",
                manifest.tables[t]
            )));
        }
    }
    tx.rollback().await?;
    for name in &evidence_names {
        let bytes = read_file(&src.evidence_dir.join(name))?;
        if sum(&bytes) != manifest.evidence[name] {
            return Err(BackupError::Refused(format!("evidence file {name} changed while the backup was written; run it again")));
        }
        let head = FileHead { area: "evidence".into(), path: name.clone() };
        entry(&mut w, E_FILE, &serde_json::to_vec(&head).expect("serialises")).map_err(io("writing the backup"))?;
        entry(&mut w, E_FILE, &bytes).map_err(io("writing the backup"))?;
    }
    for (name, bytes) in &key_bytes {
        let head = FileHead { area: "keys".into(), path: name.clone() };
        entry(&mut w, E_FILE, &serde_json::to_vec(&head).expect("serialises")).map_err(io("writing the backup"))?;
        entry(&mut w, E_FILE, bytes).map_err(io("writing the backup"))?;
    }
    for (area, name, bytes) in &folder_bytes {
        let head = FileHead { area: area.clone(), path: name.clone() };
        entry(&mut w, E_FILE, &serde_json::to_vec(&head).expect("serialises")).map_err(io("writing the backup"))?;
        entry(&mut w, E_FILE, bytes).map_err(io("writing the backup"))?;
    }
    if let Some((path, bytes)) = &config {
        let head = FileHead { area: "config".into(), path: path.clone() };
        entry(&mut w, E_FILE, &serde_json::to_vec(&head).expect("serialises")).map_err(io("writing the backup"))?;
        entry(&mut w, E_FILE, bytes).map_err(io("writing the backup"))?;
    }
    entry(&mut w, E_END, b"").map_err(io("writing the backup"))?;
    tracing::info!(bytes = w.written, tables = manifest.tables.len(), evidence = manifest.evidence.len(), "backup written");
    w.finish()?;
    Ok(manifest)
}

/// What the reader meets in a backup, in order.
enum Item {
    Table(TableHead),
    Row(Vec<Value>),
    File(FileHead, Vec<u8>),
}

/// Reads a backup's plain stream: the manifest, then each item to `each`.
fn read_stream<R: Read>(input: R, pass: &[u8], mut each: impl FnMut(&Manifest, Item) -> Result<(), BackupError>) -> Result<Manifest, BackupError> {
    let mut r = Opening::new(input, pass)?;
    let (kind, body) = next_entry(&mut r)?;
    if kind != E_MANIFEST {
        return Err(BackupError::Damaged("its manifest is missing".into()));
    }
    let manifest: Manifest = serde_json::from_slice(&body).map_err(|e| BackupError::Damaged(format!("its manifest: {e}")))?;
    loop {
        let (kind, body) = next_entry(&mut r)?;
        let bad = |what: &str, e: serde_json::Error| BackupError::Damaged(format!("{what}: {e}"));
        match kind {
            E_TABLE => each(&manifest, Item::Table(serde_json::from_slice(&body).map_err(|e| bad("a table", e))?))?,
            E_ROW => each(&manifest, Item::Row(serde_json::from_slice(&body).map_err(|e| bad("a row", e))?))?,
            E_FILE => {
                let head: FileHead = serde_json::from_slice(&body).map_err(|e| bad("a file", e))?;
                let (k, bytes) = next_entry(&mut r)?;
                if k != E_FILE {
                    return Err(BackupError::Damaged(format!("file {} has no contents", head.path)));
                }
                each(&manifest, Item::File(head, bytes))?;
            }
            E_END => break,
            other => return Err(BackupError::Damaged(format!("an unknown entry {other:#x}"))),
        }
    }
    let mut rest = Vec::new();
    match r.read_to_end(&mut rest) {
        Ok(_) if rest.is_empty() => Ok(manifest),
        Ok(_) => Err(BackupError::Damaged("there is data after its end mark".into())),
        Err(e) => Err(r.take_failure().unwrap_or_else(|| BackupError::Damaged(e.to_string()))),
    }
}

/// A relative path from a backup that stays inside its folder.
fn safe_path(p: &str) -> Option<PathBuf> {
    let path = Path::new(p);
    let ok = !p.is_empty() && path.components().all(|c| matches!(c, std::path::Component::Normal(_)));
    ok.then(|| path.to_path_buf())
}

/// A checked backup: its manifest and its config file's bytes (if it holds one).
#[derive(Debug, Clone)]
pub struct Checked {
    /// The manifest.
    pub manifest: Manifest,
    /// The config file as it was backed up.
    pub config: Option<Vec<u8>>,
}

/// Reads the whole backup at `path` and checks it: the passphrase, every
/// chunk, the manifest against the rows and files it holds, and that this
/// Haven's schema is at least as new as the backup's. Writes nothing.
pub fn check(path: &Path, pass: &[u8]) -> Result<Checked, BackupError> {
    let file = std::fs::File::open(path).map_err(io(format!("opening {}", path.display())))?;
    let mut rows: BTreeMap<String, u64> = BTreeMap::new();
    let mut table = String::new();
    let mut files: BTreeMap<(String, String), FileSum> = BTreeMap::new();
    let mut config = None;
    let manifest = read_stream(std::io::BufReader::new(file), pass, |_, item| {
        match item {
            Item::Table(h) => {
                table = h.name;
                rows.entry(table.clone()).or_default();
            }
            Item::Row(_) => *rows.entry(table.clone()).or_default() += 1,
            Item::File(h, bytes) => {
                if h.area != "config" && safe_path(&h.path).is_none() {
                    return Err(BackupError::Damaged(format!("a file path that leaves its folder: {:?}", h.path)));
                }
                if h.area == "config" {
                    config = Some(bytes.clone());
                }
                files.insert((h.area, h.path), sum(&bytes));
            }
        }
        Ok(())
    })?;
    for (t, n) in &manifest.tables {
        let got = rows.get(t).copied().unwrap_or(0);
        if got != *n {
            return Err(BackupError::Damaged(format!("table {t} holds {got} rows, its manifest says {n}")));
        }
    }
    if let Some(t) = rows.keys().find(|t| !manifest.tables.contains_key(*t)) {
        return Err(BackupError::Damaged(format!("table {t} is not in its manifest")));
    }
    let mut want: BTreeMap<(String, String), FileSum> = BTreeMap::new();
    want.extend(manifest.evidence.iter().map(|(p, s)| (("evidence".to_string(), p.clone()), s.clone())));
    want.extend(manifest.keys.iter().map(|(p, s)| (("keys".to_string(), p.clone()), s.clone())));
    want.extend(manifest.config.iter().map(|(p, s)| (("config".to_string(), p.clone()), s.clone())));
    for (name, files) in &manifest.folders {
        want.extend(files.iter().map(|(p, s)| ((format!("folder:{name}"), p.clone()), s.clone())));
    }
    for (k, s) in &want {
        match files.get(k) {
            Some(got) if got == s => {}
            Some(_) => return Err(BackupError::Damaged(format!("{} file {} does not match its SHA-256 in the manifest", k.0, k.1))),
            None => return Err(BackupError::Damaged(format!("{} file {} is missing", k.0, k.1))),
        }
    }
    if files.len() != want.len() {
        return Err(BackupError::Damaged("it holds files its manifest does not list".into()));
    }
    if manifest.format > FORMAT {
        return Err(BackupError::Refused(format!("this backup is in format {} from a newer Haven; restore it with that Haven", manifest.format)));
    }
    Ok(Checked { manifest, config })
}

/// Where a restore puts things.
#[derive(Debug, Clone)]
pub struct Target {
    /// The record: a SQLite data folder (`haven.db` in it) or a `postgres://` URL.
    pub record: Record,
    /// The evidence folder.
    pub evidence_dir: PathBuf,
    /// The record's key folder.
    pub key_dir: PathBuf,
    /// Where the backup's other folders go, by name (`model`, `ca`).
    pub folders: Vec<(String, PathBuf)>,
    /// Replace a record, evidence and key that are not empty (the old
    /// evidence and key folders are kept aside, renamed).
    pub replace: bool,
}

/// The record a restore writes.
#[derive(Debug, Clone)]
pub enum Record {
    /// `haven.db` in this folder.
    SqliteDir(PathBuf),
    /// A PostgreSQL database.
    Url(String),
}

/// What a restore did.
#[derive(Debug, Clone)]
pub struct Restored {
    /// The backup's manifest.
    pub manifest: Manifest,
    /// The record's schema version after the restore (migrations newer than the backup applied).
    pub schema_version: i64,
    /// Folders that were set aside, not deleted (`--replace`).
    pub set_aside: Vec<PathBuf>,
}

async fn connect(url: &str) -> Result<AnyPool, BackupError> {
    sqlx::any::install_default_drivers();
    let options: AnyConnectOptions = url.parse()?;
    let mut pool = AnyPoolOptions::new().max_connections(1);
    if url.starts_with("sqlite:") {
        pool = pool.after_connect(|conn, _| {
            Box::pin(async move {
                sqlx::Executor::execute(conn, "PRAGMA foreign_keys=ON; PRAGMA busy_timeout=5000;").await?;
                Ok(())
            })
        });
    }
    Ok(pool.connect_with(options).await?)
}

/// Whether a record holds any rows (tables of its own, not the migrations').
async fn holds_rows(pool: &AnyPool, backend: Backend) -> Result<bool, BackupError> {
    let mut conn = pool.acquire().await?;
    for t in tables(&mut conn, backend).await? {
        if count(&mut conn, &t).await? > 0 {
            return Ok(true);
        }
    }
    Ok(false)
}

fn folder_has_files(dir: &Path) -> bool {
    std::fs::read_dir(dir).map(|mut d| d.next().is_some()).unwrap_or(false)
}

/// A name beside `path` for a folder being staged or set aside.
fn beside(path: &Path, what: &str) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "haven".into());
    let tag: [u8; 4] = random();
    path.with_file_name(format!("{name}.{what}-{}", hex(&tag)))
}

#[derive(Clone, Copy)]
enum ColType {
    Int,
    Real,
    Text,
    Blob,
    Bool,
}

async fn column_types(conn: &mut sqlx::AnyConnection, backend: Backend, table: &str) -> Result<BTreeMap<String, ColType>, BackupError> {
    let rows: Vec<(String, String)> = match backend {
        Backend::Sqlite => sqlx::query(AssertSqlSafe(format!("SELECT name, type FROM pragma_table_info('{}')", table.replace('\'', "''"))))
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, sqlx::Error>>()?,
        Backend::Postgres => {
            sqlx::query("SELECT column_name::text, data_type::text FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1")
                .bind(table)
                .fetch_all(&mut *conn)
                .await?
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect::<Result<_, sqlx::Error>>()?
        }
    };
    Ok(rows
        .into_iter()
        .map(|(name, ty)| {
            let t = ty.to_ascii_lowercase();
            let kind = if t.contains("int") {
                ColType::Int
            } else if t.contains("bool") {
                ColType::Bool
            } else if t.contains("real") || t.contains("double") || t.contains("float") || t.contains("numeric") {
                ColType::Real
            } else if t.contains("blob") || t.contains("bytea") {
                ColType::Blob
            } else {
                ColType::Text
            };
            (name, kind)
        })
        .collect())
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

fn bind<'q>(q: AnyQuery<'q>, ty: ColType, v: &Value) -> Result<AnyQuery<'q>, BackupError> {
    let mismatch = || BackupError::Damaged(format!("a value {v} does not fit its column"));
    Ok(match (ty, v) {
        (ColType::Int, Value::Null) => q.bind(None::<i64>),
        (ColType::Int, Value::Number(n)) => q.bind(n.as_i64().ok_or_else(mismatch)?),
        (ColType::Int, Value::Bool(b)) => q.bind(i64::from(*b)),
        (ColType::Int, Value::String(s)) => q.bind(s.parse::<i64>().map_err(|_| mismatch())?),
        (ColType::Real, Value::Null) => q.bind(None::<f64>),
        (ColType::Real, Value::Number(n)) => q.bind(n.as_f64().ok_or_else(mismatch)?),
        (ColType::Bool, Value::Null) => q.bind(None::<bool>),
        (ColType::Bool, Value::Bool(b)) => q.bind(*b),
        (ColType::Bool, Value::Number(n)) => q.bind(n.as_i64() != Some(0)),
        (ColType::Blob, Value::Null) => q.bind(None::<Vec<u8>>),
        (ColType::Blob, Value::Object(o)) => {
            let b64 = o.get("base64").and_then(Value::as_str).ok_or_else(mismatch)?;
            q.bind(base64::engine::general_purpose::STANDARD.decode(b64).map_err(|_| mismatch())?)
        }
        (ColType::Text, Value::Null) => q.bind(None::<String>),
        (ColType::Text, Value::String(s)) => q.bind(s.clone()),
        (ColType::Text, Value::Number(n)) => q.bind(n.to_string()),
        (ColType::Text, Value::Bool(b)) => q.bind(b.to_string()),
        _ => return Err(mismatch()),
    })
}

/// Restores the backup at `path` into `target`. The whole file is checked
/// first ([`check`]); a record, evidence folder or key that is not empty is
/// refused unless `target.replace`. Nothing is left half-written: the rows go
/// in one transaction (on SQLite into a new file that replaces `haven.db`),
/// the files into staging folders moved into place after.
pub async fn restore(path: &Path, pass: &[u8], target: &Target) -> Result<Restored, BackupError> {
    let checked = check(path, pass)?;
    let manifest = checked.manifest;
    let (backend, migrator) = match &target.record {
        Record::SqliteDir(_) => (Backend::Sqlite, &crate::SQLITE),
        Record::Url(_) => (Backend::Postgres, &crate::POSTGRES),
    };
    let known = known_schema_version(backend);
    if manifest.schema_version > known {
        return Err(BackupError::Refused(format!(
            "this backup's record is at schema version {}, newer than this Haven knows ({known}); restore it with Haven {} or newer",
            manifest.schema_version, manifest.haven_version
        )));
    }
    if !manifest.tables.is_empty() && manifest.schema_version > 0 && !migrator.version_exists(manifest.schema_version) {
        return Err(BackupError::Refused(format!("this backup's schema version {} is not one this Haven knows", manifest.schema_version)));
    }

    // What is there now.
    let (url, sqlite_final, sqlite_new) = match &target.record {
        Record::SqliteDir(dir) => {
            std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
            crate::seal::owner_only(dir, 0o700);
            let db = dir.join("haven.db");
            let fresh = beside(&db, "restoring");
            (format!("sqlite://{}?mode=rwc", fresh.display()), Some(db), Some(fresh))
        }
        Record::Url(u) => (u.clone(), None, None),
    };
    let record_has_rows = match (&target.record, &sqlite_final) {
        (Record::SqliteDir(_), Some(db)) if db.exists() && std::fs::metadata(db).map(|m| m.len() > 0).unwrap_or(false) => {
            let pool = connect(&format!("sqlite://{}", db.display())).await?;
            let has = holds_rows(&pool, Backend::Sqlite).await?;
            pool.close().await;
            has
        }
        (Record::SqliteDir(_), _) => false,
        (Record::Url(u), _) => {
            let pool = connect(u).await?;
            let has = holds_rows(&pool, Backend::Postgres).await?;
            pool.close().await;
            has
        }
    };
    // Each folder restored: its area in the backup, its place, what the
    // backup holds for it, and whether what is there now is the same.
    let mut places: Vec<(String, PathBuf, BTreeMap<String, FileSum>)> =
        vec![("evidence".into(), target.evidence_dir.clone(), manifest.evidence.clone()), ("keys".into(), target.key_dir.clone(), manifest.keys.clone())];
    for (name, dest) in &target.folders {
        places.push((format!("folder:{name}"), dest.clone(), manifest.folders.get(name).cloned().unwrap_or_default()));
    }
    let mut same = Vec::new();
    let mut busy = Vec::new();
    if record_has_rows {
        busy.push("the record holds rows".to_string());
    }
    for (area, dest, want) in &places {
        let now: BTreeMap<String, FileSum> = files_under(dest)?.into_iter().filter_map(|n| std::fs::read(dest.join(&n)).ok().map(|b| (n, sum(&b)))).collect();
        // Evidence is always written afresh; a key or folder already the same is kept.
        let is_same = area != "evidence" && &now == want;
        if !now.is_empty() && !is_same {
            busy.push(format!("{} holds {}", dest.display(), if area == "keys" { "a different key" } else { "files" }));
        }
        same.push(is_same);
    }
    if !target.replace && !busy.is_empty() {
        return Err(BackupError::Refused(format!(
            "refusing to restore over a record that is not empty: {}. Restore into an empty data folder or database, or pass --replace (the old evidence, key and other folders are kept aside, renamed)",
            busy.join("; ")
        )));
    }

    // Stage the files.
    let stages: BTreeMap<String, PathBuf> = places.iter().map(|(area, dest, _)| (area.clone(), beside(dest, "restoring"))).collect();
    let cleanup = |also: Option<&Path>| {
        for dir in stages.values() {
            let _ = std::fs::remove_dir_all(dir);
        }
        if let Some(p) = also {
            for suffix in ["", "-wal", "-shm", "-journal"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", p.display()));
            }
        }
    };
    let result = restore_into(path, pass, &manifest, backend, migrator, &url, &stages).await;
    let schema_version = match result {
        Ok(v) => v,
        Err(e) => {
            cleanup(sqlite_new.as_deref());
            return Err(e);
        }
    };

    // Move everything into place.
    let mut set_aside = Vec::new();
    if let (Some(db), Some(fresh)) = (&sqlite_final, &sqlite_new) {
        for suffix in ["-wal", "-shm", "-journal"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
        }
        crate::seal::owner_only(fresh, 0o600);
        std::fs::rename(fresh, db).map_err(io(format!("moving the restored record to {}", db.display())))?;
    }
    let mut place = |staged: &Path, dest: &Path, keep_if_same: bool| -> Result<(), BackupError> {
        if !folder_has_files(staged) && !dest.exists() {
            // Nothing kept and nothing there: no empty folder is made.
            let _ = std::fs::remove_dir_all(staged);
            return Ok(());
        }
        if !staged.exists() {
            std::fs::create_dir_all(staged).map_err(io(format!("creating {}", staged.display())))?;
        }
        if dest.exists() {
            if keep_if_same {
                let _ = std::fs::remove_dir_all(staged);
                return Ok(());
            }
            if folder_has_files(dest) {
                let aside = beside(dest, "before-restore");
                std::fs::rename(dest, &aside).map_err(io(format!("setting {} aside", dest.display())))?;
                set_aside.push(aside);
            } else {
                std::fs::remove_dir(dest).map_err(io(format!("replacing {}", dest.display())))?;
            }
        }
        crate::seal::owner_only(staged, 0o700);
        std::fs::rename(staged, dest).map_err(io(format!("moving the restored files to {}", dest.display())))
    };
    for ((area, dest, _), is_same) in places.iter().zip(same) {
        place(&stages[area], dest, is_same)?;
    }
    Ok(Restored { manifest, schema_version, set_aside })
}

async fn restore_into(
    path: &Path,
    pass: &[u8],
    manifest: &Manifest,
    backend: Backend,
    migrator: &sqlx::migrate::Migrator,
    url: &str,
    stages: &BTreeMap<String, PathBuf>,
) -> Result<i64, BackupError> {
    let pool = connect(url).await?;
    if backend == Backend::Postgres {
        // The old tables go (refused above unless empty or --replace).
        let mut tx = pool.begin().await?;
        let mut names = tables(&mut tx, backend).await?;
        names.push(MIGRATIONS_TABLE.to_string());
        for t in names {
            sqlx::query(AssertSqlSafe(format!("DROP TABLE IF EXISTS {} CASCADE", quote(&t)))).execute(&mut *tx).await?;
        }
        tx.commit().await?;
    }
    // The schema as the backup knew it; newer migrations run after the rows are in.
    migrator.run_to(manifest.schema_version, &pool).await?;

    for dir in stages.values() {
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        crate::seal::owner_only(dir, 0o700);
    }
    let mut tx = pool.begin().await?;
    if backend == Backend::Sqlite {
        sqlx::query("PRAGMA defer_foreign_keys = ON").execute(&mut *tx).await?;
    }
    let order = tables(&mut tx, backend).await?;
    for t in &order {
        sqlx::query(AssertSqlSafe(format!("DELETE FROM {}", quote(t)))).execute(&mut *tx).await?;
    }
    // Read the items synchronously, insert them in batches.
    let mut pending: Vec<(String, Vec<String>, Vec<Vec<Value>>)> = Vec::new();
    let file = std::fs::File::open(path).map_err(io(format!("opening {}", path.display())))?;
    let mut reader_err = None;
    // The stream is read whole into batches of rows per table; files go to the staging folders as they come.
    let _ = read_stream(std::io::BufReader::new(file), pass, |_, item| {
        match item {
            Item::Table(h) => pending.push((h.name, h.columns, Vec::new())),
            Item::Row(r) => match pending.last_mut() {
                Some(p) => p.2.push(r),
                None => return Err(BackupError::Damaged("a row before its table".into())),
            },
            Item::File(h, bytes) => {
                let Some(dir) = stages.get(&h.area) else { return Ok(()) };
                let Some(rel) = safe_path(&h.path) else { return Err(BackupError::Damaged(format!("path {:?}", h.path))) };
                let dest = dir.join(rel);
                if let Some(parent) = dest.parent() {
                    std::fs::create_dir_all(parent).map_err(io(format!("creating {}", parent.display())))?;
                }
                crate::seal::write_owner_only(&dest, &bytes).map_err(io(format!("writing {}", dest.display())))?;
            }
        }
        Ok(())
    })
    .map_err(|e| reader_err = Some(e));
    if let Some(e) = reader_err {
        return Err(e);
    }
    let ranks: BTreeMap<&str, usize> = order.iter().enumerate().map(|(i, t)| (t.as_str(), i)).collect();
    pending.sort_by_key(|p| ranks.get(p.0.as_str()).copied().unwrap_or(usize::MAX));
    for (table, columns, rows) in &pending {
        if !ranks.contains_key(table.as_str()) {
            return Err(BackupError::Refused(format!("the backup holds table {table}, which this record's schema does not have")));
        }
        let types = column_types(&mut tx, backend, table).await?;
        let tys = columns
            .iter()
            .map(|c| types.get(c).copied().ok_or_else(|| BackupError::Refused(format!("the backup holds column {table}.{c}, which this record does not have"))))
            .collect::<Result<Vec<_>, _>>()?;
        let cols: Vec<String> = columns.iter().map(|c| quote(c)).collect();
        let params: Vec<String> = (1..=columns.len()).map(|i| format!("${i}")).collect();
        let overriding = if backend == Backend::Postgres { " OVERRIDING SYSTEM VALUE" } else { "" };
        let sql = format!("INSERT INTO {} ({}){overriding} VALUES ({})", quote(table), cols.join(", "), params.join(", "));
        for row in rows {
            if row.len() != columns.len() {
                return Err(BackupError::Damaged(format!("a row of {table} has {} values for {} columns", row.len(), columns.len())));
            }
            let mut q = sqlx::query(AssertSqlSafe(sql.clone()));
            for (ty, v) in tys.iter().zip(row) {
                q = bind(q, *ty, v)?;
            }
            q.execute(&mut *tx).await?;
        }
    }
    // The counts, inside the transaction, before it commits.
    for (t, n) in &manifest.tables {
        let got = count(&mut tx, t).await?;
        if got != *n {
            return Err(BackupError::Refused(format!("table {t} holds {got} rows after the restore, the backup {n}; nothing was restored")));
        }
    }
    if backend == Backend::Postgres {
        // Identity columns carry on after the restored ids.
        let ids = sqlx::query(
            "SELECT table_name::text, column_name::text FROM information_schema.columns WHERE table_schema = current_schema() AND is_identity = 'YES'",
        )
        .fetch_all(&mut *tx)
        .await?;
        for r in ids {
            let (t, c): (String, String) = (r.try_get(0)?, r.try_get(1)?);
            sqlx::query(AssertSqlSafe(format!(
                "SELECT setval(pg_get_serial_sequence('{}', '{}'), COALESCE((SELECT MAX({}) FROM {}), 0) + 1, false)",
                quote(&t).replace('\'', "''"),
                c.replace('\'', "''"),
                quote(&c),
                quote(&t)
            )))
            .execute(&mut *tx)
            .await?;
        }
    }
    // The staged evidence against the manifest.
    for (name, want) in &manifest.evidence {
        let got = sum(&read_file(&stages["evidence"].join(name))?);
        if &got != want {
            return Err(BackupError::Damaged(format!("evidence file {name} does not match its SHA-256 after writing")));
        }
    }
    tx.commit().await?;
    // Migrations newer than the backup.
    migrator.run(&pool).await?;
    let version = {
        let mut conn = pool.acquire().await?;
        schema_version(&mut conn).await?
    };
    if backend == Backend::Sqlite {
        let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&pool).await;
    }
    pool.close().await;
    Ok(version)
}

/// Databases for the backup tests of the binary: a fresh one by URL, and
/// wiping one (drop and create again) as a lost server would be replaced.
#[doc(hidden)]
pub mod testing {
    use sqlx::{Connection, Executor};

    /// A new, empty, migrated database on the server `server` names; its URL.
    pub async fn fresh_postgres_url(server: &str) -> String {
        let store = crate::testing::fresh_postgres(server).await;
        let name: String = sqlx::query_scalar("SELECT current_database()::text").fetch_one(store.pool()).await.expect("its name");
        store.close().await;
        let base = server.rsplit_once('/').map_or(server, |(b, _)| b);
        format!("{base}/{name}")
    }

    /// Drops the database `url` names and makes it again, empty.
    pub async fn recreate_postgres(url: &str) {
        sqlx::any::install_default_drivers();
        let (base, name) = url.rsplit_once('/').expect("a database URL");
        let mut admin = sqlx::AnyConnection::connect(&format!("{base}/postgres")).await.expect("the server");
        admin.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)"))).await.expect("DROP DATABASE");
        admin.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).await.expect("CREATE DATABASE");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quick() -> KdfParams {
        KdfParams { m_kib: 64, t_cost: 1, p_cost: 1 }
    }

    #[test]
    fn chunks_round_trip_and_a_wrong_passphrase_or_damage_is_told_apart() {
        let mut plain = vec![0u8; CHUNK * 2 + 123];
        for (i, b) in plain.iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        let mut w = Sealing::new(Vec::new(), b"correct horse", quick()).unwrap();
        w.write_all(&plain).unwrap();
        let file = w.finish().unwrap();
        assert!(!file.windows(64).any(|w| w == &plain[1000..1064]), "encrypted");
        let mut back = Vec::new();
        Opening::new(&file[..], b"correct horse").unwrap().read_to_end(&mut back).unwrap();
        assert_eq!(back, plain);
        assert!(matches!(Opening::new(&file[..], b"wrong horse"), Err(BackupError::WrongPassphrase)));
        // Cut short at a chunk boundary: the last mark is missing.
        let cut = MAGIC.len() + 4 + u32::from_be_bytes(file[MAGIC.len()..MAGIC.len() + 4].try_into().unwrap()) as usize + 4 + CHUNK + 16;
        let mut r = Opening::new(&file[..cut], b"correct horse").unwrap();
        let mut sink = Vec::new();
        assert!(r.read_to_end(&mut sink).is_err());
        assert!(matches!(r.take_failure(), Some(BackupError::Damaged(m)) if m.contains("cut short")));
        // A flipped byte in the second chunk.
        let mut bad = file.clone();
        bad[cut + 100] ^= 1;
        let mut r = Opening::new(&bad[..], b"correct horse").unwrap();
        assert!(r.read_to_end(&mut Vec::new()).is_err());
        assert!(matches!(r.take_failure(), Some(BackupError::Damaged(m)) if m.contains("does not authenticate")));
        // The header is bound too: a changed KDF parameter does not open.
        let text = String::from_utf8_lossy(&file[..cut.min(400)]).into_owned();
        assert!(text.contains("\"kdf\":\"argon2id\"") && text.contains("\"salt\""), "{text}");
        assert!(Opening::new(&b"not a backup"[..], b"x").is_err());
        // A small file is one chunk: damage there is damage, not a wrong passphrase.
        let mut w = Sealing::new(Vec::new(), b"correct horse", quick()).unwrap();
        w.write_all(b"a small record").unwrap();
        let mut small = w.finish().unwrap();
        let at = small.len() - 3;
        small[at] ^= 1;
        assert!(matches!(Opening::new(&small[..], b"correct horse"), Err(BackupError::Damaged(_))));
        assert!(matches!(Opening::new(&small[..], b"wrong horse"), Err(BackupError::WrongPassphrase)));
    }

    #[test]
    fn paths_from_a_backup_stay_inside_their_folder() {
        assert!(safe_path("ab12").is_some() && safe_path("shots/ab12").is_some());
        for p in ["", "../x", "/etc/passwd", "a/../../b", "./x"] {
            assert!(safe_path(p).is_none(), "{p}");
        }
    }

    async fn fill(store: &Store, now: jiff::Timestamp) {
        store.upsert_school("oak", "Oak Primary", false).await.unwrap();
        store.add_account("dsl@oak.example", crate::Role::Dsl, Some("oak"), "dsl password 1", now).await.unwrap();
        let first = crate::alerts::NewOccurrence {
            at: now,
            level: 4,
            source: "chat".into(),
            excerpt: "a worrying message".into(),
            url: None,
            spans: "[]".into(),
            explanation: "test".into(),
            screenshot: None,
            screenshot_withheld: false,
            repeats: 1,
        };
        let a = crate::alerts::NewAlert { school: "oak".into(), person: "amy".into(), category: "Bullying".into(), level: 4, due_at: Some(now), first };
        store.insert_alert(&a).await.unwrap();
        store.audit(now, "test", "alert.read", "alert:1", "").await.unwrap();
    }

    #[tokio::test]
    async fn a_record_backs_up_and_restores_on_each_back_end_and_refuses_what_it_should() {
        let now = jiff::Timestamp::from_second(1_780_000_000).unwrap();
        for (store, _dir) in crate::testing::stores().await {
            fill(&store, now).await;
            let folder = tempfile::tempdir().unwrap();
            let evidence = folder.path().join("evidence");
            std::fs::create_dir_all(&evidence).unwrap();
            std::fs::write(evidence.join("aa11"), b"sealed bytes").unwrap();
            let keys = folder.path().join("keys");
            std::fs::create_dir_all(&keys).unwrap();
            std::fs::write(keys.join("haven.key"), b"haven-key-v1 AAAA\n").unwrap();
            std::fs::create_dir_all(folder.path().join("model")).unwrap();
            std::fs::write(folder.path().join("model/head.bin"), b"the trust's own head").unwrap();
            let src = Sources {
                evidence_dir: evidence.clone(),
                key_dir: keys.clone(),
                config: None,
                haven_version: "test".into(),
                folders: vec![("model".into(), folder.path().join("model")), ("ca".into(), folder.path().join("no-ca"))],
            };
            let file = folder.path().join("b.haven-backup");
            let out = std::fs::File::create(&file).unwrap();
            let manifest = write(&store, &src, b"pass phrase", quick(), now, out).await.unwrap();
            assert_eq!(manifest.tables["alerts"], 1);
            assert_eq!(manifest.evidence["aa11"].sha256, hex(&Sha256::digest(b"sealed bytes")));
            let before = dump(&store).await.unwrap();

            assert!(matches!(check(&file, b"wrong"), Err(BackupError::WrongPassphrase)));
            let checked = check(&file, b"pass phrase").unwrap();
            assert_eq!(checked.manifest, manifest);

            // Into an empty SQLite folder.
            let to = tempfile::tempdir().unwrap();
            let target = Target {
                record: Record::SqliteDir(to.path().join("data")),
                evidence_dir: to.path().join("data/evidence"),
                key_dir: to.path().join("data-keys"),
                folders: vec![("model".into(), to.path().join("data/model")), ("ca".into(), to.path().join("data/ca"))],
                replace: false,
            };
            let r = restore(&file, b"pass phrase", &target).await.unwrap();
            assert_eq!(r.manifest.tables, manifest.tables);
            assert_eq!(std::fs::read(to.path().join("data/evidence/aa11")).unwrap(), b"sealed bytes");
            assert_eq!(std::fs::read(to.path().join("data-keys/haven.key")).unwrap(), b"haven-key-v1 AAAA\n");
            assert_eq!(std::fs::read(to.path().join("data/model/head.bin")).unwrap(), b"the trust's own head");
            assert!(!to.path().join("data/ca").exists(), "no empty folder made for what the backup does not hold");
            let back = Store::open_dir(&to.path().join("data")).await.unwrap();
            assert_eq!(dump(&back).await.unwrap(), before, "row by row");
            // New rows carry on after the restored ids.
            back.audit(now, "test", "after", "x", "").await.unwrap();
            back.close().await;
            // A second restore over it is refused, then done with --replace.
            let e = restore(&file, b"pass phrase", &target).await.unwrap_err();
            assert!(e.to_string().contains("--replace"), "{e}");
            let r = restore(&file, b"pass phrase", &Target { replace: true, ..target.clone() }).await.unwrap();
            assert_eq!(r.set_aside.len(), 1, "the old evidence kept aside, the same key kept: {:?}", r.set_aside);
            let back = Store::open_dir(&to.path().join("data")).await.unwrap();
            assert_eq!(dump(&back).await.unwrap(), before);
            back.close().await;

            // A newer schema is refused before anything is written.
            let mut newer = manifest.clone();
            newer.schema_version = known_schema_version(store.backend) + 1;
            let e = {
                let fresh = tempfile::tempdir().unwrap();
                let t2 = Target { record: Record::SqliteDir(fresh.path().join("d")), ..target.clone() };
                // Forge by writing a backup whose manifest claims a newer schema.
                let forged = folder.path().join("newer");
                let mut w = Sealing::new(std::fs::File::create(&forged).unwrap(), b"p", quick()).unwrap();
                newer.tables.clear();
                newer.evidence.clear();
                newer.keys.clear();
                newer.folders.clear();
                entry(&mut w, E_MANIFEST, &serde_json::to_vec(&newer).unwrap()).unwrap();
                entry(&mut w, E_END, b"").unwrap();
                w.finish().unwrap();
                let e = restore(&forged, b"p", &t2).await.unwrap_err();
                assert!(!fresh.path().join("d/haven.db").exists(), "nothing written");
                e
            };
            assert!(e.to_string().contains("newer than this Haven"), "{e}");

            if let Ok(url) = std::env::var("HAVEN_TEST_POSTGRES") {
                // Into a fresh PostgreSQL database too, from either back end.
                let pg = testing::fresh_postgres_url(&url).await;
                let t3 = Target {
                    record: Record::Url(pg.clone()),
                    evidence_dir: to.path().join("pg-evidence"),
                    key_dir: to.path().join("pg-keys"),
                    folders: Vec::new(),
                    replace: false,
                };
                restore(&file, b"pass phrase", &t3).await.unwrap();
                let back = Store::open(&pg).await.unwrap();
                assert_eq!(dump(&back).await.unwrap(), before, "from {:?}", store.backend);
                back.audit(now, "test", "after", "x", "").await.unwrap();
                back.close().await;
            }
        }
    }
}
