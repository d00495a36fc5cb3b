//! The LSTM recurrence of one direction over a padded batch as a single candle op with a
//! hand-written backward pass (backpropagation through time).
//!
//! Why not candle's autodiff over a per-step loop: slicing step `t` out of the `[B, T, 4H]`
//! input projection is a `narrow`, whose backward pads the step's gradient back to the full
//! tensor, so a sequence of T steps costs O(T²·B·H) in the backward pass. Measured on IMDB
//! (B = 128, T = 200, H = 64, two cores): over 5 s per batch, against well under a second with
//! this op. The op is checked against central finite differences in `tests/gradcheck.rs`.
//!
//! Inputs: `xp` `[B, T, 4H]` (input projection plus both biases), `w_hh` `[4H, H]`.
//! Output: `[B, T, H]`, the hidden state after each position; at padding positions
//! (`pos ≥ len[b]`) the state is carried unchanged, so the forward direction's final state is at
//! `T - 1` and the reverse direction's at 0.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp2, Error, Layout, Result, Shape, Tensor};
use num_traits::Float;
use rayon::prelude::*;

/// The op: sequence lengths and direction.
pub struct Recurrence {
    pub lens: Arc<Vec<usize>>,
    pub reverse: bool,
}

fn sigmoid<T: Float>(x: T) -> T {
    T::one() / (T::one() + (-x).exp())
}

/// Per position of one sequence: gates (i, f, g, o after their non-linearity), cell before and
/// after, hidden before.
struct Saved<T> {
    gates: Vec<T>,
    c_prev: Vec<T>,
    c_new: Vec<T>,
    h_prev: Vec<T>,
}

/// Forward over one sequence; writes `out` (`T × H`) and, if asked, what backward needs.
/// `wt` is `W_hhᵀ` (`H × 4H`).
fn forward_seq<T: Float>(
    xp: &[T],
    wt: &[T],
    len: usize,
    hs: usize,
    reverse: bool,
    out: &mut [T],
    mut saved: Option<&mut Saved<T>>,
) {
    let t_len = out.len() / hs;
    let mut h = vec![T::zero(); hs];
    let mut c = vec![T::zero(); hs];
    let mut z = vec![T::zero(); 4 * hs];
    for s in 0..t_len {
        let pos = if reverse { t_len - 1 - s } else { s };
        if pos < len {
            // z = xp + W·h as a sum of columns (axpy form: vectorizes without reassociating).
            z.copy_from_slice(&xp[pos * 4 * hs..(pos + 1) * 4 * hs]);
            for (j, &hj) in h.iter().enumerate() {
                let col = &wt[j * 4 * hs..(j + 1) * 4 * hs];
                for (zk, &wk) in z.iter_mut().zip(col) {
                    *zk = *zk + wk * hj;
                }
            }
            if let Some(sv) = saved.as_deref_mut() {
                sv.c_prev[pos * hs..(pos + 1) * hs].copy_from_slice(&c);
                sv.h_prev[pos * hs..(pos + 1) * hs].copy_from_slice(&h);
            }
            for j in 0..hs {
                let i = sigmoid(z[j]);
                let f = sigmoid(z[hs + j]);
                let g = z[2 * hs + j].tanh();
                let o = sigmoid(z[3 * hs + j]);
                c[j] = f * c[j] + i * g;
                h[j] = o * c[j].tanh();
                if let Some(sv) = saved.as_deref_mut() {
                    let gb = &mut sv.gates[pos * 4 * hs..(pos + 1) * 4 * hs];
                    gb[j] = i;
                    gb[hs + j] = f;
                    gb[2 * hs + j] = g;
                    gb[3 * hs + j] = o;
                }
            }
            if let Some(sv) = saved.as_deref_mut() {
                sv.c_new[pos * hs..(pos + 1) * hs].copy_from_slice(&c);
            }
        }
        out[pos * hs..(pos + 1) * hs].copy_from_slice(&h);
    }
}

/// Backward over one sequence: `dxp` (`T × 4H`) written, `dw` (`4H × H`) accumulated.
#[allow(clippy::too_many_arguments)]
fn backward_seq<T: Float>(
    xp: &[T],
    w: &[T],
    wt: &[T],
    len: usize,
    hs: usize,
    reverse: bool,
    dout: &[T],
    dxp: &mut [T],
    dw: &mut [T],
) {
    let t_len = dout.len() / hs;
    let mut sv = Saved {
        gates: vec![T::zero(); t_len * 4 * hs],
        c_prev: vec![T::zero(); t_len * hs],
        c_new: vec![T::zero(); t_len * hs],
        h_prev: vec![T::zero(); t_len * hs],
    };
    let mut out = vec![T::zero(); t_len * hs];
    forward_seq(xp, wt, len, hs, reverse, &mut out, Some(&mut sv));
    let mut dh = vec![T::zero(); hs];
    let mut dc = vec![T::zero(); hs];
    let mut dz = vec![T::zero(); 4 * hs];
    for s in (0..t_len).rev() {
        let pos = if reverse { t_len - 1 - s } else { s };
        for (a, b) in dh.iter_mut().zip(&dout[pos * hs..(pos + 1) * hs]) {
            *a = *a + *b;
        }
        if pos >= len {
            continue; // the state passed through unchanged
        }
        let gates = &sv.gates[pos * 4 * hs..(pos + 1) * 4 * hs];
        let c_prev = &sv.c_prev[pos * hs..(pos + 1) * hs];
        let c_new = &sv.c_new[pos * hs..(pos + 1) * hs];
        let h_prev = &sv.h_prev[pos * hs..(pos + 1) * hs];
        for j in 0..hs {
            let (i, f, g, o) = (
                gates[j],
                gates[hs + j],
                gates[2 * hs + j],
                gates[3 * hs + j],
            );
            let tc = c_new[j].tanh();
            let d_o = dh[j] * tc;
            let dct = dc[j] + dh[j] * o * (T::one() - tc * tc);
            dz[j] = dct * g * i * (T::one() - i);
            dz[hs + j] = dct * c_prev[j] * f * (T::one() - f);
            dz[2 * hs + j] = dct * i * (T::one() - g * g);
            dz[3 * hs + j] = d_o * o * (T::one() - o);
            dc[j] = dct * f;
        }
        dxp[pos * 4 * hs..(pos + 1) * 4 * hs].copy_from_slice(&dz);
        dh.iter_mut().for_each(|v| *v = T::zero());
        for (k, &dzk) in dz.iter().enumerate() {
            let row = &w[k * hs..(k + 1) * hs];
            let drow = &mut dw[k * hs..(k + 1) * hs];
            for j in 0..hs {
                drow[j] = drow[j] + dzk * h_prev[j];
                dh[j] = dh[j] + row[j] * dzk;
            }
        }
    }
}

fn dims(l: &Layout) -> Result<(usize, usize, usize)> {
    let d = l.dims();
    if d.len() != 3 || !d[2].is_multiple_of(4) {
        return Err(Error::Msg(format!(
            "recurrence: xp must be [B, T, 4H], got {d:?}"
        )));
    }
    Ok((d[0], d[1], d[2] / 4))
}

fn contiguous<'a, T>(v: &'a [T], l: &Layout) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => Err(Error::Msg("recurrence: inputs must be contiguous".into())),
    }
}

/// `W_hhᵀ`: `[H × 4H]` from `[4H × H]`.
fn transpose<T: Float>(w: &[T], hs: usize) -> Vec<T> {
    let mut t = vec![T::zero(); w.len()];
    for k in 0..4 * hs {
        for j in 0..hs {
            t[j * 4 * hs + k] = w[k * hs + j];
        }
    }
    t
}

impl Recurrence {
    fn fwd<T: Float + Send + Sync>(
        &self,
        xp: &[T],
        w: &[T],
        b: usize,
        t: usize,
        hs: usize,
    ) -> Vec<T> {
        let wt = transpose(w, hs);
        let w = &wt[..];
        let mut out = vec![T::zero(); b * t * hs];
        out.par_chunks_mut(t * hs).enumerate().for_each(|(bi, o)| {
            let x = &xp[bi * t * 4 * hs..(bi + 1) * t * 4 * hs];
            forward_seq(x, w, self.lens[bi], hs, self.reverse, o, None);
        });
        out
    }

    fn bwd_impl<T: Float + Send + Sync>(
        &self,
        xp: &[T],
        w: &[T],
        dout: &[T],
        b: usize,
        t: usize,
        hs: usize,
    ) -> (Vec<T>, Vec<T>) {
        let wt = transpose(w, hs);
        let mut dxp = vec![T::zero(); b * t * 4 * hs];
        // Fixed chunks of sequences, their W_hh gradients summed in order: the result does not
        // depend on the thread count or on scheduling (training is reproducible for a seed).
        const CHUNK: usize = 4;
        let partial: Vec<Vec<T>> = dxp
            .par_chunks_mut(CHUNK * t * 4 * hs)
            .enumerate()
            .map(|(ci, dxc)| {
                let mut dw = vec![T::zero(); 4 * hs * hs];
                for (k, dx) in dxc.chunks_mut(t * 4 * hs).enumerate() {
                    let bi = ci * CHUNK + k;
                    backward_seq(
                        &xp[bi * t * 4 * hs..(bi + 1) * t * 4 * hs],
                        w,
                        &wt,
                        self.lens[bi],
                        hs,
                        self.reverse,
                        &dout[bi * t * hs..(bi + 1) * t * hs],
                        dx,
                        &mut dw,
                    );
                }
                dw
            })
            .collect();
        let mut dw = vec![T::zero(); 4 * hs * hs];
        for p in partial {
            for (x, y) in dw.iter_mut().zip(p) {
                *x = *x + y;
            }
        }
        (dxp, dw)
    }
}

impl CustomOp2 for Recurrence {
    fn name(&self) -> &'static str {
        "lstm-recurrence"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, t, hs) = dims(l1)?;
        if l2.dims() != [4 * hs, hs] || self.lens.len() != b {
            return Err(Error::Msg(format!(
                "recurrence: w_hh {:?} / {} lengths for xp {:?}",
                l2.dims(),
                self.lens.len(),
                l1.dims()
            )));
        }
        let shape = Shape::from((b, t, hs));
        match (s1, s2) {
            (CpuStorage::F32(x), CpuStorage::F32(w)) => Ok((
                CpuStorage::F32(self.fwd(contiguous(x, l1)?, contiguous(w, l2)?, b, t, hs)),
                shape,
            )),
            (CpuStorage::F64(x), CpuStorage::F64(w)) => Ok((
                CpuStorage::F64(self.fwd(contiguous(x, l1)?, contiguous(w, l2)?, b, t, hs)),
                shape,
            )),
            _ => Err(Error::Msg(
                "recurrence: f32 or f64 inputs of one type".into(),
            )),
        }
    }

    fn bwd(
        &self,
        xp: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (b, t, four_h) = xp.dims3()?;
        let hs = four_h / 4;
        let grad = grad.contiguous()?;
        let (dxp, dw) = match xp.dtype() {
            candle_core::DType::F64 => {
                let (dx, dw) = self.bwd_impl(
                    &xp.flatten_all()?.to_vec1::<f64>()?,
                    &w.flatten_all()?.to_vec1::<f64>()?,
                    &grad.flatten_all()?.to_vec1::<f64>()?,
                    b,
                    t,
                    hs,
                );
                (
                    Tensor::from_vec(dx, xp.shape(), xp.device())?,
                    Tensor::from_vec(dw, w.shape(), w.device())?,
                )
            }
            _ => {
                let (dx, dw) = self.bwd_impl(
                    &xp.flatten_all()?.to_vec1::<f32>()?,
                    &w.flatten_all()?.to_vec1::<f32>()?,
                    &grad
                        .flatten_all()?
                        .to_dtype(candle_core::DType::F32)?
                        .to_vec1::<f32>()?,
                    b,
                    t,
                    hs,
                );
                (
                    Tensor::from_vec(dx, xp.shape(), xp.device())?,
                    Tensor::from_vec(dw, w.shape(), w.device())?,
                )
            }
        };
        Ok((Some(dxp), Some(dw)))
    }
}
