//! A person's, group's or device's web and DNS history for a date range,
//! read from the access logs the DNS filter and the proxy write (through
//! `haven_accesslog::read`, as `haven logs` does), shown as a page or
//! downloaded as CSV, every view and export audited; and a safeguarding
//! lead attaching ticked lines to one of the person's open incidents.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use haven_accesslog::QueryLog;
use haven_store::Role;
use haven_store::people::{Account, School};
use jiff::Timestamp;
use jiff::civil::Date;
use sha2::{Digest, Sha256};

use crate::Service;
use crate::web::{csrf_ok, esc, page, signed_in, with_status};

/// The history routes.
pub fn routes() -> axum::Router<Service> {
    axum::Router::new().route("/history", get(show)).route("/history/attach", post(attach))
}

/// The longest range one view or export covers: a month of a group's
/// browsing is already more than anyone reads, and each view reads the files.
pub const MAX_DAYS: i64 = 31;
/// Lines shown on the page at most; more asks for a narrower range.
pub const PAGE_ROWS: usize = 1_000;
/// Lines in one CSV export at most; more is refused rather than cut short,
/// because a partial export kept as evidence would mislead.
pub const CSV_ROWS: usize = 50_000;
/// Lines attached to an incident at once at most.
pub const MAX_ATTACH: usize = 500;

/// Whose history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// A person, by their login.
    Person,
    /// A group (its id in the config).
    Group,
    /// A device (its name in the log) or a client address.
    Device,
}

impl Subject {
    /// As in the form and the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Person => "person",
            Self::Group => "group",
            Self::Device => "device",
        }
    }

    /// Reads [`as_str`](Self::as_str).
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Person, Self::Group, Self::Device].into_iter().find(|k| k.as_str() == s)
    }
}

/// Who may see whose history. A named pupil's browsing is part of their
/// safeguarding picture, so a person's history is for the roles that read
/// alerts and incidents (DSL, deputy, headteacher, the trust's safeguarding
/// lead). An IT technician troubleshooting the filter ("why is this site
/// blocked for Year 9, or on the library PCs?") needs a group's or a
/// device's history but never a named pupil's, so IT gets those, with names
/// and search terms left out ([`sees_people`]). Teachers, governors and the
/// trust's administrator get none: nothing in their work needs it.
pub fn may_view(role: Role, subject: Subject) -> bool {
    match subject {
        Subject::Person => role.sees_alerts(),
        Subject::Group | Subject::Device => role.sees_alerts() || role.does_it(),
    }
}

/// Whether the role sees who each line was, what they searched for and
/// addresses with their query (which often holds the search): the
/// safeguarding roles. Others see the group, the host and the path.
pub fn sees_people(role: Role) -> bool {
    role.sees_alerts()
}

/// A history asked for, checked: whose, where, when, which logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    /// Whose.
    pub subject: Subject,
    /// The login, group id, or device name or address.
    pub id: String,
    /// The school, or `None` for every school (the trust's roles only).
    pub school: Option<String>,
    /// First day (school time).
    pub from: Date,
    /// Last day, included.
    pub to: Date,
    /// From the start of `from`…
    pub since: Timestamp,
    /// …to the end of `to` (excluded).
    pub until: Timestamp,
    /// DNS questions.
    pub dns: bool,
    /// Web requests through the proxy.
    pub web: bool,
}

impl Ask {
    /// How the audit log names the subject (`person:oak/amy`, `*` for every school).
    pub fn object(&self) -> String {
        format!("{}:{}/{}", self.subject.as_str(), self.school.as_deref().unwrap_or("*"), self.id)
    }

    /// The range and logs, for the audit log and headings.
    pub fn range(&self) -> String {
        let kinds = match (self.dns, self.web) {
            (true, true) => "dns+web",
            (true, false) => "dns",
            _ => "web",
        };
        format!("{}..{} {kinds}", self.from, self.to)
    }

    /// Whether a logged line belongs to this history.
    pub fn matches(&self, e: &QueryLog) -> bool {
        let kind = if is_dns(e) { self.dns } else { self.web };
        kind && self.school.as_deref().is_none_or(|s| e.school.as_deref() == Some(s))
            && match self.subject {
                Subject::Person => e.user.as_deref().is_some_and(|u| u.eq_ignore_ascii_case(&self.id)),
                Subject::Group => e.group.as_deref().is_some_and(|g| g.eq_ignore_ascii_case(&self.id)),
                Subject::Device => e.device.as_deref() == Some(self.id.as_str()) || e.client == self.id,
            }
    }
}

/// A DNS question rather than a web request (the proxy's transports are
/// `http`, `connect` and `tls-sni`).
fn is_dns(e: &QueryLog) -> bool {
    matches!(e.transport.as_str(), "udp" | "tcp" | "doh")
}

/// The form as sent (or its defaults), kept as typed so a refusal shows it again.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fields {
    subject: String,
    id: String,
    school: String,
    from: String,
    to: String,
    dns: bool,
    web: bool,
}

impl Fields {
    fn read(q: &HashMap<String, String>, today: Date, role: Role) -> Self {
        let get = |k: &str| q.get(k).map(|v| v.trim().to_string()).unwrap_or_default();
        let asked = !get("id").is_empty();
        let or = |v: String, d: String| if v.is_empty() { d } else { v };
        Self {
            subject: or(get("subject"), if sees_people(role) { "person".into() } else { "group".into() }),
            id: get("id"),
            school: get("school"),
            from: or(get("from"), today.to_string()),
            to: or(get("to"), today.to_string()),
            // An unticked box sends nothing: before anything is asked, both are on.
            dns: !asked || q.contains_key("dns"),
            web: !asked || q.contains_key("web"),
        }
    }

    /// The fields as a query string (for the CSV link).
    fn query(&self) -> String {
        let mut q = format!("subject={}&id={}&school={}&from={}&to={}", enc(&self.subject), enc(&self.id), enc(&self.school), enc(&self.from), enc(&self.to));
        if self.dns {
            q.push_str("&dns=1");
        }
        if self.web {
            q.push_str("&web=1");
        }
        q
    }

    /// The fields as hidden inputs (for the attach form).
    fn hidden(&self) -> String {
        let mut h = String::new();
        for (k, v) in [("subject", &self.subject), ("id", &self.id), ("school", &self.school), ("from", &self.from), ("to", &self.to)] {
            h.push_str(&format!("<input type=\"hidden\" name=\"{k}\" value=\"{}\">", esc(v)));
        }
        for (k, on) in [("dns", self.dns), ("web", self.web)] {
            if on {
                h.push_str(&format!("<input type=\"hidden\" name=\"{k}\" value=\"1\">"));
            }
        }
        h
    }
}

/// Why an ask is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Refusal {
    /// Something to correct in the form.
    Bad(String),
    /// A school outside the account's.
    OtherSchool,
}

/// Checks the form against the account: a school role sees its own school
/// only, the trust's roles any school or every school at once.
fn ask(f: &Fields, who: &Account) -> Result<Ask, Refusal> {
    let bad = |m: &str| Refusal::Bad(m.to_string());
    let subject = Subject::parse(&f.subject).ok_or_else(|| bad("Choose a person, a group or a device."))?;
    if f.id.is_empty() || f.id.len() > 200 {
        return Err(bad("Say whose history: a login, a group, or a device or address."));
    }
    let school = match (who.role.trust_wide(), f.school.as_str()) {
        (true, "") => None,
        (true, s) => Some(s.to_string()),
        (false, "") => Some(who.school.clone().ok_or(Refusal::OtherSchool)?),
        (false, s) if who.school.as_deref() == Some(s) => Some(s.to_string()),
        (false, _) => return Err(Refusal::OtherSchool),
    };
    let day = |d: &str| d.parse::<Date>().map_err(|_| bad("Write dates as 2026-12-01."));
    let (from, to) = (day(&f.from)?, day(&f.to)?);
    if to < from {
        return Err(bad("The range ends before it starts."));
    }
    let days = from.until(to).map_err(|_| bad("Write dates as 2026-12-01."))?.get_days() + 1;
    if i64::from(days) > MAX_DAYS {
        return Err(Refusal::Bad(format!("At most {MAX_DAYS} days at a time ({days} asked): narrow the range.")));
    }
    if !f.dns && !f.web {
        return Err(bad("Tick DNS, web or both."));
    }
    // Days are the school's (London) days, across the clock changes.
    let tz = haven_policy::schedule::london_tz();
    let start = |d: Date| d.to_zoned(tz.clone()).map(|z| z.timestamp()).map_err(|_| bad("Write dates as 2026-12-01."));
    let since = start(from)?;
    let until = start(to.tomorrow().map_err(|_| bad("Write dates as 2026-12-01."))?)?;
    Ok(Ask { subject, id: f.id.clone(), school, from, to, since, until, dns: f.dns, web: f.web })
}

/// The lines of `ask`'s history in `dir`, earliest first, at most `cap`,
/// and whether there were more. Memory stays bounded whatever the range:
/// the reader goes through the DNS files, then the proxy files, each in
/// time order, so keeping the first `cap + 1` of each kind keeps the
/// earliest `cap + 1` of both together.
pub fn lines(dir: &Path, ask: &Ask, cap: usize) -> std::io::Result<(Vec<QueryLog>, bool)> {
    let (mut dns, mut web) = (0usize, 0usize);
    let mut found = haven_accesslog::read(dir, ask.since, Some(ask.until), |e| {
        if !ask.matches(e) {
            return false;
        }
        let n = if is_dns(e) { &mut dns } else { &mut web };
        *n += 1;
        *n <= cap + 1
    })?;
    let more = found.len() > cap;
    found.truncate(cap);
    Ok((found, more))
}

/// A line's key for the attach form's boxes: the digest of the line as
/// logged. The server reads the log again and attaches the lines whose keys
/// were ticked, so what reaches an incident is what the log says, never
/// what a form claims.
pub fn key(e: &QueryLog) -> String {
    let json = serde_json::to_vec(e).unwrap_or_default();
    Sha256::digest(&json).iter().take(12).map(|b| format!("{b:02x}")).collect()
}

/// One line as shown, in page and CSV alike.
struct Shown {
    time: String,
    source: &'static str,
    who: String,
    group: String,
    device: String,
    address: String,
    what: String,
    action: String,
    categories: String,
    rule: String,
    search: String,
}

fn shown(e: &QueryLog, people: bool, time_format: &str) -> Shown {
    let time =
        e.time.parse::<Timestamp>().map_or_else(|_| e.time.clone(), |t| t.to_zoned(haven_policy::schedule::london_tz()).strftime(time_format).to_string());
    let what = e.url.clone().unwrap_or_else(|| e.name.clone());
    Shown {
        time,
        source: if is_dns(e) { "dns" } else { "web" },
        who: if people { e.user.clone().unwrap_or_default() } else { String::new() },
        group: e.group.clone().unwrap_or_default(),
        device: e.device.clone().unwrap_or_default(),
        address: e.client.clone(),
        // A query string often carries what was searched for.
        what: if people { what } else { what.split(['?', '#']).next().unwrap_or_default().to_string() },
        action: e.action.clone(),
        categories: e.categories.join(", "),
        rule: e.rule.clone().unwrap_or_default(),
        search: if people { e.search.clone().unwrap_or_default() } else { String::new() },
    }
}

/// One CSV cell: quoted when it holds a comma, quote or line break (RFC
/// 4180), and a cell a spreadsheet would run as a formula (`=`, `+`, `-`,
/// `@`, or a tab or carriage return before one) starts with a `'`, so an
/// address or search a pupil typed can never run in the DSL's spreadsheet.
pub fn csv_cell(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{s}") } else { s.to_string() };
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s }
}

/// The lines as CSV, with a header row.
pub fn csv(lines: &[QueryLog], people: bool) -> String {
    let mut out = String::from("time,source,who,group,device,address,what,action,categories,rule,search terms\r\n");
    for e in lines {
        let r = shown(e, people, "%Y-%m-%dT%H:%M:%S%:z");
        let cells = [&r.time, r.source, &r.who, &r.group, &r.device, &r.address, &r.what, &r.action, &r.categories, &r.rule, &r.search];
        out.push_str(&cells.iter().map(|c| csv_cell(c)).collect::<Vec<_>>().join(","));
        out.push_str("\r\n");
    }
    out
}

/// Percent-encodes a query value.
pub(crate) fn enc(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

fn refused(s: &Service, w: &haven_store::sessions::Session, title: &str, what: &str, status: StatusCode) -> Response {
    with_status(page(s, title, Some(w), &format!("<p class=\"err\">{}</p>", esc(what))), status)
}

/// The schools the account may ask about.
async fn schools(s: &Service, who: &Account) -> Vec<School> {
    let all = s.store.schools().await.unwrap_or_default();
    all.into_iter().filter(|sc| who.role.trust_wide() || who.school.as_deref() == Some(sc.id.as_str())).collect()
}

fn form(f: &Fields, schools: &[School], who: &Account) -> String {
    let option = |value: &str, label: &str, chosen: &str| {
        format!("<option value=\"{}\"{}>{}</option>", esc(value), if value == chosen { " selected" } else { "" }, esc(label))
    };
    let subjects: String = [("person", "A person (login)"), ("group", "A group"), ("device", "A device or address")]
        .iter()
        .filter(|(k, _)| Subject::parse(k).is_some_and(|sub| may_view(who.role, sub)))
        .map(|(k, l)| option(k, l, &f.subject))
        .collect();
    let mut school_options = String::new();
    if who.role.trust_wide() {
        school_options.push_str(&option("", "Every school", &f.school));
    }
    for sc in schools {
        school_options.push_str(&option(&sc.id, &sc.name, &f.school));
    }
    let tick = |on: bool| if on { " checked" } else { "" };
    format!(
        "<form method=\"get\" action=\"/history\"><label>Whose history <select name=\"subject\">{subjects}</select></label>\
         <label>Login, group, or device or address <input name=\"id\" value=\"{}\" required></label>\
         <label>School <select name=\"school\">{school_options}</select></label>\
         <label>From <input type=\"date\" name=\"from\" value=\"{}\" required></label><label>To (included) <input type=\"date\" name=\"to\" value=\"{}\" required></label>\
         <label><input type=\"checkbox\" name=\"dns\" value=\"1\"{}> DNS questions</label><label><input type=\"checkbox\" name=\"web\" value=\"1\"{}> Web requests (proxy)</label>\
         <button>Show</button> <button name=\"format\" value=\"csv\">Download CSV</button></form>",
        esc(&f.id),
        esc(&f.from),
        esc(&f.to),
        tick(f.dns),
        tick(f.web),
    )
}

const INTRO: &str = "<p>What a person, a group or a device asked the DNS filter and the web proxy for, day by day on the school's clock \
                     (at most 31 days at a time). Every view and download is recorded in the audit log.</p>";

async fn show(State(s): State<Service>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    let w = match signed_in(&s, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let now = Timestamp::now();
    let actor = format!("account:{}", w.account.id);
    let role = w.account.role;
    let today = now.to_zoned(haven_policy::schedule::london_tz()).date();
    let f = Fields::read(&q, today, role);
    if !may_view(role, Subject::Group) {
        let _ = s.store.audit(now, &actor, "history.read.denied", &format!("{}:?/{}", f.subject, f.id), role.as_str()).await;
        return refused(&s, &w, "Not for your role", "Web and DNS history is for safeguarding leads, and for IT without pupils' names.", StatusCode::FORBIDDEN);
    }
    let schools = schools(&s, &w.account).await;
    let with_form = |extra: &str| format!("{INTRO}{}{extra}", form(&f, &schools, &w.account));
    if f.id.is_empty() {
        return page(&s, "Web and DNS history", Some(&w), &with_form(""));
    }
    let ask = match ask(&f, &w.account) {
        Ok(a) => a,
        Err(Refusal::Bad(m)) => {
            return with_status(page(&s, "Web and DNS history", Some(&w), &with_form(&format!("<p class=\"err\">{}</p>", esc(&m)))), StatusCode::BAD_REQUEST);
        }
        Err(Refusal::OtherSchool) => {
            let _ = s.store.audit(now, &actor, "history.read.denied", &format!("{}:{}/{}", f.subject, f.school, f.id), role.as_str()).await;
            return refused(&s, &w, "Not your school", "You may see the history of your own school only.", StatusCode::FORBIDDEN);
        }
    };
    if !may_view(role, ask.subject) {
        let _ = s.store.audit(now, &actor, "history.read.denied", &ask.object(), role.as_str()).await;
        return refused(
            &s,
            &w,
            "Not for your role",
            "A named pupil's history is for safeguarding leads. IT may look at a group's or a device's history.",
            StatusCode::FORBIDDEN,
        );
    }
    let export = q.get("format").is_some_and(|v| v == "csv");
    let Some(dir) = s.settings().logs_dir.clone() else {
        return page(&s, "Web and DNS history", Some(&w), &with_form("<p>This Haven keeps no access logs here: the DNS filter and proxy run elsewhere.</p>"));
    };
    let cap = if export { CSV_ROWS } else { PAGE_ROWS };
    let asked = ask.clone();
    let read = tokio::task::spawn_blocking(move || lines(&dir, &asked, cap)).await;
    let (found, more) = match read {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::warn!("history: cannot read the access logs: {e}");
            return refused(&s, &w, "Not read", "The access logs could not be read just now; try again, or tell IT.", StatusCode::SERVICE_UNAVAILABLE);
        }
        Err(e) => {
            tracing::warn!("history: the log reader failed: {e}");
            return refused(&s, &w, "Not read", "The access logs could not be read just now; try again.", StatusCode::SERVICE_UNAVAILABLE);
        }
    };
    if export && more {
        return with_status(
            page(
                &s,
                "Web and DNS history",
                Some(&w),
                &with_form(&format!(
                    "<p class=\"err\">More than {CSV_ROWS} lines: nothing was downloaded. Narrow the range (fewer days, DNS or web only, one school) and download again.</p>"
                )),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
        );
    }
    let detail = format!("{}, {} lines{}", ask.range(), found.len(), if more { " (more not shown)" } else { "" });
    if s.store.audit(now, &actor, if export { "history.export" } else { "history.read" }, &ask.object(), &detail).await.is_err() {
        return crate::unaudited();
    }
    let people = sees_people(role);
    if export {
        let name: String = format!("haven-history-{}-{}-{}-to-{}.csv", ask.subject.as_str(), ask.id, ask.from, ask.to)
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' })
            .collect();
        let mut r = (StatusCode::OK, csv(&found, people)).into_response();
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
        return r;
    }
    // Lines go to one of the person's open incidents: only for a person, and
    // only for the roles that work incidents.
    let incidents = if ask.subject == Subject::Person && role.sees_alerts() {
        Some(s.store.open_incidents_about(&w.account, ask.school.as_deref(), &ask.id, now).await.unwrap_or_default())
    } else {
        None
    };
    let attachable = incidents.as_ref().is_some_and(|i| !i.is_empty());
    let rows: String = found
        .iter()
        .map(|e| {
            let r = shown(e, people, "%Y-%m-%d %H:%M:%S");
            let tick = if attachable {
                format!("<td><input type=\"checkbox\" name=\"line\" value=\"{}\" aria-label=\"Attach this line\"></td>", key(e))
            } else {
                String::new()
            };
            format!(
                "<tr>{tick}<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&r.time),
                r.source,
                esc(&r.who),
                esc(&r.group),
                esc(&[r.device.as_str(), r.address.as_str()].iter().filter(|x| !x.is_empty()).copied().collect::<Vec<_>>().join(" · ")),
                esc(&r.what),
                esc(&r.action),
                esc(&r.categories),
                esc(&r.rule),
                esc(&r.search),
            )
        })
        .collect();
    let school_name = match &ask.school {
        Some(id) => schools.iter().find(|sc| &sc.id == id).map_or_else(|| id.clone(), |sc| sc.name.clone()),
        None => "every school".into(),
    };
    let mut body = format!(
        "<p><strong>{}</strong> line(s) for {} <strong>{}</strong> at {}, {} to {} ({}). <a href=\"/history?{}&amp;format=csv\">Download CSV</a></p>",
        found.len(),
        ask.subject.as_str(),
        esc(&ask.id),
        esc(&school_name),
        ask.from,
        ask.to,
        match (ask.dns, ask.web) {
            (true, true) => "DNS and web",
            (true, false) => "DNS only",
            _ => "web only",
        },
        esc(&f.query()),
    );
    if more {
        body.push_str(&format!(
            "<p class=\"err\">More than {PAGE_ROWS} lines: showing the first {PAGE_ROWS}. Narrow the range (fewer days, DNS or web only, one school) to see the rest, \
             or download the CSV (up to {CSV_ROWS} lines).</p>"
        ));
    }
    if !people {
        body.push_str("<p>Pupils' names and search terms are shown to safeguarding leads only; addresses are shown without their query.</p>");
    }
    let head = format!(
        "<tr>{}<th>Time</th><th>Log</th><th>Who</th><th>Group</th><th>Device · address</th><th>What</th><th>Action</th><th>Category</th><th>Rule</th><th>Search terms</th></tr>",
        if attachable { "<th>Attach</th>" } else { "" },
    );
    let table = format!("<table class=\"history\"><thead>{head}</thead><tbody>{rows}</tbody></table>");
    match incidents {
        Some(list) if !list.is_empty() && !found.is_empty() => {
            let options: String =
                list.iter().map(|i| format!("<option value=\"{}\">Incident {} — {} ({})</option>", i.id, i.id, esc(&i.title), esc(&i.school))).collect();
            body.push_str(&format!(
                "<form method=\"post\" action=\"/history/attach\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">{}\
                 {table}<h2>Attach the ticked lines to an incident</h2><label>Incident <select name=\"incident\">{options}</select></label>\
                 <button>Attach ticked lines</button></form>",
                esc(&w.csrf),
                f.hidden()
            ));
        }
        Some(_) => {
            body.push_str(&table);
            body.push_str(&format!(
                "<p>No open incident about {} that you may add to: raise one from one of their alerts to attach lines to it.</p>",
                esc(&ask.id)
            ));
        }
        None => body.push_str(&table),
    }
    page(&s, "Web and DNS history", Some(&w), &with_form(&body))
}

/// The note an incident keeps for attached lines: one line each, with its
/// time on the school's clock, the log, the host or address, what was
/// decided and the categories (and the words, for a search).
pub fn note(ask: &Ask, chosen: &[QueryLog]) -> String {
    let mut n = format!(
        "Web and DNS history of {} at {}, {} to {}: {} line(s) from the access log.",
        ask.id,
        ask.school.as_deref().unwrap_or("every school"),
        ask.from,
        ask.to,
        chosen.len()
    );
    for e in chosen {
        let r = shown(e, true, "%Y-%m-%d %H:%M:%S");
        n.push_str(&format!("\n{} · {} · {} · {} · {}", r.time, r.source, r.what, r.action, if r.categories.is_empty() { "-" } else { &r.categories }));
        if !r.search.is_empty() {
            n.push_str(&format!(" · searched for \"{}\"", r.search));
        }
    }
    n
}

async fn attach(State(s): State<Service>, headers: HeaderMap, Form(f): Form<Vec<(String, String)>>) -> Response {
    let w = match signed_in(&s, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let single: HashMap<String, String> = f.iter().filter(|(k, _)| k != "line").cloned().collect();
    if !csrf_ok(&w.csrf, single.get("csrf")) {
        return refused(&s, &w, "Form expired", "That form was not sent from this session. Go back, reload, and try again.", StatusCode::FORBIDDEN);
    }
    let now = Timestamp::now();
    let actor = format!("account:{}", w.account.id);
    let role = w.account.role;
    let today = now.to_zoned(haven_policy::schedule::london_tz()).date();
    let fields = Fields::read(&single, today, role);
    let ask = match ask(&fields, &w.account) {
        Ok(a) if a.subject == Subject::Person && role.sees_alerts() => a,
        Ok(a) => {
            let _ = s.store.audit(now, &actor, "incident.history.denied", &a.object(), role.as_str()).await;
            return refused(
                &s,
                &w,
                "Not for your role",
                "Lines of a person's history are attached to their incidents by safeguarding leads.",
                StatusCode::FORBIDDEN,
            );
        }
        Err(Refusal::Bad(m)) => return refused(&s, &w, "Not attached", &m, StatusCode::BAD_REQUEST),
        Err(Refusal::OtherSchool) => {
            let _ = s.store.audit(now, &actor, "incident.history.denied", &format!("person:{}/{}", fields.school, fields.id), role.as_str()).await;
            return refused(&s, &w, "Not your school", "You may attach history from your own school only.", StatusCode::FORBIDDEN);
        }
    };
    let ticked: HashSet<&str> = f.iter().filter(|(k, _)| k == "line").map(|(_, v)| v.as_str()).collect();
    if ticked.is_empty() {
        return refused(&s, &w, "Nothing ticked", "Tick the lines to attach, then press the button again.", StatusCode::BAD_REQUEST);
    }
    if ticked.len() > MAX_ATTACH {
        return refused(&s, &w, "Too many lines", &format!("At most {MAX_ATTACH} lines at once; attach them in parts."), StatusCode::BAD_REQUEST);
    }
    let Some(incident) = single.get("incident").and_then(|i| i.parse::<i64>().ok()) else {
        return refused(&s, &w, "No incident", "Choose the incident to attach the lines to.", StatusCode::BAD_REQUEST);
    };
    let Some(dir) = s.settings().logs_dir.clone() else {
        return refused(&s, &w, "Not attached", "This Haven keeps no access logs.", StatusCode::NOT_FOUND);
    };
    // The same reading the page made, so every box it showed can be found.
    let asked = ask.clone();
    let Ok(Ok((found, _))) = tokio::task::spawn_blocking(move || lines(&dir, &asked, PAGE_ROWS)).await else {
        return refused(&s, &w, "Not attached", "The access logs could not be read just now; try again.", StatusCode::SERVICE_UNAVAILABLE);
    };
    let chosen: Vec<QueryLog> = found.into_iter().filter(|e| ticked.contains(key(e).as_str())).collect();
    if chosen.is_empty() {
        return refused(&s, &w, "Not attached", "The ticked lines are not in the log for that range any more.", StatusCode::BAD_REQUEST);
    }
    let detail = format!("{} lines from {} {}", chosen.len(), ask.object(), ask.range());
    match s.store.attach_history(&w.account, incident, &ask.id, &note(&ask, &chosen), &detail, now).await {
        Ok(true) => Redirect::to(&format!("/incidents/{incident}")).into_response(),
        Ok(false) => {
            let _ = s.store.audit(now, &actor, "incident.history.denied", &format!("incident:{incident}"), &ask.object()).await;
            refused(&s, &w, "Incident not found", "There is no open incident about this person that you may add to.", StatusCode::NOT_FOUND)
        }
        Err(e) => {
            tracing::warn!("history: attaching lines to incident {incident} failed: {e}");
            refused(&s, &w, "Not attached", "The record did not take the lines just now; try again.", StatusCode::SERVICE_UNAVAILABLE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(time: &str, user: &str, transport: &str) -> QueryLog {
        QueryLog {
            time: time.into(),
            client: "10.0.0.5".into(),
            user: Some(user.into()),
            group: Some("year9".into()),
            school: Some("oak".into()),
            name: "example.com".into(),
            qtype: "A".into(),
            action: "allow".into(),
            transport: transport.into(),
            ..Default::default()
        }
    }

    fn account(role: Role, school: Option<&str>) -> Account {
        Account { id: 1, email: "x@oak.example".into(), role, school: school.map(str::to_string) }
    }

    fn fields(from: &str, to: &str) -> Fields {
        Fields { subject: "person".into(), id: "amy".into(), school: String::new(), from: from.into(), to: to.into(), dns: true, web: true }
    }

    #[test]
    fn csv_cells_are_quoted_and_never_formulas() {
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_cell("=HYPERLINK(\"http://x\")"), "\"'=HYPERLINK(\"\"http://x\"\")\"");
        for f in ["+1", "-1", "@SUM(A1)", "\t=1"] {
            assert!(csv_cell(f).trim_start_matches('"').starts_with('\''), "{f}");
        }
    }

    #[test]
    fn ranges_are_bounded_and_schools_scoped() {
        let dsl = account(Role::Dsl, Some("oak"));
        let a = ask(&fields("2026-12-01", "2026-12-31"), &dsl).unwrap();
        assert_eq!(a.school.as_deref(), Some("oak"), "a school role sees its own school");
        assert_eq!(a.since.to_string(), "2026-12-01T00:00:00Z");
        assert_eq!(a.until.to_string(), "2027-01-01T00:00:00Z");
        // Summer time: the school's day starts at 23:00 UTC the day before.
        let summer = ask(&fields("2026-07-01", "2026-07-01"), &dsl).unwrap();
        assert_eq!(summer.since.to_string(), "2026-06-30T23:00:00Z");
        assert!(matches!(ask(&fields("2026-12-01", "2027-01-01"), &dsl), Err(Refusal::Bad(m)) if m.contains("32 asked")));
        assert!(matches!(ask(&fields("2026-12-02", "2026-12-01"), &dsl), Err(Refusal::Bad(_))));
        assert!(matches!(ask(&fields("1 Dec", "2026-12-01"), &dsl), Err(Refusal::Bad(_))));
        let elm = Fields { school: "elm".into(), ..fields("2026-12-01", "2026-12-01") };
        assert_eq!(ask(&elm, &dsl), Err(Refusal::OtherSchool));
        let lead = account(Role::TrustSafeguardingLead, None);
        assert_eq!(ask(&elm, &lead).unwrap().school.as_deref(), Some("elm"));
        assert_eq!(ask(&fields("2026-12-01", "2026-12-01"), &lead).unwrap().school, None, "the trust may ask every school at once");
        let neither = Fields { dns: false, web: false, ..fields("2026-12-01", "2026-12-01") };
        assert!(matches!(ask(&neither, &dsl), Err(Refusal::Bad(_))));
    }

    #[test]
    fn roles() {
        for r in Role::ALL {
            assert_eq!(may_view(r, Subject::Person), r.sees_alerts(), "{r:?}");
        }
        assert!(may_view(Role::ItTechnician, Subject::Group) && may_view(Role::ItTechnician, Subject::Device));
        assert!(!may_view(Role::ItTechnician, Subject::Person));
        assert!(may_view(Role::ItLead, Subject::Device) && !may_view(Role::ItLead, Subject::Person) && !sees_people(Role::ItLead));
        for r in [Role::Teacher, Role::Governor, Role::TrustAdmin] {
            assert!(!may_view(r, Subject::Group) && !may_view(r, Subject::Device), "{r:?}");
        }
    }

    #[test]
    fn the_earliest_lines_are_kept_when_there_are_too_many() {
        let dir = tempfile::tempdir().unwrap();
        let mut dns = String::new();
        let mut web = String::new();
        for m in 0..30 {
            dns.push_str(&serde_json::to_string(&line(&format!("2026-12-01T10:{m:02}:00Z"), "amy", "udp")).unwrap());
            dns.push('\n');
            web.push_str(&serde_json::to_string(&line(&format!("2026-12-01T10:{m:02}:30Z"), "amy", "http")).unwrap());
            web.push('\n');
        }
        std::fs::write(dir.path().join("dns-2026-12-01.jsonl"), dns).unwrap();
        std::fs::write(dir.path().join("proxy-2026-12-01.jsonl"), web).unwrap();
        let a = ask(&fields("2026-12-01", "2026-12-01"), &account(Role::Dsl, Some("oak"))).unwrap();
        let (all, more) = lines(dir.path(), &a, 100).unwrap();
        assert_eq!((all.len(), more), (60, false));
        let (first, more) = lines(dir.path(), &a, 10).unwrap();
        assert!(more);
        assert_eq!(first.len(), 10);
        assert_eq!(first.last().unwrap().time, "2026-12-01T10:04:30Z", "DNS and web interleaved, earliest first");
        let web_only = Ask { dns: false, ..a.clone() };
        assert!(lines(dir.path(), &web_only, 100).unwrap().0.iter().all(|e| e.transport == "http"));
        let bob = Ask { id: "bob".into(), ..a };
        assert!(lines(dir.path(), &bob, 100).unwrap().0.is_empty());
    }
}
