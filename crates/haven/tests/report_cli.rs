//! `haven report` against a seeded record (issue 17): alerts across weeks,
//! categories and levels, responses on time and late, filtering checks,
//! changes, an incident and blocks in the access logs. The governor pack as
//! PDF and HTML carries the figures the database holds and nothing that
//! names a pupil; the PDF is well formed and, rendered to images by
//! poppler's `pdftoppm`, shows its charts: every bar drawn is coloured ink
//! where the PDF put it. The weekly digest is printed and queued for the DSL.

mod common;

use std::path::Path;

use haven_store::Store;
use haven_store::alerts::{NewAlert, NewOccurrence};
use jiff::{SignedDuration, Timestamp};

const SCHOOL: &str = "riverside-academy";
const SECRET_TEXT: &str = "a secret only the pupil typed";

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn alert(school: &str, category: &str, level: u8, at: &str, due: Option<SignedDuration>) -> NewAlert {
    let at = t(at);
    NewAlert {
        school: school.into(),
        person: "pupil.zed".into(),
        category: category.into(),
        level,
        due_at: due.map(|d| at + d),
        first: NewOccurrence {
            at,
            level,
            source: "typed".into(),
            excerpt: SECRET_TEXT.into(),
            url: None,
            spans: "[]".into(),
            explanation: String::new(),
            screenshot: None,
            screenshot_withheld: false,
            repeats: 1,
        },
    }
}

/// The record: 9 alerts at Riverside in the four weeks from 7 September
/// 2026 (3, 4, 0, 2 a week), 4 in the four weeks before, 1 at Oakfield.
async fn seed(data: &Path) {
    let store = Store::open_dir(data).await.unwrap();
    let dsl = store.account_by_email("dsl@riverside.example").await.unwrap();
    let six = Some(SignedDuration::from_hours(6));
    let a = store.insert_alert(&alert(SCHOOL, "Grooming", 4, "2026-09-08T09:00:00Z", six)).await.unwrap();
    let b = store.insert_alert(&alert(SCHOOL, "Grooming", 4, "2026-09-08T10:00:00Z", six)).await.unwrap();
    store.insert_alert(&alert(SCHOOL, "Oversharer", 2, "2026-09-09T10:00:00Z", six)).await.unwrap();
    let c = store.insert_alert(&alert(SCHOOL, "Vulnerable person", 5, "2026-09-15T10:00:00Z", Some(SignedDuration::from_hours(1)))).await.unwrap();
    for _ in 0..3 {
        store.insert_alert(&alert(SCHOOL, "Bullying/Violence", 3, "2026-09-16T10:00:00Z", None)).await.unwrap();
    }
    for _ in 0..2 {
        store.insert_alert(&alert(SCHOOL, "Sexual content", 2, "2026-09-29T10:00:00Z", None)).await.unwrap();
    }
    for _ in 0..4 {
        store.insert_alert(&alert(SCHOOL, "Offensive user", 2, "2026-08-20T10:00:00Z", None)).await.unwrap();
    }
    store.insert_alert(&alert("oakfield-primary", "Grooming", 3, "2026-09-10T10:00:00Z", None)).await.unwrap();
    store.act_on_alert(&dsl, a, "acknowledged", "", t("2026-09-08T10:00:00Z")).await.unwrap();
    store.act_on_alert(&dsl, b, "acknowledged", "", t("2026-09-09T10:00:00Z")).await.unwrap();
    store.close_alert(&dsl, c, "parents called", haven_store::alerts::Verdict::RealConcern, t("2026-09-15T10:30:00Z")).await.unwrap();

    let run = haven_store::checks::Run {
        run: "r1".into(),
        at: t("2026-09-10T08:00:00Z"),
        who: "haven selftest".into(),
        origin: "command".into(),
        school: SCHOOL.into(),
        group: "secondary".into(),
        device: None,
    };
    let probe = |name: &str, ok: bool| haven_store::checks::Outcome {
        probe: name.into(),
        path: "dns".into(),
        target: "t.haven.invalid".into(),
        expected: "blocked".into(),
        got: if ok { "blocked".into() } else { "allowed".into() },
        ok,
    };
    store.add_filter_checks(&run, &[probe("iwf", true), probe("adult", false), probe("gambling", true)]).await.unwrap();
    let change = haven_store::changes::NewChange {
        school: SCHOOL.into(),
        kind: "change".into(),
        scope: "school".into(),
        verdict: Some("allow".into()),
        site: Some("example.org".into()),
        reason: "history lesson".into(),
        starts_at: t("2026-09-14T00:00:00Z"),
        ..Default::default()
    };
    store.add_filter_change(&change, "in-force", "account:1", t("2026-09-14T00:00:00Z")).await.unwrap();
    let incident = haven_store::incidents::NewIncident {
        school: SCHOOL,
        person: Some("pupil.zed"),
        alert: Some(c),
        title: "Pupil at risk",
        kind: haven_store::incidents::Kind::Safeguarding,
        about_head: false,
    };
    store.raise_incident(&dsl, &incident, t("2026-09-15T11:00:00Z")).await.unwrap().unwrap();
    store.close().await;

    // Blocks in the access logs: 5 gambling and 2 adult at Riverside, one
    // allowed, one filtering probe and one at Oakfield, none of them counted.
    let logs = data.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let line = |school: &str, action: &str, cat: &str, probe: bool| {
        format!(
            "{{\"time\":\"2026-09-08T12:00:00Z\",\"client\":\"10.0.0.5\",\"user\":\"pupil.zed\",\"school\":\"{school}\",\"name\":\"x.example\",\"qtype\":\"A\",\"action\":\"{action}\",\"categories\":[\"{cat}\"],\"transport\":\"udp\",\"micros\":5{}}}\n",
            if probe { ",\"probe\":true" } else { "" }
        )
    };
    let mut text = String::new();
    for _ in 0..5 {
        text.push_str(&line(SCHOOL, "block", "gambling", false));
    }
    for _ in 0..2 {
        text.push_str(&line(SCHOOL, "block", "adult", false));
    }
    text.push_str(&line(SCHOOL, "allow", "news", false));
    text.push_str(&line(SCHOOL, "block", "adult", true));
    text.push_str(&line("oakfield-primary", "block", "gambling", false));
    std::fs::write(logs.join("dns-2026-09-08.jsonl"), text).unwrap();
}

/// The strings a PDF's content streams show, in order.
fn shown(pages: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for p in pages {
        for line in p.lines() {
            if let (Some(a), Some(b)) = (line.find(" Td ("), line.rfind(") Tj")) {
                out.push(line[a + 5..b].replace("\\(", "(").replace("\\)", ")").replace("\\\\", "\\"));
            }
        }
    }
    out
}

fn contains_run(all: &[String], run: &[&str]) -> bool {
    all.windows(run.len()).any(|w| w.iter().zip(run).all(|(a, b)| a == b))
}

/// A binary PPM (P6) image: width, height, RGB bytes.
fn ppm(path: &Path) -> (usize, usize, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap();
    // Header: "P6", width, height, maxval, each after whitespace; then one whitespace byte.
    let mut fields = Vec::new();
    let mut i = 0;
    while fields.len() < 4 {
        while bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let start = i;
        while !bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        fields.push(String::from_utf8_lossy(&bytes[start..i]).into_owned());
    }
    assert_eq!(fields[0], "P6");
    let (w, h): (usize, usize) = (fields[1].parse().unwrap(), fields[2].parse().unwrap());
    let data = bytes[i + 1..].to_vec();
    assert_eq!(data.len(), w * h * 3);
    (w, h, data)
}

/// Renders `pdf` with pdftoppm at 72 dpi (one pixel a point) and checks that
/// every bar the PDF fills is drawn: the pixels inside each filled
/// rectangle of a chart are not white and are close to its colour, while the
/// page margin is white. Returns how many bars were seen.
fn bars_are_drawn(pdf: &Path, pages: &[String], out: &Path) -> usize {
    let status = std::process::Command::new("pdftoppm").args(["-r", "72"]).arg(pdf).arg(out.join("page")).status().unwrap();
    assert!(status.success());
    let png = std::process::Command::new("pdftoppm").args(["-r", "40", "-png", "-f", "1", "-l", "2"]).arg(pdf).arg(out.join("thumb")).status().unwrap();
    assert!(png.success());
    let mut thumbs: Vec<_> = std::fs::read_dir(out).unwrap().flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "png")).collect();
    thumbs.sort();
    assert_eq!(thumbs.len(), 2);
    assert!(std::fs::read(&thumbs[0]).unwrap().starts_with(b"\x89PNG\r\n\x1a\n"));
    let mut images: Vec<_> = std::fs::read_dir(out).unwrap().flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "ppm")).collect();
    images.sort();
    assert_eq!(images.len(), pages.len(), "one image a page");
    let mut bars = 0;
    for (content, image) in pages.iter().zip(&images) {
        let (w, h, px) = ppm(image);
        let at = |x: f64, y: f64| {
            let (col, row) = (x.round() as usize, (h as f64 - y).round() as usize);
            let i = (row.min(h - 1) * w + col.min(w - 1)) * 3;
            (px[i], px[i + 1], px[i + 2])
        };
        assert_eq!(at(10.0, 10.0), (255, 255, 255), "the margin is white");
        for line in content.lines().filter(|l| l.ends_with(" re f")) {
            let v: Vec<f64> = line.split_whitespace().filter_map(|x| x.parse().ok()).collect();
            let [r, g, b, x, y, rw, rh] = v[..] else { continue };
            // Bars and legend keys: big enough to hold a pixel well inside; not the tables' pale header.
            if rw < 4.0 || rh < 4.0 || (r > 0.85 && g > 0.85 && b > 0.85) {
                continue;
            }
            let (pr, pg, pb) = at(x + rw / 2.0, y + rh / 2.0);
            assert_ne!((pr, pg, pb), (255, 255, 255), "a bar at {x},{y} ({line}) is not drawn in {}", image.display());
            let near = |a: u8, want: f64| (f64::from(a) - want * 255.0).abs() < 40.0;
            // A line chart's point markers may lie under another series' line; a bar is its own colour.
            if rw >= 6.0 && rh >= 6.0 {
                assert!(near(pr, r) && near(pg, g) && near(pb, b), "a bar at {x},{y} is ({pr},{pg},{pb}), not its colour ({line})");
            }
            bars += 1;
        }
    }
    bars
}

#[test]
fn the_governor_pack_and_the_digest_show_the_records_figures() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let add = common::run(
        &["admin", "--data", d, "user", "add", "--email", "dsl@riverside.example", "--role", "dsl", "--school", SCHOOL],
        Some("a long enough password\n"),
    );
    assert!(add.status.success(), "{}", common::err(&add));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(seed(&data));
    let totals = rt.block_on(async {
        let store = Store::open_dir(&data).await.unwrap();
        let t = store.totals(Some(SCHOOL)).await.unwrap();
        store.close().await;
        t
    });
    let total = |cat: &str, level: u8| totals.iter().find(|x| x.category == cat && x.level == level).map_or(0, |x| x.count);

    let pdf = dir.path().join("x.pdf");
    let html = dir.path().join("x.html");
    let period = ["--school", SCHOOL, "--from", "2026-09-07", "--to", "2026-10-04"];
    let o = common::run(&[&["report", "--data", d, "governor"][..], &period, &["--out", pdf.to_str().unwrap()]].concat(), None);
    assert!(o.status.success(), "{}", common::err(&o));
    assert!(
        common::text(&o).contains("9 alerts (4 the period before), 2 of 4 acted on within the deadline, 1 filtering checks, 1 changes, 1 incidents raised"),
        "{}",
        common::text(&o)
    );
    let o = common::run(&[&["report", "--data", d, "governor"][..], &period, &["--html", "--out", html.to_str().unwrap()]].concat(), None);
    assert!(o.status.success(), "{}", common::err(&o));

    // HTML: the period, the trend, each category by level as the database holds it.
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("7 Sep 2026 to 4 Oct 2026 · compared with 10 Aug 2026 to 6 Sep 2026"), "period header");
    assert!(page.contains("<dt>Alerts</dt><dd>9 <span class=\"trend\">(up 5 (+125%) on 4)</span>"));
    let num = |v: u64| format!("<td class=\"num\">{v}</td>");
    for (cat, level) in [("Grooming", 4u8), ("Oversharer", 2), ("Vulnerable person", 5), ("Bullying/Violence", 3), ("Sexual content", 2)] {
        let n = u64::try_from(total(cat, level)).unwrap();
        assert!(n > 0);
        let cells: String = (1..=5u8).map(|l| num(if l == level { n } else { 0 })).collect();
        let row = format!("<th scope=\"row\">{cat}</th>{cells}{}", num(n));
        assert!(page.contains(&row), "{cat}: {row}");
        // And in the 4 Cs table, against the previous period.
        let area = haven_report::FourC::of_concern(cat).name();
        assert!(page.contains(&format!("<th scope=\"row\">{cat}</th><td>{area}</td><td>{n}</td><td>0</td>")), "{cat} in {area}");
    }
    assert!(page.contains("<th scope=\"row\">Offensive user</th><td>Conduct</td><td>0</td><td>4</td>"), "previous period only");
    // Weeks: 3, 4, 0, 2; the previous period's four in its second week.
    for (week, n) in [("7 Sep", 3), ("14 Sep", 4), ("21 Sep", 0), ("28 Sep", 2)] {
        assert!(page.contains(&format!("<th scope=\"row\">{week}</th>")) && page.contains(&format!("{}</tr>", num(n))), "{week}");
    }
    assert!(page.contains(&format!("<th scope=\"row\">W2</th>{}{}</tr>", num(4), num(4))));
    // Responses against deadlines: 4 with one; 2 on time, 1 late, 1 overdue.
    assert!(
        page.contains(&format!("<th scope=\"row\">This period</th>{}{}{}{}{}<td class=\"num\">50%</td>", num(4), num(2), num(1), num(1), num(0))),
        "responses"
    );
    // Blocks from the logs: the probe, the allowed line and the other school's left out.
    assert!(page.contains(&format!("<th scope=\"row\">Gambling</th>{}{}</tr>", num(5), num(0))), "gambling blocks");
    assert!(page.contains("<th scope=\"row\">Gambling</th><td>Commerce</td><td>5</td>"));
    assert!(page.contains(&format!("<th scope=\"row\">Pornography</th>{}{}</tr>", num(2), num(0))), "adult blocks");
    // Checks, changes, incidents.
    assert!(page.contains(&format!("<th scope=\"row\">This period</th>{}{}{}{}{}</tr>", num(1), num(3), num(2), num(1), num(0))), "checks");
    assert!(page.contains(&format!("<th scope=\"row\">Change made by staff</th>{}{}</tr>", num(1), num(0))));
    assert!(page.contains("1 raised and 0 closed in this period; 1 open at its end"));
    let charts = page.matches("<svg").count();
    assert!(charts >= 6, "{charts} charts");
    assert_eq!(page.matches("</figcaption><table class=\"report\"><caption>").count(), charts, "every chart has its table beside it");
    for secret in [SECRET_TEXT, "pupil.zed", "dsl@riverside.example", "Oakfield"] {
        assert!(!page.contains(secret), "the pack names nobody: {secret}");
    }

    // PDF: well formed, the same figures, nobody named.
    let bytes = std::fs::read(&pdf).unwrap();
    let pages = haven_report::pdf::check(&bytes).unwrap();
    assert!(pages.len() >= 3, "{} pages", pages.len());
    let words = shown(&pages);
    assert!(contains_run(&words, &["Grooming", "0", "0", "0", "2", "0", "2"]), "{words:?}");
    assert!(contains_run(&words, &["This period", "4", "2", "1", "1", "0", "50%"]));
    assert!(contains_run(&words, &["Gambling", "Commerce", "5", "0"]));
    assert!(words.iter().any(|w| w.starts_with("Governor pack: online safety")));
    assert!(!words.iter().any(|w| w.contains("pupil.zed") || w.contains("secret")));
    assert!(pages.last().unwrap().contains(&format!("(Page {} of {}) Tj", pages.len(), pages.len())));

    // Rendered: every bar is ink of its colour where the PDF put it.
    if std::process::Command::new("pdftoppm").arg("-v").output().is_err() {
        panic!("pdftoppm is needed (apt-get install poppler-utils; .ci/run installs it)");
    }
    let images = dir.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    let bars = bars_are_drawn(&pdf, &pages, &images);
    // To look at them: HAVEN_TEST_KEEP_REPORT=DIR keeps the pack and its page images there.
    if let Some(keep) = std::env::var_os("HAVEN_TEST_KEEP_REPORT") {
        let keep = Path::new(&keep);
        std::fs::create_dir_all(keep).unwrap();
        for f in std::fs::read_dir(&images).unwrap().flatten().map(|e| e.path()).chain([pdf.clone(), html.clone()]) {
            std::fs::copy(&f, keep.join(f.file_name().unwrap())).unwrap();
        }
    }
    // Legend keys and bars: at least the 9 alerts' stacked segments, both
    // response bars' parts, the block bars and the category rows.
    assert!(bars >= 30, "{bars} bars drawn");

    // Trust-wide: both schools, Oakfield's alert counted.
    let all = dir.path().join("all.html");
    let o = common::run(
        &["report", "--data", d, "governor", "--school", "all", "--from", "2026-09-07", "--to", "2026-10-04", "--html", "--out", all.to_str().unwrap()],
        None,
    );
    assert!(o.status.success(), "{}", common::err(&o));
    assert!(common::text(&o).contains("10 alerts"), "{}", common::text(&o));
    let trust = std::fs::read_to_string(&all).unwrap();
    assert!(trust.contains("<th scope=\"row\">Oakfield Primary School</th><td class=\"num\">1</td>"), "a line per school");
    assert!(trust.contains(&format!("<th scope=\"row\">Gambling</th>{}{}</tr>", num(6), num(0))), "every school's blocks");

    // A school that is not one, and a period backwards.
    let bad = common::run(&["report", "--data", d, "governor", "--school", "nowhere", "--from", "2026-09-07", "--to", "2026-10-04", "--html"], None);
    assert_eq!(bad.status.code(), Some(2));
    assert!(common::err(&bad).contains("school list"));
    let back = common::run(&["report", "--data", d, "governor", "--school", SCHOOL, "--from", "2026-10-07", "--to", "2026-10-04", "--html"], None);
    assert!(common::err(&back).contains("before it starts"), "{}", common::err(&back));

    // The digest of the week of 8 September: printed and queued once for the DSL.
    let o = common::run(&["report", "--data", d, "digest", "--school", SCHOOL, "--week", "2026-09-10"], None);
    assert!(o.status.success(), "{}", common::err(&o));
    let text = common::text(&o);
    assert!(text.starts_with("Subject: Haven weekly safeguarding digest \u{2014} Riverside Academy \u{2014} week of 7 Sep 2026\n"), "{text}");
    assert!(text.contains("New alerts:     3\n") && text.contains("Closed:         0\n"), "{text}");
    // At the week's end the Oversharer alert and the late Grooming one are past their deadline, not closed.
    assert!(text.contains("Overdue at the week's end: 3"), "{text}");
    assert!(!text.contains("pupil.zed") && !text.contains(SECRET_TEXT));
    assert!(common::err(&o).contains("queued for 1 of 1 DSLs"), "{}", common::err(&o));
    let again = common::run(&["report", "--data", d, "digest", "--school", SCHOOL, "--week", "2026-09-07"], None);
    assert!(common::err(&again).contains("queued for 0 of 1"), "once per week: {}", common::err(&again));
    let queued = rt.block_on(async {
        let store = Store::open_dir(&data).await.unwrap();
        let q = store.report_mail_for("digest", SCHOOL, "2026-09-07").await.unwrap();
        let audit = store.audit_search(None, Some("command"), 50).await.unwrap();
        store.close().await;
        (q, audit)
    });
    assert_eq!(queued.0.len(), 1);
    assert_eq!(queued.0[0].target, "dsl@riverside.example");
    assert!(queued.0[0].body.contains("New alerts:     3"));
    assert!(queued.1.iter().any(|a| a.action == "report.governor") && queued.1.iter().any(|a| a.action == "report.digest"), "every report is audited");
}
