//! Reports (issue 17): the termly governor pack and the weekly DSL digest.
//!
//! [`governor_pack`] gathers a period's anonymised figures from the record
//! (`haven_store::reporting`: pupils' alerts by category, level and week,
//! responses against deadlines, filtering checks, the change register,
//! incidents, acceptable-use coverage) and the block counts from the access
//! logs (the only place Haven keeps every block), each beside the previous
//! period of the same length; `haven_report` renders it as HTML or PDF. The
//! web app serves it at `/reports/governor` to the roles that may see it
//! (governors: this pack and nothing else of the record).
//!
//! [`digest`] counts a school's week for its DSLs; [`queue_digest`] puts it
//! in the report outbox (`report_mail`) for each DSL and deputy, and
//! [`run`] (in `haven serve`) sends that outbox by e-mail and queues every
//! school's digest of the week before each Monday morning.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use haven_report::model::{self as m, Compared, Count, Digest, GovernorPack};
use haven_store::reporting::AlertFact;
use haven_store::{Role, Store, StoreError};
use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;

use crate::Service;
use crate::notify::Channels;
use crate::web::{esc, page, signed_in, with_status};

/// `d` plus `n` days.
#[must_use]
pub fn add_days(d: Date, n: i64) -> Date {
    d.checked_add(jiff::Span::new().days(n)).unwrap_or(d)
}

/// Days from `a` to `b`.
fn days(a: Date, b: Date) -> i64 {
    i64::from((b - a).get_days())
}

/// The Monday of `d`'s week.
#[must_use]
pub fn monday(d: Date) -> Date {
    add_days(d, -i64::from(d.weekday().to_monday_zero_offset()))
}

/// Local midnight at the start of `d`.
fn start_of(d: Date, tz: &TimeZone) -> Timestamp {
    d.to_zoned(tz.clone()).map_or_else(|_| d.to_zoned(TimeZone::UTC).map(|z| z.timestamp()).unwrap_or_default(), |z| z.timestamp())
}

/// What a pack covers: a school (id and name), or the whole trust.
#[derive(Debug, Clone)]
pub struct Scope {
    /// The school's id; `None`: every school.
    pub school: Option<String>,
    /// As shown: the school's name, or "all schools of the trust".
    pub name: String,
}

/// Where blocks are counted from, and which.
fn block_counts(logs: Option<&Path>, school: Option<&str>, from: Timestamp, to: Timestamp) -> (HashMap<String, u64>, bool) {
    let mut counts: HashMap<String, u64> = HashMap::new();
    let Some(dir) = logs.filter(|d| d.exists()) else { return (counts, false) };
    let read = haven_accesslog::read(dir, from, Some(to), |e| {
        if e.action == "block" && school.is_none_or(|s| e.school.as_deref() == Some(s)) {
            *counts.entry(e.categories.first().cloned().unwrap_or_default()).or_default() += 1;
        }
        // Counted, not kept: a term's logs are millions of lines.
        false
    });
    if let Err(e) = read {
        tracing::warn!(error = %e, "the access logs could not all be read for the governor pack's block counts");
    }
    (counts, true)
}

fn category_title(id: &str) -> (String, Option<m::FourC>) {
    if id.is_empty() {
        return ("No category (a staff entry or the policy's default)".into(), None);
    }
    match haven_policy::taxonomy::Category::from_id(id) {
        Some(c) => (c.title().to_string(), m::FourC::parse(c.kcsie_area())),
        None => (id.to_string(), None),
    }
}

/// Responses against deadlines, as things stood at `asof`.
fn responses(facts: &[&AlertFact], asof: Timestamp) -> m::Responses {
    let mut r = m::Responses::default();
    let mut waits: Vec<i64> = Vec::new();
    for f in facts {
        let acted = f.first_action.filter(|a| *a < asof);
        if let Some(a) = acted {
            waits.push(a.duration_since(f.received_at).as_mins().max(0));
        }
        let Some(due) = f.due_at else { continue };
        r.with_deadline += 1;
        match acted {
            Some(a) if a <= due => r.on_time += 1,
            Some(_) => r.late += 1,
            None if due < asof => r.overdue += 1,
            None => r.waiting += 1,
        }
    }
    waits.sort_unstable();
    r.median_minutes = waits.get(waits.len() / 2).map(|m| u64::try_from(*m).unwrap_or(0));
    r
}

fn u(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// The governor pack for `scope` from `from` to `to` (inclusive local
/// dates on `tz`), compared with the period of the same length before;
/// block counts from the access logs in `logs`. Audited as a read by `by`.
#[allow(clippy::too_many_arguments)]
pub async fn governor_pack(
    store: &Store,
    scope: &Scope,
    from: Date,
    to: Date,
    tz: &TimeZone,
    logs: Option<&Path>,
    by: &str,
    now: Timestamp,
) -> Result<GovernorPack, StoreError> {
    if to < from {
        return Err(StoreError::Invalid(format!("the period ends ({to}) before it starts ({from})")));
    }
    if days(from, to) > 400 {
        return Err(StoreError::Invalid("a governor pack covers at most a year".into()));
    }
    let len = days(from, to) + 1;
    let (pfrom, pto) = (add_days(from, -len), add_days(from, -1));
    let (start, end, pstart) = (start_of(from, tz), start_of(add_days(to, 1), tz), start_of(pfrom, tz));
    let school = scope.school.as_deref();
    let now_facts = store.report_alerts(school, start, end).await?;
    let prev_facts = store.report_alerts(school, pstart, start).await?;

    // Weeks, Monday first, from the week `from` falls in.
    let first = monday(from);
    let n_weeks = usize::try_from(days(first, to) / 7 + 1).unwrap_or(1);
    let mut weeks: Vec<m::Week> = (0..n_weeks).map(|i| m::Week { start: add_days(first, 7 * i as i64).to_string(), ..Default::default() }).collect();
    let week_of = |t: Timestamp, base: Date| -> usize {
        let d = t.to_zoned(tz.clone()).date();
        usize::try_from(days(base, d) / 7).unwrap_or(0).min(n_weeks - 1)
    };
    let mut cats: BTreeMap<String, m::Category> =
        haven_textscan::Concern::ALL.iter().map(|c| (c.name().to_string(), m::Category { name: c.name().into(), ..Default::default() })).collect();
    for f in &now_facts {
        let l = usize::from(f.level.clamp(1, 5) - 1);
        weeks[week_of(f.received_at, first)].by_level[l] += 1;
        cats.entry(f.category.clone()).or_insert_with(|| m::Category { name: f.category.clone(), ..Default::default() }).by_level[l] += 1;
    }
    let pfirst = monday(pfrom);
    for f in &prev_facts {
        weeks[week_of(f.received_at, pfirst)].previous += 1;
        cats.entry(f.category.clone()).or_insert_with(|| m::Category { name: f.category.clone(), ..Default::default() }).previous += 1;
    }
    let asof = end.min(now);
    let all_now: Vec<&AlertFact> = now_facts.iter().collect();
    let all_prev: Vec<&AlertFact> = prev_facts.iter().collect();

    // Blocks: both periods in one pass over the logs each.
    let (blocks_now, had_logs) = block_counts(logs, school, start, end);
    let (blocks_prev, _) = block_counts(logs, school, pstart, start);
    let mut blocks: BTreeMap<String, m::Blocks> = BTreeMap::new();
    for (id, n, prev) in blocks_now.iter().map(|(k, v)| (k, *v, false)).chain(blocks_prev.iter().map(|(k, v)| (k, *v, true))) {
        let (title, area) = category_title(id);
        let b = blocks.entry(title.clone()).or_insert(m::Blocks { category: title, area, count: 0, previous: 0 });
        if prev {
            b.previous += n;
        } else {
            b.count += n;
        }
    }
    let mut blocks: Vec<m::Blocks> = blocks.into_values().collect();
    blocks.sort_by(|a, b| b.count.cmp(&a.count).then(b.previous.cmp(&a.previous)).then(a.category.cmp(&b.category)));
    let blocks_note = if had_logs {
        "Counted from the DNS filter's and the web proxy's access logs: each question or request refused, under the first category the lists give it \
         (the filtering checks' own probes are left out). Blocks in safeguarding categories also raise alerts, counted above."
            .to_string()
    } else {
        "No access logs were found where the filters write them, so blocks cannot be counted here.".to_string()
    };

    let checks = |c: haven_store::reporting::CheckFacts| m::Checks {
        runs: u(c.runs),
        probes: u(c.probes),
        failed: u(c.failed),
        followed_up: u(c.followed_up),
        last: c.last.map(|t| t.to_zoned(tz.clone()).date().to_string()),
    };
    let changes = |c: haven_store::reporting::ChangeFacts| m::Changes {
        by_kind: c.by_kind.into_iter().map(|(k, n)| (k, u(n))).collect(),
        by_state: c.by_state.into_iter().map(|(k, n)| (k, u(n))).collect(),
        in_force_at_end: u(c.in_force_at_end),
    };
    let incidents = |c: haven_store::reporting::IncidentFacts| m::Incidents {
        opened: u(c.opened),
        closed: u(c.closed),
        open_at_end: u(c.open_at_end),
        by_kind: c.by_kind.into_iter().map(|(k, n)| (k, u(n))).collect(),
    };
    let names: HashMap<String, String> = store.schools().await?.into_iter().map(|s| (s.id, s.name)).collect();
    let agreements = store
        .report_agreements(school)
        .await?
        .into_iter()
        .map(|a| m::Agreement {
            school: names.get(&a.school).cloned().unwrap_or(a.school),
            audience: a.audience,
            version: a.version,
            expected: u(a.expected),
            signed: u(a.signed),
        })
        .collect();
    let mut schools = Vec::new();
    if school.is_none() {
        let mut ids: Vec<&String> = names.keys().collect();
        ids.sort();
        for id in ids {
            let mine: Vec<&AlertFact> = now_facts.iter().filter(|f| &f.school == id).collect();
            let r = responses(&mine, asof);
            let open = store.report_incidents(Some(id), start, end).await?.open_at_end;
            schools.push(m::School {
                name: names[id].clone(),
                alerts: mine.len() as u64,
                previous: prev_facts.iter().filter(|f| &f.school == id).count() as u64,
                on_time: (r.on_time, r.on_time + r.late + r.overdue),
                open_incidents: u(open),
            });
        }
    }
    let pack = GovernorPack {
        scope: scope.name.clone(),
        trust_wide: school.is_none(),
        from: from.to_string(),
        to: to.to_string(),
        previous_from: pfrom.to_string(),
        previous_to: pto.to_string(),
        generated_at: now.to_string(),
        weeks,
        categories: cats.into_values().collect(),
        responses: Compared { now: responses(&all_now, asof), previous: responses(&all_prev, start) },
        blocks,
        blocks_note,
        checks: Compared { now: checks(store.report_checks(school, start, end).await?), previous: checks(store.report_checks(school, pstart, start).await?) },
        changes: Compared {
            now: changes(store.report_changes(school, start, end).await?),
            previous: changes(store.report_changes(school, pstart, start).await?),
        },
        agreements,
        incidents: Compared {
            now: incidents(store.report_incidents(school, start, end).await?),
            previous: incidents(store.report_incidents(school, pstart, start).await?),
        },
        schools,
    };
    store.audit(now, by, "report.governor", &format!("school:{}", school.unwrap_or("all")), &format!("{from} to {to}")).await?;
    Ok(pack)
}

fn count_by(facts: &[AlertFact], keep: impl Fn(&AlertFact) -> bool) -> Vec<Count> {
    let mut by: BTreeMap<(String, u8), u64> = BTreeMap::new();
    for f in facts.iter().filter(|f| keep(f)) {
        *by.entry((f.category.clone(), f.level)).or_default() += 1;
    }
    by.into_iter().map(|((category, level), count)| Count { category, level, count }).collect()
}

/// A school's digest of the week `week` falls in (Monday to Sunday on `tz`).
pub async fn digest(store: &Store, school: &str, week: Date, tz: &TimeZone, base_url: &str) -> Result<Digest, StoreError> {
    let name = store.schools().await?.into_iter().find(|s| s.id == school).map(|s| s.name).ok_or_else(|| StoreError::NotFound {
        what: "school",
        name: school.to_string(),
        hint: "; `haven admin school list` lists them",
    })?;
    let mon = monday(week);
    let (start, end) = (start_of(mon, tz), start_of(add_days(mon, 7), tz));
    let new = store.report_alerts(Some(school), start, end).await?;
    let closed = store.report_closed_alerts(Some(school), start, end).await?;
    let open = store.report_open_alerts(Some(school), end).await?;
    Ok(Digest {
        school: name,
        week_of: mon.to_string(),
        week_to: add_days(mon, 6).to_string(),
        new: count_by(&new, |_| true),
        overdue: count_by(&open, |f| f.due_at.is_some_and(|d| d < end)),
        closed: count_by(&closed, |_| true),
        open_at_end: open.len() as u64,
        reminders: reminders(store, school, end, tz).await?,
        base_url: base_url.to_string(),
    })
}

/// What the governance record asks of the school at `at`: training expired
/// or expiring within 30 days, the annual review due. Counts and dates only,
/// so the e-mail names nobody.
async fn reminders(store: &Store, school: &str, at: Timestamp, tz: &TimeZone) -> Result<Vec<String>, StoreError> {
    use haven_store::governance::TrainingState;
    let training = store.training(school).await?;
    let count = |state| training.iter().filter(|t| t.state(at) == state).count();
    let mut out = Vec::new();
    for (n, what) in [(count(TrainingState::Expired), "expired"), (count(TrainingState::Expiring), "expiring within 30 days")] {
        if n > 0 {
            out.push(format!("{n} staff training record{} {what}: Governance \u{2192} Roles and training", if n == 1 { "" } else { "s" }));
        }
    }
    match store.review_due(school).await? {
        None => out.push("No annual filtering and monitoring review has been completed: one is due now".into()),
        Some(due) if due <= at.saturating_add(SignedDuration::from_hours(24 * 30)).unwrap_or(at) => {
            out.push(format!("The annual filtering and monitoring review is due on {}", due.to_zoned(tz.clone()).date()));
        }
        Some(_) => {}
    }
    Ok(out)
}

/// The digest of `week` for `school`, queued for each of its DSLs and
/// deputies (once per week and address); returns it, with how many were
/// queued now and to whom it goes.
pub async fn queue_digest(
    store: &Store,
    school: &str,
    week: Date,
    tz: &TimeZone,
    base_url: &str,
    by: &str,
    now: Timestamp,
) -> Result<(Digest, usize, Vec<String>), StoreError> {
    let d = digest(store, school, week, tz, base_url).await?;
    let to = store.recipients(school, &[Role::Dsl, Role::DeputyDsl], None).await?;
    let queued = store.queue_report_mail("digest", school, &d.week_of, &to, &d.subject(), &d.text(), by, now).await?;
    Ok((d, queued, to.into_iter().map(|(_, e)| e).collect()))
}

/// Sends the report e-mails due (the SMTP relay of `[notify]`); returns how many went.
pub async fn send_due(store: &Store, ch: &Channels, now: Timestamp) -> usize {
    let due = match store.report_mail_due(now).await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the report outbox");
            return 0;
        }
    };
    let mut sent = 0;
    for mail in due {
        let result = match tokio::time::timeout(ch.deadline, crate::notify::email(ch, &mail.target, &mail.subject, &mail.body, &mail.notice_id)).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {} s", ch.deadline.as_secs())),
        };
        let give_up = result.is_err() && mail.attempts + 1 >= ch.max_tries;
        // A digest can wait: a minute, then doubling to an hour.
        let wait = SignedDuration::from_mins(1i64 << mail.attempts.clamp(0, 6)).min(SignedDuration::from_hours(1));
        if let Err(why) = &result {
            tracing::warn!(mail = mail.id, school = %mail.school, "could not send the weekly digest (try {}): {why}", mail.attempts + 1);
        } else {
            sent += 1;
        }
        let _ =
            store.report_mail_result(mail.id, result.as_ref().map(|_| ()).map_err(String::as_str), now, now.saturating_add(wait).unwrap_or(now), give_up).await;
    }
    sent
}

/// When the digest of the week before `now` is due: Monday 07:00 on the school's clock.
fn digest_due(now: Timestamp, tz: &TimeZone) -> Option<Date> {
    let local = now.to_zoned(tz.clone());
    let mon = monday(local.date());
    (local.date() > mon || local.hour() >= 7).then(|| add_days(mon, -7))
}

/// `haven serve`'s report worker: every minute sends the report outbox, and
/// from 07:00 each Monday queues every school's digest of the week before
/// (each school on its own calendar's clock; queued once).
pub async fn run(s: Service, ch: Channels) {
    let mut queued_for: HashMap<String, Date> = HashMap::new();
    loop {
        let now = Timestamp::now();
        if let Ok(schools) = s.store.schools().await {
            for school in schools {
                let tz = s.calendar(&school.id).tz;
                let Some(week) = digest_due(now, &tz) else { continue };
                if queued_for.get(&school.id) == Some(&week) {
                    continue;
                }
                match s.store.report_mail_for("digest", &school.id, &week.to_string()).await {
                    Ok(already) if !already.is_empty() => {}
                    Ok(_) => match queue_digest(&s.store, &school.id, week, &tz, &ch.base_url, "haven", now).await {
                        Ok((_, n, _)) => tracing::info!(school = %school.id, week = %week, queued = n, "weekly safeguarding digest queued"),
                        Err(e) => {
                            tracing::warn!(school = %school.id, error = %e, "could not queue the weekly digest; trying again in a minute");
                            continue;
                        }
                    },
                    Err(_) => continue,
                }
                queued_for.insert(school.id.clone(), week);
            }
        }
        send_due(&s.store, &ch, now).await;
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
}

/// The web app's reports: `/reports/governor`.
pub fn routes() -> axum::Router<Service> {
    axum::Router::new().route("/reports/governor", get(governor))
}

/// Who may have the governor pack: the governors, the school's leaders and
/// safeguarding leads, and the trust's. It is anonymised; that is all a
/// governor sees of the record.
fn may_see_pack(role: Role) -> bool {
    matches!(role, Role::Governor | Role::ChairOfGovernors | Role::Headteacher | Role::Dsl | Role::DeputyDsl | Role::TrustSafeguardingLead | Role::TrustAdmin)
}

#[derive(Deserialize, Default)]
struct PackQuery {
    school: Option<String>,
    from: Option<String>,
    to: Option<String>,
    format: Option<String>,
}

async fn governor(State(s): State<Service>, headers: HeaderMap, Query(q): Query<PackQuery>) -> Response {
    let w = match signed_in(&s, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    if !may_see_pack(w.account.role) {
        return crate::web::forbidden(&s, &w, "The governor pack is for governors, the headteacher, the safeguarding leads and the trust.");
    }
    let schools = s.store.schools().await.unwrap_or_default();
    // A school role sees its own school; the trust's roles choose one, or all.
    let wanted = q.school.as_deref().filter(|x| !x.is_empty());
    let scope = if w.account.role.trust_wide() {
        match wanted.filter(|x| *x != "all") {
            Some(id) => match schools.iter().find(|x| x.id == id) {
                Some(x) => Scope { school: Some(x.id.clone()), name: x.name.clone() },
                None => return with_status(page(&s, "Governor pack", Some(&w), "<p class=\"err\">No such school.</p>"), StatusCode::NOT_FOUND),
            },
            None => Scope { school: None, name: "all schools of the trust".into() },
        }
    } else {
        match w.account.school.as_deref().and_then(|id| schools.iter().find(|x| x.id == id)) {
            Some(x) => Scope { school: Some(x.id.clone()), name: x.name.clone() },
            None => return crate::web::forbidden(&s, &w, "Your account belongs to no school."),
        }
    };
    let tz = s.calendar(scope.school.as_deref().unwrap_or_default()).tz;
    let today = Timestamp::now().to_zoned(tz.clone()).date();
    let parse = |v: &Option<String>, default: Date| v.as_deref().filter(|x| !x.is_empty()).map_or(Ok(default), str::parse::<Date>);
    let (Ok(from), Ok(to)) = (parse(&q.from, add_days(today, -91)), parse(&q.to, add_days(today, -1))) else {
        return with_status(page(&s, "Governor pack", Some(&w), "<p class=\"err\">Dates are written 2026-09-01.</p>"), StatusCode::BAD_REQUEST);
    };
    let logs = s.settings().logs_dir.clone();
    let pack = match governor_pack(&s.store, &scope, from, to, &tz, logs.as_deref(), &format!("account:{}", w.account.id), Timestamp::now()).await {
        Ok(p) => p,
        Err(StoreError::Invalid(why)) => {
            return with_status(page(&s, "Governor pack", Some(&w), &format!("<p class=\"err\">{}</p>", esc(&why))), StatusCode::BAD_REQUEST);
        }
        Err(_) => return crate::unaudited(),
    };
    let doc = haven_report::pack::document(&pack);
    if q.format.as_deref() == Some("pdf") {
        let mut r = haven_report::pdf::render(&doc).into_response();
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/pdf"));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"governor-pack-{}-{from}-{to}.pdf\"", scope.school.as_deref().unwrap_or("trust")))
        {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
        return r;
    }
    let options: String = if w.account.role.trust_wide() {
        std::iter::once(("all".to_string(), "All schools (trust-wide)".to_string()))
            .chain(schools.iter().map(|x| (x.id.clone(), x.name.clone())))
            .map(|(id, name)| {
                let sel = if scope.school.as_deref().unwrap_or("all") == id { " selected" } else { "" };
                format!("<option value=\"{}\"{sel}>{}</option>", esc(&id), esc(&name))
            })
            .collect()
    } else {
        String::new()
    };
    let choose = if options.is_empty() { String::new() } else { format!("<label>School <select name=\"school\">{options}</select></label>") };
    let pdf = format!("/reports/governor?school={}&from={from}&to={to}&format=pdf", esc(scope.school.as_deref().unwrap_or("all")));
    let body = format!(
        "<form method=\"get\" action=\"/reports/governor\">{choose}<label>From <input type=\"date\" name=\"from\" value=\"{from}\"></label>\
         <label>To <input type=\"date\" name=\"to\" value=\"{to}\"></label><button>Show</button></form>\
         <p><a href=\"{pdf}\">Download this pack as a PDF</a></p>{}",
        haven_report::html::fragment_for_labelled_frame(&doc)
    );
    page(&s, &doc.title, Some(&w), &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weeks_and_due_digests() {
        let d: Date = "2026-12-03".parse().unwrap();
        assert_eq!(monday(d).to_string(), "2026-11-30");
        assert_eq!(monday("2026-11-30".parse().unwrap()).to_string(), "2026-11-30");
        let tz = TimeZone::get("Europe/London").unwrap();
        // Monday 06:59 in London: not yet; 07:00: the week before.
        assert_eq!(digest_due("2026-11-30T06:59:00Z".parse().unwrap(), &tz), None);
        assert_eq!(digest_due("2026-11-30T07:00:00Z".parse().unwrap(), &tz).map(|d| d.to_string()).as_deref(), Some("2026-11-23"));
        assert_eq!(digest_due("2026-12-02T01:00:00Z".parse().unwrap(), &tz).map(|d| d.to_string()).as_deref(), Some("2026-11-23"));
    }

    #[test]
    fn responses_against_deadlines() {
        let t = |s: &str| -> Timestamp { s.parse().unwrap() };
        let f = |due: Option<&str>, act: Option<&str>| AlertFact {
            school: "s".into(),
            category: "Grooming".into(),
            level: 3,
            received_at: t("2026-09-01T09:00:00Z"),
            due_at: due.map(t),
            first_action: act.map(t),
            closed_at: None,
        };
        let facts = [
            f(Some("2026-09-01T17:00:00Z"), Some("2026-09-01T10:00:00Z")),
            f(Some("2026-09-01T17:00:00Z"), Some("2026-09-02T10:00:00Z")),
            f(Some("2026-09-01T17:00:00Z"), None),
            f(Some("2026-09-09T17:00:00Z"), None),
            f(None, None),
        ];
        let refs: Vec<&AlertFact> = facts.iter().collect();
        let r = responses(&refs, t("2026-09-05T00:00:00Z"));
        assert_eq!((r.with_deadline, r.on_time, r.late, r.overdue, r.waiting), (4, 1, 1, 1, 1));
        assert_eq!(r.median_minutes, Some(25 * 60), "an hour and 25 hours: the upper median");
    }
}
