//! The data map and legal hold.
//!
//! `/admin/data-map` (and `/admin/data-map.csv` for the DPIA): what Haven
//! holds, where, for how long and why, drawn from the same table and
//! `[retention]` periods the daily retention job applies
//! (`haven_config::retention`), with where the record is kept and the job's
//! latest runs (counts only). For the safeguarding leads, the headteacher,
//! IT and the trust's administrators: it names no one.
//!
//! `/incidents/{id}/hold`: an incident's legal hold, set or cleared by a
//! safeguarding lead with a reason (an action on the incident and an audit
//! row); a held incident, its alerts and evidence are not deleted.

use std::collections::HashMap;

use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use haven_config::retention::{Retention, TABLE};
use haven_store::people::Account;
use haven_store::{Backend, Role, Store};
use jiff::Timestamp;

use crate::Service;
use crate::web::{csrf_ok, esc, page, signed_in, with_status};

/// The data map's and legal hold's routes.
pub fn routes() -> axum::Router<Service> {
    axum::Router::new()
        .route("/admin/data-map", get(data_map))
        .route("/admin/data-map.csv", get(data_map_csv))
        .route("/incidents/{id}/hold", get(hold_page).post(hold_set))
}

/// Who reads the data map: those who answer for the DPIA and the record.
fn may_see_map(who: &Account) -> bool {
    matches!(who.role, Role::Dsl | Role::DeputyDsl | Role::Headteacher | Role::ItLead | Role::ItTechnician | Role::TrustSafeguardingLead | Role::TrustAdmin)
}

/// A period as people read it: years, months or days.
fn said(days: u32) -> String {
    match days {
        d if d >= 366 && d % 366 == 0 => format!("{} years", d / 366),
        d if d >= 31 && d % 31 == 0 => format!("{} months", d / 31),
        1 => "1 day".into(),
        d => format!("{d} days"),
    }
}

/// Where the record is kept, said for the DPIA.
fn where_kept(s: &Service) -> String {
    let data = s.evidence_dir.parent().map_or_else(|| "the data folder".into(), |p| p.display().to_string());
    let db = match s.store.backend {
        Backend::Sqlite => format!("a SQLite file, haven.db, in {data}"),
        Backend::Postgres => "the trust's PostgreSQL server ([data] database)".into(),
    };
    format!(
        "Haven is self-hosted: everything below is on the trust's own server, not a supplier's. The record is {db}; evidence files and access logs are in {data} \
         (owner-only), and evidence and second-factor secrets are sealed with a key kept in its own folder beside it. Backups follow the trust's backup policy."
    )
}

async fn data_map(State(s): State<Service>, headers: HeaderMap) -> Response {
    let w = match signed_in(&s, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    if !may_see_map(&w.account) {
        return with_status(
            page(&s, "Not for your role", Some(&w), "<p>The safeguarding leads, the headteacher and IT read the data map.</p>"),
            StatusCode::FORBIDDEN,
        );
    }
    let r = s.settings().retention;
    let rows: String = TABLE
        .iter()
        .map(|row| {
            let days = r.days(row.class);
            let set = if r.is_default(row.class) {
                "the default".to_string()
            } else {
                format!("set in [retention] {}; the default is {}", row.class.key(), row.default_said)
            };
            format!(
                "<tr><th scope=\"row\">{}</th><td>{}</td><td>{}</td><td><strong>{}</strong> <small>({})</small></td><td>{}</td><td>{}</td></tr>",
                esc(row.title),
                esc(row.what),
                esc(row.held),
                esc(&said(days)),
                esc(&set),
                esc(row.then),
                esc(row.why)
            )
        })
        .collect();
    let runs = s.store.retention_runs(10).await.unwrap_or_default();
    let run_rows: String = runs
        .iter()
        .map(|run| {
            let c = &run.counts;
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&run.at.strftime("%Y-%m-%d %H:%M UTC").to_string()),
                c.log_files_deleted,
                c.events_deleted,
                c.alerts_anonymised + c.reports_anonymised,
                c.alerts_deleted,
                c.incidents_deleted,
                c.evidence_deleted + c.evidence_files_deleted,
                c.audit_deleted,
                c.held_kept
            )
        })
        .collect();
    let body = format!(
        "<p>{}</p><p>The retention job runs daily in <code>haven serve</code> and applies the periods below; each run is recorded (below) and in the audit log. \
         An incident under legal hold is kept, with its alerts and evidence, whatever its period. A subject access request is answered with \
         <code>haven sar export --person LOGIN --out FILE.zip</code>. <a href=\"/admin/data-map.csv\">Download this table (CSV)</a> for the DPIA.</p>\
         <table><caption>What Haven holds, where, and for how long</caption><thead><tr><th scope=\"col\">Data</th><th scope=\"col\">What is held</th><th scope=\"col\">Where</th>\
         <th scope=\"col\">Kept for</th><th scope=\"col\">Then</th><th scope=\"col\">Why</th></tr></thead><tbody>{rows}</tbody></table>\
         <h2>Latest retention runs</h2>{}",
        esc(&where_kept(&s)),
        if runs.is_empty() {
            "<p>None yet: the first runs ten minutes after <code>haven serve</code> starts.</p>".to_string()
        } else {
            format!(
                "<table><thead><tr><th scope=\"col\">When</th><th scope=\"col\">Log files</th><th scope=\"col\">Operational rows</th><th scope=\"col\">Anonymised</th>\
                 <th scope=\"col\">Alerts deleted</th><th scope=\"col\">Incidents deleted</th><th scope=\"col\">Evidence deleted</th><th scope=\"col\">Audit rows</th>\
                 <th scope=\"col\">Kept by legal hold</th></tr></thead><tbody>{run_rows}</tbody></table>"
            )
        }
    );
    page(&s, "Data map", Some(&w), &body)
}

/// A CSV field, quoted, and safe from spreadsheet formulas.
fn field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) { format!("'{s}") } else { s.to_string() };
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// The data map as CSV.
pub fn csv(r: &Retention) -> String {
    let mut out = String::from("class,data,what is held,where,kept for (days),kept for,then,why\r\n");
    for row in &TABLE {
        let days = r.days(row.class);
        let cells =
            [row.class.key().to_string(), row.title.into(), row.what.into(), row.held.into(), days.to_string(), said(days), row.then.into(), row.why.into()];
        out.push_str(&cells.iter().map(|c| field(c)).collect::<Vec<_>>().join(","));
        out.push_str("\r\n");
    }
    out
}

async fn data_map_csv(State(s): State<Service>, headers: HeaderMap) -> Response {
    let w = match signed_in(&s, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    if !may_see_map(&w.account) {
        return with_status(page(&s, "Not for your role", Some(&w), ""), StatusCode::FORBIDDEN);
    }
    (
        [(header::CONTENT_TYPE, "text/csv; charset=utf-8"), (header::CONTENT_DISPOSITION, "attachment; filename=\"haven-data-map.csv\"")],
        csv(&s.settings().retention),
    )
        .into_response()
}

async fn hold_page(State(s): State<Service>, headers: HeaderMap, Path(id): Path<i64>) -> Response {
    let w = match signed_in(&s, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let Ok(found) = s.store.legal_hold(&w.account, id, Timestamp::now()).await else { return crate::unaudited() };
    let Some((title, hold)) = found else {
        return with_status(page(&s, "Not found", Some(&w), "<p>No such incident, or not one you may see.</p>"), StatusCode::NOT_FOUND);
    };
    let state = if hold.held {
        format!(
            "<p><strong>Under legal hold</strong> since {}: {}</p>",
            esc(&hold.at.map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string()).unwrap_or_default()),
            esc(hold.reason.as_deref().unwrap_or(""))
        )
    } else {
        "<p>Not under legal hold: it is deleted, with its alerts and evidence, when its retention period ends after closing.</p>".to_string()
    };
    let form = if Store::may_set_holds(&w.account) {
        let (value, button, label) = if hold.held {
            ("0", "Clear the legal hold", "Why it may end")
        } else {
            ("1", "Put under legal hold", "Why (e.g. a police investigation, a claim, an inquiry)")
        };
        format!(
            "<form method=\"post\" action=\"/incidents/{id}/hold\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><input type=\"hidden\" name=\"hold\" value=\"{value}\">\
             <label>{label} <input name=\"reason\" required></label><button>{button}</button></form>",
            esc(&w.csrf)
        )
    } else {
        "<p>The safeguarding leads set and clear legal holds.</p>".to_string()
    };
    let body = format!("<p><a href=\"/incidents/{id}\">{}</a></p>{state}{form}", esc(&title));
    page(&s, &format!("Legal hold: incident {id}"), Some(&w), &body)
}

async fn hold_set(State(s): State<Service>, headers: HeaderMap, Path(id): Path<i64>, Form(f): Form<HashMap<String, String>>) -> Response {
    let w = match signed_in(&s, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    if !csrf_ok(&w.csrf, f.get("csrf")) {
        return with_status(page(&s, "Form expired", Some(&w), ""), StatusCode::FORBIDDEN);
    }
    let hold = f.get("hold").map(String::as_str) == Some("1");
    match s.store.set_legal_hold(&w.account, id, hold, f.get("reason").map_or("", String::as_str), Timestamp::now()).await {
        Ok(true) => Redirect::to(&format!("/incidents/{id}/hold")).into_response(),
        Ok(false) => with_status(
            page(&s, "Not for your role", Some(&w), "<p>The safeguarding leads set and clear legal holds on incidents they work.</p>"),
            StatusCode::FORBIDDEN,
        ),
        Err(e) => with_status(page(&s, "Not saved", Some(&w), &format!("<p class=\"err\">{}</p>", esc(&e.to_string()))), StatusCode::BAD_REQUEST),
    }
}

#[cfg(test)]
mod tests {
    use haven_config::retention::Class;

    use super::*;

    #[test]
    fn the_data_map_says_every_class_with_its_period() {
        let mut r = Retention::default();
        r.days[Class::Logs as usize] = 30;
        let text = csv(&r);
        assert_eq!(text.lines().count(), 1 + Class::ALL.len());
        assert!(text.contains("\"logs\",") && text.contains("\"30\",\"30 days\""));
        assert!(text.contains("\"25 years\"") && text.contains("25th birthday"));
        assert_eq!(said(9150), "25 years");
        assert_eq!(said(403), "13 months");
        assert_eq!(said(90), "90 days");
    }
}
