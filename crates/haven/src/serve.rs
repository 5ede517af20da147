//! `haven serve`: load the configuration and lists, and keep them current.
//!
//! The enforcement points (DNS filter, proxy, web app) attach here as they are
//! built; today it validates the configuration, compiles the list index, and
//! recompiles it when a list or the config changes.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use haven_lists::NoProgress;

use crate::config_file;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// The config file (default: $HAVEN_CONFIG, ./haven.toml, else the embedded demo).
    #[arg(long, env = "HAVEN_CONFIG")]
    config: Option<PathBuf>,
    /// Check for changed lists and config this often (seconds).
    #[arg(long, default_value_t = 30)]
    reload_every: u64,
    /// Load everything, report, and exit (for service health checks).
    #[arg(long)]
    once: bool,
}

pub(crate) fn run(args: Args) -> Result<()> {
    let config = config_file::load(args.config.as_deref())?;
    let index = config_file::index(&config, &NoProgress)?;
    let h = index.header();
    say!(
        "haven: {} — {} schools, {} groups; lists: {} domains, {} URLs, {} digests (index {})",
        config.policy.trust,
        config.policy.schools.len(),
        config.policy.groups.len(),
        h.domain_keys,
        h.url_keys,
        h.sha256_count + h.md5_count,
        config.index_path.display()
    );
    if args.once {
        return Ok(());
    }
    say!("haven: watching the configuration and lists for changes (Ctrl-C to stop)");
    let mut fingerprint = h.fingerprint.clone();
    loop {
        std::thread::sleep(Duration::from_secs(args.reload_every.max(1)));
        match config_file::load(args.config.as_deref()) {
            Ok(config) => {
                let wanted = haven_lists::fingerprint(&config.lists);
                if wanted != fingerprint {
                    match config_file::index(&config, &NoProgress) {
                        Ok(index) => {
                            fingerprint = index.header().fingerprint.clone();
                            say!("haven: lists changed; index rebuilt ({} domains)", index.header().domain_keys);
                        }
                        Err(e) => eprintln!("haven: lists changed but could not be imported; keeping the previous index: {e:#}"),
                    }
                }
            }
            Err(e) => eprintln!("haven: the configuration has changed and has problems; keeping the previous one: {e:#}"),
        }
    }
}
