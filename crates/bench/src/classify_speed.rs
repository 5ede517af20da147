//! `haven-bench classify`: the monitoring classifier's speed per path on one
//! thread at a chat-length mix, and `haven classify` end to end.
//!
//! The mix: the texts of a labelled JSONL file (../shared/data/eval/dev.jsonl),
//! each longer one cut at the last word boundary before `max_chars`
//! characters; at 86 the median is about 80 characters, the length of a
//! monitored chat line.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use haven_textscan::{Classifier, Lexicon};

use crate::median;

/// Options for [`run`].
pub(crate) struct Options<'a> {
    pub file: &'a Path,
    pub runs: usize,
    pub max_chars: usize,
    /// Lines sent through `haven classify` (the mix repeated); 0 skips it.
    pub lines: usize,
    /// Whether the semantic stage is also measured on its f32 path.
    pub f32: bool,
}

/// The texts of `file`, cut to chat length.
pub(crate) fn mix(file: &Path, max_chars: usize) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {} (the mix is built from its texts)", file.display()))?;
    let texts: Vec<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["text"].as_str().map(|t| cut(t, max_chars)))
        .filter(|t| !t.trim().is_empty())
        .collect();
    if texts.is_empty() {
        bail!("{} has no texts", file.display());
    }
    Ok(texts)
}

/// The texts of `file` that carry no label (ordinary chat, news, reviews),
/// cut to chat length.
fn ordinary(file: &Path, max_chars: usize) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["labels"].as_array().is_some_and(Vec::is_empty))
        .filter_map(|v| v["text"].as_str().map(|t| cut(t, max_chars)))
        .filter(|t| !t.trim().is_empty())
        .collect())
}

/// `t` cut at the last word boundary before `max` characters.
pub(crate) fn cut(t: &str, max: usize) -> String {
    if t.chars().count() <= max {
        return t.to_string();
    }
    let head: String = t.chars().take(max).collect();
    head.rsplit_once(' ').map_or(head.clone(), |(a, _)| a.to_string())
}

/// Texts per second of `f` over `texts` on this thread: the median of `runs`.
fn rate(texts: &[String], runs: usize, f: impl Fn(&str) -> bool) -> (f64, usize) {
    let mut rates = Vec::new();
    let mut hits = 0;
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        hits = texts.iter().filter(|x| std::hint::black_box(f(x))).count();
        rates.push(texts.len() as f64 / t.elapsed().as_secs_f64());
    }
    (median(rates), hits)
}

pub(crate) fn run(o: &Options<'_>) -> Result<()> {
    let texts = mix(o.file, o.max_chars)?;
    let mut lens: Vec<usize> = texts.iter().map(|t| t.chars().count()).collect();
    lens.sort_unstable();
    println!(
        "mix: {} texts from {}, cut at {} characters: median {}, mean {:.0}; one thread, median of {} runs",
        texts.len(),
        o.file.display(),
        o.max_chars,
        lens[lens.len() / 2],
        lens.iter().sum::<usize>() as f64 / lens.len() as f64,
        o.runs
    );
    println!();
    println!("| path | texts/s, one thread | texts with a finding |");
    println!("|---|---|---|");
    let rules = Classifier::new(&Lexicon::shipped());
    let (r, hits) = rate(&texts, o.runs, |x| !rules.classify(x).categories.is_empty());
    println!("| (a) rules only | {r:.0} | {hits} |");
    let model = Classifier::new(&Lexicon::shipped()).with_shared_model(haven_textscan::model::Model::shipped_shared());
    let (r, hits) = rate(&texts, o.runs, |x| !model.classify(x).categories.is_empty());
    println!("| rules and word-piece model | {r:.0} | {hits} |");
    semantic(&texts, &ordinary(o.file, o.max_chars)?, o.runs, o.f32);
    let full = Classifier::shipped();
    let (r, hits) = rate(&texts, o.runs, |x| !full.classify(x).categories.is_empty());
    println!("| (c) full classifier (`Classifier::shipped`) | {r:.0} | {hits} |");
    let mut rates = Vec::new();
    let mut many = Vec::new();
    for _ in 0..o.runs.max(1) {
        let t = Instant::now();
        many = texts.chunks(16).flat_map(|part| full.classify_many(&part.iter().map(String::as_str).collect::<Vec<_>>())).collect::<Vec<_>>();
        rates.push(texts.len() as f64 / t.elapsed().as_secs_f64());
    }
    let differ = texts.iter().zip(&many).filter(|(t, m)| full.classify(t) != **m).count();
    if differ > 0 {
        bail!("classify_many answered {differ} of {} texts unlike classify", texts.len());
    }
    println!(
        "| (c) the same, 16 texts a call (`Classifier::classify_many`; every answer checked equal) | {:.0} | {} |",
        median(rates),
        many.iter().filter(|c| !c.categories.is_empty()).count()
    );
    if o.lines > 0 {
        end_to_end(&texts, o.lines, o.runs)?;
    }
    Ok(())
}

/// (b) The semantic stage alone: encoder, gate, transformer, head and the
/// closest statement; on the mix, on its ordinary texts (what a school's
/// stream mostly is) and past the gate, on the int8 path where the CPU has
/// it and on the `f32` path it replaces.
fn semantic(texts: &[String], ordinary: &[String], runs: usize, with_f32: bool) {
    use haven_textscan::semantic::Semantic;
    let int8 = Semantic::shipped_shared();
    let f32 = with_f32.then(Semantic::shipped_f32);
    let int8_name = format!("int8 ({})", Semantic::int8_instructions().unwrap_or("portable"));
    let path = |s: &Semantic| if s.int8() { int8_name.as_str() } else { "f32" };
    for stage in std::iter::once(&*int8).chain(f32.as_ref()) {
        let name = path(stage);
        let (r, hits) = rate(texts, runs, |x| stage.read(x).is_some());
        println!("| (b) semantic stage alone (`Semantic::read`), {name} | {r:.0} | {hits} |");
        let (r, hits) = rate(ordinary, runs, |x| stage.read(x).is_some());
        println!("| (b) the same on the mix's {} ordinary texts, {name} | {r:.0} | {hits} |", ordinary.len());
        let (r, hits) = rate(texts, runs, |x| stage.read_closely(x).is_some());
        println!("| (b) transformer on every text (`Semantic::read_closely`), {name} | {r:.0} | {hits} |");
        for per in [1, 4, 16, 64] {
            let mut rates = Vec::new();
            for _ in 0..runs.max(1) {
                let t = Instant::now();
                for part in texts.chunks(per) {
                    let part: Vec<&str> = part.iter().map(String::as_str).collect();
                    std::hint::black_box(stage.embed_many(&part));
                }
                rates.push(texts.len() as f64 / t.elapsed().as_secs_f64());
            }
            println!("| (b) transformer alone, {per} texts a pass (`Semantic::embed_many`), {name} | {:.0} | |", median(rates));
        }
    }
    let through = ordinary.iter().filter(|x| int8.worth_reading(x)).count();
    let all = texts.iter().filter(|x| int8.worth_reading(x)).count();
    println!(
        "| (b) the gate lets through | {:.1}% of ordinary texts | {:.1}% of the mix |",
        100.0 * through as f64 / ordinary.len() as f64,
        100.0 * all as f64 / texts.len() as f64
    );
}

/// (d) `haven classify` as a process on every core, `lines` lines of the mix.
fn end_to_end(texts: &[String], lines: usize, runs: usize) -> Result<()> {
    let haven = crate::process::haven_binary()?;
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("mix.jsonl");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&input)?);
    for t in texts.iter().cycle().take(lines) {
        serde_json::to_writer(&mut f, &serde_json::json!({ "text": t }))?;
        f.write_all(b"\n")?;
    }
    f.flush()?;
    drop(f);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut rates = Vec::new();
    let mut secs = Vec::new();
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        let out = Command::new(&haven).arg("classify").stdin(std::fs::File::open(&input)?).stdout(Stdio::piped()).stderr(Stdio::piped()).output()?;
        let elapsed = t.elapsed().as_secs_f64();
        if !out.status.success() {
            bail!("haven classify failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let answered = out.stdout.iter().filter(|&&b| b == b'\n').count();
        if answered != lines {
            bail!("haven classify answered {answered} of {lines} lines");
        }
        rates.push(lines as f64 / elapsed);
        secs.push(elapsed);
    }
    println!(
        "| (d) `haven classify`, {lines} lines end to end ({cores} cores, process start included) | {:.0} lines/s | {:.2} s (median) |",
        median(rates),
        median(secs)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn texts_are_cut_at_a_word_boundary() {
        assert_eq!(super::cut("short", 86), "short");
        assert_eq!(super::cut("one two three", 9), "one two");
        assert_eq!(super::cut("abcdefghij", 4), "abcd");
    }
}
