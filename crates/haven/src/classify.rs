//! `haven classify`: categories of concern and levels for texts in JSON Lines,
//! and `--eval` against a labelled set.

use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use haven_textscan::eval::{Report, Row};
use haven_textscan::{Classifier, Concern, Lexicon};
use serde::{Deserialize, Serialize};

use crate::probes;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Score a labelled JSONL file instead: `{"text", "labels", "hard_negative"}`
    /// (precision, recall, false alarms per category), or the probe format
    /// `{"text", "labels", "min_level", "kind"}` (disclosures caught at their
    /// level and look-alikes raised, per kind).
    #[arg(long, value_name = "FILE")]
    eval: Option<PathBuf>,
    /// With `--eval` on probes: the figures as one JSON object.
    #[arg(long, requires = "eval")]
    json: bool,
    /// With `--eval` on probes: also list every disclosure missed and every
    /// look-alike raised, with what Haven made of it.
    #[arg(long, requires = "eval")]
    misses: bool,
    /// Extra lexicon files (same format as crates/textscan/lexicon/en.toml).
    #[arg(long, value_name = "FILE")]
    lexicon: Vec<PathBuf>,
}

#[derive(Deserialize)]
struct Input {
    text: String,
    #[serde(default)]
    labels: Vec<String>,
    #[serde(default)]
    hard_negative: bool,
    /// Probe format: the kind in the taxonomy.
    #[serde(default)]
    kind: Option<String>,
    /// Probe format: the lowest level a DSL would accept.
    #[serde(default)]
    min_level: Option<u8>,
}

#[derive(Serialize)]
struct Category {
    category: Concern,
    level: u8,
    score: f32,
}

#[derive(Serialize)]
struct Output<'a> {
    categories: Vec<Category>,
    level: Option<u8>,
    spans: &'a [haven_textscan::Span],
    explanation: &'a str,
}

/// The classifier of live monitoring: the shipped one, or with the trust's
/// `[monitoring] lexicons` added (read anew on each reload).
pub(crate) fn monitoring(config: &haven_config::Config) -> Result<std::sync::Arc<Classifier>> {
    if config.lexicons.is_empty() {
        return Ok(Classifier::shipped_shared());
    }
    classifier(&config.lexicons).map(std::sync::Arc::new).context("in [monitoring] lexicons")
}

/// The shipped lexicons and the trust's files (`extra`).
pub(crate) fn lexicons(extra: &[PathBuf]) -> Result<Vec<Lexicon>> {
    Ok(Lexicon::shipped().into_iter().chain(lexicon_files(extra)?).collect())
}

/// Lexicon files, each read and checked.
pub(crate) fn lexicon_files(paths: &[PathBuf]) -> Result<Vec<Lexicon>> {
    paths
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading lexicon {}", p.display()))?;
            Lexicon::parse(&text).with_context(|| format!("lexicon {}", p.display()))
        })
        .collect()
}

/// The process's one copy of the shipped model and semantic stage, whatever
/// the lexicons: a reload or a school's own classifier never loads another.
fn classifier(extra: &[PathBuf]) -> Result<Classifier> {
    Ok(Classifier::new(&lexicons(extra)?)
        .with_shared_model(haven_textscan::model::Model::shipped_shared())
        .with_semantic(Some(haven_textscan::semantic::Semantic::shipped_shared())))
}

pub(crate) fn run(args: Args) -> Result<()> {
    let c = classifier(&args.lexicon)?;
    if let Some(path) = &args.eval {
        return eval(&c, path, args.json, args.misses);
    }
    let stdin = std::io::stdin();
    let mut out = BufWriter::new(std::io::stdout().lock());
    // Lines are read in batches and classified on every core; answers are
    // written in input order. A bad line stops the run after the lines
    // before it have been answered.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut lines = stdin.lock().lines().enumerate();
    loop {
        let mut batch: Vec<String> = Vec::with_capacity(BATCH);
        let mut bad = None;
        for (i, line) in lines.by_ref() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Input>(&line) {
                Ok(input) => batch.push(input.text),
                Err(e) => {
                    bad = Some(anyhow::Error::new(e).context(format!("line {}: expected {{\"text\": ...}}", i + 1)));
                    break;
                }
            }
            if batch.len() == BATCH {
                break;
            }
        }
        if batch.is_empty() && bad.is_none() {
            break;
        }
        for answer in answers(&c, &batch, workers) {
            out.write_all(answer.as_bytes())?;
        }
        if let Some(e) = bad {
            out.flush()?;
            return Err(e);
        }
    }
    out.flush()?;
    Ok(())
}

/// Lines classified per batch: enough to share among cores, few enough to
/// stream a long file in little memory.
const BATCH: usize = 2048;

/// Lines a thread classifies together ([`Classifier::classify_many`]):
/// about half of them reach the transformer, a good pass for it.
const READ_TOGETHER: usize = 16;

/// One JSON line per text, in order, classified on up to `workers` threads.
fn answers(c: &Classifier, texts: &[String], workers: usize) -> Vec<String> {
    let one = |r: haven_textscan::Classification| {
        let o = Output {
            categories: r.categories.iter().map(|f| Category { category: f.category, level: f.level, score: f.score }).collect(),
            level: r.level,
            spans: &r.spans,
            explanation: &r.explanation,
        };
        let mut line = serde_json::to_string(&o).expect("answers serialise");
        line.push('\n');
        line
    };
    // Each thread takes the next few lines as it comes free: how long a
    // line takes depends on whether the transformer reads it, so halves
    // fixed in advance leave one core idle while the other finishes.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let parts = texts.len().div_ceil(READ_TOGETHER);
    let mut done: Vec<(usize, Vec<String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers.clamp(1, parts.max(1)))
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let part = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if part >= parts {
                            return mine;
                        }
                        let few: Vec<&str> = texts[part * READ_TOGETHER..((part + 1) * READ_TOGETHER).min(texts.len())].iter().map(String::as_str).collect();
                        mine.push((part, c.classify_many(&few).into_iter().map(one).collect()));
                    }
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("classification never panics")).collect()
    });
    done.sort_unstable_by_key(|(part, _)| *part);
    done.into_iter().flat_map(|(_, lines)| lines).collect()
}

/// A labelled set, as `--eval` reads it.
pub(crate) enum EvalSet {
    /// `{"text", "labels", "hard_negative"}`.
    Labelled(Vec<Row>),
    /// `{"text", "labels", "min_level", "kind"}`, each probe with its text.
    Probes(Vec<(probes::Probe, String)>),
}

impl EvalSet {
    pub(crate) fn len(&self) -> usize {
        match self {
            Self::Labelled(r) => r.len(),
            Self::Probes(p) => p.len(),
        }
    }
}

/// Reads a labelled set: the probe format when any row has a `kind`.
pub(crate) fn read_eval_set(path: &std::path::Path) -> Result<EvalSet> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut inputs = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let input: Input = serde_json::from_str(&line).with_context(|| format!("{}:{}: not an evaluation row", path.display(), i + 1))?;
        inputs.push((i + 1, input));
    }
    if !inputs.iter().any(|(_, r)| r.kind.is_some()) {
        return Ok(EvalSet::Labelled(
            inputs
                .into_iter()
                .map(|(_, input)| Row {
                    labels: input.labels.iter().filter_map(|l| Concern::parse(l)).collect(),
                    text: input.text,
                    hard_negative: input.hard_negative,
                })
                .collect(),
        ));
    }
    let mut probes = Vec::with_capacity(inputs.len());
    for (line, input) in inputs {
        let mut labels = Vec::new();
        for l in &input.labels {
            labels.push(Concern::parse(l).with_context(|| format!("{}:{line}: unknown category {l:?}", path.display()))?);
        }
        let min_level = match input.min_level {
            // A look-alike's is not read: anything raised at level 3 or above is a false alarm.
            _ if labels.is_empty() => 0,
            Some(l @ 1..=5) => l,
            Some(l) => anyhow::bail!("{}:{line}: min_level {l} is not 1-5", path.display()),
            // A disclosure without one asks for an alert.
            None => 2,
        };
        let kind = input.kind.unwrap_or_else(|| if labels.is_empty() { "(no kind) look-alike".into() } else { "(no kind)".into() });
        probes.push((probes::Probe { kind, labels, min_level }, input.text));
    }
    Ok(EvalSet::Probes(probes))
}

fn eval(c: &Classifier, path: &std::path::Path, json: bool, misses: bool) -> Result<()> {
    let rows = match read_eval_set(path)? {
        EvalSet::Probes(probes) => return eval_probes(c, &probes, json, misses),
        EvalSet::Labelled(rows) => rows,
    };
    if json {
        anyhow::bail!("--json scores the probe format (rows with \"kind\" and \"min_level\"); {} has none", path.display());
    }
    let start = Instant::now();
    let report = Report::of(c, &rows);
    let secs = start.elapsed().as_secs_f64();
    say!("{report}");
    say!("{} texts in {secs:.2} s ({:.0} texts/s, one thread)", rows.len(), rows.len() as f64 / secs);
    Ok(())
}

/// The probe format: caught per kind, look-alikes raised per kind.
fn eval_probes(c: &Classifier, inputs: &[(probes::Probe, String)], json: bool, misses: bool) -> Result<()> {
    let start = Instant::now();
    let said: Vec<_> = inputs.iter().map(|(_, text)| c.classify(text)).collect();
    let secs = start.elapsed().as_secs_f64();
    let scores = probes::Scores::of(inputs.iter().map(|(p, _)| p).zip(&said));
    if json {
        let mut v = scores.json();
        v["rows"] = serde_json::json!(inputs.len());
        v["seconds"] = serde_json::json!(secs);
        say!("{v}");
        return Ok(());
    }
    say!("{scores}");
    say!("");
    if misses {
        for ((p, text), r) in inputs.iter().zip(&said) {
            let wrong = if p.labels.is_empty() { probes::raised(r) } else { !probes::caught(p, r) };
            if wrong {
                say!("{} {:<24} level {} | {text} | {}", if p.labels.is_empty() { "raised" } else { "missed" }, p.kind, r.level.unwrap_or(0), r.explanation);
            }
        }
        say!("");
    }
    let level5: Vec<String> = scores.level5().map(|(k, s)| format!("{k} {:.1}%", s.rate * 100.0)).collect();
    say!(
        "caught {:.1}% of {} disclosures; level-5 kinds {:.1}% ({}); look-alikes raised at level {}+ {:.1}% of {}",
        scores.caught.rate * 100.0,
        scores.caught.of,
        scores.caught_level5.rate * 100.0,
        if level5.is_empty() { "none".to_string() } else { level5.join(", ") },
        probes::FALSE_ALARM_LEVEL,
        scores.raised.rate * 100.0,
        scores.raised.of
    );
    say!("{} texts in {secs:.2} s ({:.0} texts/s, one thread)", inputs.len(), inputs.len() as f64 / secs);
    Ok(())
}
