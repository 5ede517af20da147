//! Staff shown by name: an account's display name (`accounts.name`), and
//! the one batch look-up that turns the actors a page shows (account ids,
//! `account:N` audit actors, e-mails) into "Sam Patel (sam@…)", so a page
//! of history costs one query, not one per line.

use std::collections::HashMap;

use sqlx::Row;

use crate::{Role, Store, StoreError};

/// A name as shown: "Sam Patel (sam@oak.example)", or the e-mail alone
/// when the account has no name.
pub fn label(name: Option<&str>, email: &str) -> String {
    match name.map(str::trim).filter(|n| !n.is_empty()) {
        Some(n) => format!("{n} ({email})"),
        None => email.to_string(),
    }
}

/// The longest display name kept: a name, not a note.
const NAME_MAX: usize = 100;

impl Store {
    /// Sets (or with `None` or blank, clears) an account's display name;
    /// returns whether the account exists.
    pub async fn set_account_name(&self, id: i64, name: Option<&str>) -> Result<bool, StoreError> {
        let name = name.map(str::trim).filter(|n| !n.is_empty());
        if let Some(n) = name
            && (n.chars().count() > NAME_MAX || n.chars().any(char::is_control))
        {
            return Err(StoreError::Invalid(format!("a name is at most {NAME_MAX} characters, on one line")));
        }
        Ok(sqlx::query("UPDATE accounts SET name = $2 WHERE id = $1").bind(id).bind(name).execute(self.pool()).await?.rows_affected() > 0)
    }

    /// Every account's display name, by id (accounts without one left out).
    pub async fn account_names(&self) -> Result<HashMap<i64, String>, StoreError> {
        let rows = sqlx::query("SELECT id, name FROM accounts WHERE name IS NOT NULL").fetch_all(self.pool()).await?;
        rows.iter().map(|r| Ok((r.try_get("id")?, r.try_get("name")?))).collect()
    }

    /// How each of `actors` is shown, in one query: an `account:N` actor, a
    /// bare account id or an account's e-mail becomes [`label`]; anything
    /// else (`haven`, `device:3`, an account since removed) is left out, so
    /// the caller shows it as it is.
    pub async fn actor_labels<S: AsRef<str>>(&self, actors: &[S]) -> Result<HashMap<String, String>, StoreError> {
        let mut ids: Vec<i64> = Vec::new();
        let mut emails: Vec<String> = Vec::new();
        for a in actors {
            let a = a.as_ref().trim();
            if let Ok(id) = a.strip_prefix("account:").unwrap_or(a).parse::<i64>() {
                ids.push(id);
            } else if a.contains('@') {
                emails.push(a.to_ascii_lowercase());
            }
        }
        ids.sort_unstable();
        ids.dedup();
        emails.sort_unstable();
        emails.dedup();
        if ids.is_empty() && emails.is_empty() {
            return Ok(HashMap::new());
        }
        // Placeholders for the lists; the values themselves are bound.
        let mut n = 0;
        let mut marks = |k: usize| {
            (0..k)
                .map(|_| {
                    n += 1;
                    format!("${n}")
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut terms = Vec::new();
        if !ids.is_empty() {
            terms.push(format!("id IN ({})", marks(ids.len())));
        }
        if !emails.is_empty() {
            terms.push(format!("email IN ({})", marks(emails.len())));
        }
        let sql = format!("SELECT id, email, name FROM accounts WHERE {}", terms.join(" OR "));
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in &ids {
            q = q.bind(*id);
        }
        for e in &emails {
            q = q.bind(e.clone());
        }
        let (mut by_id, mut by_email) = (HashMap::new(), HashMap::new());
        for r in q.fetch_all(self.pool()).await? {
            let (id, email, name): (i64, String, Option<String>) = (r.try_get("id")?, r.try_get("email")?, r.try_get("name")?);
            let shown = label(name.as_deref(), &email);
            by_id.insert(id, shown.clone());
            by_email.insert(email, shown);
        }
        // Keyed by each actor as the caller gave it.
        let mut out = HashMap::new();
        for a in actors {
            let key = a.as_ref();
            let t = key.trim();
            let found = match t.strip_prefix("account:").unwrap_or(t).parse::<i64>() {
                Ok(id) => by_id.get(&id),
                Err(_) => by_email.get(&t.to_ascii_lowercase()),
            };
            if let Some(shown) = found {
                out.insert(key.to_string(), shown.clone());
            }
        }
        Ok(out)
    }

    /// Who is told of an alert for an audience other than pupils': the
    /// school's active accounts in `roles`, as (shown name, e-mail), by
    /// e-mail; never the account of `about`, the login the alert is about
    /// (an IT lead is not told of their own activity).
    pub async fn recipients(&self, school: &str, roles: &[Role], about: Option<&str>) -> Result<Vec<(String, String)>, StoreError> {
        let about = about.map(|a| a.trim().to_lowercase());
        let rows =
            sqlx::query("SELECT email, name, role FROM accounts WHERE disabled = 0 AND school = $1 ORDER BY email").bind(school).fetch_all(self.pool()).await?;
        let mut out = Vec::new();
        for r in &rows {
            let role: String = r.try_get("role")?;
            if Role::parse(&role).is_some_and(|role| roles.contains(&role)) {
                let (email, name): (String, Option<String>) = (r.try_get("email")?, r.try_get("name")?);
                // The same login match as `staff_role`: the e-mail, or its local part.
                let lower = email.to_lowercase();
                if about.as_deref().is_some_and(|a| lower == a || lower.split_once('@').is_some_and(|(local, _)| local == a)) {
                    continue;
                }
                out.push((name.filter(|n| !n.trim().is_empty()).unwrap_or_else(|| email.clone()), email));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;

    use super::*;
    use crate::testing::stores;

    #[tokio::test]
    async fn actors_are_shown_by_name_in_one_look_up() {
        let now: Timestamp = "2026-11-24T10:00:00Z".parse().unwrap();
        for (s, _dir) in stores().await {
            s.upsert_school("oak", "Oak Primary", true).await.unwrap();
            let (head, _) = s.add_account("head@oak.example", Role::Headteacher, Some("oak"), "a long password", now).await.unwrap();
            let (it, _) = s.add_account("it.lead@oak.example", Role::ItLead, Some("oak"), "a long password", now).await.unwrap();
            let (dsl, _) = s.add_account("dsl@oak.example", Role::Dsl, Some("oak"), "a long password", now).await.unwrap();
            let (tech, _) = s.add_account("tech@oak.example", Role::ItTechnician, Some("oak"), "a long password", now).await.unwrap();
            assert!(s.set_account_name(head.id, Some("  Sam Patel ")).await.unwrap());
            assert!(s.set_account_name(it.id, Some("Jo Lee")).await.unwrap());
            assert!(s.set_account_name(tech.id, Some("Al")).await.unwrap());
            assert!(s.set_account_name(tech.id, Some("")).await.unwrap(), "a blank name clears it");
            assert!(s.set_account_name(dsl.id, Some("two\nlines")).await.is_err());
            assert!(!s.set_account_name(9999, Some("Nobody")).await.unwrap());

            let actors = [format!("account:{}", head.id), dsl.id.to_string(), "IT.Lead@oak.example".into(), "haven".into(), "device:3".into()];
            let l = s.actor_labels(&actors).await.unwrap();
            assert_eq!(l[&format!("account:{}", head.id)], "Sam Patel (head@oak.example)");
            assert_eq!(l[&dsl.id.to_string()], "dsl@oak.example", "no name: the e-mail");
            assert_eq!(l["IT.Lead@oak.example"], "Jo Lee (it.lead@oak.example)", "keyed as given");
            assert!(!l.contains_key("haven") && !l.contains_key("device:3"));
            assert_eq!(s.account_names().await.unwrap().get(&head.id).map(String::as_str), Some("Sam Patel"));

            // Told of a staff alert: the head and the IT lead, not the DSL nor the technician.
            let told = s.recipients("oak", &[Role::Headteacher, Role::ItLead], Some("mr.jones")).await.unwrap();
            assert_eq!(told, vec![("Sam Patel".to_string(), "head@oak.example".to_string()), ("Jo Lee".to_string(), "it.lead@oak.example".to_string())]);
            let told = s.recipients("oak", &[Role::Headteacher, Role::ItLead], Some("IT.Lead")).await.unwrap();
            assert_eq!(told, vec![("Sam Patel".to_string(), "head@oak.example".to_string())], "never told of their own activity");
        }
    }
}
