//! The head: one softmax regression over the kinds of both banks (and
//! "other"), on a text's sentence vector (the gate: on its cheap vector). Look-alike kinds are classes of
//! their own, so "this homework is killing me" has somewhere to go that is
//! not a concern.
//!
//! File format (little-endian): magic `HVNH1`, `u32` dimensions, `u32`
//! classes, each class as a `u8` length and its name, `f32` input scale,
//! then `classes × dims` `f32` weights (class by class) and `classes` `f32`
//! biases.

use ndarray::Array2;

const MAGIC: &[u8; 5] = b"HVNH1";

/// Why a head file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    /// Not a head file, or cut short.
    #[error("not a Haven semantic head (HVNH1) or cut short at byte {0}: retrain it with `haven model retrain --from-record`")]
    Malformed(usize),
    /// Made for another embedding.
    #[error("the head was trained for {found}-dimensional vectors, the shipped embedding has {expected}: retrain it with `haven model retrain --from-record`")]
    Dims { expected: usize, found: usize },
}

/// A trained head.
#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    pub(crate) dims: usize,
    pub(crate) classes: Vec<String>,
    pub(crate) scale: f32,
    pub(crate) weights: Vec<f32>,
    pub(crate) biases: Vec<f32>,
}

/// One training row: a vector, its class and how much it counts.
pub(crate) struct Sample<'a> {
    pub(crate) x: &'a [f32],
    pub(crate) class: usize,
    pub(crate) weight: f32,
}

/// Training settings (chosen on the development probes, which the head
/// never trains on: less weight decay caught more at the same false alarms).
pub(crate) const SCALE: f32 = 20.0;
const STEPS: usize = 300;
const RATE: f32 = 0.1;
const L2: f32 = 1e-4;

impl Head {
    /// The class names, in order.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// Each class's probability for a unit vector.
    pub fn probabilities(&self, x: &[f32]) -> Vec<f32> {
        let mut z: Vec<f32> =
            (0..self.classes.len()).map(|c| self.biases[c] + self.scale * super::encoder::dot(&self.weights[c * self.dims..(c + 1) * self.dims], x)).collect();
        softmax(&mut z);
        z
    }

    /// Trains a head (full-batch Adam, deterministic): each class counts as
    /// much as any other in total, whatever its number of rows. The batch's
    /// products are matrix products (`ndarray`), so thousands of rows train
    /// in seconds.
    pub(crate) fn train(dims: usize, classes: Vec<String>, rows: &[Sample<'_>]) -> Self {
        let k = classes.len();
        let mut count = vec![0f32; k];
        for r in rows {
            count[r.class] += r.weight;
        }
        let total: f32 = count.iter().sum();
        let present = count.iter().filter(|c| **c > 0.0).count().max(1) as f32;
        let balance: Vec<f32> = count.iter().map(|c| if *c > 0.0 { total / (present * c) } else { 0.0 }).collect();
        let n = total.max(1.0);
        let x = Array2::from_shape_fn((rows.len(), dims), |(i, j)| rows[i].x.get(j).copied().unwrap_or(0.0));
        let row_weight: Vec<f32> = rows.iter().map(|r| r.weight * balance[r.class] / n).collect();
        let (mut w, mut b) = (Array2::<f32>::zeros((k, dims)), vec![0f32; k]);
        let (mut mw, mut vw, mut mb, mut vb) = (vec![0f32; k * dims], vec![0f32; k * dims], vec![0f32; k], vec![0f32; k]);
        for step in 1..=STEPS {
            // Probabilities of every row at once, then the gradient.
            let mut g = x.dot(&w.t()) * SCALE;
            for (i, mut z) in g.rows_mut().into_iter().enumerate() {
                z.iter_mut().zip(&b).for_each(|(v, bias)| *v += bias);
                let m = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                z.mapv_inplace(|v| (v - m).exp());
                let sum = z.sum();
                z.mapv_inplace(|v| v / sum);
                z[rows[i].class] -= 1.0;
                z.mapv_inplace(|v| v * row_weight[i]);
            }
            let gb: Vec<f32> = (0..k).map(|c| g.column(c).sum()).collect();
            let mut gw = g.t().dot(&x) * SCALE;
            gw.zip_mut_with(&w, |gv, wv| *gv += L2 * wv);
            let w_flat = w.as_slice_mut().expect("contiguous");
            adam(w_flat, gw.as_slice().expect("contiguous"), &mut mw, &mut vw, step);
            adam(&mut b, &gb, &mut mb, &mut vb, step);
        }
        Self { dims, classes, scale: SCALE, weights: w.into_raw_vec_and_offset().0, biases: b }
    }

    /// Reads a head file.
    pub fn parse(bytes: &[u8]) -> Result<Self, HeadError> {
        let mut at = 0usize;
        let mut take = |n: usize| -> Result<&[u8], HeadError> {
            let s = bytes.get(at..at + n).ok_or(HeadError::Malformed(at))?;
            at += n;
            Ok(s)
        };
        if take(5)? != MAGIC {
            return Err(HeadError::Malformed(0));
        }
        let u32_at = |s: &[u8]| u32::from_le_bytes(s.try_into().expect("4 bytes")) as usize;
        let dims = u32_at(take(4)?);
        let k = u32_at(take(4)?);
        if dims == 0 || dims > 4096 || k == 0 || k > 1024 {
            return Err(HeadError::Malformed(5));
        }
        let mut classes = Vec::with_capacity(k);
        for _ in 0..k {
            let len = take(1)?[0] as usize;
            classes.push(String::from_utf8_lossy(take(len)?).into_owned());
        }
        let f = |s: &[u8]| f32::from_le_bytes(s.try_into().expect("4 bytes"));
        let scale = f(take(4)?);
        let weights = take(4 * k * dims)?.chunks_exact(4).map(f).collect();
        let biases = take(4 * k)?.chunks_exact(4).map(f).collect();
        Ok(Self { dims, classes, scale, weights, biases })
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend((self.dims as u32).to_le_bytes());
        out.extend((self.classes.len() as u32).to_le_bytes());
        for c in &self.classes {
            let b = &c.as_bytes()[..c.len().min(255)];
            out.push(b.len() as u8);
            out.extend(b);
        }
        out.extend(self.scale.to_le_bytes());
        for x in self.weights.iter().chain(&self.biases) {
            out.extend(x.to_le_bytes());
        }
        out
    }
}

pub(crate) fn softmax(z: &mut [f32]) {
    let m = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut s = 0.0;
    for x in z.iter_mut() {
        *x = (*x - m).exp();
        s += *x;
    }
    z.iter_mut().for_each(|x| *x /= s);
}

fn adam(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], step: usize) {
    let (b1, b2) = (0.9f32, 0.999f32);
    let (c1, c2) = (1.0 - b1.powi(step as i32), 1.0 - b2.powi(step as i32));
    for i in 0..p.len() {
        m[i] = b1 * m[i] + (1.0 - b1) * g[i];
        v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
        p[i] -= RATE * (m[i] / c1) / ((v[i] / c2).sqrt() + 1e-8);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_learns_separable_classes_and_survives_a_round_trip() {
        let xs: Vec<Vec<f32>> = vec![vec![1.0, 0.0], vec![0.9, 0.1], vec![0.0, 1.0], vec![0.1, 0.9]];
        let rows: Vec<Sample<'_>> = xs.iter().enumerate().map(|(i, x)| Sample { x, class: i / 2, weight: 1.0 }).collect();
        let h = Head::train(2, vec!["a".into(), "b".into()], &rows);
        assert!(h.probabilities(&[1.0, 0.0])[0] > 0.9);
        assert!(h.probabilities(&[0.0, 1.0])[1] > 0.9);
        assert_eq!(Head::parse(&h.to_bytes()).unwrap(), h);
        assert!(matches!(Head::parse(&h.to_bytes()[..20]), Err(HeadError::Malformed(_))));
    }
}
