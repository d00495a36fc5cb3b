//! Perplexity as llama.cpp computes it: non-overlapping windows of `ctx` tokens, each run from
//! an empty cache (BOS in the first slot when the model adds one), and only the second half of
//! each window scored, so every scored token has at least `ctx/2` tokens of context.

use std::sync::Arc;

use crate::{Logits, Session, TransformerError};

/// The result of [`perplexity`].
#[derive(Clone, Debug, PartialEq)]
pub struct Perplexity {
    /// exp(mean negative log-likelihood).
    pub ppl: f64,
    /// Standard error of the estimate (llama.cpp's: of the mean NLL, through exp).
    pub ppl_err: f64,
    /// Running perplexity after each window.
    pub per_chunk: Vec<f64>,
    /// Tokens scored.
    pub scored: usize,
}

/// Natural-log softmax probability of `id` in `row`.
pub fn log_prob(row: &[f32], id: usize) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = row.iter().map(|&v| f64::from(v - max).exp()).sum();
    f64::from(row[id] - max) - sum.ln()
}

/// Perplexity of `tokens` over `n_chunks` windows of `ctx` (`None`: as many as fit).
/// `on_chunk(i, running_ppl)` is called after each window.
pub fn perplexity(
    session: &mut Session,
    tokens: &[u32],
    ctx: usize,
    n_chunks: Option<usize>,
    mut on_chunk: impl FnMut(usize, f64),
) -> Result<Perplexity, TransformerError> {
    let model = Arc::clone(session.model());
    if ctx < 2 || ctx > session.max_ctx() {
        return Err(TransformerError::BadConfig {
            what: format!(
                "perplexity window {ctx} must be in 2..={}",
                session.max_ctx()
            ),
        });
    }
    let available = tokens.len() / ctx;
    let n = n_chunks.map_or(available, |c| c.min(available));
    if n == 0 {
        return Err(TransformerError::BadConfig {
            what: format!("{} tokens is less than one window of {ctx}", tokens.len()),
        });
    }
    let tk = &model.tokenizer;
    let vocab = model.config.vocab_size;
    let first = ctx / 2;
    let (mut nll, mut nll2, mut count) = (0.0f64, 0.0f64, 0usize);
    let mut per_chunk = Vec::with_capacity(n);
    for c in 0..n {
        let mut window = tokens[c * ctx..(c + 1) * ctx].to_vec();
        if let (true, Some(b)) = (tk.add_bos(), tk.bos()) {
            window[0] = b;
        }
        let logits = session.forward_logits(&window, 0, Logits::From(first))?;
        for (j, row) in logits.chunks_exact(vocab).enumerate().take(ctx - 1 - first) {
            let v = -log_prob(row, window[first + j + 1] as usize);
            nll += v;
            nll2 += v * v;
            count += 1;
        }
        let running = (nll / count as f64).exp();
        per_chunk.push(running);
        on_chunk(c, running);
    }
    let mean = nll / count as f64;
    let var = (nll2 / count as f64 - mean * mean).max(0.0);
    let ppl = mean.exp();
    Ok(Perplexity {
        ppl,
        ppl_err: ppl * (var / (count as f64 - 1.0).max(1.0)).sqrt(),
        per_chunk,
        scored: count,
    })
}
