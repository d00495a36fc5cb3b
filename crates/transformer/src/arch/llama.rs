//! `llama` (Llama 1/2, SmolLM2, TinyLlama, …): the plain pre-norm block with SwiGLU.
//!
//! RoPE pairs adjacent dimensions `(2i, 2i+1)`: the converter permuted the Q/K rows so that
//! ggml's "normal" RoPE reproduces the Hugging Face half-split rotation. Q/K/V biases are
//! loaded when the file has them (llama.cpp treats them as optional).

use edgeinfer_gguf::Metadata;
use edgeinfer_kernels::ops::RopeStyle;

use super::{plain, Architecture, Presence};
use crate::{Config, TransformerError};

pub(super) fn describe(md: &Metadata, c: &Config) -> Result<Architecture, TransformerError> {
    plain(md, c, RopeStyle::Adjacent, Presence::Optional)
}
