//! Recommendation lookups by user, served from an in-memory index instead of a table
//! scan per request. The index is rebuilt from `recommendation_events` on start and then
//! follows the table's commits: every ingest commit's new files are read and applied
//! (compaction rewrites carry no new data and are skipped).
//!
//! It keeps only what a lookup returns, packed: each user's newest `lists_per_user`
//! served lists and their clicks ([`user::User`]: four allocations per user; a shard's
//! users lie side by side, found through a table of positions, [`shard::Shard`]), item ids,
//! model versions and surfaces interned as 4-byte symbols ([`interner::Interner`]), and
//! event ids as 128-bit fingerprints ([`user::Fingerprint`]). Lists and clicks older than
//! `max_age` are dropped as the index follows the table, and users left with nothing go.
//!
//! Age is measured against the newest event time the index has seen, or now when that is
//! later (events are accepted up to a day ahead): a replayed or old lake is not emptied,
//! and one event stamped far ahead cannot age out everything. The cutoff only moves
//! forward, so a resent `rec_served` whose first copy was dropped for its age is older
//! than the cutoff too and is ignored, never shown twice.

mod interner;
mod shard;
#[cfg(test)]
mod tests;
mod user;

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, Int32Type, TimestampMicrosecondType};
use datafusion::prelude::{col, lit, ParquetReadOptions, SessionConfig, SessionContext};
use deltalake::kernel::Action;
use deltalake::DeltaTable;
use futures::StreamExt;
use hourlake_catalog::{Lake, TableId};
use prometheus_client::registry::Registry;
use serde::Serialize;

use crate::config::{ConfigError, LookupConfig};
use crate::metrics::LookupIndexMetrics;
use interner::{Interner, InternerFull, Sym};
use shard::Shard;
use user::{Click, Fingerprint, Fingerprinter, Inserted, NewItem, NewList, User};

/// One recommended item, and whether the user clicked it. (Fields in alphabetical order:
/// the order the endpoint has always written them in.)
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecommendedItem {
    /// Whether a `rec_click` for this item (and request, when known) was seen.
    pub clicked: bool,
    /// The item.
    pub item_id: String,
    /// Position in the served list (1 = top).
    pub rank: Option<i32>,
    /// The model's score.
    pub score: Option<f64>,
}

/// One `rec_served` event as a lookup returns it. (Fields in alphabetical order: the
/// order the endpoint has always written them in.)
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServedRecommendations {
    /// The items, in served order.
    pub items: Vec<RecommendedItem>,
    /// The model that ranked it.
    pub model_version: Option<String>,
    /// The recommendation request.
    pub request_id: Option<String>,
    /// When it was served (RFC 3339, UTC).
    pub served_at: String,
    /// Where it was shown.
    pub surface: Option<String>,
}

/// Why the index could not catch up with the table (logged; the index retries).
#[derive(Debug, thiserror::Error)]
enum IndexError {
    #[error(transparent)]
    Catalog(#[from] hourlake_catalog::CatalogError),
    #[error("recommendation_events: {0}")]
    Delta(#[from] deltalake::DeltaTableError),
    #[error("recommendation_events: reading new files: {0}")]
    Read(#[from] datafusion::error::DataFusionError),
    #[error("recommendation_events: file path {path:?}: {source}")]
    Path {
        path: String,
        #[source]
        source: url::ParseError,
    },
    #[error("recommendation index: {0}")]
    Full(#[from] InternerFull),
}

/// Users are spread over this many separately locked shards, so that applying new rows
/// or an eviction pass holds up only the lookups of one shard, briefly.
const SHARDS: usize = 64;

/// An eviction pass over every user runs once the cutoff has moved this far since the
/// last one (users touched by new rows are trimmed as they are touched).
const SWEEP_EVERY_MICROS: i64 = 60_000_000;

/// The columns the index reads.
const COLUMNS: [&str; 9] = [
    "event_id",
    "event_type",
    "event_time",
    "user_id",
    "request_id",
    "model_version",
    "surface",
    "items",
    "item_id",
];

/// Running totals of what the index holds (kept under the shard locks).
#[derive(Debug, Default)]
struct Totals {
    users: AtomicI64,
    lists: AtomicI64,
    clicks: AtomicI64,
    bytes: AtomicI64,
}

impl Totals {
    fn add(&self, users: i64, lists: i64, clicks: i64, bytes: i64) {
        self.users.fetch_add(users, Ordering::Relaxed);
        self.lists.fetch_add(lists, Ordering::Relaxed);
        self.clicks.fetch_add(clicks, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    fn clear(&self) {
        for total in [&self.users, &self.lists, &self.clicks, &self.bytes] {
            total.store(0, Ordering::Relaxed);
        }
    }
}

/// A user's counts and bytes, to turn a change into deltas of the totals.
fn measure(user: Option<&User>) -> [i64; 4] {
    user.map_or([0; 4], |u| {
        [
            1,
            u.list_count() as i64,
            u.click_count() as i64,
            u.heap_bytes() as i64,
        ]
    })
}

/// What the recommendation index holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexSize {
    /// Users with a list or a click kept.
    pub users: u64,
    /// Served lists kept.
    pub lists: u64,
    /// Clicks kept.
    pub clicks: u64,
    /// Distinct interned strings.
    pub strings: u64,
    /// Estimated bytes.
    pub bytes: u64,
}

/// The newest served recommendations per user, with their clicks.
#[derive(Debug)]
pub struct RecommendationIndex {
    shards: Box<[RwLock<Shard>]>,
    /// Taken after a shard lock, never before one.
    interner: RwLock<Interner>,
    hasher: RandomState,
    fingerprints: Fingerprinter,
    /// The fingerprint of `""`: the request of clicks that named none.
    no_request: Fingerprint,
    /// The table version applied so far; `u64::MAX` before the first load.
    version: AtomicU64,
    keep: usize,
    max_age_micros: Option<i64>,
    /// The newest event time applied.
    newest: AtomicI64,
    /// Rows older than this (micros) are dropped; `i64::MIN` keeps everything.
    cutoff: AtomicI64,
    /// The cutoff of the last eviction pass.
    swept: AtomicI64,
    totals: Totals,
    metrics: LookupIndexMetrics,
}

fn text(array: &dyn Array, i: usize) -> Option<&str> {
    if array.is_null(i) {
        return None;
    }
    match array.data_type() {
        DataType::Utf8 => Some(array.as_string::<i32>().value(i)),
        DataType::LargeUtf8 => Some(array.as_string::<i64>().value(i)),
        DataType::Utf8View => Some(array.as_string_view().value(i)),
        _ => None,
    }
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

impl RecommendationIndex {
    /// An empty index keeping what `config` says.
    pub fn new(config: LookupConfig) -> Result<RecommendationIndex, ConfigError> {
        config.validate()?;
        let fingerprints = Fingerprinter::default();
        Ok(RecommendationIndex {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            interner: RwLock::default(),
            hasher: RandomState::new(),
            no_request: fingerprints.of(""),
            fingerprints,
            version: AtomicU64::new(u64::MAX),
            keep: config.lists_per_user,
            max_age_micros: config
                .max_age
                .map(|a| i64::try_from(a.as_micros()).unwrap_or(i64::MAX)),
            newest: AtomicI64::new(i64::MIN),
            cutoff: AtomicI64::new(i64::MIN),
            swept: AtomicI64::new(i64::MIN),
            totals: Totals::default(),
            metrics: LookupIndexMetrics::default(),
        })
    }

    /// Registers the index's size gauges (`hourlake_query_lookup_index_*`).
    pub fn register_metrics(&self, registry: &mut Registry) {
        self.metrics.register(registry);
    }

    /// The `recommendation_events` version the index reflects, once loaded.
    pub fn version(&self) -> Option<u64> {
        match self.version.load(Ordering::Acquire) {
            u64::MAX => None,
            v => Some(v),
        }
    }

    /// Served lists kept per user.
    pub fn lists_per_user(&self) -> usize {
        self.keep
    }

    /// What the index holds now.
    pub fn size(&self) -> IndexSize {
        let table_bytes: usize = self
            .shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|p| p.into_inner()).bytes())
            .sum();
        let interner = self.interner.read().unwrap_or_else(|p| p.into_inner());
        let count = |a: &AtomicI64| u64::try_from(a.load(Ordering::Relaxed)).unwrap_or(0);
        IndexSize {
            users: count(&self.totals.users),
            lists: count(&self.totals.lists),
            clicks: count(&self.totals.clicks),
            strings: interner.len() as u64,
            bytes: count(&self.totals.bytes) + (table_bytes + interner.bytes()) as u64,
        }
    }

    /// Sets the size gauges.
    fn refresh_metrics(&self) {
        let size = self.size();
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.metrics.users.set(gauge(size.users));
        self.metrics.lists.set(gauge(size.lists));
        self.metrics.clicks.set(gauge(size.clicks));
        self.metrics.strings.set(gauge(size.strings));
        self.metrics.bytes.set(gauge(size.bytes));
    }

    fn shard(&self, hash: u64) -> &RwLock<Shard> {
        // The top bits pick the shard; the table uses the rest of the hash.
        &self.shards[(hash >> 58) as usize % SHARDS]
    }

    /// The newest `limit` served lists of `user_id`, newest first.
    pub fn lookup(&self, user_id: &str, limit: usize) -> Vec<ServedRecommendations> {
        let hash = self.hasher.hash_one(user_id);
        let shard = self.shard(hash).read().unwrap_or_else(|p| p.into_inner());
        let Some(user) = shard.get(hash, user_id) else {
            return Vec::new();
        };
        let strings = self.interner.read().unwrap_or_else(|p| p.into_inner());
        let resolve = |sym: Option<Sym>| sym.map(|s| strings.resolve(s).to_string());
        user.lists()
            .take(limit)
            .map(|list| {
                let request = self.fingerprints.of(list.request.unwrap_or_default());
                ServedRecommendations {
                    served_at: chrono_rfc3339(list.micros),
                    model_version: resolve(list.model),
                    surface: resolve(list.surface),
                    request_id: list.request.map(str::to_string),
                    items: list
                        .items()
                        .filter_map(|(item, rank)| {
                            let sym = item.item()?;
                            Some(RecommendedItem {
                                item_id: strings.resolve(sym).to_string(),
                                score: item.score(),
                                rank,
                                clicked: user.clicked(sym, request, self.no_request),
                            })
                        })
                        .collect(),
                }
            })
            .collect()
    }

    /// The symbol of `text`, interning it when new.
    fn intern(&self, text: &str) -> Result<Sym, InternerFull> {
        if let Some(sym) = self
            .interner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(text)
        {
            return Ok(sym);
        }
        self.interner
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .intern(text)
    }

    /// Moves the cutoff forward for rows as new as `newest` (micros).
    fn advance(&self, newest: i64) {
        let newest = self.newest.fetch_max(newest, Ordering::AcqRel).max(newest);
        if let Some(age) = self.max_age_micros {
            let cutoff = newest.min(now_micros()).saturating_sub(age);
            self.cutoff.fetch_max(cutoff, Ordering::AcqRel);
        }
    }

    /// Applies `change` to the user `user_id` (created when new, removed when left empty),
    /// after trimming the user to the cutoff.
    fn update<R>(&self, user_id: &str, change: impl FnOnce(&mut User) -> R) -> R {
        let hash = self.hasher.hash_one(user_id);
        let cutoff = self.cutoff.load(Ordering::Acquire);
        let mut shard = self.shard(hash).write().unwrap_or_else(|p| p.into_inner());
        let hash_of = |id: &str| self.hasher.hash_one(id);
        let (before, after, result) = shard.update(hash, user_id, hash_of, |user, new| {
            let before = if new { [0; 4] } else { measure(Some(user)) };
            user.evict_before(cutoff);
            let result = change(user);
            let after = if user.is_empty() {
                [0; 4]
            } else {
                measure(Some(user))
            };
            (before, after, result)
        });
        self.totals.add(
            after[0] - before[0],
            after[1] - before[1],
            after[2] - before[2],
            after[3] - before[3],
        );
        result
    }

    /// Applies rows of `recommendation_events` (any column order; others ignored).
    fn apply(&self, batch: &RecordBatch) -> Result<(), IndexError> {
        let column = |name: &str| batch.column_by_name(name);
        let (Some(ids), Some(types), Some(times), Some(users)) = (
            column("event_id"),
            column("event_type"),
            column("event_time"),
            column("user_id"),
        ) else {
            return Ok(());
        };
        let Some(times) = times.as_primitive_opt::<TimestampMicrosecondType>() else {
            return Ok(());
        };
        if let Some(newest) = times.iter().flatten().max() {
            self.advance(newest);
        }
        let cutoff = self.cutoff.load(Ordering::Acquire);
        let request = column("request_id");
        let model = column("model_version");
        let surface = column("surface");
        let item_id = column("item_id");
        let items = column("items");
        let lists = items.and_then(|a| a.as_list_opt::<i32>());
        for i in 0..batch.num_rows() {
            let (Some(event_id), Some(kind), Some(user)) =
                (text(ids, i), text(types, i), text(users, i))
            else {
                continue;
            };
            let micros = times.value(i);
            if micros < cutoff {
                continue; // aged out (or a resend of a list that has)
            }
            let request_id = request.and_then(|a| text(a, i));
            match kind {
                "rec_click" => {
                    let Some(item) = item_id.and_then(|a| text(a, i)) else {
                        continue;
                    };
                    let click = Click {
                        item: self.intern(item)?,
                        request: self.fingerprints.of(request_id.unwrap_or_default()),
                        micros,
                    };
                    self.update(user, |u| u.insert_click(click));
                }
                "rec_served" => {
                    let mut list = Vec::new();
                    if let Some(lists) = lists.filter(|l| !l.is_null(i)) {
                        let values = lists.value(i);
                        if let Some(entries) = values.as_struct_opt() {
                            let ids = entries.column_by_name("item_id");
                            let scores = entries
                                .column_by_name("score")
                                .and_then(|a| a.as_primitive_opt::<Float64Type>());
                            let ranks = entries
                                .column_by_name("rank")
                                .and_then(|a| a.as_primitive_opt::<Int32Type>());
                            list.reserve_exact(entries.len());
                            for j in 0..entries.len() {
                                let Some(item) = ids.and_then(|a| text(a, j)) else {
                                    continue;
                                };
                                let score = scores.filter(|s| s.is_valid(j)).map(|s| s.value(j));
                                let rank = ranks.filter(|r| r.is_valid(j)).map(|r| r.value(j));
                                list.push(NewItem {
                                    item: self.intern(item)?,
                                    score,
                                    rank,
                                });
                            }
                        }
                    }
                    let served = NewList {
                        event: self.fingerprints.of(event_id),
                        micros,
                        model: model
                            .and_then(|a| text(a, i))
                            .map(|m| self.intern(m))
                            .transpose()?,
                        surface: surface
                            .and_then(|a| text(a, i))
                            .map(|s| self.intern(s))
                            .transpose()?,
                        request: request_id,
                        items: list,
                    };
                    let keep = self.keep;
                    if self.update(user, |u| u.insert_list(served, keep)) == Inserted::Duplicate {
                        tracing::trace!(event_id, "recommendation index: a resent list");
                    }
                }
                _ => {}
            }
        }
        self.refresh_metrics();
        Ok(())
    }

    /// Drops every user's lists and clicks older than the cutoff, and the users left with
    /// nothing; one shard at a time.
    fn sweep(&self) {
        let cutoff = self.cutoff.load(Ordering::Acquire);
        if cutoff == i64::MIN {
            return;
        }
        for shard in self.shards.iter() {
            let mut shard = shard.write().unwrap_or_else(|p| p.into_inner());
            let mut delta = [0i64; 4];
            let hash_of = |id: &str| self.hasher.hash_one(id);
            shard.retain(
                |user| {
                    let before = measure(Some(&*user));
                    if !user.evict_before(cutoff) {
                        return true;
                    }
                    let keep = !user.is_empty();
                    let after = if keep { measure(Some(&*user)) } else { [0; 4] };
                    for (d, (a, b)) in delta.iter_mut().zip(after.iter().zip(before)) {
                        *d += a - b;
                    }
                    keep
                },
                hash_of,
            );
            self.totals.add(delta[0], delta[1], delta[2], delta[3]);
        }
        self.swept.store(cutoff, Ordering::Release);
    }

    /// Runs an eviction pass when the cutoff has moved far enough since the last one.
    fn sweep_if_due(&self) {
        let cutoff = self.cutoff.load(Ordering::Acquire);
        let swept = self.swept.load(Ordering::Acquire);
        if cutoff != i64::MIN && cutoff.saturating_sub(swept) >= SWEEP_EVERY_MICROS {
            self.sweep();
        }
    }

    /// Empties the index (before a rebuild from the table).
    fn clear(&self) {
        for shard in self.shards.iter() {
            *shard.write().unwrap_or_else(|p| p.into_inner()) = Shard::default();
        }
        // No user is left to hold a symbol, so the interner can start over.
        *self.interner.write().unwrap_or_else(|p| p.into_inner()) = Interner::default();
        self.totals.clear();
    }

    async fn read_files(&self, table: &DeltaTable, paths: &[String]) -> Result<(), IndexError> {
        if paths.is_empty() {
            return Ok(());
        }
        // One partition: the files are read one after another, in the follower's thread.
        let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(1));
        table.update_datafusion_session(&ctx.state())?;
        let mut root = table.table_url().clone();
        if !root.path().ends_with('/') {
            root.set_path(&format!("{}/", root.path()));
        }
        let urls = paths
            .iter()
            .map(|path| {
                root.join(path)
                    .map(|u| u.to_string())
                    .map_err(|source| IndexError::Path {
                        path: path.clone(),
                        source,
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let df = ctx
            .read_parquet(urls, ParquetReadOptions::default())
            .await?;
        // Only the columns the index uses, batch by batch: loading a large table never
        // holds more than a few batches at once.
        let wanted: Vec<&str> = COLUMNS
            .into_iter()
            .filter(|c| df.schema().has_column_with_unqualified_name(c))
            .collect();
        let mut batches = df
            .select_columns(&wanted)?
            .filter(col("event_type").in_list(vec![lit("rec_served"), lit("rec_click")], false))?
            .execute_stream()
            .await?;
        while let Some(batch) = batches.next().await {
            self.apply(&batch?)?;
        }
        Ok(())
    }

    /// Loads every active file of `table` (at its loaded version).
    async fn load_all(&self, table: &DeltaTable) -> Result<(), IndexError> {
        let snapshot = table.snapshot()?;
        let paths: Vec<String> = snapshot
            .log_data()
            .iter()
            .map(|f| f.path().into_owned())
            .collect();
        self.clear();
        let loaded = self.read_files(table, &paths).await;
        // Rows read before newer ones moved the cutoff may have aged out meanwhile.
        self.sweep();
        self.refresh_metrics();
        if let Err(e) = loaded {
            // Half-filled: answer `index_loading` until a whole load succeeds, rather
            // than follow on from the old version with rows missing.
            self.version.store(u64::MAX, Ordering::Release);
            return Err(e);
        }
        self.version
            .store(table.version().unwrap_or(0), Ordering::Release);
        tracing::info!(
            users = self.totals.users.load(Ordering::Relaxed),
            lists = self.totals.lists.load(Ordering::Relaxed),
            bytes = self.size().bytes,
            "recommendation index loaded"
        );
        Ok(())
    }

    /// Applies the commits after the applied version up to the table's loaded version.
    async fn catch_up(&self, table: &DeltaTable) -> Result<(), IndexError> {
        let Some(applied) = self.version() else {
            return self.load_all(table).await;
        };
        let newest = table.version().unwrap_or(0);
        let log_store = table.log_store();
        for version in applied + 1..=newest {
            let Some(bytes) = log_store.read_commit_entry(version).await? else {
                // That part of the log is gone (cleaned up): start over from the table.
                return self.load_all(table).await;
            };
            let actions = deltalake::logstore::get_actions(version, &bytes)?;
            // Rows removed (an erasure, retention): the index cannot take single rows
            // out, so it is rebuilt from the table as it is now.
            if actions
                .iter()
                .any(|a| matches!(a, Action::Remove(r) if r.data_change))
            {
                return self.load_all(table).await;
            }
            let paths: Vec<String> = actions
                .into_iter()
                .filter_map(|a| match a {
                    Action::Add(add) if add.data_change => Some(
                        percent_encoding::percent_decode_str(&add.path)
                            .decode_utf8_lossy()
                            .into_owned(),
                    ),
                    _ => None,
                })
                .collect();
            let read = self.read_files(table, &paths).await;
            self.sweep_if_due();
            self.refresh_metrics();
            read?;
            self.version.store(version, Ordering::Release);
        }
        Ok(())
    }

    /// Runs [`RecommendationIndex::follow`] on a thread of its own (`hourlake-lookup`)
    /// with a single-threaded runtime, so that a load's reads, decoding and the index it
    /// builds all allocate from one malloc arena. Spread over the server's workers they
    /// took about 50 MiB more resident memory for 5 M recommendation events: the freed
    /// read buffers stayed behind in every worker's arena.
    pub fn spawn_follow(
        self: Arc<Self>,
        lake: Lake,
        interval: Duration,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("hourlake-lookup".into())
            .spawn(move || runtime.block_on(self.follow(lake, interval, shutdown)))
    }

    /// Loads the index from the lake, then follows new commits every `interval` until
    /// `shutdown`. Errors are logged and retried; lookups keep answering meanwhile.
    pub async fn follow(
        self: Arc<Self>,
        lake: Lake,
        interval: Duration,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut table: Option<DeltaTable> = None;
        loop {
            let step = async {
                match table.as_mut() {
                    Some(t) => t.update_state().await?,
                    None => table = lake.open(TableId::RecommendationEvents).await?,
                }
                match table.as_ref() {
                    Some(t) => self.catch_up(t).await,
                    None => Ok(()),
                }
            };
            if let Err(e) = step.await {
                tracing::warn!(error = %e, "recommendation index: catching up failed; retrying");
            }
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }
}

fn chrono_rfc3339(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// `user_recommendations('user-1')`: the same lookup as a SQL table function, one row
/// per served item, newest first.
#[derive(Debug)]
pub struct UserRecommendationsFunction(pub Arc<RecommendationIndex>);

impl datafusion::catalog::TableFunctionImpl for UserRecommendationsFunction {
    fn call(
        &self,
        args: &[datafusion::prelude::Expr],
    ) -> datafusion::error::Result<Arc<dyn datafusion::datasource::TableProvider>> {
        use arrow::array::{BooleanBuilder, Float64Builder, Int32Builder, StringBuilder};
        use datafusion::common::ScalarValue;
        let schema = recommendations_schema();
        let user = match args.first() {
            Some(datafusion::prelude::Expr::Literal(ScalarValue::Utf8(Some(u)), _))
            | Some(datafusion::prelude::Expr::Literal(ScalarValue::Utf8View(Some(u)), _))
            | Some(datafusion::prelude::Expr::Literal(ScalarValue::LargeUtf8(Some(u)), _)) => {
                u.clone()
            }
            // A prepared statement's parameter: its value is bound into the statement
            // before it runs, so until then the table has its columns but no rows to give.
            Some(datafusion::prelude::Expr::Placeholder(p)) => {
                return Ok(Arc::new(UnboundArguments {
                    schema,
                    placeholder: p.id.clone(),
                }))
            }
            _ => {
                return Err(datafusion::error::DataFusionError::Plan(
                    "user_recommendations takes one string: the user id".into(),
                ))
            }
        };

        let (mut at, mut model, mut surface, mut request) = (
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
        );
        let (mut item, mut score, mut rank, mut clicked) = (
            StringBuilder::new(),
            Float64Builder::new(),
            Int32Builder::new(),
            BooleanBuilder::new(),
        );
        for served in self.0.lookup(&user, self.0.keep) {
            for it in &served.items {
                at.append_value(&served.served_at);
                model.append_option(served.model_version.as_deref());
                surface.append_option(served.surface.as_deref());
                request.append_option(served.request_id.as_deref());
                item.append_value(&it.item_id);
                score.append_option(it.score);
                rank.append_option(it.rank);
                clicked.append_value(it.clicked);
            }
        }
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(at.finish()),
                Arc::new(model.finish()),
                Arc::new(surface.finish()),
                Arc::new(request.finish()),
                Arc::new(item.finish()),
                Arc::new(score.finish()),
                Arc::new(rank.finish()),
                Arc::new(clicked.finish()),
            ],
        )?;
        Ok(Arc::new(datafusion::datasource::MemTable::try_new(
            schema,
            vec![vec![batch]],
        )?))
    }
}

/// The columns of `user_recommendations(...)`.
fn recommendations_schema() -> arrow::datatypes::SchemaRef {
    use arrow::datatypes::{Field, Schema};
    Arc::new(Schema::new(vec![
        Field::new("served_at", DataType::Utf8, false),
        Field::new("model_version", DataType::Utf8, true),
        Field::new("surface", DataType::Utf8, true),
        Field::new("request_id", DataType::Utf8, true),
        Field::new("item_id", DataType::Utf8, false),
        Field::new("score", DataType::Float64, true),
        Field::new("rank", DataType::Int32, true),
        Field::new("clicked", DataType::Boolean, false),
    ]))
}

/// `user_recommendations($1)` before `$1` has a value: the schema, for describing a
/// prepared statement; running it is an error, never an empty answer.
#[derive(Debug)]
struct UnboundArguments {
    schema: arrow::datatypes::SchemaRef,
    placeholder: String,
}

#[async_trait::async_trait]
impl datafusion::datasource::TableProvider for UnboundArguments {
    fn schema(&self) -> arrow::datatypes::SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> datafusion::datasource::TableType {
        datafusion::datasource::TableType::Temporary
    }

    async fn scan(
        &self,
        _state: &dyn datafusion::catalog::Session,
        _projection: Option<&Vec<usize>>,
        _filters: &[datafusion::prelude::Expr],
        _limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        Err(datafusion::error::DataFusionError::Plan(format!(
            "no value was given for {} (user_recommendations)",
            self.placeholder
        )))
    }
}
