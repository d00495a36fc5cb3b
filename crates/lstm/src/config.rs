//! Hyper-parameters and their GGUF keys.

use edgeinfer_gguf::{Metadata, Value};

use crate::LstmError;

/// `general.architecture` of an LSTM classifier file.
pub const ARCH: &str = "lstm-classifier";

/// Largest dimension accepted from a file: bounds every allocation a config can cause.
const MAX_DIM: usize = 1 << 20;

/// Which tokens are kept when a text has more than `max_tokens`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Keep {
    /// The beginning of the text.
    #[default]
    First,
    /// The end of the text (for reviews, where the verdict tends to come last).
    Last,
}

impl Keep {
    /// The name stored in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Keep::First => "first",
            Keep::Last => "last",
        }
    }

    /// Parse `first` / `last`.
    pub fn parse(s: &str) -> Option<Keep> {
        match s {
            "first" => Some(Keep::First),
            "last" => Some(Keep::Last),
            _ => None,
        }
    }
}

/// The shape of a classifier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LstmConfig {
    pub vocab_size: usize,
    pub embed_dim: usize,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub bidirectional: bool,
    pub num_classes: usize,
    /// Tokens kept per text; 0 keeps all.
    pub max_tokens: usize,
    pub keep: Keep,
}

impl LstmConfig {
    /// 2 when bidirectional, else 1.
    pub fn directions(&self) -> usize {
        if self.bidirectional {
            2
        } else {
            1
        }
    }

    /// Input width of layer `k`.
    pub fn layer_input(&self, k: usize) -> usize {
        if k == 0 {
            self.embed_dim
        } else {
            self.hidden_size * self.directions()
        }
    }

    /// Width of the final feature vector fed to the output layer.
    pub fn feature_dim(&self) -> usize {
        self.hidden_size * self.directions()
    }

    /// Check every dimension is non-zero and bounded.
    pub fn validate(&self) -> Result<(), LstmError> {
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("embedding_length", self.embed_dim),
            ("hidden_size", self.hidden_size),
            ("block_count", self.num_layers),
            ("class count", self.num_classes),
        ] {
            if v == 0 || v > MAX_DIM {
                return Err(LstmError::BadConfig {
                    what: format!("{name} = {v} (must be 1..={MAX_DIM})"),
                });
            }
        }
        if self.num_layers > 16 {
            return Err(LstmError::BadConfig {
                what: format!("block_count = {} (at most 16)", self.num_layers),
            });
        }
        Ok(())
    }

    /// Read the config from `lstm-classifier.*` keys; the class count is the label count.
    pub fn from_metadata(md: &Metadata) -> Result<(LstmConfig, Vec<String>), LstmError> {
        let arch = md.get_str("general.architecture")?;
        if arch != ARCH {
            return Err(LstmError::WrongArchitecture { arch: arch.into() });
        }
        let key = |k: &str| format!("{ARCH}.{k}");
        let labels: Vec<String> = md
            .get_str_array(&key("labels"))?
            .into_iter()
            .map(str::to_string)
            .collect();
        let bidirectional = md.get_bool(&key("bidirectional"))?;
        let keep = match md.get(&key("keep")) {
            None => Keep::First,
            Some(_) => {
                let s = md.get_str(&key("keep"))?;
                Keep::parse(s).ok_or_else(|| LstmError::BadConfig {
                    what: format!("{} = {s:?} (expected \"first\" or \"last\")", key("keep")),
                })?
            }
        };
        let max_tokens = match md.get(&key("max_tokens")) {
            None => 0,
            Some(_) => md.get_usize(&key("max_tokens"))?,
        };
        let config = LstmConfig {
            vocab_size: md.get_usize(&key("vocab_size"))?,
            embed_dim: md.get_usize(&key("embedding_length"))?,
            hidden_size: md.get_usize(&key("hidden_size"))?,
            num_layers: md.get_usize(&key("block_count"))?,
            bidirectional,
            num_classes: labels.len(),
            max_tokens,
            keep,
        };
        config.validate()?;
        if labels.len() < 2 {
            return Err(LstmError::BadConfig {
                what: format!(
                    "{} has {} labels (need at least 2)",
                    key("labels"),
                    labels.len()
                ),
            });
        }
        Ok((config, labels))
    }

    /// The metadata keys describing this config (without labels and tokenizer).
    pub fn to_metadata(&self) -> Vec<(String, Value)> {
        let key = |k: &str| format!("{ARCH}.{k}");
        let u = |v: usize| Value::U32(v as u32);
        vec![
            ("general.architecture".into(), Value::String(ARCH.into())),
            (key("vocab_size"), u(self.vocab_size)),
            (key("embedding_length"), u(self.embed_dim)),
            (key("hidden_size"), u(self.hidden_size)),
            (key("block_count"), u(self.num_layers)),
            (key("bidirectional"), Value::Bool(self.bidirectional)),
            (key("max_tokens"), u(self.max_tokens)),
            (key("keep"), Value::String(self.keep.as_str().into())),
        ]
    }

    /// Tensor-name suffix of a direction: `""` forward, `"_reverse"` backward.
    pub fn suffix(direction: usize) -> &'static str {
        if direction == 0 {
            ""
        } else {
            "_reverse"
        }
    }
}
