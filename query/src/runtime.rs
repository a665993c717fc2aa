//! Where query work runs: a tokio runtime of its own, apart from the one that serves
//! connections, with threads whose stacks hold the deepest plan the statement limits
//! allow (the way InfluxDB 3 keeps DataFusion off its I/O runtime).
//!
//! Planning and execution are CPU work; on the server's own workers a heavy query
//! would starve `/health` and every other connection, and a deep plan would overflow a
//! worker's small stack and abort the process.

use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::runtime::{Handle, Runtime};
use tokio::task::JoinHandle;

/// Stack of each query thread. Virtual memory only: pages are touched as deep as a
/// plan recurses, and the statement limits keep that far below this.
pub const QUERY_THREAD_STACK_BYTES: usize = 256 * 1024 * 1024;

/// A tokio runtime for planning and running queries.
#[derive(Clone)]
pub struct QueryRuntime {
    handle: Handle,
    /// Keeps the runtime alive while any handle is.
    _owner: Arc<Owner>,
}

/// Shuts the runtime down without blocking when the last handle goes (a runtime may
/// not be dropped from within async code).
struct Owner(Mutex<Option<Runtime>>);

impl Drop for Owner {
    fn drop(&mut self) {
        let runtime = self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(runtime) = runtime {
            runtime.shutdown_background();
        }
    }
}

impl std::fmt::Debug for QueryRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryRuntime").finish_non_exhaustive()
    }
}

impl QueryRuntime {
    /// A runtime with `threads` workers (at least one) named `hourlake-query`.
    pub fn new(threads: usize) -> std::io::Result<QueryRuntime> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            // Local file reads go through spawn_blocking; they need no more than this.
            .max_blocking_threads(64)
            .thread_stack_size(QUERY_THREAD_STACK_BYTES)
            .thread_name("hourlake-query")
            .enable_all()
            .build()?;
        Ok(QueryRuntime {
            handle: runtime.handle().clone(),
            _owner: Arc::new(Owner(Mutex::new(Some(runtime)))),
        })
    }

    /// One worker per core.
    pub fn per_core() -> std::io::Result<QueryRuntime> {
        QueryRuntime::new(std::thread::available_parallelism().map_or(2, usize::from))
    }

    /// Runs `future` on the query runtime. Dropping the returned guard aborts it (at
    /// its next yield), so a caller that gives up also stops the work.
    pub fn spawn<F>(&self, future: F) -> Task<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        Task(self.handle.spawn(future))
    }
}

/// A task on the query runtime, aborted when dropped.
pub struct Task<T>(JoinHandle<T>);

impl<T> Task<T> {
    /// Aborts the task (it stops at its next yield point).
    pub fn abort_handle(&self) -> tokio::task::AbortHandle {
        self.0.abort_handle()
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> Future for Task<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}
