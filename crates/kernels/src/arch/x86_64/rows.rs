//! Row-by-row paths of the 32-block formats for calls with few activations (decode): every
//! weight row against each activation, one dot at a time, with the activation's per-block data
//! (scales as f32, the offset correction `off·Σa`) computed once per call instead of once per
//! row. The block sums come from `vpdpbusd` (AVX-VNNI) or `vpmaddubsw` + `vpmaddwd` (AVX2); the
//! float operations are the AVX2 single dot's (`avx2_tiles`), so the results are its bits.
//!
//! Also the description of the 32-block formats ([`Format`]) the AVX-VNNI tile shares.

use std::arch::x86_64::*;

use super::avx2::{f16_load, nibbles32};
use super::avx2_tiles::{
    f16x4_strided, hsum4_epi32, prefetch_row, sum_lanes, unsigned_q4_1, unsigned_q5_0,
    unsigned_q5_1,
};
use crate::contract::TileGeom;

/// A 32-block weight format: blocks of `W` bytes whose 32 quants, read as unsigned bytes u, are
/// q = u − `OFF`; activation blocks of `A` bytes (f16 scale first, quants at `AQ`).
pub(super) trait Format {
    const W: usize;
    const A: usize;
    const AQ: usize;
    const OFF: i32;
    /// The largest unsigned quant (15 for four bits, 31 for five, 255 for Q8_0's q + 128).
    const UMAX: i32;
    /// Whether each block adds `m_w · s_a` (Q4_1's minimum against Q8_1's stored d·Σa).
    const MIN: bool;
    /// The AVX2 tile (same results) for the rows and calls this kernel leaves to it.
    const AVX2: Avx2Tile;
    /// The block's quants as unsigned bytes, in the activations' element order.
    unsafe fn unsigned(xb: *const u8) -> __m256i;
    /// Whether the AVX2 row path takes the signed quants (Q8_0: u ≤ 255 would saturate
    /// `vpmaddubsw`'s pair sums), with their signs moved onto the activations.
    const SIGNED_AVX2: bool = false;
}

/// The AVX2 tile bodies' signature: `(nb, w, rows, a, n_acts, out, row_stride, tok_stride)`.
pub(super) type Avx2Tile =
    unsafe fn(usize, *const u8, usize, *const u8, usize, *mut f32, usize, usize);

pub(super) struct Q8_0;
pub(super) struct Q4_0;
pub(super) struct Q4_1;
pub(super) struct Q5_0;
pub(super) struct Q5_1;

impl Format for Q8_0 {
    const AVX2: Avx2Tile = super::avx2_tiles::tile_q8_0_q8_0;
    const W: usize = 34;
    const A: usize = 34;
    const AQ: usize = 2;
    const OFF: i32 = 128;
    const UMAX: i32 = 255;
    const MIN: bool = false;
    const SIGNED_AVX2: bool = true;
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
    const UMAX: i32 = 15;
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
    const UMAX: i32 = 15;
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
    const UMAX: i32 = 31;
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
    const UMAX: i32 = 31;
    const MIN: bool = true;
    #[inline(always)]
    unsafe fn unsigned(xb: *const u8) -> __m256i {
        // SAFETY: the caller guarantees a 24-byte block at xb.
        unsafe { unsigned_q5_1(xb) }
    }
}

/// How a row path forms a block's eight i32 partial sums.
pub(super) trait RowIsa {
    /// Σ over four elements per lane of the block at `xb`'s quants times the activations `q`:
    /// of the unsigned quants where [`RowIsa::corrected`], else of the values themselves.
    unsafe fn isum<F: Format>(xb: *const u8, q: __m256i) -> __m256i;
    /// Whether [`RowIsa::isum`] sums the unsigned quants, so that `off·Σa` remains to subtract.
    fn corrected<F: Format>() -> bool;
}

/// AVX2: `vpmaddubsw` + `vpmaddwd`; Q8_0 by the sign trick (|q| against the activations with
/// q's signs), the others unsigned (u ≤ 31: no pair sum saturates).
pub(super) struct Avx2;

/// AVX-VNNI: one `vpdpbusd` on the unsigned quants.
pub(super) struct Vnni;

impl RowIsa for Avx2 {
    #[inline(always)]
    unsafe fn isum<F: Format>(xb: *const u8, q: __m256i) -> __m256i {
        // SAFETY: the caller guarantees a weight block at xb; register arithmetic (AVX2).
        unsafe {
            let p = if F::SIGNED_AVX2 {
                let v = _mm256_xor_si256(F::unsigned(xb), _mm256_set1_epi8(-128));
                _mm256_maddubs_epi16(_mm256_sign_epi8(v, v), _mm256_sign_epi8(q, v))
            } else {
                _mm256_maddubs_epi16(F::unsigned(xb), q)
            };
            _mm256_madd_epi16(p, _mm256_set1_epi16(1))
        }
    }
    #[inline(always)]
    fn corrected<F: Format>() -> bool {
        F::OFF != 0 && !F::SIGNED_AVX2
    }
}

impl RowIsa for Vnni {
    #[inline(always)]
    unsafe fn isum<F: Format>(xb: *const u8, q: __m256i) -> __m256i {
        // SAFETY: the caller guarantees a weight block at xb and AVX-VNNI.
        unsafe { _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), F::unsigned(xb), q) }
    }
    #[inline(always)]
    fn corrected<F: Format>() -> bool {
        F::OFF != 0
    }
}

/// Σ of the 32 signed bytes at `p` (exact): the unsigned sum of `q + 128` less 32·128.
#[inline(always)]
pub(super) unsafe fn sum_i8(p: *const u8) -> i32 {
    // SAFETY: the caller guarantees 32 readable bytes at p; register arithmetic (AVX2).
    unsafe {
        let u = _mm256_xor_si256(
            _mm256_loadu_si256(p as *const __m256i),
            _mm256_set1_epi8(-128),
        );
        let s = _mm256_sad_epu8(u, _mm256_setzero_si256());
        let s = _mm_add_epi64(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s));
        let s = _mm_add_epi64(s, _mm_unpackhi_epi64(s, s));
        _mm_cvtsi128_si32(s) - 32 * 128
    }
}

/// Most blocks per row the single-vector path precomputes activation data for (on the stack);
/// longer rows go to the AVX2 tile.
pub(super) const MAX_BLOCKS: usize = 128;

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
    unsafe fn fill<F: Format, I: RowIsa>(&mut self, nb: usize, y: *const u8) {
        // SAFETY: the caller guarantees nb ≤ MAX_BLOCKS activation blocks at y.
        unsafe {
            let b = self;
            for i in 0..nb {
                let yb = y.add(i * F::A);
                b.d[i] = f16_load(yb);
                if I::corrected::<F>() {
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

/// Every row against each of a few activations (rows ≤ `MAX_BLOCKS` blocks), one dot at a
/// time: the AVX2 single-vector kernel's sums and float operations (so the same bits), with
/// `I`'s block sums and the activation's per-block data computed once for all rows instead of
/// once per row.
#[inline(always)]
pub(super) unsafe fn singles<F: Format, I: RowIsa>(
    nb: usize,
    g: &TileGeom,
    w: *const u8,
    a: *const u8,
    n_acts: usize,
    out: *mut f32,
) {
    // SAFETY: w holds g.rows rows of nb ≤ MAX_BLOCKS blocks, a n_acts < 4 activation rows and
    // out their outputs, as `g` lays them out (the caller's guarantee).
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
            b.fill::<F, I>(nb, a.add(t * g.arb));
            *ab = Some(b);
        }
        for r in 0..g.rows {
            let x = w.add(r * g.wrb);
            prefetch_row(x, g.wrb);
            for (t, ab) in abs.iter().flatten().enumerate() {
                let y = a.add(t * g.arb);
                *out.add(r * g.row_stride + t * g.tok_stride) = dot::<F, I>(nb, x, y, ab);
            }
        }
    }
}

/// One weight row against one activation: lane j of `acc` takes the blocks i ≡ j (mod 4).
/// (Macros, not closures: a closure would not inherit the caller's target features.)
#[inline(always)]
unsafe fn dot<F: Format, I: RowIsa>(nb: usize, x: *const u8, y: *const u8, ab: &ActBlocks) -> f32 {
    // SAFETY: x holds nb ≤ MAX_BLOCKS weight blocks, y nb activation blocks; `ab`'s arrays
    // hold MAX_BLOCKS (a multiple of four) entries.
    unsafe {
        let (mut acc, mut ext) = (_mm_setzero_ps(), _mm_setzero_ps());
        macro_rules! part {
            ($i:expr, $j:expr, $m:expr) => {
                if $j < $m {
                    let q = _mm256_loadu_si256(y.add(($i + $j) * F::A + F::AQ) as *const __m256i);
                    I::isum::<F>(x.add(($i + $j) * F::W), q)
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
                if I::corrected::<F>() {
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
