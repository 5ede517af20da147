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

/// The API's routes.
pub fn routes() -> axum::Router<Service> {
    axum::Router::new()
        .route("/api/v1/events", post(events))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/openapi.json", get(openapi))
}

fn problem(status: StatusCode, message: &str) -> Response {
    let mut r = (status, Json(json!({ "error": message }))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    }
    r
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ").map(str::trim)
}

async fn events(State(s): State<Service>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let Some(token) = bearer(&headers) else {
        return problem(StatusCode::UNAUTHORIZED, "send the device's token: Authorization: Bearer <token> (haven admin device add prints it)");
    };
    let device = match s.store.device_by_token(token).await {
        Ok(Some(d)) => d,
        Ok(None) => return problem(StatusCode::UNAUTHORIZED, "unknown device token"),
        Err(e) => return problem(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    let event: Event = match serde_json::from_slice(&body) {
        Ok(e) => e,
        Err(e) => return problem(StatusCode::BAD_REQUEST, &format!("the event is not valid JSON of the documented shape ({e}); see /api/v1/openapi.json")),
    };
    match s.ingest(&device, &event, Timestamp::now()).await {
        Ok(out) => (StatusCode::CREATED, Json(out)).into_response(),
        Err(IngestError::Invalid(m)) => problem(StatusCode::BAD_REQUEST, &m),
        Err(e) => problem(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

async fn alerts(State(s): State<Service>, headers: HeaderMap) -> Response {
    let Some(key) = bearer(&headers) else {
        return problem(StatusCode::UNAUTHORIZED, "send an API key: Authorization: Bearer <key> (haven admin apikey add prints one)");
    };
    let who = match s.store.account_by_api_key(key).await {
        Ok(Some(a)) => a,
        Ok(None) => return problem(StatusCode::UNAUTHORIZED, "unknown API key"),
        Err(e) => return problem(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    if !who.role.sees_alerts() {
        let _ = s.store.audit(Timestamp::now(), &format!("account:{}", who.id), "alert.list.denied", "alerts", who.role.as_str()).await;
        return problem(StatusCode::FORBIDDEN, &format!("a {} cannot read alerts", who.role.as_str()));
    }
    match s.store.alerts_for(&who, 500).await {
        Ok(list) => {
            let ids: Vec<String> = list.iter().map(|a| a.id.to_string()).collect();
            let _ = s.store.audit(Timestamp::now(), &format!("account:{}", who.id), "alert.list", "alerts", &ids.join(",")).await;
            Json(list).into_response()
        }
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
        let a = &list[0];
        for field in ["id", "school", "person", "category", "level", "status", "received_at", "due_at"] {
            assert!(a.get(field).is_some(), "{field} in {a}");
        }
        assert_eq!(a["person"], "amy.pupil");
        assert_eq!(call(&app, "GET", "/api/v1/alerts", Some(&teacher_key), "").await.0, StatusCode::FORBIDDEN, "a teacher cannot read alerts");
        let audit = s.store.audit_search(Some("alerts"), None, 10).await.unwrap();
        assert!(audit.iter().any(|e| e.action == "alert.list") && audit.iter().any(|e| e.action == "alert.list.denied"));
        let (st, doc) = call(&app, "GET", "/api/v1/openapi.json", None, "").await;
        assert_eq!(st, StatusCode::OK);
        assert!(doc["paths"]["/api/v1/events"]["post"].is_object());
    }
}
