//! Weights kept in their stored precision.
//!
//! A checkpoint stored in bf16 or f16 can be loaded with [`Residency::Stored`]: every
//! weight stays resident at 2 bytes per parameter, and each is widened to the
//! activations' dtype (f32 on the CPU) only where it is used — one tensor at a time, by
//! [`like`] in the linear layers, the norms, the embedding and the tied head — so a
//! forward pass holds the half-precision model plus one widened tensor. Widening a
//! bf16/f16 value to f32 is exact and every block product then runs in f32 as before,
//! so the residual stream is bit-identical to loading the same checkpoint as f32; the
//! output head is widened in blocks of vocabulary columns ([`head_widened`]), whose
//! logits can differ in the last bits (bit-identical for heads of at most [`HEAD_CHUNK`]
//! elements; `model/tests/model_parity.rs` asserts both). What bf16 storage itself costs
//! against an f32 checkpoint is measured in docs/benchmarks.md ("Models larger than
//! memory").
//! Activations start in the device's compute dtype ([`to_compute`] on the embedding).
//!
//! [`Residency::F32`] (the default, and what training and surgery use) converts at load
//! time, as before; with f32 weights [`like`] is the identity and adds no operation.

use burn::prelude::*;
use burn::tensor::FloatDType;

/// How weights are held after loading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Residency {
    /// Everything converted to f32 at load (training, surgery, exact f32 parity).
    #[default]
    F32,
    /// Float weights stay in the checkpoint's dtype (bf16/f16/f32) and are widened
    /// where used (inference: perplexity, generate, eval, importance).
    Stored,
}

/// `w` in the dtype of `x`: unchanged (no operation) when they already agree.
pub fn like<B: Backend, const D: usize, const E: usize>(
    w: Tensor<B, D>,
    x: &Tensor<B, E>,
) -> Tensor<B, D> {
    let target = x.dtype();
    if w.dtype() == target {
        w
    } else {
        w.cast(FloatDType::from(target))
    }
}

/// `x · w (+ bias)` for `x` `[n, in]` and a weight `w` `[in, out]` held in another dtype
/// than `x`: the weight is widened whole for the product and dropped after, so the f32
/// products are the very ones an f32-resident model computes.
pub fn matmul_widened<B: Backend>(
    x: Tensor<B, 2>,
    w: Tensor<B, 2>,
    bias: Option<Tensor<B, 1>>,
) -> Tensor<B, 2> {
    let y = x.clone().matmul(like(w, &x));
    match bias {
        Some(b) => y + like(b, &x).unsqueeze(),
        None => y,
    }
}

/// Weight elements widened at once by [`head_widened`] (16 MiB of f32).
pub const HEAD_CHUNK: usize = 1 << 22;

/// `x · w` for the output head (`w` `[hidden, vocab]` in another dtype than `x`), in
/// blocks of vocabulary columns of at most `chunk` weight elements: a 32k–150k-token
/// head then never exists in f32 as a whole (with its GEMM packing copy it was the
/// largest transient of a bf16-resident forward, 0.6 GB for a 1.1B model). The GEMM
/// kernels block a narrower product differently, so logits can differ from the one-product
/// result in the last bits (the test in this module bounds it); the blocks are always
/// computed as one product each.
pub fn head_widened<B: Backend>(x: Tensor<B, 2>, w: Tensor<B, 2>, chunk: usize) -> Tensor<B, 2> {
    let [d_in, d_out] = w.dims();
    let cols = (chunk / d_in.max(1)).clamp(1, d_out.max(1));
    if cols >= d_out {
        return matmul_widened(x, w, None);
    }
    let parts: Vec<Tensor<B, 2>> = (0..d_out)
        .step_by(cols)
        .map(|c0| {
            let block = w.clone().slice([0..d_in, c0..(c0 + cols).min(d_out)]);
            x.clone().matmul(like(block, &x))
        })
        .collect();
    Tensor::cat(parts, 1)
}

/// [`head_widened`] for a head tied to the embedding `e` (`[vocab, hidden]`): blocks of
/// embedding rows, each widened and multiplied through its transposed view — the layout
/// the f32 path multiplies (`x · eᵀ` over the row-major embedding). Widening a column
/// block of the transposed view instead gives a row-major `[hidden, cols]` operand, for
/// which OpenBLAS's AVX-512 kernel accumulates in another order (last bits differ).
pub fn tied_head_widened<B: Backend>(
    x: Tensor<B, 2>,
    e: Tensor<B, 2>,
    chunk: usize,
) -> Tensor<B, 2> {
    let [vocab, hidden] = e.dims();
    let rows = (chunk / hidden.max(1)).clamp(1, vocab.max(1));
    let mut parts: Vec<Tensor<B, 2>> = (0..vocab)
        .step_by(rows)
        .map(|r0| {
            let block = e.clone().slice([r0..(r0 + rows).min(vocab), 0..hidden]);
            x.clone().matmul(like(block, &x).transpose())
        })
        .collect();
    if parts.len() == 1 {
        return parts.remove(0);
    }
    Tensor::cat(parts, 1)
}

/// `t` in the device's default float dtype (f32 on the CPU; bf16 on a CUDA device set up
/// for bf16 training): unchanged when it already is.
pub fn to_compute<B: Backend, const D: usize>(t: Tensor<B, D>) -> Tensor<B, D> {
    let target = burn::tensor::get_device_settings::<B>(&t.device()).float_dtype;
    if burn::tensor::DType::from(target) == t.dtype() {
        t
    } else {
        t.cast(target)
    }
}

/// `t` widened to f32 when it is held in a half type; unchanged otherwise.
pub fn widened<B: Backend, const D: usize>(t: Tensor<B, D>) -> Tensor<B, D> {
    use burn::tensor::DType;
    match t.dtype() {
        DType::F16 | DType::BF16 => t.cast(FloatDType::F32),
        _ => t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Cpu;
    use burn::tensor::{DType, Distribution};

    fn host(t: Tensor<Cpu, 2>) -> Vec<f32> {
        t.into_data().to_vec::<f32>().unwrap()
    }

    #[test]
    fn head_in_vocabulary_blocks_equals_one_product() {
        let device = Default::default();
        // Fixed inputs: the bound below must hold for these, not for a lucky draw.
        <Cpu as burn::tensor::backend::Backend>::seed(&device, 20);
        let x = Tensor::<Cpu, 2>::random([7, 96], Distribution::Normal(0.0, 1.0), &device);
        let w = Tensor::<Cpu, 2>::random([96, 1000], Distribution::Normal(0.0, 0.1), &device)
            .cast(FloatDType::BF16);
        let want = host(x.clone().matmul(w.clone().cast(FloatDType::F32)));
        // One block, ten blocks, an uneven split, and a transposed (tied-head) view.
        let wt = w
            .clone()
            .transpose()
            .cast(FloatDType::F32)
            .cast(FloatDType::BF16);
        let check = |got: Tensor<Cpu, 2>, chunk: usize| {
            assert_eq!(got.dtype(), DType::F32);
            let got = host(got);
            assert_eq!(got.len(), want.len());
            let worst = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
                .fold(0f32, f32::max);
            // Another blocking (or operand layout) sums each 96-term dot product in
            // another order: within 96 f32 roundings of the one-product result.
            let bound = 96.0 * f32::EPSILON;
            assert!(
                worst <= bound,
                "chunk {chunk}: relative difference {worst} > {bound}"
            );
        };
        for (w, chunk) in [
            (w.clone(), usize::MAX),
            (w.clone(), 96 * 100),
            (w, 96 * 333),
            (wt.clone().transpose(), 96 * 100),
        ] {
            let got = head_widened(x.clone(), w, chunk);
            check(got, chunk);
        }
        // The tied head: the embedding `[vocab, hidden]` in row blocks.
        for chunk in [usize::MAX, 96 * 100, 96 * 333] {
            check(tied_head_widened(x.clone(), wt.clone(), chunk), chunk);
        }
    }
}
