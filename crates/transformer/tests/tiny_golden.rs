//! Each decoder architecture's forward pass against an independent NumPy forward, on tiny
//! random-weight models (`fixtures/decoder/`, made by `gen_decoder_fixtures.py`; its README
//! says what each file is and what the NumPy forward implements).
//!
//! Per fixture (F32 and two quantized type mixes per architecture):
//! * exact path (`Precision::ExactF32`: dequantized weights, f32 activations, f32 KV cache):
//!   the prompt as two prefill batches (the second at position 13, so it attends over cached
//!   positions), then 8 single-token greedy steps on our own argmax. Every stored logit within
//!   `EXACT_REL × rms(logits)` of NumPy's, and every greedy id equal to NumPy's.
//! * default path (8-bit activations, f16 KV cache), teacher-forced on NumPy's greedy ids, in
//!   a pool of two threads: logits within `QUANT_MAX_REL × rms` (mean |Δ| within
//!   `QUANT_MEAN_REL × rms`), top-1 equal to NumPy's wherever NumPy's top-1/top-2 margin is at
//!   least `QUANT_MARGIN_REL × rms`, and the decode steps on the thread team bit-identical to
//!   the same steps forking the pool around each product (whose maths the exact path checks).

use std::path::PathBuf;
use std::sync::Arc;

use edgeinfer_transformer::{argmax, Engine, Level, Logits, Model, Precision, Session};
use serde::Deserialize;

/// Exact path: max |Δ| / rms(logits). NumPy computes in float64 on the same dequantized
/// weights; what remains is f32 rounding (sums of ≤ 256 products, softmax, norms) compounded
/// over ≤ 7 layers: observed ≤ 1e-5 relative. 1e-4 leaves room for other summation orders
/// (SIMD widths, threads), while a mistake in the maths (a RoPE pairing, a norm, a mask, a
/// scale) moves logits by ≥ 1e-2 of their rms.
const EXACT_REL: f32 = 1e-4;
/// Default path: max |Δ| / rms(logits) and mean |Δ| / rms. Activations are rounded to 8 bits
/// per block of 32 (or 256) before each product (≈ 0.5 % rms error per product) and K/V are
/// stored as f16. A NumPy forward that rounds its activations through Q8_0 the same way
/// deviates from the exact one by up to 0.104 × rms (max) and 0.030 × rms (mean over a
/// position's logits) on these fixtures, and ours by about as much: the bounds are twice that.
const QUANT_MAX_REL: f32 = 0.2;
const QUANT_MEAN_REL: f32 = 0.06;
/// Default path: top-1 must equal NumPy's where its top-1/top-2 margin is at least this
/// fraction of the logits' rms (2.5 × the largest deviation 8-bit rounding caused above).
const QUANT_MARGIN_REL: f32 = 0.25;
/// The prompt is run as two prefill batches split here.
const SPLIT: usize = 13;

#[derive(Deserialize)]
struct Fixture {
    arch: String,
    variant: String,
    gguf: String,
    config: Config,
    prompt_ids: Vec<u32>,
    greedy_ids: Vec<u32>,
    greedy_margins: Vec<f32>,
    logit_rms: f32,
    logits_positions: Vec<usize>,
    logits: Vec<Vec<f32>>,
}

#[derive(Deserialize)]
struct Config {
    n_layers: usize,
    d_model: usize,
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
    vocab: usize,
}

/// The kernel level under test: the best this CPU has, capped by `EDGEINFER_KERNELS`
/// (`scripts/test.sh` runs these tests again with `EDGEINFER_KERNELS=scalar`; the library
/// itself reads no environment).
fn level() -> Level {
    Level::best_up_to_named(std::env::var("EDGEINFER_KERNELS").ok().as_deref())
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/decoder")
}

fn fixture(stem: &str) -> Fixture {
    let path = dir().join(format!("{stem}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let f: Fixture =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()));
    assert_eq!(format!("{}-{}", f.arch, f.variant), stem);
    assert_eq!(f.logits.len(), f.logits_positions.len());
    assert_eq!(f.greedy_ids.len(), f.greedy_margins.len());
    f
}

/// Logits of every position of `prompt ++ fed` (fed one token at a time after the prompt):
/// returns (logits by position, our argmax at each decode step). `next` picks the token fed
/// after step s from our argmax and s.
fn run(
    session: &mut Session,
    f: &Fixture,
    next: impl Fn(u32, usize) -> u32,
) -> (Vec<Vec<f32>>, Vec<u32>) {
    let vocab = f.config.vocab;
    let p = &f.prompt_ids;
    let mut by_pos: Vec<Vec<f32>> = Vec::new();
    for (start, chunk) in [(0, &p[..SPLIT]), (SPLIT, &p[SPLIT..])] {
        let l = session
            .forward_logits(chunk, start, Logits::All)
            .unwrap_or_else(|e| panic!("{}: prefill at {start}: {e}", f.gguf));
        assert_eq!(l.len(), chunk.len() * vocab);
        by_pos.extend(l.chunks_exact(vocab).map(<[f32]>::to_vec));
    }
    let mut ours = Vec::new();
    for s in 0..f.greedy_ids.len() {
        let id = argmax(by_pos.last().expect("prompt is not empty"));
        ours.push(id);
        if s + 1 < f.greedy_ids.len() {
            let pos = p.len() + s;
            let l = session
                .forward(&[next(id, s)], pos)
                .unwrap_or_else(|e| panic!("{}: decode at {pos}: {e}", f.gguf));
            by_pos.push(l);
        }
    }
    (by_pos, ours)
}

/// (max |Δ|, mean |Δ|) between our logits and NumPy's at one stored position.
fn diff(ours: &[f32], numpy: &[f32]) -> (f32, f32) {
    assert_eq!(ours.len(), numpy.len());
    let d: Vec<f32> = ours.iter().zip(numpy).map(|(a, b)| (a - b).abs()).collect();
    let max = d.iter().copied().fold(0.0, f32::max);
    (max, d.iter().sum::<f32>() / d.len() as f32)
}

fn check(stem: &str) {
    let f = fixture(stem);
    let path = dir().join(&f.gguf);
    let model =
        Arc::new(Model::load(&path).unwrap_or_else(|e| panic!("loading {}: {e}", path.display())));
    let c = &model.config;
    assert_eq!(c.arch, f.arch);
    assert_eq!(
        (
            c.n_layers,
            c.d_model,
            c.n_heads,
            c.n_kv_heads,
            c.head_dim,
            c.vocab_size
        ),
        (
            f.config.n_layers,
            f.config.d_model,
            f.config.n_heads,
            f.config.n_kv_heads,
            f.config.head_dim,
            f.config.vocab
        ),
        "{stem}: config"
    );
    let rms = f.logit_rms;
    let n_ctx = f.prompt_ids.len() + f.greedy_ids.len();

    // Exact path, free-running greedy.
    let engine = Engine::builder()
        .threads(2)
        .level(level())
        .build()
        .expect("engine");
    let mut s = Session::new(&engine, model.clone(), n_ctx).with_precision(Precision::ExactF32);
    let (logits, ours) = run(&mut s, &f, |id, _| id);
    let mut worst = (0.0f32, 0);
    for (pos, numpy) in f.logits_positions.iter().zip(&f.logits) {
        let (max, _) = diff(&logits[*pos], numpy);
        if max > worst.0 {
            worst = (max, *pos);
        }
    }
    eprintln!(
        "{stem}: exact   max |Δ| {:.2e} = {:.2e} × rms (at position {}; bound {EXACT_REL:e} × rms {rms:.3})",
        worst.0,
        worst.0 / rms,
        worst.1
    );
    assert!(
        worst.0 <= EXACT_REL * rms,
        "{stem}: exact path: logits differ from NumPy's by {:.3e} at position {} (bound {:.3e})",
        worst.0,
        worst.1,
        EXACT_REL * rms
    );
    assert_eq!(ours, f.greedy_ids, "{stem}: exact path greedy ids");

    // Default path (8-bit activations, f16 KV), teacher-forced on NumPy's greedy ids, on an
    // engine of two threads so that decode steps run on the thread team; then again on one
    // forking the pool around each product, which must give the same bits.
    let default_path = |team: bool| {
        let engine = Engine::builder()
            .threads(2)
            .level(level())
            .decode_team(team)
            .build()
            .expect("engine");
        let mut s = Session::new(&engine, model.clone(), n_ctx);
        run(&mut s, &f, |_, step| f.greedy_ids[step])
    };
    let (logits, ours) = default_path(true);
    let (fork_join, _) = default_path(false);
    for (pos, (a, b)) in logits.iter().zip(&fork_join).enumerate() {
        let same = a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(
            same,
            "{stem}: team and fork-join decode differ at position {pos}"
        );
    }
    let (mut worst, mut worst_mean) = ((0.0f32, 0), 0.0f32);
    for (pos, numpy) in f.logits_positions.iter().zip(&f.logits) {
        let (max, mean) = diff(&logits[*pos], numpy);
        if max > worst.0 {
            worst = (max, *pos);
        }
        worst_mean = worst_mean.max(mean);
    }
    eprintln!(
        "{stem}: default max |Δ| {:.2e} = {:.3} × rms (at position {}), worst mean |Δ| {:.3} × rms",
        worst.0,
        worst.0 / rms,
        worst.1,
        worst_mean / rms
    );
    assert!(
        worst.0 <= QUANT_MAX_REL * rms && worst_mean <= QUANT_MEAN_REL * rms,
        "{stem}: default path: logits differ from NumPy's by up to {:.3e} at position {} (bound \
         {:.3e}), mean up to {:.3e} (bound {:.3e})",
        worst.0,
        worst.1,
        QUANT_MAX_REL * rms,
        worst_mean,
        QUANT_MEAN_REL * rms
    );
    let mut checked = 0;
    for (step, ((&ours, &numpy), &margin)) in ours
        .iter()
        .zip(&f.greedy_ids)
        .zip(&f.greedy_margins)
        .enumerate()
    {
        if margin >= QUANT_MARGIN_REL * rms {
            checked += 1;
            assert_eq!(
                ours, numpy,
                "{stem}: default path step {step}: top-1 {ours}, NumPy's {numpy} (margin {margin})"
            );
        }
    }
    assert!(
        checked > 0,
        "{stem}: no greedy step has a margin large enough to check"
    );
}

fn check_arch(arch: &str) {
    let variants: Vec<String> = std::fs::read_dir(dir())
        .expect("fixtures/decoder")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let stem = name.strip_suffix(".json")?;
            stem.strip_prefix(&format!("{arch}-"))?;
            Some(stem.to_string())
        })
        .collect();
    assert_eq!(variants.len(), 3, "{arch}: fixtures found: {variants:?}");
    for stem in &variants {
        check(stem);
    }
}

#[test]
fn llama_tiny_matches_numpy() {
    check_arch("llama");
}

#[test]
fn qwen2_tiny_matches_numpy() {
    check_arch("qwen2");
}

#[test]
fn gemma3_tiny_matches_numpy() {
    check_arch("gemma3");
}

/// The fixtures' tokenizer (GPT-2 byte-level BPE with 61 merges) loads and round-trips text,
/// merging where it can.
#[test]
fn tiny_tokenizer_round_trips() {
    let model = Model::load(dir().join("llama-q4_1.gguf")).expect("loads");
    let t = &model.tokenizer;
    assert_eq!(t.vocab_size(), 320);
    let text = "The cat sat on the mat, then the dog ate 42 bones.";
    let ids = t.encode(text, false).expect("encodes");
    assert!(ids.len() < text.len(), "no merges applied: {ids:?}");
    assert_eq!(t.decode(&ids, false), text);
    assert_eq!(t.token_id("<|endoftext|>"), Some(0));
    assert!(t.is_eog(0));
}
