//! One factory for every DataFusion session over the lake.

use hourlake_catalog::{Lake, TableId};

use crate::SqlError;

/// Opens sessions that see every existing lake table at its newest version.
#[derive(Debug, Clone)]
pub struct SessionFactory {
    lake: Lake,
}

impl SessionFactory {
    /// A factory over `lake`.
    pub fn new(lake: Lake) -> SessionFactory {
        SessionFactory { lake }
    }

    /// The lake this factory reads.
    pub fn lake(&self) -> &Lake {
        &self.lake
    }

    /// A new session with each existing table registered under its catalog name.
    /// Tables that were never created are left out.
    pub async fn session(&self) -> Result<datafusion::prelude::SessionContext, SqlError> {
        let config = datafusion::prelude::SessionConfig::new().with_information_schema(true);
        let ctx = datafusion::prelude::SessionContext::new_with_config(config);
        crate::functions::register_all(&ctx);
        for &id in TableId::INGESTED {
            let Some(table) = self.lake.open(id).await? else {
                continue;
            };
            let delta = |e| SqlError::Delta {
                table: id.name(),
                source: Box::new(e),
            };
            table
                .update_datafusion_session(&ctx.state())
                .map_err(delta)?;
            let provider = table.table_provider().await?;
            ctx.register_table(id.name(), provider)?;
        }
        Ok(ctx)
    }
}
