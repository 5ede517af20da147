//! `haven backup` and `haven restore` as an operator uses them: a record with
//! alerts, an incident, evidence and audit entries is backed up, wiped and
//! restored, and is the same row by row, with the same evidence. SQLite
//! always; PostgreSQL when `HAVEN_TEST_POSTGRES` names a server.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use haven_store::Store;
use haven_store::alerts::{NewAlert, NewOccurrence};
use haven_store::incidents::{Kind, NewEvidence, NewIncident};
use sha2::Digest as _;

const PASS: &str = "a long backup passphrase for the test";

fn config_text(database: Option<&str>) -> String {
    let db = database.map(|u| format!("database = \"{u}\"\n")).unwrap_or_default();
    format!(
        "trust = \"Backup Test Trust\"\n\n[data]\ndir = \"data\"\n{db}\n[[school]]\nid = \"oak\"\nname = \"Oak Primary\"\n\n[[group]]\nid = \"pupils\"\n\n[[policy]]\nid = \"pupils\"\nblock = [\"adult\"]\n"
    )
}

fn sha(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

struct Machine {
    dir: tempfile::TempDir,
    config: PathBuf,
    pass_file: PathBuf,
    database: Option<String>,
}

impl Machine {
    fn new(database: Option<String>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("haven.toml");
        std::fs::write(&config, config_text(database.as_deref())).unwrap();
        let pass_file = dir.path().join("passphrase");
        std::fs::write(&pass_file, format!("{PASS}\n")).unwrap();
        Self { dir, config, pass_file, database }
    }
    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }
    fn keys(&self) -> PathBuf {
        self.dir.path().join("data-keys")
    }
    fn haven(&self, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        let c = self.config.to_str().unwrap().to_string();
        let d = self.data().to_str().unwrap().to_string();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--config", &c, "--data", &d]);
        common::run(&all, stdin)
    }
    async fn store(&self) -> Store {
        let s = match &self.database {
            Some(url) => Store::open(url).await.unwrap(),
            None => Store::open_dir(&self.data()).await.unwrap(),
        };
        s.use_key_dir(&self.keys()).unwrap();
        s
    }
}

/// Alerts, an incident with actions and two evidence files, audit entries.
async fn fill(b: &Machine) {
    let store = b.store().await;
    let now = jiff::Timestamp::now();
    let dsl = store.account_by_email("dsl@oak.example").await.unwrap();
    let occ = |excerpt: &str, level: u8| NewOccurrence {
        at: now,
        level,
        source: "chat".into(),
        excerpt: excerpt.into(),
        url: None,
        spans: "[]".into(),
        explanation: "test".into(),
        screenshot: None,
        screenshot_withheld: false,
        repeats: 1,
    };
    let amy = store
        .insert_alert(&NewAlert {
            school: "oak".into(),
            person: "amy".into(),
            category: "Vulnerable person".into(),
            level: 5,
            due_at: Some(now),
            first: occ("a message about pills", 5),
        })
        .await
        .unwrap();
    store
        .insert_alert(&NewAlert {
            school: "oak".into(),
            person: "ben".into(),
            category: "Bullying/Violence".into(),
            level: 3,
            due_at: None,
            first: occ("a message about a fight", 3),
        })
        .await
        .unwrap();
    let incident = NewIncident { school: "oak", person: Some("amy"), alert: Some(amy), title: "Amy at risk", kind: Kind::Safeguarding, about_head: false };
    let id = store.raise_incident(&dsl, &incident, now).await.unwrap().expect("raised");
    assert!(store.incident_action(&dsl, id, "Spoke to Amy and her parents", now).await.unwrap());
    let evidence = b.data().join("evidence");
    std::fs::create_dir_all(&evidence).unwrap();
    for (name, words) in [("chat.txt", &b"the chat log the pupil showed the DSL"[..]), ("screen.gif", b"GIF89a a picture of the message")] {
        let sum = sha(words);
        std::fs::write(evidence.join(&sum), store.sealer().unwrap().seal_file(words)).unwrap();
        let e = NewEvidence { filename: name, sha256: &sum, size: words.len() as i64, note: "shown to the DSL" };
        assert!(store.add_evidence(&dsl, id, &e, now).await.unwrap());
    }
    store.audit(now, "account:1", "alert.read", &format!("alert:{amy}"), "").await.unwrap();
    // The trust's own model head, kept beside the record.
    std::fs::create_dir_all(b.data().join("model")).unwrap();
    std::fs::write(b.data().join("model/head.bin"), b"the trust's own head").unwrap();
    store.close().await;
}

/// Each evidence file: its name, the SHA-256 of its bytes on disk, and of its contents opened with the key.
async fn evidence(b: &Machine) -> BTreeMap<String, (String, String)> {
    let store = b.store().await;
    let mut out = BTreeMap::new();
    for f in std::fs::read_dir(b.data().join("evidence")).unwrap() {
        let f = f.unwrap();
        let kept = std::fs::read(f.path()).unwrap();
        let plain = store.sealer().unwrap().open_file(&kept).expect("opened with the restored key");
        out.insert(f.file_name().to_string_lossy().into_owned(), (sha(&kept), sha(&plain)));
    }
    store.close().await;
    out
}

fn ok(o: &std::process::Output) -> String {
    assert!(o.status.success(), "{}\n{}", common::text(o), common::err(o));
    common::text(o)
}

fn round_trip(database: Option<String>) {
    let rt = rt();
    let b = Machine::new(database.clone());
    let pf = b.pass_file.to_str().unwrap().to_string();
    ok(&b.haven(
        &["admin", "user", "add", "--email", "dsl@oak.example", "--role", "dsl", "--school", "oak", "--name", "Sam Patel"],
        Some("a long enough password\n"),
    ));
    rt.block_on(fill(&b));

    // No passphrase, a short one: refused, nothing written.
    let out = b.dir.path().join("backups/oak.haven-backup");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let o = out.to_str().unwrap().to_string();
    let none = b.haven(&["backup", "--out", &o], None);
    assert_eq!(none.status.code(), Some(2));
    assert!(common::err(&none).contains("HAVEN_BACKUP_PASSPHRASE"), "{}", common::err(&none));
    let short = b.dir.path().join("short");
    std::fs::write(&short, "short\n").unwrap();
    assert!(common::err(&b.haven(&["backup", "--out", &o, "--passphrase-file", short.to_str().unwrap()], None)).contains("at least 12"));
    assert!(!out.exists());

    let made = ok(&b.haven(&["backup", "--out", &o, "--passphrase-file", &pf], None));
    assert!(made.contains("2 alerts, 1 incidents"), "{made}");
    assert!(made.contains("2 evidence files") && made.contains("1 key file(s)") && made.contains("the config file"), "{made}");
    assert!(made.contains("1 file(s) of the model head"), "{made}");
    let bytes = std::fs::read(&out).unwrap();
    assert!(bytes.starts_with(b"HAVEN-BACKUP\n"));
    for secret in [&b"pills"[..], b"Amy at risk", b"dsl@oak.example", b"haven-key-v1"] {
        assert!(!bytes.windows(secret.len()).any(|w| w == secret), "{} is in the clear", String::from_utf8_lossy(secret));
    }
    assert!(b.haven(&["backup", "--out", &o, "--passphrase-file", &pf], None).status.code() == Some(2), "never over an existing file");

    // What the record holds now (with the backup's own audit entry), row by row.
    let before = rt.block_on(async { haven_store::backup::dump(&b.store().await).await.unwrap() });
    assert_eq!(before["alerts"].len(), 2);
    assert_eq!(before["incidents"].len(), 1);
    assert_eq!(before["evidence"].len(), 2, "{:?}", before.keys());
    assert!(before["audit"].iter().any(|r| r.iter().any(|v| v == "backup.write")), "the backup is audited");
    let files_before = rt.block_on(evidence(&b));
    assert_eq!(files_before.len(), 2);
    for (name, (_, plain)) in &files_before {
        assert_eq!(name, plain, "evidence is kept by the SHA-256 of its contents");
    }

    // The machine is lost: data folder, key folder, database and config.
    std::fs::remove_dir_all(b.data()).unwrap();
    std::fs::remove_dir_all(b.keys()).unwrap();
    if let Some(url) = &database {
        rt.block_on(haven_store::backup::testing::recreate_postgres(url));
    }
    std::fs::remove_file(&b.config).unwrap();

    // A wrong passphrase, a damaged file: refused, nothing written.
    let wrong = b.dir.path().join("wrong");
    std::fs::write(&wrong, "not the passphrase at all\n").unwrap();
    let refused = b.haven(&["restore", &o, "--passphrase-file", wrong.to_str().unwrap()], None);
    assert_eq!(refused.status.code(), Some(2));
    assert!(common::err(&refused).contains("passphrase does not open"), "{}", common::err(&refused));
    let mut damaged = bytes.clone();
    let at = damaged.len() - 40;
    damaged[at] ^= 0x55;
    let bad = b.dir.path().join("damaged.haven-backup");
    std::fs::write(&bad, &damaged).unwrap();
    let refused = b.haven(&["restore", bad.to_str().unwrap(), "--passphrase-file", &pf], None);
    assert!(common::err(&refused).contains("damaged"), "{}", common::err(&refused));
    assert!(!b.data().join("haven.db").exists() && !b.keys().exists() && !b.config.exists(), "nothing written");

    // Restored onto the new machine: config, key, evidence and record.
    let restored = ok(&b.haven(&["restore", &o, "--passphrase-file", &pf], None));
    assert!(restored.contains("2 alerts, 1 incidents") && restored.contains("row counts and evidence SHA-256 checked"), "{restored}");
    assert!(restored.contains("config written to"), "{restored}");
    assert_eq!(std::fs::read_to_string(&b.config).unwrap(), config_text(database.as_deref()));

    let mut after = rt.block_on(async { haven_store::backup::dump(&b.store().await).await.unwrap() });
    let audit = after.get_mut("audit").unwrap();
    let n = audit.len();
    audit.retain(|r| !r.iter().any(|v| v == "backup.restore"));
    assert_eq!(n, audit.len() + 1, "the restore is audited once");
    assert_eq!(after, before, "the same alerts, incidents, evidence rows and audit log");
    assert_eq!(rt.block_on(evidence(&b)), files_before, "the same evidence, opened with the restored key");
    assert_eq!(std::fs::read(b.data().join("model/head.bin")).unwrap(), b"the trust's own head");

    // The restored record is in use: new rows follow the restored ones.
    ok(&b.haven(&["admin", "audit", "--limit", "3"], None));
    let listed = ok(&b.haven(&["admin", "user", "list"], None));
    assert!(listed.contains("dsl@oak.example dsl oak"), "{listed}");

    // Over a record that is in use: refused unless --replace.
    let again = b.haven(&["restore", &o, "--passphrase-file", &pf], None);
    assert_eq!(again.status.code(), Some(2));
    assert!(common::err(&again).contains("--replace"), "{}", common::err(&again));
    let replaced = ok(&b.haven(&["restore", &o, "--passphrase-file", &pf, "--replace"], None));
    assert!(replaced.contains("set aside (not deleted)"), "{replaced}");
    let mut again = rt.block_on(async { haven_store::backup::dump(&b.store().await).await.unwrap() });
    again.get_mut("audit").unwrap().retain(|r| !r.iter().any(|v| v == "backup.restore"));
    assert_eq!(again, before);
}

#[test]
fn backup_wipe_restore_on_sqlite() {
    round_trip(None);
}

#[test]
fn backup_wipe_restore_on_postgres() {
    let Ok(server) = std::env::var("HAVEN_TEST_POSTGRES") else {
        eprintln!("skipping: HAVEN_TEST_POSTGRES is not set");
        return;
    };
    let url = rt().block_on(haven_store::backup::testing::fresh_postgres_url(&server));
    round_trip(Some(url));
}

#[test]
fn a_backup_of_nothing_is_refused_with_the_fix() {
    let b = Machine::new(None);
    let o = b.dir.path().join("x.haven-backup");
    let r = b.haven(&["backup", "--out", o.to_str().unwrap(), "--passphrase-file", b.pass_file.to_str().unwrap()], None);
    assert_eq!(r.status.code(), Some(2));
    assert!(common::err(&r).contains("--data"), "{}", common::err(&r));
}
