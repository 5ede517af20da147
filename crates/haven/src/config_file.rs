//! Finding and loading the configuration, and the list index that goes with it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use haven_config::Config;
use haven_lists::{ListIndex, Progress};

/// The demo configuration compiled into the binary, used when no config is given.
pub(crate) const DEMO_CONFIG: &str = include_str!("../../../examples/haven.toml");

static DATA_DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// `--data DIR`: every config loaded from now on keeps its data there.
pub(crate) fn set_data_dir(dir: &Path) {
    let dir = if dir.is_absolute() { dir.to_path_buf() } else { std::env::current_dir().map(|c| c.join(dir)).unwrap_or_else(|_| dir.to_path_buf()) };
    let _ = DATA_DIR.set(dir);
}

/// Where the record is, as the commands that open it beside a running
/// `haven serve` take it (`admin`, `model`, `report`, `sar`).
#[derive(clap::Args)]
pub(crate) struct RecordArgs {
    /// The config file (default: $HAVEN_CONFIG, ./haven.toml, else the embedded demo).
    #[arg(long, env = "HAVEN_CONFIG", global = true)]
    pub(crate) config: Option<PathBuf>,
    /// Haven's data folder, as given to `haven serve --data`.
    #[arg(long, env = "HAVEN_DATA", global = true)]
    pub(crate) data: Option<PathBuf>,
}

impl RecordArgs {
    /// The configuration, with `--data` in force.
    pub(crate) fn load(&self) -> Result<Config> {
        load_with_data(self.config.as_deref(), self.data.as_deref())
    }
}

/// Loads `config` (as [`load`]) with the data folder `data` in force.
pub(crate) fn load_with_data(config: Option<&Path>, data: Option<&Path>) -> Result<Config> {
    if let Some(d) = data {
        set_data_dir(d);
    }
    load(config)
}

/// Loads `path`, else `./haven.toml`, else the embedded demo configuration
/// (anchored at the repository's `examples/` folder when run from a checkout).
pub(crate) fn load(path: Option<&Path>) -> Result<Config> {
    let mut config = load_file(path)?;
    if let Some(dir) = DATA_DIR.get() {
        // Paths under the configured data folder move with it.
        let old = std::mem::replace(&mut config.data_dir, dir.clone());
        for p in [&mut config.index_path, &mut config.proxy.accounts, &mut config.proxy.ca_dir] {
            if let Ok(rest) = p.strip_prefix(&old) {
                *p = dir.join(rest);
            }
        }
    }
    // The policy's thresholds come from the config, else from the model.
    match host_model(&config)? {
        Some(model) => {
            config.policy.host_model.thresholds = match &config.host_model.thresholds {
                Some(t) => t.clone(),
                None => model.calibrated_thresholds().iter().filter(|(c, _)| haven_hostmodel::DEFAULT_CATEGORIES.contains(c)).copied().collect(),
            };
        }
        None => config.policy.host_model.enabled = false,
    }
    Ok(config)
}

/// The hostname model `config` asks for: the trust's own file, else the
/// one Haven ships; `None` when `[host_model] enabled = false`.
pub(crate) fn host_model(config: &Config) -> Result<Option<std::sync::Arc<haven_hostmodel::HostModel>>> {
    if !config.host_model.enabled {
        return Ok(None);
    }
    let model = match &config.host_model.model {
        Some(path) => {
            let bytes = std::fs::read(path).with_context(|| format!("[host_model] model: reading {}", path.display()))?;
            std::sync::Arc::new(haven_hostmodel::HostModel::from_bytes(&bytes).with_context(|| format!("[host_model] model: {}", path.display()))?)
        }
        None => haven_hostmodel::shipped_shared().context("the shipped hostname model")?,
    };
    Ok(Some(model))
}

fn load_file(path: Option<&Path>) -> Result<Config> {
    // Counted so a reload can be seen to parse once (`/metrics`, HAVEN_LOG=debug).
    metrics::counter!("haven_config_parses_total").increment(1);
    tracing::debug!(config = %path.map_or_else(|| "(default)".into(), |p| p.display().to_string()), "haven: parsing the configuration");
    let config = match path {
        Some(p) => Config::load(p)?,
        None if Path::new("haven.toml").exists() => Config::load(Path::new("haven.toml"))?,
        None => {
            let anchor = demo_anchor();
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| eprintln!("haven: no --config given; using the embedded demo configuration ({})", anchor.display()));
            Config::parse(DEMO_CONFIG, &anchor)?
        }
    };
    for w in &config.warnings {
        eprintln!("haven: warning: {w}");
    }
    Ok(config)
}

fn demo_anchor() -> PathBuf {
    let from_checkout = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/haven.toml");
    if from_checkout.exists() {
        return from_checkout.canonicalize().unwrap_or(from_checkout);
    }
    PathBuf::from("examples/haven.toml")
}

/// The compiled index for `config`: the saved one when it matches the sources,
/// otherwise compiled now and saved for next time.
pub(crate) fn index(config: &Config, progress: &dyn Progress) -> Result<ListIndex> {
    metrics::counter!("haven_list_index_loads_total").increment(1);
    tracing::debug!(index = %config.index_path.display(), "haven: loading the list index");
    let wanted = haven_lists::fingerprint(&config.lists);
    let model = host_model(config)?;
    if let Ok(index) = ListIndex::load(&config.index_path)
        && index.header().fingerprint == wanted
    {
        return Ok(index.with_model(model));
    }
    let (index, report) = haven_lists::compile(&config.lists, &now(), progress).context("importing lists")?;
    if report.bad_lines() > 0 {
        eprintln!("haven: {} list lines could not be used; `haven lists stats` shows where", report.bad_lines());
    }
    if let Err(e) = index.save(&config.index_path) {
        eprintln!("haven: warning: could not save the list index ({e}); it will be rebuilt next time");
    }
    Ok(index.with_model(model))
}

pub(crate) fn now() -> String {
    jiff::Timestamp::now().to_string()
}
