//! `qwen2` (Qwen2, Qwen2.5, Qwen2.5-Coder): the Llama block with Q/K/V biases (required, as
//! llama.cpp loads them) and NeoX half-split RoPE.

use edgeinfer_gguf::Metadata;
use edgeinfer_kernels::ops::RopeStyle;

use super::{plain, Architecture, Presence};
use crate::{Config, TransformerError};

pub(super) fn describe(md: &Metadata, c: &Config) -> Result<Architecture, TransformerError> {
    plain(md, c, RopeStyle::HalfSplit, Presence::Required)
}
