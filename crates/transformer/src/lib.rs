//! A decoder for Llama-family GGUF models (`llama`, `qwen2`, `gemma3`) over memory-mapped
//! weights.
//!
//! * [`Model`] — config from the architecture's GGUF keys, the block's description
//!   ([`arch::Architecture`]), zero-copy weight views, tokenizer and chat template;
//!   `Send + Sync`, load once and share.
//! * [`Session`] — one sequence's KV cache; `forward(tokens, pos) -> logits`, batched prefill
//!   through the kernels' matmul, single-token decode through matvec.
//! * [`Sampler`] — greedy, temperature, top-k, top-p, min-p, repetition/frequency/presence
//!   penalties, seeded.
//! * [`Generator`] — an iterator of generated pieces that only yields complete UTF-8 text and
//!   stops at end-of-generation tokens, stop strings or a token budget.
//! * [`chat`] — chat templates rendered with minijinja.
//!
//! ```no_run
//! use edgeinfer_transformer::{Model, Session, Sampler, SamplerConfig, Generator};
//! let model = Model::load("models/SmolLM2-135M-Instruct.Q4_1.gguf")?;
//! let mut session = Session::new(&model, 2048);
//! let prompt = model.tokenizer.encode("The capital of France is", true)?;
//! let sampler = Sampler::new(SamplerConfig::greedy());
//! for piece in Generator::new(&mut session, sampler, &prompt, 16)? {
//!     print!("{}", piece?.text);
//! }
//! # Ok::<(), edgeinfer_transformer::TransformerError>(())
//! ```

pub mod arch;
pub mod chat;
mod config;
mod generate;
mod model;
mod perplexity;
mod sampler;
mod session;
mod tokenizer;
mod zero_shot;

pub use arch::{Architecture, SUPPORTED_ARCHITECTURES};
pub use config::Config;
pub use generate::{Generator, Piece, StopReason, TokenStream};
pub use model::{Layer, Model, WeightRef};
pub use perplexity::{log_prob, perplexity, Perplexity};
pub use sampler::{argmax, Sampler, SamplerConfig};
pub use session::{KvType, Logits, Precision, Session, StepProfile, MAX_BATCH};
pub use tokenizer::{token_type, Tokenizer};
pub use zero_shot::{ZeroShot, ZeroShotResult};

use edgeinfer_tensor::DType;

/// Errors of the decoder crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransformerError {
    #[error(transparent)]
    Gguf(#[from] edgeinfer_gguf::GgufError),
    #[error(transparent)]
    Kernel(#[from] edgeinfer_kernels::KernelError),
    #[error("architecture {arch:?} is not supported yet (supported: {supported})")]
    UnsupportedArchitecture { arch: String, supported: String },
    #[error("tokenizer not supported: {what}")]
    UnsupportedTokenizer { what: String },
    #[error("bad model config: {what}")]
    BadConfig { what: String },
    #[error("tensor {name:?} missing from the model file")]
    MissingTensor { name: String },
    #[error("tensor {name:?}: expected shape {expected:?}, found {actual:?}")]
    TensorShape {
        name: String,
        expected: Vec<usize>,
        actual: Vec<usize>,
    },
    #[error("tensor {name:?} has type {dtype}, which the kernels cannot compute with yet")]
    UnsupportedTensorType { name: String, dtype: DType },
    #[error("context full: {needed} positions needed, the session holds {max}")]
    ContextFull { needed: usize, max: usize },
    #[error("position {pos} is past the {n_past} cached positions")]
    BadPosition { pos: usize, n_past: usize },
    #[error("token id {id} is outside the vocabulary of {vocab}")]
    BadToken { id: u32, vocab: usize },
    #[error("empty input: nothing to run")]
    EmptyInput,
    #[error("tokenizer: {what}")]
    Tokenize { what: String },
    #[error("chat template: {what}")]
    Template { what: String },
}
