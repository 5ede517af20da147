//! Turning the raw file into a validated [`Config`], collecting every problem.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use haven_lists::{Format, SourceSpec};
use haven_policy::model::{Allowance, Class, Device, EntryTable, Group, Network, Override, Policy, Restriction, School, Scope, User, Verdict, Window};
use haven_policy::safesearch::{SafeSearch, YoutubeMode};
use haven_policy::schedule::{Calendar, Days, Period, Season, parse_instant};
use haven_policy::{Category, CategorySet, PolicySet, Target};
use jiff::Timestamp;
use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;

use crate::errors::{Problems, closest};
use crate::raw::*;
use crate::{BlockAnswer, Config, ConfigError, DnsSettings, ProxyAuth, ProxySettings};

pub(crate) fn build(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let mut p = Problems::new(path, text);
    let raw: RawConfig = match toml::from_str(text) {
        Ok(r) => r,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let msg = e.message().to_string();
            let hint = if msg.contains("unknown field") {
                Some("check the spelling against examples/haven.toml, which documents every key".into())
            } else if msg.contains("missing field") {
                Some("add the field; examples/haven.toml shows each table's required keys".into())
            } else {
                Some("this is TOML syntax: strings need quotes, lists use [ ], tables [name] or [[name]]".into())
            };
            p.at(if span == (0..0) { 0..1 } else { span }, msg, hint);
            return Err(ConfigError { problems: p.list });
        }
    };
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut set = PolicySet::default();
    set.trust = raw.trust.clone();
    let mut b = Builder { p, warnings: Vec::new(), base, set, people: Vec::new() };
    let tz = b.timezone(raw.timezone.as_ref());
    b.schools(&raw.schools, &tz);
    b.policies(&raw.policies);
    b.groups(&raw.groups);
    b.overrides(&raw.overrides);
    b.users(&raw.users, &raw.user_imports);
    b.networks(&raw.networks);
    b.devices(&raw.devices);
    b.windows(&raw.windows);
    b.restrictions(&raw.restrictions, &tz);
    b.allowances(&raw.allowances, &tz);
    let lists = b.lists(&raw.lists);
    let feeds = crate::feeds::check(&mut b.p, &b.base, &raw.lists, &raw.feed_defaults, &tz, &lists);
    let dns = raw.dns.as_ref().map(|d| b.dns(d)).unwrap_or_default();
    let doh_tokens = b.doh_tokens(&raw.devices);
    let data_dir = b.base.join(raw.data.dir.as_deref().unwrap_or("haven-data"));
    let retention = crate::retention::check(&mut b.p, &raw.retention);
    let mut proxy = b.proxy(raw.proxy.as_ref(), &data_dir);
    let database = raw.data.database.clone();
    let key_dir = raw.data.key_dir.as_deref().map(|k| b.base.join(k));
    let mut web_listen: Vec<std::net::SocketAddr> = raw.web.listen.iter().filter_map(|l| b.addr(l, "an address and port", "\"127.0.0.1:8080\"")).collect();
    if web_listen.is_empty() {
        web_listen.push(std::net::SocketAddr::from(([127, 0, 0, 1], 8080)));
    }
    // The proxy must never become a way into Haven itself (the staff web app
    // on loopback, or a loop back into the proxy).
    proxy.haven_listeners = dns
        .listen
        .iter()
        .chain(dns.doh_listen.iter())
        .chain(dns.doh_tls.iter().map(|t| &t.listen))
        .chain(web_listen.iter())
        .chain(proxy.listen.iter())
        .copied()
        .collect();
    let demo = raw.web.demo.unwrap_or(false);
    let extension = b.extension(&raw.extension, &proxy.inspect_exempt);
    let filtering_checks = b.filtering_checks(&raw.filtering_checks);
    let approvers = b.approvers(&raw.filtering.approvers);
    let lado = b.lados(&raw.safeguarding, &raw.schools);
    let alert_thresholds = b.thresholds(&raw.schools);
    let host_model = b.p.host_model(&raw.host_model, &b.base);
    b.set.host_model.enabled = host_model.enabled;
    b.set.host_model.off_at = raw.schools.iter().enumerate().filter(|(_, s)| s.host_model == Some(false)).map(|(i, _)| i).collect();
    let lexicons = b.lexicon_files(&raw.monitoring.lexicons, "[monitoring] lexicons");
    let school_lexicons = raw
        .schools
        .iter()
        .filter(|s| !s.lexicons.is_empty())
        .map(|s| (s.id.get_ref().clone(), b.lexicon_files(&s.lexicons, "the school's lexicons")))
        .collect();
    let notify = crate::NotifySettings {
        smtp: raw.notify.smtp.clone(),
        from: raw.notify.from.clone().unwrap_or_else(|| "haven@localhost".into()),
        base_url: raw.notify.base_url.clone(),
        escalate_after_mins: raw.notify.escalate_after_mins.unwrap_or(10).clamp(1, 240),
        webhook_secret: raw.notify.webhook_secret.clone(),
    };
    let index_path = raw.data.index.as_deref().map_or_else(|| data_dir.join("lists.havenidx"), |i| b.base.join(i));
    if !b.p.list.is_empty() {
        b.p.list.sort_by(|a, c| (&a.file, a.line).cmp(&(&c.file, c.line)));
        return Err(ConfigError { problems: b.p.list });
    }
    b.set.index();
    Ok(Config {
        path: path.to_path_buf(),
        policy: b.set,
        lists,
        feeds,
        data_dir,
        index_path,
        warnings: b.warnings,
        dns,
        proxy,
        doh_tokens,
        extension,
        filtering_checks,
        approvers,
        lado,
        database,
        key_dir,
        web_listen,
        demo,
        notify,
        alert_thresholds,
        lexicons,
        school_lexicons,
        people: b.people,
        retention,
        host_model,
    })
}

struct Builder<'a> {
    p: Problems<'a>,
    warnings: Vec<String>,
    base: PathBuf,
    set: PolicySet,
    /// What staff see of each user (names, year, form), beside `set.users`.
    people: Vec<crate::PersonRecord>,
}

fn category_ids() -> Vec<&'static str> {
    Category::ALL.iter().map(|c| c.id()).collect()
}

impl Builder<'_> {
    fn timezone(&mut self, tz: Option<&S>) -> TimeZone {
        let Some(tz) = tz else { return TimeZone::get("Europe/London").unwrap_or(TimeZone::UTC) };
        TimeZone::get(tz.get_ref()).unwrap_or_else(|_| {
            self.p.at(tz.span(), format!("unknown time zone {:?}", tz.get_ref()), Some("use an IANA name such as \"Europe/London\"".into()));
            TimeZone::UTC
        })
    }

    fn unique(&mut self, kind: &str, ids: &[&S]) {
        let mut seen = HashSet::new();
        for id in ids {
            if id.get_ref().is_empty() {
                self.p.at(id.span(), format!("{kind} id is empty"), Some("give it a short id such as \"oakfield\"".into()));
            } else if !seen.insert(id.get_ref().as_str()) {
                self.p.at(id.span(), format!("{kind} {:?} is defined twice", id.get_ref()), Some("ids must be unique".into()));
            }
        }
    }

    fn find(&mut self, kind: &str, id: &S, known: &[&str]) -> Option<usize> {
        let found = known.iter().position(|k| *k == id.get_ref());
        if found.is_none() {
            let hint = match closest(id.get_ref(), known.iter().copied()) {
                Some(c) => format!("did you mean {c:?}?"),
                None => format!("known {kind}s: {}", known.join(", ")),
            };
            self.p.at(id.span(), format!("unknown {kind} {:?}", id.get_ref()), Some(hint));
        }
        found
    }

    /// The indices of a person's teaching groups, made on first mention:
    /// the MIS is the list of classes, so there is nothing to check them
    /// against.
    fn classes(&mut self, school: Option<usize>, ids: &[&str]) -> Vec<usize> {
        ids.iter()
            .map(|id| match self.set.classes.iter().position(|c| c.school == school && c.id.eq_ignore_ascii_case(id)) {
                Some(i) => i,
                None => {
                    self.set.classes.push(Class { id: (*id).to_string(), school });
                    self.set.classes.len() - 1
                }
            })
            .collect()
    }

    fn school_ids(&self) -> Vec<String> {
        self.set.schools.iter().map(|s| s.id.clone()).collect()
    }

    fn school(&mut self, id: &S) -> Option<usize> {
        let ids = self.school_ids();
        self.find("school", id, &ids.iter().map(String::as_str).collect::<Vec<_>>())
    }

    fn group(&mut self, id: &S) -> Option<usize> {
        let ids: Vec<String> = self.set.groups.iter().map(|g| g.id.clone()).collect();
        self.find("group", id, &ids.iter().map(String::as_str).collect::<Vec<_>>())
    }

    fn user(&mut self, id: &S) -> Option<usize> {
        let found = self.set.users.iter().position(|u| u.id.eq_ignore_ascii_case(id.get_ref()));
        if found.is_none() {
            self.p.at(id.span(), format!("unknown user {:?}", id.get_ref()), Some("add the user with [[user]] or a [[user_import]] CSV".into()));
        }
        found
    }

    fn categories(&mut self, items: &[S], allow_star: bool) -> (CategorySet, bool) {
        let mut set = CategorySet::EMPTY;
        let mut star = false;
        for c in items {
            if allow_star && c.get_ref() == "*" {
                star = true;
                continue;
            }
            match Category::from_id(c.get_ref()) {
                Some(cat) => set.insert(cat),
                None => {
                    let ids = category_ids();
                    let hint = match closest(c.get_ref(), ids.iter().copied()) {
                        Some(s) => format!("did you mean {s:?}? (`haven lists categories` lists them all)"),
                        None => "run `haven lists categories` to see Haven's categories".to_string(),
                    };
                    self.p.at(c.span(), format!("unknown category {:?}", c.get_ref()), Some(hint));
                }
            }
        }
        (set, star)
    }

    /// Illegal content (IWF, CTIRU) is blocked for everyone, always: naming it
    /// where something is allowed is a mistake to point out, not to ignore.
    fn no_illegal(&mut self, items: &[S], what: &str, key: &str) {
        for c in items {
            if let Some(cat) = Category::from_id(c.get_ref()).filter(|c| c.is_illegal()) {
                self.p.at(
                    c.span(),
                    format!("{what} {:?} ({}): Haven cannot allow illegal content", cat.id(), cat.title()),
                    Some(format!("illegal-content categories are blocked for everyone, always, and cannot be allowed: remove {:?} from `{key}`", cat.id())),
                );
            }
        }
    }

    fn target(&mut self, items: &[S]) -> Target {
        let (set, star) = self.categories(items, true);
        if star { Target::All } else { Target::Categories(set) }
    }

    fn site(&mut self, s: &S) -> Option<String> {
        match haven_policy::changes::site_entry(s.get_ref()) {
            Ok(site) => Some(site),
            Err(_) => {
                let text = s.get_ref().trim();
                self.p.at(s.span(), format!("{text:?} is not a site"), Some("write a domain (example.com) or a URL prefix (example.com/games)".into()));
                None
            }
        }
    }

    fn entries(&mut self, allow: &[S], block: &[S]) -> EntryTable {
        let mut t = EntryTable::default();
        let mut verdicts: HashMap<String, Verdict> = HashMap::new();
        for (list, verdict) in [(allow, Verdict::Allow), (block, Verdict::Block)] {
            for s in list {
                if let Some(e) = self.site(s) {
                    if let Some(prev) = verdicts.insert(e.clone(), verdict)
                        && prev != verdict
                    {
                        self.p.at(s.span(), format!("{e:?} is both allowed and blocked"), Some("keep it in allow_sites or block_sites, not both".into()));
                    }
                    t.insert(&e, verdict);
                }
            }
        }
        t
    }

    fn time(&mut self, s: &S) -> Time {
        s.get_ref().parse::<Time>().unwrap_or_else(|_| {
            self.p.at(s.span(), format!("{:?} is not a time of day", s.get_ref()), Some("write 24-hour \"HH:MM\", e.g. \"07:30\"".into()));
            Time::midnight()
        })
    }

    fn date(&mut self, s: &S) -> Date {
        s.get_ref().parse::<Date>().unwrap_or_else(|_| {
            self.p.at(s.span(), format!("{:?} is not a date", s.get_ref()), Some("write \"YYYY-MM-DD\", e.g. \"2026-09-02\"".into()));
            Date::constant(2000, 1, 1)
        })
    }

    fn instant(&mut self, s: &S, tz: &TimeZone) -> Timestamp {
        match parse_instant(s.get_ref(), tz) {
            Some(t) => t,
            None => {
                self.p.at(
                    s.span(),
                    format!("{:?} is not a date and time", s.get_ref()),
                    Some("write \"2026-12-01T15:30\" (school time) or \"2026-12-01T15:30:00Z\" (UTC)".into()),
                );
                Timestamp::UNIX_EPOCH
            }
        }
    }

    fn days(&mut self, days: Option<&Vec<S>>, default: Days) -> Days {
        let Some(days) = days else { return default };
        let mut out = Vec::new();
        for d in days {
            let w = match d.get_ref().to_ascii_lowercase().get(..3) {
                Some("mon") => Weekday::Monday,
                Some("tue") => Weekday::Tuesday,
                Some("wed") => Weekday::Wednesday,
                Some("thu") => Weekday::Thursday,
                Some("fri") => Weekday::Friday,
                Some("sat") => Weekday::Saturday,
                Some("sun") => Weekday::Sunday,
                _ => {
                    self.p.at(d.span(), format!("{:?} is not a day", d.get_ref()), Some("use mon, tue, wed, thu, fri, sat, sun".into()));
                    continue;
                }
            };
            out.push(w);
        }
        Days::of(&out)
    }

    fn schools(&mut self, raw: &[RawSchool], tz: &TimeZone) {
        self.unique("school", &raw.iter().map(|s| &s.id).collect::<Vec<_>>());
        for s in raw {
            let c = &s.calendar;
            let mut cal = Calendar::london();
            cal.tz = tz.clone();
            for (ranges, out) in [(&c.terms, &mut cal.terms), (&c.closures, &mut cal.closures)] {
                for r in ranges {
                    let start = self.date(&r.start);
                    let end = r.end.as_ref().map_or(start, |e| self.date(e));
                    if end < start {
                        self.p.at(r.start.span(), format!("range ends ({end}) before it starts ({start})"), Some("swap start and end".into()));
                    }
                    out.push((start, end));
                }
            }
            cal.working_days = self.days(c.working_days.as_ref(), Days::WEEKDAYS);
            if let Some(t) = &c.day_start {
                cal.day_start = self.time(t);
            }
            if let Some(t) = &c.day_end {
                cal.day_end = self.time(t);
            }
            self.set.schools.push(School { id: s.id.get_ref().clone(), name: s.name.clone(), calendar: cal });
        }
    }

    fn safe_search(&mut self, safe: Option<bool>, youtube: Option<&S>, base: SafeSearch) -> SafeSearch {
        let mut s = base;
        if let Some(v) = safe {
            s.search = v;
        }
        if let Some(y) = youtube {
            s.youtube = match y.get_ref().as_str() {
                "strict" => YoutubeMode::Strict,
                "moderate" => YoutubeMode::Moderate,
                "off" => YoutubeMode::Off,
                other => {
                    self.p.at(y.span(), format!("unknown YouTube mode {other:?}"), Some("use \"strict\", \"moderate\" or \"off\"".into()));
                    s.youtube
                }
            };
        }
        s
    }

    fn policies(&mut self, raw: &[RawPolicy]) {
        self.unique("policy", &raw.iter().map(|s| &s.id).collect::<Vec<_>>());
        for r in raw {
            let (block, _) = self.categories(&r.block, false);
            let (allow, _) = self.categories(&r.allow, false);
            for c in block.intersection(allow).iter() {
                let span = r.allow.iter().find(|a| a.get_ref() == c.id()).map_or(r.id.span(), |a| a.span());
                self.p.at(
                    span,
                    format!("category {c:?} is both blocked and allowed in policy {:?}", r.id.get_ref()),
                    Some("remove it from one of the two lists".into()),
                );
            }
            self.no_illegal(&r.allow, &format!("policy {:?} allows", r.id.get_ref()), "allow");
            let entries = self.entries(&r.allow_sites, &r.block_sites);
            let safe_search = self.safe_search(r.safe_search, r.youtube.as_ref(), SafeSearch::default());
            let uncategorised = match r.uncategorised.as_ref().map(|u| (u, u.get_ref().as_str())) {
                None | Some((_, "allow")) => Verdict::Allow,
                Some((_, "block")) => Verdict::Block,
                Some((u, other)) => {
                    self.p.at(u.span(), format!("uncategorised = {other:?}"), Some("use \"allow\" or \"block\"".into()));
                    Verdict::Allow
                }
            };
            self.set.policies.push(Policy { id: r.id.get_ref().clone(), block, allow, entries, safe_search, uncategorised });
        }
    }

    fn groups(&mut self, raw: &[RawGroup]) {
        self.unique("group", &raw.iter().map(|s| &s.id).collect::<Vec<_>>());
        let ids: Vec<String> = self.set.policies.iter().map(|p| p.id.clone()).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        for g in raw {
            let policy_ref = g.policy.clone().unwrap_or_else(|| g.id.clone());
            let policy = self.find("policy", &policy_ref, &ids).unwrap_or(0);
            let name = g.name.clone().unwrap_or_else(|| g.id.get_ref().clone());
            self.set.groups.push(Group { id: g.id.get_ref().clone(), name, policy });
        }
        if raw.is_empty() {
            self.p.at(0..0, "no groups are defined", Some("add [[group]] tables; see examples/haven.toml".into()));
        }
        let used: HashSet<usize> = self.set.groups.iter().map(|g| g.policy).collect();
        if raw.len() > 1 && used.len() < 2 {
            self.p.at(
                raw[0].id.span(),
                "every group uses the same policy",
                Some("the DfE filtering standard asks for differentiated filtering: give pupils and staff separate policies".into()),
            );
        }
    }

    fn overrides(&mut self, raw: &[RawOverride]) {
        for o in raw {
            let school = self.school(&o.school);
            let group = o.group.as_ref().and_then(|g| self.group(g));
            let (block, _) = self.categories(&o.block, false);
            let (unblock, _) = self.categories(&o.unblock, false);
            self.no_illegal(&o.unblock, &format!("the override for school {:?} unblocks", o.school.get_ref()), "unblock");
            let entries = self.entries(&o.allow_sites, &o.block_sites);
            let base = group.map_or_else(SafeSearch::default, |g| self.set.policies[self.set.groups[g].policy].safe_search);
            let safe_search = (o.safe_search.is_some() || o.youtube.is_some()).then(|| self.safe_search(o.safe_search, o.youtube.as_ref(), base));
            if let Some(school) = school {
                self.set.overrides.push(Override { school, group, block, unblock, entries, safe_search });
            }
        }
    }

    fn users(&mut self, raw: &[RawUser], imports: &[RawUserImport]) {
        let mut seen: HashMap<String, String> = HashMap::new();
        for u in raw {
            let group = self.group(&u.group);
            let school = u.school.as_ref().and_then(|s| self.school(s));
            if let Some(prev) = seen.insert(u.id.get_ref().to_lowercase(), format!("line {}", self.p.line_of(u.id.span().start))) {
                self.p.at(u.id.span(), format!("user {:?} is defined twice (first at {prev})", u.id.get_ref()), None);
            }
            let staff = self.staff(u.kind.as_ref(), group);
            if let Some(group) = group {
                let names = u.classes.iter().map(|c| c.get_ref().as_str()).collect::<Vec<_>>();
                let classes = self.classes(school, &names);
                self.people.push(crate::PersonRecord {
                    login: u.id.get_ref().clone(),
                    school: school.map(|s| self.set.schools[s].id.clone()),
                    name: u.name.as_ref().map(|n| n.get_ref().trim().to_string()).filter(|n| !n.is_empty()),
                    year: u.year.as_ref().map(|y| y.get_ref().clone()),
                    form: u.form.as_ref().map(|f| f.get_ref().clone()),
                    classes: names.iter().map(ToString::to_string).collect(),
                    staff,
                });
                self.set.users.push(User { id: u.id.get_ref().clone(), group, school, classes });
            }
        }
        for imp in imports {
            self.import_users(imp, &mut seen);
        }
    }

    fn import_users(&mut self, imp: &RawUserImport, seen: &mut HashMap<String, String>) {
        let path = self.base.join(imp.path.get_ref());
        let mut reader = match csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).from_path(&path) {
            Ok(r) => r,
            Err(e) => {
                self.p.at(imp.path.span(), format!("cannot read user CSV {}: {e}", path.display()), Some("the path is relative to the config file".into()));
                return;
            }
        };
        let headers = match reader.headers() {
            Ok(h) => h.clone(),
            Err(e) => {
                self.p.in_file(&path, 1, format!("cannot read the header row: {e}"), None);
                return;
            }
        };
        let column = |b: &mut Self, name: &S| -> Option<usize> {
            let found = headers.iter().position(|h| h.eq_ignore_ascii_case(name.get_ref()));
            if found.is_none() {
                b.p.at(
                    name.span(),
                    format!("{} has no column {:?}", path.display(), name.get_ref()),
                    Some(format!("its columns are: {}", headers.iter().collect::<Vec<_>>().join(", "))),
                );
            }
            found
        };
        let user_col = column(self, &imp.user_column);
        let group_col = column(self, &imp.group_column);
        let school_col = imp.school_column.as_ref().and_then(|c| column(self, c));
        let class_col = imp.class_column.as_ref().and_then(|c| column(self, c));
        let name_cols: Vec<Option<usize>> = imp.name_columns.iter().map(|c| column(self, c)).collect();
        let year_col = imp.year_column.as_ref().and_then(|c| column(self, c));
        let form_col = imp.form_column.as_ref().and_then(|c| column(self, c));
        let import_kind = imp.kind.as_ref();
        let fixed_school = imp.school.as_ref().and_then(|s| self.school(s));
        let default_group = imp.default_group.as_ref().and_then(|g| self.group(g));
        let mut group_map: HashMap<String, Option<usize>> = HashMap::new();
        for (value, g) in &imp.groups {
            let idx = self.group(g);
            group_map.insert(value.to_lowercase(), idx);
        }
        let (Some(user_col), Some(group_col)) = (user_col, group_col) else { return };
        let group_ids: Vec<String> = self.set.groups.iter().map(|g| g.id.clone()).collect();
        let mut unmapped: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, record) in reader.records().enumerate() {
            let line = i + 2;
            let record = match record {
                Ok(r) => r,
                Err(e) => {
                    self.p.in_file(&path, line, format!("unreadable row: {e}"), None);
                    continue;
                }
            };
            let user = record.get(user_col).unwrap_or_default();
            if user.is_empty() {
                self.p.in_file(&path, line, "the user column is empty", Some("remove the row or fill in the login name".into()));
                continue;
            }
            let value = record.get(group_col).unwrap_or_default();
            let group = match group_map.get(&value.to_lowercase()) {
                Some(g) => *g,
                None => match group_ids.iter().position(|g| g == value) {
                    Some(g) => Some(g),
                    None if default_group.is_some() => default_group,
                    None => {
                        unmapped.entry(value.to_string()).or_default().push(line);
                        continue;
                    }
                },
            };
            let school = match (school_col, fixed_school) {
                (Some(c), _) => {
                    let s = record.get(c).unwrap_or_default();
                    let found = self.set.schools.iter().position(|x| x.id == s);
                    if found.is_none() {
                        self.p.in_file(&path, line, format!("unknown school {s:?}"), Some(format!("known schools: {}", self.school_ids().join(", "))));
                    }
                    found
                }
                (None, s) => s,
            };
            if let Some(prev) = seen.insert(user.to_lowercase(), format!("{}:{line}", path.display())) {
                self.p.in_file(&path, line, format!("user {user:?} is defined twice (also at {prev})"), None);
                continue;
            }
            if let Some(group) = group {
                let listed = class_col.and_then(|c| record.get(c)).unwrap_or_default();
                let names = listed.split([';', ',', ' ']).filter(|c| !c.is_empty()).collect::<Vec<_>>();
                let classes = self.classes(school, &names);
                let cell = |c: Option<usize>| c.and_then(|c| record.get(c)).map(str::trim).filter(|v| !v.is_empty()).map(str::to_string);
                let name = name_cols.iter().filter_map(|c| cell(*c)).collect::<Vec<_>>().join(" ");
                let staff = self.staff(import_kind, Some(group));
                self.people.push(crate::PersonRecord {
                    login: user.to_string(),
                    school: school.map(|s| self.set.schools[s].id.clone()),
                    name: Some(name).filter(|n| !n.is_empty()),
                    year: cell(year_col),
                    form: cell(form_col),
                    classes: names.iter().map(ToString::to_string).collect(),
                    staff,
                });
                self.set.users.push(User { id: user.to_string(), group, school, classes });
            }
        }
        for (value, lines) in unmapped {
            let shown: Vec<String> = lines.iter().take(5).map(ToString::to_string).collect();
            let more = if lines.len() > 5 { format!(" and {} more", lines.len() - 5) } else { String::new() };
            self.p.in_file(
                &path,
                lines[0],
                format!("group value {value:?} (lines {}{more}) is not mapped to a group", shown.join(", ")),
                Some(format!("add \"{value}\" = \"<group>\" to the `groups` table of this [[user_import]], or set default_group")),
            );
        }
    }

    /// Whether a person is staff: `kind` when given (checked), else whether
    /// their Haven group is the one called `staff`.
    fn staff(&mut self, kind: Option<&S>, group: Option<usize>) -> bool {
        match kind.map(|k| k.get_ref().as_str()) {
            Some("staff") => true,
            Some("pupil") => false,
            Some(other) => {
                let span = kind.map(|k| k.span()).unwrap_or_default();
                self.p.at(span, format!("kind {other:?} is neither \"pupil\" nor \"staff\""), Some("write kind = \"pupil\" or kind = \"staff\"".into()));
                false
            }
            None => group.and_then(|g| self.set.groups.get(g)).is_some_and(|g| g.id == "staff"),
        }
    }

    fn networks(&mut self, raw: &[RawNetwork]) {
        for n in raw {
            let net = n.cidr.get_ref().parse::<ipnet::IpNet>().or_else(|_| n.cidr.get_ref().parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
            let school = self.school(&n.school);
            let group = self.group(&n.group);
            match (net, school, group) {
                (Ok(net), Some(school), Some(group)) => self.set.networks.push(Network { net, school, group }),
                (Err(_), ..) => self.p.at(
                    n.cidr.span(),
                    format!("{:?} is not an address range", n.cidr.get_ref()),
                    Some("write a CIDR range such as \"10.20.0.0/16\" or \"2001:db8::/48\"".into()),
                ),
                _ => {}
            }
        }
    }

    fn devices(&mut self, raw: &[RawDevice]) {
        self.unique("device", &raw.iter().map(|s| &s.id).collect::<Vec<_>>());
        for d in raw {
            let school = self.school(&d.school);
            let group = self.group(&d.group);
            let owner = d.owner.as_ref().and_then(|o| self.user(o));
            if let (Some(school), Some(group)) = (school, group) {
                self.set.devices.push(Device { id: d.id.get_ref().clone(), school, group, owner });
            }
        }
    }

    fn windows(&mut self, raw: &[RawWindow]) {
        self.unique("window", &raw.iter().map(|s| &s.name).collect::<Vec<_>>());
        for w in raw {
            let groups = w.groups.iter().filter_map(|g| self.group(g)).collect();
            let schools = w.schools.iter().filter_map(|s| self.school(s)).collect();
            let from = self.time(&w.from);
            let to = self.time(&w.to);
            if from == to {
                self.p.at(w.from.span(), "the window starts and ends at the same time", Some("use from = \"00:00\", to = \"23:59\" for all day".into()));
            }
            let season = match w.season.as_ref().map(|s| (s, s.get_ref().as_str())) {
                None | Some((_, "always")) => Season::Always,
                Some((_, "term")) => Season::Term,
                Some((_, "holiday" | "holidays")) => Season::Holiday,
                Some((s, other)) => {
                    self.p.at(s.span(), format!("season = {other:?}"), Some("use \"term\", \"holiday\" or \"always\"".into()));
                    Season::Always
                }
            };
            let days = self.days(w.days.as_ref(), Days::ALL);
            let block = self.target(&w.block);
            let (except, _) = self.categories(&w.except, false);
            self.no_illegal(&w.except, &format!("window {:?} exempts", w.name.get_ref()), "except");
            self.set.windows.push(Window { name: w.name.get_ref().clone(), groups, schools, period: Period { from, to, days, season }, block, except });
        }
    }

    fn scope(&mut self, what: &str, id: &S, user: Option<&S>, group: Option<&S>, class: Option<&S>, school: Option<&S>) -> Option<Scope> {
        match (user, group, class) {
            (Some(u), None, None) => self.user(u).map(Scope::User),
            (None, Some(g), None) => {
                let g = self.group(g)?;
                let s = match school {
                    Some(s) => Some(self.school(s)?),
                    None => None,
                };
                Some(Scope::Group(g, s))
            }
            (None, None, Some(c)) => {
                let Some(school) = school else {
                    self.p.at(c.span(), format!("{what} {:?} is for a class: say which `school` it is at", id.get_ref()), None);
                    return None;
                };
                let s = self.school(school)?;
                match self.set.class(s, c.get_ref()) {
                    Some(i) => Some(Scope::Class(i)),
                    None => {
                        self.p.at(
                            c.span(),
                            format!("no class {:?} at {} in the users or the MIS import", c.get_ref(), school.get_ref()),
                            Some("classes come from `classes` of [[user]] or the `class_column` of a [[user_import]]".into()),
                        );
                        None
                    }
                }
            }
            _ => {
                self.p.at(id.span(), format!("{what} {:?} needs exactly one of `user`, `group` or `class`", id.get_ref()), None);
                None
            }
        }
    }

    fn restrictions(&mut self, raw: &[RawRestriction], tz: &TimeZone) {
        self.unique("restriction", &raw.iter().map(|s| &s.id).collect::<Vec<_>>());
        for r in raw {
            let scope = self.scope("restriction", &r.id, r.user.as_ref(), r.group.as_ref(), r.class.as_ref(), r.school.as_ref());
            let block = self.target(&r.block);
            let from = r.from.as_ref().map(|f| self.instant(f, tz));
            let until = r.until.as_ref().map(|f| self.instant(f, tz));
            if r.reason.get_ref().trim().is_empty() {
                self.p.at(r.reason.span(), "a restriction needs a reason", Some("say why, for the safeguarding record".into()));
            }
            if let Some(scope) = scope {
                self.set.restrictions.push(Restriction {
                    id: r.id.get_ref().clone(),
                    scope,
                    block,
                    entries: Default::default(),
                    from,
                    until,
                    reason: r.reason.get_ref().clone(),
                });
            }
        }
    }

    fn allowances(&mut self, raw: &[RawAllowance], tz: &TimeZone) {
        self.unique("allowance", &raw.iter().map(|s| &s.id).collect::<Vec<_>>());
        for a in raw {
            let scope = self.scope("allowance", &a.id, a.user.as_ref(), a.group.as_ref(), a.class.as_ref(), a.school.as_ref());
            let entries = self.entries(&a.sites, &[]);
            let (categories, _) = self.categories(&a.categories, false);
            self.no_illegal(&a.categories, &format!("allowance {:?} allows", a.id.get_ref()), "categories");
            if entries.is_empty() && categories.is_empty() {
                self.p.at(a.id.span(), format!("allowance {:?} allows nothing", a.id.get_ref()), Some("add `sites` or `categories`".into()));
            }
            let from = a.from.as_ref().map(|f| self.instant(f, tz));
            let until = self.instant(&a.until, tz);
            if from.is_some_and(|f| f >= until) {
                self.p.at(a.until.span(), "the allowance ends before it starts", None);
            }
            if a.reason.get_ref().trim().is_empty() {
                self.p.at(a.reason.span(), "an allowance needs a reason", Some("say who asked and why: it is part of the filtering record".into()));
            }
            if let Some(scope) = scope {
                self.set.allowances.push(Allowance {
                    id: a.id.get_ref().clone(),
                    scope,
                    entries,
                    categories: categories.difference(CategorySet::illegal()),
                    from,
                    until,
                    reason: a.reason.get_ref().clone(),
                });
            }
        }
    }

    fn lists(&mut self, raw: &[RawList]) -> Vec<SourceSpec> {
        self.unique("list", &raw.iter().map(|s| &s.name).collect::<Vec<_>>());
        let mut out = Vec::new();
        for l in raw {
            let format = match l.format.get_ref().as_str() {
                "ut1" => Format::Ut1,
                "hosts" => Format::Hosts,
                "domains" => Format::Domains,
                "urls" => Format::Urls,
                "sha256" => Format::Sha256,
                "md5" => Format::Md5,
                "expressions" => Format::Expressions,
                other => {
                    self.p.at(
                        l.format.span(),
                        format!("unknown list format {other:?}"),
                        Some("use ut1, hosts, domains, urls, sha256, md5 or expressions".into()),
                    );
                    continue;
                }
            };
            let category = l.category.as_ref().and_then(|c| {
                let (set, _) = self.categories(std::slice::from_ref(c), false);
                set.iter().next()
            });
            if format != Format::Ut1 && l.category.is_none() {
                self.p.at(
                    l.name.span(),
                    format!("list {:?} needs `category`", l.get_name()),
                    Some("only UT1 trees carry their own labels; say what this list holds, e.g. category = \"gambling\"".into()),
                );
            }
            let mut labels = BTreeMap::new();
            for (label, cats) in &l.labels {
                let (set, _) = self.categories(cats, false);
                labels.insert(label.clone(), set.iter().collect());
            }
            let path = match (&l.path, &l.url) {
                (Some(p), _) => self.base.join(p.get_ref()),
                (None, Some(_)) => self.base.join("haven-data").join("lists").join(l.get_name()),
                (None, None) => {
                    self.p.at(
                        l.name.span(),
                        format!("list {:?} has neither `path` nor `url`", l.get_name()),
                        Some("give the file or folder with `path`, or a download address with `url`".into()),
                    );
                    continue;
                }
            };
            let illegal = category.is_some_and(Category::is_illegal) || labels.values().flatten().any(|c: &Category| c.is_illegal());
            if illegal {
                self.illegal_source(l, &path);
            } else if l.url.is_none() && !path.exists() && l.optional {
                self.warnings.push(format!("list {:?}: {} does not exist; it is optional and skipped", l.get_name(), path.display()));
                continue;
            }
            if l.url.is_none() && !path.exists() {
                self.p.at(
                    l.path.as_ref().map_or(l.name.span(), |p| p.span()),
                    format!("list {:?}: {} does not exist", l.get_name(), path.display()),
                    Some(if illegal {
                        "an illegal-content list (IWF, CTIRU) must be present: fix the path (relative to the config file) or download it with `haven lists update`"
                            .into()
                    } else {
                        "paths are relative to the config file".into()
                    }),
                );
            }
            out.push(SourceSpec {
                name: l.get_name().to_string(),
                format,
                path,
                url: l.url.as_ref().map(|u| u.get_ref().clone()),
                category,
                labels,
                very_restrictive: l.very_restrictive,
            });
        }
        out
    }
}

impl Builder<'_> {
    /// An illegal-content source (IWF, CTIRU) is what the law requires a school
    /// to block: it cannot be optional, and an empty one would block nothing
    /// while looking configured.
    fn illegal_source(&mut self, l: &RawList, path: &Path) {
        let name = l.get_name();
        if l.optional {
            self.p.at(
                l.name.span(),
                format!("list {name:?} holds illegal content (IWF, CTIRU) and cannot be optional"),
                Some("remove `optional = true`: Haven must refuse to run without it rather than skip it".into()),
            );
        }
        let empty = if path.is_dir() {
            std::fs::read_dir(path).map_or(true, |mut d| d.next().is_none())
        } else if path.is_file() {
            // Comments and blank lines only is as empty as no file.
            std::fs::read_to_string(path).is_ok_and(|t| t.lines().map(str::trim).all(|l| l.is_empty() || l.starts_with('#')))
        } else {
            false
        };
        if empty {
            self.p.at(
                l.path.as_ref().map_or(l.name.span(), |p| p.span()),
                format!("list {name:?}: {} holds illegal content (IWF, CTIRU) but has no entries", path.display()),
                Some("replace it with the current list from your IWF or CTIRU membership (or `haven lists update`); an empty list blocks nothing".into()),
            );
        }
    }

    fn addr<T: std::str::FromStr>(&mut self, s: &S, what: &str, example: &str) -> Option<T> {
        let v = s.get_ref().parse::<T>().ok();
        if v.is_none() {
            self.p.at(s.span(), format!("{:?} is not {what}", s.get_ref()), Some(format!("write it like {example}")));
        }
        v
    }

    fn dns(&mut self, d: &RawDns) -> DnsSettings {
        let mut out = DnsSettings::default();
        if !d.listen.is_empty() {
            out.listen = d.listen.iter().filter_map(|l| self.addr(l, "an address and port", "\"127.0.0.1:53\" or \"[::1]:53\"")).collect();
        }
        out.upstream = d
            .upstream
            .iter()
            .filter_map(|u| {
                // A bare address means port 53.
                let text = u.get_ref();
                text.parse::<std::net::SocketAddr>()
                    .ok()
                    .or_else(|| text.parse::<std::net::IpAddr>().ok().map(|ip| std::net::SocketAddr::new(ip, 53)))
                    .or_else(|| self.addr(u, "an upstream resolver address", "\"192.0.2.53\" or \"192.0.2.53:53\""))
            })
            .collect();
        if let Some(b) = &d.block {
            out.block = match b.get_ref().as_str() {
                "nxdomain" => BlockAnswer::NxDomain,
                "blockpage" | "block-page" => BlockAnswer::BlockPage,
                other => {
                    self.p.at(b.span(), format!("block = {other:?}"), Some("use \"nxdomain\" or \"blockpage\"".into()));
                    BlockAnswer::NxDomain
                }
            };
        }
        if let Some(a) = &d.block_page_ipv4 {
            out.block_page_ipv4 = self.addr(a, "an IPv4 address", "\"10.0.0.5\"").unwrap_or(out.block_page_ipv4);
        }
        if let Some(a) = &d.block_page_ipv6 {
            out.block_page_ipv6 = self.addr(a, "an IPv6 address", "\"fd00::5\"").unwrap_or(out.block_page_ipv6);
        }
        out.block_ttl = d.block_ttl.unwrap_or(out.block_ttl);
        out.cache_entries = d.cache_entries.unwrap_or(out.cache_entries);
        out.upstream_timeout_ms = d.upstream_timeout_ms.unwrap_or(out.upstream_timeout_ms).clamp(50, 30_000);
        out.doh_listen = d.doh_listen.as_ref().and_then(|a| self.addr(a, "an address and port", "\"127.0.0.1:8053\""));
        out.doh_tls = self.doh_tls(d);
        out.default_group = d.default_group.as_ref().and_then(|g| self.group(g));
        out.log = d.log.unwrap_or(true);
        out
    }

    /// `[dns] doh_tls_listen` with its certificate and key, both required
    /// and both present now (a missing file is found here, not by the
    /// first device off site).
    fn doh_tls(&mut self, d: &RawDns) -> Option<crate::DohTls> {
        let listen = d.doh_tls_listen.as_ref()?;
        let addr = self.addr(listen, "an address and port", "\"0.0.0.0:443\"");
        let mut file = |f: Option<&S>, key: &str| -> Option<PathBuf> {
            let Some(f) = f else {
                self.p.at(
                    listen.span(),
                    format!("doh_tls_listen needs doh_tls_{key}"),
                    Some(format!(
                        "set doh_tls_{key} to a PEM file: a certificate for the server's name, or make one from the school CA with `haven ca issue NAME`"
                    )),
                );
                return None;
            };
            let path = self.base.join(f.get_ref());
            if !path.is_file() {
                self.p.at(f.span(), format!("{} does not exist", path.display()), Some("give the PEM file's path, relative to this config".into()));
                return None;
            }
            Some(path)
        };
        let cert = file(d.doh_tls_cert.as_ref(), "cert");
        let key = file(d.doh_tls_key.as_ref(), "key");
        Some(crate::DohTls { listen: addr?, cert: cert?, key: key? })
    }

    /// `[extension]`: the notice, the acceptable-use text (a file, read now)
    /// and its version, who is never captured, and the sites never read (the
    /// proxy's exemptions, these, and the support services always).
    fn extension(&mut self, e: &crate::raw::RawExtension, proxy_exempt: &[String]) -> crate::ExtensionSettings {
        let mut out = crate::ExtensionSettings::default();
        if let Some(n) = e.notice.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
            out.notice = n.to_string();
        }
        match (&e.acceptable_use, &e.acceptable_use_version) {
            (Some(f), Some(v)) => {
                let path = self.base.join(f.get_ref());
                match std::fs::read_to_string(&path) {
                    Ok(text) if !text.trim().is_empty() => out.acceptable_use = Some((v.get_ref().trim().to_string(), text.trim().to_string())),
                    Ok(_) => self.p.at(f.span(), format!("{} is empty", path.display()), Some("write the acceptable-use text pupils accept".into())),
                    Err(err) => {
                        self.p.at(f.span(), format!("cannot read {}: {err}", path.display()), Some("give a text file's path, relative to this config".into()))
                    }
                }
            }
            (Some(f), None) => self.p.at(
                f.span(),
                "acceptable_use needs acceptable_use_version",
                Some("add acceptable_use_version = \"2026-09\"; change it when the text changes and pupils accept again".into()),
            ),
            (None, Some(v)) => self.p.at(v.span(), "acceptable_use_version without acceptable_use", Some("add acceptable_use = \"aup.txt\"".into())),
            (None, None) => {}
        }
        for g in &e.off_groups {
            if let Some(i) = self.group(g) {
                out.off_groups.push(self.set.groups[i].id.clone());
            }
        }
        out.school_hours_only = e.school_hours_only.unwrap_or(false);
        out.screenshots = e.screenshots.unwrap_or(true);
        out.exempt = proxy_exempt.iter().cloned().chain(e.exempt.iter().map(|h| h.trim().trim_start_matches("*.").to_ascii_lowercase())).collect();
        out.exempt.extend(crate::SUPPORT_SERVICES.iter().map(|s| (*s).to_string()));
        out.exempt.sort();
        out.exempt.dedup();
        out
    }

    /// Lexicon files, relative to the config; a missing one is a problem
    /// naming where it was listed.
    fn lexicon_files(&mut self, files: &[S], listed_in: &str) -> Vec<PathBuf> {
        files
            .iter()
            .filter_map(|l| {
                let path = self.base.join(l.get_ref());
                if path.is_file() {
                    return Some(path);
                }
                self.p.at(
                    l.span(),
                    format!("lexicon file {} not found", path.display()),
                    Some(format!("fix the path (relative to this file) or remove it from {listed_in}")),
                );
                None
            })
            .collect()
    }

    /// `[safeguarding] lado` and each `[[school]] lado`.
    fn lados(&mut self, raw: &crate::raw::RawSafeguarding, schools: &[RawSchool]) -> crate::Lados {
        let trust = raw.lado.as_ref().and_then(|l| self.lado(l, "[safeguarding] lado"));
        let mut out = crate::Lados { trust, schools: HashMap::new() };
        for s in schools {
            let key = format!("[[school]] {:?} lado", s.id.get_ref());
            if let Some(l) = s.lado.as_ref().and_then(|l| self.lado(l, &key)) {
                out.schools.insert(s.id.get_ref().clone(), l);
            }
        }
        out
    }

    /// One LADO entry, checked: a name, and a phone or an e-mail to reach them.
    fn lado(&mut self, raw: &toml::Spanned<crate::raw::RawLado>, key: &str) -> Option<crate::Lado> {
        const SHAPE: &str = "lado = { name = \"…\", phone = \"…\", email = \"…\" }";
        let l = raw.get_ref();
        let mut ok = true;
        let name = l.name.as_ref().map(|n| n.get_ref().trim().to_string()).filter(|n| !n.is_empty());
        if name.is_none() {
            let span = l.name.as_ref().map_or(raw.span(), |n| n.span());
            self.p.at(span, format!("{key} needs a name"), Some(format!("the officer or the LADO service, as staff should ask for them: {SHAPE}")));
            ok = false;
        }
        let phone = l.phone.as_ref().and_then(|p| {
            let v = p.get_ref().trim();
            let digits = v.chars().filter(char::is_ascii_digit).count();
            if digits >= 6 && v.chars().all(|c| c.is_ascii_digit() || " +-()".contains(c)) {
                Some(v.to_string())
            } else {
                self.p.at(
                    p.span(),
                    format!("{key} phone {v:?} is not a telephone number"),
                    Some("digits, spaces, +, - and brackets only: \"01632 960123\"".into()),
                );
                ok = false;
                None
            }
        });
        let email = l.email.as_ref().and_then(|e| {
            let v = e.get_ref().trim();
            let good = v.split_once('@').is_some_and(|(a, d)| !a.is_empty() && d.contains('.')) && !v.chars().any(|c| c.is_whitespace() || "<>\"".contains(c));
            if good {
                Some(v.to_string())
            } else {
                self.p.at(e.span(), format!("{key} email {v:?} is not an e-mail address"), Some("one address: \"lado@council.example\"".into()));
                ok = false;
                None
            }
        });
        if ok && phone.is_none() && email.is_none() {
            self.p.at(raw.span(), format!("{key} has no way to reach the LADO"), Some(format!("give a phone, an email or both: {SHAPE}")));
            ok = false;
        }
        ok.then(|| crate::Lado { name: name.unwrap_or_default(), phone, email })
    }

    fn thresholds(&mut self, schools: &[RawSchool]) -> HashMap<String, Vec<(String, u8)>> {
        const CONCERNS: [&str; 8] =
            ["Offensive user", "Sexual content", "Vulnerable person", "Bullying/Violence", "Oversharer", "Grooming", "Terrorism/Extremism", "General risk"];
        let mut out = HashMap::new();
        for s in schools {
            let mut v = Vec::new();
            for (name, level) in &s.alert_thresholds {
                if !CONCERNS.contains(&name.as_str()) {
                    self.p.at(level.span(), format!("{name:?} is not a category of concern"), Some(format!("use one of: {}", CONCERNS.join(", "))));
                } else if !(1..=5).contains(level.get_ref()) {
                    self.p.at(
                        level.span(),
                        format!("threshold {} for {name}", level.get_ref()),
                        Some("levels run from 1 (everything) to 5 (threats to life only)".into()),
                    );
                } else {
                    v.push((name.clone(), *level.get_ref()));
                }
            }
            if !v.is_empty() {
                out.insert(s.id.get_ref().clone(), v);
            }
        }
        out
    }

    fn proxy(&mut self, d: Option<&RawProxy>, data_dir: &Path) -> ProxySettings {
        let mut out = ProxySettings::defaults(data_dir);
        let Some(d) = d else { return out };
        if !d.listen.is_empty() {
            out.listen = d.listen.iter().filter_map(|l| self.addr(l, "an address and port", "\"127.0.0.1:3128\"")).collect();
        }
        if let Some(a) = &d.auth {
            out.auth = match a.get_ref().as_str() {
                "off" => ProxyAuth::Off,
                "optional" => ProxyAuth::Optional,
                "required" => ProxyAuth::Required,
                other => {
                    self.p.at(a.span(), format!("auth = {other:?}"), Some("use \"off\", \"optional\" or \"required\"".into()));
                    ProxyAuth::Off
                }
            };
        }
        if let Some(r) = &d.realm {
            out.realm.clone_from(r);
        }
        if let Some(a) = &d.accounts {
            out.accounts = self.base.join(a);
        }
        if let Some(c) = &d.ca_dir {
            out.ca_dir = self.base.join(c);
        }
        out.default_group = d.default_group.as_ref().and_then(|g| self.group(g));
        out.inspect = d.inspect.unwrap_or(false);
        out.inspect_exempt.extend(d.inspect_exempt.iter().map(|h| h.trim().trim_start_matches("*.").to_ascii_lowercase()));
        out.max_header_bytes = d.max_header_bytes.unwrap_or(out.max_header_bytes).clamp(8192, 1 << 20);
        out.idle_timeout_s = d.idle_timeout_s.unwrap_or(out.idle_timeout_s).clamp(1, 3600);
        out.origin_timeout_s = d.origin_timeout_s.unwrap_or(out.origin_timeout_s).clamp(1, 600);
        out.log = d.log.unwrap_or(true);
        if let Some(p) = &d.connect_ports {
            out.connect_ports.clone_from(p);
        }
        out.header_timeout_s = d.header_timeout_s.unwrap_or(out.header_timeout_s).clamp(1, 600);
        out.body_timeout_s = d.body_timeout_s.unwrap_or(out.body_timeout_s).clamp(1, 3600);
        out.tunnel_idle_timeout_s = d.tunnel_idle_timeout_s.unwrap_or(out.tunnel_idle_timeout_s).clamp(1, 86_400);
        out.max_connections = d.max_connections.unwrap_or(out.max_connections).max(1);
        out.content.enabled = out.inspect;
        if let Some(c) = &d.content {
            let k = &mut out.content;
            k.enabled = c.enabled.unwrap_or(k.enabled);
            k.max_prefix_bytes = c.max_prefix_bytes.unwrap_or(k.max_prefix_bytes).clamp(1024, 1 << 20);
            k.max_text_bytes = c.max_text_bytes.unwrap_or(k.max_text_bytes).clamp(256, 256 * 1024);
            k.hold_bytes = c.hold_bytes.unwrap_or(k.hold_bytes).min(k.max_prefix_bytes);
            k.hold_ms = c.hold_ms.unwrap_or(k.hold_ms).min(5000);
            k.cache_entries = c.cache_entries.unwrap_or(k.cache_entries).min(1_000_000);
            k.cache_ttl_secs = c.cache_ttl_secs.unwrap_or(k.cache_ttl_secs).min(7 * 86_400);
        }
        for net in &d.allow_internal {
            let text = net.get_ref().trim();
            match text.parse::<ipnet::IpNet>().or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from)) {
                Ok(n) => out.allow_internal.push(n.trunc()),
                Err(_) => self.p.at(
                    net.span(),
                    format!("allow_internal: {text:?} is not an address range"),
                    Some("write a CIDR range such as \"10.0.0.0/8\" or \"fd00::/8\", or a single address".into()),
                ),
            }
        }
        for (name, ip) in &d.hosts {
            if let Some(addr) = self.addr::<std::net::IpAddr>(ip, "an IP address", "\"192.0.2.10\"") {
                if crate::is_internal_address(addr) && !out.allow_internal.iter().any(|n| n.contains(&addr)) {
                    self.warnings.push(format!(
                        "[proxy.hosts] {name:?} points at {addr}, an internal address: the proxy will refuse it until [proxy] allow_internal covers it (e.g. allow_internal = [\"{addr}/{}\"])",
                        if addr.is_ipv4() { 32 } else { 128 }
                    ));
                }
                out.hosts.insert(name.trim_end_matches('.').to_ascii_lowercase(), addr);
            }
        }
        out.origin_roots = d.origin_roots.as_ref().map(|r| self.base.join(r));
        out
    }

    fn doh_tokens(&mut self, raw: &[RawDevice]) -> HashMap<String, usize> {
        let mut out = HashMap::new();
        for d in raw {
            let Some(t) = &d.doh_token else { continue };
            if t.get_ref().len() < 16 || !t.get_ref().bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_') {
                self.p.at(t.span(), "a DoH token must be at least 16 letters, digits, '-' or '_'", Some("generate one with `openssl rand -hex 16`".into()));
                continue;
            }
            let Some(idx) = self.set.devices.iter().position(|x| &x.id == d.id.get_ref()) else { continue };
            if out.insert(t.get_ref().clone(), idx).is_some() {
                self.p.at(t.span(), "this DoH token is used by two devices", Some("each device needs its own token".into()));
            }
        }
        out
    }
}

impl RawList {
    fn get_name(&self) -> &str {
        self.name.get_ref()
    }
}

impl Builder<'_> {
    /// `[filtering] approvers`: the roles that approve a request, in order
    /// (default: the DSL alone). A teacher cannot approve; a governor sees
    /// totals only.
    fn approvers(&mut self, raw: &[S]) -> Vec<String> {
        const MAY: [&str; 7] = ["dsl", "deputy-dsl", "headteacher", "it-technician", "it-lead", "trust-safeguarding-lead", "trust-admin"];
        let mut out = Vec::new();
        for r in raw {
            if MAY.contains(&r.get_ref().as_str()) {
                out.push(r.get_ref().clone());
            } else {
                self.p.at(r.span(), format!("{:?} cannot approve filtering changes", r.get_ref()), Some(format!("use one or more of {}", MAY.join(", "))));
            }
        }
        if out.is_empty() {
            out.push("dsl".into());
        }
        out
    }

    /// `[filtering_checks]`: the probes' targets (each a host or URL), how
    /// often `haven serve` runs them, and for which school and group.
    fn filtering_checks(&mut self, f: &RawFilteringChecks) -> crate::FilteringChecks {
        let mut out = crate::FilteringChecks::default();
        if let Some(every) = &f.every {
            let text = every.get_ref().trim();
            out.every = if text == "off" {
                None
            } else {
                match text.parse::<jiff::SignedDuration>() {
                    // More often than every five minutes is load, not assurance.
                    Ok(d) if d >= jiff::SignedDuration::from_mins(5) => Some(std::time::Duration::from_secs(d.as_secs().unsigned_abs())),
                    _ => {
                        self.p.at(
                            every.span(),
                            format!("every = {text:?}"),
                            Some("write how often, at least 5 minutes: \"24h\", \"6h\", \"30m\", or \"off\"".into()),
                        );
                        None
                    }
                }
            };
        }
        for g in &f.schedule {
            let (school, group) = (self.school(&g.school), self.group(&g.group));
            if school.is_some() && group.is_some() {
                out.schedule.push((g.school.get_ref().clone(), g.group.get_ref().clone()));
            }
        }
        if f.schedule.is_empty() {
            for n in &self.set.networks {
                let pair = (self.set.schools[n.school].id.clone(), self.set.groups[n.group].id.clone());
                if !out.schedule.contains(&pair) {
                    out.schedule.push(pair);
                }
            }
        }
        let t = &mut out.targets;
        for (given, target) in [
            (&f.iwf, &mut t.iwf),
            (&f.ctiru, &mut t.ctiru),
            (&f.adult, &mut t.adult),
            (&f.gambling, &mut t.gambling),
            (&f.self_harm, &mut t.self_harm),
            (&f.circumvention, &mut t.circumvention),
        ] {
            let Some(given) = given else { continue };
            if haven_url::CanonicalUrl::parse(given.get_ref()).is_ok() {
                given.get_ref().trim().clone_into(target);
            } else {
                self.p.at(
                    given.span(),
                    format!("{:?} is not a web address", given.get_ref()),
                    Some("write a host name or URL your lists hold, like \"example.com\" or \"http://example.com/page\"".into()),
                );
            }
        }
        out
    }
}
