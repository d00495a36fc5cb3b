//! Why a sentiment classifier trained on long reviews loses accuracy on short snippets: the
//! IMDB-trained LSTM files and a Naive Bayes fitted to the same IMDB training split, scored on
//! IMDB's test reviews whole and cut to windows of k words (at the start, the end, and a
//! position drawn from the text's index), then on every Rotten Tomatoes sentence (train, valid
//! and test: none was seen by an IMDB model). Prints a markdown table; the README's cross-domain
//! finding comes from it.
//!
//! ```sh
//! scripts/fetch-text-data.sh
//! cargo run --release --example length_shift [IMDB_LSTM.gguf ...]
//! ```
//!
//! The default model is `fixtures/lstm/imdb.q8_0.gguf`; the data (`$EDGEINFER_DATA/classify`,
//! default `data/classify`) is fetched when absent.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use edgeinfer_lstm::{
    class_labels, label_ids, read_examples, Engine, Example, LstmClassifier, NaiveBayes,
};

mod common;

/// Window lengths, in words.
const WINDOWS: [usize; 4] = [8, 16, 32, 64];

fn read(data: &Path, set: &str, split: &str) -> Result<Vec<Example>> {
    let p = data.join(set).join(format!("{split}.csv"));
    read_examples(&p, "text", Some("label"))
        .with_context(|| format!("{}: run scripts/fetch-text-data.sh", p.display()))
}

/// `k` words of `text` (HTML line breaks taken as spaces) starting at the start, the end, or a
/// position drawn from `index`.
fn window(text: &str, k: usize, at: &str, index: usize) -> String {
    let t = text.replace("<br />", " ");
    let w: Vec<&str> = t.split_whitespace().collect();
    if w.len() <= k {
        return w.join(" ");
    }
    let start = match at {
        "start" => 0,
        "end" => w.len() - k,
        _ => (index.wrapping_mul(2_654_435_761) >> 3) % (w.len() - k + 1),
    };
    w[start..start + k].join(" ")
}

fn main() -> Result<()> {
    let data = common::text_data()?;
    let mut paths: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    if paths.is_empty() {
        paths.push(common::path_or("fixtures/lstm/imdb.q8_0.gguf"));
    }
    let engine = Engine::new()?;
    let models = paths
        .iter()
        .map(|p| LstmClassifier::load(p).with_context(|| format!("loading {}", p.display())))
        .collect::<Result<Vec<_>>>()?;
    let train = read(&data, "imdb", "train")?;
    let labels = class_labels(&train, "imdb/train.csv")?;
    for m in &models {
        ensure!(
            m.labels == labels,
            "{:?}: not an IMDB model (labels {labels:?})",
            m.labels
        );
    }
    let texts: Vec<&str> = train.iter().map(|e| e.text.as_str()).collect();
    let ids: Vec<usize> = label_ids(&train, &labels, "imdb/train.csv")?
        .into_iter()
        .map(|i| i as usize)
        .collect();
    let nb = NaiveBayes::train(&texts, &ids, &labels)?;
    let positive = labels
        .iter()
        .position(|l| l == "positive")
        .context("no label \"positive\"")?;

    let test = read(&data, "imdb", "test")?;
    let mut sets: Vec<(String, Vec<Example>)> =
        vec![("IMDB test, whole reviews".into(), test.clone())];
    for k in WINDOWS {
        for at in ["start", "end", "random"] {
            let cut = test
                .iter()
                .enumerate()
                .map(|(i, e)| Example {
                    text: window(&e.text, k, at, i),
                    label: e.label.clone(),
                })
                .collect();
            sets.push((format!("IMDB test, {k} words at the {at}"), cut));
        }
    }
    let mut rt = Vec::new();
    for split in ["train", "valid", "test"] {
        rt.extend(read(&data, "rt", split)?);
    }
    sets.push(("RT, every sentence".into(), rt));

    print!("| texts | N | mean tokens |");
    for p in &paths {
        print!(
            " {} |",
            p.file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
        );
    }
    println!(" Naive Bayes |");
    println!("|---|---:|---:|{}---:|", "---:|".repeat(paths.len()));
    for (name, set) in &sets {
        let truth = label_ids(set, &labels, name)?;
        let texts: Vec<&str> = set.iter().map(|e| e.text.as_str()).collect();
        let n = set.len() as f64;
        let cell = |pred: &[usize]| {
            let right = pred
                .iter()
                .zip(&truth)
                .filter(|(p, t)| **p == **t as usize)
                .count();
            let pos = pred.iter().filter(|&&p| p == positive).count();
            format!(
                "{:.1} % ({:.0} % positive)",
                100.0 * right as f64 / n,
                100.0 * pos as f64 / n
            )
        };
        let mut row = String::new();
        let mut tokens = 0;
        for m in &models {
            let out = m.classify_batch(&engine, &texts)?;
            tokens = out.iter().map(|c| c.n_tokens).sum::<usize>();
            let pred: Vec<usize> = out.iter().map(|c| c.label).collect();
            row += &format!(" {} |", cell(&pred));
        }
        let pred: Vec<usize> = texts.iter().map(|t| nb.classify(t).0).collect();
        println!(
            "| {name} | {} | {:.0} |{row} {} |",
            set.len(),
            tokens as f64 / n,
            cell(&pred)
        );
    }
    let pos = sets.last().map_or(0, |(_, s)| {
        s.iter().filter(|e| e.label == "positive").count()
    });
    println!(
        "\nRT: {pos} of {} sentences are positive.",
        sets.last().map_or(0, |(_, s)| s.len())
    );
    Ok(())
}
