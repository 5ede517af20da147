//! The trust's directory of pupils and staff: display names, year, form and
//! teaching groups from the MIS export and the config, so pages can say who
//! an alert is about. Someone who leaves the MIS is marked left, never
//! deleted: the record still speaks of them. Also the alerts about a login
//! nobody knows (`alerts.unidentified`), which a DSL matches to a pupil.

use std::collections::HashMap;

use jiff::Timestamp;
use sqlx::Row;

use crate::record::Tx;
use crate::{Store, StoreError, ms, ts};

/// A pupil or a member of staff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersonKind {
    /// A pupil.
    Pupil,
    /// A member of staff.
    Staff,
}

impl PersonKind {
    /// As stored.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pupil => "pupil",
            Self::Staff => "staff",
        }
    }

    fn parse(s: &str) -> Self {
        if s == "staff" { Self::Staff } else { Self::Pupil }
    }
}

/// One person as the MIS or config names them: what [`Store::sync_people`] is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonRow {
    /// School id; empty for someone who belongs to no one school.
    pub school: String,
    /// Login (stored in lower case).
    pub login: String,
    /// Name shown to staff (`Amy Pupil`).
    pub display_name: Option<String>,
    /// Year group (`Year 10`).
    pub year: Option<String>,
    /// Form or registration group (`10GH`).
    pub form: Option<String>,
    /// Teaching groups.
    pub classes: Vec<String>,
    /// Pupil or staff.
    pub kind: PersonKind,
}

/// A person in the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// What the MIS says.
    pub row: PersonRow,
    /// When the MIS last changed them.
    pub updated_at: Timestamp,
    /// When they were first missing from the MIS.
    pub left_at: Option<Timestamp>,
}

/// What a sync changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Synced {
    /// New people.
    pub added: usize,
    /// People whose name, year, form, groups or kind changed (or who came back).
    pub changed: usize,
    /// People no longer in the MIS, now marked left.
    pub left: usize,
}

fn folded(r: &PersonRow) -> String {
    format!("{} {}", r.display_name.as_deref().unwrap_or(""), r.login).to_lowercase()
}

/// A row as it will be stored (and read back), so an unchanged MIS compares equal.
fn normal(r: &PersonRow) -> PersonRow {
    let text = |v: &Option<String>| v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_string);
    PersonRow {
        school: r.school.clone(),
        login: r.login.trim().to_lowercase(),
        display_name: text(&r.display_name),
        year: text(&r.year),
        form: text(&r.form),
        classes: r.classes.iter().map(|c| c.trim()).filter(|c| !c.is_empty()).map(|c| c.replace(';', "")).collect(),
        kind: r.kind,
    }
}

fn person(row: &sqlx::any::AnyRow) -> Result<Person, StoreError> {
    let classes: String = row.try_get("classes")?;
    let kind: String = row.try_get("kind")?;
    Ok(Person {
        row: PersonRow {
            school: row.try_get("school")?,
            login: row.try_get("login")?,
            display_name: row.try_get("display_name")?,
            year: row.try_get("year")?,
            form: row.try_get("form")?,
            classes: classes.split(';').filter(|c| !c.is_empty()).map(str::to_string).collect(),
            kind: PersonKind::parse(&kind),
        },
        updated_at: ts(row.try_get("updated_at")?),
        left_at: row.try_get::<Option<i64>, _>("left_at")?.map(ts),
    })
}

const COLUMNS: &str = "school, login, display_name, year, form, classes, kind, updated_at, left_at";

impl Store {
    /// Brings the directory in line with `rows` in one transaction: new people
    /// added, changed ones updated, and those of `school` (every school when
    /// `None`) who are no longer listed marked left. Rows that did not change
    /// are not written, so a reload with the same MIS writes nothing.
    pub async fn sync_people(&self, school: Option<&str>, rows: &[PersonRow], at: Timestamp) -> Result<Synced, StoreError> {
        let mut tx = self.begin().await?;
        let existing = match school {
            Some(s) => sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM people WHERE school = $1"))).bind(s).fetch_all(tx.conn()).await?,
            None => sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM people"))).fetch_all(tx.conn()).await?,
        };
        let mut before: HashMap<(String, String), Person> = HashMap::new();
        for r in &existing {
            let p = person(r)?;
            before.insert((p.row.school.clone(), p.row.login.clone()), p);
        }
        let mut out = Synced::default();
        let mut listed = std::collections::HashSet::new();
        for r in rows {
            if school.is_some_and(|s| s != r.school) {
                continue;
            }
            let r = normal(r);
            if r.login.is_empty() || !listed.insert((r.school.clone(), r.login.clone())) {
                continue;
            }
            match before.get(&(r.school.clone(), r.login.clone())) {
                Some(p) if p.row == r && p.left_at.is_none() => continue,
                Some(_) => out.changed += 1,
                None => out.added += 1,
            }
            sqlx::query(
                "INSERT INTO people (school, login, display_name, year, form, classes, kind, folded, updated_at, left_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL) \
                 ON CONFLICT (school, login) DO UPDATE SET display_name = $3, year = $4, form = $5, classes = $6, kind = $7, folded = $8, updated_at = $9, left_at = NULL",
            )
            .bind(&r.school)
            .bind(&r.login)
            .bind(&r.display_name)
            .bind(&r.year)
            .bind(&r.form)
            .bind(r.classes.join(";"))
            .bind(r.kind.as_str())
            .bind(folded(&r))
            .bind(ms(at))
            .execute(tx.conn())
            .await?;
        }
        for (key, p) in &before {
            if p.left_at.is_none() && !listed.contains(key) {
                sqlx::query("UPDATE people SET left_at = $3 WHERE school = $1 AND login = $2")
                    .bind(&key.0)
                    .bind(&key.1)
                    .bind(ms(at))
                    .execute(tx.conn())
                    .await?;
                out.left += 1;
            }
        }
        tx.commit().await?;
        Ok(out)
    }

    /// One person at a school (or trust-wide, school `""`), left or not.
    pub async fn person(&self, school: &str, login: &str) -> Result<Option<Person>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM people WHERE school IN ($1, '') AND login = $2 ORDER BY school DESC")))
            .bind(school)
            .bind(login.trim().to_lowercase())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(person).transpose()
    }

    /// The people behind `(school, login)` pairs (an alert queue's), keyed
    /// by the pairs as given. Someone trust-wide (school `""`) is found at any school.
    pub async fn people_for(&self, keys: &[(String, String)]) -> Result<HashMap<(String, String), Person>, StoreError> {
        let mut out = HashMap::new();
        if keys.is_empty() {
            return Ok(out);
        }
        let mut logins: Vec<String> = keys.iter().map(|(_, l)| l.trim().to_lowercase()).collect();
        logins.sort();
        logins.dedup();
        let mut found: HashMap<(String, String), Person> = HashMap::new();
        // A few hundred logins a page at most: bound in chunks the back ends accept.
        for chunk in logins.chunks(500) {
            let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!("SELECT {COLUMNS} FROM people WHERE login IN ({})", marks.join(", "));
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for l in chunk {
                q = q.bind(l);
            }
            for r in q.fetch_all(self.pool()).await? {
                let p = person(&r)?;
                found.insert((p.row.school.clone(), p.row.login.clone()), p);
            }
        }
        for (school, login) in keys {
            let l = login.trim().to_lowercase();
            if let Some(p) = found.get(&(school.clone(), l.clone())).or_else(|| found.get(&(String::new(), l))) {
                out.insert((school.clone(), login.clone()), p.clone());
            }
        }
        Ok(out)
    }

    /// Display names from the MIS for logins at one school, keyed by the
    /// logins as given; people without a name are left out.
    pub async fn person_names(&self, school: &str, logins: &[String]) -> Result<HashMap<String, String>, StoreError> {
        let keys: Vec<(String, String)> = logins.iter().map(|l| (school.to_string(), l.clone())).collect();
        Ok(self.people_for(&keys).await?.into_iter().filter_map(|((_, login), p)| Some((login, p.row.display_name?))).collect())
    }

    /// People whose name or login contains `text` (any case), at the schools
    /// given (every school when `None`), current before left, by name.
    pub async fn search_people(&self, schools: Option<&[String]>, text: &str, limit: i64) -> Result<Vec<Person>, StoreError> {
        let needle = format!("%{}%", text.trim().to_lowercase().replace(['%', '_', '\\'], ""));
        let rows = match schools {
            None => {
                sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM people WHERE folded LIKE $1 ORDER BY left_at IS NOT NULL, folded LIMIT $2")))
                    .bind(needle)
                    .bind(limit)
                    .fetch_all(self.pool())
                    .await?
            }
            Some(schools) => {
                let marks: Vec<String> = (0..schools.len()).map(|i| format!("${}", i + 3)).collect();
                let sql = format!(
                    "SELECT {COLUMNS} FROM people WHERE folded LIKE $1 AND school IN ('', {}) ORDER BY left_at IS NOT NULL, folded LIMIT $2",
                    if marks.is_empty() { "''".to_string() } else { marks.join(", ") }
                );
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(needle).bind(limit);
                for s in schools {
                    q = q.bind(s);
                }
                q.fetch_all(self.pool()).await?
            }
        };
        rows.iter().map(person).collect()
    }

    /// Whether an alert is about a login nobody knows.
    pub async fn alert_unidentified(&self, alert: i64) -> Result<bool, StoreError> {
        let v: Option<i64> = sqlx::query_scalar("SELECT unidentified FROM alerts WHERE id = $1").bind(alert).fetch_optional(self.pool()).await?;
        Ok(v.unwrap_or(0) != 0)
    }

    /// Which of these alerts are about a login nobody knows.
    pub async fn unidentified_among(&self, alerts: &[i64]) -> Result<std::collections::HashSet<i64>, StoreError> {
        let mut out = std::collections::HashSet::new();
        for chunk in alerts.chunks(500) {
            let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!("SELECT id FROM alerts WHERE unidentified <> 0 AND id IN ({})", marks.join(", "));
            let mut q = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                q = q.bind(*id);
            }
            out.extend(q.fetch_all(self.pool()).await?);
        }
        Ok(out)
    }

    /// A DSL's match of an unidentified alert to a person: the alert is
    /// re-keyed to `login` and no longer flagged, with its audit row, in one
    /// transaction. Returns the login it had.
    pub async fn match_alert(&self, alert: i64, login: &str, actor: &str, at: Timestamp) -> Result<String, StoreError> {
        let mut tx = self.begin().await?;
        let row = sqlx::query("SELECT school, person, unidentified FROM alerts WHERE id = $1").bind(alert).fetch_optional(tx.conn()).await?;
        let Some(row) = row else {
            return Err(StoreError::NotFound { what: "alert", name: alert.to_string(), hint: "" });
        };
        let school: String = row.try_get("school")?;
        let was: String = row.try_get("person")?;
        if row.try_get::<i64, _>("unidentified")? == 0 {
            return Err(StoreError::Invalid("this alert's person is already identified".into()));
        }
        let login = login.trim().to_lowercase();
        let known: Option<String> = sqlx::query_scalar("SELECT login FROM people WHERE school IN ($1, '') AND login = $2 AND left_at IS NULL")
            .bind(&school)
            .bind(&login)
            .fetch_optional(tx.conn())
            .await?;
        if known.is_none() {
            return Err(StoreError::NotFound { what: "person", name: login, hint: " at this school; search the people page for their login" });
        }
        sqlx::query("UPDATE alerts SET person = $2, unidentified = 0 WHERE id = $1").bind(alert).bind(&login).execute(tx.conn()).await?;
        tx.audit(at, actor, "alert.match", &format!("alert:{alert}"), &format!("{was} -> {login}")).await?;
        tx.commit().await?;
        Ok(was)
    }
}

impl Tx {
    /// Flags an alert as about a login nobody knows, for the DSL to match.
    pub async fn mark_unidentified(&mut self, alert: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE alerts SET unidentified = 1 WHERE id = $1").bind(alert).execute(self.conn()).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::stores;

    fn pupil(school: &str, login: &str, name: &str, year: &str, form: &str) -> PersonRow {
        PersonRow {
            school: school.into(),
            login: login.into(),
            display_name: Some(name.into()),
            year: Some(year.into()),
            form: Some(form.into()),
            classes: vec![form.into(), "10MA1".into()],
            kind: PersonKind::Pupil,
        }
    }

    #[tokio::test]
    async fn sync_marks_leavers_and_names_search_and_match_on_every_backend() {
        let t0: Timestamp = "2026-11-24T10:00:00Z".parse().unwrap();
        let t1: Timestamp = "2026-11-25T10:00:00Z".parse().unwrap();
        for (s, _dir) in stores().await {
            s.upsert_school("oak", "Oak Primary", false).await.unwrap();
            s.upsert_school("elm", "Elm Academy", false).await.unwrap();
            let amy = pupil("oak", "Amy.Pupil", "Amy Pupil", "Year 10", "10GH");
            let ben = pupil("oak", "ben.pupil", "Ben Pupil", "Year 9", "9RA");
            let cat = pupil("elm", "cat.pupil", "Cat Pupil", "Year 7", "7XY");
            let staff = PersonRow { school: String::new(), kind: PersonKind::Staff, ..pupil("", "c.teacher", "Chris Teacher", "", "") };
            let all = vec![amy.clone(), ben.clone(), cat.clone(), staff.clone()];
            assert_eq!(s.sync_people(None, &all, t0).await.unwrap(), Synced { added: 4, changed: 0, left: 0 });
            // The same MIS again writes nothing.
            assert_eq!(s.sync_people(None, &all, t1).await.unwrap(), Synced::default());
            let p = s.person("oak", "AMY.PUPIL").await.unwrap().unwrap();
            assert_eq!((p.row.login.as_str(), p.row.display_name.as_deref(), p.row.classes.len(), p.updated_at), ("amy.pupil", Some("Amy Pupil"), 2, t0));
            // Trust-wide staff are found at any school.
            assert_eq!(s.person("elm", "c.teacher").await.unwrap().unwrap().row.kind, PersonKind::Staff);
            assert!(s.person("elm", "amy.pupil").await.unwrap().is_none());

            // Ben leaves Oak; Amy changes form; syncing only Elm leaves Oak alone.
            let amy2 = PersonRow { form: Some("10AB".into()), ..amy.clone() };
            assert_eq!(s.sync_people(Some("elm"), std::slice::from_ref(&cat), t1).await.unwrap(), Synced::default());
            assert_eq!(s.sync_people(None, &[amy2.clone(), cat.clone(), staff.clone()], t1).await.unwrap(), Synced { added: 0, changed: 1, left: 1 });
            let ben_now = s.person("oak", "ben.pupil").await.unwrap().expect("left, not deleted");
            assert_eq!(ben_now.left_at, Some(t1));
            assert_eq!(s.person("oak", "amy.pupil").await.unwrap().unwrap().row.form.as_deref(), Some("10AB"));
            // Ben comes back.
            assert_eq!(s.sync_people(None, &[amy2, ben.clone(), cat, staff], t1).await.unwrap().changed, 1);
            assert_eq!(s.person("oak", "ben.pupil").await.unwrap().unwrap().left_at, None);

            let names = s.person_names("oak", &["Amy.Pupil".into(), "ben.pupil".into(), "nobody".into(), "c.teacher".into()]).await.unwrap();
            assert_eq!(names.get("Amy.Pupil").map(String::as_str), Some("Amy Pupil"));
            assert_eq!(names.get("c.teacher").map(String::as_str), Some("Chris Teacher"));
            assert_eq!(names.len(), 3, "{names:?}");

            let found = s.search_people(Some(&["oak".to_string()]), "PUPIL", 10).await.unwrap();
            assert_eq!(found.iter().map(|p| p.row.login.as_str()).collect::<Vec<_>>(), ["amy.pupil", "ben.pupil"], "Elm's pupil is out of scope");
            assert_eq!(s.search_people(None, "pupil", 10).await.unwrap().len(), 3);
            assert_eq!(s.search_people(Some(&["elm".to_string()]), "teach", 10).await.unwrap().len(), 1);
            assert!(s.search_people(Some(&[]), "amy", 10).await.unwrap().is_empty());
            assert_eq!(s.search_people(None, "%", 10).await.unwrap().len(), 4, "a wildcard typed is not a wildcard");

            s.close().await;
        }
    }
}
