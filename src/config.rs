//! Configuration from one place: a TOML file, overridden by environment variables,
//! overridden by command-line flags (see the README's "Configuration").

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use hourlake_catalog::{Lake, APP_EVENTS_TOPIC, REC_EVENTS_TOPIC};
use hourlake_ingest::{FlushPolicy, IngestConfig, StartAt, Validation};
use serde::Deserialize;

/// `value` (in `unit`s of the setting `name`) times `unit`, or a configuration error when
/// that overflows: an absurd size is refused, never wrapped around.
fn scaled(name: &str, value: u64, unit: u64) -> anyhow::Result<u64> {
    value
        .checked_mul(unit)
        .with_context(|| format!("{name} = {value} is too large"))
}

/// [`scaled`] for sizes held in memory.
fn scaled_size(name: &str, value: usize, unit: usize) -> anyhow::Result<usize> {
    value
        .checked_mul(unit)
        .with_context(|| format!("{name} = {value} is too large"))
}

/// An optional setting scaled by `unit`, or `default` when unset.
fn scaled_or(
    name: &str,
    value: Option<usize>,
    unit: usize,
    default: usize,
) -> anyhow::Result<usize> {
    value.map_or(Ok(default), |v| scaled_size(name, v, unit))
}

/// Where the lake is when no flag, env or file names it.
pub const DEFAULT_LAKE: &str = "./lake";
/// The Kafka bootstrap servers when none are named.
pub const DEFAULT_BROKERS: &str = "127.0.0.1:9092";
/// The consumer group (and txn app-id prefix) when none is named.
pub const DEFAULT_GROUP: &str = "hourlake";
/// The collector's HTTP address when none is named.
pub const DEFAULT_COLLECT_ADDR: &str = "127.0.0.1:8081";
/// The query server's HTTP address when none is named.
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8080";
/// Memory all queries together may hold, when not configured.
pub const DEFAULT_MEMORY_LIMIT_MB: usize = 2048;
/// Days the compactor keeps dead letters when not configured (and raw events, through
/// `[ingest] retention_days`, whose default is the same).
pub const DEFAULT_RETENTION_DAYS: u64 = 30;
/// A query worker's address when none is named.
pub const DEFAULT_WORKER_ADDR: &str = "127.0.0.1:50061";

/// The file format (`hourlake.toml`); every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub kafka: KafkaSection,
    #[serde(default)]
    pub lake: LakeSection,
    #[serde(default)]
    pub ingest: IngestSection,
    #[serde(default)]
    pub compactor: CompactorSection,
    #[serde(default)]
    pub retention: RetentionSection,
    #[serde(default)]
    pub quality: QualitySection,
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub worker: WorkerSection,
    #[serde(default)]
    pub collector: CollectorSection,
}

/// `[collector]`: the event collector (`hourlake collect`, and in `hourlake up`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorSection {
    /// Serve `POST /v1/events` on this address.
    pub http: Option<String>,
    /// Accepted bearer tokens; none means no authentication.
    #[serde(default)]
    pub tokens: Vec<String>,
    pub engagement_topic: Option<String>,
    pub recommendation_topic: Option<String>,
    pub max_body_kb: Option<usize>,
    pub max_batch_events: Option<usize>,
    pub produce_timeout_ms: Option<u64>,
    pub max_queued_events: Option<usize>,
    pub client_timeout_ms: Option<u64>,
    /// Extra librdkafka producer settings.
    #[serde(default)]
    pub producer: BTreeMap<String, String>,
}

/// `[worker]`: a query worker (`hourlake worker`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSection {
    /// Serve tasks on this address.
    pub listen: Option<String>,
    /// Memory all of the worker's tasks together may hold.
    pub memory_limit_mb: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    pub http: Option<String>,
    /// Serve Arrow Flight SQL on this address (off when unset).
    pub flight: Option<String>,
    #[serde(default)]
    pub tokens: Vec<String>,
    pub max_concurrent_queries: Option<usize>,
    pub query_timeout_ms: Option<u64>,
    pub max_result_rows: Option<usize>,
    pub max_result_mb: Option<usize>,
    pub cache_mb: Option<usize>,
    pub memory_limit_mb: Option<usize>,
    pub max_staleness_ms: Option<u64>,
    #[serde(default)]
    pub cors_origins: Vec<String>,
    pub max_statement_kb: Option<usize>,
    pub max_statement_depth: Option<usize>,
    pub max_statement_elements: Option<usize>,
    pub client_timeout_ms: Option<u64>,
    pub max_request_kb: Option<usize>,
    /// Query workers (`host:port`) that run plans scanning lake files.
    #[serde(default)]
    pub workers: Vec<String>,
    /// KiB of Parquet one distributed scan task reads.
    pub distributed_kb_per_task: Option<usize>,
    /// Served lists the recommendation lookup index keeps per user.
    pub lookup_lists_per_user: Option<usize>,
    /// Days a served list (or click) stays in the lookup index; 0: until pushed out.
    pub lookup_max_age_days: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSection {
    pub brokers: Option<String>,
    pub topics: Option<Vec<String>>,
    pub group: Option<String>,
    /// Extra librdkafka consumer settings.
    #[serde(default)]
    pub consumer: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LakeSection {
    /// A local folder or an object-store URL (`s3://bucket/prefix`).
    pub location: Option<String>,
    /// Object-store options (endpoint, credentials, `allow_http`, ...).
    #[serde(default)]
    pub storage_options: HashMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSection {
    pub max_rows: Option<usize>,
    pub max_bytes: Option<usize>,
    pub max_latency_ms: Option<u64>,
    pub checkpoint_interval: Option<u64>,
    pub progress_interval_ms: Option<u64>,
    pub max_message_bytes: Option<usize>,
    pub max_future_secs: Option<i64>,
    pub retention_days: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompactorSection {
    pub target_file_size_mb: Option<u64>,
    pub max_small_files: Option<usize>,
    pub closed_after_secs: Option<u64>,
    pub vacuum_retention_hours: Option<u64>,
    pub lease_ttl_secs: Option<u64>,
    pub interval_secs: Option<u64>,
    pub maintenance_every: Option<u32>,
    pub memory_limit_mb: Option<usize>,
    pub settle_secs: Option<u64>,
    /// Derive `sessions` and `sessions_hourly` from the engagement events.
    pub sessions: Option<bool>,
    /// A user's events further apart than this many seconds are different sessions.
    pub session_gap_secs: Option<u64>,
}

/// `[retention]`: how many days the compactor keeps each kind of table (0: forever).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSection {
    /// Raw events: hours that ended more than this many days ago are dropped.
    /// Default: `[ingest] retention_days` (30).
    pub events_days: Option<u64>,
    /// Dead letters, by the day they were ingested. Default: 30.
    pub dead_letters_days: Option<u64>,
    /// Rollup rows, by event day (at least `events_days`). Default: kept forever.
    pub rollups_days: Option<u64>,
}

/// `[quality]`: how the compactor judges each closed hour's data-quality figures
/// (`quality_hourly`, the `quality_anomalies` view).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QualitySection {
    /// Compute `quality_hourly` at all. Default: true.
    pub enabled: Option<bool>,
    /// Previous days whose same hour make a figure's expectation. Default: 7.
    pub anomaly_days: Option<u32>,
    /// Fewer previous days with the figure: no flag. Default: 3.
    pub anomaly_min_days: Option<u32>,
    /// Flagged beyond median ± this many scaled MADs. Default: 4.
    pub anomaly_k: Option<f64>,
    /// The MAD is taken as at least this fraction of the median. Default: 0.05.
    pub anomaly_min_mad_fraction: Option<f64>,
    /// Exact distinct users on one hour in this many (0: never). Default: 24.
    pub exact_users_every: Option<u32>,
}

impl FileConfig {
    /// Reads the file if one is named (by flag or `HOURLAKE_CONFIG`), else defaults.
    pub fn load(path: Option<&Path>) -> anyhow::Result<FileConfig> {
        let Some(path) = path else {
            return Ok(FileConfig::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
    }
}

/// Flags shared by every command that touches Kafka or the lake.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Config file (TOML).
    #[arg(long, env = "HOURLAKE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Lake location: a folder or an object-store URL. [default: ./lake]
    #[arg(long, env = "HOURLAKE_LAKE")]
    pub lake: Option<String>,
    /// An object-store option KEY=VALUE (repeatable), over `[lake.storage_options]`,
    /// e.g. `aws_endpoint=http://127.0.0.1:7070`. `AWS_*` environment variables fill
    /// the keys given nowhere else.
    #[arg(long = "storage-option", value_name = "KEY=VALUE", value_parser = parse_storage_option)]
    pub storage_options: Vec<(String, String)>,
}

fn parse_storage_option(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.to_string()))
        }
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

impl CommonArgs {
    /// The file config this command runs with.
    pub fn file(&self) -> anyhow::Result<FileConfig> {
        FileConfig::load(self.config.as_deref())
    }

    /// The lake, from flag/env, file, or `./lake`.
    pub fn lake(&self, file: &FileConfig) -> anyhow::Result<Lake> {
        let location = self
            .lake
            .clone()
            .or_else(|| file.lake.location.clone())
            .unwrap_or_else(|| DEFAULT_LAKE.into());
        let mut options = file.lake.storage_options.clone();
        options.extend(self.storage_options.iter().cloned());
        Lake::from_location(&location, options).with_context(|| format!("opening lake {location}"))
    }
}

/// Flags of the ingest loop (`hourlake ingest` and `hourlake up`).
#[derive(Debug, Clone, Args)]
pub struct IngestArgs {
    /// Kafka bootstrap servers. [default: 127.0.0.1:9092]
    #[arg(long, env = "HOURLAKE_BROKERS")]
    pub brokers: Option<String>,
    /// Topics to consume, comma-separated. [default: app-events,rec-events]
    #[arg(long, env = "HOURLAKE_TOPICS", value_delimiter = ',')]
    pub topics: Option<Vec<String>>,
    /// Consumer group (also the prefix of the Delta txn app ids). [default: hourlake]
    #[arg(long, env = "HOURLAKE_GROUP")]
    pub group: Option<String>,
    /// Commit at least this often while anything is buffered (up to 4 times as long
    /// while a backlog in Kafka fills the window to --max-rows). [default: 500]
    #[arg(long, env = "HOURLAKE_MAX_LATENCY_MS")]
    pub max_latency_ms: Option<u64>,
    /// Commit once this many rows are read. [default: 200000]
    #[arg(long)]
    pub max_rows: Option<usize>,
    /// Write a Delta checkpoint every N commits of a table. [default: 100]
    #[arg(long)]
    pub checkpoint_interval: Option<u64>,
    /// Static group membership (`group.instance.id`): a restarted member with the same
    /// id gets its partitions back at once instead of after the session timeout.
    #[arg(long, env = "HOURLAKE_INSTANCE_ID")]
    pub instance_id: Option<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics (port 0 picks a free port).
    #[arg(long, env = "HOURLAKE_METRICS_ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Replay: start partitions the lake holds no offsets of at the first message Kafka
    /// timestamped at or after TIME (RFC 3339, e.g. 2026-11-20T10:00:00Z), or at the log
    /// start (`earliest`). Partitions with offsets in the lake continue from them. Needs
    /// a --group of its own (not `hourlake`). [default: earliest]
    #[arg(long, value_name = "TIME|earliest")]
    pub start_at: Option<StartAt>,
}

impl IngestArgs {
    /// Merges flags/env over the file over defaults.
    pub fn resolve(&self, file: &FileConfig) -> anyhow::Result<IngestConfig> {
        let k = &file.kafka;
        let i = &file.ingest;
        let brokers = self
            .brokers
            .clone()
            .or_else(|| k.brokers.clone())
            .unwrap_or_else(|| DEFAULT_BROKERS.into());
        let topics = self
            .topics
            .clone()
            .or_else(|| k.topics.clone())
            .unwrap_or_else(|| vec![APP_EVENTS_TOPIC.into(), REC_EVENTS_TOPIC.into()]);
        let group = self
            .group
            .clone()
            .or_else(|| k.group.clone())
            .unwrap_or_else(|| DEFAULT_GROUP.into());
        let mut cfg = IngestConfig::new(brokers, topics, group);
        let flush = FlushPolicy::default();
        cfg.flush = FlushPolicy {
            max_rows: self.max_rows.or(i.max_rows).unwrap_or(flush.max_rows),
            max_bytes: i.max_bytes.unwrap_or(flush.max_bytes),
            max_latency: self
                .max_latency_ms
                .or(i.max_latency_ms)
                .map(Duration::from_millis)
                .unwrap_or(flush.max_latency),
        };
        cfg.validation = validation(file)?;
        if let Some(n) = self.checkpoint_interval.or(i.checkpoint_interval) {
            cfg.checkpoint_interval = n;
        }
        if let Some(ms) = i.progress_interval_ms {
            cfg.progress_interval = Duration::from_millis(ms);
        }
        if let Some(start_at) = self.start_at {
            // A replay that joined the production group would take partitions away from
            // the production ingest, and commit offsets that its lag tools then read.
            anyhow::ensure!(
                cfg.group != DEFAULT_GROUP,
                "--start-at replays into a lake of its own: give it a consumer group of its own \
                 with --group (the default group `{DEFAULT_GROUP}` is the production ingest's; \
                 joining it would take partitions away from it)"
            );
            cfg.start_at = start_at;
        }
        cfg.kafka_overrides = k.consumer.clone();
        if let Some(id) = &self.instance_id {
            cfg.kafka_overrides
                .insert("group.instance.id".into(), id.clone());
        }
        Ok(cfg)
    }
}

/// The event contract's limits (`[ingest]`), shared by ingest and the collector.
pub fn validation(file: &FileConfig) -> anyhow::Result<Validation> {
    let i = &file.ingest;
    let v = Validation::default();
    // A window in seconds or days, as microseconds: negative or overflowing values are
    // configuration errors, not a silent wrap.
    let micros = |name: &str, value: Option<i64>, unit: i64, default: i64| match value {
        None => Ok(default),
        Some(n) if n < 0 => Err(anyhow::anyhow!(
            "[ingest] {name} must not be negative (got {n})"
        )),
        Some(n) => n
            .checked_mul(unit)
            .with_context(|| format!("[ingest] {name} = {n} is too large")),
    };
    Ok(Validation {
        max_message_bytes: i.max_message_bytes.unwrap_or(v.max_message_bytes),
        max_future_micros: micros(
            "max_future_secs",
            i.max_future_secs,
            1_000_000,
            v.max_future_micros,
        )?,
        retention_micros: micros(
            "retention_days",
            i.retention_days,
            86_400_000_000,
            v.retention_micros,
        )?,
    })
}

/// Flags of the compactor (`hourlake compact` and `hourlake up`).
#[derive(Debug, Clone, Args)]
pub struct CompactArgs {
    /// Size rewritten files aim at, in MiB. [default: 128]
    #[arg(long, env = "HOURLAKE_TARGET_FILE_SIZE_MB")]
    pub target_file_size_mb: Option<u64>,
    /// An hour counts as closed this many seconds after it ends. [default: 300]
    #[arg(long, env = "HOURLAKE_CLOSED_AFTER_SECS")]
    pub closed_after_secs: Option<u64>,
    /// Seconds between passes with --watch and in `up`. [default: 30]
    #[arg(long, env = "HOURLAKE_COMPACT_INTERVAL_SECS")]
    pub compact_interval_secs: Option<u64>,
    /// Vacuum unreferenced files older than this many hours. [default: 168]
    #[arg(long, env = "HOURLAKE_VACUUM_RETENTION_HOURS")]
    pub vacuum_retention_hours: Option<u64>,
    /// Rows ingested this many seconds ago are settled: the continuous audit and the
    /// per-minute loss table judge them. [default: 120]
    #[arg(long, env = "HOURLAKE_SETTLE_SECS")]
    pub settle_secs: Option<u64>,
    /// Name of this compactor in leases and logs. [default: compactor-<host>-<pid>]
    #[arg(long, env = "HOURLAKE_COMPACTOR_ID")]
    pub compactor_id: Option<String>,
    /// Drop raw-event hours that ended more than this many days ago (0: keep forever).
    /// [default: `[ingest] retention_days`, 30]
    #[arg(long = "retention-days", env = "HOURLAKE_RETENTION_DAYS")]
    pub retention_days: Option<u64>,
    /// Compare each closed hour's headline figures with the same hour of this many
    /// previous days. [default: 7]
    #[arg(long, env = "HOURLAKE_ANOMALY_DAYS")]
    pub anomaly_days: Option<u32>,
    /// Flag a figure further than this many scaled MADs from that median. [default: 4]
    #[arg(long, env = "HOURLAKE_ANOMALY_K")]
    pub anomaly_k: Option<f64>,
    /// Derive the `sessions` table and `sessions_hourly` from the engagement events
    /// (`true` or `false`). [default: true]
    #[arg(long, env = "HOURLAKE_SESSIONS")]
    pub sessions: Option<bool>,
    /// A user's events more than this many seconds apart belong to different sessions.
    /// [default: 1800]
    #[arg(long, env = "HOURLAKE_SESSION_GAP_SECS")]
    pub session_gap_secs: Option<u64>,
}

impl CompactArgs {
    /// Merges flags/env over the file over defaults.
    pub fn resolve(
        &self,
        file: &FileConfig,
    ) -> anyhow::Result<hourlake_compactor::CompactorConfig> {
        let c = &file.compactor;
        let d = hourlake_compactor::CompactorConfig::default();
        let mib = 1024 * 1024;
        let target_file_size = match self.target_file_size_mb.or(c.target_file_size_mb) {
            Some(m) => scaled("target_file_size_mb", m, mib)?,
            None => d.target_file_size,
        };
        let vacuum_retention = match self.vacuum_retention_hours.or(c.vacuum_retention_hours) {
            Some(h) => Duration::from_secs(scaled("vacuum_retention_hours", h, 3600)?),
            None => d.vacuum_retention,
        };
        let memory_limit = scaled_or(
            "[compactor] memory_limit_mb",
            c.memory_limit_mb,
            1024 * 1024,
            d.memory_limit,
        )?;
        let session_gap = self
            .session_gap_secs
            .or(c.session_gap_secs)
            .map_or(d.session_gap, Duration::from_secs);
        anyhow::ensure!(!session_gap.is_zero(), "session_gap_secs must be 1 or more");
        Ok(hourlake_compactor::CompactorConfig {
            target_file_size,
            max_small_files: c.max_small_files.unwrap_or(d.max_small_files),
            closed_after: self
                .closed_after_secs
                .or(c.closed_after_secs)
                .map_or(d.closed_after, Duration::from_secs),
            vacuum_retention,
            lease_ttl: c.lease_ttl_secs.map_or(d.lease_ttl, Duration::from_secs),
            interval: self
                .compact_interval_secs
                .or(c.interval_secs)
                .map_or(d.interval, Duration::from_secs),
            maintenance_every: c.maintenance_every.unwrap_or(d.maintenance_every),
            memory_limit,
            settle: self
                .settle_secs
                .or(c.settle_secs)
                .map_or(d.settle, Duration::from_secs),
            retention: self.retention(file)?,
            quality: self.quality(file)?,
            sessionize: self.sessions.or(c.sessions).unwrap_or(d.sessionize),
            session_gap,
            ..d
        })
    }

    /// How closed hours' quality figures are judged (`[quality]`, `--anomaly-days`,
    /// `--anomaly-k`).
    fn quality(&self, file: &FileConfig) -> anyhow::Result<hourlake_compactor::QualityConfig> {
        let q = &file.quality;
        let d = hourlake_compactor::QualityConfig::default();
        let config = hourlake_compactor::QualityConfig {
            enabled: q.enabled.unwrap_or(d.enabled),
            anomaly_days: self
                .anomaly_days
                .or(q.anomaly_days)
                .unwrap_or(d.anomaly_days),
            anomaly_min_days: q.anomaly_min_days.unwrap_or(d.anomaly_min_days),
            anomaly_k: self.anomaly_k.or(q.anomaly_k).unwrap_or(d.anomaly_k),
            anomaly_min_mad_fraction: q
                .anomaly_min_mad_fraction
                .unwrap_or(d.anomaly_min_mad_fraction),
            exact_users_every: q.exact_users_every.unwrap_or(d.exact_users_every),
        };
        config.validate().map_err(anyhow::Error::msg)?;
        Ok(config)
    }

    /// What the compactor keeps (`[retention]`, `--retention-days`): raw events as long
    /// as ingest accepts them (`[ingest] retention_days`) unless told otherwise, dead
    /// letters 30 days, rollups forever; 0 days keeps forever.
    fn retention(&self, file: &FileConfig) -> anyhow::Result<hourlake_compactor::RetentionConfig> {
        let r = &file.retention;
        let ingest_days = validation(file)?.retention_micros / 86_400_000_000;
        let events = self
            .retention_days
            .or(r.events_days)
            .unwrap_or(u64::try_from(ingest_days).unwrap_or(u64::MAX));
        let dead_letters = r.dead_letters_days.unwrap_or(DEFAULT_RETENTION_DAYS);
        let kept = |days: u64| (days > 0).then_some(days);
        let config = hourlake_compactor::RetentionConfig::days(
            kept(events),
            kept(dead_letters),
            r.rollups_days.and_then(kept),
        );
        config.validate().map_err(anyhow::Error::msg)?;
        Ok(config)
    }

    /// The name this compactor uses in leases.
    pub fn holder(&self) -> String {
        self.compactor_id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "localhost".into());
            format!("compactor-{host}-{}", std::process::id())
        })
    }
}

/// Flags of the query server (`hourlake serve` and `hourlake up`).
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Serve SQL over HTTP on this address. [default: 127.0.0.1:8080]
    #[arg(long, env = "HOURLAKE_HTTP")]
    pub http: Option<String>,
    /// Also serve Arrow Flight SQL (for BI tools) on this address, e.g. 127.0.0.1:50051.
    #[arg(long, env = "HOURLAKE_FLIGHT")]
    pub flight: Option<String>,
    /// Accepted bearer tokens, comma-separated; none means no authentication.
    #[arg(long = "token", env = "HOURLAKE_TOKENS", value_delimiter = ',')]
    pub tokens: Vec<String>,
    /// Queries running at once; more get 429. [default: 16]
    #[arg(long, env = "HOURLAKE_MAX_CONCURRENT_QUERIES")]
    pub max_concurrent_queries: Option<usize>,
    /// Per-query timeout in milliseconds. [default: 30000]
    #[arg(long, env = "HOURLAKE_QUERY_TIMEOUT_MS")]
    pub query_timeout_ms: Option<u64>,
    /// Rows a result may hold. [default: 1000000]
    #[arg(long, env = "HOURLAKE_MAX_RESULT_ROWS")]
    pub max_result_rows: Option<usize>,
    /// Browser origins allowed by CORS, comma-separated (`*` for any).
    #[arg(
        long = "cors-origin",
        env = "HOURLAKE_CORS_ORIGINS",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,
    /// Query workers (`hourlake worker`), comma-separated `host:port`: plans that only
    /// scan lake files run on them while any is healthy.
    #[arg(long, env = "HOURLAKE_WORKERS", value_delimiter = ',')]
    pub workers: Vec<String>,
    /// KiB of Parquet one distributed scan task reads. [default: 131072]
    #[arg(long, env = "HOURLAKE_DISTRIBUTED_KB_PER_TASK")]
    pub distributed_kb_per_task: Option<usize>,
    /// Served lists the recommendation lookup index keeps per user. [default: 20]
    #[arg(long, env = "HOURLAKE_LOOKUP_LISTS_PER_USER")]
    pub lookup_lists_per_user: Option<usize>,
    /// Days a served list or click stays in the lookup index (0: until newer lists push
    /// it out). [default: 30]
    #[arg(long, env = "HOURLAKE_LOOKUP_MAX_AGE_DAYS")]
    pub lookup_max_age_days: Option<u64>,
}

impl ServeArgs {
    /// The workers to distribute to (none: every query runs on the server).
    pub fn workers(&self, file: &FileConfig) -> Vec<String> {
        if self.workers.is_empty() {
            file.server.workers.clone()
        } else {
            self.workers.clone()
        }
    }

    /// Bytes of Parquet one distributed scan task reads.
    pub fn bytes_per_task(&self, file: &FileConfig) -> anyhow::Result<usize> {
        let kb = self
            .distributed_kb_per_task
            .or(file.server.distributed_kb_per_task);
        let bytes = scaled_or(
            "[server] distributed_kb_per_task",
            kb,
            1024,
            hourlake_sql::distributed::DEFAULT_BYTES_PER_TASK,
        )?;
        anyhow::ensure!(
            bytes > 0,
            "[server] distributed_kb_per_task must be 1 or more"
        );
        Ok(bytes)
    }

    /// What the recommendation lookup index keeps: flags/env over `[server]` over defaults.
    pub fn lookup(&self, file: &FileConfig) -> anyhow::Result<hourlake_query::LookupConfig> {
        let f = &file.server;
        let days = self
            .lookup_max_age_days
            .or(f.lookup_max_age_days)
            .unwrap_or(hourlake_query::DEFAULT_LOOKUP_MAX_AGE_DAYS);
        let secs = scaled("[server] lookup_max_age_days", days, 86_400)?;
        let config = hourlake_query::LookupConfig {
            lists_per_user: self
                .lookup_lists_per_user
                .or(f.lookup_lists_per_user)
                .unwrap_or(hourlake_query::DEFAULT_LOOKUP_LISTS_PER_USER),
            max_age: (secs > 0).then(|| Duration::from_secs(secs)),
        };
        config
            .validate()
            .context("invalid recommendation lookup settings")?;
        Ok(config)
    }

    /// The HTTP address.
    pub fn http_addr(&self, file: &FileConfig) -> String {
        self.http
            .clone()
            .or_else(|| file.server.http.clone())
            .unwrap_or_else(|| DEFAULT_HTTP_ADDR.into())
    }

    /// The Flight SQL address, if Flight SQL is on.
    pub fn flight_addr(&self, file: &FileConfig) -> Option<String> {
        self.flight.clone().or_else(|| file.server.flight.clone())
    }

    /// How stale a query's view of the tables may be.
    pub fn max_staleness(&self, file: &FileConfig) -> Duration {
        file.server
            .max_staleness_ms
            .map_or(hourlake_sql::DEFAULT_MAX_STALENESS, Duration::from_millis)
    }

    /// Memory all queries together may hold before they spill or fail.
    pub fn memory_limit(&self, file: &FileConfig) -> anyhow::Result<usize> {
        let mb = file
            .server
            .memory_limit_mb
            .unwrap_or(DEFAULT_MEMORY_LIMIT_MB);
        let bytes = scaled_size("[server] memory_limit_mb", mb, 1024 * 1024)?;
        anyhow::ensure!(bytes > 0, "[server] memory_limit_mb must be 1 or more");
        Ok(bytes)
    }

    /// Merges flags/env over the file over defaults, and refuses settings that cannot
    /// work (an empty token, a zero limit).
    pub fn resolve(&self, file: &FileConfig) -> anyhow::Result<hourlake_query::ServerConfig> {
        let f = &file.server;
        let d = hourlake_query::ServerConfig::default();
        let mib = 1024 * 1024;
        let limits = d.statement_limits;
        let max_result_bytes = scaled_or(
            "[server] max_result_mb",
            f.max_result_mb,
            mib,
            d.max_result_bytes,
        )?;
        let cache_bytes = scaled_or("[server] cache_mb", f.cache_mb, mib, d.cache_bytes)?;
        let max_statement_bytes = scaled_or(
            "[server] max_statement_kb",
            f.max_statement_kb,
            1024,
            limits.max_bytes,
        )?;
        let max_request_bytes = scaled_or(
            "[server] max_request_kb",
            f.max_request_kb,
            1024,
            d.max_request_bytes,
        )?;
        let config = hourlake_query::ServerConfig {
            tokens: if self.tokens.is_empty() {
                f.tokens.clone()
            } else {
                self.tokens.clone()
            },
            max_concurrent_queries: self
                .max_concurrent_queries
                .or(f.max_concurrent_queries)
                .unwrap_or(d.max_concurrent_queries),
            query_timeout: self
                .query_timeout_ms
                .or(f.query_timeout_ms)
                .map_or(d.query_timeout, Duration::from_millis),
            max_result_rows: self
                .max_result_rows
                .or(f.max_result_rows)
                .unwrap_or(d.max_result_rows),
            max_result_bytes,
            cache_bytes,
            cors_origins: if self.cors_origins.is_empty() {
                f.cors_origins.clone()
            } else {
                self.cors_origins.clone()
            },
            statement_limits: hourlake_sql::limits::StatementLimits {
                max_bytes: max_statement_bytes,
                max_depth: f.max_statement_depth.unwrap_or(limits.max_depth),
                max_elements: f.max_statement_elements.unwrap_or(limits.max_elements),
            },
            client_timeout: f
                .client_timeout_ms
                .map_or(d.client_timeout, Duration::from_millis),
            max_request_bytes,
            ..d
        };
        config.validate().context("invalid query server settings")?;
        Ok(config)
    }
}

/// `hourlake worker`'s own settings.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Serve tasks on this address (port 0: any free port, logged). [default: 127.0.0.1:50061]
    #[arg(long, env = "HOURLAKE_WORKER_LISTEN")]
    pub listen: Option<String>,
    /// Memory all of the worker's tasks together may hold, in MiB. [default: 2048]
    #[arg(long, env = "HOURLAKE_WORKER_MEMORY_LIMIT_MB")]
    pub memory_limit_mb: Option<usize>,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long, env = "HOURLAKE_METRICS_ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
}

impl WorkerArgs {
    /// The address to serve tasks on.
    pub fn listen(&self, file: &FileConfig) -> String {
        self.listen
            .clone()
            .or_else(|| file.worker.listen.clone())
            .unwrap_or_else(|| DEFAULT_WORKER_ADDR.into())
    }

    /// Memory the worker's tasks together may hold.
    pub fn memory_limit(&self, file: &FileConfig) -> anyhow::Result<usize> {
        let mb = self
            .memory_limit_mb
            .or(file.worker.memory_limit_mb)
            .unwrap_or(DEFAULT_MEMORY_LIMIT_MB);
        let bytes = scaled_size("[worker] memory_limit_mb", mb, 1024 * 1024)?;
        anyhow::ensure!(bytes > 0, "[worker] memory_limit_mb must be 1 or more");
        Ok(bytes)
    }
}

/// Flags of the event collector (`hourlake collect` and `hourlake up`).
#[derive(Debug, Clone, Args)]
pub struct CollectArgs {
    /// Serve `POST /v1/events` on this address (port 0: any free port, logged).
    /// [default: 127.0.0.1:8081]
    #[arg(long, env = "HOURLAKE_COLLECT_HTTP")]
    pub collect_http: Option<String>,
    /// Bearer tokens the collector accepts, comma-separated; none means no authentication.
    #[arg(
        long = "collect-token",
        env = "HOURLAKE_COLLECT_TOKENS",
        value_delimiter = ','
    )]
    pub collect_tokens: Vec<String>,
    /// Topic engagement events are produced to. [default: app-events; in `up`, the
    /// first of --topics when two are given]
    #[arg(long, env = "HOURLAKE_COLLECT_ENGAGEMENT_TOPIC")]
    pub engagement_topic: Option<String>,
    /// Topic recommendation events are produced to. [default: rec-events; in `up`, the
    /// second of --topics when two are given]
    #[arg(long, env = "HOURLAKE_COLLECT_RECOMMENDATION_TOPIC")]
    pub recommendation_topic: Option<String>,
    /// Largest request body in KiB, before and after gzip. [default: 8192]
    #[arg(long, env = "HOURLAKE_COLLECT_MAX_BODY_KB")]
    pub collect_max_body_kb: Option<usize>,
    /// Milliseconds Kafka may take to acknowledge a batch before the answer is 503.
    /// [default: 10000]
    #[arg(long, env = "HOURLAKE_COLLECT_PRODUCE_TIMEOUT_MS")]
    pub produce_timeout_ms: Option<u64>,
    /// Events waiting for Kafka at most; a batch that does not fit gets 429. [default: 200000]
    #[arg(long, env = "HOURLAKE_COLLECT_MAX_QUEUED_EVENTS")]
    pub max_queued_events: Option<usize>,
}

impl CollectArgs {
    /// Merges flags/env over `[collector]` over defaults; `topics` are the ones `up`
    /// ingests (their first two become the collector's when exactly two are given).
    pub fn resolve(
        &self,
        file: &FileConfig,
        brokers: String,
        topics: Option<&[String]>,
    ) -> anyhow::Result<hourlake_collect::CollectorConfig> {
        let c = &file.collector;
        let mut cfg = hourlake_collect::CollectorConfig::new(brokers);
        if let Some([engagement, recommendation]) = topics {
            cfg.engagement_topic = engagement.clone();
            cfg.recommendation_topic = recommendation.clone();
        }
        if let Some(t) = self
            .engagement_topic
            .clone()
            .or_else(|| c.engagement_topic.clone())
        {
            cfg.engagement_topic = t;
        }
        if let Some(t) = self
            .recommendation_topic
            .clone()
            .or_else(|| c.recommendation_topic.clone())
        {
            cfg.recommendation_topic = t;
        }
        cfg.tokens = if self.collect_tokens.is_empty() {
            c.tokens.clone()
        } else {
            self.collect_tokens.clone()
        };
        if let Some(kb) = self.collect_max_body_kb.or(c.max_body_kb) {
            cfg.max_body_bytes = scaled_size("[collector] max_body_kb", kb, 1024)?;
        }
        if let Some(n) = c.max_batch_events {
            cfg.max_batch_events = n;
        }
        if let Some(ms) = self.produce_timeout_ms.or(c.produce_timeout_ms) {
            cfg.produce_timeout = Duration::from_millis(ms);
        }
        if let Some(n) = self.max_queued_events.or(c.max_queued_events) {
            cfg.max_queued_events = n;
        }
        if let Some(ms) = c.client_timeout_ms {
            cfg.client_timeout = Duration::from_millis(ms);
        }
        cfg.validation = validation(file)?;
        cfg.producer_overrides = c.producer.clone();
        cfg.validate().context("[collector] settings")?;
        Ok(cfg)
    }

    /// The address to serve on.
    pub fn http_addr(&self, file: &FileConfig) -> String {
        self.collect_http
            .clone()
            .or_else(|| file.collector.http.clone())
            .unwrap_or_else(|| DEFAULT_COLLECT_ADDR.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_file_beat_defaults() {
        let file: FileConfig = toml::from_str(
            "[kafka]\nbrokers = \"file:1\"\ngroup = \"g-file\"\n[ingest]\nmax_latency_ms = 250\nretention_days = 2\n",
        )
        .unwrap();
        let args = IngestArgs {
            brokers: Some("flag:1".into()),
            topics: None,
            group: None,
            max_latency_ms: None,
            max_rows: Some(10),
            checkpoint_interval: None,
            instance_id: Some("m1".into()),
            metrics_addr: None,
            start_at: None,
        };
        let cfg = args.resolve(&file).unwrap();
        assert_eq!(cfg.brokers, "flag:1");
        assert_eq!(cfg.group, "g-file");
        assert_eq!(cfg.topics, vec!["app-events", "rec-events"]);
        assert_eq!(cfg.flush.max_latency, Duration::from_millis(250));
        assert_eq!(cfg.flush.max_rows, 10);
        assert_eq!(cfg.validation.retention_micros, 2 * 86_400_000_000);
        assert_eq!(
            cfg.kafka_overrides
                .get("group.instance.id")
                .map(String::as_str),
            Some("m1")
        );
        assert!(
            toml::from_str::<FileConfig>("[kafka]\nbrokerz = 1\n").is_err(),
            "typos are errors"
        );
        for bad in [
            "[ingest]\nretention_days = 106751992\n",
            "[ingest]\nmax_future_secs = 9223372036855\n",
            "[ingest]\nretention_days = -1\n",
        ] {
            let file: FileConfig = toml::from_str(bad).unwrap();
            assert!(args.resolve(&file).is_err(), "{bad}");
        }
    }

    #[test]
    fn start_at_needs_a_group_of_its_own() {
        let file = FileConfig::default();
        let time: StartAt = "2026-11-20T10:00:00Z".parse().unwrap();
        let replay = |group: Option<&str>, start_at: Option<StartAt>| IngestArgs {
            group: group.map(String::from),
            start_at,
            ..defaults::<IngestArgs>()
        };
        assert_eq!(
            replay(Some("sandbox"), Some(time))
                .resolve(&file)
                .unwrap()
                .start_at,
            time
        );
        for group in [None, Some(DEFAULT_GROUP)] {
            let err = replay(group, Some(time)).resolve(&file).unwrap_err();
            assert!(err.to_string().contains("--group"), "{err}");
        }
        assert!(replay(None, Some(StartAt::Earliest))
            .resolve(&file)
            .is_err());
        let plain = replay(None, None).resolve(&file).unwrap();
        assert_eq!(plain.start_at, StartAt::Earliest);
        // A group from the file counts as given.
        let file: FileConfig = toml::from_str("[kafka]\ngroup = \"replay-1\"\n").unwrap();
        assert!(replay(None, Some(time)).resolve(&file).is_ok());
    }

    #[test]
    fn retention_keeps_raw_events_as_long_as_ingest_accepts_them_unless_told_otherwise() {
        let day = |d: u64| Some(Duration::from_secs(d * 86_400));
        let resolve = |toml_text: &str, flag: Option<u64>| {
            let file: FileConfig = toml::from_str(toml_text).unwrap();
            let args = CompactArgs {
                retention_days: flag,
                ..defaults::<CompactArgs>()
            };
            args.resolve(&file).map(|c| c.retention)
        };
        let r = resolve("", None).unwrap();
        assert_eq!(
            (r.events, r.dead_letters, r.rollups),
            (day(30), day(30), None)
        );
        let r = resolve("[ingest]\nretention_days = 7\n", None).unwrap();
        assert_eq!(r.events, day(7), "follows ingest");
        let r = resolve(
            "[ingest]\nretention_days = 7\n[retention]\nevents_days = 10\ndead_letters_days = 0\nrollups_days = 400\n",
            None,
        )
        .unwrap();
        assert_eq!(
            (r.events, r.dead_letters, r.rollups),
            (day(10), None, day(400))
        );
        let r = resolve("[retention]\nevents_days = 10\n", Some(3)).unwrap();
        assert_eq!(r.events, day(3), "the flag wins");
        let r = resolve("[retention]\nevents_days = 0\n", None).unwrap();
        assert_eq!(
            (r.events, r.dead_letters),
            (None, day(30)),
            "0 keeps forever"
        );
        assert!(
            resolve("[retention]\nrollups_days = 7\n", None).is_err(),
            "rollups shorter than raw events"
        );
        assert!(toml::from_str::<FileConfig>("[retention]\nevent_days = 1\n").is_err());
    }

    #[test]
    fn sessions_are_on_with_a_30_minute_gap_unless_told_otherwise() {
        let resolve = |toml_text: &str, sessions: Option<bool>, gap: Option<u64>| {
            let file: FileConfig = toml::from_str(toml_text).unwrap();
            let args = CompactArgs {
                sessions,
                session_gap_secs: gap,
                ..defaults::<CompactArgs>()
            };
            args.resolve(&file)
                .map(|c| (c.sessionize, c.session_gap.as_secs()))
        };
        assert_eq!(resolve("", None, None).unwrap(), (true, 1800));
        let file = "[compactor]\nsessions = false\nsession_gap_secs = 600\n";
        assert_eq!(resolve(file, None, None).unwrap(), (false, 600));
        assert_eq!(
            resolve(file, Some(true), Some(900)).unwrap(),
            (true, 900),
            "flags win"
        );
        assert!(resolve("[compactor]\nsession_gap_secs = 0\n", None, None).is_err());
    }

    #[test]
    fn workers_come_from_flags_or_the_file() {
        let file: FileConfig = toml::from_str(
            "[server]\nworkers = [\"w1:1\", \"w2:2\"]\ndistributed_kb_per_task = 64\n[worker]\nlisten = \"0.0.0.0:9\"\n",
        )
        .unwrap();
        let args = defaults::<ServeArgs>();
        assert_eq!(args.workers(&file), ["w1:1", "w2:2"]);
        assert_eq!(args.bytes_per_task(&file).unwrap(), 64 * 1024);
        let flagged = ServeArgs {
            workers: vec!["w3:3".into()],
            ..defaults::<ServeArgs>()
        };
        assert_eq!(flagged.workers(&file), ["w3:3"]);
        assert!(defaults::<ServeArgs>()
            .workers(&FileConfig::default())
            .is_empty());
        assert_eq!(defaults::<WorkerArgs>().listen(&file), "0.0.0.0:9");
        assert_eq!(
            defaults::<WorkerArgs>().listen(&FileConfig::default()),
            DEFAULT_WORKER_ADDR
        );
        let zero: FileConfig = toml::from_str("[server]\ndistributed_kb_per_task = 0\n").unwrap();
        assert!(args.bytes_per_task(&zero).is_err());
    }

    #[test]
    fn a_stray_comma_in_the_token_list_is_an_error() {
        let file = FileConfig::default();
        let args = ServeArgs {
            http: None,
            flight: None,
            // What clap makes of `--token 'secret,'`.
            tokens: vec!["secret".into(), String::new()],
            max_concurrent_queries: None,
            query_timeout_ms: None,
            max_result_rows: None,
            cors_origins: Vec::new(),
            workers: Vec::new(),
            distributed_kb_per_task: None,
            lookup_lists_per_user: None,
            lookup_max_age_days: None,
        };
        let err = args.resolve(&file).unwrap_err();
        assert!(format!("{err:#}").contains("token is empty"), "{err:#}");
        let file: FileConfig = toml::from_str("[server]\ntokens = [\"a\", \" \"]\n").unwrap();
        let args = ServeArgs {
            tokens: Vec::new(),
            ..args
        };
        assert!(args.resolve(&file).is_err());
        let file: FileConfig = toml::from_str("[server]\nquery_timeout_ms = 0\n").unwrap();
        assert!(args.resolve(&file).is_err());
        let file: FileConfig =
            toml::from_str("[server]\ntokens = [\"a\"]\nmax_statement_kb = 64\n").unwrap();
        let config = args.resolve(&file).unwrap();
        assert_eq!(config.statement_limits.max_bytes, 64 * 1024);
    }

    #[test]
    fn lookup_settings_come_from_flags_over_the_file_over_defaults() {
        let day = |d: u64| Some(Duration::from_secs(d * 86_400));
        let args = defaults::<ServeArgs>();
        let d = args.lookup(&FileConfig::default()).unwrap();
        assert_eq!((d.lists_per_user, d.max_age), (20, day(30)));
        let file: FileConfig =
            toml::from_str("[server]\nlookup_lists_per_user = 5\nlookup_max_age_days = 7\n")
                .unwrap();
        let c = args.lookup(&file).unwrap();
        assert_eq!((c.lists_per_user, c.max_age), (5, day(7)));
        let flagged = ServeArgs {
            lookup_lists_per_user: Some(3),
            lookup_max_age_days: Some(0),
            ..defaults::<ServeArgs>()
        };
        let c = flagged.lookup(&file).unwrap();
        assert_eq!(
            (c.lists_per_user, c.max_age),
            (3, None),
            "flags win; 0 days: no age"
        );
        let zero: FileConfig = toml::from_str("[server]\nlookup_lists_per_user = 0\n").unwrap();
        assert!(args.lookup(&zero).is_err());
        let huge: FileConfig = toml::from_str(&format!(
            "[server]\nlookup_max_age_days = {}\n",
            u64::MAX / 2
        ))
        .unwrap();
        assert!(args.lookup(&huge).is_err());
        // What the index is built with is what it keeps.
        let index = hourlake_query::RecommendationIndex::new(c).unwrap();
        assert_eq!(index.lists_per_user(), 3);
    }

    /// Flags as clap makes them from an empty command line.
    fn defaults<T: Args>() -> T {
        #[derive(clap::Parser)]
        struct Command<T: Args> {
            #[command(flatten)]
            inner: T,
        }
        <Command<T> as clap::Parser>::parse_from(["hourlake"]).inner
    }

    #[test]
    fn sizes_and_durations_that_overflow_are_refused_not_wrapped() {
        let huge = u64::MAX / 2;
        for (section, key) in [
            ("server", "max_result_mb"),
            ("server", "cache_mb"),
            ("server", "max_statement_kb"),
            ("server", "max_request_kb"),
        ] {
            let file: FileConfig =
                toml::from_str(&format!("[{section}]\n{key} = {huge}\n")).unwrap();
            let args = defaults::<ServeArgs>();
            let err = args.resolve(&file).unwrap_err();
            assert!(format!("{err:#}").contains("too large"), "{key}: {err:#}");
        }
        let file: FileConfig =
            toml::from_str(&format!("[server]\nmemory_limit_mb = {huge}\n")).unwrap();
        let args = defaults::<ServeArgs>();
        assert!(args.memory_limit(&file).is_err());
        let file: FileConfig =
            toml::from_str(&format!("[server]\ndistributed_kb_per_task = {huge}\n")).unwrap();
        assert!(args.bytes_per_task(&file).is_err());
        let file: FileConfig =
            toml::from_str(&format!("[worker]\nmemory_limit_mb = {huge}\n")).unwrap();
        assert!(defaults::<WorkerArgs>().memory_limit(&file).is_err());
        for key in [
            "target_file_size_mb",
            "vacuum_retention_hours",
            "memory_limit_mb",
        ] {
            let file: FileConfig =
                toml::from_str(&format!("[compactor]\n{key} = {huge}\n")).unwrap();
            let err = defaults::<CompactArgs>().resolve(&file).unwrap_err();
            assert!(format!("{err:#}").contains("too large"), "{key}: {err:#}");
        }
        // Within range they scale.
        let file: FileConfig = toml::from_str("[compactor]\ntarget_file_size_mb = 3\n").unwrap();
        let config = defaults::<CompactArgs>().resolve(&file).unwrap();
        assert_eq!(config.target_file_size, 3 * 1024 * 1024);
    }

    #[test]
    fn quality_settings_come_from_flags_over_the_file_over_defaults() {
        let resolve = |text: &str, days: Option<u32>, k: Option<f64>| {
            let file: FileConfig = toml::from_str(text).unwrap();
            let args = CompactArgs {
                anomaly_days: days,
                anomaly_k: k,
                ..defaults::<CompactArgs>()
            };
            args.resolve(&file).map(|c| c.quality)
        };
        let d = resolve("", None, None).unwrap();
        assert_eq!(d, hourlake_compactor::QualityConfig::default());
        let file = "[quality]\nanomaly_days = 14\nanomaly_min_days = 5\nanomaly_k = 3.5\n\
                    anomaly_min_mad_fraction = 0.1\nexact_users_every = 6\n";
        let q = resolve(file, None, None).unwrap();
        assert_eq!(
            (q.anomaly_days, q.anomaly_min_days, q.anomaly_k),
            (14, 5, 3.5)
        );
        assert_eq!((q.anomaly_min_mad_fraction, q.exact_users_every), (0.1, 6));
        let q = resolve(file, Some(10), Some(6.0)).unwrap();
        assert_eq!((q.anomaly_days, q.anomaly_k), (10, 6.0));
        // Settings that cannot work are refused, and unknown keys too.
        assert!(resolve("[quality]\nanomaly_min_days = 9\n", None, None).is_err());
        assert!(resolve("", None, Some(0.0)).is_err());
        assert!(toml::from_str::<FileConfig>("[quality]\nanomaly_day = 1\n").is_err());
    }
}
