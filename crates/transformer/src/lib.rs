//! A decoder for Llama-family GGUF models (`llama`, `qwen2`, `gemma3`) over memory-mapped
//! weights.
//!
//! * [`Engine`] (from `edgeinfer-kernels`) — what computations run on, chosen explicitly with
//!   its builder: a thread pool it owns, a kernel [`Level`], the decode-team setting. Nothing in
//!   the library reads environment variables.
//! * [`Model`] — config from the architecture's GGUF keys, the block's description
//!   ([`arch::Architecture`]), zero-copy weight views, tokenizer and chat template;
//!   `Send + Sync`: load once into an `Arc` and share.
//! * [`Session`] — one sequence's KV cache over an `Arc<Model>`, on an engine; `Send + 'static`.
//!   `forward(tokens, pos) -> logits`, batched prefill through the kernels' matmul,
//!   single-token decode through matvec.
//! * [`Sampler`] — greedy, temperature, top-k, top-p, min-p, repetition/frequency/presence
//!   penalties, seeded.
//! * [`Generator`] — an iterator of generated pieces that only yields complete UTF-8 text and
//!   stops at end-of-generation tokens, stop strings, a token budget or a [`CancelToken`]
//!   cancelled from any thread; it owns its session (and gives it back) or borrows it.
//! * [`chat`] — chat templates rendered with minijinja; [`Session::reuse_prefix`] keeps a
//!   conversation's cache between turns.
//! * [`ZeroShot`] — the decoder as a zero-shot or few-shot classifier.
//! * [`Probe`] — a linear head over the decoder's pooled hidden states.
//!
//! ```no_run
//! use std::sync::Arc;
//! use edgeinfer_transformer::{Engine, Generator, Model, Sampler, SamplerConfig, Session};
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let engine = Engine::builder().threads(2).build()?; // its own pool, the best kernels
//!     let model = Arc::new(Model::load("models/SmolLM2-135M-Instruct.Q4_1.gguf")?);
//!     let session = Session::new(&engine, model.clone(), 2048); // one KV cache per session
//!     let prompt = model.tokenizer.encode("The capital of France is", true)?;
//!     let sampler = Sampler::new(SamplerConfig::greedy());
//!     let mut generator = Generator::new(session, sampler, &prompt, 32)?;
//!     let _stop = generator.cancel_token(); // .cancel() from any thread ends the stream
//!     for piece in generator.by_ref() {
//!         print!("{}", piece?.text); // only complete UTF-8
//!     }
//!     let session = generator.into_session(); // the cache holds prompt and reply
//!     assert!(session.n_past() > prompt.len());
//!     Ok(())
//! }
//! ```

pub mod arch;
pub mod chat;
mod config;
mod generate;
mod model;
mod perplexity;
mod probe;
mod sampler;
mod session;
mod tokenizer;
mod zero_shot;

pub use arch::{Architecture, SUPPORTED_ARCHITECTURES};
pub use config::Config;
pub use edgeinfer_kernels::{Engine, EngineBuilder, EngineError, Level, WeightError, WeightRef};
pub use generate::{CancelToken, Decoding, Generator, Piece, StepOutcome, StopReason, TokenStream};
pub use model::{Layer, Model};
pub use perplexity::{log_prob, perplexity, Perplexity};
pub use probe::{Probe, ProbeResult, PROBE_ARCHITECTURE};
pub use sampler::{argmax, Sampler, SamplerConfig};
pub use session::{KvType, Logits, Precision, Session, StepProfile, MAX_BATCH};
pub use tokenizer::{token_type, Tokenizer};
pub use zero_shot::{prior_offsets, ZeroShot, ZeroShotResult};

/// The README's "As a library" example, compiled as a doctest so that it stays true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;

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
    /// A weight missing, of the wrong shape or of a type the kernels cannot compute with.
    #[error(transparent)]
    Weight(#[from] WeightError),
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
