//! AdamW over the trainable parameters only, with torch's semantics
//! (`torch.optim.AdamW`, decoupled weight decay, bias-corrected moments):
//!
//! ```text
//! m = b1 m + (1 - b1) g            v = b2 v + (1 - b2) g^2
//! p = p (1 - lr wd)                (not for norms and biases)
//! p = p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
//! ```
//!
//! Gradients of the micro-batches of one step are summed in a [`GradBuffer`] (flat per
//! parameter; in f64 when a step has several micro-batches, see [`GradBuffer::wide`]),
//! summed over data-parallel ranks by [`GradBuffer::reduce`] (bucketed, in f64) and
//! rounded to f32 once; [`GradBuffer::global_norm`] is the L2 norm over all of them and the
//! step scales every gradient by `min(1, clip / (norm + 1e-6))` like
//! `torch.nn.utils.clip_grad_norm_`. Frozen parameters never reach the buffer, so they
//! have no optimiser state at all. State is keyed by parameter path so a checkpoint can
//! be restored into a freshly loaded model. When the model holds parameters in a lower
//! precision (bf16), an f32 master copy lives in the state and the model gets its cast.
//!
//! On the CPU ([`AdamW::host_update`]) an f32 parameter is updated by [`adamw_update`]:
//! one parallel pass over parameter, gradient and both moments in host memory, instead
//! of a dozen tensor operations that each stream the whole parameter through memory.
//! Both paths compute the same formulas (tested equal).

use std::collections::{BTreeMap, HashMap};

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::prelude::*;
use burn::tensor::DType;
use burn::tensor::backend::AutodiffBackend;

use super::collective::Collective;
use super::trainable::PathStack;
use crate::model::Llama;

/// Read a one-element tensor as f64.
pub fn scalar<B: Backend>(t: Tensor<B, 1>) -> f64 {
    t.into_data()
        .convert::<f64>()
        .to_vec::<f64>()
        .ok()
        .and_then(|v| v.first().copied())
        .unwrap_or(f64::NAN)
}

/// A tensor's values as f32 on the host (no copy when the backend hands over a uniquely
/// held f32 host buffer).
pub fn host_f32<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .unwrap_or_default()
}

/// Flat f32 view of a tensor (a free reshape; a cast only for non-f32 tensors).
fn flat_f32<B: Backend, const D: usize>(t: Tensor<B, D>) -> Tensor<B, 1> {
    let n = t.shape().num_elements();
    let t = t.reshape([n]);
    if t.dtype() == DType::F32 {
        t
    } else {
        t.cast(DType::F32)
    }
}

/// Summed gradients of the trainable parameters for one optimizer step.
pub struct GradBuffer<B: Backend> {
    grads: HashMap<ParamId, Tensor<B, 1>>,
    /// Parameters in the order they were first collected (the model's visiting order):
    /// sums over all gradients run in this order, so they do not depend on the map's
    /// per-process hashing, and every rank packs its buckets alike.
    order: Vec<ParamId>,
    /// Sums are held in f64 (see [`GradBuffer::wide`]).
    wide: bool,
}

impl<B: Backend> Default for GradBuffer<B> {
    fn default() -> Self {
        GradBuffer {
            grads: HashMap::new(),
            order: Vec::new(),
            wide: false,
        }
    }
}

struct Collect<'a, AB: AutodiffBackend> {
    grads: &'a mut AB::Gradients,
    into: &'a mut GradBuffer<AB::InnerBackend>,
}

impl<AB: AutodiffBackend> ModuleVisitor<AB> for Collect<'_, AB> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<AB, D>>) {
        if let Some(g) = param.grad_remove(self.grads) {
            let g = flat_f32(g);
            let g = if self.into.wide {
                g.cast(DType::F64)
            } else {
                g
            };
            let sum = match self.into.grads.remove(&param.id) {
                Some(prev) => prev + g,
                None => {
                    self.into.order.push(param.id);
                    g
                }
            };
            self.into.grads.insert(param.id, sum);
        }
    }
}

impl<B: Backend> GradBuffer<B> {
    /// A buffer that sums in f64. A sum of a few f32 gradients is then exact in practice
    /// (or off by one rounding of the exact value), whatever the order and grouping of
    /// its terms: `((g1 + g2) + g3) + g4` on one process and `(g1 + g2) + (g3 + g4)` over
    /// two ranks round to the same f32, so a step's gradient does not depend on how its
    /// micro-batches were spread over ranks. [`GradBuffer::reduce`] rounds to f32.
    pub fn wide() -> Self {
        GradBuffer {
            wide: true,
            ..Default::default()
        }
    }

    /// Add the gradients of `model`'s parameters found in `grads` (frozen parameters
    /// have none).
    pub fn accumulate<AB>(&mut self, model: &Llama<AB>, grads: &mut AB::Gradients)
    where
        AB: AutodiffBackend<InnerBackend = B>,
    {
        model.visit(&mut Collect::<AB> { grads, into: self });
    }

    /// Number of parameters with a gradient.
    pub fn len(&self) -> usize {
        self.grads.len()
    }

    /// Whether no gradient has been collected.
    pub fn is_empty(&self) -> bool {
        self.grads.is_empty()
    }

    /// The gradient of parameter `id`, flattened.
    pub fn get(&self, id: ParamId) -> Option<&Tensor<B, 1>> {
        self.grads.get(&id)
    }

    /// Sum every gradient and `extras` (a few scalars: loss, counts) over the ranks of
    /// `comm`, in buckets of at most `bucket_len` values (f64), in the order the
    /// gradients were collected (the model's order, the same on every rank); the
    /// gradients are then f32 again. With one rank only the rounding to f32 happens.
    pub fn reduce(&mut self, comm: &dyn Collective, bucket_len: usize, extras: &mut [f64]) {
        if comm.world() == 1 {
            if self.wide {
                for g in self.grads.values_mut() {
                    *g = g.clone().cast(DType::F32);
                }
                self.wide = false;
            }
            return;
        }
        let cap = bucket_len.max(extras.len() + 1);
        let mut bucket: Vec<f64> = Vec::with_capacity(cap);
        bucket.extend_from_slice(extras);
        let mut extras_out = Some(extras);
        // (parameter index, offset in it, length) of each run of values in the bucket.
        let mut spans: Vec<(usize, usize, usize)> = Vec::new();
        let mut outs: Vec<Vec<f32>> = Vec::with_capacity(self.order.len());
        let mut devices = Vec::with_capacity(self.order.len());
        let mut flush = |bucket: &mut Vec<f64>,
                         spans: &mut Vec<(usize, usize, usize)>,
                         outs: &mut Vec<Vec<f32>>| {
            comm.all_reduce_sum(bucket);
            let mut at = 0;
            if let Some(e) = extras_out.take() {
                e.copy_from_slice(&bucket[..e.len()]);
                at = e.len();
            }
            for (i, off, len) in spans.drain(..) {
                for (o, v) in outs[i][off..off + len]
                    .iter_mut()
                    .zip(&bucket[at..at + len])
                {
                    *o = *v as f32;
                }
                at += len;
            }
            bucket.clear();
        };
        let mut present = Vec::with_capacity(self.order.len());
        for id in std::mem::take(&mut self.order) {
            let Some(g) = self.grads.remove(&id) else {
                continue;
            };
            let i = outs.len();
            present.push(id);
            devices.push(g.device());
            let values: Vec<f64> = g
                .into_data()
                .convert::<f64>()
                .into_vec::<f64>()
                .unwrap_or_default();
            outs.push(vec![0.0; values.len()]);
            let mut off = 0;
            while off < values.len() {
                let take = (cap - bucket.len()).min(values.len() - off);
                bucket.extend_from_slice(&values[off..off + take]);
                spans.push((i, off, take));
                off += take;
                if bucket.len() == cap {
                    flush(&mut bucket, &mut spans, &mut outs);
                }
            }
        }
        if !bucket.is_empty() || !spans.is_empty() {
            flush(&mut bucket, &mut spans, &mut outs);
        }
        for ((id, values), device) in present.iter().zip(outs).zip(devices) {
            let n = values.len();
            let t = Tensor::<B, 1>::from_data(TensorData::new(values, [n]), (&device, DType::F32));
            self.grads.insert(*id, t);
        }
        self.order = present;
        self.wide = false;
    }

    /// L2 norm over every collected gradient (one device sync), summed in collection
    /// order.
    pub fn global_norm(&self) -> f64 {
        let mut total: Option<Tensor<B, 1>> = None;
        for g in self.order.iter().map(|id| &self.grads[id]) {
            let s = g.clone().square().sum();
            total = Some(match total {
                Some(t) => t + s,
                None => s,
            });
        }
        total.map_or(0.0, |t| scalar(t).sqrt())
    }
}

/// Hyper-parameters of AdamW.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Added to the denominator.
    pub eps: f64,
    /// Decoupled weight decay (for parameters that decay).
    pub weight_decay: f64,
}

/// Per-parameter state: moments and, for low-precision parameters, the f32 master.
#[derive(Clone)]
pub struct Moments<B: Backend> {
    /// First moment, flat.
    pub m: Tensor<B, 1>,
    /// Second moment, flat.
    pub v: Tensor<B, 1>,
    /// f32 master weights when the model parameter is not f32.
    pub master: Option<Tensor<B, 1>>,
}

/// AdamW state over the trainable parameters.
pub struct AdamW<B: Backend> {
    /// Hyper-parameters.
    pub config: AdamWConfig,
    /// Steps taken (`t` of the bias correction).
    pub t: u64,
    /// State by parameter path.
    pub state: BTreeMap<String, Moments<B>>,
    /// Update f32 parameters on the host in one pass ([`adamw_update`]); for backends
    /// whose tensors live in host memory, where reading them out is free.
    pub host_update: bool,
}

/// The scalars of one AdamW update of one parameter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UpdateScalars {
    /// Step size `lr / (1 - beta1^t)` (bias correction of the first moment included).
    pub step: f32,
    /// Gradient multiplier (clipping).
    pub grad_scale: f32,
    /// First-moment decay and `1 - beta1` (rounded from f64, as the tensor path does).
    pub beta1: (f32, f32),
    /// Second-moment decay and `1 - beta2`.
    pub beta2: (f32, f32),
    /// Added to the denominator.
    pub eps: f32,
    /// `1 - lr * weight_decay`, or 1 for parameters without decay.
    pub decay: f32,
    /// Bias correction of the second moment, `sqrt(1 - beta2^t)`.
    pub bc2_sqrt: f32,
}

/// AdamW on host slices, in one parallel pass: the formulas of the module doc, element
/// by element, in place on `p`, `m` and `v`.
pub fn adamw_update(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], k: UpdateScalars) {
    use rayon::prelude::*;
    const CHUNK: usize = 1 << 15;
    p.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK))
        .zip(v.par_chunks_mut(CHUNK))
        .for_each(|(((p, g), m), v)| {
            for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m).zip(v) {
                let g = g * k.grad_scale;
                *m = *m * k.beta1.0 + g * k.beta1.1;
                *v = *v * k.beta2.0 + g * g * k.beta2.1;
                let denom = v.sqrt() / k.bc2_sqrt + k.eps;
                *p = *p * k.decay - *m / denom * k.step;
            }
        });
}

/// [`AdamW`]'s update of an f32 parameter through [`adamw_update`]: the new parameter
/// and its moments (`state`, or zeros for a first step).
fn update_on_host<B: Backend>(
    state: Option<Moments<B>>,
    param: Tensor<B, 1>,
    grad: Tensor<B, 1>,
    k: UpdateScalars,
) -> (Tensor<B, 1>, Moments<B>) {
    let device = param.device();
    let n = param.shape().num_elements();
    let (mut m, mut v) = match state {
        Some(s) => (host_f32(s.m), host_f32(s.v)),
        None => (vec![0.0; n], vec![0.0; n]),
    };
    let mut p = host_f32(param);
    let g = host_f32(grad);
    adamw_update(&mut p, &g, &mut m, &mut v, k);
    let up = |x: Vec<f32>| Tensor::<B, 1>::from_data(TensorData::new(x, [n]), &device);
    let moments = Moments {
        m: up(m),
        v: up(v),
        master: None,
    };
    (up(p), moments)
}

/// Host copy of the optimiser state (for checkpoints): per path `m`, `v`, master.
pub type HostState = BTreeMap<String, (Vec<f32>, Vec<f32>, Option<Vec<f32>>)>;

impl<B: Backend> AdamW<B> {
    /// A fresh optimiser.
    pub fn new(config: AdamWConfig) -> Self {
        AdamW {
            config,
            t: 0,
            state: BTreeMap::new(),
            host_update: false,
        }
    }

    /// Scalars of optimiser state held (m + v + masters).
    pub fn state_numel(&self) -> usize {
        self.state
            .values()
            .map(|s| {
                let n = s.m.shape().num_elements();
                n * if s.master.is_some() { 3 } else { 2 }
            })
            .sum()
    }

    /// One update of every parameter that has a gradient in `grads`, at learning rate
    /// `lr`, gradients scaled by `grad_scale` (clipping). `decays(path)` says whether a
    /// parameter gets weight decay. Consumes the buffer.
    pub fn step<AB>(
        &mut self,
        model: Llama<AB>,
        grads: GradBuffer<B>,
        lr: f64,
        grad_scale: f64,
        decays: &dyn Fn(&[String]) -> bool,
    ) -> Llama<AB>
    where
        AB: AutodiffBackend<InnerBackend = B>,
    {
        self.t += 1;
        let mut mapper = StepMapper::<B> {
            opt: self,
            grads: grads.grads,
            lr,
            grad_scale,
            decays,
            path: PathStack::default(),
        };
        model.map(&mut mapper)
    }

    /// The scalars of an update at learning rate `lr` and step `self.t`.
    fn scalars(&self, lr: f64, grad_scale: f64, decay: bool) -> UpdateScalars {
        let c = self.config;
        let t = self.t as i32;
        UpdateScalars {
            step: (lr / (1.0 - c.beta1.powi(t))) as f32,
            grad_scale: grad_scale as f32,
            beta1: (c.beta1 as f32, (1.0 - c.beta1) as f32),
            beta2: (c.beta2 as f32, (1.0 - c.beta2) as f32),
            eps: c.eps as f32,
            decay: if decay && c.weight_decay > 0.0 {
                (1.0 - lr * c.weight_decay) as f32
            } else {
                1.0
            },
            bc2_sqrt: (1.0 - c.beta2.powi(t)).sqrt() as f32,
        }
    }

    /// One parameter's update: on the host when [`AdamW::host_update`] and the
    /// parameter is f32, otherwise as tensor operations (the same formulas, with an f32
    /// master copy for lower-precision parameters).
    fn update(
        &mut self,
        path: &str,
        param: Tensor<B, 1>,
        grad: Tensor<B, 1>,
        k: UpdateScalars,
    ) -> Tensor<B, 1> {
        let low_precision = param.dtype() != DType::F32;
        if self.host_update && !low_precision {
            let (out, moments) = update_on_host(self.state.remove(path), param, grad, k);
            self.state.insert(path.to_string(), moments);
            return out;
        }
        let (m, v, master) = match self.state.remove(path) {
            Some(s) => (s.m, s.v, s.master),
            None => {
                let z = Tensor::<B, 1>::zeros_like(&grad);
                (z.clone(), z, None)
            }
        };
        let p = match master {
            Some(mp) => mp,
            None if low_precision => param.clone().cast(DType::F32),
            None => param.clone(),
        };
        let g = if k.grad_scale == 1.0 {
            grad
        } else {
            grad.mul_scalar(k.grad_scale)
        };
        let m = m.mul_scalar(k.beta1.0) + g.clone().mul_scalar(k.beta1.1);
        let v = v.mul_scalar(k.beta2.0) + g.square().mul_scalar(k.beta2.1);
        let p = if k.decay == 1.0 {
            p
        } else {
            p.mul_scalar(k.decay)
        };
        let denom = v.clone().sqrt().div_scalar(k.bc2_sqrt).add_scalar(k.eps);
        let p = p - (m.clone() / denom).mul_scalar(k.step);
        let (out, master) = if low_precision {
            (p.clone().cast(param.dtype()), Some(p))
        } else {
            (p, None)
        };
        self.state
            .insert(path.to_string(), Moments { m, v, master });
        out
    }

    /// The state on the host (checkpoints).
    pub fn to_host(&self) -> HostState {
        self.state
            .iter()
            .map(|(k, s)| {
                (
                    k.clone(),
                    (
                        host_f32(s.m.clone()),
                        host_f32(s.v.clone()),
                        s.master.clone().map(host_f32),
                    ),
                )
            })
            .collect()
    }

    /// Restore state saved by [`AdamW::to_host`].
    pub fn load_host(&mut self, t: u64, host: HostState, device: &B::Device) {
        let up = |v: Vec<f32>| {
            let n = v.len();
            Tensor::<B, 1>::from_data(TensorData::new(v, [n]), (device, DType::F32))
        };
        self.t = t;
        self.state = host
            .into_iter()
            .map(|(k, (m, v, master))| {
                (
                    k,
                    Moments {
                        m: up(m),
                        v: up(v),
                        master: master.map(up),
                    },
                )
            })
            .collect();
    }
}

struct StepMapper<'a, B: Backend> {
    opt: &'a mut AdamW<B>,
    grads: HashMap<ParamId, Tensor<B, 1>>,
    lr: f64,
    grad_scale: f64,
    decays: &'a dyn Fn(&[String]) -> bool,
    path: PathStack,
}

impl<AB: AutodiffBackend> ModuleMapper<AB> for StepMapper<'_, AB::InnerBackend> {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.enter(name);
    }
    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.exit();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<AB, D>>) -> Param<Tensor<AB, D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(grad) = self.grads.remove(&id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let shape = tensor.shape();
        let n = shape.num_elements();
        let inner = tensor.inner().reshape([n]);
        let decay = (self.decays)(&self.path.0);
        let path = self.path.dotted();
        let scalars = self.opt.scalars(self.lr, self.grad_scale, decay);
        let updated = self.opt.update(&path, inner, grad, scalars);
        let tensor = Tensor::<AB, D>::from_inner(updated.reshape(shape)).require_grad();
        Param::from_mapped_value(id, tensor, mapper)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;
    use crate::model::Cpu;

    /// Two ranks holding the same gradients: the sum doubles; records bucket lengths.
    struct Twice(RefCell<Vec<usize>>);

    impl Collective for Twice {
        fn rank(&self) -> usize {
            0
        }
        fn world(&self) -> usize {
            2
        }
        fn all_reduce_sum(&self, buf: &mut [f64]) {
            self.0.borrow_mut().push(buf.len());
            buf.iter_mut().for_each(|v| *v *= 2.0);
        }
        fn barrier(&self) {}
    }

    #[test]
    fn reduce_sums_in_buckets_and_returns_f32() {
        let device = Default::default();
        let mut buffer = GradBuffer::<Cpu>::wide();
        let sizes = [5usize, 1, 12, 3];
        let ids: Vec<ParamId> = sizes.iter().map(|_| ParamId::new()).collect();
        for (id, &n) in ids.iter().zip(&sizes) {
            let values: Vec<f32> = (0..n).map(|i| i as f32 + 0.25).collect();
            let t = Tensor::<Cpu, 1>::from_data(TensorData::new(values, [n]), &device);
            buffer.grads.insert(*id, t.cast(DType::F64));
            buffer.order.push(*id);
        }
        let comm = Twice(RefCell::new(Vec::new()));
        let mut extras = [1.5, 4.0];
        buffer.reduce(&comm, 7, &mut extras);
        assert_eq!(extras, [3.0, 8.0]);
        // 2 extras + 21 values in buckets of at most 7, the 12-value gradient split.
        assert_eq!(*comm.0.borrow(), vec![7, 7, 7, 2]);
        for (id, &n) in ids.iter().zip(&sizes) {
            let g = buffer.get(*id).unwrap();
            assert_eq!(g.dtype(), DType::F32);
            let expected: Vec<f32> = (0..n).map(|i| 2.0 * (i as f32 + 0.25)).collect();
            assert_eq!(host_f32(g.clone()), expected);
        }
    }
}
