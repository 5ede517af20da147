//! `haven model retrain --from-record` on a record with a few closed alerts:
//! the figures before and after, the candidate written, switched on with an
//! audit row, and back off.

mod common;

use haven_store::Role;
use haven_store::alerts::{NewAlert, NewOccurrence, Verdict};

/// Alerts the DSL closed with a verdict, and one closed before verdicts.
async fn seed(data: &std::path::Path) {
    let store = haven_store::Store::open_dir(data).await.unwrap();
    store.use_key_dir(&data.with_file_name("data-keys")).unwrap();
    let now: jiff::Timestamp = "2026-11-24T10:00:00Z".parse().unwrap();
    let (dsl, _) = store.add_account("dsl@riverside.example", Role::Dsl, Some("riverside-academy"), "a long enough password", now).await.unwrap();
    let judged = [
        ("amy", "Vulnerable person", 4, "i have saved up all my tablets for friday", Some(Verdict::RealConcern)),
        ("ben", "Vulnerable person", 3, "nobody would even notice if i was not here anymore", Some(Verdict::RealConcern)),
        ("cal", "Bullying/Violence", 3, "we are going to batter him at the gates after school", Some(Verdict::RealConcern)),
        ("dee", "Vulnerable person", 3, "this maths homework is killing me, i want to die lol", Some(Verdict::NotAConcern)),
        ("eve", "Bullying/Violence", 3, "i will destroy you at fifa tonight, prepare to die", Some(Verdict::NotAConcern)),
        ("fay", "Vulnerable person", 3, "revision is literally the death of me", Some(Verdict::NotAConcern)),
        ("gus", "Vulnerable person", 3, "closed long ago, before verdicts were asked", None),
    ];
    for (i, (person, category, level, text, verdict)) in judged.into_iter().enumerate() {
        let at = now + jiff::SignedDuration::from_mins(i as i64);
        let alert = NewAlert {
            school: "riverside-academy".into(),
            person: person.into(),
            category: category.into(),
            level,
            due_at: None,
            first: NewOccurrence {
                at,
                level,
                source: "typed".into(),
                excerpt: text.into(),
                url: None,
                spans: "[]".into(),
                explanation: String::new(),
                screenshot: None,
                screenshot_withheld: false,
                repeats: 1,
            },
        };
        let id = store.insert_alert(&alert).await.unwrap();
        match verdict {
            Some(v) => assert!(store.close_alert(&dsl, id, "looked into it with the form tutor", v, at).await.unwrap()),
            None => assert!(store.act_on_alert(&dsl, id, "acknowledged", "", at).await.unwrap()),
        }
    }
    store.close().await;
}

#[test]
fn a_trust_retrains_its_head_from_its_closed_alerts_measures_it_and_switches_it_on() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    // The record made as `haven serve` would (the embedded demo config).
    let made = common::run(&["admin", "--data", d, "school", "list"], None);
    assert!(made.status.success(), "{}", common::err(&made));
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(seed(&data));
    // A small labelled set in the classifier's format and one in the probe format.
    let labelled = dir.path().join("labelled.jsonl");
    std::fs::write(
        &labelled,
        "{\"text\":\"i want to kill myself tonight\",\"labels\":[\"Vulnerable person\"]}\n{\"text\":\"see you at football practice\",\"labels\":[]}\n",
    )
    .unwrap();
    let probes = dir.path().join("probes.jsonl");
    std::fs::write(
        &probes,
        "{\"text\":\"im going to take all my pills tonight\",\"labels\":[\"Vulnerable person\"],\"kind\":\"suicide-plan\",\"min_level\":4}\n\
         {\"text\":\"took my hayfever pills this morning\",\"labels\":[],\"kind\":\"medication\"}\n",
    )
    .unwrap();

    let out = common::run(
        &["model", "--data", d, "retrain", "--from-record", "--eval", labelled.to_str().unwrap(), "--eval", probes.to_str().unwrap(), "--folds", "2"],
        None,
    );
    let (said, progress) = (common::text(&out), common::err(&out));
    assert!(out.status.success(), "{said}\n{progress}");
    println!("{said}\n{progress}");
    assert!(said.contains("Learning from 6 texts of 6 alerts closed with a verdict (3 real concern, 3 not a concern)"), "{said}");
    assert!(said.contains("before (the shipped head): real concerns caught") && said.contains("cross-validated"), "{said}");
    assert!(said.contains("after (candidate, on the texts it learned from): real concerns caught"), "{said}");
    assert!(said.contains("labelled.jsonl (2 rows)") && said.contains("benign texts with any category"), "{said}");
    assert!(said.contains("probes.jsonl (2 rows)") && said.contains("disclosures caught at their level"), "{said}");
    assert!(progress.contains("training a candidate head") && progress.contains("done in"), "progress is shown: {progress}");
    let candidate = data.join("model/head.candidate");
    let bytes = std::fs::read(&candidate).expect("the candidate is written");
    haven_textscan::semantic::Head::parse(&bytes).expect("a head Haven can read");
    assert!(!data.join("model/head.bin").exists(), "not in force until switched on");

    let on = common::run(&["model", "--data", d, "switch-on"], None);
    assert!(on.status.success(), "{}", common::err(&on));
    assert_eq!(std::fs::read(data.join("model/head.bin")).unwrap(), bytes, "the candidate is the head in force");
    assert!(!candidate.exists());
    let again = common::run(&["model", "--data", d, "switch-on"], None);
    assert_eq!(again.status.code(), Some(2));
    assert!(common::err(&again).contains("haven model retrain --from-record"), "names the fix: {}", common::err(&again));
    let audit = common::text(&common::run(&["admin", "--data", d, "audit", "--object", "model:head"], None));
    for action in ["model.retrain.read", "model.retrain", "model.switch-on"] {
        assert!(audit.contains(action), "{action} audited: {audit}");
    }
    let off = common::run(&["model", "--data", d, "switch-off"], None);
    assert!(off.status.success() && !data.join("model/head.bin").exists() && data.join("model/head.off").exists());
}

#[test]
fn retraining_with_nothing_judged_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = common::run(&["model", "--data", data.to_str().unwrap(), "retrain", "--from-record"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(common::err(&out).contains("close alerts with a verdict"), "{}", common::err(&out));
    let no_flag = common::run(&["model", "--data", data.to_str().unwrap(), "retrain"], None);
    assert!(!no_flag.status.success() && common::err(&no_flag).contains("--from-record"));
}
