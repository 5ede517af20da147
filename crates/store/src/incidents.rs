//! Incidents: raised from an alert or a report, they follow the response
//! flowchart (BRIEF.md): possibly illegal → police / CEOP, preserve evidence,
//! do not investigate the device; a concern about staff → the headteacher
//! (or the chair of governors when it concerns the head); otherwise a check
//! by two senior staff on a designated device. A welfare concern about a
//! pupil follows the safeguarding steps; only misuse (breaking the
//! acceptable use agreement) has sanctions. Actions, evidence files (kept
//! by SHA-256), outcome, feedback, lessons and any sanction are recorded;
//! alerts, people and other incidents are linked; a pupil's chronology
//! joins alerts, incidents and reports in time.
//!
//! An incident concerning the headteacher (`about_head`) is never shown to
//! the headteacher: the chair of governors and the trust's safeguarding
//! lead work it, with the LADO.

use jiff::Timestamp;
use serde::Serialize;
use sqlx::Row;

use base64::Engine as _;

use crate::people::Account;
use crate::{Role, Store, StoreError, ms, ts};

/// The flowchart's branches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Possibly illegal (CSAM, terrorism, grooming, extortion, …).
    PossiblyIllegal,
    /// A concern about a member of staff.
    Staff,
    /// A welfare concern about a pupil (at risk, harmed, harming): support
    /// and referral, never sanctions.
    Safeguarding,
    /// Misuse of school systems (the acceptable use agreement): sanctions.
    Misuse,
}

impl Kind {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PossiblyIllegal => "possibly-illegal",
            Self::Staff => "staff",
            Self::Safeguarding => "safeguarding",
            Self::Misuse => "misuse",
        }
    }

    /// Every branch.
    pub const ALL: [Kind; 4] = [Self::Safeguarding, Self::Misuse, Self::PossiblyIllegal, Self::Staff];

    /// Reads a stored kind. `other`, the one branch for every pupil before
    /// misuse had its own, reads as safeguarding: its steps never punish a
    /// pupil who may be at risk.
    pub fn parse(s: &str) -> Option<Self> {
        if s == "other" {
            return Some(Self::Safeguarding);
        }
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Said to people.
    pub fn label(self) -> &'static str {
        match self {
            Self::PossiblyIllegal => "Possibly illegal",
            Self::Staff => "A concern about a member of staff",
            Self::Safeguarding => "A welfare concern about a pupil",
            Self::Misuse => "Misuse (acceptable use agreement)",
        }
    }

    /// What the flowchart asks, step by step.
    pub fn steps(self, about_head: bool) -> &'static [&'static str] {
        match (self, about_head) {
            (Self::PossiblyIllegal, _) => &[
                "Do not investigate the device or the material any further, and do not copy, forward or show it to anyone.",
                "Preserve the evidence: leave the device as it is, switched on or off as found, and record who has had it.",
                "Follow safeguarding procedures: the DSL leads. Report to the police (999 if a child is in immediate danger, otherwise 101), and to CEOP for online sexual abuse or grooming.",
                "Record every step here as it happens.",
            ],
            (Self::Staff, false) => &[
                "Refer to the headteacher at once; do not investigate yourself.",
                "The headteacher consults the local authority designated officer (LADO) within one working day.",
                "Record every step here.",
            ],
            (Self::Staff, true) => &[
                "The concern is about the headteacher: refer to the chair of governors, not the head.",
                "The chair of governors consults the LADO and the trust.",
                "Record every step here.",
            ],
            (Self::Safeguarding, _) => &[
                "The DSL (or a deputy) leads: speak to the pupil's trusted adult and make sure they are safe now; if a child is in immediate danger call 999.",
                "Follow the school's safeguarding procedures: a risk assessment and safety plan, and a referral to children's social care (or early help) when the threshold is met.",
                "Involve parents or carers unless doing so would put the child at greater risk; support from the pastoral team, CAMHS or Childline.",
                "Record what was seen, by whom, what was decided and why.",
            ],
            (Self::Misuse, _) => &[
                "At least two senior members of staff review the material together, on a designated school device.",
                "Check there is no safeguarding concern behind the misuse; if there is, change the branch to safeguarding.",
                "Decide the response: education, sanctions under the acceptable use agreement, or a referral.",
                "Record what was seen, by whom, and what was decided.",
            ],
        }
    }
}

/// An incident as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Incident {
    /// Id.
    pub id: i64,
    /// School.
    pub school: String,
    /// The pupil, if one.
    pub person: Option<String>,
    /// The alert it came from.
    pub alert: Option<i64>,
    /// A short title.
    pub title: String,
    /// The flowchart branch.
    pub kind: Kind,
    /// Whether it concerns the headteacher.
    pub about_head: bool,
    /// `open` or `closed`.
    pub status: String,
    /// RFC 3339.
    pub raised_at: String,
    /// Outcome.
    pub outcome: String,
    /// Feedback given to those involved.
    pub feedback: String,
    /// Lessons learned.
    pub lessons: String,
    /// Sanction ("ICT AUP breach", …).
    pub sanction: String,
}

/// One thing done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IncidentAction {
    /// When.
    pub at: String,
    /// Who.
    pub by: String,
    /// What.
    pub note: String,
}

/// One evidence file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evidence {
    /// Id.
    pub id: i64,
    /// When added.
    pub at: String,
    /// Who added it.
    pub by: String,
    /// The file's name as uploaded.
    pub filename: String,
    /// SHA-256 of the bytes, hex.
    pub sha256: String,
    /// Bytes.
    pub size: i64,
    /// What it is.
    pub note: String,
}

pub use crate::chronology::{ChronologyEntry, EntryKind};

/// A new incident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewIncident<'a> {
    /// School.
    pub school: &'a str,
    /// The pupil, if one.
    pub person: Option<&'a str>,
    /// The alert it comes from.
    pub alert: Option<i64>,
    /// A short title.
    pub title: &'a str,
    /// The flowchart branch.
    pub kind: Kind,
    /// Whether it concerns the headteacher.
    pub about_head: bool,
}

/// An evidence file already kept by its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvidence<'a> {
    /// The file's name as uploaded.
    pub filename: &'a str,
    /// SHA-256, hex.
    pub sha256: &'a str,
    /// Bytes.
    pub size: i64,
    /// What it is.
    pub note: &'a str,
}

/// How an incident ended.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Closing<'a> {
    /// Outcome (required).
    pub outcome: &'a str,
    /// Feedback to those involved.
    pub feedback: &'a str,
    /// Lessons learned.
    pub lessons: &'a str,
    /// Sanction.
    pub sanction: &'a str,
}

const COLS: &str = "id, school, person, alert, title, kind, about_head, status, raised_at, outcome, feedback, lessons, sanction";

fn incident(r: &sqlx::any::AnyRow) -> Result<Incident, StoreError> {
    let kind: String = r.try_get("kind")?;
    Ok(Incident {
        id: r.try_get("id")?,
        school: r.try_get("school")?,
        person: r.try_get("person")?,
        alert: r.try_get("alert")?,
        title: r.try_get("title")?,
        kind: Kind::parse(&kind).unwrap_or(Kind::Safeguarding),
        about_head: r.try_get::<i64, _>("about_head")? != 0,
        status: r.try_get("status")?,
        raised_at: ts(r.try_get("raised_at")?).to_string(),
        outcome: r.try_get("outcome")?,
        feedback: r.try_get("feedback")?,
        lessons: r.try_get("lessons")?,
        sanction: r.try_get("sanction")?,
    })
}

/// Whether `who` may see a pupil's record at `school` (chronology, raising).
fn may_see(who: &Account, school: &str) -> bool {
    who.role.sees_alerts() && (who.role.trust_wide() || who.school.as_deref() == Some(school))
}

/// Whether `who` may see an incident at `school`: an incident concerning the
/// headteacher is hidden from the headteacher and is the chair of
/// governors' (and the trust's); the chair sees no other.
fn may_see_incident(who: &Account, school: &str, about_head: bool) -> bool {
    let here = who.role.trust_wide() || who.school.as_deref() == Some(school);
    here && match who.role {
        Role::Headteacher => !about_head,
        Role::ChairOfGovernors => about_head,
        r => r.sees_alerts(),
    }
}

/// The SQL condition (on `incidents`) for what `who` may see; the school
/// is bound as `$1` (NULL for the whole trust).
fn visible(who: &Account) -> &'static str {
    match who.role {
        Role::Headteacher => "($1 IS NULL OR school = $1) AND about_head = 0",
        Role::ChairOfGovernors => "($1 IS NULL OR school = $1) AND about_head = 1",
        _ => "($1 IS NULL OR school = $1)",
    }
}

impl Store {
    /// Raises an incident (from an alert, or about a person at a school).
    pub async fn raise_incident(&self, who: &Account, n: &NewIncident<'_>, now: Timestamp) -> Result<Option<i64>, StoreError> {
        let NewIncident { school, person, alert, title, kind, about_head } = *n;
        if !may_see_incident(who, school, about_head) {
            return Ok(None);
        }
        if title.trim().is_empty() {
            return Err(StoreError::Invalid("an incident needs a title".into()));
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO incidents (school, person, alert, title, kind, about_head, status, raised_at, raised_by, outcome, feedback, lessons, sanction) \
             VALUES ($1, $2, $3, $4, $5, $6, 'open', $7, $8, '', '', '', '') RETURNING id",
        )
        .bind(school)
        .bind(person)
        .bind(alert)
        .bind(title.trim())
        .bind(kind.as_str())
        .bind(i64::from(about_head))
        .bind(ms(now))
        .bind(who.id)
        .fetch_one(self.pool())
        .await?;
        self.audit(now, &format!("account:{}", who.id), "incident.raise", &format!("incident:{id}"), kind.as_str()).await?;
        Ok(Some(id))
    }

    /// An incident, its actions and evidence, if `who` may see it (audited).
    pub async fn incident(&self, who: &Account, id: i64, now: Timestamp) -> Result<Option<(Incident, Vec<IncidentAction>, Vec<Evidence>)>, StoreError> {
        let r = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLS} FROM incidents WHERE id = $1"))).bind(id).fetch_optional(self.pool()).await?;
        let Some(r) = r else { return Ok(None) };
        let inc = incident(&r)?;
        if !may_see_incident(who, &inc.school, inc.about_head) {
            self.audit(now, &format!("account:{}", who.id), "incident.read.denied", &format!("incident:{id}"), "").await?;
            return Ok(None);
        }
        let actions = sqlx::query(
            "SELECT x.at, a.email, a.name, x.note FROM incident_actions x JOIN accounts a ON a.id = x.account WHERE x.incident = $1 ORDER BY x.at, x.id",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|x| Ok(IncidentAction { at: ts(x.try_get("at")?).to_string(), by: shown_by(x)?, note: x.try_get("note")? }))
        .collect::<Result<Vec<_>, StoreError>>()?;
        let evidence = sqlx::query(
            "SELECT e.id, e.at, a.email, a.name, e.filename, e.sha256, e.size, e.note FROM evidence e JOIN accounts a ON a.id = e.account WHERE e.incident = $1 ORDER BY e.at, e.id",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|x| {
            Ok(Evidence {
                id: x.try_get("id")?,
                at: ts(x.try_get("at")?).to_string(),
                by: shown_by(x)?,
                filename: x.try_get("filename")?,
                sha256: x.try_get("sha256")?,
                size: x.try_get("size")?,
                note: x.try_get("note")?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
        self.audit(now, &format!("account:{}", who.id), "incident.read", &format!("incident:{id}"), "").await?;
        Ok(Some((inc, actions, evidence)))
    }

    /// Records an action on an incident.
    pub async fn incident_action(&self, who: &Account, id: i64, note: &str, now: Timestamp) -> Result<bool, StoreError> {
        if self.incident_school(id).await?.is_none_or(|(s, head)| !may_see_incident(who, &s, head)) || note.trim().is_empty() {
            return Ok(false);
        }
        sqlx::query("INSERT INTO incident_actions (incident, at, account, note) VALUES ($1, $2, $3, $4)")
            .bind(id)
            .bind(ms(now))
            .bind(who.id)
            .bind(note.trim())
            .execute(self.pool())
            .await?;
        self.audit(now, &format!("account:{}", who.id), "incident.action", &format!("incident:{id}"), "").await?;
        Ok(true)
    }

    /// Records an evidence file already written (by its SHA-256) to the evidence folder.
    pub async fn add_evidence(&self, who: &Account, id: i64, e: &NewEvidence<'_>, now: Timestamp) -> Result<bool, StoreError> {
        let NewEvidence { filename, sha256, size, note } = *e;
        if self.incident_school(id).await?.is_none_or(|(s, head)| !may_see_incident(who, &s, head)) {
            return Ok(false);
        }
        sqlx::query("INSERT INTO evidence (incident, at, account, filename, sha256, size, note) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(id)
            .bind(ms(now))
            .bind(who.id)
            .bind(filename)
            .bind(sha256)
            .bind(size)
            .bind(note)
            .execute(self.pool())
            .await?;
        self.audit(now, &format!("account:{}", who.id), "incident.evidence", &format!("incident:{id}"), sha256).await?;
        Ok(true)
    }

    /// Closes an incident with its outcome, feedback, lessons and sanction.
    pub async fn close_incident(&self, who: &Account, id: i64, c: &Closing<'_>, now: Timestamp) -> Result<bool, StoreError> {
        let Closing { outcome, feedback, lessons, sanction } = *c;
        if self.incident_school(id).await?.is_none_or(|(s, head)| !may_see_incident(who, &s, head)) {
            return Ok(false);
        }
        if outcome.trim().is_empty() {
            return Err(StoreError::Invalid("closing an incident needs its outcome".into()));
        }
        sqlx::query("UPDATE incidents SET status = 'closed', outcome = $2, feedback = $3, lessons = $4, sanction = $5, closed_at = $6 WHERE id = $1")
            .bind(id)
            .bind(outcome.trim())
            .bind(feedback.trim())
            .bind(lessons.trim())
            .bind(sanction.trim())
            .bind(ms(now))
            .execute(self.pool())
            .await?;
        self.audit(now, &format!("account:{}", who.id), "incident.close", &format!("incident:{id}"), "").await?;
        Ok(true)
    }

    /// A person's open incidents that `who` may see, at `school` or (for
    /// `None`) at any school `who` may see, newest first: the incidents
    /// lines of their web and DNS history can be attached to. Their titles
    /// are part of the record, so the listing is audited.
    pub async fn open_incidents_about(&self, who: &Account, school: Option<&str>, person: &str, now: Timestamp) -> Result<Vec<Incident>, StoreError> {
        if !who.role.sees_incidents() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLS} FROM incidents WHERE status = 'open' AND lower(person) = lower($1) AND ($2 IS NULL OR school = $2) ORDER BY raised_at DESC, id DESC"
        )))
        .bind(person)
        .bind(school)
        .fetch_all(self.pool())
        .await?;
        let mine: Vec<Incident> =
            rows.iter().map(incident).collect::<Result<Vec<_>, _>>()?.into_iter().filter(|i| may_see_incident(who, &i.school, i.about_head)).collect();
        let object = format!("person:{}/{person}", school.unwrap_or("*"));
        self.audit(now, &format!("account:{}", who.id), "incident.list", &object, &mine.len().to_string()).await?;
        Ok(mine)
    }

    /// Adds lines of a person's web and DNS history to one of their open
    /// incidents as an action whose note lists them, with its audit row, in
    /// one transaction: the lines are on the incident and the audit log says
    /// who put them there, or neither. `detail` is for the audit row (what
    /// history, how many lines: never the lines themselves). False when
    /// `who` may not, the incident is closed, or it is about someone else.
    pub async fn attach_history(&self, who: &Account, id: i64, person: &str, note: &str, detail: &str, now: Timestamp) -> Result<bool, StoreError> {
        if note.trim().is_empty() {
            return Ok(false);
        }
        let mut tx = self.begin().await?;
        let Some(r) = sqlx::query("SELECT school, person, status, about_head FROM incidents WHERE id = $1").bind(id).fetch_optional(tx.conn()).await? else {
            return Ok(false);
        };
        let (school, about, status): (String, Option<String>, String) = (r.try_get("school")?, r.try_get("person")?, r.try_get("status")?);
        if !may_see(who, &school) || r.try_get::<i64, _>("about_head")? != 0 || status != "open" || !about.is_some_and(|p| p.eq_ignore_ascii_case(person)) {
            return Ok(false);
        }
        sqlx::query("INSERT INTO incident_actions (incident, at, account, note) VALUES ($1, $2, $3, $4)")
            .bind(id)
            .bind(ms(now))
            .bind(who.id)
            .bind(note.trim())
            .execute(tx.conn())
            .await?;
        tx.audit(now, &format!("account:{}", who.id), "incident.history", &format!("incident:{id}"), detail).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn incident_school(&self, id: i64) -> Result<Option<(String, bool)>, StoreError> {
        let r = sqlx::query("SELECT school, about_head FROM incidents WHERE id = $1").bind(id).fetch_optional(self.pool()).await?;
        r.map(|r| Ok((r.try_get("school")?, r.try_get::<i64, _>("about_head")? != 0))).transpose()
    }

    /// The newest entries of a person's chronology at a school (the first
    /// page of [`Store::chronology_page`], at most its largest), audited.
    pub async fn chronology(&self, who: &Account, school: &str, person: &str, now: Timestamp) -> Result<Option<Vec<ChronologyEntry>>, StoreError> {
        let q = crate::chronology::ChronologyQuery {
            school: school.to_string(),
            person: person.to_string(),
            limit: crate::chronology::MAX_LIMIT,
            ..Default::default()
        };
        Ok(self.chronology_page(who, &q, now).await?.map(|c| c.entries))
    }
}

/// What the incident list shows: every filter optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IncidentQuery {
    /// One school (trust roles); school roles always see their own.
    pub school: Option<String>,
    /// `open` or `closed`.
    pub status: Option<String>,
    /// One branch.
    pub kind: Option<Kind>,
    /// Words in the title or the person's login.
    pub text: Option<String>,
    /// Where the previous page stopped ([`IncidentPage::next_cursor`]).
    pub cursor: Option<String>,
    /// At most this many (1 to 200).
    pub limit: i64,
}

/// One page of incidents, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IncidentPage {
    /// The incidents.
    pub incidents: Vec<Incident>,
    /// The next page's cursor, `None` on the last page.
    pub next_cursor: Option<String>,
    /// How many match the filters in all.
    pub total: i64,
}

/// Something linked to an incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Link {
    /// `alert`, `person` (`school/login`) or `incident`.
    pub kind: String,
    /// The alert's or incident's id, or the person.
    pub target: String,
    /// When (RFC 3339).
    pub at: String,
    /// Who linked it.
    pub by: String,
}

/// The opaque cursor: base64 of the sort key and the id, so a page boundary
/// is exact even when incidents share a time.
fn cursor(raised_at: i64, id: i64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{raised_at}:{id}"))
}

fn parse_cursor(c: &str) -> Option<(i64, i64)> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(c).ok()?;
    let (at, id) = std::str::from_utf8(&raw).ok()?.split_once(':')?;
    Some((at.parse().ok()?, id.parse().ok()?))
}

/// `%text%` for LIKE with `\` escaping the text's own wildcards.
fn like(text: &str) -> String {
    let mut out = String::from("%");
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

impl Store {
    /// The incidents `who` may see matching `q`, newest first, a page at a
    /// time; following `next_cursor` visits each exactly once, and `total`
    /// counts them all. The listing is audited (titles are part of the record).
    pub async fn incidents(&self, who: &Account, q: &IncidentQuery, now: Timestamp) -> Result<IncidentPage, StoreError> {
        let empty = IncidentPage { incidents: Vec::new(), next_cursor: None, total: 0 };
        if !who.role.sees_incidents() {
            return Ok(empty);
        }
        let school = if who.role.trust_wide() { q.school.clone() } else { who.school.clone() };
        if !who.role.trust_wide() && school.is_none() {
            return Ok(empty);
        }
        let after = match q.cursor.as_deref() {
            Some(c) => Some(parse_cursor(c).ok_or_else(|| StoreError::Invalid("that cursor is not one this list gave".into()))?),
            None => None,
        };
        let filters = format!(
            "{} AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR kind = $3) \
             AND ($4 IS NULL OR lower(title) LIKE $4 ESCAPE '\\' OR lower(coalesce(person, '')) LIKE $4 ESCAPE '\\')",
            visible(who)
        );
        let text = q.text.as_deref().map(str::trim).filter(|t| !t.is_empty()).map(like);
        let kind = q.kind.map(Kind::as_str);
        // The legacy `other` rows are safeguarding ones.
        let kind_filter = if kind == Some("safeguarding") { " OR kind = 'other'" } else { "" };
        let filters = filters.replace("kind = $3)", &format!("kind = $3{kind_filter})"));
        let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM incidents WHERE {filters}")))
            .bind(school.clone())
            .bind(q.status.clone())
            .bind(kind)
            .bind(text.clone())
            .fetch_one(self.pool())
            .await?;
        let limit = q.limit.clamp(1, 200);
        let (at, id) = after.unwrap_or((i64::MAX, i64::MAX));
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLS} FROM incidents WHERE {filters} AND (raised_at < $5 OR (raised_at = $5 AND id < $6)) ORDER BY raised_at DESC, id DESC LIMIT $7"
        )))
        .bind(school.clone())
        .bind(q.status.clone())
        .bind(kind)
        .bind(text)
        .bind(at)
        .bind(id)
        .bind(limit + 1)
        .fetch_all(self.pool())
        .await?;
        let more = rows.len() as i64 > limit;
        let mut last = None;
        let mut incidents = Vec::new();
        for r in rows.iter().take(limit as usize) {
            last = Some((r.try_get::<i64, _>("raised_at")?, r.try_get::<i64, _>("id")?));
            incidents.push(incident(r)?);
        }
        let next_cursor = if more { last.map(|(at, id)| cursor(at, id)) } else { None };
        self.audit(
            now,
            &format!("account:{}", who.id),
            "incident.list",
            &format!("incidents:{}", school.as_deref().unwrap_or("*")),
            &incidents.len().to_string(),
        )
        .await?;
        Ok(IncidentPage { incidents, next_cursor, total })
    }

    /// Moves an incident to another branch of the flowchart, with the
    /// reason: an action on the incident and an audit row, in one
    /// transaction. False when `who` may not or the reason is empty.
    pub async fn change_branch(&self, who: &Account, id: i64, kind: Kind, reason: &str, now: Timestamp) -> Result<bool, StoreError> {
        let Some((school, head)) = self.incident_school(id).await? else { return Ok(false) };
        if !may_see_incident(who, &school, head) || reason.trim().is_empty() {
            return Ok(false);
        }
        let mut tx = self.begin().await?;
        let was: String = sqlx::query_scalar("SELECT kind FROM incidents WHERE id = $1").bind(id).fetch_one(tx.conn()).await?;
        let was = Kind::parse(&was).unwrap_or(Kind::Safeguarding);
        if was == kind {
            return Ok(true);
        }
        sqlx::query("UPDATE incidents SET kind = $2 WHERE id = $1").bind(id).bind(kind.as_str()).execute(tx.conn()).await?;
        sqlx::query("INSERT INTO incident_actions (incident, at, account, note) VALUES ($1, $2, $3, $4)")
            .bind(id)
            .bind(ms(now))
            .bind(who.id)
            .bind(format!("Branch changed from {} to {}: {}", was.label(), kind.label(), reason.trim()))
            .execute(tx.conn())
            .await?;
        tx.audit(now, &format!("account:{}", who.id), "incident.branch", &format!("incident:{id}"), &format!("{} -> {}", was.as_str(), kind.as_str())).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Links an alert, a person (`school/login`) or another incident to an
    /// incident (once; audited). False when `who` may not see both.
    pub async fn link_incident(&self, who: &Account, id: i64, kind: &str, target: &str, now: Timestamp) -> Result<bool, StoreError> {
        let Some((school, head)) = self.incident_school(id).await? else { return Ok(false) };
        if !may_see_incident(who, &school, head) {
            return Ok(false);
        }
        let target = target.trim();
        let ok = match kind {
            "alert" => match target.parse::<i64>() {
                Ok(a) => sqlx::query_scalar::<_, String>("SELECT school FROM alerts WHERE id = $1")
                    .bind(a)
                    .fetch_optional(self.pool())
                    .await?
                    .is_some_and(|s| s == school),
                Err(_) => false,
            },
            "incident" => match target.parse::<i64>() {
                Ok(other) if other != id => self.incident_school(other).await?.is_some_and(|(s, h)| may_see_incident(who, &s, h)),
                _ => false,
            },
            "person" => target.split_once('/').is_some_and(|(s, p)| s == school && !p.trim().is_empty()),
            _ => false,
        };
        if !ok {
            return Ok(false);
        }
        let mut tx = self.begin().await?;
        let seen: Option<i64> = sqlx::query_scalar("SELECT id FROM incident_links WHERE incident = $1 AND kind = $2 AND target = $3")
            .bind(id)
            .bind(kind)
            .bind(target)
            .fetch_optional(tx.conn())
            .await?;
        if seen.is_none() {
            sqlx::query("INSERT INTO incident_links (incident, kind, target, at, account) VALUES ($1, $2, $3, $4, $5)")
                .bind(id)
                .bind(kind)
                .bind(target)
                .bind(ms(now))
                .bind(who.id)
                .execute(tx.conn())
                .await?;
            tx.audit(now, &format!("account:{}", who.id), "incident.link", &format!("incident:{id}"), &format!("{kind}:{target}")).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// What is linked to an incident `who` may see (read with the incident,
    /// whose read is audited).
    pub async fn incident_links(&self, who: &Account, id: i64) -> Result<Vec<Link>, StoreError> {
        if self.incident_school(id).await?.is_none_or(|(s, head)| !may_see_incident(who, &s, head)) {
            return Ok(Vec::new());
        }
        sqlx::query(
            "SELECT l.kind, l.target, l.at, a.email, a.name FROM incident_links l JOIN accounts a ON a.id = l.account WHERE l.incident = $1 ORDER BY l.at, l.id",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|r| Ok(Link { kind: r.try_get("kind")?, target: r.try_get("target")?, at: ts(r.try_get("at")?).to_string(), by: shown_by(r)? }))
        .collect()
    }
}

/// Who acted, as shown: "Sam Patel (sam@…)", the e-mail alone without a
/// name (from a row with the account's `email` and `name`).
fn shown_by(row: &sqlx::any::AnyRow) -> Result<String, StoreError> {
    let (email, name): (String, Option<String>) = (row.try_get("email")?, row.try_get("name")?);
    Ok(crate::names::label(name.as_deref(), &email))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Role;
    use crate::staff::Audience;
    use crate::testing::stores;

    #[tokio::test]
    async fn incidents_follow_the_flowchart_and_join_the_chronology() {
        let now: Timestamp = "2026-11-24T10:00:00Z".parse().unwrap();
        for (s, _dir) in stores().await {
            s.upsert_school("oak", "Oak", false).await.unwrap();
            let (dsl, _) = s.add_account("dsl@oak.example", Role::Dsl, Some("oak"), "a long password", now).await.unwrap();
            let (teacher, _) = s.add_account("t@oak.example", Role::Teacher, Some("oak"), "a long password", now).await.unwrap();
            let alert = s
                .insert_alert(&crate::alerts::NewAlert {
                    school: "oak".into(),
                    person: "amy".into(),
                    category: "Grooming".into(),
                    level: 4,
                    due_at: Some(now),
                    first: crate::alerts::NewOccurrence {
                        at: now,
                        level: 4,
                        source: "chat".into(),
                        excerpt: "dont tell your parents".into(),
                        url: None,
                        explanation: "".into(),
                        spans: "[]".into(),
                        screenshot: None,
                        screenshot_withheld: false,
                        repeats: 1,
                    },
                })
                .await
                .unwrap();
            let n = |title, kind| NewIncident { school: "oak", person: Some("amy"), alert: Some(alert), title, kind, about_head: false };
            assert!(s.raise_incident(&teacher, &n("x", Kind::Misuse), now).await.unwrap().is_none());
            let id = s.raise_incident(&dsl, &n("Adult asking Amy for secrecy", Kind::PossiblyIllegal), now).await.unwrap().unwrap();
            assert!(s.incident_action(&dsl, id, "Reported to CEOP; device kept unopened in the DSL's safe", now).await.unwrap());
            let sha = "ab".repeat(32);
            let e = NewEvidence { filename: "chat-log.txt", sha256: &sha, size: 120, note: "export from the monitoring log" };
            assert!(s.add_evidence(&dsl, id, &e, now).await.unwrap());
            assert!(s.close_incident(&dsl, id, &Closing::default(), now).await.is_err(), "an outcome is needed");
            let c = Closing {
                outcome: "Police investigating; support plan for Amy",
                feedback: "Parents informed",
                lessons: "Online safety lesson for year 7",
                sanction: "",
            };
            assert!(s.close_incident(&dsl, id, &c, now).await.unwrap());
            let (inc, actions, evidence) = s.incident(&dsl, id, now).await.unwrap().unwrap();
            assert_eq!((inc.status.as_str(), inc.kind, actions.len(), evidence.len()), ("closed", Kind::PossiblyIllegal, 1, 1));
            assert!(s.incident(&teacher, id, now).await.unwrap().is_none(), "a teacher cannot read an incident");
            let chron = s.chronology(&dsl, "oak", "amy", now).await.unwrap().unwrap();
            assert_eq!(chron.iter().map(|c| c.what.as_str()).collect::<Vec<_>>().len(), 2);
            assert!(s.chronology(&teacher, "oak", "amy", now).await.unwrap().is_none());
            assert!(Kind::Staff.steps(true)[0].contains("chair of governors"));
            s.close().await;
        }
    }

    #[tokio::test]
    async fn history_lines_join_only_the_persons_open_incident_with_their_audit_row() {
        let now: Timestamp = "2026-12-02T10:00:00Z".parse().unwrap();
        for (s, _dir) in stores().await {
            s.upsert_school("oak", "Oak", false).await.unwrap();
            s.upsert_school("elm", "Elm", false).await.unwrap();
            let (dsl, _) = s.add_account("dsl@oak.example", Role::Dsl, Some("oak"), "a long password", now).await.unwrap();
            let (elm, _) = s.add_account("dsl@elm.example", Role::Dsl, Some("elm"), "a long password", now).await.unwrap();
            let (it, _) = s.add_account("it@oak.example", Role::ItTechnician, Some("oak"), "a long password", now).await.unwrap();
            let n = |person| NewIncident { school: "oak", person: Some(person), alert: None, title: "Searches", kind: Kind::Misuse, about_head: false };
            let amy = s.raise_incident(&dsl, &n("amy"), now).await.unwrap().unwrap();
            let closed = s.raise_incident(&dsl, &n("amy"), now).await.unwrap().unwrap();
            let c = Closing { outcome: "Talked it through", ..Closing::default() };
            assert!(s.close_incident(&dsl, closed, &c, now).await.unwrap());
            let open: Vec<i64> = s.open_incidents_about(&dsl, Some("oak"), "AMY", now).await.unwrap().iter().map(|i| i.id).collect();
            assert_eq!(open, vec![amy], "open ones only, the login matched whatever its case");
            assert!(s.open_incidents_about(&elm, None, "amy", now).await.unwrap().is_empty(), "another school's incidents");
            assert!(s.open_incidents_about(&it, Some("oak"), "amy", now).await.unwrap().is_empty());
            let note = "Web and DNS history of amy: 1 line(s)\n2026-12-01 09:00:00 · dns · bet.test · block · gambling";
            assert!(!s.attach_history(&dsl, closed, "amy", note, "1 lines", now).await.unwrap(), "a closed incident");
            assert!(!s.attach_history(&dsl, amy, "bob", note, "1 lines", now).await.unwrap(), "someone else's lines");
            assert!(!s.attach_history(&elm, amy, "amy", note, "1 lines", now).await.unwrap(), "another school");
            assert!(!s.attach_history(&it, amy, "amy", note, "1 lines", now).await.unwrap(), "IT works no incidents");
            assert!(s.attach_history(&dsl, amy, "amy", note, "1 lines from person:oak/amy", now).await.unwrap());
            let (_, actions, _) = s.incident(&dsl, amy, now).await.unwrap().unwrap();
            assert_eq!(actions.iter().map(|a| a.note.as_str()).collect::<Vec<_>>(), vec![note]);
            let audit = s.audit_search(Some(&format!("incident:{amy}")), None, 50).await.unwrap();
            assert_eq!(
                audit.iter().filter(|e| e.action == "incident.history").map(|e| e.detail.as_str()).collect::<Vec<_>>(),
                vec!["1 lines from person:oak/amy"]
            );
            s.close().await;
        }
    }

    fn alert_for(person: &str, category: &str, level: u8, now: Timestamp) -> crate::alerts::NewAlert {
        crate::alerts::NewAlert {
            school: "oak".into(),
            person: person.into(),
            category: category.into(),
            level,
            due_at: Some(now),
            first: crate::alerts::NewOccurrence {
                at: now,
                level,
                source: "chat".into(),
                excerpt: "words".into(),
                url: None,
                explanation: "".into(),
                spans: "[]".into(),
                screenshot: None,
                screenshot_withheld: false,
                repeats: 1,
            },
        }
    }

    #[tokio::test]
    async fn the_list_pages_every_incident_once_with_true_totals_and_hides_the_heads_from_the_head() {
        let now: Timestamp = "2026-12-05T10:00:00Z".parse().unwrap();
        for (s, _dir) in stores().await {
            s.upsert_school("oak", "Oak", false).await.unwrap();
            s.upsert_school("elm", "Elm", false).await.unwrap();
            let add = |email: &'static str, role, school: Option<&'static str>| {
                let s = s.clone();
                async move { s.add_account(email, role, school, "a long password", now).await.unwrap().0 }
            };
            let dsl = add("dsl@oak.example", Role::Dsl, Some("oak")).await;
            let head = add("head@oak.example", Role::Headteacher, Some("oak")).await;
            let chair = add("chair@oak.example", Role::ChairOfGovernors, Some("oak")).await;
            let lead = add("lead@trust.example", Role::TrustSafeguardingLead, None).await;
            let elm = add("dsl@elm.example", Role::Dsl, Some("elm")).await;
            let it = add("it@oak.example", Role::ItTechnician, Some("oak")).await;
            // Seven at Oak, three sharing one time so the cursor must break ties by id; one at Elm.
            let mut ids = Vec::new();
            for i in 0..7i64 {
                let at = now + jiff::SignedDuration::from_mins(if i < 3 { 0 } else { i });
                let kind = if i % 2 == 0 { Kind::Safeguarding } else { Kind::Misuse };
                let title = format!("Case {i}");
                let n = NewIncident { school: "oak", person: Some("amy"), alert: None, title: &title, kind, about_head: false };
                ids.push(s.raise_incident(&dsl, &n, at).await.unwrap().unwrap());
            }
            let n = NewIncident { school: "elm", person: Some("bo"), alert: None, title: "Elm case", kind: Kind::Safeguarding, about_head: false };
            s.raise_incident(&elm, &n, now).await.unwrap().unwrap();
            let about_head = NewIncident { school: "oak", person: None, alert: None, title: "Head's conduct online", kind: Kind::Staff, about_head: true };
            assert!(s.raise_incident(&head, &about_head, now).await.unwrap().is_none(), "the head cannot raise one about the head");
            let h = s.raise_incident(&dsl, &about_head, now).await.unwrap().unwrap();

            // Paging: every incident once, newest first, the total true on every page.
            let mut seen = Vec::new();
            let mut q = IncidentQuery { limit: 3, ..IncidentQuery::default() };
            loop {
                let p = s.incidents(&dsl, &q, now).await.unwrap();
                assert_eq!(p.total, 8, "seven cases and the one about the head");
                seen.extend(p.incidents.iter().map(|i| i.id));
                match p.next_cursor {
                    Some(c) => q.cursor = Some(c),
                    None => break,
                }
            }
            let mut sorted = seen.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), seen.len(), "no incident twice");
            assert_eq!(seen.len(), 8, "every incident");
            assert!(!seen.contains(&0));
            // Filters and their totals.
            let misuse = s.incidents(&dsl, &IncidentQuery { kind: Some(Kind::Misuse), limit: 50, ..IncidentQuery::default() }, now).await.unwrap();
            assert_eq!((misuse.total, misuse.incidents.len()), (3, 3));
            let text = s.incidents(&dsl, &IncidentQuery { text: Some("case 4".into()), limit: 50, ..IncidentQuery::default() }, now).await.unwrap();
            assert_eq!(text.incidents.iter().map(|i| i.id).collect::<Vec<_>>(), vec![ids[4]]);
            let c = Closing { outcome: "Done", ..Closing::default() };
            assert!(s.close_incident(&dsl, ids[0], &c, now).await.unwrap());
            let closed = s.incidents(&dsl, &IncidentQuery { status: Some("closed".into()), limit: 50, ..IncidentQuery::default() }, now).await.unwrap();
            assert_eq!((closed.total, closed.incidents[0].id), (1, ids[0]));
            let wild = s.incidents(&dsl, &IncidentQuery { text: Some("%".into()), limit: 50, ..IncidentQuery::default() }, now).await.unwrap();
            assert_eq!(wild.total, 0, "a % is a character, not a wildcard");
            assert!(s.incidents(&dsl, &IncidentQuery { cursor: Some("nonsense!".into()), limit: 5, ..IncidentQuery::default() }, now).await.is_err());

            // Who sees what.
            let all = |who: Account| {
                let s = s.clone();
                async move { s.incidents(&who, &IncidentQuery { limit: 200, ..IncidentQuery::default() }, now).await.unwrap() }
            };
            let heads = all(head.clone()).await;
            assert_eq!(heads.total, 7, "the head sees the school's incidents but not the one about the head");
            assert!(heads.incidents.iter().all(|i| i.id != h));
            assert!(s.incident(&head, h, now).await.unwrap().is_none());
            assert!(!s.incident_action(&head, h, "I looked", now).await.unwrap());
            let chairs = all(chair.clone()).await;
            assert_eq!(chairs.incidents.iter().map(|i| i.id).collect::<Vec<_>>(), vec![h], "the chair sees only the one about the head");
            assert!(s.incident(&chair, ids[1], now).await.unwrap().is_none());
            assert!(s.incident_action(&chair, h, "Consulted the LADO", now).await.unwrap());
            assert_eq!(all(lead.clone()).await.total, 9, "the trust's lead sees every school's");
            assert_eq!(all(elm.clone()).await.total, 1);
            assert_eq!(all(it.clone()).await.total, 0, "IT works no incidents");
            let chron = s.chronology(&head, "oak", "amy", now).await.unwrap().unwrap();
            assert_eq!(chron.len(), 7);

            // The branch moves with a reason, on the record.
            assert!(!s.change_branch(&dsl, ids[1], Kind::Safeguarding, " ", now).await.unwrap(), "a reason is needed");
            assert!(s.change_branch(&dsl, ids[1], Kind::Safeguarding, "Self-harm behind the misuse", now).await.unwrap());
            let (inc, actions, _) = s.incident(&dsl, ids[1], now).await.unwrap().unwrap();
            assert_eq!(inc.kind, Kind::Safeguarding);
            assert!(actions.iter().any(|a| a.note.contains("Self-harm behind the misuse") && a.by == "dsl@oak.example"));
            // Links: an alert of the school, a person, another incident; never another school's.
            let alert = s.insert_alert(&alert_for("amy", "Vulnerable person", 4, now)).await.unwrap();
            assert!(s.link_incident(&dsl, ids[1], "alert", &alert.to_string(), now).await.unwrap());
            assert!(s.link_incident(&dsl, ids[1], "alert", &alert.to_string(), now).await.unwrap(), "once, whatever the repeats");
            assert!(s.link_incident(&dsl, ids[1], "person", "oak/ben", now).await.unwrap());
            assert!(s.link_incident(&dsl, ids[1], "incident", &ids[2].to_string(), now).await.unwrap());
            assert!(!s.link_incident(&dsl, ids[1], "person", "elm/bo", now).await.unwrap());
            assert!(!s.link_incident(&elm, ids[1], "person", "oak/ben", now).await.unwrap());
            let links = s.incident_links(&dsl, ids[1]).await.unwrap();
            assert_eq!(links.iter().map(|l| l.kind.as_str()).collect::<Vec<_>>(), vec!["alert", "person", "incident"]);

            // The school's audit log: its incidents, not the one about the head, not another school's.
            let oak_log = s.audit_search_in(Some("oak"), None, None, 500).await.unwrap();
            assert!(oak_log.iter().any(|e| e.object == format!("incident:{}", ids[1]) && e.action == "incident.branch"));
            assert!(oak_log.iter().all(|e| e.object != format!("incident:{h}")), "rows about the head stay the trust's");
            assert!(oak_log.iter().all(|e| !e.object.starts_with("incident:") || ids.iter().any(|i| e.object == format!("incident:{i}"))));
            let named = s.audit_search(Some(&format!("incident:{}", ids[1])), None, 50).await.unwrap();
            assert!(named.iter().all(|e| e.actor_name.is_some()), "actors by name");
            assert!(named.iter().any(|e| e.action == "incident.read.denied" && e.actor_name.as_deref() == Some("chair@oak.example")));
            s.close().await;
        }
    }

    #[tokio::test]
    async fn an_alert_about_staff_never_reaches_the_dsl_and_one_about_the_head_never_the_head() {
        let now: Timestamp = "2026-12-05T10:00:00Z".parse().unwrap();
        for (s, _dir) in stores().await {
            s.upsert_school("oak", "Oak", false).await.unwrap();
            let dsl = s.add_account("dsl@oak.example", Role::Dsl, Some("oak"), "a long password", now).await.unwrap().0;
            let head = s.add_account("head@oak.example", Role::Headteacher, Some("oak"), "a long password", now).await.unwrap().0;
            let it = s.add_account("it@oak.example", Role::ItTechnician, Some("oak"), "a long password", now).await.unwrap().0;
            let chair = s.add_account("chair@oak.example", Role::ChairOfGovernors, Some("oak"), "a long password", now).await.unwrap().0;
            assert_eq!(s.staff_role("oak", "HEAD").await.unwrap(), Some(Role::Headteacher), "a login is the e-mail's local part");
            assert_eq!(s.staff_role("oak", "it@oak.example").await.unwrap(), Some(Role::ItTechnician));
            assert_eq!(s.staff_role("oak", "amy").await.unwrap(), None);
            let mut made = Vec::new();
            for (person, audience) in [("amy", Audience::Pupil), ("mr.jones", Audience::Staff), ("head", Audience::Head)] {
                let mut tx = s.begin().await.unwrap();
                let id = tx.insert_alert(&alert_for(person, "Offensive user", 3, now)).await.unwrap();
                tx.set_audience(id, audience).await.unwrap();
                tx.audit(now, "device:1", "alert.create", &format!("alert:{id}"), "").await.unwrap();
                tx.commit().await.unwrap();
                made.push(id);
            }
            let sees = |who: Account| {
                let s = s.clone();
                let made = made.clone();
                async move {
                    let mut out = Vec::new();
                    for id in made {
                        out.push(s.alert_detail(&who, id).await.unwrap().is_some());
                    }
                    out
                }
            };
            assert_eq!(sees(dsl).await, vec![true, false, false], "the DSL: pupils only");
            assert_eq!(sees(head).await, vec![true, true, false], "the head: pupils and staff, never about the head");
            assert_eq!(sees(it).await, vec![false, false, false], "IT: no alert without a second factor");
            assert_eq!(sees(chair).await, vec![false, false, true], "the chair: the head only");
            let oak_log = s.audit_search_in(Some("oak"), None, None, 50).await.unwrap();
            assert_eq!(oak_log.iter().map(|e| e.object.clone()).collect::<Vec<_>>(), vec![format!("alert:{}", made[0])], "staff rows stay the trust's");
            s.close().await;
        }
    }
}
