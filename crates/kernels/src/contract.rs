//! What every SIMD tier shares: the operand checks, the safe wrappers around target-feature
//! bodies, the tile geometry, and the **summation-order contract** — the exact float operations
//! (and their order) a dot product performs once its integer sums are known.
//!
//! # The contract
//!
//! Integer products are summed exactly in i32 (no saturation, any order: the sums are exact, so
//! the order of integer additions does not matter). Only the *partition* of a block's products
//! into integer sums and the float work after it are fixed. `fma(a, b, c)` is a fused
//! multiply-add (one rounding), `+` and `·` round once each, `f32(S)` converts an i32 (exact
//! below 2^24).
//!
//! * **Block sums** (every 32-element block format: Q4_0, Q5_0, Q8_0 against Q8_0; Q4_1, Q5_1
//!   against Q8_1): block `i`'s 32 products form one sum `S_i`; with `d_i = d_w·d_a` (f16
//!   scales widened, then one product), `acc[i mod 4] = fma(d_i, f32(S_i), acc[i mod 4])`; Q4_1
//!   and Q5_1 also add `ext[i mod 4] = ext[i mod 4] + m_w·s_a` (the weight's minimum times the
//!   activation's stored `d·Σq`). Result `(acc0 + acc1) + (acc2 + acc3)`
//!   (`+ ((ext0 + ext1) + (ext2 + ext3))`).
//! * **Eight lanes** (Q2_K..Q6_K per 256-superblock): the products of element `e` go to lane
//!   `l = (e mod 32) / 4` (four consecutive elements per lane, the sub-block scale multiplying
//!   each product's integer first), so a superblock gives eight sums `S_l`;
//!   `acc[l] = fma(d, f32(S_l), acc[l])` with `d = d_a·d_w` (`d_a` the Q8_K f32 scale). Minimum
//!   terms go to one scalar: Q2_K, Q4_K, Q5_K `m += (d_a·dmin_w)·f32(Σ min_j·bsum_j)`. Result
//!   `hsum8(acc) − m`, where `hsum8(a) = ((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7))`.
//! * **Float rows** (F16, BF16 and F32 weights against F32): two (F16, BF16) or four (F32) sets
//!   of eight lanes take 16 (32) elements per step, `acc[k][l] = fma(x, y, acc[k][l])`; F32 then
//!   takes steps of 8 into set 0; the sets are added lane-wise (F32: `(s0 + s1) + (s2 + s3)`),
//!   reduced by `hsum8`, and the elements left over added one by one as `s + x·y` (two roundings).
//! * **axpy** (f32 and f16 `x`): `y = fma(a, x, y)` for the first `n − n mod 8` elements,
//!   `y + a·x` for the rest.
//! * **LSTM epilogue**: eight units at a time through the `exp` of [`crate::ops::fast_exp`]
//!   evaluated with fused multiply-adds, `σ(a)·tanh(b)` as one division; the last `H mod 8`
//!   units by the portable formulas.
//!
//! Q5_0 and Q5_1 followed the eight-lane rule (lane `(e mod 32) / 4`, eight FMAs per block)
//! until their tiles were written; they now take block sums like Q4_0 and Q4_1. With eight
//! lanes a 32-block costs a convert, a scale product and an FMA of eight lanes per (row, token)
//! whatever the tile does, and its sums cannot be formed by instructions that add more than
//! four products into one lane across rows (`vpdpbusd` over transposed rows, i8mm `smmla`'s
//! eight-element dots). With one sum per block, the eight-row tile serves them as it does Q4_0:
//! its inner loop takes 27 instructions (AVX-VNNI) or 37 (AVX2) per block and token for eight
//! rows. The K-quants keep eight lanes: their float work is per 256 elements, and their
//! sub-block scales multiply integer sums per 32 (16) elements, which `vpmaddwd` / `vpdpwssd` do
//! per lane.
//!
//! Every SIMD kernel of every level (AVX2, AVX-VNNI, NEON, NEON+dotprod, NEON+i8mm) follows the
//! contract, so each gives exactly the bits of the scalar functions in this module ([`dot`],
//! [`dot_f32`], …), its tiles give exactly its single dots, and a token's result depends neither
//! on the level nor on the batch it is computed in. The plain scalar references (the `Scalar`
//! level, ggml's `*_generic` order: one running float sum per row) differ from it by rounding
//! only; the tests bound that difference.

use crate::generic::formats::{f16_at, q3_k_scales, scale_min_k4, QK, QK_K};
use crate::{bytes_for, require, DType, KernelError};

// ---------------------------------------------------------------------------------------------
// Operand checks

/// Blocks of `n` elements (`n / block`), after checking that `w` and `a` hold them.
pub(crate) fn check_dot(
    n: usize,
    w: &[u8],
    wsize: usize,
    a: &[u8],
    asize: usize,
    block: usize,
) -> usize {
    let nb = n / block;
    assert!(
        w.len() >= nb * wsize && a.len() >= nb * asize,
        "dot product operands shorter than {n} elements"
    );
    nb
}

/// Checks that a tile call's operands hold `rows` weight rows and `n_acts` activation rows of
/// `nb` blocks each, and that `out` reaches its last element.
#[allow(clippy::too_many_arguments)]
pub(crate) fn check_tile(
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
    let fits = |len: usize, count: usize, size: usize| {
        count
            .checked_mul(nb)
            .and_then(|v| v.checked_mul(size))
            .is_some_and(|v| len >= v)
    };
    assert!(
        fits(w.len(), rows, wsize)
            && fits(a.len(), n_acts, asize)
            && need.is_some_and(|need| out.len() >= need),
        "tile operands too short"
    );
}

/// The checked form of a tile call for the public API: the same conditions as
/// [`check_tile`], as an error.
#[allow(clippy::too_many_arguments)]
pub(crate) fn tile_shape_ok(
    wtype: DType,
    n: usize,
    w: &[u8],
    rows: usize,
    a: &[u8],
    n_acts: usize,
    out: &[f32],
    row_stride: usize,
    tok_stride: usize,
) -> Result<(), KernelError> {
    let f = require(wtype, "tile")?;
    let wrb = bytes_for(wtype, n, "tile")?;
    let arb = bytes_for(f.vec_dot_type, n, "tile")?;
    let last = |n: usize, stride: usize| n.saturating_sub(1).checked_mul(stride);
    let need = match (last(rows, row_stride), last(n_acts, tok_stride)) {
        _ if rows == 0 || n_acts == 0 => Some(0),
        (Some(r), Some(t)) => r.checked_add(t).and_then(|v| v.checked_add(1)),
        _ => None,
    };
    let ok = rows.checked_mul(wrb).is_some_and(|v| w.len() >= v)
        && n_acts.checked_mul(arb).is_some_and(|v| a.len() >= v)
        && need.is_some_and(|need| out.len() >= need);
    if ok {
        Ok(())
    } else {
        Err(KernelError::Shape {
            op: "tile",
            expected: format!(
                "{rows}×{wrb} weight bytes, {n_acts}×{arb} activation bytes and an output \
                 reaching ({rows}-1)·{row_stride} + ({n_acts}-1)·{tok_stride}"
            ),
            actual: format!("{}, {} and {}", w.len(), a.len(), out.len()),
        })
    }
}

/// The safe dot entry `$name` (the [`crate::VecDot`] signature): checks that the operands hold
/// `n / $block` blocks of `$wsize` weight and `$asize` activation bytes, then runs the
/// target-feature body `$inner(nb, w, a)`.
macro_rules! safe_wrapper {
    ($name:ident, $inner:expr, $wsize:expr, $asize:expr, $block:expr) => {
        pub(crate) fn $name(n: usize, w: &[u8], a: &[u8]) -> f32 {
            let nb = $crate::contract::check_dot(n, w, $wsize, a, $asize, $block);
            // SAFETY: this wrapper is plugged into a kernel table only by its tier's `plug`,
            // which runs only once detection confirmed the CPU features `$inner` is compiled
            // for; the operands hold `nb` whole blocks (checked just above).
            unsafe { $inner(nb, w.as_ptr(), a.as_ptr()) }
        }
    };
}
pub(crate) use safe_wrapper;

/// The safe tile entry `$name` (the [`crate::Tile`] signature): checks the operands, then calls
/// the target-feature body `$inner` over rows of `n / $block` blocks of `$wsize` weight and
/// `$asize` activation bytes.
macro_rules! tile_wrapper {
    ($name:ident, $inner:expr, $wsize:expr, $asize:expr, $block:expr) => {
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
            let nb = n / $block;
            $crate::contract::check_tile(
                nb, w, $wsize, rows, a, $asize, n_acts, out, row_stride, tok_stride,
            );
            // SAFETY: plugged into a kernel table only by its tier's `plug`, which runs only
            // once detection confirmed the CPU features `$inner` is compiled for; the operand
            // lengths were checked just above.
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
pub(crate) use tile_wrapper;

/// Run `$block!(i, k)` for every block `i < $nb` with `k = i mod 4` a literal, so each of
/// the four residue accumulators is named statically and stays in a register.
#[allow(unused_macros)]
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
#[allow(unused_imports)]
pub(crate) use by_residue;

/// Blocks of activation data a tile precomputes on the stack; longer rows fall back to the
/// single-vector kernel per activation (same results).
pub(crate) const TILE_MAX_BLOCKS: usize = 128;

/// The layout of a tile call: weight rows, bytes per weight and activation row, output
/// strides.
pub(crate) struct TileGeom {
    pub rows: usize,
    pub wrb: usize,
    pub arb: usize,
    pub row_stride: usize,
    pub tok_stride: usize,
}

/// Activations `t..n_acts` of a tile one at a time with the single-vector kernel `dot`, each
/// weight row handed to `prefetch` (with its length) before it is walked.
///
/// # Safety
/// `w`, `a` and `out` hold the tile's operands as [`check_tile`] checks them for `g`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) unsafe fn single_tail(
    g: &TileGeom,
    w: *const u8,
    a: *const u8,
    t: usize,
    n_acts: usize,
    out: *mut f32,
    prefetch: impl Fn(*const u8, usize),
    dot: impl Fn(*const u8, *const u8) -> f32,
) {
    if t >= n_acts {
        return;
    }
    for r in 0..g.rows {
        let wr = w.wrapping_add(r * g.wrb);
        prefetch(wr, g.wrb);
        for u in t..n_acts {
            // SAFETY: r < rows and u < n_acts: the weight row, the activation row and the
            // output element are within the operands (the caller's guarantee).
            unsafe { *out.add(r * g.row_stride + u * g.tok_stride) = dot(wr, a.add(u * g.arb)) };
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The contract as scalar code

/// `(a0 + a1) + (a2 + a3)`.
#[inline(always)]
pub(crate) fn sum4(a: [f32; 4]) -> f32 {
    (a[0] + a[1]) + (a[2] + a[3])
}

/// `((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7))`.
#[inline(always)]
pub(crate) fn hsum8(a: [f32; 8]) -> f32 {
    let t = [a[0] + a[4], a[1] + a[5], a[2] + a[6], a[3] + a[7]];
    (t[0] + t[2]) + (t[1] + t[3])
}

fn f32_at(b: &[u8], off: usize) -> f32 {
    f32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn i8s(b: &[u8]) -> impl Iterator<Item = i32> + '_ {
    b.iter().map(|&v| i32::from(v as i8))
}

/// Block sums: `S_i` from `isum(w_block, a_block)`, `acc[i mod 4] = fma(d_w·d_a, S_i, ·)`; with
/// `min`, `ext[i mod 4] += m_w·s_a` (f16 pairs at offset 2 of both blocks).
fn block_sums(
    n: usize,
    (w, wsize): (&[u8], usize),
    (a, asize): (&[u8], usize),
    min: bool,
    isum: impl Fn(&[u8], &[u8]) -> i32,
) -> f32 {
    let (mut acc, mut ext) = ([0f32; 4], [0f32; 4]);
    for (i, (x, y)) in w
        .chunks_exact(wsize)
        .zip(a.chunks_exact(asize))
        .take(n / QK)
        .enumerate()
    {
        let d = f16_at(x, 0) * f16_at(y, 0);
        acc[i % 4] = d.mul_add(isum(x, y) as f32, acc[i % 4]);
        if min {
            ext[i % 4] += f16_at(x, 2) * f16_at(y, 2);
        }
    }
    if min {
        sum4(acc) + sum4(ext)
    } else {
        sum4(acc)
    }
}

/// The 32 weight values of a 32-block as integers, in element order.
fn q4_0_vals(x: &[u8]) -> [i32; 32] {
    std::array::from_fn(|e| {
        let q = x[2 + e % 16];
        i32::from(if e < 16 { q & 0xF } else { q >> 4 }) - 8
    })
}
fn q4_1_vals(x: &[u8]) -> [i32; 32] {
    std::array::from_fn(|e| {
        let q = x[4 + e % 16];
        i32::from(if e < 16 { q & 0xF } else { q >> 4 })
    })
}
fn q5_vals(x: &[u8], qh_off: usize, off: i32) -> [i32; 32] {
    let qh = u32::from_le_bytes([x[qh_off], x[qh_off + 1], x[qh_off + 2], x[qh_off + 3]]);
    std::array::from_fn(|e| {
        let q = x[qh_off + 4 + e % 16];
        let nib = i32::from(if e < 16 { q & 0xF } else { q >> 4 });
        (nib | (((qh >> e) & 1) << 4) as i32) - off
    })
}

fn dot_i32(q: &[i32], y: &[u8]) -> i32 {
    q.iter().zip(i8s(y)).map(|(q, y)| q * y).sum()
}

/// Eight-lane sums of a 256-superblock: element `e` (value `q_e`, scale `sc16[e / 16]`) goes to
/// lane `(e mod 32) / 4`.
fn lanes256(q: &[i32; 256], y: &[u8], sc16: &[i32; 16]) -> [i32; 8] {
    let mut lanes = [0i32; 8];
    for (e, (q, y)) in q.iter().zip(i8s(y)).enumerate() {
        lanes[(e % 32) / 4] += sc16[e / 16] * q * y;
    }
    lanes
}

fn lanes_fma(acc: &mut [f32; 8], d: f32, lanes: [i32; 8]) {
    for (a, s) in acc.iter_mut().zip(lanes) {
        *a = d.mul_add(s as f32, *a);
    }
}

/// A K-quant superblock's values, per-16 scales, `d_w`, and where the format has a minimum,
/// `dmin_w` and the integer term `Σ min_j·bsum_j`.
type KBlock = ([i32; 256], [i32; 16], f32, Option<(f32, i32)>);

fn bsums(y: &[u8]) -> [i32; 16] {
    std::array::from_fn(|j| i32::from(i16::from_le_bytes([y[260 + 2 * j], y[261 + 2 * j]])))
}

fn q2_k_block(x: &[u8], y: &[u8]) -> KBlock {
    let q = std::array::from_fn(|e| {
        let (n, k, b) = (e / 128, (e % 128) / 32, e % 32);
        i32::from((x[16 + 32 * n + b] >> (2 * k)) & 3)
    });
    let sc = std::array::from_fn(|j| i32::from(x[j] & 0xF));
    let bs = bsums(y);
    let summ = (0..16).map(|j| bs[j] * i32::from(x[j] >> 4)).sum();
    (q, sc, f16_at(x, 80), Some((f16_at(x, 82), summ)))
}

fn q3_k_block(x: &[u8], _y: &[u8]) -> KBlock {
    let q = std::array::from_fn(|e| {
        let (n, k, b) = (e / 128, (e % 128) / 32, e % 32);
        let g = 4 * n + k;
        let v = i32::from((x[32 + 32 * n + b] >> (2 * k)) & 3);
        v - if x[b] & (1 << g) != 0 { 0 } else { 4 }
    });
    let s = q3_k_scales(&x[96..108]);
    (q, s.map(i32::from), f16_at(x, 108), None)
}

fn q45_k_block(x: &[u8], y: &[u8], five: bool) -> KBlock {
    let qs = if five { &x[48..176] } else { &x[16..144] };
    let q = std::array::from_fn(|e| {
        let (j, hi, b) = (e / 64, (e % 64) / 32, e % 32);
        let v = qs[32 * j + b];
        let nib = i32::from(if hi == 0 { v & 0xF } else { v >> 4 });
        let h = if five && x[16 + b] & (1 << (2 * j + hi)) != 0 {
            16
        } else {
            0
        };
        nib + h
    });
    let sc = std::array::from_fn(|k| i32::from(scale_min_k4(k / 2, &x[4..16]).0));
    let bs = bsums(y);
    let summ = (0..8)
        .map(|s| i32::from(scale_min_k4(s, &x[4..16]).1) * (bs[2 * s] + bs[2 * s + 1]))
        .sum();
    (q, sc, f16_at(x, 0), Some((f16_at(x, 2), summ)))
}

fn q6_k_block(x: &[u8], _y: &[u8]) -> KBlock {
    let q = std::array::from_fn(|e| {
        let (n, g, b) = (e / 128, (e % 128) / 32, e % 32);
        let ql = x[64 * n + b + if g % 2 == 1 { 32 } else { 0 }];
        let lo = if g < 2 { ql & 0xF } else { ql >> 4 };
        let hi = (x[128 + 32 * n + b] >> (2 * g)) & 3;
        i32::from(lo | (hi << 4)) - 32
    });
    let sc = std::array::from_fn(|k| i32::from(x[192 + k] as i8));
    (q, sc, f16_at(x, 208), None)
}

fn k_lanes(
    n: usize,
    w: &[u8],
    wsize: usize,
    a: &[u8],
    block: impl Fn(&[u8], &[u8]) -> KBlock,
) -> f32 {
    let mut acc = [0f32; 8];
    let mut m = None;
    for (x, y) in w
        .chunks_exact(wsize)
        .zip(a.chunks_exact(292))
        .take(n / QK_K)
    {
        let (q, sc, dw, min) = block(x, y);
        let dy = f32_at(y, 0);
        lanes_fma(&mut acc, dy * dw, lanes256(&q, &y[4..260], &sc));
        if let Some((dmin, summ)) = min {
            m = Some(m.unwrap_or(0.0) + (dy * dmin) * summ as f32);
        }
    }
    match m {
        Some(m) => hsum8(acc) - m,
        None => hsum8(acc),
    }
}

/// Float rows: `sets` sets of eight lanes over steps of `8·sets` elements (F32 then steps of 8
/// into set 0), lane-wise sum of the sets, `hsum8`, then the tail one element at a time.
fn float_rows(n: usize, sets: usize, x: impl Fn(usize) -> f32, y: impl Fn(usize) -> f32) -> f32 {
    let mut acc = [[0f32; 8]; 4];
    let mut i = 0;
    while i + 8 * sets <= n {
        for (k, set) in acc.iter_mut().enumerate().take(sets) {
            for (l, a) in set.iter_mut().enumerate() {
                *a = x(i + 8 * k + l).mul_add(y(i + 8 * k + l), *a);
            }
        }
        i += 8 * sets;
    }
    if sets == 4 {
        while i + 8 <= n {
            for (l, a) in acc[0].iter_mut().enumerate() {
                *a = x(i + l).mul_add(y(i + l), *a);
            }
            i += 8;
        }
    }
    let lanes: [f32; 8] = std::array::from_fn(|l| {
        if sets == 4 {
            (acc[0][l] + acc[1][l]) + (acc[2][l] + acc[3][l])
        } else {
            acc[0][l] + acc[1][l]
        }
    });
    let mut s = hsum8(lanes);
    while i < n {
        s += x(i) * y(i);
        i += 1;
    }
    s
}

fn f32_le(b: &[u8], i: usize) -> f32 {
    f32_at(b, 4 * i)
}
fn f16_le(b: &[u8], i: usize) -> f32 {
    f16_at(b, 2 * i)
}
fn bf16_le(b: &[u8], i: usize) -> f32 {
    f32::from_bits(u32::from(u16::from_le_bytes([b[2 * i], b[2 * i + 1]])) << 16)
}

/// The dot product of `n` elements as the contract orders it: `w` in `wtype`, `a` in its
/// activation type. Every SIMD level's dot and tile give exactly these bits.
pub fn dot(wtype: DType, n: usize, w: &[u8], a: &[u8]) -> Result<f32, KernelError> {
    let f = require(wtype, "contract::dot")?;
    let wn = bytes_for(wtype, n, "contract::dot")?;
    let an = bytes_for(f.vec_dot_type, n, "contract::dot")?;
    if w.len() < wn || a.len() < an {
        return Err(KernelError::Shape {
            op: "contract::dot",
            expected: format!("{wn} weight and {an} activation bytes"),
            actual: format!("{} and {}", w.len(), a.len()),
        });
    }
    Ok(match wtype {
        DType::Q4_0 => block_sums(n, (w, 18), (a, 34), false, |x, y| {
            dot_i32(&q4_0_vals(x), &y[2..34])
        }),
        DType::Q8_0 => block_sums(n, (w, 34), (a, 34), false, |x, y| {
            i8s(&x[2..34]).zip(i8s(&y[2..34])).map(|(p, q)| p * q).sum()
        }),
        DType::Q4_1 => block_sums(n, (w, 20), (a, 36), true, |x, y| {
            dot_i32(&q4_1_vals(x), &y[4..36])
        }),
        DType::Q5_0 => block_sums(n, (w, 22), (a, 34), false, |x, y| {
            dot_i32(&q5_vals(x, 2, 16), &y[2..34])
        }),
        DType::Q5_1 => block_sums(n, (w, 24), (a, 36), true, |x, y| {
            dot_i32(&q5_vals(x, 4, 0), &y[4..36])
        }),
        DType::Q2_K => k_lanes(n, w, 84, a, q2_k_block),
        DType::Q3_K => k_lanes(n, w, 110, a, q3_k_block),
        DType::Q4_K => k_lanes(n, w, 144, a, |x, y| q45_k_block(x, y, false)),
        DType::Q5_K => k_lanes(n, w, 176, a, |x, y| q45_k_block(x, y, true)),
        DType::Q6_K => k_lanes(n, w, 210, a, q6_k_block),
        DType::F32 => float_rows(n, 4, |i| f32_le(w, i), |i| f32_le(a, i)),
        DType::F16 => float_rows(n, 2, |i| f16_le(w, i), |i| f32_le(a, i)),
        DType::BF16 => float_rows(n, 2, |i| bf16_le(w, i), |i| f32_le(a, i)),
        _ => {
            return Err(KernelError::Unsupported {
                dtype: wtype,
                op: "contract::dot",
            })
        }
    })
}

/// Σ x·y over `min(x.len(), y.len())` elements, in the contract's order (as the F32 row dot).
pub fn dot_f32(x: &[f32], y: &[f32]) -> f32 {
    float_rows(x.len().min(y.len()), 4, |i| x[i], |i| y[i])
}

/// Σ x·y with `y` in f16 bits, in the contract's order (as the F16 row dot).
pub fn dot_f32_f16(x: &[f32], y: &[u16]) -> f32 {
    let h = |i: usize| half::f16::from_bits(y[i]).to_f32();
    float_rows(x.len().min(y.len()), 2, h, |i| x[i])
}

/// `y += a·x`, in the contract's order.
pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    let n = x.len().min(y.len());
    let body = n - n % 8;
    for i in 0..n {
        y[i] = if i < body {
            a.mul_add(x[i], y[i])
        } else {
            y[i] + a * x[i]
        };
    }
}

/// `y += a·x` with `x` in f16 bits, in the contract's order.
pub fn axpy_f16(a: f32, x: &[u16], y: &mut [f32]) {
    let xs: Vec<f32> = x
        .iter()
        .map(|&h| half::f16::from_bits(h).to_f32())
        .collect();
    axpy(a, &xs, y)
}

/// `e^x` as the SIMD epilogues compute it: [`crate::ops::fast_exp`]'s reduction and polynomial
/// with fused multiply-adds and round-to-nearest-even.
fn exp_fma(x: f32) -> f32 {
    let x = x.clamp(-87.3, 88.3);
    let n = (x * std::f32::consts::LOG2_E).round_ties_even();
    let r = (-n).mul_add(0.693_145_75, x);
    let r = (-n).mul_add(1.428_606_8e-6, r);
    let mut p = 1.0f32 / 5040.0;
    for c in [
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = p.mul_add(r, c);
    }
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// σ(a)·tanh(b) as `(e^2b − 1) / ((1 + e^−a)(e^2b + 1))`, `a` clamped to ±30 and `b` to ±9.
fn sigmoid_tanh(a: f32, b: f32) -> f32 {
    let ea = exp_fma(0.0 - a.clamp(-30.0, 30.0));
    let eb = exp_fma(b.clamp(-9.0, 9.0) * 2.0);
    (eb - 1.0) / ((1.0 + ea) * (eb + 1.0))
}

/// The LSTM gate epilogue ([`crate::ops::lstm_cell`]) in the contract's order: units in whole
/// groups of eight by the fused formulas, the rest by the portable ones.
pub fn lstm_cell(z: &[f32], xp: &[f32], bias: &[f32], c: &mut [f32], h: &mut [f32]) {
    use crate::ops::{fast_sigmoid, fast_tanh};
    let n = c.len();
    assert!(h.len() == n && z.len() == 4 * n && xp.len() == 4 * n && bias.len() == 4 * n);
    let body = n - n % 8;
    for j in 0..n {
        let g = |k: usize| (z[k * n + j] + xp[k * n + j]) + bias[k * n + j];
        if j < body {
            let f = 1.0 / (1.0 + exp_fma(0.0 - g(1)));
            let cj = f.mul_add(c[j], sigmoid_tanh(g(0), g(2)));
            c[j] = cj;
            h[j] = sigmoid_tanh(g(3), cj);
        } else {
            let cj = fast_sigmoid(g(1)) * c[j] + fast_sigmoid(g(0)) * fast_tanh(g(2));
            c[j] = cj;
            h[j] = fast_sigmoid(g(3)) * fast_tanh(cj);
        }
    }
}
