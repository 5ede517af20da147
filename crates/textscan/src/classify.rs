//! The rule classifier: weighted phrases per category of concern, context
//! rules, personal data, and a level for each category found.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::OnceLock;

use aho_corasick::{AhoCorasick, MatchKind};
use serde::Serialize;

use crate::concern::Concern;
use crate::normalize::normalize;
use crate::pii;

/// A lexicon file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LexiconError {
    /// Not TOML, or not the lexicon's shape.
    #[error("lexicon is not valid: {0}; see crates/textscan/lexicon/en.toml for the format")]
    Format(String),
    /// A table that names no category.
    #[error("lexicon table [{0}] is not a category; use one of offensive, sexual, vulnerable, bullying, oversharer, grooming, extremism, general")]
    UnknownCategory(String),
    /// A phrase that normalises to almost nothing ("kkk" → "k") would match
    /// almost every text.
    #[error("lexicon phrase {0:?} is under 3 letters once normalised and would match almost everything; give a longer phrase")]
    TooShort(String),
    /// An exclusion without its reason.
    #[error("lexicon exclusion {0:?} needs a reason, as text: \"{0}\" = \"why it is not a concern here\"")]
    ExclusionReason(String),
    /// A weight outside 1–5.
    #[error("lexicon phrase {phrase:?} has weight {weight}; weights run from 1 (mild) to 5 (threat to life)")]
    Weight {
        /// The phrase.
        phrase: String,
        /// Its weight.
        weight: i64,
    },
}

impl Example {
    /// An `[[example]]` table: `text`, `category` (a category, or "none"),
    /// `level` (1–5, for a category) and `reason`.
    fn from_toml(v: &toml::Value) -> Result<Self, LexiconError> {
        let field = |k: &str| v.get(k).and_then(toml::Value::as_str).map(str::trim).filter(|s| !s.is_empty());
        let bad = |what: &str| {
            LexiconError::Format(format!("an [[example]] needs {what}: text = \"…\", category = \"vulnerable\" or \"none\", level = 1–5, reason = \"why\""))
        };
        let text = field("text").ok_or_else(|| bad("its text"))?;
        let reason = field("reason").ok_or_else(|| bad("a reason"))?;
        let category = field("category").ok_or_else(|| bad("a category"))?;
        let concern = match category {
            "none" | "not a concern" => None,
            c => Some(Concern::parse(c).ok_or_else(|| LexiconError::UnknownCategory(c.to_string()))?),
        };
        let level = match concern {
            None => 0,
            Some(_) => {
                let l = v.get("level").and_then(toml::Value::as_integer).ok_or_else(|| bad("a level"))?;
                if !(1..=5).contains(&l) {
                    return Err(LexiconError::Weight { phrase: text.to_string(), weight: l });
                }
                l as u8
            }
        };
        Ok(Self { text: text.to_string(), concern, level, reason: reason.to_string() })
    }
}

/// Phrases and weights for one language.
#[derive(Debug, Clone)]
pub struct Lexicon {
    /// Language code (`en`).
    pub language: String,
    entries: Vec<(Concern, String, u8)>,
    /// `[exclude]`: phrases that are never evidence, each with the reason
    /// someone gave ("Offa's Dyke" is a walk, "Scunthorpe" a town).
    pub exclusions: Vec<(String, String)>,
    /// `[[example]]`: sentences a DSL wants treated a certain way.
    pub examples: Vec<Example>,
    /// Haven's own lists, rather than a trust's or a school's.
    shipped: bool,
}

/// A sentence a DSL teaches the classifier with: "treat messages like this
/// as …", always with a reason. Read before the semantic stage: a text very
/// close to it is treated as it says.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// The example sentence.
    pub text: String,
    /// Its category; `None`: not a concern.
    pub concern: Option<Concern>,
    /// The level to give it (ignored when not a concern).
    pub level: u8,
    /// Why.
    pub reason: String,
}

/// The lexicons shipped with Haven.
const SHIPPED: &[&str] = &[include_str!("../lexicon/en.toml"), include_str!("../lexicon/pl.toml"), include_str!("../lexicon/ro.toml")];

impl Lexicon {
    /// Parses a lexicon file.
    pub fn parse(text: &str) -> Result<Self, LexiconError> {
        let value: toml::Table = toml::from_str(text).map_err(|e| LexiconError::Format(e.message().to_string()))?;
        let mut language = String::from("und");
        let mut entries = Vec::new();
        let mut exclusions = Vec::new();
        let mut examples = Vec::new();
        for (key, v) in value {
            match v {
                toml::Value::String(s) if key == "language" => language = s,
                toml::Value::Array(a) if key == "example" => {
                    for t in a {
                        examples.push(Example::from_toml(&t)?);
                    }
                }
                toml::Value::Table(t) if key == "exclude" => {
                    for (phrase, why) in t {
                        match why {
                            toml::Value::String(why) if !why.trim().is_empty() => exclusions.push((phrase, why)),
                            _ => return Err(LexiconError::ExclusionReason(phrase)),
                        }
                    }
                }
                toml::Value::Table(t) => {
                    let concern = Concern::parse(&key).ok_or_else(|| LexiconError::UnknownCategory(key.clone()))?;
                    for (phrase, w) in t {
                        let weight = w.as_integer().ok_or_else(|| LexiconError::Format(format!("{phrase:?} needs a number")))?;
                        if !(1..=5).contains(&weight) {
                            return Err(LexiconError::Weight { phrase, weight });
                        }
                        entries.push((concern, phrase, weight as u8));
                    }
                }
                _ => return Err(LexiconError::Format(format!("unexpected key {key:?}"))),
            }
        }
        Ok(Self { language, entries, exclusions, examples, shipped: false })
    }

    /// The same lexicon with a DSL's example sentences.
    pub fn with_examples(mut self, examples: Vec<Example>) -> Self {
        self.examples.extend(examples);
        self
    }

    /// A lexicon from entries kept elsewhere (the trust's record): phrases as
    /// (lexicon table or category name, phrase, weight), exclusions as
    /// (phrase, reason); checked as a file is, and phrases too short to use
    /// are refused rather than skipped.
    pub fn from_entries<'a>(
        language: &str,
        phrases: impl IntoIterator<Item = (&'a str, &'a str, u8)>,
        exclusions: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, LexiconError> {
        let mut entries = Vec::new();
        for (category, phrase, weight) in phrases {
            let concern = Concern::parse(category).ok_or_else(|| LexiconError::UnknownCategory(category.to_string()))?;
            if !(1..=5).contains(&weight) {
                return Err(LexiconError::Weight { phrase: phrase.to_string(), weight: i64::from(weight) });
            }
            Self::usable(phrase)?;
            entries.push((concern, phrase.to_string(), weight));
        }
        let mut excluded = Vec::new();
        for (phrase, why) in exclusions {
            if why.trim().is_empty() {
                return Err(LexiconError::ExclusionReason(phrase.to_string()));
            }
            Self::usable(phrase)?;
            excluded.push((phrase.to_string(), why.to_string()));
        }
        Ok(Self { language: language.to_string(), entries, exclusions: excluded, examples: Vec::new(), shipped: false })
    }

    /// Whether a phrase (`*` ends allowed) is long enough to match with care.
    pub fn usable(phrase: &str) -> Result<(), LexiconError> {
        let open = phrase.starts_with('*') || phrase.ends_with('*');
        let norm = normalize(phrase.trim_matches('*')).text;
        if norm.len() < 3 || (open && norm.len() < 4) {
            return Err(LexiconError::TooShort(phrase.to_string()));
        }
        Ok(())
    }

    /// Haven's shipped lexicons.
    pub fn shipped() -> Vec<Self> {
        SHIPPED.iter().filter_map(|t| Self::parse(t).ok()).map(|l| Self { shipped: true, ..l }).collect()
    }
}

/// One category found in a text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Found {
    /// The category of concern.
    pub category: Concern,
    /// Its level, 1 (logged only) to 5 (threat to life).
    pub level: u8,
    /// How strongly the text shows it (sum of weighed evidence).
    pub score: f32,
}

/// A matched span of the original text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Span {
    /// Byte offset where it starts.
    pub start: usize,
    /// Byte offset where it ends.
    pub end: usize,
    /// The category it counted for.
    pub category: Concern,
}

/// The classifier's view of one text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Classification {
    /// Categories found, most serious first.
    pub categories: Vec<Found>,
    /// The highest level, if anything was found.
    pub level: Option<u8>,
    /// Where the evidence is in the original text.
    pub spans: Vec<Span>,
    /// One line a DSL can read.
    pub explanation: String,
}

struct Pattern {
    concern: Concern,
    weight: u8,
    phrase: String,
    /// `*shit`: the phrase may end a longer word ("bullshit").
    open_start: bool,
    /// `shit*`: the phrase may begin a longer word ("shithead").
    open_end: bool,
    /// A trust's or a school's own phrase: local knowledge no everyday
    /// look-alike the semantic stage reads lowers.
    local: bool,
}

/// The compiled classifier.
pub struct Classifier {
    patterns: Vec<Pattern>,
    matcher: AhoCorasick,
    /// The lexicons' `[exclude]` phrases, normalised.
    exclusions: Option<AhoCorasick>,
    model: Option<std::sync::Arc<crate::model::Model>>,
    semantic: Option<std::sync::Arc<crate::semantic::Semantic>>,
    /// The lexicons' example sentences with their vectors (made when a
    /// semantic stage is attached).
    examples: Vec<(Example, Vec<f32>)>,
    taught: Vec<Example>,
}

/// Words that, just before a phrase, deny it ("I would never kill myself").
const NEGATIONS: &[&str] = &["not", "never", "dont", "wont", "didnt", "doesnt", "isnt", "no", "nobody", "stop"];
/// First person and intent ("I'm going to", "tonight").
const INTENT: &[&str] = &["i", "im", "il", "gona", "going", "want", "wana", "tonight", "tomorow", "today", "now", "plan", "planing"];
/// What makes first-person ideation or self-harm a threat to life (level 5)
/// rather than a disclosure to act on today (4): an intent to act or a time
/// ("I'm going to", "tonight", "on Friday"). "I want to die" and "I've been
/// cutting" are level 4, as the issue's levels from meaning set; a method
/// named makes any of them 5 (`METHODS`).
const SOON: &[&str] = &[
    "gona",
    "going",
    "il",
    "tonight",
    "tomorow",
    "today",
    "plan",
    "planing",
    "planed",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
    "wekend",
];
/// Second person: an insult aimed at someone is name-calling, which the
/// policies treat as bullying, not just bad language.
const SECOND_PERSON: &[&str] = &["you", "youre", "your", "ya", "yo"];
/// Means, which make a statement of intent a plan.
const METHODS: &[&str] = &["pils", "rope", "bridge", "jump", "knife", "gun", "razor", "blade", "train", "overdose", "tablets", "bleach"];
/// Reported speech, news, school work, lyrics: talking about, not doing.
const REPORTING: &[&str] = &[
    "news",
    "article",
    "reported",
    "acording",
    "history",
    "esay",
    "homework",
    "leson",
    "song",
    "lyrics",
    "film",
    "movie",
    "bok",
    "character",
    "episode",
    "documentary",
    "reuters",
    "afp",
    "oficials",
    "spokesman",
    "spokeswoman",
    "corespondent",
    "journalist",
    "investigators",
    "prosecutors",
];
/// Gaming talk, where "kill" and "shoot" are the game.
const GAMING: &[&str] = &[
    "game",
    "gaming",
    "games",
    "g",
    "respawn",
    "loby",
    "match",
    "round",
    "fortnite",
    "minecraft",
    "cod",
    "headshot",
    "nob",
    "team",
    "spawn",
    "bos",
    "level",
    "server",
    "xbox",
    "steam",
    "clan",
];

/// Whether the text is game talk: a gaming word that is not part of an
/// idiom ("whoevers on the field tomorrow is fair game" is a threat, not a
/// game; "whats the game plan" is planning).
fn gaming_talk(words: &[&str]) -> bool {
    words.iter().enumerate().any(|(i, w)| GAMING.contains(w) && !(*w == "game" && (i > 0 && words[i - 1] == "fair" || words.get(i + 1) == Some(&"plan"))))
}

fn has_any(words: &[&str], list: &[&str]) -> bool {
    words.iter().any(|w| list.contains(w))
}

impl Classifier {
    /// Builds a classifier from lexicons (usually [`Lexicon::shipped`] plus a trust's own).
    pub fn new(lexicons: &[Lexicon]) -> Self {
        let mut patterns: Vec<Pattern> = Vec::new();
        for lex in lexicons {
            for (concern, phrase, weight) in &lex.entries {
                // Squeezing can shrink a phrase to a letter or two ("kkk" → "k"),
                // which would match everywhere: a file's such phrases are left out.
                if Lexicon::usable(phrase).is_err() {
                    continue;
                }
                let (open_start, open_end) = (phrase.starts_with('*'), phrase.ends_with('*'));
                let norm = normalize(phrase.trim_matches('*')).text;
                patterns.push(Pattern { concern: *concern, weight: *weight, phrase: norm, open_start, open_end, local: !lex.shipped });
            }
        }
        let matcher = AhoCorasick::builder().match_kind(MatchKind::Standard).build(patterns.iter().map(|p| p.phrase.as_str())).expect("phrases compile");
        let excluded: Vec<String> = lexicons.iter().flat_map(|l| &l.exclusions).map(|(p, _)| normalize(p).text).filter(|p| !p.is_empty()).collect();
        let exclusions =
            (!excluded.is_empty()).then(|| AhoCorasick::builder().match_kind(MatchKind::LeftmostLongest).build(&excluded).expect("exclusions compile"));
        let taught = lexicons.iter().flat_map(|l| l.examples.iter().cloned()).collect();
        Self { patterns, matcher, exclusions, model: None, semantic: None, examples: Vec::new(), taught }
    }

    /// Adds the semantic stage (and reads the lexicons' example sentences with it).
    pub fn with_semantic(mut self, semantic: Option<std::sync::Arc<crate::semantic::Semantic>>) -> Self {
        self.examples = match &semantic {
            Some(s) => self.taught.iter().map(|e| (e.clone(), s.encoder().embed(&e.text))).filter(|(_, v)| v.iter().any(|x| *x != 0.0)).collect(),
            None => Vec::new(),
        };
        self.semantic = semantic;
        self
    }

    /// Reads a person's recent messages together (oldest first), so a
    /// disclosure split over several lines is seen whole.
    pub fn classify_window(&self, messages: &[&str]) -> Classification {
        self.read(&messages.join("\n"), Reading::Pupil)
    }

    /// Adds a learned model beside the rules.
    pub fn with_model(mut self, model: Option<crate::model::Model>) -> Self {
        self.model = model.map(std::sync::Arc::new);
        self
    }

    /// Adds a learned model another classifier uses too (one copy in memory
    /// for every school's classifier).
    pub fn with_shared_model(mut self, model: Option<std::sync::Arc<crate::model::Model>>) -> Self {
        self.model = model;
        self
    }

    /// The shipped lexicons, and the shipped model if one was trained.
    pub fn shipped() -> Self {
        Self::new(&Lexicon::shipped()).with_shared_model(crate::model::Model::shipped_shared()).with_semantic(Some(crate::semantic::Semantic::shipped_shared()))
    }

    /// One [`shipped`](Self::shipped) classifier for the whole process: the
    /// proxy and the safeguarding service in one `haven serve` share it
    /// (about 10 MB of lexicon automaton and model each, otherwise).
    pub fn shipped_shared() -> std::sync::Arc<Self> {
        static SHARED: std::sync::OnceLock<std::sync::Arc<Classifier>> = std::sync::OnceLock::new();
        SHARED.get_or_init(|| std::sync::Arc::new(Self::shipped())).clone()
    }

    /// Classifies one text.
    pub fn classify(&self, text: &str) -> Classification {
        self.read(text, Reading::Pupil)
    }

    /// Classifies what a person wrote to report a concern (the block page's
    /// "I saw something worrying", the public report page). Telling an adult
    /// is the point of a report, so it is never discounted as talk about
    /// others (news, homework), and personal details in it are the
    /// reporter's own, not oversharing.
    pub fn classify_report(&self, text: &str) -> Classification {
        self.read(text, Reading::Report)
    }

    /// A glance for a request path that cannot wait milliseconds (the
    /// proxy's search terms): the rules, the word-piece model and a DSL's
    /// examples, not the transformer; and whether the semantic stage's gate
    /// finds the text worth a closer look (then whoever has the time, the
    /// safeguarding service, reads it with [`Classifier::classify`]).
    pub fn classify_glance(&self, text: &str) -> (Classification, bool) {
        let found = self.read_with(text, Reading::Pupil, Depth::Glance);
        let closer = self.semantic.as_ref().is_some_and(|s| s.worth_reading(text));
        (found, closer)
    }

    fn read(&self, text: &str, reading: Reading) -> Classification {
        self.read_with(text, reading, Depth::Read(None))
    }

    /// Classifies several pupils' texts: the same answers as
    /// [`Classifier::classify`] one at a time, in less time. The texts the
    /// transformer will be asked for (those its gate lets through, or the
    /// rules flagged above level 2) are read first in one pass, which reads
    /// its weights once for them all; a text it is asked for that was not
    /// foreseen is read on its own, as ever.
    pub fn classify_many(&self, texts: &[&str]) -> Vec<Classification> {
        let ahead = match &self.semantic {
            Some(semantic) if texts.len() > 1 => {
                let wanted: Vec<&str> = texts.iter().copied().filter(|t| self.will_read(semantic, t)).collect();
                Some(semantic.read_ahead(&wanted))
            }
            _ => None,
        };
        texts.iter().map(|t| self.read_with(t, Reading::Pupil, Depth::Read(ahead.as_ref()))).collect()
    }

    /// Whether [`Classifier::understand`] will ask the transformer for
    /// `text`, foreseen from a glance at it (the same tests, on the
    /// glance's findings): a wrong guess costs time, never an answer.
    fn will_read(&self, semantic: &crate::semantic::Semantic, text: &str) -> bool {
        let glance = self.read_with(text, Reading::Pupil, Depth::Glance).categories;
        if glance.iter().any(|f| f.level >= 5) {
            return false;
        }
        let closely = glance.iter().any(|f| f.level > 2);
        let banked = glance.iter().any(|f| !matches!(f.category, Concern::OffensiveUser | Concern::Oversharer | Concern::GeneralRisk));
        closely || ((banked || text.split_whitespace().count() >= crate::semantic::ALONE_WORDS) && semantic.worth_reading(text))
    }

    /// `depth`: whether the semantic stage may read the text (the
    /// milliseconds of [`crate::semantic::Transformer`]).
    fn read_with(&self, text: &str, reading: Reading, depth: Depth<'_>) -> Classification {
        let nz = normalize(text);
        let masked = self.mask_exclusions(&nz.text);
        let t = masked.as_deref().unwrap_or(&nz.text);
        let words: Vec<&str> = t.split(' ').collect();
        let reporting = reading == Reading::Pupil && (has_any(&words, REPORTING) || t.contains("police said") || t.contains("acording to"));
        let gaming = gaming_talk(&words);
        let method = has_any(&words, METHODS);
        let soon = has_any(&words, SOON);
        let mut evidence = Evidence::new();
        // Categories no look-alike lowers: what a trust's own phrase found,
        // and grooming seen in two of its moves at once.
        let mut stands: Vec<Concern> = Vec::new();
        // Whether others told the pupil to harm themselves (`told_to`).
        let mut told = false;
        let mut spans = Vec::new();
        let mut notes: BTreeMap<Concern, Vec<String>> = BTreeMap::new();
        for m in self.matcher.find_overlapping_iter(t) {
            let p = &self.patterns[m.pattern().as_usize()];
            let (mut s, mut e) = (m.start(), m.end());
            if !(p.open_start || s == 0 || t.as_bytes()[s - 1] == b' ') || !(p.open_end || ends_a_word(t, e)) {
                continue;
            }
            // A part of a word ("*fuck*") marks the whole word.
            s = t[..s].rfind(' ').map_or(0, |i| i + 1);
            e = t[e..].find(' ').map_or(t.len(), |i| e + i);
            if is_squeezed_homograph(&text[nz.original_span(s..e)]) {
                continue;
            }
            let before: Vec<&str> = t[..s].split(' ').filter(|w| !w.is_empty()).rev().take(4).collect();
            let mut discount = discount(p.concern, &before, reporting, gaming && !p.phrase.ends_with("yourself"));
            // "accounts keep telling me to kill myself": someone else's
            // words aimed at the pupil, which is bullying (being told to
            // die), not the pupil's own intent.
            if p.concern == Concern::VulnerablePerson && told_to(&before) {
                told = true;
                discount *= 0.5;
                weigh(&mut evidence, Concern::BullyingViolence, 3.0, false);
                notes.entry(Concern::BullyingViolence).or_default().push("told by others to harm themselves".into());
            }
            let lowered = discount < 1.0;
            let mut w = f32::from(p.weight) * discount;
            if !lowered
                && matches!(p.concern, Concern::VulnerablePerson | Concern::BullyingViolence)
                && (p.phrase.starts_with("i ") || has_any(&before, INTENT))
            {
                // Intent raises a threat to someone by one level at most: "I'm
                // going to beat you up" is serious, not a threat to life.
                w = if p.concern == Concern::BullyingViolence { (w * 1.5).min(w + 1.0) } else { w * 1.5 };
                // Without an intent to act soon, first-person ideation or
                // self-harm is level 4 at most (weight 5 over the default 2).
                if p.concern == Concern::VulnerablePerson && !soon {
                    w = w.min(5.0);
                }
                if method && p.weight >= 4 && p.concern == Concern::VulnerablePerson {
                    w = w.max(7.5);
                    notes.entry(p.concern).or_default().push("with a method".into());
                }
            }
            weigh(&mut evidence, p.concern, w, lowered);
            if p.local && !lowered {
                stands.push(p.concern);
            }
            spans.push((nz.original_span(s..e), p.concern));
            // "you stupid …", "you seem like a …": the insult has a target.
            // A sexual remark aimed at someone ("your tits", "send me nudes
            // u slag") is sexual harassment, which schools treat as bullying.
            let aimed = !gaming
                && !reporting
                && (has_any(&before[..before.len().min(3)], SECOND_PERSON) || (p.concern == Concern::SexualContent && after_is_second_person(t, e)));
            let note = match p.concern {
                Concern::OffensiveUser => Some("aimed at someone"),
                Concern::SexualContent if p.weight >= 2 => Some("sexual remark aimed at someone"),
                _ => None,
            };
            if let Some(note) = note.filter(|_| aimed) {
                weigh(&mut evidence, Concern::BullyingViolence, 2.0, false);
                spans.push((nz.original_span(s..e), Concern::BullyingViolence));
                notes.entry(Concern::BullyingViolence).or_default().push(note.into());
            }
        }
        if final_note(&words) {
            // "by the time anyone reads this ill already be gone": a note
            // left for whoever finds it, with final words, is a final act
            // (level 5), however ordinary its words.
            let discount = discount(Concern::VulnerablePerson, &[], reporting, false);
            weigh(&mut evidence, Concern::VulnerablePerson, 6.0 * discount, discount < 1.0);
            notes.entry(Concern::VulnerablePerson).or_default().push("a note left for whoever finds it, with final words".into());
        }
        if reading == Reading::Pupil && !reporting {
            let moves = grooming_moves(&words);
            if moves.len() >= 2 {
                stands.push(Concern::Grooming);
            }
            for (weight, note) in moves {
                // CEOP's and the NSPCC's grooming signs, in whatever words
                // carry them: keeping a child's carers out, flattering a
                // child for their age, asking who watches their phone.
                weigh(&mut evidence, Concern::Grooming, weight, false);
                notes.entry(Concern::Grooming).or_default().push(note.into());
            }
        }
        // A threat or a weapon at word `at`: weighed as violence, lowered
        // by news and games as any threat is, and marked in the text.
        let mut violence = |at: usize, weight: f32, note: &str| {
            let before: Vec<&str> = words[..at].iter().rev().take(4).copied().collect();
            let discount = discount(Concern::BullyingViolence, &before, reporting, gaming);
            let start: usize = words[..at].iter().map(|w| w.len() + 1).sum();
            weigh(&mut evidence, Concern::BullyingViolence, weight * discount, discount < 1.0);
            spans.push((nz.original_span(start..start + words[at].len()), Concern::BullyingViolence));
            notes.entry(Concern::BullyingViolence).or_default().push(note.into());
        };
        if let Some((verb, weight)) = aimed_threat(&words) {
            // "ill punch you", "im gonna burn down your house": a threat of
            // violence, the category's default signal (level 3; 4 when the
            // harm could kill). A game's "ill kill you" is the game.
            violence(verb, weight, "threat aimed at someone");
        }
        if let Some((weapon, weight)) = armed(&words) {
            // "bringing a blade in tmrw": a weapon carried is a concern the
            // DSL must hear of today (level 4); with a time or someone it is
            // for, it is a plan with the means at hand (5), as a suicide
            // plan is.
            violence(weapon, weight, if weight >= 5.0 { "a weapon carried, with a time or a target" } else { "a weapon carried" });
        }
        if !reporting && let Some(r) = aimed_putdown(&words) {
            // Name-calling aimed at someone ("ur so ugly", "you're pathetic"):
            // low on its own (level 2), but it is how bullying starts. Aimed
            // at a team-mate in game chat ("ur trash") it is the toxic play a
            // school logs as offensive language (level 1).
            let (concern, weight, note) =
                if gaming { (Concern::OffensiveUser, 1.0, "put-down in game chat") } else { (Concern::BullyingViolence, 2.0, "name-calling aimed at someone") };
            let start: usize = words[..r].iter().map(|w| w.len() + 1).sum();
            weigh(&mut evidence, concern, weight, false);
            spans.push((nz.original_span(start..start + words[r].len()), concern));
            notes.entry(concern).or_default().push(note.into());
        }
        if let Some((group, word)) = dehumanised_group(t) {
            // Contempt for a whole group of people ("dirty Africans", "invaders
            // flooding in"): the hate speech the Prevent duty asks staff to notice.
            weigh(&mut evidence, Concern::TerrorismExtremism, if reporting { 1.5 } else { 3.0 }, reporting);
            for r in [group, word.clone()] {
                spans.push((nz.original_span(r), Concern::TerrorismExtremism));
            }
            notes.entry(Concern::TerrorismExtremism).or_default().push("contempt for a group of people".into());
            if !reporting {
                // The same words are prejudice-based abuse, which schools
                // record as bullying (level 2) beside the Prevent concern.
                weigh(&mut evidence, Concern::BullyingViolence, 2.0, false);
                spans.push((nz.original_span(word.clone()), Concern::BullyingViolence));
                notes.entry(Concern::BullyingViolence).or_default().push("prejudice against a group".into());
            }
        }
        for shape in crate::shapes::find(&words) {
            // The shapes of a disclosure in any words (`shapes`): a plan
            // against someone, arrangements for after a death, violence at
            // home, exploitation. Context before them lowers them as it
            // lowers a phrase; a plan no look-alike explains away.
            if shape.corroborates && evidence.get(&shape.concern).is_none_or(|e| e.0 < threshold(shape.concern)) {
                continue;
            }
            let before: Vec<&str> = words[..shape.at].iter().rev().take(4).copied().collect();
            // A game explains a threat ("gonna shoot him at the gates" in a
            // match), not a poll, a shared photo or a life at home.
            let played = gaming && shape.concern == Concern::BullyingViolence && shape.stands;
            let discount = discount(shape.concern, &before, reporting && !shape.personal, played);
            weigh(&mut evidence, shape.concern, shape.weight * discount, discount < 1.0);
            if shape.stands && discount >= 1.0 {
                stands.push(shape.concern);
            }
            // The words the shape rests on and the two after ("stab that
            // teacher", "threw my mum"): one word alone says little.
            let start: usize = words[..shape.at].iter().map(|w| w.len() + 1).sum();
            let len = words[shape.at..(shape.at + 3).min(words.len())].join(" ").len();
            spans.push((nz.original_span(start..start + len), shape.concern));
            notes.entry(shape.concern).or_default().push(shape.note.into());
        }
        for f in pii::find(text).into_iter().filter(|_| reading == Reading::Pupil) {
            let w = match f.kind {
                pii::PiiKind::CardNumber | pii::PiiKind::NationalInsurance | pii::PiiKind::Password => 4.0,
                _ => 3.0,
            };
            weigh(&mut evidence, Concern::Oversharer, w, false);
            spans.push((f.span.clone(), Concern::Oversharer));
            notes.entry(Concern::Oversharer).or_default().push(f.kind.describe().to_string());
        }
        // Where a context rule (negation, news, a game) lowered the phrases of
        // a category, the model, which cannot see that context, is not asked.
        let mut discounted: Vec<Concern> = evidence.iter().filter(|(_, e)| e.2).map(|(c, _)| *c).collect();
        if has_any(&words, WEAPONS) && has_any(&words, TOOL_USE) {
            // A knife for food technology or camping: the rules saw the use,
            // which a sentence vector blurs into "bringing a knife in".
            discounted.push(Concern::BullyingViolence);
        }
        let mut categories: Vec<Found> = evidence
            .into_iter()
            .filter(|(c, (score, _, _))| *score >= threshold(*c))
            .map(|(c, (score, max, lowered))| Found { category: c, level: level(c, max, lowered), score })
            .collect();
        if let Some(model) = &self.model {
            let written = crate::normalize::normalize_as_written(text);
            let masked = self.mask_exclusions(&written.text);
            for (i, p) in model.predict_normalized(masked.as_deref().unwrap_or(&written.text)).into_iter().enumerate() {
                let c = Concern::ALL[i];
                // The model never raises personal data (the detectors do) and,
                // unexplained by a phrase, stays at or below the default level.
                let (review, alert) = (model.review[i], model.alert[i]);
                if p >= review && c != Concern::Oversharer && !discounted.contains(&c) && !categories.iter().any(|f| f.category == c) {
                    // Only a sure model (halfway from its alert threshold to
                    // certainty) reaches an alert's level; a fairly sure one is
                    // low (2); below that the finding is logged only (1), for
                    // spotting a pattern over weeks.
                    let level = if p >= (1.0 + alert) / 2.0 {
                        c.default_level().min(3)
                    } else if p >= alert {
                        c.default_level().min(2)
                    } else {
                        1
                    };
                    categories.push(Found { category: c, level, score: p });
                    notes.entry(c).or_default().push(format!("learned model, p={p:.2}"));
                }
            }
        }
        let context = Context { reporting, gaming, for_a_while: crate::shapes::for_a_while(&words), told };
        self.understand(text, reading, depth, context, (&discounted, &stands), &mut categories, &mut notes);
        categories.sort_by(|a, b| b.level.cmp(&a.level).then(b.score.total_cmp(&a.score)));
        let found: Vec<Concern> = categories.iter().map(|f| f.category).collect();
        let mut spans: Vec<Span> =
            spans.into_iter().filter(|(_, c)| found.contains(c)).map(|(r, c)| Span { start: r.start, end: r.end, category: c }).collect();
        spans.sort_by_key(|s| (s.start, s.end, s.category));
        spans.dedup_by(|a, b| a.start == b.start && a.end == b.end && a.category == b.category);
        let explanation = explain(text, &categories, &spans, &notes);
        Classification { level: categories.first().map(|f| f.level), categories, spans, explanation }
    }
}

/// From this probability the head's reading stands against the rules' news
/// and game words: it learned those look-alikes itself, and a game named as a
/// possession ("sorted who gets my xbox") is not game talk.
const CERTAIN_DESPITE_CONTEXT: f32 = 0.99;

/// A DSL's example this close (cosine) to a text decides it.
const TAUGHT_AT: f32 = 0.9;

/// How far a classification may read.
#[derive(Clone, Copy)]
enum Depth<'a> {
    /// The rules, the word-piece model and a DSL's examples: no
    /// transformer (a request path that cannot wait milliseconds).
    Glance,
    /// The transformer too, with the vectors read ahead for a batch.
    Read(Option<&'a crate::semantic::ReadAhead>),
}

impl Classifier {
    /// The semantic stage's view, merged into the rules' findings: a DSL's
    /// example sentence that the text is very close to decides; otherwise
    /// the kind of concern the text means raises its category to the
    /// kind's level (one lower when the head is only fairly sure, two lower in
    /// talk about others, or in a game for violence, which is the play there;
    /// not at all where a negation lowered the rules' phrases of that
    /// category).
    #[allow(clippy::too_many_arguments)]
    fn understand(
        &self,
        text: &str,
        reading: Reading,
        depth: Depth<'_>,
        Context { reporting, gaming, for_a_while, told }: Context,
        (discounted, stands): (&[Concern], &[Concern]),
        categories: &mut Vec<Found>,
        notes: &mut BTreeMap<Concern, Vec<String>>,
    ) {
        let Some(semantic) = &self.semantic else { return };
        let v = semantic.encoder().embed(text);
        if let Some((e, sim)) =
            self.examples.iter().map(|(e, x)| (e, crate::semantic::dot(&v, x))).max_by(|a, b| a.1.total_cmp(&b.1)).filter(|(_, s)| *s >= TAUGHT_AT)
        {
            match e.concern {
                None => {
                    // "Treat messages like this as not a concern": logged only.
                    for f in categories.iter_mut() {
                        f.level = f.level.min(1);
                        notes.entry(f.category).or_default().push(format!("a DSL's example says not a concern: {}", e.reason));
                    }
                }
                Some(c) => {
                    raise(categories, c, e.level, sim);
                    notes.entry(c).or_default().push(format!("like a DSL's example ({}): {}", e.reason, quote(&e.text)));
                }
            }
            return;
        }
        // A threat to life the rules found is already at the top level, and
        // no look-alike lowers it: the transformer's milliseconds go to
        // texts where its reading can change something.
        let Depth::Read(ahead) = depth else { return };
        if categories.iter().any(|f| f.level >= 5) {
            return;
        }
        // A finding above level 2 is read by the transformer whatever the
        // gate says: a look-alike may lower it. At level 1 or 2 the reading
        // could only raise it, which a text the gate stops is not worth
        // (measured: the same findings on every set, a quarter less time),
        // so such a text goes through the gate as unflagged text does.
        // Alone the stage says nothing in a few words (below), so a short
        // line is not worth the transformer's milliseconds, unless the rules
        // flagged a category the banks speak for, which its reading may
        // corroborate.
        let closely = categories.iter().any(|f| f.level > 2);
        let banked = categories.iter().any(|f| !matches!(f.category, Concern::OffensiveUser | Concern::Oversharer | Concern::GeneralRisk));
        if !closely && !banked && text.split_whitespace().count() < crate::semantic::ALONE_WORDS {
            return;
        }
        let close = match semantic.meaning_with(text, closely, ahead) {
            crate::semantic::Meaning::Concern(c) => c,
            crate::semantic::Meaning::Lookalike(l) => {
                // "Recovery, fiction, lessons… lower it": what the rules
                // found stays where a person sees it, but alerts nobody (a
                // level 5, intent and a method, never came this far).
                // A trust's own phrase is local knowledge the banks lack
                // ("zorblax shed" is Year 9's word for a fight): it stands,
                // as do two of grooming's moves at once, which no ordinary
                // message makes ("very clever for 8. do your mummy and
                // daddy check your tablet?", read as song lyrics).
                // In five words or fewer a sentence vector has too little
                // to read to overrule the words ("scared to go home
                // tonight" is not an ordinary low mood), as it has too
                // little to raise anything alone.
                if l.lowers && reading == Reading::Pupil && text.split_whitespace().count() >= crate::semantic::ALONE_WORDS {
                    for f in categories.iter_mut().filter(|f| f.category != Concern::Oversharer && f.level > 2 && !stands.contains(&f.category)) {
                        f.level = 2;
                        notes.entry(f.category).or_default().push(format!("lowered: close to an everyday look-alike ({})", l.close_to));
                    }
                }
                return;
            }
            crate::semantic::Meaning::Unclear => return,
        };
        // A negation the rules saw ("I would never…") stands: the banks hold
        // few negated statements, so the head is not trusted against it.
        if discounted.contains(&close.concern) {
            return;
        }
        let mut level = crate::semantic::level_for(close.level, close.probability);
        // Alone (the rules and the word-piece model seeing nothing of that
        // category), the stage reports only when it is fairly sure, and not
        // in five words or fewer ("see you at practice"), where a sentence vector has
        // too little to read.
        let corroborated = categories.iter().any(|f| f.category == close.concern || close.also.contains(&f.category));
        // A threat to life is reported from "more likely than not" alone
        // too (`semantic::LIFE_AT`).
        let alone = if close.level >= 5 { semantic.alone().min(crate::semantic::LIFE_AT) } else { semantic.alone() };
        if !corroborated && (close.probability < alone || text.split_whitespace().count() < crate::semantic::ALONE_WORDS) {
            return;
        }
        // "can you look after my dog this weekend": a pet minded for a
        // while is not a pet given away for ever, whatever the sentence
        // vector says (rules that saw an end, "when im gone", corroborate).
        if !corroborated && close.level >= 5 && close.concern == Concern::VulnerablePerson && for_a_while {
            return;
        }
        // "accounts keep telling me to kill myself" is close to a
        // sextortion victim's words in a sentence vector, but being told to
        // die is bullying: without images, a record or a demand it is not
        // sextortion.
        if told && close.kind == "sextortion" && !crate::shapes::leverage(text) {
            return;
        }
        // A game lowers violence, the play there, and nothing else: grooming
        // happens in game chat, and a pupil giving away their Xbox before a
        // date is not playing.
        let context = reporting || (gaming && close.concern == Concern::BullyingViolence);
        if reading == Reading::Pupil && context && close.probability < CERTAIN_DESPITE_CONTEXT {
            level = level.saturating_sub(2).max(1);
        }
        for c in std::iter::once(close.concern).chain(close.also.iter().copied()) {
            raise(categories, c, level, close.probability);
            notes.entry(c).or_default().push(format!("close to: {}", close.close_to));
        }
    }
}

/// Sets `concern` to at least `level`.
fn raise(categories: &mut Vec<Found>, concern: Concern, level: u8, score: f32) {
    match categories.iter_mut().find(|f| f.category == concern) {
        Some(f) => f.level = f.level.max(level),
        None => categories.push(Found { category: concern, level, score }),
    }
}

/// A short quotation of an example sentence.
fn quote(s: &str) -> String {
    let cut: String = s.chars().take(60).collect();
    if cut.len() < s.len() { format!("\"{cut}…\"") } else { format!("\"{cut}\"") }
}

/// What the rules saw of a text's context, for the semantic stage.
#[derive(Debug, Clone, Copy)]
struct Context {
    /// News, lessons, lyrics: talk about others.
    reporting: bool,
    /// Game chat.
    gaming: bool,
    /// Something arranged for a while ("this weekend", "while we're away").
    for_a_while: bool,
    /// Others told the pupil to harm themselves.
    told: bool,
}

/// Whose words a text is: a pupil's own, or a person reporting a concern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    Pupil,
    Report,
}

/// Per category: the summed weight, the strongest single weight, and whether
/// a context rule lowered any of it.
type Evidence = BTreeMap<Concern, (f32, f32, bool)>;

/// Adds one piece of evidence for `concern`.
fn weigh(evidence: &mut Evidence, concern: Concern, weight: f32, lowered: bool) {
    let e = evidence.entry(concern).or_insert((0.0, 0.0, false));
    e.0 += weight;
    e.1 = e.1.max(weight);
    e.2 |= lowered;
}

/// How much context lowers a serious category's phrase: a negation just
/// before it ("I would never…"), reporting (news, homework, lyrics) or a game,
/// where "kill" is the play. 1.0 when nothing lowers it.
fn discount(concern: Concern, before: &[&str], reporting: bool, gaming: bool) -> f32 {
    let serious = matches!(concern, Concern::VulnerablePerson | Concern::BullyingViolence | Concern::TerrorismExtremism | Concern::Grooming);
    let mut f = 1.0;
    if serious && negated(&before[..before.len().min(3)]) {
        f *= 0.25;
    }
    if serious && reporting {
        f *= 0.5;
    }
    if gaming && concern == Concern::BullyingViolence {
        f *= 0.4;
    }
    f
}

/// Whether a negation among the three words before a phrase (nearest
/// first) governs it. "stop" does only right before it ("trying to stop
/// hurting myself"; not "makes the noise stop is hurting myself"), and
/// "nobody"/"no" not across knowing or caring ("nobody knows im hurting
/// myself" is a disclosure, not a denial).
fn negated(near: &[&str]) -> bool {
    near.iter().enumerate().any(|(i, w)| match *w {
        "stop" => i == 0,
        "nobody" | "no" => !near[..i].iter().any(|b| AWARENESS.contains(b)),
        w => NEGATIONS.contains(&w),
    })
}

/// Whether a text is written to whoever will find or read it ("by the time
/// anyone reads this", "whoever finds this", "if youre reading this") and
/// holds final words ("already be gone", "at peace", "my decision", "look
/// after my…"; not a bare "goodbye", which ends a school year too): the
/// goodbye note Papyrus and Samaritans list among the signs of a suicide
/// plan. Either alone is ordinary ("by the time u read this ill be on the
/// plane", "please look after my dog this weekend"). Normalised, squeezed
/// words: "u" and "ur" arrive as "you" and "your".
fn final_note(words: &[&str]) -> bool {
    const READER: &[&str] = &["you", "anyone", "anybody", "someone", "somebody", "they", "mum", "dad", "people", "everyone"];
    const READS: &[&str] = &["read", "reads", "se", "ses", "find", "finds", "get", "gets", "open", "opens"];
    let this = |w: Option<&&str>| matches!(w, Some(&"this" | &"these" | &"it"));
    let addressed = (0..words.len()).any(|i| {
        let at = |k: usize| words.get(i + k).copied();
        let reader_reads = |k: usize| at(k).is_some_and(|w| READER.contains(&w)) && at(k + 1).is_some_and(|w| READS.contains(&w)) && this(words.get(i + k + 2));
        match words[i] {
            "by" => at(1) == Some("the") && at(2) == Some("time") && reader_reads(3),
            "whoever" => {
                (at(1).is_some_and(|w| READS.contains(&w)) && this(words.get(i + 2)))
                    || (at(1) == Some("is") && at(2) == Some("reading") && this(words.get(i + 3)))
            }
            "if" | "when" => {
                reader_reads(1)
                    || (matches!(at(1), Some("youre" | "your")) && at(2) == Some("reading") && this(words.get(i + 3)))
                    || (at(1).is_some_and(|w| READER.contains(&w)) && matches!(at(2), Some("are" | "is")) && at(3) == Some("reading") && this(words.get(i + 4)))
            }
            _ => false,
        }
    });
    let last = (0..words.len()).any(|i| {
        let at = |k: usize| words.get(i + k).copied();
        match words[i] {
            "gone" => !matches!(at(1), Some("to" | "for" | "home" | "out" | "of" | "on" | "back")),
            // "ill already be dead", not "dead asleep" or "dead good".
            "dead" => {
                i > 0
                    && matches!(words[i - 1], "already" | "be" | "am" | "im")
                    && !matches!(at(1), Some("aslep" | "tired" | "bored" | "serious" | "funy" | "god" | "jel" | "jealous" | "lol" | "lmao"))
            }
            "wont" | "not" => at(1) == Some("be") && matches!(at(2), Some("here" | "around" | "alive")),
            "al" => at(1) == Some("be") && at(2) == Some("over"),
            "at" => at(1) == Some("peace"),
            "my" => at(1) == Some("decision"),
            "lok" => at(1) == Some("after") && matches!(at(2), Some("my" | "mum" | "dad")),
            "dont" => at(1) == Some("blame"),
            "your" | "ur" => at(1) == Some("fault") && i > 0 && words[i - 1] == "not",
            _ => false,
        }
    });
    addressed && last
}

/// Adults a child answers to (squeezed: "mummy" is "mumy").
const CARERS: &[&str] =
    &["mum", "mom", "mam", "mumy", "dad", "dady", "parents", "parent", "nan", "nana", "grandma", "grandad", "carer", "carers", "family", "teacher", "teachers"];

/// The moves of grooming that rules can see whatever the words (normalised,
/// squeezed): keeping the child's carers out of it ("dont mention me to
/// your mum", "never show your dad this"), praise for the child's age
/// ("so mature for 13", "very clever for 8"), and asking whether carers
/// watch the child's phone. Each with its weight and the note a DSL reads.
fn grooming_moves(words: &[&str]) -> Vec<(f32, &'static str)> {
    let carer_at = |j: usize| words.get(j).is_some_and(|w| CARERS.contains(w));
    let mut found = Vec::new();
    // A negation, a verb of telling within two words, then "your" and a
    // carer within three more.
    let hides = (0..words.len()).any(|i| {
        let neg = match words[i] {
            "dont" | "never" => i + 1,
            "do" if words.get(i + 1) == Some(&"not") => i + 2,
            _ => return false,
        };
        (neg..(neg + 2).min(words.len())).any(|v| {
            matches!(words[v], "tel" | "mention" | "say" | "show" | "let") && (v + 1..(v + 4).min(words.len())).any(|j| words[j] == "your" && carer_at(j + 1))
        })
    });
    if hides {
        found.push((3.0, "keeping the child's parents or carers out of it"));
    }
    let flattery = (0..words.len()).any(|i| {
        let f = if words[i] == "grown" && words.get(i + 1) == Some(&"up") { i + 2 } else { i + 1 };
        matches!(words[i], "mature" | "clever" | "smart" | "grown" | "pretty" | "beautiful" | "gorgeous" | "sexy" | "developed" | "advanced")
            && words.get(f) == Some(&"for")
            && words.get(f + 1).is_some_and(|w| {
                w.parse::<u8>().is_ok_and(|n| (5..18).contains(&n)) || *w == "your" || (*w == "a" && words.get(f + 2).is_some_and(|n| n.parse::<u8>().is_ok()))
            })
    });
    if flattery {
        found.push((3.0, "praising a child as grown up for their age"));
    }
    let watched = (0..words.len()).any(|i| {
        matches!(words[i], "do" | "does" | "dont" | "doesnt")
            && words.get(i + 1) == Some(&"your")
            && carer_at(i + 2)
            && (i + 3..(i + 7).min(words.len()))
                .any(|j| matches!(words[j], "check" | "checks" | "read" | "reads" | "lok" | "loks" | "go" | "goes" | "watch" | "watches" | "monitor"))
    });
    if watched {
        found.push((2.0, "asking whether parents watch the child's phone"));
    }
    // "im the only one who really listens to you", "your friends dont
    // appreciate you": cutting the child off from others.
    let isolates = (0..words.len()).any(|i| {
        (words[i] == "only"
            && words.get(i + 1) == Some(&"one")
            && words.get(i + 2) == Some(&"who")
            && (i + 3..(i + 6).min(words.len())).any(|j| matches!(words[j], "listens" | "understands" | "gets" | "cares" | "loves" | "apreciates"))
            && words[i + 3..(i + 8).min(words.len())].contains(&"you"))
            || (words[i] == "your"
                && matches!(words.get(i + 1), Some(&("friends" | "mates" | "parents" | "family")))
                && matches!(words.get(i + 2), Some(&("dont" | "never" | "wont" | "cant")))
                && matches!(words.get(i + 3), Some(&("apreciate" | "understand" | "care" | "get" | "deserve" | "like" | "love" | "listen"))))
    });
    if isolates {
        found.push((3.0, "cutting the child off from friends and family"));
    }
    // "add me on snap instead", "download snap, this app isnt private
    // enough for us".
    let private = (0..words.len()).any(|i| {
        matches!(words[i], "add" | "download" | "move" | "message" | "snap" | "dm" | "text")
            && words[i + 1..(i + 10).min(words.len())].iter().any(|w| matches!(*w, "private" | "instead" | "secret"))
    });
    if private {
        found.push((2.0, "moving the child to a private app"));
    }
    // "sent u some vbucks", "after everything i bought you".
    let gifts = (0..words.len()).any(|i| {
        matches!(words[i], "sent" | "send" | "got" | "bought" | "buy" | "gave" | "give" | "put" | "sending" | "giving")
            && words[i + 1..(i + 3).min(words.len())].contains(&"you")
            && words[i + 1..(i + 6).min(words.len())]
                .iter()
                .any(|w| matches!(*w, "vbucks" | "robux" | "money" | "credit" | "gift" | "present" | "skins" | "skin" | "airtime" | "everything" | "giftcard"))
    });
    if gifts {
        found.push((2.0, "gifts, money or game credit for the child"));
    }
    found
}

/// Whether the words before a phrase (nearest first) make it an
/// instruction someone gave the pupil: "telling me to", "told me to go",
/// "said i should" (squeezed forms).
fn told_to(before: &[&str]) -> bool {
    let rest = match before {
        ["go", rest @ ..] => rest,
        rest => rest,
    };
    match rest {
        ["to", "me" | "u", by, ..] | ["should", "i", by, ..] => TOLD.contains(by),
        _ => false,
    }
}

/// Verbs of telling, as normalisation squeezes them.
const TOLD: &[&str] = &["teling", "tel", "tels", "told", "saying", "says", "said", "wants", "asking", "asked", "dared", "daring", "messaging", "messaged"];

/// Words of knowing and noticing, across which "nobody" negates nothing.
const AWARENESS: &[&str] = &["knows", "know", "knew", "cares", "care", "notices", "notice", "ses", "realises", "realizes", "understands", "asks", "believes"];

/// Whether one of the next two words after byte `e` is "you", "your"….
fn after_is_second_person(t: &str, e: usize) -> bool {
    t[e..].split(' ').filter(|w| !w.is_empty()).take(2).any(|w| SECOND_PERSON.contains(&w))
}

/// Violence that can be threatened at someone (normalised, squeezed forms),
/// and whether it could kill.
const THREATS: &[(&str, bool)] = &[
    ("punch", false),
    ("hit", false),
    ("slap", false),
    ("kick", false),
    ("beat", false),
    ("bash", false),
    ("bater", false),
    ("smash", false),
    ("hurt", false),
    ("burn", false),
    ("jump", false),
    ("smack", false),
    ("whack", false),
    ("whop", false),
    ("fight", false),
    ("kil", true),
    ("stab", true),
    ("shot", true),
    ("murder", true),
    ("strangle", true),
    ("choke", true),
    ("drown", true),
    ("knife", true),
    ("rape", true),
];
/// Words of intent that turn "punch you" into a threat ("ill", "gonna",
/// "going to", "wanna", "let's"; squeezed forms). Bare "I" is not enough:
/// "sorry if I hurt you".
const THREAT_INTENT: &[&str] = &["il", "wil", "gona", "going", "wana", "ima", "lets", "should", "gota", "id"];

/// A threat of violence at the reader: a harm verb with "you"/"your" within
/// two words after it and a word of intent within four before it. Returns the
/// verb's word position and the weight.
fn aimed_threat(words: &[&str]) -> Option<(usize, f32)> {
    words.iter().enumerate().find_map(|(i, w)| {
        let lethal = THREATS.iter().find(|(v, _)| v == w)?.1;
        let aimed = words[i + 1..].iter().take(2).any(|o| SECOND_PERSON.contains(o));
        let intent = words[i.saturating_sub(4)..i].iter().any(|b| THREAT_INTENT.contains(b));
        (aimed && intent).then_some((i, if lethal { 4.0 } else { 3.0 }))
    })
}

/// Weapons a pupil may carry (normalised, squeezed forms).
const WEAPONS: &[&str] = &["knife", "knifes", "knives", "blade", "blades", "shank", "machete", "machetes", "gun", "guns", "pistol"];
/// Carrying, within three words before the weapon.
const CARRYING: &[&str] =
    &["bring", "brings", "bringing", "brought", "cary", "carying", "caries", "caried", "pack", "packing", "taking", "tuck", "tucked", "hold"];
/// A time or a target that turns carrying into a plan.
const WHEN_OR_WHOM: &[&str] = &[
    "tomorow",
    "tonight",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "break",
    "lunch",
    "later",
    "him",
    "her",
    "them",
    "hes",
    "shes",
    "theyre",
    "geting",
];
/// Where a knife is a tool: cooking, crafts, camping; toys that fire water
/// or glue.
const TOOL_USE: &[&str] = &[
    "fod",
    "coking",
    "cok",
    "tech",
    "dt",
    "recipe",
    "bread",
    "buter",
    "cake",
    "piza",
    "fruit",
    "fork",
    "forks",
    "spon",
    "cutlery",
    "picnic",
    "sandwich",
    "sandwiches",
    "veg",
    "vegetables",
    "kitchen",
    "choping",
    "camping",
    "scouts",
    "fishing",
    "whitling",
    "carving",
    "pumpkin",
    "craft",
    "lino",
    "stanley",
    "nerf",
    "water",
    "glue",
    "toy",
    "starting",
];

/// A weapon carried: a weapon word with a carrying verb within three words
/// before it, not where the knife is a tool. Returns the weapon's word
/// position and the weight (4; 5 with a time or a target).
fn armed(words: &[&str]) -> Option<(usize, f32)> {
    if has_any(words, TOOL_USE) {
        return None;
    }
    let i = words.iter().enumerate().position(|(i, w)| WEAPONS.contains(w) && words[i.saturating_sub(3)..i].iter().any(|b| CARRYING.contains(b)))?;
    Some((i, if has_any(words, WHEN_OR_WHOM) || crate::shapes::when_or_where(words) { 5.0 } else { 4.0 }))
}

/// Everyday words that squeezing turns into a matched phrase: the country
/// Niger reads as a racist slur once "gg" is squeezed, Shiite as "shite".
const SQUEEZED_HOMOGRAPHS: &[&str] = &["niger", "nigers", "shiite", "shiites"];

/// Whether the original words of a match are one of [`SQUEEZED_HOMOGRAPHS`],
/// as written (any case, apostrophes dropped); no allocation on the match path.
fn is_squeezed_homograph(original: &str) -> bool {
    let letters = || original.chars().filter(|c| *c != '\'' && *c != '\u{2019}').flat_map(char::to_lowercase);
    original.len() <= 12 && SQUEEZED_HOMOGRAPHS.iter().any(|h| letters().eq(h.chars()))
}

impl Classifier {
    /// The normalised text with the lexicons' excluded phrases blanked out
    /// (same length, so spans still map back), if any occur as whole words.
    fn mask_exclusions(&self, t: &str) -> Option<String> {
        let ac = self.exclusions.as_ref()?;
        let b = t.as_bytes();
        let mut out: Option<Vec<u8>> = None;
        for m in ac.find_iter(t) {
            let (s, e) = (m.start(), m.end());
            if (s == 0 || b[s - 1] == b' ') && ends_a_word(t, e) {
                let e = t[e..].find(' ').map_or(t.len(), |i| e + i);
                out.get_or_insert_with(|| b.to_vec())[s..e].fill(b' ');
            }
        }
        // Blanking whole characters with ASCII spaces keeps valid UTF-8.
        out.map(|v| String::from_utf8(v).expect("char boundaries kept"))
    }
}

/// Whether a phrase ending at `e` ends a word, allowing the plural and
/// third-person `s` and `es` ("idiot" finds "idiots", "hate" finds "hates").
fn ends_a_word(t: &str, e: usize) -> bool {
    let b = t.as_bytes();
    let at = |i: usize| i == b.len() || b[i] == b' ';
    at(e) || (b.get(e) == Some(&b's') && at(e + 1)) || (b.get(e) == Some(&b'e') && b.get(e + 1) == Some(&b's') && at(e + 2))
}

/// Put-downs about a person's looks, body or worth (normalised, squeezed forms).
const PUTDOWNS: &[&str] = &[
    "ugly",
    "fat",
    "pathetic",
    "loser",
    "fake",
    "nasty",
    "disgusting",
    "gros",
    "weird",
    "freak",
    "worthles",
    "useles",
    "lame",
    "imature",
    "anoying",
    "stupid",
    "dumb",
    "idiot",
    "skank",
    "slut",
    "whore",
    "fagot",
    "retard",
    "lonely",
    "lowlife",
    "crep",
    "perv",
    "pervert",
    "minger",
    "tramp",
    "trash",
    "garbage",
    "worst",
    "clown",
    "nob",
    "suck",
    "lazy",
    "bum",
    "cow",
    "jerk",
    "sicko",
    "psycho",
    "weirdo",
    "rude",
    "scum",
    "slag",
    "mong",
    "brat",
];

/// The position of a put-down aimed at someone: "you're ugly", "ur so fake",
/// "your face is nasty" (second person within three words before it).
fn aimed_putdown(words: &[&str]) -> Option<usize> {
    words.iter().enumerate().find_map(|(i, w)| {
        let base = w.strip_suffix('s').filter(|b| PUTDOWNS.contains(b)).unwrap_or(w);
        (PUTDOWNS.contains(&base) && words[i.saturating_sub(3)..i].iter().any(|p| SECOND_PERSON.contains(p) || *p == "ure")).then_some(i)
    })
}

/// Peoples, faiths and groups that hate speech targets (normalised forms,
/// singular; plurals match too).
const GROUPS: &[&str] = &[
    "black",
    "blacks",
    "jew",
    "muslim",
    "moslem",
    "islam",
    "imigrant",
    "refuge",
    "asylum seker",
    "african",
    "asian",
    "arab",
    "mexican",
    "gypsy",
    "gypsie",
    "traveler",
    "paki",
    "indian",
    "chinese",
    "polish",
    "romanian",
    "gay",
    "lesbian",
    "trans",
    "homosexual",
    "foreigner",
    "non white",
    "nonwhite",
    "mudslum",
    "negro",
    // Not the racist slur: squeezed it is the country Niger, and the
    // lexicon finds the slur itself.
    "their kind",
    "their own kind",
    "these people",
    "those people",
    "migrant",
    "race",
];
/// Words that deny a group its humanity or cast it as a threat.
const DEHUMANISING: &[&str] = &[
    "dirty",
    "filthy",
    "vermin",
    "parasite",
    "parasitical",
    "animal",
    "savage",
    "subhuman",
    "scum",
    "invader",
    "invasion",
    "infest",
    "infestation",
    "breding",
    "cockroach",
    "ape",
    "monkey",
    "inferior",
    "undesirable",
    "degenerate",
    "exterminate",
    "wipe out",
    "get rid of",
    "send them back",
    "go back to",
    "dont belong",
    "destroy our",
    "out bred",
    "outbred",
];

/// The word positions of a group word and a dehumanising word within three
/// words of each other, if the text has them.
fn dehumanised_group(t: &str) -> Option<(Range<usize>, Range<usize>)> {
    static AC: OnceLock<(AhoCorasick, usize)> = OnceLock::new();
    let (ac, groups) = AC.get_or_init(|| {
        let ac = AhoCorasick::new(GROUPS.iter().chain(DEHUMANISING)).expect("word lists compile");
        (ac, GROUPS.len())
    });
    let b = t.as_bytes();
    let mut group: Vec<(usize, Range<usize>)> = Vec::new();
    let mut contempt: Vec<(usize, Range<usize>)> = Vec::new();
    for m in ac.find_overlapping_iter(t) {
        let (s, mut e) = (m.start(), m.end());
        if !(s == 0 || b[s - 1] == b' ') || !ends_a_word(t, e) {
            continue;
        }
        while e < b.len() && b[e] != b' ' {
            e += 1;
        }
        let word = b[..s].iter().filter(|&&c| c == b' ').count();
        if m.pattern().as_usize() < *groups { group.push((word, s..e)) } else { contempt.push((word, s..e)) }
    }
    contempt.iter().find_map(|(d, dr)| group.iter().find(|(g, gr)| gr.start != dr.start && g.abs_diff(*d) <= 3).map(|(_, gr)| (gr.clone(), dr.clone())))
}

/// Evidence needed before a category is raised: one clear phrase, or several milder ones.
fn threshold(c: Concern) -> f32 {
    match c {
        Concern::OffensiveUser => 1.0,
        Concern::Oversharer => 3.0,
        Concern::Grooming | Concern::TerrorismExtremism => 3.0,
        _ => 2.0,
    }
}

/// The default level is the level of a clear (weight 3; for extremism, a
/// threat, weight 5) detection; stronger or
/// weaker evidence moves it. Evidence a context rule lowered never raises it.
fn level(c: Concern, max_weight: f32, lowered: bool) -> u8 {
    // Terrorism/Extremism's default (5) is for threats and calls to violence,
    // which weigh 5; hateful words alone sit lower.
    let reference = if c == Concern::TerrorismExtremism { 5.0 } else { 3.0 };
    let shift = (max_weight - reference).round() as i32;
    let l = (i32::from(c.default_level()) + shift).clamp(1, 5) as u8;
    if lowered { l.min(c.default_level()) } else { l }
}

fn explain(text: &str, found: &[Found], spans: &[Span], notes: &BTreeMap<Concern, Vec<String>>) -> String {
    if found.is_empty() {
        return "nothing of concern".into();
    }
    found
        .iter()
        .map(|f| {
            let quoted: Vec<String> = spans
                .iter()
                .filter(|s| s.category == f.category)
                .take(3)
                .map(|s| format!("\u{201c}{}\u{201d}", text.get(s.start..s.end).unwrap_or_default()))
                .collect();
            let head = format!("{} (level {})", f.category.name(), f.level);
            match (quoted.is_empty(), notes.get(&f.category)) {
                (false, Some(n)) => format!("{head}: {} ({})", quoted.join(", "), n.join(", ")),
                (false, None) => format!("{head}: {}", quoted.join(", ")),
                // Only the meaning spoke: say what it was close to, not an empty quote.
                (true, Some(n)) => format!("{head}: {}", n.join(", ")),
                (true, None) => head,
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c() -> Classifier {
        Classifier::shipped()
    }

    /// A finding made by meaning alone says what it was close to, with no
    /// empty quote before it; one with quoted words keeps both.
    #[test]
    fn an_explanation_without_quoted_words_reads_cleanly() {
        let found = [Found { category: Concern::VulnerablePerson, level: 5, score: 1.0 }];
        let notes = BTreeMap::from([(Concern::VulnerablePerson, vec!["close to: gathering the means".to_string()])]);
        assert_eq!(explain("saved up my tablets", &found, &[], &notes), "Vulnerable person (level 5): close to: gathering the means");
        let spans = [Span { start: 12, end: 19, category: Concern::VulnerablePerson }];
        assert_eq!(
            explain("saved up my tablets", &found, &spans, &notes),
            "Vulnerable person (level 5): \u{201c}tablets\u{201d} (close to: gathering the means)"
        );
        assert_eq!(explain("x", &found, &[], &BTreeMap::new()), "Vulnerable person (level 5)");
    }

    /// The context words are compared with the normalised text, where
    /// "book" is "bok": a word written unsqueezed would never match.
    #[test]
    fn context_words_are_written_as_the_normalised_text_reads() {
        let lists: &[(&str, &[&str])] = &[
            ("INTENT", INTENT),
            ("SOON", SOON),
            ("METHODS", METHODS),
            ("REPORTING", REPORTING),
            ("GAMING", GAMING),
            ("AWARENESS", AWARENESS),
            ("CARRYING", CARRYING),
            ("WHEN_OR_WHOM", WHEN_OR_WHOM),
            ("TOOL_USE", TOOL_USE),
            ("PUTDOWNS", PUTDOWNS),
            ("GROUPS", GROUPS),
            ("DEHUMANISING", DEHUMANISING),
            ("WEAPONS", WEAPONS),
            ("SECOND_PERSON", SECOND_PERSON),
            ("THREAT_INTENT", THREAT_INTENT),
        ];
        let threats: Vec<&str> = THREATS.iter().map(|(w, _)| *w).collect();
        let mut dead = Vec::new();
        for (name, list) in lists.iter().copied().chain(std::iter::once(("THREATS", threats.as_slice()))) {
            for w in list {
                if normalize(w).text != *w {
                    dead.push(format!("{name} holds {w:?}, read as {:?}", normalize(w).text));
                }
            }
        }
        assert!(dead.is_empty(), "words the normalised text never contains:\n{}", dead.join("\n"));
    }

    /// The shipped lexicons without the model: what the rules alone decide.
    fn rules() -> Classifier {
        Classifier::new(&Lexicon::shipped())
    }

    fn top(text: &str) -> Option<(Concern, u8)> {
        c().classify(text).categories.first().map(|f| (f.category, f.level))
    }

    /// The level a text is raised at in one category (0: not raised), and
    /// the explanation to show when a test fails.
    fn level_in(concern: Concern, text: &str) -> (u8, String) {
        let r = c().classify(text);
        (r.categories.iter().find(|f| f.category == concern).map_or(0, |f| f.level), r.explanation)
    }

    #[test]
    fn clear_statements_are_found_with_spans() {
        let r = c().classify("i want to k1ll myself tonight, i have the pills");
        assert_eq!(r.categories[0].category, Concern::VulnerablePerson);
        assert_eq!(r.level, Some(5), "intent and a method: threat to life");
        let s = &r.spans[0];
        assert!("i want to k1ll myself tonight, i have the pills"[s.start..s.end].contains("k1ll myself"));
        assert!(r.explanation.contains("Vulnerable person (level 5)"), "{}", r.explanation);
    }

    #[test]
    fn evasion_forms_still_match() {
        for t in ["kms", "k i l l myself", "ｋｉｌｌ ｍｙｓｅｌｆ", "kіll mysеlf", "$uicidal", "I want to unalive myself"] {
            assert_eq!(top(t).map(|x| x.0), Some(Concern::VulnerablePerson), "{t}");
        }
    }

    #[test]
    fn context_lowers_or_removes() {
        assert_eq!(top("this homework is killing me"), None);
        assert_eq!(top("I would never kill myself"), None, "negated");
        assert!(top("the news article said he tried to kill himself").map(|x| x.1).unwrap_or(0) <= 2);
        let game = c().classify("gg that round, i will kill you next match noob");
        assert!(game.categories.iter().all(|f| f.category != Concern::BullyingViolence || f.level <= 3));
    }

    /// The levels from meaning: active ideation and self-harm are
    /// 4 (acted on today), a method or an intent to act soon makes them a
    /// threat to life (5, which wakes someone at night).
    #[test]
    fn first_person_ideation_is_level_4_and_a_time_or_a_method_makes_it_5() {
        let level = |t: &str| c().classify(t).categories.iter().find(|f| f.category == Concern::VulnerablePerson).map(|f| f.level);
        for t in ["i want to kill myself", "im self harming again"] {
            assert_eq!(level(t), Some(4), "{t}");
        }
        for t in ["i want to kill myself tonight", "im going to kill myself", "i want to die, ive got the pills", "i want to kill myself on friday"] {
            assert_eq!(level(t), Some(5), "{t}");
        }
    }

    /// Each text raised in `concern` at `at_least` or above (`raised`), or
    /// not.
    fn expect(concern: Concern, texts: &[&str], at_least: u8, raised: bool) {
        for t in texts {
            let (level, why) = level_in(concern, t);
            assert_eq!(level >= at_least, raised, "{t}: level {level} in {}, wanted {}{at_least} ({why})", concern.name(), if raised { "" } else { "under " });
        }
    }

    /// Pro-ana words are a disordered-eating concern (level 3) wherever
    /// they stand; "ana" alone is a name.
    #[test]
    fn pro_ana_words_are_disordered_eating() {
        expect(
            Concern::VulnerablePerson,
            &["anyone got thinspo for tonight", "need a strict ana coach, dm me", "my pro-ana account got taken down again"],
            3,
            true,
        );
        expect(Concern::VulnerablePerson, &["ana is coming to mine after school"], 1, false);
    }

    /// A note to whoever finds it, with final words, is a final act (5);
    /// either alone is an ordinary message.
    #[test]
    fn a_note_for_whoever_finds_it_with_final_words_is_level_5() {
        let notes = [
            "if youre reading this then its all over, none of it is your fault x",
            "by the time mum sees this i wont be here",
            "To whoever finds this: I am sorry. I am at peace now.",
        ];
        expect(Concern::VulnerablePerson, &notes, 5, true);
        let ordinary = [
            "by the time u see this ill be at the airport lol",
            "whoever finds this wallet please take it to reception",
            "if youre reading this youre amazing, have a good day",
            "by the time you read this ill have gone to bed, night",
            "if youre reading this, goodbye from year 11, what a year",
            "by the time u read this ill be dead asleep lol",
        ];
        expect(Concern::VulnerablePerson, &ordinary, 3, false);
        // Final words without a note's address are for the semantic stage
        // to weigh, not this rule.
        let nz = normalize("can you look after my dog this weekend");
        assert!(!final_note(&nz.text.split(' ').collect::<Vec<_>>()));
    }

    /// Grooming's moves are seen in words no list holds; a pupil's own
    /// family talk is not grooming.
    #[test]
    fn grooming_moves_in_any_words() {
        let moves = [
            "never show your dad these messages ok, hed ruin it",
            "you look really grown up for 12, the others must be jealous",
            "do not say anything to your mum about me",
            "Hi, you are very smart for 9. Does your mummy look at your tablet at night?",
        ];
        expect(Concern::Grooming, &moves, 4, true);
        // Two moves at once stand against a look-alike reading (this one
        // reads as everyday chat 0.92).
        expect(Concern::Grooming, &["nice goal today, ur so mature for 12. does ur mum check ur phone?"], 4, true);
        expect(
            Concern::Grooming,
            &["my mum checks my phone every night its so annoying", "dont tell mum i broke the vase", "she is really tall for 12"],
            3,
            false,
        );
    }

    /// County lines' own words are an exploitation disclosure (level 4);
    /// the crime named on TV is not.
    #[test]
    fn county_lines_words_are_a_disclosure() {
        expect(Concern::VulnerablePerson, &["cant come out, im going country tmrw for a week", "they keep me at the trap most nights now"], 4, true);
        expect(Concern::VulnerablePerson, &["watched a county lines documentary in pshe today"], 3, false);
    }

    /// A short disclosure is not explained away by a look-alike read in
    /// too few words, and fear of home is an abuse disclosure (4).
    #[test]
    fn a_short_disclosure_is_not_lowered_by_a_look_alike() {
        expect(Concern::VulnerablePerson, &["scared to go home tonight"], 4, true);
    }

    /// Being told to die is bullying; the pupil's own words are not theirs.
    #[test]
    fn being_told_to_kill_yourself_is_bullying() {
        expect(Concern::BullyingViolence, &["people in my year keep telling me to kill myself", "someone messaged me saying i should kill myself"], 3, true);
        expect(Concern::SexualContent, &["accounts i dont know keep telling me to kill myself"], 3, false);
        expect(Concern::SexualContent, &["he keeps telling me to kill myself or he posts my nudes"], 5, true);
        assert!(!told_to(&["to", "want", "i"]), "wanting to is the pupil's own intent");
    }

    /// The shapes of a disclosure (`shapes`) reach a DSL at their level
    /// through the whole classifier: a plan is not explained away as
    /// hyperbole, a book named beside final arrangements does not make them
    /// a story, and a game word does not lower a shared humiliation.
    #[test]
    fn shapes_reach_their_level_through_the_classifier() {
        expect(Concern::BullyingViolence, &["im gonna stab that teacher swear down", "gonna run him over in my brothers car when he crosses"], 5, true);
        expect(Concern::VulnerablePerson, &["left letters for my mum and sister in my english book. tonights the night"], 5, true);
        expect(Concern::VulnerablePerson, &["he threw my mum against the wall again last night", "my uncle makes me keep secrets about what he does"], 4, true);
        expect(Concern::BullyingViolence, &["spread it round n send her the pic of her crying lol"], 3, true);
        expect(Concern::BullyingViolence, &["were gonna murder them on saturday", "gonna kill my brother for eating my crisps"], 3, false);
        expect(Concern::VulnerablePerson, &["can you look after my rabbit while were in spain", "can you look after my dog this weekend"], 3, false);
        expect(Concern::VulnerablePerson, &["can you look after my dog after this weekend, like forever"], 4, true);
    }

    /// Game words lower violence, the play in a game, and nothing else.
    #[test]
    fn game_words_do_not_lower_a_plan_or_grooming() {
        // A row of `semantic/check_set.jsonl`, read at level 3 while game
        // words lowered every reading.
        let r = c().classify("gave my xbox n all my hoodies to my cousin today. wont need them after friday tbh");
        assert!(r.categories.iter().any(|f| f.category == Concern::VulnerablePerson && f.level >= 5), "{}", r.explanation);
    }

    #[test]
    fn threats_and_grooming() {
        assert_eq!(top("i know where you live and im going to kill you").map(|x| x.0), Some(Concern::BullyingViolence));
        let g = c().classify("this is our little secret, dont tell your parents");
        assert_eq!(g.categories[0].category, Concern::Grooming);
        assert!(g.level >= Some(4));
        // Secrecy and isolation in other words than "secret".
        for text in ["are your parents home? you can trust me", "turn off your location, nobody has to know"] {
            let g = c().classify(text);
            assert!(g.categories.iter().any(|f| f.category == Concern::Grooming && f.level >= 3), "{text}: {}", g.explanation);
        }
        // Pupils' own plans use none of it.
        let plan = c().classify("my mum is home, come round after school");
        assert!(plan.categories.iter().all(|f| f.category != Concern::Grooming), "{}", plan.explanation);
    }

    #[test]
    fn insults_aimed_at_someone_are_bullying() {
        let r = c().classify("you stupid bitch");
        assert!(r.categories.iter().any(|f| f.category == Concern::BullyingViolence));
        let r = c().classify("this stupid printer");
        assert!(r.categories.iter().all(|f| f.category != Concern::BullyingViolence));
    }

    #[test]
    fn contempt_for_a_group_is_extremism_but_not_in_the_news() {
        let r = c().classify("dirty Africans are parasites on our welfare");
        assert_eq!(r.categories[0].category, Concern::TerrorismExtremism);
        assert!(r.explanation.contains("contempt for a group"), "{}", r.explanation);
        let r = rules().classify("Reuters: officials say migrants were called vermin by the gang");
        assert!(r.categories.iter().all(|f| f.category != Concern::TerrorismExtremism), "{}", r.explanation);
        let r = rules().classify("the dirty kit is in the African studies room");
        assert!(r.categories.iter().all(|f| f.category != Concern::TerrorismExtremism), "adjacent but not about people: {}", r.explanation);
    }

    #[test]
    fn name_calling_aimed_at_someone_is_low_level_bullying() {
        let rules = rules();
        let r = rules.classify("your face is nasty and ur so ugly");
        let b = r.categories.iter().find(|f| f.category == Concern::BullyingViolence).expect("bullying");
        assert_eq!(b.level, 2, "{}", r.explanation);
        assert!(rules.classify("this weather is ugly").categories.is_empty(), "not aimed at anyone");
        assert!(rules.classify("the news said the ugly scenes shocked you").categories.iter().all(|f| f.category != Concern::BullyingViolence));
    }

    #[test]
    fn put_downs_in_game_chat_are_offensive_language_not_bullying() {
        let rules = rules();
        let r = rules.classify("gg ur trash, worst team ever");
        assert_eq!(r.categories.iter().map(|f| (f.category, f.level)).collect::<Vec<_>>(), [(Concern::OffensiveUser, 1)], "{}", r.explanation);
        let r = rules.classify("honestly you are trash and everyone knows it");
        assert!(r.categories.iter().any(|f| f.category == Concern::BullyingViolence && f.level == 2), "{}", r.explanation);
        // Must not: a put-down aimed at nobody, or trash that is rubbish.
        assert!(rules.classify("take the trash out before the match").categories.is_empty());
    }

    #[test]
    fn the_model_alone_logs_below_its_alert_threshold_and_never_passes_level_3() {
        use crate::model::Model;
        let rows: Vec<(String, Vec<Concern>)> = (0..100)
            .flat_map(|i| {
                [(format!("meet behind the zorblax shed {i}"), vec![Concern::BullyingViolence]), (format!("see you at football practice {i}"), vec![])]
            })
            .collect();
        let mut model = Model::train(&rows, 1 << 12, 200, [false; 8]);
        let text = "meet behind the zorblax shed";
        let b = Concern::ALL.iter().position(|c| *c == Concern::BullyingViolence).unwrap();
        let p = model.predict(text)[b];
        assert!(p > 0.5 && p < 1.0, "p={p}");
        let level = |m: &Model| {
            let r = rules().with_model(Some(m.clone())).classify(text);
            r.categories.iter().find(|f| f.category == Concern::BullyingViolence).map(|f| f.level)
        };
        (model.review[b], model.alert[b]) = (p + 0.001, p + 0.002);
        assert_eq!(level(&model), None, "below both thresholds");
        (model.review[b], model.alert[b]) = (p - 0.01, p + 0.001);
        assert_eq!(level(&model), Some(1), "logged only");
        model.alert[b] = (3.0 * p - 1.0) / 2.0;
        assert_eq!(level(&model), Some(2), "fairly sure: low");
        model.alert[b] = (2.0 * p - 1.0) - 0.01;
        assert_eq!(level(&model), Some(3), "very sure: the default (3) at most");
    }

    #[test]
    fn holocaust_denial_is_extremism_but_history_is_not() {
        let rules = rules();
        let r = rules.classify("the holocaust never happened, wake up");
        assert!(r.categories.iter().any(|f| f.category == Concern::TerrorismExtremism && f.level >= 3), "{}", r.explanation);
        let r = rules.classify("we are learning about the holocaust in history this term");
        assert!(r.categories.iter().all(|f| f.category != Concern::TerrorismExtremism || f.level < 3), "{}", r.explanation);
    }

    #[test]
    fn prejudice_based_slurs_are_bullying() {
        let rules = rules();
        for bad in ["shut up you fag", "he called him a paki", "stop being such a spaz"] {
            let r = rules.classify(bad);
            assert!(r.categories.iter().any(|f| f.category == Concern::BullyingViolence && f.level == 2), "{bad}: {}", r.explanation);
        }
        // Must not: the everyday words left out of the list.
        for ok in ["we walked along Offa's Dyke", "a chink of light under the door"] {
            assert!(rules.classify(ok).categories.is_empty(), "{ok}");
        }
    }

    #[test]
    fn mild_words_about_ones_own_day_are_not_offensive() {
        let rules = rules();
        for ok in
            ["damn, I forgot my homework again", "what the hell happened to the bus", "he'll be there at five", "this maths is crap", "I feel so stupid today"]
        {
            let r = rules.classify(ok);
            assert!(r.categories.iter().all(|f| f.category != Concern::OffensiveUser), "{ok}: {}", r.explanation);
        }
        for bad in ["go to hell", "you piece of crap", "white trash", "f*ck off", "sh*t team", "stfu fkin noob"] {
            let r = rules.classify(bad);
            assert!(r.categories.iter().any(|f| f.category == Concern::OffensiveUser), "{bad}: {}", r.explanation);
        }
    }

    #[test]
    fn plurals_and_game_chat_self_harm_taunts() {
        let rules = rules();
        assert_eq!(rules.classify("5 players, 10 idiots").categories[0].category, Concern::OffensiveUser);
        let r = rules.classify("gg noob team, go hang yourself");
        assert!(r.categories.iter().any(|f| f.category == Concern::BullyingViolence && f.level >= 3), "{}", r.explanation);
    }

    #[test]
    fn the_model_does_not_overrule_a_negation() {
        let r = c().classify("honestly I would never kill myself, I love my life");
        assert!(r.categories.iter().all(|f| f.category != Concern::VulnerablePerson), "{}", r.explanation);
    }

    #[test]
    fn fair_game_and_a_game_plan_are_not_game_talk() {
        assert!(!gaming_talk(&["anyone", "there", "is", "fair", "game"]));
        assert!(!gaming_talk(&["whats", "the", "game", "plan"]));
        assert!(gaming_talk(&["good", "game", "lads"]));
        let r = c().classify("whats the game plan for tomorrow, i want him hurt bad");
        assert!(r.categories.iter().any(|f| f.category == Concern::BullyingViolence && f.level >= 4), "{}", r.explanation);
    }

    #[test]
    fn a_negation_governs_only_what_it_stands_before() {
        let rules = rules();
        for text in ["the only thing that makes the noise in my head stop is hurting myself", "nobody knows im hurting myself"] {
            let r = c().classify(text);
            assert!(r.categories.iter().any(|f| f.category == Concern::VulnerablePerson && f.level >= 4), "{text}: {}", r.explanation);
        }
        for text in ["i would never hurt myself", "nobody is going to kill themselves over a test"] {
            let r = rules.classify(text);
            assert!(r.categories.iter().all(|f| f.category != Concern::VulnerablePerson || f.level < 3), "{text}: {}", r.explanation);
        }
    }

    #[test]
    fn oversharing_personal_data() {
        let r = c().classify("my number is 07700 900123 and i live at 12 Oak Road");
        assert_eq!(r.categories[0].category, Concern::Oversharer);
        assert_eq!(r.level, Some(3));
        assert!(r.explanation.contains("mobile phone number"));
    }

    #[test]
    fn benign_text_is_nothing() {
        let r = c().classify("see you at football practice after school");
        assert!(r.categories.is_empty());
        assert_eq!(r.level, None);
        assert_eq!(r.explanation, "nothing of concern");
    }

    #[test]
    fn phrases_that_squeeze_to_almost_nothing_are_left_out() {
        let lex = Lexicon::parse("[extremism]\n\"kkk\" = 3\n").unwrap();
        let c = Classifier::new(&[lex]);
        assert!(c.classify("ok k see you").categories.is_empty());
    }

    #[test]
    fn polish_and_romanian_with_or_without_diacritics() {
        let r = rules();
        for t in ["chcę umrzeć", "chce umrzec", "vreau să mor", "vreau sa mor"] {
            assert_eq!(r.classify(t).categories.first().map(|f| f.category), Some(Concern::VulnerablePerson), "{t}");
        }
        assert_eq!(r.classify("nie mów rodzicom, to nasz sekret").categories[0].category, Concern::Grooming);
        assert!(r.classify("dzień dobry, jak się masz").categories.is_empty());
        assert!(Lexicon::shipped().iter().any(|l| l.language == "pl") && Lexicon::shipped().iter().any(|l| l.language == "ro"));
    }

    #[test]
    fn threats_aimed_at_someone_are_bullying() {
        let rules = rules();
        let level = |t: &str| rules.classify(t).categories.iter().find(|f| f.category == Concern::BullyingViolence).map(|f| f.level);
        for t in ["if you dont answer im going to burn down your house", "ill punch you in the face tomorrow", "im gonna smash you after school"] {
            assert_eq!(level(t), Some(3), "{t}");
        }
        assert_eq!(level("ill stab you if you tell"), Some(5), "a weapon, with intent");
        assert!(rules.classify("i wana stab you").explanation.contains("threat aimed at someone"));
        // Must not: no intent, denied, a game, a report.
        for t in ["sorry if i hurt you yesterday", "i would never hit you", "gg ill kill you next round", "the article says he will hit you with fines"] {
            assert!(level(t).unwrap_or(0) < 3, "{t}: {}", rules.classify(t).explanation);
        }
    }

    #[test]
    fn exclusion_and_shaming_are_bullying() {
        let rules = rules();
        for t in ["get a life, nobody wants you here", "go play in traffic", "honestly you have no friends", "what a waste of space"] {
            assert!(rules.classify(t).categories.iter().any(|f| f.category == Concern::BullyingViolence && f.level >= 2), "{t}");
        }
        for t in ["you are so rude to everyone", "youre such a jerk"] {
            assert!(rules.classify(t).categories.iter().any(|f| f.category == Concern::BullyingViolence), "{t}");
        }
        // Must not: the same words about something else.
        for t in ["we need to get a life jacket for the trip", "can we clean your guinea pig together"] {
            assert!(rules.classify(t).categories.is_empty(), "{t}: {}", rules.classify(t).explanation);
        }
    }

    #[test]
    fn sexual_remarks_aimed_at_someone_are_harassment() {
        let rules = rules();
        let r = rules.classify("i jizz to your pics all the time");
        assert!(r.categories.iter().any(|f| f.category == Concern::BullyingViolence), "{}", r.explanation);
        assert!(r.explanation.contains("sexual remark aimed at someone"), "{}", r.explanation);
        let r = rules.classify("we learned about sex education in biology");
        assert!(r.categories.iter().all(|f| f.category != Concern::BullyingViolence), "{}", r.explanation);
    }

    #[test]
    fn contempt_for_a_group_is_also_prejudice_based_bullying() {
        let r = rules().classify("dirty Africans are parasites on our welfare");
        assert!(r.categories.iter().any(|f| f.category == Concern::BullyingViolence && f.level == 2), "{}", r.explanation);
        assert!(r.spans.iter().any(|s| s.category == Concern::BullyingViolence), "the words are highlighted for bullying too");
    }

    #[test]
    fn a_star_lets_a_phrase_be_part_of_a_word() {
        let rules = rules();
        for t in ["gg absolute fuckhead", "shut up motherfucking noob", "you cunts", "what a bitchy thing to say"] {
            assert!(rules.classify(t).categories.iter().any(|f| f.category == Concern::OffensiveUser), "{t}");
        }
        let r = rules.classify("gg absolute fuckhead");
        assert_eq!(&"gg absolute fuckhead"[r.spans[0].start..r.spans[0].end], "fuckhead", "the whole word is highlighted");
        // Must not: Scunthorpe, and Shiite (which squeezes to "shite").
        for t in ["we drove through Scunthorpe", "Shiite and Sunni Muslims pray together"] {
            assert!(rules.classify(t).categories.is_empty(), "{t}: {}", rules.classify(t).explanation);
        }
        let lex = Lexicon::parse("[offensive]\n\"*zz*\" = 1\n").unwrap();
        assert!(Classifier::new(&[lex]).classify("pizza").categories.is_empty(), "a part of a word needs four letters");
    }

    #[test]
    fn racist_slurs_are_hate_speech_but_the_country_niger_is_not() {
        let rules = rules();
        let r = rules.classify("shut up you n1gger");
        assert!(r.categories.iter().any(|f| f.category == Concern::TerrorismExtremism && f.level == 3), "{}", r.explanation);
        assert!(r.categories.iter().any(|f| f.category == Concern::BullyingViolence), "{}", r.explanation);
        for ok in ["Niger is a country in West Africa", "Niger's capital is Niamey", "the Shiite shrine in Najaf"] {
            assert!(rules.classify(ok).categories.is_empty(), "{ok}: {}", rules.classify(ok).explanation);
        }
    }

    #[test]
    fn a_trusts_exclusions_are_never_evidence() {
        let local =
            Lexicon::parse("[exclude]\n\"dyke road\" = \"the road our school is on\"\n\"kill switch\" = \"Computing: the lesson on safe robots\"\n").unwrap();
        assert_eq!(local.exclusions.len(), 2);
        let mut lexicons = Lexicon::shipped();
        lexicons.push(Lexicon::parse("[bullying]\n\"dyke\" = 2\n").unwrap());
        let without = Classifier::new(&lexicons);
        lexicons.push(local);
        let with = Classifier::new(&lexicons);
        let t = "see you at the corner of Dyke Road";
        assert!(without.classify(t).categories.iter().any(|f| f.category == Concern::BullyingViolence));
        assert!(with.classify(t).categories.iter().all(|f| f.category != Concern::BullyingViolence), "{}", with.classify(t).explanation);
        // Must still find: the word outside the excluded phrase, and a concern beside it.
        let r = with.classify("you dyke, I will find you on Dyke Road and stab you");
        assert!(r.categories.iter().any(|f| f.category == Concern::BullyingViolence && f.level >= 4), "{}", r.explanation);
        let r = with.classify("press the k i l l switch then kill yourself");
        assert!(r.spans.iter().all(|s| s.start > 20), "only the second kill is evidence: {:?}", r.spans);
        assert!(Lexicon::parse("[exclude]\n\"dyke road\" = 1\n").unwrap_err().to_string().contains("needs a reason"));
        // The same from the trust's record, checked as strictly.
        let kept = Lexicon::from_entries("en", [("bullying", "dyke", 2)], [("dyke road", "the road our school is on")]).unwrap();
        let c = Classifier::new(&[kept]);
        assert!(c.classify("see you at the corner of Dyke Road").categories.is_empty());
        assert!(!c.classify("shut up you dyke").categories.is_empty());
        assert!(matches!(Lexicon::from_entries("en", [("bullying", "kkk", 2)], []), Err(LexiconError::TooShort(_))));
        assert!(matches!(Lexicon::from_entries("en", [("nonsense", "zorblax", 2)], []), Err(LexiconError::UnknownCategory(_))));
        assert!(matches!(Lexicon::from_entries("en", [], [("dyke road", " ")]), Err(LexiconError::ExclusionReason(_))));
    }

    #[test]
    fn extremist_topics_in_the_news_or_re_are_not_alerts_but_joining_is() {
        let rules = rules();
        for ok in ["ISIS claimed the attack, the BBC reports #Syria", "Thomas Becket was a martyr"] {
            let r = rules.classify(ok);
            assert!(r.categories.iter().all(|f| f.category != Concern::TerrorismExtremism || f.level < 3), "{ok}: {}", r.explanation);
        }
        for bad in ["i want to join isis", "i will become a martyr for the cause"] {
            let r = rules.classify(bad);
            assert!(r.categories.iter().any(|f| f.category == Concern::TerrorismExtremism && f.level >= 3), "{bad}: {}", r.explanation);
        }
    }

    #[test]
    fn lexicon_errors_name_the_fix() {
        assert!(Lexicon::parse("[nonsense]\n\"x\" = 1").unwrap_err().to_string().contains("offensive, sexual"));
        assert!(Lexicon::parse("[vulnerable]\n\"x\" = 9").unwrap_err().to_string().contains("1 (mild) to 5"));
    }

    #[test]
    fn a_report_is_read_on_its_own_words_not_as_news_and_not_as_oversharing() {
        let c = Classifier::shipped();
        // A parent's report: "reported" and the phone number are the reporter's, not the concern.
        let text = "I reported it already but my son is being blackmailed, someone says they will share his nudes unless he pays, call me on 07700 900123";
        let pupil = c.classify(text);
        let report = c.classify_report(text);
        assert!(report.categories.iter().all(|f| f.category != Concern::Oversharer), "{report:?}");
        let concern = |c: &Classification| c.categories.iter().filter(|f| f.category != Concern::Oversharer).map(|f| f.level).max();
        assert!(concern(&report) >= concern(&pupil) && concern(&report).is_some(), "{pupil:?} vs {report:?}");
        let words = "i think my friend wants to kill herself, she said the news made her feel hopeless";
        let (as_pupil, as_report) = (c.classify(words), c.classify_report(words));
        // "news" does not make a report talk about others: what it says still counts.
        assert!(as_report.level > as_pupil.level, "{as_pupil:?} vs {as_report:?}");
    }
}
