//! Which findings become alerts. A school sets, per category of concern, the
//! lowest level that reaches its queue; below it, findings are logged only.
//! Blocked attempts in safeguarding categories of the filter become alerts
//! too, in the category of concern a DSL would file them under.

use haven_policy::Category;
use haven_textscan::Concern;
use serde::Serialize;

/// The lowest level that becomes an alert, per category of concern (in
/// `Concern::ALL` order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Thresholds(pub [u8; 8]);

impl Default for Thresholds {
    /// Level 1 is "logged only" (BRIEF.md): from level 2 up, everything reaches the queue.
    fn default() -> Self {
        Self([2; 8])
    }
}

impl Thresholds {
    /// Whether a finding of `category` at `level` becomes an alert.
    pub fn alerts(&self, category: Concern, level: u8) -> bool {
        let i = Concern::ALL.iter().position(|c| *c == category).unwrap_or(0);
        level >= self.0[i]
    }

    /// Sets the threshold of one category.
    pub fn set(&mut self, category: Concern, level: u8) {
        if let Some(i) = Concern::ALL.iter().position(|c| *c == category) {
            self.0[i] = level.clamp(1, 5);
        }
    }
}

/// The category of concern and level of an attempt to reach a site the filter
/// blocked, for the categories that matter to safeguarding; `None` for the
/// rest (games, social networks: a policy matter, not a concern).
pub fn from_block(category: Category) -> Option<(Concern, u8)> {
    use Category as C;
    Some(match category {
        // Possibly illegal: the incident flowchart's first branch.
        C::Csam => (Concern::SexualContent, 4),
        C::Terrorism => (Concern::TerrorismExtremism, 4),
        C::SelfHarm => (Concern::VulnerablePerson, 3),
        C::Extremism | C::HateSpeech => (Concern::TerrorismExtremism, 3),
        C::Adult | C::MixedAdult => (Concern::SexualContent, 2),
        C::Weapons | C::Violence => (Concern::BullyingViolence, 2),
        C::Drugs => (Concern::GeneralRisk, 2),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_school_settings() {
        let mut t = Thresholds::default();
        assert!(!t.alerts(Concern::OffensiveUser, 1));
        assert!(t.alerts(Concern::OffensiveUser, 2));
        t.set(Concern::OffensiveUser, 4);
        assert!(!t.alerts(Concern::OffensiveUser, 3));
        assert!(t.alerts(Concern::VulnerablePerson, 2), "other categories unchanged");
    }

    #[test]
    fn safeguarding_blocks_become_concerns() {
        assert_eq!(from_block(Category::SelfHarm), Some((Concern::VulnerablePerson, 3)));
        assert_eq!(from_block(Category::Csam).map(|x| x.0), Some(Concern::SexualContent));
        assert_eq!(from_block(Category::Games), None);
    }
}
