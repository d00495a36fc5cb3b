//! A linear softmax classifier fitted to fixed feature vectors (a decoder's pooled hidden
//! states, for `edgeinfer train-probe`): full-batch gradient descent with Adam and an L2
//! penalty, on standardized features. The standardization is folded back into the weights, so
//! the result applies to raw features. Deterministic: no randomness, sums in a fixed order.

use crate::TrainError;

/// Fitted weights for raw (unstandardized) features.
#[derive(Clone, Debug, PartialEq)]
pub struct LinearFit {
    /// `[classes × dim]`, row-major.
    pub weight: Vec<f32>,
    /// `[classes]`
    pub bias: Vec<f32>,
    /// Accuracy on the training features.
    pub train_accuracy: f64,
}

impl LinearFit {
    /// The best class for raw features `x` (the first on ties).
    pub fn predict(&self, x: &[f32]) -> usize {
        let classes = self.bias.len();
        let d = x.len();
        let score = |c: usize| {
            self.bias[c]
                + self.weight[c * d..(c + 1) * d]
                    .iter()
                    .zip(x)
                    .map(|(w, v)| w * v)
                    .sum::<f32>()
        };
        (0..classes)
            .max_by(|&a, &b| score(a).total_cmp(&score(b)).then(b.cmp(&a)))
            .unwrap_or(0)
    }
}

/// Fitting options.
#[derive(Clone, Debug)]
pub struct LinearOptions {
    /// L2 penalty on the weights (of standardized features), per example.
    pub l2: f64,
    /// Full-batch steps.
    pub steps: usize,
    /// Adam step size.
    pub lr: f64,
}

impl Default for LinearOptions {
    fn default() -> Self {
        LinearOptions {
            l2: 1e-3,
            steps: 300,
            lr: 0.05,
        }
    }
}

/// Fit `classes`-way softmax regression to `features` (one vector per example, all the same
/// length) and `labels` (class indices).
pub fn fit_linear(
    features: &[Vec<f32>],
    labels: &[usize],
    classes: usize,
    opts: &LinearOptions,
) -> Result<LinearFit, TrainError> {
    let n = features.len();
    if n == 0 {
        return Err(TrainError::Invalid("no training examples".into()));
    }
    if labels.len() != n {
        return Err(TrainError::Invalid(format!(
            "{n} feature vectors but {} labels",
            labels.len()
        )));
    }
    if classes < 2 {
        return Err(TrainError::Invalid(format!(
            "{classes} class(es): a classifier needs two or more"
        )));
    }
    if let Some(&bad) = labels.iter().find(|&&l| l >= classes) {
        return Err(TrainError::Invalid(format!(
            "label index {bad} for {classes} classes"
        )));
    }
    let d = features[0].len();
    if d == 0 || features.iter().any(|f| f.len() != d) {
        return Err(TrainError::Invalid(
            "feature vectors are empty or differ in length".into(),
        ));
    }
    if features.iter().flatten().any(|v| !v.is_finite()) {
        return Err(TrainError::Invalid("a feature is NaN or infinite".into()));
    }
    // Standardize.
    let mut mean = vec![0.0f64; d];
    for f in features {
        mean.iter_mut()
            .zip(f)
            .for_each(|(m, &v)| *m += f64::from(v));
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    let mut sd = vec![0.0f64; d];
    for f in features {
        sd.iter_mut()
            .zip(f.iter().zip(&mean))
            .for_each(|(s, (&v, m))| *s += (f64::from(v) - m).powi(2));
    }
    sd.iter_mut()
        .for_each(|s| *s = (*s / n as f64).sqrt().max(1e-6));
    let z: Vec<Vec<f64>> = features
        .iter()
        .map(|f| {
            f.iter()
                .zip(mean.iter().zip(&sd))
                .map(|(&v, (m, s))| (f64::from(v) - m) / s)
                .collect()
        })
        .collect();

    // Parameters: w [c × d], b [c]; Adam moments.
    let np = classes * d + classes;
    let mut p = vec![0.0f64; np];
    let (mut m1, mut m2) = (vec![0.0f64; np], vec![0.0f64; np]);
    let (beta1, beta2, eps) = (0.9f64, 0.999f64, 1e-8f64);
    let mut grad = vec![0.0f64; np];
    let mut logits = vec![0.0f64; classes];
    for step in 1..=opts.steps {
        grad.iter_mut().for_each(|g| *g = 0.0);
        for (x, &y) in z.iter().zip(labels) {
            softmax_logits(&p, x, classes, d, &mut logits);
            for c in 0..classes {
                let g = logits[c] - if c == y { 1.0 } else { 0.0 };
                let row = &mut grad[c * d..(c + 1) * d];
                row.iter_mut().zip(x).for_each(|(r, &xi)| *r += g * xi);
                grad[classes * d + c] += g;
            }
        }
        for (i, g) in grad.iter_mut().enumerate() {
            *g /= n as f64;
            if i < classes * d {
                *g += opts.l2 * p[i];
            }
        }
        let (c1, c2) = (1.0 - beta1.powi(step as i32), 1.0 - beta2.powi(step as i32));
        for i in 0..np {
            m1[i] = beta1 * m1[i] + (1.0 - beta1) * grad[i];
            m2[i] = beta2 * m2[i] + (1.0 - beta2) * grad[i] * grad[i];
            p[i] -= opts.lr * (m1[i] / c1) / ((m2[i] / c2).sqrt() + eps);
        }
    }
    let right = z
        .iter()
        .zip(labels)
        .filter(|(x, &y)| {
            softmax_logits(&p, x, classes, d, &mut logits);
            argmax64(&logits) == y
        })
        .count();
    // Fold the standardization in: w' = w / sd, b' = b − Σ w·mean/sd.
    let mut weight = vec![0.0f32; classes * d];
    let mut bias = vec![0.0f32; classes];
    for c in 0..classes {
        let mut shift = 0.0f64;
        for j in 0..d {
            let w = p[c * d + j] / sd[j];
            weight[c * d + j] = w as f32;
            shift += w * mean[j];
        }
        bias[c] = (p[classes * d + c] - shift) as f32;
    }
    Ok(LinearFit {
        weight,
        bias,
        train_accuracy: right as f64 / n as f64,
    })
}

/// Softmax probabilities of parameters `p` at `x`, into `out`.
fn softmax_logits(p: &[f64], x: &[f64], classes: usize, d: usize, out: &mut [f64]) {
    for c in 0..classes {
        out[c] = p[classes * d + c]
            + p[c * d..(c + 1) * d]
                .iter()
                .zip(x)
                .map(|(w, xi)| w * xi)
                .sum::<f64>();
    }
    let max = out.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    out.iter_mut().for_each(|v| {
        *v = (*v - max).exp();
        sum += *v;
    });
    out.iter_mut().for_each(|v| *v /= sum);
}

fn argmax64(x: &[f64]) -> usize {
    let mut best = 0;
    for (i, v) in x.iter().enumerate() {
        if *v > x[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two Gaussian-ish clusters far apart on a few axes, with nuisance dimensions of large
    /// scale: standardization and the fit must separate them, and the folded weights must
    /// classify raw features as the standardized ones did.
    #[test]
    fn separates_clusters_and_folds_the_standardization() {
        let mut rng = crate::Rng::new(7);
        let (d, n) = (16, 300);
        let mut xs = Vec::new();
        let mut ys = Vec::new();
        for i in 0..n {
            let y = i % 3;
            let x: Vec<f32> = (0..d)
                .map(|j| {
                    let noise = rng.uniform() as f32 - 0.5;
                    if j == y {
                        2.0 + noise * 0.5
                    } else if j >= 8 {
                        1000.0 + 300.0 * noise
                    } else {
                        noise * 0.5
                    }
                })
                .collect();
            xs.push(x);
            ys.push(y);
        }
        let fit = fit_linear(&xs, &ys, 3, &LinearOptions::default()).unwrap();
        assert_eq!(fit.train_accuracy, 1.0);
        // The folded weights on raw features.
        for (x, &y) in xs.iter().zip(&ys) {
            assert_eq!(fit.predict(x), y);
        }
    }

    #[test]
    fn rejects_bad_input() {
        let x = vec![vec![1.0f32, 2.0], vec![0.0, 1.0]];
        let o = LinearOptions::default();
        assert!(fit_linear(&[], &[], 2, &o).is_err());
        assert!(fit_linear(&x, &[0], 2, &o).is_err());
        assert!(fit_linear(&x, &[0, 2], 2, &o).is_err());
        assert!(fit_linear(&x, &[0, 0], 1, &o).is_err());
        let ragged = vec![vec![1.0f32, 2.0], vec![0.0]];
        assert!(fit_linear(&ragged, &[0, 1], 2, &o).is_err());
        let nan = vec![vec![1.0f32, f32::NAN], vec![0.0, 1.0]];
        assert!(fit_linear(&nan, &[0, 1], 2, &o).is_err());
    }
}
