//! The decoder as a zero-shot classifier: each label is scored by the log-probability the
//! model gives it as the answer to an instruction prompt (no free generation), calibrated on
//! content-free inputs.
//!
//! ```sh
//! cargo run --release --example zero_shot [MODEL.gguf]
//! ```

use std::sync::Arc;

use anyhow::{ensure, Result};
use edgeinfer_transformer::{Engine, Model, Session, ZeroShot};

mod common;

fn main() -> Result<()> {
    let engine = Engine::new()?;
    let model = Arc::new(Model::load(common::decoder_path()?)?);
    let labels = ["sports".to_string(), "cooking".to_string()];
    let mut zs = ZeroShot::new(
        model.clone(),
        &labels,
        "What is the topic of this text: sports or cooking?",
    )?;
    let mut session = Session::new(&engine, model, 1024);
    zs.calibrate(&mut session, &ZeroShot::CONTENT_FREE)?;
    for text in [
        "The striker scored twice in the last ten minutes and the team won the cup final.",
        "Whisk the eggs with the sugar, fold in the flour and bake for twenty minutes.",
    ] {
        let r = zs.classify(&mut session, text)?;
        println!(
            "{:>8}  ({})  {text}",
            labels[r.label],
            labels
                .iter()
                .zip(&r.probs)
                .map(|(l, p)| format!("{l} {p:.3}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        ensure!(r.probs.len() == labels.len());
        ensure!((r.probs.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        ensure!(r.log_probs.iter().all(|l| *l < 0.0 && l.is_finite()));
    }
    Ok(())
}
