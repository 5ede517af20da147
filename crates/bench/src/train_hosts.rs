//! `haven-bench train-hosts LISTS OUT`: trains the hostname model from the
//! category lists (the layout of Haven's development lists: UT1's tree,
//! the Block List Project, Sinfonietta, chadmayfield, HaGeZi) and writes
//! `crates/hostmodel/model/hosts.bin`, printing the held-out figures.
//!
//! Which list feeds which class is the table below; licences are in
//! `crates/hostmodel/model/README.md`. Every tenth registered domain (by
//! hash) is held out to calibrate each category's threshold.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::{Context, Result, bail};
use haven_hostmodel::features::{self, hash};
use haven_hostmodel::train::{self, Example, Options};
use haven_policy::Category;

/// Where the examples come from: a file under the lists folder, its
/// format, the class (`None`: ordinary sites) and how many to take at most.
const SOURCES: &[(&str, Format, Option<Category>, usize)] = {
    use Category::*;
    use Format::*;
    &[
        ("sinfonietta-hostfiles/pornography-hosts", Hosts, Some(Adult), 40_000),
        ("chadmayfield-pihole/pi_blocklist_porn_top1m.list", Domains, Some(Adult), 20_000),
        ("ut1-blacklists/adult/urls", Urls, Some(Adult), 5_000),
        ("ut1-blacklists/gambling/domains", Domains, Some(Gambling), 40_000),
        ("ut1-blacklists/arjel/domains", Domains, Some(Gambling), 1_000),
        ("blocklistproject/gambling-nl.2024-08-19.txt", Domains, Some(Gambling), 5_000),
        ("sinfonietta-hostfiles/gambling-hosts", Hosts, Some(Gambling), 5_000),
        ("blocklistproject/phishing-nl.txt", Domains, Some(Phishing), 50_000),
        ("ut1-blacklists/phishing/urls", Urls, Some(Phishing), 20_000),
        ("ut1-blacklists/malware/urls", Urls, Some(Malware), 20_000),
        ("blocklistproject/ransomware-nl.txt", Domains, Some(Malware), 5_000),
        ("blocklistproject/scam-nl.txt", Domains, Some(Scams), 10_000),
        ("hagezi/fake.txt", Domains, Some(Scams), 15_000),
        ("ut1-blacklists/vpn/domains", Domains, Some(Circumvention), 10_000),
        ("ut1-blacklists/doh/domains", Domains, Some(Circumvention), 5_000),
        ("ut1-blacklists/residential-proxies/domains", Domains, Some(Circumvention), 1_000),
        ("ut1-blacklists/redirector/domains", Domains, Some(Circumvention), 40_000),
        ("hagezi/doh-vpn-proxy-bypass.txt", Domains, Some(Circumvention), 2_000),
        ("blocklistproject/drugs-nl.txt", Domains, Some(Drugs), 30_000),
        ("ut1-blacklists/drogue/domains", Domains, Some(Drugs), 2_000),
        ("ut1-blacklists/drogue/urls", Urls, Some(Drugs), 1_000),
        ("blocklistproject/vaping-nl.txt", Domains, Some(Drugs), 1_000),
        ("ut1-blacklists/dating/domains", Domains, Some(Dating), 10_000),
        ("ut1-blacklists/games/domains", Domains, Some(Games), 35_000),
        ("ut1-blacklists/games/urls", Urls, Some(Games), 2_000),
        ("blocklistproject/fortnite-nl.txt", Domains, Some(Games), 100),
        ("ut1-blacklists/warez/domains", Domains, Some(Piracy), 5_000),
        ("blocklistproject/piracy-nl.txt", Domains, Some(Piracy), 5_000),
        ("blocklistproject/torrent-nl.txt", Domains, Some(Piracy), 5_000),
        ("ut1-blacklists/social_networks/domains", Domains, Some(SocialNetworks), 2_000),
        ("blocklistproject/facebook-nl.txt", Domains, Some(SocialNetworks), 2_000),
        ("blocklistproject/tiktok-nl.txt", Domains, Some(SocialNetworks), 2_000),
        ("blocklistproject/twitter-nl.txt", Domains, Some(SocialNetworks), 1_000),
        ("sinfonietta-hostfiles/social-hosts", Hosts, Some(SocialNetworks), 3_000),
        ("ut1-blacklists/chat/domains", Domains, Some(Chat), 1_000),
        ("blocklistproject/whatsapp-nl.txt", Domains, Some(Chat), 1_000),
        ("ut1-blacklists/hacking/domains", Domains, Some(Hacking), 1_000),
        ("ut1-blacklists/ddos/domains", Domains, Some(Hacking), 1_000),
        ("ut1-blacklists/cryptojacking/domains", Domains, Some(Cryptomining), 12_000),
        // Ordinary sites: what schools allow.
        ("ut1-blacklists/jobsearch/domains", Domains, None, 60_000),
        ("ut1-blacklists/shopping/domains", Domains, None, 40_000),
        ("ut1-blacklists/bank/domains", Domains, None, 7_000),
        ("ut1-blacklists/press/domains", Domains, None, 5_000),
        ("ut1-blacklists/sports/domains", Domains, None, 3_000),
        ("ut1-blacklists/blog/domains", Domains, None, 2_000),
        ("ut1-blacklists/radio/domains", Domains, None, 1_000),
        ("ut1-blacklists/financial/domains", Domains, None, 1_000),
        ("ut1-blacklists/bitcoin/domains", Domains, None, 2_000),
        ("ut1-blacklists/webmail/domains", Domains, None, 1_000),
        ("ut1-blacklists/audio-video/domains", Domains, None, 4_000),
        ("ut1-blacklists/celebrity/domains", Domains, None, 1_000),
        ("ut1-blacklists/manga/domains", Domains, None, 1_000),
        ("ut1-blacklists/cleaning/domains", Domains, None, 1_000),
        ("ut1-blacklists/download/domains", Domains, None, 4_000),
        ("ut1-blacklists/update/domains", Domains, None, 1_000),
        ("ut1-blacklists/forums/domains", Domains, None, 1_000),
        ("ut1-blacklists/translation/domains", Domains, None, 1_000),
        ("ut1-blacklists/liste_blanche/domains", Domains, None, 1_000),
        ("ut1-blacklists/child/domains", Domains, None, 1_000),
        ("ut1-blacklists/educational_games/domains", Domains, None, 1_000),
        ("ut1-blacklists/examen_pix/domains", Domains, None, 1_000),
        ("ut1-blacklists/liste_bu/domains", Domains, None, 1_000),
        ("ut1-blacklists/cooking/domains", Domains, None, 1_000),
        ("ut1-blacklists/sexual_education/domains", Domains, None, 1_000),
        ("ut1-blacklists/astrology/domains", Domains, None, 1_000),
        ("ut1-blacklists/mobile-phone/domains", Domains, None, 1_000),
        ("ut1-blacklists/webhosting/domains", Domains, None, 1_000),
        ("ut1-blacklists/associations_religieuses/domains", Domains, None, 1_000),
    ]
};

#[derive(Debug, Clone, Copy)]
enum Format {
    /// One domain per line, `#` comments.
    Domains,
    /// `0.0.0.0 host` lines.
    Hosts,
    /// `host/path` lines.
    Urls,
}

pub(crate) fn run(lists: &Path, out: &Path, bits: u32) -> Result<()> {
    // Experiments: `HAVEN_HOSTS_SKIP=phishing,malware` trains without those classes' lists.
    let skip = std::env::var("HAVEN_HOSTS_SKIP").unwrap_or_default();
    let skipped = |c: &Option<Category>| c.is_some_and(|c| skip.split(',').any(|s| s == c.id()));
    let sources: Vec<_> = SOURCES.iter().filter(|(_, _, c, _)| !skipped(c)).collect();
    let mut classes: Vec<Option<Category>> = vec![None];
    for (_, _, c, _) in sources.iter().copied() {
        if !classes.contains(c) {
            classes.push(*c);
        }
    }
    let mut train_set = Vec::new();
    let mut held_out = Vec::new();
    let mut seen: HashSet<(String, Option<String>, usize)> = HashSet::new();
    let mut words: HashMap<String, u32> = HashMap::new();
    let mut missing = Vec::new();
    for (file, format, class, cap) in sources.iter().copied() {
        let path = lists.join(file);
        let Ok(text) = std::fs::read_to_string(&path) else {
            missing.push(file.to_string());
            continue;
        };
        let class_index = classes.iter().position(|c| c == class).unwrap_or(0);
        let mut taken = 0usize;
        let mut entries: Vec<(String, Option<String>)> = text.lines().filter_map(|l| entry(l, *format)).collect();
        // A fixed, spread-out sample when a list is larger than its cap.
        entries.sort_by_key(|(h, p)| hash(b'x', format!("{h}{}", p.as_deref().unwrap_or("")).as_bytes()));
        for (host, path) in entries {
            if taken == *cap {
                break;
            }
            if !seen.insert((host.clone(), path.clone(), class_index)) {
                continue;
            }
            taken += 1;
            let registered = features::parts(&host).registered.to_string();
            for w in registered.split(|c: char| c == '-' || c.is_ascii_digit()).filter(|w| (3..=15).contains(&w.len())) {
                *words.entry(w.to_string()).or_default() += 1;
            }
            let e = Example { host, path, class: class_index };
            if hash(b'h', registered.as_bytes()).is_multiple_of(10) { held_out.push(e) } else { train_set.push(e) }
        }
        println!("{file:<50} {:<16} {taken:>6}", class.map_or("ordinary", |c| c.id()));
    }
    if !missing.is_empty() {
        println!("not found (skipped): {}", missing.join(", "));
    }
    if train_set.is_empty() {
        bail!("no list files found under {}; give the folder that holds ut1-blacklists/, blocklistproject/ …", lists.display());
    }
    let common: HashSet<String> = words.into_iter().filter(|(_, n)| *n >= 3).map(|(w, _)| w).collect();
    // A compound of two known words of four letters or more (`nakedgirls`)
    // explains less than its parts.
    let vocabulary: HashSet<String> = common
        .iter()
        .filter(|w| !(4..w.len().saturating_sub(3)).any(|i| w.is_char_boundary(i) && common.contains(&w[..i]) && common.contains(&w[i..])))
        .cloned()
        .collect();
    println!("{} examples to train, {} held out, {} classes, {} words", train_set.len(), held_out.len(), classes.len(), vocabulary.len());
    let started = std::time::Instant::now();
    let options = options(bits)?;
    println!("{options:?}");
    let (model, calibrated) = train::train(&classes, &train_set, &held_out, vocabulary, options);
    println!("trained in {:.1} s", started.elapsed().as_secs_f64());
    println!("\n| category | threshold | held-out caught | ordinary blocked |\n|---|---|---|---|");
    for c in &calibrated {
        println!(
            "| {} | {:.3} | {}/{} ({:.1}%) | {} |",
            c.category.id(),
            c.threshold,
            c.caught,
            c.of,
            100.0 * c.caught as f64 / c.of.max(1) as f64,
            c.benign_blocked
        );
    }
    let bytes = model.to_bytes();
    std::fs::write(out, &bytes).with_context(|| format!("writing {}", out.display()))?;
    println!("\nwrote {} ({:.1} MB; {:.1} MB of weights in memory)", out.display(), bytes.len() as f64 / 1e6, model.weight_bytes() as f64 / 1e6);
    Ok(())
}

/// Scores a model alone on a `domain<TAB>label` file (labels starting
/// `benign-` should pass), at its calibrated thresholds plus `shift`: what
/// it would add to lists that name none of the domains.
pub(crate) fn eval(model: &Path, file: &Path, shift: f32) -> Result<()> {
    let model = haven_hostmodel::HostModel::from_bytes(&std::fs::read(model).with_context(|| format!("reading {}", model.display()))?)?;
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    if std::env::var_os("HOSTS_CURVE").is_some() {
        // Harmful recall at fixed shares of ordinary sites blocked, on the
        // summed probability of the decided categories: for comparing models.
        let (mut harm, mut ok): (Vec<f32>, Vec<f32>) = (Vec::new(), Vec::new());
        for line in text.lines() {
            let Some((host, label)) = line.split_once('\t') else { continue };
            let all = std::env::var_os("HOSTS_ALL").is_some();
            let s: f32 = model
                .probabilities(host, None)
                .iter()
                .filter(|(c, _)| c.is_some_and(|c| all || haven_hostmodel::DEFAULT_CATEGORIES.contains(&c)))
                .map(|(_, p)| p)
                .sum();
            if label.starts_with("benign") { ok.push(s) } else { harm.push(s) }
        }
        ok.sort_by(|a, b| b.total_cmp(a));
        for fp in [0.005, 0.01, 0.015, 0.03, 0.05, 0.1] {
            let t = ok[(ok.len() as f64 * fp) as usize];
            println!(
                "at {:.1}% ordinary blocked: {:.1}% harmful blocked",
                fp * 100.0,
                100.0 * harm.iter().filter(|h| **h > t).count() as f64 / harm.len() as f64
            );
        }
        return Ok(());
    }
    let mut per: std::collections::BTreeMap<&str, (usize, usize, HashMap<&'static str, usize>)> = Default::default();
    for line in text.lines() {
        let Some((host, label)) = line.split_once('\t') else { continue };
        let e = per.entry(label).or_default();
        e.0 += 1;
        let guess = model.guess(host, None);
        if std::env::var_os("HOSTS_MISSES").is_some() && !label.starts_with("benign") {
            println!("  guess {host} ({label}): {:?}", guess.as_ref().map(|g| (g.category.id(), g.confidence)));
        }
        if let Some(g) = guess.filter(|g| haven_hostmodel::DEFAULT_CATEGORIES.contains(&g.category)) {
            let t = model.calibrated_thresholds().iter().find(|(c, _)| *c == g.category).map(|(_, t)| *t);
            if t.is_some_and(|t| g.confidence >= (t + shift).min(0.999)) {
                e.1 += 1;
                *e.2.entry(g.category.id()).or_default() += 1;
                if label.starts_with("benign") && std::env::var_os("HOSTS_SHOW").is_some() {
                    println!("  over-blocked {host} ({label}) as {} {:.3} {:?}", g.category.id(), g.confidence, g.evidence);
                }
            }
        }
    }
    let (mut h, mut hb, mut b, mut bb) = (0, 0, 0, 0);
    for (label, (n, blocked, as_what)) in &per {
        let mut what: Vec<_> = as_what.iter().collect();
        what.sort_by_key(|(_, n)| std::cmp::Reverse(**n));
        println!("{label:<22} {blocked:>5}/{n:<5} {:>5.1}%  {what:?}", 100.0 * *blocked as f64 / *n as f64);
        if label.starts_with("benign") { (b, bb) = (b + n, bb + blocked) } else { (h, hb) = (h + n, hb + blocked) }
    }
    println!("harmful blocked {hb}/{h} ({:.1}%), benign blocked {bb}/{b} ({:.2}%)", 100.0 * hb as f64 / h as f64, 100.0 * bb as f64 / b as f64);
    Ok(())
}

/// The defaults, or `HAVEN_HOSTS_OPTIONS=epochs=3,rate=0.1,…` for experiments.
fn options(bits: u32) -> Result<Options> {
    let mut o = Options { bits, ..Options::default() };
    for kv in std::env::var("HAVEN_HOSTS_OPTIONS").unwrap_or_default().split(',').filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').context("HAVEN_HOSTS_OPTIONS: write name=value,…")?;
        let f: f32 = v.parse().with_context(|| format!("HAVEN_HOSTS_OPTIONS: {kv}"))?;
        match k {
            "epochs" => o.epochs = f as u32,
            "rate" => o.rate = f,
            "benign_weight" => o.benign_weight = f,
            "budget" => o.benign_budget = f,
            "floor" => o.floor = f,
            "l2" => o.l2 = f,
            other => bail!("HAVEN_HOSTS_OPTIONS: unknown option {other}"),
        }
    }
    Ok(o)
}

/// A host (and path) from one line, or `None` for comments and junk.
fn entry(line: &str, format: Format) -> Option<(String, Option<String>)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (host, path) = match format {
        Format::Domains => (line, None),
        Format::Hosts => (line.split_whitespace().nth(1)?, None),
        Format::Urls => match line.split_once('/') {
            Some((h, p)) => (h, Some(format!("/{p}"))),
            None => (line, None),
        },
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let plausible = host.contains('.')
        && host.len() <= 253
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && host.parse::<std::net::IpAddr>().is_err()
        && !matches!(host.as_str(), "localhost" | "0.0.0.0" | "broadcasthost");
    plausible.then_some((host, path))
}

/// Decisions per second for names no list holds, with and without the
/// hostname model behind the lists (the bound: within 2×): the
/// config's lists compiled, the secondary group, a school-day moment, each
/// host of a `domain<TAB>label` file decided `runs` times.
pub(crate) fn speed(config: &Path, file: &Path, runs: usize, model: Option<&Path>) -> Result<()> {
    use haven_policy::{PolicySet, Request, Subject, decide};
    let c = haven_config::Config::load(config)?;
    let (index, _) = haven_lists::compile(&c.lists, "bench", &haven_lists::NoProgress)?;
    let model = match model {
        Some(m) => std::sync::Arc::new(haven_hostmodel::HostModel::from_bytes(&std::fs::read(m).with_context(|| format!("reading {}", m.display()))?)?),
        None => haven_hostmodel::shipped_shared()?,
    };
    let mut set: PolicySet = c.policy.clone();
    set.host_model.enabled = true;
    set.host_model.thresholds = model.calibrated_thresholds().iter().filter(|(c, _)| haven_hostmodel::DEFAULT_CATEGORIES.contains(c)).copied().collect();
    let who = Subject { user: None, group: set.group("secondary").context("the config needs a `secondary` group")?, school: None };
    let when: jiff::Timestamp = "2026-12-01T10:00:00Z".parse()?;
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let hosts: Vec<Request> = text.lines().filter_map(|l| l.split('\t').next()).filter_map(|h| haven_url::canonical_host(h).ok()).map(Request::Host).collect();
    let lists_only = index;
    let (index, _) = haven_lists::compile(&c.lists, "bench", &haven_lists::NoProgress)?;
    let with_model_model = model.clone();
    let with_model = index.with_model(Some(model));
    let time = |lists: &haven_lists::ListIndex| {
        let mut best = f64::MAX;
        let mut blocked = 0;
        for _ in 0..runs {
            blocked = 0;
            let start = std::time::Instant::now();
            for r in &hosts {
                let d = decide(&set, lists, &who, when, r);
                blocked += usize::from(d.action == haven_policy::Action::Block);
            }
            best = best.min(start.elapsed().as_secs_f64());
        }
        (best * 1e9 / hosts.len() as f64, blocked)
    };
    let (off, blocked_off) = time(&lists_only);
    let (on, blocked_on) = time(&with_model);
    println!("| decisions for unlisted names ({} names, best of {runs}) | ns per decision | decisions/s | blocked |\n|---|---|---|---|", hosts.len());
    println!("| lists only | {off:.0} | {:.0} | {blocked_off} |", 1e9 / off);
    println!("| lists + hostname model | {on:.0} | {:.0} | {blocked_on} |", 1e9 / on);
    println!("\nratio (with model / lists only): {:.2}×", on / off);
    // Where the time goes: the guess alone, and finding the words of a guess.
    let m = with_model_model;
    let start = std::time::Instant::now();
    let mut guessed = 0usize;
    for r in &hosts {
        guessed += usize::from(std::hint::black_box(m.guess(r.host(), None)).is_some());
    }
    let guess_ns = start.elapsed().as_secs_f64() * 1e9 / hosts.len() as f64;
    let start = std::time::Instant::now();
    for r in &hosts {
        std::hint::black_box(m.explain(r.host(), haven_policy::Category::Gambling));
    }
    let explain_ns = start.elapsed().as_secs_f64() * 1e9 / hosts.len() as f64;
    let start = std::time::Instant::now();
    let mut n = 0u64;
    for r in &hosts {
        features::each(r.host(), None, |h, _| n = n.wrapping_add(h));
    }
    let features_ns = start.elapsed().as_secs_f64() * 1e9 / hosts.len() as f64;
    std::hint::black_box(n);
    println!("guess alone: {guess_ns:.0} ns ({guessed} guesses); its features alone: {features_ns:.0} ns; words of a guess: {explain_ns:.0} ns");
    Ok(())
}
