//! Perplexity of SmolLM2 Q4_1 on *Botchan* against llama.cpp's figure for the same file and
//! method (ctx 512, first 10 windows; `fixtures/reference/smollm2-llamacpp.json`).

use std::sync::Arc;

use edgeinfer_transformer::{perplexity, Model, Session};

#[test]
fn botchan_perplexity_matches_llama_cpp() {
    let model = Arc::new(Model::load(edgeinfer_e2e::default_model()).unwrap());
    let tokens = model
        .tokenizer
        .encode(&edgeinfer_e2e::botchan(), true)
        .unwrap();
    let want = edgeinfer_e2e::reference("smollm2-llamacpp.json")
        ["perplexity_botchan_body_ctx512_first10"]
        .as_f64()
        .expect("perplexity_botchan_body_ctx512_first10");
    let mut s = Session::new(edgeinfer_e2e::engine(), model.clone(), 512);
    let r = perplexity(&mut s, &tokens, 512, Some(10), |_, _| {}).unwrap();
    eprintln!(
        "botchan ppl (10 x 512) = {:.4} ± {:.4}; llama.cpp {want}",
        r.ppl, r.ppl_err
    );
    assert_eq!(r.per_chunk.len(), 10);
    assert_eq!(r.scored, 10 * 255);
    assert!(
        (r.ppl - want).abs() / want < 0.02,
        "perplexity {} vs llama.cpp {want}",
        r.ppl
    );
}
