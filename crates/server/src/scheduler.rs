//! The slots loop: one thread owns every session (one per slot, all on one shared model),
//! takes requests from a channel and sends each one's pieces back over its own channel.
//!
//! Each iteration: drop waiting requests whose client has gone, admit waiting requests into
//! free slots (the slot whose cache shares the longest prefix with the prompt; only the rest
//! of the prompt runs), run the next chunk of at most [`PREFILL_CHUNK`] prompt tokens of
//! every slot still reading its prompt (so a long prompt delays the others' tokens by one
//! chunk per step, not by all of it), end generations whose client has gone, then one
//! [`Session::decode_many`] over the next token of every active slot, and per slot the
//! sampling, text and stop logic of a [`Decoding`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};

use edgeinfer_transformer::{
    Decoding, Model, Sampler, SamplerConfig, Session, StopReason, Tokenizer, MAX_BATCH,
};
use tokio::sync::mpsc;

/// Most prompt tokens a slot runs per scheduler iteration (the forward pass's own micro-batch).
pub const PREFILL_CHUNK: usize = MAX_BATCH;

/// A generation request, as the scheduler runs it.
#[derive(Debug)]
pub struct Job {
    /// Prompt token ids (not empty, shorter than the context).
    pub prompt: Vec<u32>,
    /// Most tokens to generate (≥ 1).
    pub max_tokens: usize,
    pub sampler: SamplerConfig,
    pub stop: Vec<String>,
    /// Report each token's log-probability and this many alternatives.
    pub logprobs: Option<usize>,
    /// Never sample an end-of-generation token.
    pub ignore_eos: bool,
    /// Where the pieces go; closed by the client's side when it goes away.
    pub events: mpsc::UnboundedSender<Event>,
}

/// A token's text, bytes and log-probability.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenProb {
    pub token: String,
    pub bytes: Vec<u8>,
    pub logprob: f32,
}

/// The chosen token's log-probability and the most likely alternatives.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    pub chosen: TokenProb,
    pub top: Vec<TokenProb>,
}

/// Why a generation ended, as the API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// End-of-generation token or stop string.
    Stop,
    /// Token budget or context used up.
    Length,
}

/// What the scheduler sends a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Text (possibly empty when only `logprob` is new) of one token, or text held back
    /// until the end (then `logprob` is `None`).
    Text {
        text: String,
        logprob: Option<TokenLogprob>,
    },
    /// The generation ended.
    Done {
        finish: Finish,
        prompt_tokens: usize,
        completion_tokens: usize,
    },
    /// It failed.
    Error(String),
}

/// Counters read by `/health`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Slots running a generation.
    pub busy: AtomicUsize,
    /// Requests accepted and waiting for a slot.
    pub queued: AtomicUsize,
    /// Requests whose client went away before the end (waiting or generating), since the
    /// start.
    pub cancelled: AtomicUsize,
}

struct Active {
    decoding: Decoding,
    /// The last sampled token, to run at the next step.
    next: u32,
    events: mpsc::UnboundedSender<Event>,
    logprobs: Option<usize>,
    ignore_eos: bool,
    prompt_tokens: usize,
}

/// A job whose prompt is being run, `done` positions of it in the cache.
struct Prefill {
    job: Job,
    done: usize,
}

struct Slot {
    session: Session,
    /// Reading its prompt (at most one of `prefill` and `active` is set).
    prefill: Option<Prefill>,
    /// Generating.
    active: Option<Active>,
}

impl Slot {
    fn is_free(&self) -> bool {
        self.prefill.is_none() && self.active.is_none()
    }
}

/// The scheduler's state; [`Scheduler::run`] is its thread's body.
pub struct Scheduler {
    model: Arc<Model>,
    slots: Vec<Slot>,
    jobs: std_mpsc::Receiver<Job>,
    waiting: VecDeque<Job>,
    counters: Arc<Counters>,
    /// The vocabulary's end-of-generation tokens (masked for `ignore_eos`).
    eog: Vec<u32>,
}

impl Scheduler {
    /// A scheduler over `sessions` (one per slot, all on `model`).
    pub fn new(
        model: Arc<Model>,
        sessions: Vec<Session>,
        jobs: std_mpsc::Receiver<Job>,
        counters: Arc<Counters>,
    ) -> Self {
        let slots = sessions
            .into_iter()
            .map(|session| Slot {
                session,
                prefill: None,
                active: None,
            })
            .collect();
        let eog = (0..model.config.vocab_size as u32)
            .filter(|&t| model.tokenizer.is_eog(t))
            .collect();
        Scheduler {
            eog,
            model,
            slots,
            jobs,
            waiting: VecDeque::new(),
            counters,
        }
    }

    /// Serve until every sender of the job channel is gone.
    pub fn run(mut self) {
        loop {
            let idle = self.slots.iter().all(Slot::is_free) && self.waiting.is_empty();
            if idle {
                match self.jobs.recv() {
                    Ok(job) => self.waiting.push_back(job),
                    Err(_) => return,
                }
            }
            while let Ok(job) = self.jobs.try_recv() {
                self.waiting.push_back(job);
            }
            let counters = &self.counters;
            self.waiting.retain(|j| {
                let gone = j.events.is_closed();
                if gone {
                    counters.queued.fetch_sub(1, Ordering::SeqCst);
                    counters.cancelled.fetch_add(1, Ordering::SeqCst);
                }
                !gone
            });
            while let Some(slot) = self.free_slot_for_front() {
                if let Some(job) = self.waiting.pop_front() {
                    self.counters.queued.fetch_sub(1, Ordering::SeqCst);
                    self.admit(slot, job);
                }
            }
            for i in 0..self.slots.len() {
                self.prefill_chunk(i);
            }
            self.step();
        }
    }

    /// The free slot for the first waiting job: the one whose cache shares the longest
    /// prefix with its prompt (the first such on a tie).
    fn free_slot_for_front(&self) -> Option<usize> {
        let job = self.waiting.front()?;
        let mut best: Option<(usize, usize)> = None;
        for (i, s) in self.slots.iter().enumerate() {
            if !s.is_free() {
                continue;
            }
            let common = s
                .session
                .tokens()
                .iter()
                .zip(&job.prompt)
                .take_while(|(a, b)| a == b)
                .count();
            if best.is_none_or(|(_, c)| common > c) {
                best = Some((i, common));
            }
        }
        best.map(|(i, _)| i)
    }

    /// Give slot `i` to `job`: keep the prefix of its prompt that the cache holds; the rest
    /// runs chunk by chunk ([`Scheduler::prefill_chunk`]).
    fn admit(&mut self, i: usize, job: Job) {
        if job.events.is_closed() {
            self.counters.cancelled.fetch_add(1, Ordering::SeqCst);
            return;
        }
        let slot = &mut self.slots[i];
        let done = slot.session.reuse_prefix(&job.prompt);
        slot.prefill = Some(Prefill { job, done });
        self.counters.busy.fetch_add(1, Ordering::SeqCst);
    }

    /// Run the next chunk of slot `i`'s prompt, if it is reading one; after the last, sample
    /// the first token.
    fn prefill_chunk(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        let Some(p) = slot.prefill.as_mut() else {
            return;
        };
        if p.job.events.is_closed() {
            slot.prefill = None;
            self.counters.busy.fetch_sub(1, Ordering::SeqCst);
            self.counters.cancelled.fetch_add(1, Ordering::SeqCst);
            return;
        }
        let end = (p.done + PREFILL_CHUNK).min(p.job.prompt.len());
        let mut logits = match slot.session.forward(&p.job.prompt[p.done..end], p.done) {
            Ok(l) => l,
            Err(e) => {
                // The cache may hold part of the prompt: forget it all.
                slot.session.truncate(0);
                let _ = p.job.events.send(Event::Error(e.to_string()));
                slot.prefill = None;
                self.counters.busy.fetch_sub(1, Ordering::SeqCst);
                return;
            }
        };
        p.done = end;
        if end < p.job.prompt.len() {
            return;
        }
        let Some(Prefill { job, .. }) = slot.prefill.take() else {
            return;
        };
        let decoding = Decoding::new(Sampler::new(job.sampler), &job.prompt, job.max_tokens)
            .with_stop_strings(job.stop);
        slot.active = Some(Active {
            decoding,
            next: 0,
            events: job.events,
            logprobs: job.logprobs,
            ignore_eos: job.ignore_eos,
            prompt_tokens: job.prompt.len(),
        });
        self.advance(i, &mut logits);
    }

    /// Sample slot `i`'s next token from `logits`, send its text, and end the generation
    /// when it stops.
    fn advance(&mut self, i: usize, logits: &mut [f32]) {
        let tokenizer = &self.model.tokenizer;
        let slot = &mut self.slots[i];
        let Some(active) = slot.active.as_mut() else {
            return;
        };
        if active.ignore_eos {
            for &t in &self.eog {
                logits[t as usize] = f32::NEG_INFINITY;
            }
        }
        let out = active.decoding.next_token(logits, tokenizer);
        let eog = out.stop == Some(StopReason::EndOfGeneration);
        let logprob = match active.logprobs {
            Some(k) if !eog => Some(logprob_of(logits, out.token, k, tokenizer)),
            _ => None,
        };
        if (!out.text.is_empty() || logprob.is_some())
            && active
                .events
                .send(Event::Text {
                    text: out.text,
                    logprob,
                })
                .is_err()
        {
            self.end(i, StopReason::Cancelled);
            return;
        }
        match out.stop {
            Some(reason) => self.end(i, reason),
            None if slot.session.n_past() + 1 > slot.session.max_ctx() => {
                self.end(i, StopReason::ContextFull)
            }
            None => active.next = out.token,
        }
    }

    /// End slot `i`'s generation: send what text was held back and the summary, free the slot.
    fn end(&mut self, i: usize, reason: StopReason) {
        let Some(mut active) = self.slots[i].active.take() else {
            return;
        };
        self.counters.busy.fetch_sub(1, Ordering::SeqCst);
        if reason == StopReason::Cancelled {
            self.counters.cancelled.fetch_add(1, Ordering::SeqCst);
            return;
        }
        let tail = active.decoding.finish(reason.clone());
        if !tail.is_empty() {
            let _ = active.events.send(Event::Text {
                text: tail,
                logprob: None,
            });
        }
        let finish = match reason {
            StopReason::MaxTokens | StopReason::ContextFull => Finish::Length,
            _ => Finish::Stop,
        };
        let _ = active.events.send(Event::Done {
            finish,
            prompt_tokens: active.prompt_tokens,
            completion_tokens: active.decoding.generated().len(),
        });
    }

    /// One decode step over every active slot.
    fn step(&mut self) {
        for i in 0..self.slots.len() {
            if self.slots[i]
                .active
                .as_ref()
                .is_some_and(|a| a.events.is_closed())
            {
                self.end(i, StopReason::Cancelled);
            }
        }
        let mut which = Vec::new();
        let mut sessions = Vec::new();
        let mut tokens = Vec::new();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if let Some(a) = &slot.active {
                which.push(i);
                tokens.push(a.next);
                sessions.push(&mut slot.session);
            }
        }
        if which.is_empty() {
            return;
        }
        match Session::decode_many(&mut sessions, &tokens) {
            Ok(all) => {
                for (i, mut logits) in which.into_iter().zip(all) {
                    self.advance(i, &mut logits);
                }
            }
            Err(e) => {
                for i in which {
                    if let Some(a) = self.slots[i].active.take() {
                        self.counters.busy.fetch_sub(1, Ordering::SeqCst);
                        let _ = a.events.send(Event::Error(e.to_string()));
                    }
                    self.slots[i].session.truncate(0);
                }
            }
        }
    }
}

/// The log-softmax of `logits` at `token`, and the `k` most likely tokens' (highest first;
/// ties to the lower id).
pub fn logprob_of(logits: &[f32], token: u32, k: usize, tokenizer: &Tokenizer) -> TokenLogprob {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&x| f64::from(x - max).exp()).sum();
    let lse = f64::from(max) + sum.ln();
    let lp = |id: usize| (f64::from(logits[id]) - lse) as f32;
    let prob = |id: u32| {
        let bytes = tokenizer.token_bytes(id).to_vec();
        TokenProb {
            token: String::from_utf8_lossy(&bytes).into_owned(),
            bytes,
            logprob: logits
                .get(id as usize)
                .map_or(f32::NEG_INFINITY, |_| lp(id as usize)),
        }
    };
    let mut top: Vec<usize> = Vec::with_capacity(k + 1);
    for id in 0..logits.len() {
        if top.len() == k && top.last().is_none_or(|&l| logits[id] <= logits[l]) {
            continue;
        }
        let at = top.partition_point(|&t| logits[t] >= logits[id]);
        top.insert(at, id);
        top.truncate(k);
    }
    TokenLogprob {
        chosen: prob(token),
        top: top.into_iter().map(|id| prob(id as u32)).collect(),
    }
}
