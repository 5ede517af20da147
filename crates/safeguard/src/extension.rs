//! What the browser extension asks of the server: the policy it obeys
//! (signed, so a pupil who answers in the server's place cannot turn
//! capture off), the record of a pupil accepting the acceptable-use text,
//! and a screenshot the server asked for. Every call is a device's contact:
//! its last contact, version and queue depth are kept for IT.

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use haven_config::ExtensionSettings;
use haven_policy::schedule::Calendar;
use haven_store::devices::Contact;
use haven_store::people::Device;
use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;
use serde_json::json;

use crate::Service;
use crate::api::{device, problem};

/// The extension's routes.
pub fn routes() -> axum::Router<Service> {
    axum::Router::new()
        .route("/api/v1/extension/policy", get(policy))
        .route("/api/v1/extension/key", get(key))
        .route("/api/v1/extension/acceptance", post(acceptance))
        .route("/api/v1/events/screenshot", post(screenshot))
}

/// How long a policy is obeyed without being asked for again.
const POLICY_FOR: SignedDuration = SignedDuration::from_mins(10);
/// How often the extension asks (well inside [`POLICY_FOR`]).
const REFRESH_S: u64 = 300;
/// The record's name for the key.
const KEY_NAME: &str = "extension-policy";

/// Whether a person's typing is captured now, and why (shown to IT, and in
/// the extension's own status).
pub fn capture(settings: &ExtensionSettings, group: Option<&str>, calendar: &Calendar, now: Timestamp) -> (bool, &'static str) {
    if group.is_some_and(|g| settings.off_groups.iter().any(|o| o == g)) {
        return (false, "this group is not monitored");
    }
    if settings.school_hours_only && !calendar.is_working_time(now) {
        return (false, "outside school hours");
    }
    (true, "monitoring on")
}

impl Service {
    /// The key that signs policies: the record's, made on first use.
    pub async fn policy_signer(&self) -> Result<std::sync::Arc<Ed25519KeyPair>, String> {
        self.signer
            .get_or_try_init(|| async {
                let rng = aws_lc_rs::rand::SystemRandom::new();
                let fresh = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| "the system could not make a key".to_string())?;
                let kept = self.store.signing_key(KEY_NAME, fresh.as_ref(), Timestamp::now()).await.map_err(|e| e.to_string())?;
                let pair =
                    Ed25519KeyPair::from_pkcs8(&kept).map_err(|e| format!("the record's signing key is not usable ({e}); delete it to make a new one"))?;
                Ok(std::sync::Arc::new(pair))
            })
            .await
            .cloned()
    }

    /// The public half of the policy key, base64 (what the admin puts in the
    /// extension's managed policy as `policy_key`).
    pub async fn policy_key(&self) -> Result<String, String> {
        Ok(base64::engine::general_purpose::STANDARD.encode(self.policy_signer().await?.public_key().as_ref()))
    }
}

/// What the device said of itself in its headers.
fn contact(headers: &HeaderMap) -> Contact {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty());
    Contact {
        agent: text("x-haven-agent").map(|a| a.chars().filter(|c| !c.is_control()).take(100).collect()),
        queue_depth: text("x-haven-queue").and_then(|q| q.parse().ok()),
        dropped: text("x-haven-dropped").and_then(|q| q.parse().ok()),
    }
}

/// How often a device's unchanged contact is written.
const CONTACT_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Notes the device's contact: when it changed, or a minute after the last
/// note (so a busy device costs one write a minute, not one an event). A
/// failure to note it never refuses the call.
pub(crate) async fn note_contact(s: &Service, d: &Device, headers: &HeaderMap, now: Timestamp) {
    let said = contact(headers);
    {
        let mut seen = s.contacts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.get(&d.id).is_some_and(|(at, c)| at.elapsed() < CONTACT_EVERY && *c == said) {
            return;
        }
        if seen.len() > 100_000 {
            seen.clear();
        }
        seen.insert(d.id, (std::time::Instant::now(), said.clone()));
    }
    if let Err(e) = s.store.device_contact(d.id, now, &said).await {
        tracing::warn!(device = d.id, error = %e, "could not note a device's contact");
    }
}

/// The pupil: the one the browser says is signed in, else the device's owner.
async fn person(s: &Service, d: &Device, given: Option<&str>) -> String {
    match given.map(str::trim).filter(|p| !p.is_empty() && p.len() <= 200) {
        Some(p) => p.to_string(),
        None => s.store.device_owner(d.id).await.ok().flatten().unwrap_or_default(),
    }
}

/// The agreement in force at `school` for this pupil: their year in the
/// school's directory says primary or secondary, else their group's name.
async fn agreement_for(s: &Service, school: &str, who: &str, group: Option<&str>) -> Option<haven_store::agreements::Agreement> {
    use haven_store::agreements::Audience;
    if who.is_empty() {
        return None;
    }
    let year = s.store.person(school, &who.to_lowercase()).await.ok().flatten().and_then(|p| p.row.year);
    let audience = Audience::of_year(year.as_deref()).or_else(|| {
        group.map(|g| match g.to_ascii_lowercase() {
            g if g.contains("primary") => Audience::PrimaryPupil,
            g if g.contains("staff") => Audience::Staff,
            _ => Audience::SecondaryPupil,
        })
    })?;
    s.store.current_agreement(school, audience).await.ok().flatten()
}

#[derive(Deserialize)]
struct PolicyQuery {
    #[serde(default)]
    person: Option<String>,
}

async fn policy(State(s): State<Service>, headers: HeaderMap, Query(q): Query<PolicyQuery>) -> Response {
    let d = match device(&s, &headers).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let now = Timestamp::now();
    note_contact(&s, &d, &headers, now).await;
    let who = person(&s, &d, q.person.as_deref()).await;
    let settings = s.settings();
    let ext = &settings.extension;
    let group = settings.groups_by_user.get(&who.to_lowercase()).cloned();
    let (on, why) = capture(ext, group.as_deref(), &s.calendar(&d.school), now);
    let agreement = agreement_for(&s, &d.school, &who, group.as_deref()).await;
    let accepted = match (&agreement, &ext.acceptable_use, who.is_empty()) {
        (_, _, true) => false,
        (Some(a), _, false) => s.store.acceptances_of(&d.school, &who).await.is_ok_and(|v| v.iter().any(|x| x.agreement == a.id)),
        (None, Some((version, _)), false) => s.store.has_accepted(&d.school, &who, version).await.unwrap_or(false),
        (None, None, false) => false,
    };
    // The school's published agreement, where it has one, takes the place of
    // the trust's text: one record of who accepted which version.
    let acceptable_use = match &agreement {
        Some(a) => Some(json!({"version": a.version, "text": format!("{}\n\n{}", a.title, a.body)})),
        None => ext.acceptable_use.as_ref().map(|(v, t)| json!({"version": v, "text": t})),
    };
    let payload = json!({
        "version": 1,
        "school": d.school,
        "device": d.id,
        "person": who,
        "group": group,
        "capture": on,
        "why": why,
        "exempt": ext.exempt,
        "notice": ext.notice,
        "acceptable_use": acceptable_use,
        "accepted": accepted,
        "screenshots": ext.screenshots,
        "refresh_s": REFRESH_S,
        "issued_at": now.to_string(),
        "expires_at": now.saturating_add(POLICY_FOR).unwrap_or(now).to_string(),
    })
    .to_string();
    let pair = match s.policy_signer().await {
        Ok(p) => p,
        Err(e) => return problem(StatusCode::SERVICE_UNAVAILABLE, &e),
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    Json(json!({
        "payload": payload,
        "signature": b64.encode(pair.sign(payload.as_bytes()).as_ref()),
        "key": b64.encode(pair.public_key().as_ref()),
    }))
    .into_response()
}

async fn key(State(s): State<Service>) -> Response {
    match s.policy_key().await {
        Ok(k) => Json(json!({ "key": k, "algorithm": "Ed25519" })).into_response(),
        Err(e) => problem(StatusCode::SERVICE_UNAVAILABLE, &e),
    }
}

/// A device's JSON call: its device (contact noted), its body of shape
/// `shape` (named in the answer when it is not), and the time.
async fn device_call<T: serde::de::DeserializeOwned>(s: &Service, headers: &HeaderMap, body: &[u8], shape: &str) -> Result<(Device, T, Timestamp), Response> {
    let d = device(s, headers).await?;
    let now = Timestamp::now();
    note_contact(s, &d, headers, now).await;
    let b = serde_json::from_slice(body).map_err(|e| problem(StatusCode::BAD_REQUEST, &format!("expected {shape} ({e})")))?;
    Ok((d, b, now))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AcceptanceBody {
    #[serde(default)]
    person: Option<String>,
    version: String,
    /// When the pupil pressed the button (the device's clock); arrival if absent.
    #[serde(default)]
    accepted_at: Option<String>,
}

async fn acceptance(State(s): State<Service>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let (d, b, now) = match device_call::<AcceptanceBody>(&s, &headers, &body, "{\"person\", \"version\", \"accepted_at\"}").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let who = person(&s, &d, b.person.as_deref()).await;
    if who.is_empty() {
        return problem(StatusCode::BAD_REQUEST, "whose acceptance? send person, or set the device's owner (haven admin device owner)");
    }
    let settings = s.settings();
    let group = settings.groups_by_user.get(&who.to_lowercase()).cloned();
    if let Some(a) = agreement_for(&s, &d.school, &who, group.as_deref()).await {
        if a.version != b.version {
            return problem(
                StatusCode::CONFLICT,
                &format!("version {:?} is not the agreement in force ({:?}); ask for the policy again", b.version, a.version),
            );
        }
        let at = b.accepted_at.as_deref().and_then(|t| t.parse::<Timestamp>().ok()).map_or(now, |t| t.min(now).max(a.published_at));
        let person = who.to_lowercase();
        let name = s.store.person_names(&d.school, std::slice::from_ref(&person)).await.unwrap_or_default().remove(&person).unwrap_or_else(|| person.clone());
        return match s.store.accept_agreement(a.id, &person, &name, "extension", &format!("device:{}", d.id), at).await {
            Ok(new) => {
                (if new { StatusCode::CREATED } else { StatusCode::OK }, Json(json!({ "recorded": true, "new": new, "agreement": a.id }))).into_response()
            }
            Err(e) => problem(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        };
    }
    let Some((version, _)) = &settings.extension.acceptable_use else {
        return problem(StatusCode::CONFLICT, "this trust has no acceptable-use text ([extension] acceptable_use)");
    };
    if *version != b.version {
        return problem(StatusCode::CONFLICT, &format!("version {:?} is not the text in force ({version:?}); ask for the policy again", b.version));
    }
    let at = b.accepted_at.as_deref().and_then(|t| t.parse::<Timestamp>().ok()).map_or(now, |t| t.min(now));
    match s.store.record_acceptance(&d.school, &who, version, Some(d.id), at).await {
        Ok(new) => {
            let _ =
                s.store.audit(now, &format!("device:{}", d.id), "acceptable-use.accept", &format!("person:{}/{}", d.school, who.to_lowercase()), version).await;
            (if new { StatusCode::CREATED } else { StatusCode::OK }, Json(json!({ "recorded": true, "new": new }))).into_response()
        }
        Err(e) => problem(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScreenshotBody {
    idempotency_key: String,
    screenshot: String,
}

async fn screenshot(State(s): State<Service>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let (d, b, now) = match device_call::<ScreenshotBody>(&s, &headers, &body, "{\"idempotency_key\", \"screenshot\"}").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match s.attach_screenshot(&d, &b.idempotency_key, &b.screenshot, now).await {
        Ok(kept) => Json(json!({ "kept": kept })).into_response(),
        Err(crate::ingest::IngestError::Invalid(m)) => problem(StatusCode::BAD_REQUEST, &m),
        Err(e) => problem(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staff_and_out_of_hours_are_not_captured_when_the_trust_says_so() {
        let mut cal = Calendar::london();
        cal.terms = vec![(jiff::civil::date(2026, 9, 3), jiff::civil::date(2026, 12, 18))];
        let monday_noon: Timestamp = "2026-12-07T12:00:00Z".parse().unwrap();
        let sunday_noon: Timestamp = "2026-12-06T12:00:00Z".parse().unwrap();
        let mut ext = ExtensionSettings { off_groups: vec!["staff".into()], ..ExtensionSettings::default() };
        assert!(capture(&ext, Some("secondary"), &cal, sunday_noon).0, "always, unless the trust limits it to school hours");
        assert_eq!(capture(&ext, Some("staff"), &cal, monday_noon), (false, "this group is not monitored"));
        assert!(capture(&ext, None, &cal, monday_noon).0, "an unknown person is captured");
        ext.school_hours_only = true;
        assert!(capture(&ext, Some("secondary"), &cal, monday_noon).0);
        assert_eq!(capture(&ext, Some("secondary"), &cal, sunday_noon), (false, "outside school hours"));
    }
}
