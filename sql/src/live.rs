//! The lake as queries see it: every table at its newest committed version, refreshed
//! at most `max_staleness` after a commit, and pinned for the duration of one query.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::prelude::SessionContext;
use deltalake::DeltaTable;
use hourlake_catalog::TableId;
use tokio::sync::Mutex;

use crate::pruning::HiddenPartitioning;
use crate::{SessionFactory, SqlError};

/// Every existing table at one version each: what one query reads.
#[derive(Debug, Clone)]
pub struct LakeSnapshot {
    tables: Arc<BTreeMap<TableId, DeltaTable>>,
}

impl LakeSnapshot {
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

    /// A session over exactly these versions, event tables with hidden partitioning.
    pub async fn session(&self, factory: &SessionFactory) -> Result<SessionContext, SqlError> {
        let ctx = factory.context()?;
        for (id, table) in self.tables.iter() {
            let delta = |e| SqlError::Delta {
                table: id.name().to_string(),
                source: Box::new(e),
            };
            table
                .update_datafusion_session(&ctx.state())
                .map_err(delta)?;
            let provider = table.table_provider().await?;
            if TableId::EVENTS.contains(id) {
                ctx.register_table(id.name(), Arc::new(HiddenPartitioning::new(provider)))?;
            } else {
                ctx.register_table(id.name(), provider)?;
            }
        }
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
            state: Mutex::new((
                None,
                LakeSnapshot {
                    tables: Arc::new(BTreeMap::new()),
                },
            )),
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
        let mut tables = (*state.1.tables).clone();
        for &id in TableId::ALL {
            match tables.get_mut(&id) {
                Some(table) => table.update_state().await.map_err(|e| SqlError::Delta {
                    table: id.name().to_string(),
                    source: Box::new(e),
                })?,
                None => {
                    if let Some(table) = self.factory.lake().open(id).await? {
                        tables.insert(id, table);
                    }
                }
            }
        }
        let snapshot = LakeSnapshot {
            tables: Arc::new(tables),
        };
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
