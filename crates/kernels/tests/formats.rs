//! Format tests, table-driven over every type the kernels support: bit-exactness against the
//! reference fixtures of the `gguf` PyPI package, ggml's error budgets, and SIMD == scalar.

use edgeinfer_gguf::GgufFile;
use edgeinfer_kernels::{dequantize_to_vec, format, formats, quantize_to_vec, DType, Format};
use proptest::prelude::*;

fn fixtures() -> GgufFile {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/quant/quants.gguf"
    );
    GgufFile::open(path)
        .expect("fixtures/quant/quants.gguf (regenerate with gen_quant_fixtures.py)")
}

fn f32s(f: &GgufFile, name: &str) -> Vec<f32> {
    let t = f.tensor(name).unwrap();
    assert_eq!(t.dtype(), DType::F32);
    t.data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[test]
fn dequantize_is_bit_exact_with_gguf_py() {
    let f = fixtures();
    let mut checked = 0;
    for fmt in formats() {
        let name = fmt.dtype.name();
        let Ok(q) = f.tensor(&format!("{name}.q")) else {
            continue;
        };
        let want = f32s(&f, &format!("{name}.deq"));
        let got = dequantize_to_vec(fmt.dtype, q.data(), want.len()).unwrap();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.to_bits(), w.to_bits(), "{name} element {i}: {g} != {w}");
        }
        checked += 1;
    }
    // F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K Q4_K Q5_K Q6_K
    assert_eq!(checked, 12);
}

#[test]
fn quantize_is_bit_exact_with_gguf_py() {
    let f = fixtures();
    let mut checked = 0;
    for fmt in formats().iter().filter(|f| f.from_f32.is_some()) {
        let name = fmt.dtype.name();
        let (Ok(q), Ok(_)) = (
            f.tensor(&format!("{name}.q")),
            f.tensor(&format!("{name}.src")),
        ) else {
            continue;
        };
        let src = f32s(&f, &format!("{name}.src"));
        let got = quantize_to_vec(fmt.dtype, &src).unwrap();
        assert_eq!(got.len(), q.data().len(), "{name}");
        let first_diff = got.iter().zip(q.data()).position(|(a, b)| a != b);
        assert_eq!(first_diff, None, "{name}: quantized bytes differ");
        checked += 1;
    }
    assert_eq!(checked, 7); // F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0
}

/// ggml's test-quantize-fns data: 0.1 + 2·cos(i + offset).
fn ggml_data(n: usize, offset: f32) -> Vec<f32> {
    (0..n)
        .map(|i| 0.1 + 2.0 * (i as f32 + offset).cos())
        .collect()
}

fn rmse_per_element(a: &[f32], b: &[f32]) -> f64 {
    let s: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
        .sum();
    s.sqrt() / a.len() as f64
}

fn budget(t: DType) -> f64 {
    match t {
        DType::Q2_K => 0.0075,
        DType::Q3_K => 0.004,
        _ => 0.002,
    }
}

#[test]
fn round_trip_error_within_ggml_budgets() {
    let data = ggml_data(32 * 128, 0.0);
    let mut checked = 0;
    for fmt in formats().iter().filter(|f| f.from_f32.is_some()) {
        let q = quantize_to_vec(fmt.dtype, &data).unwrap();
        let back = dequantize_to_vec(fmt.dtype, &q, data.len()).unwrap();
        let err = rmse_per_element(&data, &back);
        assert!(
            err <= budget(fmt.dtype),
            "{}: error {err} > {}",
            fmt.dtype,
            budget(fmt.dtype)
        );
        checked += 1;
    }
    assert!(checked >= 10);
}

#[test]
fn dot_product_error_within_ggml_budget() {
    let n = 32 * 128;
    let x = ggml_data(n, 0.0);
    let y = ggml_data(n, 1.0);
    let exact: f64 = x
        .iter()
        .zip(&y)
        .map(|(a, b)| f64::from(*a) * f64::from(*b))
        .sum();
    let mut checked = 0;
    for fmt in formats()
        .iter()
        .filter(|f| f.from_f32.is_some() && f.vec_dot_generic.is_some())
    {
        let w = quantize_to_vec(fmt.dtype, &x).unwrap();
        let a = quantize_to_vec(fmt.vec_dot_type, &y).unwrap();
        for (label, dot) in [("generic", fmt.vec_dot_generic), ("simd", fmt.vec_dot_avx2)] {
            let Some(dot) = dot else { continue };
            if label == "simd" && !edgeinfer_kernels::simd_available() {
                continue;
            }
            let err = (f64::from(dot(n, &w, &a)) - exact).abs() / n as f64;
            assert!(err <= 0.02, "{} {label}: dot error {err}", fmt.dtype);
        }
        checked += 1;
    }
    assert!(checked >= 7);
}

#[test]
fn every_computed_dtype_has_a_format_row() {
    for &t in DType::ALL {
        assert_eq!(
            format(t).is_some(),
            t.info().computed,
            "{t}: table and DType disagree"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// SIMD == scalar

/// Random weight blocks of `fmt`: quantized from random floats where a quantizer exists,
/// otherwise random bytes with finite, modest f16 scales.
fn weight_bytes(fmt: &Format, blocks: usize, seed: u64, scale: f32) -> Vec<u8> {
    let block = fmt.dtype.block_size();
    let mut rng = seed;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    if let Some(from) = fmt.from_f32 {
        let x: Vec<f32> = (0..blocks * block)
            .map(|_| ((next() % 20001) as f32 / 10000.0 - 1.0) * scale)
            .collect();
        let mut out = vec![0u8; blocks * fmt.dtype.type_size()];
        from(&x, &mut out);
        return out;
    }
    let size = fmt.dtype.type_size();
    let mut out: Vec<u8> = (0..blocks * size).map(|_| next() as u8).collect();
    let f16_cols: &[usize] = match fmt.dtype {
        DType::Q2_K => &[80, 82],
        DType::Q3_K => &[108],
        DType::Q4_K | DType::Q5_K => &[0, 2],
        DType::Q6_K => &[208],
        _ => &[],
    };
    for b in 0..blocks {
        for &c in f16_cols {
            let v = half::f16::from_f32(((next() % 1000) as f32 + 1.0) * 1e-4 * scale);
            out[b * size + c..b * size + c + 2].copy_from_slice(&v.to_bits().to_le_bytes());
        }
    }
    out
}

fn magnitude(fmt: &Format, w: &[u8], a: &[u8], n: usize) -> f64 {
    let wf = dequantize_to_vec(fmt.dtype, w, n).unwrap();
    let af = dequantize_to_vec(fmt.vec_dot_type, a, n).unwrap();
    wf.iter()
        .zip(&af)
        .map(|(x, y)| (f64::from(*x) * f64::from(*y)).abs())
        .sum()
}

fn check_simd_matches(fmt: &Format, blocks: usize, seed: u64, wscale: f32, ascale: f32) {
    let (Some(gen), Some(simd)) = (fmt.vec_dot_generic, fmt.vec_dot_avx2) else {
        return;
    };
    if !edgeinfer_kernels::simd_available() {
        return;
    }
    let n = blocks * fmt.dtype.block_size();
    let w = weight_bytes(fmt, blocks, seed, wscale);
    let act_fmt = format(fmt.vec_dot_type).unwrap();
    let x: Vec<f32> = (0..n)
        .map(|i| ((i as f32 * 0.37 + seed as f32).sin()) * ascale)
        .collect();
    let a = quantize_to_vec(act_fmt.dtype, &x).unwrap();
    let (g, s) = (gen(n, &w, &a), simd(n, &w, &a));
    let bound = 1e-5 * magnitude(fmt, &w, &a, n) + 1e-6;
    assert!(
        (f64::from(g) - f64::from(s)).abs() <= bound,
        "{}: generic {g} vs simd {s} (n={n}, bound {bound})",
        fmt.dtype
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn simd_equals_scalar(blocks in 1usize..40, seed in 1u64..u64::MAX,
                          wexp in -6i32..4, aexp in -6i32..4) {
        for fmt in formats() {
            let blocks = if fmt.dtype.block_size() == 1 { blocks * 7 + 3 } else { blocks };
            check_simd_matches(fmt, blocks, seed, 10f32.powi(wexp), 10f32.powi(aexp));
        }
    }
}

#[test]
fn simd_equals_scalar_on_extremes_and_zero_scales() {
    for fmt in formats() {
        check_simd_matches(fmt, 8, 7, 0.0, 1.0); // all-zero weights
        check_simd_matches(fmt, 8, 9, 1.0, 0.0); // all-zero activations
        check_simd_matches(fmt, 8, 11, 6.0e4, 1.0e4); // near f16 range
        check_simd_matches(fmt, 1, 13, 1.0, 1.0); // single block (no loop body repeats)
    }
}

/// `tile` gives exactly `dot` for every element of a `rows × n_acts` call over rows of
/// `blocks` blocks, written row-major with padding and token-major (as matmul's output is).
fn check_tile_equals_dot(
    fmt: &Format,
    tile: edgeinfer_kernels::Tile,
    dot: edgeinfer_kernels::VecDot,
    (rows, n_acts, blocks): (usize, usize, usize),
) {
    let n = blocks * fmt.dtype.block_size();
    let w = weight_bytes(fmt, rows * blocks, rows as u64, 1.0);
    // Mostly |x| ≤ 1, with outliers that set some blocks' scales.
    let x: Vec<f32> = (0..n * n_acts)
        .map(|i| (i as f32 * 0.77).sin() * if i % 97 == 0 { 40.0 } else { 1.0 })
        .collect();
    let a = quantize_to_vec(fmt.vec_dot_type, &x).unwrap();
    let (wrb, arb) = (w.len() / rows, a.len() / n_acts);
    for (rs, ts) in [(n_acts + 2, 1), (1, rows + 3)] {
        let mut out = vec![f32::NAN; rows * rs + n_acts * ts];
        tile(n, &w, rows, &a, n_acts, &mut out, rs, ts);
        for r in 0..rows {
            for t in 0..n_acts {
                let want = dot(n, &w[r * wrb..(r + 1) * wrb], &a[t * arb..(t + 1) * arb]);
                assert_eq!(
                    out[r * rs + t * ts].to_bits(),
                    want.to_bits(),
                    "{} rows={rows} acts={n_acts} blocks={blocks} r={r} t={t} strides {rs}/{ts}",
                    fmt.dtype
                );
            }
        }
    }
}

/// The tile kernels (rows × activations per call) give exactly what the single dot gives for
/// every element, so a token's result does not depend on the batch it is computed in.
#[test]
fn tile_kernels_equal_single_dots_bit_for_bit() {
    if !edgeinfer_kernels::simd_available() {
        eprintln!("NOTE: this CPU has no AVX2; its tiles cannot be run here");
        return;
    }
    for fmt in formats().iter().filter(|f| f.tile_avx2.is_some()) {
        let (tile, dot) = (fmt.tile_avx2.unwrap(), fmt.vec_dot_avx2.unwrap());
        // 130 blocks: longer than the AVX2 tile's scale buffer (its fallback path).
        for blocks in [1usize, 2, 3, 18, 130] {
            check_tile_equals_dot(fmt, tile, dot, (5, 11, blocks));
        }
    }
}

/// The AVX-VNNI tiles (eight rows at a time, rows left over and short calls handed to the AVX2
/// tile) give exactly the single AVX2 dot for every element, whatever the row count, number of
/// activations, row length and output layout.
#[test]
fn vnni_tiles_equal_single_dots_bit_for_bit() {
    if !edgeinfer_kernels::vnni_available() {
        eprintln!("NOTE: this CPU has no AVX-VNNI; its tiles cannot be run here");
        return;
    }
    let tiles: Vec<_> = formats().iter().filter(|f| f.tile_vnni.is_some()).collect();
    assert_eq!(tiles.len(), 3, "Q4_0, Q4_1 and Q8_0 have VNNI tiles");
    for fmt in tiles {
        let (tile, dot) = (fmt.tile_vnni.unwrap(), fmt.vec_dot_avx2.unwrap());
        for case in [
            (8usize, 4usize, 1usize),
            (16, 5, 2),
            (17, 11, 3),
            (24, 3, 5),
            (13, 33, 18),
            (9, 6, 130),
            (5, 1, 18),
            (11, 2, 7),
            (16, 1, 130),
        ] {
            check_tile_equals_dot(fmt, tile, dot, case);
        }
    }
}

/// The dispatched activation quantizers (Q8_0, Q8_1) write exactly the scalar reference's
/// bytes: random values, exact halves (which round away from zero), zeros, a lone maximum,
/// tiny and huge magnitudes.
#[test]
fn dispatched_activation_quantizers_equal_scalar_bytes() {
    let simd = edgeinfer_kernels::kernels();
    let scalar = edgeinfer_kernels::scalar_kernels();
    let mut inputs: Vec<Vec<f32>> = vec![
        (0..256)
            .map(|i| ((i * 7919) as f32 * 0.013).sin() * 3.0)
            .collect(),
        vec![0.0; 64],
        // amax 127 gives scale 1: every ±k.5 is a tie.
        (0..64)
            .map(|i| {
                if i == 0 {
                    127.0
                } else {
                    (i as f32 - 32.0) + 0.5
                }
            })
            .collect(),
        (0..64)
            .map(|i| if i == 5 { -1.0e-30 } else { 0.0 })
            .collect(),
        (0..64).map(|i| (i as f32 - 31.5) * 1.0e4).collect(),
        (0..32).map(|i| (i as f32) * 1.0e-6).collect(),
    ];
    let mut s = 9u64;
    inputs.push(
        (0..4096)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 8.0
            })
            .collect(),
    );
    for (dtype, row) in [(DType::Q8_0, 34), (DType::Q8_1, 36)] {
        let (a, b) = (
            simd.act_quantizer(dtype).unwrap(),
            scalar.act_quantizer(dtype).unwrap(),
        );
        for x in &inputs {
            let n = x.len() / 32 * row;
            let (mut qa, mut qb) = (vec![0u8; n], vec![1u8; n]);
            a(x, &mut qa);
            b(x, &mut qb);
            assert_eq!(qa, qb, "{dtype} on {:?}…", &x[..4]);
        }
    }
}
