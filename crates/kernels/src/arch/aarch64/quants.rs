//! Quantized block dots for every weight format, generic over the integer primitives
//! ([`Isa`]): instantiated with [`Neon`] (widening multiplies) for the `Neon` level and with
//! [`Dot`] (`sdot`) for `Dotprod` and `I8mm`. Integer sums are exact whatever computes them, and
//! the float operations are `crate::contract`'s, so both levels give the same bits (and those
//! of the AVX2 kernels).
//!
//! Block layouts are `generic::formats`'. Weights are unpacked to signed bytes in element order
//! (`lo` = elements 0..16, `hi` = 16..32 of a 32-element group) next to the activation bytes.

#![allow(clippy::missing_safety_doc)]

use std::arch::aarch64::*;

use super::neon::{f16_load, f16_pairs4, f16x4_strided, hsum4_s32, hsum8, sum4, Dot, Isa, Neon};
use crate::contract::safe_wrapper;
use crate::generic::formats::{q3_k_scales, scale_min_k4, QK, QK_K};

// ---------------------------------------------------------------------------------------------
// Unpacking

/// Low and high nibbles of the 16 bytes at `p` (elements 0..16 and 16..32).
#[inline(always)]
pub(super) unsafe fn nibbles(p: *const u8) -> (int8x16_t, int8x16_t) {
    // SAFETY: the caller guarantees 16 readable bytes at p.
    unsafe {
        let v = vld1q_u8(p);
        (
            vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0F))),
            vreinterpretq_s8_u8(vshrq_n_u8::<4>(v)),
        )
    }
}

/// 0xFF in byte e (0..32) where bit e of `qh` is set: `(elements 0..16, 16..32)`.
#[inline(always)]
unsafe fn bits32(qh: u32) -> (uint8x16_t, uint8x16_t) {
    // SAFETY: pure register arithmetic on local tables.
    unsafe {
        let v = vreinterpretq_u8_u32(vdupq_n_u32(qh));
        let idx_lo: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1];
        let idx_hi: [u8; 16] = [2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3];
        let bit: [u8; 16] = [1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128];
        let bit = vld1q_u8(bit.as_ptr());
        (
            vtstq_u8(vqtbl1q_u8(v, vld1q_u8(idx_lo.as_ptr())), bit),
            vtstq_u8(vqtbl1q_u8(v, vld1q_u8(idx_hi.as_ptr())), bit),
        )
    }
}

/// The signed quants of a Q4_0 block (nibbles − 8).
#[inline(always)]
unsafe fn q4_0_quants(xb: *const u8) -> (int8x16_t, int8x16_t) {
    // SAFETY: the caller guarantees an 18-byte block at xb.
    unsafe {
        let (lo, hi) = nibbles(xb.add(2));
        let eight = vdupq_n_s8(8);
        (vsubq_s8(lo, eight), vsubq_s8(hi, eight))
    }
}

/// The quants of a Q8_0 block.
#[inline(always)]
unsafe fn q8_0_quants(xb: *const u8) -> (int8x16_t, int8x16_t) {
    // SAFETY: the caller guarantees a 34-byte block at xb.
    unsafe {
        (
            vld1q_s8(xb.add(2) as *const i8),
            vld1q_s8(xb.add(18) as *const i8),
        )
    }
}

/// The (unsigned) quants of a Q4_1 block.
#[inline(always)]
unsafe fn q4_1_quants(xb: *const u8) -> (int8x16_t, int8x16_t) {
    // SAFETY: the caller guarantees a 20-byte block at xb.
    unsafe { nibbles(xb.add(4)) }
}

/// The 32 activation bytes at `p`.
#[inline(always)]
pub(super) unsafe fn acts(p: *const u8) -> (int8x16_t, int8x16_t) {
    // SAFETY: the caller guarantees 32 readable bytes at p.
    unsafe { (vld1q_s8(p as *const i8), vld1q_s8(p.add(16) as *const i8)) }
}

// ---------------------------------------------------------------------------------------------
// Block-sum formats: Q4_0, Q5_0, Q8_0 (· Q8_0), Q4_1, Q5_1 (· Q8_1)

/// A block-sum weight format (Q4_0, Q5_0, Q8_0 against Q8_0; Q4_1, Q5_1 against Q8_1).
pub(super) trait Blocks {
    /// Weight and activation block bytes; offset of the activation quants.
    const W: usize;
    const A: usize;
    const AQ: usize;
    /// Q4_1, Q5_1: `ext += m_w·s_a` per block.
    const MIN: bool;
    /// `|q| ≤ 63` (the cheaper NEON block sum applies).
    const SMALL: bool;
    /// The block's 32 quants as signed bytes in element order.
    unsafe fn quants(xb: *const u8) -> (int8x16_t, int8x16_t);
}

pub(super) struct Q4_0;
pub(super) struct Q8_0;
pub(super) struct Q4_1;

impl Blocks for Q4_0 {
    const W: usize = 18;
    const A: usize = 34;
    const AQ: usize = 2;
    const MIN: bool = false;
    const SMALL: bool = true;
    #[inline(always)]
    unsafe fn quants(xb: *const u8) -> (int8x16_t, int8x16_t) {
        // SAFETY: the caller guarantees an 18-byte block at xb.
        unsafe { q4_0_quants(xb) }
    }
}

impl Blocks for Q8_0 {
    const W: usize = 34;
    const A: usize = 34;
    const AQ: usize = 2;
    const MIN: bool = false;
    const SMALL: bool = false;
    #[inline(always)]
    unsafe fn quants(xb: *const u8) -> (int8x16_t, int8x16_t) {
        // SAFETY: the caller guarantees a 34-byte block at xb.
        unsafe { q8_0_quants(xb) }
    }
}

impl Blocks for Q4_1 {
    const W: usize = 20;
    const A: usize = 36;
    const AQ: usize = 4;
    const MIN: bool = true;
    const SMALL: bool = true;
    #[inline(always)]
    unsafe fn quants(xb: *const u8) -> (int8x16_t, int8x16_t) {
        // SAFETY: the caller guarantees a 20-byte block at xb.
        unsafe { q4_1_quants(xb) }
    }
}

/// The five-bit values of a Q5 block whose quants start at `qh_off` (the 32 high bits, then
/// the nibbles): `v` (Q5_1) or `v − 16` (Q5_0, `SIGNED`).
#[inline(always)]
unsafe fn q5_quants<const SIGNED: bool>(xb: *const u8, qh_off: usize) -> (int8x16_t, int8x16_t) {
    // SAFETY: the caller guarantees qh_off + 20 readable bytes at xb.
    unsafe {
        let qh = (xb.add(qh_off) as *const u32).read_unaligned();
        let (h0, h1) = bits32(qh);
        let (n0, n1) = nibbles(xb.add(qh_off + 4));
        let sixteen = vdupq_n_u8(16);
        if SIGNED {
            // v − 16 = nibble − 16 where the high bit is clear, the nibble where it is set.
            (
                vsubq_s8(n0, vreinterpretq_s8_u8(vbicq_u8(sixteen, h0))),
                vsubq_s8(n1, vreinterpretq_s8_u8(vbicq_u8(sixteen, h1))),
            )
        } else {
            (
                vorrq_s8(n0, vreinterpretq_s8_u8(vandq_u8(h0, sixteen))),
                vorrq_s8(n1, vreinterpretq_s8_u8(vandq_u8(h1, sixteen))),
            )
        }
    }
}

pub(super) struct Q5_0;
pub(super) struct Q5_1;

impl Blocks for Q5_0 {
    const W: usize = 22;
    const A: usize = 34;
    const AQ: usize = 2;
    const MIN: bool = false;
    const SMALL: bool = true;
    #[inline(always)]
    unsafe fn quants(xb: *const u8) -> (int8x16_t, int8x16_t) {
        // SAFETY: the caller guarantees a 22-byte block at xb.
        unsafe { q5_quants::<true>(xb, 2) }
    }
}

impl Blocks for Q5_1 {
    const W: usize = 24;
    const A: usize = 36;
    const AQ: usize = 4;
    const MIN: bool = true;
    const SMALL: bool = true;
    #[inline(always)]
    unsafe fn quants(xb: *const u8) -> (int8x16_t, int8x16_t) {
        // SAFETY: the caller guarantees a 24-byte block at xb.
        unsafe { q5_quants::<false>(xb, 4) }
    }
}

/// The integer sum of weight block `x` against activation block `y` (quants at `y`), as one
/// vector whose lanes add up to it. (A macro, not a closure: a closure in a generic body would
/// not get the target features of the function it is inlined into.)
macro_rules! block_sum {
    ($f:ty, $i:ty, $x:expr, $y:expr) => {{
        let (w0, w1) = <$f>::quants($x);
        let (a0, a1) = acts($y);
        if <$f>::SMALL {
            <$i>::block_small(w0, a0, w1, a1)
        } else {
            <$i>::block_any(w0, a0, w1, a1)
        }
    }};
}

/// Q4_0 / Q8_0 · Q8_0 and Q4_1 · Q8_1 in the contract's block-sum order: four blocks per step,
/// each block's `S` in one lane, `acc = fma(d_w·d_a, S, acc)` lane-wise (Q4_1 also
/// `ext += m_w·s_a`), `(a0 + a1) + (a2 + a3)` at the end.
#[inline(always)]
unsafe fn block_sums<F: Blocks, I: Isa>(nb: usize, x: *const u8, y: *const u8) -> f32 {
    // SAFETY: x holds nb weight blocks and y nb activation blocks (the caller's guarantee);
    // every read below is within block i + j < nb.
    unsafe {
        let (mut acc, mut ext) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
        macro_rules! part {
            ($i:expr, $j:expr, $m:expr) => {
                if $j < $m {
                    block_sum!(
                        F,
                        I,
                        x.add(($i + $j) * F::W),
                        y.add(($i + $j) * F::A + F::AQ)
                    )
                } else {
                    vdupq_n_s32(0)
                }
            };
        }
        // `m` blocks from block `i` (4 in the main loop, where the bounds tests fold away).
        macro_rules! group {
            ($i:expr, $m:expr) => {{
                let (i, m) = ($i, $m);
                let s = hsum4_s32(
                    part!(i, 0, m),
                    part!(i, 1, m),
                    part!(i, 2, m),
                    part!(i, 3, m),
                );
                let s = vcvtq_f32_s32(s);
                if F::MIN {
                    let (dw, mw) = f16_pairs4(x.add(i * F::W), F::W, m);
                    let (da, sa) = f16_pairs4(y.add(i * F::A), F::A, m);
                    acc = vfmaq_f32(acc, vmulq_f32(dw, da), s);
                    ext = vaddq_f32(ext, vmulq_f32(mw, sa));
                } else {
                    let dw = f16x4_strided(x.add(i * F::W), F::W, m);
                    let da = f16x4_strided(y.add(i * F::A), F::A, m);
                    acc = vfmaq_f32(acc, vmulq_f32(dw, da), s);
                }
            }};
        }
        let mut i = 0;
        while i + 4 <= nb {
            group!(i, 4);
            i += 4;
        }
        if i < nb {
            group!(i, nb - i);
        }
        if F::MIN {
            sum4(acc) + sum4(ext)
        } else {
            sum4(acc)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Eight-lane formats

/// `acc[lo, hi] = fma(d, S, acc)` lane-wise for the eight lane sums `s`.
#[inline(always)]
pub(super) unsafe fn fma8(acc: &mut [float32x4_t; 2], s: [int32x4_t; 2], d: f32) {
    // SAFETY: pure register arithmetic.
    unsafe {
        acc[0] = vfmaq_n_f32(acc[0], vcvtq_f32_s32(s[0]), d);
        acc[1] = vfmaq_n_f32(acc[1], vcvtq_f32_s32(s[1]), d);
    }
}

/// `sumi[lo, hi] += scale_lo · dot4(w0, a0), scale_hi · dot4(w1, a1)`: a 32-element group of a
/// K-quant superblock, `sc` its two per-16 scales.
#[inline(always)]
pub(super) unsafe fn k_group<I: Isa>(
    sumi: &mut [int32x4_t; 2],
    (w0, w1): (int8x16_t, int8x16_t),
    a: *const u8,
    sc: (i32, i32),
) {
    // SAFETY: the caller guarantees 32 readable activation bytes at a.
    unsafe {
        let (a0, a1) = acts(a);
        let zero = vdupq_n_s32(0);
        sumi[0] = vmlaq_n_s32(sumi[0], I::dot4(zero, w0, a0), sc.0);
        sumi[1] = vmlaq_n_s32(sumi[1], I::dot4(zero, w1, a1), sc.1);
    }
}

/// Σ min_j · (bsum_2j + bsum_2j+1) over the eight sub-blocks (Q4_K, Q5_K).
#[inline(always)]
pub(super) unsafe fn k4_summ(mins: [u8; 8], bs: *const u8) -> i32 {
    // SAFETY: the caller guarantees the 32 bytes of block sums at bs.
    unsafe {
        let b0 = vld1q_s16(bs as *const i16);
        let b1 = vld1q_s16(bs.add(16) as *const i16);
        let pairs = vpaddq_s16(b0, b1);
        let m = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(mins.as_ptr())));
        let p = vmlal_high_s16(vmull_s16(vget_low_s16(pairs), vget_low_s16(m)), pairs, m);
        vaddvq_s32(p)
    }
}

/// Q4_K (`FIVE = false`) and Q5_K · Q8_K.
#[inline(always)]
unsafe fn q45_k_body<I: Isa, const FIVE: bool>(nb: usize, x: *const u8, y: *const u8) -> f32 {
    let wsize = if FIVE { 176 } else { 144 };
    // SAFETY: x holds nb weight blocks and y nb Q8_K blocks (the caller's guarantee).
    unsafe {
        let z = vdupq_n_f32(0.0);
        let mut acc = [z, z];
        let mut acc_m = 0f32;
        for i in 0..nb {
            let xb = x.add(i * wsize);
            let yb = y.add(i * 292);
            let dy = (yb as *const f32).read_unaligned();
            let d = dy * f16_load(xb);
            let dmin = dy * f16_load(xb.add(2));
            let sc = std::slice::from_raw_parts(xb.add(4), 12);
            let mut scales = [0u8; 8];
            let mut mins = [0u8; 8];
            for j in 0..8 {
                (scales[j], mins[j]) = scale_min_k4(j, sc);
            }
            let summ = k4_summ(mins, yb.add(260));
            let qs = xb.add(if FIVE { 48 } else { 16 });
            let mut sumi = [vdupq_n_s32(0); 2];
            for j in 0..4 {
                let (l0, h0) = nibbles(qs.add(32 * j));
                let (l1, h1) = nibbles(qs.add(32 * j + 16));
                let (lo, hi) = if FIVE {
                    let qh0 = vld1q_u8(xb.add(16));
                    let qh1 = vld1q_u8(xb.add(32));
                    let sixteen = vdupq_n_u8(16);
                    let bit = |q: uint8x16_t, b: u8| {
                        vreinterpretq_s8_u8(vandq_u8(vtstq_u8(q, vdupq_n_u8(b)), sixteen))
                    };
                    let (b1, b2) = (1u8 << (2 * j), 2u8 << (2 * j));
                    (
                        (vorrq_s8(l0, bit(qh0, b1)), vorrq_s8(l1, bit(qh1, b1))),
                        (vorrq_s8(h0, bit(qh0, b2)), vorrq_s8(h1, bit(qh1, b2))),
                    )
                } else {
                    ((l0, l1), (h0, h1))
                };
                let (s1, s2) = (i32::from(scales[2 * j]), i32::from(scales[2 * j + 1]));
                k_group::<I>(&mut sumi, lo, yb.add(4 + 64 * j), (s1, s1));
                k_group::<I>(&mut sumi, hi, yb.add(4 + 64 * j + 32), (s2, s2));
            }
            fma8(&mut acc, sumi, d);
            acc_m += dmin * summ as f32;
        }
        hsum8(acc[0], acc[1]) - acc_m
    }
}

/// The four 32-element groups of one half (128 elements) of a Q6_K block as signed bytes
/// (6-bit values − 32), each as (elements 0..16, 16..32).
#[inline(always)]
pub(super) unsafe fn q6_k_groups(ql: *const u8, qh: *const u8) -> [(int8x16_t, int8x16_t); 4] {
    // SAFETY: the caller guarantees 64 bytes at ql and 32 at qh.
    unsafe {
        let m4 = vdupq_n_u8(0x0F);
        let m3 = vdupq_n_u8(0x03);
        let l: [uint8x16_t; 4] = std::array::from_fn(|k| vld1q_u8(ql.add(16 * k)));
        let h = [vld1q_u8(qh), vld1q_u8(qh.add(16))];
        let v = |lo: uint8x16_t, hb: uint8x16_t| {
            vsubq_s8(
                vreinterpretq_s8_u8(vorrq_u8(lo, vshlq_n_u8::<4>(vandq_u8(hb, m3)))),
                vdupq_n_s8(32),
            )
        };
        std::array::from_fn(|g| {
            // group g: ql bytes (g % 2)·32.., low nibble for g < 2, qh bits 2g..2g+2
            let (la, lb) = (l[2 * (g % 2)], l[2 * (g % 2) + 1]);
            let (la, lb) = if g < 2 {
                (vandq_u8(la, m4), vandq_u8(lb, m4))
            } else {
                (vshrq_n_u8::<4>(la), vshrq_n_u8::<4>(lb))
            };
            let shift = vdupq_n_s8(-2 * g as i8);
            (v(la, vshlq_u8(h[0], shift)), v(lb, vshlq_u8(h[1], shift)))
        })
    }
}

/// Q6_K · Q8_K.
#[inline(always)]
unsafe fn q6_k_body<I: Isa>(nb: usize, x: *const u8, y: *const u8) -> f32 {
    // SAFETY: x holds nb blocks of 210 bytes and y nb of 292 (the caller's guarantee).
    unsafe {
        let z = vdupq_n_f32(0.0);
        let mut acc = [z, z];
        for i in 0..nb {
            let xb = x.add(i * 210);
            let yb = y.add(i * 292);
            let d = (yb as *const f32).read_unaligned() * f16_load(xb.add(208));
            let mut sumi = [vdupq_n_s32(0); 2];
            for n in 0..2 {
                let groups = q6_k_groups(xb.add(64 * n), xb.add(128 + 32 * n));
                let sc = xb.add(192 + 8 * n) as *const i8;
                for (g, w) in groups.into_iter().enumerate() {
                    let s = (i32::from(*sc.add(2 * g)), i32::from(*sc.add(2 * g + 1)));
                    k_group::<I>(&mut sumi, w, yb.add(4 + 128 * n + 32 * g), s);
                }
            }
            fma8(&mut acc, sumi, d);
        }
        hsum8(acc[0], acc[1])
    }
}

/// Q2_K · Q8_K.
#[inline(always)]
unsafe fn q2_k_body<I: Isa>(nb: usize, x: *const u8, y: *const u8) -> f32 {
    // SAFETY: x holds nb blocks of 84 bytes and y nb of 292 (the caller's guarantee).
    unsafe {
        let z = vdupq_n_f32(0.0);
        let mut acc = [z, z];
        let mut acc_m = 0f32;
        let m3 = vdupq_n_u8(3);
        for i in 0..nb {
            let xb = x.add(i * 84);
            let yb = y.add(i * 292);
            let dy = (yb as *const f32).read_unaligned();
            let d = dy * f16_load(xb.add(80));
            let dmin = dy * f16_load(xb.add(82));
            let sc = vld1q_u8(xb);
            let mins = vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(vshrq_n_u8::<4>(sc))));
            let mins_hi = vreinterpretq_s16_u16(vmovl_high_u8(vshrq_n_u8::<4>(sc)));
            let b0 = vld1q_s16(yb.add(260) as *const i16);
            let b1 = vld1q_s16(yb.add(276) as *const i16);
            let p = vmlal_high_s16(vmull_s16(vget_low_s16(b0), vget_low_s16(mins)), b0, mins);
            let p = vmlal_s16(p, vget_low_s16(b1), vget_low_s16(mins_hi));
            let summ = vaddvq_s32(vmlal_high_s16(p, b1, mins_hi));
            let mut sumi = [vdupq_n_s32(0); 2];
            for n in 0..2 {
                let q0 = vld1q_u8(xb.add(16 + 32 * n));
                let q1 = vld1q_u8(xb.add(32 + 32 * n));
                for k in 0..4 {
                    let shift = vdupq_n_s8(-2 * k as i8);
                    let w0 = vreinterpretq_s8_u8(vandq_u8(vshlq_u8(q0, shift), m3));
                    let w1 = vreinterpretq_s8_u8(vandq_u8(vshlq_u8(q1, shift), m3));
                    let g = 4 * n + k;
                    let s = (
                        i32::from(*xb.add(2 * g) & 0xF),
                        i32::from(*xb.add(2 * g + 1) & 0xF),
                    );
                    k_group::<I>(&mut sumi, (w0, w1), yb.add(4 + 32 * g), s);
                }
            }
            fma8(&mut acc, sumi, d);
            acc_m += dmin * summ as f32;
        }
        hsum8(acc[0], acc[1]) - acc_m
    }
}

/// Q3_K · Q8_K.
#[inline(always)]
unsafe fn q3_k_body<I: Isa>(nb: usize, x: *const u8, y: *const u8) -> f32 {
    // SAFETY: x holds nb blocks of 110 bytes and y nb of 292 (the caller's guarantee).
    unsafe {
        let z = vdupq_n_f32(0.0);
        let mut acc = [z, z];
        let m3 = vdupq_n_u8(3);
        let four = vdupq_n_u8(4);
        for i in 0..nb {
            let xb = x.add(i * 110);
            let yb = y.add(i * 292);
            let d = (yb as *const f32).read_unaligned() * f16_load(xb.add(108));
            let scales = q3_k_scales(std::slice::from_raw_parts(xb.add(96), 12));
            let hm = [vld1q_u8(xb), vld1q_u8(xb.add(16))];
            let mut sumi = [vdupq_n_s32(0); 2];
            for n in 0..2 {
                let q0 = vld1q_u8(xb.add(32 + 32 * n));
                let q1 = vld1q_u8(xb.add(48 + 32 * n));
                for k in 0..4 {
                    let g = 4 * n + k;
                    let shift = vdupq_n_s8(-2 * k as i8);
                    let bit = vdupq_n_u8(1 << g);
                    let v = |q: uint8x16_t, h: uint8x16_t| {
                        let c = vandq_u8(vshlq_u8(q, shift), m3);
                        vreinterpretq_s8_u8(vsubq_u8(c, vbicq_u8(four, vtstq_u8(h, bit))))
                    };
                    let s = (i32::from(scales[2 * g]), i32::from(scales[2 * g + 1]));
                    k_group::<I>(
                        &mut sumi,
                        (v(q0, hm[0]), v(q1, hm[1])),
                        yb.add(4 + 32 * g),
                        s,
                    );
                }
            }
            fma8(&mut acc, sumi, d);
        }
        hsum8(acc[0], acc[1])
    }
}

// ---------------------------------------------------------------------------------------------
// The per-level target-feature bodies and their safe wrappers

macro_rules! level_dots {
    ($isa:ty, $feat:literal, $suffix:ident) => {
        pub(crate) mod $suffix {
            use super::*;

            #[target_feature(enable = $feat)]
            pub(crate) unsafe fn q4_0(nb: usize, x: *const u8, y: *const u8) -> f32 {
                // SAFETY: operands checked by the wrapper (or the calling tile).
                unsafe { block_sums::<Q4_0, $isa>(nb, x, y) }
            }
            #[target_feature(enable = $feat)]
            pub(crate) unsafe fn q8_0(nb: usize, x: *const u8, y: *const u8) -> f32 {
                // SAFETY: operands checked by the wrapper (or the calling tile).
                unsafe { block_sums::<Q8_0, $isa>(nb, x, y) }
            }
            #[target_feature(enable = $feat)]
            pub(crate) unsafe fn q4_1(nb: usize, x: *const u8, y: *const u8) -> f32 {
                // SAFETY: operands checked by the wrapper (or the calling tile).
                unsafe { block_sums::<Q4_1, $isa>(nb, x, y) }
            }
            #[target_feature(enable = $feat)]
            pub(crate) unsafe fn q5_0(nb: usize, x: *const u8, y: *const u8) -> f32 {
                // SAFETY: operands checked by the wrapper (or the calling tile).
                unsafe { block_sums::<Q5_0, $isa>(nb, x, y) }
            }
            #[target_feature(enable = $feat)]
            pub(crate) unsafe fn q5_1(nb: usize, x: *const u8, y: *const u8) -> f32 {
                // SAFETY: operands checked by the wrapper (or the calling tile).
                unsafe { block_sums::<Q5_1, $isa>(nb, x, y) }
            }
            #[target_feature(enable = $feat)]
            unsafe fn q2_k(nb: usize, x: *const u8, y: *const u8) -> f32 {
                // SAFETY: operands checked by the wrapper.
                unsafe { q2_k_body::<$isa>(nb, x, y) }
            }
            #[target_feature(enable = $feat)]
            unsafe fn q3_k(nb: usize, x: *const u8, y: *const u8) -> f32 {
                // SAFETY: operands checked by the wrapper.
                unsafe { q3_k_body::<$isa>(nb, x, y) }
            }
            #[target_feature(enable = $feat)]
            pub(crate) unsafe fn q4_k(nb: usize, x: *const u8, y: *const u8) -> f32 {
                // SAFETY: operands checked by the wrapper (or the calling tile).
                unsafe { q45_k_body::<$isa, false>(nb, x, y) }
            }
            #[target_feature(enable = $feat)]
            unsafe fn q5_k(nb: usize, x: *const u8, y: *const u8) -> f32 {
                // SAFETY: operands checked by the wrapper.
                unsafe { q45_k_body::<$isa, true>(nb, x, y) }
            }
            #[target_feature(enable = $feat)]
            pub(crate) unsafe fn q6_k(nb: usize, x: *const u8, y: *const u8) -> f32 {
                // SAFETY: operands checked by the wrapper (or the calling tile).
                unsafe { q6_k_body::<$isa>(nb, x, y) }
            }

            safe_wrapper!(dot_q4_0_q8_0, q4_0, 18, 34, QK);
            safe_wrapper!(dot_q8_0_q8_0, q8_0, 34, 34, QK);
            safe_wrapper!(dot_q4_1_q8_1, q4_1, 20, 36, QK);
            safe_wrapper!(dot_q5_0_q8_0, q5_0, 22, 34, QK);
            safe_wrapper!(dot_q5_1_q8_1, q5_1, 24, 36, QK);
            safe_wrapper!(dot_q2_k_q8_k, q2_k, 84, 292, QK_K);
            safe_wrapper!(dot_q3_k_q8_k, q3_k, 110, 292, QK_K);
            safe_wrapper!(dot_q4_k_q8_k, q4_k, 144, 292, QK_K);
            safe_wrapper!(dot_q5_k_q8_k, q5_k, 176, 292, QK_K);
            safe_wrapper!(dot_q6_k_q8_k, q6_k, 210, 292, QK_K);
        }
    };
}

level_dots!(Neon, "neon", neon);
level_dots!(Dot, "neon,dotprod", dotprod);
