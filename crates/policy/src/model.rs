//! The trust as the policy engine sees it: schools, groups, people, devices,
//! policies and the time-bound rules on top of them. Plain data, built and
//! validated by `haven-config` (or a test), then read by [`crate::decide`].

use std::collections::HashMap;
use std::net::IpAddr;

use haven_url::{CanonicalUrl, host_suffixes, segment_prefixes};
use ipnet::IpNet;
use jiff::Timestamp;

use crate::lookup::{Request, Specificity};
use crate::safesearch::SafeSearch;
use crate::schedule::{Calendar, Period};
use crate::taxonomy::CategorySet;

/// Allow or block, for entries and defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Let it through.
    Allow,
    /// Stop it.
    Block,
}

/// What a rule blocks: everything, or some categories.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Every site, listed or not (`"*"` in config).
    All,
    /// Sites in these categories.
    Categories(CategorySet),
}

impl Target {
    /// Whether a request with `categories` is covered.
    pub fn covers(self, categories: CategorySet) -> bool {
        match self {
            Self::All => true,
            Self::Categories(c) => !c.intersection(categories).is_empty(),
        }
    }
}

/// A school of the trust.
#[derive(Debug, Clone)]
pub struct School {
    /// Short identifier (`oakfield-primary`).
    pub id: String,
    /// Name shown to people.
    pub name: String,
    /// Terms, closures and working hours.
    pub calendar: Calendar,
}

/// A group of users or devices sharing one policy.
#[derive(Debug, Clone)]
pub struct Group {
    /// Short identifier (`secondary`).
    pub id: String,
    /// Name shown to people (`Secondary pupils`).
    pub name: String,
    /// Index into [`PolicySet::policies`].
    pub policy: usize,
}

/// A person known to Haven.
#[derive(Debug, Clone)]
pub struct User {
    /// Login name (as the directory or MIS knows it).
    pub id: String,
    /// Index into [`PolicySet::groups`].
    pub group: usize,
    /// Index into [`PolicySet::schools`], if the user belongs to one school.
    pub school: Option<usize>,
    /// Indices into [`PolicySet::classes`]: the teaching groups the MIS puts
    /// the person in (`10GH`, `10MA1`).
    pub classes: Vec<usize>,
}

/// A teaching group from the MIS (`10GH`): what a teacher's lesson unblock
/// is for, narrower than a year group.
#[derive(Debug, Clone)]
pub struct Class {
    /// The class code as the MIS writes it.
    pub id: String,
    /// Index into [`PolicySet::schools`]: class codes repeat across schools.
    pub school: Option<usize>,
}

/// A network range: devices on it are filtered as a school and group.
#[derive(Debug, Clone)]
pub struct Network {
    /// The address range.
    pub net: IpNet,
    /// Index into [`PolicySet::schools`].
    pub school: usize,
    /// Index into [`PolicySet::groups`].
    pub group: usize,
}

/// A known device (a school laptop, an iPad cart).
#[derive(Debug, Clone)]
pub struct Device {
    /// Device identifier (asset tag, MDM id, DoH token name).
    pub id: String,
    /// Index into [`PolicySet::schools`].
    pub school: usize,
    /// Index into [`PolicySet::groups`] when nobody is signed in.
    pub group: usize,
    /// Index into [`PolicySet::users`] of the device's owner, if it has one.
    pub owner: Option<usize>,
}

/// Explicit allow and block entries (domains and URL prefixes) written by staff.
#[derive(Debug, Clone, Default)]
pub struct EntryTable {
    hosts: HashMap<String, Verdict>,
    urls: HashMap<String, Verdict>,
}

/// An entry of an [`EntryTable`] that matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryMatch {
    /// Allow or block.
    pub verdict: Verdict,
    /// The entry as written (`youtube.com`, `example.com/games`).
    pub entry: String,
    /// How specific it is.
    pub specificity: Specificity,
}

impl EntryTable {
    /// Adds an entry: a host (`example.com`, covering its subdomains) or a URL
    /// prefix (`example.com/games`). The entry must already be canonical
    /// (see [`haven_url::canonical_host`]); returns the previous verdict if
    /// the same entry was already present.
    pub fn insert(&mut self, entry: &str, verdict: Verdict) -> Option<Verdict> {
        match entry.split_once('/') {
            Some((host, path)) if !path.trim_end_matches('/').is_empty() || path.contains('?') => {
                let key = format!("{host}/{}", path.trim_end_matches('/'));
                self.urls.insert(key, verdict)
            }
            Some((host, _)) => self.hosts.insert(host.to_string(), verdict),
            None => self.hosts.insert(entry.to_string(), verdict),
        }
    }

    /// Every entry with its verdict, sorted (for pages that show a policy).
    pub fn entries(&self) -> Vec<(&str, Verdict)> {
        let mut v: Vec<(&str, Verdict)> = self.hosts.iter().chain(self.urls.iter()).map(|(e, v)| (e.as_str(), *v)).collect();
        v.sort_by_key(|(e, _)| *e);
        v
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.hosts.len() + self.urls.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most specific entry matching the request, block winning a tie.
    pub fn best_match(&self, request: &Request) -> Option<EntryMatch> {
        if self.is_empty() {
            return None;
        }
        let mut best: Option<EntryMatch> = None;
        let mut consider = |verdict: Verdict, entry: &str, specificity: Specificity| {
            let better = match &best {
                None => true,
                Some(b) => specificity > b.specificity || (specificity == b.specificity && verdict == Verdict::Block),
            };
            if better {
                best = Some(EntryMatch { verdict, entry: entry.to_string(), specificity });
            }
        };
        let host = request.host();
        for suffix in host_suffixes(host) {
            if let Some(v) = self.hosts.get(suffix) {
                consider(*v, suffix, Specificity::of(suffix, "/"));
            }
        }
        if let (Some(url), false) = (request.url(), self.urls.is_empty()) {
            let mut key = String::new();
            for suffix in host_suffixes(host) {
                for_each_url_key(url, suffix, &mut key, |k, path_len| {
                    if let Some(v) = self.urls.get(k) {
                        let s = Specificity { path_len, ..Specificity::of(suffix, "/") };
                        consider(*v, k, s);
                    }
                });
            }
        }
        best
    }
}

/// Calls `f` with every `host/path-prefix` key (and `host/path?query`) under
/// which a URL entry for `url` on `host` could be stored, and the path length.
pub fn for_each_url_key(url: &CanonicalUrl, host: &str, key: &mut String, mut f: impl FnMut(&str, u16)) {
    for prefix in segment_prefixes(&url.path) {
        key.clear();
        key.push_str(host);
        key.push_str(prefix);
        f(key, prefix.len().min(u16::MAX as usize) as u16);
    }
    if let Some(q) = &url.query {
        key.clear();
        key.push_str(host);
        key.push_str(url.path.trim_end_matches('/'));
        key.push('?');
        key.push_str(q);
        f(key, (url.path.len() + 1 + q.len()).min(u16::MAX as usize) as u16);
    }
}

/// What a group's web access is.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Short identifier (`secondary`).
    pub id: String,
    /// Categories blocked.
    pub block: CategorySet,
    /// Categories allowed even when a blocked category also lists the site at
    /// the same or lower specificity (`sex-education` over `adult`).
    pub allow: CategorySet,
    /// Staff-written allow and block entries.
    pub entries: EntryTable,
    /// Safe-search settings.
    pub safe_search: SafeSearch,
    /// What happens to sites no list names.
    pub uncategorised: Verdict,
}

/// A per-school change to a group's policy (or every group's, if `group` is `None`).
#[derive(Debug, Clone)]
pub struct Override {
    /// Index into [`PolicySet::schools`].
    pub school: usize,
    /// Index into [`PolicySet::groups`], or every group.
    pub group: Option<usize>,
    /// Categories blocked in addition.
    pub block: CategorySet,
    /// Categories no longer blocked.
    pub unblock: CategorySet,
    /// Entries added; they win over the base policy's entries of the same specificity.
    pub entries: EntryTable,
    /// Safe-search settings replacing the base policy's.
    pub safe_search: Option<SafeSearch>,
}

/// A time window that blocks for some groups (`apps off 20:00–07:30`).
#[derive(Debug, Clone)]
pub struct Window {
    /// Name shown in explanations (`primary-evenings`).
    pub name: String,
    /// Indices into [`PolicySet::groups`]; empty means every group.
    pub groups: Vec<usize>,
    /// Indices into [`PolicySet::schools`]; empty means every school.
    pub schools: Vec<usize>,
    /// When it applies.
    pub period: Period,
    /// What it blocks.
    pub block: Target,
    /// Categories still allowed while the window is on (`education`).
    pub except: CategorySet,
}

/// Who an allowance or restriction is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// One user (index into [`PolicySet::users`]).
    User(usize),
    /// A group (index into [`PolicySet::groups`]), optionally at one school.
    Group(usize, Option<usize>),
    /// A teaching group (index into [`PolicySet::classes`]): its members,
    /// whatever device they use.
    Class(usize),
    /// Everyone at one school (index into [`PolicySet::schools`]).
    School(usize),
}

impl Scope {
    fn covers(self, set: &PolicySet, subject: &Subject) -> bool {
        match self {
            Self::User(u) => subject.user == Some(u),
            Self::Group(g, school) => subject.group == g && school.is_none_or(|s| subject.school == Some(s)),
            Self::Class(c) => subject.user.and_then(|u| set.users.get(u)).is_some_and(|u| u.classes.contains(&c)),
            Self::School(s) => subject.school == Some(s),
        }
    }
}

/// A limit a DSL places on one person or group (`no web browsing for this pupil`).
#[derive(Debug, Clone)]
pub struct Restriction {
    /// Identifier for logs and explanations.
    pub id: String,
    /// Who it restricts.
    pub scope: Scope,
    /// What it blocks.
    pub block: Target,
    /// Sites it blocks besides `block` (a change that blocks one site).
    pub entries: EntryTable,
    /// Starts at (inclusive); `None` = already in force.
    pub from: Option<Timestamp>,
    /// Lapses at (exclusive); `None` = until removed.
    pub until: Option<Timestamp>,
    /// Why, in the DSL's words (shown to staff, never to the pupil).
    pub reason: String,
}

/// A temporary unblock (a teacher's lesson, a project week).
#[derive(Debug, Clone)]
pub struct Allowance {
    /// Identifier for logs and explanations.
    pub id: String,
    /// Who it is for.
    pub scope: Scope,
    /// Sites allowed.
    pub entries: EntryTable,
    /// Categories allowed.
    pub categories: CategorySet,
    /// Starts at (inclusive).
    pub from: Option<Timestamp>,
    /// Lapses at (exclusive). Allowances always expire.
    pub until: Timestamp,
    /// Why, and who asked.
    pub reason: String,
}

fn in_force(from: Option<Timestamp>, until: Option<Timestamp>, at: Timestamp) -> bool {
    from.is_none_or(|f| f <= at) && until.is_none_or(|u| at < u)
}

impl Restriction {
    /// Whether it is in force for `subject` at `at`.
    pub fn applies(&self, set: &PolicySet, subject: &Subject, at: Timestamp) -> bool {
        self.scope.covers(set, subject) && in_force(self.from, self.until, at)
    }
}

impl Allowance {
    /// Whether it is in force for `subject` at `at`.
    pub fn applies(&self, set: &PolicySet, subject: &Subject, at: Timestamp) -> bool {
        self.scope.covers(set, subject) && in_force(self.from, Some(self.until), at)
    }
}

/// The person or device a decision is for, resolved to indices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subject {
    /// Index into [`PolicySet::users`] when the person is known.
    pub user: Option<usize>,
    /// Index into [`PolicySet::groups`].
    pub group: usize,
    /// Index into [`PolicySet::schools`] when known.
    pub school: Option<usize>,
}

/// Everything the policy engine knows about a trust.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    /// The trust's name.
    pub trust: String,
    /// Schools.
    pub schools: Vec<School>,
    /// Groups.
    pub groups: Vec<Group>,
    /// Policies.
    pub policies: Vec<Policy>,
    /// Per-school overrides.
    pub overrides: Vec<Override>,
    /// Known users.
    pub users: Vec<User>,
    /// Teaching groups from the MIS.
    pub classes: Vec<Class>,
    /// Network ranges, most specific first after [`PolicySet::index`].
    pub networks: Vec<Network>,
    /// Known devices.
    pub devices: Vec<Device>,
    /// Time windows.
    pub windows: Vec<Window>,
    /// Restrictions on people or groups.
    pub restrictions: Vec<Restriction>,
    /// Temporary allowances.
    pub allowances: Vec<Allowance>,
    /// When the hostname model may decide for sites no list names.
    pub host_model: HostModelSettings,
    pub(crate) user_index: HashMap<String, usize>,
    pub(crate) device_index: HashMap<String, usize>,
}

/// When the hostname model may decide for a site no list names: only for
/// the categories given a threshold (a category where a wrong block costs
/// more than a miss, such as self-harm with its support sites, gets none),
/// and only at schools where it is switched on.
#[derive(Debug, Clone, Default)]
pub struct HostModelSettings {
    /// Whether the trust uses the model at all.
    pub enabled: bool,
    /// The confidence at or above which the model's category stands.
    pub thresholds: Vec<(crate::taxonomy::Category, f32)>,
    /// Indices into [`PolicySet::schools`] of schools that switched it off.
    pub off_at: Vec<usize>,
}

impl HostModelSettings {
    /// The threshold for `category`, if the model may decide it at all.
    pub fn threshold(&self, category: crate::taxonomy::Category) -> Option<f32> {
        self.thresholds.iter().find(|(c, _)| *c == category).map(|(_, t)| *t)
    }

    /// Whether the model is asked for `who`.
    pub fn on_for(&self, who: &Subject) -> bool {
        self.enabled && !who.school.is_some_and(|s| self.off_at.contains(&s))
    }
}

impl PolicySet {
    /// A trust of one school and one group that every address belongs to,
    /// under one policy: what `--blocklist` mode and the fuzzers run.
    pub fn everyone(trust: &str, policy: &str, block: CategorySet, safe_search: SafeSearch, uncategorised: Verdict) -> Self {
        let mut set = Self { trust: trust.into(), ..Self::default() };
        set.schools.push(School { id: "local".into(), name: "this network".into(), calendar: Calendar::london() });
        set.policies.push(Policy { id: policy.into(), block, allow: CategorySet::EMPTY, entries: Default::default(), safe_search, uncategorised });
        set.groups.push(Group { id: "everyone".into(), name: "Everyone".into(), policy: 0 });
        for any in [IpAddr::from(std::net::Ipv4Addr::UNSPECIFIED), IpAddr::from(std::net::Ipv6Addr::UNSPECIFIED)] {
            if let Ok(net) = IpNet::new(any, 0) {
                set.networks.push(Network { net, school: 0, group: 0 });
            }
        }
        set.index();
        set
    }

    /// Builds the look-up indexes; call once after filling the fields.
    pub fn index(&mut self) {
        self.user_index = self.users.iter().enumerate().map(|(i, u)| (u.id.to_lowercase(), i)).collect();
        self.device_index = self.devices.iter().enumerate().map(|(i, d)| (d.id.clone(), i)).collect();
        self.networks.sort_by_key(|n| std::cmp::Reverse(n.net.prefix_len()));
    }

    /// A group's index by id.
    pub fn group(&self, id: &str) -> Option<usize> {
        self.groups.iter().position(|g| g.id == id)
    }

    /// A school's index by id.
    pub fn school(&self, id: &str) -> Option<usize> {
        self.schools.iter().position(|s| s.id == id)
    }

    /// A class's index by code at a school (case-insensitive).
    pub fn class(&self, school: usize, id: &str) -> Option<usize> {
        self.classes.iter().position(|c| c.school == Some(school) && c.id.eq_ignore_ascii_case(id))
    }

    /// A user's index by login name (case-insensitive).
    pub fn user(&self, id: &str) -> Option<usize> {
        self.user_index.get(&id.to_lowercase()).copied()
    }

    /// The subject for a known user.
    pub fn subject_for_user(&self, user: usize) -> Subject {
        let u = &self.users[user];
        Subject { user: Some(user), group: u.group, school: u.school }
    }

    /// Who is behind a request, from what the network tells: the signed-in user
    /// if known, else the device record, else the network range.
    pub fn identify(&self, user: Option<&str>, device: Option<&str>, ip: Option<IpAddr>) -> Option<Subject> {
        let device = device.and_then(|d| self.device_index.get(d)).map(|&i| &self.devices[i]);
        let network = ip.and_then(|ip| self.networks.iter().find(|n| n.net.contains(&ip)));
        let school = device.map(|d| d.school).or(network.map(|n| n.school));
        if let Some(u) = user.and_then(|u| self.user(u)).or(device.and_then(|d| d.owner)) {
            let mut s = self.subject_for_user(u);
            s.school = s.school.or(school);
            return Some(s);
        }
        if let Some(d) = device {
            return Some(Subject { user: None, group: d.group, school: Some(d.school) });
        }
        network.map(|n| Subject { user: None, group: n.group, school: Some(n.school) })
    }

    /// The policy in force for a subject, with its school's overrides applied.
    pub fn effective(&self, subject: &Subject) -> Effective<'_> {
        let group = &self.groups[subject.group];
        let base = &self.policies[group.policy];
        let mut eff = Effective { policy: base, block: base.block, allow: base.allow, safe_search: base.safe_search, overrides: Vec::new() };
        if let Some(school) = subject.school {
            for o in self.overrides.iter().filter(|o| o.school == school && o.group.is_none_or(|g| g == subject.group)) {
                eff.block = eff.block.union(o.block).difference(o.unblock);
                if let Some(s) = o.safe_search {
                    eff.safe_search = s;
                }
                eff.overrides.push(o);
            }
        }
        eff
    }

    /// The calendar for a subject's school (a default London calendar if unknown).
    pub fn calendar(&self, subject: &Subject) -> Option<&Calendar> {
        subject.school.map(|s| &self.schools[s].calendar)
    }
}

/// A group's policy with one school's overrides applied.
#[derive(Debug, Clone)]
pub struct Effective<'a> {
    /// The base policy.
    pub policy: &'a Policy,
    /// Categories blocked after overrides.
    pub block: CategorySet,
    /// Categories allowed over blocked ones.
    pub allow: CategorySet,
    /// Safe-search settings after overrides.
    pub safe_search: SafeSearch,
    /// The overrides that applied, in order.
    pub overrides: Vec<&'a Override>,
}
