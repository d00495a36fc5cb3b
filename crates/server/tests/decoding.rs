//! The scheduler's building blocks without HTTP: several [`Decoding`]s stepped together
//! through [`Session::decode_many`] give exactly what each one's own [`Generator`] gives
//! (tokens, text, stop reason), on the real default model.

mod support;

use edgeinfer_transformer::{Decoding, Generator, Sampler, SamplerConfig, Session, StopReason};
use support::{engine, model};

const CTX: usize = 256;

struct Case {
    prompt: &'static str,
    cfg: SamplerConfig,
    max: usize,
    stops: Vec<String>,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            prompt: "The capital of France is",
            cfg: SamplerConfig::greedy(),
            max: 30,
            stops: vec![],
        },
        Case {
            prompt: "Once upon a time",
            cfg: SamplerConfig {
                temperature: 0.9,
                seed: 11,
                ..SamplerConfig::default()
            },
            max: 25,
            stops: vec![],
        },
        Case {
            prompt: "My favourite food is",
            cfg: SamplerConfig {
                temperature: 0.7,
                top_k: 0,
                min_p: 0.0,
                seed: 3,
                ..SamplerConfig::default()
            },
            max: 12,
            stops: vec![],
        },
    ]
}

/// Each case alone through the library's generator.
fn alone(c: &Case) -> (String, Vec<u32>, StopReason) {
    let model = model();
    let ids = model.tokenizer.encode(c.prompt, true).unwrap();
    let mut s = Session::new(&engine(), model.clone(), CTX);
    let mut g = Generator::new(&mut s, Sampler::new(c.cfg.clone()), &ids, c.max)
        .unwrap()
        .with_stop_strings(c.stops.clone());
    let text: String = g.by_ref().map(|p| p.unwrap().text).collect();
    let stop = g.stop_reason().cloned().unwrap();
    (text, g.generated().to_vec(), stop)
}

/// Every case at once: prompts run one by one, then one decode_many step per token.
fn together(cases: &[Case]) -> Vec<(String, Vec<u32>, StopReason)> {
    let model = model();
    let tk = &model.tokenizer;
    let mut sessions: Vec<Session> = cases
        .iter()
        .map(|_| Session::new(&engine(), model.clone(), CTX))
        .collect();
    let mut decs = Vec::new();
    let mut texts = vec![String::new(); cases.len()];
    let mut next: Vec<Option<u32>> = vec![None; cases.len()];
    for (i, c) in cases.iter().enumerate() {
        let ids = tk.encode(c.prompt, true).unwrap();
        let logits = sessions[i].forward(&ids, 0).unwrap();
        let mut d = Decoding::new(Sampler::new(c.cfg.clone()), &ids, c.max)
            .with_stop_strings(c.stops.clone());
        let out = d.next_token(&logits, tk);
        texts[i].push_str(&out.text);
        next[i] = out.stop.is_none().then_some(out.token);
        decs.push(d);
    }
    loop {
        let active: Vec<usize> = (0..cases.len()).filter(|&i| next[i].is_some()).collect();
        if active.is_empty() {
            break;
        }
        let tokens: Vec<u32> = active.iter().map(|&i| next[i].unwrap()).collect();
        let mut refs: Vec<&mut Session> = sessions
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| next[*i].is_some())
            .map(|(_, s)| s)
            .collect();
        let all = Session::decode_many(&mut refs, &tokens).unwrap();
        for (&i, logits) in active.iter().zip(all) {
            let out = decs[i].next_token(&logits, tk);
            texts[i].push_str(&out.text);
            next[i] = out.stop.is_none().then_some(out.token);
        }
    }
    decs.iter_mut()
        .zip(texts)
        .map(|(d, mut t)| {
            let stop = d.stop_reason().cloned().unwrap();
            t.push_str(&d.finish(stop.clone()));
            (t, d.generated().to_vec(), stop)
        })
        .collect()
}

#[test]
fn decodings_stepped_together_equal_each_generator_alone() {
    let mut cs = cases();
    // A stop string from the middle of the first case's greedy text.
    let (full, ..) = alone(&cs[0]);
    let words: Vec<&str> = full.split_whitespace().collect();
    assert!(words.len() >= 4, "{full:?}");
    let stop = words[words.len() / 2].to_string();
    cs.push(Case {
        prompt: "The capital of France is",
        cfg: SamplerConfig::greedy(),
        max: 30,
        stops: vec![stop.clone()],
    });
    let got = together(&cs);
    for (i, c) in cs.iter().enumerate() {
        assert_eq!(got[i], alone(c), "case {i} ({:?})", c.prompt);
    }
    assert_eq!(got[3].0, full[..full.find(&stop).unwrap()]);
    assert_eq!(got[3].2, StopReason::StopString(stop));
    assert!(got[1].0 != got[2].0 && !got[1].0.is_empty());
}

#[test]
fn decoding_budget_and_end() {
    let model = model();
    let tk = &model.tokenizer;
    let logits = vec![0.0f32; model.config.vocab_size];
    // No budget: nothing is sampled.
    let mut d = Decoding::new(Sampler::new(SamplerConfig::greedy()), &[1, 2], 0);
    let out = d.next_token(&logits, tk);
    assert_eq!(out.stop, Some(StopReason::MaxTokens));
    assert!(d.generated().is_empty());
    // A budget of one: the first token ends it with MaxTokens; later calls sample nothing.
    let mut d = Decoding::new(Sampler::new(SamplerConfig::greedy()), &[1, 2], 1);
    let mut one_hot = logits.clone();
    let tok = (0..model.config.vocab_size as u32)
        .find(|&t| !tk.is_eog(t) && !tk.is_control(t) && !tk.token_bytes(t).is_empty())
        .unwrap();
    one_hot[tok as usize] = 10.0;
    let out = d.next_token(&one_hot, tk);
    assert_eq!(out.token, tok);
    assert_eq!(out.stop, Some(StopReason::MaxTokens));
    assert_eq!(d.next_token(&one_hot, tk).stop, Some(StopReason::MaxTokens));
    assert_eq!(d.generated(), &[tok]);
    // An end-of-generation token stops with no text.
    let eos = tk.eos().expect("the model has EOS");
    let mut d = Decoding::new(Sampler::new(SamplerConfig::greedy()), &[1], 5);
    let mut l = logits.clone();
    l[eos as usize] = 10.0;
    let out = d.next_token(&l, tk);
    assert_eq!(
        (out.token, out.text.as_str(), out.stop),
        (eos, "", Some(StopReason::EndOfGeneration))
    );
}
