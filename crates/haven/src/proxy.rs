//! `haven proxy`, its part of `haven serve`, `haven proxy passwd`, `haven ca
//! init` and `haven reports`: the command line, and the files the proxy keeps.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::config_file;
use crate::snapshot::{ProxyWants, Recipe};

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
    /// An internal range (CIDR) the proxy may forward to, beside `[proxy] allow_internal`; repeatable.
    /// Loopback and private addresses are refused otherwise.
    #[arg(long = "allow-internal", value_name = "CIDR")]
    allow_internal: Vec<ipnet::IpNet>,
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

impl ProxyArgs {
    /// `haven proxy`: a snapshot with the proxy's part only.
    pub(crate) fn recipe(self) -> Recipe {
        Recipe {
            config: self.config,
            blocklist: self.blocklist,
            proxy: Some(ProxyWants { listen: self.listen, allow_internal: self.allow_internal }),
            ..Recipe::default()
        }
    }
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
    /// A server certificate signed by the school CA, for Haven's own
    /// DNS-over-HTTPS (`[dns] doh_tls_cert` and `doh_tls_key`) on devices
    /// that trust the school CA. Valid 397 days; run again to renew (the
    /// running server picks the new files up).
    Issue {
        /// The config file (its `[proxy] ca_dir` holds the CA).
        #[arg(long, env = "HAVEN_CONFIG")]
        config: Option<PathBuf>,
        /// The name devices reach Haven by (`haven.school.example`).
        name: String,
        /// Where to write `doh-cert.pem` and `doh-key.pem` (default: the CA folder).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

pub(crate) fn ca(command: CaCommand) -> Result<()> {
    let d = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC).date();
    let (config, force) = match command {
        CaCommand::Init { config, force } => (config, force),
        CaCommand::Issue { config, name, out } => {
            let config = config_file::load(config.as_deref())?;
            let (chain, key) = haven_proxy::tls::issue_server_cert(&config.proxy.ca_dir, &name, (i32::from(d.year()), d.month() as u8, d.day() as u8))?;
            let out = out.unwrap_or_else(|| config.proxy.ca_dir.clone());
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            let (cert_path, key_path) = (out.join("doh-cert.pem"), out.join("doh-key.pem"));
            haven_store::seal::write_owner_only(&key_path, key.as_bytes()).with_context(|| format!("writing {}", key_path.display()))?;
            std::fs::write(&cert_path, chain).with_context(|| format!("writing {}", cert_path.display()))?;
            say!("certificate for {name} written to {} (key {})", cert_path.display(), key_path.display());
            say!("set [dns] doh_tls_listen, doh_tls_cert and doh_tls_key, and reload Haven");
            return Ok(());
        }
    };
    let config = config_file::load(config.as_deref())?;
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
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let kept = rt.block_on(async {
        let store = crate::web::open(&config).await?;
        let all = store.reports(None, 100_000).await?;
        // Reading reports is reading the safeguarding record.
        store.audit(jiff::Timestamp::now(), "cli", "report.list", "reports", &format!("{} reports", all.len())).await?;
        store.close().await;
        anyhow::Ok(all)
    })?;
    // A proxy that ran without the record kept its reports in the data folder.
    let path = haven_proxy::reports_path(&config.data_dir);
    let alone = haven_proxy::reports::read(&path).with_context(|| format!("reading {}", path.display()))?;
    for r in kept.iter().rev() {
        if args.json {
            say!("{}", serde_json::to_string(r)?);
        } else {
            let kind = match r.kind.as_str() {
                "worry" => "WORRYING",
                "public" => "PUBLIC",
                _ => "review",
            };
            say!(
                "{}  {:<8} {:<14} {:<12} {:<40} {}{}",
                r.at.get(..19).unwrap_or(&r.at),
                kind,
                r.reference.as_deref().unwrap_or("-"),
                r.person.as_deref().unwrap_or("-"),
                r.url.as_deref().unwrap_or("-"),
                r.words,
                r.alert.map(|a| format!("  (alert {a})")).unwrap_or_default()
            );
        }
    }
    for r in &alone {
        if args.json {
            say!("{}", serde_json::to_string(r)?);
        } else {
            let kind = if r.kind == "worry" { "WORRYING" } else { "review" };
            say!(
                "{}  {:<8} {:<14} {:<12} {:<40} {}  (kept by a proxy running alone)",
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
        let worrying = kept.iter().filter(|r| r.kind != "review").count() + alone.iter().filter(|r| r.kind == "worry").count();
        eprintln!("{} reports ({worrying} worrying)", kept.len() + alone.len());
    }
    Ok(())
}
