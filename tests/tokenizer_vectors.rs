//! The GGUF tokenizer against llama.cpp's own test vectors (vocab-only GGUF files with input
//! strings and expected ids): every byte-level BPE pre-tokenizer we claim, and the
//! SentencePiece vocabularies of the set (LLaMA's and Phi-3's).

use std::str::FromStr;

use edgeinfer_e2e::vocab_vectors;
use edgeinfer_gguf::GgufFile;
use edgeinfer_transformer::Tokenizer;

#[test]
fn byte_level_bpe_matches_llama_cpp_vectors() {
    for name in ["gpt-2", "qwen2", "llama-bpe", "starcoder", "command-r"] {
        let (path, cases) = vocab_vectors(name);
        let f = GgufFile::open(path).unwrap();
        let tk = Tokenizer::from_metadata(f.metadata()).unwrap_or_else(|e| panic!("{name}: {e}"));
        // The JSON form (what an LSTM classifier built on this vocabulary stores) must
        // tokenize identically once read back.
        let json = tk.to_json().unwrap();
        let back = tokenizers::Tokenizer::from_str(&json).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut failures = Vec::new();
        for (text, want) in &cases {
            let got = tk.encode(text, false).unwrap();
            if &got != want {
                failures.push(format!("{text:?}: got {got:?}, want {want:?}"));
            }
            let again = back.encode(text.as_str(), false).unwrap();
            if again.get_ids() != want.as_slice() {
                failures.push(format!("{text:?} from JSON: got {:?}", again.get_ids()));
            }
        }
        assert!(
            failures.is_empty(),
            "{name}: {} of {} differ:\n{}",
            failures.len(),
            cases.len(),
            failures.join("\n")
        );
        eprintln!("{name}: {} strings identical", cases.len());
    }
}

/// SentencePiece (`tokenizer.ggml.model = llama`): the ids of every string, and decoding
/// llama.cpp's ids gives the string back (each of these has a byte fallback for any
/// character, and llama.cpp's detokenizer gives them all back too).
#[test]
fn sentencepiece_matches_llama_cpp_vectors() {
    for name in ["llama-spm", "phi-3"] {
        let (path, cases) = vocab_vectors(name);
        let f = GgufFile::open(path).unwrap();
        let tk = Tokenizer::from_metadata(f.metadata()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            tk.to_json().is_err(),
            "{name}: SentencePiece has no exact JSON form"
        );
        let mut failures = Vec::new();
        for (text, want) in &cases {
            let got = tk.encode(text, false).unwrap();
            if &got != want {
                failures.push(format!("{text:?}: got {got:?}, want {want:?}"));
            }
            for special in [false, true] {
                let back = tk.decode(want, special);
                if &back != text {
                    failures.push(format!("{text:?}: decodes to {back:?}"));
                }
            }
            // With BOS (the model asks for it), and decoded with it.
            let with_bos = tk.encode(text, true).unwrap();
            assert_eq!(with_bos[0], tk.bos().unwrap());
            assert_eq!(&with_bos[1..], got.as_slice());
        }
        assert!(
            failures.is_empty(),
            "{name}: {} failures in {} strings:\n{}",
            failures.len(),
            cases.len(),
            failures.join("\n")
        );
        eprintln!("{name}: {} strings identical", cases.len());
    }
}
