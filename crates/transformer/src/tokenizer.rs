//! A tokenizer built from GGUF metadata alone (no tokenizer.json), on the `tokenizers` crate.
//!
//! `tokenizer.ggml.model = gpt2` is byte-level BPE: `tokenizer.ggml.tokens` + `merges`, split
//! first by the pre-tokenizer regexes that `tokenizer.ggml.pre` names (as llama.cpp does), then
//! mapped to byte-level symbols. Control and user-defined tokens (`token_type` 3 and 4) are
//! matched whole in the input text. SentencePiece (`llama`) vocabularies load (ids, token
//! bytes, special tokens, decoding) but cannot encode text yet: [`Tokenizer::encode`] returns
//! [`TransformerError::UnsupportedTokenizer`] for them.

use edgeinfer_gguf::{GgufError, Metadata};
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior};

use crate::TransformerError;

/// GPT-2's pre-tokenizer regex.
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
/// Llama 3's: case-insensitive contractions, numbers in runs of up to three digits.
const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's: as Llama 3 but single digits.
const QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The split regexes (applied in order) for a `tokenizer.ggml.pre` value, and whether BPE
/// should take a whole pre-token that is itself in the vocabulary (`ignore_merges`).
fn pre_tokenizer_regexes(pre: &str) -> Option<(&'static [&'static str], bool)> {
    Some(match pre {
        "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gpt-4o" | "olmo" | "jais" => (&[GPT2], false),
        // Digits are split one by one before the GPT-2 regex.
        "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva" => {
            (&[r"\p{N}", GPT2], false)
        }
        "llama-bpe" | "llama3" | "llama-v3" | "falcon3" | "pixtral" | "superbpe" => {
            (&[LLAMA3], true)
        }
        "qwen2" | "deepseek-r1-qwen" | "stablelm2" | "megrez" | "hunyuan" => (&[QWEN2], false),
        _ => return None,
    })
}

/// GPT-2's reversible byte ↔ printable-character table: byte b is written as `chars[b]`.
fn byte_chars() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..256u32 {
        let printable =
            (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b);
        let c = if printable {
            b
        } else {
            n += 1;
            255 + n
        };
        table[b as usize] = char::from_u32(c).unwrap_or('\u{fffd}');
    }
    table
}

/// GGUF token types (llama.cpp's `llama_token_type`).
pub mod token_type {
    pub const NORMAL: i32 = 1;
    pub const UNKNOWN: i32 = 2;
    pub const CONTROL: i32 = 3;
    pub const USER_DEFINED: i32 = 4;
    pub const UNUSED: i32 = 5;
    pub const BYTE: i32 = 6;
}

/// Texts of control tokens that end a generation, as llama.cpp recognises them.
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
    "<|end_of_text|>",
];

/// Tokenizer plus the special-token facts generation needs.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// Raw bytes of every token (byte-level symbols decoded; control tokens as their text),
    /// concatenated; token i is `bytes[offsets[i]..offsets[i + 1]]`.
    bytes: Vec<u8>,
    offsets: Vec<u32>,
    types: Vec<i32>,
    bos: Option<u32>,
    eos: Option<u32>,
    eog: Vec<u32>,
    add_bos: bool,
    /// Why this vocabulary cannot encode text (a SentencePiece model), if it cannot.
    cannot_encode: Option<String>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab", &self.vocab_size())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .finish()
    }
}

fn optional_id(md: &Metadata, key: &str, n: usize) -> Result<Option<u32>, TransformerError> {
    match md.get_usize(key) {
        Ok(id) if id < n => Ok(Some(id as u32)),
        Ok(id) => Err(TransformerError::BadConfig {
            what: format!("{key} = {id} is outside the vocabulary of {n}"),
        }),
        Err(GgufError::KeyNotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// `tokenizer.ggml.token_type` for `n` tokens (all normal when absent).
fn token_types(md: &Metadata, n: usize) -> Result<Vec<i32>, TransformerError> {
    match md.get_i32_array("tokenizer.ggml.token_type") {
        Ok(t) if t.len() == n => Ok(t),
        Ok(t) => Err(TransformerError::BadConfig {
            what: format!(
                "tokenizer.ggml.token_type has {} entries for {n} tokens",
                t.len()
            ),
        }),
        Err(GgufError::KeyNotFound { .. }) => Ok(vec![token_type::NORMAL; n]),
        Err(e) => Err(e.into()),
    }
}

impl Tokenizer {
    /// Build from `tokenizer.ggml.*` metadata.
    pub fn from_metadata(md: &Metadata) -> Result<Tokenizer, TransformerError> {
        let model = md.get_str("tokenizer.ggml.model")?;
        if model == "llama" {
            return Self::sentencepiece_without_encoder(md);
        }
        if model != "gpt2" {
            return Err(TransformerError::UnsupportedTokenizer {
                what: format!(
                    "tokenizer.ggml.model = {model:?} (only \"gpt2\" byte-level BPE is supported yet)"
                ),
            });
        }
        let pre = match md.get_str("tokenizer.ggml.pre") {
            Ok(p) => p,
            Err(GgufError::KeyNotFound { .. }) => "default",
            Err(e) => return Err(e.into()),
        };
        let (regexes, ignore_merges) =
            pre_tokenizer_regexes(pre).ok_or_else(|| TransformerError::UnsupportedTokenizer {
                what: format!("tokenizer.ggml.pre = {pre:?} is not a known pre-tokenizer"),
            })?;
        let tokens = md.get_str_array("tokenizer.ggml.tokens")?;
        let n = tokens.len();
        let types = token_types(md, n)?;
        let merges: Vec<(String, String)> = md
            .get_str_array("tokenizer.ggml.merges")?
            .into_iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| TransformerError::BadConfig {
                        what: format!("merge {m:?} has no space"),
                    })
            })
            .collect::<Result<_, _>>()?;
        let mut vocab = tokenizers::models::bpe::Vocab::default();
        for (i, t) in tokens.iter().enumerate() {
            // Later duplicates keep the first id, as llama.cpp's text → token map does.
            vocab.entry(t.to_string()).or_insert(i as u32);
        }
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .ignore_merges(ignore_merges)
            .build()
            .map_err(|e| TransformerError::BadConfig {
                what: format!("building BPE from GGUF vocab: {e}"),
            })?;
        let mut pretok: Vec<PreTokenizerWrapper> = Vec::new();
        for r in regexes {
            let split = Split::new(
                SplitPattern::Regex(r.to_string()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(|e| TransformerError::BadConfig {
                what: format!("pre-tokenizer regex: {e}"),
            })?;
            pretok.push(split.into());
        }
        pretok.push(ByteLevel::new(false, false, false).into());
        let mut inner = tokenizers::Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(Sequence::new(pretok)));
        inner.with_decoder(Some(ByteLevel::default()));
        let specials: Vec<AddedToken> = tokens
            .iter()
            .zip(&types)
            .filter(|(_, &t)| t == token_type::CONTROL || t == token_type::USER_DEFINED)
            .map(|(s, _)| AddedToken::from(s.to_string(), true))
            .collect();
        inner.add_special_tokens(&specials);

        let table = byte_chars();
        let mut inverse = std::collections::HashMap::with_capacity(256);
        for (b, c) in table.iter().enumerate() {
            inverse.insert(*c, b as u8);
        }
        let mut bytes = Vec::with_capacity(tokens.iter().map(|t| t.len()).sum());
        let mut offsets = Vec::with_capacity(n + 1);
        offsets.push(0u32);
        for (t, &ty) in tokens.iter().zip(&types) {
            if ty == token_type::CONTROL || ty == token_type::USER_DEFINED {
                bytes.extend_from_slice(t.as_bytes());
            } else {
                for c in t.chars() {
                    match inverse.get(&c) {
                        Some(&b) => bytes.push(b),
                        None => bytes.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
                    }
                }
            }
            offsets.push(
                u32::try_from(bytes.len()).map_err(|_| TransformerError::BadConfig {
                    what: "vocabulary larger than 4 GiB".into(),
                })?,
            );
        }

        Self::finish(md, inner, bytes, offsets, types, None)
    }

    /// A SentencePiece vocabulary that decodes but does not encode yet: token bytes with `▁`
    /// as a space and `<0xNN>` byte tokens as their byte.
    fn sentencepiece_without_encoder(md: &Metadata) -> Result<Tokenizer, TransformerError> {
        let tokens = md.get_str_array("tokenizer.ggml.tokens")?;
        let n = tokens.len();
        let types = token_types(md, n)?;
        let mut vocab = tokenizers::models::bpe::Vocab::default();
        let mut bytes = Vec::new();
        let mut offsets = Vec::with_capacity(n + 1);
        offsets.push(0u32);
        for (i, (t, &ty)) in tokens.iter().zip(&types).enumerate() {
            vocab.entry(t.to_string()).or_insert(i as u32);
            let byte = t
                .strip_prefix("<0x")
                .and_then(|h| h.strip_suffix('>'))
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match byte {
                Some(b) if ty == token_type::BYTE => bytes.push(b),
                _ => bytes.extend_from_slice(t.replace('\u{2581}', " ").as_bytes()),
            }
            offsets.push(
                u32::try_from(bytes.len()).map_err(|_| TransformerError::BadConfig {
                    what: "vocabulary larger than 4 GiB".into(),
                })?,
            );
        }
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, Vec::new())
            .build()
            .map_err(|e| TransformerError::BadConfig {
                what: format!("SentencePiece vocabulary: {e}"),
            })?;
        let inner = tokenizers::Tokenizer::new(bpe);
        let why = "tokenizer.ggml.model = \"llama\" (SentencePiece) cannot encode text yet".into();
        Self::finish(md, inner, bytes, offsets, types, Some(why))
    }

    /// The special-token facts, common to every vocabulary type.
    fn finish(
        md: &Metadata,
        inner: tokenizers::Tokenizer,
        bytes: Vec<u8>,
        offsets: Vec<u32>,
        types: Vec<i32>,
        cannot_encode: Option<String>,
    ) -> Result<Tokenizer, TransformerError> {
        let tokens = md.get_str_array("tokenizer.ggml.tokens")?;
        let n = tokens.len();
        let bos = optional_id(md, "tokenizer.ggml.bos_token_id", n)?;
        let eos = optional_id(md, "tokenizer.ggml.eos_token_id", n)?;
        let mut eog: Vec<u32> = Vec::new();
        for key in [
            "tokenizer.ggml.eos_token_id",
            "tokenizer.ggml.eot_token_id",
            "tokenizer.ggml.eom_token_id",
        ] {
            if let Some(id) = optional_id(md, key, n)? {
                eog.push(id);
            }
        }
        for (i, (t, &ty)) in tokens.iter().zip(&types).enumerate() {
            if ty == token_type::CONTROL && EOG_TEXTS.contains(t) {
                eog.push(i as u32);
            }
        }
        eog.sort_unstable();
        eog.dedup();
        let add_bos = match md.get_bool("tokenizer.ggml.add_bos_token") {
            Ok(b) => b,
            Err(GgufError::KeyNotFound { .. }) => false,
            Err(e) => return Err(e.into()),
        };
        Ok(Tokenizer {
            inner,
            bytes,
            offsets,
            types,
            bos,
            eos,
            eog,
            add_bos,
            cannot_encode,
        })
    }

    /// Token ids of `text`. Control tokens written in the text (`<|im_start|>`) are parsed
    /// as themselves. `add_bos` prepends BOS when the model asks for it
    /// (`tokenizer.ggml.add_bos_token`).
    pub fn encode(&self, text: &str, add_bos: bool) -> Result<Vec<u32>, TransformerError> {
        if let Some(why) = &self.cannot_encode {
            return Err(TransformerError::UnsupportedTokenizer { what: why.clone() });
        }
        let enc = self
            .inner
            .encode_fast(text, false)
            .map_err(|e| TransformerError::Tokenize {
                what: e.to_string(),
            })?;
        let mut ids = Vec::with_capacity(enc.len() + 1);
        if add_bos && self.add_bos {
            if let Some(b) = self.bos {
                ids.push(b);
            }
        }
        ids.extend_from_slice(enc.get_ids());
        Ok(ids)
    }

    /// The tokenizer as `tokenizers` JSON (what `tokenizers::Tokenizer::from_str` reads back),
    /// e.g. to give another model (the LSTM classifier) the same vocabulary.
    pub fn to_json(&self) -> Result<String, TransformerError> {
        self.inner
            .to_string(false)
            .map_err(|e| TransformerError::Tokenize {
                what: e.to_string(),
            })
    }

    /// The raw bytes of a token (control tokens as their text); empty for an unknown id.
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        let i = id as usize;
        match (self.offsets.get(i), self.offsets.get(i + 1)) {
            (Some(&a), Some(&b)) => &self.bytes[a as usize..b as usize],
            _ => &[],
        }
    }

    /// Whether `id` is a control token (not rendered in generated text).
    pub fn is_control(&self, id: u32) -> bool {
        self.types.get(id as usize) == Some(&token_type::CONTROL)
    }

    /// Decode ids to text (invalid UTF-8 replaced); control tokens included when `special`.
    pub fn decode(&self, ids: &[u32], special: bool) -> String {
        let mut b = Vec::new();
        for &id in ids {
            if special || !self.is_control(id) {
                b.extend_from_slice(self.token_bytes(id));
            }
        }
        String::from_utf8_lossy(&b).into_owned()
    }

    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        self.offsets.len() - 1
    }
    /// Beginning-of-sequence id.
    pub fn bos(&self) -> Option<u32> {
        self.bos
    }
    /// End-of-sequence id.
    pub fn eos(&self) -> Option<u32> {
        self.eos
    }
    /// Whether the model wants BOS prepended.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }
    /// Whether `id` ends a generation.
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.binary_search(&id).is_ok()
    }
    /// The text of a token (lossy), for display.
    pub fn token_text(&self, id: u32) -> String {
        String::from_utf8_lossy(self.token_bytes(id)).into_owned()
    }
    /// The id of a token's exact text, if any.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.inner.token_to_id(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_table_is_a_bijection_matching_gpt2() {
        let t = byte_chars();
        let set: std::collections::HashSet<char> = t.iter().copied().collect();
        assert_eq!(set.len(), 256);
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
        assert_eq!(t[b'a' as usize], 'a');
        assert_eq!(t[0], 'Ā');
    }

    #[test]
    fn known_and_unknown_pre_tokenizers() {
        assert!(pre_tokenizer_regexes("smollm").is_some());
        assert!(pre_tokenizer_regexes("llama-bpe").unwrap().1);
        assert!(pre_tokenizer_regexes("qwen2").is_some());
        assert!(pre_tokenizer_regexes("gpt-2").is_some());
        assert!(pre_tokenizer_regexes("made-up").is_none());
    }
}
