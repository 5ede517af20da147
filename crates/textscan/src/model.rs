//! A small learned model beside the rules: one logistic regression per
//! category of concern over hashed features of the normalised text: words,
//! word pairs and the four-letter pieces of longer words (which carry
//! misspellings and inflections the model never saw whole). Trained in this
//! repository by `haven-bench train` from rows whose licence allows it;
//! weights ship as `model/concern.bin`.
//!
//! File format: magic `HVNM2`, `u32` bucket count, eight `f32` thresholds
//! (calibrated in cross-validation, see model/README.md), then for each
//! category (in `Concern::ALL` order) an `f32` bias, an `f32` scale and
//! `buckets` `i16` weights (weight = i16 × scale), all little-endian.

use crate::concern::Concern;
use crate::normalize::normalize;

const MAGIC: &[u8; 5] = b"HVNM2";

/// Hashed features of a text: words and adjacent word pairs.
pub fn features(text: &str, buckets: usize) -> Vec<usize> {
    features_normalized(&normalize(text).text, buckets)
}

/// [`features`] of text already normalised.
pub fn features_normalized(normalized: &str, buckets: usize) -> Vec<usize> {
    let words: Vec<&str> = normalized.split(' ').filter(|w| !w.is_empty()).collect();
    let mut out = Vec::with_capacity(words.len() * 2);
    let h = |parts: &[&str]| {
        let mut x: u64 = 0xcbf2_9ce4_8422_2325;
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                x ^= u64::from(b' ');
                x = x.wrapping_mul(0x100_0000_01b3);
            }
            for b in p.bytes() {
                x ^= u64::from(b);
                x = x.wrapping_mul(0x100_0000_01b3);
            }
        }
        ((x ^ (x >> 31)) % buckets as u64) as usize
    };
    let mut padded = Vec::with_capacity(32);
    for (i, w) in words.iter().enumerate() {
        out.push(h(&[w]));
        if let Some(next) = words.get(i + 1) {
            out.push(h(&[w, next]));
        }
        if w.len() >= 4 {
            padded.clear();
            padded.push(b'<');
            padded.extend_from_slice(w.as_bytes());
            padded.push(b'>');
            for g in padded.windows(4) {
                // A namespace byte keeps pieces apart from whole words.
                let mut x: u64 = 0x84222325_cbf29ce4;
                for &b in g {
                    x ^= u64::from(b);
                    x = x.wrapping_mul(0x100_0000_01b3);
                }
                out.push(((x ^ (x >> 29)) % buckets as u64) as usize);
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Trained weights.
#[derive(Debug, Clone)]
pub struct Model {
    buckets: usize,
    /// How sure the model must be to raise each category on its own.
    pub thresholds: [f32; 8],
    bias: Vec<f32>,
    weights: Vec<Vec<f32>>,
}

impl Model {
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
        let mut thresholds = [1.0f32; 8];
        for (i, t) in thresholds.iter_mut().enumerate() {
            *t = f32::from_le_bytes(b.get(9 + i * 4..13 + i * 4)?.try_into().ok()?);
        }
        let mut pos = 9 + 32;
        let mut bias = Vec::new();
        let mut weights = Vec::new();
        for _ in Concern::ALL {
            let f = |p: usize| b.get(p..p + 4).and_then(|s| s.try_into().ok()).map(f32::from_le_bytes);
            let (bi, scale) = (f(pos)?, f(pos + 4)?);
            pos += 8;
            let raw = b.get(pos..pos + buckets * 2)?;
            weights.push(raw.chunks_exact(2).map(|c| f32::from(i16::from_le_bytes([c[0], c[1]])) * scale).collect());
            bias.push(bi);
            pos += buckets * 2;
        }
        Some(Self { buckets, thresholds, bias, weights })
    }

    /// Encodes weights (quantised to `i16` per category).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&(self.buckets as u32).to_le_bytes());
        for t in self.thresholds {
            out.extend_from_slice(&t.to_le_bytes());
        }
        for (b, w) in self.bias.iter().zip(&self.weights) {
            let max = w.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-9);
            let scale = max / f32::from(i16::MAX);
            out.extend_from_slice(&b.to_le_bytes());
            out.extend_from_slice(&scale.to_le_bytes());
            for x in w {
                out.extend_from_slice(&((x / scale).round() as i16).to_le_bytes());
            }
        }
        out
    }

    /// The probability of each category (in `Concern::ALL` order).
    pub fn predict(&self, text: &str) -> [f32; 8] {
        self.predict_normalized(&normalize(text).text)
    }

    /// [`predict`](Self::predict) for text already normalised.
    pub fn predict_normalized(&self, normalized: &str) -> [f32; 8] {
        let f = features_normalized(normalized, self.buckets);
        let norm = 1.0 / (f.len().max(1) as f32).sqrt();
        let mut out = [0f32; 8];
        for (c, o) in out.iter_mut().enumerate() {
            let z = self.bias[c] + f.iter().map(|&i| self.weights[c][i]).sum::<f32>() * norm;
            *o = 1.0 / (1.0 + (-z).exp());
        }
        out
    }

    /// Trains one-vs-rest logistic regressions with AdaGrad.
    /// `rows` are (text, the categories it shows).
    pub fn train(rows: &[(String, Vec<Concern>)], buckets: usize, epochs: usize) -> Self {
        let feats: Vec<Vec<usize>> = rows.iter().map(|(t, _)| features(t, buckets)).collect();
        let mut bias = vec![0f32; 8];
        let mut weights = vec![vec![0f32; buckets]; 8];
        let mut g2 = vec![vec![1e-6f32; buckets]; 8];
        let mut gb = [1e-6f32; 8];
        let (lr, l2) = (0.5f32, 1e-5f32);
        // A fixed shuffle order per epoch (xorshift), for reproducible training.
        let mut order: Vec<usize> = (0..rows.len()).collect();
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        for _ in 0..epochs {
            for i in (1..order.len()).rev() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                order.swap(i, (x % (i as u64 + 1)) as usize);
            }
            for &r in &order {
                let f = &feats[r];
                let norm = 1.0 / (f.len().max(1) as f32).sqrt();
                for (c, concern) in Concern::ALL.iter().enumerate() {
                    let y = if rows[r].1.contains(concern) { 1.0 } else { 0.0 };
                    let z = bias[c] + f.iter().map(|&i| weights[c][i]).sum::<f32>() * norm;
                    let p = 1.0 / (1.0 + (-z).exp());
                    let g = p - y;
                    gb[c] += g * g;
                    bias[c] -= lr * g / gb[c].sqrt();
                    for &i in f {
                        let gi = g * norm + l2 * weights[c][i];
                        g2[c][i] += gi * gi;
                        weights[c][i] -= lr * gi / g2[c][i].sqrt();
                    }
                }
            }
        }
        // Never raised until calibrated (see `calibrate`).
        Self { buckets, thresholds: [1.0; 8], bias, weights }
    }

    /// Per-category thresholds from held-out predictions: the lowest
    /// probability at which the model alone raises a category on at most
    /// `max_benign` of the benign rows, and is right at least `min_precision`
    /// of the time among benign rows and rows showing the category (1.0, never
    /// raised, when no threshold does both). `scored` pairs each held-out
    /// row's predictions with its categories.
    pub fn calibrate(scored: &[([f32; 8], Vec<Concern>)], max_benign: f64, min_precision: f64) -> [f32; 8] {
        let mut out = [1.0f32; 8];
        for (c, concern) in Concern::ALL.iter().enumerate() {
            let benign = scored.iter().filter(|(_, l)| l.is_empty()).count().max(1) as f64;
            for step in 50..100 {
                let t = step as f32 / 100.0;
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
        let mut m = Model::train(&rows, 1 << 12, 5);
        m.thresholds[0] = 0.7;
        let m = Model::from_bytes(&m.to_bytes()).unwrap();
        assert!(m.predict("what a stupid idiot")[0] > 0.8);
        assert!(m.predict("what stupidest idiots")[0] > 0.5, "word pieces carry inflections");
        assert!(m.predict("football practice today")[0] < 0.2);
        assert_eq!(m.thresholds[0], 0.7);
        assert!(Model::from_bytes(b"nope").is_none());
    }
}
