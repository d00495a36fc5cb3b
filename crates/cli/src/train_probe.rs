//! `edgeinfer train-probe`: a linear head over a decoder's pooled hidden states, fitted on a
//! labelled training file (the L2 penalty chosen on a validation file) and written as a probe
//! GGUF naming the decoder by file name and sha256.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use clap::Args;
use edgeinfer_lstm::{class_labels, label_ids, read_examples, Example};
use edgeinfer_lstm_train::{fit_linear, LinearFit, LinearOptions};
use edgeinfer_transformer::{Model, Probe, Session};
use serde_json::{json, Value};

#[derive(Args, Debug)]
pub struct TrainProbeArgs {
    /// The decoder whose features the probe reads (file or known model name; default: the
    /// default model).
    #[arg(short, long)]
    pub model: Option<PathBuf>,
    /// Training set (CSV with a header row, or .jsonl).
    #[arg(long)]
    pub train: PathBuf,
    /// Validation set: picks the L2 penalty.
    #[arg(long)]
    pub valid: PathBuf,
    #[arg(long, default_value = "text")]
    pub text_col: String,
    #[arg(long, default_value = "label")]
    pub label_col: String,
    /// Output probe file.
    #[arg(short, long)]
    pub out: PathBuf,
    /// Training examples used (the first N; each costs one decoder pass).
    #[arg(long, default_value_t = 1000)]
    pub limit: usize,
    /// Tokens of each text the decoder reads.
    #[arg(long, default_value_t = 256)]
    pub max_text_tokens: usize,
    #[arg(short, long)]
    pub threads: Option<usize>,
}

/// What the fit chose and reached.
pub struct FitReport {
    pub l2: f64,
    pub train_accuracy: f64,
    pub valid_accuracy: f64,
}

impl FitReport {
    pub fn json(&self, train: usize, valid: usize) -> Value {
        json!({
            "l2": self.l2, "train_accuracy": self.train_accuracy,
            "valid_accuracy": self.valid_accuracy, "train_texts": train, "valid_texts": valid,
        })
    }
}

/// Fit a probe for the decoder of `session` (file `decoder`, hash `sha`) on `train`, choosing
/// the L2 penalty by accuracy on `valid`. `labels` are the classes in output order; every
/// example's label must be one of them. `progress` is called after each text embedded.
#[allow(clippy::too_many_arguments)]
pub fn fit(
    session: &mut Session,
    decoder: &Path,
    sha: &str,
    labels: &[String],
    train: &[Example],
    valid: &[Example],
    max_tokens: usize,
    progress: &mut dyn FnMut(),
) -> Result<(Probe, FitReport)> {
    ensure!(
        !train.is_empty() && !valid.is_empty(),
        "a probe needs training and validation examples"
    );
    let mut feats = |ex: &[Example]| -> Result<(Vec<Vec<f32>>, Vec<usize>)> {
        let mut x = Vec::with_capacity(ex.len());
        let mut y = Vec::with_capacity(ex.len());
        for e in ex {
            let c = labels
                .iter()
                .position(|l| *l == e.label)
                .with_context(|| format!("label {:?} is not one of {labels:?}", e.label))?;
            x.push(Probe::features(session, &e.text, max_tokens)?.0);
            y.push(c);
            progress();
        }
        Ok((x, y))
    };
    let (tx, ty) = feats(train)?;
    let (vx, vy) = feats(valid)?;
    let mut best: Option<(FitReport, LinearFit)> = None;
    for l2 in [1e-4, 1e-3, 1e-2, 1e-1] {
        let fit = fit_linear(
            &tx,
            &ty,
            labels.len(),
            &LinearOptions {
                l2,
                ..Default::default()
            },
        )?;
        let right = vx
            .iter()
            .zip(&vy)
            .filter(|(x, &y)| fit.predict(x) == y)
            .count();
        let valid_accuracy = right as f64 / vx.len() as f64;
        if best
            .as_ref()
            .is_none_or(|b| valid_accuracy > b.0.valid_accuracy)
        {
            let r = FitReport {
                l2,
                train_accuracy: fit.train_accuracy,
                valid_accuracy,
            };
            best = Some((r, fit));
        }
    }
    let (report, fit) = best.expect("four fits");
    let name = decoder
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let probe = Probe::new(
        labels.to_vec(),
        &fit.weight,
        fit.bias,
        &name,
        sha,
        max_tokens,
    )?;
    Ok((probe, report))
}

pub fn run(out: &mut impl Write, a: &TrainProbeArgs) -> Result<()> {
    let engine = crate::llm::engine(a.threads)?;
    let decoder = crate::model_path::resolve(a.model.clone())?;
    let sha = crate::suite::sha256_of(&decoder)?;
    let model =
        Arc::new(Model::load(&decoder).with_context(|| format!("loading {}", decoder.display()))?);
    let mut train = read_examples(&a.train, &a.text_col, Some(&a.label_col))?;
    let valid = read_examples(&a.valid, &a.text_col, Some(&a.label_col))?;
    ensure!(!train.is_empty(), "{}: no examples", a.train.display());
    ensure!(!valid.is_empty(), "{}: no examples", a.valid.display());
    train.truncate(a.limit.max(1));
    let labels = class_labels(&train, &a.train.display().to_string())?;
    label_ids(&valid, &labels, &a.valid.display().to_string())?;
    let mut session = Session::new(&engine, model.clone(), a.max_text_tokens.max(1) + 8);
    let pb = indicatif::ProgressBar::new((train.len() + valid.len()) as u64);
    pb.set_style(
        indicatif::ProgressStyle::with_template("embedding {bar:30} {pos}/{len} [{elapsed}<{eta}]")
            .expect("template"),
    );
    let t = Instant::now();
    let (probe, r) = fit(
        &mut session,
        &decoder,
        &sha,
        &labels,
        &train,
        &valid,
        a.max_text_tokens,
        &mut || pb.inc(1),
    )?;
    pb.finish_and_clear();
    probe
        .write(&a.out)
        .with_context(|| format!("writing {}", a.out.display()))?;
    writeln!(
        out,
        "wrote {} ({} labels, {} features, {} bytes of head) in {:.1} s: L2 {}, train accuracy \
         {:.2}%, validation accuracy {:.2}% on {} texts",
        a.out.display(),
        labels.len(),
        probe.dim(),
        probe.n_bytes(),
        t.elapsed().as_secs_f64(),
        r.l2,
        100.0 * r.train_accuracy,
        100.0 * r.valid_accuracy,
        valid.len()
    )?;
    Ok(())
}
