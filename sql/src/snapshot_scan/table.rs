//! [`SnapshotTable`]: one table at one pinned version as a DataFusion provider whose
//! scan is a plain Parquet `DataSourceExec` over the snapshot's files.

use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::{project_schema, Statistics};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::ExecutionPlan;
use deltalake::DeltaTable;
use hourlake_catalog::{Lake, TableId};
use tokio::sync::OnceCell;

use super::{prune, FileIndex};
use crate::SqlError;

/// A lake table pinned at one version. Its schema is the one deltalake's provider gives
/// the same version (so answers keep their types); its files are listed from the log on
/// the first scan and kept for every later scan of this version.
#[derive(Debug)]
pub struct SnapshotTable {
    id: TableId,
    lake: Lake,
    table: DeltaTable,
    schema: SchemaRef,
    partition_columns: Vec<String>,
    index: OnceCell<Arc<FileIndex>>,
}

impl SnapshotTable {
    /// `table`, the lake's table `id` at the version it is loaded at.
    pub async fn new(
        lake: &Lake,
        id: TableId,
        table: &DeltaTable,
    ) -> Result<SnapshotTable, SqlError> {
        let schema = table.table_provider().await?.schema();
        let partition_columns = table
            .snapshot()
            .map_err(id.delta_error())?
            .metadata()
            .partition_columns()
            .to_vec();
        Ok(SnapshotTable {
            id,
            lake: lake.clone(),
            table: table.clone(),
            schema,
            partition_columns,
            index: OnceCell::new(),
        })
    }

    /// The pinned version.
    pub fn version(&self) -> Option<u64> {
        self.table.version()
    }

    /// The snapshot's files, listed from the log on first use; refused (see
    /// [`SqlError::UnsupportedTable`]) when the scan cannot read them as they are.
    pub async fn files(&self) -> Result<Arc<FileIndex>, SqlError> {
        self.index
            .get_or_try_init(|| async {
                FileIndex::from_snapshot(&self.lake, self.id, &self.table, &self.schema)
                    .map(Arc::new)
            })
            .await
            .cloned()
    }

    fn partition_columns(&self) -> Vec<&str> {
        self.partition_columns.iter().map(String::as_str).collect()
    }
}

/// `files` in at most `n` groups of about equal bytes (largest first, each to the group
/// with the fewest bytes so far), each group read by one partition of the scan.
fn file_groups(mut files: Vec<PartitionedFile>, n: usize) -> Vec<FileGroup> {
    let n = n.clamp(1, files.len().max(1));
    files.sort_by(|a, b| {
        b.object_meta
            .size
            .cmp(&a.object_meta.size)
            .then_with(|| a.object_meta.location.cmp(&b.object_meta.location))
    });
    let mut groups: Vec<(u64, Vec<PartitionedFile>)> = (0..n).map(|_| (0, Vec::new())).collect();
    for file in files {
        if let Some((bytes, group)) = groups.iter_mut().min_by_key(|(bytes, _)| *bytes) {
            *bytes += file.object_meta.size;
            group.push(file);
        }
    }
    groups
        .into_iter()
        .filter(|(_, group)| !group.is_empty())
        .map(|(_, group)| FileGroup::new(group))
        .collect()
}

/// Statistics of a set of files: their files' merged, or unknown if one has none.
fn merged(files: &[PartitionedFile], schema: &Schema) -> Result<Statistics> {
    let each: Option<Vec<&Statistics>> = files.iter().map(|f| f.statistics.as_deref()).collect();
    match each {
        Some(each) => Statistics::try_merge_iter(each, schema),
        None => Ok(Statistics::new_unknown(schema)),
    }
}

/// `groups` with their statistics, and the statistics of all of them.
fn with_statistics(
    groups: Vec<FileGroup>,
    schema: &Schema,
) -> Result<(Vec<FileGroup>, Statistics)> {
    let mut all = Vec::with_capacity(groups.len());
    let mut with = Vec::with_capacity(groups.len());
    for group in groups {
        let statistics = merged(group.files(), schema)?;
        all.push(statistics.clone());
        with.push(group.with_statistics(Arc::new(statistics)));
    }
    Ok((with, Statistics::try_merge_iter(&all, schema)?))
}

#[async_trait]
impl TableProvider for SnapshotTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Partition filters prune files exactly; the others are checked above the scan
        // (and reach the Parquet reader through DataFusion's filter pushdown, to skip
        // row groups and pages).
        let partition_columns = self.partition_columns();
        Ok(filters
            .iter()
            .map(|f| {
                if prune::is_partition_filter(f, &partition_columns) {
                    TableProviderFilterPushDown::Exact
                } else {
                    TableProviderFilterPushDown::Inexact
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let index = self
            .files()
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let partition_columns = self.partition_columns();
        let partition_filters: Vec<Expr> = filters
            .iter()
            .filter(|f| prune::is_partition_filter(f, &partition_columns))
            .cloned()
            .collect();
        let files = prune::prune(&index, state, &partition_filters)?;
        let file_schema = index.table_schema().file_schema().clone();
        let files = prune::prune_by_bounds(files, &file_schema, state, filters)?;
        if files.is_empty() {
            let schema = project_schema(&self.schema, projection)?;
            return Ok(Arc::new(EmptyExec::new(schema)));
        }
        let groups = file_groups(files, state.config().target_partitions());
        let (groups, statistics) = with_statistics(groups, &self.schema)?;

        // The Parquet options of the session, and its footer cache, as a listing table has.
        let options = state.default_table_options().parquet;
        let metadata_size_hint = options.global.metadata_size_hint;
        let store = state.runtime_env().object_store(index.store_url())?;
        let cache = state.runtime_env().cache_manager.get_file_metadata_cache();
        let mut source = ParquetSource::new(index.table_schema().clone())
            .with_table_parquet_options(options)
            .with_parquet_file_reader_factory(Arc::new(CachedParquetFileReaderFactory::new(
                store, cache,
            )));
        if let Some(hint) = metadata_size_hint {
            source = source.with_metadata_size_hint(hint);
        }
        let config = FileScanConfigBuilder::new(index.store_url().clone(), Arc::new(source))
            .with_file_groups(groups)
            .with_statistics(statistics)
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }
}
