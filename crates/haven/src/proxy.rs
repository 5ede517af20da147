//! `haven proxy`, its part of `haven serve`, `haven proxy passwd`, `haven ca
//! init` and `haven reports`: build the proxy's filter from a config (or from
//! plain block lists), and the files the proxy keeps.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use haven_config::ProxySettings;
use haven_lists::NoProgress;
use haven_proxy::Filter;

use crate::{config_file, dns};

#[derive(clap::Args, Clone)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct ProxyArgs {
    /// The config file (default: $HAVEN_CONFIG, ./haven.toml, else the embedded demo). Ignored with --blocklist.
    #[arg(long, env = "HAVEN_CONFIG")]
    config: Option<PathBuf>,
    /// Listen here; repeatable. Overrides `[proxy] listen`.
    #[arg(long)]
    listen: Vec<SocketAddr>,
    /// Run without a config: these files (plain domains or hosts format) are one
    /// category denied to everyone. Repeatable.
    #[arg(long)]
    blocklist: Vec<PathBuf>,
    #[command(subcommand)]
    pub(crate) command: Option<ProxyCommand>,
}

#[derive(clap::Subcommand, Clone)]
pub(crate) enum ProxyCommand {
    /// Set a proxy account's password (read from standard input, one line).
    Passwd {
        /// The config file, whose `[proxy] accounts` file is changed.
        #[arg(long, env = "HAVEN_CONFIG")]
        config: Option<PathBuf>,
        /// The user name, as the MIS or directory knows it.
        user: String,
    },
}

/// Where the proxy's filter comes from, so a reload builds it the same way.
#[derive(Clone)]
pub(crate) struct Source {
    args: ProxyArgs,
}

/// A filter ready to serve, and what it was built from.
pub(crate) struct Built {
    pub(crate) filter: Filter,
    pub(crate) log_dir: Option<PathBuf>,
    pub(crate) data_dir: PathBuf,
    pub(crate) fingerprint: String,
}

impl ProxyArgs {
    /// The proxy of `haven serve`: the same config as the DNS filter.
    pub(crate) fn for_config(config: Option<PathBuf>, listen: Vec<SocketAddr>) -> Self {
        Self { config, listen, blocklist: Vec::new(), command: None }
    }
}

/// What a reload looks at: the lists, the config file, the proxy's accounts
/// and the trust's own lexicons.
fn stamp(config: &haven_config::Config) -> String {
    let mut s = haven_lists::fingerprint(&config.lists) + &dns::config_stamp(&config.path) + &accounts_stamp(&config.proxy);
    for l in &config.lexicons {
        s += &dns::config_stamp(l);
    }
    s
}

impl Source {
    pub(crate) fn new(args: ProxyArgs) -> Self {
        Self { args }
    }

    pub(crate) fn fingerprint(&self) -> Result<String> {
        if !self.args.blocklist.is_empty() {
            return Ok(haven_lists::fingerprint(&dns::blocklist_specs(&self.args.blocklist)?));
        }
        Ok(stamp(&config_file::load(self.args.config.as_deref())?))
    }

    pub(crate) fn build(&self) -> Result<Built> {
        if !self.args.blocklist.is_empty() {
            let specs = dns::blocklist_specs(&self.args.blocklist)?;
            let (policy, lists) = dns::blocklist_policy(&specs, "haven proxy --blocklist")?;
            let data_dir = PathBuf::from("haven-data");
            let mut settings = ProxySettings { log: false, ..ProxySettings::defaults(&data_dir) };
            if !self.args.listen.is_empty() {
                settings.listen.clone_from(&self.args.listen);
            }
            let fingerprint = haven_lists::fingerprint(&specs);
            let classifier = haven_textscan::Classifier::shipped_shared();
            return Ok(Built { filter: Filter { policy, lists, settings, classifier }, log_dir: None, data_dir, fingerprint });
        }
        let config = config_file::load(self.args.config.as_deref())?;
        let lists = config_file::index(&config, &NoProgress)?;
        let mut settings = config.proxy.clone();
        if !self.args.listen.is_empty() {
            settings.listen.clone_from(&self.args.listen);
        }
        let classifier = crate::classify::monitoring(&config)?;
        let fingerprint = stamp(&config);
        Ok(Built {
            filter: Filter { policy: config.policy, lists, settings, classifier },
            log_dir: Some(config.data_dir.join("logs")),
            data_dir: config.data_dir,
            fingerprint,
        })
    }
}

/// A changed accounts file is a reason to reload.
fn accounts_stamp(s: &ProxySettings) -> String {
    std::fs::metadata(&s.accounts).and_then(|m| m.modified()).map(|t| format!("{t:?}")).unwrap_or_default()
}

pub(crate) fn passwd(config: Option<PathBuf>, user: &str) -> Result<()> {
    let config = config_file::load(config.as_deref())?;
    if config.policy.user(user).is_none() {
        eprintln!("haven: note: {user:?} is not a user in the config; they will be known by name but get their network's group");
    }
    eprintln!("Password for {user} (one line on standard input):");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("reading the password")?;
    let password = line.trim_end_matches(['\n', '\r']);
    if password.chars().count() < 8 {
        bail!("the password must be at least 8 characters");
    }
    haven_proxy::auth::Accounts::set_password(&config.proxy.accounts, user, password)?;
    say!("password set for {user} in {} (the running proxy picks it up within its reload interval)", config.proxy.accounts.display());
    Ok(())
}

#[derive(clap::Subcommand)]
pub(crate) enum CaCommand {
    /// Create the school CA for HTTPS inspection, and a page telling IT how to install it.
    Init {
        /// The config file (its `[proxy] ca_dir` is where the CA goes).
        #[arg(long, env = "HAVEN_CONFIG")]
        config: Option<PathBuf>,
        /// Replace an existing CA (every device must then trust the new one).
        #[arg(long)]
        force: bool,
    },
}

pub(crate) fn ca(command: CaCommand) -> Result<()> {
    let CaCommand::Init { config, force } = command;
    let config = config_file::load(config.as_deref())?;
    let d = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC).date();
    let cert = haven_proxy::tls::init_ca(&config.proxy.ca_dir, &config.policy.trust, (i32::from(d.year()), d.month() as u8, d.day() as u8), force)?;
    say!("school CA written to {}", cert.display());
    say!("install it on school devices: {}", config.proxy.ca_dir.join("INSTALL.html").display());
    say!("then set [proxy] inspect = true and reload Haven");
    Ok(())
}

#[derive(clap::Args)]
pub(crate) struct ReportsArgs {
    /// The config file (its data folder holds the reports).
    #[arg(long, env = "HAVEN_CONFIG")]
    config: Option<PathBuf>,
    /// JSON lines instead of a table.
    #[arg(long)]
    json: bool,
}

pub(crate) fn reports(args: ReportsArgs) -> Result<()> {
    let config = config_file::load(args.config.as_deref())?;
    let path = haven_proxy::reports_path(&config.data_dir);
    let all = haven_proxy::reports::read(&path).with_context(|| format!("reading {}", path.display()))?;
    for r in &all {
        if args.json {
            say!("{}", serde_json::to_string(r)?);
        } else {
            let kind = if r.kind == "worry" { "WORRYING" } else { "review" };
            say!(
                "{}  {:<8} {:<14} {:<12} {:<40} {}",
                r.time.get(..19).unwrap_or(&r.time),
                kind,
                r.reference,
                r.user.as_deref().unwrap_or(&r.client),
                r.url,
                r.note
            );
        }
    }
    if !args.json {
        eprintln!("{} reports ({} worrying)", all.len(), all.iter().filter(|r| r.kind == "worry").count());
    }
    Ok(())
}
