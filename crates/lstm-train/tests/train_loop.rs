//! The training loop on a small synthetic task: it learns it, and a run is bit-reproducible
//! for a seed whatever the thread count.

use std::sync::Arc;

use edgeinfer_gguf::GgufFile;
use edgeinfer_lstm::{Engine, LstmClassifier};
use edgeinfer_lstm_train::{
    train, train_tokenizer, Example, PretrainedEmbeddings, Rng, TokenizerOptions, TrainOptions,
};
use edgeinfer_tensor::DType;

/// The engine validation runs on.
fn engine() -> Engine {
    Engine::builder().threads(2).build().unwrap()
}

/// Texts of filler words where the label is whether "great" or "awful" occurs (at a random
/// position, so the model must carry it through the recurrence).
fn task(n: usize, seed: u64) -> Vec<Example> {
    let filler = [
        "the", "film", "was", "a", "plot", "and", "with", "actors", "scene", "it",
    ];
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|i| {
            let len = 3 + rng.below(12);
            let mut words: Vec<&str> = (0..len).map(|_| filler[rng.below(filler.len())]).collect();
            let (cue, label) = if i % 2 == 0 {
                ("great", "pos")
            } else {
                ("awful", "neg")
            };
            let at = rng.below(len + 1);
            words.insert(at, cue);
            Example {
                text: words.join(" "),
                label: label.into(),
            }
        })
        .collect()
}

fn opts() -> TrainOptions {
    TrainOptions {
        embed_dim: 16,
        hidden_size: 16,
        vocab_size: 100,
        min_frequency: 1,
        epochs: 4,
        batch_size: 16,
        lr: 1e-2,
        dropout: 0.1,
        patience: 4,
        ..TrainOptions::default()
    }
}

#[test]
fn learns_a_cue_anywhere_in_the_text_and_is_reproducible() {
    let (tr, va) = (task(400, 1), task(100, 2));
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let engine = Engine::builder().threads(threads).build().unwrap();
        pool.install(|| train(&engine, &tr, &va, &opts(), &mut |_| {}).unwrap())
    };
    let a = run(1);
    assert!(
        a.valid_accuracy >= 0.97,
        "valid accuracy {}",
        a.valid_accuracy
    );
    let losses: Vec<f32> = a.history.iter().map(|h| h.0).collect();
    assert!(losses.last() < losses.first(), "{losses:?}");
    let b = run(2);
    assert_eq!(
        a.to_gguf(DType::F32).unwrap(),
        b.to_gguf(DType::F32).unwrap()
    );
}

#[test]
fn bad_training_sets_are_errors() {
    let one_label: Vec<Example> = task(10, 3)
        .into_iter()
        .filter(|e| e.label == "pos")
        .collect();
    let err = train(&engine(), &one_label, &task(10, 4), &opts(), &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("two or more classes"), "{err}");
    let mut odd = task(10, 5);
    odd[0].label = "maybe".into();
    let err = train(&engine(), &task(10, 6), &odd, &opts(), &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("\"maybe\""), "{err}");
    let err = train(&engine(), &[], &task(10, 7), &opts(), &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
    for fraction in [-0.1, 1.5, f64::NAN] {
        let o = TrainOptions {
            crop_min: 8,
            crop_fraction: fraction,
            ..opts()
        };
        let err = train(&engine(), &task(10, 8), &task(10, 9), &o, &mut |_| {}).unwrap_err();
        assert!(
            err.to_string().contains("crop fraction"),
            "{fraction}: {err}"
        );
    }
}

/// A frozen table of random token vectors with a tokenizer made elsewhere: the projection is
/// enough to learn the cue, and the written file carries that tokenizer, whole.
#[test]
fn learns_through_a_frozen_pretrained_table() {
    let (tr, va) = (task(400, 1), task(100, 2));
    let texts: Vec<&str> = tr.iter().map(|e| e.text.as_str()).collect();
    let tok = train_tokenizer(
        &texts,
        &TokenizerOptions {
            vocab_size: 100,
            min_frequency: 1,
        },
    )
    .unwrap();
    let vocab = tok.get_vocab_size(true);
    let dim = 24;
    let mut rng = Rng::new(3);
    let pre = PretrainedEmbeddings {
        tokenizer_json: tok.to_string(false).unwrap(),
        dim,
        table: (0..vocab * dim)
            .map(|_| (rng.normal() * 0.02) as f32)
            .collect(),
    };
    let o = TrainOptions {
        pretrained: Some(Arc::new(pre.clone())),
        ..opts()
    };
    let t = train(&engine(), &tr, &va, &o, &mut |_| {}).unwrap();
    assert!(
        t.valid_accuracy >= 0.97,
        "valid accuracy {}",
        t.valid_accuracy
    );
    assert_eq!(t.tokenizer_json, pre.tokenizer_json);
    assert_eq!(t.weights.embedding.len(), vocab * 16);
    let file = GgufFile::from_bytes(t.to_gguf(DType::F32).unwrap()).unwrap();
    let model = LstmClassifier::from_file(Arc::new(file)).unwrap();
    assert_eq!(model.tokenizer().unwrap().get_vocab_size(true), vocab);

    // A table that does not fit the tokenizer is an error saying so.
    let short = PretrainedEmbeddings {
        table: pre.table[..(vocab - 1) * dim].to_vec(),
        ..pre
    };
    let o = TrainOptions {
        pretrained: Some(Arc::new(short)),
        ..opts()
    };
    let err = train(&engine(), &tr, &va, &o, &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("table"), "{err}");
}
