//! Alerts about staff: who an alert is for (`alerts.audience`). An alert
//! about a member of staff never reaches the DSL's queue: the headteacher
//! and IT read it; one about the headteacher goes to the chair of
//! governors instead, never the head. Which audience an alert has is
//! decided by `haven-safeguard` (the config knows the staff groups); this
//! module stores it and answers what the record knows about a login.

use sqlx::Row;

use crate::people::Account;
use crate::record::Tx;
use crate::{Role, Store, StoreError};

/// Who an alert is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// A pupil's: the safeguarding roles.
    Pupil,
    /// About a member of staff: the headteacher and IT.
    Staff,
    /// About the headteacher: the chair of governors.
    Head,
}

impl Audience {
    /// Reads a stored audience; anything else is a pupil's, the column's default.
    pub fn parse(s: &str) -> Self {
        match s {
            "staff" => Self::Staff,
            "head" => Self::Head,
            _ => Self::Pupil,
        }
    }

    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pupil => "pupil",
            Self::Staff => "staff",
            Self::Head => "head",
        }
    }
}

/// The SQL condition (on `alerts`) for the alerts `who` reads: the
/// audiences of their role, and never one about themselves.
pub fn audience_filter(who: &Account) -> String {
    let names: Vec<String> = who.role.alert_audiences().iter().map(|a| format!("'{a}'")).collect();
    if names.is_empty() { "1 = 0".into() } else { format!("audience IN ({}) AND {}", names.join(", "), not_about_self(who)) }
}

/// The SQL condition that keeps from `who` the alerts about their own
/// login (the e-mail, or its local part, as [`Store::staff_role`] matches
/// a login to an account): an IT lead or a head who reads staff alerts is
/// never shown one about their own activity. Trust-wide roles are not
/// school staff logins; the condition is `1 = 1` for them.
pub fn not_about_self(who: &Account) -> String {
    if who.role.trust_wide() || !who.role.alert_audiences().contains(&"staff") {
        return "1 = 1".into();
    }
    let email = who.email.trim().to_lowercase();
    let local = email.split_once('@').map_or(email.as_str(), |(l, _)| l);
    let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
    format!("LOWER(person) NOT IN ({}, {})", quote(&email), quote(local))
}

impl Tx {
    /// Sets a new alert's audience (in the transaction that made it, before
    /// its audit row, so the row's school follows the audience).
    pub async fn set_audience(&mut self, alert: i64, audience: Audience) -> Result<(), StoreError> {
        if audience != Audience::Pupil {
            sqlx::query("UPDATE alerts SET audience = $2 WHERE id = $1").bind(alert).bind(audience.as_str()).execute(self.conn()).await?;
        }
        Ok(())
    }
}

impl Store {
    /// The role of the school's (or the trust's) active account for a login:
    /// the account whose e-mail is the login, or starts with it and `@`.
    /// A login with an account is a member of staff.
    pub async fn staff_role(&self, school: &str, login: &str) -> Result<Option<Role>, StoreError> {
        let login = login.trim().to_lowercase();
        if login.is_empty() {
            return Ok(None);
        }
        let rows = sqlx::query("SELECT email, role, school FROM accounts WHERE disabled = 0 AND (school IS NULL OR school = $1)")
            .bind(school)
            .fetch_all(self.pool())
            .await?;
        let mut found = None;
        for r in &rows {
            let email: String = r.try_get::<String, _>("email")?.to_lowercase();
            if email == login || email.split_once('@').is_some_and(|(local, _)| local == login) {
                let role = Role::parse(&r.try_get::<String, _>("role")?);
                // The headteacher wins, so an alert about the head never reaches the head.
                if role == Some(Role::Headteacher) {
                    return Ok(role);
                }
                found = found.or(role);
            }
        }
        Ok(found)
    }

    /// An alert's audience and the login it is about (`None`: no such alert).
    pub async fn alert_audience_and_person(&self, alert: i64) -> Result<Option<(Audience, String)>, StoreError> {
        let r = sqlx::query("SELECT audience, person FROM alerts WHERE id = $1").bind(alert).fetch_optional(self.pool()).await?;
        r.map(|r| Ok((Audience::parse(r.try_get::<&str, _>("audience")?), r.try_get("person")?))).transpose()
    }

    /// An alert's audience (`None`: no such alert).
    pub async fn alert_audience(&self, alert: i64) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar("SELECT audience FROM alerts WHERE id = $1").bind(alert).fetch_optional(self.pool()).await?)
    }
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;

    use super::*;
    use crate::queue::QueueQuery;
    use crate::testing::stores;

    #[tokio::test]
    async fn the_it_lead_reads_staff_alerts_and_the_dsl_never_lists_one() {
        let now: Timestamp = "2026-12-05T10:00:00Z".parse().unwrap();
        for (s, _dir) in stores().await {
            s.upsert_school("oak", "Oak", false).await.unwrap();
            s.upsert_school("elm", "Elm", false).await.unwrap();
            let dsl = s.add_account("dsl@oak.example", Role::Dsl, Some("oak"), "a long password", now).await.unwrap().0;
            let (lead, totp) = s.add_account("it.lead@oak.example", Role::ItLead, Some("oak"), "a long password", now).await.unwrap();
            assert!(totp.is_some(), "the IT lead reads alerts, so gives a second factor");
            let elm_lead = s.add_account("it.lead@elm.example", Role::ItLead, Some("elm"), "a long password", now).await.unwrap().0;
            let mut made = Vec::new();
            for (person, audience) in [("amy", Audience::Pupil), ("mr.jones", Audience::Staff), ("head", Audience::Head), ("IT.Lead", Audience::Staff)] {
                let a = crate::alerts::NewAlert {
                    school: "oak".into(),
                    person: person.into(),
                    category: "Offensive user".into(),
                    level: 3,
                    due_at: Some(now),
                    first: crate::alerts::NewOccurrence {
                        at: now,
                        level: 3,
                        source: "chat".into(),
                        excerpt: "words".into(),
                        url: None,
                        explanation: String::new(),
                        spans: "[]".into(),
                        screenshot: None,
                        screenshot_withheld: false,
                        repeats: 1,
                    },
                };
                let mut tx = s.begin().await.unwrap();
                let id = tx.insert_alert(&a).await.unwrap();
                tx.set_audience(id, audience).await.unwrap();
                tx.commit().await.unwrap();
                made.push(id);
            }
            let (pupil, staff, head, own) = (made[0], made[1], made[2], made[3]);
            // Never one about the IT lead's own login (their e-mail's local part), anywhere.
            assert!(s.alert_detail(&lead, own).await.unwrap().is_none(), "never one about themselves");
            assert!(!s.act_on_alert(&lead, own, "action", "x", now).await.unwrap());
            // The IT lead: the staff alert only, in detail, the queue and the list.
            assert!(s.alert_detail(&lead, staff).await.unwrap().is_some());
            assert!(s.alert_detail(&lead, pupil).await.unwrap().is_none(), "never a pupil's");
            assert!(s.alert_detail(&lead, head).await.unwrap().is_none(), "never the head's");
            assert!(s.alert_detail(&elm_lead, staff).await.unwrap().is_none(), "never another school's");
            let q = QueueQuery { limit: 50, ..QueueQuery::default() };
            let ids = |p: crate::queue::QueuePage| p.alerts.iter().map(|a| a.alert.id).collect::<Vec<_>>();
            assert_eq!(ids(s.queue_page(&lead, &q, now).await.unwrap()), vec![staff]);
            assert_eq!(s.alerts_for(&lead, 50).await.unwrap().iter().map(|a| a.id).collect::<Vec<_>>(), vec![staff]);
            assert!(s.act_on_alert(&lead, staff, "action", "Checked the staff laptop's history", now).await.unwrap());
            assert!(!s.act_on_alert(&lead, pupil, "action", "x", now).await.unwrap());
            // The DSL's queue and list never hold the staff alert (nor the head's).
            assert_eq!(ids(s.queue_page(&dsl, &q, now).await.unwrap()), vec![pupil]);
            assert_eq!(s.alerts_for(&dsl, 50).await.unwrap().iter().map(|a| a.id).collect::<Vec<_>>(), vec![pupil]);
            assert!(s.alert_detail(&dsl, staff).await.unwrap().is_none());
            assert_eq!(s.acknowledge_many(&dsl, &[staff], now).await.unwrap(), Vec::<i64>::new());
            assert_eq!(s.acknowledge_many(&lead, &[pupil, staff], now).await.unwrap(), vec![staff]);
            // A staff alert is held only by those who read it: never the DSL.
            let may_hold: Vec<i64> = s.assignable("oak", "staff").await.unwrap().iter().map(|(id, _)| *id).collect();
            assert_eq!(may_hold, vec![lead.id]);
            assert!(s.assign_alert(&lead, staff, Some(dsl.id), now).await.is_err());
            assert!(s.assign_alert(&lead, staff, Some(lead.id), now).await.unwrap());
            assert_eq!(s.assignable("oak", "pupil").await.unwrap().iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![dsl.id]);
            s.close().await;
        }
    }
}
