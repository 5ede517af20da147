//! The filtering checks log the DfE filtering standards ask schools to keep:
//! each probe of each run (when, who ran it, from where, on which device,
//! as which school and group, what was tested through which path, what was
//! expected and seen), with a follow-up note IT or the DSL adds later.

use jiff::Timestamp;
use serde::Serialize;
use sqlx::Row;

use crate::{Store, StoreError, ms, ts};

/// Where a run came from.
pub const ORIGINS: [&str; 4] = ["web", "schedule", "command", "device"];

/// One probe through one path, as observed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// The probe (`iwf`, `ctiru`, `adult`, `gambling`, `self-harm`,
    /// `circumvention`, `safe-search`, `profanity`).
    pub probe: String,
    /// `dns`, `proxy`, or `device` (a pupil's browser).
    pub path: String,
    /// What was asked for.
    pub target: String,
    /// What should have happened.
    pub expected: String,
    /// What did.
    pub got: String,
    /// Whether that is what should have happened.
    pub ok: bool,
}

/// Who ran a check, from where, as whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// The run's id, shared by its probes.
    pub run: String,
    /// When.
    pub at: Timestamp,
    /// Who (an account, `haven selftest` and the user, the schedule, a pupil's device).
    pub who: String,
    /// `web`, `schedule`, `command` or `device`.
    pub origin: String,
    /// The school checked.
    pub school: String,
    /// The group checked.
    pub group: String,
    /// The device, for a check from a pupil's device (its address and browser).
    pub device: Option<String>,
}

/// One row of the checks log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FilterCheck {
    /// Row id.
    pub id: i64,
    /// The run it belongs to.
    pub run: String,
    /// RFC 3339.
    pub at: String,
    /// Who ran it.
    pub who: String,
    /// Where from.
    pub origin: String,
    /// School id.
    pub school: String,
    /// Group id.
    pub group: String,
    /// Device, when run from one.
    pub device: Option<String>,
    /// What was observed.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// What was done about it.
    pub follow_up: Option<String>,
}

impl Store {
    /// Records every probe of one run; returns their ids.
    pub async fn add_filter_checks(&self, run: &Run, outcomes: &[Outcome]) -> Result<Vec<i64>, StoreError> {
        if !ORIGINS.contains(&run.origin.as_str()) {
            return Err(StoreError::Invalid(format!("a filtering check's origin {:?} must be one of {}", run.origin, ORIGINS.join(", "))));
        }
        let mut tx = self.pool.begin().await?;
        let mut ids = Vec::with_capacity(outcomes.len());
        for o in outcomes {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO filter_checks (run, at, who, origin, school, grp, device, probe, path, target, expected, got, ok) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id",
            )
            .bind(&run.run)
            .bind(ms(run.at))
            .bind(&run.who)
            .bind(&run.origin)
            .bind(&run.school)
            .bind(&run.group)
            .bind(run.device.as_deref())
            .bind(&o.probe)
            .bind(&o.path)
            .bind(&o.target)
            .bind(&o.expected)
            .bind(&o.got)
            .bind(i64::from(o.ok))
            .fetch_one(&mut *tx)
            .await?;
            ids.push(id);
        }
        tx.commit().await?;
        Ok(ids)
    }

    /// The checks log, newest first: one school's, or every school's.
    pub async fn filter_checks(&self, school: Option<&str>, limit: i64) -> Result<Vec<FilterCheck>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, run, at, who, origin, school, grp, device, probe, path, target, expected, got, ok, follow_up FROM filter_checks \
             WHERE ($1 IS NULL OR school = $1) ORDER BY at DESC, id DESC LIMIT $2",
        )
        .bind(school)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| FilterCheck {
                id: r.get("id"),
                run: r.get("run"),
                at: ts(r.get("at")).to_string(),
                who: r.get("who"),
                origin: r.get("origin"),
                school: r.get("school"),
                group: r.get("grp"),
                device: r.get("device"),
                outcome: Outcome {
                    probe: r.get("probe"),
                    path: r.get("path"),
                    target: r.get("target"),
                    expected: r.get("expected"),
                    got: r.get("got"),
                    ok: r.get::<i64, _>("ok") != 0,
                },
                follow_up: r.get("follow_up"),
            })
            .collect())
    }

    /// The school a check row is about, to decide who may add its follow-up.
    pub async fn filter_check_school(&self, id: i64) -> Result<String, StoreError> {
        sqlx::query_scalar("SELECT school FROM filter_checks WHERE id = $1").bind(id).fetch_optional(&self.pool).await?.ok_or_else(|| StoreError::NotFound {
            what: "filtering check",
            name: id.to_string(),
            hint: "; open the checks log again",
        })
    }

    /// Adds (or replaces) the follow-up note of one check, audited with who wrote it.
    pub async fn follow_up_filter_check(&self, id: i64, note: &str, who: &str, at: Timestamp) -> Result<(), StoreError> {
        let note = note.trim();
        if note.is_empty() || note.chars().count() > 2000 {
            return Err(StoreError::Invalid("a follow-up says what was done, in at most 2,000 characters".into()));
        }
        let stamped = format!("{note} ({who}, {})", at.strftime("%Y-%m-%d %H:%M UTC"));
        let done = sqlx::query("UPDATE filter_checks SET follow_up = $1 WHERE id = $2").bind(&stamped).bind(id).execute(&self.pool).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound { what: "filtering check", name: id.to_string(), hint: "; open the checks log again" });
        }
        self.audit(at, who, "filter-check.follow-up", &format!("filter-check:{id}"), note).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(probe: &str, ok: bool) -> Outcome {
        Outcome {
            probe: probe.into(),
            path: "dns".into(),
            target: "iwf-test.haven.invalid".into(),
            expected: "blocked".into(),
            got: if ok { "blocked".into() } else { "allowed".into() },
            ok,
        }
    }

    #[tokio::test]
    async fn a_run_is_kept_per_probe_with_its_follow_up() {
        for (store, _dir) in crate::testing::stores().await {
            store.upsert_school("s1", "School One", true).await.unwrap();
            let at: Timestamp = "2026-11-20T10:00:00Z".parse().unwrap();
            let run = Run {
                run: "r1".into(),
                at,
                who: "haven selftest (it)".into(),
                origin: "command".into(),
                school: "s1".into(),
                group: "secondary".into(),
                device: None,
            };
            let ids = store.add_filter_checks(&run, &[outcome("iwf", false), outcome("adult", true)]).await.unwrap();
            assert_eq!(ids.len(), 2);
            let log = store.filter_checks(Some("s1"), 10).await.unwrap();
            assert_eq!(log.len(), 2);
            assert!(log.iter().any(|c| c.outcome.probe == "iwf" && !c.outcome.ok && c.group == "secondary" && c.origin == "command"));
            assert!(store.filter_checks(Some("other"), 10).await.unwrap().is_empty());
            store.follow_up_filter_check(ids[0], "IWF list restored; checked again", "account:1", at).await.unwrap();
            let log = store.filter_checks(None, 10).await.unwrap();
            let row = log.iter().find(|c| c.id == ids[0]).unwrap();
            assert!(row.follow_up.as_deref().unwrap().starts_with("IWF list restored"));
            assert_eq!(store.filter_check_school(ids[0]).await.unwrap(), "s1");
            assert!(store.follow_up_filter_check(ids[0], "  ", "account:1", at).await.is_err());
            let bad = Run { origin: "elsewhere".into(), ..run };
            assert!(store.add_filter_checks(&bad, &[outcome("iwf", true)]).await.is_err());
        }
    }
}
