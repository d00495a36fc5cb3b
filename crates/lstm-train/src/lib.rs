//! Training the [`edgeinfer_lstm`] classifier: a word-level tokenizer trained with the
//! `tokenizers` crate, and the network trained with candle's autodiff (AdamW, gradient
//! clipping, dropout, early stopping on validation accuracy). Data sets from CSV or JSON Lines
//! are read by [`edgeinfer_lstm::data`] (re-exported here).
//!
//! Everything random (initialisation, shuffling, dropout masks) comes from one seeded
//! generator, so a run is reproducible for a given seed, thread count and data.

mod linear;
mod net;
mod recurrence;
mod rng;
mod tokenizer;
mod train;

pub use edgeinfer_lstm::data::{class_labels, label_ids, read_examples, DataError, Example};
pub use linear::{fit_linear, LinearFit, LinearOptions};
pub use net::{Net, PretrainedEmbeddings};
pub use rng::Rng;
pub use tokenizer::{train_tokenizer, TokenizerOptions};
pub use train::{accuracy, train, Progress, TrainOptions, Trained};

/// Errors of the training crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// A data file that cannot be read, or a label the model does not know.
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Lstm(#[from] edgeinfer_lstm::LstmError),
    #[error("{0}")]
    Invalid(String),
}
