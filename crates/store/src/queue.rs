//! The DSL's queue (issue 16): one page of the alerts an account may see,
//! filtered and sorted in the database, with a true count and an opaque
//! keyset cursor; who holds an alert and the triage note; acknowledging many
//! at once; the guidance shown on an alert.
//!
//! States: new (stored as `open`, which the notifier, grouping and older
//! records already use), `acknowledged`, `triaged`, `escalated`, `closed`.
//! Anything but `open` stops call-outs (`Store::cancel_settled_notices`).
//!
//! Paging is by key, never by offset: a cursor names the last row's sort key
//! and id, and the next page is every row after it, so a page deep in a
//! million alerts costs what the first does, and an alert that arrives while
//! someone pages is neither shown twice nor skipped over the rows already
//! seen. The sort keys are stored columns with indexes of the same shape
//! (migration 0012): `urgency` (level high to low, then due soonest) and
//! `received_at` (newest first), each with `id` to break ties.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;
use serde::Serialize;
use sqlx::Row;

use crate::alerts::Alert;
use crate::people::Account;
use crate::{Store, StoreError, ms, ts};

/// One level's band of [`urgency`]: larger than any deadline in ms until the year 5138.
const BAND: i64 = 100_000_000_000_000;

/// The queue's "most urgent first" key: level high to low, then due
/// soonest, alerts without a deadline last in their level. Written with
/// every level or deadline (`Tx::insert_alert`, `Tx::join_alert`).
pub fn urgency(level: u8, due: Option<Timestamp>) -> i64 {
    let due = due.map_or(BAND - 1, |d| ms(d).clamp(0, BAND - 2));
    (6 - i64::from(level.clamp(1, 5))) * BAND + due
}

/// The states an alert moves through, as stored (`open` is shown as "new").
pub const STATES: [&str; 5] = ["open", "acknowledged", "triaged", "escalated", "closed"];

/// How a state is shown: `open` is "new".
pub fn state_label(status: &str) -> &str {
    if status == "open" { "new" } else { status }
}

/// The order of a page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Sort {
    /// Level high to low, then due soonest (no deadline last), then id.
    #[default]
    Urgent,
    /// Received newest first, then id high to low.
    Newest,
}

impl Sort {
    /// `urgent` or `newest`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Urgent => "urgent",
            Self::Newest => "newest",
        }
    }

    /// From [`as_str`](Self::as_str)'s form.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Urgent, Self::Newest].into_iter().find(|x| x.as_str() == s)
    }

    fn tag(self) -> char {
        match self {
            Self::Urgent => 'u',
            Self::Newest => 'r',
        }
    }
}

/// Whose alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignee {
    /// Nobody holds them.
    Nobody,
    /// This account holds them.
    Account(i64),
}

/// What a page of the queue shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueQuery {
    /// One school (trust roles; a school role always sees its own only).
    pub school: Option<String>,
    /// At least this level.
    pub min_level: Option<u8>,
    /// At most this level.
    pub max_level: Option<u8>,
    /// One category of concern.
    pub category: Option<String>,
    /// A state (`new` or `open`, `acknowledged`, `triaged`, `escalated`,
    /// `closed`) or `all`; `None`: every state but closed.
    pub status: Option<String>,
    /// Whose.
    pub assignee: Option<Assignee>,
    /// Only those past their deadline (and not closed).
    pub overdue: bool,
    /// Words in the person's login or name, the category or the evidence (any case).
    pub text: Option<String>,
    /// The order.
    pub sort: Sort,
    /// The page after this cursor (a page's `next_cursor`).
    pub after: Option<String>,
    /// The page before this cursor (a page's `prev_cursor`); `after` wins when both are given.
    pub before: Option<String>,
    /// Rows on the page, 1–500 (0: 50).
    pub limit: i64,
}

/// Parses a level filter: `4` (4 and above) or `4-5` (a range).
pub fn parse_levels(s: &str) -> Option<(u8, u8)> {
    let ok = |n: &str| n.trim().parse::<u8>().ok().filter(|l| (1..=5).contains(l));
    match s.split_once('-') {
        Some((a, b)) => Some((ok(a)?, ok(b)?)).filter(|(a, b)| a <= b),
        None => Some((ok(s)?, 5)),
    }
}

/// One row of the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueItem {
    /// The alert.
    #[serde(flatten)]
    pub alert: Alert,
    /// Its state as shown: `new`, `acknowledged`, `triaged`, `escalated`, `closed`.
    pub state: String,
    /// Who holds it (account id).
    pub assignee: Option<i64>,
    /// Their e-mail.
    pub assignee_email: Option<String>,
    /// The triage note.
    pub triage_note: Option<String>,
    /// The person's display name from the MIS, if known.
    pub person_name: Option<String>,
}

/// One page of the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueuePage {
    /// The rows, in the page's order.
    pub alerts: Vec<QueueItem>,
    /// The cursor of the page after this one, if there is one.
    pub next_cursor: Option<String>,
    /// The cursor of the page before this one, if there is one.
    pub prev_cursor: Option<String>,
    /// How many alerts match the filters, on every page.
    pub total: i64,
}

/// A position in the queue: the sort, its key and the id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    sort: Sort,
    key: i64,
    id: i64,
}

impl Key {
    /// URL-safe base64 of `v1.<u|r>.<key>.<id>`: opaque to callers, and
    /// tied to its sort so a cursor from another order is refused.
    fn encode(self) -> String {
        URL_SAFE_NO_PAD.encode(format!("v1.{}.{}.{}", self.sort.tag(), self.key, self.id))
    }

    fn decode(s: &str, sort: Sort) -> Result<Self, StoreError> {
        let bad = || StoreError::Invalid("the cursor is not one this queue gave out: start again without it".into());
        let raw = URL_SAFE_NO_PAD.decode(s.trim().as_bytes()).map_err(|_| bad())?;
        let text = String::from_utf8(raw).map_err(|_| bad())?;
        let parts: Vec<&str> = text.split('.').collect();
        let [v, tag, key, id] = parts.as_slice() else { return Err(bad()) };
        let tag = tag.chars().next().ok_or_else(bad)?;
        if *v != "v1" || ![Sort::Urgent.tag(), Sort::Newest.tag()].contains(&tag) {
            return Err(bad());
        }
        if tag != sort.tag() {
            return Err(StoreError::Invalid(format!("the cursor belongs to another sort than {}: start again without it", sort.as_str())));
        }
        Ok(Self { sort, key: key.parse().map_err(|_| bad())?, id: id.parse().map_err(|_| bad())? })
    }
}

/// A value bound to the queue's statement.
enum Bind {
    I(i64),
    S(String),
}

/// The queue's WHERE clause and its values, built from fixed fragments only.
struct Where {
    terms: Vec<String>,
    binds: Vec<Bind>,
}

impl Where {
    fn bind(&mut self, b: Bind) -> String {
        self.binds.push(b);
        format!("${}", self.binds.len())
    }

    fn sql(&self) -> String {
        if self.terms.is_empty() { "1 = 1".into() } else { self.terms.join(" AND ") }
    }
}

fn bound<'q>(sql: &'q str, binds: &'q [Bind]) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for b in binds {
        q = match b {
            Bind::I(i) => q.bind(*i),
            Bind::S(s) => q.bind(s.as_str()),
        };
    }
    q
}

/// `%text%` for LIKE, lower case, with `\` escaping LIKE's own characters.
fn like(text: &str) -> String {
    let mut p = String::from("%");
    for c in text.trim().to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// The alerts' audiences the role reads (a staff member's alert never
/// reaches the DSL's queue), as SQL from the role's fixed list.
fn audiences(who: &Account) -> String {
    let mine = who.role.alert_audiences();
    // A role that reads every audience needs no test (and its count stays in the index).
    if ["pupil", "staff", "head"].iter().all(|a| mine.contains(a)) {
        return crate::staff::not_about_self(who);
    }
    let list: Vec<String> = mine.iter().map(|a| format!("'{a}'")).collect();
    // `audience || ''` keeps SQLite off the (school, audience) index, which
    // would read every alert the school ever had: the queue's own indexes
    // find the page, and the audience is checked on the rows they give.
    if list.is_empty() { "1 = 0".into() } else { format!("(audience || '') IN ({}) AND {}", list.join(", "), crate::staff::not_about_self(who)) }
}

const COLUMNS: &str = "id, school, person, category, level, status, received_at, due_at, occurrences, source, verdict, assignee, triage_note, urgency, \
                       (SELECT email FROM accounts WHERE accounts.id = alerts.assignee) AS assignee_email";

impl Store {
    /// One page of the alerts `who` may see (none for roles that do not see
    /// alerts; a school role only its school's), with the true count for
    /// the filters and cursors to the pages either side.
    pub async fn queue_page(&self, who: &Account, q: &QueueQuery, now: Timestamp) -> Result<QueuePage, StoreError> {
        let empty = QueuePage { alerts: Vec::new(), next_cursor: None, prev_cursor: None, total: 0 };
        if who.role.alert_audiences().is_empty() {
            return Ok(empty);
        }
        let school = if who.role.trust_wide() { q.school.clone().filter(|s| !s.is_empty()) } else { who.school.clone() };
        if !who.role.trust_wide() && school.is_none() {
            return Ok(empty);
        }
        let limit = if q.limit <= 0 { 50 } else { q.limit.min(500) };
        let after = q.after.as_deref().filter(|c| !c.is_empty()).map(|c| Key::decode(c, q.sort)).transpose()?;
        let before = if after.is_some() { None } else { q.before.as_deref().filter(|c| !c.is_empty()).map(|c| Key::decode(c, q.sort)).transpose()? };

        let mut w = Where { terms: Vec::new(), binds: Vec::new() };
        w.terms.push(audiences(who));
        let mut school_param = None;
        if let Some(s) = school {
            let p = w.bind(Bind::S(s));
            w.terms.push(format!("school = {p}"));
            school_param = Some(p);
        }
        // The literal `status <> 'closed'` lets both databases use the partial
        // indexes of the working queue.
        match q.status.as_deref().filter(|s| !s.is_empty()) {
            None => w.terms.push("status <> 'closed'".into()),
            Some("all") => {}
            Some("closed") => w.terms.push("status = 'closed'".into()),
            Some(s) => {
                let s = if s == "new" { "open" } else { s };
                if !STATES.contains(&s) {
                    return Err(StoreError::Invalid(format!("unknown state {s:?}: new, acknowledged, triaged, escalated, closed or all")));
                }
                let p = w.bind(Bind::S(s.to_string()));
                w.terms.push(format!("status <> 'closed' AND status = {p}"));
            }
        }
        let (lo, hi) = (q.min_level.unwrap_or(1).clamp(1, 5), q.max_level.unwrap_or(5).clamp(1, 5));
        if (lo, hi) != (1, 5) {
            // The level as a range of `urgency`, so the index seeks it.
            let a = w.bind(Bind::I((6 - i64::from(hi)) * BAND));
            let b = w.bind(Bind::I((7 - i64::from(lo)) * BAND));
            w.terms.push(format!("urgency >= {a} AND urgency < {b}"));
        }
        if let Some(c) = q.category.clone().filter(|c| !c.is_empty()) {
            let p = w.bind(Bind::S(c));
            w.terms.push(format!("category = {p}"));
        }
        match q.assignee {
            Some(Assignee::Nobody) => w.terms.push("assignee IS NULL".into()),
            Some(Assignee::Account(id)) => {
                let p = w.bind(Bind::I(id));
                w.terms.push(format!("assignee = {p}"));
            }
            None => {}
        }
        if q.overdue {
            let p = w.bind(Bind::I(ms(now)));
            w.terms.push(format!("due_at < {p} AND status <> 'closed'"));
        }
        if let Some(t) = q.text.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
            let p = w.bind(Bind::S(like(t)));
            // The person's name from the MIS too: the logins whose name matches,
            // found once (in the one school's part of the directory when there is one).
            let in_school = school_param.map_or(String::new(), |s| format!("school = {s} AND "));
            w.terms.push(format!(
                "(LOWER(person) LIKE {p} ESCAPE '\\' OR LOWER(category) LIKE {p} ESCAPE '\\' OR LOWER(excerpt) LIKE {p} ESCAPE '\\' \
                 OR LOWER(person) IN (SELECT login FROM people WHERE {in_school}folded LIKE {p} ESCAPE '\\'))"
            ));
        }
        let count_sql = format!("SELECT COUNT(*) FROM alerts WHERE {}", w.sql());
        let total: i64 = bound(&count_sql, &w.binds).fetch_one(self.pool()).await?.try_get(0)?;

        let (col, ascending) = match q.sort {
            Sort::Urgent => ("urgency", true),
            Sort::Newest => ("received_at", false),
        };
        // Reading backwards (the page before) flips the order, then the rows.
        let backwards = before.is_some();
        let forward = ascending != backwards;
        if let Some(k) = after.or(before) {
            let op = if forward { ">" } else { "<" };
            let a = w.bind(Bind::I(k.key));
            let b = w.bind(Bind::I(k.id));
            w.terms.push(format!("({col}, id) {op} ({a}, {b})"));
        }
        let dir = if forward { "" } else { " DESC" };
        let n = w.bind(Bind::I(limit + 1));
        let sql = format!("SELECT {COLUMNS} FROM alerts WHERE {} ORDER BY {col}{dir}, id{dir} LIMIT {n}", w.sql());
        let rows = bound(&sql, &w.binds).fetch_all(self.pool()).await?;
        let more = rows.len() as i64 > limit;
        let mut keyed = Vec::with_capacity(rows.len());
        for r in rows.iter().take(limit as usize) {
            let key: i64 = if q.sort == Sort::Urgent { r.try_get("urgency")? } else { r.try_get("received_at")? };
            let alert = crate::alerts::alert(r)?;
            keyed.push((
                Key { sort: q.sort, key, id: alert.id },
                QueueItem {
                    state: state_label(&alert.status).to_string(),
                    alert,
                    assignee: r.try_get("assignee")?,
                    assignee_email: r.try_get("assignee_email")?,
                    triage_note: r.try_get("triage_note")?,
                    person_name: None,
                },
            ));
        }
        if backwards {
            keyed.reverse();
        }
        let first = keyed.first().map(|(k, _)| k.encode());
        let last = keyed.last().map(|(k, _)| k.encode());
        let (next_cursor, prev_cursor) = match (after.is_some(), backwards) {
            (_, true) => (last, if more { first } else { None }),
            (true, false) => (if more { last } else { None }, first),
            (false, false) => (if more { last } else { None }, None),
        };
        let mut alerts: Vec<QueueItem> = keyed.into_iter().map(|(_, i)| i).collect();
        self.fill_person_names(&mut alerts).await?;
        Ok(QueuePage { alerts, next_cursor, prev_cursor, total })
    }

    /// The people's display names from the MIS (`people`, synced from the
    /// config), one look-up for the page; `None` for a login nobody knows.
    async fn fill_person_names(&self, items: &mut [QueueItem]) -> Result<(), StoreError> {
        let keys: Vec<(String, String)> = items.iter().map(|i| (i.alert.school.clone(), i.alert.person.clone())).collect();
        let people = self.people_for(&keys).await?;
        for (i, key) in items.iter_mut().zip(&keys) {
            i.person_name = people.get(key).and_then(|p| p.row.display_name.clone());
        }
        Ok(())
    }

    /// Acknowledges each of `ids` that `who` may see and that is still new,
    /// in one transaction, each with its action and audit row; returns the
    /// ids acknowledged (others are left as they were).
    pub async fn acknowledge_many(&self, who: &Account, ids: &[i64], now: Timestamp) -> Result<Vec<i64>, StoreError> {
        if !who.role.reads_alerts() || ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin().await?;
        let mut done = Vec::new();
        for &id in ids {
            let sql = format!("SELECT school, status FROM alerts WHERE id = $1 AND {}", audiences(who));
            let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(tx.conn()).await?;
            let Some(row) = row else { continue };
            let (school, status): (String, String) = (row.try_get("school")?, row.try_get("status")?);
            if status != "open" || (!who.role.trust_wide() && who.school.as_deref() != Some(school.as_str())) {
                continue;
            }
            sqlx::query("UPDATE alerts SET status = 'acknowledged' WHERE id = $1 AND status = 'open'").bind(id).execute(tx.conn()).await?;
            sqlx::query("INSERT INTO alert_actions (alert, at, account, kind, note) VALUES ($1, $2, $3, 'acknowledged', $4)")
                .bind(id)
                .bind(ms(now))
                .bind(who.id)
                .bind("from the queue, with others")
                .execute(tx.conn())
                .await?;
            tx.audit(now, &format!("account:{}", who.id), "alert.acknowledged", &format!("alert:{id}"), "bulk").await?;
            done.push(id);
        }
        tx.commit().await?;
        Ok(done)
    }

    /// Who holds an alert and its triage note.
    pub async fn alert_triage(&self, id: i64) -> Result<(Option<i64>, Option<String>, Option<String>), StoreError> {
        let r =
            sqlx::query("SELECT assignee, triage_note, (SELECT email FROM accounts WHERE accounts.id = alerts.assignee) AS email FROM alerts WHERE id = $1")
                .bind(id)
                .fetch_optional(self.pool())
                .await?;
        match r {
            Some(r) => Ok((r.try_get("assignee")?, r.try_get("email")?, r.try_get("triage_note")?)),
            None => Ok((None, None, None)),
        }
    }

    /// The accounts that may hold an alert for `audience` at `school`: its
    /// own roles and the trust's that read that audience (a staff alert is
    /// never given to a DSL), not disabled; (id, name as shown), by e-mail.
    pub async fn assignable(&self, school: &str, audience: &str) -> Result<Vec<(i64, String)>, StoreError> {
        let rows = sqlx::query("SELECT id, email, name, role, school FROM accounts WHERE disabled = 0 AND (school = $1 OR school IS NULL) ORDER BY email")
            .bind(school)
            .fetch_all(self.pool())
            .await?;
        let mut out = Vec::new();
        for r in &rows {
            let Some(role) = crate::Role::parse(&r.try_get::<String, _>("role")?) else { continue };
            let own: Option<String> = r.try_get("school")?;
            if role.alert_audiences().contains(&audience) && (role.trust_wide() || own.as_deref() == Some(school)) {
                let (email, name): (String, Option<String>) = (r.try_get("email")?, r.try_get("name")?);
                out.push((r.try_get("id")?, crate::names::label(name.as_deref(), &email)));
            }
        }
        Ok(out)
    }

    /// Gives an alert to `to` (or to nobody), with its action and audit
    /// row; returns whether `who` could see the alert.
    pub async fn assign_alert(&self, who: &Account, id: i64, to: Option<i64>, now: Timestamp) -> Result<bool, StoreError> {
        let Some(d) = self.alert_detail(who, id).await? else { return Ok(false) };
        let note = match to {
            Some(t) => match self.assignable(&d.alert.school, &self.alert_audience(id).await?.unwrap_or_default()).await?.into_iter().find(|(i, _)| *i == t) {
                Some((_, email)) => format!("to {email}"),
                None => return Err(StoreError::Invalid("that account cannot hold this alert: it must see this school's alerts".into())),
            },
            None => "to nobody".to_string(),
        };
        sqlx::query("UPDATE alerts SET assignee = $2 WHERE id = $1").bind(id).bind(to).execute(self.pool()).await?;
        self.record_action(who, id, "assigned", &note, None, None, now).await?;
        Ok(true)
    }

    /// Sets the triage note (what the DSL makes of it so far), with its
    /// action and audit row; returns whether `who` could see the alert.
    pub async fn set_triage_note(&self, who: &Account, id: i64, note: &str, now: Timestamp) -> Result<bool, StoreError> {
        if self.alert_detail(who, id).await?.is_none() {
            return Ok(false);
        }
        let note: String = note.trim().chars().take(4000).collect();
        sqlx::query("UPDATE alerts SET triage_note = $2 WHERE id = $1")
            .bind(id)
            .bind(Some(note.as_str()).filter(|n| !n.is_empty()))
            .execute(self.pool())
            .await?;
        self.record_action(who, id, "triage-note", &note, None, None, now).await?;
        Ok(true)
    }
}

impl Store {
    /// Fills the record with `n` synthetic alerts over `people` pupils at
    /// schools `s0`…`s19` (which must exist), in one statement the database
    /// runs itself: for the queue benchmark (`haven-bench queue`), never
    /// for a real record. A tenth are not closed; every third shares its
    /// arrival time with its neighbours, so the sort keys tie; one in fifty
    /// says "alone"; a tenth of the open ones are held by `assignee`.
    #[doc(hidden)]
    pub async fn fill_synthetic_alerts(&self, n: i64, people: i64, start: Timestamp, assignee: i64) -> Result<u64, StoreError> {
        let rows = match self.backend {
            crate::Backend::Sqlite => "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < $1) SELECT i FROM n",
            crate::Backend::Postgres => "SELECT i FROM generate_series(0, $1 - 1) AS g(i)",
        };
        let cats: Vec<String> =
            haven_textscan::Concern::ALL.iter().enumerate().map(|(k, c)| format!("WHEN {k} THEN '{}'", c.name().replace('\'', "''"))).collect();
        let sql = format!(
            "INSERT INTO alerts (school, person, category, level, status, received_at, due_at, last_seen, occurrences, source, excerpt, url, explanation, spans, urgency, assignee) \
             SELECT school, person, category, level, status, received_at, due_at, received_at, 1, 'typed', excerpt, NULL, '', '[]', \
             (6 - level) * {BAND} + COALESCE(due_at, {BAND} - 1), CASE WHEN status <> 'closed' AND (i / 20) % 10 = 1 THEN $4 ELSE NULL END FROM ( \
             SELECT i, 's' || (i % 20) AS school, 'pupil' || (i % $2) AS person, CASE (i / 3) % {} {} END AS category, (i / 20) % 5 + 1 AS level, \
             CASE (i / 7) % 20 WHEN 0 THEN 'open' WHEN 1 THEN 'acknowledged' WHEN 2 THEN 'triaged' WHEN 3 THEN 'escalated' ELSE 'closed' END AS status, \
             $3 + (i / 3) * 60000 AS received_at, CASE WHEN (i / 20) % 5 = 0 THEN NULL ELSE $3 + (i / 3) * 60000 + 86400000 END AS due_at, \
             CASE WHEN (i / 20) % 50 = 0 THEN 'nobody would notice, i feel so alone' ELSE 'what is the homework for tomorrow' END AS excerpt FROM ({rows}) AS r) AS x",
            cats.len(),
            cats.join(" ")
        );
        Ok(sqlx::query(sqlx::AssertSqlSafe(sql)).bind(n).bind(people).bind(ms(start)).bind(assignee).execute(self.pool()).await?.rows_affected())
    }

    /// Fills the directory with `n` synthetic pupils, `pupil0`… at schools
    /// `s0`…`s19` as [`Store::fill_synthetic_alerts`] spreads them, each
    /// with a name, year and form: for the benchmarks, never a real record.
    #[doc(hidden)]
    pub async fn fill_synthetic_people(&self, n: i64, now: Timestamp) -> Result<u64, StoreError> {
        let rows = match self.backend {
            crate::Backend::Sqlite => "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < $1) SELECT i FROM n",
            crate::Backend::Postgres => "SELECT i FROM generate_series(0, $1 - 1) AS g(i)",
        };
        // A pupil's school is the one their alerts come from: pupil k's
        // alerts are those with i % people = k, and i % 20 names the school,
        // so with people a multiple of 20 each pupil is at school k % 20.
        let sql = format!(
            "INSERT INTO people (school, login, display_name, year, form, classes, kind, folded, updated_at) \
             SELECT 's' || (i % 20), 'pupil' || i, 'Pupil ' || i || ' Test', 'Year ' || (7 + i % 7), (7 + i % 7) || 'F' || (i % 5), '', 'pupil', \
             lower('Pupil ' || i || ' Test pupil' || i), $2 FROM ({rows}) AS r"
        );
        Ok(sqlx::query(sqlx::AssertSqlSafe(sql)).bind(n).bind(ms(now)).execute(self.pool()).await?.rows_affected())
    }

    /// Fills the record with `n` synthetic incidents over `people` pupils at
    /// schools `s0`…`s19`, at each school a fifth still open, one in a
    /// hundred about the headteacher, a quarter misuse, raised by `by`: for the benchmarks, never a real record.
    #[doc(hidden)]
    pub async fn fill_synthetic_incidents(&self, n: i64, people: i64, start: Timestamp, by: i64) -> Result<u64, StoreError> {
        let rows = match self.backend {
            crate::Backend::Sqlite => "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < $1) SELECT i FROM n",
            crate::Backend::Postgres => "SELECT i FROM generate_series(0, $1 - 1) AS g(i)",
        };
        let sql = format!(
            "INSERT INTO incidents (school, person, alert, title, kind, about_head, status, raised_at, raised_by, outcome, feedback, lessons, sanction, closed_at) \
             SELECT 's' || (i % 20), 'pupil' || ((i * 7919) % $2 - ((i * 7919) % $2) % 20 + i % 20), NULL, \
             CASE (i / 20) % 4 WHEN 0 THEN 'Disclosure of harm at home' WHEN 1 THEN 'Worrying searches about self-harm' WHEN 2 THEN 'Misuse of a school laptop' ELSE 'Online bullying in a group chat' END, \
             CASE (i / 20) % 4 WHEN 2 THEN 'misuse' ELSE 'safeguarding' END, CASE WHEN (i / 20) % 100 = 99 THEN 1 ELSE 0 END, \
             CASE WHEN (i / 20) % 5 = 0 THEN 'open' ELSE 'closed' END, $3 + i * 600000, $4, '', '', '', '', \
             CASE WHEN (i / 20) % 5 = 0 THEN NULL ELSE $3 + i * 600000 + 86400000 END FROM ({rows}) AS r"
        );
        Ok(sqlx::query(sqlx::AssertSqlSafe(sql)).bind(n).bind(people).bind(ms(start)).bind(by).execute(self.pool()).await?.rows_affected())
    }

    /// Brings the planner's statistics up to date (`ANALYZE`), as after a bulk load.
    #[doc(hidden)]
    pub async fn analyze(&self) -> Result<(), StoreError> {
        // PostgreSQL's autovacuum would also mark the pages all-visible in
        // time, which is what lets a count be an index-only scan.
        let sql = match self.backend {
            crate::Backend::Sqlite => "ANALYZE",
            crate::Backend::Postgres => "VACUUM (ANALYZE)",
        };
        sqlx::query(sql).execute(self.pool()).await?;
        Ok(())
    }
}

/// What to do and who to tell about a category of concern at a level.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Guidance {
    /// What to do.
    pub what_to_do: String,
    /// Who to tell.
    pub who_to_tell: String,
    /// When the trust last wrote it (RFC 3339); `None`: Haven's default.
    pub edited_at: Option<String>,
}

/// Haven's default guidance (`guidance.txt`): the first line that matches.
pub fn default_guidance(category: &str, level: u8) -> Guidance {
    // `*`, one level (`5`) or a range (`3-4`).
    let fits = |levels: &str| match levels.split_once('-') {
        _ if levels == "*" => true,
        Some(_) => parse_levels(levels).is_some_and(|(a, b)| (a..=b).contains(&level)),
        None => levels.parse::<u8>().ok() == Some(level),
    };
    for line in include_str!("guidance.txt").lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let f: Vec<&str> = line.split('|').map(str::trim).collect();
        if let [c, levels, what, tell] = f.as_slice()
            && (*c == "*" || *c == category)
            && fits(levels)
        {
            return Guidance { what_to_do: (*what).into(), who_to_tell: (*tell).into(), edited_at: None };
        }
    }
    Guidance { what_to_do: "Read the evidence and record what you did.".into(), who_to_tell: "The DSL.".into(), edited_at: None }
}

impl Store {
    /// The guidance for a category and level: the trust's, else Haven's default.
    pub async fn guidance(&self, category: &str, level: u8) -> Result<Guidance, StoreError> {
        let r = sqlx::query("SELECT what_to_do, who_to_tell, updated_at FROM guidance WHERE category = $1 AND level = $2")
            .bind(category)
            .bind(i64::from(level))
            .fetch_optional(self.pool())
            .await?;
        match r {
            Some(r) => Ok(Guidance {
                what_to_do: r.try_get("what_to_do")?,
                who_to_tell: r.try_get("who_to_tell")?,
                edited_at: Some(ts(r.try_get("updated_at")?).to_string()),
            }),
            None => Ok(default_guidance(category, level)),
        }
    }

    /// Writes the trust's guidance for a category and level (trust-wide
    /// safeguarding roles only), audited; empty text goes back to Haven's default.
    pub async fn set_guidance(&self, who: &Account, category: &str, level: u8, what: &str, tell: &str, now: Timestamp) -> Result<(), StoreError> {
        if !(who.role.trust_wide() && who.role.sees_alerts()) {
            return Err(StoreError::Invalid("only the trust's safeguarding lead writes the guidance".into()));
        }
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM guidance WHERE category = $1 AND level = $2").bind(category).bind(i64::from(level)).execute(tx.conn()).await?;
        let (what, tell) = (what.trim(), tell.trim());
        if !(what.is_empty() && tell.is_empty()) {
            sqlx::query("INSERT INTO guidance (category, level, what_to_do, who_to_tell, updated_at, updated_by) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(category)
                .bind(i64::from(level))
                .bind(what)
                .bind(tell)
                .bind(ms(now))
                .bind(who.id)
                .execute(tx.conn())
                .await?;
        }
        tx.audit(now, &format!("account:{}", who.id), "guidance.changed", &format!("guidance:{category}:{level}"), "").await?;
        tx.commit().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Role;
    use crate::alerts::{NewAlert, NewOccurrence};
    use crate::testing::stores;

    fn new(school: &str, person: &str, category: &str, level: u8, at: &str, due: Option<&str>, excerpt: &str) -> NewAlert {
        NewAlert {
            school: school.into(),
            person: person.into(),
            category: category.into(),
            level,
            due_at: due.map(|d| d.parse().unwrap()),
            first: NewOccurrence {
                at: at.parse().unwrap(),
                level,
                source: "typed".into(),
                excerpt: excerpt.into(),
                url: None,
                spans: "[]".into(),
                explanation: String::new(),
                screenshot: None,
                screenshot_withheld: false,
                repeats: 1,
            },
        }
    }

    /// Every page from the first, following `next_cursor`; then back again with `prev_cursor`.
    async fn walk(s: &Store, who: &Account, q: &QueueQuery, now: Timestamp) -> (Vec<i64>, Vec<i64>) {
        let mut seen = Vec::new();
        let mut q = q.clone();
        let mut pages = Vec::new();
        loop {
            let p = s.queue_page(who, &q, now).await.unwrap();
            pages.push(p.alerts.iter().map(|a| a.alert.id).collect::<Vec<_>>());
            seen.extend(p.alerts.iter().map(|a| a.alert.id));
            match p.next_cursor {
                Some(c) => q.after = Some(c),
                None => {
                    // Back to the start, page by page.
                    let mut back = Vec::new();
                    let mut prev = p.prev_cursor;
                    q.after = None;
                    while let Some(c) = prev {
                        q.before = Some(c);
                        let p = s.queue_page(who, &q, now).await.unwrap();
                        back.splice(0..0, p.alerts.iter().map(|a| a.alert.id));
                        prev = p.prev_cursor;
                    }
                    back.extend(pages.last().unwrap());
                    return (seen, back);
                }
            }
        }
    }

    #[tokio::test]
    async fn pages_visit_every_alert_once_with_true_totals_and_filters() {
        let now: Timestamp = "2026-11-24T12:00:00Z".parse().unwrap();
        for (s, _dir) in stores().await {
            s.upsert_school("oak", "Oak", false).await.unwrap();
            s.upsert_school("elm", "Elm", false).await.unwrap();
            let (dsl, _) = s.add_account("dsl@oak.example", Role::Dsl, Some("oak"), "a long password", now).await.unwrap();
            let (lead, _) = s.add_account("lead@trust.example", Role::TrustSafeguardingLead, None, "a long password", now).await.unwrap();
            let (teacher, _) = s.add_account("t@oak.example", Role::Teacher, Some("oak"), "a long password", now).await.unwrap();
            let mut oak = Vec::new();
            // Ties: many alerts with the same level, deadline and arrival time.
            for i in 0..11 {
                let level = [3, 4, 5][i % 3];
                let due = if i % 4 == 0 { None } else { Some("2026-11-24T11:00:00Z") };
                let at = if i < 6 { "2026-11-24T09:00:00Z" } else { "2026-11-24T10:00:00Z" };
                oak.push(s.insert_alert(&new("oak", &format!("pupil{i}"), "Vulnerable person", level, at, due, "I feel alone")).await.unwrap());
            }
            let bully = s
                .insert_alert(&new("oak", "amy.b", "Bullying/Violence", 2, "2026-11-24T10:30:00Z", Some("2026-11-25T16:00:00Z"), "100% WEIRD_text"))
                .await
                .unwrap();
            let elm = s.insert_alert(&new("elm", "ben", "Vulnerable person", 5, "2026-11-24T10:00:00Z", None, "x")).await.unwrap();

            for sort in [Sort::Urgent, Sort::Newest] {
                let q = QueueQuery { sort, limit: 3, ..Default::default() };
                let (seen, back) = walk(&s, &dsl, &q, now).await;
                let mut sorted = seen.clone();
                sorted.sort_unstable();
                let mut want: Vec<i64> = oak.iter().copied().chain([bully]).collect();
                want.sort_unstable();
                assert_eq!(sorted, want, "{sort:?}: every alert of the school once, none of another school");
                assert_eq!(back, seen, "{sort:?}: the pages before give the same rows in the same order");
                let first = s.queue_page(&dsl, &q, now).await.unwrap();
                assert_eq!((first.total, first.alerts.len(), first.prev_cursor.is_none()), (12, 3, true));
            }
            // Most urgent first: level 5s, due soonest, no deadline last; then 4s.
            let p = s.queue_page(&dsl, &QueueQuery { limit: 500, ..Default::default() }, now).await.unwrap();
            let levels: Vec<u8> = p.alerts.iter().map(|a| a.alert.level).collect();
            assert!(levels.windows(2).all(|w| w[0] >= w[1]), "{levels:?}");
            assert!(p.alerts[1].alert.due_at.is_some() && p.alerts[2].alert.due_at.is_none() && p.alerts[3].alert.level == 4, "in level 5, no deadline last");
            assert_eq!(p.alerts[0].state, "new");
            assert_eq!(p.alerts[0].person_name, None, "a login the MIS does not name");

            let total = |q: QueueQuery, who: Account| {
                let s = &s;
                async move { s.queue_page(&who, &q, now).await.unwrap().total }
            };
            assert_eq!(total(QueueQuery::default(), lead.clone()).await, 13, "the trust sees both schools");
            assert_eq!(total(QueueQuery { school: Some("elm".into()), ..Default::default() }, lead.clone()).await, 1);
            assert_eq!(total(QueueQuery { school: Some("elm".into()), ..Default::default() }, dsl.clone()).await, 12, "a school role sees its own only");
            assert_eq!(total(QueueQuery::default(), teacher.clone()).await, 0, "a teacher reads no alerts");
            assert_eq!(total(QueueQuery { min_level: Some(4), ..Default::default() }, dsl.clone()).await, 7);
            assert_eq!(total(QueueQuery { min_level: Some(4), max_level: Some(4), ..Default::default() }, dsl.clone()).await, 4);
            assert_eq!(total(QueueQuery { category: Some("Bullying/Violence".into()), ..Default::default() }, dsl.clone()).await, 1);
            assert_eq!(total(QueueQuery { overdue: true, ..Default::default() }, dsl.clone()).await, 8, "due 11:00, now 12:00; none without a deadline");
            assert_eq!(total(QueueQuery { text: Some("ALONE".into()), ..Default::default() }, dsl.clone()).await, 11, "any case, in the evidence");
            assert_eq!(total(QueueQuery { text: Some("amy.B".into()), ..Default::default() }, dsl.clone()).await, 1, "in the person");
            assert_eq!(total(QueueQuery { text: Some("100%".into()), ..Default::default() }, dsl.clone()).await, 1);
            assert_eq!(total(QueueQuery { text: Some("0% w".into()), ..Default::default() }, dsl.clone()).await, 1);
            assert_eq!(total(QueueQuery { text: Some("_".into()), ..Default::default() }, dsl.clone()).await, 1, "LIKE's own characters are literal");
            assert_eq!(total(QueueQuery { text: Some("bullying".into()), ..Default::default() }, dsl.clone()).await, 1, "in the category");
            let quill = crate::directory::PersonRow {
                school: "oak".into(),
                login: "pupil1".into(),
                display_name: Some("Zoe Quill".into()),
                year: None,
                form: None,
                classes: Vec::new(),
                kind: crate::directory::PersonKind::Pupil,
            };
            s.sync_people(Some("oak"), &[quill], now).await.unwrap();
            assert_eq!(total(QueueQuery { text: Some("QUILL".into()), ..Default::default() }, dsl.clone()).await, 1, "in the person's name");
            let named = s.queue_page(&dsl, &QueueQuery { text: Some("quill".into()), ..Default::default() }, now).await.unwrap();
            assert_eq!(named.alerts[0].person_name.as_deref(), Some("Zoe Quill"));

            // States, an assignee, a note.
            assert!(s.act_on_alert(&dsl, oak[0], "triaged", "looked at it", now).await.unwrap());
            assert!(s.act_on_alert(&dsl, oak[1], "escalated", "to the head", now).await.unwrap());
            assert!(s.assign_alert(&dsl, oak[2], Some(dsl.id), now).await.unwrap());
            assert!(s.assign_alert(&dsl, oak[2], Some(teacher.id), now).await.unwrap_err().to_string().contains("cannot hold"));
            assert!(!s.assign_alert(&dsl, elm, Some(dsl.id), now).await.unwrap(), "another school's alert");
            assert!(s.set_triage_note(&dsl, oak[2], "  spoke to form tutor ", now).await.unwrap());
            assert_eq!(s.alert_triage(oak[2]).await.unwrap(), (Some(dsl.id), Some("dsl@oak.example".into()), Some("spoke to form tutor".into())));
            assert_eq!(total(QueueQuery { status: Some("triaged".into()), ..Default::default() }, dsl.clone()).await, 1);
            assert_eq!(total(QueueQuery { status: Some("escalated".into()), ..Default::default() }, dsl.clone()).await, 1);
            assert_eq!(total(QueueQuery { status: Some("new".into()), ..Default::default() }, dsl.clone()).await, 10);
            assert_eq!(total(QueueQuery { assignee: Some(Assignee::Account(dsl.id)), ..Default::default() }, dsl.clone()).await, 1);
            assert_eq!(total(QueueQuery { assignee: Some(Assignee::Nobody), ..Default::default() }, dsl.clone()).await, 11);
            let mine = s.queue_page(&dsl, &QueueQuery { assignee: Some(Assignee::Account(dsl.id)), ..Default::default() }, now).await.unwrap();
            assert_eq!(mine.alerts[0].assignee_email.as_deref(), Some("dsl@oak.example"));
            assert!(s.queue_page(&dsl, &QueueQuery { status: Some("maybe".into()), ..Default::default() }, now).await.is_err());

            // Cursors are checked.
            for bad in ["nonsense!", "djEudS4x", &URL_SAFE_NO_PAD.encode("v1.u.x.1")] {
                let e = s.queue_page(&dsl, &QueueQuery { after: Some(bad.into()), ..Default::default() }, now).await.unwrap_err();
                assert!(e.to_string().contains("cursor"), "{bad}: {e}");
            }
            let c = s.queue_page(&dsl, &QueueQuery { limit: 2, ..Default::default() }, now).await.unwrap().next_cursor.unwrap();
            let e = s.queue_page(&dsl, &QueueQuery { sort: Sort::Newest, after: Some(c), ..Default::default() }, now).await.unwrap_err();
            assert!(e.to_string().contains("another sort"), "{e}");
            s.close().await;
        }
    }

    #[tokio::test]
    async fn acknowledging_many_is_one_transaction_audited_per_alert() {
        let now: Timestamp = "2026-11-24T12:00:00Z".parse().unwrap();
        for (s, _dir) in stores().await {
            s.upsert_school("oak", "Oak", false).await.unwrap();
            s.upsert_school("elm", "Elm", false).await.unwrap();
            let (dsl, _) = s.add_account("dsl@oak.example", Role::Dsl, Some("oak"), "a long password", now).await.unwrap();
            let a = s.insert_alert(&new("oak", "amy", "Vulnerable person", 4, "2026-11-24T10:00:00Z", None, "x")).await.unwrap();
            let b = s.insert_alert(&new("oak", "cal", "Vulnerable person", 3, "2026-11-24T10:00:00Z", None, "x")).await.unwrap();
            let done = s.insert_alert(&new("oak", "dan", "Vulnerable person", 3, "2026-11-24T10:00:00Z", None, "x")).await.unwrap();
            let elm = s.insert_alert(&new("elm", "ben", "Vulnerable person", 5, "2026-11-24T10:00:00Z", None, "x")).await.unwrap();
            assert!(s.act_on_alert(&dsl, done, "triaged", "", now).await.unwrap());
            let acked = s.acknowledge_many(&dsl, &[a, b, done, elm, 999_999], now).await.unwrap();
            assert_eq!(acked, vec![a, b], "only new alerts of the account's school");
            for id in [a, b] {
                assert_eq!(s.alert_detail(&dsl, id).await.unwrap().unwrap().alert.status, "acknowledged");
                let audit = s.audit_search(Some(&format!("alert:{id}")), None, 10).await.unwrap();
                assert_eq!((audit[0].action.as_str(), audit[0].detail.as_str()), ("alert.acknowledged", "bulk"));
            }
            assert!(s.audit_search(Some(&format!("alert:{elm}")), None, 10).await.unwrap().is_empty());
            assert_eq!(s.queue_page(&dsl, &QueueQuery { status: Some("acknowledged".into()), ..Default::default() }, now).await.unwrap().total, 2);
            s.close().await;
        }
    }

    #[tokio::test]
    async fn guidance_is_the_trusts_else_havens() {
        let now: Timestamp = "2026-11-24T12:00:00Z".parse().unwrap();
        for (s, _dir) in stores().await {
            s.upsert_school("oak", "Oak", false).await.unwrap();
            let (dsl, _) = s.add_account("dsl@oak.example", Role::Dsl, Some("oak"), "a long password", now).await.unwrap();
            let (lead, _) = s.add_account("lead@trust.example", Role::TrustSafeguardingLead, None, "a long password", now).await.unwrap();
            let g = s.guidance("Vulnerable person", 5).await.unwrap();
            assert!(g.what_to_do.contains("999") && g.who_to_tell.contains("DSL") && g.edited_at.is_none(), "{g:?}");
            assert!(s.guidance("Vulnerable person", 3).await.unwrap().what_to_do.contains("today"));
            assert!(s.guidance("General risk", 2).await.unwrap().who_to_tell.contains("DSL"), "the catch-all line");
            assert!(s.set_guidance(&dsl, "Vulnerable person", 5, "x", "y", now).await.is_err(), "a school's DSL does not write the trust's guidance");
            s.set_guidance(&lead, "Vulnerable person", 5, "Call the on-call DSL on 0100", "Ms Head", now).await.unwrap();
            let g = s.guidance("Vulnerable person", 5).await.unwrap();
            assert_eq!((g.what_to_do.as_str(), g.who_to_tell.as_str(), g.edited_at.is_some()), ("Call the on-call DSL on 0100", "Ms Head", true));
            assert_eq!(s.audit_search(Some("guidance:Vulnerable person:5"), None, 5).await.unwrap().len(), 1);
            s.set_guidance(&lead, "Vulnerable person", 5, "", "", now).await.unwrap();
            assert!(s.guidance("Vulnerable person", 5).await.unwrap().edited_at.is_none(), "back to Haven's default");
            s.close().await;
        }
    }

    #[test]
    fn keys_levels_and_the_migration_pair() {
        assert!(urgency(5, Some(Timestamp::UNIX_EPOCH)) < urgency(5, None));
        assert!(urgency(5, None) < urgency(4, Some(Timestamp::UNIX_EPOCH)));
        let k = Key { sort: Sort::Newest, key: 1_764_000_000_000, id: 42 };
        assert_eq!(Key::decode(&k.encode(), Sort::Newest).unwrap(), k);
        assert_eq!(parse_levels("4"), Some((4, 5)));
        assert_eq!(parse_levels("4-5"), Some((4, 5)));
        assert_eq!(parse_levels("5-4"), None);
        assert_eq!(parse_levels("9"), None);
        let strip = |s: &str| s.lines().map(|l| l.split("--").next().unwrap_or("").trim().to_string()).filter(|l| !l.is_empty()).collect::<Vec<_>>();
        assert_eq!(strip(include_str!("../migrations/sqlite/0012_queue.sql")), strip(include_str!("../migrations/postgres/0012_queue.sql")));
    }
}
