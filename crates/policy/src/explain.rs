//! Turning a [`Decision`] into the words a technician or DSL reads, and the
//! short rule identifier logs and JSON carry.

use crate::decide::{Action, Decision, Rule};
use crate::model::{PolicySet, Subject, Target, Verdict};
use crate::taxonomy::CategorySet;

impl Decision {
    /// A stable identifier of the deciding rule, for logs and `--json`:
    /// `illegal-content`, `restriction:<id>`, `allowance:<id>`, `window:<name>`,
    /// `policy:<id>:block-category`, `policy:<id>:allow-category`,
    /// `policy:<id>:block-entry`, `override:<school>:allow-entry`,
    /// `policy:<id>:uncategorised`, `policy:<id>:default`.
    pub fn rule_id(&self, set: &PolicySet, who: &Subject) -> String {
        let policy = &set.policies[set.groups[who.group].policy].id;
        match &self.rule {
            Rule::IllegalContent => "illegal-content".into(),
            Rule::Restriction(i) => format!("restriction:{}", set.restrictions[*i].id),
            Rule::Allowance(i) => format!("allowance:{}", set.allowances[*i].id),
            Rule::Window(i) => format!("window:{}", set.windows[*i].name),
            Rule::BlockedCategory => format!("policy:{policy}:block-category"),
            Rule::AllowedCategory => format!("policy:{policy}:allow-category"),
            Rule::Entry { verdict, r#override } => {
                let what = if *verdict == Verdict::Block { "block-entry" } else { "allow-entry" };
                match r#override {
                    Some(o) => format!("override:{}:{what}", set.schools[set.overrides[*o].school].id),
                    None => format!("policy:{policy}:{what}"),
                }
            }
            Rule::Model => format!("model:{}", self.decisive.iter().next().map_or("unknown", |c| c.id())),
            Rule::Uncategorised => format!("policy:{policy}:uncategorised"),
            Rule::Default => format!("policy:{policy}:default"),
        }
    }

    /// One line a person can read: what happened and why.
    pub fn explain(&self, set: &PolicySet, who: &Subject, host: &str) -> String {
        let group = &set.groups[who.group].name;
        let at = who.school.map(|s| format!(" at {}", set.schools[s].name)).unwrap_or_default();
        let listed = |cats: CategorySet| titles(cats);
        let from_list = match (&self.list, &self.entry) {
            (Some(l), Some(e)) => format!(" (list {l}, entry {e})"),
            _ => String::new(),
        };
        let head = match &self.rule {
            Rule::IllegalContent => {
                format!("Blocked for everyone: {host} is on an illegal-content list as {}{from_list}; no allow rule can override this", listed(self.decisive))
            }
            Rule::Restriction(i) => {
                let r = &set.restrictions[*i];
                let what = match (r.block, &self.entry) {
                    (Target::All, _) => "all web access".to_string(),
                    (Target::Categories(c), Some(site)) if c.intersection(self.categories).is_empty() => site.clone(),
                    (Target::Categories(c), _) => titles(c),
                };
                let until = r.until.map(|u| format!(" until {u}")).unwrap_or_default();
                format!("Blocked by {} ({what}{until}): {}", named("restriction", &r.id), r.reason)
            }
            Rule::Allowance(i) => {
                let a = &set.allowances[*i];
                // A change made in the record has no end unless one was set.
                let until = if a.until == jiff::Timestamp::MAX { String::new() } else { format!(" until {}", a.until) };
                format!("Allowed by {}{until}: {}", named("allowance", &a.id), a.reason)
            }
            Rule::Window(i) => {
                let w = &set.windows[*i];
                format!("Blocked by time window {} ({}–{}) for {group}{at}", w.name, w.period.from.strftime("%H:%M"), w.period.to.strftime("%H:%M"))
            }
            Rule::BlockedCategory => format!("Blocked: {host} is listed as {}{from_list}, which is blocked for {group}{at}", listed(self.decisive)),
            Rule::AllowedCategory => format!("Allowed: {host} is listed as {}{from_list}, which {group}{at} may use", listed(self.decisive)),
            Rule::Entry { verdict, r#override } => {
                let entry = self.entry.as_deref().unwrap_or(host);
                let whose = match r#override {
                    Some(o) => format!("{}'s override", set.schools[set.overrides[*o].school].name),
                    None => format!("policy {}", set.policies[set.groups[who.group].policy].id),
                };
                let verb = if *verdict == Verdict::Block { "Blocked" } else { "Allowed" };
                let list = if *verdict == Verdict::Block { "block" } else { "allow" };
                format!("{verb}: {entry} is on the {list} list of {whose}")
            }
            Rule::Model => {
                let why = self.guess.as_ref().map(model_reading).unwrap_or_default();
                format!("Blocked: {host} is in no list; {why}, which is blocked for {group}{at}")
            }
            Rule::Uncategorised => {
                format!("Blocked: {host} is in no list, and {group}{at} may only use listed sites")
            }
            // The model is asked only when no list names the site.
            Rule::Default if self.categories.is_empty() || self.guess.is_some() => match &self.guess {
                Some(g) if self.categories.is_empty() => {
                    format!("Allowed: {host} is in no list ({}, below its threshold or not decided by the model)", model_reading(g))
                }
                Some(g) => format!("Allowed: {host} is in no list ({}, not blocked for {group}{at})", model_reading(g)),
                None => format!("Allowed: {host} is in no list"),
            },
            Rule::Default => {
                format!("Allowed: {host} is listed as {}, none blocked for {group}{at}", titles(self.categories))
            }
        };
        match (self.action, self.safe_search_host) {
            (Action::SafeSearch, Some(target)) => format!("{head}; safe search enforced via {target}"),
            _ => head,
        }
    }
}

/// "model: gambling 0.94 from 'casino', 'bet'".
fn model_reading(g: &crate::lookup::ModelGuess) -> String {
    let from =
        if g.evidence.is_empty() { String::new() } else { format!(" from {}", g.evidence.iter().map(|e| format!("'{e}'")).collect::<Vec<_>>().join(", ")) };
    format!("model: {} {:.2}{from}", g.category.id(), g.confidence)
}

fn titles(c: CategorySet) -> String {
    let v: Vec<&str> = c.iter().map(|c| c.title()).collect();
    if v.is_empty() { "uncategorised".into() } else { v.join(", ") }
}

/// `change-41` (made in the record) reads "change 41"; a config rule keeps
/// its kind and id ("allowance a-2026-031").
fn named(kind: &str, id: &str) -> String {
    match id.strip_prefix("change-") {
        Some(n) => format!("change {n}"),
        None => format!("{kind} {id}"),
    }
}
