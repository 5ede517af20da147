//! `haven backup` and `haven restore`: one encrypted file with a consistent
//! snapshot of the record (SQLite or PostgreSQL), the evidence files, the
//! record's key folder and the config file (`haven_store::backup` does the
//! work; docs/disaster-recovery.md is the procedure).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use haven_config::Config;
use haven_store::Store;
use haven_store::backup::{self, KdfParams, Record, Target};

use crate::config_file;

/// The environment variable a passphrase may come from.
const PASS_ENV: &str = "HAVEN_BACKUP_PASSPHRASE";
/// The shortest passphrase a backup is made with.
const MIN_PASS: usize = 12;

#[derive(clap::Args)]
pub(crate) struct BackupArgs {
    /// The backup file to write (refused if it exists).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    common: Common,
}

#[derive(clap::Args)]
pub(crate) struct RestoreArgs {
    /// The backup file `haven backup` wrote.
    file: PathBuf,
    /// Restore over a record, evidence folder or key that is not empty (the
    /// old evidence and key folders are kept aside, renamed).
    #[arg(long)]
    replace: bool,
    #[command(flatten)]
    common: Common,
}

#[derive(clap::Args)]
struct Common {
    /// The config file (default: $HAVEN_CONFIG, ./haven.toml, else the
    /// embedded demo). On restore, a file that does not exist yet is written
    /// from the backup first (restoring to a new machine).
    #[arg(long, env = "HAVEN_CONFIG")]
    config: Option<PathBuf>,
    /// Haven's data folder, as given to `haven serve --data`.
    #[arg(long, env = "HAVEN_DATA")]
    data: Option<PathBuf>,
    /// A file whose first line is the backup passphrase (else $HAVEN_BACKUP_PASSPHRASE).
    #[arg(long)]
    passphrase_file: Option<PathBuf>,
}

fn passphrase(c: &Common) -> Result<String> {
    let pass = match &c.passphrase_file {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading the passphrase file {}", p.display()))?;
            text.lines().next().unwrap_or("").to_string()
        }
        None => match std::env::var(PASS_ENV) {
            Ok(p) => p,
            Err(_) => bail!("no passphrase: pass --passphrase-file FILE (its first line) or set {PASS_ENV}"),
        },
    };
    if pass.is_empty() {
        bail!("the backup passphrase is empty");
    }
    Ok(pass)
}

fn load(c: &Common) -> Result<Config> {
    config_file::load_with_data(c.config.as_deref(), c.data.as_deref())
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / f64::from(1u32 << 30)),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / f64::from(1u32 << 20)),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} bytes"),
    }
}

fn summary(m: &backup::Manifest) -> String {
    let rows: u64 = m.tables.values().sum();
    let of = |t: &str| m.tables.get(t).copied().unwrap_or(0);
    format!(
        "{rows} rows in {} tables ({} alerts, {} incidents, {} audit entries), {} evidence files ({}), {} key file(s), {} file(s) of the model head and school CA, {}",
        m.tables.len(),
        of("alerts"),
        of("incidents"),
        of("audit"),
        m.evidence.len(),
        human(m.evidence.values().map(|f| f.size).sum()),
        m.keys.len(),
        m.folders.values().map(BTreeMap::len).sum::<usize>(),
        match &m.config {
            Some((p, _)) => format!("the config file ({p})"),
            None => "no config file".into(),
        }
    )
}

/// `haven backup --out FILE`.
pub(crate) fn run_backup(args: BackupArgs) -> Result<()> {
    let pass = passphrase(&args.common)?;
    if pass.chars().count() < MIN_PASS {
        bail!("the backup passphrase must be at least {MIN_PASS} characters (a few unrelated words is good)");
    }
    let config = load(&args.common)?;
    if args.out.exists() {
        bail!("{} exists; choose a new file name (a backup never overwrites one)", args.out.display());
    }
    if config.database.is_none() && !config.data_dir.join("haven.db").exists() {
        bail!("there is no record in {} (no haven.db); pass --data DIR as given to `haven serve`", config.data_dir.display());
    }
    let key_dir = config.key_dir();
    let evidence_dir = config.data_dir.join("evidence");
    if !key_dir.join(haven_store::seal::KEY_FILE).exists() {
        eprintln!("haven: warning: no key at {} ([data] key_dir): sealed second factors and evidence could not be opened from this backup", key_dir.display());
    }
    let src = backup::Sources {
        evidence_dir,
        key_dir,
        config: Some(config.path.clone()).filter(|p| p.is_file()),
        folders: folders(&config),
        haven_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let out = args.out.clone();
    let rt = runtime()?;
    let manifest = rt.block_on(async {
        let store = open(&config).await?;
        let now = jiff::Timestamp::now();
        // Audited before the snapshot, so the backup holds its own entry.
        store.audit(now, "backup-cli", "backup.write", "record", &out.display().to_string()).await.context("writing the audit entry for the backup")?;
        let dir = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = dir.join(format!(".{name}.partial-{}", std::process::id()));
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let file = opts.open(&tmp).with_context(|| format!("writing a backup in {}", dir.display()))?;
        let written = async {
            let manifest = backup::write(&store, &src, pass.as_bytes(), KdfParams::default(), now, std::io::BufWriter::new(file.try_clone()?)).await?;
            file.sync_all()?;
            // Never over a file that appeared meanwhile.
            std::fs::hard_link(&tmp, &out).with_context(|| format!("saving {}", out.display()))?;
            anyhow::Ok(manifest)
        }
        .await;
        let _ = std::fs::remove_file(&tmp);
        let manifest = written?;
        store.close().await;
        anyhow::Ok(manifest)
    })?;
    let size = std::fs::metadata(&args.out).map(|m| m.len()).unwrap_or(0);
    say!("backup written to {} ({})", args.out.display(), human(size));
    say!("  {}", summary(&manifest));
    say!("  record schema version {}, {} back end, made {}", manifest.schema_version, manifest.backend, manifest.created);
    say!("  keep the passphrase apart from the backup: without it the file cannot be opened (docs/disaster-recovery.md)");
    Ok(())
}

/// The folders kept beside the record: the trust's own model head and the school CA.
fn folders(config: &Config) -> Vec<(String, PathBuf)> {
    vec![("model".into(), config.data_dir.join("model")), ("ca".into(), config.proxy.ca_dir.clone())]
}

async fn open(config: &Config) -> Result<Store> {
    let store = match &config.database {
        Some(url) => Store::open(url).await.context("opening the database named by [data] database")?,
        None => Store::open_dir(&config.data_dir).await.with_context(|| format!("opening the record in {}", config.data_dir.display()))?,
    };
    store.use_key_dir(&config.key_dir())?;
    Ok(store)
}

/// `haven restore FILE`.
pub(crate) fn run_restore(args: RestoreArgs) -> Result<()> {
    let pass = passphrase(&args.common)?;
    if !args.file.is_file() {
        bail!("{} is not a file", args.file.display());
    }
    // A config named but not there yet (a new machine) comes from the backup.
    let mut wrote_config = None;
    if let Some(path) = args.common.config.as_deref().filter(|p| !p.exists()) {
        let checked = backup::check(&args.file, pass.as_bytes())?;
        let Some(bytes) = checked.config else {
            bail!("{} does not exist and the backup holds no config file; pass the config Haven should use", path.display());
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        haven_store::seal::write_owner_only(path, &bytes).with_context(|| format!("writing the backed-up config to {}", path.display()))?;
        wrote_config = Some(path.to_path_buf());
    }
    let result = restore_with(&args, &pass);
    if result.is_err()
        && let Some(p) = &wrote_config
    {
        let _ = std::fs::remove_file(p);
    }
    let (restored, config) = result?;
    let m = &restored.manifest;
    say!("restored {} (made {} by Haven {}, {} back end)", args.file.display(), m.created, m.haven_version, m.backend);
    say!("  {}", summary(m));
    say!("  row counts and evidence SHA-256 checked; record schema version {} (backup {})", restored.schema_version, m.schema_version);
    say!(
        "  into {} (evidence {}, key {})",
        config.database.as_deref().map_or_else(|| config.data_dir.join("haven.db").display().to_string(), redact),
        config.data_dir.join("evidence").display(),
        config.key_dir().display()
    );
    if let Some(p) = &wrote_config {
        say!("  config written to {} from the backup", p.display());
    } else if let Some((was, sum)) = &m.config {
        let now = std::fs::read(&config.path).ok().map(|b| backup::file_sum(&b));
        if now.as_ref() != Some(sum) {
            say!("  note: the backup's config ({was}) differs from {}; yours was kept (`--config NEW_FILE` writes the backup's)", config.path.display());
        }
    }
    for p in &restored.set_aside {
        say!("  set aside (not deleted): {}", p.display());
    }
    Ok(())
}

/// A database URL without its password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://…@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

fn restore_with(args: &RestoreArgs, pass: &str) -> Result<(backup::Restored, Config)> {
    let config = load(&args.common)?;
    let target = Target {
        record: match &config.database {
            Some(url) => Record::Url(url.clone()),
            None => Record::SqliteDir(config.data_dir.clone()),
        },
        evidence_dir: config.data_dir.join("evidence"),
        key_dir: config.key_dir(),
        folders: folders(&config),
        replace: args.replace,
    };
    let rt = runtime()?;
    let restored = rt.block_on(async {
        let restored = backup::restore(&args.file, pass.as_bytes(), &target).await?;
        let store = open(&config).await?;
        let detail = format!(
            "from a backup made {} ({} rows, {} evidence files)",
            restored.manifest.created,
            restored.manifest.tables.values().sum::<u64>(),
            restored.manifest.evidence.len()
        );
        store.audit(jiff::Timestamp::now(), "backup-cli", "backup.restore", "record", &detail).await?;
        store.close().await;
        anyhow::Ok(restored)
    })?;
    Ok((restored, config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_the_output() {
        assert_eq!(redact("postgres://haven:s3cret@db.example:5432/haven"), "postgres://…@db.example:5432/haven");
        assert_eq!(redact("postgres://db/haven"), "postgres://db/haven");
    }

    #[test]
    fn sizes_read_as_people_say_them() {
        assert_eq!(human(512), "512 bytes");
        assert_eq!(human(3 * 1024 * 1024), "3.0 MiB");
    }
}
