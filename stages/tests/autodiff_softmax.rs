//! Softmax and log-softmax under autodiff (single ops with their own backward in the
//! vendored burn-autodiff) against the same functions composed from elementary ops, whose
//! gradients burn derives op by op: values and input gradients must agree, along the last
//! and a middle dimension, for a small tensor and one large enough for the CPU backend's
//! parallel kernels.

use burn::backend::Autodiff;
use burn::prelude::*;
use burn::tensor::activation::{log_softmax, softmax};
use slayer_stages::model::Cpu;
use slayer_stages::rng::SplitMix64;

type Ad = Autodiff<Cpu>;

fn random(seed: u64, shape: [usize; 3], scale: f64) -> Tensor<Ad, 3> {
    let mut rng = SplitMix64::new(seed);
    let n = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|_| ((rng.next_f64() * 2.0 - 1.0) * scale) as f32)
        .collect();
    Tensor::from_data(TensorData::new(v, shape), &Default::default())
}

fn composed_log_softmax(x: Tensor<Ad, 3>, dim: usize) -> Tensor<Ad, 3> {
    let shifted = x.clone() - x.max_dim(dim).detach();
    shifted.clone() - shifted.exp().sum_dim(dim).log()
}

fn composed_softmax(x: Tensor<Ad, 3>, dim: usize) -> Tensor<Ad, 3> {
    composed_log_softmax(x, dim).exp()
}

/// `(value, d sum(f(x) * w) / dx)` on the host.
fn value_and_grad(
    f: impl Fn(Tensor<Ad, 3>) -> Tensor<Ad, 3>,
    x: &Tensor<Ad, 3>,
    w: &Tensor<Ad, 3>,
) -> (Vec<f32>, Vec<f32>) {
    let x = x.clone().require_grad();
    let y = f(x.clone());
    let loss = (y.clone() * w.clone()).sum();
    let grads = loss.backward();
    let g = x.grad(&grads).expect("x has a gradient");
    (
        y.into_data().into_vec::<f32>().unwrap(),
        g.into_data().into_vec::<f32>().unwrap(),
    )
}

fn assert_close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol * (1.0 + y.abs()),
            "{what}: element {i}: {x} vs {y}"
        );
    }
}

#[test]
fn softmax_and_log_softmax_gradients_match_their_composition() {
    for (shape, scale) in [([2, 5, 7], 3.0), ([4, 9, 4099], 8.0)] {
        let x = random(1, shape, scale);
        let w = random(2, shape, 1.0);
        for dim in [2, 1] {
            let what = |f: &str| format!("{f} {shape:?} dim {dim}");
            let (y, g) = value_and_grad(|t| softmax(t, dim), &x, &w);
            let (y0, g0) = value_and_grad(|t| composed_softmax(t, dim), &x, &w);
            assert_close(&y, &y0, 1e-5, &what("softmax value"));
            assert_close(&g, &g0, 1e-5, &what("softmax grad"));
            let (y, g) = value_and_grad(|t| log_softmax(t, dim), &x, &w);
            let (y0, g0) = value_and_grad(|t| composed_log_softmax(t, dim), &x, &w);
            assert_close(&y, &y0, 1e-5, &what("log_softmax value"));
            assert_close(&g, &g0, 1e-4, &what("log_softmax grad"));
        }
    }
}
