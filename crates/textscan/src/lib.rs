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
//! Still to come (see issue 4's note): weighted phrase lists per category,
//! context rules, levels, `haven classify` and its evaluation.
//!
//! Architecture invariant: pure. No I/O, no clock; never panics on input.
#![forbid(unsafe_code)]

mod normalize;
pub mod pii;

pub use normalize::{Normalized, normalize};
