//! The maths of a block, in the pieces both executors are made of: the fork-join path
//! (`Session::layers`, whole rows of a batch per step) and the decode team (`team.rs`, pieces
//! of one token's step spread over threads) call these same functions, so a value is computed
//! by the same operations in the same order whichever runs it. Each function branches on the
//! architecture's description once per call (a head, a row range), never per element.

use std::ops::Range;

use edgeinfer_kernels::{ops, Kernels};

use super::kv::KvView;
use crate::arch::FfnActivation;
use crate::model::Layer;
use crate::Model;

/// Query head `h` (its `head_dim` values) made ready for attention: plus bias, per-head
/// RMSNorm, rotated by `sin_cos` (the angles of its position in its layer's RoPE table).
/// `tmp` is scratch.
pub(super) fn finish_q_head(
    m: &Model,
    layer: &Layer,
    h: usize,
    q: &mut [f32],
    sin_cos: &[(f32, f32)],
    tmp: &mut Vec<f32>,
) {
    finish_head(m, layer.bq.as_deref(), layer.q_norm.as_deref(), h, q, tmp);
    ops::rope_with(q, m.config.head_dim, sin_cos, m.arch.rope_style);
}

/// Key head `g` made ready for the cache, as [`finish_q_head`].
pub(super) fn finish_k_head(
    m: &Model,
    layer: &Layer,
    g: usize,
    k: &mut [f32],
    sin_cos: &[(f32, f32)],
    tmp: &mut Vec<f32>,
) {
    finish_head(m, layer.bk.as_deref(), layer.k_norm.as_deref(), g, k, tmp);
    ops::rope_with(k, m.config.head_dim, sin_cos, m.arch.rope_style);
}

/// Value head `g`: plus bias.
pub(super) fn finish_v_head(layer: &Layer, g: usize, v: &mut [f32]) {
    add_bias(v, layer.bv.as_deref(), g);
}

fn finish_head(
    m: &Model,
    bias: Option<&[f32]>,
    norm: Option<&[f32]>,
    h: usize,
    x: &mut [f32],
    tmp: &mut Vec<f32>,
) {
    add_bias(x, bias, h);
    if let Some(w) = norm {
        tmp.clear();
        tmp.extend_from_slice(x);
        ops::rmsnorm(tmp, w, m.config.rms_eps, x);
    }
}

/// `x += bias[head h]` (heads of `x.len()` values).
fn add_bias(x: &mut [f32], bias: Option<&[f32]>, h: usize) {
    if let Some(b) = bias {
        let hd = x.len();
        x.iter_mut()
            .zip(&b[h * hd..(h + 1) * hd])
            .for_each(|(x, y)| *x += y);
    }
}

/// Every head of one token's Q, K and V (`n_heads × head_dim`, `n_kv_heads × head_dim`).
pub(super) fn finish_token(
    m: &Model,
    layer: &Layer,
    q: &mut [f32],
    k: &mut [f32],
    v: &mut [f32],
    sin_cos: &[(f32, f32)],
    tmp: &mut Vec<f32>,
) {
    let hd = m.config.head_dim;
    for (h, qh) in q.chunks_exact_mut(hd).enumerate() {
        finish_q_head(m, layer, h, qh, sin_cos, tmp);
    }
    for (g, (kh, vh)) in k
        .chunks_exact_mut(hd)
        .zip(v.chunks_exact_mut(hd))
        .enumerate()
    {
        finish_k_head(m, layer, g, kh, sin_cos, tmp);
        finish_v_head(layer, g, vh);
    }
}

/// The feed-forward's gated activation, in place: `gate[i] = act(gate[i]) · up[i]`.
pub(super) fn gated(act: FfnActivation, gate: &mut [f32], up: &[f32]) {
    match act {
        FfnActivation::Silu => ops::swiglu(gate, up),
        FfnActivation::GeluTanh => gate
            .iter_mut()
            .zip(up)
            .for_each(|(g, &u)| *g = ops::gelu(*g) * u),
    }
}

/// The cached positions and the batch rows a query at position `p` attends to, when the
/// batch's first position is `pos0` (the cache holds the positions before it): with a window
/// w, positions `(p − w, p]`, as llama.cpp's standard sliding-window mask.
pub(super) fn visible(
    window: Option<usize>,
    p: usize,
    pos0: usize,
) -> (Range<usize>, Range<usize>) {
    let lo = window.map_or(0, |w| (p + 1).saturating_sub(w));
    (lo.min(pos0)..pos0, lo.max(pos0) - pos0..p + 1 - pos0)
}

/// Rows of keys and values: row r's head at `r * stride + offset`.
#[derive(Clone, Copy)]
pub(super) struct Rows<'a> {
    pub kv: KvView<'a>,
    pub stride: usize,
    pub offset: usize,
}

/// What one query head attends over: slot runs `past` (in position order) of the cache, then
/// rows `new` of the batch's own keys and values.
pub(super) struct HeadKv<'a> {
    pub cache: Rows<'a>,
    pub past: [Range<usize>; 2],
    pub batch: Rows<'a>,
    pub new: Range<usize>,
}

/// Softmax-weighted sum of the values for one query head `qh` over `kv`, with the dot and axpy
/// kernels of table `k` (`scores` is scratch, reused).
pub(super) fn attend_head(
    k: &Kernels,
    qh: &[f32],
    kv: &HeadKv<'_>,
    scale: f32,
    scores: &mut Vec<f32>,
    o: &mut [f32],
) {
    let hd = qh.len();
    let runs = [
        (kv.cache, kv.past[0].clone()),
        (kv.cache, kv.past[1].clone()),
        (kv.batch, kv.new.clone()),
    ];
    scores.clear();
    for (rows, run) in runs.iter() {
        let at = |s: usize| s * rows.stride + rows.offset..s * rows.stride + rows.offset + hd;
        match rows.kv {
            KvView::F16(keys, _) => {
                scores.extend(run.clone().map(|s| k.dot_f32_f16(qh, &keys[at(s)]) * scale))
            }
            KvView::F32(keys, _) => {
                scores.extend(run.clone().map(|s| k.dot_f32(qh, &keys[at(s)]) * scale))
            }
        }
    }
    ops::softmax(scores);
    o.fill(0.0);
    let mut weights = scores.iter();
    for (rows, run) in runs {
        let at = |s: usize| s * rows.stride + rows.offset..s * rows.stride + rows.offset + hd;
        match rows.kv {
            KvView::F16(_, v) => run
                .zip(weights.by_ref())
                .for_each(|(s, &w)| k.axpy_f16(w, &v[at(s)], o)),
            KvView::F32(_, v) => run
                .zip(weights.by_ref())
                .for_each(|(s, &w)| k.axpy(w, &v[at(s)], o)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::visible;

    #[test]
    fn window_sees_the_last_w_positions_including_itself() {
        // global: everything cached, then the batch up to itself
        assert_eq!(visible(None, 7, 5), (0..5, 0..3));
        // window 4 at p = 7: positions 4..=7, i.e. cached 4 and batch rows 0..3 (5, 6, 7)
        assert_eq!(visible(Some(4), 7, 5), (4..5, 0..3));
        // far into a batch: nothing cached is visible
        assert_eq!(visible(Some(2), 9, 5), (5..5, 3..5));
        // decode: one new row
        assert_eq!(visible(Some(3), 10, 10), (8..10, 0..1));
        assert_eq!(visible(Some(3), 1, 1), (0..1, 0..1));
    }
}
