//! Recommendation lookups by user, served from an in-memory index instead of a table
//! scan per request. The index is rebuilt from `recommendation_events` on start and then
//! follows the table's commits: every ingest commit's new files are read and applied
//! (compaction rewrites carry no new data and are skipped).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, Int32Type, TimestampMicrosecondType};
use datafusion::prelude::{col, lit, ParquetReadOptions, SessionContext};
use deltalake::kernel::Action;
use deltalake::DeltaTable;
use hourlake_catalog::{Lake, TableId};
use serde::Serialize;

/// One recommended item, and whether the user clicked it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecommendedItem {
    /// The item.
    pub item_id: String,
    /// The model's score.
    pub score: Option<f64>,
    /// Position in the served list (1 = top).
    pub rank: Option<i32>,
    /// Whether a `rec_click` for this item (and request, when known) was seen.
    pub clicked: bool,
}

/// One `rec_served` event as a lookup returns it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServedRecommendations {
    /// When it was served (RFC 3339, UTC).
    pub served_at: String,
    /// The model that ranked it.
    pub model_version: Option<String>,
    /// Where it was shown.
    pub surface: Option<String>,
    /// The recommendation request.
    pub request_id: Option<String>,
    /// The items, in served order.
    pub items: Vec<RecommendedItem>,
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
}

#[derive(Debug, Clone)]
struct Served {
    event_id: String,
    micros: i64,
    model_version: Option<String>,
    surface: Option<String>,
    request_id: Option<String>,
    items: Vec<(String, Option<f64>, Option<i32>)>,
}

#[derive(Debug, Default)]
struct UserState {
    /// Newest first, at most `keep`.
    served: Vec<Served>,
    /// `(request_id, item_id)` of clicks; request `""` when the click had none.
    clicks: HashSet<(String, String)>,
}

/// The newest served recommendations per user, with their clicks.
#[derive(Debug)]
pub struct RecommendationIndex {
    users: RwLock<HashMap<String, UserState>>,
    /// The table version applied so far; `u64::MAX` before the first load.
    version: AtomicU64,
    keep: usize,
}

const CLICKS_KEPT: usize = 1024;

fn text(array: &dyn Array, i: usize) -> Option<String> {
    if array.is_null(i) {
        return None;
    }
    match array.data_type() {
        DataType::Utf8 => Some(array.as_string::<i32>().value(i).to_string()),
        DataType::LargeUtf8 => Some(array.as_string::<i64>().value(i).to_string()),
        DataType::Utf8View => Some(array.as_string_view().value(i).to_string()),
        _ => None,
    }
}

impl RecommendationIndex {
    /// An empty index keeping the `keep` newest served lists per user.
    pub fn new(keep: usize) -> RecommendationIndex {
        RecommendationIndex {
            users: RwLock::new(HashMap::new()),
            version: AtomicU64::new(u64::MAX),
            keep: keep.max(1),
        }
    }

    /// The `recommendation_events` version the index reflects, once loaded.
    pub fn version(&self) -> Option<u64> {
        match self.version.load(Ordering::Acquire) {
            u64::MAX => None,
            v => Some(v),
        }
    }

    /// The newest `limit` served lists of `user_id`, newest first.
    pub fn lookup(&self, user_id: &str, limit: usize) -> Vec<ServedRecommendations> {
        let users = self.users.read().unwrap_or_else(|p| p.into_inner());
        let Some(state) = users.get(user_id) else {
            return Vec::new();
        };
        state
            .served
            .iter()
            .take(limit)
            .map(|s| {
                let request = s.request_id.clone().unwrap_or_default();
                ServedRecommendations {
                    served_at: chrono_rfc3339(s.micros),
                    model_version: s.model_version.clone(),
                    surface: s.surface.clone(),
                    request_id: s.request_id.clone(),
                    items: s
                        .items
                        .iter()
                        .map(|(item, score, rank)| RecommendedItem {
                            item_id: item.clone(),
                            score: *score,
                            rank: *rank,
                            clicked: state.clicks.contains(&(request.clone(), item.clone()))
                                || state.clicks.contains(&(String::new(), item.clone())),
                        })
                        .collect(),
                }
            })
            .collect()
    }

    /// Applies rows of `recommendation_events` (any column order; others ignored).
    fn apply(&self, batch: &RecordBatch) {
        let column = |name: &str| batch.column_by_name(name);
        let (Some(ids), Some(types), Some(times), Some(users)) = (
            column("event_id"),
            column("event_type"),
            column("event_time"),
            column("user_id"),
        ) else {
            return;
        };
        let Some(times) = times.as_primitive_opt::<TimestampMicrosecondType>() else {
            return;
        };
        let request = column("request_id");
        let model = column("model_version");
        let surface = column("surface");
        let item_id = column("item_id");
        let items = column("items");
        let mut map = self.users.write().unwrap_or_else(|p| p.into_inner());
        for i in 0..batch.num_rows() {
            let (Some(event_id), Some(kind), Some(user)) =
                (text(ids, i), text(types, i), text(users, i))
            else {
                continue;
            };
            let state = map.entry(user).or_default();
            let request_id = request.and_then(|a| text(a, i));
            match kind.as_str() {
                "rec_click" => {
                    if let Some(item) = item_id.and_then(|a| text(a, i)) {
                        if state.clicks.len() >= CLICKS_KEPT {
                            state.clicks.clear();
                        }
                        state.clicks.insert((request_id.unwrap_or_default(), item));
                    }
                }
                "rec_served" => {
                    if state.served.iter().any(|s| s.event_id == event_id) {
                        continue; // a resent duplicate
                    }
                    let mut list = Vec::new();
                    if let Some(lists) = items.and_then(|a| a.as_list_opt::<i32>()) {
                        if !lists.is_null(i) {
                            let values = lists.value(i);
                            if let Some(entries) = values.as_struct_opt() {
                                let ids = entries.column_by_name("item_id");
                                let scores = entries
                                    .column_by_name("score")
                                    .and_then(|a| a.as_primitive_opt::<Float64Type>());
                                let ranks = entries
                                    .column_by_name("rank")
                                    .and_then(|a| a.as_primitive_opt::<Int32Type>());
                                for j in 0..entries.len() {
                                    let Some(item) = ids.and_then(|a| text(a, j)) else {
                                        continue;
                                    };
                                    let score =
                                        scores.filter(|s| s.is_valid(j)).map(|s| s.value(j));
                                    let rank = ranks.filter(|r| r.is_valid(j)).map(|r| r.value(j));
                                    list.push((item, score, rank));
                                }
                            }
                        }
                    }
                    let served = Served {
                        event_id,
                        micros: times.value(i),
                        model_version: model.and_then(|a| text(a, i)),
                        surface: surface.and_then(|a| text(a, i)),
                        request_id,
                        items: list,
                    };
                    let at = state
                        .served
                        .iter()
                        .position(|s| s.micros < served.micros)
                        .unwrap_or(state.served.len());
                    if at < self.keep {
                        state.served.insert(at, served);
                        state.served.truncate(self.keep);
                    }
                }
                _ => {}
            }
        }
    }

    async fn read_files(&self, table: &DeltaTable, paths: &[String]) -> Result<(), IndexError> {
        if paths.is_empty() {
            return Ok(());
        }
        let ctx = SessionContext::new();
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
        let batches = ctx
            .read_parquet(urls, ParquetReadOptions::default())
            .await
            .and_then(|df| {
                df.filter(
                    col("event_type").in_list(vec![lit("rec_served"), lit("rec_click")], false),
                )
            })?
            .collect()
            .await?;
        for b in &batches {
            self.apply(b);
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
        self.users
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.read_files(table, &paths).await?;
        self.version
            .store(table.version().unwrap_or(0), Ordering::Release);
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
            self.read_files(table, &paths).await?;
            self.version.store(version, Ordering::Release);
        }
        Ok(())
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
