//! A small learned model beside the rules: one logistic regression per
//! category of concern over hashed TF-IDF features of the normalised text:
//! words, word pairs, and the 2- to 5-letter pieces of each word (which carry
//! misspellings, inflections and run-together words the model never saw
//! whole). Trained in this repository by `haven-bench train` from rows whose
//! licence allows it; weights ship as `model/concern.bin`.
//!
//! File format (little-endian): magic `HVNM3`, `u32` bucket count, eight
//! `f32` review thresholds and eight `f32` alert thresholds (both calibrated
//! in cross-validation, see model/README.md), eight `f32` biases and eight
//! `f32` scales, `buckets` `u8` inverse document frequencies (×16), then for
//! each bucket its eight `i16` weights side by side (weight = i16 × the
//! category's scale), so one text's lookups touch one cache line per feature.

use crate::concern::Concern;
use crate::normalize::normalize_as_written;

const MAGIC: &[u8; 5] = b"HVNM3";
const CATEGORIES: usize = 8;

fn fnv(seed: u64, bytes: &[u8]) -> u64 {
    let mut x = seed;
    for &b in bytes {
        x ^= u64::from(b);
        x = x.wrapping_mul(0x100_0000_01b3);
    }
    x ^ (x >> 31)
}

/// Hashed features of a text already normalised, with their counts, in two blocks: words and adjacent word pairs; the pieces of 2
/// to 5 letters of each word padded with a space on each side. Each block is
/// scaled to unit length on its own, so the many pieces do not drown the words.
pub fn features_normalized(normalized: &str, buckets: usize) -> [Vec<(u32, f32)>; 2] {
    let words: Vec<&str> = normalized.split(' ').filter(|w| !w.is_empty()).collect();
    let mut whole: Vec<u32> = Vec::with_capacity(words.len() * 2);
    let mut out: Vec<u32> = Vec::with_capacity(words.len() * 16);
    let b = buckets as u64;
    let mut padded = Vec::with_capacity(32);
    for (i, w) in words.iter().enumerate() {
        let word = fnv(0xcbf2_9ce4_8422_2325, w.as_bytes());
        whole.push((word % b) as u32);
        if let Some(next) = words.get(i + 1) {
            // Distinct seeds keep pairs and pieces apart from whole words.
            whole.push((fnv(word ^ 0x9e37_79b9_7f4a_7c15, next.as_bytes()) % b) as u32);
        }
        padded.clear();
        padded.push(b' ');
        padded.extend_from_slice(w.as_bytes());
        padded.push(b' ');
        // Each piece's hash extends the hash of the piece one letter shorter.
        for start in 0..padded.len() - 1 {
            let mut x: u64 = 0x8422_2325_cbf2_9ce4;
            for (n, &c) in padded[start..padded.len().min(start + 5)].iter().enumerate() {
                x ^= u64::from(c);
                x = x.wrapping_mul(0x100_0000_01b3);
                if n >= 1 {
                    out.push(((x ^ (x >> 31)) % b) as u32);
                }
            }
        }
    }
    [count(whole), count(out)]
}

/// Each distinct bucket with how often it occurs, in order of first
/// occurrence (an open-addressing table: sorting was a third of the time).
fn count(v: Vec<u32>) -> Vec<(u32, f32)> {
    let size = (v.len() * 2).next_power_of_two().max(16);
    let mut slots = vec![u32::MAX; size];
    let mut counted: Vec<(u32, f32)> = Vec::with_capacity(v.len());
    for i in v {
        let mut at = (i.wrapping_mul(0x9e37_79b9) as usize) & (size - 1);
        loop {
            match slots[at] {
                u32::MAX => {
                    slots[at] = counted.len() as u32;
                    counted.push((i, 1.0));
                    break;
                }
                k if counted[k as usize].0 == i => {
                    counted[k as usize].1 += 1.0;
                    break;
                }
                _ => at = (at + 1) & (size - 1),
            }
        }
    }
    counted
}

/// Trained weights.
#[derive(Debug, Clone)]
pub struct Model {
    buckets: usize,
    /// Below this the model says nothing; at or above it, alone, it records
    /// the category at level 1 (logged for pattern-spotting, never an alert).
    pub review: [f32; CATEGORIES],
    /// At or above this the model alone raises the category at level 2, and
    /// halfway from here to certainty at the category's default capped at 3.
    pub alert: [f32; CATEGORIES],
    bias: [f32; CATEGORIES],
    /// Inverse document frequency per bucket, in sixteenths.
    idf: Vec<u8>,
    /// Per category: weight = i16 × scale.
    scale: [f32; CATEGORIES],
    /// `buckets × CATEGORIES`, bucket-major, quantised: half the memory of
    /// `f32`, which is what a long text's scattered lookups wait on.
    weights: Vec<i16>,
}

impl Model {
    /// The shipped model, loaded once for the whole process.
    pub fn shipped_shared() -> Option<std::sync::Arc<Self>> {
        static SHARED: std::sync::OnceLock<Option<std::sync::Arc<Model>>> = std::sync::OnceLock::new();
        SHARED.get_or_init(|| Self::shipped().map(std::sync::Arc::new)).clone()
    }

    /// The shipped model, if one was trained into the repository.
    pub fn shipped() -> Option<Self> {
        Self::from_bytes(include_bytes!("../model/concern.bin"))
    }

    /// A model from its file bytes.
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() < 9 || &b[..5] != MAGIC {
            return None;
        }
        let buckets = u32::from_le_bytes(b[5..9].try_into().ok()?) as usize;
        let f32s = |at: usize| -> Option<[f32; CATEGORIES]> {
            let mut out = [0f32; CATEGORIES];
            for (i, o) in out.iter_mut().enumerate() {
                *o = f32::from_le_bytes(b.get(at + i * 4..at + i * 4 + 4)?.try_into().ok()?);
            }
            Some(out)
        };
        let review = f32s(9)?;
        let alert = f32s(9 + 32)?;
        let bias = f32s(9 + 64)?;
        let scale = f32s(9 + 96)?;
        let mut pos = 9 + 128;
        let idf = b.get(pos..pos + buckets)?.to_vec();
        pos += buckets;
        let raw = b.get(pos..pos + buckets * CATEGORIES * 2)?;
        let weights = raw.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]])).collect();
        Some(Self { buckets, review, alert, bias, idf, scale, weights })
    }

    /// Encodes the model (weights quantised to `i16` per category, inverse
    /// document frequencies to sixteenths).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&(self.buckets as u32).to_le_bytes());
        for v in [self.review, self.alert, self.bias, self.scale] {
            for x in v {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
        out.extend_from_slice(&self.idf);
        for w in &self.weights {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out
    }

    /// The probability of each category (in `Concern::ALL` order).
    pub fn predict(&self, text: &str) -> [f32; CATEGORIES] {
        self.predict_normalized(&normalize_as_written(text).text)
    }

    /// [`predict`](Self::predict) for text already normalised.
    pub fn predict_normalized(&self, normalized: &str) -> [f32; CATEGORIES] {
        let x = vectorise(features_normalized(normalized, self.buckets), |i| f32::from(self.idf[i]) / 16.0);
        let mut z = [0f32; CATEGORIES];
        for &(i, v) in &x {
            let w = &self.weights[i as usize * CATEGORIES..(i as usize + 1) * CATEGORIES];
            for c in 0..CATEGORIES {
                z[c] += f32::from(w[c]) * v;
            }
        }
        std::array::from_fn(|c| 1.0 / (1.0 + (-(self.bias[c] + z[c] * self.scale[c])).exp()))
    }

    /// Trains one-vs-rest logistic regressions, `steps` full passes of Adam.
    /// `rows` are (text, the categories it shows); `ratios` says, per
    /// category, whether features are first scaled by their log-count ratio
    /// (see [`log_count_ratios`]).
    pub fn train(rows: &[(String, Vec<Concern>)], buckets: usize, steps: usize, ratios: [bool; CATEGORIES]) -> Self {
        let counts: Vec<[Vec<(u32, f32)>; 2]> = rows.iter().map(|(t, _)| features_normalized(&normalize_as_written(t).text, buckets)).collect();
        // Smoothed inverse document frequency, as TF-IDF usually has it.
        let mut df = vec![0u32; buckets];
        for f in counts.iter().flatten() {
            for &(i, _) in f {
                df[i as usize] += 1;
            }
        }
        let n = rows.len() as f32;
        // In sixteenths, as the file keeps it, so training sees what inference sees.
        let idf: Vec<u8> = df.iter().map(|&d| ((((1.0 + n) / (1.0 + d as f32)).ln() + 1.0) * 16.0).round().clamp(0.0, 255.0) as u8).collect();
        let feats: Vec<Vec<(u32, f32)>> = counts.into_iter().map(|f| vectorise(f, |i| f32::from(idf[i]) / 16.0)).collect();
        // Full-batch Adam on the mean log-loss plus an L2 penalty on every
        // weight: deterministic, and unlike per-row updates it does not let
        // a word seen once memorise its row.
        // L2 as scikit-learn's C = 4 would set it for a few thousand rows.
        let (lr, l2) = (0.1f32, 6e-5f32);
        let labels: Vec<[f32; CATEGORIES]> = rows.iter().map(|(_, l)| Concern::ALL.map(|c| if l.contains(&c) { 1.0 } else { 0.0 })).collect();
        let ratio = log_count_ratios(&feats, &labels, buckets, ratios);
        let mut bias = [0f32; CATEGORIES];
        let mut weights = vec![0f32; buckets * CATEGORIES];
        let (mut m, mut v) = (vec![0f32; weights.len()], vec![0f32; weights.len()]);
        let (mut mb, mut vb) = ([0f32; CATEGORIES], [0f32; CATEGORIES]);
        let mut grad = vec![0f32; weights.len()];
        let (b1, b2, eps) = (0.9f32, 0.999f32, 1e-8f32);
        for step in 1..=steps {
            for (g, w) in grad.iter_mut().zip(&weights) {
                *g = l2 * w;
            }
            let mut gbias = [0f32; CATEGORIES];
            for (f, y) in feats.iter().zip(&labels) {
                let mut z = bias;
                for &(i, x) in f {
                    let at = i as usize * CATEGORIES..(i as usize + 1) * CATEGORIES;
                    let (w, r) = (&weights[at.clone()], &ratio[at]);
                    for c in 0..CATEGORIES {
                        z[c] += w[c] * r[c] * x;
                    }
                }
                let g: [f32; CATEGORIES] = std::array::from_fn(|c| (1.0 / (1.0 + (-z[c]).exp()) - y[c]) / n);
                for c in 0..CATEGORIES {
                    gbias[c] += g[c];
                }
                for &(i, x) in f {
                    let at = i as usize * CATEGORIES..(i as usize + 1) * CATEGORIES;
                    let (gr, r) = (&mut grad[at.clone()], &ratio[at]);
                    for c in 0..CATEGORIES {
                        gr[c] += g[c] * r[c] * x;
                    }
                }
            }
            let (c1, c2) = (1.0 - b1.powi(step as i32), 1.0 - b2.powi(step as i32));
            for k in 0..weights.len() {
                m[k] = b1 * m[k] + (1.0 - b1) * grad[k];
                v[k] = b2 * v[k] + (1.0 - b2) * grad[k] * grad[k];
                weights[k] -= lr * (m[k] / c1) / ((v[k] / c2).sqrt() + eps);
            }
            for c in 0..CATEGORIES {
                mb[c] = b1 * mb[c] + (1.0 - b1) * gbias[c];
                vb[c] = b2 * vb[c] + (1.0 - b2) * gbias[c] * gbias[c];
                bias[c] -= lr * (mb[c] / c1) / ((vb[c] / c2).sqrt() + eps);
            }
        }
        // Inference uses the weight and the ratio folded into one number.
        for (w, r) in weights.iter_mut().zip(&ratio) {
            *w *= r;
        }
        let mut scale = [0f32; CATEGORIES];
        for (c, s) in scale.iter_mut().enumerate() {
            let max = weights.iter().skip(c).step_by(CATEGORIES).fold(0f32, |m, x| m.max(x.abs())).max(1e-9);
            *s = max / f32::from(i16::MAX);
        }
        let weights = weights.iter().enumerate().map(|(i, w)| (w / scale[i % CATEGORIES]).round() as i16).collect();
        // Never raised until calibrated (see `calibrate`).
        Self { buckets, review: [1.0; CATEGORIES], alert: [1.0; CATEGORIES], bias, idf, scale, weights }
    }

    /// Takes category `c` (in `Concern::ALL` order) from `other`, a model
    /// trained on the same rows (so with the same inverse document
    /// frequencies): the categories' regressions are independent.
    pub fn take_category(&mut self, other: &Self, c: usize) {
        self.bias[c] = other.bias[c];
        self.scale[c] = other.scale[c];
        for i in 0..self.buckets {
            self.weights[i * CATEGORIES + c] = other.weights[i * CATEGORIES + c];
        }
    }

    /// Per-category thresholds from held-out predictions: the lowest
    /// probability (from 0.05 up) at which the model alone raises a category
    /// on at most `max_benign` of the benign rows, and is right at least
    /// `min_precision` of the time among benign rows and rows showing the
    /// category (1.0, never raised, when no threshold does both). `scored`
    /// pairs each held-out row's predictions with its categories.
    pub fn calibrate(scored: &[([f32; CATEGORIES], Vec<Concern>)], max_benign: f64, min_precision: f64) -> [f32; CATEGORIES] {
        let mut out = [1.0f32; CATEGORIES];
        let benign = scored.iter().filter(|(_, l)| l.is_empty()).count().max(1) as f64;
        for (c, concern) in Concern::ALL.iter().enumerate() {
            for step in 1..20 {
                let t = step as f32 / 20.0;
                let fp = scored.iter().filter(|(p, l)| l.is_empty() && p[c] >= t).count() as f64;
                let tp = scored.iter().filter(|(p, l)| l.contains(concern) && p[c] >= t).count() as f64;
                if tp > 0.0 && fp / benign <= max_benign && tp / (tp + fp) >= min_precision {
                    out[c] = t;
                    break;
                }
            }
        }
        out
    }
}

/// Per bucket and category, how much more often a feature occurs in rows of
/// the category than in the others (the log-count ratio of NB-SVM, Wang and
/// Manning 2012, smoothed by one): the regression starts from what each
/// feature says on its own. It does not help every category (it hurt Sexual
/// content, with 87 examples), so the trainer chooses per category.
fn log_count_ratios(feats: &[Vec<(u32, f32)>], labels: &[[f32; CATEGORIES]], buckets: usize, on: [bool; CATEGORIES]) -> Vec<f32> {
    let mut pos = vec![1f32; buckets * CATEGORIES];
    let mut neg = vec![1f32; buckets * CATEGORIES];
    for (f, y) in feats.iter().zip(labels) {
        for &(i, _) in f {
            for (c, &yc) in y.iter().enumerate() {
                let k = i as usize * CATEGORIES + c;
                if yc > 0.5 { pos[k] += 1.0 } else { neg[k] += 1.0 }
            }
        }
    }
    let mut ratio = vec![1f32; buckets * CATEGORIES];
    for c in 0..CATEGORIES {
        if !on[c] || !labels.iter().any(|y| y[c] > 0.5) {
            continue;
        }
        let (p, q): (f32, f32) = (pos.iter().skip(c).step_by(CATEGORIES).sum(), neg.iter().skip(c).step_by(CATEGORIES).sum());
        for i in 0..buckets {
            let k = i * CATEGORIES + c;
            ratio[k] = ((pos[k] / p) / (neg[k] / q)).ln();
        }
    }
    ratio
}

/// Sublinear term frequency × inverse document frequency, each block scaled
/// to unit length.
fn vectorise(blocks: [Vec<(u32, f32)>; 2], idf: impl Fn(usize) -> f32) -> Vec<(u32, f32)> {
    let mut out = Vec::with_capacity(blocks[0].len() + blocks[1].len());
    for mut f in blocks {
        for (i, v) in &mut f {
            *v = (1.0 + v.ln()) * idf(*i as usize);
        }
        let norm = f.iter().map(|(_, v)| v * v).sum::<f32>().sqrt().max(1e-9);
        out.extend(f.into_iter().map(|(i, v)| (i, v / norm)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_a_separable_toy_set_and_round_trips() {
        let rows: Vec<(String, Vec<Concern>)> = (0..200)
            .map(|i| {
                if i % 2 == 0 {
                    (format!("you are a stupid idiot number {i}"), vec![Concern::OffensiveUser])
                } else {
                    (format!("see you at football practice {i}"), vec![])
                }
            })
            .collect();
        let mut m = Model::train(&rows, 1 << 12, 200, [true; 8]);
        m.alert[0] = 0.7;
        let m = Model::from_bytes(&m.to_bytes()).unwrap();
        assert!(m.predict("what a stupid idiot")[0] > 0.8);
        assert!(m.predict("what stupidest idiots")[0] > 0.5, "word pieces carry inflections");
        assert!(m.predict("football practice today")[0] < 0.2);
        assert_eq!(m.alert[0], 0.7);
        assert!(Model::from_bytes(b"nope").is_none());
    }
}
