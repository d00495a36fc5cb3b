//! AVX2 + FMA + F16C dot products. Each public function here is a safe wrapper installed in the
//! dispatch table only after `is_x86_feature_detected!` confirmed avx2, fma and f16c (see
//! `dispatch.rs`); callers never reach them otherwise. The scalar twins live in `formats.rs`
//! under the same name with `_generic`, and tests check that both agree.
//!
//! Slices are indexed through raw pointers inside the `unsafe` target-feature functions; every
//! wrapper first checks that `w` and `a` hold the `n / block` blocks the loops read.

#![allow(clippy::missing_safety_doc)]

use std::arch::x86_64::*;

use crate::formats::{QK, QK_K};

/// Whether this CPU has everything the kernels in this module use.
pub(crate) fn detected() -> bool {
    is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
}

/// Two f16 values at `p` (4 bytes) as f32 in lanes 0 and 1. A `movd` load: it zero-extends the
/// register, so the conversion carries no false dependency on an accumulator.
#[inline(always)]
unsafe fn f16x2(p: *const u8) -> __m128 {
    // SAFETY: caller guarantees 4 readable bytes at p and F16C enabled.
    unsafe { _mm_cvtph_ps(_mm_loadu_si32(p)) }
}

/// One f16 at `p` (reads exactly 2 bytes), broadcast before conversion so the result does not
/// depend on any register's old contents.
#[inline(always)]
unsafe fn f16_load(p: *const u8) -> f32 {
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
unsafe fn nibbles32(p: *const u8) -> __m256i {
    // SAFETY: caller guarantees 16 readable bytes at p.
    unsafe {
        let both = _mm256_broadcastsi128_si256(_mm_loadu_si128(p as *const __m128i));
        let shifted = _mm256_srlv_epi32(both, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4));
        _mm256_and_si256(shifted, _mm256_set1_epi8(0x0F))
    }
}

/// 32 bytes, each 0xFF where the matching bit of `bits` is set.
#[inline(always)]
unsafe fn bits32(bits: u32) -> __m256i {
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

/// Σ x·y over 32 signed bytes each, as 8 f32 lanes.
#[inline(always)]
unsafe fn mul_sum_i8(x: __m256i, y: __m256i) -> __m256 {
    // SAFETY: pure register arithmetic.
    unsafe {
        let ax = _mm256_sign_epi8(x, x);
        let sy = _mm256_sign_epi8(y, x);
        let dot = _mm256_maddubs_epi16(ax, sy);
        _mm256_cvtepi32_ps(_mm256_madd_epi16(dot, _mm256_set1_epi16(1)))
    }
}

/// Σ x·y over 32 unsigned (x) and signed (y) bytes, as 8 f32 lanes.
#[inline(always)]
unsafe fn mul_sum_u8_i8(x: __m256i, y: __m256i) -> __m256 {
    // SAFETY: pure register arithmetic.
    unsafe {
        let dot = _mm256_maddubs_epi16(x, y);
        _mm256_cvtepi32_ps(_mm256_madd_epi16(dot, _mm256_set1_epi16(1)))
    }
}

fn check(n: usize, w: &[u8], wsize: usize, a: &[u8], asize: usize, block: usize) -> usize {
    let nb = n / block;
    assert!(
        w.len() >= nb * wsize && a.len() >= nb * asize,
        "dot product operands shorter than {n} elements"
    );
    nb
}

macro_rules! safe_wrapper {
    ($name:ident, $inner:ident, $wsize:expr, $asize:expr, $block:expr) => {
        pub(crate) fn $name(n: usize, w: &[u8], a: &[u8]) -> f32 {
            let nb = check(n, w, $wsize, a, $asize, $block);
            // SAFETY: installed in the dispatch table only when `detected()` is true, and the
            // operands hold `nb` whole blocks (checked just above).
            unsafe { $inner(nb, w.as_ptr(), a.as_ptr()) }
        }
    };
}

safe_wrapper!(dot_q4_0_q8_0_avx2, q4_0_q8_0, 18, 34, QK);
safe_wrapper!(dot_q4_1_q8_1_avx2, q4_1_q8_1, 20, 36, QK);
safe_wrapper!(dot_q5_0_q8_0_avx2, q5_0_q8_0, 22, 34, QK);
safe_wrapper!(dot_q5_1_q8_1_avx2, q5_1_q8_1, 24, 36, QK);
safe_wrapper!(dot_q8_0_q8_0_avx2, q8_0_q8_0, 34, 34, QK);
safe_wrapper!(dot_q4_k_q8_k_avx2, q4_k_q8_k, 144, 292, QK_K);
safe_wrapper!(dot_q6_k_q8_k_avx2, q6_k_q8_k, 210, 292, QK_K);
safe_wrapper!(dot_q2_k_q8_k_avx2, q2_k_q8_k, 84, 292, QK_K);
safe_wrapper!(dot_q3_k_q8_k_avx2, q3_k_q8_k, 110, 292, QK_K);
safe_wrapper!(dot_q5_k_q8_k_avx2, q5_k_q8_k, 176, 292, QK_K);
safe_wrapper!(dot_f16_f32_avx2, f16_f32, 2, 4, 1);
safe_wrapper!(dot_bf16_f32_avx2, bf16_f32, 2, 4, 1);
safe_wrapper!(dot_f32_f32_avx2, f32_f32, 4, 4, 1);

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q5_0_q8_0(nb: usize, x: *const u8, y: *const u8) -> f32 {
    // SAFETY: x holds nb blocks of 22 bytes and y nb blocks of 34 (checked by the wrapper).
    unsafe {
        let mut acc = _mm256_setzero_ps();
        for i in 0..nb {
            let xb = x.add(i * 22);
            let yb = y.add(i * 34);
            let d = _mm256_broadcastss_ps(_mm_mul_ss(f16x2(xb), f16x2(yb)));
            let qh = (xb.add(2) as *const u32).read_unaligned();
            let hi = _mm256_andnot_si256(bits32(qh), _mm256_set1_epi8(0xF0u8 as i8));
            let qx = _mm256_or_si256(nibbles32(xb.add(6)), hi);
            let qy = _mm256_loadu_si256(yb.add(2) as *const __m256i);
            acc = _mm256_fmadd_ps(d, mul_sum_i8(qx, qy), acc);
        }
        hsum_ps(acc)
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q5_1_q8_1(nb: usize, x: *const u8, y: *const u8) -> f32 {
    // SAFETY: x holds nb blocks of 24 bytes and y nb blocks of 36 (checked by the wrapper).
    unsafe {
        let mut acc = _mm256_setzero_ps();
        let mut summs = 0.0f32;
        for i in 0..nb {
            let xb = x.add(i * 24);
            let yb = y.add(i * 36);
            let p = _mm_mul_ps(f16x2(xb), f16x2(yb));
            summs += _mm_cvtss_f32(_mm_movehdup_ps(p));
            let d = _mm256_broadcastss_ps(p);
            let qh = (xb.add(4) as *const u32).read_unaligned();
            let hi = _mm256_and_si256(bits32(qh), _mm256_set1_epi8(0x10));
            let qx = _mm256_or_si256(nibbles32(xb.add(8)), hi);
            let qy = _mm256_loadu_si256(yb.add(4) as *const __m256i);
            acc = _mm256_fmadd_ps(d, mul_sum_u8_i8(qx, qy), acc);
        }
        hsum_ps(acc) + summs
    }
}

/// Group `j` (64 values) of a Q4_K/Q5_K block against Q8_K: `lo` and `hi` are its two halves
/// as unsigned bytes; returns their dot with the activations, each half times its 6-bit scale,
/// and the min correction `m·Σ activations` of both halves (from the Q8_K block sums).
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn k4_group(
    j: usize,
    sc: &[u8],
    bs: *const i16,
    q8: *const u8,
    lo: __m256i,
    hi: __m256i,
) -> (__m256i, i32) {
    // SAFETY: bs points to the 16 block sums and q8 to the 256 activations of one Q8_K block
    // (guaranteed by the calling kernel); j < 4.
    unsafe {
        let (s1, m1) = crate::formats::scale_min_k4(2 * j, sc);
        let (s2, m2) = crate::formats::scale_min_k4(2 * j + 1, sc);
        let bsum = |k: usize| i32::from(bs.add(k).read_unaligned());
        let summ = i32::from(m1) * (bsum(4 * j) + bsum(4 * j + 1))
            + i32::from(m2) * (bsum(4 * j + 2) + bsum(4 * j + 3));
        let y1 = _mm256_loadu_si256(q8.add(64 * j) as *const __m256i);
        let y2 = _mm256_loadu_si256(q8.add(64 * j + 32) as *const __m256i);
        let p1 = _mm256_madd_epi16(
            _mm256_maddubs_epi16(lo, y1),
            _mm256_set1_epi16(i16::from(s1)),
        );
        let p2 = _mm256_madd_epi16(
            _mm256_maddubs_epi16(hi, y2),
            _mm256_set1_epi16(i16::from(s2)),
        );
        (_mm256_add_epi32(p1, p2), summ)
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_k_q8_k(nb: usize, x: *const u8, y: *const u8) -> f32 {
    // SAFETY: x holds nb blocks of 144 bytes and y nb blocks of 292 (checked by the wrapper).
    unsafe {
        let mut acc = _mm256_setzero_ps();
        let mut acc_m = 0.0f32;
        let m4 = _mm256_set1_epi8(0x0F);
        for i in 0..nb {
            let xb = x.add(i * 144);
            let yb = y.add(i * 292);
            let dy = (yb as *const f32).read_unaligned();
            let d = dy * f16_load(xb);
            let dmin = dy * f16_load(xb.add(2));
            let sc = std::slice::from_raw_parts(xb.add(4), 12);
            let q8 = yb.add(4);
            let bs = yb.add(260) as *const i16;
            let mut sumi = _mm256_setzero_si256();
            let mut summ = 0i32;
            for j in 0..4 {
                let q4 = _mm256_loadu_si256(xb.add(16 + 32 * j) as *const __m256i);
                let lo = _mm256_and_si256(q4, m4);
                let hi = _mm256_and_si256(_mm256_srli_epi16(q4, 4), m4);
                let (p, m) = k4_group(j, sc, bs, q8, lo, hi);
                sumi = _mm256_add_epi32(sumi, p);
                summ += m;
            }
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
            acc_m += dmin * summ as f32;
        }
        hsum_ps(acc) - acc_m
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q6_k_q8_k(nb: usize, x: *const u8, y: *const u8) -> f32 {
    // SAFETY: x holds nb blocks of 210 bytes and y nb blocks of 292 (checked by the wrapper).
    unsafe {
        let mut acc = _mm256_setzero_ps();
        let m4 = _mm256_set1_epi8(0x0F);
        let m2 = _mm256_set1_epi8(0x03);
        let m32 = _mm256_set1_epi8(32);
        for i in 0..nb {
            let xb = x.add(i * 210);
            let yb = y.add(i * 292);
            let d = (yb as *const f32).read_unaligned() * f16_load(xb.add(208));
            let mut sumi = _mm256_setzero_si256();
            for n in 0..2 {
                let ql = xb.add(64 * n);
                let qh = _mm256_loadu_si256(xb.add(128 + 32 * n) as *const __m256i);
                let sc = xb.add(192 + 8 * n) as *const i8;
                let q8 = yb.add(4 + 128 * n);
                let ql0 = _mm256_loadu_si256(ql as *const __m256i);
                let ql1 = _mm256_loadu_si256(ql.add(32) as *const __m256i);
                // the four 32-element groups: (low nibble of ql0, qh bits 0-1), (low of ql1,
                // bits 2-3), (high of ql0, bits 4-5), (high of ql1, bits 6-7)
                let groups = [
                    _mm256_or_si256(
                        _mm256_and_si256(ql0, m4),
                        _mm256_slli_epi16(_mm256_and_si256(qh, m2), 4),
                    ),
                    _mm256_or_si256(
                        _mm256_and_si256(ql1, m4),
                        _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m2), 4),
                    ),
                    _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                        _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m2), 4),
                    ),
                    _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                        _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m2), 4),
                    ),
                ];
                for (g, q) in groups.iter().enumerate() {
                    let y8 = _mm256_loadu_si256(q8.add(32 * g) as *const __m256i);
                    // (q - 32)·y = q·y - 32·y, both via maddubs with unsigned q and 32.
                    let p = _mm256_sub_epi16(
                        _mm256_maddubs_epi16(*q, y8),
                        _mm256_maddubs_epi16(m32, y8),
                    );
                    // the 16 lanes of p: first 8 belong to scale 2g, last 8 to scale 2g+1
                    let s0 = i16::from(*sc.add(2 * g));
                    let s1 = i16::from(*sc.add(2 * g + 1));
                    let scales = _mm256_setr_epi16(
                        s0, s0, s0, s0, s0, s0, s0, s0, s1, s1, s1, s1, s1, s1, s1, s1,
                    );
                    sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, scales));
                }
            }
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
        }
        hsum_ps(acc)
    }
}

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
            let scales = crate::formats::q3_k_scales(std::slice::from_raw_parts(xb.add(96), 12));
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
unsafe fn q5_k_q8_k(nb: usize, x: *const u8, y: *const u8) -> f32 {
    // SAFETY: x holds nb blocks of 176 bytes and y nb blocks of 292 (checked by the wrapper).
    unsafe {
        let mut acc = _mm256_setzero_ps();
        let mut acc_m = 0.0f32;
        let m4 = _mm256_set1_epi8(0x0F);
        let sixteen = _mm256_set1_epi8(16);
        for i in 0..nb {
            let xb = x.add(i * 176);
            let yb = y.add(i * 292);
            let dy = (yb as *const f32).read_unaligned();
            let d = dy * f16_load(xb);
            let dmin = dy * f16_load(xb.add(2));
            let sc = std::slice::from_raw_parts(xb.add(4), 12);
            let qh = _mm256_loadu_si256(xb.add(16) as *const __m256i);
            let q8 = yb.add(4);
            let bs = yb.add(260) as *const i16;
            let mut sumi = _mm256_setzero_si256();
            let mut summ = 0i32;
            for j in 0..4 {
                let q4 = _mm256_loadu_si256(xb.add(48 + 32 * j) as *const __m256i);
                let h1 = _mm256_and_si256(
                    bit_set(qh, _mm256_set1_epi8((1u8 << (2 * j)) as i8)),
                    sixteen,
                );
                let h2 = _mm256_and_si256(
                    bit_set(qh, _mm256_set1_epi8((2u8 << (2 * j)) as i8)),
                    sixteen,
                );
                let lo = _mm256_or_si256(_mm256_and_si256(q4, m4), h1);
                let hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q4, 4), m4), h2);
                let (p, m) = k4_group(j, sc, bs, q8, lo, hi);
                sumi = _mm256_add_epi32(sumi, p);
                summ += m;
            }
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
            acc_m += dmin * summ as f32;
        }
        hsum_ps(acc) - acc_m
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
        crate::formats::put_f16(b, 0, d);
    }
}

/// f32 → Q8_1 blocks (AVX2), bit-identical to `formats::q8_1_from_f32`.
pub(crate) fn q8_1_from_f32(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(36)) {
        // SAFETY: only installed when `detected()`; x holds 32 values, b 36 bytes.
        let (d, sum) = unsafe { q8_block(x.as_ptr(), b.as_mut_ptr().add(4)) };
        crate::formats::put_f16(b, 0, d);
        crate::formats::put_f16(b, 2, sum as f32 * d);
    }
}

/// y += a·x.
pub(crate) fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    let n = x.len().min(y.len());
    // SAFETY: only installed when `detected()`; both pointers cover n values.
    unsafe { axpy_ptr(n, a, x.as_ptr(), y.as_mut_ptr()) }
}

// ---------------------------------------------------------------------------------------------
// Tile kernels: out[r · row_stride + t · tok_stride] = W_r · A_t for `rows` weight rows and `n_acts`
// activation rows, inside one target-feature function (no call per row), each unpacked weight
// block reused for four activation rows at a time.

#[allow(clippy::too_many_arguments)]
fn check_tile(
    nb: usize,
    w: &[u8],
    wsize: usize,
    rows: usize,
    a: &[u8],
    asize: usize,
    n_acts: usize,
    out: &[f32],
    row_stride: usize,
    tok_stride: usize,
) {
    let last = |n: usize, stride: usize| n.saturating_sub(1).checked_mul(stride);
    let need = match (last(rows, row_stride), last(n_acts, tok_stride)) {
        _ if rows == 0 || n_acts == 0 => Some(0),
        (Some(r), Some(t)) => r.checked_add(t).and_then(|v| v.checked_add(1)),
        _ => None,
    };
    assert!(
        w.len() >= rows * nb * wsize
            && a.len() >= n_acts * nb * asize
            && need.is_some_and(|need| out.len() >= need),
        "tile operands too short"
    );
}

/// How far ahead of the current weight block to prefetch.
const PREFETCH_BYTES: usize = 2048;

#[inline(always)]
fn prefetch_ahead(p: *const u8) {
    // SAFETY: a prefetch is a hint: it never faults, whatever the address, and reads nothing
    // into the program's state. `wrapping_add` keeps the pointer arithmetic defined.
    unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(PREFETCH_BYTES) as *const i8) }
}

/// How far ahead the single-vector kernels prefetch their weight rows: a decode step streams
/// ~100 MB with one row stream per thread, and 4 KiB ahead beat 2 KiB in paired decode runs
/// (1 thread 7 of 9, medians +6 %; 2 threads +6 %).
const ROW_PREFETCH_BYTES: usize = 4096;

/// Prefetch a whole weight row ahead before the single-vector kernel walks it: the hardware
/// prefetcher stops at every 4 KiB page of the mapped file.
#[inline(always)]
fn prefetch_row(row: *const u8, bytes: usize) {
    let mut off = 0;
    while off < bytes {
        let p = row.wrapping_add(off + ROW_PREFETCH_BYTES);
        // SAFETY: a prefetch is a hint: it never faults, whatever the address, and reads
        // nothing into the program's state. `wrapping_add` keeps the arithmetic defined.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p as *const i8) }
        off += 64;
    }
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

// ---------------------------------------------------------------------------------------------
// Integer-sum kernels for weights against Q8_0 activations: each block's 32 products are summed
// exactly in i32 to one value S before any float work, then acc[i mod 4] += (d_w · d_a) · S.
// One horizontal reduction serves four blocks (single vector) or four activation rows (tile),
// so a block costs one float lane instead of an 8-lane convert and FMA. The single-vector and
// tile kernels perform the same float operations in the same order: a token's result is
// bit-identical in a batch and alone.

/// [Σa, Σb, Σc, Σd] over the eight i32 lanes of each (exact).
#[inline(always)]
unsafe fn hsum4_epi32(a: __m256i, b: __m256i, c: __m256i, d: __m256i) -> __m128i {
    // SAFETY: pure register arithmetic under the caller's target features.
    unsafe {
        let abcd = _mm256_hadd_epi32(_mm256_hadd_epi32(a, b), _mm256_hadd_epi32(c, d));
        _mm_add_epi32(
            _mm256_castsi256_si128(abcd),
            _mm256_extracti128_si256::<1>(abcd),
        )
    }
}

/// The f16 values at `p + k·stride` for `k < m` (zero beyond), as four f32.
#[inline(always)]
unsafe fn f16x4_strided(p: *const u8, stride: usize, m: usize) -> __m128 {
    // SAFETY: the caller guarantees 2 readable bytes at p + k·stride for every k < m.
    unsafe {
        let h = |k: usize| {
            if k < m {
                (p.add(k * stride) as *const u16).read_unaligned() as i16
            } else {
                0
            }
        };
        _mm_cvtph_ps(_mm_setr_epi16(h(0), h(1), h(2), h(3), 0, 0, 0, 0))
    }
}

/// Eight i32 partial sums of a weight block's 32 signed quants (`ax` = |q|, `qx` = q) times
/// the Q8_0 activation block at `y`.
#[inline(always)]
unsafe fn isum_q8(ax: __m256i, qx: __m256i, y: *const u8) -> __m256i {
    // SAFETY: the caller guarantees a 34-byte block at y.
    unsafe {
        let sy = _mm256_sign_epi8(_mm256_loadu_si256(y.add(2) as *const __m256i), qx);
        _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), _mm256_set1_epi16(1))
    }
}

/// (|q|, q) of a Q8_0 block's quants.
#[inline(always)]
unsafe fn quants_q8_0(xb: *const u8) -> (__m256i, __m256i) {
    // SAFETY: the caller guarantees a 34-byte block at xb.
    unsafe {
        let qx = _mm256_loadu_si256(xb.add(2) as *const __m256i);
        (_mm256_sign_epi8(qx, qx), qx)
    }
}

/// (|q|, q) of a Q4_0 block's quants (nibbles minus 8).
#[inline(always)]
unsafe fn quants_q4_0(xb: *const u8) -> (__m256i, __m256i) {
    // SAFETY: the caller guarantees an 18-byte block at xb.
    unsafe {
        let qx = _mm256_sub_epi8(nibbles32(xb.add(2)), _mm256_set1_epi8(8));
        (_mm256_sign_epi8(qx, qx), qx)
    }
}

/// Per lane: (acc0 + acc1) + (acc2 + acc3), the fixed order both kernel kinds use.
#[inline(always)]
unsafe fn sum_residues(acc0: __m128, acc1: __m128, acc2: __m128, acc3: __m128) -> __m128 {
    // SAFETY: pure register arithmetic under the caller's target features.
    unsafe { _mm_add_ps(_mm_add_ps(acc0, acc1), _mm_add_ps(acc2, acc3)) }
}

/// Blocks of activation scales a tile precomputes on the stack; longer rows fall back to the
/// single-vector kernel per activation (same results).
const TILE_MAX_BLOCKS: usize = 128;

/// The safe tile entry `$name` (the [`crate::Tile`] signature): checks the operands, then
/// calls the AVX2 body `$inner` over blocks of `$wsize` weight and `$asize` activation bytes.
macro_rules! tile_wrapper {
    ($name:ident, $inner:expr, $wsize:expr, $asize:expr) => {
        #[allow(clippy::too_many_arguments)]
        pub(crate) fn $name(
            n: usize,
            w: &[u8],
            rows: usize,
            a: &[u8],
            n_acts: usize,
            out: &mut [f32],
            row_stride: usize,
            tok_stride: usize,
        ) {
            let nb = n / QK;
            check_tile(
                nb, w, $wsize, rows, a, $asize, n_acts, out, row_stride, tok_stride,
            );
            // SAFETY: installed in the dispatch table only when `detected()` is true; the
            // operand lengths were checked just above.
            unsafe {
                $inner(
                    nb,
                    w.as_ptr(),
                    rows,
                    a.as_ptr(),
                    n_acts,
                    out.as_mut_ptr(),
                    row_stride,
                    tok_stride,
                )
            }
        }
    };
}

/// Run `$block!(i, k)` for every block `i < $nb` with `k = i mod 4` a literal, so each of
/// the four residue accumulators is named statically and stays in a register.
macro_rules! by_residue {
    ($nb:expr, $block:ident) => {{
        let nb = $nb;
        let mut i = 0;
        while i + 4 <= nb {
            $block!(i, 0);
            $block!(i + 1, 1);
            $block!(i + 2, 2);
            $block!(i + 3, 3);
            i += 4;
        }
        if i < nb {
            $block!(i, 0);
        }
        if i + 1 < nb {
            $block!(i + 1, 1);
        }
        if i + 2 < nb {
            $block!(i + 2, 2);
        }
    }};
}

/// Four results to `o`, `o + stride`, `o + 2·stride`, `o + 3·stride`.
#[inline(always)]
unsafe fn store4(o: *mut f32, stride: usize, v: __m128) {
    // SAFETY: the caller guarantees the four addresses are writable.
    unsafe {
        let mut x = [0f32; 4];
        _mm_storeu_ps(x.as_mut_ptr(), v);
        for (k, x) in x.iter().enumerate() {
            *o.add(k * stride) = *x;
        }
    }
}

/// The layout of a tile call: weight rows, bytes per weight and activation row, output
/// strides.
struct TileGeom {
    rows: usize,
    wrb: usize,
    arb: usize,
    row_stride: usize,
    tok_stride: usize,
}

/// Activations `t..n_acts` of a tile one at a time with the single-vector kernel `dot`, each
/// weight row prefetched before it is walked.
#[inline(always)]
unsafe fn single_tail(
    g: &TileGeom,
    w: *const u8,
    a: *const u8,
    t: usize,
    n_acts: usize,
    out: *mut f32,
    dot: impl Fn(*const u8, *const u8) -> f32,
) {
    // SAFETY: the caller guarantees the tile's operands (checked by `check_tile`).
    unsafe {
        if t >= n_acts {
            return;
        }
        for r in 0..g.rows {
            let wr = w.add(r * g.wrb);
            prefetch_row(wr, g.wrb);
            for u in t..n_acts {
                *out.add(r * g.row_stride + u * g.tok_stride) = dot(wr, a.add(u * g.arb));
            }
        }
    }
}

/// The exact sums Σ q·a of one weight block against four activation rows (at `y`, `y + arb`,
/// …). `signed`: quants as (|q|, q) with the sign moved onto the activations. `unsigned`:
/// quants stored with an offset (q = u − off), summed as u·a and corrected by off·Σa, with
/// `asum_off` the precomputed off·Σa of the four rows (no sign operations per row).
macro_rules! tile_block_sums {
    ([signed], $quants:ident, $xb:expr, $y:expr, $arb:expr, $asum_off:expr) => {{
        let (ax, qx) = $quants($xb);
        let (y, arb) = ($y, $arb);
        hsum4_epi32(
            isum_q8(ax, qx, y),
            isum_q8(ax, qx, y.add(arb)),
            isum_q8(ax, qx, y.add(2 * arb)),
            isum_q8(ax, qx, y.add(3 * arb)),
        )
    }};
    ([unsigned($uq:ident, $off:expr)], $quants:ident, $xb:expr, $y:expr, $arb:expr, $asum_off:expr) => {{
        let u = $uq($xb);
        let (y, arb) = ($y, $arb);
        let s = hsum4_epi32(
            isum_u8(u, y),
            isum_u8(u, y.add(arb)),
            isum_u8(u, y.add(2 * arb)),
            isum_u8(u, y.add(3 * arb)),
        );
        _mm_sub_epi32(s, $asum_off)
    }};
}

/// Eight i32 partial sums of 32 unsigned weight quants times the Q8_0 activation block at `y`.
#[inline(always)]
unsafe fn isum_u8(u: __m256i, y: *const u8) -> __m256i {
    // SAFETY: the caller guarantees a 34-byte block at y.
    unsafe {
        let qy = _mm256_loadu_si256(y.add(2) as *const __m256i);
        _mm256_madd_epi16(_mm256_maddubs_epi16(u, qy), _mm256_set1_epi16(1))
    }
}

/// Σ a of the four Q8_0 activation blocks at `y`, `y + arb`, …, times `off`.
#[inline(always)]
unsafe fn asum4_times(y: *const u8, arb: usize, off: i32) -> __m128i {
    // SAFETY: the caller guarantees four 34-byte blocks at those addresses.
    unsafe {
        let ones = _mm256_set1_epi8(1);
        let s = hsum4_epi32(
            isum_u8(ones, y),
            isum_u8(ones, y.add(arb)),
            isum_u8(ones, y.add(2 * arb)),
            isum_u8(ones, y.add(3 * arb)),
        );
        _mm_mullo_epi32(s, _mm_set1_epi32(off))
    }
}

/// The unsigned nibbles of a Q4_0 block (q + 8).
#[inline(always)]
unsafe fn nibbles_q4_0(xb: *const u8) -> __m256i {
    // SAFETY: the caller guarantees an 18-byte block at xb.
    unsafe { nibbles32(xb.add(2)) }
}

macro_rules! int_kernels {
    (@asum [signed], $dst:expr, $y:expr, $arb:expr) => {};
    (@asum [unsigned($uq:ident, $off:expr)], $dst:expr, $y:expr, $arb:expr) => {
        $dst = asum4_times($y, $arb, $off)
    };
    ($single:ident, $tile:ident, $tile_inner:ident, $wsize:expr, $quants:ident, $mode:tt) => {
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn $single(nb: usize, x: *const u8, y: *const u8) -> f32 {
            // SAFETY: x holds nb weight blocks and y nb Q8_0 blocks (checked by the wrapper).
            unsafe {
                // Lane j accumulates the blocks i ≡ j (mod 4). `m` blocks from block `i`
                // (4 in the main loop, where the bounds tests fold away).
                macro_rules! group {
                    ($i:expr, $m:expr) => {{
                        let (i, m) = ($i, $m);
                        let part = |j: usize| {
                            if j < m {
                                let (ax, qx) = $quants(x.add((i + j) * $wsize));
                                isum_q8(ax, qx, y.add((i + j) * 34))
                            } else {
                                _mm256_setzero_si256()
                            }
                        };
                        let s = hsum4_epi32(part(0), part(1), part(2), part(3));
                        let d = _mm_mul_ps(
                            f16x4_strided(x.add(i * $wsize), $wsize, m),
                            f16x4_strided(y.add(i * 34), 34, m),
                        );
                        (d, _mm_cvtepi32_ps(s))
                    }};
                }
                let mut acc = _mm_setzero_ps();
                let mut i = 0;
                while i + 4 <= nb {
                    let (d, s) = group!(i, 4);
                    acc = _mm_fmadd_ps(d, s, acc);
                    i += 4;
                }
                if i < nb {
                    let (d, s) = group!(i, nb - i);
                    acc = _mm_fmadd_ps(d, s, acc);
                }
                sum_lanes(acc)
            }
        }

        tile_wrapper!($tile, $tile_inner, $wsize, 34);

        #[allow(clippy::too_many_arguments)]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn $tile_inner(
            nb: usize,
            w: *const u8,
            rows: usize,
            a: *const u8,
            n_acts: usize,
            out: *mut f32,
            row_stride: usize,
            tok_stride: usize,
        ) {
            // SAFETY: w holds rows·nb weight blocks, a n_acts·nb Q8_0 blocks and out
            // (rows-1)·row_stride + (n_acts-1)·tok_stride + 1 values (checked by the wrapper).
            unsafe {
                let (wrb, arb) = (nb * $wsize, nb * 34);
                let mut t = 0;
                let mut ad = [_mm_setzero_ps(); TILE_MAX_BLOCKS];
                // Used only by kernels whose quants carry an offset.
                #[allow(unused_mut, unused_variables)]
                let mut asum_off = [_mm_setzero_si128(); TILE_MAX_BLOCKS];
                while t + 4 <= n_acts && nb <= TILE_MAX_BLOCKS {
                    let a0 = a.add(t * arb);
                    // The four activations' scales (and for offset quants off·Σa) of each
                    // block, once for all rows.
                    for i in 0..nb {
                        ad[i] = f16x4_strided(a0.add(i * 34), arb, 4);
                        int_kernels!(@asum $mode, asum_off[i], a0.add(i * 34), arb);
                    }
                    for r in 0..rows {
                        let wr = w.add(r * wrb);
                        let mut accs = [_mm_setzero_ps(); 4];
                        macro_rules! block {
                            ($i:expr, $k:literal) => {{
                                let i = $i;
                                let xb = wr.add(i * $wsize);
                                prefetch_ahead(xb);
                                let y = a0.add(i * 34);
                                let s = tile_block_sums!($mode, $quants, xb, y, arb, asum_off[i]);
                                let d = _mm_mul_ps(_mm_set1_ps(f16_load(xb)), ad[i]);
                                accs[$k] = _mm_fmadd_ps(d, _mm_cvtepi32_ps(s), accs[$k]);
                            }};
                        }
                        by_residue!(nb, block);
                        let sum = sum_residues(accs[0], accs[1], accs[2], accs[3]);
                        store4(out.add(r * row_stride + t * tok_stride), tok_stride, sum);
                    }
                    t += 4;
                }
                // The activations left over (or rows too long for `ad`): one at a time.
                let geom = TileGeom { rows, wrb, arb, row_stride, tok_stride };
                single_tail(&geom, w, a, t, n_acts, out, |w, a| $single(nb, w, a));
            }
        }
    };
}

int_kernels!(
    q8_0_q8_0,
    tile_q8_0_q8_0_avx2,
    tile_q8_0_q8_0,
    34,
    quants_q8_0,
    [signed]
);
int_kernels!(
    q4_0_q8_0,
    tile_q4_0_q8_0_avx2,
    tile_q4_0_q8_0,
    18,
    quants_q4_0,
    [unsigned(nibbles_q4_0, 8)]
);

/// Lanes 0..4 of `acc` as four single-lane vectors summed by [`sum_residues`]: lane 0 of the
/// result is what the tile computes for one activation.
#[inline(always)]
unsafe fn sum_lanes(acc: __m128) -> f32 {
    // SAFETY: pure register arithmetic under the caller's target features.
    unsafe {
        let z = _mm_setzero_ps();
        let l1 = _mm_move_ss(z, _mm_shuffle_ps::<0b01_01_01_01>(acc, acc));
        let l2 = _mm_move_ss(z, _mm_movehl_ps(acc, acc));
        let l3 = _mm_move_ss(z, _mm_shuffle_ps::<0b11_11_11_11>(acc, acc));
        _mm_cvtss_f32(sum_residues(_mm_move_ss(z, acc), l1, l2, l3))
    }
}

/// The 4-byte f16 pairs at `p + k·stride` for `k < m` (zero beyond) as eight f32:
/// `[a0, b0, a1, b1, a2, b2, a3, b3]`.
#[inline(always)]
unsafe fn f16_pairs4(p: *const u8, stride: usize, m: usize) -> __m256 {
    // SAFETY: the caller guarantees 4 readable bytes at p + k·stride for every k < m.
    unsafe {
        let w = |k: usize| {
            if k < m {
                (p.add(k * stride) as *const i32).read_unaligned()
            } else {
                0
            }
        };
        _mm256_cvtph_ps(_mm_setr_epi32(w(0), w(1), w(2), w(3)))
    }
}

/// Q4_1 · Q8_1 with integer block sums: Σ (d_w·q + m_w)(d_a·a) = d_w·d_a·Σq·a + m_w·s_a, where
/// `s_a` is the activation block's stored d_a·Σa. The first term accumulates by block residue
/// as in `int_kernels!`, the second as rounded products added by residue.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_1_q8_1(nb: usize, x: *const u8, y: *const u8) -> f32 {
    // SAFETY: x holds nb blocks of 20 bytes and y nb blocks of 36 (checked by the wrapper).
    unsafe {
        macro_rules! group {
            ($i:expr, $m:expr) => {{
                let (i, m) = ($i, $m);
                let part = |j: usize| {
                    if j < m {
                        isum_q4_1(nibbles32(x.add((i + j) * 20 + 4)), y.add((i + j) * 36))
                    } else {
                        _mm256_setzero_si256()
                    }
                };
                let s = hsum4_epi32(part(0), part(1), part(2), part(3));
                // [d_w·d_a, m_w·s_a] of each block, interleaved, then split.
                let p = _mm256_mul_ps(
                    f16_pairs4(x.add(i * 20), 20, m),
                    f16_pairs4(y.add(i * 36), 36, m),
                );
                let p = _mm256_permutevar8x32_ps(p, _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7));
                (
                    _mm256_castps256_ps128(p),
                    _mm_cvtepi32_ps(s),
                    _mm256_extractf128_ps::<1>(p),
                )
            }};
        }
        let (mut acc, mut ext) = (_mm_setzero_ps(), _mm_setzero_ps());
        let mut i = 0;
        while i + 4 <= nb {
            let (d, s, ms) = group!(i, 4);
            acc = _mm_fmadd_ps(d, s, acc);
            ext = _mm_add_ps(ext, ms);
            i += 4;
        }
        if i < nb {
            let (d, s, ms) = group!(i, nb - i);
            acc = _mm_fmadd_ps(d, s, acc);
            ext = _mm_add_ps(ext, ms);
        }
        sum_lanes(acc) + sum_lanes(ext)
    }
}

/// Eight i32 partial sums of 32 unsigned weight quants times the Q8_1 activation block at `y`.
#[inline(always)]
unsafe fn isum_q4_1(qx: __m256i, y: *const u8) -> __m256i {
    // SAFETY: the caller guarantees a 36-byte block at y.
    unsafe {
        let qy = _mm256_loadu_si256(y.add(4) as *const __m256i);
        _mm256_madd_epi16(_mm256_maddubs_epi16(qx, qy), _mm256_set1_epi16(1))
    }
}

tile_wrapper!(tile_q4_1_q8_1_avx2, tile_q4_1_q8_1, 20, 36);

#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_q4_1_q8_1(
    nb: usize,
    w: *const u8,
    rows: usize,
    a: *const u8,
    n_acts: usize,
    out: *mut f32,
    row_stride: usize,
    tok_stride: usize,
) {
    // SAFETY: w holds rows·nb blocks of 20 bytes, a n_acts·nb blocks of 36 and out
    // (rows-1)·row_stride + (n_acts-1)·tok_stride + 1 values (checked by the wrapper).
    unsafe {
        let (wrb, arb) = (nb * 20, nb * 36);
        let mut t = 0;
        let mut ad = [_mm_setzero_ps(); TILE_MAX_BLOCKS];
        let mut sa = [_mm_setzero_ps(); TILE_MAX_BLOCKS];
        while t + 4 <= n_acts && nb <= TILE_MAX_BLOCKS {
            let a0 = a.add(t * arb);
            for i in 0..nb {
                ad[i] = f16x4_strided(a0.add(i * 36), arb, 4);
                sa[i] = f16x4_strided(a0.add(i * 36 + 2), arb, 4);
            }
            for r in 0..rows {
                let wr = w.add(r * wrb);
                let mut accs = [_mm_setzero_ps(); 4];
                let mut exts = [_mm_setzero_ps(); 4];
                macro_rules! block {
                    ($i:expr, $k:literal) => {{
                        let i = $i;
                        let xb = wr.add(i * 20);
                        prefetch_ahead(xb);
                        let qx = nibbles32(xb.add(4));
                        let y = a0.add(i * 36);
                        let s = hsum4_epi32(
                            isum_q4_1(qx, y),
                            isum_q4_1(qx, y.add(arb)),
                            isum_q4_1(qx, y.add(2 * arb)),
                            isum_q4_1(qx, y.add(3 * arb)),
                        );
                        let d = _mm_mul_ps(_mm_set1_ps(f16_load(xb)), ad[i]);
                        accs[$k] = _mm_fmadd_ps(d, _mm_cvtepi32_ps(s), accs[$k]);
                        let ms = _mm_mul_ps(_mm_set1_ps(f16_load(xb.add(2))), sa[i]);
                        exts[$k] = _mm_add_ps(exts[$k], ms);
                    }};
                }
                by_residue!(nb, block);
                let sum = _mm_add_ps(
                    sum_residues(accs[0], accs[1], accs[2], accs[3]),
                    sum_residues(exts[0], exts[1], exts[2], exts[3]),
                );
                store4(out.add(r * row_stride + t * tok_stride), tok_stride, sum);
            }
            t += 4;
        }
        let geom = TileGeom {
            rows,
            wrb,
            arb,
            row_stride,
            tok_stride,
        };
        single_tail(&geom, w, a, t, n_acts, out, |w, a| q4_1_q8_1(nb, w, a));
    }
}

mod vnni;
pub(crate) use vnni::{
    detected as vnni_detected, tile_q4_0_q8_0_vnni, tile_q4_1_q8_1_vnni, tile_q8_0_q8_0_vnni,
};
