//! What a decoder block is, per architecture: a description read from the GGUF file that the
//! forward pass interprets (`crate::session`, one copy of the maths for every family).
//!
//! Each family's file (`llama.rs`, `qwen2.rs`, `gemma3.rs`) turns the file's metadata into an
//! [`Architecture`]: which tensors a block has (the optional norms and biases), the
//! feed-forward activation, the RoPE style and each layer's RoPE table and attention window,
//! the embedding scale, the attention scale and the final logit soft-cap. Adding a family is a
//! new file here plus a line in [`describe`].

use edgeinfer_gguf::{GgufError, Metadata};
use edgeinfer_kernels::ops::RopeStyle;

use crate::{Config, TransformerError};

mod gemma3;
mod llama;
mod qwen2;

/// Architectures this crate can run (`general.architecture`).
pub const SUPPORTED_ARCHITECTURES: &[&str] = &["llama", "qwen2", "gemma3"];

/// The gate activation of the gated feed-forward `down(act(gate·x) ⊙ up·x)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FfnActivation {
    /// SiLU (SwiGLU): Llama, Qwen2.
    Silu,
    /// GELU, tanh approximation (GeGLU): Gemma.
    GeluTanh,
}

/// Whether a block tensor is in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presence {
    /// Never (not loaded even if present).
    Absent,
    /// Loaded when the file has it.
    Optional,
    /// The file must have it.
    Required,
}

/// One RoPE frequency table: `base^(-2i/n_rot) · freq_scale`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rope {
    pub base: f32,
    /// Linear position scaling (`1 / rope.scaling.factor`; 1 for none).
    pub freq_scale: f32,
}

/// Per-layer facts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerSpec {
    /// Index into [`Architecture::ropes`].
    pub rope: usize,
    /// Sliding attention window: the token at position p attends to positions
    /// `(p − window, p]` (llama.cpp's standard SWA mask). `None`: the whole context.
    pub window: Option<usize>,
}

/// GGUF names of a block's tensors (`blk.{i}.` is prepended, `.weight` / `.bias` appended).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TensorNames {
    pub attn_norm: &'static str,
    pub q: &'static str,
    pub k: &'static str,
    pub v: &'static str,
    pub q_norm: &'static str,
    pub k_norm: &'static str,
    pub output: &'static str,
    pub post_attention_norm: &'static str,
    pub ffn_norm: &'static str,
    pub gate: &'static str,
    pub up: &'static str,
    pub down: &'static str,
    pub post_ffn_norm: &'static str,
}

/// The names llama.cpp's converter writes for every family here.
pub const GGUF_NAMES: TensorNames = TensorNames {
    attn_norm: "attn_norm",
    q: "attn_q",
    k: "attn_k",
    v: "attn_v",
    q_norm: "attn_q_norm",
    k_norm: "attn_k_norm",
    output: "attn_output",
    post_attention_norm: "post_attention_norm",
    ffn_norm: "ffn_norm",
    gate: "ffn_gate",
    up: "ffn_up",
    down: "ffn_down",
    post_ffn_norm: "post_ffw_norm",
};

/// What a decoder block of one family is. Every block is pre-norm attention and a gated
/// feed-forward, each added to the residual stream:
///
/// ```text
/// h = x + post_attention_norm?(Wo · attn(rope(q_norm?(Wq·n + bq?)), rope(k_norm?(Wk·n + bk?)), Wv·n + bv?))
///     where n = attn_norm(x)
/// y = h + post_ffn_norm?(Wdown · (act(Wgate·m) ⊙ Wup·m))   where m = ffn_norm(h)
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Architecture {
    /// `general.architecture`.
    pub name: String,
    pub names: TensorNames,
    /// How RoPE pairs a head's dimensions.
    pub rope_style: RopeStyle,
    /// The distinct RoPE tables; [`LayerSpec::rope`] indexes them.
    pub ropes: Vec<Rope>,
    /// One entry per block.
    pub layers: Vec<LayerSpec>,
    /// Q, K and V projection biases.
    pub qkv_bias: Presence,
    /// Per-head RMSNorm of Q and K (weights `[head_dim]`) before RoPE.
    pub qk_norm: bool,
    /// RMSNorm of the attention output before its residual add.
    pub post_attention_norm: bool,
    /// RMSNorm of the feed-forward output before its residual add.
    pub post_ffn_norm: bool,
    pub ffn: FfnActivation,
    /// Factor applied to the token embedding (Gemma: √d_model).
    pub embedding_scale: Option<f32>,
    /// Factor applied to each query·key score.
    pub attention_scale: f32,
    /// `logits = cap · tanh(logits / cap)` when set.
    pub final_logit_softcap: Option<f32>,
    /// The output projection is `output.weight`, or the token embedding when the file has
    /// none (tied).
    pub tied_output_when_absent: bool,
}

impl Architecture {
    /// Whether any layer attends through a sliding window.
    pub fn has_sliding_window(&self) -> bool {
        self.layers.iter().any(|l| l.window.is_some())
    }
}

/// The description of `config.arch`'s blocks from the file's metadata.
pub fn describe(md: &Metadata, config: &Config) -> Result<Architecture, TransformerError> {
    match config.arch.as_str() {
        "llama" => llama::describe(md, config),
        "qwen2" => qwen2::describe(md, config),
        "gemma3" => gemma3::describe(md, config),
        other => Err(unsupported(other)),
    }
}

/// The error for an architecture not in [`SUPPORTED_ARCHITECTURES`].
pub fn unsupported(arch: &str) -> TransformerError {
    TransformerError::UnsupportedArchitecture {
        arch: arch.to_string(),
        supported: SUPPORTED_ARCHITECTURES.join(", "),
    }
}

/// A key that may be absent.
fn optional<T>(r: Result<T, GgufError>) -> Result<Option<T>, TransformerError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(GgufError::KeyNotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The file's linear RoPE scaling (`{arch}.rope.scaling.type` = `linear` with
/// `rope.scaling.factor`, or the older `rope.scale_linear`) as a frequency factor; other
/// scaling types are refused rather than ignored.
fn rope_freq_scale(md: &Metadata, arch: &str) -> Result<f32, TransformerError> {
    let key = |k: &str| format!("{arch}.{k}");
    let factor = match optional(md.get_str(&key("rope.scaling.type")))? {
        None => optional(md.get_float(&key("rope.scale_linear")))?,
        Some("none") => None,
        Some("linear") => optional(md.get_float(&key("rope.scaling.factor")))?,
        Some(other) => {
            return Err(TransformerError::BadConfig {
                what: format!("{} = {other:?} is not supported", key("rope.scaling.type")),
            })
        }
    };
    match factor {
        None => Ok(1.0),
        Some(f) if f.is_finite() && f > 0.0 => Ok(1.0 / f),
        Some(f) => Err(TransformerError::BadConfig {
            what: format!("RoPE scaling factor {f}"),
        }),
    }
}

/// The plain pre-norm block shared by Llama and Qwen2: one RoPE table for every layer, global
/// attention, SwiGLU, scores scaled by 1/√head_dim.
fn plain(
    md: &Metadata,
    c: &Config,
    rope_style: RopeStyle,
    qkv_bias: Presence,
) -> Result<Architecture, TransformerError> {
    Ok(Architecture {
        name: c.arch.clone(),
        names: GGUF_NAMES,
        rope_style,
        ropes: vec![Rope {
            base: c.rope_base,
            freq_scale: rope_freq_scale(md, &c.arch)?,
        }],
        layers: vec![
            LayerSpec {
                rope: 0,
                window: None
            };
            c.n_layers
        ],
        qkv_bias,
        qk_norm: false,
        post_attention_norm: false,
        post_ffn_norm: false,
        ffn: FfnActivation::Silu,
        embedding_scale: None,
        attention_scale: 1.0 / (c.head_dim as f32).sqrt(),
        final_logit_softcap: None,
        tied_output_when_absent: true,
    })
}
