//! `edgeinfer serve`: the OpenAI-compatible HTTP server (`edgeinfer-server`). It binds first
//! and prints the address, then loads the model in the background (`/health` answers 503
//! until it is ready).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use edgeinfer_lstm::LstmClassifier;
use edgeinfer_server::{AppState, Options};

use crate::llm::ModelArgs;

/// Options of `edgeinfer serve`.
#[derive(Args, Clone, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Address to listen on (127.0.0.1: this machine only; 0.0.0.0: every interface).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0: any free port).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Generations that run at once (one KV cache each).
    #[arg(long, default_value_t = 4)]
    pub slots: usize,
    /// Context of each slot in tokens (prompt and completion).
    #[arg(short, long, default_value_t = 2048)]
    pub ctx: usize,
    /// Requests that may wait for a free slot; more are answered 503.
    #[arg(long, default_value_t = 64)]
    pub queue: usize,
    /// Require `Authorization: Bearer KEY` on /v1/*.
    #[arg(long)]
    pub api_key: Option<String>,
    /// An LSTM classifier (GGUF) served at POST /v1/classify.
    #[arg(long)]
    pub classifier: Option<PathBuf>,
}

/// Run the server until Ctrl-C or SIGTERM.
pub fn run(out: &mut impl Write, args: &ServeArgs) -> Result<()> {
    if args.slots == 0 {
        bail!("--slots must be at least 1");
    }
    let model_name = match &args.model.model {
        Some(p) => p
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| p.display().to_string()),
        None => crate::model_path::DEFAULT_MODEL_FILE
            .trim_end_matches(".gguf")
            .to_string(),
    };
    let opts = Options {
        slots: args.slots,
        ctx: args.ctx,
        queue: args.queue,
        api_key: args.api_key.clone(),
        model_name,
        ..Options::default()
    };
    let state = AppState::new(opts)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
            .await
            .with_context(|| format!("binding {}:{}", args.host, args.port))?;
        let addr = listener.local_addr()?;
        writeln!(out, "edgeinfer serve: listening on http://{addr}")?;
        out.flush()?;
        let loader = state.clone();
        let margs = args.model.clone();
        let classifier = args.classifier.clone();
        tokio::task::spawn_blocking(move || match load(&margs, classifier) {
            Ok((engine, model, clf)) => {
                if let Err(e) = loader.install(engine, model, clf) {
                    eprintln!("error: {e}");
                    loader.fail(e.to_string());
                } else {
                    eprintln!("edgeinfer serve: model loaded, ready");
                }
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                loader.fail(format!("{e:#}"));
            }
        });
        edgeinfer_server::serve(listener, state, shutdown()).await?;
        anyhow::Ok(())
    })
}

type Loaded = (
    edgeinfer_transformer::Engine,
    std::sync::Arc<edgeinfer_transformer::Model>,
    Option<LstmClassifier>,
);

fn load(margs: &ModelArgs, classifier: Option<PathBuf>) -> Result<Loaded> {
    let (model, engine, _) = crate::llm::load(margs)?;
    let clf = match classifier {
        Some(p) => Some(
            LstmClassifier::load(&p)
                .with_context(|| format!("loading classifier {}", p.display()))?,
        ),
        None => None,
    };
    Ok((engine, model, clf))
}

/// Ctrl-C, or SIGTERM on Unix.
async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
