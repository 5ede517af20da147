//! The weekly DSL digest as an e-mail: a subject that names the school and
//! the week and nobody else, and a plain-text body of counts by category and
//! level. No pupil's name, login or words: the DSL opens Haven for those.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::model::{Count, Digest};
use crate::pack::day;

impl Digest {
    /// "Haven weekly safeguarding digest — Riverside Academy — week of 30 Nov 2026".
    #[must_use]
    pub fn subject(&self) -> String {
        format!("Haven weekly safeguarding digest \u{2014} {} \u{2014} week of {}", self.school, day(&self.week_of, false))
    }

    /// The e-mail's text.
    #[must_use]
    pub fn text(&self) -> String {
        let total = |v: &[Count]| v.iter().map(|c| c.count).sum::<u64>();
        let mut s = format!(
            "Haven weekly safeguarding digest for {}\nWeek of {} to {}\n\n\
             New alerts:     {}\nOverdue at the week's end: {}\nClosed:         {}\nStill open at the week's end: {}\n",
            self.school,
            day(&self.week_of, false),
            day(&self.week_to, false),
            total(&self.new),
            total(&self.overdue),
            total(&self.closed),
            self.open_at_end
        );
        for (title, counts) in [("New alerts", &self.new), ("Overdue (past the deadline, not closed)", &self.overdue), ("Closed", &self.closed)] {
            let _ = write!(s, "\n{title}, by category and level\n");
            s.push_str(&grid(counts));
        }
        if !self.reminders.is_empty() {
            s.push_str("\nReminders\n");
            for r in &self.reminders {
                let _ = writeln!(s, "  - {r}");
            }
        }
        let _ = write!(
            s,
            "\nOpen the queue (sign-in and second factor required):\n{}/alerts\n\n\
             Counts only: no names, logins or pupils' words are sent by e-mail.\n",
            self.base_url.trim_end_matches('/')
        );
        s
    }
}

/// A text table: a row per category, a column per level, totals.
fn grid(counts: &[Count]) -> String {
    if counts.iter().all(|c| c.count == 0) {
        return "  none\n".into();
    }
    let mut rows: BTreeMap<&str, [u64; 5]> = BTreeMap::new();
    for c in counts {
        let l = usize::from(c.level.clamp(1, 5) - 1);
        rows.entry(c.category.as_str()).or_default()[l] += c.count;
    }
    let width = rows.keys().map(|k| k.chars().count()).max().unwrap_or(8).max(8);
    let mut s = format!("  {:width$}    L1    L2    L3    L4    L5  Total\n", "Category");
    for (cat, by) in &rows {
        let _ = write!(s, "  {cat:width$}");
        for v in by {
            let _ = write!(s, " {v:>5}");
        }
        let _ = writeln!(s, "  {:>5}", by.iter().sum::<u64>());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subject_names_the_school_and_week_only() {
        let d = Digest {
            school: "Riverside Academy".into(),
            week_of: "2026-11-30".into(),
            week_to: "2026-12-06".into(),
            new: vec![
                Count { category: "Grooming".into(), level: 4, count: 2 },
                Count { category: "Grooming".into(), level: 2, count: 1 },
                Count { category: "Oversharer".into(), level: 2, count: 3 },
            ],
            overdue: vec![],
            closed: vec![Count { category: "Oversharer".into(), level: 2, count: 1 }],
            open_at_end: 5,
            reminders: vec!["2 training records expired".into()],
            base_url: "https://haven.example/".into(),
        };
        assert_eq!(d.subject(), "Haven weekly safeguarding digest \u{2014} Riverside Academy \u{2014} week of 30 Nov 2026");
        let t = d.text();
        assert!(t.contains("Reminders\n  - 2 training records expired"), "{t}");
        assert!(t.contains("New alerts:     6"), "{t}");
        assert!(t.contains("  Grooming       0     1     0     2     0      3"), "{t}");
        assert!(t.contains("Overdue (past the deadline, not closed), by category and level\n  none"));
        assert!(t.contains("https://haven.example/alerts"));
    }
}
