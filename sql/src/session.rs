//! One factory for every DataFusion session over the lake.

use std::sync::{Arc, OnceLock};

use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::physical_optimizer::optimizer::PhysicalOptimizer;
use datafusion::prelude::{SessionConfig, SessionContext};
use deltalake::DeltaTable;
use hourlake_catalog::Lake;

use crate::distributed::Distribution;
use crate::limit_barrier::KeepLimitAbove;
use crate::probe_slices::SliceJoinProbes;
use crate::SqlError;

/// How sessions read the lake's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScanKind {
    /// deltalake's table provider (kept to compare answers with).
    Delta,
    /// [`SnapshotTable`](crate::snapshot_scan::SnapshotTable): a Parquet scan over the
    /// pinned snapshot's files, whose plans serialize, so they can also run on workers.
    #[default]
    Snapshot,
}

/// Opens sessions that see every existing lake table at its newest version. Every
/// session of one factory (and of its clones) shares one runtime: one memory pool, one
/// spill directory.
#[derive(Debug, Clone)]
pub struct SessionFactory {
    lake: Lake,
    memory_limit: Option<usize>,
    scan: ScanKind,
    distribution: Option<Distribution>,
    runtime: Arc<OnceLock<Arc<RuntimeEnv>>>,
}

impl SessionFactory {
    /// A factory over `lake`, its queries' memory unbounded.
    pub fn new(lake: Lake) -> SessionFactory {
        SessionFactory {
            lake,
            memory_limit: None,
            scan: ScanKind::default(),
            distribution: None,
            runtime: Arc::new(OnceLock::new()),
        }
    }

    /// Caps the memory all queries of this factory's sessions hold together; sorts and
    /// aggregations spill to disk beyond it (or fail) instead of growing without bound.
    pub fn with_memory_limit(self, bytes: usize) -> SessionFactory {
        SessionFactory {
            memory_limit: Some(bytes),
            runtime: Arc::new(OnceLock::new()),
            ..self
        }
    }

    /// Reads the tables with `scan` (its runtime then knows the lake's object store).
    pub fn with_scan(self, scan: ScanKind) -> SessionFactory {
        SessionFactory {
            scan,
            runtime: Arc::new(OnceLock::new()),
            ..self
        }
    }

    /// Runs plans that only scan lake files on `distribution`'s workers while any of
    /// them is healthy (see [`distributed`](crate::distributed)).
    pub fn with_workers(self, distribution: Distribution) -> SessionFactory {
        SessionFactory {
            distribution: Some(distribution),
            ..self
        }
    }

    /// The workers this factory's sessions may run on.
    pub fn workers(&self) -> Option<&Distribution> {
        self.distribution.as_ref()
    }

    /// How this factory's sessions read the tables.
    pub fn scan(&self) -> ScanKind {
        self.scan
    }

    /// The runtime every session shares, created on first use.
    pub fn runtime(&self) -> Result<Arc<RuntimeEnv>, SqlError> {
        if let Some(runtime) = self.runtime.get() {
            return Ok(runtime.clone());
        }
        let mut builder = RuntimeEnvBuilder::new();
        if let Some(limit) = self.memory_limit {
            builder = builder.with_memory_pool(Arc::new(FairSpillPool::new(limit)));
        }
        let built = builder.build_arc()?;
        if self.scan == ScanKind::Snapshot {
            self.lake.register_object_store(&built)?;
        }
        // Two first callers may race: the one stored wins, and both use it.
        Ok(self.runtime.get_or_init(|| built).clone())
    }

    /// The lake this factory reads.
    pub fn lake(&self) -> &Lake {
        &self.lake
    }

    /// [`SessionFactory::context`] whose plans all run in this process, also when the
    /// factory has workers.
    pub fn local_context(&self) -> Result<SessionContext, SqlError> {
        SessionFactory {
            distribution: None,
            ..self.clone()
        }
        .context()
    }

    /// A session with hourlake's functions and settings but no tables registered.
    pub fn context(&self) -> Result<SessionContext, SqlError> {
        let config = SessionConfig::new().with_information_schema(true);
        // DataFusion's physical rules, with one first that keeps a LIMIT above scans
        // that cannot take one (see `limit_barrier`) and one last that keeps loop joins
        // interruptible (see `probe_slices`).
        let mut rules = PhysicalOptimizer::new().rules;
        rules.insert(0, Arc::new(KeepLimitAbove));
        rules.push(Arc::new(SliceJoinProbes));
        let mut builder = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(self.runtime()?)
            .with_default_features()
            .with_physical_optimizer_rules(rules);
        if let Some(distribution) = &self.distribution {
            builder = crate::distributed::install(builder, distribution)?;
        }
        let state = builder.build();
        let ctx = SessionContext::new_with_state(state);
        crate::functions::register_all(&ctx);
        Ok(ctx)
    }

    /// A new session with each existing table registered under its catalog name (at its
    /// newest version, event tables with hidden partitioning) and the dashboard views.
    /// Tables that were never created are left out.
    pub async fn session(&self) -> Result<SessionContext, SqlError> {
        crate::LakeSnapshot::load(self, None)
            .await?
            .session(self)
            .await
    }
}

/// Registers `table`, pinned at the version it is loaded at, as `name` in `ctx`
/// (and its object store, so files can also be read by URL).
pub async fn register_table(
    ctx: &SessionContext,
    name: &str,
    table: &DeltaTable,
) -> Result<(), SqlError> {
    table
        .update_datafusion_session(&ctx.state())
        .map_err(|e| hourlake_catalog::DeltaError::new(name, e))?;
    let provider = table.table_provider().await?;
    ctx.register_table(name, provider)?;
    Ok(())
}
