//! The compute core of edgeinfer: GGUF block formats, quantized dot products, matvec/matmul
//! and the small ops a decoder or an LSTM needs. It knows nothing of model architectures:
//! everything takes plain slices or a [`Tensor`] view, and the one piece that reads a model
//! file, [`WeightLoader`], finds its weights by the names and shapes the caller gives.
//!
//! | op | scalar (`*_generic`) | AVX2 (x86-64) | NEON (aarch64) |
//! |---|---|---|---|
//! | dequantize F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q8_1 Q2_K..Q6_K Q8_K | yes | — (scalar) | — (scalar) |
//! | quantize F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K..Q6_K (as llama-quantize, bit for bit) | yes | — | — |
//! | quantize activations Q8_0, Q8_1 / Q8_K | yes | yes / scalar | yes / yes |
//! | dot Q4_0·Q8_0, Q4_1·Q8_1, Q5_0·Q8_0, Q5_1·Q8_1, Q8_0·Q8_0 | yes | yes | yes (`sdot` with dotprod) |
//! | dot Q2_K, Q3_K, Q4_K, Q5_K, Q6_K ·Q8_K | yes | yes | yes (`sdot` with dotprod) |
//! | dot F16·F32, BF16·F32, F32·F32, f32 dot/axpy, f16 dot/axpy/convert | yes | yes | yes |
//! | tile Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 | loop of dots | 1 row × 4; 4/5-bit 8 × ≥ 4 (AVX-VNNI: all 8 × ≥ 4) | 1 × 4; 2 × 4 with `smmla` (i8mm) |
//! | tile Q4_K Q5_K Q6_K | loop of dots | 1 row × 8, then × 4 (AVX-VNNI: `vpdpwssd`) | Q4_K Q6_K: 1 × 4; Q5_K: loop of dots |
//! | LSTM gate epilogue | yes | yes | yes |
//! | matvec / matmul (rayon over weight rows) | generic over the above | | |
//! | rmsnorm, softmax, argmax, SiLU, GELU, RoPE (both conventions) | portable | | |
//!
//! A kernel table ([`Kernels`]) starts as the scalar one and each tier the CPU has overwrites
//! the slots it implements, once, at detection: x86-64 `Avx2` then `AvxVnni`; aarch64 `Neon`
//! (Raspberry Pi 4), `Dotprod` (Pi 5) then `I8mm`. [`Kernels::for_level`] gives a level's table
//! only if the CPU has it, and [`available_levels`] lists them (tests loop over it). An
//! [`Engine`] holds one table, chosen explicitly (default [`Level::best`]), with the thread pool
//! it owns; [`kernels`] is the best level's table for code without an engine. Nothing in this
//! crate reads the environment. Target-feature code is reachable only through these tables.
//!
//! Every SIMD kernel follows one summation order ([`contract`]): integer block sums exact, then
//! a fixed sequence of float operations, written out as scalar code in [`contract`]. So each
//! SIMD level gives exactly the bits of that code — the same on x86-64 and aarch64 — and a
//! tile exactly its single dot's; the scalar level (ggml's order) differs by rounding only.
//!
//! ```
//! use edgeinfer_kernels::{quantize_to_vec, dequantize_to_vec};
//! use edgeinfer_tensor::DType;
//! let x: Vec<f32> = (0..64).map(|i| (i as f32 * 0.1).sin()).collect();
//! let q = quantize_to_vec(DType::Q8_0, &x).unwrap();
//! let y = dequantize_to_vec(DType::Q8_0, &q, 64).unwrap();
//! assert!(x.iter().zip(&y).all(|(a, b)| (a - b).abs() < 0.01));
//! ```

mod arch;
pub mod contract;
mod dispatch;
mod engine;
mod generic;
mod matmul;
pub mod ops;
mod weights;

pub use dispatch::{
    available_levels, format, formats, kernels, Format, FromF32, Kernels, Level, Tile, ToF32,
    VecDot,
};
pub use edgeinfer_tensor::{DType, Tensor};
pub use engine::{Engine, EngineBuilder, EngineError};
pub use matmul::{Activations, Matrix};
pub use weights::{WeightError, WeightLoader, WeightRef};

/// Errors from the kernels' public API (bad shapes or types, never from the numbers).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum KernelError {
    #[error("{op} is not supported for {dtype}")]
    Unsupported { dtype: DType, op: &'static str },
    #[error("{op}: {n} elements is not a multiple of the {dtype} block size {block}")]
    NotBlockMultiple {
        op: &'static str,
        dtype: DType,
        n: usize,
        block: usize,
    },
    #[error("{op}: expected {expected}, got {actual}")]
    Shape {
        op: &'static str,
        expected: String,
        actual: String,
    },
}

fn require(dtype: DType, op: &'static str) -> Result<&'static Format, KernelError> {
    format(dtype).ok_or(KernelError::Unsupported { dtype, op })
}

fn bytes_for(dtype: DType, n: usize, op: &'static str) -> Result<usize, KernelError> {
    dtype.bytes_for(n).ok_or(KernelError::NotBlockMultiple {
        op,
        dtype,
        n,
        block: dtype.block_size(),
    })
}

/// Dequantize `dst.len()` elements of `dtype` from `src`.
pub fn dequantize(dtype: DType, src: &[u8], dst: &mut [f32]) -> Result<(), KernelError> {
    let f = require(dtype, "dequantize")?;
    let need = bytes_for(dtype, dst.len(), "dequantize")?;
    if src.len() != need {
        return Err(KernelError::Shape {
            op: "dequantize",
            expected: format!("{need} bytes for {} {dtype} elements", dst.len()),
            actual: format!("{} bytes", src.len()),
        });
    }
    (f.to_f32)(src, dst);
    Ok(())
}

/// Dequantize `n` elements into a new vector.
pub fn dequantize_to_vec(dtype: DType, src: &[u8], n: usize) -> Result<Vec<f32>, KernelError> {
    let mut v = vec![0.0; n];
    dequantize(dtype, src, &mut v)?;
    Ok(v)
}

/// Quantize `src` into `dst` (exactly `src.len() / block` blocks).
pub fn quantize(dtype: DType, src: &[f32], dst: &mut [u8]) -> Result<(), KernelError> {
    let f = require(dtype, "quantize")?;
    let from = f.from_f32.ok_or(KernelError::Unsupported {
        dtype,
        op: "quantize",
    })?;
    let need = bytes_for(dtype, src.len(), "quantize")?;
    if dst.len() != need {
        return Err(KernelError::Shape {
            op: "quantize",
            expected: format!("{need} bytes"),
            actual: format!("{} bytes", dst.len()),
        });
    }
    from(src, dst);
    Ok(())
}

/// Quantize into a new vector.
pub fn quantize_to_vec(dtype: DType, src: &[f32]) -> Result<Vec<u8>, KernelError> {
    let mut v = vec![0u8; bytes_for(dtype, src.len(), "quantize")?];
    quantize(dtype, src, &mut v)?;
    Ok(v)
}

/// Dequantize row `row` of a 2-D (or higher) tensor into `out` (`out.len() == row_len`).
pub fn dequantize_row(t: &Tensor<'_>, row: usize, out: &mut [f32]) -> Result<(), KernelError> {
    let bytes = t.row(row).ok_or_else(|| KernelError::Shape {
        op: "dequantize_row",
        expected: format!("row < {}", t.n_rows()),
        actual: format!("row {row}"),
    })?;
    dequantize(t.dtype(), bytes, out)
}

/// Dot product of `n` elements with the default table's kernel: `w` in `wtype`, `a` in its
/// activation type (`format(wtype).vec_dot_type`).
pub fn vec_dot(wtype: DType, n: usize, w: &[u8], a: &[u8]) -> Result<f32, KernelError> {
    kernels().vec_dot(wtype, n, w, a)
}

/// The CPU's time-stamp counter (x86-64 `rdtsc`), for measuring work in clock cycles; 0 on
/// targets without one. The counter ticks at a constant rate on current CPUs (the nominal
/// frequency), so cycles here are reference cycles, not core cycles under turbo.
pub fn cycles() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: rdtsc has no preconditions and is part of the x86-64 baseline.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        0
    }
}
