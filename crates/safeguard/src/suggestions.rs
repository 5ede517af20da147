//! Suggestions for IT (`/filtering/suggestions`): hosts no list names that
//! people visit often, most visited first, with the hostname model's guess
//! (category, confidence, the pieces of the name that weighed most) and a
//! few page-content verdicts. IT confirms one as a category, which blocks
//! the site in the change register (in force at once, like any change IT
//! makes), or rejects it with a reason. For IT and the trust's
//! administrators only: a school's IT sees its own school's hosts, the
//! trust's accounts every school's and those of people at no school.

use std::collections::HashMap;

use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use haven_policy::Category;
use haven_policy::changes::Aim;
use haven_store::Role;
use haven_store::changes::NewChange;
use haven_store::people::Account;
use haven_store::sessions::Session;
use haven_store::suggestions::{Suggestion, THRESHOLD};
use jiff::Timestamp;

use crate::Service;
use crate::web::{csrf_ok, esc, page, signed_in, with_status};

/// The suggestions routes.
pub fn routes() -> axum::Router<Service> {
    axum::Router::new()
        .route("/filtering/suggestions", get(show))
        .route("/filtering/suggestions/{id}/confirm", post(confirm))
        .route("/filtering/suggestions/{id}/reject", post(reject))
}

/// Who decides what an unlisted site is: IT, and the trust's administrator
/// who stands in for the trust's IT. Safeguarding leads change filtering
/// through the Filtering pages; this queue is IT's housekeeping.
fn may_decide(a: &Account) -> bool {
    matches!(a.role, Role::ItTechnician | Role::ItLead | Role::TrustAdmin)
}

/// The school whose suggestions an account sees; `None`: every school's.
fn scope(a: &Account) -> Option<&str> {
    a.school.as_deref()
}

fn mine(a: &Account, s: &Suggestion) -> bool {
    a.school.is_none() || a.school == s.school
}

async fn allowed(s: &Service, headers: &HeaderMap) -> Result<Session, Response> {
    let w = signed_in(s, headers).await?;
    if !may_decide(&w.account) {
        let body = "<p>IT and the trust's administrators decide what unlisted sites are. To ask for a site to be blocked, use \
                    <a href=\"/filtering\">Filtering</a>.</p>";
        return Err(with_status(page(s, "Not for your role", Some(&w), body), StatusCode::FORBIDDEN));
    }
    Ok(w)
}

async fn posted(s: &Service, headers: &HeaderMap, f: &HashMap<String, String>) -> Result<Session, Response> {
    let w = allowed(s, headers).await?;
    if !csrf_ok(&w.csrf, f.get("csrf")) {
        return Err(with_status(page(s, "Form expired", Some(&w), "<p>Go back, reload the page and try again.</p>"), StatusCode::FORBIDDEN));
    }
    Ok(w)
}

fn refused(s: &Service, w: &Session, why: &str, status: StatusCode) -> Response {
    let body = format!("<p class=\"err\">{}</p><p><a href=\"/filtering/suggestions\">Back to the suggestions</a></p>", esc(why));
    with_status(page(s, "Not done", Some(w), &body), status)
}

fn title(id: &str) -> String {
    Category::from_id(id).map_or_else(|| id.to_string(), |c| c.title().to_string())
}

fn local(s: &Service, school: Option<&str>, t: Timestamp) -> String {
    let tz = school.map_or(jiff::tz::TimeZone::UTC, |sc| s.calendar(sc).tz);
    t.to_zoned(tz).strftime("%a %d %b %H:%M").to_string()
}

/// The categories IT may confirm: every one but the illegal, which only
/// the IWF's list decides.
fn category_options(chosen: Option<&str>) -> String {
    let mut cats: Vec<Category> = Category::ALL.iter().copied().filter(|c| !c.is_illegal()).collect();
    cats.sort_by_key(|c| c.title());
    cats.iter()
        .map(|c| {
            let sel = if Some(c.id()) == chosen { " selected" } else { "" };
            format!("<option value=\"{}\"{sel}>{}</option>", c.id(), esc(c.title()))
        })
        .collect()
}

fn guess_cell(x: &Suggestion) -> String {
    match &x.guess {
        Some(g) => format!(
            "{} <strong>{:.0}%</strong>{}",
            esc(&title(&g.category)),
            g.confidence * 100.0,
            if g.evidence.is_empty() { String::new() } else { format!("<br><small>from: {}</small>", esc(&g.evidence.join(", "))) }
        ),
        None => "<small>no guess</small>".into(),
    }
}

fn samples_cell(x: &Suggestion) -> String {
    if x.samples.is_empty() {
        return "—".into();
    }
    let items: String = x
        .samples
        .iter()
        .map(|v| {
            let cats = v.categories.iter().map(|c| title(c)).collect::<Vec<_>>().join(", ");
            format!("<li><code>{}</code>: {} ({:.2})</li>", esc(&v.url), esc(if cats.is_empty() { "nothing found" } else { &cats }), v.score)
        })
        .collect();
    format!("<ul>{items}</ul>")
}

async fn show(State(s): State<Service>, headers: HeaderMap) -> Response {
    let w = match allowed(&s, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let a = &w.account;
    let (Ok(open), Ok(confirmed), Ok(rejected), Ok(collector)) = (
        s.store.suggestions(scope(a), "open", THRESHOLD, 200).await,
        s.store.suggestions(scope(a), "confirmed", 1, 20).await,
        s.store.suggestions(scope(a), "rejected", 1, 20).await,
        s.store.suggestion_collector().await,
    ) else {
        return with_status(
            page(&s, "Suggestions for IT", Some(&w), "<p class=\"err\">The record could not be read; try again shortly.</p>"),
            StatusCode::SERVICE_UNAVAILABLE,
        );
    };
    if s.store.audit(Timestamp::now(), &format!("account:{}", a.id), "suggestions.read", "suggestions", "").await.is_err() {
        return crate::unaudited();
    }
    let csrf = esc(&w.csrf);
    let rows: String = open
        .iter()
        .map(|x| {
            let school = x.school.as_deref();
            let chosen = x.guess.as_ref().map(|g| g.category.as_str()).filter(|c| Category::from_id(c).is_some_and(|c| !c.is_illegal()));
            format!(
                "<tr><td><strong>{domain}</strong></td><td>{school}</td><td>{hits}</td><td>{people}</td><td>{first} – {last}</td><td>{guess}</td><td>{samples}</td>\
                 <td><form method=\"post\" action=\"/filtering/suggestions/{id}/confirm\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                 <label>Category <select name=\"category\">{options}</select></label><button>Confirm and block</button></form>\
                 <form method=\"post\" action=\"/filtering/suggestions/{id}/reject\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                 <label>Reason <input name=\"reason\" required></label><button>Reject</button></form></td></tr>",
                domain = esc(&x.domain),
                school = esc(school.unwrap_or("trust (no school)")),
                hits = x.hits,
                people = x.people,
                first = esc(&local(&s, school, x.first_seen)),
                last = esc(&local(&s, school, x.last_seen)),
                guess = guess_cell(x),
                samples = samples_cell(x),
                id = x.id,
                options = category_options(chosen),
            )
        })
        .collect();
    let decided: String = confirmed
        .iter()
        .chain(&rejected)
        .map(|x| {
            let what = match (x.status.as_str(), &x.category, x.change_id) {
                ("confirmed", Some(c), Some(id)) => format!("confirmed as {}: <a href=\"/filtering/changes/{id}\">change {id}</a>", esc(&title(c))),
                _ => format!("rejected: {}", esc(x.decision.as_deref().unwrap_or(""))),
            };
            format!(
                "<tr><td>{}</td><td>{}</td><td>{what}</td><td>{}</td><td>{}</td></tr>",
                esc(&x.domain),
                x.hits,
                esc(x.decided_by.as_deref().unwrap_or("")),
                esc(&x.decided_at.map(|t| local(&s, x.school.as_deref(), t)).unwrap_or_default())
            )
        })
        .collect();
    let lost = if collector.not_kept > 0 {
        format!(
            "<p class=\"err\">{} visits to new sites were not counted (last {}): more different unlisted sites were seen in a minute than Haven keeps \
             (20,000). The busiest sites are still counted.</p>",
            collector.not_kept,
            esc(&collector.last_not_kept_at.map(|t| local(&s, None, t)).unwrap_or_default())
        )
    } else {
        String::new()
    };
    let table = if open.is_empty() {
        format!("<p>No unlisted site has had {THRESHOLD} visits yet.</p>")
    } else {
        format!(
            "<table><thead><tr><th>Site</th><th>School</th><th>Visits</th><th>People (at least)</th><th>Seen</th><th>Model's guess</th>\
             <th>Page content</th><th>Decide</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    };
    let decided = if decided.is_empty() {
        String::new()
    } else {
        format!(
            "<h2>Decided</h2><table><thead><tr><th>Site</th><th>Visits</th><th>Decision</th><th>By</th><th>When</th></tr></thead><tbody>{decided}</tbody></table>"
        )
    };
    let body = format!(
        "<p>Sites no list names that people visit, from {THRESHOLD} visits up, most visited first, with what the hostname model \
         makes of the name and what the proxy saw on the pages. Confirming blocks the site for its school in the \
         <a href=\"/filtering/changes\">decision register</a> at once; rejecting keeps it off this list. A decided site keeps being counted \
         but does not come back.</p>{lost}{table}{decided}"
    );
    page(&s, "Suggestions for IT", Some(&w), &body)
}

/// The open suggestion `id` if this account may decide it.
async fn open_one(s: &Service, w: &Session, id: i64) -> Result<Suggestion, Response> {
    match s.store.suggestion(id).await {
        Ok(x) if mine(&w.account, &x) && x.status == "open" => Ok(x),
        Ok(x) if mine(&w.account, &x) => Err(refused(s, w, &format!("{} was already {}", x.domain, x.status), StatusCode::CONFLICT)),
        _ => Err(refused(s, w, "no such suggestion for your school", StatusCode::NOT_FOUND)),
    }
}

async fn confirm(State(s): State<Service>, headers: HeaderMap, Path(id): Path<i64>, Form(f): Form<HashMap<String, String>>) -> Response {
    let w = match posted(&s, &headers, &f).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let x = match open_one(&s, &w, id).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let chosen = f.get("category").map(|c| c.trim()).filter(|c| !c.is_empty()).or(x.guess.as_ref().map(|g| g.category.as_str()));
    let Some(category) = chosen.and_then(Category::from_id).filter(|c| !c.is_illegal()) else {
        return refused(&s, &w, "choose the category the site belongs to", StatusCode::BAD_REQUEST);
    };
    let Ok(Aim::Site(site)) = Aim::parse(Some(&x.domain), None) else {
        return refused(&s, &w, &format!("{} cannot be blocked as a site", x.domain), StatusCode::BAD_REQUEST);
    };
    let model = x.guess.as_ref().map_or_else(|| "no guess".to_string(), |g| format!("{} {:.2}", g.category, g.confidence));
    let reason = format!("Confirmed from the suggestions queue as {}: {} visits, model {model}", category.title(), x.hits);
    // The register holds changes per school: the trust's suggestion blocks
    // the site at every school.
    let schools: Vec<String> = match &x.school {
        Some(school) => vec![school.clone()],
        None => s.settings().policy.schools.iter().map(|sc| sc.id.clone()).collect(),
    };
    let now = Timestamp::now();
    let changes: Vec<NewChange> = schools
        .into_iter()
        .map(|school| NewChange {
            school,
            kind: "change".into(),
            scope: "school".into(),
            scope_id: None,
            verdict: Some("block".into()),
            site: Some(site.clone()),
            category: None,
            reason: reason.clone(),
            starts_at: now,
            until: None,
        })
        .collect();
    match s.store.confirm_suggestion(id, category.id(), &changes, &w.account.email, now).await {
        Ok(_) => Redirect::to("/filtering/suggestions").into_response(),
        Err(e) => refused(&s, &w, &e.to_string(), StatusCode::CONFLICT),
    }
}

async fn reject(State(s): State<Service>, headers: HeaderMap, Path(id): Path<i64>, Form(f): Form<HashMap<String, String>>) -> Response {
    let w = match posted(&s, &headers, &f).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    if let Err(r) = open_one(&s, &w, id).await {
        return r;
    }
    let reason = f.get("reason").map(|r| r.trim()).unwrap_or_default();
    if reason.is_empty() {
        return refused(&s, &w, "say why it is rejected: the next person to look will read it", StatusCode::BAD_REQUEST);
    }
    match s.store.reject_suggestion(id, reason, &w.account.email, Timestamp::now()).await {
        Ok(()) => Redirect::to("/filtering/suggestions").into_response(),
        Err(e) => refused(&s, &w, &e.to_string(), StatusCode::CONFLICT),
    }
}
