//! `haven admin` against a data folder, as a script would use it.

mod common;

#[test]
fn admin_commands_set_up_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    // The embedded demo configuration, its data kept in the temporary folder.
    let schools = common::run(&["admin", "--data", d, "school", "list"], None);
    assert!(schools.status.success(), "{}", common::err(&schools));
    let lines: Vec<String> = common::text(&schools).lines().map(str::to_string).collect();
    assert!(lines.iter().any(|l| l.starts_with("riverside-academy Riverside Academy")), "{lines:?}");
    assert!(data.join("haven.db").exists(), "the SQLite record is in --data");

    let user = common::run(
        &["admin", "--data", d, "user", "add", "--email", "dsl@riverside.example", "--role", "dsl", "--school", "riverside-academy"],
        Some("a long enough password\n"),
    );
    assert!(user.status.success(), "{}", common::err(&user));
    assert!(common::text(&user).contains("totp-secret "), "a DSL gets a second factor");
    let teacher = common::run(
        &["admin", "--data", d, "user", "add", "--email", "t@riverside.example", "--role", "teacher", "--school", "riverside-academy"],
        Some("a long enough password\n"),
    );
    assert!(!common::text(&teacher).contains("totp-secret"));
    let bad = common::run(
        &["admin", "--data", d, "user", "add", "--email", "x@riverside.example", "--role", "boss", "--school", "riverside-academy"],
        Some("a long enough password\n"),
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(common::err(&bad).contains("trust-safeguarding-lead"), "names the roles");
    let wrong_school = common::run(&["admin", "--data", d, "device", "add", "--school", "nowhere", "--name", "PC"], None);
    assert!(common::err(&wrong_school).contains("school list"), "{}", common::err(&wrong_school));

    let device = common::run(&["admin", "--data", d, "device", "add", "--school", "riverside-academy", "--name", "Library PC 3"], None);
    assert!(common::text(&device).trim().starts_with("hvd_"));
    let key = common::run(&["admin", "--data", d, "apikey", "add", "--email", "dsl@riverside.example"], None);
    assert!(common::text(&key).trim().starts_with("hvk_"));
    let oncall =
        common::run(&["admin", "--data", d, "oncall", "add", "--school", "riverside-academy", "--email", "dsl@riverside.example", "--priority", "1"], None);
    assert!(oncall.status.success(), "{}", common::err(&oncall));
    let hook =
        common::run(&["admin", "--data", d, "oncall", "add", "--school", "riverside-academy", "--webhook", "http://127.0.0.1:9/sms", "--priority", "2"], None);
    assert!(hook.status.success());
    let list = common::run(&["admin", "--data", d, "oncall", "list", "--school", "riverside-academy"], None);
    assert_eq!(common::text(&list).lines().count(), 2);
    let audit = common::run(&["admin", "--data", d, "audit"], None);
    assert!(common::text(&audit).contains("account.add") && common::text(&audit).contains("device.add"));
}

#[test]
fn leavers_keys_and_devices_are_taken_away_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let ok = |args: &[&str], stdin: Option<&str>| {
        let o = common::run(&[&["admin", "--data", d][..], args].concat(), stdin);
        assert!(o.status.success(), "{args:?}: {}", common::err(&o));
        common::text(&o)
    };
    let fails = |args: &[&str], stdin: Option<&str>| {
        let o = common::run(&[&["admin", "--data", d][..], args].concat(), stdin);
        assert_eq!(o.status.code(), Some(2), "{args:?} should fail");
        common::err(&o)
    };
    let school = ["--school", "riverside-academy"];
    ok(&[&["user", "add", "--email", "leaver@riverside.example", "--role", "dsl"][..], &school].concat(), Some("a long enough password\n"));
    ok(&[&["user", "add", "--email", "t@riverside.example", "--role", "teacher"][..], &school].concat(), Some("a long enough password\n"));
    let list = ok(&["user", "list"], None);
    assert!(list.lines().any(|l| l == "leaver@riverside.example dsl riverside-academy active"), "{list}");

    let disabled = ok(&["user", "disable", "--email", "leaver@riverside.example"], None);
    assert!(disabled.contains("signed out everywhere"), "{disabled}");
    assert!(ok(&["user", "list"], None).lines().any(|l| l == "leaver@riverside.example dsl riverside-academy disabled"));
    ok(&["user", "enable", "--email", "leaver@riverside.example"], None);
    assert!(fails(&["user", "disable", "--email", "nobody@riverside.example"], None).contains("haven admin user list"), "names the fix");
    assert!(fails(&["user", "reset-password", "--email", "t@riverside.example"], Some("short\n")).contains("at least 10 characters"));
    assert!(ok(&["user", "reset-password", "--email", "t@riverside.example"], Some("another long password\n")).contains("new password set"));
    let totp = ok(&["user", "reset-totp", "--email", "leaver@riverside.example"], None);
    assert!(totp.starts_with("totp-secret ") && totp.contains("otpauth://"), "{totp}");
    assert!(fails(&["user", "reset-totp", "--email", "t@riverside.example"], None).contains("without a second factor"));
    assert!(ok(&["user", "unlock", "--email", "t@riverside.example"], None).contains("unlocked"));

    // API keys expire and are revoked; devices are revoked.
    let key = ok(&["apikey", "add", "--email", "leaver@riverside.example", "--days", "30"], None);
    assert!(key.trim().starts_with("hvk_"));
    let keys = ok(&["apikey", "list"], None);
    let line = keys.lines().find(|l| l.contains("leaver@riverside.example")).expect("the key is listed");
    assert!(line.contains(" until ") && !line.contains(key.trim()), "never the key itself: {line}");
    let id = line.split(' ').next().unwrap().to_string();
    assert!(ok(&["apikey", "revoke", "--id", &id], None).contains("revoked"));
    assert!(ok(&["apikey", "list"], None).lines().any(|l| l.starts_with(&format!("{id} ")) && l.contains("revoked")));
    assert!(fails(&["apikey", "revoke", "--id", &id], None).contains("haven admin apikey list"), "once");
    assert!(fails(&["apikey", "add", "--email", "leaver@riverside.example", "--days", "0"], None).contains("--days"));
    ok(&["device", "add", "--school", "riverside-academy", "--name", "Lost laptop"], None);
    let devices = ok(&["device", "list"], None);
    let line = devices.lines().find(|l| l.contains("Lost laptop")).expect("the device is listed");
    let id = line.split(' ').next().unwrap().to_string();
    assert!(ok(&["device", "revoke", "--id", &id], None).contains("no longer sends"));
    assert!(ok(&["device", "list"], None).lines().any(|l| l.starts_with(&format!("{id} ")) && l.contains("revoked")));
    assert!(fails(&["device", "revoke", "--id", "999"], None).contains("haven admin device list"));

    let audit = ok(&["audit"], None);
    for action in ["account.disable", "account.enable", "account.reset-password", "account.reset-totp", "account.unlock", "apikey.revoke", "device.revoke"] {
        assert!(audit.contains(action), "{action} audited:\n{audit}");
    }
}

#[test]
fn the_record_is_owner_only_and_its_secrets_sealed_with_a_key_kept_apart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let o = common::run(
        &["admin", "--data", d, "user", "add", "--email", "dsl@riverside.example", "--role", "dsl", "--school", "riverside-academy"],
        Some("a long enough password\n"),
    );
    assert!(o.status.success(), "{}", common::err(&o));
    let secret = common::text(&o).lines().find_map(|l| l.strip_prefix("totp-secret ")).unwrap().to_string();
    let key = dir.path().join("data-keys").join("haven.key");
    assert!(key.exists(), "the key is beside the data folder, not in it");
    assert!(!data.join("haven.key").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700, "the data folder");
        assert_eq!(mode(&data.join("haven.db")), 0o600, "the database");
        assert_eq!(mode(&key), 0o600, "the key");
        assert_eq!(mode(key.parent().unwrap()), 0o700, "the key folder");
    }
    let mut db = std::fs::read(data.join("haven.db")).unwrap();
    db.extend(std::fs::read(data.join("haven.db-wal")).unwrap_or_default());
    assert!(!db.windows(secret.len()).any(|w| w == secret.as_bytes()), "the second-factor secret is not in the database in the clear");
}

#[test]
fn the_demo_credentials_can_be_shown_again_and_reset() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let first = common::run(&["admin", "--data", d, "demo-credentials"], None);
    assert!(first.status.success(), "{}", common::err(&first));
    let text = common::text(&first);
    assert!(text.contains("dsl@demo.haven.invalid / demo-dsl-password") && text.contains("teacher@demo.haven.invalid / demo-teacher-password"), "{text}");
    let secret = text.lines().find_map(|l| l.trim().strip_prefix("second factor (TOTP) secret ")).expect("the TOTP secret").to_string();
    let again = common::text(&common::run(&["admin", "--data", d, "demo-credentials"], None));
    assert!(again.contains(&secret), "the same secret, shown again");
    let reset = common::run(&["admin", "--data", d, "demo-credentials", "--reset"], None);
    let reset_text = common::text(&reset);
    assert!(reset.status.success() && !reset_text.contains(&secret) && reset_text.contains("ingest token hvd_"), "{reset_text}");
    let not_demo = dir.path().join("school.toml");
    std::fs::write(
        &not_demo,
        "trust = \"Oak Trust\"\ntimezone = \"Europe/London\"\n[data]\ndir = \"school-data\"\nkey_dir = \"vault/keys\"\n\
         [[school]]\nid = \"oak\"\nname = \"Oak\"\n[[group]]\nid = \"staff\"\nname = \"Staff\"\n[[policy]]\nid = \"staff\"\nblock = []\n",
    )
    .unwrap();
    let refused = common::run(&["admin", "--config", not_demo.to_str().unwrap(), "demo-credentials"], None);
    assert_eq!(refused.status.code(), Some(2));
    assert!(common::err(&refused).contains("not demo data"), "{}", common::err(&refused));
    assert!(dir.path().join("vault/keys/haven.key").exists(), "[data] key_dir says where the key is kept");
    assert!(!dir.path().join("school-data-keys").exists());
}
