//! `hourlake backfill`: loads historical events from NDJSON (optionally gzip) and
//! Parquet files into the lake, exactly once per file, while ingest runs.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use hourlake_ingest::{backfill, files_under, BackfillProgress, IngestConfig};
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::{validation, CommonArgs};

/// The command line of `hourlake backfill`.
#[derive(Debug, Args)]
pub struct BackfillArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Files or folders (read recursively): `.ndjson`/`.jsonl`/`.json`, `.gz`, `.parquet`.
    #[arg(required = true, value_name = "FILE|DIR")]
    pub paths: Vec<PathBuf>,
    /// The prefix of the `txn` app ids that record what was loaded (keep it to resume).
    #[arg(long, default_value = "hourlake-backfill")]
    pub group: String,
    /// Events per commit.
    #[arg(long, default_value_t = 250_000)]
    pub batch_events: usize,
}

/// Loads the files; prints the totals as JSON.
pub async fn run(args: BackfillArgs) -> anyhow::Result<()> {
    let file = args.common.file()?;
    let lake = args.common.lake(&file)?;
    let files = files_under(&args.paths).context("finding the input files")?;
    anyhow::ensure!(
        !files.is_empty(),
        "no NDJSON or Parquet files under {:?}",
        args.paths
    );
    let total_bytes: u64 = files.iter().map(|f| f.bytes).sum();
    let mut config = IngestConfig::new("", Vec::new(), args.group.clone());
    config.validation = validation(&file)?;
    config.flush.max_rows = args.batch_events.max(1);
    eprintln!(
        "backfilling {} file(s), {:.1} MiB, into {}",
        files.len(),
        total_bytes as f64 / 1048576.0,
        lake.root()
    );
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(total_bytes);
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {bytes}/{total_bytes} · {msg} · eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let runtime = tokio::runtime::Handle::current();
    let shown = bar.clone();
    let total_files = files.len();
    let done = tokio::task::spawn_blocking(move || {
        backfill(&runtime, &lake, &config, &files, |p: &BackfillProgress| {
            let rate = p.events as f64 / p.elapsed_secs.max(1e-3);
            let line = format!(
                "files {}/{total_files} · {} events ({:.0}/s) · {} rows committed, {} already there",
                p.files_done, p.events, rate, p.rows_committed, p.skipped
            );
            if shown.is_hidden() {
                tracing::info!("{line}");
            } else {
                shown.set_position(p.bytes_done);
                shown.set_message(line);
            }
        })
    })
    .await
    .context("backfill task")?
    .context("backfill")?;
    bar.finish_and_clear();
    println!(
        "{}",
        serde_json::json!({
            "files": done.files_done,
            "events": done.events,
            "rows_committed": done.rows_committed,
            "already_loaded": done.skipped,
            "elapsed_s": done.elapsed_secs,
            "events_per_s": done.events as f64 / done.elapsed_secs.max(1e-3),
        })
    );
    Ok(())
}
