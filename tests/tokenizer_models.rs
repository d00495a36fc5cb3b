//! The tokenizers of the real models, built from their GGUF metadata alone (no weights are
//! read, so these tests take seconds): Gemma 3 (SentencePiece, 262,144 tokens) and
//! Qwen2.5-Coder (byte-level BPE) against the ids llama.cpp gave for the cases in
//! `fixtures/reference/`, Gemma's turn tokens and chat template, and properties that must hold
//! on any text: SentencePiece encodings equal those of a slow direct reference (llama.cpp's
//! special-token partition, then pair merges by rescanning every pair), on random strings and
//! a long text, and decoding gives the text back.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use edgeinfer_e2e::{model, reference, vocab_vectors};
use edgeinfer_gguf::{GgufFile, Metadata};
use edgeinfer_transformer::chat::{self, Message};
use edgeinfer_transformer::Tokenizer;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// The tokenizer of a GGUF file, and the time `Tokenizer::from_metadata` took.
fn load(path: &Path) -> (Tokenizer, GgufFile, Duration) {
    let file = GgufFile::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let t = Instant::now();
    let tk = Tokenizer::from_metadata(file.metadata())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (tk, file, t.elapsed())
}

/// Every `tokenize` case and greedy prompt of an `arch-*.json` reference: the ids (BOS where
/// the model asks for it) and the text back from them.
fn check_reference_ids(tk: &Tokenizer, reference_file: &str) -> usize {
    let r = reference(reference_file);
    let ids = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    let mut cases: Vec<(String, Vec<u32>)> = r["tokenize"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["text"].as_str().unwrap().to_string(), ids(&c["ids"])))
        .collect();
    for (prompt, g) in r["greedy"].as_object().unwrap() {
        assert_eq!(g["add_bos"].as_bool(), Some(tk.add_bos()), "{prompt:?}");
        cases.push((prompt.clone(), ids(&g["prompt_ids"])));
    }
    assert!(cases.len() >= 8, "{reference_file}: {} cases", cases.len());
    for (text, want) in &cases {
        assert_eq!(
            &tk.encode(text, true).unwrap(),
            want,
            "{reference_file}: {text:?}"
        );
        let body = if tk.add_bos() { &want[1..] } else { &want[..] };
        assert_eq!(&tk.decode(body, true), text, "{reference_file}: {text:?}");
        if !body.iter().any(|&i| tk.is_control(i)) {
            assert_eq!(&tk.decode(want, false), text, "{reference_file}: {text:?}");
        }
    }
    cases.len()
}

#[test]
fn gemma3_ids_match_llama_cpp() {
    let (tk, _, took) = load(&model("gemma3-270m"));
    eprintln!(
        "Gemma 3 tokenizer ({} tokens) built in {took:?}",
        tk.vocab_size()
    );
    assert_eq!(tk.vocab_size(), 262_144);
    assert_eq!((tk.bos(), tk.eos(), tk.add_bos()), (Some(2), Some(1), true));
    let n = check_reference_ids(&tk, "arch-gemma3-270m.json");
    eprintln!("gemma3: {n} reference texts identical");
}

#[test]
fn qwen25_ids_match_llama_cpp() {
    let (tk, _, took) = load(&model("qwen2.5-coder-0.5b"));
    eprintln!(
        "Qwen2.5 tokenizer ({} tokens) built in {took:?}",
        tk.vocab_size()
    );
    let n = check_reference_ids(&tk, "arch-qwen2.5-coder-0.5b.json");
    eprintln!("qwen2.5: {n} reference texts identical");
}

/// `<end_of_turn>` ends a generation, and a chat through Gemma's built-in template (the file
/// has none) tokenizes to one BOS and the turn tokens.
#[test]
fn gemma3_turns_and_chat_template() {
    let (tk, file, _) = load(&model("gemma3-270m"));
    let md = file.metadata();
    assert!(
        md.get_str("tokenizer.chat_template").is_err(),
        "the file has a template now"
    );
    let id = |t: &str| tk.token_id(t).unwrap_or_else(|| panic!("no token {t:?}"));
    let (sot, eot, nl, nlnl) = (
        id("<start_of_turn>"),
        id("<end_of_turn>"),
        id("\n"),
        id("\n\n"),
    );
    assert!(tk.is_eog(eot) && tk.is_control(eot));
    assert!(tk.is_eog(tk.eos().unwrap()));
    assert!(!tk.is_eog(sot) && !tk.is_eog(nl) && !tk.is_eog(tk.bos().unwrap()));

    let arch = md.get_str("general.architecture").unwrap();
    assert_eq!(arch, "gemma3");
    let template = chat::builtin_template(arch, &tk);
    assert_eq!(template, chat::GEMMA);
    // The vocabulary alone identifies the family too.
    assert_eq!(chat::builtin_template("unknown-arch", &tk), chat::GEMMA);

    let messages = [
        Message::new("system", "Be brief."),
        Message::new("user", "Name a river."),
    ];
    let prompt = chat::render_for(template, &tk, &messages, true).unwrap();
    assert_eq!(
        prompt,
        "<start_of_turn>user\nBe brief.\n\nName a river.<end_of_turn>\n<start_of_turn>model\n"
    );
    let ids = tk.encode(&prompt, true).unwrap();
    let text = |t: &str| tk.encode(t, false).unwrap();
    let mut want = vec![tk.bos().unwrap(), sot];
    want.extend(text("user"));
    want.push(nl);
    want.extend(text("Be brief."));
    want.push(nlnl);
    want.extend(text("Name a river."));
    want.extend([eot, nl, sot]);
    want.extend(text("model"));
    want.push(nl);
    assert_eq!(ids, want);
    assert_eq!(ids.iter().filter(|&&i| Some(i) == tk.bos()).count(), 1);
}

/// The same choice for a BPE model without Gemma tokens: ChatML.
#[test]
fn non_gemma_vocabulary_gets_chatml() {
    let (tk, _, _) = load(&model("qwen2.5-coder-0.5b"));
    assert_eq!(chat::builtin_template("qwen2", &tk), chat::CHATML);
    assert_eq!(chat::builtin_template("gemma2", &tk), chat::GEMMA);
}

/// A slow, direct SentencePiece reference written from llama.cpp's description: every
/// special token, longest first, searched in every raw piece of text; then, per piece, the
/// best-scoring adjacent pair (leftmost on ties) merged by rescanning all pairs each time.
struct Naive {
    ids: HashMap<String, u32>,
    scores: Vec<f32>,
    /// Special texts, longest first (equal lengths by id), their id and whether they swallow
    /// the whitespace after them.
    specials: Vec<(String, u32, bool)>,
    space_prefix: bool,
}

impl Naive {
    fn new(md: &Metadata) -> Naive {
        let tokens = md.get_str_array("tokenizer.ggml.tokens").unwrap();
        let types = md.get_i32_array("tokenizer.ggml.token_type").unwrap();
        let scores = md.get_f32_array("tokenizer.ggml.scores").unwrap();
        let phi3 = md
            .get_str("general.name")
            .is_ok_and(|n| n.to_lowercase().contains("phi3"));
        let mut specials: Vec<(String, u32, bool)> = tokens
            .iter()
            .zip(&types)
            .enumerate()
            .filter(|(_, (_, &ty))| (2..=4).contains(&ty))
            .map(|(i, (t, _))| {
                let rstrip = phi3 && !["<unk>", "<s>", "<|endoftext|>"].contains(t);
                (t.to_string(), i as u32, rstrip)
            })
            .collect();
        specials.sort_by_key(|s| std::cmp::Reverse(s.0.len()));
        Naive {
            ids: tokens
                .iter()
                .enumerate()
                .map(|(i, t)| (t.to_string(), i as u32))
                .collect(),
            scores,
            specials,
            space_prefix: md
                .get_bool("tokenizer.ggml.add_space_prefix")
                .unwrap_or(true),
        }
    }

    fn encode(&self, text: &str) -> Vec<u32> {
        enum Frag {
            Raw(String),
            Tok(u32),
        }
        let mut frags = if text.is_empty() {
            vec![]
        } else {
            vec![Frag::Raw(text.to_string())]
        };
        for (special, id, rstrip) in &self.specials {
            let mut next = Vec::new();
            for f in frags {
                let Frag::Raw(mut s) = f else {
                    next.push(f);
                    continue;
                };
                while let Some(at) = s.find(special.as_str()) {
                    if at > 0 {
                        next.push(Frag::Raw(s[..at].to_string()));
                    }
                    next.push(Frag::Tok(*id));
                    let mut rest = &s[at + special.len()..];
                    if *rstrip {
                        rest = rest.trim_start_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r']);
                    }
                    s = rest.to_string();
                }
                if !s.is_empty() {
                    next.push(Frag::Raw(s));
                }
            }
            frags = next;
        }
        let mut out = Vec::new();
        let mut prev_special = true;
        for f in frags {
            match f {
                Frag::Tok(id) => {
                    out.push(id);
                    prev_special = true;
                }
                Frag::Raw(s) => {
                    let prefix = if self.space_prefix && prev_special {
                        " "
                    } else {
                        ""
                    };
                    self.merge(&format!("{prefix}{s}").replace(' ', "\u{2581}"), &mut out);
                    prev_special = false;
                }
            }
        }
        out
    }

    fn merge(&self, text: &str, out: &mut Vec<u32>) {
        let mut syms: Vec<String> = text.chars().map(String::from).collect();
        loop {
            let mut best: Option<(f32, usize)> = None;
            for i in 1..syms.len() {
                let pair = format!("{}{}", syms[i - 1], syms[i]);
                if let Some(&id) = self.ids.get(&pair) {
                    let s = self.scores[id as usize];
                    // Strictly greater: the leftmost of equal scores stays.
                    match best {
                        Some((b, _)) if s <= b => {}
                        _ => best = Some((s, i - 1)),
                    }
                }
            }
            let Some((_, i)) = best else { break };
            let right = syms.remove(i + 1);
            syms[i].push_str(&right);
        }
        for s in syms {
            match self.ids.get(&s) {
                Some(&id) => out.push(id),
                None => out.extend(s.bytes().map(|b| self.ids[&format!("<0x{b:02X}>")])),
            }
        }
    }
}

/// Random text built from pieces that stress the tokenizer: words, digits, punctuation,
/// whitespace runs, any characters (controls, unassigned, astral), scripts, emoji sequences,
/// special-token texts of both vocabularies, byte-token look-alikes and `▁` itself.
fn text_strategy() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[a-zA-Z]{1,8}",
        "[0-9]{1,5}",
        "[ .,;:!?'\"()\\-]{1,3}",
        "[ \t\n\r]{1,5}",
        any::<char>().prop_map(String::from),
        "\\PC{1,3}",
        prop::sample::select(vec![
            "<start_of_turn>",
            "<end_of_turn>",
            "<bos>",
            "<eos>",
            "</s>",
            "<unused17>",
            "<s>",
            "<|user|>",
            "<|end|>",
            "<|endoftext|>",
            "<0x41>",
            "\u{2581}",
            "\u{2581}\u{2581}",
            "日本語のテキスト",
            "Ünïcödé",
            "👩\u{200d}👩\u{200d}👧",
            "🤖",
            "مرحبا",
            "नमस्ते",
            "\u{10fffd}",
            "                ",
        ])
        .prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..12).prop_map(|v| v.concat())
}

/// Texts of many kinds, to encode and decode back.
const VARIED: &[&str] = &[
    "",
    " ",
    "Hello, world!",
    "  two leading spaces, trailing two  ",
    "tabs\tand\t\ttabs\nnew\nlines\n\n\nand\r\nCRLF",
    "Ünïcödé — “quotes” … ½ ∑ √ ∞",
    "日本語のテキストと中文文本和한국어",
    "emoji 🤖🚀 and a family 👩‍👩‍👧 and flags 🇫🇷🇯🇵",
    "\u{0}\u{1}\u{7f}\u{80}\u{10fffd}\u{e000} controls and private use",
    "special texts: <start_of_turn>user\nHi<end_of_turn>\n<bos><eos><unused3>",
    "byte look-alikes <0x41><0xFF> and </s>",
    "                                         long run of spaces",
    "code:\n    fn main() {\n        println!(\"hi\");\n    }\n",
];

/// Gemma: every property against the naive reference and the round trip.
#[test]
fn gemma3_matches_naive_reference_and_round_trips() {
    let (tk, file, _) = load(&model("gemma3-270m"));
    let naive = Naive::new(file.metadata());
    for text in VARIED {
        let ids = tk.encode(text, false).unwrap();
        assert_eq!(ids, naive.encode(text), "{text:?}");
        assert_eq!(&tk.decode(&ids, true), text, "{text:?}");
    }
    let mut runner = TestRunner::new(Config::with_cases(300));
    runner
        .run(&text_strategy(), |text| {
            let ids = tk.encode(&text, false).unwrap();
            prop_assert_eq!(&ids, &naive.encode(&text), "{:?}", text);
            // `▁` in the input is read back as a space (as in llama.cpp); all else returns.
            prop_assert_eq!(tk.decode(&ids, true), text.replace('\u{2581}', " "));
            Ok(())
        })
        .unwrap();
}

/// llama.cpp's LLaMA and Phi-3 test vocabularies (space prefix on; Phi-3's special tokens
/// swallow the whitespace after them) against the naive reference, and the round trip of
/// texts without special-token texts (after one, the space prefix is added again, as in
/// llama.cpp, so those do not come back unchanged).
#[test]
fn sentencepiece_vocabularies_match_naive_reference() {
    for name in ["llama-spm", "phi-3"] {
        let (path, _) = vocab_vectors(name);
        let (tk, file, took) = load(&path);
        eprintln!("{name}: built in {took:?}");
        let naive = Naive::new(file.metadata());
        let has_special = |t: &str| naive.specials.iter().any(|(s, ..)| t.contains(s.as_str()));
        for text in VARIED {
            let ids = tk.encode(text, false).unwrap();
            assert_eq!(ids, naive.encode(text), "{name}: {text:?}");
            if !has_special(text) {
                assert_eq!(&tk.decode(&ids, true), text, "{name}: {text:?}");
            }
        }
        let mut runner = TestRunner::new(Config::with_cases(300));
        runner
            .run(&text_strategy(), |text| {
                let ids = tk.encode(&text, false).unwrap();
                prop_assert_eq!(&ids, &naive.encode(&text), "{}: {:?}", name, text);
                if !has_special(&text) {
                    prop_assert_eq!(tk.decode(&ids, true), text.replace('\u{2581}', " "));
                }
                Ok(())
            })
            .unwrap();
    }
}

/// A deterministic text of `words` words in mixed scripts, single spaces only (Gemma splits
/// at runs of spaces and at newlines, which are tokens of their own: this stays one piece for
/// the merge).
fn long_text(words: usize) -> String {
    const WORDS: &[&str] = &[
        "the",
        "tokenizer",
        "merges",
        "pairs,",
        "ünïcödé",
        "日本語",
        "🤖",
        "quickly.",
        "x7",
        "naïve",
        "(brackets)",
        "don't",
        "Привет",
        "—",
        "42",
        "a",
        "supercalifragilistic",
    ];
    let mut state = 0x2545_f491_u32;
    let mut out = String::new();
    for i in 0..words {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        if i > 0 {
            out.push(' ');
        }
        out.push_str(WORDS[state as usize % WORDS.len()]);
    }
    out
}

/// A few KB as one piece equal the naive reference's ids; ten times as much encodes in well
/// under a second (the merge is O(n log n); a quadratic one takes ~100× longer at 10× size).
#[test]
fn gemma3_long_text_is_exact_and_fast() {
    let (tk, file, _) = load(&model("gemma3-270m"));
    let naive = Naive::new(file.metadata());
    let text = long_text(400);
    assert!(text.len() > 2500, "{}", text.len());
    let ids = tk.encode(&text, false).unwrap();
    assert_eq!(ids, naive.encode(&text));
    assert_eq!(tk.decode(&ids, true), text);

    let big = long_text(4000);
    let t = Instant::now();
    let ids = tk.encode(&big, false).unwrap();
    let took = t.elapsed();
    eprintln!("{} bytes → {} tokens in {took:?}", big.len(), ids.len());
    assert_eq!(tk.decode(&ids, true), big);
    assert!(
        took < Duration::from_secs(1),
        "{} bytes took {took:?}",
        big.len()
    );
}

/// llama.cpp's `test-tokenizer-1-spm` checks, on every token and every Unicode scalar value:
/// a token's text (special tokens included) encodes (special tokens parsed) to ids that
/// decode to that text again; a character encodes to ids that decode to it (except `▁`,
/// which reads back as a space).
#[test]
fn every_token_and_every_character_round_trips() {
    use rayon::prelude::*;
    let mut vocabs = vec![("gemma3".to_string(), model("gemma3-270m"))];
    for name in ["llama-spm", "phi-3"] {
        vocabs.push((name.to_string(), vocab_vectors(name).0));
    }
    for (name, path) in vocabs {
        let (tk, _, _) = load(&path);
        let t = Instant::now();
        let bad_tokens: Vec<String> = (0..tk.vocab_size() as u32)
            .into_par_iter()
            .filter_map(|id| {
                let text = tk.decode(&[id], true);
                let back = tk.decode(&tk.encode(&text, false).unwrap(), true);
                (back != text).then(|| format!("token {id} {text:?} → {back:?}"))
            })
            .collect();
        assert!(
            bad_tokens.is_empty(),
            "{name}: {} tokens do not come back:\n{}",
            bad_tokens.len(),
            bad_tokens[..bad_tokens.len().min(20)].join("\n")
        );
        let bad_chars: Vec<String> = (0..0x11_0000u32)
            .into_par_iter()
            .filter(|&c| c != 0x2581 && !(0x4_0000..=0xe_0000).contains(&c))
            .filter_map(char::from_u32)
            .filter_map(|c| {
                let text = c.to_string();
                let back = tk.decode(&tk.encode(&text, false).unwrap(), true);
                (back != text).then(|| format!("U+{:04X} → {back:?}", c as u32))
            })
            .collect();
        assert!(
            bad_chars.is_empty(),
            "{name}: {} characters do not come back:\n{}",
            bad_chars.len(),
            bad_chars[..bad_chars.len().min(20)].join("\n")
        );
        eprintln!(
            "{name}: every token and character round-trips ({:?})",
            t.elapsed()
        );
    }
}
