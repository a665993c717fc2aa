//! Issue 16: run Apache DataFusion Ballista 55 on a real hourlake lake and compare it with
//! plain DataFusion — same snapshot, same queries, same answers?, how long?
//!
//! Subcommands (see README.md):
//! - `bench --lake DIR [--runs 5] [--partitions N] [--remote df://HOST:PORT] [--no-standalone]`
//! - `scheduler --port 50050 [--no-udf]` — a Ballista scheduler process (the library's
//!   `start_server`, as the stock `ballista-scheduler` binary runs it) whose session knows
//!   the trial's `my_count` UDAF unless `--no-udf`.
//! - `executor --port P --grpc-port G --scheduler-port 50050 --vcores 1 --work-dir DIR [--no-udf]`
//!   — a Ballista executor process (`start_executor_process`, as `ballista-executor` runs it).
//! - `files --lake DIR` — the live file list of every table, from the Delta log.
//!
//! Every table is scanned at its current snapshot: the Delta log is replayed (checkpoint named
//! by `_last_checkpoint`, then later JSON commits) and the scan reads exactly the live `add`
//! files, with their partition values — the data folders are never listed (they still hold
//! files compaction removed and vacuum has not deleted).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use async_trait::async_trait;
use ballista_core::extension::SessionConfigExt;
use ballista_core::registry::BallistaFunctionRegistry;
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use datafusion::catalog::Session;
use datafusion::common::{project_schema, ScalarValue};
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl, PartitionedFile,
};
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::{FunctionRegistry, SessionStateBuilder};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Expr, Signature, Volatility,
};
use datafusion::object_store::path::Path as StorePath;
use datafusion::object_store::ObjectMeta;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::TryStreamExt;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

// ------------------------------------------------------------------------------------------
// Delta log replay
// ------------------------------------------------------------------------------------------

/// One live data file of a table's current snapshot.
#[derive(Debug, Clone)]
struct LiveFile {
    /// Path relative to the table root, percent-decoded into object-store parts.
    relative: String,
    size: u64,
    partition_values: HashMap<String, Option<String>>,
    num_records: Option<u64>,
}

/// A table's current snapshot as the Delta log describes it.
#[derive(Debug)]
struct Snapshot {
    name: String,
    root: PathBuf,
    version: u64,
    /// Delta schema (JSON) of the table, from the latest `metaData` action.
    schema_string: String,
    partition_columns: Vec<String>,
    files: BTreeMap<String, LiveFile>,
    checkpoint: Option<u64>,
    /// `root` as an object-store path of the local file system.
    store_root: StorePath,
}

fn commit_version(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".json")?;
    if stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()) {
        stem.parse().ok()
    } else {
        None
    }
}

impl Snapshot {
    /// Replays `root/_delta_log`: the checkpoint named by `_last_checkpoint` (if any), then
    /// every later JSON commit in order.
    fn load(name: &str, root: &FsPath) -> Result<Snapshot> {
        let log = root.join("_delta_log");
        let mut snap = Snapshot {
            name: name.to_string(),
            root: root.to_path_buf(),
            version: 0,
            schema_string: String::new(),
            partition_columns: vec![],
            files: BTreeMap::new(),
            checkpoint: None,
            store_root: StorePath::from_filesystem_path(root)?,
        };
        let mut start = 0u64;
        let last = log.join("_last_checkpoint");
        if last.exists() {
            let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&last)?)?;
            let version = v["version"]
                .as_u64()
                .ok_or_else(|| anyhow!("_last_checkpoint without version"))?;
            let parts = v["parts"].as_u64();
            let files: Vec<PathBuf> = match parts {
                None | Some(1) => vec![log.join(format!("{version:020}.checkpoint.parquet"))],
                Some(n) => (1..=n)
                    .map(|i| log.join(format!("{version:020}.checkpoint.{i:010}.{n:010}.parquet")))
                    .collect(),
            };
            for f in files {
                snap.read_checkpoint(&f)
                    .with_context(|| format!("checkpoint {}", f.display()))?;
            }
            snap.version = version;
            snap.checkpoint = Some(version);
            start = version + 1;
        }
        // The log folder is listed (not the data folders): commit files are named by version.
        let mut commits: Vec<(u64, PathBuf)> = std::fs::read_dir(&log)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                commit_version(&name).map(|v| (v, e.path()))
            })
            .filter(|(v, _)| *v >= start)
            .collect();
        commits.sort();
        let mut expected = start;
        for (v, path) in commits {
            if v != expected {
                bail!("{name}: commit {expected} missing (found {v})");
            }
            snap.apply_commit(&path)
                .with_context(|| format!("commit {}", path.display()))?;
            snap.version = v;
            expected += 1;
        }
        if snap.schema_string.is_empty() {
            bail!("{name}: no metaData action in the log");
        }
        Ok(snap)
    }

    fn add(&mut self, path: &str, size: u64, pv: HashMap<String, Option<String>>, n: Option<u64>) {
        self.files.insert(
            path.to_string(),
            LiveFile {
                relative: path.to_string(),
                size,
                partition_values: pv,
                num_records: n,
            },
        );
    }

    fn apply_commit(&mut self, path: &FsPath) -> Result<()> {
        let reader = BufReader::new(File::open(path)?);
        for line in reader.lines() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let action: serde_json::Value = serde_json::from_str(&line)?;
            if let Some(add) = action.get("add") {
                let p = add["path"]
                    .as_str()
                    .ok_or_else(|| anyhow!("add without path"))?;
                let size = add["size"]
                    .as_u64()
                    .ok_or_else(|| anyhow!("add without size"))?;
                let pv = add["partitionValues"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().map(str::to_string)))
                            .collect()
                    })
                    .unwrap_or_default();
                let n = add["stats"]
                    .as_str()
                    .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
                    .and_then(|s| s["numRecords"].as_u64());
                self.add(p, size, pv, n);
            } else if let Some(remove) = action.get("remove") {
                let p = remove["path"]
                    .as_str()
                    .ok_or_else(|| anyhow!("remove without path"))?;
                self.files.remove(p);
            } else if let Some(meta) = action.get("metaData") {
                self.set_meta(
                    meta["schemaString"].as_str().unwrap_or_default(),
                    meta["partitionColumns"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|c| c.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default(),
                );
            }
        }
        Ok(())
    }

    fn set_meta(&mut self, schema_string: &str, partition_columns: Vec<String>) {
        self.schema_string = schema_string.to_string();
        self.partition_columns = partition_columns;
    }

    /// A checkpoint's `add` rows (its `remove` rows are tombstones, not live files) and its
    /// `metaData` row.
    fn read_checkpoint(&mut self, path: &FsPath) -> Result<()> {
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path)?)?.build()?;
        for batch in reader {
            let batch = batch?;
            if let Some(meta) = batch.column_by_name("metaData") {
                let meta = meta.as_struct();
                let schema = utf8(meta.column_by_name("schemaString"))?;
                let parts = meta
                    .column_by_name("partitionColumns")
                    .ok_or_else(|| anyhow!("metaData.partitionColumns"))?
                    .as_list::<i32>();
                for row in 0..meta.len() {
                    if meta.is_valid(row) {
                        let cols = parts.value(row);
                        let cols = utf8(Some(&cols))?;
                        let cols = (0..cols.len()).map(|i| cols.value(i).to_string()).collect();
                        self.set_meta(schema.value(row), cols);
                    }
                }
            }
            let Some(add) = batch.column_by_name("add") else {
                continue;
            };
            let add = add.as_struct();
            let paths = utf8(add.column_by_name("path"))?;
            let sizes = add
                .column_by_name("size")
                .ok_or_else(|| anyhow!("add.size"))?
                .as_any()
                .downcast_ref::<Int64Array>()
                .ok_or_else(|| anyhow!("add.size not Int64"))?
                .clone();
            let pvs = add
                .column_by_name("partitionValues")
                .ok_or_else(|| anyhow!("add.partitionValues"))?
                .as_map()
                .clone();
            let stats = add
                .column_by_name("stats")
                .map(|c| utf8(Some(c)))
                .transpose()?;
            for row in 0..add.len() {
                if !add.is_valid(row) {
                    continue;
                }
                let entries = pvs.value(row);
                let keys = utf8(Some(entries.column(0)))?;
                let values = utf8(Some(entries.column(1)))?;
                let pv = (0..keys.len())
                    .map(|i| {
                        let v = values.is_valid(i).then(|| values.value(i).to_string());
                        (keys.value(i).to_string(), v)
                    })
                    .collect();
                let n = stats
                    .as_ref()
                    .filter(|s| s.is_valid(row))
                    .and_then(|s| serde_json::from_str::<serde_json::Value>(s.value(row)).ok())
                    .and_then(|s| s["numRecords"].as_u64());
                self.add(paths.value(row), sizes.value(row) as u64, pv, n);
            }
        }
        Ok(())
    }

    /// Arrow type of each partition column, from the Delta schema.
    fn partition_fields(&self) -> Result<Vec<FieldRef>> {
        let schema: serde_json::Value = serde_json::from_str(&self.schema_string)?;
        let fields = schema["fields"]
            .as_array()
            .ok_or_else(|| anyhow!("schema without fields"))?;
        self.partition_columns
            .iter()
            .map(|c| {
                let f = fields
                    .iter()
                    .find(|f| f["name"].as_str() == Some(c))
                    .ok_or_else(|| anyhow!("partition column {c} not in schema"))?;
                let dt = match f["type"].as_str() {
                    Some("date") => DataType::Date32,
                    Some("integer") => DataType::Int32,
                    Some("long") => DataType::Int64,
                    Some("string") => DataType::Utf8,
                    other => bail!("partition column {c}: type {other:?} not handled"),
                };
                Ok(Arc::new(Field::new(c, dt, true)))
            })
            .collect()
    }

    fn object_path(&self, relative: &str) -> Result<StorePath> {
        let rel = StorePath::from_url_path(relative)?;
        Ok(rel
            .parts()
            .fold(self.store_root.clone(), |p, part| p.join(part)))
    }

    fn records(&self) -> Option<u64> {
        self.files.values().map(|f| f.num_records).sum()
    }
}

fn utf8(col: Option<&ArrayRef>) -> Result<arrow::array::StringArray> {
    let col = col.ok_or_else(|| anyhow!("missing string column"))?;
    let cast = arrow::compute::cast(col, &DataType::Utf8)?;
    Ok(cast.as_string::<i32>().clone())
}

// ------------------------------------------------------------------------------------------
// The scan: a Parquet DataSourceExec over the snapshot's files (as hourlake's snapshot scan)
// ------------------------------------------------------------------------------------------

#[derive(Debug)]
struct SnapshotTable {
    schema: SchemaRef,
    table_schema: TableSchema,
    files: Vec<PartitionedFile>,
}

impl SnapshotTable {
    fn new(snap: &Snapshot) -> Result<SnapshotTable> {
        let first = snap
            .files
            .values()
            .next()
            .ok_or_else(|| anyhow!("{}: no live files", snap.name))?;
        // The file schema from one live file's footer (hourlake's tables keep one schema).
        let file = snap.root.join(
            StorePath::from_url_path(&first.relative)?
                .parts()
                .map(|p| p.as_ref().to_string())
                .collect::<PathBuf>(),
        );
        let file_schema = ParquetRecordBatchReaderBuilder::try_new(File::open(&file)?)?
            .schema()
            .clone();
        // Drop partition columns if a writer stored them in the files too.
        let pcols = snap.partition_fields()?;
        let file_schema = Arc::new(Schema::new(
            file_schema
                .fields()
                .iter()
                .filter(|f| !snap.partition_columns.contains(f.name()))
                .cloned()
                .collect::<Vec<_>>(),
        ));
        let table_schema = TableSchema::builder(file_schema)
            .with_table_partition_cols(pcols.clone())
            .build();
        let mut files = Vec::with_capacity(snap.files.len());
        for f in snap.files.values() {
            let values = pcols
                .iter()
                .map(
                    |field| match f.partition_values.get(field.name()).cloned().flatten() {
                        Some(raw) => ScalarValue::try_from_string(raw, field.data_type()),
                        None => ScalarValue::try_from(field.data_type()),
                    },
                )
                .collect::<datafusion::error::Result<Vec<_>>>()?;
            let meta = ObjectMeta {
                location: snap.object_path(&f.relative)?,
                last_modified: Default::default(),
                size: f.size,
                e_tag: None,
                version: None,
            };
            files.push(PartitionedFile::new_from_meta(meta).with_partition_values(values));
        }
        Ok(SnapshotTable {
            schema: table_schema.table_schema().clone(),
            table_schema,
            files,
        })
    }
}

/// `files` in at most `n` groups of about equal bytes.
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
        if let Some((bytes, group)) = groups.iter_mut().min_by_key(|(b, _)| *b) {
            *bytes += file.object_meta.size;
            group.push(file);
        }
    }
    groups
        .into_iter()
        .filter(|(_, g)| !g.is_empty())
        .map(|(_, g)| FileGroup::new(g))
        .collect()
}

#[async_trait]
impl TableProvider for SnapshotTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        if self.files.is_empty() {
            return Ok(Arc::new(EmptyExec::new(project_schema(
                &self.schema,
                projection,
            )?)));
        }
        let groups = file_groups(self.files.clone(), state.config().target_partitions());
        let source = ParquetSource::new(self.table_schema.clone())
            .with_table_parquet_options(state.default_table_options().parquet);
        let config =
            FileScanConfigBuilder::new(ObjectStoreUrl::local_filesystem(), Arc::new(source))
                .with_file_groups(groups)
                .with_projection_indices(projection.cloned())?
                .with_limit(limit)
                .build();
        Ok(DataSourceExec::from_data_source(config))
    }
}

// ------------------------------------------------------------------------------------------
// A trivial UDAF, standing in for hourlake's hll_* / kll functions
// ------------------------------------------------------------------------------------------

#[derive(Debug, PartialEq, Eq, Hash)]
struct MyCount {
    signature: Signature,
}

impl MyCount {
    fn udaf() -> AggregateUDF {
        AggregateUDF::from(MyCount {
            signature: Signature::any(1, Volatility::Immutable),
        })
    }
}

impl AggregateUDFImpl for MyCount {
    fn name(&self) -> &str {
        "my_count"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(DataType::Int64)
    }

    fn accumulator(
        &self,
        _args: AccumulatorArgs,
    ) -> datafusion::error::Result<Box<dyn Accumulator>> {
        Ok(Box::new(MyCountAcc(0)))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> datafusion::error::Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format!("{}[count]", args.name),
            DataType::Int64,
            true,
        ))])
    }
}

#[derive(Debug)]
struct MyCountAcc(i64);

impl Accumulator for MyCountAcc {
    fn update_batch(&mut self, values: &[ArrayRef]) -> datafusion::error::Result<()> {
        let v = &values[0];
        self.0 += (v.len() - v.null_count()) as i64;
        Ok(())
    }

    fn evaluate(&mut self) -> datafusion::error::Result<ScalarValue> {
        Ok(ScalarValue::Int64(Some(self.0)))
    }

    fn size(&self) -> usize {
        std::mem::size_of::<Self>()
    }

    fn state(&mut self) -> datafusion::error::Result<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::Int64(Some(self.0))])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> datafusion::error::Result<()> {
        let s = states[0]
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or_else(|| datafusion::error::DataFusionError::Internal("state".into()))?;
        self.0 += s.iter().flatten().sum::<i64>();
        Ok(())
    }
}

// ------------------------------------------------------------------------------------------
// Queries, engines, answers
// ------------------------------------------------------------------------------------------

const QUERIES: &[(&str, &str)] = &[
    (
        "q1 events per hour by event_type (7 days)",
        "SELECT event_date, event_hour, event_type, count(*) AS events \
         FROM engagement_events GROUP BY event_date, event_hour, event_type",
    ),
    (
        "q2 active users per day (count distinct)",
        "SELECT event_date, count(DISTINCT user_id) AS active_users \
         FROM engagement_events GROUP BY event_date",
    ),
    (
        "q3 top users (group by user_id, count+sum, top 10)",
        "SELECT user_id, count(*) AS events, sum(session_length_ms) AS session_ms \
         FROM engagement_events GROUP BY user_id ORDER BY events DESC, user_id LIMIT 10",
    ),
    (
        "q4 group by user_id, all groups returned",
        "SELECT user_id, count(*) AS events, sum(session_length_ms) AS session_ms \
         FROM engagement_events GROUP BY user_id",
    ),
    (
        "q5 join engagement x recommendation on user_id",
        "SELECT e.event_type, count(*) AS n, sum(r.served) AS served \
         FROM engagement_events e \
         JOIN (SELECT user_id, count(*) AS served FROM recommendation_events GROUP BY user_id) r \
         ON e.user_id = r.user_id GROUP BY e.event_type",
    ),
    (
        "q6 full-scan aggregate by event_type",
        "SELECT event_type, count(*) AS events, count(DISTINCT user_id) AS users, \
         sum(session_length_ms) AS session_ms, min(event_time) AS first, max(event_time) AS last \
         FROM engagement_events GROUP BY event_type",
    ),
];

const UDAF_QUERY: &str = "SELECT event_type, my_count(user_id) AS n, count(user_id) AS expected \
                          FROM engagement_events GROUP BY event_type";

/// Rows as sorted text lines (order-insensitive comparison).
fn rows_text(batches: &[RecordBatch]) -> Result<Vec<String>> {
    let opts = FormatOptions::default().with_null("NULL");
    let mut lines = vec![];
    for b in batches {
        let fmts = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        for row in 0..b.num_rows() {
            lines.push(
                fmts.iter()
                    .map(|f| f.value(row).to_string())
                    .collect::<Vec<_>>()
                    .join("|"),
            );
        }
    }
    lines.sort();
    Ok(lines)
}

fn digest(lines: &[String]) -> u64 {
    // FNV-1a, to print a short fingerprint of an answer.
    let mut h: u64 = 0xcbf29ce484222325;
    for l in lines {
        for b in l.bytes().chain(std::iter::once(b'\n')) {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    h
}

enum Engine {
    /// Plain DataFusion in this process.
    Local(SessionContext),
    /// Plan here with DataFusion (Ballista's session defaults), submit the physical plan to a
    /// Ballista scheduler (`execute_physical_plan`): the way hourlake would use Ballista,
    /// since its scan is a custom provider that has no logical-plan encoding.
    Ballista {
        name: String,
        scheduler_url: String,
        plan_ctx: SessionContext,
    },
}

impl Engine {
    fn name(&self) -> &str {
        match self {
            Engine::Local(_) => "local DataFusion",
            Engine::Ballista { name, .. } => name,
        }
    }

    async fn run(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        match self {
            Engine::Local(ctx) => Ok(ctx.sql(sql).await?.collect().await?),
            Engine::Ballista {
                scheduler_url,
                plan_ctx,
                ..
            } => {
                let plan = plan_ctx.sql(sql).await?.create_physical_plan().await?;
                let config = plan_ctx.copied_config();
                let codec = config.ballista_physical_extension_codec();
                let stream = ballista_core::execution_plans::execute_physical_plan::<
                    datafusion_proto::protobuf::PhysicalPlanNode,
                >(
                    scheduler_url.clone(),
                    &config.ballista_config(),
                    plan,
                    codec.as_ref(),
                    plan_ctx.session_id(),
                    config,
                )
                .await?;
                Ok(stream.try_collect().await?)
            }
        }
    }
}

struct Tables {
    snapshots: Vec<Snapshot>,
}

impl Tables {
    fn load(lake: &FsPath) -> Result<Tables> {
        let mut snapshots = vec![];
        let mut names: Vec<_> = std::fs::read_dir(lake)?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join("_delta_log").is_dir())
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        names.sort();
        for name in names {
            snapshots.push(Snapshot::load(&name, &lake.join(&name))?);
        }
        Ok(Tables { snapshots })
    }

    fn register(&self, ctx: &SessionContext) -> Result<()> {
        for s in &self.snapshots {
            if s.files.is_empty() {
                continue;
            }
            ctx.register_table(s.name.as_str(), Arc::new(SnapshotTable::new(s)?))?;
        }
        ctx.register_udaf(MyCount::udaf());
        Ok(())
    }
}

fn local_ctx(partitions: usize) -> SessionContext {
    SessionContext::new_with_config(SessionConfig::new().with_target_partitions(partitions))
}

/// Ballista's session defaults (round-robin repartition off, no view types, …) with the
/// trial's UDAF; used to plan for Ballista and as the state of the standalone cluster.
fn ballista_state(partitions: usize, with_udf: bool) -> datafusion::execution::SessionState {
    let config = SessionConfig::new_with_ballista().with_target_partitions(partitions);
    let mut state = SessionStateBuilder::new()
        .with_default_features()
        .with_config(config)
        .build();
    if with_udf {
        state
            .register_udaf(Arc::new(MyCount::udaf()))
            .expect("register my_count");
    }
    state
}

/// An in-process scheduler and executor (`vcores` task slots), as
/// `SessionContext::standalone_with_state` starts them; returns the scheduler URL.
async fn start_standalone(
    state: &datafusion::execution::SessionState,
    vcores: usize,
) -> Result<String> {
    let addr = ballista_scheduler::standalone::new_standalone_scheduler_from_state(state).await?;
    let url = format!("http://localhost:{}", addr.port());
    let scheduler = loop {
        match SchedulerGrpcClient::connect(url.clone()).await {
            Ok(s) => break s,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    ballista_executor::new_standalone_executor_from_state(scheduler, vcores, state).await?;
    Ok(url)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

struct Args {
    map: HashMap<String, String>,
    flags: Vec<String>,
}

impl Args {
    fn parse(args: &[String]) -> Args {
        let mut map = HashMap::new();
        let mut flags = vec![];
        let mut i = 0;
        while i < args.len() {
            let a = args[i].trim_start_matches("--").to_string();
            if i + 1 < args.len() && !args[i + 1].starts_with("--") {
                map.insert(a, args[i + 1].clone());
                i += 2;
            } else {
                flags.push(a);
                i += 1;
            }
        }
        Args { map, flags }
    }
    fn get(&self, k: &str) -> Option<&str> {
        self.map.get(k).map(String::as_str)
    }
    fn num(&self, k: &str, default: usize) -> Result<usize> {
        self.get(k).map_or(Ok(default), |v| Ok(v.parse()?))
    }
    fn flag(&self, k: &str) -> bool {
        self.flags.iter().any(|f| f == k)
    }
}

async fn bench(args: &Args) -> Result<()> {
    let lake = PathBuf::from(args.get("lake").unwrap_or("/tmp/qbench-dist"));
    let runs = args.num("runs", 5)?;
    let partitions = args.num("partitions", std::thread::available_parallelism()?.get())?;
    let only: Option<Vec<String>> = args
        .get("only")
        .map(|s| s.split(',').map(str::to_string).collect());

    let t = Instant::now();
    let tables = Tables::load(&lake)?;
    println!(
        "## Snapshots (Delta log replay, {:.0} ms)\n",
        t.elapsed().as_secs_f64() * 1e3
    );
    println!("| table | version | checkpoint | live files | numRecords (log stats) |");
    println!("|---|---:|---:|---:|---:|");
    for s in &tables.snapshots {
        println!(
            "| {} | {} | {} | {} | {} |",
            s.name,
            s.version,
            s.checkpoint.map_or("-".into(), |c| c.to_string()),
            s.files.len(),
            s.records().map_or("?".into(), |r| r.to_string())
        );
    }
    println!();

    let mut engines = vec![];
    let local = local_ctx(partitions);
    tables.register(&local)?;
    engines.push(Engine::Local(local));

    if !args.flag("no-standalone") {
        let state = ballista_state(partitions, true);
        let t = Instant::now();
        let url = start_standalone(&state, args.num("standalone-vcores", 2)?).await?;
        println!(
            "standalone cluster up at {url} in {:.0} ms",
            t.elapsed().as_secs_f64() * 1e3
        );
        let plan_ctx = SessionContext::new_with_state(state);
        tables.register(&plan_ctx)?;
        engines.push(Engine::Ballista {
            name: "Ballista standalone".into(),
            scheduler_url: url,
            plan_ctx,
        });
    }
    if let Some(remote) = args.get("remote") {
        let url = remote.replace("df://", "http://");
        let plan_ctx = SessionContext::new_with_state(ballista_state(partitions, true));
        tables.register(&plan_ctx)?;
        engines.push(Engine::Ballista {
            name: "Ballista scheduler + 2 executors".into(),
            scheduler_url: url,
            plan_ctx,
        });
    }

    // count(*) of engagement_events on every engine (the check against hourlake).
    println!("\n## Row count check\n");
    for e in &engines {
        let b = e.run("SELECT count(*) FROM engagement_events").await?;
        println!(
            "- {}: count(*) engagement_events = {}",
            e.name(),
            rows_text(&b)?.join(",")
        );
    }

    println!(
        "\n## Results (wall clock ms, median of {runs} runs after 1 warm-up; target_partitions = {partitions})\n"
    );
    let mut header = "| query | rows |".to_string();
    let mut sep = "|---|---:|".to_string();
    for e in &engines {
        header += &format!(" {} ms (min–max) | same answer |", e.name());
        sep += "---:|---|";
    }
    let mut table = vec![header, sep];
    for (name, sql) in QUERIES {
        if let Some(only) = &only {
            if !only.iter().any(|o| name.starts_with(o.as_str())) {
                continue;
            }
        }
        let mut row = String::new();
        let mut reference: Option<Vec<String>> = None;
        for e in &engines {
            eprintln!("running {name} on {}", e.name());
            // warm-up, also the answer we compare
            let answer = match e.run(sql).await {
                Ok(b) => rows_text(&b)?,
                Err(err) => {
                    eprintln!("  ERROR: {err:#}");
                    row += &format!(" error: {} | - |", short(&format!("{err:#}")));
                    continue;
                }
            };
            let same = match &reference {
                None => {
                    row = format!("| {name} | {} |", answer.len());
                    reference = Some(answer.clone());
                    "reference".to_string()
                }
                Some(r) if *r == answer => "yes".to_string(),
                Some(r) => {
                    let first_diff = r.iter().zip(&answer).position(|(a, b)| a != b);
                    eprintln!(
                        "  MISMATCH: {} vs {} rows, first difference at {first_diff:?}: {:?} vs {:?}",
                        r.len(),
                        answer.len(),
                        first_diff.map(|i| &r[i]),
                        first_diff.map(|i| &answer[i])
                    );
                    format!(
                        "NO ({} rows, digest {:016x})",
                        answer.len(),
                        digest(&answer)
                    )
                }
            };
            let mut times = vec![];
            for _ in 0..runs {
                let t = Instant::now();
                let b = e.run(sql).await?;
                std::hint::black_box(b);
                times.push(t.elapsed().as_secs_f64() * 1e3);
            }
            let min = times.iter().cloned().fold(f64::INFINITY, f64::min);
            let max = times.iter().cloned().fold(0.0, f64::max);
            eprintln!("  {:.1} ms median ({times:.1?})", median(times.clone()));
            row += &format!(" {:.1} ({:.0}–{:.0}) | {same} |", median(times), min, max);
        }
        table.push(row);
    }
    println!("{}", table.join("\n"));

    println!("\n## UDAF `my_count` (registered in every session; standalone state carries it)\n");
    for e in &engines {
        match e.run(UDAF_QUERY).await {
            Ok(b) => {
                let lines = rows_text(&b)?;
                let ok = lines.iter().all(|l| {
                    let p: Vec<_> = l.split('|').collect();
                    p.len() == 3 && p[1] == p[2]
                });
                println!(
                    "- {}: ok, {} rows, my_count == count: {ok}",
                    e.name(),
                    lines.len()
                );
            }
            Err(err) => println!("- {}: ERROR {}", e.name(), short(&format!("{err:#}"))),
        }
    }
    if args.flag("probe-logical") {
        probe_logical(&tables, partitions).await?;
    }
    Ok(())
}

fn short(s: &str) -> String {
    let s = s.replace('\n', " ").replace('|', "/");
    if s.len() > 300 {
        format!("{}…", &s[..s.floor_char_boundary(300)])
    } else {
        s
    }
}

/// Ballista's ordinary client path (`SessionContext::standalone_with_state`: the LOGICAL plan
/// goes to the scheduler): with the snapshot scan (a custom provider) and with a ListingTable
/// over explicit file URLs.
async fn probe_logical(tables: &Tables, partitions: usize) -> Result<()> {
    use ballista::prelude::SessionContextExt;
    println!("\n## Ballista's logical-plan path (SessionContext::standalone_with_state)\n");
    let state = ballista_state(partitions, true);
    let ctx = SessionContext::standalone_with_state(state).await?;
    tables.register(&ctx)?;
    match ctx.sql("SELECT count(*) FROM engagement_events").await {
        Ok(df) => match df.collect().await {
            Ok(b) => println!(
                "- snapshot scan (custom TableProvider): ok {:?}",
                rows_text(&b)?
            ),
            Err(e) => println!(
                "- snapshot scan (custom TableProvider): ERROR {}",
                short(&format!("{e:#}"))
            ),
        },
        Err(e) => println!(
            "- snapshot scan (custom TableProvider): ERROR {}",
            short(&format!("{e:#}"))
        ),
    }
    // A ListingTable over the explicit live file URLs of one day (no partition columns: a
    // file URL leaves DataFusion nothing to parse hive partition values from).
    let snap = tables
        .snapshots
        .iter()
        .find(|s| s.name == "engagement_events")
        .ok_or_else(|| anyhow!("engagement_events"))?;
    let mut urls = vec![];
    for f in snap.files.values() {
        if f.relative.starts_with("event_date=2026-11-24/") {
            let path = snap.object_path(&f.relative)?;
            urls.push(ListingTableUrl::parse(format!("file:///{path}"))?);
        }
    }
    let n = urls.len();
    let opts = ListingOptions::new(Arc::new(
        datafusion::datasource::file_format::parquet::ParquetFormat::default(),
    ))
    .with_file_extension(".parquet");
    let config = ListingTableConfig::new_with_multi_paths(urls)
        .with_listing_options(opts)
        .infer_schema(&ctx.state())
        .await?;
    ctx.register_table("day1", Arc::new(ListingTable::try_new(config)?))?;
    let local = local_ctx(partitions);
    local.register_udaf(MyCount::udaf());
    local.register_table("day1", ctx.table_provider("day1").await?)?;
    let q =
        "SELECT event_type, count(*) AS n, my_count(user_id) AS m FROM day1 GROUP BY event_type";
    let expected = rows_text(&local.sql(q).await?.collect().await?)?;
    let t = Instant::now();
    match async { Ok::<_, datafusion::error::DataFusionError>(ctx.sql(q).await?.collect().await?) }.await {
        Ok(b) => println!(
            "- ListingTable over {n} explicit file URLs (1 day) + my_count: ok, same as local: {}, {:.0} ms",
            rows_text(&b)? == expected,
            t.elapsed().as_secs_f64() * 1e3
        ),
        Err(e) => println!("- ListingTable + my_count: ERROR {}", short(&format!("{e:#}"))),
    }
    Ok(())
}

fn udf_registry(with_udf: bool) -> BallistaFunctionRegistry {
    let mut reg = BallistaFunctionRegistry::default();
    if with_udf {
        reg.aggregate_functions
            .insert("my_count".into(), Arc::new(MyCount::udaf()));
    }
    reg
}

async fn scheduler(args: &Args) -> Result<()> {
    use ballista_scheduler::cluster::BallistaCluster;
    use ballista_scheduler::config::SchedulerConfig;
    let port = args.num("port", 50050)? as u16;
    let with_udf = !args.flag("no-udf");
    let mut config = SchedulerConfig::default().with_port(port);
    config.bind_host = "127.0.0.1".into();
    config.external_host = "127.0.0.1".into();
    let config = config.with_override_session_builder(Arc::new(move |c: SessionConfig| {
        let mut state = ballista_core::utils::default_session_builder(c)?;
        if with_udf {
            state.register_udaf(Arc::new(MyCount::udaf()))?;
        }
        Ok(state)
    }));
    let cluster = BallistaCluster::new_from_config(&config).await?;
    let addr = format!("127.0.0.1:{port}").parse()?;
    eprintln!("scheduler on {addr}, my_count registered: {with_udf}");
    ballista_scheduler::scheduler_process::start_server(cluster, addr, Arc::new(config)).await?;
    Ok(())
}

async fn executor(args: &Args) -> Result<()> {
    use ballista_executor::executor_process::{start_executor_process, ExecutorProcessConfig};
    let with_udf = !args.flag("no-udf");
    let config = ExecutorProcessConfig {
        bind_host: "127.0.0.1".into(),
        external_host: Some("127.0.0.1".into()),
        port: args.num("port", 50051)? as u16,
        grpc_port: args.num("grpc-port", 50052)? as u16,
        scheduler_host: "127.0.0.1".into(),
        scheduler_port: args.num("scheduler-port", 50050)? as u16,
        vcores: args.num("vcores", 1)?,
        work_dir: args.get("work-dir").map(str::to_string),
        override_function_registry: Some(Arc::new(udf_registry(with_udf))),
        ..Default::default()
    };
    eprintln!(
        "executor flight :{} grpc :{} vcores {} work_dir {:?}, my_count registered: {with_udf}",
        config.port, config.grpc_port, config.vcores, config.work_dir
    );
    start_executor_process(Arc::new(config)).await?;
    Ok(())
}

async fn files(args: &Args) -> Result<()> {
    let lake = PathBuf::from(args.get("lake").unwrap_or("/tmp/qbench-dist"));
    let tables = Tables::load(&lake)?;
    for s in &tables.snapshots {
        println!(
            "{}: version {} checkpoint {:?} live files {} numRecords {:?} partition columns {:?}",
            s.name,
            s.version,
            s.checkpoint,
            s.files.len(),
            s.records(),
            s.partition_columns
        );
    }
    Ok(())
}

/// Minimal stderr logger (RUST_LOG=error|warn|info|debug), without pulling env_logger in.
struct StderrLog(log::LevelFilter);

impl log::Log for StderrLog {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= self.0
    }
    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            eprintln!("[{} {}] {}", r.level(), r.target(), r.args());
        }
    }
    fn flush(&self) {}
}

fn main() -> Result<()> {
    let level = match std::env::var("RUST_LOG").as_deref() {
        Ok("debug") => log::LevelFilter::Debug,
        Ok("info") => log::LevelFilter::Info,
        Ok("error") => log::LevelFilter::Error,
        Ok("off") => log::LevelFilter::Off,
        _ => log::LevelFilter::Warn,
    };
    log::set_logger(Box::leak(Box::new(StderrLog(level)))).map_err(|e| anyhow!("{e}"))?;
    log::set_max_level(level);

    let argv: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, rest) = argv.split_first().ok_or_else(|| {
        anyhow!("usage: ballista-trial bench|scheduler|executor|files [--options] (see README.md)")
    })?;
    let args = Args::parse(rest);
    // Ballista's binaries run on a multi-threaded runtime with 32 MB stacks (deep plans).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(32 * 1024 * 1024)
        .build()?;
    rt.block_on(async {
        match cmd.as_str() {
            "bench" => bench(&args).await,
            "scheduler" => scheduler(&args).await,
            "executor" => executor(&args).await,
            "files" => files(&args).await,
            other => bail!("unknown command {other}"),
        }
    })
}
