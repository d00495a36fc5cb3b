//! Training the [`edgeinfer_lstm`] classifier: data sets from CSV or JSON Lines, a word-level
//! tokenizer trained with the `tokenizers` crate, and the network trained with candle's
//! autodiff (AdamW, gradient clipping, dropout, early stopping on validation accuracy).
//!
//! Everything random (initialisation, shuffling, dropout masks) comes from one seeded
//! generator, so a run is reproducible for a given seed, thread count and data.

mod data;
mod linear;
mod net;
mod recurrence;
mod rng;
mod tokenizer;
mod train;

pub use data::{read_examples, Example};
pub use linear::{fit_linear, LinearFit, LinearOptions};
pub use net::{Net, PretrainedEmbeddings};
pub use rng::Rng;
pub use tokenizer::{train_tokenizer, TokenizerOptions};
pub use train::{accuracy, label_ids, train, Progress, TrainOptions, Trained};

/// Errors of the training crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    #[error("{path}: {what}")]
    Data { path: String, what: String },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Lstm(#[from] edgeinfer_lstm::LstmError),
    #[error("{0}")]
    Invalid(String),
}
