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

fn classifier(extra: &[PathBuf]) -> Result<Classifier> {
    Ok(Classifier::new(&lexicons(extra)?).with_model(haven_textscan::model::Model::shipped()))
}

pub(crate) fn run(args: Args) -> Result<()> {
    let c = classifier(&args.lexicon)?;
    if let Some(path) = &args.eval {
        return eval(&c, path);
    }
    let stdin = std::io::stdin();
    let mut out = BufWriter::new(std::io::stdout().lock());
    for (i, line) in stdin.lock().lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let input: Input = serde_json::from_str(&line).with_context(|| format!("line {}: expected {{\"text\": ...}}", i + 1))?;
        let r = c.classify(&input.text);
        let o = Output {
            categories: r.categories.iter().map(|f| Category { category: f.category, level: f.level, score: f.score }).collect(),
            level: r.level,
            spans: &r.spans,
            explanation: &r.explanation,
        };
        serde_json::to_writer(&mut out, &o)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
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
