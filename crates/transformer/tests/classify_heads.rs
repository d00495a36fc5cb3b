//! The decoder as a classifier, on the tiny llama / qwen2 / gemma3 models of
//! `fixtures/decoder/`: few-shot prompts whose shared prefix stays cached between texts (and
//! scores what a fresh session scores), and the linear probe (file round trip, int8 head
//! against its f32 weights, the checks on bad files).

use std::path::PathBuf;
use std::sync::Arc;

use edgeinfer_gguf::{GgufFile, GgufWriter, Value};
use edgeinfer_kernels::WeightError;
use edgeinfer_transformer::{Engine, Model, Probe, Session, TransformerError, ZeroShot};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/decoder")
        .join(name)
}

const MODELS: [&str; 3] = ["llama-q8_0.gguf", "qwen2-q8_0.gguf", "gemma3-q8_0.gguf"];

fn engine() -> Engine {
    Engine::builder().threads(2).build().expect("engine")
}

fn labels() -> Vec<String> {
    vec!["a".into(), "b".into()]
}

#[test]
fn few_shot_reuses_the_cached_prefix_and_scores_as_a_fresh_session() {
    let engine = engine();
    for name in MODELS {
        let model = Arc::new(Model::load(fixture(name)).expect("tiny model"));
        let zs = ZeroShot::new(model.clone(), &labels(), "T")
            .unwrap()
            .with_examples(&[("x", 0), ("z", 1)], 4)
            .unwrap();
        assert_eq!(zs.n_examples(), 2);
        let (pa, pb) = (zs.prompt("hi").unwrap(), zs.prompt("yo").unwrap());
        assert!(
            pa.len() < 126 && pb.len() < 126,
            "{name}: prompts fit the context: {} {}",
            pa.len(),
            pb.len()
        );
        let common = pa.iter().zip(&pb).take_while(|(a, b)| a == b).count();
        assert!(
            common > 10,
            "{name}: the examples form a shared prefix ({common})"
        );

        // A fresh session scores "yo" from scratch.
        let mut fresh = Session::new(&engine, model.clone(), 128).with_full_cache(true);
        let alone = zs.classify(&mut fresh, "yo").unwrap();
        assert_eq!(alone.reused_tokens, 0);
        assert_eq!(alone.prompt_tokens, pb.len());

        // After "hi", the same session runs only what differs.
        let mut s = Session::new(&engine, model.clone(), 128).with_full_cache(true);
        zs.classify(&mut s, "hi").unwrap();
        let after = zs.classify(&mut s, "yo").unwrap();
        assert_eq!(after.reused_tokens, common, "{name}");
        assert_eq!(after.label, alone.label, "{name}");
        for (x, y) in after.log_probs.iter().zip(&alone.log_probs) {
            assert!((x - y).abs() < 1e-3 * (1.0 + y.abs()), "{name}: {x} vs {y}");
        }
        // The same text again: everything but the last token is reused.
        let again = zs.classify(&mut s, "yo").unwrap();
        assert_eq!(again.reused_tokens, pb.len() - 1, "{name}");
        assert_eq!(again.log_probs, after.log_probs, "{name}");

        // Zero-shot prompts differ from few-shot ones; examples with a bad label are refused.
        let zero = ZeroShot::new(model.clone(), &labels(), "T").unwrap();
        assert_ne!(zero.prompt("yo").unwrap(), pb);
        let e = ZeroShot::new(model, &labels(), "T")
            .unwrap()
            .with_examples(&[("xy", 2)], 4)
            .unwrap_err();
        assert!(e.to_string().contains("label index 2"), "{e}");
    }
}

/// Calibrated to a prior on a sample, the classifier picks each label for its share of that
/// sample; a prior that does not fit the labels, or no sample, is refused.
#[test]
fn calibrated_to_a_prior_each_label_takes_its_share_of_the_sample() {
    let engine = engine();
    let sample: Vec<String> = (0..20).map(|i| format!("text {i} {}", i * i)).collect();
    let sample: Vec<&str> = sample.iter().map(String::as_str).collect();
    for name in MODELS {
        let model = Arc::new(Model::load(fixture(name)).expect("tiny model"));
        let mut s = Session::new(&engine, model.clone(), 128);
        let mut zs = ZeroShot::new(model.clone(), &labels(), "T").unwrap();
        for (prior, want) in [([3.0, 1.0], [15, 5]), ([1.0, 4.0], [4, 16])] {
            zs.calibrate_to_prior(&mut s, &sample, &prior).unwrap();
            let mut got = [0; 2];
            for t in &sample {
                got[zs.classify(&mut s, t).unwrap().label] += 1;
            }
            assert_eq!(got, want, "{name}: prior {prior:?}");
            assert_eq!(zs.baseline().unwrap()[0], 0.0);
        }
        for (bad, says) in [
            (vec![1.0], "a prior of 1 shares for 2 labels"),
            (vec![1.0, 0.0], "label \"b\" is 0"),
            (vec![-1.0, 1.0], "label \"a\" is -1"),
            (vec![f64::NAN, 1.0], "is NaN"),
            (vec![1.0, f64::INFINITY], "is inf"),
        ] {
            let e = zs.calibrate_to_prior(&mut s, &sample, &bad).unwrap_err();
            assert!(e.to_string().contains(says), "{name}: {bad:?}: {e}");
        }
        let e = zs.calibrate_to_prior(&mut s, &[], &[1.0, 1.0]).unwrap_err();
        assert!(e.to_string().contains("needs a sample"), "{name}: {e}");
    }
}

#[test]
fn probe_round_trips_and_its_int8_head_follows_its_weights() {
    let engine = engine();
    for name in MODELS {
        let model = Arc::new(Model::load(fixture(name)).expect("tiny model"));
        let d = model.config.d_model;
        let classes = 3;
        let w: Vec<f32> = (0..classes * d)
            .map(|i| ((i * 37 % 101) as f32 / 101.0 - 0.5) * 4.0)
            .collect();
        let b = vec![0.1, -0.2, 0.05];
        let names: Vec<String> = ["x", "y", "z"].iter().map(|s| s.to_string()).collect();
        let probe = Probe::new(names.clone(), &w, b.clone(), name, "00ff", 16).unwrap();
        let bytes = probe.to_gguf().unwrap();
        let back = Probe::from_file(&GgufFile::from_bytes(bytes).unwrap()).unwrap();
        assert_eq!(back.labels, names);
        assert_eq!(back.decoder_name, name);
        assert_eq!(back.decoder_sha256, "00ff");
        assert_eq!(back.max_text_tokens, 16);
        assert_eq!(back.dim(), d);
        assert_eq!(back.weights_f32(), probe.weights_f32());
        assert_eq!(back.bias(), &b[..]);
        // Q8_0 weights: within half a quantization step of the f32 ones.
        let wq = probe.weights_f32();
        for (block, qblock) in w.chunks(32).zip(wq.chunks(32)) {
            let amax = block.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            for (a, q) in block.iter().zip(qblock) {
                // Half a step, plus the f16 rounding of the block scale.
                assert!((a - q).abs() <= amax / 127.0 * 0.5 + amax * 1e-3);
            }
        }

        let mut s = Session::new(&engine, model.clone(), 128);
        let text = "hello tiny world";
        let r = back.classify(&mut s, text).unwrap();
        let (x, n) = Probe::features(&mut s, text, 16).unwrap();
        assert_eq!(n, r.n_tokens);
        assert!(n <= 16);
        let norm: f32 = x.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!(
            (norm - 1.0).abs() < 1e-4,
            "features are unit length: {norm}"
        );
        // The int8 head against the dequantized weights in f64.
        let logits: Vec<f64> = (0..classes)
            .map(|c| {
                f64::from(b[c])
                    + wq[c * d..(c + 1) * d]
                        .iter()
                        .zip(&x)
                        .map(|(w, x)| f64::from(*w) * f64::from(*x))
                        .sum::<f64>()
            })
            .collect();
        let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
        let sum: f64 = e.iter().sum();
        for (p, q) in r.probs.iter().zip(&e) {
            assert!(
                (f64::from(*p) - q / sum).abs() < 0.02,
                "{name}: {:?} vs {e:?}",
                r.probs
            );
        }
        let sum: f32 = r.probs.iter().sum();
        assert!((sum - 1.0).abs() < 1e-5);
    }
}

#[test]
fn bad_probes_are_refused_with_the_reason() {
    let model = Arc::new(Model::load(fixture("llama-q8_0.gguf")).unwrap());
    let d = model.config.d_model;
    let one: Vec<String> = vec!["only".into()];
    assert!(Probe::new(one, &vec![0.0; d], vec![0.0], "m", "", 8).is_err());
    let two: Vec<String> = vec!["p".into(), "q".into()];
    assert!(Probe::new(two.clone(), &vec![0.0; 2 * d], vec![0.0], "m", "", 8).is_err());
    let mut nan = vec![0.0; 2 * d];
    nan[3] = f32::NAN;
    assert!(Probe::new(two.clone(), &nan, vec![0.0; 2], "m", "", 8).is_err());

    // A probe for a wider decoder.
    let wide = Probe::new(
        two.clone(),
        &vec![0.5; 2 * (d + 32)],
        vec![0.0; 2],
        "big",
        "ab",
        8,
    )
    .unwrap();
    let mut s = Session::new(&engine(), model, 128);
    let e = wide.classify(&mut s, "hi").unwrap_err();
    assert!(e.to_string().contains("trained on big"), "{e}");

    // Not a probe file; a probe file whose labels disagree with its weights.
    let not = GgufFile::open(fixture("llama-q8_0.gguf")).unwrap();
    let e = Probe::from_file(&not).unwrap_err();
    assert!(e.to_string().contains("not a probe file"), "{e}");
    let ok = Probe::new(two, &vec![0.25; 2 * d], vec![0.0; 2], "m", "s", 8).unwrap();
    let file = GgufFile::from_bytes(ok.to_gguf().unwrap()).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in file.metadata().iter() {
        let v = if k == "probe.labels" {
            Value::Array(
                edgeinfer_gguf::ValueType::String,
                ["p", "q", "r"]
                    .iter()
                    .map(|s| Value::String(s.to_string()))
                    .collect(),
            )
        } else {
            v.clone()
        };
        w.add_metadata(k, v).unwrap();
    }
    for info in file.tensor_infos() {
        w.add_tensor(&info.name, file.view(info).unwrap()).unwrap();
    }
    let e = Probe::from_file(&GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap()).unwrap_err();
    assert!(
        matches!(&e, TransformerError::Weight(WeightError::TensorShape { name, .. }) if name == "probe.weight"),
        "{e}"
    );
}
