//! `haven admin`: first set-up and scripts, without the browser. Each command
//! opens the same record `haven serve` uses (`--data DIR`, or `[data]
//! database`) and works while the server runs; secrets are printed once.

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use haven_store::Role;

use crate::{config_file, web};

#[derive(clap::Args)]
pub(crate) struct Args {
    /// The config file (default: $HAVEN_CONFIG, ./haven.toml, else the embedded demo).
    #[arg(long, env = "HAVEN_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Haven's data folder, as given to `haven serve --data`.
    #[arg(long, env = "HAVEN_DATA", global = true)]
    data: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Schools.
    School {
        #[command(subcommand)]
        command: SchoolCommand,
    },
    /// Staff accounts.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Devices that send monitoring events.
    Device {
        #[command(subcommand)]
        command: DeviceCommand,
    },
    /// API keys that act as a member of staff.
    Apikey {
        #[command(subcommand)]
        command: ApikeyCommand,
    },
    /// The level-5 call-out lists.
    Oncall {
        #[command(subcommand)]
        command: OncallCommand,
    },
    /// Search the audit log.
    Audit {
        /// Only entries about this object (`alert:42`, `alerts`).
        #[arg(long)]
        object: Option<String>,
        /// Only entries by this actor (`account:3`, `device:1`).
        #[arg(long)]
        actor: Option<String>,
        /// At most this many, newest first.
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
}

#[derive(clap::Subcommand)]
enum SchoolCommand {
    /// One school a line: its id, then its name.
    List,
}

#[derive(clap::Subcommand)]
enum UserCommand {
    /// Add a staff account; the password is read from standard input (one line).
    Add {
        /// Sign-in e-mail.
        #[arg(long)]
        email: String,
        /// dsl, deputy-dsl, headteacher, it-technician, teacher, governor, trust-safeguarding-lead, trust-admin.
        #[arg(long)]
        role: String,
        /// The school (for school roles).
        #[arg(long)]
        school: Option<String>,
    },
}

#[derive(clap::Subcommand)]
enum DeviceCommand {
    /// Register a device; prints its ingest token.
    Add {
        /// Its school.
        #[arg(long)]
        school: String,
        /// A name staff recognise (`Library PC 3`).
        #[arg(long)]
        name: String,
    },
}

#[derive(clap::Subcommand)]
enum ApikeyCommand {
    /// Make an API key acting as this account; prints it.
    Add {
        /// The account's e-mail.
        #[arg(long)]
        email: String,
    },
}

#[derive(clap::Subcommand)]
enum OncallCommand {
    /// Add someone to a school's call-out list (or the trust's, with --trust).
    Add {
        /// The school.
        #[arg(long, required_unless_present = "trust")]
        school: Option<String>,
        /// The trust's list (called in holidays).
        #[arg(long)]
        trust: bool,
        /// Their e-mail address.
        #[arg(long)]
        email: Option<String>,
        /// A webhook URL (an SMS or voice gateway).
        #[arg(long)]
        webhook: Option<String>,
        /// Lower is called first.
        #[arg(long)]
        priority: i64,
        /// Their name, as the call-out says it.
        #[arg(long)]
        name: Option<String>,
    },
    /// The call-out list, in order.
    List {
        /// The school (the trust's list with --trust).
        #[arg(long, required_unless_present = "trust")]
        school: Option<String>,
        /// The trust's list.
        #[arg(long)]
        trust: bool,
    },
}

pub(crate) fn run(args: Args) -> Result<()> {
    if let Some(d) = &args.data {
        config_file::set_data_dir(d);
    }
    let config = config_file::load(args.config.as_deref())?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        let store = web::open(&config).await?;
        let now = jiff::Timestamp::now();
        match args.command {
            Command::School { command: SchoolCommand::List } => {
                for s in store.schools().await? {
                    say!("{} {}", s.id, s.name);
                }
            }
            Command::User { command: UserCommand::Add { email, role, school } } => {
                let Some(role) = Role::parse(&role) else {
                    let names: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
                    bail!("--role {role:?} is not a role; use one of {}", names.join(", "));
                };
                let mut line = String::new();
                std::io::stdin().lock().read_line(&mut line).context("reading the password from standard input")?;
                let password = line.trim_end_matches(['\n', '\r']);
                let (account, totp) = store.add_account(&email, role, school.as_deref(), password, now).await?;
                store.audit(now, "admin-cli", "account.add", &format!("account:{}", account.id), role.as_str()).await?;
                say!("added {} ({}{})", account.email, role.as_str(), account.school.as_deref().map(|s| format!(" at {s}")).unwrap_or_default());
                if let Some(secret) = totp {
                    say!("totp-secret {secret}");
                    say!("otpauth://totp/Haven:{}?secret={secret}&issuer=Haven", account.email);
                }
            }
            Command::Device { command: DeviceCommand::Add { school, name } } => {
                let (device, token) = store.add_device(&school, &name, now).await?;
                store.audit(now, "admin-cli", "device.add", &format!("device:{}", device.id), &school).await?;
                say!("{token}");
                eprintln!("device {} added at {school}; the token above is shown once", device.id);
            }
            Command::Apikey { command: ApikeyCommand::Add { email } } => {
                let key = store.add_api_key(&email, now).await?;
                store.audit(now, "admin-cli", "apikey.add", &format!("account:{email}"), "").await?;
                say!("{key}");
                eprintln!("API key for {email}; shown once");
            }
            Command::Oncall { command: OncallCommand::Add { school, trust, email, webhook, priority, name } } => {
                let school = if trust { None } else { school };
                let name = name.or_else(|| email.clone()).or_else(|| webhook.clone()).unwrap_or_default();
                let id = store.add_oncall(school.as_deref(), &name, email.as_deref(), webhook.as_deref(), priority).await?;
                store.audit(now, "admin-cli", "oncall.add", &format!("oncall:{id}"), school.as_deref().unwrap_or("trust")).await?;
                say!("call-out entry {id} added ({name}, priority {priority})");
            }
            Command::Oncall { command: OncallCommand::List { school, trust } } => {
                let school = if trust { None } else { school };
                for o in store.oncall(school.as_deref()).await? {
                    say!("{} {} {}", o.priority, o.name, o.email.or(o.webhook).unwrap_or_default());
                }
            }
            Command::Audit { object, actor, limit } => {
                for e in store.audit_search(object.as_deref(), actor.as_deref(), limit).await? {
                    say!("{}  {:<14} {:<18} {:<14} {}", e.at, e.actor, e.action, e.object, e.detail);
                }
            }
        }
        store.close().await;
        Ok(())
    })
}
