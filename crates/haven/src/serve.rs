//! `haven serve`: every part of Haven on one configuration: the DNS filter
//! (UDP, TCP, DoH), the web proxy, and the safeguarding service (the web app
//! and JSON API), reloaded on SIGHUP, `haven reload`, or when the config or
//! lists change.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use crate::run;
use crate::snapshot::{DnsWants, ProxyWants, Recipe, WebWants};

#[derive(clap::Args)]
pub(crate) struct Args {
    /// The config file (default: $HAVEN_CONFIG, ./haven.toml, else the embedded demo).
    #[arg(long, env = "HAVEN_CONFIG")]
    config: Option<PathBuf>,
    /// Keep Haven's data here (the SQLite record, logs, list index, CA); overrides `[data] dir`.
    #[arg(long, env = "HAVEN_DATA")]
    data: Option<PathBuf>,
    /// Where the web app and API listen; repeatable. Overrides `[web] listen`.
    #[arg(long)]
    listen: Vec<SocketAddr>,
    /// Where DNS is answered; repeatable. Overrides `[dns] listen`.
    #[arg(long)]
    dns_listen: Vec<SocketAddr>,
    /// Forward allowed DNS questions here; repeatable. Overrides `[dns] upstream`.
    #[arg(long)]
    upstream: Vec<String>,
    /// Where the web proxy listens; repeatable. Overrides `[proxy] listen`.
    #[arg(long)]
    proxy_listen: Vec<SocketAddr>,
    /// Check for changed lists and config this often (seconds).
    #[arg(long, default_value_t = 30)]
    reload_every: u64,
    /// Write the process id here (default: haven.pid in the data folder).
    #[arg(long)]
    pid_file: Option<PathBuf>,
}

pub(crate) fn run(args: Args) -> Result<()> {
    if let Some(d) = &args.data {
        crate::config_file::set_data_dir(d);
    }
    let recipe = Recipe {
        config: args.config,
        blocklist: Vec::new(),
        dns: Some(DnsWants { listen: args.dns_listen, upstream: args.upstream }),
        proxy: Some(ProxyWants { listen: args.proxy_listen, ..ProxyWants::default() }),
        web: Some(WebWants { listen: args.listen }),
    };
    run::run(recipe, Some(Duration::from_secs(args.reload_every.max(1))), args.pid_file)
}
