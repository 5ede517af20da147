//! Decision-path tests with a small in-memory list.

use std::collections::HashMap;

use jiff::Timestamp;
use jiff::civil::{Time, date};

use crate::model::*;
use crate::safesearch::SafeSearch;
use crate::schedule::{Calendar, Days, Period, Season};
use crate::*;

struct FakeLists {
    domains: HashMap<&'static str, CategorySet>,
}

impl ListLookup for FakeLists {
    fn lookup(&self, request: &Request, out: &mut Vec<ListMatch>) {
        for s in haven_url::host_suffixes(request.host()) {
            if let Some(c) = self.domains.get(s) {
                out.push(ListMatch { categories: *c, source: 0, entry: s.to_string(), kind: MatchKind::Domain, specificity: Specificity::of(s, "/") });
            }
        }
    }
    fn source_name(&self, _: u16) -> &str {
        "fake"
    }
}

fn cats(c: &[Category]) -> CategorySet {
    c.iter().copied().collect()
}

fn lists() -> FakeLists {
    use Category::*;
    FakeLists {
        domains: HashMap::from([
            ("casino.example", cats(&[Gambling])),
            ("games.example", cats(&[Games])),
            ("bad.games.example", cats(&[Adult])),
            ("iwf.example", cats(&[Csam])),
            ("sexed.example", cats(&[SexEducation, Adult])),
            ("bbc.co.uk", cats(&[News])),
        ]),
    }
}

fn set() -> PolicySet {
    use Category::*;
    let mut pupils = EntryTable::default();
    pupils.insert("ok.games.example", Verdict::Allow);
    pupils.insert("iwf.example", Verdict::Allow);
    pupils.insert("news.example/sport", Verdict::Block);
    let pupil_policy = Policy {
        id: "pupil".into(),
        block: cats(&[Gambling, Games, Adult]),
        allow: cats(&[SexEducation]),
        entries: pupils,
        safe_search: SafeSearch::default(),
        uncategorised: Verdict::Allow,
    };
    let walled = Policy {
        id: "walled".into(),
        block: CategorySet::EMPTY,
        allow: CategorySet::EMPTY,
        entries: EntryTable::default(),
        safe_search: SafeSearch::default(),
        uncategorised: Verdict::Block,
    };
    let mut calendar = Calendar::london();
    calendar.terms.push((date(2026, 9, 1), date(2026, 12, 18)));
    let mut override_entries = EntryTable::default();
    override_entries.insert("casino.example", Verdict::Allow);
    let mut s = PolicySet {
        trust: "Test Trust".into(),
        schools: vec![
            School { id: "a".into(), name: "School A".into(), calendar: calendar.clone() },
            School { id: "b".into(), name: "School B".into(), calendar },
        ],
        groups: vec![
            Group { id: "secondary".into(), name: "Secondary pupils".into(), policy: 0 },
            Group { id: "nursery".into(), name: "Nursery".into(), policy: 1 },
        ],
        policies: vec![pupil_policy, walled],
        overrides: vec![Override {
            school: 1,
            group: Some(0),
            block: CategorySet::EMPTY,
            unblock: cats(&[Games]),
            entries: override_entries,
            safe_search: None,
        }],
        users: vec![User { id: "pupil1".into(), group: 0, school: Some(0), classes: Vec::new() }],
        windows: vec![Window {
            name: "evenings".into(),
            groups: vec![0],
            schools: vec![],
            period: Period { from: Time::constant(22, 0, 0, 0), to: Time::constant(7, 30, 0, 0), days: Days::ALL, season: Season::Always },
            block: Target::All,
            except: cats(&[News]),
        }],
        ..PolicySet::default()
    };
    s.index();
    s
}

fn noon() -> Timestamp {
    "2026-11-10T12:00:00Z".parse().unwrap()
}

fn check(s: &PolicySet, who: &Subject, at: Timestamp, url: &str) -> Decision {
    decide(s, &lists(), who, at, &Request::parse(url).unwrap())
}

fn pupil_at(school: usize) -> Subject {
    Subject { user: None, group: 0, school: Some(school) }
}

#[test]
fn listed_domain_blocks_its_subdomains() {
    let s = set();
    let d = check(&s, &pupil_at(0), noon(), "https://www.a.b.casino.example/x");
    assert_eq!(d.action, Action::Block);
    assert_eq!(d.rule, Rule::BlockedCategory);
    assert_eq!(d.entry.as_deref(), Some("casino.example"));
    assert!(d.explain(&s, &pupil_at(0), "www.a.b.casino.example").contains("Gambling"));
    assert_eq!(d.rule_id(&s, &pupil_at(0)), "policy:pupil:block-category");
    assert_eq!(check(&s, &pupil_at(0), noon(), "notcasino.example").action, Action::Allow);
}

#[test]
fn more_specific_entry_wins_either_way() {
    let s = set();
    let who = pupil_at(0);
    // Allow entry ok.games.example is more specific than the games.example list entry.
    let d = check(&s, &who, noon(), "http://ok.games.example/");
    assert_eq!(d.action, Action::Allow);
    assert!(matches!(d.rule, Rule::Entry { verdict: Verdict::Allow, .. }));
    // bad.games.example (adult) is more specific than nothing allowed: blocked.
    assert_eq!(check(&s, &who, noon(), "bad.games.example").action, Action::Block);
    // A URL block entry beats the unlisted host.
    assert_eq!(check(&s, &who, noon(), "news.example/sport/today").action, Action::Block);
    assert_eq!(check(&s, &who, noon(), "news.example/sports").action, Action::Allow);
}

#[test]
fn allowed_category_beats_blocked_category_at_the_same_entry() {
    let s = set();
    let d = check(&s, &pupil_at(0), noon(), "sexed.example");
    assert_eq!(d.action, Action::Allow);
    assert_eq!(d.rule, Rule::AllowedCategory);
}

#[test]
fn illegal_content_beats_every_allow() {
    let mut s = set();
    let mut entries = EntryTable::default();
    entries.insert("iwf.example", Verdict::Allow);
    s.allowances.push(Allowance {
        id: "a1".into(),
        scope: Scope::Group(0, None),
        entries,
        categories: CategorySet::all(),
        from: None,
        until: "2030-01-01T00:00:00Z".parse().unwrap(),
        reason: "test".into(),
    });
    s.overrides[0].entries.insert("iwf.example", Verdict::Allow);
    for school in [0, 1] {
        let d = check(&s, &pupil_at(school), noon(), "http://sub.iwf.example/page");
        assert_eq!(d.action, Action::Block);
        assert_eq!(d.rule, Rule::IllegalContent);
    }
    let staff_like = Subject { user: None, group: 1, school: None };
    assert_eq!(check(&s, &staff_like, noon(), "iwf.example").rule, Rule::IllegalContent);
}

#[test]
fn school_override_changes_the_group_policy_at_that_school_only() {
    let s = set();
    assert_eq!(check(&s, &pupil_at(0), noon(), "games.example").action, Action::Block);
    assert_eq!(check(&s, &pupil_at(1), noon(), "games.example").action, Action::Allow);
    let d = check(&s, &pupil_at(1), noon(), "casino.example");
    assert_eq!(d.action, Action::Allow);
    assert_eq!(d.rule_id(&s, &pupil_at(1)), "override:b:allow-entry");
}

#[test]
fn allowance_applies_and_lapses() {
    let mut s = set();
    let mut entries = EntryTable::default();
    entries.insert("games.example", Verdict::Allow);
    s.allowances.push(Allowance {
        id: "lesson-42".into(),
        scope: Scope::Group(0, Some(0)),
        entries,
        categories: CategorySet::EMPTY,
        from: Some("2026-11-10T11:00:00Z".parse().unwrap()),
        until: "2026-11-10T12:00:00Z".parse().unwrap(),
        reason: "Year 9 computing lesson".into(),
    });
    let who = pupil_at(0);
    let during = check(&s, &who, "2026-11-10T11:59:59Z".parse().unwrap(), "games.example");
    assert_eq!(during.action, Action::Allow);
    assert_eq!(during.rule, Rule::Allowance(0));
    assert_eq!(check(&s, &who, "2026-11-10T12:00:00Z".parse().unwrap(), "games.example").action, Action::Block);
    assert_eq!(check(&s, &who, "2026-11-10T10:59:59Z".parse().unwrap(), "games.example").action, Action::Block);
    // Other school: the allowance is scoped to school A.
    assert_eq!(check(&s, &pupil_at(1), "2026-11-10T11:30:00Z".parse().unwrap(), "bad.games.example").action, Action::Block);
}

#[test]
fn per_pupil_restriction_blocks_everything_until_it_lapses() {
    let mut s = set();
    s.restrictions.push(Restriction {
        id: "r1".into(),
        scope: Scope::User(0),
        block: Target::All,
        entries: EntryTable::default(),
        from: None,
        until: Some("2026-11-20T00:00:00Z".parse().unwrap()),
        reason: "No web browsing while the DSL reviews an incident".into(),
    });
    let pupil = s.subject_for_user(0);
    let d = check(&s, &pupil, noon(), "bbc.co.uk");
    assert_eq!(d.action, Action::Block);
    assert_eq!(d.rule_id(&s, &pupil), "restriction:r1");
    // Another pupil in the same group is unaffected.
    assert_eq!(check(&s, &pupil_at(0), noon(), "bbc.co.uk").action, Action::Allow);
    assert_eq!(check(&s, &pupil, "2026-11-20T00:00:00Z".parse().unwrap(), "bbc.co.uk").action, Action::Allow);
}

#[test]
fn time_window_blocks_overnight_on_the_wall_clock() {
    let s = set();
    let who = pupil_at(0);
    // 22:30 GMT in November.
    let d = check(&s, &who, "2026-11-10T22:30:00Z".parse().unwrap(), "notlisted.example");
    assert_eq!(d.action, Action::Block);
    assert_eq!(d.rule_id(&s, &who), "window:evenings");
    // News is excepted.
    assert_eq!(check(&s, &who, "2026-11-10T22:30:00Z".parse().unwrap(), "bbc.co.uk").action, Action::Allow);
    // 21:30Z in July is 22:30 BST: blocked; 20:59Z is 21:59 BST: allowed.
    assert_eq!(check(&s, &who, "2026-07-10T21:30:00Z".parse().unwrap(), "x.example").action, Action::Block);
    assert_eq!(check(&s, &who, "2026-07-10T20:59:00Z".parse().unwrap(), "x.example").action, Action::Allow);
}

#[test]
fn uncategorised_sites_follow_the_policy_default() {
    let s = set();
    let nursery = Subject { user: None, group: 1, school: Some(0) };
    let d = check(&s, &nursery, noon(), "unknown.example");
    assert_eq!(d.action, Action::Block);
    assert_eq!(d.rule, Rule::Uncategorised);
    assert_eq!(check(&s, &nursery, noon(), "bbc.co.uk").action, Action::Allow);
}

#[test]
fn search_engines_get_safe_search() {
    let s = set();
    let d = check(&s, &pupil_at(0), noon(), "https://www.google.co.uk/search?q=x");
    assert_eq!(d.action, Action::SafeSearch);
    assert_eq!(d.safe_search_host, Some("forcesafesearch.google.com"));
}

#[test]
fn identify_prefers_user_then_device_then_network() {
    let mut s = set();
    s.networks.push(Network { net: "10.1.0.0/16".parse().unwrap(), school: 1, group: 1 });
    s.networks.push(Network { net: "10.1.2.0/24".parse().unwrap(), school: 1, group: 0 });
    s.devices.push(Device { id: "ipad-7".into(), school: 0, group: 1, owner: None });
    s.index();
    let ip = "10.1.2.3".parse().ok();
    assert_eq!(s.identify(None, None, ip), Some(Subject { user: None, group: 0, school: Some(1) }));
    assert_eq!(s.identify(None, None, "10.1.9.9".parse().ok()).map(|x| x.group), Some(1));
    assert_eq!(s.identify(None, Some("ipad-7"), ip), Some(Subject { user: None, group: 1, school: Some(0) }));
    assert_eq!(s.identify(Some("PUPIL1"), None, ip).and_then(|x| x.user), Some(0));
    assert_eq!(s.identify(None, None, "192.0.2.1".parse().ok()), None);
}

/// Two pupils of one year group in school A, one of them in class 10GH.
fn with_classes() -> PolicySet {
    let mut s = set();
    s.classes.push(Class { id: "10GH".into(), school: Some(0) });
    s.users[0].classes.push(0);
    s.users.push(User { id: "pupil2".into(), group: 0, school: Some(0), classes: Vec::new() });
    s.index();
    s
}

#[test]
fn a_change_for_a_class_allows_its_pupils_only_and_lapses() {
    use crate::changes::{Aim, Change, Whom};
    let mut s = with_classes();
    let change = Change {
        id: 41,
        school: "a".into(),
        whom: Whom::Class("10gh".into()),
        verdict: Verdict::Allow,
        aim: Aim::Site(crate::changes::site_entry("https://www.games.example/").unwrap()),
        from: "2026-11-10T11:00:00Z".parse().unwrap(),
        until: Some("2026-11-10T13:00:00Z".parse().unwrap()),
        reason: "Game design lesson (asked by t@a.example, approved by dsl@a.example)".into(),
    };
    s.add_change(&change).unwrap();
    let (in_class, other) = (s.subject_for_user(0), s.subject_for_user(1));
    let d = check(&s, &in_class, noon(), "http://games.example/play");
    assert_eq!(d.action, Action::Allow, "{}", d.explain(&s, &in_class, "games.example"));
    assert_eq!(d.rule_id(&s, &in_class), "allowance:change-41");
    let said = d.explain(&s, &in_class, "games.example");
    assert!(said.contains("Allowed by change 41 until 2026-11-10T13:00:00Z") && said.contains("approved by dsl@a.example"), "{said}");
    assert_eq!(check(&s, &other, noon(), "http://games.example/play").action, Action::Block, "another class of the same year is not covered");
    assert_eq!(check(&s, &pupil_at(0), noon(), "games.example").action, Action::Block, "a device nobody signed in to is nobody's class");
    assert_eq!(check(&s, &in_class, "2026-11-10T13:00:00Z".parse().unwrap(), "games.example").action, Action::Block, "lapsed");
    // Never illegal content, whatever the change says.
    let illegal = Change { id: 42, aim: Aim::Site("iwf.example".into()), ..change.clone() };
    s.add_change(&illegal).unwrap();
    assert_eq!(check(&s, &in_class, noon(), "iwf.example").rule, Rule::IllegalContent);
    let by_category = Change { id: 43, aim: Aim::Category(Category::Csam), ..change.clone() };
    assert!(s.add_change(&by_category).unwrap_err().contains("never be allowed"));
    // A class the MIS does not know is said plainly.
    let unknown = Change { whom: Whom::Class("11ZZ".into()), ..change };
    assert!(s.add_change(&unknown).unwrap_err().contains("no class \"11ZZ\""));
}

#[test]
fn a_change_blocks_one_site_for_one_person() {
    use crate::changes::{Aim, Change, Whom};
    let mut s = with_classes();
    s.add_change(&Change {
        id: 7,
        school: "a".into(),
        whom: Whom::User("pupil2".into()),
        verdict: Verdict::Block,
        aim: Aim::parse(Some("bbc.co.uk/sport"), None).unwrap(),
        from: "2026-11-01T00:00:00Z".parse().unwrap(),
        until: None,
        reason: "Agreed with parents".into(),
    })
    .unwrap();
    let pupil2 = s.subject_for_user(1);
    let d = check(&s, &pupil2, noon(), "https://www.bbc.co.uk/sport/football");
    assert_eq!(d.action, Action::Block);
    assert_eq!(d.explain(&s, &pupil2, "bbc.co.uk"), "Blocked by change 7 (bbc.co.uk/sport): Agreed with parents");
    assert_eq!(check(&s, &pupil2, noon(), "https://www.bbc.co.uk/news").action, Action::Allow, "only that part of the site");
    assert_eq!(check(&s, &s.subject_for_user(0), noon(), "https://www.bbc.co.uk/sport").action, Action::Allow, "only that person");
}

/// Lists that name nothing new, behind a "model" that reads `bet` as
/// gambling (0.9), `maybe` as gambling (0.5) and `news` as nothing.
struct GuessingLists;

impl ListLookup for GuessingLists {
    fn lookup(&self, request: &Request, out: &mut Vec<ListMatch>) {
        lists().lookup(request, out);
    }
    fn source_name(&self, _: u16) -> &str {
        "fake"
    }
    fn guess(&self, request: &Request) -> Option<ModelGuess> {
        let host = request.host();
        let confidence = if host.contains("bet") {
            0.9
        } else if host.contains("maybe") {
            0.5
        } else {
            return None;
        };
        Some(ModelGuess { category: Category::Gambling, confidence, evidence: Vec::new() })
    }
    fn explain_guess(&self, _request: &Request, guess: &mut ModelGuess) {
        guess.evidence = vec!["bet".into()];
    }
}

fn with_model(mut s: PolicySet) -> PolicySet {
    s.host_model = HostModelSettings { enabled: true, thresholds: vec![(Category::Gambling, 0.8)], off_at: vec![1] };
    s
}

fn guessed(s: &PolicySet, who: &Subject, url: &str) -> Decision {
    decide(s, &GuessingLists, who, noon(), &Request::parse(url).unwrap())
}

#[test]
fn the_model_blocks_unlisted_sites_above_the_threshold_and_says_why() {
    let s = with_model(set());
    let who = pupil_at(0);
    let mut d = guessed(&s, &who, "https://superbet.test/");
    assert_eq!(d.action, Action::Block);
    assert_eq!(d.rule, Rule::Model);
    assert_eq!(d.list.as_deref(), Some("model"));
    assert_eq!(d.rule_id(&s, &who), "model:gambling");
    // The words are found only when someone will read them.
    assert!(d.guess.as_ref().is_some_and(|g| g.evidence.is_empty()), "{d:?}");
    d.explain_model(&GuessingLists, &Request::parse("https://superbet.test/").unwrap());
    assert_eq!(d.entry.as_deref(), Some("bet"));
    let why = d.explain(&s, &who, "superbet.test");
    assert!(why.contains("model: gambling 0.90 from 'bet'"), "{why}");
    // Below the threshold: allowed, and the guess is still there to see.
    let d = guessed(&s, &who, "https://maybe.test/");
    assert_eq!(d.action, Action::Allow);
    assert!(d.guess.is_some());
    assert!(d.explain(&s, &who, "maybe.test").contains("below its threshold"));
    // Nothing to guess.
    assert!(guessed(&s, &who, "https://quiet.test/").guess.is_none());
}

#[test]
fn the_model_is_never_asked_where_lists_speak_and_yields_to_staff_and_switches() {
    let s = with_model(set());
    let who = pupil_at(0);
    // A listed site: the list decides, the model is not asked.
    let d = guessed(&s, &who, "https://bet.bbc.co.uk/");
    assert_eq!(d.action, Action::Allow);
    assert!(d.guess.is_none());
    // The school that switched it off.
    assert_eq!(guessed(&s, &pupil_at(1), "https://superbet.test/").action, Action::Allow);
    // Off for the whole trust.
    let mut off = s.clone();
    off.host_model.enabled = false;
    assert_eq!(guessed(&off, &who, "https://superbet.test/").action, Action::Allow);
    // A category the trust gives no threshold is never decided by the model.
    let mut no_gambling = s.clone();
    no_gambling.host_model.thresholds.clear();
    assert_eq!(guessed(&no_gambling, &who, "https://superbet.test/").action, Action::Allow);
    // A staff allow entry beats the model's guess.
    let mut allowed = s.clone();
    allowed.policies[0].entries.insert("superbet.test", Verdict::Allow);
    let d = guessed(&allowed, &who, "https://superbet.test/");
    assert_eq!(d.action, Action::Allow);
    assert!(matches!(d.rule, Rule::Entry { .. }));
    // Under a listed-sites-only policy an unlisted site stays unlisted,
    // whatever the model thinks (its guess does not let it through).
    let nursery = Subject { user: None, group: 1, school: Some(0) };
    let d = guessed(&s, &nursery, "https://superbet.test/");
    assert_eq!(d.action, Action::Block);
    assert_eq!(d.rule, Rule::Uncategorised);
}
