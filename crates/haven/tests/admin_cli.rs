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
