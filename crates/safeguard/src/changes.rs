//! Filtering governance in the browser (requirements F02, F21, F22, F41):
//! authorised staff change what is blocked or allowed for a school, group,
//! class or person, always with a reason and a time; a teacher asks for a
//! lesson unblock, reports over- or under-blocking, or declares a lesson
//! topic; approvers (the `[filtering] approvers` chain) approve, narrow or
//! refuse with a reason, and the requester sees the answer; the decision
//! register holds every change and request with its whole history,
//! searchable and exported as CSV, and one page answers "what is blocked or
//! allowed for this group, and why". A change is in force on DNS and the
//! proxy within seconds: `haven serve` looks for new ones every two seconds.

use std::collections::HashMap;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use haven_policy::changes::{Aim, Whom};
use haven_policy::{Category, PolicySet, Target, Verdict};
use haven_store::Role;
use haven_store::changes::{ChangeQuery, FilterChange, Narrowing, NewChange};
use haven_store::people::Account;
use haven_store::sessions::Session;
use jiff::Timestamp;

use crate::Service;
use crate::web::{csrf_ok, esc, page, signed_in, when, with_status};

/// The filtering routes.
pub fn routes() -> axum::Router<Service> {
    axum::Router::new()
        .route("/filtering", get(home))
        .route("/filtering/ask", post(ask))
        .route("/filtering/make", post(make))
        .route("/filtering/changes", get(register))
        .route("/filtering/changes/{id}", get(one))
        .route("/filtering/changes/{id}/decide", post(decide))
        .route("/filtering/policy", get(policy))
}

/// Who changes filtering directly (no request): IT and the safeguarding leads,
/// as the filtering standards ask ("authorised staff, without a vendor").
fn may_make(role: Role) -> bool {
    role.does_it() || matches!(role, Role::Dsl | Role::DeputyDsl | Role::TrustAdmin | Role::TrustSafeguardingLead)
}

/// Who may read the whole register: those who answer for filtering. A
/// teacher sees their own requests; a governor reads the governors' report.
fn may_read_register(role: Role) -> bool {
    may_make(role) || role == Role::Headteacher
}

/// Whether `role` may give the approval that step `step` of the chain asks for.
fn approves(role: Role, step: &str) -> bool {
    match step {
        "dsl" => matches!(role, Role::Dsl | Role::DeputyDsl | Role::TrustSafeguardingLead),
        "deputy-dsl" => matches!(role, Role::Dsl | Role::DeputyDsl),
        "it-technician" => matches!(role, Role::ItTechnician | Role::ItLead | Role::TrustAdmin),
        "it-lead" => matches!(role, Role::ItLead | Role::TrustAdmin),
        other => Role::parse(other) == Some(role),
    }
}

/// The role a request waits for, by the approvals it has had.
fn step(s: &Service, c: &FilterChange) -> Option<String> {
    let chain = &s.settings().approvers;
    let at = usize::try_from(c.approvals).unwrap_or(0).min(chain.len().saturating_sub(1));
    chain.get(at).cloned()
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

fn role_name(step: &str) -> &str {
    match step {
        "dsl" => "the DSL",
        "deputy-dsl" => "a deputy DSL",
        "it-technician" => "IT",
        "it-lead" => "the IT lead",
        "headteacher" => "the headteacher",
        "trust-safeguarding-lead" => "the trust's safeguarding lead",
        "trust-admin" => "the trust's administrator",
        other => other,
    }
}

/// The schools an account works at: its own, or every school for trust roles.
fn schools_of(s: &Service, a: &Account) -> Vec<(String, String)> {
    let policy = s.settings().policy.clone();
    policy.schools.iter().filter(|x| a.school.is_none() || a.school.as_deref() == Some(x.id.as_str())).map(|x| (x.id.clone(), x.name.clone())).collect()
}

fn may_see(a: &Account, c: &FilterChange) -> bool {
    a.school.is_none() || a.school.as_deref() == Some(c.school.as_str())
}

async fn staff(s: &Service, headers: &HeaderMap) -> Result<Session, Response> {
    let w = signed_in(s, headers).await?;
    if w.account.role == Role::Governor {
        let body = "<p>Governors see filtering in the governors' report; changes and requests are made by staff.</p>";
        return Err(with_status(page(s, "Not for your role", Some(&w), body), StatusCode::FORBIDDEN));
    }
    Ok(w)
}

async fn posted(s: &Service, headers: &HeaderMap, f: &HashMap<String, String>) -> Result<Session, Response> {
    let w = staff(s, headers).await?;
    if !csrf_ok(&w.csrf, f.get("csrf")) {
        return Err(with_status(page(s, "Form expired", Some(&w), "<p>Go back, reload the page and try again.</p>"), StatusCode::FORBIDDEN));
    }
    Ok(w)
}

fn refused(s: &Service, w: &Session, why: &str) -> Response {
    let body = format!("<p class=\"err\">{}</p><p><a href=\"/filtering\">Back to filtering</a></p>", esc(why));
    with_status(page(s, "Not done", Some(w), &body), StatusCode::BAD_REQUEST)
}

fn school_options(s: &Service, a: &Account) -> String {
    schools_of(s, a).iter().map(|(id, name)| format!("<option value=\"{}\">{}</option>", esc(id), esc(name))).collect()
}

fn category_options() -> String {
    let mut cats: Vec<Category> = Category::ALL.iter().copied().filter(|c| !c.is_illegal()).collect();
    cats.sort_by_key(|c| c.id());
    let mut out = String::from("<option value=\"\">— or a category —</option>");
    for c in cats {
        out.push_str(&format!("<option value=\"{}\">{} ({})</option>", c.id(), esc(c.title()), c.id()));
    }
    out
}

fn group_options(p: &PolicySet) -> String {
    p.groups.iter().map(|g| format!("<option value=\"{}\">{}</option>", esc(&g.id), esc(&g.name))).collect()
}

fn status_class(status: &str) -> &'static str {
    match status {
        "in force" => "ok",
        "waiting for a decision" => "overdue",
        _ => "",
    }
}

/// How the people who asked for and decided `list` are shown, in one look-up.
async fn names(s: &Service, list: &[FilterChange]) -> HashMap<String, String> {
    let people: Vec<&str> = list.iter().flat_map(|c| std::iter::once(c.requested_by.as_str()).chain(c.decided_by.as_deref())).collect();
    s.store.actor_labels(&people).await.unwrap_or_default()
}

/// One person as shown: their name and e-mail, else as recorded.
fn shown<'a>(names: &'a HashMap<String, String>, who: &'a str) -> &'a str {
    names.get(who).map_or(who, String::as_str)
}

fn rows(list: &[FilterChange], names: &HashMap<String, String>, now: Timestamp) -> String {
    list.iter()
        .map(|c| {
            format!(
                "<tr><td><a href=\"/filtering/changes/{id}\">{id}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td></tr>",
                esc(&c.kind),
                esc(&c.for_whom()),
                esc(&c.what()),
                esc(&span(c)),
                status_class(c.status(now)),
                esc(c.status(now)),
                esc(&c.reason),
                esc(shown(names, &c.requested_by)),
                id = c.id
            )
        })
        .collect()
}

fn span(c: &FilterChange) -> String {
    let from = when(&c.starts_at.to_string());
    match c.until {
        Some(u) => format!("{from} – {}", when(&u.to_string())),
        None => format!("from {from}"),
    }
}

const TABLE_HEAD: &str =
    "<thead><tr><th>No.</th><th>Kind</th><th>For</th><th>What</th><th>When</th><th>Status</th><th>Why</th><th>Asked or made by</th></tr></thead>";

async fn home(State(s): State<Service>, headers: HeaderMap) -> Response {
    let w = match staff(&s, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let now = Timestamp::now();
    let csrf = esc(&w.csrf);
    let settings = s.settings();
    let p = settings.policy.clone();
    let schools = school_options(&s, &w.account);
    let cats = category_options();
    let groups = group_options(&p);
    let a = &w.account;
    let mut body = String::from(
        "<p>What pupils can reach is set by the trust's policy; on top of it, changes made here allow or block a site or a \
         category for a school, group, class or person, for a time. Every change and request keeps its reason and its whole \
         story in the <a href=\"/filtering/changes\">decision register</a>. Illegal content (IWF, CTIRU) can never be allowed.</p>\
         <p><a href=\"/filtering/changes\">Decision register</a> · <a href=\"/filtering/checks\">Filtering checks</a> · <a href=\"/filtering/suggestions\">Suggestions</a> · \
         <a href=\"/admin/lists\">List feeds</a> · <a href=\"/history\">Web and DNS history</a></p>",
    );
    // Waiting for this person's approval.
    let school = a.school.clone();
    let waiting = s
        .store
        .filter_changes(&ChangeQuery { school: school.clone(), state: Some("requested".into()), limit: 200, ..ChangeQuery::default() })
        .await
        .unwrap_or_default();
    let mine: Vec<FilterChange> = waiting.iter().filter(|c| step(&s, c).is_some_and(|st| approves(a.role, &st))).cloned().collect();
    if !mine.is_empty() {
        let names = names(&s, &mine).await;
        body.push_str(&format!("<h2>Waiting for your decision ({})</h2><table>{TABLE_HEAD}<tbody>{}</tbody></table>", mine.len(), rows(&mine, &names, now)));
    } else if may_make(a.role) {
        body.push_str("<h2>Waiting for your decision</h2><p>Nothing is waiting for you.</p>");
    }
    let own = s.store.filter_changes(&ChangeQuery { requested_by: Some(a.email.clone()), limit: 50, ..ChangeQuery::default() }).await.unwrap_or_default();
    if !own.is_empty() {
        let names = names(&s, &own).await;
        let decided: String = own
            .iter()
            .map(|c| {
                let answer = match (&c.decision, &c.decided_by) {
                    (Some(d), Some(by)) => format!("{} — {}", esc(shown(&names, by)), esc(d)),
                    (None, Some(by)) => esc(shown(&names, by)),
                    _ => String::new(),
                };
                format!(
                    "<tr><td><a href=\"/filtering/changes/{id}\">{id}</a></td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{answer}</td></tr>",
                    esc(&c.for_whom()),
                    esc(&c.what()),
                    esc(&span(c)),
                    status_class(c.status(now)),
                    esc(c.status(now)),
                    id = c.id
                )
            })
            .collect();
        body.push_str(&format!(
            "<h2>Your requests</h2><table class=\"mine\"><thead><tr><th>No.</th><th>For</th><th>What</th><th>When</th><th>Status</th><th>Answer</th></tr></thead><tbody>{decided}</tbody></table>"
        ));
    }
    body.push_str(&format!(
        "<h2>Ask for a change</h2><p>For a lesson that needs a blocked site, or a site that is blocked or allowed wrongly. \
         {} decide{}; you will see the answer here.</p>\
         <form method=\"post\" action=\"/filtering/ask\" id=\"ask\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <label>What kind <select name=\"kind\"><option value=\"lesson\">Unblock for a lesson</option>\
         <option value=\"over-blocking\">This site should be allowed</option><option value=\"under-blocking\">This site should be blocked</option></select></label>\
         <label>School <select name=\"school\">{schools}</select></label>\
         <label>For <select name=\"scope\"><option value=\"class\">a class</option><option value=\"group\">a group</option><option value=\"school\">the whole school</option></select>\
         <input name=\"scope_id\" placeholder=\"10GH, or a group id\" maxlength=\"100\"></label>\
         <label>Site <input name=\"site\" placeholder=\"example.com or example.com/page\" maxlength=\"300\"></label>\
         <label>Category <select name=\"category\">{cats}</select></label>\
         <label>From <input type=\"datetime-local\" name=\"from\"></label><label>Until <input type=\"datetime-local\" name=\"until\"></label>\
         <label>Why <input name=\"reason\" required maxlength=\"500\" placeholder=\"Year 10 media lesson: documentary clips\"></label><button>Ask</button></form>\
         <h2>Declare a lesson topic</h2><p>Teaching something that may set off monitoring (online radicalisation, self-harm \
         awareness)? Say so, and the DSL sees it beside alerts from that class.</p>\
         <form method=\"post\" action=\"/filtering/ask\" id=\"topic\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"kind\" value=\"topic\">\
         <label>School <select name=\"school\">{schools}</select></label><input type=\"hidden\" name=\"scope\" value=\"class\">\
         <label>Class <input name=\"scope_id\" required maxlength=\"100\" placeholder=\"10GH\"></label>\
         <label>Topic <input name=\"reason\" required maxlength=\"500\" placeholder=\"Online radicalisation\"></label>\
         <label>From <input type=\"datetime-local\" name=\"from\" required></label><label>Until <input type=\"datetime-local\" name=\"until\" required></label><button>Declare</button></form>",
        esc(&capitalised(&settings.approvers.iter().map(|r| role_name(r)).collect::<Vec<_>>().join(", then "))),
        if settings.approvers.len() == 1 { "s" } else { "" }
    ));
    if may_make(a.role) {
        body.push_str(&format!(
            "<h2>Make a change</h2><p>In force on DNS and the web proxy within seconds; it lapses by itself at the time you set.</p>\
             <form method=\"post\" action=\"/filtering/make\" id=\"make\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <label>School <select name=\"school\">{schools}</select></label>\
             <label>For <select name=\"scope\"><option value=\"group\">a group</option><option value=\"class\">a class</option><option value=\"user\">a person</option>\
             <option value=\"school\">the whole school</option></select> <input name=\"scope_id\" maxlength=\"100\" placeholder=\"group id, class or login\"></label>\
             <label>Do <select name=\"verdict\"><option value=\"allow\">Allow</option><option value=\"block\">Block</option></select></label>\
             <label>Site <input name=\"site\" maxlength=\"300\"></label><label>Category <select name=\"category\">{cats}</select></label>\
             <label>From <input type=\"datetime-local\" name=\"from\"></label><label>Until <input type=\"datetime-local\" name=\"until\"></label>\
             <label>Why <input name=\"reason\" required maxlength=\"500\"></label><button>Make the change</button></form>"
        ));
    }
    if may_read_register(a.role) {
        body.push_str(&format!(
            "<h2>What applies to a group</h2><form method=\"get\" action=\"/filtering/policy\"><label>School <select name=\"school\">{schools}</select></label>\
             <label>Group <select name=\"group\">{groups}</select></label><button>Show</button></form>"
        ));
    }
    page(&s, "Filtering", Some(&w), &body)
}

/// A form's time in the school's wall clock (`2026-12-07T10:00`).
fn form_time(s: &Service, school: &str, text: Option<&String>) -> Result<Option<Timestamp>, String> {
    let Some(text) = text.map(|t| t.trim()).filter(|t| !t.is_empty()) else { return Ok(None) };
    let tz = s.calendar(school).tz;
    haven_policy::schedule::parse_instant(text, &tz).map(Some).ok_or(format!("{text:?} is not a date and time"))
}

/// A change or request from a form, checked against the trust's groups,
/// classes and people, and the categories.
fn from_form(s: &Service, a: &Account, f: &HashMap<String, String>, kind: &str) -> Result<NewChange, String> {
    let field = |k: &str| f.get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    let school = field("school").ok_or("choose a school")?;
    if !schools_of(s, a).iter().any(|(id, _)| *id == school) {
        return Err(format!("you do not work at {school}"));
    }
    let scope = field("scope").unwrap_or_else(|| "group".into());
    let scope_id = field("scope_id");
    let whom = Whom::parse(&scope, scope_id.as_deref())?;
    let policy = s.settings().policy.clone();
    policy.scope_of(&school, &whom)?;
    let now = Timestamp::now();
    let starts_at = form_time(s, &school, f.get("from"))?.unwrap_or(now);
    let until = form_time(s, &school, f.get("until"))?;
    let reason = field("reason").ok_or("say why: it is kept in the decision register")?;
    if kind == "topic" {
        return Ok(NewChange { school, kind: kind.into(), scope, scope_id, verdict: None, site: None, category: None, reason, starts_at, until });
    }
    let verdict = match kind {
        "lesson" | "over-blocking" => "allow".to_string(),
        "under-blocking" => "block".to_string(),
        _ => field("verdict").ok_or("say allow or block")?,
    };
    if kind == "lesson" && until.is_none() {
        return Err("a lesson unblock needs an end time".into());
    }
    let aim = Aim::parse(field("site").as_deref(), field("category").as_deref())?;
    let (site, category) = match aim {
        Aim::Category(c) if c.is_illegal() && verdict == "allow" => return Err(format!("{} is illegal content and can never be allowed", c.title())),
        Aim::Category(c) => (None, Some(c.id().to_string())),
        Aim::Site(site) => (Some(site), None),
    };
    Ok(NewChange { school, kind: kind.into(), scope, scope_id, verdict: Some(verdict), site, category, reason, starts_at, until })
}

async fn ask(State(s): State<Service>, headers: HeaderMap, Form(f): Form<HashMap<String, String>>) -> Response {
    let w = match posted(&s, &headers, &f).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let kind = f.get("kind").map(String::as_str).unwrap_or("lesson");
    if !matches!(kind, "lesson" | "over-blocking" | "under-blocking" | "topic") {
        return refused(&s, &w, "choose what kind of request it is");
    }
    let c = match from_form(&s, &w.account, &f, kind) {
        Ok(c) => c,
        Err(e) => return refused(&s, &w, &e),
    };
    let state = if kind == "topic" { "noted" } else { "requested" };
    match s.store.add_filter_change(&c, state, &w.account.email, Timestamp::now()).await {
        Ok(id) => Redirect::to(&format!("/filtering/changes/{id}")).into_response(),
        Err(e) => refused(&s, &w, &e.to_string()),
    }
}

async fn make(State(s): State<Service>, headers: HeaderMap, Form(f): Form<HashMap<String, String>>) -> Response {
    let w = match posted(&s, &headers, &f).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    if !may_make(w.account.role) {
        return with_status(refused(&s, &w, "teachers ask for changes; IT and the safeguarding leads make them"), StatusCode::FORBIDDEN);
    }
    let c = match from_form(&s, &w.account, &f, "change") {
        Ok(c) => c,
        Err(e) => return refused(&s, &w, &e),
    };
    match s.store.add_filter_change(&c, "in-force", &w.account.email, Timestamp::now()).await {
        Ok(id) => Redirect::to(&format!("/filtering/changes/{id}")).into_response(),
        Err(e) => refused(&s, &w, &e.to_string()),
    }
}

#[derive(serde::Deserialize, Default)]
struct RegisterQuery {
    q: Option<String>,
    state: Option<String>,
    format: Option<String>,
}

/// A CSV cell: quoted, and a leading `= + - @` defused so a spreadsheet
/// never runs what a requester typed.
fn cell(v: &str) -> String {
    let v = if v.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{v}") } else { v.to_string() };
    format!("\"{}\"", v.replace('"', "\"\""))
}

async fn register(State(s): State<Service>, headers: HeaderMap, Query(q): Query<RegisterQuery>) -> Response {
    let w = match staff(&s, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let a = &w.account;
    let now = Timestamp::now();
    let query = ChangeQuery {
        school: a.school.clone(),
        state: q.state.clone().filter(|s| haven_store::changes::STATES.contains(&s.as_str())),
        text: q.q.clone(),
        // A teacher's register is their own requests.
        requested_by: (!may_read_register(a.role)).then(|| a.email.clone()),
        limit: 5000,
    };
    let list = match s.store.filter_changes(&query).await {
        Ok(l) => l,
        Err(e) => return refused(&s, &w, &e.to_string()),
    };
    let detail = format!("{} rows{}", list.len(), q.q.as_deref().map(|t| format!(", search {t:?}")).unwrap_or_default());
    if q.format.as_deref() == Some("csv") {
        let _ = s.store.audit(now, &format!("account:{}", a.id), "filter-change.export", "filter-changes", &detail).await;
        let mut out = String::from("id,kind,school,for,what,from,until,status,reason,requested_by,decided_by,decided_at,decision,history\r\n");
        for c in &list {
            let history = s.store.filter_change_history(c.id).await.unwrap_or_default();
            let story = history
                .iter()
                .map(|e| format!("{} {} {}{}", e.at, e.actor, e.action, if e.detail.is_empty() { String::new() } else { format!(": {}", e.detail) }))
                .collect::<Vec<_>>()
                .join(" | ");
            let line = [
                c.id.to_string(),
                c.kind.clone(),
                c.school.clone(),
                c.for_whom(),
                c.what(),
                c.starts_at.to_string(),
                c.until.map(|u| u.to_string()).unwrap_or_default(),
                c.status(now).to_string(),
                c.reason.clone(),
                c.requested_by.clone(),
                c.decided_by.clone().unwrap_or_default(),
                c.decided_at.map(|d| d.to_string()).unwrap_or_default(),
                c.decision.clone().unwrap_or_default(),
                story,
            ];
            out.push_str(&line.iter().map(|v| cell(v)).collect::<Vec<_>>().join(","));
            out.push_str("\r\n");
        }
        let mut r = (StatusCode::OK, out).into_response();
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
        h.insert(header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"haven-filtering-register.csv\""));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return r;
    }
    let _ = s.store.audit(now, &format!("account:{}", a.id), "filter-change.list", "filter-changes", &detail).await;
    let states: String = std::iter::once(("", "every state"))
        .chain(haven_store::changes::STATES.iter().map(|s| (*s, *s)))
        .map(|(v, t)| format!("<option value=\"{v}\"{}>{t}</option>", if q.state.as_deref() == Some(v) { " selected" } else { "" }))
        .collect();
    let export = format!(
        "/filtering/changes?format=csv{}{}",
        q.q.as_deref().map(|t| format!("&q={}", url_escape(t))).unwrap_or_default(),
        q.state.as_deref().map(|t| format!("&state={}", url_escape(t))).unwrap_or_default()
    );
    let names = names(&s, &list).await;
    let body = format!(
        "<p>Every change to filtering and every request, with who asked, why, who decided and until when. Lapsed changes stay \
         here; nothing is deleted.</p>\
         <form method=\"get\" action=\"/filtering/changes\"><label>Search <input name=\"q\" value=\"{}\" placeholder=\"a site, class, person or reason\"></label>\
         <label>State <select name=\"state\">{states}</select></label><button>Search</button></form>\
         <p><a href=\"{}\" id=\"export\">Export as CSV (with each entry's history)</a></p>\
         <table id=\"register\">{TABLE_HEAD}<tbody>{}</tbody></table>",
        esc(q.q.as_deref().unwrap_or_default()),
        esc(&export),
        rows(&list, &names, now)
    );
    page(&s, "Decision register", Some(&w), &body)
}

fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn one(State(s): State<Service>, headers: HeaderMap, Path(id): Path<i64>) -> Response {
    let w = match staff(&s, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let a = &w.account;
    let c = match s.store.filter_change(id).await {
        Ok(c) if may_see(a, &c) && (may_read_register(a.role) || c.requested_by == a.email) => c,
        _ => return with_status(page(&s, "Not found", Some(&w), "<p>No such change, or not one you may see.</p>"), StatusCode::NOT_FOUND),
    };
    let now = Timestamp::now();
    let _ = s.store.audit(now, &format!("account:{}", a.id), "filter-change.read", &format!("filter-change:{id}"), "").await;
    let history = s.store.filter_change_history(id).await.unwrap_or_default();
    let people: Vec<&str> = history.iter().map(|e| e.actor.as_str()).chain(std::iter::once(c.requested_by.as_str())).chain(c.decided_by.as_deref()).collect();
    let names = s.store.actor_labels(&people).await.unwrap_or_default();
    let story: String = history
        .iter()
        .map(|e| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&when(&e.at.to_string())),
                esc(shown(&names, &e.actor)),
                esc(&e.action),
                esc(&e.detail)
            )
        })
        .collect();
    let csrf = esc(&w.csrf);
    let mut body = format!(
        "<table class=\"facts\"><tr><th>Kind</th><td>{}</td></tr><tr><th>School</th><td>{}</td></tr><tr><th>For</th><td>{}</td></tr>\
         <tr><th>What</th><td>{}</td></tr><tr><th>When</th><td>{}</td></tr><tr><th>Status</th><td id=\"status\">{}</td></tr>\
         <tr><th>Why</th><td>{}</td></tr><tr><th>Asked or made by</th><td>{}</td></tr><tr><th>Decision</th><td id=\"decision\">{}</td></tr></table>\
         <h2>History</h2><table id=\"history\"><thead><tr><th>When</th><th>Who</th><th>What</th><th>Said</th></tr></thead><tbody>{story}</tbody></table>",
        esc(&c.kind),
        esc(&c.school),
        esc(&c.for_whom()),
        esc(&c.what()),
        esc(&span(&c)),
        esc(c.status(now)),
        esc(&c.reason),
        esc(shown(&names, &c.requested_by)),
        esc(&match (&c.decided_by, &c.decision) {
            (Some(by), Some(d)) => format!("{}: {d}", shown(&names, by)),
            (Some(by), None) => shown(&names, by).to_string(),
            _ => "—".into(),
        }),
    );
    if c.state == "requested"
        && let Some(st) = step(&s, &c)
    {
        if approves(a.role, &st) {
            body.push_str(&format!(
                "<h2>Decide</h2><p>Approve as asked, or narrow it (a class instead of a year group, a shorter time). It is in force \
                 on DNS and the web proxy within seconds of the last approval.</p>\
                 <form method=\"post\" action=\"/filtering/changes/{id}/decide\" id=\"approve\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                 <input type=\"hidden\" name=\"decision\" value=\"approve\">\
                 <label>Only for <select name=\"scope\"><option value=\"\">as asked</option><option value=\"class\">a class</option><option value=\"group\">a group</option>\
                 <option value=\"user\">a person</option></select> <input name=\"scope_id\" maxlength=\"100\"></label>\
                 <label>Until <input type=\"datetime-local\" name=\"until\"></label><label>Note <input name=\"note\" maxlength=\"500\"></label><button>Approve</button></form>\
                 <form method=\"post\" action=\"/filtering/changes/{id}/decide\" id=\"refuse\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                 <input type=\"hidden\" name=\"decision\" value=\"refuse\"><label>Why not <input name=\"note\" required maxlength=\"500\"></label><button>Refuse</button></form>"
            ));
        } else {
            body.push_str(&format!("<p>Waiting for {}.</p>", esc(role_name(&st))));
        }
    }
    let ends = (c.state == "in-force" && c.until.is_none_or(|u| u > now) && may_make(a.role)) || (c.state == "requested" && c.requested_by == a.email);
    if ends {
        body.push_str(&format!(
            "<form method=\"post\" action=\"/filtering/changes/{id}/decide\" id=\"withdraw\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <input type=\"hidden\" name=\"decision\" value=\"withdraw\"><label>{} <input name=\"note\" required maxlength=\"500\" placeholder=\"why\"></label><button>{}</button></form>",
            if c.state == "requested" { "Take the request back" } else { "End it now" },
            if c.state == "requested" { "Withdraw" } else { "End" }
        ));
    }
    body.push_str("<p><a href=\"/filtering\">Filtering</a> · <a href=\"/filtering/changes\">Decision register</a></p>");
    page(&s, &format!("Filtering change {id}"), Some(&w), &body)
}

async fn decide(State(s): State<Service>, headers: HeaderMap, Path(id): Path<i64>, Form(f): Form<HashMap<String, String>>) -> Response {
    let w = match posted(&s, &headers, &f).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let a = &w.account;
    let c = match s.store.filter_change(id).await {
        Ok(c) if may_see(a, &c) => c,
        _ => return refused(&s, &w, "no such change"),
    };
    let now = Timestamp::now();
    let note = f.get("note").map(|n| n.trim().to_string()).unwrap_or_default();
    let done = match f.get("decision").map(String::as_str) {
        Some("approve" | "refuse") if !step(&s, &c).is_some_and(|st| approves(a.role, &st)) => {
            return with_status(refused(&s, &w, "this request is waiting for someone else's decision"), StatusCode::FORBIDDEN);
        }
        Some("approve") => {
            let mut narrow = Narrowing::default();
            let scope_id = f.get("scope_id").map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
            if let Some(scope) = f.get("scope").filter(|v| !v.is_empty()) {
                let whom = match Whom::parse(scope, scope_id.as_deref()) {
                    Ok(w) => w,
                    Err(e) => return refused(&s, &w, &e),
                };
                if let Err(e) = s.settings().policy.scope_of(&c.school, &whom) {
                    return refused(&s, &w, &e);
                }
                narrow.scope = Some((scope.clone(), scope_id));
            }
            narrow.until = match form_time(&s, &c.school, f.get("until")) {
                Ok(u) => u,
                Err(e) => return refused(&s, &w, &e),
            };
            let needed = u32::try_from(s.settings().approvers.len()).unwrap_or(1);
            s.store.approve_filter_change(id, &a.email, needed, &narrow, &note, now).await.map(drop)
        }
        Some("refuse") => s.store.refuse_filter_change(id, &a.email, &note, now).await,
        Some("withdraw") if may_make(a.role) || (c.state == "requested" && c.requested_by == a.email) => {
            s.store.withdraw_filter_change(id, &a.email, &note, now).await
        }
        _ => return with_status(refused(&s, &w, "you cannot do that to this change"), StatusCode::FORBIDDEN),
    };
    match done {
        Ok(()) => Redirect::to(&format!("/filtering/changes/{id}")).into_response(),
        Err(e) => refused(&s, &w, &e.to_string()),
    }
}

#[derive(serde::Deserialize)]
struct PolicyQuery {
    school: String,
    group: String,
}

/// "What is blocked or allowed for Year 8, and why": the group's policy at
/// the school, the school's overrides, the time windows, and the changes
/// in force or to come for the group, its classes and its people.
async fn policy(State(s): State<Service>, headers: HeaderMap, Query(q): Query<PolicyQuery>) -> Response {
    let w = match staff(&s, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let a = &w.account;
    if !may_read_register(a.role) || !schools_of(&s, a).iter().any(|(id, _)| *id == q.school) {
        return with_status(
            page(&s, "Not for your role", Some(&w), "<p>IT, the safeguarding leads and the headteacher read this page.</p>"),
            StatusCode::FORBIDDEN,
        );
    }
    let p = s.settings().policy.clone();
    let (Some(school), Some(group)) = (p.school(&q.school), p.group(&q.group)) else {
        return refused(&s, &w, "no such school or group");
    };
    let now = Timestamp::now();
    let _ = s.store.audit(now, &format!("account:{}", a.id), "filtering.policy.read", &format!("group:{}", q.group), &q.school).await;
    let subject = haven_policy::Subject { user: None, group, school: Some(school) };
    let eff = p.effective(&subject);
    let titles = |c: haven_policy::CategorySet| c.iter().map(|c| c.title()).collect::<Vec<_>>().join(", ");
    let entries: String = eff
        .policy
        .entries
        .entries()
        .iter()
        .map(|(e, v)| {
            format!("<li>{} {} (the trust's policy {})</li>", if *v == Verdict::Allow { "Allowed:" } else { "Blocked:" }, esc(e), esc(&eff.policy.id))
        })
        .chain(eff.overrides.iter().flat_map(|o| {
            o.entries
                .entries()
                .into_iter()
                .map(|(e, v)| format!("<li>{} {} (this school's override)</li>", if v == Verdict::Allow { "Allowed:" } else { "Blocked:" }, esc(e)))
        }))
        .collect();
    let windows: String = p
        .windows
        .iter()
        .filter(|x| (x.groups.is_empty() || x.groups.contains(&group)) && (x.schools.is_empty() || x.schools.contains(&school)))
        .map(|x| {
            let what = match x.block {
                Target::All => "everything".to_string(),
                Target::Categories(c) => titles(c),
            };
            format!(
                "<li>{}: {what} blocked{}</li>",
                esc(&x.name),
                if x.except.is_empty() { String::new() } else { format!(" except {}", esc(&titles(x.except))) }
            )
        })
        .collect();
    let classes: Vec<&str> = p
        .users
        .iter()
        .filter(|u| u.group == group && u.school == Some(school))
        .flat_map(|u| u.classes.iter().map(|c| p.classes[*c].id.as_str()))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let members = |login: &str| p.user(login).is_some_and(|u| p.users[u].group == group);
    let changes = s.store.filter_changes_in_force(now).await.unwrap_or_default();
    let relevant: Vec<FilterChange> = changes
        .into_iter()
        .filter(|c| c.school == q.school)
        .filter(|c| match (c.scope.as_str(), c.scope_id.as_deref()) {
            ("school", _) => true,
            ("group", Some(g)) => g == q.group,
            ("class", Some(cl)) => classes.iter().any(|x| x.eq_ignore_ascii_case(cl)),
            ("user", Some(u)) => members(u),
            _ => false,
        })
        .collect();
    let group_name = &p.groups[group].name;
    let body = format!(
        "<p>{} at {}, now. Illegal content (IWF, CTIRU) is blocked for everyone whatever is written here.</p>\
         <h2>Blocked categories</h2><p id=\"blocked\">{}</p><h2>Allowed over blocked ones</h2><p>{}</p>\
         <h2>Sites named by staff</h2><ul>{entries}</ul><h2>Time windows</h2><ul>{windows}</ul>\
         <h2>Uncategorised sites</h2><p>{}</p><h2>Safe search</h2><p>{:?}</p>\
         <h2>Changes in force or to come ({})</h2><p>For the school, the group, its classes ({}) and its people.</p>\
         <table id=\"changes\">{TABLE_HEAD}<tbody>{}</tbody></table>",
        esc(group_name),
        esc(&p.schools[school].name),
        esc(&titles(eff.block)),
        esc(&titles(eff.allow)),
        if eff.policy.uncategorised == Verdict::Block { "Blocked (only listed sites open)" } else { "Allowed" },
        eff.safe_search,
        relevant.len(),
        esc(&classes.join(", ")),
        rows(&relevant, &names(&s, &relevant).await, now)
    );
    page(&s, &format!("What applies to {group_name}"), Some(&w), &body)
}

/// The lesson topics declared for any of `classes` at `school` around
/// `at` (a day either side), for the alert page.
pub(crate) async fn topics_near(s: &Service, school: &str, person: &str, at: Timestamp) -> Vec<FilterChange> {
    let p = s.settings().policy.clone();
    let Some(u) = p.user(person) else { return Vec::new() };
    let classes: Vec<&str> = p.users[u].classes.iter().map(|c| p.classes[*c].id.as_str()).collect();
    if classes.is_empty() {
        return Vec::new();
    }
    let day = jiff::SignedDuration::from_hours(24);
    let all = s
        .store
        .filter_changes(&ChangeQuery { school: Some(school.into()), state: Some("noted".into()), limit: 500, ..ChangeQuery::default() })
        .await
        .unwrap_or_default();
    all.into_iter()
        .filter(|c| c.kind == "topic" && c.scope_id.as_deref().is_some_and(|id| classes.iter().any(|x| x.eq_ignore_ascii_case(id))))
        .filter(|c| c.starts_at - day <= at && c.until.is_none_or(|u| at <= u + day))
        .collect()
}
