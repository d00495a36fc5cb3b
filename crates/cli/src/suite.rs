//! `edgeinfer compare --suite`: every contender on every task, as a user choosing a classifier
//! would compare them.
//!
//! Tasks: RT, IMDB, SMS spam, TREC question type (fixed splits from
//! `scripts/fetch-text-data.sh`), and the two sentiment sets crossed (trained on one, tested on
//! the other). Contenders on each: a bag-of-words Naive Bayes (the floor), the LSTM in f32, int8
//! and int4, and each decoder used zero-shot, few-shot (labelled examples in a prompt prefix
//! that stays cached) and as a feature extractor under a linear probe.
//!
//! Each contender runs in its own child process (its peak RSS is its own) and writes raw
//! results: every prediction, the truth, every latency, the timed batch pass. They are cached
//! under `<out>/raw/`, named by a hash of the job and of every input file, so an interrupted
//! run resumes where it stopped and a changed input reruns only what it touches. The report
//! (`report.md`, `pareto.svg`, `steps.svg`) is computed from the raw results alone.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, bail, ensure, Context, Result};
use edgeinfer_gguf::GgufFile;
use edgeinfer_lstm::{
    class_labels, examples_per_class, label_ids, read_examples, Example, LstmClassifier,
    LstmWeights, NaiveBayes, StepTrace,
};
use edgeinfer_tensor::DType;
use edgeinfer_transformer::{Engine, Model, Probe, Session, ZeroShot};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::compare::{binned, decode_step_costs, percentile, scores, CompareArgs};

/// Bumped when a change to the workers changes what they measure: old raw results are then
/// not reused.
const SUITE_VERSION: u32 = 1;

/// A task as the suite defines it.
struct TaskDef {
    name: &'static str,
    /// Data set the training split (LSTM, Naive Bayes, probe, few-shot examples) comes from.
    train: &'static str,
    /// Data set the test split comes from.
    test: &'static str,
    /// The decoders' instruction.
    instruction: &'static str,
    /// The word a decoder is asked to answer for each label (labels not listed are their own
    /// word).
    words: &'static [(&'static str, &'static str)],
}

const SENTIMENT: &str = "Is the sentiment of this movie review positive or negative?";

const TASKS: &[TaskDef] = &[
    TaskDef {
        name: "rt",
        train: "rt",
        test: "rt",
        instruction: SENTIMENT,
        words: &[],
    },
    TaskDef {
        name: "imdb",
        train: "imdb",
        test: "imdb",
        instruction: SENTIMENT,
        words: &[],
    },
    TaskDef {
        name: "sms",
        train: "sms",
        test: "sms",
        instruction: "Is this text message spam, or a normal message?",
        words: &[("ham", "normal")],
    },
    TaskDef {
        name: "trec",
        train: "trec",
        test: "trec",
        instruction: "What kind of answer does this question ask for?",
        words: &[],
    },
    TaskDef {
        name: "rt->imdb",
        train: "rt",
        test: "imdb",
        instruction: SENTIMENT,
        words: &[],
    },
    TaskDef {
        name: "imdb->rt",
        train: "imdb",
        test: "rt",
        instruction: SENTIMENT,
        words: &[],
    },
];

/// The splits of one task, checked.
pub struct TaskData {
    pub train: Vec<Example>,
    /// Read by the probe fit (the `train` feature).
    #[cfg_attr(not(feature = "train"), allow(dead_code))]
    pub valid: Vec<Example>,
    pub test: Vec<Example>,
    /// The training split's labels, sorted.
    pub labels: Vec<String>,
}

fn split_path(data: &Path, set: &str, split: &str) -> PathBuf {
    data.join(set).join(format!("{split}.csv"))
}

fn read_split(path: &Path) -> Result<Vec<Example>> {
    ensure!(
        path.exists(),
        "{} not found: run scripts/fetch-text-data.sh (or pass --data)",
        path.display()
    );
    let v = read_examples(path, "text", Some("label"))
        .with_context(|| format!("reading {}", path.display()))?;
    ensure!(!v.is_empty(), "{}: the split is empty", path.display());
    if let Some(e) = v.iter().find(|e| e.label.is_empty()) {
        bail!(
            "{}: an example has an empty label (text {:?})",
            path.display(),
            e.text.chars().take(40).collect::<String>()
        );
    }
    Ok(v)
}

/// Read and check a task's splits: none empty, two or more classes in training, and no label
/// in validation or test that training lacks.
pub fn load_task(data: &Path, train_set: &str, test_set: &str) -> Result<TaskData> {
    let tp = split_path(data, train_set, "train");
    let train = read_split(&tp)?;
    let valid = read_split(&split_path(data, train_set, "valid"))?;
    let sp = split_path(data, test_set, "test");
    let test = read_split(&sp)?;
    let labels = class_labels(&train, &tp.display().to_string())?;
    for (path, split) in [(split_path(data, train_set, "valid"), &valid), (sp, &test)] {
        label_ids(split, &labels, &path.display().to_string())?;
    }
    Ok(TaskData {
        train,
        valid,
        test,
        labels,
    })
}

fn sha256_file(path: &Path, memo: &mut HashMap<PathBuf, String>) -> Result<String> {
    if let Some(h) = memo.get(path) {
        return Ok(h.clone());
    }
    let hex = sha256_of(path)?;
    memo.insert(path.to_path_buf(), hex.clone());
    Ok(hex)
}

/// The sha256 of a file's contents, as lower-case hex.
pub fn sha256_of(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("{:x}", h.finalize()))
}

/// CPU seconds (user + system) of this process so far, from `/proc/self/stat` (Linux); NaN
/// elsewhere.
fn cpu_seconds() -> f64 {
    let Ok(s) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let Some(rest) = s.rsplit_once(')').map(|(_, r)| r) else {
        return f64::NAN;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
    match (tick(11), tick(12)) {
        (Some(u), Some(s)) => (u + s) / 100.0,
        _ => f64::NAN,
    }
}

/// Time `pass` over the whole test subset, repeated until at least a second has passed (one
/// pass at least): (seconds per pass, CPU seconds per pass).
fn timed_passes(mut pass: impl FnMut() -> Result<()>) -> Result<(f64, f64)> {
    let (t, c) = (Instant::now(), cpu_seconds());
    let mut n = 0;
    while n == 0 || t.elapsed().as_secs_f64() < 1.0 {
        pass()?;
        n += 1;
    }
    Ok((
        t.elapsed().as_secs_f64() / n as f64,
        (cpu_seconds() - c) / n as f64,
    ))
}

fn spec_str<'a>(spec: &'a Value, key: &str) -> Result<&'a str> {
    spec[key]
        .as_str()
        .ok_or_else(|| anyhow!("suite worker spec: no {key}"))
}

fn spec_usize(spec: &Value, key: &str) -> Result<usize> {
    spec[key]
        .as_u64()
        .map(|v| v as usize)
        .ok_or_else(|| anyhow!("suite worker spec: no {key}"))
}

/// One job in a child process: its raw results as JSON.
pub fn worker(spec: &Value) -> Result<Value> {
    let threads = spec["threads"].as_u64().map(|t| t as usize);
    let engine = crate::llm::engine(threads)?;
    let kind = spec_str(spec, "kind")?;
    if kind.starts_with("steps-") {
        return worker_steps(spec, &engine);
    }
    let data = PathBuf::from(spec_str(spec, "data")?);
    let task = load_task(
        &data,
        spec_str(spec, "train_set")?,
        spec_str(spec, "test_set")?,
    )?;
    let mut test = task.test.clone();
    test.truncate(spec_usize(spec, "test_limit")?);
    let texts: Vec<&str> = test.iter().map(|e| e.text.as_str()).collect();
    let truth: Vec<String> = test.iter().map(|e| e.label.clone()).collect();
    let mut extra = json!({});
    let mut lat = Vec::with_capacity(texts.len());
    let rss_before = crate::bench::peak_rss();
    let (labels, pred, batch_secs, cpu_secs, model_bytes): (
        Vec<String>,
        Vec<usize>,
        f64,
        f64,
        u64,
    );
    match kind {
        "nb" => {
            let tt: Vec<&str> = task.train.iter().map(|e| e.text.as_str()).collect();
            let ty: Vec<usize> = task
                .train
                .iter()
                .map(|e| task.labels.iter().position(|l| *l == e.label).unwrap_or(0))
                .collect();
            let t = Instant::now();
            let nb = NaiveBayes::train(&tt, &ty, &task.labels)?;
            extra["train_secs"] = json!(t.elapsed().as_secs_f64());
            extra["train_texts"] = json!(tt.len());
            let mut p = Vec::new();
            (batch_secs, cpu_secs) = timed_passes(|| {
                p = texts.iter().map(|t| nb.classify(t).0).collect();
                Ok(())
            })?;
            for t in &texts {
                let s = Instant::now();
                std::hint::black_box(nb.classify(t));
                lat.push(s.elapsed().as_secs_f64() * 1e3);
            }
            labels = task.labels.clone();
            pred = p;
            model_bytes = nb.n_bytes() as u64;
        }
        "lstm" => {
            let path = PathBuf::from(spec_str(spec, "model")?);
            let model = LstmClassifier::load(&path)
                .with_context(|| format!("loading {}", path.display()))?;
            if let Some(l) = task.labels.iter().find(|l| !model.labels.contains(l)) {
                bail!(
                    "{}: the LSTM does not know the task's label {l:?} (its labels: {:?})",
                    path.display(),
                    model.labels
                );
            }
            let mut p = Vec::new();
            (batch_secs, cpu_secs) = timed_passes(|| {
                p = model
                    .classify_batch(&engine, &texts)?
                    .iter()
                    .map(|c| c.label)
                    .collect();
                Ok(())
            })?;
            for t in &texts {
                let s = Instant::now();
                model.classify(&engine, t)?;
                lat.push(s.elapsed().as_secs_f64() * 1e3);
            }
            labels = model.labels.clone();
            pred = p;
            model_bytes = std::fs::metadata(&path)?.len();
        }
        "zero" | "few" | "probe" => {
            let path = PathBuf::from(spec_str(spec, "model")?);
            let model = Arc::new(
                Model::load(&path).with_context(|| format!("loading {}", path.display()))?,
            );
            let max_tokens = spec_usize(spec, "max_text_tokens")?;
            let mut session = Session::new(
                &engine,
                model.clone(),
                4096.min(model.config.context_length.max(512)),
            )
            .with_full_cache(true);
            model_bytes = std::fs::metadata(&path)?.len();
            labels = task.labels.clone();
            let mut p = Vec::with_capacity(texts.len());
            if kind == "probe" {
                let probe_path = PathBuf::from(spec_str(spec, "probe")?);
                if !probe_path.exists() {
                    let t = Instant::now();
                    let info = fit_probe(spec, &task, &mut session, &probe_path)?;
                    extra["train_secs"] = json!(t.elapsed().as_secs_f64());
                    extra["probe_fit"] = info;
                }
                let probe = Probe::load(&probe_path)?;
                ensure!(
                    probe.labels == labels,
                    "{}: labels {:?}, the task's are {labels:?}",
                    probe_path.display(),
                    probe.labels
                );
                extra["probe_bytes"] = json!(probe.n_bytes());
                let (t, c) = (Instant::now(), cpu_seconds());
                for text in &texts {
                    let s = Instant::now();
                    p.push(probe.classify(&mut session, text)?.label);
                    lat.push(s.elapsed().as_secs_f64() * 1e3);
                }
                (batch_secs, cpu_secs) = (t.elapsed().as_secs_f64(), cpu_seconds() - c);
            } else {
                let defs = TASKS
                    .iter()
                    .find(|d| d.name == spec_str(spec, "task").unwrap_or(""))
                    .ok_or_else(|| anyhow!("unknown task"))?;
                let words: Vec<String> = labels
                    .iter()
                    .map(|l| {
                        defs.words
                            .iter()
                            .find(|(k, _)| k == l)
                            .map_or(l.clone(), |(_, w)| w.to_string())
                    })
                    .collect();
                let mut zs = ZeroShot::new(model.clone(), &words, defs.instruction)?;
                zs.max_text_tokens = max_tokens;
                if kind == "few" {
                    let refs = examples_per_class(
                        &task.train,
                        &labels,
                        spec_usize(spec, "shots_per_class")?,
                    );
                    zs = zs.with_examples(&refs, spec_usize(spec, "shot_tokens")?)?;
                    extra["shots"] = json!(refs.len());
                }
                // Calibrated on unlabelled training texts (batch calibration).
                let calib: Vec<&str> = task
                    .train
                    .iter()
                    .take(16)
                    .map(|e| e.text.as_str())
                    .collect();
                zs.calibrate(&mut session, &calib)?;
                let (t, c) = (Instant::now(), cpu_seconds());
                let (mut prompt, mut reused) = (0usize, 0usize);
                for text in &texts {
                    let s = Instant::now();
                    let r = zs.classify(&mut session, text)?;
                    lat.push(s.elapsed().as_secs_f64() * 1e3);
                    p.push(r.label);
                    prompt += r.prompt_tokens;
                    reused += r.reused_tokens;
                }
                (batch_secs, cpu_secs) = (t.elapsed().as_secs_f64(), cpu_seconds() - c);
                extra["words"] = json!(words);
                extra["prompt_tokens"] = json!(prompt);
                extra["reused_tokens"] = json!(reused);
            }
            pred = p;
        }
        other => bail!("unknown suite job kind {other:?}"),
    }
    Ok(json!({
        "spec": spec,
        "labels": labels,
        "truth": truth,
        "pred": pred.iter().map(|&i| labels.get(i).cloned().unwrap_or_default()).collect::<Vec<_>>(),
        "latency_ms": lat,
        "batch_secs": batch_secs,
        "cpu_secs": cpu_secs,
        "model_bytes": model_bytes,
        "peak_rss": crate::bench::peak_rss(),
        "rss_at_start": rss_before,
        "extra": extra,
    }))
}

/// Fit the linear probe on pooled features of the training split (the regularisation chosen
/// on the validation split) and write it to `out`.
#[cfg(feature = "train")]
fn fit_probe(spec: &Value, task: &TaskData, session: &mut Session, out: &Path) -> Result<Value> {
    let limit = spec_usize(spec, "train_limit")?;
    let train = &task.train[..task.train.len().min(limit)];
    let valid = &task.valid[..task.valid.len().min((limit / 4).max(1))];
    let (probe, r) = crate::train_probe::fit(
        session,
        Path::new(spec_str(spec, "model")?),
        spec_str(spec, "model_sha256")?,
        &task.labels,
        train,
        valid,
        spec_usize(spec, "max_text_tokens")?,
        &mut || {},
    )?;
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    probe.write(out)?;
    Ok(r.json(train.len(), valid.len()))
}

#[cfg(not(feature = "train"))]
fn fit_probe(_: &Value, _: &TaskData, _: &mut Session, out: &Path) -> Result<Value> {
    bail!(
        "{} is missing and this edgeinfer was built without the `train` feature, which fits \
         probes",
        out.display()
    )
}

/// Per-step cost along one long token sequence: the LSTM's recurrent step, or a decoder's
/// decode step at each position.
fn worker_steps(spec: &Value, engine: &Engine) -> Result<Value> {
    let steps = spec_usize(spec, "steps")?;
    let path = PathBuf::from(spec_str(spec, "model")?);
    let data = PathBuf::from(spec_str(spec, "data")?);
    let texts = read_split(&split_path(&data, spec_str(spec, "test_set")?, "test"))?;
    let (ns, cyc) = if spec_str(spec, "kind")? == "steps-lstm" {
        let model = LstmClassifier::load(&path)?;
        let mut ids = Vec::new();
        for e in texts.iter().cycle().take(100_000) {
            if ids.len() >= steps {
                break;
            }
            ids.extend(model.encode(&e.text)?);
        }
        ids.truncate(steps);
        let mut trace = StepTrace::default();
        model.logits_traced(engine, &ids, &mut trace)?; // warm-up
        model.logits_traced(engine, &ids, &mut trace)?;
        (trace.step_nanos, trace.step_cycles)
    } else {
        let model = Arc::new(Model::load(&path)?);
        let mut session = Session::new(engine, model, steps.max(16));
        decode_step_costs(&mut session, &texts, steps)?
    };
    Ok(
        json!({ "spec": spec, "steps": binned(&ns, &cyc, 16), "peak_rss": crate::bench::peak_rss() }),
    )
}

/// One contender's row, computed from its raw results.
#[derive(Clone, Debug)]
pub struct Metrics {
    pub n: usize,
    pub accuracy: f64,
    pub macro_f1: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub throughput: f64,
    pub cpu_s_per_1k: f64,
    pub model_bytes: u64,
    pub peak_rss: u64,
}

/// The metrics of one raw result (what the report prints; the tests recompute them).
pub fn metrics(raw: &Value) -> Result<Metrics> {
    let strs = |k: &str| -> Result<Vec<String>> {
        raw[k]
            .as_array()
            .ok_or_else(|| anyhow!("raw result: no {k}"))?
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(|| anyhow!("{k}")))
            .collect()
    };
    let labels = strs("labels")?;
    let (truth, pred) = (strs("truth")?, strs("pred")?);
    ensure!(
        truth.len() == pred.len() && !truth.is_empty(),
        "raw result: {} truths, {} predictions",
        truth.len(),
        pred.len()
    );
    let idx = |l: &String| labels.iter().position(|x| x == l).unwrap_or(usize::MAX);
    let t: Vec<usize> = truth.iter().map(idx).collect();
    let p: Vec<usize> = pred.iter().map(idx).collect();
    let (accuracy, macro_f1) = scores(&p, &t, labels.len());
    let mut lat: Vec<f64> = raw["latency_ms"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    lat.sort_by(f64::total_cmp);
    let f = |k: &str| raw[k].as_f64().unwrap_or(f64::NAN);
    let n = truth.len();
    Ok(Metrics {
        n,
        accuracy,
        macro_f1,
        p50_ms: percentile(&lat, 0.5),
        p95_ms: percentile(&lat, 0.95),
        throughput: n as f64 / f("batch_secs"),
        cpu_s_per_1k: f("cpu_secs") / n as f64 * 1000.0,
        model_bytes: raw["model_bytes"].as_u64().unwrap_or(0)
            + raw["extra"]["probe_bytes"].as_u64().unwrap_or(0),
        peak_rss: raw["peak_rss"].as_u64().unwrap_or(0),
    })
}

struct Job {
    /// Task name (a table in the report), contender name (a row).
    task: String,
    name: String,
    spec: Value,
    /// Files whose contents the result depends on.
    inputs: Vec<PathBuf>,
}

fn decoder_label(path: &Path) -> String {
    let s = path
        .file_name()
        .map(|s| s.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if s.contains("smollm2") {
        "SmolLM2-135M".into()
    } else if s.contains("qwen2.5") {
        "Qwen2.5-0.5B".into()
    } else if s.contains("gemma-3") || s.contains("gemma3") {
        "Gemma3-270M".into()
    } else {
        s.trim_end_matches(".gguf").to_string()
    }
}

/// Run (or reuse) every job and write the report. Returns the report's markdown.
pub fn run(out: &mut impl Write, a: &CompareArgs) -> Result<()> {
    if let Some(w) = &a.suite_worker {
        let spec: Value = serde_json::from_str(w).context("suite worker spec")?;
        writeln!(out, "{}", worker(&spec)?)?;
        return Ok(());
    }
    let tasks: Vec<&TaskDef> = a
        .tasks
        .iter()
        .map(|t| {
            TASKS.iter().find(|d| d.name == t).ok_or_else(|| {
                let names: Vec<&str> = TASKS.iter().map(|d| d.name).collect();
                anyhow!("unknown task {t:?} (tasks: {})", names.join(", "))
            })
        })
        .collect::<Result<_>>()?;
    let data = match &a.data {
        Some(d) => d.clone(),
        None => crate::model_path::text_data()?,
    };
    // Every task's data is checked before anything runs.
    for t in &tasks {
        load_task(&data, t.train, t.test).with_context(|| format!("task {}", t.name))?;
    }
    let decoders: Vec<PathBuf> = a
        .decoders
        .iter()
        .map(|d| crate::model_path::resolve(Some(PathBuf::from(d))))
        .collect::<Result<_>>()?;
    let dir = a.out.clone();
    let raw_dir = dir.join("raw");
    std::fs::create_dir_all(&raw_dir).with_context(|| format!("creating {}", raw_dir.display()))?;
    let mut memo = HashMap::new();
    let variants_dir = dir.join("lstm");
    std::fs::create_dir_all(&variants_dir)?;
    let base = json!({
        "data": data.display().to_string(),
        "test_limit": a.test_limit,
        "train_limit": a.train_limit,
        "threads": a.threads,
    });
    let mut jobs = Vec::new();
    let mut lstm_files: BTreeMap<String, Vec<(String, PathBuf)>> = BTreeMap::new();
    for t in &tasks {
        let mk = |kind: &str, extra: Value| {
            let mut s = base.clone();
            s["kind"] = json!(kind);
            s["task"] = json!(t.name);
            s["train_set"] = json!(t.train);
            s["test_set"] = json!(t.test);
            for (k, v) in extra.as_object().into_iter().flatten() {
                s[k] = v.clone();
            }
            s
        };
        let data_files: Vec<PathBuf> = ["train", "valid"]
            .iter()
            .map(|s| split_path(&data, t.train, s))
            .chain([split_path(&data, t.test, "test")])
            .collect();
        jobs.push(Job {
            task: t.name.into(),
            name: "Naive Bayes (bag of words)".into(),
            spec: mk("nb", json!({})),
            inputs: data_files.clone(),
        });
        if !lstm_files.contains_key(t.train) {
            lstm_files.insert(
                t.train.to_string(),
                lstm_variants(&a.lstm_dir, t.train, &variants_dir)?,
            );
        }
        for (name, path) in &lstm_files[t.train] {
            let mut inputs = data_files.clone();
            inputs.push(path.clone());
            jobs.push(Job {
                task: t.name.into(),
                name: name.clone(),
                spec: mk("lstm", json!({"model": path.display().to_string()})),
                inputs,
            });
        }
        for d in &decoders {
            let sha = sha256_file(d, &mut memo)?;
            let label = decoder_label(d);
            let mut inputs = data_files.clone();
            inputs.push(d.clone());
            let common = json!({
                "model": d.display().to_string(), "model_sha256": sha,
                "max_text_tokens": a.max_text_tokens,
            });
            if t.train == t.test {
                // Zero-shot uses no training data: the crossed rows would repeat it.
                jobs.push(Job {
                    task: t.name.into(),
                    name: format!("{label} zero-shot"),
                    spec: mk("zero", common.clone()),
                    inputs: inputs.clone(),
                });
            }
            let mut few = common.clone();
            few["shots_per_class"] = json!(a.shots_per_class);
            few["shot_tokens"] = json!(a.shot_tokens);
            jobs.push(Job {
                task: t.name.into(),
                name: format!("{label} few-shot ({}/class)", a.shots_per_class),
                spec: mk("few", few),
                inputs: inputs.clone(),
            });
            let mut probe = common.clone();
            let key = short_hash(&format!(
                "{}|{sha}|{}|{}|{}",
                t.train,
                sha256_file(&split_path(&data, t.train, "train"), &mut memo)?,
                a.train_limit,
                a.max_text_tokens
            ));
            probe["probe"] = json!(dir
                .join("probes")
                .join(format!("{}-{}-{key}.gguf", t.train, label.to_lowercase()))
                .display()
                .to_string());
            jobs.push(Job {
                task: t.name.into(),
                name: format!("{label} probe (int8 head)"),
                spec: mk("probe", probe),
                inputs,
            });
        }
    }
    // The per-step cost: the LSTM variants of the first task, and each decoder.
    if a.steps > 0 {
        if let Some(t) = tasks.first() {
            for (name, path) in &lstm_files[t.train] {
                let mut s = base.clone();
                s["kind"] = json!("steps-lstm");
                s["model"] = json!(path.display().to_string());
                s["test_set"] = json!(t.test);
                s["steps"] = json!(a.steps);
                jobs.push(Job {
                    task: "steps".into(),
                    name: name.clone(),
                    spec: s,
                    inputs: vec![path.clone(), split_path(&data, t.test, "test")],
                });
            }
            for d in &decoders {
                let mut s = base.clone();
                s["kind"] = json!("steps-decoder");
                s["model"] = json!(d.display().to_string());
                s["test_set"] = json!(t.test);
                s["steps"] = json!(a.steps);
                jobs.push(Job {
                    task: "steps".into(),
                    name: format!("{} decode", decoder_label(d)),
                    spec: s,
                    inputs: vec![d.clone(), split_path(&data, t.test, "test")],
                });
            }
        }
    }

    let exe = std::env::current_exe()?;
    let pb = indicatif::ProgressBar::new(jobs.len() as u64);
    pb.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} [{elapsed}] {msg}")
            .expect("template"),
    );
    let mut results: Vec<(Job, Value)> = Vec::new();
    let started = Instant::now();
    for job in jobs {
        let mut h = Sha256::new();
        h.update(format!("edgeinfer-suite-v{SUITE_VERSION}\n{}\n", job.spec));
        for p in &job.inputs {
            h.update(sha256_file(p, &mut memo)?);
        }
        let key = format!("{:x}", h.finalize());
        let file = raw_dir.join(format!(
            "{}--{}--{}.json",
            job.task.replace("->", "_to_"),
            job.name
                .to_lowercase()
                .replace(|c: char| !c.is_ascii_alphanumeric(), "-"),
            &key[..16]
        ));
        pb.set_message(format!("{} · {}", job.task, job.name));
        let v: Value = if file.exists() && !a.fresh {
            say(
                &pb,
                format!("{} · {}: cached ({})", job.task, job.name, file.display()),
            );
            serde_json::from_slice(&std::fs::read(&file)?)
                .with_context(|| format!("reading {}", file.display()))?
        } else {
            let t = Instant::now();
            let o = std::process::Command::new(&exe)
                .arg("compare")
                .arg("--suite-worker")
                .arg(job.spec.to_string())
                .stderr(std::process::Stdio::piped())
                .output()
                .with_context(|| format!("running {} · {}", job.task, job.name))?;
            if !o.status.success() {
                bail!(
                    "{} · {} failed: {}",
                    job.task,
                    job.name,
                    String::from_utf8_lossy(&o.stderr).trim()
                );
            }
            let mut v: Value = serde_json::from_slice(&o.stdout).with_context(|| {
                format!(
                    "{} · {}: {}",
                    job.task,
                    job.name,
                    String::from_utf8_lossy(&o.stdout)
                )
            })?;
            v["job"] = json!({"task": job.task, "name": job.name});
            let tmp = file.with_extension("json.part");
            std::fs::write(&tmp, serde_json::to_vec_pretty(&v)?)?;
            std::fs::rename(&tmp, &file)?;
            let summary = match metrics(&v) {
                Ok(m) => format!("{:.1} %", 100.0 * m.accuracy),
                Err(_) => "done".into(),
            };
            say(
                &pb,
                format!(
                    "{} · {}: {summary} ({:.0} s)",
                    job.task,
                    job.name,
                    t.elapsed().as_secs_f64()
                ),
            );
            v
        };
        pb.inc(1);
        results.push((job, v));
    }
    pb.finish_and_clear();
    let md = report(&results, &data)?;
    std::fs::write(dir.join("report.md"), &md)?;
    pareto_svg(&dir.join("pareto.svg"), &results)?;
    let steps: Vec<crate::compare::Row> = results
        .iter()
        .filter(|(j, _)| j.task == "steps")
        .map(|(j, v)| crate::compare::Row {
            name: j.name.clone(),
            model_bytes: 0,
            v: v.clone(),
        })
        .collect();
    if !steps.is_empty() {
        crate::compare::chart(&dir.join("steps.svg"), &steps)?;
    }
    write!(out, "{md}")?;
    writeln!(
        out,
        "\nreport: {} (and pareto.svg, steps.svg); raw results in {}; {:.0} s",
        dir.join("report.md").display(),
        raw_dir.display(),
        started.elapsed().as_secs_f64()
    )?;
    Ok(())
}

/// A line above the progress bar, or on stderr when there is no bar (not a terminal).
fn say(pb: &indicatif::ProgressBar, line: String) {
    if pb.is_hidden() {
        eprintln!("{line}");
    } else {
        pb.println(line);
    }
}

fn short_hash(s: &str) -> String {
    format!("{:x}", Sha256::digest(s.as_bytes()))[..12].to_string()
}

/// The LSTM of data set `set` (`<dir>/<set>.q8_0.gguf`) written as f32, Q8_0 and Q4_0 files.
fn lstm_variants(dir: &Path, set: &str, out: &Path) -> Result<Vec<(String, PathBuf)>> {
    let src_path = dir.join(format!("{set}.q8_0.gguf"));
    ensure!(
        src_path.exists(),
        "{} not found: the suite needs an LSTM trained on {set} (see fixtures/lstm/README.md for \
         the train-lstm command), or pass --lstm-dir",
        src_path.display()
    );
    let src =
        GgufFile::open(&src_path).with_context(|| format!("opening {}", src_path.display()))?;
    let (weights, labels, tok) = LstmWeights::from_file(&src)?;
    let mut v = Vec::new();
    for (name, t) in [
        ("LSTM f32", DType::F32),
        ("LSTM int8 (Q8_0)", DType::Q8_0),
        ("LSTM int4 (Q4_0)", DType::Q4_0),
    ] {
        let p = out.join(format!("{set}.{}.gguf", t.name().to_ascii_lowercase()));
        let bytes = weights.to_gguf(t, &labels, tok.as_deref().unwrap_or(""))?;
        if std::fs::read(&p).ok().as_deref() != Some(&bytes[..]) {
            weights.write_gguf(&p, t, &labels, tok.as_deref().unwrap_or(""))?;
        }
        v.push((name.to_string(), p));
    }
    Ok(v)
}

fn fmt_ms(ms: f64) -> String {
    if ms < 0.1 {
        format!("{:.1} µs", ms * 1e3)
    } else if ms < 10.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

/// Three significant digits or so.
fn fmt_num(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 1.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.3}")
    }
}

fn fmt_bytes(b: u64) -> String {
    if b >= 1_000_000 {
        format!("{:.1} MB", b as f64 / 1e6)
    } else {
        format!("{:.0} kB", b as f64 / 1e3)
    }
}

/// The markdown report: one table per task, from the raw results.
fn report(results: &[(Job, Value)], data: &Path) -> Result<String> {
    let mut md = String::from("# Classifier comparison\n\n");
    md += &format!(
        "Data: {}. Accuracy and macro-F1 on the first N test examples of each task's fixed \
         split (the same N texts for every contender). Latency: one text at a time; \
         throughput and CPU time: the whole subset (batched where the contender batches).\n",
        data.display()
    );
    let mut tasks: Vec<&str> = Vec::new();
    for (j, _) in results {
        if j.task != "steps" && !tasks.contains(&j.task.as_str()) {
            tasks.push(&j.task);
        }
    }
    // The headline: every contender's accuracy and p50 latency on every task.
    let mut names: Vec<&str> = Vec::new();
    for (j, _) in results {
        if j.task != "steps" && !names.contains(&j.name.as_str()) {
            names.push(&j.name);
        }
    }
    md += "\n## Summary: accuracy · p50 latency per text\n\n| contender |";
    for t in &tasks {
        md += &format!(" {t} |");
    }
    md += "\n|---|";
    md += &"---:|".repeat(tasks.len());
    md += "\n";
    for n in &names {
        md += &format!("| {n} |");
        for t in &tasks {
            let cell = results
                .iter()
                .find(|(j, _)| j.task == *t && j.name == *n)
                .and_then(|(_, v)| metrics(v).ok())
                .map_or("–".to_string(), |m| {
                    format!("{:.1} % · {}", 100.0 * m.accuracy, fmt_ms(m.p50_ms))
                });
            md += &format!(" {cell} |");
        }
        md += "\n";
    }
    for t in tasks {
        md += &format!("\n## {t}\n\n");
        md += "| contender | N | accuracy | macro-F1 | p50 latency | p95 latency | throughput | CPU-s / 1k texts | model bytes | peak RSS |\n";
        md += "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
        for (j, v) in results.iter().filter(|(j, _)| j.task == t) {
            let m = metrics(v).with_context(|| format!("{t} · {}", j.name))?;
            md += &format!(
                "| {} | {} | {:.1} % | {:.3} | {} | {} | {} texts/s | {} | {} | {:.0} MiB |\n",
                j.name,
                m.n,
                100.0 * m.accuracy,
                m.macro_f1,
                fmt_ms(m.p50_ms),
                fmt_ms(m.p95_ms),
                fmt_num(m.throughput),
                fmt_num(m.cpu_s_per_1k),
                fmt_bytes(m.model_bytes),
                m.peak_rss as f64 / (1024.0 * 1024.0),
            );
        }
    }
    Ok(md)
}

/// Accuracy against latency (log scale), one panel per task, with each panel's Pareto front.
fn pareto_svg(path: &Path, results: &[(Job, Value)]) -> Result<()> {
    use plotters::prelude::*;
    let e = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", path.display());
    let mut tasks: Vec<&str> = Vec::new();
    for (j, _) in results {
        if j.task != "steps" && !tasks.contains(&j.task.as_str()) {
            tasks.push(&j.task);
        }
    }
    if tasks.is_empty() {
        return Ok(());
    }
    let cols = tasks.len().min(3);
    let rows = tasks.len().div_ceil(cols);
    let root = SVGBackend::new(path, (520 * cols as u32, 420 * rows as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let panels = root.split_evenly((rows, cols));
    for (t, panel) in tasks.iter().zip(panels.iter()) {
        let pts: Vec<(String, f64, f64)> = results
            .iter()
            .filter(|(j, _)| j.task == *t)
            .filter_map(|(j, v)| {
                let m = metrics(v).ok()?;
                Some((j.name.clone(), m.p50_ms.max(1e-4), 100.0 * m.accuracy))
            })
            .collect();
        let (xmin, xmax) = pts.iter().fold((f64::MAX, f64::MIN), |(lo, hi), p| {
            (lo.min(p.1), hi.max(p.1))
        });
        let ymin = pts.iter().map(|p| p.2).fold(100.0, f64::min);
        let mut c = ChartBuilder::on(panel)
            .caption(*t, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(48)
            .build_cartesian_2d(
                (xmin / 2.0..xmax * 2.0).log_scale(),
                (ymin - 5.0).max(0.0)..100.0,
            )
            .map_err(|x| e(&x))?;
        c.configure_mesh()
            .x_desc("p50 latency per text (ms, log)")
            .y_desc("accuracy (%)")
            .draw()
            .map_err(|x| e(&x))?;
        // The front: sorted by latency, each point that beats every faster one.
        let mut sorted = pts.clone();
        sorted.sort_by(|a, b| a.1.total_cmp(&b.1));
        let mut front = Vec::new();
        let mut best = f64::MIN;
        for p in &sorted {
            if p.2 > best {
                best = p.2;
                front.push((p.1, p.2));
            }
        }
        c.draw_series(LineSeries::new(front, BLACK.mix(0.4).stroke_width(1)))
            .map_err(|x| e(&x))?;
        for (i, (name, x, y)) in pts.iter().enumerate() {
            let color = HSLColor(i as f64 / pts.len() as f64, 0.75, 0.42);
            c.draw_series(std::iter::once(Circle::new((*x, *y), 4, color.filled())))
                .map_err(|x| e(&x))?
                .label(name.clone())
                .legend(move |(x, y)| Circle::new((x + 6, y), 4, color.filled()));
        }
        c.configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 11))
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(|x| e(&x))?;
    }
    root.present().map_err(|x| e(&x))?;
    Ok(())
}
