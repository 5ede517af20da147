//! Training: multinomial logistic regression by AdaGrad over hashed
//! features, then 8-bit weights and per-category thresholds calibrated on
//! held-out examples. Deterministic: the same examples and options give the
//! same bytes.

use std::collections::HashSet;

use haven_policy::Category;

use crate::{HostModel, features};

/// One labelled name.
#[derive(Debug, Clone)]
pub struct Example {
    /// The host (canonical, lower case).
    pub host: String,
    /// The URL path, for URL entries.
    pub path: Option<String>,
    /// Index into the classes given to [`train`].
    pub class: usize,
}

/// How to train.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Hash table size, as a power of two.
    pub bits: u32,
    /// Passes over the examples.
    pub epochs: u32,
    /// AdaGrad's step size.
    pub rate: f32,
    /// How much an ordinary site's example counts against a category's.
    pub benign_weight: f32,
    /// The share of held-out ordinary sites a category's threshold may
    /// block (its calibration target).
    pub benign_budget: f32,
    /// Thresholds are never below this.
    pub floor: f32,
    /// Seed of the example order.
    pub seed: u64,
    /// Weight decay on the weights an example touches (keeps rare pieces
    /// from making the model sure of itself).
    pub l2: f32,
}

impl Default for Options {
    fn default() -> Self {
        Self { bits: 20, epochs: 3, rate: 0.05, benign_weight: 2.0, benign_budget: 0.015, floor: 0.35, seed: 0x5eed, l2: 0.0 }
    }
}

/// What calibration found for one category on the held-out examples.
#[derive(Debug, Clone)]
pub struct Calibrated {
    /// The category.
    pub category: Category,
    /// Its threshold.
    pub threshold: f32,
    /// Held-out examples of the category at or above it.
    pub caught: usize,
    /// Held-out examples of the category.
    pub of: usize,
    /// Held-out ordinary sites it would block at the threshold.
    pub benign_blocked: usize,
}

/// Trains on `examples`, calibrates thresholds on `held_out`. `classes[k]`
/// is class `k`'s category, `None` for ordinary sites.
pub fn train(
    classes: &[Option<Category>],
    examples: &[Example],
    held_out: &[Example],
    vocabulary: HashSet<String>,
    o: Options,
) -> (HostModel, Vec<Calibrated>) {
    let k = classes.len();
    let benign = classes.iter().position(Option::is_none).unwrap_or(0);
    let mask = (1u64 << o.bits) - 1;
    let size = (1usize << o.bits) * k;
    let mut w = vec![0f32; size];
    let mut g2 = vec![1e-6f32; size];
    let mut bias = vec![0f32; k];
    let mut bias_g2 = vec![1e-6f32; k];
    let buckets: Vec<Vec<u32>> = examples.iter().map(|e| buckets_of(e, mask)).collect();
    // Classes balanced by their size, so a large list does not drown a small one.
    let mut count = vec![0usize; k];
    for e in examples {
        count[e.class] += 1;
    }
    let mean = examples.len() as f32 / k as f32;
    let class_weight: Vec<f32> = (0..k)
        .map(|c| {
            let balance = if count[c] == 0 { 0.0 } else { (mean / count[c] as f32).sqrt().clamp(0.3, 4.0) };
            if c == benign { balance * o.benign_weight } else { balance }
        })
        .collect();
    let mut order: Vec<usize> = (0..examples.len()).collect();
    let mut rng = o.seed | 1;
    let mut z = vec![0f32; k];
    for _ in 0..o.epochs {
        for i in (1..order.len()).rev() {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            order.swap(i, (rng % (i as u64 + 1)) as usize);
        }
        for &i in &order {
            let e = &examples[i];
            z.copy_from_slice(&bias);
            for &b in &buckets[i] {
                let at = b as usize * k;
                for (zc, wc) in z.iter_mut().zip(&w[at..at + k]) {
                    *zc += wc;
                }
            }
            softmax(&mut z);
            let cw = class_weight[e.class];
            for c in 0..k {
                let g = (z[c] - f32::from(u8::from(c == e.class))) * cw;
                if g.abs() < 1e-5 && o.l2 == 0.0 {
                    continue;
                }
                bias_g2[c] += g * g;
                bias[c] -= o.rate * g / bias_g2[c].sqrt();
                for &b in &buckets[i] {
                    let at = b as usize * k + c;
                    let gw = g + o.l2 * w[at];
                    g2[at] += gw * gw;
                    w[at] -= o.rate * gw / g2[at].sqrt();
                }
            }
        }
    }
    let max = w.iter().fold(0f32, |m, v| m.max(v.abs()));
    let scale = if max == 0.0 { 1.0 } else { max / 127.0 };
    let packed: Vec<i8> = w.iter().map(|v| (v / scale).round().clamp(-127.0, 127.0) as i8).collect();
    let weights = HostModel::padded(&packed, k);
    let mut vocabulary: Vec<String> = vocabulary.into_iter().collect();
    vocabulary.sort();
    let words = crate::word_finder(&vocabulary);
    let mut model = HostModel { classes: classes.to_vec(), bits: o.bits, scale, bias, weights, thresholds: Vec::new(), vocabulary, words };
    let calibrated = calibrate(&model, held_out, o);
    model.thresholds = calibrated.iter().map(|c| (c.category, c.threshold)).collect();
    (model, calibrated)
}

fn buckets_of(e: &Example, mask: u64) -> Vec<u32> {
    let mut v = Vec::with_capacity(64);
    features::each(&e.host, e.path.as_deref(), |h, _| v.push((h & mask) as u32));
    v
}

fn softmax(z: &mut [f32]) {
    let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut total = 0.0;
    for v in z.iter_mut() {
        *v = (*v - max).exp();
        total += *v;
    }
    for v in z.iter_mut() {
        *v /= total;
    }
}

/// Thresholds by one budget for the whole model: every category starts
/// where no held-out ordinary site is blocked, then, one ordinary site at a
/// time, the category whose recall gains most from one more is lowered,
/// until `benign_budget` of the held-out ordinary sites would be blocked.
/// Categories are weighed by recall, not size, so a small list is not
/// starved by a large one. Only the categories the model decides by
/// default ([`crate::DEFAULT_CATEGORIES`]) spend the budget; the others get
/// the threshold that blocks no held-out ordinary site.
fn calibrate(model: &HostModel, held_out: &[Example], o: Options) -> Vec<Calibrated> {
    let benign = model.classes.iter().position(Option::is_none).unwrap_or(0);
    let cats: Vec<Category> = model.classes.iter().flatten().copied().collect();
    let mut pos: Vec<Vec<f32>> = vec![Vec::new(); cats.len()];
    let mut neg: Vec<Vec<f32>> = vec![Vec::new(); cats.len()];
    let mut benign_n = 0usize;
    for e in held_out {
        let g = model.guess(&e.host, e.path.as_deref());
        if e.class == benign {
            benign_n += 1;
            if let Some(g) = g
                && let Some(i) = cats.iter().position(|c| *c == g.category)
            {
                neg[i].push(g.confidence);
            }
        } else if let Some(c) = model.classes[e.class]
            && let Some(i) = cats.iter().position(|x| *x == c)
        {
            pos[i].push(g.filter(|g| g.category == c).map_or(0.0, |g| g.confidence));
        }
    }
    for v in neg.iter_mut().chain(pos.iter_mut()) {
        v.sort_by(|a, b| b.total_cmp(a));
    }
    // The threshold that lets `j` ordinary sites of category `i` through.
    let at = |i: usize, j: usize| neg[i].get(j).map_or(o.floor, |v| (v + 1e-4).max(o.floor)).min(0.999);
    let recall = |i: usize, t: f32| pos[i].iter().filter(|p| **p >= t).count() as f32 / pos[i].len().max(1) as f32;
    let mut allowed = vec![0usize; cats.len()];
    let budget = (benign_n as f32 * o.benign_budget).floor() as usize;
    let mut spent = 0;
    while spent < budget {
        // The best recall per ordinary site blocked, looking a few steps
        // ahead so that a flat stretch does not stop a category early.
        let mut best: Option<(usize, usize, f32)> = None;
        for i in (0..cats.len()).filter(|&i| crate::DEFAULT_CATEGORIES.contains(&cats[i])) {
            let now = recall(i, at(i, allowed[i]));
            for step in 1..=(budget - spent).min(neg[i].len().saturating_sub(allowed[i])).min(20) {
                let rate = (recall(i, at(i, allowed[i] + step)) - now) / step as f32;
                if rate > 0.0 && best.is_none_or(|b| rate > b.2) {
                    best = Some((i, step, rate));
                }
            }
        }
        let Some((i, step, _)) = best else { break };
        allowed[i] += step;
        spent += step;
    }
    cats.iter()
        .enumerate()
        .map(|(i, c)| {
            let threshold = at(i, allowed[i]);
            Calibrated {
                category: *c,
                threshold,
                caught: pos[i].iter().filter(|p| **p >= threshold).count(),
                of: pos[i].len(),
                benign_blocked: neg[i].iter().filter(|n| **n >= threshold).count(),
            }
        })
        .collect()
}
