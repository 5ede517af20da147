//! The cheap sentence vector: the mean of a text's word vectors, taken from
//! the transformer's own input table (centred, and weighted so common
//! tokens count for less: smooth inverse frequency, a = 1e-3, with a Zipf
//! estimate of each token's frequency from its rank, as model2vec does).
//! It reads every text in microseconds: it decides which texts the
//! transformer reads, and it compares a text with a DSL's own examples.

use super::transformer::Transformer;
use super::wordpiece::WordPiece;

/// Why a model file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum EncoderError {
    /// Not a transformer file, or cut short.
    #[error("not a Haven transformer file (HVNT1) or cut short at byte {0}: rebuild it with tools/semantic/export.py")]
    Malformed(usize),
}

/// The cheap embedding.
pub struct Encoder {
    pieces: WordPiece,
    dims: usize,
    scales: Vec<f32>,
    values: Vec<i8>,
}

pub(crate) struct Reader<'a> {
    pub(crate) b: &'a [u8],
    pub(crate) at: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], EncoderError> {
        let s = self.b.get(self.at..self.at + n).ok_or(EncoderError::Malformed(self.at))?;
        self.at += n;
        Ok(s)
    }
    pub(crate) fn u32(&mut self) -> Result<u32, EncoderError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
}

impl Encoder {
    /// The embedding of a transformer's input table.
    pub fn from_transformer(t: &Transformer) -> Self {
        let (n, dims) = (t.words.rows(), t.words.cols);
        let mut mean = vec![0f64; dims];
        let mut row = vec![0f32; dims];
        for i in 0..n {
            row.iter_mut().for_each(|v| *v = 0.0);
            t.words.row_into(i, &mut row);
            for (m, v) in mean.iter_mut().zip(&row) {
                *m += f64::from(*v) / n as f64;
            }
        }
        let zipf = (1.78 * n as f64).ln();
        let mut scales = Vec::with_capacity(n);
        let mut values = Vec::with_capacity(n * dims);
        for i in 0..n {
            row.iter_mut().for_each(|v| *v = 0.0);
            t.words.row_into(i, &mut row);
            let p = 1.0 / ((i + 1) as f64 * zipf);
            let weight = (1e-3 / (1e-3 + p)) as f32;
            for (v, m) in row.iter_mut().zip(&mean) {
                *v = (*v - *m as f32) * weight;
            }
            let scale = int8_scale(&row);
            scales.push(scale);
            values.extend(int8_values(&row, scale));
        }
        Self { pieces: WordPiece::new(&t.tokens), dims, scales, values }
    }

    /// The number of dimensions of a text's vector.
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// A text's token ids (no `[CLS]`/`[SEP]`).
    pub(crate) fn ids(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::with_capacity(32);
        self.pieces.ids(text, &mut ids);
        ids
    }

    /// A text's vector, unit length (all zero when no token is known).
    pub fn embed(&self, text: &str) -> Vec<f32> {
        self.embed_ids(&self.ids(text))
    }

    pub(crate) fn embed_ids(&self, ids: &[u32]) -> Vec<f32> {
        let mut v = vec![0f32; self.dims];
        for &id in ids {
            let (s, row) = (self.scales[id as usize], &self.values[id as usize * self.dims..(id as usize + 1) * self.dims]);
            for (o, x) in v.iter_mut().zip(row) {
                *o += s * f32::from(*x);
            }
        }
        unit(&mut v);
        v
    }
}

/// The step that puts a row's largest value at ±127 (1 for a zero row).
pub(crate) fn int8_scale(row: &[f32]) -> f32 {
    let scale = row.iter().fold(0f32, |a, v| a.max(v.abs())) / 127.0;
    if scale > 0.0 { scale } else { 1.0 }
}

/// A row in int8 steps of `scale`.
pub(crate) fn int8_values(row: &[f32], scale: f32) -> impl Iterator<Item = i8> + '_ {
    row.iter().map(move |v| (v / scale).round().clamp(-127.0, 127.0) as i8)
}

/// Scales `v` to unit length (left as is when zero).
pub(crate) fn unit(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

/// The dot product (cosine, for unit vectors).
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight running sums: float additions are kept in the order written,
    // so one sum is a chain of dependent adds no vector unit can share
    // (the transformer's attention is thousands of these per text).
    let n = a.len().min(b.len());
    let (a, b) = (a[..n].chunks_exact(LANES), b[..n].chunks_exact(LANES));
    let tail: f32 = a.remainder().iter().zip(b.remainder()).map(|(x, y)| x * y).sum();
    let mut lanes = [0f32; LANES];
    for (x, y) in a.zip(b) {
        for i in 0..LANES {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// The sum of `a`, in eight running sums as [`dot`].
pub(crate) fn sum(a: &[f32]) -> f32 {
    let chunks = a.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().sum();
    let mut lanes = [0f32; LANES];
    for x in chunks {
        for i in 0..LANES {
            lanes[i] += x[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

const LANES: usize = 8;
