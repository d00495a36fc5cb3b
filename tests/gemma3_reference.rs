//! Gemma 3 270M (Q4_K_M, `gemma3`) against llama.cpp's outputs
//! (`fixtures/reference/arch-gemma3-270m.json`), forward from the recorded prompt ids; the
//! sliding-window ring cache against a full cache and against the mask's definition; and the
//! consistency checks every architecture gets.

use std::sync::{Arc, OnceLock};

use edgeinfer_e2e::checks::{self, same_bits};
use edgeinfer_e2e::{engine, engine_with};
use edgeinfer_transformer::{Logits, Model, Session};
use serde_json::Value;

fn model() -> &'static Arc<Model> {
    static M: OnceLock<Arc<Model>> = OnceLock::new();
    edgeinfer_e2e::load("gemma3-270m", &M)
}

edgeinfer_e2e::architecture_tests!(model, "arch-gemma3-270m.json", 11);

fn reference() -> Value {
    edgeinfer_e2e::reference("arch-gemma3-270m.json")
}

#[test]
fn description_follows_llama_cpp_gemma3() {
    let m = model();
    let a = &m.arch;
    let c = &m.config;
    assert_eq!(
        (c.d_model, c.head_dim, c.n_heads, c.n_kv_heads),
        (640, 256, 4, 1)
    );
    assert_eq!(a.rope_style, edgeinfer_kernels::ops::RopeStyle::HalfSplit);
    // five sliding layers of every six, the sixth global: 5, 11, 17
    let global: Vec<usize> = (0..c.n_layers)
        .filter(|&i| a.layers[i].window.is_none())
        .collect();
    assert_eq!(global, [5, 11, 17]);
    for l in &a.layers {
        let base = a.ropes[l.rope].base;
        match l.window {
            Some(w) => assert_eq!((w, base), (512, 10_000.0)),
            None => assert_eq!(base, 1_000_000.0),
        }
    }
    assert!(a.qk_norm && a.post_attention_norm && a.post_ffn_norm);
    assert_eq!(a.ffn, edgeinfer_transformer::arch::FfnActivation::GeluTanh);
    assert_eq!(a.embedding_scale, Some(640f32.sqrt()));
    assert_eq!(a.attention_scale, 1.0 / 16.0);
    assert_eq!(a.final_logit_softcap, None);
}

/// The window's edge, from the mask's definition (a token at p sees `(p − w, p]`): with the
/// window as long as the input nothing is masked, so every position's logits equal those with
/// the model's own window (512); one shorter, only the last position loses position 0, so it
/// alone changes.
#[test]
fn window_masks_exactly_the_positions_before_p_minus_w_plus_one() {
    let m = model();
    let n = 24;
    let toks = checks::tokens(m, n, 16);
    let vocab = m.config.vocab_size;
    let run = |s: Session| -> Vec<f32> {
        let mut s = s;
        s.forward_logits(&toks, 0, Logits::All).unwrap()
    };
    let model_window = run(Session::new(engine(), m.clone(), n));
    let w_n = run(Session::new(engine(), m.clone(), n).with_sliding_window(n));
    let w_n1 = run(Session::new(engine(), m.clone(), n).with_sliding_window(n - 1));
    assert!(same_bits(&model_window, &w_n));
    let last = (n - 1) * vocab;
    assert!(same_bits(&model_window[..last], &w_n1[..last]));
    assert!(!same_bits(&model_window[last..], &w_n1[last..]));
}

/// A ring of 8 slots over 40 positions: the same logits as sliding-window layers keeping every
/// position (masked explicitly), token by token, in one batch and in micro-batches across the
/// window boundary, with f16 and f32 caches; memory is the ring's; a rewind the ring can serve
/// works and one it cannot clears the cache.
#[test]
fn ring_cache_equals_full_cache_with_a_small_window() {
    use edgeinfer_transformer::KvType;
    let m = model();
    let (n, w) = (40, 8);
    let toks = checks::tokens(m, n, 17);
    let vocab = m.config.vocab_size;
    for kv in [KvType::F16, KvType::F32] {
        let ring = || {
            Session::new(engine(), m.clone(), n)
                .with_kv_type(kv)
                .with_sliding_window(w)
        };
        let full = Session::new(engine(), m.clone(), n)
            .with_kv_type(kv)
            .with_sliding_window(w)
            .with_full_cache(true)
            .forward_logits(&toks, 0, Logits::All)
            .unwrap();
        let mut r = ring();
        let batch = r.forward_logits(&toks, 0, Logits::All).unwrap();
        assert!(same_bits(&batch, &full), "{kv:?}: ring batch vs full cache");
        // token by token: fork-join with one thread, the decode team with two
        for threads in [1, 2] {
            let engine = engine_with(threads, true);
            let mut one = Session::new(&engine, m.clone(), n)
                .with_kv_type(kv)
                .with_sliding_window(w);
            let mut stepped = Vec::new();
            for (i, &t) in toks.iter().enumerate() {
                stepped.extend(one.forward(&[t], i).unwrap());
            }
            assert!(
                same_bits(&stepped, &full),
                "{kv:?}, {threads} threads: ring token by token vs full cache"
            );
        }
        let mut split = ring();
        let mut parts = Vec::new();
        for (a, b) in [(0, 3), (3, 14), (14, 15), (15, 29), (29, 40)] {
            parts.extend(split.forward_logits(&toks[a..b], a, Logits::All).unwrap());
        }
        assert!(
            same_bits(&parts, &full),
            "{kv:?}: ring micro-batches vs full cache"
        );

        // memory: 15 sliding layers hold 8 positions, 3 global layers 40
        let elem = if kv == KvType::F16 { 2 } else { 4 };
        let row = m.config.kv_dim() * 2 * elem;
        assert_eq!(
            r.kv_bytes(),
            (15 * w + 3 * n) * row,
            "{kv:?}: ring allocation"
        );

        // rewind by one position: served by the ring
        r.truncate(n - 1);
        assert_eq!(r.n_past(), n - 1);
        let again = r.forward(&toks[n - 1..], n - 1).unwrap();
        assert!(same_bits(&again, &full[(n - 1) * vocab..]));
        // rewind further: the ring has overwritten what position 30 attends to
        r.truncate(30);
        assert_eq!(r.n_past(), 0);
        assert!(r.forward(&toks[30..], 30).is_err());
        // a full cache rewinds anywhere
        let mut f = Session::new(engine(), m.clone(), n)
            .with_kv_type(kv)
            .with_sliding_window(w)
            .with_full_cache(true);
        f.forward(&toks, 0).unwrap();
        f.truncate(30);
        assert_eq!(f.n_past(), 30);
        let tail = f.forward_logits(&toks[30..], 30, Logits::All).unwrap();
        assert!(same_bits(&tail, &full[30 * vocab..]));
    }
}

/// The model's own 512-position window over a longer input: ring and full cache agree bit
/// for bit on the last positions (the first 48 positions have slid out of every window layer).
#[test]
fn ring_cache_equals_full_cache_past_the_real_window() {
    let m = model();
    let n = 560;
    let toks = checks::tokens(m, n, 18);
    let from = Logits::From(n - 4);
    let ring = Session::new(engine(), m.clone(), n).forward_logits(&toks, 0, from);
    let full = Session::new(engine(), m.clone(), n)
        .with_full_cache(true)
        .forward_logits(&toks, 0, from);
    assert!(same_bits(&ring.unwrap(), &full.unwrap()));
}

/// Perplexity on the Botchan body (ctx 512, first 10 windows) within 2 % of llama.cpp's, on our
/// own tokenization of the text; which must first equal, id for id, the 5,120 ids of
/// `fixtures/tokens/gemma3-botchan-first5120.json` (llama.cpp's SentencePiece algorithm written
/// independently in Python; see its `made_by`): a long-text check of the tokenizer too.
#[test]
fn botchan_perplexity_matches_llama_cpp() {
    let m = model();
    let fixture: Value = {
        let p = edgeinfer_e2e::root().join("fixtures/tokens/gemma3-botchan-first5120.json");
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
    };
    let text = edgeinfer_e2e::botchan();
    assert_eq!(
        text.len() as u64,
        fixture["text_bytes"].as_u64().unwrap(),
        "the Botchan body the ids were made from"
    );
    let want_ids = checks::ids(&fixture["ids"]);
    let ours = m.tokenizer.encode(&text, true).unwrap();
    assert!(ours.len() >= want_ids.len(), "{} ids", ours.len());
    if let Some(i) = (0..want_ids.len()).find(|&i| ours[i] != want_ids[i]) {
        panic!(
            "Botchan tokenization differs from the reference at id {i}: ours {:?}, reference {:?}",
            &ours[i.saturating_sub(2)..(i + 3).min(ours.len())],
            &want_ids[i.saturating_sub(2)..(i + 3).min(want_ids.len())]
        );
    }
    let tokens = &ours[..want_ids.len()];
    let want = reference()["perplexity_botchan_body_ctx512_first10"]
        .as_f64()
        .unwrap();
    let mut s = Session::new(engine(), m.clone(), 512);
    let r = edgeinfer_transformer::perplexity(&mut s, tokens, 512, Some(10), |_, _| {}).unwrap();
    eprintln!(
        "gemma3 botchan ppl (10 x 512) = {:.4}; llama.cpp {want}",
        r.ppl
    );
    assert_eq!(r.scored, 10 * 255);
    assert!(
        (r.ppl - want).abs() / want < 0.02,
        "ppl {} vs {want}",
        r.ppl
    );
}
