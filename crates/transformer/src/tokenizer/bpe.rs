//! Byte-level BPE (`tokenizer.ggml.model = gpt2`) on the `tokenizers` crate.
//!
//! `tokenizer.ggml.tokens` + `merges`, split first by the pre-tokenizer regexes that
//! `tokenizer.ggml.pre` names (as llama.cpp does), then mapped to byte-level symbols. Control,
//! user-defined and unknown tokens are matched whole in the input text.

use edgeinfer_gguf::{GgufError, Metadata};
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior};

use super::{attr, Pieces};
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

/// A byte-level BPE vocabulary on `tokenizers`.
pub(super) struct Bpe {
    inner: tokenizers::Tokenizer,
}

impl Bpe {
    /// Build from the metadata, the token texts and their attributes; also returns each
    /// token's bytes (byte-level symbols decoded; special tokens as their text).
    pub(super) fn new(
        md: &Metadata,
        tokens: &[&str],
        attrs: &[u16],
    ) -> Result<(Bpe, Pieces), TransformerError> {
        let pre = match md.get_str("tokenizer.ggml.pre") {
            Ok(p) => p,
            Err(GgufError::KeyNotFound { .. }) => "default",
            Err(e) => return Err(e.into()),
        };
        let (regexes, ignore_merges) =
            pre_tokenizer_regexes(pre).ok_or_else(|| TransformerError::UnsupportedTokenizer {
                what: format!("tokenizer.ggml.pre = {pre:?} is not a known pre-tokenizer"),
            })?;
        let merges: Vec<(String, String)> = md
            .get_str_array("tokenizer.ggml.merges")?
            .into_iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| TransformerError::BadConfig {
                        what: format!("tokenizer.ggml.merges: merge {m:?} has no space"),
                    })
            })
            .collect::<Result<_, _>>()?;
        let mut vocab = tokenizers::models::bpe::Vocab::default();
        for (i, t) in tokens.iter().enumerate() {
            // A repeated text keeps its first id.
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
            .zip(attrs)
            .filter(|(_, &a)| a & attr::SPECIAL != 0)
            .map(|(s, _)| AddedToken::from(s.to_string(), true))
            .collect();
        inner.add_special_tokens(&specials);

        let table = byte_chars();
        let mut inverse = std::collections::HashMap::with_capacity(256);
        for (b, c) in table.iter().enumerate() {
            inverse.insert(*c, b as u8);
        }
        let mut pieces = Pieces::with_capacity(tokens.len(), tokens.iter().map(|t| t.len()).sum());
        for (t, &a) in tokens.iter().zip(attrs) {
            pieces.push_with(|bytes| {
                if a & attr::SPECIAL != 0 {
                    bytes.extend_from_slice(t.as_bytes());
                } else {
                    for c in t.chars() {
                        match inverse.get(&c) {
                            Some(&b) => bytes.push(b),
                            None => bytes.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
                        }
                    }
                }
            })?;
        }
        Ok((Bpe { inner }, pieces))
    }

    /// Append the ids of `text` (special tokens parsed) to `out`.
    pub(super) fn encode_into(
        &self,
        text: &str,
        out: &mut Vec<u32>,
    ) -> Result<(), TransformerError> {
        let enc = self
            .inner
            .encode_fast(text, false)
            .map_err(|e| TransformerError::Tokenize {
                what: e.to_string(),
            })?;
        out.extend_from_slice(enc.get_ids());
        Ok(())
    }

    /// The tokenizer as `tokenizers` JSON.
    pub(super) fn to_json(&self) -> Result<String, TransformerError> {
        self.inner
            .to_string(false)
            .map_err(|e| TransformerError::Tokenize {
                what: e.to_string(),
            })
    }

    /// The id of a token's exact text.
    pub(super) fn token_id(&self, text: &str) -> Option<u32> {
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
