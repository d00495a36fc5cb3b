//! An LSTM text classifier whose weights, tokenizer and label names live in one GGUF file.
//!
//! ```no_run
//! use std::sync::Arc;
//! use edgeinfer_lstm::{Engine, LstmClassifier};
//!
//! let engine = Engine::builder().threads(2).build()?; // its own pool, the best kernels
//! let model = Arc::new(LstmClassifier::load("fixtures/lstm/sms.q8_0.gguf")?); // share it
//! for c in model.classify_batch(&engine, &["WINNER! Claim your prize", "See you at six"])? {
//!     println!("{} {:?}", model.labels[c.label], c.probs);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Embedding → LSTM layer(s) (optionally bidirectional) → final hidden state (forward and
//! backward directions concatenated) → linear → softmax.
//!
//! [`data`] reads labelled texts from CSV or JSON Lines ([`read_examples`]) and maps their
//! labels to class indices ([`label_ids`]).
//!
//! # Gate order and equations
//!
//! The same as PyTorch's `nn.LSTM`, so its `state_dict` loads unchanged (after a transpose-free
//! reshape: a PyTorch `[4H, in]` matrix is a GGUF tensor of shape `[in, 4H]`, rows of `in`):
//!
//! ```text
//! z = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh        (4H values: i, f, g, o blocks in that order)
//! i = σ(z_i)   f = σ(z_f)   g = tanh(z_g)   o = σ(z_o)
//! c_t = f ⊙ c_{t-1} + i ⊙ g        h_t = o ⊙ tanh(c_t)        h_0 = c_0 = 0
//! ```
//!
//! The backward direction of a bidirectional layer reads the sequence from its last token to
//! its first; its final state is the one after the first token. Layer `k > 0` reads the
//! per-position outputs of layer `k - 1` (`[h_fwd, h_bwd]` when bidirectional). An empty
//! sequence has final state zero, so its logits are the output bias.
//!
//! # GGUF layout (`general.architecture = "lstm-classifier"`)
//!
//! | key | type | meaning |
//! |---|---|---|
//! | `lstm-classifier.vocab_size` | u32 | rows of the embedding table |
//! | `lstm-classifier.embedding_length` | u32 | E |
//! | `lstm-classifier.hidden_size` | u32 | H |
//! | `lstm-classifier.block_count` | u32 | LSTM layers |
//! | `lstm-classifier.bidirectional` | bool | two directions per layer |
//! | `lstm-classifier.labels` | string array | class names, in logit order |
//! | `lstm-classifier.max_tokens` | u32 | tokens kept per text (0: all) |
//! | `lstm-classifier.keep` | string | `first` or `last`: which tokens truncation keeps |
//! | `tokenizer.huggingface.json` | string | the `tokenizers` JSON of the tokenizer |
//!
//! | tensor | GGUF shape | types |
//! |---|---|---|
//! | `embedding.weight` | `[E, vocab]` | F32, F16, Q8_0, Q4_0, … |
//! | `lstm.weight_ih_l{k}[_reverse]` | `[in, 4H]` (`in` = E, or H·dirs for k > 0) | same |
//! | `lstm.weight_hh_l{k}[_reverse]` | `[H, 4H]` | same |
//! | `lstm.bias_ih_l{k}[_reverse]`, `lstm.bias_hh_l{k}[_reverse]` | `[4H]` | F32 |
//! | `fc.weight` | `[H·dirs, classes]` | same as the matrices |
//! | `fc.bias` | `[classes]` | F32 |
//!
//! Quantized types need row lengths that are a multiple of their block size (32 for Q8_0 and
//! Q4_0): E and H must then be multiples of 32. [`LstmWeights::to_gguf`] keeps a tensor in f32
//! when its rows do not fit the blocks.

pub mod bow;
mod config;
pub mod data;
mod model;
mod weights;

pub use bow::NaiveBayes;
pub use config::{Keep, LstmConfig, ARCH};
pub use data::{class_labels, examples_per_class, label_ids, read_examples, DataError, Example};
pub use edgeinfer_kernels::ops::argmax;
pub use edgeinfer_kernels::{Engine, EngineBuilder, EngineError, Level, WeightError};
pub use model::{truncate, Classification, LstmClassifier, StepTrace, MAX_TOKENS};
pub use weights::{DirectionWeights, LstmWeights};

/// Errors of the LSTM crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LstmError {
    #[error(transparent)]
    Gguf(#[from] edgeinfer_gguf::GgufError),
    #[error(transparent)]
    Kernel(#[from] edgeinfer_kernels::KernelError),
    #[error(
        "not an LSTM classifier: general.architecture is {arch:?}, expected \"lstm-classifier\""
    )]
    WrongArchitecture { arch: String },
    #[error("bad LSTM config: {what}")]
    BadConfig { what: String },
    /// A weight missing, of the wrong shape or of a type the kernels cannot compute with.
    #[error(transparent)]
    Weight(#[from] WeightError),
    #[error("tokenizer: {what}")]
    Tokenizer { what: String },
    #[error("token id {id} is outside the vocabulary of {vocab}")]
    TokenOutOfRange { id: u32, vocab: usize },
}
