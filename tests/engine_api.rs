//! The embeddable API on the default model (SmolLM2-135M Q4_1): engines with their own level
//! side by side, sessions that own their model and outlive their scope, generation owned by its
//! handle and cancelled from another thread.

use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use edgeinfer_e2e::checks::same_bits;
use edgeinfer_e2e::{engine, engine_with};
use edgeinfer_transformer::{
    argmax, CancelToken, Engine, Generator, Level, Logits, Model, Precision, Sampler,
    SamplerConfig, Session, StopReason, ZeroShot,
};

fn model() -> &'static Arc<Model> {
    static M: OnceLock<Arc<Model>> = OnceLock::new();
    edgeinfer_e2e::load("smollm2", &M)
}

fn greedy() -> Sampler {
    Sampler::new(SamplerConfig::greedy())
}

/// Everything a program keeps across threads or in a foreign handle is `Send + 'static`, and
/// what is shared is `Sync` too (checked at compile time).
#[test]
fn handles_are_send_and_static() {
    fn owned<T: Send + 'static>() {}
    fn shared<T: Send + Sync + 'static>() {}
    owned::<Session>();
    owned::<Generator<Session>>();
    shared::<Engine>();
    shared::<Arc<Model>>();
    shared::<CancelToken>();
    shared::<ZeroShot>();
}

/// Logits of every position of `toks`, then `steps` greedy decode steps.
fn run(s: &mut Session, toks: &[u32], steps: usize) -> Vec<Vec<f32>> {
    let vocab = s.model().config.vocab_size;
    let all = s.forward_logits(toks, 0, Logits::All).unwrap();
    let mut out: Vec<Vec<f32>> = all.chunks_exact(vocab).map(<[f32]>::to_vec).collect();
    for _ in 0..steps {
        let next = argmax(out.last().unwrap());
        out.push(s.forward(&[next], s.n_past()).unwrap());
    }
    out
}

/// (max |Δ|, largest per-position mean |Δ|) between two runs' logits.
fn deltas(a: &[Vec<f32>], b: &[Vec<f32>]) -> (f32, f32) {
    let (mut max, mut mean) = (0.0f32, 0.0f32);
    for (x, y) in a.iter().zip(b) {
        let d: Vec<f32> = x.iter().zip(y).map(|(p, q)| (p - q).abs()).collect();
        max = d.iter().copied().fold(max, f32::max);
        mean = mean.max(d.iter().sum::<f32>() / d.len() as f32);
    }
    (max, mean)
}

/// One model on a scalar engine and on one at the best level, decoding at the same time from
/// two threads: each engine's logits are the bits it gives alone (nothing of one engine leaks
/// into the other), and the two differ as their summation orders allow. On the exact path
/// (f32 activations) that is f32 rounding: within 1e-3. On the default path each layer's
/// activations are rounded to 8 bits, and a rounding-level difference that moves one value
/// across a rounding boundary moves it by a whole step, so the two levels' logits differ by
/// about as much as the quantized path differs from f32 (the reference's tolerances: each
/// within 1.5, mean within 0.5, the same top-1 where the margin is 1 or more) — but they must
/// differ when the CPU has a SIMD level: then the scalar engine really ran scalar kernels.
#[test]
fn engines_with_different_levels_work_side_by_side() {
    let m = model();
    let toks = m
        .tokenizer
        .encode("The three primary colours are", true)
        .unwrap();
    let steps = 6;
    let engines = [Level::Scalar, Level::best()].map(|l| {
        Engine::builder()
            .threads(1)
            .level(l)
            .build()
            .expect("an available level")
    });
    let alone: Vec<_> = engines
        .iter()
        .map(|e| run(&mut Session::new(e, m.clone(), 64), &toks, steps))
        .collect();
    let together: Vec<_> = std::thread::scope(|sc| {
        let runs: Vec<_> = engines
            .iter()
            .map(|e| {
                let toks = &toks;
                sc.spawn(move || run(&mut Session::new(e, m.clone(), 64), toks, steps))
            })
            .collect();
        runs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for ((e, a), t) in engines.iter().zip(&alone).zip(&together) {
        assert_eq!(e.level(), e.kernels().level);
        assert!(
            same_bits(&a.concat(), &t.concat()),
            "{}: changed next to another engine",
            e.level()
        );
    }
    let best = Level::best();
    let (scalar, simd) = (&alone[0], &alone[1]);
    for (pos, (s, b)) in scalar.iter().zip(simd).enumerate() {
        let mut sorted = b.clone();
        sorted.sort_by(|x, y| y.total_cmp(x));
        if sorted[0] - sorted[1] >= 1.0 {
            assert_eq!(argmax(s), argmax(b), "position {pos}: top-1 differs");
        }
    }
    let (max, mean) = deltas(scalar, simd);
    eprintln!("quantized, scalar vs {best}: max |Δlogit| {max:.3}, mean up to {mean:.3}");
    assert!(max <= 1.5 && mean <= 0.5, "scalar vs {best}: {max}, {mean}");
    if best != Level::Scalar {
        assert!(max > 0.0, "the scalar engine gave the {best} engine's bits");
    }

    let exact: Vec<_> = engines
        .iter()
        .map(|e| {
            let mut s = Session::new(e, m.clone(), 64).with_precision(Precision::ExactF32);
            run(&mut s, &toks, 0)
        })
        .collect();
    let (max, _) = deltas(&exact[0], &exact[1]);
    eprintln!("exact, scalar vs {best}: max |Δlogit| {max:.2e}");
    assert!(max <= 1e-3, "exact path, scalar vs {best}: {max}");
}

/// A session made (with its engine and model) inside a function outlives it: the function's
/// `Arc` and engine are gone, the session holds its own. It moves to another thread, runs
/// there, comes back and goes on; its logits are those of a session that never moved.
#[test]
fn session_outlives_its_scope_and_moves_to_another_thread() {
    let toks = model()
        .tokenizer
        .encode("Rust is a language", true)
        .unwrap();
    let make = || -> Session {
        let engine = engine_with(2, true);
        let model =
            Arc::new(Model::load(edgeinfer_e2e::default_model()).expect("load the default model"));
        Session::new(&engine, model, 64)
    };
    let mut s = make();
    let toks2 = toks.clone();
    let (mut s, first) = std::thread::spawn(move || {
        let l = s.forward(&toks2, 0).unwrap();
        (s, l)
    })
    .join()
    .unwrap();
    let next = argmax(&first);
    let second = s.forward(&[next], s.n_past()).unwrap();
    assert_eq!(s.tokens(), [&toks[..], &[next]].concat());

    let mut here = Session::new(engine(), model().clone(), 64);
    assert!(same_bits(&first, &here.forward(&toks, 0).unwrap()));
    assert!(same_bits(
        &second,
        &here.forward(&[next], toks.len()).unwrap()
    ));
}

/// A generation owned by its handle runs in another thread; this thread cancels it after three
/// pieces. It ends at the next token boundary with `Cancelled`, the session comes back holding
/// exactly the prompt and the generated tokens it ran, and generating on from there gives the
/// tokens a fresh session gives after the same ids.
#[test]
fn cancel_from_another_thread_stops_a_generation_and_the_session_goes_on() {
    let m = model();
    let prompt = m
        .tokenizer
        .encode(
            "Once upon a time, in a land far away, there lived a dragon who",
            true,
        )
        .unwrap();
    let session = Session::new(engine(), m.clone(), 4096);
    let gen = Generator::new(session, greedy(), &prompt, 3000).unwrap();
    let cancel = gen.cancel_token();
    // A rendezvous channel: the generating thread waits for each piece to be taken.
    let (tx, rx) = mpsc::sync_channel(0);
    let worker = std::thread::spawn(move || {
        let mut gen = gen;
        for piece in gen.by_ref() {
            if tx.send(piece.unwrap()).is_err() {
                break;
            }
        }
        gen
    });
    for _ in 0..3 {
        let piece = rx.recv_timeout(Duration::from_secs(60)).expect("a piece");
        assert!(piece.token.is_some());
    }
    let cancelled_at = Instant::now();
    cancel.cancel();
    // Whatever was in flight, then the end of the stream.
    let late: Vec<_> = rx.iter().collect();
    let gen = worker.join().unwrap();
    let waited = cancelled_at.elapsed();
    assert_eq!(gen.stop_reason(), Some(&StopReason::Cancelled));
    let generated = gen.generated().to_vec();
    eprintln!(
        "cancelled after {} tokens ({} pieces after the cancel), stream ended {waited:?} later",
        generated.len(),
        late.len()
    );
    assert!(
        (3..=5).contains(&generated.len()),
        "{} tokens generated",
        generated.len()
    );
    assert!(waited < Duration::from_secs(5), "{waited:?}");

    // The session: the prompt and every generated token but the last (sampled, not run) —
    // or all of them, when the cancel came while the last one was being run.
    let mut session = gen.into_session();
    let ran = [&prompt[..], &generated[..generated.len() - 1]].concat();
    if session.n_past() == ran.len() + 1 {
        assert_eq!(
            session.tokens(),
            [&prompt[..], &generated[..]].concat().as_slice()
        );
        session.truncate(ran.len());
    }
    assert_eq!(session.tokens(), ran.as_slice());
    assert_eq!(session.n_past(), ran.len());

    // Go on from there, through the cache ...
    let last = *generated.last().unwrap();
    let more: Vec<u32> = Generator::new(&mut session, greedy(), &[last], 6)
        .unwrap()
        .filter_map(|p| p.unwrap().token)
        .collect();
    // ... and from scratch on the same ids.
    let fresh = Session::new(engine(), m.clone(), 4096);
    let all = [&ran[..], &[last]].concat();
    let again: Vec<u32> = Generator::new(fresh, greedy(), &all, 6)
        .unwrap()
        .filter_map(|p| p.unwrap().token)
        .collect();
    assert_eq!(more.len(), 6);
    assert_eq!(more, again);
    assert_eq!(session.n_past(), all.len() + 5);
}

/// A token cancelled before the first piece is asked for stops the prompt itself: nothing runs,
/// the session is unchanged and takes the next generation as if nothing happened.
#[test]
fn cancel_before_the_prompt_runs_leaves_the_session_unchanged() {
    let m = model();
    let prompt = m
        .tokenizer
        .encode("The capital of France is", true)
        .unwrap();
    let mut session = Session::new(engine(), m.clone(), 64);
    let cancel = CancelToken::new();
    cancel.cancel();
    let mut gen = Generator::new(&mut session, greedy(), &prompt, 8)
        .unwrap()
        .with_cancel(cancel);
    assert!(gen.next().is_none());
    assert_eq!(gen.stop_reason(), Some(&StopReason::Cancelled));
    assert!(gen.generated().is_empty());
    drop(gen);
    assert_eq!(session.n_past(), 0);
    let text: String = Generator::new(&mut session, greedy(), &prompt, 2)
        .unwrap()
        .map(|p| p.unwrap().text)
        .collect();
    assert!(text.starts_with(" Paris"), "{text:?}");
}

/// Bad prompts are refused when the generator is made, before anything runs.
#[test]
fn generator_checks_its_prompt_up_front() {
    let m = model();
    let mut session = Session::new(engine(), m.clone(), 8);
    assert!(Generator::new(&mut session, greedy(), &[], 4).is_err());
    assert!(Generator::new(&mut session, greedy(), &[u32::MAX], 4).is_err());
    assert!(Generator::new(&mut session, greedy(), &[1; 9], 4).is_err());
    assert_eq!(session.n_past(), 0);
}
