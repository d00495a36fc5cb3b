//! SentencePiece vocabularies (`tokenizer.ggml.model = llama`), tokenized as llama.cpp's
//! `llm_tokenizer_spm` does. Written here rather than on the `tokenizers` crate: its BPE
//! model needs merge rules, which these GGUF files do not have (only token scores), and
//! deriving them from the scores costs a pass over every split of every token at each load
//! (262,144 tokens for Gemma 3) and still does not reproduce this algorithm, in which
//! overlapping candidates of equal score go to the leftmost pair rather than to a merge
//! rank. Its added-token matching (leftmost-longest) also differs from llama.cpp's
//! longest-token-first partition, which [`super::special`] reproduces.
//!
//! Encoding, per raw piece of text left by the special-token partition:
//! 1. a space is prepended when `tokenizer.ggml.add_space_prefix` is set (default true) and
//!    the piece starts the text or follows a special token; every space becomes `▁` (U+2581);
//! 2. each UTF-8 character is a symbol; the adjacent pair whose concatenation is a token
//!    with the highest score is merged (equal scores: the leftmost pair), repeatedly, until
//!    no adjacent pair forms a token (a priority queue of candidate pairs: O(n log n));
//! 3. each final symbol is its token; a character that is not a token is written as its
//!    UTF-8 bytes through the byte tokens `<0xXX>` (or, as llama.cpp, a token whose text is
//!    that single ASCII byte). A vocabulary without byte tokens writes such a character as
//!    the unknown token (llama.cpp stops with an error there).
//!
//! Any token can be the result of a merge, whatever its type (unused tokens included), as in
//! llama.cpp.

use std::collections::hash_map::RandomState;
use std::collections::BinaryHeap;
use std::hash::BuildHasher;

use super::special::{Fragment, Specials};
use super::{attr, Pieces};
use crate::TransformerError;

/// `▁`, which stands for a space in SentencePiece tokens.
const SPACE: &str = "\u{2581}";

/// Token text → id, built without an allocation per token (262,144 of them for Gemma 3): all
/// texts in one buffer, and an open-addressing table (linear probing, at most half full) of
/// ids tagged with the high half of their hash, so a probe rarely reads a text that does not
/// match. The hash is std's randomly keyed SipHash: no vocabulary can be crafted to make the
/// load quadratic. Entries are inserted in nearly the order of their home slots (bucketed by a
/// counting sort), so that building the table walks it from one end to the other instead of
/// jumping through it: a random access per token costs more than the hashing.
struct TextIndex {
    text: String,
    /// Token i is `text[ends[i - 1]..ends[i]]` (from 0 for token 0).
    ends: Vec<u32>,
    /// `tag << 32 | id`, `EMPTY` where free.
    slots: Vec<u64>,
    hasher: RandomState,
}

const EMPTY: u64 = u64::MAX;

impl TextIndex {
    /// The index of `tokens`; a repeated token is an error.
    fn new(tokens: &[&str]) -> Result<TextIndex, TransformerError> {
        let too_large = || TransformerError::BadConfig {
            what: "tokenizer.ggml.tokens: vocabulary larger than 4 GiB".into(),
        };
        let total: usize = tokens.iter().map(|t| t.len()).sum();
        if u32::try_from(total).is_err() || u32::try_from(tokens.len()).is_err() {
            return Err(too_large());
        }
        let n_slots = tokens
            .len()
            .checked_mul(2)
            .and_then(usize::checked_next_power_of_two)
            .ok_or_else(too_large)?
            .max(2);
        let mut text = String::with_capacity(total);
        let mut ends = Vec::with_capacity(tokens.len());
        for t in tokens {
            text.push_str(t);
            ends.push(text.len() as u32);
        }
        let mut index = TextIndex {
            text,
            ends,
            slots: vec![EMPTY; n_slots],
            hasher: RandomState::new(),
        };
        let mask = index.slots.len() as u64 - 1;
        // Hash from the contiguous copy; bucket the entries by the top bits of their home
        // slot (a counting sort, stable: ids ascend within a bucket).
        let hashes: Vec<u64> = (0..tokens.len() as u32)
            .map(|i| index.hasher.hash_one(index.text_of(i).as_bytes()))
            .collect();
        let shift = (mask.count_ones()).saturating_sub(12);
        let bucket = |h: u64| ((h & mask) >> shift) as usize;
        let mut starts = vec![0usize; (mask as usize >> shift) + 2];
        for &h in &hashes {
            starts[bucket(h) + 1] += 1;
        }
        for b in 1..starts.len() {
            starts[b] += starts[b - 1];
        }
        let mut keyed = vec![(0u64, 0u32); tokens.len()];
        for (i, &h) in hashes.iter().enumerate() {
            let at = &mut starts[bucket(h)];
            keyed[*at] = (h, i as u32);
            *at += 1;
        }
        for (h, i) in keyed {
            let entry = (h >> 32) << 32 | u64::from(i);
            let mut at = (h & mask) as usize;
            loop {
                match index.slots[at] {
                    EMPTY => {
                        index.slots[at] = entry;
                        break;
                    }
                    e if e >> 32 == h >> 32 && index.text_of(e as u32) == index.text_of(i) => {
                        return Err(TransformerError::BadConfig {
                            what: format!(
                                "tokenizer.ggml.tokens: token {i} {:?} repeats token {}",
                                index.text_of(i),
                                e as u32
                            ),
                        });
                    }
                    _ => at = (at + 1) & mask as usize,
                }
            }
        }
        Ok(index)
    }

    fn text_of(&self, id: u32) -> &str {
        let i = id as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.text[start..self.ends[i] as usize]
    }

    fn get(&self, s: &str) -> Option<u32> {
        let h = self.hasher.hash_one(s.as_bytes());
        let mask = self.slots.len() - 1;
        let mut at = h as usize & mask;
        loop {
            match self.slots[at] {
                EMPTY => return None,
                e if e >> 32 == h >> 32 && self.text_of(e as u32) == s => return Some(e as u32),
                _ => at = (at + 1) & mask,
            }
        }
    }
}

/// A SentencePiece vocabulary.
pub(super) struct Spm {
    /// Token text → id.
    ids: TextIndex,
    scores: Vec<f32>,
    /// What a character outside the vocabulary becomes.
    fallback: Fallback,
    add_space_prefix: bool,
    specials: Specials,
}

/// How a character that is not a token is written.
enum Fallback {
    /// As its UTF-8 bytes, each through its byte token.
    Bytes(Box<[u32; 256]>),
    /// As the unknown token (a vocabulary without byte tokens).
    Unknown(u32),
}

/// The byte value of a byte token's text `<0xHH>`.
fn parse_byte_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// One symbol of the merge: the byte range `start..start + len` of the text, and its live
/// neighbours (`NONE` at the ends). A symbol merged into its left neighbour has `len == 0`.
#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: usize,
    next: usize,
}

const NONE: usize = usize::MAX;

/// A candidate merge of the symbols `left` and `right` (adjacent when queued) into a token of
/// `score` that spans `size` bytes. Ordered by score, then by the leftmost position.
#[derive(Clone, Copy)]
struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    size: usize,
}

impl Ord for Bigram {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        // Scores have no NaN and no -0.0 (normalized at load), so `total_cmp` is `<`.
        self.score
            .total_cmp(&o.score)
            .then_with(|| o.left.cmp(&self.left))
    }
}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl PartialEq for Bigram {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o).is_eq()
    }
}
impl Eq for Bigram {}

impl Spm {
    /// Build from the token texts (empty ones already renamed), their scores and attributes;
    /// also returns each token's bytes as decoding renders them.
    pub(super) fn new(
        tokens: &[&str],
        mut scores: Vec<f32>,
        attrs: &[u16],
        unk: Option<u32>,
        add_space_prefix: bool,
    ) -> Result<(Spm, Pieces), TransformerError> {
        let n = tokens.len();
        let bad = |what: String| TransformerError::BadConfig { what };
        if scores.len() != n {
            return Err(bad(format!(
                "tokenizer.ggml.scores has {} entries for {n} tokens",
                scores.len()
            )));
        }
        for (i, s) in scores.iter_mut().enumerate() {
            if s.is_nan() {
                return Err(bad(format!("tokenizer.ggml.scores[{i}] is NaN")));
            }
            *s += 0.0; // -0.0 → 0.0, as C's `<` sees them equal
        }
        let ids = TextIndex::new(tokens)?;
        let mut pieces = Pieces::with_capacity(n, tokens.iter().map(|t| t.len()).sum());
        let mut any_byte_token = false;
        for (i, (t, &a)) in tokens.iter().zip(attrs).enumerate() {
            let byte = if a & attr::BYTE != 0 {
                any_byte_token = true;
                Some(parse_byte_token(t).ok_or_else(|| {
                    bad(format!(
                        "tokenizer.ggml.token_type: token {i} {t:?} has the byte type but is not <0xHH>"
                    ))
                })?)
            } else {
                None
            };
            pieces.push_with(|out| {
                if a & attr::SPECIAL != 0 {
                    out.extend_from_slice(t.as_bytes());
                } else if a & attr::NORMAL != 0 {
                    // `▁` → space.
                    let mut rest = t.as_bytes();
                    while let Some(at) = rest.windows(3).position(|w| w == SPACE.as_bytes()) {
                        out.extend_from_slice(&rest[..at]);
                        out.push(b' ');
                        rest = &rest[at + 3..];
                    }
                    out.extend_from_slice(rest);
                } else if let Some(b) = byte {
                    out.push(b);
                }
                // Unused and undefined tokens render as nothing.
            })?;
        }

        let mut byte_ids = [0u32; 256];
        let mut missing = Vec::new();
        for (b, slot) in byte_ids.iter_mut().enumerate() {
            let hex = format!("<0x{b:02X}>");
            let hex_id = ids.get(&hex);
            any_byte_token |= hex_id.is_some();
            let ascii = char::from(b as u8);
            let id = hex_id.or_else(|| {
                (b < 0x80)
                    .then(|| ids.get(ascii.encode_utf8(&mut [0; 4])))
                    .flatten()
            });
            match id {
                Some(id) => *slot = id,
                None => missing.push(hex),
            }
        }
        let fallback = match (missing.is_empty(), any_byte_token, unk) {
            (true, _, _) => Fallback::Bytes(Box::new(byte_ids)),
            (false, false, Some(unk)) => Fallback::Unknown(unk),
            (false, true, _) => {
                return Err(bad(format!(
                    "tokenizer.ggml.tokens: the vocabulary has byte tokens but none for {} byte value(s) ({}{})",
                    missing.len(),
                    missing[..missing.len().min(4)].join(", "),
                    if missing.len() > 4 { ", …" } else { "" }
                )))
            }
            (false, false, None) => {
                return Err(bad(
                    "tokenizer.ggml.tokens: no byte tokens <0x00>…<0xFF> and no unknown token: \
                     characters outside the vocabulary could not be encoded"
                        .into(),
                ))
            }
        };
        let specials = Specials::new(tokens, attrs)?;
        Ok((
            Spm {
                ids,
                scores,
                fallback,
                add_space_prefix,
                specials,
            },
            pieces,
        ))
    }

    /// The id of a token's exact text.
    pub(super) fn token_id(&self, text: &str) -> Option<u32> {
        self.ids.get(text)
    }

    /// Whether decoding drops one leading space of the first token (the prefix encoding adds).
    pub(super) fn add_space_prefix(&self) -> bool {
        self.add_space_prefix
    }

    /// Append the ids of `text` (special tokens parsed) to `out`.
    pub(super) fn encode_into(&self, text: &str, out: &mut Vec<u32>) {
        let mut prev_special = true;
        let mut buf = String::new();
        for frag in self.specials.partition(text) {
            match frag {
                Fragment::Token(id) => {
                    out.push(id);
                    prev_special = true;
                }
                Fragment::Text(r) => {
                    buf.clear();
                    if self.add_space_prefix && prev_special {
                        buf.push_str(SPACE);
                    }
                    for (i, part) in text[r].split(' ').enumerate() {
                        if i > 0 {
                            buf.push_str(SPACE);
                        }
                        buf.push_str(part);
                    }
                    self.encode_escaped(&buf, out);
                    prev_special = false;
                }
            }
        }
    }

    /// Score of the token spelled by `s`, if any.
    fn lookup(&self, s: &str) -> Option<(u32, f32)> {
        let id = self.ids.get(s)?;
        Some((id, self.scores[id as usize]))
    }

    /// The merge of one piece of text whose spaces are already `▁`.
    fn encode_escaped(&self, text: &str, out: &mut Vec<u32>) {
        let mut syms: Vec<Symbol> = Vec::with_capacity(text.len());
        for (i, (start, c)) in text.char_indices().enumerate() {
            syms.push(Symbol {
                start,
                len: c.len_utf8(),
                prev: if i == 0 { NONE } else { i - 1 },
                next: i + 1,
            });
        }
        let Some(last) = syms.last_mut() else {
            return;
        };
        last.next = NONE;

        let mut queue = BinaryHeap::with_capacity(syms.len());
        let candidate = |syms: &[Symbol], left: usize, right: usize| -> Option<Bigram> {
            if left == NONE || right == NONE {
                return None;
            }
            let (l, r) = (syms[left], syms[right]);
            let size = l.len + r.len;
            let (_, score) = self.lookup(&text[l.start..l.start + size])?;
            Some(Bigram {
                score,
                left,
                right,
                size,
            })
        };
        for i in 1..syms.len() {
            queue.extend(candidate(&syms, i - 1, i));
        }
        while let Some(b) = queue.pop() {
            let (l, r) = (syms[b.left], syms[b.right]);
            // Stale: one side was merged since this pair was queued.
            if l.len == 0 || r.len == 0 || l.len + r.len != b.size {
                continue;
            }
            syms[b.left].len = b.size;
            syms[b.right].len = 0;
            syms[b.left].next = r.next;
            if r.next != NONE {
                syms[r.next].prev = b.left;
            }
            queue.extend(candidate(&syms, l.prev, b.left));
            queue.extend(candidate(&syms, b.left, r.next));
        }

        let mut i = 0;
        while i != NONE {
            let s = syms[i];
            let piece = &text[s.start..s.start + s.len];
            match self.ids.get(piece) {
                Some(id) => out.push(id),
                // Only a single character can be left without a token: every merge made one.
                None => match &self.fallback {
                    Fallback::Bytes(ids) => out.extend(piece.bytes().map(|b| ids[b as usize])),
                    Fallback::Unknown(unk) => out.push(*unk),
                },
            }
            i = s.next;
        }
    }
}
