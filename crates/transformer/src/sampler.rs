//! Token sampling. The chain follows llama.cpp's default order: penalties → top-k → top-p →
//! min-p → temperature → draw. A temperature ≤ 0 is greedy (argmax after penalties, ties to
//! the lowest id). The random generator is seeded, so a run is reproducible.

use std::collections::VecDeque;

/// Sampling options. `Default` is llama.cpp's defaults (temperature 0.8, top-k 40, top-p 0.95,
/// min-p 0.05, no penalties, window 64).
#[derive(Clone, Debug, PartialEq)]
pub struct SamplerConfig {
    /// ≤ 0: greedy.
    pub temperature: f32,
    /// 0: off.
    pub top_k: usize,
    /// 1.0: off.
    pub top_p: f32,
    /// 0.0: off. Keeps tokens with p ≥ min_p · p_max.
    pub min_p: f32,
    /// 1.0: off. Divides positive (multiplies negative) logits of tokens seen in the window.
    pub repeat_penalty: f32,
    /// Subtracted per occurrence in the window.
    pub frequency_penalty: f32,
    /// Subtracted once if the token occurs in the window.
    pub presence_penalty: f32,
    /// How many recent tokens the penalties look at.
    pub penalty_last_n: usize,
    /// Random seed.
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            penalty_last_n: 64,
            seed: 0x5eed,
        }
    }
}

impl SamplerConfig {
    /// Greedy decoding, no penalties.
    pub fn greedy() -> Self {
        SamplerConfig {
            temperature: 0.0,
            ..Default::default()
        }
    }
}

/// xoshiro256** seeded through splitmix64.
#[derive(Clone, Debug)]
struct Rng([u64; 4]);

impl Rng {
    fn new(seed: u64) -> Self {
        let mut z = seed;
        let mut next = || {
            z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            x ^ (x >> 31)
        };
        Rng([next(), next(), next(), next()])
    }
    fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let r = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        r
    }
    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// A sampler with its own RNG and penalty window.
#[derive(Clone, Debug)]
pub struct Sampler {
    cfg: SamplerConfig,
    rng: Rng,
    recent: VecDeque<u32>,
}

impl Sampler {
    /// A sampler with `cfg`.
    pub fn new(cfg: SamplerConfig) -> Self {
        let rng = Rng::new(cfg.seed);
        Sampler {
            cfg,
            rng,
            recent: VecDeque::new(),
        }
    }

    /// The options.
    pub fn config(&self) -> &SamplerConfig {
        &self.cfg
    }

    /// Record a token in the penalty window (prompt tokens and generated ones).
    pub fn accept(&mut self, token: u32) {
        if self.cfg.penalty_last_n == 0 {
            return;
        }
        if self.recent.len() == self.cfg.penalty_last_n {
            self.recent.pop_front();
        }
        self.recent.push_back(token);
    }

    fn apply_penalties(&self, logits: &mut [f32]) {
        let c = &self.cfg;
        if self.recent.is_empty()
            || (c.repeat_penalty == 1.0 && c.frequency_penalty == 0.0 && c.presence_penalty == 0.0)
        {
            return;
        }
        let mut counts: std::collections::HashMap<u32, u32> = std::collections::HashMap::new();
        for &t in &self.recent {
            *counts.entry(t).or_default() += 1;
        }
        for (&t, &n) in &counts {
            let Some(l) = logits.get_mut(t as usize) else {
                continue;
            };
            if c.repeat_penalty != 1.0 {
                if *l > 0.0 {
                    *l /= c.repeat_penalty;
                } else {
                    *l *= c.repeat_penalty;
                }
            }
            *l -= n as f32 * c.frequency_penalty + c.presence_penalty;
        }
    }

    /// Pick the next token from `logits` (one per vocabulary entry). Does not record it: call
    /// [`Sampler::accept`] for that.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        let mut l = logits.to_vec();
        self.apply_penalties(&mut l);
        let c = self.cfg.clone();
        if c.temperature <= 0.0 {
            return argmax(&l);
        }
        let mut cand: Vec<(u32, f32)> = l
            .iter()
            .enumerate()
            .filter(|(_, v)| !v.is_nan())
            .map(|(i, &v)| (i as u32, v))
            .collect();
        if cand.is_empty() {
            return 0;
        }
        let by_logit = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if c.top_k > 0 && c.top_k < cand.len() {
            cand.select_nth_unstable_by(c.top_k - 1, by_logit);
            cand.truncate(c.top_k);
        }
        // Candidates are walked from the most likely; only the prefix a step needs is sorted
        // (a vocabulary of 50k–150k entries is rarely needed beyond its first hundred).
        let mut sorted = 0;
        let mut prefix = |cand: &mut Vec<(u32, f32)>, need: usize| {
            let need = need.min(cand.len());
            if need > sorted {
                let want = need.max(2 * sorted).max(64).min(cand.len());
                let rest = &mut cand[sorted..];
                let k = want - sorted;
                if k < rest.len() {
                    rest.select_nth_unstable_by(k - 1, by_logit);
                }
                rest[..k].sort_unstable_by(by_logit);
                sorted = want;
            }
        };
        let mut truncated = false;
        if c.top_p < 1.0 {
            let (e, sum) = weights(&cand, 1.0);
            let mut cum = 0.0;
            let mut keep = cand.len();
            let mut i = 0;
            while i < cand.len() {
                prefix(&mut cand, i + 1);
                cum += e(cand[i].1) / sum;
                if cum >= f64::from(c.top_p) {
                    keep = i + 1;
                    break;
                }
                i += 1;
            }
            prefix(&mut cand, keep);
            cand.truncate(keep.max(1));
            truncated = true;
        }
        if c.min_p > 0.0 {
            prefix(&mut cand, 1);
            let threshold = cand[0].1 + c.min_p.ln();
            let mut keep = 0;
            while keep < cand.len() {
                prefix(&mut cand, keep + 1);
                if cand[keep].1 < threshold {
                    break;
                }
                keep += 1;
            }
            cand.truncate(keep.max(1));
            truncated = true;
        }
        if truncated {
            // The kept candidates are a sorted prefix: sample among them.
            let n = cand.len();
            prefix(&mut cand, n);
            let probs = softmax(&cand, c.temperature);
            let r = self.rng.uniform();
            let mut cum = 0.0;
            for (p, &(id, _)) in probs.iter().zip(&cand) {
                cum += p;
                if r < cum {
                    return id;
                }
            }
            return cand[cand.len() - 1].0;
        }
        let (e, sum) = weights(&cand, c.temperature);
        let r = self.rng.uniform();
        let mut cum = 0.0;
        for i in 0..cand.len() {
            prefix(&mut cand, i + 1);
            cum += e(cand[i].1) / sum;
            if r < cum {
                return cand[i].0;
            }
        }
        let n = cand.len();
        prefix(&mut cand, n);
        cand[n - 1].0
    }
}

/// The unnormalized softmax weight of a logit at `temperature` (`exp((l − max) / t)`), and the
/// weights' sum over `cand`.
fn weights(cand: &[(u32, f32)], temperature: f32) -> (impl Fn(f32) -> f64, f64) {
    let max = cand.iter().map(|c| c.1).fold(f32::NEG_INFINITY, f32::max);
    let t = f64::from(temperature);
    let e = move |l: f32| ((f64::from(l) - f64::from(max)) / t).exp();
    let sum = cand.iter().map(|c| e(c.1)).sum();
    (e, sum)
}

/// Index of the largest value as a token id (lowest index on ties; NaN never wins): the greedy
/// choice. [`edgeinfer_kernels::ops::argmax`] as `u32`.
pub fn argmax(x: &[f32]) -> u32 {
    edgeinfer_kernels::ops::argmax(x) as u32
}

fn softmax(cand: &[(u32, f32)], temperature: f32) -> Vec<f64> {
    let max = cand.iter().map(|c| c.1).fold(f32::NEG_INFINITY, f32::max);
    let t = f64::from(temperature);
    let e: Vec<f64> = cand
        .iter()
        .map(|c| ((f64::from(c.1) - f64::from(max)) / t).exp())
        .collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|v| v / s).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sampler as a full sort of the candidates defines it (penalties off): what
    /// [`Sampler::sample`], which sorts only the prefix it needs, must pick.
    fn reference(cfg: &SamplerConfig, rng: &mut Rng, logits: &[f32]) -> u32 {
        let mut cand: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .map(|(i, &v)| (i as u32, v))
            .collect();
        let by = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        cand.sort_by(by);
        if cfg.top_k > 0 {
            cand.truncate(cfg.top_k);
        }
        if cfg.top_p < 1.0 {
            let p = softmax(&cand, 1.0);
            let mut cum = 0.0;
            let keep = p
                .iter()
                .position(|x| {
                    cum += x;
                    cum >= f64::from(cfg.top_p)
                })
                .map_or(cand.len(), |i| i + 1);
            cand.truncate(keep);
        }
        if cfg.min_p > 0.0 {
            let threshold = cand[0].1 + cfg.min_p.ln();
            let keep = cand.iter().take_while(|x| x.1 >= threshold).count();
            cand.truncate(keep.max(1));
        }
        let p = softmax(&cand, cfg.temperature);
        let r = rng.uniform();
        let mut cum = 0.0;
        for (x, c) in p.iter().zip(&cand) {
            cum += x;
            if r < cum {
                return c.0;
            }
        }
        cand[cand.len() - 1].0
    }

    #[test]
    fn partial_sorting_picks_what_a_full_sort_picks() {
        let mut gen = Rng::new(7);
        let mut draws = 0;
        for case in 0..60 {
            let n = [5, 64, 65, 300, 5000][case % 5];
            // Peaked and flat distributions, with ties.
            let scale = [0.5f32, 3.0, 12.0][case % 3];
            let logits: Vec<f32> = (0..n)
                .map(|_| (gen.uniform() as f32 * scale * 8.0).round() / 8.0)
                .collect();
            for (top_k, top_p, min_p) in [
                (0, 1.0, 0.0),
                (40, 1.0, 0.0),
                (0, 0.9, 0.0),
                (0, 1.0, 0.05),
                (100, 0.95, 0.02),
            ] {
                let cfg = SamplerConfig {
                    temperature: 0.8,
                    top_k,
                    top_p,
                    min_p,
                    repeat_penalty: 1.0,
                    frequency_penalty: 0.0,
                    presence_penalty: 0.0,
                    penalty_last_n: 0,
                    seed: case as u64,
                };
                let mut s = Sampler::new(cfg.clone());
                let mut rng = Rng::new(cfg.seed);
                for _ in 0..20 {
                    assert_eq!(
                        s.sample(&logits),
                        reference(&cfg, &mut rng, &logits),
                        "n {n}, scale {scale}, {cfg:?}"
                    );
                    draws += 1;
                }
            }
        }
        assert_eq!(draws, 6000);
    }

    fn counts(cfg: SamplerConfig, logits: &[f32], n: usize) -> Vec<usize> {
        let mut s = Sampler::new(cfg);
        let mut c = vec![0; logits.len()];
        for _ in 0..n {
            c[s.sample(logits) as usize] += 1;
        }
        c
    }

    #[test]
    fn greedy_is_argmax_with_ties_to_lowest() {
        let mut s = Sampler::new(SamplerConfig::greedy());
        assert_eq!(s.sample(&[0.0, 3.0, 1.0, 3.0]), 1);
        assert_eq!(s.sample(&[f32::NAN, -1.0, -2.0]), 1);
    }

    #[test]
    fn seed_makes_runs_reproducible_and_different_seeds_differ() {
        let logits: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin()).collect();
        let cfg = SamplerConfig {
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            temperature: 1.0,
            ..Default::default()
        };
        let run = |seed| {
            let mut s = Sampler::new(SamplerConfig {
                seed,
                ..cfg.clone()
            });
            (0..40).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }

    #[test]
    fn top_k_limits_the_candidates() {
        let logits = [1.0, 5.0, 4.0, 3.0, 2.0];
        let cfg = SamplerConfig {
            top_k: 2,
            top_p: 1.0,
            min_p: 0.0,
            temperature: 5.0,
            ..Default::default()
        };
        let c = counts(cfg, &logits, 2000);
        assert_eq!(c[0] + c[3] + c[4], 0);
        assert!(c[1] > 0 && c[2] > 0);
    }

    #[test]
    fn top_p_keeps_the_smallest_set_reaching_p() {
        // probabilities ≈ 0.665, 0.245, 0.090
        let logits = [2.0, 1.0, 0.0];
        let cfg = SamplerConfig {
            top_k: 0,
            top_p: 0.8,
            min_p: 0.0,
            temperature: 1.0,
            ..Default::default()
        };
        let c = counts(cfg, &logits, 3000);
        assert_eq!(c[2], 0);
        assert!(c[1] > 0);
    }

    #[test]
    fn min_p_drops_unlikely_tokens() {
        let logits = [0.0, -1.0, -5.0]; // p relative to max: 1, 0.37, 0.007
        let cfg = SamplerConfig {
            top_k: 0,
            top_p: 1.0,
            min_p: 0.1,
            temperature: 1.0,
            ..Default::default()
        };
        let c = counts(cfg, &logits, 3000);
        assert_eq!(c[2], 0);
        assert!(c[1] > 500);
    }

    #[test]
    fn low_temperature_sharpens() {
        let logits = [1.0, 0.5];
        let base = SamplerConfig {
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            ..Default::default()
        };
        let hot = counts(
            SamplerConfig {
                temperature: 2.0,
                ..base.clone()
            },
            &logits,
            4000,
        );
        let cold = counts(
            SamplerConfig {
                temperature: 0.1,
                ..base
            },
            &logits,
            4000,
        );
        assert!(cold[1] < hot[1] / 4, "cold {cold:?} hot {hot:?}");
    }

    #[test]
    fn penalties_follow_llama_cpp() {
        let cfg = SamplerConfig {
            repeat_penalty: 2.0,
            frequency_penalty: 0.5,
            presence_penalty: 0.25,
            penalty_last_n: 3,
            ..SamplerConfig::greedy()
        };
        let mut s = Sampler::new(cfg);
        for t in [9, 0, 0, 1] {
            s.accept(t); // window keeps the last 3: 0, 0, 1
        }
        let mut l = vec![4.0, -1.0, 3.0];
        s.apply_penalties(&mut l);
        assert_eq!(l, vec![4.0 / 2.0 - 1.0 - 0.25, -2.0 - 0.5 - 0.25, 3.0]);
        // greedy now picks token 2 instead of 0
        assert_eq!(s.sample(&[4.0, -1.0, 3.0]), 2);
    }
}
