//! Config validation: a good config loads; every problem is reported with its line.

use std::path::Path;

use crate::Config;
use haven_policy::model::Scope;

const GOOD: &str = r#"
trust = "Test Trust"

[[school]]
id = "a"
name = "School A"
[school.calendar]
terms = [{ start = "2026-09-01", end = "2026-12-18" }]
closures = [{ start = "2026-10-26", end = "2026-10-30" }]

[[group]]
id = "pupils"
[[group]]
id = "staff"

[[policy]]
id = "pupils"
block = ["gambling", "adult"]
allow_sites = ["bbc.co.uk/bitesize"]
block_sites = ["example.com/games"]
[[policy]]
id = "staff"
block = ["csam"]

[[user]]
id = "p1"
group = "pupils"
school = "a"

[[window]]
name = "nights"
groups = ["pupils"]
from = "20:00"
to = "07:30"
block = ["*"]

[[allowance]]
id = "lesson"
group = "pupils"
sites = ["youtube.com"]
until = "2026-12-01T11:00"
reason = "lesson"
"#;

fn parse(text: &str) -> Result<Config, crate::ConfigError> {
    Config::parse(text, Path::new("/tmp/haven.toml"))
}

#[test]
fn a_good_config_loads() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.policy.groups.len(), 2);
    assert_eq!(c.policy.user("P1"), Some(0));
    assert_eq!(c.index_path, Path::new("/tmp/haven-data/lists.havenidx"));
    // School time: 11:00 GMT on 1 December.
    assert_eq!(c.policy.allowances[0].until.to_string(), "2026-12-01T11:00:00Z");
}

#[test]
fn every_problem_is_listed_with_its_line_and_a_hint() {
    let bad = GOOD
        .replace(r#"block = ["gambling", "adult"]"#, r#"block = ["gambleing", "adult"]"#)
        .replace(
            r#"group = "pupils"
school = "a""#,
            r#"group = "pupils"
school = "b""#,
        )
        .replace(r#"from = "20:00""#, r#"from = "8pm""#);
    let e = parse(&bad).unwrap_err();
    let lines: Vec<(usize, &str)> = e.problems.iter().map(|p| (p.line, p.message.as_str())).collect();
    assert_eq!(e.problems.len(), 3, "{e}");
    assert_eq!(lines[0], (18, "unknown category \"gambleing\""));
    assert!(e.problems[0].hint.as_deref().unwrap().contains("did you mean \"gambling\""));
    assert_eq!(lines[1], (28, "unknown school \"b\""));
    assert_eq!(lines[2].0, 33);
    assert!(lines[2].1.contains("not a time of day"));
    let text = e.to_string();
    assert!(text.contains("/tmp/haven.toml:18: unknown category"), "{text}");
    assert!(text.contains("nothing was applied"));
}

#[test]
fn syntax_and_unknown_keys_name_their_line() {
    let e = parse("trust = \"x\"\n\n[[group]]\nid = \"a\"\npolicy_typo = \"b\"\n").unwrap_err();
    assert_eq!(e.problems.len(), 1);
    assert_eq!(e.problems[0].line, 5, "{e}");
    assert!(e.problems[0].message.contains("unknown field"));
    let e = parse("trust = \"x\"\n[[group]\n").unwrap_err();
    assert_eq!(e.problems[0].line, 2, "{e}");
}

#[test]
fn one_blanket_profile_is_refused() {
    let text = GOOD.replace("[[group]]\nid = \"staff\"", "[[group]]\nid = \"staff\"\npolicy = \"pupils\"");
    let e = parse(&text).unwrap_err();
    assert!(e.to_string().contains("every group uses the same policy"), "{e}");
}

#[test]
fn illegal_content_cannot_be_allowed() {
    let text = GOOD.replace("sites = [\"youtube.com\"]", "sites = [\"youtube.com\"]\ncategories = [\"csam\"]");
    let e = parse(&text).unwrap_err();
    assert!(e.to_string().contains("cannot allow illegal content"), "{e}");
}

#[test]
fn illegal_content_in_an_allow_or_unblock_is_an_error() {
    let allowed = GOOD.replace("id = \"staff\"\nblock = [\"csam\"]", "id = \"staff\"\nallow = [\"terrorism\"]");
    let e = parse(&allowed).unwrap_err();
    assert_eq!(e.problems.len(), 1, "{e}");
    assert!(e.problems[0].message.contains("policy \"staff\" allows \"terrorism\""), "{e}");
    assert!(e.problems[0].hint.as_deref().unwrap().contains("remove \"terrorism\" from `allow`"), "{e}");
    let unblocked = format!("{GOOD}\n[[override]]\nschool = \"a\"\nunblock = [\"gambling\", \"csam\"]\n");
    let e = parse(&unblocked).unwrap_err();
    assert_eq!(e.problems.len(), 1, "{e}");
    assert!(e.problems[0].message.contains("unblocks \"csam\""), "{e}");
    assert_eq!(e.problems[0].line, unblocked.lines().count(), "the line of the unblock: {e}");
    let excepted = GOOD.replace("block = [\"*\"]", "block = [\"*\"]\nexcept = [\"csam\"]");
    let e = parse(&excepted).unwrap_err();
    assert!(e.to_string().contains("window \"nights\" exempts \"csam\""), "{e}");
}

/// A config whose only list is an illegal-content one, as `list` describes it.
fn with_illegal_list(dir: &Path, list: &str) -> Result<Config, crate::ConfigError> {
    let text = format!("{GOOD}\n[[list]]\nname = \"iwf\"\nformat = \"domains\"\ncategory = \"csam\"\n{list}\n");
    let path = dir.join("haven.toml");
    std::fs::write(&path, &text).unwrap();
    Config::load(&path)
}

#[test]
fn an_illegal_content_list_cannot_be_optional_missing_or_empty() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("iwf.txt"), "iwf-test.example\n").unwrap();
    with_illegal_list(d, "path = \"iwf.txt\"").unwrap();
    let e = with_illegal_list(d, "path = \"iwf.txt\"\noptional = true").unwrap_err();
    assert!(e.to_string().contains("list \"iwf\" holds illegal content (IWF, CTIRU) and cannot be optional"), "{e}");
    assert!(e.to_string().contains("remove `optional = true`"), "{e}");
    let e = with_illegal_list(d, "path = \"gone.txt\"\noptional = true").unwrap_err();
    assert!(e.to_string().contains("gone.txt does not exist"), "missing is an error, not a warning: {e}");
    assert!(e.to_string().contains("must be present"), "{e}");
    std::fs::write(d.join("empty.txt"), "# nothing yet\n\n").unwrap();
    let e = with_illegal_list(d, "path = \"empty.txt\"").unwrap_err();
    assert!(e.to_string().contains("holds illegal content (IWF, CTIRU) but has no entries"), "{e}");
    assert!(e.problems[0].line > 0, "{e}");
    // An ordinary optional list is still skipped with a warning.
    let text = format!("{GOOD}\n[[list]]\nname = \"extra\"\nformat = \"domains\"\ncategory = \"gambling\"\npath = \"none.txt\"\noptional = true\n");
    std::fs::write(d.join("haven.toml"), &text).unwrap();
    assert_eq!(Config::load(&d.join("haven.toml")).unwrap().warnings.len(), 1);
}

#[test]
fn proxy_limits_and_internal_ranges() {
    let text = format!(
        "{GOOD}\n[proxy]\nlisten = [\"127.0.0.1:3129\"]\nallow_internal = [\"10.0.0.0/8\", \"192.168.1.7\"]\nmax_connections = 50\nheader_timeout_s = 5\nbody_timeout_s = 7\ntunnel_idle_timeout_s = 90\n[proxy.hosts]\n\"intranet.test\" = \"10.1.2.3\"\n\"nas.test\" = \"172.16.0.9\"\n"
    );
    let c = parse(&text).unwrap();
    let p = &c.proxy;
    assert_eq!(p.allow_internal, vec!["10.0.0.0/8".parse().unwrap(), "192.168.1.7/32".parse().unwrap()]);
    assert_eq!((p.max_connections, p.header_timeout_s, p.body_timeout_s, p.tunnel_idle_timeout_s), (50, 5, 7, 90));
    assert!(p.haven_listeners.contains(&"127.0.0.1:3129".parse().unwrap()) && p.haven_listeners.contains(&"127.0.0.1:8080".parse().unwrap()));
    assert_eq!(c.warnings.len(), 1, "only the host outside allow_internal: {:?}", c.warnings);
    assert!(c.warnings[0].contains("nas.test") && c.warnings[0].contains("allow_internal"), "{:?}", c.warnings);
    let defaults = parse(GOOD).unwrap().proxy;
    assert!(defaults.allow_internal.is_empty());
    assert_eq!(defaults.max_connections, 10_000);
    let e = parse(&text.replace("\"10.0.0.0/8\"", "\"10.0.0.0/33\"")).unwrap_err();
    assert!(e.to_string().contains("allow_internal: \"10.0.0.0/33\" is not an address range"), "{e}");
}

#[test]
fn internal_addresses() {
    use crate::is_internal_address as internal;
    for a in [
        "127.0.0.1",
        "127.1.2.3",
        "10.9.8.7",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.0.1",
        "100.64.0.1",
        "100.127.255.254",
        "169.254.169.254",
        "0.0.0.0",
        "224.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fd12::1",
        "fc00::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "64:ff9b::a00:1",
        "2002:7f00:1::1",
        "::127.0.0.1",
    ] {
        assert!(internal(a.parse().unwrap()), "{a} is internal");
    }
    for a in ["8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1", "192.169.0.1", "2a00:1450::1", "::ffff:8.8.8.8", "2002:808:808::1", "64:ff9b::808:808"] {
        assert!(!internal(a.parse().unwrap()), "{a} is public");
    }
}

#[test]
fn a_site_both_allowed_and_blocked_is_an_error() {
    let text = GOOD.replace("allow_sites = [\"bbc.co.uk/bitesize\"]", "allow_sites = [\"bbc.co.uk/bitesize\", \"example.com/games/\"]");
    let e = parse(&text).unwrap_err();
    assert!(e.to_string().contains("both allowed and blocked"), "{e}");
}

#[test]
fn csv_users_import_and_unmapped_rows_are_reported_with_their_lines() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mis.csv"), "UPN,Year\nx1,Year 7\nx2,Year 9\nx3,Year 7\nx4,Year 9\n").unwrap();
    let import =
        "\n[[user_import]]\npath = \"mis.csv\"\nuser_column = \"UPN\"\ngroup_column = \"Year\"\nschool = \"a\"\ngroups = { \"Year 7\" = \"pupils\" }\n";
    let path = dir.path().join("haven.toml");
    let e = Config::parse(&format!("{GOOD}{import}"), &path).unwrap_err();
    assert_eq!(e.problems.len(), 1, "{e}");
    assert!(e.problems[0].file.ends_with("mis.csv"));
    assert_eq!(e.problems[0].line, 3);
    assert!(e.problems[0].message.contains("lines 3, 5"), "{e}");
    let ok = import.replace("groups = { \"Year 7\" = \"pupils\" }", "groups = { \"Year 7\" = \"pupils\", \"Year 9\" = \"pupils\" }");
    let c = Config::parse(&format!("{GOOD}{ok}"), &path).unwrap();
    assert_eq!(c.policy.users.len(), 5);
    let x2 = c.policy.user("x2").unwrap();
    assert_eq!(c.policy.users[x2].school, Some(0));
    let bad_col = import.replace("\"Year\"", "\"YearGroup\"");
    let e = Config::parse(&format!("{GOOD}{bad_col}"), &path).unwrap_err();
    assert!(e.to_string().contains("its columns are: UPN, Year"), "{e}");
}

#[test]
fn the_demo_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/haven.toml");
    let c = Config::load(&path).unwrap();
    for g in ["primary", "secondary", "sixth-form", "staff", "guest", "shared-device"] {
        assert!(c.policy.group(g).is_some(), "{g}");
    }
    assert!(c.policy.users.len() >= 9);
}

#[test]
fn alert_thresholds_and_the_safeguarding_sections() {
    let text = GOOD.replace("name = \"School A\"\n", "name = \"School A\"\nalert_thresholds = { \"Offensive user\" = 3 }\n")
        + "[web]\nlisten = [\"127.0.0.1:9090\"]\ndemo = true\n[notify]\nsmtp = \"smtp://127.0.0.1:2525\"\nescalate_after_mins = 5\n";
    let c = parse(&text).unwrap();
    assert_eq!(c.alert_thresholds["a"], vec![("Offensive user".to_string(), 3)]);
    assert_eq!(c.web_listen[0].port(), 9090);
    assert!(c.demo);
    assert_eq!((c.notify.smtp.as_deref(), c.notify.escalate_after_mins), (Some("smtp://127.0.0.1:2525"), 5));
    let bad = GOOD.replace("name = \"School A\"\n", "name = \"School A\"\nalert_thresholds = { \"Swearing\" = 3 }\n");
    let e = parse(&bad).unwrap_err().to_string();
    assert!(e.contains("not a category of concern") && e.contains("Bullying/Violence"), "{e}");
}

#[test]
fn the_trusts_own_lexicons_are_found_relative_to_the_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("local.toml"), "language = \"en\"\n[bullying]\n\"proper melt\" = 2\n").unwrap();
    let path = dir.path().join("haven.toml");
    let c = Config::parse(&format!("{GOOD}\n[monitoring]\nlexicons = [\"local.toml\"]\n"), &path).unwrap();
    assert_eq!(c.lexicons, vec![dir.path().join("local.toml")]);
    let e = Config::parse(&format!("{GOOD}\n[monitoring]\nlexicons = [\"missing.toml\"]\n"), &path).unwrap_err();
    assert_eq!(e.problems.len(), 1, "{e}");
    assert!(e.to_string().contains("missing.toml") && e.to_string().contains("[monitoring] lexicons"), "{e}");
    // A school's own profile: its lexicons beside its thresholds.
    std::fs::write(dir.path().join("primary.toml"), "language = \"en\"\n[offensive]\n\"poo head\" = 1\n").unwrap();
    let own = GOOD.replace("name = \"School A\"\n", "name = \"School A\"\nlexicons = [\"primary.toml\"]\n");
    let c = Config::parse(&own, &path).unwrap();
    assert_eq!(c.school_lexicons["a"], vec![dir.path().join("primary.toml")]);
    assert!(c.lexicons.is_empty());
    let e = Config::parse(&own.replace("primary.toml", "nope.toml"), &path).unwrap_err().to_string();
    assert!(e.contains("nope.toml") && e.contains("the school's lexicons"), "{e}");
}

#[test]
fn classes_come_from_the_mis_and_an_allowance_can_be_for_one() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mis.csv"), "UPN,Year,Classes\nx1,Year 7,7RA; 7MA2\nx2,Year 7,7RB\n").unwrap();
    let import = "\n[[user_import]]\npath = \"mis.csv\"\nuser_column = \"UPN\"\ngroup_column = \"Year\"\nclass_column = \"Classes\"\nschool = \"a\"\n\
                  groups = { \"Year 7\" = \"pupils\" }\n";
    let allowance = "\n[[allowance]]\nid = \"class-lesson\"\nclass = \"7ra\"\nschool = \"a\"\nsites = [\"games.example\"]\nuntil = \"2030-01-01T10:00\"\nreason = \"Game design\"\n";
    let path = dir.path().join("haven.toml");
    let c = Config::parse(&format!("{GOOD}{import}{allowance}"), &path).unwrap();
    let x1 = c.policy.user("x1").unwrap();
    let names: Vec<&str> = c.policy.users[x1].classes.iter().map(|i| c.policy.classes[*i].id.as_str()).collect();
    assert_eq!(names, ["7RA", "7MA2"]);
    let class = c.policy.class(0, "7RA").unwrap();
    assert!(c.policy.allowances.iter().any(|a| a.scope == Scope::Class(class)), "the allowance is for class 7RA");
    let unknown = allowance.replace("7ra", "9ZZ");
    let e = Config::parse(&format!("{GOOD}{import}{unknown}"), &path).unwrap_err();
    assert!(e.to_string().contains("no class \"9ZZ\""), "{e}");
    let no_school = allowance.replace("school = \"a\"\n", "");
    let e = Config::parse(&format!("{GOOD}{import}{no_school}"), &path).unwrap_err();
    assert!(e.to_string().contains("say which `school`"), "{e}");
}

#[test]
fn people_get_names_year_and_form_from_the_mis_and_user_tables() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mis.csv"), "UPN,Forename,Surname,Year,Reg,Classes\nx1,Amy,Pupil,Year 7,7RA,7RA; 7MA2\nx2,,,Year 7,,\n").unwrap();
    let import = "\n[[user_import]]\npath = \"mis.csv\"\nuser_column = \"UPN\"\ngroup_column = \"Year\"\nclass_column = \"Classes\"\nschool = \"a\"\n\
                  name_columns = [\"Forename\", \"Surname\"]\nyear_column = \"Year\"\nform_column = \"Reg\"\ngroups = { \"Year 7\" = \"pupils\" }\n";
    let path = dir.path().join("haven.toml");
    let named = GOOD.replace("id = \"p1\"\n", "id = \"p1\"\nname = \"Pat One\"\nyear = \"Year 9\"\nform = \"9A\"\n");
    let c = Config::parse(&format!("{named}{import}"), &path).unwrap();
    let x1 = c.people.iter().find(|p| p.login == "x1").unwrap();
    assert_eq!(
        (x1.name.as_deref(), x1.year.as_deref(), x1.form.as_deref(), x1.school.as_deref(), x1.classes.len(), x1.staff),
        (Some("Amy Pupil"), Some("Year 7"), Some("7RA"), Some("a"), 2, false)
    );
    let x2 = c.people.iter().find(|p| p.login == "x2").unwrap();
    assert_eq!((x2.name.as_deref(), x2.form.as_deref()), (None, None), "empty cells are no name");
    let p1 = c.people.iter().find(|p| p.login == "p1").unwrap();
    assert_eq!((p1.name.as_deref(), p1.form.as_deref()), (Some("Pat One"), Some("9A")));
    let staff = GOOD.replace("id = \"p1\"\ngroup = \"pupils\"\n", "id = \"p1\"\ngroup = \"staff\"\n");
    assert!(parse(&staff).unwrap().people[0].staff, "the staff group's people are staff");
    let e = Config::parse(&format!("{GOOD}{}", import.replace("\"Reg\"", "\"Form\"")), &path).unwrap_err();
    assert!(e.to_string().contains("no column \"Form\""), "{e}");
    let e = parse(&GOOD.replace("id = \"p1\"\n", "id = \"p1\"\nkind = \"teacher\"\n")).unwrap_err();
    assert!(e.to_string().contains("neither \"pupil\" nor \"staff\""), "{e}");
}

#[test]
fn the_lado_is_the_trusts_or_the_schools_own_and_a_bad_one_is_named() {
    let text = GOOD.replace("name = \"School A\"\n", "name = \"School A\"\nlado = { name = \"Elm LADO\", email = \"lado@elm.example\" }\n")
        + "[[school]]\nid = \"b\"\nname = \"School B\"\n[safeguarding]\nlado = { name = \"Demo LADO\", phone = \"01632 960123\", email = \"lado@example.org\" }\n";
    let c = parse(&text).unwrap();
    let b = c.lado.for_school("b").unwrap();
    assert_eq!((b.name.as_str(), b.phone.as_deref(), b.email.as_deref()), ("Demo LADO", Some("01632 960123"), Some("lado@example.org")));
    let a = c.lado.for_school("a").unwrap();
    assert_eq!((a.name.as_str(), a.phone.as_deref()), ("Elm LADO", None), "the school's own wins");
    assert!(parse(GOOD).unwrap().lado.for_school("a").is_none(), "none configured");

    let bad = GOOD.to_string() + "[safeguarding]\nlado = { phone = \"call the council\" }\n";
    let e = parse(&bad).unwrap_err().to_string();
    assert!(e.contains("[safeguarding] lado needs a name"), "{e}");
    assert!(e.contains("[safeguarding] lado phone \"call the council\" is not a telephone number"), "{e}");
    let bad = GOOD.replace("name = \"School A\"\n", "name = \"School A\"\nlado = { name = \"X\", email = \"nobody\" }\n");
    let e = parse(&bad).unwrap_err().to_string();
    assert!(e.contains("[[school]] \"a\" lado email \"nobody\" is not an e-mail address"), "{e}");
    let bad = GOOD.to_string() + "[safeguarding]\nlado = { name = \"X\" }\n";
    assert!(parse(&bad).unwrap_err().to_string().contains("[safeguarding] lado has no way to reach the LADO"));
    let bad = GOOD.to_string() + "[safeguarding]\nlado = { name = \"X\", fax = \"1\" }\n";
    assert!(parse(&bad).unwrap_err().to_string().contains("unknown field `fax`"));
}
