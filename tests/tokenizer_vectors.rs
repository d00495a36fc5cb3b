//! The GGUF tokenizer against llama.cpp's own test vectors (vocab-only GGUF files with input
//! strings and expected ids), for every byte-level BPE pre-tokenizer we claim.

use std::path::PathBuf;
use std::process::Command;
use std::str::FromStr;

use edgeinfer_gguf::GgufFile;
use edgeinfer_transformer::Tokenizer;

fn vocab_dir() -> PathBuf {
    let out = Command::new("bash")
        .arg(edgeinfer_e2e::root().join("scripts/fetch-vocab-tests.sh"))
        .output()
        .expect("running scripts/fetch-vocab-tests.sh");
    assert!(
        out.status.success(),
        "fetch-vocab-tests.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

#[test]
fn byte_level_bpe_matches_llama_cpp_vectors() {
    let dir = vocab_dir();
    for name in ["gpt-2", "qwen2", "llama-bpe", "starcoder", "command-r"] {
        let f = GgufFile::open(dir.join(format!("ggml-vocab-{name}.gguf"))).unwrap();
        let tk = Tokenizer::from_metadata(f.metadata()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let inp = std::fs::read_to_string(dir.join(format!("ggml-vocab-{name}.gguf.inp"))).unwrap();
        let out = std::fs::read_to_string(dir.join(format!("ggml-vocab-{name}.gguf.out"))).unwrap();
        let mut texts: Vec<&str> = inp.split("\n__ggml_vocab_test__\n").collect();
        if texts.last() == Some(&"") {
            texts.pop();
        }
        let expected: Vec<Vec<u32>> = out
            .lines()
            .map(|l| l.split_whitespace().map(|t| t.parse().unwrap()).collect())
            .collect();
        assert_eq!(texts.len(), expected.len(), "{name}: inputs vs outputs");
        // The JSON form (what an LSTM classifier built on this vocabulary stores) must
        // tokenize identically once read back.
        let json = tk.to_json().unwrap();
        let back = tokenizers::Tokenizer::from_str(&json).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut failures = Vec::new();
        for (text, want) in texts.iter().zip(&expected) {
            let got = tk.encode(text, false).unwrap();
            if &got != want {
                failures.push(format!("{text:?}: got {got:?}, want {want:?}"));
            }
            let again = back.encode(*text, false).unwrap();
            if again.get_ids() != want.as_slice() {
                failures.push(format!("{text:?} from JSON: got {:?}", again.get_ids()));
            }
        }
        assert!(
            failures.is_empty(),
            "{name}: {} of {} differ:\n{}",
            failures.len(),
            texts.len(),
            failures.join("\n")
        );
        eprintln!("{name}: {} strings identical", texts.len());
    }
}
