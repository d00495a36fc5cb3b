//! Batch throughput and single-text latency of the LSTM classifier in f32, Q8_0 and Q4_0
//! (random weights of a realistic size: vocabulary 20,000, E = 64, H = 64, bidirectional).
//! `EDGEINFER_BENCH_QUICK=1` shortens the measurement.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use edgeinfer_gguf::GgufFile;
use edgeinfer_lstm::{Engine, Keep, Level, LstmClassifier, LstmConfig, LstmWeights};
use edgeinfer_tensor::DType;

fn model(dtype: DType, hidden: usize) -> LstmClassifier {
    let config = LstmConfig {
        vocab_size: 20_000,
        embed_dim: 64,
        hidden_size: hidden,
        num_layers: 1,
        bidirectional: true,
        num_classes: 2,
        max_tokens: 0,
        keep: Keep::First,
    };
    let mut w = LstmWeights::zeros(&config);
    let mut s = 1u64;
    let mut fill = |v: &mut Vec<f32>, scale: f32| {
        for x in v.iter_mut() {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            *x = ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * scale;
        }
    };
    fill(&mut w.embedding, 1.0);
    for d in w.layers.iter_mut().flatten() {
        fill(&mut d.w_ih, 0.2);
        fill(&mut d.w_hh, 0.2);
        fill(&mut d.b_ih, 0.1);
    }
    fill(&mut w.fc_w, 0.3);
    let labels = ["a".to_string(), "b".to_string()];
    let mut file = GgufFile::from_bytes(w.to_gguf(dtype, &labels, "").unwrap()).unwrap();
    file.metadata_mut().remove("tokenizer.huggingface.json");
    LstmClassifier::from_file(Arc::new(file)).unwrap()
}

fn bench(c: &mut Criterion) {
    let quick = std::env::var_os("EDGEINFER_BENCH_QUICK").is_some();
    // All cores, the best level capped by EDGEINFER_KERNELS (as the CLI reads it).
    let cap = std::env::var("EDGEINFER_KERNELS").ok();
    let level = Level::best_up_to_named(cap.as_deref());
    let engine = Engine::builder().level(level).build().unwrap();
    let seqs: Vec<Vec<u32>> = (0..256u32)
        .map(|i| {
            (0..32 + (i * 7) % 96)
                .map(|t| (i * 131 + t * 17) % 20_000)
                .collect()
        })
        .collect();
    let refs: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
    let one: Vec<u32> = (0..64u32).map(|t| t * 311 % 20_000).collect();
    let tokens: usize = seqs.iter().map(Vec::len).sum();
    for hidden in [64, 128] {
        let mut g = c.benchmark_group(format!("lstm_h{hidden}"));
        if quick {
            g.sample_size(10)
                .measurement_time(std::time::Duration::from_secs(2))
                .warm_up_time(std::time::Duration::from_millis(300));
        }
        for dtype in [DType::F32, DType::Q8_0, DType::Q4_0] {
            let m = model(dtype, hidden);
            g.throughput(Throughput::Elements(tokens as u64));
            g.bench_function(format!("batch256/{dtype}"), |b| {
                b.iter(|| m.logits_batch(&engine, &refs).unwrap())
            });
            g.throughput(Throughput::Elements(64));
            g.bench_function(format!("single64/{dtype}"), |b| {
                b.iter(|| m.logits_batch(&engine, &[&one[..]]).unwrap())
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
