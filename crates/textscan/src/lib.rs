//! Text monitoring for Haven: the foundation of the classifier (issue 4).
//!
//! - [`normalize`]: folds the ways pupils (and groomers) disguise words —
//!   compatibility and styled characters, homoglyphs, leetspeak, letters
//!   spaced or dotted apart, stretched letters, emoji used as words, and
//!   shorthand such as `kms` — into plain lowercase text, keeping for every
//!   output byte the span of the original text it came from, so a match can
//!   be highlighted where the pupil typed it.
//! - [`pii`]: personal data for the "Oversharer" category — UK phone
//!   numbers, postcodes, e-mail addresses, card numbers (Luhn-checked),
//!   National Insurance numbers — found in the original text.
//!
//! - [`Classifier`]: weighted phrases per category of concern from
//!   human-editable lexicons (`lexicon/en.toml`), context rules (negation,
//!   reported speech and news, gaming talk lower; first person, intent and a
//!   method raise), personal data, and a level 1–5 per category.
//!
//! - [`page`]: what a web page or a chatbot's answer is about (adult,
//!   gambling, self-harm promotion, extremism, hate, profanity), read from
//!   HTML in pieces as the proxy streams it.
//!
//! Architecture invariant: pure. No I/O, no clock; never panics on input.
#![forbid(unsafe_code)]

mod classify;
mod concern;
pub mod eval;
pub mod model;
mod normalize;
pub mod page;
pub mod pii;
pub mod semantic;
mod shapes;

pub use classify::{Classification, Classifier, Example, Found, Lexicon, LexiconError, Span};
pub use concern::Concern;
pub use normalize::{Normalized, normalize};
