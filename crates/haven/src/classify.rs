//! `haven classify`: categories of concern and levels for texts in JSON Lines,
//! and `--eval` against a labelled set.

use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use haven_textscan::eval::{Report, Row};
use haven_textscan::{Classifier, Concern, Lexicon};
use serde::{Deserialize, Serialize};

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Score a labelled JSONL file (`{"text", "labels", "hard_negative"}`) instead.
    #[arg(long, value_name = "FILE")]
    eval: Option<PathBuf>,
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

/// The process's one copy of the shipped model, whatever the lexicons: a
/// reload or a school's own classifier never loads another.
fn classifier(extra: &[PathBuf]) -> Result<Classifier> {
    Ok(Classifier::new(&lexicons(extra)?).with_shared_model(haven_textscan::model::Model::shipped_shared()))
}

pub(crate) fn run(args: Args) -> Result<()> {
    let c = classifier(&args.lexicon)?;
    if let Some(path) = &args.eval {
        return eval(&c, path);
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

/// One JSON line per text, in order, classified on up to `workers` threads.
fn answers(c: &Classifier, texts: &[String], workers: usize) -> Vec<String> {
    let one = |text: &String| {
        let r = c.classify(text);
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
    let chunk = texts.len().div_ceil(workers.max(1)).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = texts.chunks(chunk).map(|part| scope.spawn(move || part.iter().map(one).collect::<Vec<_>>())).collect();
        handles.into_iter().flat_map(|h| h.join().expect("classification never panics")).collect()
    })
}

fn eval(c: &Classifier, path: &PathBuf) -> Result<()> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut rows = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let input: Input = serde_json::from_str(&line).with_context(|| format!("{}:{}: not an evaluation row", path.display(), i + 1))?;
        let labels = input.labels.iter().filter_map(|l| Concern::parse(l)).collect();
        rows.push(Row { text: input.text, labels, hard_negative: input.hard_negative });
    }
    let start = Instant::now();
    let report = Report::of(c, &rows);
    let secs = start.elapsed().as_secs_f64();
    say!("{report}");
    say!("{} texts in {secs:.2} s ({:.0} texts/s, one thread)", rows.len(), rows.len() as f64 / secs);
    Ok(())
}
