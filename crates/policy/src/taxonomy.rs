//! Haven's own category taxonomy, and how well-known list labels map onto it.
//!
//! Every UKSIC "appropriate filtering" content category and the illegal-content
//! lists have a category here, plus what school policies block or allow. A list
//! source's labels (UT1 directory names, a hosts file's theme) are mapped onto
//! these, so policies never depend on one vendor's naming.

use std::fmt;

use serde::{Serialize, Serializer};

macro_rules! categories {
    ($( $variant:ident = $id:literal, $title:literal, $uksic:expr, $illegal:literal, $cs:literal; )*) => {
        /// A category of web content.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum Category { $( #[doc = $title] $variant, )* }

        impl Category {
            /// Every category, in declaration order (the order of their bits).
            pub const ALL: &'static [Category] = &[ $( Category::$variant, )* ];

            /// Stable identifier used in config files, logs and JSON (`gambling`).
            pub fn id(self) -> &'static str { match self { $( Category::$variant => $id, )* } }

            /// Name shown to people (`Gambling`).
            pub fn title(self) -> &'static str { match self { $( Category::$variant => $title, )* } }

            /// The UKSIC "appropriate filtering" category this serves, if any.
            pub fn uksic(self) -> Option<&'static str> { match self { $( Category::$variant => $uksic, )* } }

            /// Illegal content (IWF, CTIRU lists): blocked for everyone, never overridable.
            pub fn is_illegal(self) -> bool { match self { $( Category::$variant => $illegal, )* } }

            /// The KCSIE "4 Cs" area the category belongs to, for reports.
            pub fn kcsie_area(self) -> &'static str { match self { $( Category::$variant => $cs, )* } }
        }
    };
}

categories! {
    // Illegal content: UKSIC "illegal online content"; always blocked.
    Csam = "csam", "Child sexual abuse material (IWF)", Some("Illegal: child sexual abuse"), true, "content";
    Terrorism = "terrorism", "Terrorist content (CTIRU)", Some("Illegal: terrorist content"), true, "content";
    IntimateImageAbuse = "intimate-image-abuse", "Intimate image abuse", Some("Illegal: intimate image abuse"), true, "conduct";
    CoerciveControl = "coercive-control", "Coercive control", Some("Illegal: coercive control"), true, "contact";
    // UKSIC content categories.
    Discrimination = "discrimination", "Discrimination", Some("Discrimination"), false, "content";
    Drugs = "drugs", "Drugs and substance abuse", Some("Drugs / Substance abuse"), false, "content";
    Extremism = "extremism", "Extremism", Some("Extremism"), false, "content";
    Gambling = "gambling", "Gambling", Some("Gambling"), false, "commerce";
    HateSpeech = "hate-speech", "Hate speech", Some("Hate speech"), false, "content";
    Malware = "malware", "Malware and malicious hosting", Some("Malware / Hacking"), false, "commerce";
    Hacking = "hacking", "Hacking", Some("Malware / Hacking"), false, "conduct";
    Misinformation = "misinformation", "Mis- and disinformation", Some("Mis / Dis-information"), false, "content";
    Adult = "adult", "Pornography", Some("Pornography"), false, "content";
    Piracy = "piracy", "Piracy and copyright theft", Some("Piracy and copyright theft"), false, "conduct";
    SelfHarm = "self-harm", "Self-harm, suicide and eating disorders", Some("Self-harm"), false, "content";
    Violence = "violence", "Violence", Some("Violence"), false, "content";
    // What school policies block.
    Circumvention = "circumvention", "Proxies, VPNs and DNS-over-HTTPS (circumvention)", Some("Malware / Hacking"), false, "conduct";
    Phishing = "phishing", "Phishing", Some("Malware / Hacking"), false, "commerce";
    Scams = "scams", "Scams and fake shops", None, false, "commerce";
    SocialNetworks = "social-networks", "Social networking", None, false, "contact";
    Games = "games", "Online games", None, false, "conduct";
    Dating = "dating", "Dating", None, false, "contact";
    Advertising = "advertising", "Advertising and tracking", None, false, "commerce";
    Lingerie = "lingerie", "Lingerie and swimwear", None, false, "content";
    MixedAdult = "mixed-adult", "Sites with adult sections", None, false, "content";
    Weapons = "weapons", "Weapons and dangerous material", None, false, "content";
    Chat = "chat", "Chat and messaging", None, false, "contact";
    Webmail = "webmail", "Webmail", None, false, "contact";
    FileHosting = "file-hosting", "File hosting and sharing", None, false, "conduct";
    Streaming = "streaming", "Audio and video streaming", None, false, "content";
    Radio = "radio", "Internet radio", None, false, "content";
    Shopping = "shopping", "Shopping", None, false, "commerce";
    AiChatbots = "ai-chatbots", "AI chatbots", None, false, "contact";
    NoSafeSearch = "no-safe-search", "Search engines without safe search", Some("Malware / Hacking"), false, "content";
    Cryptomining = "cryptomining", "Cryptocurrency mining in the browser", Some("Malware / Hacking"), false, "commerce";
    Stalkerware = "stalkerware", "Stalkerware", Some("Malware / Hacking"), false, "contact";
    RemoteAccess = "remote-access", "Remote control of computers", None, false, "conduct";
    UrlShorteners = "url-shorteners", "URL shorteners", None, false, "conduct";
    DynamicDns = "dynamic-dns", "Dynamic DNS", None, false, "conduct";
    Cheating = "cheating", "Cheating and essay mills", None, false, "conduct";
    Cults = "cults", "Cults and sects", None, false, "content";
    Astrology = "astrology", "Astrology", None, false, "content";
    // Usually allowed; useful in reports, allow-lists and time windows.
    Education = "education", "Education", None, false, "content";
    SexEducation = "sex-education", "Sex and relationships education", None, false, "content";
    Children = "children", "Sites for children", None, false, "content";
    News = "news", "News", None, false, "content";
    SearchEngines = "search-engines", "Search engines", None, false, "content";
    Reference = "reference", "Reference and translation", None, false, "content";
    Forums = "forums", "Forums", None, false, "contact";
    Blogs = "blogs", "Blogs", None, false, "content";
    Banking = "banking", "Banking", None, false, "commerce";
    Financial = "financial", "Finance and cryptocurrency", None, false, "commerce";
    Jobs = "jobs", "Job search", None, false, "commerce";
    Sports = "sports", "Sport", None, false, "content";
    Hobbies = "hobbies", "Hobbies, cooking and leisure", None, false, "content";
    Celebrity = "celebrity", "Celebrity", None, false, "content";
    Religion = "religion", "Religion", None, false, "content";
    WebHosting = "web-hosting", "Web hosting", None, false, "conduct";
    Software = "software", "Software downloads and updates", None, false, "conduct";
    MobilePhones = "mobile-phones", "Mobile phone content", None, false, "commerce";
    Parked = "parked", "Parked or re-registered domains", None, false, "commerce";
    Trusted = "trusted", "Named safe by a list source", None, false, "content";
    // `haven dns --blocklist FILE`: a plain list denied to everyone.
    Blocklist = "blocklist", "Local block list", None, false, "content";
    // Found in a page's own text by the proxy (no list names it); last, so no bit moves.
    Profanity = "profanity", "Profanity", None, false, "content";
}

impl Category {
    /// Looks a category up by its [`id`](Self::id).
    pub fn from_id(id: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.id() == id)
    }

    fn bit(self) -> u128 {
        1u128 << (self as u8)
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

impl<'de> serde::Deserialize<'de> for Category {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::from_id(&s).ok_or_else(|| serde::de::Error::custom(format!("unknown category {s:?}")))
    }
}

impl Serialize for Category {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.id())
    }
}

/// A set of categories, as a bit set (one bit per [`Category`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CategorySet(u128);

impl CategorySet {
    /// No category.
    pub const EMPTY: Self = Self(0);

    /// Every category.
    pub fn all() -> Self {
        Category::ALL.iter().copied().collect()
    }

    /// Rebuilds a set from [`bits`](Self::bits); unknown bits are dropped.
    pub fn from_bits(bits: u128) -> Self {
        Self(bits & Self::all().0)
    }

    /// The raw bits, for storage in a compiled index.
    pub fn bits(self) -> u128 {
        self.0
    }

    /// Adds a category.
    pub fn insert(&mut self, c: Category) {
        self.0 |= c.bit();
    }

    /// Whether the set holds `c`.
    pub fn contains(self, c: Category) -> bool {
        self.0 & c.bit() != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The union of two sets.
    pub fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// The categories in both sets.
    pub fn intersection(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }

    /// The categories of `self` not in `other`.
    pub fn difference(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }

    /// The illegal-content categories.
    pub fn illegal() -> Self {
        Category::ALL.iter().copied().filter(|c| c.is_illegal()).collect()
    }

    /// Whether any category is illegal content.
    pub fn has_illegal(self) -> bool {
        // On every decision: a mask test, not a walk over the taxonomy.
        const ILLEGAL: u128 =
            (1 << Category::Csam as u8) | (1 << Category::Terrorism as u8) | (1 << Category::IntimateImageAbuse as u8) | (1 << Category::CoerciveControl as u8);
        self.0 & ILLEGAL != 0
    }

    /// The categories in declaration order.
    pub fn iter(self) -> impl Iterator<Item = Category> {
        Category::ALL.iter().copied().filter(move |c| self.contains(*c))
    }
}

impl FromIterator<Category> for CategorySet {
    fn from_iter<I: IntoIterator<Item = Category>>(iter: I) -> Self {
        let mut s = Self::EMPTY;
        for c in iter {
            s.insert(c);
        }
        s
    }
}

impl Serialize for CategorySet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl fmt::Display for CategorySet {
    /// Comma-separated ids (`adult,gambling`), as in `haven check --batch` output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(c.id())?;
        }
        Ok(())
    }
}

/// Haven's default mapping of a UT1 (Université Toulouse 1) category directory
/// name onto Haven categories. `None` means UT1 has no such label; a config can
/// map it with a `labels` table on the list source.
pub fn ut1_label(label: &str) -> Option<&'static [Category]> {
    use Category::*;
    Some(match label {
        "adult" | "porn" => &[Adult],
        "agressif" | "aggressive" | "violence" => &[Violence, HateSpeech],
        "ai" => &[AiChatbots],
        "arjel" | "gambling" => &[Gambling],
        "associations_religieuses" => &[Religion],
        "astrology" => &[Astrology],
        "audio-video" => &[Streaming],
        "bank" => &[Banking],
        "bitcoin" | "financial" => &[Financial],
        "blog" => &[Blogs],
        "celebrity" => &[Celebrity],
        "chat" => &[Chat],
        "child" => &[Children],
        "cleaning" | "download" | "update" => &[Software],
        "cooking" => &[Hobbies],
        "cryptojacking" => &[Cryptomining],
        "dangerous_material" => &[Weapons],
        "dating" => &[Dating],
        "ddos" | "hacking" => &[Hacking],
        "dialer" | "malware" => &[Malware],
        "doh" | "vpn" | "redirector" | "strict_redirector" | "strong_redirector" | "residential-proxies" | "proxy" => &[Circumvention],
        "drogue" | "drugs" => &[Drugs],
        "dynamic-dns" => &[DynamicDns],
        "educational_games" | "examen_pix" | "exceptions_liste_bu" | "liste_bu" => &[Education],
        "fakenews" => &[Misinformation],
        "filehosting" => &[FileHosting],
        "forums" => &[Forums],
        "games" => &[Games],
        "jobsearch" => &[Jobs],
        "lingerie" => &[Lingerie],
        "liste_blanche" => &[Trusted],
        "manga" => &[Hobbies],
        "marketingware" | "publicite" | "ads" => &[Advertising],
        "mixed_adult" => &[MixedAdult],
        "mobile-phone" => &[MobilePhones],
        "phishing" => &[Phishing],
        "press" => &[News],
        "radio" => &[Radio],
        "reaffected" => &[Parked],
        "remote-control" => &[RemoteAccess],
        "sect" => &[Cults],
        "sexual_education" => &[SexEducation],
        "shopping" => &[Shopping],
        "shortener" => &[UrlShorteners],
        "social_networks" => &[SocialNetworks],
        "sports" => &[Sports],
        "stalkerware" => &[Stalkerware],
        "translation" => &[Reference],
        "tricheur" | "tricheur_pix" => &[Cheating],
        "warez" => &[Piracy],
        "webhosting" => &[WebHosting],
        "webmail" | "mail" => &[Webmail],
        "special" => &[Parked],
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_fit_the_bit_set() {
        assert!(Category::ALL.len() <= 128);
        for c in Category::ALL {
            assert_eq!(Category::from_id(c.id()), Some(*c));
        }
        let all = CategorySet::all();
        assert_eq!(all.iter().count(), Category::ALL.len());
    }

    #[test]
    fn the_illegal_mask_matches_the_taxonomy() {
        for c in Category::ALL {
            let one: CategorySet = [*c].into_iter().collect();
            assert_eq!(one.has_illegal(), c.is_illegal(), "{c}");
        }
        assert_eq!(CategorySet::illegal().iter().count(), 4);
    }

    #[test]
    fn every_uksic_category_is_covered() {
        let uksic = [
            "Discrimination",
            "Drugs / Substance abuse",
            "Extremism",
            "Gambling",
            "Hate speech",
            "Malware / Hacking",
            "Mis / Dis-information",
            "Pornography",
            "Piracy and copyright theft",
            "Self-harm",
            "Violence",
            "Illegal: child sexual abuse",
            "Illegal: terrorist content",
            "Illegal: intimate image abuse",
            "Illegal: coercive control",
        ];
        for u in uksic {
            assert!(Category::ALL.iter().any(|c| c.uksic() == Some(u)), "{u} has no category");
        }
    }

    #[test]
    fn ut1_labels_named_in_the_issue_map() {
        for l in ["adult", "agressif", "drogue", "redirector", "doh", "vpn"] {
            assert!(ut1_label(l).is_some(), "{l}");
        }
        assert_eq!(ut1_label("drogue"), Some(&[Category::Drugs][..]));
        assert_eq!(ut1_label("no-such-label"), None);
    }
}
