//! AVX2 integer-sum kernels for the 32-block formats (Q8_0, Q4_0, Q5_0 against Q8_0; Q4_1,
//! Q5_1 against Q8_1): the single-vector dots and the four-activation tiles (rows × four
//! activations per weight-block load), both in the contract's block-sum order
//! (`crate::contract`), so a tile gives exactly the dot. The four-activation tile is the AVX2
//! table's tile for Q8_0; for the others it takes the rows the eight-row tile (`tile8`) leaves.

#![allow(clippy::missing_safety_doc)]

use std::arch::x86_64::*;

use super::avx2::{bits32, f16_load, nibbles32};
use super::rows;
use crate::contract::{
    by_residue, safe_wrapper, single_tail, tile_wrapper, TileGeom, TILE_MAX_BLOCKS,
};
use crate::generic::formats::QK;

safe_wrapper!(dot_q4_0_q8_0_avx2, q4_0_q8_0, 18, 34, QK);
safe_wrapper!(dot_q4_1_q8_1_avx2, q4_1_q8_1, 20, 36, QK);
safe_wrapper!(dot_q8_0_q8_0_avx2, q8_0_q8_0, 34, 34, QK);
safe_wrapper!(dot_q5_0_q8_0_avx2, q5_0_q8_0, 22, 34, QK);
safe_wrapper!(dot_q5_1_q8_1_avx2, q5_1_q8_1, 24, 36, QK);

// ---------------------------------------------------------------------------------------------
// Tile kernels: out[r · row_stride + t · tok_stride] = W_r · A_t for `rows` weight rows and `n_acts`
// activation rows, inside one target-feature function (no call per row), each unpacked weight
// block reused for four activation rows at a time.

/// How far ahead of the current weight block to prefetch.
const PREFETCH_BYTES: usize = 2048;

#[inline(always)]
pub(super) fn prefetch_ahead(p: *const u8) {
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
pub(super) fn prefetch_row(row: *const u8, bytes: usize) {
    let fetch = |off: usize| {
        let p = row.wrapping_add(off + ROW_PREFETCH_BYTES);
        // SAFETY: a prefetch is a hint: it never faults, whatever the address, and reads
        // nothing into the program's state. `wrapping_add` keeps the arithmetic defined.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p as *const i8) }
    };
    // Four cache lines per step, then the rest.
    let mut off = 0;
    while off + 256 <= bytes {
        fetch(off);
        fetch(off + 64);
        fetch(off + 128);
        fetch(off + 192);
        off += 256;
    }
    while off < bytes {
        fetch(off);
        off += 64;
    }
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
pub(super) unsafe fn hsum4_epi32(a: __m256i, b: __m256i, c: __m256i, d: __m256i) -> __m128i {
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
pub(super) unsafe fn f16x4_strided(p: *const u8, stride: usize, m: usize) -> __m128 {
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

/// (|q|, q) of a Q5_0 block's quants (five bits minus 16). Where the fifth bit is clear,
/// `nibble | 0xF0` is the nibble minus 16 as a signed byte; where it is set, the nibble is
/// already q.
#[inline(always)]
unsafe fn quants_q5_0(xb: *const u8) -> (__m256i, __m256i) {
    // SAFETY: the caller guarantees a 22-byte block at xb.
    unsafe {
        let qh = (xb.add(2) as *const u32).read_unaligned();
        let hi = _mm256_andnot_si256(bits32(qh), _mm256_set1_epi8(0xF0u8 as i8));
        let qx = _mm256_or_si256(nibbles32(xb.add(6)), hi);
        (_mm256_sign_epi8(qx, qx), qx)
    }
}

/// 32 five-bit values: the nibbles of the 16 bytes at `qs` with the fifth bit from the bits of
/// the u32 at `qh` (element e's bit e).
#[inline(always)]
pub(super) unsafe fn nibbles5(qs: *const u8, qh: *const u8) -> __m256i {
    // SAFETY: the caller guarantees 16 readable bytes at qs and 4 at qh.
    unsafe {
        let bits = (qh as *const u32).read_unaligned();
        let hi = _mm256_and_si256(bits32(bits), _mm256_set1_epi8(0x10));
        _mm256_or_si256(nibbles32(qs), hi)
    }
}

/// The unsigned quants of a Q5_0 block (q + 16).
#[inline(always)]
pub(super) unsafe fn unsigned_q5_0(xb: *const u8) -> __m256i {
    // SAFETY: the caller guarantees a 22-byte block at xb.
    unsafe { nibbles5(xb.add(6), xb.add(2)) }
}

/// The quants of a Q4_1 block (unsigned nibbles).
#[inline(always)]
pub(super) unsafe fn unsigned_q4_1(xb: *const u8) -> __m256i {
    // SAFETY: the caller guarantees a 20-byte block at xb.
    unsafe { nibbles32(xb.add(4)) }
}

/// The quants of a Q5_1 block (unsigned five-bit values).
#[inline(always)]
pub(super) unsafe fn unsigned_q5_1(xb: *const u8) -> __m256i {
    // SAFETY: the caller guarantees a 24-byte block at xb.
    unsafe { nibbles5(xb.add(8), xb.add(4)) }
}

/// Per lane: (acc0 + acc1) + (acc2 + acc3), the fixed order both kernel kinds use.
#[inline(always)]
unsafe fn sum_residues(acc0: __m128, acc1: __m128, acc2: __m128, acc3: __m128) -> __m128 {
    // SAFETY: pure register arithmetic under the caller's target features.
    unsafe { _mm_add_ps(_mm_add_ps(acc0, acc1), _mm_add_ps(acc2, acc3)) }
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
    ($fmt:ty, $single:ident, $tile_inner:ident, $wsize:expr, $quants:ident, $mode:tt) => {
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

        #[allow(clippy::too_many_arguments)]
        #[target_feature(enable = "avx2,fma,f16c")]
        pub(super) unsafe fn $tile_inner(
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
                rest::<$fmt>(nb, &geom, w, a, t, n_acts, out, |w, a| $single(nb, w, a));
            }
        }
    };
}

int_kernels!(
    rows::Q8_0,
    q8_0_q8_0,
    tile_q8_0_q8_0,
    34,
    quants_q8_0,
    [signed]
);
int_kernels!(
    rows::Q4_0,
    q4_0_q8_0,
    tile_q4_0_q8_0,
    18,
    quants_q4_0,
    [unsigned(nibbles_q4_0, 8)]
);
int_kernels!(
    rows::Q5_0,
    q5_0_q8_0,
    tile_q5_0_q8_0,
    22,
    quants_q5_0,
    [unsigned(unsigned_q5_0, 16)]
);

/// The activations `t..n_acts` a tile leaves over: with fewer than four and rows that fit,
/// the row path (`rows::singles`, activation data once per call), else `dot` per element.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn rest<F: rows::Format>(
    nb: usize,
    g: &TileGeom,
    w: *const u8,
    a: *const u8,
    t: usize,
    n_acts: usize,
    out: *mut f32,
    dot: impl Fn(*const u8, *const u8) -> f32,
) {
    // SAFETY: the operands of a tile call as `g` lays them out (the caller's guarantee).
    unsafe {
        if n_acts - t < 4 && nb <= rows::MAX_BLOCKS {
            if t < n_acts {
                let (a, out) = (a.add(t * g.arb), out.add(t * g.tok_stride));
                rows::singles::<F, rows::Avx2>(nb, g, w, a, n_acts - t, out);
            }
        } else {
            single_tail(g, w, a, t, n_acts, out, prefetch_row, dot);
        }
    }
}

// Q8_0's tile at AVX2 (the eight-row tile of `tile8` takes the other formats; these bodies
// remain for its leftover rows).
tile_wrapper!(tile_q8_0_q8_0_avx2, tile_q8_0_q8_0, 34, 34, QK);

/// Lanes 0..4 of `acc` as four single-lane vectors summed by [`sum_residues`]: lane 0 of the
/// result is what the tile computes for one activation.
#[inline(always)]
pub(super) unsafe fn sum_lanes(acc: __m128) -> f32 {
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

/// Weights with a minimum against Q8_1 (Q4_1, Q5_1) with integer block sums:
/// Σ (d_w·q + m_w)(d_a·a) = d_w·d_a·Σq·a + m_w·s_a, where `s_a` is the activation block's
/// stored d_a·Σa. The first term accumulates by block residue as in `int_kernels!`, the second
/// as rounded products added by residue. `$unsigned` gives a block's quants (unsigned).
macro_rules! min_kernels {
    ($fmt:ty, $single:ident, $tile_inner:ident, $wsize:expr, $unsigned:ident) => {
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn $single(nb: usize, x: *const u8, y: *const u8) -> f32 {
            // SAFETY: x holds nb weight blocks and y nb Q8_1 blocks (checked by the wrapper).
            unsafe {
                macro_rules! group {
                    ($i:expr, $m:expr) => {{
                        let (i, m) = ($i, $m);
                        let part = |j: usize| {
                            if j < m {
                                isum_q8_1($unsigned(x.add((i + j) * $wsize)), y.add((i + j) * 36))
                            } else {
                                _mm256_setzero_si256()
                            }
                        };
                        let s = hsum4_epi32(part(0), part(1), part(2), part(3));
                        // [d_w·d_a, m_w·s_a] of each block, interleaved, then split.
                        let p = _mm256_mul_ps(
                            f16_pairs4(x.add(i * $wsize), $wsize, m),
                            f16_pairs4(y.add(i * 36), 36, m),
                        );
                        let p =
                            _mm256_permutevar8x32_ps(p, _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7));
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

        #[allow(clippy::too_many_arguments)]
        #[target_feature(enable = "avx2,fma,f16c")]
        pub(super) unsafe fn $tile_inner(
            nb: usize,
            w: *const u8,
            rows: usize,
            a: *const u8,
            n_acts: usize,
            out: *mut f32,
            row_stride: usize,
            tok_stride: usize,
        ) {
            // SAFETY: w holds rows·nb weight blocks, a n_acts·nb blocks of 36 bytes and out
            // (rows-1)·row_stride + (n_acts-1)·tok_stride + 1 values (checked by the wrapper).
            unsafe {
                let (wrb, arb) = (nb * $wsize, nb * 36);
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
                                let xb = wr.add(i * $wsize);
                                prefetch_ahead(xb);
                                let qx = $unsigned(xb);
                                let y = a0.add(i * 36);
                                let s = hsum4_epi32(
                                    isum_q8_1(qx, y),
                                    isum_q8_1(qx, y.add(arb)),
                                    isum_q8_1(qx, y.add(2 * arb)),
                                    isum_q8_1(qx, y.add(3 * arb)),
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
                rest::<$fmt>(nb, &geom, w, a, t, n_acts, out, |w, a| $single(nb, w, a));
            }
        }
    };
}

/// Eight i32 partial sums of 32 unsigned weight quants times the Q8_1 activation block at `y`.
#[inline(always)]
unsafe fn isum_q8_1(qx: __m256i, y: *const u8) -> __m256i {
    // SAFETY: the caller guarantees a 36-byte block at y.
    unsafe {
        let qy = _mm256_loadu_si256(y.add(4) as *const __m256i);
        _mm256_madd_epi16(_mm256_maddubs_epi16(qx, qy), _mm256_set1_epi16(1))
    }
}

min_kernels!(rows::Q4_1, q4_1_q8_1, tile_q4_1_q8_1, 20, unsigned_q4_1);
min_kernels!(rows::Q5_1, q5_1_q8_1, tile_q5_1_q8_1, 24, unsigned_q5_1);
