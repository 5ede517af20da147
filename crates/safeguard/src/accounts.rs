//! Accounts, API keys and devices in the browser, for the trust's
//! administrators: the same as `haven admin user|apikey|device`. Disabling
//! an account ends its sessions at once; every change is audited and every
//! form carries the session's CSRF token.

use std::collections::HashMap;

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use haven_store::Role;
use haven_store::sessions::Session;
use jiff::Timestamp;

use crate::Service;
use crate::web::{csrf_ok, esc, page, signed_in, when, with_status};

/// The account administration routes.
pub fn routes() -> axum::Router<Service> {
    axum::Router::new()
        .route("/admin/accounts", get(list))
        .route("/admin/accounts/act", post(act))
        .route("/admin/apikeys/revoke", post(revoke_key))
        .route("/admin/devices/revoke", post(revoke_device))
}

/// The signed-in trust administrator and the form's fields, or the answer to send instead.
async fn admin(s: &Service, headers: &HeaderMap, form: Option<&HashMap<String, String>>) -> Result<Session, Response> {
    let w = signed_in(s, headers).await?;
    if w.account.role != Role::TrustAdmin {
        let _ = s.store.audit(Timestamp::now(), &format!("account:{}", w.account.id), "accounts.denied", "accounts", w.account.role.as_str()).await;
        return Err(with_status(
            page(s, "Not for your role", Some(&w), "<p>The trust's administrators manage accounts, API keys and devices.</p>"),
            StatusCode::FORBIDDEN,
        ));
    }
    if let Some(f) = form
        && !csrf_ok(&w.csrf, f.get("csrf"))
    {
        return Err(with_status(
            page(s, "Form expired", Some(&w), "<p class=\"err\">That form was not sent from this session. Go back, reload, and try again.</p>"),
            StatusCode::FORBIDDEN,
        ));
    }
    Ok(w)
}

fn button(csrf: &str, action: &str, fields: &[(&str, &str)], label: &str) -> String {
    let hidden: String = fields.iter().map(|(k, v)| format!("<input type=\"hidden\" name=\"{k}\" value=\"{}\">", esc(v))).collect();
    format!(
        "<form method=\"post\" action=\"{action}\" style=\"display:inline\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">{hidden}<button>{label}</button></form>",
        esc(csrf)
    )
}

async fn list(State(s): State<Service>, headers: HeaderMap) -> Response {
    let w = match admin(&s, &headers, None).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let now = Timestamp::now();
    if s.store.audit(now, &format!("account:{}", w.account.id), "accounts.read", "accounts", "").await.is_err() {
        return with_status(
            page(&s, "Accounts", Some(&w), "<p class=\"err\">Haven could not note this read in the audit log, so nothing is shown. Try again in a minute.</p>"),
            StatusCode::SERVICE_UNAVAILABLE,
        );
    }
    let (Ok(accounts), Ok(keys), Ok(devices)) = (s.store.accounts().await, s.store.api_keys().await, s.store.devices().await) else {
        return with_status(page(&s, "Accounts", Some(&w), "<p class=\"err\">The record could not be read; try again.</p>"), StatusCode::SERVICE_UNAVAILABLE);
    };
    let names = s.store.account_names().await.unwrap_or_default();
    let csrf = &w.csrf;
    let accounts: String = accounts
        .iter()
        .map(|a| {
            let email = a.account.email.as_str();
            let locked = a.locked_until.filter(|u| *u > now);
            let state = match (a.disabled, locked) {
                (true, _) => "disabled".to_string(),
                (false, Some(u)) => format!("locked until {}", when(&u.to_string())),
                _ => "active".to_string(),
            };
            let mut acts = if a.disabled {
                button(csrf, "/admin/accounts/act", &[("email", email), ("do", "enable")], "Enable")
            } else {
                button(csrf, "/admin/accounts/act", &[("email", email), ("do", "disable")], "Disable")
            };
            if locked.is_some() {
                acts += &button(csrf, "/admin/accounts/act", &[("email", email), ("do", "unlock")], "Unlock");
            }
            if a.account.role.needs_totp() {
                acts += &button(csrf, "/admin/accounts/act", &[("email", email), ("do", "reset-totp")], "New second factor");
            }
            // The name shown wherever they act; blank shows the e-mail.
            let name = format!(
                "<form method=\"post\" action=\"/admin/accounts/act\" style=\"display:inline\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
                 <input type=\"hidden\" name=\"email\" value=\"{}\"><input type=\"hidden\" name=\"do\" value=\"name\">\
                 <input name=\"name\" value=\"{}\" aria-label=\"Name of {}\" maxlength=\"100\"><button>Set name</button></form>",
                esc(csrf),
                esc(email),
                esc(names.get(&a.account.id).map_or("", String::as_str)),
                esc(email)
            );
            format!(
                "<tr><td>{}</td><td>{name}</td><td>{}</td><td>{}</td><td>{}</td><td>{acts}</td></tr>",
                esc(email),
                esc(a.account.role.as_str()),
                esc(a.account.school.as_deref().unwrap_or("the trust")),
                esc(&state)
            )
        })
        .collect();
    let keys: String = keys
        .iter()
        .map(|k| {
            let state = match (k.revoked_at, k.expires_at) {
                (Some(r), _) => format!("revoked {}", when(&r.to_string())),
                (None, Some(e)) if e <= now => format!("expired {}", when(&e.to_string())),
                (None, Some(e)) => format!("until {}", when(&e.to_string())),
                (None, None) => "no expiry".into(),
            };
            let revoke = if k.revoked_at.is_none() { button(csrf, "/admin/apikeys/revoke", &[("id", &k.id.to_string())], "Revoke") } else { String::new() };
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{revoke}</td></tr>",
                k.id,
                esc(&k.email),
                esc(&when(&k.created_at.to_string())),
                esc(&state)
            )
        })
        .collect();
    let devices: String = devices
        .iter()
        .map(|d| {
            let state = d.revoked_at.map_or("active".to_string(), |r| format!("revoked {}", when(&r.to_string())));
            let revoke =
                if d.revoked_at.is_none() { button(csrf, "/admin/devices/revoke", &[("id", &d.device.id.to_string())], "Revoke") } else { String::new() };
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{revoke}</td></tr>",
                d.device.id,
                esc(&d.device.school),
                esc(&d.device.name),
                esc(&state)
            )
        })
        .collect();
    let roles = Role::ALL.iter().map(|r| format!("<code>{}</code>", r.as_str())).collect::<Vec<_>>().join(", ");
    let body = format!(
        "<p>Disabling an account signs it out everywhere at once and stops its API keys. New accounts, passwords and keys: \
         <code>haven admin user add</code>, <code>haven admin user reset-password</code>, <code>haven admin apikey add</code>.</p>\
         <h2>Staff accounts</h2><table><thead><tr><th>E-mail</th><th>Name</th><th>Role</th><th>School</th><th>State</th><th></th></tr></thead><tbody>{accounts}</tbody></table>\
         <p>Roles (<code>--role</code>): {roles}. The IT lead does IT's work and reads alerts about staff, with a second factor.</p>\
         <h2>API keys</h2><table><thead><tr><th>Key</th><th>Acts as</th><th>Made</th><th>State</th><th></th></tr></thead><tbody>{keys}</tbody></table>\
         <h2>Devices</h2><table><thead><tr><th>Device</th><th>School</th><th>Name</th><th>State</th><th></th></tr></thead><tbody>{devices}</tbody></table>"
    );
    page(&s, "Accounts, keys and devices", Some(&w), &body)
}

async fn act(State(s): State<Service>, headers: HeaderMap, Form(f): Form<HashMap<String, String>>) -> Response {
    let w = match admin(&s, &headers, Some(&f)).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let (now, by) = (Timestamp::now(), format!("account:{}", w.account.id));
    let email = f.get("email").map_or("", |e| e.trim());
    let done = match f.get("do").map(String::as_str) {
        Some("disable") if email.eq_ignore_ascii_case(&w.account.email) => {
            return with_status(
                page(&s, "Not done", Some(&w), "<p class=\"err\">You cannot disable your own account: ask another trust administrator.</p>"),
                StatusCode::BAD_REQUEST,
            );
        }
        Some("disable") => s.store.set_disabled(email, true, &by, now).await.map(|_| None),
        Some("enable") => s.store.set_disabled(email, false, &by, now).await.map(|_| None),
        Some("unlock") => s.store.unlock(email, &by, now).await.map(|_| {
            s.sign_in.email_settled(email);
            None
        }),
        Some("reset-totp") => s.store.reset_totp(email, &by, now).await.map(Some),
        Some("name") => {
            let name = f.get("name").map_or("", |n| n.trim());
            match s.store.account_by_email(email).await {
                Ok(a) => match s.store.set_account_name(a.id, Some(name)).await {
                    Ok(_) => s.store.audit(now, &by, "account.name", &format!("account:{}", a.id), name).await.map(|_| None),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            }
        }
        _ => return with_status(page(&s, "Not done", Some(&w), "<p class=\"err\">Unknown action.</p>"), StatusCode::BAD_REQUEST),
    };
    match done {
        Ok(None) => Redirect::to("/admin/accounts").into_response(),
        Ok(Some(secret)) => page(
            &s,
            "New second factor",
            Some(&w),
            &format!(
                "<p>Give this to {} in person, once; their old authenticator no longer works and they were signed out.</p>\
                 <p>Secret: <code>{}</code></p><p>Or as a link for the authenticator app: <code>otpauth://totp/Haven:{}?secret={}&amp;issuer=Haven</code></p>\
                 <p><a href=\"/admin/accounts\">Back to accounts</a></p>",
                esc(email),
                esc(&secret),
                esc(email),
                esc(&secret)
            ),
        ),
        Err(e) => with_status(page(&s, "Not done", Some(&w), &format!("<p class=\"err\">{}</p>", esc(&e.to_string()))), StatusCode::BAD_REQUEST),
    }
}

async fn revoke_key(State(s): State<Service>, headers: HeaderMap, Form(f): Form<HashMap<String, String>>) -> Response {
    let w = match admin(&s, &headers, Some(&f)).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let Some(id) = f.get("id").and_then(|i| i.parse::<i64>().ok()) else { return Redirect::to("/admin/accounts").into_response() };
    match s.store.revoke_api_key(id, &format!("account:{}", w.account.id), Timestamp::now()).await {
        Ok(_) => Redirect::to("/admin/accounts").into_response(),
        Err(e) => with_status(page(&s, "Not done", Some(&w), &format!("<p class=\"err\">{}</p>", esc(&e.to_string()))), StatusCode::SERVICE_UNAVAILABLE),
    }
}

async fn revoke_device(State(s): State<Service>, headers: HeaderMap, Form(f): Form<HashMap<String, String>>) -> Response {
    let w = match admin(&s, &headers, Some(&f)).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let Some(id) = f.get("id").and_then(|i| i.parse::<i64>().ok()) else { return Redirect::to("/admin/accounts").into_response() };
    match s.store.revoke_device(id, &format!("account:{}", w.account.id), Timestamp::now()).await {
        Ok(_) => Redirect::to("/admin/accounts").into_response(),
        Err(e) => with_status(page(&s, "Not done", Some(&w), &format!("<p class=\"err\">{}</p>", esc(&e.to_string()))), StatusCode::SERVICE_UNAVAILABLE),
    }
}
