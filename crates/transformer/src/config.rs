//! Model hyper-parameters from the GGUF keys of the architecture (`llama.*`, `qwen2.*`,
//! `gemma3.*`): the sizes every family has. What a block is made of is the architecture's
//! description ([`crate::arch`]).

use edgeinfer_gguf::{GgufError, Metadata};

use crate::arch::SUPPORTED_ARCHITECTURES;
use crate::TransformerError;

/// Most blocks a model may have (llama.cpp's limit too): a larger count is a corrupt file.
const MAX_LAYERS: usize = 512;

/// Decoder hyper-parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// `general.architecture`.
    pub arch: String,
    /// Transformer blocks.
    pub n_layers: usize,
    /// Embedding width (`d_model`).
    pub d_model: usize,
    /// Feed-forward hidden width.
    pub d_ff: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads (GQA when fewer than `n_heads`).
    pub n_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Dimensions of each head that RoPE rotates.
    pub rope_dim: usize,
    /// RoPE base frequency (`rope.freq_base`; of the global layers where they differ).
    pub rope_base: f32,
    /// RMSNorm epsilon.
    pub rms_eps: f32,
    /// Context length the model was trained for.
    pub context_length: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
}

fn key(arch: &str, k: &str) -> String {
    format!("{arch}.{k}")
}

impl Config {
    /// Read the config; a missing key or an unsupported architecture is an error naming it.
    pub fn from_metadata(md: &Metadata) -> Result<Config, TransformerError> {
        let arch = md.get_str("general.architecture")?.to_string();
        if !SUPPORTED_ARCHITECTURES.contains(&arch.as_str()) {
            return Err(crate::arch::unsupported(&arch));
        }
        let get = |k: &str| md.get_usize(&key(&arch, k));
        let n_layers = get("block_count")?;
        let d_model = get("embedding_length")?;
        let d_ff = get("feed_forward_length")?;
        let n_heads = get("attention.head_count")?;
        let n_kv_heads = match get("attention.head_count_kv") {
            Err(GgufError::KeyNotFound { .. }) => n_heads,
            r => r?,
        };
        let bad = |what: String| TransformerError::BadConfig { what };
        if n_heads == 0 || n_kv_heads == 0 || d_model == 0 || n_layers == 0 {
            return Err(bad(format!(
                "zero size: {n_layers} layers, d_model {d_model}, {n_heads}/{n_kv_heads} heads"
            )));
        }
        if n_layers > MAX_LAYERS {
            return Err(bad(format!("{n_layers} layers (at most {MAX_LAYERS})")));
        }
        if n_heads % n_kv_heads != 0 {
            return Err(bad(format!("{n_heads} heads and {n_kv_heads} kv heads")));
        }
        let head_dim = match get("attention.key_length") {
            Err(GgufError::KeyNotFound { .. }) if d_model % n_heads == 0 => d_model / n_heads,
            Err(GgufError::KeyNotFound { .. }) => {
                return Err(bad(format!(
                    "d_model {d_model} with {n_heads} heads and no attention.key_length"
                )))
            }
            r => r?,
        };
        match get("attention.value_length") {
            Err(GgufError::KeyNotFound { .. }) => {}
            Ok(v) if v == head_dim => {}
            Ok(v) => {
                return Err(bad(format!(
                    "value head width {v} differs from key head width {head_dim}"
                )))
            }
            Err(e) => return Err(e.into()),
        }
        if head_dim == 0 {
            return Err(bad("zero head width".into()));
        }
        let rope_dim = match get("rope.dimension_count") {
            Err(GgufError::KeyNotFound { .. }) => head_dim,
            r => r?,
        };
        if rope_dim > head_dim || rope_dim % 2 != 0 {
            return Err(bad(format!(
                "rope dimension {rope_dim} for head dim {head_dim}"
            )));
        }
        let rope_base = match md.get_float(&key(&arch, "rope.freq_base")) {
            Err(GgufError::KeyNotFound { .. }) => 10000.0,
            r => r?,
        };
        let rms_eps = md.get_float(&key(&arch, "attention.layer_norm_rms_epsilon"))?;
        let context_length = get("context_length")?;
        let vocab_size = match get("vocab_size") {
            // No key: the vocabulary's length (0 here if the array was moved out; the model
            // loader then takes it from the tokenizer).
            Err(GgufError::KeyNotFound { .. }) => md
                .get_str_array("tokenizer.ggml.tokens")
                .map_or(0, |t| t.len()),
            r => r?,
        };
        Ok(Config {
            arch,
            n_layers,
            d_model,
            d_ff,
            n_heads,
            n_kv_heads,
            head_dim,
            rope_dim,
            rope_base,
            rms_eps,
            context_length,
            vocab_size,
        })
    }

    /// Width of the K (and V) projection: `n_kv_heads × head_dim`.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    /// Width of the Q projection: `n_heads × head_dim`.
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }
}
