//! The trust's own monitoring phrases in the browser (requirements M09):
//! safeguarding leads add a phrase pupils use, or exclude one that keeps
//! raising false alarms, always with a reason; every change is in the audit
//! log and in force for the next event.

use std::collections::HashMap;

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use haven_store::Role;
use haven_store::lexicon::NewEntry;
use haven_store::people::Account;
use haven_textscan::{Concern, Lexicon};
use jiff::Timestamp;

use crate::Service;
use haven_store::sessions::Session;

use crate::web::{csrf_ok, esc, page, signed_in, when, with_status};

/// The lexicon routes.
pub fn routes() -> axum::Router<Service> {
    axum::Router::new().route("/admin/lexicon", get(show).post(add)).route("/admin/lexicon/remove", post(remove)).route("/admin/lexicon/try", post(try_text))
}

/// Who decides what monitoring looks for: the safeguarding leads.
fn may_edit(who: &Account) -> bool {
    matches!(who.role, Role::Dsl | Role::DeputyDsl | Role::TrustSafeguardingLead)
}

const WEIGHTS: [(u8, &str); 5] = [
    (1, "1 — mild: counts only with other signs"),
    (2, "2 — low"),
    (3, "3 — clear: the category's usual level"),
    (4, "4 — serious"),
    (5, "5 — threat to life"),
];

async fn editor(s: &Service, headers: &HeaderMap) -> Result<Session, Response> {
    let w = signed_in(s, headers).await?;
    if !may_edit(&w.account) {
        let body = "<p>The DSL, deputy DSLs and the trust's safeguarding lead decide what monitoring looks for.</p>";
        return Err(with_status(page(s, "Not for your role", Some(&w), body), StatusCode::FORBIDDEN));
    }
    Ok(w)
}

/// A form from a safeguarding lead, carrying their session's CSRF token.
async fn posted_by_editor(s: &Service, headers: &HeaderMap, f: &HashMap<String, String>) -> Result<Session, Response> {
    let w = editor(s, headers).await?;
    if !csrf_ok(&w.csrf, f.get("csrf")) {
        return Err(with_status(page(s, "Form expired", Some(&w), ""), StatusCode::FORBIDDEN));
    }
    Ok(w)
}

async fn show(State(s): State<Service>, headers: HeaderMap) -> Response {
    let w = match editor(&s, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    render(&s, &w, "", "").await
}

async fn render(s: &Service, w: &Session, notice: &str, tried: &str) -> Response {
    let csrf = esc(&w.csrf);
    let entries = s.store.lexicon_entries().await.unwrap_or_default();
    let (live, ended): (Vec<_>, Vec<_>) = entries.into_iter().partition(|e| e.removed.is_none());
    let category = |e: &haven_store::lexicon::LexiconEntry| match &e.category {
        Some(c) => Concern::parse(c).map_or(c.clone(), |c| c.name().to_string()),
        None => "Excluded: never evidence".into(),
    };
    let rows: String = live
        .iter()
        .map(|e| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} {}</td><td><form method=\"post\" action=\"/admin/lexicon/remove\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"id\" value=\"{}\">\
                 <input name=\"reason\" placeholder=\"why remove it\" required><button>Remove</button></form></td></tr>",
                esc(&e.phrase),
                esc(&category(e)),
                e.weight.map_or(String::new(), |w| w.to_string()),
                esc(&e.reason),
                esc(&e.added_by),
                esc(&when(&e.added_at.to_string())),
                e.id
            )
        })
        .collect();
    let history: String = ended
        .iter()
        .filter_map(|e| {
            let r = e.removed.as_ref()?;
            Some(format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} {}: {}</td></tr>",
                esc(&e.phrase),
                esc(&category(e)),
                esc(&e.reason),
                esc(&r.by),
                esc(&when(&r.at.to_string())),
                esc(&r.reason)
            ))
        })
        .collect();
    let categories: String =
        Concern::ALL.iter().filter(|c| **c != Concern::Oversharer).map(|c| format!("<option value=\"{}\">{}</option>", c.key(), esc(c.name()))).collect();
    let weights: String = WEIGHTS.iter().map(|(w, l)| format!("<option value=\"{w}\"{}>{}</option>", if *w == 3 { " selected" } else { "" }, esc(l))).collect();
    let body = format!(
        "{notice}<p>Haven looks for its own lists of phrases in what pupils type, search and see. Add a phrase your pupils use \
         (local slang for self-harm, a nickname used to bully someone), or exclude one that keeps raising false alarms \
         (a street name, a lesson topic). Spelling tricks are handled for you: <q>k1ll</q>, <q>k i l l</q> and <q>kiiill</q> all \
         match <q>kill</q>; put <code>*</code> at either end to match part of a word. Every change needs a reason, is kept \
         in the audit log and applies to the next event.</p>\
         <h2>In force ({})</h2><table><thead><tr><th>Phrase</th><th>Category</th><th>Weight</th><th>Why</th><th>Added</th><th></th></tr></thead>\
         <tbody>{rows}</tbody></table>\
         <h2>Add a phrase</h2><form method=\"post\" action=\"/admin/lexicon\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <input type=\"hidden\" name=\"kind\" value=\"phrase\"><label>Phrase <input name=\"phrase\" required maxlength=\"200\"></label>\
         <label>Category <select name=\"category\">{categories}</select></label><label>Weight <select name=\"weight\">{weights}</select></label>\
         <label>Why <input name=\"reason\" required maxlength=\"500\" placeholder=\"Year 9 slang for a fight after school\"></label><button>Add</button></form>\
         <h2>Exclude a phrase</h2><form method=\"post\" action=\"/admin/lexicon\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <input type=\"hidden\" name=\"kind\" value=\"exclude\"><label>Phrase <input name=\"phrase\" required maxlength=\"200\"></label>\
         <label>Why <input name=\"reason\" required maxlength=\"500\" placeholder=\"the road our school is on\"></label><button>Exclude</button></form>\
         <h2>Try a sentence</h2><p>See what Haven would find in a sentence now (nothing is stored).</p>\
         <form method=\"post\" action=\"/admin/lexicon/try\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <label>Sentence <input name=\"text\" required maxlength=\"500\"></label><button>Try</button></form>{tried}\
         <h2>Removed ({})</h2><table><thead><tr><th>Phrase</th><th>Category</th><th>Why added</th><th>Removed</th></tr></thead><tbody>{history}</tbody></table>",
        live.len(),
        ended.len()
    );
    page(s, "Monitoring phrases", Some(w), &body)
}

async fn add(State(s): State<Service>, headers: HeaderMap, Form(f): Form<HashMap<String, String>>) -> Response {
    let w = match posted_by_editor(&s, &headers, &f).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let field = |k: &str| f.get(k).map(|v| v.trim()).unwrap_or_default();
    let (phrase, reason) = (field("phrase"), field("reason"));
    let entry = if field("kind") == "exclude" {
        NewEntry::Exclusion
    } else {
        NewEntry::Phrase { category: field("category"), weight: field("weight").parse().unwrap_or(0) }
    };
    // Checked as a lexicon file is, so a phrase that would match everything
    // or a category that does not exist is refused with the reason.
    let checked = match entry {
        NewEntry::Exclusion => Lexicon::from_entries("record", [], [(phrase, reason)]),
        NewEntry::Phrase { category, weight } => Lexicon::from_entries("record", [(category, phrase, weight)], []),
    };
    if let Err(e) = checked {
        return refused(&s, &w, "Not added", &e.to_string()).await;
    }
    let actor = format!("account:{}", w.account.id);
    let now = Timestamp::now();
    // The entry names the person (their e-mail) for whoever reads the list
    // later; the audit log keeps the account id.
    let id = match s.store.add_lexicon_entry(entry, phrase, reason, &w.account.email, now).await {
        Ok(id) => id,
        Err(e) => return refused(&s, &w, "Not added", &e.to_string()).await,
    };
    let (action, detail) = match entry {
        NewEntry::Exclusion => ("lexicon.exclude", format!("{phrase:?}: {reason}")),
        NewEntry::Phrase { category, weight } => ("lexicon.add", format!("{category} {phrase:?} weight {weight}: {reason}")),
    };
    let _ = s.store.audit(now, &actor, action, &format!("lexicon:{id}"), &detail).await;
    match s.put_record_lexicon_in_force().await {
        Ok(()) => Redirect::to("/admin/lexicon").into_response(),
        Err(e) => refused(&s, &w, "Saved, but not yet in force", &e.to_string()).await,
    }
}

async fn remove(State(s): State<Service>, headers: HeaderMap, Form(f): Form<HashMap<String, String>>) -> Response {
    let w = match posted_by_editor(&s, &headers, &f).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let Some(id) = f.get("id").and_then(|i| i.parse::<i64>().ok()) else { return Redirect::to("/admin/lexicon").into_response() };
    let reason = f.get("reason").map(|r| r.trim()).unwrap_or_default();
    let actor = format!("account:{}", w.account.id);
    let now = Timestamp::now();
    match s.store.remove_lexicon_entry(id, reason, &w.account.email, now).await {
        Ok(true) => {
            let _ = s.store.audit(now, &actor, "lexicon.remove", &format!("lexicon:{id}"), reason).await;
            if let Err(e) = s.put_record_lexicon_in_force().await {
                return refused(&s, &w, "Removed, but not yet in force", &e.to_string()).await;
            }
            Redirect::to("/admin/lexicon").into_response()
        }
        Ok(false) => Redirect::to("/admin/lexicon").into_response(),
        Err(e) => refused(&s, &w, "Not removed", &e.to_string()).await,
    }
}

async fn try_text(State(s): State<Service>, headers: HeaderMap, Form(f): Form<HashMap<String, String>>) -> Response {
    let w = match posted_by_editor(&s, &headers, &f).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let text: String = f.get("text").map(|t| t.chars().take(500).collect()).unwrap_or_default();
    let found = s.settings().classifier.classify(&text);
    let tried = format!("<p class=\"tried\"><strong>{}</strong></p>", esc(&found.explanation));
    render(&s, &w, "", &tried).await
}

/// The page again, saying what went wrong and how to put it right.
async fn refused(s: &Service, w: &Session, what: &str, why: &str) -> Response {
    with_status(render(s, w, &format!("<p class=\"err\">{what}: {}</p>", esc(why)), "").await, StatusCode::BAD_REQUEST)
}
