//! slayer's addition to the vendored crate: f32 products through OpenBLAS.
//!
//! [`sgemm`] takes `gemm::gemm`'s arguments (strided operands, `dst = alpha * dst +
//! beta * lhs * rhs`) and, when every operand has a unit stride in one dimension, runs
//! `cblas_sgemm` on row-major views (transposed where an operand is column-major). With
//! [`Parallelism::Rayon`], the larger output dimension is split into one block per rayon
//! thread and each block is a single-threaded OpenBLAS call, so OpenBLAS's own thread
//! pool (set to one thread) never competes with the caller's.

use core::ffi::c_int;
use std::sync::Once;

use gemm_common::Parallelism;

#[link(name = "openblas")]
extern "C" {
    fn cblas_sgemm(
        layout: c_int,
        trans_a: c_int,
        trans_b: c_int,
        m: c_int,
        n: c_int,
        k: c_int,
        alpha: f32,
        a: *const f32,
        lda: c_int,
        b: *const f32,
        ldb: c_int,
        beta: f32,
        c: *mut f32,
        ldc: c_int,
    );
    fn openblas_set_num_threads(n: c_int);
}

const ROW_MAJOR: c_int = 101;
const NO_TRANS: c_int = 111;
const TRANS: c_int = 112;

/// Below this many multiply-adds a product is not split over threads.
const SPLIT_THRESHOLD: usize = 1 << 21;

/// A `rows x cols` operand as cblas sees it in row-major order: `(transpose, ld)`, or
/// `None` when neither dimension has a unit stride.
fn as_row_major(rows: usize, cols: usize, rs: isize, cs: isize) -> Option<(c_int, usize)> {
    let fits = |v: isize, min: usize| v >= min.max(1) as isize;
    if (cols <= 1 || cs == 1) && (rows <= 1 || fits(rs, cols)) {
        let ld = if rows <= 1 { cols.max(1) } else { rs as usize };
        return Some((NO_TRANS, ld));
    }
    if (rows <= 1 || rs == 1) && (cols <= 1 || fits(cs, rows)) {
        let ld = if cols <= 1 { rows.max(1) } else { cs as usize };
        return Some((TRANS, ld));
    }
    None
}

/// `dst = alpha * dst (if read_dst) + beta * lhs * rhs` for f32 through OpenBLAS.
/// Returns `false`, having done nothing, when the strides do not suit cblas.
///
/// # Safety
/// The same contract as `gemm::gemm`: the pointers and strides describe valid
/// `m x k`, `k x n` and `m x n` matrices, and `dst` does not alias the operands.
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_cs: isize,
    dst_rs: isize,
    read_dst: bool,
    lhs: *const f32,
    lhs_cs: isize,
    lhs_rs: isize,
    rhs: *const f32,
    rhs_cs: isize,
    rhs_rs: isize,
    alpha: f32,
    beta: f32,
    parallelism: Parallelism,
) -> bool {
    if m == 0 || n == 0 {
        return true;
    }
    // A column-major destination: compute the transposed product dst^T = rhs^T lhs^T.
    if dst_rs == 1 && dst_cs != 1 {
        return sgemm(
            n, m, k, dst, dst_rs, dst_cs, read_dst, rhs, rhs_rs, rhs_cs, lhs, lhs_rs, lhs_cs,
            alpha, beta, parallelism,
        );
    }
    let (Some((ta, lda)), Some((tb, ldb)), Some((_, ldc))) = (
        as_row_major(m, k, lhs_rs, lhs_cs),
        as_row_major(k, n, rhs_rs, rhs_cs),
        as_row_major(m, n, dst_rs, dst_cs).filter(|(t, _)| *t == NO_TRANS),
    ) else {
        return false;
    };
    if [m, n, k, lda, ldb, ldc].iter().any(|&d| d > c_int::MAX as usize) {
        return false;
    }
    static SINGLE_THREADED: Once = Once::new();
    SINGLE_THREADED.call_once(|| openblas_set_num_threads(1));

    // One call on the block of rows `r0..r1` and columns `c0..c1` of dst.
    let block = |r0: usize, r1: usize, c0: usize, c1: usize| {
        let a = lhs.offset(r0 as isize * lhs_rs);
        let b = rhs.offset(c0 as isize * rhs_cs);
        let c = dst.offset(r0 as isize * dst_rs + c0 as isize * dst_cs);
        cblas_sgemm(
            ROW_MAJOR,
            ta,
            tb,
            (r1 - r0) as c_int,
            (c1 - c0) as c_int,
            k as c_int,
            beta,
            a,
            lda as c_int,
            b,
            ldb as c_int,
            if read_dst { alpha } else { 0.0 },
            c,
            ldc as c_int,
        );
    };
    let threads = match parallelism {
        Parallelism::None => 1,
        Parallelism::Rayon(0) => rayon::current_num_threads(),
        Parallelism::Rayon(t) => t,
    };
    if threads <= 1 || m * n * k < SPLIT_THRESHOLD {
        block(0, m, 0, n);
        return true;
    }
    // Split the larger output dimension into `threads` blocks, multiples of 16.
    let split_rows = m >= n;
    let len = if split_rows { m } else { n };
    let step = len.div_ceil(threads).div_ceil(16) * 16;
    let starts: Vec<usize> = (0..len).step_by(step).collect();
    let run = |s: usize| {
        let e = (s + step).min(len);
        if split_rows {
            block(s, e, 0, n)
        } else {
            block(0, m, s, e)
        }
    };
    // The blocks write disjoint parts of dst and only read the operands.
    struct Shared<F>(F);
    unsafe impl<F> Sync for Shared<F> {}
    impl<F: Fn(usize)> Shared<F> {
        fn call(&self, start: usize) {
            (self.0)(start)
        }
    }
    let run = Shared(run);
    use rayon::prelude::*;
    starts.into_par_iter().for_each(|s| run.call(s));
    true
}
