//! Loading a classifier from GGUF and running it: the input projection of every position of a
//! batch as one matmul, the recurrent projection per step batched across the sequences still
//! running, and the gate non-linearities and state update fused in one pass.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use edgeinfer_gguf::GgufFile;
use edgeinfer_kernels::{Activations, DType, Engine, Kernels, Matrix, WeightLoader, WeightRef};
use rayon::prelude::*;

use crate::{Keep, LstmConfig, LstmError};

/// Tokens kept per text when the file sets no limit: bounds the memory one text can take.
pub const MAX_TOKENS: usize = 1 << 16;

/// Sequences per batch group, and tokens per group (a longer single text forms its own group).
const GROUP_SEQS: usize = 32;
const GROUP_TOKENS: usize = 8192;

#[derive(Clone, Debug)]
struct Direction {
    w_ih: WeightRef,
    w_hh: WeightRef,
    /// `b_ih + b_hh`
    bias: Vec<f32>,
}

/// A loaded classifier. `Send + Sync`: load it once into an `Arc` and classify with it from any
/// threads and engines. It holds no state between calls: each call runs on the [`Engine`] it
/// is given (the engine's pool, the engine's kernel table).
pub struct LstmClassifier {
    file: Arc<GgufFile>,
    pub config: LstmConfig,
    pub labels: Vec<String>,
    tokenizer: Option<tokenizers::Tokenizer>,
    embedding: WeightRef,
    layers: Vec<Vec<Direction>>,
    fc: WeightRef,
    fc_b: Vec<f32>,
}

impl std::fmt::Debug for LstmClassifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LstmClassifier")
            .field("config", &self.config)
            .field("labels", &self.labels)
            .finish()
    }
}

/// A classifier's answer for one text.
#[derive(Clone, Debug, PartialEq)]
pub struct Classification {
    /// Index of the most probable class.
    pub label: usize,
    /// Softmax probabilities, in label order.
    pub probs: Vec<f32>,
    /// Tokens the model read (after truncation).
    pub n_tokens: usize,
}

/// Time spent in the recurrent step of each position (all layers and directions summed), plus
/// the batched work that is not per step. Filled by [`LstmClassifier::logits_traced`].
#[derive(Clone, Debug, Default)]
pub struct StepTrace {
    pub step_nanos: Vec<u64>,
    pub step_cycles: Vec<u64>,
    /// Embedding lookup, input projections and output layer.
    pub batched_nanos: u64,
}

fn cycles() -> u64 {
    edgeinfer_kernels::cycles()
}

impl LstmClassifier {
    /// Memory-map `path` and load the classifier.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, LstmError> {
        Self::from_file(Arc::new(GgufFile::open(path)?))
    }

    /// Load from an opened GGUF file (kept alive by the classifier).
    pub fn from_file(file: Arc<GgufFile>) -> Result<Self, LstmError> {
        let md = file.metadata();
        let (config, labels) = LstmConfig::from_metadata(md)?;
        let tokenizer = match md.get("tokenizer.huggingface.json") {
            None => None,
            Some(_) => {
                let json = md.get_str("tokenizer.huggingface.json")?;
                let tok: tokenizers::Tokenizer =
                    json.parse().map_err(|e| LstmError::Tokenizer {
                        what: format!("tokenizer.huggingface.json: {e}"),
                    })?;
                if tok.get_vocab_size(true) > config.vocab_size {
                    return Err(LstmError::BadConfig {
                        what: format!(
                            "tokenizer has {} tokens but vocab_size is {}",
                            tok.get_vocab_size(true),
                            config.vocab_size
                        ),
                    });
                }
                Some(tok)
            }
        };
        let l = WeightLoader::new(&file);
        let c = &config;
        let h4 = 4 * c.hidden_size;
        let embedding = l.matrix("embedding.weight", c.vocab_size, c.embed_dim)?;
        let mut layers = Vec::with_capacity(c.num_layers);
        for k in 0..c.num_layers {
            let mut dirs = Vec::with_capacity(c.directions());
            for d in 0..c.directions() {
                let s = LstmConfig::suffix(d);
                let b_ih = l.vector(&format!("lstm.bias_ih_l{k}{s}"), h4)?;
                let b_hh = l.vector(&format!("lstm.bias_hh_l{k}{s}"), h4)?;
                dirs.push(Direction {
                    w_ih: l.matrix(&format!("lstm.weight_ih_l{k}{s}"), h4, c.layer_input(k))?,
                    w_hh: l.matrix(&format!("lstm.weight_hh_l{k}{s}"), h4, c.hidden_size)?,
                    bias: b_ih.iter().zip(&b_hh).map(|(a, b)| a + b).collect(),
                });
            }
            layers.push(dirs);
        }
        let fc = l.matrix("fc.weight", c.num_classes, c.feature_dim())?;
        let fc_b = l.vector("fc.bias", c.num_classes)?;
        Ok(LstmClassifier {
            config,
            labels,
            tokenizer,
            embedding,
            layers,
            fc,
            fc_b,
            file,
        })
    }

    fn mat(&self, k: &'static Kernels, w: &WeightRef) -> Matrix<'_> {
        w.matrix_in(k, self.file.bytes()).expect("checked at load")
    }

    /// The type of the weight matrices (of the LSTM layer 0 input projection).
    pub fn weight_type(&self) -> DType {
        self.layers[0][0].w_ih.dtype
    }

    /// Bytes of the model file.
    pub fn file_bytes(&self) -> usize {
        self.file.bytes().len()
    }

    /// The tokenizer stored in the file.
    pub fn tokenizer(&self) -> Option<&tokenizers::Tokenizer> {
        self.tokenizer.as_ref()
    }

    /// Tokenize `text` with the file's tokenizer and truncate it as the file says.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, LstmError> {
        let tok = self
            .tokenizer
            .as_ref()
            .ok_or_else(|| LstmError::Tokenizer {
                what: "the model file has no tokenizer.huggingface.json".into(),
            })?;
        let enc = tok.encode(text, false).map_err(|e| LstmError::Tokenizer {
            what: e.to_string(),
        })?;
        let mut ids = enc.get_ids().to_vec();
        truncate(&mut ids, self.config.max_tokens, self.config.keep);
        Ok(ids)
    }

    /// Classify one text on `engine`.
    pub fn classify(&self, engine: &Engine, text: &str) -> Result<Classification, LstmError> {
        Ok(self.classify_batch(engine, &[text])?.remove(0))
    }

    /// Classify many texts on `engine`: tokenized in parallel, run in groups of similar length.
    pub fn classify_batch(
        &self,
        engine: &Engine,
        texts: &[&str],
    ) -> Result<Vec<Classification>, LstmError> {
        let ids: Vec<Vec<u32>> = engine.install(|| {
            texts
                .par_iter()
                .map(|t| self.encode(t))
                .collect::<Result<_, _>>()
        })?;
        let refs: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
        let logits = self.logits_batch(engine, &refs)?;
        Ok(logits
            .into_iter()
            .zip(&ids)
            .map(|(mut l, ids)| {
                edgeinfer_kernels::ops::softmax(&mut l);
                Classification {
                    label: edgeinfer_kernels::ops::argmax(&l),
                    probs: l,
                    n_tokens: ids.len(),
                }
            })
            .collect())
    }

    /// Logits for many token sequences, on `engine`. Sequences are sorted by length and cut
    /// into groups (at most 32 sequences or 8192 tokens); groups run in parallel.
    pub fn logits_batch(
        &self,
        engine: &Engine,
        seqs: &[&[u32]],
    ) -> Result<Vec<Vec<f32>>, LstmError> {
        for s in seqs {
            self.check_ids(s)?;
        }
        engine.install(|| self.groups(engine.kernels(), seqs))
    }

    /// [`LstmClassifier::logits_batch`] in the engine's pool.
    fn groups(&self, k: &'static Kernels, seqs: &[&[u32]]) -> Result<Vec<Vec<f32>>, LstmError> {
        let mut order: Vec<usize> = (0..seqs.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(seqs[i].len()));
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut tokens = 0;
        for &i in &order {
            let n = seqs[i].len();
            match groups.last_mut() {
                Some(g) if g.len() < GROUP_SEQS && tokens + n <= GROUP_TOKENS => {
                    g.push(i);
                    tokens += n;
                }
                _ => {
                    groups.push(vec![i]);
                    tokens = n;
                }
            }
        }
        // Several groups: each runs in one thread (parallel across groups, not inside them).
        let inner_parallel = groups.len() == 1;
        let results: Vec<Vec<(usize, Vec<f32>)>> = groups
            .par_iter()
            .map(|g| {
                let batch: Vec<&[u32]> = g.iter().map(|&i| seqs[i]).collect();
                let out = self.forward(k, &batch, inner_parallel, None)?;
                Ok(g.iter().copied().zip(out).collect())
            })
            .collect::<Result<_, LstmError>>()?;
        let mut logits = vec![Vec::new(); seqs.len()];
        for (i, l) in results.into_iter().flatten() {
            logits[i] = l;
        }
        Ok(logits)
    }

    /// Logits of one sequence on `engine`, recording the time of each position's recurrent
    /// step.
    pub fn logits_traced(
        &self,
        engine: &Engine,
        ids: &[u32],
        trace: &mut StepTrace,
    ) -> Result<Vec<f32>, LstmError> {
        self.check_ids(ids)?;
        let k = engine.kernels();
        Ok(engine
            .install(|| self.forward(k, &[ids], true, Some(trace)))?
            .remove(0))
    }

    fn check_ids(&self, ids: &[u32]) -> Result<(), LstmError> {
        match ids.iter().find(|&&t| t as usize >= self.config.vocab_size) {
            Some(&id) => Err(LstmError::TokenOutOfRange {
                id,
                vocab: self.config.vocab_size,
            }),
            None => Ok(()),
        }
    }

    /// One batch through every layer, with table `kern`. `seqs` must be sorted by decreasing
    /// length. With `parallel`, the input projections (one matmul over every position) use the
    /// thread pool; the per-step recurrent products are always computed in this thread: they
    /// are too small for a fork/join to pay.
    fn forward(
        &self,
        kern: &'static Kernels,
        seqs: &[&[u32]],
        parallel: bool,
        mut trace: Option<&mut StepTrace>,
    ) -> Result<Vec<Vec<f32>>, LstmError> {
        let c = &self.config;
        let hs = c.hidden_size;
        let dirs = c.directions();
        let t0 = Instant::now();
        let lens: Vec<usize> = seqs.iter().map(|s| s.len()).collect();
        debug_assert!(lens.windows(2).all(|w| w[0] >= w[1]));
        let mut offs = Vec::with_capacity(seqs.len());
        let mut n_tok = 0;
        for &l in &lens {
            offs.push(n_tok);
            n_tok += l;
        }
        let max_len = lens.first().copied().unwrap_or(0);
        if let Some(t) = trace.as_deref_mut() {
            t.step_nanos = vec![0; max_len];
            t.step_cycles = vec![0; max_len];
        }

        // Layer 0's input: the embedding rows of every position, sequence after sequence. When
        // the table is stored in the projection's activation type (Q8_0 with Q8_0 weights), its
        // rows are used as they are; otherwise they are dequantized to f32 (and quantized to the
        // activation type once per layer, shared by both directions).
        let emb = self.mat(kern, &self.embedding);
        let ids = || seqs.iter().flat_map(|s| s.iter()).map(|&id| id as usize);
        let mut x = Vec::new();
        let mut batched = t0.elapsed().as_nanos() as u64;

        let mut acts = Activations::new();
        let mut acts_x = Activations::new();
        let mut features = vec![0.0f32; seqs.len() * c.feature_dim()];
        let mut xp = Vec::new();
        let mut z = Vec::new();
        for (k, layer) in self.layers.iter().enumerate() {
            let last = k + 1 == self.layers.len();
            let in_dim = c.layer_input(k);
            let mut out = if last {
                Vec::new()
            } else {
                vec![0.0f32; n_tok * hs * dirs]
            };
            let mut x_type = None;
            for (d, dir) in layer.iter().enumerate() {
                let tb = Instant::now();
                // Input projection of every position at once.
                let w_ih = self.mat(kern, &dir.w_ih);
                let at = w_ih.act_type();
                xp.resize(n_tok * 4 * hs, 0.0);
                if n_tok > 0 && x_type != Some(at) {
                    if k == 0 && emb.dtype() == at {
                        let rows = ids().map(|id| emb.row_data(id).unwrap_or(&[]));
                        acts_x.set_encoded_rows(at, in_dim, rows)?;
                    } else {
                        if k == 0 && x.is_empty() {
                            x = vec![0.0f32; n_tok * in_dim];
                            for (row, id) in x.chunks_exact_mut(in_dim).zip(ids()) {
                                emb.dequantize_row(id, row)?;
                            }
                        }
                        if parallel {
                            acts_x.quantize_in(kern, at, &x[..n_tok * in_dim], in_dim)?;
                        } else {
                            acts_x.quantize_in_thread_in(kern, at, &x[..n_tok * in_dim], in_dim)?;
                        }
                    }
                    x_type = Some(at);
                }
                if n_tok > 0 && parallel {
                    w_ih.matmul(&acts_x, &mut xp)?;
                } else if n_tok > 0 {
                    w_ih.matmul_in_thread(&acts_x, &mut xp)?;
                }
                batched += tb.elapsed().as_nanos() as u64;

                let w_hh = self.mat(kern, &dir.w_hh);
                let mut h = vec![0.0f32; seqs.len() * hs];
                let mut cell = vec![0.0f32; seqs.len() * hs];
                for t in 0..max_len {
                    let (ts, tc) = (Instant::now(), cycles());
                    let active = lens.iter().take_while(|&&l| l > t).count();
                    z.resize(active * 4 * hs, 0.0);
                    if t == 0 {
                        z.fill(0.0);
                    } else {
                        w_hh.matvec_f32_in_thread(&h[..active * hs], &mut acts, &mut z)?;
                    }
                    for j in 0..active {
                        let pos = if d == 0 { t } else { lens[j] - 1 - t };
                        let row = offs[j] + pos;
                        let hj = &mut h[j * hs..(j + 1) * hs];
                        kern.lstm_cell(
                            &z[j * 4 * hs..(j + 1) * 4 * hs],
                            &xp[row * 4 * hs..(row + 1) * 4 * hs],
                            &dir.bias,
                            &mut cell[j * hs..(j + 1) * hs],
                            hj,
                        );
                        if !last {
                            let o = (row * dirs + d) * hs;
                            out[o..o + hs].copy_from_slice(hj);
                        }
                    }
                    if let Some(tr) = trace.as_deref_mut() {
                        let pos = if d == 0 { t } else { max_len - 1 - t };
                        tr.step_nanos[pos] += ts.elapsed().as_nanos() as u64;
                        tr.step_cycles[pos] += cycles().wrapping_sub(tc);
                    }
                }
                if last {
                    for (j, f) in features.chunks_exact_mut(c.feature_dim()).enumerate() {
                        f[d * hs..(d + 1) * hs].copy_from_slice(&h[j * hs..(j + 1) * hs]);
                    }
                }
            }
            if !last {
                x = out;
            }
        }
        let tb = Instant::now();
        let mut logits = vec![0.0f32; seqs.len() * c.num_classes];
        self.mat(kern, &self.fc)
            .matvec_f32(&features, &mut acts, &mut logits)?;
        batched += tb.elapsed().as_nanos() as u64;
        if let Some(t) = trace {
            t.batched_nanos = batched;
        }
        Ok(logits
            .chunks_exact(c.num_classes)
            .map(|l| l.iter().zip(&self.fc_b).map(|(a, b)| a + b).collect())
            .collect())
    }
}

/// Cut `ids` to `max_tokens` (0: [`MAX_TOKENS`]), keeping the first or the last ones.
pub fn truncate(ids: &mut Vec<u32>, max_tokens: usize, keep: Keep) {
    let max = match max_tokens {
        0 => MAX_TOKENS,
        m => m.min(MAX_TOKENS),
    };
    if ids.len() > max {
        match keep {
            Keep::First => ids.truncate(max),
            Keep::Last => {
                ids.drain(..ids.len() - max);
            }
        }
    }
}
