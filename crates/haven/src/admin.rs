//! `haven admin`: first set-up and scripts, without the browser. Each command
//! opens the same record `haven serve` uses (`--data DIR`, or `[data]
//! database`) and works while the server runs; secrets are printed once.
//! Accounts, API keys and devices can be taken away again (`disable`,
//! `revoke`): what a leaver or a lost laptop needs.

use std::io::BufRead;

use anyhow::{Context, Result, bail};
use haven_config::Config;
use haven_store::{Role, Store};

use crate::{config_file, web};

#[derive(clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    record: config_file::RecordArgs,
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
    /// Staff accounts (`haven admin account …` is the same).
    #[command(visible_alias = "account")]
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
    /// The public key the browser extension checks its policy with (put it in
    /// the extension's managed policy as `policy_key`).
    ExtensionKey,
    /// The demo accounts' sign-in details again (a demo configuration only).
    DemoCredentials {
        /// Give the demo accounts their demo passwords and a new second factor and device token, unlocked.
        #[arg(long)]
        reset: bool,
    },
    /// The level-5 call-out lists.
    Oncall {
        #[command(subcommand)]
        command: OncallCommand,
    },
    /// Changes to filtering on top of the config (allow or block a site or
    /// category for a group, class or person), and the requests for them.
    Change {
        #[command(subcommand)]
        command: crate::changes::ChangeCommand,
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
        /// dsl, deputy-dsl, headteacher, it-technician, it-lead, teacher, governor, trust-safeguarding-lead, trust-admin.
        #[arg(long)]
        role: String,
        /// The school (for school roles).
        #[arg(long)]
        school: Option<String>,
        /// The name shown wherever they act ("Sam Patel"); the e-mail is shown without one.
        #[arg(long)]
        name: Option<String>,
    },
    /// Every account: e-mail, role, school, and whether it is active, locked or disabled.
    List,
    /// Stop an account signing in; its sessions end at once and its API keys stop working.
    Disable {
        /// The account's e-mail.
        #[arg(long)]
        email: String,
    },
    /// Let a disabled account sign in again.
    Enable {
        /// The account's e-mail.
        #[arg(long)]
        email: String,
    },
    /// Set a new password (read from standard input, one line); unlocks the account and ends its sessions.
    ResetPassword {
        /// The account's e-mail.
        #[arg(long)]
        email: String,
    },
    /// Give the account a new second factor (the old authenticator stops working); prints the secret once.
    ResetTotp {
        /// The account's e-mail.
        #[arg(long)]
        email: String,
    },
    /// Lift a lock after too many failed sign-ins.
    Unlock {
        /// The account's e-mail.
        #[arg(long)]
        email: String,
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
        /// The pupil it belongs to (a one-to-one laptop): who its events are
        /// about when the browser does not say who is signed in.
        #[arg(long)]
        owner: Option<String>,
    },
    /// Every device: id, school, name, whether its token still works, and
    /// its last contact (agent version, events queued, events dropped).
    List,
    /// Set (or with no --login, clear) the pupil a device belongs to.
    Owner {
        /// The device's id (`haven admin device list`).
        #[arg(long)]
        id: i64,
        /// The pupil's login.
        #[arg(long)]
        login: Option<String>,
    },
    /// Stop a device's token working (a lost or retired machine).
    Revoke {
        /// The device's id (`haven admin device list`).
        #[arg(long)]
        id: i64,
    },
}

#[derive(clap::Subcommand)]
enum ApikeyCommand {
    /// Make an API key acting as this account; prints it.
    Add {
        /// The account's e-mail.
        #[arg(long)]
        email: String,
        /// Days until the key stops working.
        #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=3650))]
        days: u32,
    },
    /// Every API key: id, account, when made, and until when it works (never the key itself).
    List,
    /// Stop an API key working.
    Revoke {
        /// The key's id (`haven admin apikey list`).
        #[arg(long)]
        id: i64,
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
    let config = args.record.load()?;
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
            Command::User { command: UserCommand::Add { email, role, school, name } } => {
                let Some(role) = Role::parse(&role) else {
                    let names: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
                    bail!("--role {role:?} is not a role; use one of {}", names.join(", "));
                };
                let mut line = String::new();
                std::io::stdin().lock().read_line(&mut line).context("reading the password from standard input")?;
                let password = line.trim_end_matches(['\n', '\r']);
                let (account, totp) = store.add_account(&email, role, school.as_deref(), password, now).await?;
                store.audit(now, "admin-cli", "account.add", &format!("account:{}", account.id), role.as_str()).await?;
                if let Some(name) = name.as_deref().filter(|n| !n.trim().is_empty()) {
                    store.set_account_name(account.id, Some(name)).await?;
                    store.audit(now, "admin-cli", "account.name", &format!("account:{}", account.id), name.trim()).await?;
                }
                say!("added {} ({}{})", account.email, role.as_str(), account.school.as_deref().map(|s| format!(" at {s}")).unwrap_or_default());
                if let Some(secret) = totp {
                    say!("totp-secret {secret}");
                    say!("otpauth://totp/Haven:{}?secret={secret}&issuer=Haven", account.email);
                }
            }
            Command::User { command } => return user(&store, command, now).await,
            c @ (Command::Device { command: DeviceCommand::List | DeviceCommand::Revoke { .. } }
            | Command::Apikey { command: ApikeyCommand::List | ApikeyCommand::Revoke { .. } }) => return keys_and_devices(&store, c, now).await,
            Command::DemoCredentials { reset } => return demo_credentials(&store, &config, reset, now).await,
            Command::Device { command: DeviceCommand::Owner { id, login } } => {
                if !store.set_device_owner(id, login.as_deref()).await? {
                    bail!("there is no device {id}; `haven admin device list` shows the devices and their ids");
                }
                store.audit(now, "admin-cli", "device.owner", &format!("device:{id}"), login.as_deref().unwrap_or("")).await?;
                say!("device {id} belongs to {}", login.as_deref().unwrap_or("nobody in particular"));
            }
            Command::ExtensionKey => {
                let service = haven_safeguard::Service::new(store.clone(), &config.policy);
                say!("{}", service.policy_key().await.map_err(anyhow::Error::msg)?);
            }
            Command::Device { command: DeviceCommand::Add { school, name, owner } } => {
                let (device, token) = store.add_device(&school, &name, now).await?;
                store.audit(now, "admin-cli", "device.add", &format!("device:{}", device.id), &school).await?;
                if let Some(o) = owner.as_deref() {
                    store.set_device_owner(device.id, Some(o)).await?;
                }
                say!("{token}");
                eprintln!("device {} added at {school}; the token above is shown once", device.id);
            }
            Command::Apikey { command: ApikeyCommand::Add { email, days } } => {
                let until = now.saturating_add(jiff::SignedDuration::from_hours(24 * i64::from(days)))?;
                let (id, key) = store.add_api_key_until(&email, until, now).await?;
                store.audit(now, "admin-cli", "apikey.add", &format!("apikey:{id}"), &email).await?;
                say!("{key}");
                eprintln!("API key {id} for {email}, working until {} (UTC); shown once", until.strftime("%Y-%m-%d %H:%M"));
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
            Command::Change { command } => return crate::changes::admin(&store, &config, command, now).await,
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

/// The account commands beyond `add`.
async fn user(store: &Store, command: UserCommand, now: jiff::Timestamp) -> Result<()> {
    const BY: &str = "admin-cli";
    match command {
        UserCommand::Add { .. } => unreachable!("handled with the other set-up commands"),
        UserCommand::List => {
            for a in store.accounts().await? {
                let state = match (a.disabled, a.locked_until.filter(|u| *u > now)) {
                    (true, _) => "disabled".to_string(),
                    (false, Some(u)) => format!("locked-until {}", u.strftime("%Y-%m-%dT%H:%MZ")),
                    _ => "active".to_string(),
                };
                say!("{} {} {} {state}", a.account.email, a.account.role.as_str(), a.account.school.as_deref().unwrap_or("-"));
            }
        }
        UserCommand::Disable { email } => {
            store.set_disabled(&email, true, BY, now).await?;
            say!("disabled {email}: signed out everywhere; its API keys no longer work (`haven admin user enable --email {email}` undoes it)");
        }
        UserCommand::Enable { email } => {
            store.set_disabled(&email, false, BY, now).await?;
            say!("enabled {email}");
        }
        UserCommand::ResetPassword { email } => {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line).context("reading the new password from standard input")?;
            store.reset_password(&email, line.trim_end_matches(['\n', '\r']), BY, now).await?;
            say!("new password set for {email}; unlocked and signed out everywhere");
        }
        UserCommand::ResetTotp { email } => {
            let secret = store.reset_totp(&email, BY, now).await?;
            say!("totp-secret {secret}");
            say!("otpauth://totp/Haven:{}?secret={secret}&issuer=Haven", email.trim().to_ascii_lowercase());
            eprintln!("new second factor for {email}; the old authenticator no longer works; shown once");
        }
        UserCommand::Unlock { email } => {
            store.unlock(&email, BY, now).await?;
            say!("unlocked {email}");
        }
    }
    store.close().await;
    Ok(())
}

/// `apikey list|revoke` and `device list|revoke`.
async fn keys_and_devices(store: &Store, command: Command, now: jiff::Timestamp) -> Result<()> {
    let day = |t: jiff::Timestamp| t.strftime("%Y-%m-%d").to_string();
    match command {
        Command::Apikey { command: ApikeyCommand::List } => {
            for k in store.api_keys().await? {
                let state = match (k.revoked_at, k.expires_at) {
                    (Some(r), _) => format!("revoked {}", day(r)),
                    (None, Some(e)) if e <= now => format!("expired {}", day(e)),
                    (None, Some(e)) => format!("until {}", day(e)),
                    (None, None) => "no-expiry".into(),
                };
                say!("{} {} made {} {state}", k.id, k.email, day(k.created_at));
            }
        }
        Command::Apikey { command: ApikeyCommand::Revoke { id } } => {
            if !store.revoke_api_key(id, "admin-cli", now).await? {
                bail!("there is no API key {id} still working; `haven admin apikey list` shows the keys and their ids");
            }
            say!("API key {id} revoked");
        }
        Command::Device { command: DeviceCommand::List } => {
            for d in store.devices().await? {
                let state = d.revoked_at.map_or("active".to_string(), |r| format!("revoked {}", day(r)));
                let seen = d.last_seen_at.map_or("never-seen".to_string(), |t| format!("seen {}", t.strftime("%Y-%m-%dT%H:%M:%SZ")));
                let agent = d.contact.agent.as_deref().unwrap_or("-");
                let (q, dropped) = (d.contact.queue_depth.unwrap_or(0), d.contact.dropped.unwrap_or(0));
                say!("{} {} {} {state} {seen} {agent} queued={q} dropped={dropped}", d.device.id, d.device.school, d.device.name);
            }
        }
        Command::Device { command: DeviceCommand::Revoke { id } } => {
            if !store.revoke_device(id, "admin-cli", now).await? {
                bail!("there is no device {id} whose token still works; `haven admin device list` shows the devices and their ids");
            }
            say!("device {id} revoked: its token no longer sends events");
        }
        _ => unreachable!("only key and device commands come here"),
    }
    store.close().await;
    Ok(())
}

/// The demo accounts, as `haven serve` makes them on a demo configuration's first start.
const DEMO_DSL: (&str, &str) = ("dsl@demo.haven.invalid", "demo-dsl-password");
const DEMO_TEACHER: (&str, &str) = ("teacher@demo.haven.invalid", "demo-teacher-password");

/// The demo accounts' sign-in details again; with `reset`, demo passwords,
/// a new second factor and a new device token, unlocked and enabled.
async fn demo_credentials(store: &Store, config: &Config, reset: bool, now: jiff::Timestamp) -> Result<()> {
    if !config.demo {
        bail!("{} is not demo data ([web] demo = true), so it has no demo accounts; `haven admin user list` shows its accounts", config.path.display());
    }
    if store.account_by_email(DEMO_DSL.0).await.is_err() {
        web::seed_demo(store, config).await?;
    }
    let mut device = None;
    if reset {
        for (email, password) in [DEMO_DSL, DEMO_TEACHER] {
            store.reset_password(email, password, "admin-cli", now).await?;
            store.set_disabled(email, false, "admin-cli", now).await?;
        }
        store.reset_totp(DEMO_DSL.0, "admin-cli", now).await?;
        let dsl = store.account_by_email(DEMO_DSL.0).await?;
        if let Some(school) = dsl.school {
            let (d, token) = store.add_device(&school, "Demo library PC (reset)", now).await?;
            store.audit(now, "admin-cli", "device.add", &format!("device:{}", d.id), &school).await?;
            device = Some(token);
        }
    }
    let dsl = store.account_by_email(DEMO_DSL.0).await?;
    let secret = store.totp_secret_of(dsl.id).await?.unwrap_or_default();
    say!("DSL      {} / {}", DEMO_DSL.0, DEMO_DSL.1);
    say!("         second factor (TOTP) secret {secret}");
    say!("         otpauth://totp/Haven:{}?secret={secret}&issuer=Haven", DEMO_DSL.0);
    if let Some(code) = haven_store::sessions::totp_code(&secret, now) {
        say!("         code now {code} (a code works once; the next comes within 30 s)");
    }
    say!("teacher  {} / {}", DEMO_TEACHER.0, DEMO_TEACHER.1);
    match device {
        Some(token) => say!("device   ingest token {token}"),
        None => say!("device   tokens are kept only as a digest: `haven admin demo-credentials --reset` makes a new one"),
    }
    if !reset {
        eprintln!("haven: if a demo password was changed or an account locked, `haven admin demo-credentials --reset` puts them back");
    }
    store.close().await;
    Ok(())
}

/// Puts the record's protections in place before anything is read or
/// written: its key (`[data] key_dir`, else beside the data folder; made the
/// first time), owner-only data folder and database files, and sealing of
/// second-factor secrets and evidence kept before encryption at rest.
pub(crate) async fn secure_record(store: &Store, config: &Config) -> Result<()> {
    let key_dir = config.key_dir();
    store.use_key_dir(&key_dir)?;
    store.sealer().with_context(|| format!("the record's key folder is {} ([data] key_dir in haven.toml)", key_dir.display()))?;
    if let (Ok(keys), Ok(data)) = (key_dir.canonicalize(), config.data_dir.canonicalize())
        && keys.starts_with(&data)
    {
        eprintln!(
            "haven: warning: the key folder {} is inside the data folder, so a copy of the data folder can open its secrets; set [data] key_dir to a folder beside it",
            key_dir.display()
        );
    }
    std::fs::create_dir_all(&config.data_dir).with_context(|| format!("creating the data folder {}", config.data_dir.display()))?;
    haven_store::seal::owner_only(&config.data_dir, 0o700);
    if config.database.is_none() {
        store.owner_only_files(&config.data_dir);
    }
    let secrets = store.seal_plain_secrets().await?;
    let mut service = haven_safeguard::Service::new(store.clone(), &config.policy);
    service.evidence_dir = config.data_dir.join("evidence");
    let files =
        haven_safeguard::incidents::seal_plain_evidence(&service).with_context(|| format!("sealing the evidence in {}", service.evidence_dir.display()))?;
    if secrets + files > 0 {
        eprintln!(
            "haven: sealed {secrets} second-factor secret(s) and {files} evidence file(s) kept before encryption at rest, with the key in {}",
            key_dir.display()
        );
    }
    Ok(())
}
