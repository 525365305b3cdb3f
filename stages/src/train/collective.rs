//! [`Collective`]: what data-parallel training needs from the processes it runs in —
//! its rank, the world size, an element-wise sum over all ranks and a barrier.
//!
//! - [`Solo`]: a world of one process (no communication at all).
//! - [`Mpi`]: MPI through the `mpi` crate (rsmpi) on the system's OpenMPI, for CPU ranks
//!   on one machine (`mpirun`, which slayer starts itself) or across a cluster (`srun`).
//!   MPI is the HPC standard for exactly this collective, its all-reduce picks the
//!   algorithm for the message size and the transport (shared memory on one node,
//!   TCP/InfiniBand across nodes), and its runtime already handles what a home-made
//!   protocol would get wrong: a rank that dies makes `mpirun` (or Slurm) end the whole
//!   job instead of leaving the others blocked in a sum that never completes.
//!
//! The CUDA implementation is meant to be NCCL (cudarc's `nccl` module) behind the same
//! trait; it is not written yet.
//!
//! Sums are over `f64`: the trainer accumulates gradients in f64 and rounds them to f32
//! once per step, so the result does not depend on how the micro-batches were split over
//! ranks (see `trainer.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

use super::error::TrainError;

/// The processes of one data-parallel run.
pub trait Collective {
    /// This process's rank, `0..world()`.
    fn rank(&self) -> usize;
    /// Number of ranks.
    fn world(&self) -> usize;
    /// Replace `buf` on every rank by its element-wise sum over all ranks (every rank
    /// passes a buffer of the same length).
    fn all_reduce_sum(&self, buf: &mut [f64]);
    /// Wait until every rank has reached this point.
    fn barrier(&self);
}

/// A world of one process.
pub struct Solo;

impl Collective for Solo {
    fn rank(&self) -> usize {
        0
    }
    fn world(&self) -> usize {
        1
    }
    fn all_reduce_sum(&self, _buf: &mut [f64]) {}
    fn barrier(&self) {}
}

/// MPI's world communicator. Dropping it finalises MPI.
pub struct Mpi {
    world: SimpleCommunicator,
    rank: usize,
    size: usize,
    // Last: MPI_Finalize runs after the communicator is gone.
    _universe: Universe,
}

impl Mpi {
    /// Initialise MPI and wait until all ranks have joined (a barrier), giving up after
    /// `join_timeout`: a rank that never starts, or a launcher that started fewer
    /// processes than it announced, then ends this process with a message (MPI's own
    /// initialisation would wait forever). Errors when MPI was initialised already.
    pub fn join(join_timeout: Duration) -> Result<Self, TrainError> {
        let joined = Arc::new(AtomicBool::new(false));
        let watchdog = {
            let joined = joined.clone();
            std::thread::spawn(move || {
                let step = Duration::from_millis(50);
                let mut waited = Duration::ZERO;
                while waited < join_timeout {
                    if joined.load(Ordering::Acquire) {
                        return;
                    }
                    std::thread::sleep(step);
                    waited += step;
                }
                if !joined.load(Ordering::Acquire) {
                    eprintln!(
                        "slayer train: not every rank joined within {} s (a rank did not \
                         start, or the launcher started fewer processes than it announced); \
                         giving up",
                        join_timeout.as_secs_f64()
                    );
                    std::process::exit(3);
                }
            })
        };
        let Some((universe, _)) = mpi::initialize_with_threading(mpi::Threading::Funneled) else {
            joined.store(true, Ordering::Release);
            let _ = watchdog.join();
            return Err(TrainError::Ranks(
                "MPI is already initialised in this process; run one training per process".into(),
            ));
        };
        let world = universe.world();
        world.barrier();
        joined.store(true, Ordering::Release);
        let _ = watchdog.join();
        Ok(Mpi {
            rank: world.rank() as usize,
            size: world.size() as usize,
            world,
            _universe: universe,
        })
    }
}

impl Collective for Mpi {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world(&self) -> usize {
        self.size
    }
    fn all_reduce_sum(&self, buf: &mut [f64]) {
        let send = buf.to_vec();
        self.world
            .all_reduce_into(&send[..], buf, SystemOperation::sum());
    }
    fn barrier(&self) {
        self.world.barrier();
    }
}
