//! What push and pull share: running transfer tasks a bounded number at a time on the
//! remote's runtime, and wrapping a request's error with the key it was about.

use std::future::Future;

use futures::StreamExt;

use crate::error::S3Error;

/// Runs `task(item)` for every item, at most `concurrency` at once (each on its own
/// tokio task, so hashing spreads over the runtime's workers), and waits for all of
/// them. Returns every result, or the first error once the others have finished (no
/// task is left writing into a directory that the caller is about to remove).
pub(crate) async fn run_all<I, F, Fut, T>(
    items: I,
    concurrency: usize,
    task: F,
) -> Result<Vec<T>, S3Error>
where
    I: IntoIterator,
    F: Fn(I::Item) -> Fut,
    Fut: Future<Output = Result<T, S3Error>> + Send + 'static,
    T: Send + 'static,
{
    let mut running = futures::stream::iter(items)
        .map(|item| tokio::spawn(task(item)))
        .buffer_unordered(concurrency.max(1));
    let mut done = Vec::new();
    let mut first_error = None;
    while let Some(joined) = running.next().await {
        match joined {
            Ok(Ok(value)) => done.push(value),
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(S3Error::Task(e.to_string()));
            }
        }
    }
    first_error.map_or(Ok(done), Err)
}

/// Wraps an `object_store` error as [`S3Error::Request`] naming `key`.
pub(crate) fn request(op: &'static str, key: &str) -> impl FnOnce(object_store::Error) -> S3Error {
    move |source| S3Error::Request {
        op,
        key: key.to_string(),
        source,
    }
}
