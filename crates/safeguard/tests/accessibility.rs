//! Every page of the web app in headless Chromium at a desktop size and two
//! phone sizes (390×844, 360×740): axe-core (WCAG 2.0–2.2 A and AA rules)
//! finds no violation, a phone never scrolls sideways, and the queue and an
//! alert can be worked with the keyboard alone, with a visible focus.
//! Screenshots of each page at each size go to `$HAVEN_SCREENSHOTS`
//! (default `target/screenshots/`).
//!
//! axe-core is vendored in `tests/axe/` (see its README) so the test needs
//! no network. Needs `chromedriver` and `chromium`; without them the test
//! says so and passes.

use std::fmt::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

use fantoccini::Locator;
use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use haven_store::alerts::{NewAlert, NewOccurrence};
use haven_store::changes::NewChange;
use haven_store::incidents::{Kind, NewEvidence, NewIncident};
use haven_store::{Role, Store};

mod common;
use common::sign_in_with;

const AXE: &str = include_str!("axe/axe.min.js");

/// Window sizes: desktop, then the two phones.
const SIZES: [(u32, u32); 3] = [(1280, 800), (390, 844), (360, 740)];

const CONFIG: &str = r#"
trust = "Oakwood Learning Trust"
[filtering]
approvers = ["dsl", "it-technician"]
[[school]]
id = "oak"
name = "Oak Academy"
[[group]]
id = "secondary"
name = "Secondary pupils"
[[group]]
id = "staff"
name = "Staff"
[[policy]]
id = "secondary"
block = ["games", "gambling"]
allow_sites = ["bbc.co.uk/bitesize"]
[[policy]]
id = "staff"
block = ["csam"]
[[user_import]]
path = "mis.csv"
user_column = "UPN"
group_column = "Year"
class_column = "Classes"
name_columns = ["Forename", "Surname"]
year_column = "Year"
form_column = "Reg"
school = "oak"
groups = { "Year 9" = "secondary", "Year 10" = "secondary", "Year 11" = "secondary" }
[[user_import]]
path = "staff.csv"
user_column = "Login"
group_column = "Role"
name_columns = ["Name"]
kind = "staff"
school = "oak"
groups = { "Teacher" = "staff" }
"#;

const MIS: &str = "UPN,Forename,Surname,Year,Reg,Classes\n\
amy.pupil,Amy,Pupil-Fitzwilliam,Year 10,10GH,10GH; 10MA1\n\
ben.pupil,Ben,Okonkwo,Year 9,9RA,9RA\n\
cara.pupil,Cara,Nowak,Year 11,11JB,11JB\n\
dev.pupil,Dev,Sharma,Year 10,10GH,10GH\n\
eve.pupil,Eve,Lindqvist-Oyelaran,Year 9,9RA,9RA\n";

const STAFF: &str = "Login,Name,Role\nj.smith,John Smith,Teacher\n";

fn alert(person: &str, category: &str, level: u8, text: &str, url: Option<&str>) -> NewAlert {
    let at = jiff::Timestamp::now();
    NewAlert {
        school: "oak".into(),
        person: person.into(),
        category: category.into(),
        level,
        // Some overdue, some not: both show on the queue.
        due_at: Some(if level >= 4 {
            at.checked_sub(jiff::SignedDuration::from_mins(30)).unwrap()
        } else {
            at.checked_add(jiff::SignedDuration::from_hours(24)).unwrap()
        }),
        first: NewOccurrence {
            at,
            level,
            source: "typed".into(),
            excerpt: text.into(),
            url: url.map(str::to_string),
            spans: format!("[[0,{}]]", text.find(' ').unwrap_or(text.len())),
            explanation: "Matched a phrase in the trust's lexicon.".into(),
            screenshot: None,
            screenshot_withheld: false,
            repeats: 1,
        },
    }
}

/// A page to check: who looks (an index into the sessions), and where.
struct Visit {
    who: usize,
    path: String,
}

fn screenshots() -> std::path::PathBuf {
    let d = std::env::var_os("HAVEN_SCREENSHOTS")
        .map_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots"), std::path::PathBuf::from);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A file name for a page.
fn slug(role: &str, path: &str) -> String {
    let p: String = path.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    format!("{role}{}", p.trim_end_matches('-'))
}

/// Puts a session cookie (`haven_session=…`) in the browser. Through the
/// page, as chromedriver refuses WebDriver cookies for an IP address.
async fn set_session(c: &fantoccini::Client, cookie: &str) {
    if !cookie.is_empty() {
        c.execute("document.cookie = arguments[0] + '; path=/';", vec![serde_json::json!(cookie)]).await.unwrap();
    }
}

async fn press(c: &fantoccini::Client, key: Key) {
    let k: char = key.into();
    let keys = KeyActions::new("keyboard".into()).then(KeyAction::Down { value: k }).then(KeyAction::Up { value: k });
    c.perform_actions(keys).await.unwrap();
}

/// The focused element: its `href` or text, and its computed outline style.
async fn focused(c: &fantoccini::Client) -> (String, String, String) {
    let v = c
        .execute(
            "const e = document.activeElement; const s = getComputedStyle(e); \
             return [e.getAttribute('href') || '', (e.textContent || e.value || '').trim(), s.outlineStyle + ' ' + s.outlineWidth];",
            vec![],
        )
        .await
        .unwrap();
    let s = |i: usize| v[i].as_str().unwrap_or_default().to_string();
    (s(0), s(1), s(2))
}

/// Tabs forward until `want` holds of the focused element; asserts the
/// focus is visible on each stop.
async fn tab_to(c: &fantoccini::Client, want: impl Fn(&str, &str) -> bool) {
    for _ in 0..200 {
        press(c, Key::Tab).await;
        let (href, text, outline) = focused(c).await;
        if href.is_empty() && text.is_empty() {
            continue;
        }
        assert!(!outline.starts_with("none"), "the focus on {href:?} {text:?} is not visible ({outline})");
        if want(&href, &text) {
            return;
        }
    }
    panic!("the keyboard never reached what was wanted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_passes_axe_fits_a_phone_and_works_from_the_keyboard() {
    if Command::new("chromedriver").arg("--version").output().is_err() {
        eprintln!("skipping: chromedriver is not installed (Debian: apt-get install chromium chromium-driver)");
        return;
    }
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mis.csv"), MIS).unwrap();
    std::fs::write(dir.path().join("staff.csv"), STAFF).unwrap();
    let config = haven_config::Config::parse(CONFIG, &dir.path().join("haven.toml")).unwrap();
    let store = Store::open_dir(&dir.path().join("data")).await.unwrap();
    store.upsert_school("oak", "Oak Academy", false).await.unwrap();
    let now = jiff::Timestamp::now();

    // The people, as the MIS export names them.
    let rows: Vec<haven_store::directory::PersonRow> = config
        .people
        .iter()
        .map(|p| haven_store::directory::PersonRow {
            school: p.school.clone().unwrap_or_default(),
            login: p.login.clone(),
            display_name: p.name.clone(),
            year: p.year.clone(),
            form: p.form.clone(),
            classes: p.classes.clone(),
            kind: if p.staff { haven_store::directory::PersonKind::Staff } else { haven_store::directory::PersonKind::Pupil },
        })
        .collect();
    store.sync_people(None, &rows, now).await.unwrap();

    // Everyone who signs in, and their second factors.
    let accounts = [
        ("dsl", "dsl@oak.example", Role::Dsl, Some("oak")),
        ("tsl", "tsl@trust.example", Role::TrustSafeguardingLead, None),
        ("head", "head@oak.example", Role::Headteacher, Some("oak")),
        ("it", "it@oak.example", Role::ItTechnician, Some("oak")),
        ("teacher", "t@oak.example", Role::Teacher, Some("oak")),
        ("admin", "admin@trust.example", Role::TrustAdmin, None),
        ("chair", "chair@oak.example", Role::ChairOfGovernors, Some("oak")),
    ];
    let mut made = Vec::new();
    for (name, email, role, school) in accounts {
        let (account, totp) = store.add_account(email, role, school, &format!("{name} password 123"), now).await.unwrap();
        made.push((name, email, account, totp));
    }
    let dsl = made[0].2.clone();

    // Alerts at every level, one about a member of staff, and one for a login nobody knows.
    let long_url = "https://www.example-forum-with-a-very-long-name.example/threads/4417721/page-12?utm_source=share&utm_medium=ios_app&utm_campaign=very-long-campaign-name";
    let mut ids = Vec::new();
    for (person, category, level, text, url) in [
        ("amy.pupil", "Vulnerable person", 5, "i am going to kill myself tonight, i have the pills saved up", Some(long_url)),
        ("ben.pupil", "Bullying/Violence", 4, "meet at the shed after school, we'll batter him", None),
        ("cara.pupil", "Extremism", 3, "join us and fight the enemies of our people", None),
        ("dev.pupil", "Adult content", 2, "searching for adult sites on the library pc", Some("https://adult.example/")),
        ("eve.pupil", "Offensive language", 1, "swearing in a group chat about homework", None),
        ("j.smith", "Staff conduct", 4, "messages to a pupil's personal account late at night", None),
    ] {
        ids.push(store.insert_alert(&alert(person, category, level, text, url)).await.unwrap());
    }
    let mut service = haven_safeguard::Service::new(store.clone(), &config.policy);
    service.evidence_dir = dir.path().join("evidence");
    let mut settings = haven_safeguard::Settings::new(&config.policy);
    settings.approvers.clone_from(&config.approvers);
    service.reload_with_record(settings).await.unwrap();
    let (device, _) = store.add_device("oak", "Library PC 3", now).await.unwrap();
    let event: haven_safeguard::ingest::Event =
        serde_json::from_value(serde_json::json!({"person": "amy.pupi", "text": "nobody would miss me if i was gone, i want to die", "source": "chat"}))
            .unwrap();
    let unidentified = service.ingest(&device, &event, now).await.unwrap().alerts.first().map(|a| a.id).expect("an alert for an unknown login");
    service.report("oak", "ben.pupil", "Ben told me older boys are threatening him on Snapchat", "a parent, 07700 900123", now).await.unwrap();

    // An incident with evidence and actions.
    let incident = NewIncident {
        school: "oak",
        person: Some("amy.pupil"),
        alert: Some(ids[0]),
        title: "Amy: plan to end her life",
        kind: Kind::Safeguarding,
        about_head: false,
    };
    let incident = store.raise_incident(&dsl, &incident, now).await.unwrap().unwrap();
    let sha = haven_store::secrets::token_hash("notes");
    let evidence = NewEvidence {
        filename: "screen-notes-written-by-the-dsl-at-0910-on-the-library-pc.txt",
        sha256: &sha,
        size: 5,
        note: "DSL's notes of what was on screen",
    };
    store.add_evidence(&dsl, incident, &evidence, now).await.unwrap();
    store.incident_action(&dsl, incident, "Spoke to Amy with her form tutor; parents called; referred to CAMHS", now).await.unwrap();

    // A filtering change waiting for approval.
    let change = NewChange {
        school: "oak".into(),
        kind: "lesson".into(),
        scope: "class".into(),
        scope_id: Some("10GH".into()),
        verdict: Some("allow".into()),
        site: Some("games.example/design-a-level-tutorial".into()),
        category: None,
        reason: "Game design lesson".into(),
        starts_at: now,
        until: Some(now.checked_add(jiff::SignedDuration::from_hours(48)).unwrap()),
    };
    let change = store.add_filter_change(&change, "requested", "t@oak.example", now).await.unwrap();
    store.add_oncall(Some("oak"), "DSL", Some("dsl@oak.example"), None, 1).await.unwrap();
    store.add_oncall(Some("oak"), "Head (SMS)", None, Some("https://sms-gateway.example/hooks/haven/oak-academy/very-long-path"), 2).await.unwrap();

    // The governance record: a parents' agreement with a link, a review in draft.
    let agreement = store
        .publish_agreement("oak", haven_store::agreements::Audience::Parent, "2026-27", "Home and school", "We will talk about being safe online.", "dsl", now)
        .await
        .unwrap();
    let link = store.agreement_link(agreement, "amy.pupil", "dsl", now, now.checked_add(jiff::SignedDuration::from_hours(48)).unwrap()).await.unwrap();
    let sections = haven_safeguard::governance::prefill(&haven_store::governance::Figures::default(), &[], &[]);
    let review =
        store.start_review("oak", "annual", "", now.checked_sub(jiff::SignedDuration::from_hours(24)).unwrap(), now, &sections, "dsl", now).await.unwrap();
    let addr = haven_safeguard::serve(service.clone(), &["127.0.0.1:0".parse().unwrap()]).await.unwrap()[0];
    let base = format!("http://{addr}");

    // Sessions: anonymous, half signed in, then each role.
    let secrets: Vec<(String, String, Option<String>)> =
        made.iter().map(|(name, email, _, totp)| (name.to_string(), email.to_string(), totp.clone())).collect();
    let sessions: Vec<(String, String)> = tokio::task::spawn_blocking(move || {
        let mut out = vec![("anon".to_string(), String::new())];
        out.push(("half".into(), common::sign_in(addr, "dsl@oak.example", "dsl password 123")));
        for (name, email, totp) in secrets {
            out.push((name.clone(), sign_in_with(addr, &email, &format!("{name} password 123"), totp.as_deref())));
        }
        out
    })
    .await
    .unwrap();
    let idx = |n: &str| sessions.iter().position(|(s, _)| s == n).unwrap();
    let v = |who: &str, path: &str| Visit { who: idx(who), path: path.to_string() };
    let mut visits = vec![v("anon", "/login"), v("anon", "/report"), v("anon", "/check"), v("half", "/login/second-factor")];
    visits.push(v("anon", &format!("/agree/{link}")));
    for path in [
        "/alerts".to_string(),
        "/alerts?level=5".into(),
        "/alerts?status=acknowledged&q=amy".into(),
        format!("/alerts/{}", ids[0]),
        format!("/alerts/{}", ids[1]),
        format!("/alerts/{}", ids[5]),
        format!("/alerts/{unidentified}"),
        "/incidents".into(),
        format!("/incidents/{incident}"),
        "/people?q=amy".into(),
        "/people/oak/amy.pupil".into(),
        "/totals".into(),
        "/reports/governor".into(),
        "/history".into(),
        "/filtering".into(),
        "/filtering/changes".into(),
        format!("/filtering/changes/{change}"),
        "/filtering/policy?school=oak&group=secondary".into(),
        "/filtering/checks".into(),
        "/admin/oncall".into(),
        "/admin/audit".into(),
        "/admin/devices".into(),
        "/admin/lists".into(),
        "/admin/lexicon".into(),
        "/report".into(),
        "/governance".into(),
        "/governance/agreements".into(),
        format!("/governance/agreements/{agreement}"),
        "/governance/people".into(),
        "/governance/reviews".into(),
        format!("/governance/reviews/{review}"),
    ] {
        visits.push(v("dsl", &path));
    }
    for (who, path) in [
        ("tsl", "/alerts"),
        ("tsl", "/incidents"),
        ("head", "/alerts"),
        ("head", "/totals"),
        ("it", "/filtering"),
        ("it", "/filtering/checks"),
        ("it", "/admin/devices"),
        ("it", "/admin/lists"),
        ("teacher", "/filtering"),
        ("teacher", "/totals"),
        ("teacher", "/alerts"),
        ("admin", "/admin/accounts"),
        ("admin", "/admin/oncall"),
        ("chair", "/alerts"),
        ("chair", "/incidents"),
    ] {
        visits.push(v(who, path));
    }
    // An alert about a member of staff is the head's, not the DSL's.
    visits.push(v("head", &format!("/alerts/{}", ids[5])));

    let (c, _driver) = common::chromium(serde_json::json!({"args": ["--hide-scrollbars", "--force-device-scale-factor=1"]})).await;
    let shots = screenshots();
    let mut problems = String::new();
    let mut violations = 0;
    let mut current = usize::MAX;
    // `HAVEN_AXE_BEST_PRACTICE=1` adds axe's best-practice rules (heading order, landmarks) to the WCAG ones.
    let extra = if std::env::var_os("HAVEN_AXE_BEST_PRACTICE").is_some() { ", 'best-practice'" } else { "" };
    let tags = format!("{{runOnly: {{type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa'{extra}]}}, resultTypes: ['violations']}}");
    for visit in &visits {
        if visit.who != current {
            current = visit.who;
            c.goto(&format!("{base}/static/haven.css")).await.unwrap();
            c.delete_all_cookies().await.unwrap();
            set_session(&c, &sessions[current].1).await;
        }
        let role = &sessions[visit.who].0;
        c.goto(&format!("{base}{}", visit.path)).await.unwrap();
        let landed = c.current_url().await.unwrap();
        assert_eq!(landed.path(), visit.path.split('?').next().unwrap(), "{role} was sent elsewhere from {}", visit.path);
        c.execute(&format!("{AXE}\n;return typeof axe;"), vec![]).await.unwrap();
        for (w, h) in SIZES {
            c.set_window_size(w, h).await.unwrap();
            // The viewport is the window less any frame: make it the size asked for.
            let inner = c.execute("return [window.innerWidth, window.innerHeight];", vec![]).await.unwrap();
            let (iw, ih) = (inner[0].as_u64().unwrap_or(0) as u32, inner[1].as_u64().unwrap_or(0) as u32);
            if (iw, ih) != (w, h) {
                c.set_window_size(w + (w - iw.min(w)), h + (h - ih.min(h))).await.unwrap();
            }
            let found = c
                .execute(
                    &format!(
                        "return axe.run(document, {tags}).then(r => r.violations.map(v => v.nodes.map(n => \
                         [v.id, v.impact || '', n.target.join(' '), (n.failureSummary || v.help).replace(/\\s+/g, ' ')])).flat());"
                    ),
                    vec![],
                )
                .await
                .unwrap();
            for f in found.as_array().cloned().unwrap_or_default() {
                violations += 1;
                let s = |i: usize| f[i].as_str().unwrap_or_default().to_string();
                let _ = writeln!(problems, "axe: {role} {} at {w}x{h}: {} ({}) on {}: {}", visit.path, s(0), s(1), s(2), s(3));
            }
            if w > 1000 {
                // axe leaves one-character text unjudged ("too short"), so the level badges' contrast is checked here.
                let badges = c
                    .execute(
                        "const lum = c => { const [r, g, b] = c.match(/[\\d.]+/g).slice(0, 3).map(v => { v /= 255; \
                         return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; }); return 0.2126 * r + 0.7152 * g + 0.0722 * b; };\
                         return [...document.querySelectorAll('.lvl')].map(e => { const s = getComputedStyle(e); \
                         const [a, b] = [lum(s.color), lum(s.backgroundColor)].sort((x, y) => y - x); \
                         return [e.className, e.textContent, (a + 0.05) / (b + 0.05)]; });",
                        vec![],
                    )
                    .await
                    .unwrap();
                for b in badges.as_array().cloned().unwrap_or_default() {
                    let ratio = b[2].as_f64().unwrap_or(0.0);
                    if ratio < 4.5 || !b[1].as_str().unwrap_or_default().contains("level") {
                        let _ = writeln!(problems, "badge: {role} {}: {} {:?} has contrast {ratio:.2}:1 or no words", visit.path, b[0], b[1]);
                    }
                }
            }
            if w < 1000 {
                let fit = c
                    .execute(
                        "const d = document.documentElement; const wide = [...document.querySelectorAll('body *')]\
                         .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1).slice(0, 3)\
                         .map(e => e.tagName.toLowerCase() + (e.className ? '.' + e.className : '') + ' ' + Math.round(e.getBoundingClientRect().right));\
                         const hidden = [...document.querySelectorAll('td, th')].filter(e => getComputedStyle(e).display === 'none').length;\
                         return [d.scrollWidth, window.innerWidth, wide.join(', '), hidden];",
                        vec![],
                    )
                    .await
                    .unwrap();
                let (sw, iw) = (fit[0].as_u64().unwrap_or(0), fit[1].as_u64().unwrap_or(0));
                if iw != u64::from(w) {
                    let _ = writeln!(problems, "size: {role} {} at {w}x{h}: the window is {iw}px wide", visit.path);
                }
                if fit[3].as_u64().unwrap_or(0) > 0 {
                    let _ = writeln!(problems, "hidden: {role} {} at {w}x{h}: {} table cell(s) hidden on a phone", visit.path, fit[3]);
                }
                if sw > iw {
                    let _ = writeln!(problems, "overflow: {role} {} at {w}x{h}: the page is {sw}px wide in a {iw}px window ({})", visit.path, fit[2]);
                }
            }
            // The whole page in one picture: the window as tall as the page, then back.
            let tall = c.execute("return document.documentElement.scrollHeight;", vec![]).await.unwrap().as_u64().unwrap_or(0) as u32;
            let (ww, wh) = c.get_window_size().await.unwrap();
            if tall > h {
                c.set_window_size(ww as u32, wh as u32 + tall.min(6000) - h).await.unwrap();
            }
            let png = c.screenshot().await.unwrap();
            std::fs::write(shots.join(format!("{}-{w}x{h}.png", slug(role, &visit.path))), png).unwrap();
        }
    }

    // Said now, so a failure below still shows them.
    print!("{problems}");

    // The keyboard alone, on a phone: the queue, the first alert, its acknowledgement.
    c.set_window_size(390, 844).await.unwrap();
    c.goto(&format!("{base}/static/haven.css")).await.unwrap();
    c.delete_all_cookies().await.unwrap();
    set_session(&c, &sessions[idx("dsl")].1).await;
    c.goto(&format!("{base}/alerts")).await.unwrap();
    tab_to(&c, |href, _| href.starts_with("/alerts/") && href[8..].parse::<i64>().is_ok()).await;
    let (href, _, _) = focused(&c).await;
    let opened: i64 = href[8..].parse().unwrap();
    press(&c, Key::Enter).await;
    for _ in 0..50 {
        if c.current_url().await.unwrap().path() == href {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(c.current_url().await.unwrap().path(), href, "Enter on the focused link opens the alert");
    tab_to(&c, |_, text| text == "Acknowledge").await;
    press(&c, Key::Enter).await;
    let mut state = String::new();
    for _ in 0..50 {
        state = store.alert_detail(&dsl, opened).await.unwrap().unwrap().alert.status;
        if state != "open" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(state, "acknowledged", "the keyboard acknowledged alert {opened}");
    // And the skip link is the first stop on a page.
    c.goto(&format!("{base}/alerts/{opened}")).await.unwrap();
    press(&c, Key::Tab).await;
    let (skip, _, _) = focused(&c).await;
    assert_eq!(skip, "#main", "the first Tab reaches the skip link");
    c.find(Locator::Css("main")).await.unwrap();
    c.close().await.unwrap();

    let took = started.elapsed();
    println!("{} pages at {} sizes in {:.1} s; screenshots in {}", visits.len(), SIZES.len(), took.as_secs_f64(), shots.display());
    assert!(problems.is_empty(), "{violations} axe violation(s), and phone overflow:\n{problems}");
}
