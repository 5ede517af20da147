//! `haven serve`: every part of Haven on one configuration: the DNS filter
//! (UDP, TCP, DoH), the web proxy, and the safeguarding service (the web app
//! and JSON API), reloaded on SIGHUP, `haven reload`, or when the config or
//! lists change.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use crate::{dns, proxy, run, web};

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
    let dns_args = dns::DnsArgs::new(args.config.clone(), args.dns_listen, args.upstream);
    let proxy_args = proxy::ProxyArgs::for_config(args.config.clone(), args.proxy_listen);
    run::run(
        run::Parts {
            dns: Some(dns::Source::new(dns_args)),
            proxy: Some(proxy::Source::new(proxy_args)),
            web: Some(web::Source { config: args.config, listen: args.listen }),
        },
        Some(Duration::from_secs(args.reload_every.max(1))),
        args.pid_file,
    )
}
