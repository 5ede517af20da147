//! `haven-bench train-semantic`: the semantic stage's shipped head, trained
//! on the banks (`crates/textscan/semantic/*.toml`) and, as "other", the
//! benign rows of the labelled set from sources whose licence allows a
//! shipped model. Writes `head.bin`, `gate.bin` (the cascade's cheap head),
//! `background.bin` (those rows' sentence vectors, so a trust can
//! retrain without the texts) and `neighbours.bin` (the bank examples'
//! vectors projected to 128 dimensions, read beside the head).
//! Deterministic.

use std::io::BufRead;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use haven_textscan::semantic::{Bank, Semantic, Transformer, write_vectors};

use crate::TRAINABLE;

/// Long posts are cut to this many characters: their opening says what they are about.
const MAX_CHARS: usize = 400;

pub(crate) fn run(data: &Path, out: &Path) -> Result<()> {
    let file = std::fs::File::open(data).with_context(|| format!("opening the labelled set {}", data.display()))?;
    let mut ordinary = Vec::new();
    for line in std::io::BufReader::new(file).lines() {
        let v: serde_json::Value = serde_json::from_str(&line?)?;
        let benign = v["labels"].as_array().is_some_and(Vec::is_empty);
        if benign && TRAINABLE.contains(&v["source"].as_str().unwrap_or_default()) {
            ordinary.push(v["text"].as_str().unwrap_or_default().chars().take(MAX_CHARS).collect::<String>());
        }
    }
    let transformer = Arc::new(Transformer::parse(&std::fs::read(out.join("minilm.bin")).context("reading minilm.bin")?)?);
    let bank = Arc::new(Bank::shipped());
    let examples: usize = bank.facets.iter().map(|f| f.examples.len()).sum();
    println!("training on {examples} bank examples in {} facets and {} licensed ordinary texts", bank.facets.len(), ordinary.len());
    let started = std::time::Instant::now();
    let (head, gate, background, neighbours) = Semantic::train_shipped(transformer, bank, &ordinary);
    println!("trained {} classes in {:.1} s", head.classes().len(), started.elapsed().as_secs_f64());
    std::fs::write(out.join("head.bin"), head.to_bytes())?;
    std::fs::write(out.join("gate.bin"), gate.to_bytes())?;
    std::fs::write(out.join("background.bin"), write_vectors(&background))?;
    std::fs::write(out.join("neighbours.bin"), neighbours.to_bytes())?;
    println!("wrote head.bin, gate.bin, background.bin and neighbours.bin in {}", out.display());
    Ok(())
}
