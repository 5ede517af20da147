//! The model file: a magic line, then deflate of the classes, thresholds,
//! vocabulary and 8-bit weights. Little-endian throughout.

use std::io::{Read, Write};

use haven_policy::Category;

use crate::HostModel;

const MAGIC: &[u8; 8] = b"HAVENHM1";

/// A model file that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Not a Haven hostname model, or a newer format.
    #[error("not a Haven hostname model (expected it to start with {expected:?}); rebuild it with `haven-bench train-hosts`")]
    Magic {
        /// The magic expected.
        expected: &'static str,
    },
    /// Cut short or damaged.
    #[error("the hostname model is damaged ({0}); rebuild it with `haven-bench train-hosts`")]
    Damaged(String),
    /// Names a category this build does not know.
    #[error("the hostname model names category {0:?}, which this version of Haven does not know; rebuild the model")]
    UnknownCategory(String),
}

impl HostModel {
    /// Reads a model written by [`HostModel::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ModelError> {
        let rest = bytes.strip_prefix(MAGIC.as_slice()).ok_or(ModelError::Magic { expected: "HAVENHM1" })?;
        let mut raw = Vec::new();
        flate2::read::DeflateDecoder::new(rest).read_to_end(&mut raw).map_err(|e| ModelError::Damaged(e.to_string()))?;
        let mut r = Reader { bytes: &raw };
        let classes_n = r.u32()? as usize;
        if classes_n > crate::MAX_CLASSES {
            return Err(ModelError::Damaged(format!("{classes_n} classes, more than {}", crate::MAX_CLASSES)));
        }
        let mut classes = Vec::with_capacity(classes_n);
        for _ in 0..classes_n {
            let id = r.string()?;
            classes.push(if id == "benign" { None } else { Some(Category::from_id(&id).ok_or(ModelError::UnknownCategory(id))?) });
        }
        let bits = r.u32()?;
        if !(8..=24).contains(&bits) {
            return Err(ModelError::Damaged(format!("{bits} hash bits")));
        }
        let scale = r.f32()?;
        let bias = (0..classes_n).map(|_| r.f32()).collect::<Result<Vec<_>, _>>()?;
        let thresholds_n = r.u32()? as usize;
        let mut thresholds = Vec::with_capacity(thresholds_n);
        for _ in 0..thresholds_n {
            let id = r.string()?;
            let c = Category::from_id(&id).ok_or(ModelError::UnknownCategory(id))?;
            thresholds.push((c, r.f32()?));
        }
        let words_n = r.u32()? as usize;
        let vocabulary: Vec<String> = (0..words_n).map(|_| r.string()).collect::<Result<_, _>>()?;
        let len = (1usize << bits) * classes_n;
        let packed: Vec<i8> = r.take(len)?.iter().map(|b| *b as i8).collect();
        let weights = HostModel::padded(&packed, classes_n);
        if !r.bytes.is_empty() {
            return Err(ModelError::Damaged(format!("{} bytes after the weights", r.bytes.len())));
        }
        let words = crate::word_finder(&vocabulary);
        Ok(Self { classes, bits, scale, bias, weights, thresholds, vocabulary, words })
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut raw = Vec::new();
        put_u32(&mut raw, self.classes.len() as u32);
        for c in &self.classes {
            put_str(&mut raw, c.map_or("benign", |c| c.id()));
        }
        put_u32(&mut raw, self.bits);
        raw.extend_from_slice(&self.scale.to_le_bytes());
        for b in &self.bias {
            raw.extend_from_slice(&b.to_le_bytes());
        }
        put_u32(&mut raw, self.thresholds.len() as u32);
        for (c, t) in &self.thresholds {
            put_str(&mut raw, c.id());
            raw.extend_from_slice(&t.to_le_bytes());
        }
        put_u32(&mut raw, self.vocabulary.len() as u32);
        for w in &self.vocabulary {
            put_str(&mut raw, w);
        }
        let k = self.classes.len();
        raw.extend(self.weights.chunks_exact(crate::MAX_CLASSES).flat_map(|row| row[..k].iter().copied()));
        let mut out = MAGIC.to_vec();
        let mut z = flate2::write::DeflateEncoder::new(&mut out, flate2::Compression::best());
        // Writing to a Vec cannot fail.
        let _ = z.write_all(&raw);
        let _ = z.finish();
        out
    }
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.push(s.len().min(255) as u8);
    out.extend_from_slice(&s.as_bytes()[..s.len().min(255)]);
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ModelError> {
        if self.bytes.len() < n {
            return Err(ModelError::Damaged("cut short".into()));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }
    fn u32(&mut self) -> Result<u32, ModelError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap_or_default()))
    }
    fn f32(&mut self) -> Result<f32, ModelError> {
        Ok(f32::from_le_bytes(self.take(4)?.try_into().unwrap_or_default()))
    }
    fn string(&mut self) -> Result<String, ModelError> {
        let n = usize::from(self.take(1)?[0]);
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| ModelError::Damaged("a name is not UTF-8".into()))
    }
}
