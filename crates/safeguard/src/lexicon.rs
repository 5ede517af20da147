//! The trust's own monitoring phrases in the browser (requirements M09):
//! safeguarding leads add a phrase pupils use, exclude one that keeps
//! raising false alarms, or teach by example ("treat messages like this as
//! …"), always with a reason; every change is in the audit log and in force
//! for the next event.

use std::collections::HashMap;

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use haven_store::Role;
use haven_store::lexicon::{EntryKind, LexiconEntry, NewEntry};
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

const LEVELS: [(u8, &str); 5] = [
    (1, "1 — logged only"),
    (2, "2 — low: looked at in the queue"),
    (3, "3 — clear concern"),
    (4, "4 — serious: disclosure, grooming, self-harm"),
    (5, "5 — threat to life: call out now"),
];

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
    let (examples, live): (Vec<_>, Vec<_>) = live.into_iter().partition(|e| e.kind == EntryKind::Example);
    let category = |e: &LexiconEntry| match (&e.category, e.kind) {
        (Some(c), _) => Concern::parse(c).map_or(c.clone(), |c| c.name().to_string()),
        (None, EntryKind::Example) => "Not a concern".into(),
        (None, _) => "Excluded: never evidence".into(),
    };
    let treat_as = |e: &LexiconEntry| match e.level {
        Some(l) => format!("{} at level {l}", category(e)),
        None => category(e),
    };
    let remove_form = |id: i64| {
        format!(
            "<form method=\"post\" action=\"/admin/lexicon/remove\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <input type=\"hidden\" name=\"id\" value=\"{id}\"><input name=\"reason\" placeholder=\"why remove it\" aria-label=\"Why remove it\" required><button>Remove</button></form>"
        )
    };
    let example_rows: String = examples
        .iter()
        .map(|e| {
            format!(
                "<tr class=\"example\"><td>{}</td><td>{}</td><td>{}</td><td>{} {}</td><td>{}</td></tr>",
                esc(&e.phrase),
                esc(&treat_as(e)),
                esc(&e.reason),
                esc(&e.added_by),
                esc(&when(&e.added_at.to_string())),
                remove_form(e.id)
            )
        })
        .collect();
    let rows: String = live
        .iter()
        .map(|e| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} {}</td><td>{}</td></tr>",
                esc(&e.phrase),
                esc(&category(e)),
                e.weight.map_or(String::new(), |w| w.to_string()),
                esc(&e.reason),
                esc(&e.added_by),
                esc(&when(&e.added_at.to_string())),
                remove_form(e.id)
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
                esc(&treat_as(e)),
                esc(&e.reason),
                esc(&r.by),
                esc(&when(&r.at.to_string())),
                esc(&r.reason)
            ))
        })
        .collect();
    let categories: String =
        Concern::ALL.iter().filter(|c| **c != Concern::Oversharer).map(|c| format!("<option value=\"{}\">{}</option>", c.key(), esc(c.name()))).collect();
    let treat: String = format!("{categories}<option value=\"none\">Not a concern</option>");
    let levels: String = LEVELS.iter().map(|(l, t)| format!("<option value=\"{l}\"{}>{}</option>", if *l == 3 { " selected" } else { "" }, esc(t))).collect();
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
         <h2>Example sentences ({})</h2><p>Teach Haven by example: a message very like one of these is treated as it says, \
         whatever its words (\"treat messages like this as …\"). Use it for a disclosure Haven missed, or a harmless message \
         it keeps raising. Examples also teach the trust's own model when it is retrained \
         (<code>haven model retrain --from-record</code>).</p>\
         <table><thead><tr><th>Sentence</th><th>Treat as</th><th>Why</th><th>Added</th><th></th></tr></thead><tbody>{example_rows}</tbody></table>\
         <h2>Add an example sentence</h2><form method=\"post\" action=\"/admin/lexicon\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <input type=\"hidden\" name=\"kind\" value=\"example\"><label>Sentence <textarea name=\"phrase\" required maxlength=\"500\"></textarea></label>\
         <label>Treat messages like this as <select name=\"category\">{treat}</select></label>\
         <label>at level <select name=\"level\">{levels}</select></label>\
         <label>Why <input name=\"reason\" required maxlength=\"500\" placeholder=\"how Year 10 talked about an overdose\"></label><button>Add example</button></form>\
         <h2>Try a sentence</h2><p>See what Haven would find in a sentence now, and what it was close to (nothing is stored).</p>\
         <form method=\"post\" action=\"/admin/lexicon/try\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <label>Sentence <input name=\"text\" required maxlength=\"500\"></label><button>Try</button></form>{tried}\
         <h2>Removed ({})</h2><table><thead><tr><th>Phrase or sentence</th><th>Category</th><th>Why added</th><th>Removed</th></tr></thead><tbody>{history}</tbody></table>",
        live.len(),
        examples.len(),
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
    let entry = match field("kind") {
        "exclude" => NewEntry::Exclusion,
        "example" => match field("category") {
            "none" => NewEntry::Example { category: None, level: 0 },
            c => NewEntry::Example { category: Some(c), level: field("level").parse().unwrap_or(0) },
        },
        _ => NewEntry::Phrase { category: field("category"), weight: field("weight").parse().unwrap_or(0) },
    };
    // Checked as a lexicon file is, so a phrase that would match everything
    // or a category that does not exist is refused with the reason.
    let checked = match entry {
        NewEntry::Exclusion => Lexicon::from_entries("record", [], [(phrase, reason)]).map(drop).map_err(|e| e.to_string()),
        NewEntry::Phrase { category, weight } => Lexicon::from_entries("record", [(category, phrase, weight)], []).map(drop).map_err(|e| e.to_string()),
        NewEntry::Example { category, .. } => example_readable(&s, category, phrase),
    };
    if let Err(e) = checked {
        return refused(&s, &w, "Not added", &e).await;
    }
    let actor = format!("account:{}", w.account.id);
    let now = Timestamp::now();
    // The entry names the person (their e-mail) for whoever reads the list
    // later; the audit log keeps the account id.
    let id = match s.store.add_lexicon_entry(entry, phrase, reason, &w.account.email, now).await {
        Ok(id) => id,
        Err(e) => return refused(&s, &w, "Not added", &e.to_string()).await,
    };
    // An example sentence may be close to a pupil's own words: the audit
    // log says what it teaches and why, the record keeps the sentence.
    let (action, detail) = match entry {
        NewEntry::Exclusion => ("lexicon.exclude", format!("{phrase:?}: {reason}")),
        NewEntry::Phrase { category, weight } => ("lexicon.add", format!("{category} {phrase:?} weight {weight}: {reason}")),
        NewEntry::Example { category: Some(c), level } => ("lexicon.example", format!("treat as {c} at level {level}: {reason}")),
        NewEntry::Example { category: None, .. } => ("lexicon.example", format!("treat as not a concern: {reason}")),
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
    let settings = s.settings();
    let found = settings.classifier.classify(&text);
    let mut tried = format!("<p class=\"tried\"><strong>{}</strong></p>", esc(&found.explanation));
    if let Some(sem) = &settings.semantic {
        tried += &closeness(sem, &text, &s.store.lexicon_entries().await.unwrap_or_default());
    }
    render(&s, &w, "", &tried).await
}

/// What a text was close to: the kind of concern the semantic stage reads
/// in it, and the nearest of the DSL's own example sentences.
fn closeness(sem: &haven_textscan::semantic::Semantic, text: &str, entries: &[LexiconEntry]) -> String {
    let mut out = String::from("<ul class=\"close\">");
    match sem.read_closely(text) {
        Some(c) => {
            out += &format!(
                "<li>Close to: <strong>{}</strong> ({}, {}; probability {:.2})</li>",
                esc(&c.close_to),
                esc(&c.kind),
                esc(c.concern.name()),
                c.probability
            )
        }
        None => out += "<li>Close to no kind of concern Haven knows.</li>",
    }
    let v = sem.encoder().embed(text);
    let nearest = entries
        .iter()
        .filter(|e| e.kind == EntryKind::Example && e.removed.is_none())
        .map(|e| (e, cosine(&v, &sem.encoder().embed(&e.phrase))))
        .max_by(|a, b| a.1.total_cmp(&b.1));
    if let Some((e, sim)) = nearest {
        let treat = match (e.category.as_deref().and_then(Concern::parse), e.level) {
            (Some(c), Some(l)) => format!("{} at level {l}", c.name()),
            _ => "not a concern".into(),
        };
        out += &format!("<li>Nearest of your example sentences: <q>{}</q> (treat as {}; similarity {sim:.2})</li>", esc(&e.phrase), esc(&treat));
    }
    out + "</ul>"
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let n = norm(a) * norm(b);
    if n == 0.0 { 0.0 } else { dot / n }
}

/// An example sentence Haven can use: a category that exists (or "none"),
/// and words the semantic stage can read.
fn example_readable(s: &Service, category: Option<&str>, text: &str) -> Result<(), String> {
    if let Some(c) = category
        && Concern::parse(c).is_none()
    {
        return Err(format!("{c:?} is not a category of concern; choose one from the list, or \"Not a concern\""));
    }
    if text.is_empty() {
        return Err("write the example sentence".into());
    }
    if let Some(sem) = &s.settings().semantic
        && sem.encoder().embed(text).iter().all(|x| *x == 0.0)
    {
        return Err("Haven cannot read any word of that sentence; write it as a pupil would, in English words".into());
    }
    Ok(())
}

/// The page again, saying what went wrong and how to put it right.
async fn refused(s: &Service, w: &Session, what: &str, why: &str) -> Response {
    with_status(render(s, w, &format!("<p class=\"err\">{what}: {}</p>", esc(why)), "").await, StatusCode::BAD_REQUEST)
}
