//! Shared helpers of the end-to-end tests: the real models (fetched, never skipped), the
//! reference outputs in `fixtures/reference/`, and the checks every architecture gets
//! ([`checks`]).

use std::path::PathBuf;
use std::process::Command;

pub mod checks;

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Path of the default model (SmolLM2-135M-Instruct Q4_1), fetched if absent.
pub fn default_model() -> PathBuf {
    model("smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// Path of the model `file` that `scripts/fetch-models.sh NAME` fetches, fetched if absent.
/// Panics with the script's exit status if it cannot be had: a missing model fails the test,
/// loudly.
pub fn model(name: &str, file: &str) -> PathBuf {
    let models = std::env::var_os("EDGEINFER_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("models"));
    let path = models.join(file);
    if !path.exists() {
        let status = Command::new("bash")
            .arg(root().join("scripts/fetch-models.sh"))
            .arg(name)
            .env("EDGEINFER_MODELS", &models)
            .status()
            .expect("running scripts/fetch-models.sh");
        assert!(
            status.success(),
            "scripts/fetch-models.sh {name} failed: {status}"
        );
    }
    assert!(path.exists(), "{} missing after fetch", path.display());
    path
}

/// A reference file of `fixtures/reference/` (inside the repository; its README says where each
/// came from), parsed as JSON. Nothing outside the checkout is read.
pub fn reference(name: &str) -> serde_json::Value {
    let p = root().join("fixtures/reference").join(name);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The body of *Botchan* (fetched by `scripts/fetch-botchan.sh`, checksum-verified).
pub fn botchan() -> String {
    let out = Command::new("bash")
        .arg(root().join("scripts/fetch-botchan.sh"))
        .output()
        .expect("running scripts/fetch-botchan.sh");
    assert!(
        out.status.success(),
        "scripts/fetch-botchan.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Directory of the text-classification splits (`<set>/{train,valid,test}.csv`), fetched with
/// `scripts/fetch-text-data.sh` (checksum-verified) if absent.
pub fn text_data() -> PathBuf {
    let out = Command::new("bash")
        .arg(root().join("scripts/fetch-text-data.sh"))
        .output()
        .expect("running scripts/fetch-text-data.sh");
    assert!(
        out.status.success(),
        "scripts/fetch-text-data.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}
