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
pub mod train;

use std::collections::HashSet;
use std::sync::Arc;

use haven_policy::{Category, ModelGuess, Request};

pub use file::ModelError;

/// The least probability worth reporting as a guess: below it the model
/// sees nothing but an ordinary site.
const REPORTED: f32 = 0.10;
/// Explanations are worked out only for guesses this likely (they cost a
/// scan of the name against the vocabulary).
const EXPLAINED: f32 = 0.50;

/// A trained model.
#[derive(Debug, Clone)]
pub struct HostModel {
    /// Class `k`'s category; `None` is "an ordinary site".
    classes: Vec<Option<Category>>,
    bits: u32,
    scale: f32,
    bias: Vec<f32>,
    /// `weights[bucket * classes + k]`, in units of `scale`.
    weights: Vec<i8>,
    /// Thresholds calibrated on held-out list entries when trained, the
    /// defaults a config may override.
    thresholds: Vec<(Category, f32)>,
    /// Words seen in listed names, to say which words of a name weighed.
    vocabulary: HashSet<String>,
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

    /// The probability of every class for `host` (and `path`), in class order.
    pub fn probabilities(&self, host: &str, path: Option<&str>) -> Vec<(Option<Category>, f32)> {
        let k = self.classes.len();
        let mut sums = vec![0i32; k];
        let mask = (1u64 << self.bits) - 1;
        features::each(host, path, |h, _| {
            let at = (h & mask) as usize * k;
            for (s, w) in sums.iter_mut().zip(&self.weights[at..at + k]) {
                *s += i32::from(*w);
            }
        });
        let logits: Vec<f32> = sums.iter().zip(&self.bias).map(|(s, b)| *s as f32 * self.scale + b).collect();
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let exp: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
        let total: f32 = exp.iter().sum();
        self.classes.iter().copied().zip(exp.iter().map(|e| e / total)).collect()
    }

    /// The likeliest category other than "an ordinary site", if the model
    /// gives it at least a small chance, with the words that pointed there.
    pub fn guess(&self, host: &str, path: Option<&str>) -> Option<ModelGuess> {
        let probs = self.probabilities(host, path);
        let (k, category, confidence) = probs.iter().enumerate().filter_map(|(k, (c, p))| c.map(|c| (k, c, *p))).max_by(|a, b| a.2.total_cmp(&b.2))?;
        if confidence < REPORTED {
            return None;
        }
        let evidence = if confidence >= EXPLAINED { self.evidence(host, k) } else { Vec::new() };
        Some(ModelGuess { category, confidence, evidence })
    }

    /// The words of the registered label that pushed the name towards class
    /// `k` most, longest first where they overlap; a fragment when the
    /// vocabulary knows no word there.
    fn evidence(&self, host: &str, k: usize) -> Vec<String> {
        let classes = self.classes.len();
        let benign = self.classes.iter().position(Option::is_none).unwrap_or(0);
        let mask = (1u64 << self.bits) - 1;
        let mut pieces: Vec<(usize, usize, i32)> = Vec::new();
        features::each(host, None, |h, span| {
            if let Some((from, to)) = span {
                let at = (h & mask) as usize * classes;
                pieces.push((from, to, i32::from(self.weights[at + k]) - i32::from(self.weights[at + benign])));
            }
        });
        let label = features::parts(host).registered;
        let weight_of = |from: usize, to: usize| pieces.iter().filter(|(f, t, _)| *f >= from && *t <= to).map(|(_, _, w)| *w).sum::<i32>();
        let mut words: Vec<(usize, usize, i32)> = Vec::new();
        let bytes = label.as_bytes();
        for from in 0..bytes.len() {
            for to in (from + 3)..=bytes.len().min(from + 16) {
                if let Some(word) = label.get(from..to)
                    && self.vocabulary.contains(word)
                {
                    let w = weight_of(from, to);
                    if w > 0 {
                        words.push((from, to, w));
                    }
                }
            }
        }
        // Longer and heavier first; no two chosen words overlap.
        words.sort_by_key(|(f, t, w)| (std::cmp::Reverse(*w), std::cmp::Reverse(t - f)));
        let mut chosen: Vec<(usize, usize, i32)> = Vec::new();
        for w in words {
            if chosen.len() == 3 {
                break;
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

/// The model's guess for a request: its host, and its path when it is a
/// URL; nothing for an address, which has no name to read.
pub fn guess_request(model: &HostModel, request: &Request) -> Option<ModelGuess> {
    let host = request.host();
    if host.starts_with('[') || host.parse::<std::net::IpAddr>().is_ok() {
        return None;
    }
    model.guess(host, request.url().map(|u| u.path.as_str()))
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
