//! Personal data in text, for the "Oversharer" category: what a pupil should
//! not post about themselves or others. Found in the original text (not the
//! normalised one), since digits and punctuation carry the meaning here.
//! Linear-time regular expressions only: this runs on untrusted text. Word
//! boundaries are ASCII ones (`(?-u:\b)`): what they guard is digits and
//! Latin letters, and they keep the patterns on the fast DFA engines.

use std::ops::Range;
use std::sync::OnceLock;

use regex::{Regex, RegexSet};

/// A kind of personal data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PiiKind {
    /// A UK mobile number (07…, +44 7…).
    MobileNumber,
    /// A UK landline number (01…, 02…, 03…).
    LandlineNumber,
    /// A UK postcode.
    Postcode,
    /// An e-mail address.
    Email,
    /// A payment card number that passes the Luhn check.
    CardNumber,
    /// A National Insurance number.
    NationalInsurance,
    /// A password, PIN or login shared in the open.
    Password,
    /// A street address (number and street).
    HomeAddress,
}

impl PiiKind {
    /// What a DSL reads in an explanation.
    pub fn describe(self) -> &'static str {
        match self {
            Self::MobileNumber => "a mobile phone number",
            Self::LandlineNumber => "a phone number",
            Self::Postcode => "a postcode",
            Self::Email => "an e-mail address",
            Self::CardNumber => "a payment card number",
            Self::NationalInsurance => "a National Insurance number",
            Self::Password => "a password or PIN",
            Self::HomeAddress => "a home address",
        }
    }
}

/// One piece of personal data and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What it is.
    pub kind: PiiKind,
    /// Byte range in the text.
    pub span: Range<usize>,
}

const PATTERNS: &[(PiiKind, &str)] = &[
    (PiiKind::MobileNumber, r"(?:\+44\s?\(?0?\)?\s?|(?-u:\b)0)7\d{3}[\s-]?\d{3}[\s-]?\d{3}(?-u:\b)"),
    (PiiKind::LandlineNumber, r"(?:\+44\s?\(?0?\)?\s?|(?-u:\b)0)[123]\d{1,4}\)?[\s-]?\d{3,4}[\s-]?\d{3,4}(?-u:\b)"),
    (PiiKind::Postcode, r"(?i)(?-u:\b)(?:[A-PR-UWYZ][A-HK-Y]?\d[A-Z\d]?\s?\d[ABD-HJLNP-UW-Z]{2}|GIR\s?0AA)(?-u:\b)"),
    (PiiKind::Email, r"(?-u:\b)[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?-u:\b)"),
    (PiiKind::CardNumber, r"(?-u:\b)(?:\d[ -]?){12,18}\d(?-u:\b)"),
    (PiiKind::NationalInsurance, r"(?i)(?-u:\b)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]\s?\d{2}\s?\d{2}\s?\d{2}\s?[A-D](?-u:\b)"),
    (PiiKind::Password, r"(?i)(?-u:\b)(?:password|passcode|pass word|pin(?: number)?|login)\s*(?:is|=|:|'s)\s*\S{3,}"),
    (
        PiiKind::HomeAddress,
        r"(?i)(?-u:\b)\d{1,4}[a-z]?,?\s+(?:[a-z]+\s){0,2}(?:road|rd|street|st|avenue|ave|lane|ln|close|drive|dr|way|crescent|court|place|gardens|grove|terrace|walk|mews)(?-u:\b)",
    ),
];

fn compiled() -> &'static (RegexSet, Vec<Regex>) {
    static RE: OnceLock<(RegexSet, Vec<Regex>)> = OnceLock::new();
    RE.get_or_init(|| {
        let set = RegexSet::new(PATTERNS.iter().map(|(_, p)| *p)).expect("valid patterns");
        let each = PATTERNS.iter().map(|(_, p)| Regex::new(p).expect("valid pattern")).collect();
        (set, each)
    })
}

/// The Luhn checksum used by payment cards.
pub fn luhn(digits: &[u8]) -> bool {
    if digits.len() < 13 {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum % 10 == 0
}

/// Every piece of personal data in `text`, in order of position.
pub fn find(text: &str) -> Vec<Finding> {
    let (set, each) = compiled();
    let mut out = Vec::new();
    // Most texts hold no personal data: one DFA pass says so.
    if !set.is_match(text) {
        return out;
    }
    for i in set.matches(text).iter() {
        let kind = PATTERNS[i].0;
        for m in each[i].find_iter(text) {
            let digits: Vec<u8> = m.as_str().bytes().filter(u8::is_ascii_digit).map(|b| b - b'0').collect();
            let keep = match kind {
                PiiKind::CardNumber => luhn(&digits),
                // A UK number has 10 digits after the trunk 0 (or +44).
                PiiKind::MobileNumber | PiiKind::LandlineNumber => {
                    let national = if m.as_str().trim_start().starts_with('+') { &digits[2..] } else { &digits[..] };
                    let national = national.strip_prefix(&[0]).unwrap_or(national);
                    national.len() == 10 || (kind == PiiKind::LandlineNumber && national.len() == 9)
                }
                PiiKind::NationalInsurance => {
                    let prefix = m.as_str()[..2].to_ascii_uppercase();
                    !matches!(prefix.as_str(), "BG" | "GB" | "NK" | "KN" | "TN" | "NT" | "ZZ")
                }
                _ => true,
            };
            if keep {
                out.push(Finding { kind, span: m.range() });
            }
        }
    }
    // A card number is not also a phone number.
    let cards: Vec<Range<usize>> = out.iter().filter(|f| f.kind == PiiKind::CardNumber).map(|f| f.span.clone()).collect();
    out.retain(|f| f.kind == PiiKind::CardNumber || !cards.iter().any(|c| c.start <= f.span.start && f.span.end <= c.end));
    out.sort_by_key(|f| (f.span.start, f.span.end));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<PiiKind> {
        find(text).into_iter().map(|f| f.kind).collect()
    }

    #[test]
    fn finds_each_kind() {
        use PiiKind::*;
        assert_eq!(kinds("text me on 07700 900123 x"), [MobileNumber]);
        assert_eq!(kinds("ring +44 7700 900123"), [MobileNumber]);
        assert_eq!(kinds("home is 0161 496 0000"), [LandlineNumber]);
        assert_eq!(kinds("i live at SW1A 1AA"), [Postcode]);
        assert_eq!(kinds("my postcode is m1 1ae"), [Postcode]);
        assert_eq!(kinds("email me: jo.bloggs99@example.co.uk"), [Email]);
        assert_eq!(kinds("card 4111 1111 1111 1111 exp 12/29"), [CardNumber]);
        assert_eq!(kinds("NI AB 12 34 56 C"), [NationalInsurance]);
        assert_eq!(kinds("nino: jk123456d"), [NationalInsurance]);
        assert_eq!(kinds("my password is Tigger2014"), [Password]);
        assert_eq!(kinds("come to 42 Acacia Avenue after school"), [HomeAddress]);
    }

    #[test]
    fn does_not_fire_on_look_alikes() {
        assert!(kinds("the year 2024 had 365 days").is_empty());
        assert!(kinds("card 4111 1111 1111 1112").is_empty(), "fails Luhn");
        assert!(kinds("page 07 of 12").is_empty());
        assert!(kinds("GB 12 34 56 A").is_empty(), "GB is never an NI prefix");
        assert!(kinds("I forgot my password again").is_empty());
        assert!(kinds("we scored 3 goals on the road").is_empty());
        assert!(kinds("meet @ the park").is_empty());
    }

    #[test]
    fn spans_are_exact() {
        let text = "call 07700 900123 now";
        let f = find(text);
        assert_eq!(&text[f[0].span.clone()], "07700 900123");
    }

    #[test]
    fn luhn_check() {
        let d = |s: &str| s.bytes().map(|b| b - b'0').collect::<Vec<u8>>();
        assert!(luhn(&d("4111111111111111")));
        assert!(luhn(&d("5555555555554444")));
        assert!(!luhn(&d("4111111111111112")));
        assert!(!luhn(&d("1234")));
    }
}
