//! Counts every client request, by operation and outcome, with its latency.

use meridian_node::ClientApi;
use meridian_types::MeridianError;
use std::future::Future;
use std::time::Instant;

/// Runs one request and reports it through [`ClientApi::observe_request`]: `op` is one of
/// `get`, `put`, `delete`, `scan`, `txn`, `compact`; the outcome is `ok` or the error code.
pub(crate) async fn observed<A, T, F>(api: &A, op: &'static str, fut: F) -> Result<T, MeridianError>
where
    A: ClientApi,
    F: Future<Output = Result<T, MeridianError>>,
{
    let started = Instant::now();
    let result = fut.await;
    let outcome = match &result {
        Ok(_) => Ok(()),
        Err(e) => Err(e.code),
    };
    api.observe_request(op, outcome, started.elapsed().as_secs_f64());
    result
}

/// `fut` on the heap. A request's future holds every state of the call below it (routing,
/// batching, Raft) and is several kilobytes; boxed once where it is made, the futures around it
/// (metrics, tonic's own box) stay small and each move copies a pointer, not the whole state.
pub(crate) fn boxed<'a, T>(
    fut: impl Future<Output = T> + Send + 'a,
) -> std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>> {
    Box::pin(fut)
}
