//! The training loop: length-bucketed shuffled batches, AdamW with global-norm gradient
//! clipping, validation accuracy after every epoch (with the inference crate, on the exported
//! f32 model), early stopping, best weights kept.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Instant;

use candle_core::DType as CDType;
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use edgeinfer_lstm::{truncate, Engine, Keep, LstmClassifier, LstmConfig, LstmWeights};
use edgeinfer_tensor::DType;

use crate::{
    class_labels, label_ids, train_tokenizer, Example, Net, PretrainedEmbeddings, Rng,
    TokenizerOptions, TrainError,
};

/// Hyper-parameters of a run.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    pub embed_dim: usize,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub bidirectional: bool,
    pub vocab_size: usize,
    pub min_frequency: u64,
    pub max_tokens: usize,
    pub keep: Keep,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub dropout: f32,
    pub clip: f64,
    /// Epochs without a better validation accuracy before stopping.
    pub patience: usize,
    pub seed: u64,
    /// Random-window augmentation: when above zero, each epoch replaces a `crop_fraction` share
    /// of the training texts longer than `crop_min` tokens by one random window of their
    /// tokens, its length drawn log-uniformly between `crop_min` and the text's length. A model
    /// trained on long texts then also sees short ones (and the middles and starts of long
    /// ones), which is what it meets on snippets, titles or messages. 0: off.
    pub crop_min: usize,
    /// Share of the eligible training texts cropped in each epoch (0 to 1).
    pub crop_fraction: f64,
    /// Use this tokenizer and a projection of these frozen token vectors instead of a
    /// word-level vocabulary trained on the data with a learned table (`vocab_size` and
    /// `min_frequency` are then unused).
    pub pretrained: Option<Arc<PretrainedEmbeddings>>,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            embed_dim: 64,
            hidden_size: 64,
            num_layers: 1,
            bidirectional: true,
            vocab_size: 20_000,
            min_frequency: 2,
            max_tokens: 256,
            keep: Keep::First,
            epochs: 10,
            batch_size: 32,
            lr: 2e-3,
            weight_decay: 0.0,
            dropout: 0.3,
            clip: 5.0,
            patience: 2,
            seed: 1,
            crop_min: 0,
            crop_fraction: 0.5,
            pretrained: None,
        }
    }
}

/// Reported while training.
#[derive(Clone, Debug)]
pub enum Progress {
    /// Tokenizer trained; batches per epoch.
    Start { vocab: usize, batches: usize },
    Batch {
        epoch: usize,
        batch: usize,
        loss: f32,
    },
    Epoch {
        epoch: usize,
        train_loss: f32,
        valid_accuracy: f64,
        improved: bool,
        seconds: f64,
    },
}

/// A trained model: the best epoch's weights, with what the GGUF file needs.
#[derive(Clone, Debug)]
pub struct Trained {
    pub weights: LstmWeights,
    pub labels: Vec<String>,
    pub tokenizer_json: String,
    pub best_epoch: usize,
    pub valid_accuracy: f64,
    /// (train loss, validation accuracy) per epoch.
    pub history: Vec<(f32, f64)>,
}

impl Trained {
    /// The deployable GGUF bytes with weights in `dtype`.
    pub fn to_gguf(&self, dtype: DType) -> Result<Vec<u8>, TrainError> {
        Ok(self
            .weights
            .to_gguf(dtype, &self.labels, &self.tokenizer_json)?)
    }
}

/// Fraction of `examples` `model` labels correctly (labels by name), classified on `engine`.
pub fn accuracy(
    engine: &Engine,
    model: &LstmClassifier,
    examples: &[Example],
) -> Result<f64, TrainError> {
    let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
    let out = model.classify_batch(engine, &texts)?;
    let right = out
        .iter()
        .zip(examples)
        .filter(|(c, e)| model.labels[c.label] == e.label)
        .count();
    Ok(right as f64 / examples.len().max(1) as f64)
}

/// Train on `train`, early-stopping on accuracy over `valid`. The training steps run on
/// candle's CPU backend in the calling thread's rayon pool; each epoch's validation runs with
/// the inference crate on `engine`.
pub fn train(
    engine: &Engine,
    train: &[Example],
    valid: &[Example],
    opts: &TrainOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<Trained, TrainError> {
    if train.is_empty() || valid.is_empty() {
        return Err(TrainError::Invalid(
            "the training and validation sets must not be empty".into(),
        ));
    }
    let labels = class_labels(train, "training set")?;
    if !(0.0..=1.0).contains(&opts.crop_fraction) {
        return Err(TrainError::Invalid(format!(
            "crop fraction {} is not between 0 and 1",
            opts.crop_fraction
        )));
    }
    let y_train = label_ids(train, &labels, "training set")?;
    label_ids(valid, &labels, "validation set")?;

    let texts: Vec<&str> = train.iter().map(|e| e.text.as_str()).collect();
    let tok = match &opts.pretrained {
        Some(p) => {
            let tok = tokenizers::Tokenizer::from_str(&p.tokenizer_json)
                .map_err(|e| TrainError::Tokenizer(e.to_string()))?;
            if tok.get_vocab_size(true) != p.vocab_size() {
                return Err(TrainError::Invalid(format!(
                    "pretrained embeddings: the tokenizer has {} tokens, the table {} rows",
                    tok.get_vocab_size(true),
                    p.vocab_size()
                )));
            }
            tok
        }
        None => train_tokenizer(
            &texts,
            &TokenizerOptions {
                vocab_size: opts.vocab_size,
                min_frequency: opts.min_frequency,
            },
        )?,
    };
    let tokenizer_json = tok
        .to_string(false)
        .map_err(|e| TrainError::Tokenizer(e.to_string()))?;
    let encodings = tok
        .encode_batch(texts, false)
        .map_err(|e| TrainError::Tokenizer(e.to_string()))?;
    let x_train: Vec<Vec<u32>> = encodings
        .iter()
        .map(|e| {
            let mut ids = e.get_ids().to_vec();
            truncate(&mut ids, opts.max_tokens, opts.keep);
            ids
        })
        .collect();

    let config = LstmConfig {
        vocab_size: tok.get_vocab_size(true),
        embed_dim: opts.embed_dim,
        hidden_size: opts.hidden_size,
        num_layers: opts.num_layers,
        bidirectional: opts.bidirectional,
        num_classes: labels.len(),
        max_tokens: opts.max_tokens,
        keep: opts.keep,
    };
    config.validate()?;
    let mut rng = Rng::new(opts.seed);
    let net = match &opts.pretrained {
        Some(p) => Net::with_pretrained(&config, CDType::F32, &mut rng, p)?,
        None => Net::new(&config, CDType::F32, &mut rng)?,
    };
    let mut opt = AdamW::new(
        net.vars(),
        ParamsAdamW {
            lr: opts.lr,
            weight_decay: opts.weight_decay,
            ..Default::default()
        },
    )?;
    let bs = opts.batch_size.max(1);
    let batches_per_epoch = x_train.len().div_ceil(bs);
    progress(Progress::Start {
        vocab: config.vocab_size,
        batches: batches_per_epoch,
    });

    let mut best: Option<(f64, usize, LstmWeights)> = None;
    let mut history = Vec::new();
    let mut since_best = 0;
    for epoch in 1..=opts.epochs {
        let start = Instant::now();
        let x_epoch: Vec<&[u32]> = x_train
            .iter()
            .map(|ids| crop(ids, opts.crop_min, opts.crop_fraction, &mut rng))
            .collect();
        // Shuffle, then sort pools of 50 batches by length so a batch pads little.
        let mut order: Vec<usize> = (0..x_train.len()).collect();
        rng.shuffle(&mut order);
        for pool in order.chunks_mut(bs * 50) {
            pool.sort_by_key(|&i| x_epoch[i].len());
        }
        let mut batches: Vec<&[usize]> = order.chunks(bs).collect();
        rng.shuffle(&mut batches);
        let mut loss_sum = 0.0f64;
        for (bi, batch) in batches.iter().enumerate() {
            let seqs: Vec<&[u32]> = batch.iter().map(|&i| x_epoch[i]).collect();
            let ys: Vec<u32> = batch.iter().map(|&i| y_train[i]).collect();
            let (ids, mask) = net.batch(&seqs)?;
            let logits = net.forward(&ids, &mask, Some((opts.dropout, &mut rng)))?;
            let loss = net.loss(&logits, &ys)?;
            let mut grads = loss.backward()?;
            if opts.clip > 0.0 {
                let mut sq = 0.0f64;
                for v in net.vars() {
                    if let Some(g) = grads.get(&v) {
                        sq += g
                            .sqr()?
                            .sum_all()?
                            .to_dtype(CDType::F64)?
                            .to_scalar::<f64>()?;
                    }
                }
                let norm = sq.sqrt();
                if norm > opts.clip {
                    let scale = opts.clip / norm;
                    for v in net.vars() {
                        if let Some(g) = grads.remove(&v) {
                            grads.insert(&v, (g * scale)?);
                        }
                    }
                }
            }
            opt.step(&grads)?;
            let l = loss.to_dtype(CDType::F32)?.to_scalar::<f32>()?;
            loss_sum += f64::from(l);
            progress(Progress::Batch {
                epoch,
                batch: bi + 1,
                loss: l,
            });
        }
        let weights = net.to_weights()?;
        let bytes = weights.to_gguf(DType::F32, &labels, &tokenizer_json)?;
        let model = LstmClassifier::from_file(Arc::new(edgeinfer_gguf_from_bytes(bytes)?))?;
        let acc = accuracy(engine, &model, valid)?;
        let train_loss = (loss_sum / batches.len().max(1) as f64) as f32;
        history.push((train_loss, acc));
        let improved = best.as_ref().is_none_or(|(b, _, _)| acc > *b);
        progress(Progress::Epoch {
            epoch,
            train_loss,
            valid_accuracy: acc,
            improved,
            seconds: start.elapsed().as_secs_f64(),
        });
        if improved {
            best = Some((acc, epoch, weights));
            since_best = 0;
        } else {
            since_best += 1;
            if since_best >= opts.patience {
                break;
            }
        }
    }
    let (valid_accuracy, best_epoch, weights) = best.expect("at least one epoch");
    Ok(Trained {
        weights,
        labels,
        tokenizer_json,
        best_epoch,
        valid_accuracy,
        history,
    })
}

/// One epoch's view of a training text: the whole of it, or (with probability `fraction`, when
/// it is longer than `min` tokens) a random window whose length is log-uniform in
/// `[min, ids.len()]`. `min == 0` turns cropping off; the draw comes from the run's seeded RNG.
fn crop<'a>(ids: &'a [u32], min: usize, fraction: f64, rng: &mut Rng) -> &'a [u32] {
    if min == 0 || ids.len() <= min || rng.uniform() >= fraction {
        return ids;
    }
    let (lo, hi) = ((min as f64).ln(), (ids.len() as f64).ln());
    let len = ((lo + (hi - lo) * rng.uniform()).exp().round() as usize).clamp(min, ids.len());
    let start = rng.below(ids.len() - len + 1);
    &ids[start..start + len]
}

fn edgeinfer_gguf_from_bytes(bytes: Vec<u8>) -> Result<edgeinfer_gguf::GgufFile, TrainError> {
    Ok(edgeinfer_gguf::GgufFile::from_bytes(bytes).map_err(edgeinfer_lstm::LstmError::from)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_windows_lie_inside_the_text_and_span_the_lengths() {
        let ids: Vec<u32> = (0..200).collect();
        let mut rng = Rng::new(7);
        let (mut cropped, mut short, mut long) = (0, 0, 0);
        for _ in 0..2000 {
            let w = crop(&ids, 8, 0.5, &mut rng);
            if w.len() == ids.len() {
                continue;
            }
            cropped += 1;
            assert!(w.len() >= 8, "window of {} tokens", w.len());
            // A window is a contiguous run of the text.
            assert!(w.windows(2).all(|p| p[1] == p[0] + 1));
            short += usize::from(w.len() < 40);
            long += usize::from(w.len() >= 40);
        }
        // About half are cropped; log-uniform on [8, 200]: P(len < 40) = ln 5 / ln 25 = 1/2.
        assert!((850..1150).contains(&cropped), "{cropped} of 2000 cropped");
        assert!((350..650).contains(&short), "{short} short, {long} long");
    }

    #[test]
    fn crop_off_or_short_text_is_the_whole_text_and_draws_nothing() {
        let ids: Vec<u32> = (0..50).collect();
        let (mut a, mut b) = (Rng::new(3), Rng::new(3));
        assert_eq!(crop(&ids, 0, 1.0, &mut a), &ids[..]);
        assert_eq!(crop(&ids[..8], 8, 1.0, &mut a), &ids[..8]);
        // Neither call consumed a draw, so runs without cropping stay as they were.
        assert_eq!(a.next_u64(), b.next_u64());
        assert_eq!(crop(&ids, 8, 0.0, &mut a).len(), 50);
    }
}
