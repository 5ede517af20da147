//! Roles and what each may see (least privilege). School roles are scoped to
//! one school; trust roles see every school.

use serde::Serialize;

/// A member of staff's role in Haven.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Designated Safeguarding Lead.
    Dsl,
    /// Deputy DSL.
    DeputyDsl,
    /// Headteacher.
    Headteacher,
    /// IT technician: filtering, devices, lists; never alerts.
    ItTechnician,
    /// IT lead: what an IT technician does, and alerts about a member of
    /// staff's activity (never a pupil's, never the headteacher's).
    ItLead,
    /// Teacher: reports concerns, asks for allowances; never reads alerts.
    Teacher,
    /// Governor: anonymised totals only.
    Governor,
    /// The trust's safeguarding lead: every school's alerts; called in holidays.
    TrustSafeguardingLead,
    /// The trust's administrator: accounts and settings; not alerts.
    TrustAdmin,
    /// The chair of governors: only alerts and incidents concerning the
    /// headteacher (who must not see them), with the LADO.
    ChairOfGovernors,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 10] = [
        Self::Dsl,
        Self::DeputyDsl,
        Self::Headteacher,
        Self::ItTechnician,
        Self::ItLead,
        Self::Teacher,
        Self::Governor,
        Self::TrustSafeguardingLead,
        Self::TrustAdmin,
        Self::ChairOfGovernors,
    ];

    /// The name used on the command line and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dsl => "dsl",
            Self::DeputyDsl => "deputy-dsl",
            Self::Headteacher => "headteacher",
            Self::ItTechnician => "it-technician",
            Self::ItLead => "it-lead",
            Self::Teacher => "teacher",
            Self::Governor => "governor",
            Self::TrustSafeguardingLead => "trust-safeguarding-lead",
            Self::TrustAdmin => "trust-admin",
            Self::ChairOfGovernors => "chair-of-governors",
        }
    }

    /// Reads a role name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether this role reads pupils' alerts, incidents and chronologies
    /// (the IT lead reads only staff alerts: see [`Role::reads_alerts`]).
    pub fn sees_alerts(self) -> bool {
        matches!(self, Self::Dsl | Self::DeputyDsl | Self::Headteacher | Self::TrustSafeguardingLead)
    }

    /// Whether signing in needs a second factor (every role that sees alerts).
    pub fn needs_totp(self) -> bool {
        self.reads_alerts() || self.sees_alerts() || matches!(self, Self::TrustAdmin | Self::ChairOfGovernors)
    }

    /// Whether this role reads any alert at all (the queue and an alert's
    /// page; the store still keeps each role to its audiences).
    pub fn reads_alerts(self) -> bool {
        !self.alert_audiences().is_empty()
    }

    /// Whether this role does an IT technician's work (filtering, devices,
    /// lists, checks).
    pub fn does_it(self) -> bool {
        matches!(self, Self::ItTechnician | Self::ItLead)
    }

    /// Which alerts' audiences this role reads (`alerts.audience`): a
    /// pupil's go to the safeguarding roles; one about a member of staff to
    /// the headteacher, never the DSL's queue; one about the headteacher to
    /// the chair of governors, never the head. IT technicians sign in
    /// without a second factor, so they read no alert at all; the IT lead
    /// gives one and reads staff alerts, which are about activity on the
    /// school's systems that IT must look into.
    pub fn alert_audiences(self) -> &'static [&'static str] {
        match self {
            Self::Dsl | Self::DeputyDsl => &["pupil"],
            Self::Headteacher => &["pupil", "staff"],
            Self::ItLead => &["staff"],
            Self::ChairOfGovernors => &["head"],
            Self::TrustSafeguardingLead => &["pupil", "staff", "head"],
            Self::ItTechnician | Self::Teacher | Self::Governor | Self::TrustAdmin => &[],
        }
    }

    /// Whether this role works incidents (the chair of governors only those
    /// concerning the headteacher, the headteacher never those).
    pub fn sees_incidents(self) -> bool {
        self.sees_alerts() || self == Self::ChairOfGovernors
    }

    /// Whether the role covers the whole trust (no school).
    pub fn trust_wide(self) -> bool {
        matches!(self, Self::TrustSafeguardingLead | Self::TrustAdmin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_privilege() {
        assert!(Role::Dsl.sees_alerts() && Role::Dsl.needs_totp());
        assert!(!Role::Teacher.sees_alerts() && !Role::Governor.sees_alerts() && !Role::ItTechnician.sees_alerts());
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert!(Role::TrustSafeguardingLead.trust_wide() && !Role::Dsl.trust_wide());
        assert!(Role::ChairOfGovernors.needs_totp() && !Role::ChairOfGovernors.sees_alerts() && Role::ChairOfGovernors.sees_incidents());
        assert!(!Role::Dsl.alert_audiences().contains(&"staff") && Role::ItTechnician.alert_audiences().is_empty());
    }

    #[test]
    fn it_lead_reads_staff_alerts_only_with_a_second_factor() {
        assert_eq!(Role::parse("it-lead"), Some(Role::ItLead));
        assert_eq!(Role::ItLead.alert_audiences(), &["staff"]);
        assert!(Role::ItLead.reads_alerts() && Role::ItLead.needs_totp() && Role::ItLead.does_it());
        // Not a pupil's record: no incidents, no chronologies, no people pages.
        assert!(!Role::ItLead.sees_alerts() && !Role::ItLead.sees_incidents() && !Role::ItLead.trust_wide());
        assert!(!Role::ItTechnician.reads_alerts() && !Role::ItTechnician.needs_totp() && Role::ItTechnician.does_it());
    }
}
