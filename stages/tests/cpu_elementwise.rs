//! Elementwise kernels of the CPU backend on tensors large enough for the vendored
//! burn-flex to split them over the rayon pool (vendor/burn-flex/src/par.rs), against the
//! same scalar operation on the host: same-shape binary ops (in place on a unique
//! buffer and into a new one when the input is shared), the two broadcast patterns
//! (shared row, per-row scalar), scalar ops and the strided ND copy behind `swap_dims`
//! must be bit-identical; exp and sigmoid (the vendored crate's vectorised exp) must be
//! within 2-3 ulp of f64 over the whole range; row sums (split by rows, each row by the
//! same SIMD kernel) must match an f64 sum.

use burn::prelude::*;
use slayer_stages::model::Cpu;
use slayer_stages::rng::SplitMix64;

/// Rows x cols with rows * cols well above the parallel threshold, and a row length
/// that does not divide the chunk size.
const ROWS: usize = 1531;
const COLS: usize = 577;

fn values(seed: u64, n: usize, scale: f64) -> Vec<f32> {
    let mut rng = SplitMix64::new(seed);
    (0..n)
        .map(|_| ((rng.next_f64() * 2.0 - 1.0) * scale) as f32)
        .collect()
}

fn tensor<const D: usize>(v: &[f32], shape: [usize; D]) -> Tensor<Cpu, D> {
    Tensor::from_data(TensorData::new(v.to_vec(), shape), &Default::default())
}

fn host<const D: usize>(t: Tensor<Cpu, D>) -> Vec<f32> {
    t.into_data().into_vec::<f32>().unwrap()
}

fn assert_bits(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            g.to_bits() == w.to_bits(),
            "{what}: element {i}: {g} != {w}"
        );
    }
}

/// A binary tensor operation and the scalar operation it must equal.
type TensorOp = fn(Tensor<Cpu, 2>, Tensor<Cpu, 2>) -> Tensor<Cpu, 2>;
type ScalarOp = fn(f32, f32) -> f32;

#[test]
fn large_binary_ops_match_the_scalar_op() {
    let n = ROWS * COLS;
    let a = values(1, n, 3.0);
    let b: Vec<f32> = values(2, n, 3.0).into_iter().map(|x| x + 4.0).collect();
    let ops: [(&str, TensorOp, ScalarOp); 4] = [
        ("add", |x, y| x + y, |x, y| x + y),
        ("sub", |x, y| x - y, |x, y| x - y),
        ("mul", |x, y| x * y, |x, y| x * y),
        ("div", |x, y| x / y, |x, y| x / y),
    ];
    for (name, op, scalar) in ops {
        let want: Vec<f32> = a.iter().zip(&b).map(|(&x, &y)| scalar(x, y)).collect();
        // Unique left operand: computed in place.
        let got = host(op(tensor(&a, [ROWS, COLS]), tensor(&b, [ROWS, COLS])));
        assert_bits(&got, &want, name);
        // Shared left operand: a new buffer, the input untouched.
        let lhs = tensor(&a, [ROWS, COLS]);
        let got = host(op(lhs.clone(), tensor(&b, [ROWS, COLS])));
        assert_bits(&got, &want, &format!("{name} (shared lhs)"));
        assert_bits(&host(lhs), &a, &format!("{name}: input kept"));
    }
}

#[test]
fn large_broadcasts_match_the_scalar_op() {
    let n = ROWS * COLS;
    let a = values(3, n, 2.0);
    let row = values(4, COLS, 2.0);
    let col: Vec<f32> = values(5, ROWS, 2.0).into_iter().map(|x| x + 3.0).collect();
    // Shared row: x [rows, cols] * row [1, cols].
    let got = host(tensor(&a, [ROWS, COLS]) * tensor(&row, [1, COLS]));
    let want: Vec<f32> = a
        .iter()
        .enumerate()
        .map(|(i, &x)| x * row[i % COLS])
        .collect();
    assert_bits(&got, &want, "shared row");
    // Per-row scalar: x [rows, cols] / col [rows, 1] (and - for a second op).
    let got = host(tensor(&a, [ROWS, COLS]) / tensor(&col, [ROWS, 1]));
    let want: Vec<f32> = a
        .iter()
        .enumerate()
        .map(|(i, &x)| x / col[i / COLS])
        .collect();
    assert_bits(&got, &want, "per-row scalar");
    let got = host(tensor(&a, [ROWS, COLS]) - tensor(&col, [ROWS, 1]));
    let want: Vec<f32> = a
        .iter()
        .enumerate()
        .map(|(i, &x)| x - col[i / COLS])
        .collect();
    assert_bits(&got, &want, "per-row scalar sub");
}

/// Distance in units in the last place between two finite f32 of the same sign (or
/// both zero); `u32::MAX` when one is NaN or infinite and the other is not equal.
fn ulps(a: f32, b: f32) -> u32 {
    if a == b || (a.is_nan() && b.is_nan()) {
        return 0;
    }
    if !a.is_finite() || !b.is_finite() || (a < 0.0) != (b < 0.0) {
        return u32::MAX;
    }
    a.abs().to_bits().abs_diff(b.abs().to_bits())
}

/// Every element within `max` ulp of the correctly rounded f64 value.
fn assert_ulps(got: &[f32], want: impl Fn(usize) -> f64, max: u32, what: &str) {
    for (i, &g) in got.iter().enumerate() {
        let w = want(i) as f32;
        assert!(ulps(g, w) <= max, "{what}: element {i}: {g} vs {w}");
    }
}

#[test]
fn large_scalar_and_unary_ops_match_the_scalar_op() {
    let n = ROWS * COLS;
    // Exponents across the whole f32 range of exp: the subnormal results below
    // ln(2^-126) ~ -87.3, +0 below ln(2^-150) ~ -103.97, overflow above 88.72, -inf,
    // +inf and NaN. The backend's exp is its own vectorisable one: within 2 ulp.
    let mut x = values(6, n, 120.0);
    let specials = [
        f32::NEG_INFINITY,
        -103.9,
        -104.5,
        f32::MIN,
        -87.5,
        -100.0,
        88.7,
        88.73,
        f32::INFINITY,
        f32::NAN,
        0.0,
        -0.0,
        1e-8,
    ];
    x[..specials.len()].copy_from_slice(&specials);
    let got = host(tensor(&x, [ROWS, COLS]).exp());
    assert_ulps(&got, |i| f64::from(x[i]).exp(), 2, "exp");
    assert_eq!(got[2], 0.0);
    assert!(got[1] > 0.0, "e^-103.9 is a subnormal, not 0");
    assert!(got[9].is_nan(), "e^NaN is NaN");
    assert_eq!((got[6].is_finite(), got[7]), (true, f32::INFINITY));
    let a = values(7, n, 5.0);
    let got = host(tensor(&a, [ROWS, COLS]).mul_scalar(0.37).add_scalar(-1.5));
    let want: Vec<f32> = a.iter().map(|&v| v * 0.37 - 1.5).collect();
    assert_bits(&got, &want, "scalar ops");
    let mut a = values(8, n, 30.0);
    a[..4].copy_from_slice(&[-100.0, 100.0, 0.0, -20.0]);
    let shared = tensor(&a, [ROWS, COLS]);
    let got = host(burn::tensor::activation::sigmoid(shared.clone()));
    let sigmoid = |v: f64| 1.0 / (1.0 + (-v).exp());
    assert_ulps(
        &got,
        |i| sigmoid(f64::from(a[i])),
        3,
        "sigmoid (shared input)",
    );
    assert_bits(&host(shared), &a, "sigmoid input kept");
}

#[test]
fn large_strided_copies_keep_every_element() {
    // [b, t, h, d] -> [b, h, t, d] as attention lays out its heads, then a contiguous
    // copy (reshape of the swapped view), and a 5-D permutation with a contiguous
    // innermost dim.
    let (b, t, h, d) = (3, 257, 9, 64);
    let v = values(8, b * t * h * d, 1.0);
    let got = host(
        tensor(&v, [b, t, h, d])
            .swap_dims(1, 2)
            .reshape([b * h * t * d]),
    );
    let mut want = Vec::with_capacity(v.len());
    for bi in 0..b {
        for hi in 0..h {
            for ti in 0..t {
                let at = ((bi * t + ti) * h + hi) * d;
                want.extend_from_slice(&v[at..at + d]);
            }
        }
    }
    assert_bits(&got, &want, "swap_dims(1, 2) copy");
    let dims = [2, 5, 7, 11, 130];
    let v = values(9, dims.iter().product(), 1.0);
    let got = host(
        tensor(&v, dims)
            .permute([2, 0, 3, 1, 4])
            .reshape([dims.iter().product::<usize>()]),
    );
    let mut want = Vec::with_capacity(v.len());
    for i2 in 0..dims[2] {
        for i0 in 0..dims[0] {
            for i3 in 0..dims[3] {
                for i1 in 0..dims[1] {
                    let at = (((i0 * dims[1] + i1) * dims[2] + i2) * dims[3] + i3) * dims[4];
                    want.extend_from_slice(&v[at..at + dims[4]]);
                }
            }
        }
    }
    assert_bits(&got, &want, "5-D permute copy");
}

#[test]
fn large_row_sums_cover_every_row() {
    // Few long rows (a vocabulary-sized softmax) and many short ones: sums over the
    // last dimension split by rows, each row by the same SIMD kernel.
    for (rows, cols) in [(37, 40_000), (ROWS, COLS)] {
        let v: Vec<f32> = values(10, rows * cols, 1.0)
            .into_iter()
            .enumerate()
            .map(|(i, x)| x + (i / cols) as f32)
            .collect();
        let got = host(tensor(&v, [rows, cols]).sum_dim(1));
        assert_eq!(got.len(), rows);
        for (r, g) in got.iter().enumerate() {
            let want: f64 = v[r * cols..(r + 1) * cols]
                .iter()
                .map(|&x| f64::from(x))
                .sum();
            let tol = 1e-5 * want.abs().max(cols as f64);
            assert!(
                (f64::from(*g) - want).abs() <= tol,
                "rows {rows}: row {r}: {g} vs {want}"
            );
        }
    }
}
