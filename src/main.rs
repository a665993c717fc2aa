//! `hourlake`: Kafka → hour-partitioned Delta Lake → real-time OLAP SQL.
//!
//! A thin command line over the crates: `up` runs everything, the other commands
//! run one part each. Configuration: see `config.rs` and the README.

mod audit_command;
mod backfill_command;
mod collect_command;
mod config;
mod forget_command;
mod metrics_server;
mod produce;
mod shutdown;
mod sql_command;
mod status_command;
mod worker_command;

use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use hourlake_ingest::Ingestor;

use config::{CollectArgs, CommonArgs, CompactArgs, FileConfig, IngestArgs, ServeArgs};
use hourlake_compactor::Compactor;
use shutdown::Shutdown;

#[derive(Debug, Parser)]
#[command(
    name = "hourlake",
    version,
    about = "Kafka → hour-partitioned Delta Lake → real-time OLAP SQL"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start; boxing the big variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole lakehouse: the event collector, ingest, the compactor and the SQL
    /// server over HTTP.
    Up {
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        ingest: IngestArgs,
        #[command(flatten)]
        compact: CompactArgs,
        #[command(flatten)]
        serve: ServeArgs,
        #[command(flatten)]
        collect: CollectArgs,
    },
    /// Ingest Kafka topics into the lake's Delta tables, exactly once.
    Ingest {
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        ingest: IngestArgs,
    },
    /// Compact small files, remove duplicates, build hourly rollups, checkpoint and vacuum.
    Compact {
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        compact: CompactArgs,
        /// Keep running and compact as data arrives (otherwise one pass, then exit).
        #[arg(long)]
        watch: bool,
        /// Serve Prometheus metrics at http://ADDR/metrics (with --watch).
        #[arg(long, env = "HOURLAKE_METRICS_ADDR")]
        metrics_addr: Option<std::net::SocketAddr>,
    },
    /// Serve SQL over HTTP, and Arrow Flight SQL with --flight.
    Serve {
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        serve: ServeArgs,
    },
    /// The SQL REPL, over a lake folder (--lake) or a Flight SQL server (--connect);
    /// runs -c SQL or a script on stdin and exits when given one.
    Sql(sql_command::SqlArgs),
    /// Generate realistic events into Kafka; prints what was sent as JSON.
    Produce(produce::ProduceArgs),
    /// The lake at a glance: tables (versions, rows, files per hour, commit and
    /// checkpoint ages, compactor leases), rollup coverage, and with --brokers each
    /// partition's lag and the offset account.
    Status(status_command::StatusArgs),
    /// Collect events over HTTP (`POST /v1/events`) into Kafka, answering only once
    /// Kafka holds every accepted event.
    Collect(collect_command::CollectCommandArgs),
    /// Load historical events from NDJSON (gzip) and Parquet files, exactly once per file.
    Backfill(backfill_command::BackfillArgs),
    /// Erase users everywhere (raw events, dead letters, rollups and their sketches, older
    /// file versions); recorded in `erasure_log` with a salted hash, never the id.
    ForgetUser(forget_command::ForgetArgs),
    /// Run tasks of distributed query plans for `hourlake serve --workers`.
    Worker(worker_command::WorkerCommandArgs),
    /// Check that every Kafka offset is in exactly one place (a row, a dead letter, a
    /// removed duplicate, or expired by retention); exits non-zero on a missing or
    /// doubled one.
    Audit(audit_command::AuditArgs),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(
                    "info,deltalake=warn,deltalake_core::writer::stats=error,deltalake_core::kernel::transaction=error,buoyant_kernel=warn,datafusion=warn",
                )
            }),
        )
        .init();
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Up {
            common,
            ingest,
            compact,
            serve,
            collect,
        } => {
            let file = common.file()?;
            let lake = common.lake(&file)?;
            let config = ingest.resolve(&file)?;
            let collector_config =
                collect.resolve(&file, config.brokers.clone(), Some(&config.topics))?;
            let compactor = Compactor::new(lake.clone(), compact.resolve(&file)?, compact.holder());
            eprintln!(
                "hourlake up: ingesting {:?} from {} into {}\n  query it with: hourlake sql --lake {} -c \"SELECT event_type, count(*) FROM engagement_events GROUP BY 1\"",
                config.topics,
                config.brokers,
                lake.root(),
                lake.root().to_file_path().map(|p| p.display().to_string()).unwrap_or_else(|()| lake.root().to_string()),
            );
            let ingestor = Ingestor::new(config, lake.clone());
            let shutdown = Shutdown::on_signal();
            if let Some(addr) = ingest.metrics_addr {
                let mut registry = prometheus_client::registry::Registry::default();
                ingestor.metrics().register(&mut registry);
                compactor.metrics().register(&mut registry);
                metrics_server::serve(addr, registry).await?;
            }
            collect_command::create_topics(&collector_config, 4).await;
            let (collecting, collector) =
                collect_command::start(&collector_config, &collect.http_addr(&file), &shutdown)
                    .await?;
            // The query server's /metrics shows ingest, compactor and collector metrics too.
            let mut registry = prometheus_client::registry::Registry::default();
            ingestor.metrics().register(&mut registry);
            compactor.metrics().register(&mut registry);
            collector.metrics().register(&mut registry);
            let server = start_server(&serve, &file, lake, registry, &shutdown).await?;
            // The compactor stops with the process, or when ingest ends (e.g. on an error).
            let (ingest_ended, ingest_end) = tokio::sync::oneshot::channel::<()>();
            let stop_compactor = {
                let signal = shutdown.wait();
                async move {
                    tokio::select! {
                        _ = signal => {}
                        _ = ingest_end => {}
                    }
                }
            };
            let compacting = compactor.watch(stop_compactor);
            let ingesting = async {
                let result = ingestor.run(shutdown.wait()).await;
                let _ = ingest_ended.send(());
                result
            };
            let (compacted, ingested) = tokio::join!(compacting, ingesting);
            server.abort();
            collecting.abort();
            ingested.context("ingest")?;
            compacted.context("compactor")
        }
        Command::Ingest { common, ingest } => {
            let file = common.file()?;
            let lake = common.lake(&file)?;
            run_ingest(
                Ingestor::new(ingest.resolve(&file)?, lake),
                ingest.metrics_addr,
            )
            .await
        }
        Command::Compact {
            common,
            compact,
            watch,
            metrics_addr,
        } => {
            let file = common.file()?;
            let lake = common.lake(&file)?;
            let compactor = Compactor::new(lake, compact.resolve(&file)?, compact.holder());
            if watch {
                if let Some(addr) = metrics_addr {
                    let mut registry = prometheus_client::registry::Registry::default();
                    compactor.metrics().register(&mut registry);
                    metrics_server::serve(addr, registry).await?;
                }
                compactor
                    .watch(Shutdown::on_signal().wait())
                    .await
                    .context("compactor")
            } else {
                let report = compactor.run_pass_with_maintenance().await;
                compactor
                    .release()
                    .await
                    .context("releasing compactor leases")?;
                let report = report.context("compaction pass")?;
                println!("{report}");
                Ok(())
            }
        }
        Command::Serve { common, serve } => {
            let file = common.file()?;
            let lake = common.lake(&file)?;
            let shutdown = Shutdown::on_signal();
            let server = start_server(&serve, &file, lake, Default::default(), &shutdown).await?;
            server.await.context("query server task")?
        }
        Command::Sql(args) => sql_command::run(args).await,
        Command::Audit(args) => audit_command::run(args).await,
        Command::Worker(args) => worker_command::run(args).await,
        Command::Collect(args) => collect_command::run(args).await,
        Command::ForgetUser(args) => forget_command::run(args).await,
        Command::Backfill(args) => backfill_command::run(args).await,
        Command::Status(args) => status_command::run(args).await,
        Command::Produce(args) => {
            let report = produce::run(args).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
    }
}

/// Binds the HTTP query server (and Flight SQL when configured) and serves them on a
/// task until shutdown.
async fn start_server(
    args: &ServeArgs,
    file: &FileConfig,
    lake: hourlake_catalog::Lake,
    mut registry: prometheus_client::registry::Registry,
    shutdown: &Shutdown,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
    let addr = args.http_addr(file);
    let config = args.resolve(file)?;
    let mut factory =
        hourlake_sql::SessionFactory::new(lake.clone()).with_memory_limit(args.memory_limit(file)?);
    let workers = args.workers(file);
    if !workers.is_empty() {
        let pool = hourlake_sql::distributed::WorkerPool::connect(&workers)
            .await
            .context("query workers")?;
        tracing::info!(
            workers = ?pool.all(),
            healthy = pool.healthy().len(),
            "distributing scans to query workers"
        );
        factory = factory.with_workers(hourlake_sql::distributed::Distribution {
            pool,
            bytes_per_task: args.bytes_per_task(file)?,
        });
    }
    let live = Arc::new(hourlake_sql::LiveLake::new(
        factory,
        args.max_staleness(file),
    ));
    // One executor behind HTTP and Flight SQL: one concurrency limit, one memory pool.
    let executor = Arc::new(
        hourlake_query::QueryExecutor::new(live, &config).context("starting the query runtime")?,
    );
    // Recommendation lookups: rebuilt from the table now, then following its commits.
    let index = Arc::new(
        hourlake_query::RecommendationIndex::new(args.lookup(file)?)
            .context("recommendation lookup settings")?,
    );
    index.register_metrics(&mut registry);
    executor.set_recommendations(index.clone());
    index
        .clone()
        .spawn_follow(lake, std::time::Duration::from_millis(250), shutdown.wait())
        .context("starting the recommendation index")?;
    let flight = match args.flight_addr(file) {
        None => None,
        Some(flight_addr) => {
            let server = hourlake_query::FlightSqlServer::new(
                executor.clone(),
                config.clone(),
                &mut registry,
            )
            .context("Flight SQL settings")?;
            let listener = tokio::net::TcpListener::bind(&flight_addr)
                .await
                .with_context(|| format!("binding the Flight SQL server to {flight_addr}"))?;
            let local = listener.local_addr().context("Flight SQL server address")?;
            tracing::info!("serving Flight SQL on grpc://{local}");
            Some(tokio::spawn(server.serve(listener, shutdown.wait())))
        }
    };
    let server = hourlake_query::QueryServer::new(executor, config, registry)
        .context("query server settings")?;
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("binding the HTTP server to {addr}"))?;
    let local = listener.local_addr().context("HTTP server address")?;
    tracing::info!("serving SQL over HTTP on http://{local}/v1/sql");
    let http = tokio::spawn(server.serve(listener, shutdown.wait()));
    Ok(tokio::spawn(async move {
        if let Some(flight) = flight {
            flight
                .await
                .context("Flight SQL server task")?
                .context("Flight SQL server")?;
        }
        http.await
            .context("HTTP server task")?
            .context("HTTP server")
    }))
}

/// Runs ingest until Ctrl-C or SIGTERM, serving its metrics when asked to.
async fn run_ingest(
    ingestor: Ingestor,
    metrics_addr: Option<std::net::SocketAddr>,
) -> anyhow::Result<()> {
    if let Some(addr) = metrics_addr {
        let mut registry = prometheus_client::registry::Registry::default();
        ingestor.metrics().register(&mut registry);
        metrics_server::serve(addr, registry).await?;
    }
    ingestor.run(shutdown::signal()).await.context("ingest")
}
