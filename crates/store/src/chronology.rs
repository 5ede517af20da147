//! A person's chronology: everything in the record about them, newest
//! first — alerts (with their actions and triage note), incidents raised
//! about them or linked to them (with their actions), reports made about
//! them, and filtering changes that name them — a page at a time.
//!
//! Each kind is read by its own keyset query on an index that starts with
//! the person (migration 0015), at most a page plus one of each, and the
//! pages are merged here: a pupil with ten thousand alerts costs the same as
//! one with ten. The cursor is the last entry's `(time, kind, id)`, so a
//! page boundary is exact even when entries of different kinds share a time.
//!
//! Least privilege as everywhere: alerts only of the reader's audiences
//! ([`Role::alert_audiences`]), never an incident about the headteacher for
//! the headteacher, school roles only their own school; every read audited.

use std::collections::HashMap;

use base64::Engine as _;
use jiff::Timestamp;
use serde::Serialize;
use sqlx::Row;

use crate::people::Account;
use crate::{Role, Store, StoreError, ms, ts};

/// What a chronology entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EntryKind {
    /// An alert about the person.
    Alert,
    /// An incident about them, or linked to them.
    Incident,
    /// A report made about them (block page, the public page).
    Report,
    /// A filtering change or request naming them.
    FilterChange,
}

impl EntryKind {
    /// Every kind, in the order filters offer them.
    pub const ALL: [EntryKind; 4] = [Self::Alert, Self::Incident, Self::Report, Self::FilterChange];

    /// As in URLs and JSON.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alert => "alert",
            Self::Incident => "incident",
            Self::Report => "report",
            Self::FilterChange => "filter-change",
        }
    }

    /// Reads [`as_str`](Self::as_str).
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Said to people.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::Alert => "Alert",
            Self::Incident => "Incident",
            Self::Report => "Report",
            Self::FilterChange => "Filtering change",
        }
    }

    /// Its place among entries at the same millisecond: part of the cursor.
    fn rank(self) -> i64 {
        match self {
            Self::Alert => 0,
            Self::Incident => 1,
            Self::Report => 2,
            Self::FilterChange => 3,
        }
    }

    fn from_rank(r: i64) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.rank() == r)
    }
}

impl std::fmt::Display for EntryKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for EntryKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// Something done on an alert or an incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntryAction {
    /// When (RFC 3339).
    pub at: String,
    /// Who (their e-mail), when a person.
    pub by: Option<String>,
    /// What kind of step (`acknowledged`, `closed`, …; `note` on incidents).
    pub kind: String,
    /// What was written.
    pub note: String,
}

/// A line of a person's chronology.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChronologyEntry {
    /// When (RFC 3339).
    pub at: String,
    /// What it is.
    pub what: EntryKind,
    /// Its id (among its kind).
    pub id: i64,
    /// Category (alerts), title (incidents), kind (reports), what changes (filtering).
    pub summary: String,
    /// Level (alerts).
    pub level: Option<u8>,
    /// Status (a filtering change's state).
    pub status: String,
    /// More: the triage note, the incident's branch, the reporter's words, the change's reason.
    pub detail: Option<String>,
    /// Steps taken on it (alerts and incidents), oldest first.
    pub actions: Vec<EntryAction>,
    /// Unix milliseconds, for placing it on a timeline.
    #[serde(skip)]
    pub at_ms: i64,
}

/// Who the chronology is about, from the MIS directory when it knows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChronologyPerson {
    /// School id.
    pub school: String,
    /// Login.
    pub login: String,
    /// Display name.
    pub name: Option<String>,
    /// Year group.
    pub year: Option<String>,
    /// Form.
    pub form: Option<String>,
    /// Teaching groups.
    pub groups: Vec<String>,
    /// `pupil` or `staff`; none when the directory does not know them.
    pub kind: Option<String>,
    /// Whether they have left the MIS.
    pub left: bool,
}

/// Which part of a chronology to read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChronologyQuery {
    /// School id.
    pub school: String,
    /// Login.
    pub person: String,
    /// Only these kinds; every kind when empty.
    pub kinds: Vec<EntryKind>,
    /// From (inclusive).
    pub from: Option<Timestamp>,
    /// Until (exclusive).
    pub to: Option<Timestamp>,
    /// Where the previous page stopped ([`Chronology::next_before`]).
    pub before: Option<String>,
    /// At most this many (1 to 500; 0 means 50).
    pub limit: i64,
}

/// A page of a person's chronology, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Chronology {
    /// Who.
    pub person: ChronologyPerson,
    /// The entries.
    pub entries: Vec<ChronologyEntry>,
    /// The next (older) page's cursor; none on the last page.
    pub next_before: Option<String>,
}

/// The most one page holds.
pub const MAX_LIMIT: i64 = 500;

fn cursor(at: i64, kind: EntryKind, id: i64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{at}:{}:{id}", kind.rank()))
}

fn parse_cursor(c: &str) -> Option<(i64, EntryKind, i64)> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(c).ok()?;
    let mut parts = std::str::from_utf8(&raw).ok()?.splitn(3, ':');
    let at = parts.next()?.parse().ok()?;
    let kind = EntryKind::from_rank(parts.next()?.parse().ok()?)?;
    Some((at, kind, parts.next()?.parse().ok()?))
}

/// Whether `who` may read a person's record at `school`.
fn may_see(who: &Account, school: &str) -> bool {
    who.role.sees_alerts() && (who.role.trust_wide() || who.school.as_deref() == Some(school))
}

/// The upper bound `(at, id)` one kind's query reads below: entries of that
/// kind come before the cursor when `(at, kind, id)` is smaller, and the
/// range's end is exclusive.
fn bound(kind: EntryKind, before: Option<(i64, EntryKind, i64)>, to: Option<i64>) -> (i64, i64) {
    let mut b = (i64::MAX, i64::MAX);
    if let Some((at, k, id)) = before {
        let id = match kind.rank().cmp(&k.rank()) {
            std::cmp::Ordering::Less => i64::MAX,
            std::cmp::Ordering::Equal => id,
            std::cmp::Ordering::Greater => i64::MIN,
        };
        b = b.min((at, id));
    }
    if let Some(to) = to {
        b = b.min((to, i64::MIN));
    }
    b
}

/// The time range and keyset condition on `at` and `id`, with the bounds
/// bound as `$3` (from), `$4` (bound time) and `$5` (bound id). The bare
/// `at <= $4` lets the index seek to the cursor instead of filtering its
/// way there. The lower bound is kept out of the index's reach (`+`): given
/// both bounds, SQLite 3.51 without statistics prefers the school's
/// time index to the person's and reads a whole school's alerts.
fn window(at: &str, id: &str) -> String {
    format!("{at} <= $4 AND ({at} < $4 OR {id} < $5) AND +{at} >= $3")
}

/// `$first, $first+1, …` for `n` values.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

/// One kind's page, each bound alike: `$1` school, `$2` login, `$3` from,
/// `$4`/`$5` the bound, `$6` how many, then the reader's audiences (or, for
/// incidents, `school/login` as links name people) from `$7`.
fn alerts_sql(audiences: usize) -> String {
    format!(
        "SELECT id, received_at, category, level, status, triage_note FROM alerts \
         WHERE school = $1 AND person = $2 AND audience IN ({}) AND {} ORDER BY received_at DESC, id DESC LIMIT $6",
        placeholders(7, audiences),
        window("received_at", "id")
    )
}

/// The incidents about the person (`linked` false), or linked to them and
/// about someone else (`linked`): two seeks, where one query with an OR
/// would read the whole school's incidents.
fn incidents_sql(head: bool, linked: bool) -> String {
    let hidden = if head { " AND i.about_head = 0" } else { "" };
    // CROSS JOIN: SQLite starts from the links, as written.
    let (from, whose) = if linked {
        ("incident_links l CROSS JOIN incidents i", "l.kind = 'person' AND l.target = $7 AND i.id = l.incident AND COALESCE(i.person, '') <> $2")
    } else {
        ("incidents i", "i.person = $2")
    };
    format!(
        "SELECT i.id, i.raised_at, i.title, i.status, i.kind FROM {from} WHERE {whose} AND i.school = $1{hidden} \
         AND {} ORDER BY i.raised_at DESC, i.id DESC LIMIT $6",
        window("i.raised_at", "i.id")
    )
}

fn reports_sql(audiences: usize) -> String {
    // A report that raised an alert is as private as that alert.
    let seen = if audiences == 0 { "r.alert IS NULL".to_string() } else { format!("(r.alert IS NULL OR a.audience IN ({}))", placeholders(7, audiences)) };
    format!(
        "SELECT r.id, r.at, r.kind, r.words, r.status FROM reports r LEFT JOIN alerts a ON a.id = r.alert \
         WHERE r.school = $1 AND r.person = $2 AND {seen} AND {} ORDER BY r.at DESC, r.id DESC LIMIT $6",
        window("r.at", "r.id")
    )
}

fn changes_sql() -> String {
    format!(
        "SELECT id, created_at, kind, verdict, site, category, reason, state FROM filter_changes \
         WHERE school = $1 AND scope = 'user' AND scope_id = $2 AND {} ORDER BY created_at DESC, id DESC LIMIT $6",
        window("created_at", "id")
    )
}

impl Store {
    /// A page of `q.person`'s chronology at `q.school` as `who` may see it,
    /// newest first; `None` when `who` may not read it. Following
    /// `next_before` visits each entry once. Audited as a read of the
    /// person's record (and a refusal as such).
    pub async fn chronology_page(&self, who: &Account, q: &ChronologyQuery, now: Timestamp) -> Result<Option<Chronology>, StoreError> {
        let (school, person) = (q.school.as_str(), q.person.as_str());
        let object = format!("person:{school}/{person}");
        if !may_see(who, school) {
            self.audit(now, &format!("account:{}", who.id), "chronology.read.denied", &object, "").await?;
            return Ok(None);
        }
        let before = match q.before.as_deref().filter(|b| !b.is_empty()) {
            Some(c) => Some(parse_cursor(c).ok_or_else(|| StoreError::Invalid("that `before` is not one this chronology gave".into()))?),
            None => None,
        };
        let limit = if q.limit <= 0 { 50 } else { q.limit.min(MAX_LIMIT) };
        let from = q.from.map_or(i64::MIN, ms);
        let to = q.to.map(ms);
        let wants = |k: EntryKind| q.kinds.is_empty() || q.kinds.contains(&k);
        let mut found: Vec<ChronologyEntry> = Vec::new();

        let audiences = who.role.alert_audiences();
        if wants(EntryKind::Alert) && !audiences.is_empty() {
            let (b_at, b_id) = bound(EntryKind::Alert, before, to);
            let mut query =
                sqlx::query(sqlx::AssertSqlSafe(alerts_sql(audiences.len()))).bind(school).bind(person).bind(from).bind(b_at).bind(b_id).bind(limit + 1);
            for a in audiences {
                query = query.bind(*a);
            }
            for r in query.fetch_all(self.pool()).await? {
                let at: i64 = r.try_get("received_at")?;
                found.push(ChronologyEntry {
                    at: ts(at).to_string(),
                    what: EntryKind::Alert,
                    id: r.try_get("id")?,
                    summary: r.try_get("category")?,
                    level: u8::try_from(r.try_get::<i64, _>("level")?).ok(),
                    status: r.try_get("status")?,
                    detail: r.try_get::<Option<String>, _>("triage_note")?.filter(|n| !n.trim().is_empty()),
                    actions: Vec::new(),
                    at_ms: at,
                });
            }
        }

        if wants(EntryKind::Incident) {
            let (b_at, b_id) = bound(EntryKind::Incident, before, to);
            // The headteacher never sees an incident concerning the headteacher, here either.
            let mut rows = Vec::new();
            for linked in [false, true] {
                let mut query = sqlx::query(sqlx::AssertSqlSafe(incidents_sql(who.role == Role::Headteacher, linked)))
                    .bind(school)
                    .bind(person)
                    .bind(from)
                    .bind(b_at)
                    .bind(b_id)
                    .bind(limit + 1);
                if linked {
                    query = query.bind(format!("{school}/{person}"));
                }
                rows.extend(query.fetch_all(self.pool()).await?);
            }
            for r in rows {
                let at: i64 = r.try_get("raised_at")?;
                let kind: String = r.try_get("kind")?;
                found.push(ChronologyEntry {
                    at: ts(at).to_string(),
                    what: EntryKind::Incident,
                    id: r.try_get("id")?,
                    summary: r.try_get("title")?,
                    level: None,
                    status: r.try_get("status")?,
                    detail: Some(crate::incidents::Kind::parse(&kind).map_or(kind, |k| k.label().to_string())),
                    actions: Vec::new(),
                    at_ms: at,
                });
            }
        }

        if wants(EntryKind::Report) {
            let (b_at, b_id) = bound(EntryKind::Report, before, to);
            let mut query =
                sqlx::query(sqlx::AssertSqlSafe(reports_sql(audiences.len()))).bind(school).bind(person).bind(from).bind(b_at).bind(b_id).bind(limit + 1);
            for a in audiences {
                query = query.bind(*a);
            }
            for r in query.fetch_all(self.pool()).await? {
                let at: i64 = r.try_get("at")?;
                let kind: String = r.try_get("kind")?;
                let summary = match kind.as_str() {
                    "worry" => "Reported something worrying (block page)",
                    "review" => "Asked for a blocked page to be allowed",
                    "public" => "A concern reported about them",
                    _ => "A report",
                };
                found.push(ChronologyEntry {
                    at: ts(at).to_string(),
                    what: EntryKind::Report,
                    id: r.try_get("id")?,
                    summary: summary.to_string(),
                    level: None,
                    status: r.try_get("status")?,
                    detail: Some(r.try_get::<String, _>("words")?).filter(|w| !w.trim().is_empty()),
                    actions: Vec::new(),
                    at_ms: at,
                });
            }
        }

        if wants(EntryKind::FilterChange) {
            let (b_at, b_id) = bound(EntryKind::FilterChange, before, to);
            let rows = sqlx::query(sqlx::AssertSqlSafe(changes_sql()))
                .bind(school)
                .bind(person)
                .bind(from)
                .bind(b_at)
                .bind(b_id)
                .bind(limit + 1)
                .fetch_all(self.pool())
                .await?;
            for r in rows {
                let at: i64 = r.try_get("created_at")?;
                let target = match (r.try_get::<Option<String>, _>("site")?, r.try_get::<Option<String>, _>("category")?) {
                    (Some(s), _) => s,
                    (None, Some(c)) => format!("category {c}"),
                    (None, None) => String::new(),
                };
                let what = match r.try_get::<Option<String>, _>("verdict")? {
                    Some(v) => format!("{v} {target}"),
                    None => target,
                };
                let kind: String = r.try_get("kind")?;
                found.push(ChronologyEntry {
                    at: ts(at).to_string(),
                    what: EntryKind::FilterChange,
                    id: r.try_get("id")?,
                    summary: format!("{} ({kind})", what.trim()),
                    level: None,
                    status: r.try_get("state")?,
                    detail: Some(r.try_get("reason")?),
                    actions: Vec::new(),
                    at_ms: at,
                });
            }
        }

        found.sort_by_key(|e| std::cmp::Reverse((e.at_ms, e.what.rank(), e.id)));
        let more = found.len() as i64 > limit;
        found.truncate(usize::try_from(limit).unwrap_or(50));
        let next_before = if more { found.last().map(|e| cursor(e.at_ms, e.what, e.id)) } else { None };
        self.nest_actions(&mut found).await?;

        let p = self.person(school, person).await?;
        let person = ChronologyPerson {
            school: school.to_string(),
            login: person.to_string(),
            name: p.as_ref().and_then(|p| p.row.display_name.clone()),
            year: p.as_ref().and_then(|p| p.row.year.clone()),
            form: p.as_ref().and_then(|p| p.row.form.clone()),
            groups: p.as_ref().map(|p| p.row.classes.clone()).unwrap_or_default(),
            kind: p.as_ref().map(|p| p.row.kind.as_str().to_string()),
            left: p.as_ref().is_some_and(|p| p.left_at.is_some()),
        };
        self.audit(now, &format!("account:{}", who.id), "chronology.read", &object, "").await?;
        Ok(Some(Chronology { person, entries: found, next_before }))
    }

    /// Gives one person `n` more synthetic alerts at `school`, a minute
    /// apart from `start`: the heavy history the chronology benchmark reads
    /// (`haven-bench queue`), never for a real record.
    #[doc(hidden)]
    pub async fn fill_synthetic_history(&self, school: &str, person: &str, n: i64, start: Timestamp) -> Result<u64, StoreError> {
        let rows = match self.backend {
            crate::Backend::Sqlite => "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < $1) SELECT i FROM n",
            crate::Backend::Postgres => "SELECT i FROM generate_series(0, $1 - 1) AS g(i)",
        };
        let sql = format!(
            "INSERT INTO alerts (school, person, category, level, status, received_at, due_at, last_seen, occurrences, source, excerpt, url, explanation, spans, urgency) \
             SELECT $2, $3, 'Bullying', i % 5 + 1, 'closed', $4 + i * 60000, NULL, $4 + i * 60000, 1, 'typed', 'words', NULL, '', '[]', 0 FROM ({rows}) AS r"
        );
        Ok(sqlx::query(sqlx::AssertSqlSafe(sql)).bind(n).bind(school).bind(person).bind(ms(start)).execute(self.pool()).await?.rows_affected())
    }

    /// Puts each alert's and incident's steps on the page's entries: one
    /// query per kind for the whole page, never one per entry.
    async fn nest_actions(&self, entries: &mut [ChronologyEntry]) -> Result<(), StoreError> {
        let ids = |k: EntryKind| entries.iter().filter(|e| e.what == k).map(|e| e.id).collect::<Vec<i64>>();
        let mut by: HashMap<(EntryKind, i64), Vec<EntryAction>> = HashMap::new();
        let alerts = ids(EntryKind::Alert);
        if !alerts.is_empty() {
            let sql = format!(
                "SELECT x.alert AS owner, x.at, a.email, x.kind, x.note FROM alert_actions x LEFT JOIN accounts a ON a.id = x.account \
                 WHERE x.alert IN ({}) ORDER BY x.at, x.id",
                placeholders(1, alerts.len())
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in &alerts {
                query = query.bind(*id);
            }
            for r in query.fetch_all(self.pool()).await? {
                by.entry((EntryKind::Alert, r.try_get("owner")?)).or_default().push(EntryAction {
                    at: ts(r.try_get("at")?).to_string(),
                    by: r.try_get("email")?,
                    kind: r.try_get("kind")?,
                    note: r.try_get("note")?,
                });
            }
        }
        let incidents = ids(EntryKind::Incident);
        if !incidents.is_empty() {
            let sql = format!(
                "SELECT x.incident AS owner, x.at, a.email, x.note FROM incident_actions x LEFT JOIN accounts a ON a.id = x.account \
                 WHERE x.incident IN ({}) ORDER BY x.at, x.id",
                placeholders(1, incidents.len())
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in &incidents {
                query = query.bind(*id);
            }
            for r in query.fetch_all(self.pool()).await? {
                by.entry((EntryKind::Incident, r.try_get("owner")?)).or_default().push(EntryAction {
                    at: ts(r.try_get("at")?).to_string(),
                    by: r.try_get("email")?,
                    kind: "note".into(),
                    note: r.try_get("note")?,
                });
            }
        }
        for e in entries.iter_mut() {
            if let Some(a) = by.remove(&(e.what, e.id)) {
                e.actions = a;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::alerts::{NewAlert, NewOccurrence};
    use crate::changes::NewChange;
    use crate::directory::{PersonKind, PersonRow};
    use crate::incidents::{Kind, NewIncident};
    use crate::reports::NewReport;
    use crate::staff::Audience;
    use crate::testing::stores;

    fn alert(school: &str, person: &str, level: u8, at: Timestamp) -> NewAlert {
        NewAlert {
            school: school.into(),
            person: person.into(),
            category: format!("Concern {level}"),
            level,
            due_at: Some(at),
            first: NewOccurrence {
                at,
                level,
                source: "chat".into(),
                excerpt: "words".into(),
                url: None,
                explanation: String::new(),
                spans: "[]".into(),
                screenshot: None,
                screenshot_withheld: false,
                repeats: 1,
            },
        }
    }

    fn report(person: &str, words: &str, at: Timestamp) -> NewReport {
        NewReport {
            kind: "public".into(),
            school: Some("oak".into()),
            person: Some(person.into()),
            at,
            reference: None,
            url: None,
            categories: Vec::new(),
            rule: None,
            words: words.into(),
            contact: Some("parent@example.org".into()),
        }
    }

    fn q(person: &str, limit: i64) -> ChronologyQuery {
        ChronologyQuery { school: "oak".into(), person: person.into(), limit, ..ChronologyQuery::default() }
    }

    /// Every entry, following the cursor, each page checked to be newest first.
    async fn walk(s: &Store, who: &Account, mut query: ChronologyQuery, now: Timestamp) -> Vec<(EntryKind, i64)> {
        let mut out = Vec::new();
        let mut last: Option<(i64, i64, i64)> = None;
        loop {
            let page = s.chronology_page(who, &query, now).await.unwrap().unwrap();
            assert!(page.entries.len() as i64 <= query.limit);
            for e in &page.entries {
                let key = (e.at_ms, e.what.rank(), e.id);
                assert!(last.is_none_or(|l| key < l), "newest first across pages");
                last = Some(key);
                out.push((e.what, e.id));
            }
            match page.next_before {
                Some(b) => query.before = Some(b),
                None => break,
            }
        }
        out
    }

    #[tokio::test]
    async fn a_chronology_joins_every_kind_each_reader_sees_only_theirs_and_pages_every_entry_once() {
        let t0: Timestamp = "2026-11-02T09:00:00Z".parse().unwrap();
        let at = |mins: i64| t0 + jiff::SignedDuration::from_mins(mins);
        let now = at(10_000);
        for (s, _dir) in stores().await {
            s.upsert_school("oak", "Oak", false).await.unwrap();
            s.upsert_school("elm", "Elm", false).await.unwrap();
            let add = |email: &'static str, role, school: Option<&'static str>| {
                let s = s.clone();
                async move { s.add_account(email, role, school, "a long password", t0).await.unwrap().0 }
            };
            let dsl = add("dsl@oak.example", Role::Dsl, Some("oak")).await;
            let head = add("head@oak.example", Role::Headteacher, Some("oak")).await;
            let lead = add("lead@trust.example", Role::TrustSafeguardingLead, None).await;
            let elm = add("dsl@elm.example", Role::Dsl, Some("elm")).await;
            let teacher = add("t@oak.example", Role::Teacher, Some("oak")).await;
            let chair = add("chair@oak.example", Role::ChairOfGovernors, Some("oak")).await;
            let amy = PersonRow {
                school: "oak".into(),
                login: "amy".into(),
                display_name: Some("Amy Pupil".into()),
                year: Some("Year 10".into()),
                form: Some("10GH".into()),
                classes: vec!["10A/Ma1".into()],
                kind: PersonKind::Pupil,
            };
            s.sync_people(Some("oak"), &[amy], t0).await.unwrap();

            // Alerts: pupil ones (three sharing one time with other kinds, so
            // the cursor must break ties across kinds), one about staff, one
            // about the head, and one at another school.
            let mut pupil_alerts = Vec::new();
            for (i, mins) in [0, 5, 5, 5, 30, 60, 61, 62].into_iter().enumerate() {
                pupil_alerts.push(s.insert_alert(&alert("oak", "amy", u8::try_from(i % 5 + 1).unwrap(), at(mins))).await.unwrap());
            }
            let mut restricted = Vec::new();
            for audience in [Audience::Staff, Audience::Head] {
                let mut tx = s.begin().await.unwrap();
                let id = tx.insert_alert(&alert("oak", "amy", 3, at(5))).await.unwrap();
                tx.set_audience(id, audience).await.unwrap();
                tx.commit().await.unwrap();
                restricted.push(id);
            }
            let elsewhere = s.insert_alert(&alert("elm", "amy", 4, at(5))).await.unwrap();
            assert!(s.act_on_alert(&dsl, pupil_alerts[0], "acknowledged", "seen it", at(1)).await.unwrap());
            assert!(s.set_triage_note(&dsl, pupil_alerts[0], "spoke to her form tutor", at(2)).await.unwrap());

            // Incidents: about her, about the head (naming her), and one about
            // someone else linked to her.
            let n = |person, title, about_head| NewIncident { school: "oak", person: Some(person), alert: None, title, kind: Kind::Safeguarding, about_head };
            let hers = s.raise_incident(&dsl, &n("amy", "Worrying chat", false), at(5)).await.unwrap().unwrap();
            let heads = s.raise_incident(&dsl, &n("amy", "The head messaged her", true), at(40)).await.unwrap().unwrap();
            let bens = s.raise_incident(&dsl, &n("ben", "Ben's group chat", false), at(50)).await.unwrap().unwrap();
            assert!(s.link_incident(&dsl, bens, "person", "oak/amy", at(51)).await.unwrap());
            assert!(s.incident_action(&dsl, hers, "Met her parents", at(6)).await.unwrap());
            let other = s.raise_incident(&dsl, &n("ben", "Not hers", false), at(52)).await.unwrap().unwrap();

            // Reports: one about her, one that raised the alert about staff.
            let open_report = s.insert_report(&report("amy", "someone keeps messaging her", at(5))).await.unwrap();
            let mut tx = s.begin().await.unwrap();
            let staff_report = tx.insert_report(&report("amy", "about a teacher", at(20))).await.unwrap();
            tx.link_report(staff_report, restricted[0]).await.unwrap();
            tx.commit().await.unwrap();

            // Filtering: a request for her, and one for the whole school.
            let change = |scope: &str, scope_id: Option<&str>| NewChange {
                school: "oak".into(),
                kind: "pupil".into(),
                scope: scope.into(),
                scope_id: scope_id.map(str::to_string),
                verdict: Some("allow".into()),
                site: Some("example.org".into()),
                category: None,
                reason: "for homework".into(),
                starts_at: at(5),
                until: None,
            };
            let hers_change = s.add_filter_change(&change("user", Some("amy")), "requested", "amy", at(5)).await.unwrap();
            s.add_filter_change(&change("school", None), "in-force", "it@oak.example", at(5)).await.unwrap();

            // The DSL: every kind, pupil alerts only, her school only.
            let all = s.chronology_page(&dsl, &q("amy", 100), now).await.unwrap().unwrap();
            assert_eq!(all.person.name.as_deref(), Some("Amy Pupil"));
            assert_eq!((all.person.year.as_deref(), all.person.form.as_deref()), (Some("Year 10"), Some("10GH")));
            assert_eq!(all.person.groups, vec!["10A/Ma1".to_string()]);
            assert!(all.next_before.is_none());
            let got: HashSet<(EntryKind, i64)> = all.entries.iter().map(|e| (e.what, e.id)).collect();
            let mut want: HashSet<(EntryKind, i64)> = pupil_alerts.iter().map(|id| (EntryKind::Alert, *id)).collect();
            want.extend([(EntryKind::Incident, hers), (EntryKind::Incident, heads), (EntryKind::Incident, bens)]);
            want.extend([(EntryKind::Report, open_report), (EntryKind::FilterChange, hers_change)]);
            assert_eq!(got, want, "every kind about her; no staff or head alert, no other school's, not the report behind the staff alert");
            assert!(!got.contains(&(EntryKind::Alert, elsewhere)) && !got.contains(&(EntryKind::Incident, other)));
            let first = all.entries.iter().find(|e| e.what == EntryKind::Alert && e.id == pupil_alerts[0]).unwrap();
            assert_eq!(first.detail.as_deref(), Some("spoke to her form tutor"));
            assert_eq!(
                first.actions.iter().map(|a| (a.kind.as_str(), a.note.as_str())).collect::<Vec<_>>(),
                vec![("acknowledged", "seen it"), ("triage-note", "spoke to her form tutor")]
            );
            let inc = all.entries.iter().find(|e| e.what == EntryKind::Incident && e.id == hers).unwrap();
            assert_eq!(inc.actions.iter().map(|a| a.note.as_str()).collect::<Vec<_>>(), vec!["Met her parents"]);
            assert_eq!(inc.actions[0].by.as_deref(), Some("dsl@oak.example"));
            let json = serde_json::to_value(&all).unwrap();
            assert_eq!(json["entries"][0]["what"], "alert", "kinds are kebab-case strings: {json}");
            assert!(json["entries"].as_array().unwrap().iter().any(|e| e["what"] == "filter-change"));
            assert!(!json.to_string().contains("parent@example.org"), "a reporter's contact details never leave the record");

            // The head: staff alerts too, never the incident about the head.
            let heads_view: HashSet<(EntryKind, i64)> = walk(&s, &head, q("amy", 3), now).await.into_iter().collect();
            assert!(heads_view.contains(&(EntryKind::Alert, restricted[0])) && !heads_view.contains(&(EntryKind::Alert, restricted[1])));
            assert!(!heads_view.contains(&(EntryKind::Incident, heads)), "the head never sees an incident about the head");
            assert!(heads_view.contains(&(EntryKind::Report, staff_report)));
            // The trust's lead: everything at Oak.
            let leads: HashSet<(EntryKind, i64)> = walk(&s, &lead, q("amy", 4), now).await.into_iter().collect();
            assert!(leads.contains(&(EntryKind::Alert, restricted[1])) && leads.contains(&(EntryKind::Incident, heads)));
            // Others: nothing.
            for nobody in [&elm, &teacher, &chair] {
                assert!(s.chronology_page(nobody, &q("amy", 10), now).await.unwrap().is_none(), "{:?}", nobody.role);
            }

            // Paging: every entry once, whatever the page size, ties and all.
            for limit in [1, 2, 3, 5, 100] {
                let seen = walk(&s, &dsl, q("amy", limit), now).await;
                assert_eq!(seen.len(), want.len(), "page size {limit}: each once");
                assert_eq!(seen.iter().copied().collect::<HashSet<_>>(), want, "page size {limit}");
            }
            // Kinds and dates.
            let only = ChronologyQuery { kinds: vec![EntryKind::Report, EntryKind::FilterChange], ..q("amy", 2) };
            let seen = walk(&s, &dsl, only, now).await;
            assert_eq!(seen, vec![(EntryKind::FilterChange, hers_change), (EntryKind::Report, open_report)]);
            let window = ChronologyQuery { from: Some(at(30)), to: Some(at(61)), ..q("amy", 2) };
            let seen = walk(&s, &dsl, window, now).await;
            assert_eq!(
                seen,
                vec![(EntryKind::Alert, pupil_alerts[5]), (EntryKind::Incident, bens), (EntryKind::Incident, heads), (EntryKind::Alert, pupil_alerts[4])]
            );
            let bad = ChronologyQuery { before: Some("nonsense!".into()), ..q("amy", 5) };
            assert!(s.chronology_page(&dsl, &bad, now).await.is_err());
            // The legacy read is the first page.
            assert_eq!(s.chronology(&dsl, "oak", "amy", now).await.unwrap().unwrap().len(), want.len());

            // Every read audited as the person's record; refusals too.
            let log = s.audit_search(Some("person:oak/amy"), None, 500).await.unwrap();
            let reads = log.iter().filter(|e| e.action == "chronology.read").count();
            assert!(reads > 20, "one row per page read: {reads}");
            assert!(log.iter().filter(|e| e.action == "chronology.read").all(|e| e.detail.is_empty()));
            assert_eq!(log.iter().filter(|e| e.action == "chronology.read.denied").count(), 3);
            assert!(log.iter().any(|e| e.action == "chronology.read.denied" && e.actor == format!("account:{}", elm.id)));
            s.close().await;
        }
    }

    #[tokio::test]
    async fn each_kind_is_read_by_a_seek_on_an_index_without_sorting() {
        for (s, _dir) in stores().await {
            if s.backend != crate::Backend::Sqlite {
                s.close().await;
                continue;
            }
            for (sql, index) in [
                (alerts_sql(1), "alerts_person_received"),
                (alerts_sql(3), "alerts_person_received"),
                (incidents_sql(true, false), "incidents_person_raised"),
                (incidents_sql(false, true), "incident_links_target"),
                (reports_sql(1), "reports_person"),
                (changes_sql(), "filter_changes_user"),
            ] {
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
                    .bind("oak")
                    .bind("amy")
                    .bind(0i64)
                    .bind(i64::MAX)
                    .bind(i64::MAX)
                    .bind(51i64)
                    .bind("pupil")
                    .bind("staff")
                    .bind("head")
                    .fetch_all(s.pool())
                    .await
                    .unwrap();
                let plan: Vec<String> = rows.iter().map(|r| r.try_get::<String, _>("detail").unwrap()).collect();
                let plan = plan.join("\n");
                assert!(plan.contains(&format!("INDEX {index}")), "{sql}\n{plan}");
                // The links of one person are few; everything else comes in order.
                assert!(index == "incident_links_target" || !plan.contains("TEMP B-TREE"), "no sort: the index gives the order\n{sql}\n{plan}");
            }
            s.close().await;
        }
    }
}
