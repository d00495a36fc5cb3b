//! x86-64 tiers: AVX2 (+ FMA, F16C) and AVX-VNNI on top of it.
//!
//! * `avx2`: block dots of Q2_K, Q3_K and the float rows, f32/f16 helpers, Q8_0/Q8_1
//!   activation quantizers, the LSTM epilogue, and the register helpers shared with the tiles.
//! * `avx2_tiles`: the integer-sum dots and four-activation tiles of the 32-block formats
//!   (Q4_0, Q5_0, Q8_0, Q4_1, Q5_1).
//! * `rows`: their row-by-row path for calls with few activations (decode), at either tier.
//! * `tile8`: eight-row tiles of the 32-block formats (AVX2 without Q8_0, and AVX-VNNI).
//! * `kquants`: Q4_K, Q5_K, Q6_K dots and tiles, AVX2 and AVX-VNNI.

mod avx2;
mod avx2_tiles;
mod kquants;
mod rows;
mod tile8;

use crate::dispatch::Kernels;
use crate::DType;

/// Whether this CPU has everything the AVX2 tier uses.
pub(crate) fn has_avx2() -> bool {
    is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
}

/// Whether this CPU has AVX-VNNI on top of what the AVX2 tier needs.
pub(crate) fn has_avxvnni() -> bool {
    has_avx2() && is_x86_feature_detected!("avxvnni")
}

/// Overwrite the slots the AVX2 tier implements.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C ([`has_avx2`]): the functions plugged in run code compiled
/// for them.
pub(crate) unsafe fn plug_avx2(k: &mut Kernels) {
    use avx2::*;
    use avx2_tiles::*;
    use kquants::*;
    k.set_dot(DType::F32, dot_f32_f32_avx2);
    k.set_dot(DType::F16, dot_f16_f32_avx2);
    k.set_dot(DType::BF16, dot_bf16_f32_avx2);
    k.set_dot(DType::Q4_0, dot_q4_0_q8_0_avx2);
    k.set_dot(DType::Q4_1, dot_q4_1_q8_1_avx2);
    k.set_dot(DType::Q5_0, dot_q5_0_q8_0_avx2);
    k.set_dot(DType::Q5_1, dot_q5_1_q8_1_avx2);
    k.set_dot(DType::Q8_0, dot_q8_0_q8_0_avx2);
    k.set_dot(DType::Q2_K, dot_q2_k_q8_k_avx2);
    k.set_dot(DType::Q3_K, dot_q3_k_q8_k_avx2);
    k.set_dot(DType::Q4_K, dot_q4_k_q8_k_avx2);
    k.set_dot(DType::Q5_K, dot_q5_k_q8_k_avx2);
    k.set_dot(DType::Q6_K, dot_q6_k_q8_k_avx2);
    k.set_tile(DType::Q4_0, tile8::tile8_q4_0_q8_0_avx2);
    k.set_tile(DType::Q4_1, tile8::tile8_q4_1_q8_1_avx2);
    k.set_tile(DType::Q5_0, tile8::tile8_q5_0_q8_0_avx2);
    k.set_tile(DType::Q5_1, tile8::tile8_q5_1_q8_1_avx2);
    k.set_tile(DType::Q8_0, tile_q8_0_q8_0_avx2);
    k.set_tile(DType::Q4_K, tile_q4_k_q8_k_avx2);
    k.set_tile(DType::Q5_K, tile_q5_k_q8_k_avx2);
    k.set_tile(DType::Q6_K, tile_q6_k_q8_k_avx2);
    k.dot_f32 = dot_f32;
    k.axpy = axpy;
    k.dot_f32_f16 = dot_f32_f16;
    k.axpy_f16 = axpy_f16;
    k.to_f16 = to_f16;
    k.lstm_cell = lstm_cell;
    k.q8_0_from_f32 = q8_0_from_f32;
    k.q8_1_from_f32 = q8_1_from_f32;
}

/// Overwrite the slots the AVX-VNNI tier implements (on top of [`plug_avx2`]).
///
/// # Safety
/// The CPU has AVX-VNNI and what the AVX2 tier needs ([`has_avxvnni`]).
pub(crate) unsafe fn plug_avxvnni(k: &mut Kernels) {
    k.set_tile(DType::Q4_0, tile8::tile_q4_0_q8_0_vnni);
    k.set_tile(DType::Q4_1, tile8::tile_q4_1_q8_1_vnni);
    k.set_tile(DType::Q5_0, tile8::tile_q5_0_q8_0_vnni);
    k.set_tile(DType::Q5_1, tile8::tile_q5_1_q8_1_vnni);
    k.set_dot(DType::Q4_K, kquants::dot_q4_k_q8_k_vnni);
    k.set_dot(DType::Q5_K, kquants::dot_q5_k_q8_k_vnni);
    k.set_dot(DType::Q6_K, kquants::dot_q6_k_q8_k_vnni);
    k.set_tile(DType::Q4_K, kquants::tile_q4_k_q8_k_vnni);
    k.set_tile(DType::Q5_K, kquants::tile_q5_k_q8_k_vnni);
    k.set_tile(DType::Q6_K, kquants::tile_q6_k_q8_k_vnni);
    k.set_tile(DType::Q8_0, tile8::tile_q8_0_q8_0_vnni);
}
