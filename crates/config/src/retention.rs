//! How long each class of data is kept (`[retention]`), and the data map:
//! what Haven holds, where, for how long and why. The same table drives the
//! daily retention job in `haven serve` and the data map page the DSL and IT
//! lead read for the school's DPIA, so the two cannot disagree.
//!
//! Periods are written `"180 days"`, `"13 months"`, `"25 years"` (also
//! `d`, `mo`, `y`). A month counts as 31 days and a year as 366, so a period
//! is never shorter than the calendar one it names.

use serde::Deserialize;

use crate::errors::Problems;
use crate::raw::S;

/// A class of data with its own retention period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// The DNS filter's and the proxy's access logs.
    Logs,
    /// Operational records: repeat-event keys, the notification outbox,
    /// ended sessions, seen IT notices, old list-feed runs.
    Events,
    /// Alerts closed without becoming part of a safeguarding record, and
    /// reports with no alert: anonymised, their numbers kept.
    Alerts,
    /// Incidents (the child protection record) and alerts judged a real
    /// concern.
    Incidents,
    /// Evidence files and their rows on incidents.
    Evidence,
    /// The audit log.
    Audit,
}

impl Class {
    /// Every class, in the order the data map shows them.
    pub const ALL: [Class; 6] = [Self::Logs, Self::Events, Self::Alerts, Self::Incidents, Self::Evidence, Self::Audit];

    /// The key in `[retention]`.
    pub fn key(self) -> &'static str {
        match self {
            Self::Logs => "logs",
            Self::Events => "events",
            Self::Alerts => "alerts",
            Self::Incidents => "incidents",
            Self::Evidence => "evidence",
            Self::Audit => "audit",
        }
    }

    /// The data map's row for this class.
    pub fn row(self) -> &'static Row {
        &TABLE[self as usize]
    }
}

/// One row of the data map.
#[derive(Debug)]
pub struct Row {
    /// The class.
    pub class: Class,
    /// Said to people.
    pub title: &'static str,
    /// What is held.
    pub what: &'static str,
    /// Where it is held.
    pub held: &'static str,
    /// What happens at the end of the period.
    pub then: &'static str,
    /// The default period, in days.
    pub default_days: u32,
    /// The default written as people read it.
    pub default_said: &'static str,
    /// Why the default is what it is.
    pub why: &'static str,
}

/// The data map: every class, what it holds, where, and its default with the
/// reason for it (UK schools).
pub const TABLE: [Row; 6] = [
    Row {
        class: Class::Logs,
        title: "Filtering logs (DNS and web)",
        what: "Each DNS question and web request: time, device or person, address asked for, the decision and its category; search terms the proxy saw.",
        held: "Files in the data folder: logs/dns-YYYY-MM-DD.jsonl and logs/proxy-YYYY-MM-DD.jsonl (owner-only).",
        then: "The day's file is deleted.",
        default_days: 180,
        default_said: "180 days",
        why: "Long enough to look back over a term and a half when a concern comes to light late (disclosures often come weeks after the browsing that shows them) and for the termly governor report; filtering logs are not a safeguarding record and are not kept for years.",
    },
    Row {
        class: Class::Events,
        title: "Operational records",
        what: "Keys that stop a repeated event being stored twice, the notification outbox once sent, given up or cancelled (for closed alerts), ended sign-in sessions, IT notices once seen, old list-feed runs.",
        held: "The database: ingest_keys, notifications, sessions, it_notices, feed_runs.",
        then: "Deleted (the last run of each list feed is kept).",
        default_days: 90,
        default_said: "90 days",
        why: "Needed only to answer repeats, trace a notice that did not arrive, or diagnose a feed; a term is ample.",
    },
    Row {
        class: Class::Alerts,
        title: "Alerts that did not become a safeguarding record",
        what: "Closed alerts judged not a concern (or closed without a verdict) and not on any incident: who, the words, the address, screenshots, notes; and block-page or public reports with no alert.",
        held: "The database: alerts, occurrences, alert_actions, reports; screenshots in evidence/.",
        then: "Anonymised: who, the words, addresses, screenshots and notes are cleared; school, category, level and dates stay for statistics and trends.",
        default_days: 403,
        default_said: "13 months",
        why: "Covers the annual filtering and monitoring review and a year of trend reports to governors; after that nothing about the person is needed to show how monitoring worked.",
    },
    Row {
        class: Class::Incidents,
        title: "Incidents and alerts judged a real concern (child protection record)",
        what: "Incidents with their actions, links, outcome and sanction; the alerts on them and alerts closed as a real concern, with their words and actions.",
        held: "The database: incidents, incident_actions, incident_links, alerts, occurrences, alert_actions, reports.",
        then: "Deleted with its alerts, actions, links and evidence, unless under legal hold.",
        default_days: 9150,
        default_said: "25 years",
        why: "A child protection file is kept until the child's 25th birthday (IRMS Information Management Toolkit for Schools), longer where an inquiry asks; allegations about staff until normal retirement age or 10 years, whichever is longer (KCSIE). Haven holds no dates of birth, and 25 years after closing is never shorter than a pupil's 25th birthday.",
    },
    Row {
        class: Class::Evidence,
        title: "Evidence files",
        what: "Files attached to incidents (sealed with the record's key) and their rows: name, SHA-256, size, note.",
        held: "Files in the data folder's evidence/ (by SHA-256, sealed); rows in the database: evidence.",
        then: "Rows deleted; a file is deleted once no record refers to it.",
        default_days: 9150,
        default_said: "25 years",
        why: "Evidence belongs to its incident and is kept as long; a school may set it shorter. Files under legal hold are kept.",
    },
    Row {
        class: Class::Audit,
        title: "Audit log",
        what: "Who read or changed which record, when (never the record's words).",
        held: "The database: audit; retention_runs records what each run deleted.",
        then: "Deleted, except entries about an incident under legal hold or its alerts.",
        default_days: 2562,
        default_said: "7 years",
        why: "Six years covers claims under the Limitation Act 1980, plus the current year; long enough to answer who saw a record in any complaint or case.",
    },
];

/// The retention period of each class, in days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Per class, in [`Class::ALL`] order.
    pub days: [u32; 6],
}

impl Default for Retention {
    fn default() -> Self {
        Self { days: TABLE.map(|r| r.default_days) }
    }
}

impl Retention {
    /// The period of `class`, in days.
    pub fn days(&self, class: Class) -> u32 {
        self.days[class as usize]
    }

    /// Whether `class`'s period is the default.
    pub fn is_default(&self, class: Class) -> bool {
        self.days(class) == class.row().default_days
    }
}

/// `[retention]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRetention {
    pub(crate) logs: Option<S>,
    pub(crate) events: Option<S>,
    pub(crate) alerts: Option<S>,
    pub(crate) incidents: Option<S>,
    pub(crate) evidence: Option<S>,
    pub(crate) audit: Option<S>,
}

/// Reads a period: `"180 days"`, `"13 months"`, `"25 years"`, `"90d"`.
pub fn parse_period(s: &str) -> Option<u32> {
    let s = s.trim().to_ascii_lowercase();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u32 = n.parse().ok()?;
    let per = match unit.trim() {
        "d" | "day" | "days" => 1,
        "w" | "week" | "weeks" => 7,
        "mo" | "month" | "months" => 31,
        "y" | "year" | "years" => 366,
        _ => return None,
    };
    n.checked_mul(per).filter(|d| *d > 0)
}

pub(crate) fn check(p: &mut Problems<'_>, raw: &RawRetention) -> Retention {
    let mut out = Retention::default();
    let given = [&raw.logs, &raw.events, &raw.alerts, &raw.incidents, &raw.evidence, &raw.audit];
    for (class, value) in Class::ALL.into_iter().zip(given) {
        let Some(v) = value else { continue };
        match parse_period(v.get_ref()) {
            Some(days) => out.days[class as usize] = days,
            None => p.at(
                v.span(),
                format!("[retention] {} = {:?} is not a period", class.key(), v.get_ref()),
                Some(format!("write a number and a unit, e.g. \"{}\" (days, weeks, months or years)", class.row().default_said)),
            ),
        }
    }
    if out.days(Class::Evidence) > out.days(Class::Incidents)
        && let Some(v) = &raw.evidence
    {
        p.at(v.span(), "[retention] evidence is longer than incidents: evidence goes with its incident", Some("set evidence no longer than incidents".into()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_read_as_days_never_shorter_than_named() {
        assert_eq!(parse_period("180 days"), Some(180));
        assert_eq!(parse_period("90d"), Some(90));
        assert_eq!(parse_period("13 months"), Some(403));
        assert_eq!(parse_period("25 years"), Some(9150));
        assert_eq!(parse_period("2 weeks"), Some(14));
        assert_eq!(parse_period("0 days"), None);
        assert_eq!(parse_period("forever"), None);
        assert_eq!(parse_period("12 fortnights"), None);
        for row in &TABLE {
            assert_eq!(TABLE[row.class as usize].class, row.class, "the table is in Class order");
            assert_eq!(parse_period(row.default_said), Some(row.default_days), "{} says its default", row.class.key());
        }
        // 25 years of 366 days is never less than the calendar's 25 years.
        assert!(Retention::default().days(Class::Incidents) >= 25 * 365 + 7);
    }

    #[test]
    fn a_config_sets_periods_and_names_a_bad_one() {
        let dir = std::path::Path::new("/nonexistent/haven.toml");
        let base = "trust = \"t\"\n[[school]]\nid = \"a\"\nname = \"A\"\n[[group]]\nid = \"pupils\"\n[[policy]]\nid = \"pupils\"\n";
        let defaults = crate::Config::parse(base, dir).unwrap();
        assert_eq!(defaults.retention, Retention::default());
        let ok = crate::Config::parse(&format!("{base}[retention]\nlogs = \"30 days\"\nalerts = \"2 years\"\n"), dir).unwrap();
        assert_eq!(ok.retention.days(Class::Logs), 30);
        assert_eq!(ok.retention.days(Class::Alerts), 732);
        assert_eq!(ok.retention.days(Class::Incidents), 9150);
        let bad = crate::Config::parse(&format!("{base}[retention]\naudit = \"ever\"\n"), dir).unwrap_err();
        assert!(bad.to_string().contains("[retention] audit"), "{bad}");
    }
}
