//! Format tests, table-driven over every type the kernels support: bit-exactness against the
//! reference fixtures of the `gguf` PyPI package, ggml's error budgets, and, at every kernel
//! level this CPU has (`available_levels()`), SIMD == the summation-order contract bit for bit,
//! tiles == dots bit for bit, and both within rounding of the scalar reference.

use edgeinfer_gguf::GgufFile;
use edgeinfer_kernels::{
    available_levels, contract, dequantize_to_vec, format, formats, quantize_to_vec, DType, Format,
    Kernels, Level,
};

/// The kernel tables of every level this CPU can run, scalar first. Says which, once per test.
fn levels() -> Vec<&'static Kernels> {
    let levels = available_levels();
    eprintln!("kernel levels on this CPU: {levels:?}");
    levels
        .into_iter()
        .map(|l| Kernels::for_level(l).expect("an available level has a table"))
        .collect()
}
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
    let levels = levels();
    for fmt in formats()
        .iter()
        .filter(|f| f.from_f32.is_some() && f.has_vec_dot())
    {
        let w = quantize_to_vec(fmt.dtype, &x).unwrap();
        let a = quantize_to_vec(fmt.vec_dot_type, &y).unwrap();
        for k in &levels {
            let got = k.vec_dot(fmt.dtype, n, &w, &a).unwrap();
            let err = (f64::from(got) - exact).abs() / n as f64;
            assert!(err <= 0.02, "{} {}: dot error {err}", fmt.dtype, k.level);
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

/// At level `k`: the dot equals the contract's scalar code bit for bit (SIMD levels), and the
/// contract is within rounding of the scalar reference (the `Scalar` level).
fn check_level_dot(k: &Kernels, fmt: &Format, blocks: usize, seed: u64, wscale: f32, ascale: f32) {
    if !fmt.has_vec_dot() {
        return;
    }
    let n = blocks * fmt.dtype.block_size();
    let w = weight_bytes(fmt, blocks, seed, wscale);
    let act_fmt = format(fmt.vec_dot_type).unwrap();
    let x: Vec<f32> = (0..n)
        .map(|i| ((i as f32 * 0.37 + seed as f32).sin()) * ascale)
        .collect();
    let a = quantize_to_vec(act_fmt.dtype, &x).unwrap();
    let ordered = contract::dot(fmt.dtype, n, &w, &a).unwrap();
    let got = k.vec_dot(fmt.dtype, n, &w, &a).unwrap();
    if k.level == Level::Scalar {
        let bound = 1e-5 * magnitude(fmt, &w, &a, n) + 1e-6;
        assert!(
            (f64::from(got) - f64::from(ordered)).abs() <= bound,
            "{}: scalar {got} vs contract {ordered} (n={n}, bound {bound})",
            fmt.dtype
        );
    } else {
        assert_eq!(
            got.to_bits(),
            ordered.to_bits(),
            "{} at {}: {got} vs contract {ordered} (n={n}, seed {seed})",
            fmt.dtype,
            k.level
        );
    }
}

fn check_every_level(blocks: usize, seed: u64, wscale: f32, ascale: f32) {
    for k in levels() {
        for fmt in formats() {
            let blocks = if fmt.dtype.block_size() == 1 {
                blocks * 7 + 3
            } else {
                blocks
            };
            check_level_dot(k, fmt, blocks, seed, wscale, ascale);
        }
    }
}

/// Proptest cases: fewer under emulation (aarch64 runs in qemu here).
const CASES: u32 = if cfg!(target_arch = "aarch64") {
    24
} else {
    64
};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]
    #[test]
    fn every_level_follows_the_contract(blocks in 1usize..40, seed in 1u64..u64::MAX,
                                        wexp in -6i32..4, aexp in -6i32..4) {
        check_every_level(blocks, seed, 10f32.powi(wexp), 10f32.powi(aexp));
    }
}

#[test]
fn every_level_follows_the_contract_on_extremes_and_zero_scales() {
    check_every_level(8, 7, 0.0, 1.0); // all-zero weights
    check_every_level(8, 9, 1.0, 0.0); // all-zero activations
    check_every_level(8, 11, 6.0e4, 1.0e4); // near f16 range
    check_every_level(1, 13, 1.0, 1.0); // single block (no loop body repeats)
    check_every_level(5, 17, 1.0, 1.0); // one group of four and a residue
}

/// At level `k`, `tile` gives exactly `dot` for every element of a `rows × n_acts` call over
/// rows of `blocks` blocks, written row-major with padding and token-major (as matmul's output
/// is).
fn check_tile_equals_dot(k: &Kernels, fmt: &Format, (rows, n_acts, blocks): (usize, usize, usize)) {
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
        k.tile(fmt.dtype, n, &w, rows, &a, n_acts, &mut out, rs, ts)
            .unwrap();
        for r in 0..rows {
            for t in 0..n_acts {
                let (wr, at) = (&w[r * wrb..(r + 1) * wrb], &a[t * arb..(t + 1) * arb]);
                let want = k.vec_dot(fmt.dtype, n, wr, at).unwrap();
                assert_eq!(
                    out[r * rs + t * ts].to_bits(),
                    want.to_bits(),
                    "{} at {}: rows={rows} acts={n_acts} blocks={blocks} r={r} t={t} strides {rs}/{ts}",
                    fmt.dtype,
                    k.level
                );
            }
        }
    }
}

/// Every level's tile kernels (rows × activations per call: AVX2 four activations at a time,
/// AVX-VNNI eight rows, NEON four activations, i8mm two rows × two activations per `smmla`;
/// rows and activations left over, short calls and rows too long for a tile's stack data taken
/// by the single dot) give exactly that level's single dot for every element, so a token's
/// result does not depend on the batch it is computed in.
#[test]
fn tile_kernels_equal_single_dots_bit_for_bit() {
    let mut tiled = 0;
    for k in levels() {
        for fmt in formats().iter().filter(|f| k.has_tile(f.dtype)) {
            tiled += 1;
            let long = if fmt.dtype.block_size() == 256 {
                17
            } else {
                130
            };
            for case in [
                (5usize, 11usize, 1usize),
                (5, 11, 2),
                (5, 11, 3),
                (5, 11, 18),
                (5, 11, long),
                (8, 4, 1),
                (16, 5, 2),
                (17, 11, 3),
                (24, 3, 5),
                (13, 33, 6),
                (9, 6, long),
                (5, 1, 7),
                (11, 2, 7),
                (16, 1, long),
                (3, 7, 4),
            ] {
                check_tile_equals_dot(k, fmt, case);
            }
        }
        if k.level != Level::Scalar {
            assert!(k.has_tile(DType::Q4_0), "{}: no Q4_0 tile", k.level);
        }
    }
    eprintln!("{tiled} (level, format) tiles checked");
}

/// Which formats each x86 level tiles: every 32-block format and the K-quants of the Q4_K_M
/// mixes (Q4_K, Q5_K, Q6_K) at AVX2 and AVX-VNNI, none at the scalar level (its tile is the
/// loop of dots). A format losing its tile would fall back to one dot per (row, token) in
/// prefill, several times slower.
#[cfg(target_arch = "x86_64")]
#[test]
fn x86_levels_tile_the_block_formats() {
    use DType::*;
    for k in levels() {
        let want: &[DType] = match k.level {
            Level::Scalar => &[],
            Level::Avx2 | Level::AvxVnni => &[Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K],
            other => panic!("{other} is not an x86 level"),
        };
        let got: Vec<DType> = formats()
            .iter()
            .map(|f| f.dtype)
            .filter(|&t| k.has_tile(t))
            .collect();
        assert_eq!(got, want, "tiles at {}", k.level);
    }
}

/// The SIMD levels of one architecture give the same bits for every format (each equals the
/// contract; checked here directly on a row with tails of every kind).
#[test]
fn simd_levels_agree_bit_for_bit() {
    let simd: Vec<_> = levels()
        .into_iter()
        .filter(|k| k.level != Level::Scalar)
        .collect();
    for fmt in formats().iter().filter(|f| f.has_vec_dot()) {
        let blocks = if fmt.dtype.block_size() == 1 { 263 } else { 11 };
        let n = blocks * fmt.dtype.block_size();
        let w = weight_bytes(fmt, blocks, 23, 1.0);
        let x: Vec<f32> = (0..n).map(|i| (i as f32 * 0.123).cos()).collect();
        let a = quantize_to_vec(fmt.vec_dot_type, &x).unwrap();
        let got: Vec<u32> = simd
            .iter()
            .map(|k| k.vec_dot(fmt.dtype, n, &w, &a).unwrap().to_bits())
            .collect();
        assert!(
            got.windows(2).all(|p| p[0] == p[1]),
            "{}: {:?} differ across levels {:?}",
            fmt.dtype,
            got,
            simd.iter().map(|k| k.level).collect::<Vec<_>>()
        );
    }
}

/// Every level's activation quantizers (Q8_0, Q8_1, Q8_K) write exactly the scalar
/// reference's bytes: random values, exact halves (which round away from zero), zeros, a lone
/// maximum, tiny and huge magnitudes.
#[test]
fn every_levels_activation_quantizers_equal_scalar_bytes() {
    let scalar = Kernels::scalar();
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
    // Q8_K takes whole 256-value blocks: the inputs above, repeated to a multiple of 256.
    let inputs_k: Vec<Vec<f32>> = inputs
        .iter()
        .map(|x| {
            x.iter()
                .copied()
                .cycle()
                .take(x.len().div_ceil(256) * 256)
                .collect()
        })
        .collect();
    for k in levels() {
        for (dtype, row, block, inputs) in [
            (DType::Q8_0, 34, 32, &inputs),
            (DType::Q8_1, 36, 32, &inputs),
            (DType::Q8_K, 292, 256, &inputs_k),
        ] {
            let (a, b) = (
                k.act_quantizer(dtype).unwrap(),
                scalar.act_quantizer(dtype).unwrap(),
            );
            for x in inputs.iter() {
                let n = x.len() / block * row;
                let (mut qa, mut qb) = (vec![0u8; n], vec![1u8; n]);
                a(x, &mut qa);
                b(x, &mut qb);
                assert_eq!(qa, qb, "{dtype} at {} on {:?}…", k.level, &x[..4]);
            }
        }
    }
}
