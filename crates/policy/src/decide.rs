//! `decide`: one request, one person, one moment → allow, block or safe search,
//! and why.
//!
//! The order, first match wins:
//! 1. **Illegal content** (IWF, CTIRU and other illegal categories): blocked for
//!    everyone. No allow entry, allowance or override is even consulted.
//! 2. **Restrictions** a DSL placed on the person or group.
//! 3. **Allowances** in force (a teacher's lesson unblock).
//! 4. **Time windows** (apps off overnight).
//! 5. **Entries and categories**: the most specific match wins; at equal
//!    specificity a staff entry beats a list, a school override beats its base
//!    policy, an allowed category beats a blocked one, and otherwise block wins.
//! 6. **Uncategorised** sites follow the policy's default.
//! 7. Allowed search engines get **safe search** where the policy asks for it.

use jiff::Timestamp;
use serde::Serialize;

use crate::lookup::{ListLookup, ListMatch, MatchKind, ModelGuess, Request, Specificity};
use crate::model::{EntryMatch, PolicySet, Subject, Target, Verdict};
use crate::safesearch::Engine;
use crate::schedule::Calendar;
use crate::taxonomy::CategorySet;

/// What happens to the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Let it through.
    Allow,
    /// Stop it and show the block page.
    Block,
    /// Let it through to the engine's safe-search service.
    #[serde(rename = "safesearch")]
    SafeSearch,
}

impl Action {
    /// `allow`, `block` or `safesearch`, as in logs and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Block => "block",
            Self::SafeSearch => "safesearch",
        }
    }
}

/// Which rule decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// An illegal-content list; cannot be overridden.
    IllegalContent,
    /// A restriction, by id.
    Restriction(usize),
    /// An allowance, by id.
    Allowance(usize),
    /// A time window, by index.
    Window(usize),
    /// A category the policy blocks.
    BlockedCategory,
    /// A category the policy allows over blocked ones.
    AllowedCategory,
    /// A staff entry of the base policy (`override` = `None`) or of a school override.
    Entry {
        /// Allow or block.
        verdict: Verdict,
        /// Index into [`PolicySet::overrides`], or `None` for the base policy.
        r#override: Option<usize>,
    },
    /// No list names the site; the hostname model put it in a blocked
    /// category with at least that category's threshold of confidence.
    Model,
    /// A site no list names, under a policy that blocks those.
    Uncategorised,
    /// Nothing blocks it.
    Default,
}

/// The outcome of [`decide`].
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Allow, block or safe search.
    pub action: Action,
    /// Every category the lists give the request.
    pub categories: CategorySet,
    /// The categories that decided (a subset of `categories`, or empty).
    pub decisive: CategorySet,
    /// The rule that decided.
    pub rule: Rule,
    /// The list source whose entry decided, by name.
    pub list: Option<String>,
    /// The entry that decided (`example.com`, `example.com/games`, a regex).
    pub entry: Option<String>,
    /// For safe search: the name to send the request to.
    pub safe_search_host: Option<&'static str>,
    /// What the hostname model made of a request no list names, when it
    /// was asked (whether or not its guess was sure enough to count).
    pub guess: Option<ModelGuess>,
}

/// Decides one request for `who` at `when`.
///
/// `lists` answers what the category lists say; `set` holds the policies.
pub fn decide(set: &PolicySet, lists: &dyn ListLookup, who: &Subject, when: Timestamp, request: &Request) -> Decision {
    let mut matches: Vec<ListMatch> = Vec::new();
    lists.lookup(request, &mut matches);
    let listed = matches.iter().fold(CategorySet::EMPTY, |acc, m| acc.union(m.categories));
    // The model speaks only where no list does, and its category counts only
    // when it is one the trust lets it decide, at that category's threshold.
    let mut guess = None;
    let mut by_model = CategorySet::EMPTY;
    if listed.is_empty() && set.host_model.on_for(who) {
        guess = lists.guess(request);
        if let Some(g) = &guess
            && set.host_model.threshold(g.category).is_some_and(|t| g.confidence >= t)
        {
            by_model = [g.category].into_iter().collect();
        }
    }
    let categories = listed.union(by_model);
    let decision = |action, rule, decisive, m: Option<&ListMatch>| Decision {
        action,
        categories,
        decisive,
        rule,
        list: m.map(|m| lists.source_name(m.source).to_string()),
        entry: m.map(|m| m.entry.clone()),
        safe_search_host: None,
        guess: guess.clone(),
    };

    if categories.has_illegal() {
        let m = matches.iter().find(|m| m.categories.has_illegal());
        let illegal = categories.iter().filter(|c| c.is_illegal()).collect();
        return decision(Action::Block, Rule::IllegalContent, illegal, m);
    }

    if let Some(i) = set.restrictions.iter().position(|r| r.applies(set, who, when) && (r.block.covers(categories) || r.entries.best_match(request).is_some()))
    {
        let r = &set.restrictions[i];
        let mut d = decision(Action::Block, Rule::Restriction(i), restricted(r.block, categories), None);
        d.entry = r.entries.best_match(request).map(|e| e.entry);
        return d;
    }

    let eff = set.effective(who);
    let allowed = |d: Decision| with_safe_search(d, request.host(), eff.safe_search);

    for (i, a) in set.allowances.iter().enumerate() {
        if !a.applies(set, who, when) {
            continue;
        }
        let by_entry = a.entries.best_match(request).is_some_and(|e| e.verdict == Verdict::Allow);
        let by_category = a.categories.intersection(categories);
        if by_entry || !by_category.is_empty() {
            let mut d = decision(Action::Allow, Rule::Allowance(i), by_category, None);
            d.entry = a.entries.best_match(request).map(|e| e.entry);
            return allowed(d);
        }
    }

    static DEFAULT_CALENDAR: std::sync::OnceLock<Calendar> = std::sync::OnceLock::new();
    let calendar = set.calendar(who).unwrap_or_else(|| DEFAULT_CALENDAR.get_or_init(Calendar::london));
    // The wall-clock time, worked out once and only if a window needs it.
    let mut local = None;
    for (i, w) in set.windows.iter().enumerate() {
        let for_group = w.groups.is_empty() || w.groups.contains(&who.group);
        let for_school = w.schools.is_empty() || who.school.is_some_and(|s| w.schools.contains(&s));
        if for_group
            && for_school
            && w.block.covers(categories)
            && w.except.intersection(categories).is_empty()
            && w.period.contains_local(calendar, *local.get_or_insert_with(|| calendar.tz.to_datetime(when)))
        {
            return decision(Action::Block, Rule::Window(i), restricted(w.block, categories), None);
        }
    }

    // Candidates ranked by (specificity, class); higher wins, block wins a full tie.
    let mut best: Option<Candidate<'_>> = None;
    for m in &matches {
        let blocked = m.categories.intersection(eff.block);
        let allowed_cats = m.categories.intersection(eff.allow);
        if !allowed_cats.is_empty() {
            offer_candidate(&mut best, Candidate::list(Verdict::Allow, Class::ListAllow, allowed_cats, m));
        }
        if !blocked.is_empty() {
            offer_candidate(&mut best, Candidate::list(Verdict::Block, Class::ListBlock, blocked, m));
        }
    }
    let by_model_blocked = by_model.intersection(eff.block);
    if !by_model_blocked.is_empty() {
        offer_candidate(&mut best, Candidate::model(by_model_blocked));
    }
    if let Some(e) = eff.policy.entries.best_match(request) {
        offer_candidate(&mut best, Candidate::entry(e, Class::Policy, None));
    }
    for o in &eff.overrides {
        if let Some(e) = o.entries.best_match(request) {
            let idx = set.overrides.iter().position(|x| std::ptr::eq(x, *o));
            offer_candidate(&mut best, Candidate::entry(e, Class::Override, idx));
        }
    }

    match best {
        Some(c) => {
            let action = if c.verdict == Verdict::Block { Action::Block } else { Action::Allow };
            let by_model = c.rule == Rule::Model;
            let mut d = decision(action, c.rule, c.decisive, c.list_match);
            if c.list_match.is_none() {
                d.entry = Some(c.entry);
            }
            if by_model {
                d.list = Some("model".into());
            }
            if action == Action::Block { d } else { allowed(d) }
        }
        // A guess the policy does not block leaves the site as unlisted as it was.
        None if listed.is_empty() && eff.policy.uncategorised == Verdict::Block => decision(Action::Block, Rule::Uncategorised, CategorySet::EMPTY, None),
        None => allowed(decision(Action::Allow, Rule::Default, CategorySet::EMPTY, None)),
    }
}

impl Decision {
    /// Finds the words behind a model decision (`casino`, `bet`) and names
    /// them as its entry. Left out of [`decide`] because it costs more than
    /// the guess itself, and only a person reading the decision needs it:
    /// `haven check`, and the suggestions queue once per new host.
    pub fn explain_model(&mut self, lists: &dyn ListLookup, request: &Request) {
        if self.rule != Rule::Model {
            return;
        }
        if let Some(g) = &mut self.guess
            && g.evidence.is_empty()
        {
            lists.explain_guess(request, g);
            self.entry = Some(g.evidence.join(", "));
        }
    }
}

fn offer_candidate<'a>(best: &mut Option<Candidate<'a>>, c: Candidate<'a>) {
    let better = match best {
        None => true,
        Some(b) => c.rank() > b.rank() || (c.rank() == b.rank() && c.verdict == Verdict::Block),
    };
    if better {
        *best = Some(c);
    }
}

fn restricted(target: Target, categories: CategorySet) -> CategorySet {
    match target {
        Target::All => categories,
        Target::Categories(c) => c.intersection(categories),
    }
}

fn with_safe_search(mut d: Decision, host: &str, settings: crate::safesearch::SafeSearch) -> Decision {
    if let Some(target) = Engine::of_host(host).and_then(|e| e.safe_host(settings)) {
        d.action = Action::SafeSearch;
        d.safe_search_host = Some(target);
    }
    d
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    ListBlock,
    ListAllow,
    Policy,
    Override,
}

struct Candidate<'a> {
    verdict: Verdict,
    specificity: Specificity,
    class: Class,
    rule: Rule,
    decisive: CategorySet,
    list_match: Option<&'a ListMatch>,
    entry: String,
}

impl<'a> Candidate<'a> {
    fn list(verdict: Verdict, class: Class, decisive: CategorySet, m: &'a ListMatch) -> Self {
        let rule = if verdict == Verdict::Block { Rule::BlockedCategory } else { Rule::AllowedCategory };
        // Expressions guess; they rank below every listed entry.
        let specificity = if m.kind == MatchKind::Expression { Specificity::default() } else { m.specificity };
        Self { verdict, specificity, class, rule, decisive, list_match: Some(m), entry: String::new() }
    }

    /// The model's category: below every listed entry and every staff entry.
    fn model(decisive: CategorySet) -> Self {
        Self {
            verdict: Verdict::Block,
            specificity: Specificity::default(),
            class: Class::ListBlock,
            rule: Rule::Model,
            decisive,
            list_match: None,
            entry: String::new(),
        }
    }

    fn entry(e: EntryMatch, class: Class, r#override: Option<usize>) -> Self {
        Self {
            verdict: e.verdict,
            specificity: e.specificity,
            class,
            rule: Rule::Entry { verdict: e.verdict, r#override },
            decisive: CategorySet::EMPTY,
            list_match: None,
            entry: e.entry,
        }
    }

    fn rank(&self) -> (Specificity, Class) {
        (self.specificity, self.class)
    }
}
