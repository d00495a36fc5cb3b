//! matvec / matmul at SmolLM2-135M's shapes and one large shape, reporting bytes of weights
//! read per second (criterion's `Throughput::Bytes`). Scalar vs dispatched, 1 and 2 threads.
//! Then the projections of Qwen2.5-0.5B and Gemma 3 270M in their Q4_K_M mixes (Q5_0, Q8_0,
//! Q4_K, Q6_K): decode (`model_matvec`, one token) and prefill (`model_matmul`, 64 and 512
//! tokens), dispatched, 1 and 2 threads.
//!
//! `cargo bench -p edgeinfer-kernels --bench matvec` (EDGEINFER_BENCH_QUICK=1 for a short run;
//! a filter such as `model_matmul/t2` picks cases).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use edgeinfer_kernels::{format, quantize_to_vec, Activations, DType, Kernels, Matrix};

/// (rows, cols) = (out, in)
const SHAPES: &[(usize, usize)] = &[
    (576, 576),
    (192, 576),
    (1536, 576),
    (576, 1536),
    (49152, 576),
    (11008, 4096),
];
const TYPES: &[DType] = &[
    DType::Q4_0,
    DType::Q4_1,
    DType::Q8_0,
    DType::Q2_K,
    DType::Q3_K,
    DType::Q4_K,
    DType::Q5_K,
    DType::Q6_K,
    DType::BF16,
];

fn weights(dtype: DType, rows: usize, cols: usize) -> Vec<u8> {
    let f = format(dtype).unwrap();
    if f.from_f32.is_some() {
        let x: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        return quantize_to_vec(dtype, &x).unwrap();
    }
    // K-quants have no quantizer here: well-formed random blocks (speed does not depend on
    // the values).
    (0..rows * cols / dtype.block_size() * dtype.type_size())
        .map(|i| (i.wrapping_mul(2654435761) >> 9) as u8 & 0x3f)
        .collect()
}

/// The scalar reference, row by row (the scalar level has no tiles: its `tile` is the loop of
/// dots).
fn scalar_matvec(dtype: DType, w: &[u8], rows: usize, cols: usize, act: &[u8], out: &mut [f32]) {
    Kernels::scalar()
        .tile(dtype, cols, w, rows, act, 1, out, 1, 1)
        .unwrap();
}

fn bench_matvec(c: &mut Criterion) {
    let quick = std::env::var_os("EDGEINFER_BENCH_QUICK").is_some();
    let mut g = c.benchmark_group("matvec");
    if quick {
        g.sample_size(10)
            .warm_up_time(std::time::Duration::from_millis(300))
            .measurement_time(std::time::Duration::from_secs(1));
    }
    for &dtype in TYPES {
        let f = format(dtype).unwrap();
        // K-quant rows are whole 256-element super-blocks: only the shapes whose input width
        // allows that (576x1536, 11008x4096) apply.
        for &(rows, cols) in SHAPES.iter().filter(|s| s.1 % dtype.block_size() == 0) {
            let w = weights(dtype, rows, cols);
            let m = Matrix::from_parts(dtype, rows, cols, &w).unwrap();
            let x: Vec<f32> = (0..cols).map(|i| (i as f32 * 0.1).sin()).collect();
            let mut act = Activations::new();
            act.quantize(m.act_type(), &x, cols).unwrap();
            let mut out = vec![0.0f32; rows];
            g.throughput(Throughput::Bytes(w.len() as u64));
            let shape = format!("{dtype}/{rows}x{cols}");
            for threads in [1usize, 2] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                g.bench_with_input(
                    BenchmarkId::new(format!("dispatched-t{threads}"), &shape),
                    &(),
                    |b, _| pool.install(|| b.iter(|| m.matvec(&act, &mut out).unwrap())),
                );
            }
            // The scalar reference, one thread (small shapes only: it is slow).
            if rows * cols <= 1536 * 576 {
                let act_bytes = quantize_to_vec(f.vec_dot_type, &x).unwrap();
                g.bench_with_input(BenchmarkId::new("scalar-t1", &shape), &(), |b, _| {
                    b.iter(|| scalar_matvec(dtype, &w, rows, cols, &act_bytes, &mut out))
                });
            }
        }
    }
    g.finish();
}

fn bench_matmul(c: &mut Criterion) {
    let quick = std::env::var_os("EDGEINFER_BENCH_QUICK").is_some();
    let mut g = c.benchmark_group("matmul");
    g.sample_size(10);
    if quick {
        g.warm_up_time(std::time::Duration::from_millis(300))
            .measurement_time(std::time::Duration::from_secs(2));
    }
    for &dtype in &[DType::Q4_0, DType::Q4_1, DType::Q8_0] {
        let (rows, cols) = (1536, 576);
        let w = weights(dtype, rows, cols);
        let m = Matrix::from_parts(dtype, rows, cols, &w).unwrap();
        for tokens in [128usize, 512] {
            let x: Vec<f32> = (0..tokens * cols)
                .map(|i| (i as f32 * 0.01).sin())
                .collect();
            let mut act = Activations::new();
            act.quantize(m.act_type(), &x, cols).unwrap();
            let mut out = vec![0.0f32; rows * tokens];
            g.throughput(Throughput::Elements((rows * cols * tokens) as u64));
            for threads in [1usize, 2] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                g.bench_with_input(
                    BenchmarkId::new(
                        format!("t{threads}"),
                        format!("{dtype}/{rows}x{cols}x{tokens}"),
                    ),
                    &(),
                    |b, _| pool.install(|| b.iter(|| m.matmul(&act, &mut out).unwrap())),
                );
            }
        }
    }
    g.finish();
}

/// (name, type, rows, cols) of the Q4_K_M projections: Qwen2.5-0.5B (hidden 896, FFN 4864,
/// K/V 128; the FFN down projection is Q4_K in some layers, Q6_K in others) and Gemma 3 270M
/// (hidden 640, 4 heads of 256, FFN 2048).
const MODEL_SHAPES: &[(&str, DType, usize, usize)] = &[
    ("qwen.attn_q", DType::Q5_0, 896, 896),
    ("qwen.attn_k", DType::Q5_0, 128, 896),
    ("qwen.attn_v", DType::Q8_0, 128, 896),
    ("qwen.ffn_up", DType::Q5_0, 4864, 896),
    ("qwen.ffn_down", DType::Q4_K, 896, 4864),
    ("qwen.ffn_down", DType::Q6_K, 896, 4864),
    ("gemma.attn_q", DType::Q5_0, 1024, 640),
    ("gemma.attn_v", DType::Q8_0, 256, 640),
    ("gemma.attn_output", DType::Q4_K, 640, 1024),
    ("gemma.ffn_up", DType::Q5_0, 2048, 640),
    ("gemma.ffn_down", DType::Q6_K, 640, 2048),
];

/// The tied output projections (decode only: prefill computes the last token's logits).
const OUTPUT_SHAPES: &[(&str, DType, usize, usize)] = &[
    ("qwen.output", DType::Q8_0, 151936, 896),
    ("gemma.output", DType::Q8_0, 262144, 640),
];

fn pools() -> Vec<(usize, rayon::ThreadPool)> {
    [1usize, 2]
        .into_iter()
        .map(|n| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .unwrap();
            (n, pool)
        })
        .collect()
}

fn bench_model_matvec(c: &mut Criterion) {
    let quick = std::env::var_os("EDGEINFER_BENCH_QUICK").is_some();
    let mut g = c.benchmark_group("model_matvec");
    if quick {
        g.sample_size(10)
            .warm_up_time(std::time::Duration::from_millis(300))
            .measurement_time(std::time::Duration::from_secs(1));
    }
    let pools = pools();
    for &(name, dtype, rows, cols) in MODEL_SHAPES.iter().chain(OUTPUT_SHAPES) {
        let w = weights(dtype, rows, cols);
        let m = Matrix::from_parts(dtype, rows, cols, &w).unwrap();
        let x: Vec<f32> = (0..cols).map(|i| (i as f32 * 0.1).sin()).collect();
        let mut act = Activations::new();
        act.quantize(m.act_type(), &x, cols).unwrap();
        let mut out = vec![0.0f32; rows];
        g.throughput(Throughput::Bytes(w.len() as u64));
        for (threads, pool) in &pools {
            g.bench_with_input(
                BenchmarkId::new(
                    format!("t{threads}"),
                    format!("{name}/{dtype}/{rows}x{cols}"),
                ),
                &(),
                |b, _| pool.install(|| b.iter(|| m.matvec(&act, &mut out).unwrap())),
            );
        }
    }
    g.finish();
}

fn bench_model_matmul(c: &mut Criterion) {
    let quick = std::env::var_os("EDGEINFER_BENCH_QUICK").is_some();
    let mut g = c.benchmark_group("model_matmul");
    g.sample_size(10);
    if quick {
        g.warm_up_time(std::time::Duration::from_millis(300))
            .measurement_time(std::time::Duration::from_secs(2));
    }
    let pools = pools();
    for &(name, dtype, rows, cols) in MODEL_SHAPES {
        let w = weights(dtype, rows, cols);
        let m = Matrix::from_parts(dtype, rows, cols, &w).unwrap();
        for tokens in [64usize, 512] {
            let x: Vec<f32> = (0..tokens * cols)
                .map(|i| (i as f32 * 0.01).sin())
                .collect();
            let mut act = Activations::new();
            act.quantize(m.act_type(), &x, cols).unwrap();
            let mut out = vec![0.0f32; rows * tokens];
            g.throughput(Throughput::Elements((rows * cols * tokens) as u64));
            for (threads, pool) in &pools {
                g.bench_with_input(
                    BenchmarkId::new(
                        format!("t{threads}"),
                        format!("{name}/{dtype}/{rows}x{cols}x{tokens}"),
                    ),
                    &(),
                    |b, _| pool.install(|| b.iter(|| m.matmul(&act, &mut out).unwrap())),
                );
            }
        }
    }
    g.finish();
}

criterion_group!(
    benches,
    bench_matvec,
    bench_matmul,
    bench_model_matvec,
    bench_model_matmul
);
criterion_main!(benches);
