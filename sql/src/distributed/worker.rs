//! What a worker process serves: tasks of distributed plans, run with hourlake's
//! functions, the lake's object store and one memory pool.

use std::future::Future;
use std::sync::Arc;

use datafusion::error::DataFusionError;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::SessionState;
use datafusion::prelude::SessionContext;
use datafusion_distributed::{DistributedExt, Worker, WorkerQueryContext};
use hourlake_catalog::Lake;
use tokio::net::TcpListener;

use crate::distributed::HourlakeCodec;
use crate::SqlError;

/// The version a server and its workers must share: plans are exchanged in a format
/// only the same build is sure to read alike.
pub const WORKER_VERSION: &str = concat!("hourlake-", env!("CARGO_PKG_VERSION"));

/// A worker over one lake: `hourlake worker`.
pub struct WorkerProcess {
    worker: Worker,
}

impl WorkerProcess {
    /// A worker reading `lake`'s object store, its tasks together holding at most
    /// `memory_limit` bytes (then they spill or fail); `on_task` is called for every
    /// task it starts (for metrics).
    pub fn new(
        lake: &Lake,
        memory_limit: usize,
        on_task: Arc<dyn Fn() + Send + Sync>,
    ) -> Result<WorkerProcess, SqlError> {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(FairSpillPool::new(memory_limit)))
            .build_arc()?;
        lake.register_object_store(&runtime)?;
        let worker = Worker::from_session_builder(move |ctx: WorkerQueryContext| {
            on_task();
            async move { task_state(ctx) }
        })
        .with_runtime_env(runtime)
        .with_version(WORKER_VERSION);
        Ok(WorkerProcess { worker })
    }

    /// Serves tasks on `listener` until `shutdown` completes.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), SqlError> {
        let address = listener
            .local_addr()
            .map_or_else(|_| "(unknown)".to_string(), |a| a.to_string());
        tonic::transport::Server::builder()
            .add_service(self.worker.into_worker_server())
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                shutdown,
            )
            .await
            .map_err(|e| SqlError::Worker {
                worker: address,
                message: e.to_string(),
            })
    }
}

/// The session one task runs in: hourlake's codec and functions (resolved by name when
/// the plan is decoded), the worker's runtime.
fn task_state(ctx: WorkerQueryContext) -> Result<SessionState, DataFusionError> {
    let state = ctx
        .builder
        .with_distributed_user_codec(HourlakeCodec)
        .build();
    let session = SessionContext::new_with_state(state);
    crate::functions::register_all(&session);
    Ok(session.state())
}
