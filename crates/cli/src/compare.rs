//! `edgeinfer compare`: the LSTM baseline (f32, int8, int4) against a decoder used as a
//! zero-shot classifier, on the same test split. Each model runs in its own child process so
//! its peak RSS is its own; the parent prints a markdown table and draws an SVG chart.
//! `--suite` runs the whole comparison instead (every task, every contender): [`crate::suite`].

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use edgeinfer_gguf::GgufFile;
use edgeinfer_kernels::cycles;
use edgeinfer_lstm::{label_ids, read_examples, Example, LstmClassifier, LstmWeights, StepTrace};
use edgeinfer_tensor::DType;
use edgeinfer_transformer::{Engine, Model, Session, ZeroShot};
use serde_json::{json, Value};

#[derive(Args, Debug, Clone)]
pub struct CompareArgs {
    /// The LSTM classifier (any weight type; the f32/int8/int4 variants are made from it).
    #[arg(long, required_unless_present_any = ["suite", "suite_worker"])]
    pub lstm: Option<PathBuf>,
    /// The decoder for zero-shot classification (default: the default model, fetched if absent).
    #[arg(long)]
    pub decoder: Option<PathBuf>,
    /// Test split (CSV or JSONL).
    #[arg(long, required_unless_present_any = ["suite", "suite_worker"])]
    pub test: Option<PathBuf>,
    /// Unlabelled texts to calibrate the decoder's label scores on (e.g. the training split);
    /// its first 32 texts are used. Default: content-free inputs.
    #[arg(long)]
    pub calibrate: Option<PathBuf>,
    #[arg(long, default_value = "text")]
    pub text_col: String,
    #[arg(long, default_value = "label")]
    pub label_col: String,
    /// The decoder's words for the classes, in the order of the LSTM's labels (default: the
    /// LSTM's label names).
    #[arg(long, value_delimiter = ',')]
    pub labels: Vec<String>,
    /// The task, in the zero-shot prompt.
    #[arg(long, default_value = crate::classify::DEFAULT_INSTRUCTION)]
    pub instruction: String,
    /// Test examples for the LSTM variants (default: all).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Test examples for the decoder (its prompts are slow: default 200).
    #[arg(long, default_value_t = 200)]
    pub decoder_limit: usize,
    /// Positions in the per-step latency curves.
    #[arg(long, default_value_t = 512)]
    pub steps: usize,
    /// Write the markdown table here too.
    #[arg(long)]
    pub markdown: Option<PathBuf>,
    /// Write the SVG chart here.
    #[arg(long, default_value = "compare.svg")]
    pub svg: PathBuf,
    /// Skip the decoder (LSTM variants only).
    #[arg(long)]
    pub no_decoder: bool,
    #[arg(short, long)]
    pub threads: Option<usize>,
    /// Internal: run one model and print its JSON.
    #[arg(long, hide = true)]
    pub worker: Option<String>,

    /// Run the whole comparison: every task (RT, IMDB, SMS, TREC, and the sentiment sets
    /// crossed), every contender (Naive Bayes; the LSTM in f32, int8, int4; each decoder
    /// zero-shot, few-shot and under a linear probe), with a report in --out. Resumable:
    /// results are cached by the hashes of their inputs.
    #[arg(long, help_heading = "Suite")]
    pub suite: bool,
    /// Tasks to run.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "rt,imdb,sms,trec,rt->imdb,imdb->rt",
        help_heading = "Suite"
    )]
    pub tasks: Vec<String>,
    /// Decoders (files or known model names, fetched if absent).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "smollm2,qwen2.5,gemma3",
        help_heading = "Suite"
    )]
    pub decoders: Vec<String>,
    /// Directory of the data sets (default: data/classify, fetched if absent).
    #[arg(long, help_heading = "Suite")]
    pub data: Option<PathBuf>,
    /// Directory of the trained LSTMs, one `<set>.q8_0.gguf` per data set.
    #[arg(long, default_value = "fixtures/lstm", help_heading = "Suite")]
    pub lstm_dir: PathBuf,
    /// Report directory (raw results, probes and LSTM variants are kept in it too).
    #[arg(long, default_value = "compare-report", help_heading = "Suite")]
    pub out: PathBuf,
    /// Test examples per task (the first N of the fixed test split, the same for every
    /// contender).
    #[arg(long, default_value_t = 200, help_heading = "Suite")]
    pub test_limit: usize,
    /// Training examples the probes are fitted on (their features cost a decoder pass each).
    #[arg(long, default_value_t = 1000, help_heading = "Suite")]
    pub train_limit: usize,
    /// Few-shot examples per class.
    #[arg(long, default_value_t = 2, help_heading = "Suite")]
    pub shots_per_class: usize,
    /// Tokens kept of each few-shot example.
    #[arg(long, default_value_t = 48, help_heading = "Suite")]
    pub shot_tokens: usize,
    /// Tokens a decoder reads of each text.
    #[arg(long, default_value_t = 256, help_heading = "Suite")]
    pub max_text_tokens: usize,
    /// Run everything again, ignoring cached results.
    #[arg(long, help_heading = "Suite")]
    pub fresh: bool,
    /// Internal: run one suite job and print its raw results.
    #[arg(long, hide = true)]
    pub suite_worker: Option<String>,
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// Accuracy and macro-F1 of `pred` against `truth` (class indices).
pub fn scores(pred: &[usize], truth: &[usize], n_classes: usize) -> (f64, f64) {
    let right = pred.iter().zip(truth).filter(|(p, t)| p == t).count();
    let mut f1 = 0.0;
    for c in 0..n_classes {
        let tp = pred
            .iter()
            .zip(truth)
            .filter(|&(&p, &t)| p == c && t == c)
            .count() as f64;
        let fp = pred
            .iter()
            .zip(truth)
            .filter(|&(&p, &t)| p == c && t != c)
            .count() as f64;
        let fneg = pred
            .iter()
            .zip(truth)
            .filter(|&(&p, &t)| p != c && t == c)
            .count() as f64;
        if tp > 0.0 {
            f1 += 2.0 * tp / (2.0 * tp + fp + fneg);
        }
    }
    (
        right as f64 / pred.len().max(1) as f64,
        f1 / n_classes as f64,
    )
}

fn truth(examples: &[Example], labels: &[String]) -> Result<Vec<usize>> {
    Ok(label_ids(examples, labels, "test set")?
        .into_iter()
        .map(|i| i as usize)
        .collect())
}

/// Per-position (nanoseconds, cycles), reduced to medians over bins of `bin` positions.
/// The cost of decode steps at growing context: the tokens of `texts` (cycled), fed one at a
/// time into `session` from position 0, up to `steps` of them (and the session's context).
/// Nanoseconds and TSC cycles per step.
pub fn decode_step_costs(
    session: &mut Session,
    texts: &[Example],
    steps: usize,
) -> Result<(Vec<u64>, Vec<u64>)> {
    let tokenizer = &session.model().tokenizer;
    let mut ids = Vec::new();
    for e in texts.iter().cycle().take(100_000) {
        if ids.len() >= steps {
            break;
        }
        ids.extend(tokenizer.encode(&e.text, false)?);
    }
    ids.truncate(steps.min(session.max_ctx()));
    session.truncate(0);
    let (mut ns, mut cyc) = (Vec::new(), Vec::new());
    for (pos, &id) in ids.iter().enumerate() {
        let (t, c) = (Instant::now(), cycles());
        session.forward(&[id], pos)?;
        cyc.push(cycles().wrapping_sub(c));
        ns.push(t.elapsed().as_nanos() as u64);
    }
    Ok((ns, cyc))
}

pub fn binned(ns: &[u64], cyc: &[u64], bin: usize) -> Vec<Value> {
    let mut out = Vec::new();
    for (k, (n, c)) in ns.chunks(bin).zip(cyc.chunks(bin)).enumerate() {
        let med = |v: &[u64]| {
            let mut v = v.to_vec();
            v.sort_unstable();
            v[v.len() / 2]
        };
        out.push(json!([k * bin + n.len() / 2, med(n), med(c)]));
    }
    out
}

fn worker_lstm(a: &CompareArgs, engine: &Engine, path: &Path) -> Result<Value> {
    let model = LstmClassifier::load(path)?;
    let test = a.test.as_deref().context("--test")?;
    let mut examples = read_examples(test, &a.text_col, Some(&a.label_col))?;
    if let Some(n) = a.limit {
        examples.truncate(n);
    }
    let truth = truth(&examples, &model.labels)?;
    let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
    // Batch throughput.
    let t = Instant::now();
    let batch = model.classify_batch(engine, &texts)?;
    let batch_secs = t.elapsed().as_secs_f64();
    // Single-text latency.
    let mut lat = Vec::with_capacity(texts.len());
    for text in &texts {
        let t = Instant::now();
        model.classify(engine, text)?;
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    lat.sort_by(f64::total_cmp);
    let pred: Vec<usize> = batch.iter().map(|c| c.label).collect();
    let (acc, f1) = scores(&pred, &truth, model.labels.len());
    // Per-step cost along one long token sequence (test texts' tokens, concatenated).
    let mut ids = Vec::new();
    for text in texts.iter().cycle().take(100_000) {
        if ids.len() >= a.steps {
            break;
        }
        ids.extend(model.encode(text)?);
    }
    ids.truncate(a.steps);
    let mut trace = StepTrace::default();
    model.logits_traced(engine, &ids, &mut trace)?; // warm-up
    model.logits_traced(engine, &ids, &mut trace)?;
    Ok(json!({
        "accuracy": acc, "macro_f1": f1, "n": texts.len(),
        "p50_ms": percentile(&lat, 0.5), "p95_ms": percentile(&lat, 0.95),
        "throughput": texts.len() as f64 / batch_secs,
        "tokens": batch.iter().map(|c| c.n_tokens).sum::<usize>(),
        "steps": binned(&trace.step_nanos, &trace.step_cycles, 16),
        "peak_rss": crate::bench::peak_rss(),
    }))
}

fn worker_decoder(
    a: &CompareArgs,
    engine: &Engine,
    path: &Path,
    lstm_labels: &[String],
) -> Result<Value> {
    let model = Arc::new(Model::load(path)?);
    let words = if a.labels.is_empty() {
        lstm_labels.to_vec()
    } else {
        a.labels.clone()
    };
    let mut zs = ZeroShot::new(model.clone(), &words, &a.instruction)?;
    let mut session = Session::new(engine, model.clone(), 2048);
    let calib: Vec<Example> = match &a.calibrate {
        Some(p) => read_examples(p, &a.text_col, None)?
            .into_iter()
            .take(32)
            .collect(),
        None => Vec::new(),
    };
    let calib_texts: Vec<&str> = calib.iter().map(|e| e.text.as_str()).collect();
    let free = ZeroShot::CONTENT_FREE;
    zs.calibrate(
        &mut session,
        if calib_texts.is_empty() {
            &free
        } else {
            &calib_texts
        },
    )?;
    let test = a.test.as_deref().context("--test")?;
    let mut examples = read_examples(test, &a.text_col, Some(&a.label_col))?;
    examples.truncate(a.decoder_limit);
    let truth = truth(&examples, lstm_labels)?;
    let mut lat = Vec::new();
    let mut pred = Vec::new();
    let mut tokens = 0;
    let start = Instant::now();
    for e in &examples {
        let t = Instant::now();
        let r = zs.classify(&mut session, &e.text)?;
        lat.push(t.elapsed().as_secs_f64() * 1e3);
        pred.push(r.label);
        tokens += r.prompt_tokens;
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    let (acc, f1) = scores(&pred, &truth, lstm_labels.len());
    let (ns, cyc) = decode_step_costs(&mut session, &examples, a.steps)?;
    Ok(json!({
        "accuracy": acc, "macro_f1": f1, "n": examples.len(),
        "p50_ms": percentile(&lat, 0.5), "p95_ms": percentile(&lat, 0.95),
        "throughput": examples.len() as f64 / secs, "tokens": tokens,
        "steps": binned(&ns, &cyc, 16),
        "peak_rss": crate::bench::peak_rss(),
        "words": words,
    }))
}

pub struct Row {
    pub name: String,
    pub model_bytes: u64,
    pub v: Value,
}

pub fn run(out: &mut impl Write, a: &CompareArgs) -> Result<()> {
    if a.suite || a.suite_worker.is_some() {
        return crate::suite::run(out, a);
    }
    let (Some(lstm), Some(test)) = (&a.lstm, &a.test) else {
        bail!("--lstm and --test are needed (or --suite)");
    };
    if let Some(w) = &a.worker {
        let engine = crate::llm::engine(a.threads)?;
        let (kind, path) = w.split_once(':').context("worker spec")?;
        let v = match kind {
            "lstm" => worker_lstm(a, &engine, Path::new(path))?,
            // The decoder scores the LSTM's classes: read their names from its file.
            "decoder" => {
                let labels = LstmClassifier::load(lstm)?.labels;
                worker_decoder(a, &engine, Path::new(path), &labels)?
            }
            _ => bail!("unknown worker {kind}"),
        };
        writeln!(out, "{v}")?;
        return Ok(());
    }
    // The three LSTM variants, written once to a temporary directory so each child maps its
    // own file (zero-copy, as in deployment).
    let src = GgufFile::open(lstm).with_context(|| format!("opening {}", lstm.display()))?;
    let (weights, labels, tok) = LstmWeights::from_file(&src)?;
    let src_type = src
        .tensor_info("lstm.weight_ih_l0")
        .map(|i| i.dtype)
        .unwrap_or(DType::F32);
    drop(src);
    let tmp = std::env::temp_dir().join(format!("edgeinfer-compare-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let mut jobs: Vec<(String, String, PathBuf)> = Vec::new();
    for (name, t) in [
        ("LSTM f32", DType::F32),
        ("LSTM int8 (Q8_0)", DType::Q8_0),
        ("LSTM int4 (Q4_0)", DType::Q4_0),
    ] {
        let p = tmp.join(format!("lstm.{}.gguf", t.name().to_ascii_lowercase()));
        weights.write_gguf(&p, t, &labels, tok.as_deref().unwrap_or(""))?;
        jobs.push((name.into(), format!("lstm:{}", p.display()), p));
    }
    if !a.no_decoder {
        let p = crate::model_path::resolve(a.decoder.clone())?;
        let name = p
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("decoder")
            .to_string();
        jobs.push((
            format!("{name} zero-shot"),
            format!("decoder:{}", p.display()),
            p,
        ));
    }
    let exe = std::env::current_exe()?;
    let mut rows = Vec::new();
    for (name, spec, path) in jobs {
        eprintln!("running {name} …");
        let mut cmd = std::process::Command::new(&exe);
        cmd.args(std::env::args_os().skip(1))
            .arg("--worker")
            .arg(&spec);
        let o = cmd.output().with_context(|| format!("running {name}"))?;
        if !o.status.success() {
            bail!("{name} failed: {}", String::from_utf8_lossy(&o.stderr));
        }
        let v: Value = serde_json::from_slice(&o.stdout)
            .with_context(|| format!("{name}: {}", String::from_utf8_lossy(&o.stdout)))?;
        rows.push(Row {
            name,
            model_bytes: std::fs::metadata(&path)?.len(),
            v,
        });
    }
    std::fs::remove_dir_all(&tmp).ok();

    let mut md = String::new();
    md += &format!(
        "Test split: {} (LSTM weights from a {} file)\n\n",
        test.display(),
        src_type
    );
    md += "| model | examples | accuracy | macro-F1 | latency p50 | latency p95 | throughput | step at pos 16 | step at pos 496 | model bytes | peak RSS |\n";
    md += "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for r in &rows {
        let f = |k: &str| r.v[k].as_f64().unwrap_or(f64::NAN);
        let step_at = |pos: usize| {
            r.v["steps"]
                .as_array()
                .and_then(|s| {
                    s.iter()
                        .find(|p| p[0].as_u64().is_some_and(|x| x as usize + 8 > pos))
                })
                .map(|p| {
                    format!(
                        "{:.1} µs / {:.0} kcyc",
                        p[1].as_f64().unwrap_or(0.0) / 1e3,
                        p[2].as_f64().unwrap_or(0.0) / 1e3
                    )
                })
                .unwrap_or_else(|| "–".into())
        };
        md += &format!(
            "| {} | {} | {:.2}% | {:.3} | {:.2} ms | {:.2} ms | {:.1} texts/s | {} | {} | {:.2} MB | {:.1} MiB |\n",
            r.name,
            r.v["n"],
            100.0 * f("accuracy"),
            f("macro_f1"),
            f("p50_ms"),
            f("p95_ms"),
            f("throughput"),
            step_at(16),
            step_at(496),
            r.model_bytes as f64 / 1e6,
            f("peak_rss") / (1024.0 * 1024.0),
        );
    }
    write!(out, "{md}")?;
    if let Some(p) = &a.markdown {
        std::fs::write(p, &md).with_context(|| format!("writing {}", p.display()))?;
    }
    chart(&a.svg, &rows)?;
    writeln!(out, "\nchart: {}", a.svg.display())?;
    Ok(())
}

/// Two panels: time per step and cycles per step against position, log-scale y.
pub fn chart(path: &Path, rows: &[Row]) -> Result<()> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (1100, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let panels = root.split_evenly((1, 2));
    let colors = [BLUE, GREEN, MAGENTA, RED, BLACK];
    for (pi, panel) in panels.iter().enumerate() {
        let (title, scale) = if pi == 0 {
            ("time per step (µs)", 1e3)
        } else {
            ("reference cycles per step (thousands)", 1e3)
        };
        let pts: Vec<Vec<(f64, f64)>> = rows
            .iter()
            .map(|r| {
                r.v["steps"]
                    .as_array()
                    .map(|s| {
                        s.iter()
                            .map(|p| {
                                (
                                    p[0].as_f64().unwrap_or(0.0),
                                    (p[1 + pi].as_f64().unwrap_or(0.0) / scale).max(1e-3),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .collect();
        let xmax = pts.iter().flatten().map(|p| p.0).fold(1.0, f64::max);
        let ymin = pts
            .iter()
            .flatten()
            .map(|p| p.1)
            .fold(f64::INFINITY, f64::min);
        let ymax = pts.iter().flatten().map(|p| p.1).fold(1.0, f64::max);
        let mut c = ChartBuilder::on(panel)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..xmax * 1.02, (ymin * 0.5..ymax * 2.0).log_scale())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        c.configure_mesh()
            .x_desc("position (tokens already read)")
            .draw()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        for (i, (r, p)) in rows.iter().zip(&pts).enumerate() {
            let color = colors[i % colors.len()];
            c.draw_series(LineSeries::new(p.iter().copied(), color.stroke_width(2)))
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .label(r.name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
        }
        c.configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}
