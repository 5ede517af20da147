//! `haven model`: a trust retrains its own semantic head from its own
//! judgements, measures it against the shipped head, and switches it on.
//!
//! `retrain --from-record` reads the record the config names: every alert
//! closed with a verdict (real concern, not a concern) and the words of its
//! occurrences, and the DSLs' example sentences (`/admin/lexicon`, and
//! `[[example]]` tables in the trust's lexicon files). It trains a candidate
//! head on the shipped banks plus those, reports the figures before (the
//! head in force) and after (the candidate, cross-validated on the trust's
//! own closed alerts, and on any `--eval` sets), and writes
//! `<data dir>/model/head.candidate`. `switch-on` puts the candidate in
//! force as `<data dir>/model/head.bin`, which the running service picks up
//! on its next reload (it watches the file). Nothing leaves the machine: no
//! network, the texts are read and used here only.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use haven_store::Store;
use haven_store::alerts::Verdict;
use haven_store::lexicon::EntryKind;
use haven_textscan::semantic::{Head, Semantic, TrainRow};
use haven_textscan::{Classifier, Concern};

use crate::classify::EvalSet;
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
    /// Train a candidate head from the trust's closed alerts (those closed with a verdict) and the DSLs' example sentences; print the figures before and after; write <data dir>/model/head.candidate.
    Retrain {
        /// Learn from the safeguarding record (the only source there is; the trust's data never leaves it).
        #[arg(long, required = true)]
        from_record: bool,
        /// Also score the shipped head and the candidate on a labelled JSONL set (`text` and `labels`, or the probe format's `kind` and `min_level`); repeatable.
        #[arg(long = "eval", value_name = "FILE")]
        eval: Vec<PathBuf>,
        /// Cross-validation folds on the trust's own closed alerts.
        #[arg(long, default_value_t = 5)]
        folds: usize,
        /// Switch the candidate on straight away (as `haven model switch-on`).
        #[arg(long)]
        switch_on: bool,
    },
    /// Put the candidate head (model/head.candidate) in force as model/head.bin; the running Haven takes it on its next reload.
    SwitchOn,
    /// Go back to the shipped head (model/head.bin is kept as model/head.off).
    SwitchOff,
}

/// Where a trust's own heads are kept.
pub(crate) fn model_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("model")
}

/// The trust's head in force, if it has switched one on.
pub(crate) fn head_in_force(data_dir: &Path) -> PathBuf {
    model_dir(data_dir).join("head.bin")
}

fn candidate(data_dir: &Path) -> PathBuf {
    model_dir(data_dir).join("head.candidate")
}

pub(crate) fn run(args: Args) -> Result<()> {
    let config = args.record.load()?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        let store = web::open(&config).await?;
        let now = jiff::Timestamp::now();
        let result = match args.command {
            Command::Retrain { from_record: _, eval, folds, switch_on } => {
                retrain(&store, &config, &eval, folds).await?;
                if switch_on { switch(&store, &config.data_dir, now).await } else { Ok(()) }
            }
            Command::SwitchOn => switch(&store, &config.data_dir, now).await,
            Command::SwitchOff => switch_off(&store, &config.data_dir, now).await,
        };
        store.close().await;
        result
    })
}

/// What the trust has judged: each closed alert's texts with its verdict,
/// and the DSLs' example sentences.
struct Judgements {
    /// From closed alerts: what the figures are measured on.
    alerts: Vec<TrainRow>,
    /// How many closed alerts they came from.
    alert_count: usize,
    /// From example sentences (the record's and the lexicon files').
    examples: Vec<TrainRow>,
}

async fn judgements(store: &Store, config: &haven_config::Config) -> Result<Judgements> {
    let judged = store.judged_alerts().await.context("reading the closed alerts")?;
    let mut alerts = Vec::new();
    for j in &judged {
        let concern = match j.verdict {
            Verdict::RealConcern => match Concern::parse(&j.category) {
                Some(c) => Some(c),
                None => continue,
            },
            Verdict::NotAConcern => None,
        };
        for (text, level) in &j.texts {
            alerts.push(TrainRow { text: text.clone(), concern, level: if concern.is_some() { *level } else { 0 } });
        }
    }
    let mut examples: Vec<TrainRow> = store
        .lexicon_entries()
        .await
        .context("reading the example sentences")?
        .into_iter()
        .filter(|e| e.kind == EntryKind::Example && e.removed.is_none())
        .filter_map(|e| {
            let concern = match e.category.as_deref() {
                Some(c) => Some(Concern::parse(c)?),
                None => None,
            };
            Some(TrainRow { text: e.phrase, concern, level: if concern.is_some() { e.level.unwrap_or(3) } else { 0 } })
        })
        .collect();
    for lexicon in crate::classify::lexicon_files(&config.lexicons).context("in [monitoring] lexicons")? {
        examples.extend(lexicon.examples.iter().map(|e| TrainRow { text: e.text.clone(), concern: e.concern, level: e.level }));
    }
    Ok(Judgements { alerts, alert_count: judged.len(), examples })
}

/// Prints how long a step took, on standard error (the figures go to standard output).
fn step<T>(what: &str, f: impl FnOnce() -> T) -> T {
    eprintln!("haven: {what}…");
    let start = Instant::now();
    let out = f();
    eprintln!("haven: {what}: done in {:.1} s", start.elapsed().as_secs_f64());
    out
}

async fn retrain(store: &Store, config: &haven_config::Config, evals: &[PathBuf], folds: usize) -> Result<()> {
    // The sets are read first, so a wrong path fails before minutes of work.
    let sets: Vec<(PathBuf, EvalSet)> = evals.iter().map(|p| Ok((p.clone(), crate::classify::read_eval_set(p)?))).collect::<Result<_>>()?;
    let j = judgements(store, config).await?;
    let now = jiff::Timestamp::now();
    store
        .audit(
            now,
            "admin-cli",
            "model.retrain.read",
            "model:head",
            &format!("{} texts of {} closed alerts, {} example sentences", j.alerts.len(), j.alert_count, j.examples.len()),
        )
        .await?;
    say!(
        "Learning from {} texts of {} alerts closed with a verdict ({} real concern, {} not a concern) and {} example sentences.",
        j.alerts.len(),
        j.alert_count,
        j.alerts.iter().filter(|r| r.concern.is_some()).count(),
        j.alerts.iter().filter(|r| r.concern.is_none()).count(),
        j.examples.len()
    );
    if j.alerts.is_empty() && j.examples.is_empty() {
        bail!(
            "nothing to learn from yet: close alerts with a verdict (real concern / not a concern) or add example sentences at /admin/lexicon, then run this again"
        );
    }
    // The head in force now: the trust's own if one is switched on.
    let (sem, problem) = trust_semantic(&config.data_dir);
    if let Some(p) = problem {
        eprintln!("haven: {p}");
    }
    let in_force = if Arc::ptr_eq(&sem, &Semantic::shipped_shared()) { "the shipped head" } else { "the trust's head in force" };
    let rows: Vec<TrainRow> = j.alerts.iter().chain(&j.examples).cloned().collect();
    let head = step(&format!("training a candidate head on the shipped banks and {} rows of the trust's", rows.len()), || sem.retrain(&rows));
    let candidate_sem = Arc::new(sem.with_head(head.clone()).context("the candidate head does not fit the shipped embedding")?);

    say!("");
    say!("On the trust's own closed alerts ({} texts):", j.alerts.len());
    if j.alerts.is_empty() {
        say!("  none closed with a verdict yet: nothing to measure on (the candidate learned from example sentences only)");
    } else {
        let before = step(&format!("scoring {in_force}"), || sem.score(None, &j.alerts));
        say!("  before ({in_force}): {before}");
        let folds = folds.clamp(2, j.alerts.len().max(2));
        if j.alerts.len() >= 2 {
            let cv = step(&format!("cross-validating the candidate ({folds} folds)"), || sem.cross_validate(&j.alerts, folds));
            say!("  after (candidate, {folds}-fold cross-validated: each text judged by a head that never saw it): {cv}");
        }
        let seen = sem.score(Some(&head), &j.alerts);
        say!("  after (candidate, on the texts it learned from): {seen}");
    }
    for (path, set) in &sets {
        say!("");
        say!("On {} ({} rows):", path.display(), set.len());
        let shipped = Classifier::shipped();
        let before = step(&format!("scoring {} with {in_force}", path.display()), || score(set, &with_semantic(shipped, sem.clone())));
        let after =
            step(&format!("scoring {} with the candidate", path.display()), || score(set, &with_semantic(Classifier::shipped(), candidate_sem.clone())));
        say!("  before ({in_force}):\n{}", indent(&before));
        say!("  after (candidate):\n{}", indent(&after));
    }
    let dir = model_dir(&config.data_dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    haven_store::seal::owner_only(&dir, 0o700);
    let path = candidate(&config.data_dir);
    write_atomically(&path, &head.to_bytes())?;
    store.audit(jiff::Timestamp::now(), "admin-cli", "model.retrain", "model:head", &format!("candidate written to {}", path.display())).await?;
    say!("");
    say!("Candidate head written to {}.", path.display());
    say!("Compare the figures; to put it in force: haven model switch-on (the running Haven takes it on its next reload).");
    Ok(())
}

fn with_semantic(c: Classifier, sem: Arc<Semantic>) -> Classifier {
    c.with_semantic(Some(sem))
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
}

/// Writes `bytes` to a new file beside `path` and renames it into place, owner-only.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    haven_store::seal::owner_only(&tmp, 0o600);
    std::fs::rename(&tmp, path).with_context(|| format!("moving {} to {}", tmp.display(), path.display()))
}

async fn switch(store: &Store, data_dir: &Path, now: jiff::Timestamp) -> Result<()> {
    let from = candidate(data_dir);
    let bytes = std::fs::read(&from).with_context(|| format!("reading {}: make one first with `haven model retrain --from-record`", from.display()))?;
    let head = Head::parse(&bytes).with_context(|| format!("{} is not a head Haven can use", from.display()))?;
    Semantic::shipped_shared().with_head(head).with_context(|| format!("{} does not fit this Haven's embedding", from.display()))?;
    let to = head_in_force(data_dir);
    write_atomically(&to, &bytes)?;
    std::fs::remove_file(&from).with_context(|| format!("removing {}", from.display()))?;
    store.audit(now, "admin-cli", "model.switch-on", "model:head", &format!("{} bytes now in force as {}", bytes.len(), to.display())).await?;
    say!("The trust's own head is in force: {}. A running Haven takes it on its next reload (within seconds; `haven reload` to make sure).", to.display());
    Ok(())
}

async fn switch_off(store: &Store, data_dir: &Path, now: jiff::Timestamp) -> Result<()> {
    let path = head_in_force(data_dir);
    if !path.exists() {
        say!("The shipped head is already in force.");
        return Ok(());
    }
    let off = path.with_extension("off");
    std::fs::rename(&path, &off).with_context(|| format!("moving {} to {}", path.display(), off.display()))?;
    store.audit(now, "admin-cli", "model.switch-off", "model:head", &format!("{} kept as {}", path.display(), off.display())).await?;
    say!("The shipped head is in force again (the trust's is kept as {}).", off.display());
    Ok(())
}

/// The semantic stage for live monitoring: the shipped one with the trust's
/// own head when `<data dir>/model/head.bin` is there. A file that cannot be
/// used leaves the shipped head in force, with the problem (naming the file
/// and the fix) to be said.
pub(crate) fn trust_semantic(data_dir: &Path) -> (Arc<Semantic>, Option<String>) {
    let path = head_in_force(data_dir);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (Semantic::shipped_shared(), None),
        Err(e) => return (Semantic::shipped_shared(), Some(format!("cannot read the trust's head {}: {e}; the shipped head is in force", path.display()))),
    };
    let fix = "make a new one with `haven model retrain --from-record` then `haven model switch-on`, or `haven model switch-off`";
    match Head::parse(&bytes).map_err(anyhow::Error::from).and_then(|h| Ok(Semantic::shipped_shared().with_head(h)?)) {
        Ok(s) => (Arc::new(s), None),
        Err(e) => (Semantic::shipped_shared(), Some(format!("the trust's head {} cannot be used ({e}); the shipped head is in force: {fix}", path.display()))),
    }
}

/// A labelled set scored as `haven classify --eval` scores it, on one line
/// or the classifier's table.
fn score(set: &EvalSet, c: &Classifier) -> String {
    match set {
        EvalSet::Labelled(rows) => haven_textscan::eval::Report::of(c, rows).to_string(),
        EvalSet::Probes(rows) => {
            let said: Vec<_> = rows.iter().map(|(_, text)| c.classify(text)).collect();
            let s = crate::probes::Scores::of(rows.iter().map(|(p, _)| p).zip(&said));
            format!(
                "disclosures caught at their level {}/{} ({:.3}); look-alikes raised at level 3+ {}/{} ({:.3})",
                s.caught.n, s.caught.of, s.caught.rate, s.raised.n, s.raised.of, s.raised.rate
            )
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A head unlike the shipped one (one bias moved), without training one.
    pub(crate) fn another_head() -> Head {
        let mut bytes = Semantic::shipped_shared().head().to_bytes();
        let n = bytes.len();
        let bias = f32::from_le_bytes(bytes[n - 4..].try_into().unwrap()) + 0.5;
        bytes[n - 4..].copy_from_slice(&bias.to_le_bytes());
        Head::parse(&bytes).unwrap()
    }

    #[test]
    fn the_trust_head_is_loaded_and_a_bad_file_leaves_the_shipped_head_in_force() {
        let dir = tempfile::tempdir().unwrap();
        let shipped = Semantic::shipped_shared();
        let (sem, problem) = trust_semantic(dir.path());
        assert!(problem.is_none() && Arc::ptr_eq(&sem, &shipped), "no file: the shipped stage itself");
        // The trust's head is in force once it is head.bin.
        let head = another_head();
        std::fs::create_dir_all(model_dir(dir.path())).unwrap();
        std::fs::write(head_in_force(dir.path()), head.to_bytes()).unwrap();
        let (sem, problem) = trust_semantic(dir.path());
        assert!(problem.is_none(), "{problem:?}");
        assert_eq!(sem.head(), &head);
        assert_ne!(sem.head(), shipped.head());
        // A damaged file: said, naming the file and the fix; the shipped head stays.
        std::fs::write(head_in_force(dir.path()), b"not a head").unwrap();
        let (sem, problem) = trust_semantic(dir.path());
        let problem = problem.expect("the problem is said");
        assert!(
            problem.contains("head.bin") && problem.contains("haven model retrain --from-record") && problem.contains("shipped head is in force"),
            "{problem}"
        );
        assert!(Arc::ptr_eq(&sem, &shipped));
    }
}
