//! A person's chronology page (`/people/{school}/{person}`): who they are
//! (name, year, form and groups from the MIS), a timeline drawn on the
//! server as inline SVG (no script: the CSP allows none), and the same
//! entries as a table, which is the timeline's text alternative. Filters by
//! kind and date, and pages back in time with the store's cursor.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use haven_store::StoreError;
use haven_store::chronology::{Chronology, ChronologyEntry, ChronologyQuery, EntryKind, MAX_LIMIT};
use jiff::Timestamp;

use crate::Service;
use crate::web::{esc, level, page, signed_in, when, with_status};

/// Entries on one page of the web view unless `limit` says otherwise.
pub const PAGE: i64 = 100;

/// A date (`2026-11-02`, the start of that day in London) or an RFC 3339
/// time; `end` makes a bare date mean the end of that day, so a range
/// "to 2026-11-09" includes the 9th.
fn moment(s: &str, end: bool) -> Option<Timestamp> {
    if let Ok(t) = s.parse::<Timestamp>() {
        return Some(t);
    }
    let day: jiff::civil::Date = s.parse().ok()?;
    let day = if end { day.tomorrow().ok()? } else { day };
    day.to_zoned(haven_policy::schedule::london_tz()).ok().map(|z| z.timestamp())
}

/// The query a request asks for: `kind` (one or more, comma-separated),
/// `from`, `to`, `before`, `limit`.
pub fn query_of(school: &str, person: &str, q: &HashMap<String, String>, default_limit: i64) -> Result<ChronologyQuery, String> {
    let get = |k: &str| q.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let mut kinds = Vec::new();
    for k in get("kind").unwrap_or_default().split(',').map(str::trim).filter(|k| !k.is_empty()) {
        let names: Vec<&str> = EntryKind::ALL.iter().map(|k| k.as_str()).collect();
        kinds.push(EntryKind::parse(k).ok_or_else(|| format!("kind must be one or more of {}", names.join(", ")))?);
    }
    let from = match get("from") {
        Some(f) => Some(moment(f, false).ok_or("from must be a date (2026-11-02) or an RFC 3339 time")?),
        None => None,
    };
    let to = match get("to") {
        Some(t) => Some(moment(t, true).ok_or("to must be a date (2026-11-09) or an RFC 3339 time")?),
        None => None,
    };
    let limit = match get("limit") {
        Some(l) => l.parse::<i64>().ok().filter(|l| (1..=MAX_LIMIT).contains(l)).ok_or(format!("limit must be 1 to {MAX_LIMIT}"))?,
        None => default_limit,
    };
    Ok(ChronologyQuery { school: school.to_string(), person: person.to_string(), kinds, from, to, before: get("before").map(str::to_string), limit })
}

/// Where an entry is shown in full.
fn link(e: &ChronologyEntry) -> Option<String> {
    match e.what {
        EntryKind::Alert => Some(format!("/alerts/{}", e.id)),
        EntryKind::Incident => Some(format!("/incidents/{}", e.id)),
        EntryKind::FilterChange => Some(format!("/filtering/changes/{}", e.id)),
        EntryKind::Report => None,
    }
}

/// Each kind's colour and shape on the timeline; the shape alone tells
/// them apart, so colour is never the only sign.
fn colour(e: &ChronologyEntry) -> &'static str {
    match (e.what, e.level) {
        (EntryKind::Alert, Some(5)) => "#b00020",
        (EntryKind::Alert, Some(4)) => "#d4351c",
        (EntryKind::Alert, Some(3)) => "#b25b00",
        (EntryKind::Alert, _) => "#505a5f",
        (EntryKind::Incident, _) => "#24385b",
        (EntryKind::Report, _) => "#00703c",
        (EntryKind::FilterChange, _) => "#6f3c97",
    }
}

// Narrow enough that its words stay legible when a phone scales it to 330
// pixels; wide enough for three dates along the axis.
const WIDTH: f64 = 480.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 16.0;
const AXIS: f64 = 232.0;

/// The lane an entry is drawn in: alerts by level (5 at the top), then
/// incidents, reports and filtering changes.
fn lane_y(e: &ChronologyEntry) -> f64 {
    match e.what {
        EntryKind::Alert => 20.0 + f64::from(5 - e.level.unwrap_or(1).clamp(1, 5)) * 24.0,
        EntryKind::Incident => 150.0,
        EntryKind::Report => 178.0,
        EntryKind::FilterChange => 206.0,
    }
}

fn day(ms: i64) -> String {
    stamp(ms, "%-d %b %Y")
}

fn stamp(ms: i64, format: &str) -> String {
    Timestamp::from_millisecond(ms).map_or_else(|_| String::new(), |t| t.to_zoned(haven_policy::schedule::london_tz()).strftime(format).to_string())
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The timeline: one mark per entry, placed in time along the x axis over
/// the shown range and in its kind's lane, each with a `<title>` (a tooltip
/// for the mouse); the whole is one image whose label sums it up, and the
/// table below says everything it shows.
pub fn timeline(entries: &[ChronologyEntry]) -> String {
    if entries.is_empty() {
        return String::new();
    }
    let (lo, hi) = entries.iter().fold((i64::MAX, i64::MIN), |(lo, hi), e| (lo.min(e.at_ms), hi.max(e.at_ms)));
    // One instant (or one entry) still gets a day's width, centred.
    let (lo, hi) = if hi - lo < 60_000 { (lo - 43_200_000, hi + 43_200_000) } else { (lo, hi) };
    let span = (hi - lo) as f64;
    let x = |ms: i64| LEFT + (ms - lo) as f64 / span * (WIDTH - LEFT - RIGHT);
    let mut marks = String::new();
    for e in entries {
        let (cx, cy, fill) = (x(e.at_ms), lane_y(e), colour(e));
        let title = format!(
            "{} — {}{}{} ({})",
            when(&e.at),
            e.what.label(),
            e.level.map(|l| format!(" level {l}")).unwrap_or_default(),
            if e.summary.is_empty() { String::new() } else { format!(": {}", e.summary) },
            e.status
        );
        let shape = match e.what {
            EntryKind::Alert => format!("<circle cx=\"{cx:.1}\" cy=\"{cy:.1}\" r=\"6\" fill=\"{fill}\" stroke=\"#fff\" stroke-width=\"1\"/>"),
            EntryKind::Incident => {
                format!("<rect x=\"{:.1}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"{fill}\" stroke=\"#fff\" stroke-width=\"1\"/>", cx - 6.0, cy - 6.0)
            }
            EntryKind::Report => format!(
                "<polygon points=\"{:.1},{:.1} {:.1},{:.1} {:.1},{:.1}\" fill=\"{fill}\" stroke=\"#fff\" stroke-width=\"1\"/>",
                cx,
                cy - 7.0,
                cx + 7.0,
                cy + 6.0,
                cx - 7.0,
                cy + 6.0
            ),
            EntryKind::FilterChange => format!(
                "<polygon points=\"{:.1},{:.1} {:.1},{:.1} {:.1},{:.1} {:.1},{:.1}\" fill=\"{fill}\" stroke=\"#fff\" stroke-width=\"1\"/>",
                cx,
                cy - 7.0,
                cx + 7.0,
                cy,
                cx,
                cy + 7.0,
                cx - 7.0,
                cy
            ),
        };
        marks.push_str(&format!("<g class=\"mark {}\"><title>{}</title>{shape}</g>", e.what.as_str(), esc(&title)));
    }
    let mut grid = String::new();
    for l in (1..=5u8).rev() {
        let y = 20.0 + f64::from(5 - l) * 24.0;
        grid.push_str(&format!(
            "<text x=\"{:.0}\" y=\"{:.1}\" text-anchor=\"end\" font-size=\"13\" fill=\"#333\">Alert L{l}</text>\
             <line x1=\"{LEFT}\" x2=\"{:.0}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#e5e5e5\"/>",
            LEFT - 8.0,
            y + 4.0,
            WIDTH - RIGHT
        ));
    }
    for (name, y) in [("Incident", 150.0), ("Report", 178.0), ("Filtering", 206.0)] {
        grid.push_str(&format!(
            "<text x=\"{:.0}\" y=\"{:.1}\" text-anchor=\"end\" font-size=\"13\" fill=\"#333\">{name}</text>\
             <line x1=\"{LEFT}\" x2=\"{:.0}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#e5e5e5\"/>",
            LEFT - 8.0,
            y + 4.0,
            WIDTH - RIGHT
        ));
    }
    // Over a couple of days the dates alone would repeat: say the time too.
    let tick_format = if hi - lo < 2 * 86_400_000 { "%-d %b %H:%M" } else { "%-d %b %Y" };
    let mut axis = format!("<line x1=\"{LEFT}\" x2=\"{:.0}\" y1=\"{AXIS}\" y2=\"{AXIS}\" stroke=\"#333\"/>", WIDTH - RIGHT);
    for k in 0..=2 {
        let ms = lo + (hi - lo) * k / 2;
        let tx = x(ms);
        let anchor = match k {
            0 => "start",
            2 => "end",
            _ => "middle",
        };
        axis.push_str(&format!(
            "<line x1=\"{tx:.1}\" x2=\"{tx:.1}\" y1=\"{AXIS}\" y2=\"{:.0}\" stroke=\"#333\"/><text x=\"{tx:.1}\" y=\"{:.0}\" text-anchor=\"{anchor}\" font-size=\"13\" fill=\"#333\">{}</text>",
            AXIS + 5.0,
            AXIS + 20.0,
            esc(&stamp(ms, tick_format))
        ));
    }
    let count = |k: EntryKind| entries.iter().filter(|e| e.what == k).count();
    let parts: Vec<String> = [
        (EntryKind::Alert, "alert", "alerts"),
        (EntryKind::Incident, "incident", "incidents"),
        (EntryKind::Report, "report", "reports"),
        (EntryKind::FilterChange, "filtering change", "filtering changes"),
    ]
    .into_iter()
    .filter(|(k, _, _)| count(*k) > 0)
    .map(|(k, one, many)| plural(count(k), one, many))
    .collect();
    let top = entries.iter().filter_map(|e| e.level).max().map(|l| format!("; highest alert level {l}")).unwrap_or_default();
    let label = format!(
        "Timeline of {} from {} to {}: {}{top}. The table below lists them.",
        plural(entries.len(), "entry", "entries"),
        day(lo),
        day(hi),
        parts.join(", ")
    );
    format!(
        "<div class=\"timeline\"><svg role=\"img\" aria-label=\"{}\" viewBox=\"0 0 {WIDTH:.0} 260\" width=\"100%\" preserveAspectRatio=\"xMidYMid meet\" \
         xmlns=\"http://www.w3.org/2000/svg\" font-family=\"system-ui, sans-serif\">{grid}{axis}{marks}</svg>\
         <p>Circles are alerts, higher for a higher level (and darker red); squares incidents; triangles reports; diamonds filtering changes. \
         Hover over a mark for its details.</p></div>",
        esc(&label)
    )
}

/// The table: the timeline's text alternative, with each entry's steps.
fn table(entries: &[ChronologyEntry]) -> String {
    let rows: String = entries
        .iter()
        .map(|e| {
            let summary = match link(e) {
                Some(href) => format!("<a href=\"{href}\">{}</a>", esc(&e.summary)),
                None => esc(&e.summary),
            };
            let mut notes = String::new();
            if let Some(d) = e.detail.as_deref().filter(|d| !d.is_empty()) {
                notes.push_str(&format!("<p class=\"note\">{}</p>", esc(d)));
            }
            if !e.actions.is_empty() {
                let items: String = e
                    .actions
                    .iter()
                    .map(|a| {
                        format!(
                            "<li>{} · {}{}: {}</li>",
                            esc(&when(&a.at)),
                            esc(&a.kind),
                            a.by.as_deref().map(|b| format!(" by {}", esc(b))).unwrap_or_default(),
                            esc(&a.note)
                        )
                    })
                    .collect();
                notes.push_str(&format!("<ul>{items}</ul>"));
            }
            format!(
                "<tr><td>{}</td><td>{}</td><td>{summary}</td><td>{}</td><td>{}</td><td>{notes}</td></tr>",
                esc(&when(&e.at)),
                esc(e.what.label()),
                e.level.map(level).unwrap_or_default(),
                esc(&e.status)
            )
        })
        .collect();
    format!(
        "<table><caption class=\"vh\">The chronology, newest first</caption><thead><tr><th>When</th><th>What</th><th>Summary</th><th>Level</th><th>Status</th><th>Notes and steps</th></tr></thead>\
         <tbody>{rows}</tbody></table>"
    )
}

/// `?k=v&…` from the pairs whose value is not empty.
fn qs(pairs: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> =
        pairs.iter().filter_map(|(k, v)| v.as_ref().filter(|v| !v.is_empty()).map(|v| format!("{k}={}", crate::history::enc(v)))).collect();
    if parts.is_empty() { String::new() } else { format!("?{}", parts.join("&amp;")) }
}

/// The person's details from the MIS.
fn who_they_are(c: &Chronology, school_name: &str) -> String {
    let p = &c.person;
    let mut rows = vec![("Name", p.name.clone().unwrap_or_else(|| "Not in the MIS".into())), ("Login", p.login.clone()), ("School", school_name.to_string())];
    if let Some(y) = &p.year {
        rows.push(("Year", y.clone()));
    }
    if let Some(f) = &p.form {
        rows.push(("Form", f.clone()));
    }
    if !p.groups.is_empty() {
        rows.push(("Groups", p.groups.join(", ")));
    }
    if p.kind.as_deref() == Some("staff") {
        rows.push(("Role", "Member of staff".into()));
    }
    if p.left {
        rows.push(("Left", "No longer in the MIS".into()));
    }
    let items: String = rows.iter().map(|(k, v)| format!("<dt>{k}</dt><dd>{}</dd>", esc(v))).collect();
    format!("<dl class=\"person\">{items}</dl>")
}

/// `GET /people/{school}/{person}`.
pub(crate) async fn show(
    State(s): State<Service>,
    headers: HeaderMap,
    Path((school, person)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let w = match signed_in(&s, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let query = match query_of(&school, &person, &q, PAGE) {
        Ok(query) => query,
        Err(e) => return with_status(page(&s, "Not shown", Some(&w), &format!("<p class=\"err\">{}</p>", esc(&e))), StatusCode::BAD_REQUEST),
    };
    let c = match s.store.chronology_page(&w.account, &query, Timestamp::now()).await {
        Ok(Some(c)) => c,
        Ok(None) => return with_status(page(&s, "Not available", Some(&w), "<p>You may not see this pupil's record.</p>"), StatusCode::FORBIDDEN),
        Err(StoreError::Invalid(e)) => {
            return with_status(page(&s, "Not shown", Some(&w), &format!("<p class=\"err\">{}</p>", esc(&e))), StatusCode::BAD_REQUEST);
        }
        Err(e) => {
            tracing::warn!(error = %e, "chronology: the record could not be read");
            return with_status(page(&s, "Not read", Some(&w), "<p>The record could not be read just now; try again.</p>"), StatusCode::SERVICE_UNAVAILABLE);
        }
    };
    let here = format!("/people/{}/{}", crate::history::enc(&school), crate::history::enc(&person));
    let kind_param = (!query.kinds.is_empty()).then(|| query.kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(","));
    let (from, to) = (q.get("from").cloned(), q.get("to").cloned());
    let limit = q.get("limit").cloned();
    let mut filters = vec![(None, "Everything")];
    filters.extend(EntryKind::ALL.iter().map(|k| {
        (
            Some(k.as_str().to_string()),
            match k {
                EntryKind::Alert => "Alerts",
                EntryKind::Incident => "Incidents",
                EntryKind::Report => "Reports",
                EntryKind::FilterChange => "Filtering changes",
            },
        )
    }));
    let filter_links: Vec<String> = filters
        .into_iter()
        .map(|(k, name)| {
            let current = if k == kind_param { " aria-current=\"page\"" } else { "" };
            format!("<a href=\"{here}{}\"{current}>{name}</a>", qs(&[("kind", k), ("from", from.clone()), ("to", to.clone()), ("limit", limit.clone())]))
        })
        .collect();
    let range = format!(
        "<form method=\"get\" action=\"{here}\" class=\"range\">{}<label>From <input type=\"date\" name=\"from\" value=\"{}\"></label> \
         <label>To <input type=\"date\" name=\"to\" value=\"{}\"></label> <button>Show</button></form>",
        kind_param.as_ref().map(|k| format!("<input type=\"hidden\" name=\"kind\" value=\"{}\">", esc(k))).unwrap_or_default(),
        esc(from.as_deref().unwrap_or_default()),
        esc(to.as_deref().unwrap_or_default())
    );
    let mut paging = Vec::new();
    if query.before.is_some() {
        paging.push(format!(
            "<a href=\"{here}{}\">Newest</a>",
            qs(&[("kind", kind_param.clone()), ("from", from.clone()), ("to", to.clone()), ("limit", limit.clone())])
        ));
    }
    if let Some(b) = &c.next_before {
        paging.push(format!(
            "<a href=\"{here}{}\" rel=\"next\">Older entries</a>",
            qs(&[("kind", kind_param.clone()), ("from", from.clone()), ("to", to.clone()), ("limit", limit.clone()), ("before", Some(b.clone()))])
        ));
    }
    let paging = if paging.is_empty() { String::new() } else { format!("<nav aria-label=\"Pages\" class=\"paging\"><p>{}</p></nav>", paging.join(" · ")) };
    let school_name = crate::people::school_name(&s, &school).await;
    let body = if c.entries.is_empty() {
        "<p>Nothing in the record about them here matches.</p>".to_string()
    } else {
        format!("<h2>Timeline</h2>{}<h2>Entries</h2>{}", timeline(&c.entries), table(&c.entries))
    };
    page(
        &s,
        &format!("Chronology: {}", crate::people::title(&s, &school, &person).await),
        Some(&w),
        &format!(
            "{}<p>Every alert, incident, report and filtering change about {} at {}, newest first.</p>\
             <nav aria-label=\"Kinds of entry\" class=\"filters\"><p>Show: {}</p></nav>{range}{body}{paging}\
             <p><a href=\"/history?subject=person&amp;id={}&amp;school={}\">Their web and DNS history</a></p>",
            who_they_are(&c, &school_name),
            crate::people::label(&s, &school, &person).await,
            esc(&school_name),
            filter_links.join(" · "),
            crate::history::enc(&person),
            crate::history::enc(&school)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(what: EntryKind, id: i64, at: &str, level: Option<u8>) -> ChronologyEntry {
        let t: Timestamp = at.parse().unwrap();
        ChronologyEntry {
            at: at.into(),
            what,
            id,
            summary: "Self-harm <b>".into(),
            level,
            status: "open".into(),
            detail: None,
            actions: Vec::new(),
            at_ms: t.as_millisecond(),
        }
    }

    #[test]
    fn the_timeline_is_one_labelled_image_with_a_titled_mark_per_entry() {
        let entries = vec![
            entry(EntryKind::Alert, 1, "2026-11-09T10:00:00Z", Some(5)),
            entry(EntryKind::Incident, 2, "2026-11-05T10:00:00Z", None),
            entry(EntryKind::Report, 3, "2026-11-03T10:00:00Z", None),
            entry(EntryKind::FilterChange, 4, "2026-11-02T10:00:00Z", None),
            entry(EntryKind::Alert, 5, "2026-11-02T10:00:00Z", Some(1)),
        ];
        let svg = timeline(&entries);
        assert!(svg.contains("role=\"img\"") && svg.contains("viewBox=\"0 0 480 260\"") && svg.contains("width=\"100%\""), "{svg}");
        assert!(svg.contains(
            "aria-label=\"Timeline of 5 entries from 2 Nov 2026 to 9 Nov 2026: 2 alerts, 1 incident, 1 report, 1 filtering change; highest alert level 5."
        ));
        assert_eq!(svg.matches("<title>").count(), 5);
        assert!(svg.contains("Self-harm &lt;b&gt;") && !svg.contains("<b>"), "escaped");
        // Placed in time: the newest at the right edge, the oldest at the left.
        assert!(svg.contains("<circle cx=\"464.0\" cy=\"20.0\"") && svg.contains("<circle cx=\"70.0\" cy=\"116.0\""), "{svg}");
        assert!(timeline(&[]).is_empty());
        let one = timeline(&entries[..1]);
        assert!(one.contains("<circle cx=\"267.0\""), "a single entry sits in the middle: {one}");
    }

    #[test]
    fn queries_read_kinds_dates_and_limits() {
        let q: HashMap<String, String> =
            [("kind", "alert,report"), ("from", "2026-11-02"), ("to", "2026-11-09"), ("limit", "20")].into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        let c = query_of("oak", "amy", &q, PAGE).unwrap();
        assert_eq!(c.kinds, vec![EntryKind::Alert, EntryKind::Report]);
        assert_eq!(c.from.unwrap().to_string(), "2026-11-02T00:00:00Z");
        assert_eq!(c.to.unwrap().to_string(), "2026-11-10T00:00:00Z", "to a day includes that day");
        assert_eq!(c.limit, 20);
        let bad = |k: &str, v: &str| query_of("oak", "amy", &[(k.to_string(), v.to_string())].into_iter().collect(), PAGE).is_err();
        assert!(bad("kind", "gossip") && bad("from", "yesterday") && bad("limit", "0") && bad("limit", "501"));
    }
}
