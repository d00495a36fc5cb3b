//! `Session::decode_many` (one step over several sessions: the products once over every
//! session's token, each token attending to its own cache) against each session stepping
//! alone, bit for bit, on the tiny llama / qwen2 / gemma3 models of `fixtures/decoder/`:
//! sessions at different positions, f16 and f32 caches, 8-bit and exact products, one and two
//! threads, sliding-window rings that wrap; and its input checks.

use std::path::PathBuf;
use std::sync::Arc;

use edgeinfer_transformer::{
    argmax, Engine, KvType, Level, Model, Precision, Session, TransformerError,
};

fn fixtures() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/decoder");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fixtures/decoder")
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
        .collect();
    v.sort();
    assert!(v.len() >= 9, "tiny decoder fixtures found: {v:?}");
    v
}

/// A token sequence of `n` ids below `vocab`, different for each `seed`.
fn tokens(seed: u32, n: usize, vocab: usize) -> Vec<u32> {
    (0..n as u32)
        .map(|i| (seed.wrapping_mul(2_654_435_761).wrapping_add(i * 40_503) >> 7) % vocab as u32)
        .collect()
}

/// An engine of `threads` threads at each level this CPU has.
fn engines(threads: usize) -> Vec<Engine> {
    Level::ALL
        .into_iter()
        .filter(|l| l.is_available())
        .map(|l| {
            Engine::builder()
                .threads(threads)
                .level(l)
                .build()
                .expect("engine")
        })
        .collect()
}

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// Sessions with prompts of different lengths, stepped together for `steps` steps on their
/// own greedy tokens; the same sessions stepped alone must give the same logits and tokens.
fn check(path: &PathBuf, engine: &Engine, precision: Precision, kv: KvType, window: Option<usize>) {
    let model = Arc::new(Model::load(path).expect("tiny model"));
    let vocab = model.config.vocab_size;
    let name = format!(
        "{} {:?} threads={} {precision:?} {kv:?} window={window:?}",
        path.file_name().unwrap().to_string_lossy(),
        engine.level(),
        engine.threads()
    );
    let new_session = || {
        let s = Session::new(engine, model.clone(), 64)
            .with_precision(precision)
            .with_kv_type(kv);
        match window {
            Some(w) => s.with_sliding_window(w),
            None => s,
        }
    };
    let prompts: Vec<Vec<u32>> = [(1, 1), (2, 7), (3, 19), (4, 12)]
        .iter()
        .map(|&(seed, n)| tokens(seed, n, vocab))
        .collect();
    let steps = 9;

    // Alone: each session's prompt, then `steps` greedy single-token steps.
    let mut alone = Vec::new();
    for p in &prompts {
        let mut s = new_session();
        let mut l = s.forward(p, 0).expect("prefill");
        let mut seen = vec![l.clone()];
        for _ in 0..steps {
            let t = argmax(&l);
            let pos = s.n_past();
            l = s.forward(&[t], pos).expect("decode");
            seen.push(l.clone());
        }
        alone.push((seen, s.tokens().to_vec()));
    }

    // Together: the same prompts, then every step for all of them in one call. The sessions
    // join one at a time (a server admits clients between steps): session i starts stepping
    // at step i.
    let mut sessions: Vec<Session> = prompts.iter().map(|_| new_session()).collect();
    let mut last: Vec<Vec<f32>> = Vec::new();
    let mut done = vec![0usize; prompts.len()];
    for step in 0..steps + prompts.len() {
        if step < prompts.len() {
            let l = sessions[step].forward(&prompts[step], 0).expect("prefill");
            assert!(same_bits(&l, &alone[step].0[0]), "{name}: prefill {step}");
            last.push(l);
        }
        let active: Vec<usize> = (0..prompts.len())
            .filter(|&i| i < last.len() && done[i] < steps)
            .collect();
        if active.is_empty() {
            break;
        }
        let toks: Vec<u32> = active.iter().map(|&i| argmax(&last[i])).collect();
        let mut refs: Vec<&mut Session> = sessions
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| active.contains(i))
            .map(|(_, s)| s)
            .collect();
        let out = Session::decode_many(&mut refs, &toks).expect("decode_many");
        assert_eq!(out.len(), active.len());
        for (&i, l) in active.iter().zip(out) {
            done[i] += 1;
            assert!(
                same_bits(&l, &alone[i].0[done[i]]),
                "{name}: session {i} step {}: logits differ from stepping alone",
                done[i]
            );
            last[i] = l;
        }
    }
    for (i, s) in sessions.iter().enumerate() {
        assert_eq!(done[i], steps, "{name}: session {i}");
        assert_eq!(s.tokens(), &alone[i].1[..], "{name}: session {i} tokens");
        assert_eq!(s.n_past(), prompts[i].len() + steps);
    }
}

#[test]
fn decode_many_equals_stepping_alone() {
    for threads in [1, 2] {
        for engine in engines(threads) {
            for path in fixtures() {
                check(&path, &engine, Precision::Quantized, KvType::F16, None);
                // A window of 5 makes sliding layers' rings wrap during the steps (gemma3).
                check(&path, &engine, Precision::Quantized, KvType::F16, Some(5));
            }
        }
    }
    for engine in engines(2) {
        for path in fixtures() {
            check(&path, &engine, Precision::Quantized, KvType::F32, None);
            check(&path, &engine, Precision::ExactF32, KvType::F32, None);
        }
    }
}

#[test]
fn decode_many_checks_every_input_before_running() {
    let paths = fixtures();
    let engine = Engine::builder().threads(2).build().expect("engine");
    let a = Arc::new(Model::load(&paths[0]).expect("model"));
    let b = Arc::new(Model::load(&paths[0]).expect("model"));
    let vocab = a.config.vocab_size as u32;
    let mut s1 = Session::new(&engine, a.clone(), 8);
    let mut s2 = Session::new(&engine, a.clone(), 3);
    let mut s3 = Session::new(&engine, b, 8);
    s1.forward(&[1, 2], 0).unwrap();
    s2.forward(&[1, 2, 3], 0).unwrap();
    s3.forward(&[1], 0).unwrap();
    let before = |s: &Session| (s.n_past(), s.tokens().to_vec());
    let (b1, b2, b3) = (before(&s1), before(&s2), before(&s3));

    // s2 is full: nothing runs, no session changes.
    let r = Session::decode_many(&mut [&mut s1, &mut s2], &[4, 5]);
    assert!(
        matches!(r, Err(TransformerError::ContextFull { .. })),
        "{r:?}"
    );
    // Another model (an equal file loaded twice is another model).
    let r = Session::decode_many(&mut [&mut s1, &mut s3], &[4, 5]);
    assert!(
        matches!(r, Err(TransformerError::BadConfig { .. })),
        "{r:?}"
    );
    // A token outside the vocabulary.
    let r = Session::decode_many(&mut [&mut s1, &mut s3], &[4, vocab]);
    assert!(r.is_err());
    let r = Session::decode_many(&mut [&mut s1], &[vocab]);
    assert!(matches!(r, Err(TransformerError::BadToken { .. })), "{r:?}");
    // Counts that differ.
    let r = Session::decode_many(&mut [&mut s1], &[4, 5]);
    assert!(
        matches!(r, Err(TransformerError::BadConfig { .. })),
        "{r:?}"
    );
    assert_eq!((before(&s1), before(&s2), before(&s3)), (b1, b2, b3));
    // Nothing to do is fine.
    assert!(Session::decode_many(&mut [], &[]).unwrap().is_empty());
}

/// `Session::embed`: unit length, the same whatever the cache held before and however many
/// threads, for inputs up to a whole micro-batch (the tiny models hold 128 positions); the
/// 8-bit path close to the exact one; different inputs give different embeddings.
#[test]
fn embeddings_are_unit_length_and_deterministic() {
    for path in fixtures() {
        let model = Arc::new(Model::load(&path).expect("tiny model"));
        let vocab = model.config.vocab_size;
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let ctx = model.config.context_length.min(300);
        let long = tokens(7, ctx, vocab);
        for input in [tokens(5, 1, vocab), tokens(6, 20, vocab), long] {
            let one = engines(1).pop().expect("best level");
            let two = engines(2).pop().expect("best level");
            let mut s1 = Session::new(&one, model.clone(), ctx);
            let mut s2 = Session::new(&two, model.clone(), ctx);
            s2.forward(&tokens(9, 3, vocab), 0)
                .expect("something cached before");
            let e1 = s1.embed(&input).expect("embed");
            let e2 = s2.embed(&input).expect("embed");
            assert_eq!(e1.len(), model.config.d_model);
            let len: f32 = e1.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((len - 1.0).abs() < 1e-5, "{name}: |e| = {len}");
            assert!(same_bits(&e1, &e2), "{name}: {} tokens", input.len());
            assert_eq!(s1.n_past(), input.len());
            let mut exact = Session::new(&one, model.clone(), ctx)
                .with_precision(Precision::ExactF32)
                .with_kv_type(KvType::F32);
            let e3 = exact.embed(&input).expect("embed");
            let cos: f32 = e1.iter().zip(&e3).map(|(a, b)| a * b).sum();
            assert!(cos > 0.98, "{name}: 8-bit against exact: cos {cos}");
            let other = s1.embed(&tokens(11, input.len(), vocab)).expect("embed");
            let cos_other: f32 = e1.iter().zip(&other).map(|(a, b)| a * b).sum();
            assert!(
                cos_other < 0.9999,
                "{name}: different inputs, cos {cos_other}"
            );
        }
        let mut s = Session::new(&Engine::new().unwrap(), model.clone(), 8);
        assert!(matches!(s.embed(&[]), Err(TransformerError::EmptyInput)));
        assert!(matches!(
            s.embed(&tokens(1, 9, vocab)),
            Err(TransformerError::ContextFull { .. })
        ));
    }
}
