//! What a pass did, for logs and for tests.

use std::fmt;

use hourlake_catalog::{Hour, TableId};

use crate::sessions::SessionsReport;
use crate::{Dropped, HourRewrite, Maintenance, QualityReport};

/// What one pass did to one event table and its rollups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableReport {
    /// The event table.
    pub table: TableId,
    /// Set when the pass skipped the table because another compactor holds its lease.
    pub lease_held_by: Option<String>,
    /// The hours rewritten.
    pub rewrites: Vec<HourRewrite>,
    /// The hours whose rollup rows were recomputed.
    pub rolled_up: Vec<Hour>,
    /// Rollup rows written.
    pub rollup_rows: usize,
    /// Checkpoint, log cleanup and vacuum, when the pass ran them.
    pub maintenance: Option<Maintenance>,
    /// What the pass did to `sessions` and `sessions_hourly`, when it derives them from
    /// this table.
    pub sessions: Option<SessionsReport>,
    /// Wall time.
    pub millis: u64,
}

impl TableReport {
    pub(crate) fn new(table: TableId) -> TableReport {
        TableReport {
            table,
            lease_held_by: None,
            rewrites: Vec::new(),
            rolled_up: Vec::new(),
            rollup_rows: 0,
            maintenance: None,
            sessions: None,
            millis: 0,
        }
    }

    /// Duplicate events removed by this pass.
    pub fn duplicates_removed(&self) -> u64 {
        self.rewrites.iter().map(|r| r.duplicates_removed).sum()
    }
}

/// What one pass did to every table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassReport {
    /// One entry per event table that exists.
    pub tables: Vec<TableReport>,
    /// What retention dropped (maintenance passes only), one entry per table that lost
    /// partitions.
    pub dropped: Vec<Dropped>,
    /// The quality figures computed (for the hours rolled up), when there were any.
    pub quality: Option<QualityReport>,
}

impl PassReport {
    /// Whether the pass changed nothing.
    pub fn is_idle(&self) -> bool {
        self.dropped.is_empty()
            && self.quality.is_none()
            && self.tables.iter().all(|t| {
                t.rewrites.is_empty()
                    && t.rolled_up.is_empty()
                    && t.maintenance.as_ref().is_none_or(|m| m.files_vacuumed == 0)
                    && t.sessions.as_ref().is_none_or(SessionsReport::is_idle)
            })
    }

    /// The report of one table, if the pass looked at it.
    pub fn table(&self, id: TableId) -> Option<&TableReport> {
        self.tables.iter().find(|t| t.table == id)
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

impl fmt::Display for TableReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(holder) = &self.lease_held_by {
            return write!(
                f,
                "{}: skipped, {holder} holds the compactor lease",
                self.table
            );
        }
        let files_in: usize = self.rewrites.iter().map(|r| r.files_in).sum();
        let files_out: usize = self.rewrites.iter().map(|r| r.files_out).sum();
        let bytes_in: u64 = self.rewrites.iter().map(|r| r.bytes_in).sum();
        let bytes_out: u64 = self.rewrites.iter().map(|r| r.bytes_out).sum();
        write!(
            f,
            "{}: {} hours rewritten (files {files_in} → {files_out}, {:.1} → {:.1} MiB, {} duplicates removed), {} hours rolled up ({} rows)",
            self.table,
            self.rewrites.len(),
            mib(bytes_in),
            mib(bytes_out),
            self.duplicates_removed(),
            self.rolled_up.len(),
            self.rollup_rows,
        )?;
        if let Some(s) = self.sessions.as_ref().filter(|s| !s.is_idle()) {
            write!(
                f,
                ", sessions: {} windows over {} hours ({} recomputed, {} provisional, {} carried over), {} session hours rolled up ({} rows)",
                s.windows.len(),
                s.hours_replaced,
                s.sessions,
                s.provisional,
                s.carried,
                s.rolled_up.len(),
                s.rollup_rows,
            )?;
        }
        if let Some(m) = &self.maintenance {
            write!(
                f,
                ", checkpoint at v{}, {} log entries and {} files removed",
                m.checkpoint_version.unwrap_or(0),
                m.log_entries_removed,
                m.files_vacuumed
            )?;
        }
        write!(f, " in {:.1} s", self.millis as f64 / 1000.0)
    }
}

impl fmt::Display for PassReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut lines: Vec<String> = self.tables.iter().map(ToString::to_string).collect();
        lines.extend(self.dropped.iter().map(|d| {
            format!(
                "{}: retention dropped {} partitions ({} files, {} rows, {} offset runs recorded)",
                d.table, d.partitions, d.files, d.rows, d.offset_runs
            )
        }));
        if let Some(q) = &self.quality {
            let mut line = format!(
                "quality: {} hours ({} rows), {} anomalies",
                q.hours.len(),
                q.rows,
                q.anomalies.len()
            );
            if !q.anomalies.is_empty() {
                let flags: Vec<String> = q.anomalies.iter().map(ToString::to_string).collect();
                line.push_str(&format!(" ({})", flags.join(", ")));
            }
            lines.push(line);
        }
        f.write_str(&lines.join("; "))
    }
}
