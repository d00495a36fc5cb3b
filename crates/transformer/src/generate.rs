//! Streaming generation: an iterator of pieces that yields only complete UTF-8 text.

use std::time::{Duration, Instant};

use crate::sampler::Sampler;
use crate::{Session, TransformerError};

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
pub enum StopReason {
    /// An end-of-generation token was sampled.
    EndOfGeneration,
    /// A stop string appeared in the text.
    StopString(String),
    /// The token budget was used up.
    MaxTokens,
    /// The session's context is full.
    ContextFull,
}

/// Generates tokens from a session, as an iterator of [`Piece`]s.
pub struct Generator<'s, 'm> {
    session: &'s mut Session<'m>,
    sampler: Sampler,
    stream: TokenStream,
    logits: Vec<f32>,
    remaining: usize,
    stop_strings: Vec<String>,
    held: String,
    stop: Option<StopReason>,
    finished: bool,
    generated: Vec<u32>,
    prefill_time: Duration,
    decode_times: Vec<Duration>,
}

impl<'s, 'm> Generator<'s, 'm> {
    /// Append `prompt` to the session (batched prefill) and prepare to generate up to
    /// `max_tokens` tokens.
    pub fn new(
        session: &'s mut Session<'m>,
        mut sampler: Sampler,
        prompt: &[u32],
        max_tokens: usize,
    ) -> Result<Self, TransformerError> {
        let start = Instant::now();
        let pos = session.n_past();
        let logits = session.forward(prompt, pos)?;
        for &t in prompt {
            sampler.accept(t);
        }
        Ok(Generator {
            session,
            sampler,
            stream: TokenStream::new(),
            logits,
            remaining: max_tokens,
            stop_strings: Vec::new(),
            held: String::new(),
            stop: None,
            finished: false,
            generated: Vec::new(),
            prefill_time: start.elapsed(),
            decode_times: Vec::new(),
        })
    }

    /// Stop when any of these strings appears in the output (it is not emitted).
    pub fn with_stop_strings(mut self, stops: Vec<String>) -> Self {
        self.stop_strings = stops.into_iter().filter(|s| !s.is_empty()).collect();
        self
    }

    /// Why generation stopped (once the iterator has ended).
    pub fn stop_reason(&self) -> Option<&StopReason> {
        self.stop.as_ref()
    }
    /// Tokens generated so far.
    pub fn generated(&self) -> &[u32] {
        &self.generated
    }
    /// Time of the prompt's forward pass.
    pub fn prefill_time(&self) -> Duration {
        self.prefill_time
    }
    /// Time of each decode step's forward pass.
    pub fn decode_times(&self) -> &[Duration] {
        &self.decode_times
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

    fn finish(&mut self, reason: StopReason) -> Option<Result<Piece, TransformerError>> {
        if self.stop.is_none() {
            self.stop = Some(reason);
        }
        self.finished = true;
        let mut text = std::mem::take(&mut self.held);
        text.push_str(&self.stream.flush());
        (!text.is_empty()).then_some(Ok(Piece { token: None, text }))
    }
}

impl Iterator for Generator<'_, '_> {
    type Item = Result<Piece, TransformerError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        if let Some(r) = self.stop.clone() {
            return self.finish(r);
        }
        if self.remaining == 0 {
            return self.finish(StopReason::MaxTokens);
        }
        let tok = self.sampler.sample(&self.logits);
        self.sampler.accept(tok);
        self.generated.push(tok);
        self.remaining -= 1;
        let tk = &self.session.model().tokenizer;
        if tk.is_eog(tok) {
            return self.finish(StopReason::EndOfGeneration);
        }
        let bytes = if tk.is_control(tok) {
            &[][..]
        } else {
            tk.token_bytes(tok)
        };
        let fresh = self.stream.push(bytes);
        self.held.push_str(&fresh);
        let text = self.release();
        if self.stop.is_none() && self.remaining > 0 {
            let pos = self.session.n_past();
            if pos + 1 > self.session.max_ctx() {
                self.stop = Some(StopReason::ContextFull);
            } else {
                let start = Instant::now();
                match self.session.forward(&[tok], pos) {
                    Ok(l) => self.logits = l,
                    Err(e) => {
                        self.finished = true;
                        return Some(Err(e));
                    }
                }
                self.decode_times.push(start.elapsed());
            }
        }
        Some(Ok(Piece {
            token: Some(tok),
            text,
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
