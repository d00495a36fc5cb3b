//! The weight quantizers against llama.cpp's `llama-quantize`, bit for bit: every tensor of
//! `fixtures/quantize/blocks.<TYPE>.gguf` (llama-quantize --pure of `blocks.f32.gguf`, made by
//! `fixtures/quantize/gen_quantize_fixtures.py`) must be exactly what `quantize` makes of the
//! same f32 rows; and the K-quants' round trips stay within ggml's error budgets on random data.

use edgeinfer_gguf::GgufFile;
use edgeinfer_kernels::{dequantize_to_vec, quantize_to_vec, DType};
use proptest::prelude::*;

fn fixture(name: &str) -> GgufFile {
    let path = format!(
        "{}/../../fixtures/quantize/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    GgufFile::open(&path).unwrap_or_else(|e| {
        panic!("{path}: {e} (regenerate with fixtures/quantize/gen_quantize_fixtures.py)")
    })
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Every quantizer, every tensor of its fixture, identical bytes; on a mismatch, the first
/// differing block is named.
#[test]
fn quantizers_equal_llama_quantize_bit_for_bit() {
    let src = fixture("blocks.f32.gguf");
    let cases = [
        ("Q4_0", DType::Q4_0),
        ("Q4_1", DType::Q4_1),
        ("Q5_0", DType::Q5_0),
        ("Q5_1", DType::Q5_1),
        ("Q8_0", DType::Q8_0),
        ("Q2_K", DType::Q2_K),
        ("Q3_K_S", DType::Q3_K),
        ("Q4_K_S", DType::Q4_K),
        ("Q5_K_S", DType::Q5_K),
        ("Q6_K", DType::Q6_K),
    ];
    let mut blocks_checked = 0;
    for (file, dtype) in cases {
        let expected = fixture(&format!("blocks.{file}.gguf"));
        assert_eq!(expected.tensor_infos().len(), src.tensor_infos().len());
        for info in src.tensor_infos() {
            let want = expected.tensor(&info.name).unwrap();
            assert_eq!(want.dtype(), dtype, "{file}: {}", info.name);
            assert_eq!(want.shape(), info.shape.as_slice());
            let x = f32s(src.tensor(&info.name).unwrap().data());
            let got = quantize_to_vec(dtype, &x).unwrap();
            let size = dtype.type_size();
            if let Some(b) = (0..got.len() / size)
                .find(|&b| got[b * size..(b + 1) * size] != want.data()[b * size..(b + 1) * size])
            {
                panic!(
                    "{dtype} {}: block {b} (elements {}..) differs from llama-quantize:\n  ours   {:02x?}\n  theirs {:02x?}",
                    info.name,
                    b * dtype.block_size(),
                    &got[b * size..(b + 1) * size],
                    &want.data()[b * size..(b + 1) * size]
                );
            }
            assert_eq!(got.len(), want.data().len());
            blocks_checked += got.len() / size;
        }
    }
    // 3 tensors, 33792 values: 1056 blocks of 32 or 132 super-blocks per type
    assert_eq!(blocks_checked, 5 * 1056 + 5 * 132);
}

fn rmse(a: &[f32], b: &[f32]) -> f64 {
    let s: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
        .sum();
    (s / a.len() as f64).sqrt()
}

const K_QUANTS: [DType; 5] = [
    DType::Q2_K,
    DType::Q3_K,
    DType::Q4_K,
    DType::Q5_K,
    DType::Q6_K,
];

/// Relative RMS round-trip error a K-quant keeps on Gaussian data: measured means 0.30 (Q2_K),
/// 0.15, 0.072, 0.036, 0.018 (Q6_K), worst of 48 draws 0.34, 0.16, 0.077, 0.040, 0.022; the
/// budgets leave about 15 % above the worst.
fn relative_budget(t: DType) -> f64 {
    match t {
        DType::Q2_K => 0.40,
        DType::Q3_K => 0.19,
        DType::Q4_K => 0.09,
        DType::Q5_K => 0.047,
        _ => 0.026,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Super-blocks of Gaussian data at scales 1e-3..1e3 (much smaller ones lose precision to
    /// the f16 super-block scale, as in ggml): the round trip error relative to the data's RMS
    /// stays within the format's budget, and more bits never do worse than fewer.
    #[test]
    fn k_quant_round_trips_within_budget(
        blocks in 1usize..4,
        seed in any::<u64>(),
        log_scale in -3.0f64..3.0,
    ) {
        let mut s = seed | 1;
        let mut gauss = || {
            // Box-Muller on a xorshift generator
            let mut u = || {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
            };
            let (a, b) = (u(), u());
            (-2.0 * a.ln()).sqrt() * (std::f64::consts::TAU * b).cos()
        };
        let scale = 10f64.powf(log_scale);
        let x: Vec<f32> = (0..256 * blocks).map(|_| (gauss() * scale) as f32).collect();
        let norm = rmse(&x, &vec![0.0; x.len()]);
        let mut errs = Vec::new();
        for t in K_QUANTS {
            let q = quantize_to_vec(t, &x).unwrap();
            let back = dequantize_to_vec(t, &q, x.len()).unwrap();
            let rel = rmse(&x, &back) / norm;
            prop_assert!(rel <= relative_budget(t), "{t}: relative error {rel}");
            errs.push(rel);
        }
        for w in errs.windows(2) {
            prop_assert!(w[1] <= w[0] * 1.05, "more bits, more error: {errs:?}");
        }
    }
}

/// All-zero and tiny (below ggml's 1e-15 group threshold) super-blocks quantize to blocks that
/// dequantize to exact zeros, never NaN.
#[test]
fn k_quants_of_zero_and_tiny_blocks_are_zero() {
    for x in [vec![0.0f32; 256], vec![1e-20f32; 256]] {
        for t in K_QUANTS {
            let q = quantize_to_vec(t, &x).unwrap();
            let back = dequantize_to_vec(t, &q, 256).unwrap();
            assert!(
                back.iter().all(|v| v.abs() < 1e-18),
                "{t}: {:?}",
                &back[..4]
            );
        }
    }
}
