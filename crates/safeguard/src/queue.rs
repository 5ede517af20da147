//! The DSL's queue page (issue 16): server-side pages with next and
//! previous, the true count, the filter form, saved views as links,
//! acknowledging many at once; on the alert page, the states after new
//! (triage, escalate), who holds it, the triage note, the trust's guidance
//! for the category and level, and a link to the person's activity around
//! the time. Every read is audited before anything is shown; every form
//! carries the session's CSRF token.

use std::collections::HashMap;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use haven_store::alerts::AlertDetail;
use haven_store::queue::{QueueItem, QueuePage, STATES, state_label};
use haven_store::sessions::Session;
use jiff::{SignedDuration, Timestamp};

use crate::Service;
use crate::history::enc;
use crate::web::{csrf_ok, esc, level, page, signed_in, when, with_status};

/// The queue's routes.
pub fn routes() -> axum::Router<Service> {
    axum::Router::new()
        .route("/alerts", get(show))
        .route("/alerts/acknowledge", post(acknowledge))
        .route("/alerts/{id}/triage", post(triage))
        .route("/alerts/{id}/guidance", post(guidance))
}

/// The query-string keys the filter form and the page links carry.
const KEYS: [&str; 10] = ["school", "level", "category", "status", "assignee", "due", "q", "sort", "limit", "view"];

/// The saved views: a name and its query.
const VIEWS: [(&str, &str); 5] = [
    ("My overdue", "assignee=me&due=overdue"),
    ("Mine", "assignee=me"),
    ("Unassigned level 4–5", "assignee=none&level=4-5"),
    ("New", "status=new"),
    ("Escalated", "status=escalated"),
];

fn expired(s: &Service, w: &Session) -> Response {
    with_status(
        page(s, "Form expired", Some(w), "<p class=\"err\">That form was not sent from this session. Go back, reload, and try again.</p>"),
        StatusCode::FORBIDDEN,
    )
}

/// The query string of the filters in force, for links that keep them.
fn filters(q: &HashMap<String, String>) -> String {
    KEYS.iter().filter_map(|k| q.get(*k).filter(|v| !v.is_empty()).map(|v| format!("{k}={}", enc(v)))).collect::<Vec<_>>().join("&")
}

/// The page's rows; `labels` are the people as staff know them (HTML, from
/// the MIS directory), `schools` the schools' names.
fn rows(items: &[QueueItem], now: Timestamp, labels: &HashMap<i64, String>, schools: &HashMap<String, String>, holders: &HashMap<String, String>) -> String {
    let mut out = String::new();
    for i in items {
        let a = &i.alert;
        let overdue = a.status != "closed" && a.due_at.as_deref().and_then(|d| d.parse::<Timestamp>().ok()).is_some_and(|d| d < now);
        let due = a.due_at.as_deref().map_or("—".into(), when);
        let person = labels.get(&a.id).cloned().unwrap_or_else(|| match &i.person_name {
            Some(n) => format!("{} — {}", esc(n), esc(&a.person)),
            None => esc(&a.person),
        });
        let tick = if a.status == "open" {
            format!("<input type=\"checkbox\" name=\"id\" value=\"{}\" aria-label=\"Acknowledge alert {}\">", a.id, a.id)
        } else {
            String::new()
        };
        out.push_str(&format!(
            "<tr><td>{tick}</td><td>{}</td><td><a href=\"/alerts/{}\">{}</a></td><td>{person}</td><td{}>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            level(a.level),
            a.id,
            esc(&a.category),
            if overdue { " class=\"overdue\"" } else { "" },
            esc(&due),
            esc(schools.get(&a.school).unwrap_or(&a.school)),
            esc(&i.state),
            esc(i.assignee_email.as_deref().map_or("—", |e| holders.get(e).map_or(e, String::as_str))),
            a.occurrences
        ));
    }
    out
}

/// `GET /alerts`: one page of the queue.
async fn show(State(s): State<Service>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    let w = match signed_in(&s, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let now = Timestamp::now();
    let actor = format!("account:{}", w.account.id);
    if !w.account.role.reads_alerts() {
        let _ = s.store.audit(now, &actor, "alert.list.denied", "alerts", w.account.role.as_str()).await;
        return crate::web::forbidden(&s, &w, "Your role does not read alerts. Governors see anonymised totals; teachers report concerns.");
    }
    // A saved view is its query; the form's own fields win over it.
    let mut q = q;
    if let Some((_, view)) = q.get("view").and_then(|v| VIEWS.iter().find(|(name, _)| name == v)) {
        for kv in view.split('&') {
            if let Some((k, v)) = kv.split_once('=') {
                q.entry(k.to_string()).or_insert_with(|| v.to_string());
            }
        }
    }
    let bad = |m: &str| {
        with_status(
            page(&s, "Alerts", Some(&w), &format!("<p class=\"err\">{}</p><p><a href=\"/alerts\">Start again</a></p>", esc(m))),
            StatusCode::BAD_REQUEST,
        )
    };
    let query = match crate::api::queue_query(&q, &w.account, false) {
        Ok(x) => x,
        Err(m) => return bad(&m),
    };
    let p: QueuePage = match s.store.queue_page(&w.account, &query, now).await {
        Ok(p) => p,
        Err(haven_store::StoreError::Invalid(m)) => return bad(&m),
        Err(e) => return with_status(page(&s, "Alerts", Some(&w), &format!("<p class=\"err\">{}</p>", esc(&e.to_string()))), StatusCode::SERVICE_UNAVAILABLE),
    };
    let ids: Vec<String> = p.alerts.iter().map(|a| a.alert.id.to_string()).collect();
    if s.store.audit(now, &actor, "alert.list", "alerts", &ids.join(",")).await.is_err() {
        return crate::unaudited();
    }
    let plain: Vec<haven_store::alerts::Alert> = p.alerts.iter().map(|i| i.alert.clone()).collect();
    let labels = crate::people::labels(&s, &plain).await;
    // Who holds each alert, by name (no query when nobody holds one).
    let holders = s.store.actor_labels(&p.alerts.iter().filter_map(|i| i.assignee_email.as_deref()).collect::<Vec<_>>()).await.unwrap_or_default();
    let all_schools = s.store.schools().await.unwrap_or_default();
    let school_names: HashMap<String, String> = all_schools.iter().map(|x| (x.id.clone(), x.name.clone())).collect();
    let opt = |name: &str, values: &[(&str, &str)]| {
        let cur = q.get(name).cloned().unwrap_or_default();
        values
            .iter()
            .map(|(v, label)| format!("<option value=\"{}\"{}>{}</option>", esc(v), if *v == cur { " selected" } else { "" }, esc(label)))
            .collect::<String>()
    };
    let cats: Vec<(&str, &str)> = std::iter::once(("", "any category")).chain(haven_textscan::Concern::ALL.iter().map(|c| (c.name(), c.name()))).collect();
    let school_select = if w.account.role.trust_wide() {
        let schools: Vec<(String, String)> =
            std::iter::once((String::new(), "every school".to_string())).chain(all_schools.iter().map(|sc| (sc.id.clone(), sc.name.clone()))).collect();
        let refs: Vec<(&str, &str)> = schools.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        format!("<label>School <select name=\"school\">{}</select></label> ", opt("school", &refs))
    } else {
        String::new()
    };
    let mut statuses: Vec<(&str, &str)> = vec![("", "not closed"), ("all", "every state")];
    statuses.extend(STATES.iter().map(|st| (if *st == "open" { "new" } else { st }, state_label(st))));
    let views: String = VIEWS.iter().map(|(name, _)| format!("<a href=\"/alerts?view={}\">{}</a>", enc(name), esc(name))).collect::<Vec<_>>().join(" · ");
    let here = filters(&q);
    let link = |key: &str, cursor: &Option<String>, label: &str, rel: &str| {
        cursor.as_ref().map_or(String::new(), |c| {
            let sep = if here.is_empty() { "" } else { "&" };
            format!("<a rel=\"{rel}\" id=\"{rel}\" href=\"/alerts?{here}{sep}{key}={}\">{label}</a>", enc(c))
        })
    };
    let what = match q.get("status").map(String::as_str).filter(|v| !v.is_empty()) {
        None => "open".to_string(),
        Some("all") => "in all".to_string(),
        Some(st) => st.to_string(),
    };
    let body = crate::web::health_banner(&s)
        + &format!(
            "<p class=\"views\">Saved views: {views}</p>\
             <form method=\"get\" action=\"/alerts\" class=\"filters\">{school_select}\
             <label>Level <select name=\"level\">{}</select></label> <label>Concern <select name=\"category\">{}</select></label> \
             <label>State <select name=\"status\">{}</select></label> <label>Held by <select name=\"assignee\">{}</select></label> \
             <label>Deadline <select name=\"due\">{}</select></label> <label>Sort <select name=\"sort\">{}</select></label> \
             <label>Text <input type=\"search\" name=\"q\" value=\"{}\" placeholder=\"name, login, words\"></label> <button>Filter</button></form>\
             <p id=\"count\"><strong>{}</strong> {what} alert{} match{} — {} on this page.</p>\
             <form method=\"post\" action=\"/alerts/acknowledge\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">{}\
             <table><thead><tr><th><span class=\"vh\">Select</span></th><th>Level</th><th>Concern</th><th>Person</th><th>Due</th><th>School</th><th>State</th><th>Held by</th><th>Repeats</th></tr></thead><tbody>{}</tbody></table>\
             <p><button>Acknowledge ticked</button></p></form><p class=\"pages\">{} {}</p>",
            opt("level", &[("", "any level"), ("5", "5 only"), ("4", "4 and up"), ("4-5", "4–5"), ("3", "3 and up"), ("2", "2 and up")]),
            opt("category", &cats),
            opt("status", &statuses),
            opt("assignee", &[("", "anyone or nobody"), ("me", "me"), ("none", "nobody")]),
            opt("due", &[("", "any deadline"), ("overdue", "overdue only")]),
            opt("sort", &[("", "most urgent first"), ("newest", "newest first")]),
            esc(q.get("q").map_or("", String::as_str)),
            p.total,
            if p.total == 1 { "" } else { "s" },
            if p.total == 1 { "es" } else { "" },
            p.alerts.len(),
            esc(&w.csrf),
            KEYS.iter()
                .filter_map(|k| q.get(*k).filter(|v| !v.is_empty()).map(|v| format!("<input type=\"hidden\" name=\"back_{k}\" value=\"{}\">", esc(v))))
                .collect::<String>(),
            rows(&p.alerts, now, &labels, &school_names, &holders),
            link("before", &p.prev_cursor, "← Previous", "prev"),
            link("after", &p.next_cursor, "Next →", "next"),
        );
    page(&s, "Alerts", Some(&w), &body)
}

/// `POST /alerts/acknowledge`: the ticked alerts, in one transaction.
async fn acknowledge(State(s): State<Service>, headers: HeaderMap, Form(f): Form<Vec<(String, String)>>) -> Response {
    let w = match signed_in(&s, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let field = |k: &str| f.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    if !csrf_ok(&w.csrf, field("csrf").as_ref()) {
        return expired(&s, &w);
    }
    let ids: Vec<i64> = f.iter().filter(|(n, _)| n == "id").filter_map(|(_, v)| v.parse().ok()).take(500).collect();
    match s.store.acknowledge_many(&w.account, &ids, Timestamp::now()).await {
        // Back to the same filters, rebuilt from the known keys only.
        Ok(_) => {
            let back: HashMap<String, String> = f.iter().filter_map(|(n, v)| Some((n.strip_prefix("back_")?.to_string(), v.clone()))).collect();
            let q = filters(&back);
            Redirect::to(&if q.is_empty() { "/alerts".to_string() } else { format!("/alerts?{q}") }).into_response()
        }
        Err(e) => with_status(page(&s, "Not saved", Some(&w), &format!("<p class=\"err\">{}</p>", esc(&e.to_string()))), StatusCode::SERVICE_UNAVAILABLE),
    }
}

/// `POST /alerts/{id}/triage`: `assign` (`me`, `none` or an account id) and/or `triage_note`.
async fn triage(State(s): State<Service>, headers: HeaderMap, Path(id): Path<i64>, Form(f): Form<HashMap<String, String>>) -> Response {
    let w = match signed_in(&s, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    if !csrf_ok(&w.csrf, f.get("csrf")) {
        return expired(&s, &w);
    }
    let now = Timestamp::now();
    let mut done = Ok(true);
    if let Some(to) = f.get("assign").map(|v| v.trim()).filter(|v| !v.is_empty()) {
        let to = match to {
            "me" => Some(w.account.id),
            "none" => None,
            other => match other.parse() {
                Ok(id) => Some(id),
                Err(_) => return with_status(page(&s, "Not saved", Some(&w), "<p class=\"err\">Choose who holds the alert.</p>"), StatusCode::BAD_REQUEST),
            },
        };
        done = s.store.assign_alert(&w.account, id, to, now).await;
    }
    if let (Ok(true), Some(note)) = (&done, f.get("triage_note")) {
        done = s.store.set_triage_note(&w.account, id, note, now).await;
    }
    match done {
        Ok(true) => Redirect::to(&format!("/alerts/{id}")).into_response(),
        Ok(false) => with_status(page(&s, "Alert not found", Some(&w), "<p>There is no such alert that you may act on.</p>"), StatusCode::NOT_FOUND),
        Err(e) => with_status(page(&s, "Not saved", Some(&w), &format!("<p class=\"err\">{}</p>", esc(&e.to_string()))), StatusCode::BAD_REQUEST),
    }
}

/// `POST /alerts/{id}/guidance`: the trust's safeguarding lead rewrites the
/// guidance for this alert's category and level.
async fn guidance(State(s): State<Service>, headers: HeaderMap, Path(id): Path<i64>, Form(f): Form<HashMap<String, String>>) -> Response {
    let w = match signed_in(&s, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    if !csrf_ok(&w.csrf, f.get("csrf")) {
        return expired(&s, &w);
    }
    let Ok(Some(d)) = s.store.alert_detail(&w.account, id).await else {
        return with_status(page(&s, "Alert not found", Some(&w), "<p>There is no such alert that you may see.</p>"), StatusCode::NOT_FOUND);
    };
    let get = |k: &str| f.get(k).map_or("", String::as_str);
    match s.store.set_guidance(&w.account, &d.alert.category, d.alert.level, get("what"), get("tell"), Timestamp::now()).await {
        Ok(()) => Redirect::to(&format!("/alerts/{id}#guidance")).into_response(),
        Err(haven_store::StoreError::Invalid(m)) => {
            with_status(page(&s, "Not saved", Some(&w), &format!("<p class=\"err\">{}</p>", esc(&m))), StatusCode::FORBIDDEN)
        }
        Err(e) => with_status(page(&s, "Not saved", Some(&w), &format!("<p class=\"err\">{}</p>", esc(&e.to_string()))), StatusCode::SERVICE_UNAVAILABLE),
    }
}

/// The history page's address for the person's activity from half an hour
/// before the alert to half an hour after (the history page reads whole
/// days on the school's clock, so the days that hour touches).
pub fn activity_link(school: &str, person: &str, received_at: &str) -> Option<String> {
    let at = received_at.parse::<Timestamp>().ok()?;
    let tz = haven_policy::schedule::london_tz();
    let day = |t: Timestamp| t.to_zoned(tz.clone()).date().to_string();
    let half = SignedDuration::from_mins(30);
    let (from, to) = (day(at.checked_sub(half).ok()?), day(at.checked_add(half).ok()?));
    Some(format!("/history?subject=person&id={}&school={}&from={from}&to={to}", enc(person), enc(school)))
}

/// What the alert page adds for the queue: state buttons, who holds it,
/// the triage note, the guidance and the activity link.
pub async fn alert_panel(s: &Service, w: &Session, d: &AlertDetail) -> String {
    let a = &d.alert;
    let id = a.id;
    let csrf = esc(&w.csrf);
    let (holder, holder_email, note) = s.store.alert_triage(id).await.unwrap_or_default();
    let holder_email = match holder_email {
        Some(e) => Some(s.store.actor_labels(&[e.as_str()]).await.ok().and_then(|mut l| l.remove(e.as_str())).unwrap_or(e)),
        None => None,
    };
    let act = |kind: &str, label: &str| {
        format!(
            "<form method=\"post\" action=\"/alerts/{id}/act\" class=\"inline\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"kind\" value=\"{kind}\"><button>{label}</button></form> "
        )
    };
    let mut states = String::new();
    if a.status != "closed" {
        if matches!(a.status.as_str(), "open" | "acknowledged") {
            states.push_str(&act("triaged", "Triage"));
        }
        if a.status != "escalated" {
            states.push_str(&act("escalated", "Escalate"));
        }
    }
    let people: String = s
        .store
        .assignable(&a.school, &s.store.alert_audience(id).await.ok().flatten().unwrap_or_default())
        .await
        .unwrap_or_default()
        .iter()
        .map(|(pid, email)| format!("<option value=\"{pid}\"{}>{}</option>", if Some(*pid) == holder { " selected" } else { "" }, esc(email)))
        .collect();
    let g = s.store.guidance(&a.category, a.level).await.ok();
    let guidance = g.map_or(String::new(), |g| {
        let edit = if w.account.role.trust_wide() && w.account.role.sees_alerts() {
            format!(
                "<details><summary>Edit the trust's guidance for {} at level {}</summary><form method=\"post\" action=\"/alerts/{id}/guidance\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><label>What to do <textarea name=\"what\">{}</textarea></label>\
                 <label>Who to tell <textarea name=\"tell\">{}</textarea></label><button>Save guidance</button> (empty: Haven's default)</form></details>",
                esc(&a.category),
                a.level,
                esc(&g.what_to_do),
                esc(&g.who_to_tell)
            )
        } else {
            String::new()
        };
        format!(
            "<section id=\"guidance\" class=\"evidence\"><h2>Guidance: {} at level {}</h2><p><strong>What to do:</strong> {}</p><p><strong>Who to tell:</strong> {}</p><p><small>{}</small></p>{edit}</section>",
            esc(&a.category),
            a.level,
            esc(&g.what_to_do),
            esc(&g.who_to_tell),
            g.edited_at.as_deref().map_or("Haven's default, from KCSIE.".to_string(), |t| format!("The trust's, written {}.", esc(&when(t)))),
        )
    });
    let activity = activity_link(&a.school, &a.person, &a.received_at)
        .map_or(String::new(), |href| format!("<p><a id=\"activity\" href=\"{}\">Their activity around this time</a></p>", esc(&href)));
    format!(
        "{guidance}<h2>Triage</h2><p>State <strong id=\"state\">{}</strong>; held by <strong id=\"holder\">{}</strong>.</p><div class=\"states\">{states}</div>\
         <form method=\"post\" action=\"/alerts/{id}/triage\" class=\"inline\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"assign\" value=\"me\"><button>Assign to me</button></form> \
         <form method=\"post\" action=\"/alerts/{id}/triage\" class=\"inline\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><label>Assign to <select name=\"assign\"><option value=\"none\">nobody</option>{people}</select></label> <button>Assign</button></form>\
         <form method=\"post\" action=\"/alerts/{id}/triage\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><label>Triage note <textarea name=\"triage_note\">{}</textarea></label><button>Save note</button></form>{activity}",
        esc(state_label(&a.status)),
        esc(holder_email.as_deref().unwrap_or("nobody")),
        esc(note.as_deref().unwrap_or("")),
    )
}
