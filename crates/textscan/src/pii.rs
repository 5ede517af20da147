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
    /// A street address (number and street, a flat or unit, a labelled address).
    HomeAddress,
    /// A phone number in another country's format, or any number offered as one.
    OtherPhoneNumber,
    /// A bank account: an IBAN (checked) or a UK sort code and account number.
    BankAccount,
    /// An identity number from elsewhere (a US social security number).
    IdentityNumber,
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
            Self::OtherPhoneNumber => "a phone number",
            Self::BankAccount => "bank account details",
            Self::IdentityNumber => "an identity number",
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
    (PiiKind::CardNumber, r"(?-u:\b)(?:\d[ -]?){11,18}\d(?-u:\b)"),
    (PiiKind::NationalInsurance, r"(?i)(?-u:\b)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]\s?\d{2}\s?\d{2}\s?\d{2}\s?[A-D](?-u:\b)"),
    (PiiKind::Password, r"(?i)(?-u:\b)(?:password|passcode|pass word|pin(?: number)?|login)\s*(?:is|=|:|'s)\s*\S{3,}"),
    (
        PiiKind::HomeAddress,
        r"(?i)(?-u:\b)\d{1,4}[a-z]?,?\s+(?:[a-z]+\s){0,2}(?:road|rd|street|st|avenue|ave|lane|ln|close|drive|dr|way|crescent|court|place|gardens|grove|terrace|walk|mews)(?-u:\b)",
    ),
    (
        PiiKind::HomeAddress,
        r"(?i)(?-u:\b)(?:\d{1,5}[a-z]?,?\s+(?:[a-z]+\s){0,2}(?:rue|via|vicolo|calle|avenida|strasse|gasse|weg|veien|vagen|gatan|utca|ulica|strada)|(?:apt|apartment|suite|unit|flat|po box|p\.o\. box)\.?\s*#?\d+|(?:home |my |our )?address\s*(?:is|:)\s*\S)",
    ),
    (PiiKind::OtherPhoneNumber, r"\+\d{1,3}[\s.-]?\(?\d{1,4}\)?(?:[\s.-]?\d{2,4}){2,4}(?-u:\b)"),
    (PiiKind::OtherPhoneNumber, r"(?:\(\d{3}\)\s?|(?-u:\b)\d{3}[.-])\d{3}[.-]\d{4}(?-u:\b)"),
    (
        PiiKind::OtherPhoneNumber,
        r"(?i)(?-u:\b)(?:call|ring|text|phone|mobile|tel|cell|whatsapp|number|desk|fax)(?:\s+me)?(?:\s+on|\s+at|\s+is|:)?\s*\+?\d[\d\s().-]{5,}\d",
    ),
    (PiiKind::BankAccount, r"(?-u:\b)[A-Z]{2}\d{2}(?:\s?[A-Z0-9]{4}){2,7}(?:\s?[A-Z0-9]{1,3})?(?-u:\b)"),
    (PiiKind::BankAccount, r"(?i)sort\s?code\s*(?:is|:)?\s*\d{2}[\s-]?\d{2}[\s-]?\d{2}"),
    (PiiKind::IdentityNumber, r"(?-u:\b)\d{3}-\d{2}-\d{4}(?-u:\b)"),
    (PiiKind::IdentityNumber, r"(?i)(?:social security|ssn)(?:\s+number)?\s*(?:is|:)?\s*\d[\d -]{7,10}\d"),
];

/// Whether an IBAN's check digits hold (ISO 13616: mod 97 equals 1).
pub fn iban_valid(text: &str) -> bool {
    let s: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).map(|b| b.to_ascii_uppercase()).collect();
    if !(15..=34).contains(&s.len()) {
        return false;
    }
    let mut rem: u32 = 0;
    for &b in s[4..].iter().chain(&s[..4]) {
        let v = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            _ => return false,
        };
        rem = if v >= 10 { (rem * 100 + v) % 97 } else { (rem * 10 + v) % 97 };
    }
    rem == 1
}

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
    if digits.len() < 12 {
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
    sum.is_multiple_of(10)
}

/// Words that never name a street: "69 the way", "60 and walk", "3 every place".
const NOT_A_STREET_NAME: &[&str] = &[
    "the", "a", "an", "and", "or", "but", "of", "to", "in", "on", "at", "by", "for", "from", "with", "every", "each", "all", "any", "some", "my", "your",
    "his", "her", "our", "their", "its", "this", "that", "these", "those", "is", "are", "was", "were", "be", "more", "less", "than", "per", "times", "out",
    "down", "up", "off", "over", "into", "it", "we", "you", "they", "i",
];

/// Whether "number … street word" reads as an address: the words between
/// the number and the street word ("12 Oak Road") are a name, not function
/// words; none is fine ("Magasinsgatan 7 St", "10 rue …") except before
/// "via", which in English is a preposition ("sent 10 via post").
fn plausible_street(found: &str) -> bool {
    let lower = found.to_ascii_lowercase();
    let mut words = lower.split_whitespace();
    if !words.next().is_some_and(|w| w.starts_with(|c: char| c.is_ascii_digit())) {
        return true; // a flat, unit, PO box or labelled address
    }
    let rest: Vec<&str> = words.collect();
    let Some((street, name)) = rest.split_last() else { return false };
    if name.is_empty() {
        return *street != "via";
    }
    !name.iter().any(|w| NOT_A_STREET_NAME.contains(w))
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
                PiiKind::BankAccount if !m.as_str().to_ascii_lowercase().starts_with("sort") => iban_valid(m.as_str()),
                PiiKind::OtherPhoneNumber => (7..=15).contains(&digits.len()),
                PiiKind::NationalInsurance => {
                    let prefix = m.as_str()[..2].to_ascii_uppercase();
                    !matches!(prefix.as_str(), "BG" | "GB" | "NK" | "KN" | "TN" | "NT" | "ZZ")
                }
                PiiKind::HomeAddress => plausible_street(m.as_str()),
                _ => true,
            };
            if keep {
                // Labelled findings ("call me on …", "sort code …") span the number alone.
                let labelled = match kind {
                    PiiKind::OtherPhoneNumber | PiiKind::IdentityNumber => true,
                    PiiKind::BankAccount => m.as_str().to_ascii_lowercase().starts_with("sort"),
                    _ => false,
                };
                let lead = if labelled { m.as_str().find(|c: char| c.is_ascii_digit() || c == '+' || c == '(').unwrap_or(0) } else { 0 };
                out.push(Finding { kind, span: m.start() + lead..m.end() });
            }
        }
    }
    // A card number is not also a phone number.
    let cards: Vec<Range<usize>> = out.iter().filter(|f| f.kind == PiiKind::CardNumber).map(|f| f.span.clone()).collect();
    out.retain(|f| f.kind == PiiKind::CardNumber || !cards.iter().any(|c| c.start <= f.span.start && f.span.end <= c.end));
    // A UK number is not also "a phone number"; one address is one finding.
    out.sort_by_key(|f| (f.span.start, std::cmp::Reverse(f.span.end), f.kind == PiiKind::OtherPhoneNumber));
    let mut kept: Vec<Finding> = Vec::with_capacity(out.len());
    for f in out {
        if !kept.iter().any(|k| k.span.start <= f.span.start && f.span.end <= k.span.end) {
            kept.push(f);
        }
    }
    kept
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
        assert_eq!(kinds("we're at Flat 3, by the park"), [HomeAddress]);
        assert_eq!(kinds("Address: 594 Hegedus Gyula utca 76"), [HomeAddress]);
        assert_eq!(kinds("ring me +33 6 12 34 56 78"), [OtherPhoneNumber]);
        assert_eq!(kinds("desk (898)666-3621"), [OtherPhoneNumber]);
        assert_eq!(kinds("call me on 9472 7916?"), [OtherPhoneNumber]);
        assert_eq!(kinds("pay GB82 WEST 1234 5698 7654 32 today"), [BankAccount]);
        assert_eq!(kinds("sort code 12-34-56"), [BankAccount]);
        assert_eq!(kinds("his ssn is 832-13-6314"), [IdentityNumber]);
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
        assert!(kinds("pay GB82 WEST 1234 5698 7654 31 today").is_empty(), "IBAN check digits fail");
        assert!(kinds("the score was 3-2 in 2024-2025").is_empty());
        assert!(kinds("our address book is full").is_empty());
        for not_an_address in ["we really wish we could make that 69 the way it should be", "retired at 60 and walk daily", "sent 10 via the post"] {
            assert!(kinds(not_an_address).is_empty(), "{not_an_address}");
        }
        assert_eq!(kinds("she lives at 7 Mill Lane"), [PiiKind::HomeAddress]);
        assert_eq!(kinds("meet at 10 rue de la Paix"), [PiiKind::HomeAddress]);
    }

    #[test]
    fn spans_are_exact() {
        let text = "call 07700 900123 now";
        let f = find(text);
        assert_eq!(&text[f[0].span.clone()], "07700 900123");
        let text = "pay GB82 WEST 1234 5698 7654 32 today";
        assert_eq!(&text[find(text)[0].span.clone()], "GB82 WEST 1234 5698 7654 32");
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
