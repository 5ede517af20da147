//! The file as written: serde structs mirroring `haven.toml`, with spans kept
//! on every value that is checked later, so errors can name `file:line`.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

pub(crate) type S = Spanned<String>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub(crate) trust: String,
    #[serde(default)]
    pub(crate) timezone: Option<S>,
    #[serde(default)]
    pub(crate) data: RawData,
    pub(crate) dns: Option<RawDns>,
    pub(crate) proxy: Option<RawProxy>,
    #[serde(default)]
    pub(crate) web: RawWeb,
    #[serde(default)]
    pub(crate) notify: RawNotify,
    #[serde(default)]
    pub(crate) monitoring: RawMonitoring,
    #[serde(default)]
    pub(crate) extension: RawExtension,
    #[serde(default)]
    pub(crate) filtering_checks: RawFilteringChecks,
    #[serde(default)]
    pub(crate) filtering: RawFiltering,
    #[serde(default)]
    pub(crate) safeguarding: RawSafeguarding,
    #[serde(default)]
    pub(crate) retention: crate::retention::RawRetention,
    #[serde(default)]
    pub(crate) host_model: crate::host_model::RawHostModel,
    #[serde(default, rename = "school")]
    pub(crate) schools: Vec<RawSchool>,
    #[serde(default, rename = "group")]
    pub(crate) groups: Vec<RawGroup>,
    #[serde(default, rename = "policy")]
    pub(crate) policies: Vec<RawPolicy>,
    #[serde(default, rename = "override")]
    pub(crate) overrides: Vec<RawOverride>,
    #[serde(default, rename = "user")]
    pub(crate) users: Vec<RawUser>,
    #[serde(default, rename = "user_import")]
    pub(crate) user_imports: Vec<RawUserImport>,
    #[serde(default, rename = "network")]
    pub(crate) networks: Vec<RawNetwork>,
    #[serde(default, rename = "device")]
    pub(crate) devices: Vec<RawDevice>,
    #[serde(default, rename = "list")]
    pub(crate) lists: Vec<RawList>,
    /// `[lists]`: defaults for the list feeds `haven serve` refreshes.
    #[serde(default, rename = "lists")]
    pub(crate) feed_defaults: crate::feeds::RawFeedDefaults,
    #[serde(default, rename = "window")]
    pub(crate) windows: Vec<RawWindow>,
    #[serde(default, rename = "restriction")]
    pub(crate) restrictions: Vec<RawRestriction>,
    #[serde(default, rename = "allowance")]
    pub(crate) allowances: Vec<RawAllowance>,
}

/// `[safeguarding]`: the trust's safeguarding contacts.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSafeguarding {
    pub(crate) lado: Option<Spanned<RawLado>>,
}

/// `lado = { name = "…", phone = "…", email = "…" }`: the local authority
/// designated officer. Every field optional here so that a missing one is
/// reported by name, on its line, rather than as serde's "missing field".
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLado {
    pub(crate) name: Option<S>,
    pub(crate) phone: Option<S>,
    pub(crate) email: Option<S>,
}

/// `[filtering]`: who approves requests for filtering changes, in order.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFiltering {
    #[serde(default)]
    pub(crate) approvers: Vec<S>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawData {
    pub(crate) dir: Option<String>,
    pub(crate) key_dir: Option<String>,
    pub(crate) index: Option<String>,
    pub(crate) database: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNotify {
    pub(crate) smtp: Option<String>,
    pub(crate) from: Option<String>,
    pub(crate) base_url: Option<String>,
    pub(crate) escalate_after_mins: Option<u32>,
    pub(crate) webhook_secret: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMonitoring {
    #[serde(default)]
    pub(crate) lexicons: Vec<S>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawExtension {
    pub(crate) notice: Option<String>,
    pub(crate) acceptable_use: Option<S>,
    pub(crate) acceptable_use_version: Option<S>,
    #[serde(default)]
    pub(crate) off_groups: Vec<S>,
    pub(crate) school_hours_only: Option<bool>,
    pub(crate) screenshots: Option<bool>,
    #[serde(default)]
    pub(crate) exempt: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFilteringChecks {
    pub(crate) every: Option<S>,
    #[serde(default)]
    pub(crate) schedule: Vec<RawCheckGroup>,
    pub(crate) iwf: Option<S>,
    pub(crate) ctiru: Option<S>,
    pub(crate) adult: Option<S>,
    pub(crate) gambling: Option<S>,
    pub(crate) self_harm: Option<S>,
    pub(crate) circumvention: Option<S>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCheckGroup {
    pub(crate) school: S,
    pub(crate) group: S,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWeb {
    #[serde(default)]
    pub(crate) listen: Vec<S>,
    pub(crate) demo: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDns {
    #[serde(default)]
    pub(crate) listen: Vec<S>,
    #[serde(default)]
    pub(crate) upstream: Vec<S>,
    pub(crate) block: Option<S>,
    pub(crate) block_page_ipv4: Option<S>,
    pub(crate) block_page_ipv6: Option<S>,
    pub(crate) block_ttl: Option<u32>,
    pub(crate) cache_entries: Option<usize>,
    pub(crate) upstream_timeout_ms: Option<u64>,
    pub(crate) doh_listen: Option<S>,
    pub(crate) doh_tls_listen: Option<S>,
    pub(crate) doh_tls_cert: Option<S>,
    pub(crate) doh_tls_key: Option<S>,
    pub(crate) default_group: Option<S>,
    pub(crate) log: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProxy {
    #[serde(default)]
    pub(crate) listen: Vec<S>,
    pub(crate) auth: Option<S>,
    pub(crate) realm: Option<String>,
    pub(crate) accounts: Option<String>,
    pub(crate) default_group: Option<S>,
    pub(crate) inspect: Option<bool>,
    pub(crate) ca_dir: Option<String>,
    #[serde(default)]
    pub(crate) inspect_exempt: Vec<String>,
    pub(crate) max_header_bytes: Option<usize>,
    pub(crate) idle_timeout_s: Option<u64>,
    pub(crate) origin_timeout_s: Option<u64>,
    pub(crate) log: Option<bool>,
    pub(crate) connect_ports: Option<Vec<u16>>,
    #[serde(default)]
    pub(crate) hosts: BTreeMap<String, S>,
    pub(crate) origin_roots: Option<String>,
    #[serde(default)]
    pub(crate) allow_internal: Vec<S>,
    pub(crate) header_timeout_s: Option<u64>,
    pub(crate) body_timeout_s: Option<u64>,
    pub(crate) tunnel_idle_timeout_s: Option<u64>,
    pub(crate) max_connections: Option<usize>,
    pub(crate) content: Option<RawContent>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawContent {
    pub(crate) enabled: Option<bool>,
    pub(crate) max_prefix_bytes: Option<usize>,
    pub(crate) max_text_bytes: Option<usize>,
    pub(crate) hold_bytes: Option<usize>,
    pub(crate) hold_ms: Option<u64>,
    pub(crate) cache_entries: Option<usize>,
    pub(crate) cache_ttl_secs: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSchool {
    pub(crate) id: S,
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) calendar: RawCalendar,
    #[serde(default)]
    pub(crate) alert_thresholds: BTreeMap<String, toml::Spanned<u8>>,
    /// This school's own lexicons (a primary school's words), on top of the trust's.
    #[serde(default)]
    pub(crate) lexicons: Vec<S>,
    /// This school's LADO, where its local authority differs from the trust's.
    pub(crate) lado: Option<Spanned<RawLado>>,
    /// `false` switches the hostname model off at this school.
    pub(crate) host_model: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCalendar {
    #[serde(default)]
    pub(crate) terms: Vec<RawRange>,
    #[serde(default)]
    pub(crate) closures: Vec<RawRange>,
    pub(crate) working_days: Option<Vec<S>>,
    pub(crate) day_start: Option<S>,
    pub(crate) day_end: Option<S>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRange {
    pub(crate) start: S,
    pub(crate) end: Option<S>,
    #[serde(default)]
    #[allow(dead_code)]
    pub(crate) name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGroup {
    pub(crate) id: S,
    pub(crate) name: Option<String>,
    pub(crate) policy: Option<S>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPolicy {
    pub(crate) id: S,
    #[serde(default)]
    pub(crate) block: Vec<S>,
    #[serde(default)]
    pub(crate) allow: Vec<S>,
    #[serde(default)]
    pub(crate) allow_sites: Vec<S>,
    #[serde(default)]
    pub(crate) block_sites: Vec<S>,
    pub(crate) safe_search: Option<bool>,
    pub(crate) youtube: Option<S>,
    pub(crate) uncategorised: Option<S>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOverride {
    pub(crate) school: S,
    pub(crate) group: Option<S>,
    #[serde(default)]
    pub(crate) block: Vec<S>,
    #[serde(default)]
    pub(crate) unblock: Vec<S>,
    #[serde(default)]
    pub(crate) allow_sites: Vec<S>,
    #[serde(default)]
    pub(crate) block_sites: Vec<S>,
    pub(crate) safe_search: Option<bool>,
    pub(crate) youtube: Option<S>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUser {
    pub(crate) id: S,
    pub(crate) group: S,
    pub(crate) school: Option<S>,
    /// Teaching groups (`["10GH", "10MA1"]`).
    #[serde(default)]
    pub(crate) classes: Vec<S>,
    /// The name staff see (`Amy Pupil`).
    pub(crate) name: Option<S>,
    /// Year group (`Year 10`).
    pub(crate) year: Option<S>,
    /// Form or registration group (`10GH`).
    pub(crate) form: Option<S>,
    /// `pupil` or `staff`.
    pub(crate) kind: Option<S>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUserImport {
    pub(crate) path: S,
    #[serde(default = "default_user_column")]
    pub(crate) user_column: S,
    #[serde(default = "default_group_column")]
    pub(crate) group_column: S,
    pub(crate) school_column: Option<S>,
    /// The column holding the person's teaching groups, separated by `;`,
    /// `,` or spaces (`10GH; 10MA1`).
    pub(crate) class_column: Option<S>,
    /// The columns whose values, joined by spaces, make the name staff see
    /// (`["Forename", "Surname"]`).
    #[serde(default)]
    pub(crate) name_columns: Vec<S>,
    pub(crate) year_column: Option<S>,
    pub(crate) form_column: Option<S>,
    /// `pupil` or `staff` for everyone in this export.
    pub(crate) kind: Option<S>,
    pub(crate) school: Option<S>,
    #[serde(default)]
    pub(crate) groups: BTreeMap<String, S>,
    pub(crate) default_group: Option<S>,
}

fn default_user_column() -> S {
    Spanned::new(0..0, "user".into())
}

fn default_group_column() -> S {
    Spanned::new(0..0, "group".into())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNetwork {
    pub(crate) cidr: S,
    pub(crate) school: S,
    pub(crate) group: S,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDevice {
    pub(crate) id: S,
    pub(crate) school: S,
    pub(crate) group: S,
    pub(crate) owner: Option<S>,
    pub(crate) doh_token: Option<S>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawList {
    pub(crate) name: S,
    pub(crate) format: S,
    pub(crate) path: Option<S>,
    pub(crate) url: Option<S>,
    pub(crate) category: Option<S>,
    #[serde(default)]
    pub(crate) labels: BTreeMap<String, Vec<S>>,
    #[serde(default)]
    pub(crate) very_restrictive: bool,
    #[serde(default)]
    pub(crate) optional: bool,
    /// When `haven serve` downloads it (see `crate::feeds`).
    pub(crate) refresh: Option<Vec<S>>,
    pub(crate) refresh_every: Option<S>,
    pub(crate) credentials: Option<S>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWindow {
    pub(crate) name: S,
    #[serde(default)]
    pub(crate) groups: Vec<S>,
    #[serde(default)]
    pub(crate) schools: Vec<S>,
    pub(crate) days: Option<Vec<S>>,
    pub(crate) from: S,
    pub(crate) to: S,
    pub(crate) season: Option<S>,
    pub(crate) block: Vec<S>,
    #[serde(default)]
    pub(crate) except: Vec<S>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRestriction {
    pub(crate) id: S,
    pub(crate) user: Option<S>,
    pub(crate) group: Option<S>,
    /// A teaching group (`10GH`) at `school`, instead of `user` or `group`.
    pub(crate) class: Option<S>,
    pub(crate) school: Option<S>,
    pub(crate) block: Vec<S>,
    pub(crate) from: Option<S>,
    pub(crate) until: Option<S>,
    pub(crate) reason: S,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAllowance {
    pub(crate) id: S,
    pub(crate) user: Option<S>,
    pub(crate) group: Option<S>,
    /// A teaching group (`10GH`) at `school`, instead of `user` or `group`.
    pub(crate) class: Option<S>,
    pub(crate) school: Option<S>,
    #[serde(default)]
    pub(crate) sites: Vec<S>,
    #[serde(default)]
    pub(crate) categories: Vec<S>,
    pub(crate) from: Option<S>,
    pub(crate) until: S,
    pub(crate) reason: S,
}
