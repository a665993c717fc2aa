//! `hourlake worker`: runs tasks of distributed query plans for `hourlake serve --workers`.

use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use hourlake_sql::distributed::WorkerProcess;
use prometheus_client::metrics::counter::Counter;

use crate::config::{CommonArgs, WorkerArgs};
use crate::metrics_server;
use crate::shutdown::Shutdown;

/// The command line of `hourlake worker`.
#[derive(Debug, Args)]
pub struct WorkerCommandArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub worker: WorkerArgs,
}

/// Serves tasks until SIGINT/SIGTERM.
pub async fn run(args: WorkerCommandArgs) -> anyhow::Result<()> {
    let file = args.common.file()?;
    let lake = args.common.lake(&file)?;
    let tasks = Counter::<u64>::default();
    if let Some(addr) = args.worker.metrics_addr {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register(
            "hourlake_worker_tasks",
            "Tasks of distributed query plans this worker started",
            tasks.clone(),
        );
        metrics_server::serve(addr, registry).await?;
    }
    let on_task = Arc::new(move || {
        tasks.inc();
    });
    let worker = WorkerProcess::new(&lake, args.worker.memory_limit(&file)?, on_task)
        .context("starting the worker")?;
    let listen = args.worker.listen(&file);
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("binding the worker to {listen}"))?;
    let bound = listener.local_addr().context("worker address")?;
    tracing::info!("serving query tasks on http://{bound}");
    worker
        .serve(listener, Shutdown::on_signal().wait())
        .await
        .context("worker server")
}
