//! Tiles (several weight rows × several activations per call, each weight block unpacked once
//! for all of them) for Q4_0, Q5_0, Q8_0, Q4_1, Q5_1, Q4_K and Q6_K.
//!
//! * One row × four activations (`tile4`, `tile4_k`), generic over the integer primitives:
//!   `sdot` at the `Dotprod` level, widening multiplies at `Neon`.
//! * Two rows × four activations with `smmla` (`I8mm` level, block-sum formats): `smmla` takes
//!   eight bytes of two weight rows and eight bytes of two activations and adds the 2×2 block of
//!   dot products to an i32 accumulator, so four of them give a block's sums for two rows × two
//!   activations. The activations of four tokens are interleaved in pairs once per call.
//!
//! Every tile computes each (row, activation) element with the integer sums and float
//! operations of the level's single dot (`crate::contract`'s order), so a tile gives exactly the
//! dot's bits. Activations beyond a multiple of four, and rows too long for the stack data, go
//! to the single dot; an odd last row of the `smmla` tile to the one-row tile.

#![allow(clippy::missing_safety_doc)]

use std::arch::aarch64::*;
use std::arch::asm;

use super::neon::{f16_load, f16x4_strided, hsum4_s32, hsum8, sum_residues, Dot, Isa, Neon};
use super::quants::{
    acts, fma8, k4_summ, k_group, nibbles, q6_k_groups, Blocks, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
};
use crate::contract::{by_residue, single_tail, tile_wrapper, TileGeom, TILE_MAX_BLOCKS};
use crate::generic::formats::{scale_min_k4, QK, QK_K};

/// The single-dot bodies' signature: `(nb, x, y) -> f32`.
type Single = unsafe fn(usize, *const u8, *const u8) -> f32;

/// Four results to `o`, `o + stride`, `o + 2·stride`, `o + 3·stride`.
#[inline(always)]
unsafe fn store4(o: *mut f32, stride: usize, v: float32x4_t) {
    let mut x = [0f32; 4];
    // SAFETY: x is a local array of four f32; the caller guarantees the four addresses.
    unsafe {
        vst1q_f32(x.as_mut_ptr(), v);
        for (k, x) in x.iter().enumerate() {
            *o.add(k * stride) = *x;
        }
    }
}

/// Per-call activation data of four tokens: per block, their scales (and Q8_1's `s_a`).
struct Quad {
    d: [float32x4_t; TILE_MAX_BLOCKS],
    s: [float32x4_t; TILE_MAX_BLOCKS],
}

impl Quad {
    #[inline(always)]
    unsafe fn fill<F: Blocks>(&mut self, nb: usize, a0: *const u8, arb: usize) {
        // SAFETY: the caller guarantees four activation rows of nb ≤ TILE_MAX_BLOCKS blocks
        // from a0, arb bytes apart.
        unsafe {
            for i in 0..nb {
                self.d[i] = f16x4_strided(a0.add(i * F::A), arb, 4);
                if F::MIN {
                    self.s[i] = f16x4_strided(a0.add(i * F::A + 2), arb, 4);
                }
            }
        }
    }
}

/// One weight row (`wr`) against the four activation rows at `a0` (`arb` apart): the four
/// results, each as the single dot computes it.
#[inline(always)]
unsafe fn row4<F: Blocks, I: Isa>(
    nb: usize,
    wr: *const u8,
    a0: *const u8,
    arb: usize,
    q: &Quad,
) -> float32x4_t {
    // SAFETY: wr holds nb weight blocks and a0 four activation rows of nb blocks (the
    // caller's guarantee); nb ≤ TILE_MAX_BLOCKS (the size of q's arrays).
    unsafe {
        let z = vdupq_n_f32(0.0);
        let mut accs = [z; 4];
        let mut exts = [z; 4];
        macro_rules! block {
            ($i:expr, $k:literal) => {{
                let i = $i;
                let xb = wr.add(i * F::W);
                let (w0, w1) = F::quants(xb);
                let y = a0.add(i * F::A + F::AQ);
                // (A macro, not a closure: see `quants::block_sum`.)
                macro_rules! part {
                    ($u:expr) => {{
                        let (b0, b1) = acts(y.add($u * arb));
                        if F::SMALL {
                            I::block_small(w0, b0, w1, b1)
                        } else {
                            I::block_any(w0, b0, w1, b1)
                        }
                    }};
                }
                let s = hsum4_s32(part!(0), part!(1), part!(2), part!(3));
                let d = vmulq_n_f32(*q.d.get_unchecked(i), f16_load(xb));
                accs[$k] = vfmaq_f32(accs[$k], d, vcvtq_f32_s32(s));
                if F::MIN {
                    let m = vmulq_n_f32(*q.s.get_unchecked(i), f16_load(xb.add(2)));
                    exts[$k] = vaddq_f32(exts[$k], m);
                }
            }};
        }
        by_residue!(nb, block);
        if F::MIN {
            vaddq_f32(sum_residues(&accs), sum_residues(&exts))
        } else {
            sum_residues(&accs)
        }
    }
}

/// Rows × activations, one row against four activations at a time.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn tile4<F: Blocks, I: Isa>(
    nb: usize,
    w: *const u8,
    rows: usize,
    a: *const u8,
    n_acts: usize,
    out: *mut f32,
    row_stride: usize,
    tok_stride: usize,
    single: Single,
) {
    // SAFETY: w holds rows·nb weight blocks, a n_acts·nb activation blocks and out
    // (rows-1)·row_stride + (n_acts-1)·tok_stride + 1 values (checked by the wrapper).
    unsafe {
        let (wrb, arb) = (nb * F::W, nb * F::A);
        let mut t = 0;
        if n_acts >= 4 && nb <= TILE_MAX_BLOCKS {
            let z = vdupq_n_f32(0.0);
            let mut q = Quad {
                d: [z; TILE_MAX_BLOCKS],
                s: [z; TILE_MAX_BLOCKS],
            };
            while t + 4 <= n_acts {
                let a0 = a.add(t * arb);
                q.fill::<F>(nb, a0, arb);
                for r in 0..rows {
                    let v = row4::<F, I>(nb, w.add(r * wrb), a0, arb, &q);
                    store4(out.add(r * row_stride + t * tok_stride), tok_stride, v);
                }
                t += 4;
            }
        }
        let geom = TileGeom {
            rows,
            wrb,
            arb,
            row_stride,
            tok_stride,
        };
        single_tail(
            &geom,
            w,
            a,
            t,
            n_acts,
            out,
            |_, _| {},
            |x, y| single(nb, x, y),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// i8mm: two rows × two activations per smmla

/// `acc + smmla(a, b)`: the 2×2 block `[a0·b0, a0·b1, a1·b0, a1·b1]` of the 8-byte rows of
/// `a` (`a0` = bytes 0..8, `a1` = 8..16) and `b`.
#[inline]
#[target_feature(enable = "i8mm")]
unsafe fn smmla(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // SAFETY: smmla is available (this function's target feature, which only code reached
    // after i8mm detection calls); pure register operation.
    unsafe {
        asm!("smmla {0:v}.4s, {1:v}.16b, {2:v}.16b", inout(vreg) acc, in(vreg) a, in(vreg) b,
             options(pure, nomem, nostack, preserves_flags))
    };
    acc
}

/// The four 16-byte `smmla` operands of two 32-byte rows: chunk k holds bytes 8k..8k+8 of the
/// first row, then of the second.
#[inline(always)]
unsafe fn pair_chunks(
    (p0, p1): (int8x16_t, int8x16_t),
    (q0, q1): (int8x16_t, int8x16_t),
) -> [int8x16_t; 4] {
    // SAFETY: pure register arithmetic.
    unsafe {
        let z = |a: int8x16_t, b: int8x16_t, hi: bool| {
            let (a, b) = (vreinterpretq_s64_s8(a), vreinterpretq_s64_s8(b));
            vreinterpretq_s8_s64(if hi {
                vzip2q_s64(a, b)
            } else {
                vzip1q_s64(a, b)
            })
        };
        [
            z(p0, q0, false),
            z(p0, q0, true),
            z(p1, q1, false),
            z(p1, q1, true),
        ]
    }
}

/// Rows × activations, two rows × four activations at a time with `smmla`; an odd last row
/// takes the one-row tile.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn tile_mm<F: Blocks>(
    nb: usize,
    w: *const u8,
    rows: usize,
    a: *const u8,
    n_acts: usize,
    out: *mut f32,
    row_stride: usize,
    tok_stride: usize,
    single: Single,
) {
    // SAFETY: w holds rows·nb weight blocks, a n_acts·nb activation blocks and out
    // (rows-1)·row_stride + (n_acts-1)·tok_stride + 1 values (checked by the wrapper); the
    // caller has dotprod and i8mm.
    unsafe {
        let (wrb, arb) = (nb * F::W, nb * F::A);
        let mut t = 0;
        if n_acts >= 4 && rows >= 2 && nb <= TILE_MAX_BLOCKS {
            let z = vdupq_n_f32(0.0);
            let mut q = Quad {
                d: [z; TILE_MAX_BLOCKS],
                s: [z; TILE_MAX_BLOCKS],
            };
            // Per block: the two activation pairs' interleaved quants (4 chunks each), and
            // their scales as [dA, dB, dA, dB] (and s_a likewise).
            let mut ys: Vec<[[int8x16_t; 4]; 2]> = Vec::with_capacity(nb);
            let mut dp: Vec<[float32x4_t; 2]> = Vec::with_capacity(nb);
            let mut sp: Vec<[float32x4_t; 2]> = Vec::with_capacity(if F::MIN { nb } else { 0 });
            let even = rows / 2 * 2;
            while t + 4 <= n_acts {
                let a0 = a.add(t * arb);
                ys.clear();
                dp.clear();
                sp.clear();
                for i in 0..nb {
                    let y = |u: usize| acts(a0.add(u * arb + i * F::A + F::AQ));
                    ys.push([pair_chunks(y(0), y(1)), pair_chunks(y(2), y(3))]);
                    // [v0, v1, v0, v1] and [v2, v3, v2, v3]
                    let dup = |v: float32x4_t| {
                        [
                            vcombine_f32(vget_low_f32(v), vget_low_f32(v)),
                            vcombine_f32(vget_high_f32(v), vget_high_f32(v)),
                        ]
                    };
                    dp.push(dup(f16x4_strided(a0.add(i * F::A), arb, 4)));
                    if F::MIN {
                        sp.push(dup(f16x4_strided(a0.add(i * F::A + 2), arb, 4)));
                    }
                }
                for r in (0..even).step_by(2) {
                    let w0 = w.add(r * wrb);
                    let w1 = w0.add(wrb);
                    let mut accs = [[z; 4]; 2];
                    let mut exts = [[z; 4]; 2];
                    macro_rules! block {
                        ($i:expr, $k:literal) => {{
                            let i = $i;
                            let (x0, x1) = (w0.add(i * F::W), w1.add(i * F::W));
                            let wc = pair_chunks(F::quants(x0), F::quants(x1));
                            let (d0, d1) = (f16_load(x0), f16_load(x1));
                            let dw = vcombine_f32(vdup_n_f32(d0), vdup_n_f32(d1));
                            let yc = ys.get_unchecked(i);
                            let dpi = dp.get_unchecked(i);
                            for p in 0..2 {
                                let mut s = vdupq_n_s32(0);
                                for c in 0..4 {
                                    s = smmla(s, wc[c], yc[p][c]);
                                }
                                let d = vmulq_f32(dw, dpi[p]);
                                accs[p][$k] = vfmaq_f32(accs[p][$k], d, vcvtq_f32_s32(s));
                            }
                            if F::MIN {
                                let (m0, m1) = (f16_load(x0.add(2)), f16_load(x1.add(2)));
                                let mw = vcombine_f32(vdup_n_f32(m0), vdup_n_f32(m1));
                                let spi = sp.get_unchecked(i);
                                for p in 0..2 {
                                    exts[p][$k] = vaddq_f32(exts[p][$k], vmulq_f32(mw, spi[p]));
                                }
                            }
                        }};
                    }
                    by_residue!(nb, block);
                    for p in 0..2 {
                        let mut v = sum_residues(&accs[p]);
                        if F::MIN {
                            v = vaddq_f32(v, sum_residues(&exts[p]));
                        }
                        // lanes: (r, A), (r, B), (r + 1, A), (r + 1, B); A = t + 2p
                        let mut x = [0f32; 4];
                        vst1q_f32(x.as_mut_ptr(), v);
                        let o = out.add(r * row_stride + (t + 2 * p) * tok_stride);
                        *o = x[0];
                        *o.add(tok_stride) = x[1];
                        *o.add(row_stride) = x[2];
                        *o.add(row_stride + tok_stride) = x[3];
                    }
                }
                if even < rows {
                    q.fill::<F>(nb, a0, arb);
                    let v = row4::<F, Dot>(nb, w.add(even * wrb), a0, arb, &q);
                    store4(out.add(even * row_stride + t * tok_stride), tok_stride, v);
                }
                t += 4;
            }
        }
        let geom = TileGeom {
            rows,
            wrb,
            arb,
            row_stride,
            tok_stride,
        };
        single_tail(
            &geom,
            w,
            a,
            t,
            n_acts,
            out,
            |_, _| {},
            |x, y| single(nb, x, y),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// K-quant tiles: one row × four activations

/// Q4_K: one weight row against four Q8_K rows (`arb` apart from `a0`).
#[inline(always)]
unsafe fn row4_q4_k<I: Isa>(nb: usize, wr: *const u8, a0: *const u8, arb: usize) -> [f32; 4] {
    // SAFETY: wr holds nb blocks of 144 bytes and a0 four rows of nb Q8_K blocks (the
    // caller's guarantee).
    unsafe {
        let z = vdupq_n_f32(0.0);
        let mut acc = [[z; 2]; 4];
        let mut acc_m = [0f32; 4];
        for i in 0..nb {
            let xb = wr.add(i * 144);
            let (dw, dminw) = (f16_load(xb), f16_load(xb.add(2)));
            let sc = std::slice::from_raw_parts(xb.add(4), 12);
            let mut scales = [0u8; 8];
            let mut mins = [0u8; 8];
            for j in 0..8 {
                (scales[j], mins[j]) = scale_min_k4(j, sc);
            }
            let y = |u: usize| a0.add(u * arb + i * 292);
            let mut sumi = [[vdupq_n_s32(0); 2]; 4];
            for j in 0..4 {
                let (l0, h0) = nibbles(xb.add(16 + 32 * j));
                let (l1, h1) = nibbles(xb.add(32 + 32 * j));
                let (s1, s2) = (i32::from(scales[2 * j]), i32::from(scales[2 * j + 1]));
                for (u, s) in sumi.iter_mut().enumerate() {
                    k_group::<I>(s, (l0, l1), y(u).add(4 + 64 * j), (s1, s1));
                    k_group::<I>(s, (h0, h1), y(u).add(4 + 64 * j + 32), (s2, s2));
                }
            }
            for u in 0..4 {
                let dy = (y(u) as *const f32).read_unaligned();
                fma8(&mut acc[u], sumi[u], dy * dw);
                let summ = k4_summ(mins, y(u).add(260));
                acc_m[u] += (dy * dminw) * summ as f32;
            }
        }
        std::array::from_fn(|u| hsum8(acc[u][0], acc[u][1]) - acc_m[u])
    }
}

/// Q6_K: one weight row against four Q8_K rows.
#[inline(always)]
unsafe fn row4_q6_k<I: Isa>(nb: usize, wr: *const u8, a0: *const u8, arb: usize) -> [f32; 4] {
    // SAFETY: wr holds nb blocks of 210 bytes and a0 four rows of nb Q8_K blocks (the
    // caller's guarantee).
    unsafe {
        let z = vdupq_n_f32(0.0);
        let mut acc = [[z; 2]; 4];
        for i in 0..nb {
            let xb = wr.add(i * 210);
            let dw = f16_load(xb.add(208));
            let y = |u: usize| a0.add(u * arb + i * 292);
            let mut sumi = [[vdupq_n_s32(0); 2]; 4];
            for n in 0..2 {
                let groups = q6_k_groups(xb.add(64 * n), xb.add(128 + 32 * n));
                let sc = xb.add(192 + 8 * n) as *const i8;
                for (g, wg) in groups.into_iter().enumerate() {
                    let s = (i32::from(*sc.add(2 * g)), i32::from(*sc.add(2 * g + 1)));
                    for (u, su) in sumi.iter_mut().enumerate() {
                        k_group::<I>(su, wg, y(u).add(4 + 128 * n + 32 * g), s);
                    }
                }
            }
            for u in 0..4 {
                let dy = (y(u) as *const f32).read_unaligned();
                fma8(&mut acc[u], sumi[u], dy * dw);
            }
        }
        std::array::from_fn(|u| hsum8(acc[u][0], acc[u][1]))
    }
}

/// K-quant rows × activations, one row against four activations at a time.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn tile4_k(
    nb: usize,
    (w, wsize, rows): (*const u8, usize, usize),
    a: *const u8,
    n_acts: usize,
    out: *mut f32,
    (row_stride, tok_stride): (usize, usize),
    row4: impl Fn(*const u8, *const u8) -> [f32; 4],
    single: Single,
) {
    // SAFETY: w holds rows·nb weight blocks, a n_acts·nb Q8_K blocks and out
    // (rows-1)·row_stride + (n_acts-1)·tok_stride + 1 values (checked by the wrapper).
    unsafe {
        let (wrb, arb) = (nb * wsize, nb * 292);
        let mut t = 0;
        while t + 4 <= n_acts {
            let a0 = a.add(t * arb);
            for r in 0..rows {
                let v = row4(w.add(r * wrb), a0);
                let o = out.add(r * row_stride + t * tok_stride);
                for (u, v) in v.iter().enumerate() {
                    *o.add(u * tok_stride) = *v;
                }
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
        single_tail(
            &geom,
            w,
            a,
            t,
            n_acts,
            out,
            |_, _| {},
            |x, y| single(nb, x, y),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Per-level bodies and wrappers

/// One block-sum format's tile at one level: [`tile4`] over its single dot.
macro_rules! block_tile {
    ($feat:literal, $isa:ty, $name:ident, $f:ty, $single:path) => {
        #[allow(clippy::too_many_arguments)]
        #[target_feature(enable = $feat)]
        unsafe fn $name(
            nb: usize,
            w: *const u8,
            rows: usize,
            a: *const u8,
            n: usize,
            out: *mut f32,
            rs: usize,
            ts: usize,
        ) {
            // SAFETY: operands checked by the wrapper.
            unsafe { tile4::<$f, $isa>(nb, w, rows, a, n, out, rs, ts, $single) }
        }
    };
}

macro_rules! level_tiles {
    ($isa:ty, $feat:literal, $m:ident, $dots:path) => {
        pub(crate) mod $m {
            use super::*;
            use $dots as d;

            block_tile!($feat, $isa, q4_0, Q4_0, d::q4_0);
            block_tile!($feat, $isa, q8_0, Q8_0, d::q8_0);
            block_tile!($feat, $isa, q4_1, Q4_1, d::q4_1);
            block_tile!($feat, $isa, q5_0, Q5_0, d::q5_0);
            block_tile!($feat, $isa, q5_1, Q5_1, d::q5_1);
            #[allow(clippy::too_many_arguments)]
            #[target_feature(enable = $feat)]
            unsafe fn q4_k(
                nb: usize,
                w: *const u8,
                rows: usize,
                a: *const u8,
                n: usize,
                out: *mut f32,
                rs: usize,
                ts: usize,
            ) {
                // SAFETY: operands checked by the wrapper.
                unsafe {
                    let arb = nb * 292;
                    let row = |wr: *const u8, a0: *const u8| row4_q4_k::<$isa>(nb, wr, a0, arb);
                    tile4_k(nb, (w, 144, rows), a, n, out, (rs, ts), row, d::q4_k)
                }
            }
            #[allow(clippy::too_many_arguments)]
            #[target_feature(enable = $feat)]
            unsafe fn q6_k(
                nb: usize,
                w: *const u8,
                rows: usize,
                a: *const u8,
                n: usize,
                out: *mut f32,
                rs: usize,
                ts: usize,
            ) {
                // SAFETY: operands checked by the wrapper.
                unsafe {
                    let arb = nb * 292;
                    let row = |wr: *const u8, a0: *const u8| row4_q6_k::<$isa>(nb, wr, a0, arb);
                    tile4_k(nb, (w, 210, rows), a, n, out, (rs, ts), row, d::q6_k)
                }
            }

            tile_wrapper!(tile_q4_0_q8_0, q4_0, 18, 34, QK);
            tile_wrapper!(tile_q8_0_q8_0, q8_0, 34, 34, QK);
            tile_wrapper!(tile_q4_1_q8_1, q4_1, 20, 36, QK);
            tile_wrapper!(tile_q5_0_q8_0, q5_0, 22, 34, QK);
            tile_wrapper!(tile_q5_1_q8_1, q5_1, 24, 36, QK);
            tile_wrapper!(tile_q4_k_q8_k, q4_k, 144, 292, QK_K);
            tile_wrapper!(tile_q6_k_q8_k, q6_k, 210, 292, QK_K);
        }
    };
}

level_tiles!(Neon, "neon", neon, super::super::quants::neon);
level_tiles!(Dot, "neon,dotprod", dotprod, super::super::quants::dotprod);

pub(crate) mod i8mm {
    use super::*;
    use crate::arch::aarch64::quants::dotprod as d;

    macro_rules! mm {
        ($name:ident, $f:ty, $single:path) => {
            #[allow(clippy::too_many_arguments)]
            #[target_feature(enable = "neon,dotprod,i8mm")]
            unsafe fn $name(
                nb: usize,
                w: *const u8,
                rows: usize,
                a: *const u8,
                n: usize,
                out: *mut f32,
                rs: usize,
                ts: usize,
            ) {
                // SAFETY: operands checked by the wrapper.
                unsafe { tile_mm::<$f>(nb, w, rows, a, n, out, rs, ts, $single) }
            }
        };
    }
    mm!(q4_0, Q4_0, d::q4_0);
    mm!(q8_0, Q8_0, d::q8_0);
    mm!(q4_1, Q4_1, d::q4_1);
    mm!(q5_0, Q5_0, d::q5_0);
    mm!(q5_1, Q5_1, d::q5_1);

    tile_wrapper!(tile_q4_0_q8_0, q4_0, 18, 34, QK);
    tile_wrapper!(tile_q8_0_q8_0, q8_0, 34, 34, QK);
    tile_wrapper!(tile_q4_1_q8_1, q4_1, 20, 36, QK);
    tile_wrapper!(tile_q5_0_q8_0, q5_0, 22, 34, QK);
    tile_wrapper!(tile_q5_1_q8_1, q5_1, 24, 36, QK);
}
