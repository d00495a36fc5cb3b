//! K-quant kernels (Q4_K, Q5_K, Q6_K weights against Q8_K activations) for the AVX2 and
//! AVX-VNNI tiers: single-vector dots and tiles, in the contract's eight-lane order.
//!
//! A superblock is eight groups of 32 weights (elements `32g..32g + 32`), each decoded to 32
//! unsigned bytes. Per group and activation, `vpmaddubsw` multiplies the weights with the
//! activations and adds adjacent products (16 i16 lanes), then the group's sub-block scales
//! (one per 32 elements, or per 16 for Q6_K) multiply those pair sums while adjacent pairs are
//! added into eight i32 lanes: `vpmaddwd` + `vpaddd` (AVX2) or one `vpdpwssd` (AVX-VNNI). Lane
//! `l` thus sums the scaled products of elements `4l..4l + 4` of every group, the contract's
//! partition `(e mod 32) / 4`, exactly (no i16 saturation: a pair sum is at most
//! 2·63·128 = 16128). Q6_K's values (its stored quants less 32, signed) are multiplied the other
//! way round, the activations plus 128 as the unsigned operand: `(y + 128)·q` less `128·q`,
//! whose pair sums depend only on the weights (once per superblock for all activations). A tile
//! stores its activations plus 128 once per call (the single dot adds 128 as it loads them).
//!
//! The float work per superblock is the contract's: `acc[l] = fma(d_a·d_w, f32(S_l), acc[l])`
//! and, for Q4_K and Q5_K, `m += (d_a·dmin_w)·f32(Σ min_j·bsum_j)`; the result is
//! `hsum8(acc) − m`. A tile decodes each weight superblock (quants, scales, minimums) once for
//! eight (or four) activations and runs the same per-activation code as the single dot, so every element
//! of a tile is bit-identical to the single dot, at either tier.

#![allow(clippy::missing_safety_doc)]

use std::arch::x86_64::*;

use super::avx2::f16_load;
use super::avx2_tiles::{hsum4_epi32, prefetch_ahead, prefetch_row};
use crate::contract::{safe_wrapper, tile_wrapper};
use crate::generic::formats::QK_K;

/// Bytes of a Q8_K block: f32 d, 256 i8 quants, 16 i16 sums of 16 quants.
const A: usize = 292;

/// How a group's i16 pair sums `p` are scaled by `sc` and added into eight i32 lanes (the
/// first group's by `vpmaddwd` alone, at either tier).
trait Isa {
    unsafe fn scaled_add(acc: __m256i, p: __m256i, sc: __m256i) -> __m256i;
}

struct Avx2;
struct Vnni;

impl Isa for Avx2 {
    #[inline(always)]
    unsafe fn scaled_add(acc: __m256i, p: __m256i, sc: __m256i) -> __m256i {
        // SAFETY: pure register arithmetic under the caller's target features (AVX2).
        unsafe { _mm256_add_epi32(acc, _mm256_madd_epi16(p, sc)) }
    }
}

impl Isa for Vnni {
    #[inline(always)]
    unsafe fn scaled_add(acc: __m256i, p: __m256i, sc: __m256i) -> __m256i {
        // SAFETY: pure register arithmetic under the caller's target features (AVX-VNNI).
        unsafe { dpwssd(acc, p, sc) }
    }
}

/// `vpdpwssd`: `acc + p·sc` with adjacent i16 products added into each i32 lane. Written out
/// because the compiler, tuning for a generic x86-64, splits `_mm256_dpwssd_avx_epi32` into
/// `vpmaddwd` + `vpaddd` (two instructions) wherever the accumulator is not zero.
#[inline]
#[target_feature(enable = "avx2,avxvnni")]
fn dpwssd(mut acc: __m256i, p: __m256i, sc: __m256i) -> __m256i {
    // SAFETY: one AVX-VNNI instruction (enabled for this function) on registers only.
    unsafe {
        std::arch::asm!(
            "{{vex}} vpdpwssd {acc}, {p}, {sc}",
            acc = inout(ymm_reg) acc,
            p = in(ymm_reg) p,
            sc = in(ymm_reg) sc,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    acc
}

/// A superblock's scales, decoded once: i16 values in both 128-bit halves, which `vpshufb`
/// spreads to each group's multipliers; for Q4_K and Q5_K also the minimums, each twice (the
/// two 16-element block sums of its 32 elements).
struct Prep {
    sc: [__m256i; 2],
    mins: __m256i,
}

/// A K-quant weight format.
trait KQuant {
    /// Bytes per superblock.
    const W: usize;
    /// Offset of the f16 `d_w`; `dmin_w` follows it where the format has minimums.
    const D: usize;
    /// Whether the format has minimums (Q4_K, Q5_K).
    const MIN: bool;
    /// Whether [`KQuant::group`] gives signed values (Q6_K), taken against the activations
    /// plus 128, rather than unsigned quants.
    const SIGNED: bool;
    unsafe fn prep(xb: *const u8) -> Prep;
    /// The 32 quants of group `g`: unsigned bytes, or signed values where [`KQuant::SIGNED`].
    unsafe fn group(xb: *const u8, g: usize) -> __m256i;
    /// The multipliers of group `g`'s 16 pair sums.
    unsafe fn scale(p: &Prep, g: usize) -> __m256i;
}

struct Q4K;
struct Q5K;
struct Q6K;

/// The 6-bit scales and minimums of a Q4_K/Q5_K superblock (12 packed bytes at `p`, as
/// `scale_min_k4` reads them).
#[inline(always)]
unsafe fn k4_prep(p: *const u8) -> Prep {
    // SAFETY: the caller guarantees 12 readable bytes at p.
    unsafe {
        let u = |k: usize| (p.add(4 * k) as *const u32).read_unaligned();
        let (u0, u1, u2) = (u(0), u(1), u(2));
        let (m6, m4, m2) = (0x3f3f_3f3fu32, 0x0f0f_0f0fu32, 0x0303_0303u32);
        let sc_lo = u0 & m6;
        let mn_lo = u1 & m6;
        let sc_hi = (u2 & m4) | (((u0 >> 6) & m2) << 4);
        let mn_hi = ((u2 >> 4) & m4) | (((u1 >> 6) & m2) << 4);
        let pack =
            |lo: u32, hi: u32| _mm_cvtsi64_si128(((u64::from(hi) << 32) | u64::from(lo)) as i64);
        let sc = opaque(_mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(pack(
            sc_lo, sc_hi,
        ))));
        let mn = pack(mn_lo, mn_hi);
        Prep {
            sc: [sc, sc],
            mins: _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mn, mn)),
        }
    }
}

/// `v`, opaque to the optimizer. A superblock's scale vectors are spread to each group's
/// multipliers by one `vpshufb` each; where the compiler can see that a vector is one 128-bit
/// half repeated, it rewrites that shuffle into two or three others.
#[inline]
#[target_feature(enable = "avx2")]
fn opaque(mut v: __m256i) -> __m256i {
    // SAFETY: an empty assembly block: it reads and writes only the register holding v.
    unsafe {
        std::arch::asm!("/* {0} */", inout(ymm_reg) v, options(pure, nomem, nostack, preserves_flags));
    }
    v
}

/// Multipliers of a group with one scale: i16 lane `g` of `sc`'s halves in every lane.
#[inline(always)]
unsafe fn scale32(sc: __m256i, g: usize) -> __m256i {
    // SAFETY: pure register arithmetic under the caller's target features.
    unsafe {
        let idx = (((2 * g + 1) << 8) | (2 * g)) as i16;
        _mm256_shuffle_epi8(sc, _mm256_set1_epi16(idx))
    }
}

/// The nibbles of group `g` of a superblock whose 128 nibble bytes start at `qs` (groups
/// `2j` and `2j + 1` are the low and high nibbles of bytes `32j..32j + 32`).
#[inline(always)]
unsafe fn k4_nibbles(qs: *const u8, g: usize) -> __m256i {
    // SAFETY: the caller guarantees 128 readable bytes at qs; g < 8.
    unsafe {
        let q = _mm256_loadu_si256(qs.add(32 * (g / 2)) as *const __m256i);
        let q = if g.is_multiple_of(2) {
            q
        } else {
            _mm256_srli_epi16::<4>(q)
        };
        _mm256_and_si256(q, _mm256_set1_epi8(0x0F))
    }
}

impl KQuant for Q4K {
    const W: usize = 144;
    const D: usize = 0;
    const MIN: bool = true;
    const SIGNED: bool = false;
    #[inline(always)]
    unsafe fn prep(xb: *const u8) -> Prep {
        // SAFETY: the caller guarantees a 144-byte superblock at xb.
        unsafe { k4_prep(xb.add(4)) }
    }
    #[inline(always)]
    unsafe fn group(xb: *const u8, g: usize) -> __m256i {
        // SAFETY: as `prep`.
        unsafe { k4_nibbles(xb.add(16), g) }
    }
    #[inline(always)]
    unsafe fn scale(p: &Prep, g: usize) -> __m256i {
        // SAFETY: pure register arithmetic.
        unsafe { scale32(p.sc[0], g) }
    }
}

impl KQuant for Q5K {
    const W: usize = 176;
    const D: usize = 0;
    const MIN: bool = true;
    const SIGNED: bool = false;
    #[inline(always)]
    unsafe fn prep(xb: *const u8) -> Prep {
        // SAFETY: the caller guarantees a 176-byte superblock at xb.
        unsafe { k4_prep(xb.add(4)) }
    }
    #[inline(always)]
    unsafe fn group(xb: *const u8, g: usize) -> __m256i {
        // SAFETY: as `prep`. Bit g of each of the 32 high-bit bytes is element b's fifth bit;
        // shifting the 16-bit lanes by |4 − g| moves it to bit 4 of its own byte.
        unsafe {
            let qh = _mm256_loadu_si256(xb.add(16) as *const __m256i);
            let h = match g {
                0 => _mm256_slli_epi16::<4>(qh),
                1 => _mm256_slli_epi16::<3>(qh),
                2 => _mm256_slli_epi16::<2>(qh),
                3 => _mm256_slli_epi16::<1>(qh),
                4 => qh,
                5 => _mm256_srli_epi16::<1>(qh),
                6 => _mm256_srli_epi16::<2>(qh),
                _ => _mm256_srli_epi16::<3>(qh),
            };
            let h = _mm256_and_si256(h, _mm256_set1_epi8(0x10));
            _mm256_or_si256(k4_nibbles(xb.add(48), g), h)
        }
    }
    #[inline(always)]
    unsafe fn scale(p: &Prep, g: usize) -> __m256i {
        // SAFETY: pure register arithmetic.
        unsafe { scale32(p.sc[0], g) }
    }
}

impl KQuant for Q6K {
    const W: usize = 210;
    const D: usize = 208;
    const MIN: bool = false;
    const SIGNED: bool = true;
    #[inline(always)]
    unsafe fn prep(xb: *const u8) -> Prep {
        // SAFETY: the caller guarantees a 210-byte superblock at xb (16 i8 scales at 192).
        unsafe {
            let s = |k: usize| {
                let v = _mm_loadl_epi64(xb.add(192 + 8 * k) as *const __m128i);
                opaque(_mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(v)))
            };
            Prep {
                sc: [s(0), s(1)],
                mins: _mm256_setzero_si256(),
            }
        }
    }
    #[inline(always)]
    unsafe fn group(xb: *const u8, g: usize) -> __m256i {
        // SAFETY: as `prep`. Group g = 4n + k of half n: the low (k < 2) or high nibbles of
        // ql bytes 64n + 32(k mod 2).., and bits 2k, 2k + 1 of qh bytes 128 + 32n.. as bits 4-5.
        unsafe {
            let (n, k) = (g / 4, g % 4);
            let ql = _mm256_loadu_si256(xb.add(64 * n + 32 * (k % 2)) as *const __m256i);
            let lo = if k < 2 {
                ql
            } else {
                _mm256_srli_epi16::<4>(ql)
            };
            let lo = _mm256_and_si256(lo, _mm256_set1_epi8(0x0F));
            let qh = _mm256_loadu_si256(xb.add(128 + 32 * n) as *const __m256i);
            let h = match k {
                0 => _mm256_slli_epi16::<4>(qh),
                1 => _mm256_slli_epi16::<2>(qh),
                2 => qh,
                _ => _mm256_srli_epi16::<2>(qh),
            };
            let u = _mm256_or_si256(lo, _mm256_and_si256(h, _mm256_set1_epi8(0x30)));
            _mm256_sub_epi8(u, _mm256_set1_epi8(32))
        }
    }
    #[inline(always)]
    unsafe fn scale(p: &Prep, g: usize) -> __m256i {
        // SAFETY: pure register arithmetic. Group 4n + k takes scales 8n + 2k (its first 16
        // elements, the low half's pair sums) and 8n + 2k + 1 (the high half's).
        unsafe {
            let (n, k) = (g / 4, g % 4);
            let lo = (((4 * k + 1) << 8) | (4 * k)) as i16;
            let hi = (((4 * k + 3) << 8) | (4 * k + 2)) as i16;
            let idx = _mm256_setr_m128i(_mm_set1_epi16(lo), _mm_set1_epi16(hi));
            _mm256_shuffle_epi8(p.sc[n], idx)
        }
    }
}

/// The eight-lane integer sums of the superblock at `xb` against the `N` Q8_K blocks at `y`
/// (`A` bytes apart). For Q6_K, `FLIPPED`: the activation quants are stored plus 128 (XOR
/// 0x80); otherwise they are flipped here.
#[inline(always)]
unsafe fn isums<F: KQuant, I: Isa, const N: usize, const FLIPPED: bool>(
    xb: *const u8,
    p: &Prep,
    y: *const u8,
) -> [__m256i; N] {
    // SAFETY: xb holds a superblock and y N Q8_K blocks (the caller's guarantee).
    unsafe {
        let mut s = [_mm256_setzero_si256(); N];
        let flip = _mm256_set1_epi8(-128);
        // Each group with a literal `g`, so its shifts and shuffle indices are constants.
        macro_rules! group {
            ($g:literal) => {{
                let w = F::group(xb, $g);
                let sc = F::scale(p, $g);
                // Signed values: 128·(q_2k + q_2k+1), to take from (y + 128)·q.
                let c = if F::SIGNED {
                    _mm256_maddubs_epi16(flip, w)
                } else {
                    _mm256_setzero_si256()
                };
                for t in 0..N {
                    let yv = _mm256_loadu_si256(y.add(t * A + 4 + 32 * $g) as *const __m256i);
                    let q = if F::SIGNED {
                        let yv = if FLIPPED {
                            yv
                        } else {
                            _mm256_xor_si256(yv, flip)
                        };
                        _mm256_sub_epi16(_mm256_maddubs_epi16(yv, w), c)
                    } else {
                        _mm256_maddubs_epi16(w, yv)
                    };
                    s[t] = if $g == 0 {
                        _mm256_madd_epi16(q, sc)
                    } else {
                        I::scaled_add(s[t], q, sc)
                    };
                }
            }};
        }
        group!(0);
        group!(1);
        group!(2);
        group!(3);
        group!(4);
        group!(5);
        group!(6);
        group!(7);
        s
    }
}

/// `Σ min_j·bsum_j` of a Q4_K/Q5_K superblock against the Q8_K block at `y`, as eight i32
/// lanes (two block sums each).
#[inline(always)]
unsafe fn min_lanes(p: &Prep, y: *const u8) -> __m256i {
    // SAFETY: the caller guarantees a Q8_K block at y.
    unsafe {
        let bs = _mm256_loadu_si256(y.add(260) as *const __m256i);
        _mm256_madd_epi16(bs, p.mins)
    }
}

/// `hsum8(v)`: `((v0 + v4) + (v2 + v6)) + ((v1 + v5) + (v3 + v7))`.
#[inline(always)]
unsafe fn hsum8(v: __m256) -> f32 {
    // SAFETY: pure register arithmetic under the caller's target features.
    unsafe {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
    }
}

/// Σ of the eight i32 lanes (exact).
#[inline(always)]
unsafe fn hsum_epi32(v: __m256i) -> i32 {
    // SAFETY: pure register arithmetic under the caller's target features.
    unsafe {
        let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
        let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
        _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32::<0b01>(s)))
    }
}

/// One weight row of `nb` superblocks at `x` against `N` activation rows packed by superblock
/// at `y`: block `t` of superblock `i` at `y + (N·i + t)·A` (for one row, the row itself).
/// `N` results. `FLIPPED` as in [`isums`].
#[inline(always)]
unsafe fn rows_dot<F: KQuant, I: Isa, const N: usize, const FLIPPED: bool>(
    nb: usize,
    x: *const u8,
    y: *const u8,
    prefetch: bool,
) -> [f32; N] {
    // SAFETY: x holds nb superblocks and y N·nb Q8_K blocks (the caller's guarantee).
    unsafe {
        let mut acc = [_mm256_setzero_ps(); N];
        let mut m = [0f32; N];
        // Minimum terms of four activations per vector, when N is a multiple of four.
        let mut m4 = [_mm_setzero_ps(); 2];
        for i in 0..nb {
            let xb = x.add(i * F::W);
            if prefetch {
                // Every cache line of the superblock (at most four).
                prefetch_ahead(xb);
                prefetch_ahead(xb.add(64));
                prefetch_ahead(xb.add(128));
                if F::W > 192 {
                    prefetch_ahead(xb.add(192));
                }
            }
            let yi = y.add(i * N * A);
            let da = |t: usize| (yi.add(t * A) as *const f32).read_unaligned();
            let p = F::prep(xb);
            let s = isums::<F, I, N, FLIPPED>(xb, &p, yi);
            let dw = _mm256_set1_ps(f16_load(xb.add(F::D)));
            for t in 0..N {
                let d = _mm256_mul_ps(dw, _mm256_set1_ps(da(t)));
                acc[t] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(s[t]), acc[t]);
            }
            if F::MIN {
                let dmin = f16_load(xb.add(F::D + 2));
                let lanes = |t: usize| min_lanes(&p, yi.add(t * A));
                if N.is_multiple_of(4) {
                    // Four activations at once: the same operations lane by lane.
                    for (c, m4) in m4.iter_mut().enumerate().take(N / 4) {
                        let t = 4 * c;
                        let summ = hsum4_epi32(lanes(t), lanes(t + 1), lanes(t + 2), lanes(t + 3));
                        let da4 = _mm_setr_ps(da(t), da(t + 1), da(t + 2), da(t + 3));
                        let dm = _mm_mul_ps(da4, _mm_set1_ps(dmin));
                        *m4 = _mm_add_ps(*m4, _mm_mul_ps(dm, _mm_cvtepi32_ps(summ)));
                    }
                } else {
                    for (t, m) in m.iter_mut().enumerate() {
                        let summ = hsum_epi32(lanes(t));
                        *m += (da(t) * dmin) * summ as f32;
                    }
                }
            }
        }
        if F::MIN && N.is_multiple_of(4) {
            for (c, m4) in m4.iter().enumerate().take(N / 4) {
                _mm_storeu_ps(m.as_mut_ptr().add(4 * c), *m4);
            }
        }
        std::array::from_fn(|t| {
            if F::MIN {
                hsum8(acc[t]) - m[t]
            } else {
                hsum8(acc[t])
            }
        })
    }
}

/// The single dot: one row against one activation row.
#[inline(always)]
unsafe fn dot<F: KQuant, I: Isa>(nb: usize, x: *const u8, y: *const u8) -> f32 {
    // SAFETY: x holds nb superblocks and y nb Q8_K blocks (checked by the wrapper).
    unsafe { rows_dot::<F, I, 1, false>(nb, x, y, false)[0] }
}

/// Every row against the `N` activation rows from `a` (`nb` blocks each), written to `out`
/// (the first activation's column). For several activations their blocks are first packed by
/// superblock (as [`rows_dot`] reads them: fixed offsets from one pointer) into `scratch`;
/// Q6_K's activation quants are stored plus 128 there.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn pass<F: KQuant, I: Isa, const N: usize>(
    nb: usize,
    w: *const u8,
    rows: usize,
    a: *const u8,
    out: *mut f32,
    row_stride: usize,
    tok_stride: usize,
    scratch: &mut Vec<u8>,
) {
    // SAFETY: w holds rows·nb superblocks, a N·nb Q8_K blocks and out the outputs of rows × N
    // (the caller's guarantee).
    unsafe {
        let (wrb, arb) = (nb * F::W, nb * A);
        let y = if N == 1 && !F::SIGNED {
            a
        } else {
            scratch.clear();
            for i in 0..nb {
                for t in 0..N {
                    let start = scratch.len();
                    let block = std::slice::from_raw_parts(a.add(t * arb + i * A), A);
                    scratch.extend_from_slice(block);
                    if F::SIGNED {
                        for q in &mut scratch[start + 4..start + 4 + QK_K] {
                            *q ^= 0x80;
                        }
                    }
                }
            }
            scratch.as_ptr()
        };
        for r in 0..rows {
            let x = w.add(r * wrb);
            if N == 1 {
                // One activation: the row is read once, so fetch all of it ahead.
                prefetch_row(x, wrb);
            }
            let v = rows_dot::<F, I, N, true>(nb, x, y, N > 1);
            let o = out.add(r * row_stride);
            for (k, v) in v.iter().enumerate() {
                *o.add(k * tok_stride) = *v;
            }
        }
    }
}

/// The tile: every row against eight activations per pass, then four, then one at a time.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn tile<F: KQuant, I: Isa>(
    nb: usize,
    w: *const u8,
    rows: usize,
    a: *const u8,
    n_acts: usize,
    out: *mut f32,
    row_stride: usize,
    tok_stride: usize,
) {
    // SAFETY: w holds rows·nb superblocks, a n_acts·nb Q8_K blocks and out
    // (rows-1)·row_stride + (n_acts-1)·tok_stride + 1 values (checked by the wrapper).
    unsafe {
        let arb = nb * A;
        let mut scratch = Vec::new();
        let mut t = 0;
        let (rs, ts) = (row_stride, tok_stride);
        while t + 8 <= n_acts {
            let (at, ot) = (a.add(t * arb), out.add(t * ts));
            pass::<F, I, 8>(nb, w, rows, at, ot, rs, ts, &mut scratch);
            t += 8;
        }
        if t + 4 <= n_acts {
            let (at, ot) = (a.add(t * arb), out.add(t * ts));
            pass::<F, I, 4>(nb, w, rows, at, ot, rs, ts, &mut scratch);
            t += 4;
        }
        for t in t..n_acts {
            let (at, ot) = (a.add(t * arb), out.add(t * ts));
            pass::<F, I, 1>(nb, w, rows, at, ot, rs, ts, &mut scratch);
        }
    }
}

macro_rules! k_kernels {
    ($fmt:ty, $isa:ty, $features:literal, $dot:ident, $dot_inner:ident, $tile:ident, $tile_inner:ident) => {
        safe_wrapper!($dot, $dot_inner, <$fmt>::W, A, QK_K);
        tile_wrapper!($tile, $tile_inner, <$fmt>::W, A, QK_K);

        #[target_feature(enable = $features)]
        unsafe fn $dot_inner(nb: usize, x: *const u8, y: *const u8) -> f32 {
            // SAFETY: the wrapper's checks are `dot`'s contract.
            unsafe { dot::<$fmt, $isa>(nb, x, y) }
        }

        #[allow(clippy::too_many_arguments)]
        #[target_feature(enable = $features)]
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
            // SAFETY: the wrapper's checks are `tile`'s contract.
            unsafe { tile::<$fmt, $isa>(nb, w, rows, a, n_acts, out, row_stride, tok_stride) }
        }
    };
}

k_kernels!(
    Q4K,
    Avx2,
    "avx2,fma,f16c",
    dot_q4_k_q8_k_avx2,
    q4_k_avx2,
    tile_q4_k_q8_k_avx2,
    tile_q4_k_avx2
);
k_kernels!(
    Q5K,
    Avx2,
    "avx2,fma,f16c",
    dot_q5_k_q8_k_avx2,
    q5_k_avx2,
    tile_q5_k_q8_k_avx2,
    tile_q5_k_avx2
);
k_kernels!(
    Q6K,
    Avx2,
    "avx2,fma,f16c",
    dot_q6_k_q8_k_avx2,
    q6_k_avx2,
    tile_q6_k_q8_k_avx2,
    tile_q6_k_avx2
);
k_kernels!(
    Q4K,
    Vnni,
    "avx2,fma,f16c,avxvnni",
    dot_q4_k_q8_k_vnni,
    q4_k_vnni,
    tile_q4_k_q8_k_vnni,
    tile_q4_k_vnni
);
k_kernels!(
    Q5K,
    Vnni,
    "avx2,fma,f16c,avxvnni",
    dot_q5_k_q8_k_vnni,
    q5_k_vnni,
    tile_q5_k_q8_k_vnni,
    tile_q5_k_vnni
);
k_kernels!(
    Q6K,
    Vnni,
    "avx2,fma,f16c,avxvnni",
    dot_q6_k_q8_k_vnni,
    q6_k_vnni,
    tile_q6_k_q8_k_vnni,
    tile_q6_k_vnni
);
