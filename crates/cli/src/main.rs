//! The `edgeinfer` command-line tool.

mod inspect;
mod model_path;

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
            out.flush()?;
            Ok(())
        }
    }
}
