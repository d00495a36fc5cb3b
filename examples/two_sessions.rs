//! Two sessions on one model, generating at the same time from two threads on one engine (the
//! model is loaded once and shared through an `Arc`; each session owns its KV cache and moves
//! into its thread).
//!
//! ```sh
//! cargo run --release --example two_sessions [MODEL.gguf]
//! ```
//!
//! It checks that both threads got the tokens a single-threaded run gives: the same prompts,
//! one after the other, on a one-thread engine.

use std::sync::Arc;
use std::thread;

use anyhow::{ensure, Result};
use edgeinfer_transformer::{Engine, Generator, Model, Sampler, SamplerConfig, Session};

mod common;

const PROMPTS: [&str; 2] = [
    "The three primary colours are",
    "Once upon a time, in a small village by the sea,",
];

/// Greedy continuation of `prompt` in a new session of `model` on `engine`.
fn continuation(engine: &Engine, model: Arc<Model>, prompt: &str) -> Result<(Vec<u32>, String)> {
    let ids = model.tokenizer.encode(prompt, true)?;
    let session = Session::new(engine, model, 256);
    let sampler = Sampler::new(SamplerConfig::greedy());
    let mut generator = Generator::new(session, sampler, &ids, 24)?;
    let mut text = String::new();
    for piece in generator.by_ref() {
        text.push_str(&piece?.text);
    }
    Ok((generator.generated().to_vec(), text))
}

fn main() -> Result<()> {
    let model = Arc::new(Model::load(common::decoder_path()?)?);
    let engine = Engine::builder().threads(2).build()?;

    let handles: Vec<_> = PROMPTS
        .iter()
        .map(|prompt| {
            let (engine, model) = (engine.clone(), Arc::clone(&model));
            thread::spawn(move || continuation(&engine, model, prompt))
        })
        .collect();
    let together: Vec<(Vec<u32>, String)> = handles
        .into_iter()
        .map(|h| h.join().expect("generating thread"))
        .collect::<Result<_>>()?;

    let single = Engine::builder().threads(1).build()?;
    for (prompt, (tokens, text)) in PROMPTS.iter().zip(&together) {
        println!("{prompt}{text}");
        let (alone, _) = continuation(&single, model.clone(), prompt)?;
        ensure!(!tokens.is_empty(), "nothing generated for {prompt:?}");
        ensure!(
            *tokens == alone,
            "{prompt:?}: the threaded run's tokens differ from the single-threaded run's"
        );
    }
    eprintln!("[both threads' tokens equal the single-threaded run's]");
    Ok(())
}
