//! Weights: records of where each tensor lies in the mapped file, resolved to kernel views on
//! use. Nothing is copied at load except the small 1-D f32 vectors (norm weights, biases).

use std::path::Path;
use std::sync::Arc;

use edgeinfer_gguf::GgufFile;
use edgeinfer_kernels::{Kernels, Matrix, WeightLoader, WeightRef};

use crate::arch::{self, Architecture, Presence};
use crate::{Config, Tokenizer, TransformerError};

/// One transformer block's weights. Shapes in (rows × cols) = (out × in). Which optional
/// tensors are present is the architecture's description ([`Architecture`]).
#[derive(Clone, Debug)]
pub struct Layer {
    /// [d_model] RMSNorm weight before attention.
    pub attn_norm: Vec<f32>,
    /// [q_dim × d_model]
    pub wq: WeightRef,
    /// [kv_dim × d_model]
    pub wk: WeightRef,
    /// [kv_dim × d_model]
    pub wv: WeightRef,
    /// Optional Q/K/V biases (Qwen2): [q_dim], [kv_dim], [kv_dim].
    pub bq: Option<Vec<f32>>,
    pub bk: Option<Vec<f32>>,
    pub bv: Option<Vec<f32>>,
    /// Per-head RMSNorm weights of Q and K (Gemma 3): [head_dim] each.
    pub q_norm: Option<Vec<f32>>,
    pub k_norm: Option<Vec<f32>>,
    /// [d_model × q_dim]
    pub wo: WeightRef,
    /// [d_model] RMSNorm weight of the attention output (Gemma 3).
    pub post_attention_norm: Option<Vec<f32>>,
    /// [d_model] RMSNorm weight before the feed-forward.
    pub ffn_norm: Vec<f32>,
    /// [d_ff × d_model]
    pub w_gate: WeightRef,
    /// [d_ff × d_model]
    pub w_up: WeightRef,
    /// [d_model × d_ff]
    pub w_down: WeightRef,
    /// [d_model] RMSNorm weight of the feed-forward output (Gemma 3).
    pub post_ffn_norm: Option<Vec<f32>>,
}

/// A loaded decoder: config, tokenizer, and weight records over a shared mapped file.
/// `Send + Sync`: load once, put it in an `Arc`, and run many [`crate::Session`]s on it from
/// any threads (and engines).
pub struct Model {
    file: Arc<GgufFile>,
    pub config: Config,
    /// What a block is for this architecture.
    pub arch: Architecture,
    pub tokenizer: Tokenizer,
    /// `tokenizer.chat_template`, if the file has one.
    pub chat_template: Option<String>,
    /// [vocab × d_model] token embedding.
    pub token_embd: WeightRef,
    /// [vocab × d_model] output projection (the embedding when tied).
    pub output: WeightRef,
    /// [d_model] final RMSNorm weight.
    pub output_norm: Vec<f32>,
    pub layers: Vec<Layer>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("config", &self.config)
            .field("arch", &self.arch)
            .finish()
    }
}

/// A vector the architecture's description says is `presence`.
fn vector_if(
    l: &WeightLoader<'_>,
    presence: Presence,
    name: &str,
    len: usize,
) -> Result<Option<Vec<f32>>, TransformerError> {
    Ok(match presence {
        Presence::Absent => None,
        Presence::Optional => l.optional_vector(name, len)?,
        Presence::Required => Some(l.vector(name, len)?),
    })
}

fn required(on: bool) -> Presence {
    if on {
        Presence::Required
    } else {
        Presence::Absent
    }
}

impl Model {
    /// Memory-map `path` and load the model.
    ///
    /// The vocabulary arrays (`tokenizer.ggml.tokens`, `merges`, `token_type`, `scores`) are
    /// removed from the file's metadata once the tokenizer is built from them, so they are
    /// not held twice.
    pub fn load(path: impl AsRef<Path>) -> Result<Model, TransformerError> {
        let mut file = GgufFile::open(path)?;
        let tokenizer = Tokenizer::from_metadata(file.metadata())?;
        for key in [
            "tokenizer.ggml.tokens",
            "tokenizer.ggml.merges",
            "tokenizer.ggml.token_type",
            "tokenizer.ggml.scores",
        ] {
            file.metadata_mut().remove(key);
        }
        Model::build(Arc::new(file), tokenizer)
    }

    /// Load from an opened GGUF file (shared; the model keeps it alive).
    pub fn from_file(file: Arc<GgufFile>) -> Result<Model, TransformerError> {
        let tokenizer = Tokenizer::from_metadata(file.metadata())?;
        Model::build(file, tokenizer)
    }

    fn build(file: Arc<GgufFile>, tokenizer: Tokenizer) -> Result<Model, TransformerError> {
        let md = file.metadata();
        let mut config = Config::from_metadata(md)?;
        if config.vocab_size == 0 {
            config.vocab_size = tokenizer.vocab_size();
        }
        if tokenizer.vocab_size() != config.vocab_size {
            return Err(TransformerError::BadConfig {
                what: format!(
                    "{} tokens in tokenizer.ggml.tokens but vocab size {}",
                    tokenizer.vocab_size(),
                    config.vocab_size
                ),
            });
        }
        let chat_template = md
            .get_str("tokenizer.chat_template")
            .ok()
            .map(str::to_string);
        let arch = arch::describe(md, &config)?;
        let l = WeightLoader::new(&file);
        let c = &config;
        let token_embd = l.matrix("token_embd.weight", c.vocab_size, c.d_model)?;
        let output = match file.tensor_info("output.weight") {
            Err(_) if arch.tied_output_when_absent => token_embd,
            _ => l.matrix("output.weight", c.vocab_size, c.d_model)?,
        };
        let output_norm = l.vector("output_norm.weight", c.d_model)?;
        let t = &arch.names;
        let mut layers = Vec::with_capacity(c.n_layers);
        for i in 0..c.n_layers {
            let w = |s: &str| format!("blk.{i}.{s}.weight");
            let b = |s: &str| format!("blk.{i}.{s}.bias");
            let (qk_norm, bias) = (required(arch.qk_norm), arch.qkv_bias);
            layers.push(Layer {
                attn_norm: l.vector(&w(t.attn_norm), c.d_model)?,
                wq: l.matrix(&w(t.q), c.q_dim(), c.d_model)?,
                wk: l.matrix(&w(t.k), c.kv_dim(), c.d_model)?,
                wv: l.matrix(&w(t.v), c.kv_dim(), c.d_model)?,
                bq: vector_if(&l, bias, &b(t.q), c.q_dim())?,
                bk: vector_if(&l, bias, &b(t.k), c.kv_dim())?,
                bv: vector_if(&l, bias, &b(t.v), c.kv_dim())?,
                q_norm: vector_if(&l, qk_norm, &w(t.q_norm), c.head_dim)?,
                k_norm: vector_if(&l, qk_norm, &w(t.k_norm), c.head_dim)?,
                wo: l.matrix(&w(t.output), c.d_model, c.q_dim())?,
                post_attention_norm: vector_if(
                    &l,
                    required(arch.post_attention_norm),
                    &w(t.post_attention_norm),
                    c.d_model,
                )?,
                ffn_norm: l.vector(&w(t.ffn_norm), c.d_model)?,
                w_gate: l.matrix(&w(t.gate), c.d_ff, c.d_model)?,
                w_up: l.matrix(&w(t.up), c.d_ff, c.d_model)?,
                w_down: l.matrix(&w(t.down), c.d_model, c.d_ff)?,
                post_ffn_norm: vector_if(
                    &l,
                    required(arch.post_ffn_norm),
                    &w(t.post_ffn_norm),
                    c.d_model,
                )?,
            });
        }
        Ok(Model {
            file,
            config,
            arch,
            tokenizer,
            chat_template,
            token_embd,
            output,
            output_norm,
            layers,
        })
    }

    /// The GGUF file the weights live in.
    pub fn file(&self) -> &GgufFile {
        &self.file
    }

    /// A kernel view of a weight computed with table `k` (zero-copy: borrows the mapped file).
    pub fn matrix(&self, k: &'static Kernels, w: &WeightRef) -> Matrix<'_> {
        w.matrix_in(k, self.file.bytes())
            .expect("weight records are validated at load")
    }

    /// Bytes of weights one decode step reads: every layer matrix, the output projection and
    /// one embedding row.
    pub fn weight_bytes_per_token(&self) -> usize {
        let per_layer: usize = self
            .layers
            .iter()
            .map(|l| {
                [l.wq, l.wk, l.wv, l.wo, l.w_gate, l.w_up, l.w_down]
                    .iter()
                    .map(WeightRef::n_bytes)
                    .sum::<usize>()
            })
            .sum();
        per_layer
            + self.output.n_bytes()
            + self.token_embd.n_bytes() / self.config.vocab_size.max(1)
    }
}

#[cfg(test)]
mod tests {
    /// Load once, share across threads: the model must be `Send + Sync` (checked at compile
    /// time; a non-thread-safe field would fail the build of this test).
    #[test]
    fn model_is_send_and_sync() {
        fn check<T: Send + Sync + 'static>() {}
        check::<super::Model>();
        check::<std::sync::Arc<super::Model>>();
    }
}
