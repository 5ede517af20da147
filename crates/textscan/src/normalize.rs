//! Evasion-resistant normalisation with a map back to the original text.
//!
//! Stages, in order (each keeps, for every character, the byte range of the
//! original text it came from):
//! 1. invisible characters (zero-width spaces and joiners, soft hyphens,
//!    variation selectors) are dropped; emoji used as words become the word;
//! 2. compatibility decomposition (NFKD: full-width and styled letters become
//!    plain ones), combining marks dropped (`kíll`, zalgo text), common
//!    Cyrillic and Greek look-alikes folded to Latin, lowercased;
//! 3. leetspeak inside words that also hold letters (`k1ll`, `$uicide`);
//! 4. letters spaced or dotted apart are joined (`k i l l`, `k.i.l.l`);
//!    swear words masked with asterisks are restored (`f*ck`, `sh*t`) when
//!    only one fits;
//! 5. apostrophes dropped (`i'm` → `im`), other punctuation becomes a space;
//! 6. shorthand expanded (`kms` → `kill myself`, `unalive` → `kill`);
//! 7. runs of one letter squeezed to one (`diiiie` → `die`, `kill` → `kil`),
//!    and runs of spaces to one.
//!
//! Phrases are matched after the same normalisation of both sides, so the
//! squeezing in stage 7 costs nothing in precision that matters.

use std::ops::Range;

use unicode_normalization::UnicodeNormalization;

/// Normalised text and, for each of its bytes, the original bytes it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalized {
    /// The folded text: lowercase, single spaces.
    pub text: String,
    map: Vec<(u32, u32)>,
}

impl Normalized {
    /// The span of the original text behind `range` of the normalised text.
    pub fn original_span(&self, range: Range<usize>) -> Range<usize> {
        if range.start >= range.end || range.end > self.map.len() {
            return 0..0;
        }
        self.map[range.start].0 as usize..self.map[range.end - 1].1 as usize
    }
}

#[derive(Clone, Copy)]
struct C {
    c: char,
    from: u32,
    to: u32,
}

/// Emoji commonly used as words in messages that matter to a DSL.
const EMOJI: &[(char, &str)] = &[
    ('🔪', "knife"),
    ('🗡', "knife"),
    ('🔫', "gun"),
    ('💣', "bomb"),
    ('💊', "pills"),
    ('🩸', "blood"),
    ('⚰', "coffin"),
    ('🪦', "grave"),
    ('🪢', "rope"),
    ('💉', "needle"),
    ('🍆', "penis"),
    ('🍑', "bum"),
    ('💦', "cum"),
    ('🌿', "weed"),
    ('🍁', "weed"),
    ('❄', "coke"),
    ('🖕', "fuck you"),
];

/// Shorthand that hides a meaning, expanded before matching.
const SHORTHAND: &[(&str, &str)] = &[
    ("kms", "kill myself"),
    ("kys", "kill yourself"),
    ("unalive", "kill"),
    ("unalived", "killed"),
    ("sewerslide", "suicide"),
    ("suicidal", "suicidal"),
    ("ctb", "catch the bus"),
    ("sh", "self harm"),
    ("stfu", "shut the fuck up"),
    ("gtfo", "get the fuck out"),
    ("wtf", "what the fuck"),
    ("fml", "fuck my life"),
    ("nudes", "nude pictures"),
    ("asl", "age sex location"),
    ("wyd", "what you doing"),
    ("mf", "motherfucker"),
    ("pos", "parent over shoulder"),
];

/// Text speak: how pupils write the words phrases are listed in ("r u home
/// alone" is "are you home alone"). Expanded for the phrases and context
/// rules, not for the word-piece model, which learned from texts as written.
const TEXT_SPEAK: &[(&str, &str)] = &[
    ("u", "you"),
    ("ur", "your"),
    ("r", "are"),
    ("ppl", "people"),
    ("pls", "please"),
    ("plz", "please"),
    ("tmrw", "tomorrow"),
    ("tmr", "tomorrow"),
    ("2moro", "tomorrow"),
    ("2nite", "tonight"),
    ("tonite", "tonight"),
    ("2day", "today"),
    ("b4", "before"),
];

/// Cyrillic and Greek letters that look like Latin ones (UTS #39 confusables,
/// the ones seen in practice).
fn lookalike(c: char) -> char {
    match c {
        'а' => 'a',
        'в' => 'b',
        'с' => 'c',
        'ԁ' => 'd',
        'е' | 'ё' => 'e',
        'һ' => 'h',
        'і' | 'ї' | 'ı' => 'i',
        'ј' => 'j',
        'к' => 'k',
        'м' => 'm',
        'н' => 'h',
        'о' | 'ο' | 'σ' => 'o',
        'р' | 'ρ' => 'p',
        'ѕ' => 's',
        'т' | 'τ' => 't',
        'у' | 'γ' => 'y',
        'х' | 'χ' => 'x',
        'ν' => 'v',
        'ι' => 'i',
        'κ' => 'k',
        'α' => 'a',
        'ε' => 'e',
        'ɡ' => 'g',
        'ꞁ' => 'l',
        _ => c,
    }
}

fn invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}' | '\u{00AD}' | '\u{FE00}'..='\u{FE0F}' | '\u{034F}')
}

fn combining(c: char) -> bool {
    matches!(c, '\u{0300}'..='\u{036F}' | '\u{1AB0}'..='\u{1AFF}' | '\u{1DC0}'..='\u{1DFF}' | '\u{20D0}'..='\u{20FF}' | '\u{FE20}'..='\u{FE2F}')
}

fn leet(c: char, next_is_letter: bool) -> Option<char> {
    Some(match c {
        '0' => 'o',
        '1' => 'i',
        '3' => 'e',
        '4' => 'a',
        '5' | '$' => 's',
        '7' => 't',
        '@' => 'a',
        '!' if next_is_letter => 'i',
        _ => return None,
    })
}

/// Swear words people mask with asterisks (`f*ck`, `sh*t`, `f***ing`).
const MASKABLE: &[&str] = &[
    "fuck",
    "fucking",
    "fucked",
    "fucker",
    "fuckin",
    "motherfucker",
    "shit",
    "shitty",
    "bullshit",
    "bitch",
    "bitches",
    "cunt",
    "dick",
    "dickhead",
    "bastard",
    "asshole",
    "arsehole",
    "wanker",
    "twat",
    "whore",
    "slut",
    "pussy",
    "cock",
    "prick",
    "nigger",
    "nigga",
    "faggot",
    "retard",
    "bollocks",
    "piss",
    "tosser",
    "bellend",
];

/// Stage 4½: a word masked with asterisks becomes the one swear word it
/// can be (same length, the letters shown in place); unresolvable masks stay
/// as they are and later become spaces.
fn unmask(v: &mut [C]) {
    let piece = |c: char| c.is_alphabetic() || c == '*';
    let mut i = 0;
    while i < v.len() {
        if !piece(v[i].c) {
            i += 1;
            continue;
        }
        let end = (i..v.len()).find(|&j| !piece(v[j].c)).unwrap_or(v.len());
        let run = &v[i..end];
        let stars = run.iter().filter(|c| c.c == '*').count();
        if stars > 0 && run[0].c != '*' && stars < run.len() {
            let mut fits = MASKABLE.iter().filter(|w| w.chars().count() == run.len() && w.chars().zip(run).all(|(a, c)| c.c == '*' || c.c == a));
            if let (Some(w), None) = (fits.next(), fits.next()) {
                for (c, a) in v[i..end].iter_mut().zip(w.chars()) {
                    c.c = a;
                }
            }
        }
        i = end;
    }
}

/// Normalises `input`; see the module documentation for the stages.
pub fn normalize(input: &str) -> Normalized {
    normalize_as(input, true)
}

/// The same without text speak expanded: what the word-piece model was
/// trained on.
pub(crate) fn normalize_as_written(input: &str) -> Normalized {
    normalize_as(input, false)
}

fn normalize_as(input: &str, text_speak: bool) -> Normalized {
    let joined = unhide(input);
    // Stage 5: apostrophes dropped, other punctuation a space.
    let mut words: Vec<C> = Vec::with_capacity(joined.len());
    for c in joined {
        match c.c {
            '\'' | '’' | '‘' | '`' => {}
            x if x.is_alphanumeric() => words.push(c),
            _ => words.push(C { c: ' ', ..c }),
        }
    }
    // Stage 6: shorthand, token by token.
    let mut expanded: Vec<C> = Vec::with_capacity(words.len());
    let mut i = 0;
    while i < words.len() {
        if words[i].c == ' ' {
            expanded.push(words[i]);
            i += 1;
            continue;
        }
        let end = (i..words.len()).find(|&j| words[j].c == ' ').unwrap_or(words.len());
        let token: String = words[i..end].iter().map(|c| c.c).collect();
        let speak: &[(&str, &str)] = if text_speak { TEXT_SPEAK } else { &[] };
        match SHORTHAND.iter().chain(speak).find(|(s, _)| *s == token) {
            Some((_, long)) => {
                let (from, to) = (words[i].from, words[end - 1].to);
                expanded.extend(long.chars().map(|c| C { c, from, to }));
            }
            None => expanded.extend_from_slice(&words[i..end]),
        }
        i = end;
    }
    // Stage 7: squeeze repeated letters and spaces; trim.
    let mut out = Normalized { text: String::with_capacity(expanded.len()), map: Vec::with_capacity(expanded.len()) };
    let mut last: Option<char> = Some(' ');
    for c in expanded {
        if last == Some(c.c) && (c.c == ' ' || c.c.is_alphabetic()) {
            // Widen the kept character's span over the squeezed repeat.
            if let Some(m) = out.map.last_mut() {
                m.1 = m.1.max(c.to);
            }
            continue;
        }
        last = Some(c.c);
        let mut buf = [0u8; 4];
        for _ in c.c.encode_utf8(&mut buf).bytes() {
            out.map.push((c.from, c.to));
        }
        out.text.push(c.c);
    }
    if out.text.ends_with(' ') {
        out.text.pop();
        out.map.pop();
    }
    out
}

/// `input` with what hides its words undone (stages 1 to 4: invisible
/// characters, styled and look-alike letters, leetspeak, spaced letters,
/// masked swear words), lowercased, its words and punctuation otherwise as
/// written: what a sentence encoder reads.
pub(crate) fn readable(input: &str) -> String {
    unhide(input).iter().map(|c| c.c).collect()
}

/// Stages 1 to 4.
fn unhide(input: &str) -> Vec<C> {
    // Stages 1 and 2.
    let mut chars: Vec<C> = Vec::with_capacity(input.len());
    for (i, c) in input.char_indices() {
        let (from, to) = (i as u32, (i + c.len_utf8()) as u32);
        // Most text is ASCII: no decomposition, no look-alikes, no emoji.
        if c.is_ascii() {
            chars.push(C { c: c.to_ascii_lowercase(), from, to });
            continue;
        }
        if invisible(c) {
            continue;
        }
        if let Some((_, word)) = EMOJI.iter().find(|(e, _)| *e == c) {
            for w in format!(" {word} ").chars() {
                chars.push(C { c: w, from, to });
            }
            continue;
        }
        for d in std::iter::once(c).nfkd() {
            if combining(d) {
                continue;
            }
            for l in lookalike(d).to_lowercase() {
                chars.push(C { c: lookalike(l), from, to });
            }
        }
    }
    // Stage 3: leetspeak inside tokens that also hold letters.
    let mut start = 0;
    while start < chars.len() {
        let end = (start..chars.len()).find(|&j| chars[j].c.is_whitespace()).unwrap_or(chars.len());
        let token = &chars[start..end];
        if token.iter().any(|c| c.c.is_alphabetic()) && token.iter().any(|c| leet(c.c, true).is_some()) {
            for j in start..end {
                let next_is_letter = chars.get(j + 1).is_some_and(|n| n.c.is_alphabetic());
                let prev_is_letter = j > start && chars[j - 1].c.is_alphabetic();
                if let Some(l) = leet(chars[j].c, next_is_letter) {
                    // `$` and `@` count at a word's start (`$uicide`), digits only between letters or at an edge next to one.
                    if next_is_letter || prev_is_letter {
                        chars[j].c = l;
                    }
                }
            }
        }
        start = end + 1;
    }
    // Stage 4: join letters spaced or dotted apart (three or more).
    let sep = |c: char| matches!(c, ' ' | '.' | '-' | '_' | '*' | ',' | '/');
    let single_letter =
        |v: &[C], i: usize| v[i].c.is_alphabetic() && (i == 0 || !v[i - 1].c.is_alphanumeric()) && v.get(i + 1).is_none_or(|n| !n.c.is_alphanumeric());
    let mut joined: Vec<C> = Vec::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        if single_letter(&chars, i) {
            // Collect letter (sep letter)+ runs.
            let mut run = vec![i];
            let mut j = i;
            while j + 2 < chars.len() && sep(chars[j + 1].c) && single_letter(&chars, j + 2) {
                run.push(j + 2);
                j += 2;
            }
            if run.len() >= 3 {
                joined.extend(run.iter().map(|&k| chars[k]));
                i = j + 1;
                continue;
            }
        }
        joined.push(chars[i]);
        i += 1;
    }
    unmask(&mut joined);
    joined
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn n(s: &str) -> String {
        normalize(s).text
    }

    #[test]
    fn plain_text_is_lowercased_and_squeezed() {
        assert_eq!(n("I Want To KILL Myself!!!"), "i want to kil myself");
        assert_eq!(n("  hello,   world  "), "helo world");
    }

    #[test]
    fn styled_and_full_width_letters() {
        assert_eq!(n("ｋｉｌｌ ｍｙｓｅｌｆ"), "kil myself");
        assert_eq!(n("𝐤𝐢𝐥𝐥 𝓶𝔂𝓼𝓮𝓵𝓯"), "kil myself");
        assert_eq!(n("kíll mÿsélf"), "kil myself");
        assert_eq!(n("k̷̢i̴l̵l̶"), "kil", "zalgo");
    }

    #[test]
    fn masked_swear_words() {
        assert_eq!(n("f*ck off"), "fuck of");
        assert_eq!(n("sh*t team"), "shit team");
        assert_eq!(n("f***ing noob!"), "fucking nob");
        assert_eq!(n("b*tch."), "bitch");
        // Must not: too ambiguous, or not a word at all.
        assert_eq!(n("d**n"), "d n");
        assert_eq!(n("5*3 = 15"), "5 3 15");
        assert_eq!(n("*** great"), "great");
    }

    #[test]
    fn homoglyphs() {
        assert_eq!(n("kіll"), "kil", "Cyrillic i");
        assert_eq!(n("ѕuісіdе"), "suicide");
        assert_eq!(n("сut myself"), "cut myself");
    }

    #[test]
    fn leetspeak_only_inside_words() {
        assert_eq!(n("k1ll"), "kil");
        assert_eq!(n("$uicide"), "suicide");
        assert_eq!(n("h4te y0u"), "hate you");
        assert_eq!(n("call 07700 900123"), "cal 07700 900123", "numbers stay numbers");
        assert_eq!(n("help!"), "help");
        assert_eq!(n("2024"), "2024");
    }

    #[test]
    fn spaced_and_dotted_letters_are_joined() {
        assert_eq!(n("k i l l myself"), "kil myself");
        assert_eq!(n("k.i.l.l"), "kil");
        assert_eq!(n("s-u-i-c-i-d-e"), "suicide");
        assert_eq!(n("a b"), "a b", "two letters are not a spelled word");
    }

    #[test]
    fn stretched_letters() {
        assert_eq!(n("diiiiie"), "die");
        assert_eq!(n("pleeeease"), "please");
    }

    #[test]
    fn invisible_characters_and_emoji() {
        assert_eq!(n("ki\u{200B}ll"), "kil");
        assert_eq!(n("su\u{00AD}icide"), "suicide");
        assert_eq!(n("bring a 🔪 tomorrow"), "bring a knife tomorow");
        assert_eq!(n("🔫🔫"), "gun gun");
    }

    #[test]
    fn shorthand_is_expanded() {
        assert_eq!(n("i wanna kms"), "i wana kil myself");
        assert_eq!(n("KYS"), "kil yourself");
        assert_eq!(n("i want to unalive myself"), "i want to kil myself");
        assert_eq!(n("i'm sad"), "im sad");
        assert_eq!(n("r u home alone 2nite"), "are you home alone tonight");
        assert_eq!(n("dont tell ur mum"), n("dont tell your mum"));
    }

    #[test]
    fn spans_point_at_what_was_typed() {
        let text = "I want to k1ll myself";
        let nz = normalize(text);
        let at = nz.text.find("kil").unwrap();
        assert_eq!(&text[nz.original_span(at..at + 3)], "k1ll");
        let text = "ok so kms lol";
        let nz = normalize(text);
        let at = nz.text.find("kil myself").unwrap();
        assert_eq!(&text[nz.original_span(at..at + "kil myself".len())], "kms");
        let text = "ｋｉｌｌ";
        let nz = normalize(text);
        assert_eq!(&text[nz.original_span(0..nz.text.len())], "ｋｉｌｌ");
        assert_eq!(nz.original_span(5..9), 0..0, "out of range gives nothing");
    }

    proptest! {
        #[test]
        fn never_panics_and_maps_every_byte(s in "\\PC{0,80}") {
            let nz = normalize(&s);
            prop_assert_eq!(nz.map.len(), nz.text.len());
            for &(a, b) in &nz.map {
                prop_assert!(a <= b && (b as usize) <= s.len());
                prop_assert!(s.is_char_boundary(a as usize) && s.is_char_boundary(b as usize));
            }
        }

    }
}
