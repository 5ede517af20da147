//! all-MiniLM-L6-v2 itself: a 6-layer BERT read on the CPU, as
//! sentence-transformers runs it (mean of the last layer over every token,
//! then unit length). Only texts the cheap [`super::Encoder`] finds worth a
//! closer look come here: a short message takes milliseconds, not
//! microseconds.
//!
//! File format (little-endian, written by `tools/semantic/export.py`): magic
//! `HVNT1`, `u32` token count, each token as a `u8` length and its UTF-8
//! bytes, then `u32` hidden size, layers, heads, intermediate size and
//! positions, then the tensors in BERT's order, each as a `u8` kind, `u32`
//! rows and `u32` columns: kind 1 is a matrix of rows of an `f32` scale and
//! `columns` `i8` values (value = i8 × scale), kind 0 a vector of `f32`.

use haven_matmul::{Activations, Int8Linear};
use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2};

use super::encoder::{EncoderError, Reader};

const MAGIC: &[u8; 5] = b"HVNT1";

/// A matrix kept as it was shipped: `i8` rows with a scale each (the word
/// table, where a text reads a few rows of 30,000).
pub(crate) struct Quantised {
    pub(crate) cols: usize,
    pub(crate) scales: Vec<f32>,
    pub(crate) values: Vec<i8>,
}

impl Quantised {
    pub(crate) fn rows(&self) -> usize {
        self.scales.len()
    }

    pub(crate) fn row_into(&self, i: usize, out: &mut [f32]) {
        let s = self.scales[i];
        for (o, v) in out.iter_mut().zip(&self.values[i * self.cols..(i + 1) * self.cols]) {
            *o += s * f32::from(*v);
        }
    }
}

/// A dense layer: `out × in` weights and bias.
struct Linear {
    inputs: usize,
    outputs: usize,
    weights: Weights,
}

/// How a layer's weights are kept: as shipped, packed for the CPU's int8
/// instructions where it has them, or dequantised once, at load.
enum Weights {
    Int8(Int8Linear),
    F32 { weights: Vec<f32>, bias: Vec<f32> },
}

struct Norm {
    weight: Vec<f32>,
    bias: Vec<f32>,
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attention_out: Linear,
    attention_norm: Norm,
    intermediate: Linear,
    output: Linear,
    output_norm: Norm,
}

/// The transformer, ready to read.
pub struct Transformer {
    pub(crate) tokens: Vec<String>,
    pub(crate) words: Quantised,
    positions: Vec<f32>,
    token_type: Vec<f32>,
    embedding_norm: Norm,
    layers: Vec<Layer>,
    hidden: usize,
    heads: usize,
    max_tokens: usize,
    cls: u32,
    sep: u32,
}

enum Tensor {
    Vector(Vec<f32>),
    Matrix(Quantised),
}

fn tensor(r: &mut Reader<'_>) -> Result<(Tensor, usize, usize), EncoderError> {
    let kind = r.take(1)?[0];
    let (rows, cols) = (r.u32()? as usize, r.u32()? as usize);
    let need = if kind == 1 { rows * (4 + cols) } else { 4 * rows * cols };
    if rows == 0 || cols == 0 || rows > 100_000 || cols > 4096 || need > r.b.len() - r.at {
        return Err(EncoderError::Malformed(r.at));
    }
    match kind {
        0 => Ok((Tensor::Vector(r.take(4 * rows * cols)?.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes"))).collect()), rows, cols)),
        1 => {
            let mut scales = Vec::with_capacity(rows);
            let mut values = Vec::with_capacity(rows * cols);
            for _ in 0..rows {
                scales.push(f32::from_le_bytes(r.take(4)?.try_into().expect("4 bytes")));
                values.extend(r.take(cols)?.iter().map(|b| *b as i8));
            }
            Ok((Tensor::Matrix(Quantised { cols, scales, values }), rows, cols))
        }
        _ => Err(EncoderError::Malformed(r.at)),
    }
}

fn vector(r: &mut Reader<'_>, len: usize) -> Result<Vec<f32>, EncoderError> {
    match tensor(r)? {
        (Tensor::Vector(v), _, _) if v.len() == len => Ok(v),
        _ => Err(EncoderError::Malformed(r.at)),
    }
}

fn matrix(r: &mut Reader<'_>, rows: Option<usize>, cols: usize) -> Result<Quantised, EncoderError> {
    match tensor(r)? {
        (Tensor::Matrix(m), n, c) if c == cols && rows.is_none_or(|want| want == n) => Ok(m),
        _ => Err(EncoderError::Malformed(r.at)),
    }
}

fn linear(r: &mut Reader<'_>, outputs: usize, inputs: usize, int8: bool) -> Result<Linear, EncoderError> {
    let m = matrix(r, Some(outputs), inputs)?;
    let bias = vector(r, outputs)?;
    if int8 && let Some(packed) = Int8Linear::new(outputs, inputs, &m.values, &m.scales, &bias).map_err(|_| EncoderError::Malformed(r.at))? {
        return Ok(Linear { inputs, outputs, weights: Weights::Int8(packed) });
    }
    let mut weights = vec![0f32; outputs * inputs];
    for (i, row) in weights.chunks_exact_mut(inputs).enumerate() {
        m.row_into(i, row);
    }
    Ok(Linear { inputs, outputs, weights: Weights::F32 { weights, bias } })
}

fn norm(r: &mut Reader<'_>, len: usize) -> Result<Norm, EncoderError> {
    Ok(Norm { weight: vector(r, len)?, bias: vector(r, len)? })
}

impl Transformer {
    /// Reads a transformer file. Its layers run on the CPU's int8
    /// instructions where it has them (AVX-512 VNNI: about three times the
    /// `f32` speed; AVX2: about 1.8 times, measured on an AMD EPYC without
    /// AVX-512); sentence vectors within half a percent of
    /// [`Self::parse_f32`]'s.
    pub fn parse(bytes: &[u8]) -> Result<Self, EncoderError> {
        Self::parse_with(bytes, true)
    }

    /// Reads a transformer file to run in `f32` whatever the CPU: the
    /// reference the int8 path is measured against.
    pub fn parse_f32(bytes: &[u8]) -> Result<Self, EncoderError> {
        Self::parse_with(bytes, false)
    }

    /// Whether the layers run on int8 instructions.
    pub fn int8(&self) -> bool {
        self.layers.first().is_some_and(|l| matches!(l.query.weights, Weights::Int8(_)))
    }

    fn parse_with(bytes: &[u8], int8: bool) -> Result<Self, EncoderError> {
        let mut r = Reader { b: bytes, at: 0 };
        if r.take(5)? != MAGIC {
            return Err(EncoderError::Malformed(0));
        }
        let n = r.u32()? as usize;
        if n > 1_000_000 {
            return Err(EncoderError::Malformed(5));
        }
        let mut tokens = Vec::with_capacity(n);
        for _ in 0..n {
            let len = r.take(1)?[0] as usize;
            tokens.push(std::str::from_utf8(r.take(len)?).map_err(|_| EncoderError::Malformed(r.at))?.to_string());
        }
        let find = |t: &str| tokens.iter().position(|x| x == t).map(|i| i as u32);
        let (Some(cls), Some(sep)) = (find("[CLS]"), find("[SEP]")) else {
            return Err(EncoderError::Malformed(r.at));
        };
        let (hidden, layers, heads, inner, max_tokens) = (r.u32()? as usize, r.u32()? as usize, r.u32()? as usize, r.u32()? as usize, r.u32()? as usize);
        if hidden == 0 || hidden > 4096 || heads == 0 || !hidden.is_multiple_of(heads) || layers > 64 || inner > 16_384 || max_tokens < 3 {
            return Err(EncoderError::Malformed(r.at));
        }
        let words = matrix(&mut r, Some(n), hidden)?;
        let position_table = matrix(&mut r, Some(max_tokens), hidden)?;
        let mut positions = vec![0f32; max_tokens * hidden];
        for (i, row) in positions.chunks_exact_mut(hidden).enumerate() {
            position_table.row_into(i, row);
        }
        let token_type = vector(&mut r, hidden)?;
        let embedding_norm = norm(&mut r, hidden)?;
        let mut stack = Vec::with_capacity(layers);
        for _ in 0..layers {
            let query = linear(&mut r, hidden, hidden, int8)?;
            let key = linear(&mut r, hidden, hidden, int8)?;
            let value = linear(&mut r, hidden, hidden, int8)?;
            let attention_out = linear(&mut r, hidden, hidden, int8)?;
            let attention_norm = norm(&mut r, hidden)?;
            let intermediate = linear(&mut r, inner, hidden, int8)?;
            let output = linear(&mut r, hidden, inner, int8)?;
            let output_norm = norm(&mut r, hidden)?;
            stack.push(Layer { query, key, value, attention_out, attention_norm, intermediate, output, output_norm });
        }
        if r.at != bytes.len() {
            return Err(EncoderError::Malformed(r.at));
        }
        Ok(Self { tokens, words, positions, token_type, embedding_norm, layers: stack, hidden, heads, max_tokens, cls, sep })
    }

    /// The number of dimensions of a text's vector.
    pub fn dims(&self) -> usize {
        self.hidden
    }

    /// The vector of a text already cut into token ids (no `[CLS]`/`[SEP]`;
    /// cut to the positions the model has). All zero for no tokens.
    pub(crate) fn embed_ids(&self, ids: &[u32]) -> Vec<f32> {
        self.embed_batch(&[ids]).pop().expect("one vector for one text")
    }

    /// The vectors of several texts read in one pass: their tokens are the
    /// rows of one product per layer (each message attends only to its
    /// own), so the 10 MB of weights a pass reads are read once for them
    /// all rather than once a message. The same vectors as one at a time:
    /// every row is quantised, multiplied and normalised on its own.
    pub(crate) fn embed_batch(&self, texts: &[&[u32]]) -> Vec<Vec<f32>> {
        let h = self.hidden;
        // Each text's rows: `[CLS]`, its pieces cut to the positions the
        // model has, `[SEP]`; no rows for a text with no pieces.
        let mut rows: Vec<(u32, usize)> = Vec::new();
        let mut spans: Vec<std::ops::Range<usize>> = Vec::with_capacity(texts.len());
        for ids in texts {
            let start = rows.len();
            if !ids.is_empty() {
                let all = std::iter::once(self.cls).chain(ids.iter().copied().take(self.max_tokens - 2)).chain(std::iter::once(self.sep));
                rows.extend(all.enumerate().map(|(position, id)| (id, position)));
            }
            spans.push(start..rows.len());
        }
        let total = rows.len();
        if total == 0 {
            return vec![vec![0.0; h]; texts.len()];
        }
        let mut x = vec![0f32; total * h];
        for (row, &(id, position)) in x.chunks_exact_mut(h).zip(&rows) {
            self.words.row_into(id as usize, row);
            for ((o, p), y) in row.iter_mut().zip(&self.positions[position * h..(position + 1) * h]).zip(&self.token_type) {
                *o += p + y;
            }
        }
        layer_norm(&mut x, h, &self.embedding_norm);
        let longest = spans.iter().map(ExactSizeIterator::len).max().unwrap_or(0);
        let mut scratch = Scratch::new(total, longest, h, self.layers.first().map_or(0, |l| l.intermediate.outputs));
        for layer in &self.layers {
            self.layer(layer, &mut x, &mut scratch, &spans);
        }
        spans
            .iter()
            .map(|span| {
                let mut v = vec![0f32; h];
                for row in x[span.start * h..span.end * h].chunks_exact(h) {
                    for (o, y) in v.iter_mut().zip(row) {
                        *o += y;
                    }
                }
                super::encoder::unit(&mut v);
                v
            })
            .collect()
    }

    fn layer(&self, l: &Layer, x: &mut [f32], s: &mut Scratch, spans: &[std::ops::Range<usize>]) {
        let h = self.hidden;
        let d = h / self.heads;
        let n = x.len() / h;
        // The f32 path reads `x` itself; only the int8 one needs it quantised.
        let int8 = matches!(l.query.weights, Weights::Int8(_));
        if int8 {
            s.input.quantise(x, n, h);
        }
        l.query.apply(x, &s.input, n, &mut s.q);
        l.key.apply(x, &s.input, n, &mut s.k);
        l.value.apply(x, &s.input, n, &mut s.v);
        for span in spans.iter().filter(|span| !span.is_empty()) {
            attend(s, span.clone(), h, d, self.heads);
        }
        if int8 {
            s.input.quantise(&s.context, n, h);
        }
        l.attention_out.apply(&s.context, &s.input, n, &mut s.q);
        add(x, &s.q);
        layer_norm(x, h, &l.attention_norm);
        if int8 {
            s.input.quantise(x, n, h);
        }
        l.intermediate.apply(x, &s.input, n, &mut s.inner);
        haven_matmul::gelu(&mut s.inner[..n * l.intermediate.outputs]);
        if int8 {
            s.input.quantise(&s.inner, n, l.intermediate.outputs);
        }
        l.output.apply(&s.inner, &s.input, n, &mut s.q);
        add(x, &s.q);
        layer_norm(x, h, &l.output_norm);
    }
}

/// Scaled dot-product attention of one text's rows: a chat line's heads in
/// registers ([`haven_matmul::attend_short`]); otherwise each head as two
/// matrix products (its queries by its keys, the weights by its values): a
/// long page's hundreds of tokens cost n² per head, which loops of short
/// dot products made most of a pass.
fn attend(s: &mut Scratch, rows: std::ops::Range<usize>, h: usize, d: usize, heads: usize) {
    use ndarray::ShapeBuilder as _;
    let scale = 1.0 / (d as f32).sqrt();
    let n = rows.len();
    let span = (n - 1) * h + d;
    for head in 0..heads {
        let at = rows.start * h + head * d;
        if haven_matmul::attend_short(&s.q[at..], &s.k[at..], &s.v[at..], &mut s.context[at..], n, h, d) {
            continue;
        }
        let q = ArrayView2::from_shape((n, d).strides((h, 1)), &s.q[at..at + span]).expect("a head's columns of n rows");
        let k = ArrayView2::from_shape((n, d).strides((h, 1)), &s.k[at..at + span]).expect("a head's columns of n rows");
        let v = ArrayView2::from_shape((n, d).strides((h, 1)), &s.v[at..at + span]).expect("a head's columns of n rows");
        let mut scores = ArrayViewMut2::from_shape((n, n), &mut s.scores[..n * n]).expect("n × n scores");
        general_mat_mul(scale, &q, &k.t(), 0.0, &mut scores);
        haven_matmul::softmax_rows(&mut s.scores[..n * n], n);
        let weights = ArrayView2::from_shape((n, n), &s.scores[..n * n]).expect("n × n weights");
        let mut context = ArrayViewMut2::from_shape((n, d).strides((h, 1)), &mut s.context[at..at + span]).expect("a head's columns of n rows");
        general_mat_mul(1.0, &weights, &v, 0.0, &mut context);
    }
}

/// Buffers one text's pass reuses from layer to layer.
struct Scratch {
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    context: Vec<f32>,
    inner: Vec<f32>,
    scores: Vec<f32>,
    /// A layer's input quantised for the int8 path.
    input: Activations,
}

impl Scratch {
    /// For `n` rows in all, the longest text `longest` of them.
    fn new(n: usize, longest: usize, h: usize, inner: usize) -> Self {
        Self {
            q: vec![0.0; n * h],
            k: vec![0.0; n * h],
            v: vec![0.0; n * h],
            context: vec![0.0; n * h],
            inner: vec![0.0; n * inner],
            scores: vec![0.0; longest * longest],
            input: Activations::new(),
        }
    }
}

impl Linear {
    /// `out = x · Wᵀ + b` for `n` rows of `x` (`q`: the same rows
    /// quantised, read on the int8 path).
    fn apply(&self, x: &[f32], q: &Activations, n: usize, out: &mut [f32]) {
        let (k, m) = (self.inputs, self.outputs);
        let (weights, bias) = match &self.weights {
            Weights::Int8(packed) => return packed.product(q, &mut out[..n * m]),
            Weights::F32 { weights, bias } => (weights, bias),
        };
        assert!(x.len() >= n * k && out.len() >= n * m && weights.len() == m * k, "shapes checked at load");
        for row in out[..n * m].chunks_exact_mut(m) {
            row.copy_from_slice(bias);
        }
        // ndarray hands this to matrixmultiply, which picks AVX/FMA kernels
        // at run time: several times a plain loop's speed.
        let x = ArrayView2::from_shape((n, k), &x[..n * k]).expect("shape checked above");
        let w = ArrayView2::from_shape((m, k), &weights[..]).expect("shape checked at load");
        let mut y = ArrayViewMut2::from_shape((n, m), &mut out[..n * m]).expect("shape checked above");
        general_mat_mul(1.0, &x, &w.t(), 1.0, &mut y);
    }
}

fn layer_norm(x: &mut [f32], h: usize, norm: &Norm) {
    for row in x.chunks_exact_mut(h) {
        let mean = super::encoder::sum(row) / h as f32;
        let var = (super::encoder::dot(row, row) / h as f32 - mean * mean).max(0.0);
        let inv = 1.0 / (var + 1e-12).sqrt();
        for ((v, w), b) in row.iter_mut().zip(&norm.weight).zip(&norm.bias) {
            *v = (*v - mean) * inv * w + b;
        }
    }
}

fn add(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::semantic::{Encoder, MINILM, dot};

    #[test]
    fn the_shipped_model_reads_as_sentence_transformers_does() {
        let t = Transformer::parse(MINILM).expect("shipped model parses");
        let e = Encoder::from_transformer(&t);
        let v = |s: &str| t.embed_ids(&e.ids(s));
        // sentence-transformers publishes 0.7553 for this pair with the
        // published all-MiniLM-L6-v2 in float32 (0.7535 for its int8 export
        // in numpy); fine-tuning on the banks moved it, and numpy reads the
        // shipped file's own weights as 0.8036 (`tools/semantic/check.py`):
        // the same forward pass, written twice.
        let sim = dot(&v("A man is eating food."), &v("A man is eating a piece of bread."));
        assert!((sim - 0.8036).abs() < 0.002, "similarity {sim}");
        let far = dot(&v("A man is eating food."), &v("The new movie is awesome"));
        assert!(far < 0.2, "unrelated sentences are far apart: {far}");
        let unit: f32 = v("hello there").iter().map(|x| x * x).sum();
        assert!((unit - 1.0).abs() < 1e-4);
        assert!(v("").iter().all(|x| *x == 0.0), "nothing to read is the zero vector");
        let long = "word ".repeat(2000);
        assert_eq!(v(&long).len(), t.dims(), "a long text is cut to the model's positions, not refused");
    }

    #[test]
    fn the_int8_path_reads_as_the_f32_one() {
        let fast = Transformer::parse(MINILM).expect("shipped model parses");
        let exact = Transformer::parse_f32(MINILM).expect("shipped model parses");
        assert!(!exact.int8());
        let e = Encoder::from_transformer(&exact);
        for s in ["A man is eating food.", "i have the pills ready and im going to take them all tonight", "lol see u at the park after school", "x"] {
            let cos = dot(&fast.embed_ids(&e.ids(s)), &exact.embed_ids(&e.ids(s)));
            assert!(cos > 0.995, "{s:?}: cosine {cos} between the paths");
        }
    }

    #[test]
    fn a_batch_reads_as_its_texts_one_at_a_time() {
        let t = Transformer::parse(MINILM).expect("shipped model parses");
        let e = Encoder::from_transformer(&t);
        let long = "word ".repeat(700);
        let texts = [
            "i have the pills ready and im going to take them all tonight",
            "",
            "lol see u at the park after school",
            "x",
            long.as_str(),
            "cant do this anymore",
        ];
        let ids: Vec<Vec<u32>> = texts.iter().map(|s| e.ids(s)).collect();
        let refs: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
        let batch = t.embed_batch(&refs);
        assert_eq!(batch.len(), texts.len());
        for ((text, ids), together) in texts.iter().zip(&ids).zip(&batch) {
            let alone = t.embed_ids(ids);
            let most = alone.iter().zip(together).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(most < 1e-5, "{text:?}: differs by {most} read in a batch");
        }
        assert!(batch[1].iter().all(|x| *x == 0.0), "a text with no pieces is the zero vector in a batch too");
        assert!(t.embed_batch(&[]).is_empty());
    }

    #[test]
    fn a_damaged_file_is_refused_with_its_place() {
        for cut in [0, 4, 1000, MINILM.len() / 2, MINILM.len() - 1] {
            let err = Transformer::parse(&MINILM[..cut]).err().expect("a cut file is refused");
            assert!(err.to_string().contains("export.py"), "{err}");
        }
        let mut extra = MINILM.to_vec();
        extra.push(0);
        assert!(Transformer::parse(&extra).is_err(), "trailing bytes are refused");
    }
}
