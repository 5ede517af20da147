//! `haven admin account add` for the IT lead, with a display name.

mod common;

#[test]
fn an_it_lead_is_added_by_name_with_a_second_factor() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let add = common::run(
        &[
            "admin",
            "--data",
            d,
            "account",
            "add",
            "--email",
            "it.lead@riverside.example",
            "--role",
            "it-lead",
            "--school",
            "riverside-academy",
            "--name",
            "Jo Lee",
        ],
        Some("a long enough password\n"),
    );
    assert!(add.status.success(), "{}", common::err(&add));
    let out = common::text(&add);
    assert!(out.contains("added it.lead@riverside.example (it-lead at riverside-academy)"), "{out}");
    assert!(out.contains("totp-secret "), "the IT lead reads staff alerts, so gives a second factor: {out}");
    let audit = common::text(&common::run(&["admin", "--data", d, "audit"], None));
    assert!(audit.contains("account.name") && audit.contains("Jo Lee"), "{audit}");
    let bad = common::run(
        &["admin", "--data", d, "user", "add", "--email", "x@riverside.example", "--role", "it_lead", "--school", "riverside-academy"],
        Some("a long enough password\n"),
    );
    assert!(common::err(&bad).contains("it-lead"), "names the roles: {}", common::err(&bad));
}
