//! `edgeinfer bench`: prefill (pp) and decode (tg) speed like llama-bench, plus load time, time
//! to first token, peak RSS, the memory-read roofline and an optional per-step trace.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use std::sync::Arc;

use edgeinfer_transformer::{Model, Session, StepProfile};
use rayon::prelude::*;
use serde_json::json;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// GGUF model (default: the default model, fetched if absent).
    #[arg(short, long)]
    pub model: Option<PathBuf>,
    /// Prompt lengths for the prefill test, comma-separated.
    #[arg(short = 'p', long, default_value = "128,512", value_delimiter = ',')]
    pub prompt: Vec<usize>,
    /// Tokens to generate in the decode test (0: skip).
    #[arg(short = 'n', long, default_value_t = 128)]
    pub n_gen: usize,
    /// Thread counts, comma-separated.
    #[arg(short = 't', long, default_value = "1,2", value_delimiter = ',')]
    pub threads: Vec<usize>,
    /// Sessions decoding together (`Session::decode_many`: one pass over every session's next
    /// token, as `serve` runs its slots), comma-separated; a count above 1 adds a decode test
    /// `tgN xS` reporting the aggregate tokens/s of S sessions.
    #[arg(short = 's', long, default_value = "1", value_delimiter = ',')]
    pub sessions: Vec<usize>,
    /// Measured repetitions (after one discarded warm-up run).
    #[arg(short = 'r', long, default_value_t = 5)]
    pub reps: usize,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// Write a per-step timeline (CSV if the name ends in .csv, else JSON).
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// Size of the buffer for the memory-bandwidth measurement, MiB.
    #[arg(long, default_value_t = 1024)]
    pub bandwidth_mib: usize,
}

#[derive(Clone, Debug)]
struct Stat {
    median: f64,
    min: f64,
    max: f64,
}

fn stat(mut v: Vec<f64>) -> Stat {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Stat {
        median,
        min: v[0],
        max: v[n - 1],
    }
}

/// Peak resident set size of this process in bytes (Linux `VmHWM`), if known.
pub fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Sequential read bandwidth (bytes/s, best of 3) over a buffer far larger than the caches.
fn read_bandwidth(pool: &rayon::ThreadPool, mib: usize) -> f64 {
    let n = mib * (1 << 20) / 8;
    let buf: Vec<u64> = (0..n as u64).collect();
    let threads = pool.current_num_threads();
    let mut best = 0.0f64;
    for _ in 0..3 {
        let t = Instant::now();
        let s: u64 = pool.install(|| {
            buf.par_chunks(n.div_ceil(threads))
                .map(|c| {
                    let mut a = [0u64; 8];
                    for w in c.chunks_exact(8) {
                        for k in 0..8 {
                            a[k] = a[k].wrapping_add(w[k]);
                        }
                    }
                    a.iter().fold(0u64, |x, y| x.wrapping_add(*y))
                })
                .reduce(|| 0, u64::wrapping_add)
        });
        std::hint::black_box(s);
        best = best.max((n * 8) as f64 / t.elapsed().as_secs_f64());
    }
    best
}

/// Deterministic, ordinary (non-special) token ids for synthetic prompts.
fn prompt_tokens(model: &Model, n: usize) -> Vec<u32> {
    let vocab = model.config.vocab_size as u64;
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let id = (x % vocab) as u32;
        if !model.tokenizer.is_control(id) {
            out.push(id);
        }
    }
    out
}

struct TraceRow {
    threads: usize,
    step: usize,
    phase: &'static str,
    p: StepProfile,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub fn run(out: &mut impl Write, a: &BenchArgs) -> Result<()> {
    if a.reps == 0 || a.threads.contains(&0) || a.sessions.contains(&0) {
        bail!("--reps and every --threads and --sessions value must be at least 1");
    }
    let path = crate::model_path::resolve(a.model.clone())?;
    // The engine of the first thread count, for the load-to-first-token time (the pools are
    // started before the clock).
    let first_engine = crate::llm::engine(a.threads.first().copied())?;
    // Warm the page cache, then time a load and a load-to-first-token with a 5-token prompt.
    drop(Model::load(&path)?);
    let t = Instant::now();
    let model =
        Arc::new(Model::load(&path).with_context(|| format!("loading {}", path.display()))?);
    let load = t.elapsed();
    let ttft = {
        let t = Instant::now();
        let m = Arc::new(Model::load(&path)?);
        // Synthetic ids: every vocabulary type can run this, encoder or not.
        let ids = prompt_tokens(&m, 5);
        let mut s = Session::new(&first_engine, m, 16);
        let logits = s.forward(&ids, 0)?;
        std::hint::black_box(logits.iter().copied().fold(f32::MIN, f32::max));
        t.elapsed()
    };
    let bytes_per_token = model.weight_bytes_per_token() as f64;
    let max_ctx = a.prompt.iter().copied().max().unwrap_or(0).max(a.n_gen + 1);
    let mut results = Vec::new();
    let mut trace = Vec::new();
    // The largest KV cache allocation seen, and at how many positions.
    let mut kv_used = (0usize, 0usize);
    for &threads in &a.threads {
        let engine = crate::llm::engine(Some(threads))?;
        for &pp in &a.prompt {
            if pp == 0 {
                continue;
            }
            let toks = prompt_tokens(&model, pp);
            let mut speeds = Vec::new();
            for rep in 0..=a.reps {
                let mut s = Session::new(&engine, model.clone(), max_ctx);
                s.set_profiling(a.trace.is_some());
                let t = Instant::now();
                s.forward(&toks, 0)?;
                let dt = t.elapsed();
                kv_used = kv_used.max((s.kv_bytes(), s.n_past()));
                if rep > 0 {
                    speeds.push(pp as f64 / dt.as_secs_f64());
                }
                if rep == a.reps && a.trace.is_some() {
                    trace.push(TraceRow {
                        threads,
                        step: 0,
                        phase: "prefill",
                        p: s.last_profile(),
                    });
                }
            }
            results.push((threads, format!("pp{pp}"), stat(speeds), None));
        }
        if a.n_gen > 1 {
            let first = prompt_tokens(&model, 1);
            let mut speeds = Vec::new();
            for rep in 0..=a.reps {
                let mut s = Session::new(&engine, model.clone(), max_ctx);
                s.set_profiling(a.trace.is_some());
                let mut logits = s.forward(&first, 0)?;
                let mut total = Duration::ZERO;
                for step in 0..a.n_gen {
                    let tok = edgeinfer_transformer::argmax(&logits);
                    let t = Instant::now();
                    logits = s.forward(&[tok], s.n_past())?;
                    // the first decode step is excluded from the rate
                    if step > 0 {
                        total += t.elapsed();
                    }
                    if rep == a.reps && a.trace.is_some() {
                        trace.push(TraceRow {
                            threads,
                            step: step + 1,
                            phase: "decode",
                            p: s.last_profile(),
                        });
                    }
                }
                kv_used = kv_used.max((s.kv_bytes(), s.n_past()));
                if rep > 0 {
                    speeds.push((a.n_gen - 1) as f64 / total.as_secs_f64());
                }
            }
            results.push((threads, format!("tg{}", a.n_gen), stat(speeds), Some(1)));
        }
        for &n in a.sessions.iter().filter(|&&n| n > 1 && a.n_gen > 1) {
            let mut speeds = Vec::new();
            for rep in 0..=a.reps {
                let mut sessions: Vec<Session> = (0..n)
                    .map(|_| Session::new(&engine, model.clone(), max_ctx))
                    .collect();
                // Each session starts from its own prompt token: different sequences.
                let firsts = prompt_tokens(&model, n);
                let mut next = Vec::with_capacity(n);
                for (s, &t) in sessions.iter_mut().zip(&firsts) {
                    next.push(edgeinfer_transformer::argmax(&s.forward(&[t], 0)?));
                }
                let mut total = Duration::ZERO;
                for step in 0..a.n_gen {
                    let mut refs: Vec<&mut Session> = sessions.iter_mut().collect();
                    let t = Instant::now();
                    let logits = Session::decode_many(&mut refs, &next)?;
                    if step > 0 {
                        total += t.elapsed();
                    }
                    next = logits
                        .iter()
                        .map(|l| edgeinfer_transformer::argmax(l))
                        .collect();
                }
                if rep > 0 {
                    speeds.push((n * (a.n_gen - 1)) as f64 / total.as_secs_f64());
                }
            }
            results.push((
                threads,
                format!("tg{} x{n}", a.n_gen),
                stat(speeds),
                Some(n),
            ));
        }
    }
    let rss = peak_rss();
    let mut bandwidth = Vec::new();
    for &threads in &a.threads {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()?;
        bandwidth.push((threads, read_bandwidth(&pool, a.bandwidth_mib)));
    }
    let bw = |t: usize| {
        bandwidth
            .iter()
            .find(|b| b.0 == t)
            .map(|b| b.1)
            .unwrap_or(f64::NAN)
    };
    // A decode step reads the weights once for the `per_step` tokens it computes.
    let roofline =
        |t: usize, tok_s: f64, per_step: usize| bytes_per_token * tok_s / per_step as f64 / bw(t);

    if let Some(p) = &a.trace {
        write_trace(p, &trace)?;
    }
    let file_mib = std::fs::metadata(&path)
        .map(|m| m.len() as f64 / (1 << 20) as f64)
        .unwrap_or(0.0);
    if a.json {
        let rows: Vec<_> = results
            .iter()
            .map(|(t, test, s, tg)| {
                json!({"threads": t, "test": test, "tok_s_median": s.median, "tok_s_min": s.min, "tok_s_max": s.max,
                       "roofline_fraction": tg.map(|n| roofline(*t, s.median, n))})
            })
            .collect();
        let doc = json!({
            "model": path, "model_mib": file_mib, "kernels": format!("{:?}", first_engine.level()),
            "reps": a.reps, "load_ms": ms(load), "load_to_first_token_ms": ms(ttft),
            "peak_rss_bytes": rss, "weight_bytes_per_token": bytes_per_token,
            "kv_cache_bytes": kv_used.0, "kv_cache_positions": kv_used.1,
            "read_bandwidth_bytes_s": bandwidth.iter().map(|(t, b)| json!({"threads": t, "bytes_s": b})).collect::<Vec<_>>(),
            "results": rows,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "model: {} ({file_mib:.1} MiB), kernels: {:?}, {} reps after a warm-up",
        path.display(),
        first_engine.level(),
        a.reps
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "| threads | test | tok/s (median) | min – max | weight GB/s | roofline |"
    )?;
    writeln!(out, "|---|---|---|---|---|---|")?;
    for (t, test, s, tg) in &results {
        let (gbs, roof) = match tg {
            Some(n) => (
                format!("{:.2}", bytes_per_token * s.median / *n as f64 / 1e9),
                format!("{:.0} %", 100.0 * roofline(*t, s.median, *n)),
            ),
            None => ("".into(), "".into()),
        };
        writeln!(
            out,
            "| {t} | {test} | {:.2} | {:.2} – {:.2} | {gbs} | {roof} |",
            s.median, s.min, s.max
        )?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "load (warm): {:.1} ms; load to first token, 5-token prompt: {:.1} ms",
        ms(load),
        ms(ttft)
    )?;
    if let Some(r) = rss {
        writeln!(out, "peak RSS: {:.1} MiB", r as f64 / (1 << 20) as f64)?;
    }
    for (t, b) in &bandwidth {
        writeln!(
            out,
            "memory read bandwidth, {t} thread(s): {:.1} GB/s ({} MiB sequential read)",
            b / 1e9,
            a.bandwidth_mib
        )?;
    }
    writeln!(
        out,
        "weights read per decode step: {:.1} MB",
        bytes_per_token / 1e6
    )?;
    writeln!(
        out,
        "KV cache (f16): {:.2} MiB allocated at {} positions",
        kv_used.0 as f64 / (1 << 20) as f64,
        kv_used.1
    )?;
    Ok(())
}

fn write_trace(path: &PathBuf, rows: &[TraceRow]) -> Result<()> {
    let csv = path.extension().is_some_and(|e| e == "csv");
    let text = if csv {
        let mut s =
            String::from("threads,step,phase,pos,tokens,wall_ms,matmul_ms,attention_ms,rest_ms\n");
        for r in rows {
            s.push_str(&format!(
                "{},{},{},{},{},{:.4},{:.4},{:.4},{:.4}\n",
                r.threads,
                r.step,
                r.phase,
                r.p.pos,
                r.p.tokens,
                ms(r.p.total),
                ms(r.p.matmul),
                ms(r.p.attention),
                ms(r.p.rest())
            ));
        }
        s
    } else {
        let v: Vec<_> = rows
            .iter()
            .map(|r| json!({"threads": r.threads, "step": r.step, "phase": r.phase, "pos": r.p.pos, "tokens": r.p.tokens,
                            "wall_ms": ms(r.p.total), "matmul_ms": ms(r.p.matmul), "attention_ms": ms(r.p.attention), "rest_ms": ms(r.p.rest())}))
            .collect();
        serde_json::to_string_pretty(&v)?
    };
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
