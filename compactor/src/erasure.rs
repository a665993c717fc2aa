//! Erasing users everywhere (the right to erasure): their rows out of the event tables
//! and their messages out of `dead_letters` (Delta deletes that rewrite only the files
//! holding them), their sessions out of `sessions`, the rollups of every hour they
//! appeared in recomputed from what remains (HLL and KLL sketches included), every file that held them deleted at once
//! (so time travel cannot return them), checkpoints written, and one `erasure_log` row
//! per user with a salted hash instead of the id.
//!
//! Requests wait in the lake (`erasure_log/_hourlake/requests/<id>.json`) until a
//! compactor that holds the event tables' leases carries them out: the running one, or
//! `hourlake forget-user` itself when no compactor runs. The lease keeps a rewrite and
//! an erasure of the same files apart (deltalake does not see an OPTIMIZE's removes as a
//! conflict). Ingest keeps running: a delete that loses to its commits is retried, and
//! events of an erased user that arrive later are ingested like any other (no
//! suppression list).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Int32Type, Int64Type};
use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::Transaction;
use deltalake::DeltaTable;
use futures::{StreamExt, TryStreamExt};
use hourlake_catalog::schema::{INGEST_DATE, KAFKA_OFFSET, KAFKA_PARTITION, KAFKA_TOPIC, USER_ID};
use hourlake_catalog::{partition, Hour, Lake, Rollup, TableId};
use hourlake_sql::SessionFactory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::lease::Lease;
use crate::retention::{self, OffsetRun};
use crate::rewrite::is_commit_conflict;
use crate::rollup::{recompute_hours, watermark};
use crate::{CompactorConfig, CompactorError};

/// Files not referenced by the table and younger than this may be a commit still in
/// flight (ingest writes files, then commits): they are left alone unless a remove
/// action names them.
const IN_FLIGHT: Duration = Duration::from_secs(600);
/// Attempts of a delete that loses to concurrent commits (ingest's appends).
const DELETE_ATTEMPTS: u32 = 8;

/// A request to erase users, waiting in the lake until a compactor carries it out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasureRequest {
    /// A unique id (also in `erasure_log.request_id`).
    pub id: String,
    /// The user ids to erase.
    pub users: Vec<String>,
    /// When it was asked for, in milliseconds since the epoch.
    pub requested_at_ms: i64,
}

/// What one request removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ErasureReport {
    pub request_id: String,
    /// Users in the request.
    pub users: usize,
    /// Rows removed, by table (event tables and `dead_letters`).
    pub rows_removed: BTreeMap<&'static str, u64>,
    /// Hours whose rollup rows were recomputed.
    pub hours_recomputed: usize,
    /// Files deleted at once: those that held the users in this or an older version.
    pub files_purged: usize,
}

/// The folder of the request queue and the salt: beside `erasure_log`'s log, in a
/// hidden folder Delta's vacuum leaves alone.
fn hidden_dir(lake: &Lake) -> Result<(Arc<dyn ObjectStore>, Path), CompactorError> {
    let (_, store) = lake.object_store()?;
    let table = lake.table_path(TableId::ErasureLog)?;
    Ok((store, table.join("_hourlake")))
}

fn store_error(source: object_store::Error) -> CompactorError {
    CompactorError::LeaseStore {
        table: TableId::ErasureLog.name(),
        source,
    }
}

fn unexpected(reason: String) -> CompactorError {
    CompactorError::Unexpected {
        table: TableId::ErasureLog.name(),
        reason,
    }
}

/// Queues a request to erase `users` (ids trimmed; blank ones are refused).
pub async fn enqueue(lake: &Lake, users: &[String]) -> Result<ErasureRequest, CompactorError> {
    let users: BTreeSet<String> = users.iter().map(|u| u.trim().to_string()).collect();
    if users.is_empty() || users.contains("") {
        return Err(unexpected("user ids must not be blank".into()));
    }
    let request = ErasureRequest {
        id: uuid::Uuid::new_v4().to_string(),
        users: users.into_iter().collect(),
        requested_at_ms: chrono::Utc::now().timestamp_millis(),
    };
    let (store, dir) = hidden_dir(lake)?;
    let body = serde_json::to_vec(&request).map_err(|e| unexpected(e.to_string()))?;
    store
        .put(&request_path(&dir, &request.id), PutPayload::from(body))
        .await
        .map_err(store_error)?;
    Ok(request)
}

fn request_path(dir: &Path, id: &str) -> Path {
    dir.clone().join("requests").join(format!("{id}.json"))
}

/// Requests not carried out yet, oldest first.
pub async fn pending(lake: &Lake) -> Result<Vec<ErasureRequest>, CompactorError> {
    let (store, dir) = hidden_dir(lake)?;
    let listed: Vec<_> = store
        .list(Some(&dir.join("requests")))
        .try_collect()
        .await
        .map_err(store_error)?;
    let mut requests = Vec::new();
    for meta in listed {
        let bytes = store
            .get(&meta.location)
            .await
            .map_err(store_error)?
            .bytes()
            .await
            .map_err(store_error)?;
        let request: ErasureRequest = serde_json::from_slice(&bytes)
            .map_err(|e| unexpected(format!("erasure request {}: {e}", meta.location)))?;
        requests.push(request);
    }
    requests.sort_by_key(|r| r.requested_at_ms);
    Ok(requests)
}

/// Whether request `id` still waits.
pub async fn is_pending(lake: &Lake, id: &str) -> Result<bool, CompactorError> {
    let (store, dir) = hidden_dir(lake)?;
    match store.head(&request_path(&dir, id)).await {
        Ok(_) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(store_error(e)),
    }
}

/// The lake's salt for `user_hash`: made once (random), then shared by every process.
async fn salt(lake: &Lake) -> Result<String, CompactorError> {
    let (store, dir) = hidden_dir(lake)?;
    let path = dir.join("salt");
    let fresh = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let create = PutOptions {
        mode: PutMode::Create,
        ..PutOptions::default()
    };
    match store
        .put_opts(&path, PutPayload::from(fresh.clone()), create)
        .await
    {
        Ok(_) => return Ok(fresh),
        Err(object_store::Error::AlreadyExists { .. }) => {}
        Err(e) => return Err(store_error(e)),
    }
    let bytes = store
        .get(&path)
        .await
        .map_err(store_error)?
        .bytes()
        .await
        .map_err(store_error)?;
    String::from_utf8(bytes.to_vec()).map_err(|e| unexpected(format!("salt: {e}")))
}

/// Hex SHA-256 of `salt` and `user`: what `erasure_log` keeps instead of the id.
pub fn user_hash(salt: &str, user: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(salt.as_bytes());
    hasher.update([0u8]);
    hasher.update(user.as_bytes());
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `'text'` as a SQL string literal.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `column` as `to` (a query's text may come back as any string type).
fn cast(column: &ArrayRef, to: &DataType) -> Result<ArrayRef, CompactorError> {
    arrow::compute::cast(column, to)
        .map_err(|e| CompactorError::DataFusion(datafusion::error::DataFusionError::from(e)))
}

/// What erasing the users did to one table.
#[derive(Debug, Default)]
struct Erased {
    rows_by_user: BTreeMap<String, u64>,
    hours: Vec<Hour>,
    files_purged: usize,
}

/// Carries out `request` on the event tables (`leases`: the caller's lease of each
/// event table the lake has) and `dead_letters`, then logs it and removes it from the
/// queue.
pub async fn carry_out(
    lake: &Lake,
    factory: &SessionFactory,
    config: &CompactorConfig,
    leases: &mut BTreeMap<TableId, Lease>,
    request: &ErasureRequest,
) -> Result<ErasureReport, CompactorError> {
    let mut report = ErasureReport {
        request_id: request.id.clone(),
        users: request.users.len(),
        ..ErasureReport::default()
    };
    let mut rows_by_user: BTreeMap<String, u64> = BTreeMap::new();
    let mut touched = Vec::new();
    for id in TableId::EVENTS {
        let Some(mut table) = lake.open(*id).await? else {
            continue;
        };
        let lease = leases
            .get_mut(id)
            .ok_or_else(|| unexpected(format!("erasing from {id} needs its compactor lease")))?;
        let erased = erase_events(
            lake,
            factory,
            config,
            *id,
            &mut table,
            lease,
            &request.users,
        )
        .await?;
        record(&mut report, &mut rows_by_user, &mut touched, *id, &erased);
        report.hours_recomputed += erased.hours.len();
    }
    if let Some(mut table) = lake.open(TableId::DeadLetters).await? {
        let erased = erase_dead_letters(factory, config, &mut table, &request.users).await?;
        record(
            &mut report,
            &mut rows_by_user,
            &mut touched,
            TableId::DeadLetters,
            &erased,
        );
    }
    // The sessions derived from their events (not counted in the log's rows, which are
    // the users' own events and messages).
    if let Some(lease) = leases.get_mut(&TableId::EngagementEvents) {
        let erased = erase_sessions(lake, factory, lease, &request.users).await?;
        let rows = erased.rows_by_user.values().sum();
        report.rows_removed.insert(TableId::Sessions.name(), rows);
        report.files_purged += erased.files_purged;
        if rows > 0 || erased.files_purged > 0 {
            touched.push(TableId::Sessions.name());
        }
    }
    log(lake, request, &report, &rows_by_user, &touched).await?;
    let (store, dir) = hidden_dir(lake)?;
    match store.delete(&request_path(&dir, &request.id)).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(store_error(e)),
    }
    Ok(report)
}

fn record(
    report: &mut ErasureReport,
    rows_by_user: &mut BTreeMap<String, u64>,
    touched: &mut Vec<&'static str>,
    id: TableId,
    erased: &Erased,
) {
    let rows: u64 = erased.rows_by_user.values().sum();
    report.rows_removed.insert(id.name(), rows);
    report.files_purged += erased.files_purged;
    if rows > 0 || erased.files_purged > 0 {
        touched.push(id.name());
    }
    for (user, n) in &erased.rows_by_user {
        *rows_by_user.entry(user.clone()).or_default() += n;
    }
}

/// One `erasure_log` row per user of the request.
async fn log(
    lake: &Lake,
    request: &ErasureRequest,
    report: &ErasureReport,
    rows_by_user: &BTreeMap<String, u64>,
    touched: &[&'static str],
) -> Result<(), CompactorError> {
    let salt = salt(lake).await?;
    let n = request.users.len();
    let now = chrono::Utc::now().timestamp_micros();
    let requested = request.requested_at_ms.saturating_mul(1000);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![request.id.clone(); n])),
        Arc::new(TimestampMicrosecondArray::from(vec![requested; n]).with_timezone("UTC")),
        Arc::new(TimestampMicrosecondArray::from(vec![now; n]).with_timezone("UTC")),
        Arc::new(StringArray::from_iter_values(
            request.users.iter().map(|u| user_hash(&salt, u)),
        )),
        Arc::new(StringArray::from(vec![touched.join(","); n])),
        Arc::new(Int64Array::from_iter_values(request.users.iter().map(
            |u| i64::try_from(rows_by_user.get(u).copied().unwrap_or(0)).unwrap_or(i64::MAX),
        ))),
        Arc::new(Int64Array::from(vec![report.hours_recomputed as i64; n])),
        Arc::new(Int64Array::from(vec![report.files_purged as i64; n])),
    ];
    let batch = RecordBatch::try_new(TableId::ErasureLog.schema(), columns)
        .map_err(|e| unexpected(format!("erasure_log row: {e}")))?;
    let table = lake.open_or_create(TableId::ErasureLog).await?;
    table
        .write(vec![batch])
        .with_save_mode(deltalake::protocol::SaveMode::Append)
        .await
        .map_err(TableId::ErasureLog.delta_error())?;
    Ok(())
}

/// The users' rows out of event table `id`, its files that held them purged, the
/// rollups of their hours recomputed and purged too, checkpoints written.
async fn erase_events(
    lake: &Lake,
    factory: &SessionFactory,
    config: &CompactorConfig,
    id: TableId,
    table: &mut DeltaTable,
    lease: &mut Lease,
    users: &[String],
) -> Result<Erased, CompactorError> {
    let list = user_list(users);
    let mut erased = rows_of_users(factory, id, table, &list).await?;
    if erased.hours.is_empty() {
        return Ok(erased);
    }
    let predicate = format!(
        "{USER_ID} IN ({list}) AND ({})",
        Hour::sql_predicate_any(&erased.hours)
    );
    delete_retrying(factory, config, id, table, Some(lease), &predicate, None).await?;
    let prefixes: Vec<String> = erased.hours.iter().map(|h| h.path_prefix()).collect();
    erased.files_purged += purge(id, table, &prefixes).await?;
    deltalake::checkpoints::create_checkpoint(table, None)
        .await
        .map_err(id.delta_error())?;

    // The rollups still count the users (their sketches hold them): recompute the
    // hours from what remains, keeping each rollup's watermark where it was (other
    // hours may be waiting for the compactor).
    for rollup in Rollup::of_source(id) {
        erased.files_purged +=
            recompute_rollup(lake, factory, lease, rollup, table, &erased.hours).await?;
    }
    Ok(erased)
}

/// The users of `list` (SQL string literals) as a SQL list.
fn user_list(users: &[String]) -> String {
    users
        .iter()
        .map(|u| literal(u))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The rows of the users `list` in `table` (partitioned by hour), per user, and the
/// hours holding them.
async fn rows_of_users(
    factory: &SessionFactory,
    id: TableId,
    table: &DeltaTable,
    list: &str,
) -> Result<Erased, CompactorError> {
    let ctx = factory.context()?;
    hourlake_sql::register_table(&ctx, id.name(), table).await?;
    let sql = format!(
        "SELECT CAST({USER_ID} AS VARCHAR), CAST(event_date AS VARCHAR), event_hour, count(*) \
         FROM {id} WHERE {USER_ID} IN ({list}) GROUP BY 1, 2, 3"
    );
    let mut erased = Erased::default();
    let mut hours = BTreeSet::new();
    for batch in ctx.sql(&sql).await?.collect().await? {
        let users = cast(batch.column(0), &DataType::Utf8)?;
        let dates = cast(batch.column(1), &DataType::Utf8)?;
        let (users, dates) = (users.as_string::<i32>(), dates.as_string::<i32>());
        let hour_col = cast(batch.column(2), &DataType::Int32)?;
        let counts = cast(batch.column(3), &DataType::Int64)?;
        let (hour_col, counts) = (
            hour_col.as_primitive::<Int32Type>(),
            counts.as_primitive::<Int64Type>(),
        );
        for row in 0..batch.num_rows() {
            let date = partition::parse_date(dates.value(row))
                .ok_or_else(|| unexpected(format!("event_date {}", dates.value(row))))?;
            hours.insert(Hour {
                date,
                hour: hour_col.value(row),
            });
            *erased
                .rows_by_user
                .entry(users.value(row).to_string())
                .or_default() += u64::try_from(counts.value(row)).unwrap_or(0);
        }
    }
    erased.hours = hours.into_iter().collect();
    Ok(erased)
}

/// Recomputes the rows of `rollup` for those of `hours` it covers from `source` (its
/// source table, users erased), keeping its watermark where it was (other hours may be
/// waiting for the compactor), and purges the old files of those days. Returns the
/// files purged.
async fn recompute_rollup(
    lake: &Lake,
    factory: &SessionFactory,
    lease: &mut Lease,
    rollup: &Rollup,
    source: &DeltaTable,
    hours: &[Hour],
) -> Result<usize, CompactorError> {
    let Some(mut rolled) = lake.open(rollup.table).await? else {
        return Ok(0);
    };
    let Some(mark) = watermark(rollup, &rolled).await? else {
        return Ok(0);
    };
    let covered = hourlake_sql::rollup_hours(factory, rollup.table, &rolled).await?;
    let hours: Vec<Hour> = hours
        .iter()
        .copied()
        .filter(|h| covered.contains(h))
        .collect();
    if hours.is_empty() {
        return Ok(0);
    }
    lease.renew().await?;
    recompute_hours(factory, rollup, source, &rolled, &hours, mark).await?;
    rolled
        .update_state()
        .await
        .map_err(rollup.table.delta_error())?;
    let dates: BTreeSet<String> = hours.iter().map(|h| h.date_prefix()).collect();
    let purged = purge(
        rollup.table,
        &rolled,
        &dates.into_iter().collect::<Vec<_>>(),
    )
    .await?;
    deltalake::checkpoints::create_checkpoint(&rolled, None)
        .await
        .map_err(rollup.table.delta_error())?;
    Ok(purged)
}

/// The users' sessions out of `sessions` (derived from their events, which are gone),
/// the partitions' old files purged, the `sessions_hourly` hours they started in
/// recomputed, under the `engagement_events` lease (the one writer of both tables).
async fn erase_sessions(
    lake: &Lake,
    factory: &SessionFactory,
    lease: &mut Lease,
    users: &[String],
) -> Result<Erased, CompactorError> {
    let id = TableId::Sessions;
    let Some(mut table) = lake.open(id).await? else {
        return Ok(Erased::default());
    };
    let list = user_list(users);
    let mut erased = rows_of_users(factory, id, &table, &list).await?;
    if erased.hours.is_empty() {
        return Ok(erased);
    }
    lease.renew().await?;
    let (deleted, _) = table
        .clone()
        .delete()
        .with_predicate(format!(
            "{USER_ID} IN ({list}) AND ({})",
            Hour::sql_predicate_any(&erased.hours)
        ))
        .await
        .map_err(id.delta_error())?;
    table = deleted;
    let prefixes: Vec<String> = erased.hours.iter().map(|h| h.path_prefix()).collect();
    erased.files_purged += purge(id, &table, &prefixes).await?;
    deltalake::checkpoints::create_checkpoint(&table, None)
        .await
        .map_err(id.delta_error())?;
    for rollup in Rollup::of_source(id) {
        erased.files_purged +=
            recompute_rollup(lake, factory, lease, rollup, &table, &erased.hours).await?;
    }
    Ok(erased)
}

/// A Delta delete of the rows matching `predicate`, retried on a fresh snapshot when it
/// loses to concurrent commits. The offsets of the deleted rows go to `expired_offsets`
/// first, under the table's next drop number, which the delete's commit carries: the
/// offset audit then counts them as gone on purpose, not missing. `runs`: the offsets,
/// when the caller knows them (else they are read from the rows the predicate matches).
async fn delete_retrying(
    factory: &SessionFactory,
    config: &CompactorConfig,
    id: TableId,
    table: &mut DeltaTable,
    mut lease: Option<&mut Lease>,
    predicate: &str,
    runs: Option<&[OffsetRun]>,
) -> Result<(), CompactorError> {
    let mut attempt = 1;
    loop {
        let drop_id = retention::committed_drop(id, table).await? + 1;
        let found;
        let runs = match runs {
            Some(runs) => runs,
            None => {
                found = retention::runs_matching(factory, id, table, predicate).await?;
                &found
            }
        };
        if let Some(lease) = lease.as_deref_mut() {
            lease.renew().await?;
        }
        retention::record_runs(factory.lake(), config, id, drop_id, runs).await?;
        let props =
            CommitProperties::default().with_application_transactions(vec![Transaction::new(
                retention::DROP_APP_ID,
                i64::try_from(drop_id).unwrap_or(i64::MAX),
            )]);
        if let Some(lease) = lease.as_deref_mut() {
            lease.renew().await?;
        }
        match table
            .clone()
            .delete()
            .with_predicate(predicate)
            .with_commit_properties(props)
            .await
        {
            Ok((deleted, _)) => {
                *table = deleted;
                return Ok(());
            }
            Err(e) => {
                let e = CompactorError::from(id.delta_error()(e));
                if attempt >= DELETE_ATTEMPTS || !is_commit_conflict(&e) {
                    return Err(e);
                }
                tracing::warn!(table = id.name(), attempt, error = %e, "erasure delete lost to concurrent commits; retrying");
                tokio::time::sleep(Duration::from_millis(100 << attempt.min(5))).await;
                attempt += 1;
                table.update_state().await.map_err(id.delta_error())?;
            }
        }
    }
}

/// Deletes the files under `prefixes` (partition folders of `table`) that its current
/// version does not reference: tombstones of any age (older versions, the delete just
/// made) and untracked files older than [`IN_FLIGHT`]. Time travel to older versions of
/// those partitions then fails instead of returning erased rows.
async fn purge(
    id: TableId,
    table: &DeltaTable,
    prefixes: &[String],
) -> Result<usize, CompactorError> {
    let snapshot = table.snapshot().map_err(id.delta_error())?;
    let decode = |p: &str| {
        percent_encoding::percent_decode_str(p)
            .decode_utf8_lossy()
            .into_owned()
    };
    let current: HashSet<String> = snapshot
        .log_data()
        .iter()
        .map(|f| decode(&f.path()))
        .collect();
    let log_store = table.log_store();
    let tombstones: HashSet<String> = snapshot
        .all_tombstones(log_store.as_ref())
        .map_ok(|t| decode(&t.path()))
        .try_collect()
        .await
        .map_err(id.delta_error())?;
    let store = log_store.object_store(None);
    let cutoff = chrono::Utc::now()
        - chrono::Duration::from_std(IN_FLIGHT).unwrap_or(chrono::Duration::minutes(10));
    let mut purged = 0;
    for prefix in prefixes {
        let mut listed = store.list(Some(&Path::from(prefix.as_str())));
        while let Some(meta) = listed.next().await {
            let meta = meta.map_err(|e| CompactorError::LeaseStore {
                table: id.name(),
                source: e,
            })?;
            let path = meta.location.to_string();
            if current.contains(&path) {
                continue;
            }
            if tombstones.contains(&path) || meta.last_modified < cutoff {
                match store.delete(&meta.location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => purged += 1,
                    Err(e) => {
                        return Err(CompactorError::LeaseStore {
                            table: id.name(),
                            source: e,
                        })
                    }
                }
            }
        }
    }
    Ok(purged)
}

/// The users' messages out of `dead_letters`: those whose Kafka key is a user id, or
/// whose raw bytes name one as `user_id`.
async fn erase_dead_letters(
    factory: &SessionFactory,
    config: &CompactorConfig,
    table: &mut DeltaTable,
    users: &[String],
) -> Result<Erased, CompactorError> {
    let id = TableId::DeadLetters;
    let ctx = factory.context()?;
    hourlake_sql::register_table(&ctx, id.name(), table).await?;
    let sql = format!(
        "SELECT CAST({KAFKA_TOPIC} AS VARCHAR), {KAFKA_PARTITION}, {KAFKA_OFFSET}, kafka_key, raw, \
                CAST({INGEST_DATE} AS VARCHAR) FROM {id}"
    );
    let wanted: HashSet<&str> = users.iter().map(String::as_str).collect();
    let mut erased = Erased::default();
    // (topic, partition) → offsets; ingest dates holding them
    let mut matches: BTreeMap<(String, i32), Vec<i64>> = BTreeMap::new();
    let mut dates = BTreeSet::new();
    let mut stream = ctx.sql(&sql).await?.execute_stream().await?;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        let topics = cast(batch.column(0), &DataType::Utf8)?;
        let topics = topics.as_string::<i32>();
        let partitions = cast(batch.column(1), &DataType::Int32)?;
        let partitions = partitions.as_primitive::<Int32Type>();
        let offsets = cast(batch.column(2), &DataType::Int64)?;
        let offsets = offsets.as_primitive::<Int64Type>();
        let keys = cast(batch.column(3), &DataType::Binary)?;
        let keys = keys.as_binary::<i32>();
        let raws = cast(batch.column(4), &DataType::Binary)?;
        let raws = raws.as_binary::<i32>();
        let days = cast(batch.column(5), &DataType::Utf8)?;
        let days = days.as_string::<i32>();
        for row in 0..batch.num_rows() {
            let by_key = (!keys.is_null(row))
                .then(|| std::str::from_utf8(keys.value(row)).ok())
                .flatten()
                .filter(|k| wanted.contains(k));
            let user = by_key.map(str::to_string).or_else(|| {
                mentioned_user(raws.value(row)).filter(|u| wanted.contains(u.as_str()))
            });
            if let Some(user) = user {
                *erased.rows_by_user.entry(user).or_default() += 1;
                matches
                    .entry((topics.value(row).to_string(), partitions.value(row)))
                    .or_default()
                    .push(offsets.value(row));
                dates.insert(days.value(row).to_string());
            }
        }
    }
    if matches.is_empty() {
        return Ok(erased);
    }
    let positions = matches
        .iter()
        .map(|((topic, partition), offsets)| {
            let offsets = offsets.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
            format!(
                "({KAFKA_TOPIC} = {} AND {KAFKA_PARTITION} = {partition} AND {KAFKA_OFFSET} IN ({offsets}))",
                literal(topic)
            )
        })
        .collect::<Vec<_>>()
        .join(" OR ");
    let days = dates
        .iter()
        .map(|d| format!("DATE {}", literal(d)))
        .collect::<Vec<_>>()
        .join(", ");
    let predicate = format!("{INGEST_DATE} IN ({days}) AND ({positions})");
    let mut runs = Vec::new();
    for ((topic, partition), offsets) in &mut matches {
        offsets.sort_unstable();
        offsets.dedup();
        for &o in offsets.iter() {
            match runs.last_mut() {
                Some(OffsetRun {
                    topic: t,
                    partition: p,
                    last,
                    ..
                }) if t == topic && p == partition && *last + 1 == o => {
                    *last = o;
                }
                _ => runs.push(OffsetRun {
                    topic: topic.clone(),
                    partition: *partition,
                    first: o,
                    last: o,
                }),
            }
        }
    }
    delete_retrying(factory, config, id, table, None, &predicate, Some(&runs)).await?;
    let prefixes: Vec<String> = dates.iter().map(|d| format!("{INGEST_DATE}={d}")).collect();
    erased.files_purged = purge(id, table, &prefixes).await?;
    deltalake::checkpoints::create_checkpoint(table, None)
        .await
        .map_err(id.delta_error())?;
    Ok(erased)
}

/// The top-level `user_id` a dead letter's bytes name, if they are readable enough: a
/// JSON object, or text with a `"user_id": "…"` member (a truncated or broken message).
pub fn mentioned_user(raw: &[u8]) -> Option<String> {
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(raw) {
        return map
            .get(USER_ID)
            .and_then(|v| v.as_str())
            .map(str::to_string);
    }
    let text = String::from_utf8_lossy(raw);
    let mut rest = text.as_ref();
    while let Some(at) = rest.find("\"user_id\"") {
        rest = &rest[at + "\"user_id\"".len()..];
        let value = rest.trim_start().strip_prefix(':')?.trim_start();
        if value.starts_with('"') {
            let mut parsed = serde_json::Deserializer::from_str(value).into_iter::<String>();
            if let Some(Ok(user)) = parsed.next() {
                return Some(user);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_user_in_readable_dead_letters_only() {
        assert_eq!(
            mentioned_user(br#"{"user_id":"u-1","event_type":"teleport"}"#).as_deref(),
            Some("u-1")
        );
        // broken JSON, an escaped quote in the id
        assert_eq!(
            mentioned_user(br#"{"event_id": "e", "user_id" : "u\"2", "amount": }"#).as_deref(),
            Some("u\"2")
        );
        // truncated after the id; invalid UTF-8 elsewhere
        let mut raw = b"\xff\xfe{\"user_id\":\"u-3\",\"items\":[".to_vec();
        raw.extend_from_slice(&[0xc3; 10]);
        assert_eq!(mentioned_user(&raw).as_deref(), Some("u-3"));
        assert_eq!(mentioned_user(br#"{"user_id": 17}"#), None);
        assert_eq!(mentioned_user(b"not json at all"), None);
        assert_eq!(mentioned_user(br#"{"user":"u-1"}"#), None);
    }

    #[test]
    fn user_hashes_depend_on_salt_and_id_and_hide_the_id() {
        let h = user_hash("salt-a", "user-1");
        assert_eq!(h.len(), 64);
        assert!(!h.contains("user-1"));
        assert_eq!(h, user_hash("salt-a", "user-1"));
        assert_ne!(h, user_hash("salt-b", "user-1"));
        assert_ne!(h, user_hash("salt-a", "user-2"));
        assert_eq!(literal("o'brien"), "'o''brien'");
    }
}
