//! Scalar reference implementations of the GGUF block formats: dequantize, quantize, and the
//! block dot products, bit-exact with ggml's `*_ref` / `*_generic` definitions
//! (ggml/src/ggml-quants.c). Every function works on whole blocks of raw little-endian bytes.
//!
//! Layouts (bytes, in order):
//! * Q4_0: f16 d, u8 qs[16] — x = (q - 8)·d; low nibbles are elements 0..16, high 16..32.
//! * Q4_1: f16 d, f16 m, u8 qs[16] — x = q·d + m.
//! * Q5_0: f16 d, u32 qh, u8 qs[16] — x = ((q | h<<4) - 16)·d, h = bit j of qh.
//! * Q5_1: f16 d, f16 m, u32 qh, u8 qs[16] — x = (q | h<<4)·d + m.
//! * Q8_0: f16 d, i8 qs[32]. Q8_1: f16 d, f16 s (= d·Σqs), i8 qs[32].
//! * Q2_K: u8 scales[16], u8 qs[64], f16 d, f16 dmin.
//! * Q3_K: u8 hmask[32], u8 qs[64], u8 scales[12], f16 d.
//! * Q4_K: f16 d, f16 dmin, u8 scales[12], u8 qs[128].
//! * Q5_K: f16 d, f16 dmin, u8 scales[12], u8 qh[32], u8 qs[128].
//! * Q6_K: u8 ql[128], u8 qh[64], i8 scales[16], f16 d.
//! * Q8_K: f32 d, i8 qs[256], i16 bsums[16].

use half::{bf16, f16};

pub(crate) const QK: usize = 32;
pub(crate) const QK_K: usize = 256;

#[inline(always)]
pub(crate) fn f16_at(b: &[u8], off: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[off], b[off + 1]])).to_f32()
}

#[inline(always)]
pub(crate) fn put_f16(b: &mut [u8], off: usize, v: f32) {
    b[off..off + 2].copy_from_slice(&f16::from_f32(v).to_bits().to_le_bytes());
}

#[inline(always)]
fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// The largest magnitude in `x` and the value (with its sign) that has it; the first such value
/// on ties, as ggml's reference quantizers.
#[inline]
pub(crate) fn abs_max(x: &[f32]) -> (f32, f32) {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    (amax, max)
}

/// ggml's `nearest_int`: round to nearest, ties to even, for |x| < 2^22.
#[inline(always)]
pub(crate) fn nearest_int(x: f32) -> i32 {
    let v = x + 12582912.0;
    (v.to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
}

// ---------------------------------------------------------------------------------------------
// Plain float types

pub(crate) fn f32_to_f32(src: &[u8], dst: &mut [f32]) {
    for (d, s) in dst.iter_mut().zip(src.chunks_exact(4)) {
        *d = f32::from_le_bytes([s[0], s[1], s[2], s[3]]);
    }
}
pub(crate) fn f32_from_f32(src: &[f32], dst: &mut [u8]) {
    for (s, d) in src.iter().zip(dst.chunks_exact_mut(4)) {
        d.copy_from_slice(&s.to_le_bytes());
    }
}
pub(crate) fn f16_to_f32(src: &[u8], dst: &mut [f32]) {
    for (d, s) in dst.iter_mut().zip(src.chunks_exact(2)) {
        *d = f16::from_bits(u16::from_le_bytes([s[0], s[1]])).to_f32();
    }
}
pub(crate) fn f16_from_f32(src: &[f32], dst: &mut [u8]) {
    for (s, d) in src.iter().zip(dst.chunks_exact_mut(2)) {
        d.copy_from_slice(&f16::from_f32(*s).to_bits().to_le_bytes());
    }
}
pub(crate) fn bf16_to_f32(src: &[u8], dst: &mut [f32]) {
    for (d, s) in dst.iter_mut().zip(src.chunks_exact(2)) {
        *d = f32::from_bits(u32::from(u16::from_le_bytes([s[0], s[1]])) << 16);
    }
}
/// Round to nearest even, NaN kept quiet, as ggml's `ggml_compute_fp32_to_bf16`.
pub(crate) fn bf16_from_f32(src: &[f32], dst: &mut [u8]) {
    for (s, d) in src.iter().zip(dst.chunks_exact_mut(2)) {
        let u = s.to_bits();
        let h = if (u & 0x7fff_ffff) > 0x7f80_0000 {
            ((u >> 16) | 64) as u16
        } else {
            ((u + (0x7fff + ((u >> 16) & 1))) >> 16) as u16
        };
        d.copy_from_slice(&h.to_le_bytes());
    }
}
#[allow(dead_code)]
pub(crate) fn bf16_value(b: u16) -> f32 {
    bf16::from_bits(b).to_f32()
}

// ---------------------------------------------------------------------------------------------
// 32-element block types

pub(crate) fn q4_0_to_f32(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(18).zip(dst.chunks_exact_mut(QK)) {
        let d = f16_at(b, 0);
        for j in 0..16 {
            let q = b[2 + j];
            y[j] = ((q & 0xF) as i32 - 8) as f32 * d;
            y[j + 16] = ((q >> 4) as i32 - 8) as f32 * d;
        }
    }
}

pub(crate) fn q4_0_from_f32(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(18)) {
        let (_, max) = abs_max(x);
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        put_f16(b, 0, d);
        for j in 0..16 {
            let x0 = ((x[j] * id + 8.5) as i8).min(15) as u8;
            let x1 = ((x[j + 16] * id + 8.5) as i8).min(15) as u8;
            b[2 + j] = x0 | (x1 << 4);
        }
    }
}

pub(crate) fn q4_1_to_f32(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(20).zip(dst.chunks_exact_mut(QK)) {
        let d = f16_at(b, 0);
        let m = f16_at(b, 2);
        for j in 0..16 {
            let q = b[4 + j];
            y[j] = (q & 0xF) as f32 * d + m;
            y[j + 16] = (q >> 4) as f32 * d + m;
        }
    }
}

/// The block's minimum and maximum as ggml takes them (`v < min`, `v > max` from ±FLT_MAX):
/// `f32::min`/`max` may return either zero for a −0.0/+0.0 pair (aarch64's `fminnm` takes
/// −0.0), which would change the stored minimum's sign bit.
fn min_max(x: &[f32]) -> (f32, f32) {
    let (mut min, mut max) = (f32::MAX, -f32::MAX);
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

pub(crate) fn q4_1_from_f32(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(20)) {
        let (min, max) = min_max(x);
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        put_f16(b, 0, d);
        put_f16(b, 2, min);
        for j in 0..16 {
            let x0 = (((x[j] - min) * id + 0.5) as i8).min(15) as u8;
            let x1 = (((x[j + 16] - min) * id + 0.5) as i8).min(15) as u8;
            b[4 + j] = x0 | (x1 << 4);
        }
    }
}

pub(crate) fn q5_0_to_f32(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(22).zip(dst.chunks_exact_mut(QK)) {
        let d = f16_at(b, 0);
        let qh = u32_at(b, 2);
        for j in 0..16 {
            let q = b[6 + j];
            let h0 = ((qh >> j) & 1) << 4;
            let h1 = ((qh >> (j + 16)) & 1) << 4;
            y[j] = (((q & 0xF) as u32 | h0) as i32 - 16) as f32 * d;
            y[j + 16] = (((q >> 4) as u32 | h1) as i32 - 16) as f32 * d;
        }
    }
}

pub(crate) fn q5_0_from_f32(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(22)) {
        let (_, max) = abs_max(x);
        let d = max / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        put_f16(b, 0, d);
        let mut qh = 0u32;
        for j in 0..16 {
            let x0 = ((x[j] * id + 16.5) as i8).min(31) as u8;
            let x1 = ((x[j + 16] * id + 16.5) as i8).min(31) as u8;
            b[6 + j] = (x0 & 0xF) | ((x1 & 0xF) << 4);
            qh |= u32::from((x0 & 0x10) >> 4) << j;
            qh |= u32::from((x1 & 0x10) >> 4) << (j + 16);
        }
        b[2..6].copy_from_slice(&qh.to_le_bytes());
    }
}

pub(crate) fn q5_1_to_f32(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(24).zip(dst.chunks_exact_mut(QK)) {
        let d = f16_at(b, 0);
        let m = f16_at(b, 2);
        let qh = u32_at(b, 4);
        for j in 0..16 {
            let q = b[8 + j];
            let h0 = ((qh >> j) & 1) << 4;
            let h1 = ((qh >> (j + 16)) & 1) << 4;
            y[j] = ((q & 0xF) as u32 | h0) as f32 * d + m;
            y[j + 16] = ((q >> 4) as u32 | h1) as f32 * d + m;
        }
    }
}

pub(crate) fn q5_1_from_f32(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(24)) {
        let (min, max) = min_max(x);
        let d = (max - min) / 31.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        put_f16(b, 0, d);
        put_f16(b, 2, min);
        let mut qh = 0u32;
        for j in 0..16 {
            let x0 = ((x[j] - min) * id + 0.5) as u8;
            let x1 = ((x[j + 16] - min) * id + 0.5) as u8;
            b[8 + j] = (x0 & 0xF) | ((x1 & 0xF) << 4);
            qh |= u32::from((x0 & 0x10) >> 4) << j;
            qh |= u32::from((x1 & 0x10) >> 4) << (j + 16);
        }
        b[4..8].copy_from_slice(&qh.to_le_bytes());
    }
}

pub(crate) fn q8_0_to_f32(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(34).zip(dst.chunks_exact_mut(QK)) {
        let d = f16_at(b, 0);
        for j in 0..QK {
            y[j] = (b[2 + j] as i8) as f32 * d;
        }
    }
}

pub(crate) fn q8_0_from_f32(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(34)) {
        let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        put_f16(b, 0, d);
        for j in 0..QK {
            b[2 + j] = ((x[j] * id).round() as i8) as u8;
        }
    }
}

pub(crate) fn q8_1_to_f32(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(36).zip(dst.chunks_exact_mut(QK)) {
        let d = f16_at(b, 0);
        for j in 0..QK {
            y[j] = (b[4 + j] as i8) as f32 * d;
        }
    }
}

pub(crate) fn q8_1_from_f32(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(36)) {
        let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut sum = 0i32;
        for j in 0..QK {
            let q = (x[j] * id).round() as i8;
            sum += i32::from(q);
            b[4 + j] = q as u8;
        }
        put_f16(b, 0, d);
        put_f16(b, 2, sum as f32 * d);
    }
}

// ---------------------------------------------------------------------------------------------
// K-quants (256-element super-blocks)

/// Scale and min of sub-block `j` from the 12 packed 6-bit bytes of Q4_K/Q5_K.
#[inline(always)]
pub(crate) fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

pub(crate) fn q2_k_to_f32(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(84).zip(dst.chunks_exact_mut(QK_K)) {
        let scales = &b[0..16];
        let qs = &b[16..80];
        let d = f16_at(b, 80);
        let dmin = f16_at(b, 82);
        let mut is = 0;
        let mut yi = 0;
        for n in 0..2 {
            let q = &qs[n * 32..n * 32 + 32];
            for shift in [0, 2, 4, 6] {
                for half in 0..2 {
                    let sc = scales[is];
                    is += 1;
                    let dl = d * (sc & 0xF) as f32;
                    let ml = dmin * (sc >> 4) as f32;
                    for l in 0..16 {
                        y[yi] = dl * ((q[l + 16 * half] >> shift) & 3) as f32 - ml;
                        yi += 1;
                    }
                }
            }
        }
    }
}

/// The 16 signed 6-bit scales of a Q3_K block, unpacked.
#[inline(always)]
pub(crate) fn q3_k_scales(packed: &[u8]) -> [i8; 16] {
    let mut aux = [0u32; 3];
    for (i, a) in aux.iter_mut().enumerate() {
        *a = u32_at(packed, 4 * i);
    }
    const KMASK1: u32 = 0x0303_0303;
    const KMASK2: u32 = 0x0f0f_0f0f;
    let tmp = aux[2];
    let words = [
        (aux[0] & KMASK2) | ((tmp & KMASK1) << 4),
        (aux[1] & KMASK2) | (((tmp >> 2) & KMASK1) << 4),
        ((aux[0] >> 4) & KMASK2) | (((tmp >> 4) & KMASK1) << 4),
        ((aux[1] >> 4) & KMASK2) | (((tmp >> 6) & KMASK1) << 4),
    ];
    let mut out = [0i8; 16];
    for (i, w) in words.iter().enumerate() {
        for (k, byte) in w.to_le_bytes().iter().enumerate() {
            out[4 * i + k] = (*byte as i8).wrapping_sub(32);
        }
    }
    out
}

pub(crate) fn q3_k_to_f32(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(110).zip(dst.chunks_exact_mut(QK_K)) {
        let hm = &b[0..32];
        let qs = &b[32..96];
        let scales = q3_k_scales(&b[96..108]);
        let d_all = f16_at(b, 108);
        let mut is = 0;
        let mut yi = 0;
        let mut m = 1u8;
        for n in 0..2 {
            let q = &qs[n * 32..n * 32 + 32];
            for shift in [0, 2, 4, 6] {
                for half in 0..2 {
                    let dl = d_all * scales[is] as f32;
                    is += 1;
                    for l in 0..16 {
                        let i = l + 16 * half;
                        let hbit = if hm[i] & m != 0 { 0 } else { 4 };
                        y[yi] = dl * (((q[i] >> shift) & 3) as i32 - hbit) as f32;
                        yi += 1;
                    }
                }
                m <<= 1;
            }
        }
    }
}

pub(crate) fn q4_k_to_f32(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(144).zip(dst.chunks_exact_mut(QK_K)) {
        let d = f16_at(b, 0);
        let dmin = f16_at(b, 2);
        let scales = &b[4..16];
        let qs = &b[16..144];
        for j in 0..4 {
            let (sc1, m1) = scale_min_k4(2 * j, scales);
            let (sc2, m2) = scale_min_k4(2 * j + 1, scales);
            let (d1, mm1) = (d * sc1 as f32, dmin * m1 as f32);
            let (d2, mm2) = (d * sc2 as f32, dmin * m2 as f32);
            let q = &qs[32 * j..32 * j + 32];
            let y = &mut y[64 * j..64 * j + 64];
            for l in 0..32 {
                y[l] = d1 * (q[l] & 0xF) as f32 - mm1;
                y[l + 32] = d2 * (q[l] >> 4) as f32 - mm2;
            }
        }
    }
}

pub(crate) fn q5_k_to_f32(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(176).zip(dst.chunks_exact_mut(QK_K)) {
        let d = f16_at(b, 0);
        let dmin = f16_at(b, 2);
        let scales = &b[4..16];
        let qh = &b[16..48];
        let qs = &b[48..176];
        for j in 0..4 {
            let (sc1, m1) = scale_min_k4(2 * j, scales);
            let (sc2, m2) = scale_min_k4(2 * j + 1, scales);
            let (d1, mm1) = (d * sc1 as f32, dmin * m1 as f32);
            let (d2, mm2) = (d * sc2 as f32, dmin * m2 as f32);
            let u1 = 1u8 << (2 * j);
            let u2 = 2u8 << (2 * j);
            let q = &qs[32 * j..32 * j + 32];
            let y = &mut y[64 * j..64 * j + 64];
            for l in 0..32 {
                let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
                let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
                y[l] = d1 * ((q[l] & 0xF) + h1) as f32 - mm1;
                y[l + 32] = d2 * ((q[l] >> 4) + h2) as f32 - mm2;
            }
        }
    }
}

pub(crate) fn q6_k_to_f32(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(210).zip(dst.chunks_exact_mut(QK_K)) {
        let d = f16_at(b, 208);
        for n in 0..2 {
            let ql = &b[64 * n..64 * n + 64];
            let qh = &b[128 + 32 * n..128 + 32 * n + 32];
            let sc = &b[192 + 8 * n..192 + 8 * n + 8];
            let y = &mut y[128 * n..128 * n + 128];
            for l in 0..32 {
                let is = l / 16;
                let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i32 - 32;
                let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                y[l] = d * (sc[is] as i8) as f32 * q1 as f32;
                y[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
                y[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
                y[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
            }
        }
    }
}

pub(crate) fn q8_k_to_f32(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(292).zip(dst.chunks_exact_mut(QK_K)) {
        let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        for j in 0..QK_K {
            y[j] = d * (b[4 + j] as i8) as f32;
        }
    }
}

/// As ggml's `quantize_row_q8_K_ref`: the scale maps the value of largest magnitude to -127
/// (so the other extreme may reach 128, clamped to 127); block sums of 16 kept for K-quant dots.
pub(crate) fn q8_k_from_f32(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK_K).zip(dst.chunks_exact_mut(292)) {
        let (amax, max) = abs_max(x);
        if amax == 0.0 {
            b.fill(0);
            continue;
        }
        let iscale = -127.0 / max;
        let mut qs = [0i8; QK_K];
        for j in 0..QK_K {
            qs[j] = nearest_int(iscale * x[j]).min(127) as i8;
        }
        b[0..4].copy_from_slice(&(1.0 / iscale).to_le_bytes());
        for j in 0..QK_K {
            b[4 + j] = qs[j] as u8;
        }
        for j in 0..16 {
            let s: i16 = qs[16 * j..16 * j + 16].iter().map(|&q| i16::from(q)).sum();
            b[260 + 2 * j..262 + 2 * j].copy_from_slice(&s.to_le_bytes());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Scalar dot products (the `_generic` twins of the SIMD kernels). `n` is the element count;
// `w` holds n/block weight blocks, `a` the activation blocks of the paired type.

pub(crate) fn dot_f32_f32_generic(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut s = 0.0f32;
    for i in 0..n {
        let x = f32::from_le_bytes(w[4 * i..4 * i + 4].try_into().unwrap_or([0; 4]));
        let y = f32::from_le_bytes(a[4 * i..4 * i + 4].try_into().unwrap_or([0; 4]));
        s += x * y;
    }
    s
}

pub(crate) fn dot_f16_f32_generic(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut s = 0.0f32;
    for i in 0..n {
        let x = f16_at(w, 2 * i);
        let y = f32::from_le_bytes(a[4 * i..4 * i + 4].try_into().unwrap_or([0; 4]));
        s += x * y;
    }
    s
}

pub(crate) fn dot_bf16_f32_generic(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut s = 0.0f32;
    for i in 0..n {
        let x = f32::from_bits(u32::from(u16::from_le_bytes([w[2 * i], w[2 * i + 1]])) << 16);
        let y = f32::from_le_bytes(a[4 * i..4 * i + 4].try_into().unwrap_or([0; 4]));
        s += x * y;
    }
    s
}

pub(crate) fn dot_q4_0_q8_0_generic(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut s = 0.0f32;
    for (x, y) in w.chunks_exact(18).zip(a.chunks_exact(34)).take(n / QK) {
        let mut sumi = 0i32;
        for j in 0..16 {
            let v0 = (x[2 + j] & 0xF) as i32 - 8;
            let v1 = (x[2 + j] >> 4) as i32 - 8;
            sumi += v0 * (y[2 + j] as i8) as i32 + v1 * (y[2 + j + 16] as i8) as i32;
        }
        s += sumi as f32 * (f16_at(x, 0) * f16_at(y, 0));
    }
    s
}

pub(crate) fn dot_q4_1_q8_1_generic(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut s = 0.0f32;
    for (x, y) in w.chunks_exact(20).zip(a.chunks_exact(36)).take(n / QK) {
        let mut sumi = 0i32;
        for j in 0..16 {
            let v0 = (x[4 + j] & 0xF) as i32;
            let v1 = (x[4 + j] >> 4) as i32;
            sumi += v0 * (y[4 + j] as i8) as i32 + v1 * (y[4 + j + 16] as i8) as i32;
        }
        s += (f16_at(x, 0) * f16_at(y, 0)) * sumi as f32 + f16_at(x, 2) * f16_at(y, 2);
    }
    s
}

pub(crate) fn dot_q5_0_q8_0_generic(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut s = 0.0f32;
    for (x, y) in w.chunks_exact(22).zip(a.chunks_exact(34)).take(n / QK) {
        let qh = u32_at(x, 2);
        let mut sumi = 0i32;
        for j in 0..16 {
            let h0 = (((qh >> j) & 1) << 4) as i32;
            let h1 = (((qh >> (j + 16)) & 1) << 4) as i32;
            let v0 = ((x[6 + j] & 0xF) as i32 | h0) - 16;
            let v1 = ((x[6 + j] >> 4) as i32 | h1) - 16;
            sumi += v0 * (y[2 + j] as i8) as i32 + v1 * (y[2 + j + 16] as i8) as i32;
        }
        s += sumi as f32 * (f16_at(x, 0) * f16_at(y, 0));
    }
    s
}

pub(crate) fn dot_q5_1_q8_1_generic(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut s = 0.0f32;
    for (x, y) in w.chunks_exact(24).zip(a.chunks_exact(36)).take(n / QK) {
        let qh = u32_at(x, 4);
        let mut sumi = 0i32;
        for j in 0..16 {
            let h0 = (((qh >> j) & 1) << 4) as i32;
            let h1 = (((qh >> (j + 16)) & 1) << 4) as i32;
            let v0 = (x[8 + j] & 0xF) as i32 | h0;
            let v1 = (x[8 + j] >> 4) as i32 | h1;
            sumi += v0 * (y[4 + j] as i8) as i32 + v1 * (y[4 + j + 16] as i8) as i32;
        }
        s += (f16_at(x, 0) * f16_at(y, 0)) * sumi as f32 + f16_at(x, 2) * f16_at(y, 2);
    }
    s
}

pub(crate) fn dot_q8_0_q8_0_generic(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut s = 0.0f32;
    for (x, y) in w.chunks_exact(34).zip(a.chunks_exact(34)).take(n / QK) {
        let mut sumi = 0i32;
        for j in 0..QK {
            sumi += (x[2 + j] as i8) as i32 * (y[2 + j] as i8) as i32;
        }
        s += sumi as f32 * (f16_at(x, 0) * f16_at(y, 0));
    }
    s
}

#[inline(always)]
fn q8k_parts(y: &[u8]) -> (f32, &[u8], [i16; 16]) {
    let d = f32::from_le_bytes([y[0], y[1], y[2], y[3]]);
    let mut bsums = [0i16; 16];
    for (j, s) in bsums.iter_mut().enumerate() {
        *s = i16::from_le_bytes([y[260 + 2 * j], y[261 + 2 * j]]);
    }
    (d, &y[4..260], bsums)
}

pub(crate) fn dot_q2_k_q8_k_generic(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut s = 0.0f32;
    for (x, y) in w.chunks_exact(84).zip(a.chunks_exact(292)).take(n / QK_K) {
        let (dy, q8, bsums) = q8k_parts(y);
        let scales = &x[0..16];
        let qs = &x[16..80];
        let mut summs = 0i32;
        for j in 0..16 {
            summs += i32::from(bsums[j]) * i32::from(scales[j] >> 4);
        }
        let mut isum = 0i32;
        let mut is = 0;
        let mut qi = 0;
        for n in 0..2 {
            let q = &qs[32 * n..32 * n + 32];
            for shift in [0, 2, 4, 6] {
                for half in 0..2 {
                    let sc = i32::from(scales[is] & 0xF);
                    is += 1;
                    let mut sumi = 0i32;
                    for l in 0..16 {
                        sumi += i32::from(q8[qi + l] as i8)
                            * i32::from((q[l + 16 * half] >> shift) & 3);
                    }
                    qi += 16;
                    isum += sc * sumi;
                }
            }
        }
        s += dy * f16_at(x, 80) * isum as f32 - dy * f16_at(x, 82) * summs as f32;
    }
    s
}

pub(crate) fn dot_q3_k_q8_k_generic(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut s = 0.0f32;
    for (x, y) in w.chunks_exact(110).zip(a.chunks_exact(292)).take(n / QK_K) {
        let (dy, q8, _) = q8k_parts(y);
        let hm = &x[0..32];
        let qs = &x[32..96];
        let scales = q3_k_scales(&x[96..108]);
        let mut isum = 0i32;
        let mut is = 0;
        let mut qi = 0;
        let mut m = 1u8;
        for n in 0..2 {
            let q = &qs[32 * n..32 * n + 32];
            for shift in [0, 2, 4, 6] {
                for half in 0..2 {
                    let mut sumi = 0i32;
                    for l in 0..16 {
                        let i = l + 16 * half;
                        let v = ((q[i] >> shift) & 3) as i32 - if hm[i] & m != 0 { 0 } else { 4 };
                        sumi += v * i32::from(q8[qi + l] as i8);
                    }
                    qi += 16;
                    isum += i32::from(scales[is]) * sumi;
                    is += 1;
                }
                m <<= 1;
            }
        }
        s += dy * f16_at(x, 108) * isum as f32;
    }
    s
}

pub(crate) fn dot_q4_k_q8_k_generic(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut s = 0.0f32;
    for (x, y) in w.chunks_exact(144).zip(a.chunks_exact(292)).take(n / QK_K) {
        let (dy, q8, bsums) = q8k_parts(y);
        let scales = &x[4..16];
        let qs = &x[16..144];
        let mut isum = 0i32;
        let mut summs = 0i32;
        for j in 0..4 {
            let (sc1, m1) = scale_min_k4(2 * j, scales);
            let (sc2, m2) = scale_min_k4(2 * j + 1, scales);
            let q = &qs[32 * j..32 * j + 32];
            let (mut s1, mut s2) = (0i32, 0i32);
            for l in 0..32 {
                s1 += i32::from(q[l] & 0xF) * i32::from(q8[64 * j + l] as i8);
                s2 += i32::from(q[l] >> 4) * i32::from(q8[64 * j + 32 + l] as i8);
            }
            isum += i32::from(sc1) * s1 + i32::from(sc2) * s2;
            let b1 = i32::from(bsums[4 * j]) + i32::from(bsums[4 * j + 1]);
            let b2 = i32::from(bsums[4 * j + 2]) + i32::from(bsums[4 * j + 3]);
            summs += i32::from(m1) * b1 + i32::from(m2) * b2;
        }
        s += dy * f16_at(x, 0) * isum as f32 - dy * f16_at(x, 2) * summs as f32;
    }
    s
}

pub(crate) fn dot_q5_k_q8_k_generic(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut s = 0.0f32;
    for (x, y) in w.chunks_exact(176).zip(a.chunks_exact(292)).take(n / QK_K) {
        let (dy, q8, bsums) = q8k_parts(y);
        let scales = &x[4..16];
        let qh = &x[16..48];
        let qs = &x[48..176];
        let mut isum = 0i32;
        let mut summs = 0i32;
        for j in 0..4 {
            let (sc1, m1) = scale_min_k4(2 * j, scales);
            let (sc2, m2) = scale_min_k4(2 * j + 1, scales);
            let u1 = 1u8 << (2 * j);
            let u2 = 2u8 << (2 * j);
            let q = &qs[32 * j..32 * j + 32];
            let (mut s1, mut s2) = (0i32, 0i32);
            for l in 0..32 {
                let v1 = i32::from(q[l] & 0xF) + if qh[l] & u1 != 0 { 16 } else { 0 };
                let v2 = i32::from(q[l] >> 4) + if qh[l] & u2 != 0 { 16 } else { 0 };
                s1 += v1 * i32::from(q8[64 * j + l] as i8);
                s2 += v2 * i32::from(q8[64 * j + 32 + l] as i8);
            }
            isum += i32::from(sc1) * s1 + i32::from(sc2) * s2;
            let b1 = i32::from(bsums[4 * j]) + i32::from(bsums[4 * j + 1]);
            let b2 = i32::from(bsums[4 * j + 2]) + i32::from(bsums[4 * j + 3]);
            summs += i32::from(m1) * b1 + i32::from(m2) * b2;
        }
        s += dy * f16_at(x, 0) * isum as f32 - dy * f16_at(x, 2) * summs as f32;
    }
    s
}

pub(crate) fn dot_q6_k_q8_k_generic(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut s = 0.0f32;
    for (x, y) in w.chunks_exact(210).zip(a.chunks_exact(292)).take(n / QK_K) {
        let (dy, q8, _) = q8k_parts(y);
        let mut isum = 0i32;
        for n in 0..2 {
            let ql = &x[64 * n..64 * n + 64];
            let qh = &x[128 + 32 * n..128 + 32 * n + 32];
            let sc = &x[192 + 8 * n..192 + 8 * n + 8];
            let q8 = &q8[128 * n..128 * n + 128];
            let mut sums = [0i32; 8];
            for l in 0..32 {
                let is = l / 16;
                let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i32 - 32;
                let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                sums[is] += q1 * i32::from(q8[l] as i8);
                sums[is + 2] += q2 * i32::from(q8[l + 32] as i8);
                sums[is + 4] += q3 * i32::from(q8[l + 64] as i8);
                sums[is + 6] += q4 * i32::from(q8[l + 96] as i8);
            }
            for k in 0..8 {
                isum += i32::from(sc[k] as i8) * sums[k];
            }
        }
        s += dy * f16_at(x, 208) * isum as f32;
    }
    s
}
