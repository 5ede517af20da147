//! The static sentence embedding: one vector per WordPiece token, distilled
//! from all-MiniLM-L6-v2 (`tools/semantic/distill.py`); a text's vector is
//! the mean of its tokens' vectors, scaled to unit length.
//!
//! File format (little-endian): magic `HVNE1`, `u32` token count, `u32`
//! dimensions, each token as a `u8` length and its UTF-8 bytes, then per
//! token an `f32` scale and `dimensions` `i8` values (value = i8 × scale).

use super::wordpiece::WordPiece;

const MAGIC: &[u8; 5] = b"HVNE1";

/// Why an embedding file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum EncoderError {
    /// Not an embedding file, or cut short.
    #[error("not a Haven static embedding (HVNE1) or cut short at byte {0}: rebuild it with tools/semantic/distill.py")]
    Malformed(usize),
}

/// The distilled embedding.
pub struct Encoder {
    pieces: WordPiece,
    dims: usize,
    scales: Vec<f32>,
    values: Vec<i8>,
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], EncoderError> {
        let s = self.b.get(self.at..self.at + n).ok_or(EncoderError::Malformed(self.at))?;
        self.at += n;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32, EncoderError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
}

impl Encoder {
    /// Reads an embedding file.
    pub fn parse(bytes: &[u8]) -> Result<Self, EncoderError> {
        let mut r = Reader { b: bytes, at: 0 };
        if r.take(5)? != MAGIC {
            return Err(EncoderError::Malformed(0));
        }
        let (n, dims) = (r.u32()? as usize, r.u32()? as usize);
        if n > 1_000_000 || dims == 0 || dims > 4096 {
            return Err(EncoderError::Malformed(5));
        }
        let mut tokens = Vec::with_capacity(n);
        for _ in 0..n {
            let len = r.take(1)?[0] as usize;
            let t = std::str::from_utf8(r.take(len)?).map_err(|_| EncoderError::Malformed(r.at))?;
            tokens.push(t.to_string());
        }
        let mut scales = Vec::with_capacity(n);
        let mut values = Vec::with_capacity(n * dims);
        for _ in 0..n {
            scales.push(f32::from_le_bytes(r.take(4)?.try_into().expect("4 bytes")));
            values.extend(r.take(dims)?.iter().map(|b| *b as i8));
        }
        Ok(Self { pieces: WordPiece::new(&tokens), dims, scales, values })
    }

    /// The number of dimensions of a text's vector.
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// A text's vector, unit length (all zero when no token is known).
    pub fn embed(&self, text: &str) -> Vec<f32> {
        let mut ids = Vec::with_capacity(32);
        self.pieces.ids(text, &mut ids);
        let mut v = vec![0f32; self.dims];
        for &id in &ids {
            let (s, row) = (self.scales[id as usize], &self.values[id as usize * self.dims..(id as usize + 1) * self.dims]);
            for (o, x) in v.iter_mut().zip(row) {
                *o += s * f32::from(*x);
            }
        }
        unit(&mut v);
        v
    }
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
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
