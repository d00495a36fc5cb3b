//! AVX-VNNI tile kernels (`vpdpbusd`: four u8·i8 products added to each i32 lane in one
//! instruction) for the 32-block formats (Q8_0, Q4_0, Q5_0 against Q8_0; Q4_1, Q5_1 against
//! Q8_1).
//!
//! Eight weight rows are taken at a time and each of their blocks is transposed in registers, so
//! that 32-bit lane j of register k holds quants 4k..4k+4 of row j. One `vpdpbusd` with four
//! broadcast activation bytes then advances all eight rows' block sums, and a block costs eight
//! such instructions per activation row with no horizontal reduction; the transposition is paid
//! once per block and shared by every activation row of the call.
//!
//! The integer block sums are exact, and the float work is the AVX2 kernels' (per block,
//! `acc[i mod 4] += (d_w·d_a)·S`, the four residues summed as `(a0 + a1) + (a2 + a3)`), so every
//! result is bit-identical to the single-vector AVX2 kernel's: a token's output does not depend
//! on the kernel level, the batch or the rows around it. Calls with fewer than four activation
//! rows take the rows one at a time (`singles`); rows beyond a multiple of eight, and rows too
//! long for `singles`' stack data, go to the AVX2 tile.

use std::arch::x86_64::*;

use super::avx2::{f16_load, nibbles32};
use super::avx2_tiles::{
    f16x4_strided, hsum4_epi32, prefetch_row, sum_lanes, unsigned_q4_1, unsigned_q5_0,
    unsigned_q5_1,
};
use crate::contract::{tile_wrapper, TileGeom};
use crate::generic::formats::QK;

/// A weight format the VNNI tile handles: blocks of `W` bytes whose 32 quants, read as unsigned
/// bytes u, are q = u − `OFF`; activation blocks of `A` bytes (f16 scale first, quants at `AQ`).
trait Format {
    const W: usize;
    const A: usize;
    const AQ: usize;
    const OFF: i32;
    /// Whether each block adds `m_w · s_a` (Q4_1's minimum against Q8_1's stored d·Σa).
    const MIN: bool;
    /// The AVX2 tile (same results) for the rows and calls this kernel leaves to it.
    const AVX2: Avx2Tile;
    /// The block's quants as unsigned bytes, in the activations' element order.
    unsafe fn unsigned(xb: *const u8) -> __m256i;
}

/// The AVX2 tile bodies' signature: `(nb, w, rows, a, n_acts, out, row_stride, tok_stride)`.
type Avx2Tile = unsafe fn(usize, *const u8, usize, *const u8, usize, *mut f32, usize, usize);

struct Q8_0;
struct Q4_0;
struct Q4_1;
struct Q5_0;
struct Q5_1;

impl Format for Q8_0 {
    const AVX2: Avx2Tile = super::avx2_tiles::tile_q8_0_q8_0;
    const W: usize = 34;
    const A: usize = 34;
    const AQ: usize = 2;
    const OFF: i32 = 128;
    const MIN: bool = false;
    #[inline(always)]
    unsafe fn unsigned(xb: *const u8) -> __m256i {
        // SAFETY: the caller guarantees a 34-byte block at xb. q + 128 as a byte is q ^ 0x80.
        unsafe {
            let q = _mm256_loadu_si256(xb.add(2) as *const __m256i);
            _mm256_xor_si256(q, _mm256_set1_epi8(-128))
        }
    }
}

impl Format for Q4_0 {
    const AVX2: Avx2Tile = super::avx2_tiles::tile_q4_0_q8_0;
    const W: usize = 18;
    const A: usize = 34;
    const AQ: usize = 2;
    const OFF: i32 = 8;
    const MIN: bool = false;
    #[inline(always)]
    unsafe fn unsigned(xb: *const u8) -> __m256i {
        // SAFETY: the caller guarantees an 18-byte block at xb.
        unsafe { nibbles32(xb.add(2)) }
    }
}

impl Format for Q4_1 {
    const AVX2: Avx2Tile = super::avx2_tiles::tile_q4_1_q8_1;
    const W: usize = 20;
    const A: usize = 36;
    const AQ: usize = 4;
    const OFF: i32 = 0;
    const MIN: bool = true;
    #[inline(always)]
    unsafe fn unsigned(xb: *const u8) -> __m256i {
        // SAFETY: the caller guarantees a 20-byte block at xb.
        unsafe { unsigned_q4_1(xb) }
    }
}

impl Format for Q5_0 {
    const AVX2: Avx2Tile = super::avx2_tiles::tile_q5_0_q8_0;
    const W: usize = 22;
    const A: usize = 34;
    const AQ: usize = 2;
    const OFF: i32 = 16;
    const MIN: bool = false;
    #[inline(always)]
    unsafe fn unsigned(xb: *const u8) -> __m256i {
        // SAFETY: the caller guarantees a 22-byte block at xb.
        unsafe { unsigned_q5_0(xb) }
    }
}

impl Format for Q5_1 {
    const AVX2: Avx2Tile = super::avx2_tiles::tile_q5_1_q8_1;
    const W: usize = 24;
    const A: usize = 36;
    const AQ: usize = 4;
    const OFF: i32 = 0;
    const MIN: bool = true;
    #[inline(always)]
    unsafe fn unsigned(xb: *const u8) -> __m256i {
        // SAFETY: the caller guarantees a 24-byte block at xb.
        unsafe { unsigned_q5_1(xb) }
    }
}

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

/// Σ of the 32 signed bytes at `p` (exact).
#[inline(always)]
unsafe fn sum_i8(p: *const u8) -> i32 {
    // SAFETY: the caller guarantees 32 readable bytes at p.
    unsafe {
        let q = _mm256_loadu_si256(p as *const __m256i);
        let s = _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(1), q);
        let s = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s));
        let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
        _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32::<0b01>(s)))
    }
}

/// Per lane: (a0 + a1) + (a2 + a3).
#[inline(always)]
unsafe fn sum_residues8(a: &[__m256]) -> __m256 {
    // SAFETY: pure register arithmetic under the caller's target features.
    unsafe { _mm256_add_ps(_mm256_add_ps(a[0], a[1]), _mm256_add_ps(a[2], a[3])) }
}

#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
unsafe fn tile<F: Format>(
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
            // Per activation block: its scale, and off·Σa (or Q8_1's s_a for the minimum).
            let n = n_acts * nb;
            let mut da = Vec::with_capacity(n);
            let mut corr = Vec::with_capacity(if F::OFF != 0 { n } else { 0 });
            let mut sa = Vec::with_capacity(if F::MIN { n } else { 0 });
            for t in 0..n_acts {
                for i in 0..nb {
                    let y = a.add(t * arb + i * F::A);
                    da.push(f16_load(y));
                    if F::OFF != 0 {
                        corr.push(F::OFF * sum_i8(y.add(F::AQ)));
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
                acc.fill(_mm256_setzero_ps());
                ext.fill(_mm256_setzero_ps());
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
                    for t in 0..n_acts {
                        let y = a.add(t * arb + i * F::A + F::AQ) as *const i32;
                        let mut s = _mm256_setzero_si256();
                        for (kk, wk) in wk.iter().enumerate() {
                            let b = _mm256_set1_epi32(y.add(kk).read_unaligned());
                            s = _mm256_dpbusd_avx_epi32(s, *wk, b);
                        }
                        let ti = t * nb + i;
                        if F::OFF != 0 {
                            s = _mm256_sub_epi32(s, _mm256_set1_epi32(*corr.get_unchecked(ti)));
                        }
                        let d = _mm256_mul_ps(dw, _mm256_set1_ps(*da.get_unchecked(ti)));
                        let ac = acc.get_unchecked_mut(t * 4 + k);
                        *ac = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(s), *ac);
                        if F::MIN {
                            let m = _mm256_mul_ps(mw, _mm256_set1_ps(*sa.get_unchecked(ti)));
                            let e = ext.get_unchecked_mut(t * 4 + k);
                            *e = _mm256_add_ps(*e, m);
                        }
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
            singles::<F>(nb, &geom, w, a, n_acts, out);
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

/// Most blocks per row the single-vector path precomputes activation data for (on the stack);
/// longer rows go to the AVX2 tile.
const MAX_BLOCKS: usize = 128;

/// One activation's per-block data, once per call: its scales (and Q8_1's s_a) as f32 and
/// off·Σa, zero past the row's blocks (whole groups of four read them).
#[derive(Clone, Copy)]
struct ActBlocks {
    d: [f32; MAX_BLOCKS],
    corr: [i32; MAX_BLOCKS],
    s: [f32; MAX_BLOCKS],
    /// Q8_1 only: `[d_a, s_a]` per block, interleaved as Q4_1 stores its `[d_w, m_w]`.
    ds: [f32; 2 * MAX_BLOCKS],
}

impl ActBlocks {
    #[inline(always)]
    unsafe fn fill<F: Format>(&mut self, nb: usize, y: *const u8) {
        // SAFETY: the caller guarantees nb ≤ MAX_BLOCKS activation blocks at y.
        unsafe {
            let b = self;
            for i in 0..nb {
                let yb = y.add(i * F::A);
                b.d[i] = f16_load(yb);
                if F::OFF != 0 {
                    b.corr[i] = F::OFF * sum_i8(yb.add(F::AQ));
                }
                if F::MIN {
                    b.s[i] = f16_load(yb.add(2));
                    b.ds[2 * i] = b.d[i];
                    b.ds[2 * i + 1] = b.s[i];
                }
            }
        }
    }
}

/// Every row against each of a few activations (rows ≤ `MAX_BLOCKS` blocks), one dot at a time: the AVX2 single-vector
/// kernel's sums and float operations (so the same bits), with `vpdpbusd` for the block sums
/// and the activation's per-block data computed once for all rows instead of once per row.
#[inline(always)]
unsafe fn singles<F: Format>(
    nb: usize,
    g: &TileGeom,
    w: *const u8,
    a: *const u8,
    n_acts: usize,
    out: *mut f32,
) {
    // SAFETY: as `tile`, whose operands these are.
    unsafe {
        // Fewer than four activations (the caller's condition); data only for those present.
        let mut abs: [Option<ActBlocks>; 3] = [None; 3];
        for (t, ab) in abs.iter_mut().enumerate().take(n_acts) {
            let mut b = ActBlocks {
                d: [0.0; MAX_BLOCKS],
                corr: [0; MAX_BLOCKS],
                s: [0.0; MAX_BLOCKS],
                ds: [0.0; 2 * MAX_BLOCKS],
            };
            b.fill::<F>(nb, a.add(t * g.arb));
            *ab = Some(b);
        }
        for r in 0..g.rows {
            let x = w.add(r * g.wrb);
            prefetch_row(x, g.wrb);
            for (t, ab) in abs.iter().flatten().enumerate() {
                let y = a.add(t * g.arb);
                *out.add(r * g.row_stride + t * g.tok_stride) = dot::<F>(nb, x, y, ab);
            }
        }
    }
}

/// One weight row against one activation: lane j of `acc` takes the blocks i ≡ j (mod 4).
/// (Macros, not closures: a closure would not inherit the caller's target features.)
#[inline(always)]
unsafe fn dot<F: Format>(nb: usize, x: *const u8, y: *const u8, ab: &ActBlocks) -> f32 {
    // SAFETY: x holds nb ≤ MAX_BLOCKS weight blocks, y nb activation blocks; `ab`'s arrays
    // hold MAX_BLOCKS (a multiple of four) entries.
    unsafe {
        let (mut acc, mut ext) = (_mm_setzero_ps(), _mm_setzero_ps());
        macro_rules! part {
            ($i:expr, $j:expr, $m:expr) => {
                if $j < $m {
                    let u = F::unsigned(x.add(($i + $j) * F::W));
                    let q = _mm256_loadu_si256(y.add(($i + $j) * F::A + F::AQ) as *const __m256i);
                    _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), u, q)
                } else {
                    _mm256_setzero_si256()
                }
            };
        }
        // `m` blocks from block `i` (4 in the main loop, where the bounds tests fold away).
        macro_rules! group {
            ($i:expr, $m:expr) => {{
                let (i, m) = ($i, $m);
                let (p0, p1) = (part!(i, 0, m), part!(i, 1, m));
                let (p2, p3) = (part!(i, 2, m), part!(i, 3, m));
                let mut s = hsum4_epi32(p0, p1, p2, p3);
                if F::OFF != 0 {
                    let corr = _mm_loadu_si128(ab.corr.as_ptr().add(i) as *const __m128i);
                    s = _mm_sub_epi32(s, corr);
                }
                let dw = f16x4_strided(x.add(i * F::W), F::W, m);
                let d = _mm_mul_ps(dw, _mm_loadu_ps(ab.d.as_ptr().add(i)));
                acc = _mm_fmadd_ps(d, _mm_cvtepi32_ps(s), acc);
                if F::MIN {
                    let mw = f16x4_strided(x.add(i * F::W + 2), F::W, m);
                    ext = _mm_add_ps(ext, _mm_mul_ps(mw, _mm_loadu_ps(ab.s.as_ptr().add(i))));
                }
            }};
        }
        let mut i = 0;
        if F::MIN {
            // Q4_1: the four blocks' (d_w, m_w) pairs are one 32-bit load each and one f16
            // conversion; lanes 2j and 2j + 1 of `acc8` carry `acc` and `ext` of residue j
            // (ext as `fma(m_w·s_a, 1, ext)`, which rounds as `ext + m_w·s_a`).
            let mut acc8 = _mm256_setzero_ps();
            let ones = _mm_set1_ps(1.0);
            while i + 4 <= nb {
                let xb = x.add(i * F::W);
                let (p0, p1) = (part!(i, 0, 4), part!(i, 1, 4));
                let (p2, p3) = (part!(i, 2, 4), part!(i, 3, 4));
                let sf = _mm_cvtepi32_ps(hsum4_epi32(p0, p1, p2, p3));
                let dm = |k: usize| (xb.add(k * F::W) as *const i32).read_unaligned();
                let wdm = _mm256_cvtph_ps(_mm_setr_epi32(dm(0), dm(1), dm(2), dm(3)));
                let v = _mm256_mul_ps(wdm, _mm256_loadu_ps(ab.ds.as_ptr().add(2 * i)));
                let t = _mm256_set_m128(_mm_unpackhi_ps(sf, ones), _mm_unpacklo_ps(sf, ones));
                acc8 = _mm256_fmadd_ps(v, t, acc8);
                i += 4;
            }
            let split = _mm256_permutevar8x32_ps(acc8, _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7));
            acc = _mm256_castps256_ps128(split);
            ext = _mm256_extractf128_ps::<1>(split);
        }
        while i + 4 <= nb {
            group!(i, 4);
            i += 4;
        }
        if i < nb {
            group!(i, nb - i);
        }
        if F::MIN {
            sum_lanes(acc) + sum_lanes(ext)
        } else {
            sum_lanes(acc)
        }
    }
}

tile_wrapper!(tile_q8_0_q8_0_vnni, tile::<Q8_0>, Q8_0::W, Q8_0::A, QK);
tile_wrapper!(tile_q4_0_q8_0_vnni, tile::<Q4_0>, Q4_0::W, Q4_0::A, QK);
tile_wrapper!(tile_q4_1_q8_1_vnni, tile::<Q4_1>, Q4_1::W, Q4_1::A, QK);
tile_wrapper!(tile_q5_0_q8_0_vnni, tile::<Q5_0>, Q5_0::W, Q5_0::A, QK);
tile_wrapper!(tile_q5_1_q8_1_vnni, tile::<Q5_1>, Q5_1::W, Q5_1::A, QK);
