//! `hourlake collect`: the event collector — batches over HTTP in, Kafka out, answered
//! only once Kafka holds every accepted event.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use hourlake_collect::{Collector, CollectorConfig};

use crate::config::{CollectArgs, FileConfig, DEFAULT_BROKERS};
use crate::shutdown::Shutdown;

/// The command line of `hourlake collect`.
#[derive(Debug, Args)]
pub struct CollectCommandArgs {
    /// Config file (TOML).
    #[arg(long, env = "HOURLAKE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Kafka bootstrap servers. [default: 127.0.0.1:9092]
    #[arg(long, env = "HOURLAKE_BROKERS")]
    pub brokers: Option<String>,
    /// Partitions of the topics this command creates when they are missing.
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    #[command(flatten)]
    pub collect: CollectArgs,
}

/// Serves until SIGINT/SIGTERM.
pub async fn run(args: CollectCommandArgs) -> anyhow::Result<()> {
    let file = FileConfig::load(args.config.as_deref())?;
    let brokers = args
        .brokers
        .clone()
        .or_else(|| file.kafka.brokers.clone())
        .unwrap_or_else(|| DEFAULT_BROKERS.into());
    let config = args.collect.resolve(&file, brokers, None)?;
    create_topics(&config, args.partitions).await;
    let shutdown = Shutdown::on_signal();
    start(&config, &args.collect.http_addr(&file), &shutdown)
        .await?
        .0
        .await
        .context("collector task")?
}

/// Creates the collector's topics if they are missing; a broker that is down now is
/// not an error (the collector answers 503 until it is back).
pub async fn create_topics(config: &CollectorConfig, partitions: i32) {
    let topics = [
        config.engagement_topic.as_str(),
        config.recommendation_topic.as_str(),
    ];
    let created = tokio::time::timeout(
        Duration::from_secs(10),
        crate::produce::ensure_topics(&config.brokers, &topics, partitions),
    )
    .await;
    match created {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %format!("{e:#}"), "could not create the collector's topics")
        }
        Err(_) => tracing::warn!(
            "Kafka did not answer within 10 s; the collector answers 503 until it does"
        ),
    }
}

/// Binds `addr` and serves the collector until `shutdown`; returns the serving task and
/// the collector (for its metrics).
pub async fn start(
    config: &CollectorConfig,
    addr: &str,
    shutdown: &Shutdown,
) -> anyhow::Result<(tokio::task::JoinHandle<anyhow::Result<()>>, Collector)> {
    let collector = Collector::new(config.clone()).context("collector settings")?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the collector to {addr}"))?;
    let local = listener.local_addr().context("collector address")?;
    tracing::info!(
        engagement_topic = %config.engagement_topic,
        recommendation_topic = %config.recommendation_topic,
        "collecting events on http://{local}/v1/events"
    );
    let serving = collector.clone();
    let stop = shutdown.wait();
    let task =
        tokio::spawn(async move { serving.serve(listener, stop).await.context("collector") });
    Ok((task, collector))
}
