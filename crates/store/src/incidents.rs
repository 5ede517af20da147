//! Incidents: raised from an alert or a report, they follow the response
//! flowchart (BRIEF.md): possibly illegal → police / CEOP, preserve evidence,
//! do not investigate the device; a concern about staff → the headteacher
//! (or the chair of governors when it concerns the head); otherwise a check
//! by two senior staff on a designated device. Actions, evidence files (kept
//! by SHA-256), outcome, feedback, lessons and any sanction are recorded; a
//! pupil's chronology joins alerts and incidents in time.

use jiff::Timestamp;
use serde::Serialize;
use sqlx::Row;

use crate::people::Account;
use crate::{Store, StoreError, ms, ts};

/// The flowchart's branches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Possibly illegal (CSAM, terrorism, grooming, extortion, …).
    PossiblyIllegal,
    /// A concern about a member of staff.
    Staff,
    /// Everything else.
    Other,
}

impl Kind {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PossiblyIllegal => "possibly-illegal",
            Self::Staff => "staff",
            Self::Other => "other",
        }
    }

    /// Reads a stored kind.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::PossiblyIllegal, Self::Staff, Self::Other].into_iter().find(|k| k.as_str() == s)
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
            (Self::Other, _) => &[
                "At least two senior members of staff review the material together, on a designated school device.",
                "Decide the response: support for the pupil, sanctions under the acceptable use agreement, education, or a referral.",
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

/// A line of a pupil's chronology.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChronologyEntry {
    /// When (RFC 3339).
    pub at: String,
    /// `alert` or `incident`.
    pub what: String,
    /// Its id.
    pub id: i64,
    /// Category (alerts) or title (incidents).
    pub summary: String,
    /// Level (alerts).
    pub level: Option<u8>,
    /// Status.
    pub status: String,
}

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
        kind: Kind::parse(&kind).unwrap_or(Kind::Other),
        about_head: r.try_get::<i64, _>("about_head")? != 0,
        status: r.try_get("status")?,
        raised_at: ts(r.try_get("raised_at")?).to_string(),
        outcome: r.try_get("outcome")?,
        feedback: r.try_get("feedback")?,
        lessons: r.try_get("lessons")?,
        sanction: r.try_get("sanction")?,
    })
}

fn may_see(who: &Account, school: &str) -> bool {
    who.role.sees_alerts() && (who.role.trust_wide() || who.school.as_deref() == Some(school))
}

impl Store {
    /// Raises an incident (from an alert, or about a person at a school).
    pub async fn raise_incident(&self, who: &Account, n: &NewIncident<'_>, now: Timestamp) -> Result<Option<i64>, StoreError> {
        let NewIncident { school, person, alert, title, kind, about_head } = *n;
        if !may_see(who, school) {
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
        if !may_see(who, &inc.school) {
            self.audit(now, &format!("account:{}", who.id), "incident.read.denied", &format!("incident:{id}"), "").await?;
            return Ok(None);
        }
        let actions =
            sqlx::query("SELECT x.at, a.email, x.note FROM incident_actions x JOIN accounts a ON a.id = x.account WHERE x.incident = $1 ORDER BY x.at, x.id")
                .bind(id)
                .fetch_all(self.pool())
                .await?
                .iter()
                .map(|x| Ok(IncidentAction { at: ts(x.try_get("at")?).to_string(), by: x.try_get("email")?, note: x.try_get("note")? }))
                .collect::<Result<Vec<_>, StoreError>>()?;
        let evidence = sqlx::query(
            "SELECT e.id, e.at, a.email, e.filename, e.sha256, e.size, e.note FROM evidence e JOIN accounts a ON a.id = e.account WHERE e.incident = $1 ORDER BY e.at, e.id",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|x| {
            Ok(Evidence {
                id: x.try_get("id")?,
                at: ts(x.try_get("at")?).to_string(),
                by: x.try_get("email")?,
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
        if self.incident_school(id).await?.is_none_or(|s| !may_see(who, &s)) || note.trim().is_empty() {
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
        if self.incident_school(id).await?.is_none_or(|s| !may_see(who, &s)) {
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
        if self.incident_school(id).await?.is_none_or(|s| !may_see(who, &s)) {
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
        if !who.role.sees_alerts() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLS} FROM incidents WHERE status = 'open' AND lower(person) = lower($1) AND ($2 IS NULL OR school = $2) ORDER BY raised_at DESC, id DESC"
        )))
        .bind(person)
        .bind(school)
        .fetch_all(self.pool())
        .await?;
        let mine: Vec<Incident> = rows.iter().map(incident).collect::<Result<Vec<_>, _>>()?.into_iter().filter(|i| may_see(who, &i.school)).collect();
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
        let Some(r) = sqlx::query("SELECT school, person, status FROM incidents WHERE id = $1").bind(id).fetch_optional(tx.conn()).await? else {
            return Ok(false);
        };
        let (school, about, status): (String, Option<String>, String) = (r.try_get("school")?, r.try_get("person")?, r.try_get("status")?);
        if !may_see(who, &school) || status != "open" || !about.is_some_and(|p| p.eq_ignore_ascii_case(person)) {
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

    async fn incident_school(&self, id: i64) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar("SELECT school FROM incidents WHERE id = $1").bind(id).fetch_optional(self.pool()).await?)
    }

    /// A pupil's alerts and incidents at a school, newest first (audited).
    pub async fn chronology(&self, who: &Account, school: &str, person: &str, now: Timestamp) -> Result<Option<Vec<ChronologyEntry>>, StoreError> {
        if !may_see(who, school) {
            self.audit(now, &format!("account:{}", who.id), "chronology.read.denied", &format!("person:{school}/{person}"), "").await?;
            return Ok(None);
        }
        let mut out = Vec::new();
        for r in sqlx::query("SELECT id, received_at, category, level, status FROM alerts WHERE school = $1 AND person = $2")
            .bind(school)
            .bind(person)
            .fetch_all(self.pool())
            .await?
        {
            out.push(ChronologyEntry {
                at: ts(r.try_get("received_at")?).to_string(),
                what: "alert".into(),
                id: r.try_get("id")?,
                summary: r.try_get("category")?,
                level: u8::try_from(r.try_get::<i64, _>("level")?).ok(),
                status: r.try_get("status")?,
            });
        }
        for r in sqlx::query("SELECT id, raised_at, title, status FROM incidents WHERE school = $1 AND person = $2")
            .bind(school)
            .bind(person)
            .fetch_all(self.pool())
            .await?
        {
            out.push(ChronologyEntry {
                at: ts(r.try_get("raised_at")?).to_string(),
                what: "incident".into(),
                id: r.try_get("id")?,
                summary: r.try_get("title")?,
                level: None,
                status: r.try_get("status")?,
            });
        }
        out.sort_by(|a, b| b.at.cmp(&a.at));
        self.audit(now, &format!("account:{}", who.id), "chronology.read", &format!("person:{school}/{person}"), "").await?;
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Role;
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
            assert!(s.raise_incident(&teacher, &n("x", Kind::Other), now).await.unwrap().is_none());
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
            let n = |person| NewIncident { school: "oak", person: Some(person), alert: None, title: "Searches", kind: Kind::Other, about_head: false };
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
}
