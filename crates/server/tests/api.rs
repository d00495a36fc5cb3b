//! The server end to end on the real default model (SmolLM2-135M-Instruct Q4_1), over TCP on
//! an ephemeral port: answers equal the library's greedy `Generator`, streams concatenate to
//! the same text, usage, stop strings, logprobs, every bad input's status and error shape,
//! the API key, the loading state, a full queue, and concurrent seeded clients (some
//! disconnecting) giving what each gives alone.

mod support;

use edgeinfer_server::Options;
use edgeinfer_transformer::chat::{self, Message};
use edgeinfer_transformer::{Generator, Sampler, SamplerConfig, Session, StopReason};
use serde_json::{json, Value};
use support::*;

const CTX: usize = 512;

fn opts() -> Options {
    Options {
        slots: 4,
        ctx: CTX,
        queue: 16,
        model_name: "smollm2".into(),
        ..Options::default()
    }
}

/// What the library's greedy generator gives: text, generated ids, prompt length, stop.
fn greedy(prompt: &str, max: usize, stops: &[&str]) -> (String, Vec<u32>, usize, StopReason) {
    let model = model();
    let ids = model.tokenizer.encode(prompt, true).unwrap();
    let mut session = Session::new(&engine(), model.clone(), CTX);
    let mut g = Generator::new(
        &mut session,
        Sampler::new(SamplerConfig::greedy()),
        &ids,
        max,
    )
    .unwrap()
    .with_stop_strings(stops.iter().map(|s| s.to_string()).collect());
    let mut text = String::new();
    for p in g.by_ref() {
        text.push_str(&p.unwrap().text);
    }
    let stop = g.stop_reason().cloned().unwrap();
    (text, g.generated().to_vec(), ids.len(), stop)
}

fn chat_prompt(user: &str) -> String {
    let model = model();
    chat::render_for(
        chat::template_for(&model),
        &model.tokenizer,
        &[Message::new("user", user)],
        true,
    )
    .unwrap()
}

fn finish_of(stop: &StopReason) -> &'static str {
    match stop {
        StopReason::MaxTokens | StopReason::ContextFull => "length",
        _ => "stop",
    }
}

/// The data events of a stream as JSON, checking that it ends with `[DONE]`.
fn chunks(r: &Resp) -> Vec<Value> {
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.head.to_ascii_lowercase().contains("text/event-stream"),
        "{}",
        r.head
    );
    let mut events = r.sse();
    assert_eq!(events.pop().as_deref(), Some("[DONE]"), "{}", r.text());
    events
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completion_equals_greedy_generator_plain_and_streamed() {
    let srv = start(opts()).await;
    let prompt = "The capital of France is";
    let (text, generated, n_prompt, stop) = greedy(prompt, 24, &[]);
    assert!(!text.is_empty());

    let body = json!({"model": "smollm2", "prompt": prompt, "max_tokens": 24, "temperature": 0});
    let r = post(srv.addr, "/v1/completions", &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["model"], "smollm2");
    assert!(v["id"].as_str().unwrap().starts_with("cmpl-"));
    assert_eq!(v["choices"][0]["text"], text.as_str());
    assert_eq!(v["choices"][0]["finish_reason"], finish_of(&stop));
    assert_eq!(v["usage"]["prompt_tokens"], n_prompt);
    assert_eq!(v["usage"]["completion_tokens"], generated.len());
    assert_eq!(v["usage"]["total_tokens"], n_prompt + generated.len());

    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    sbody["stream_options"] = json!({"include_usage": true});
    let r = request(
        srv.addr,
        "POST",
        "/v1/completions",
        &[],
        sbody.to_string().as_bytes(),
    )
    .await;
    let cs = chunks(&r);
    let (usage_chunk, rest) = cs.split_last().unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"], v["usage"]);
    let joined: String = rest
        .iter()
        .map(|c| {
            assert_eq!(c["object"], "text_completion");
            assert!(c["usage"].is_null());
            c["choices"][0]["text"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(joined, text);
    assert!(rest.len() > 2, "streamed in pieces: {rest:?}");
    assert_eq!(
        rest.last().unwrap()["choices"][0]["finish_reason"],
        finish_of(&stop)
    );
    assert!(rest[..rest.len() - 1]
        .iter()
        .all(|c| c["choices"][0]["finish_reason"].is_null()));

    // Without include_usage: no usage chunk, no usage key.
    sbody["stream_options"] = json!({"include_usage": false});
    let r = request(
        srv.addr,
        "POST",
        "/v1/completions",
        &[],
        sbody.to_string().as_bytes(),
    )
    .await;
    let cs = chunks(&r);
    assert!(cs
        .iter()
        .all(|c| c.get("usage").is_none() && c["choices"].as_array().unwrap().len() == 1));
    let joined: String = cs
        .iter()
        .map(|c| c["choices"][0]["text"].as_str().unwrap())
        .collect();
    assert_eq!(joined, text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_equals_greedy_generator_plain_and_streamed() {
    let srv = start(opts()).await;
    let q = "What is the capital of France?";
    let (text, generated, n_prompt, stop) = greedy(&chat_prompt(q), 40, &[]);
    let body = json!({
        "messages": [{"role": "user", "content": q}],
        "max_completion_tokens": 40,
        "temperature": 0,
    });
    let r = post(srv.addr, "/v1/chat/completions", &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["message"]["content"], text.as_str());
    assert_eq!(v["choices"][0]["finish_reason"], finish_of(&stop));
    assert_eq!(v["usage"]["prompt_tokens"], n_prompt);
    assert_eq!(v["usage"]["completion_tokens"], generated.len());

    // Content as an array of text parts is the same message.
    let mut parts = body.clone();
    parts["messages"][0]["content"] = json!([{"type": "text", "text": q}]);
    assert_eq!(
        post(srv.addr, "/v1/chat/completions", &parts).await.json()["choices"],
        v["choices"]
    );

    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    sbody["stream_options"] = json!({"include_usage": true});
    let r = request(
        srv.addr,
        "POST",
        "/v1/chat/completions",
        &[],
        sbody.to_string().as_bytes(),
    )
    .await;
    let cs = chunks(&r);
    let (usage_chunk, rest) = cs.split_last().unwrap();
    assert_eq!(usage_chunk["usage"], v["usage"]);
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(rest[0]["choices"][0]["delta"]["role"], "assistant");
    let joined: String = rest
        .iter()
        .map(|c| {
            assert_eq!(c["object"], "chat.completion.chunk");
            c["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(joined, text);
    assert_eq!(
        rest.last().unwrap()["choices"][0]["finish_reason"],
        finish_of(&stop)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_strings_end_the_text_before_them() {
    let srv = start(opts()).await;
    let prompt = "The capital of France is";
    let (full, ..) = greedy(prompt, 24, &[]);
    // A word from the middle of the greedy text, as the stop string.
    let words: Vec<&str> = full.split_whitespace().collect();
    assert!(words.len() >= 4, "{full:?}");
    let stop = words[words.len() / 2];
    let cut = full.find(stop).unwrap();
    let (expected, _, _, reason) = greedy(prompt, 24, &[stop]);
    assert_eq!(expected, full[..cut], "the generator's own stop");
    assert_eq!(reason, StopReason::StopString(stop.to_string()));

    for stops in [json!(stop), json!(["never-appears-xyz", stop])] {
        for stream in [false, true] {
            let body = json!({"prompt": prompt, "max_tokens": 24, "temperature": 0, "stop": stops, "stream": stream});
            let r = post(srv.addr, "/v1/completions", &body).await;
            let (text, finish) = if stream {
                let cs = chunks(&r);
                let t: String = cs
                    .iter()
                    .map(|c| c["choices"][0]["text"].as_str().unwrap())
                    .collect();
                (t, cs.last().unwrap()["choices"][0]["finish_reason"].clone())
            } else {
                assert_eq!(r.status, 200, "{}", r.text());
                let v = r.json();
                (
                    v["choices"][0]["text"].as_str().unwrap().to_string(),
                    v["choices"][0]["finish_reason"].clone(),
                )
            };
            assert_eq!(text, expected, "stop {stops} stream {stream}");
            assert_eq!(finish, "stop");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logprobs_are_the_log_softmax_of_the_logits() {
    let srv = start(opts()).await;
    let model = model();
    let q = "Name a colour.";
    let prompt = chat_prompt(q);
    let ids = model.tokenizer.encode(&prompt, true).unwrap();
    // Reference: the first token's distribution, from the library.
    let mut session = Session::new(&engine(), model.clone(), CTX);
    let logits = session.forward(&ids, 0).unwrap();
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = max as f64
        + logits
            .iter()
            .map(|&x| ((x - max) as f64).exp())
            .sum::<f64>()
            .ln();
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));

    let body = json!({
        "messages": [{"role": "user", "content": q}],
        "max_tokens": 8, "temperature": 0, "logprobs": true, "top_logprobs": 3,
    });
    let v = post(srv.addr, "/v1/chat/completions", &body).await.json();
    let content = v["choices"][0]["logprobs"]["content"]
        .as_array()
        .expect("logprobs.content")
        .clone();
    let n = v["usage"]["completion_tokens"].as_u64().unwrap() as usize;
    let eog = v["choices"][0]["finish_reason"] == "stop";
    assert_eq!(content.len(), if eog { n - 1 } else { n });
    let first = &content[0];
    let want = logits[order[0]] as f64 - lse;
    assert!(
        (first["logprob"].as_f64().unwrap() - want).abs() < 1e-4,
        "{first} vs {want}"
    );
    let top = first["top_logprobs"].as_array().unwrap();
    assert_eq!(top.len(), 3);
    for (k, t) in top.iter().enumerate() {
        let id = order[k] as u32;
        let want = logits[order[k]] as f64 - lse;
        assert!(
            (t["logprob"].as_f64().unwrap() - want).abs() < 1e-4,
            "{t} vs {want}"
        );
        let bytes: Vec<u8> = t["bytes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_u64().unwrap() as u8)
            .collect();
        assert_eq!(bytes, model.tokenizer.token_bytes(id));
    }
    // Greedy: each chosen token is its top alternative; the tokens' bytes make the text.
    let mut all = Vec::new();
    for c in &content {
        assert_eq!(c["logprob"], c["top_logprobs"][0]["logprob"], "{c}");
        assert_eq!(c["token"], c["top_logprobs"][0]["token"]);
        assert!(c["logprob"].as_f64().unwrap() <= 0.0);
        all.extend(
            c["bytes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b.as_u64().unwrap() as u8),
        );
    }
    assert_eq!(
        String::from_utf8(all).unwrap(),
        v["choices"][0]["message"]["content"].as_str().unwrap()
    );

    // Completions: logprobs = k.
    let body = json!({"prompt": "The capital of France is", "max_tokens": 6, "temperature": 0, "logprobs": 2});
    let v = post(srv.addr, "/v1/completions", &body).await.json();
    let lp = &v["choices"][0]["logprobs"];
    let tokens = lp["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 6);
    assert_eq!(lp["token_logprobs"].as_array().unwrap().len(), 6);
    let tops = lp["top_logprobs"].as_array().unwrap();
    assert!(tops.iter().all(|t| t.as_object().unwrap().len() == 2));
    let offsets: Vec<u64> = lp["text_offset"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_u64().unwrap())
        .collect();
    assert_eq!(offsets[0], 0);
    assert!(offsets.windows(2).all(|w| w[0] <= w[1]));
    let joined: String = tokens.iter().map(|t| t.as_str().unwrap()).collect();
    assert_eq!(joined, v["choices"][0]["text"].as_str().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_4xx_json_errors() {
    let srv = start(Options {
        ctx: 64,
        body_limit: 8192,
        ..opts()
    })
    .await;
    let a = srv.addr;
    let raw = |path: &'static str, body: Vec<u8>| async move {
        request(a, "POST", path, &[], &body).await
    };

    assert_error(
        &raw("/v1/completions", b"{\"prompt\": ".to_vec()).await,
        400,
    );
    assert_error(
        &raw("/v1/chat/completions", b"not json".to_vec()).await,
        400,
    );
    assert_error(
        &raw(
            "/v1/completions",
            b"{\"prompt\":\"hi\",\"max_tokens\":\"ten\"}".to_vec(),
        )
        .await,
        400,
    );
    assert_error(
        &raw("/v1/chat/completions", b"{\"messages\":\"hi\"}".to_vec()).await,
        400,
    );
    let e = assert_error(
        &raw("/v1/completions", b"{\"prompt\":\"\xff\xfe\"}".to_vec()).await,
        400,
    );
    assert!(
        e["error"]["message"].as_str().unwrap().contains("UTF-8"),
        "{e}"
    );
    let e = assert_error(
        &post(a, "/v1/chat/completions", &json!({"messages": []})).await,
        400,
    );
    assert_eq!(e["error"]["param"], "messages");
    let e = assert_error(
        &post(a, "/v1/completions", &json!({"max_tokens": 3})).await,
        400,
    );
    assert_eq!(e["error"]["param"], "prompt");
    let long = "word ".repeat(200);
    let e = assert_error(
        &post(a, "/v1/completions", &json!({"prompt": long})).await,
        400,
    );
    assert_eq!(e["error"]["code"], "context_length_exceeded");
    assert_eq!(e["error"]["param"], "prompt");
    let msgs = json!({"messages": [{"role": "user", "content": long}]});
    let e = assert_error(&post(a, "/v1/chat/completions", &msgs).await, 400);
    assert_eq!(e["error"]["code"], "context_length_exceeded");
    assert_eq!(e["error"]["param"], "messages");
    let e = assert_error(
        &post(
            a,
            "/v1/completions",
            &json!({"prompt": "hi", "temperature": 5}),
        )
        .await,
        400,
    );
    assert_eq!(e["error"]["param"], "temperature");
    assert_error(
        &post(
            a,
            "/v1/completions",
            &json!({"prompt": "hi", "max_tokens": 0}),
        )
        .await,
        400,
    );
    assert_error(
        &post(a, "/v1/completions", &json!({"prompt": "hi", "n": 2})).await,
        400,
    );
    assert_error(
        &post(
            a,
            "/v1/completions",
            &json!({"prompt": "hi", "logprobs": 99}),
        )
        .await,
        400,
    );
    assert_error(
        &post(
            a,
            "/v1/chat/completions",
            &json!({"messages": [{"role": "user", "content": "hi"}], "top_logprobs": 2}),
        )
        .await,
        400,
    );
    assert_error(&raw("/v1/completions", vec![b' '; 10_000]).await, 413);
    assert_error(&get(a, "/v1/nothing-here").await, 404);
    assert_error(&post(a, "/v1/classify", &json!({"input": "hi"})).await, 404);
    assert_error(&post(a, "/v1/embeddings", &json!({"input": []})).await, 400);
    assert_error(&post(a, "/v1/embeddings", &json!({"input": 5})).await, 400);
    assert_error(
        &post(
            a,
            "/v1/embeddings",
            &json!({"input": "hi", "encoding_format": "hex"}),
        )
        .await,
        400,
    );
    let e = assert_error(
        &post(a, "/v1/embeddings", &json!({"input": "word ".repeat(600)})).await,
        400,
    );
    assert_eq!(e["error"]["code"], "context_length_exceeded", "{e}");

    // An absurd max_tokens is clamped to the context left after the prompt.
    let v = post(a, "/v1/completions", &json!({"prompt": "Once upon a time", "max_tokens": 1_000_000_000_000u64, "temperature": 0})).await;
    assert_eq!(v.status, 200, "{}", v.text());
    let u = &v.json()["usage"];
    assert!(u["total_tokens"].as_u64().unwrap() <= 64, "{u}");

    // The server is still fine.
    let h = health(a).await;
    assert_eq!(h["status"], "ok");
    assert_eq!(h["busy"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_is_required_on_v1_only() {
    let srv = start(Options {
        api_key: Some("sekrit".into()),
        ..opts()
    })
    .await;
    let a = srv.addr;
    assert_error(&get(a, "/v1/models").await, 401);
    let e = assert_error(
        &request(
            a,
            "GET",
            "/v1/models",
            &[("Authorization", "Bearer nope")],
            b"",
        )
        .await,
        401,
    );
    assert_eq!(e["error"]["code"], "invalid_api_key");
    let body = json!({"prompt": "hi", "max_tokens": 2}).to_string();
    assert_error(
        &request(a, "POST", "/v1/completions", &[], body.as_bytes()).await,
        401,
    );
    let ok = request(
        a,
        "GET",
        "/v1/models",
        &[("Authorization", "Bearer sekrit")],
        b"",
    )
    .await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.json()["data"][0]["id"], "smollm2");
    let ok = request(
        a,
        "POST",
        "/v1/completions",
        &[("Authorization", "Bearer sekrit")],
        body.as_bytes(),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(get(a, "/health").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_503_while_loading_then_ok() {
    let srv = start_with(opts(), false, None).await;
    let r = get(srv.addr, "/health").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json(), json!({"status": "loading"}));
    let e = assert_error(
        &post(srv.addr, "/v1/completions", &json!({"prompt": "hi"})).await,
        503,
    );
    assert_eq!(e["error"]["code"], "model_loading");
    srv.state
        .install(engine(), model(), Some(classifier()))
        .unwrap();
    let r = get(srv.addr, "/health").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({"status": "ok", "slots": 4, "busy": 0, "queued": 0})
    );

    // The classifier: labels and probabilities, one per input, as the library gives them.
    let clf = classifier();
    let texts = [
        "WINNER!! Claim your free prize now, call 0800 123",
        "see you at lunch tomorrow?",
    ];
    let v = post(srv.addr, "/v1/classify", &json!({"input": texts}))
        .await
        .json();
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    for (d, t) in data.iter().zip(texts) {
        let want = clf.classify(&engine(), t).unwrap();
        assert_eq!(d["label_index"], want.label);
        assert_eq!(d["label"], clf.labels[want.label].as_str());
        let probs: Vec<f64> = d["probabilities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_f64().unwrap())
            .collect();
        assert_eq!(probs.len(), clf.labels.len());
        for (p, w) in probs.iter().zip(&want.probs) {
            assert!((p - *w as f64).abs() < 1e-6);
        }
    }
    assert_ne!(data[0]["label"], data[1]["label"], "spam vs ham: {v}");
    let single = post(srv.addr, "/v1/classify", &json!({"input": texts[1]}))
        .await
        .json();
    assert_eq!(single["data"][0]["label"], data[1]["label"]);
    assert_error(
        &post(srv.addr, "/v1/classify", &json!({"input": []})).await,
        400,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_answers_503_and_a_disconnect_frees_the_slot() {
    let srv = start(Options {
        slots: 1,
        queue: 1,
        ..opts()
    })
    .await;
    let a = srv.addr;
    // A: a long streamed generation holding the only slot.
    let long =
        json!({"prompt": "Once upon a time", "max_tokens": 400, "temperature": 0, "stream": true});
    let (conn_a, _) = stream_partially(a, "/v1/completions", &long, 2).await;
    wait_health(a, 60, |h| h["busy"] == 1).await;
    // B waits in the queue.
    let b = tokio::spawn(async move {
        post(
            a,
            "/v1/completions",
            &json!({"prompt": "Hello", "max_tokens": 4, "temperature": 0}),
        )
        .await
    });
    wait_health(a, 60, |h| h["queued"] == 1).await;
    // C finds the queue full.
    let e = assert_error(
        &post(
            a,
            "/v1/completions",
            &json!({"prompt": "Hi", "max_tokens": 2}),
        )
        .await,
        503,
    );
    assert_eq!(e["error"]["code"], "queue_full");
    // A goes away: its generation is cancelled, B runs.
    drop(conn_a);
    let rb = b.await.unwrap();
    assert_eq!(rb.status, 200, "{}", rb.text());
    assert!(rb.json()["usage"]["completion_tokens"].as_u64().unwrap() <= 4);
    let h = wait_health(a, 30, |h| h["busy"] == 0 && h["queued"] == 0).await;
    assert_eq!(h["slots"], 1);
    // A was cancelled (it did not run its 400 tokens to the end).
    assert_eq!(srv.state.stats().cancelled, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_seeded_clients_get_what_they_get_alone() {
    let srv = start(Options {
        slots: 4,
        queue: 32,
        ..opts()
    })
    .await;
    let a = srv.addr;
    let prompts = [
        "The capital of France is",
        "My favourite food is",
        "Rust is a language that",
        "In the morning I",
    ];
    let reqs: Vec<Value> = (0..8)
        .map(|i| {
            if i % 2 == 0 {
                json!({"prompt": prompts[i / 2], "max_tokens": 20, "temperature": 0.9, "seed": 1000 + i})
            } else {
                json!({"messages": [{"role": "user", "content": prompts[i / 2]}], "max_tokens": 20, "temperature": 0.9, "top_p": 0.9, "seed": 1000 + i})
            }
        })
        .collect();
    let path = |r: &Value| {
        if r.get("messages").is_some() {
            "/v1/chat/completions"
        } else {
            "/v1/completions"
        }
    };
    let answer = |v: &Value| -> (String, Value) {
        let c = &v["choices"][0];
        let text = c["text"]
            .as_str()
            .or(c["message"]["content"].as_str())
            .unwrap()
            .to_string();
        (text, v["usage"].clone())
    };
    // Alone, one after another.
    let mut alone = Vec::new();
    for r in &reqs {
        let resp = post(a, path(r), r).await;
        assert_eq!(resp.status, 200, "{}", resp.text());
        alone.push(answer(&resp.json()));
    }
    // Different seeds give different texts (so equality below means something).
    assert_ne!(
        alone[0].0,
        post(
            a,
            "/v1/completions",
            &json!({"prompt": prompts[0], "max_tokens": 20, "temperature": 0.9, "seed": 7})
        )
        .await
        .json()["choices"][0]["text"]
            .as_str()
            .unwrap()
    );

    // All at once, with four more clients that disconnect after their first pieces.
    let mut tasks = Vec::new();
    for r in reqs.clone() {
        let p = path(&r);
        tasks.push(tokio::spawn(async move { post(a, p, &r).await }));
    }
    let mut quitters = Vec::new();
    for i in 0..4 {
        let body = json!({"prompt": format!("Story number {i}: once upon a time"), "max_tokens": 300, "temperature": 0.9, "seed": i, "stream": true});
        quitters.push(tokio::spawn(async move {
            let (conn, seen) = stream_partially(a, "/v1/completions", &body, 3).await;
            drop(conn);
            seen
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let resp = t.await.unwrap();
        assert_eq!(resp.status, 200, "{}", resp.text());
        assert_eq!(answer(&resp.json()), alone[i], "request {i}");
    }
    for q in quitters {
        assert!(q.await.unwrap().contains("text_completion"));
    }
    let h = wait_health(a, 60, |h| h["busy"] == 0 && h["queued"] == 0).await;
    assert_eq!(
        h,
        json!({"status": "ok", "slots": 4, "busy": 0, "queued": 0})
    );
    // The four that went away were cancelled, not run to their 300 tokens.
    assert_eq!(srv.state.stats().cancelled, 4);
    // The slots are usable again and still give the same tokens.
    let again = post(a, path(&reqs[3]), &reqs[3]).await.json();
    assert_eq!(answer(&again), alone[3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_plain_request_is_cancelled_too() {
    use tokio::io::AsyncWriteExt;
    let srv = start(Options { slots: 2, ..opts() }).await;
    let a = srv.addr;
    let body =
        json!({"prompt": "Once upon a time", "max_tokens": 400, "temperature": 0}).to_string();
    let mut s = tokio::net::TcpStream::connect(a).await.unwrap();
    let req = format!(
        "POST /v1/completions HTTP/1.0\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    wait_health(a, 60, |h| h["busy"] == 1).await;
    drop(s);
    wait_health(a, 60, |h| h["busy"] == 0).await;
    assert_eq!(srv.state.stats().cancelled, 1);
    // The other slot and this one still answer.
    let r = post(
        a,
        "/v1/completions",
        &json!({"prompt": "Hello", "max_tokens": 3}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_prompt_runs_in_chunks_beside_a_stream_and_equals_the_generator() {
    let srv = start(opts()).await;
    let a = srv.addr;
    let prompt = "The quick brown fox jumps over the lazy dog. ".repeat(30) + "The dog";
    let n = model().tokenizer.encode(&prompt, true).unwrap().len();
    assert!(
        n > 2 * edgeinfer_server::scheduler::PREFILL_CHUNK && n + 16 < CTX,
        "{n} tokens"
    );
    let (text, generated, _, stop) = greedy(&prompt, 16, &[]);

    // A stream is generating when the long prompt arrives.
    let s =
        json!({"prompt": "Once upon a time", "max_tokens": 60, "temperature": 0, "stream": true});
    let stream = tokio::spawn(async move {
        request(a, "POST", "/v1/completions", &[], s.to_string().as_bytes()).await
    });
    wait_health(a, 60, |h| h["busy"] == 1).await;
    let body = json!({"prompt": prompt, "max_tokens": 16, "temperature": 0});
    for _ in 0..2 {
        // The second time, a slot holds the prompt already: only its last token runs.
        let v = post(a, "/v1/completions", &body).await.json();
        assert_eq!(v["choices"][0]["text"], text.as_str());
        assert_eq!(v["choices"][0]["finish_reason"], finish_of(&stop));
        assert_eq!(v["usage"]["prompt_tokens"], n);
        assert_eq!(v["usage"]["completion_tokens"], generated.len());
    }
    let (alone, ..) = greedy("Once upon a time", 60, &[]);
    let cs = chunks(&stream.await.unwrap());
    let joined: String = cs
        .iter()
        .map(|c| c["choices"][0]["text"].as_str().unwrap())
        .collect();
    assert_eq!(joined, alone);
}

/// `/v1/embeddings`: the library's `Session::embed` of each input's tokens (the same f32
/// values, as floats and as base64 little-endian bytes), in order, with token usage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_equal_the_library() {
    use base64::prelude::{Engine as _, BASE64_STANDARD};
    let srv = start(opts()).await;
    let a = srv.addr;
    let texts = [
        "The cat sat on the mat.",
        "Stock markets fell sharply today.",
    ];
    let model = model();
    let mut session = Session::new(&engine(), model.clone(), CTX);
    let mut want = Vec::new();
    let mut tokens = 0;
    for t in texts {
        let ids = model.tokenizer.encode(t, true).unwrap();
        tokens += ids.len();
        want.push(session.embed(&ids).unwrap());
    }
    let v = post(a, "/v1/embeddings", &json!({"input": texts})).await;
    assert_eq!(v.status, 200, "{}", v.text());
    let v = v.json();
    assert_eq!(v["object"], "list");
    assert_eq!(v["usage"]["prompt_tokens"], tokens);
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    for (i, (d, w)) in data.iter().zip(&want).enumerate() {
        assert_eq!(d["index"], i);
        let got: Vec<f32> = d["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(&got, w, "input {i}");
        assert_eq!(got.len(), model.config.d_model);
    }
    assert_ne!(want[0], want[1]);
    let b = post(
        a,
        "/v1/embeddings",
        &json!({"input": texts[1], "encoding_format": "base64"}),
    )
    .await
    .json();
    let bytes = BASE64_STANDARD
        .decode(b["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let got: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(got, want[1]);
}

/// `ignore_eos` (llama.cpp's extension, for load tests): exactly `max_tokens` tokens even
/// where greedy decoding would end early.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignore_eos_generates_exactly_max_tokens() {
    let srv = start(opts()).await;
    let a = srv.addr;
    let prompt = chat_prompt("Say yes.");
    let (_, ids, _, stop) = greedy(&prompt, 200, &[]);
    assert_eq!(
        stop,
        StopReason::EndOfGeneration,
        "the test needs an early end"
    );
    let n = ids.len() + 20;
    let v = post(
        a,
        "/v1/completions",
        &json!({"prompt": prompt, "max_tokens": n, "temperature": 0, "ignore_eos": true}),
    )
    .await
    .json();
    assert_eq!(v["usage"]["completion_tokens"], n, "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
}
