//! Subject access: everything the record holds about one person, by kind,
//! as JSON rows (every column as stored, secrets left out, times as RFC 3339),
//! with the evidence files that may go with it. The read is audited
//! (`sar.export`: who, whose, and how many of each kind, never content).
//!
//! A person is a login (pupil or staff), matched without regard to case, at
//! every school or one. What is about them: their alerts with every
//! occurrence (the words), actions and reports; incidents about them, raised
//! from their alerts, or linked to them (marked `linked`, whose files are
//! left out: they are about someone else first); those incidents' actions,
//! links and evidence rows; filtering changes naming them or asked for by
//! them; their directory entry and acceptances of the acceptable use
//! agreement; devices they own; when they are staff, their account (never
//! its password or second factor), sessions and API keys, and the audit
//! rows of what they did; and the audit rows of who read their record.

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::{Column as _, Row as _};

use crate::{Store, StoreError, ts};

/// One kind of record in the export.
#[derive(Debug, Clone, Serialize)]
pub struct Kind {
    /// File name stem (`alerts`, `incidents`, …).
    pub name: &'static str,
    /// Said to people.
    pub title: &'static str,
    /// The rows.
    pub rows: Vec<Value>,
}

/// An evidence file that belongs with the export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EvidenceFile {
    /// SHA-256 (its name in the evidence folder).
    pub sha256: String,
    /// A name to give it in the export.
    pub name: String,
    /// Why it may not be included, when it may not.
    pub withheld: Option<&'static str>,
}

/// Everything held about one person.
#[derive(Debug, Clone, Serialize)]
pub struct SubjectRecord {
    /// The login asked for.
    pub person: String,
    /// The school asked for (`None`: every school).
    pub school: Option<String>,
    /// When it was read.
    pub at: Timestamp,
    /// Each kind, in a fixed order (empty ones included).
    pub kinds: Vec<Kind>,
    /// Evidence files and screenshots.
    pub files: Vec<EvidenceFile>,
}

impl SubjectRecord {
    /// The rows of one kind.
    pub fn rows(&self, name: &str) -> &[Value] {
        self.kinds.iter().find(|k| k.name == name).map_or(&[], |k| &k.rows)
    }
}

/// A row as JSON: integers, text or null, each column by name; times
/// (`at`, `…_at`, `last_seen`) as RFC 3339.
fn row_json(r: &sqlx::any::AnyRow) -> Value {
    let mut out = Map::new();
    for (i, col) in r.columns().iter().enumerate() {
        let name = col.name();
        let v = if let Ok(v) = r.try_get::<Option<i64>, _>(i) {
            match v {
                Some(n) if name == "at" || name.ends_with("_at") || name == "last_seen" || name == "since" => Value::String(ts(n).to_string()),
                Some(n) => Value::from(n),
                None => Value::Null,
            }
        } else if let Ok(v) = r.try_get::<Option<String>, _>(i) {
            v.map_or(Value::Null, Value::String)
        } else if let Ok(v) = r.try_get::<Option<f64>, _>(i) {
            v.map_or(Value::Null, Value::from)
        } else {
            Value::Null
        };
        out.insert(name.to_string(), v);
    }
    Value::Object(out)
}

fn ids(rows: &[Value], col: &str) -> Vec<i64> {
    let set: BTreeSet<i64> = rows.iter().filter_map(|r| r.get(col).and_then(Value::as_i64)).collect();
    set.into_iter().collect()
}

fn marks(from: usize, n: usize) -> String {
    (0..n).map(|i| format!("${}", from + i)).collect::<Vec<_>>().join(", ")
}

impl Store {
    /// Rows of `sql` (with `{ids}` replaced by placeholders for `list`,
    /// read in chunks), each as JSON.
    async fn rows_for(&self, sql: &str, list: &[i64]) -> Result<Vec<Value>, StoreError> {
        let mut out = Vec::new();
        for chunk in list.chunks(500) {
            let q = sql.replace("{ids}", &marks(1, chunk.len()));
            let mut query = sqlx::query(sqlx::AssertSqlSafe(q));
            for id in chunk {
                query = query.bind(*id);
            }
            out.extend(query.fetch_all(self.pool()).await?.iter().map(row_json));
        }
        Ok(out)
    }

    /// Rows of `sql` bound to the person (`$1`, lower case) and school (`$2`).
    async fn rows_about(&self, sql: &str, person: &str, school: Option<&str>) -> Result<Vec<Value>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql.to_string())).bind(person).bind(school).fetch_all(self.pool()).await?;
        Ok(rows.iter().map(row_json).collect())
    }

    /// Rows of a table another part of Haven may not have made yet: none
    /// when the query fails, said in the log.
    async fn rows_if_there(&self, sql: &str, person: &str, school: Option<&str>) -> Vec<Value> {
        match self.rows_about(sql, person, school).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "subject access: a table could not be read");
                Vec::new()
            }
        }
    }

    /// Everything held about `person` (a login) at `school` (or every
    /// school), read for a subject access request by `actor`; audited.
    pub async fn subject_access(&self, person: &str, school: Option<&str>, actor: &str, now: Timestamp) -> Result<SubjectRecord, StoreError> {
        let p = person.trim().to_lowercase();
        if p.is_empty() {
            return Err(StoreError::Invalid("a subject access export needs the person's login".into()));
        }
        let alerts = self.rows_about("SELECT * FROM alerts WHERE LOWER(person) = $1 AND ($2 IS NULL OR school = $2) ORDER BY id", &p, school).await?;
        let alert_ids = ids(&alerts, "id");
        let occurrences = self.rows_for("SELECT * FROM occurrences WHERE alert IN ({ids}) ORDER BY alert, at, id", &alert_ids).await?;
        let alert_actions = self.rows_for("SELECT * FROM alert_actions WHERE alert IN ({ids}) ORDER BY alert, at, id", &alert_ids).await?;

        // Incidents: about them, from their alerts, or linked to them.
        let mut incidents = self
            .rows_about(
                "SELECT i.*, 'subject' AS concerning FROM incidents i WHERE LOWER(i.person) = $1 AND ($2 IS NULL OR i.school = $2) ORDER BY i.id",
                &p,
                school,
            )
            .await?;
        let mut have: BTreeSet<i64> = ids(&incidents, "id").into_iter().collect();
        let from_alerts = self.rows_for("SELECT i.*, 'their-alert' AS concerning FROM incidents i WHERE i.alert IN ({ids}) ORDER BY i.id", &alert_ids).await?;
        let linked_alerts: Vec<i64> = {
            let targets: Vec<String> = alert_ids.iter().map(ToString::to_string).collect();
            let mut found = Vec::new();
            for chunk in targets.chunks(500) {
                let q = format!("SELECT incident FROM incident_links WHERE kind = 'alert' AND target IN ({})", marks(1, chunk.len()));
                let mut query = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(q));
                for t in chunk {
                    query = query.bind(t);
                }
                found.extend(query.fetch_all(self.pool()).await?);
            }
            found
        };
        let by_link: Vec<i64> = sqlx::query_scalar(
            "SELECT l.incident FROM incident_links l JOIN incidents i ON i.id = l.incident \
             WHERE l.kind = 'person' AND LOWER(l.target) = LOWER(i.school) || '/' || $1 AND ($2 IS NULL OR i.school = $2)",
        )
        .bind(&p)
        .bind(school)
        .fetch_all(self.pool())
        .await?;
        for row in from_alerts {
            if row.get("id").and_then(Value::as_i64).is_some_and(|id| have.insert(id)) {
                incidents.push(row);
            }
        }
        let linked: Vec<i64> = linked_alerts.into_iter().chain(by_link).filter(|id| !have.contains(id)).collect::<BTreeSet<_>>().into_iter().collect();
        for row in self.rows_for("SELECT i.*, 'linked' AS concerning FROM incidents i WHERE i.id IN ({ids}) ORDER BY i.id", &linked).await? {
            if row.get("id").and_then(Value::as_i64).is_some_and(|id| have.insert(id)) {
                incidents.push(row);
            }
        }
        let incident_ids: Vec<i64> = have.iter().copied().collect();
        let incident_actions = self.rows_for("SELECT * FROM incident_actions WHERE incident IN ({ids}) ORDER BY incident, at, id", &incident_ids).await?;
        let incident_links = self.rows_for("SELECT * FROM incident_links WHERE incident IN ({ids}) ORDER BY incident, id", &incident_ids).await?;
        let evidence = self.rows_for("SELECT * FROM evidence WHERE incident IN ({ids}) ORDER BY incident, id", &incident_ids).await?;

        let mut reports = self.rows_about("SELECT * FROM reports WHERE LOWER(person) = $1 AND ($2 IS NULL OR school = $2) ORDER BY id", &p, school).await?;
        let mut seen_reports: BTreeSet<i64> = ids(&reports, "id").into_iter().collect();
        for row in self.rows_for("SELECT * FROM reports WHERE alert IN ({ids}) ORDER BY id", &alert_ids).await? {
            if row.get("id").and_then(Value::as_i64).is_some_and(|id| seen_reports.insert(id)) {
                reports.push(row);
            }
        }

        // Staff: the accounts whose e-mail is the login, or starts with it and `@`.
        let accounts = self
            .rows_about(
                "SELECT id, email, name, role, school, created_at, disabled, failed_logins, locked_until FROM accounts \
                 WHERE (LOWER(email) = $1 OR LOWER(email) LIKE $1 || '@%') AND ($2 IS NULL OR school IS NULL OR school = $2) ORDER BY id",
                &p,
                school,
            )
            .await?;
        // LIKE finds the candidates; the exact match is made here.
        let accounts: Vec<Value> = accounts
            .into_iter()
            .filter(|a| {
                let email = a.get("email").and_then(Value::as_str).unwrap_or_default().to_lowercase();
                email == p || email.strip_prefix(p.as_str()).is_some_and(|rest| rest.starts_with('@'))
            })
            .collect();
        let account_ids = ids(&accounts, "id");
        let sessions = self
            .rows_for("SELECT account, created_at, expires_at, second_factor FROM sessions WHERE account IN ({ids}) ORDER BY created_at", &account_ids)
            .await?;
        let api_keys =
            self.rows_for("SELECT id, account, created_at, expires_at, revoked_at FROM api_keys WHERE account IN ({ids}) ORDER BY id", &account_ids).await?;
        // How the record names them as an actor: `account:N`, or the e-mail.
        let mut actors: Vec<String> = account_ids.iter().map(|id| format!("account:{id}")).collect();
        actors.extend(accounts.iter().filter_map(|a| a.get("email").and_then(Value::as_str)).map(str::to_string));

        let mut changes = self
            .rows_about(
                "SELECT * FROM filter_changes WHERE ((scope = 'user' AND LOWER(scope_id) = $1) OR LOWER(requested_by) = $1 OR LOWER(requested_by) = 'pupil ' || $1) \
                 AND ($2 IS NULL OR school = $2) ORDER BY id",
                &p,
                school,
            )
            .await?;
        if !actors.is_empty() {
            let q = format!("SELECT * FROM filter_changes WHERE requested_by IN ({}) ORDER BY id", marks(1, actors.len()));
            let mut query = sqlx::query(sqlx::AssertSqlSafe(q));
            for a in &actors {
                query = query.bind(a);
            }
            let mut seen: BTreeSet<i64> = ids(&changes, "id").into_iter().collect();
            for row in query.fetch_all(self.pool()).await?.iter().map(row_json) {
                if row.get("id").and_then(Value::as_i64).is_some_and(|id| seen.insert(id)) {
                    changes.push(row);
                }
            }
        }
        let change_events =
            self.rows_for("SELECT * FROM filter_change_events WHERE change_id IN ({ids}) ORDER BY change_id, at, id", &ids(&changes, "id")).await?;

        let directory = self.rows_about("SELECT * FROM people WHERE LOWER(login) = $1 AND ($2 IS NULL OR school = $2)", &p, school).await?;
        let mut acceptances =
            self.rows_about("SELECT * FROM acceptances WHERE LOWER(person) = $1 AND ($2 IS NULL OR school = $2) ORDER BY id", &p, school).await?;
        acceptances.extend(
            self.rows_if_there("SELECT * FROM agreement_acceptances WHERE LOWER(person) = $1 AND ($2 IS NULL OR school = $2) ORDER BY id", &p, school).await,
        );
        let training =
            self.rows_if_there("SELECT * FROM training_records WHERE LOWER(person) = $1 AND ($2 IS NULL OR school = $2) ORDER BY id", &p, school).await;
        let devices = self
            .rows_about(
                "SELECT id, school, name, owner, created_at, revoked_at, last_seen_at, agent FROM devices WHERE LOWER(owner) = $1 AND ($2 IS NULL OR school = $2) ORDER BY id",
                &p,
                school,
            )
            .await?;

        // Who read their record, and (staff) what they did.
        let mut objects: Vec<String> = alert_ids.iter().map(|id| format!("alert:{id}")).collect();
        objects.extend(incident_ids.iter().map(|id| format!("incident:{id}")));
        // `person:SCHOOL/LOGIN` (LIKE finds the candidates; the exact match is made here).
        let wanted = |object: &str| {
            object
                .strip_prefix("person:")
                .and_then(|rest| rest.split_once('/'))
                .is_some_and(|(sch, login)| login.to_lowercase() == p && school.is_none_or(|want| sch == want || sch == "*"))
        };
        let candidates = sqlx::query("SELECT at, actor, action, object, detail FROM audit WHERE LOWER(object) LIKE 'person:%/' || $1 ORDER BY at, id")
            .bind(&p)
            .fetch_all(self.pool())
            .await?;
        let mut audit: Vec<Value> =
            candidates.iter().map(row_json).filter(|r| r.get("object").and_then(Value::as_str).is_some_and(|o| wanted(&o.to_lowercase()))).collect();
        for (list, col) in [(&objects, "object"), (&actors, "actor")] {
            for chunk in list.chunks(500) {
                let q = format!("SELECT at, actor, action, object, detail FROM audit WHERE {col} IN ({}) ORDER BY at, id", marks(1, chunk.len()));
                let mut query = sqlx::query(sqlx::AssertSqlSafe(q));
                for o in chunk {
                    query = query.bind(o);
                }
                audit.extend(query.fetch_all(self.pool()).await?.iter().map(row_json));
            }
        }

        // Files: incident evidence (not of an incident they are only linked
        // to; never pictures of a possibly illegal one) and screenshots.
        let mut files: Vec<EvidenceFile> = Vec::new();
        let concerning = |id: i64| incidents.iter().find(|i| i.get("id").and_then(Value::as_i64) == Some(id));
        for e in &evidence {
            let (Some(sha), Some(inc)) = (e.get("sha256").and_then(Value::as_str), e.get("incident").and_then(Value::as_i64)) else { continue };
            let i = concerning(inc);
            let withheld = match (i.and_then(|i| i.get("kind")).and_then(Value::as_str), i.and_then(|i| i.get("concerning")).and_then(Value::as_str)) {
                (Some("possibly-illegal"), _) => Some("evidence of a possibly illegal incident is never copied"),
                (_, Some("linked")) => Some("on an incident about someone else: third-party data"),
                _ => None,
            };
            let name = e.get("filename").and_then(Value::as_str).unwrap_or("evidence");
            let id = e.get("id").and_then(Value::as_i64).unwrap_or_default();
            files.push(EvidenceFile { sha256: sha.to_string(), name: format!("incident-{inc}-{id}-{}", safe_name(name)), withheld });
        }
        for (rows, what) in [(&alerts, "alert"), (&occurrences, "occurrence")] {
            for r in rows {
                if let (Some(sha), Some(id)) = (r.get("screenshot").and_then(Value::as_str), r.get("id").and_then(Value::as_i64))
                    && !files.iter().any(|f| f.sha256 == sha)
                {
                    files.push(EvidenceFile { sha256: sha.to_string(), name: format!("{what}-{id}-screenshot"), withheld: None });
                }
            }
        }

        let kinds = vec![
            Kind { name: "alerts", title: "Alerts", rows: alerts },
            Kind { name: "occurrences", title: "What was seen (each occurrence of an alert, with the words)", rows: occurrences },
            Kind { name: "alert_actions", title: "Actions on the alerts", rows: alert_actions },
            Kind { name: "incidents", title: "Incidents", rows: incidents },
            Kind { name: "incident_actions", title: "Actions on the incidents", rows: incident_actions },
            Kind { name: "incident_links", title: "Links of the incidents", rows: incident_links },
            Kind { name: "evidence", title: "Evidence on the incidents", rows: evidence },
            Kind { name: "reports", title: "Reports", rows: reports },
            Kind { name: "filter_changes", title: "Filtering changes and requests", rows: changes },
            Kind { name: "filter_change_events", title: "Steps of those changes", rows: change_events },
            Kind { name: "directory", title: "Directory entry (from the school's MIS)", rows: directory },
            Kind { name: "acceptances", title: "Acceptable use agreements accepted", rows: acceptances },
            Kind { name: "training", title: "Training records", rows: training },
            Kind { name: "devices", title: "Devices they own", rows: devices },
            Kind { name: "accounts", title: "Staff accounts", rows: accounts },
            Kind { name: "sessions", title: "Sign-in sessions", rows: sessions },
            Kind { name: "api_keys", title: "API keys", rows: api_keys },
            Kind { name: "audit", title: "Audit log: who read or changed their record, and what they did (staff)", rows: audit },
        ];
        let counts: Vec<String> = kinds.iter().filter(|k| !k.rows.is_empty()).map(|k| format!("{}={}", k.name, k.rows.len())).collect();
        let object = format!("person:{}/{p}", school.unwrap_or("*"));
        self.audit(now, actor, "sar.export", &object, &format!("{} files={}", counts.join(" "), files.len())).await?;
        Ok(SubjectRecord { person: p, school: school.map(str::to_string), at: now, kinds, files })
    }
}

/// A file name with only letters, digits, `.`, `-` and `_`.
fn safe_name(name: &str) -> String {
    let s: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' }).take(80).collect();
    if s.is_empty() { "file".into() } else { s }
}

#[cfg(test)]
#[path = "sar_tests.rs"]
mod tests;
