//! `haven sar export --person P --out FILE.zip` against a data folder: the
//! zip holds every record of the person (checked against what was put in
//! the record) and nothing of anyone else, with a readable index, the
//! evidence files opened from their sealed copies (or left out with
//! `--no-evidence-files`), and the export in the audit log.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;

use haven_store::Role;
use haven_store::alerts::{NewAlert, NewOccurrence};
use haven_store::incidents::{Kind, NewEvidence, NewIncident};
use sha2::Digest as _;

/// The entries of a zip, by name (a reader written from the format, apart
/// from the writer under test: central directory, local headers, deflate).
fn unzip(bytes: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let u16_at = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]) as usize;
    let u32_at = |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]) as usize;
    let eocd = (0..=bytes.len() - 22).rev().find(|&i| u32_at(i) == 0x0605_4b50).expect("an end of central directory");
    let (count, mut at) = (u16_at(eocd + 10), u32_at(eocd + 16));
    let mut out = BTreeMap::new();
    for _ in 0..count {
        assert_eq!(u32_at(at), 0x0201_4b50, "a central directory entry");
        let (method, crc, csize, size, nlen, elen, clen, offset) =
            (u16_at(at + 10), u32_at(at + 16), u32_at(at + 20), u32_at(at + 24), u16_at(at + 28), u16_at(at + 30), u16_at(at + 32), u32_at(at + 42));
        let name = String::from_utf8(bytes[at + 46..at + 46 + nlen].to_vec()).unwrap();
        at += 46 + nlen + elen + clen;
        assert_eq!(u32_at(offset), 0x0403_4b50, "a local header for {name}");
        let start = offset + 30 + u16_at(offset + 26) + u16_at(offset + 28);
        let packed = &bytes[start..start + csize];
        let data = match method {
            0 => packed.to_vec(),
            8 => {
                let mut d = Vec::new();
                flate2::read::DeflateDecoder::new(packed).read_to_end(&mut d).unwrap();
                d
            }
            m => panic!("method {m}"),
        };
        assert_eq!(data.len(), size);
        assert_eq!(crc32fast::hash(&data) as usize, crc, "the CRC of {name}");
        out.insert(name, data);
    }
    out
}

fn json(entries: &BTreeMap<String, Vec<u8>>, name: &str) -> Vec<serde_json::Value> {
    serde_json::from_slice(entries.get(name).unwrap_or_else(|| panic!("{name} in the zip"))).unwrap()
}

fn ids(rows: &[serde_json::Value]) -> BTreeSet<i64> {
    rows.iter().map(|r| r["id"].as_i64().unwrap()).collect()
}

#[test]
fn a_subject_access_export_holds_the_person_and_nobody_else() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    // The record, its key and the demo schools, made as `haven admin` makes them.
    let schools = common::run(&["admin", "--data", d, "school", "list"], None);
    assert!(schools.status.success(), "{}", common::err(&schools));
    let school = common::text(&schools).split_whitespace().next().unwrap().to_string();

    let now = jiff::Timestamp::now();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (amy, ben) = rt.block_on(async {
        let s = haven_store::Store::open_dir(&data).await.unwrap();
        let (dsl, _) = s.add_account("dsl@sar.example", Role::Dsl, Some(&school), "a long password", now).await.unwrap();
        let mut made = Vec::new();
        for person in ["amy", "ben"] {
            let mut alerts = BTreeSet::new();
            for n in 0..2 {
                let a = NewAlert {
                    school: school.clone(),
                    person: person.into(),
                    category: "Bullying".into(),
                    level: 3,
                    due_at: Some(now),
                    first: NewOccurrence {
                        at: now,
                        level: 3,
                        source: "chat".into(),
                        excerpt: format!("{person} secret words {n}"),
                        url: None,
                        explanation: "a threat".into(),
                        spans: "[]".into(),
                        screenshot: None,
                        screenshot_withheld: false,
                        repeats: 1,
                    },
                };
                alerts.insert(s.insert_alert(&a).await.unwrap());
            }
            let first = *alerts.first().unwrap();
            let n = NewIncident { school: &school, person: Some(person), alert: Some(first), title: "a worry", kind: Kind::Safeguarding, about_head: false };
            let incident = s.raise_incident(&dsl, &n, now).await.unwrap().unwrap();
            assert!(s.incident_action(&dsl, incident, &format!("called {person}'s carer"), now).await.unwrap());
            // Evidence kept as the web app keeps it: sealed, by SHA-256.
            let plain = format!("{person}'s screenshot bytes").into_bytes();
            let sha = hex(&sha2::Sha256::digest(&plain));
            std::fs::create_dir_all(data.join("evidence")).unwrap();
            std::fs::write(data.join("evidence").join(&sha), s.sealer().unwrap().seal_file(&plain)).unwrap();
            let e = NewEvidence { filename: "chat.png", sha256: &sha, size: plain.len() as i64, note: "what was on screen" };
            assert!(s.add_evidence(&dsl, incident, &e, now).await.unwrap());
            made.push((alerts, incident, plain));
        }
        s.close().await;
        let ben = made.pop().unwrap();
        (made.pop().unwrap(), ben)
    });

    let out = dir.path().join("amy.zip");
    let run = common::run(&["sar", "--data", d, "export", "--person", "amy", "--out", out.to_str().unwrap(), "--by", "dsl@sar.example"], None);
    assert!(run.status.success(), "{}", common::err(&run));
    assert!(common::text(&run).contains("2 alerts"), "{}", common::text(&run));
    let zip = std::fs::read(&out).unwrap();
    let entries = unzip(&zip);

    // Every record of hers: her alerts, their words, her incident and its action, her evidence file.
    assert_eq!(ids(&json(&entries, "alerts.json")), amy.0);
    let occurrences = json(&entries, "occurrences.json");
    assert_eq!(occurrences.len(), 2);
    assert!(occurrences.iter().all(|o| o["excerpt"].as_str().unwrap().starts_with("amy secret words")));
    assert_eq!(ids(&json(&entries, "incidents.json")), [amy.1].into_iter().collect());
    let actions = json(&entries, "incident_actions.json");
    assert_eq!(actions.len(), 1);
    assert_eq!(actions[0]["note"], "called amy's carer");
    let files: Vec<&String> = entries.keys().filter(|k| k.starts_with("evidence/")).collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(entries[files[0]], amy.2, "the evidence file, opened from its sealed copy");
    let index = String::from_utf8(entries["index.html"].clone()).unwrap();
    assert!(index.contains("Everything Haven holds about amy") && index.contains("amy secret words 0") && index.contains("Chronology"));
    let manifest: serde_json::Value = serde_json::from_slice(&entries["manifest.json"]).unwrap();
    assert_eq!(manifest["person"], "amy");
    let chronology = json(&entries, "chronology.json");
    assert!(chronology.iter().any(|e| e["what"] == "Incident raised" && e["record"] == format!("incidents {}", amy.1)), "{chronology:?}");

    // Nothing of Ben's anywhere in the zip (it is deflated: look inside every entry).
    for (name, bytes) in &entries {
        let text = String::from_utf8_lossy(bytes);
        assert!(!text.contains("ben secret words") && !text.contains("ben's"), "{name} holds Ben's data");
        assert_ne!(bytes, &ben.2, "{name} is Ben's evidence");
        for id in &ben.0 {
            if name == "alerts.json" {
                assert!(!ids(&json(&entries, name)).contains(id));
            }
        }
    }
    assert!(!ids(&json(&entries, "incidents.json")).contains(&ben.1));

    // Where the files may not be disclosed, they are left out, their rows kept.
    let bare = dir.path().join("amy-bare.zip");
    let run = common::run(&["sar", "--data", d, "export", "--person", "amy", "--out", bare.to_str().unwrap(), "--no-evidence-files"], None);
    assert!(run.status.success(), "{}", common::err(&run));
    let entries = unzip(&std::fs::read(&bare).unwrap());
    assert!(!entries.keys().any(|k| k.starts_with("evidence/")));
    assert_eq!(json(&entries, "evidence.json").len(), 1);
    let manifest: serde_json::Value = serde_json::from_slice(&entries["manifest.json"]).unwrap();
    assert!(manifest["evidence_files"][0]["left_out"].as_str().unwrap().contains("--no-evidence-files"));

    // Audited: who exported whose.
    let audit = common::run(&["admin", "--data", d, "audit", "--object", "person:*/amy"], None);
    let audit = common::text(&audit);
    assert!(audit.contains("sar.export") && audit.contains("admin-cli:dsl@sar.example"), "{audit}");
    assert!(!audit.contains("secret words"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600, "the export is owner-only");
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
