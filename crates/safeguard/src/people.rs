//! People as staff see them: "Amy Pupil (Year 10, 10GH) — amy.pupil" from
//! the MIS directory (`haven_store::directory`) on alerts, chronologies and
//! incidents; the person search (`/people`); alerts about a login nobody
//! knows, flagged unidentified and matched to a pupil by a DSL
//! (`/alerts/{id}/match`); and findings from an address with no person,
//! which point at the device's history instead.

use std::collections::{HashMap, HashSet};

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use haven_store::alerts::Alert;
use haven_store::directory::{Person, PersonKind};
use jiff::Timestamp;

use crate::web::{csrf_ok, esc, page, signed_in, with_status};
use crate::{Service, Settings};

/// The person search and the DSL's match of an unidentified alert.
pub fn routes() -> axum::Router<Service> {
    axum::Router::new().route("/people", get(search)).route("/alerts/{id}/match", post(match_alert))
}

/// The address a filter finding came from when nobody was signed in: the
/// DNS filter and the proxy name such findings "device at ADDRESS".
#[must_use]
pub fn device_address(person: &str) -> Option<&str> {
    person.strip_prefix("device at ").filter(|a| !a.is_empty())
}

/// Whether an event's person is a login the trust's directory does not
/// know. A trust with no users configured has no directory, so nobody is
/// unidentified; findings from an address are "no person", not a login.
#[must_use]
pub fn unidentified(settings: &Settings, person: &str) -> bool {
    device_address(person).is_none() && !settings.groups_by_user.is_empty() && !settings.groups_by_user.contains_key(&person.trim().to_lowercase())
}

/// "Amy Pupil (Year 10, 10GH) — amy.pupil", as HTML. The login stays in
/// view: it is what the filters' logs and the MIS call them.
pub(crate) fn describe(person: Option<&Person>, login: &str, flagged: bool) -> String {
    if let Some(address) = device_address(login) {
        return format!(
            "No person identified — device at {} (<a href=\"/history?subject=device&amp;id={}\">device history</a>)",
            esc(address),
            crate::history::enc(address)
        );
    }
    if flagged {
        return format!("<span class=\"unidentified\">Unidentified: {}</span>", esc(login));
    }
    let Some(p) = person.filter(|p| p.row.display_name.is_some()) else { return esc(login) };
    let about: Vec<&str> = [p.row.year.as_deref(), p.row.form.as_deref()].into_iter().flatten().collect();
    let mut out = esc(p.row.display_name.as_deref().unwrap_or_default());
    if !about.is_empty() {
        out.push_str(&format!(" ({})", esc(&about.join(", "))));
    }
    if p.row.kind == PersonKind::Staff {
        out.push_str(" (staff)");
    }
    out.push_str(&format!(" — {}", esc(login)));
    if p.left_at.is_some() {
        out.push_str(" (left)");
    }
    out
}

/// Each alert's person as HTML, by alert id.
pub(crate) async fn labels(s: &Service, alerts: &[Alert]) -> HashMap<i64, String> {
    let keys: Vec<(String, String)> = alerts.iter().map(|a| (a.school.clone(), a.person.clone())).collect();
    let people = s.store.people_for(&keys).await.unwrap_or_default();
    let ids: Vec<i64> = alerts.iter().map(|a| a.id).collect();
    let flagged: HashSet<i64> = s.store.unidentified_among(&ids).await.unwrap_or_default();
    alerts.iter().map(|a| (a.id, describe(people.get(&(a.school.clone(), a.person.clone())), &a.person, flagged.contains(&a.id)))).collect()
}

/// One person at a school as HTML (chronology and incident pages).
pub(crate) async fn label(s: &Service, school: &str, login: &str) -> String {
    describe(s.store.person(school, login).await.ok().flatten().as_ref(), login, false)
}

/// One person at a school as plain text, for a page's title: "Amy Pupil — amy.pupil".
pub(crate) async fn title(s: &Service, school: &str, login: &str) -> String {
    match s.store.person(school, login).await.ok().flatten().and_then(|p| p.row.display_name) {
        Some(name) => format!("{name} — {login}"),
        None => login.to_string(),
    }
}

/// A school's name, or its id when the record does not know it.
pub(crate) async fn school_name(s: &Service, id: &str) -> String {
    s.store.schools().await.unwrap_or_default().into_iter().find(|x| x.id == id).map_or_else(|| id.to_string(), |x| x.name)
}

/// The "match to a pupil" form on an unidentified alert, with the people
/// whose login or name starts like the one sent offered first.
pub(crate) async fn match_form(s: &Service, id: i64, school: &str, login: &str, csrf: &str) -> String {
    let stem: String = login.split(['.', '@', ' ']).next().unwrap_or(login).chars().take(12).collect();
    let near = s.store.search_people(Some(&[school.to_string()]), &stem, 20).await.unwrap_or_default();
    let options: String = near
        .iter()
        .filter(|p| p.left_at.is_none())
        .map(|p| format!("<option value=\"{}\">{}</option>", esc(&p.row.login), esc(p.row.display_name.as_deref().unwrap_or(&p.row.login))))
        .collect();
    format!(
        "<h2>Who is this?</h2><p>Nobody in the MIS has the login <strong>{}</strong>: a typing slip, or an account Haven does not know. \
         Match it to the pupil it is about; the alert then joins their chronology.</p>\
         <form id=\"match\" method=\"post\" action=\"/alerts/{id}/match\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <label>Pupil's login <input name=\"login\" list=\"match-people\" required></label><datalist id=\"match-people\">{options}</datalist> \
         <button>Match to this pupil</button></form><p><a href=\"/people?q={}\">Search people</a></p>",
        esc(login),
        esc(csrf),
        crate::history::enc(&stem)
    )
}

async fn match_alert(State(s): State<Service>, headers: HeaderMap, Path(id): Path<i64>, Form(f): Form<HashMap<String, String>>) -> Response {
    let w = match signed_in(&s, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    if !csrf_ok(&w.csrf, f.get("csrf")) {
        return with_status(
            page(&s, "Form expired", Some(&w), "<p class=\"err\">That form was not sent from this session. Go back, reload, and try again.</p>"),
            StatusCode::FORBIDDEN,
        );
    }
    let now = Timestamp::now();
    let actor = format!("account:{}", w.account.id);
    // Only someone who may read the alert may say who it is about.
    let visible = w.account.role.sees_alerts() && matches!(s.store.alert_detail(&w.account, id).await, Ok(Some(_)));
    if !visible {
        let _ = s.store.audit(now, &actor, "alert.match.denied", &format!("alert:{id}"), w.account.role.as_str()).await;
        return with_status(page(&s, "Alert not found", Some(&w), "<p>There is no such alert that you may act on.</p>"), StatusCode::NOT_FOUND);
    }
    let login = f.get("login").map_or("", |l| l.trim());
    match s.store.match_alert(id, login, &actor, now).await {
        Ok(_) => Redirect::to(&format!("/alerts/{id}")).into_response(),
        Err(e) => with_status(page(&s, "Not matched", Some(&w), &format!("<p class=\"err\">{}</p>", esc(&e.to_string()))), StatusCode::BAD_REQUEST),
    }
}

async fn search(State(s): State<Service>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    let w = match signed_in(&s, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let now = Timestamp::now();
    let actor = format!("account:{}", w.account.id);
    if !w.account.role.sees_alerts() {
        let _ = s.store.audit(now, &actor, "people.search.denied", "people", w.account.role.as_str()).await;
        return with_status(page(&s, "Not for your role", Some(&w), "<p>Only the safeguarding roles search people's records.</p>"), StatusCode::FORBIDDEN);
    }
    let text = q.get("q").map_or("", |t| t.trim());
    let form = format!(
        "<form method=\"get\" action=\"/people\"><label>Name or login <input name=\"q\" value=\"{}\" required minlength=\"2\"></label> <button>Search</button></form>",
        esc(text)
    );
    if text.chars().count() < 2 {
        return page(&s, "People", Some(&w), &(form + "<p>Type at least two letters of a pupil's name or login.</p>"));
    }
    let schools: Option<Vec<String>> = if w.account.role.trust_wide() { None } else { Some(w.account.school.clone().into_iter().collect()) };
    let found = match s.store.search_people(schools.as_deref(), text, 100).await {
        Ok(f) => f,
        Err(e) => return with_status(page(&s, "People", Some(&w), &format!("<p class=\"err\">{}</p>", esc(&e.to_string()))), StatusCode::SERVICE_UNAVAILABLE),
    };
    // Staff are shown only to the roles that read alerts about staff.
    let staff_too = w.account.role.alert_audiences().contains(&"staff");
    let found: Vec<&Person> = found.iter().filter(|p| staff_too || p.row.kind == PersonKind::Pupil).collect();
    let shown: Vec<String> = found.iter().map(|p| format!("{}/{}", p.row.school, p.row.login)).collect();
    if s.store.audit(now, &actor, "people.search", "people", &format!("{} match(es): {}", found.len(), shown.join(","))).await.is_err() {
        return crate::unaudited();
    }
    let names: HashMap<String, String> = s.store.schools().await.unwrap_or_default().into_iter().map(|x| (x.id, x.name)).collect();
    let rows: String = found
        .iter()
        .map(|p| {
            let who = describe(Some(p), &p.row.login, false);
            let who = if p.row.school.is_empty() { who } else { format!("<a href=\"/people/{}/{}\">{who}</a>", esc(&p.row.school), esc(&p.row.login)) };
            format!(
                "<tr><td>{who}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(names.get(&p.row.school).map_or(if p.row.school.is_empty() { "the trust" } else { &p.row.school }, String::as_str)),
                esc(&p.row.classes.join(", ")),
                esc(p.row.kind.as_str())
            )
        })
        .collect();
    let body = format!(
        "{form}<table id=\"people\"><thead><tr><th>Person</th><th>School</th><th>Teaching groups</th><th></th></tr></thead><tbody>{rows}</tbody></table><p>{} found.</p>",
        found.len()
    );
    page(&s, "People", Some(&w), &body)
}
