//! The `haven` binary end to end, on a small self-contained trust.

mod common;

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

fn trust(dir: &Path) -> PathBuf {
    std::fs::write(dir.join("gambling.txt"), "casino.example\nbad line here\n").unwrap();
    std::fs::write(dir.join("games.txt"), "games.example\n").unwrap();
    std::fs::write(dir.join("iwf.txt"), format!("{:x}\n", Sha256::digest(b"abuse.example/"))).unwrap();
    let config = r#"
trust = "CLI Trust"
[data]
dir = "data"

[[school]]
id = "north"
name = "North School"

[[group]]
id = "pupils"
name = "Pupils"
[[group]]
id = "staff"

[[policy]]
id = "pupils"
block = ["gambling", "games"]
allow_sites = ["abuse.example", "fun.games.example"]
[[policy]]
id = "staff"
block = []
safe_search = false
youtube = "off"

[[override]]
school = "north"
allow_sites = ["abuse.example"]

[[user]]
id = "pat"
group = "pupils"
school = "north"

[[window]]
name = "nights"
groups = ["pupils"]
from = "21:00"
to = "07:00"
block = ["*"]

[[allowance]]
id = "lesson-1"
group = "pupils"
sites = ["abuse.example", "games.example"]
from = "2026-12-01T10:00"
until = "2026-12-01T11:00"
reason = "Computing lesson"

[[list]]
name = "gambling-list"
format = "domains"
category = "gambling"
path = "gambling.txt"
[[list]]
name = "games-list"
format = "domains"
category = "games"
path = "games.txt"
[[list]]
name = "iwf"
format = "sha256"
category = "csam"
path = "iwf.txt"
"#;
    let path = dir.join("haven.toml");
    std::fs::write(&path, config).unwrap();
    path
}

fn json_lines(out: &std::process::Output) -> Vec<serde_json::Value> {
    assert!(out.status.success(), "{}", common::err(out));
    common::text(out).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn json_decisions_carry_the_contract_fields() {
    let dir = tempfile::tempdir().unwrap();
    let config = trust(dir.path());
    let c = config.to_str().unwrap();
    let out = common::run(
        &[
            "check",
            "--config",
            c,
            "--user",
            "pat",
            "--at",
            "2026-12-01T09:00",
            "--json",
            "https://www.casino.example/x",
            "fun.games.example",
            "example.org",
            "https://www.google.com/search?q=x",
        ],
        None,
    );
    let v = json_lines(&out);
    assert_eq!(v.len(), 4);
    for obj in &v {
        for field in ["url", "action", "categories", "rule", "list", "reason"] {
            assert!(obj.get(field).is_some(), "{field} missing in {obj}");
        }
    }
    assert_eq!(v[0]["action"], "block");
    assert_eq!(v[0]["categories"], serde_json::json!(["gambling"]));
    assert_eq!(v[0]["rule"], "policy:pupils:block-category");
    assert_eq!(v[0]["list"], "gambling-list");
    assert!(v[0]["reason"].as_str().unwrap().contains("Gambling"));
    assert_eq!(v[1]["action"], "allow");
    assert_eq!(v[1]["rule"], "policy:pupils:allow-entry");
    assert_eq!(v[2]["action"], "allow");
    assert_eq!(v[3]["action"], "safesearch");
}

#[test]
fn illegal_content_beats_allow_entries_overrides_and_allowances() {
    let dir = tempfile::tempdir().unwrap();
    let config = trust(dir.path());
    let c = config.to_str().unwrap();
    // During the allowance, which names the site, at the school whose override allows it.
    for who in [["--user", "pat"], ["--group", "staff"]] {
        let out = common::run(&["check", "--config", c, who[0], who[1], "--at", "2026-12-01T10:30", "--json", "http://sub.abuse.example/page"], None);
        let v = json_lines(&out);
        assert_eq!(v[0]["action"], "block");
        assert_eq!(v[0]["rule"], "illegal-content");
        assert_eq!(v[0]["list"], "iwf");
    }
    // The same allowance does unblock an ordinary blocked site, and lapses at 11:00.
    let at = |t: &str| common::run(&["check", "--config", c, "--user", "pat", "--at", t, "--json", "games.example"], None);
    assert_eq!(json_lines(&at("2026-12-01T10:59"))[0]["rule"], "allowance:lesson-1");
    assert_eq!(json_lines(&at("2026-12-01T11:00"))[0]["action"], "block");
}

#[test]
fn time_windows_use_school_time_across_the_clock_change() {
    let dir = tempfile::tempdir().unwrap();
    let config = trust(dir.path());
    let c = config.to_str().unwrap();
    let at = |t: &str| json_lines(&common::run(&["check", "--config", c, "--group", "pupils", "--at", t, "--json", "example.org"], None))[0]["action"].clone();
    // 21:00 on the wall clock is 20:00Z in summer and 21:00Z in winter.
    assert_eq!(at("2026-07-01T20:00:00Z"), "block");
    assert_eq!(at("2026-07-01T19:59:00Z"), "allow");
    assert_eq!(at("2026-12-01T20:59:00Z"), "allow");
    assert_eq!(at("2026-12-01T21:00:00Z"), "block");
    // Local time on the night the clocks go back (25 October 2026): 06:30 is in the window.
    assert_eq!(at("2026-10-25T06:30"), "block");
    assert_eq!(at("2026-10-25T07:00"), "allow");
}

#[test]
fn batch_prints_tab_separated_lines() {
    let dir = tempfile::tempdir().unwrap();
    let config = trust(dir.path());
    let out = common::run(
        &["check", "--config", config.to_str().unwrap(), "--group", "pupils", "--at", "2026-12-01T09:00", "--batch", "-"],
        Some("casino.example\n# comment\n\nhttp://example.org/a\r\nhttp://[::1\n"),
    );
    assert!(out.status.success(), "{}", common::err(&out));
    assert_eq!(common::text(&out), "casino.example\tblock\tgambling\nhttp://example.org/a\tallow\t\nhttp://[::1\terror\t\n");
    assert!(common::err(&out).contains("1 lines were not URLs"));
}

#[test]
fn a_bad_config_lists_every_problem_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = trust(dir.path());
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("\"games\"]", "\"gamez\"]")
        .replace("school = \"north\"\n\n[[window]]", "school = \"south\"\n\n[[window]]");
    std::fs::write(&config, text).unwrap();
    let out = common::run(&["config", "check", "--config", config.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(2));
    let e = common::err(&out);
    assert!(e.contains("2 problems"), "{e}");
    assert!(e.contains("haven.toml:18: unknown category \"gamez\""), "{e}");
    assert!(e.contains("did you mean \"games\""), "{e}");
    assert!(e.contains("unknown school \"south\""), "{e}");
}

#[test]
fn lists_import_and_stats_report_bad_lines_with_their_place() {
    let dir = tempfile::tempdir().unwrap();
    let config = trust(dir.path());
    let c = config.to_str().unwrap();
    let out = common::run(&["lists", "import", "--config", c], None);
    assert!(out.status.success(), "{}", common::err(&out));
    let text = common::text(&out);
    assert!(text.contains("gambling.txt:2:"), "{text}");
    assert!(dir.path().join("data/lists.havenidx").exists());
    let out = common::run(&["lists", "stats", "--config", c], None);
    let text = common::text(&out);
    assert!(text.contains("2 domains"), "{text}");
    assert!(text.contains("1 SHA-256"), "{text}");
    let out = common::run(&["config", "check", "--config", c], None);
    assert!(common::text(&out).contains("OK"));
}

#[test]
fn unknown_user_or_group_says_what_exists() {
    let dir = tempfile::tempdir().unwrap();
    let config = trust(dir.path());
    let out = common::run(&["check", "--config", config.to_str().unwrap(), "--group", "pupilz", "x.org"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(common::err(&out).contains("the config has: pupils, staff"), "{}", common::err(&out));
}

#[test]
fn config_check_reads_the_trusts_own_lexicons() {
    let dir = tempfile::tempdir().unwrap();
    let config = trust(dir.path());
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}\n[monitoring]\nlexicons = [\"local.toml\"]\n")).unwrap();
    let local = config.parent().unwrap().join("local.toml");
    std::fs::write(&local, "language = \"en\"\n[bullying]\n\"proper melt\" = 2\n").unwrap();
    let c = config.to_str().unwrap();
    let out = common::run(&["config", "check", "--config", c], None);
    assert!(common::text(&out).contains("1 lexicons of the trust's own, 0 of schools' own"), "{}{}", common::text(&out), common::err(&out));
    // A broken lexicon is refused, naming the file, before anything serves with it.
    std::fs::write(&local, "language = \"en\"\n[swearing]\n\"proper melt\" = 2\n").unwrap();
    let out = common::run(&["config", "check", "--config", c], None);
    assert!(!out.status.success());
    let e = common::err(&out);
    assert!(e.contains("local.toml") && e.contains("[monitoring] lexicons"), "{e}");
}
