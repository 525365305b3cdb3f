//! f32 matrix products on the CPU backend (through the vendored `gemm`, which hands
//! them to OpenBLAS when the build found it) against a plain f64 reference: row- and
//! column-major operands, batches with broadcast weights, products large enough to be
//! split over threads, and degenerate sizes.

use burn::prelude::*;
use slayer_stages::model::Cpu;
use slayer_stages::rng::SplitMix64;

fn random(rng: &mut SplitMix64, shape: [usize; 3]) -> (Vec<f32>, Tensor<Cpu, 3>) {
    let n = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|_| (rng.next_f64() * 2.0 - 1.0) as f32)
        .collect();
    let t = Tensor::from_data(TensorData::new(v.clone(), shape), &Default::default());
    (v, t)
}

/// `a [b, m, k]` (or `[1, m, k]` broadcast) times `w [b|1, k, n]`, in f64.
fn reference(
    a: &[f32],
    w: &[f32],
    batch: (usize, usize),
    m: usize,
    k: usize,
    n: usize,
) -> Vec<f64> {
    let b = batch.0.max(batch.1);
    let mut out = vec![0f64; b * m * n];
    for bi in 0..b {
        let a0 = if batch.0 == 1 { 0 } else { bi * m * k };
        let w0 = if batch.1 == 1 { 0 } else { bi * k * n };
        for i in 0..m {
            for j in 0..n {
                out[(bi * m + i) * n + j] = (0..k)
                    .map(|p| a[a0 + i * k + p] as f64 * w[w0 + p * n + j] as f64)
                    .sum();
            }
        }
    }
    out
}

fn assert_close(got: Tensor<Cpu, 3>, want: &[f64], what: &str) {
    let got: Vec<f32> = got.into_data().into_vec().unwrap();
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let tol = 1e-4 * (1.0 + w.abs());
        assert!(
            ((*g as f64) - w).abs() <= tol,
            "{what}: element {i} is {g}, want {w}"
        );
    }
}

#[test]
fn products_match_a_reference_in_every_layout() {
    let mut rng = SplitMix64::new(7);
    let sizes = [
        (1, 1, 1, 1),
        (1, 3, 5, 7),
        (2, 17, 33, 65),
        (1, 130, 70, 300),  // split over threads by rows
        (1, 20, 200, 1000), // split over threads by columns
        (3, 64, 48, 32),
    ];
    for &(b, m, k, n) in &sizes {
        let (a, at) = random(&mut rng, [b, m, k]);
        let (w, wt) = random(&mut rng, [1, k, n]);
        let want = reference(&a, &w, (b, 1), m, k, n);
        let what = format!("[{b},{m},{k}] x [1,{k},{n}]");
        assert_close(at.clone().matmul(wt.clone()), &want, &what);

        // The same operands stored transposed, multiplied through transposed views.
        let a_t = at.clone().swap_dims(1, 2).into_data();
        let a_view = Tensor::<Cpu, 3>::from_data(a_t, &Default::default()).swap_dims(1, 2);
        let w_t = wt.clone().swap_dims(1, 2).into_data();
        let w_view = Tensor::<Cpu, 3>::from_data(w_t, &Default::default()).swap_dims(1, 2);
        assert_close(
            a_view.clone().matmul(wt.clone()),
            &want,
            &format!("{what}, lhs column-major"),
        );
        assert_close(
            at.clone().matmul(w_view.clone()),
            &want,
            &format!("{what}, rhs column-major"),
        );
        assert_close(
            a_view.matmul(w_view),
            &want,
            &format!("{what}, both column-major"),
        );

        // One weight per batch entry.
        let (wb, wbt) = random(&mut rng, [b, k, n]);
        let want_b = reference(&a, &wb, (b, b), m, k, n);
        assert_close(at.matmul(wbt), &want_b, &format!("{what}, batched weights"));
    }
}

#[test]
fn empty_inner_dimension_gives_zeros() {
    let device = Default::default();
    let a = Tensor::<Cpu, 3>::zeros([1, 4, 0], &device);
    let w = Tensor::<Cpu, 3>::zeros([1, 0, 5], &device);
    let out: Vec<f32> = a.matmul(w).into_data().into_vec().unwrap();
    assert_eq!(out, vec![0.0; 20]);
}
