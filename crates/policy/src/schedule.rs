//! School calendars and time windows, in the school's own time zone.
//!
//! All arithmetic is on civil (wall-clock) times in Europe/London by default,
//! so "20:00" means 20:00 on the clock on the wall in GMT and in BST alike,
//! including the days the clocks change.

use jiff::Timestamp;
use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;

/// Days of the week as a bit set (Monday = bit 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Days(u8);

impl Days {
    /// Every day.
    pub const ALL: Self = Self(0x7f);
    /// Monday to Friday.
    pub const WEEKDAYS: Self = Self(0x1f);

    /// The set holding the given weekdays.
    pub fn of(days: &[Weekday]) -> Self {
        Self(days.iter().fold(0, |acc, d| acc | 1 << (d.to_monday_zero_offset() as u8)))
    }

    /// Whether `d` is in the set.
    pub fn contains(self, d: Weekday) -> bool {
        self.0 & (1 << d.to_monday_zero_offset() as u8) != 0
    }
}

/// A school's calendar: term dates, closures and working hours.
#[derive(Debug, Clone)]
pub struct Calendar {
    /// The school's time zone (Europe/London unless configured).
    pub tz: TimeZone,
    /// Terms, first and last day inclusive.
    pub terms: Vec<(Date, Date)>,
    /// Days inside a term when the school is closed (half terms, INSET days,
    /// bank holidays), first and last day inclusive.
    pub closures: Vec<(Date, Date)>,
    /// Working days.
    pub working_days: Days,
    /// Start of the working day.
    pub day_start: Time,
    /// End of the working day.
    pub day_end: Time,
}

/// Europe/London, looked up once: decisions must not search the tz database.
pub fn london_tz() -> TimeZone {
    static LONDON: std::sync::OnceLock<TimeZone> = std::sync::OnceLock::new();
    LONDON.get_or_init(|| TimeZone::get("Europe/London").unwrap_or(TimeZone::UTC)).clone()
}

/// Reads an instant as people write it: RFC 3339 with an offset
/// (`2026-12-01T15:30:00Z`), or a wall-clock time in `tz` (`2026-12-01T15:30`).
pub fn parse_instant(text: &str, tz: &TimeZone) -> Option<Timestamp> {
    text.parse::<Timestamp>().ok().or_else(|| text.parse::<jiff::civil::DateTime>().ok()?.to_zoned(tz.clone()).ok().map(|z| z.timestamp()))
}

impl Calendar {
    /// A calendar with no terms, Monday–Friday 08:00–17:00, in Europe/London.
    pub fn london() -> Self {
        Self {
            tz: london_tz(),
            terms: Vec::new(),
            closures: Vec::new(),
            working_days: Days::WEEKDAYS,
            day_start: Time::constant(8, 0, 0, 0),
            day_end: Time::constant(17, 0, 0, 0),
        }
    }

    /// Whether `date` falls in term time: inside a term and not a closure.
    /// Weekends inside a term count as term time.
    pub fn is_term(&self, date: Date) -> bool {
        let within = |ranges: &[(Date, Date)]| ranges.iter().any(|(a, b)| *a <= date && date <= *b);
        within(&self.terms) && !within(&self.closures)
    }

    /// Whether `date` is a working day: term time, and a working weekday.
    pub fn is_working_day(&self, date: Date) -> bool {
        self.is_term(date) && self.working_days.contains(date.weekday())
    }

    /// Whether the instant falls in the school's working hours.
    pub fn is_working_time(&self, at: Timestamp) -> bool {
        let local = at.to_zoned(self.tz.clone());
        let t = local.time();
        self.is_working_day(local.date()) && self.day_start <= t && t < self.day_end
    }
}

/// Whether a window applies in term time, in holidays, or always.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Season {
    /// Every day.
    #[default]
    Always,
    /// Only on term-time days.
    Term,
    /// Only outside term time.
    Holiday,
}

/// A daily period of wall-clock time, possibly across midnight
/// (`20:00`–`07:30`), on some days and in some seasons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    /// Local start time.
    pub from: Time,
    /// Local end time (exclusive); earlier than `from` for overnight periods.
    pub to: Time,
    /// Days on which the period starts.
    pub days: Days,
    /// Term, holiday or always, judged on the day the period starts.
    pub season: Season,
}

impl Period {
    /// Whether the instant falls inside the period for a school with `calendar`.
    ///
    /// An overnight period belongs to the day it starts: at 06:00 on a Monday,
    /// "20:00–07:30 on Sundays in term" asks whether that Sunday was term time.
    pub fn contains(&self, calendar: &Calendar, at: Timestamp) -> bool {
        self.contains_local(calendar, calendar.tz.to_datetime(at))
    }

    /// [`contains`](Self::contains) for a wall-clock time already in the calendar's zone.
    pub fn contains_local(&self, calendar: &Calendar, local: jiff::civil::DateTime) -> bool {
        let (t, date) = (local.time(), local.date());
        let start_day = if self.from < self.to {
            if self.from <= t && t < self.to { Some(date) } else { None }
        } else if t >= self.from {
            Some(date)
        } else if t < self.to {
            date.yesterday().ok()
        } else {
            None
        };
        let Some(day) = start_day else { return false };
        self.days.contains(day.weekday())
            && match self.season {
                Season::Always => true,
                Season::Term => calendar.is_term(day),
                Season::Holiday => !calendar.is_term(day),
            }
    }
}

#[cfg(test)]
mod tests {
    use jiff::civil::date;

    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn evening() -> Period {
        Period { from: Time::constant(20, 0, 0, 0), to: Time::constant(7, 30, 0, 0), days: Days::ALL, season: Season::Always }
    }

    #[test]
    fn overnight_window_follows_the_wall_clock_in_winter_and_summer() {
        let cal = Calendar::london();
        let p = evening();
        // Winter: GMT = UTC.
        assert!(p.contains(&cal, at("2026-01-15T20:00:00Z")));
        assert!(!p.contains(&cal, at("2026-01-15T19:59:59Z")));
        assert!(p.contains(&cal, at("2026-01-16T07:29:59Z")));
        assert!(!p.contains(&cal, at("2026-01-16T07:30:00Z")));
        // Summer: BST = UTC+1, so 20:00 local is 19:00Z.
        assert!(p.contains(&cal, at("2026-07-15T19:00:00Z")));
        assert!(!p.contains(&cal, at("2026-07-15T18:59:59Z")));
        assert!(!p.contains(&cal, at("2026-07-16T06:30:00Z")), "07:30 BST");
    }

    #[test]
    fn the_nights_the_clocks_change() {
        let cal = Calendar::london();
        let p = evening();
        // 2026-03-29 01:00 GMT clocks go forward to 02:00 BST.
        // 07:29 BST on the 29th is 06:29Z: still in the window; 07:30 BST = 06:30Z is out.
        assert!(p.contains(&cal, at("2026-03-29T06:29:00Z")));
        assert!(!p.contains(&cal, at("2026-03-29T06:30:00Z")));
        // 2026-10-25 02:00 BST clocks go back to 01:00 GMT.
        // 07:30 GMT on the 25th is 07:30Z; 06:45Z is 06:45 GMT: inside.
        assert!(p.contains(&cal, at("2026-10-25T06:45:00Z")));
        assert!(!p.contains(&cal, at("2026-10-25T07:30:00Z")));
        // The evening before: 20:00 BST on the 24th is 19:00Z.
        assert!(p.contains(&cal, at("2026-10-24T19:00:00Z")));
        assert!(!p.contains(&cal, at("2026-10-24T18:59:00Z")));
    }

    #[test]
    fn seasons_use_the_day_the_period_started() {
        let mut cal = Calendar::london();
        cal.terms.push((date(2026, 9, 1), date(2026, 12, 18)));
        cal.closures.push((date(2026, 10, 26), date(2026, 10, 30)));
        let term_nights = Period { season: Season::Term, ..evening() };
        let holiday_nights = Period { season: Season::Holiday, ..evening() };
        // Friday 18 December is the last day of term: the night to Saturday counts as term.
        assert!(term_nights.contains(&cal, at("2026-12-19T06:00:00Z")));
        assert!(!holiday_nights.contains(&cal, at("2026-12-19T06:00:00Z")));
        // Saturday evening 19 December is holiday.
        assert!(holiday_nights.contains(&cal, at("2026-12-19T21:00:00Z")));
        // Half term is a closure: holiday.
        assert!(holiday_nights.contains(&cal, at("2026-10-27T21:00:00Z")));
        assert!(cal.is_working_time(at("2026-11-02T09:00:00Z")));
        assert!(!cal.is_working_time(at("2026-10-27T09:00:00Z")));
        assert!(!cal.is_working_time(at("2026-11-01T09:00:00Z")), "Sunday");
    }
}
