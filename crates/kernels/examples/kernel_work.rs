//! A fixed amount of kernel work, run once, for counting instructions (timings on a shared
//! machine are noise; callgrind's counts are deterministic):
//!
//! ```text
//! cargo build --release -p edgeinfer-kernels --example kernel_work
//! RAYON_NUM_THREADS=1 valgrind --tool=callgrind --toggle-collect='*kernel_work*measured*' \
//!     target/release/examples/kernel_work Q5_0 896 896 64 matmul
//! ```
//!
//! Arguments: weight type, rows, cols, tokens, and the path: `matmul` (what prefill and decode
//! run: [`Matrix::matmul`], tiles where the level has them) or `dots` (the level's single-vector
//! dot once per (row, token)). Prints the level and a checksum of the outputs. The weight data
//! and activations are built outside `measured`, so only the product is counted.

use std::hint::black_box;

use edgeinfer_kernels::{format, kernels, quantize_to_vec, Activations, DType, Matrix};

/// Weights of `dtype`: quantized from floats where the type has a quantizer, else
/// well-formed random blocks with modest f16 scales (speed does not depend on the values).
fn weights(dtype: DType, rows: usize, cols: usize) -> Vec<u8> {
    let f = format(dtype).expect("a supported type");
    if f.from_f32.is_some() {
        let x: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        return quantize_to_vec(dtype, &x).expect("quantizable");
    }
    let size = dtype.type_size();
    let nb = rows * cols / dtype.block_size();
    let mut out: Vec<u8> = (0..nb * size)
        .map(|i| (i.wrapping_mul(2654435761) >> 9) as u8)
        .collect();
    let f16_cols: &[usize] = match dtype {
        DType::Q2_K => &[80, 82],
        DType::Q3_K => &[108],
        DType::Q4_K | DType::Q5_K => &[0, 2],
        _ => &[],
    };
    for b in 0..nb {
        for &c in f16_cols {
            let v = half::f16::from_f32(0.01 + (b % 7) as f32 * 0.003);
            out[b * size + c..b * size + c + 2].copy_from_slice(&v.to_bits().to_le_bytes());
        }
    }
    out
}

#[inline(never)]
fn measured(path: &str, m: &Matrix<'_>, w: &[u8], act: &Activations, acts: &[u8], out: &mut [f32]) {
    match path {
        "matmul" => m.matmul(act, out).expect("shapes match"),
        "dots" => {
            let k = kernels();
            let (rows, cols, t_n) = (m.rows(), m.cols(), act.rows());
            let (wrb, arb) = (w.len() / rows, acts.len() / t_n);
            for t in 0..t_n {
                for r in 0..rows {
                    out[t * rows + r] = k
                        .vec_dot(
                            m.dtype(),
                            cols,
                            &w[r * wrb..(r + 1) * wrb],
                            &acts[t * arb..(t + 1) * arb],
                        )
                        .expect("shapes match");
                }
            }
        }
        other => panic!("unknown path {other} (matmul or dots)"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "kernel_work TYPE ROWS COLS TOKENS matmul|dots";
    assert!(args.len() == 6, "{usage}");
    let dtype = DType::ALL
        .iter()
        .copied()
        .find(|t| t.name().eq_ignore_ascii_case(&args[1]))
        .expect("a type name such as Q5_0");
    let num = |i: usize| args[i].parse::<usize>().expect(usage);
    let (rows, cols, tokens) = (num(2), num(3), num(4));
    let w = weights(dtype, rows, cols);
    let m = Matrix::from_parts(dtype, rows, cols, &w).expect("a valid shape");
    let x: Vec<f32> = (0..tokens * cols)
        .map(|i| (i as f32 * 0.01).sin())
        .collect();
    let mut act = Activations::new();
    act.quantize(m.act_type(), &x, cols).expect("quantizable");
    let acts = quantize_to_vec(m.act_type(), &x).expect("quantizable");
    let mut out = vec![0.0f32; rows * tokens];
    measured(&args[5], &m, &w, &act, &acts, black_box(&mut out));
    let sum: f64 = out.iter().map(|v| f64::from(*v)).sum();
    println!(
        "level {} {dtype} {rows}x{cols} x{tokens} {}: checksum {sum}",
        kernels().level,
        args[5]
    );
}
