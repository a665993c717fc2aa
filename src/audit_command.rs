//! `hourlake audit`: proves that every Kafka offset is in exactly one place — a row, a
//! dead letter, a removed duplicate, or expired (its row dropped by retention) — and exits non-zero when one is missing or
//! doubled. Offsets after the last one the lake holds are lag (not ingested yet), shown
//! apart, not counted as missing.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use hourlake_compactor::audit::{audit, KafkaRange, PartitionAudit, TopicPartition};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use serde::Serialize;

use crate::config::CommonArgs;
use hourlake_catalog::Lake;

/// How the account is printed.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AuditFormat {
    Table,
    Json,
}

/// Options of `hourlake audit`.
#[derive(Debug, Clone, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Kafka bootstrap servers: expected offsets run from each partition's log start
    /// to its high watermark. Without them, from the first to the last offset the lake
    /// holds (what never arrived at the end is not seen).
    #[arg(long, env = "HOURLAKE_BROKERS")]
    brokers: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = AuditFormat::Table)]
    format: AuditFormat,
}

/// Runs the audit; an error when an offset is missing or doubled.
pub async fn run(args: AuditArgs) -> anyhow::Result<()> {
    let file = args.common.file()?;
    let lake = args.common.lake(&file)?;
    let account = account(&lake, args.brokers.as_deref()).await?;
    match args.format {
        AuditFormat::Json => println!("{}", serde_json::to_string_pretty(&account)?),
        AuditFormat::Table => print!("{}", table(&account)),
    }
    let wrong: Vec<&PartitionAccount> = account.iter().filter(|p| !p.is_exact()).collect();
    if wrong.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(
            "{} of {} partitions have missing or doubled offsets",
            wrong.len(),
            account.len()
        )
    }
}

/// One partition's account, with what Kafka holds beyond the lake's last offset (not
/// ingested yet) told apart from offsets missing before it (lost).
#[derive(Debug, Serialize)]
pub(crate) struct PartitionAccount {
    /// Messages in Kafka after the last one the lake holds (`None` without brokers).
    pub lag: Option<i64>,
    /// Offsets missing before that point.
    pub gaps: i64,
    #[serde(flatten)]
    pub audit: PartitionAudit,
}

impl PartitionAccount {
    /// No offset missing before the lag, none doubled.
    pub fn is_exact(&self) -> bool {
        self.gaps == 0 && self.audit.doubled == 0
    }
}

/// Every partition's account: the partitions the lake has seen and, with `brokers`,
/// every partition Kafka has of those topics, each with its lag.
pub(crate) async fn account(
    lake: &Lake,
    brokers: Option<&str>,
) -> anyhow::Result<Vec<PartitionAccount>> {
    let seen = audit(lake, &BTreeMap::new())
        .await
        .context("reading the lake's offsets")?;
    let Some(brokers) = brokers else {
        return Ok(accounts(seen, &BTreeMap::new()));
    };
    let mut topics: Vec<String> = seen.iter().map(|p| p.topic.clone()).collect();
    topics.dedup();
    let brokers = brokers.to_string();
    let kafka = tokio::task::spawn_blocking(move || kafka_ranges(&brokers, &topics))
        .await
        .context("Kafka thread")??;
    let audits = audit(lake, &kafka).await.context("auditing the lake")?;
    Ok(accounts(audits, &kafka))
}

/// Each partition's account, its lag from `kafka`.
fn accounts(
    audits: Vec<PartitionAudit>,
    kafka: &BTreeMap<TopicPartition, KafkaRange>,
) -> Vec<PartitionAccount> {
    audits
        .into_iter()
        .map(|audit| {
            let lag = kafka
                .get(&(audit.topic.clone(), audit.partition))
                .map(|range| audit.lag(range));
            PartitionAccount {
                gaps: (audit.missing - lag.unwrap_or(0)).max(0),
                lag,
                audit,
            }
        })
        .collect()
}

/// The log start and high watermark of every partition of `topics`.
fn kafka_ranges(
    brokers: &str,
    topics: &[String],
) -> anyhow::Result<BTreeMap<TopicPartition, KafkaRange>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .context("Kafka client")?;
    let timeout = Duration::from_secs(10);
    let mut out = BTreeMap::new();
    for topic in topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), timeout)
            .with_context(|| format!("metadata of {topic}"))?;
        for t in metadata.topics() {
            for p in t.partitions() {
                let (start, end) = consumer
                    .fetch_watermarks(topic, p.id(), timeout)
                    .with_context(|| format!("watermarks of {topic}-{}", p.id()))?;
                out.insert((topic.clone(), p.id()), KafkaRange { start, end });
            }
        }
    }
    Ok(out)
}

/// The account as an aligned table.
fn table(account: &[PartitionAccount]) -> String {
    let mut out = format!(
        "{:<40} {:>9} {:>10} {:>10} {:>12} {:>12} {:>10} {:>8} {:>8} {:>8}\n",
        "topic",
        "partition",
        "expected",
        "in_tables",
        "dead_letters",
        "removed_dups",
        "expired",
        "lag",
        "missing",
        "doubled"
    );
    for a in account {
        let p = &a.audit;
        out.push_str(&format!(
            "{:<40} {:>9} {:>10} {:>10} {:>12} {:>12} {:>10} {:>8} {:>8} {:>8}\n",
            p.topic,
            p.partition,
            p.expected,
            p.in_tables,
            p.dead_letters,
            p.removed_duplicates,
            p.expired,
            a.lag.map_or_else(|| "-".to_string(), |l| l.to_string()),
            a.gaps,
            p.doubled
        ));
    }
    out
}
