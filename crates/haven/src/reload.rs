//! `haven reload`: ask the running Haven to re-read its config and lists.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::config_file;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// The config file of the running Haven (its data folder holds haven.pid).
    #[arg(long, env = "HAVEN_CONFIG")]
    config: Option<PathBuf>,
}

pub(crate) fn run(args: Args) -> Result<()> {
    // Check the new config first, so a broken one is reported here and now.
    let config = config_file::load(args.config.as_deref())?;
    let pid_file = config.data_dir.join("haven.pid");
    let pid = std::fs::read_to_string(&pid_file).with_context(|| format!("no running Haven found ({} is missing)", pid_file.display()))?;
    let pid: u32 = pid.trim().parse().with_context(|| format!("{} does not hold a process id", pid_file.display()))?;
    let status = std::process::Command::new("kill").args(["-HUP", &pid.to_string()]).status().context("running kill")?;
    if !status.success() {
        bail!("could not signal process {pid} (stale {}?)", pid_file.display());
    }
    say!("asked Haven (process {pid}) to reload; it keeps the previous configuration if the new one fails");
    Ok(())
}
