//! The figures a report is made of: counts only, never a name or a pupil's
//! words. The binary gathers them from the record and the access logs.

/// KCSIE's four areas of online risk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FourC {
    /// Being exposed to illegal, inappropriate or harmful content.
    Content,
    /// Being subjected to harmful online interaction with other users.
    Contact,
    /// Online behaviour that increases the likelihood of, or causes, harm.
    Conduct,
    /// Risks such as online gambling, inappropriate advertising, phishing and scams.
    Commerce,
}

impl FourC {
    /// All four, in KCSIE's order.
    pub const ALL: [Self; 4] = [Self::Content, Self::Contact, Self::Conduct, Self::Commerce];

    /// Its name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Content => "Content",
            Self::Contact => "Contact",
            Self::Conduct => "Conduct",
            Self::Commerce => "Commerce",
        }
    }

    /// From a filtering taxonomy's area name (`content`, `contact`, …).
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name().eq_ignore_ascii_case(s.trim()))
    }

    /// The area a category of concern (an alert's category) belongs to, as
    /// KCSIE describes the areas: self-harm, suicide, sexual content and
    /// extremism are content; grooming is contact; bullying, offensive
    /// language and sharing personal details are conduct. Unknown categories
    /// count as content, the widest area.
    #[must_use]
    pub fn of_concern(category: &str) -> Self {
        match category {
            "Grooming" => Self::Contact,
            "Bullying/Violence" | "Offensive user" | "Oversharer" => Self::Conduct,
            _ => Self::Content,
        }
    }
}

/// Alerts in one week (Monday first), by level.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Week {
    /// The Monday, `2026-09-07`.
    pub start: String,
    /// Level 1 to 5.
    pub by_level: [u64; 5],
    /// The same week of the previous period (its n-th week).
    pub previous: u64,
}

/// Alerts of one category in the period.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Category {
    /// The category of concern.
    pub name: String,
    /// Level 1 to 5.
    pub by_level: [u64; 5],
    /// All levels in the previous period.
    pub previous: u64,
}

impl Category {
    /// All levels this period.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.by_level.iter().sum()
    }
}

/// Alerts with a deadline, and whether someone acted on them in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Responses {
    /// Alerts with a deadline that has passed (or was met) by the period's end.
    pub with_deadline: u64,
    /// First action (acknowledged, triaged, closed, a note) by the deadline.
    pub on_time: u64,
    /// First action after the deadline.
    pub late: u64,
    /// No action yet and the deadline passed.
    pub overdue: u64,
    /// Deadline still ahead at the period's end.
    pub waiting: u64,
    /// The median time from arrival to first action, in minutes.
    pub median_minutes: Option<u64>,
}

/// The same, for the period before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Compared<T> {
    /// This period.
    pub now: T,
    /// The previous period of the same length.
    pub previous: T,
}

/// Filtering blocks of one category (from the access logs).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Blocks {
    /// Category name.
    pub category: String,
    /// Its KCSIE area.
    pub area: Option<FourC>,
    /// Blocked requests this period.
    pub count: u64,
    /// The previous period.
    pub previous: u64,
}

/// The filtering checks log.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Checks {
    /// Separate runs (each probes several targets by DNS and the proxy).
    pub runs: u64,
    /// Probes.
    pub probes: u64,
    /// Probes that did not show what the policy should.
    pub failed: u64,
    /// Failed probes with a follow-up written.
    pub followed_up: u64,
    /// The last run in the period (a date).
    pub last: Option<String>,
}

/// The change register.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Changes {
    /// Raised in the period, by kind (`change`, `lesson`, `pupil`, `over-blocking`, …).
    pub by_kind: Vec<(String, u64)>,
    /// By state now (`in-force`, `refused`, `requested`, …) of those raised in the period.
    pub by_state: Vec<(String, u64)>,
    /// In force at the period's end.
    pub in_force_at_end: u64,
}

impl Changes {
    /// Raised in the period.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.by_kind.iter().map(|(_, n)| n).sum()
    }
}

/// Coverage of one acceptable-use agreement version in force.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Agreement {
    /// The school's name (trust-wide packs list each school).
    pub school: String,
    /// Who it is for.
    pub audience: String,
    /// The version in force.
    pub version: String,
    /// People who should accept it.
    pub expected: u64,
    /// Of whom accepted.
    pub signed: u64,
}

/// Incidents.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Incidents {
    /// Raised in the period.
    pub opened: u64,
    /// Closed in the period.
    pub closed: u64,
    /// Open at the period's end.
    pub open_at_end: u64,
    /// Raised in the period, by flowchart branch.
    pub by_kind: Vec<(String, u64)>,
}

/// One school's line in a trust-wide pack.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct School {
    /// Name.
    pub name: String,
    /// Alerts this period.
    pub alerts: u64,
    /// The previous period.
    pub previous: u64,
    /// Alerts acted on within their deadline / with a deadline.
    pub on_time: (u64, u64),
    /// Incidents open at the end.
    pub open_incidents: u64,
}

/// The termly governor pack: anonymised figures for one school or the trust.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GovernorPack {
    /// The school's name, or the trust's.
    pub scope: String,
    /// Every school of the trust together.
    pub trust_wide: bool,
    /// First day, `2026-09-01`.
    pub from: String,
    /// Last day (inclusive).
    pub to: String,
    /// The previous period of the same length: first day.
    pub previous_from: String,
    /// Its last day.
    pub previous_to: String,
    /// When it was made (RFC 3339).
    pub generated_at: String,
    /// Alerts by week.
    pub weeks: Vec<Week>,
    /// Alerts by category.
    pub categories: Vec<Category>,
    /// Responses against deadlines.
    pub responses: Compared<Responses>,
    /// Filtering blocks by category, most first.
    pub blocks: Vec<Blocks>,
    /// Where the block counts come from, or why there are none.
    pub blocks_note: String,
    /// Filtering checks.
    pub checks: Compared<Checks>,
    /// The change register.
    pub changes: Compared<Changes>,
    /// Acceptable-use agreement coverage, per version in force.
    pub agreements: Vec<Agreement>,
    /// Incidents.
    pub incidents: Compared<Incidents>,
    /// A line per school (trust-wide packs).
    pub schools: Vec<School>,
}

impl GovernorPack {
    /// Alerts this period.
    #[must_use]
    pub fn alerts(&self) -> u64 {
        self.categories.iter().map(Category::total).sum()
    }

    /// Alerts in the previous period.
    #[must_use]
    pub fn previous_alerts(&self) -> u64 {
        self.categories.iter().map(|c| c.previous).sum()
    }
}

/// How many of one category at one level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Count {
    /// Category of concern.
    pub category: String,
    /// Level 1–5.
    pub level: u8,
    /// How many.
    pub count: u64,
}

/// The weekly DSL digest of one school.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Digest {
    /// The school's name.
    pub school: String,
    /// The Monday the week starts, `2026-11-30`.
    pub week_of: String,
    /// Its Sunday.
    pub week_to: String,
    /// Alerts that arrived in the week.
    pub new: Vec<Count>,
    /// Alerts past their deadline and not closed at the week's end.
    pub overdue: Vec<Count>,
    /// Alerts closed in the week.
    pub closed: Vec<Count>,
    /// Alerts not closed at the week's end.
    pub open_at_end: u64,
    /// Governance reminders at the week's end: training expired or expiring,
    /// the annual review due (counts and dates only).
    pub reminders: Vec<String>,
    /// The web app, for the link to the queue.
    pub base_url: String,
}
