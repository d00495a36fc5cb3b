//! Shared helpers of the end-to-end tests: the real models (fetched, never skipped), the
//! reference outputs in `fixtures/reference/`, and the checks every architecture gets
//! ([`checks`]).

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, OnceLock};

use edgeinfer_kernels::{Engine, Level};
use edgeinfer_transformer::Model;

pub mod checks;

/// The kernel level under test: the best this CPU has, capped by `EDGEINFER_KERNELS`
/// (`scripts/test.sh` runs these tests again with `EDGEINFER_KERNELS=scalar`; the library
/// itself reads no environment).
pub fn level() -> Level {
    Level::best_up_to_named(std::env::var("EDGEINFER_KERNELS").ok().as_deref())
}

/// An engine at [`level`] with `threads` threads and the decode team on or off.
pub fn engine_with(threads: usize, team: bool) -> Engine {
    Engine::builder()
        .threads(threads)
        .level(level())
        .decode_team(team)
        .build()
        .expect("engine")
}

/// The engine most tests run on: two threads (the decode team on) at [`level`].
pub fn engine() -> &'static Engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| engine_with(2, true))
}

/// A model of [`model`]'s, loaded once per test binary.
pub fn load(name: &str, cell: &'static OnceLock<Arc<Model>>) -> &'static Arc<Model> {
    cell.get_or_init(|| {
        let path = model(name);
        Arc::new(Model::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
    })
}

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Path of the default model (SmolLM2-135M-Instruct Q4_1), fetched if absent: see [`model`].
pub fn default_model() -> PathBuf {
    model("smollm2")
}

/// Path of a model that `scripts/fetch-models.sh NAME` knows (`smollm2`,
/// `qwen2.5-coder-0.5b`, `gemma3-270m`), in `$EDGEINFER_MODELS` (default `models/`), fetched
/// with that script if absent. Panics with the script's exit status if it cannot be had: a
/// missing model fails the test, loudly.
pub fn model(name: &str) -> PathBuf {
    let file = match name {
        "smollm2" => "SmolLM2-135M-Instruct.Q4_1.gguf",
        "qwen2.5-coder-0.5b" => "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        "gemma3-270m" => "gemma-3-270m-q4_k_m.gguf",
        other => panic!("no model named {other:?} in scripts/fetch-models.sh"),
    };
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

/// llama.cpp's tokenizer test vectors (`ggml-vocab-NAME.gguf{,.inp,.out}`, fetched by
/// `scripts/fetch-vocab-tests.sh`): the vocabulary file, and each input text with its ids.
pub fn vocab_vectors(name: &str) -> (PathBuf, Vec<(String, Vec<u32>)>) {
    let dir = PathBuf::from(fetched("fetch-vocab-tests.sh"));
    let read = |ext: &str| {
        let p = dir.join(format!("ggml-vocab-{name}.gguf{ext}"));
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    };
    let (inp, expected) = (read(".inp"), read(".out"));
    let mut texts: Vec<&str> = inp.split("\n__ggml_vocab_test__\n").collect();
    if texts.last() == Some(&"") {
        texts.pop();
    }
    let ids: Vec<Vec<u32>> = expected
        .lines()
        .map(|l| l.split_whitespace().map(|t| t.parse().unwrap()).collect())
        .collect();
    assert_eq!(texts.len(), ids.len(), "{name}: inputs vs outputs");
    let cases = texts.into_iter().map(String::from).zip(ids).collect();
    (dir.join(format!("ggml-vocab-{name}.gguf")), cases)
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
    let path = fetched("fetch-botchan.sh");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Directory of the text-classification splits (`<set>/{train,valid,test}.csv`), fetched with
/// `scripts/fetch-text-data.sh` (checksum-verified) if absent.
pub fn text_data() -> PathBuf {
    PathBuf::from(fetched("fetch-text-data.sh"))
}

/// Run `scripts/SCRIPT` (a fetch script that prints the path of what it fetched or already
/// had) and return that path; its failure fails the test with the script's stderr.
fn fetched(script: &str) -> String {
    let out = Command::new("bash")
        .arg(root().join("scripts").join(script))
        .output()
        .unwrap_or_else(|e| panic!("running scripts/{script}: {e}"));
    assert!(
        out.status.success(),
        "scripts/{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
