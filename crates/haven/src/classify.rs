//! `haven classify`: categories of concern and levels for texts in JSON Lines,
//! and `--eval` against a labelled set.

use std::collections::BTreeMap;
use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
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

fn classifier(extra: &[PathBuf]) -> Result<Classifier> {
    let mut lexicons = Lexicon::shipped();
    for p in extra {
        let text = std::fs::read_to_string(p).with_context(|| format!("reading lexicon {}", p.display()))?;
        lexicons.push(Lexicon::parse(&text).with_context(|| format!("lexicon {}", p.display()))?);
    }
    Ok(Classifier::new(&lexicons))
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

#[derive(Default)]
struct Tally {
    tp: u32,
    fn_: u32,
    fp: u32,
}

fn eval(c: &Classifier, path: &PathBuf) -> Result<()> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut tallies: BTreeMap<Concern, Tally> = BTreeMap::new();
    let (mut benign, mut benign_any, mut benign_l3, mut hard, mut hard_any, mut hard_l3, mut n) = (0u32, 0u32, 0u32, 0u32, 0u32, 0u32, 0u32);
    let start = Instant::now();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let input: Input = serde_json::from_str(&line).with_context(|| format!("{}:{}: not an evaluation row", path.display(), i + 1))?;
        n += 1;
        let r = c.classify(&input.text);
        let predicted: Vec<Concern> = r.categories.iter().map(|f| f.category).collect();
        let labels: Vec<Concern> = input.labels.iter().filter_map(|l| Concern::parse(l)).collect();
        if labels.is_empty() {
            benign += 1;
            benign_any += u32::from(!predicted.is_empty());
            benign_l3 += u32::from(r.level.is_some_and(|l| l >= 3));
            if input.hard_negative {
                hard += 1;
                hard_any += u32::from(!predicted.is_empty());
                hard_l3 += u32::from(r.level.is_some_and(|l| l >= 3));
            }
            for p in &predicted {
                tallies.entry(*p).or_default().fp += 1;
            }
        }
        for l in &labels {
            let t = tallies.entry(*l).or_default();
            if predicted.contains(l) {
                t.tp += 1;
            } else {
                t.fn_ += 1;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let pct = |a: u32, b: u32| if b == 0 { 0.0 } else { 100.0 * f64::from(a) / f64::from(b) };
    say!("| category | rows | recall | precision | F1 | benign flagged |");
    say!("|---|---|---|---|---|---|");
    for c in Concern::ALL {
        let t = tallies.remove(&c).unwrap_or_default();
        let rows = t.tp + t.fn_;
        let recall = if rows == 0 { f64::NAN } else { f64::from(t.tp) / f64::from(rows) };
        let precision = if t.tp + t.fp == 0 { f64::NAN } else { f64::from(t.tp) / f64::from(t.tp + t.fp) };
        let f1 = 2.0 * precision * recall / (precision + recall);
        say!("| {} | {rows} | {recall:.3} | {precision:.3} | {f1:.3} | {:.2}% |", c.name(), pct(t.fp, benign));
    }
    say!("");
    say!("benign texts with any category: {benign_any}/{benign} ({:.2}%), at level 3 or above: {benign_l3} ({:.2}%)", pct(benign_any, benign), pct(benign_l3, benign));
    say!("hard negatives with any category: {hard_any}/{hard} ({:.2}%), at level 3 or above: {hard_l3} ({:.2}%)", pct(hard_any, hard), pct(hard_l3, hard));
    say!("{n} texts in {secs:.2} s ({:.0} texts/s, one thread)", f64::from(n) / secs);
    Ok(())
}
