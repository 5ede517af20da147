//! The shapes of a disclosure that rules can see whatever its words: an
//! attack planned on someone, arrangements made for after a death,
//! violence or cruelty at home, being made to work and kept from leaving,
//! and the signs staff are trained to notice (a blade taken out of a pencil
//! sharpener, meals skipped and hidden, a poll to humiliate a classmate).
//!
//! Each shape is two or three parts that are ordinary alone and a concern
//! together, written from the guidance a DSL is trained on (the NSPCC's
//! signs of abuse, Samaritans' and Papyrus' signs of a plan, the Home
//! Office's county-lines guidance, BEAT's signs of an eating disorder), not
//! from single messages. Words arrive normalised and squeezed: "gonna" is
//! "gona", "will" is "wil", "u" is "you", "4pm" is "apm".

use crate::concern::Concern;

/// One shape found in a text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Shape {
    /// The category it is evidence for.
    pub concern: Concern,
    /// Its weight, as a lexicon phrase's (3 is the category's clear signal).
    pub weight: f32,
    /// What a DSL reads.
    pub note: &'static str,
    /// The word it rests on: context before it (a negation, a game) lowers it.
    pub at: usize,
    /// Whether a look-alike reading may not lower it (a plan is not
    /// explained away as hyperbole).
    pub stands: bool,
    /// Whether it only adds to what other evidence already found.
    pub corroborates: bool,
    /// Whether it is the pupil's own life ("when im gone", "hit my mum"):
    /// a book or a lesson named nearby does not make it a story.
    pub personal: bool,
}

/// A shape's finder: the word it rests on, if the shape is there.
type Finder = fn(&[&str]) -> Option<usize>;

/// The shapes with one note each: finder, category, weight, note, and
/// whether a look-alike reading may not lower it.
const SHAPES: &[(Finder, Concern, f32, &str, bool)] = &[
    (planned_attack, Concern::BullyingViolence, 5.0, "a threat to hurt someone, with a means, a time, a place or an oath", true),
    (final_arrangements, Concern::VulnerablePerson, 6.0, "arrangements for after they are gone (letters, a will, someone to look after a pet)", true),
    (violence_at_home, Concern::VulnerablePerson, 5.0, "violence at home: an adult hurting a parent or the child", true),
    (cruelty_at_home, Concern::VulnerablePerson, 5.0, "put down or kept from food at home, day after day", true),
    (kept_secret, Concern::VulnerablePerson, 5.0, "made by an adult to keep secrets", true),
    (hidden_marks, Concern::VulnerablePerson, 5.0, "marks hidden under long sleeves", false),
    (leaked_warning, Concern::BullyingViolence, 5.0, "a warning to stay away from school on a day", true),
    (sharpener_blade, Concern::VulnerablePerson, 5.0, "a blade taken from a pencil sharpener, or cuts in rows", false),
    (hidden_meals, Concern::VulnerablePerson, 4.0, "meals skipped and hidden", false),
    (humiliation_poll, Concern::BullyingViolence, 3.0, "a poll or ranking to humiliate someone", false),
    (incel_call, Concern::TerrorismExtremism, 4.0, "a call to rise up for an extremist cause", false),
];

/// Every shape in `words` (normalised, squeezed).
pub(crate) fn find(words: &[&str]) -> Vec<Shape> {
    let mut found = Vec::new();
    // A threat may be a film's or the news's; the other shapes are the
    // pupil's own life wherever they are named.
    let mut push = |concern, weight, note, at, stands| {
        let personal = concern != Concern::BullyingViolence && concern != Concern::TerrorismExtremism;
        found.push(Shape { concern, weight, note, at, stands, corroborates: false, personal })
    };
    for &(finder, concern, weight, note, stands) in SHAPES {
        if let Some(at) = finder(words) {
            push(concern, weight, note, at, stands);
        }
    }
    if let Some((at, note)) = exploited(words) {
        push(Concern::VulnerablePerson, 5.0, note, at, true);
    }
    if let Some((at, weight, note)) = shaming(words) {
        push(Concern::BullyingViolence, weight, note, at, false);
    }
    // Recruiting only adds to extremist evidence found otherwise.
    if let Some(at) = recruiting(words) {
        found.push(Shape {
            concern: Concern::TerrorismExtremism,
            weight: 4.0,
            note: "recruiting into a group",
            at,
            stands: false,
            corroborates: true,
            personal: false,
        });
    }
    found
}

/// Whether `words` has `phrase` starting at `i`.
fn at(words: &[&str], i: usize, phrase: &[&str]) -> bool {
    words.get(i..i + phrase.len()).is_some_and(|w| w == phrase)
}

/// Where `phrase` first starts in `words`.
fn position(words: &[&str], phrase: &[&str]) -> Option<usize> {
    (0..words.len()).find(|&i| at(words, i, phrase))
}

fn any_of(words: &[&str], list: &[&str]) -> Option<usize> {
    words.iter().position(|w| list.contains(w))
}

/// How far apart, in words, the parts of one shape may be: one message's
/// worth, not a news story's.
const NEAR: usize = 20;

/// Intent before a harm ("ill", "gonna", "going to", "wanna", "im finna").
const INTENT: &[&str] = &["il", "wil", "gona", "going", "wana", "ima", "lets", "gota", "finna", "abouta"];
/// Whom or what an attack is aimed at, after the harm (or after "that",
/// "the", "his"). Not a pupil's own family: "gonna kill my brother for
/// eating my crisps" is what siblings say.
const TARGETS: &[&str] = &[
    "him",
    "her",
    "them",
    "everyone",
    "everybody",
    "sir",
    "miss",
    "teacher",
    "teachers",
    "head",
    "headteacher",
    "lads",
    "boys",
    "girls",
    "kids",
    "people",
    "year",
    "class",
    "schol",
    "block",
    "canten",
    "building",
    "mosque",
    "church",
    "synagogue",
    "temple",
    "gates",
];
/// What makes a threat a plan rather than temper: an oath, a means, a
/// time, a place, or the promise of what comes after.
const OATHS: &[&[&str]] =
    &[&["swear", "down"], &["not", "joking"], &["no", "joke"], &["im", "serious"], &["deadas"], &["on", "my", "life"], &["mark", "my", "words"]];
const MEANS: &[&str] = &[
    "knife", "knives", "blade", "blades", "shank", "machete", "gun", "guns", "pistol", "car", "van", "petrol", "lighter", "matches", "bat", "hamer", "acid",
    "brick",
];
const WHEN: &[&str] = &["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "tonight", "tomorow", "lunch", "break", "later"];
const WHERE: &[&str] = &["outside", "behind", "park", "gates", "canten", "alley", "underpas", "corner"];
const AFTER: &[&[&str]] = &[
    &["se", "how", "they", "like"],
    &["theyl", "se"],
    &["hes", "done"],
    &["shes", "done"],
    &["wont", "know", "what", "hit"],
    &["wont", "se", "it", "coming"],
    &["we", "know", "where"],
    &["i", "know", "where"],
    &["we", "know", "your"],
];

/// A harm meant for someone, with something that makes it a plan: "im
/// gonna stab that teacher swear down", "gonna run him over in my
/// brothers car when he crosses". Without the plan, temper or hyperbole
/// ("gonna kill him lol") is left to the lexicon and the head. Returns the
/// harm's word.
fn planned_attack(words: &[&str]) -> Option<usize> {
    let harm = (0..words.len()).find(|&i| {
        let target_at = match words[i] {
            "stab" | "shot" | "kil" | "murder" | "strangle" | "knife" | "shank" | "torch" | "acid" => i + 1,
            "run" if words.get(i + 2) == Some(&"over") => i + 1,
            "set" if at(words, i + 1, &["fire", "to"]) => i + 3,
            "burn" | "blow" if matches!(words.get(i + 1), Some(&"down" | &"up")) => i + 2,
            // "ryans getting shanked thursday", "youre getting done in":
            // someone named as about to be hurt. Not "im getting wet up",
            // a threat the pupil received, which is theirs to be protected
            // from (read by the semantic stage as exploitation or bullying).
            "geting"
                if (matches!(words.get(i + 1), Some(&("shanked" | "stabed" | "merked" | "jumped" | "bodied" | "wet" | "shot" | "steped" | "slashed")))
                    || at(words, i + 1, &["done", "in"]))
                    && !(i > 0 && matches!(words[i - 1], "im" | "i" | "me")) =>
            {
                return true;
            }
            _ => return false,
        };
        // "him", or a determiner and within two words its noun ("that
        // teacher", "the science block").
        let aimed = match words.get(target_at) {
            Some(&("that" | "this" | "the" | "his" | "those" | "our")) => words.iter().skip(target_at + 1).take(2).any(|w| TARGETS.contains(w)),
            w => w.is_some_and(|w| TARGETS.contains(w)),
        };
        let meant = words[i.saturating_sub(4)..i].iter().any(|w| INTENT.contains(w));
        aimed && meant
    })?;
    let sworn = OATHS.iter().any(|p| position(words, p).is_some()) || AFTER.iter().any(|p| position(words, p).is_some()) || any_of(words, MEANS).is_some();
    // "we're gonna murder them on saturday" is a match: killing with only
    // a time or a place is how sport is talked about.
    if matches!(words[harm], "kil" | "murder") {
        return sworn.then_some(harm);
    }
    (sworn || when_or_where(words)).then_some(harm)
}

/// A time or a place set: "friday", "4pm", "after school", "at the park",
/// "when he crosses".
pub(crate) fn when_or_where(words: &[&str]) -> bool {
    any_of(words, WHEN).is_some()
        || any_of(words, WHERE).is_some()
        || words.iter().any(|w| clock_time(w))
        || position(words, &["after", "schol"]).is_some()
        || (0..words.len()).any(|i| words[i] == "when" && matches!(words.get(i + 1), Some(&("he" | "she" | "they"))))
}

/// "4pm", "10pm" as normalisation leaves them ("apm", "iopm").
fn clock_time(w: &str) -> bool {
    (3..=4).contains(&w.len()) && w.ends_with("pm")
}

/// Arrangements for after a death, with the end named: letters for family,
/// a pet to be looked after, things given away or a will, with "when im
/// gone", "tonights the night", "wont need". Papyrus and Samaritans list
/// both (putting affairs in order, goodbyes) among the signs of a plan;
/// either alone is ordinary ("look after my dog this weekend", "when im
/// gone on holiday"). Returns the arrangement's word.
fn final_arrangements(words: &[&str]) -> Option<usize> {
    let gone = |i: usize| !matches!(words.get(i), Some(&("on" | "to" | "for" | "away" | "home" | "back" | "out" | "of")));
    let end = (0..words.len()).filter(|&i| {
        (matches!(words[i], "when" | "after" | "once" | "before")
            && words.get(i + 1) == Some(&"im")
            && (words.get(i + 2) == Some(&"gone") && gone(i + 3) || at(words, i + 2, &["not", "here"]) || at(words, i + 2, &["not", "around"])))
            || at(words, i, &["tonights", "the", "night"])
            || at(words, i, &["wont", "ned"])
            || at(words, i, &["wont", "be", "needing"])
            || (matches!(words[i], "last" | "final")
                && matches!(words.get(i + 1), Some(&("post" | "mesage" | "text" | "video")))
                && i > 0
                && words[i - 1] == "my")
    });
    // In one message, not across a longer story.
    let ends: Vec<usize> = end.collect();
    let end = |w: usize| ends.iter().any(|&e| e.abs_diff(w) <= NEAR);
    let will = (0..words.len()).find(|&i| {
        (words[i] == "wil" && i >= 2 && words[i - 1] == "a" && matches!(words[i - 2], "write" | "make" | "made" | "writen" | "wrote" | "do"))
            || at(words, i, &["who", "gets", "what"])
    });
    let belongings = (0..words.len()).find(|&i| {
        matches!(words[i], "have" | "get" | "gets" | "keep" | "take")
            && words.get(i + 1) == Some(&"my")
            && matches!(
                words.get(i + 2),
                Some(&("stuf" | "things" | "clothes" | "games" | "xbox" | "phone" | "switch" | "room" | "hodies" | "makeup" | "jewelery" | "books"))
            )
    });
    let act = (0..words.len()).find(|&i| {
        (matches!(words[i], "leters" | "leter" | "note" | "notes") && matches!(words.get(i + 1), Some(&("for" | "to"))))
            || at(words, i, &["lok", "after"])
            || at(words, i, &["take", "care", "of"])
            || (matches!(words[i], "give" | "giving" | "gave" | "given") && words.get(i + 1) == Some(&"away"))
    });
    match (will, belongings) {
        (Some(w), Some(b)) if w.abs_diff(b) <= NEAR => Some(w),
        _ => [will, belongings, act].into_iter().flatten().find(|&w| end(w)),
    }
}

/// Something minded or arranged for a while, not for ever: "look after my
/// dog this weekend", "feed the cat while were away", "over half term".
/// Not "after this weekend" or "after friday", which name an end.
pub(crate) fn for_a_while(words: &[&str]) -> bool {
    let care =
        (0..words.len()).filter(|&i| at(words, i, &["lok", "after"]) || at(words, i, &["take", "care", "of"]) || matches!(words[i], "fed" | "mind" | "walk"));
    let bounded = |i: usize| {
        let bounded_at = |j: usize| {
            (at(words, j, &["this", "wekend"]) || at(words, j, &["the", "wekend"]) || at(words, j, &["over", "the"]) || at(words, j, &["over", "half", "term"]))
                || (matches!(words[j], "while" | "whilst") && j > 0)
                || at(words, j, &["for", "the", "wek"])
                || at(words, j, &["for", "a", "few"])
                || at(words, j, &["for", "a", "bit"])
        };
        (i + 1..(i + 8).min(words.len())).any(|j| bounded_at(j) && words[j - 1] != "after")
    };
    care.into_iter().any(bounded)
}

/// What a sextortion threat holds over a child: images or a recording,
/// money demanded, or a promise to post or show them ("pics", "£100",
/// "its going online", "everyone sees everything"). Read on the text as
/// typed, lower-cased.
pub(crate) fn leverage(text: &str) -> bool {
    const HELD: &[&str] = &[
        "pic",
        "photo",
        "nude",
        "naked",
        "video",
        "vid",
        "image",
        "screenshot",
        "record",
        "camera",
        "cam",
        "snap",
        "£",
        "$",
        "money",
        "pay",
        "paid",
        "cash",
        "gift card",
        "bitcoin",
        "crypto",
        "post",
        "leak",
        "share",
        "expose",
        "online",
        "goes up",
        "going up",
        "everyone sees",
        "everyone will see",
        "backup",
        "what i sent",
        "stuff i sent",
    ];
    let t = text.to_lowercase();
    HELD.iter().any(|h| t.contains(h))
}

/// Hurting, as a child says it happened at home (squeezed).
const HURTS: &[&str] = &[
    "hit",
    "hits",
    "hiting",
    "throw",
    "threw",
    "throws",
    "punch",
    "punched",
    "punches",
    "punching",
    "push",
    "pushed",
    "pushes",
    "slap",
    "slaped",
    "slaps",
    "strangle",
    "strangled",
    "choke",
    "choked",
    "chokes",
    "choking",
    "batered",
    "bashed",
    "smacks",
    "smacked",
    "shoved",
    "shoves",
    "draged",
    "kicked",
    "kicks",
    "kicking",
    "beats",
    "beating",
    "burnt",
    "burned",
];
/// A parent a child sees hurt.
const PARENT: &[&str] = &["mum", "mom", "mam", "mumy", "nan", "nana", "grandma"];
/// Adults at home who hurt.
const ADULTS: &[&str] = &["dad", "dady", "stepdad", "stepmum", "mum", "mom", "mam", "uncle", "boyfriend", "partner", "grandad"];

/// Violence at home, as a child discloses it: a parent hurt ("heard him
/// throw mum against the wall", "he hit my mum again"), or an adult at home
/// hurting the child ("stepdad punched me"). Not "hit mum up", "beat mum at
/// scrabble" or "threw mum a party". Returns the hurting word.
fn violence_at_home(words: &[&str]) -> Option<usize> {
    (0..words.len()).find(|&i| {
        if !HURTS.contains(&words[i]) {
            return false;
        }
        let victim = if matches!(words.get(i + 1), Some(&("my" | "our"))) { i + 2 } else { i + 1 };
        let parent_hurt =
            words.get(victim).is_some_and(|w| PARENT.contains(w)) && !matches!(words.get(victim + 1), Some(&("up" | "a" | "an" | "at" | "in" | "the")));
        let adult = (i.saturating_sub(2)..i).any(|j| ADULTS.contains(&words[j]));
        let child_hurt = adult && matches!(words.get(i + 1), Some(&("me" | "us")));
        parent_hurt || child_hurt
    })
}

/// Day after day ("every day", "all the time", "always").
fn chronic(words: &[&str]) -> bool {
    (0..words.len()).any(|i| {
        at(words, i, &["every", "day"])
            || at(words, i, &["every", "night"])
            || at(words, i, &["every", "single", "day"])
            || at(words, i, &["al", "day"])
            || at(words, i, &["al", "the", "time"])
            || matches!(words[i], "always" | "constantly")
    })
}

/// Emotional abuse and neglect, as the NSPCC describes them: a child put
/// down at home ("called fat and useless all day at home", "mum says im a
/// waste of space, every day") or kept from food there. Both need home and
/// "every day": a parent's one sharp word is not abuse. Returns the put-down.
fn cruelty_at_home(words: &[&str]) -> Option<usize> {
    const PUTDOWNS: &[&str] = &["useles", "worthles", "waste", "mistake", "disgusting", "pathetic", "burden", "fat", "stupid", "ugly"];
    const SAYING: &[&str] = &["caled", "cals", "cal", "says", "said", "tels", "told", "screams", "shouts", "yels", "scream", "shout"];
    let home = any_of(words, &["mum", "mom", "mam", "dad", "stepdad", "stepmum", "parents"]).is_some() || position(words, &["at", "home"]).is_some();
    if !home || !chronic(words) {
        return None;
    }
    // Said to the child, not somewhere in a longer story.
    let putdown = (0..words.len()).find(|&i| PUTDOWNS.contains(&words[i]) && words[i.saturating_sub(12)..i].iter().any(|w| SAYING.contains(w)));
    let kept_from_food = position(words, &["not", "alowed", "to", "eat"]).or_else(|| position(words, &["wont", "let", "me", "eat"]));
    putdown.or(kept_from_food)
}

/// Being made to work for others and kept from leaving (the Home Office's
/// county-lines signs), threatened to keep working, or made to pay back with
/// sex (child sexual exploitation). Returns the word and the note.
fn exploited(words: &[&str]) -> Option<(usize, &'static str)> {
    const WORK: &[&str] = &[
        "drop",
        "drops",
        "droping",
        "shift",
        "shifted",
        "shifting",
        "sel",
        "seling",
        "sold",
        "deliver",
        "delivering",
        "package",
        "packages",
        "parcel",
        "parcels",
        "runing",
        "owe",
        "debt",
        "olders",
        "trap",
        "line",
        "cary",
        "carying",
        "stash",
        "holding",
        "bag",
        "bags",
    ];
    let held = (0..words.len()).find(|&i| {
        (at(words, i, &["wont", "let", "me"]) && matches!(words.get(i + 3), Some(&("stop" | "leave" | "quit" | "go" | "out"))))
            || at(words, i, &["not", "alowed", "out"])
            || at(words, i, &["not", "alowed", "to", "leave"])
            || at(words, i, &["cant", "leave"])
    });
    if let Some(h) = held.filter(|&h| words.iter().enumerate().any(|(j, w)| WORK.contains(w) && j.abs_diff(h) <= NEAR)) {
        return Some((h, "made to work for others and kept from leaving"));
    }
    // "if i run theyll hurt my sis": harm promised if the child leaves or tells.
    let kept_by_threat = (0..words.len()).find(|&i| {
        words[i] == "if"
            && words.get(i + 1) == Some(&"i")
            && matches!(words.get(i + 2), Some(&("run" | "leave" | "stop" | "quit" | "tel" | "snitch" | "grass")))
            && (i + 3..(i + 8).min(words.len())).any(|j| {
                matches!(words[j], "hurt" | "kil" | "stab" | "burn" | "smash" | "shot" | "do")
                    && matches!(words.get(j + 1), Some(&("my" | "me" | "mum" | "sis" | "family")))
            })
    });
    if let Some(k) = kept_by_threat {
        return Some((k, "threatened with harm to them or their family if they leave or tell"));
    }
    // "makes me sleep with his friends to pay him back".
    let made = (0..words.len()).find(|&i| {
        matches!(words[i], "makes" | "made" | "making")
            && words.get(i + 1) == Some(&"me")
            && matches!(words.get(i + 2), Some(&("slep" | "have" | "do" | "send" | "go")))
            && (i + 2..(i + 6).min(words.len())).any(|j| matches!(words[j], "slep" | "sex" | "stuf" | "things" | "pics" | "nudes" | "friends" | "mates"))
    });
    let pay_back = (0..words.len()).any(|i| words[i] == "pay" && (i + 1..(i + 3).min(words.len())).any(|j| words[j] == "back"));
    made.filter(|_| pay_back || any_of(words, &["friends", "mates", "men", "olders"]).is_some())
        .map(|m| (m, "made to have sex with others, or to pay back a debt with it"))
}

/// Being made by an adult to keep secrets ("my uncle makes me keep secrets
/// about what he does when he babysits"): the NSPCC's first sign of sexual
/// abuse. A friend's secret is not this.
fn kept_secret(words: &[&str]) -> Option<usize> {
    const ADULT: &[&str] = &[
        "uncle",
        "stepdad",
        "dad",
        "boyfriend",
        "coach",
        "teacher",
        "neighbour",
        "babysits",
        "babysiter",
        "babysiting",
        "tutor",
        "cousin",
        "grandad",
        "man",
        "instructor",
        "leader",
        "priest",
        "imam",
    ];
    let secret = (0..words.len()).find(|&i| {
        let kept = matches!(words[i], "makes" | "made" | "tels" | "told" | "wants" | "asks" | "asked" | "says" | "said")
            && words.get(i + 1) == Some(&"me")
            && (i + 2..(i + 5).min(words.len())).any(|j| words[j] == "kep")
            && (i + 3..(i + 8).min(words.len())).any(|j| matches!(words[j], "secret" | "secrets" | "quiet"));
        // "said not to tell my parents about the massages".
        let hidden = matches!(words[i], "tels" | "told" | "says" | "said")
            && (at(words, i + 1, &["not", "to", "tel"]) || at(words, i + 1, &["me", "not", "to", "tel"]) || at(words, i + 1, &["dont", "tel"]))
            && words[i + 1..(i + 8).min(words.len())].iter().any(|w| matches!(*w, "parents" | "mum" | "dad" | "anyone" | "anybody" | "nobody"));
        kept || hidden
    })?;
    words.iter().enumerate().any(|(j, w)| ADULT.contains(w) && j.abs_diff(secret) <= NEAR).then_some(secret)
}

/// Long sleeves worn to hide arms or marks ("wearing long sleeves in pe
/// again cos of my arms"): hiding injuries is among the NSPCC's signs of
/// self-harm. Not "long sleeves cos its freezing".
fn hidden_marks(words: &[&str]) -> Option<usize> {
    let sleeves = position(words, &["long", "sleves"])
        .or_else(|| any_of(words, &["hodie"]).filter(|_| any_of(words, &["hide", "hiding", "cover", "covering"]).is_some()))?;
    words
        .iter()
        .enumerate()
        .any(|(j, w)| matches!(*w, "arms" | "arm" | "wrists" | "scars" | "marks" | "cuts" | "burns" | "bruises") && j.abs_diff(sleeves) <= 8)
        .then_some(sleeves)
}

/// A warning to a friend to stay away from school on a day ("dont come
/// in tomorrow", "a day this school never forgets"): the leaked warning
/// that comes before most school attacks. Not a closure ("its an inset
/// day", "snow day").
fn leaked_warning(words: &[&str]) -> Option<usize> {
    const CLOSED: &[&str] = &["inset", "closed", "strike", "snow", "heating", "flod", "power", "ofsted", "trip", "il", "sick", "covid", "contagious"];
    if any_of(words, CLOSED).is_some() {
        return None;
    }
    let stay_away = (0..words.len())
        .find(|&i| at(words, i, &["dont", "come", "in"]) || at(words, i, &["dont", "come", "to", "schol"]) || at(words, i, &["stay", "home", "tomorow"]));
    let never_forget = (0..words.len()).find(|&i| at(words, i, &["never", "forget"]) || at(words, i, &["never", "forgets"]));
    match (stay_away, never_forget) {
        (Some(s), Some(_)) => Some(s),
        (Some(s), None) if any_of(words, WHEN).is_some() && any_of(words, &["schol", "everyone", "al"]).is_some() => Some(s),
        (None, Some(f)) if any_of(words, &["schol", "canten", "assembly"]).is_some() && any_of(words, &["day", "tomorow", "monday", "friday"]).is_some() => {
            Some(f)
        }
        _ => None,
    }
}

/// Bullying's group forms: shutting someone out ("everyone leave the gc
/// when she joins"), and images shared or made to shame them ("sending the
/// vid of him crying to the whole year", "photoshopped his head on a naked
/// body"). Returns the word, the weight and the note.
fn shaming(words: &[&str]) -> Option<(usize, f32, &'static str)> {
    let faked = any_of(words, &["photoshoped", "photoshop", "edited", "deepfake", "deepfaked"])
        .filter(|&p| words.iter().enumerate().any(|(j, w)| matches!(*w, "naked" | "nude" | "nudes" | "porn") && j.abs_diff(p) <= 8));
    if let Some(f) = faked {
        return Some((f, 4.0, "a faked sexual image of someone, shared to shame them"));
    }
    let shared = (0..words.len()).find(|&i| {
        matches!(words[i], "sending" | "send" | "sent" | "posting" | "post" | "posted" | "airdrop" | "airdroped" | "sharing" | "share" | "shared" | "page")
            && (i + 1..(i + 6).min(words.len())).any(|j| matches!(words[j], "vid" | "video" | "pics" | "pic" | "photos" | "photo" | "picture" | "pictures"))
            && (i + 2..(i + 10).min(words.len()))
                .any(|j| matches!(words[j], "crying" | "eating" | "naked" | "changing" | "undresed" | "toilets" | "toilet" | "shower" | "showers" | "beaten"))
    });
    if let Some(s) = shared {
        return Some((s, 3.0, "images shared to humiliate someone"));
    }
    let shut_out = (0..words.len()).find(|&i| {
        ((at(words, i, &["leave", "the", "gc"]) || at(words, i, &["leave", "the", "group"]))
            && words.get(i + 3..(i + 7).min(words.len())).is_some_and(|n| n.iter().any(|w| matches!(*w, "when" | "if" | "cos"))))
            || at(words, i, &["new", "one", "without"])
            || at(words, i, &["new", "gc", "without"])
            || at(words, i, &["new", "group", "without"])
            || (matches!(words[i], "everyone" | "everybody")
                && matches!(words.get(i + 1), Some(&("block" | "ignore" | "unfollow" | "blank" | "remove")))
                && matches!(words.get(i + 2), Some(&("her" | "him" | "them"))))
    });
    shut_out.map(|s| (s, 3.0, "a group shutting someone out"))
}

/// A blade taken out of a pencil sharpener, or cuts in rows on the body
/// ("barcode"): the signs of self-harm staff are trained to notice.
fn sharpener_blade(words: &[&str]) -> Option<usize> {
    let blade = any_of(words, &["blade", "blades"]);
    let sharpener = any_of(words, &["sharpener", "sharpeners"]);
    if let (Some(b), Some(_)) = (blade, sharpener) {
        return Some(b);
    }
    let body = any_of(words, &["thighs", "thigh", "arms", "arm", "wrists", "wrist", "legs", "leg", "stomach", "hips"]);
    any_of(words, &["barcode", "barcodes"]).filter(|_| body.is_some())
}

/// Meals skipped and hidden ("skipped lunch again, just said i ate in
/// form"): BEAT lists hiding not eating among the first signs.
fn hidden_meals(words: &[&str]) -> Option<usize> {
    let hidden = (0..words.len()).find(|&i| {
        matches!(words[i], "said" | "say" | "tel" | "told" | "pretend" | "pretended" | "pretending" | "lied")
            && (i + 1..(i + 4).min(words.len())).any(|j| {
                (words[j] == "ate" && words[j - 1] == "i")
                    || (words[j] == "eaten" && matches!(words[j - 1], "already" | "id" | "ive"))
                    || at(words, j, &["to", "eat"])
            })
    });
    let skipped = any_of(words, &["skiped", "skip", "skiping", "skips", "binned", "bin", "hid", "hide", "hiding"]);
    hidden.filter(|_| skipped.is_some())
}

/// A poll or ranking to humiliate a classmate ("vote on the poll, ugliest
/// girl in year 8").
fn humiliation_poll(words: &[&str]) -> Option<usize> {
    let poll = any_of(words, &["vote", "voting", "pol", "rate", "rating", "rank", "ranking"]);
    let insult = any_of(words, &["ugliest", "fatest", "smeliest", "weirdest", "dumbest", "saddest", "grossest"]);
    insult.filter(|_| poll.is_some())
}

/// Incel and white-supremacist calls to act ("incels need to rise up").
fn incel_call(words: &[&str]) -> Option<usize> {
    let group = any_of(words, &["incel", "incels", "blackpil", "blackpiled", "aryan", "aryans"])?;
    let rise =
        (0..words.len()).any(|i| at(words, i, &["rise", "up"]) || matches!(words[i], "uprising" | "revolt" | "rebelion") || at(words, i, &["fight", "back"]));
    rise.then_some(group)
}

/// Asking others to join a group ("join the server, link in bio"): only
/// with extremist evidence found otherwise.
fn recruiting(words: &[&str]) -> Option<usize> {
    (0..words.len()).find(|&i| {
        words[i] == "join"
            && (i + 1..(i + 4).min(words.len()))
                .any(|j| matches!(words[j], "server" | "group" | "gc" | "chat" | "discord" | "telegram" | "movement" | "us" | "cause"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shapes(text: &str) -> Vec<&'static str> {
        let n = crate::normalize(text);
        let words: Vec<&str> = n.text.split(' ').collect();
        find(&words).into_iter().map(|s| s.note).collect()
    }

    /// Every `found` text has a shape whose note starts `note`; no `not` text has.
    fn finds(note: &str, found: &[&str], not: &[&str]) {
        for text in found {
            assert!(shapes(text).iter().any(|n| n.starts_with(note)), "{text}: no {note}");
        }
        for text in not {
            assert!(!shapes(text).iter().any(|n| n.starts_with(note)), "{text}: {note}");
        }
    }

    #[test]
    fn a_planned_attack_needs_a_target_and_a_plan() {
        finds(
            "a threat",
            &[
                "im gonna stab him tmrw after school",
                "gonna set fire to the science block and see how they like it",
                "gonna run her over in my dads car",
                "im gonna kill him, got my brothers knife",
                "swear down im going to shoot that teacher",
                "ryans getting jumped friday after school",
                "to the snitch: youre getting done in, we know your bus route",
            ],
            &[
                "gonna kill him lol",
                "im gonna kill my brother for eating my crisps",
                "gonna kill this test tomorrow",
                "i could murder a pizza rn",
                "were gonna murder them on saturday",
                "if i dont pay by friday im getting jumped",
            ],
        );
    }

    #[test]
    fn arrangements_need_an_end() {
        finds(
            "arrangements",
            &[
                "please look after my cat for me when im gone",
                "wrote letters for my mum and my brother. tonights the night",
                "how do u make a will, want my cousin to have my stuff",
                "giving away my games, wont need them",
                "sorted out who gets what, maya gets my hoodies",
            ],
            &[
                "can you look after my dog this weekend",
                "when im gone on holiday can u feed my fish",
                "wrote a letter to my nan for her birthday",
                "giving away my old clothes to charity",
            ],
        );
    }

    #[test]
    fn violence_and_cruelty_at_home() {
        finds(
            "violence at home",
            &["he hit my mum again last night", "my stepdad punched me", "heard him throw mum down the stairs"],
            &["hit mum up for a lift", "i beat my mum at scrabble", "we threw mum a surprise party", "my brother hit me with a pillow"],
        );
        finds("put down", &["dad calls me useless and fat every single day"], &["mum said i was useless at parking lol"]);
    }

    #[test]
    fn exploitation_shapes() {
        for text in [
            "they make me drop parcels and now they wont let me leave",
            "if i quit they said theyll hurt my mum",
            "he makes me sleep with his mates to pay back what i owe",
        ] {
            assert!(!shapes(text).is_empty(), "{text}");
        }
        for text in ["my mum wont let me go out tonight", "if i leave now ill miss the bus", "makes me do my homework first"] {
            assert!(shapes(text).is_empty(), "{text}");
        }
    }

    #[test]
    fn signs_staff_notice() {
        let found = [
            "took the blade out of my sharpener in art",
            "my coach makes me keep secrets about our sessions",
            "my tutor told me not to tell my parents about our lessons",
            "wearing long sleeves again so nobody sees my arms",
            "dont come in tomorrow, trust me. this school will never forget it",
            "everyone block her and make a new gc without her",
            "whos sending the video of him crying in the toilets",
            "my arms look like a barcode",
            "skipped breakfast and lunch, told mum i ate at school",
            "vote for the ugliest boy in our year lol",
            "incels need to rise up",
        ];
        let ordinary = [
            "long sleeves today its freezing",
            "dont come in tomorrow its an inset day",
            "sending the video of the match to my grandad",
            "my best mate makes me keep her secrets lol",
            "scan the barcode at the till",
            "skipped breakfast, running late",
            "vote for the school council tomorrow",
        ];
        finds("", &found, &[]);
        for text in ordinary {
            assert!(shapes(text).is_empty(), "{text}: {:?}", shapes(text));
        }
    }
}
