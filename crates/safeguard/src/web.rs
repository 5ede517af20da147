//! The DSL's web app: server-rendered pages, a few lines of CSS, no
//! JavaScript. Sign-in with a password and, for roles that see alerts, a
//! second factor; every form carries the session's CSRF token; every page
//! that shows a safeguarding record writes to the audit log.

use std::collections::HashMap;

use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use haven_store::alerts::{Alert, Verdict};
use haven_store::sessions::{Factor, Session, SignIn};
use jiff::Timestamp;
use serde::Deserialize;

use crate::Service;

const SESSION_COOKIE: &str = "haven_session";
const FORM_COOKIE: &str = "haven_form";

/// The web app's routes.
pub fn routes() -> axum::Router<Service> {
    axum::Router::new()
        .route("/", get(home))
        .route("/static/haven.css", get(css))
        .route("/login", get(login_page).post(login))
        .route("/login/second-factor", get(second_factor_page).post(second_factor))
        .route("/logout", post(logout))
        .route("/alerts/{id}", get(alert_page))
        .route("/alerts/{id}/act", post(act))
        .route("/alerts/{id}/screenshot", get(screenshot))
        .route("/totals", get(totals))
        .route("/report", get(report_page).post(report))
}

/// Escapes text for HTML.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

const CSS: &str = "body{font-family:system-ui,sans-serif;margin:0;color:#1b1b1b;line-height:1.45}\
header{background:#24385b;color:#fff;padding:.6rem 1rem;display:flex;gap:1rem;align-items:center;flex-wrap:wrap}\
header a{color:#fff}header form{margin-left:auto}main{max-width:64rem;margin:0 auto;padding:1rem}\
.demo{background:#ffe08a;padding:.4rem 1rem;font-weight:600}table{border-collapse:collapse;width:100%}\
th,td{text-align:left;padding:.4rem;border-bottom:1px solid #ddd;vertical-align:top}\
.l5{background:#b00020;color:#fff}.l4{background:#b84300;color:#fff}.l3{background:#f9a825}.l2{background:#cfd8dc}.l1{background:#eceff1}\
.lvl{display:inline-block;min-width:1.6rem;text-align:center;border-radius:4px;padding:0 .3rem;font-weight:700}\
.overdue{color:#b00020;font-weight:700}mark{background:#ffeb3b;padding:0 .1rem}.evidence{background:#f5f5f5;padding:.8rem;white-space:pre-wrap;border-radius:6px}\
label{display:block;margin:.5rem 0}input,select,textarea,button{font:inherit;padding:.4rem}textarea{width:100%;min-height:5rem}\
button{border:1px solid #24385b;background:#24385b;color:#fff;border-radius:4px;cursor:pointer}.err{color:#b00020}.note{white-space:pre-line}\
*,::before,::after{box-sizing:border-box}img,video{max-width:100%;height:auto}\
main,td,th,li,dd,.evidence,.note{overflow-wrap:anywhere}input,select,textarea{max-width:100%}\
.skip{position:absolute;left:-100vw;top:.3rem;background:#fff;color:#24385b;padding:.4rem .8rem;font-weight:700;z-index:9}.skip:focus{left:.5rem}\
.vh{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);clip-path:inset(50%);white-space:nowrap}\
:focus-visible{outline:3px solid #1d70b8;outline-offset:2px}header :focus-visible{outline-color:#ffdd00}\
@media (max-width:40rem){main{padding:.6rem}header{padding:.5rem .6rem;gap:.4rem}header form{margin-left:0}\
table,tbody,tr,td{display:block;width:100%}thead{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);clip-path:inset(50%)}\
tr{border-bottom:1px solid #bbb;padding:.4rem 0}td,th{border:0;padding:.15rem 0}td[data-label]::before{content:attr(data-label) \": \";font-weight:600}}";

pub(crate) fn page(s: &Service, title: &str, who: Option<&Session>, body: &str) -> Response {
    let nav = match who {
        Some(w) if w.complete => format!(
            "<nav aria-label=\"Main\"><a href=\"/alerts\">Alerts</a> · <a href=\"/incidents\">Incidents</a> · <a href=\"/totals\">Totals</a> · <a href=\"/reports/governor\">Governor pack</a> · <a href=\"/admin/oncall\">Call-out lists</a> · <a href=\"/admin/lexicon\">Monitoring phrases</a> · <a href=\"/admin/audit\">Audit</a> · <a href=\"/admin/devices\">Devices</a> · <a href=\"/admin/lists\">List feeds</a> · <a href=\"/history\">History</a> · <a href=\"/filtering\">Filtering</a> · <a href=\"/governance\">Governance</a> · <a href=\"/admin/data-map\">Data map</a>{} · <a href=\"/report\">Report a concern</a></nav>\
             <form method=\"post\" action=\"/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">{} <button>Sign out</button></form>",
            if w.account.role == haven_store::Role::TrustAdmin { " · <a href=\"/admin/accounts\">Accounts</a>" } else { "" },
            esc(&w.csrf),
            esc(&w.account.email)
        ),
        _ => "<nav aria-label=\"Main\"><a href=\"/report\">Report a concern</a> · <a href=\"/login\">Staff sign in</a></nav>".into(),
    };
    let demo = if s.demo { "<div class=\"demo\">DEMO DATA — this Haven shows made-up schools and people for trying it out.</div>" } else { "" };
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t} — Haven</title><link rel=\"stylesheet\" href=\"/static/haven.css\"></head><body><a class=\"skip\" href=\"#main\">Skip to content</a>{demo}\
         <header><strong>Haven</strong>{nav}</header><main id=\"main\" tabindex=\"-1\"><h1>{t}</h1>{body}</main></body></html>",
        t = esc(title),
        body = label_cells(body)
    );
    let mut r = (StatusCode::OK, html).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("content-security-policy", HeaderValue::from_static("default-src 'self'; form-action 'self'; frame-ancestors 'none'"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    r
}

pub(crate) fn with_status(mut r: Response, status: StatusCode) -> Response {
    *r.status_mut() = status;
    r
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// Sets a cookie, `Secure` when the browser came over HTTPS (see [`crate::signin::over_https`]).
fn set_cookie(r: &mut Response, request: &HeaderMap, name: &str, value: &str, max_age: i64) {
    let secure = if crate::signin::over_https(request) { "; Secure" } else { "" };
    if let Ok(v) = HeaderValue::from_str(&format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

async fn session(s: &Service, headers: &HeaderMap) -> Option<Session> {
    let c = cookie(headers, SESSION_COOKIE)?;
    s.store.session(c, Timestamp::now()).await.ok().flatten()
}

/// The session if it is complete (second factor given), else a redirect to sign in.
pub(crate) async fn signed_in(s: &Service, headers: &HeaderMap) -> Result<Session, Response> {
    match session(s, headers).await {
        Some(w) if w.complete => Ok(w),
        Some(_) => Err(Redirect::to("/login/second-factor").into_response()),
        None => Err(Redirect::to("/login").into_response()),
    }
}

/// Constant-time comparison of a form's CSRF token with the session's.
pub(crate) fn csrf_ok(expected: &str, given: Option<&String>) -> bool {
    let Some(given) = given else { return false };
    expected.len() == given.len() && expected.bytes().zip(given.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

pub(crate) fn forbidden(s: &Service, who: &Session, what: &str) -> Response {
    with_status(
        page(s, "Not for your role", Some(who), &format!("<p>{}</p><p><a href=\"/report\">Report a concern</a> instead.</p>", esc(what))),
        StatusCode::FORBIDDEN,
    )
}

async fn css() -> Response {
    ([(header::CONTENT_TYPE, "text/css"), (header::CACHE_CONTROL, "max-age=3600")], CSS).into_response()
}

async fn home(State(s): State<Service>, headers: HeaderMap) -> Response {
    match signed_in(&s, &headers).await {
        Ok(w) if w.account.role.reads_alerts() => Redirect::to("/alerts").into_response(),
        Ok(_) => Redirect::to("/totals").into_response(),
        Err(r) => r,
    }
}

fn login_form(error: &str) -> String {
    let err = if error.is_empty() { String::new() } else { format!("<p class=\"err\">{}</p>", esc(error)) };
    format!(
        "{err}<form method=\"post\" action=\"/login\"><label>E-mail <input name=\"email\" type=\"email\" autocomplete=\"username\" required></label>\
         <label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label><button>Sign in</button></form>"
    )
}

async fn login_page(State(s): State<Service>) -> Response {
    page(&s, "Staff sign in", None, &login_form(""))
}

#[derive(Deserialize)]
struct LoginForm {
    email: String,
    password: String,
}

type Peer = Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>;

/// "Too many failed attempts" for an account (or an e-mail with none: the same words).
fn locked(s: &Service, until: Timestamp) -> Response {
    with_status(
        page(
            s,
            "Staff sign in",
            None,
            &login_form(&format!(
                "Too many failed attempts: this account is locked until {} (UTC). Ask your DSL or trust admin if you need in sooner.",
                until.strftime("%H:%M")
            )),
        ),
        StatusCode::TOO_MANY_REQUESTS,
    )
}

/// "Too many failed attempts from here" for an address.
fn address_waits(s: &Service, until: Timestamp) -> Response {
    let mut r = with_status(
        page(
            s,
            "Staff sign in",
            None,
            &login_form(&format!(
                "Too many failed sign-ins from this network: try again after {} (UTC). If your school shares one address, ask IT.",
                until.strftime("%H:%M")
            )),
        ),
        StatusCode::TOO_MANY_REQUESTS,
    );
    let wait = Timestamp::now().until(until).map_or(60, |d| d.get_seconds().max(1));
    if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

async fn login(State(s): State<Service>, peer: Peer, headers: HeaderMap, Form(f): Form<LoginForm>) -> Response {
    let now = Timestamp::now();
    let ip = crate::signin::client_address(peer.map(|p| p.0.0), &headers);
    if let Some(until) = s.sign_in.address_blocked(ip, now) {
        return address_waits(&s, until);
    }
    // Only an e-mail with no account is ever locked here (the record locks real ones).
    if let Some(until) = s.sign_in.email_locked(&f.email, now) {
        s.sign_in.address_failed(ip, now);
        return locked(&s, until);
    }
    // Argon2 runs within the record's bound on parallel hashes, off the serving threads.
    let checked = s.store.check_sign_in(&f.email, &f.password, now).await;
    if !matches!(checked, Ok((SignIn::Ok, _))) {
        s.sign_in.address_failed(ip, now);
    }
    match checked {
        Ok((SignIn::Ok, _)) => {
            let Ok(account) = s.store.account_by_email(&f.email).await else {
                return page(&s, "Staff sign in", None, &login_form("Wrong e-mail or password."));
            };
            let Ok(cookie) = s.store.start_session(&account, now).await else {
                return with_status(page(&s, "Staff sign in", None, &login_form("Could not start a session; try again.")), StatusCode::SERVICE_UNAVAILABLE);
            };
            let half = account.role.needs_totp();
            let mut r = Redirect::to(if half { "/login/second-factor" } else { "/" }).into_response();
            let lasts = if half { haven_store::sessions::HALF_SESSION_FOR } else { haven_store::sessions::SESSION_FOR };
            set_cookie(&mut r, &headers, SESSION_COOKIE, &cookie, lasts.as_secs());
            r
        }
        Ok((SignIn::Locked(until), _)) => locked(&s, until),
        Ok((SignIn::Disabled, _)) => with_status(
            page(&s, "Staff sign in", None, &login_form("This account is disabled. If you still work here, ask your trust's administrator.")),
            StatusCode::FORBIDDEN,
        ),
        // An e-mail without an account "locks" like one with, so the answers never tell them apart.
        Ok((SignIn::Wrong, false)) if let Some(until) = s.sign_in.email_failed(&f.email, now) => locked(&s, until),
        Ok((SignIn::Wrong, _)) => with_status(page(&s, "Staff sign in", None, &login_form("Wrong e-mail or password.")), StatusCode::UNAUTHORIZED),
        Err(_) => {
            with_status(page(&s, "Staff sign in", None, &login_form("Could not check the password just now; try again.")), StatusCode::SERVICE_UNAVAILABLE)
        }
    }
}

async fn second_factor_page(State(s): State<Service>, headers: HeaderMap) -> Response {
    match session(&s, &headers).await {
        Some(w) if !w.complete => page(
            &s,
            "Second factor",
            None,
            &format!(
                "<p>Enter the six-digit code from your authenticator app.</p><form method=\"post\" action=\"/login/second-factor\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{}\"><label>Code <input name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" pattern=\"[0-9]{{6}}\" required></label><button>Continue</button></form>",
                esc(&w.csrf)
            ),
        ),
        Some(_) => Redirect::to("/").into_response(),
        None => Redirect::to("/login").into_response(),
    }
}

async fn second_factor(State(s): State<Service>, peer: Peer, headers: HeaderMap, Form(f): Form<HashMap<String, String>>) -> Response {
    let now = Timestamp::now();
    let ip = crate::signin::client_address(peer.map(|p| p.0.0), &headers);
    if let Some(until) = s.sign_in.address_blocked(ip, now) {
        return address_waits(&s, until);
    }
    let (Some(c), Some(w)) = (cookie(&headers, SESSION_COOKIE), session(&s, &headers).await) else { return Redirect::to("/login").into_response() };
    if !csrf_ok(&w.csrf, f.get("csrf")) {
        return with_status(page(&s, "Second factor", None, "<p class=\"err\">The form expired; sign in again.</p>"), StatusCode::FORBIDDEN);
    }
    let answer = s.store.second_factor(c, f.get("code").map_or("", String::as_str), now).await;
    if !matches!(answer, Ok(Factor::Ok(_))) {
        s.sign_in.address_failed(ip, now);
    }
    let mut r = match answer {
        Ok(Factor::Ok(complete)) => {
            // A new session id for the signed-in session: one seen before the code was given is worthless.
            let mut r = Redirect::to("/").into_response();
            set_cookie(&mut r, &headers, SESSION_COOKIE, &complete, haven_store::sessions::SESSION_FOR.as_secs());
            return r;
        }
        Ok(Factor::Wrong) => {
            return with_status(
                page(&s, "Second factor", None, "<p class=\"err\">That code is not right. <a href=\"/login/second-factor\">Try again</a>.</p>"),
                StatusCode::UNAUTHORIZED,
            );
        }
        Ok(Factor::Locked(until)) => locked(&s, until),
        Ok(Factor::Ended) => with_status(
            page(&s, "Second factor", None, &login_form("Too many wrong codes, or the sign-in took too long: sign in again.")),
            StatusCode::UNAUTHORIZED,
        ),
        Err(_) => {
            return with_status(
                page(&s, "Second factor", None, "<p class=\"err\">Could not check the code just now. <a href=\"/login/second-factor\">Try again</a>.</p>"),
                StatusCode::SERVICE_UNAVAILABLE,
            );
        }
    };
    set_cookie(&mut r, &headers, SESSION_COOKIE, "", 0);
    r
}

async fn logout(State(s): State<Service>, headers: HeaderMap, Form(f): Form<HashMap<String, String>>) -> Response {
    if let (Some(c), Some(w)) = (cookie(&headers, SESSION_COOKIE), session(&s, &headers).await)
        && csrf_ok(&w.csrf, f.get("csrf"))
    {
        let _ = s.store.end_session(c).await;
    }
    let mut r = Redirect::to("/login").into_response();
    set_cookie(&mut r, &headers, SESSION_COOKIE, "", 0);
    r
}

/// A level badge: colour is never the only sign, so it says "L4", and a
/// screen reader hears "level 4".
pub(crate) fn level(l: u8) -> String {
    format!("<span class=\"lvl l{l}\"><span aria-hidden=\"true\">L{l}</span><span class=\"vh\">level {l}</span></span>")
}

/// Gives each data cell of a table with a header row the name of its column
/// (`data-label`, shown beside the value when a phone stacks the rows) and
/// each column header its scope, so no page has to say it twice.
fn label_cells(body: &str) -> String {
    if !body.contains("<thead>") {
        return body.to_string();
    }
    let mut out = String::with_capacity(body.len() + body.len() / 8);
    let mut rest = body;
    while let Some(at) = rest.find("<thead>") {
        let (before, table) = rest.split_at(at);
        out.push_str(before);
        let end = table.find("</table>").map_or(table.len(), |e| e + "</table>".len());
        let (table, after) = table.split_at(end);
        let head_end = table.find("</thead>").unwrap_or(0);
        let names: Vec<String> = table[..head_end]
            .trim_start_matches("<thead>")
            .split("<th")
            .skip(1)
            .map(|th| {
                let inner = th.split_once('>').map_or("", |(_, r)| r.split("</th>").next().unwrap_or(""));
                let mut text = String::new();
                let mut in_tag = false;
                for c in inner.chars() {
                    match c {
                        '<' => in_tag = true,
                        '>' => in_tag = false,
                        c if !in_tag => text.push(c),
                        _ => {}
                    }
                }
                text.trim().to_string()
            })
            .collect();
        // A column of buttons still needs a name for screen readers.
        out.push_str(
            &table[..head_end]
                .replace("<th>", "<th scope=\"col\">")
                .replace("<th scope=\"col\"></th>", "<th scope=\"col\"><span class=\"vh\">Actions</span></th>"),
        );
        for (i, row) in table[head_end..].split("<tr").enumerate() {
            if i > 0 {
                out.push_str("<tr");
            }
            for (j, cell) in row.split("<td").enumerate() {
                if j > 0 {
                    out.push_str("<td");
                    if let Some(name) = names.get(j - 1).filter(|n| !n.is_empty() && !cell.starts_with(" data-label")) {
                        out.push_str(&format!(" data-label=\"{name}\""));
                    }
                }
                out.push_str(cell);
            }
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

pub(crate) fn when(rfc3339: &str) -> String {
    rfc3339
        .parse::<Timestamp>()
        .map_or_else(|_| rfc3339.to_string(), |t| t.to_zoned(haven_policy::schedule::london_tz()).strftime("%a %d %b %H:%M").to_string())
}

/// Said at the top of the queue when anything was lost or could not be
/// delivered since Haven started: nothing is dropped unseen.
pub(crate) fn health_banner(s: &Service) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    let h = &s.health;
    let mut said = Vec::new();
    let (dropped, failed) = (h.findings_dropped.load(Relaxed), h.findings_failed.load(Relaxed));
    if dropped + failed > 0 {
        said.push(format!(
            "{} finding(s) from the web filter could not be recorded since Haven started ({dropped} refused because too many were waiting, {failed} because the database failed). Ask IT to check the log and the database.",
            dropped + failed
        ));
    }
    let given_up = h.notices_given_up.load(Relaxed);
    if given_up > 0 {
        said.push(format!(
            "{given_up} notice(s) could not be delivered after every retry; the trust's admins were told. Check the call-out lists and [notify] settings."
        ));
    }
    said.iter().map(|m| format!("<p class=\"err\" role=\"alert\">{}</p>", esc(m))).collect()
}

/// The evidence with the matched words marked.
pub(crate) fn highlight(text: &str, spans: &[[usize; 2]]) -> String {
    let mut spans: Vec<[usize; 2]> =
        spans.iter().copied().filter(|[a, b]| a < b && *b <= text.len() && text.is_char_boundary(*a) && text.is_char_boundary(*b)).collect();
    spans.sort_unstable();
    let mut out = String::new();
    let mut at = 0;
    for [a, b] in spans {
        if a < at {
            continue;
        }
        out.push_str(&esc(&text[at..a]));
        out.push_str(&format!("<mark>{}</mark>", esc(&text[a..b])));
        at = b;
    }
    out.push_str(&esc(&text[at..]));
    out
}

async fn alert_page(State(s): State<Service>, headers: HeaderMap, Path(id): Path<i64>) -> Response {
    let w = match signed_in(&s, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let now = Timestamp::now();
    let actor = format!("account:{}", w.account.id);
    let Ok(Some(detail)) = s.store.alert_detail(&w.account, id).await else {
        let _ = s.store.audit(now, &actor, "alert.read.denied", &format!("alert:{id}"), w.account.role.as_str()).await;
        return with_status(page(&s, "Alert not found", Some(&w), "<p>There is no such alert that you may see.</p>"), StatusCode::NOT_FOUND);
    };
    if s.store.audit(now, &actor, "alert.read", &format!("alert:{id}"), "").await.is_err() {
        return crate::unaudited();
    }
    let a = &detail.alert;
    let who = crate::people::labels(&s, std::slice::from_ref(a)).await.remove(&a.id).unwrap_or_else(|| esc(&a.person));
    let match_form = if s.store.alert_unidentified(id).await.unwrap_or(false) && w.account.role.sees_alerts() {
        crate::people::match_form(&s, id, &a.school, &a.person, &w.csrf).await
    } else {
        String::new()
    };
    let actions: String = detail
        .actions
        .iter()
        .map(|x| format!("<li>{} — <strong>{}</strong> by {}: {}</li>", esc(&when(&x.at)), esc(&x.kind), esc(x.by.as_deref().unwrap_or("Haven")), esc(&x.note)))
        .collect();
    let csrf = esc(&w.csrf);
    let button = |kind: &str, label: &str, note: &str| {
        format!(
            "<form method=\"post\" action=\"/alerts/{id}/act\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"kind\" value=\"{kind}\">{note}<button>{label}</button></form>"
        )
    };
    let body = format!(
        "<p>{} <strong>{}</strong> about <strong>{}</strong> at {} — received {}, due {}, status <strong>{}</strong>{}, {} occurrence(s), from {}.</p>\
         <h2>Evidence</h2><div class=\"evidence\">{}</div>{}<p><em>{}</em></p>\
         <h2>What has been done</h2><ul>{}</ul>{}{}{}",
        level(a.level),
        esc(&a.category),
        who,
        esc(&crate::people::school_name(&s, &a.school).await),
        esc(&when(&a.received_at)),
        esc(&a.due_at.as_deref().map_or("—".into(), when)),
        esc(&a.status),
        a.verdict.as_deref().and_then(Verdict::parse).map_or(String::new(), |v| format!(" (<strong class=\"verdict\">{}</strong>)", v.label())),
        a.occurrences,
        esc(&a.source),
        highlight(&detail.excerpt, &detail.spans),
        detail.url.as_deref().map(|u| format!("<p>Address: {}</p>", esc(u))).unwrap_or_default()
            + &match (&detail.screenshot, detail.screenshot_withheld) {
                (Some(_), _) => format!(
                    "<p><img src=\"/alerts/{id}/screenshot\" alt=\"Screenshot sent with the alert\" style=\"max-width:100%;border:1px solid #ccc\"></p>"
                ),
                (None, true) => "<p class=\"err\">A screenshot was sent but not kept: the text suggests it may show sexual content. \
                                 Do not look for it on the device yourself; if it may be illegal, raise a possibly illegal incident.</p>"
                    .to_string(),
                _ => String::new(),
            },
        esc(&detail.explanation),
        if actions.is_empty() { "<li>Nothing yet.</li>".into() } else { actions },
        if a.status == "open" { button("acknowledged", "Acknowledge", "") } else { String::new() },
        button("action", "Add action", "<label>Action taken <textarea name=\"note\" required></textarea></label>"),
        if a.status == "closed" {
            String::new()
        } else {
            button(
                "closed",
                "Close",
                "<label>Reason for closing <textarea name=\"note\" required></textarea></label>\
                 <fieldset><legend>Was it a concern? (Haven learns from your answer)</legend>\
                 <label><input type=\"radio\" name=\"verdict\" value=\"real-concern\" required> Real concern</label> \
                 <label><input type=\"radio\" name=\"verdict\" value=\"not-a-concern\"> Not a concern</label></fieldset>",
            )
        },
    ) + &occurrences(id, &detail)
        + &reporter(&s, id).await
        + &told(&s, id).await
        + &lesson_topics(&s, a).await
        + &crate::queue::alert_panel(&s, &w, &detail).await
        + &if w.account.role.sees_incidents() {
            crate::incidents::raise_form_for(id, &w.csrf, crate::incidents::branch_for(&a.category, a.level))
                + &format!("<p><a href=\"/people/{}/{}\">{}'s chronology</a></p>", esc(&a.school), esc(&a.person), esc(&a.person))
        } else {
            // The IT lead looks into a staff alert; incidents and records stay with the head.
            "<p>Record what IT found above; the headteacher raises an incident if one is needed.</p>".to_string()
        }
        + &match_form;
    page(&s, &format!("Alert {id}"), Some(&w), &body)
}

/// Lesson topics teachers declared for the pupil's classes around the
/// alert (issue 15): "online radicalisation, 10GH, Thursday" beside an
/// extremism alert from that class.
async fn lesson_topics(s: &Service, a: &Alert) -> String {
    let at = a.received_at.parse::<Timestamp>().unwrap_or_else(|_| Timestamp::now());
    let topics = crate::changes::topics_near(s, &a.school, &a.person, at).await;
    if topics.is_empty() {
        return String::new();
    }
    let items: String = topics
        .iter()
        .map(|t| {
            format!(
                "<li><strong>{}</strong> — class {}, {} (declared by {})</li>",
                esc(&t.reason),
                esc(t.scope_id.as_deref().unwrap_or_default()),
                esc(&when(&t.starts_at.to_string())),
                esc(&t.requested_by)
            )
        })
        .collect();
    format!("<h2>Lesson topics declared for this pupil's classes</h2><ul id=\"topics\">{items}</ul>")
}

/// Every finding the alert groups, each with its own time, text, address and screenshot.
fn occurrences(id: i64, d: &haven_store::alerts::AlertDetail) -> String {
    if d.evidence.len() < 2 {
        return String::new();
    }
    let rows: String = d
        .evidence
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let shot = match (&o.screenshot, o.screenshot_withheld) {
                (Some(_), _) => format!(" · <a href=\"/alerts/{id}/screenshot?n={i}\">screenshot</a>"),
                (None, true) => " · screenshot withheld (may show sexual content)".into(),
                _ => String::new(),
            };
            let repeats = if o.repeats > 1 { format!(" · {} times", o.repeats) } else { String::new() };
            format!(
                "<li><strong>{}</strong> · level {} · {}{}{}{}<div class=\"evidence\">{}</div></li>",
                esc(&when(&o.at)),
                o.level,
                esc(&o.source),
                o.url.as_deref().map(|u| format!(" · {}", esc(u))).unwrap_or_default(),
                repeats,
                shot,
                highlight(&o.excerpt, &o.spans)
            )
        })
        .collect();
    format!("<h2>Every occurrence ({})</h2><ol class=\"occurrences\">{rows}</ol>", d.evidence.len())
}

/// How to reach the person who reported it, when a person did (kept apart from their words).
async fn reporter(s: &Service, id: i64) -> String {
    match s.store.report_contact(id).await {
        Ok(Some(c)) => format!("<h2>Reported by</h2><p>{}</p>", esc(&c)),
        _ => String::new(),
    }
}

/// Who has been told, and how that went.
async fn told(s: &Service, id: i64) -> String {
    let notices = s.store.notices_for(id).await.unwrap_or_default();
    if notices.is_empty() {
        return String::new();
    }
    let rows: String = notices
        .iter()
        .map(|n| {
            format!(
                "<li>{}{} by {} — {}{}{}</li>",
                if n.callout {
                    "Call-out to "
                } else if n.failure {
                    "Failure notice to "
                } else {
                    ""
                },
                esc(&n.name),
                esc(&n.channel),
                esc(&n.state),
                if n.attempts > 1 { format!(" after {} tries", n.attempts) } else { String::new() },
                n.last_error.as_deref().filter(|_| n.state != "sent").map(|e| format!(" ({})", esc(e))).unwrap_or_default()
            )
        })
        .collect();
    format!("<h2>Who has been told</h2><ul>{rows}</ul>")
}

async fn screenshot(
    State(s): State<Service>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>,
) -> Response {
    let w = match signed_in(&s, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let Ok(Some(d)) = s.store.alert_detail(&w.account, id).await else { return StatusCode::NOT_FOUND.into_response() };
    // `?n=K`: the screenshot of the alert's K-th occurrence.
    let chosen = match q.get("n").and_then(|n| n.parse::<usize>().ok()) {
        Some(n) => d.evidence.get(n).and_then(|o| o.screenshot.clone()),
        None => d.screenshot.clone(),
    };
    let Some(sha) = chosen.filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Ok(bytes) = crate::incidents::read_file(&s, &sha) else { return StatusCode::NOT_FOUND.into_response() };
    if s.store.audit(Timestamp::now(), &format!("account:{}", w.account.id), "alert.screenshot.read", &format!("alert:{id}"), &sha).await.is_err() {
        return crate::unaudited();
    }
    let kind = if bytes.starts_with(&[0xff, 0xd8, 0xff]) { "image/jpeg" } else { "image/png" };
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "no-store")], bytes).into_response()
}

async fn act(State(s): State<Service>, headers: HeaderMap, Path(id): Path<i64>, Form(f): Form<HashMap<String, String>>) -> Response {
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
    let kind = f.get("kind").map_or("", String::as_str);
    let note = f.get("note").map_or("", |n| n.trim());
    if kind == "closed" && note.is_empty() {
        return with_status(page(&s, "A reason is needed", Some(&w), "<p class=\"err\">Closing an alert needs a reason.</p>"), StatusCode::BAD_REQUEST);
    }
    let done = if kind == "closed" {
        let Some(verdict) = f.get("verdict").and_then(|v| Verdict::parse(v)) else {
            return with_status(
                page(&s, "A verdict is needed", Some(&w), "<p class=\"err\">Closing an alert needs your verdict: a real concern, or not a concern.</p>"),
                StatusCode::BAD_REQUEST,
            );
        };
        s.store.close_alert(&w.account, id, note, verdict, Timestamp::now()).await
    } else {
        s.store.act_on_alert(&w.account, id, kind, note, Timestamp::now()).await
    };
    match done {
        Ok(true) => Redirect::to(&format!("/alerts/{id}")).into_response(),
        Ok(false) => with_status(page(&s, "Alert not found", Some(&w), "<p>There is no such alert that you may act on.</p>"), StatusCode::NOT_FOUND),
        Err(e) => with_status(page(&s, "Not saved", Some(&w), &format!("<p class=\"err\">{}</p>", esc(&e.to_string()))), StatusCode::BAD_REQUEST),
    }
}

async fn totals(State(s): State<Service>, headers: HeaderMap) -> Response {
    let w = match signed_in(&s, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let school = if w.account.role.trust_wide() { None } else { w.account.school.clone() };
    let rows = s.store.totals(school.as_deref()).await.unwrap_or_default();
    let max = rows.iter().map(|r| r.count).max().unwrap_or(1).max(1);
    let bars: String = rows
        .iter()
        .map(|r| {
            let width = (r.count * 100 / max).max(1);
            format!(
                "<tr><td>{}</td><td>{}</td><td><span style=\"display:inline-block;background:#24385b;height:.8rem;width:{width}%\"></span> {}</td></tr>",
                esc(&r.category),
                level(r.level),
                r.count
            )
        })
        .collect();
    if s.store.audit(Timestamp::now(), &format!("account:{}", w.account.id), "totals.read", "totals", "").await.is_err() {
        return crate::unaudited();
    }
    page(&s, "Totals", Some(&w), &format!("<p>Alerts by category and level, with no names or text.</p><table><tbody>{bars}</tbody></table>"))
}

async fn report_page(State(s): State<Service>, headers: HeaderMap) -> Response {
    let token = cookie(&headers, FORM_COOKIE).map(str::to_string).unwrap_or_else(|| haven_store::secrets::token("form"));
    let schools = s.store.schools().await.unwrap_or_default();
    let options: String = schools.iter().map(|sc| format!("<option value=\"{}\">{}</option>", esc(&sc.id), esc(&sc.name))).collect();
    let body = format!(
        "<p>Worried about a child or young person? Tell the school's safeguarding team here. You do not have to give your name. \
         If a child is in immediate danger, call 999.</p>\
         <form method=\"post\" action=\"/report\"><input type=\"hidden\" name=\"form\" value=\"{t}\">\
         <label>School <select name=\"school\">{options}</select></label>\
         <label>Who is it about? (optional) <input name=\"person\"></label>\
         <label>What happened? <textarea name=\"text\" required maxlength=\"5000\"></textarea></label>\
         <label>Your name or how to contact you (optional) <input name=\"contact\"></label><button>Send to the safeguarding team</button></form>",
        t = esc(&token)
    );
    let who = session(&s, &headers).await;
    let mut r = page(&s, "Report a concern", who.as_ref(), &body);
    set_cookie(&mut r, &headers, FORM_COOKIE, &token, 3600);
    r
}

async fn report(State(s): State<Service>, headers: HeaderMap, Form(f): Form<HashMap<String, String>>) -> Response {
    // Anonymous reports have no session: the form's token must match its cookie.
    let ok = cookie(&headers, FORM_COOKIE).is_some_and(|c| csrf_ok(c, f.get("form")));
    if !ok {
        return with_status(
            page(&s, "Report a concern", None, "<p class=\"err\">The form expired. <a href=\"/report\">Open it again</a>.</p>"),
            StatusCode::FORBIDDEN,
        );
    }
    let text = f.get("text").map_or("", |t| t.trim());
    let school = f.get("school").cloned().unwrap_or_default();
    if text.is_empty() || !s.store.schools().await.unwrap_or_default().iter().any(|sc| sc.id == school) {
        return with_status(page(&s, "Report a concern", None, "<p class=\"err\">Choose the school and say what happened.</p>"), StatusCode::BAD_REQUEST);
    }
    let person = f.get("person").map(|p| p.trim()).filter(|p| !p.is_empty()).unwrap_or("(not named)");
    let contact = f.get("contact").map(|c| c.trim()).filter(|c| !c.is_empty()).unwrap_or("anonymous");
    match s.report(&school, person, text, contact, Timestamp::now()).await {
        Ok(_) => page(&s, "Thank you", None, "<p>Your report has reached the safeguarding team. If a child is in immediate danger, call 999.</p>"),
        Err(e) => with_status(page(&s, "Not sent", None, &format!("<p class=\"err\">{}</p>", esc(&e.to_string()))), StatusCode::SERVICE_UNAVAILABLE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highlighting_escapes_and_marks() {
        assert_eq!(highlight("i <3 kill myself", &[[5, 16]]), "i &lt;3 <mark>kill myself</mark>");
        assert_eq!(highlight("abc", &[[2, 9], [0, 1]]), "<mark>a</mark>bc", "spans past the end are dropped");
        assert_eq!(highlight("héllo", &[[1, 2]]), "héllo", "not on a character boundary");
    }

    #[test]
    fn cells_are_labelled_with_their_column() {
        let t = "<p>x</p><table><thead><tr><th></th><th>Level</th><th><abbr>Due</abbr></th></tr></thead><tbody><tr><td>a</td><td class=\"k\">b</td><td>c</td></tr></tbody></table>";
        assert_eq!(
            label_cells(t),
            "<p>x</p><table><thead><tr><th scope=\"col\"><span class=\"vh\">Actions</span></th><th scope=\"col\">Level</th><th scope=\"col\"><abbr>Due</abbr></th></tr></thead>\
             <tbody><tr><td>a</td><td data-label=\"Level\" class=\"k\">b</td><td data-label=\"Due\">c</td></tr></tbody></table>"
        );
        assert_eq!(label_cells("<table><tr><td>1</td></tr></table>"), "<table><tr><td>1</td></tr></table>", "no header row, nothing to say");
    }

    #[test]
    fn csrf_compare() {
        assert!(csrf_ok("abc", Some(&"abc".to_string())));
        assert!(!csrf_ok("abc", Some(&"abd".to_string())));
        assert!(!csrf_ok("abc", None));
    }
}
