use std::collections::HashMap;
use std::path::Path;

use deltalake::kernel::engine::arrow_conversion::TryFromArrow;
use deltalake::kernel::StructType;
use deltalake::protocol::SaveMode;
use deltalake::DeltaTable;
use url::Url;

use crate::{CatalogError, TableId};

/// Where the lake's tables live: a local folder or an object-store URL
/// (`s3://bucket/prefix` with storage options for S3-compatible servers; keys not given
/// there come from the `AWS_*` environment variables). On S3, commits are conditional
/// PUTs (`If-None-Match: *`): the server must make create-if-absent atomic.
#[derive(Debug, Clone)]
pub struct Lake {
    root: Url,
    storage_options: HashMap<String, String>,
}

impl Lake {
    /// A lake in a local folder, created if missing.
    pub fn local(path: impl AsRef<Path>) -> Result<Lake, CatalogError> {
        let path = path.as_ref();
        let invalid = |reason: String| CatalogError::InvalidLocation {
            location: path.display().to_string(),
            reason,
        };
        std::fs::create_dir_all(path).map_err(|e| invalid(e.to_string()))?;
        let canonical = std::fs::canonicalize(path).map_err(|e| invalid(e.to_string()))?;
        let root = Url::from_directory_path(&canonical)
            .map_err(|()| invalid("not an absolute path".to_string()))?;
        Ok(Lake {
            root,
            storage_options: HashMap::new(),
        })
    }

    /// A lake at a location given as a URL (`file://`, `s3://`, `memory://`) or a local path.
    pub fn from_location(
        location: &str,
        storage_options: HashMap<String, String>,
    ) -> Result<Lake, CatalogError> {
        match Url::parse(location) {
            Ok(url) if url.scheme().len() > 1 => {
                let mut root = url;
                if !root.path().ends_with('/') {
                    let path = format!("{}/", root.path());
                    root.set_path(&path);
                }
                Ok(Lake {
                    root,
                    storage_options,
                })
            }
            // No scheme (or a Windows drive letter): a local path.
            _ => Lake::local(location).map(|lake| Lake {
                storage_options,
                ..lake
            }),
        }
    }

    /// The root URL of the lake (always ends with `/`).
    pub fn root(&self) -> &Url {
        &self.root
    }

    /// Options passed to the object store (credentials, endpoint, ...).
    pub fn storage_options(&self) -> &HashMap<String, String> {
        &self.storage_options
    }

    /// The URL of one table's folder.
    pub fn table_url(&self, table: TableId) -> Result<Url, CatalogError> {
        self.root
            .join(&format!("{}/", table.name()))
            .map_err(|e| CatalogError::InvalidLocation {
                location: self.root.to_string(),
                reason: e.to_string(),
            })
    }

    /// Opens a table at its newest version, or `None` when it was never created.
    pub async fn open(&self, table: TableId) -> Result<Option<DeltaTable>, CatalogError> {
        let delta = self.delta_handle(table).await?;
        Ok(delta.version().is_some().then_some(delta))
    }

    /// Opens a table at its newest version, creating it (empty, with its schema and
    /// partitioning) if it does not exist yet. Safe when several processes race to create.
    pub async fn open_or_create(&self, table: TableId) -> Result<DeltaTable, CatalogError> {
        let delta = self.delta_handle(table).await?;
        if delta.version().is_some() {
            return Ok(delta);
        }
        let columns = StructType::try_from_arrow(table.schema().as_ref()).map_err(|source| {
            CatalogError::Schema {
                table: table.name(),
                source,
            }
        })?;
        let created = delta
            .create()
            .with_table_name(table.name())
            .with_columns(columns.fields().cloned())
            .with_partition_columns(table.partition_columns().iter().copied())
            .with_save_mode(SaveMode::Ignore)
            .await;
        match created {
            Ok(created) => Ok(created),
            // Another process created it between our look and our create: open theirs.
            Err(err) => {
                let reopened = self.delta_handle(table).await?;
                if reopened.version().is_some() {
                    tracing::debug!(%table, %err, "table was created concurrently");
                    Ok(reopened)
                } else {
                    Err(table.delta_error()(err).into())
                }
            }
        }
    }

    async fn delta_handle(&self, table: TableId) -> Result<DeltaTable, CatalogError> {
        let url = self.table_url(table)?;
        if url.scheme() == "file" {
            if let Ok(path) = url.to_file_path() {
                std::fs::create_dir_all(&path).map_err(|e| CatalogError::InvalidLocation {
                    location: url.to_string(),
                    reason: e.to_string(),
                })?;
            }
        }
        let mut handle = deltalake::DeltaTableBuilder::from_url(url)
            .and_then(|b| b.with_storage_options(self.storage_options.clone()).build())
            .map_err(table.delta_error())?;
        // Not a table yet: the unloaded handle creates it (loading it would fail, and
        // the kernel would log that failure as an error).
        let exists = handle
            .log_store()
            .is_delta_table_location()
            .await
            .map_err(table.delta_error())?;
        if exists {
            handle.load().await.map_err(table.delta_error())?;
        }
        Ok(handle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn creates_each_table_once_with_its_partitioning() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::local(dir.path()).unwrap();
        for t in TableId::ALL {
            assert!(lake.open(*t).await.unwrap().is_none());
            let created = lake.open_or_create(*t).await.unwrap();
            assert_eq!(created.version(), Some(0));
            let again = lake.open_or_create(*t).await.unwrap();
            assert_eq!(again.version(), Some(0), "second create must not commit");
            let meta = again.snapshot().unwrap().metadata().clone();
            let parts: Vec<&str> = meta
                .partition_columns()
                .iter()
                .map(String::as_str)
                .collect();
            assert_eq!(parts, t.partition_columns());
        }
    }
}
