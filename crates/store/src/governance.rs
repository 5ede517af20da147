//! Who governs filtering and monitoring at a school, and how they show it:
//! the named SLT lead and governor, the DSLs and the IT provider with their
//! responsibilities; staff training (what, when, until when); and the
//! filtering and monitoring review — its sections kept as drafts, the
//! figures of the period it covers read from the record, and its four
//! sign-offs (SLT lead, DSL, IT, governor), after which it is kept as it was
//! signed. What the sections are and who may sign is the web app's business.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use sqlx::Row;

use crate::{Store, StoreError, ms, ts};

/// The people named for filtering and monitoring.
pub const GOVERNANCE_ROLES: [(&str, &str); 4] = [
    ("slt-lead", "Senior leadership team lead for filtering and monitoring"),
    ("governor", "Governor for filtering and monitoring"),
    ("dsl", "Designated safeguarding lead"),
    ("it-provider", "IT service provider"),
];

/// The four who sign a review.
pub const SIGNERS: [(&str, &str); 4] = [("slt-lead", "SLT lead"), ("dsl", "DSL"), ("it", "IT"), ("governor", "Governor")];

/// Kinds of review.
pub const REVIEW_KINDS: [&str; 2] = ["annual", "triggered"];

/// One person in a governance role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoleHolder {
    /// Row id.
    pub id: i64,
    /// School id.
    pub school: String,
    /// `slt-lead`, `governor`, `dsl`, `it-provider`.
    pub role: String,
    /// Their name (or the provider's).
    pub name: String,
    /// How to reach them.
    pub contact: String,
    /// What they are responsible for.
    pub responsibilities: String,
    /// Since when.
    pub since: Timestamp,
    /// When they stopped, if they have.
    pub ended_at: Option<Timestamp>,
}

/// One training record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Training {
    /// Row id.
    pub id: i64,
    /// School id.
    pub school: String,
    /// Who was trained (a name or login).
    pub person: String,
    /// What.
    pub course: String,
    /// When.
    pub completed_at: Timestamp,
    /// Until when it counts, if it expires.
    pub expires_at: Option<Timestamp>,
}

/// Where a training record stands on a day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TrainingState {
    /// In date (or never expires).
    Current,
    /// Expires within 30 days.
    Expiring,
    /// Expired.
    Expired,
}

impl Training {
    /// Where this record stands at `now`: expiring within 30 days, expired, or current.
    #[must_use]
    pub fn state(&self, now: Timestamp) -> TrainingState {
        match self.expires_at {
            Some(e) if e <= now => TrainingState::Expired,
            Some(e) if e <= now.saturating_add(SignedDuration::from_hours(24 * 30)).unwrap_or(now) => TrainingState::Expiring,
            _ => TrainingState::Current,
        }
    }
}

/// One sign-off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignOff {
    /// `slt-lead`, `dsl`, `it`, `governor`.
    pub role: String,
    /// The account that signed.
    pub account: i64,
    /// Who they are, as shown when they signed.
    pub signed_as: String,
    /// When.
    pub signed_at: Timestamp,
}

/// A review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Review {
    /// Row id.
    pub id: i64,
    /// School id.
    pub school: String,
    /// `annual` or `triggered`.
    pub kind: String,
    /// Why a triggered review was started (empty for annual).
    pub reason: String,
    /// The period it covers.
    pub period_from: Timestamp,
    /// Its end.
    pub period_to: Timestamp,
    /// The sections as written, by key.
    pub sections: BTreeMap<String, String>,
    /// `draft` or `complete`.
    pub state: String,
    /// Who started it.
    pub created_by: String,
    /// When.
    pub created_at: Timestamp,
    /// Who saved it last.
    pub updated_by: String,
    /// When.
    pub updated_at: Timestamp,
    /// When the fourth signature made it complete.
    pub completed_at: Option<Timestamp>,
    /// Its signatures.
    pub signoffs: Vec<SignOff>,
}

/// The record's figures for a period, anonymised: what a review is prefilled from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Figures {
    /// Alerts raised, by (category, level).
    pub alerts: BTreeMap<(String, u8), i64>,
    /// Incidents raised, by kind.
    pub incidents: BTreeMap<String, i64>,
    /// Incidents still open at the period's end.
    pub incidents_open: i64,
    /// Filtering changes made or decided in the period: (verdict or kind,
    /// scope, site or category, reason — none for one about one person).
    pub changes: Vec<(String, String, String, Option<String>)>,
    /// Filtering requests in the period, by state.
    pub requests: BTreeMap<String, i64>,
    /// Filtering check probes in the period, and how many failed.
    pub checks: (i64, i64),
    /// Check runs in the period.
    pub check_runs: i64,
    /// Failed probes with a follow-up recorded.
    pub checks_followed_up: i64,
}

fn one_line(what: &str, s: &str, max: usize) -> Result<String, StoreError> {
    let s = s.trim();
    if s.is_empty() || s.chars().count() > max {
        return Err(StoreError::Invalid(format!("{what} must be given, in at most {max} characters")));
    }
    Ok(s.to_string())
}

fn review_row(r: &sqlx::any::AnyRow) -> Result<Review, StoreError> {
    let sections: String = r.try_get("sections")?;
    Ok(Review {
        id: r.try_get("id")?,
        school: r.try_get("school")?,
        kind: r.try_get("kind")?,
        reason: r.try_get("reason")?,
        period_from: ts(r.try_get("period_from")?),
        period_to: ts(r.try_get("period_to")?),
        sections: serde_json::from_str(&sections).unwrap_or_default(),
        state: r.try_get("state")?,
        created_by: r.try_get("created_by")?,
        created_at: ts(r.try_get("created_at")?),
        updated_by: r.try_get("updated_by")?,
        updated_at: ts(r.try_get("updated_at")?),
        completed_at: r.try_get::<Option<i64>, _>("completed_at")?.map(ts),
        signoffs: Vec::new(),
    })
}

const REVIEW: &str = "id, school, kind, reason, period_from, period_to, sections, state, created_by, created_at, updated_by, updated_at, completed_at";

impl Store {
    /// Names someone in a governance role at `school`. Audited.
    #[allow(clippy::too_many_arguments)]
    pub async fn add_role_holder(
        &self,
        school: &str,
        role: &str,
        name: &str,
        contact: &str,
        responsibilities: &str,
        by: &str,
        at: Timestamp,
    ) -> Result<i64, StoreError> {
        if !GOVERNANCE_ROLES.iter().any(|(r, _)| *r == role) {
            return Err(StoreError::Invalid(format!("a governance role is one of {}", GOVERNANCE_ROLES.map(|(r, _)| r).join(", "))));
        }
        let name = one_line("a name", name, 200)?;
        let responsibilities = one_line("their responsibilities", responsibilities, 4000)?;
        let mut tx = self.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO governance_roles (school, role, name, contact, responsibilities, since, recorded_by) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(school)
        .bind(role)
        .bind(&name)
        .bind(contact.trim())
        .bind(&responsibilities)
        .bind(ms(at))
        .bind(by)
        .fetch_one(tx.conn())
        .await?;
        tx.audit(at, by, "governance.role.add", &format!("governance-role:{id}"), &format!("{school} {role}")).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Ends someone's time in a role (kept, not deleted). Audited. Whether it was theirs to end.
    pub async fn end_role_holder(&self, school: &str, id: i64, by: &str, at: Timestamp) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let n = sqlx::query("UPDATE governance_roles SET ended_at = $3, ended_by = $4 WHERE id = $1 AND school = $2 AND ended_at IS NULL")
            .bind(id)
            .bind(school)
            .bind(ms(at))
            .bind(by)
            .execute(tx.conn())
            .await?
            .rows_affected();
        if n == 0 {
            return Ok(false);
        }
        tx.audit(at, by, "governance.role.end", &format!("governance-role:{id}"), school).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Everyone in a governance role at `school`, those in post first.
    pub async fn role_holders(&self, school: &str) -> Result<Vec<RoleHolder>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, school, role, name, contact, responsibilities, since, ended_at FROM governance_roles WHERE school = $1 \
             ORDER BY CASE WHEN ended_at IS NULL THEN 0 ELSE 1 END, role, since DESC, id",
        )
        .bind(school)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RoleHolder {
                    id: r.try_get("id")?,
                    school: r.try_get("school")?,
                    role: r.try_get("role")?,
                    name: r.try_get("name")?,
                    contact: r.try_get("contact")?,
                    responsibilities: r.try_get("responsibilities")?,
                    since: ts(r.try_get("since")?),
                    ended_at: r.try_get::<Option<i64>, _>("ended_at")?.map(ts),
                })
            })
            .collect()
    }

    /// Records training. Audited.
    #[allow(clippy::too_many_arguments)]
    pub async fn add_training(
        &self,
        school: &str,
        person: &str,
        course: &str,
        completed_at: Timestamp,
        expires_at: Option<Timestamp>,
        by: &str,
        at: Timestamp,
    ) -> Result<i64, StoreError> {
        let person = one_line("who was trained", person, 200)?;
        let course = one_line("the training", course, 300)?;
        if expires_at.is_some_and(|e| e <= completed_at) {
            return Err(StoreError::Invalid("training expires after it was done".into()));
        }
        let mut tx = self.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO training_records (school, person, course, completed_at, expires_at, recorded_by, recorded_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(school)
        .bind(&person)
        .bind(&course)
        .bind(ms(completed_at))
        .bind(expires_at.map(ms))
        .bind(by)
        .bind(ms(at))
        .fetch_one(tx.conn())
        .await?;
        tx.audit(at, by, "governance.training.add", &format!("training:{id}"), school).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Every training record at `school`, soonest to expire first (never-expiring last).
    pub async fn training(&self, school: &str) -> Result<Vec<Training>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, school, person, course, completed_at, expires_at FROM training_records WHERE school = $1 \
             ORDER BY CASE WHEN expires_at IS NULL THEN 1 ELSE 0 END, expires_at, person, id",
        )
        .bind(school)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Training {
                    id: r.try_get("id")?,
                    school: r.try_get("school")?,
                    person: r.try_get("person")?,
                    course: r.try_get("course")?,
                    completed_at: ts(r.try_get("completed_at")?),
                    expires_at: r.try_get::<Option<i64>, _>("expires_at")?.map(ts),
                })
            })
            .collect()
    }

    /// Starts a review (`annual`, or `triggered` with its reason) of the
    /// period `from`..`to`, its sections prefilled. Audited. Returns its id.
    #[allow(clippy::too_many_arguments)]
    pub async fn start_review(
        &self,
        school: &str,
        kind: &str,
        reason: &str,
        from: Timestamp,
        to: Timestamp,
        sections: &BTreeMap<String, String>,
        by: &str,
        at: Timestamp,
    ) -> Result<i64, StoreError> {
        if !REVIEW_KINDS.contains(&kind) {
            return Err(StoreError::Invalid("a review is annual or triggered".into()));
        }
        let reason = reason.trim();
        if kind == "triggered" && reason.is_empty() {
            return Err(StoreError::Invalid("a triggered review says why (a new risk, new technology, an incident)".into()));
        }
        if to <= from {
            return Err(StoreError::Invalid("a review's period ends after it starts".into()));
        }
        let json = serde_json::to_string(sections).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let mut tx = self.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO reviews (school, kind, reason, period_from, period_to, sections, state, created_by, created_at, updated_by, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'draft', $7, $8, $7, $8) RETURNING id",
        )
        .bind(school)
        .bind(kind)
        .bind(reason)
        .bind(ms(from))
        .bind(ms(to))
        .bind(&json)
        .bind(by)
        .bind(ms(at))
        .fetch_one(tx.conn())
        .await?;
        tx.audit(at, by, "review.start", &format!("review:{id}"), &format!("{school} {kind}")).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// One review with its sign-offs.
    pub async fn review(&self, id: i64) -> Result<Option<Review>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {REVIEW} FROM reviews WHERE id = $1"))).bind(id).fetch_optional(self.pool()).await?;
        let Some(mut review) = row.as_ref().map(review_row).transpose()? else { return Ok(None) };
        let rows = sqlx::query("SELECT role, account, signed_as, signed_at FROM review_signoffs WHERE review = $1 ORDER BY signed_at, id")
            .bind(id)
            .fetch_all(self.pool())
            .await?;
        review.signoffs = rows
            .iter()
            .map(|r| {
                Ok(SignOff {
                    role: r.try_get("role")?,
                    account: r.try_get("account")?,
                    signed_as: r.try_get("signed_as")?,
                    signed_at: ts(r.try_get("signed_at")?),
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(Some(review))
    }

    /// A school's reviews, newest first (without their sign-offs).
    pub async fn reviews(&self, school: &str) -> Result<Vec<Review>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {REVIEW} FROM reviews WHERE school = $1 ORDER BY created_at DESC, id DESC")))
            .bind(school)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(review_row).collect()
    }

    /// Saves a draft's sections. A draft someone had already signed loses
    /// its signatures, since they signed other words. A completed review is
    /// never changed. Audited. Returns how many signatures were withdrawn.
    pub async fn save_review(&self, id: i64, sections: &BTreeMap<String, String>, by: &str, at: Timestamp) -> Result<u64, StoreError> {
        let json = serde_json::to_string(sections).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let mut tx = self.begin().await?;
        let state: Option<String> = sqlx::query_scalar("SELECT state FROM reviews WHERE id = $1").bind(id).fetch_optional(tx.conn()).await?;
        match state.as_deref() {
            None => return Err(StoreError::NotFound { what: "review", name: id.to_string(), hint: "; open the reviews page again" }),
            Some("draft") => {}
            Some(_) => return Err(StoreError::Invalid("this review is signed and complete; it is kept as it was signed".into())),
        }
        sqlx::query("UPDATE reviews SET sections = $2, updated_by = $3, updated_at = $4 WHERE id = $1")
            .bind(id)
            .bind(&json)
            .bind(by)
            .bind(ms(at))
            .execute(tx.conn())
            .await?;
        let withdrawn = sqlx::query("DELETE FROM review_signoffs WHERE review = $1").bind(id).execute(tx.conn()).await?.rows_affected();
        let detail = if withdrawn > 0 { format!("saved; {withdrawn} signature(s) withdrawn for the changed text") } else { "saved".into() };
        tx.audit(at, by, "review.save", &format!("review:{id}"), &detail).await?;
        tx.commit().await?;
        Ok(withdrawn)
    }

    /// Signs a draft as `role` (one of [`SIGNERS`]); with the fourth
    /// signature the review is complete and kept read-only. Whether the
    /// account may sign as that role is for the caller to decide. Audited.
    /// Returns whether the review is now complete.
    pub async fn sign_review(&self, id: i64, role: &str, account: i64, signed_as: &str, at: Timestamp) -> Result<bool, StoreError> {
        if !SIGNERS.iter().any(|(r, _)| *r == role) {
            return Err(StoreError::Invalid(format!("a review is signed as one of {}", SIGNERS.map(|(r, _)| r).join(", "))));
        }
        let mut tx = self.begin().await?;
        let state: Option<String> = sqlx::query_scalar("SELECT state FROM reviews WHERE id = $1").bind(id).fetch_optional(tx.conn()).await?;
        match state.as_deref() {
            None => return Err(StoreError::NotFound { what: "review", name: id.to_string(), hint: "; open the reviews page again" }),
            Some("draft") => {}
            Some(_) => return Err(StoreError::Invalid("this review is already complete".into())),
        }
        let (taken, same): (i64, i64) = {
            let r = sqlx::query("SELECT COUNT(*) AS taken, SUM(CASE WHEN account = $3 THEN 1 ELSE 0 END) AS same FROM review_signoffs WHERE review = $1 AND (role = $2 OR account = $3)")
                .bind(id)
                .bind(role)
                .bind(account)
                .fetch_one(tx.conn())
                .await?;
            (r.try_get("taken")?, r.try_get::<Option<i64>, _>("same")?.unwrap_or(0))
        };
        if same > 0 {
            return Err(StoreError::Invalid("you have already signed this review; each of the four signs as themselves".into()));
        }
        if taken > 0 {
            return Err(StoreError::Invalid(format!("the {role} has already signed this review")));
        }
        sqlx::query("INSERT INTO review_signoffs (review, role, account, signed_as, signed_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(id)
            .bind(role)
            .bind(account)
            .bind(signed_as)
            .bind(ms(at))
            .execute(tx.conn())
            .await?;
        let signed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM review_signoffs WHERE review = $1").bind(id).fetch_one(tx.conn()).await?;
        let complete = usize::try_from(signed).unwrap_or(0) >= SIGNERS.len();
        if complete {
            sqlx::query("UPDATE reviews SET state = 'complete', completed_at = $2 WHERE id = $1").bind(id).bind(ms(at)).execute(tx.conn()).await?;
        }
        tx.audit(at, &format!("account:{account}"), "review.sign", &format!("review:{id}"), &format!("as {role}{}", if complete { "; complete" } else { "" }))
            .await?;
        tx.commit().await?;
        Ok(complete)
    }

    /// When the next annual review is due: a year after the last completed
    /// one; `None` when none was ever completed (due now).
    pub async fn review_due(&self, school: &str) -> Result<Option<Timestamp>, StoreError> {
        let last: Option<i64> = sqlx::query_scalar("SELECT MAX(completed_at) FROM reviews WHERE school = $1 AND state = 'complete' AND kind = 'annual'")
            .bind(school)
            .fetch_one(self.pool())
            .await?;
        Ok(last.map(|l| {
            let done = ts(l);
            done.to_zoned(jiff::tz::TimeZone::UTC).saturating_add(jiff::Span::new().years(1)).timestamp()
        }))
    }

    /// The record's anonymised figures for `school` between `from` and `to`.
    pub async fn review_figures(&self, school: &str, from: Timestamp, to: Timestamp) -> Result<Figures, StoreError> {
        let (f, t) = (ms(from), ms(to));
        let mut out = Figures::default();
        let rows = sqlx::query(
            "SELECT category, level, COUNT(*) AS n FROM alerts WHERE school = $1 AND received_at >= $2 AND received_at < $3 GROUP BY category, level",
        )
        .bind(school)
        .bind(f)
        .bind(t)
        .fetch_all(self.pool())
        .await?;
        for r in &rows {
            let level = u8::try_from(r.try_get::<i64, _>("level")?).unwrap_or(0);
            out.alerts.insert((r.try_get("category")?, level), r.try_get("n")?);
        }
        let rows = sqlx::query("SELECT kind, COUNT(*) AS n FROM incidents WHERE school = $1 AND raised_at >= $2 AND raised_at < $3 GROUP BY kind")
            .bind(school)
            .bind(f)
            .bind(t)
            .fetch_all(self.pool())
            .await?;
        for r in &rows {
            out.incidents.insert(r.try_get("kind")?, r.try_get("n")?);
        }
        out.incidents_open =
            sqlx::query_scalar("SELECT COUNT(*) FROM incidents WHERE school = $1 AND raised_at < $2 AND (closed_at IS NULL OR closed_at >= $2)")
                .bind(school)
                .bind(t)
                .fetch_one(self.pool())
                .await?;
        let rows = sqlx::query(
            "SELECT kind, scope, verdict, site, category, reason, state FROM filter_changes WHERE school = $1 AND \
             ((created_at >= $2 AND created_at < $3) OR (decided_at >= $2 AND decided_at < $3)) ORDER BY created_at, id",
        )
        .bind(school)
        .bind(f)
        .bind(t)
        .fetch_all(self.pool())
        .await?;
        for r in &rows {
            let kind: String = r.try_get("kind")?;
            let state: String = r.try_get("state")?;
            *out.requests.entry(state.clone()).or_default() += 1;
            if state != "in-force" && kind != "change" {
                continue;
            }
            let scope: String = r.try_get("scope")?;
            let what = r.try_get::<Option<String>, _>("site")?.or(r.try_get::<Option<String>, _>("category")?).unwrap_or_default();
            let verdict = r.try_get::<Option<String>, _>("verdict")?.unwrap_or(kind);
            // A change for one person may name them in its reason: left out.
            let reason = if scope == "user" { None } else { Some(r.try_get::<String, _>("reason")?) };
            out.changes.push((verdict, scope, what, reason));
        }
        let r = sqlx::query(
            "SELECT COUNT(*) AS n, COALESCE(SUM(CASE WHEN ok = 0 THEN 1 ELSE 0 END), 0) AS failed, COUNT(DISTINCT run) AS runs, \
             COALESCE(SUM(CASE WHEN ok = 0 AND follow_up IS NOT NULL THEN 1 ELSE 0 END), 0) AS followed FROM filter_checks WHERE school = $1 AND at >= $2 AND at < $3",
        )
        .bind(school)
        .bind(f)
        .bind(t)
        .fetch_one(self.pool())
        .await?;
        out.checks = (r.try_get("n")?, r.try_get("failed")?);
        out.check_runs = r.try_get("runs")?;
        out.checks_followed_up = r.try_get("followed")?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn roles_training_and_a_review_signed_by_four() {
        for (store, _dir) in crate::testing::stores().await {
            store.upsert_school("oak", "Oak", false).await.unwrap();
            let now = t("2026-11-01T10:00:00Z");
            let mut ids = Vec::new();
            for (email, role) in [
                ("head@oak", crate::Role::Headteacher),
                ("dsl@oak", crate::Role::Dsl),
                ("it@oak", crate::Role::ItTechnician),
                ("gov@oak", crate::Role::Governor),
            ] {
                store.add_account(email, role, Some("oak"), "a long password 1", now).await.unwrap();
                ids.push(store.account_by_email(email).await.unwrap().id);
            }
            // Roles.
            let slt =
                store.add_role_holder("oak", "slt-lead", "Pat Head", "head@oak", "Owns the filtering and monitoring policy", "account:1", now).await.unwrap();
            assert!(store.add_role_holder("oak", "janitor", "X", "", "y", "account:1", now).await.is_err());
            store.add_role_holder("oak", "it-provider", "Acme IT Ltd", "help@acme", "Runs the filter; daily checks", "account:1", now).await.unwrap();
            assert!(!store.end_role_holder("elm", slt, "account:1", now).await.unwrap(), "another school's");
            assert!(store.end_role_holder("oak", slt, "account:1", now).await.unwrap());
            let holders = store.role_holders("oak").await.unwrap();
            assert_eq!(holders.len(), 2);
            assert_eq!(holders[0].role, "it-provider");
            assert!(holders[1].ended_at.is_some());
            // Training: expired, expiring within 30 days, current.
            let day = SignedDuration::from_hours(24);
            store.add_training("oak", "Sam Teacher", "Online safety", now - day * 400, Some(now - day), "account:1", now).await.unwrap();
            store.add_training("oak", "Kim Teacher", "Online safety", now - day * 300, Some(now + day * 10), "account:1", now).await.unwrap();
            store.add_training("oak", "Lee Teacher", "Prevent", now - day * 3, None, "account:1", now).await.unwrap();
            assert!(store.add_training("oak", "Lee", "x", now, Some(now - day), "account:1", now).await.is_err());
            let tr = store.training("oak").await.unwrap();
            let states: Vec<_> = tr.iter().map(|x| (x.person.as_str(), x.state(now))).collect();
            assert_eq!(states, [("Sam Teacher", TrainingState::Expired), ("Kim Teacher", TrainingState::Expiring), ("Lee Teacher", TrainingState::Current)]);

            // Figures for the period.
            store
                .add_filter_checks(
                    &crate::checks::Run {
                        run: "r1".into(),
                        at: now - day,
                        who: "x".into(),
                        origin: "command".into(),
                        school: "oak".into(),
                        group: "g".into(),
                        device: None,
                    },
                    &[crate::checks::Outcome {
                        probe: "iwf".into(),
                        path: "dns".into(),
                        target: "t".into(),
                        expected: "blocked".into(),
                        got: "allowed".into(),
                        ok: false,
                    }],
                )
                .await
                .unwrap();
            let fig = store.review_figures("oak", now - day * 365, now).await.unwrap();
            assert_eq!((fig.checks, fig.check_runs, fig.checks_followed_up), ((1, 1), 1, 0));
            assert!(store.review_figures("elm", now - day * 365, now).await.unwrap().checks == (0, 0));

            // The review.
            assert_eq!(store.review_due("oak").await.unwrap(), None, "never done: due now");
            assert!(store.start_review("oak", "triggered", " ", now - day, now, &BTreeMap::new(), "account:2", now).await.is_err(), "a reason is needed");
            let mut sections = BTreeMap::new();
            sections.insert("risk".to_string(), "Pupils 11-18, BYOD in sixth form".to_string());
            let id = store.start_review("oak", "annual", "", now - day * 365, now, &sections, "account:2", now).await.unwrap();
            assert!(!store.sign_review(id, "dsl", ids[1], "dsl@oak", now).await.unwrap());
            assert!(store.sign_review(id, "slt-lead", ids[1], "dsl@oak", now).await.is_err(), "one person signs once");
            assert!(store.sign_review(id, "dsl", ids[0], "head@oak", now).await.is_err(), "one signature per role");
            // Changing the words withdraws the signatures given to the old ones.
            sections.insert("actions".to_string(), "Review YouTube settings".to_string());
            assert_eq!(store.save_review(id, &sections, "account:2", now).await.unwrap(), 1);
            let later = now + SignedDuration::from_mins(5);
            for (role, who) in [("dsl", 1), ("slt-lead", 0), ("it", 2)] {
                assert!(!store.sign_review(id, role, ids[who], "x", later).await.unwrap());
            }
            assert!(store.sign_review(id, "governor", ids[3], "gov@oak", later).await.unwrap(), "the fourth completes it");
            let r = store.review(id).await.unwrap().unwrap();
            assert_eq!((r.state.as_str(), r.completed_at, r.signoffs.len()), ("complete", Some(later), 4));
            assert_eq!(r.sections["actions"], "Review YouTube settings");
            assert!(store.save_review(id, &BTreeMap::new(), "account:2", later).await.is_err(), "read-only once signed");
            assert!(store.sign_review(id, "dsl", ids[1], "x", later).await.is_err());
            let due = store.review_due("oak").await.unwrap().unwrap();
            assert_eq!(due, t("2027-11-01T10:05:00Z"));
            assert_eq!(store.reviews("oak").await.unwrap().len(), 1);
            let audit = store.audit_search(Some(&format!("review:{id}")), None, 20).await.unwrap();
            assert_eq!(audit.iter().filter(|e| e.action == "review.sign").count(), 5);
            assert!(audit.iter().any(|e| e.action == "review.start") && audit.iter().any(|e| e.action == "review.save"));
        }
    }
}
