//! Haven's hostname and URL model: for a site no list names, the category
//! its name most likely belongs to and how sure the model is.
//!
//! A multinomial logistic regression over hashed pieces of the name
//! ([`features`]): character n-grams of the registered label and the
//! subdomains, the words between hyphens and digits, the public suffix, the
//! name's shape and, for a URL, the words of its path. Trained by
//! `haven-bench train-hosts` on the category lists Haven ships with
//! ([`train`]); weights are 8-bit, so a decision is a few dozen table reads.
//!
//! The model only guesses. The list index asks it about names no list holds
//! (`haven_lists::ListIndex::with_model`); whether a guess blocks is the
//! policy engine's call (`haven_policy::decide`): only where no list names the site, only
//! for categories the trust gives a threshold, only at schools that use it.
//! This crate is pure: no files, sockets or clock.
#![forbid(unsafe_code)]

pub mod features;
mod file;
mod rows;
pub mod train;

use std::sync::Arc;

use haven_policy::{Category, ModelGuess, Request};

pub use file::ModelError;

/// The least probability worth reporting as a guess: below it the model
/// sees nothing but an ordinary site.
const REPORTED: f32 = 0.10;
/// The most classes a model may have (scores live on the stack).
pub const MAX_CLASSES: usize = 16;

/// A trained model.
#[derive(Debug, Clone)]
pub struct HostModel {
    /// Class `k`'s category; `None` is "an ordinary site".
    classes: Vec<Option<Category>>,
    bits: u32,
    scale: f32,
    bias: Vec<f32>,
    /// `weights[bucket * MAX_CLASSES + k]`, in units of `scale`: a bucket's
    /// weights are one 16-byte row, added as one vector.
    weights: rows::Rows,
    /// Thresholds calibrated on held-out list entries when trained, the
    /// defaults a config may override.
    thresholds: Vec<(Category, f32)>,
    /// Words seen in listed names, sorted: what the file keeps of `words`.
    vocabulary: Vec<String>,
    /// The same words as one automaton, to find them inside a name in a pass.
    words: Option<aho_corasick::AhoCorasick>,
}

/// The shipped model, trained from the development lists (see
/// `model/README.md` beside this crate for sources, licences and the command).
const SHIPPED: &[u8] = include_bytes!("../model/hosts.bin");

impl HostModel {
    /// The model that ships with Haven.
    pub fn shipped() -> Result<Self, ModelError> {
        Self::from_bytes(SHIPPED)
    }

    /// The categories the model can name.
    pub fn categories(&self) -> impl Iterator<Item = Category> + '_ {
        self.classes.iter().flatten().copied()
    }

    /// The thresholds calibrated when it was trained.
    pub fn calibrated_thresholds(&self) -> &[(Category, f32)] {
        &self.thresholds
    }

    /// Size of the weight table in bytes.
    pub fn weight_bytes(&self) -> usize {
        self.weights.len()
    }

    /// Rows of `classes` weights laid out as rows of [`MAX_CLASSES`].
    pub(crate) fn padded(weights: &[i8], classes: usize) -> rows::Rows {
        let mut out = vec![0i8; weights.len() / classes.max(1) * MAX_CLASSES];
        for (row, w) in out.chunks_exact_mut(MAX_CLASSES).zip(weights.chunks_exact(classes.max(1))) {
            row[..classes].copy_from_slice(w);
        }
        rows::Rows::new(&out)
    }

    /// The probability of every class for `host` (and `path`), in class order.
    pub fn probabilities(&self, host: &str, path: Option<&str>) -> Vec<(Option<Category>, f32)> {
        let (probs, n) = self.scores(host, path);
        self.classes.iter().copied().zip(probs[..n].iter().copied()).collect()
    }

    /// Class probabilities on the stack: this runs for every unlisted name.
    fn scores(&self, host: &str, path: Option<&str>) -> ([f32; MAX_CLASSES], usize) {
        let k = self.classes.len();
        // i16 rows add as one vector; a name has at most a few hundred
        // pieces of at most ±127 each, far inside i16 only when summed
        // per piece kind, so the running sum saturates instead of wrapping.
        let mut sums = [0i16; MAX_CLASSES];
        let mask = (1u64 << self.bits) - 1;
        // Rows are found first and read after, so the reads (most of them
        // cache misses in a table this size) overlap instead of queueing
        // behind the hashing.
        let mut rows = [0u32; 384];
        let mut n = 0;
        features::each(host, path, |h, _| {
            if n < rows.len() {
                rows[n] = (h & mask) as u32;
                n += 1;
            }
        });
        for &r in &rows[..n] {
            let at = r as usize * MAX_CLASSES;
            if let Some(row) = self.weights.get(at..at + MAX_CLASSES).and_then(|r| <&[u8; MAX_CLASSES]>::try_from(r).ok()) {
                for c in 0..MAX_CLASSES {
                    sums[c] = sums[c].saturating_add(i16::from(row[c] as i8));
                }
            }
        }
        let mut p = [0f32; MAX_CLASSES];
        let mut max = f32::NEG_INFINITY;
        for c in 0..k {
            p[c] = f32::from(sums[c]) * self.scale + self.bias[c];
            max = max.max(p[c]);
        }
        let mut total = 0.0;
        for v in &mut p[..k] {
            *v = fast_exp(*v - max);
            total += *v;
        }
        for v in &mut p[..k] {
            *v /= total;
        }
        (p, k)
    }

    /// The likeliest category other than "an ordinary site", if the model
    /// gives it at least a small chance. The words that pointed there are
    /// left for [`HostModel::explain`], asked only when a guess is used.
    pub fn guess(&self, host: &str, path: Option<&str>) -> Option<ModelGuess> {
        let (p, n) = self.scores(host, path);
        let (category, confidence) = self.classes.iter().zip(&p[..n]).filter_map(|(c, p)| c.map(|c| (c, *p))).max_by(|a, b| a.1.total_cmp(&b.1))?;
        (confidence >= REPORTED).then(|| ModelGuess { category, confidence, evidence: Vec::new() })
    }

    /// The words of the registered label that pushed the name towards
    /// `category` most, longest first where they overlap; a fragment when
    /// the vocabulary knows no word there.
    pub fn explain(&self, host: &str, category: Category) -> Vec<String> {
        let Some(k) = self.classes.iter().position(|c| *c == Some(category)) else { return Vec::new() };
        let benign = self.classes.iter().position(Option::is_none).unwrap_or(0);
        let mask = (1u64 << self.bits) - 1;
        let mut pieces: Vec<(usize, usize, i32)> = Vec::new();
        features::each(host, None, |h, span| {
            if let Some((from, to)) = span {
                let at = (h & mask) as usize * MAX_CLASSES;
                pieces.push((from, to, i32::from(self.weights[at + k] as i8) - i32::from(self.weights[at + benign] as i8)));
            }
        });
        let label = features::parts(host).registered;
        let weight_of = |from: usize, to: usize| pieces.iter().filter(|(f, t, _)| *f >= from && *t <= to).map(|(_, _, w)| *w).sum::<i32>();
        let mut words: Vec<(usize, usize, i32)> = Vec::new();
        if let Some(ac) = &self.words {
            for m in ac.find_overlapping_iter(label) {
                let w = weight_of(m.start(), m.end());
                if w > 0 {
                    words.push((m.start(), m.end(), w));
                }
            }
        }
        // Weight per square root of length: a word's own letters, not a longer
        // neighbour's (`casino` before `casinoo`); words far lighter than the
        // heaviest are left out (`new` beside `casino`); none overlap.
        let density = |(f, t, w): &(usize, usize, i32)| *w as f32 / ((t - f) as f32).sqrt();
        words.sort_by(|a, b| density(b).total_cmp(&density(a)));
        let heaviest = words.iter().map(|w| w.2).max().unwrap_or(0);
        let mut chosen: Vec<(usize, usize, i32)> = Vec::new();
        for w in words {
            if chosen.len() == 3 {
                break;
            }
            if (w.2 as f32) < 0.35 * heaviest as f32 {
                continue;
            }
            if chosen.iter().all(|c| w.1 <= c.0 || w.0 >= c.1) {
                chosen.push(w);
            }
        }
        if chosen.is_empty() {
            // No known word: the heaviest fragment.
            if let Some((f, t, _)) = pieces.iter().filter(|p| p.2 > 0).max_by_key(|p| p.2) {
                return label.get(*f..*t).map(|s| vec![s.to_string()]).unwrap_or_default();
            }
            return Vec::new();
        }
        chosen.sort_by_key(|c| c.0);
        chosen.into_iter().filter_map(|(f, t, _)| label.get(f..t).map(str::to_string)).collect()
    }
}

/// e^x for x ≤ 0, to about 1e-4 relative: 2^(x·log2 e) split into an
/// integer power (the float's exponent bits) and a cubic for the fraction.
/// The thresholds are calibrated through the same function.
fn fast_exp(x: f32) -> f32 {
    let t = (x * std::f32::consts::LOG2_E).max(-126.0);
    let i = t.floor();
    let f = t - i;
    let poly = 1.0 + f * (std::f32::consts::LN_2 + f * (0.240_226_5 + f * (0.055_504_1 + f * 0.009_618_1)));
    f32::from_bits(((i as i32 + 127) as u32) << 23) * poly
}

/// The automaton that finds vocabulary words inside a name.
pub(crate) fn word_finder(vocabulary: &[String]) -> Option<aho_corasick::AhoCorasick> {
    aho_corasick::AhoCorasick::new(vocabulary.iter().filter(|w| w.len() >= 3)).ok()
}

/// The model's guess for a request: its host, and its path when it is a
/// URL; nothing for an address, which has no name to read.
pub fn guess_request(model: &HostModel, request: &Request) -> Option<ModelGuess> {
    let host = request.host();
    if host.starts_with('[') || host.parse::<std::net::IpAddr>().is_ok() {
        return None;
    }
    model.guess(host, request.url().map(|u| u.path.as_str()))
}

/// Fills in the words behind a guess that is about to be used.
pub fn explain_request(model: &HostModel, request: &Request, guess: &mut ModelGuess) {
    guess.evidence = model.explain(request.host(), guess.category);
}

/// The categories the model decides unless a trust says otherwise: not
/// phishing, scams, malware, mining or hacking, whose innocent-sounding
/// names are too like ordinary businesses' (a wrong block of a parent's
/// bank or a shop costs more than a miss the lists or page analysis can
/// catch).
pub const DEFAULT_CATEGORIES: &[Category] = &[
    Category::Adult,
    Category::Gambling,
    Category::Circumvention,
    Category::Drugs,
    Category::Dating,
    Category::Games,
    Category::Piracy,
    Category::SocialNetworks,
    Category::Chat,
];

/// The shipped model, read once per process.
pub fn shipped_shared() -> Result<Arc<HostModel>, ModelError> {
    static SHIPPED_MODEL: std::sync::OnceLock<Arc<HostModel>> = std::sync::OnceLock::new();
    if let Some(m) = SHIPPED_MODEL.get() {
        return Ok(m.clone());
    }
    let m = Arc::new(HostModel::shipped()?);
    Ok(SHIPPED_MODEL.get_or_init(|| m).clone())
}

#[cfg(test)]
mod tests;
