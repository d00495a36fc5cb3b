//! Qwen2.5-Coder-0.5B-Instruct (Q4_K_M, `qwen2`) against llama.cpp's outputs
//! (`fixtures/reference/arch-qwen2.5-coder-0.5b.json`: greedy ids with top-1/top-2 margins,
//! Botchan perplexity), and the consistency checks every architecture gets.

use std::sync::{Arc, OnceLock};

use edgeinfer_e2e::{checks, engine};
use edgeinfer_transformer::{perplexity, Model, Session};
use serde_json::Value;

fn model() -> &'static Arc<Model> {
    static M: OnceLock<Arc<Model>> = OnceLock::new();
    edgeinfer_e2e::load("qwen2.5-coder-0.5b", &M)
}

edgeinfer_e2e::architecture_tests!(model, "arch-qwen2.5-coder-0.5b.json", 1);

fn reference() -> Value {
    edgeinfer_e2e::reference("arch-qwen2.5-coder-0.5b.json")
}

#[test]
fn description_is_the_llama_block_with_biases_and_neox_rope() {
    let a = &model().arch;
    assert_eq!(a.name, "qwen2");
    assert_eq!(a.rope_style, edgeinfer_kernels::ops::RopeStyle::HalfSplit);
    assert!(a.layers.iter().all(|l| l.window.is_none() && l.rope == 0));
    assert!(!a.qk_norm && !a.post_attention_norm && !a.post_ffn_norm);
    assert!(model()
        .layers
        .iter()
        .all(|l| l.bq.is_some() && l.bk.is_some() && l.bv.is_some()));
    assert_eq!(a.embedding_scale, None);
    assert_eq!(a.final_logit_softcap, None);
}

#[test]
fn tokenizer_matches_llama_cpp() {
    let tk = &model().tokenizer;
    for case in reference()["tokenize"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        assert_eq!(
            tk.encode(text, true).unwrap(),
            checks::ids(&case["ids"]),
            "{text:?}"
        );
    }
    for case in checks::greedy_cases(&reference()) {
        assert_eq!(tk.encode(&case.name, true).unwrap(), case.prompt);
    }
}

#[test]
fn botchan_perplexity_matches_llama_cpp() {
    let m = model();
    let tokens = m.tokenizer.encode(&edgeinfer_e2e::botchan(), true).unwrap();
    let want = reference()["perplexity_botchan_body_ctx512_first10"]
        .as_f64()
        .unwrap();
    let mut s = Session::new(engine(), m.clone(), 512);
    let r = perplexity(&mut s, &tokens, 512, Some(10), |_, _| {}).unwrap();
    eprintln!(
        "qwen2 botchan ppl (10 x 512) = {:.4}; llama.cpp {want}",
        r.ppl
    );
    assert_eq!(r.scored, 10 * 255);
    assert!(
        (r.ppl - want).abs() / want < 0.02,
        "ppl {} vs {want}",
        r.ppl
    );
}
