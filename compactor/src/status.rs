//! A lake at a glance, as an operator asks for it: per table its version, rows and
//! files (per hour for the newest hours), how long ago it was last committed and
//! checkpointed, who holds its compactor lease; and per rollup which closed hours are
//! rolled up. (Kafka lag and the offset account come from [`audit`](crate::audit).)

use std::collections::BTreeSet;
use std::time::Duration;

use hourlake_catalog::rollup::Rollup;
use hourlake_catalog::{Hour, Lake, TableId};
use hourlake_sql::SessionFactory;
use object_store::path::Path;
use object_store::ObjectStoreExt;
use serde::Serialize;

use crate::lease::{self, LeaseState};
use crate::plan;
use crate::{CompactorConfig, CompactorError};

/// One table's state.
#[derive(Debug, Clone, Serialize)]
pub struct TableStatus {
    pub table: &'static str,
    /// The newest version.
    pub version: u64,
    /// Rows of the active files (from the log's statistics).
    pub rows: u64,
    /// Active data files.
    pub files: usize,
    /// The newest hours (hour-partitioned tables only), newest first.
    pub recent_hours: Vec<HourFiles>,
    /// Seconds since the newest commit was written.
    pub last_commit_age_secs: Option<f64>,
    /// Seconds since the last checkpoint was written; `None`: never checkpointed.
    pub checkpoint_age_secs: Option<f64>,
    /// The compactor lease, if one was ever taken on this table.
    pub lease: Option<LeaseState>,
}

/// The files of one hour partition.
#[derive(Debug, Clone, Serialize)]
pub struct HourFiles {
    /// `YYYY-MM-DDTHH` (UTC).
    pub hour: String,
    pub files: usize,
    pub rows: u64,
}

/// Which closed hours of a rollup's source have rollup rows.
#[derive(Debug, Clone, Serialize)]
pub struct RollupCoverage {
    pub rollup: &'static str,
    pub source: &'static str,
    /// Closed hours the source holds events for (for `sessions_hourly`: start hours of
    /// `sessions` with no provisional session starting in or before them).
    pub closed_hours: usize,
    /// Of those, the hours the rollup holds rows for.
    pub rolled_up: usize,
    /// Closed hours without rollup rows, newest first (at most 24).
    pub behind: Vec<String>,
}

/// The whole lake's state.
#[derive(Debug, Clone, Serialize)]
pub struct LakeStatus {
    pub tables: Vec<TableStatus>,
    pub rollups: Vec<RollupCoverage>,
}

/// The state of every existing table of `lake` now; hours count as closed as the
/// compactor configured by `config` sees them; `recent_hours` hours are listed.
pub async fn status(
    lake: &Lake,
    config: &CompactorConfig,
    recent_hours: usize,
) -> Result<LakeStatus, CompactorError> {
    let now = chrono::Utc::now();
    let now_micros = now.timestamp_micros();
    let mut tables = Vec::new();
    let mut hours_of = std::collections::BTreeMap::new();
    for &id in TableId::ALL {
        let Some(table) = lake.open(id).await? else {
            continue;
        };
        let snapshot = table.snapshot().map_err(id.delta_error())?;
        let version = snapshot.version();
        let (mut rows, mut files) = (0u64, 0usize);
        for view in snapshot.log_data().iter() {
            files += 1;
            rows += view.num_records().map_or(0, |n| n as u64);
        }
        let mut recent = Vec::new();
        if id
            .partition_columns()
            .contains(&hourlake_catalog::schema::EVENT_HOUR)
        {
            let by_hour = plan::files_by_hour(id, &table)?;
            recent = by_hour
                .iter()
                .rev()
                .take(recent_hours)
                .map(|(hour, files)| HourFiles {
                    hour: hour.to_string(),
                    files: files.len(),
                    rows: files.iter().map(|f| f.rows.unwrap_or(0)).sum(),
                })
                .collect();
            hours_of.insert(id, by_hour.into_keys().collect::<BTreeSet<Hour>>());
        }
        let store = table.log_store().object_store(None);
        let age = |path: Path| {
            let store = store.clone();
            async move {
                match store.head(&path).await {
                    Ok(meta) => Ok(Some(
                        (now - meta.last_modified).num_milliseconds() as f64 / 1000.0,
                    )),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(source) => Err(CompactorError::LeaseStore {
                        table: id.name(),
                        source,
                    }),
                }
            }
        };
        let last_commit_age_secs =
            age(Path::from(format!("_delta_log/{version:020}.json"))).await?;
        let checkpoint_age_secs = age(Path::from("_delta_log/_last_checkpoint")).await?;
        let lease = lease::inspect(id, store.as_ref()).await?;
        tables.push(TableStatus {
            table: id.name(),
            version,
            rows,
            files,
            recent_hours: recent,
            last_commit_age_secs,
            checkpoint_age_secs,
            lease,
        });
    }
    let factory = SessionFactory::new(lake.clone());
    let mut rollups = Vec::new();
    for rollup in Rollup::ALL {
        let Some(source_hours) = hours_of.get(&rollup.source) else {
            continue;
        };
        // A rollup of rows that may still change covers an hour once they are final.
        let first_provisional = match lake.open(rollup.source).await? {
            Some(source) if rollup.final_rows.is_some() => {
                crate::sessions::first_provisional_start(&factory, &source).await?
            }
            _ => None,
        };
        let closed: Vec<Hour> = source_hours
            .iter()
            .copied()
            .filter(|hour| plan::is_closed(config, *hour, now_micros))
            .filter(|hour| crate::sessions::is_settled(*hour, first_provisional))
            .collect();
        let done = match lake.open(rollup.table).await? {
            Some(table) => hourlake_sql::rollup_hours(&factory, rollup.table, &table).await?,
            None => BTreeSet::new(),
        };
        let behind: Vec<Hour> = closed
            .iter()
            .rev()
            .filter(|h| !done.contains(h))
            .copied()
            .collect();
        rollups.push(RollupCoverage {
            rollup: rollup.table.name(),
            source: rollup.source.name(),
            closed_hours: closed.len(),
            rolled_up: closed.len() - behind.len(),
            behind: behind.iter().take(24).map(Hour::to_string).collect(),
        });
    }
    Ok(LakeStatus { tables, rollups })
}

/// How old a lease is and whether it still holds, for display.
pub fn lease_summary(lease: &LeaseState, now_ms: i64) -> String {
    if lease.released {
        return format!("released by {}", lease.holder);
    }
    let remaining = (lease.expires_at_ms - now_ms) as f64 / 1000.0;
    if remaining > 0.0 {
        format!("{} (expires in {remaining:.0} s)", lease.holder)
    } else {
        format!("{} (expired {:.0} s ago)", lease.holder, -remaining)
    }
}

/// Ages below a minute in seconds, then minutes, hours, days.
pub fn age_text(secs: Option<f64>) -> String {
    let Some(secs) = secs else {
        return "never".to_string();
    };
    let secs = secs.max(0.0);
    let d = Duration::from_secs_f64(secs);
    match d.as_secs() {
        0..=59 => format!("{secs:.1} s ago"),
        60..=3599 => format!("{} min ago", d.as_secs() / 60),
        3600..=86_399 => format!("{:.1} h ago", secs / 3600.0),
        _ => format!("{:.1} d ago", secs / 86_400.0),
    }
}
