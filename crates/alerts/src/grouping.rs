//! Repeats of one concern are one alert: a new finding about the same person,
//! in the same category of concern, at the same school, while an alert about
//! it is still open and was last added to within the window, joins that
//! alert. If the repeat is more serious, the alert's level rises (and its
//! deadline with it); the queue never shows twenty copies of one pupil's
//! swearing.

use haven_textscan::Concern;
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

/// What the store knows of an open alert that a new finding might join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAlert {
    /// The alert's id in the store.
    pub id: i64,
    /// Its school.
    pub school: String,
    /// The person it concerns.
    pub person: String,
    /// Its category of concern.
    pub category: Concern,
    /// Its level now.
    pub level: u8,
    /// When a finding was last added to it.
    pub last_seen: Timestamp,
}

/// What to do with a new finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Grouping {
    /// A new alert.
    New,
    /// Add to alert `id`; `raise_to` when the finding is more serious.
    Join {
        /// The open alert.
        id: i64,
        /// The alert's new level, if it rises.
        raise_to: Option<u8>,
    },
}

/// Decides whether a finding joins one of `open` (the person's open alerts).
pub fn group(open: &[OpenAlert], school: &str, person: &str, category: Concern, level: u8, at: Timestamp, window: SignedDuration) -> Grouping {
    let joinable = open
        .iter()
        .filter(|a| a.school == school && a.person.eq_ignore_ascii_case(person) && a.category == category)
        // Findings can arrive out of order (a filter's repeats are gathered
        // for a minute before they are stored), so one a little older than
        // the alert's last joins it too.
        .filter(|a| at.duration_since(a.last_seen).abs() <= window)
        .max_by_key(|a| a.last_seen);
    match joinable {
        Some(a) => Grouping::Join { id: a.id, raise_to: (level > a.level).then_some(level) },
        None => Grouping::New,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(id: i64, category: Concern, level: u8, last: &str) -> OpenAlert {
        OpenAlert { id, school: "s".into(), person: "amy".into(), category, level, last_seen: last.parse().unwrap() }
    }

    #[test]
    fn repeats_within_the_window_join_and_raise() {
        let w = SignedDuration::from_mins(30);
        let alerts = [open(1, Concern::OffensiveUser, 1, "2026-11-24T10:00:00Z"), open(2, Concern::VulnerablePerson, 3, "2026-11-24T10:00:00Z")];
        let t = "2026-11-24T10:20:00Z".parse().unwrap();
        assert_eq!(group(&alerts, "s", "AMY", Concern::OffensiveUser, 1, t, w), Grouping::Join { id: 1, raise_to: None });
        assert_eq!(group(&alerts, "s", "amy", Concern::VulnerablePerson, 5, t, w), Grouping::Join { id: 2, raise_to: Some(5) });
        assert_eq!(group(&alerts, "s", "amy", Concern::BullyingViolence, 3, t, w), Grouping::New, "another concern");
        assert_eq!(group(&alerts, "s", "ben", Concern::OffensiveUser, 1, t, w), Grouping::New, "another person");
        assert_eq!(group(&alerts, "t", "amy", Concern::OffensiveUser, 1, t, w), Grouping::New, "another school");
        let later = "2026-11-24T10:31:00Z".parse().unwrap();
        assert_eq!(group(&alerts, "s", "amy", Concern::OffensiveUser, 1, later, w), Grouping::New, "past the window");
    }

    #[test]
    fn a_finding_that_arrives_late_still_joins() {
        let w = SignedDuration::from_mins(30);
        let alerts = [open(1, Concern::VulnerablePerson, 3, "2026-11-24T10:00:30Z")];
        let earlier = "2026-11-24T10:00:00Z".parse().unwrap();
        assert_eq!(group(&alerts, "s", "amy", Concern::VulnerablePerson, 3, earlier, w), Grouping::Join { id: 1, raise_to: None });
        let long_before = "2026-11-24T09:00:00Z".parse().unwrap();
        assert_eq!(group(&alerts, "s", "amy", Concern::VulnerablePerson, 3, long_before, w), Grouping::New);
    }
}
