//! The banks the semantic stage learns from must not hold the rows of the
//! development probes it is measured on: a copied row measures memory, not
//! understanding, and the figures then promise more than a school gets.
//! Reads `../shared/data/eval/probes_dev.jsonl` beside the repository (or
//! `HAVEN_SHARED_DATA/eval/`), and passes with a note where it is absent.

use std::collections::BTreeSet;
use std::path::PathBuf;

use haven_textscan::semantic::Bank;

/// From this share of words in common (of the two texts' words together)
/// a bank example counts as a copy of a probe. Rewordings of one idea
/// stay below it ("i dont see myself making it to 18" against "... to 16
/// tbh" is 0.7); copies and near-copies do not.
const COPY_AT: f64 = 0.8;

fn words(t: &str) -> BTreeSet<String> {
    t.to_lowercase().replace(['\'', '\u{2019}'], "").split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_string).collect()
}

fn texts(jsonl: &str) -> Vec<String> {
    jsonl.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).filter_map(|v| v["text"].as_str().map(str::to_string)).collect()
}

fn probes() -> Option<Vec<String>> {
    let data =
        std::env::var_os("HAVEN_SHARED_DATA").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"));
    let path = data.join("eval/probes_dev.jsonl");
    let Ok(text) = std::fs::read_to_string(&path) else {
        println!("skipping: no probes at {} (set HAVEN_SHARED_DATA to the data folder)", path.display());
        return None;
    };
    Some(texts(&text))
}

#[test]
fn no_bank_example_is_a_copy_of_a_development_probe() {
    let Some(probes) = probes() else { return };
    assert!(probes.len() > 100, "the probe file holds {} rows", probes.len());
    assert_no_copies(probes, "probe");
}

/// The project's own check set (`semantic/check_set.jsonl`, written blind
/// of the banks) is for measuring too.
#[test]
fn no_bank_example_is_a_copy_of_the_check_set() {
    let rows = texts(include_str!("../semantic/check_set.jsonl"));
    assert!(rows.len() > 100, "the check set holds {} rows", rows.len());
    assert_no_copies(rows, "check-set row");
}

/// The blind rounds (`semantic/blind/`) are for measuring too.
#[test]
fn no_bank_example_is_a_copy_of_a_blind_round() {
    for (name, file) in [
        ("round 3", include_str!("../semantic/blind/round3.jsonl")),
        ("round 4", include_str!("../semantic/blind/round4.jsonl")),
        ("round 5", include_str!("../semantic/blind/round5.jsonl")),
    ] {
        let rows = texts(file);
        assert!(rows.len() > 100, "{name} holds {} rows", rows.len());
        assert_no_copies(rows, name);
    }
}

fn assert_no_copies(probes: Vec<String>, what: &str) {
    let probes: Vec<(String, BTreeSet<String>)> = probes
        .into_iter()
        .map(|p| {
            let w = words(&p);
            (p, w)
        })
        .collect();
    let mut copies = Vec::new();
    for facet in &Bank::shipped().facets {
        for e in &facet.examples {
            let w = words(e);
            for (p, pw) in &probes {
                let union = w.union(pw).count();
                let shared = w.intersection(pw).count();
                if union > 0 && shared as f64 / union as f64 >= COPY_AT {
                    copies.push(format!("{} holds {e:?}, a copy of the {what} {p:?}", facet.id));
                }
            }
        }
    }
    assert!(copies.is_empty(), "rewrite or remove these bank examples:\n{}", copies.join("\n"));
}
