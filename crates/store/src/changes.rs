//! Changes to the filtering policy kept in the record, on top of the
//! config's base policy, and the requests for them: a teacher's lesson
//! unblock, a pupil's "this should be allowed", staff reporting over- or
//! under-blocking, a lesson topic declared for the DSL. Every step (asked,
//! made, approved, narrowed, refused, withdrawn) is a history row written in
//! the same transaction as the change and its audit row, so the decision
//! register always tells the whole story. What a change means for a request
//! is `haven-policy`'s business; this module only keeps them.

use jiff::Timestamp;
use serde::Serialize;
use sqlx::{AnyConnection, Row};

use crate::{Store, StoreError, audit, ms, ts};

/// What a row is.
pub const KINDS: [&str; 6] = ["change", "lesson", "pupil", "over-blocking", "under-blocking", "topic"];

/// Who a change is for.
pub const SCOPES: [&str; 4] = ["school", "group", "class", "user"];

/// Where a row is in its life.
pub const STATES: [&str; 5] = ["requested", "in-force", "refused", "withdrawn", "noted"];

/// A change or request to keep.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewChange {
    /// School id.
    pub school: String,
    /// One of [`KINDS`].
    pub kind: String,
    /// One of [`SCOPES`].
    pub scope: String,
    /// The group, class or login (none for a whole school).
    pub scope_id: Option<String>,
    /// `allow` or `block` (none for a lesson topic).
    pub verdict: Option<String>,
    /// A site or URL prefix, as staff wrote it.
    pub site: Option<String>,
    /// A category id (`games`).
    pub category: Option<String>,
    /// Why, in the requester's words. Always needed.
    pub reason: String,
    /// In force from.
    pub starts_at: Timestamp,
    /// Lapses at; none for a change until someone withdraws it.
    pub until: Option<Timestamp>,
}

/// A change or request as kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FilterChange {
    /// Id (the "change 41" of explanations).
    pub id: i64,
    /// School id.
    pub school: String,
    /// One of [`KINDS`].
    pub kind: String,
    /// One of [`SCOPES`].
    pub scope: String,
    /// The group, class or login.
    pub scope_id: Option<String>,
    /// `allow` or `block`.
    pub verdict: Option<String>,
    /// Site or URL prefix.
    pub site: Option<String>,
    /// Category id.
    pub category: Option<String>,
    /// Why.
    pub reason: String,
    /// In force from.
    #[serde(serialize_with = "rfc3339")]
    pub starts_at: Timestamp,
    /// Lapses at.
    #[serde(serialize_with = "rfc3339_opt")]
    pub until: Option<Timestamp>,
    /// One of [`STATES`].
    pub state: String,
    /// Approvals so far (a chain may need more than one).
    pub approvals: u32,
    /// Who asked (or made it).
    pub requested_by: String,
    /// Who decided last.
    pub decided_by: Option<String>,
    /// When.
    #[serde(serialize_with = "rfc3339_opt")]
    pub decided_at: Option<Timestamp>,
    /// The decider's words (a refusal's reason, what was narrowed).
    pub decision: Option<String>,
    /// Made at.
    #[serde(serialize_with = "rfc3339")]
    pub created_at: Timestamp,
}

impl FilterChange {
    /// Whether it changes filtering at `at`: approved, started, not lapsed.
    pub fn in_force(&self, at: Timestamp) -> bool {
        self.state == "in-force" && self.starts_at <= at && self.until.is_none_or(|u| at < u)
    }

    /// Its state as a person reads it at `at`: an approved change whose
    /// time has passed has lapsed, one not yet started is scheduled.
    pub fn status(&self, at: Timestamp) -> &'static str {
        match self.state.as_str() {
            "in-force" if self.until.is_some_and(|u| u <= at) => "lapsed",
            "in-force" if self.starts_at > at => "scheduled",
            "in-force" => "in force",
            "requested" => "waiting for a decision",
            "refused" => "refused",
            "withdrawn" => "withdrawn",
            _ => "noted",
        }
    }

    /// "Year 10 (class 10GH)" style: who it is for.
    pub fn for_whom(&self) -> String {
        match (self.scope.as_str(), &self.scope_id) {
            ("school", _) | (_, None) => format!("everyone at {}", self.school),
            ("group", Some(g)) => format!("group {g}"),
            ("class", Some(c)) => format!("class {c}"),
            (_, Some(u)) => format!("user {u}"),
        }
    }

    /// "allow youtube.com", "block category games".
    pub fn what(&self) -> String {
        let target = match (&self.site, &self.category) {
            (Some(s), _) => s.clone(),
            (None, Some(c)) => format!("category {c}"),
            (None, None) => String::new(),
        };
        match &self.verdict {
            Some(v) => format!("{v} {target}"),
            None => target,
        }
    }
}

fn rfc3339<S: serde::Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_string())
}

fn rfc3339_opt<S: serde::Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&t.to_string()),
        None => s.serialize_none(),
    }
}

/// One step in a change's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangeEvent {
    /// The change.
    pub change: i64,
    /// When.
    #[serde(serialize_with = "rfc3339")]
    pub at: Timestamp,
    /// Who.
    pub actor: String,
    /// asked, made, approved, narrowed, refused, withdrawn, noted.
    pub action: String,
    /// What they said or changed.
    pub detail: String,
}

/// What an approver may change while approving: a narrower group, a
/// shorter time.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Narrowing {
    /// A new scope and id (`class`, `10GH`).
    pub scope: Option<(String, Option<String>)>,
    /// A new start.
    pub starts_at: Option<Timestamp>,
    /// A new end.
    pub until: Option<Timestamp>,
}

/// What to list.
#[derive(Debug, Clone, Default)]
pub struct ChangeQuery {
    /// One school (none: every school).
    pub school: Option<String>,
    /// One state.
    pub state: Option<String>,
    /// Words found in the site, category, reason, scope or people.
    pub text: Option<String>,
    /// Made by this person (a teacher's own requests).
    pub requested_by: Option<String>,
    /// At most this many, newest first.
    pub limit: i64,
}

const COLUMNS: &str = "id, school, kind, scope, scope_id, verdict, site, category, reason, starts_at, until_at, state, approvals, requested_by, \
                       decided_by, decided_at, decision, created_at";

fn row(r: &sqlx::any::AnyRow) -> Result<FilterChange, StoreError> {
    Ok(FilterChange {
        id: r.try_get("id")?,
        school: r.try_get("school")?,
        kind: r.try_get("kind")?,
        scope: r.try_get("scope")?,
        scope_id: r.try_get("scope_id")?,
        verdict: r.try_get("verdict")?,
        site: r.try_get("site")?,
        category: r.try_get("category")?,
        reason: r.try_get("reason")?,
        starts_at: ts(r.try_get("starts_at")?),
        until: r.try_get::<Option<i64>, _>("until_at")?.map(ts),
        state: r.try_get("state")?,
        approvals: u32::try_from(r.try_get::<i64, _>("approvals")?).unwrap_or(0),
        requested_by: r.try_get("requested_by")?,
        decided_by: r.try_get("decided_by")?,
        decided_at: r.try_get::<Option<i64>, _>("decided_at")?.map(ts),
        decision: r.try_get("decision")?,
        created_at: ts(r.try_get("created_at")?),
    })
}

fn check(c: &NewChange) -> Result<(), StoreError> {
    let bad = |m: String| Err(StoreError::Invalid(m));
    if !KINDS.contains(&c.kind.as_str()) {
        return bad(format!("change kind {:?} must be one of {}", c.kind, KINDS.join(", ")));
    }
    if !SCOPES.contains(&c.scope.as_str()) {
        return bad(format!("scope {:?} must be one of {}", c.scope, SCOPES.join(", ")));
    }
    if c.scope != "school" && c.scope_id.as_deref().is_none_or(str::is_empty) {
        return bad(format!("a change for a {} needs the {}'s name", c.scope, c.scope));
    }
    if c.reason.trim().is_empty() {
        return bad("a change needs a reason: say why, in words the register will show".into());
    }
    if c.kind != "topic" {
        if !matches!(c.verdict.as_deref(), Some("allow" | "block")) {
            return bad("say whether to allow or block".into());
        }
        if c.site.is_none() == c.category.is_none() {
            return bad("name either a site or a category (one of them)".into());
        }
    }
    if c.until.is_some_and(|u| u <= c.starts_at) {
        return bad("it would end before it starts: check the dates".into());
    }
    Ok(())
}

async fn event(c: &mut AnyConnection, id: i64, at: Timestamp, actor: &str, action: &str, detail: &str) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO filter_change_events (change_id, at, actor, action, detail) VALUES ($1, $2, $3, $4, $5)")
        .bind(id)
        .bind(ms(at))
        .bind(actor)
        .bind(action)
        .bind(detail)
        .execute(&mut *c)
        .await?;
    audit::append(c, at, actor, &format!("filter-change.{action}"), &format!("filter-change:{id}"), detail).await
}

impl Store {
    /// Keeps a change or request: `state` is `in-force` for a change made by
    /// someone who may, `requested` for a request, `noted` for a topic.
    /// Returns its id.
    pub async fn add_filter_change(&self, c: &NewChange, state: &str, by: &str, at: Timestamp) -> Result<i64, StoreError> {
        let mut tx = self.begin().await?;
        let id = insert(tx.conn(), c, state, by, at).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// One change.
    pub async fn filter_change(&self, id: i64) -> Result<FilterChange, StoreError> {
        let r = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM filter_changes WHERE id = $1"))).bind(id).fetch_optional(self.pool()).await?;
        match r {
            Some(r) => row(&r),
            None => Err(StoreError::NotFound { what: "filtering change", name: id.to_string(), hint: "; `haven admin change list` lists them" }),
        }
    }

    /// Changes and requests, newest first.
    pub async fn filter_changes(&self, q: &ChangeQuery) -> Result<Vec<FilterChange>, StoreError> {
        let text = q.text.as_ref().filter(|t| !t.trim().is_empty()).map(|t| format!("%{}%", t.trim().to_lowercase()));
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM filter_changes WHERE ($1 IS NULL OR school = $1) AND ($2 IS NULL OR state = $2) AND ($3 IS NULL OR requested_by = $3) \
             AND ($4 IS NULL OR LOWER(COALESCE(site, '') || ' ' || COALESCE(category, '') || ' ' || reason || ' ' || COALESCE(scope_id, '') || ' ' \
             || requested_by || ' ' || COALESCE(decided_by, '') || ' ' || kind) LIKE $4) ORDER BY id DESC LIMIT $5"
        )))
        .bind(&q.school)
        .bind(&q.state)
        .bind(&q.requested_by)
        .bind(text)
        .bind(if q.limit > 0 { q.limit } else { 1000 })
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(row).collect()
    }

    /// The approved changes that are, or will be, in force at or after
    /// `at`: what the filters apply on top of the config. Lapsed ones stay
    /// in the register but no longer reach the filters.
    pub async fn filter_changes_in_force(&self, at: Timestamp) -> Result<Vec<FilterChange>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM filter_changes WHERE state = 'in-force' AND (until_at IS NULL OR until_at > $1) ORDER BY id"
        )))
        .bind(ms(at))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(row).collect()
    }

    /// A number that changes whenever any change is added or decided: the
    /// filters compare it every few seconds and rebuild only when it moved.
    pub async fn filter_changes_version(&self) -> Result<i64, StoreError> {
        let v: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM filter_change_events").fetch_one(self.pool()).await?;
        Ok(v.unwrap_or(0))
    }

    /// A change's whole history, oldest first.
    pub async fn filter_change_history(&self, id: i64) -> Result<Vec<ChangeEvent>, StoreError> {
        let rows = sqlx::query("SELECT change_id, at, actor, action, detail FROM filter_change_events WHERE change_id = $1 ORDER BY id")
            .bind(id)
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| {
                Ok(ChangeEvent {
                    change: r.try_get("change_id")?,
                    at: ts(r.try_get("at")?),
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect()
    }

    /// An approval. With `needed` approvals in all (the configured chain),
    /// the last one puts it in force; `narrow` changes who or how long as
    /// it does. Refused unless the request is waiting.
    pub async fn approve_filter_change(
        &self,
        id: i64,
        by: &str,
        needed: u32,
        narrow: &Narrowing,
        note: &str,
        at: Timestamp,
    ) -> Result<FilterChange, StoreError> {
        let mut tx = self.begin().await?;
        let current = waiting(tx.conn(), id).await?;
        if current.requested_by == by && needed > 1 && current.approvals == 0 {
            // A request's author is not its first approver in a chain.
            return Err(StoreError::Invalid("the person who asked cannot be the first to approve".into()));
        }
        let mut said = Vec::new();
        let mut c = current.clone();
        if let Some((scope, scope_id)) = &narrow.scope {
            c.scope.clone_from(scope);
            c.scope_id.clone_from(scope_id);
            said.push(format!("for {}", c.for_whom()));
        }
        if let Some(s) = narrow.starts_at {
            c.starts_at = s;
            said.push(format!("from {s}"));
        }
        if let Some(u) = narrow.until {
            c.until = Some(u);
            said.push(format!("until {u}"));
        }
        check(&NewChange {
            school: c.school.clone(),
            kind: c.kind.clone(),
            scope: c.scope.clone(),
            scope_id: c.scope_id.clone(),
            verdict: c.verdict.clone(),
            site: c.site.clone(),
            category: c.category.clone(),
            reason: c.reason.clone(),
            starts_at: c.starts_at,
            until: c.until,
        })?;
        let approvals = current.approvals + 1;
        let state = if approvals >= needed.max(1) { "in-force" } else { "requested" };
        let detail = match (said.is_empty(), note.trim().is_empty()) {
            (true, true) => String::new(),
            (true, false) => note.trim().to_string(),
            (false, true) => said.join(", "),
            (false, false) => format!("{}: {}", said.join(", "), note.trim()),
        };
        sqlx::query(
            "UPDATE filter_changes SET scope = $1, scope_id = $2, starts_at = $3, until_at = $4, state = $5, approvals = $6, decided_by = $7, \
             decided_at = $8, decision = $9, updated_at = $8 WHERE id = $10",
        )
        .bind(&c.scope)
        .bind(&c.scope_id)
        .bind(ms(c.starts_at))
        .bind(c.until.map(ms))
        .bind(state)
        .bind(i64::from(approvals))
        .bind(by)
        .bind(ms(at))
        .bind((!detail.is_empty()).then_some(&detail))
        .bind(id)
        .execute(tx.conn())
        .await?;
        event(tx.conn(), id, at, by, if said.is_empty() { "approved" } else { "narrowed" }, &detail).await?;
        tx.commit().await?;
        self.filter_change(id).await
    }

    /// A refusal, with the reason the requester is shown.
    pub async fn refuse_filter_change(&self, id: i64, by: &str, reason: &str, at: Timestamp) -> Result<(), StoreError> {
        self.end_filter_change(id, by, reason, at, "refused").await
    }

    /// Ends a change early, or takes back a request (with the reason).
    pub async fn withdraw_filter_change(&self, id: i64, by: &str, reason: &str, at: Timestamp) -> Result<(), StoreError> {
        self.end_filter_change(id, by, reason, at, "withdrawn").await
    }

    async fn end_filter_change(&self, id: i64, by: &str, reason: &str, at: Timestamp, state: &str) -> Result<(), StoreError> {
        if reason.trim().is_empty() {
            return Err(StoreError::Invalid(format!("say why it is {state}: the requester and the register see it")));
        }
        let mut tx = self.begin().await?;
        let current = match state {
            "refused" => waiting(tx.conn(), id).await?,
            _ => {
                let r =
                    sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM filter_changes WHERE id = $1"))).bind(id).fetch_optional(tx.conn()).await?;
                let c = r.as_ref().map(row).transpose()?.ok_or(StoreError::NotFound { what: "filtering change", name: id.to_string(), hint: "" })?;
                if !matches!(c.state.as_str(), "requested" | "in-force" | "noted") {
                    return Err(StoreError::Invalid(format!("change {id} is already {}", c.state)));
                }
                c
            }
        };
        sqlx::query("UPDATE filter_changes SET state = $1, decided_by = $2, decided_at = $3, decision = $4, updated_at = $3 WHERE id = $5")
            .bind(state)
            .bind(by)
            .bind(ms(at))
            .bind(reason.trim())
            .bind(current.id)
            .execute(tx.conn())
            .await?;
        event(tx.conn(), id, at, by, state, reason.trim()).await?;
        tx.commit().await
    }
}

impl crate::record::Tx {
    /// [`Store::add_filter_change`] inside this transaction (a pupil's
    /// request kept with the block-page report it came from).
    pub async fn add_filter_change(&mut self, c: &NewChange, state: &str, by: &str, at: Timestamp) -> Result<i64, StoreError> {
        insert(self.conn(), c, state, by, at).await
    }
}

async fn insert(conn: &mut AnyConnection, c: &NewChange, state: &str, by: &str, at: Timestamp) -> Result<i64, StoreError> {
    check(c)?;
    if !STATES.contains(&state) {
        return Err(StoreError::Invalid(format!("state {state:?} must be one of {}", STATES.join(", "))));
    }
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO filter_changes (school, kind, scope, scope_id, verdict, site, category, reason, starts_at, until_at, state, approvals, \
         requested_by, decided_by, decided_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $16) RETURNING id",
    )
    .bind(&c.school)
    .bind(&c.kind)
    .bind(&c.scope)
    .bind(&c.scope_id)
    .bind(&c.verdict)
    .bind(&c.site)
    .bind(&c.category)
    .bind(&c.reason)
    .bind(ms(c.starts_at))
    .bind(c.until.map(ms))
    .bind(state)
    .bind(i64::from(state == "in-force"))
    .bind(by)
    .bind((state == "in-force").then_some(by))
    .bind((state == "in-force").then_some(ms(at)))
    .bind(ms(at))
    .fetch_one(&mut *conn)
    .await?;
    let action = match state {
        "in-force" => "made",
        "noted" => "noted",
        _ => "asked",
    };
    event(conn, id, at, by, action, &c.reason).await?;
    Ok(id)
}

async fn waiting(c: &mut AnyConnection, id: i64) -> Result<FilterChange, StoreError> {
    let r = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM filter_changes WHERE id = $1"))).bind(id).fetch_optional(&mut *c).await?;
    let current = r.as_ref().map(row).transpose()?.ok_or(StoreError::NotFound { what: "request", name: id.to_string(), hint: "" })?;
    if current.state != "requested" {
        return Err(StoreError::Invalid(format!("request {id} is not waiting for a decision (it is {})", current.state)));
    }
    Ok(current)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::stores;

    fn lesson(at: Timestamp) -> NewChange {
        NewChange {
            school: "oak".into(),
            kind: "lesson".into(),
            scope: "class".into(),
            scope_id: Some("10GH".into()),
            verdict: Some("allow".into()),
            site: Some("games.example".into()),
            category: None,
            reason: "Computing lesson on game design".into(),
            starts_at: at,
            until: Some(at + jiff::SignedDuration::from_hours(1)),
        }
    }

    #[tokio::test]
    async fn a_request_waits_is_approved_in_a_chain_and_keeps_its_story() {
        for (store, _guard) in stores().await {
            store.upsert_school("oak", "Oak", false).await.unwrap();
            let at: Timestamp = "2026-12-07T09:00:00Z".parse().unwrap();
            let v0 = store.filter_changes_version().await.unwrap();
            let id = store.add_filter_change(&lesson(at), "requested", "t@oak.example", at).await.unwrap();
            assert!(store.filter_changes_version().await.unwrap() > v0, "a request moves the version");
            assert!(store.filter_changes_in_force(at).await.unwrap().is_empty(), "a request changes nothing");
            let err = store.approve_filter_change(id, "t@oak.example", 2, &Narrowing::default(), "", at).await.unwrap_err();
            assert!(err.to_string().contains("cannot be the first"), "{err}");
            let first = store.approve_filter_change(id, "dsl@oak.example", 2, &Narrowing::default(), "fine by me", at).await.unwrap();
            assert_eq!((first.state.as_str(), first.approvals), ("requested", 1), "the chain needs IT too");
            let narrow = Narrowing { until: Some(at + jiff::SignedDuration::from_mins(30)), ..Narrowing::default() };
            let done = store.approve_filter_change(id, "it@oak.example", 2, &narrow, "half an hour is enough", at).await.unwrap();
            assert_eq!(done.state, "in-force");
            assert_eq!(done.until, narrow.until);
            assert!(done.in_force(at) && !done.in_force(at + jiff::SignedDuration::from_mins(30)));
            assert_eq!(done.status(at + jiff::SignedDuration::from_hours(2)), "lapsed");
            assert_eq!(store.filter_changes_in_force(at).await.unwrap().len(), 1);
            assert!(store.filter_changes_in_force(at + jiff::SignedDuration::from_hours(2)).await.unwrap().is_empty(), "lapsed ones leave the filters");
            let story: Vec<String> = store.filter_change_history(id).await.unwrap().iter().map(|e| format!("{} {}", e.actor, e.action)).collect();
            assert_eq!(story, ["t@oak.example asked", "dsl@oak.example approved", "it@oak.example narrowed"]);
            let audited = store.audit_search(Some(&format!("filter-change:{id}")), None, 10).await.unwrap();
            assert_eq!(audited.len(), 3, "each step is audited");
            let again = store.approve_filter_change(id, "it@oak.example", 2, &Narrowing::default(), "", at).await.unwrap_err();
            assert!(again.to_string().contains("not waiting"), "{again}");
            // Found by the words a DSL would search for.
            let q = ChangeQuery { text: Some("GAME design".into()), ..ChangeQuery::default() };
            assert_eq!(store.filter_changes(&q).await.unwrap().len(), 1);
            let q = ChangeQuery { text: Some("bbc".into()), ..ChangeQuery::default() };
            assert!(store.filter_changes(&q).await.unwrap().is_empty());
        }
    }

    #[tokio::test]
    async fn refusals_and_withdrawals_need_a_reason_and_bad_changes_are_refused() {
        for (store, _guard) in stores().await {
            store.upsert_school("oak", "Oak", false).await.unwrap();
            let at: Timestamp = "2026-12-07T09:00:00Z".parse().unwrap();
            let id = store.add_filter_change(&lesson(at), "requested", "t@oak.example", at).await.unwrap();
            assert!(store.refuse_filter_change(id, "dsl@oak.example", " ", at).await.is_err());
            store.refuse_filter_change(id, "dsl@oak.example", "use the BBC clip instead", at).await.unwrap();
            let c = store.filter_change(id).await.unwrap();
            assert_eq!((c.state.as_str(), c.decision.as_deref()), ("refused", Some("use the BBC clip instead")));
            let made = store.add_filter_change(&NewChange { kind: "change".into(), ..lesson(at) }, "in-force", "it@oak.example", at).await.unwrap();
            store.withdraw_filter_change(made, "it@oak.example", "lesson moved", at).await.unwrap();
            assert!(store.filter_changes_in_force(at).await.unwrap().is_empty());
            for bad in [
                NewChange { reason: " ".into(), ..lesson(at) },
                NewChange { site: None, ..lesson(at) },
                NewChange { scope_id: None, ..lesson(at) },
                NewChange { until: Some(at), ..lesson(at) },
                NewChange { verdict: Some("maybe".into()), ..lesson(at) },
            ] {
                assert!(matches!(store.add_filter_change(&bad, "requested", "t", at).await, Err(StoreError::Invalid(_))), "{bad:?}");
            }
        }
    }
}
