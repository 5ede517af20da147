//! Who is told about an alert, and when.
//!
//! - Level 5 (threat to life): the call-out list at once, at any hour. In term
//!   time that is the school's list (DSL, deputies, head, by priority); in
//!   holidays and closures the trust safeguarding leads'. If nobody
//!   acknowledges within the escalation step, the next person is called, and
//!   after the last the list starts again, until someone acknowledges.
//! - Levels 3 and 4: the school's DSLs, in working hours; an alert that
//!   arrives out of hours is told at the start of the next working day.
//! - Levels 1 and 2: the queue only.
//!
//! Staff are protected from out-of-hours contact below level 5 (BRIEF.md).

use haven_policy::schedule::Calendar;
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::deadline::start_of_next_working_time;

/// Someone who can be told: by e-mail, or through a webhook (an SMS or voice gateway).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Contact {
    /// Who (for logs and the acknowledgement page).
    pub name: String,
    /// Where to reach them.
    pub address: Address,
    /// Lower is called first.
    pub priority: u32,
}

/// How a contact is reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Address {
    /// By e-mail.
    Email(String),
    /// By HTTP POST of the alert's summary.
    Webhook(String),
}

/// One notice to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notice {
    /// To whom.
    pub to: Contact,
    /// Not before this time.
    pub at: Timestamp,
    /// Part of a level-5 call-out (and so repeated down the list until acknowledged).
    pub callout: bool,
}

/// The lists an alert can be routed to.
#[derive(Debug, Clone, Default)]
pub struct Lists {
    /// The school's call-out list for term time (DSL, deputies, head).
    pub school_oncall: Vec<Contact>,
    /// The trust safeguarding leads, called in holidays.
    pub trust_oncall: Vec<Contact>,
    /// The school's DSLs, told of levels 3 and 4 in working hours.
    pub dsls: Vec<Contact>,
}

/// Whose call-out list applies at `at`: the school's in term, the trust's in
/// holidays and closures (or the school's if the trust has none).
pub fn callout_list<'a>(lists: &'a Lists, calendar: &Calendar, at: Timestamp) -> Vec<&'a Contact> {
    let date = at.to_zoned(calendar.tz.clone()).date();
    let list = if calendar.is_term(date) || lists.trust_oncall.is_empty() { &lists.school_oncall } else { &lists.trust_oncall };
    let mut v: Vec<&Contact> = list.iter().collect();
    v.sort_by_key(|c| c.priority);
    v
}

/// The first notices for a new alert.
pub fn notices(level: u8, received: Timestamp, calendar: &Calendar, lists: &Lists) -> Vec<Notice> {
    match level {
        5.. => callout_list(lists, calendar, received).into_iter().take(1).map(|c| Notice { to: c.clone(), at: received, callout: true }).collect(),
        3 | 4 => {
            let at = if calendar.is_working_time(received) { Some(received) } else { start_of_next_working_time(calendar, received) };
            let Some(at) = at else { return Vec::new() };
            lists.dsls.iter().map(|c| Notice { to: c.clone(), at, callout: false }).collect()
        }
        _ => Vec::new(),
    }
}

/// The call-outs due by `now` for an unacknowledged level-5 alert that
/// started calling at `started`, of which `sent` have gone already: one
/// person every `step`, down the list and round again.
pub fn callouts_due(list: &[&Contact], started: Timestamp, step: SignedDuration, sent: usize, now: Timestamp) -> Vec<Contact> {
    if list.is_empty() || step.is_zero() || step.is_negative() {
        return Vec::new();
    }
    let elapsed = now.duration_since(started);
    if elapsed.is_negative() {
        return Vec::new();
    }
    let due_count = (elapsed.as_secs() / step.as_secs().max(1)) as usize + 1;
    // Round the list at most a few times: past that a person must look at why.
    let due_count = due_count.min(list.len() * 3);
    (sent..due_count).map(|i| list[i % list.len()].clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn contact(name: &str, priority: u32) -> Contact {
        Contact { name: name.into(), address: Address::Email(format!("{name}@school.example")), priority }
    }

    fn lists() -> Lists {
        Lists {
            school_oncall: vec![contact("head", 2), contact("dsl", 1)],
            trust_oncall: vec![contact("trust-lead", 1)],
            dsls: vec![contact("dsl", 1), contact("deputy", 2)],
        }
    }

    fn calendar() -> Calendar {
        let mut c = Calendar::london();
        c.terms = vec![(date(2026, 9, 3), date(2026, 12, 18))];
        c
    }

    fn at(s: &str) -> Timestamp {
        haven_policy::schedule::parse_instant(s, &haven_policy::schedule::london_tz()).unwrap()
    }

    #[test]
    fn level_five_calls_the_school_in_term_and_the_trust_in_holidays() {
        let n = notices(5, at("2026-11-29T02:00"), &calendar(), &lists());
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].to.name, "dsl", "priority order, at any hour in term");
        assert!(n[0].callout);
        let n = notices(5, at("2027-08-01T02:00"), &calendar(), &lists());
        assert_eq!(n[0].to.name, "trust-lead", "summer holiday, 02:00 Sunday: the trust");
        assert_eq!(n[0].at, at("2027-08-01T02:00"));
    }

    #[test]
    fn below_five_nobody_is_disturbed_out_of_hours() {
        let n = notices(4, at("2026-11-24T11:00"), &calendar(), &lists());
        assert_eq!(n.len(), 2);
        assert!(n.iter().all(|x| x.at == at("2026-11-24T11:00") && !x.callout));
        let n = notices(4, at("2026-11-28T23:00"), &calendar(), &lists());
        assert!(n.iter().all(|x| x.at == at("2026-11-30T08:00")), "Saturday night: Monday 08:00");
        assert!(notices(2, at("2026-11-24T11:00"), &calendar(), &lists()).is_empty());
    }

    #[test]
    fn escalation_goes_down_the_list_until_acknowledged() {
        let l = lists();
        let list = callout_list(&l, &calendar(), at("2026-11-24T02:00"));
        let start = at("2026-11-24T02:00");
        let step = SignedDuration::from_mins(10);
        assert_eq!(callouts_due(&list, start, step, 1, at("2026-11-24T02:05")), vec![], "first already sent");
        assert_eq!(callouts_due(&list, start, step, 1, at("2026-11-24T02:10")).iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["head"]);
        let again = callouts_due(&list, start, step, 2, at("2026-11-24T02:21"));
        assert_eq!(again.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["dsl"], "round again");
        assert_eq!(callouts_due(&list, start, step, 2, at("2026-11-25T02:00")).len(), 4, "capped at three rounds");
        assert!(callouts_due(&[], start, step, 0, start).is_empty());
    }
}
