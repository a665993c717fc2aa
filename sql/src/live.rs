//! The lake as queries see it: every table at its newest committed version, refreshed
//! at most `max_staleness` after a commit, and pinned for the duration of one query.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::datasource::TableProvider;
use datafusion::execution::SessionState;
use datafusion::prelude::SessionContext;
use deltalake::DeltaTable;
use hourlake_catalog::schema::{EVENT_DATE, EVENT_HOUR};
use hourlake_catalog::{Hour, Rollup, TableId};
use tokio::sync::{Mutex, OnceCell};

use crate::pruning::HiddenPartitioning;
use crate::snapshot_scan::SnapshotTable;
use crate::{ScanKind, SessionFactory, SqlError};

/// Every existing table at one version each: what one query reads.
#[derive(Debug, Clone)]
pub struct LakeSnapshot {
    tables: Arc<BTreeMap<TableId, DeltaTable>>,
    /// Per rollup table: the version its hours were read at, and those hours.
    rolled: Arc<BTreeMap<TableId, (u64, BTreeSet<Hour>)>>,
    /// Per rollup table whose source exists: the source's hours it does not cover.
    uncovered: Arc<BTreeMap<TableId, Vec<Hour>>>,
    /// Per table, when the factory reads with [`ScanKind::Snapshot`]: its provider at
    /// this version (which lists the files once, on its first scan).
    scans: Arc<BTreeMap<TableId, Arc<SnapshotTable>>>,
    /// The session over these versions (tables and views registered), built by the
    /// first [`LakeSnapshot::session`] and copied for each later one.
    session: Arc<OnceCell<SessionState>>,
}

impl LakeSnapshot {
    /// No tables yet.
    fn empty() -> LakeSnapshot {
        LakeSnapshot {
            tables: Arc::new(BTreeMap::new()),
            rolled: Arc::new(BTreeMap::new()),
            uncovered: Arc::new(BTreeMap::new()),
            scans: Arc::new(BTreeMap::new()),
            session: Arc::default(),
        }
    }

    /// The tables of `factory`'s lake at their newest versions, starting from `previous`
    /// (whose tables are updated incrementally and whose rollup coverage is reused while
    /// the rollup tables did not change). When no table moved, this is `previous` itself,
    /// its session included.
    pub async fn load(
        factory: &SessionFactory,
        previous: Option<&LakeSnapshot>,
    ) -> Result<LakeSnapshot, SqlError> {
        let mut tables = previous.map(|p| (*p.tables).clone()).unwrap_or_default();
        for &id in TableId::ALL {
            match tables.get_mut(&id) {
                Some(table) => table.update_state().await.map_err(id.delta_error())?,
                None => {
                    if let Some(table) = factory.lake().open(id).await? {
                        tables.insert(id, table);
                    }
                }
            }
        }
        if let Some(previous) = previous.filter(|p| same_versions(&p.tables, &tables)) {
            return Ok(previous.clone());
        }
        let mut rolled = BTreeMap::new();
        for rollup in Rollup::ALL {
            let id = rollup.table;
            let Some(table) = tables.get(&id) else {
                continue;
            };
            let version = table.version().unwrap_or(0);
            let reused = previous
                .and_then(|p| p.rolled.get(&id))
                .filter(|(v, _)| *v == version);
            let hours = match reused {
                Some((_, hours)) => hours.clone(),
                None => rollup_hours(factory, id, table).await?,
            };
            rolled.insert(id, (version, hours));
        }
        let mut uncovered = BTreeMap::new();
        for rollup in Rollup::ALL {
            let Some(source) = tables.get(&rollup.source) else {
                continue;
            };
            let covered = rolled.get(&rollup.table).map(|(_, h)| h);
            let snapshot = source.snapshot().map_err(rollup.source.delta_error())?;
            let mut hours = BTreeSet::new();
            for file in snapshot.log_data().iter() {
                if let Some(hour) = Hour::from_partition_values(&file.partition_values_map()) {
                    if covered.is_none_or(|c| !c.contains(&hour)) {
                        hours.insert(hour);
                    }
                }
            }
            uncovered.insert(rollup.table, hours.into_iter().collect());
        }
        let mut scans = BTreeMap::new();
        if factory.scan() == ScanKind::Snapshot {
            for (&id, table) in &tables {
                let reused = previous
                    .and_then(|p| p.scans.get(&id))
                    .filter(|scan| scan.version() == table.version());
                let scan = match reused {
                    Some(scan) => scan.clone(),
                    None => Arc::new(SnapshotTable::new(factory.lake(), id, table).await?),
                };
                scans.insert(id, scan);
            }
        }
        Ok(LakeSnapshot {
            tables: Arc::new(tables),
            rolled: Arc::new(rolled),
            uncovered: Arc::new(uncovered),
            scans: Arc::new(scans),
            session: Arc::default(),
        })
    }

    /// The hours of a rollup's source table that the rollup table does not cover
    /// (every hour when it does not exist yet): the views read them raw.
    pub fn uncovered(&self, rollup: TableId) -> &[Hour] {
        self.uncovered.get(&rollup).map_or(&[], Vec::as_slice)
    }

    /// The version of each existing table, by SQL name.
    pub fn versions(&self) -> BTreeMap<&'static str, u64> {
        self.tables
            .iter()
            .map(|(id, t)| (id.name(), t.version().unwrap_or(0)))
            .collect()
    }

    /// The version of one table, if it exists.
    pub fn version(&self, table: TableId) -> Option<u64> {
        self.tables.get(&table).and_then(DeltaTable::version)
    }

    /// A loaded table, if it exists.
    pub fn table(&self, table: TableId) -> Option<&DeltaTable> {
        self.tables.get(&table)
    }

    /// A session over exactly these versions, event tables with hidden partitioning
    /// (read as the factory that loaded the snapshot reads them: see [`ScanKind`]).
    ///
    /// The tables and views are registered once per snapshot, by the first call (pass
    /// the factory that loaded the snapshot); each call gets its own copy of that
    /// session, whose functions and settings it may change without touching the others.
    /// The catalog is shared: a caller must not register or drop tables in it.
    pub async fn session(&self, factory: &SessionFactory) -> Result<SessionContext, SqlError> {
        let state = self
            .session
            .get_or_try_init(|| async {
                Ok::<_, SqlError>(self.new_session(factory).await?.state())
            })
            .await?;
        Ok(SessionContext::new_with_state(state.clone()))
    }

    /// A new session over these versions, its tables and views registered.
    async fn new_session(&self, factory: &SessionFactory) -> Result<SessionContext, SqlError> {
        let ctx = factory.context()?;
        for (id, table) in self.tables.iter() {
            let provider: Arc<dyn TableProvider> = match self.scans.get(id) {
                Some(scan) => scan.clone(),
                None => {
                    table
                        .update_datafusion_session(&ctx.state())
                        .map_err(id.delta_error())?;
                    table.table_provider().await?
                }
            };
            if TableId::EVENTS.contains(id) {
                ctx.register_table(id.name(), Arc::new(HiddenPartitioning::new(provider)))?;
            } else {
                ctx.register_table(id.name(), provider)?;
            }
        }
        crate::views::register(&ctx, self).await?;
        Ok(ctx)
    }
}

/// Keeps a [`LakeSnapshot`] no older than `max_staleness`, refreshing lazily on demand
/// (one reader refreshes, the others wait for it; an unchanged table costs one listing).
#[derive(Debug)]
pub struct LiveLake {
    factory: SessionFactory,
    max_staleness: Duration,
    state: Mutex<(Option<Instant>, LakeSnapshot)>,
}

impl LiveLake {
    /// Tables of `factory`'s lake, at most `max_staleness` behind the newest commit.
    pub fn new(factory: SessionFactory, max_staleness: Duration) -> LiveLake {
        LiveLake {
            factory,
            max_staleness,
            state: Mutex::new((None, LakeSnapshot::empty())),
        }
    }

    /// The session factory (functions, memory limit) queries use.
    pub fn factory(&self) -> &SessionFactory {
        &self.factory
    }

    /// The current snapshot, refreshed first if it is older than the staleness bound.
    pub async fn snapshot(&self) -> Result<LakeSnapshot, SqlError> {
        let mut state = self.state.lock().await;
        if state.0.is_some_and(|at| at.elapsed() < self.max_staleness) {
            return Ok(state.1.clone());
        }
        let started = Instant::now();
        let snapshot = LakeSnapshot::load(&self.factory, Some(&state.1)).await?;
        *state = (Some(started), snapshot.clone());
        Ok(snapshot)
    }

    /// A session over the current snapshot, and the snapshot itself.
    pub async fn session(&self) -> Result<(SessionContext, LakeSnapshot), SqlError> {
        let snapshot = self.snapshot().await?;
        let ctx = snapshot.session(&self.factory).await?;
        Ok((ctx, snapshot))
    }
}

/// Whether `a` and `b` hold the same tables at the same versions.
fn same_versions(a: &BTreeMap<TableId, DeltaTable>, b: &BTreeMap<TableId, DeltaTable>) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((ia, ta), (ib, tb))| ia == ib && ta.version() == tb.version())
}

/// The hours a rollup table holds rows for.
pub async fn rollup_hours(
    factory: &SessionFactory,
    id: TableId,
    table: &DeltaTable,
) -> Result<BTreeSet<Hour>, SqlError> {
    use arrow::array::AsArray;
    use arrow::datatypes::{Date32Type, Int32Type};
    // Read on this process: deltalake's scan does not travel to workers.
    let ctx = factory.local_context()?;
    crate::register_table(&ctx, id.name(), table).await?;
    let batches = ctx
        .sql(&format!(
            "SELECT DISTINCT {EVENT_DATE}, {EVENT_HOUR} FROM {}",
            id.name()
        ))
        .await?
        .collect()
        .await?;
    let mut hours = BTreeSet::new();
    for b in batches {
        let (Some(dates), Some(hs)) = (
            b.column(0).as_primitive_opt::<Date32Type>(),
            b.column(1).as_primitive_opt::<Int32Type>(),
        ) else {
            continue;
        };
        for i in 0..b.num_rows() {
            hours.insert(Hour {
                date: dates.value(i),
                hour: hs.value(i),
            });
        }
    }
    Ok(hours)
}

#[cfg(test)]
mod tests {
    use deltalake::protocol::SaveMode;
    use hourlake_catalog::Lake;
    use hourlake_testkit::events::engagement_batch;

    use super::*;

    /// Commits engagement rows `from..to` (and their resent copies) to the lake.
    async fn append(lake: &Lake, from: u64, to: u64) {
        lake.open_or_create(TableId::EngagementEvents)
            .await
            .unwrap()
            .write(vec![engagement_batch(20_400, 1, from, to, 1_000)])
            .with_save_mode(SaveMode::Append)
            .await
            .unwrap();
    }

    /// A snapshot scan's provider (and the files it listed) is kept while its table's
    /// version stays, and replaced when a commit moves it.
    #[tokio::test(flavor = "multi_thread")]
    async fn snapshot_tables_are_reused_while_their_version_stays() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::local(dir.path()).unwrap();
        append(&lake, 0, 100).await;
        let id = TableId::EngagementEvents;
        let delta = SessionFactory::new(lake.clone()).with_scan(ScanKind::Delta);
        assert!(LakeSnapshot::load(&delta, None)
            .await
            .unwrap()
            .scans
            .is_empty());
        let factory = delta.with_scan(ScanKind::Snapshot);
        let first = LakeSnapshot::load(&factory, None).await.unwrap();
        let files = first.scans[&id].files().await.unwrap();
        let same = LakeSnapshot::load(&factory, Some(&first)).await.unwrap();
        assert!(Arc::ptr_eq(&first.scans[&id], &same.scans[&id]));
        assert!(Arc::ptr_eq(&files, &same.scans[&id].files().await.unwrap()));
        append(&lake, 100, 200).await;
        let moved = LakeSnapshot::load(&factory, Some(&same)).await.unwrap();
        assert_eq!(moved.scans[&id].version(), Some(2));
        let more = moved.scans[&id].files().await.unwrap();
        assert!(more.files().len() > files.files().len());
    }

    /// A snapshot no commit moved is the previous one: its session (tables and views)
    /// is built once and copied per query, and a copy's own functions stay its own. A
    /// commit makes a new snapshot whose session sees the new rows.
    #[tokio::test(flavor = "multi_thread")]
    async fn an_unmoved_snapshot_keeps_its_session_and_a_commit_replaces_it() {
        use datafusion::logical_expr::{create_udf, ColumnarValue, Volatility};

        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::local(dir.path()).unwrap();
        let count = |ctx: SessionContext| async move {
            let batches = ctx
                .sql("SELECT count(*) FROM engagement_events")
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
            use arrow::array::AsArray;
            batches[0]
                .column(0)
                .as_primitive::<arrow::datatypes::Int64Type>()
                .value(0)
        };
        append(&lake, 0, 100).await;
        let factory = SessionFactory::new(lake.clone());
        let first = LakeSnapshot::load(&factory, None).await.unwrap();
        let one = first.session(&factory).await.unwrap();
        let same = LakeSnapshot::load(&factory, Some(&first)).await.unwrap();
        assert!(Arc::ptr_eq(&first.session, &same.session));
        let two = same.session(&factory).await.unwrap();
        let view = |ctx: &SessionContext| {
            let ctx = ctx.clone();
            async move { ctx.table_provider("hourly_engagement").await.unwrap() }
        };
        assert!(Arc::ptr_eq(&view(&one).await, &view(&two).await));
        let nothing = create_udf(
            "only_here",
            vec![],
            arrow::datatypes::DataType::Int64,
            Volatility::Immutable,
            Arc::new(|_: &[ColumnarValue]| {
                Ok(ColumnarValue::Scalar(
                    datafusion::scalar::ScalarValue::Int64(Some(1)),
                ))
            }),
        );
        one.register_udf(nothing);
        assert!(one.sql("SELECT only_here()").await.is_ok());
        assert!(two.sql("SELECT only_here()").await.is_err());
        let before = count(two).await;
        assert_eq!(before, count(factory.session().await.unwrap()).await);

        append(&lake, 100, 250).await;
        let moved = LakeSnapshot::load(&factory, Some(&same)).await.unwrap();
        assert!(!Arc::ptr_eq(&same.session, &moved.session));
        let three = moved.session(&factory).await.unwrap();
        assert!(!Arc::ptr_eq(&view(&one).await, &view(&three).await));
        let after = count(three).await;
        assert!(after > before);
        assert_eq!(after, count(factory.session().await.unwrap()).await);
    }
}
