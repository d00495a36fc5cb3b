//! aarch64 tiers: NEON, NEON + dotprod, NEON + dotprod + i8mm. Placeholders so far: no tier
//! has kernels yet, so none is reported available and aarch64 runs the scalar level.

use crate::dispatch::Kernels;

/// Whether this CPU has Advanced SIMD (always, on aarch64 Linux).
pub(crate) fn has_neon() -> bool {
    false
}

/// Whether this CPU also has the dot-product extension.
pub(crate) fn has_dotprod() -> bool {
    has_neon() && std::arch::is_aarch64_feature_detected!("dotprod")
}

/// Whether this CPU also has the int8 matrix-multiply extension.
pub(crate) fn has_i8mm() -> bool {
    has_dotprod() && std::arch::is_aarch64_feature_detected!("i8mm")
}

/// # Safety
/// The CPU has NEON.
pub(crate) unsafe fn plug_neon(_k: &mut Kernels) {}

/// # Safety
/// The CPU has NEON and dotprod.
pub(crate) unsafe fn plug_dotprod(_k: &mut Kernels) {}

/// # Safety
/// The CPU has NEON, dotprod and i8mm.
pub(crate) unsafe fn plug_i8mm(_k: &mut Kernels) {}
