//! Acceptable-use agreements: versions per audience (primary and secondary
//! pupils, staff, parents and carers, guests), each with its text and the
//! date it was published; who accepted which version and how (a parent's
//! single-use link, a paper copy staff recorded, a device at sign-in); and
//! who has not yet accepted the version in force. Publishing a new version
//! for an audience supersedes the old one, so every acceptance of the old
//! one stops being current at that moment.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::Serialize;
use sqlx::Row;

use crate::{Store, StoreError, ms, ts};

/// Who an agreement is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Audience {
    /// Pupils in primary years (Reception to Year 6).
    PrimaryPupil,
    /// Pupils in secondary years (Year 7 on).
    SecondaryPupil,
    /// Staff.
    Staff,
    /// Parents and carers, one acceptance per pupil.
    Parent,
    /// Guests and the community (visitors, contractors, lettings).
    Guest,
}

impl Audience {
    /// Every audience.
    pub const ALL: [Audience; 5] = [Self::PrimaryPupil, Self::SecondaryPupil, Self::Staff, Self::Parent, Self::Guest];

    /// As stored and in URLs.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PrimaryPupil => "primary-pupil",
            Self::SecondaryPupil => "secondary-pupil",
            Self::Staff => "staff",
            Self::Parent => "parent",
            Self::Guest => "guest",
        }
    }

    /// As people read it.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::PrimaryPupil => "Pupils (primary)",
            Self::SecondaryPupil => "Pupils (secondary)",
            Self::Staff => "Staff",
            Self::Parent => "Parents and carers",
            Self::Guest => "Guests and community",
        }
    }

    /// Reads a stored name.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// The pupil audience a year group belongs to (`Reception`, `Year 3`,
    /// `Y10`, `12`): primary to Year 6, secondary from Year 7; `None` when
    /// the year says neither.
    #[must_use]
    pub fn of_year(year: Option<&str>) -> Option<Self> {
        let y = year?.trim().to_ascii_lowercase();
        if y.starts_with("rec") || y == "r" || y.starts_with("nursery") {
            return Some(Self::PrimaryPupil);
        }
        let digits: String = y.chars().skip_while(|c| !c.is_ascii_digit()).take_while(char::is_ascii_digit).collect();
        match digits.parse::<u32>().ok()? {
            0..=6 => Some(Self::PrimaryPupil),
            7..=14 => Some(Self::SecondaryPupil),
            _ => None,
        }
    }
}

/// How an acceptance was given: a parent's link, a paper copy, a device at
/// sign-in, or the browser extension's notice.
pub const METHODS: [&str; 4] = ["link", "paper", "device", "extension"];

/// One published version of an agreement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Agreement {
    /// Row id.
    pub id: i64,
    /// School id.
    pub school: String,
    /// Who it is for.
    pub audience: Audience,
    /// The version's name (`2026-27`, `v3`).
    pub version: String,
    /// Its title.
    pub title: String,
    /// Its text.
    pub body: String,
    /// When it was published.
    pub published_at: Timestamp,
    /// Who published it.
    pub published_by: String,
    /// When a newer version replaced it; `None` while it is the one in force.
    pub superseded_at: Option<Timestamp>,
}

impl Agreement {
    /// Whether this is the version in force for its audience.
    #[must_use]
    pub fn current(&self) -> bool {
        self.superseded_at.is_none()
    }
}

/// One person's acceptance of one version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgreementAcceptance {
    /// The version accepted.
    pub agreement: i64,
    /// The pupil or member of staff (a parent's: the pupil), or a guest's name.
    pub person: String,
    /// The name given when accepting.
    pub signed_name: String,
    /// `link`, `paper` or `device`.
    pub method: String,
    /// When.
    pub accepted_at: Timestamp,
    /// Who recorded it (`account:N`, `device:N`, `link`).
    pub recorded_by: String,
    /// Whether the version accepted is still the one in force.
    pub current: bool,
}

/// What a parent's link opens: the version and the pupil it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The version to accept.
    pub agreement: Agreement,
    /// The pupil's login.
    pub person: String,
    /// Until when the link works.
    pub expires_at: Timestamp,
}

/// Someone who has not accepted the version in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unsigned {
    /// Login.
    pub login: String,
    /// Name from the MIS, if known.
    pub name: Option<String>,
}

/// Who should accept a version and who has not, by class (form, else year).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Coverage {
    /// How many people should accept it.
    pub expected: usize,
    /// How many of them have.
    pub signed: usize,
    /// By class: (expected in the class, those who have not accepted).
    pub by_class: BTreeMap<String, (usize, Vec<Unsigned>)>,
}

fn text_ok(what: &str, s: &str, max: usize) -> Result<String, StoreError> {
    let s = s.trim();
    if s.is_empty() || s.chars().count() > max {
        return Err(StoreError::Invalid(format!("{what} must be given, in at most {max} characters")));
    }
    Ok(s.to_string())
}

fn agreement_row(r: &sqlx::any::AnyRow) -> Result<Agreement, StoreError> {
    let audience: String = r.try_get("audience")?;
    Ok(Agreement {
        id: r.try_get("id")?,
        school: r.try_get("school")?,
        audience: Audience::parse(&audience).unwrap_or(Audience::Guest),
        version: r.try_get("version")?,
        title: r.try_get("title")?,
        body: r.try_get("body")?,
        published_at: ts(r.try_get("published_at")?),
        published_by: r.try_get("published_by")?,
        superseded_at: r.try_get::<Option<i64>, _>("superseded_at")?.map(ts),
    })
}

const ACCEPTANCE: &str = "SELECT a.agreement, a.person, a.signed_name, a.method, a.accepted_at, a.recorded_by, g.superseded_at \
     FROM agreement_acceptances a JOIN agreements g ON g.id = a.agreement";

fn acceptance_row(r: &sqlx::any::AnyRow) -> Result<AgreementAcceptance, StoreError> {
    Ok(AgreementAcceptance {
        agreement: r.try_get("agreement")?,
        person: r.try_get("person")?,
        signed_name: r.try_get("signed_name")?,
        method: r.try_get("method")?,
        accepted_at: ts(r.try_get("accepted_at")?),
        recorded_by: r.try_get("recorded_by")?,
        current: r.try_get::<Option<i64>, _>("superseded_at")?.is_none(),
    })
}

const AGREEMENT: &str = "id, school, audience, version, title, body, published_at, published_by, superseded_at";

impl Store {
    /// Publishes a new version for `audience` at `school`: the version in
    /// force until now is superseded in the same transaction (and with it
    /// every acceptance of it stops being current). Audited. Returns its id.
    #[allow(clippy::too_many_arguments)]
    pub async fn publish_agreement(
        &self,
        school: &str,
        audience: Audience,
        version: &str,
        title: &str,
        body: &str,
        by: &str,
        at: Timestamp,
    ) -> Result<i64, StoreError> {
        let version = text_ok("a version", version, 40)?;
        let title = text_ok("a title", title, 200)?;
        let body = text_ok("the agreement's text", body, 50_000)?;
        let mut tx = self.begin().await?;
        let taken: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM agreements WHERE school = $1 AND audience = $2 AND version = $3")
            .bind(school)
            .bind(audience.as_str())
            .bind(&version)
            .fetch_one(tx.conn())
            .await?;
        if taken > 0 {
            return Err(StoreError::Invalid(format!(
                "version {version:?} of the {} agreement is already published; give the new one its own",
                audience.label()
            )));
        }
        sqlx::query("UPDATE agreements SET superseded_at = $3 WHERE school = $1 AND audience = $2 AND superseded_at IS NULL")
            .bind(school)
            .bind(audience.as_str())
            .bind(ms(at))
            .execute(tx.conn())
            .await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO agreements (school, audience, version, title, body, published_at, published_by) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(school)
        .bind(audience.as_str())
        .bind(&version)
        .bind(&title)
        .bind(&body)
        .bind(ms(at))
        .bind(by)
        .fetch_one(tx.conn())
        .await?;
        tx.audit(at, by, "agreement.publish", &format!("agreement:{id}"), &format!("{school} {} {version}", audience.as_str())).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Every version published at `school`, newest first.
    pub async fn agreements(&self, school: &str) -> Result<Vec<Agreement>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {AGREEMENT} FROM agreements WHERE school = $1 ORDER BY published_at DESC, id DESC")))
            .bind(school)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(agreement_row).collect()
    }

    /// One version.
    pub async fn agreement(&self, id: i64) -> Result<Option<Agreement>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {AGREEMENT} FROM agreements WHERE id = $1"))).bind(id).fetch_optional(self.pool()).await?;
        row.as_ref().map(agreement_row).transpose()
    }

    /// The version in force for `audience` at `school`.
    pub async fn current_agreement(&self, school: &str, audience: Audience) -> Result<Option<Agreement>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {AGREEMENT} FROM agreements WHERE school = $1 AND audience = $2 AND superseded_at IS NULL ORDER BY id DESC LIMIT 1"
        )))
        .bind(school)
        .bind(audience.as_str())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(agreement_row).transpose()
    }

    /// Records that `person` accepted version `agreement` (`method`: link,
    /// paper or device), audited with `by`; a second acceptance of the same
    /// version by the same person changes nothing. Returns whether it was new.
    #[allow(clippy::too_many_arguments)]
    pub async fn accept_agreement(&self, agreement: i64, person: &str, signed_name: &str, method: &str, by: &str, at: Timestamp) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let new = accept_on(&mut tx, agreement, person, signed_name, method, by, at).await?;
        tx.commit().await?;
        Ok(new)
    }

    /// Every acceptance of `agreement`, newest first.
    pub async fn agreement_acceptances(&self, agreement: i64) -> Result<Vec<AgreementAcceptance>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("{ACCEPTANCE} WHERE a.agreement = $1 ORDER BY a.accepted_at DESC, a.id DESC")))
            .bind(agreement)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(acceptance_row).collect()
    }

    /// Every acceptance by `person` at `school` (every version), newest first.
    pub async fn acceptances_of(&self, school: &str, person: &str) -> Result<Vec<AgreementAcceptance>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("{ACCEPTANCE} WHERE a.school = $1 AND a.person = $2 ORDER BY a.accepted_at DESC, a.id DESC")))
            .bind(school)
            .bind(person.trim().to_lowercase())
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(acceptance_row).collect()
    }

    /// Makes a single-use link for a parent or carer of pupil `person` to
    /// accept `agreement` until `expires`; only its SHA-256 is kept. Audited.
    /// Returns the token (shown once, to be sent to the carer).
    pub async fn agreement_link(&self, agreement: i64, person: &str, by: &str, at: Timestamp, expires: Timestamp) -> Result<String, StoreError> {
        let person = text_ok("the pupil", &person.to_lowercase(), 200)?;
        let a = self.agreement(agreement).await?.ok_or_else(|| StoreError::NotFound {
            what: "agreement",
            name: agreement.to_string(),
            hint: "; open the agreements page again",
        })?;
        if !a.current() {
            return Err(StoreError::Invalid("that version has been replaced; send a link to the version in force".into()));
        }
        let token = crate::secrets::token("hva");
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO agreement_links (agreement, school, person, token_hash, created_at, created_by, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(agreement)
        .bind(&a.school)
        .bind(&person)
        .bind(crate::secrets::token_hash(&token))
        .bind(ms(at))
        .bind(by)
        .bind(ms(expires))
        .execute(tx.conn())
        .await?;
        tx.audit(at, by, "agreement.link", &format!("person:{}/{person}", a.school), &format!("agreement:{agreement}")).await?;
        tx.commit().await?;
        Ok(token)
    }

    /// What a link opens, if it is unused, unexpired and its version still in force.
    pub async fn agreement_by_link(&self, token: &str, now: Timestamp) -> Result<Option<Link>, StoreError> {
        let row = sqlx::query("SELECT agreement, person, expires_at FROM agreement_links WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2")
            .bind(crate::secrets::token_hash(token))
            .bind(ms(now))
            .fetch_optional(self.pool())
            .await?;
        let Some(row) = row else { return Ok(None) };
        let Some(agreement) = self.agreement(row.try_get("agreement")?).await?.filter(Agreement::current) else { return Ok(None) };
        Ok(Some(Link { agreement, person: row.try_get("person")?, expires_at: ts(row.try_get("expires_at")?) }))
    }

    /// A carer accepts through their link: the link is spent and the
    /// acceptance recorded in one transaction, so a link works once.
    /// Returns the version accepted, or `None` for a link that is unknown,
    /// spent, expired or for a replaced version.
    pub async fn accept_by_link(&self, token: &str, signed_name: &str, now: Timestamp) -> Result<Option<Agreement>, StoreError> {
        let signed_name = text_ok("your name", signed_name, 200)?;
        let Some(link) = self.agreement_by_link(token, now).await? else { return Ok(None) };
        let mut tx = self.begin().await?;
        let spent = sqlx::query("UPDATE agreement_links SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2")
            .bind(crate::secrets::token_hash(token))
            .bind(ms(now))
            .execute(tx.conn())
            .await?;
        if spent.rows_affected() != 1 {
            return Ok(None);
        }
        accept_on(&mut tx, link.agreement.id, &link.person, &signed_name, "link", "link", now).await?;
        tx.commit().await?;
        Ok(Some(link.agreement))
    }

    /// Who should accept `agreement` and who has not, by class: pupils of
    /// its year range (a parent's: every pupil), or staff, from the MIS
    /// directory (leavers left out). A guest agreement has no list.
    pub async fn agreement_coverage(&self, agreement: &Agreement) -> Result<Coverage, StoreError> {
        let kind = match agreement.audience {
            Audience::Staff => "staff",
            Audience::Guest => return Ok(Coverage::default()),
            _ => "pupil",
        };
        let rows = sqlx::query(
            "SELECT p.login, p.display_name, p.year, p.form, (SELECT COUNT(*) FROM agreement_acceptances a WHERE a.agreement = $3 AND a.person = p.login) AS signed \
             FROM people p WHERE p.school = $1 AND p.kind = $2 AND p.left_at IS NULL ORDER BY p.form, p.display_name, p.login",
        )
        .bind(&agreement.school)
        .bind(kind)
        .bind(agreement.id)
        .fetch_all(self.pool())
        .await?;
        let mut c = Coverage::default();
        for r in &rows {
            let year: Option<String> = r.try_get("year")?;
            if matches!(agreement.audience, Audience::PrimaryPupil | Audience::SecondaryPupil)
                && Audience::of_year(year.as_deref()).is_some_and(|a| a != agreement.audience)
            {
                continue;
            }
            let form: Option<String> = r.try_get("form")?;
            let class = form.or(year).unwrap_or_else(|| if kind == "staff" { "Staff".into() } else { "No class".into() });
            let entry = c.by_class.entry(class).or_default();
            entry.0 += 1;
            c.expected += 1;
            if r.try_get::<i64, _>("signed")? > 0 {
                c.signed += 1;
            } else {
                entry.1.push(Unsigned { login: r.try_get("login")?, name: r.try_get("display_name")? });
            }
        }
        Ok(c)
    }
}

/// Records an acceptance on `tx`, audited; whether it was new.
async fn accept_on(
    tx: &mut crate::record::Tx,
    agreement: i64,
    person: &str,
    signed_name: &str,
    method: &str,
    by: &str,
    at: Timestamp,
) -> Result<bool, StoreError> {
    if !METHODS.contains(&method) {
        return Err(StoreError::Invalid(format!("an acceptance is given by {}, not {method:?}", METHODS.join(", "))));
    }
    let person = text_ok("the person", &person.to_lowercase(), 200)?;
    let signed_name = text_ok("the name signed", signed_name, 200)?;
    let school: Option<String> = sqlx::query_scalar("SELECT school FROM agreements WHERE id = $1").bind(agreement).fetch_optional(tx.conn()).await?;
    let school = school.ok_or_else(|| StoreError::NotFound { what: "agreement", name: agreement.to_string(), hint: "; open the agreements page again" })?;
    let had: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM agreement_acceptances WHERE agreement = $1 AND person = $2")
        .bind(agreement)
        .bind(&person)
        .fetch_one(tx.conn())
        .await?;
    if had > 0 {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO agreement_acceptances (agreement, school, person, signed_name, method, accepted_at, recorded_by) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(agreement)
    .bind(&school)
    .bind(&person)
    .bind(&signed_name)
    .bind(method)
    .bind(ms(at))
    .bind(by)
    .execute(tx.conn())
    .await?;
    tx.audit(at, by, "agreement.accept", &format!("person:{school}/{person}"), &format!("agreement:{agreement} by {method}")).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::{PersonKind, PersonRow};

    fn pupil(login: &str, year: &str, form: &str) -> PersonRow {
        PersonRow {
            school: "oak".into(),
            login: login.into(),
            display_name: Some(login.replace('.', " ")),
            year: Some(year.into()),
            form: Some(form.into()),
            classes: vec![],
            kind: PersonKind::Pupil,
        }
    }

    #[test]
    fn year_groups_fall_into_primary_or_secondary() {
        assert_eq!(Audience::of_year(Some("Reception")), Some(Audience::PrimaryPupil));
        assert_eq!(Audience::of_year(Some("Year 6")), Some(Audience::PrimaryPupil));
        assert_eq!(Audience::of_year(Some("Y7")), Some(Audience::SecondaryPupil));
        assert_eq!(Audience::of_year(Some("13")), Some(Audience::SecondaryPupil));
        assert_eq!(Audience::of_year(Some("staff")), None);
        assert_eq!(Audience::of_year(None), None);
        for a in Audience::ALL {
            assert_eq!(Audience::parse(a.as_str()), Some(a));
        }
    }

    #[test]
    fn both_migrations_match() {
        let strip = |s: &str| {
            s.replace("INTEGER PRIMARY KEY AUTOINCREMENT", "ID")
                .replace("BIGSERIAL PRIMARY KEY", "ID")
                .replace("postgres/0018", "X")
                .replace("sqlite/0018", "X")
        };
        assert_eq!(
            strip(include_str!("../migrations/sqlite/0018_agreements_governance.sql")),
            strip(include_str!("../migrations/postgres/0018_agreements_governance.sql"))
        );
    }

    #[tokio::test]
    async fn versions_acceptances_links_and_who_has_not_signed() {
        for (store, _dir) in crate::testing::stores().await {
            store.upsert_school("oak", "Oak", false).await.unwrap();
            let t0: Timestamp = "2026-09-01T09:00:00Z".parse().unwrap();
            let rows =
                vec![pupil("amy.p", "Year 10", "10GH"), pupil("ben.q", "Year 10", "10GH"), pupil("cal.r", "Year 8", "8AB"), pupil("dot.s", "Year 4", "4C")];
            store.sync_people(Some("oak"), &rows, t0).await.unwrap();
            let v1 = store
                .publish_agreement("oak", Audience::SecondaryPupil, "2026", "Using the internet at Oak", "Be kind online.", "account:1", t0)
                .await
                .unwrap();
            assert!(
                store.publish_agreement("oak", Audience::SecondaryPupil, "2026", "again", "x", "account:1", t0).await.is_err(),
                "a version is published once"
            );
            assert!(store.accept_agreement(v1, "Amy.P", "Amy P", "device", "device:3", t0).await.unwrap());
            assert!(!store.accept_agreement(v1, "amy.p", "Amy P", "device", "device:3", t0).await.unwrap(), "twice is once");
            assert!(store.accept_agreement(v1, "ben.q", "Ben", "carrier-pigeon", "account:1", t0).await.is_err());
            store.accept_agreement(v1, "ben.q", "Ben Q", "paper", "account:1", t0).await.unwrap();
            let a1 = store.agreement(v1).await.unwrap().unwrap();
            let c = store.agreement_coverage(&a1).await.unwrap();
            // Year 4 is primary: not asked to accept the secondary agreement.
            assert_eq!((c.expected, c.signed), (3, 2));
            assert_eq!(c.by_class["8AB"].1.iter().map(|u| u.login.as_str()).collect::<Vec<_>>(), ["cal.r"]);
            assert!(c.by_class["10GH"].1.is_empty());

            // A new version: the old acceptances stop being current.
            let t1 = t0 + jiff::SignedDuration::from_hours(24);
            let v2 = store
                .publish_agreement("oak", Audience::SecondaryPupil, "2027", "Using the internet at Oak", "Be kind and safe online.", "account:1", t1)
                .await
                .unwrap();
            assert_eq!(store.current_agreement("oak", Audience::SecondaryPupil).await.unwrap().unwrap().id, v2);
            assert!(!store.agreement(v1).await.unwrap().unwrap().current());
            let amy = store.acceptances_of("oak", "amy.p").await.unwrap();
            assert_eq!(amy.len(), 1);
            assert!(!amy[0].current, "accepted the old version only");
            let c2 = store.agreement_coverage(&store.agreement(v2).await.unwrap().unwrap()).await.unwrap();
            assert_eq!((c2.expected, c2.signed), (3, 0));

            // A parent's link: works once, before it expires, for the version in force.
            let p = store
                .publish_agreement("oak", Audience::Parent, "2026", "Home and school", "We will talk about being safe online.", "account:1", t1)
                .await
                .unwrap();
            let token = store.agreement_link(p, "dot.s", "account:1", t1, t1 + jiff::SignedDuration::from_hours(24 * 14)).await.unwrap();
            assert!(store.agreement_link(v1, "amy.p", "account:1", t1, t1 + jiff::SignedDuration::from_hours(1)).await.is_err(), "not for a replaced version");
            assert!(store.agreement_by_link("hva_guess", t1).await.unwrap().is_none());
            let link = store.agreement_by_link(&token, t1).await.unwrap().unwrap();
            assert_eq!((link.agreement.id, link.person.as_str()), (p, "dot.s"));
            let late = t1 + jiff::SignedDuration::from_hours(24 * 15);
            assert!(store.agreement_by_link(&token, late).await.unwrap().is_none(), "expired");
            assert!(store.accept_by_link(&token, "   ", t1).await.is_err(), "a name is needed");
            assert_eq!(store.accept_by_link(&token, "Dora S (mother)", t1).await.unwrap().map(|a| a.id), Some(p));
            assert!(store.accept_by_link(&token, "Someone else", t1).await.unwrap().is_none(), "single use");
            let acc = store.agreement_acceptances(p).await.unwrap();
            assert_eq!(acc.len(), 1);
            assert_eq!((acc[0].person.as_str(), acc[0].signed_name.as_str(), acc[0].method.as_str()), ("dot.s", "Dora S (mother)", "link"));
            let cp = store.agreement_coverage(&store.agreement(p).await.unwrap().unwrap()).await.unwrap();
            assert_eq!((cp.expected, cp.signed), (4, 1), "one per pupil, primary or secondary");
            // Only the hash of the token is kept.
            let kept: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM agreement_links WHERE token_hash = $1").bind(&token).fetch_one(store.pool()).await.unwrap();
            assert_eq!(kept, 0);
            // Every write audited.
            let audit = store.audit_search(Some("person:oak/dot.s"), None, 10).await.unwrap();
            assert!(audit.iter().any(|e| e.action == "agreement.accept") && audit.iter().any(|e| e.action == "agreement.link"));
            assert!(store.audit_search(Some(&format!("agreement:{v2}")), None, 10).await.unwrap().iter().any(|e| e.action == "agreement.publish"));
        }
    }
}
