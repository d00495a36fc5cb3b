//! Special tokens split off the input text before the tokenizer proper sees it, exactly as
//! llama.cpp's `tokenizer_st_partition` does with `parse_special = true`.
//!
//! Every control, user-defined and unknown token is a candidate. They are tried one after the
//! other, longest text first (equal lengths: lower id first; llama.cpp's `std::sort` leaves
//! that order unspecified, and it only matters for two equally long specials that overlap in
//! the text). Each candidate is searched left to right in every piece of text still raw, and
//! each occurrence splits that piece into raw left, the token, raw right. A token with the
//! `lstrip` / `rstrip` attribute also drops the ASCII whitespace next to it.
//!
//! llama.cpp runs a substring search for every special token on every call (Gemma 3 has
//! 6,414 of them). Here one Aho–Corasick pass over the text first finds which specials occur
//! at all, and only those are searched: the same result, at the cost of one pass.

use aho_corasick::{AhoCorasick, MatchKind};

use super::attr;
use crate::TransformerError;

/// A piece of the partitioned text: raw text (a byte range of the input) or a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Fragment {
    Text(std::ops::Range<usize>),
    Token(u32),
}

/// The special tokens of a vocabulary, in the order they are tried.
pub(super) struct Specials {
    /// Automaton over `texts`; pattern i is `texts[i]`. `None` when there are no specials.
    automaton: Option<AhoCorasick>,
    texts: Vec<Box<str>>,
    ids: Vec<u32>,
    attrs: Vec<u16>,
}

/// C's `isspace` in the "C" locale.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

impl Specials {
    /// The tokens whose attributes include [`attr::SPECIAL`], with their strip attributes.
    pub(super) fn new(tokens: &[&str], attrs: &[u16]) -> Result<Specials, TransformerError> {
        let mut order: Vec<u32> = (0..tokens.len() as u32)
            .filter(|&i| attrs[i as usize] & attr::SPECIAL != 0)
            .collect();
        // Stable: equal lengths keep id order.
        order.sort_by_key(|&i| std::cmp::Reverse(tokens[i as usize].len()));
        let texts: Vec<Box<str>> = order.iter().map(|&i| tokens[i as usize].into()).collect();
        let automaton = if texts.is_empty() {
            None
        } else {
            Some(
                AhoCorasick::builder()
                    .match_kind(MatchKind::Standard)
                    .build(texts.iter().map(|t| t.as_bytes()))
                    .map_err(|e| TransformerError::BadConfig {
                        what: format!("tokenizer.ggml.tokens: special-token matcher: {e}"),
                    })?,
            )
        };
        Ok(Specials {
            automaton,
            attrs: order.iter().map(|&i| attrs[i as usize]).collect(),
            ids: order,
            texts,
        })
    }

    /// Split `text` into raw pieces and special tokens. Empty text gives no fragments.
    pub(super) fn partition(&self, text: &str) -> Vec<Fragment> {
        let mut frags = Vec::new();
        if text.is_empty() {
            return frags;
        }
        frags.push(Fragment::Text(0..text.len()));
        let Some(ac) = &self.automaton else {
            return frags;
        };
        // Which specials occur anywhere (overlapping matches included), in priority order.
        // (Deduplicated as it grows, so a text of many matches needs no more memory than a
        // few times the number of specials.)
        let mut present = Vec::new();
        let cap = 4 * self.texts.len().max(64);
        for m in ac.find_overlapping_iter(text) {
            present.push(m.pattern().as_usize());
            if present.len() >= cap {
                present.sort_unstable();
                present.dedup();
            }
        }
        present.sort_unstable();
        present.dedup();
        let bytes = text.as_bytes();
        for p in present {
            let needle = &*self.texts[p];
            let (id, a) = (self.ids[p], self.attrs[p]);
            let mut next = Vec::with_capacity(frags.len() + 2);
            for f in frags {
                let Fragment::Text(r) = f else {
                    next.push(f);
                    continue;
                };
                let (mut start, end) = (r.start, r.end);
                loop {
                    let Some(rel) = text[start..end].find(needle) else {
                        if start < end {
                            next.push(Fragment::Text(start..end));
                        }
                        break;
                    };
                    let at = start + rel;
                    let mut left_end = at;
                    if a & attr::LSTRIP != 0 {
                        while left_end > start && is_c_space(bytes[left_end - 1]) {
                            left_end -= 1;
                        }
                    }
                    if left_end > start {
                        next.push(Fragment::Text(start..left_end));
                    }
                    next.push(Fragment::Token(id));
                    start = at + needle.len();
                    if a & attr::RSTRIP != 0 {
                        while start < end && is_c_space(bytes[start]) {
                            start += 1;
                        }
                    }
                }
            }
            frags = next;
        }
        frags
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Fragment::{Text, Token};

    const C: u16 = attr::CONTROL;
    const U: u16 = attr::USER_DEFINED;
    const N: u16 = attr::NORMAL;

    #[test]
    fn longest_special_first_then_shorter_in_what_is_left() {
        // "<a>" (id 0) and "<a>b" (id 1) overlap: the longer one is taken everywhere first.
        let s = Specials::new(&["<a>", "<a>b", "x"], &[C, U, N]).unwrap();
        assert_eq!(
            s.partition("q<a>b<a>z"),
            vec![Text(0..1), Token(1), Token(0), Text(8..9)]
        );
        assert_eq!(s.partition("<a><a>"), vec![Token(0), Token(0)]);
        assert_eq!(s.partition("plain x"), vec![Text(0..7)]);
        assert!(s.partition("").is_empty());
    }

    #[test]
    fn strip_attributes_drop_adjacent_whitespace() {
        let s = Specials::new(&["<l>", "<r>"], &[C | attr::LSTRIP, U | attr::RSTRIP]).unwrap();
        assert_eq!(
            s.partition("a \t<l> b<r> \n c"),
            vec![Text(0..1), Token(0), Text(6..8), Token(1), Text(14..15)]
        );
        // Only whitespace between: nothing raw is left.
        assert_eq!(s.partition(" <l><r>  "), vec![Token(0), Token(1)]);
    }

    #[test]
    fn unknown_type_tokens_are_special_and_normal_ones_are_not() {
        let s = Specials::new(&["<unk>", "ab"], &[attr::UNKNOWN, N]).unwrap();
        assert_eq!(s.partition("ab<unk>"), vec![Text(0..2), Token(0)]);
    }
}
