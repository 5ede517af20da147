//! The governance record in the web app (`/governance`): acceptable-use
//! agreements (versions per audience, who has accepted and who has not, per
//! class; a parent's single-use link at `/agree/<token>`; paper copies
//! staff record; devices accepting through `/api/v1/agreements/…`), the
//! people named for filtering and monitoring and staff training with what
//! expires, and the filtering and monitoring review: the DfE template's
//! sections prefilled from the record, kept as a draft, signed by the SLT
//! lead, the DSL, IT and the governor, each as themselves, and then kept
//! read-only.
//!
//! Least privilege: school leaders (head, DSL, the trust's leads) publish
//! and name; staff record paper copies and send parents' links; a governor
//! sees how many have signed, never who, and no training names; reviews are
//! for the leadership, IT and governors, not teachers. Every read of names
//! and every write is audited.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json};
use haven_store::Role;
use haven_store::agreements::{Agreement, Audience};
use haven_store::governance::{Figures, GOVERNANCE_ROLES, Review, SIGNERS, TrainingState};
use haven_store::people::Account;
use haven_store::sessions::Session;
use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;
use serde_json::json;

use crate::Service;
use crate::api::{device, problem};
use crate::web::{csrf_ok, esc, page, signed_in, with_status};

/// How long a parent's link works.
pub const LINK_DAYS: i64 = 14;

/// The DfE filtering and monitoring review template's sections: (key, title, what to write).
pub const SECTIONS: [(&str, &str, &str); 8] = [
    ("risk", "Risk profile", "Your pupils: ages, SEND, EAL, vulnerabilities; what they use and where; risks seen this year."),
    ("blocked", "What is blocked and allowed, and why", "The filtering in force and changes made, with the reasons."),
    ("checks", "Checks done", "How filtering and monitoring were checked, how often, what was found and done."),
    ("incidents", "Incidents and alerts in the period", "What monitoring raised and how it was handled; patterns."),
    ("curriculum", "Curriculum and teaching needs", "Where filtering gets in the way of teaching, and what online safety is taught."),
    ("byod", "Devices, including bring your own device", "School and personal devices, guest Wi-Fi, mobile data, how each is covered."),
    ("policies", "Related policies", "Safeguarding and child protection, acceptable use, data protection, behaviour, staff conduct."),
    ("actions", "Actions", "What will change, who owns it and by when."),
];

/// The routes.
pub fn routes() -> axum::Router<Service> {
    axum::Router::new()
        .route("/governance", get(overview))
        .route("/governance/agreements", get(agreements_page).post(publish))
        .route("/governance/agreements/paper", post(paper))
        .route("/governance/agreements/{id}", get(agreement_page))
        .route("/governance/agreements/{id}/links", post(make_links))
        .route("/governance/people", get(people_page))
        .route("/governance/people/roles", post(add_role))
        .route("/governance/people/roles/{id}/end", post(end_role))
        .route("/governance/people/training", post(add_training))
        .route("/governance/reviews", get(reviews_page).post(start_review))
        .route("/governance/reviews/{id}", get(review_page).post(save_review))
        .route("/governance/reviews/{id}/sign", post(sign_review))
        .route("/agree/{token}", get(link_page).post(link_accept))
        .route("/api/v1/agreements/current", get(api_current))
        .route("/api/v1/agreements/accept", post(api_accept))
}

/// Publishes agreements, names the leads, records training.
fn manages(a: &Account) -> bool {
    a.role.trust_wide() || matches!(a.role, Role::Headteacher | Role::Dsl)
}

/// Records paper copies, sends parents' links, sees who has not signed.
fn records(a: &Account) -> bool {
    manages(a) || matches!(a.role, Role::DeputyDsl | Role::Teacher | Role::ItLead | Role::ItTechnician)
}

/// Sees staff training by name.
fn sees_training(a: &Account) -> bool {
    manages(a) || a.role == Role::DeputyDsl
}

/// Reads reviews.
fn reads_reviews(a: &Account) -> bool {
    a.role != Role::Teacher
}

/// Starts and edits reviews.
fn edits_reviews(a: &Account) -> bool {
    a.role.does_it() || matches!(a.role, Role::Headteacher | Role::Dsl | Role::DeputyDsl | Role::TrustSafeguardingLead)
}

/// The review role an account signs as: each signs as themselves, in their own role.
pub fn signs_as(role: Role) -> Option<&'static str> {
    match role {
        Role::Headteacher => Some("slt-lead"),
        Role::Dsl => Some("dsl"),
        Role::ItLead | Role::ItTechnician => Some("it"),
        Role::Governor | Role::ChairOfGovernors => Some("governor"),
        _ => None,
    }
}

fn actor(w: &Session) -> String {
    format!("account:{}", w.account.id)
}

fn fail(s: &Service, w: &Session, title: &str, msg: &str, status: StatusCode) -> Response {
    with_status(page(s, title, Some(w), &format!("<p class=\"err\">{}</p><p><a href=\"/governance\">Back to governance</a></p>", esc(msg))), status)
}

fn csrf_field(w: &Session) -> String {
    format!("<input type=\"hidden\" name=\"csrf\" value=\"{}\">", esc(&w.csrf))
}

fn day(t: Timestamp) -> String {
    t.to_zoned(haven_policy::schedule::london_tz()).strftime("%d %b %Y").to_string()
}

fn date_input(s: &str) -> Option<Timestamp> {
    let d: jiff::civil::Date = s.trim().parse().ok()?;
    d.to_zoned(haven_policy::schedule::london_tz()).ok().map(|z| z.timestamp())
}

/// The school a page is about: the account's own, or for the trust's roles
/// the one asked for (else the first).
async fn school_for(s: &Service, a: &Account, asked: Option<&String>) -> Option<String> {
    if a.role.trust_wide() {
        let schools = s.store.schools().await.ok()?;
        match asked {
            Some(x) if schools.iter().any(|sc| &sc.id == x) => Some(x.clone()),
            _ => schools.first().map(|sc| sc.id.clone()),
        }
    } else {
        a.school.clone()
    }
}

fn covers(a: &Account, school: &str) -> bool {
    a.role.trust_wide() || a.school.as_deref() == Some(school)
}

/// Signed in, and the school the request is about.
async fn who_where(s: &Service, headers: &HeaderMap, asked: Option<&String>) -> Result<(Session, String), Response> {
    let w = signed_in(s, headers).await?;
    match school_for(s, &w.account, asked).await {
        Some(school) => Ok((w, school)),
        None => Err(fail(s, &w, "No school", "Your account belongs to no school, and the trust has none yet.", StatusCode::FORBIDDEN)),
    }
}

fn school_field(school: &str) -> String {
    format!("<input type=\"hidden\" name=\"school\" value=\"{}\">", esc(school))
}

fn subnav(school: &str) -> String {
    let q = format!("?school={}", esc(school));
    format!(
        "<p><a href=\"/governance{q}\">Overview</a> · <a href=\"/governance/agreements{q}\">Acceptable use</a> · <a href=\"/governance/people{q}\">Roles and training</a> · <a href=\"/governance/reviews{q}\">Annual review</a></p>"
    )
}

/// What the review reminder says at `now`.
pub fn due_text(due: Option<Timestamp>, now: Timestamp) -> (bool, String) {
    match due {
        None => (true, "No filtering and monitoring review has been completed yet: one is due now.".into()),
        Some(d) if d <= now => (true, format!("The annual filtering and monitoring review was due on {}: it is overdue.", day(d))),
        Some(d) => (d <= now.saturating_add(SignedDuration::from_hours(24 * 30)).unwrap_or(now), format!("The next annual review is due by {}.", day(d))),
    }
}

// ---------------------------------------------------------------- overview

async fn overview(State(s): State<Service>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    let (w, school) = match who_where(&s, &headers, q.get("school")).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let now = Timestamp::now();
    let mut body = subnav(&school);
    if w.account.role.trust_wide() {
        let schools = s.store.schools().await.unwrap_or_default();
        let links: Vec<String> = schools.iter().map(|sc| format!("<a href=\"/governance?school={}\">{}</a>", esc(&sc.id), esc(&sc.name))).collect();
        body.push_str(&format!("<p>School: <strong>{}</strong> (choose: {})</p>", esc(&school), links.join(" · ")));
    }
    // Reminders.
    let mut reminders = Vec::new();
    let (urgent, text) = due_text(s.store.review_due(&school).await.unwrap_or(None), now);
    if urgent {
        reminders.push(esc(&text));
    }
    let training = s.store.training(&school).await.unwrap_or_default();
    let expired = training.iter().filter(|t| t.state(now) == TrainingState::Expired).count();
    let expiring = training.iter().filter(|t| t.state(now) == TrainingState::Expiring).count();
    if expired + expiring > 0 {
        reminders.push(format!(
            "Training: {expired} record(s) expired, {expiring} expiring within 30 days (<a href=\"/governance/people?school={}\">see which</a>).",
            esc(&school)
        ));
    }
    let holders = s.store.role_holders(&school).await.unwrap_or_default();
    for (role, label) in GOVERNANCE_ROLES {
        if !holders.iter().any(|h| h.role == role && h.ended_at.is_none()) {
            reminders.push(format!("No {} is named.", esc(&label.to_lowercase())));
        }
    }
    if !reminders.is_empty() {
        body.push_str("<h2>Needs attention</h2><ul>");
        for r in reminders {
            body.push_str(&format!("<li class=\"err\">{r}</li>"));
        }
        body.push_str("</ul>");
    }
    body.push_str(&format!("<p>{}</p>", esc(&text)));
    // Agreements coverage (counts only).
    body.push_str(
        "<h2>Acceptable-use agreements in force</h2><table><thead><tr><th>Audience</th><th>Version</th><th>Published</th><th>Accepted</th></tr></thead><tbody>",
    );
    for a in s.store.agreements(&school).await.unwrap_or_default().iter().filter(|a| a.current()) {
        let c = s.store.agreement_coverage(a).await.unwrap_or_default();
        let accepted = if a.audience == Audience::Guest {
            format!("{} guest(s)", s.store.agreement_acceptances(a.id).await.map(|v| v.len()).unwrap_or(0))
        } else {
            format!("{} of {}", c.signed, c.expected)
        };
        body.push_str(&format!(
            "<tr><td>{}</td><td><a href=\"/governance/agreements/{}\">{}</a></td><td>{}</td><td>{accepted}</td></tr>",
            esc(a.audience.label()),
            a.id,
            esc(&a.version),
            day(a.published_at)
        ));
    }
    body.push_str("</tbody></table>");
    page(&s, "Governance of filtering and monitoring", Some(&w), &body)
}

// ---------------------------------------------------------------- agreements

async fn agreements_page(State(s): State<Service>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    let (w, school) = match who_where(&s, &headers, q.get("school")).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let all = s.store.agreements(&school).await.unwrap_or_default();
    let mut body = subnav(&school);
    body.push_str(
        "<p>Each audience has its own agreement. Publishing a new version replaces the one in force: everyone's acceptance of the old one \
         stops being current and they are asked again.</p><table><thead><tr><th>Audience</th><th>Version</th><th>Title</th><th>Published</th><th>State</th></tr></thead><tbody>",
    );
    for a in &all {
        body.push_str(&format!(
            "<tr><td>{}</td><td><a href=\"/governance/agreements/{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(a.audience.label()),
            a.id,
            esc(&a.version),
            esc(&a.title),
            day(a.published_at),
            if a.current() { "in force".to_string() } else { format!("replaced {}", a.superseded_at.map(day).unwrap_or_default()) }
        ));
    }
    body.push_str("</tbody></table>");
    let csrf = csrf_field(&w);
    let sf = school_field(&school);
    if manages(&w.account) {
        let options: String = Audience::ALL.iter().map(|a| format!("<option value=\"{}\">{}</option>", a.as_str(), esc(a.label()))).collect();
        body.push_str(&format!(
            "<h2>Publish a version</h2><form method=\"post\" action=\"/governance/agreements\">{csrf}{sf}\
             <label>Audience <select name=\"audience\">{options}</select></label>\
             <label>Version <input name=\"version\" required maxlength=\"40\" placeholder=\"2026-27\"></label>\
             <label>Title <input name=\"title\" required maxlength=\"200\"></label>\
             <label>Text <textarea name=\"body\" required rows=\"10\"></textarea></label><button>Publish</button></form>"
        ));
    }
    let current: Vec<&Agreement> = all.iter().filter(|a| a.current()).collect();
    if records(&w.account) && !current.is_empty() {
        let options: String =
            current.iter().map(|a| format!("<option value=\"{}\">{} — {}</option>", a.id, esc(a.audience.label()), esc(&a.version))).collect();
        body.push_str(&format!(
            "<h2>Record a paper copy</h2><form method=\"post\" action=\"/governance/agreements/paper\">{csrf}{sf}\
             <label>Agreement <select name=\"agreement\">{options}</select></label>\
             <label>Login of the pupil or member of staff (for a parent: the pupil's; for a guest: their name) <input name=\"person\" required maxlength=\"200\"></label>\
             <label>Name as signed <input name=\"signed_name\" required maxlength=\"200\"></label>\
             <label>Date signed <input type=\"date\" name=\"date\"></label><button>Record paper copy</button></form>"
        ));
    }
    page(&s, "Acceptable-use agreements", Some(&w), &body)
}

async fn publish(State(s): State<Service>, headers: HeaderMap, Form(f): Form<HashMap<String, String>>) -> Response {
    let (w, school) = match who_where(&s, &headers, f.get("school")).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if !csrf_ok(&w.csrf, f.get("csrf")) {
        return fail(&s, &w, "Form expired", "Open the page again and resend.", StatusCode::FORBIDDEN);
    }
    if !manages(&w.account) {
        return fail(&s, &w, "Not for your role", "The headteacher, the DSL and the trust's leads publish agreements.", StatusCode::FORBIDDEN);
    }
    let Some(audience) = f.get("audience").and_then(|a| Audience::parse(a)) else {
        return fail(&s, &w, "Not published", "Choose an audience.", StatusCode::BAD_REQUEST);
    };
    let g = |k: &str| f.get(k).map_or("", String::as_str);
    match s.store.publish_agreement(&school, audience, g("version"), g("title"), g("body"), &actor(&w), Timestamp::now()).await {
        Ok(id) => Redirect::to(&format!("/governance/agreements/{id}")).into_response(),
        Err(e) => fail(&s, &w, "Not published", &e.to_string(), StatusCode::BAD_REQUEST),
    }
}

async fn paper(State(s): State<Service>, headers: HeaderMap, Form(f): Form<HashMap<String, String>>) -> Response {
    let w = match signed_in(&s, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    if !csrf_ok(&w.csrf, f.get("csrf")) {
        return fail(&s, &w, "Form expired", "Open the page again and resend.", StatusCode::FORBIDDEN);
    }
    let agreement = match f.get("agreement").and_then(|a| a.parse::<i64>().ok()) {
        Some(id) => s.store.agreement(id).await.ok().flatten(),
        None => None,
    };
    let Some(a) = agreement.filter(|a| covers(&w.account, &a.school)) else {
        return fail(&s, &w, "Not recorded", "Choose an agreement of your school.", StatusCode::BAD_REQUEST);
    };
    if !records(&w.account) {
        return fail(&s, &w, "Not for your role", "Staff record paper copies; governors see the figures.", StatusCode::FORBIDDEN);
    }
    let now = Timestamp::now();
    let at = f.get("date").and_then(|d| date_input(d)).map_or(now, |t| t.min(now));
    let g = |k: &str| f.get(k).map_or("", String::as_str);
    match s.store.accept_agreement(a.id, g("person"), g("signed_name"), "paper", &actor(&w), at).await {
        Ok(_) => Redirect::to(&format!("/governance/agreements/{}", a.id)).into_response(),
        Err(e) => fail(&s, &w, "Not recorded", &e.to_string(), StatusCode::BAD_REQUEST),
    }
}

async fn agreement_page(State(s): State<Service>, headers: HeaderMap, Path(id): Path<i64>) -> Response {
    let w = match signed_in(&s, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let Some(a) = s.store.agreement(id).await.ok().flatten().filter(|a| covers(&w.account, &a.school)) else {
        return fail(&s, &w, "Not found", "No such agreement at your school.", StatusCode::NOT_FOUND);
    };
    let names = records(&w.account);
    let coverage = s.store.agreement_coverage(&a).await.unwrap_or_default();
    if names && s.store.audit(Timestamp::now(), &actor(&w), "agreement.read", &format!("agreement:{id}"), &a.school).await.is_err() {
        return crate::unaudited();
    }
    let mut body = subnav(&a.school);
    body.push_str(&format!(
        "<p>{} · version <strong>{}</strong> · published {} · {}</p><h2>{}</h2><div class=\"evidence\">{}</div>",
        esc(a.audience.label()),
        esc(&a.version),
        day(a.published_at),
        if a.current() { "in force".to_string() } else { format!("replaced {}", a.superseded_at.map(day).unwrap_or_default()) },
        esc(&a.title),
        esc(&a.body)
    ));
    if a.audience != Audience::Guest {
        body.push_str(&format!("<h2>Who has not accepted this version</h2><p>{} of {} have accepted.</p>", coverage.signed, coverage.expected));
        body.push_str("<table><thead><tr><th>Class</th><th>Accepted</th><th>Not yet</th></tr></thead><tbody>");
        let csrf = csrf_field(&w);
        for (class, (expected, missing)) in &coverage.by_class {
            let who = if names {
                let list: Vec<String> = missing.iter().map(|u| esc(&u.name.clone().map_or(u.login.clone(), |n| format!("{n} ({})", u.login)))).collect();
                let links = if a.audience == Audience::Parent && a.current() && !missing.is_empty() {
                    format!(
                        "<form method=\"post\" action=\"/governance/agreements/{id}/links\">{csrf}<input type=\"hidden\" name=\"class\" value=\"{}\"><button>Make parents' links for this class</button></form>",
                        esc(class)
                    )
                } else {
                    String::new()
                };
                format!("{}{links}", list.join(", "))
            } else {
                format!("{} not yet", missing.len())
            };
            body.push_str(&format!("<tr><td>{}</td><td>{} of {expected}</td><td>{who}</td></tr>", esc(class), expected - missing.len()));
        }
        body.push_str("</tbody></table>");
    }
    if names {
        if a.audience == Audience::Parent && a.current() {
            body.push_str(&format!(
                "<h2>A link for one pupil's parent or carer</h2><form method=\"post\" action=\"/governance/agreements/{id}/links\">{}\
                 <label>Pupil's login <input name=\"person\" required maxlength=\"200\"></label><button>Make link</button></form>\
                 <p>A link works once, for {LINK_DAYS} days, and needs no account.</p>",
                csrf_field(&w)
            ));
        }
        let acc = s.store.agreement_acceptances(id).await.unwrap_or_default();
        body.push_str(&format!(
            "<h2>Accepted ({})</h2><table><thead><tr><th>Person</th><th>Name signed</th><th>How</th><th>When</th></tr></thead><tbody>",
            acc.len()
        ));
        for x in &acc {
            body.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&x.person),
                esc(&x.signed_name),
                esc(&x.method),
                esc(&crate::web::when(&x.accepted_at.to_string()))
            ));
        }
        body.push_str("</tbody></table>");
    }
    page(&s, &format!("Agreement: {}", a.title), Some(&w), &body)
}

fn base_url(headers: &HeaderMap) -> String {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("haven.invalid");
    format!("{}://{host}", if crate::signin::over_https(headers) { "https" } else { "http" })
}

async fn make_links(State(s): State<Service>, headers: HeaderMap, Path(id): Path<i64>, Form(f): Form<HashMap<String, String>>) -> Response {
    let w = match signed_in(&s, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    if !csrf_ok(&w.csrf, f.get("csrf")) {
        return fail(&s, &w, "Form expired", "Open the page again and resend.", StatusCode::FORBIDDEN);
    }
    let Some(a) = s.store.agreement(id).await.ok().flatten().filter(|a| covers(&w.account, &a.school)) else {
        return fail(&s, &w, "Not found", "No such agreement at your school.", StatusCode::NOT_FOUND);
    };
    if !records(&w.account) || a.audience != Audience::Parent {
        return fail(&s, &w, "Not for your role", "Staff make links for parents' agreements.", StatusCode::FORBIDDEN);
    }
    let pupils: Vec<String> = match (f.get("person").map(|p| p.trim().to_lowercase()).filter(|p| !p.is_empty()), f.get("class")) {
        (Some(p), _) => vec![p],
        (None, Some(class)) => {
            let c = s.store.agreement_coverage(&a).await.unwrap_or_default();
            c.by_class.get(class).map(|(_, m)| m.iter().map(|u| u.login.clone()).collect()).unwrap_or_default()
        }
        _ => Vec::new(),
    };
    if pupils.is_empty() {
        return fail(&s, &w, "No link made", "Give a pupil's login, or choose a class with pupils still to accept.", StatusCode::BAD_REQUEST);
    }
    let now = Timestamp::now();
    let expires = now.saturating_add(SignedDuration::from_hours(24 * LINK_DAYS)).unwrap_or(now);
    let base = base_url(&headers);
    let names = s.store.person_names(&a.school, &pupils).await.unwrap_or_default();
    let mut rows = String::new();
    for p in &pupils {
        match s.store.agreement_link(id, p, &actor(&w), now, expires).await {
            Ok(token) => {
                let url = format!("{base}/agree/{token}");
                rows.push_str(&format!(
                    "<tr><td>{}</td><td><a class=\"agree-link\" href=\"{u}\">{u}</a></td></tr>",
                    esc(&names.get(p).map_or(p.clone(), |n| format!("{n} ({p})"))),
                    u = esc(&url)
                ));
            }
            Err(e) => return fail(&s, &w, "No link made", &e.to_string(), StatusCode::BAD_REQUEST),
        }
    }
    let body = format!(
        "<p>Send each parent or carer their own link (by the school's usual messaging). Each works once, until {}. They are not shown again.</p>\
         <table><thead><tr><th>Pupil</th><th>Link</th></tr></thead><tbody>{rows}</tbody></table><p><a href=\"/governance/agreements/{id}\">Back to the agreement</a></p>",
        day(expires)
    );
    page(&s, "Parents' links", Some(&w), &body)
}

// ---------------------------------------------------------------- the parent's link

fn link_gone(s: &Service) -> Response {
    with_status(
        page(
            s,
            "This link cannot be used",
            None,
            "<p>This link has been used already, has expired, or is for an agreement the school has since replaced. Please ask the school for a new one.</p>",
        ),
        StatusCode::NOT_FOUND,
    )
}

async fn link_page(State(s): State<Service>, Path(token): Path<String>) -> Response {
    let Ok(Some(link)) = s.store.agreement_by_link(&token, Timestamp::now()).await else { return link_gone(&s) };
    let a = &link.agreement;
    let pupil = s.store.person_names(&a.school, std::slice::from_ref(&link.person)).await.unwrap_or_default().remove(&link.person);
    let body = format!(
        "<p>{} asks you to read and accept its acceptable-use agreement{}.</p><h2>{}</h2><p>Version {} · published {}</p><div class=\"evidence\">{}</div>\
         <form method=\"post\" action=\"/agree/{}\"><label>Your name <input name=\"carer\" required maxlength=\"200\" autocomplete=\"name\"></label>\
         <button>I accept</button></form><p>This link works once and needs no account.</p>",
        esc(&school_name(&s, &a.school).await),
        pupil.map(|p| format!(" for {}", esc(&p))).unwrap_or_default(),
        esc(&a.title),
        esc(&a.version),
        day(a.published_at),
        esc(&a.body),
        esc(&token)
    );
    page(&s, "Acceptable-use agreement", None, &body)
}

async fn school_name(s: &Service, id: &str) -> String {
    s.store.schools().await.unwrap_or_default().into_iter().find(|sc| sc.id == id).map_or_else(|| "The school".to_string(), |sc| sc.name)
}

/// A cross-site post is refused: when the browser says where the form came
/// from (`Sec-Fetch-Site`, else `Origin`; this site's pages send no referrer,
/// so their own `Origin` may be `null`), it must be this site. The link's
/// token, unguessable and in the form's own address, is what stands in for
/// a CSRF token.
fn same_origin(headers: &HeaderMap) -> bool {
    let said = |name: &str| headers.get(name).and_then(|o| o.to_str().ok());
    if let Some(site) = said("sec-fetch-site") {
        return matches!(site, "same-origin" | "none");
    }
    match said("origin") {
        None | Some("null") => true,
        Some(origin) => origin.split_once("://").is_some_and(|(_, rest)| Some(rest) == said("host")),
    }
}

async fn link_accept(State(s): State<Service>, headers: HeaderMap, Path(token): Path<String>, Form(f): Form<HashMap<String, String>>) -> Response {
    if !same_origin(&headers) {
        return with_status(page(&s, "Not accepted", None, "<p>Please accept from the page the school's link opens.</p>"), StatusCode::FORBIDDEN);
    }
    let carer = f.get("carer").map_or("", String::as_str);
    if carer.trim().is_empty() {
        return with_status(page(&s, "Not accepted", None, "<p class=\"err\">Please give your name. Go back and try again.</p>"), StatusCode::BAD_REQUEST);
    }
    match s.store.accept_by_link(&token, carer, Timestamp::now()).await {
        Ok(Some(a)) => page(
            &s,
            "Thank you",
            None,
            &format!("<p>Thank you, {}. Your acceptance of “{}” (version {}) has been recorded.</p>", esc(carer.trim()), esc(&a.title), esc(&a.version)),
        ),
        Ok(None) => link_gone(&s),
        Err(e) => with_status(page(&s, "Not accepted", None, &format!("<p class=\"err\">{}</p>", esc(&e.to_string()))), StatusCode::BAD_REQUEST),
    }
}

// ---------------------------------------------------------------- devices

#[derive(Deserialize)]
struct CurrentQuery {
    audience: String,
}

/// `GET /api/v1/agreements/current?audience=secondary-pupil`: the version
/// in force at the device's school, for the extension or proxy sign-in to show.
async fn api_current(State(s): State<Service>, headers: HeaderMap, Query(q): Query<CurrentQuery>) -> Response {
    let d = match device(&s, &headers).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let Some(audience) = Audience::parse(&q.audience) else {
        return problem(StatusCode::BAD_REQUEST, "audience is one of primary-pupil, secondary-pupil, staff, parent, guest");
    };
    match s.store.current_agreement(&d.school, audience).await {
        Ok(Some(a)) => Json(
            json!({"id": a.id, "audience": a.audience, "version": a.version, "title": a.title, "text": a.body, "published_at": a.published_at.to_string()}),
        )
        .into_response(),
        Ok(None) => problem(StatusCode::NOT_FOUND, "no agreement for that audience is in force at this school"),
        Err(e) => problem(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AcceptBody {
    person: String,
    audience: String,
    version: String,
    #[serde(default)]
    accepted_at: Option<String>,
}

/// `POST /api/v1/agreements/accept`: a person accepted the version in force
/// on a device (the extension, or the proxy's sign-in page).
async fn api_accept(State(s): State<Service>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let d = match device(&s, &headers).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let b: AcceptBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return problem(StatusCode::BAD_REQUEST, &format!("expected {{\"person\", \"audience\", \"version\", \"accepted_at\"}} ({e})")),
    };
    let Some(audience) = Audience::parse(&b.audience) else { return problem(StatusCode::BAD_REQUEST, "unknown audience") };
    let person = b.person.trim().to_lowercase();
    if person.is_empty() {
        return problem(StatusCode::BAD_REQUEST, "whose acceptance? send person");
    }
    let now = Timestamp::now();
    let current = match s.store.current_agreement(&d.school, audience).await {
        Ok(Some(a)) => a,
        Ok(None) => return problem(StatusCode::CONFLICT, "no agreement for that audience is in force at this school"),
        Err(e) => return problem(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    if current.version != b.version {
        return problem(StatusCode::CONFLICT, &format!("version {:?} is not the one in force ({:?}); ask for it again", b.version, current.version));
    }
    let at = b.accepted_at.as_deref().and_then(|t| t.parse::<Timestamp>().ok()).map_or(now, |t| t.min(now).max(current.published_at));
    let name = s.store.person_names(&d.school, std::slice::from_ref(&person)).await.unwrap_or_default().remove(&person).unwrap_or_else(|| person.clone());
    match s.store.accept_agreement(current.id, &person, &name, "device", &format!("device:{}", d.id), at).await {
        Ok(new) => {
            (if new { StatusCode::CREATED } else { StatusCode::OK }, Json(json!({"recorded": true, "new": new, "agreement": current.id}))).into_response()
        }
        Err(e) => problem(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

// ---------------------------------------------------------------- roles and training

async fn people_page(State(s): State<Service>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    let (w, school) = match who_where(&s, &headers, q.get("school")).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let now = Timestamp::now();
    let holders = s.store.role_holders(&school).await.unwrap_or_default();
    let csrf = csrf_field(&w);
    let sf = school_field(&school);
    let mut body = subnav(&school);
    body.push_str("<h2>Named for filtering and monitoring</h2><table><thead><tr><th>Role</th><th>Name</th><th>Contact</th><th>Responsibilities</th><th>Since</th><th></th></tr></thead><tbody>");
    for h in &holders {
        let label = GOVERNANCE_ROLES.iter().find(|(r, _)| *r == h.role).map_or(h.role.as_str(), |(_, l)| l);
        let end = match h.ended_at {
            Some(e) => format!("ended {}", day(e)),
            None if manages(&w.account) => {
                format!("<form method=\"post\" action=\"/governance/people/roles/{}/end\">{csrf}{sf}<button>No longer in this role</button></form>", h.id)
            }
            None => String::new(),
        };
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"note\">{}</td><td>{}</td><td>{end}</td></tr>",
            esc(label),
            esc(&h.name),
            esc(&h.contact),
            esc(&h.responsibilities),
            day(h.since)
        ));
    }
    body.push_str("</tbody></table>");
    if manages(&w.account) {
        let options: String = GOVERNANCE_ROLES.iter().map(|(r, l)| format!("<option value=\"{r}\">{}</option>", esc(l))).collect();
        body.push_str(&format!(
            "<h3>Name someone</h3><form method=\"post\" action=\"/governance/people/roles\">{csrf}{sf}<label>Role <select name=\"role\">{options}</select></label>\
             <label>Name <input name=\"name\" required maxlength=\"200\"></label><label>Contact <input name=\"contact\" maxlength=\"200\"></label>\
             <label>Responsibilities <textarea name=\"responsibilities\" required></textarea></label><button>Add</button></form>"
        ));
    }
    let training = s.store.training(&school).await.unwrap_or_default();
    let count = |st| training.iter().filter(|t| t.state(now) == st).count();
    body.push_str(&format!(
        "<h2>Staff training</h2><p>{} record(s): <strong>{} expired</strong>, <strong>{} expiring within 30 days</strong>, {} current.</p>",
        training.len(),
        count(TrainingState::Expired),
        count(TrainingState::Expiring),
        count(TrainingState::Current)
    ));
    if sees_training(&w.account) {
        if s.store.audit(now, &actor(&w), "governance.training.read", "training", &school).await.is_err() {
            return crate::unaudited();
        }
        body.push_str("<table><thead><tr><th>Who</th><th>Training</th><th>Done</th><th>Expires</th><th>State</th></tr></thead><tbody>");
        for t in &training {
            let state = match t.state(now) {
                TrainingState::Expired => "<strong class=\"err\">expired</strong>",
                TrainingState::Expiring => "<strong class=\"overdue\">expires within 30 days</strong>",
                TrainingState::Current => "current",
            };
            body.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{state}</td></tr>",
                esc(&t.person),
                esc(&t.course),
                day(t.completed_at),
                t.expires_at.map_or_else(|| "does not expire".into(), day)
            ));
        }
        body.push_str("</tbody></table>");
    }
    if manages(&w.account) {
        body.push_str(&format!(
            "<h3>Record training</h3><form method=\"post\" action=\"/governance/people/training\">{csrf}{sf}\
             <label>Who <input name=\"person\" required maxlength=\"200\"></label><label>Training <input name=\"course\" required maxlength=\"300\"></label>\
             <label>Done on <input type=\"date\" name=\"completed\" required></label><label>Expires on (if it does) <input type=\"date\" name=\"expires\"></label>\
             <button>Record training</button></form>"
        ));
    }
    page(&s, "Roles and training", Some(&w), &body)
}

async fn add_role(State(s): State<Service>, headers: HeaderMap, Form(f): Form<HashMap<String, String>>) -> Response {
    let (w, school) = match who_where(&s, &headers, f.get("school")).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if !csrf_ok(&w.csrf, f.get("csrf")) {
        return fail(&s, &w, "Form expired", "Open the page again and resend.", StatusCode::FORBIDDEN);
    }
    if !manages(&w.account) {
        return fail(&s, &w, "Not for your role", "The headteacher, the DSL and the trust's leads name the roles.", StatusCode::FORBIDDEN);
    }
    let g = |k: &str| f.get(k).map_or("", String::as_str);
    match s.store.add_role_holder(&school, g("role"), g("name"), g("contact"), g("responsibilities"), &actor(&w), Timestamp::now()).await {
        Ok(_) => Redirect::to(&format!("/governance/people?school={school}")).into_response(),
        Err(e) => fail(&s, &w, "Not saved", &e.to_string(), StatusCode::BAD_REQUEST),
    }
}

async fn end_role(State(s): State<Service>, headers: HeaderMap, Path(id): Path<i64>, Form(f): Form<HashMap<String, String>>) -> Response {
    let (w, school) = match who_where(&s, &headers, f.get("school")).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if !csrf_ok(&w.csrf, f.get("csrf")) {
        return fail(&s, &w, "Form expired", "Open the page again and resend.", StatusCode::FORBIDDEN);
    }
    if !manages(&w.account) {
        return fail(&s, &w, "Not for your role", "The headteacher, the DSL and the trust's leads name the roles.", StatusCode::FORBIDDEN);
    }
    match s.store.end_role_holder(&school, id, &actor(&w), Timestamp::now()).await {
        Ok(true) => Redirect::to(&format!("/governance/people?school={school}")).into_response(),
        Ok(false) => fail(&s, &w, "Not found", "No such role holder at your school.", StatusCode::NOT_FOUND),
        Err(e) => fail(&s, &w, "Not saved", &e.to_string(), StatusCode::BAD_REQUEST),
    }
}

async fn add_training(State(s): State<Service>, headers: HeaderMap, Form(f): Form<HashMap<String, String>>) -> Response {
    let (w, school) = match who_where(&s, &headers, f.get("school")).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if !csrf_ok(&w.csrf, f.get("csrf")) {
        return fail(&s, &w, "Form expired", "Open the page again and resend.", StatusCode::FORBIDDEN);
    }
    if !manages(&w.account) {
        return fail(&s, &w, "Not for your role", "The headteacher, the DSL and the trust's leads record training.", StatusCode::FORBIDDEN);
    }
    let Some(done) = f.get("completed").and_then(|d| date_input(d)) else {
        return fail(&s, &w, "Not saved", "Give the date the training was done.", StatusCode::BAD_REQUEST);
    };
    let expires = f.get("expires").filter(|e| !e.trim().is_empty()).map(|e| date_input(e));
    if expires == Some(None) {
        return fail(&s, &w, "Not saved", "The expiry date is not a date.", StatusCode::BAD_REQUEST);
    }
    let g = |k: &str| f.get(k).map_or("", String::as_str);
    match s.store.add_training(&school, g("person"), g("course"), done, expires.flatten(), &actor(&w), Timestamp::now()).await {
        Ok(_) => Redirect::to(&format!("/governance/people?school={school}")).into_response(),
        Err(e) => fail(&s, &w, "Not saved", &e.to_string(), StatusCode::BAD_REQUEST),
    }
}

// ---------------------------------------------------------------- the review

/// The sections a new review starts with: the record's figures written out
/// where the template asks for them; the rest left for the leads.
pub fn prefill(f: &Figures, agreements: &[(Agreement, usize, usize)], holders: &[haven_store::governance::RoleHolder]) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = SECTIONS.iter().map(|(k, _, _)| ((*k).to_string(), String::new())).collect();
    let mut blocked = String::from("From the change register (filtering changes made or decided in the period):\n");
    if f.changes.is_empty() {
        blocked.push_str("- none: the filtering in force is the trust's base policy.\n");
    }
    for (verdict, scope, what, reason) in &f.changes {
        let scope = if scope == "user" { "one person".to_string() } else { scope.clone() };
        blocked.push_str(&format!("- {verdict} {what} for {scope}{}\n", reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default()));
    }
    if !f.requests.is_empty() {
        let parts: Vec<String> = f.requests.iter().map(|(k, n)| format!("{n} {k}")).collect();
        blocked.push_str(&format!("Requests and changes by state: {}.\n", parts.join(", ")));
    }
    out.insert("blocked".into(), blocked);
    out.insert(
        "checks".into(),
        format!(
            "From the filtering checks log: {} check run(s), {} probe(s), {} failed ({} with a follow-up recorded).\n",
            f.check_runs, f.checks.0, f.checks.1, f.checks_followed_up
        ),
    );
    let total: i64 = f.alerts.values().sum();
    let mut inc = format!("Alerts raised in the period: {total}.\n");
    for ((cat, level), n) in &f.alerts {
        inc.push_str(&format!("- {cat}, level {level}: {n}\n"));
    }
    let raised: i64 = f.incidents.values().sum();
    inc.push_str(&format!("Incidents raised: {raised}"));
    if !f.incidents.is_empty() {
        let parts: Vec<String> = f.incidents.iter().map(|(k, n)| format!("{k} {n}")).collect();
        inc.push_str(&format!(" ({})", parts.join(", ")));
    }
    inc.push_str(&format!(".\nIncidents open at the end of the period: {}.\n", f.incidents_open));
    out.insert("incidents".into(), inc);
    let mut pol = String::from("Acceptable-use agreements in force:\n");
    if agreements.is_empty() {
        pol.push_str("- none published in Haven.\n");
    }
    for (a, signed, expected) in agreements {
        let cover = if a.audience == Audience::Guest { String::new() } else { format!(": {signed} of {expected} accepted") };
        pol.push_str(&format!("- {} version {} (published {}){cover}\n", a.audience.label(), a.version, day(a.published_at)));
    }
    let named: Vec<String> = holders.iter().filter(|h| h.ended_at.is_none()).map(|h| format!("{} ({})", h.name, h.role)).collect();
    if !named.is_empty() {
        pol.push_str(&format!("Named for filtering and monitoring: {}.\n", named.join(", ")));
    }
    out.insert("policies".into(), pol);
    out
}

async fn reviews_page(State(s): State<Service>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    let (w, school) = match who_where(&s, &headers, q.get("school")).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if !reads_reviews(&w.account) {
        return fail(&s, &w, "Not for your role", "The review is for the leadership, the DSL, IT and governors.", StatusCode::FORBIDDEN);
    }
    let now = Timestamp::now();
    let (urgent, text) = due_text(s.store.review_due(&school).await.unwrap_or(None), now);
    let mut body = subnav(&school);
    body.push_str(&format!("<p{}>{}</p>", if urgent { " class=\"err\"" } else { "" }, esc(&text)));
    body.push_str("<table><thead><tr><th>Review</th><th>Kind</th><th>Period</th><th>State</th><th>Signed</th></tr></thead><tbody>");
    for r in s.store.reviews(&school).await.unwrap_or_default() {
        let signed = s.store.review(r.id).await.ok().flatten().map_or(0, |x| x.signoffs.len());
        body.push_str(&format!(
            "<tr><td><a href=\"/governance/reviews/{}\">Review {}</a></td><td>{}{}</td><td>{} to {}</td><td>{}</td><td>{signed} of 4</td></tr>",
            r.id,
            r.id,
            esc(&r.kind),
            if r.reason.is_empty() { String::new() } else { format!(": {}", esc(&r.reason)) },
            day(r.period_from),
            day(r.period_to),
            if r.state == "complete" { format!("complete {}", r.completed_at.map(day).unwrap_or_default()) } else { "draft".into() }
        ));
    }
    body.push_str("</tbody></table>");
    if edits_reviews(&w.account) {
        let csrf = csrf_field(&w);
        let sf = school_field(&school);
        let today = now.to_zoned(haven_policy::schedule::london_tz()).date();
        let year_ago = today.saturating_sub(jiff::Span::new().years(1));
        body.push_str(&format!(
            "<h2>Start a review</h2><form method=\"post\" action=\"/governance/reviews\">{csrf}{sf}\
             <label>Kind <select name=\"kind\"><option value=\"annual\">Annual review</option><option value=\"triggered\">Triggered review (a new risk, new technology)</option></select></label>\
             <label>Why (for a triggered review) <input name=\"reason\" maxlength=\"500\" placeholder=\"New technology: pupils' tablets from September\"></label>\
             <label>Period from <input type=\"date\" name=\"from\" value=\"{year_ago}\" required></label><label>to <input type=\"date\" name=\"to\" value=\"{today}\" required></label>\
             <button>Start review</button></form><p>The sections are filled in from the record for the period: the change register, the filtering checks, alerts and incidents, and agreements.</p>"
        ));
    }
    page(&s, "Filtering and monitoring review", Some(&w), &body)
}

async fn start_review(State(s): State<Service>, headers: HeaderMap, Form(f): Form<HashMap<String, String>>) -> Response {
    let (w, school) = match who_where(&s, &headers, f.get("school")).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if !csrf_ok(&w.csrf, f.get("csrf")) {
        return fail(&s, &w, "Form expired", "Open the page again and resend.", StatusCode::FORBIDDEN);
    }
    if !edits_reviews(&w.account) {
        return fail(&s, &w, "Not for your role", "The leadership, the DSL and IT start reviews.", StatusCode::FORBIDDEN);
    }
    let now = Timestamp::now();
    let (Some(from), Some(to)) = (f.get("from").and_then(|d| date_input(d)), f.get("to").and_then(|d| date_input(d))) else {
        return fail(&s, &w, "Not started", "Give the period the review covers.", StatusCode::BAD_REQUEST);
    };
    // The last day is included.
    let to = to.saturating_add(SignedDuration::from_hours(24)).unwrap_or(to);
    let figures = match s.store.review_figures(&school, from, to).await {
        Ok(f) => f,
        Err(e) => return fail(&s, &w, "Not started", &e.to_string(), StatusCode::SERVICE_UNAVAILABLE),
    };
    let mut agreements = Vec::new();
    for a in s.store.agreements(&school).await.unwrap_or_default().into_iter().filter(Agreement::current) {
        let c = s.store.agreement_coverage(&a).await.unwrap_or_default();
        agreements.push((a, c.signed, c.expected));
    }
    let holders = s.store.role_holders(&school).await.unwrap_or_default();
    let sections = prefill(&figures, &agreements, &holders);
    let g = |k: &str| f.get(k).map_or("", String::as_str);
    let reason = if g("kind") == "triggered" { g("reason") } else { "" };
    match s.store.start_review(&school, g("kind"), reason, from, to, &sections, &actor(&w), now).await {
        Ok(id) => Redirect::to(&format!("/governance/reviews/{id}")).into_response(),
        Err(e) => fail(&s, &w, "Not started", &e.to_string(), StatusCode::BAD_REQUEST),
    }
}

async fn review_for(s: &Service, w: &Session, id: i64) -> Result<Review, Response> {
    if !reads_reviews(&w.account) {
        return Err(fail(s, w, "Not for your role", "The review is for the leadership, the DSL, IT and governors.", StatusCode::FORBIDDEN));
    }
    match s.store.review(id).await {
        Ok(Some(r)) if covers(&w.account, &r.school) => Ok(r),
        Ok(_) => Err(fail(s, w, "Not found", "No such review at your school.", StatusCode::NOT_FOUND)),
        Err(e) => Err(fail(s, w, "Not available", &e.to_string(), StatusCode::SERVICE_UNAVAILABLE)),
    }
}

async fn review_page(State(s): State<Service>, headers: HeaderMap, Path(id): Path<i64>) -> Response {
    let w = match signed_in(&s, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let r = match review_for(&s, &w, id).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    if s.store.audit(Timestamp::now(), &actor(&w), "review.read", &format!("review:{id}"), &r.school).await.is_err() {
        return crate::unaudited();
    }
    let complete = r.state == "complete";
    let mut body = subnav(&r.school);
    body.push_str(&format!(
        "<p>{} review{} of {} to {} · started {} · <strong>{}</strong></p>",
        if r.kind == "triggered" { "Triggered" } else { "Annual" },
        if r.reason.is_empty() { String::new() } else { format!(" ({})", esc(&r.reason)) },
        day(r.period_from),
        day(r.period_to.saturating_sub(SignedDuration::from_hours(24)).unwrap_or(r.period_to)),
        day(r.created_at),
        if complete { format!("complete, signed by all four on {}", r.completed_at.map(day).unwrap_or_default()) } else { "draft".into() }
    ));
    let editable = !complete && edits_reviews(&w.account);
    if editable {
        body.push_str(&format!("<form method=\"post\" action=\"/governance/reviews/{id}\">{}", csrf_field(&w)));
    }
    for (key, title, hint) in SECTIONS {
        let text = r.sections.get(key).map_or("", String::as_str);
        body.push_str(&format!("<h2 id=\"{key}\">{}</h2>", esc(title)));
        if editable {
            body.push_str(&format!(
                "<label><span class=\"vh\">{}</span><textarea name=\"s_{key}\" rows=\"6\" placeholder=\"{}\">{}</textarea></label>",
                esc(title),
                esc(hint),
                esc(text)
            ));
        } else {
            body.push_str(&format!(
                "<div class=\"note section\" data-section=\"{key}\">{}</div>",
                if text.is_empty() { "<em>(nothing written)</em>".into() } else { esc(text) }
            ));
        }
    }
    if editable {
        body.push_str(
            "<p><button>Save draft</button></p></form><p>Saving changed words withdraws any signatures already given, since they signed the old ones.</p>",
        );
    }
    body.push_str("<h2>Sign-off</h2><table><thead><tr><th>Role</th><th>Signed by</th><th>When</th></tr></thead><tbody>");
    for (role, label) in SIGNERS {
        let (who, when) = r
            .signoffs
            .iter()
            .find(|x| x.role == role)
            .map_or(("<em>not yet</em>".to_string(), String::new()), |x| (esc(&x.signed_as), esc(&crate::web::when(&x.signed_at.to_string()))));
        body.push_str(&format!("<tr><td>{label}</td><td class=\"signed-{role}\">{who}</td><td>{when}</td></tr>"));
    }
    body.push_str("</tbody></table>");
    if !complete && let Some(role) = signs_as(w.account.role) {
        let mine = r.signoffs.iter().any(|x| x.account == w.account.id);
        let taken = r.signoffs.iter().any(|x| x.role == role);
        let label = SIGNERS.iter().find(|(r, _)| *r == role).map_or(role, |(_, l)| l);
        if !mine && !taken {
            body.push_str(&format!(
                "<form method=\"post\" action=\"/governance/reviews/{id}/sign\">{}<p>By signing you confirm, as the {label}, that this review is complete and accurate.</p><button>Sign as {label}</button></form>",
                csrf_field(&w)
            ));
        }
    }
    page(&s, &format!("Filtering and monitoring review {id}"), Some(&w), &body)
}

async fn save_review(State(s): State<Service>, headers: HeaderMap, Path(id): Path<i64>, Form(f): Form<HashMap<String, String>>) -> Response {
    let w = match signed_in(&s, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    if !csrf_ok(&w.csrf, f.get("csrf")) {
        return fail(&s, &w, "Form expired", "Open the page again and resend.", StatusCode::FORBIDDEN);
    }
    let r = match review_for(&s, &w, id).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    if !edits_reviews(&w.account) {
        return fail(&s, &w, "Not for your role", "The leadership, the DSL and IT write the review; governors read and sign it.", StatusCode::FORBIDDEN);
    }
    let mut sections = r.sections.clone();
    for (key, _, _) in SECTIONS {
        if let Some(v) = f.get(&format!("s_{key}")) {
            if v.chars().count() > 20_000 {
                return fail(&s, &w, "Not saved", "A section is at most 20,000 characters.", StatusCode::BAD_REQUEST);
            }
            sections.insert(key.to_string(), v.replace("\r\n", "\n"));
        }
    }
    if sections == r.sections {
        return Redirect::to(&format!("/governance/reviews/{id}")).into_response();
    }
    match s.store.save_review(id, &sections, &actor(&w), Timestamp::now()).await {
        Ok(_) => Redirect::to(&format!("/governance/reviews/{id}")).into_response(),
        Err(e) => fail(&s, &w, "Not saved", &e.to_string(), StatusCode::CONFLICT),
    }
}

async fn sign_review(State(s): State<Service>, headers: HeaderMap, Path(id): Path<i64>, Form(f): Form<HashMap<String, String>>) -> Response {
    let w = match signed_in(&s, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    if !csrf_ok(&w.csrf, f.get("csrf")) {
        return fail(&s, &w, "Form expired", "Open the page again and resend.", StatusCode::FORBIDDEN);
    }
    if let Err(resp) = review_for(&s, &w, id).await {
        return resp;
    }
    let Some(role) = signs_as(w.account.role) else {
        return fail(&s, &w, "Not for your role", "The SLT lead (headteacher), the DSL, IT and the governor sign the review.", StatusCode::FORBIDDEN);
    };
    let key = format!("account:{}", w.account.id);
    let label = s.store.actor_labels(std::slice::from_ref(&key)).await.ok().and_then(|m| m.get(&key).cloned()).unwrap_or_else(|| w.account.email.clone());
    match s.store.sign_review(id, role, w.account.id, &label, Timestamp::now()).await {
        Ok(_) => Redirect::to(&format!("/governance/reviews/{id}")).into_response(),
        Err(e) => fail(&s, &w, "Not signed", &e.to_string(), StatusCode::CONFLICT),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_signs_in_their_own_role_and_teachers_do_not() {
        assert_eq!(signs_as(Role::Headteacher), Some("slt-lead"));
        assert_eq!(signs_as(Role::Dsl), Some("dsl"));
        assert_eq!(signs_as(Role::ItTechnician), Some("it"));
        assert_eq!(signs_as(Role::Governor), Some("governor"));
        assert_eq!(signs_as(Role::Teacher), None);
        assert_eq!(signs_as(Role::TrustAdmin), None);
    }

    #[test]
    fn the_prefill_writes_the_figures_and_leaves_out_who_a_change_was_for() {
        let mut f = Figures::default();
        f.alerts.insert(("Bullying".into(), 3), 4);
        f.incidents.insert("safeguarding".into(), 2);
        f.checks = (16, 1);
        f.check_runs = 2;
        f.changes.push(("allow".into(), "group".into(), "youtube.com".into(), Some("Year 9 history videos".into())));
        f.changes.push(("block".into(), "user".into(), "example.com".into(), None));
        let p = prefill(&f, &[], &[]);
        assert_eq!(p.len(), SECTIONS.len());
        assert!(p["blocked"].contains("allow youtube.com for group: Year 9 history videos"));
        assert!(p["blocked"].contains("block example.com for one person\n"));
        assert!(p["checks"].contains("2 check run(s), 16 probe(s), 1 failed"));
        assert!(p["incidents"].contains("Alerts raised in the period: 4") && p["incidents"].contains("Incidents raised: 2"));
        assert!(p["risk"].is_empty() && p["actions"].is_empty());
    }

    #[test]
    fn the_review_reminder() {
        let now: Timestamp = "2027-06-01T12:00:00Z".parse().unwrap();
        assert!(due_text(None, now).0);
        assert!(due_text(Some("2027-05-01T00:00:00Z".parse().unwrap()), now).1.contains("overdue"));
        assert!(due_text(Some("2027-06-20T00:00:00Z".parse().unwrap()), now).0, "within a month");
        assert!(!due_text(Some("2027-12-01T00:00:00Z".parse().unwrap()), now).0);
    }
}
