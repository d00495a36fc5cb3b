//! The decoder commands: generate, chat, tokenize, score, perplexity.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use edgeinfer_transformer::chat::{self, Message};
use edgeinfer_transformer::{
    Engine, Generator, Level, Logits, Model, Sampler, SamplerConfig, Session, StopReason,
};
use serde_json::json;

/// Options shared by the commands that load a model.
#[derive(Args, Clone, Debug)]
pub struct ModelArgs {
    /// GGUF model file, or a known model name fetched if absent: smollm2 (the default),
    /// qwen2.5-coder-0.5b, gemma3-270m.
    #[arg(short, long)]
    pub model: Option<PathBuf>,
    /// Worker threads (default: all cores).
    #[arg(short, long)]
    pub threads: Option<usize>,
}

/// Sampling options.
#[derive(Args, Clone, Debug)]
pub struct SampleArgs {
    /// Temperature; 0 is greedy.
    #[arg(long = "temp", default_value_t = 0.8)]
    pub temperature: f32,
    /// Keep the K most likely tokens (0: off).
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    /// Keep the smallest set whose probability reaches P (1: off).
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// Drop tokens less likely than MIN_P × the most likely (0: off).
    #[arg(long, default_value_t = 0.05)]
    pub min_p: f32,
    /// Repetition penalty over the last --repeat-last-n tokens (1: off).
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// Frequency penalty (0: off).
    #[arg(long, default_value_t = 0.0)]
    pub frequency_penalty: f32,
    /// Presence penalty (0: off).
    #[arg(long, default_value_t = 0.0)]
    pub presence_penalty: f32,
    /// Window of the penalties.
    #[arg(long, default_value_t = 64)]
    pub repeat_last_n: usize,
    /// Random seed (default: from the clock; printed with --json).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Stop when this text appears (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
}

impl SampleArgs {
    fn config(&self) -> SamplerConfig {
        let seed = self.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
        });
        SamplerConfig {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            frequency_penalty: self.frequency_penalty,
            presence_penalty: self.presence_penalty,
            penalty_last_n: self.repeat_last_n,
            seed,
        }
    }
}

/// The engine the commands compute on: `threads` threads (default: all cores); the best
/// kernel level the CPU has, capped by `EDGEINFER_KERNELS` (`scalar`, `avx2`, `avxvnni`,
/// `neon`, `dotprod`, `i8mm`); the decode team on unless `EDGEINFER_DECODE=fork-join`. The
/// CLI is the only place where environment variables choose how the library computes.
pub fn engine(threads: Option<usize>) -> Result<Engine> {
    let cap = std::env::var("EDGEINFER_KERNELS").ok();
    let team = std::env::var_os("EDGEINFER_DECODE").is_none_or(|v| v != "fork-join");
    let mut b = Engine::builder()
        .level(Level::best_up_to_named(cap.as_deref()))
        .decode_team(team);
    if let Some(n) = threads {
        if n == 0 {
            bail!("--threads must be at least 1");
        }
        b = b.threads(n);
    }
    b.build().context("starting the engine")
}

/// The model of `args` (shared) and the engine to run it on, and the load time.
pub fn load(args: &ModelArgs) -> Result<(Arc<Model>, Engine, Duration)> {
    let engine = engine(args.threads)?;
    let path = crate::model_path::resolve(args.model.clone())?;
    let t = Instant::now();
    let model = Model::load(&path).with_context(|| format!("loading {}", path.display()))?;
    Ok((Arc::new(model), engine, t.elapsed()))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn stop_name(r: Option<&StopReason>) -> String {
    match r {
        Some(StopReason::EndOfGeneration) => "eog".into(),
        Some(StopReason::StopString(s)) => format!("stop:{s}"),
        Some(StopReason::MaxTokens) => "max_tokens".into(),
        Some(StopReason::ContextFull) => "context_full".into(),
        Some(StopReason::Cancelled) => "cancelled".into(),
        Some(other) => format!("{other:?}"),
        None => "none".into(),
    }
}

/// `edgeinfer generate`.
#[allow(clippy::too_many_arguments)]
pub fn generate(
    out: &mut impl Write,
    margs: &ModelArgs,
    sargs: &SampleArgs,
    prompt: &str,
    n: usize,
    ctx: usize,
    use_chat: bool,
    as_json: bool,
) -> Result<()> {
    let (model, engine, load_time) = load(margs)?;
    let text = if use_chat {
        let messages = [Message::new("user", prompt)];
        chat::render_for(
            chat::template_for(&model),
            &model.tokenizer,
            &messages,
            true,
        )?
    } else {
        prompt.to_string()
    };
    let prompt_ids = model.tokenizer.encode(&text, true)?;
    if prompt_ids.is_empty() {
        bail!("the prompt is empty: give some text with -p");
    }
    let ctx = ctx.min(model.config.context_length);
    let mut session = Session::new(&engine, model.clone(), ctx);
    let cfg = sargs.config();
    let seed = cfg.seed;
    let t0 = Instant::now();
    let mut gen = Generator::new(&mut session, Sampler::new(cfg), &prompt_ids, n)?
        .with_stop_strings(sargs.stop.clone());
    let mut ttft = None;
    let mut full = String::new();
    for piece in gen.by_ref() {
        let piece = piece?;
        ttft.get_or_insert_with(|| t0.elapsed());
        full.push_str(&piece.text);
        if !as_json {
            write!(out, "{}", piece.text)?;
            out.flush()?;
        }
    }
    let prefill = gen.prefill_time();
    let decode: Duration = gen.decode_times().iter().sum();
    let n_decode = gen.decode_times().len();
    let tok_s = |n: usize, d: Duration| {
        if d.is_zero() {
            0.0
        } else {
            n as f64 / d.as_secs_f64()
        }
    };
    if as_json {
        let doc = json!({
            "prompt": text,
            "prompt_ids": prompt_ids,
            "generated_ids": gen.generated(),
            "text": full,
            "stop_reason": stop_name(gen.stop_reason()),
            "seed": seed,
            "timings": {
                "load_ms": ms(load_time),
                "prefill_ms": ms(prefill),
                "prefill_tokens": prompt_ids.len(),
                "prefill_tok_s": tok_s(prompt_ids.len(), prefill),
                "time_to_first_token_ms": ttft.map(ms),
                "decode_ms": ms(decode),
                "decode_steps": n_decode,
                "decode_tok_s": tok_s(n_decode, decode),
            }
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
    } else {
        writeln!(out)?;
        eprintln!(
            "[{} prompt tokens: {:.1} tok/s | {} generated, decode {:.1} tok/s | load {:.0} ms | stop: {}]",
            prompt_ids.len(),
            tok_s(prompt_ids.len(), prefill),
            gen.generated().len(),
            tok_s(n_decode, decode),
            ms(load_time),
            stop_name(gen.stop_reason()),
        );
    }
    Ok(())
}

/// `edgeinfer tokenize`.
pub fn tokenize(out: &mut impl Write, margs: &ModelArgs, text: &str, as_json: bool) -> Result<()> {
    let (model, _, _) = load(margs)?;
    let tk = &model.tokenizer;
    let ids = tk.encode(text, true)?;
    if as_json {
        let pieces: Vec<String> = ids.iter().map(|&i| tk.token_text(i)).collect();
        writeln!(out, "{}", json!({"ids": ids, "pieces": pieces}))?;
    } else {
        let s: Vec<String> = ids.iter().map(u32::to_string).collect();
        writeln!(out, "{}", s.join(" "))?;
    }
    Ok(())
}

fn top_k(row: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut idx: Vec<(u32, f32)> = row
        .iter()
        .enumerate()
        .map(|(i, &v)| (i as u32, v))
        .collect();
    let k = k.min(idx.len());
    if k == 0 {
        return Vec::new();
    }
    let cmp = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    idx.select_nth_unstable_by(k - 1, cmp);
    idx.truncate(k);
    idx.sort_by(cmp);
    idx
}

/// Parse `1,2,3`.
pub fn parse_ids(s: &str) -> Result<Vec<u32>> {
    s.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<u32>()
                .with_context(|| format!("--ids: {p:?} is not a token id"))
        })
        .collect()
}

/// `edgeinfer score`: one forward pass; per position the top-K and the next token's log-prob.
pub fn score(
    out: &mut impl Write,
    margs: &ModelArgs,
    text: Option<&str>,
    ids: Option<&str>,
    k: usize,
    as_json: bool,
) -> Result<()> {
    let (model, engine, _) = load(margs)?;
    let ids = match (text, ids) {
        (Some(t), None) => model.tokenizer.encode(t, true)?,
        (None, Some(i)) => parse_ids(i)?,
        _ => bail!("give exactly one of --text or --ids"),
    };
    if ids.is_empty() {
        bail!("nothing to score: the input has no tokens");
    }
    let mut session = Session::new(&engine, model.clone(), ids.len());
    let vocab = model.config.vocab_size;
    let logits = session.forward_logits(&ids, 0, Logits::All)?;
    let mut total = 0.0;
    let mut rows = Vec::with_capacity(ids.len());
    for (pos, row) in logits.chunks_exact(vocab).enumerate() {
        let next = ids
            .get(pos + 1)
            .map(|&n| edgeinfer_transformer::log_prob(row, n as usize));
        total += next.unwrap_or(0.0);
        rows.push((pos, top_k(row, k), next));
    }
    if as_json {
        let positions: Vec<_> = rows
            .iter()
            .map(|(pos, top, next)| {
                json!({"pos": pos, "token": ids[*pos], "top": top.iter().map(|(i, l)| json!([i, l])).collect::<Vec<_>>(), "next_token": ids.get(pos + 1), "next_logprob": next})
            })
            .collect();
        let doc = json!({"ids": ids, "positions": positions, "total_logprob": total, "n_scored": ids.len() - 1});
        writeln!(out, "{doc}")?;
    } else {
        for (pos, top, next) in &rows {
            let tops: Vec<String> = top.iter().map(|(i, l)| format!("{i}:{l:.3}")).collect();
            let nx = next
                .map(|v| format!("{v:.4}"))
                .unwrap_or_else(|| "-".into());
            writeln!(
                out,
                "{pos:>5} {:>7} {:<16} next_logprob {nx:>9}  top {}",
                ids[*pos],
                format!("{:?}", model.tokenizer.token_text(ids[*pos])),
                tops.join(" ")
            )?;
        }
        writeln!(
            out,
            "total log-prob {total:.4} over {} predicted tokens",
            ids.len() - 1
        )?;
    }
    Ok(())
}

/// `edgeinfer perplexity`, llama.cpp's method: non-overlapping windows of `ctx` tokens, the
/// second half of each scored.
pub fn perplexity(
    out: &mut impl Write,
    margs: &ModelArgs,
    file: &Path,
    ctx: usize,
    chunks: Option<usize>,
    as_json: bool,
) -> Result<()> {
    let (model, engine, _) = load(margs)?;
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "{}: not UTF-8 text (invalid byte at offset {})",
            file.display(),
            e.utf8_error().valid_up_to()
        )
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let tokens = model.tokenizer.encode(text, true)?;
    if ctx < 2 || ctx > model.config.context_length {
        bail!("--ctx must be in 2..={}", model.config.context_length);
    }
    let n_chunks = chunks.map_or(tokens.len() / ctx, |c| c.min(tokens.len() / ctx));
    let mut session = Session::new(&engine, model.clone(), ctx);
    let bar = indicatif::ProgressBar::new(n_chunks as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} chunks, {elapsed} elapsed, eta {eta} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let t0 = Instant::now();
    let r = edgeinfer_transformer::perplexity(&mut session, &tokens, ctx, chunks, |_, ppl| {
        bar.set_message(format!("ppl {ppl:.4}"));
        bar.inc(1);
    })
    .with_context(|| file.display().to_string())?;
    bar.finish_and_clear();
    let (ppl, err, count, per_chunk) = (r.ppl, r.ppl_err, r.scored, r.per_chunk);
    if as_json {
        writeln!(
            out,
            "{}",
            json!({"file": file, "tokens": tokens.len(), "ctx": ctx, "chunks": n_chunks, "scored_tokens": count, "ppl": ppl, "ppl_err": err, "ppl_per_chunk": per_chunk, "seconds": t0.elapsed().as_secs_f64()})
        )?;
    } else {
        let running: Vec<String> = per_chunk
            .iter()
            .enumerate()
            .map(|(i, p)| format!("[{}]{p:.4}", i + 1))
            .collect();
        writeln!(out, "{}", running.join(","))?;
        writeln!(out, "Final estimate: PPL = {ppl:.4} +/- {err:.5} ({n_chunks} chunks of {ctx}, {count} tokens scored, {:.1} s)", t0.elapsed().as_secs_f64())?;
    }
    Ok(())
}

/// `edgeinfer chat`: an interactive conversation that keeps the dialogue in the KV cache; each
/// turn only the tokens after the longest cached prefix are run.
pub fn chat(
    margs: &ModelArgs,
    sargs: &SampleArgs,
    system: Option<&str>,
    n: usize,
    ctx: usize,
) -> Result<()> {
    let (model, engine, _) = load(margs)?;
    let template = chat::template_for(&model);
    let tk = &model.tokenizer;
    let mut session = Session::new(&engine, model.clone(), ctx);
    let mut messages: Vec<Message> = system
        .map(|s| vec![Message::new("system", s)])
        .unwrap_or_default();
    let mut sampler_cfg = sargs.config();
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    eprintln!(
        "chatting with {} ({} layers); empty line or Ctrl-D quits",
        model.config.arch, model.config.n_layers
    );
    loop {
        eprint!("> ");
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        messages.push(Message::new("user", line.trim_end_matches(['\r', '\n'])));
        let prompt = chat::render_for(template, tk, &messages, true)?;
        let ids = tk.encode(&prompt, true)?;
        // A sliding-window cache may keep less than the common prefix (see Session::truncate).
        let kept = session.reuse_prefix(&ids);
        let t = Instant::now();
        let new = &ids[kept..];
        let mut gen = Generator::new(&mut session, Sampler::new(sampler_cfg.clone()), new, n)?
            .with_stop_strings(sargs.stop.clone());
        let mut reply = String::new();
        for piece in gen.by_ref() {
            let piece = piece?;
            reply.push_str(&piece.text);
            write!(stdout, "{}", piece.text)?;
            stdout.flush()?;
        }
        writeln!(stdout)?;
        eprintln!(
            "[{} new prompt tokens ({} reused from cache), {} generated, {:.1} s]",
            new.len(),
            kept,
            gen.generated().len(),
            t.elapsed().as_secs_f64()
        );
        messages.push(Message::new("assistant", reply.trim()));
        sampler_cfg.seed = sampler_cfg.seed.wrapping_add(1);
    }
    Ok(())
}
