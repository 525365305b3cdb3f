//! [`softmax`]: the attention's softmax, recorded under autodiff as one op with its own
//! backward instead of burn's decomposition.
//!
//! burn 0.21's autodiff backend records `softmax` as the decomposition its backend trait
//! defaults to (max, subtract, exp, sum, divide), each op differentiated and each keeping
//! its input for the backward: for the `[batch, heads, seq, seq]` attention scores that is
//! five passes and several score-sized tensors per block. Here softmax is one autodiff op
//! (a [`Backward`] like the fused training loss, `train/loss.rs`): the forward is the
//! inner backend's own softmax kernel, the backward `dx = y * g - y * sum(y * g)` from the
//! saved output alone.
//!
//! The model is generic over any backend, and Rust has no specialisation, so [`softmax`]
//! recognises the autodiff backends slayer trains on (`Autodiff<Cpu>`, and
//! `Autodiff<Cuda>` in CUDA builds) by type and uses the fused op for them; every other
//! backend (inference, other autodiff backends) gets burn's `softmax`, which for a plain
//! backend is already its fused kernel.

use std::any::{Any, TypeId};

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::prelude::*;
use burn::tensor::TensorPrimitive;
use burn::tensor::ops::FloatTensor;

use super::device::Cpu;

/// `softmax(x)` along `dim`, as one autodiff op on the training backends (module doc).
pub fn softmax<B: Backend, const D: usize>(x: Tensor<B, D>, dim: usize) -> Tensor<B, D> {
    let x = match as_backend::<B, Autodiff<Cpu>, D>(x, |x| fused(x, dim)) {
        Ok(y) => return y,
        Err(x) => x,
    };
    #[cfg(feature = "cuda")]
    let x = match as_backend::<B, Autodiff<super::device::Cuda>, D>(x, |x| fused(x, dim)) {
        Ok(y) => return y,
        Err(x) => x,
    };
    burn::tensor::activation::softmax(x, dim)
}

/// `f(x)` when `B` is `A` (the same type, moved through `Any`); `x` back otherwise.
fn as_backend<B: Backend, A: Backend, const D: usize>(
    x: Tensor<B, D>,
    f: impl FnOnce(Tensor<A, D>) -> Tensor<A, D>,
) -> Result<Tensor<B, D>, Tensor<B, D>> {
    if TypeId::of::<B>() != TypeId::of::<A>() {
        return Err(x);
    }
    let x: Box<dyn Any> = Box::new(x);
    let x = *x.downcast::<Tensor<A, D>>().expect("B is A");
    let y: Box<dyn Any> = Box::new(f(x));
    Ok(*y.downcast::<Tensor<B, D>>().expect("A is B"))
}

/// The backward of the fused softmax; its state is the output and the dimension.
#[derive(Debug)]
struct SoftmaxBackward;

impl<B: Backend> Backward<B, 1> for SoftmaxBackward {
    type State = (FloatTensor<B>, usize);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (output, dim) = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| {
            // dx = y * (g - sum(g * y)) = g * y - y * sum(g * y)
            let gy = B::float_mul(grad, output.clone());
            let sum = B::float_sum_dim(gy.clone(), dim);
            B::float_sub(gy, B::float_mul(output, sum))
        });
    }
}

/// Softmax along `dim` as one op of `Autodiff<B, C>`.
fn fused<B: Backend, C: CheckpointStrategy, const D: usize>(
    x: Tensor<Autodiff<B, C>, D>,
    dim: usize,
) -> Tensor<Autodiff<B, C>, D> {
    let x = x.into_primitive().tensor();
    let out = match SoftmaxBackward
        .prepare::<C>([x.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let output = B::softmax(x.primitive, dim);
            prep.finish((output.clone(), dim), output)
        }
        OpsKind::UnTracked(prep) => prep.finish(B::softmax(x.primitive, dim)),
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}
