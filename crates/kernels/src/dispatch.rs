//! The one table of quant formats, and the runtime choice of kernels.
//!
//! [`format`] gives, per [`DType`], the scalar `to_f32`/`from_f32`, the activation type its dot
//! product takes (`vec_dot_type`, as ggml pairs them), and the dot kernels: the scalar
//! reference and, where written, an AVX2 version and an AVX-VNNI tile. [`kernels`] decides once
//! per process which to use: AVX-VNNI tiles when the CPU has avxvnni, AVX2 when it has
//! avx2+fma+f16c; `EDGEINFER_KERNELS=avx2` or `=scalar` caps the level.

use std::sync::OnceLock;

use edgeinfer_tensor::DType;

use crate::formats as f;

/// Dequantize whole blocks: `src` holds `dst.len() / block` blocks.
pub type ToF32 = fn(&[u8], &mut [f32]);
/// Quantize whole blocks: `dst` holds `src.len() / block` blocks.
pub type FromF32 = fn(&[f32], &mut [u8]);
/// Dot product of `n` elements: weight blocks × activation blocks of the paired type.
pub type VecDot = fn(usize, &[u8], &[u8]) -> f32;
/// Tile of dot products: `out[r · row_stride + t · tok_stride] = W_r · A_t` for `rows` weight
/// rows (`w`, contiguous) and `n_acts` activation rows (`a`, contiguous), each of `n`
/// elements: `(n, w, rows, a, n_acts, out, row_stride, tok_stride)`.
pub type Tile = fn(usize, &[u8], usize, &[u8], usize, &mut [f32], usize, usize);

/// Facts about one type's format and kernels.
#[derive(Clone, Copy)]
pub struct Format {
    pub dtype: DType,
    pub to_f32: ToF32,
    pub from_f32: Option<FromF32>,
    /// Activation type the dot product takes.
    pub vec_dot_type: DType,
    /// Scalar reference dot product (`None` for activation-only types).
    pub vec_dot_generic: Option<VecDot>,
    /// AVX2 dot product, where written.
    pub vec_dot_avx2: Option<VecDot>,
    /// AVX2 tile kernel (rows × activations in one call, weight blocks reused), where written.
    pub tile_avx2: Option<Tile>,
    /// AVX-VNNI tile kernel (bit-identical to the AVX2 one), where written.
    pub tile_vnni: Option<Tile>,
}

macro_rules! formats {
    ($( $t:ident: $to:path, $from:expr, $vdt:ident, $gen:expr, $avx:expr
        $(, $tile:expr, $vnni:expr)?; )*) => {
        static FORMATS: &[Format] = &[
            $( Format {
                dtype: DType::$t,
                to_f32: $to,
                from_f32: $from,
                vec_dot_type: DType::$vdt,
                vec_dot_generic: $gen,
                vec_dot_avx2: $avx,
                tile_avx2: tile!($($tile)?),
                tile_vnni: tile!($($vnni)?),
            }, )*
        ];
    };
}

#[cfg(target_arch = "x86_64")]
macro_rules! avx2 {
    ($f:ident) => {
        Some(crate::x86::$f as VecDot)
    };
}
#[cfg(not(target_arch = "x86_64"))]
macro_rules! avx2 {
    ($f:ident) => {
        None
    };
}

macro_rules! tile {
    () => {
        None
    };
    ($f:expr) => {
        $f
    };
}

#[cfg(target_arch = "x86_64")]
macro_rules! avx2_tile {
    ($f:ident) => {
        Some(crate::x86::$f as Tile)
    };
}
#[cfg(not(target_arch = "x86_64"))]
macro_rules! avx2_tile {
    ($f:ident) => {
        None
    };
}

formats! {
    F32: f::f32_to_f32, Some(f::f32_from_f32), F32, Some(f::dot_f32_f32_generic), avx2!(dot_f32_f32_avx2);
    F16: f::f16_to_f32, Some(f::f16_from_f32), F32, Some(f::dot_f16_f32_generic), avx2!(dot_f16_f32_avx2);
    BF16: f::bf16_to_f32, Some(f::bf16_from_f32), F32, Some(f::dot_bf16_f32_generic), avx2!(dot_bf16_f32_avx2);
    Q4_0: f::q4_0_to_f32, Some(f::q4_0_from_f32), Q8_0, Some(f::dot_q4_0_q8_0_generic), avx2!(dot_q4_0_q8_0_avx2), avx2_tile!(tile_q4_0_q8_0_avx2), avx2_tile!(tile_q4_0_q8_0_vnni);
    Q4_1: f::q4_1_to_f32, Some(f::q4_1_from_f32), Q8_1, Some(f::dot_q4_1_q8_1_generic), avx2!(dot_q4_1_q8_1_avx2), avx2_tile!(tile_q4_1_q8_1_avx2), avx2_tile!(tile_q4_1_q8_1_vnni);
    Q5_0: f::q5_0_to_f32, Some(f::q5_0_from_f32), Q8_0, Some(f::dot_q5_0_q8_0_generic), avx2!(dot_q5_0_q8_0_avx2);
    Q5_1: f::q5_1_to_f32, Some(f::q5_1_from_f32), Q8_1, Some(f::dot_q5_1_q8_1_generic), avx2!(dot_q5_1_q8_1_avx2);
    Q8_0: f::q8_0_to_f32, Some(f::q8_0_from_f32), Q8_0, Some(f::dot_q8_0_q8_0_generic), avx2!(dot_q8_0_q8_0_avx2), avx2_tile!(tile_q8_0_q8_0_avx2), avx2_tile!(tile_q8_0_q8_0_vnni);
    Q8_1: f::q8_1_to_f32, Some(f::q8_1_from_f32), Q8_1, None, None;
    Q2_K: f::q2_k_to_f32, None, Q8_K, Some(f::dot_q2_k_q8_k_generic), avx2!(dot_q2_k_q8_k_avx2);
    Q3_K: f::q3_k_to_f32, None, Q8_K, Some(f::dot_q3_k_q8_k_generic), avx2!(dot_q3_k_q8_k_avx2);
    Q4_K: f::q4_k_to_f32, Some(f::q4_k_from_f32), Q8_K, Some(f::dot_q4_k_q8_k_generic), avx2!(dot_q4_k_q8_k_avx2);
    Q5_K: f::q5_k_to_f32, None, Q8_K, Some(f::dot_q5_k_q8_k_generic), avx2!(dot_q5_k_q8_k_avx2);
    Q6_K: f::q6_k_to_f32, Some(f::q6_k_from_f32), Q8_K, Some(f::dot_q6_k_q8_k_generic), avx2!(dot_q6_k_q8_k_avx2);
    Q8_K: f::q8_k_to_f32, Some(f::q8_k_from_f32), Q8_K, None, None;
}

/// Every format the kernels know, in table order.
pub fn formats() -> &'static [Format] {
    FORMATS
}

/// The format row of `dtype`, or `None` if the kernels do not support it.
pub fn format(dtype: DType) -> Option<&'static Format> {
    FORMATS.iter().find(|f| f.dtype == dtype)
}

/// Which implementation tier is in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Portable scalar code (which the compiler may autovectorize).
    Scalar,
    /// x86-64 AVX2 + FMA + F16C.
    Avx2,
    /// AVX2 plus AVX-VNNI (`vpdpbusd`) for the Q8_0, Q4_0 and Q4_1 tiles.
    AvxVnni,
}

/// The kernels chosen for this process.
#[derive(Clone, Copy, Debug)]
pub struct Kernels {
    pub level: Level,
    pub dot_f32: fn(&[f32], &[f32]) -> f32,
    pub axpy: fn(f32, &[f32], &mut [f32]),
    /// Σ x·y with y in f16 (bits).
    pub dot_f32_f16: fn(&[f32], &[u16]) -> f32,
    /// y += a·x with x in f16 (bits).
    pub axpy_f16: fn(f32, &[u16], &mut [f32]),
    /// f32 → f16 bits, round to nearest even.
    pub to_f16: fn(&[f32], &mut [u16]),
    /// The fused LSTM gate epilogue ([`crate::ops::lstm_cell`]).
    pub lstm_cell: crate::ops::LstmCell,
    /// Activation quantizers to Q8_0 and Q8_1 (bit-identical to the scalar ones).
    pub q8_0_from_f32: FromF32,
    pub q8_1_from_f32: FromF32,
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

/// The kernels for this process, decided on first call: the best level the CPU has, capped by
/// `EDGEINFER_KERNELS=scalar` (the reference path) or `EDGEINFER_KERNELS=avx2` (no VNNI).
pub fn kernels() -> &'static Kernels {
    static K: OnceLock<Kernels> = OnceLock::new();
    K.get_or_init(|| {
        let cap = std::env::var("EDGEINFER_KERNELS")
            .unwrap_or_default()
            .to_ascii_lowercase();
        if cap != "scalar" {
            #[cfg(target_arch = "x86_64")]
            if crate::x86::detected() {
                let vnni = cap != "avx2" && crate::x86::vnni_detected();
                return Kernels {
                    level: if vnni { Level::AvxVnni } else { Level::Avx2 },
                    dot_f32: crate::x86::dot_f32,
                    axpy: crate::x86::axpy,
                    dot_f32_f16: crate::x86::dot_f32_f16,
                    axpy_f16: crate::x86::axpy_f16,
                    to_f16: crate::x86::to_f16,
                    lstm_cell: crate::x86::lstm_cell,
                    q8_0_from_f32: crate::x86::q8_0_from_f32,
                    q8_1_from_f32: crate::x86::q8_1_from_f32,
                };
            }
        }
        scalar_kernels()
    })
}

impl Kernels {
    /// The dispatched quantizer for an activation type, where one is dispatched.
    pub fn act_quantizer(&self, dtype: DType) -> Option<FromF32> {
        match dtype {
            DType::Q8_0 => Some(self.q8_0_from_f32),
            DType::Q8_1 => Some(self.q8_1_from_f32),
            _ => None,
        }
    }
}

impl Format {
    /// The dot product for the chosen level (falls back to scalar where no SIMD version
    /// exists).
    pub fn vec_dot(&self) -> Option<VecDot> {
        match kernels().level {
            Level::Avx2 | Level::AvxVnni => self.vec_dot_avx2.or(self.vec_dot_generic),
            Level::Scalar => self.vec_dot_generic,
        }
    }

    /// The tile kernel for the chosen level, if one is written (else loop over `vec_dot`).
    pub fn tile(&self) -> Option<Tile> {
        match kernels().level {
            Level::Avx2 => self.tile_avx2,
            Level::AvxVnni => self.tile_vnni.or(self.tile_avx2),
            Level::Scalar => None,
        }
    }
}

/// The scalar reference kernels, whatever the CPU (for tests comparing them with the
/// dispatched ones).
pub fn scalar_kernels() -> Kernels {
    Kernels {
        level: Level::Scalar,
        dot_f32: dot_f32_generic,
        axpy: axpy_generic,
        dot_f32_f16: dot_f32_f16_generic,
        axpy_f16: axpy_f16_generic,
        to_f16: to_f16_generic,
        lstm_cell: crate::ops::lstm_cell_generic,
        q8_0_from_f32: f::q8_0_from_f32,
        q8_1_from_f32: f::q8_1_from_f32,
    }
}

/// Whether this CPU has the AVX-VNNI tiles, ignoring `EDGEINFER_KERNELS` (for tests comparing
/// them with the AVX2 ones).
pub fn vnni_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        crate::x86::vnni_detected()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The SIMD level this CPU supports, ignoring `EDGEINFER_KERNELS` (for tests comparing both).
pub fn simd_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        crate::x86::detected()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}
