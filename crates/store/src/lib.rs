//! Haven's safeguarding record: schools, accounts and roles, devices and API
//! keys, the call-out lists, alerts with their deadlines, the notification
//! outbox, and the append-only audit log — one schema on SQLite (a file, the
//! default) or PostgreSQL (a URL, for trusts), through sqlx's `Any` driver so
//! there is one code path. Migrations run on open.
//!
//! Storage rules that keep the two back ends identical (see STACK.md §2.8):
//! times are unix milliseconds in BIGINT, booleans BIGINT 0/1, JSON as TEXT,
//! `$1` placeholders, no database clock: every time comes from the caller.
#![forbid(unsafe_code)]

pub mod access;
pub mod agreements;
pub mod alerts;
pub mod audit;
pub mod backup;
pub mod changes;
pub mod checks;
pub mod chronology;
pub mod devices;
pub mod directory;
pub mod feeds;
pub mod governance;
pub mod incidents;
pub mod lexicon;
pub mod names;
pub mod notices;
pub mod people;
pub mod queue;
pub mod record;
pub mod reporting;
pub mod reports;
pub mod retention;
pub mod roles;
pub mod sar;
pub mod seal;
pub mod secrets;
pub mod sessions;
pub mod staff;
pub mod suggestions;

use std::path::Path;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

pub use roles::Role;

/// The store could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database refused or failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("database migration: {0}; the database may be newer than this Haven, or damaged")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A database URL Haven cannot use.
    #[error("database {0:?} is not a SQLite file or a postgres:// URL")]
    Url(String),
    /// Something named does not exist.
    #[error("{what} {name:?} does not exist{hint}")]
    NotFound {
        /// What kind of thing.
        what: &'static str,
        /// Its name.
        name: String,
        /// How to find the right one.
        hint: &'static str,
    },
    /// Input that cannot be stored.
    #[error("{0}")]
    Invalid(String),
    /// The record's key is missing or does not open what was sealed.
    #[error(transparent)]
    Seal(#[from] seal::SealError),
}

/// Which database is behind the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// The safeguarding record.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    /// Which database.
    pub backend: Backend,
    /// The key that seals TOTP secrets and evidence, shared by every clone.
    keys: std::sync::Arc<Keys>,
}

/// Where the record's key is, and the key once read.
#[derive(Default)]
struct Keys {
    dir: std::sync::Mutex<Option<std::path::PathBuf>>,
    sealer: std::sync::OnceLock<seal::Sealer>,
}

static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

impl Store {
    /// Opens (creating if needed) the SQLite file `haven.db` in `data_dir`.
    /// The folder is made owner-only (0700) and the database files 0600; the
    /// key is looked for beside the folder ([`seal::default_key_dir`]) unless
    /// [`use_key_dir`](Self::use_key_dir) says otherwise before it is needed.
    pub async fn open_dir(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| StoreError::Invalid(format!("cannot create {}: {e}", data_dir.display())))?;
        seal::owner_only(data_dir, 0o700);
        let db = data_dir.join("haven.db");
        if !db.exists() {
            // Made owner-only before SQLite writes a byte to it.
            seal::write_owner_only(&db, b"").map_err(|e| StoreError::Invalid(format!("cannot create {}: {e}", db.display())))?;
        }
        let store = Self::open(&format!("sqlite://{}?mode=rwc", db.display())).await?;
        store.owner_only_files(data_dir);
        Ok(store)
    }

    /// Makes the SQLite files in `data_dir` owner-only (0600): SQLite makes
    /// its journal files with the process's umask.
    pub fn owner_only_files(&self, data_dir: &Path) {
        for name in ["haven.db", "haven.db-wal", "haven.db-shm"] {
            seal::owner_only(&data_dir.join(name), 0o600);
        }
    }

    /// Where the record's key (`haven.key`) is kept; made there the first time.
    /// Must be said before the key is first needed.
    pub fn use_key_dir(&self, dir: &Path) -> Result<(), StoreError> {
        if let Some(s) = self.keys.sealer.get() {
            return match &s.path {
                Some(p) if p.parent() == Some(dir) => Ok(()),
                _ => Err(StoreError::Invalid(format!("the record's key was already read from elsewhere, not {}", dir.display()))),
            };
        }
        *self.keys.dir.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(dir.to_path_buf());
        Ok(())
    }

    /// Uses `sealer` as the record's key (tests; a key not yet read is replaced).
    pub fn use_sealer(&self, sealer: seal::Sealer) {
        let _ = self.keys.sealer.set(sealer);
    }

    /// The record's key, read (or made) the first time it is needed.
    pub fn sealer(&self) -> Result<&seal::Sealer, StoreError> {
        if let Some(s) = self.keys.sealer.get() {
            return Ok(s);
        }
        let dir = self.keys.dir.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone().ok_or(seal::SealError::NoKeyDir)?;
        let loaded = seal::Sealer::load_or_create(&dir)?;
        let _ = self.keys.sealer.set(loaded);
        Ok(self.keys.sealer.get().expect("set just now"))
    }

    /// Opens a `sqlite://FILE` or `postgres://…` URL and brings its schema up to date.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::Url(url.to_string()));
        };
        let options: AnyConnectOptions = url.parse()?;
        let mut pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 10 })
            // A transaction whose rollback failed (a full disk, a server gone)
            // leaves its connection stuck inside it, and every later event on
            // that connection would fail: such a connection is replaced.
            .before_acquire(|conn, _| Box::pin(async move { Ok(!sqlx::Connection::is_in_transaction(conn)) }));
        if backend == Backend::Sqlite {
            // WAL lets the web app read while ingest writes; it persists in the file.
            pool = pool.after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; PRAGMA busy_timeout=5000;").await?;
                    Ok(())
                })
            });
        }
        let pool = pool.connect_with(options).await?;
        match backend {
            Backend::Sqlite => SQLITE.run(&pool).await?,
            Backend::Postgres => POSTGRES.run(&pool).await?,
        }
        let keys = Keys::default();
        if backend == Backend::Sqlite {
            // A SQLite file's key is beside its folder unless told otherwise.
            let file = url.trim_start_matches("sqlite:").trim_start_matches("//");
            let file = Path::new(file.split('?').next().unwrap_or(file));
            if let Some(folder) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
                *keys.dir.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(seal::default_key_dir(folder));
            }
        }
        Ok(Self { pool, backend, keys: std::sync::Arc::new(keys) })
    }

    /// The connection pool, for the modules of this crate.
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// A timestamp as stored: unix milliseconds.
pub(crate) fn ms(t: jiff::Timestamp) -> i64 {
    t.as_millisecond()
}

/// A stored time back as a timestamp.
pub(crate) fn ts(ms: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_millisecond(ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

/// Stores for tests: a temporary SQLite file, and a fresh PostgreSQL database
/// when `HAVEN_TEST_POSTGRES` names a server. Used by this crate's tests and
/// by the service's, so the same suite runs on both back ends.
#[doc(hidden)]
pub mod testing {
    use sqlx::Executor;

    use super::*;

    /// Every store a test should run on, each with the folder to keep alive.
    pub async fn stores() -> Vec<(Store, Option<tempfile::TempDir>)> {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let sqlite = Store::open_dir(dir.path()).await.expect("SQLite store");
        sqlite.use_key_dir(&dir.path().join("keys")).expect("a key folder");
        let mut out = vec![(sqlite, Some(dir))];
        if let Ok(url) = std::env::var("HAVEN_TEST_POSTGRES") {
            let pg = fresh_postgres(&url).await;
            pg.use_sealer(seal::Sealer::random());
            out.push((pg, None));
        }
        out
    }

    /// A new, empty database on the server `url` names.
    pub async fn fresh_postgres(url: &str) -> Store {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let base = url.rsplit_once('/').map_or(url, |(b, _)| b);
        // Databases are made from the server's own `postgres` database.
        let mut admin = sqlx::AnyConnection::connect(&format!("{base}/postgres")).await.unwrap_or_else(|e| panic!("HAVEN_TEST_POSTGRES={url}: {e}"));
        let mut raw = [0u8; 6];
        getrandom::fill(&mut raw).expect("random");
        let name = format!("haven_test_{}", raw.iter().map(|b| format!("{b:02x}")).collect::<String>());
        admin.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).await.expect("CREATE DATABASE");
        Store::open(&format!("{base}/{name}")).await.expect("the new database")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn both_schemas_have_the_same_tables_and_columns() {
        let strip = |s: &str| -> Vec<String> {
            s.lines()
                .map(|l| l.split("--").next().unwrap_or("").trim().to_string())
                .filter(|l| !l.is_empty())
                .map(|l| l.replace("INTEGER PRIMARY KEY AUTOINCREMENT", "ID").replace("BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "ID"))
                .collect()
        };
        assert_eq!(
            strip(include_str!("../migrations/sqlite/0001_init.sql")),
            strip(include_str!("../migrations/postgres/0001_init.sql")),
            "the two schemas differ beyond their identity columns"
        );
        assert_eq!(
            strip(include_str!("../migrations/sqlite/0002_sessions_actions.sql")),
            strip(include_str!("../migrations/postgres/0002_sessions_actions.sql")),
        );
        assert_eq!(strip(include_str!("../migrations/sqlite/0003_incidents.sql")), strip(include_str!("../migrations/postgres/0003_incidents.sql")));
        assert_eq!(strip(include_str!("../migrations/sqlite/0004_screenshots.sql")), strip(include_str!("../migrations/postgres/0004_screenshots.sql")));
        assert_eq!(strip(include_str!("../migrations/sqlite/0005_lexicon.sql")), strip(include_str!("../migrations/postgres/0005_lexicon.sql")));
        assert_eq!(
            strip(include_str!("../migrations/sqlite/0007_accounts_that_leave.sql")),
            strip(include_str!("../migrations/postgres/0007_accounts_that_leave.sql"))
        );
        assert_eq!(strip(include_str!("../migrations/sqlite/0006_record.sql")), strip(include_str!("../migrations/postgres/0006_record.sql")));
        assert_eq!(strip(include_str!("../migrations/sqlite/0008_teaching.sql")), strip(include_str!("../migrations/postgres/0008_teaching.sql")));
        assert_eq!(strip(include_str!("../migrations/sqlite/0011_people.sql")), strip(include_str!("../migrations/postgres/0011_people.sql")));
        assert_eq!(
            strip(include_str!("../migrations/sqlite/0013_incidents_staff.sql")),
            strip(include_str!("../migrations/postgres/0013_incidents_staff.sql"))
        );
        assert_eq!(strip(include_str!("../migrations/sqlite/0015_chronology.sql")), strip(include_str!("../migrations/postgres/0015_chronology.sql")));
        for (store, _dir) in testing::stores().await {
            store.close().await;
        }
    }

    #[tokio::test]
    async fn a_bad_url_names_the_fix() {
        let e = Store::open("mysql://x").await.err().unwrap();
        assert!(e.to_string().contains("postgres://"));
    }
}
