//! Streaming generation: an iterator of pieces that yields only complete UTF-8 text.

use std::borrow::BorrowMut;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::sampler::Sampler;
use crate::{Logits, Session, Tokenizer, TransformerError};

/// Turns token bytes into text, holding back an incomplete UTF-8 sequence until the token
/// that completes it arrives (a multi-byte character can be split across tokens).
#[derive(Default, Debug, Clone)]
pub struct TokenStream {
    pending: Vec<u8>,
}

impl TokenStream {
    /// A stream with nothing pending.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add bytes; return the complete text now available. Invalid bytes become U+FFFD.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, tail) = rest.split_at(e.valid_up_to());
                    // valid_up_to guarantees `valid` is UTF-8.
                    out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match e.error_len() {
                        // incomplete sequence at the end: wait for more bytes
                        None => {
                            rest = tail;
                            break;
                        }
                        Some(n) => {
                            out.push('\u{fffd}');
                            rest = &tail[n..];
                        }
                    }
                }
            }
        }
        self.pending = rest.to_vec();
        out
    }

    /// Whatever is still pending, lossily (at the end of a generation).
    pub fn flush(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }
}

/// One step of generation.
#[derive(Clone, Debug, PartialEq)]
pub struct Piece {
    /// The sampled token (`None` for text flushed at the end, after the last token).
    pub token: Option<u32>,
    /// Text that became complete with this token (may be empty).
    pub text: String,
}

/// Why generation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopReason {
    /// An end-of-generation token was sampled.
    EndOfGeneration,
    /// A stop string appeared in the text.
    StopString(String),
    /// The token budget was used up.
    MaxTokens,
    /// The session's context is full.
    ContextFull,
    /// The generation's [`CancelToken`] was cancelled.
    Cancelled,
}

/// A flag that stops a generation from any thread: clone it, hand the clone to another thread
/// (a UI's stop button, a server's disconnect handler), and [`CancelToken::cancel`] there. The
/// generation notices at its next token boundary (during the prompt, before each micro-batch
/// of [`crate::MAX_BATCH`] tokens) and ends with [`StopReason::Cancelled`]; its session keeps
/// every position it ran, consistent and reusable. A token stays cancelled: use a new one for
/// the next generation.
#[derive(Clone, Debug, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token not cancelled yet.
    pub fn new() -> Self {
        Self::default()
    }
    /// Ask every generation holding a clone of this token to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
    /// Whether [`CancelToken::cancel`] was called on this token or a clone.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// What one [`Decoding::next_token`] gave.
#[derive(Clone, Debug, PartialEq)]
pub struct StepOutcome {
    /// The sampled token.
    pub token: u32,
    /// Text that became complete with this token and may be shown (may be empty): never
    /// part of a stop string, nor an incomplete UTF-8 sequence.
    pub text: String,
    /// Set when the generation ends with this token: the token is not to be run.
    pub stop: Option<StopReason>,
}

/// The per-token part of a generation, after the logits: sampling (with the prompt in the
/// penalty window), end-of-generation tokens, UTF-8 assembly ([`TokenStream`]), stop strings
/// (held back while they may still begin one, never emitted) and the token budget. It runs no
/// model: the caller runs each token it returns and passes the next logits back, so one
/// forward pass can serve many decodings ([`crate::Session::decode_many`]). [`Generator`]
/// is a `Decoding` over its own session's forward passes.
#[derive(Clone, Debug)]
pub struct Decoding {
    sampler: Sampler,
    stream: TokenStream,
    stop_strings: Vec<String>,
    held: String,
    remaining: usize,
    generated: Vec<u32>,
    stop: Option<StopReason>,
}

impl Decoding {
    /// A decoding after `prompt` (put in the sampler's penalty window) of up to `max_tokens`
    /// tokens.
    pub fn new(mut sampler: Sampler, prompt: &[u32], max_tokens: usize) -> Self {
        for &t in prompt {
            sampler.accept(t);
        }
        Decoding {
            sampler,
            stream: TokenStream::new(),
            stop_strings: Vec::new(),
            held: String::new(),
            remaining: max_tokens,
            generated: Vec::new(),
            stop: None,
        }
    }

    /// Stop when any of these strings appears in the output (it is not emitted; empty
    /// strings are ignored).
    pub fn with_stop_strings(mut self, stops: Vec<String>) -> Self {
        self.stop_strings = stops.into_iter().filter(|s| !s.is_empty()).collect();
        self
    }

    /// Tokens still allowed.
    pub fn remaining(&self) -> usize {
        self.remaining
    }
    /// Tokens sampled so far (an end-of-generation token included).
    pub fn generated(&self) -> &[u32] {
        &self.generated
    }
    /// Why the decoding ended, once it has.
    pub fn stop_reason(&self) -> Option<&StopReason> {
        self.stop.as_ref()
    }

    /// Sample the token that follows `logits` and turn it into text. The outcome's `stop`
    /// is set when this token ends the generation: an end-of-generation token (its text is
    /// empty), a stop string completed (the text before it is given), or the budget used up
    /// (also when it was 0 already: then nothing is sampled and `token` is 0). After a stop,
    /// [`Decoding::finish`] gives the text still held back.
    pub fn next_token(&mut self, logits: &[f32], tokenizer: &Tokenizer) -> StepOutcome {
        if let Some(stop) = self.stop.clone() {
            return StepOutcome {
                token: 0,
                text: String::new(),
                stop: Some(stop),
            };
        }
        if self.remaining == 0 {
            self.stop = Some(StopReason::MaxTokens);
            return StepOutcome {
                token: 0,
                text: String::new(),
                stop: self.stop.clone(),
            };
        }
        let tok = self.sampler.sample(logits);
        self.sampler.accept(tok);
        self.generated.push(tok);
        self.remaining -= 1;
        if tokenizer.is_eog(tok) {
            self.stop = Some(StopReason::EndOfGeneration);
            return StepOutcome {
                token: tok,
                text: String::new(),
                stop: self.stop.clone(),
            };
        }
        let bytes = if tokenizer.is_control(tok) {
            &[][..]
        } else {
            tokenizer.token_bytes(tok)
        };
        let fresh = self.stream.push(bytes);
        self.held.push_str(&fresh);
        let text = self.release();
        if self.stop.is_none() && self.remaining == 0 {
            self.stop = Some(StopReason::MaxTokens);
        }
        StepOutcome {
            token: tok,
            text,
            stop: self.stop.clone(),
        }
    }

    /// End the decoding (with `reason` unless it has ended already) and return the text still
    /// held back: a tail that might have begun a stop string, and an incomplete UTF-8
    /// sequence (lossily). Nothing after a stop string is returned.
    pub fn finish(&mut self, reason: StopReason) -> String {
        if self.stop.is_none() {
            self.stop = Some(reason);
        }
        let mut text = std::mem::take(&mut self.held);
        let tail = self.stream.flush();
        if !matches!(self.stop, Some(StopReason::StopString(_))) {
            text.push_str(&tail);
        }
        text
    }

    /// Split `held` into what can be emitted now and what might still begin a stop string.
    fn release(&mut self) -> String {
        if let Some((at, s)) = self
            .stop_strings
            .iter()
            .filter_map(|s| self.held.find(s.as_str()).map(|i| (i, s.clone())))
            .min_by_key(|(i, _)| *i)
        {
            let out = self.held[..at].to_string();
            self.held.clear();
            self.stop = Some(StopReason::StopString(s));
            return out;
        }
        // Longest suffix of `held` that is a proper prefix of some stop string.
        let mut keep = 0;
        for s in &self.stop_strings {
            for (i, _) in s.char_indices().skip(1) {
                if self.held.ends_with(&s[..i]) {
                    keep = keep.max(i);
                }
            }
        }
        let cut = self.held.len() - keep;
        let out = self.held[..cut].to_string();
        self.held.drain(..cut);
        out
    }
}

/// Generates tokens from a session, as an iterator of [`Piece`]s: the prompt is run (batched)
/// on the first call of `next`, then one token per call.
///
/// `S` is how the generator holds its session: by value (`Generator<Session>`, the default: an
/// owned handle, `Send + 'static`, that gives the session back with
/// [`Generator::into_session`]) or borrowed (`Generator<&mut Session>`).
pub struct Generator<S: BorrowMut<Session> = Session> {
    session: S,
    decoding: Decoding,
    /// The prompt, until it has been run.
    prompt: Option<Vec<u32>>,
    cancel: CancelToken,
    logits: Vec<f32>,
    /// Why the generation ends, once known (the iterator ends at its next call).
    stop: Option<StopReason>,
    finished: bool,
    prefill_time: Duration,
    decode_times: Vec<Duration>,
}

impl<S: BorrowMut<Session>> Generator<S> {
    /// Prepare to append `prompt` to the session and generate up to `max_tokens` tokens after
    /// it. The prompt is checked here (not empty, within the vocabulary and the session's
    /// context) and run by the first call of `next`.
    pub fn new(
        session: S,
        sampler: Sampler,
        prompt: &[u32],
        max_tokens: usize,
    ) -> Result<Self, TransformerError> {
        let s = session.borrow();
        s.check_input(prompt, s.n_past())?;
        Ok(Generator {
            session,
            decoding: Decoding::new(sampler, prompt, max_tokens),
            prompt: Some(prompt.to_vec()),
            cancel: CancelToken::new(),
            logits: Vec::new(),
            stop: None,
            finished: false,
            prefill_time: Duration::ZERO,
            decode_times: Vec::new(),
        })
    }

    /// Stop when any of these strings appears in the output (it is not emitted).
    pub fn with_stop_strings(mut self, stops: Vec<String>) -> Self {
        self.decoding = self.decoding.with_stop_strings(stops);
        self
    }

    /// Stop when `token` is cancelled (instead of the generator's own token).
    pub fn with_cancel(mut self, token: CancelToken) -> Self {
        self.cancel = token;
        self
    }

    /// A clone of the token that cancels this generation, for another thread.
    pub fn cancel_token(&self) -> CancelToken {
        self.cancel.clone()
    }

    /// The session (its cache holds the prompt and the generated tokens run so far).
    pub fn session(&self) -> &Session {
        self.session.borrow()
    }

    /// End the generation and take the session back, as it is: the tokens run so far stay in
    /// its cache. Each piece's token is run before the piece is returned, except the one at
    /// which the generation stopped (a stop string, the budget, a cancel seen before its run):
    /// compare [`Session::n_past`] with the prompt and [`Generator::generated`] to see whether
    /// the last token is in the cache.
    pub fn into_session(self) -> S {
        self.session
    }

    /// Why generation stopped (once the iterator has ended).
    pub fn stop_reason(&self) -> Option<&StopReason> {
        self.stop.as_ref()
    }
    /// Tokens generated so far.
    pub fn generated(&self) -> &[u32] {
        self.decoding.generated()
    }
    /// Time of the prompt's forward pass.
    pub fn prefill_time(&self) -> Duration {
        self.prefill_time
    }
    /// Time of each decode step's forward pass.
    pub fn decode_times(&self) -> &[Duration] {
        &self.decode_times
    }

    fn finish(&mut self, reason: StopReason) -> Option<Result<Piece, TransformerError>> {
        let text = self.decoding.finish(reason);
        self.stop = self.decoding.stop_reason().cloned();
        self.finished = true;
        (!text.is_empty()).then_some(Ok(Piece { token: None, text }))
    }

    fn fail(&mut self, e: TransformerError) -> Option<Result<Piece, TransformerError>> {
        self.finished = true;
        Some(Err(e))
    }
}

impl<S: BorrowMut<Session>> Iterator for Generator<S> {
    type Item = Result<Piece, TransformerError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        if let Some(prompt) = self.prompt.take() {
            let start = Instant::now();
            let session = self.session.borrow_mut();
            let pos = session.n_past();
            match session.forward_cancellable(&prompt, pos, Logits::Last, Some(&self.cancel)) {
                Ok(Some(l)) => self.logits = l,
                Ok(None) => return self.finish(StopReason::Cancelled),
                Err(e) => return self.fail(e),
            }
            self.prefill_time = start.elapsed();
        }
        if let Some(r) = self.stop.clone() {
            return self.finish(r);
        }
        if self.cancel.is_cancelled() {
            return self.finish(StopReason::Cancelled);
        }
        if self.decoding.remaining() == 0 {
            return self.finish(StopReason::MaxTokens);
        }
        let out = self
            .decoding
            .next_token(&self.logits, &self.session.borrow().model().tokenizer);
        if out.stop == Some(StopReason::EndOfGeneration) {
            return self.finish(StopReason::EndOfGeneration);
        }
        self.stop = out.stop;
        if self.stop.is_none() {
            let session = self.session.borrow_mut();
            let pos = session.n_past();
            if pos + 1 > session.max_ctx() {
                self.stop = Some(StopReason::ContextFull);
            } else if self.cancel.is_cancelled() {
                self.stop = Some(StopReason::Cancelled);
            } else {
                let start = Instant::now();
                match session.forward(&[out.token], pos) {
                    Ok(l) => self.logits = l,
                    Err(e) => return self.fail(e),
                }
                self.decode_times.push(start.elapsed());
            }
        }
        Some(Ok(Piece {
            token: Some(out.token),
            text: out.text,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_holds_split_multibyte_characters() {
        let mut s = TokenStream::new();
        let e = "é🤖".as_bytes(); // c3 a9 | f0 9f a4 96
        assert_eq!(s.push(&e[..1]), "");
        assert_eq!(s.push(&e[1..3]), "é");
        assert_eq!(s.push(&e[3..5]), "");
        assert_eq!(s.push(&e[5..]), "🤖");
        assert_eq!(s.push(b"ok"), "ok");
        assert_eq!(s.flush(), "");
    }

    #[test]
    fn stream_replaces_invalid_bytes_and_flushes_incomplete_tail() {
        let mut s = TokenStream::new();
        assert_eq!(s.push(b"a\xffb"), "a\u{fffd}b");
        assert_eq!(s.push(b"\xe6\x97"), "");
        assert_eq!(s.flush(), "\u{fffd}");
    }
}
