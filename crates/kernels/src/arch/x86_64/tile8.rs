//! Eight-row tiles of the 32-block formats (Q4_0, Q5_0, Q8_0 against Q8_0; Q4_1, Q5_1 against
//! Q8_1), for four or more activations (prefill).
//!
//! Eight weight rows are taken at a time and each of their blocks is transposed in registers, so
//! that 32-bit lane j of register k holds quants 4k..4k+4 of row j. Against four broadcast
//! activation bytes, one instruction then advances all eight rows' block sums: `vpdpbusd`
//! (AVX-VNNI: four u8·i8 products added into each i32 lane), or `vpmaddubsw` (AVX2: two
//! products into each i16 half-lane), whose results are added in i16 as long as no sum can
//! overflow (eight registers for 4-bit quants, four for 5-bit) and then widened by one
//! `vpmaddwd` each. Either way a block costs about eight such instructions per activation row
//! for eight rows, with no horizontal reduction; the transposition is paid once per block and
//! shared by every activation row of the call. Q8_0's unsigned quants (q + 128) would overflow
//! `vpmaddubsw`'s pair sums, so at AVX2 it keeps the four-activation tile of `avx2_tiles`.
//!
//! The integer block sums are exact, and the float work is the AVX2 kernels' (per block,
//! `acc[i mod 4] += (d_w·d_a)·S`, the four residues summed as `(a0 + a1) + (a2 + a3)`), so every
//! result is bit-identical to the single-vector AVX2 kernel's: a token's output does not depend
//! on the kernel level, the batch or the rows around it. Calls with fewer than four activation
//! rows take the rows one at a time (`rows::singles`); rows beyond a multiple of eight, and
//! rows too long for `singles`' stack data, go to the four-activation AVX2 tile.

use std::arch::x86_64::*;

use super::avx2::f16_load;
use super::rows::{
    singles, sum_i8, Avx2, Format, RowIsa, Vnni, MAX_BLOCKS, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
};
use crate::contract::{tile_wrapper, TileGeom};
use crate::generic::formats::QK;

/// Transpose eight rows of eight 32-bit lanes: lane j of result k is lane k of row j.
#[inline(always)]
unsafe fn transpose8(r: [__m256i; 8]) -> [__m256i; 8] {
    // SAFETY: pure register arithmetic under the caller's target features.
    unsafe {
        let t0 = _mm256_unpacklo_epi32(r[0], r[1]);
        let t1 = _mm256_unpackhi_epi32(r[0], r[1]);
        let t2 = _mm256_unpacklo_epi32(r[2], r[3]);
        let t3 = _mm256_unpackhi_epi32(r[2], r[3]);
        let t4 = _mm256_unpacklo_epi32(r[4], r[5]);
        let t5 = _mm256_unpackhi_epi32(r[4], r[5]);
        let t6 = _mm256_unpacklo_epi32(r[6], r[7]);
        let t7 = _mm256_unpackhi_epi32(r[6], r[7]);
        // Lanes k and k + 4 of rows 0-3 (u0..u3) and rows 4-7 (u4..u7).
        let u0 = _mm256_unpacklo_epi64(t0, t2);
        let u1 = _mm256_unpackhi_epi64(t0, t2);
        let u2 = _mm256_unpacklo_epi64(t1, t3);
        let u3 = _mm256_unpackhi_epi64(t1, t3);
        let u4 = _mm256_unpacklo_epi64(t4, t6);
        let u5 = _mm256_unpackhi_epi64(t4, t6);
        let u6 = _mm256_unpacklo_epi64(t5, t7);
        let u7 = _mm256_unpackhi_epi64(t5, t7);
        [
            _mm256_permute2x128_si256::<0x20>(u0, u4),
            _mm256_permute2x128_si256::<0x20>(u1, u5),
            _mm256_permute2x128_si256::<0x20>(u2, u6),
            _mm256_permute2x128_si256::<0x20>(u3, u7),
            _mm256_permute2x128_si256::<0x31>(u0, u4),
            _mm256_permute2x128_si256::<0x31>(u1, u5),
            _mm256_permute2x128_si256::<0x31>(u2, u6),
            _mm256_permute2x128_si256::<0x31>(u3, u7),
        ]
    }
}

/// The eight f16 values at `p + j·stride` as f32.
#[inline(always)]
unsafe fn f16x8_strided(p: *const u8, stride: usize) -> __m256 {
    // SAFETY: the caller guarantees 2 readable bytes at p + j·stride for j < 8.
    unsafe {
        let h = |j: usize| (p.add(j * stride) as *const u16).read_unaligned() as i16;
        _mm256_cvtph_ps(_mm_setr_epi16(
            h(0),
            h(1),
            h(2),
            h(3),
            h(4),
            h(5),
            h(6),
            h(7),
        ))
    }
}

/// Per lane: (a0 + a1) + (a2 + a3).
#[inline(always)]
unsafe fn sum_residues8(a: &[__m256]) -> __m256 {
    // SAFETY: pure register arithmetic under the caller's target features.
    unsafe { _mm256_add_ps(_mm256_add_ps(a[0], a[1]), _mm256_add_ps(a[2], a[3])) }
}

/// How the eight-row tile forms eight rows' block sums against one activation block.
trait Tile8Isa: RowIsa {
    /// `init` plus, per lane j, Σ over k of row j's four quants in lane j of `wk[k]` (unsigned)
    /// times the four activation quants at `y + 4k`.
    unsafe fn block_sums<F: Format>(wk: &[__m256i; 8], y: *const u8, init: __m256i) -> __m256i;
}

impl Tile8Isa for Vnni {
    #[inline(always)]
    unsafe fn block_sums<F: Format>(wk: &[__m256i; 8], y: *const u8, init: __m256i) -> __m256i {
        // SAFETY: 32 readable bytes at y (the caller's guarantee); AVX-VNNI enabled.
        unsafe {
            let mut s = init;
            for (k, wk) in wk.iter().enumerate() {
                let b = _mm256_set1_epi32((y.add(4 * k) as *const i32).read_unaligned());
                s = _mm256_dpbusd_avx_epi32(s, *wk, b);
            }
            s
        }
    }
}

impl Tile8Isa for Avx2 {
    #[inline(always)]
    unsafe fn block_sums<F: Format>(wk: &[__m256i; 8], y: *const u8, init: __m256i) -> __m256i {
        // `vpmaddubsw` pair sums of unsigned quants up to 31 against i8 activations fit an i16
        // (Q8_0's 255 would not).
        const { assert!(F::UMAX <= 31) };
        // SAFETY: 32 readable bytes at y (the caller's guarantee); AVX2 enabled. A pair sum is
        // at most 2·UMAX·128 in magnitude, so `per` of them fit an i16.
        unsafe {
            let per = (i16::MAX as i32 / (2 * F::UMAX * 128)) as usize;
            let mut s = init;
            let mut k = 0;
            while k < 8 {
                let n = per.min(8 - k);
                let mut s16 = _mm256_setzero_si256();
                for (kk, w) in wk.iter().enumerate().skip(k).take(n) {
                    let b = _mm256_set1_epi32((y.add(4 * kk) as *const i32).read_unaligned());
                    let p = _mm256_maddubs_epi16(*w, b);
                    s16 = if kk == k { p } else { _mm256_add_epi16(s16, p) };
                }
                s = _mm256_add_epi32(s, _mm256_madd_epi16(s16, _mm256_set1_epi16(1)));
                k += n;
            }
            s
        }
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn tile<F: Format, I: Tile8Isa>(
    nb: usize,
    w: *const u8,
    rows: usize,
    a: *const u8,
    n_acts: usize,
    out: *mut f32,
    row_stride: usize,
    tok_stride: usize,
) {
    // SAFETY: w holds rows·nb weight blocks, a n_acts·nb activation blocks and out
    // (rows-1)·row_stride + (n_acts-1)·tok_stride + 1 values (checked by the wrapper).
    unsafe {
        let (wrb, arb) = (nb * F::W, nb * F::A);
        // Few activations: no transposition to share; one dot at a time (`singles`).
        let full = if n_acts >= 4 { rows / 8 * 8 } else { 0 };
        if full > 0 {
            // Per activation block: its scale, and −off·Σa (the block sums' starting value; or
            // Q8_1's s_a for the minimum).
            let n = n_acts * nb;
            let mut da = Vec::with_capacity(n);
            let mut corr = Vec::with_capacity(if F::OFF != 0 { n } else { 0 });
            let mut sa = Vec::with_capacity(if F::MIN { n } else { 0 });
            for t in 0..n_acts {
                for i in 0..nb {
                    let y = a.add(t * arb + i * F::A);
                    da.push(f16_load(y));
                    if F::OFF != 0 {
                        corr.push(-F::OFF * sum_i8(y.add(F::AQ)));
                    }
                    if F::MIN {
                        sa.push(f16_load(y.add(2)));
                    }
                }
            }
            // Four residue accumulators per activation row (and four for the minimum term).
            let mut acc = vec![_mm256_setzero_ps(); n_acts * 4];
            let mut ext = vec![_mm256_setzero_ps(); if F::MIN { n_acts * 4 } else { 0 }];
            let mut sums = [0f32; 8];
            for g in (0..full).step_by(8) {
                // Each residue's first block starts its accumulator from +0.0 (below); only
                // residues no block reaches need zeroing here.
                if nb < 4 {
                    acc.fill(_mm256_setzero_ps());
                    ext.fill(_mm256_setzero_ps());
                }
                let wg = w.add(g * wrb);
                for i in 0..nb {
                    let xb = wg.add(i * F::W);
                    let wk = transpose8(std::array::from_fn(|j| F::unsigned(xb.add(j * wrb))));
                    let dw = f16x8_strided(xb, wrb);
                    let mw = if F::MIN {
                        f16x8_strided(xb.add(2), wrb)
                    } else {
                        _mm256_setzero_ps()
                    };
                    let k = i % 4;
                    // Every activation against this block; `$first`: the residue's first
                    // block, whose accumulators start from +0.0 (a loop of its own, so the
                    // inner loop has no branch).
                    macro_rules! tokens {
                        ($first:expr) => {
                            for t in 0..n_acts {
                                let y = a.add(t * arb + i * F::A + F::AQ);
                                let ti = t * nb + i;
                                let init = if F::OFF != 0 {
                                    _mm256_set1_epi32(*corr.get_unchecked(ti))
                                } else {
                                    _mm256_setzero_si256()
                                };
                                let s = I::block_sums::<F>(&wk, y, init);
                                let d = _mm256_mul_ps(dw, _mm256_set1_ps(*da.get_unchecked(ti)));
                                let ac = acc.get_unchecked_mut(t * 4 + k);
                                let prev = if $first { _mm256_setzero_ps() } else { *ac };
                                *ac = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(s), prev);
                                if F::MIN {
                                    let m =
                                        _mm256_mul_ps(mw, _mm256_set1_ps(*sa.get_unchecked(ti)));
                                    let e = ext.get_unchecked_mut(t * 4 + k);
                                    let prev = if $first { _mm256_setzero_ps() } else { *e };
                                    *e = _mm256_add_ps(prev, m);
                                }
                            }
                        };
                    }
                    if i < 4 {
                        tokens!(true);
                    } else {
                        tokens!(false);
                    }
                }
                for t in 0..n_acts {
                    let mut v = sum_residues8(&acc[t * 4..t * 4 + 4]);
                    if F::MIN {
                        v = _mm256_add_ps(v, sum_residues8(&ext[t * 4..t * 4 + 4]));
                    }
                    let o = out.add(g * row_stride + t * tok_stride);
                    if row_stride == 1 {
                        _mm256_storeu_ps(o, v);
                    } else {
                        _mm256_storeu_ps(sums.as_mut_ptr(), v);
                        for (j, s) in sums.iter().enumerate() {
                            *o.add(j * row_stride) = *s;
                        }
                    }
                }
            }
        }
        if full < rows && n_acts < 4 && nb <= MAX_BLOCKS {
            let geom = TileGeom {
                rows,
                wrb,
                arb,
                row_stride,
                tok_stride,
            };
            singles::<F, I>(nb, &geom, w, a, n_acts, out);
        } else if full < rows {
            let out = out.add(full * row_stride);
            (F::AVX2)(
                nb,
                w.add(full * wrb),
                rows - full,
                a,
                n_acts,
                out,
                row_stride,
                tok_stride,
            );
        }
    }
}

/// `tile::<F, $isa>` compiled for the tier's features (the body the safe wrappers call).
macro_rules! tier {
    ($name:ident, $isa:ty, $features:literal) => {
        #[allow(clippy::too_many_arguments)]
        #[target_feature(enable = $features)]
        unsafe fn $name<F: Format>(
            nb: usize,
            w: *const u8,
            rows: usize,
            a: *const u8,
            n_acts: usize,
            out: *mut f32,
            row_stride: usize,
            tok_stride: usize,
        ) {
            // SAFETY: the wrapper's checks are `tile`'s contract; the tier's features enabled.
            unsafe { tile::<F, $isa>(nb, w, rows, a, n_acts, out, row_stride, tok_stride) }
        }
    };
}

tier!(tile_vnni, Vnni, "avx2,fma,f16c,avxvnni");
tier!(tile_avx2, Avx2, "avx2,fma,f16c");

tile_wrapper!(tile_q8_0_q8_0_vnni, tile_vnni::<Q8_0>, Q8_0::W, Q8_0::A, QK);
tile_wrapper!(tile_q4_0_q8_0_vnni, tile_vnni::<Q4_0>, Q4_0::W, Q4_0::A, QK);
tile_wrapper!(tile_q4_1_q8_1_vnni, tile_vnni::<Q4_1>, Q4_1::W, Q4_1::A, QK);
tile_wrapper!(tile_q5_0_q8_0_vnni, tile_vnni::<Q5_0>, Q5_0::W, Q5_0::A, QK);
tile_wrapper!(tile_q5_1_q8_1_vnni, tile_vnni::<Q5_1>, Q5_1::W, Q5_1::A, QK);
tile_wrapper!(
    tile8_q4_0_q8_0_avx2,
    tile_avx2::<Q4_0>,
    Q4_0::W,
    Q4_0::A,
    QK
);
tile_wrapper!(
    tile8_q4_1_q8_1_avx2,
    tile_avx2::<Q4_1>,
    Q4_1::W,
    Q4_1::A,
    QK
);
tile_wrapper!(
    tile8_q5_0_q8_0_avx2,
    tile_avx2::<Q5_0>,
    Q5_0::W,
    Q5_0::A,
    QK
);
tile_wrapper!(
    tile8_q5_1_q8_1_avx2,
    tile_avx2::<Q5_1>,
    Q5_1::W,
    Q5_1::A,
    QK
);
