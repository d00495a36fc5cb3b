//! Generate text from a prompt, streaming it as it is produced (complete UTF-8 only).
//!
//! ```sh
//! cargo run --release --example generate [MODEL.gguf] ["PROMPT"]
//! ```

use std::io::Write;
use std::sync::Arc;

use anyhow::{ensure, Result};
use edgeinfer_transformer::{Engine, Generator, Model, Sampler, SamplerConfig, Session};

mod common;

fn main() -> Result<()> {
    let path = common::decoder_path()?;
    let prompt = std::env::args()
        .nth(2)
        .unwrap_or_else(|| "The capital of France is".to_string());

    // The engine owns its thread pool (all cores) and kernel level (the best this CPU has).
    let engine = Engine::new()?;
    let model = Arc::new(Model::load(&path)?);
    let ids = model.tokenizer.encode(&prompt, true)?;
    let session = Session::new(&engine, model.clone(), 512);
    let sampler = Sampler::new(SamplerConfig::greedy());
    let mut generator = Generator::new(session, sampler, &ids, 32)?;

    print!("{prompt}");
    let mut text = String::new();
    for piece in generator.by_ref() {
        let piece = piece?;
        print!("{}", piece.text);
        std::io::stdout().flush()?;
        text.push_str(&piece.text);
    }
    println!();
    let generated = generator.generated().len();
    eprintln!(
        "[{} prompt tokens, {generated} generated, stop: {:?}; {} kernels, {} threads]",
        ids.len(),
        generator.stop_reason(),
        engine.level(),
        engine.threads()
    );
    ensure!(generated > 0, "no token generated");
    ensure!(!text.trim().is_empty(), "no text generated");

    // The generator gives its session back: the cache holds the prompt and every generated
    // token it ran (all but the last).
    let session = generator.into_session();
    ensure!(session.n_past() == ids.len() + generated - 1);
    Ok(())
}
