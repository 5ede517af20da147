//! Int8 matrix products for the semantic stage's transformer.
//!
//! The transformer's weights ship as int8 rows with a scale each; read as
//! `f32` they cost four multiply-adds per byte of work that AVX-512 VNNI's
//! `vpdpbusd` does sixteen of per instruction (64 unsigned-by-signed byte
//! products into 16 sums). [`Int8Linear`] keeps the weights as shipped,
//! packed for that instruction, and [`Activations`] quantises the layer's
//! input per row (asymmetric, to `u8`: a row's range in 255 steps). Integer
//! sums are exact, so the only error added to the `f32` path is that
//! rounding of the input, which moves a sentence vector by under half a
//! percent (tested in `haven-textscan`).
//!
//! Where the CPU has Advanced Matrix Extensions (Intel Xeon from Sapphire
//! Rapids on), AMX-INT8's `tdpbusd` does the same unsigned-by-signed byte
//! products a whole 16×16 tile at a time (16,384 an instruction): the
//! weights are already laid out as its second operand wants them, so the
//! same packing serves both kernels. Linux lends a process the tile
//! registers only when it asks (`arch_prctl`), which [`kernel`] does once.
//!
//! The kernel is chosen at run time ([`kernel`]). Without VNNI (AMD before
//! Zen 4, most small Intel boxes) AVX2's `vpmaddwd` multiplies the same
//! bytes widened to 16 bits, 16 products an instruction, exactly (its
//! byte-wide `vpmaddubsw` would be no faster on the one multiply port such
//! CPUs have, and its 16-bit pair sums overflow for int8 weights at full
//! range). Either way the weights stay
//! int8: a text reads 22 MB of them rather than the `f32` path's 88 MB,
//! and nothing is repacked per call. A CPU with neither (ARM) gets `None`
//! from [`Int8Linear::new`] and the caller keeps its `f32` path.
//! [`Int8Linear::product_portable`] computes the same integers in plain
//! Rust, as the reference both kernels are tested against.
//!
//! This is the workspace's one crate that may use `unsafe`: intrinsics
//! behind a CPU check, and loads whose bounds the packing fixes.

use thiserror::Error;

/// Outputs per block: one 512-bit register of `i32` sums.
const LANES: usize = 16;
/// Rows of activations a tile reads at once (they share each weight load).
const ROWS: usize = 4;
/// Inputs per step of the AMX kernel: a tile row of 64 bytes. Layers are
/// packed, and activations laid out, in whole steps (zero past the edges),
/// so every kernel reads the same bytes.
const STEP: usize = 64;
/// Rows of an AMX tile: activations are padded to whole tiles for it.
const TILE_ROWS: usize = 16;

/// Why a layer could not be packed.
#[derive(Debug, Error, PartialEq)]
pub enum ShapeError {
    /// Weights, scales or bias do not have the layer's shape.
    #[error("an int8 layer of {outputs}×{inputs} needs {outputs}×{inputs} weights, {outputs} scales and {outputs} biases; found {values}, {scales} and {bias}")]
    Mismatch {
        /// Outputs of the layer.
        outputs: usize,
        /// Inputs of the layer.
        inputs: usize,
        /// Weights given.
        values: usize,
        /// Scales given.
        scales: usize,
        /// Biases given.
        bias: usize,
    },
}

/// Which integer kernel this CPU runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// AMX-INT8 with AVX-512 beside it: `tdpbusd`, a 16×16 tile of sums
    /// from 16 rows of 64 bytes an instruction.
    Amx,
    /// AVX-512 F, BW and VNNI: `vpdpbusd`, 64 byte products an instruction.
    Vnni,
    /// AVX2 and FMA: `vpmaddwd` on the same bytes widened to 16 bits.
    Avx2,
    /// Neither: the caller keeps its `f32` path.
    None,
}

/// The kernel this CPU runs, detected once. `HAVEN_INT8_KERNEL=vnni` (or
/// `avx2`) keeps a CPU with AMX on the older kernel: for measuring one
/// beside the other, or as a way round a hypervisor that advertises AMX
/// and then faults on it.
pub fn kernel() -> Kernel {
    static KERNEL: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
    *KERNEL.get_or_init(|| {
        let wanted = std::env::var("HAVEN_INT8_KERNEL").unwrap_or_default();
        detect(&wanted)
    })
}

fn detect(wanted: &str) -> Kernel {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        let avx512 = has!("avx512f") && has!("avx512bw") && has!("avx512vnni");
        if avx512 && wanted.is_empty() && amx::available() {
            return Kernel::Amx;
        }
        if avx512 && wanted != "avx2" {
            return Kernel::Vnni;
        }
        if has!("avx2") && has!("fma") {
            return Kernel::Avx2;
        }
    }
    let _ = wanted;
    Kernel::None
}

/// Whether this CPU has an integer kernel ([`kernel`] is not `None`).
pub fn accelerated() -> bool {
    kernel() != Kernel::None
}

/// A dense layer `y = x · Wᵀ + b` with `W` in int8 rows, each with a scale.
#[derive(Debug, Clone)]
pub struct Int8Linear {
    outputs: usize,
    inputs: usize,
    /// Groups of four inputs (the instruction multiplies four per lane).
    groups: usize,
    /// Blocks of 16 outputs; in each, for each group, 16 lanes of 4 bytes:
    /// `W[block·16 + lane][group·4 + byte]` (zero past the edges).
    packed: Vec<i8>,
    /// Per output, padded to whole blocks: the weight row's scale, its sum
    /// (to take the activations' zero point back out) and the bias.
    scales: Vec<f32>,
    sums: Vec<i32>,
    bias: Vec<f32>,
}

impl Int8Linear {
    /// Packs a layer for the kernel: `values` row-major (`outputs` rows of
    /// `inputs`), `W[o][i] = values[o·inputs + i] × scales[o]`. `Ok(None)`
    /// when this CPU has no kernel ([`accelerated`]).
    pub fn new(outputs: usize, inputs: usize, values: &[i8], scales: &[f32], bias: &[f32]) -> Result<Option<Self>, ShapeError> {
        if !accelerated() {
            Self::check(outputs, inputs, values, scales, bias)?;
            return Ok(None);
        }
        Self::packed(outputs, inputs, values, scales, bias).map(Some)
    }

    fn check(outputs: usize, inputs: usize, values: &[i8], scales: &[f32], bias: &[f32]) -> Result<(), ShapeError> {
        if outputs == 0 || inputs == 0 || values.len() != outputs * inputs || scales.len() != outputs || bias.len() != outputs {
            return Err(ShapeError::Mismatch { outputs, inputs, values: values.len(), scales: scales.len(), bias: bias.len() });
        }
        Ok(())
    }

    /// Packs whatever the CPU (the portable product reads the same layout).
    pub fn packed(outputs: usize, inputs: usize, values: &[i8], scales: &[f32], bias: &[f32]) -> Result<Self, ShapeError> {
        Self::check(outputs, inputs, values, scales, bias)?;
        let groups = stride(inputs) / 4;
        let blocks = outputs.div_ceil(LANES);
        let mut packed = vec![0i8; blocks * groups * 64];
        for o in 0..outputs {
            let (block, lane) = (o / LANES, o % LANES);
            for (i, &v) in values[o * inputs..(o + 1) * inputs].iter().enumerate() {
                packed[(block * groups + i / 4) * 64 + lane * 4 + i % 4] = v;
            }
        }
        let padded = blocks * LANES;
        let pad = |v: &[f32]| {
            let mut p = v.to_vec();
            p.resize(padded, 0.0);
            p
        };
        let mut sums: Vec<i32> = values.chunks_exact(inputs).map(|row| row.iter().map(|&v| i32::from(v)).sum()).collect();
        sums.resize(padded, 0);
        Ok(Self { outputs, inputs, groups, packed, scales: pad(scales), sums, bias: pad(bias) })
    }

    /// Outputs of the layer.
    pub fn outputs(&self) -> usize {
        self.outputs
    }

    /// Inputs of the layer.
    pub fn inputs(&self) -> usize {
        self.inputs
    }

    /// `out[r·outputs + o] = (x_r · W_o) + b_o` for every row of `a`.
    ///
    /// # Panics
    /// When `a` was quantised for another number of inputs or `out` is
    /// shorter than `a`'s rows of outputs: the caller's shapes are fixed
    /// when the model is read.
    pub fn product(&self, a: &Activations, out: &mut [f32]) {
        self.check_call(a, out);
        #[cfg(target_arch = "x86_64")]
        match a.kernel {
            // SAFETY: `a` was quantised for this CPU's kernel, so the CPU
            // has every feature the kernel is compiled for (and, for AMX,
            // the process holds the tiles), and `check_call` fixed the
            // shapes its pointer arithmetic relies on.
            Kernel::Amx => return unsafe { amx::product(self, a, out) },
            Kernel::Vnni => return unsafe { vnni::product(self, a, out) },
            Kernel::Avx2 => return unsafe { avx2::product(self, a, out) },
            Kernel::None => {}
        }
        self.product_portable(a, out);
    }

    /// The same integers in plain Rust: the kernel's reference, and the
    /// path for a CPU without it.
    pub fn product_portable(&self, a: &Activations, out: &mut [f32]) {
        self.check_call(a, out);
        for r in 0..a.rows {
            let row = &a.values[r * a.stride..(r + 1) * a.stride];
            for o in 0..self.outputs {
                let (block, lane) = (o / LANES, o % LANES);
                let mut acc = 0i32;
                for g in 0..self.groups {
                    let w = &self.packed[(block * self.groups + g) * 64 + lane * 4..][..4];
                    for t in 0..4 {
                        acc += i32::from(row[g * 4 + t]) * i32::from(w[t]);
                    }
                }
                out[r * self.outputs + o] = finish(acc, a.zeros[r], self.sums[o], a.scales[r] * self.scales[o], self.bias[o]);
            }
        }
    }

    fn check_call(&self, a: &Activations, out: &mut [f32]) {
        assert!(a.inputs == self.inputs && a.stride == self.groups * 4, "activations quantised for {} inputs, the layer has {}", a.inputs, self.inputs);
        assert!(out.len() >= a.rows * self.outputs, "output of {} values for {} rows of {}", out.len(), a.rows, self.outputs);
    }
}

/// One output from its integer sum: the zero point taken back out, both
/// scales applied, the bias added.
fn finish(acc: i32, zero: i32, sum: i32, scale: f32, bias: f32) -> f32 {
    (acc - zero * sum) as f32 * scale + bias
}

/// A layer's input quantised per row: `x ≈ (q − zero) × scale`, `q` in
/// `0..=255`, each row's range (with 0 in it) in 255 steps.
#[derive(Debug, Clone)]
pub struct Activations {
    /// The kernel the bytes are for.
    kernel: Kernel,
    rows: usize,
    inputs: usize,
    /// Bytes per row: inputs rounded up to whole steps of 64.
    stride: usize,
    /// Rows rounded up to whole tiles (of 16 for AMX), zero past the edges.
    values: Vec<u8>,
    /// The same widened to 16 bits, for the AVX2 kernel.
    wide: Vec<i16>,
    scales: Vec<f32>,
    zeros: Vec<i32>,
}

impl Default for Activations {
    fn default() -> Self {
        Self::new()
    }
}

impl Activations {
    /// Empty, for this CPU's kernel; [`Activations::quantise`] fills it
    /// (and reuses its buffers).
    pub fn new() -> Self {
        Self::for_kernel(kernel())
    }

    /// Empty, for `kernel` (tests: the portable reads of each kernel's bytes).
    fn for_kernel(kernel: Kernel) -> Self {
        Self { kernel, rows: 0, inputs: 0, stride: 0, values: Vec::new(), wide: Vec::new(), scales: Vec::new(), zeros: Vec::new() }
    }

    /// Quantises `rows` rows of `inputs` values from `x`.
    ///
    /// # Panics
    /// When `x` holds fewer than `rows × inputs` values.
    pub fn quantise(&mut self, x: &[f32], rows: usize, inputs: usize) {
        assert!(x.len() >= rows * inputs, "{} values for {rows} rows of {inputs}", x.len());
        self.rows = rows;
        self.inputs = inputs;
        self.stride = stride(inputs);
        let tile = if self.kernel == Kernel::Amx { TILE_ROWS } else { ROWS };
        self.values.clear();
        self.values.resize(rows.div_ceil(tile) * tile * self.stride, 0);
        self.scales.clear();
        self.zeros.clear();
        #[cfg(target_arch = "x86_64")]
        match self.kernel {
            // SAFETY: the CPU has the features `vnni::quantise` is compiled
            // for (the kernel was detected on it; AMX's CPUs have AVX-512),
            // and the buffers are sized above.
            Kernel::Vnni | Kernel::Amx => return unsafe { vnni::quantise(self, x, rows, inputs) },
            // SAFETY: the CPU has AVX2 and FMA (detected).
            Kernel::Avx2 => return unsafe { avx2::quantise(self, x, rows, inputs) },
            Kernel::None => {}
        }
        quantise_rows(self, x, rows, inputs);
    }

    /// Rows quantised.
    pub fn rows(&self) -> usize {
        self.rows
    }
}

/// Bytes a row of `inputs` activations takes: whole steps of 64.
fn stride(inputs: usize) -> usize {
    inputs.div_ceil(STEP) * STEP
}

/// Each row's range (with 0 in it) in 255 steps; rounding adds a half
/// before the cut, as the VNNI kernel's version does, so both give the same
/// bytes.
fn quantise_rows(a: &mut Activations, x: &[f32], rows: usize, inputs: usize) {
    for (r, row) in x[..rows * inputs].chunks_exact(inputs).enumerate() {
        let (lo, hi) = row.iter().fold((0f32, 0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        let (scale, zero) = range(lo, hi);
        let (inverse, shift) = (1.0 / scale, zero as f32 + 0.5);
        for (q, &v) in a.values[r * a.stride..r * a.stride + inputs].iter_mut().zip(row) {
            *q = (v * inverse + shift).clamp(0.0, 255.0) as u8;
        }
        a.scales.push(scale);
        a.zeros.push(zero);
    }
}

/// A row's step and zero point from its least and greatest values.
fn range(lo: f32, hi: f32) -> (f32, i32) {
    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
    let scale = if hi > lo { (hi - lo) / 255.0 } else { 1.0 };
    (scale, (-lo / scale + 0.5).floor().clamp(0.0, 255.0) as i32)
}

/// BERT's GELU over a layer's values, in place: `x·Φ(x)` with erf from
/// Abramowitz and Stegun 7.1.26 (error under 1.5e-7). 512 bits at a time
/// where the CPU has them: a layer has 1,536 of these per token.
pub fn gelu(values: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    match kernel() {
        // SAFETY: the CPU has the features `gelu_wide` is compiled for.
        Kernel::Vnni | Kernel::Amx => return unsafe { gelu_wide(values) },
        // SAFETY: the CPU has AVX2 and FMA.
        Kernel::Avx2 => return unsafe { gelu_avx2(values) },
        Kernel::None => {}
    }
    values.iter_mut().for_each(|v| *v = gelu_one(*v));
}

/// [`gelu_one`] sixteen values an instruction: the compiler leaves the
/// scalar loop scalar (its exponent's integer step), and a layer's 1,536
/// values a token made it a fifth of a pass.
///
/// # Safety
/// The CPU has AVX-512 F and BW.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn gelu_wide(values: &mut [f32]) {
    use std::arch::x86_64::{
        _mm512_abs_ps, _mm512_add_ps, _mm512_and_si512, _mm512_castps_si512, _mm512_castsi512_ps, _mm512_div_ps, _mm512_fmadd_ps, _mm512_fnmadd_ps,
        _mm512_mask_storeu_ps, _mm512_maskz_loadu_ps, _mm512_mul_ps, _mm512_set1_epi32, _mm512_set1_ps, _mm512_sub_ps, _mm512_xor_si512,
    };
    let c = _mm512_set1_ps;
    let one = c(1.0);
    let mut i = 0;
    while i < values.len() {
        let left = values.len() - i;
        let mask: u16 = if left >= LANES { u16::MAX } else { (1u16 << left) - 1 };
        let at = values[i..].as_mut_ptr();
        // SAFETY: the mask keeps the load and the store inside `values`.
        let x = unsafe { _mm512_maskz_loadu_ps(mask, at) };
        let z = _mm512_mul_ps(x, c(std::f32::consts::FRAC_1_SQRT_2));
        let t = _mm512_div_ps(one, _mm512_fmadd_ps(c(0.327_591_1), _mm512_abs_ps(z), one));
        let mut poly = c(1.061_405_4);
        for k in [-1.453_152_f32, 1.421_413_8, -0.284_496_74, 0.254_829_6] {
            poly = _mm512_fmadd_ps(poly, t, c(k));
        }
        let e = exp_wide(_mm512_mul_ps(_mm512_sub_ps(_mm512_set1_ps(0.0), z), z));
        let y = _mm512_fnmadd_ps(_mm512_mul_ps(poly, t), e, one);
        // erf takes z's sign; y ≥ 0, so the sign bit is z's alone.
        let sign = _mm512_and_si512(_mm512_castps_si512(z), _mm512_set1_epi32(i32::MIN));
        let erf = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(y), sign));
        let g = _mm512_mul_ps(_mm512_mul_ps(c(0.5), x), _mm512_add_ps(one, erf));
        // SAFETY: as the load.
        unsafe { _mm512_mask_storeu_ps(at, mask, g) };
        i += LANES;
    }
}

/// [`exp_negative`] of sixteen values (`x ≤ 0`).
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn exp_wide(x: std::arch::x86_64::__m512) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::{
        _mm512_add_epi32, _mm512_castsi512_ps, _mm512_cvttps_epi32, _mm512_fmadd_ps, _mm512_fnmadd_ps, _mm512_max_ps, _mm512_mul_ps, _mm512_set1_epi32,
        _mm512_set1_ps, _mm512_slli_epi32, _mm512_sub_ps,
    };
    let c = _mm512_set1_ps;
    let x = _mm512_max_ps(x, c(-87.0));
    let n = _mm512_sub_ps(_mm512_fmadd_ps(x, c(std::f32::consts::LOG2_E), c(12_582_912.0)), c(12_582_912.0));
    let r = _mm512_fnmadd_ps(n, c(1.428_606_8e-6), _mm512_fnmadd_ps(n, c(0.693_145_75), x));
    let mut p = c(0.001_388_888_9);
    for k in [0.008_333_334_f32, 0.041_666_668, 0.166_666_67, 0.5, 1.0, 1.0] {
        p = _mm512_fmadd_ps(p, r, c(k));
    }
    let two_n = _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(_mm512_cvttps_epi32(n), _mm512_set1_epi32(127))));
    _mm512_mul_ps(p, two_n)
}

/// Rows and columns [`attend_short`] takes: a chat line's tokens, one head.
const SHORT: usize = 64;

/// One head's scaled dot-product attention over `n` rows, where `n` and
/// the head's width `d` are at most 64 (`d` a multiple of 16) and the CPU
/// has AVX-512: `q`, `k`, `v` and `context` start at the head's first
/// column of the first row and hold a row every `stride` values. Each
/// query's scores against every key, their softmax and its weighted values
/// stay in registers; a general matrix product's packing and dispatch, 144
/// calls a chat line, took longer than the arithmetic. The sums run in the
/// order `matrixmultiply`'s kernel runs them (one fused multiply-add a
/// term, the scale applied after), and the softmax is [`softmax_rows`]'s,
/// so the numbers are that path's. `false` (nothing written) where it does
/// not apply: the caller's general path serves.
///
/// # Panics
/// When a slice is shorter than `n` rows of the head need.
pub fn attend_short(q: &[f32], k: &[f32], v: &[f32], context: &mut [f32], n: usize, stride: usize, d: usize) -> bool {
    if n == 0 || n > SHORT || d == 0 || d > SHORT || !d.is_multiple_of(LANES) || !matches!(kernel(), Kernel::Vnni | Kernel::Amx) {
        return false;
    }
    let span = (n - 1) * stride + d;
    assert!(q.len() >= span && k.len() >= span && v.len() >= span && context.len() >= span, "{n} rows of {d} columns every {stride}");
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: the CPU has AVX-512 F and BW (the kernel), and the
        // slices hold the rows (asserted).
        unsafe { attend_short_wide(q, k, v, context, n, stride, d) };
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// # Safety
/// The CPU has AVX-512 F and BW; `0 < n ≤ 64`, `d ≤ 64` a multiple of 16,
/// and each slice holds `(n − 1) × stride + d` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn attend_short_wide(q: &[f32], k: &[f32], v: &[f32], context: &mut [f32], n: usize, stride: usize, d: usize) {
    // The keys transposed, a row of 64 per column of the head (zero past n).
    let mut keys = [0f32; SHORT * SHORT];
    for j in 0..n {
        for (c, key) in k[j * stride..j * stride + d].iter().enumerate() {
            keys[c * SHORT + j] = *key;
        }
    }
    macro_rules! shapes {
        ($(($c:literal, $d:literal)),*) => {
            match (n.div_ceil(LANES), d / LANES) {
                // SAFETY: as this function's; the shape is the match's.
                $(($c, $d) => unsafe { attend_rows::<$c, $d>(q, &keys, v, context, n, stride) },)*
                _ => unreachable!("1 to 4 blocks of keys by 1 to 4 of columns"),
            }
        };
    }
    shapes!((1, 1), (1, 2), (1, 3), (1, 4), (2, 1), (2, 2), (2, 3), (2, 4), (3, 1), (3, 2), (3, 3), (3, 4), (4, 1), (4, 2), (4, 3), (4, 4));
}

/// Every query row of one head, its `C` blocks of 16 scores and `D` blocks
/// of 16 context values in registers (the loops over them unrolled).
///
/// # Safety
/// As [`attend_short_wide`], with `C = ⌈n / 16⌉` and `D = d / 16`.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn attend_rows<const C: usize, const D: usize>(q: &[f32], keys: &[f32; SHORT * SHORT], v: &[f32], context: &mut [f32], n: usize, stride: usize) {
    use std::arch::x86_64::{
        _mm512_add_ps, _mm512_div_ps, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_mask_blend_ps, _mm512_max_ps, _mm512_mul_ps, _mm512_reduce_add_ps,
        _mm512_reduce_max_ps, _mm512_set1_ps, _mm512_setzero_ps, _mm512_storeu_ps, _mm512_sub_ps,
    };
    let d = D * LANES;
    let scale = _mm512_set1_ps(1.0 / (d as f32).sqrt());
    let mask = |x: usize| -> u16 { if n - x * LANES >= LANES { u16::MAX } else { (1u16 << (n - x * LANES)) - 1 } };
    let mut weights = [0f32; SHORT];
    for i in 0..n {
        let mut scores = [_mm512_setzero_ps(); C];
        for (c, query) in q[i * stride..i * stride + d].iter().enumerate() {
            let query = _mm512_set1_ps(*query);
            for (x, score) in scores.iter_mut().enumerate() {
                // SAFETY: row `c` of `keys` has 64 values.
                *score = _mm512_fmadd_ps(query, unsafe { _mm512_loadu_ps(keys.as_ptr().add(c * SHORT + x * LANES)) }, *score);
            }
        }
        let mut top = _mm512_set1_ps(f32::NEG_INFINITY);
        for (x, score) in scores.iter_mut().enumerate() {
            *score = _mm512_mul_ps(*score, scale);
            top = _mm512_max_ps(top, _mm512_mask_blend_ps(mask(x), _mm512_set1_ps(f32::NEG_INFINITY), *score));
        }
        let top = _mm512_set1_ps(_mm512_reduce_max_ps(top));
        let mut sum = _mm512_setzero_ps();
        for (x, score) in scores.iter_mut().enumerate() {
            *score = _mm512_mask_blend_ps(mask(x), _mm512_setzero_ps(), exp_wide(_mm512_sub_ps(*score, top)));
            sum = _mm512_add_ps(sum, *score);
        }
        let sum = _mm512_set1_ps(_mm512_reduce_add_ps(sum));
        for (x, score) in scores.iter().enumerate() {
            // SAFETY: `weights` has 64 values.
            unsafe { _mm512_storeu_ps(weights.as_mut_ptr().add(x * LANES), _mm512_div_ps(*score, sum)) };
        }
        let mut out = [_mm512_setzero_ps(); D];
        for (j, w) in weights.iter().enumerate().take(n) {
            let w = _mm512_set1_ps(*w);
            for (y, o) in out.iter_mut().enumerate() {
                // SAFETY: row `j` of `v` holds the head's `d` columns.
                *o = _mm512_fmadd_ps(w, unsafe { _mm512_loadu_ps(v.as_ptr().add(j * stride + y * LANES)) }, *o);
            }
        }
        for (y, o) in out.iter().enumerate() {
            // SAFETY: row `i` of `context` holds the head's `d` columns.
            unsafe { _mm512_storeu_ps(context.as_mut_ptr().add(i * stride + y * LANES), *o) };
        }
    }
}

/// Softmax of each row of `width` values in `values`, in place (attention's
/// weights: a text of n tokens has n rows a head). The scores less their
/// row's greatest are never positive, so [`exp_negative`] serves.
///
/// # Panics
/// When `width` is 0 or does not divide `values`' length.
pub fn softmax_rows(values: &mut [f32], width: usize) {
    assert!(width > 0 && values.len().is_multiple_of(width), "{} values in rows of {width}", values.len());
    #[cfg(target_arch = "x86_64")]
    if matches!(kernel(), Kernel::Vnni | Kernel::Amx) {
        // SAFETY: the CPU has the features `softmax_wide` is compiled for.
        return unsafe { softmax_wide(values, width) };
    }
    for row in values.chunks_exact_mut(width) {
        let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        row.iter_mut().for_each(|x| *x = exp_negative(*x - m));
        // Eight running sums, then the rest: the order the transformer
        // summed in before this function, so a CPU without AVX-512 reads
        // every text exactly as it did.
        let chunks = row.chunks_exact(8);
        let tail: f32 = chunks.remainder().iter().sum();
        let mut lanes = [0f32; 8];
        for x in chunks {
            for (l, v) in lanes.iter_mut().zip(x) {
                *l += v;
            }
        }
        let s = lanes.iter().sum::<f32>() + tail;
        row.iter_mut().for_each(|x| *x /= s);
    }
}

/// # Safety
/// The CPU has AVX-512 F and BW.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn softmax_wide(values: &mut [f32], width: usize) {
    use std::arch::x86_64::{
        _mm512_add_ps, _mm512_div_ps, _mm512_mask_blend_ps, _mm512_mask_storeu_ps, _mm512_maskz_loadu_ps, _mm512_max_ps, _mm512_reduce_add_ps,
        _mm512_reduce_max_ps, _mm512_set1_ps, _mm512_setzero_ps, _mm512_sub_ps,
    };
    let masks = |i: usize| -> u16 { if width - i >= LANES { u16::MAX } else { (1u16 << (width - i)) - 1 } };
    for row in values.chunks_exact_mut(width) {
        let at = row.as_mut_ptr();
        let mut top = _mm512_set1_ps(f32::NEG_INFINITY);
        // SAFETY (each load and store below): the mask keeps it inside the row.
        for i in (0..width).step_by(LANES) {
            let mask = masks(i);
            let v = unsafe { _mm512_maskz_loadu_ps(mask, at.add(i)) };
            top = _mm512_max_ps(top, _mm512_mask_blend_ps(mask, _mm512_set1_ps(f32::NEG_INFINITY), v));
        }
        let m = _mm512_set1_ps(_mm512_reduce_max_ps(top));
        let mut sum = _mm512_setzero_ps();
        for i in (0..width).step_by(LANES) {
            let mask = masks(i);
            let e = exp_wide(_mm512_sub_ps(unsafe { _mm512_maskz_loadu_ps(mask, at.add(i)) }, m));
            let e = _mm512_mask_blend_ps(mask, _mm512_setzero_ps(), e);
            sum = _mm512_add_ps(sum, e);
            unsafe { _mm512_mask_storeu_ps(at.add(i), mask, e) };
        }
        let s = _mm512_set1_ps(_mm512_reduce_add_ps(sum));
        for i in (0..width).step_by(LANES) {
            let mask = masks(i);
            unsafe { _mm512_mask_storeu_ps(at.add(i), mask, _mm512_div_ps(_mm512_maskz_loadu_ps(mask, at.add(i)), s)) };
        }
    }
}

/// # Safety
/// The CPU has AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gelu_avx2(values: &mut [f32]) {
    values.iter_mut().for_each(|v| *v = gelu_one(*v));
}

#[inline(always)]
fn gelu_one(x: f32) -> f32 {
    let (a1, a2, a3, a4, a5, p) = (0.254_829_6_f32, -0.284_496_74_f32, 1.421_413_8_f32, -1.453_152_f32, 1.061_405_4_f32, 0.327_591_1_f32);
    let z = x / std::f32::consts::SQRT_2;
    let t = 1.0 / (1.0 + p * z.abs());
    let y = 1.0 - (((((a5 * t + a4) * t) + a3) * t + a2) * t + a1) * t * exp_negative(-z * z);
    0.5 * x * (1.0 + y.copysign(z))
}

/// `e^x` for `x ≤ 0` (relative error under 3e-7; clamped at −87), in
/// arithmetic alone so that loops of it are vectorised: the library's `exp`
/// is a call per value.
#[inline(always)]
pub fn exp_negative(x: f32) -> f32 {
    // e^x = 2^n · e^r with n = round(x / ln 2) and |r| ≤ ln 2 / 2; the
    // constant rounds to nearest without a call (exact for |n| < 2^22).
    const ROUND: f32 = 12_582_912.0;
    let x = x.max(-87.0);
    let n = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = x - n * 0.693_145_75 - n * 1.428_606_8e-6;
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (0.166_666_67 + r * (0.041_666_668 + r * (0.008_333_334 + r * 0.001_388_888_9)))));
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

#[cfg(target_arch = "x86_64")]
mod vnni {
    use std::arch::x86_64::{
        __m512i, _mm512_add_ps, _mm512_cvtepi32_ps, _mm512_cvttps_epi32, _mm512_dpbusd_epi32, _mm512_loadu_ps, _mm512_loadu_si512,
        _mm512_mask_cvtepi32_storeu_epi8, _mm512_mask_storeu_ps, _mm512_maskz_loadu_ps, _mm512_max_ps, _mm512_min_ps, _mm512_mul_ps, _mm512_mullo_epi32,
        _mm512_reduce_max_ps, _mm512_reduce_min_ps, _mm512_set1_epi32, _mm512_set1_ps, _mm512_setzero_ps, _mm512_setzero_si512, _mm512_sub_epi32,
    };

    use super::{Activations, Int8Linear, LANES, ROWS, range};

    /// [`super::quantise_rows`] sixteen values at a time.
    ///
    /// # Safety
    /// The CPU has AVX-512 F and BW; `a.values` holds `rows` rows of
    /// `a.stride ≥ inputs` bytes and `x` holds `rows × inputs` values.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn quantise(a: &mut Activations, x: &[f32], rows: usize, inputs: usize) {
        for r in 0..rows {
            let row = x[r * inputs..(r + 1) * inputs].as_ptr();
            let (mut lo, mut hi) = (_mm512_setzero_ps(), _mm512_setzero_ps());
            let mut i = 0;
            while i < inputs {
                let left = inputs - i;
                let mask: u16 = if left >= LANES { u16::MAX } else { (1u16 << left) - 1 };
                // SAFETY: the mask keeps the load inside the row.
                let v = unsafe { _mm512_maskz_loadu_ps(mask, row.add(i)) };
                lo = _mm512_min_ps(lo, v);
                hi = _mm512_max_ps(hi, v);
                i += LANES;
            }
            let (scale, zero) = range(_mm512_reduce_min_ps(lo), _mm512_reduce_max_ps(hi));
            let (inverse, shift) = (_mm512_set1_ps(1.0 / scale), _mm512_set1_ps(zero as f32 + 0.5));
            let (floor, ceiling) = (_mm512_setzero_ps(), _mm512_set1_ps(255.0));
            let out = a.values[r * a.stride..r * a.stride + inputs].as_mut_ptr();
            let mut i = 0;
            while i < inputs {
                let left = inputs - i;
                let mask: u16 = if left >= LANES { u16::MAX } else { (1u16 << left) - 1 };
                // SAFETY: the mask keeps the load inside the row and the
                // store inside the row's bytes.
                unsafe {
                    let v = _mm512_maskz_loadu_ps(mask, row.add(i));
                    let q = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(_mm512_mul_ps(v, inverse), shift), floor), ceiling);
                    _mm512_mask_cvtepi32_storeu_epi8(out.add(i).cast::<i8>(), mask, _mm512_cvttps_epi32(q));
                }
                i += LANES;
            }
            a.scales.push(scale);
            a.zeros.push(zero);
        }
    }

    /// # Safety
    /// The CPU has AVX-512 F, BW and VNNI, and `Int8Linear::check_call`
    /// passed for `m`, `a` and `out`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn product(m: &Int8Linear, a: &Activations, out: &mut [f32]) {
        let blocks = m.outputs.div_ceil(LANES);
        let mut block = 0;
        // Four blocks (64 outputs) by four rows: 16 sums in registers, each
        // weight load shared by four rows and each row's load by four blocks.
        while block < blocks {
            let n = (blocks - block).min(4);
            for tile in 0..a.rows.div_ceil(ROWS) {
                // The last tile reads only the rows there are: a short
                // message's padding would be a tenth of its work.
                let rows = (a.rows - tile * ROWS).min(ROWS);
                macro_rules! tiles {
                    ($(($n:literal, $r:literal)),*) => {
                        match (n, rows) {
                            // SAFETY: `block + n ≤ blocks`, and the tile's
                            // rows lie in `a.values` (padded to whole tiles).
                            $(($n, $r) => unsafe { run::<$n, $r>(m, a, out, block, tile) },)*
                            _ => unreachable!("1 to 4 blocks of 1 to 4 rows"),
                        }
                    };
                }
                tiles!((4, 4), (4, 3), (4, 2), (4, 1), (3, 4), (3, 3), (3, 2), (3, 1), (2, 4), (2, 3), (2, 2), (2, 1), (1, 4), (1, 3), (1, 2), (1, 1));
            }
            block += n;
        }
    }

    /// `N` blocks of outputs for `R` rows from row `tile × 4`.
    ///
    /// # Safety
    /// As [`product`], with `block + N ≤` the layer's blocks and `tile` a
    /// tile of `a`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn run<const N: usize, const R: usize>(m: &Int8Linear, a: &Activations, out: &mut [f32], block: usize, tile: usize) {
        let weights = m.packed.as_ptr();
        let rows = a.values.as_ptr();
        let mut acc = [[_mm512_setzero_si512(); N]; R];
        for g in 0..m.groups {
            let mut w = [_mm512_setzero_si512(); N];
            for (b, w) in w.iter_mut().enumerate() {
                // SAFETY: block `block + b` exists and has `groups` groups of
                // 64 bytes.
                *w = unsafe { _mm512_loadu_si512(weights.add(((block + b) * m.groups + g) * 64).cast::<__m512i>()) };
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                // SAFETY: row `tile·4 + r` lies in the padded rows, and its
                // group `g` is 4 bytes inside its stride.
                let four = unsafe { rows.add((tile * ROWS + r) * a.stride + g * 4).cast::<i32>().read_unaligned() };
                let x = _mm512_set1_epi32(four);
                for (acc, w) in acc.iter_mut().zip(&w) {
                    *acc = _mm512_dpbusd_epi32(*acc, x, *w);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            for (b, acc) in acc.iter().enumerate() {
                // SAFETY: row `tile·4 + r` exists (the tile's rows) and
                // block `block + b` is a block of `m`.
                unsafe { finish(m, a, out, *acc, tile * ROWS + r, block + b) };
            }
        }
    }

    /// One row's sixteen sums of a block to outputs, as [`super::finish`]
    /// does each: the zero point taken back out, both scales, the bias;
    /// stored for the outputs that exist. Both AVX-512 kernels end here.
    ///
    /// # Safety
    /// The CPU has AVX-512 F and BW; `row` is a row of `a` and `block` a
    /// block of `m`, and `check_call` passed for `m`, `a` and `out`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn finish(m: &Int8Linear, a: &Activations, out: &mut [f32], acc: __m512i, row: usize, block: usize) {
        let first = block * LANES;
        let valid = (m.outputs - first).min(LANES);
        let mask: u16 = if valid == LANES { u16::MAX } else { (1u16 << valid) - 1 };
        // SAFETY: scales, sums and bias are padded to whole blocks; the
        // store is masked to the outputs that exist, inside `out`.
        unsafe {
            let sums = _mm512_loadu_si512(m.sums.as_ptr().add(first).cast::<__m512i>());
            let exact = _mm512_sub_epi32(acc, _mm512_mullo_epi32(_mm512_set1_epi32(a.zeros[row]), sums));
            let scale = _mm512_mul_ps(_mm512_set1_ps(a.scales[row]), _mm512_loadu_ps(m.scales.as_ptr().add(first)));
            let y = _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(exact), scale), _mm512_loadu_ps(m.bias.as_ptr().add(first)));
            _mm512_mask_storeu_ps(out.as_mut_ptr().add(row * m.outputs + first), mask, y);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod amx {
    use std::arch::asm;
    use std::arch::x86_64::{__m512i, _mm512_loadu_si512};

    use super::{Activations, Int8Linear, LANES, STEP, TILE_ROWS};

    /// `arch_prctl` codes (Linux's `asm/prctl.h`) and the tile data's
    /// state component (XSAVE feature 18).
    #[cfg(target_os = "linux")]
    const ARCH_REQ_XCOMP_PERM: libc::c_ulong = 0x1023;
    #[cfg(target_os = "linux")]
    const XFEATURE_XTILEDATA: libc::c_ulong = 18;

    /// Whether the CPU has AMX-TILE and AMX-INT8 (CPUID leaf 7, EDX bits 24
    /// and 25) and Linux has let this process use them.
    pub(super) fn available() -> bool {
        let id = std::arch::x86_64::__cpuid_count(7, 0);
        if (id.edx >> 24) & 1 == 0 || (id.edx >> 25) & 1 == 0 {
            return false;
        }
        granted()
    }

    #[cfg(target_os = "linux")]
    fn granted() -> bool {
        // SAFETY: a request for a state component touches no memory of
        // ours; the kernel answers 0 when granted and an error otherwise
        // (an older kernel, or a hypervisor that keeps the tiles).
        unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0 }
    }

    #[cfg(not(target_os = "linux"))]
    fn granted() -> bool {
        false
    }

    /// Palette 1 with every tile 16 rows of 64 bytes: activations (16 rows
    /// of 64 inputs), weights (16 groups of four inputs by 16 outputs, the
    /// packing's 64-byte groups) and sums (16 rows of 16 `i32`).
    #[repr(C, align(64))]
    struct Config([u8; 64]);

    impl Config {
        /// Tiles 0, 1 and 4 (the first row tile's sums and rows) of `first`
        /// rows, tiles 2, 3 and 5 of `second`: a message's last tile holds
        /// only the tokens it has, and the instructions do that much work.
        fn rows(first: usize, second: usize) -> Self {
            let mut c = [0u8; 64];
            c[0] = 1;
            for t in 0..8 {
                c[16 + 2 * t..18 + 2 * t].copy_from_slice(&(STEP as u16).to_le_bytes());
                c[48 + t] = match t {
                    0 | 1 | 4 => first,
                    2 | 3 | 5 => second.max(1),
                    _ => TILE_ROWS,
                } as u8;
            }
            Self(c)
        }
    }

    /// Four tiles of sums as they leave the tile registers.
    #[repr(C, align(64))]
    struct Sums([i32; 4 * TILE_ROWS * LANES]);

    macro_rules! load {
        ($tile:literal, $at:expr, $stride:expr) => {
            asm!(concat!("tileloadd tmm", $tile, ", [{at} + {stride}*1]"), at = in(reg) $at, stride = in(reg) $stride, options(nostack, readonly, preserves_flags))
        };
    }
    macro_rules! multiply {
        ($sums:literal, $rows:literal, $weights:literal) => {
            asm!(concat!("tdpbusd tmm", $sums, ", tmm", $rows, ", tmm", $weights), options(nomem, nostack, preserves_flags))
        };
    }
    macro_rules! store {
        ($tile:literal, $at:expr) => {
            asm!(concat!("tilestored [{at} + {stride}*1], tmm", $tile), at = in(reg) $at, stride = in(reg) LANES * 4, options(nostack, preserves_flags))
        };
    }

    /// Two blocks of outputs by two tiles of rows at a time: sums in tiles
    /// 0–3, rows in 4–5, weights in 6–7, so each weight tile loaded serves
    /// two row tiles and each row tile two weight tiles. A short message
    /// (one row tile) or the last odd block skips the tiles it lacks.
    ///
    /// # Safety
    /// The CPU has AMX-INT8 and AVX-512 F and BW, the process holds the
    /// tiles ([`available`] said so), `a` was quantised for AMX (rows padded
    /// to whole tiles, stride a whole number of steps) and
    /// `Int8Linear::check_call` passed for `m`, `a` and `out`.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn product(m: &Int8Linear, a: &Activations, out: &mut [f32]) {
        let mut sums = Sums([0; 4 * TILE_ROWS * LANES]);
        let blocks = m.outputs.div_ceil(LANES);
        let steps = m.groups * 4 / STEP;
        let tiles = a.rows.div_ceil(TILE_ROWS);
        let (rows, weights) = (a.values.as_ptr(), m.packed.as_ptr());
        // SAFETY (every block below): the configuration is 64 bytes
        // aligned; each tile load reads at most 16 rows of 64 bytes, inside
        // `a.values` (rows padded to whole tiles, each step inside the
        // stride) or inside the block's packed groups (16 per step); each
        // store writes at most 16 rows of 64 bytes inside `sums`.
        let mut loaded = None;
        for tile in (0..tiles).step_by(2) {
            let both = tile + 1 < tiles;
            let first = (a.rows - tile * TILE_ROWS).min(TILE_ROWS);
            let second = if both { (a.rows - (tile + 1) * TILE_ROWS).min(TILE_ROWS) } else { 0 };
            if loaded != Some((first, second)) {
                let config = Config::rows(first, second);
                unsafe { asm!("ldtilecfg [{}]", in(reg) config.0.as_ptr(), options(nostack, readonly, preserves_flags)) };
                loaded = Some((first, second));
            }
            for block in (0..blocks).step_by(2) {
                let pair = block + 1 < blocks;
                unsafe { asm!("tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3", options(nomem, nostack, preserves_flags)) };
                for step in 0..steps {
                    let (x, w) = unsafe { (rows.add(tile * TILE_ROWS * a.stride + step * STEP), weights.add((block * m.groups + step * 16) * 64)) };
                    unsafe {
                        load!("4", x, a.stride);
                        load!("6", w, 64usize);
                        multiply!("0", "4", "6");
                        if pair {
                            load!("7", w.add(m.groups * 64), 64usize);
                            multiply!("1", "4", "7");
                        }
                        if both {
                            load!("5", x.add(TILE_ROWS * a.stride), a.stride);
                            multiply!("2", "5", "6");
                            if pair {
                                multiply!("3", "5", "7");
                            }
                        }
                    }
                }
                let at = sums.0.as_mut_ptr();
                unsafe {
                    store!("0", at);
                    store!("1", at.add(TILE_ROWS * LANES));
                    store!("2", at.add(2 * TILE_ROWS * LANES));
                    store!("3", at.add(3 * TILE_ROWS * LANES));
                }
                for (i, part) in sums.0.chunks_exact(TILE_ROWS * LANES).enumerate() {
                    let (t, b) = (tile + i / 2, block + i % 2);
                    if t < tiles && b < blocks {
                        // SAFETY: as this function's.
                        unsafe { finish(m, a, out, part, t, b) };
                    }
                }
            }
        }
        unsafe { asm!("tilerelease", options(nomem, nostack, preserves_flags)) };
    }

    /// One tile of sums to outputs: the rows that exist, the outputs that
    /// exist, as [`super::finish`] does them.
    ///
    /// # Safety
    /// As [`product`], with `tile` and `block` inside `a` and `m`.
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn finish(m: &Int8Linear, a: &Activations, out: &mut [f32], part: &[i32], tile: usize, block: usize) {
        for r in 0..TILE_ROWS.min(a.rows - tile * TILE_ROWS) {
            // SAFETY: `part` holds 16 rows of 16 sums; the row is one of
            // `a`'s and the block one of `m`'s (this function's contract).
            unsafe { super::vnni::finish(m, a, out, _mm512_loadu_si512(part.as_ptr().add(r * LANES).cast::<__m512i>()), tile * TILE_ROWS + r, block) };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::{
        __m128i, __m256i, _mm_loadu_si128, _mm256_add_epi32, _mm256_add_ps, _mm256_cvtepi8_epi16, _mm256_cvtepi32_ps, _mm256_hadd_epi32, _mm256_loadu_ps,
        _mm256_loadu_si256, _mm256_madd_epi16, _mm256_mul_ps, _mm256_mullo_epi32, _mm256_permute4x64_epi64, _mm256_set1_epi32, _mm256_set1_epi64x,
        _mm256_set1_ps, _mm256_setzero_si256, _mm256_storeu_ps, _mm256_sub_epi32,
    };

    use super::{Activations, Int8Linear, LANES, ROWS};

    /// [`super::quantise_rows`] compiled for AVX2 (the loops vectorise),
    /// and the bytes widened for [`product`].
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn quantise(a: &mut Activations, x: &[f32], rows: usize, inputs: usize) {
        super::quantise_rows(a, x, rows, inputs);
        a.wide.clear();
        a.wide.extend(a.values.iter().map(|v| i16::from(*v)));
    }

    /// # Safety
    /// The CPU has AVX2 and FMA, `a` was quantised by [`quantise`], and
    /// `Int8Linear::check_call` passed for `m`, `a` and `out`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn product(m: &Int8Linear, a: &Activations, out: &mut [f32]) {
        for block in 0..m.outputs.div_ceil(LANES) {
            for half in 0..2 {
                if block * LANES + half * 8 >= m.outputs {
                    break;
                }
                for tile in 0..a.rows.div_ceil(ROWS) {
                    // SAFETY: `block` is a block of `m`, and the tile's rows
                    // lie in `a.wide` (padded to whole tiles).
                    unsafe {
                        match (a.rows - tile * ROWS).min(ROWS) {
                            4 => run::<4>(m, a, out, block, half, tile),
                            3 => run::<3>(m, a, out, block, half, tile),
                            2 => run::<2>(m, a, out, block, half, tile),
                            _ => run::<1>(m, a, out, block, half, tile),
                        }
                    }
                }
            }
        }
    }

    /// Eight outputs (half a block) for `R` rows from row `tile × 4`: each
    /// group's 32 weight bytes widen to two registers of four outputs by
    /// four inputs, and each row's four inputs, broadcast, meet them in
    /// `vpmaddwd` (pairs of products summed into 32 bits, exactly).
    ///
    /// # Safety
    /// As [`product`], with `block` a block of `m`, `half` 0 or 1 and `tile`
    /// a tile of `a`.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn run<const R: usize>(m: &Int8Linear, a: &Activations, out: &mut [f32], block: usize, half: usize, tile: usize) {
        let weights = m.packed.as_ptr();
        let rows = a.wide.as_ptr();
        let mut acc = [[_mm256_setzero_si256(); 2]; R];
        for g in 0..m.groups {
            // SAFETY: the block has `groups` groups of 64 bytes.
            let (w0, w1) = unsafe {
                let at = weights.add((block * m.groups + g) * 64 + half * 32);
                (_mm256_cvtepi8_epi16(_mm_loadu_si128(at.cast::<__m128i>())), _mm256_cvtepi8_epi16(_mm_loadu_si128(at.add(16).cast::<__m128i>())))
            };
            for (r, acc) in acc.iter_mut().enumerate() {
                // SAFETY: row `tile·4 + r` lies in the padded rows, and its
                // group `g` is 4 values inside its stride.
                let four = unsafe { rows.add((tile * ROWS + r) * a.stride + g * 4).cast::<i64>().read_unaligned() };
                let x = _mm256_set1_epi64x(four);
                acc[0] = _mm256_add_epi32(acc[0], _mm256_madd_epi16(x, w0));
                acc[1] = _mm256_add_epi32(acc[1], _mm256_madd_epi16(x, w1));
            }
        }
        let first = block * LANES + half * 8;
        for (r, acc) in acc.iter().enumerate() {
            let row = tile * ROWS + r;
            // Each output's two partial sums are neighbours: add them, and
            // put the outputs back in order (`hadd` works per 128 bits).
            let sums = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_hadd_epi32(acc[0], acc[1]));
            let mut y = [0f32; 8];
            // SAFETY: scales, sums and bias are padded to whole blocks of
            // 16, so 8 from `first` lie inside them.
            unsafe {
                let weight_sums = _mm256_loadu_si256(m.sums.as_ptr().add(first).cast::<__m256i>());
                let exact = _mm256_sub_epi32(sums, _mm256_mullo_epi32(_mm256_set1_epi32(a.zeros[row]), weight_sums));
                let scale = _mm256_mul_ps(_mm256_set1_ps(a.scales[row]), _mm256_loadu_ps(m.scales.as_ptr().add(first)));
                _mm256_storeu_ps(y.as_mut_ptr(), _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(exact), scale), _mm256_loadu_ps(m.bias.as_ptr().add(first))));
            }
            let valid = (m.outputs - first).min(8);
            out[row * m.outputs + first..][..valid].copy_from_slice(&y[..valid]);
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn layer(outputs: usize, inputs: usize, seed: u64) -> (Vec<i8>, Vec<f32>, Vec<f32>) {
        let mut s = seed;
        let mut next = || {
            s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (s >> 33) as u32
        };
        let values = (0..outputs * inputs).map(|_| (next() % 255) as i8).collect();
        let scales = (0..outputs).map(|_| (next() % 1000) as f32 / 50_000.0 + 1e-4).collect();
        let bias = (0..outputs).map(|_| (next() % 200) as f32 / 100.0 - 1.0).collect();
        (values, scales, bias)
    }

    /// The product in `f32` of the quantised input: what the integers must
    /// give up to rounding of the float steps.
    fn reference(x: &[f32], rows: usize, inputs: usize, outputs: usize, values: &[i8], scales: &[f32], bias: &[f32]) -> Vec<f32> {
        let mut out = vec![0f32; rows * outputs];
        for r in 0..rows {
            for o in 0..outputs {
                let dot: f64 = (0..inputs).map(|i| f64::from(x[r * inputs + i]) * f64::from(values[o * inputs + i]) * f64::from(scales[o])).sum();
                out[r * outputs + o] = dot as f32 + bias[o];
            }
        }
        out
    }

    #[test]
    fn the_kernel_gives_the_portable_integers() {
        for (rows, inputs, outputs) in [(1, 4, 16), (3, 7, 5), (22, 384, 384), (9, 1536, 384), (13, 384, 1536), (5, 33, 70)] {
            let (values, scales, bias) = layer(outputs, inputs, (rows * inputs * outputs) as u64);
            let m = Int8Linear::packed(outputs, inputs, &values, &scales, &bias).expect("shapes agree");
            let x: Vec<f32> = (0..rows * inputs).map(|i| ((i * 7919) % 1013) as f32 / 300.0 - 1.5).collect();
            let mut a = Activations::new();
            a.quantise(&x, rows, inputs);
            let mut fast = vec![f32::NAN; rows * outputs + 3];
            let mut slow = vec![f32::NAN; rows * outputs + 3];
            m.product(&a, &mut fast);
            m.product_portable(&a, &mut slow);
            assert_eq!(fast[..rows * outputs], slow[..rows * outputs], "{rows}×{inputs}→{outputs}: the same integers, the same finishing");
            assert!(fast[rows * outputs..].iter().all(|v| v.is_nan()), "nothing written past the rows");
            let exact = reference(&x, rows, inputs, outputs, &values, &scales, &bias);
            // The only error is the input's rounding: half a step of its
            // row's range, times the weights' sizes.
            for r in 0..rows {
                let row = &x[r * inputs..(r + 1) * inputs];
                let (lo, hi) = row.iter().fold((0f32, 0f32), |(l, h), &v| (l.min(v), h.max(v)));
                for o in 0..outputs {
                    let weight: f32 = values[o * inputs..(o + 1) * inputs].iter().map(|v| f32::from(*v).abs()).sum::<f32>() * scales[o];
                    let bound = (hi - lo) / 255.0 * 0.5 * weight + 1e-3;
                    let (got, want) = (fast[r * outputs + o], exact[r * outputs + o]);
                    assert!((got - want).abs() <= bound, "{rows}×{inputs}→{outputs} [{r}][{o}]: {got} against {want} (bound {bound})");
                }
            }
        }
    }

    /// The kernels this CPU can run: the one it was given and those older.
    fn runnable() -> Vec<Kernel> {
        match kernel() {
            Kernel::Amx => vec![Kernel::Amx, Kernel::Vnni, Kernel::Avx2],
            Kernel::Vnni => vec![Kernel::Vnni, Kernel::Avx2],
            Kernel::Avx2 => vec![Kernel::Avx2],
            Kernel::None => vec![],
        }
    }

    #[test]
    fn every_kernel_this_cpu_runs_gives_the_portable_integers() {
        // Past a tile's 16 rows and 64 inputs, odd blocks and odd tiles.
        for (rows, inputs, outputs) in [(1, 384, 384), (16, 64, 16), (17, 130, 40), (33, 1536, 384), (40, 384, 1536), (2, 5, 3)] {
            let (values, scales, bias) = layer(outputs, inputs, (rows + inputs + outputs) as u64);
            let m = Int8Linear::packed(outputs, inputs, &values, &scales, &bias).expect("shapes agree");
            let x: Vec<f32> = (0..rows * inputs).map(|i| ((i * 104_729) % 2003) as f32 / 400.0 - 2.5).collect();
            for k in runnable() {
                let mut a = Activations::for_kernel(k);
                a.quantise(&x, rows, inputs);
                let mut fast = vec![f32::NAN; rows * outputs + 5];
                let mut slow = vec![f32::NAN; rows * outputs];
                m.product(&a, &mut fast);
                m.product_portable(&a, &mut slow);
                assert_eq!(fast[..rows * outputs], slow[..], "{k:?}, {rows}×{inputs}→{outputs}");
                assert!(fast[rows * outputs..].iter().all(|v| v.is_nan()), "{k:?}: nothing written past the rows");
            }
        }
    }

    #[test]
    fn the_kernel_can_be_held_back_by_name() {
        assert_ne!(detect("vnni"), Kernel::Amx);
        assert!(matches!(detect("avx2"), Kernel::Avx2 | Kernel::None));
    }

    #[test]
    fn the_largest_products_do_not_saturate() {
        // Every weight at the int8 extremes and every input at the top or
        // bottom of its range: AVX2's 16-bit pair sums are at their fullest.
        let (outputs, inputs) = (16, 64);
        for w in [-128i8, 127] {
            let values = vec![w; outputs * inputs];
            let m = Int8Linear::packed(outputs, inputs, &values, &[1.0; 16], &[0.0; 16]).expect("shapes agree");
            let x: Vec<f32> = (0..2 * inputs).map(|i| if i < inputs { 1.0 } else { -1.0 }).collect();
            let mut a = Activations::new();
            a.quantise(&x, 2, inputs);
            let (mut fast, mut slow) = (vec![0f32; 2 * outputs], vec![0f32; 2 * outputs]);
            m.product(&a, &mut fast);
            m.product_portable(&a, &mut slow);
            assert_eq!(fast, slow, "weights {w}");
            let want = f32::from(w) * inputs as f32;
            assert!(
                (fast[0] - want).abs() < 1e-3 * want.abs() && (fast[outputs] + want).abs() < 1e-3 * want.abs(),
                "{} and {} for ±{want}",
                fast[0],
                fast[outputs]
            );
        }
    }

    #[test]
    fn a_layer_of_the_wrong_shape_is_refused_by_name() {
        let err = Int8Linear::packed(4, 3, &[0; 11], &[1.0; 4], &[0.0; 4]).expect_err("11 weights for 4×3");
        assert!(err.to_string().contains("4×3 needs 4×3 weights"), "{err}");
        assert!(Int8Linear::new(4, 3, &[0; 12], &[1.0; 3], &[0.0; 4]).is_err(), "refused whatever the CPU");
    }

    #[test]
    fn a_constant_row_and_a_zero_row_are_read_exactly() {
        let (values, scales, bias) = layer(16, 8, 1);
        let m = Int8Linear::packed(16, 8, &values, &scales, &bias).expect("shapes agree");
        let x: Vec<f32> = [[0.0; 8], [2.5; 8], [-1.0; 8]].concat();
        let mut a = Activations::new();
        a.quantise(&x, 3, 8);
        let mut out = vec![0f32; 48];
        m.product(&a, &mut out);
        let exact = reference(&x, 3, 8, 16, &values, &scales, &bias);
        for (got, want) in out.iter().zip(&exact) {
            assert!((got - want).abs() < 1e-3 * want.abs().max(1.0), "{got} against {want}");
        }
    }

    #[test]
    fn the_fast_exponential_is_the_librarys() {
        for i in 0..=19_300 {
            let x = -(i as f32) * 0.0045;
            let (fast, exact) = (exp_negative(x), x.exp());
            assert!((fast - exact).abs() <= 3e-7 * exact + 1e-38, "e^{x}: {fast} against {exact}");
        }
        assert_eq!(exp_negative(-1e9), exp_negative(-87.0), "far below is clamped, not garbage");
    }

    #[test]
    fn the_wide_gelu_is_the_scalar_one() {
        let mut v: Vec<f32> = (0..4001).map(|i| (i as f32 - 2000.0) / 150.0).collect();
        let want: Vec<f32> = v.iter().map(|x| gelu_one(*x)).collect();
        gelu(&mut v);
        for (i, (got, want)) in v.iter().zip(&want).enumerate() {
            assert!((got - want).abs() <= 1e-6 * want.abs().max(1.0), "at {i}: {got} against {want}");
        }
    }

    #[test]
    fn softmax_rows_sum_to_one_in_order() {
        for width in [1usize, 5, 16, 22, 33] {
            let mut v: Vec<f32> = (0..width * 3).map(|i| ((i * 37) % 23) as f32 / 4.0 - 3.0).collect();
            let want: Vec<f32> = v
                .chunks_exact(width)
                .flat_map(|row| {
                    let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let e: Vec<f64> = row.iter().map(|x| f64::from(x - m).exp()).collect();
                    let s: f64 = e.iter().sum();
                    e.into_iter().map(move |x| (x / s) as f32)
                })
                .collect();
            softmax_rows(&mut v, width);
            for (got, want) in v.iter().zip(&want) {
                assert!((got - want).abs() < 1e-6, "width {width}: {got} against {want}");
            }
        }
    }

    #[test]
    fn short_attention_weighs_the_values_by_the_softmax_of_the_scores() {
        for (n, d, heads) in [(7, 16, 3), (22, 32, 12), (64, 64, 2), (1, 32, 1), (17, 48, 2)] {
            let stride = d * heads;
            let make = |seed: usize| -> Vec<f32> { (0..n * stride).map(|i| (((i + seed) * 7919) % 101) as f32 / 50.0 - 1.0).collect() };
            let (q, k, v) = (make(1), make(2), make(3));
            for head in 0..heads {
                let at = head * d;
                let mut context = vec![f32::NAN; n * stride];
                if !attend_short(&q[at..], &k[at..], &v[at..], &mut context[at..], n, stride, d) {
                    assert!(!matches!(kernel(), Kernel::Vnni | Kernel::Amx), "AVX-512 takes {n}×{d}");
                    return;
                }
                for i in 0..n {
                    let s: Vec<f64> = (0..n)
                        .map(|j| (0..d).map(|c| f64::from(q[i * stride + at + c]) * f64::from(k[j * stride + at + c])).sum::<f64>() / (d as f64).sqrt())
                        .collect();
                    let m = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
                    let total: f64 = e.iter().sum();
                    for c in 0..d {
                        let want: f64 = (0..n).map(|j| e[j] / total * f64::from(v[j * stride + at + c])).sum();
                        let got = context[i * stride + at + c];
                        assert!((f64::from(got) - want).abs() < 1e-5, "{n}×{d} head {head} row {i} column {c}: {got} against {want}");
                    }
                }
                for (i, x) in context.iter().enumerate() {
                    assert_eq!(x.is_nan(), !(at..at + d).contains(&(i % stride)), "only the head's columns are written ({i})");
                }
            }
        }
        let mut out = [0f32; 80];
        assert!(!attend_short(&[0.0; 80], &[0.0; 80], &[0.0; 80], &mut out, 1, 80, 80), "a head wider than 64 is the general path's");
    }

    #[test]
    fn gelu_is_berts() {
        // erf-based GELU at a few points (from the definition, in f64).
        for (x, want) in [(-3.0f32, -0.004_049_695), (-1.0, -0.158_655_25), (0.0, 0.0), (0.5, 0.345_731_23), (1.0, 0.841_344_7), (2.5, 2.484_475_8)] {
            let mut v = [x; 33];
            gelu(&mut v);
            assert!(v.iter().all(|g| (g - want).abs() < 2e-6), "gelu({x}) = {} against {want}", v[0]);
        }
    }

    proptest! {
        #[test]
        fn both_quantisers_give_the_same_bytes(rows in 1usize..6, inputs in 1usize..70, seed in any::<u64>()) {
            let x: Vec<f32> = (0..rows * inputs).map(|i| (((i as u64).wrapping_mul(seed | 1) >> 7) % 1000) as f32 / 37.0 - 9.0).collect();
            let mut fast = Activations::new();
            fast.quantise(&x, rows, inputs);
            let mut slow = Activations::new();
            slow.rows = rows;
            slow.inputs = inputs;
            slow.stride = stride(inputs);
            slow.values = vec![0; fast.values.len()];
            quantise_rows(&mut slow, &x, rows, inputs);
            prop_assert_eq!(fast.values, slow.values);
            prop_assert_eq!(fast.scales, slow.scales);
            prop_assert_eq!(fast.zeros, slow.zeros);
        }

        #[test]
        fn any_shape_agrees_with_the_portable_path(rows in 1usize..10, inputs in 1usize..80, outputs in 1usize..90, seed in any::<u64>()) {
            let (values, scales, bias) = layer(outputs, inputs, seed);
            let m = Int8Linear::packed(outputs, inputs, &values, &scales, &bias).expect("shapes agree");
            let x: Vec<f32> = (0..rows * inputs).map(|i| ((i as u64 ^ seed) % 97) as f32 / 10.0 - 4.0).collect();
            let mut a = Activations::new();
            a.quantise(&x, rows, inputs);
            let (mut fast, mut slow) = (vec![0f32; rows * outputs], vec![0f32; rows * outputs]);
            m.product(&a, &mut fast);
            m.product_portable(&a, &mut slow);
            prop_assert_eq!(fast, slow);
        }
    }
}
