//! The JSON API: devices send monitoring events; staff scripts read alerts
//! with an API key that acts as them (and sees only what they may see). Every
//! read is in the audit log.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jiff::Timestamp;
use serde_json::json;

use crate::Service;
use crate::ingest::{Event, IngestError};
use haven_textscan::Concern;

/// The API's routes.
pub fn routes() -> axum::Router<Service> {
    axum::Router::new()
        .route("/api/v1/events", post(events))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/alerts/{id}", get(alert))
        .route("/api/v1/alerts/{id}/actions", post(alert_action))
        .route("/api/v1/alerts/{id}/incidents", post(raise_incident))
        .route("/api/v1/incidents/{id}", get(incident))
        .route("/api/v1/people/{school}/{person}", get(chronology))
        .route("/api/v1/incidents/{id}/actions", post(incident_action))
        .route("/api/v1/incidents/{id}/close", post(incident_close))
        .route("/api/v1/totals", get(totals))
        .route("/api/v1/reports", post(report))
        .route("/api/v1/openapi.json", get(openapi))
}

pub(crate) fn problem(status: StatusCode, message: &str) -> Response {
    let mut r = (status, Json(json!({ "error": message }))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    }
    r
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ").map(str::trim)
}

/// The device a request's token belongs to, or the answer to send instead.
pub(crate) async fn device(s: &Service, headers: &HeaderMap) -> Result<haven_store::people::Device, Response> {
    let Some(token) = bearer(headers) else {
        return Err(problem(StatusCode::UNAUTHORIZED, "send the device's token: Authorization: Bearer <token> (haven admin device add prints it)"));
    };
    match s.store.device_by_token(token).await {
        Ok(Some(d)) => Ok(d),
        Ok(None) => Err(problem(StatusCode::UNAUTHORIZED, "unknown or revoked device token (haven admin device list shows them)")),
        Err(e) => Err(problem(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())),
    }
}

/// Most events in one batch.
const BATCH: usize = 500;

/// `POST /api/v1/events`: one event, or a batch `{"events": [...]}` from a
/// device that queued them offline (each with its idempotency key, each
/// answered on its own, so one malformed event does not refuse the rest).
async fn events(State(s): State<Service>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let d = match device(&s, &headers).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let now = Timestamp::now();
    let value: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return problem(StatusCode::BAD_REQUEST, &format!("the event is not valid JSON ({e}); see /api/v1/openapi.json")),
    };
    if let Some(batch) = value.get("events") {
        let Some(list) = batch.as_array() else {
            return problem(StatusCode::BAD_REQUEST, "events must be a list of events");
        };
        if list.len() > BATCH {
            return problem(StatusCode::PAYLOAD_TOO_LARGE, &format!("at most {BATCH} events in a batch; send the rest in the next"));
        }
        let mut results = Vec::with_capacity(list.len());
        for v in list {
            let key = v.get("idempotency_key").and_then(|k| k.as_str()).map(str::to_string);
            let (status, body) = match serde_json::from_value::<Event>(v.clone()) {
                Err(e) => (StatusCode::BAD_REQUEST, json!({ "error": format!("not an event of the documented shape ({e})") })),
                Ok(_) if key.is_none() => (StatusCode::BAD_REQUEST, json!({ "error": "each event in a batch needs its idempotency_key" })),
                Ok(event) => one(&s, &d, event, now).await,
            };
            let mut r = json!({ "idempotency_key": key, "status": status.as_u16() });
            if status.is_success() {
                r["outcome"] = body;
            } else {
                r["error"] = body["error"].clone();
            }
            results.push(r);
        }
        crate::extension::note_contact(&s, &d, &headers, now).await;
        return Json(json!({ "results": results })).into_response();
    }
    let mut event: Event = match serde_json::from_value(value) {
        Ok(e) => e,
        Err(e) => return problem(StatusCode::BAD_REQUEST, &format!("the event is not of the documented shape ({e}); see /api/v1/openapi.json")),
    };
    // A device that lost the answer sends the event again with the same key.
    if let Some(key) = headers.get("idempotency-key").and_then(|v| v.to_str().ok()) {
        event.idempotency_key = Some(key.trim().to_string());
    }
    let (status, body) = one(&s, &d, event, now).await;
    // After the event, and only once it was taken: a record too busy to
    // take it is not made busier by the note.
    if status.is_success() {
        crate::extension::note_contact(&s, &d, &headers, now).await;
    }
    (status, Json(body)).into_response()
}

/// Takes one event; its answer's status and body.
async fn one(s: &Service, d: &haven_store::people::Device, mut event: Event, now: Timestamp) -> (StatusCode, serde_json::Value) {
    // The extension on a one-to-one laptop may not know who is signed in.
    if event.person.trim().is_empty()
        && let Ok(Some(o)) = s.store.device_owner(d.id).await
    {
        event.person = o;
    }
    match s.ingest(d, &event, now).await {
        Ok(mut out) => {
            let sensitive = out.alerts.iter().any(|a| a.category == Concern::SexualContent.name() || a.category == Concern::Grooming.name());
            out.screenshot_wanted = !out.replayed && !out.alerts.is_empty() && event.screenshot.is_none() && !sensitive && s.settings().extension.screenshots;
            let status = if out.replayed { StatusCode::OK } else { StatusCode::CREATED };
            (status, serde_json::to_value(out).unwrap_or_default())
        }
        Err(IngestError::Invalid(m)) => (StatusCode::BAD_REQUEST, json!({ "error": m })),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, json!({ "error": e.to_string() })),
    }
}

/// `GET /api/v1/alerts`: one page of the queue, `{"alerts", "next_cursor", "total"}`.
async fn alerts(
    State(s): State<Service>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    let Some(key) = bearer(&headers) else {
        return problem(StatusCode::UNAUTHORIZED, "send an API key: Authorization: Bearer <key> (haven admin apikey add prints one)");
    };
    let who = match s.store.account_by_api_key(key, Timestamp::now()).await {
        Ok(Some(a)) => a,
        Ok(None) => return problem(StatusCode::UNAUTHORIZED, "unknown, expired or revoked API key (haven admin apikey list shows them)"),
        Err(e) => return problem(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    if !who.role.reads_alerts() {
        let _ = s.store.audit(Timestamp::now(), &format!("account:{}", who.id), "alert.list.denied", "alerts", who.role.as_str()).await;
        return problem(StatusCode::FORBIDDEN, &format!("a {} cannot read alerts", who.role.as_str()));
    }
    let query = match queue_query(&q, &who, true) {
        Ok(query) => query,
        Err(m) => return problem(StatusCode::BAD_REQUEST, &m),
    };
    match s.store.queue_page(&who, &query, Timestamp::now()).await {
        Ok(page) => {
            let ids: Vec<String> = page.alerts.iter().map(|a| a.alert.id.to_string()).collect();
            if s.store.audit(Timestamp::now(), &format!("account:{}", who.id), "alert.list", "alerts", &ids.join(",")).await.is_err() {
                return crate::unaudited();
            }
            Json(json!({ "alerts": page.alerts, "next_cursor": page.next_cursor, "total": page.total })).into_response()
        }
        Err(haven_store::StoreError::Invalid(m)) => problem(StatusCode::BAD_REQUEST, &m),
        Err(e) => problem(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

/// The queue's filters from a query string (the API's and the web app's):
/// `limit` (1–500, default 50), `cursor` (or `after`), `before`, `sort`
/// (`urgent`, `newest`), `school`, `level` (`4`: 4 and above; `4-5`),
/// `category`, `status` (`new`, `acknowledged`, `triaged`, `escalated`,
/// `closed`, `all`), `assignee` (`me`, `none` or an account id), `overdue`
/// (`1`, `true`) or `due=overdue`, `q` (text). The API's defaults are every
/// state, newest first, so following its cursors visits every alert the
/// caller may see; the web app's are the working queue, most urgent first.
pub(crate) fn queue_query(
    q: &std::collections::HashMap<String, String>,
    who: &haven_store::people::Account,
    api: bool,
) -> Result<haven_store::queue::QueueQuery, String> {
    use haven_store::queue::{Assignee, QueueQuery, Sort, parse_levels};
    let get = |k: &str| q.get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    let limit = match get("limit") {
        Some(l) => l.parse::<i64>().ok().filter(|l| *l >= 1).ok_or("limit must be a whole number from 1 to 500")?.min(500),
        None => 50,
    };
    let (min_level, max_level) = match get("level") {
        Some(l) => parse_levels(&l).map(|(a, b)| (Some(a), Some(b))).ok_or("level is 1 to 5 (that level and above) or a range such as 4-5")?,
        None => (None, None),
    };
    let sort = match get("sort") {
        Some(x) => Sort::parse(&x).ok_or("sort is urgent or newest")?,
        None if api => Sort::Newest,
        None => Sort::Urgent,
    };
    let assignee = match get("assignee").as_deref() {
        None => None,
        Some("me") => Some(Assignee::Account(who.id)),
        Some("none") => Some(Assignee::Nobody),
        Some(id) => Some(Assignee::Account(id.parse().map_err(|_| "assignee is me, none or an account id")?)),
    };
    Ok(QueueQuery {
        school: get("school"),
        min_level,
        max_level,
        category: get("category"),
        status: get("status").or_else(|| api.then(|| "all".to_string())),
        assignee,
        overdue: matches!(get("overdue").as_deref(), Some("1" | "true" | "yes")) || get("due").as_deref() == Some("overdue"),
        text: get("q"),
        sort,
        after: get("cursor").or_else(|| get("after")),
        before: get("before"),
        limit,
    })
}

/// The account an API key acts as, or the answer to send instead.
pub(crate) async fn staff(s: &Service, headers: &HeaderMap) -> Result<haven_store::people::Account, Response> {
    let Some(key) = bearer(headers) else {
        return Err(problem(StatusCode::UNAUTHORIZED, "send an API key: Authorization: Bearer <key> (haven admin apikey add prints one)"));
    };
    match s.store.account_by_api_key(key, Timestamp::now()).await {
        Ok(Some(a)) if a.role.sees_alerts() => Ok(a),
        Ok(Some(a)) => Err(problem(StatusCode::FORBIDDEN, &format!("a {} cannot read safeguarding records", a.role.as_str()))),
        Ok(None) => Err(problem(StatusCode::UNAUTHORIZED, "unknown, expired or revoked API key (haven admin apikey list shows them)")),
        Err(e) => Err(problem(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())),
    }
}

/// The account an API key acts as, for one alert: any role that reads
/// alerts (the IT lead reads staff alerts; the store keeps each role to its audiences).
async fn alert_reader(s: &Service, headers: &HeaderMap) -> Result<haven_store::people::Account, Response> {
    let Some(key) = bearer(headers) else {
        return Err(problem(StatusCode::UNAUTHORIZED, "send an API key: Authorization: Bearer <key> (haven admin apikey add prints one)"));
    };
    match s.store.account_by_api_key(key, Timestamp::now()).await {
        Ok(Some(a)) if a.role.reads_alerts() => Ok(a),
        Ok(Some(a)) => Err(problem(StatusCode::FORBIDDEN, &format!("a {} cannot read alerts", a.role.as_str()))),
        Ok(None) => Err(problem(StatusCode::UNAUTHORIZED, "unknown, expired or revoked API key (haven admin apikey list shows them)")),
        Err(e) => Err(problem(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())),
    }
}

async fn alert(State(s): State<Service>, headers: HeaderMap, axum::extract::Path(id): axum::extract::Path<i64>) -> Response {
    let who = match alert_reader(&s, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let now = Timestamp::now();
    match s.store.alert_detail(&who, id).await {
        Ok(Some(d)) => {
            if s.store.audit(now, &format!("account:{}", who.id), "alert.read", &format!("alert:{id}"), "api").await.is_err() {
                return crate::unaudited();
            }
            Json(d).into_response()
        }
        Ok(None) => problem(StatusCode::NOT_FOUND, "no such alert that this key may see"),
        Err(e) => problem(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

#[derive(serde::Deserialize)]
struct ActionBody {
    kind: String,
    #[serde(default)]
    note: String,
    /// `real-concern` or `not-a-concern`: required to close.
    #[serde(default)]
    verdict: Option<String>,
}

async fn alert_action(State(s): State<Service>, headers: HeaderMap, axum::extract::Path(id): axum::extract::Path<i64>, body: axum::body::Bytes) -> Response {
    let who = match alert_reader(&s, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let Ok(b) = serde_json::from_slice::<ActionBody>(&body) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "send {\"kind\": \"acknowledged\"|\"action\"|\"closed\", \"note\": \"…\", \"verdict\": \"real-concern\"|\"not-a-concern\"}",
        );
    };
    let done = if b.kind == "closed" {
        if b.note.trim().is_empty() {
            return problem(StatusCode::BAD_REQUEST, "closing an alert needs a reason in note");
        }
        let Some(verdict) = b.verdict.as_deref().and_then(haven_store::alerts::Verdict::parse) else {
            return problem(StatusCode::BAD_REQUEST, "closing an alert needs a verdict: \"verdict\": \"real-concern\" or \"not-a-concern\"");
        };
        s.store.close_alert(&who, id, b.note.trim(), verdict, Timestamp::now()).await
    } else {
        s.store.act_on_alert(&who, id, &b.kind, b.note.trim(), Timestamp::now()).await
    };
    match done {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => problem(StatusCode::NOT_FOUND, "no such alert that this key may act on"),
        Err(e) => problem(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

#[derive(serde::Deserialize)]
struct IncidentBody {
    title: String,
    #[serde(default = "other")]
    kind: String,
    #[serde(default)]
    about_head: bool,
}

fn other() -> String {
    "other".into()
}

async fn raise_incident(State(s): State<Service>, headers: HeaderMap, axum::extract::Path(id): axum::extract::Path<i64>, body: axum::body::Bytes) -> Response {
    let who = match staff(&s, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let Ok(b) = serde_json::from_slice::<IncidentBody>(&body) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "send {\"title\": \"…\", \"kind\": \"safeguarding\"|\"misuse\"|\"possibly-illegal\"|\"staff\", \"about_head\": false}",
        );
    };
    let Some(kind) = haven_store::incidents::Kind::parse(&b.kind) else {
        return problem(StatusCode::BAD_REQUEST, "kind must be safeguarding, misuse, possibly-illegal or staff");
    };
    let Ok(Some(d)) = s.store.alert_detail(&who, id).await else {
        return problem(StatusCode::NOT_FOUND, "no such alert that this key may see");
    };
    let n = haven_store::incidents::NewIncident {
        school: &d.alert.school,
        person: Some(&d.alert.person),
        alert: Some(id),
        title: &b.title,
        kind,
        about_head: b.about_head,
    };
    match s.store.raise_incident(&who, &n, Timestamp::now()).await {
        Ok(Some(iid)) => (StatusCode::CREATED, Json(json!({ "id": iid }))).into_response(),
        Ok(None) => problem(StatusCode::FORBIDDEN, "not allowed"),
        Err(e) => problem(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

async fn incident(State(s): State<Service>, headers: HeaderMap, axum::extract::Path(id): axum::extract::Path<i64>) -> Response {
    let who = match staff(&s, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    match s.store.incident(&who, id, Timestamp::now()).await {
        Ok(Some((inc, actions, evidence))) => {
            let steps = inc.kind.steps(inc.about_head);
            Json(json!({ "incident": inc, "steps": steps, "actions": actions, "evidence": evidence })).into_response()
        }
        Ok(None) => problem(StatusCode::NOT_FOUND, "no such incident that this key may see"),
        Err(e) => problem(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

/// A page of a person's chronology: `{person, entries, next_before}`.
async fn chronology(
    State(s): State<Service>,
    headers: HeaderMap,
    axum::extract::Path((school, person)): axum::extract::Path<(String, String)>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    let who = match staff(&s, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let query = match crate::chronology::query_of(&school, &person, &q, 50) {
        Ok(query) => query,
        Err(e) => return problem(StatusCode::BAD_REQUEST, &e),
    };
    match s.store.chronology_page(&who, &query, Timestamp::now()).await {
        Ok(Some(c)) => Json(c).into_response(),
        Ok(None) => problem(StatusCode::FORBIDDEN, "this key may not see that pupil's record"),
        Err(haven_store::StoreError::Invalid(e)) => problem(StatusCode::BAD_REQUEST, &e),
        Err(e) => problem(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

#[derive(serde::Deserialize)]
struct NoteBody {
    note: String,
}

async fn incident_action(State(s): State<Service>, headers: HeaderMap, axum::extract::Path(id): axum::extract::Path<i64>, body: axum::body::Bytes) -> Response {
    let who = match staff(&s, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let Ok(b) = serde_json::from_slice::<NoteBody>(&body) else { return problem(StatusCode::BAD_REQUEST, "send {\"note\": \"what was done\"}") };
    match s.store.incident_action(&who, id, &b.note, Timestamp::now()).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => problem(StatusCode::NOT_FOUND, "no such incident this key may act on, or an empty note"),
        Err(e) => problem(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

#[derive(serde::Deserialize)]
struct CloseBody {
    outcome: String,
    #[serde(default)]
    feedback: String,
    #[serde(default)]
    lessons: String,
    #[serde(default)]
    sanction: String,
}

async fn incident_close(State(s): State<Service>, headers: HeaderMap, axum::extract::Path(id): axum::extract::Path<i64>, body: axum::body::Bytes) -> Response {
    let who = match staff(&s, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let Ok(b) = serde_json::from_slice::<CloseBody>(&body) else {
        return problem(StatusCode::BAD_REQUEST, "send {\"outcome\": \"…\", \"feedback\": \"…\", \"lessons\": \"…\", \"sanction\": \"…\"}");
    };
    let c = haven_store::incidents::Closing { outcome: &b.outcome, feedback: &b.feedback, lessons: &b.lessons, sanction: &b.sanction };
    match s.store.close_incident(&who, id, &c, Timestamp::now()).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => problem(StatusCode::NOT_FOUND, "no such incident this key may close"),
        Err(e) => problem(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

/// Anonymised totals: any staff key (governors included) — no names, no text.
async fn totals(State(s): State<Service>, headers: HeaderMap) -> Response {
    let Some(key) = bearer(&headers) else { return problem(StatusCode::UNAUTHORIZED, "send an API key") };
    let who = match s.store.account_by_api_key(key, Timestamp::now()).await {
        Ok(Some(a)) => a,
        Ok(None) => return problem(StatusCode::UNAUTHORIZED, "unknown, expired or revoked API key (haven admin apikey list shows them)"),
        Err(e) => return problem(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    let school = if who.role.trust_wide() { None } else { who.school.clone() };
    match s.store.totals(school.as_deref()).await {
        Ok(t) => {
            if s.store.audit(Timestamp::now(), &format!("account:{}", who.id), "totals.read", "totals", "api").await.is_err() {
                return crate::unaudited();
            }
            Json(t).into_response()
        }
        Err(e) => problem(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

#[derive(serde::Deserialize)]
struct ReportBody {
    school: String,
    text: String,
    #[serde(default)]
    person: Option<String>,
    #[serde(default)]
    contact: Option<String>,
}

/// The public report, for apps and kiosks: no key needed, as on the page.
async fn report(State(s): State<Service>, body: axum::body::Bytes) -> Response {
    let Ok(b) = serde_json::from_slice::<ReportBody>(&body) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "send {\"school\": \"id\", \"text\": \"what happened\", \"person\": \"who (optional)\", \"contact\": \"optional\"}",
        );
    };
    if b.text.trim().is_empty() || b.text.len() > 5000 || !s.store.schools().await.unwrap_or_default().iter().any(|sc| sc.id == b.school) {
        return problem(StatusCode::BAD_REQUEST, "name a school (haven admin school list) and say what happened (at most 5,000 characters)");
    }
    let person = b.person.as_deref().map(str::trim).filter(|p| !p.is_empty()).unwrap_or("(not named)");
    let contact = b.contact.as_deref().map(str::trim).filter(|c| !c.is_empty()).unwrap_or("anonymous");
    match s.report(&b.school, person, b.text.trim(), contact, Timestamp::now()).await {
        Ok(_) => (StatusCode::CREATED, Json(json!({ "received": true }))).into_response(),
        Err(e) => problem(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// The OpenAPI 3.1 document for the API.
pub const OPENAPI: &str = include_str!("openapi.json");

#[cfg(test)]
mod tests {
    use super::*;
    use haven_store::{Role, Store};

    async fn app() -> (axum::Router, Service, String, String, String, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_dir(dir.path()).await.unwrap();
        store.upsert_school("oak", "Oak", false).await.unwrap();
        let now = "2026-11-24T09:00:00Z".parse().unwrap();
        let (_, token) = store.add_device("oak", "PC", now).await.unwrap();
        store.add_account("dsl@oak.example", Role::Dsl, Some("oak"), "a long password", now).await.unwrap();
        store.add_account("t@oak.example", Role::Teacher, Some("oak"), "a long password", now).await.unwrap();
        let dsl_key = store.add_api_key("dsl@oak.example", now).await.unwrap();
        let teacher_key = store.add_api_key("t@oak.example", now).await.unwrap();
        let s = Service::new(store, &haven_policy::PolicySet::default());
        (routes().with_state(s.clone()), s, token, dsl_key, teacher_key, dir)
    }

    async fn call(app: &axum::Router, method: &str, path: &str, bearer: Option<&str>, body: &str) -> (StatusCode, serde_json::Value) {
        use tower_service::Service as _;
        let mut req = axum::http::Request::builder().method(method).uri(path).header("content-type", "application/json");
        if let Some(b) = bearer {
            req = req.header("authorization", format!("Bearer {b}"));
        }
        let resp = app.clone().call(req.body(axum::body::Body::from(body.to_string())).unwrap()).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
    }

    #[tokio::test]
    async fn a_batch_is_answered_event_by_event_and_taken_once() {
        let (app, _s, token, dsl_key, _, _dir) = app().await;
        let batch = r#"{"events": [
            {"person":"amy.pupil","text":"i want to kill myself tonight","source":"typed","observed_at":"2026-11-24T08:00:00Z","idempotency_key":"k1"},
            {"person":"amy.pupil","text":"see you at practice","source":"typed","idempotency_key":"k2"},
            {"person":"amy.pupil","text":"no key"," source":"typed"},
            {"person":"amy.pupil","text":"no key here","source":"typed"}
        ]}"#;
        let (st, body) = call(&app, "POST", "/api/v1/events", Some(&token), batch).await;
        assert_eq!(st, StatusCode::OK, "{body}");
        let r = body["results"].as_array().unwrap();
        assert_eq!(r.len(), 4);
        assert_eq!((r[0]["idempotency_key"].as_str(), r[0]["status"].as_u64()), (Some("k1"), Some(201)));
        assert_eq!(r[0]["outcome"]["alerts"][0]["category"], "Vulnerable person");
        assert_eq!(r[0]["outcome"]["screenshot_wanted"], true, "a screenshot is asked for an alert");
        assert_eq!(r[1]["status"], 201);
        assert_eq!(r[1]["outcome"]["screenshot_wanted"], false, "nothing found: no screenshot");
        assert_eq!(r[2]["status"], 400, "a malformed event is refused alone");
        assert_eq!(r[3]["status"], 400);
        assert!(r[3]["error"].as_str().unwrap().contains("idempotency_key"));
        // Sent again (the answer was lost): taken before, nothing new.
        let (_, again) = call(&app, "POST", "/api/v1/events", Some(&token), batch).await;
        assert_eq!(again["results"][0]["status"], 200);
        let (_, list) = call(&app, "GET", "/api/v1/alerts", Some(&dsl_key), "").await;
        assert_eq!((list["alerts"].as_array().unwrap().len(), list["total"].as_i64()), (1, Some(1)));
        let list = &list["alerts"];
        assert_eq!(list[0]["occurrences"], 1, "delivered once");
        assert!(list[0]["received_at"].as_str().unwrap().starts_with("2026-11-24T08:00:00"), "kept with its original time");
        let too_many = format!(r#"{{"events": [{}]}}"#, vec![r#"{"person":"a","text":"b","source":"typed","idempotency_key":"x"}"#; 501].join(","));
        assert_eq!(call(&app, "POST", "/api/v1/events", Some(&token), &too_many).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn the_extensions_policy_is_signed_by_the_records_key() {
        use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};
        use base64::Engine as _;
        let (_, s, token, _, _, _dir) = app().await;
        let app = crate::extension::routes().with_state(s.clone());
        let (st, signed) = call(&app, "GET", "/api/v1/extension/policy?person=amy.pupil", Some(&token), "").await;
        assert_eq!(st, StatusCode::OK, "{signed}");
        let b64 = base64::engine::general_purpose::STANDARD;
        let key = b64.decode(signed["key"].as_str().unwrap()).unwrap();
        let payload = signed["payload"].as_str().unwrap();
        let sig = b64.decode(signed["signature"].as_str().unwrap()).unwrap();
        UnparsedPublicKey::new(&ED25519, &key).verify(payload.as_bytes(), &sig).expect("the signature checks");
        assert!(UnparsedPublicKey::new(&ED25519, &key).verify(payload.replace("true", "false").as_bytes(), &sig).is_err(), "an altered policy does not");
        let policy: serde_json::Value = serde_json::from_str(payload).unwrap();
        assert_eq!((policy["person"].as_str(), policy["capture"].as_bool()), (Some("amy.pupil"), Some(true)));
        assert!(policy["exempt"].as_array().unwrap().iter().any(|e| e == "childline.org.uk"));
        assert_eq!(s.policy_key().await.unwrap(), signed["key"].as_str().unwrap(), "the same key every time");
        assert_eq!(call(&app, "GET", "/api/v1/extension/policy", Some("hvd_wrong"), "").await.0, StatusCode::UNAUTHORIZED);
        // The device's contact is noted for IT.
        let d = s.store.devices().await.unwrap();
        assert!(d[0].last_seen_at.is_some());
        // No acceptable-use text set: nothing to accept.
        let (st, _) = call(&app, "POST", "/api/v1/extension/acceptance", Some(&token), r#"{"person":"amy.pupil","version":"1"}"#).await;
        assert_eq!(st, StatusCode::CONFLICT);
    }

    #[tokio::test]
    async fn events_in_alerts_out_for_those_who_may_see_them() {
        let (app, s, token, dsl_key, teacher_key, _dir) = app().await;
        let ev = r#"{"person":"amy.pupil","text":"i want to kill myself tonight","source":"typed"}"#;
        let (st, body) = call(&app, "POST", "/api/v1/events", Some(&token), ev).await;
        assert_eq!(st, StatusCode::CREATED, "{body}");
        assert_eq!(body["alerts"][0]["category"], "Vulnerable person");
        assert_eq!(call(&app, "POST", "/api/v1/events", Some("hvd_wrong"), ev).await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(call(&app, "POST", "/api/v1/events", None, ev).await.0, StatusCode::UNAUTHORIZED);
        let (st, body) = call(&app, "POST", "/api/v1/events", Some(&token), r#"{"person":"x"}"#).await;
        assert_eq!(st, StatusCode::BAD_REQUEST);
        assert!(body["error"].as_str().unwrap().contains("openapi"));
        let (st, list) = call(&app, "GET", "/api/v1/alerts", Some(&dsl_key), "").await;
        assert_eq!(st, StatusCode::OK);
        let a = &list["alerts"][0];
        for field in ["id", "school", "person", "category", "level", "status", "received_at", "due_at", "person_name", "state"] {
            assert!(a.get(field).is_some(), "{field} in {a}");
        }
        assert_eq!(a["person"], "amy.pupil");
        assert_eq!(call(&app, "GET", "/api/v1/alerts", Some(&teacher_key), "").await.0, StatusCode::FORBIDDEN, "a teacher cannot read alerts");
        let audit = s.store.audit_search(Some("alerts"), None, 10).await.unwrap();
        assert!(audit.iter().any(|e| e.action == "alert.list") && audit.iter().any(|e| e.action == "alert.list.denied"));
        let id = a["id"].as_i64().unwrap();
        let (st, detail) = call(&app, "GET", &format!("/api/v1/alerts/{id}"), Some(&dsl_key), "").await;
        assert_eq!(st, StatusCode::OK);
        assert!(detail["excerpt"].as_str().unwrap().contains("kill myself"));
        assert_eq!(call(&app, "GET", &format!("/api/v1/alerts/{id}"), Some(&teacher_key), "").await.0, StatusCode::FORBIDDEN);
        assert_eq!(call(&app, "POST", &format!("/api/v1/alerts/{id}/actions"), Some(&dsl_key), r#"{"kind":"acknowledged"}"#).await.0, StatusCode::NO_CONTENT);
        assert_eq!(call(&app, "POST", &format!("/api/v1/alerts/{id}/actions"), Some(&dsl_key), r#"{"kind":"closed"}"#).await.0, StatusCode::BAD_REQUEST);
        let (st, why) = call(&app, "POST", &format!("/api/v1/alerts/{id}/actions"), Some(&dsl_key), r#"{"kind":"closed","note":"fine"}"#).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "closing needs a verdict");
        assert!(why["error"].as_str().unwrap().contains("real-concern"), "{why}");
        let (st, inc) = call(&app, "POST", &format!("/api/v1/alerts/{id}/incidents"), Some(&dsl_key), r#"{"title":"Amy at risk","kind":"other"}"#).await;
        assert_eq!(st, StatusCode::CREATED, "{inc}");
        let (st, inc) = call(&app, "GET", &format!("/api/v1/incidents/{}", inc["id"]), Some(&dsl_key), "").await;
        assert_eq!(st, StatusCode::OK);
        assert!(
            inc["steps"][0].as_str().unwrap().contains("The DSL (or a deputy) leads"),
            "a welfare concern gets the safeguarding steps, not the misuse ones"
        );
        let (st, chron) = call(&app, "GET", "/api/v1/people/oak/amy.pupil", Some(&dsl_key), "").await;
        assert_eq!((st, chron["entries"].as_array().unwrap().len()), (StatusCode::OK, 2));
        assert_eq!(chron["person"]["login"], "amy.pupil");
        let iid = chron["entries"].as_array().unwrap().iter().find(|c| c["what"] == "incident").unwrap()["id"].clone();
        assert_eq!(
            call(&app, "POST", &format!("/api/v1/incidents/{iid}/actions"), Some(&dsl_key), r#"{"note":"met parents"}"#).await.0,
            StatusCode::NO_CONTENT
        );
        assert_eq!(call(&app, "POST", &format!("/api/v1/incidents/{iid}/close"), Some(&dsl_key), r#"{"outcome":""}"#).await.0, StatusCode::BAD_REQUEST);
        assert_eq!(
            call(&app, "POST", &format!("/api/v1/incidents/{iid}/close"), Some(&dsl_key), r#"{"outcome":"support plan"}"#).await.0,
            StatusCode::NO_CONTENT
        );
        let (st, totals) = call(&app, "GET", "/api/v1/totals", Some(&teacher_key), "").await;
        assert_eq!(st, StatusCode::OK);
        assert!(!totals.to_string().contains("amy"), "totals carry no names");
        assert_eq!(call(&app, "POST", "/api/v1/reports", None, r#"{"school":"oak","text":"a stranger keeps messaging my son"}"#).await.0, StatusCode::CREATED);
        assert_eq!(call(&app, "POST", "/api/v1/reports", None, r#"{"school":"nowhere","text":"x"}"#).await.0, StatusCode::BAD_REQUEST);
        let close = r#"{"kind":"closed","note":"support plan agreed","verdict":"real-concern"}"#;
        assert_eq!(call(&app, "POST", &format!("/api/v1/alerts/{id}/actions"), Some(&dsl_key), close).await.0, StatusCode::NO_CONTENT);
        let (_, detail) = call(&app, "GET", &format!("/api/v1/alerts/{id}"), Some(&dsl_key), "").await;
        assert_eq!((detail["alert"]["status"].as_str(), detail["alert"]["verdict"].as_str()), (Some("closed"), Some("real-concern")), "{detail}");
        let audit = s.store.audit_search(Some(&format!("alert:{id}")), None, 10).await.unwrap();
        assert!(audit.iter().any(|e| e.action == "alert.closed" && e.detail == "verdict: real concern"));
        let (st, doc) = call(&app, "GET", "/api/v1/openapi.json", None, "").await;
        assert_eq!(st, StatusCode::OK);
        assert!(doc["paths"]["/api/v1/events"]["post"].is_object());
        assert!(doc["components"]["schemas"]["Action"]["properties"]["verdict"].is_object());
    }

    #[tokio::test]
    async fn a_school_with_its_own_lexicon_classifies_with_it_and_others_do_not() {
        let (app, s, oak_device, _, _, _dir) = app().await;
        s.store.upsert_school("elm", "Elm", false).await.unwrap();
        let (_, elm_device) = s.store.add_device("elm", "PC", "2026-11-24T09:00:00Z".parse().unwrap()).await.unwrap();
        let mut settings = (*s.settings()).clone();
        let own = haven_textscan::Lexicon::parse("[bullying]\n\"zorblax shed\" = 3\n").unwrap();
        settings.school_lexicons.insert("oak".into(), vec![own]);
        s.reload_with_record(settings).await.unwrap();
        let ev = r#"{"person":"amy.pupil","text":"see you at the zorblax shed after school","source":"typed"}"#;
        let (st, oak) = call(&app, "POST", "/api/v1/events", Some(&oak_device), ev).await;
        assert_eq!(st, StatusCode::CREATED);
        assert_eq!(oak["alerts"][0]["category"], "Bullying/Violence", "{oak}");
        let (_, elm) = call(&app, "POST", "/api/v1/events", Some(&elm_device), ev).await;
        assert_eq!(elm["alerts"].as_array().map(Vec::len), Some(0), "not Elm's word: {elm}");
        // The shipped phrases still count at the school with its own.
        let (_, oak) =
            call(&app, "POST", "/api/v1/events", Some(&oak_device), r#"{"person":"b","text":"i want to kill myself tonight","source":"typed"}"#).await;
        assert_eq!(oak["alerts"][0]["category"], "Vulnerable person");
    }

    #[tokio::test]
    async fn the_alert_list_pages_with_cursors_and_true_totals_on_both_back_ends() {
        use haven_store::alerts::{NewAlert, NewOccurrence};
        let now: Timestamp = "2026-11-24T09:00:00Z".parse().unwrap();
        for (store, _dir) in haven_store::testing::stores().await {
            store.upsert_school("oak", "Oak", false).await.unwrap();
            store.upsert_school("elm", "Elm", false).await.unwrap();
            let (dsl, _) = store.add_account("dsl@oak.example", Role::Dsl, Some("oak"), "a long password", now).await.unwrap();
            let dsl_key = store.add_api_key("dsl@oak.example", now).await.unwrap();
            let mut ids = Vec::new();
            for i in 0..7u8 {
                let (school, at) = if i == 6 { ("elm", "2026-11-24T08:00:00Z") } else { ("oak", "2026-11-24T08:00:00Z") };
                let text = if i == 2 { "Nobody Would Miss me" } else { "tired" };
                let a = NewAlert {
                    school: school.into(),
                    person: format!("p{i}"),
                    category: if i < 4 { "Vulnerable person" } else { "Bullying/Violence" }.into(),
                    level: 3 + i % 3,
                    due_at: None,
                    first: NewOccurrence {
                        at: at.parse().unwrap(),
                        level: 3,
                        source: "typed".into(),
                        excerpt: text.into(),
                        url: None,
                        spans: "[]".into(),
                        explanation: String::new(),
                        screenshot: None,
                        screenshot_withheld: false,
                        repeats: 1,
                    },
                };
                ids.push(store.insert_alert(&a).await.unwrap());
            }
            store.close_alert(&dsl, ids[0], "fine", haven_store::alerts::Verdict::NotAConcern, now).await.unwrap();
            let s = Service::new(store.clone(), &haven_policy::PolicySet::default());
            let app = routes().with_state(s);
            // Every alert the DSL may see, once, closed included, two at a time.
            let mut seen = Vec::new();
            let mut path = "/api/v1/alerts?limit=2".to_string();
            loop {
                let (st, page) = call(&app, "GET", &path, Some(&dsl_key), "").await;
                assert_eq!(st, StatusCode::OK, "{page}");
                assert_eq!(page["total"], 6, "the true count on every page");
                for a in page["alerts"].as_array().unwrap() {
                    seen.push(a["id"].as_i64().unwrap());
                    assert!(a.get("person_name").is_some_and(|n| n.is_null()), "{a}");
                }
                match page["next_cursor"].as_str() {
                    Some(c) => path = format!("/api/v1/alerts?limit=2&cursor={c}"),
                    None => break,
                }
            }
            seen.sort_unstable();
            assert_eq!(seen, ids[..6].to_vec(), "each of the school's alerts once, none of another school's");
            let total = |q: &str| {
                let (app, key) = (app.clone(), dsl_key.clone());
                let q = q.to_string();
                async move { call(&app, "GET", &format!("/api/v1/alerts?{q}"), Some(&key), "").await.1["total"].as_i64().unwrap() }
            };
            assert_eq!(total("level=5").await, 2);
            assert_eq!(total("level=4-4").await, 2);
            assert_eq!(total("status=closed").await, 1);
            assert_eq!(total("status=new").await, 5);
            assert_eq!(total("category=Bullying%2FViolence").await, 2);
            assert_eq!(total("q=miss+ME").await, 1);
            assert_eq!(total("q=tired&level=4&status=new").await, 3);
            let (st, why) = call(&app, "GET", "/api/v1/alerts?cursor=not-a-cursor", Some(&dsl_key), "").await;
            assert_eq!(st, StatusCode::BAD_REQUEST);
            assert!(why["error"].as_str().unwrap().contains("cursor"), "{why}");
            assert_eq!(call(&app, "GET", "/api/v1/alerts?limit=0", Some(&dsl_key), "").await.0, StatusCode::BAD_REQUEST);
            assert_eq!(call(&app, "GET", "/api/v1/alerts?level=9", Some(&dsl_key), "").await.0, StatusCode::BAD_REQUEST);
            let (st, big) = call(&app, "GET", "/api/v1/alerts?limit=100000", Some(&dsl_key), "").await;
            assert_eq!((st, big["alerts"].as_array().unwrap().len()), (StatusCode::OK, 6), "more than 500 is read as 500");
            store.close().await;
        }
    }
}
