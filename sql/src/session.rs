//! One factory for every DataFusion session over the lake.

use std::sync::Arc;

use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use deltalake::DeltaTable;
use hourlake_catalog::Lake;

use crate::SqlError;

/// Opens sessions that see every existing lake table at its newest version.
#[derive(Debug, Clone)]
pub struct SessionFactory {
    lake: Lake,
    memory_limit: Option<usize>,
}

impl SessionFactory {
    /// A factory over `lake`.
    pub fn new(lake: Lake) -> SessionFactory {
        SessionFactory {
            lake,
            memory_limit: None,
        }
    }

    /// Caps the memory each session's queries may hold; sorts and aggregations spill
    /// to disk beyond it instead of growing without bound.
    pub fn with_memory_limit(mut self, bytes: usize) -> SessionFactory {
        self.memory_limit = Some(bytes);
        self
    }

    /// The lake this factory reads.
    pub fn lake(&self) -> &Lake {
        &self.lake
    }

    /// A session with hourlake's functions and settings but no tables registered.
    pub fn context(&self) -> Result<SessionContext, SqlError> {
        let config = SessionConfig::new().with_information_schema(true);
        let mut runtime = RuntimeEnvBuilder::new();
        if let Some(limit) = self.memory_limit {
            runtime = runtime.with_memory_pool(Arc::new(FairSpillPool::new(limit)));
        }
        let ctx = SessionContext::new_with_config_rt(config, runtime.build_arc()?);
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
    let delta = |e| SqlError::Delta {
        table: name.to_string(),
        source: Box::new(e),
    };
    table
        .update_datafusion_session(&ctx.state())
        .map_err(delta)?;
    let provider = table.table_provider().await?;
    ctx.register_table(name, provider)?;
    Ok(())
}
