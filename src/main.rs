//! `hourlake`: Kafka → hour-partitioned Delta Lake → real-time OLAP SQL.
//!
//! A thin command line over the crates: `up` runs everything, the other commands
//! run one part each. Configuration: see `config.rs` and the README.

mod config;
mod metrics_server;
mod produce;
mod shutdown;
mod sql_command;

use anyhow::Context;
use clap::{Parser, Subcommand};
use hourlake_ingest::Ingestor;

use config::{CommonArgs, IngestArgs};

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

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole lakehouse: ingest (and, as they land, compaction and the query server).
    Up {
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        ingest: IngestArgs,
    },
    /// Ingest Kafka topics into the lake's Delta tables, exactly once.
    Ingest {
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        ingest: IngestArgs,
    },
    /// Compact small files, remove duplicates, build rollups (not built yet).
    Compact {
        #[command(flatten)]
        common: CommonArgs,
        /// Keep running and compact as data arrives.
        #[arg(long)]
        watch: bool,
    },
    /// Serve SQL over HTTP and Flight SQL (not built yet).
    Serve {
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Run SQL against the lake (from -c, or statements separated by `;` on stdin).
    Sql(sql_command::SqlArgs),
    /// Generate realistic events into Kafka; prints what was sent as JSON.
    Produce(produce::ProduceArgs),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(
                    "info,deltalake=warn,deltalake_core::writer::stats=error,buoyant_kernel=warn,datafusion=warn",
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
        Command::Up { common, ingest } => {
            let file = common.file()?;
            let lake = common.lake(&file)?;
            let config = ingest.resolve(&file);
            eprintln!(
                "hourlake up: ingesting {:?} from {} into {}\n  query it with: hourlake sql --lake {} -c \"SELECT event_type, count(*) FROM engagement_events GROUP BY 1\"",
                config.topics,
                config.brokers,
                lake.root(),
                lake.root().to_file_path().map(|p| p.display().to_string()).unwrap_or_else(|()| lake.root().to_string()),
            );
            run_ingest(Ingestor::new(config, lake), ingest.metrics_addr).await
        }
        Command::Ingest { common, ingest } => {
            let file = common.file()?;
            let lake = common.lake(&file)?;
            run_ingest(
                Ingestor::new(ingest.resolve(&file), lake),
                ingest.metrics_addr,
            )
            .await
        }
        Command::Compact { .. } => anyhow::bail!("`hourlake compact` is not built yet"),
        Command::Serve { .. } => anyhow::bail!("`hourlake serve` is not built yet"),
        Command::Sql(args) => sql_command::run(args).await,
        Command::Produce(args) => {
            let report = produce::run(args).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
    }
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
