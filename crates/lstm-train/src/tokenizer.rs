//! A word-level tokenizer trained on the training split with the `tokenizers` crate:
//! NFKC, `<br />` → space, lowercase; split on whitespace and punctuation (`\w+|[^\w\s]+`);
//! the most frequent words (at least `min_frequency` times) up to `vocab_size`, `[UNK]` = 0.

use tokenizers::models::wordlevel::{WordLevel, WordLevelTrainer};
use tokenizers::models::TrainerWrapper;
use tokenizers::normalizers::{Lowercase, Replace, Sequence, NFKC};
use tokenizers::pre_tokenizers::whitespace::Whitespace;
use tokenizers::{AddedToken, Tokenizer};

use crate::TrainError;

/// Vocabulary options.
#[derive(Clone, Debug)]
pub struct TokenizerOptions {
    pub vocab_size: usize,
    pub min_frequency: u64,
}

fn terr(e: impl std::fmt::Display) -> TrainError {
    TrainError::Tokenizer(e.to_string())
}

/// Train the tokenizer on `texts`.
pub fn train_tokenizer(texts: &[&str], opts: &TokenizerOptions) -> Result<Tokenizer, TrainError> {
    let model = WordLevel::builder()
        .unk_token("[UNK]".into())
        .build()
        .map_err(terr)?;
    let mut tok = Tokenizer::new(model);
    tok.with_normalizer(Some(Sequence::new(vec![
        NFKC.into(),
        Replace::new("<br />", " ").map_err(terr)?.into(),
        Lowercase.into(),
    ])));
    tok.with_pre_tokenizer(Some(Whitespace {}));
    let trainer = WordLevelTrainer::builder()
        .vocab_size(opts.vocab_size)
        .min_frequency(opts.min_frequency)
        .show_progress(false)
        .special_tokens(vec![AddedToken::from("[UNK]", true)])
        .build()
        .map_err(terr)?;
    let mut trainer = TrainerWrapper::from(trainer);
    tok.train(&mut trainer, texts.iter().copied())
        .map_err(terr)?;
    if tok.token_to_id("[UNK]") != Some(0) {
        return Err(TrainError::Tokenizer("[UNK] is not token 0".into()));
    }
    Ok(tok)
}
