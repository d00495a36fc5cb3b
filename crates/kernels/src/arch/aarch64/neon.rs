//! NEON building blocks shared by every aarch64 level, and the kernels that need nothing but
//! baseline NEON: float rows (F16, BF16, F32 · F32), the f32/f16 helpers, the Q8_0 / Q8_1 /
//! Q8_K activation quantizers and the LSTM epilogue. All follow `crate::contract`'s order, so
//! they give the bits of the AVX2 kernels and of the contract's scalar code.
//!
//! The integer primitives are behind [`Isa`]: [`Neon`] builds them from widening multiplies
//! (`smull`) and pairwise adds (`sadalp`/`addp`), [`Dot`] from `sdot` (an `asm!` block: the
//! intrinsic is unstable). Kernels generic over `Isa` are `#[inline(always)]` bodies
//! instantiated inside the target-feature functions of each level.

#![allow(clippy::missing_safety_doc)]

use std::arch::aarch64::*;
use std::arch::asm;

use crate::contract::safe_wrapper;
use crate::generic::formats::{put_f16, QK, QK_K};

// ---------------------------------------------------------------------------------------------
// f16 conversions (baseline: fcvtl / fcvtn / fcvt; the f16 intrinsics are unstable)

/// Four f16 (bits) to f32.
#[inline(always)]
pub(super) unsafe fn f16x4(h: uint16x4_t) -> float32x4_t {
    let out: float32x4_t;
    // SAFETY: fcvtl is baseline aarch64 Advanced SIMD; pure register operation.
    unsafe {
        asm!("fcvtl {0:v}.4s, {1:v}.4h", out(vreg) out, in(vreg) h,
             options(pure, nomem, nostack, preserves_flags))
    };
    out
}

/// Four f32 to f16 bits, round to nearest even.
#[inline(always)]
unsafe fn f32x4_to_f16(v: float32x4_t) -> uint16x4_t {
    let out: uint16x4_t;
    // SAFETY: fcvtn is baseline aarch64 Advanced SIMD; pure register operation.
    unsafe {
        asm!("fcvtn {0:v}.4h, {1:v}.4s", out(vreg) out, in(vreg) v,
             options(pure, nomem, nostack, preserves_flags))
    };
    out
}

/// One f16 (bits) to f32.
#[inline(always)]
pub(super) fn f16_to_f32(h: u16) -> f32 {
    let out: f32;
    // SAFETY: fcvt between half and single precision is baseline aarch64 floating point; the
    // half-precision view of the register holds `h`.
    unsafe {
        asm!("fcvt {0:s}, {1:h}", out(vreg) out, in(vreg) f32::from_bits(u32::from(h)),
             options(pure, nomem, nostack, preserves_flags))
    };
    out
}

/// The f16 at `p` (2 bytes, any alignment) as f32.
#[inline(always)]
pub(super) unsafe fn f16_load(p: *const u8) -> f32 {
    // SAFETY: the caller guarantees 2 readable bytes at p.
    f16_to_f32(unsafe { (p as *const u16).read_unaligned() })
}

/// The f16 values at `p + k·stride` for `k < m` (zero beyond), as four f32.
#[inline(always)]
pub(super) unsafe fn f16x4_strided(p: *const u8, stride: usize, m: usize) -> float32x4_t {
    let h = |k: usize| {
        if k < m {
            // SAFETY: the caller guarantees 2 readable bytes at p + k·stride for k < m.
            unsafe { (p.add(k * stride) as *const u16).read_unaligned() }
        } else {
            0
        }
    };
    let v = [h(0), h(1), h(2), h(3)];
    // SAFETY: v is a local array of four u16.
    unsafe { f16x4(vld1_u16(v.as_ptr())) }
}

/// The f16 pairs (4 bytes) at `p + k·stride` for `k < m` (zero beyond), split into their first
/// and second halves as four f32 each: `([a0..a3], [b0..b3])`.
#[inline(always)]
pub(super) unsafe fn f16_pairs4(
    p: *const u8,
    stride: usize,
    m: usize,
) -> (float32x4_t, float32x4_t) {
    let w = |k: usize| {
        if k < m {
            // SAFETY: the caller guarantees 4 readable bytes at p + k·stride for k < m.
            unsafe { (p.add(k * stride) as *const u32).read_unaligned() }
        } else {
            0
        }
    };
    let v = [w(0), w(1), w(2), w(3)];
    // SAFETY: v is a local array of four u32 (eight u16); pure register arithmetic after.
    unsafe {
        let h = vreinterpretq_u16_u32(vld1q_u32(v.as_ptr()));
        let lo = f16x4(vget_low_u16(h));
        let hi = f16x4(vget_high_u16(h));
        (vuzp1q_f32(lo, hi), vuzp2q_f32(lo, hi))
    }
}

// ---------------------------------------------------------------------------------------------
// Reductions in the contract's order

/// `(a0 + a1) + (a2 + a3)`.
#[inline(always)]
pub(super) unsafe fn sum4(a: float32x4_t) -> f32 {
    // SAFETY: pure register arithmetic.
    unsafe { vpadds_f32(vpadd_f32(vget_low_f32(a), vget_high_f32(a))) }
}

/// `hsum8` of the eight lanes `lo` (0..4) and `hi` (4..8):
/// `((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7))`.
#[inline(always)]
pub(super) unsafe fn hsum8(lo: float32x4_t, hi: float32x4_t) -> f32 {
    // SAFETY: pure register arithmetic.
    unsafe {
        let t = vaddq_f32(lo, hi);
        vpadds_f32(vadd_f32(vget_low_f32(t), vget_high_f32(t)))
    }
}

/// Per lane `(a0 + a1) + (a2 + a3)`.
#[inline(always)]
pub(super) unsafe fn sum_residues(a: &[float32x4_t; 4]) -> float32x4_t {
    // SAFETY: pure register arithmetic.
    unsafe { vaddq_f32(vaddq_f32(a[0], a[1]), vaddq_f32(a[2], a[3])) }
}

/// `[S(p0), S(p1), S(p2), S(p3)]`: the lane sums of four vectors (exact).
#[inline(always)]
pub(super) unsafe fn hsum4_s32(
    p0: int32x4_t,
    p1: int32x4_t,
    p2: int32x4_t,
    p3: int32x4_t,
) -> int32x4_t {
    // SAFETY: pure register arithmetic.
    unsafe { vpaddq_s32(vpaddq_s32(p0, p1), vpaddq_s32(p2, p3)) }
}

// ---------------------------------------------------------------------------------------------
// Integer primitives

/// The integer dot-product primitives a level provides. All sums are exact under the stated
/// bounds.
pub(super) trait Isa {
    /// `acc + [Σ a·b over bytes 4l..4l+4 for l in 0..4]`, for `|a| ≤ 64`.
    unsafe fn dot4(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t;
    /// A vector whose lanes add up to `Σ a0·b0 + Σ a1·b1` (32 products), for `|a| ≤ 63`.
    unsafe fn block_small(a0: int8x16_t, b0: int8x16_t, a1: int8x16_t, b1: int8x16_t) -> int32x4_t;
    /// As [`Isa::block_small`], for any bytes.
    unsafe fn block_any(a0: int8x16_t, b0: int8x16_t, a1: int8x16_t, b1: int8x16_t) -> int32x4_t;
}

/// Baseline NEON: widening multiplies and pairwise adds.
pub(super) struct Neon;

impl Isa for Neon {
    #[inline(always)]
    unsafe fn dot4(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        // SAFETY: pure register arithmetic (NEON is baseline). Each i16 pair sum is at most
        // 2·64·128 in magnitude: no overflow.
        unsafe {
            let p0 = vmull_s8(vget_low_s8(a), vget_low_s8(b));
            let p1 = vmull_high_s8(a, b);
            vpadalq_s16(acc, vpaddq_s16(p0, p1))
        }
    }
    #[inline(always)]
    unsafe fn block_small(a0: int8x16_t, b0: int8x16_t, a1: int8x16_t, b1: int8x16_t) -> int32x4_t {
        // SAFETY: pure register arithmetic. An i16 lane sums four products, at most
        // 4·63·128 < 2^15 in magnitude.
        unsafe {
            let p = vmull_s8(vget_low_s8(a0), vget_low_s8(b0));
            let p = vmlal_high_s8(p, a0, b0);
            let p = vmlal_s8(p, vget_low_s8(a1), vget_low_s8(b1));
            let p = vmlal_high_s8(p, a1, b1);
            vpaddlq_s16(p)
        }
    }
    #[inline(always)]
    unsafe fn block_any(a0: int8x16_t, b0: int8x16_t, a1: int8x16_t, b1: int8x16_t) -> int32x4_t {
        // SAFETY: pure register arithmetic. Every i16 lane holds one product (|·| ≤ 2^14).
        unsafe {
            let s = vpaddlq_s16(vmull_s8(vget_low_s8(a0), vget_low_s8(b0)));
            let s = vpadalq_s16(s, vmull_high_s8(a0, b0));
            let s = vpadalq_s16(s, vmull_s8(vget_low_s8(a1), vget_low_s8(b1)));
            vpadalq_s16(s, vmull_high_s8(a1, b1))
        }
    }
}

/// NEON with the dot-product extension.
pub(super) struct Dot;

/// `acc + sdot(a, b)`: lane l gains Σ a·b over bytes 4l..4l+4.
#[inline]
#[target_feature(enable = "dotprod")]
pub(super) unsafe fn sdot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // SAFETY: sdot is available (this function's target feature, which only code reached
    // after dotprod detection calls); pure register operation.
    unsafe {
        asm!("sdot {0:v}.4s, {1:v}.16b, {2:v}.16b", inout(vreg) acc, in(vreg) a, in(vreg) b,
             options(pure, nomem, nostack, preserves_flags))
    };
    acc
}

impl Isa for Dot {
    #[inline]
    #[target_feature(enable = "dotprod")]
    unsafe fn dot4(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        // SAFETY: same target features as the caller's contract requires.
        unsafe { sdot(acc, a, b) }
    }
    #[inline]
    #[target_feature(enable = "dotprod")]
    unsafe fn block_small(a0: int8x16_t, b0: int8x16_t, a1: int8x16_t, b1: int8x16_t) -> int32x4_t {
        // SAFETY: dotprod enabled (this function's target feature).
        unsafe { sdot(sdot(vdupq_n_s32(0), a0, b0), a1, b1) }
    }
    #[inline]
    #[target_feature(enable = "dotprod")]
    unsafe fn block_any(a0: int8x16_t, b0: int8x16_t, a1: int8x16_t, b1: int8x16_t) -> int32x4_t {
        // SAFETY: dotprod enabled (this function's target feature).
        unsafe { sdot(sdot(vdupq_n_s32(0), a0, b0), a1, b1) }
    }
}

// ---------------------------------------------------------------------------------------------
// Float rows and helpers

/// Eight f32 from 8 f16 at `p`.
#[inline(always)]
unsafe fn load_f16x8(p: *const u8) -> (float32x4_t, float32x4_t) {
    // SAFETY: the caller guarantees 16 readable bytes at p.
    unsafe {
        let h = vld1q_u16(p as *const u16);
        (f16x4(vget_low_u16(h)), f16x4(vget_high_u16(h)))
    }
}

/// Eight f32 from 8 bf16 at `p`.
#[inline(always)]
unsafe fn load_bf16x8(p: *const u8) -> (float32x4_t, float32x4_t) {
    // SAFETY: the caller guarantees 16 readable bytes at p.
    unsafe {
        let h = vld1q_u16(p as *const u16);
        (
            vreinterpretq_f32_u32(vshll_n_u16::<16>(vget_low_u16(h))),
            vreinterpretq_f32_u32(vshll_high_n_u16::<16>(h)),
        )
    }
}

/// A half-precision row (F16 or BF16, `load` converting eight at a time) against f32: two sets
/// of eight lanes over 16 elements per step, then `hsum8`, then the tail.
#[inline(always)]
unsafe fn half_rows(
    n: usize,
    x: *const u8,
    y: *const u8,
    load: impl Fn(*const u8) -> (float32x4_t, float32x4_t),
    one: impl Fn(*const u8) -> f32,
) -> f32 {
    // SAFETY: x holds n 2-byte values and y n f32 (the caller's guarantee).
    unsafe {
        let z = vdupq_n_f32(0.0);
        let (mut a0, mut a1, mut b0, mut b1) = (z, z, z, z);
        let yf = y as *const f32;
        let mut i = 0;
        while i + 16 <= n {
            let (x0, x1) = load(x.add(2 * i));
            let (x2, x3) = load(x.add(2 * i + 16));
            a0 = vfmaq_f32(a0, x0, vld1q_f32(yf.add(i)));
            a1 = vfmaq_f32(a1, x1, vld1q_f32(yf.add(i + 4)));
            b0 = vfmaq_f32(b0, x2, vld1q_f32(yf.add(i + 8)));
            b1 = vfmaq_f32(b1, x3, vld1q_f32(yf.add(i + 12)));
            i += 16;
        }
        let mut s = hsum8(vaddq_f32(a0, b0), vaddq_f32(a1, b1));
        while i < n {
            s += one(x.add(2 * i)) * yf.add(i).read_unaligned();
            i += 1;
        }
        s
    }
}

#[target_feature(enable = "neon")]
unsafe fn f16_f32(n: usize, x: *const u8, y: *const u8) -> f32 {
    // SAFETY: x holds n f16 and y n f32 (checked by the wrapper or the caller).
    unsafe { half_rows(n, x, y, |p| load_f16x8(p), |p| f16_load(p)) }
}

#[target_feature(enable = "neon")]
unsafe fn bf16_f32(n: usize, x: *const u8, y: *const u8) -> f32 {
    let one = |p: *const u8| {
        // SAFETY: 2 readable bytes at p (the caller's guarantee).
        let b = unsafe { (p as *const u16).read_unaligned() };
        f32::from_bits(u32::from(b) << 16)
    };
    // SAFETY: x holds n bf16 and y n f32 (checked by the wrapper).
    unsafe { half_rows(n, x, y, |p| load_bf16x8(p), one) }
}

#[target_feature(enable = "neon")]
unsafe fn dot_f32_ptr(n: usize, x: *const f32, y: *const f32) -> f32 {
    // SAFETY: x and y point to n f32 each (the caller's guarantee).
    unsafe {
        let z = vdupq_n_f32(0.0);
        let mut acc = [[z; 2]; 4];
        let mut i = 0;
        while i + 32 <= n {
            for (k, a) in acc.iter_mut().enumerate() {
                let o = i + 8 * k;
                a[0] = vfmaq_f32(a[0], vld1q_f32(x.add(o)), vld1q_f32(y.add(o)));
                a[1] = vfmaq_f32(a[1], vld1q_f32(x.add(o + 4)), vld1q_f32(y.add(o + 4)));
            }
            i += 32;
        }
        while i + 8 <= n {
            acc[0][0] = vfmaq_f32(acc[0][0], vld1q_f32(x.add(i)), vld1q_f32(y.add(i)));
            acc[0][1] = vfmaq_f32(acc[0][1], vld1q_f32(x.add(i + 4)), vld1q_f32(y.add(i + 4)));
            i += 8;
        }
        let set = |h: usize| {
            vaddq_f32(
                vaddq_f32(acc[0][h], acc[1][h]),
                vaddq_f32(acc[2][h], acc[3][h]),
            )
        };
        let mut s = hsum8(set(0), set(1));
        while i < n {
            s += *x.add(i) * *y.add(i);
            i += 1;
        }
        s
    }
}

#[target_feature(enable = "neon")]
unsafe fn f32_f32(n: usize, x: *const u8, y: *const u8) -> f32 {
    // SAFETY: x and y hold n f32 each (checked by the wrapper).
    unsafe { dot_f32_ptr(n, x as *const f32, y as *const f32) }
}

safe_wrapper!(dot_f16_f32_neon, f16_f32, 2, 4, 1);
safe_wrapper!(dot_bf16_f32_neon, bf16_f32, 2, 4, 1);
safe_wrapper!(dot_f32_f32_neon, f32_f32, 4, 4, 1);

/// f32 dot of two slices (their common length).
pub(crate) fn dot_f32(x: &[f32], y: &[f32]) -> f32 {
    let n = x.len().min(y.len());
    // SAFETY: plugged in only on NEON CPUs (every aarch64); both pointers cover n values.
    unsafe { dot_f32_ptr(n, x.as_ptr(), y.as_ptr()) }
}

/// Σ x·y with y in f16.
pub(crate) fn dot_f32_f16(x: &[f32], y: &[u16]) -> f32 {
    let n = x.len().min(y.len());
    // SAFETY: NEON present; y covers n f16 (2n bytes), x n f32 (the F16 row's operands).
    unsafe { f16_f32(n, y.as_ptr() as *const u8, x.as_ptr() as *const u8) }
}

/// `y = fma(a, x, y)` over the first `n − n mod 8` elements, `y + a·x` after; `load` gives four
/// f32 of x from element `i`, `one` element `i`.
#[inline(always)]
unsafe fn axpy_body(
    n: usize,
    a: f32,
    y: *mut f32,
    load: impl Fn(usize) -> float32x4_t,
    one: impl Fn(usize) -> f32,
) {
    // SAFETY: y points to n writable f32 and load/one read within x's n values (the caller's
    // guarantee).
    unsafe {
        let body = n - n % 8;
        let mut i = 0;
        while i < body {
            vst1q_f32(y.add(i), vfmaq_n_f32(vld1q_f32(y.add(i)), load(i), a));
            i += 4;
        }
        while i < n {
            *y.add(i) += a * one(i);
            i += 1;
        }
    }
}

#[target_feature(enable = "neon")]
unsafe fn axpy_ptr(n: usize, a: f32, x: *const f32, y: *mut f32) {
    // SAFETY: x and y cover n values (the caller's guarantee).
    unsafe { axpy_body(n, a, y, |i| vld1q_f32(x.add(i)), |i| *x.add(i)) }
}

#[target_feature(enable = "neon")]
unsafe fn axpy_f16_ptr(n: usize, a: f32, x: *const u16, y: *mut f32) {
    // SAFETY: x and y cover n values (the caller's guarantee).
    unsafe {
        axpy_body(
            n,
            a,
            y,
            |i| f16x4(vld1_u16(x.add(i))),
            |i| f16_to_f32(*x.add(i)),
        )
    }
}

/// y += a·x.
pub(crate) fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    let n = x.len().min(y.len());
    // SAFETY: NEON present; both pointers cover n values.
    unsafe { axpy_ptr(n, a, x.as_ptr(), y.as_mut_ptr()) }
}

/// y += a·x with x in f16.
pub(crate) fn axpy_f16(a: f32, x: &[u16], y: &mut [f32]) {
    let n = x.len().min(y.len());
    // SAFETY: NEON present; both pointers cover n values.
    unsafe { axpy_f16_ptr(n, a, x.as_ptr(), y.as_mut_ptr()) }
}

/// f32 → f16 (round to nearest even), element-wise.
pub(crate) fn to_f16(x: &[f32], y: &mut [u16]) {
    let n = x.len().min(y.len());
    let body = n - n % 4;
    for (xc, yc) in x[..body].chunks_exact(4).zip(y[..body].chunks_exact_mut(4)) {
        // SAFETY: NEON present; xc holds 4 f32 and yc 4 writable u16.
        unsafe { vst1_u16(yc.as_mut_ptr(), f32x4_to_f16(vld1q_f32(xc.as_ptr()))) };
    }
    for (xi, yi) in x[body..n].iter().zip(&mut y[body..n]) {
        // SAFETY: NEON present; the lanes past the first are don't-care.
        *yi = unsafe { vget_lane_u16::<0>(f32x4_to_f16(vdupq_n_f32(*xi))) };
    }
}

// ---------------------------------------------------------------------------------------------
// Activation quantizers (bit-identical to the scalar ones)

/// Quantize the 32 values at `x` to i8 at `q` as the scalar Q8_0/Q8_1 quantizers do (scale
/// `amax / 127`, round half away from zero); returns the scale and the sum of the quants.
#[target_feature(enable = "neon")]
unsafe fn q8_block(x: *const f32, q: *mut u8) -> (f32, i32) {
    // SAFETY: the caller guarantees 32 readable f32 at x and 32 writable bytes at q.
    unsafe {
        let v: [float32x4_t; 8] = std::array::from_fn(|k| vld1q_f32(x.add(4 * k)));
        let mut m = vabsq_f32(v[0]);
        for vk in &v[1..] {
            m = vmaxnmq_f32(m, vabsq_f32(*vk));
        }
        let d = vmaxnmvq_f32(m) / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let i: [int32x4_t; 8] = std::array::from_fn(|k| vcvtaq_s32_f32(vmulq_n_f32(v[k], id)));
        let h = |a: usize| vcombine_s16(vqmovn_s32(i[a]), vqmovn_s32(i[a + 1]));
        let b0 = vcombine_s8(vqmovn_s16(h(0)), vqmovn_s16(h(2)));
        let b1 = vcombine_s8(vqmovn_s16(h(4)), vqmovn_s16(h(6)));
        vst1q_s8(q as *mut i8, b0);
        vst1q_s8(q.add(16) as *mut i8, b1);
        let sum = i32::from(vaddlvq_s8(b0)) + i32::from(vaddlvq_s8(b1));
        (d, sum)
    }
}

/// f32 → Q8_0 blocks, bit-identical to `formats::q8_0_from_f32`.
pub(crate) fn q8_0_from_f32(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(34)) {
        // SAFETY: NEON present; x holds 32 values, b 34 bytes.
        let (d, _) = unsafe { q8_block(x.as_ptr(), b.as_mut_ptr().add(2)) };
        put_f16(b, 0, d);
    }
}

/// f32 → Q8_1 blocks, bit-identical to `formats::q8_1_from_f32`.
pub(crate) fn q8_1_from_f32(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(36)) {
        // SAFETY: NEON present; x holds 32 values, b 36 bytes.
        let (d, sum) = unsafe { q8_block(x.as_ptr(), b.as_mut_ptr().add(4)) };
        put_f16(b, 0, d);
        put_f16(b, 2, sum as f32 * d);
    }
}

/// One Q8_K block from 256 values at `x` into the 292 bytes at `b`, as
/// `formats::q8_k_from_f32`: the value of largest magnitude (the first on ties) maps to −127,
/// quants rounded to nearest even, block sums of 16.
#[target_feature(enable = "neon")]
unsafe fn q8_k_block(x: &[f32], b: &mut [u8]) {
    // SAFETY: x holds 256 values and b 292 bytes (the caller's guarantee).
    unsafe {
        let p = x.as_ptr();
        let mut m = vabsq_f32(vld1q_f32(p));
        for k in 1..64 {
            m = vmaxnmq_f32(m, vabsq_f32(vld1q_f32(p.add(4 * k))));
        }
        let amax = vmaxnmvq_f32(m);
        if amax == 0.0 {
            b.fill(0);
            return;
        }
        let max = x.iter().copied().find(|v| v.abs() == amax).unwrap_or(amax);
        let iscale = -127.0 / max;
        b[0..4].copy_from_slice(&(1.0 / iscale).to_le_bytes());
        let q = b.as_mut_ptr().add(4) as *mut i8;
        let cap = vdupq_n_s32(127);
        for g in 0..16 {
            let i: [int32x4_t; 4] = std::array::from_fn(|k| {
                let v = vmulq_n_f32(vld1q_f32(p.add(16 * g + 4 * k)), iscale);
                vminq_s32(vcvtnq_s32_f32(v), cap)
            });
            let h0 = vcombine_s16(vmovn_s32(i[0]), vmovn_s32(i[1]));
            let h1 = vcombine_s16(vmovn_s32(i[2]), vmovn_s32(i[3]));
            let q8 = vcombine_s8(vmovn_s16(h0), vmovn_s16(h1));
            vst1q_s8(q.add(16 * g), q8);
            let s = vaddlvq_s8(q8);
            b[260 + 2 * g..262 + 2 * g].copy_from_slice(&s.to_le_bytes());
        }
    }
}

/// f32 → Q8_K blocks, bit-identical to `formats::q8_k_from_f32`.
pub(crate) fn q8_k_from_f32(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK_K).zip(dst.chunks_exact_mut(292)) {
        // SAFETY: NEON present; x holds 256 values, b 292 bytes.
        unsafe { q8_k_block(x, b) };
    }
}

// ---------------------------------------------------------------------------------------------
// LSTM epilogue (the AVX2 one's operations, four lanes at a time)

#[inline(always)]
unsafe fn exp4(x: float32x4_t) -> float32x4_t {
    // SAFETY: pure register arithmetic.
    unsafe {
        let x = vminq_f32(vmaxq_f32(x, vdupq_n_f32(-87.3)), vdupq_n_f32(88.3));
        let n = vrndnq_f32(vmulq_f32(x, vdupq_n_f32(std::f32::consts::LOG2_E)));
        let r = vfmsq_f32(x, n, vdupq_n_f32(0.693_145_75));
        let r = vfmsq_f32(r, n, vdupq_n_f32(1.428_606_8e-6));
        let mut p = vdupq_n_f32(1.0 / 5040.0);
        for c in [
            1.0 / 720.0,
            1.0 / 120.0,
            1.0 / 24.0,
            1.0 / 6.0,
            0.5,
            1.0,
            1.0,
        ] {
            p = vfmaq_f32(vdupq_n_f32(c), p, r);
        }
        let e = vshlq_n_s32::<23>(vaddq_s32(vcvtnq_s32_f32(n), vdupq_n_s32(127)));
        vmulq_f32(p, vreinterpretq_f32_s32(e))
    }
}

#[inline(always)]
unsafe fn sigmoid_tanh4(a: float32x4_t, b: float32x4_t) -> float32x4_t {
    // SAFETY: pure register arithmetic.
    unsafe {
        let clamp =
            |v: float32x4_t, m: f32| vminq_f32(vmaxq_f32(v, vdupq_n_f32(-m)), vdupq_n_f32(m));
        let one = vdupq_n_f32(1.0);
        let ea = exp4(vsubq_f32(vdupq_n_f32(0.0), clamp(a, 30.0)));
        let eb = exp4(vmulq_f32(clamp(b, 9.0), vdupq_n_f32(2.0)));
        let den = vmulq_f32(vaddq_f32(one, ea), vaddq_f32(eb, one));
        vdivq_f32(vsubq_f32(eb, one), den)
    }
}

#[target_feature(enable = "neon")]
fn lstm_cell_neon(z: &[f32], xp: &[f32], bias: &[f32], c: &mut [f32], h: &mut [f32]) {
    let n = c.len();
    assert!(h.len() == n && z.len() == 4 * n && xp.len() == 4 * n && bias.len() == 4 * n);
    // Whole groups of eight units (as the AVX2 kernel), four lanes at a time.
    let body = n - n % 8;
    // SAFETY: every load and store is at j + 4 ≤ body ≤ n within a gate block of n values
    // (k·n + j + 4 ≤ 4n), the lengths asserted above.
    unsafe {
        let pre = |k: usize, j: usize| {
            let o = k * n + j;
            vaddq_f32(
                vaddq_f32(vld1q_f32(z.as_ptr().add(o)), vld1q_f32(xp.as_ptr().add(o))),
                vld1q_f32(bias.as_ptr().add(o)),
            )
        };
        let one = vdupq_n_f32(1.0);
        let mut j = 0;
        while j < body {
            let (gi, gf, gg, go) = (pre(0, j), pre(1, j), pre(2, j), pre(3, j));
            let ef = exp4(vsubq_f32(vdupq_n_f32(0.0), gf));
            let f = vdivq_f32(one, vaddq_f32(one, ef));
            let cj = vfmaq_f32(sigmoid_tanh4(gi, gg), f, vld1q_f32(c.as_ptr().add(j)));
            vst1q_f32(c.as_mut_ptr().add(j), cj);
            vst1q_f32(h.as_mut_ptr().add(j), sigmoid_tanh4(go, cj));
            j += 4;
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

/// The LSTM gate epilogue with NEON.
pub(crate) fn lstm_cell(z: &[f32], xp: &[f32], bias: &[f32], c: &mut [f32], h: &mut [f32]) {
    // SAFETY: NEON present (plugged in only on NEON CPUs).
    unsafe { lstm_cell_neon(z, xp, bias, c, h) }
}
