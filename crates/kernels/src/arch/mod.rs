//! The SIMD tiers, one folder per architecture. Each exposes its detection (`has_*`) and, per
//! tier, an `unsafe fn plug_*(&mut Kernels)` that overwrites the table slots the tier
//! implements; `dispatch` calls a tier's `plug` only after its detection said yes, which is
//! what makes the safe wrappers plugged in sound.

#[cfg(target_arch = "aarch64")]
pub(crate) mod aarch64;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86_64;
