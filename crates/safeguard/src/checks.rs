//! Filtering checks in the web app (`/filtering/checks`): the checks log the
//! DfE filtering standards ask for (when, who, where, device, group, what was
//! tested, the result, the follow-up), a "run checks now" button, the
//! schedule `haven serve` keeps, and the public "check this device" page
//! (`/check`) a pupil opens on their own device.
//!
//! The probes themselves go through the DNS filter and the proxy, which this
//! crate does not know: the binary hands in a [`Prober`] (in
//! [`Settings::checks`](crate::Settings::checks)) that runs them. A failed
//! probe raises a notice for IT ([`record`]).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json};
use haven_store::Role;
use haven_store::checks::{Outcome, Run};
use haven_store::people::Account;
use jiff::Timestamp;
use serde::Deserialize;

use crate::Service;
use crate::web::{csrf_ok, esc, page, signed_in, when, with_status};

/// A run of probes, boxed so the trait can be a trait object.
pub type Probing<'a> = Pin<Box<dyn Future<Output = Result<Vec<Outcome>, String>> + Send + 'a>>;

/// Runs the built-in probes through the running DNS filter and proxy, as a
/// school and group (implemented by the binary, which owns both).
pub trait Prober: Send + Sync {
    /// Every probe, through every path, as `school`'s `group`.
    fn run<'a>(&'a self, school: &'a str, group: &'a str) -> Probing<'a>;
    /// The groups a check can be run as.
    fn groups(&self) -> Vec<String>;
    /// What a pupil's device tries on the "check this device" page: (probe, host).
    fn device_targets(&self) -> Vec<(String, String)>;
    /// How often `haven serve` runs the probes, and as which (school, group) pairs.
    fn schedule(&self) -> (Option<Duration>, Vec<(String, String)>);
}

/// Stores a run and, when a probe failed, tells IT; an unseen notice saying
/// the same about the same school in the last hour is not repeated (a pupil
/// reloading the device page must not bury IT in notices).
pub async fn record(store: &haven_store::Store, run: &Run, outcomes: &[Outcome]) -> Result<(), haven_store::StoreError> {
    store.add_filter_checks(run, outcomes).await?;
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| !o.ok).collect();
    if failed.is_empty() {
        return Ok(());
    }
    let head = format!("Filtering check failed at {} for group {} ({}, {}):", run.school, run.group, run.origin, run.who);
    let detail: Vec<String> = failed.iter().map(|o| format!("{} through {} ({}): expected {}, got {}", o.probe, o.path, o.target, o.expected, o.got)).collect();
    let message = format!("{head} {}. Open Filtering checks, put it right, and add a follow-up.", detail.join("; "));
    let recent = store.it_notices(Some(&run.school), true, 50).await?;
    let hour_ago = run.at - jiff::SignedDuration::from_hours(1);
    let repeated = recent.iter().any(|n| n.kind == "filtering-check" && n.message == message && n.raised_at.parse::<Timestamp>().is_ok_and(|t| t >= hour_ago));
    if !repeated {
        store.add_it_notice(Some(&run.school), "filtering-check", &message, run.at).await?;
    }
    Ok(())
}

/// A new run's id: the time and a few random letters, readable in the log.
pub fn run_id(at: Timestamp) -> String {
    let token = haven_store::secrets::token("run");
    format!("{}-{}", at.strftime("%Y%m%dT%H%M%S"), token.chars().rev().take(6).collect::<String>())
}

/// Runs the checks on the schedule the settings in force say, until the
/// process ends. The first run is one period after start, so restarts do
/// not pile up runs.
pub async fn schedule(s: Service) {
    let mut last = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        let Some(prober) = s.settings().checks.clone() else { continue };
        let (Some(every), pairs) = prober.schedule() else { continue };
        if last.elapsed() < every {
            continue;
        }
        last = tokio::time::Instant::now();
        for (school, group) in pairs {
            let at = Timestamp::now();
            match prober.run(&school, &group).await {
                Ok(outcomes) => {
                    let run = Run { run: run_id(at), at, who: "the schedule".into(), origin: "schedule".into(), school, group, device: None };
                    if let Err(e) = record(&s.store, &run, &outcomes).await {
                        tracing::error!("filtering checks: the scheduled run could not be recorded: {e}");
                    }
                }
                Err(e) => tracing::error!("filtering checks: the scheduled run for {school}/{group} could not run: {e}"),
            }
        }
    }
}

/// The routes: the checks log and its forms, and the public device check.
pub fn routes() -> axum::Router<Service> {
    axum::Router::new()
        .route("/filtering/checks", get(log_page))
        .route("/filtering/checks/run", post(run_now))
        .route("/filtering/checks/{id}/follow-up", post(follow_up))
        .route("/check", get(device_page))
        .route("/check/check.js", get(device_script))
        .route("/check/results", post(device_results))
}

fn sees_log(a: &Account) -> bool {
    a.role.trust_wide() || a.role.does_it() || matches!(a.role, Role::Dsl | Role::DeputyDsl | Role::Headteacher)
}

fn runs_checks(a: &Account) -> bool {
    a.role.does_it() || matches!(a.role, Role::Dsl | Role::TrustAdmin)
}

fn writes_follow_up(a: &Account) -> bool {
    a.role.trust_wide() || a.role.does_it() || matches!(a.role, Role::Dsl | Role::DeputyDsl)
}

/// Whether `a` may act on `school`'s checks.
fn covers(a: &Account, school: &str) -> bool {
    a.role.trust_wide() || a.school.as_deref() == Some(school)
}

async fn log_page(State(s): State<Service>, headers: HeaderMap) -> Response {
    let w = match signed_in(&s, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    if !sees_log(&w.account) {
        return with_status(page(&s, "Not for your role", Some(&w), "<p>IT and safeguarding leads keep the filtering checks.</p>"), StatusCode::FORBIDDEN);
    }
    let school = if w.account.role.trust_wide() { None } else { w.account.school.clone() };
    let checks = s.store.filter_checks(school.as_deref(), 500).await.unwrap_or_default();
    if s.store
        .audit(Timestamp::now(), &format!("account:{}", w.account.id), "filter-checks.read", "filter-checks", school.as_deref().unwrap_or("trust"))
        .await
        .is_err()
    {
        return crate::unaudited();
    }
    let notices = s.store.it_notices(school.as_deref(), true, 20).await.unwrap_or_default();
    let csrf = esc(&w.csrf);
    let mut body = String::from(
        "<p>Each probe asks for something the filter must block (an IWF and a CTIRU test entry, adult, gambling, self-harm and \
         circumvention sites) or treat specially (safe search, a profane search), through the DNS filter and the web proxy, as a \
         school's group, and records what happened. Keep this log as the DfE filtering standards ask, with a follow-up for any \
         failure. Pupils can check their own device at <a href=\"/check\">/check</a>.</p>",
    );
    let failing: Vec<_> = notices.iter().filter(|n| n.kind == "filtering-check").collect();
    if !failing.is_empty() {
        body.push_str("<h2>Needs attention</h2><ul>");
        for n in failing {
            body.push_str(&format!("<li class=\"err\">{} — {}</li>", esc(&when(&n.raised_at)), esc(&n.message)));
        }
        body.push_str("</ul>");
    }
    let prober = s.settings().checks.clone();
    if runs_checks(&w.account) {
        match &prober {
            Some(p) => {
                let schools = s.store.schools().await.unwrap_or_default();
                let schools: String = schools
                    .iter()
                    .filter(|sc| covers(&w.account, &sc.id))
                    .map(|sc| format!("<option value=\"{}\">{}</option>", esc(&sc.id), esc(&sc.name)))
                    .collect();
                let groups: String = p.groups().iter().map(|g| format!("<option>{}</option>", esc(g))).collect();
                body.push_str(&format!(
                    "<h2>Run checks now</h2><form method=\"post\" action=\"/filtering/checks/run\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                     <label>School <select name=\"school\">{schools}</select></label><label>Group <select name=\"group\">{groups}</select></label>\
                     <button>Run every probe</button></form>"
                ));
            }
            None => body.push_str("<p>Checks run from <code>haven serve</code>, which runs the filters; this Haven runs the web app alone.</p>"),
        }
    }
    let follow = writes_follow_up(&w.account);
    let rows: String = checks
        .iter()
        .map(|c| {
            let result = if c.outcome.ok { "<td>as expected</td>".to_string() } else { "<td class=\"err\"><strong>FAILED</strong></td>".to_string() };
            let follow_up = match (&c.follow_up, follow && !c.outcome.ok) {
                (Some(f), _) => esc(f),
                (None, true) => format!(
                    "<form method=\"post\" action=\"/filtering/checks/{}/follow-up\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                     <input name=\"note\" required maxlength=\"2000\" placeholder=\"What was done\" aria-label=\"What was done\"><button>Save</button></form>",
                    c.id
                ),
                (None, false) => String::new(),
            };
            format!(
                "<tr><td>{}</td><td>{}</td><td>{} ({})</td><td>{}</td><td>{}</td><td>{} via {}<br><small>{}</small></td><td>expected {}; got {}</td>{result}<td>{follow_up}</td></tr>",
                esc(&when(&c.at)),
                esc(&c.who),
                esc(&c.school),
                esc(&c.origin),
                esc(c.device.as_deref().unwrap_or("-")),
                esc(&c.group),
                esc(&c.outcome.probe),
                esc(&c.outcome.path),
                esc(&c.outcome.target),
                esc(&c.outcome.expected),
                esc(&c.outcome.got),
            )
        })
        .collect();
    body.push_str(&format!(
        "<h2>Checks log</h2><table><thead><tr><th>When</th><th>Who</th><th>Where</th><th>Device</th><th>Group</th><th>Probe</th><th>Observed</th>\
         <th>Result</th><th>Follow-up</th></tr></thead><tbody>{rows}</tbody></table><p>{} probes, newest first.</p>",
        checks.len()
    ));
    page(&s, "Filtering checks", Some(&w), &body)
}

async fn run_now(State(s): State<Service>, headers: HeaderMap, Form(f): Form<HashMap<String, String>>) -> Response {
    let w = match signed_in(&s, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    if !csrf_ok(&w.csrf, f.get("csrf")) {
        return with_status(page(&s, "Form expired", Some(&w), "<p><a href=\"/filtering/checks\">Open the checks again</a>.</p>"), StatusCode::FORBIDDEN);
    }
    let school = f.get("school").cloned().unwrap_or_default();
    let group = f.get("group").cloned().unwrap_or_default();
    if !runs_checks(&w.account) || !covers(&w.account, &school) {
        return with_status(page(&s, "Not for your role", Some(&w), "<p>IT, the DSL and the trust's administrators run checks.</p>"), StatusCode::FORBIDDEN);
    }
    let Some(prober) = s.settings().checks.clone() else {
        return with_status(page(&s, "Checks not available", Some(&w), "<p>Run checks from <code>haven serve</code>.</p>"), StatusCode::SERVICE_UNAVAILABLE);
    };
    if !prober.groups().contains(&group) || !s.store.schools().await.unwrap_or_default().iter().any(|sc| sc.id == school) {
        return with_status(page(&s, "Not checked", Some(&w), "<p class=\"err\">Choose a school and a group.</p>"), StatusCode::BAD_REQUEST);
    }
    let at = Timestamp::now();
    let outcomes = match prober.run(&school, &group).await {
        Ok(o) => o,
        Err(e) => return with_status(page(&s, "Not checked", Some(&w), &format!("<p class=\"err\">{}</p>", esc(&e))), StatusCode::SERVICE_UNAVAILABLE),
    };
    let run = Run { run: run_id(at), at, who: format!("account:{} ({})", w.account.id, w.account.email), origin: "web".into(), school, group, device: None };
    if let Err(e) = record(&s.store, &run, &outcomes).await {
        return with_status(page(&s, "Not recorded", Some(&w), &format!("<p class=\"err\">{}</p>", esc(&e.to_string()))), StatusCode::SERVICE_UNAVAILABLE);
    }
    Redirect::to("/filtering/checks").into_response()
}

async fn follow_up(State(s): State<Service>, headers: HeaderMap, Path(id): Path<i64>, Form(f): Form<HashMap<String, String>>) -> Response {
    let w = match signed_in(&s, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    if !csrf_ok(&w.csrf, f.get("csrf")) {
        return with_status(page(&s, "Form expired", Some(&w), "<p><a href=\"/filtering/checks\">Open the checks again</a>.</p>"), StatusCode::FORBIDDEN);
    }
    let allowed = writes_follow_up(&w.account) && s.store.filter_check_school(id).await.is_ok_and(|school| covers(&w.account, &school));
    if !allowed {
        return with_status(page(&s, "Not for your role", Some(&w), "<p>IT and safeguarding leads add follow-ups.</p>"), StatusCode::FORBIDDEN);
    }
    match s.store.follow_up_filter_check(id, f.get("note").map_or("", String::as_str), &format!("account:{}", w.account.id), Timestamp::now()).await {
        Ok(()) => Redirect::to("/filtering/checks").into_response(),
        Err(e) => with_status(page(&s, "Not saved", Some(&w), &format!("<p class=\"err\">{}</p>", esc(&e.to_string()))), StatusCode::BAD_REQUEST),
    }
}

/// The anonymous form token's cookie on the device page.
const CHECK_COOKIE: &str = "haven_check";

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// `/check`: a pupil opens it on their device; its script asks the proxy
/// (through the browser's own settings) for the blocked targets and posts
/// what happened.
async fn device_page(State(s): State<Service>) -> Response {
    let token = haven_store::secrets::token("check");
    let targets = s.settings().checks.as_ref().map(|p| p.device_targets()).unwrap_or_default();
    let items: String = targets
        .iter()
        .map(|(probe, host)| format!("<li data-probe=\"{}\" data-host=\"{}\">{} — <span>waiting</span></li>", esc(probe), esc(host), esc(probe)))
        .collect();
    let body = format!(
        "<p>This page checks that this device's web browsing goes through the school's filter, and that it blocks what it must. \
         It tries to open a few blocked addresses (nothing is shown) and sends the results to IT.</p>\
         <p id=\"through\">Checking whether this device goes through the filter…</p><ul id=\"probes\" data-form=\"{}\">{items}</ul><p id=\"done\"></p>\
         <script src=\"/check/check.js\"></script>",
        esc(&token)
    );
    let mut r = page(&s, "Check this device", None, &body);
    let h = r.headers_mut();
    // The script asks other hosts over plain HTTP, which only the proxy answers.
    h.insert("content-security-policy", HeaderValue::from_static("default-src 'self'; connect-src 'self' http:; form-action 'self'; frame-ancestors 'none'"));
    if let Ok(v) = HeaderValue::from_str(&format!("{CHECK_COOKIE}={token}; Path=/check; HttpOnly; SameSite=Strict; Max-Age=3600")) {
        h.append(header::SET_COOKIE, v);
    }
    r
}

const DEVICE_SCRIPT: &str = r#""use strict";
(async () => {
  const list = document.getElementById("probes");
  const results = [];
  let who = null;
  const ask = async (host) => {
    try {
      const r = await fetch("http://" + host + "/.well-known/haven-check", { cache: "no-store", credentials: "omit" });
      try { const j = await r.json(); if (j && j.haven) return { seen: j.haven, j }; } catch (e) {}
      return { seen: "loaded" };
    } catch (e) { return { seen: "failed" }; }
  };
  const t = await ask("check.haven.invalid");
  const through = document.getElementById("through");
  if (t.seen === "proxy") {
    who = t.j;
    through.textContent = "This device goes through Haven's web filter as " + (t.j.school || "no school") + ", group " + t.j.group + ".";
  } else {
    through.textContent = "This device does not seem to go through Haven's web filter (or only through its DNS filter).";
  }
  results.push({ probe: "through-haven", target: "check.haven.invalid", seen: t.seen === "proxy" ? "proxy" : t.seen });
  for (const li of list.querySelectorAll("li")) {
    const host = li.dataset.host;
    const r = await ask(host);
    const span = li.querySelector("span");
    span.textContent = r.seen === "blocked" ? "blocked by Haven" : r.seen === "loaded" ? "NOT BLOCKED: it loaded" : "did not load (blocked by DNS, or no connection)";
    results.push({ probe: li.dataset.probe, target: host, seen: r.seen });
  }
  const done = document.getElementById("done");
  try {
    const r = await fetch("/check/results", { method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ form: list.dataset.form, school: who && who.school, group: who && who.group, results }) });
    done.textContent = r.ok ? "Results sent to IT. Thank you." : "The results could not be sent (" + r.status + ").";
  } catch (e) { done.textContent = "The results could not be sent."; }
})();
"#;

async fn device_script() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "no-store")], DEVICE_SCRIPT).into_response()
}

#[derive(Deserialize)]
struct DeviceReport {
    form: String,
    school: Option<String>,
    group: Option<String>,
    results: Vec<DeviceResult>,
}

#[derive(Deserialize)]
struct DeviceResult {
    probe: String,
    target: String,
    /// `proxy` (the through-Haven answer), `blocked` (Haven's block JSON),
    /// `loaded` (something else answered), `failed` (nothing did).
    seen: String,
}

/// What a device saw, judged here rather than believed: only Haven's own
/// answer counts as blocked.
fn judge_device(r: &DeviceResult) -> Outcome {
    let through = r.probe == "through-haven";
    let clip = |t: &str| t.chars().take(200).collect::<String>();
    let (expected, got, ok) = match (through, r.seen.as_str()) {
        (true, "proxy") => ("through Haven's proxy", "through Haven's proxy".to_string(), true),
        (true, _) => ("through Haven's proxy", "not through Haven's proxy".to_string(), false),
        (false, "blocked") => ("blocked by Haven", "blocked by Haven".to_string(), true),
        (false, "loaded") => ("blocked by Haven", "loaded: not blocked".to_string(), false),
        (false, _) => ("blocked by Haven", "did not load (blocked by DNS, or no connection): not Haven's block".to_string(), false),
    };
    Outcome { probe: clip(&r.probe), path: "device".into(), target: clip(&r.target), expected: expected.into(), got, ok }
}

type Peer = Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>;

async fn device_results(State(s): State<Service>, peer: Peer, headers: HeaderMap, Json(report): Json<DeviceReport>) -> Response {
    // Anonymous, like the report page: the form's token must match its cookie.
    if !cookie(&headers, CHECK_COOKIE).is_some_and(|c| csrf_ok(c, Some(&report.form))) {
        return (StatusCode::FORBIDDEN, "the check page expired: open /check again\n").into_response();
    }
    let Some(prober) = s.settings().checks.clone() else { return (StatusCode::SERVICE_UNAVAILABLE, "checks are not available\n").into_response() };
    if report.results.is_empty() || report.results.len() > 16 {
        return (StatusCode::BAD_REQUEST, "send between 1 and 16 results\n").into_response();
    }
    // A device not going through the proxy cannot say its school or group.
    let school = report.school.filter(|sc| !sc.is_empty()).unwrap_or_else(|| "unknown".into());
    let group = report.group.filter(|g| prober.groups().contains(g)).unwrap_or_else(|| "unknown".into());
    let schools = s.store.schools().await.unwrap_or_default();
    let Some(school) = schools.iter().find(|sc| sc.id == school).map(|sc| sc.id.clone()) else {
        return (StatusCode::UNPROCESSABLE_ENTITY, "this device does not go through Haven's proxy as a school: set the browser's proxy, then check again\n")
            .into_response();
    };
    let agent: String = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("unknown browser").chars().take(120).collect();
    let address = peer.map_or_else(|| "unknown address".to_string(), |p| p.0.0.ip().to_string());
    let at = Timestamp::now();
    let run = Run { run: run_id(at), at, who: "a pupil's device".into(), origin: "device".into(), school, group, device: Some(format!("{address}; {agent}")) };
    let outcomes: Vec<Outcome> = report.results.iter().map(judge_device).collect();
    match record(&s.store, &run, &outcomes).await {
        Ok(()) => (StatusCode::OK, Json(serde_json::json!({ "recorded": outcomes.len(), "ok": outcomes.iter().all(|o| o.ok) }))).into_response(),
        Err(e) => {
            tracing::error!("filtering checks: a device's results could not be recorded: {e}");
            (StatusCode::SERVICE_UNAVAILABLE, "the results could not be recorded; try again later\n").into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_havens_own_answer_counts_as_blocked_on_a_device() {
        let r = |probe: &str, seen: &str| DeviceResult { probe: probe.into(), target: "pornhub.com".into(), seen: seen.into() };
        assert!(judge_device(&r("adult", "blocked")).ok);
        assert!(!judge_device(&r("adult", "loaded")).ok);
        assert!(!judge_device(&r("adult", "failed")).ok, "could not connect is not a pass");
        assert!(judge_device(&r("through-haven", "proxy")).ok);
        assert!(!judge_device(&r("through-haven", "failed")).ok);
        assert_eq!(judge_device(&r("adult", "blocked")).path, "device");
    }
}
