//! Alerts about staff: who an alert is for (`alerts.audience`). An alert
//! about a member of staff never reaches the DSL's queue: the headteacher
//! and IT read it; one about the headteacher goes to the chair of
//! governors instead, never the head. Which audience an alert has is
//! decided by `haven-safeguard` (the config knows the staff groups); this
//! module stores it and answers what the record knows about a login.

use sqlx::Row;

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
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pupil => "pupil",
            Self::Staff => "staff",
            Self::Head => "head",
        }
    }
}

/// The SQL condition (on `alerts`) for the audiences `role` reads.
pub fn audience_filter(role: Role) -> String {
    let names: Vec<String> = role.alert_audiences().iter().map(|a| format!("'{a}'")).collect();
    if names.is_empty() { "1 = 0".into() } else { format!("audience IN ({})", names.join(", ")) }
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

    /// An alert's audience (`None`: no such alert).
    pub async fn alert_audience(&self, alert: i64) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar("SELECT audience FROM alerts WHERE id = $1").bind(alert).fetch_optional(self.pool()).await?)
    }
}
