//! The LSTM classifier against hand-written maths and an independent NumPy implementation.

use std::sync::{Arc, OnceLock};

use edgeinfer_gguf::GgufFile;
use edgeinfer_lstm::{
    Engine, Level, LstmClassifier, LstmConfig, LstmError, LstmWeights, WeightError,
};
use edgeinfer_tensor::DType;

/// The engine under test: two threads, the best kernel level capped by `EDGEINFER_KERNELS`
/// (`scripts/test.sh` runs these tests at the best level, at AVX2 and scalar; the library
/// itself reads no environment).
fn engine() -> &'static Engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| {
        let cap = std::env::var("EDGEINFER_KERNELS").ok();
        let level = Level::best_up_to_named(cap.as_deref());
        Engine::builder().threads(2).level(level).build().unwrap()
    })
}

fn fixture() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/lstm/tiny.gguf")
}

fn from_weights(w: &LstmWeights, dtype: DType) -> LstmClassifier {
    let labels: Vec<String> = (0..w.config.num_classes).map(|i| format!("c{i}")).collect();
    let bytes = w.to_gguf(dtype, &labels, "").unwrap();
    let file = GgufFile::from_bytes(bytes).unwrap();
    // An empty tokenizer string is not a tokenizer: drop it so the file loads without one.
    let mut file = file;
    file.metadata_mut().remove("tokenizer.huggingface.json");
    LstmClassifier::from_file(Arc::new(file)).unwrap()
}

fn set(f: &mut GgufFile, key: String, v: edgeinfer_gguf::Value) {
    f.metadata_mut().remove(&key);
    f.metadata_mut().insert(key, v);
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// One unit, one input, two steps, worked by hand:
///   z = w_ih·x + b_ih + w_hh·h + b_hh per gate (i, f, g, o)
///   c' = σ(z_f)·c + σ(z_i)·tanh(z_g);  h' = σ(z_o)·tanh(c');  logits = W_fc·h + b_fc
#[test]
fn one_unit_two_steps_by_hand() {
    let config = LstmConfig {
        vocab_size: 2,
        embed_dim: 1,
        hidden_size: 1,
        num_layers: 1,
        bidirectional: false,
        num_classes: 2,
        max_tokens: 0,
        keep: Default::default(),
    };
    let mut w = LstmWeights::zeros(&config);
    w.embedding = vec![0.5, -1.0];
    let (wi, wh) = ([0.6, -0.4, 1.2, 0.9], [0.3, 0.8, -0.7, 0.2]);
    let (bi, bh) = ([0.1, 0.5, 0.0, -0.2], [0.05, 0.0, 0.1, 0.0]);
    w.layers[0][0] = edgeinfer_lstm::DirectionWeights {
        w_ih: wi.to_vec(),
        w_hh: wh.to_vec(),
        b_ih: bi.to_vec(),
        b_hh: bh.to_vec(),
    };
    w.fc_w = vec![2.0, -3.0];
    w.fc_b = vec![0.25, -0.5];
    let model = from_weights(&w, DType::F32);

    // Tokens [0, 1]: x1 = 0.5, x2 = -1.0.
    let (mut h, mut c) = (0.0f64, 0.0f64);
    for x in [0.5f64, -1.0] {
        let z: Vec<f64> = (0..4)
            .map(|g| {
                f64::from(wi[g]) * x + f64::from(bi[g]) + f64::from(wh[g]) * h + f64::from(bh[g])
            })
            .collect();
        c = sigmoid(z[1]) * c + sigmoid(z[0]) * z[2].tanh();
        h = sigmoid(z[3]) * c.tanh();
    }
    // Step 1 by hand: z = (0.45, 0.3, 0.7, 0.25): c1 = σ(.45)·tanh(.7) = 0.6106·0.6044 = 0.3690,
    // h1 = σ(.25)·tanh(.369) = 0.5622·0.3530 = 0.1985.
    let expected = [2.0 * h + 0.25, -3.0 * h - 0.5];
    let got = model.logits_batch(engine(), &[&[0, 1]]).unwrap().remove(0);
    for (g, e) in got.iter().zip(expected) {
        assert!((f64::from(*g) - e).abs() < 1e-6, "{got:?} vs {expected:?}");
    }
    // The hand-computed first step, through the model: logits of the one-token sequence.
    let h1 = 0.198_5f64;
    let got = model.logits_batch(engine(), &[&[0]]).unwrap().remove(0);
    assert!(
        (f64::from(got[0]) - (2.0 * h1 + 0.25)).abs() < 2e-4,
        "{got:?}"
    );
}

fn numpy_cases(file: &GgufFile) -> (Vec<Vec<u32>>, Vec<f32>) {
    let md = file.metadata();
    let flat = md.get_i32_array("test.sequences").unwrap();
    let lens = md.get_i32_array("test.lengths").unwrap();
    let mut seqs = Vec::new();
    let mut at = 0usize;
    for l in lens {
        seqs.push(
            flat[at..at + l as usize]
                .iter()
                .map(|&t| t as u32)
                .collect(),
        );
        at += l as usize;
    }
    (seqs, md.get_f32_array("test.logits").unwrap())
}

#[test]
fn matches_numpy_golden_logits() {
    let file = Arc::new(GgufFile::open(fixture()).unwrap());
    let (seqs, expected) = numpy_cases(&file);
    let model = LstmClassifier::from_file(file).unwrap();
    assert!(model.config.bidirectional && model.config.num_layers == 2);
    let refs: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
    // Batched (unsorted input: the model sorts and groups) and one by one.
    let batched = model.logits_batch(engine(), &refs).unwrap();
    for (i, s) in refs.iter().enumerate() {
        let single = model.logits_batch(engine(), &[s]).unwrap().remove(0);
        let want = &expected[i * 3..(i + 1) * 3];
        for k in 0..3 {
            assert!(
                (batched[i][k] - want[k]).abs() < 2e-5,
                "seq {i}: {:?} vs {want:?}",
                batched[i]
            );
            assert!(
                (single[k] - want[k]).abs() < 2e-5,
                "seq {i}: {single:?} vs {want:?}"
            );
        }
    }
}

fn same_bits(a: &[Vec<f32>], b: &[Vec<f32>]) -> bool {
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .all(|(x, y)| x.to_bits() == y.to_bits())
}

/// One model (an `Arc`) on two engines at once — the scalar level and the best one, from two
/// threads: each engine's logits are its own (the same bits as it gives alone, whatever runs
/// next to it), both within the NumPy tolerance, and on a CPU with a SIMD level not the same
/// bits as each other (each engine really ran its own kernels).
#[test]
fn engines_with_different_levels_side_by_side() {
    let file = Arc::new(GgufFile::open(fixture()).unwrap());
    let (seqs, expected) = numpy_cases(&file);
    let refs: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
    let model = Arc::new(LstmClassifier::from_file(file).unwrap());
    let engines = [Level::Scalar, Level::best()]
        .map(|l| Engine::builder().threads(2).level(l).build().unwrap());
    let alone: Vec<_> = engines
        .iter()
        .map(|e| model.logits_batch(e, &refs).unwrap())
        .collect();
    let together: Vec<Vec<_>> = std::thread::scope(|s| {
        let runs: Vec<_> = engines
            .iter()
            .map(|e| {
                let (model, refs) = (Arc::clone(&model), &refs);
                s.spawn(move || {
                    (0..5)
                        .map(|_| model.logits_batch(e, refs).unwrap())
                        .collect()
                })
            })
            .collect();
        runs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for ((e, a), runs) in engines.iter().zip(&alone).zip(&together) {
        for r in runs {
            assert!(
                same_bits(a, r),
                "{}: changed next to another engine",
                e.level()
            );
        }
        for (got, want) in a.iter().flatten().zip(&expected) {
            assert!((got - want).abs() < 2e-5, "{}: {got} vs {want}", e.level());
        }
    }
    if Level::best() != Level::Scalar {
        assert!(
            !same_bits(&alone[0], &alone[1]),
            "the scalar and {} engines gave the same bits",
            Level::best()
        );
    }
}

#[test]
fn quantized_weights_stay_close_to_f32() {
    let file = GgufFile::open(fixture()).unwrap();
    let (seqs, expected) = numpy_cases(&file);
    let (w, _, _) = LstmWeights::from_file(&file).unwrap();
    let refs: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
    for (dtype, tol) in [(DType::F32, 2e-5), (DType::Q8_0, 0.05), (DType::Q4_0, 0.4)] {
        let model = from_weights(&w, dtype);
        assert_eq!(model.weight_type(), dtype);
        let got = model.logits_batch(engine(), &refs).unwrap();
        let max_err = got
            .iter()
            .flatten()
            .zip(&expected)
            .map(|(g, e)| (g - e).abs())
            .fold(0.0f32, f32::max);
        assert!(
            max_err < tol,
            "{dtype}: max |err| {max_err} (tolerance {tol})"
        );
        // Quantization must change something, or the test checks nothing.
        if dtype != DType::F32 {
            assert!(max_err > 1e-5, "{dtype}: identical to f32");
        }
    }
}

#[test]
fn bad_inputs_are_errors() {
    let file = Arc::new(GgufFile::open(fixture()).unwrap());
    let model = LstmClassifier::from_file(file.clone()).unwrap();
    assert!(matches!(
        model.logits_batch(engine(), &[&[1, 50]]),
        Err(LstmError::TokenOutOfRange { id: 50, vocab: 50 })
    ));
    // No tokenizer in this file: text input is a clear error.
    assert!(matches!(
        model.classify(engine(), "hello"),
        Err(LstmError::Tokenizer { .. })
    ));

    let (w, labels, _) = LstmWeights::from_file(&file).unwrap();
    let bytes = w.to_gguf(DType::F32, &labels, "{}").unwrap();
    let err = LstmClassifier::from_file(Arc::new(GgufFile::from_bytes(bytes).unwrap()));
    assert!(matches!(err, Err(LstmError::Tokenizer { .. })), "{err:?}");

    // Wrong architecture, missing tensor, wrong shape.
    let mut f = GgufFile::open(fixture()).unwrap();
    set(
        &mut f,
        "general.architecture".into(),
        edgeinfer_gguf::Value::String("llama".into()),
    );
    let err = LstmClassifier::from_file(Arc::new(f)).unwrap_err();
    assert!(matches!(err, LstmError::WrongArchitecture { .. }), "{err}");

    let mut small = w.clone();
    small.config.hidden_size = 16;
    assert!(small.to_gguf(DType::F32, &labels, "").is_err());

    let mut f = GgufFile::open(fixture()).unwrap();
    set(
        &mut f,
        "lstm-classifier.hidden_size".into(),
        edgeinfer_gguf::Value::U32(16),
    );
    let err = LstmClassifier::from_file(Arc::new(f)).unwrap_err();
    assert!(
        matches!(&err, LstmError::Weight(WeightError::TensorShape { name, .. }) if name == "lstm.bias_ih_l0"),
        "{err}"
    );
    let mut f = GgufFile::open(fixture()).unwrap();
    set(
        &mut f,
        "lstm-classifier.block_count".into(),
        edgeinfer_gguf::Value::U32(3),
    );
    let err = LstmClassifier::from_file(Arc::new(f)).unwrap_err();
    assert!(
        matches!(&err, LstmError::Weight(WeightError::MissingTensor { name }) if name == "lstm.bias_ih_l2"),
        "{err}"
    );
    let mut f = GgufFile::open(fixture()).unwrap();
    set(
        &mut f,
        "lstm-classifier.hidden_size".into(),
        edgeinfer_gguf::Value::U32(u32::MAX),
    );
    let err = LstmClassifier::from_file(Arc::new(f)).unwrap_err();
    assert!(matches!(err, LstmError::BadConfig { .. }), "{err}");
}
