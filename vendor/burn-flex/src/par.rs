//! Splitting elementwise kernels over the rayon pool (added by slayer; see README.md).
//!
//! Upstream burn-flex runs every elementwise kernel (binary, scalar and unary ops) on the
//! calling thread. On a 2-core CPU that left one core idle for about half of a training
//! step. These helpers split a buffer into chunks of at least [`MIN_CHUNK`] elements and
//! run them on rayon's pool; smaller buffers, or builds without the `rayon` feature, run
//! on the calling thread as before. Every element is computed by the same scalar or SIMD
//! code as upstream, so results are bit-identical.

/// Fewest elements worth handing to another thread.
pub(crate) const MIN_CHUNK: usize = 1 << 15;

/// Chunk length for `n` elements: about four chunks per thread, never below
/// [`MIN_CHUNK`], rounded up to a multiple of `align` (a row length, so no chunk splits
/// a row).
#[cfg(feature = "rayon")]
fn chunk_len(n: usize, align: usize) -> usize {
    let align = align.max(1);
    let per = n.div_ceil(rayon::current_num_threads().max(1) * 4).max(MIN_CHUNK);
    per.div_ceil(align) * align
}

/// Run `f(chunk, offset)` over `dst` cut into chunks whose lengths are multiples of
/// `align` (except possibly the last), in parallel when `dst` is large.
pub(crate) fn for_each_chunk_mut<E, F>(dst: &mut [E], align: usize, f: F)
where
    E: Send,
    F: Fn(&mut [E], usize) + Send + Sync,
{
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        let n = dst.len();
        if n >= 2 * MIN_CHUNK && rayon::current_num_threads() > 1 {
            let chunk = chunk_len(n, align);
            dst.par_chunks_mut(chunk)
                .enumerate()
                .for_each(|(i, c)| f(c, i * chunk));
            return;
        }
    }
    let _ = align;
    f(dst, 0);
}

/// Like [`for_each_chunk_mut`] for outputs that each cost `weight` elements of work
/// (e.g. one sum per row of `weight` inputs): split when the total work is large.
pub(crate) fn for_each_weighted_chunk_mut<E, F>(dst: &mut [E], weight: usize, f: F)
where
    E: Send,
    F: Fn(&mut [E], usize) + Send + Sync,
{
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        let (n, weight) = (dst.len(), weight.max(1));
        if n > 1 && n.saturating_mul(weight) >= 2 * MIN_CHUNK && rayon::current_num_threads() > 1 {
            let chunk = chunk_len(n.saturating_mul(weight), weight) / weight;
            dst.par_chunks_mut(chunk.max(1))
                .enumerate()
                .for_each(|(i, c)| f(c, i * chunk.max(1)));
            return;
        }
    }
    let _ = weight;
    f(dst, 0);
}

/// A vector of `n` outputs, `fill(chunk, offset)` writing every element of each chunk
/// of its uninitialised buffer (chunks as in [`for_each_chunk_mut`]). The chunks are
/// plain slices, so a simple loop over one vectorises; rayon's `collect` writes one
/// item at a time through its consumer and did not.
fn collect_chunks<R, F>(n: usize, fill: F) -> alloc::vec::Vec<R>
where
    R: Send,
    F: Fn(&mut [core::mem::MaybeUninit<R>], usize) + Send + Sync,
{
    let mut out = alloc::vec::Vec::with_capacity(n);
    for_each_chunk_mut(&mut out.spare_capacity_mut()[..n], 1, fill);
    // SAFETY: `fill` wrote each of the first `n` elements (its contract; both callers
    // below write every element of the chunk they are given).
    unsafe { out.set_len(n) };
    out
}

/// `src.iter().map(op).collect()`, in parallel when `src` is large.
pub(crate) fn map_collect<E, R, F>(src: &[E], op: F) -> alloc::vec::Vec<R>
where
    E: Sync + Copy,
    R: Send,
    F: Fn(E) -> R + Send + Sync,
{
    collect_chunks(src.len(), |out, at| {
        let src = &src[at..at + out.len()];
        for (o, &x) in out.iter_mut().zip(src) {
            o.write(op(x));
        }
    })
}

/// `a.iter().zip(b).map(op).collect()`, in parallel when large.
pub(crate) fn zip_collect<E, R, F>(a: &[E], b: &[E], op: F) -> alloc::vec::Vec<R>
where
    E: Sync + Copy,
    R: Send,
    F: Fn(E, E) -> R + Send + Sync,
{
    let n = a.len().min(b.len());
    collect_chunks(n, |out, at| {
        let (a, b) = (&a[at..at + out.len()], &b[at..at + out.len()]);
        for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
            o.write(op(x, y));
        }
    })
}
