//! The floor every classifier is compared with: a bag-of-words multinomial Naive Bayes over
//! lower-cased word presence (each word counted once per text, "binarized" NB, which suits
//! short texts and sentiment), with add-one smoothing. Trained in one pass over the data.

use std::collections::HashMap;

use crate::LstmError;

/// A trained bag-of-words Naive Bayes classifier.
#[derive(Clone, Debug)]
pub struct NaiveBayes {
    pub labels: Vec<String>,
    vocab: HashMap<String, u32>,
    /// `[classes]` log prior.
    log_prior: Vec<f64>,
    /// `[classes × vocab]` log P(word | class).
    log_lik: Vec<f64>,
}

/// Lower-cased words: runs of letters, digits and apostrophes; every other character splits.
pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .map(|w| w.trim_matches('\''))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

fn distinct(text: &str) -> Vec<String> {
    let mut w: Vec<String> = words(text).collect();
    w.sort_unstable();
    w.dedup();
    w
}

impl NaiveBayes {
    /// Train on `texts` with class indices `labels` into `label_names`. Every class must occur.
    pub fn train(
        texts: &[&str],
        labels: &[usize],
        label_names: &[String],
    ) -> Result<Self, LstmError> {
        let classes = label_names.len();
        let bad = |what: String| LstmError::BadConfig { what };
        if texts.is_empty() {
            return Err(bad("Naive Bayes: no training texts".into()));
        }
        if texts.len() != labels.len() {
            return Err(bad(format!(
                "Naive Bayes: {} texts but {} labels",
                texts.len(),
                labels.len()
            )));
        }
        let mut docs = vec![0usize; classes];
        for &l in labels {
            *docs.get_mut(l).ok_or_else(|| {
                bad(format!(
                    "Naive Bayes: label index {l} for {classes} classes"
                ))
            })? += 1;
        }
        if let Some(c) = docs.iter().position(|&n| n == 0) {
            return Err(bad(format!(
                "Naive Bayes: class {:?} has no training example",
                label_names[c]
            )));
        }
        let mut vocab: HashMap<String, u32> = HashMap::new();
        let mut counts: Vec<Vec<u32>> = vec![Vec::new(); classes];
        for (&text, &l) in texts.iter().zip(labels) {
            for w in distinct(text) {
                let next = vocab.len() as u32;
                let id = *vocab.entry(w).or_insert(next) as usize;
                let row = &mut counts[l];
                if row.len() <= id {
                    row.resize(id + 1, 0);
                }
                row[id] += 1;
            }
        }
        let v = vocab.len();
        let mut log_lik = vec![0.0f64; classes * v];
        for (c, row) in counts.iter().enumerate() {
            let total: u64 = row.iter().map(|&x| u64::from(x)).sum();
            let denom = ((total + v as u64) as f64).ln();
            for (id, out) in log_lik[c * v..(c + 1) * v].iter_mut().enumerate() {
                let k = row.get(id).copied().unwrap_or(0);
                *out = f64::from(k + 1).ln() - denom;
            }
        }
        let n = texts.len() as f64;
        Ok(NaiveBayes {
            labels: label_names.to_vec(),
            vocab,
            log_prior: docs.iter().map(|&d| (d as f64 / n).ln()).collect(),
            log_lik,
        })
    }

    /// Words known to the model.
    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    /// Bytes of the model's tables (the words and one f32 per word and class, as it would be
    /// stored).
    pub fn n_bytes(&self) -> usize {
        self.vocab.keys().map(|w| w.len() + 1).sum::<usize>()
            + 4 * (self.log_lik.len() + self.log_prior.len())
    }

    /// The best class and the posterior probabilities of `text` (words never seen in training
    /// are ignored).
    pub fn classify(&self, text: &str) -> (usize, Vec<f64>) {
        let v = self.vocab.len();
        let mut score = self.log_prior.clone();
        for w in distinct(text) {
            if let Some(&id) = self.vocab.get(&w) {
                for (c, s) in score.iter_mut().enumerate() {
                    *s += self.log_lik[c * v + id as usize];
                }
            }
        }
        let max = score.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mut p: Vec<f64> = score.iter().map(|s| (s - max).exp()).collect();
        let sum: f64 = p.iter().sum();
        p.iter_mut().for_each(|x| *x /= sum);
        let best = (0..p.len())
            .max_by(|&a, &b| score[a].total_cmp(&score[b]).then(b.cmp(&a)))
            .unwrap_or(0);
        (best, p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn words_split_and_lowercase() {
        let w: Vec<String> = words("It's GREAT, isn't it?  'quoted' 42x").collect();
        assert_eq!(w, ["it's", "great", "isn't", "it", "quoted", "42x"]);
    }

    #[test]
    fn learns_word_evidence_and_priors() {
        let texts = [
            "good fun film",
            "good acting",
            "great good",
            "bad plot",
            "boring bad film",
            "film",
        ];
        let labels = [0, 0, 0, 1, 1, 1];
        let nb = NaiveBayes::train(&texts, &labels, &names(&["pos", "neg"])).unwrap();
        assert_eq!(nb.classify("a good one").0, 0);
        assert_eq!(nb.classify("so bad").0, 1);
        // Unknown words only: the prior decides (a tie here, so the first class), and the
        // probabilities are the prior's.
        let (c, p) = nb.classify("zzz qqq");
        assert_eq!(c, 0);
        assert!((p[0] - 0.5).abs() < 1e-12 && (p[1] - 0.5).abs() < 1e-12);
        // Hand-computed: 7 word presences in pos, 6 in neg, V = 8 words:
        // P(good|pos) = (3+1)/(7+V), P(good|neg) = (0+1)/(6+V).
        let v = nb.vocab_size() as f64;
        assert_eq!(v, 8.0);
        let (_, p) = nb.classify("good");
        let odds = (4.0 / (7.0 + v)) / (1.0 / (6.0 + v));
        assert!((p[0] / p[1] - odds).abs() < 1e-9, "{p:?}");
    }

    #[test]
    fn bad_training_data_is_an_error() {
        let l = names(&["a", "b"]);
        assert!(NaiveBayes::train(&[], &[], &l).is_err());
        let e = NaiveBayes::train(&["x", "y"], &[0, 0], &l).unwrap_err();
        assert!(
            e.to_string().contains("\"b\" has no training example"),
            "{e}"
        );
        assert!(NaiveBayes::train(&["x"], &[2], &l).is_err());
        assert!(NaiveBayes::train(&["x", "y"], &[0], &l).is_err());
    }
}
