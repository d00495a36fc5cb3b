//! One conversation's state over a shared [`Model`]: the KV cache and scratch buffers, and the
//! forward pass, run on an [`Engine`] (its pool, its kernel table).
//!
//! The block is computed from the architecture's description ([`crate::arch`]) by the maths
//! in `block.rs`, which both executors call: the fork-join path here (every layer for a batch
//! of rows, forking the pool around each product) and the decode team (`team.rs`, one token's
//! step as one broadcast of the pool).
//!
//! KV cache (`kv.rs`): per layer `[slot][kv_head][head_dim]`; global layers grow as positions
//! are used (no up-front allocation for the full context), sliding-window layers keep a ring
//! of `window` slots. f16 by default, as llama.cpp: it halves the cache (SmolLM2: 23 KB
//! instead of 46 KB per token, 14 MB instead of 28 MB at 600 tokens) and the bytes attention
//! reads, for a logit change far below the 8-bit activation rounding. [`Precision::ExactF32`]
//! uses an f32 cache, so the exact path matches an f32 reference.

use edgeinfer_kernels::ops::{self, rope_freqs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use edgeinfer_kernels::{Activations, Engine, Kernels, Matrix};
use rayon::prelude::*;

use crate::WeightRef;
use crate::{CancelToken, Model, TransformerError};

mod block;
mod kv;
mod team;

use block::Rows;
use kv::{KvCache, KvView};

/// Longest micro-batch of one forward pass; longer inputs are split.
pub const MAX_BATCH: usize = 128;

/// How matrix products are computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Precision {
    /// Activations quantized to the weight's 8-bit activation type, integer block dots
    /// (as llama.cpp computes): the fast path.
    #[default]
    Quantized,
    /// Weights dequantized to f32, activations unquantized: slow, for checking against an f32
    /// reference.
    ExactF32,
}

#[derive(Default)]
struct Scratch {
    x: Vec<f32>,
    xn: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    k16: Vec<u16>,
    v16: Vec<u16>,
    att: Vec<f32>,
    proj: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    tmp: Vec<f32>,
    /// Per RoPE table, the `(sin, cos)` pairs of each token of the batch.
    angles: Vec<Vec<(f32, f32)>>,
    one_angles: Vec<(f32, f32)>,
    act: Activations,
}

/// Element type of the KV cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvType {
    F16,
    F32,
}

/// Where one forward pass spent its time (filled only when profiling is on). For a decode
/// step on the team (several threads), `matmul` and `attention` are the time thread 0 spent
/// in its pieces of them, so waiting for the other threads counts as rest.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepProfile {
    /// Tokens in the pass.
    pub tokens: usize,
    /// Position of the first token.
    pub pos: usize,
    /// Whole pass.
    pub total: Duration,
    /// Matrix products (including activation quantization).
    pub matmul: Duration,
    /// Attention over the cache.
    pub attention: Duration,
}

impl StepProfile {
    /// Everything else: embedding, norms, RoPE, residuals, cache appends.
    pub fn rest(&self) -> Duration {
        self.total.saturating_sub(self.matmul + self.attention)
    }
}

/// A decoding session: one sequence's KV cache over a shared model, computed on an engine.
/// Owns everything it uses (an `Arc` of the model, a clone of the engine): `Send + 'static`,
/// so it can outlive the code that made it, move to another thread, or live in a C struct or
/// a server's task. Run as many sessions on one model as you like, from any threads: each
/// forward pass runs in the engine's pool ([`Engine::install`]).
pub struct Session {
    model: Arc<Model>,
    engine: Engine,
    /// The engine's kernel table.
    kernels: &'static Kernels,
    max_ctx: usize,
    precision: Precision,
    kv: KvCache,
    n_past: usize,
    /// The token at each cached position (`n_past` of them).
    tokens: Vec<u32>,
    /// Per layer: its attention window (`None`: global).
    windows: Vec<Option<usize>>,
    /// Sliding-window layers keep every position instead of a ring.
    full_cache: bool,
    /// Per RoPE table of the architecture, its inverse frequencies.
    freqs: Vec<Vec<f32>>,
    s: Scratch,
    profiling: bool,
    profile: StepProfile,
    /// Decode steps run on a [`team::Team`] when the pool has several threads.
    use_team: bool,
    team: Option<team::Team>,
}

/// Which logits a forward pass returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logits {
    /// Only the last position's (`vocab` values).
    Last,
    /// Every position's (`tokens × vocab`, row-major).
    All,
    /// Those of positions `start..` of this call's tokens (`(tokens − start) × vocab`).
    From(usize),
}

impl Session {
    /// A session of `model` on `engine` that can hold `max_ctx` positions (at most the model's
    /// context length). The decode team is on if the engine's setting says so
    /// ([`Engine::decode_team`]).
    pub fn new(engine: &Engine, model: Arc<Model>, max_ctx: usize) -> Self {
        let c = &model.config;
        let a = &model.arch;
        let mut s = Session {
            engine: engine.clone(),
            kernels: engine.kernels(),
            max_ctx: max_ctx.min(c.context_length).max(1),
            precision: Precision::Quantized,
            kv: KvCache::new(KvType::F16, &[]),
            n_past: 0,
            tokens: Vec::new(),
            windows: a.layers.iter().map(|l| l.window).collect(),
            full_cache: false,
            freqs: a
                .ropes
                .iter()
                .map(|r| {
                    let mut f = rope_freqs(c.rope_dim, r.base);
                    if r.freq_scale != 1.0 {
                        f.iter_mut().for_each(|f| *f *= r.freq_scale);
                    }
                    f
                })
                .collect(),
            s: Scratch::default(),
            profiling: false,
            profile: StepProfile::default(),
            use_team: engine.decode_team(),
            team: None,
            model,
        };
        s.reset_cache(KvType::F16);
        s
    }

    /// A new, empty cache of type `t` for the current windows.
    fn reset_cache(&mut self, t: KvType) {
        let rings: Vec<Option<usize>> = self
            .windows
            .iter()
            .map(|w| match w {
                Some(w) if !self.full_cache => Some((*w).min(self.max_ctx)),
                _ => None,
            })
            .collect();
        self.kv = KvCache::new(t, &rings);
        self.n_past = 0;
        self.tokens.clear();
    }

    /// Whether single-token steps with several threads keep the pool together for the whole
    /// pass or fork and join it around each product (default: the engine's
    /// [`Engine::decode_team`]). Both give the same logits, bit for bit. A team step is a
    /// `rayon::broadcast`, so it returns only after every thread of the pool has run its part
    /// (taking whatever pieces are left, possibly none).
    pub fn with_decode_team(mut self, on: bool) -> Self {
        self.use_team = on;
        self
    }

    /// Set how matrix products are computed. [`Precision::ExactF32`] also switches the KV
    /// cache to f32. Clears the cache.
    pub fn with_precision(mut self, p: Precision) -> Self {
        self.precision = p;
        if p == Precision::ExactF32 {
            self = self.with_kv_type(KvType::F32);
        }
        self
    }

    /// Set the KV cache element type (default f16). Clears the cache.
    pub fn with_kv_type(mut self, t: KvType) -> Self {
        self.reset_cache(t);
        self
    }

    /// Whether sliding-window layers keep every position (as llama.cpp's `--swa-full`) rather
    /// than a ring of `window` positions (default): more memory, but [`Session::truncate`]
    /// can then rewind to any position. Attention is the same either way. Clears the cache.
    pub fn with_full_cache(mut self, on: bool) -> Self {
        self.full_cache = on;
        let t = self.kv.kv_type();
        self.reset_cache(t);
        self
    }

    /// Replace the attention window of every sliding-window layer by `window` (at least 1);
    /// for tests of the ring cache on short inputs — the model was not trained for it. Clears
    /// the cache.
    #[doc(hidden)]
    pub fn with_sliding_window(mut self, window: usize) -> Self {
        for w in self.windows.iter_mut().flatten() {
            *w = window.max(1);
        }
        let t = self.kv.kv_type();
        self.reset_cache(t);
        self
    }

    /// Record where each forward pass spends its time (see [`Session::last_profile`]).
    pub fn set_profiling(&mut self, on: bool) {
        self.profiling = on;
    }
    /// The time split of the last forward pass (zeros unless profiling is on).
    pub fn last_profile(&self) -> StepProfile {
        self.profile
    }

    /// The model.
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }
    /// The engine the session computes on.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
    /// Positions currently in the cache.
    pub fn n_past(&self) -> usize {
        self.n_past
    }
    /// The token at each cached position (`n_past` of them).
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }
    /// Keep the longest cached prefix that `ids` starts with — but not all of `ids`: at least
    /// its last token is left to run, for the logits that follow it — and forget the rest
    /// ([`Session::truncate`]). Returns the positions kept: run `ids[kept..]` at `kept` next.
    /// A multi-turn chat re-renders the whole conversation each turn and runs only what the
    /// cache does not hold yet.
    pub fn reuse_prefix(&mut self, ids: &[u32]) -> usize {
        let common = self
            .tokens
            .iter()
            .zip(ids)
            .take_while(|(a, b)| a == b)
            .count()
            .min(ids.len().saturating_sub(1));
        self.truncate(common);
        self.n_past
    }
    /// Capacity in positions.
    pub fn max_ctx(&self) -> usize {
        self.max_ctx
    }
    /// Forget everything after the first `n` positions (n ≤ n_past). A sliding-window layer's
    /// ring holds only its last `window` positions: when a rewind needs positions it has
    /// overwritten (n < n_past − 1 after more than `window` positions), the cache is cleared
    /// instead and [`Session::n_past`] is 0 — read it after truncating, and run the tokens from
    /// there (or use [`Session::with_full_cache`]).
    pub fn truncate(&mut self, n: usize) {
        let n = n.min(self.n_past);
        if self.kv.can_continue_at(n) {
            self.n_past = n;
        } else {
            self.kv.forget();
            self.n_past = 0;
        }
        self.tokens.truncate(self.n_past);
    }
    /// One decode step of several sessions together: session `i` runs `tokens[i]` at its next
    /// position (`n_past`) and gets back its logits (`vocab` values). The sessions must share
    /// one model (the same `Arc`); the products run once over all their tokens, and each token
    /// attends to its own session's cache. The logits are the same bits as
    /// `sessions[i].forward(&[tokens[i]], n_past)` would give. Every input is checked before
    /// anything runs: on an error no session has changed.
    pub fn decode_many(
        sessions: &mut [&mut Session],
        tokens: &[u32],
    ) -> Result<Vec<Vec<f32>>, TransformerError> {
        if sessions.len() != tokens.len() {
            return Err(TransformerError::BadConfig {
                what: format!(
                    "decode_many: {} sessions but {} tokens",
                    sessions.len(),
                    tokens.len()
                ),
            });
        }
        let Some(first) = sessions.first() else {
            return Ok(Vec::new());
        };
        let (model, engine) = (Arc::clone(&first.model), first.engine.clone());
        let (kernels, precision, kv_type) = (first.kernels, first.precision, first.kv.kv_type());
        for (s, &t) in sessions.iter().zip(tokens) {
            if !Arc::ptr_eq(&s.model, &model)
                || !std::ptr::eq(s.kernels, kernels)
                || s.precision != precision
                || s.kv.kv_type() != kv_type
            {
                return Err(TransformerError::BadConfig {
                    what: "decode_many: the sessions differ in model, kernel level, precision \
                           or KV type"
                        .into(),
                });
            }
            s.check_input(&[t], s.n_past)?;
        }
        if sessions.len() == 1 {
            let s = &mut *sessions[0];
            let pos = s.n_past;
            return Ok(vec![s.forward(&[tokens[0]], pos)?]);
        }
        let m = &*model;
        // The first session's scratch holds the batch.
        let mut scratch = std::mem::take(&mut sessions[0].s);
        let logits = engine.install(|| -> Result<Vec<f32>, TransformerError> {
            let scratch = &mut scratch;
            embed(m, kernels, tokens, &mut scratch.x)?;
            let mut segs: Vec<Segment<'_>> = sessions
                .iter_mut()
                .map(|s| {
                    let pos = s.n_past;
                    s.segment(pos, 1).0
                })
                .collect();
            let mut clock = Clock::new(false);
            layers(m, kernels, precision, scratch, &mut segs, &mut clock)?;
            output_logits(m, kernels, precision, scratch, 0)
        });
        sessions[0].s = scratch;
        let logits = logits?;
        for (s, &t) in sessions.iter_mut().zip(tokens) {
            s.n_past += 1;
            s.tokens.push(t);
        }
        let vocab = m.config.vocab_size;
        Ok(logits.chunks_exact(vocab).map(<[f32]>::to_vec).collect())
    }

    /// An embedding of `tokens`: the final hidden states (after the output norm) of every
    /// position, averaged and scaled to unit length. Runs `tokens` from position 0 (the cache
    /// holds them afterwards), in micro-batches; an empty input or one past the context is an
    /// error.
    pub fn embed(&mut self, tokens: &[u32]) -> Result<Vec<f32>, TransformerError> {
        self.check_input(tokens, 0)?;
        self.truncate(0);
        let model = Arc::clone(&self.model);
        let c = &model.config;
        let d = c.d_model;
        let mut sum = vec![0.0f64; d];
        let mut norm = vec![0.0f32; d];
        let engine = self.engine.clone();
        engine.install(|| -> Result<(), TransformerError> {
            for (i, chunk) in tokens.chunks(MAX_BATCH).enumerate() {
                self.forward_batch_inner(chunk, i * MAX_BATCH, None)?;
                for row in self.s.x.chunks_exact(d) {
                    ops::rmsnorm(row, &model.output_norm, c.rms_eps, &mut norm);
                    sum.iter_mut()
                        .zip(&norm)
                        .for_each(|(s, &x)| *s += f64::from(x));
                }
            }
            Ok(())
        })?;
        let len = sum.iter().map(|x| x * x).sum::<f64>().sqrt();
        let scale = if len > 0.0 { 1.0 / len } else { 0.0 };
        Ok(sum.iter().map(|&x| (x * scale) as f32).collect())
    }

    /// Bytes allocated for the KV cache now.
    pub fn kv_bytes(&self) -> usize {
        self.kv.bytes()
    }

    /// Run `tokens` at positions `pos..pos + tokens.len()` (dropping any cached positions from
    /// `pos` on) and return the logits of the last token.
    pub fn forward(&mut self, tokens: &[u32], pos: usize) -> Result<Vec<f32>, TransformerError> {
        self.forward_logits(tokens, pos, Logits::Last)
    }

    /// As [`Session::forward`], choosing which positions' logits to return.
    pub fn forward_logits(
        &mut self,
        tokens: &[u32],
        pos: usize,
        which: Logits,
    ) -> Result<Vec<f32>, TransformerError> {
        let logits = self.forward_cancellable(tokens, pos, which, None)?;
        Ok(logits.expect("nothing cancels without a token"))
    }

    /// The input checks of a forward pass at `pos` (done again by the pass itself): not empty,
    /// contiguous with the cache, within the context and the vocabulary.
    pub(crate) fn check_input(&self, tokens: &[u32], pos: usize) -> Result<(), TransformerError> {
        let vocab = self.model.config.vocab_size;
        if tokens.is_empty() {
            return Err(TransformerError::EmptyInput);
        }
        if pos > self.n_past {
            return Err(TransformerError::BadPosition {
                pos,
                n_past: self.n_past,
            });
        }
        if pos + tokens.len() > self.max_ctx {
            return Err(TransformerError::ContextFull {
                needed: pos + tokens.len(),
                max: self.max_ctx,
            });
        }
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(TransformerError::BadToken { id: bad, vocab });
        }
        Ok(())
    }

    /// As [`Session::forward_logits`], in micro-batches of at most [`MAX_BATCH`] tokens, in the
    /// engine's pool; with `cancel`, it is checked before each micro-batch and a cancelled pass
    /// returns `Ok(None)`, leaving the cache holding the micro-batches already run.
    pub(crate) fn forward_cancellable(
        &mut self,
        tokens: &[u32],
        pos: usize,
        which: Logits,
        cancel: Option<&CancelToken>,
    ) -> Result<Option<Vec<f32>>, TransformerError> {
        self.check_input(tokens, pos)?;
        self.truncate(pos);
        if self.n_past < pos {
            // A ring no longer holds what position `pos` attends to.
            return Err(TransformerError::BadPosition {
                pos,
                n_past: self.n_past,
            });
        }
        let engine = self.engine.clone();
        engine.install(|| self.micro_batches(tokens, pos, which, cancel))
    }

    /// Long inputs run in micro-batches: scratch memory stays bounded by MAX_BATCH, and the
    /// weights re-read per micro-batch cost little next to the batch's compute.
    fn micro_batches(
        &mut self,
        tokens: &[u32],
        pos: usize,
        which: Logits,
        cancel: Option<&CancelToken>,
    ) -> Result<Option<Vec<f32>>, TransformerError> {
        let started = Instant::now();
        let mut total = StepProfile::default();
        let mut logits = Vec::new();
        let n = tokens.len();
        for start in (0..n).step_by(MAX_BATCH) {
            if cancel.is_some_and(CancelToken::is_cancelled) {
                return Ok(None);
            }
            let end = (start + MAX_BATCH).min(n);
            let want = match which {
                _ if n <= MAX_BATCH => Some(which),
                Logits::Last if end == n => Some(Logits::Last),
                Logits::Last => None,
                Logits::All => Some(Logits::All),
                Logits::From(f) if f < end => Some(Logits::From(f.saturating_sub(start))),
                Logits::From(_) => None,
            };
            let part = self.forward_batch_inner(&tokens[start..end], pos + start, want)?;
            logits.extend_from_slice(&part);
            let p = self.profile;
            total.matmul += p.matmul;
            total.attention += p.attention;
        }
        if self.profiling && n > MAX_BATCH {
            self.profile = StepProfile {
                tokens: n,
                pos,
                total: started.elapsed(),
                ..total
            };
        }
        Ok(Some(logits))
    }

    /// One micro-batch (validated by the caller); `which: None` computes no logits.
    fn forward_batch_inner(
        &mut self,
        tokens: &[u32],
        pos: usize,
        which: Option<Logits>,
    ) -> Result<Vec<f32>, TransformerError> {
        let model = Arc::clone(&self.model);
        let m = &*model;
        let k = self.kernels;
        let started = Instant::now();
        let mut clock = Clock::new(self.profiling);
        let t_n = tokens.len();
        let s = &mut self.s;
        embed(m, k, tokens, &mut s.x)?;
        let threads = rayon::current_num_threads();
        if t_n == 1 && self.use_team && threads > 1 && self.precision == Precision::Quantized {
            if self.team.as_ref().is_none_or(|t| t.threads() != threads) {
                self.team = Some(team::Team::new(m, threads));
            }
            let team = self.team.as_ref().expect("just built");
            let step = team::Step {
                model: m,
                kernels: k,
                kv: &self.kv,
                pos,
                windows: &self.windows,
                freqs: &self.freqs,
                profiling: self.profiling,
            };
            let (matmul, attention) = team.run(&step, &mut s.x)?;
            team.append_kv(k, m, &self.freqs, pos, self.max_ctx, &mut self.kv);
            clock.matmul = matmul;
            clock.attention = attention;
        } else {
            let (precision, kernels) = (self.precision, self.kernels);
            let (seg, s) = self.segment(pos, t_n);
            layers(m, kernels, precision, s, &mut [seg], &mut clock)?;
        }
        let s = &mut self.s;
        self.n_past = pos + t_n;
        self.tokens.truncate(pos);
        self.tokens.extend_from_slice(tokens);

        let first = match which {
            None => {
                if self.profiling {
                    self.profile = clock.profile(t_n, pos, started);
                }
                return Ok(Vec::new());
            }
            Some(Logits::Last) => t_n - 1,
            Some(Logits::All) => 0,
            Some(Logits::From(start)) => start.min(t_n - 1),
        };
        clock.start();
        let logits = output_logits(m, k, self.precision, s, first)?;
        clock.stop(Part::Matmul);
        if self.profiling {
            self.profile = clock.profile(t_n, pos, started);
        }
        Ok(logits)
    }

    /// This session's cache as the one segment of a batch of `rows` tokens at `pos..`.
    fn segment(&mut self, pos: usize, rows: usize) -> (Segment<'_>, &mut Scratch) {
        let seg = Segment {
            kv: &mut self.kv,
            pos,
            rows,
            windows: &self.windows,
            freqs: &self.freqs,
            max_ctx: self.max_ctx,
        };
        (seg, &mut self.s)
    }
}

/// The rows of a batch that belong to one session: `rows` tokens at positions `pos..`, which
/// attend to (and are appended to) that session's cache.
struct Segment<'a> {
    kv: &'a mut KvCache,
    pos: usize,
    rows: usize,
    windows: &'a [Option<usize>],
    freqs: &'a [Vec<f32>],
    max_ctx: usize,
}

/// Every layer for a batch of rows in `s.x`, made of consecutive segments (one per session:
/// the products run once over all rows, each row attends to its own segment's cache), forking
/// the pool around each product.
fn layers(
    m: &Model,
    k: &'static Kernels,
    precision: Precision,
    s: &mut Scratch,
    segs: &mut [Segment<'_>],
    clock: &mut Clock,
) -> Result<(), TransformerError> {
    {
        let c = &m.config;
        let (d, qd, kvd) = (c.d_model, c.q_dim(), c.kv_dim());
        let t_n: usize = segs.iter().map(|g| g.rows).sum();
        // Each RoPE table's angles for every row's position, once per pass.
        let tables = segs.first().map_or(0, |g| g.freqs.len());
        s.angles.resize_with(tables, Vec::new);
        for (i, angles) in s.angles.iter_mut().enumerate() {
            angles.clear();
            for g in segs.iter() {
                for t in 0..g.rows {
                    ops::rope_angles(&g.freqs[i], g.pos + t, &mut s.one_angles);
                    angles.extend_from_slice(&s.one_angles);
                }
            }
        }
        let n_rot = c.rope_dim / 2;
        for (li, layer) in m.layers.iter().enumerate() {
            let spec = &m.arch.layers[li];
            // --- attention
            s.xn.resize(t_n * d, 0.0);
            rows_norm(&s.x, &mut s.xn, &layer.attn_norm, c.rms_eps);
            s.q.resize(t_n * qd, 0.0);
            s.k.resize(t_n * kvd, 0.0);
            s.v.resize(t_n * kvd, 0.0);
            clock.start();
            project(
                m,
                k,
                precision,
                &mut s.act,
                &s.xn,
                &mut [
                    (&layer.wq, &mut s.q),
                    (&layer.wk, &mut s.k),
                    (&layer.wv, &mut s.v),
                ],
            )?;
            clock.stop(Part::Matmul);
            let angles = &s.angles[spec.rope];
            let finish = |tmp: &mut Vec<f32>, (t, ((q, k), v)): TokenQkv<'_>| {
                let sin_cos = &angles[t * n_rot..(t + 1) * n_rot];
                block::finish_token(m, layer, q, k, v, sin_cos, tmp);
            };
            if t_n < PAR_ROWS {
                s.q.chunks_exact_mut(qd)
                    .zip(s.k.chunks_exact_mut(kvd))
                    .zip(s.v.chunks_exact_mut(kvd))
                    .enumerate()
                    .for_each(|item| finish(&mut s.tmp, item));
            } else {
                s.q.par_chunks_exact_mut(qd)
                    .zip(s.k.par_chunks_exact_mut(kvd))
                    .zip(s.v.par_chunks_exact_mut(kvd))
                    .enumerate()
                    .for_each_init(Vec::new, finish);
            }
            let kv_type = segs[0].kv.kv_type();
            let new = kv::encode(k, kv_type, &s.k, &s.v, &mut s.k16, &mut s.v16);
            s.att.resize(t_n * qd, 0.0);
            clock.start();
            let mut first = 0;
            let mut att = &mut s.att[..];
            for g in segs.iter() {
                let (out, rest) = att.split_at_mut(g.rows * qd);
                att = rest;
                attention(
                    m,
                    k,
                    &s.q[first * qd..(first + g.rows) * qd],
                    g.kv.layer(li),
                    new.rows(first..first + g.rows, kvd),
                    g.windows[li],
                    g.pos,
                    out,
                );
                first += g.rows;
            }
            clock.stop(Part::Attention);
            let mut first = 0;
            for g in segs.iter_mut() {
                let rows = new.rows(first..first + g.rows, kvd);
                g.kv.write(li, g.pos, rows, kvd, g.max_ctx);
                first += g.rows;
            }
            s.proj.resize(t_n * d, 0.0);
            clock.start();
            project(
                m,
                k,
                precision,
                &mut s.act,
                &s.att,
                &mut [(&layer.wo, &mut s.proj)],
            )?;
            clock.stop(Part::Matmul);
            residual(
                &mut s.x,
                &s.proj,
                layer.post_attention_norm.as_deref(),
                c.rms_eps,
                &mut s.xn,
            );

            // --- gated feed-forward
            rows_norm(&s.x, &mut s.xn, &layer.ffn_norm, c.rms_eps);
            s.gate.resize(t_n * c.d_ff, 0.0);
            s.up.resize(t_n * c.d_ff, 0.0);
            clock.start();
            project(
                m,
                k,
                precision,
                &mut s.act,
                &s.xn,
                &mut [(&layer.w_gate, &mut s.gate), (&layer.w_up, &mut s.up)],
            )?;
            clock.stop(Part::Matmul);
            if t_n < PAR_ROWS {
                block::gated(m.arch.ffn, &mut s.gate, &s.up);
            } else {
                s.gate
                    .par_chunks_exact_mut(c.d_ff)
                    .zip(s.up.par_chunks_exact(c.d_ff))
                    .for_each(|(g, u)| block::gated(m.arch.ffn, g, u));
            }
            clock.start();
            project(
                m,
                k,
                precision,
                &mut s.act,
                &s.gate,
                &mut [(&layer.w_down, &mut s.proj)],
            )?;
            clock.stop(Part::Matmul);
            residual(
                &mut s.x,
                &s.proj,
                layer.post_ffn_norm.as_deref(),
                c.rms_eps,
                &mut s.xn,
            );
        }
        Ok(())
    }
}

/// The embedding rows of `tokens` (scaled as the architecture says) into `x`.
fn embed(
    m: &Model,
    k: &'static Kernels,
    tokens: &[u32],
    x: &mut Vec<f32>,
) -> Result<(), TransformerError> {
    let d = m.config.d_model;
    x.resize(tokens.len() * d, 0.0);
    let emb = m.matrix(k, &m.token_embd);
    for (row, &tok) in x.chunks_exact_mut(d).zip(tokens) {
        emb.dequantize_row(tok as usize, row)?;
        if let Some(scale) = m.arch.embedding_scale {
            row.iter_mut().for_each(|x| *x *= scale);
        }
    }
    Ok(())
}

/// The logits of rows `first..` of `s.x` (after the last layer): output norm, output
/// projection, the architecture's soft cap.
fn output_logits(
    m: &Model,
    k: &'static Kernels,
    precision: Precision,
    s: &mut Scratch,
    first: usize,
) -> Result<Vec<f32>, TransformerError> {
    let c = &m.config;
    let d = c.d_model;
    let rows = s.x.len() / d - first;
    s.xn.resize(rows * d, 0.0);
    for (xr, nr) in s.x[first * d..]
        .chunks_exact(d)
        .zip(s.xn.chunks_exact_mut(d))
    {
        ops::rmsnorm(xr, &m.output_norm, c.rms_eps, nr);
    }
    let mut logits = vec![0.0f32; rows * c.vocab_size];
    project(
        m,
        k,
        precision,
        &mut s.act,
        &s.xn,
        &mut [(&m.output, &mut logits)],
    )?;
    if let Some(cap) = m.arch.final_logit_softcap {
        let inv = 1.0 / cap;
        logits.iter_mut().for_each(|l| *l = (*l * inv).tanh() * cap);
    }
    Ok(logits)
}

/// Token `t`'s query, key and value rows, as the batched loop hands them out.
type TokenQkv<'a> = (usize, ((&'a mut [f32], &'a mut [f32]), &'a mut [f32]));

/// Batches of at least this many rows run their per-row element-wise steps (norms, Q/K
/// finishing, the gated activation, residuals) on the pool; each row's values are computed by
/// the same operations either way.
const PAR_ROWS: usize = 4;

/// `out[r] = rmsnorm(x[r]) · w` for every row `r` of `w.len()` values.
fn rows_norm(x: &[f32], out: &mut [f32], w: &[f32], eps: f32) {
    let d = w.len();
    if x.len() / d < PAR_ROWS {
        for (xr, nr) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
            ops::rmsnorm(xr, w, eps, nr);
        }
    } else {
        x.par_chunks_exact(d)
            .zip(out.par_chunks_exact_mut(d))
            .for_each(|(xr, nr)| ops::rmsnorm(xr, w, eps, nr));
    }
}

/// `x += post_norm(y)` row by row (`y` as it is without a post-norm); `tmp` is scratch of at
/// least `x`'s length.
fn residual(x: &mut [f32], y: &[f32], post_norm: Option<&[f32]>, eps: f32, tmp: &mut [f32]) {
    match post_norm {
        None => x.iter_mut().zip(y).for_each(|(x, y)| *x += y),
        Some(w) => {
            let d = w.len();
            let one = |((xr, yr), nr): ((&mut [f32], &[f32]), &mut [f32])| {
                ops::rmsnorm(yr, w, eps, nr);
                xr.iter_mut().zip(nr.iter()).for_each(|(x, n)| *x += n);
            };
            if x.len() / d < PAR_ROWS {
                x.chunks_exact_mut(d)
                    .zip(y.chunks_exact(d))
                    .zip(tmp.chunks_exact_mut(d))
                    .for_each(one);
            } else {
                x.par_chunks_exact_mut(d)
                    .zip(y.par_chunks_exact(d))
                    .zip(tmp.par_chunks_exact_mut(d))
                    .for_each(one);
            }
        }
    }
}

enum Part {
    Matmul,
    Attention,
}

/// Accumulates time per part when enabled; free otherwise.
struct Clock {
    on: bool,
    t: Option<Instant>,
    matmul: Duration,
    attention: Duration,
}

impl Clock {
    fn new(on: bool) -> Self {
        Clock {
            on,
            t: None,
            matmul: Duration::ZERO,
            attention: Duration::ZERO,
        }
    }
    fn start(&mut self) {
        if self.on {
            self.t = Some(Instant::now());
        }
    }
    /// The split of a pass of `tokens` at `pos` that began at `started`.
    fn profile(&self, tokens: usize, pos: usize, started: Instant) -> StepProfile {
        StepProfile {
            tokens,
            pos,
            total: started.elapsed(),
            matmul: self.matmul,
            attention: self.attention,
        }
    }
    fn stop(&mut self, part: Part) {
        if let Some(t) = self.t.take() {
            match part {
                Part::Matmul => self.matmul += t.elapsed(),
                Part::Attention => self.attention += t.elapsed(),
            }
        }
    }
}

/// `out_i = W_i · x` for several weights sharing the input `x` (rows × cols, row-major);
/// the input is quantized once per distinct activation type.
fn project(
    m: &Model,
    k: &'static Kernels,
    precision: Precision,
    act: &mut Activations,
    x: &[f32],
    outs: &mut [(&WeightRef, &mut Vec<f32>)],
) -> Result<(), TransformerError> {
    match precision {
        Precision::ExactF32 => {
            for (w, out) in outs.iter_mut() {
                m.matrix(k, w).matmul_f32_exact(x, out)?;
            }
        }
        Precision::Quantized => {
            // Group consecutive weights taking the same activation type: quantize once, run
            // their matvecs in one parallel region.
            let mut i = 0;
            while i < outs.len() {
                let act_type = m.matrix(k, outs[i].0).act_type();
                let mut j = i + 1;
                while j < outs.len() && m.matrix(k, outs[j].0).act_type() == act_type {
                    j += 1;
                }
                act.quantize_in(k, act_type, x, m.matrix(k, outs[i].0).cols())?;
                let mut jobs: Vec<(Matrix<'_>, &mut [f32])> = outs[i..j]
                    .iter_mut()
                    .map(|(w, out)| (m.matrix(k, w), out.as_mut_slice()))
                    .collect();
                Matrix::matvec_many(&mut jobs, act)?;
                i = j;
            }
        }
    }
    Ok(())
}

/// Causal multi-head attention with grouped K/V heads for queries at positions
/// `pos..pos + T` (`q`: T × q_dim), over the cache (positions before `pos`) and the batch's
/// own keys and values `new` (T × kv_dim, in the cache's type), each query seeing what its
/// layer's `window` lets it.
#[allow(clippy::too_many_arguments)]
fn attention(
    m: &Model,
    k: &Kernels,
    q: &[f32],
    cache: kv::LayerView<'_>,
    new: KvView<'_>,
    window: Option<usize>,
    pos: usize,
    out: &mut [f32],
) {
    let c = &m.config;
    let (hd, n_heads, kv_dim) = (c.head_dim, c.n_heads, c.kv_dim());
    let group = n_heads / c.n_kv_heads;
    let scale = m.arch.attention_scale;
    let one = |scores: &mut Vec<f32>, (idx, o): (usize, &mut [f32])| {
        let (t, h) = (idx / n_heads, idx % n_heads);
        let offset = (h / group) * hd;
        let (past, rows) = block::visible(window, pos + t, pos);
        let kv = block::HeadKv {
            cache: Rows {
                kv: cache.kv,
                stride: kv_dim,
                offset,
            },
            past: kv::slots(cache.ring, past),
            batch: Rows {
                kv: new,
                stride: kv_dim,
                offset,
            },
            new: rows,
        };
        block::attend_head(
            k,
            &q[t * n_heads * hd + h * hd..][..hd],
            &kv,
            scale,
            scores,
            o,
        );
    };
    let work = out.len() / hd * (pos + out.len() / (n_heads * hd));
    if work * hd < 64 * 1024 || rayon::current_num_threads() == 1 {
        let mut scores = Vec::new();
        out.chunks_exact_mut(hd)
            .enumerate()
            .for_each(|item| one(&mut scores, item));
    } else {
        out.par_chunks_exact_mut(hd)
            .enumerate()
            .for_each_init(Vec::new, one);
    }
}
