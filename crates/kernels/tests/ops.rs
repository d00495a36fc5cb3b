//! The fast transcendental functions and the fused LSTM epilogue against f64 references; at
//! every kernel level this CPU has, the epilogue and the f32/f16 helpers against the portable
//! ones (within rounding) and the contract (SIMD levels, bit for bit).

use edgeinfer_kernels::ops::{
    self, fast_exp, fast_sigmoid, fast_tanh, lstm_cell, lstm_cell_generic,
};
use edgeinfer_kernels::{available_levels, contract, Kernels, Level};

fn levels() -> Vec<&'static Kernels> {
    let levels = available_levels();
    eprintln!("kernel levels on this CPU: {levels:?}");
    levels
        .into_iter()
        .map(|l| Kernels::for_level(l).expect("an available level has a table"))
        .collect()
}

fn grid() -> impl Iterator<Item = f32> {
    (-200_000..=200_000).map(|i| i as f32 * 4.4e-4)
}

#[test]
fn fast_exp_is_accurate_over_its_range() {
    let mut worst = 0.0f64;
    for x in grid().filter(|x| (-87.3..=88.3).contains(x)) {
        let want = f64::from(x).exp();
        let got = f64::from(fast_exp(x));
        worst = worst.max(((got - want) / want).abs());
    }
    assert!(worst < 3e-7, "worst relative error {worst:e}");
    // Clamped, finite at the ends; exact at 0.
    assert!(fast_exp(1e4).is_finite() && fast_exp(-1e4) >= 0.0);
    assert_eq!(fast_exp(0.0), 1.0);
}

#[test]
fn fast_sigmoid_and_tanh_are_accurate() {
    let (mut ws, mut wt) = (0.0f64, 0.0f64);
    for x in grid() {
        let xd = f64::from(x);
        ws = ws.max((f64::from(fast_sigmoid(x)) - 1.0 / (1.0 + (-xd).exp())).abs());
        wt = wt.max((f64::from(fast_tanh(x)) - xd.tanh()).abs());
    }
    assert!(ws < 2e-7 && wt < 4e-7, "sigmoid {ws:e}, tanh {wt:e}");
    for x in [f32::MAX, f32::MIN, 1e30, -1e30] {
        assert!((0.0..=1.0).contains(&fast_sigmoid(x)));
        assert!((-1.0..=1.0).contains(&fast_tanh(x)));
    }
}

#[test]
fn silu_and_gelu_match_f64_definitions() {
    let (mut ws, mut wg) = (0.0f64, 0.0f64);
    for x in grid() {
        let xd = f64::from(x);
        let silu = xd / (1.0 + (-xd).exp());
        let u = (2.0 / std::f64::consts::PI).sqrt() * (xd + 0.044715 * xd * xd * xd);
        let gelu = 0.5 * xd * (1.0 + u.tanh());
        // Errors relative to |x| (both are x times a factor in [0, 1]).
        let scale = xd.abs().max(1e-30);
        ws = ws.max((f64::from(ops::silu(x)) - silu).abs() / scale);
        wg = wg.max((f64::from(ops::gelu(x)) - gelu).abs() / scale);
    }
    assert!(ws < 5e-7 && wg < 5e-7, "silu {ws:e}, gelu {wg:e}");
    for x in [f32::MAX, f32::MIN, 1e30, -1e30] {
        assert!(ops::silu(x).is_finite() && ops::gelu(x).is_finite(), "{x}");
    }
    assert_eq!((ops::silu(0.0), ops::gelu(0.0)), (0.0, 0.0));
}

fn reference(z: &[f32], xp: &[f32], b: &[f32], c: &mut [f64], h: &mut [f64]) {
    let n = c.len();
    let s = |v: f64| 1.0 / (1.0 + (-v).exp());
    for j in 0..n {
        let g =
            |k: usize| f64::from(z[k * n + j]) + f64::from(xp[k * n + j]) + f64::from(b[k * n + j]);
        c[j] = s(g(1)) * c[j] + s(g(0)) * g(2).tanh();
        h[j] = s(g(3)) * c[j].tanh();
    }
}

#[test]
fn lstm_cell_matches_f64_and_simd_matches_portable() {
    let mut state = 12345u64;
    let mut rnd = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 8.0
    };
    for n in [1usize, 7, 8, 33, 64, 128] {
        let z: Vec<f32> = (0..4 * n).map(|_| rnd()).collect();
        let xp: Vec<f32> = (0..4 * n).map(|_| rnd()).collect();
        let b: Vec<f32> = (0..4 * n).map(|_| rnd() * 0.1).collect();
        let c0: Vec<f32> = (0..n).map(|_| rnd() * 0.5).collect();
        let (mut c1, mut h1) = (c0.clone(), vec![0.0; n]);
        let (mut c2, mut h2) = (c0.clone(), vec![0.0; n]);
        let (mut cr, mut hr): (Vec<f64>, Vec<f64>) =
            (c0.iter().map(|&v| v.into()).collect(), vec![0.0; n]);
        let (mut c3, mut h3) = (c0.clone(), vec![0.0; n]);
        contract::lstm_cell(&z, &xp, &b, &mut c3, &mut h3);
        for k in levels() {
            let (mut c4, mut h4) = (c0.clone(), vec![0.0; n]);
            k.lstm_cell(&z, &xp, &b, &mut c4, &mut h4);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            // The scalar level is the portable code (checked within rounding below); every SIMD
            // level follows the contract exactly.
            if k.level != Level::Scalar {
                assert_eq!(bits(&c4), bits(&c3), "n={n}: c at {}", k.level);
                assert_eq!(bits(&h4), bits(&h3), "n={n}: h at {}", k.level);
            }
            for j in 0..n {
                assert!(
                    (c4[j] - c3[j]).abs() < 1e-6 && (h4[j] - h3[j]).abs() < 1e-6,
                    "n={n} j={j} at {}",
                    k.level
                );
            }
        }
        lstm_cell(&z, &xp, &b, &mut c1, &mut h1);
        lstm_cell_generic(&z, &xp, &b, &mut c2, &mut h2);
        reference(&z, &xp, &b, &mut cr, &mut hr);
        for j in 0..n {
            assert!(
                (f64::from(c1[j]) - cr[j]).abs() < 1e-6 && (f64::from(h1[j]) - hr[j]).abs() < 1e-6
            );
            // FMA contraction may differ between the two builds by an ulp or so.
            assert!(
                (c1[j] - c2[j]).abs() < 1e-6 && (h1[j] - h2[j]).abs() < 1e-6,
                "n={n} j={j}"
            );
        }
    }
}

/// Saturated gates (pre-activations far beyond where σ and tanh flatten, up to ±1e30) give
/// finite values equal to the f64 reference, in the dispatched and the portable kernel.
#[test]
fn lstm_cell_saturates_without_nan() {
    let n = 19; // two 8-wide steps and a scalar tail
    let vals = [
        -1e30f32, -1000.0, -90.0, -31.0, -9.5, 0.0, 9.5, 31.0, 90.0, 1000.0, 1e30,
    ];
    let z: Vec<f32> = (0..4 * n).map(|i| vals[(i * 7) % vals.len()]).collect();
    let xp = vec![0.0f32; 4 * n];
    let b = vec![0.0f32; 4 * n];
    let c0: Vec<f32> = (0..n)
        .map(|i| vals[(i * 3) % vals.len()].clamp(-50.0, 50.0))
        .collect();
    let (mut cr, mut hr): (Vec<f64>, Vec<f64>) =
        (c0.iter().map(|&v| v.into()).collect(), vec![0.0; n]);
    reference(&z, &xp, &b, &mut cr, &mut hr);
    for cell in [
        lstm_cell as fn(&[f32], &[f32], &[f32], &mut [f32], &mut [f32]),
        lstm_cell_generic,
    ] {
        let (mut c, mut h) = (c0.clone(), vec![0.0; n]);
        cell(&z, &xp, &b, &mut c, &mut h);
        for j in 0..n {
            assert!(
                c[j].is_finite() && h[j].is_finite(),
                "j={j}: c {} h {}",
                c[j],
                h[j]
            );
            assert!(
                (f64::from(c[j]) - cr[j]).abs() < 1e-5 * cr[j].abs().max(1.0)
                    && (f64::from(h[j]) - hr[j]).abs() < 1e-6,
                "j={j}: c {} vs {}, h {} vs {}",
                c[j],
                cr[j],
                h[j],
                hr[j]
            );
        }
    }
}

/// The f32 and f16 helpers attention uses, at every level: `to_f16` exact at every level; dot
/// and axpy equal to the contract bit for bit at the SIMD levels and within rounding of the
/// scalar ones at all.
#[test]
fn f32_and_f16_helpers_at_every_level() {
    let g = Kernels::scalar();
    for k in levels() {
        for n in [0usize, 1, 7, 8, 15, 16, 17, 31, 32, 33, 64, 100, 257] {
            let x: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
            let y: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos() - 0.2).collect();
            let (mut h, mut hg) = (vec![0u16; n], vec![0u16; n]);
            k.to_f16(&x, &mut h);
            g.to_f16(&x, &mut hg);
            assert_eq!(h, hg, "f32 -> f16 rounding at {}, n={n}", k.level);
            let mag: f32 = x.iter().zip(&y).map(|(a, b)| (a * b).abs()).sum::<f32>() + 1.0;
            let pairs = [
                (
                    k.dot_f32(&x, &y),
                    contract::dot_f32(&x, &y),
                    g.dot_f32(&x, &y),
                ),
                (
                    k.dot_f32_f16(&y, &h),
                    contract::dot_f32_f16(&y, &h),
                    g.dot_f32_f16(&y, &h),
                ),
            ];
            for (i, (got, ordered, plain)) in pairs.into_iter().enumerate() {
                assert!(
                    (got - plain).abs() <= 1e-5 * mag,
                    "dot {i} at {}, n={n}",
                    k.level
                );
                if k.level != Level::Scalar {
                    assert_eq!(
                        got.to_bits(),
                        ordered.to_bits(),
                        "dot {i} at {}, n={n}",
                        k.level
                    );
                }
            }
            let run = |f: &dyn Fn(&mut [f32])| {
                let mut v = y.clone();
                f(&mut v);
                v
            };
            let axpys = [
                (
                    run(&|v| k.axpy(0.5, &x, v)),
                    run(&|v| contract::axpy(0.5, &x, v)),
                    run(&|v| g.axpy(0.5, &x, v)),
                ),
                (
                    run(&|v| k.axpy_f16(-1.5, &h, v)),
                    run(&|v| contract::axpy_f16(-1.5, &h, v)),
                    run(&|v| g.axpy_f16(-1.5, &h, v)),
                ),
            ];
            for (i, (got, ordered, plain)) in axpys.into_iter().enumerate() {
                for j in 0..n {
                    assert!(
                        (got[j] - plain[j]).abs() <= 1e-6 * (1.0 + plain[j].abs()),
                        "axpy {i} at {}, n={n}, j={j}",
                        k.level
                    );
                    if k.level != Level::Scalar {
                        assert_eq!(
                            got[j].to_bits(),
                            ordered[j].to_bits(),
                            "axpy {i} at {}, n={n}, j={j}",
                            k.level
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn argmax_takes_the_first_of_ties_and_skips_nan() {
    assert_eq!(ops::argmax(&[]), 0);
    assert_eq!(ops::argmax(&[0.0, 3.0, 1.0, 3.0]), 1);
    assert_eq!(ops::argmax(&[f32::NAN, -1.0, -2.0]), 1);
    assert_eq!(ops::argmax(&[-1.0, f32::NAN, -0.5]), 2);
    assert_eq!(ops::argmax(&[f32::NEG_INFINITY; 3]), 0);
}
