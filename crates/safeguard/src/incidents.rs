//! Incident pages: the list with filters, raise one from an alert (its
//! branch of the flowchart follows the alert's concern), follow the
//! flowchart, change branch with a reason, record actions, links and
//! evidence (kept by SHA-256, opened in the browser only when it is a
//! plain image and the incident is not possibly illegal), close with the
//! outcome; and a pupil's chronology. Also who an alert is for: one about a
//! member of staff skips the DSL's queue.

use std::collections::HashMap;

use axum::Form;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use haven_store::incidents::{Closing, IncidentQuery, Kind, NewEvidence, NewIncident};
use haven_store::staff::Audience;
use haven_store::{Role, StoreError};
use jiff::Timestamp;
use sha2::{Digest, Sha256};

use crate::Service;
use crate::web::{csrf_ok, esc, page, signed_in, when, with_status};

/// The incident routes.
pub fn routes() -> axum::Router<Service> {
    axum::Router::new()
        .route("/alerts/{id}/incident", post(raise))
        .route("/incidents", get(list))
        .route("/api/v1/incidents", get(api_list))
        .route("/incidents/{id}", get(show))
        .route("/incidents/{id}/branch", post(branch))
        .route("/incidents/{id}/link", post(link))
        .route("/incidents/{id}/evidence/{n}", get(open_evidence))
        .route("/incidents/{id}/action", post(action))
        .route("/incidents/{id}/evidence", post(evidence))
        .route("/incidents/{id}/close", post(close))
        .route("/people/{school}/{person}", get(crate::chronology::show))
}

/// Largest evidence file accepted.
const MAX_EVIDENCE: usize = 20 * 1024 * 1024;

/// The branch of the flowchart an alert's concern starts on (the DSL may
/// move it, with a reason). A pupil at risk is a safeguarding case, never a
/// misuse one: only an offensive user's misuse starts on the branch with
/// sanctions. What may be illegal material starts on the illegal branch:
/// sexual content or extremism at level 4 or more (the IWF's and CTIRU's
/// lists raise them at 4), grooming at 5. Anything unknown is safeguarding,
/// whose steps never punish a child who may be at risk.
pub fn branch_for(category: &str, level: u8) -> Kind {
    match category {
        "Sexual content" | "Terrorism/Extremism" if level >= 4 => Kind::PossiblyIllegal,
        "Grooming" if level >= 5 => Kind::PossiblyIllegal,
        "Offensive user" => Kind::Misuse,
        _ => Kind::Safeguarding,
    }
}

/// Who an alert about `person` at `school` is for: a member of staff (in a
/// staff group of the config, or with an account) goes to the headteacher
/// and IT; the headteacher to the chair of governors; anyone else to the
/// safeguarding queue.
pub(crate) async fn audience(s: &Service, school: &str, person: &str) -> Result<Audience, StoreError> {
    let role = s.store.staff_role(school, person).await?;
    if role == Some(Role::Headteacher) {
        return Ok(Audience::Head);
    }
    let settings = s.settings();
    let group = settings.groups_by_user.get(&person.to_lowercase());
    let staff_group = group.is_some_and(|g| {
        g == "staff"
            || settings.policy.groups.iter().find(|x| &x.id == g).is_some_and(|x| settings.policy.policies.get(x.policy).is_some_and(|p| p.id == "staff"))
    });
    Ok(if staff_group || role.is_some() { Audience::Staff } else { Audience::Pupil })
}

/// The school's LADO in a line, linked (`None` when none is configured).
fn lado_line(s: &Service, school: &str) -> Option<String> {
    let settings = s.settings();
    let l = settings.lado.for_school(school)?;
    let mut parts = vec![esc(&l.name)];
    if let Some(p) = &l.phone {
        let dial: String = p.chars().filter(|c| c.is_ascii_digit() || *c == '+').collect();
        parts.push(format!("<a href=\"tel:{}\">{}</a>", esc(&dial), esc(p)));
    }
    if let Some(e) = &l.email {
        parts.push(format!("<a href=\"mailto:{0}\">{0}</a>", esc(e)));
    }
    Some(parts.join(", "))
}

/// How to reach the school's LADO, for an incident about staff or the
/// headteacher: the referral is due within one working day, so the number
/// is on the page rather than in someone's contacts. Unset, the page says
/// which key sets it, so the gap is fixed before it is needed.
pub(crate) fn lado_block(s: &Service, school: &str) -> String {
    let settings = s.settings();
    let Some(l) = settings.lado.for_school(school) else {
        return "<section class=\"lado\" aria-labelledby=\"lado-h\"><h2 id=\"lado-h\">LADO contact</h2>\
                <p class=\"err\">No LADO is configured for this school. Set <code>[safeguarding] lado = { name = \"…\", phone = \"…\", email = \"…\" }</code> \
                in haven.toml (or <code>lado</code> in the school's <code>[[school]]</code> table where its local authority differs), then reload.</p></section>"
            .into();
    };
    let mut reach = Vec::new();
    if let Some(p) = &l.phone {
        // tel: wants the number alone: digits and a leading +.
        let dial: String = p.chars().filter(|c| c.is_ascii_digit() || *c == '+').collect();
        reach.push(format!("Phone <a href=\"tel:{}\">{}</a>", esc(&dial), esc(p)));
    }
    if let Some(e) = &l.email {
        reach.push(format!("E-mail <a href=\"mailto:{0}\">{0}</a>", esc(e)));
    }
    format!(
        "<section class=\"lado\" aria-labelledby=\"lado-h\"><h2 id=\"lado-h\">LADO contact</h2><p><strong>{}</strong></p><p>{}</p>\
         <p>Refer within one working day; do not investigate first.</p></section>",
        esc(&l.name),
        reach.join(" · ")
    )
}

/// The form on an alert page that raises an incident, its branch chosen
/// from the alert's concern.
pub fn raise_form(alert: i64, csrf: &str) -> String {
    raise_form_for(alert, csrf, Kind::Safeguarding)
}

/// [`raise_form`] with the branch the alert's concern suggests.
pub fn raise_form_for(alert: i64, csrf: &str, suggested: Kind) -> String {
    format!(
        "<h2>Raise an incident</h2><form method=\"post\" action=\"/alerts/{alert}/incident\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <label>Title <input name=\"title\" required></label>\
         <label>Which applies? <select name=\"kind\">{}</select></label>\
         <label><input type=\"checkbox\" name=\"about_head\" value=\"1\"> It concerns the headteacher</label>\
         <button>Raise incident</button></form>",
        esc(csrf),
        kind_options(suggested)
    )
}

fn kind_options(selected: Kind) -> String {
    Kind::ALL.iter().map(|k| format!("<option value=\"{}\"{}>{}</option>", k.as_str(), if *k == selected { " selected" } else { "" }, esc(k.label()))).collect()
}

async fn raise(State(s): State<Service>, headers: HeaderMap, Path(alert): Path<i64>, Form(f): Form<HashMap<String, String>>) -> Response {
    let w = match signed_in(&s, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    if !csrf_ok(&w.csrf, f.get("csrf")) {
        return with_status(page(&s, "Form expired", Some(&w), "<p class=\"err\">Reload the page and try again.</p>"), StatusCode::FORBIDDEN);
    }
    let now = Timestamp::now();
    let Ok(Some(detail)) = s.store.alert_detail(&w.account, alert).await else {
        return with_status(page(&s, "Alert not found", Some(&w), ""), StatusCode::NOT_FOUND);
    };
    let a = &detail.alert;
    let kind = f.get("kind").and_then(|k| Kind::parse(k)).unwrap_or_else(|| branch_for(&a.category, a.level));
    let title = f.get("title").map_or("", |t| t.trim());
    let n = NewIncident { school: &a.school, person: Some(&a.person), alert: Some(alert), title, kind, about_head: f.contains_key("about_head") };
    match s.store.raise_incident(&w.account, &n, now).await {
        Ok(Some(id)) => Redirect::to(&format!("/incidents/{id}")).into_response(),
        Ok(None) => with_status(page(&s, "Not allowed", Some(&w), ""), StatusCode::FORBIDDEN),
        Err(e) => with_status(page(&s, "Not raised", Some(&w), &format!("<p class=\"err\">{}</p>", esc(&e.to_string()))), StatusCode::BAD_REQUEST),
    }
}

async fn show(State(s): State<Service>, headers: HeaderMap, Path(id): Path<i64>) -> Response {
    let w = match signed_in(&s, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let Ok(Some((inc, actions, evidence))) = s.store.incident(&w.account, id, Timestamp::now()).await else {
        return with_status(page(&s, "Incident not found", Some(&w), "<p>There is no such incident that you may see.</p>"), StatusCode::NOT_FOUND);
    };
    let csrf = esc(&w.csrf);
    // The step that consults the LADO says who and how, where it is known.
    let lado_reach = (inc.kind == Kind::Staff).then(|| lado_line(&s, &inc.school)).flatten();
    let steps: String = inc
        .kind
        .steps(inc.about_head)
        .iter()
        .map(|st| match &lado_reach {
            Some(reach) if st.contains("LADO") => format!("<li>{}: {reach}.</li>", esc(st.trim_end_matches('.'))),
            _ => format!("<li>{}</li>", esc(st)),
        })
        .collect();
    // Notes keep their line breaks (lines attached from a person's history are one a line).
    let acts: String =
        actions.iter().map(|a| format!("<li>{} — {}: <span class=\"note\">{}</span></li>", esc(&when(&a.at)), esc(&a.by), esc(&a.note))).collect();
    let files: String = evidence
        .iter()
        .map(|e| {
            format!(
                "<li>{} — <a href=\"/incidents/{id}/evidence/{}\">{}</a> ({} bytes, SHA-256 <code>{}</code>) by {}: {}</li>",
                esc(&when(&e.at)),
                e.id,
                esc(&e.filename),
                e.size,
                esc(&e.sha256),
                esc(&e.by),
                esc(&e.note)
            )
        })
        .collect();
    let person = match inc.person.as_deref() {
        Some(p) => format!(" about <a href=\"/people/{}/{}\">{}</a>", esc(&inc.school), esc(p), crate::people::label(&s, &inc.school, p).await),
        None => String::new(),
    };
    let open = inc.status == "open";
    let links: String = s
        .store
        .incident_links(&w.account, id)
        .await
        .unwrap_or_default()
        .iter()
        .map(|l| {
            let target = match l.kind.as_str() {
                "alert" => format!("<a href=\"/alerts/{0}\">alert {0}</a>", esc(&l.target)),
                "incident" => format!("<a href=\"/incidents/{0}\">incident {0}</a>", esc(&l.target)),
                _ => format!("<a href=\"/people/{0}\">{0}</a>", esc(&l.target)),
            };
            format!("<li>{target} — linked {} by {}</li>", esc(&when(&l.at)), esc(&l.by))
        })
        .collect();
    // Who to involve outside the school when the concern is about staff.
    let lado = if inc.about_head {
        format!(
            "<p class=\"err\">This concerns the headteacher: it is hidden from the headteacher. The chair of governors leads, with the local authority designated officer (LADO) and the trust.</p>{}",
            lado_block(&s, &inc.school)
        )
    } else if inc.kind == Kind::Staff {
        format!(
            "<p>A concern about a member of staff: the headteacher consults the local authority designated officer (LADO).</p>{}",
            lado_block(&s, &inc.school)
        )
    } else {
        String::new()
    };
    let more = if open {
        format!(
            "<h2>Link</h2><form method=\"post\" action=\"/incidents/{id}/link\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <label>What <select name=\"kind\"><option value=\"alert\">Alert (its number)</option><option value=\"person\">Person (school/login)</option>\
             <option value=\"incident\">Incident (its number)</option></select></label><label>Which <input name=\"target\" required></label><button>Link</button></form>\
             <h2>Change the branch</h2><form method=\"post\" action=\"/incidents/{id}/branch\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <label>Branch <select name=\"kind\">{}</select></label><label>Why <input name=\"reason\" required></label><button>Change branch</button></form>",
            kind_options(inc.kind)
        )
    } else {
        String::new()
    };
    let forms = if open {
        format!(
            "<h2>Add an action</h2><form method=\"post\" action=\"/incidents/{id}/action\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <label>What was done <textarea name=\"note\" required></textarea></label><button>Add action</button></form>\
             <h2>Add evidence</h2><form method=\"post\" action=\"/incidents/{id}/evidence\" enctype=\"multipart/form-data\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <label>File <input type=\"file\" name=\"file\" required></label><label>What it is <input name=\"note\"></label><button>Add evidence</button></form>{warn}\
             <h2>Close the incident</h2><form method=\"post\" action=\"/incidents/{id}/close\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <label>Outcome <textarea name=\"outcome\" required></textarea></label><label>Feedback to those involved <textarea name=\"feedback\"></textarea></label>\
             <label>Lessons learned <textarea name=\"lessons\"></textarea></label><label>Sanction (e.g. ICT AUP breach) <input name=\"sanction\"></label><button>Close incident</button></form>",
            warn = if inc.kind == Kind::PossiblyIllegal {
                "<p class=\"err\">Never upload images or videos that may show child abuse: leave them on the device and record where they are.</p>"
            } else {
                ""
            }
        )
    } else {
        format!(
            "<h2>Outcome</h2><p>{}</p><h2>Feedback</h2><p>{}</p><h2>Lessons learned</h2><p>{}</p><h2>Sanction</h2><p>{}</p>",
            esc(&inc.outcome),
            esc(&inc.feedback),
            esc(&inc.lessons),
            esc(if inc.sanction.is_empty() { "none" } else { &inc.sanction })
        )
    };
    let body = format!(
        "<p><strong>{}</strong>{person} at {} — raised {}, status <strong>{}</strong>{}.</p>{lado}<p><a href=\"/incidents/{id}/hold\">Legal hold</a></p>\
         <h2>What to do ({})</h2><ol>{steps}</ol><h2>Actions</h2><ul>{}</ul><h2>Evidence</h2><ul>{}</ul><h2>Linked</h2><ul>{}</ul>{forms}{more}",
        esc(&inc.title),
        esc(&inc.school),
        esc(&when(&inc.raised_at)),
        esc(&inc.status),
        inc.alert.map(|a| format!(", from <a href=\"/alerts/{a}\">alert {a}</a>")).unwrap_or_default(),
        esc(inc.kind.label()),
        if acts.is_empty() { "<li>Nothing yet.</li>".into() } else { acts },
        if files.is_empty() { "<li>None.</li>".into() } else { files },
        if links.is_empty() { "<li>Nothing.</li>".into() } else { links },
    );
    page(&s, &format!("Incident {id}"), Some(&w), &body)
}

async fn action(State(s): State<Service>, headers: HeaderMap, Path(id): Path<i64>, Form(f): Form<HashMap<String, String>>) -> Response {
    let w = match signed_in(&s, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    if !csrf_ok(&w.csrf, f.get("csrf")) {
        return with_status(page(&s, "Form expired", Some(&w), ""), StatusCode::FORBIDDEN);
    }
    match s.store.incident_action(&w.account, id, f.get("note").map_or("", String::as_str), Timestamp::now()).await {
        Ok(true) => Redirect::to(&format!("/incidents/{id}")).into_response(),
        _ => with_status(page(&s, "Not saved", Some(&w), "<p class=\"err\">Write what was done.</p>"), StatusCode::BAD_REQUEST),
    }
}

async fn evidence(State(s): State<Service>, headers: HeaderMap, Path(id): Path<i64>, mut form: Multipart) -> Response {
    let w = match signed_in(&s, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let (mut csrf, mut note, mut file) = (None, String::new(), None);
    while let Ok(Some(field)) = form.next_field().await {
        match field.name().unwrap_or_default() {
            "csrf" => csrf = field.text().await.ok(),
            "note" => note = field.text().await.unwrap_or_default(),
            "file" => {
                let name = field.file_name().unwrap_or("evidence").to_string();
                let kind = field.content_type().unwrap_or("application/octet-stream").to_string();
                match field.bytes().await {
                    Ok(b) if b.len() <= MAX_EVIDENCE => file = Some((name, kind, b)),
                    _ => {
                        return with_status(
                            page(&s, "Too large", Some(&w), "<p class=\"err\">Evidence files are limited to 20 MB.</p>"),
                            StatusCode::PAYLOAD_TOO_LARGE,
                        );
                    }
                }
            }
            _ => {}
        }
    }
    if !csrf_ok(&w.csrf, csrf.as_ref()) {
        return with_status(page(&s, "Form expired", Some(&w), ""), StatusCode::FORBIDDEN);
    }
    let Some((name, kind, bytes)) = file else {
        return with_status(page(&s, "No file", Some(&w), "<p class=\"err\">Choose a file.</p>"), StatusCode::BAD_REQUEST);
    };
    // Suspected child-abuse imagery is never stored: not even here, not even by the DSL.
    if let Ok(Some((inc, _, _))) = s.store.incident(&w.account, id, Timestamp::now()).await
        && inc.kind == Kind::PossiblyIllegal
        && (kind.starts_with("image/") || kind.starts_with("video/"))
    {
        return with_status(
            page(
                &s,
                "Not stored",
                Some(&w),
                "<p class=\"err\">Images and videos are never stored for a possibly illegal incident. Leave them on the device, preserve it, and record where the material is.</p>",
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
        );
    }
    let sha = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect::<String>();
    if let Err(e) = store_file(&s, &sha, &bytes) {
        return with_status(
            page(&s, "Not stored", Some(&w), &format!("<p class=\"err\">Could not keep the file: {}</p>", esc(&e.to_string()))),
            StatusCode::INTERNAL_SERVER_ERROR,
        );
    }
    let e = NewEvidence { filename: &name, sha256: &sha, size: bytes.len() as i64, note: note.trim() };
    match s.store.add_evidence(&w.account, id, &e, Timestamp::now()).await {
        Ok(true) => Redirect::to(&format!("/incidents/{id}")).into_response(),
        _ => with_status(page(&s, "Not saved", Some(&w), ""), StatusCode::NOT_FOUND),
    }
}

/// Keeps an evidence file (or screenshot) by the SHA-256 of its contents,
/// sealed with the record's key, owner-only (folder 0700, file 0600); an
/// identical file is kept once.
pub(crate) fn store_file(s: &crate::Service, sha: &str, bytes: &[u8]) -> std::io::Result<()> {
    let dir = &s.evidence_dir;
    std::fs::create_dir_all(dir)?;
    haven_store::seal::owner_only(dir, 0o700);
    let path = dir.join(sha);
    if path.exists() {
        return Ok(());
    }
    let sealer = s.store.sealer().map_err(std::io::Error::other)?;
    haven_store::seal::write_owner_only(&path, &sealer.seal_file(bytes))
}

/// An evidence file's contents by SHA-256: opened with the record's key
/// (files kept before encryption are read as they are).
pub fn read_file(s: &crate::Service, sha: &str) -> std::io::Result<Vec<u8>> {
    if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a SHA-256"));
    }
    let kept = std::fs::read(s.evidence_dir.join(sha))?;
    s.store.sealer().map_err(std::io::Error::other)?.open_file(&kept).map_err(std::io::Error::other)
}

/// Seals evidence files kept before encryption at rest, and makes the folder
/// and files owner-only; returns how many were sealed.
pub fn seal_plain_evidence(s: &crate::Service) -> std::io::Result<usize> {
    let dir = &s.evidence_dir;
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(0) };
    haven_store::seal::owner_only(dir, 0o700);
    let sealer = s.store.sealer().map_err(std::io::Error::other)?;
    let mut sealed = 0;
    for entry in entries {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.len() != 64 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        // The start of each file says whether it is sealed; only plain ones are read whole.
        let mut start = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(std::fs::File::open(&path)?, haven_store::seal::FILE_MAGIC.len() as u64), &mut start)?;
        if haven_store::seal::Sealer::is_sealed_file(&start) {
            haven_store::seal::owner_only(&path, 0o600);
            continue;
        }
        let kept = std::fs::read(&path)?;
        haven_store::seal::write_owner_only(&path, &sealer.seal_file(&kept))?;
        sealed += 1;
    }
    Ok(sealed)
}

async fn close(State(s): State<Service>, headers: HeaderMap, Path(id): Path<i64>, Form(f): Form<HashMap<String, String>>) -> Response {
    let w = match signed_in(&s, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    if !csrf_ok(&w.csrf, f.get("csrf")) {
        return with_status(page(&s, "Form expired", Some(&w), ""), StatusCode::FORBIDDEN);
    }
    let g = |k: &str| f.get(k).map_or("", String::as_str);
    let c = Closing { outcome: g("outcome"), feedback: g("feedback"), lessons: g("lessons"), sanction: g("sanction") };
    match s.store.close_incident(&w.account, id, &c, Timestamp::now()).await {
        Ok(true) => Redirect::to(&format!("/incidents/{id}")).into_response(),
        Ok(false) => with_status(page(&s, "Incident not found", Some(&w), ""), StatusCode::NOT_FOUND),
        Err(e) => with_status(page(&s, "Not closed", Some(&w), &format!("<p class=\"err\">{}</p>", esc(&e.to_string()))), StatusCode::BAD_REQUEST),
    }
}

/// The filters of the incident list from a query string.
fn query_of(q: &HashMap<String, String>) -> Result<IncidentQuery, String> {
    let get = |k: &str| q.get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    let status = get("status");
    if status.as_deref().is_some_and(|s| s != "open" && s != "closed") {
        return Err("status must be open or closed".into());
    }
    let kind = match get("kind") {
        Some(k) => Some(Kind::parse(&k).ok_or("kind must be safeguarding, misuse, possibly-illegal or staff")?),
        None => None,
    };
    let limit = match get("limit") {
        Some(l) => l.parse::<i64>().ok().filter(|l| (1..=200).contains(l)).ok_or("limit must be 1 to 200")?,
        None => 50,
    };
    Ok(IncidentQuery { school: get("school"), status, kind, text: get("q"), cursor: get("cursor"), limit })
}

/// The incident list: the caller's incidents, newest first, with filters.
async fn list(State(s): State<Service>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    let w = match signed_in(&s, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    if !w.account.role.sees_incidents() {
        return with_status(page(&s, "Not for your role", Some(&w), "<p>The safeguarding leads work incidents.</p>"), StatusCode::FORBIDDEN);
    }
    let query = match query_of(&q) {
        Ok(q) => q,
        Err(e) => return with_status(page(&s, "Incidents", Some(&w), &format!("<p class=\"err\">{}</p>", esc(&e))), StatusCode::BAD_REQUEST),
    };
    let found = match s.store.incidents(&w.account, &query, Timestamp::now()).await {
        Ok(p) => p,
        Err(StoreError::Invalid(e)) => {
            return with_status(page(&s, "Incidents", Some(&w), &format!("<p class=\"err\">{}</p>", esc(&e))), StatusCode::BAD_REQUEST);
        }
        Err(_) => return crate::unaudited(),
    };
    let rows: String = found
        .incidents
        .iter()
        .map(|i| {
            format!(
                "<tr><td><a href=\"/incidents/{0}\">{0}</a></td><td>{1}</td><td>{2}</td><td>{3}</td><td><a href=\"/incidents/{0}\">{4}</a></td><td>{5}</td><td>{6}</td></tr>",
                i.id,
                esc(&when(&i.raised_at)),
                esc(&i.school),
                esc(i.person.as_deref().unwrap_or("")),
                esc(&i.title),
                esc(i.kind.label()),
                esc(&i.status)
            )
        })
        .collect();
    let v = |k: &str| esc(q.get(k).map_or("", String::as_str));
    let status_opt = |x: &str| format!("<option value=\"{x}\"{}>{x}</option>", if query.status.as_deref() == Some(x) { " selected" } else { "" });
    let kinds: String = Kind::ALL
        .iter()
        .map(|k| format!("<option value=\"{}\"{}>{}</option>", k.as_str(), if query.kind == Some(*k) { " selected" } else { "" }, esc(k.label())))
        .collect();
    let school = if w.account.role.trust_wide() { format!("<label>School <input name=\"school\" value=\"{}\"></label>", v("school")) } else { String::new() };
    let next = found
        .next_cursor
        .as_deref()
        .map(|c| {
            let mut keep: Vec<String> =
                ["status", "kind", "q", "school", "limit"].iter().filter_map(|k| q.get(*k).map(|x| format!("{k}={}", crate::history::enc(x)))).collect();
            keep.push(format!("cursor={}", crate::history::enc(c)));
            format!("<p><a href=\"/incidents?{}\">Older incidents</a></p>", esc(&keep.join("&")))
        })
        .unwrap_or_default();
    let body = format!(
        "<form method=\"get\" action=\"/incidents\">{school}<label>Status <select name=\"status\"><option value=\"\">any</option>{}{}</select></label>\
         <label>Branch <select name=\"kind\"><option value=\"\">any</option>{kinds}</select></label>\
         <label>Title or person <input name=\"q\" value=\"{}\"></label><button>Show</button></form>\
         <p>{} incident(s).</p><table><thead><tr><th>No.</th><th>Raised</th><th>School</th><th>Person</th><th>Title</th><th>Branch</th><th>Status</th></tr></thead>\
         <tbody>{rows}</tbody></table>{next}",
        status_opt("open"),
        status_opt("closed"),
        v("q"),
        found.total
    );
    page(&s, "Incidents", Some(&w), &body)
}

/// `GET /api/v1/incidents?limit=N&cursor=C&status=S&kind=K&q=TEXT`:
/// `{"incidents": [...], "next_cursor": "…"|null, "total": N}`.
async fn api_list(State(s): State<Service>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    let who = match crate::api::staff(&s, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let query = match query_of(&q) {
        Ok(q) => q,
        Err(e) => return crate::api::problem(StatusCode::BAD_REQUEST, &e),
    };
    match s.store.incidents(&who, &query, Timestamp::now()).await {
        Ok(p) => axum::Json(p).into_response(),
        Err(StoreError::Invalid(e)) => crate::api::problem(StatusCode::BAD_REQUEST, &e),
        Err(e) => crate::api::problem(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

async fn branch(State(s): State<Service>, headers: HeaderMap, Path(id): Path<i64>, Form(f): Form<HashMap<String, String>>) -> Response {
    let w = match signed_in(&s, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    if !csrf_ok(&w.csrf, f.get("csrf")) {
        return with_status(page(&s, "Form expired", Some(&w), ""), StatusCode::FORBIDDEN);
    }
    let Some(kind) = f.get("kind").and_then(|k| Kind::parse(k)) else {
        return with_status(page(&s, "Not changed", Some(&w), "<p class=\"err\">Choose a branch.</p>"), StatusCode::BAD_REQUEST);
    };
    match s.store.change_branch(&w.account, id, kind, f.get("reason").map_or("", String::as_str), Timestamp::now()).await {
        Ok(true) => Redirect::to(&format!("/incidents/{id}")).into_response(),
        _ => with_status(page(&s, "Not changed", Some(&w), "<p class=\"err\">Say why the branch changes.</p>"), StatusCode::BAD_REQUEST),
    }
}

async fn link(State(s): State<Service>, headers: HeaderMap, Path(id): Path<i64>, Form(f): Form<HashMap<String, String>>) -> Response {
    let w = match signed_in(&s, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    if !csrf_ok(&w.csrf, f.get("csrf")) {
        return with_status(page(&s, "Form expired", Some(&w), ""), StatusCode::FORBIDDEN);
    }
    let g = |k: &str| f.get(k).map_or("", String::as_str);
    match s.store.link_incident(&w.account, id, g("kind"), g("target"), Timestamp::now()).await {
        Ok(true) => Redirect::to(&format!("/incidents/{id}")).into_response(),
        _ => with_status(
            page(
                &s,
                "Not linked",
                Some(&w),
                "<p class=\"err\">Link an alert or incident you may see by its number, or a person of this school as school/login.</p>",
            ),
            StatusCode::BAD_REQUEST,
        ),
    }
}

/// The image kinds shown in the browser, by their first bytes (never by
/// the uploaded name or type, and never SVG, which can carry script).
fn image_type(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        Some("image/jpeg")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if bytes.len() > 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

/// Whether bytes look like a picture or a film of any kind, shown or not.
fn looks_visual(bytes: &[u8], filename: &str) -> bool {
    let lower = filename.to_lowercase();
    image_type(bytes).is_some()
        || [".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".heic", ".svg", ".mp4", ".mov", ".avi", ".webm", ".mkv"]
            .iter()
            .any(|e| lower.ends_with(e))
        || bytes.get(4..8) == Some(b"ftyp")
}

/// An evidence file: opened, checked against its SHA-256, and shown inline
/// only when it is a plain image and the incident is not possibly illegal;
/// anything else is a download. For a possibly illegal incident, a picture
/// or film is refused outright, to everyone: such material is never shown
/// or copied again (making a copy is itself an offence; the police take it
/// from the device), and the upload refuses them, so only a file added
/// before the incident's branch changed could be one. Every open and
/// refusal is audited.
async fn open_evidence(State(s): State<Service>, headers: HeaderMap, Path((id, n)): Path<(i64, i64)>) -> Response {
    let w = match signed_in(&s, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let now = Timestamp::now();
    let Ok(Some((inc, _, evidence))) = s.store.incident(&w.account, id, now).await else {
        return with_status(page(&s, "Incident not found", Some(&w), "<p>There is no such incident that you may see.</p>"), StatusCode::NOT_FOUND);
    };
    let Some(e) = evidence.into_iter().find(|e| e.id == n) else {
        return with_status(page(&s, "Not found", Some(&w), "<p>No such evidence on this incident.</p>"), StatusCode::NOT_FOUND);
    };
    let actor = format!("account:{}", w.account.id);
    let object = format!("incident:{id}");
    let bytes = match read_file(&s, &e.sha256) {
        Ok(b) => b,
        Err(err) => {
            tracing::warn!(incident = id, evidence = n, error = %err, "evidence file could not be read");
            return with_status(page(&s, "Not available", Some(&w), "<p class=\"err\">The file could not be read.</p>"), StatusCode::INTERNAL_SERVER_ERROR);
        }
    };
    let sha = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect::<String>();
    if sha != e.sha256 {
        let _ = s.store.audit(now, &actor, "incident.evidence.mismatch", &object, &e.sha256).await;
        return with_status(
            page(
                &s,
                "Changed",
                Some(&w),
                "<p class=\"err\">This file no longer matches the SHA-256 recorded when it was added; it is not served. Tell the trust.</p>",
            ),
            StatusCode::CONFLICT,
        );
    }
    let illegal = inc.kind == Kind::PossiblyIllegal;
    if illegal && looks_visual(&bytes, &e.filename) {
        if s.store.audit(now, &actor, "incident.evidence.refused", &object, &e.sha256).await.is_err() {
            return crate::unaudited();
        }
        return with_status(
            page(
                &s,
                "Not shown",
                Some(&w),
                "<p class=\"err\">Pictures and films are never shown or downloaded for a possibly illegal incident. Leave the material to the police; record where it is.</p>",
            ),
            StatusCode::FORBIDDEN,
        );
    }
    let inline = if illegal { None } else { image_type(&bytes) };
    if s.store
        .audit(now, &actor, "incident.evidence.read", &object, &format!("{} {}", e.sha256, if inline.is_some() { "inline" } else { "download" }))
        .await
        .is_err()
    {
        return crate::unaudited();
    }
    // A name safe in a header: letters, digits and a few marks.
    let name: String = e.filename.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' }).collect();
    let (kind, disposition) = match inline {
        Some(t) => (t, format!("inline; filename=\"{name}\"")),
        None => ("application/octet-stream", format!("attachment; filename=\"{name}\"")),
    };
    (
        [
            (axum::http::header::CONTENT_TYPE, kind.to_string()),
            (axum::http::header::CONTENT_DISPOSITION, disposition),
            (axum::http::header::CACHE_CONTROL, "no-store".to_string()),
            (axum::http::header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
            (axum::http::HeaderName::from_static("x-evidence-sha256"), e.sha256.clone()),
        ],
        bytes,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_branch_follows_the_concern() {
        assert_eq!(branch_for("Vulnerable person", 5), Kind::Safeguarding, "a pupil at risk of suicide is not a misuse case");
        assert!(!Kind::Safeguarding.steps(false).iter().any(|s| s.contains("sanction")));
        assert!(Kind::Misuse.steps(false).iter().any(|s| s.contains("sanctions")));
        for c in ["Bullying/Violence", "Grooming", "Sexual content", "Oversharer", "General risk", "Terrorism/Extremism", "something new"] {
            assert_eq!(branch_for(c, 3), Kind::Safeguarding, "{c}");
        }
        assert_eq!(branch_for("Offensive user", 3), Kind::Misuse);
        assert_eq!(branch_for("Sexual content", 4), Kind::PossiblyIllegal, "the IWF's list raises level 4");
        assert_eq!(branch_for("Terrorism/Extremism", 4), Kind::PossiblyIllegal);
        assert_eq!(branch_for("Grooming", 5), Kind::PossiblyIllegal);
        assert_eq!(Kind::parse("other"), Some(Kind::Safeguarding), "incidents from before read as safeguarding");
    }

    #[test]
    fn only_plain_images_by_their_bytes() {
        assert_eq!(image_type(b"GIF89a...."), Some("image/gif"));
        assert_eq!(image_type(b"<svg onload=alert(1)>"), None);
        assert!(looks_visual(b"plain", "clip.MP4") && !looks_visual(b"chat log", "log.txt"));
    }

    #[tokio::test]
    async fn evidence_is_sealed_at_rest_and_plain_files_from_before_are_sealed_on_start() {
        for (store, dir) in haven_store::testing::stores().await {
            let folder = tempfile::tempdir().unwrap();
            let mut s = crate::Service::new(store.clone(), &haven_policy::PolicySet::default());
            s.evidence_dir = folder.path().join("evidence");
            let words = b"the chat log the pupil showed the DSL";
            let sha = Sha256::digest(words).iter().map(|b| format!("{b:02x}")).collect::<String>();
            store_file(&s, &sha, words).unwrap();
            let on_disk = std::fs::read(s.evidence_dir.join(&sha)).unwrap();
            assert!(!on_disk.windows(8).any(|w| w == b"chat log"), "sealed on disk");
            assert_eq!(read_file(&s, &sha).unwrap(), words);
            // A file kept before encryption: still read, and sealed on start.
            let old = b"a note kept before encryption at rest";
            let old_sha = Sha256::digest(old).iter().map(|b| format!("{b:02x}")).collect::<String>();
            std::fs::write(s.evidence_dir.join(&old_sha), old).unwrap();
            assert_eq!(read_file(&s, &old_sha).unwrap(), old);
            assert_eq!(seal_plain_evidence(&s).unwrap(), 1);
            assert_eq!(seal_plain_evidence(&s).unwrap(), 0, "once");
            assert!(!std::fs::read(s.evidence_dir.join(&old_sha)).unwrap().windows(11).any(|w| w == b"before encr"));
            assert_eq!(read_file(&s, &old_sha).unwrap(), old);
            assert!(read_file(&s, "../haven.db").is_err(), "only SHA-256 names");
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                assert_eq!(std::fs::metadata(&s.evidence_dir).unwrap().permissions().mode() & 0o777, 0o700);
                assert_eq!(std::fs::metadata(s.evidence_dir.join(&old_sha)).unwrap().permissions().mode() & 0o777, 0o600);
            }
            drop(dir);
            store.close().await;
        }
    }
}
