//! `gemma3` (Gemma 3 text models), as llama.cpp's `gemma3` graph computes it:
//!
//! * the token embedding is multiplied by √d_model (`sqrtf(n_embd)`, in f32);
//! * per-head RMSNorm of Q and K (`attn_q_norm`, `attn_k_norm`, `[head_dim]`) before RoPE;
//! * RMSNorm of the attention output (`post_attention_norm`) and of the feed-forward output
//!   (`post_ffw_norm`) before each residual add;
//! * GELU (tanh approximation) gated feed-forward;
//! * NeoX half-split RoPE;
//! * scores scaled by 1/√head_dim (`query_pre_attn_scalar` = head_dim; the 27B model, 62
//!   layers, uses d_model / n_heads instead, as llama.cpp does);
//! * with `gemma3.attention.sliding_window` > 0: five layers of every six attend through the
//!   window (layer i is sliding iff `i % 6 < 5`, llama.cpp's `set_swa_pattern(6)`; a file's
//!   `attention.sliding_window_pattern`, per-layer booleans or a period, overrides it) and use
//!   RoPE base `gemma3.rope.freq_base_swa` (10000 when absent, llama.cpp's default for
//!   gemma3), unscaled; every sixth layer is global with `gemma3.rope.freq_base` and the
//!   file's linear scaling;
//! * no final logit soft-cap when the model slides (llama.cpp applies
//!   `gemma3.final_logit_softcapping` only to the non-sliding graph).
//!
//! The converter already folded Gemma's `1 + w` into every norm weight, so the norms are plain
//! RMSNorms here.

use edgeinfer_gguf::{Metadata, Value, ValueType};
use edgeinfer_kernels::ops::RopeStyle;

use super::{
    optional, rope_freq_scale, Architecture, FfnActivation, LayerSpec, Presence, Rope, GGUF_NAMES,
};
use crate::{Config, TransformerError};

/// One global layer after every `SWA_PERIOD - 1` sliding ones.
const SWA_PERIOD: usize = 6;
/// RoPE base of the sliding layers when the file does not say.
const SWA_ROPE_BASE: f32 = 10_000.0;

pub(super) fn describe(md: &Metadata, c: &Config) -> Result<Architecture, TransformerError> {
    let key = |k: &str| format!("{}.{k}", c.arch);
    let window = optional(md.get_usize(&key("attention.sliding_window")))?.filter(|&w| w > 0);
    let global = Rope {
        base: c.rope_base,
        freq_scale: rope_freq_scale(md, &c.arch)?,
    };
    let local = Rope {
        base: optional(md.get_float(&key("rope.freq_base_swa")))?.unwrap_or(SWA_ROPE_BASE),
        freq_scale: 1.0,
    };
    let sliding = sliding_layers(md, c)?;
    let layers = (0..c.n_layers)
        .map(|i| match window {
            Some(w) if sliding[i] => LayerSpec {
                rope: 1,
                window: Some(w),
            },
            _ => LayerSpec {
                rope: 0,
                window: None,
            },
        })
        .collect();
    let softcap = match window {
        Some(_) => None,
        None => optional(md.get_float(&key("final_logit_softcapping")))?.filter(|&s| s > 0.0),
    };
    let query_scalar = if c.n_layers == 62 {
        c.d_model / c.n_heads
    } else {
        c.head_dim
    };
    Ok(Architecture {
        name: c.arch.clone(),
        names: GGUF_NAMES,
        rope_style: RopeStyle::HalfSplit,
        ropes: vec![global, local],
        layers,
        qkv_bias: Presence::Absent,
        qk_norm: true,
        post_attention_norm: true,
        post_ffn_norm: true,
        ffn: FfnActivation::GeluTanh,
        embedding_scale: Some((c.d_model as f32).sqrt()),
        attention_scale: 1.0 / (query_scalar as f32).sqrt(),
        final_logit_softcap: softcap,
        tied_output_when_absent: true,
    })
}

/// Which layers slide: `{arch}.attention.sliding_window_pattern` as one boolean per layer or
/// as a period (the last layer of each period global), else the period 6.
fn sliding_layers(md: &Metadata, c: &Config) -> Result<Vec<bool>, TransformerError> {
    let key = format!("{}.attention.sliding_window_pattern", c.arch);
    let bad = |what: String| TransformerError::BadConfig {
        what: format!("{key}: {what}"),
    };
    let period = match md.get(&key) {
        None => SWA_PERIOD,
        Some(Value::Array(ValueType::Bool, items)) => {
            if items.len() != c.n_layers {
                return Err(bad(format!(
                    "{} entries for {} layers",
                    items.len(),
                    c.n_layers
                )));
            }
            return Ok(items
                .iter()
                .map(|v| matches!(v, Value::Bool(true)))
                .collect());
        }
        Some(v) => match v.as_integer().and_then(|p| usize::try_from(p).ok()) {
            Some(p) if p > 0 => p,
            _ => {
                return Err(bad(format!(
                    "a {} is neither a period nor per-layer booleans",
                    v.type_name()
                )))
            }
        },
    };
    Ok((0..c.n_layers).map(|i| i % period < period - 1).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(n_layers: usize) -> Config {
        Config {
            arch: "gemma3".into(),
            n_layers,
            d_model: 640,
            d_ff: 2048,
            n_heads: 4,
            n_kv_heads: 1,
            head_dim: 256,
            rope_dim: 256,
            rope_base: 1e6,
            rms_eps: 1e-6,
            context_length: 32768,
            vocab_size: 16,
        }
    }

    fn windows(md: &Metadata, n: usize) -> Vec<Option<usize>> {
        describe(md, &config(n))
            .unwrap()
            .layers
            .iter()
            .map(|l| l.window)
            .collect()
    }

    #[test]
    fn sliding_pattern_default_period_and_overrides() {
        let mut md = Metadata::default();
        // no window: every layer global, RoPE table 0
        assert_eq!(windows(&md, 7), vec![None; 7]);
        md.insert("gemma3.attention.sliding_window".into(), Value::U32(4));
        let w = Some(4);
        assert_eq!(windows(&md, 7), [w, w, w, w, w, None, w]);
        let mut p = md.clone();
        p.insert(
            "gemma3.attention.sliding_window_pattern".into(),
            Value::U32(2),
        );
        assert_eq!(windows(&p, 4), [w, None, w, None]);
        let mut b = md.clone();
        let flags = [false, true, true].map(Value::Bool).to_vec();
        b.insert(
            "gemma3.attention.sliding_window_pattern".into(),
            Value::Array(ValueType::Bool, flags),
        );
        assert_eq!(windows(&b, 3), [None, w, w]);
        assert!(
            describe(&b, &config(4)).is_err(),
            "pattern length must match"
        );
        let a = describe(&md, &config(7)).unwrap();
        assert_eq!(a.ropes[a.layers[0].rope].base, 10_000.0);
        assert_eq!(a.ropes[a.layers[5].rope].base, 1e6);
        md.insert("gemma3.rope.freq_base_swa".into(), Value::F32(5e4));
        let a = describe(&md, &config(7)).unwrap();
        assert_eq!(a.ropes[a.layers[0].rope].base, 5e4);
    }
}
