//! `haven report`: the termly governor pack (PDF or HTML, per school or
//! trust-wide) and the weekly DSL digest, from the same record `haven serve`
//! uses (`--data DIR`, or `[data] database`). The figures are gathered by
//! `haven_safeguard::reports` and drawn by `haven-report`; every run is
//! audited as a read of the record.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use jiff::civil::Date;

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
    /// The governor pack for a period: anonymised alerts by category, level and week, responses against deadlines,
    /// filtering blocks, checks and changes, agreement coverage, incidents, the KCSIE 4 Cs; each against the period before.
    Governor {
        /// The school's id, or `all` for the whole trust.
        #[arg(long)]
        school: String,
        /// First day, 2026-09-01.
        #[arg(long)]
        from: Date,
        /// Last day (inclusive), 2026-12-18.
        #[arg(long)]
        to: Date,
        /// Where to write it (`-` or none with --html: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
        /// HTML with inline SVG charts instead of a PDF.
        #[arg(long)]
        html: bool,
    },
    /// The weekly DSL digest of the week a day falls in: printed, and queued by e-mail to the school's DSLs
    /// (sent by `haven serve` through `[notify] smtp`; once per week and address).
    Digest {
        /// The school's id.
        #[arg(long)]
        school: String,
        /// Any day of the week (Monday to Sunday), 2026-11-30.
        #[arg(long)]
        week: Date,
        /// Print it only; queue nothing.
        #[arg(long)]
        no_send: bool,
    },
}

pub(crate) fn run(args: Args) -> Result<()> {
    let config = args.record.load()?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        let store = web::open(&config).await?;
        let now = jiff::Timestamp::now();
        let tz_of = |school: Option<&str>| {
            config.policy.schools.iter().find(|s| Some(s.id.as_str()) == school).map_or_else(haven_policy::schedule::london_tz, |s| s.calendar.tz.clone())
        };
        match args.command {
            Command::Governor { school, from, to, out, html } => {
                let schools = store.schools().await?;
                let scope = if school == "all" {
                    haven_safeguard::reports::Scope { school: None, name: "all schools of the trust".into() }
                } else {
                    let Some(s) = schools.iter().find(|s| s.id == school) else {
                        bail!("--school {school:?} is not a school here; `haven admin school list` lists them, or use `all` for the trust")
                    };
                    haven_safeguard::reports::Scope { school: Some(s.id.clone()), name: s.name.clone() }
                };
                let tz = tz_of(scope.school.as_deref());
                let logs = config.data_dir.join("logs");
                let pack = haven_safeguard::reports::governor_pack(&store, &scope, from, to, &tz, Some(&logs), "command", now).await?;
                let doc = haven_report::pack::document(&pack);
                let bytes = if html { haven_report::html::standalone(&doc).into_bytes() } else { haven_report::pdf::render(&doc) };
                match out.as_deref().filter(|p| p.as_os_str() != "-") {
                    Some(path) => {
                        std::fs::write(path, &bytes).with_context(|| format!("writing {}", path.display()))?;
                        say!(
                            "wrote {} ({}): {} alerts ({} the period before), {} of {} acted on within the deadline, {} filtering checks, {} changes, {} incidents raised",
                            path.display(),
                            if html { "HTML" } else { "PDF" },
                            pack.alerts(),
                            pack.previous_alerts(),
                            pack.responses.now.on_time,
                            pack.responses.now.on_time + pack.responses.now.late + pack.responses.now.overdue,
                            pack.checks.now.runs,
                            pack.changes.now.total(),
                            pack.incidents.now.opened
                        );
                    }
                    None if html => {
                        use std::io::Write;
                        std::io::stdout().lock().write_all(&bytes)?;
                    }
                    None => bail!("a PDF needs --out FILE.pdf (or give --html to print HTML)"),
                }
            }
            Command::Digest { school, week, no_send } => {
                let tz = tz_of(Some(&school));
                let base = config.notify.base_url.clone().unwrap_or_else(|| config.web_listen.first().map(|a| format!("http://{a}")).unwrap_or_default());
                store.audit(now, "command", "report.digest", &format!("school:{school}"), &week.to_string()).await?;
                if no_send {
                    let d = haven_safeguard::reports::digest(&store, &school, week, &tz, &base).await?;
                    say!("Subject: {}\n\n{}", d.subject(), d.text());
                    return Ok(());
                }
                let (d, queued, to) = haven_safeguard::reports::queue_digest(&store, &school, week, &tz, &base, "command", now).await?;
                say!("Subject: {}\n\n{}", d.subject(), d.text());
                if to.is_empty() {
                    eprintln!("haven: {school} has no DSL or deputy DSL account to send the digest to (`haven admin user add --role dsl`)");
                } else {
                    let how = if config.notify.smtp.is_some() { "`haven serve` sends it through [notify] smtp" } else { "no [notify] smtp relay is set, so it waits until one is" };
                    eprintln!("haven: digest queued for {queued} of {} DSLs (the others had it already): {}; {how}", to.len(), to.join(", "));
                }
            }
        }
        store.close().await;
        Ok(())
    })
}
