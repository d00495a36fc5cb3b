//! `edgeinfer train-lstm`: train the LSTM baseline on a CSV/JSONL file and write the GGUF.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Args;
use edgeinfer_lstm::{read_examples, Keep, LstmClassifier};
use edgeinfer_lstm_train::{accuracy, train, PretrainedEmbeddings, Progress, TrainOptions};
use edgeinfer_tensor::DType;
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Training set (CSV with a header row, or .jsonl).
    #[arg(long)]
    pub train: PathBuf,
    /// Validation set, for early stopping.
    #[arg(long)]
    pub valid: PathBuf,
    /// Test set: report its accuracy for every written file.
    #[arg(long)]
    pub test: Option<PathBuf>,
    #[arg(long, default_value = "text")]
    pub text_col: String,
    #[arg(long, default_value = "label")]
    pub label_col: String,
    /// Output GGUF file.
    #[arg(short, long)]
    pub out: PathBuf,
    /// Weight type of --out: f32, q8_0 or q4_0.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// Also write these types beside --out, as <stem>.<type>.gguf (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub quantize: Vec<String>,
    #[arg(long, default_value_t = 64)]
    pub embed: usize,
    #[arg(long, default_value_t = 64)]
    pub hidden: usize,
    #[arg(long, default_value_t = 1)]
    pub layers: usize,
    /// One direction only (default: bidirectional).
    #[arg(long)]
    pub unidirectional: bool,
    /// Largest vocabulary (most frequent words of the training set).
    #[arg(long, default_value_t = 20_000)]
    pub vocab: usize,
    /// Fewest occurrences of a word to enter the vocabulary.
    #[arg(long, default_value_t = 2)]
    pub min_freq: u64,
    /// Start from a decoder GGUF's tokenizer and input embeddings: its token vectors stay
    /// frozen and a projection to --embed dimensions is learned (replaces --vocab/--min-freq).
    #[arg(long, value_name = "MODEL")]
    pub embeddings_from: Option<PathBuf>,
    /// Tokens kept per text (0: all, up to 65,536).
    #[arg(long, default_value_t = 256)]
    pub max_tokens: usize,
    /// Which tokens truncation keeps: first or last.
    #[arg(long, default_value = "first")]
    pub keep: String,
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    #[arg(long, default_value_t = 2e-3)]
    pub lr: f64,
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    #[arg(long, default_value_t = 0.3)]
    pub dropout: f32,
    /// Global gradient-norm clip (0: none).
    #[arg(long, default_value_t = 5.0)]
    pub clip: f64,
    /// Epochs without a better validation accuracy before stopping.
    #[arg(long, default_value_t = 2)]
    pub patience: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Random-window augmentation: each epoch, --crop-fraction of the training texts longer
    /// than this many tokens are cut to one random window (log-uniform length, at least this
    /// many tokens), so a model trained on long texts also learns short ones (0: off).
    #[arg(long, default_value_t = 0)]
    pub crop_min: usize,
    /// Share of the training texts cropped each epoch when --crop-min is set.
    #[arg(long, default_value_t = 0.5)]
    pub crop_fraction: f64,
    /// Worker threads (default: all cores).
    #[arg(short, long)]
    pub threads: Option<usize>,
}

/// A decoder's tokenizer and its input embedding table, dequantized to f32.
fn pretrained_embeddings(path: &Path) -> Result<PretrainedEmbeddings> {
    let model = edgeinfer_transformer::Model::load(path)
        .with_context(|| format!("--embeddings-from {}", path.display()))?;
    let tokenizer_json = model.tokenizer.to_json()?;
    let (vocab, dim) = (model.config.vocab_size, model.config.d_model);
    // Dequantization is the same at every kernel level.
    let emb = model.matrix(edgeinfer_kernels::Kernels::scalar(), &model.token_embd);
    let mut table = vec![0f32; vocab * dim];
    for (r, row) in table.chunks_exact_mut(dim).enumerate() {
        emb.dequantize_row(r, row)?;
    }
    eprintln!(
        "embeddings from {}: {vocab} tokens × {dim} ({})",
        path.display(),
        model.token_embd.dtype.name()
    );
    Ok(PretrainedEmbeddings {
        tokenizer_json,
        dim,
        table,
    })
}

/// Parse a weight type accepted for LSTM files.
pub fn weight_type(s: &str) -> Result<DType> {
    match s.to_ascii_lowercase().as_str() {
        "f32" => Ok(DType::F32),
        "q8_0" | "int8" => Ok(DType::Q8_0),
        "q4_0" | "int4" => Ok(DType::Q4_0),
        _ => bail!("weight type {s:?}: expected f32, q8_0 or q4_0"),
    }
}

/// `<dir>/<stem>.<type>.gguf` beside `out`.
pub fn sibling(out: &Path, dtype: DType) -> PathBuf {
    let stem = out.file_stem().and_then(|s| s.to_str()).unwrap_or("model");
    out.with_file_name(format!("{stem}.{}.gguf", dtype.name().to_ascii_lowercase()))
}

pub fn run(out: &mut impl Write, a: &TrainArgs) -> Result<()> {
    // Training runs in rayon's global pool, validation and test accuracy on the engine.
    init_threads(a.threads)?;
    let engine = crate::llm::engine(a.threads)?;
    let keep =
        Keep::parse(&a.keep).with_context(|| format!("--keep {:?}: first or last", a.keep))?;
    let dtype = weight_type(&a.dtype)?;
    let extra: Vec<DType> = a
        .quantize
        .iter()
        .map(|s| weight_type(s))
        .collect::<Result<_>>()?;
    let train_set = read_examples(&a.train, &a.text_col, Some(&a.label_col))?;
    let valid_set = read_examples(&a.valid, &a.text_col, Some(&a.label_col))?;
    let test_set = a
        .test
        .as_ref()
        .map(|p| read_examples(p, &a.text_col, Some(&a.label_col)))
        .transpose()?;
    let opts = TrainOptions {
        embed_dim: a.embed,
        hidden_size: a.hidden,
        num_layers: a.layers,
        bidirectional: !a.unidirectional,
        vocab_size: a.vocab,
        min_frequency: a.min_freq,
        max_tokens: a.max_tokens,
        keep,
        epochs: a.epochs,
        batch_size: a.batch,
        lr: a.lr,
        weight_decay: a.weight_decay,
        dropout: a.dropout,
        clip: a.clip,
        patience: a.patience,
        seed: a.seed,
        crop_min: a.crop_min,
        crop_fraction: a.crop_fraction,
        pretrained: a
            .embeddings_from
            .as_deref()
            .map(pretrained_embeddings)
            .transpose()?
            .map(Arc::new),
    };
    eprintln!(
        "training on {} examples, validating on {}",
        train_set.len(),
        valid_set.len()
    );
    let mut bar: Option<ProgressBar> = None;
    let mut batches = 0;
    let style = ProgressStyle::with_template(
        "epoch {prefix} [{bar:30}] {pos}/{len} batches, {elapsed} elapsed, eta {eta} {msg}",
    )
    .expect("valid template")
    .progress_chars("=> ");
    let trained = train(&engine, &train_set, &valid_set, &opts, &mut |p| match p {
        Progress::Start { vocab, batches: n } => {
            eprintln!("vocabulary: {vocab} tokens; {n} batches per epoch");
            batches = n;
        }
        Progress::Batch { epoch, batch, loss } => {
            if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                // Logs get a line every 100 batches instead of a bar.
                if batch % 100 == 0 {
                    eprintln!("epoch {epoch}: batch {batch}/{batches}, loss {loss:.3}");
                }
                return;
            }
            let b = bar.get_or_insert_with(|| {
                let b = ProgressBar::new(batches as u64).with_style(style.clone());
                b.set_prefix(epoch.to_string());
                b
            });
            b.set_position(batch as u64);
            if batch % 10 == 0 {
                b.set_message(format!("loss {loss:.3}"));
            }
        }
        Progress::Epoch {
            epoch,
            train_loss,
            valid_accuracy,
            improved,
            seconds,
        } => {
            if let Some(b) = bar.take() {
                b.finish_and_clear();
            }
            eprintln!(
                "epoch {epoch}: train loss {train_loss:.4}, valid accuracy {:.2}%{} ({seconds:.0} s)",
                100.0 * valid_accuracy,
                if improved { " (best)" } else { "" }
            );
        }
    })?;
    writeln!(
        out,
        "best epoch {}: valid accuracy {:.2}%",
        trained.best_epoch,
        100.0 * trained.valid_accuracy
    )?;
    let mut files = vec![(a.out.clone(), dtype)];
    files.extend(extra.iter().map(|&t| (sibling(&a.out, t), t)));
    for (path, t) in files {
        let bytes = trained.to_gguf(t)?;
        std::fs::write(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
        let mut line = format!("wrote {} ({t}, {} bytes)", path.display(), bytes.len());
        if let Some(test) = &test_set {
            let model = LstmClassifier::load(&path)?;
            let acc = accuracy(&engine, &model, test)?;
            line += &format!(
                ": test accuracy {:.2}% on {} examples",
                100.0 * acc,
                test.len()
            );
        }
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// Set the size of rayon's global pool once for the process (training runs there).
fn init_threads(threads: Option<usize>) -> Result<usize> {
    let n = threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    if n == 0 {
        bail!("--threads must be at least 1");
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global()
        .context("starting the thread pool")?;
    Ok(n)
}
