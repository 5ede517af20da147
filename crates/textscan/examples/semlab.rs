//! A workbench for the semantic stage: trains a head on banks read from disk
//! (not the compiled-in ones) and scores the whole classifier on a probe
//! file and a labelled set, without rebuilding Haven. For trying bank
//! edits; `haven-bench train-semantic` makes the shipped files.
//!
//!     cargo run --release -p haven-textscan --example semlab -- \
//!         MINILM.bin CONCERNS.toml LOOKALIKES.toml DEV.jsonl PROBES.jsonl [OUT_DIR]
//!
//! `SEMLAB_HEAD=DIR` reads `head.bin` and `gate.bin` from DIR (an earlier
//! OUT_DIR) instead of training; `SEMLAB_OTHER=0,0.5,1` scores once per
//! shift of the biases of "other" and every look-alike kind (a higher
//! prior for "not a concern");
//! `SEMLAB_ALONE=0.9,0.8` scores once per probability from which the stage
//! alone reports;
//! `SEMLAB_DEV=1` also scores the labelled set.

use std::collections::BTreeMap;
use std::sync::Arc;

use haven_textscan::eval::{Report, Row};
use haven_textscan::semantic::{Bank, Head, Semantic, Transformer, write_vectors};
use haven_textscan::{Classifier, Concern, Lexicon};

const TRAINABLE: &[&str] = &["davidson2017", "openai_moderation2022", "presidio_synthetic", "rmhd2020", "stormfront2018"];

fn rows(path: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path).expect("readable").lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).expect("json")).collect()
}

fn labels(v: &serde_json::Value) -> Vec<Concern> {
    v["labels"].as_array().map(|a| a.iter().filter_map(|l| Concern::parse(l.as_str()?)).collect()).unwrap_or_default()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [minilm, concerns, lookalikes, dev, probes, rest @ ..] = args.as_slice() else {
        panic!("usage: semlab MINILM.bin CONCERNS.toml LOOKALIKES.toml DEV.jsonl PROBES.jsonl [OUT_DIR]");
    };
    let transformer = Arc::new(Transformer::parse(&std::fs::read(minilm).expect("minilm")).expect("parses"));
    let files = [std::fs::read_to_string(concerns).expect("concerns"), std::fs::read_to_string(lookalikes).expect("lookalikes")];
    let bank = Arc::new(Bank::parse(&[&files[0], &files[1]]).expect("banks parse"));
    let dev = rows(dev);
    let ordinary: Vec<String> = dev
        .iter()
        .filter(|v| labels(v).is_empty() && TRAINABLE.contains(&v["source"].as_str().unwrap_or_default()))
        .map(|v| v["text"].as_str().unwrap_or_default().chars().take(400).collect())
        .collect();
    let (head, gate, neighbours) = if let Some(dir) = std::env::var_os("SEMLAB_HEAD") {
        let read = |name: &str| Head::parse(&std::fs::read(std::path::Path::new(&dir).join(name)).expect("head file")).expect("head parses");
        (read("head.bin"), read("gate.bin"), None)
    } else {
        let t = std::time::Instant::now();
        let (head, gate, background, neighbours) = Semantic::train_shipped(transformer.clone(), bank.clone(), &ordinary);
        println!("trained in {:.0} s", t.elapsed().as_secs_f64());
        if let Some(out) = rest.first() {
            std::fs::write(format!("{out}/head.bin"), head.to_bytes()).expect("write");
            std::fs::write(format!("{out}/gate.bin"), gate.to_bytes()).expect("write");
            std::fs::write(format!("{out}/background.bin"), write_vectors(&background)).expect("write");
            std::fs::write(format!("{out}/neighbours.bin"), neighbours.to_bytes()).expect("write");
        }
        (head, gate, Some(Arc::new(neighbours)))
    };
    let shifts: Vec<f32> = std::env::var("SEMLAB_OTHER").map_or(vec![0.0], |v| v.split(',').map(|x| x.trim().parse().expect("a number")).collect());
    let alones: Vec<f32> =
        std::env::var("SEMLAB_ALONE").map_or(vec![haven_textscan::semantic::ALONE], |v| v.split(',').map(|x| x.trim().parse().expect("a number")).collect());
    let probes = rows(probes);
    for shift in shifts {
        // The biases are the file's last four bytes per class, in class order.
        let harmless: Vec<&str> = bank.facets.iter().filter(|f| f.concern.is_none()).map(|f| f.kind.as_str()).collect();
        let mut bytes = head.to_bytes();
        let k = head.classes().len();
        let start = bytes.len() - 4 * k;
        for (i, class) in head.classes().iter().enumerate() {
            if class == "other" || harmless.contains(&class.as_str()) {
                let at = start + 4 * i;
                let bias = f32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) + shift;
                bytes[at..at + 4].copy_from_slice(&bias.to_le_bytes());
            }
        }
        let shifted = Head::parse(&bytes).expect("head parses");
        for &alone in &alones {
            let semantic =
                Semantic::new(transformer.clone(), bank.clone(), Arc::new(Vec::new()), Head::parse(&gate.to_bytes()).expect("gate"), shifted.clone())
                    .with_neighbours(neighbours.clone())
                    .with_alone(alone);
            let c =
                Classifier::new(&Lexicon::shipped()).with_shared_model(haven_textscan::model::Model::shipped_shared()).with_semantic(Some(Arc::new(semantic)));
            println!("-- other bias shifted by {shift}, the stage alone from {alone}");
            score(&c, &probes, &dev);
        }
    }
}

fn score(c: &Classifier, probes: &[serde_json::Value], dev: &[serde_json::Value]) {
    let mut kinds: BTreeMap<String, (u32, u32, bool)> = BTreeMap::new();
    for v in probes {
        let l = labels(v);
        let found = c.classify(v["text"].as_str().unwrap_or_default());
        let k = kinds.entry(v["kind"].as_str().unwrap_or_default().to_string()).or_default();
        k.1 += 1;
        if l.is_empty() {
            let raised = found.level.is_some_and(|x| x >= 3);
            if raised && std::env::var_os("SEMLAB_MISSES").is_some() {
                println!("  raised {:?}: {}", v["text"].as_str().unwrap_or_default(), found.explanation);
            }
            k.0 += u32::from(raised);
        } else {
            let min = v["min_level"].as_u64().unwrap_or(2) as u8;
            k.2 = true;
            let hit = found.categories.iter().any(|f| l.contains(&f.category) && f.level >= min);
            if !hit && std::env::var_os("SEMLAB_MISSES").is_some() {
                println!("  missed {:?}: {}", v["text"].as_str().unwrap_or_default(), found.explanation);
            }
            k.0 += u32::from(hit);
        }
    }
    let (mut caught, mut pos, mut raised, mut look) = (0, 0, 0, 0);
    for (name, (n, of, concern)) in &kinds {
        println!("{name:<26} {}{n}/{of}", if *concern { "caught " } else { "raised " });
        if *concern {
            (caught, pos) = (caught + n, pos + of);
        } else {
            (raised, look) = (raised + n, look + of);
        }
    }
    println!(
        "PROBES caught {caught}/{pos} ({:.1}%), look-alikes raised {raised}/{look} ({:.1}%)",
        100.0 * caught as f64 / pos as f64,
        100.0 * raised as f64 / look as f64
    );
    if std::env::var_os("SEMLAB_DEV").is_some() {
        let rows: Vec<Row> = dev
            .iter()
            .map(|v| Row {
                text: v["text"].as_str().unwrap_or_default().into(),
                labels: labels(v),
                hard_negative: v["hard_negative"].as_bool().unwrap_or(false),
            })
            .collect();
        println!("{}", Report::of(c, &rows));
    }
}
