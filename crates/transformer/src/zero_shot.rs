//! A decoder as a zero-shot classifier: the text goes into an instruction prompt (through the
//! model's chat template), and each label is scored by the log-probability the model gives its
//! tokens as the start of the answer. No free generation: every label is scored, the best wins.
//!
//! Small models prefer some labels whatever the text says. After [`ZeroShot::calibrate`], each
//! label's score is taken relative to its mean score over a set of unlabelled texts: content-free
//! ones (`""`, `"N/A"`: "contextual calibration", Zhao et al., 2021) or a sample of texts from the
//! task ("batch calibration", Zhou et al., 2023). No labels are used.
//!
//! Centring each label's score decides as if the labels were equally likely, which they are not
//! on skewed tasks (spam is one message in ten): it calls the rare label far too often.
//! [`ZeroShot::calibrate_to_prior`] instead sets each label's offset so that, on a sample of
//! unlabelled texts, each label is chosen for its known share of them (the training labels'
//! shares, or a base rate the user knows).
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
    /// Per-label offsets subtracted from every score (a calibration's).
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

    /// Calibrate for labels of known shares: score `texts` (unlabelled, a sample of what will
    /// be classified) and set each label's offset so that each label is the best one for its
    /// share of them (`prior`: one positive number per label, in label order, scaled to sum
    /// to 1). With two labels this is the score-margin threshold that calls that share of the
    /// sample the second label; with more, label by label, in rounds, each offset set exactly
    /// with the others held. The sample sets the threshold: the more texts, the steadier it is.
    pub fn calibrate_to_prior(
        &mut self,
        session: &mut Session,
        texts: &[&str],
        prior: &[f64],
    ) -> Result<(), TransformerError> {
        if texts.is_empty() {
            return Err(TransformerError::BadConfig {
                what: "matching a prior needs a sample of texts, and none was given".into(),
            });
        }
        check_prior(prior, &self.labels)?;
        self.baseline = None;
        let rows = texts
            .iter()
            .map(|t| Ok(self.classify(session, t)?.log_probs))
            .collect::<Result<Vec<_>, TransformerError>>()?;
        self.baseline = Some(prior_offsets(&rows, prior)?);
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

/// Refuse a prior that is not one positive, finite share per label.
fn check_prior(prior: &[f64], labels: &[String]) -> Result<(), TransformerError> {
    if prior.len() != labels.len() {
        return Err(TransformerError::BadConfig {
            what: format!(
                "a prior of {} shares for {} labels {labels:?}",
                prior.len(),
                labels.len()
            ),
        });
    }
    if let Some((i, x)) = prior
        .iter()
        .enumerate()
        .find(|(_, x)| !(x.is_finite() && **x > 0.0))
    {
        return Err(TransformerError::BadConfig {
            what: format!(
                "the prior share of label {:?} is {x}; shares must be positive and finite",
                labels[i]
            ),
        });
    }
    Ok(())
}

/// The offsets [`ZeroShot::calibrate_to_prior`] sets, from label score rows already measured
/// (each row one text's [`ZeroShotResult::log_probs`]): subtracted from a row's scores, the
/// best label is each label for about its `prior` share of `rows`. Label 0's offset is 0.
/// Refuses a prior that is not one positive share per label, and rows of another width.
pub fn prior_offsets(rows: &[Vec<f64>], prior: &[f64]) -> Result<Vec<f64>, TransformerError> {
    let names: Vec<String> = (0..prior.len()).map(|i| format!("#{i}")).collect();
    check_prior(prior, &names)?;
    if let Some((i, r)) = rows
        .iter()
        .enumerate()
        .find(|(_, r)| r.len() != prior.len())
    {
        return Err(TransformerError::BadConfig {
            what: format!(
                "score row {i} has {} labels, the prior {}",
                r.len(),
                prior.len()
            ),
        });
    }
    if rows.is_empty() {
        return Ok(vec![0.0; prior.len()]);
    }
    Ok(offsets(rows, prior))
}

/// Offsets `b` (label 0's held at 0) under which `argmax(row - b)` picks each label for about
/// its share of `rows` (not empty, each as wide as `prior`). Label c wins a row exactly when its margin over the best other label,
/// `row[c] - max(row[j] - b[j])`, is above `b[c]`; so with the others held, the `b[c]` that
/// gives label c its count is found by sorting those margins. A few rounds over the labels
/// settle the interaction (with two labels one step is exact).
fn offsets(rows: &[Vec<f64>], prior: &[f64]) -> Vec<f64> {
    let n = prior.len();
    let total: f64 = prior.iter().sum();
    let mut b = vec![0.0; n];
    let rounds = if n == 2 { 1 } else { 20 };
    for _ in 0..rounds {
        for c in 1..n {
            let mut margins: Vec<f64> = rows
                .iter()
                .map(|r| {
                    let others = (0..n)
                        .filter(|&j| j != c)
                        .map(|j| r[j] - b[j])
                        .fold(f64::NEG_INFINITY, f64::max);
                    r[c] - others
                })
                .collect();
            margins.sort_by(|x, y| y.total_cmp(x));
            let k = ((prior[c] / total * rows.len() as f64).round() as usize).min(rows.len());
            b[c] = match k {
                0 => margins[0] + 1.0,
                k if k == margins.len() => margins[k - 1] - 1.0,
                k => (margins[k - 1] + margins[k]) / 2.0,
            };
        }
    }
    b
}

#[cfg(test)]
mod tests {
    use super::prior_offsets;

    fn shares(rows: &[Vec<f64>], b: &[f64]) -> Vec<usize> {
        let mut count = vec![0; b.len()];
        for r in rows {
            let best = (0..b.len())
                .max_by(|&x, &y| (r[x] - b[x]).total_cmp(&(r[y] - b[y])).then(y.cmp(&x)))
                .unwrap();
            count[best] += 1;
        }
        count
    }

    #[test]
    fn prior_offsets_give_each_label_its_share() {
        // Scores that favour label 1 for most rows: matching 90/10 pushes label 1 down.
        let rows: Vec<Vec<f64>> = (0..100)
            .map(|i| vec![-(i as f64) / 10.0, -1.0 - (i as f64 % 7.0) / 7.0])
            .collect();
        let b = prior_offsets(&rows, &[9.0, 1.0]).unwrap();
        assert_eq!(b[0], 0.0);
        assert_eq!(shares(&rows, &b), [90, 10]);
        // The texts label 1 keeps are those with the largest margins for it.
        let mut m: Vec<f64> = rows.iter().map(|r| r[1] - r[0]).collect();
        m.sort_by(|x, y| y.total_cmp(x));
        assert!(m[9] > b[1] && m[10] < b[1]);
        // Three labels, scores in general position: every share within a row of its target.
        let rows: Vec<Vec<f64>> = (0..300u64)
            .map(|i| {
                let h = |k: u64| {
                    let x = (i + 1)
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(k.wrapping_mul(1442695040888963407));
                    ((x >> 33) % 1000) as f64 / 1000.0
                };
                vec![h(1), h(2) * 2.0, h(3) * 3.0]
            })
            .collect();
        let got = shares(&rows, &prior_offsets(&rows, &[0.5, 0.3, 0.2]).unwrap());
        for (g, want) in got.iter().zip([150, 90, 60]) {
            assert!(g.abs_diff(want) <= 3, "{got:?}");
        }
        // Extreme shares: nothing, or everything, for label 1.
        let rows = vec![vec![0.0, 1.0], vec![0.0, 2.0]];
        assert_eq!(
            shares(&rows, &prior_offsets(&rows, &[1.0, 1e-9]).unwrap()),
            [2, 0]
        );
        assert_eq!(
            shares(&rows, &prior_offsets(&rows, &[1e-9, 1.0]).unwrap()),
            [0, 2]
        );
        // No rows: nothing to match; a row of another width or a bad share: refused.
        assert_eq!(prior_offsets(&[], &[1.0, 2.0]).unwrap(), [0.0, 0.0]);
        assert!(prior_offsets(&[vec![0.0]], &[1.0, 2.0]).is_err());
        assert!(prior_offsets(&rows, &[1.0, 0.0]).is_err());
    }
}
