//! AVX2 + FMA + F16C kernels: the block dot products of Q2_K, Q3_K and the float rows, the f32/f16
//! helpers, the activation quantizers and the LSTM epilogue, plus the register helpers the
//! tiles share. Each public function is a safe wrapper plugged into a kernel table only by
//! `plug_avx2`, after detection confirmed avx2, fma and f16c; the scalar twins live in
//! `generic::formats` (`*_generic`) and the float order each follows is `crate::contract`'s.
//!
//! Slices are indexed through raw pointers inside the `unsafe` target-feature functions; every
//! wrapper first checks that `w` and `a` hold the `n / block` blocks the loops read.

#![allow(clippy::missing_safety_doc)]

use std::arch::x86_64::*;

use crate::contract::safe_wrapper;
use crate::generic::formats::{QK, QK_K};

/// One f16 at `p` (reads exactly 2 bytes), broadcast before conversion so the result does not
/// depend on any register's old contents.
#[inline(always)]
pub(super) unsafe fn f16_load(p: *const u8) -> f32 {
    // SAFETY: caller guarantees 2 readable bytes at p and F16C enabled.
    unsafe {
        let h = (p as *const u16).read_unaligned();
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_set1_epi16(h as i16)))
    }
}

#[inline(always)]
unsafe fn hsum_ps(v: __m256) -> f32 {
    // SAFETY: pure register arithmetic under the caller's target features.
    unsafe {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps(v, 1);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }
}

/// 32 bytes of nibbles from 16 packed bytes: low nibbles first, then high. The 16 bytes are
/// broadcast to both lanes by a load (`vbroadcasti128`) and the high lane shifted by a
/// per-lane variable shift, which keeps the shuffle port free.
#[inline(always)]
pub(super) unsafe fn nibbles32(p: *const u8) -> __m256i {
    // SAFETY: caller guarantees 16 readable bytes at p.
    unsafe {
        let both = _mm256_broadcastsi128_si256(_mm_loadu_si128(p as *const __m128i));
        let shifted = _mm256_srlv_epi32(both, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4));
        _mm256_and_si256(shifted, _mm256_set1_epi8(0x0F))
    }
}

/// 32 bytes, each 0xFF where the matching bit of `bits` is set.
#[inline(always)]
pub(super) unsafe fn bits32(bits: u32) -> __m256i {
    // SAFETY: pure register arithmetic.
    unsafe {
        let shuf = _mm256_setr_epi64x(
            0x0000_0000_0000_0000,
            0x0101_0101_0101_0101,
            0x0202_0202_0202_0202,
            0x0303_0303_0303_0303,
        );
        let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(bits as i32), shuf);
        let mask = _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe);
        _mm256_cmpeq_epi8(_mm256_or_si256(bytes, mask), _mm256_set1_epi64x(-1))
    }
}

safe_wrapper!(dot_q2_k_q8_k_avx2, q2_k_q8_k, 84, 292, QK_K);
safe_wrapper!(dot_q3_k_q8_k_avx2, q3_k_q8_k, 110, 292, QK_K);
safe_wrapper!(dot_f16_f32_avx2, f16_f32, 2, 4, 1);
safe_wrapper!(dot_bf16_f32_avx2, bf16_f32, 2, 4, 1);
safe_wrapper!(dot_f32_f32_avx2, f32_f32, 4, 4, 1);

/// 16 i16 lanes: the first 8 `s0`, the last 8 `s1` (per-16-element scales of a 32-byte group
/// after maddubs).
#[inline]
#[target_feature(enable = "avx2")]
fn scale_pair(s0: i16, s1: i16) -> __m256i {
    _mm256_setr_epi16(
        s0, s0, s0, s0, s0, s0, s0, s0, s1, s1, s1, s1, s1, s1, s1, s1,
    )
}

/// Bytes of `bits` where `mask` is set → 0xFF, else 0.
#[inline]
#[target_feature(enable = "avx2")]
fn bit_set(bits: __m256i, mask: __m256i) -> __m256i {
    _mm256_cmpeq_epi8(_mm256_and_si256(bits, mask), mask)
}

/// The four 2-bit fields of 32 bytes, as 32-byte vectors of values 0..=3 (shifts 0, 2, 4, 6).
#[inline]
#[target_feature(enable = "avx2")]
fn crumbs(q: __m256i) -> [__m256i; 4] {
    let m3 = _mm256_set1_epi8(3);
    [
        _mm256_and_si256(q, m3),
        _mm256_and_si256(_mm256_srli_epi16(q, 2), m3),
        _mm256_and_si256(_mm256_srli_epi16(q, 4), m3),
        _mm256_and_si256(_mm256_srli_epi16(q, 6), m3),
    ]
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q2_k_q8_k(nb: usize, x: *const u8, y: *const u8) -> f32 {
    // SAFETY: x holds nb blocks of 84 bytes and y nb blocks of 292 (checked by the wrapper).
    unsafe {
        let mut acc = _mm256_setzero_ps();
        let mut acc_m = 0.0f32;
        for i in 0..nb {
            let xb = x.add(i * 84);
            let yb = y.add(i * 292);
            let dy = (yb as *const f32).read_unaligned();
            let d = dy * f16_load(xb.add(80));
            let dmin = dy * f16_load(xb.add(82));
            let bs = yb.add(260) as *const i16;
            let mut summ = 0i32;
            for j in 0..16 {
                summ += i32::from(bs.add(j).read_unaligned()) * i32::from(*xb.add(j) >> 4);
            }
            let mut sumi = _mm256_setzero_si256();
            for n in 0..2 {
                let q = _mm256_loadu_si256(xb.add(16 + 32 * n) as *const __m256i);
                for (k, v) in crumbs(q).iter().enumerate() {
                    let g = 4 * n + k;
                    let y8 = _mm256_loadu_si256(yb.add(4 + 32 * g) as *const __m256i);
                    let sc = scale_pair(
                        i16::from(*xb.add(2 * g) & 0xF),
                        i16::from(*xb.add(2 * g + 1) & 0xF),
                    );
                    let p = _mm256_maddubs_epi16(*v, y8);
                    sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, sc));
                }
            }
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
            acc_m += dmin * summ as f32;
        }
        hsum_ps(acc) - acc_m
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q3_k_q8_k(nb: usize, x: *const u8, y: *const u8) -> f32 {
    // SAFETY: x holds nb blocks of 110 bytes and y nb blocks of 292 (checked by the wrapper).
    unsafe {
        let mut acc = _mm256_setzero_ps();
        let four = _mm256_set1_epi8(4);
        for i in 0..nb {
            let xb = x.add(i * 110);
            let yb = y.add(i * 292);
            let d = (yb as *const f32).read_unaligned() * f16_load(xb.add(108));
            let scales =
                crate::generic::formats::q3_k_scales(std::slice::from_raw_parts(xb.add(96), 12));
            let hm = _mm256_loadu_si256(xb as *const __m256i);
            let mut sumi = _mm256_setzero_si256();
            for n in 0..2 {
                let q = _mm256_loadu_si256(xb.add(32 + 32 * n) as *const __m256i);
                for (k, v) in crumbs(q).iter().enumerate() {
                    let g = 4 * n + k;
                    let y8 = _mm256_loadu_si256(yb.add(4 + 32 * g) as *const __m256i);
                    // value = v - 4 where the high-mask bit g is clear:
                    // (v - sub)·y = v·y - sub·y, both through maddubs (v, sub unsigned).
                    let sub =
                        _mm256_andnot_si256(bit_set(hm, _mm256_set1_epi8((1u8 << g) as i8)), four);
                    let p = _mm256_sub_epi16(
                        _mm256_maddubs_epi16(*v, y8),
                        _mm256_maddubs_epi16(sub, y8),
                    );
                    let sc = scale_pair(i16::from(scales[2 * g]), i16::from(scales[2 * g + 1]));
                    sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, sc));
                }
            }
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
        }
        hsum_ps(acc)
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn bf16_f32(n: usize, x: *const u8, y: *const u8) -> f32 {
    // SAFETY: x holds n bf16 values and y n f32 values (checked by the wrapper).
    unsafe {
        let widen = |p: *const u8| {
            _mm256_castsi256_ps(_mm256_slli_epi32(
                _mm256_cvtepu16_epi32(_mm_loadu_si128(p as *const __m128i)),
                16,
            ))
        };
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut i = 0;
        while i + 16 <= n {
            let a0 = widen(x.add(2 * i));
            let a1 = widen(x.add(2 * i + 16));
            acc0 = _mm256_fmadd_ps(a0, _mm256_loadu_ps(y.add(4 * i) as *const f32), acc0);
            acc1 = _mm256_fmadd_ps(a1, _mm256_loadu_ps(y.add(4 * i + 32) as *const f32), acc1);
            i += 16;
        }
        let mut s = hsum_ps(_mm256_add_ps(acc0, acc1));
        while i < n {
            let b = u16::from_le_bytes([*x.add(2 * i), *x.add(2 * i + 1)]);
            s += f32::from_bits(u32::from(b) << 16) * (y.add(4 * i) as *const f32).read_unaligned();
            i += 1;
        }
        s
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn f16_f32(n: usize, x: *const u8, y: *const u8) -> f32 {
    // SAFETY: x holds n f16 values and y n f32 values (checked by the wrapper).
    unsafe {
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut i = 0;
        while i + 16 <= n {
            let a0 = _mm256_cvtph_ps(_mm_loadu_si128(x.add(2 * i) as *const __m128i));
            let a1 = _mm256_cvtph_ps(_mm_loadu_si128(x.add(2 * i + 16) as *const __m128i));
            acc0 = _mm256_fmadd_ps(a0, _mm256_loadu_ps(y.add(4 * i) as *const f32), acc0);
            acc1 = _mm256_fmadd_ps(a1, _mm256_loadu_ps(y.add(4 * i + 32) as *const f32), acc1);
            i += 16;
        }
        let mut s = hsum_ps(_mm256_add_ps(acc0, acc1));
        while i < n {
            s += f16_load(x.add(2 * i)) * (y.add(4 * i) as *const f32).read_unaligned();
            i += 1;
        }
        s
    }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn f32_f32(n: usize, x: *const u8, y: *const u8) -> f32 {
    // SAFETY: x and y hold n f32 values each (checked by the wrapper).
    unsafe { dot_f32_ptr(n, x as *const f32, y as *const f32) }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn dot_f32_ptr(n: usize, x: *const f32, y: *const f32) -> f32 {
    // SAFETY: x and y point to n f32 values each (guaranteed by every caller).
    unsafe {
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for (k, a) in acc.iter_mut().enumerate() {
                *a = _mm256_fmadd_ps(
                    _mm256_loadu_ps(x.add(i + 8 * k)),
                    _mm256_loadu_ps(y.add(i + 8 * k)),
                    *a,
                );
            }
            i += 32;
        }
        while i + 8 <= n {
            acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(x.add(i)), _mm256_loadu_ps(y.add(i)), acc[0]);
            i += 8;
        }
        let mut s = hsum_ps(_mm256_add_ps(
            _mm256_add_ps(acc[0], acc[1]),
            _mm256_add_ps(acc[2], acc[3]),
        ));
        while i < n {
            s += *x.add(i) * *y.add(i);
            i += 1;
        }
        s
    }
}

/// f32 dot of two equal-length slices.
pub(crate) fn dot_f32(x: &[f32], y: &[f32]) -> f32 {
    let n = x.len().min(y.len());
    // SAFETY: only installed when `detected()`; both pointers cover n values.
    unsafe { dot_f32_ptr(n, x.as_ptr(), y.as_ptr()) }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn axpy_ptr(n: usize, a: f32, x: *const f32, y: *mut f32) {
    // SAFETY: x and y point to n f32 values each, y writable (guaranteed by the caller).
    unsafe {
        let va = _mm256_set1_ps(a);
        let mut i = 0;
        while i + 8 <= n {
            let r = _mm256_fmadd_ps(va, _mm256_loadu_ps(x.add(i)), _mm256_loadu_ps(y.add(i)));
            _mm256_storeu_ps(y.add(i), r);
            i += 8;
        }
        while i < n {
            *y.add(i) += a * *x.add(i);
            i += 1;
        }
    }
}

/// e^x on eight lanes: the same range reduction and polynomial as `ops::fast_exp`, with FMA.
#[inline(always)]
unsafe fn exp8(x: __m256) -> __m256 {
    // SAFETY: pure register arithmetic under the caller's target features.
    unsafe {
        let x = _mm256_min_ps(
            _mm256_max_ps(x, _mm256_set1_ps(-87.3)),
            _mm256_set1_ps(88.3),
        );
        let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E)),
        );
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_145_75), x);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428_606_8e-6), r);
        let mut p = _mm256_set1_ps(1.0 / 5040.0);
        for c in [
            1.0 / 720.0,
            1.0 / 120.0,
            1.0 / 24.0,
            1.0 / 6.0,
            0.5,
            1.0,
            1.0,
        ] {
            p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
        }
        let e = _mm256_slli_epi32::<23>(_mm256_add_epi32(
            _mm256_cvtps_epi32(n),
            _mm256_set1_epi32(127),
        ));
        _mm256_mul_ps(p, _mm256_castsi256_ps(e))
    }
}

/// σ(a)·tanh(b) with one division: (e^2b − 1) / ((1 + e^−a)(e^2b + 1)). `b` is clamped to
/// ±9 (tanh is 1 within 3e-8 there) and `a` to ±30 (σ within 1e-13 of 0 or 1), so the
/// denominator stays finite.
#[inline(always)]
unsafe fn sigmoid_tanh8(a: __m256, b: __m256) -> __m256 {
    // SAFETY: pure register arithmetic under the caller's target features.
    unsafe {
        let clamp = |v: __m256, m: f32| {
            _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(-m)), _mm256_set1_ps(m))
        };
        let one = _mm256_set1_ps(1.0);
        let ea = exp8(_mm256_sub_ps(_mm256_setzero_ps(), clamp(a, 30.0)));
        let eb = exp8(_mm256_mul_ps(clamp(b, 9.0), _mm256_set1_ps(2.0)));
        let den = _mm256_mul_ps(_mm256_add_ps(one, ea), _mm256_add_ps(eb, one));
        _mm256_div_ps(_mm256_sub_ps(eb, one), den)
    }
}

/// The LSTM gate epilogue eight hidden units at a time (three divisions per unit instead of
/// five); the tail (H not a multiple of 8) takes the portable formulas.
#[target_feature(enable = "avx2,fma")]
fn lstm_cell_avx2(z: &[f32], xp: &[f32], bias: &[f32], c: &mut [f32], h: &mut [f32]) {
    let n = c.len();
    assert!(h.len() == n && z.len() == 4 * n && xp.len() == 4 * n && bias.len() == 4 * n);
    let body = n - n % 8;
    // SAFETY: every load and store below is at j + 8 ≤ body ≤ n within a gate block of n
    // values (k·n + j + 8 ≤ 4n), the lengths asserted above.
    unsafe {
        let pre = |k: usize, j: usize| {
            let o = k * n + j;
            _mm256_add_ps(
                _mm256_add_ps(
                    _mm256_loadu_ps(z.as_ptr().add(o)),
                    _mm256_loadu_ps(xp.as_ptr().add(o)),
                ),
                _mm256_loadu_ps(bias.as_ptr().add(o)),
            )
        };
        let one = _mm256_set1_ps(1.0);
        let mut j = 0;
        while j < body {
            let (gi, gf, gg, go) = (pre(0, j), pre(1, j), pre(2, j), pre(3, j));
            let ef = exp8(_mm256_sub_ps(_mm256_setzero_ps(), gf));
            let f = _mm256_div_ps(one, _mm256_add_ps(one, ef));
            let cj = _mm256_fmadd_ps(f, _mm256_loadu_ps(c.as_ptr().add(j)), sigmoid_tanh8(gi, gg));
            _mm256_storeu_ps(c.as_mut_ptr().add(j), cj);
            _mm256_storeu_ps(h.as_mut_ptr().add(j), sigmoid_tanh8(go, cj));
            j += 8;
        }
    }
    use crate::ops::{fast_sigmoid, fast_tanh};
    for j in body..n {
        let g = |k: usize| z[k * n + j] + xp[k * n + j] + bias[k * n + j];
        let cj = fast_sigmoid(g(1)) * c[j] + fast_sigmoid(g(0)) * fast_tanh(g(2));
        c[j] = cj;
        h[j] = fast_sigmoid(g(3)) * fast_tanh(cj);
    }
}

/// The LSTM gate epilogue vectorized with AVX2/FMA.
pub(crate) fn lstm_cell(z: &[f32], xp: &[f32], bias: &[f32], c: &mut [f32], h: &mut [f32]) {
    // SAFETY: only installed when `detected()` (AVX2 and FMA present).
    unsafe { lstm_cell_avx2(z, xp, bias, c, h) }
}

/// Quantize the 32 values at `x` to i8 at `q` the way the scalar reference does (scale
/// `amax / 127`, `round` half away from zero); returns the scale and the sum of the quants.
#[target_feature(enable = "avx2,fma")]
unsafe fn q8_block(x: *const f32, q: *mut u8) -> (f32, i32) {
    // SAFETY: the caller guarantees 32 readable f32 at x and 32 writable bytes at q.
    unsafe {
        let sign = _mm256_set1_ps(-0.0);
        let v = [
            _mm256_loadu_ps(x),
            _mm256_loadu_ps(x.add(8)),
            _mm256_loadu_ps(x.add(16)),
            _mm256_loadu_ps(x.add(24)),
        ];
        let m = _mm256_max_ps(
            _mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1])),
            _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3])),
        );
        let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        let m = _mm_max_ss(m, _mm_movehdup_ps(m));
        let d = _mm_cvtss_f32(m) / 127.0;
        let id = _mm256_set1_ps(if d != 0.0 { 1.0 / d } else { 0.0 });
        let (half, one) = (_mm256_set1_ps(0.5), _mm256_set1_ps(1.0));
        let round = |v: __m256| {
            let p = _mm256_mul_ps(v, id);
            let t = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(p);
            // |p - t| is exact; add ±1 where it is at least one half (f32::round's rule).
            let up = _mm256_cmp_ps::<_CMP_GE_OQ>(_mm256_andnot_ps(sign, _mm256_sub_ps(p, t)), half);
            let step = _mm256_or_ps(_mm256_and_ps(p, sign), one);
            _mm256_cvtps_epi32(_mm256_add_ps(t, _mm256_and_ps(up, step)))
        };
        let i = [round(v[0]), round(v[1]), round(v[2]), round(v[3])];
        let sum = _mm256_add_epi32(_mm256_add_epi32(i[0], i[1]), _mm256_add_epi32(i[2], i[3]));
        let s = _mm_add_epi32(
            _mm256_castsi256_si128(sum),
            _mm256_extracti128_si256::<1>(sum),
        );
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
        // Values are within ±127: the saturating packs are exact; the permute undoes their
        // lane interleaving.
        let p = _mm256_packs_epi16(
            _mm256_packs_epi32(i[0], i[1]),
            _mm256_packs_epi32(i[2], i[3]),
        );
        let p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256(q as *mut __m256i, p);
        (d, _mm_cvtsi128_si32(s))
    }
}

/// f32 → Q8_0 blocks (AVX2), bit-identical to `formats::q8_0_from_f32`.
pub(crate) fn q8_0_from_f32(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(34)) {
        // SAFETY: only installed when `detected()`; x holds 32 values, b 34 bytes.
        let (d, _) = unsafe { q8_block(x.as_ptr(), b.as_mut_ptr().add(2)) };
        crate::generic::formats::put_f16(b, 0, d);
    }
}

/// f32 → Q8_1 blocks (AVX2), bit-identical to `formats::q8_1_from_f32`.
pub(crate) fn q8_1_from_f32(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(36)) {
        // SAFETY: only installed when `detected()`; x holds 32 values, b 36 bytes.
        let (d, sum) = unsafe { q8_block(x.as_ptr(), b.as_mut_ptr().add(4)) };
        crate::generic::formats::put_f16(b, 0, d);
        crate::generic::formats::put_f16(b, 2, sum as f32 * d);
    }
}

/// y += a·x.
pub(crate) fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    let n = x.len().min(y.len());
    // SAFETY: only installed when `detected()`; both pointers cover n values.
    unsafe { axpy_ptr(n, a, x.as_ptr(), y.as_mut_ptr()) }
}

// ---------------------------------------------------------------------------------------------
// f16 helpers for an f16 KV cache: q·k with k in f16, y += a·v with v in f16, f32 → f16.

/// Σ x·y with y in f16.
pub(crate) fn dot_f32_f16(x: &[f32], y: &[u16]) -> f32 {
    let n = x.len().min(y.len());
    // SAFETY: only installed when `detected()`; y covers n f16 values (2n bytes) and x n f32
    // values (4n bytes), as the F16·F32 weight kernel reads them.
    unsafe { f16_f32(n, y.as_ptr() as *const u8, x.as_ptr() as *const u8) }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn axpy_f16_ptr(n: usize, a: f32, x: *const u16, y: *mut f32) {
    // SAFETY: x and y point to n values each, y writable (guaranteed by the caller).
    unsafe {
        let va = _mm256_set1_ps(a);
        let mut i = 0;
        while i + 8 <= n {
            let v = _mm256_cvtph_ps(_mm_loadu_si128(x.add(i) as *const __m128i));
            _mm256_storeu_ps(y.add(i), _mm256_fmadd_ps(va, v, _mm256_loadu_ps(y.add(i))));
            i += 8;
        }
        while i < n {
            *y.add(i) += a * f16_load(x.add(i) as *const u8);
            i += 1;
        }
    }
}

/// y += a·x with x in f16.
pub(crate) fn axpy_f16(a: f32, x: &[u16], y: &mut [f32]) {
    let n = x.len().min(y.len());
    // SAFETY: only installed when `detected()`; both pointers cover n values.
    unsafe { axpy_f16_ptr(n, a, x.as_ptr(), y.as_mut_ptr()) }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn to_f16_ptr(n: usize, x: *const f32, y: *mut u16) {
    // SAFETY: x and y point to n values each, y writable (guaranteed by the caller).
    unsafe {
        let mut i = 0;
        while i + 8 <= n {
            let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm256_loadu_ps(x.add(i)));
            _mm_storeu_si128(y.add(i) as *mut __m128i, h);
            i += 8;
        }
        while i < n {
            let h = _mm_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm_set_ss(*x.add(i)));
            *y.add(i) = _mm_extract_epi16::<0>(h) as u16;
            i += 1;
        }
    }
}

/// f32 → f16 (round to nearest even), element-wise.
pub(crate) fn to_f16(x: &[f32], y: &mut [u16]) {
    let n = x.len().min(y.len());
    // SAFETY: only installed when `detected()`; both pointers cover n values.
    unsafe { to_f16_ptr(n, x.as_ptr(), y.as_mut_ptr()) }
}
