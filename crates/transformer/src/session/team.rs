//! One decode step with the pool's threads kept together for the whole pass. The maths of
//! each piece is `block.rs`'s, as in the fork-join path; this module only decides which
//! thread computes which piece, and when.
//!
//! The rayon path forks and joins the pool around each of a layer's four products (about 120
//! times per token for SmolLM2-135M), and a joined worker that has gone idle must be woken for
//! the next one; between products the other threads wait while one computes norms, RoPE and
//! attention. Here a step is one `rayon::broadcast`: every thread of the pool walks the same
//! list of phases (per layer: Q/K/V rows, attention heads, output projection rows, gate/up rows
//! with the gated activation, down projection rows; for an architecture with post-norms, the
//! attention and feed-forward outputs are stored whole and a further phase adds their
//! normalized rows to the residual), takes pieces of each phase from a shared counter —
//! large pieces first, smaller ones towards the end, so a thread running slower or starting
//! late simply takes fewer — and spins only until the phase's last piece is done. The small
//! serial steps (RMSNorm, quantizing a phase's input) are done by every thread that takes part
//! in the phase, from the phase's shared input, rather than by one while the others wait.
//!
//! Vectors shared between threads are `AtomicU32`s holding f32 bits, written and read with
//! relaxed operations (plain moves on x86-64 and aarch64). Each element is written by exactly
//! one piece. A phase's results are read only after its completion counter (release on each
//! piece, acquire by the reader) has reached the phase's size, and only by a thread that holds
//! an unfinished piece of a later phase — which keeps every phase after that one from starting
//! and overwriting them. Every value is computed by the same operations in the same order as
//! in the rayon path, so the logits are the same bits (tested end to end).

use std::ops::Range;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use edgeinfer_kernels::ops;
use edgeinfer_kernels::{Activations, DType, KernelError, Kernels, Matrix};

use super::block::{self, Rows};
use super::kv::{self, KvCache};
use crate::{Model, TransformerError};

/// f32 values shared between the team's threads.
struct Shared(Vec<AtomicU32>);

impl Shared {
    fn new(n: usize) -> Self {
        Shared((0..n).map(|_| AtomicU32::new(0)).collect())
    }
    fn store(&self, at: usize, x: &[f32]) {
        for (a, v) in self.0[at..at + x.len()].iter().zip(x) {
            a.store(v.to_bits(), Ordering::Relaxed);
        }
    }
    fn load(&self, range: Range<usize>, out: &mut Vec<f32>) {
        out.clear();
        out.extend(
            self.0[range]
                .iter()
                .map(|a| f32::from_bits(a.load(Ordering::Relaxed))),
        );
    }
    /// `self[at + i] += x[i]`, by the piece that owns those elements.
    fn add(&self, at: usize, x: &[f32]) {
        for (a, v) in self.0[at..at + x.len()].iter().zip(x) {
            let sum = f32::from_bits(a.load(Ordering::Relaxed)) + v;
            a.store(sum.to_bits(), Ordering::Relaxed);
        }
    }
}

/// A phase's piece counter and completion counter, on a line of their own.
#[repr(align(128))]
#[derive(Default)]
struct Counter {
    next: AtomicUsize,
    done: AtomicUsize,
}

impl Counter {
    /// The next piece of a phase of `total` items: a `threads`-th of half the remainder, at
    /// least `min` items.
    fn claim(&self, total: usize, threads: usize, min: usize) -> Option<Range<usize>> {
        let mut cur = self.next.load(Ordering::Relaxed);
        loop {
            if cur >= total {
                return None;
            }
            let n = ((total - cur) / (2 * threads)).max(min).min(total - cur);
            match self.next.compare_exchange_weak(
                cur,
                cur + n,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(cur..cur + n),
                Err(now) => cur = now,
            }
        }
    }
    fn finish(&self, n: usize) {
        self.done.fetch_add(n, Ordering::Release);
    }
    /// Spin (then yield) until all `total` items are done.
    fn wait(&self, total: usize) {
        let mut spins = 0u32;
        while self.done.load(Ordering::Acquire) < total {
            if spins < 4096 {
                std::hint::spin_loop();
                spins += 1;
            } else {
                std::thread::yield_now();
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Qkv,
    Attention,
    /// Output projection rows: added to the residual, or stored for [`Phase::PostNorm`].
    Output,
    GateUp,
    /// Down projection rows, as [`Phase::Output`].
    Down,
    /// Residual rows plus the post-norm of the stored output (of attention or feed-forward).
    PostNorm(Block),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Block {
    Attention,
    Ffn,
}

/// Smallest piece of a product, in rows.
const MIN_ROWS: usize = 16;

/// One layer's products, resolved against the step's kernel table by each thread when it
/// takes its first piece of the layer (seven table lookups; the products' inner loops call the
/// resolved kernels).
struct LayerMats<'m> {
    q: Matrix<'m>,
    k: Matrix<'m>,
    v: Matrix<'m>,
    o: Matrix<'m>,
    gate: Matrix<'m>,
    up: Matrix<'m>,
    down: Matrix<'m>,
}

impl<'m> LayerMats<'m> {
    fn new(model: &'m Model, kern: &'static Kernels, li: usize) -> Self {
        let l = &model.layers[li];
        let mat = |w| model.matrix(kern, w);
        LayerMats {
            q: mat(&l.wq),
            k: mat(&l.wk),
            v: mat(&l.wv),
            o: mat(&l.wo),
            gate: mat(&l.w_gate),
            up: mat(&l.w_up),
            down: mat(&l.w_down),
        }
    }
}

/// One thread's buffers (reused across steps).
#[derive(Default)]
struct Private {
    x: Vec<f32>,
    xn: Vec<f32>,
    acts: Vec<(DType, Activations)>,
    out: Vec<f32>,
    out2: Vec<f32>,
    /// Per RoPE table, the angles of this step's position.
    sin_cos: Vec<Vec<(f32, f32)>>,
    tmp: Vec<f32>,
    qh: Vec<f32>,
    kh: Vec<f32>,
    vh: Vec<f32>,
    k16: Vec<u16>,
    v16: Vec<u16>,
    scores: Vec<f32>,
    oh: Vec<f32>,
    matmul: Duration,
    attention: Duration,
}

impl Private {
    /// Quantize `self.xn` once for each activation type the matrices take.
    fn quantize_for(&mut self, mats: &[&Matrix<'_>]) -> Result<(), KernelError> {
        let mut used = 0;
        for m in mats {
            let t = m.act_type();
            if self.acts[..used].iter().any(|(d, _)| *d == t) {
                continue;
            }
            if used == self.acts.len() {
                self.acts.push((t, Activations::new()));
            }
            self.acts[used].0 = t;
            self.acts[used]
                .1
                .quantize_in_thread_in(m.kernels(), t, &self.xn, m.cols())?;
            used += 1;
        }
        self.acts.truncate(used);
        Ok(())
    }
}

/// The input quantized to `t` by [`Private::quantize_for`].
fn act_of(acts: &[(DType, Activations)], t: DType) -> Result<&Activations, KernelError> {
    acts.iter()
        .find(|(d, _)| *d == t)
        .map(|(_, a)| a)
        .ok_or(KernelError::Unsupported {
            dtype: t,
            op: "team product without its quantized input",
        })
}

/// The team's shared state for one session.
pub(super) struct Team {
    threads: usize,
    /// The step's phases in order: `(layer, phase)`.
    plan: Vec<(usize, Phase)>,
    counters: Vec<Counter>,
    x: Shared,
    /// A block output awaiting its post-norm (`[d_model]`).
    proj: Shared,
    q: Shared,
    /// Every layer's key and value rows of this step (before bias, norm and RoPE),
    /// `[layer][kv_dim]`.
    k: Shared,
    v: Shared,
    att: Shared,
    ffn: Shared,
    private: Vec<Mutex<Private>>,
}

/// What a step needs from the session besides the team.
pub(super) struct Step<'a> {
    pub model: &'a Model,
    /// The engine's kernel table.
    pub kernels: &'static Kernels,
    pub kv: &'a KvCache,
    pub pos: usize,
    /// Per layer, its attention window.
    pub windows: &'a [Option<usize>],
    /// Per RoPE table, its inverse frequencies.
    pub freqs: &'a [Vec<f32>],
    pub profiling: bool,
}

impl Team {
    pub fn new(model: &Model, threads: usize) -> Self {
        let c = &model.config;
        let mut plan = Vec::new();
        for (li, l) in model.layers.iter().enumerate() {
            plan.extend([
                (li, Phase::Qkv),
                (li, Phase::Attention),
                (li, Phase::Output),
            ]);
            if l.post_attention_norm.is_some() {
                plan.push((li, Phase::PostNorm(Block::Attention)));
            }
            plan.extend([(li, Phase::GateUp), (li, Phase::Down)]);
            if l.post_ffn_norm.is_some() {
                plan.push((li, Phase::PostNorm(Block::Ffn)));
            }
        }
        Team {
            threads,
            counters: plan.iter().map(|_| Counter::default()).collect(),
            plan,
            x: Shared::new(c.d_model),
            proj: Shared::new(c.d_model),
            q: Shared::new(c.q_dim()),
            k: Shared::new(c.n_layers * c.kv_dim()),
            v: Shared::new(c.n_layers * c.kv_dim()),
            att: Shared::new(c.q_dim()),
            ffn: Shared::new(c.d_ff),
            private: (0..threads).map(|_| Mutex::default()).collect(),
        }
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Run every layer for the token whose embedding is `x` (updated in place to the last
    /// layer's output). Returns the time thread 0 spent in products and in attention (when
    /// profiling). The step's keys and values are not in the cache yet: see
    /// [`Team::append_kv`].
    pub fn run(
        &self,
        step: &Step<'_>,
        x: &mut [f32],
    ) -> Result<(Duration, Duration), TransformerError> {
        for c in &self.counters {
            c.next.store(0, Ordering::Relaxed);
            c.done.store(0, Ordering::Relaxed);
        }
        self.x.store(0, x);
        let results = rayon::broadcast(|ctx| self.work(step, ctx.index()));
        for r in results {
            r?;
        }
        let mut buf = Vec::with_capacity(x.len());
        self.x.load(0..x.len(), &mut buf);
        x.copy_from_slice(&buf);
        let p = self.private[0].lock().expect("team scratch");
        Ok((p.matmul, p.attention))
    }

    /// Append the last step's keys and values to `kv` as the fork-join path does (bias,
    /// norm and RoPE for position `pos` by [`block::finish_token`]'s maths).
    pub fn append_kv(
        &self,
        kern: &Kernels,
        m: &Model,
        freqs: &[Vec<f32>],
        pos: usize,
        max_ctx: usize,
        kv: &mut KvCache,
    ) {
        let c = &m.config;
        let (hd, kvd) = (c.head_dim, c.kv_dim());
        // Thread 0's buffers, idle between steps.
        let mut guard = self.private[0].lock().expect("team scratch");
        let p = &mut *guard;
        p.sin_cos.resize_with(freqs.len(), Vec::new);
        for (a, f) in p.sin_cos.iter_mut().zip(freqs) {
            ops::rope_angles(f, pos, a);
        }
        for (li, layer) in m.layers.iter().enumerate() {
            self.k.load(li * kvd..(li + 1) * kvd, &mut p.kh);
            self.v.load(li * kvd..(li + 1) * kvd, &mut p.vh);
            let angles = &p.sin_cos[m.arch.layers[li].rope];
            for (g, (kh, vh)) in
                p.kh.chunks_exact_mut(hd)
                    .zip(p.vh.chunks_exact_mut(hd))
                    .enumerate()
            {
                block::finish_k_head(m, layer, g, kh, angles, &mut p.tmp);
                block::finish_v_head(layer, g, vh);
            }
            let rows = kv::encode(kern, kv.kv_type(), &p.kh, &p.vh, &mut p.k16, &mut p.v16);
            kv.write(li, pos, rows, kvd, max_ctx);
        }
    }

    /// One thread's walk through the phases.
    fn work(&self, step: &Step<'_>, index: usize) -> Result<(), TransformerError> {
        let mut guard = self.private[index].lock().expect("team scratch");
        let p = &mut *guard;
        p.matmul = Duration::ZERO;
        p.attention = Duration::ZERO;
        let c = &step.model.config;
        p.sin_cos.resize_with(step.freqs.len(), Vec::new);
        for (a, f) in p.sin_cos.iter_mut().zip(step.freqs) {
            ops::rope_angles(f, step.pos, a);
        }
        let mut first_error = None;
        let mut mats: Option<(usize, LayerMats<'_>)> = None;
        for (&(li, phase), counter) in self.plan.iter().zip(&self.counters) {
            let (total, min) = match phase {
                Phase::Qkv => (c.q_dim() + 2 * c.kv_dim(), MIN_ROWS),
                Phase::Attention => (c.n_heads, 1),
                Phase::Output | Phase::Down | Phase::PostNorm(_) => (c.d_model, MIN_ROWS),
                Phase::GateUp => (c.d_ff, MIN_ROWS),
            };
            let mut prepared = false;
            while let Some(r) = counter.claim(total, self.threads, min) {
                let n = r.len();
                let t = step.profiling.then(Instant::now);
                if mats.as_ref().is_none_or(|(l, _)| *l != li) {
                    mats = Some((li, LayerMats::new(step.model, step.kernels, li)));
                }
                let w = &mats.as_ref().expect("just resolved").1;
                let res = if prepared {
                    Ok(())
                } else {
                    self.prepare(step, li, w, phase, p)
                }
                .and_then(|()| {
                    prepared = true;
                    self.piece(step, li, w, phase, r, p)
                });
                counter.finish(n);
                if let Some(t) = t {
                    match phase {
                        Phase::Attention => p.attention += t.elapsed(),
                        _ => p.matmul += t.elapsed(),
                    }
                }
                if let Err(e) = res {
                    first_error.get_or_insert(e);
                }
            }
            counter.wait(total);
        }
        first_error.map_or(Ok(()), Err)
    }

    /// A thread's set-up for the pieces it takes of a phase: its copy of the phase's input.
    fn prepare(
        &self,
        step: &Step<'_>,
        li: usize,
        w: &LayerMats<'_>,
        phase: Phase,
        p: &mut Private,
    ) -> Result<(), TransformerError> {
        let m = step.model;
        let c = &m.config;
        let layer = &m.layers[li];
        match phase {
            Phase::Qkv | Phase::GateUp => {
                self.x.load(0..c.d_model, &mut p.x);
                let norm = match phase {
                    Phase::Qkv => &layer.attn_norm,
                    _ => &layer.ffn_norm,
                };
                p.xn.resize(c.d_model, 0.0);
                ops::rmsnorm(&p.x, norm, c.rms_eps, &mut p.xn);
                match phase {
                    Phase::Qkv => p.quantize_for(&[&w.q, &w.k, &w.v])?,
                    _ => p.quantize_for(&[&w.gate, &w.up])?,
                }
            }
            Phase::Output => {
                self.att.load(0..c.q_dim(), &mut p.xn);
                p.quantize_for(&[&w.o])?;
            }
            Phase::Down => {
                self.ffn.load(0..c.d_ff, &mut p.xn);
                p.quantize_for(&[&w.down])?;
            }
            Phase::PostNorm(b) => {
                let norm = match b {
                    Block::Attention => layer.post_attention_norm.as_deref(),
                    Block::Ffn => layer.post_ffn_norm.as_deref(),
                }
                .expect("planned only for layers with the norm");
                self.proj.load(0..c.d_model, &mut p.xn);
                p.out2.resize(c.d_model, 0.0);
                ops::rmsnorm(&p.xn, norm, c.rms_eps, &mut p.out2);
            }
            Phase::Attention => {}
        }
        Ok(())
    }

    /// Items `r` of a phase: rows of its products, or query heads.
    #[allow(clippy::too_many_arguments)]
    fn piece(
        &self,
        step: &Step<'_>,
        li: usize,
        w: &LayerMats<'_>,
        phase: Phase,
        r: Range<usize>,
        p: &mut Private,
    ) -> Result<(), TransformerError> {
        let c = &step.model.config;
        let kvd = c.kv_dim();
        match phase {
            Phase::Qkv => {
                let parts = [
                    (&w.q, 0, &self.q, 0),
                    (&w.k, c.q_dim(), &self.k, li * kvd),
                    (&w.v, c.q_dim() + kvd, &self.v, li * kvd),
                ];
                for (mat, start, dst, at) in parts {
                    let lo = r.start.max(start);
                    let hi = r.end.min(start + mat.rows());
                    if lo < hi {
                        p.out.resize(hi - lo, 0.0);
                        mat.matvec_rows_in_thread(
                            act_of(&p.acts, mat.act_type())?,
                            lo - start,
                            &mut p.out,
                        )?;
                        dst.store(at + lo - start, &p.out);
                    }
                }
            }
            Phase::Output | Phase::Down => {
                let mat = if phase == Phase::Output {
                    &w.o
                } else {
                    &w.down
                };
                p.out.resize(r.len(), 0.0);
                mat.matvec_rows_in_thread(act_of(&p.acts, mat.act_type())?, r.start, &mut p.out)?;
                let layer = &step.model.layers[li];
                let post_norm = if phase == Phase::Output {
                    layer.post_attention_norm.is_some()
                } else {
                    layer.post_ffn_norm.is_some()
                };
                if post_norm {
                    self.proj.store(r.start, &p.out);
                } else {
                    self.x.add(r.start, &p.out);
                }
            }
            Phase::PostNorm(_) => self.x.add(r.start, &p.out2[r]),
            Phase::GateUp => {
                p.out.resize(r.len(), 0.0);
                p.out2.resize(r.len(), 0.0);
                w.gate.matvec_rows_in_thread(
                    act_of(&p.acts, w.gate.act_type())?,
                    r.start,
                    &mut p.out,
                )?;
                w.up.matvec_rows_in_thread(
                    act_of(&p.acts, w.up.act_type())?,
                    r.start,
                    &mut p.out2,
                )?;
                block::gated(step.model.arch.ffn, &mut p.out, &p.out2);
                self.ffn.store(r.start, &p.out);
            }
            Phase::Attention => {
                for h in r {
                    self.head(step, li, h, p);
                }
            }
        }
        Ok(())
    }

    /// Query head `h` of layer `li` over the cached positions and this step's key and value.
    fn head(&self, step: &Step<'_>, li: usize, h: usize, p: &mut Private) {
        let m = step.model;
        let c = &m.config;
        let layer = &m.layers[li];
        let (hd, kvd) = (c.head_dim, c.kv_dim());
        let g = h / (c.n_heads / c.n_kv_heads);
        let angles = &p.sin_cos[m.arch.layers[li].rope];
        self.q.load(h * hd..(h + 1) * hd, &mut p.qh);
        block::finish_q_head(m, layer, h, &mut p.qh, angles, &mut p.tmp);
        let kv_head = li * kvd + g * hd..li * kvd + (g + 1) * hd;
        self.k.load(kv_head.clone(), &mut p.kh);
        self.v.load(kv_head, &mut p.vh);
        block::finish_k_head(m, layer, g, &mut p.kh, angles, &mut p.tmp);
        block::finish_v_head(layer, g, &mut p.vh);
        let cache = step.kv.layer(li);
        let current = kv::encode(
            step.kernels,
            step.kv.kv_type(),
            &p.kh,
            &p.vh,
            &mut p.k16,
            &mut p.v16,
        );
        let (past, new) = block::visible(step.windows[li], step.pos, step.pos);
        p.oh.resize(hd, 0.0);
        let kv = block::HeadKv {
            cache: Rows {
                kv: cache.kv,
                stride: kvd,
                offset: g * hd,
            },
            past: kv::slots(cache.ring, past),
            batch: Rows {
                kv: current,
                stride: hd,
                offset: 0,
            },
            new,
        };
        block::attend_head(
            step.kernels,
            &p.qh,
            &kv,
            m.arch.attention_scale,
            &mut p.scores,
            &mut p.oh,
        );
        self.att.store(h * hd, &p.oh);
    }
}
