//! A decoder as a zero-shot classifier: the text goes into an instruction prompt (through the
//! model's chat template), and each label is scored by the log-probability the model gives its
//! tokens as the start of the answer. No free generation: every label is scored, the best wins.
//!
//! Small models prefer some labels whatever the text says. After [`ZeroShot::calibrate`], each
//! label's score is taken relative to its mean score over a set of unlabelled texts: content-free
//! ones (`""`, `"N/A"`: "contextual calibration", Zhao et al., 2021) or a sample of texts from the
//! task ("batch calibration", Zhou et al., 2023). No labels are used.
//!
//! With [`ZeroShot::with_examples`] it is a few-shot classifier: k labelled examples go into the
//! prompt before the text. Every prompt then starts with the same tokens (template, instruction,
//! examples); a session keeps them cached between texts and runs only the text and what follows
//! ([`Session::reuse_prefix`]), so the examples cost their prefill once, not once per text.

use std::sync::Arc;

use crate::chat::{render_for, template_for, Message};
use crate::{log_prob, Logits, Model, Session, TransformerError};

/// Labels and prompt for zero-shot classification with one model (which it holds: `Send +
/// Sync + 'static`, share it between sessions and threads).
#[derive(Clone, Debug)]
pub struct ZeroShot {
    model: Arc<Model>,
    labels: Vec<String>,
    label_ids: Vec<Vec<u32>>,
    instruction: String,
    /// Text tokens kept (the rest of a longer text is cut).
    pub max_text_tokens: usize,
    /// Labelled examples shown before the text (few-shot), already cut and rendered.
    shots: String,
    n_shots: usize,
    /// Per-label log-probabilities for content-free input, subtracted from every score.
    baseline: Option<Vec<f64>>,
}

/// The scores of one text.
#[derive(Clone, Debug, PartialEq)]
pub struct ZeroShotResult {
    /// Index of the best label.
    pub label: usize,
    /// Sum of the label tokens' log-probabilities, per label (before calibration).
    pub log_probs: Vec<f64>,
    /// Calibrated scores normalised over the labels (softmax).
    pub probs: Vec<f64>,
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Of those, the tokens the session already held from an earlier prompt (not run again).
    pub reused_tokens: usize,
}

impl ZeroShot {
    /// `instruction` is the task ("Is this movie review positive or negative?"); the prompt
    /// adds the text and the label list. Labels must tokenize to at least one token.
    pub fn new(
        model: Arc<Model>,
        labels: &[String],
        instruction: &str,
    ) -> Result<Self, TransformerError> {
        if labels.len() < 2 {
            return Err(TransformerError::BadConfig {
                what: format!("zero-shot classification needs two or more labels, got {labels:?}"),
            });
        }
        let label_ids = labels
            .iter()
            .map(|l| {
                let ids = model.tokenizer.encode(l, false)?;
                if ids.is_empty() {
                    return Err(TransformerError::BadConfig {
                        what: format!("label {l:?} has no tokens"),
                    });
                }
                Ok(ids)
            })
            .collect::<Result<_, _>>()?;
        Ok(ZeroShot {
            model,
            labels: labels.to_vec(),
            label_ids,
            instruction: instruction.to_string(),
            max_text_tokens: 1024,
            shots: String::new(),
            n_shots: 0,
            baseline: None,
        })
    }

    /// Show these labelled examples (text, label index) in every prompt, in this order, each
    /// text cut to `max_tokens` tokens. Replaces earlier examples; an empty list is zero-shot.
    /// A calibration measured before no longer applies: calibrate again after this.
    pub fn with_examples(
        mut self,
        examples: &[(&str, usize)],
        max_tokens: usize,
    ) -> Result<Self, TransformerError> {
        let mut shots = String::new();
        for (i, &(text, label)) in examples.iter().enumerate() {
            let Some(name) = self.labels.get(label) else {
                return Err(TransformerError::BadConfig {
                    what: format!(
                        "few-shot example {i} has label index {label}, but there are only {} \
                         labels",
                        self.labels.len()
                    ),
                });
            };
            shots += &format!("Text: {}\nAnswer: {name}\n\n", self.cut(text, max_tokens)?);
        }
        self.shots = shots;
        self.n_shots = examples.len();
        self.baseline = None;
        Ok(self)
    }

    /// Examples shown in each prompt (0: zero-shot).
    pub fn n_examples(&self) -> usize {
        self.n_shots
    }

    fn cut(&self, text: &str, max_tokens: usize) -> Result<String, TransformerError> {
        let tok = &self.model.tokenizer;
        let ids = tok.encode(text, false)?;
        Ok(if ids.len() > max_tokens {
            tok.decode(&ids[..max_tokens], false)
        } else {
            text.to_string()
        }
        .trim()
        .to_string())
    }

    /// Content-free inputs for [`calibrate`](Self::calibrate) when no task texts are at hand.
    pub const CONTENT_FREE: [&'static str; 2] = ["", "N/A"];

    /// Measure each label's mean log-probability over `texts` (unlabelled) and score relative
    /// to it from now on.
    pub fn calibrate(
        &mut self,
        session: &mut Session,
        texts: &[&str],
    ) -> Result<(), TransformerError> {
        self.baseline = None;
        if texts.is_empty() {
            return Ok(());
        }
        let mut sum = vec![0.0; self.labels.len()];
        for text in texts {
            let r = self.classify(session, text)?;
            for (s, l) in sum.iter_mut().zip(&r.log_probs) {
                *s += l / texts.len() as f64;
            }
        }
        self.baseline = Some(sum);
        Ok(())
    }

    /// The calibration baseline, if measured.
    pub fn baseline(&self) -> Option<&[f64]> {
        self.baseline.as_deref()
    }

    /// The labels.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The prompt's token ids for `text` (cut to `max_text_tokens` tokens of text).
    pub fn prompt(&self, text: &str) -> Result<Vec<u32>, TransformerError> {
        let tok = &self.model.tokenizer;
        let text = self.cut(text, self.max_text_tokens)?;
        let labels = self.labels.join(" or ");
        let user = if self.n_shots == 0 {
            format!(
                "{}\n\nText: {text}\n\nAnswer with one word: {labels}.",
                self.instruction
            )
        } else {
            // Instruction and examples first, so that every prompt shares them as a prefix.
            format!(
                "{} Answer with one word: {labels}.\n\n{}Text: {text}\nAnswer:",
                self.instruction, self.shots
            )
        };
        let messages = [Message::new("user", &user)];
        let rendered = render_for(template_for(&self.model), tok, &messages, true)?;
        tok.encode(&rendered, true)
    }

    /// Score every label for `text` in `session` (a session of this classifier's model; it is
    /// left holding the prompt, and the part of the prompt it already holds is not run again).
    pub fn classify(
        &self,
        session: &mut Session,
        text: &str,
    ) -> Result<ZeroShotResult, TransformerError> {
        if !Arc::ptr_eq(session.model(), &self.model) {
            return Err(TransformerError::BadConfig {
                what: "zero-shot classification in a session of another model".into(),
            });
        }
        let prompt = self.prompt(text)?;
        let kept = session.reuse_prefix(&prompt);
        let last = session.forward(&prompt[kept..], kept)?;
        let n = prompt.len();
        let mut log_probs = Vec::with_capacity(self.labels.len());
        for ids in &self.label_ids {
            let mut lp = log_prob(&last, ids[0] as usize);
            if ids.len() > 1 {
                let rows = session.forward_logits(&ids[..ids.len() - 1], n, Logits::All)?;
                let v = rows.len() / (ids.len() - 1);
                for (k, &next) in ids[1..].iter().enumerate() {
                    lp += log_prob(&rows[k * v..(k + 1) * v], next as usize);
                }
                session.truncate(n);
                if session.n_past() < n {
                    // A sliding-window ring lost what the prompt's end attends to: run it again.
                    session.forward(&prompt, 0)?;
                }
            }
            log_probs.push(lp);
        }
        let scores: Vec<f64> = match &self.baseline {
            Some(b) => log_probs.iter().zip(b).map(|(l, b)| l - b).collect(),
            None => log_probs.clone(),
        };
        let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = scores.iter().map(|l| (l - max).exp()).sum();
        let probs: Vec<f64> = scores.iter().map(|l| (l - max).exp() / sum).collect();
        let label = (0..probs.len())
            .max_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(b.cmp(&a)))
            .unwrap_or(0);
        Ok(ZeroShotResult {
            label,
            log_probs,
            probs,
            prompt_tokens: n,
            reused_tokens: kept,
        })
    }
}
