//! The list feeds page (`/admin/lists`): for IT, the trust's administrators
//! and the safeguarding leads, each feed `haven serve` refreshes (its last
//! refresh, the result, its entries, when it is next due) and the notices
//! for IT that are not yet marked seen, each with a button to mark it so.

use std::collections::HashMap;

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use haven_config::feeds::History;
use haven_store::Role;
use haven_store::people::Account;
use haven_store::sessions::Session;
use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::Service;
use crate::web::{csrf_ok, esc, page, signed_in, with_status};

/// The lists page's routes.
pub fn routes() -> axum::Router<Service> {
    axum::Router::new().route("/admin/lists", get(show)).route("/admin/lists/seen", post(seen))
}

/// Who looks after the filter's lists: IT, the trust's administrators, and
/// the safeguarding leads who answer for what it blocks.
fn may_see(who: &Account) -> bool {
    matches!(who.role, Role::ItTechnician | Role::ItLead | Role::TrustAdmin | Role::Dsl | Role::DeputyDsl | Role::TrustSafeguardingLead)
}

/// The notices this person is shown: their school's and the trust's, or
/// every school's for trust roles.
fn scope(who: &Account) -> Option<&str> {
    if who.role.trust_wide() { None } else { who.school.as_deref() }
}

async fn allowed(s: &Service, headers: &HeaderMap) -> Result<Session, Response> {
    let w = signed_in(s, headers).await?;
    if !may_see(&w.account) {
        let body = "<p>IT, the trust's administrators and the safeguarding leads look after the filter's lists.</p>";
        return Err(with_status(page(s, "Not for your role", Some(&w), body), StatusCode::FORBIDDEN));
    }
    Ok(w)
}

/// A time on the trust's clock.
fn local(t: Timestamp, tz: &TimeZone) -> String {
    t.to_zoned(tz.clone()).strftime("%a %d %b %H:%M").to_string()
}

async fn show(State(s): State<Service>, headers: HeaderMap) -> Response {
    let w = match allowed(&s, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let now = Timestamp::now();
    let (Ok(states), Ok(notices)) = (s.store.feed_states().await, s.store.it_notices(scope(&w.account), true, 200).await) else {
        return with_status(
            page(&s, "List feeds", Some(&w), "<p class=\"err\">The record could not be read; try again shortly.</p>"),
            StatusCode::SERVICE_UNAVAILABLE,
        );
    };
    if s.store.audit(now, &format!("account:{}", w.account.id), "lists.read", "lists", "").await.is_err() {
        return crate::unaudited();
    }
    let settings = s.settings();
    let feeds = &settings.feeds;
    let tz = &feeds.timezone;
    let rows: String = feeds
        .sources
        .iter()
        .map(|f| {
            let state = states.iter().find(|st| st.last.source == f.source);
            let history = state.map_or_else(History::default, |st| History { last_run: Some(st.last.at), failures: st.failures });
            let schedule = {
                let mut parts: Vec<String> = f.refresh.times.iter().map(|t| t.strftime("%H:%M").to_string()).collect();
                if let Some(every) = f.refresh.every {
                    parts.push(format!("every {every:#}"));
                }
                if parts.is_empty() { "not scheduled: <code>haven lists update</code>".to_string() } else { esc(&parts.join(", ")) }
            };
            let (last, result, entries) = match state {
                None => ("never".to_string(), "—".to_string(), "—".to_string()),
                Some(st) => {
                    let result = if st.last.ok {
                        format!("<strong>in force</strong>: {}", esc(&st.last.message))
                    } else {
                        let since = st.last_ok.map_or("it has never worked".to_string(), |t| format!("last worked {}", local(t, tz)));
                        format!(
                            "<strong class=\"err\">failed</strong> ({} in a row; {}); the previous list stays in force: {}",
                            st.failures,
                            esc(&since),
                            esc(&st.last.message)
                        )
                    };
                    (local(st.last.at, tz), result, st.last.entries.map_or("—".to_string(), |n| n.to_string()))
                }
            };
            let next = match f.refresh.next_due(tz, &history, now) {
                None => "—".to_string(),
                Some(t) if t <= now => "now".to_string(),
                Some(t) => local(t, tz),
            };
            let credentials = f.credentials.as_deref().map_or(String::new(), |c| format!(" <small>(credentials [{}])</small>", esc(c)));
            format!(
                "<tr><td>{}{credentials}</td><td>{schedule}</td><td>{}</td><td>{result}</td><td>{}</td><td>{}</td></tr>",
                esc(&f.source),
                esc(&last),
                esc(&entries),
                esc(&next)
            )
        })
        .collect();
    let csrf = esc(&w.csrf);
    let notice_rows: String = notices
        .iter()
        .map(|n| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><form method=\"post\" action=\"/admin/lists/seen\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"id\" value=\"{}\"><button>Mark seen</button></form></td></tr>",
                esc(&n.raised_at.parse::<Timestamp>().map_or(n.raised_at.clone(), |t| local(t, tz))),
                esc(&n.kind),
                esc(n.school.as_deref().unwrap_or("trust")),
                esc(&n.message),
                n.id
            )
        })
        .collect();
    let tz_name = tz.iana_name().unwrap_or("UTC");
    let body = format!(
        "<p>Haven downloads each list feed at its times ({tz}) and puts a good download in force at once; a download that fails, or \
         does not look like a list, keeps the previous list in force and tells IT below.</p>\
         <table><thead><tr><th>Feed</th><th>Refreshed</th><th>Last refresh</th><th>Result</th><th>Entries</th><th>Next due</th></tr></thead>\
         <tbody>{rows}</tbody></table><h2>Notices for IT</h2>{notices}",
        tz = esc(tz_name),
        notices = if notices.is_empty() {
            "<p>None waiting.</p>".to_string()
        } else {
            format!("<table><thead><tr><th>Raised</th><th>Kind</th><th>School</th><th>What</th><th></th></tr></thead><tbody>{notice_rows}</tbody></table>")
        }
    );
    page(&s, "List feeds", Some(&w), &body)
}

async fn seen(State(s): State<Service>, headers: HeaderMap, Form(f): Form<HashMap<String, String>>) -> Response {
    let w = match allowed(&s, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    if !csrf_ok(&w.csrf, f.get("csrf")) {
        return with_status(page(&s, "Form expired", Some(&w), ""), StatusCode::FORBIDDEN);
    }
    let Some(id) = f.get("id").and_then(|i| i.parse::<i64>().ok()) else { return Redirect::to("/admin/lists").into_response() };
    // Only a notice this person is shown.
    let mine = s.store.it_notices(scope(&w.account), true, 10_000).await.unwrap_or_default().iter().any(|n| n.id == id);
    if !mine {
        return with_status(
            page(&s, "Not for your role", Some(&w), "<p>That notice is not one of yours, or was marked seen already.</p>"),
            StatusCode::FORBIDDEN,
        );
    }
    match s.store.see_it_notice(id, &format!("account:{}", w.account.id), Timestamp::now()).await {
        Ok(()) => Redirect::to("/admin/lists").into_response(),
        Err(e) => with_status(page(&s, "Not marked", Some(&w), &format!("<p class=\"err\">{}</p>", esc(&e.to_string()))), StatusCode::CONFLICT),
    }
}
