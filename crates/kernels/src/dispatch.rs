//! The table of quant formats (ISA-independent facts) and the kernel tables (one per level).
//!
//! [`format`] gives, per [`DType`], the scalar `to_f32`/`from_f32` and the activation type its
//! dot product takes (`vec_dot_type`, as ggml pairs them). The kernels live in [`Kernels`]
//! tables, one per [`Level`]: a table starts as the scalar one (`generic::table`) and each tier
//! the level includes overwrites, once, the slots it implements (`arch::*::plug_*`). A table is
//! only ever built for a level the CPU has, so code compiled for CPU features is reachable only
//! through what detection selected: [`Kernels::for_level`], which is `None` for a level this
//! CPU cannot run (an [`crate::Engine`] holds the table of the level it was built with), or
//! [`kernels`], the best level's table, for code without an engine.

use std::sync::OnceLock;

use edgeinfer_tensor::DType;

use crate::generic::formats as f;
use crate::generic::kquants as kq;
use crate::{bytes_for, require, KernelError};

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

/// Facts about one type's format, the same on every CPU.
#[derive(Clone, Copy)]
pub struct Format {
    pub dtype: DType,
    pub to_f32: ToF32,
    pub from_f32: Option<FromF32>,
    /// Activation type the dot product takes.
    pub vec_dot_type: DType,
}

impl Format {
    /// Whether this type has a dot product (every weight type; not the activation-only Q8_1
    /// and Q8_K).
    pub fn has_vec_dot(&self) -> bool {
        crate::generic::generic_dot(self.dtype).is_some()
    }
}

macro_rules! formats {
    ($( $t:ident: $to:path, $from:expr, $vdt:ident; )*) => {
        pub(crate) static FORMATS: [Format; N_FORMATS] = [
            $( Format {
                dtype: DType::$t,
                to_f32: $to,
                from_f32: $from,
                vec_dot_type: DType::$vdt,
            }, )*
        ];
    };
}

/// Rows of the format table (and slots per kernel column).
pub(crate) const N_FORMATS: usize = 15;

formats! {
    F32: f::f32_to_f32, Some(f::f32_from_f32), F32;
    F16: f::f16_to_f32, Some(f::f16_from_f32), F32;
    BF16: f::bf16_to_f32, Some(f::bf16_from_f32), F32;
    Q4_0: f::q4_0_to_f32, Some(f::q4_0_from_f32), Q8_0;
    Q4_1: f::q4_1_to_f32, Some(f::q4_1_from_f32), Q8_1;
    Q5_0: f::q5_0_to_f32, Some(f::q5_0_from_f32), Q8_0;
    Q5_1: f::q5_1_to_f32, Some(f::q5_1_from_f32), Q8_1;
    Q8_0: f::q8_0_to_f32, Some(f::q8_0_from_f32), Q8_0;
    Q8_1: f::q8_1_to_f32, Some(f::q8_1_from_f32), Q8_1;
    Q2_K: f::q2_k_to_f32, Some(kq::q2_k_from_f32), Q8_K;
    Q3_K: f::q3_k_to_f32, Some(kq::q3_k_from_f32), Q8_K;
    Q4_K: f::q4_k_to_f32, Some(kq::q4_k_from_f32), Q8_K;
    Q5_K: f::q5_k_to_f32, Some(kq::q5_k_from_f32), Q8_K;
    Q6_K: f::q6_k_to_f32, Some(kq::q6_k_from_f32), Q8_K;
    Q8_K: f::q8_k_to_f32, Some(f::q8_k_from_f32), Q8_K;
}

/// Every format the kernels know, in table order.
pub fn formats() -> &'static [Format] {
    &FORMATS
}

/// The format row of `dtype`, or `None` if the kernels do not support it.
pub fn format(dtype: DType) -> Option<&'static Format> {
    FORMATS.iter().find(|f| f.dtype == dtype)
}

fn slot(dtype: DType) -> Option<usize> {
    FORMATS.iter().position(|f| f.dtype == dtype)
}

/// An implementation tier. Each level includes the ones below it on its architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Level {
    /// Portable scalar code (which the compiler may autovectorize): the reference.
    Scalar,
    /// x86-64 AVX2 + FMA + F16C.
    Avx2,
    /// AVX2 plus AVX-VNNI: `vpdpbusd` for the 32-block tiles and row paths, `vpdpwssd` for the
    /// K-quant dots and tiles.
    AvxVnni,
    /// aarch64 Advanced SIMD (every aarch64 CPU: Raspberry Pi 4 and up).
    Neon,
    /// NEON plus the dot-product extension (`sdot`; Cortex-A76 / Raspberry Pi 5 and up).
    Dotprod,
    /// Dotprod plus the int8 matrix-multiply extension (`smmla`) for tiles.
    I8mm,
}

impl Level {
    /// Every level, scalar first, each architecture's in increasing order.
    pub const ALL: [Level; 6] = [
        Level::Scalar,
        Level::Avx2,
        Level::AvxVnni,
        Level::Neon,
        Level::Dotprod,
        Level::I8mm,
    ];

    /// The level's name (as the CLI's `EDGEINFER_KERNELS` takes it).
    pub fn name(self) -> &'static str {
        match self {
            Level::Scalar => "scalar",
            Level::Avx2 => "avx2",
            Level::AvxVnni => "avxvnni",
            Level::Neon => "neon",
            Level::Dotprod => "dotprod",
            Level::I8mm => "i8mm",
        }
    }

    /// The level named `name` (case-insensitive), if any.
    pub fn from_name(name: &str) -> Option<Level> {
        Level::ALL
            .into_iter()
            .find(|l| l.name().eq_ignore_ascii_case(name.trim()))
    }

    fn index(self) -> usize {
        self as usize
    }

    /// The best level this CPU has.
    pub fn best() -> Level {
        available_levels().last().copied().unwrap_or(Level::Scalar)
    }

    /// The best level this CPU has that is not above `cap`: `Scalar` caps everything; a level
    /// of this architecture keeps the levels of its family up to it (`Avx2` on a CPU with
    /// AVX-VNNI gives `Avx2`, `AvxVnni` on one without gives `Avx2`); another architecture's
    /// level caps nothing.
    pub fn best_up_to(cap: Level) -> Level {
        capped(&available_levels(), Some(cap))
    }

    /// [`Level::best_up_to`] the level called `name` (as the CLI's `EDGEINFER_KERNELS` names
    /// it); with no name, or a name no level has, the best level.
    pub fn best_up_to_named(name: Option<&str>) -> Level {
        capped(&available_levels(), name.and_then(Level::from_name))
    }

    /// Whether this CPU can run this level.
    pub fn is_available(self) -> bool {
        match self {
            Level::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => crate::arch::x86_64::has_avx2(),
            #[cfg(target_arch = "x86_64")]
            Level::AvxVnni => crate::arch::x86_64::has_avxvnni(),
            #[cfg(target_arch = "aarch64")]
            Level::Neon => crate::arch::aarch64::has_neon(),
            #[cfg(target_arch = "aarch64")]
            Level::Dotprod => crate::arch::aarch64::has_dotprod(),
            #[cfg(target_arch = "aarch64")]
            Level::I8mm => crate::arch::aarch64::has_i8mm(),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Every level this CPU can run, scalar first, in increasing order: what tests loop over.
pub fn available_levels() -> Vec<Level> {
    Level::ALL
        .into_iter()
        .filter(|l| l.is_available())
        .collect()
}

/// A kernel table: the kernels of one level, for every format and helper. Obtained only from
/// [`Kernels::for_level`] (an [`crate::Engine`] holds one) or [`kernels`], so every slot holds
/// code this CPU can run.
pub struct Kernels {
    /// The level these kernels implement.
    pub level: Level,
    pub(crate) dots: [Option<VecDot>; N_FORMATS],
    pub(crate) tiles: [Option<Tile>; N_FORMATS],
    pub(crate) dot_f32: fn(&[f32], &[f32]) -> f32,
    pub(crate) axpy: fn(f32, &[f32], &mut [f32]),
    pub(crate) dot_f32_f16: fn(&[f32], &[u16]) -> f32,
    pub(crate) axpy_f16: fn(f32, &[u16], &mut [f32]),
    pub(crate) to_f16: fn(&[f32], &mut [u16]),
    pub(crate) lstm_cell: crate::ops::LstmCell,
    pub(crate) q8_0_from_f32: FromF32,
    pub(crate) q8_1_from_f32: FromF32,
    pub(crate) q8_k_from_f32: FromF32,
}

impl std::fmt::Debug for Kernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Kernels({})", self.level)
    }
}

/// The table of `level`, built on first use. The caller has checked `level.is_available()`.
fn table(level: Level) -> &'static Kernels {
    static TABLES: [OnceLock<Kernels>; 6] = [const { OnceLock::new() }; 6];
    TABLES[level.index()].get_or_init(|| {
        assert!(
            level.is_available(),
            "{level} kernels on a CPU without them"
        );
        #[allow(unused_mut)]
        let mut k = crate::generic::table();
        match level {
            Level::Scalar => {}
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 | Level::AvxVnni => {
                // SAFETY: `level.is_available()` (asserted above) means the CPU has AVX2, FMA
                // and F16C, and for AvxVnni also AVX-VNNI.
                unsafe {
                    crate::arch::x86_64::plug_avx2(&mut k);
                    if level == Level::AvxVnni {
                        crate::arch::x86_64::plug_avxvnni(&mut k);
                    }
                }
            }
            #[cfg(target_arch = "aarch64")]
            Level::Neon | Level::Dotprod | Level::I8mm => {
                // SAFETY: `level.is_available()` (asserted above) means the CPU has NEON, for
                // Dotprod and I8mm also the dot-product extension, for I8mm also i8mm.
                unsafe {
                    crate::arch::aarch64::plug_neon(&mut k);
                    if level != Level::Neon {
                        crate::arch::aarch64::plug_dotprod(&mut k);
                    }
                    if level == Level::I8mm {
                        crate::arch::aarch64::plug_i8mm(&mut k);
                    }
                }
            }
            #[allow(unreachable_patterns)]
            _ => unreachable!("{level} is not available on this architecture"),
        }
        k.level = level;
        k
    })
}

/// The default table, for code that has no [`crate::Engine`]: the best level this CPU has
/// ([`Level::best`]). Nothing reads the environment: a program that lets a variable cap the
/// level (the `edgeinfer` CLI's `EDGEINFER_KERNELS`) builds its engine with
/// [`Level::best_up_to`].
pub fn kernels() -> &'static Kernels {
    static K: OnceLock<&'static Kernels> = OnceLock::new();
    K.get_or_init(|| table(Level::best()))
}

/// The best of `levels` (available, increasing) not above `cap`: `Scalar` caps everything; a
/// level of this architecture keeps the levels of its family up to it; another
/// architecture's level caps nothing.
fn capped(levels: &[Level], cap: Option<Level>) -> Level {
    let family = |l: Level| match l {
        Level::Scalar => 0,
        Level::Avx2 | Level::AvxVnni => 1,
        Level::Neon | Level::Dotprod | Level::I8mm => 2,
    };
    let this_arch = if cfg!(target_arch = "x86_64") {
        1
    } else if cfg!(target_arch = "aarch64") {
        2
    } else {
        0
    };
    let best = levels.last().copied().unwrap_or(Level::Scalar);
    match cap {
        Some(Level::Scalar) => Level::Scalar,
        Some(c) if family(c) == this_arch => levels
            .iter()
            .copied()
            .rfind(|&l| l == Level::Scalar || (family(l) == this_arch && l.index() <= c.index()))
            .unwrap_or(Level::Scalar),
        _ => best,
    }
}

impl Kernels {
    /// The table of `level` if this CPU can run it, else `None`.
    pub fn for_level(level: Level) -> Option<&'static Kernels> {
        level.is_available().then(|| table(level))
    }

    /// The scalar reference table (any CPU).
    pub fn scalar() -> &'static Kernels {
        table(Level::Scalar)
    }

    /// Whether `dtype` has a dot product.
    pub fn has_vec_dot(&self, dtype: DType) -> bool {
        self.dot_fn(dtype).is_some()
    }

    /// Whether this level has a tile kernel for `dtype` (else [`Kernels::tile`] loops over
    /// the dot product).
    pub fn has_tile(&self, dtype: DType) -> bool {
        self.tile_fn(dtype).is_some()
    }

    pub(crate) fn dot_fn(&self, dtype: DType) -> Option<VecDot> {
        slot(dtype).and_then(|i| self.dots[i])
    }

    pub(crate) fn tile_fn(&self, dtype: DType) -> Option<Tile> {
        slot(dtype).and_then(|i| self.tiles[i])
    }

    pub(crate) fn set_dot(&mut self, dtype: DType, dot: VecDot) {
        let i = slot(dtype).expect("a format of the table");
        self.dots[i] = Some(dot);
    }

    pub(crate) fn set_tile(&mut self, dtype: DType, tile: Tile) {
        let i = slot(dtype).expect("a format of the table");
        self.tiles[i] = Some(tile);
    }

    /// Dot product of `n` elements at this level: `w` in `wtype`, `a` in its activation type.
    pub fn vec_dot(&self, wtype: DType, n: usize, w: &[u8], a: &[u8]) -> Result<f32, KernelError> {
        let f = require(wtype, "vec_dot")?;
        let dot = self.dot_fn(wtype).ok_or(KernelError::Unsupported {
            dtype: wtype,
            op: "vec_dot",
        })?;
        let wn = bytes_for(wtype, n, "vec_dot")?;
        let an = bytes_for(f.vec_dot_type, n, "vec_dot")?;
        if w.len() < wn || a.len() < an {
            return Err(KernelError::Shape {
                op: "vec_dot",
                expected: format!("{wn} weight and {an} activation bytes"),
                actual: format!("{} and {}", w.len(), a.len()),
            });
        }
        Ok(dot(n, w, a))
    }

    /// `out[r · row_stride + t · tok_stride] = W_r · A_t` for `rows` weight rows (`w`,
    /// contiguous rows of `n` elements of `wtype`) and `n_acts` activation rows (`a`), with
    /// this level's tile kernel where it has one, else its dot product per element (the same
    /// bits either way).
    #[allow(clippy::too_many_arguments)]
    pub fn tile(
        &self,
        wtype: DType,
        n: usize,
        w: &[u8],
        rows: usize,
        a: &[u8],
        n_acts: usize,
        out: &mut [f32],
        row_stride: usize,
        tok_stride: usize,
    ) -> Result<(), KernelError> {
        let dot = self.dot_fn(wtype).ok_or(KernelError::Unsupported {
            dtype: wtype,
            op: "tile",
        })?;
        crate::contract::tile_shape_ok(wtype, n, w, rows, a, n_acts, out, row_stride, tok_stride)?;
        match self.tile_fn(wtype) {
            Some(tile) => tile(n, w, rows, a, n_acts, out, row_stride, tok_stride),
            None => {
                let wrb = bytes_for(wtype, n, "tile")?;
                let arb = bytes_for(require(wtype, "tile")?.vec_dot_type, n, "tile")?;
                for r in 0..rows {
                    for t in 0..n_acts {
                        out[r * row_stride + t * tok_stride] =
                            dot(n, &w[r * wrb..(r + 1) * wrb], &a[t * arb..(t + 1) * arb]);
                    }
                }
            }
        }
        Ok(())
    }

    /// The quantizer of an activation type (Q8_0, Q8_1, Q8_K) at this level (bit-identical to
    /// the scalar one at every level).
    pub fn act_quantizer(&self, dtype: DType) -> Option<FromF32> {
        match dtype {
            DType::Q8_0 => Some(self.q8_0_from_f32),
            DType::Q8_1 => Some(self.q8_1_from_f32),
            DType::Q8_K => Some(self.q8_k_from_f32),
            _ => None,
        }
    }

    /// Σ x·y over `min(x.len(), y.len())` elements.
    pub fn dot_f32(&self, x: &[f32], y: &[f32]) -> f32 {
        (self.dot_f32)(x, y)
    }

    /// `y += a·x` over `min(x.len(), y.len())` elements.
    pub fn axpy(&self, a: f32, x: &[f32], y: &mut [f32]) {
        (self.axpy)(a, x, y)
    }

    /// Σ x·y with `y` in f16 bits.
    pub fn dot_f32_f16(&self, x: &[f32], y: &[u16]) -> f32 {
        (self.dot_f32_f16)(x, y)
    }

    /// `y += a·x` with `x` in f16 bits.
    pub fn axpy_f16(&self, a: f32, x: &[u16], y: &mut [f32]) {
        (self.axpy_f16)(a, x, y)
    }

    /// f32 → f16 bits, round to nearest even.
    pub fn to_f16(&self, x: &[f32], y: &mut [u16]) {
        (self.to_f16)(x, y)
    }

    /// The fused LSTM gate epilogue ([`crate::ops::lstm_cell`]) at this level.
    pub fn lstm_cell(&self, z: &[f32], xp: &[f32], bias: &[f32], c: &mut [f32], h: &mut [f32]) {
        (self.lstm_cell)(z, xp, bias, c, h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cap keeps the levels of this architecture up to it; `scalar` caps everything;
    /// another architecture's level (or none) caps nothing.
    #[test]
    fn caps_pick_the_best_level_up_to_the_named_one() {
        use Level::*;
        #[cfg(target_arch = "x86_64")]
        {
            let all = [Scalar, Avx2, AvxVnni];
            assert_eq!(capped(&all, None), AvxVnni);
            assert_eq!(capped(&all, Some(AvxVnni)), AvxVnni);
            assert_eq!(capped(&all, Some(Avx2)), Avx2);
            assert_eq!(capped(&all, Some(Scalar)), Scalar);
            assert_eq!(capped(&all, Some(Dotprod)), AvxVnni);
            assert_eq!(capped(&[Scalar, Avx2], Some(AvxVnni)), Avx2);
            assert_eq!(capped(&[Scalar], Some(Avx2)), Scalar);
        }
        #[cfg(target_arch = "aarch64")]
        {
            let all = [Scalar, Neon, Dotprod, I8mm];
            assert_eq!(capped(&all, None), I8mm);
            assert_eq!(capped(&all, Some(Dotprod)), Dotprod);
            assert_eq!(capped(&all, Some(Neon)), Neon);
            assert_eq!(capped(&all, Some(Scalar)), Scalar);
            assert_eq!(capped(&all, Some(Avx2)), I8mm);
            assert_eq!(capped(&[Scalar, Neon], Some(I8mm)), Neon);
        }
        assert_eq!(Level::from_name(" DotProd "), Some(Dotprod));
        assert_eq!(Level::from_name("sse4"), None);
        for l in Level::ALL {
            assert_eq!(Level::from_name(l.name()), Some(l));
        }
    }

    /// A table exists exactly for the levels the CPU has; the scalar one always.
    #[test]
    fn tables_only_for_available_levels() {
        for l in Level::ALL {
            assert_eq!(Kernels::for_level(l).is_some(), l.is_available(), "{l}");
            if let Some(k) = Kernels::for_level(l) {
                assert_eq!(k.level, l);
            }
        }
        assert_eq!(available_levels()[0], Level::Scalar);
        assert_eq!(Kernels::scalar().level, Level::Scalar);
    }
}
