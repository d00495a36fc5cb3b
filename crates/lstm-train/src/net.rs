//! The classifier as candle variables, with the same equations as the inference crate
//! (PyTorch gate order i, f, g, o) and masking for padded batches.

use candle_core::{DType, Device, Tensor, Var};
use std::sync::Arc;

use crate::recurrence::Recurrence;
use edgeinfer_lstm::{DirectionWeights, LstmConfig, LstmWeights};

use crate::{Rng, TrainError};

struct DirVars {
    w_ih: Var,
    w_hh: Var,
    b_ih: Var,
    b_hh: Var,
}

/// Token vectors of another model (a decoder's input embeddings, say) with the tokenizer they
/// belong to. Training keeps them frozen and learns a projection `dim → embed_dim`; the exported
/// embedding table is `table · projection`, so the deployed file is an ordinary classifier with
/// that tokenizer.
#[derive(Clone, Debug)]
pub struct PretrainedEmbeddings {
    /// `tokenizers` JSON.
    pub tokenizer_json: String,
    pub dim: usize,
    /// `vocab × dim`, row-major.
    pub table: Vec<f32>,
}

impl PretrainedEmbeddings {
    /// Rows of the table.
    pub fn vocab_size(&self) -> usize {
        self.table.len() / self.dim.max(1)
    }
}

enum Embedding {
    Learned(Var),
    /// Frozen `[vocab, dim]` table (scaled to unit standard deviation) and a learned
    /// `[dim, embed_dim]` projection.
    Projected {
        table: Tensor,
        proj: Var,
    },
}

/// Trainable parameters.
pub struct Net {
    pub config: LstmConfig,
    dtype: DType,
    emb: Embedding,
    layers: Vec<Vec<DirVars>>,
    fc_w: Var,
    fc_b: Var,
}

fn var(values: Vec<f32>, shape: &[usize], dtype: DType) -> Result<Var, TrainError> {
    let t = Tensor::from_vec(values, shape, &Device::Cpu)?.to_dtype(dtype)?;
    Ok(Var::from_tensor(&t)?)
}

fn values(v: &Var) -> Result<Vec<f32>, TrainError> {
    Ok(v.as_tensor()
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?)
}

/// Multiply by a fresh inverted-dropout mask drawn from `rng`.
fn dropout(x: &Tensor, p: f32, rng: &mut Rng) -> Result<Tensor, TrainError> {
    if p <= 0.0 {
        return Ok(x.clone());
    }
    let keep = 1.0 / (1.0 - p);
    let mask: Vec<f32> = (0..x.elem_count())
        .map(|_| {
            if rng.uniform() < f64::from(p) {
                0.0
            } else {
                keep
            }
        })
        .collect();
    let m = Tensor::from_vec(mask, x.dims(), x.device())?.to_dtype(x.dtype())?;
    Ok(x.mul(&m)?)
}

impl Net {
    /// Random initialisation as PyTorch does (LSTM and linear weights uniform in ±1/√fan,
    /// embedding standard normal), plus forget-gate biases of 1.
    pub fn new(config: &LstmConfig, dtype: DType, rng: &mut Rng) -> Result<Net, TrainError> {
        let mut w = LstmWeights::zeros(config);
        let mut uniform = |v: &mut [f32], bound: f64| {
            for x in v {
                *x = ((rng.uniform() * 2.0 - 1.0) * bound) as f32;
            }
        };
        let hb = 1.0 / (config.hidden_size as f64).sqrt();
        for dirs in &mut w.layers {
            for d in dirs {
                uniform(&mut d.w_ih, hb);
                uniform(&mut d.w_hh, hb);
                uniform(&mut d.b_ih, hb);
                uniform(&mut d.b_hh, hb);
                let h = config.hidden_size;
                d.b_ih[h..2 * h].iter_mut().for_each(|b| *b = 1.0);
            }
        }
        let fb = 1.0 / (config.feature_dim() as f64).sqrt();
        uniform(&mut w.fc_w, fb);
        uniform(&mut w.fc_b, fb);
        for x in &mut w.embedding {
            *x = rng.normal() as f32;
        }
        Net::from_weights(&w, dtype)
    }

    /// As [`Net::new`], with the embedding a learned projection of `pre`'s frozen table (whose
    /// rows must be `config.vocab_size`), the projection initialised so embeddings start with
    /// about unit variance, as the random table does.
    pub fn with_pretrained(
        config: &LstmConfig,
        dtype: DType,
        rng: &mut Rng,
        pre: &PretrainedEmbeddings,
    ) -> Result<Net, TrainError> {
        if pre.dim == 0 || pre.table.len() != config.vocab_size * pre.dim {
            return Err(TrainError::Invalid(format!(
                "pretrained embeddings: {} values are not {} tokens × {} dimensions",
                pre.table.len(),
                config.vocab_size,
                pre.dim
            )));
        }
        let mut net = Net::new(config, dtype, rng)?;
        let n = pre.table.len() as f64;
        let mean = pre.table.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let variance = pre
            .table
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n;
        if !(variance > 0.0 && variance.is_finite()) {
            return Err(TrainError::Invalid(
                "pretrained embeddings: the table is constant or not finite".into(),
            ));
        }
        let inv = (1.0 / variance.sqrt()) as f32;
        let table: Vec<f32> = pre.table.iter().map(|&v| v * inv).collect();
        let table =
            Tensor::from_vec(table, (config.vocab_size, pre.dim), &Device::Cpu)?.to_dtype(dtype)?;
        let std = 1.0 / (pre.dim as f64).sqrt();
        let proj: Vec<f32> = (0..pre.dim * config.embed_dim)
            .map(|_| (rng.normal() * std) as f32)
            .collect();
        net.emb = Embedding::Projected {
            table,
            proj: var(proj, &[pre.dim, config.embed_dim], dtype)?,
        };
        Ok(net)
    }

    /// Variables holding `w` (in `dtype`: F64 for gradient checks).
    pub fn from_weights(w: &LstmWeights, dtype: DType) -> Result<Net, TrainError> {
        w.check()?;
        let c = &w.config;
        let h4 = 4 * c.hidden_size;
        let mut layers = Vec::new();
        for (k, dirs) in w.layers.iter().enumerate() {
            let mut vs = Vec::new();
            for d in dirs {
                vs.push(DirVars {
                    w_ih: var(d.w_ih.clone(), &[h4, c.layer_input(k)], dtype)?,
                    w_hh: var(d.w_hh.clone(), &[h4, c.hidden_size], dtype)?,
                    b_ih: var(d.b_ih.clone(), &[h4], dtype)?,
                    b_hh: var(d.b_hh.clone(), &[h4], dtype)?,
                });
            }
            layers.push(vs);
        }
        Ok(Net {
            config: c.clone(),
            dtype,
            emb: Embedding::Learned(var(
                w.embedding.clone(),
                &[c.vocab_size, c.embed_dim],
                dtype,
            )?),
            layers,
            fc_w: var(w.fc_w.clone(), &[c.num_classes, c.feature_dim()], dtype)?,
            fc_b: var(w.fc_b.clone(), &[c.num_classes], dtype)?,
        })
    }

    /// Every variable, in the order of [`LstmWeights::tensors`] (with a pretrained table, its
    /// projection in the embedding's place).
    pub fn vars(&self) -> Vec<Var> {
        let mut v = vec![match &self.emb {
            Embedding::Learned(e) => e.clone(),
            Embedding::Projected { proj, .. } => proj.clone(),
        }];
        for dirs in &self.layers {
            for d in dirs {
                v.extend([
                    d.w_ih.clone(),
                    d.w_hh.clone(),
                    d.b_ih.clone(),
                    d.b_hh.clone(),
                ]);
            }
        }
        v.extend([self.fc_w.clone(), self.fc_b.clone()]);
        v
    }

    /// The current values as f32 weights.
    pub fn to_weights(&self) -> Result<LstmWeights, TrainError> {
        let mut w = LstmWeights::zeros(&self.config);
        w.embedding = match &self.emb {
            Embedding::Learned(e) => values(e)?,
            Embedding::Projected { table, proj } => table
                .matmul(proj.as_tensor())?
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?,
        };
        for (dirs, vars) in w.layers.iter_mut().zip(&self.layers) {
            for (d, v) in dirs.iter_mut().zip(vars) {
                *d = DirectionWeights {
                    w_ih: values(&v.w_ih)?,
                    w_hh: values(&v.w_hh)?,
                    b_ih: values(&v.b_ih)?,
                    b_hh: values(&v.b_hh)?,
                };
            }
        }
        w.fc_w = values(&self.fc_w)?;
        w.fc_b = values(&self.fc_b)?;
        Ok(w)
    }

    /// Padded batch tensors: ids `[B, T]` (u32, padding 0) and mask `[B, T]` (1 where a token is).
    pub fn batch(&self, seqs: &[&[u32]]) -> Result<(Tensor, Tensor), TrainError> {
        let t = seqs.iter().map(|s| s.len()).max().unwrap_or(0).max(1);
        let mut ids = vec![0u32; seqs.len() * t];
        let mut mask = vec![0f32; seqs.len() * t];
        for (b, s) in seqs.iter().enumerate() {
            ids[b * t..b * t + s.len()].copy_from_slice(s);
            mask[b * t..b * t + s.len()]
                .iter_mut()
                .for_each(|m| *m = 1.0);
        }
        let ids = Tensor::from_vec(ids, (seqs.len(), t), &Device::Cpu)?;
        let mask = Tensor::from_vec(mask, (seqs.len(), t), &Device::Cpu)?.to_dtype(self.dtype)?;
        Ok((ids, mask))
    }

    /// Logits `[B, classes]`. With `dropout = Some((p, rng))`, inverted dropout of rate `p` on
    /// the embeddings, between layers and on the final features.
    pub fn forward(
        &self,
        ids: &Tensor,
        mask: &Tensor,
        mut dropout_rng: Option<(f32, &mut Rng)>,
    ) -> Result<Tensor, TrainError> {
        let (b, t) = ids.dims2()?;
        // Lengths from the mask (1 on the first len positions of each row).
        let lens: Arc<Vec<usize>> = Arc::new(
            mask.to_dtype(DType::F32)?
                .sum(1)?
                .to_vec1::<f32>()?
                .into_iter()
                .map(|v| v.round() as usize)
                .collect(),
        );
        let c = &self.config;
        let hs = c.hidden_size;
        let flat = ids.flatten_all()?;
        let mut x = match &self.emb {
            Embedding::Learned(e) => e.as_tensor().index_select(&flat, 0)?,
            Embedding::Projected { table, proj } => {
                table.index_select(&flat, 0)?.matmul(proj.as_tensor())?
            }
        }
        .reshape((b, t, c.embed_dim))?;
        if let Some((p, rng)) = dropout_rng.as_mut() {
            x = dropout(&x, *p, rng)?;
        }
        let mut finals = Vec::new();
        for (k, dirs) in self.layers.iter().enumerate() {
            let last = k + 1 == self.layers.len();
            let in_dim = c.layer_input(k);
            let mut outs = Vec::new();
            for (d, v) in dirs.iter().enumerate() {
                let bias = (v.b_ih.as_tensor() + v.b_hh.as_tensor())?;
                let xp = x
                    .reshape((b * t, in_dim))?
                    .matmul(&v.w_ih.as_tensor().t()?)?
                    .broadcast_add(&bias)?
                    .reshape((b, t, 4 * hs))?;
                let all = xp.contiguous()?.apply_op2(
                    v.w_hh.as_tensor(),
                    Recurrence {
                        lens: lens.clone(),
                        reverse: d == 1,
                    },
                )?;
                if last {
                    let at = if d == 0 { t - 1 } else { 0 };
                    finals.push(all.narrow(1, at, 1)?.squeeze(1)?);
                } else {
                    outs.push(all);
                }
            }
            if !last {
                x = Tensor::cat(&outs, 2)?;
                if let Some((p, rng)) = dropout_rng.as_mut() {
                    x = dropout(&x, *p, rng)?;
                }
            }
        }
        let mut feat = Tensor::cat(&finals, 1)?;
        if let Some((p, rng)) = dropout_rng.as_mut() {
            feat = dropout(&feat, *p, rng)?;
        }
        Ok(feat
            .matmul(&self.fc_w.as_tensor().t()?)?
            .broadcast_add(self.fc_b.as_tensor())?)
    }

    /// Mean cross-entropy of `logits` against `labels`.
    pub fn loss(&self, logits: &Tensor, labels: &[u32]) -> Result<Tensor, TrainError> {
        let target = Tensor::from_vec(labels.to_vec(), labels.len(), &Device::Cpu)?;
        Ok(candle_nn::loss::cross_entropy(logits, &target)?)
    }
}
