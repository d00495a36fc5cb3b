//! `edgeinfer classify`: an LSTM classifier file, a decoder as a zero-shot classifier, or a
//! probe file (a linear head over a decoder's features, from `edgeinfer train-probe`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use edgeinfer_gguf::GgufFile;
use edgeinfer_lstm::{read_examples, Example, LstmClassifier, ARCH};
use edgeinfer_transformer::{Engine, Model, Probe, Session, ZeroShot, PROBE_ARCHITECTURE};
use serde_json::json;

/// Default task description for zero-shot prompts.
pub const DEFAULT_INSTRUCTION: &str = "Classify the following text.";

#[derive(Args, Debug)]
pub struct ClassifyArgs {
    /// An LSTM classifier GGUF, a probe GGUF (`train-probe`), or a decoder GGUF for zero-shot
    /// classification (default: the default decoder, fetched if absent).
    #[arg(short, long)]
    pub model: Option<PathBuf>,
    /// The decoder a probe reads features from (default: the file the probe names, in the
    /// models directory). Its sha256 must be the one the probe was trained on.
    #[arg(long)]
    pub decoder: Option<PathBuf>,
    /// The text to classify.
    #[arg(conflicts_with = "file")]
    pub text: Option<String>,
    /// Classify every row of a CSV (header row) or JSONL file.
    #[arg(long)]
    pub file: Option<PathBuf>,
    #[arg(long, default_value = "text")]
    pub text_col: String,
    /// Label column of --file: when given, accuracy is reported.
    #[arg(long)]
    pub label_col: Option<String>,
    /// Labels for a decoder (zero-shot), comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub labels: Vec<String>,
    /// Task description in the zero-shot prompt.
    #[arg(long, default_value = DEFAULT_INSTRUCTION)]
    pub instruction: String,
    /// Zero-shot on a skewed task: how often each label is expected, in --labels order,
    /// comma-separated (any positive numbers; scaled to sum to 1). The label scores are then
    /// calibrated so that each label is chosen for that share of the file's first 64 texts
    /// (needs --file). Default: centred scores, as if the labels were equally likely.
    #[arg(long, value_delimiter = ',')]
    pub prior: Vec<f64>,
    /// Predictions as JSON lines.
    #[arg(long)]
    pub json: bool,
    #[arg(short, long)]
    pub threads: Option<usize>,
}

/// One model behind one interface.
pub enum Classifier {
    Lstm(Arc<LstmClassifier>),
    /// The model, its labels, the instruction, the labels' expected shares (if known).
    Decoder(Arc<Model>, Vec<String>, String, Option<Vec<f64>>),
    Probe(Probe, Arc<Model>),
}

/// One prediction: label index and per-label probabilities.
pub struct Prediction {
    pub label: usize,
    pub probs: Vec<f64>,
}

impl Classifier {
    /// Open `path`: an `lstm-classifier` file, or a decoder (then `labels` are required).
    pub fn open(path: &Path, labels: &[String], instruction: &str) -> Result<Classifier> {
        let file = GgufFile::open(path).with_context(|| format!("opening {}", path.display()))?;
        let arch = file
            .metadata()
            .get_str("general.architecture")
            .unwrap_or("")
            .to_string();
        if arch == ARCH {
            let model = LstmClassifier::from_file(std::sync::Arc::new(file))
                .with_context(|| format!("loading {}", path.display()))?;
            if !labels.is_empty() && labels != model.labels.as_slice() {
                bail!(
                    "--labels {labels:?} differ from the classifier's labels {:?}",
                    model.labels
                );
            }
            return Ok(Classifier::Lstm(Arc::new(model)));
        }
        if arch == PROBE_ARCHITECTURE {
            bail!(
                "{} is a probe: open it with Classifier::open_probe",
                path.display()
            );
        }
        drop(file);
        if labels.len() < 2 {
            bail!(
                "{} is a decoder ({arch}): give the classes with --labels a,b,…",
                path.display()
            );
        }
        let model = Model::load(path).with_context(|| format!("loading {}", path.display()))?;
        Ok(Classifier::Decoder(
            Arc::new(model),
            labels.to_vec(),
            instruction.to_string(),
            None,
        ))
    }

    /// A probe file and its decoder (`decoder`, else the file the probe names under the
    /// models directory), checked to be the decoder the probe was trained on (sha256).
    pub fn open_probe(path: &Path, decoder: Option<&Path>) -> Result<Classifier> {
        let probe = Probe::load(path).with_context(|| format!("loading {}", path.display()))?;
        let dec = match decoder {
            Some(d) => crate::model_path::resolve(Some(d.to_path_buf()))?,
            None => crate::model_path::models_dir().join(&probe.decoder_name),
        };
        if !dec.exists() {
            bail!(
                "{} was trained on {} (sha256 {}), which is not at {}: pass --decoder",
                path.display(),
                probe.decoder_name,
                probe.decoder_sha256,
                dec.display()
            );
        }
        let sha = crate::suite::sha256_of(&dec)?;
        if sha != probe.decoder_sha256 {
            bail!(
                "{} was trained on {} (sha256 {}), but {} has sha256 {sha}",
                path.display(),
                probe.decoder_name,
                probe.decoder_sha256,
                dec.display()
            );
        }
        let model = Model::load(&dec).with_context(|| format!("loading {}", dec.display()))?;
        Ok(Classifier::Probe(probe, Arc::new(model)))
    }

    pub fn labels(&self) -> &[String] {
        match self {
            Classifier::Lstm(m) => &m.labels,
            Classifier::Decoder(_, l, _, _) => l,
            Classifier::Probe(p, _) => &p.labels,
        }
    }

    /// Classify `texts` on `engine` (LSTM: batched; decoder: one prompt after another, its
    /// label scores calibrated on `calibration`, unlabelled texts, or on content-free inputs
    /// if empty; with a prior, matched to it on `calibration`).
    pub fn predict(
        &self,
        engine: &Engine,
        texts: &[&str],
        calibration: &[&str],
    ) -> Result<Vec<Prediction>> {
        match self {
            Classifier::Lstm(m) => Ok(m
                .classify_batch(engine, texts)?
                .into_iter()
                .map(|c| Prediction {
                    label: c.label,
                    probs: c.probs.iter().map(|&p| f64::from(p)).collect(),
                })
                .collect()),
            Classifier::Decoder(model, labels, instruction, prior) => {
                let mut zs = ZeroShot::new(model.clone(), labels, instruction)?;
                let mut session = Session::new(engine, model.clone(), 2048);
                match prior {
                    Some(_) if calibration.is_empty() => bail!(
                        "--prior sets the threshold on the texts to classify: give them with --file"
                    ),
                    Some(p) => zs.calibrate_to_prior(&mut session, calibration, p)?,
                    None if calibration.is_empty() => {
                        zs.calibrate(&mut session, &ZeroShot::CONTENT_FREE)?
                    }
                    None => zs.calibrate(&mut session, calibration)?,
                }
                texts
                    .iter()
                    .map(|t| {
                        let r = zs.classify(&mut session, t)?;
                        Ok(Prediction {
                            label: r.label,
                            probs: r.probs,
                        })
                    })
                    .collect()
            }
            Classifier::Probe(probe, model) => {
                let mut session = Session::new(engine, model.clone(), probe.max_text_tokens + 8);
                texts
                    .iter()
                    .map(|t| {
                        let r = probe.classify(&mut session, t)?;
                        Ok(Prediction {
                            label: r.label,
                            probs: r.probs.iter().map(|&p| f64::from(p)).collect(),
                        })
                    })
                    .collect()
            }
        }
    }
}

pub fn run(out: &mut impl Write, a: &ClassifyArgs) -> Result<()> {
    let engine = crate::llm::engine(a.threads)?;
    let path = crate::model_path::resolve(a.model.clone())?;
    let is_probe = GgufFile::open(&path)
        .map(|f| f.metadata().get_str("general.architecture").ok() == Some(PROBE_ARCHITECTURE))
        .unwrap_or(false);
    let mut clf = if is_probe {
        Classifier::open_probe(&path, a.decoder.as_deref())?
    } else {
        Classifier::open(&path, &a.labels, &a.instruction)?
    };
    if !a.prior.is_empty() {
        match &mut clf {
            Classifier::Decoder(_, _, _, prior) => *prior = Some(a.prior.clone()),
            _ => bail!(
                "--prior applies to a decoder used zero-shot; {} is a trained classifier",
                path.display()
            ),
        }
    }
    let examples: Vec<Example> = match (&a.text, &a.file) {
        (Some(t), None) => vec![Example {
            text: t.clone(),
            label: String::new(),
        }],
        (None, Some(f)) => read_examples(f, &a.text_col, a.label_col.as_deref())?,
        _ => bail!("give a text to classify or --file"),
    };
    let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
    let start = Instant::now();
    // A decoder's label scores are calibrated on (up to 64 of) the file's own texts, without
    // their labels; a single text on content-free inputs.
    let calibration = if a.file.is_some() {
        &texts[..texts.len().min(64)]
    } else {
        &[][..]
    };
    let preds = clf.predict(&engine, &texts, calibration)?;
    let secs = start.elapsed().as_secs_f64();
    let labels = clf.labels();
    for p in &preds {
        if a.json {
            let probs: serde_json::Map<String, serde_json::Value> = labels
                .iter()
                .zip(&p.probs)
                .map(|(l, &v)| (l.clone(), json!(v)))
                .collect();
            writeln!(out, "{}", json!({"label": labels[p.label], "probs": probs}))?;
        } else if a.file.is_none() {
            let mut order: Vec<usize> = (0..labels.len()).collect();
            order.sort_by(|&x, &y| p.probs[y].total_cmp(&p.probs[x]));
            for i in order {
                writeln!(out, "{}\t{:.4}", labels[i], p.probs[i])?;
            }
        } else {
            writeln!(out, "{}\t{:.4}", labels[p.label], p.probs[p.label])?;
        }
    }
    if a.file.is_some() {
        let mut summary = format!(
            "{} texts in {:.2} s: {:.1} texts/s",
            preds.len(),
            secs,
            preds.len() as f64 / secs.max(1e-9)
        );
        if a.label_col.is_some() {
            let right = preds
                .iter()
                .zip(&examples)
                .filter(|(p, e)| labels[p.label] == e.label)
                .count();
            summary += &format!(
                ", accuracy {:.2}%",
                100.0 * right as f64 / preds.len().max(1) as f64
            );
        }
        eprintln!("{summary}");
    }
    Ok(())
}
