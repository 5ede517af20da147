//! Issue 2's acceptance figures on the shared data, end to end through
//! `haven check --batch` with the demo configuration:
//! - entries of the shared lists in pupil-blocked categories are blocked for
//!   `--group secondary` (at least 99% of a sample);
//! - the `benign-*` domains of `domains_dev.tsv` are allowed (at most 1% blocked);
//! - the share of that file's harmful domains that are blocked is reported (they
//!   are absent from the lists on purpose).

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use haven_policy::{Category, taxonomy::ut1_label};

/// Pupil-blocked categories, as the demo's secondary policy names them.
fn secondary_blocked() -> Vec<Category> {
    use Category::*;
    vec![
        Adult,
        MixedAdult,
        Lingerie,
        Gambling,
        Phishing,
        Malware,
        Scams,
        Circumvention,
        NoSafeSearch,
        Drugs,
        Dating,
        Games,
        Piracy,
        SocialNetworks,
        HateSpeech,
        Discrimination,
        Extremism,
        Chat,
        Hacking,
        Violence,
        Weapons,
        SelfHarm,
        Cryptomining,
        Stalkerware,
        RemoteAccess,
        DynamicDns,
        Cults,
        Misinformation,
        Cheating,
    ]
}

fn domains_of(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().last().map(str::to_string))
        .filter(|d| d.contains('.') && d != "0.0.0.0")
        .collect()
}

/// Every entry of the shared lists whose category the secondary policy blocks.
fn blocked_population(lists: &Path) -> Vec<String> {
    let blocked = secondary_blocked();
    let mut out = Vec::new();
    let ut1 = lists.join("ut1-blacklists");
    for dir in std::fs::read_dir(&ut1).unwrap().flatten() {
        let label = dir.file_name().to_string_lossy().into_owned();
        let Some(cats) = ut1_label(&label) else { continue };
        if cats.iter().any(|c| blocked.contains(c)) {
            out.extend(domains_of(&dir.path().join("domains")));
        }
    }
    let flat: &[(&str, Category)] = &[
        ("blocklistproject/drugs-nl.txt", Category::Drugs),
        ("blocklistproject/phishing-nl.txt", Category::Phishing),
        ("blocklistproject/gambling-nl.2024-08-19.txt", Category::Gambling),
        ("blocklistproject/piracy-nl.txt", Category::Piracy),
        ("sinfonietta-hostfiles/pornography-hosts", Category::Adult),
        ("sinfonietta-hostfiles/gambling-hosts", Category::Gambling),
        ("chadmayfield-pihole/pi_blocklist_porn_top1m.list", Category::Adult),
        ("hagezi/doh-vpn-proxy-bypass.txt", Category::Circumvention),
    ];
    for (file, _) in flat {
        out.extend(domains_of(&lists.join(file)));
    }
    out
}

/// A deterministic sample (xorshift), so a failure can be reproduced.
fn sample(v: &[String], n: usize) -> Vec<&String> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n.min(v.len()))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            &v[(x % v.len() as u64) as usize]
        })
        .collect()
}

fn batch(config: &Path, input: &str) -> Vec<(String, String, String)> {
    let out = common::run(
        &[
            "check",
            "--config",
            config.to_str().unwrap(),
            "--group",
            "secondary",
            "--school",
            "riverside-academy",
            "--at",
            "2026-12-01T10:00:00Z",
            "--batch",
            "-",
        ],
        Some(input),
    );
    assert!(out.status.success(), "{}", common::err(&out));
    common::text(&out)
        .lines()
        .map(|l| {
            let mut f = l.split('\t');
            (f.next().unwrap_or_default().into(), f.next().unwrap_or_default().into(), f.next().unwrap_or_default().into())
        })
        .collect()
}

#[test]
fn shared_lists_and_dev_domains() {
    let Some(shared) = common::shared_data() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let config = common::demo_config(tmp.path(), &shared);

    // 1. Sample of listed entries in pupil-blocked categories.
    let population = blocked_population(&shared.join("lists"));
    let picked = sample(&population, 5000);
    let input: String = picked.iter().map(|d| format!("{d}\n")).collect();
    let rows = batch(&config, &input);
    assert_eq!(rows.len(), picked.len());
    let blocked = rows.iter().filter(|r| r.1 == "block").count();
    let rate = blocked as f64 / rows.len() as f64;
    let missed: Vec<_> = rows.iter().filter(|r| r.1 != "block").take(10).collect();
    eprintln!("listed entries in blocked categories: {blocked}/{} blocked ({:.2}%); e.g. not blocked: {missed:?}", rows.len(), rate * 100.0);
    assert!(rate >= 0.99, "only {:.2}% of listed entries were blocked", rate * 100.0);

    // 2. The labelled development domains.
    let tsv = std::fs::read_to_string(shared.join("eval/domains_dev.tsv")).unwrap();
    let labelled: Vec<(&str, &str)> = tsv.lines().filter_map(|l| l.split_once('\t')).collect();
    let input: String = labelled.iter().map(|(d, _)| format!("{d}\n")).collect();
    let rows = batch(&config, &input);
    assert_eq!(rows.len(), labelled.len());
    let mut per_label: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for ((_, label), row) in labelled.iter().zip(&rows) {
        let e = per_label.entry(label).or_default();
        e.0 += 1;
        e.1 += usize::from(row.1 == "block");
    }
    let (mut benign, mut benign_blocked, mut harmful, mut harmful_blocked) = (0, 0, 0, 0);
    for (label, (n, b)) in &per_label {
        eprintln!("  {label:<22} {b:>5}/{n:<5} blocked");
        if label.starts_with("benign-") {
            benign += n;
            benign_blocked += b;
        } else {
            harmful += n;
            harmful_blocked += b;
        }
    }
    let over = benign_blocked as f64 / benign as f64;
    eprintln!(
        "benign domains blocked: {benign_blocked}/{benign} ({:.2}%); harmful domains blocked: {harmful_blocked}/{harmful} ({:.2}%)",
        over * 100.0,
        harmful_blocked as f64 * 100.0 / harmful as f64
    );
    assert!(over <= 0.01, "over-blocking: {:.2}% of benign domains blocked", over * 100.0);
    // Issue 18: the hostname model blocks sites no list names. The bar for
    // the held-out set is 60%; this guards what the shipped model reaches.
    let caught = harmful_blocked as f64 / harmful as f64;
    assert!(caught >= 0.50, "the hostname model blocked only {:.1}% of the unlisted harmful domains", caught * 100.0);
}
