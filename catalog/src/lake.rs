use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use deltalake::datafusion::execution::object_store::ObjectStoreUrl;
use deltalake::datafusion::execution::runtime_env::RuntimeEnv;
use deltalake::kernel::engine::arrow_conversion::TryFromArrow;
use deltalake::kernel::StructType;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, ObjectStore};
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

    /// The URL of the store the lake lives in, as DataFusion scans address files: the
    /// bucket (`s3://bucket/`) or the local file system (`file:///`). Files are then named
    /// by their full path inside it (see [`Lake::table_path`]), so any process that opens
    /// the same lake location resolves the same names with its own credentials.
    pub fn object_store_url(&self) -> Result<ObjectStoreUrl, CatalogError> {
        let invalid = |reason: String| CatalogError::InvalidLocation {
            location: self.root.to_string(),
            reason,
        };
        if self.root.scheme() == "memory" {
            // A new in-memory store would be empty: it cannot be shared with Delta's.
            return Err(invalid(
                "an in-memory lake has no object store to share".to_string(),
            ));
        }
        let mut store_root = self.root.clone();
        store_root.set_path("/");
        store_root.set_query(None);
        store_root.set_fragment(None);
        ObjectStoreUrl::parse(store_root.as_str()).map_err(|e| invalid(e.to_string()))
    }

    /// The lake's object store (built with its storage options, through deltalake's
    /// factories) and the URL it answers for ([`Lake::object_store_url`]).
    pub fn object_store(&self) -> Result<(ObjectStoreUrl, Arc<dyn ObjectStore>), CatalogError> {
        let url = self.object_store_url()?;
        let store = deltalake::logstore::store_for(url.as_ref(), self.storage_options.iter())
            .map_err(|source| CatalogError::ObjectStore {
                location: self.root.to_string(),
                source: Box::new(source),
            })?;
        Ok((url, store))
    }

    /// Registers the lake's object store in `runtime` under [`Lake::object_store_url`]
    /// (replacing what was there), and returns that URL.
    pub fn register_object_store(
        &self,
        runtime: &RuntimeEnv,
    ) -> Result<ObjectStoreUrl, CatalogError> {
        let (url, store) = self.object_store()?;
        runtime.register_object_store(url.as_ref(), store);
        Ok(url)
    }

    /// The path of one table's folder inside the lake's object store.
    pub fn table_path(&self, table: TableId) -> Result<deltalake::Path, CatalogError> {
        let url = self.table_url(table)?;
        deltalake::Path::from_url_path(url.path()).map_err(|e| CatalogError::InvalidLocation {
            location: url.to_string(),
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
    use deltalake::logstore::object_store::ObjectStoreExt;

    use super::*;

    #[tokio::test]
    async fn local_object_store_reads_table_files_by_their_full_path() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::local(dir.path().join("my lake")).unwrap();
        let (url, store) = lake.object_store().unwrap();
        assert_eq!(url.as_str(), "file:///");
        let table = lake.table_path(TableId::DeadLetters).unwrap();
        let canonical = std::fs::canonicalize(dir.path()).unwrap();
        let expected = canonical.join("my lake").join("dead_letters");
        assert_eq!(format!("/{table}"), expected.display().to_string());
        let file = table.join("ingest_date=2026-11-30").join("part-0.parquet");
        store.put(&file, b"bytes".to_vec().into()).await.unwrap();
        let on_disk = expected
            .join("ingest_date=2026-11-30")
            .join("part-0.parquet");
        assert_eq!(std::fs::read(on_disk).unwrap(), b"bytes");
        // Registered, a runtime resolves the same URL to a store that sees the file.
        let runtime = RuntimeEnv::default();
        assert_eq!(lake.register_object_store(&runtime).unwrap(), url);
        let resolved = runtime.object_store(&url).unwrap();
        assert_eq!(resolved.head(&file).await.unwrap().size, 5);
    }

    #[test]
    fn s3_object_store_is_the_bucket_and_builds_without_network() {
        let options = HashMap::from([
            ("aws_endpoint".to_string(), "http://127.0.0.1:9".to_string()),
            ("aws_region".to_string(), "us-east-1".to_string()),
            ("aws_access_key_id".to_string(), "key".to_string()),
            ("aws_secret_access_key".to_string(), "secret".to_string()),
            ("aws_allow_http".to_string(), "true".to_string()),
        ]);
        let lake = Lake::from_location("s3://hourlake/some/prefix", options).unwrap();
        let runtime = RuntimeEnv::default();
        let url = lake.register_object_store(&runtime).unwrap();
        assert_eq!(url.as_str(), "s3://hourlake/");
        assert!(runtime.object_store(&url).is_ok());
        let table = lake.table_path(TableId::EngagementEvents).unwrap();
        assert_eq!(table.as_ref(), "some/prefix/engagement_events");
        // A store that cannot be shared is refused, not silently replaced by an empty one.
        let memory = Lake::from_location("memory:///lake", HashMap::new()).unwrap();
        assert!(matches!(
            memory.object_store(),
            Err(CatalogError::InvalidLocation { .. })
        ));
    }

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
