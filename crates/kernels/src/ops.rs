//! Element-wise and row ops on f32 slices. The dispatched ones here ([`dot`], [`axpy`],
//! [`dot_f16`], [`axpy_f16`], [`extend_f16`], [`lstm_cell`]) use the default table
//! ([`crate::kernels`]); code running on an [`crate::Engine`] calls its table's methods
//! ([`crate::Kernels::dot_f32`] …) instead.

use crate::kernels;

/// `out = x / sqrt(mean(x²) + eps) * w` (sum of squares accumulated in f64, as ggml).
pub fn rmsnorm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let ss: f64 = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
    let scale = (1.0 / (ss / x.len() as f64 + f64::from(eps)).sqrt()) as f32;
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(w) {
        *o = v * scale * g;
    }
}

/// In-place softmax (max-subtracted).
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// Index of the largest value: the first on ties; a NaN never wins over a number. 0 for an
/// empty slice. The greedy choice of a decoder and the label of a classifier.
pub fn argmax(x: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] || x[best].is_nan() {
            best = i;
        }
    }
    best
}

/// SiLU: `x · σ(x)`.
#[inline]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + fast_exp(-x))
}

/// GELU, tanh approximation (as ggml's `ggml_gelu`): `0.5·x·(1 + tanh(u))` with
/// `u = √(2/π)·(x + 0.044715·x³)`, computed as the equal `x·σ(2u)` with [`fast_exp`], so that
/// loops over it vectorize (no libm call per element).
#[inline]
pub fn gelu(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    let u = SQRT_2_OVER_PI * x * (1.0 + 0.044_715 * x * x);
    x / (1.0 + fast_exp(-2.0 * u))
}

/// `gate[i] = silu(gate[i]) * up[i]` (the SwiGLU feed-forward epilogue).
pub fn swiglu(gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = silu(*g) * u;
    }
}

/// Signature of the fused LSTM epilogue: `(z, xp, bias, c, h)`.
pub type LstmCell = fn(&[f32], &[f32], &[f32], &mut [f32], &mut [f32]);

/// `e^x` for x in [-87.3, 88.3] (clamped outside) to about 2 ulp, branch-free so loops over
/// it vectorize: `x = n·ln2 + r`, `e^r` by a degree-7 Taylor-like polynomial on |r| ≤ ln2/2,
/// `2^n` assembled in the exponent bits.
#[inline(always)]
pub fn fast_exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // 1.5·2^23: adding and subtracting it rounds to the nearest integer (SSE2-only code).
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.3, 88.3);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    // Σ r^k / k!, k ≤ 7: error below 2e-8 on |r| ≤ 0.347.
    let p = 1.0 / 5040.0;
    let p = p * r + 1.0 / 720.0;
    let p = p * r + 1.0 / 120.0;
    let p = p * r + 1.0 / 24.0;
    let p = p * r + 1.0 / 6.0;
    let p = p * r + 0.5;
    let p = p * r + 1.0;
    let p = p * r + 1.0;
    // 2^n from the bits of n + 127 + ROUND, whose low mantissa bits hold the integer n + 127
    // (in 1..=254 after the clamp): no float → int cast, whose saturating semantics would
    // stop the loop from vectorizing.
    let biased = (n + (ROUND + 127.0))
        .to_bits()
        .wrapping_sub(ROUND.to_bits());
    let scale = f32::from_bits(biased << 23);
    p * scale
}

/// σ(x) = 1 / (1 + e^-x).
#[inline(always)]
pub fn fast_sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + fast_exp(-x))
}

/// tanh(x) = 1 − 2 / (e^2x + 1) (absolute error about 1e-7).
#[inline(always)]
pub fn fast_tanh(x: f32) -> f32 {
    1.0 - 2.0 / (fast_exp(2.0 * x) + 1.0)
}

/// The fused LSTM gate epilogue for one sequence: with `H = c.len()`, pre-activations
/// `z + xp + bias` (each `4H`, gate blocks i, f, g, o, PyTorch's order),
/// `c ← σ(f)·c + σ(i)·tanh(g)`, `h ← σ(o)·tanh(c)`. With the default table (AVX2 on x86-64).
#[inline]
pub fn lstm_cell(z: &[f32], xp: &[f32], bias: &[f32], c: &mut [f32], h: &mut [f32]) {
    (kernels().lstm_cell)(z, xp, bias, c, h)
}

/// Portable body of [`lstm_cell`]; `inline(always)` so a caller compiled with wider SIMD
/// features vectorizes it with them.
#[inline(always)]
pub fn lstm_cell_body(z: &[f32], xp: &[f32], bias: &[f32], c: &mut [f32], h: &mut [f32]) {
    let n = c.len();
    assert!(h.len() == n && z.len() == 4 * n && xp.len() == 4 * n && bias.len() == 4 * n);
    let (zi, rest) = z.split_at(n);
    let (zf, rest) = rest.split_at(n);
    let (zg, zo) = rest.split_at(n);
    let (xi, rest) = xp.split_at(n);
    let (xf, rest) = rest.split_at(n);
    let (xg, xo) = rest.split_at(n);
    let (bi, rest) = bias.split_at(n);
    let (bf, rest) = rest.split_at(n);
    let (bg, bo) = rest.split_at(n);
    for j in 0..n {
        let i = fast_sigmoid(zi[j] + xi[j] + bi[j]);
        let f = fast_sigmoid(zf[j] + xf[j] + bf[j]);
        let g = fast_tanh(zg[j] + xg[j] + bg[j]);
        let o = fast_sigmoid(zo[j] + xo[j] + bo[j]);
        let cj = f * c[j] + i * g;
        c[j] = cj;
        h[j] = o * fast_tanh(cj);
    }
}

/// [`lstm_cell_body`] compiled for the baseline target.
pub fn lstm_cell_generic(z: &[f32], xp: &[f32], bias: &[f32], c: &mut [f32], h: &mut [f32]) {
    lstm_cell_body(z, xp, bias, c, h)
}

/// f32 dot product with the dispatched kernel.
#[inline]
pub fn dot(x: &[f32], y: &[f32]) -> f32 {
    (kernels().dot_f32)(x, y)
}

/// `y += a·x` with the dispatched kernel.
#[inline]
pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    (kernels().axpy)(a, x, y)
}

/// Σ x·y with `y` in f16 bits, dispatched.
#[inline]
pub fn dot_f16(x: &[f32], y: &[u16]) -> f32 {
    (kernels().dot_f32_f16)(x, y)
}

/// `y += a·x` with `x` in f16 bits, dispatched.
#[inline]
pub fn axpy_f16(a: f32, x: &[u16], y: &mut [f32]) {
    (kernels().axpy_f16)(a, x, y)
}

/// Append `x` converted to f16 bits (round to nearest even) to `out`.
pub fn extend_f16(out: &mut Vec<u16>, x: &[f32]) {
    let start = out.len();
    out.resize(start + x.len(), 0);
    (kernels().to_f16)(x, &mut out[start..]);
}

/// How rotary embeddings pair the dimensions of a head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeStyle {
    /// Adjacent pairs `(2i, 2i+1)`: ggml's "normal" mode, used for `llama` GGUF files
    /// (whose converter permuted Q/K to this layout).
    Adjacent,
    /// Half split `(i, i + n_rot/2)`: GPT-NeoX style, used by Qwen2, Gemma and others.
    HalfSplit,
}

/// Per-pair inverse frequencies `base^(-2i/n_rot)`.
pub fn rope_freqs(n_rot: usize, base: f32) -> Vec<f32> {
    (0..n_rot / 2)
        .map(|i| (f64::from(base)).powf(-2.0 * i as f64 / n_rot as f64) as f32)
        .collect()
}

/// Rotate every head of `x` (`n_heads × head_dim`, row-major) for position `pos`; only the
/// first `2 · freqs.len()` dimensions of each head are rotated.
pub fn rope(x: &mut [f32], head_dim: usize, freqs: &[f32], pos: usize, style: RopeStyle) {
    let mut sin_cos = Vec::new();
    rope_angles(freqs, pos, &mut sin_cos);
    rope_with(x, head_dim, &sin_cos, style);
}

/// The `(sin, cos)` of each pair's angle at `pos`, into `out` (reused): what [`rope_with`]
/// takes, computed once per position rather than once per head.
pub fn rope_angles(freqs: &[f32], pos: usize, out: &mut Vec<(f32, f32)>) {
    out.clear();
    out.extend(freqs.iter().map(|&f| (pos as f32 * f).sin_cos()));
}

/// As [`rope`], with the angles from [`rope_angles`].
pub fn rope_with(x: &mut [f32], head_dim: usize, sin_cos: &[(f32, f32)], style: RopeStyle) {
    let n_rot = 2 * sin_cos.len();
    for head in x.chunks_exact_mut(head_dim) {
        for (i, &(s, c)) in sin_cos.iter().enumerate() {
            let (a, b) = match style {
                RopeStyle::Adjacent => (2 * i, 2 * i + 1),
                RopeStyle::HalfSplit => (i, i + n_rot / 2),
            };
            let (x0, x1) = (head[a], head[b]);
            head[a] = x0 * c - x1 * s;
            head[b] = x0 * s + x1 * c;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rmsnorm_unit_rms() {
        let x = [3.0f32, -4.0, 0.0, 0.0];
        let mut o = [0.0; 4];
        rmsnorm(&x, &[1.0, 2.0, 1.0, 1.0], 0.0, &mut o);
        // rms = sqrt(25/4) = 2.5
        assert!((o[0] - 1.2).abs() < 1e-6 && (o[1] + 3.2).abs() < 1e-6);
    }

    #[test]
    fn softmax_sums_to_one_and_is_stable() {
        let mut x = [1000.0f32, 1000.0, -1000.0];
        softmax(&mut x);
        assert!((x[0] - 0.5).abs() < 1e-6 && x[2] == 0.0);
    }

    #[test]
    fn activations_known_values() {
        assert!((silu(1.0) - 0.731_058_6).abs() < 1e-6);
        assert_eq!(silu(0.0), 0.0);
        assert!((gelu(1.0) - 0.841_192).abs() < 1e-5);
    }

    #[test]
    fn rope_rotates_pairs_by_position() {
        let freqs = rope_freqs(4, 10000.0);
        assert_eq!(freqs, vec![1.0, 0.01]);
        let mut a = vec![1.0f32, 0.0, 1.0, 0.0];
        rope(&mut a, 4, &freqs, 1, RopeStyle::Adjacent);
        assert!((a[0] - 1f32.cos()).abs() < 1e-6 && (a[1] - 1f32.sin()).abs() < 1e-6);
        assert!((a[2] - 0.01f32.cos()).abs() < 1e-6);
        let mut b = vec![1.0f32, 1.0, 0.0, 0.0];
        rope(&mut b, 4, &freqs, 1, RopeStyle::HalfSplit);
        assert!((b[0] - 1f32.cos()).abs() < 1e-6 && (b[2] - 1f32.sin()).abs() < 1e-6);
        assert!((b[3] - 0.01f32.sin()).abs() < 1e-6);
        // norms are preserved
        let mut c: Vec<f32> = (0..8).map(|i| i as f32).collect();
        let n0: f32 = c.iter().map(|v| v * v).sum();
        rope(&mut c, 8, &rope_freqs(8, 100.0), 17, RopeStyle::Adjacent);
        let n1: f32 = c.iter().map(|v| v * v).sum();
        assert!((n0 - n1).abs() < 1e-3);
    }

    #[test]
    fn f16_helpers_match_their_scalar_twins() {
        let g = crate::Kernels::scalar();
        let (dot_g, axpy_g, to_g) = (g.dot_f32_f16, g.axpy_f16, g.to_f16);
        for n in [0usize, 1, 7, 8, 15, 16, 17, 64, 100] {
            let x: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
            let mut h = Vec::new();
            extend_f16(&mut h, &x);
            let mut hg = vec![0u16; n];
            to_g(&x, &mut hg);
            assert_eq!(h, hg, "f32 -> f16 rounding, n={n}");
            let mag: f32 = x.iter().map(|v| v * v).sum::<f32>() + 1.0;
            assert!(
                (dot_f16(&x, &h) - dot_g(&x, &h)).abs() <= 1e-5 * mag,
                "dot n={n}"
            );
            let (mut y1, mut y2) = (vec![1.0f32; n], vec![1.0f32; n]);
            axpy_f16(0.5, &h, &mut y1);
            axpy_g(0.5, &h, &mut y2);
            assert!(
                y1.iter()
                    .zip(&y2)
                    .all(|(a, b)| (a - b).abs() <= 1e-6 * (1.0 + b.abs())),
                "axpy n={n}"
            );
            assert!(x
                .iter()
                .zip(&h)
                .all(|(a, b)| (a - half::f16::from_bits(*b).to_f32()).abs()
                    <= 2e-3 * a.abs().max(1e-3)));
        }
    }

    #[test]
    fn dot_and_axpy() {
        let x: Vec<f32> = (0..37).map(|i| i as f32).collect();
        let y = vec![2.0f32; 37];
        assert_eq!(dot(&x, &y), (0..37).sum::<i32>() as f32 * 2.0);
        let mut z = vec![1.0f32; 37];
        axpy(0.5, &x, &mut z);
        assert_eq!(z[36], 19.0);
    }
}
