//! Reports in the web app and by e-mail (issue 17), on SQLite and, when
//! `HAVEN_TEST_POSTGRES` names a server, PostgreSQL: a governor gets the
//! anonymised pack (HTML with SVG charts, and its PDF) for their own school
//! only, a teacher is refused; the weekly digest reaches the DSL's mailbox
//! through the SMTP relay with a subject that names nobody, once.

use std::sync::{Arc, Mutex};

use haven_safeguard::notify::Channels;
use haven_store::Role;
use haven_store::alerts::{NewAlert, NewOccurrence};
use jiff::{SignedDuration, Timestamp};

mod common;
use common::{http, sign_in, smtp_catcher};

fn alert(school: &str, category: &str, level: u8, at: Timestamp) -> NewAlert {
    NewAlert {
        school: school.into(),
        person: "amy.pupil".into(),
        category: category.into(),
        level,
        due_at: Some(at + SignedDuration::from_hours(4)),
        first: NewOccurrence {
            at,
            level,
            source: "typed".into(),
            excerpt: "what amy typed".into(),
            url: None,
            spans: "[]".into(),
            explanation: String::new(),
            screenshot: None,
            screenshot_withheld: false,
            repeats: 1,
        },
    }
}

/// A GET whose body is bytes: (status, the head in lower case, body).
fn get_bytes(addr: std::net::SocketAddr, path: &str, cookie: &str) -> (u16, String, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..end]).to_lowercase();
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let mut body = raw[end + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let line = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let n = usize::from_str_radix(String::from_utf8_lossy(&rest[..line]).trim(), 16).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&rest[line + 2..line + 2 + n]);
            rest = &rest[line + 2 + n + 2..];
        }
        body = out;
    }
    (status, head, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn governors_get_the_anonymised_pack_and_dsls_the_weekly_digest() {
    let mails = Arc::new(Mutex::new(Vec::new()));
    let smtp = smtp_catcher(mails.clone()).await;
    for (store, _dir) in haven_store::testing::stores().await {
        mails.lock().unwrap().clear();
        store.upsert_school("oak", "Oak Academy", false).await.unwrap();
        store.upsert_school("elm", "Elm School", false).await.unwrap();
        let t0: Timestamp = "2026-09-01T00:00:00Z".parse().unwrap();
        store.add_account("gov@oak.example", Role::Governor, Some("oak"), "governor password", t0).await.unwrap();
        store.add_account("teacher@oak.example", Role::Teacher, Some("oak"), "teacher password", t0).await.unwrap();
        store.add_account("dsl@oak.example", Role::Dsl, Some("oak"), "dsl password 123", t0).await.unwrap();
        let week: Timestamp = "2026-09-08T10:00:00Z".parse().unwrap();
        for _ in 0..3 {
            store.insert_alert(&alert("oak", "Grooming", 4, week)).await.unwrap();
        }
        store.insert_alert(&alert("elm", "Oversharer", 2, week)).await.unwrap();

        let policy = haven_policy::PolicySet::default();
        let service = haven_safeguard::Service::new(store.clone(), &policy);
        let addr = haven_safeguard::serve(service, &["127.0.0.1:0".parse().unwrap()]).await.unwrap()[0];
        let range = "from=2026-09-07&to=2026-09-20";
        let (status, _, _) = tokio::task::spawn_blocking(move || http(addr, "GET", &format!("/reports/governor?{range}"), "", "")).await.unwrap();
        assert_eq!(status, 303, "signed out: to the sign-in page");
        let (gov, page, pdf, teacher) = tokio::task::spawn_blocking(move || {
            let gov = sign_in(addr, "gov@oak.example", "governor password");
            // Asking for another school or the trust changes nothing for a school's governor.
            let page = http(addr, "GET", &format!("/reports/governor?school=elm&{range}"), &gov, "");
            let pdf = get_bytes(addr, &format!("/reports/governor?{range}&format=pdf"), &gov);
            let teacher = sign_in(addr, "teacher@oak.example", "teacher password");
            let refused = http(addr, "GET", &format!("/reports/governor?{range}"), &teacher, "");
            (gov, page, pdf, refused)
        })
        .await
        .unwrap();
        assert!(!gov.is_empty());
        assert_eq!(page.0, 200, "{}", page.2);
        let body = page.2;
        assert!(body.contains("Governor pack: online safety — Oak Academy"), "the governor's own school");
        assert!(body.contains("7 Sep 2026 to 20 Sep 2026"));
        assert!(body.contains("<svg") && body.contains("role=\"img\""));
        // The page frame labels each cell with its column for narrow screens.
        let row = |label: &str| -> String {
            let at = body.find(&format!(">{label}</td><td data-label=\"Level 1\"")).unwrap_or_else(|| panic!("no row {label}: {body}"));
            body[at..].split("</tr>").next().unwrap().to_string()
        };
        let grooming = row("Grooming");
        assert!(
            grooming.contains("data-label=\"Level 4\" class=\"num\">3</td>") && grooming.contains("data-label=\"Total\" class=\"num\">3</td>"),
            "{grooming}"
        );
        assert!(!body.contains(">Oversharer</td><td data-label=\"Level 1\""), "not Elm's alert");
        assert!(!body.contains("amy") && !body.contains("what amy typed"), "anonymised");
        assert!(body.contains("format=pdf"), "a link to the PDF");
        assert_eq!(pdf.0, 200);
        assert!(
            pdf.1.contains("content-type: application/pdf") && pdf.1.contains("attachment; filename=\"governor-pack-oak-2026-09-07-2026-09-20.pdf\""),
            "{}",
            pdf.1
        );
        let pages = haven_report::pdf::check(&pdf.2).unwrap();
        assert!(pages.iter().any(|p| p.contains("(Grooming) Tj")), "the PDF itself, with its figures");
        assert_eq!(teacher.0, 403, "a teacher does not get the pack");
        let audit = store.audit_search(Some("school:oak"), None, 10).await.unwrap();
        assert!(audit.iter().filter(|a| a.action == "report.governor").count() >= 2, "every pack is audited");

        // The weekly digest: queued once for the DSL, sent through the relay.
        let tz = jiff::tz::TimeZone::get("Europe/London").unwrap();
        let now: Timestamp = "2026-09-14T07:00:00Z".parse().unwrap();
        let day: jiff::civil::Date = "2026-09-09".parse().unwrap();
        let (digest, queued, to) = haven_safeguard::reports::queue_digest(&store, "oak", day, &tz, "https://haven.oak.example", "haven", now).await.unwrap();
        assert_eq!((queued, to), (1, vec!["dsl@oak.example".to_string()]));
        assert_eq!(digest.subject(), "Haven weekly safeguarding digest — Oak Academy — week of 7 Sep 2026");
        assert_eq!(
            haven_safeguard::reports::queue_digest(&store, "oak", day, &tz, "https://haven.oak.example", "haven", now).await.unwrap().1,
            0,
            "once a week"
        );
        let ch = Channels::new(
            Some(format!("smtp://127.0.0.1:{smtp}")),
            "haven@oak.example".into(),
            "https://haven.oak.example".into(),
            SignedDuration::from_mins(10),
        );
        assert_eq!(haven_safeguard::reports::send_due(&store, &ch, now).await, 1);
        assert_eq!(haven_safeguard::reports::send_due(&store, &ch, now + SignedDuration::from_hours(1)).await, 0, "sent once");
        let mail = mails.lock().unwrap().join("\n");
        assert!(mail.contains("Subject: Haven weekly safeguarding digest") || mail.contains("Subject: =?utf-8?"), "{mail}");
        assert!(mail.contains("To: dsl@oak.example"), "{mail}");
        assert!(mail.contains("New alerts:     3") && mail.contains("Grooming"), "{mail}");
        assert!(mail.contains("https://haven.oak.example/alerts"));
        assert!(!mail.contains("amy"), "no pupil by e-mail");
        store.close().await;
    }
}
