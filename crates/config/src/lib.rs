//! Reads `haven.toml` (see `examples/haven.toml`, documented line by line) into
//! a validated [`Config`]: the trust's [`PolicySet`] and its list sources.
//!
//! Every problem is collected with its `file:line` and a hint, and the config is
//! returned only if there are none: nothing is ever half-applied.
//!
//! Architecture invariant: this crate reads files (the config, user CSVs) and
//! nothing else; it opens no sockets and reads no clock.
#![forbid(unsafe_code)]

mod check;
mod errors;
pub mod feeds;
mod host_model;
pub mod probe;
mod raw;
pub mod retention;
pub use host_model::HostModelSettings;

use std::path::{Path, PathBuf};

pub use errors::{ConfigError, Problem};
use haven_lists::SourceSpec;
use haven_policy::PolicySet;

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The config file.
    pub path: PathBuf,
    /// The trust's schools, groups, people, devices and policies.
    pub policy: PolicySet,
    /// List sources, paths resolved against the config file's folder.
    pub lists: Vec<SourceSpec>,
    /// Where Haven keeps its data (the list index, later the database).
    pub data_dir: PathBuf,
    /// The compiled list index.
    pub index_path: PathBuf,
    /// Things worth saying that do not stop Haven (an optional list that is absent).
    pub warnings: Vec<String>,
    /// The DNS filter's settings.
    pub dns: DnsSettings,
    /// The web proxy's settings.
    pub proxy: ProxySettings,
    /// The safeguarding record's database URL (`postgres://…`); `None` is the
    /// SQLite file `haven.db` in the data folder.
    pub database: Option<String>,
    /// The folder of the record's key (`haven.key`), which seals second-factor
    /// secrets and evidence; `None` is beside the data folder (see [`Config::key_dir`]).
    pub key_dir: Option<PathBuf>,
    /// Where the web app and API listen.
    pub web_listen: Vec<std::net::SocketAddr>,
    /// Whether this configuration is demo data (shown on every page).
    pub demo: bool,
    /// How alerts reach people.
    pub notify: NotifySettings,
    /// The trust's own lexicon files (`[monitoring] lexicons`, the format of
    /// the shipped `en.toml`), added to the shipped ones wherever text is
    /// classified; paths resolved against the config file's folder.
    pub lexicons: Vec<PathBuf>,
    /// Per school id: that school's own lexicon files (`[[school]] lexicons`),
    /// on top of the trust's: a monitoring profile for a primary school's
    /// younger pupils, say, with its own alert thresholds beside it.
    pub school_lexicons: std::collections::HashMap<String, Vec<PathBuf>>,
    /// Per school id: the lowest level that becomes an alert, per category
    /// of concern (BRIEF.md's names); categories not named keep the default (2).
    pub alert_thresholds: std::collections::HashMap<String, Vec<(String, u8)>>,
    /// DNS-over-HTTPS tokens: token → index into `policy.devices`.
    pub doh_tokens: std::collections::HashMap<String, usize>,
    /// What the browser extension is told (`[extension]`).
    pub extension: ExtensionSettings,
    /// The filtering checks: each probe's target and the schedule (`[filtering_checks]`).
    pub filtering_checks: FilteringChecks,
    /// The LADO (`[safeguarding] lado`, and `[[school]] lado` where a
    /// school's local authority differs), shown on incidents about staff.
    pub lado: Lados,
    /// `[filtering] approvers`: the roles that approve a request for a
    /// filtering change, in order (`["dsl", "it-technician"]`: the DSL, then IT).
    pub approvers: Vec<String>,
    /// The list feeds `haven serve` refreshes itself (`refresh`, `[lists]`).
    pub feeds: feeds::Feeds,
    /// The people of `[[user]]` and the MIS imports as staff see them (names,
    /// year, form, teaching groups), for the safeguarding record's directory.
    /// Kept apart from `policy.users`, since filtering needs none of it.
    pub people: Vec<PersonRecord>,
    /// `[retention]`: how long each class of data is kept (the data map).
    pub retention: retention::Retention,
    /// `[host_model]`: the hostname model for sites no list names.
    pub host_model: HostModelSettings,
}

/// A pupil or member of staff as the MIS export or `[[user]]` names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonRecord {
    /// Login, as in `policy.users`.
    pub login: String,
    /// School id; `None` for someone who belongs to no one school.
    pub school: Option<String>,
    /// Name shown to staff (`Amy Pupil`): `name`, or the import's name columns joined.
    pub name: Option<String>,
    /// Year group (`Year 10`).
    pub year: Option<String>,
    /// Form or registration group (`10GH`).
    pub form: Option<String>,
    /// Teaching groups.
    pub classes: Vec<String>,
    /// Staff rather than a pupil: `kind = "staff"`, or in the Haven group `staff`.
    pub staff: bool,
}

/// `[filtering_checks]`: what each built-in probe asks for, and which
/// school and group `haven serve` checks how often.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilteringChecks {
    /// How often `haven serve` runs every probe for each of `schedule`; `None`: only when asked.
    pub every: Option<std::time::Duration>,
    /// (school id, group id) pairs checked on the schedule: by default each
    /// pair a `[[network]]` range names, where pupils actually are.
    pub schedule: Vec<(String, String)>,
    /// The probes' targets.
    pub targets: ProbeTargets,
}

/// Each probe's target: a host name or a URL the school's lists hold in
/// that category. The IWF and CTIRU ones should be the test entries those
/// bodies give members; the defaults are the test entries of the demo's
/// stand-in list (`examples/lists/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeTargets {
    /// An IWF list test entry (category csam).
    pub iwf: String,
    /// A CTIRU list test entry (category terrorism).
    pub ctiru: String,
    /// A pornography site the lists hold.
    pub adult: String,
    /// A gambling site.
    pub gambling: String,
    /// A self-harm site.
    pub self_harm: String,
    /// A VPN, proxy or DNS-over-HTTPS service pupils use to get round the filter.
    pub circumvention: String,
}

impl Default for ProbeTargets {
    fn default() -> Self {
        Self {
            iwf: "iwf-test.haven.invalid".into(),
            ctiru: "ctiru-test.haven.invalid".into(),
            adult: "pornhub.com".into(),
            gambling: "www.bet365.com".into(),
            self_harm: "self-harm-test.haven.invalid".into(),
            circumvention: "nordvpn.com".into(),
        }
    }
}

impl Default for FilteringChecks {
    fn default() -> Self {
        Self { every: Some(std::time::Duration::from_secs(24 * 3600)), schedule: Vec::new(), targets: ProbeTargets::default() }
    }
}

/// How the DNS filter answers a blocked name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockAnswer {
    /// NXDOMAIN, with an Extended DNS Error saying it was blocked.
    NxDomain,
    /// The block page's addresses (A and AAAA), with an Extended DNS Error.
    BlockPage,
}

/// The `[dns]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSettings {
    /// Where to listen (UDP and TCP).
    pub listen: Vec<std::net::SocketAddr>,
    /// Upstream resolvers, tried in order.
    pub upstream: Vec<std::net::SocketAddr>,
    /// How blocked names are answered.
    pub block: BlockAnswer,
    /// The block page's IPv4 address.
    pub block_page_ipv4: std::net::Ipv4Addr,
    /// The block page's IPv6 address.
    pub block_page_ipv6: std::net::Ipv6Addr,
    /// TTL of block and safe-search answers, seconds.
    pub block_ttl: u32,
    /// Most cached answers.
    pub cache_entries: usize,
    /// How long to wait for an upstream before answering SERVFAIL.
    pub upstream_timeout_ms: u64,
    /// Where to serve DNS-over-HTTPS (`/dns-query/<token>`), if anywhere.
    pub doh_listen: Option<std::net::SocketAddr>,
    /// DNS-over-HTTPS over TLS, served by Haven itself for devices off site.
    pub doh_tls: Option<DohTls>,
    /// Group for clients in no configured network range; `None` refuses them.
    pub default_group: Option<usize>,
    /// Log every query.
    pub log: bool,
    /// Checks filtering checks' probe tokens (`/dns-query/probe.…`); set by
    /// the binary from the data folder's key, never from the file.
    pub probe_key: Option<probe::ProbeKey>,
}

/// DoH over TLS: where, and the certificate it presents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DohTls {
    /// Where to listen.
    pub listen: std::net::SocketAddr,
    /// The certificate chain (PEM), leaf first: a public CA's, or one
    /// `haven ca issue` made from the school's own CA.
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
}

/// What the browser extension is told (`[extension]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionSettings {
    /// The monitoring notice pupils see.
    pub notice: String,
    /// The acceptable-use text, accepted once per version: (version, text).
    pub acceptable_use: Option<(String, String)>,
    /// Groups whose typing is never captured (staff).
    pub off_groups: Vec<String>,
    /// Capture only in the school's working hours on its working days.
    pub school_hours_only: bool,
    /// Whether the server may ask for a screenshot of a finding.
    pub screenshots: bool,
    /// Sites never read: the proxy's exemptions and these.
    pub exempt: Vec<String>,
}

impl Default for ExtensionSettings {
    fn default() -> Self {
        Self {
            notice: DEFAULT_NOTICE.into(),
            acceptable_use: None,
            off_groups: Vec::new(),
            school_hours_only: false,
            screenshots: true,
            exempt: {
                let mut all: Vec<String> = DEFAULT_EXEMPT.iter().chain(SUPPORT_SERVICES).map(|s| (*s).to_string()).collect();
                all.sort();
                all.dedup();
                all
            },
        }
    }
}

/// The monitoring notice unless the trust writes its own.
pub const DEFAULT_NOTICE: &str = "This browser is monitored by your school. What you type and search for may be read by your school's \
     safeguarding team, to keep you and others safe. Passwords, banking and health sites and Childline are never read.";

/// Where a child goes for help: never read by the extension, whatever the config says.
pub const SUPPORT_SERVICES: &[&str] =
    &["childline.org.uk", "samaritans.org", "papyrus-uk.org", "kooth.com", "giveusashout.org", "nspcc.org.uk", "ceop.police.uk", "thinkuknow.co.uk"];

impl Default for DnsSettings {
    fn default() -> Self {
        Self {
            listen: vec!["127.0.0.1:5353".parse().expect("literal"), "[::1]:5353".parse().expect("literal")],
            upstream: Vec::new(),
            block: BlockAnswer::NxDomain,
            block_page_ipv4: std::net::Ipv4Addr::LOCALHOST,
            block_page_ipv6: std::net::Ipv6Addr::LOCALHOST,
            block_ttl: 60,
            cache_entries: 50_000,
            upstream_timeout_ms: 1500,
            doh_listen: None,
            doh_tls: None,
            default_group: None,
            log: true,
            probe_key: None,
        }
    }
}

/// The local authority designated officer: who an allegation about a
/// member of staff (or the headteacher) is referred to, within one working day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lado {
    /// Who (a person or the LADO service's name).
    pub name: String,
    /// Telephone, as written.
    pub phone: Option<String>,
    /// E-mail address.
    pub email: Option<String>,
}

/// The trust's LADO and the schools' own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lados {
    /// `[safeguarding] lado`.
    pub trust: Option<Lado>,
    /// `[[school]] lado`, by school id.
    pub schools: std::collections::HashMap<String, Lado>,
}

impl Lados {
    /// The LADO for a school: its own, else the trust's; `None` when neither is set.
    pub fn for_school(&self, school: &str) -> Option<&Lado> {
        self.schools.get(school).or(self.trust.as_ref())
    }
}

/// The `[notify]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifySettings {
    /// `smtp://host:port` of the mail relay; `None` sends no e-mail (webhooks still go).
    pub smtp: Option<String>,
    /// The From address.
    pub from: String,
    /// The web app's address as staff reach it, for links in messages.
    pub base_url: Option<String>,
    /// Call the next person on the list after this many minutes unacknowledged.
    pub escalate_after_mins: u32,
    /// Signs webhook bodies (`X-Haven-Signature`) so a gateway can tell a
    /// real call-out from a forged one; `$HAVEN_WEBHOOK_SECRET` overrides it.
    pub webhook_secret: Option<String>,
}

/// Whether the proxy asks who is browsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyAuth {
    /// Never: people are known by address (or are guests).
    Off,
    /// Accepted when a browser sends it; otherwise known by address.
    Optional,
    /// Everyone signs in (407 until they do).
    Required,
}

/// The `[proxy]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySettings {
    /// Where to listen.
    pub listen: Vec<std::net::SocketAddr>,
    /// Proxy authentication.
    pub auth: ProxyAuth,
    /// The realm browsers show when asking for a password.
    pub realm: String,
    /// The accounts file (`user:argon2-hash` lines, written by `haven proxy passwd`).
    pub accounts: PathBuf,
    /// Group for clients in no configured network range and not signed in; `None` refuses them.
    pub default_group: Option<usize>,
    /// TLS inspection with the school CA.
    pub inspect: bool,
    /// Where the school CA lives (`haven ca init`).
    pub ca_dir: PathBuf,
    /// Hosts (and their subdomains) never inspected: banking, health, pinned apps.
    pub inspect_exempt: Vec<String>,
    /// Largest request or response head accepted.
    pub max_header_bytes: usize,
    /// A client connection with nothing to say is closed after this long.
    pub idle_timeout_s: u64,
    /// An origin that does not answer (connect and response head) within this long gets a 504.
    pub origin_timeout_s: u64,
    /// Log every request.
    pub log: bool,
    /// Ports CONNECT may reach (443 only by default: other ports let tunnels through).
    pub connect_ports: Vec<u16>,
    /// Names answered from the config instead of DNS (`[proxy.hosts]`), like a hosts file.
    pub hosts: std::collections::BTreeMap<String, std::net::IpAddr>,
    /// Extra certificate authorities trusted for origins (PEM), beside the public ones.
    pub origin_roots: Option<PathBuf>,
    /// Internal address ranges the proxy may forward to (`allow_internal`). Loopback,
    /// link-local, private, CGNAT, multicast and unspecified addresses are refused
    /// unless a range here covers them, so the proxy cannot be used to reach the
    /// school's own servers or the machine it runs on.
    pub allow_internal: Vec<ipnet::IpNet>,
    /// Haven's own listen addresses (DNS, DoH, web app, proxy): never forwarded to,
    /// whatever `allow_internal` says. Filled in from the rest of the config.
    pub haven_listeners: Vec<std::net::SocketAddr>,
    /// A request head must arrive in full within this long.
    pub header_timeout_s: u64,
    /// A request or response body that stops moving for this long is cut off, as is a
    /// client that stops reading its answer.
    pub body_timeout_s: u64,
    /// A CONNECT tunnel with nothing passing either way for this long is closed.
    pub tunnel_idle_timeout_s: u64,
    /// Most client connections (tunnels included) at once; more are refused, not queued.
    pub max_connections: usize,
    /// Checks filtering checks' probe tokens (the reserved sign-in
    /// [`probe::PROBE_USER`]); set by the binary from the data folder's key.
    pub probe_key: Option<probe::ProbeKey>,
    /// `[proxy.content]`: reading pages' text as they stream.
    pub content: ContentSettings,
}

/// `[proxy.content]`: pages (HTML, and chatbots' event streams) judged by
/// their text on a bounded prefix as they stream through the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentSettings {
    /// Read pages at all (plain HTTP, and HTTPS under inspection). Default: on when `inspect` is.
    pub enabled: bool,
    /// Body bytes read for a verdict; the rest passes unread.
    pub max_prefix_bytes: usize,
    /// Visible text read for a verdict.
    pub max_text_bytes: usize,
    /// The response head waits while up to this much body arrives, for a verdict before any byte is sent…
    pub hold_bytes: usize,
    /// …or this long, whichever comes first; after it a harmful verdict replaces the rest of the page.
    pub hold_ms: u64,
    /// Pages' verdicts remembered by URL.
    pub cache_entries: usize,
    /// How long a verdict is remembered.
    pub cache_ttl_secs: u64,
}

impl Default for ContentSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            max_prefix_bytes: 64 * 1024,
            max_text_bytes: 12 * 1024,
            hold_bytes: 32 * 1024,
            hold_ms: 150,
            cache_entries: 10_000,
            cache_ttl_secs: 3600,
        }
    }
}

impl ProxySettings {
    /// Defaults, with files under `data_dir`.
    pub fn defaults(data_dir: &Path) -> Self {
        Self {
            listen: vec!["127.0.0.1:3128".parse().expect("literal")],
            auth: ProxyAuth::Off,
            realm: "Haven web filter".into(),
            accounts: data_dir.join("proxy-accounts"),
            default_group: None,
            inspect: false,
            ca_dir: data_dir.join("ca"),
            inspect_exempt: DEFAULT_EXEMPT.iter().map(|s| (*s).to_string()).collect(),
            max_header_bytes: 32 * 1024,
            idle_timeout_s: 60,
            origin_timeout_s: 30,
            log: true,
            connect_ports: vec![443],
            hosts: std::collections::BTreeMap::new(),
            origin_roots: None,
            allow_internal: Vec::new(),
            haven_listeners: Vec::new(),
            header_timeout_s: 30,
            body_timeout_s: 60,
            tunnel_idle_timeout_s: 300,
            max_connections: 10_000,
            probe_key: None,
            content: ContentSettings::default(),
        }
    }
}

/// Whether an address is inside a network rather than on the public internet:
/// loopback, unspecified, private (RFC 1918, IPv6 ULA), shared (CGNAT
/// 100.64/10), link-local, multicast, broadcast and reserved ranges, and the
/// IPv6 forms that carry one of those (IPv4-mapped, IPv4-compatible, NAT64,
/// 6to4). The proxy refuses them unless `[proxy] allow_internal` covers them.
pub fn is_internal_address(ip: std::net::IpAddr) -> bool {
    use std::net::{IpAddr, Ipv4Addr};
    fn v4(ip: Ipv4Addr) -> bool {
        let [a, b, c, _] = ip.octets();
        a == 0                                     // "this network", unspecified
            || a == 10                             // RFC 1918
            || (a == 100 && (64..128).contains(&b)) // CGNAT
            || a == 127                            // loopback
            || (a == 169 && b == 254)              // link-local
            || (a == 172 && (16..32).contains(&b)) // RFC 1918
            || (a == 192 && b == 0 && c == 0)      // IETF protocol assignments
            || (a == 192 && b == 168)              // RFC 1918
            || (a == 198 && (18..20).contains(&b)) // benchmarking
            || a >= 224 // multicast, reserved, broadcast
    }
    match ip {
        IpAddr::V4(ip) => v4(ip),
        IpAddr::V6(ip) => {
            let s = ip.segments();
            let embedded = |hi: usize| Ipv4Addr::new((s[hi] >> 8) as u8, s[hi] as u8, (s[hi + 1] >> 8) as u8, s[hi + 1] as u8);
            if let Some(mapped) = ip.to_ipv4_mapped() {
                return v4(mapped);
            }
            ip.is_unspecified()
                || ip.is_loopback()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
                || (s[0] & 0xff00) == 0xff00 // multicast
                || (s[..6] == [0; 6] && v4(embedded(6))) // IPv4-compatible
                || (s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] && v4(embedded(6))) // NAT64
                || (s[0] == 0x2002 && v4(embedded(1))) // 6to4
        }
    }
}

/// Never inspected unless the config says otherwise: banking, health and
/// government services, and apps that pin their certificates.
pub const DEFAULT_EXEMPT: &[&str] = &[
    "nhs.uk",
    "gov.uk",
    "hmrc.gov.uk",
    "lloydsbank.co.uk",
    "barclays.co.uk",
    "hsbc.co.uk",
    "natwest.com",
    "santander.co.uk",
    "nationwide.co.uk",
    "monzo.com",
    "starlingbank.com",
    "paypal.com",
    "childline.org.uk",
    "apple.com",
    "icloud.com",
    "mzstatic.com",
    "windowsupdate.com",
    "update.microsoft.com",
    "login.microsoftonline.com",
    "accounts.google.com",
];

impl Config {
    /// The folder of the record's key: `[data] key_dir`, else beside the data
    /// folder (`haven-data` → `haven-data-keys`), so a copy of the data folder
    /// alone opens nothing.
    pub fn key_dir(&self) -> PathBuf {
        self.key_dir.clone().unwrap_or_else(|| match (self.data_dir.parent(), self.data_dir.file_name()) {
            (Some(parent), Some(name)) => parent.join(format!("{}-keys", name.to_string_lossy())),
            _ => self.data_dir.join("keys"),
        })
    }

    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            problems: vec![Problem {
                file: path.to_path_buf(),
                line: 0,
                message: format!("cannot read the config file: {e}"),
                hint: Some("pass the path of a haven.toml with --config (see examples/haven.toml)".into()),
            }],
        })?;
        Self::parse(&text, path)
    }

    /// Validates config text; `path` names it in errors and anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        check::build(text, path)
    }
}

#[cfg(test)]
mod tests;
