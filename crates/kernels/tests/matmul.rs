//! matvec / matmul against a naive f64 reference on dequantized weights and on the activation
//! as the kernel sees it (quantized, then dequantized: tract's "simulate precision loss").

use edgeinfer_kernels::{
    dequantize_to_vec, format, formats, quantize_to_vec, Activations, DType, Kernels, Level,
    Matrix, Tensor,
};

/// The table under test: the best level, capped by `EDGEINFER_KERNELS` (`scripts/test.sh` runs
/// this file at the best level, at AVX2 and scalar; the library itself reads no environment).
fn table() -> &'static Kernels {
    let cap = std::env::var("EDGEINFER_KERNELS").ok();
    Kernels::for_level(Level::best_up_to_named(cap.as_deref())).expect("an available level")
}

fn data(n: usize, seed: f32) -> Vec<f32> {
    (0..n)
        .map(|i| (i as f32 * 0.731 + seed).sin() * 1.7 + (i as f32 * 0.05).cos() * 0.3)
        .collect()
}

/// Weights of `dtype` (rows × cols) built by quantizing floats, or random well-formed blocks.
fn weights(dtype: DType, rows: usize, cols: usize) -> Vec<u8> {
    let f = format(dtype).unwrap();
    match f.from_f32 {
        Some(_) => quantize_to_vec(dtype, &data(rows * cols, 0.3)).unwrap(),
        None => {
            // K-quants without a quantizer: take Q8_K-independent random blocks via dequantizable
            // bytes with modest scales, generated deterministically.
            let size = dtype.type_size();
            let nb = rows * cols / dtype.block_size();
            let mut out: Vec<u8> = (0..nb * size)
                .map(|i| (i.wrapping_mul(2654435761) >> 7) as u8)
                .collect();
            let cols16: &[usize] = match dtype {
                DType::Q2_K => &[80, 82],
                DType::Q3_K => &[108],
                DType::Q4_K | DType::Q5_K => &[0, 2],
                DType::Q6_K => &[208],
                _ => &[],
            };
            for b in 0..nb {
                for &c in cols16 {
                    let v = half::f16::from_f32(0.01 + (b % 7) as f32 * 0.003);
                    out[b * size + c..b * size + c + 2].copy_from_slice(&v.to_bits().to_le_bytes());
                }
            }
            out
        }
    }
}

fn check(dtype: DType, rows: usize, cols: usize, tokens: usize) {
    let f = format(dtype).unwrap();
    let wb = weights(dtype, rows, cols);
    let t = Tensor::borrowed(dtype, &[cols, rows], &wb).unwrap();
    let m = Matrix::new_in(table(), &t).unwrap();
    let x = data(tokens * cols, 1.1);
    let mut act = Activations::new();
    act.quantize_in(table(), m.act_type(), &x, cols).unwrap();
    let mut out = vec![0.0f32; tokens * rows];
    m.matmul(&act, &mut out).unwrap();

    let wf = dequantize_to_vec(dtype, &wb, rows * cols).unwrap();
    let xq = quantize_to_vec(f.vec_dot_type, &x).unwrap();
    let xf = dequantize_to_vec(f.vec_dot_type, &xq, tokens * cols).unwrap();
    for tk in 0..tokens {
        for r in 0..rows {
            let (mut s, mut mag) = (0.0f64, 0.0f64);
            for c in 0..cols {
                let p = f64::from(wf[r * cols + c]) * f64::from(xf[tk * cols + c]);
                s += p;
                mag += p.abs();
            }
            let got = f64::from(out[tk * rows + r]);
            // Q4_1/Q5_1 use Q8_1's f16 `s = d·Σq`; everything else differs by f32 rounding only.
            let tol = 2e-3 * mag + 1e-4;
            assert!(
                (got - s).abs() <= tol,
                "{dtype} {rows}x{cols} t={tk} r={r}: {got} vs {s}"
            );
        }
    }
}

fn all_shapes() {
    for f in formats().iter().filter(|f| f.has_vec_dot()) {
        let b = f.dtype.block_size().max(32);
        for &(rows, cols, tokens) in &[
            (1, b, 1),
            (7, 3 * b, 1),
            (33, 2 * b, 5),
            (130, b, 17),
            (64, 4 * b, 1),
            // enough tokens for the token-tile split (2 × 32 × threads)
            (20, 2 * b, 200),
        ] {
            check(f.dtype, rows, cols, tokens);
        }
    }
}

#[test]
fn matmul_matches_naive_reference_one_thread() {
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
        .install(all_shapes);
}

#[test]
fn matmul_matches_naive_reference_three_threads() {
    rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap()
        .install(all_shapes);
}

#[test]
fn shape_errors_are_reported() {
    let wb = vec![0u8; 20 * 4];
    let t = Tensor::borrowed(DType::Q4_1, &[64, 2], &wb).unwrap();
    let m = Matrix::new_in(table(), &t).unwrap();
    let mut act = Activations::new();
    act.quantize_in(table(), DType::Q8_0, &[0.0; 64], 64)
        .unwrap();
    let mut out = [0.0f32; 2];
    assert!(
        m.matvec(&act, &mut out).is_err(),
        "wrong activation type must be rejected"
    );
    act.quantize_in(table(), DType::Q8_1, &[0.0; 64], 64)
        .unwrap();
    assert!(
        m.matvec(&act, &mut [0.0f32; 3]).is_err(),
        "wrong output length must be rejected"
    );
    m.matvec(&act, &mut out).unwrap();
    assert!(
        act.quantize_in(table(), DType::Q8_1, &[0.0; 48], 48)
            .is_err(),
        "48 is not a block multiple"
    );
    let t3 = Tensor::borrowed(DType::Q4_1, &[32, 2, 2], &wb).unwrap();
    assert!(Matrix::new_in(table(), &t3).is_err());
}

/// Rows already in the activation type (a Q8_0 table's rows) give the same activations as
/// quantizing their values, and the serial and parallel products agree bit for bit; a row of
/// the wrong size is an error.
#[test]
fn encoded_rows_and_in_thread_products_agree() {
    let (rows, cols, tokens) = (96, 64, 37);
    let w = weights(DType::Q8_0, rows, cols);
    let m = Matrix::from_parts_in(table(), DType::Q8_0, rows, cols, &w).unwrap();
    let emb = quantize_to_vec(DType::Q8_0, &data(tokens * cols, 0.3)).unwrap();
    let tm = Matrix::from_parts_in(table(), DType::Q8_0, tokens, cols, &emb).unwrap();
    let mut values = vec![0.0f32; tokens * cols];
    for (t, row) in values.chunks_exact_mut(cols).enumerate() {
        tm.dequantize_row(t, row).unwrap();
    }
    let mut enc = Activations::new();
    enc.set_encoded_rows(
        DType::Q8_0,
        cols,
        (0..tokens).map(|t| tm.row_data(t).unwrap()),
    )
    .unwrap();
    let mut q = Activations::new();
    q.quantize_in(table(), DType::Q8_0, &values, cols).unwrap();
    let (mut a, mut b, mut c) = (
        vec![0.0f32; tokens * rows],
        vec![0.0f32; tokens * rows],
        vec![0.0f32; tokens * rows],
    );
    m.matmul(&enc, &mut a).unwrap();
    m.matmul(&q, &mut b).unwrap();
    m.matmul_in_thread(&q, &mut c).unwrap();
    assert_eq!(a, b);
    assert_eq!(b, c);
    let bad = [0u8; 10];
    let err = enc
        .set_encoded_rows(DType::Q8_0, cols, std::iter::once(&bad[..]))
        .unwrap_err();
    assert!(err.to_string().contains("68 bytes"), "{err}");
}

/// A token's products do not depend on the thread count or on how the work is split (rows per
/// task for few tokens, token tiles per task for many): 1, 2 and 3 threads, 5 to 300 tokens.
#[test]
fn matmul_is_bit_identical_across_thread_counts() {
    for dtype in [DType::Q4_0, DType::Q4_1, DType::Q8_0, DType::Q6_K] {
        let (rows, cols) = (72, 256);
        let w = weights(dtype, rows, cols);
        let m = Matrix::from_parts_in(table(), dtype, rows, cols, &w).unwrap();
        for tokens in [5, 70, 130, 300] {
            let mut act = Activations::new();
            act.quantize_in(table(), m.act_type(), &data(tokens * cols, 0.9), cols)
                .unwrap();
            let run = |threads: usize| {
                let mut out = vec![0.0f32; tokens * rows];
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap()
                    .install(|| m.matmul(&act, &mut out).unwrap());
                out
            };
            let one = run(1);
            for threads in [2, 3] {
                let other = run(threads);
                let same = one
                    .iter()
                    .zip(&other)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{dtype} {tokens} tokens, {threads} threads");
            }
        }
    }
}

/// Any range of rows computed on its own gives the bits the whole matvec gives those rows;
/// ranges past the matrix or several activation vectors are errors, not panics.
#[test]
fn matvec_rows_match_the_whole_matvec() {
    for dtype in [DType::Q4_0, DType::Q4_1, DType::Q8_0, DType::Q6_K] {
        let (rows, cols) = (75, 512);
        let w = weights(dtype, rows, cols);
        let m = Matrix::from_parts_in(table(), dtype, rows, cols, &w).unwrap();
        let mut act = Activations::new();
        act.quantize_in(table(), m.act_type(), &data(cols, 0.7), cols)
            .unwrap();
        let mut whole = vec![0.0f32; rows];
        m.matvec(&act, &mut whole).unwrap();
        for (r0, n) in [(0, 75), (0, 1), (3, 16), (17, 40), (74, 1), (60, 15)] {
            let mut part = vec![f32::NAN; n];
            m.matvec_rows_in_thread(&act, r0, &mut part).unwrap();
            let same = part
                .iter()
                .zip(&whole[r0..r0 + n])
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{dtype} rows {r0}..{}", r0 + n);
        }
        let mut past = vec![0.0f32; 2];
        assert!(m.matvec_rows_in_thread(&act, 74, &mut past).is_err());
        assert!(m
            .matvec_rows_in_thread(&act, usize::MAX, &mut past)
            .is_err());
        let mut two = Activations::new();
        two.quantize_in(table(), m.act_type(), &data(2 * cols, 0.7), cols)
            .unwrap();
        assert!(m.matvec_rows_in_thread(&two, 0, &mut past).is_err());
    }
}
