//! aarch64 tiers: NEON (every aarch64 CPU: Raspberry Pi 4), NEON + dotprod (`sdot`: Cortex-A76,
//! Raspberry Pi 5) and NEON + dotprod + i8mm (`smmla`).
//!
//! * `neon`: f16 conversions, the contract's reductions, the integer primitives ([`neon::Isa`]:
//!   widening multiplies or `sdot`), float rows, f32/f16 helpers, activation quantizers, LSTM.
//! * `quants`: block dots of every weight format, generic over the primitives.
//! * `tiles`: rows × activations for Q4_0, Q5_0, Q8_0, Q4_1, Q5_1, Q4_K, Q6_K (one row × four activations;
//!   two rows × four with `smmla`).

mod neon;
mod quants;
mod tiles;

use crate::dispatch::Kernels;
use crate::DType;

/// Whether this CPU has Advanced SIMD (always, on aarch64 Linux).
pub(crate) fn has_neon() -> bool {
    std::arch::is_aarch64_feature_detected!("neon")
}

/// Whether this CPU also has the dot-product extension.
pub(crate) fn has_dotprod() -> bool {
    has_neon() && std::arch::is_aarch64_feature_detected!("dotprod")
}

/// Whether this CPU also has the int8 matrix-multiply extension.
pub(crate) fn has_i8mm() -> bool {
    has_dotprod() && std::arch::is_aarch64_feature_detected!("i8mm")
}

/// Overwrite the slots the NEON tier implements (dots of every format, tiles, helpers).
///
/// # Safety
/// The CPU has NEON ([`has_neon`]).
pub(crate) unsafe fn plug_neon(k: &mut Kernels) {
    use quants::neon as q;
    use tiles::neon as t;
    k.set_dot(DType::F32, neon::dot_f32_f32_neon);
    k.set_dot(DType::F16, neon::dot_f16_f32_neon);
    k.set_dot(DType::BF16, neon::dot_bf16_f32_neon);
    k.set_dot(DType::Q4_0, q::dot_q4_0_q8_0);
    k.set_dot(DType::Q4_1, q::dot_q4_1_q8_1);
    k.set_dot(DType::Q5_0, q::dot_q5_0_q8_0);
    k.set_dot(DType::Q5_1, q::dot_q5_1_q8_1);
    k.set_dot(DType::Q8_0, q::dot_q8_0_q8_0);
    k.set_dot(DType::Q2_K, q::dot_q2_k_q8_k);
    k.set_dot(DType::Q3_K, q::dot_q3_k_q8_k);
    k.set_dot(DType::Q4_K, q::dot_q4_k_q8_k);
    k.set_dot(DType::Q5_K, q::dot_q5_k_q8_k);
    k.set_dot(DType::Q6_K, q::dot_q6_k_q8_k);
    k.set_tile(DType::Q4_0, t::tile_q4_0_q8_0);
    k.set_tile(DType::Q8_0, t::tile_q8_0_q8_0);
    k.set_tile(DType::Q4_1, t::tile_q4_1_q8_1);
    k.set_tile(DType::Q5_0, t::tile_q5_0_q8_0);
    k.set_tile(DType::Q5_1, t::tile_q5_1_q8_1);
    k.set_tile(DType::Q4_K, t::tile_q4_k_q8_k);
    k.set_tile(DType::Q6_K, t::tile_q6_k_q8_k);
    k.dot_f32 = neon::dot_f32;
    k.axpy = neon::axpy;
    k.dot_f32_f16 = neon::dot_f32_f16;
    k.axpy_f16 = neon::axpy_f16;
    k.to_f16 = neon::to_f16;
    k.lstm_cell = neon::lstm_cell;
    k.q8_0_from_f32 = neon::q8_0_from_f32;
    k.q8_1_from_f32 = neon::q8_1_from_f32;
    k.q8_k_from_f32 = neon::q8_k_from_f32;
}

/// Overwrite the slots the dot-product extension speeds up (on top of [`plug_neon`]).
///
/// # Safety
/// The CPU has NEON and dotprod ([`has_dotprod`]).
pub(crate) unsafe fn plug_dotprod(k: &mut Kernels) {
    use quants::dotprod as q;
    use tiles::dotprod as t;
    k.set_dot(DType::Q4_0, q::dot_q4_0_q8_0);
    k.set_dot(DType::Q4_1, q::dot_q4_1_q8_1);
    k.set_dot(DType::Q5_0, q::dot_q5_0_q8_0);
    k.set_dot(DType::Q5_1, q::dot_q5_1_q8_1);
    k.set_dot(DType::Q8_0, q::dot_q8_0_q8_0);
    k.set_dot(DType::Q2_K, q::dot_q2_k_q8_k);
    k.set_dot(DType::Q3_K, q::dot_q3_k_q8_k);
    k.set_dot(DType::Q4_K, q::dot_q4_k_q8_k);
    k.set_dot(DType::Q5_K, q::dot_q5_k_q8_k);
    k.set_dot(DType::Q6_K, q::dot_q6_k_q8_k);
    k.set_tile(DType::Q4_0, t::tile_q4_0_q8_0);
    k.set_tile(DType::Q8_0, t::tile_q8_0_q8_0);
    k.set_tile(DType::Q4_1, t::tile_q4_1_q8_1);
    k.set_tile(DType::Q5_0, t::tile_q5_0_q8_0);
    k.set_tile(DType::Q5_1, t::tile_q5_1_q8_1);
    k.set_tile(DType::Q4_K, t::tile_q4_k_q8_k);
    k.set_tile(DType::Q6_K, t::tile_q6_k_q8_k);
}

/// Overwrite the tiles `smmla` computes (on top of [`plug_dotprod`]).
///
/// # Safety
/// The CPU has NEON, dotprod and i8mm ([`has_i8mm`]).
pub(crate) unsafe fn plug_i8mm(k: &mut Kernels) {
    use tiles::i8mm as t;
    k.set_tile(DType::Q4_0, t::tile_q4_0_q8_0);
    k.set_tile(DType::Q8_0, t::tile_q8_0_q8_0);
    k.set_tile(DType::Q4_1, t::tile_q4_1_q8_1);
    k.set_tile(DType::Q5_0, t::tile_q5_0_q8_0);
    k.set_tile(DType::Q5_1, t::tile_q5_1_q8_1);
}
