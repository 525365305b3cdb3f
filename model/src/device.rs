//! Device selection: [`DeviceSpec`] parsed from `cpu` / `cuda` / `cuda:N`, the CPU
//! backend alias [`Cpu`] (burn's Flex), and [`DeviceSpec::dispatch`], which runs a
//! backend-generic [`BackendTask`] on the chosen backend.
//!
//! Asking for CUDA in a build without the `cuda` feature, or on a machine without an
//! NVIDIA driver or with fewer GPUs than the index, is a one-line [`ModelError::Device`]
//! instead of burn's panic: the driver is probed (`/proc/driver/nvidia`) before burn
//! touches it, and the first allocation runs under `catch_unwind` as a last guard.

use std::fmt;
use std::str::FromStr;

use burn::prelude::Backend;

use super::error::{ModelError, Result};

/// The CPU backend: burn's Flex (multi-threaded with `rayon`, SIMD with `simd`).
pub type Cpu = burn::backend::Flex;

/// The CUDA backend (only with the `cuda` feature).
#[cfg(feature = "cuda")]
pub type Cuda = burn::backend::Cuda;

/// Where a model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DeviceSpec {
    /// The Flex CPU backend.
    #[default]
    Cpu,
    /// CUDA GPU with this index.
    Cuda(usize),
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => write!(f, "cpu"),
            DeviceSpec::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl FromStr for DeviceSpec {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim().to_ascii_lowercase();
        if t == "cpu" {
            return Ok(DeviceSpec::Cpu);
        }
        if t == "cuda" || t == "gpu" {
            return Ok(DeviceSpec::Cuda(0));
        }
        if let Some(index) = t.strip_prefix("cuda:") {
            return index.parse().map(DeviceSpec::Cuda).map_err(|_| {
                ModelError::Device(format!(
                    "`{s}`: the index after `cuda:` must be a number, e.g. cuda:0"
                ))
            });
        }
        Err(ModelError::Device(format!(
            "unknown device `{s}`; expected `cpu`, `cuda` or `cuda:N`"
        )))
    }
}

/// Work generic over the backend, run by [`DeviceSpec::dispatch`].
pub trait BackendTask {
    /// What the task returns.
    type Output;
    /// Run on backend `B` with `device`.
    fn run<B: Backend>(self, device: B::Device) -> Self::Output;
}

impl DeviceSpec {
    /// Short backend name for fingerprints and logs (`flex`, `cuda`).
    pub fn backend_name(&self) -> &'static str {
        match self {
            DeviceSpec::Cpu => "flex",
            DeviceSpec::Cuda(_) => "cuda",
        }
    }

    /// The kind of device, `cpu` or `cuda` (what a stage's results can depend on: the
    /// CUDA index changes none).
    pub fn kind(&self) -> &'static str {
        match self {
            DeviceSpec::Cpu => "cpu",
            DeviceSpec::Cuda(_) => "cuda",
        }
    }

    /// Check that this device can be used, without panicking.
    pub fn check(&self) -> Result<()> {
        match self {
            DeviceSpec::Cpu => Ok(()),
            DeviceSpec::Cuda(index) => check_cuda(*index),
        }
    }

    /// Run `task` on this device's backend, after [`DeviceSpec::check`].
    pub fn dispatch<T: BackendTask>(&self, task: T) -> Result<T::Output> {
        self.check()?;
        match self {
            DeviceSpec::Cpu => Ok(task.run::<Cpu>(Default::default())),
            #[cfg(feature = "cuda")]
            DeviceSpec::Cuda(index) => {
                Ok(task.run::<Cuda>(burn::backend::cuda::CudaDevice { index: *index }))
            }
            #[cfg(not(feature = "cuda"))]
            DeviceSpec::Cuda(_) => Err(no_cuda_feature()),
        }
    }
}

#[cfg(not(feature = "cuda"))]
fn no_cuda_feature() -> ModelError {
    ModelError::Device("this slayer was built without CUDA support; rebuild with `--features cuda` or use --device cpu".into())
}

#[cfg(not(feature = "cuda"))]
fn check_cuda(_index: usize) -> Result<()> {
    Err(no_cuda_feature())
}

/// Number of NVIDIA GPUs the driver reports, or an error when there is no driver.
#[cfg(feature = "cuda")]
pub fn cuda_device_count() -> Result<usize> {
    let gpus = std::path::Path::new("/proc/driver/nvidia/gpus");
    match std::fs::read_dir(gpus) {
        Ok(entries) => Ok(entries.filter_map(|e| e.ok()).count()),
        Err(_) => Err(ModelError::Device(
            "no NVIDIA driver found (no /proc/driver/nvidia); use --device cpu".into(),
        )),
    }
}

#[cfg(feature = "cuda")]
fn check_cuda(index: usize) -> Result<()> {
    use burn::prelude::Tensor;
    let count = cuda_device_count()?;
    if index >= count {
        return Err(ModelError::Device(format!(
            "cuda:{index} requested but the driver reports {count} GPU(s)"
        )));
    }
    // burn's CUDA runtime panics when the device cannot be initialised; turn that into
    // an error. The panic hook is silenced meanwhile so no backtrace is printed.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let probe = std::panic::catch_unwind(|| {
        let device = burn::backend::cuda::CudaDevice { index };
        let t = Tensor::<Cuda, 1>::ones([1], &device);
        t.into_data()
    });
    std::panic::set_hook(hook);
    match probe {
        Ok(_) => Ok(()),
        Err(payload) => {
            let why = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown error".into());
            let first = why.lines().next().unwrap_or("").to_string();
            Err(ModelError::Device(format!(
                "cannot initialise cuda:{index}: {first}"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_devices() {
        assert_eq!("cpu".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cpu);
        assert_eq!("cuda:1".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(1));
        assert_eq!("CUDA".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(0));
        let err = "tpu".parse::<DeviceSpec>().unwrap_err().to_string();
        assert!(err.contains("expected `cpu`, `cuda` or `cuda:N`"), "{err}");
        assert!("cuda:x".parse::<DeviceSpec>().is_err());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_feature_is_one_line_error() {
        let err = DeviceSpec::Cuda(0).check().unwrap_err().to_string();
        assert!(err.contains("--features cuda"), "{err}");
        assert!(!err.contains('\n'));
    }
}
