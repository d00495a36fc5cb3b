//! The `edgeinfer` command-line tool. Cargo features (both default): `train` gives
//! `train-lstm` (candle), `serve` gives `serve` (axum, tokio); an embedded build leaves them
//! out with `--no-default-features`.

mod bench;
mod classify;
mod compare;
mod inspect;
mod llm;
mod model_path;
mod quantize;
#[cfg(feature = "serve")]
mod serve;
mod suite;
#[cfg(feature = "train")]
mod train;
#[cfg(feature = "train")]
mod train_probe;

use std::path::PathBuf;

use std::io::Write;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "edgeinfer",
    version,
    about = "Run quantized GGUF language models on small CPUs"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print a GGUF file's metadata and tensor table, or a tensor's first values.
    Inspect {
        /// GGUF file (default: the default model, fetched if absent).
        model: Option<PathBuf>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Print values of this tensor instead of the summary.
        #[arg(long)]
        tensor: Option<String>,
        /// How many values of --tensor to print (dequantized to f32).
        #[arg(long, default_value_t = 0)]
        values: usize,
    },
    /// Generate text from a prompt, streaming it as it is produced.
    Generate {
        #[command(flatten)]
        model: llm::ModelArgs,
        /// The prompt.
        #[arg(short, long)]
        prompt: String,
        /// Most tokens to generate.
        #[arg(short = 'n', long, default_value_t = 128)]
        n_predict: usize,
        /// Context size of the session (prompt + generated tokens).
        #[arg(short, long, default_value_t = 2048)]
        ctx: usize,
        /// Wrap the prompt in the model's chat template as a user message.
        #[arg(long)]
        chat: bool,
        /// Print prompt ids, generated ids, text and timings as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        sample: llm::SampleArgs,
    },
    /// Interactive chat; the conversation stays in the KV cache between turns.
    Chat {
        #[command(flatten)]
        model: llm::ModelArgs,
        /// System prompt.
        #[arg(long)]
        system: Option<String>,
        /// Most tokens per reply.
        #[arg(short = 'n', long, default_value_t = 512)]
        n_predict: usize,
        /// Context size of the conversation.
        #[arg(short, long, default_value_t = 4096)]
        ctx: usize,
        #[command(flatten)]
        sample: llm::SampleArgs,
    },
    /// Measure prefill and decode speed, load time, peak RSS and the memory roofline.
    Bench(bench::BenchArgs),
    /// Print the token ids of a text.
    Tokenize {
        #[command(flatten)]
        model: llm::ModelArgs,
        /// The text.
        text: String,
        /// Ids and pieces as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Score a sequence teacher-forced: per position the top-K logits and the log-probability
    /// of the next given token.
    Score {
        #[command(flatten)]
        model: llm::ModelArgs,
        /// Text to tokenize and score.
        #[arg(long, conflicts_with = "ids")]
        text: Option<String>,
        /// Token ids to score, comma-separated.
        #[arg(long)]
        ids: Option<String>,
        /// How many top logits per position.
        #[arg(long, default_value_t = 5)]
        top: usize,
        #[arg(long)]
        json: bool,
    },
    /// Classify a text or a file with an LSTM classifier, or zero-shot with a decoder.
    Classify(classify::ClassifyArgs),
    /// Compare classifiers: the LSTM (f32, int8, int4) against a zero-shot decoder on one test
    /// split, or with --suite every contender on every task, with a report.
    Compare(Box<compare::CompareArgs>),
    /// Train the LSTM text-classifier baseline and write it as one GGUF file.
    #[cfg(feature = "train")]
    TrainLstm(train::TrainArgs),
    /// Fit a linear probe (a classifier head over a decoder's pooled hidden states) and write
    /// it as a GGUF naming the decoder by file name and sha256.
    #[cfg(feature = "train")]
    TrainProbe(train_probe::TrainProbeArgs),
    /// Quantize a GGUF model to Q4_0 … Q6_K or a K-quant mix, as llama-quantize does.
    Quantize(quantize::QuantizeArgs),
    /// Serve the model over HTTP with an OpenAI-compatible API (completions, chat, streaming,
    /// logprobs, an LSTM classifier), several generations at once.
    #[cfg(feature = "serve")]
    Serve(serve::ServeArgs),
    /// Perplexity of a text file (llama.cpp's method: windows of --ctx, second half scored).
    Perplexity {
        #[command(flatten)]
        model: llm::ModelArgs,
        /// UTF-8 text file.
        #[arg(short, long)]
        file: PathBuf,
        /// Window size.
        #[arg(long, default_value_t = 512)]
        ctx: usize,
        /// Score only the first N windows.
        #[arg(long)]
        chunks: Option<usize>,
        #[arg(long)]
        json: bool,
    },
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // A closed pipe (`edgeinfer inspect | head`) is not an error.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match cli.cmd {
        Cmd::Inspect {
            model,
            json,
            tensor,
            values,
        } => {
            let path = model_path::resolve(model)?;
            let values = if tensor.is_some() && values == 0 {
                16
            } else {
                values
            };
            inspect::run(&mut out, &path, json, tensor.as_deref(), values)?;
        }
        Cmd::Generate {
            model,
            prompt,
            n_predict,
            ctx,
            chat,
            json,
            sample,
        } => {
            llm::generate(
                &mut out, &model, &sample, &prompt, n_predict, ctx, chat, json,
            )?;
        }
        Cmd::Chat {
            model,
            system,
            n_predict,
            ctx,
            sample,
        } => {
            llm::chat(&model, &sample, system.as_deref(), n_predict, ctx)?;
        }
        Cmd::Bench(args) => bench::run(&mut out, &args)?,
        Cmd::Classify(args) => classify::run(&mut out, &args)?,
        Cmd::Compare(args) => compare::run(&mut out, &args)?,
        #[cfg(feature = "train")]
        Cmd::TrainLstm(args) => train::run(&mut out, &args)?,
        #[cfg(feature = "train")]
        Cmd::TrainProbe(args) => train_probe::run(&mut out, &args)?,
        Cmd::Quantize(args) => quantize::run(&mut out, &args)?,
        #[cfg(feature = "serve")]
        Cmd::Serve(args) => serve::run(&mut out, &args)?,
        Cmd::Tokenize { model, text, json } => llm::tokenize(&mut out, &model, &text, json)?,
        Cmd::Score {
            model,
            text,
            ids,
            top,
            json,
        } => llm::score(&mut out, &model, text.as_deref(), ids.as_deref(), top, json)?,
        Cmd::Perplexity {
            model,
            file,
            ctx,
            chunks,
            json,
        } => llm::perplexity(&mut out, &model, &file, ctx, chunks, json)?,
    }
    out.flush()?;
    Ok(())
}
