//! The DSL's queue over real HTTP on loopback, on every back end: true
//! counts, next and previous pages, filters and saved views, acknowledging
//! ticked alerts (CSRF), and on the alert page triage, escalation, who holds
//! it, the triage note, the guidance box and the link to the person's
//! activity around the time.

mod common;

use common::{csrf_of, http, sign_in_with};
use haven_store::Role;
use haven_store::alerts::{NewAlert, NewOccurrence};

fn alert(person: &str, level: u8, at: &str) -> NewAlert {
    NewAlert {
        school: "oak".into(),
        person: person.into(),
        category: "Vulnerable person".into(),
        level,
        due_at: Some("2026-11-24T12:00:00Z".parse().unwrap()),
        first: NewOccurrence {
            at: at.parse().unwrap(),
            level,
            source: "typed".into(),
            excerpt: format!("{person} feels alone"),
            url: None,
            spans: "[]".into(),
            explanation: String::new(),
            screenshot: None,
            screenshot_withheld: false,
            repeats: 1,
        },
    }
}

/// The alert ids linked from a queue page, in order.
fn ids(page: &str) -> Vec<i64> {
    page.split("\"><a href=\"/alerts/").skip(1).filter_map(|r| r.split('"').next()?.parse().ok()).collect()
}

fn link(page: &str, rel: &str) -> Option<String> {
    let pattern = format!("rel=\"{rel}\" id=\"{rel}\" href=\"");
    let at = page.find(&pattern)? + pattern.len();
    Some(page[at..].split('"').next()?.replace("&amp;", "&"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_pages_counts_filters_and_acknowledges_and_the_alert_is_triaged() {
    for (store, _dir) in haven_store::testing::stores().await {
        store.upsert_school("oak", "Oak Academy", false).await.unwrap();
        let now = jiff::Timestamp::now();
        let (_, totp) = store.add_account("dsl@oak.example", Role::Dsl, Some("oak"), "dsl password 1", now).await.unwrap();
        let (deputy, _) = store.add_account("deputy@oak.example", Role::DeputyDsl, Some("oak"), "deputy password 1", now).await.unwrap();
        let totp = totp.unwrap();
        let mut all = Vec::new();
        for i in 0..57 {
            all.push(store.insert_alert(&alert(&format!("pupil{i:02}"), [3, 4, 5][i % 3], "2026-11-24T10:00:00Z")).await.unwrap());
        }
        let service = haven_safeguard::Service::new(store.clone(), &haven_policy::PolicySet::default());
        let addr = haven_safeguard::serve(service, &["127.0.0.1:0".parse().unwrap()]).await.unwrap()[0];
        let deputy_id = deputy.id;
        let ids_made = all.clone();
        tokio::task::spawn_blocking(move || {
            let all = ids_made;
            let dsl = sign_in_with(addr, "dsl@oak.example", "dsl password 1", Some(&totp));
            let first = http(addr, "GET", "/alerts", &dsl, "").2;
            assert!(first.contains("<strong>57</strong> open alerts match — 50 on this page"), "{first}");
            assert!(link(&first, "prev").is_none());
            let next = link(&first, "next").expect("a next page");
            let second = http(addr, "GET", &next, &dsl, "").2;
            assert!(second.contains("<strong>57</strong> open alerts match — 7 on this page"), "{second}");
            let mut seen = [ids(&first), ids(&second)].concat();
            assert!(link(&second, "next").is_none());
            let back = http(addr, "GET", &link(&second, "prev").expect("a previous page"), &dsl, "").2;
            assert_eq!(ids(&back), ids(&first), "previous gives the first page again");
            seen.sort_unstable();
            assert_eq!(seen, all, "every alert once");
            // Filters and saved views, with true counts.
            let fives = http(addr, "GET", "/alerts?level=5&q=PUPIL0", &dsl, "").2;
            assert!(fives.contains("<strong>3</strong> open alerts match"), "{fives}");
            assert!(http(addr, "GET", "/alerts?view=Unassigned+level+4%E2%80%935", &dsl, "").2.contains("<strong>38</strong>"));
            assert!(http(addr, "GET", "/alerts?view=My+overdue", &dsl, "").2.contains("<strong>0</strong>"));
            assert_eq!(http(addr, "GET", "/alerts?after=rubbish", &dsl, "").0, 400, "a bad cursor is refused");
            // Acknowledge two ticked alerts, with the form's token only.
            let csrf = csrf_of(&first);
            let ticked = format!("id={}&id={}", all[0], all[1]);
            assert_eq!(http(addr, "POST", "/alerts/acknowledge", &dsl, &ticked).0, 403, "CSRF");
            let done = http(addr, "POST", "/alerts/acknowledge", &dsl, &format!("csrf={csrf}&{ticked}&back_level=5"));
            assert_eq!(done.0, 303);
            assert!(http(addr, "GET", "/alerts?status=new", &dsl, "").2.contains("<strong>55</strong> new alerts"));
            assert!(http(addr, "GET", "/alerts?status=acknowledged", &dsl, "").2.contains("<strong>2</strong> acknowledged alerts"));
            // The alert page: guidance, activity link, triage, escalation, holder, note.
            let id = all[2];
            let page = http(addr, "GET", &format!("/alerts/{id}"), &dsl, "").2;
            assert!(page.contains("id=\"guidance\"") && page.contains("What to do:") && page.contains("Who to tell:"), "{page}");
            assert!(
                page.contains("Their activity around this time")
                    && page.contains("/history?subject=person&amp;id=pupil02&amp;school=oak&amp;from=2026-11-24&amp;to=2026-11-24"),
                "{page}"
            );
            assert!(page.contains(">Triage</button>") && page.contains(">Escalate</button>") && page.contains("Acknowledge"));
            let act = |kind: &str| http(addr, "POST", &format!("/alerts/{id}/act"), &dsl, &format!("csrf={csrf}&kind={kind}")).0;
            assert_eq!(act("triaged"), 303);
            assert_eq!(http(addr, "POST", &format!("/alerts/{id}/triage"), &dsl, "assign=me").0, 403, "CSRF");
            assert_eq!(http(addr, "POST", &format!("/alerts/{id}/triage"), &dsl, &format!("csrf={csrf}&assign={deputy_id}")).0, 303);
            assert_eq!(http(addr, "POST", &format!("/alerts/{id}/triage"), &dsl, &format!("csrf={csrf}&triage_note=Spoke+to+form+tutor")).0, 303);
            let page = http(addr, "GET", &format!("/alerts/{id}"), &dsl, "").2;
            assert!(page.contains("<strong id=\"state\">triaged</strong>") && page.contains("<strong id=\"holder\">deputy@oak.example</strong>"), "{page}");
            assert!(page.contains("Spoke to form tutor") && !page.contains(">Triage</button>"));
            assert_eq!(act("escalated"), 303);
            assert!(http(addr, "GET", "/alerts?status=escalated", &dsl, "").2.contains("<strong>1</strong> escalated alert match"));
            assert_eq!(
                http(addr, "POST", &format!("/alerts/{id}/guidance"), &dsl, &format!("csrf={csrf}&what=x&tell=y")).0,
                403,
                "only the trust writes guidance"
            );
        })
        .await
        .unwrap();
        let audit = store.audit_search(Some(&format!("alert:{}", all[0])), None, 10).await.unwrap();
        assert!(audit.iter().any(|e| e.action == "alert.acknowledged" && e.detail == "bulk"), "{audit:?}");
        let audit = store.audit_search(Some(&format!("alert:{}", all[2])), None, 20).await.unwrap();
        for action in ["alert.triaged", "alert.assigned", "alert.triage-note", "alert.escalated"] {
            assert!(audit.iter().any(|e| e.action == action), "{action} in {audit:?}");
        }
        store.close().await;
    }
}
