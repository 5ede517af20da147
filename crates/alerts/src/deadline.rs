//! When an alert must be actioned (BRIEF.md, from the school's policy §6):
//!
//! - received in the working day: by the end of that working day;
//! - received out of hours (evening, weekend, closure, holiday): by the end of
//!   the next working day;
//! - level 5, a threat to life: immediately, at any hour;
//! - level 1 is logged only and has no deadline.

use haven_policy::schedule::Calendar;
use jiff::Timestamp;
use jiff::civil::Date;
use serde::Serialize;

/// An alert's deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Due {
    /// Now: someone is called (level 5).
    Immediately(Timestamp),
    /// By this time (the end of a working day).
    By(Timestamp),
    /// Logged only (level 1): no deadline.
    None,
}

impl Due {
    /// The instant, if there is one.
    pub fn at(self) -> Option<Timestamp> {
        match self {
            Self::Immediately(t) | Self::By(t) => Some(t),
            Self::None => None,
        }
    }
}

/// How far ahead to look for a working day: past a summer holiday and then some.
const HORIZON_DAYS: i32 = 400;

/// The deadline for an alert of `level` received at `received`.
pub fn due(level: u8, received: Timestamp, calendar: &Calendar) -> Due {
    match level {
        0 | 1 => return Due::None,
        5.. => return Due::Immediately(received),
        _ => {}
    }
    let local = received.to_zoned(calendar.tz.clone());
    let today = local.date();
    let in_hours = calendar.is_working_day(today) && local.time() < calendar.day_end && local.time() >= calendar.day_start;
    // Before the day starts on a working day, that day is the next working day.
    let early = calendar.is_working_day(today) && local.time() < calendar.day_start;
    let day = if in_hours || early { Some(today) } else { next_working_day(calendar, today) };
    match day.and_then(|d| end_of_day(calendar, d)) {
        Some(t) => Due::By(t),
        // A calendar with no working day ahead (no terms entered): a day from now,
        // rather than never.
        None => Due::By(received.saturating_add(jiff::SignedDuration::from_hours(24)).unwrap_or(received)),
    }
}

/// The first working day after `date`.
pub fn next_working_day(calendar: &Calendar, date: Date) -> Option<Date> {
    let mut d = date;
    for _ in 0..HORIZON_DAYS {
        d = d.tomorrow().ok()?;
        if calendar.is_working_day(d) {
            return Some(d);
        }
    }
    None
}

/// The start of the working day on `date` (or on the next working day, if `date` is not one).
pub fn start_of_next_working_time(calendar: &Calendar, at: Timestamp) -> Option<Timestamp> {
    let local = at.to_zoned(calendar.tz.clone());
    let today = local.date();
    let day = if calendar.is_working_day(today) && local.time() < calendar.day_start { Some(today) } else { next_working_day(calendar, today) }?;
    day.to_datetime(calendar.day_start).to_zoned(calendar.tz.clone()).ok().map(|z| z.timestamp())
}

fn end_of_day(calendar: &Calendar, date: Date) -> Option<Timestamp> {
    date.to_datetime(calendar.day_end).to_zoned(calendar.tz.clone()).ok().map(|z| z.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    /// Autumn term 2026 with October half term; spring term from 5 January;
    /// Monday–Friday 08:00–17:00, Europe/London.
    pub(crate) fn calendar() -> Calendar {
        let mut c = Calendar::london();
        c.terms = vec![(date(2026, 9, 3), date(2026, 12, 18)), (date(2027, 1, 5), date(2027, 3, 26)), (date(2027, 4, 12), date(2027, 7, 21))];
        c.closures = vec![(date(2026, 10, 26), date(2026, 10, 30))];
        c
    }

    fn at(s: &str) -> Timestamp {
        haven_policy::schedule::parse_instant(s, &haven_policy::schedule::london_tz()).unwrap()
    }

    #[test]
    fn in_the_working_day_the_same_day() {
        assert_eq!(due(3, at("2026-11-24T10:15"), &calendar()), Due::By(at("2026-11-24T17:00")));
        assert_eq!(due(2, at("2026-11-24T16:59"), &calendar()), Due::By(at("2026-11-24T17:00")));
        assert_eq!(due(4, at("2026-11-24T07:30"), &calendar()), Due::By(at("2026-11-24T17:00")), "before the day starts: that day");
    }

    #[test]
    fn evenings_weekends_closures_and_holidays_the_next_working_day() {
        assert_eq!(due(3, at("2026-11-24T19:00"), &calendar()), Due::By(at("2026-11-25T17:00")), "evening");
        assert_eq!(due(4, at("2026-11-27T17:00"), &calendar()), Due::By(at("2026-11-30T17:00")), "Friday at close: Monday");
        assert_eq!(due(3, at("2026-11-28T11:00"), &calendar()), Due::By(at("2026-11-30T17:00")), "Saturday");
        assert_eq!(due(3, at("2026-10-27T10:00"), &calendar()), Due::By(at("2026-11-02T17:00")), "half term");
        assert_eq!(due(4, at("2026-12-19T09:00"), &calendar()), Due::By(at("2027-01-05T17:00")), "Christmas holiday");
        assert_eq!(due(3, at("2027-07-30T12:00"), &calendar()), Due::By(at("2027-07-31T12:00")), "no term entered ahead: a day");
    }

    #[test]
    fn level_five_now_at_any_hour_and_level_one_never() {
        let t = at("2027-08-01T02:00"); // 02:00 on a Sunday in the summer holiday
        assert_eq!(due(5, t, &calendar()), Due::Immediately(t));
        assert_eq!(due(1, at("2026-11-24T10:00"), &calendar()), Due::None);
    }

    #[test]
    fn deadlines_follow_the_wall_clock_across_the_clock_change() {
        // The clocks go back at 02:00 on Sunday 25 October 2026 (half term):
        // the deadline is 17:00 GMT on the first day back, not 17:00 BST.
        let d = due(3, at("2026-10-23T18:00"), &calendar()).at().unwrap();
        assert_eq!(d, "2026-11-02T17:00:00Z".parse::<Timestamp>().unwrap());
        // Spring forward (28 March 2027): 17:00 BST is 16:00 UTC.
        let mut c = calendar();
        c.terms.push((date(2027, 3, 27), date(2027, 4, 2)));
        let d = due(3, at("2027-03-26T20:00"), &c).at().unwrap();
        assert_eq!(d, "2027-03-29T16:00:00Z".parse::<Timestamp>().unwrap());
    }

    #[test]
    fn the_next_working_time_starts_the_day() {
        assert_eq!(start_of_next_working_time(&calendar(), at("2026-11-27T18:00")), Some(at("2026-11-30T08:00")));
        assert_eq!(start_of_next_working_time(&calendar(), at("2026-11-24T06:00")), Some(at("2026-11-24T08:00")));
    }
}
