//! What the examples share: where the model comes from. The first argument, if any, is the
//! model file; without one, the default decoder (fetched by the project's checksum-verifying
//! script when absent, exactly as the `edgeinfer` CLI does: this is the CLI's own code).

#![allow(dead_code)]

use std::path::PathBuf;

#[path = "../../crates/cli/src/model_path.rs"]
mod model_path;

/// The decoder to use: the first argument (a path, or a known name such as `qwen2.5-coder-0.5b`),
/// else the default model (`models/SmolLM2-135M-Instruct.Q4_1.gguf`, or under
/// `$EDGEINFER_MODELS`).
pub fn decoder_path() -> anyhow::Result<PathBuf> {
    model_path::resolve(std::env::args_os().nth(1).map(PathBuf::from))
}

/// The text data directory (`$EDGEINFER_DATA/classify`, default `data/classify`), fetched by
/// the project's script when absent, as the CLI does.
pub fn text_data() -> anyhow::Result<PathBuf> {
    model_path::text_data()
}

/// The first argument, else `default` (relative to the repository root).
pub fn path_or(default: &str) -> PathBuf {
    std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(default)
        })
}
