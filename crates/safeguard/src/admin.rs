//! Administration in the browser: the level-5 call-out lists (the same data
//! `haven admin oncall` edits) and searching the audit log.

use std::collections::HashMap;

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use haven_store::Role;
use haven_store::people::Account;
use jiff::Timestamp;

use crate::Service;
use crate::web::{csrf_ok, esc, page, signed_in, when, with_status};

/// The admin routes.
pub fn routes() -> axum::Router<Service> {
    axum::Router::new()
        .route("/admin/oncall", get(oncall).post(oncall_add))
        .route("/admin/oncall/remove", post(oncall_remove))
        .route("/admin/audit", get(audit))
        .route("/admin/devices", get(devices))
}

/// A device that has not been heard from in this long is shown as quiet.
const QUIET: jiff::SignedDuration = jiff::SignedDuration::from_hours(24);

/// Devices: last contact, the extension's version and its offline queue,
/// so IT sees a laptop that went quiet or is dropping events; and how many
/// pupils accepted the acceptable-use text in force. For IT and the
/// safeguarding and trust roles; never pupils' words.
async fn devices(State(s): State<Service>, headers: HeaderMap) -> Response {
    let w = match signed_in(&s, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let role = w.account.role;
    if !(role.trust_wide() || role.does_it() || matches!(role, Role::Dsl | Role::DeputyDsl | Role::Headteacher)) {
        return with_status(page(&s, "Not for your role", Some(&w), "<p>IT and safeguarding leads see the devices.</p>"), StatusCode::FORBIDDEN);
    }
    let now = Timestamp::now();
    let all = s.store.devices().await.unwrap_or_default();
    let mine: Vec<_> = all.iter().filter(|d| role.trust_wide() || w.account.school.as_deref() == Some(d.device.school.as_str())).collect();
    let ago = |t: Timestamp| {
        let m = now.duration_since(t).as_secs().max(0) / 60;
        if m < 2 {
            "just now".to_string()
        } else if m < 120 {
            format!("{m} minutes ago")
        } else if m < 48 * 60 {
            format!("{} hours ago", m / 60)
        } else {
            format!("{} days ago", m / 1440)
        }
    };
    let (mut quiet, mut dropping) = (0, 0);
    let rows: String = mine
        .iter()
        .map(|d| {
            let state = if d.revoked_at.is_some() {
                "revoked".to_string()
            } else {
                match d.last_seen_at {
                    None => "never seen".to_string(),
                    Some(t) if now.duration_since(t) > QUIET => {
                        quiet += 1;
                        format!("<strong class=\"err\">quiet</strong> since {}", esc(&ago(t)))
                    }
                    Some(t) => esc(&ago(t)),
                }
            };
            let dropped = d.contact.dropped.unwrap_or(0);
            if dropped > 0 {
                dropping += 1;
            }
            format!(
                "<tr><td>{}</td><td>{}</td><td>{state}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&d.device.school),
                esc(&d.device.name),
                esc(d.contact.agent.as_deref().unwrap_or("-")),
                d.contact.queue_depth.unwrap_or(0),
                if dropped > 0 { format!("<strong class=\"err\">{dropped}</strong>") } else { "0".into() }
            )
        })
        .collect();
    let settings = s.settings();
    let aup = match &settings.extension.acceptable_use {
        Some((version, _)) => {
            let school = if role.trust_wide() { None } else { w.account.school.as_deref() };
            let n = s.store.acceptances(school, 100_000).await.unwrap_or_default().iter().filter(|a| &a.version == version).count();
            format!("<p>Acceptable-use text in force: version {}; accepted by {n} pupils so far.</p>", esc(version))
        }
        None => "<p>No acceptable-use text is set (<code>[extension] acceptable_use</code>).</p>".into(),
    };
    page(
        &s,
        "Devices",
        Some(&w),
        &format!(
            "<p>Each device sending monitoring events: when it last made contact, the Haven extension's version, events waiting in its \
             offline queue, and events it had to drop because the queue was full. A device quiet for a day may be switched off, \
             broken, or have the extension removed.</p><p>{} devices; {quiet} quiet; {dropping} dropping events.</p>{aup}\
             <table><thead><tr><th>School</th><th>Device</th><th>Last contact</th><th>Agent</th><th>Queued</th><th>Dropped</th></tr></thead><tbody>{rows}</tbody></table>",
            mine.len()
        ),
    )
}

/// Who may edit a call-out list: safeguarding leads and heads of that school, and the trust's roles.
fn may_edit(who: &Account, school: Option<&str>) -> bool {
    match school {
        None => who.role.trust_wide(),
        Some(s) => who.role.trust_wide() || (matches!(who.role, Role::Dsl | Role::DeputyDsl | Role::Headteacher) && who.school.as_deref() == Some(s)),
    }
}

async fn oncall(State(s): State<Service>, headers: HeaderMap) -> Response {
    let w = match signed_in(&s, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let schools: Vec<Option<String>> = if w.account.role.trust_wide() {
        std::iter::once(None).chain(s.store.schools().await.unwrap_or_default().into_iter().map(|sc| Some(sc.id))).collect()
    } else {
        vec![w.account.school.clone()]
    };
    if !schools.iter().any(|sc| may_edit(&w.account, sc.as_deref())) {
        return with_status(
            page(&s, "Not for your role", Some(&w), "<p>Only safeguarding leads, heads and the trust edit call-out lists.</p>"),
            StatusCode::FORBIDDEN,
        );
    }
    let csrf = esc(&w.csrf);
    let mut body = String::from(
        "<p>Who is called, in order, when a level-5 alert (a possible threat to life) arrives. In term time the school's list; in holidays the trust's.</p>",
    );
    for sc in &schools {
        let list = s.store.oncall(sc.as_deref()).await.unwrap_or_default();
        let rows: String = list
            .iter()
            .map(|o| {
                format!(
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td><form method=\"post\" action=\"/admin/oncall/remove\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                     <input type=\"hidden\" name=\"id\" value=\"{}\"><button>Remove</button></form></td></tr>",
                    o.priority,
                    esc(&o.name),
                    esc(o.email.as_deref().or(o.webhook.as_deref()).unwrap_or_default()),
                    o.id
                )
            })
            .collect();
        body.push_str(&format!(
            "<h2>{}</h2><table><thead><tr><th>Order</th><th>Who</th><th>E-mail or webhook</th><th></th></tr></thead><tbody>{rows}</tbody></table>\
             <form method=\"post\" action=\"/admin/oncall\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"school\" value=\"{}\">\
             <label>Name <input name=\"name\" required></label><label>E-mail <input name=\"email\" type=\"email\"></label>\
             <label>or webhook URL <input name=\"webhook\" type=\"url\"></label><label>Order <input name=\"priority\" type=\"number\" value=\"{}\" required></label>\
             <button>Add to the list</button></form>",
            esc(sc.as_deref().map_or("The trust (holidays)", |x| x)),
            esc(sc.as_deref().unwrap_or("")),
            list.len() + 1
        ));
    }
    page(&s, "Call-out lists", Some(&w), &body)
}

async fn oncall_add(State(s): State<Service>, headers: HeaderMap, Form(f): Form<HashMap<String, String>>) -> Response {
    let w = match signed_in(&s, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    if !csrf_ok(&w.csrf, f.get("csrf")) {
        return with_status(page(&s, "Form expired", Some(&w), ""), StatusCode::FORBIDDEN);
    }
    let school = f.get("school").filter(|x| !x.is_empty()).cloned();
    if !may_edit(&w.account, school.as_deref()) {
        return with_status(page(&s, "Not for your role", Some(&w), ""), StatusCode::FORBIDDEN);
    }
    let opt = |k: &str| f.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let priority = opt("priority").and_then(|p| p.parse().ok()).unwrap_or(1);
    match s.store.add_oncall(school.as_deref(), opt("name").unwrap_or("?"), opt("email"), opt("webhook"), priority).await {
        Ok(id) => {
            let _ = s
                .store
                .audit(Timestamp::now(), &format!("account:{}", w.account.id), "oncall.add", &format!("oncall:{id}"), school.as_deref().unwrap_or("trust"))
                .await;
            Redirect::to("/admin/oncall").into_response()
        }
        Err(e) => with_status(page(&s, "Not added", Some(&w), &format!("<p class=\"err\">{}</p>", esc(&e.to_string()))), StatusCode::BAD_REQUEST),
    }
}

async fn oncall_remove(State(s): State<Service>, headers: HeaderMap, Form(f): Form<HashMap<String, String>>) -> Response {
    let w = match signed_in(&s, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    if !csrf_ok(&w.csrf, f.get("csrf")) {
        return with_status(page(&s, "Form expired", Some(&w), ""), StatusCode::FORBIDDEN);
    }
    let Some(id) = f.get("id").and_then(|i| i.parse::<i64>().ok()) else { return Redirect::to("/admin/oncall").into_response() };
    match s.store.oncall_school(id).await {
        Ok(Some(school)) if may_edit(&w.account, school.as_deref()) => {
            let _ = s.store.remove_oncall(id).await;
            let _ = s.store.audit(Timestamp::now(), &format!("account:{}", w.account.id), "oncall.remove", &format!("oncall:{id}"), "").await;
            Redirect::to("/admin/oncall").into_response()
        }
        _ => with_status(page(&s, "Not for your role", Some(&w), ""), StatusCode::FORBIDDEN),
    }
}

async fn audit(State(s): State<Service>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    let w = match signed_in(&s, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    // The log spans every school: trust roles search all of it; a school's
    // DSL and deputies their own school's rows (`audit.school`: rows about
    // its pupils' alerts, its incidents and people; never rows about staff
    // alerts or an incident concerning the head, which stay the trust's).
    let school = match (w.account.role, w.account.school.as_deref()) {
        (r, _) if r.trust_wide() => None,
        (Role::Dsl | Role::DeputyDsl, Some(school)) => Some(school.to_string()),
        _ => {
            return with_status(
                page(
                    &s,
                    "Not for your role",
                    Some(&w),
                    "<p>The trust's administrators and safeguarding lead, and each school's DSL, search the audit log.</p>",
                ),
                StatusCode::FORBIDDEN,
            );
        }
    };
    let object = q.get("object").filter(|v| !v.is_empty()).cloned();
    let actor = q.get("actor").filter(|v| !v.is_empty()).cloned();
    let entries = s.store.audit_search_in(school.as_deref(), object.as_deref(), actor.as_deref(), 500).await.unwrap_or_default();
    let searched = format!("audit:{}", school.as_deref().unwrap_or("*"));
    if s.store.audit(Timestamp::now(), &format!("account:{}", w.account.id), "audit.search", &searched, object.as_deref().unwrap_or("")).await.is_err() {
        return crate::unaudited();
    }
    let rows: String = entries
        .iter()
        .map(|e| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&when(&e.at.to_string())),
                esc(e.actor_name.as_deref().unwrap_or(&e.actor)),
                esc(&e.action),
                esc(&e.object),
                esc(&e.detail)
            )
        })
        .collect();
    page(
        &s,
        "Audit log",
        Some(&w),
        &format!(
            "<form method=\"get\" action=\"/admin/audit\"><label>About <input name=\"object\" placeholder=\"alert:42\" value=\"{}\"></label>\
             <label>By <input name=\"actor\" placeholder=\"account:3\" value=\"{}\"></label><button>Search</button></form>\
             <table><thead><tr><th>When</th><th>Who</th><th>What</th><th>On</th><th>Detail</th></tr></thead><tbody>{rows}</tbody></table><p>{} entries, newest first.</p>",
            esc(object.as_deref().unwrap_or("")),
            esc(actor.as_deref().unwrap_or("")),
            entries.len()
        ),
    )
}
