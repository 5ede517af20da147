//! `haven serve`: every part of Haven that is built, on one configuration.
//! Today that is the DNS filter (UDP, TCP, DoH) and the web proxy, with their
//! access logs, reloaded on SIGHUP, `haven reload`, or when the config or
//! lists change.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use crate::{dns, proxy, run};

#[derive(clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    dns: dns::DnsArgs,
    /// Check for changed lists and config this often (seconds).
    #[arg(long, default_value_t = 30)]
    reload_every: u64,
    /// Write the process id here (default: haven.pid in the data folder).
    #[arg(long)]
    pid_file: Option<PathBuf>,
}

pub(crate) fn run(args: Args) -> Result<()> {
    let proxy_args = proxy::ProxyArgs::for_config(args.dns.config());
    run::run(
        run::Parts { dns: Some(dns::Source::new(args.dns)), proxy: Some(proxy::Source::new(proxy_args)) },
        Some(Duration::from_secs(args.reload_every.max(1))),
        args.pid_file,
    )
}
