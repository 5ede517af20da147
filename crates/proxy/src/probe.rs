//! The proxy's side of the filtering checks: probes signed in with the
//! reserved name and a token (see `haven_config::probe`), which are decided
//! as the school and group the token names but never forwarded to an origin
//! (the proxy says what it would have done instead), and the answers a
//! pupil's browser reads on the "check this device" page.

use haven_config::probe::{PROBE_USER, TOKEN_PREFIX};
use haven_policy::{Decision, PolicySet, Subject};
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use jiff::Timestamp;

use crate::server::Body;

/// A host the proxy answers itself (`.invalid` never resolves): a browser
/// that reaches it is going through Haven, and learns as whom.
pub const CHECK_HOST: &str = "check.haven.invalid";
/// On a host the proxy blocks, this path is answered with a small JSON
/// saying so, readable by the "check this device" page (CORS), so the page
/// can tell "blocked by Haven" from "did not load".
pub const CHECK_PATH: &str = "/.well-known/haven-check";
/// The header a probe's answer carries instead of the origin's: what the
/// proxy decided (`allow`, `safesearch`).
pub const PROBE_HEADER: &str = "x-haven-probe";
/// Where the proxy would have sent a probe's request (safe search applied).
pub const PROBE_FORWARD_HEADER: &str = "x-haven-probe-forward";
/// What the monitoring classifier found in a probe's search words.
pub const PROBE_CONCERNS_HEADER: &str = "x-haven-probe-concerns";

/// The subject a probe's sign-in stands for, when `user` is the reserved
/// name and `password` a token this Haven signed that has not expired.
/// `Some(None)`: the reserved name with a token that is refused.
pub(crate) fn subject(key: Option<&haven_config::probe::ProbeKey>, set: &PolicySet, user: &str, password: &str, now: Timestamp) -> Option<Option<Subject>> {
    if user != PROBE_USER {
        return None;
    }
    let claim = key.filter(|_| password.starts_with(TOKEN_PREFIX)).and_then(|k| match k.verify(password, now) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::debug!("proxy: a filtering check's probe token was refused: {e}");
            None
        }
    });
    Some(claim.and_then(|c| Some(Subject { user: None, group: set.group(&c.group)?, school: Some(set.school(&c.school)?) })))
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(crate::server::full(value.to_string()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Any page may read it: it says only that Haven blocked this, for which group.
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    r
}

fn ids(set: &PolicySet, who: &Subject) -> (Option<String>, String) {
    (who.school.map(|s| set.schools[s].id.clone()), set.groups[who.group].id.clone())
}

/// `http://check.haven.invalid/…`: this browser goes through Haven, as whom.
pub(crate) fn through(set: &PolicySet, who: &Subject) -> Response<Body> {
    let (school, group) = ids(set, who);
    json(StatusCode::OK, &serde_json::json!({ "haven": "proxy", "school": school, "group": group }))
}

/// `CHECK_PATH` on a blocked host: blocked by Haven, in which categories, as whom.
pub(crate) fn blocked(set: &PolicySet, who: &Subject, d: &Decision) -> Response<Body> {
    let (school, group) = ids(set, who);
    let shown = if d.decisive.is_empty() { d.categories } else { d.decisive };
    let categories: Vec<&str> = shown.iter().map(|c| c.id()).collect();
    json(StatusCode::FORBIDDEN, &serde_json::json!({ "haven": "blocked", "school": school, "group": group, "categories": categories }))
}

/// A probe's allowed request, answered instead of forwarded: what would
/// have gone to the origin, and what the words searched for showed.
pub(crate) fn allowed(action: &str, target: &str, concerns: &[String]) -> Response<Body> {
    let mut r = Response::new(crate::server::full(format!("Haven filtering check: {action}\n")));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for (name, value) in [(PROBE_HEADER, action.to_string()), (PROBE_FORWARD_HEADER, target.to_string()), (PROBE_CONCERNS_HEADER, concerns.join(","))] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(hyper::header::HeaderName::from_static(name), v);
        }
    }
    r
}

/// A probe asked to open a tunnel: probes use plain HTTP, so nothing is ever relayed for them.
pub(crate) fn no_tunnel() -> Response<Body> {
    let mut r = Response::new(crate::server::full("Haven filtering checks use plain HTTP; probes are never tunnelled.\n"));
    *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    r
}
