//! One conversation's state over a shared [`Model`]: the KV cache and scratch buffers, and the
//! forward pass.
//!
//! KV cache: per layer `[position][kv_head][head_dim]`, grown as positions are used (no
//! up-front allocation for the full context). f16 by default, as llama.cpp: it halves the
//! cache (SmolLM2: 23 KB instead of 46 KB per token, 14 MB instead of 28 MB at 600 tokens) and
//! the bytes attention reads, for a logit change far below the 8-bit activation rounding.
//! [`Precision::ExactF32`] uses an f32 cache, so the exact path matches an f32 reference.

use edgeinfer_kernels::ops::{self, rope_freqs};
use std::time::{Duration, Instant};

use edgeinfer_kernels::{Activations, Matrix};
use rayon::prelude::*;

use crate::model::WeightRef;
use crate::{Model, TransformerError};

mod team;

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
    att: Vec<f32>,
    proj: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    act: Activations,
}

/// Element type of the KV cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvType {
    F16,
    F32,
}

/// Per layer `[n_past × kv_dim]` keys and values, in one element type.
enum KvCache {
    F16 { k: Vec<Vec<u16>>, v: Vec<Vec<u16>> },
    F32 { k: Vec<Vec<f32>>, v: Vec<Vec<f32>> },
}

impl KvCache {
    fn new(t: KvType, layers: usize) -> Self {
        match t {
            KvType::F16 => KvCache::F16 {
                k: vec![Vec::new(); layers],
                v: vec![Vec::new(); layers],
            },
            KvType::F32 => KvCache::F32 {
                k: vec![Vec::new(); layers],
                v: vec![Vec::new(); layers],
            },
        }
    }
    fn truncate(&mut self, len: usize) {
        match self {
            KvCache::F16 { k, v } => k
                .iter_mut()
                .chain(v.iter_mut())
                .for_each(|c| c.truncate(len)),
            KvCache::F32 { k, v } => k
                .iter_mut()
                .chain(v.iter_mut())
                .for_each(|c| c.truncate(len)),
        }
    }
    fn bytes(&self) -> usize {
        match self {
            KvCache::F16 { k, v } => k.iter().chain(v).map(|c| c.len() * 2).sum(),
            KvCache::F32 { k, v } => k.iter().chain(v).map(|c| c.len() * 4).sum(),
        }
    }
    fn append(&mut self, layer: usize, keys: &[f32], values: &[f32]) {
        match self {
            KvCache::F16 { k, v } => {
                ops::extend_f16(&mut k[layer], keys);
                ops::extend_f16(&mut v[layer], values);
            }
            KvCache::F32 { k, v } => {
                k[layer].extend_from_slice(keys);
                v[layer].extend_from_slice(values);
            }
        }
    }
    fn layer(&self, layer: usize) -> KvView<'_> {
        match self {
            KvCache::F16 { k, v } => KvView::F16(&k[layer], &v[layer]),
            KvCache::F32 { k, v } => KvView::F32(&k[layer], &v[layer]),
        }
    }
}

#[derive(Clone, Copy)]
enum KvView<'a> {
    F16(&'a [u16], &'a [u16]),
    F32(&'a [f32], &'a [f32]),
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

/// A decoding session: owns its KV cache, borrows the model.
pub struct Session<'m> {
    model: &'m Model,
    max_ctx: usize,
    precision: Precision,
    kv: KvCache,
    n_past: usize,
    freqs: Vec<f32>,
    s: Scratch,
    profiling: bool,
    profile: StepProfile,
    /// Decode steps run on a [`team::Team`] when the pool has several threads.
    use_team: bool,
    team: Option<team::Team<'m>>,
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

impl<'m> Session<'m> {
    /// A session that can hold `max_ctx` positions (at most the model's context length).
    pub fn new(model: &'m Model, max_ctx: usize) -> Self {
        let c = &model.config;
        Session {
            model,
            max_ctx: max_ctx.min(c.context_length).max(1),
            precision: Precision::Quantized,
            kv: KvCache::new(KvType::F16, c.n_layers),
            n_past: 0,
            freqs: rope_freqs(c.rope_dim, c.rope_base),
            s: Scratch::default(),
            profiling: false,
            profile: StepProfile::default(),
            use_team: std::env::var_os("EDGEINFER_DECODE").is_none_or(|v| v != "fork-join"),
            team: None,
        }
    }

    /// Whether single-token steps with several threads keep the pool together for the whole
    /// pass (default; the environment variable `EDGEINFER_DECODE=fork-join` turns it off) or
    /// fork and join it around each product. Both give the same logits, bit for bit. A team
    /// step is a `rayon::broadcast`, so it returns only after every thread of the pool has run
    /// its part (taking whatever pieces are left, possibly none): in a pool whose threads may
    /// block outside rayon (on a channel, say), turn the team off.
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
        self.kv = KvCache::new(t, self.model.config.n_layers);
        self.n_past = 0;
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
    pub fn model(&self) -> &'m Model {
        self.model
    }
    /// Positions currently in the cache.
    pub fn n_past(&self) -> usize {
        self.n_past
    }
    /// Capacity in positions.
    pub fn max_ctx(&self) -> usize {
        self.max_ctx
    }
    /// Forget everything after the first `n` positions (n ≤ n_past).
    pub fn truncate(&mut self, n: usize) {
        let n = n.min(self.n_past);
        self.kv.truncate(n * self.model.config.kv_dim());
        self.n_past = n;
    }
    /// Bytes the KV cache holds now.
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
        let m = self.model;
        let c = &m.config;
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
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= c.vocab_size) {
            return Err(TransformerError::BadToken {
                id: bad,
                vocab: c.vocab_size,
            });
        }
        self.truncate(pos);
        if tokens.len() <= MAX_BATCH {
            return self.forward_batch(tokens, pos, which);
        }
        // Long inputs run in micro-batches: scratch memory stays bounded by MAX_BATCH, and
        // the weights re-read per micro-batch cost little next to the batch's compute.
        let started = Instant::now();
        let mut total = StepProfile::default();
        let mut logits = Vec::new();
        let n = tokens.len();
        for start in (0..n).step_by(MAX_BATCH) {
            let end = (start + MAX_BATCH).min(n);
            let want = match which {
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
        if self.profiling {
            self.profile = StepProfile {
                tokens: n,
                pos,
                total: started.elapsed(),
                ..total
            };
        }
        Ok(logits)
    }

    fn forward_batch(
        &mut self,
        tokens: &[u32],
        pos: usize,
        which: Logits,
    ) -> Result<Vec<f32>, TransformerError> {
        self.forward_batch_inner(tokens, pos, Some(which))
    }

    /// One micro-batch (validated by the caller); `which: None` computes no logits.
    fn forward_batch_inner(
        &mut self,
        tokens: &[u32],
        pos: usize,
        which: Option<Logits>,
    ) -> Result<Vec<f32>, TransformerError> {
        let m = self.model;
        let c = &m.config;
        let started = Instant::now();
        let mut clock = Clock::new(self.profiling);
        let (t_n, d) = (tokens.len(), c.d_model);
        let s = &mut self.s;
        s.x.resize(t_n * d, 0.0);
        let emb = m.matrix(&m.token_embd);
        for (row, &tok) in s.x.chunks_exact_mut(d).zip(tokens) {
            emb.dequantize_row(tok as usize, row)?;
        }
        let threads = rayon::current_num_threads();
        if t_n == 1 && self.use_team && threads > 1 && self.precision == Precision::Quantized {
            if self.team.as_ref().is_none_or(|t| t.threads() != threads) {
                self.team = Some(team::Team::new(m, threads));
            }
            let team = self.team.as_ref().expect("just built");
            let step = team::Step {
                model: m,
                kv: &self.kv,
                pos,
                freqs: &self.freqs,
                profiling: self.profiling,
            };
            let (matmul, attention) = team.run(&step, &mut s.x)?;
            team.append_kv(m, &self.freqs, pos, &mut self.kv);
            clock.matmul = matmul;
            clock.attention = attention;
        } else {
            self.layers(t_n, pos, &mut clock)?;
        }
        let s = &mut self.s;
        self.n_past = pos + t_n;

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
        let rows = t_n - first;
        s.xn.resize(rows * d, 0.0);
        for (xr, nr) in s.x[first * d..]
            .chunks_exact(d)
            .zip(s.xn.chunks_exact_mut(d))
        {
            ops::rmsnorm(xr, &m.output_norm, c.rms_eps, nr);
        }
        let mut logits = vec![0.0f32; rows * c.vocab_size];
        clock.start();
        project(
            m,
            self.precision,
            &mut s.act,
            &s.xn,
            &mut [(&m.output, &mut logits)],
        )?;
        clock.stop(Part::Matmul);
        if self.profiling {
            self.profile = clock.profile(t_n, pos, started);
        }
        Ok(logits)
    }

    /// Every layer for `t_n` tokens at `pos..`, forking the pool around each product.
    fn layers(
        &mut self,
        t_n: usize,
        pos: usize,
        clock: &mut Clock,
    ) -> Result<(), TransformerError> {
        let m = self.model;
        let c = &m.config;
        let d = c.d_model;
        let s = &mut self.s;
        for (li, layer) in m.layers.iter().enumerate() {
            // --- attention
            s.xn.resize(t_n * d, 0.0);
            for (xr, nr) in s.x.chunks_exact(d).zip(s.xn.chunks_exact_mut(d)) {
                ops::rmsnorm(xr, &layer.attn_norm, c.rms_eps, nr);
            }
            s.q.resize(t_n * c.q_dim(), 0.0);
            s.k.resize(t_n * c.kv_dim(), 0.0);
            s.v.resize(t_n * c.kv_dim(), 0.0);
            clock.start();
            project(
                m,
                self.precision,
                &mut s.act,
                &s.xn,
                &mut [
                    (&layer.wq, &mut s.q),
                    (&layer.wk, &mut s.k),
                    (&layer.wv, &mut s.v),
                ],
            )?;
            clock.stop(Part::Matmul);
            for (buf, bias) in [
                (&mut s.q, &layer.bq),
                (&mut s.k, &layer.bk),
                (&mut s.v, &layer.bv),
            ] {
                if let Some(b) = bias {
                    for row in buf.chunks_exact_mut(b.len()) {
                        row.iter_mut().zip(b).for_each(|(x, y)| *x += y);
                    }
                }
            }
            for t in 0..t_n {
                let p = pos + t;
                ops::rope(
                    &mut s.q[t * c.q_dim()..(t + 1) * c.q_dim()],
                    c.head_dim,
                    &self.freqs,
                    p,
                    c.rope_style,
                );
                ops::rope(
                    &mut s.k[t * c.kv_dim()..(t + 1) * c.kv_dim()],
                    c.head_dim,
                    &self.freqs,
                    p,
                    c.rope_style,
                );
            }
            self.kv.append(li, &s.k, &s.v);
            s.att.resize(t_n * c.q_dim(), 0.0);
            clock.start();
            attention(m, &s.q, self.kv.layer(li), pos, &mut s.att);
            clock.stop(Part::Attention);
            s.proj.resize(t_n * d, 0.0);
            clock.start();
            project(
                m,
                self.precision,
                &mut s.act,
                &s.att,
                &mut [(&layer.wo, &mut s.proj)],
            )?;
            clock.stop(Part::Matmul);
            s.x.iter_mut().zip(&s.proj).for_each(|(x, p)| *x += p);

            // --- feed-forward (SwiGLU)
            for (xr, nr) in s.x.chunks_exact(d).zip(s.xn.chunks_exact_mut(d)) {
                ops::rmsnorm(xr, &layer.ffn_norm, c.rms_eps, nr);
            }
            s.gate.resize(t_n * c.d_ff, 0.0);
            s.up.resize(t_n * c.d_ff, 0.0);
            clock.start();
            project(
                m,
                self.precision,
                &mut s.act,
                &s.xn,
                &mut [(&layer.w_gate, &mut s.gate), (&layer.w_up, &mut s.up)],
            )?;
            clock.stop(Part::Matmul);
            ops::swiglu(&mut s.gate, &s.up);
            clock.start();
            project(
                m,
                self.precision,
                &mut s.act,
                &s.gate,
                &mut [(&layer.w_down, &mut s.proj)],
            )?;
            clock.stop(Part::Matmul);
            s.x.iter_mut().zip(&s.proj).for_each(|(x, p)| *x += p);
        }
        Ok(())
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
    precision: Precision,
    act: &mut Activations,
    x: &[f32],
    outs: &mut [(&WeightRef, &mut Vec<f32>)],
) -> Result<(), TransformerError> {
    match precision {
        Precision::ExactF32 => {
            for (w, out) in outs.iter_mut() {
                m.matrix(w).matmul_f32_exact(x, out)?;
            }
        }
        Precision::Quantized => {
            // Group consecutive weights taking the same activation type: quantize once, run
            // their matvecs in one parallel region.
            let mut i = 0;
            while i < outs.len() {
                let act_type = m.matrix(outs[i].0).act_type();
                let mut j = i + 1;
                while j < outs.len() && m.matrix(outs[j].0).act_type() == act_type {
                    j += 1;
                }
                act.quantize(act_type, x, m.matrix(outs[i].0).cols())?;
                let mut jobs: Vec<(Matrix<'_>, &mut [f32])> = outs[i..j]
                    .iter_mut()
                    .map(|(w, out)| (m.matrix(w), out.as_mut_slice()))
                    .collect();
                Matrix::matvec_many(&mut jobs, act)?;
                i = j;
            }
        }
    }
    Ok(())
}

/// Causal multi-head attention with grouped K/V heads for queries at positions
/// `pos..pos + T` over the cache (`[n_ctx × kv_dim]`, already holding those positions).
fn attention(m: &Model, q: &[f32], kv: KvView<'_>, pos: usize, out: &mut [f32]) {
    let c = &m.config;
    let (hd, n_heads, kv_dim) = (c.head_dim, c.n_heads, c.kv_dim());
    let group = n_heads / c.n_kv_heads;
    let scale = 1.0 / (hd as f32).sqrt();
    let one = |scores: &mut Vec<f32>, (idx, o): (usize, &mut [f32])| {
        let (t, h) = (idx / n_heads, idx % n_heads);
        let head = HeadKv {
            cache: kv,
            n_cached: pos + t + 1,
            stride: kv_dim,
            offset: (h / group) * hd,
            current: None,
        };
        attend_head(
            &q[t * n_heads * hd + h * hd..][..hd],
            &head,
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

/// What one query head attends over: `n_cached` positions of its K/V head in the cache (rows
/// of `stride` values, the head's at `offset`), then, if given, the current position's key
/// and value (one head each) held outside the cache.
struct HeadKv<'a> {
    cache: KvView<'a>,
    n_cached: usize,
    stride: usize,
    offset: usize,
    current: Option<KvView<'a>>,
}

/// Softmax-weighted sum of the values for one query head (`scores` is scratch, reused).
fn attend_head(qh: &[f32], kv: &HeadKv<'_>, scale: f32, scores: &mut Vec<f32>, o: &mut [f32]) {
    let hd = qh.len();
    let at = |s: usize| s * kv.stride + kv.offset..s * kv.stride + kv.offset + hd;
    let n = kv.n_cached;
    scores.clear();
    match kv.cache {
        KvView::F16(k, _) => scores.extend((0..n).map(|s| ops::dot_f16(qh, &k[at(s)]) * scale)),
        KvView::F32(k, _) => scores.extend((0..n).map(|s| ops::dot(qh, &k[at(s)]) * scale)),
    }
    match kv.current {
        Some(KvView::F16(k, _)) => scores.push(ops::dot_f16(qh, k) * scale),
        Some(KvView::F32(k, _)) => scores.push(ops::dot(qh, k) * scale),
        None => {}
    }
    ops::softmax(scores);
    o.fill(0.0);
    match kv.cache {
        KvView::F16(_, v) => (0..n).for_each(|s| ops::axpy_f16(scores[s], &v[at(s)], o)),
        KvView::F32(_, v) => (0..n).for_each(|s| ops::axpy(scores[s], &v[at(s)], o)),
    }
    match kv.current {
        Some(KvView::F16(_, v)) => ops::axpy_f16(scores[n], v, o),
        Some(KvView::F32(_, v)) => ops::axpy(scores[n], v, o),
        None => {}
    }
}
