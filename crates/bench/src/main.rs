//! `haven-bench`: measures the filter's core in release mode and prints a
//! Markdown table, so figures can be put beside the peers' (see
//! `../shared/bench/README.md` and `docs/benchmarks.md`).
//!
//! Each measurement that reports memory runs in a child process of this
//! binary, which reads its own peak resident size (`VmHWM`) at the end, so one
//! measurement's allocations never count against another's.

use std::path::{Path, PathBuf};
use std::process::Command;

mod callout;
mod classify_speed;
mod process;
mod proxy_content;
mod queue;
mod safeguard;
mod soak;
mod train_hosts;
mod train_semantic;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use haven_config::Config;
use haven_lists::{ListIndex, NoProgress, compile};
use haven_policy::{PolicySet, Request, Subject, decide};

#[derive(Parser)]
#[command(about = "Benchmarks for Haven's policy engine and list index (run with --release)")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Everything below, as a Markdown report.
    All {
        /// The config whose lists are "the shared lists" (the demo config).
        #[arg(long, default_value = "examples/haven.toml")]
        config: PathBuf,
        /// A folder made by `../shared/bench/gen_data.sh 1000000` (has categories/ and queries.txt).
        #[arg(long, default_value = "/tmp/filterbench/data/1000000")]
        synthetic: PathBuf,
        /// Repetitions for timings (the median is reported).
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// (child) Compile the lists of a config; print seconds and peak RSS.
    Import { config: PathBuf, out: PathBuf },
    /// (child) Load an index; print seconds and peak RSS.
    Load { index: PathBuf },
    /// Texts per second for the monitoring classifier on one thread, per
    /// path (rules only, rules and word-piece model, the semantic stage
    /// alone, the full classifier), at a chat-length mix: the texts of a
    /// JSONL file (e.g. ../shared/data/eval/dev.jsonl), each longer one cut
    /// at the last word boundary before --max-chars characters (86 puts the
    /// mix's median near 80); then `haven classify` end to end on --lines
    /// lines of the mix (0 skips it; build `haven` in release first).
    Classify {
        file: PathBuf,
        #[arg(long, default_value_t = 5)]
        runs: usize,
        #[arg(long, default_value_t = 86)]
        max_chars: usize,
        #[arg(long, default_value_t = 20_000)]
        lines: usize,
        /// Also measures the semantic stage on its f32 path (the int8
        /// kernel's reference; minutes).
        #[arg(long)]
        f32: bool,
    },
    /// Trains the classifier's learned model from rows whose licence allows
    /// it, reports cross-validation and unseen-source figures, and writes the
    /// model (`crates/textscan/model/concern.bin`).
    Train {
        /// The labelled JSONL (../shared/data/eval/dev.jsonl).
        data: PathBuf,
        /// Where to write the model.
        #[arg(long, default_value = "crates/textscan/model/concern.bin")]
        out: PathBuf,
        #[arg(long, default_value_t = 5)]
        folds: usize,
    },
    /// Trains the semantic stage's shipped head (`crates/textscan/semantic/head.bin`) from the banks and the licensed ordinary texts of a labelled set.
    TrainSemantic {
        /// The labelled JSONL (../shared/data/eval/dev.jsonl): its benign rows from sources whose licence allows a shipped model.
        data: PathBuf,
        #[arg(long, default_value = "crates/textscan/semantic")]
        out: PathBuf,
    },
    /// Trains the hostname model (`crates/hostmodel/model/hosts.bin`) from the category lists and prints its held-out figures.
    TrainHosts {
        /// The folder of category lists (../shared/data/lists).
        lists: PathBuf,
        #[arg(long, default_value = "crates/hostmodel/model/hosts.bin")]
        out: PathBuf,
        /// Hash table size as a power of two.
        #[arg(long, default_value_t = 20)]
        bits: u32,
    },
    /// Decision speed for names no list holds, lists only vs lists + the shipped hostname model.
    HostsSpeed {
        #[arg(long, default_value = "examples/haven.toml")]
        config: PathBuf,
        /// A `domain<TAB>label` file (../shared/data/eval/domains_dev.tsv).
        file: PathBuf,
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// A model file (default: the shipped one).
        #[arg(long)]
        model: Option<PathBuf>,
    },
    /// Scores a hostname model alone on a `domain<TAB>label` file at its thresholds (+ --shift).
    EvalHosts {
        model: PathBuf,
        file: PathBuf,
        #[arg(long, default_value_t = 0.0)]
        shift: f32,
    },
    /// Proxy: what reading pages' text ([proxy.content]) adds to a benign
    /// page's time to first byte and to the last, content off vs on.
    ProxyContent {
        #[arg(long, default_value_t = 300)]
        requests: usize,
        /// The page's size in KiB.
        #[arg(long, default_value_t = 100)]
        page_kib: usize,
    },
    /// Safeguarding service: ingest events per second, and the alert-queue page's time with many alerts.
    Safeguard {
        /// A PostgreSQL URL (a fresh database); SQLite in a temporary folder otherwise.
        #[arg(long)]
        postgres: Option<String>,
        #[arg(long, default_value_t = 20_000)]
        events: usize,
        #[arg(long, default_value_t = 100_000)]
        alerts: usize,
        /// Texts to send (JSONL with "text"), e.g. ../shared/data/eval/dev.jsonl.
        #[arg(long)]
        texts: Option<PathBuf>,
    },
    /// The DSL's queue at size: a million alerts, the page times with true counts, and every page by cursor.
    Queue {
        /// A PostgreSQL URL (a fresh database); SQLite in a temporary folder otherwise.
        #[arg(long)]
        postgres: Option<String>,
        #[arg(long, default_value_t = 1_000_000)]
        alerts: i64,
        #[arg(long, default_value_t = 100_000)]
        people: i64,
        /// Run ANALYZE after the load (Haven itself does not).
        #[arg(long)]
        analyze: bool,
        /// Keep the SQLite record in this (new, empty) folder to look at afterwards.
        #[arg(long)]
        keep: Option<PathBuf>,
    },
    /// Call-out latency: `haven serve` as a process, level-5 events in, a local webhook receiver out (build `haven` in release first).
    Callout {
        /// Level-5 events, one every 250 ms.
        #[arg(long, default_value_t = 200)]
        events: usize,
        /// Other events a minute meanwhile.
        #[arg(long, default_value_t = 1000)]
        background: usize,
    },
    /// Soak: haven serve under DNS, proxy and ingest load together; the peak first, then a fraction of it for the minutes given, memory sampled.
    Soak {
        #[arg(long, default_value_t = 30)]
        minutes: u64,
        /// The fraction of the peak to run at.
        #[arg(long, default_value_t = 0.8)]
        fraction: f64,
        /// Seconds at full speed to find the peak.
        #[arg(long, default_value_t = 20)]
        peak_secs: u64,
    },
    /// (child) Decide queries on one thread; print rates, latency percentiles and peak RSS.
    Decide {
        config: PathBuf,
        index: PathBuf,
        queries: PathBuf,
        #[arg(long)]
        urls: bool,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Cmd::All { config, synthetic, runs } => all(&config, &synthetic, runs),
        Cmd::Import { config, out } => {
            let c = Config::load(&config)?;
            let t = Instant::now();
            let (index, _) = compile(&c.lists, "bench", &NoProgress)?;
            let secs = t.elapsed().as_secs_f64();
            index.save(&out)?;
            println!("seconds={secs:.4} keys={} bytes={} peak_kb={}", index.header().domain_keys + index.header().url_keys, index.size(), peak_kb());
            Ok(())
        }
        Cmd::Load { index } => {
            let t = Instant::now();
            let i = ListIndex::load(&index)?;
            let secs = t.elapsed().as_secs_f64();
            println!("seconds={secs:.4} keys={} peak_kb={}", i.header().domain_keys, peak_kb());
            Ok(())
        }
        Cmd::Decide { config, index, queries, urls } => decide_child(&config, &index, &queries, urls),
        Cmd::Classify { file, runs, max_chars, lines, f32 } => classify_speed::run(&classify_speed::Options { file: &file, runs, max_chars, lines, f32 }),
        Cmd::Train { data, out, folds } => train(&data, &out, folds),
        Cmd::TrainSemantic { data, out } => train_semantic::run(&data, &out),
        Cmd::TrainHosts { lists, out, bits } => train_hosts::run(&lists, &out, bits),
        Cmd::HostsSpeed { config, file, runs, model } => train_hosts::speed(&config, &file, runs, model.as_deref()),
        Cmd::EvalHosts { model, file, shift } => train_hosts::eval(&model, &file, shift),
        Cmd::ProxyContent { requests, page_kib } => proxy_content::run(requests, page_kib),
        Cmd::Safeguard { postgres, events, alerts, texts } => safeguard::run(postgres, events, alerts, texts.as_deref()),
        Cmd::Queue { postgres, alerts, people, analyze, keep } => queue::run(postgres, alerts, people, analyze, keep),
        Cmd::Callout { events, background } => callout::run_bench(events, background),
        Cmd::Soak { minutes, fraction, peak_secs } => soak::run(minutes, fraction, peak_secs),
    }
}

fn peak_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

fn decide_child(config: &Path, index: &Path, queries: &Path, urls: bool) -> Result<()> {
    let c = Config::load(config)?;
    let index = ListIndex::load(index)?;
    let set: &PolicySet = &c.policy;
    let who = Subject { user: None, group: set.group("secondary").context("the config needs a `secondary` group")?, school: None };
    let when: jiff::Timestamp = "2026-12-01T10:00:00Z".parse()?;
    let names: Vec<String> = std::fs::read_to_string(queries)?
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|l| !l.is_empty())
        .map(|n| if urls { format!("http://{n}/path/to/page.html?q=term&page=2") } else { n.to_string() })
        .collect();
    // Requests are built outside the timed loop for hosts (a DNS server gets a
    // parsed name); for URLs canonicalisation is part of each decision.
    let hosts: Vec<Request> = names.iter().map(|n| Request::Host(haven_url::canonical_host(n).unwrap_or_default())).collect();
    let mut lat = Vec::with_capacity(names.len());
    let mut blocked = 0usize;
    let start = Instant::now();
    for (i, n) in names.iter().enumerate() {
        let t = Instant::now();
        let d = if urls {
            let Ok(r) = Request::parse(n) else { continue };
            decide(set, &index, &who, when, &r)
        } else {
            decide(set, &index, &who, when, &hosts[i])
        };
        lat.push(t.elapsed());
        blocked += usize::from(d.action == haven_policy::Action::Block);
    }
    let total = start.elapsed();
    // Throughput without per-decision timer overhead.
    let start = Instant::now();
    for (i, n) in names.iter().enumerate() {
        if urls {
            if let Ok(r) = Request::parse(n) {
                std::hint::black_box(decide(set, &index, &who, when, &r));
            }
        } else {
            std::hint::black_box(decide(set, &index, &who, when, &hosts[i]));
        }
    }
    let plain = start.elapsed();
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "n={} blocked={blocked} per_sec={:.0} timed_per_sec={:.0} p50_ns={} p99_ns={} peak_kb={}",
        names.len(),
        names.len() as f64 / plain.as_secs_f64(),
        names.len() as f64 / total.as_secs_f64(),
        pct(0.5).as_nanos(),
        pct(0.99).as_nanos(),
        peak_kb()
    );
    Ok(())
}

/// Sources whose licence allows training a model Haven ships
/// (../shared/data/README.md): MIT, CC BY 4.0 and CC BY-SA 3.0 (Stormfront,
/// which makes the shipped weights CC BY-SA 3.0; see model/README.md).
pub(crate) const TRAINABLE: &[&str] = &["davidson2017", "openai_moderation2022", "presidio_synthetic", "rmhd2020", "stormfront2018"];
const BUCKETS: usize = 1 << 18;
/// Full-batch optimiser steps.
const STEPS: usize = 300;
/// The model alone may raise a category to an alert level (2–3) on at most
/// this share of benign texts…
const MAX_BENIGN: f64 = 0.01;
/// …and must be right at least this often when it does.
const MIN_PRECISION: f64 = 0.8;
/// The model alone may record a category at level 1 (logged only) on at
/// most this share of benign texts, and be right this often.
const REVIEW_MAX_BENIGN: f64 = 0.05;
const REVIEW_MIN_PRECISION: f64 = 0.7;

fn train(data: &Path, out: &Path, folds: usize) -> Result<()> {
    use haven_textscan::eval::{Report, Row};
    use haven_textscan::model::Model;
    use haven_textscan::{Classifier, Concern, Lexicon};
    let (mut trainable, mut trainable_sources, mut unseen, mut unseen_sources) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for line in std::fs::read_to_string(data)?.lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let row = Row {
            text: v["text"].as_str().unwrap_or_default().to_string(),
            labels: v["labels"].as_array().into_iter().flatten().filter_map(|l| l.as_str().and_then(Concern::parse)).collect(),
            hard_negative: v["hard_negative"].as_bool().unwrap_or(false),
        };
        let source = v["source"].as_str().unwrap_or_default().to_string();
        if TRAINABLE.contains(&source.as_str()) {
            trainable.push(row);
            trainable_sources.push(source);
        } else {
            unseen.push(row);
            unseen_sources.push(source);
        }
    }
    let pairs = |rows: &[&Row]| rows.iter().map(|r| (r.text.clone(), r.labels.clone())).collect::<Vec<_>>();
    let rules = || Classifier::new(&Lexicon::shipped());
    // Out-of-fold models, with and without log-count ratios: per category
    // the variant that ranks unseen rows better (ROC AUC against benign rows)
    // is kept; its predictions set the thresholds, then score the folds.
    let cross_validate = |ratios: bool| {
        let mut models = Vec::new();
        let mut oof = vec![[0f32; 8]; trainable.len()];
        for k in 0..folds {
            let train: Vec<&Row> = trainable.iter().enumerate().filter(|(i, _)| i % folds != k).map(|(_, r)| r).collect();
            let model = Model::train(&pairs(&train), BUCKETS, STEPS, [ratios; 8]);
            for (i, r) in trainable.iter().enumerate().skip(k).step_by(folds) {
                oof[i] = model.predict(&r.text);
            }
            models.push(model);
        }
        (models, oof)
    };
    let (mut fold_models, mut oof) = cross_validate(false);
    let (nb_models, nb_oof) = cross_validate(true);
    let mut ratios = [false; 8];
    println!("ROC AUC on unseen rows, plain / with log-count ratios:");
    for (c, concern) in Concern::ALL.iter().enumerate() {
        let of = |p: &[[f32; 8]]| {
            auc(trainable.iter().zip(p).filter(|(r, _)| r.labels.is_empty() || r.labels.contains(concern)).map(|(r, p)| (p[c], !r.labels.is_empty())))
        };
        let (plain, nb) = (of(&oof), of(&nb_oof));
        println!("- {}: {plain:.3} / {nb:.3}", concern.name());
        if nb > plain {
            ratios[c] = true;
            for (m, n) in fold_models.iter_mut().zip(&nb_models) {
                m.take_category(n, c);
            }
            for (o, n) in oof.iter_mut().zip(&nb_oof) {
                o[c] = n[c];
            }
        }
    }
    println!();
    let scored: Vec<([f32; 8], Vec<Concern>)> = oof.iter().zip(&trainable).map(|(p, r)| (*p, r.labels.clone())).collect();
    let alert = Model::calibrate(&scored, MAX_BENIGN, MIN_PRECISION);
    let mut review = Model::calibrate(&scored, REVIEW_MAX_BENIGN, REVIEW_MIN_PRECISION);
    // Level 1 exists so a pattern of worrying but unclear messages can be
    // seen later. Swearing that shows no swear word is no such pattern, and on
    // game chat it never saw the model's level-1 offensive findings were
    // mostly wrong: offensive language is raised by the model only when sure.
    let offensive = Concern::ALL.iter().position(|c| *c == Concern::OffensiveUser).unwrap_or(0);
    review[offensive] = alert[offensive];
    let mut cv = Report::default();
    let mut cv_rules = Report::default();
    for (k, mut model) in fold_models.into_iter().enumerate() {
        (model.review, model.alert) = (review, alert);
        let test: Vec<Row> = trainable.iter().skip(k).step_by(folds).cloned().collect();
        cv.add(&Report::of(&rules().with_model(Some(model)), &test));
        cv_rules.add(&Report::of(&rules(), &test));
    }
    println!("thresholds, level 1 / alert (1.00: never raised by the model alone):");
    for (c, (r, a)) in Concern::ALL.iter().zip(review.iter().zip(alert)) {
        println!("- {}: {r:.2} / {a:.2}", c.name());
    }
    println!();
    println!(
        "## {folds}-fold cross-validation on the trainable sources ({} rows: {})
",
        trainable.len(),
        TRAINABLE.join(", ")
    );
    println!(
        "Rules alone:

{cv_rules}

Rules and model:

{cv}
"
    );
    let all: Vec<&Row> = trainable.iter().collect();
    let mut model = Model::train(&pairs(&all), BUCKETS, STEPS, ratios);
    (model.review, model.alert) = (review, alert);
    let bytes = model.to_bytes();
    std::fs::write(out, &bytes)?;
    let with = rules().with_model(Model::from_bytes(&bytes));
    println!(
        "## Sources never trained on ({} rows)
",
        unseen.len()
    );
    let unseen_report = Report::of(&with, &unseen);
    cv.add(&unseen_report);
    if let Some(dump) = std::env::var_os("HAVEN_TRAIN_DUMP") {
        // Out-of-fold (trainable) or final-model (never seen) probabilities and
        // the rules' findings per row, for studying thresholds.
        let full = Model::from_bytes(&bytes).expect("just written");
        let mut lines = String::new();
        let rows = trainable.iter().zip(&trainable_sources).zip(oof.iter().copied());
        let rows = rows.chain(unseen.iter().zip(&unseen_sources).map(|(r, s)| ((r, s), full.predict(&r.text))));
        let rules = rules();
        for ((r, source), p) in rows {
            let found: Vec<(String, u8)> = rules.classify(&r.text).categories.iter().map(|f| (f.category.name().to_string(), f.level)).collect();
            let labels: Vec<&str> = r.labels.iter().map(|c| c.name()).collect();
            lines.push_str(&serde_json::json!({"source": source, "labels": labels, "hard": r.hard_negative, "p": p, "rules": found, "norm": haven_textscan::normalize(&r.text).text}).to_string());
            lines.push('\n');
        }
        std::fs::write(dump, lines)?;
    }
    println!(
        "Rules alone:

{}

Rules and model:

{}
",
        Report::of(&rules(), &unseen),
        unseen_report
    );
    println!(
        "## Estimate for the held-out set: out-of-fold on the trainable sources, the shipped model on the rest ({} rows)

{cv}
",
        trainable.len() + unseen.len()
    );
    println!("model written to {} ({} KB)", out.display(), bytes.len() / 1024);
    Ok(())
}

/// Area under the ROC curve of (score, is positive) pairs (ties count half);
/// NaN without both kinds.
fn auc(pairs: impl Iterator<Item = (f32, bool)>) -> f64 {
    let mut v: Vec<(f32, bool)> = pairs.collect();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut rank_sum, mut pos, mut i) = (0f64, 0f64, 0);
    while i < v.len() {
        let j = (i..v.len()).find(|&j| v[j].0 != v[i].0).unwrap_or(v.len());
        let mid = (i + j + 1) as f64 / 2.0;
        for x in &v[i..j] {
            if x.1 {
                rank_sum += mid;
                pos += 1.0;
            }
        }
        i = j;
    }
    let neg = v.len() as f64 - pos;
    (rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg)
}

/// A text cut at the last word boundary before 100 characters, if longer.
fn child(args: &[&str]) -> Result<std::collections::HashMap<String, String>> {
    let exe = std::env::current_exe()?;
    let out = Command::new(exe).args(args).output()?;
    if !out.status.success() {
        bail!("{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).split_whitespace().filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string()))).collect())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn synthetic_config(dir: &Path, synthetic: &Path) -> Result<PathBuf> {
    let text = format!(
        r#"trust = "bench"
[[group]]
id = "secondary"
[[group]]
id = "staff"
[[policy]]
id = "secondary"
block = ["adult", "gambling", "games", "social-networks", "malware", "phishing", "circumvention", "dating"]
[[policy]]
id = "staff"
[[list]]
name = "synthetic"
format = "ut1"
path = "{}"
labels = {{ proxy_vpn = ["circumvention"] }}
"#,
        synthetic.join("categories").display()
    );
    let p = dir.join("synthetic.toml");
    std::fs::write(&p, text)?;
    Ok(p)
}

fn all(config: &Path, synthetic: &Path, runs: usize) -> Result<()> {
    let tmp = std::env::temp_dir().join(format!("haven-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let mut sets: Vec<(&str, PathBuf)> = vec![("shared lists (demo config)", config.to_path_buf())];
    if synthetic.join("categories").exists() {
        sets.push(("1M synthetic domains", synthetic_config(&tmp, synthetic)?));
    } else {
        eprintln!("no synthetic data at {}: run ../shared/bench/gen_data.sh 1000000", synthetic.display());
    }
    println!("| list set | keys | import s (median of {runs}) | import peak MB | index MB | load s | load peak MB |");
    println!("|---|---|---|---|---|---|---|");
    let mut indexes = Vec::new();
    for (name, cfg) in &sets {
        let idx = tmp.join(format!("{}.havenidx", indexes.len()));
        let (cfg_s, idx_s) = (cfg.to_str().context("path")?, idx.to_str().context("path")?);
        let mut imports = Vec::new();
        let mut last = Default::default();
        for _ in 0..runs {
            let r = child(&["import", cfg_s, idx_s])?;
            imports.push(r["seconds"].parse::<f64>()?);
            last = r;
        }
        let mut loads = Vec::new();
        let mut load_peak = 0u64;
        for _ in 0..runs.max(5) {
            let r = child(&["load", idx_s])?;
            loads.push(r["seconds"].parse::<f64>()?);
            load_peak = r["peak_kb"].parse()?;
        }
        let last: std::collections::HashMap<String, String> = last;
        println!(
            "| {name} | {} | {:.2} | {:.0} | {:.1} | {:.3} | {:.0} |",
            last["keys"],
            median(imports),
            last["peak_kb"].parse::<f64>()? / 1024.0,
            last["bytes"].parse::<f64>()? / 1e6,
            median(loads),
            load_peak as f64 / 1024.0
        );
        indexes.push((name, cfg.clone(), idx));
    }
    println!();
    let queries = synthetic.join("queries.txt");
    if !queries.exists() {
        return Ok(());
    }
    println!("Decisions on one thread, {} (90% allowed, 10% blocked):", queries.display());
    println!();
    println!("| list set | request | decisions/s | p50 µs | p99 µs | peak MB |");
    println!("|---|---|---|---|---|---|");
    for (name, cfg, idx) in &indexes {
        for urls in [false, true] {
            let mut args = vec!["decide", cfg.to_str().context("path")?, idx.to_str().context("path")?, queries.to_str().context("path")?];
            if urls {
                args.push("--urls");
            }
            let mut rates = Vec::new();
            let mut last = Default::default();
            for _ in 0..runs {
                let r = child(&args)?;
                rates.push(r["per_sec"].parse::<f64>()?);
                last = r;
            }
            let last: std::collections::HashMap<String, String> = last;
            println!(
                "| {name} | {} | {:.0} | {:.2} | {:.2} | {:.0} |",
                if urls { "full URL (canonicalised)" } else { "host" },
                median(rates),
                last["p50_ns"].parse::<f64>()? / 1000.0,
                last["p99_ns"].parse::<f64>()? / 1000.0,
                last["peak_kb"].parse::<f64>()? / 1024.0
            );
        }
    }
    batch(config, &queries, &tmp, runs)?;
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}

/// `haven check --batch` end to end: process start, config, index load, one
/// million lines (half hosts, half URLs with paths and queries), output.
fn batch(config: &Path, queries: &Path, tmp: &Path, runs: usize) -> Result<()> {
    let haven = std::env::current_exe()?.with_file_name("haven");
    if !haven.exists() {
        eprintln!("no haven binary beside haven-bench: build it with cargo build --release");
        return Ok(());
    }
    let names: Vec<String> = std::fs::read_to_string(queries)?.lines().filter_map(|l| l.split_whitespace().next().map(str::to_string)).collect();
    let mut text = String::with_capacity(50_000_000);
    for i in 0..1_000_000usize {
        let n = &names[i % names.len()];
        if i % 2 == 0 {
            text.push_str(n);
        } else {
            text.push_str(&format!("https://{n}/articles/{i}/index.html?ref=home"));
        }
        text.push('\n');
    }
    let input = tmp.join("batch.txt");
    std::fs::write(&input, text)?;
    let mut secs = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let status = Command::new(&haven)
            .args([
                "check",
                "--config",
                config.to_str().context("path")?,
                "--group",
                "secondary",
                "--at",
                "2026-12-01T10:00:00Z",
                "--batch",
                input.to_str().context("path")?,
            ])
            .stdout(std::process::Stdio::null())
            .status()?;
        if !status.success() {
            bail!("haven check --batch failed");
        }
        secs.push(t.elapsed().as_secs_f64());
    }
    let s = median(secs);
    println!();
    println!("`haven check --batch`, 1,000,000 lines (half hosts, half URLs), end to end: {s:.2} s = {:.0} lines/s", 1e6 / s);
    Ok(())
}
