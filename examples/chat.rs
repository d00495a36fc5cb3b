//! A multi-turn chat on one KV cache: each turn the whole conversation is rendered with the
//! model's chat template, and only the tokens the cache does not hold yet are run.
//!
//! ```sh
//! cargo run --release --example chat [MODEL.gguf]
//! ```
//!
//! It checks that the second turn reused the cache (its prompt processing covered only what
//! came after the first turn) and that the reply equals the one a fresh session gives on the
//! whole conversation.

use std::io::Write;
use std::sync::Arc;

use anyhow::{ensure, Result};
use edgeinfer_transformer::chat::{self, Message};
use edgeinfer_transformer::{Engine, Generator, Model, Sampler, SamplerConfig, Session};

mod common;

/// Greedy reply tokens (and their text) for `new` after what `session` holds.
fn reply(session: &mut Session, new: &[u32], max: usize) -> Result<(Vec<u32>, String)> {
    let sampler = Sampler::new(SamplerConfig::greedy());
    let mut generator = Generator::new(session, sampler, new, max)?;
    let mut text = String::new();
    for piece in generator.by_ref() {
        text.push_str(&piece?.text);
    }
    Ok((generator.generated().to_vec(), text))
}

fn main() -> Result<()> {
    let engine = Engine::new()?;
    let model = Arc::new(Model::load(common::decoder_path()?)?);
    let template = chat::template_for(&model);
    let tk = &model.tokenizer;
    let mut session = Session::new(&engine, model.clone(), 2048);
    let mut messages = vec![Message::new(
        "system",
        "You are a helpful assistant. Answer in one short sentence.",
    )];
    let mut previous_prompt = 0;
    for (turn, user) in [
        "What is the capital of France?",
        "And the capital of Italy?",
    ]
    .into_iter()
    .enumerate()
    {
        messages.push(Message::new("user", user));
        let ids = tk.encode(&chat::render_for(template, tk, &messages, true)?, true)?;
        // Keep the cached prefix this prompt starts with; run the rest.
        let kept = session.reuse_prefix(&ids);
        let new = &ids[kept..];
        println!("> {user}");
        let (tokens, text) = reply(&mut session, new, 48)?;
        println!("{}", text.trim());
        std::io::stdout().flush()?;
        eprintln!(
            "[turn {}: prompt of {} tokens, {kept} reused from the cache, {} run; {} generated]",
            turn + 1,
            ids.len(),
            new.len(),
            tokens.len()
        );
        if turn > 0 {
            // The whole previous prompt (and the reply's tokens) came from the cache.
            ensure!(
                kept > previous_prompt,
                "turn {}: only {kept} of the previous {previous_prompt} prompt tokens reused",
                turn + 1
            );
            ensure!(new.len() < ids.len() - previous_prompt);
            // The reused cache gives what recomputing everything gives.
            let mut fresh = Session::new(&engine, model.clone(), 2048);
            let (again, _) = reply(&mut fresh, &ids, 48)?;
            ensure!(
                again == tokens,
                "the reply on the reused cache differs from a fresh one"
            );
        }
        previous_prompt = ids.len();
        messages.push(Message::new("assistant", text.trim()));
    }
    Ok(())
}
