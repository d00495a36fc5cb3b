//! The scalar reference: what every kernel table starts from and every SIMD kernel is tested
//! against. [`formats`] holds the GGUF block formats (dequantize, quantize, block dot products,
//! bit-exact with ggml's `*_ref` / `*_generic` definitions) and [`kquants`] the K-quant
//! quantizers (bit-identical to llama-quantize's); this module adds the f32/f16
//! helpers and builds the scalar table ([`table`]). A SIMD tier then overwrites, once, at
//! detection, the slots it implements (`arch::*::plug_*`).

pub(crate) mod formats;
pub(crate) mod kquants;

use crate::dispatch::{Kernels, Level, FORMATS, N_FORMATS};

/// The scalar kernel table: the `Scalar` level, and the starting point of every other level.
pub(crate) fn table() -> Kernels {
    let mut dots = [None; N_FORMATS];
    for (slot, f) in dots.iter_mut().zip(FORMATS.iter()) {
        *slot = generic_dot(f.dtype);
    }
    Kernels {
        level: Level::Scalar,
        dots,
        tiles: [None; N_FORMATS],
        dot_f32: dot_f32_generic,
        axpy: axpy_generic,
        dot_f32_f16: dot_f32_f16_generic,
        axpy_f16: axpy_f16_generic,
        to_f16: to_f16_generic,
        lstm_cell: crate::ops::lstm_cell_generic,
        q8_0_from_f32: formats::q8_0_from_f32,
        q8_1_from_f32: formats::q8_1_from_f32,
        q8_k_from_f32: formats::q8_k_from_f32,
    }
}

/// The scalar reference dot product of a weight type (`None` for activation-only types).
pub(crate) fn generic_dot(dtype: crate::DType) -> Option<crate::VecDot> {
    use crate::DType as T;
    use formats as f;
    Some(match dtype {
        T::F32 => f::dot_f32_f32_generic,
        T::F16 => f::dot_f16_f32_generic,
        T::BF16 => f::dot_bf16_f32_generic,
        T::Q4_0 => f::dot_q4_0_q8_0_generic,
        T::Q4_1 => f::dot_q4_1_q8_1_generic,
        T::Q5_0 => f::dot_q5_0_q8_0_generic,
        T::Q5_1 => f::dot_q5_1_q8_1_generic,
        T::Q8_0 => f::dot_q8_0_q8_0_generic,
        T::Q2_K => f::dot_q2_k_q8_k_generic,
        T::Q3_K => f::dot_q3_k_q8_k_generic,
        T::Q4_K => f::dot_q4_k_q8_k_generic,
        T::Q5_K => f::dot_q5_k_q8_k_generic,
        T::Q6_K => f::dot_q6_k_q8_k_generic,
        _ => return None,
    })
}

fn dot_f32_f16_generic(x: &[f32], y: &[u16]) -> f32 {
    let mut acc = [0.0f32; 8];
    let n8 = x.len().min(y.len()) / 8 * 8;
    for (xc, yc) in x[..n8].chunks_exact(8).zip(y[..n8].chunks_exact(8)) {
        for k in 0..8 {
            acc[k] += xc[k] * half::f16::from_bits(yc[k]).to_f32();
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (a, b) in x[n8..].iter().zip(&y[n8..]) {
        s += a * half::f16::from_bits(*b).to_f32();
    }
    s
}

fn axpy_f16_generic(a: f32, x: &[u16], y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += a * half::f16::from_bits(*xi).to_f32();
    }
}

fn to_f16_generic(x: &[f32], y: &mut [u16]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi = half::f16::from_f32(*xi).to_bits();
    }
}

fn dot_f32_generic(x: &[f32], y: &[f32]) -> f32 {
    // 8 independent partial sums so the loop autovectorizes without -ffast-math.
    let mut acc = [0.0f32; 8];
    let n8 = x.len().min(y.len()) / 8 * 8;
    for (xc, yc) in x[..n8].chunks_exact(8).zip(y[..n8].chunks_exact(8)) {
        for k in 0..8 {
            acc[k] += xc[k] * yc[k];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (a, b) in x[n8..].iter().zip(&y[n8..]) {
        s += a * b;
    }
    s
}

fn axpy_generic(a: f32, x: &[f32], y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}
