//! The categories of concern (BRIEF.md, policy 000 Annexe C) and their default levels.

use serde::Serialize;

/// A category of concern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Concern {
    /// Profanity without bullying or threats.
    OffensiveUser,
    /// Sex talk, innuendo, explicit content.
    SexualContent,
    /// Suicidal ideation, self-harm, abuse offline, severe distress.
    VulnerablePerson,
    /// Intimidating, threatening, harassing, shaming.
    BullyingViolence,
    /// Personal data about self or others.
    Oversharer,
    /// An adult desensitising a minor, secrecy, contact, images, meeting.
    Grooming,
    /// Threats to kill, terrorism, violent propaganda, hate.
    TerrorismExtremism,
    /// Concerning activity that fits no other category.
    GeneralRisk,
}

impl Concern {
    /// Every category, in BRIEF.md's order.
    pub const ALL: [Self; 8] = [
        Self::OffensiveUser,
        Self::SexualContent,
        Self::VulnerablePerson,
        Self::BullyingViolence,
        Self::Oversharer,
        Self::Grooming,
        Self::TerrorismExtremism,
        Self::GeneralRisk,
    ];

    /// The name used in JSON, alerts and the evaluation sets.
    pub fn name(self) -> &'static str {
        match self {
            Self::OffensiveUser => "Offensive user",
            Self::SexualContent => "Sexual content",
            Self::VulnerablePerson => "Vulnerable person",
            Self::BullyingViolence => "Bullying/Violence",
            Self::Oversharer => "Oversharer",
            Self::Grooming => "Grooming",
            Self::TerrorismExtremism => "Terrorism/Extremism",
            Self::GeneralRisk => "General risk",
        }
    }

    /// The lexicon table name (`[vulnerable]`).
    pub fn key(self) -> &'static str {
        match self {
            Self::OffensiveUser => "offensive",
            Self::SexualContent => "sexual",
            Self::VulnerablePerson => "vulnerable",
            Self::BullyingViolence => "bullying",
            Self::Oversharer => "oversharer",
            Self::Grooming => "grooming",
            Self::TerrorismExtremism => "extremism",
            Self::GeneralRisk => "general",
        }
    }

    /// The category's default level (BRIEF.md); severity raises it.
    pub fn default_level(self) -> u8 {
        match self {
            Self::OffensiveUser | Self::SexualContent => 1,
            Self::VulnerablePerson | Self::GeneralRisk => 2,
            Self::BullyingViolence | Self::Oversharer => 3,
            Self::Grooming => 4,
            Self::TerrorismExtremism => 5,
        }
    }

    /// Looks a category up by lexicon key or name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.key() == s || c.name() == s)
    }
}

impl Serialize for Concern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}
