//! The allocator slayer's binaries run with: mimalloc, told to keep freed memory for
//! reuse instead of handing it back to the OS.
//!
//! Training and scoring allocate and free tensors of tens to hundreds of MiB many times
//! a second (activations, logits, gradients). glibc serves every block above 32 MiB with
//! a fresh `mmap` and returns it with `munmap` on free (its mmap threshold cannot be raised
//! past that), so each such tensor is page-faulted and zeroed by the kernel again: a fifth
//! of a CPU training step's time went to the kernel. mimalloc with purging off reuses
//! the pages; resident memory then stays at its peak until the process exits, which suits
//! a batch tool. Numbers: docs/benchmarks.md ("Allocator").
//!
//! A binary opts in with
//! ```ignore
//! #[global_allocator]
//! static ALLOCATOR: slayer_stages::alloc::Allocator = slayer_stages::alloc::Allocator;
//! ```
//! and calls [`keep_freed_memory`] first thing in `main`.

/// The allocator type for `#[global_allocator]`.
pub use mimalloc::MiMalloc as Allocator;

/// `mi_option_purge_delay` in mimalloc's `mi_option_e` (v2 and v3 headers of
/// libmimalloc-sys 0.1.49 both place it at 15); -1 means "never purge".
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Never return freed memory to the OS (mimalloc's `purge_delay = -1`); a no-op for the
/// process unless mimalloc is its global allocator. `SLAYER_ALLOC_PURGE=1` keeps
/// mimalloc's default (purge after a short delay) for memory-tight runs.
pub fn keep_freed_memory() {
    if std::env::var_os("SLAYER_ALLOC_PURGE").is_some_and(|v| v == "1") {
        return;
    }
    // SAFETY: sets one integer option; mimalloc reads options atomically.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}
