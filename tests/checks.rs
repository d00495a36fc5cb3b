//! Checks every architecture gets, on any model: against llama.cpp's recorded outputs
//! (`fixtures/reference/arch-*.json`) and, without any reference, consistency checks that a
//! wrong forward on an unseen input would fail (cache vs recompute, thread counts, team vs
//! fork-join, micro-batching, exact path).

use std::sync::Arc;

use edgeinfer_transformer::{argmax, KvType, Logits, Model, Precision, Session};
use serde_json::Value;

use crate::{engine, engine_with};

/// `v` as token ids.
pub fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("an array of ids")
        .iter()
        .map(|x| x.as_u64().expect("an id") as u32)
        .collect()
}

/// One greedy case of a reference file.
pub struct GreedyCase {
    pub name: String,
    pub prompt: Vec<u32>,
    pub gen: Vec<u32>,
    /// llama.cpp's top-1 minus top-2 logit at each generated step.
    pub margins: Vec<f32>,
}

/// The greedy cases of `reference` (an `arch-*.json` file).
pub fn greedy_cases(reference: &Value) -> Vec<GreedyCase> {
    reference["greedy"]
        .as_object()
        .expect("greedy cases")
        .iter()
        .map(|(name, c)| GreedyCase {
            name: name.clone(),
            prompt: ids(&c["prompt_ids"]),
            gen: ids(&c["gen_ids"]),
            margins: c["margins"]
                .as_array()
                .expect("margins")
                .iter()
                .map(|m| m.as_f64().expect("a margin") as f32)
                .collect(),
        })
        .collect()
}

/// Greedy decoding from each reference prompt on the default path (8-bit activations, f16
/// cache, as llama.cpp's run): our ids must equal llama.cpp's at every step before the first
/// one where llama.cpp's own top-1/top-2 margin is below 0.5. Returns, per case, the first
/// step where ours differs (if any) and that first low-margin step.
pub fn greedy_matches_llama_cpp(m: &Arc<Model>, reference: &Value) -> Vec<(Option<usize>, usize)> {
    let mut out = Vec::new();
    for case in greedy_cases(reference) {
        let n = case.gen.len();
        let mut s = Session::new(engine(), m.clone(), case.prompt.len() + n + 1);
        let mut logits = s.forward(&case.prompt, 0).unwrap();
        let mut ours = Vec::with_capacity(n);
        for _ in 0..n {
            let next = argmax(&logits);
            ours.push(next);
            logits = s.forward(&[next], s.n_past()).unwrap();
        }
        let diverge = ours.iter().zip(&case.gen).position(|(a, b)| a != b);
        let low = case.margins.iter().position(|&m| m < 0.5).unwrap_or(n);
        eprintln!(
            "{}: greedy ours first differs at step {:?} (llama.cpp margin there {:?}); first step with margin < 0.5: {low}",
            case.name,
            diverge,
            diverge.map(|d| case.margins[d]),
        );
        assert!(
            diverge.is_none_or(|d| d >= low),
            "{}: greedy id differs at step {diverge:?}, before llama.cpp's first low-margin step {low}\nours {ours:?}\nllama.cpp {:?}",
            case.name,
            case.gen
        );
        out.push((diverge, low));
    }
    out
}

/// Teacher-forced: prompt + llama.cpp's greedy ids in one pass; our top-1 must be llama.cpp's
/// token at every step where llama.cpp's margin is ≥ 1.0. Returns (agreeing steps, steps).
pub fn teacher_forced_matches_llama_cpp(
    m: &Arc<Model>,
    reference: &Value,
    precision: Precision,
) -> (usize, usize) {
    let vocab = m.config.vocab_size;
    let (mut agree, mut total) = (0, 0);
    for case in greedy_cases(reference) {
        let mut seq = case.prompt.clone();
        seq.extend_from_slice(&case.gen[..case.gen.len() - 1]);
        let mut s = Session::new(engine(), m.clone(), seq.len()).with_precision(precision);
        let rows = s
            .forward_logits(&seq, 0, Logits::From(case.prompt.len() - 1))
            .unwrap();
        let mut case_agree = 0;
        for (step, row) in rows.chunks_exact(vocab).enumerate() {
            let got = argmax(row);
            let want = case.gen[step];
            let margin = case.margins[step];
            if margin >= 1.0 {
                assert_eq!(
                    got, want,
                    "{}: {precision:?} step {step}: top-1 {got} vs llama.cpp {want} (margin {margin})",
                    case.name
                );
            }
            case_agree += usize::from(got == want);
        }
        eprintln!(
            "{}: {precision:?} teacher-forced top-1 agrees on {case_agree}/{} steps",
            case.name,
            case.gen.len()
        );
        agree += case_agree;
        total += case.gen.len();
    }
    (agree, total)
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max)
}

/// Whether two logit vectors are the same bits.
pub fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// A deterministic sequence of ordinary (non-control) token ids, `n` long, starting with BOS
/// when the model wants one: text the model has not seen in any reference.
pub fn tokens(m: &Model, n: usize, seed: u64) -> Vec<u32> {
    let tk = &m.tokenizer;
    let mut out = Vec::with_capacity(n);
    if let (true, Some(b)) = (tk.add_bos(), tk.bos()) {
        out.push(b);
    }
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // The first 32k ids: common pieces in every vocabulary here.
        let id = (x % 32_000.min(m.config.vocab_size as u64)) as u32;
        if !tk.is_control(id) {
            out.push(id);
        }
    }
    out
}

/// Logits of every position of `toks`, fed token by token through the cache.
fn one_by_one(s: &mut Session, toks: &[u32]) -> Vec<f32> {
    let mut all = Vec::new();
    for (i, &t) in toks.iter().enumerate() {
        all.extend(s.forward(&[t], i).unwrap());
    }
    all
}

/// Every position's logits computed token by token through the cache equal those of one
/// batched pass, bit for bit, on both precisions and cache types; and a rewind recomputes
/// the same. (Batched and single-token products use the same block dot in the same order,
/// and attention reads the same cache-typed keys whichever way a position arrived.)
pub fn cache_decode_equals_recompute(m: &Arc<Model>, toks: &[u32]) {
    let one_thread = engine_with(1, true);
    for (precision, kv) in [
        (Precision::Quantized, KvType::F16),
        (Precision::Quantized, KvType::F32),
        (Precision::ExactF32, KvType::F32),
    ] {
        let new = || {
            Session::new(&one_thread, m.clone(), toks.len())
                .with_precision(precision)
                .with_kv_type(kv)
        };
        let mut a = new();
        let step = one_by_one(&mut a, toks);
        let mut b = new();
        let batch = b.forward_logits(toks, 0, Logits::All).unwrap();
        assert!(
            same_bits(&step, &batch),
            "{precision:?} {kv:?}: token-by-token vs batch differ by {}",
            max_diff(&step, &batch)
        );
        // rewind to 3 and recompute the rest in one batch
        let vocab = m.config.vocab_size;
        let again = a.forward_logits(&toks[3..], 3, Logits::All).unwrap();
        assert!(
            same_bits(&again, &batch[3 * vocab..]),
            "{precision:?} {kv:?}: rewound logits differ"
        );
    }
}

/// Decode (a batched prompt, then greedy steps) gives the same logits bit for bit on engines
/// of 1, 2 and 3 threads, on the decode team and with fork-join, with an f16 and an f32 cache.
pub fn decode_bit_identical_across_threads(m: &Arc<Model>, prompt: &[u32], steps: usize) {
    for kv in [KvType::F16, KvType::F32] {
        let run = |threads: usize, team: bool| -> Vec<Vec<f32>> {
            let engine = engine_with(threads, team);
            let mut s = Session::new(&engine, m.clone(), prompt.len() + steps + 1).with_kv_type(kv);
            let mut logits = s.forward(prompt, 0).unwrap();
            let mut out = vec![logits.clone()];
            for _ in 0..steps {
                let next = argmax(&logits);
                logits = s.forward(&[next], s.n_past()).unwrap();
                out.push(logits.clone());
            }
            out
        };
        let one = run(1, false);
        for (threads, team) in [(2, true), (3, true), (2, false)] {
            let other = run(threads, team);
            for (step, (a, b)) in one.iter().zip(&other).enumerate() {
                assert!(
                    same_bits(a, b),
                    "{kv:?}, {threads} threads, team {team}: step {step} differs by {}",
                    max_diff(a, b)
                );
            }
        }
    }
}

/// Two sessions on one model and one 2-thread engine, decoding at once — driven from two
/// threads of the caller's, and from two tasks inside the engine's pool — neither deadlock nor
/// change each other's logits.
pub fn concurrent_sessions_decode_as_alone(m: &Arc<Model>, prompts: [&[u32]; 2], steps: usize) {
    let engine = engine_with(2, true);
    let decode = |toks: &[u32]| -> Vec<Vec<f32>> {
        let mut s = Session::new(&engine, m.clone(), toks.len() + steps + 1);
        let mut logits = s.forward(toks, 0).unwrap();
        let mut out = Vec::new();
        for _ in 0..steps {
            let next = argmax(&logits);
            logits = s.forward(&[next], s.n_past()).unwrap();
            out.push(logits.clone());
        }
        out
    };
    let alone: Vec<_> = prompts.iter().map(|p| decode(p)).collect();
    let threads = std::thread::scope(|sc| {
        let a = sc.spawn(|| decode(prompts[0]));
        let b = sc.spawn(|| decode(prompts[1]));
        (a.join().unwrap(), b.join().unwrap())
    });
    let in_pool = engine.install(|| rayon::join(|| decode(prompts[0]), || decode(prompts[1])));
    for (how, (a, b)) in [("two threads", threads), ("two pool tasks", in_pool)] {
        for (i, (x, y)) in [(&alone[0], &a), (&alone[1], &b)].into_iter().enumerate() {
            assert!(
                same_bits(&x.concat(), &y.concat()),
                "session {i} decoded differently next to another ({how})"
            );
        }
    }
}

/// The same positions split into arbitrary micro-batches through the cache give the same
/// logits as one call (which itself splits at MAX_BATCH), bit for bit.
pub fn micro_batches_match_any_split(m: &Arc<Model>, toks: &[u32], splits: &[usize]) {
    let mut a = Session::new(engine(), m.clone(), toks.len());
    let all = a.forward_logits(toks, 0, Logits::All).unwrap();
    let mut b = Session::new(engine(), m.clone(), toks.len());
    let mut parts = Vec::new();
    let (mut start, mut k) = (0, 0);
    while start < toks.len() {
        let end = (start + splits[k % splits.len()]).min(toks.len());
        parts.extend(
            b.forward_logits(&toks[start..end], start, Logits::All)
                .unwrap(),
        );
        start = end;
        k += 1;
    }
    assert!(
        same_bits(&all, &parts),
        "split into {splits:?}: logits differ by {}",
        max_diff(&all, &parts)
    );
}

/// The tests every architecture's file gets: llama.cpp's greedy ids and teacher-forced top-1
/// (from `$reference`, an `arch-*.json` file), and the consistency checks on token ids made
/// from `$seed` (never seen in any reference). `$model` is a `fn() -> &'static Arc<Model>`.
#[macro_export]
macro_rules! architecture_tests {
    ($model:path, $reference:expr, $seed:expr) => {
        #[test]
        fn greedy_matches_llama_cpp_until_its_margin_is_small() {
            let r = edgeinfer_e2e::reference($reference);
            edgeinfer_e2e::checks::greedy_matches_llama_cpp($model(), &r);
        }

        #[test]
        fn teacher_forced_top1_matches_llama_cpp_where_its_margin_is_clear() {
            let r = edgeinfer_e2e::reference($reference);
            for p in [
                edgeinfer_transformer::Precision::Quantized,
                edgeinfer_transformer::Precision::ExactF32,
            ] {
                let (agree, total) =
                    edgeinfer_e2e::checks::teacher_forced_matches_llama_cpp($model(), &r, p);
                eprintln!("{p:?}: teacher-forced top-1 agreement {agree}/{total}");
            }
        }

        #[test]
        fn cache_decode_equals_recompute() {
            let m = $model();
            let toks = edgeinfer_e2e::checks::tokens(m, 12, $seed);
            edgeinfer_e2e::checks::cache_decode_equals_recompute(m, &toks);
        }

        #[test]
        fn decode_is_bit_identical_across_thread_counts_and_executors() {
            let m = $model();
            let toks = edgeinfer_e2e::checks::tokens(m, 9, $seed + 1);
            edgeinfer_e2e::checks::decode_bit_identical_across_threads(m, &toks, 10);
        }

        #[test]
        fn concurrent_sessions_decode_as_alone() {
            let m = $model();
            let a = edgeinfer_e2e::checks::tokens(m, 7, $seed + 2);
            let b = edgeinfer_e2e::checks::tokens(m, 11, $seed + 3);
            edgeinfer_e2e::checks::concurrent_sessions_decode_as_alone(m, [&a, &b], 6);
        }

        #[test]
        fn micro_batches_match_any_split() {
            let m = $model();
            let toks = edgeinfer_e2e::checks::tokens(m, 40, $seed + 4);
            edgeinfer_e2e::checks::micro_batches_match_any_split(m, &toks, &[7, 1, 13]);
        }
    };
}
