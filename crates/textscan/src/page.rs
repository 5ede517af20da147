//! Page-level classification: what a web page (or a chatbot's answer) is
//! about, for the proxy to decide on like a list category.
//!
//! Pages are not pupils' words, so this is not the monitoring classifier: it
//! asks "is this page pornography / a casino / promoting self-harm?", not "is
//! someone at risk?". Precision matters more than recall: a news story about
//! a casino ban, an NHS page about self-harm support, a history lesson on
//! extremism and a sex-education page must pass. So a category needs several
//! *distinct* signals at a high enough *density* (per 1,000 words), and
//! support, recovery, news and education signals in the same text lower it.
//!
//! Everything here is incremental and linear: [`HtmlText`] turns HTML bytes,
//! in whatever pieces they arrive, into visible text; [`PageScanner`] takes
//! that text in pieces and keeps counts, so judging again after each piece
//! costs only the signals found, never a pass over the whole text.

use std::collections::{HashMap, VecDeque};
use std::sync::OnceLock;

/// A category a page can be judged to be, named as Haven's web categories are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PageCategory {
    /// Pornography.
    Adult,
    /// Gambling operators.
    Gambling,
    /// Self-harm, suicide or eating disorders promoted (not support).
    SelfHarm,
    /// Extremist recruitment and propaganda (not history or news).
    Extremism,
    /// Dehumanising hate.
    Hate,
    /// Pages thick with swearing.
    Profanity,
}

impl PageCategory {
    /// Every category.
    pub const ALL: [Self; 6] = [Self::Adult, Self::Gambling, Self::SelfHarm, Self::Extremism, Self::Hate, Self::Profanity];

    /// The web category id it stands for (`adult`, `hate-speech`), as the
    /// policy's taxonomy spells it.
    pub fn id(self) -> &'static str {
        match self {
            Self::Adult => "adult",
            Self::Gambling => "gambling",
            Self::SelfHarm => "self-harm",
            Self::Extremism => "extremism",
            Self::Hate => "hate-speech",
            Self::Profanity => "profanity",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Whether a signal points towards a category or away from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pull {
    Harm,
    /// Support, recovery, news or education: lowers the category.
    Context,
}

struct Signal {
    phrase: &'static str,
    category: PageCategory,
    weight: u8,
    pull: Pull,
}

use PageCategory::{Adult, Extremism, Gambling, Hate, Profanity, SelfHarm};
use Pull::{Context, Harm};

/// (category, pull, weight, phrases). Phrases are whole words, lowercase,
/// punctuation written as a space (`self harm`, `in play`). Weight 3: only a
/// page of that kind says it; 1: a topic word any article about it uses.
const SIGNALS: &[(PageCategory, Pull, u8, &[&str])] = &[
    // What porn sites say about themselves.
    (
        Adult,
        Harm,
        3,
        &[
            "free porn",
            "porn videos",
            "sex videos",
            "sex video",
            "xxx videos",
            "milf",
            "blowjob",
            "cumshot",
            "sex cams",
            "camgirls",
            "cam girls",
            "horny",
            "pussy",
            "hardcore sex",
            "nsfw",
        ],
    ),
    (
        Adult,
        Harm,
        2,
        &["porn", "porno", "xxx", "hardcore", "nudes", "erotic", "fetish", "threesome", "anal", "stripper", "onlyfans", "live cams", "adults only"],
    ),
    (Adult, Harm, 1, &["naked", "nude", "sexy", "explicit", "babes", "escort"]),
    // Sex and relationships education, and sexual health.
    (Adult, Context, 3, &["sex education", "relationships education", "sexual health", "contraception", "puberty", "healthy relationships"]),
    (Adult, Context, 2, &["consent", "nhs", "pupils", "curriculum", "sexually transmitted", "online safety", "childline"]),
    (Adult, Context, 1, &["lesson", "teachers", "parents", "pregnancy", "advice"]),
    // What gambling operators say to sell it.
    (
        Gambling,
        Harm,
        3,
        &[
            "free spins",
            "deposit bonus",
            "welcome bonus",
            "no deposit",
            "place your bet",
            "bet now",
            "slot games",
            "sportsbook",
            "wagering requirements",
            "claim your bonus",
            "spin the reels",
            "live dealer",
            "min deposit",
            "play now",
        ],
    ),
    (
        Gambling,
        Harm,
        2,
        &[
            "online casino",
            "slots",
            "jackpot",
            "roulette",
            "blackjack",
            "wager",
            "accumulator",
            "in play",
            "cash out",
            "bookmaker",
            "betting odds",
            "big win",
            "place a bet",
        ],
    ),
    (Gambling, Harm, 1, &["casino", "gambling", "betting", "gamble", "poker", "odds", "bet", "bonus", "deposit"]),
    // News, regulation and help with gambling harm.
    (Gambling, Context, 3, &["gambling commission", "gamcare", "problem gambling", "gambling harm", "gambling harms", "gambling addiction"]),
    (Gambling, Context, 2, &["according to", "government", "minister", "ban", "banned", "regulator", "legislation", "addiction", "helpline", "council"]),
    (Gambling, Context, 1, &["said", "reported", "police", "court", "research", "study", "support"]),
    // Pro-suicide, pro-self-harm and pro-eating-disorder talk.
    (
        SelfHarm,
        Harm,
        3,
        &[
            "how to kill yourself",
            "ways to die",
            "painless way",
            "painless suicide",
            "suicide methods",
            "best way to die",
            "pro ana",
            "proana",
            "pro mia",
            "thinspo",
            "thinspiration",
            "meanspo",
            "cutting tips",
            "hide your cuts",
            "hide the cuts",
            "lethal dose",
            "no one will miss you",
            "goal weight",
            "ugw",
        ],
    ),
    (SelfHarm, Harm, 2, &["kill yourself", "end your life", "end it all", "starve", "starving", "noose", "purge", "blades", "fasting tips", "deserve to die"]),
    (SelfHarm, Harm, 1, &["suicide", "self harm", "cutting", "overdose", "razor", "calories", "skinny"]),
    // Support, recovery and prevention.
    (
        SelfHarm,
        Context,
        3,
        &[
            "samaritans",
            "childline",
            "papyrus",
            "you are not alone",
            "116 123",
            "shout 85258",
            "safety plan",
            "beat eating disorders",
            "get help",
            "talk to someone",
        ],
    ),
    (
        SelfHarm,
        Context,
        2,
        &["nhs", "helpline", "recovery", "mental health", "counselling", "treatment", "warning signs", "prevention", "call 999", "staying safe"],
    ),
    (SelfHarm, Context, 1, &["support", "crisis", "gp", "doctor", "worried", "help"]),
    // Recruitment and propaganda, as its authors write it.
    (
        Extremism,
        Harm,
        3,
        &[
            "join the jihad",
            "kuffar",
            "white power",
            "race war",
            "rahowa",
            "14 words",
            "blood and soil",
            "day of the rope",
            "sieg heil",
            "heil hitler",
            "take up arms",
            "brothers rise up",
            "saint tarrant",
            "zog",
        ],
    ),
    (
        Extremism,
        Harm,
        2,
        &[
            "holy war",
            "martyrdom",
            "infidels",
            "mujahideen",
            "great replacement",
            "accelerationism",
            "remigration",
            "pledge allegiance",
            "our enemies",
            "traitors",
        ],
    ),
    (Extremism, Harm, 1, &["martyr", "caliphate", "jihad", "manifesto", "lone wolf", "nationalist", "struggle"]),
    // History, news, and the Prevent duty's own words.
    (Extremism, Context, 3, &["counter terrorism", "key stage", "gcse", "historians", "radicalisation", "radicalization", "prevent duty"]),
    (Extremism, Context, 2, &["history", "lesson", "pupils", "curriculum", "museum", "world war", "according to", "extremism", "extremist", "extremists"]),
    (Extremism, Context, 1, &["reported", "said", "students", "century", "police", "court"]),
    // Dehumanising language about groups of people.
    (
        Hate,
        Harm,
        3,
        &[
            "subhuman",
            "untermensch",
            "go back to your country",
            "inferior race",
            "master race",
            "race traitor",
            "race traitors",
            "white genocide",
            "jewish question",
            "they are animals",
            "deport them all",
            "gas them",
        ],
    ),
    (Hate, Harm, 2, &["vermin", "invaders", "mongrels", "degenerates", "breeding like", "parasites", "kill them all"]),
    (Hate, Harm, 1, &["filthy", "globalist", "globalists", "scum"]),
    // Anti-racism, equality, history and news.
    (Hate, Context, 3, &["report hate crime", "stop hate", "anti racism", "tell mama", "hate crime"]),
    (Hate, Context, 2, &["history", "lesson", "pupils", "equality", "tolerance", "diversity", "racism", "discrimination", "according to"]),
    (Hate, Context, 1, &["reported", "said", "students", "police", "court"]),
    // Swearing; no context lowers it.
    (Profanity, Harm, 3, &["cunt", "cunts", "motherfucker", "motherfuckers"]),
    (Profanity, Harm, 2, &["fuck", "fucking", "fucked", "fucker", "fuckers", "wanker", "twat", "dickhead", "asshole", "arsehole"]),
    (Profanity, Harm, 1, &["shit", "shitty", "bullshit", "bitch", "bastard", "bollocks", "piss", "crap"]),
];

/// The most words any phrase has.
const MAX_PHRASE_WORDS: usize = 5;

/// Below this many words a page counts as this long, so a short page needs
/// as much evidence as a page of this length (a 20-word page with one rude
/// word is not "thick with swearing").
const MIN_WORDS: u32 = 250;
/// Distinct harm signals a category needs before it can be found at all.
const MIN_DISTINCT: usize = 3;
/// Harm weight, after context, a category needs in absolute terms.
const MIN_EVIDENCE: f32 = 8.0;
/// Harm weight per 1,000 words, after context, a category needs.
const MIN_DENSITY: f32 = 20.0;

/// FNV-1a: the keys are a few bytes long and not chosen by an attacker who
/// gains from collisions (the table is fixed), so a cheap hash is enough.
#[derive(Default)]
struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 { 0xcbf2_9ce4_8422_2325 } else { self.0 };
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

type FastMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<Fnv>>;

/// A word no phrase uses.
const UNKNOWN: u32 = u32::MAX;

struct Signals {
    list: Vec<Signal>,
    /// Every word any phrase uses, numbered: a page's other words cost one lookup.
    vocabulary: FastMap<&'static str, u32>,
    /// Phrases as their words' numbers.
    by_phrase: FastMap<Vec<u32>, Vec<usize>>,
}

fn signals() -> &'static Signals {
    static SIGNALS_ONCE: OnceLock<Signals> = OnceLock::new();
    SIGNALS_ONCE.get_or_init(|| {
        let mut list = Vec::new();
        let mut vocabulary: FastMap<&'static str, u32> = FastMap::default();
        let mut by_phrase: FastMap<Vec<u32>, Vec<usize>> = FastMap::default();
        for (category, pull, weight, phrases) in SIGNALS {
            for phrase in *phrases {
                debug_assert!(phrase.split(' ').count() <= MAX_PHRASE_WORDS);
                let key: Vec<u32> = phrase
                    .split(' ')
                    .map(|w| {
                        let next = vocabulary.len() as u32;
                        *vocabulary.entry(w).or_insert(next)
                    })
                    .collect();
                by_phrase.entry(key).or_default().push(list.len());
                list.push(Signal { phrase, category: *category, weight: *weight, pull: *pull });
            }
        }
        Signals { list, vocabulary, by_phrase }
    })
}

/// One category a page was judged to be.
#[derive(Debug, Clone, PartialEq)]
pub struct PageFinding {
    /// The category.
    pub category: PageCategory,
    /// Harm weight per 1,000 words after context (at least [`MIN_DENSITY`] to be found).
    pub score: f32,
    /// The phrases that weighed most, heaviest first.
    pub evidence: Vec<&'static str>,
}

/// What a page (so far) was judged to be.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PageVerdict {
    /// The categories found, in [`PageCategory`] order; empty for a benign page.
    pub found: Vec<PageFinding>,
    /// Words read.
    pub words: u32,
}

impl PageVerdict {
    /// Whether nothing was found.
    pub fn is_benign(&self) -> bool {
        self.found.is_empty()
    }
}

/// Visible text, taken in pieces: words are counted as they complete, so
/// each piece costs its own length and a verdict costs the signals found.
#[derive(Debug, Default)]
pub struct PageScanner {
    /// The last words' numbers, for phrases that span several.
    recent: VecDeque<u32>,
    word: String,
    counts: HashMap<usize, u32>,
    words: u32,
    key: Vec<u32>,
}

impl PageScanner {
    /// An empty scanner.
    pub fn new() -> Self {
        Self::default()
    }

    /// Words read so far.
    pub fn words(&self) -> u32 {
        self.words
    }

    /// Reads more text; a word split between two pieces is joined.
    pub fn push(&mut self, text: &str) {
        for c in text.chars() {
            if c.is_ascii_alphanumeric() {
                self.word.push(c.to_ascii_lowercase());
            } else if c.is_alphanumeric() {
                self.word.extend(c.to_lowercase());
            } else if matches!(c, '\'' | '\u{2019}') {
                // "don't" is one word, as the phrases are written.
            } else if !self.word.is_empty() {
                self.end_word();
            }
        }
    }

    /// The text has ended: its last word counts too.
    pub fn finish(&mut self) {
        if !self.word.is_empty() {
            self.end_word();
        }
    }

    fn end_word(&mut self) {
        self.words += 1;
        let s = signals();
        let id = s.vocabulary.get(self.word.as_str()).copied().unwrap_or(UNKNOWN);
        self.word.clear();
        if self.recent.len() == MAX_PHRASE_WORDS {
            self.recent.pop_front();
        }
        self.recent.push_back(id);
        if id == UNKNOWN {
            // Every phrase ending here would hold this word.
            return;
        }
        let n = self.recent.len();
        for len in 1..=n {
            let first = self.recent[n - len];
            if first == UNKNOWN {
                // Longer phrases would hold it too.
                break;
            }
            self.key.clear();
            self.key.extend(self.recent.range(n - len..));
            if let Some(ids) = s.by_phrase.get(self.key.as_slice()) {
                for &id in ids {
                    *self.counts.entry(id).or_insert(0) += 1;
                }
            }
        }
    }

    /// The verdict on what was read so far.
    pub fn verdict(&self) -> PageVerdict {
        let s = signals();
        let n = PageCategory::ALL.len();
        let mut harm = vec![0f32; n];
        let mut context = vec![0f32; n];
        let mut distinct = vec![0usize; n];
        let mut evidence: Vec<Vec<(f32, &'static str)>> = vec![Vec::new(); n];
        for (&id, &count) in &self.counts {
            let sig = &s.list[id];
            let c = sig.category.index();
            let w = f32::from(sig.weight);
            match sig.pull {
                Pull::Harm => {
                    // Repeats add, but at most double a signal: variety is the evidence.
                    let weighed = w * (1.0 + 0.5 * (count.saturating_sub(1).min(2) as f32));
                    harm[c] += weighed;
                    distinct[c] += 1;
                    evidence[c].push((weighed, sig.phrase));
                }
                Pull::Context => context[c] += w,
            }
        }
        let per_thousand = 1000.0 / self.words.max(MIN_WORDS) as f32;
        let mut found = Vec::new();
        for cat in PageCategory::ALL {
            let c = cat.index();
            if distinct[c] < MIN_DISTINCT {
                continue;
            }
            // Each 4 points of context halve, then third, the harm, and so on.
            let evidence_left = harm[c] / (1.0 + context[c] / 4.0);
            let score = evidence_left * per_thousand;
            if evidence_left >= MIN_EVIDENCE && score >= MIN_DENSITY {
                let mut e = std::mem::take(&mut evidence[c]);
                e.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
                found.push(PageFinding { category: cat, score, evidence: e.into_iter().take(6).map(|(_, p)| p).collect() });
            }
        }
        PageVerdict { found, words: self.words }
    }
}

/// Judges a whole text at once.
pub fn classify_page(text: &str) -> PageVerdict {
    let mut s = PageScanner::new();
    s.push(text);
    s.finish();
    s.verdict()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Text,
    /// After `<`.
    TagOpen,
    /// After `<!`, counting dashes towards a comment.
    Bang(u8),
    /// Inside `<!-- -->`, counting dashes towards its end.
    Comment(u8),
    /// Reading a tag's name.
    TagName,
    /// Inside a tag, after its name; the quote open, if any.
    InTag(u8),
    /// Inside `<script>` or `<style>`, matching the end tag.
    Raw(u8),
    /// After `&`.
    Entity,
}

/// HTML bytes to visible text, in whatever pieces they arrive: tags become
/// word breaks, `script` and `style` are skipped, comments dropped, common
/// entities decoded, and nothing past `max_bytes` is read. Malformed HTML
/// never fails; it reads as text.
#[derive(Debug)]
pub struct HtmlText {
    state: State,
    closing: bool,
    name: Vec<u8>,
    raw_end: &'static [u8],
    entity: Vec<u8>,
    /// Text bytes not yet decoded (a character split between pieces).
    pending: Vec<u8>,
    read: usize,
    max_bytes: usize,
}

const NAME_MAX: usize = 16;
const ENTITY_MAX: usize = 10;

impl HtmlText {
    /// An extractor that reads at most `max_bytes` of HTML.
    pub fn new(max_bytes: usize) -> Self {
        Self { state: State::Text, closing: false, name: Vec::new(), raw_end: b"", entity: Vec::new(), pending: Vec::new(), read: 0, max_bytes }
    }

    /// Whether the byte bound was reached.
    pub fn is_full(&self) -> bool {
        self.read >= self.max_bytes
    }

    /// HTML bytes read so far.
    pub fn bytes_read(&self) -> usize {
        self.read
    }

    /// Reads the next piece, appending its visible text to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut String) {
        let room = self.max_bytes.saturating_sub(self.read);
        let bytes = &bytes[..bytes.len().min(room)];
        self.read += bytes.len();
        let mut i = 0;
        while i < bytes.len() {
            // Runs of plain text, and of script or style, in bulk: most of a page.
            match self.state {
                State::Text => {
                    let run = bytes[i..].iter().position(|&b| b == b'<' || b == b'&').unwrap_or(bytes.len() - i);
                    self.pending.extend_from_slice(&bytes[i..i + run]);
                    i += run;
                }
                State::Raw(0) => i += bytes[i..].iter().position(|&b| b == b'<').unwrap_or(bytes.len() - i),
                _ => {}
            }
            if let Some(&b) = bytes.get(i) {
                self.byte(b, out);
                i += 1;
            }
        }
        self.flush(out, false);
    }

    /// The HTML has ended: whatever text is pending is written out.
    pub fn finish(&mut self, out: &mut String) {
        if self.state == State::Entity {
            self.pending.push(b'&');
            self.pending.extend_from_slice(&std::mem::take(&mut self.entity));
            self.state = State::Text;
        }
        self.flush(out, true);
    }

    fn flush(&mut self, out: &mut String, end: bool) {
        let mut rest = &self.pending[..];
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (good, bad) = rest.split_at(e.valid_up_to());
                    out.push_str(std::str::from_utf8(good).unwrap_or_default());
                    match e.error_len() {
                        Some(n) => {
                            out.push('\u{FFFD}');
                            rest = &bad[n..];
                        }
                        // A character cut between pieces: wait for its end.
                        None if !end => {
                            rest = bad;
                            break;
                        }
                        None => {
                            out.push('\u{FFFD}');
                            rest = &[];
                            break;
                        }
                    }
                }
            }
        }
        let keep = rest.len();
        let start = self.pending.len() - keep;
        self.pending.drain(..start);
    }

    fn brk(&mut self, out: &mut String) {
        self.flush(out, false);
        out.push(' ');
    }

    fn byte(&mut self, b: u8, out: &mut String) {
        match self.state {
            State::Text => match b {
                b'<' => self.state = State::TagOpen,
                b'&' => {
                    self.entity.clear();
                    self.state = State::Entity;
                }
                _ => self.pending.push(b),
            },
            State::TagOpen => match b {
                b'!' => self.state = State::Bang(0),
                b'/' => {
                    self.closing = true;
                    self.name.clear();
                    self.state = State::TagName;
                }
                b'?' => self.state = State::InTag(0),
                b if b.is_ascii_alphabetic() => {
                    self.closing = false;
                    self.name.clear();
                    self.name.push(b.to_ascii_lowercase());
                    self.state = State::TagName;
                }
                // "a < b": not a tag.
                _ => {
                    self.pending.push(b'<');
                    self.state = State::Text;
                    self.byte(b, out);
                }
            },
            State::Bang(n) => match b {
                b'-' if n == 1 => self.state = State::Comment(0),
                b'-' => self.state = State::Bang(1),
                b'>' => self.end_tag(out),
                _ => self.state = State::InTag(0),
            },
            State::Comment(dashes) => match b {
                b'-' => self.state = State::Comment(dashes.saturating_add(1)),
                b'>' if dashes >= 2 => self.end_tag(out),
                _ => self.state = State::Comment(0),
            },
            State::TagName => match b {
                b'>' => self.end_tag(out),
                b if b.is_ascii_whitespace() || b == b'/' => self.state = State::InTag(0),
                b => {
                    if self.name.len() < NAME_MAX {
                        self.name.push(b.to_ascii_lowercase());
                    }
                }
            },
            State::InTag(q) => match b {
                b'"' | b'\'' if q == 0 => self.state = State::InTag(b),
                b if b == q => self.state = State::InTag(0),
                b'>' if q == 0 => self.end_tag(out),
                _ => {}
            },
            State::Raw(matched) => {
                let m = usize::from(matched);
                if b.to_ascii_lowercase() == self.raw_end[m] {
                    if m + 1 == self.raw_end.len() {
                        // The end tag's name is read; its attributes and `>` follow.
                        self.closing = true;
                        self.name.clear();
                        self.state = State::InTag(0);
                    } else {
                        self.state = State::Raw(matched + 1);
                    }
                } else {
                    self.state = State::Raw(u8::from(b == b'<'));
                }
            }
            State::Entity => {
                if (b.is_ascii_alphanumeric() || b == b'#') && self.entity.len() < ENTITY_MAX {
                    self.entity.push(b);
                } else if b == b';' {
                    self.decode_entity();
                    self.state = State::Text;
                } else {
                    // Not an entity after all: the text as written.
                    self.pending.push(b'&');
                    self.pending.extend_from_slice(&std::mem::take(&mut self.entity));
                    self.state = State::Text;
                    self.byte(b, out);
                }
            }
        }
    }

    fn end_tag(&mut self, out: &mut String) {
        self.state = State::Text;
        if !self.closing {
            let end: Option<&'static [u8]> = match self.name.as_slice() {
                b"script" => Some(b"</script"),
                b"style" => Some(b"</style"),
                _ => None,
            };
            if let Some(end) = end {
                self.raw_end = end;
                self.state = State::Raw(0);
            }
        }
        self.name.clear();
        self.closing = false;
        self.brk(out);
    }

    fn decode_entity(&mut self) {
        let e = std::mem::take(&mut self.entity);
        let c = match e.as_slice() {
            b"amp" => Some('&'),
            b"lt" => Some('<'),
            b"gt" => Some('>'),
            b"quot" => Some('"'),
            b"apos" | b"rsquo" | b"lsquo" | b"#39" => Some('\''),
            b"nbsp" | b"ensp" | b"emsp" | b"thinsp" => Some(' '),
            b"ldquo" | b"rdquo" => Some('"'),
            b"ndash" | b"mdash" | b"hellip" => Some(' '),
            b"pound" => Some('£'),
            b"euro" => Some('€'),
            b"copy" => Some('©'),
            [b'#', b'x' | b'X', hex @ ..] => std::str::from_utf8(hex).ok().and_then(|h| u32::from_str_radix(h, 16).ok()).and_then(char::from_u32),
            [b'#', dec @ ..] => std::str::from_utf8(dec).ok().and_then(|d| d.parse::<u32>().ok()).and_then(char::from_u32),
            // Other named entities are rare in words; a break is safe.
            _ => Some(' '),
        };
        if let Some(c) = c {
            let mut buf = [0u8; 4];
            self.pending.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_of(html: &str, piece: usize) -> String {
        let mut x = HtmlText::new(usize::MAX);
        let mut out = String::new();
        for chunk in html.as_bytes().chunks(piece) {
            x.push(chunk, &mut out);
        }
        x.finish(&mut out);
        out.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn visible_text_whatever_the_pieces() {
        let html = "<!doctype html><html><head><title>Caf&eacute; &amp; Bar</title><style>p{color:red}</style>\
                    <script>var s = \"<p>not shown</p>\"; if (a < b) {}</script></head>\
                    <body><!-- a comment with <b>tags</b> --><p class=\"x > y\">Hello&nbsp;w&#246;rld, caf\u{e9} &#x263A; a < b</p>\
                    <SCRIPT type=\"x\">hidden()</SCRIPT ><p>end&unknown</p></body></html>";
        let whole = text_of(html, html.len());
        assert_eq!(whole, "Caf & Bar Hello wörld, café ☺ a < b end&unknown");
        for piece in [1, 2, 3, 7] {
            assert_eq!(text_of(html, piece), whole, "pieces of {piece} bytes");
        }
    }

    #[test]
    fn the_byte_bound_stops_reading() {
        let mut x = HtmlText::new(11);
        let mut out = String::new();
        x.push(b"<p>abcdef ghijkl", &mut out);
        assert!(x.is_full());
        x.push(b"more", &mut out);
        x.finish(&mut out);
        assert_eq!(out.trim(), "abcdef g");
    }

    #[test]
    fn words_and_phrases_split_between_pieces_are_found() {
        let mut s = PageScanner::new();
        for piece in ["free sp", "ins and a dep", "osit bonus, ", "welcome ", "bonus! Play no", "w at our online", " casino"] {
            s.push(piece);
        }
        s.finish();
        let v = s.verdict();
        assert_eq!(v.found.len(), 1, "{v:?}");
        assert_eq!(v.found[0].category, PageCategory::Gambling);
        assert!(v.found[0].evidence.contains(&"free spins") && v.found[0].evidence.contains(&"deposit bonus"));
    }

    const CASINO: &str = "Mega Spin Casino. Claim your bonus today: 100 free spins and a 200% deposit bonus! \
        Play now on over 500 slot games, live dealer roulette and blackjack. Bet now on the jackpot. \
        Wagering requirements apply. Min deposit £10.";

    const CASINO_NEWS: &str = "Council bans new casino on high street. The council said on Tuesday that plans for a casino \
        on the high street had been rejected after residents raised concerns about gambling addiction. \
        According to the Gambling Commission, problem gambling affects thousands of people. A government minister \
        said the ban was a matter for the council. Betting shops and online casino advertising have been criticised \
        by charities, which say more support is needed. The operator said it would appeal. Research published \
        last year found that young people see gambling adverts every day, and the regulator is consulting on \
        new legislation. GamCare runs a free helpline.";

    const SELF_HARM_SUPPORT: &str = "Self-harm: getting help. If you are self-harming, you are not alone. Self-harm is when \
        somebody intentionally damages or injures their body, such as cutting. It is usually a way of coping with \
        difficult feelings. Talk to someone you trust, or see a GP. You can call Samaritans free on 116 123, \
        or text SHOUT to 85258. Childline is free for young people. Warning signs include unexplained cuts, \
        bruises or burns. Treatment and recovery: counselling can help. If someone has taken an overdose or \
        is in danger, call 999. Thoughts of suicide are a crisis: get help now. NHS mental health services can support you.";

    const PRO_ANA: &str = "Thinspo and meanspo for the girls. My UGW is 40kg, goal weight by summer. Pro ana tips: \
        starve through the hunger, purge if you slip, count every one of the calories. Stay skinny, hide the cuts \
        under long sleeves. Fasting tips below.";

    const HISTORY: &str = "Key stage 3 history lesson: the rise of the Nazis. In this lesson pupils learn how the \
        Nazi party used propaganda in the 1930s. Historians describe how rallies ended with \"Sieg Heil\" and how \
        the party blamed Jewish people for Germany's problems, calling them subhuman and parasites. Pupils will \
        discuss how radicalisation happens today, and what the Prevent duty means in school. The museum's \
        archive shows posters from the Second World War. GCSE students should be able to explain the struggle \
        for power after 1933 and the consequences of extremism.";

    const SEX_ED: &str = "Relationships and sex education: what is porn? Pornography shows people having sex, and it is \
        not like real relationships. Sharing nudes of anyone under 18 is illegal, even if they are your own. \
        Consent matters in every relationship. Some explicit videos online are violent. If something you saw \
        worried you, talk to a parent, a teacher or Childline. Sexual health clinics and the NHS can give advice \
        about contraception and puberty. Healthy relationships are built on respect.";

    const PORN: &str = "Free porn videos. Hot MILF, hardcore sex videos, xxx, horny camgirls on live sex cams. \
        Watch nudes and erotic fetish clips, threesome and anal. Adults only. NSFW.";

    #[test]
    fn harmful_pages_are_found() {
        let cats = |t| classify_page(t).found.iter().map(|f| f.category).collect::<Vec<_>>();
        assert_eq!(cats(CASINO), vec![PageCategory::Gambling]);
        assert_eq!(cats(PORN), vec![PageCategory::Adult]);
        assert_eq!(cats(PRO_ANA), vec![PageCategory::SelfHarm]);
        let rant = "What a fucking mess. This shit is bullshit, the wanker in charge is a twat and a dickhead. Fuck off.";
        assert_eq!(cats(rant), vec![PageCategory::Profanity]);
        let hate = "They are vermin and subhuman parasites, invaders breeding like rats. Go back to your country. \
                    Race traitors will answer for it. Deport them all.";
        assert_eq!(cats(hate), vec![PageCategory::Hate]);
        let recruit = "Brothers rise up and join the jihad against the kuffar. Take up arms, our enemies are the \
                       infidels. Pledge allegiance to the caliphate and seek martyrdom in the holy war.";
        assert_eq!(cats(recruit), vec![PageCategory::Extremism]);
    }

    #[test]
    fn news_support_history_and_education_pass() {
        for (name, t) in [("casino news", CASINO_NEWS), ("self-harm support", SELF_HARM_SUPPORT), ("history", HISTORY), ("sex education", SEX_ED)] {
            let v = classify_page(t);
            assert!(v.is_benign(), "{name}: {v:?}");
        }
        let one_word = "Well, shit. The bus was late again.";
        assert!(classify_page(one_word).is_benign(), "one rude word is not a profane page");
    }

    #[test]
    fn a_long_page_needs_more_than_a_few_mentions() {
        let mut t = String::new();
        for _ in 0..60 {
            t.push_str("The weather in the hills was fine and the walkers enjoyed the views across the valley. ");
        }
        t.push_str("Nearby there is a casino with roulette, blackjack and a jackpot.");
        assert!(classify_page(&t).is_benign());
    }
}
