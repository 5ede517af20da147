//! Incident pages: raise one from an alert, follow the flowchart, record
//! actions and evidence (kept by SHA-256), close with the outcome; and a
//! pupil's chronology.

use std::collections::HashMap;

use axum::Form;
use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use haven_store::incidents::{Closing, Kind, NewEvidence, NewIncident};
use jiff::Timestamp;
use sha2::{Digest, Sha256};

use crate::Service;
use crate::web::{csrf_ok, esc, level, page, signed_in, when, with_status};

/// The incident routes.
pub fn routes() -> axum::Router<Service> {
    axum::Router::new()
        .route("/alerts/{id}/incident", post(raise))
        .route("/incidents/{id}", get(show))
        .route("/incidents/{id}/action", post(action))
        .route("/incidents/{id}/evidence", post(evidence))
        .route("/incidents/{id}/close", post(close))
        .route("/people/{school}/{person}", get(chronology))
}

/// Largest evidence file accepted.
const MAX_EVIDENCE: usize = 20 * 1024 * 1024;

/// The form on an alert page that raises an incident.
pub fn raise_form(alert: i64, csrf: &str) -> String {
    format!(
        "<h2>Raise an incident</h2><form method=\"post\" action=\"/alerts/{alert}/incident\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <label>Title <input name=\"title\" required></label>\
         <label>Which applies? <select name=\"kind\"><option value=\"other\">A concern about a pupil</option>\
         <option value=\"possibly-illegal\">Possibly illegal (abuse images, grooming, terrorism, extortion…)</option>\
         <option value=\"staff\">A concern about a member of staff</option></select></label>\
         <label><input type=\"checkbox\" name=\"about_head\" value=\"1\"> It concerns the headteacher</label>\
         <button>Raise incident</button></form>",
        esc(csrf)
    )
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
    let kind = f.get("kind").and_then(|k| Kind::parse(k)).unwrap_or(Kind::Other);
    let title = f.get("title").map_or("", |t| t.trim());
    let a = &detail.alert;
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
    let steps: String = inc.kind.steps(inc.about_head).iter().map(|st| format!("<li>{}</li>", esc(st))).collect();
    // Notes keep their line breaks (lines attached from a person's history are one a line).
    let acts: String =
        actions.iter().map(|a| format!("<li>{} — {}: <span class=\"note\">{}</span></li>", esc(&when(&a.at)), esc(&a.by), esc(&a.note))).collect();
    let files: String = evidence
        .iter()
        .map(|e| {
            format!(
                "<li>{} — {} ({} bytes, SHA-256 <code>{}</code>) by {}: {}</li>",
                esc(&when(&e.at)),
                esc(&e.filename),
                e.size,
                esc(&e.sha256),
                esc(&e.by),
                esc(&e.note)
            )
        })
        .collect();
    let person = inc.person.as_deref().map(|p| format!(" about <a href=\"/people/{}/{}\">{}</a>", esc(&inc.school), esc(p), esc(p))).unwrap_or_default();
    let open = inc.status == "open";
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
        "<p><strong>{}</strong>{person} at {} — raised {}, status <strong>{}</strong>{}.</p>\
         <h2>What to do ({})</h2><ol>{steps}</ol><h2>Actions</h2><ul>{}</ul><h2>Evidence</h2><ul>{}</ul>{forms}",
        esc(&inc.title),
        esc(&inc.school),
        esc(&when(&inc.raised_at)),
        esc(&inc.status),
        inc.alert.map(|a| format!(", from <a href=\"/alerts/{a}\">alert {a}</a>")).unwrap_or_default(),
        esc(inc.kind.as_str()),
        if acts.is_empty() { "<li>Nothing yet.</li>".into() } else { acts },
        if files.is_empty() { "<li>None.</li>".into() } else { files },
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

async fn chronology(State(s): State<Service>, headers: HeaderMap, Path((school, person)): Path<(String, String)>) -> Response {
    let w = match signed_in(&s, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let Ok(Some(entries)) = s.store.chronology(&w.account, &school, &person, Timestamp::now()).await else {
        return with_status(page(&s, "Not available", Some(&w), "<p>You may not see this pupil's record.</p>"), StatusCode::FORBIDDEN);
    };
    let rows: String = entries
        .iter()
        .map(|e| {
            let link = if e.what == "alert" { format!("/alerts/{}", e.id) } else { format!("/incidents/{}", e.id) };
            format!(
                "<tr><td>{}</td><td>{}</td><td><a href=\"{link}\">{}</a></td><td>{}</td><td>{}</td></tr>",
                esc(&when(&e.at)),
                esc(&e.what),
                esc(&e.summary),
                e.level.map(level).unwrap_or_default(),
                esc(&e.status)
            )
        })
        .collect();
    page(
        &s,
        &format!("Chronology: {person}"),
        Some(&w),
        &format!(
            "<p>Every alert and incident about {} at {}, newest first.</p><table><thead><tr><th>When</th><th>What</th><th></th><th>Level</th><th>Status</th></tr></thead><tbody>{rows}</tbody></table>\
             <p><a href=\"/history?subject=person&amp;id={}&amp;school={}\">Their web and DNS history</a></p>",
            esc(&person),
            esc(&school),
            crate::history::enc(&person),
            crate::history::enc(&school)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
