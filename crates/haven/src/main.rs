//! `haven`: the one binary. Glue between the crates and the command line; the
//! decisions themselves live in `haven-policy`.

#[macro_use]
mod out;
mod admin;
mod backup;
mod changes;
mod check;
mod classify;
mod config_file;
mod dns;
mod exporter;
mod feeds;
mod lists;
mod logs;
mod model;
mod probes;
mod proxy;
mod reload;
mod report;
mod retention;
mod run;
mod sar;
mod selftest;
mod serve;
mod snapshot;
mod suggestions;
mod web;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Haven: web filtering, monitoring and the safeguarding record for schools and trusts.
#[derive(Parser)]
#[command(name = "haven", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run Haven (the embedded demo configuration when no --config is given).
    Serve(serve::Args),
    /// Run the DNS filter alone (or, with --blocklist, without a config).
    Dns(dns::DnsArgs),
    /// Run the web proxy alone (or, with --blocklist, without a config); `passwd` sets an account's password.
    Proxy(proxy::ProxyArgs),
    /// The school CA for HTTPS inspection.
    Ca {
        #[command(subcommand)]
        command: proxy::CaCommand,
    },
    /// Reports kept in the record: block-page review requests and worries, and public reports.
    Reports(proxy::ReportsArgs),
    /// Set up and script the safeguarding record: schools, staff accounts (add, list, disable, reset, unlock), devices, API keys, call-out lists, audit, demo credentials.
    Admin(admin::Args),
    /// Show the decision for URLs: allow, block or safe search, and why.
    Check(check::Args),
    /// Categories of concern and levels for texts (JSON Lines in, JSON Lines out).
    Classify(classify::Args),
    /// One person's, device's or address's query history.
    Logs(logs::Args),
    /// Ask the running Haven to re-read its configuration and lists.
    Reload(reload::Args),
    /// The trust's own semantic head: retrain it from the record's closed alerts and example sentences (`retrain --from-record`), measured before it is switched on (`switch-on`, `switch-off`).
    Model(model::Args),
    /// Reports: the termly governor pack (`report governor --school S --from D --to D --out FILE.pdf`, `--html`; `--school all` for the trust) and the weekly DSL digest (`report digest --school S --week D`: printed and e-mailed to the school's DSLs).
    Report(report::Args),
    /// Write an encrypted backup of the record, its evidence, its key and the config to one file (--passphrase-file or $HAVEN_BACKUP_PASSPHRASE).
    Backup(backup::BackupArgs),
    /// Restore a backup made by `haven backup` into an empty record (or over one, with --replace).
    Restore(backup::RestoreArgs),
    /// Subject access: `sar export --person P --out FILE.zip` writes everything held about one person (JSON and an HTML index, evidence files included unless --no-evidence-files), audited.
    Sar(sar::Args),
    /// Import, update and inspect category lists.
    Lists {
        #[command(subcommand)]
        command: lists::Command,
    },
    /// Run the filtering checks' probes through a running `haven serve` as a school's group; record them, tell IT of a failure.
    Selftest(selftest::Args),
    /// Validate a configuration file.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Check a config file and list every problem with its line.
    Check {
        /// The config file (default: $HAVEN_CONFIG, ./haven.toml, else the embedded demo).
        #[arg(long, env = "HAVEN_CONFIG")]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging();
    let result = match cli.command {
        Command::Serve(a) => serve::run(a),
        Command::Dns(a) => run::run(a.recipe(), None, None),
        Command::Proxy(a) => match a.command.clone() {
            Some(proxy::ProxyCommand::Passwd { config, user }) => proxy::passwd(config, &user),
            None => run::run(a.recipe(), None, None),
        },
        Command::Ca { command } => proxy::ca(command),
        Command::Admin(a) => admin::run(a),
        Command::Reports(a) => proxy::reports(a),
        Command::Check(a) => check::run(a),
        Command::Classify(a) => classify::run(a),
        Command::Logs(a) => logs::run(a),
        Command::Reload(a) => reload::run(a),
        Command::Model(a) => model::run(a),
        Command::Report(a) => report::run(a),
        Command::Backup(a) => backup::run_backup(a),
        Command::Restore(a) => backup::run_restore(a),
        Command::Selftest(a) => selftest::run(a),
        Command::Sar(a) => sar::run(a),
        Command::Lists { command } => lists::run(command),
        Command::Config { command: ConfigCommand::Check { config } } => config_file::load(config.as_deref()).and_then(|c| {
            classify::monitoring(&c)?;
            for (school, files) in &c.school_lexicons {
                anyhow::Context::with_context(classify::lexicon_files(files), || format!("in the lexicons of school {school}"))?;
            }
            say!(
                "{}: OK — {} schools, {} groups, {} policies, {} users, {} networks, {} list sources, {} lexicons of the trust's own, {} of schools' own",
                c.path.display(),
                c.policy.schools.len(),
                c.policy.groups.len(),
                c.policy.policies.len(),
                c.policy.users.len(),
                c.policy.networks.len(),
                c.lists.len(),
                c.lexicons.len(),
                c.school_lexicons.values().map(Vec::len).sum::<usize>()
            );
            Ok(())
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A closed pipe (`haven check --batch … | head`) is not an error.
            if e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)) {
                return ExitCode::SUCCESS;
            }
            eprintln!("haven: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Log lines go to standard error, human-readable; `HAVEN_LOG` (else
/// `RUST_LOG`) chooses what is shown, `info` and above by default.
fn logging() {
    use tracing_subscriber::EnvFilter;
    let wanted = std::env::var("HAVEN_LOG").or_else(|_| std::env::var("RUST_LOG")).ok().filter(|f| !f.trim().is_empty());
    let (filter, bad) = match wanted.as_deref().map(EnvFilter::try_new) {
        Some(Ok(f)) => (f, None),
        Some(Err(e)) => (EnvFilter::new("info"), Some(e)),
        None => (EnvFilter::new("info"), None),
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).with_ansi(ansi).init();
    if let Some(e) = bad {
        tracing::warn!("haven: HAVEN_LOG / RUST_LOG could not be read ({e}); showing info and above (write e.g. HAVEN_LOG=debug or HAVEN_LOG=haven_dns=debug)");
    }
}
