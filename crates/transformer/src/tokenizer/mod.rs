//! A tokenizer built from GGUF metadata alone (no tokenizer.json), with llama.cpp's behaviour.
//!
//! Two kinds sit behind one [`Tokenizer`]:
//! * `tokenizer.ggml.model = gpt2`: byte-level BPE on the `tokenizers` crate (`bpe.rs`);
//! * `tokenizer.ggml.model = llama`: SentencePiece, merged by token scores as llama.cpp's
//!   `llm_tokenizer_spm` does (`spm.rs`, which says why not on `tokenizers`), after the
//!   special tokens are split off as llama.cpp's `tokenizer_st_partition` does (`special.rs`).
//!
//! Shared here: the token attributes as llama.cpp derives them from `tokenizer.ggml.token_type`
//! and the token texts (end-of-generation tokens found by text become control tokens, and so
//! on), the end-of-generation set, BOS/EOS and their defaults, and decoding.

mod bpe;
mod special;
mod spm;

use edgeinfer_gguf::{GgufError, Metadata, Value, ValueType};

use crate::TransformerError;

/// GGUF token types (llama.cpp's `llama_token_type`).
pub mod token_type {
    pub const NORMAL: i32 = 1;
    pub const UNKNOWN: i32 = 2;
    pub const CONTROL: i32 = 3;
    pub const USER_DEFINED: i32 = 4;
    pub const UNUSED: i32 = 5;
    pub const BYTE: i32 = 6;
}

/// Token attributes (llama.cpp's `llama_token_attr` bits).
mod attr {
    pub const UNKNOWN: u16 = 1 << 0;
    pub const UNUSED: u16 = 1 << 1;
    pub const NORMAL: u16 = 1 << 2;
    pub const CONTROL: u16 = 1 << 3;
    pub const USER_DEFINED: u16 = 1 << 4;
    pub const BYTE: u16 = 1 << 5;
    pub const LSTRIP: u16 = 1 << 7;
    pub const RSTRIP: u16 = 1 << 8;
    /// Split off whole from the input text before tokenizing.
    pub const SPECIAL: u16 = CONTROL | USER_DEFINED | UNKNOWN;
    /// Left out of decoded text unless special tokens are asked for.
    pub const HIDDEN: u16 = CONTROL | UNKNOWN;

    /// The attribute of a `tokenizer.ggml.token_type` value (none for an unknown value).
    pub fn from_type(t: i32) -> u16 {
        use super::token_type as tt;
        match t {
            tt::NORMAL => NORMAL,
            tt::UNKNOWN => UNKNOWN,
            tt::CONTROL => CONTROL,
            tt::USER_DEFINED => USER_DEFINED,
            tt::UNUSED => UNUSED,
            tt::BYTE => BYTE,
            _ => 0,
        }
    }
}

/// Texts of tokens that end a generation, as llama.cpp recognises them (whatever their type;
/// they become control tokens).
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

/// Fill-in-the-middle tokens: the metadata keys (current and deprecated) and the texts by
/// which llama.cpp finds them when the keys are absent, and whether they end a generation.
const FIM: &[(&str, Option<&str>, &[&str], bool)] = &[
    (
        "tokenizer.ggml.fim_pre_token_id",
        Some("tokenizer.ggml.prefix_token_id"),
        &[
            "<|fim_prefix|>",
            "<fim-prefix>",
            "<fim_prefix>",
            "<｜fim▁begin｜>",
            "<PRE>",
            "▁<PRE>",
            "<|code_prefix|>",
            "<|prefix|>",
        ],
        false,
    ),
    (
        "tokenizer.ggml.fim_suf_token_id",
        Some("tokenizer.ggml.suffix_token_id"),
        &[
            "<|fim_suffix|>",
            "<fim-suffix>",
            "<fim_suffix>",
            "<｜fim▁hole｜>",
            "<SUF>",
            "▁<SUF>",
            "<|code_suffix|>",
            "<|suffix|>",
        ],
        false,
    ),
    (
        "tokenizer.ggml.fim_mid_token_id",
        Some("tokenizer.ggml.middle_token_id"),
        &[
            "<|fim_middle|>",
            "<fim-middle>",
            "<fim_middle>",
            "<｜fim▁end｜>",
            "<MID>",
            "▁<MID>",
            "<|code_middle|>",
            "<|middle|>",
        ],
        false,
    ),
    (
        "tokenizer.ggml.fim_pad_token_id",
        None,
        &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"],
        true,
    ),
    (
        "tokenizer.ggml.fim_rep_token_id",
        None,
        &[
            "<|fim_repo|>",
            "<|repo_name|>",
            "<fim-repo>",
            "<REPO>",
            "<reponame>",
        ],
        true,
    ),
    (
        "tokenizer.ggml.fim_sep_token_id",
        None,
        &["<|file_sep|>"],
        true,
    ),
];

/// Every token's bytes as decoding renders it, concatenated; token i is
/// `bytes[offsets[i]..offsets[i + 1]]`.
struct Pieces {
    bytes: Vec<u8>,
    offsets: Vec<u32>,
}

impl Pieces {
    fn with_capacity(tokens: usize, bytes: usize) -> Pieces {
        let mut offsets = Vec::with_capacity(tokens + 1);
        offsets.push(0);
        Pieces {
            bytes: Vec::with_capacity(bytes),
            offsets,
        }
    }

    /// Append the next token's bytes, written by `write`.
    fn push_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> Result<(), TransformerError> {
        write(&mut self.bytes);
        let end = u32::try_from(self.bytes.len()).map_err(|_| TransformerError::BadConfig {
            what: "tokenizer.ggml.tokens: vocabulary larger than 4 GiB".into(),
        })?;
        self.offsets.push(end);
        Ok(())
    }

    fn get(&self, id: u32) -> &[u8] {
        let i = id as usize;
        match (self.offsets.get(i), self.offsets.get(i + 1)) {
            (Some(&a), Some(&b)) => &self.bytes[a as usize..b as usize],
            _ => &[],
        }
    }

    fn len(&self) -> usize {
        self.offsets.len() - 1
    }
}

enum Kind {
    Bpe(Box<bpe::Bpe>),
    Spm(Box<spm::Spm>),
}

/// Tokenizer plus the special-token facts generation needs.
pub struct Tokenizer {
    kind: Kind,
    pieces: Pieces,
    attrs: Vec<u16>,
    bos: Option<u32>,
    eos: Option<u32>,
    eog: Vec<u32>,
    add_bos: bool,
    add_eos: bool,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            Kind::Bpe(_) => "byte-level BPE",
            Kind::Spm(_) => "SentencePiece",
        };
        f.debug_struct("Tokenizer")
            .field("kind", &kind)
            .field("vocab", &self.vocab_size())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .finish()
    }
}

/// The token id at `key`; `default` (if inside the vocabulary) when the key is absent.
fn optional_id(
    md: &Metadata,
    key: &str,
    n: usize,
    default: Option<u32>,
) -> Result<Option<u32>, TransformerError> {
    match md.get_usize(key) {
        Ok(id) if id < n => Ok(Some(id as u32)),
        Ok(id) => Err(TransformerError::BadConfig {
            what: format!("{key} = {id} is outside the vocabulary of {n}"),
        }),
        Err(GgufError::KeyNotFound { .. }) => Ok(default.filter(|&d| (d as usize) < n)),
        Err(e) => Err(e.into()),
    }
}

fn optional_bool(md: &Metadata, key: &str, default: bool) -> Result<bool, TransformerError> {
    match md.get_bool(key) {
        Ok(b) => Ok(b),
        Err(GgufError::KeyNotFound { .. }) => Ok(default),
        Err(e) => Err(e.into()),
    }
}

/// `tokenizer.ggml.scores` as f32 (llama.cpp also accepts i32); zeros when absent.
fn scores(md: &Metadata, n: usize) -> Result<Vec<f32>, TransformerError> {
    const KEY: &str = "tokenizer.ggml.scores";
    match md.get(KEY) {
        None => Ok(vec![0.0; n]),
        Some(Value::Array(ValueType::I32, _)) => Ok(md
            .get_i32_array(KEY)?
            .into_iter()
            .map(|s| s as f32)
            .collect()),
        Some(_) => Ok(md.get_f32_array(KEY)?),
    }
}

/// Token attributes and the end-of-generation ids, derived as llama.cpp's `llama_vocab::load`
/// does from the types, the texts and the special-id keys.
fn attributes(
    md: &Metadata,
    tokens: &[&str],
    types: &[i32],
    eos: Option<u32>,
) -> Result<(Vec<u16>, Vec<u32>), TransformerError> {
    let n = tokens.len();
    let mut attrs: Vec<u16> = types.iter().map(|&t| attr::from_type(t)).collect();
    let mut eog: Vec<u32> = Vec::new();
    // One pass over the texts: every text recognised below starts with `<`, `[`, `_` or `▁`
    // and ends with `>`, `]` or `[`, which few of a vocabulary's tokens do.
    let mut fim_by_text = [None; FIM.len()];
    let mut always_rendered = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        let b = t.as_bytes();
        let maybe = matches!(b.first(), Some(b'<' | b'[' | b'_' | 0xe2))
            && matches!(b.last(), Some(b'>' | b']' | b'['));
        if !maybe {
            continue;
        }
        if EOG_TEXTS.contains(t) {
            eog.push(i as u32);
            attrs[i] |= attr::CONTROL;
        }
        for (found, &(_, _, texts, _)) in fim_by_text.iter_mut().zip(FIM) {
            if found.is_none() && texts.contains(t) {
                *found = Some(i);
            }
        }
        // gpt-oss: always rendered.
        if ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"].contains(t) {
            always_rendered.push(i);
        }
    }
    for (&(key, old_key, _, ends), by_text) in FIM.iter().zip(fim_by_text) {
        let mut id = optional_id(md, key, n, None)?;
        if let (None, Some(old)) = (id, old_key) {
            id = optional_id(md, old, n, None)?;
        }
        if id.is_none() {
            // Found by text (the first such token): it becomes a control token.
            if let Some(i) = by_text {
                attrs[i] |= attr::CONTROL;
                id = Some(i as u32);
            }
        }
        if let (Some(id), true) = (id, ends) {
            eog.push(id);
        }
    }
    for i in always_rendered {
        attrs[i] = attr::USER_DEFINED;
    }
    eog.extend(eos);
    for key in ["tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"] {
        eog.extend(optional_id(md, key, n, None)?);
    }
    eog.sort_unstable();
    eog.dedup();
    let eog_with =
        |eog: &[u32], text: &str| eog.iter().copied().find(|&id| tokens[id as usize] == text);
    // `<|end|>` is not an end of generation where `<|return|>` and `<|call|>` (o200k_harmony)
    // or `<|calls|>` and `<|flush|>` (solar-open) are.
    if let Some(end) = eog_with(&eog, "<|end|>") {
        let has = |t: &str| eog_with(&eog, t).is_some();
        if (has("<|return|>") && has("<|call|>")) || (has("<|calls|>") && has("<|flush|>")) {
            eog.retain(|&id| id != end);
            attrs[end as usize] = attr::USER_DEFINED;
        }
    }
    // `</s>` is a normal token where `<|tool_response>` or `<|plamo:eos|>` ends a generation.
    if let Some(s) = eog_with(&eog, "</s>") {
        let has = |t: &str| eog_with(&eog, t).is_some();
        if has("<|tool_response>") || has("<|plamo:eos|>") {
            eog.retain(|&id| id != s);
            attrs[s as usize] = attr::NORMAL;
        }
    }
    // Per-model strip attributes (llama.cpp sets them by model name): Phi-3's special tokens
    // swallow the whitespace after them, except <unk>, <s> and <|endoftext|>.
    let name = match md.get_str("general.name") {
        Ok(s) => s.to_lowercase(),
        Err(_) => String::new(),
    };
    if name.contains("phi-3") || name.contains("phi3") {
        for (t, a) in tokens.iter().zip(attrs.iter_mut()) {
            if *a & attr::SPECIAL != 0 || *t == "</s>" {
                *a |= attr::RSTRIP;
            }
            if ["<unk>", "<s>", "<|endoftext|>"].contains(t) {
                *a &= !attr::RSTRIP;
            }
        }
    }
    Ok((attrs, eog))
}

impl Tokenizer {
    /// Build from `tokenizer.ggml.*` metadata.
    pub fn from_metadata(md: &Metadata) -> Result<Tokenizer, TransformerError> {
        let model = md.get_str("tokenizer.ggml.model")?;
        let is_spm = match model {
            "gpt2" => false,
            "llama" => true,
            other => {
                return Err(TransformerError::UnsupportedTokenizer {
                    what: format!(
                        "tokenizer.ggml.model = {other:?} (supported: \"gpt2\" byte-level BPE, \"llama\" SentencePiece)"
                    ),
                })
            }
        };
        let raw = md.get_str_array("tokenizer.ggml.tokens")?;
        let n = raw.len();
        if n == 0 || u32::try_from(n).is_err() {
            return Err(TransformerError::BadConfig {
                what: format!("tokenizer.ggml.tokens has {n} tokens"),
            });
        }
        // llama.cpp names an empty token `[EMPTY_<id>]`.
        let renamed: Vec<(usize, String)> = raw
            .iter()
            .enumerate()
            .filter(|(_, t)| t.is_empty())
            .map(|(i, _)| (i, format!("[EMPTY_{i}]")))
            .collect();
        let mut tokens = raw;
        for (i, s) in &renamed {
            tokens[*i] = s;
        }
        let types = match md.get_i32_array("tokenizer.ggml.token_type") {
            Ok(t) if t.len() == n => t,
            Ok(t) => {
                return Err(TransformerError::BadConfig {
                    what: format!(
                        "tokenizer.ggml.token_type has {} entries for {n} tokens",
                        t.len()
                    ),
                })
            }
            Err(GgufError::KeyNotFound { .. }) => vec![token_type::NORMAL; n],
            Err(e) => return Err(e.into()),
        };
        // llama.cpp's defaults for SentencePiece vocabularies: BOS 1, EOS 2, BOS added.
        let (bos_default, eos_default) = if is_spm {
            (Some(1), Some(2))
        } else {
            (None, None)
        };
        let bos = optional_id(md, "tokenizer.ggml.bos_token_id", n, bos_default)?;
        let eos = optional_id(md, "tokenizer.ggml.eos_token_id", n, eos_default)?;
        let add_bos = optional_bool(md, "tokenizer.ggml.add_bos_token", is_spm)?;
        let add_eos = optional_bool(md, "tokenizer.ggml.add_eos_token", false)?;
        let (attrs, eog) = attributes(md, &tokens, &types, eos)?;
        let (kind, pieces) = if is_spm {
            let unk = match optional_id(md, "tokenizer.ggml.unknown_token_id", n, None)? {
                Some(id) => Some(id),
                None => attrs
                    .iter()
                    .position(|a| a & attr::UNKNOWN != 0)
                    .map(|i| i as u32),
            };
            let add_space_prefix = optional_bool(md, "tokenizer.ggml.add_space_prefix", true)?;
            let (s, pieces) =
                spm::Spm::new(&tokens, scores(md, n)?, &attrs, unk, add_space_prefix)?;
            (Kind::Spm(Box::new(s)), pieces)
        } else {
            let (b, pieces) = bpe::Bpe::new(md, &tokens, &attrs)?;
            (Kind::Bpe(Box::new(b)), pieces)
        };
        Ok(Tokenizer {
            kind,
            pieces,
            attrs,
            bos,
            eos,
            eog,
            add_bos,
            add_eos,
        })
    }

    /// Token ids of `text`, special-token texts in it (`<|im_start|>`, `<start_of_turn>`)
    /// parsed as those tokens. `add_special` adds what the model asks for around the text:
    /// BOS before (`tokenizer.ggml.add_bos_token`) and EOS after (`add_eos_token`), as
    /// llama.cpp's `add_special`.
    pub fn encode(&self, text: &str, add_special: bool) -> Result<Vec<u32>, TransformerError> {
        let mut ids = Vec::with_capacity(text.len() / 3 + 2);
        if add_special && self.add_bos {
            ids.extend(self.bos);
        }
        match &self.kind {
            Kind::Bpe(b) => b.encode_into(text, &mut ids)?,
            Kind::Spm(s) => s.encode_into(text, &mut ids),
        }
        if add_special && self.add_eos {
            ids.extend(self.eos);
        }
        Ok(ids)
    }

    /// The tokenizer as `tokenizers` JSON (what `tokenizers::Tokenizer::from_str` reads back),
    /// e.g. to give another model (the LSTM classifier) the same vocabulary. Byte-level BPE
    /// only: a SentencePiece vocabulary has no exact `tokenizers` form (see `tokenizer/spm.rs`), and an
    /// approximate one would tokenize differently from the model.
    pub fn to_json(&self) -> Result<String, TransformerError> {
        match &self.kind {
            Kind::Bpe(b) => b.to_json(),
            Kind::Spm(_) => Err(TransformerError::UnsupportedTokenizer {
                what: "a SentencePiece vocabulary (tokenizer.ggml.model = \"llama\") has no \
                       exact `tokenizers` JSON form"
                    .into(),
            }),
        }
    }

    /// The bytes of a token as decoding renders it: control and user-defined tokens as their
    /// text, `▁` as a space, a byte token as its byte; empty for an unused token or an unknown
    /// id.
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        self.pieces.get(id)
    }

    /// Whether `id` is a control (or unknown-type) token: left out of generated and decoded
    /// text unless special tokens are asked for.
    pub fn is_control(&self, id: u32) -> bool {
        self.attrs
            .get(id as usize)
            .is_some_and(|a| a & attr::HIDDEN != 0)
    }

    /// Decode ids to text (invalid UTF-8 replaced); control tokens included when `special`.
    /// As llama.cpp's `common_detokenize`: where encoding prepends a space
    /// (`tokenizer.ggml.add_space_prefix`), one leading space of the first token is dropped.
    pub fn decode(&self, ids: &[u32], special: bool) -> String {
        let mut strip = matches!(&self.kind, Kind::Spm(s) if s.add_space_prefix());
        let mut b = Vec::new();
        for &id in ids {
            if special || !self.is_control(id) {
                let mut piece = self.token_bytes(id);
                if strip {
                    piece = piece.strip_prefix(b" ").unwrap_or(piece);
                }
                b.extend_from_slice(piece);
            }
            strip = false;
        }
        String::from_utf8_lossy(&b).into_owned()
    }

    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        self.pieces.len()
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
    /// Whether the model wants EOS appended.
    pub fn add_eos(&self) -> bool {
        self.add_eos
    }
    /// Whether `id` ends a generation.
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.binary_search(&id).is_ok()
    }
    /// The text of a token (lossy), for display.
    pub fn token_text(&self, id: u32) -> String {
        String::from_utf8_lossy(self.token_bytes(id)).into_owned()
    }
    /// The id of a token's exact text (as spelled in the vocabulary), if any.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        match &self.kind {
            Kind::Bpe(b) => b.token_id(text),
            Kind::Spm(s) => s.token_id(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use token_type::{BYTE, CONTROL, NORMAL, UNKNOWN, UNUSED, USER_DEFINED};

    /// Metadata of a SentencePiece vocabulary: `<unk>` `<s>` `</s>`, the 256 byte tokens
    /// (ids 3..259), then `extra` (text, score, type) from id 259 on.
    fn spm(extra: &[(&str, f32, i32)]) -> Metadata {
        let mut toks: Vec<(String, f32, i32)> = vec![
            ("<unk>".into(), 0.0, UNKNOWN),
            ("<s>".into(), 0.0, CONTROL),
            ("</s>".into(), 0.0, CONTROL),
        ];
        toks.extend((0..256).map(|b| (format!("<0x{b:02X}>"), 0.0, BYTE)));
        toks.extend(extra.iter().map(|&(t, s, ty)| (t.to_string(), s, ty)));
        let mut md = Metadata::default();
        let arr = |t, v: Vec<Value>| Value::Array(t, v);
        md.insert("tokenizer.ggml.model".into(), Value::String("llama".into()));
        md.insert(
            "tokenizer.ggml.tokens".into(),
            arr(
                ValueType::String,
                toks.iter().map(|t| Value::String(t.0.clone())).collect(),
            ),
        );
        md.insert(
            "tokenizer.ggml.scores".into(),
            arr(
                ValueType::F32,
                toks.iter().map(|t| Value::F32(t.1)).collect(),
            ),
        );
        md.insert(
            "tokenizer.ggml.token_type".into(),
            arr(
                ValueType::I32,
                toks.iter().map(|t| Value::I32(t.2)).collect(),
            ),
        );
        md
    }

    const FIRST: u32 = 259;

    fn set(md: &mut Metadata, key: &str, v: Value) {
        md.remove(key);
        md.insert(key.into(), v);
    }

    #[test]
    fn highest_scoring_pair_merges_first_and_ties_go_left() {
        // a b c; "bc" outscores "ab": "abc" → a + bc.
        let vocab = [
            ("a", -1.0, NORMAL),
            ("b", -1.0, NORMAL),
            ("c", -1.0, NORMAL),
            ("ab", -3.0, NORMAL),
            ("bc", -2.0, NORMAL),
            ("▁", -1.0, NORMAL),
        ];
        let (a, b, c, ab, bc, sp) = (FIRST, FIRST + 1, FIRST + 2, FIRST + 3, FIRST + 4, FIRST + 5);
        let mut md = spm(&vocab);
        set(
            &mut md,
            "tokenizer.ggml.add_space_prefix",
            Value::Bool(false),
        );
        let tk = Tokenizer::from_metadata(&md).unwrap();
        assert_eq!(tk.encode("abc", false).unwrap(), [a, bc]);
        assert_eq!(tk.encode("abcabc", false).unwrap(), [a, bc, a, bc]);
        assert_eq!(tk.encode("ab c", false).unwrap(), [ab, sp, c]);
        // Equal scores: the leftmost pair wins.
        let mut tie = vocab;
        tie[4].1 = -3.0;
        let mut md = spm(&tie);
        set(
            &mut md,
            "tokenizer.ggml.add_space_prefix",
            Value::Bool(false),
        );
        let tk = Tokenizer::from_metadata(&md).unwrap();
        assert_eq!(tk.encode("abc", false).unwrap(), [ab, c]);
        assert_eq!(tk.encode("bcab", false).unwrap(), [bc, ab]);
        // A merge enables the next: with "abc" present it absorbs a + bc.
        let mut more = vocab.to_vec();
        more.push(("abc", -10.0, NORMAL));
        let mut md = spm(&more);
        set(
            &mut md,
            "tokenizer.ggml.add_space_prefix",
            Value::Bool(false),
        );
        let tk = Tokenizer::from_metadata(&md).unwrap();
        assert_eq!(tk.encode("abcb", false).unwrap(), [FIRST + 6, b]);
        assert_eq!(tk.decode(&[FIRST + 6, sp, a], false), "abc a");
    }

    #[test]
    fn space_prefix_byte_fallback_specials_and_bos() {
        let vocab = [
            ("▁a", -1.0, NORMAL),
            ("▁", -2.0, NORMAL),
            ("b", -2.0, NORMAL),
            ("<x>", 0.0, USER_DEFINED),
            ("▁b", -5.0, NORMAL),
            ("u", 0.0, UNUSED),
        ];
        let (sa, sp, b, x, sb, u) = (FIRST, FIRST + 1, FIRST + 2, FIRST + 3, FIRST + 4, FIRST + 5);
        let tk = Tokenizer::from_metadata(&spm(&vocab)).unwrap();
        assert_eq!(tk.bos(), Some(1));
        assert_eq!(tk.eos(), Some(2));
        assert!(tk.add_bos());
        // Space prefix at the start and after each special token, not after text.
        assert_eq!(tk.encode("a b", true).unwrap(), [1, sa, sb]);
        assert_eq!(tk.encode("a<x>b</s>a", false).unwrap(), [sa, x, sb, 2, sa]);
        assert_eq!(tk.encode("", true).unwrap(), [1]);
        assert_eq!(tk.encode("", false).unwrap(), Vec::<u32>::new());
        // "é" is no token: its two UTF-8 bytes. "u" is an unused token, still a match.
        assert_eq!(tk.encode("é", false).unwrap(), [sp, 3 + 0xc3, 3 + 0xa9]);
        assert_eq!(tk.encode("bu", false).unwrap(), [sb, u]);
        assert_eq!(tk.encode("ab", false).unwrap(), [sa, b]);
        // Decoding: one leading space of the first token dropped, bytes reassembled, control
        // tokens only when asked, user-defined always, unused never.
        assert_eq!(tk.decode(&[sa, sb], false), "a b");
        assert_eq!(tk.decode(&[sp, 3 + 0xc3, 3 + 0xa9, x, u], false), "é<x>");
        assert_eq!(tk.decode(&[1, sa, 2], false), " a");
        assert_eq!(tk.decode(&[1, sa, 2], true), "<s> a</s>");
        assert_eq!(tk.token_bytes(sa), b" a");
        assert_eq!(tk.token_bytes(3 + 0x41), b"A");
        assert_eq!(tk.token_id("▁a"), Some(sa));
        assert!(tk.is_control(1) && tk.is_control(0) && !tk.is_control(x));
        assert!(tk.is_eog(2) && !tk.is_eog(1));
        assert!(tk.to_json().is_err());
    }

    #[test]
    fn end_of_turn_ends_generation_and_is_control() {
        let vocab = [
            ("<start_of_turn>", 0.0, CONTROL),
            ("<end_of_turn>", 0.0, NORMAL),
            ("<|fim_pad|>", 0.0, NORMAL),
        ];
        let tk = Tokenizer::from_metadata(&spm(&vocab)).unwrap();
        assert!(tk.is_eog(FIRST + 1) && tk.is_control(FIRST + 1));
        assert!(tk.is_eog(FIRST + 2) && tk.is_control(FIRST + 2));
        assert!(!tk.is_eog(FIRST));
        // Now a control token, it is split off the text.
        assert_eq!(tk.encode("<end_of_turn>", false).unwrap(), [FIRST + 1]);
    }

    #[test]
    fn without_byte_tokens_unknown_characters_are_unk() {
        let mut md = Metadata::default();
        let toks = ["<unk>", "<s>", "</s>", "▁a"];
        md.insert("tokenizer.ggml.model".into(), Value::String("llama".into()));
        md.insert(
            "tokenizer.ggml.tokens".into(),
            Value::Array(
                ValueType::String,
                toks.iter().map(|t| Value::String(t.to_string())).collect(),
            ),
        );
        md.insert(
            "tokenizer.ggml.token_type".into(),
            Value::Array(
                ValueType::I32,
                [UNKNOWN, CONTROL, CONTROL, NORMAL].map(Value::I32).to_vec(),
            ),
        );
        let tk = Tokenizer::from_metadata(&md).unwrap();
        assert_eq!(tk.encode("aé", false).unwrap(), [3, 0]);
        // Without an unknown token either, such a vocabulary is refused.
        set(
            &mut md,
            "tokenizer.ggml.token_type",
            Value::Array(
                ValueType::I32,
                [NORMAL, CONTROL, CONTROL, NORMAL].map(Value::I32).to_vec(),
            ),
        );
        let e = Tokenizer::from_metadata(&md).unwrap_err().to_string();
        assert!(
            e.contains("tokenizer.ggml.tokens") && e.contains("unknown"),
            "{e}"
        );
    }

    #[test]
    fn malformed_vocabularies_are_errors_naming_the_key() {
        let err = |md: &Metadata| Tokenizer::from_metadata(md).unwrap_err().to_string();
        let good = spm(&[("▁a", -1.0, NORMAL)]);
        assert!(Tokenizer::from_metadata(&good).is_ok());

        let mut md = good.clone();
        set(
            &mut md,
            "tokenizer.ggml.scores",
            Value::Array(ValueType::F32, vec![]),
        );
        let e = err(&md);
        assert!(
            e.contains("tokenizer.ggml.scores") && e.contains("260"),
            "{e}"
        );

        let mut md = good.clone();
        let mut nan = vec![Value::F32(0.0); 260];
        nan[7] = Value::F32(f32::NAN);
        set(
            &mut md,
            "tokenizer.ggml.scores",
            Value::Array(ValueType::F32, nan),
        );
        assert!(err(&md).contains("tokenizer.ggml.scores[7]"));

        let mut md = good.clone();
        set(&mut md, "tokenizer.ggml.scores", Value::String("x".into()));
        assert!(err(&md).contains("tokenizer.ggml.scores"));

        let mut md = good.clone();
        set(
            &mut md,
            "tokenizer.ggml.token_type",
            Value::Array(ValueType::F32, vec![Value::F32(1.0); 260]),
        );
        assert!(err(&md).contains("tokenizer.ggml.token_type"));

        // A byte-typed token that is not <0xHH>.
        let mut md = spm(&[("zz", 0.0, BYTE)]);
        let e = err(&md);
        assert!(
            e.contains("tokenizer.ggml.token_type") && e.contains("\"zz\""),
            "{e}"
        );
        // Byte tokens with one missing (<0x41> renamed).
        let Some(Value::Array(_, items)) = md.remove("tokenizer.ggml.tokens") else {
            unreachable!()
        };
        let mut items = items;
        items[3 + 0x41] = Value::String("A".into());
        items[259] = Value::String("B".into());
        md.insert(
            "tokenizer.ggml.tokens".into(),
            Value::Array(ValueType::String, items.clone()),
        );
        set(
            &mut md,
            "tokenizer.ggml.token_type",
            Value::Array(ValueType::I32, vec![Value::I32(NORMAL); 260]),
        );
        // "A" stands in for byte 0x41, as in llama.cpp; renaming 0x80 instead cannot.
        assert!(Tokenizer::from_metadata(&md).is_ok());
        items[3 + 0x80] = Value::String("C".into());
        set(
            &mut md,
            "tokenizer.ggml.tokens",
            Value::Array(ValueType::String, items),
        );
        let e = err(&md);
        assert!(
            e.contains("tokenizer.ggml.tokens") && e.contains("<0x80>"),
            "{e}"
        );

        // A repeated token, and an id key outside the vocabulary.
        let md = spm(&[("▁a", -1.0, NORMAL), ("▁a", -1.0, NORMAL)]);
        let e = err(&md);
        assert!(
            e.contains("tokenizer.ggml.tokens") && e.contains("repeats"),
            "{e}"
        );
        let mut md = good.clone();
        set(&mut md, "tokenizer.ggml.bos_token_id", Value::U32(260));
        assert!(err(&md).contains("tokenizer.ggml.bos_token_id"));
        let mut md = good;
        set(
            &mut md,
            "tokenizer.ggml.model",
            Value::String("bert".into()),
        );
        assert!(err(&md).contains("tokenizer.ggml.model"));
    }
}
