//! The compactor: passes over every event table, each under that table's lease.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::time::Instant;

use deltalake::DeltaTable;
use hourlake_catalog::{Lake, Rollup, TableId};
use hourlake_sql::SessionFactory;
use tokio::sync::Mutex;

use crate::erasure::{self, ErasureReport};
use crate::plan::{files_by_hour, is_closed, rewrite_reason};
use crate::quality::QualityState;
use crate::report::{PassReport, TableReport};
use crate::rollup::RollupPass;
use crate::{
    maintenance, rewrite, sessions, CompactorConfig, CompactorError, CompactorMetrics, Lease,
};

/// Rewrites small files, removes duplicates, keeps the hourly rollups current and
/// tidies storage. Several may run against one lake: a lease per table lets only one
/// act on a table at a time.
#[derive(Debug)]
pub struct Compactor {
    lake: Lake,
    factory: SessionFactory,
    config: CompactorConfig,
    holder: String,
    metrics: CompactorMetrics,
    leases: Mutex<HashMap<TableId, Lease>>,
    passes: std::sync::atomic::AtomicU64,
    quality: Mutex<QualityState>,
}

impl Compactor {
    /// A compactor over `lake`; `holder` names it in leases and logs (host and pid
    /// make a good one).
    pub fn new(lake: Lake, config: CompactorConfig, holder: impl Into<String>) -> Compactor {
        let factory = SessionFactory::new(lake.clone()).with_memory_limit(config.memory_limit);
        Compactor {
            lake,
            factory,
            config,
            holder: holder.into(),
            metrics: CompactorMetrics::default(),
            leases: Mutex::new(HashMap::new()),
            passes: std::sync::atomic::AtomicU64::new(0),
            quality: Mutex::new(QualityState::default()),
        }
    }

    /// The counters this compactor updates.
    pub fn metrics(&self) -> &CompactorMetrics {
        &self.metrics
    }

    /// One pass over every event table. Leases taken are kept for the next pass; call
    /// [`Compactor::release`] when done.
    pub async fn run_pass(&self) -> Result<PassReport, CompactorError> {
        let pass = self
            .passes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        let maintain = self.config.maintenance_every > 0
            && pass.is_multiple_of(u64::from(self.config.maintenance_every));
        self.pass(maintain).await
    }

    /// One pass that also checkpoints, cleans up the log and vacuums.
    pub async fn run_pass_with_maintenance(&self) -> Result<PassReport, CompactorError> {
        self.passes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.pass(true).await
    }

    async fn pass(&self, maintain: bool) -> Result<PassReport, CompactorError> {
        let mut report = PassReport::default();
        if let Err(e) = self.process_erasures().await {
            self.metrics.pass_errors.inc();
            return Err(e);
        }
        // Retention first, so that this pass's vacuum already sees what it dropped; a
        // failure there fails the pass only after the rest of it ran.
        let expired = if maintain {
            self.expire(&mut report).await
        } else {
            Ok(())
        };
        for &id in TableId::EVENTS {
            match self.compact_table(id, maintain).await {
                Ok(Some(table_report)) => report.tables.push(table_report),
                Ok(None) => {}
                Err(e) => {
                    self.metrics.pass_errors.inc();
                    return Err(e);
                }
            }
        }
        self.account_loss(maintain).await;
        let quality = self.check_quality(&mut report).await;
        if maintain {
            self.audit().await;
        }
        expired?;
        quality?;
        self.metrics.passes.inc();
        Ok(report)
    }

    /// Computes the quality figures of the hours rolled up, in an event table's rollups
    /// or in `sessions_hourly` (by this pass, or by an earlier one whose quality step
    /// failed), and publishes their flags. A failure keeps the hours for the next pass.
    async fn check_quality(&self, report: &mut PassReport) -> Result<(), CompactorError> {
        let mut state = self.quality.lock().await;
        if !self.config.quality.enabled {
            state.pending.clear();
            return Ok(());
        }
        if state.pending.is_empty() {
            return Ok(());
        }
        let hours: Vec<_> = state.pending.iter().copied().collect();
        match crate::quality::recompute(&self.lake, &self.factory, &self.config, &hours).await {
            Ok(figures) => {
                state.pending.clear();
                let done = state.record(&figures, &self.metrics);
                for a in &done.anomalies {
                    tracing::warn!(hour = %a.hour, table = a.table.name(), metric = a.metric.name(), dimension = %a.dimension, direction = %a.direction, "data-quality anomaly (quality_anomalies)");
                }
                report.quality = Some(done);
                Ok(())
            }
            Err(e) => {
                self.metrics.quality_errors.inc();
                self.metrics.pass_errors.inc();
                tracing::warn!(error = %e, hours = hours.len(), "quality figures failed; retried at the next pass");
                Err(e)
            }
        }
    }

    /// Checks that every Kafka offset ingested more than the settle time ago is in
    /// exactly one place, and publishes the missing and doubled counts per partition.
    async fn audit(&self) {
        let cutoff = chrono::Utc::now().timestamp_micros()
            - i64::try_from(self.config.settle.as_micros()).unwrap_or(i64::MAX);
        match crate::audit::audit_settled(&self.lake, cutoff).await {
            Ok(partitions) => {
                for p in &partitions {
                    let label = vec![
                        ("topic", p.topic.clone()),
                        ("partition", p.partition.to_string()),
                    ];
                    self.metrics
                        .audit_missing
                        .get_or_create(&label)
                        .set(p.missing);
                    self.metrics
                        .audit_doubled
                        .get_or_create(&label)
                        .set(p.doubled);
                    if !p.is_exact() {
                        tracing::error!(
                            topic = %p.topic,
                            partition = p.partition,
                            missing = p.missing,
                            doubled = p.doubled,
                            "offset audit: not every offset is in exactly one place (run `hourlake audit`)"
                        );
                    }
                }
                self.metrics.audits.inc();
            }
            Err(e) => {
                self.metrics.audit_errors.inc();
                tracing::warn!(error = %e, "offset audit failed; retried at the next maintenance pass");
            }
        }
    }

    /// Brings `loss_minutely` up to date under the lease of `ingested_minutes` (and, at
    /// maintenance passes, packs that table's closed hours); publishes the last day's
    /// missing and surplus messages per topic. A failure is logged and counted: the next
    /// pass retries.
    async fn account_loss(&self, maintain: bool) {
        let now = chrono::Utc::now().timestamp_micros();
        let settled_before =
            now - i64::try_from(self.config.settle.as_micros()).unwrap_or(i64::MAX);
        let result = async {
            let id = TableId::IngestedMinutes;
            let Some(table) = self.lake.open(id).await? else {
                return Ok(());
            };
            let Some(lease) = self.lease(id, &table).await? else {
                return Ok(());
            };
            self.leases.lock().await.insert(id, lease);
            let pass = crate::loss::account_minutes(&self.lake, &self.factory, settled_before).await?;
            if !pass.hours.is_empty() {
                self.metrics.loss_hours.inc_by(pass.hours.len() as u64);
                tracing::debug!(hours = pass.hours.len(), rows = pass.rows, "loss table updated");
            }
            let day_ago = now - 24 * 3_600_000_000;
            for (topic, totals) in crate::loss::totals_since(&self.lake, &self.factory, day_ago).await? {
                let label = vec![("topic", topic.clone())];
                self.metrics.loss_missing.get_or_create(&label).set(totals.missing);
                self.metrics.loss_surplus.get_or_create(&label).set(totals.surplus);
                if totals.missing > 0 || totals.surplus > 0 {
                    tracing::error!(%topic, missing = totals.missing, surplus = totals.surplus, "loss table: messages ingested are not where they should be (see loss_minutely)");
                }
            }
            if maintain {
                let closed_before = now
                    - i64::try_from(self.config.closed_after.as_micros()).unwrap_or(i64::MAX);
                crate::loss::tidy(&self.lake, &self.config, closed_before).await?;
            }
            Ok::<(), CompactorError>(())
        }
        .await;
        if let Err(e) = result {
            self.metrics.loss_errors.inc();
            tracing::warn!(error = %e, "loss table pass failed; retried at the next pass");
        }
    }

    /// Passes every `interval` until `shutdown` resolves, then releases the leases.
    /// A failed pass is logged and retried at the next interval.
    pub async fn watch(&self, shutdown: impl Future<Output = ()>) -> Result<(), CompactorError> {
        tokio::pin!(shutdown);
        loop {
            match self.run_pass().await {
                Ok(report) if report.is_idle() => tracing::debug!("compaction pass: nothing to do"),
                Ok(report) => tracing::info!("compaction pass: {report}"),
                Err(e) => {
                    tracing::warn!(error = %e, "compaction pass failed; retrying next interval")
                }
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(self.config.interval) => {}
            }
        }
        self.release().await
    }

    /// Carries out the erasure requests waiting in the lake ([`crate::erasure`]) when
    /// this compactor holds, or can take, the lease of every event table; otherwise they
    /// stay queued for the compactor that holds them. Each pass calls this first.
    pub async fn process_erasures(&self) -> Result<Vec<ErasureReport>, CompactorError> {
        let requests = erasure::pending(&self.lake).await?;
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        let mut leases = BTreeMap::new();
        for &id in TableId::EVENTS {
            let Some(table) = self.lake.open(id).await? else {
                continue;
            };
            match self.lease(id, &table).await {
                Ok(Some(lease)) => {
                    leases.insert(id, lease);
                }
                other => {
                    self.leases.lock().await.extend(leases);
                    return other.map(|_| Vec::new());
                }
            }
        }
        let mut reports = Vec::new();
        let mut failed = None;
        for request in &requests {
            match erasure::carry_out(
                &self.lake,
                &self.factory,
                &self.config,
                &mut leases,
                request,
            )
            .await
            {
                Ok(report) => {
                    tracing::info!(
                        request = %report.request_id,
                        users = report.users,
                        rows_removed = ?report.rows_removed,
                        hours_recomputed = report.hours_recomputed,
                        files_purged = report.files_purged,
                        "users erased"
                    );
                    self.metrics.erased_users.inc_by(report.users as u64);
                    reports.push(report);
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        self.leases.lock().await.extend(leases);
        match failed {
            Some(e) => Err(e),
            None => Ok(reports),
        }
    }

    /// Gives up every lease this compactor holds.
    pub async fn release(&self) -> Result<(), CompactorError> {
        let leases: Vec<Lease> = self.leases.lock().await.drain().map(|(_, l)| l).collect();
        for lease in leases {
            lease.release().await?;
        }
        Ok(())
    }

    /// Takes (or renews) the lease of `id`. `Ok(None)`: another compactor holds it.
    async fn lease(
        &self,
        id: TableId,
        table: &DeltaTable,
    ) -> Result<Option<Lease>, CompactorError> {
        let held = self.leases.lock().await.remove(&id);
        if let Some(mut lease) = held {
            match lease.renew().await {
                Ok(()) => return Ok(Some(lease)),
                Err(CompactorError::LeaseLost { holder, .. }) => {
                    tracing::warn!(table = id.name(), %holder, "compactor lease was taken over");
                }
                Err(e) => return Err(e),
            }
        }
        let store = table.log_store().object_store(None);
        match Lease::acquire(id, store, self.holder.clone(), self.config.lease_ttl).await {
            Ok(lease) => Ok(Some(lease)),
            Err(CompactorError::LeaseHeld { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn compact_table(
        &self,
        id: TableId,
        maintain: bool,
    ) -> Result<Option<TableReport>, CompactorError> {
        let started = Instant::now();
        let Some(mut table) = self.lake.open(id).await? else {
            return Ok(None);
        };
        let mut report = TableReport::new(id);
        let Some(mut lease) = self.lease(id, &table).await? else {
            self.metrics.lease_busy.inc();
            let store = table.log_store().object_store(None);
            report.lease_held_by = Some(
                match Lease::acquire(id, store, self.holder.clone(), self.config.lease_ttl).await {
                    Err(CompactorError::LeaseHeld { holder, .. }) => holder,
                    _ => "another compactor".to_string(),
                },
            );
            return Ok(Some(report));
        };
        let result = self
            .compact_leased(id, &mut table, &mut lease, maintain, &mut report)
            .await;
        self.leases.lock().await.insert(id, lease);
        result?;
        report.millis = started.elapsed().as_millis() as u64;
        Ok(Some(report))
    }

    /// Whether passes over `id` derive the sessions (and their rollup) from it.
    fn sessionizes(&self, id: TableId) -> bool {
        self.config.sessionize && id == TableId::EngagementEvents
    }

    async fn compact_leased(
        &self,
        id: TableId,
        table: &mut DeltaTable,
        lease: &mut Lease,
        maintain: bool,
        report: &mut TableReport,
    ) -> Result<(), CompactorError> {
        let planned_version = table.version().unwrap_or(0);
        let mut rollups = Vec::new();
        for rollup in Rollup::of_source(id) {
            rollups.push(
                RollupPass::start(&self.lake, &self.factory, rollup, table, planned_version)
                    .await?,
            );
        }
        let now = chrono::Utc::now().timestamp_micros();
        let hours = files_by_hour(id, table)?;

        let mut dirty = Vec::new();
        for (hour, files) in &hours {
            let closed = is_closed(&self.config, *hour, now);
            let mut is_dirty = false;
            if closed {
                for rollup in &mut rollups {
                    is_dirty |= rollup.mark_if_stale(*hour);
                }
            }
            if is_dirty {
                dirty.push(*hour);
            }
            if let Some(reason) = rewrite_reason(&self.config, files, closed, is_dirty) {
                let done = rewrite::rewrite_hour_retrying(
                    id,
                    table,
                    &self.factory,
                    &self.config,
                    lease,
                    *hour,
                    files,
                    reason,
                )
                .await?;
                tracing::debug!(table = id.name(), hour = %done.hour, ?reason, files_in = done.files_in, files_out = done.files_out, duplicates = done.duplicates_removed, "hour rewritten");
                if let Some(oldest) = files.iter().map(|f| f.written_at_ms).min() {
                    let now = chrono::Utc::now().timestamp_millis();
                    self.metrics
                        .commit_to_compacted
                        .observe(now.saturating_sub(oldest).max(0) as f64 / 1000.0);
                }
                self.metrics.hours_rewritten.inc();
                self.metrics.files_in.inc_by(done.files_in as u64);
                self.metrics.files_out.inc_by(done.files_out as u64);
                self.metrics.bytes_in.inc_by(done.bytes_in);
                self.metrics
                    .duplicates_removed
                    .inc_by(done.duplicates_removed);
                report.rewrites.push(done);
            }
        }

        // Hours that were rolled up but whose files are all gone cannot exist: rows
        // are never deleted. Hours still open are left to raw reads.
        if !dirty.is_empty() {
            table.update_state().await.map_err(id.delta_error())?;
            lease.renew().await?;
            for rollup in &rollups {
                report.rollup_rows += rollup
                    .recompute(&self.factory, table, planned_version)
                    .await?;
            }
            self.metrics.rollup_hours.inc_by(dirty.len() as u64);
            let now = chrono::Utc::now().timestamp_micros();
            for hour in &dirty {
                self.metrics
                    .hour_end_to_rollup
                    .observe(now.saturating_sub(hour.end_micros()).max(0) as f64 / 1e6);
            }
            self.quality.lock().await.pending.extend(&dirty);
            report.rolled_up = dirty;
        }

        let derived = self.sessionizes(id);
        if derived {
            table.update_state().await.map_err(id.delta_error())?;
            lease.renew().await?;
            let now = chrono::Utc::now().timestamp_micros();
            let done = sessions::update(
                &self.lake,
                &self.factory,
                &self.config,
                table,
                planned_version,
                lease,
                now,
            )
            .await?;
            self.metrics
                .rollup_hours
                .inc_by(done.rolled_up.len() as u64);
            // Only now are the start hours' sessions all final: their quality figures
            // gain the session consistency ones.
            self.quality.lock().await.pending.extend(&done.rolled_up);
            report.sessions = Some(done);
        }

        if maintain {
            lease.renew().await?;
            let mut m = maintenance::maintain(id, table, &self.config).await?;
            for rollup in &mut rollups {
                let rolled_m =
                    maintenance::maintain(rollup.rollup.table, &mut rollup.table, &self.config)
                        .await?;
                m.files_vacuumed += rolled_m.files_vacuumed;
                m.log_entries_removed += rolled_m.log_entries_removed;
            }
            if derived {
                let summaries = std::iter::once(TableId::Sessions)
                    .chain(Rollup::of_source(TableId::Sessions).map(|r| r.table));
                for summary in summaries {
                    let Some(mut t) = self.lake.open(summary).await? else {
                        continue;
                    };
                    let done = maintenance::maintain(summary, &mut t, &self.config).await?;
                    m.files_vacuumed += done.files_vacuumed;
                    m.log_entries_removed += done.log_entries_removed;
                }
            }
            self.metrics.files_vacuumed.inc_by(m.files_vacuumed as u64);
            report.maintenance = Some(m);
        }
        Ok(())
    }
}

// Retention (see `crate::retention`): at maintenance passes, before compaction.
impl Compactor {
    /// Drops the partitions past their retention of every table that has one, each
    /// under the lease of its event table (`dead_letters` under a lease of its own),
    /// then tidies `dead_letters` (its vacuum deletes the dropped files once they are
    /// past the vacuum retention; the event tables' vacuum comes later in the pass). A
    /// table that fails is logged and the others go on; the first error is returned.
    async fn expire(&self, report: &mut PassReport) -> Result<(), CompactorError> {
        let retention = &self.config.retention;
        if retention.is_off() {
            return Ok(());
        }
        let now = chrono::Utc::now().timestamp_micros();
        let mut first_error = None;
        for &id in TableId::EVENTS.iter().chain(&[TableId::DeadLetters]) {
            let trims_rollups =
                retention.rollups.is_some() && Rollup::of_source(id).next().is_some();
            if retention.keep(id).is_none() && !trims_rollups {
                continue;
            }
            if let Err(e) = self.expire_table(id, now, report).await {
                self.metrics.pass_errors.inc();
                tracing::warn!(table = id.name(), error = %e, "retention failed; retried at the next maintenance pass");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn expire_table(
        &self,
        id: TableId,
        now: i64,
        report: &mut PassReport,
    ) -> Result<(), CompactorError> {
        let Some(mut table) = self.lake.open(id).await? else {
            return Ok(());
        };
        let Some(mut lease) = self.lease(id, &table).await? else {
            self.metrics.lease_busy.inc();
            return Ok(());
        };
        let result = async {
            let dropped = crate::retention::expire(
                &self.factory,
                &self.config,
                id,
                &mut table,
                &mut lease,
                now,
            )
            .await?;
            if id == TableId::DeadLetters {
                let m = maintenance::maintain(id, &mut table, &self.config).await?;
                self.metrics.files_vacuumed.inc_by(m.files_vacuumed as u64);
            }
            Ok::<_, CompactorError>(dropped)
        }
        .await;
        self.leases.lock().await.insert(id, lease);
        for dropped in result? {
            tracing::info!(
                table = dropped.table.name(),
                partitions = dropped.partitions,
                files = dropped.files,
                rows = dropped.rows,
                offset_runs = dropped.offset_runs,
                version = dropped.version,
                "retention dropped partitions"
            );
            self.metrics.record_drop(&dropped);
            report.dropped.push(dropped);
        }
        Ok(())
    }
}
