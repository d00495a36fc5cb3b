//! What calibration does to a decoder's zero- and few-shot label scores on one labelled data
//! set, and how well the scores rank the texts before any threshold is set. For each prompt
//! (zero-shot, and few-shot with two examples per class), the label scores of the first 200
//! test texts are taken once; the decision is then made several ways: raw scores, scores
//! relative to their mean over 16 unlabelled training texts (batch calibration, what `compare
//! --suite` does), relative to content-free inputs (`""`, `"N/A"`), each of those two with the
//! log of the training labels' shares added, relative to their mean over the 200 test texts
//! themselves, and matched to the training labels' shares (`ZeroShot::calibrate_to_prior`'s
//! offsets) on a sample: the 16 training texts, or the test texts. For two classes it also prints the AUC of the score margin, which
//! no shift of the scores changes. Prints a markdown table.
//!
//! ```sh
//! cargo run --release --example calibration MODEL SET "INSTRUCTION" [LABEL=WORD ...]
//! cargo run --release --example calibration gemma3-270m sms \
//!     "Is this text message spam, or a normal message?" ham=normal
//! ```
//!
//! `SET` is a directory of `$EDGEINFER_DATA/classify` (default `data/classify`, fetched when
//! absent); `LABEL=WORD` says a label with another word in the prompt.

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use edgeinfer_lstm::{class_labels, examples_per_class, label_ids, read_examples, Engine, Example};
use edgeinfer_transformer::{prior_offsets, Model, Session, ZeroShot};

mod common;

const TEST_TEXTS: usize = 200;
const CALIBRATION_TEXTS: usize = 16;
const SHOTS_PER_CLASS: usize = 2;

/// Mean of score rows.
fn mean(rows: &[Vec<f64>], width: usize) -> Vec<f64> {
    let mut m = vec![0.0; width];
    for r in rows {
        for (a, b) in m.iter_mut().zip(r) {
            *a += b / rows.len() as f64;
        }
    }
    m
}

/// Area under the ROC curve of `margin` for class 1 against class 0 (ties count half).
fn auc(margin: &[f64], truth: &[u32]) -> f64 {
    let (mut num, mut pairs) = (0.0, 0.0);
    for (a, _) in margin.iter().zip(truth).filter(|(_, &t)| t == 1) {
        for (b, _) in margin.iter().zip(truth).filter(|(_, &t)| t == 0) {
            pairs += 1.0;
            num += if a > b {
                1.0
            } else if a == b {
                0.5
            } else {
                0.0
            };
        }
    }
    num / pairs
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        bail!("usage: calibration MODEL SET \"INSTRUCTION\" [LABEL=WORD ...]");
    }
    let (set, instruction) = (&args[2], &args[3]);
    let model = Arc::new(Model::load(common::decoder_path()?)?);
    let data = common::text_data()?.join(set);
    let read = |split: &str| -> Result<Vec<Example>> {
        let p = data.join(format!("{split}.csv"));
        read_examples(&p, "text", Some("label")).with_context(|| p.display().to_string())
    };
    let train = read("train")?;
    let mut test = read("test")?;
    test.truncate(TEST_TEXTS);
    let labels = class_labels(&train, "train.csv")?;
    let truth = label_ids(&test, &labels, "test.csv")?;
    // The training labels' shares: the prior the last rows match, and whose logs the
    // "training prior" rows add to the centred scores (the Bayes correction, right if those
    // scores were calibrated log-likelihood ratios; measured, it is not what they are).
    let mut shares = vec![0.0; labels.len()];
    for c in label_ids(&train, &labels, "train.csv")? {
        shares[c as usize] += 1.0 / train.len() as f64;
    }
    let log_prior: Vec<f64> = shares.iter().map(|s| s.ln()).collect();
    let mut truth_counts = vec![0usize; labels.len()];
    for &t in &truth {
        truth_counts[t as usize] += 1;
    }
    let words: Vec<String> = labels
        .iter()
        .map(|l| {
            args[4..]
                .iter()
                .find_map(|a| a.strip_prefix(&format!("{l}=")))
                .unwrap_or(l)
                .to_string()
        })
        .collect();
    let engine = Engine::new()?;
    println!(
        "{} on {set} ({} test texts), labels {words:?}\n",
        args[1],
        test.len()
    );
    println!("| prompt | AUC | decision | accuracy | macro-F1 | predicted per label |");
    println!("|---|---:|---|---:|---:|---|");
    for few in [false, true] {
        let mut zs = ZeroShot::new(model.clone(), &words, instruction)?;
        zs.max_text_tokens = 256;
        if few {
            let shots = examples_per_class(&train, &labels, SHOTS_PER_CLASS);
            zs = zs.with_examples(&shots, 48)?;
        }
        let mut session = Session::new(&engine, model.clone(), 4096);
        let mut score = |texts: &mut dyn Iterator<Item = &str>| -> Result<Vec<Vec<f64>>> {
            texts
                .map(|t| Ok(zs.classify(&mut session, t)?.log_probs))
                .collect()
        };
        let batch = score(
            &mut train
                .iter()
                .take(CALIBRATION_TEXTS)
                .map(|e| e.text.as_str()),
        )?;
        let free = score(&mut ZeroShot::CONTENT_FREE.into_iter())?;
        let rows = score(&mut test.iter().map(|e| e.text.as_str()))?;
        let n = labels.len();
        let auc = if n == 2 {
            let margin: Vec<f64> = rows.iter().map(|r| r[1] - r[0]).collect();
            format!("{:.3}", auc(&margin, &truth))
        } else {
            "–".into()
        };
        let prompt = if few { "few-shot" } else { "zero-shot" };
        // Each decision: argmax over labels of score - base (+ the log prior).
        let no_prior = vec![0.0; n];
        for (decision, base, prior) in [
            ("raw scores", vec![0.0; n], &no_prior),
            (
                "batch-calibrated (16 training texts)",
                mean(&batch, n),
                &no_prior,
            ),
            (
                "batch-calibrated, training prior",
                mean(&batch, n),
                &log_prior,
            ),
            ("content-free calibrated", mean(&free, n), &no_prior),
            ("content-free, training prior", mean(&free, n), &log_prior),
            ("centred on the test texts", mean(&rows, n), &no_prior),
            (
                "prior-matched on 16 training texts",
                prior_offsets(&batch, &shares)?,
                &no_prior,
            ),
            (
                "prior-matched on the test texts",
                prior_offsets(&rows, &shares)?,
                &no_prior,
            ),
        ] {
            let mut counts = vec![0usize; n];
            let (mut right, mut hits) = (0, vec![0usize; n]);
            for (r, &t) in rows.iter().zip(&truth) {
                let p = (0..n)
                    .max_by(|&a, &b| {
                        (r[a] - base[a] + prior[a])
                            .total_cmp(&(r[b] - base[b] + prior[b]))
                            .then(b.cmp(&a))
                    })
                    .unwrap_or(0);
                counts[p] += 1;
                right += usize::from(p == t as usize);
                hits[p] += usize::from(p == t as usize);
            }
            // Macro-F1: per label 2·hits / (predicted + true), averaged over the labels.
            let macro_f1 = (0..n)
                .map(|c| {
                    let denom = counts[c] + truth_counts[c];
                    if denom == 0 {
                        0.0
                    } else {
                        2.0 * hits[c] as f64 / denom as f64
                    }
                })
                .sum::<f64>()
                / n as f64;
            let share: Vec<String> = words
                .iter()
                .zip(&counts)
                .map(|(w, c)| format!("{w} {c}"))
                .collect();
            println!(
                "| {prompt} | {auc} | {decision} | {:.1} % | {macro_f1:.3} | {} |",
                100.0 * right as f64 / rows.len() as f64,
                share.join(", ")
            );
        }
    }
    println!("\nTruth: {truth_counts:?} for {labels:?}.");
    Ok(())
}
