//! Reading a text by the bank examples nearest to it, beside the head.
//!
//! The head draws one straight boundary per kind through the sentence
//! vectors; a disclosure worded unlike most of its kind's examples but very
//! like a few of them ("been missing school cos i have to be at the trap")
//! falls on the wrong side. Its nearest examples still know it. The
//! examples' vectors ship projected onto their 128 principal directions, in
//! int8 (`semantic/neighbours.bin`, about 1 MB: the full 384 dimensions
//! would take the model past the 25 MB it may hold in the repository), and
//! are written by `haven-bench train-semantic`.

use haven_matmul::{Activations, Int8Linear};

use super::bank::Bank;
use super::encoder::{EncoderError, Reader, int8_scale, int8_values, unit};

const MAGIC: &[u8; 5] = b"HVNB1";

/// How far under the shortlist's last row a row's quantised similarity may
/// fall and still be read exactly: twice the largest error the input's
/// rounding gives a unit vector's similarity.
const SHORTLIST_MARGIN: f32 = 0.02;

/// The bank examples' vectors, projected, each with its facet.
pub struct Neighbours {
    inputs: usize,
    dims: usize,
    mean: Vec<f32>,
    /// `inputs × dims`, row-major by input.
    projection: Vec<f32>,
    /// Facet ids, in the order rows name them.
    facet_ids: Vec<String>,
    /// Per row: its facet (an index into `facet_ids`), scale and values.
    facets: Vec<u16>,
    scales: Vec<f32>,
    values: Vec<i8>,
    /// The same rows packed for the CPU's int8 instructions, where it has
    /// them: every similarity in one product, not thousands of scalar sums.
    packed: Option<Int8Linear>,
}

impl Neighbours {
    /// Builds the projection (the top `dims` principal directions of the
    /// examples' vectors, by subspace iteration: deterministic, no linear
    /// algebra crate) and the projected examples.
    pub fn build(bank: &Bank, vectors: &[(usize, Vec<f32>)], dims: usize) -> Self {
        let inputs = vectors.first().map_or(0, |(_, v)| v.len());
        let n = vectors.len().max(1) as f64;
        let mut mean = vec![0f64; inputs];
        for (_, v) in vectors {
            for (m, x) in mean.iter_mut().zip(v) {
                *m += f64::from(*x) / n;
            }
        }
        let mut cov = vec![0f64; inputs * inputs];
        let mut centred = vec![0f64; inputs];
        for (_, v) in vectors {
            for ((c, x), m) in centred.iter_mut().zip(v).zip(&mean) {
                *c = f64::from(*x) - m;
            }
            for i in 0..inputs {
                let ci = centred[i];
                for (o, cj) in cov[i * inputs..(i + 1) * inputs].iter_mut().zip(&centred) {
                    *o += ci * cj;
                }
            }
        }
        let dims = dims.min(inputs);
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        // Columns of `q`, each `inputs` long.
        let mut q: Vec<Vec<f64>> = (0..dims)
            .map(|_| {
                (0..inputs)
                    .map(|_| {
                        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                        (seed >> 11) as f64 / (1u64 << 53) as f64 - 0.5
                    })
                    .collect()
            })
            .collect();
        orthonormalise(&mut q);
        for _ in 0..150 {
            q = q.iter().map(|col| (0..inputs).map(|i| cov[i * inputs..(i + 1) * inputs].iter().zip(col).map(|(a, b)| a * b).sum()).collect()).collect();
            orthonormalise(&mut q);
        }
        let mut projection = vec![0f32; inputs * dims];
        for (d, col) in q.iter().enumerate() {
            for (i, x) in col.iter().enumerate() {
                projection[i * dims + d] = *x as f32;
            }
        }
        let mut s = Self {
            inputs,
            dims,
            mean: mean.iter().map(|m| *m as f32).collect(),
            projection,
            facet_ids: bank.facets.iter().map(|f| f.id.clone()).collect(),
            facets: Vec::new(),
            scales: Vec::new(),
            values: Vec::new(),
            packed: None,
        };
        for (facet, v) in vectors {
            let y = s.project(v);
            let scale = int8_scale(&y);
            s.facets.push(*facet as u16);
            s.scales.push(scale);
            s.values.extend(int8_values(&y, scale));
        }
        s.pack();
        s
    }

    fn pack(&mut self) {
        let rows = self.scales.len();
        self.packed = if rows == 0 { None } else { Int8Linear::new(rows, self.dims, &self.values, &self.scales, &vec![0.0; rows]).ok().flatten() };
    }

    /// The rows that may be among the `k` nearest to the projected text
    /// `y`, in row order. With the int8 kernel, every similarity comes from
    /// one product with `y` quantised (off by under 0.01), and the rows
    /// within [`SHORTLIST_MARGIN`] of the best few are kept; the exact
    /// similarity ([`Self::similarity`]) then decides among them, so the
    /// answer is the one the exact sums over every row would give.
    fn shortlist(&self, y: &[f32], k: usize) -> Vec<usize> {
        let rows = self.scales.len();
        let Some(packed) = &self.packed else { return (0..rows).collect() };
        let mut a = Activations::new();
        a.quantise(y, 1, self.dims);
        let mut sims = vec![0f32; packed.outputs()];
        packed.product(&a, &mut sims);
        let keep = (4 * k + 16).min(rows);
        let mut sorted = sims.clone();
        let (_, cut, _) = sorted.select_nth_unstable_by(keep - 1, |a, b| b.total_cmp(a));
        let floor = *cut - SHORTLIST_MARGIN;
        (0..rows).filter(|r| sims[*r] >= floor).collect()
    }

    /// Row `r`'s similarity to `y`, summed in `f32` in order.
    fn similarity(&self, r: usize, y: &[f32]) -> f32 {
        self.scales[r] * self.values[r * self.dims..(r + 1) * self.dims].iter().zip(y).map(|(a, b)| f32::from(*a) * b).sum::<f32>()
    }

    /// `v` centred, projected and of unit length.
    fn project(&self, v: &[f32]) -> Vec<f32> {
        let mut y = vec![0f32; self.dims];
        for ((x, m), row) in v.iter().zip(&self.mean).zip(self.projection.chunks_exact(self.dims)) {
            let c = x - m;
            for (o, p) in y.iter_mut().zip(row) {
                *o += c * p;
            }
        }
        unit(&mut y);
        y
    }

    /// The `k` examples nearest to `v`: their facets (indices into `bank`'s
    /// facets; rows whose facet `bank` lacks are passed over) and cosines,
    /// nearest first.
    pub fn nearest(&self, bank: &Bank, v: &[f32], k: usize) -> Vec<(usize, f32)> {
        if v.len() != self.inputs || self.values.is_empty() {
            return Vec::new();
        }
        let y = self.project(v);
        let mut best: Vec<(usize, f32)> = Vec::with_capacity(k + 1);
        for r in self.shortlist(&y, k) {
            let (sim, facet) = (self.similarity(r, &y), &self.facets[r]);
            if best.len() == k && best.last().is_some_and(|(_, s)| *s >= sim) {
                continue;
            }
            let Some(index) = self.facet_ids.get(usize::from(*facet)).and_then(|id| bank.facets.iter().position(|f| &f.id == id)) else { continue };
            let at = best.partition_point(|(_, s)| *s >= sim);
            best.insert(at, (index, sim));
            best.truncate(k);
        }
        best
    }

    /// The file: magic, `u32` inputs and dims, the mean and projection
    /// (`f32`), `u32` facet count and each id (`u8` length, bytes), `u32`
    /// rows, then per row `u16` facet, `f32` scale and `dims` `i8` values.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend((self.inputs as u32).to_le_bytes());
        out.extend((self.dims as u32).to_le_bytes());
        self.mean.iter().chain(&self.projection).for_each(|x| out.extend(x.to_le_bytes()));
        out.extend((self.facet_ids.len() as u32).to_le_bytes());
        for id in &self.facet_ids {
            out.push(id.len().min(255) as u8);
            out.extend(&id.as_bytes()[..id.len().min(255)]);
        }
        out.extend((self.facets.len() as u32).to_le_bytes());
        for (i, (facet, scale)) in self.facets.iter().zip(&self.scales).enumerate() {
            out.extend(facet.to_le_bytes());
            out.extend(scale.to_le_bytes());
            out.extend(self.values[i * self.dims..(i + 1) * self.dims].iter().map(|v| *v as u8));
        }
        out
    }

    /// Reads the file [`Neighbours::to_bytes`] writes.
    pub fn parse(bytes: &[u8]) -> Result<Self, EncoderError> {
        let mut r = Reader { b: bytes, at: 0 };
        if r.take(5)? != MAGIC {
            return Err(EncoderError::Malformed(0));
        }
        let (inputs, dims) = (r.u32()? as usize, r.u32()? as usize);
        if inputs == 0 || inputs > 4096 || dims == 0 || dims > inputs {
            return Err(EncoderError::Malformed(r.at));
        }
        let floats = |r: &mut Reader<'_>, n: usize| -> Result<Vec<f32>, EncoderError> {
            Ok(r.take(n * 4)?.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect())
        };
        let mean = floats(&mut r, inputs)?;
        let projection = floats(&mut r, inputs * dims)?;
        let ids = r.u32()? as usize;
        let mut facet_ids = Vec::with_capacity(ids.min(4096));
        for _ in 0..ids {
            let len = r.take(1)?[0] as usize;
            facet_ids.push(std::str::from_utf8(r.take(len)?).map_err(|_| EncoderError::Malformed(r.at))?.to_string());
        }
        let rows = r.u32()? as usize;
        let (mut facets, mut scales, mut values) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rows {
            let facet = u16::from_le_bytes(r.take(2)?.try_into().expect("2 bytes"));
            if usize::from(facet) >= facet_ids.len() {
                return Err(EncoderError::Malformed(r.at));
            }
            facets.push(facet);
            scales.push(f32::from_le_bytes(r.take(4)?.try_into().expect("4 bytes")));
            values.extend(r.take(dims)?.iter().map(|b| *b as i8));
        }
        if r.at != bytes.len() {
            return Err(EncoderError::Malformed(r.at));
        }
        let mut s = Self { inputs, dims, mean, projection, facet_ids, facets, scales, values, packed: None };
        s.pack();
        Ok(s)
    }
}

/// Modified Gram–Schmidt over the columns.
fn orthonormalise(q: &mut [Vec<f64>]) {
    for i in 0..q.len() {
        let (done, rest) = q.split_at_mut(i);
        let col = &mut rest[0];
        for prev in done.iter() {
            let d: f64 = prev.iter().zip(col.iter()).map(|(a, b)| a * b).sum();
            col.iter_mut().zip(prev).for_each(|(c, p)| *c -= d * p);
        }
        let n = col.iter().map(|x| x * x).sum::<f64>().sqrt();
        if n > 0.0 {
            col.iter_mut().for_each(|x| *x /= n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::semantic::Semantic;

    #[test]
    fn the_shipped_file_names_the_banks_facets() {
        let bank = Bank::shipped();
        let n = Neighbours::parse(super::super::NEIGHBOURS).expect("shipped neighbours parse");
        assert_eq!(n.dims, 128);
        assert_eq!(n.facets.len(), bank.facets.iter().map(|f| f.examples.len()).sum::<usize>(), "one row per bank example");
        assert!(n.facet_ids.iter().all(|id| bank.facets.iter().any(|f| &f.id == id)), "every facet it names is in the bank");
        let again = Neighbours::parse(&n.to_bytes()).expect("its own bytes parse");
        assert_eq!(again.values, n.values);
    }

    #[test]
    fn a_damaged_file_is_refused_with_its_place() {
        let bytes = Neighbours::parse(super::super::NEIGHBOURS).expect("parses").to_bytes();
        assert!(matches!(Neighbours::parse(&bytes[..bytes.len() - 1]), Err(EncoderError::Malformed(_))), "cut short");
        assert!(matches!(Neighbours::parse(b"HVNT1xxxx"), Err(EncoderError::Malformed(0))), "another file");
    }

    #[test]
    fn bank_examples_read_as_their_own_kind_and_look_alikes_as_none() {
        // A bank example's nearest neighbour is itself: a look-alike is
        // never proposed as a concern, and a concern is proposed as its kind
        // (when its neighbours agree).
        let s = Semantic::shipped_shared();
        let bank = Bank::shipped();
        let (mut concerns, mut agreed) = (0, 0);
        for f in &bank.facets {
            for e in f.examples.iter().filter(|e| e.split_whitespace().count() >= 6).take(2) {
                let near = s.by_neighbours(&s.embed(e));
                match f.concern {
                    None => assert!(near.is_none(), "look-alike {e:?} read as {:?}", near.map(|c| c.kind)),
                    Some(_) => {
                        concerns += 1;
                        if let Some(c) = near {
                            assert_eq!(c.kind, f.kind, "{e:?}");
                            agreed += 1;
                        }
                    }
                }
            }
        }
        assert!(agreed * 2 >= concerns, "{agreed} of {concerns} concern examples proposed as their own kind");
    }
}
