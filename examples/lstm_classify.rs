//! Classify texts with an LSTM classifier (weights, tokenizer and labels in one GGUF file),
//! one batch on an engine.
//!
//! ```sh
//! cargo run --release --example lstm_classify [CLASSIFIER.gguf]
//! ```
//!
//! The default is the shipped SMS spam model (`fixtures/lstm/sms.q8_0.gguf`), on which the
//! example checks its answers for a few unambiguous messages.

use std::sync::Arc;

use anyhow::{ensure, Result};
use edgeinfer_lstm::{Engine, LstmClassifier};

mod common;

/// Messages and the label the SMS model must give them.
const TEXTS: [(&str, &str); 4] = [
    (
        "WINNER!! You have been selected to receive a £900 prize reward! To claim call 09061701461. Claim code KL341. Valid 12 hours only.",
        "spam",
    ),
    (
        "FREE entry in 2 a wkly comp to win FA Cup final tkts 21st May 2005. Text FA to 87121 to receive entry question(std txt rate)",
        "spam",
    ),
    ("Ok lar... I'll be home in ten minutes, see you then.", "ham"),
    ("Are we still meeting for lunch tomorrow?", "ham"),
];

fn main() -> Result<()> {
    let default = std::env::args_os().nth(1).is_none();
    let path = common::path_or("fixtures/lstm/sms.q8_0.gguf");
    let engine = Engine::new()?;
    let model = Arc::new(LstmClassifier::load(&path)?);
    let texts: Vec<&str> = TEXTS.iter().map(|(t, _)| *t).collect();
    let batch = model.classify_batch(&engine, &texts)?;
    for ((text, want), c) in TEXTS.iter().zip(&batch) {
        let label = &model.labels[c.label];
        println!("{label:>6} {:.4}  {text}", c.probs[c.label]);
        ensure!((c.probs.iter().sum::<f32>() - 1.0).abs() < 1e-4);
        // One text alone gets what it got in the batch.
        ensure!(model.classify(&engine, text)?.label == c.label);
        if default {
            ensure!(label == want, "{text:?}: {label}, expected {want}");
        }
    }
    Ok(())
}
