//! `hourlake status`: the lake at a glance — tables, compactor leases, rollup coverage,
//! and with `--brokers` each partition's lag and the offset account.

use anyhow::Context;
use clap::Args;
use hourlake_compactor::status::{age_text, lease_summary, status, LakeStatus};
use serde::Serialize;

use crate::audit_command::{account, AuditFormat, PartitionAccount};
use crate::config::{CommonArgs, CompactArgs};

/// Options of `hourlake status`.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Kafka bootstrap servers: adds each partition's lag and the offset account.
    #[arg(long, env = "HOURLAKE_BROKERS")]
    brokers: Option<String>,
    /// An hour counts as closed (and due for rollup) this many seconds after it ends.
    /// [default: 300]
    #[arg(long, env = "HOURLAKE_CLOSED_AFTER_SECS")]
    closed_after_secs: Option<u64>,
    /// How many of the newest hours to list per table.
    #[arg(long, default_value_t = 6)]
    hours: usize,
    /// Output format.
    #[arg(long, value_enum, default_value_t = AuditFormat::Table)]
    format: AuditFormat,
}

#[derive(Debug, Serialize)]
struct Status {
    #[serde(flatten)]
    lake: LakeStatus,
    partitions: Vec<PartitionAccount>,
    /// `exact` when no offset is missing (before the lag) or doubled.
    verdict: &'static str,
}

/// Prints the status; an error when an offset is missing (not just not yet ingested)
/// or doubled.
pub async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let file = args.common.file()?;
    let lake = args.common.lake(&file)?;
    let config = CompactArgs {
        target_file_size_mb: None,
        closed_after_secs: args.closed_after_secs,
        compact_interval_secs: None,
        vacuum_retention_hours: None,
        compactor_id: None,
        retention_days: None,
        settle_secs: None,
        anomaly_days: None,
        anomaly_k: None,
        sessions: None,
        session_gap_secs: None,
    }
    .resolve(&file)?;
    let lake_status = status(&lake, &config, args.hours)
        .await
        .context("reading the lake")?;
    let partitions = account(&lake, args.brokers.as_deref()).await?;
    let exact = partitions.iter().all(PartitionAccount::is_exact);
    let status = Status {
        lake: lake_status,
        partitions,
        verdict: if exact {
            "exact"
        } else {
            "offsets missing or doubled"
        },
    };
    match args.format {
        AuditFormat::Json => println!("{}", serde_json::to_string_pretty(&status)?),
        AuditFormat::Table => print!("{}", text(&status)),
    }
    anyhow::ensure!(exact, "offsets are missing or doubled (see hourlake audit)");
    Ok(())
}

/// The status as aligned tables.
fn text(status: &Status) -> String {
    let now_ms = chrono::Utc::now().timestamp_millis();
    let mut out = format!(
        "{:<24} {:>8} {:>12} {:>7}  {:<16} {:<16} {}\n",
        "table", "version", "rows", "files", "last commit", "checkpoint", "compactor lease"
    );
    for t in &status.lake.tables {
        out.push_str(&format!(
            "{:<24} {:>8} {:>12} {:>7}  {:<16} {:<16} {}\n",
            t.table,
            t.version,
            t.rows,
            t.files,
            age_text(t.last_commit_age_secs),
            age_text(t.checkpoint_age_secs),
            t.lease
                .as_ref()
                .map_or_else(|| "none".to_string(), |l| lease_summary(l, now_ms)),
        ));
        if !t.recent_hours.is_empty() {
            let hours: Vec<String> = t
                .recent_hours
                .iter()
                .map(|h| format!("{} {} files/{} rows", h.hour, h.files, h.rows))
                .collect();
            out.push_str(&format!("  newest hours: {}\n", hours.join(", ")));
        }
    }
    out.push('\n');
    out.push_str(&format!(
        "{:<24} {:<22} {:>12} {:>10}  {}\n",
        "rollup", "source", "closed hours", "rolled up", "behind"
    ));
    for r in &status.lake.rollups {
        out.push_str(&format!(
            "{:<24} {:<22} {:>12} {:>10}  {}\n",
            r.rollup,
            r.source,
            r.closed_hours,
            r.rolled_up,
            if r.behind.is_empty() {
                "-".to_string()
            } else {
                r.behind.join(", ")
            }
        ));
    }
    out.push('\n');
    out.push_str(&format!(
        "{:<40} {:>9} {:>10} {:>10} {:>8} {:>8}\n",
        "topic", "partition", "lag", "expected", "gaps", "doubled"
    ));
    for p in &status.partitions {
        out.push_str(&format!(
            "{:<40} {:>9} {:>10} {:>10} {:>8} {:>8}\n",
            p.audit.topic,
            p.audit.partition,
            p.lag.map_or_else(|| "-".to_string(), |l| l.to_string()),
            p.audit.expected,
            p.gaps,
            p.audit.doubled
        ));
    }
    out.push_str(&format!("\noffsets: {}\n", status.verdict));
    out
}
