//! The one query executor behind HTTP, Flight SQL and the REPL: admission (a slot of the
//! concurrency limit and a deadline), planning (limits, read-only guard, parameters,
//! cache key) and execution (a stream cut off at the deadline), all of the DataFusion
//! work on the [`QueryRuntime`].
//!
//! A query holds its slot from admission until its last row is handed over, its
//! planning failed, its deadline passed or its client went away — whichever is first —
//! and never longer than the work itself runs. Results flow through a small bounded
//! channel: a client that stops reading stalls the producer, whose deadline still
//! ends it and frees the slot.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef};
use axum::http::StatusCode;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::{execute_stream, ExecutionPlan};
use datafusion::physical_planner::{DefaultPhysicalPlanner, PhysicalPlanner};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use futures::StreamExt;
use hourlake_sql::distributed::WorkerPool;
use hourlake_sql::limits::StatementLimits;
use hourlake_sql::{distributed, guard, params, placeholders, plan_info, LiveLake};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::error::{from_datafusion, ApiError};
use crate::lookup::{RecommendationIndex, UserRecommendationsFunction};
use crate::metrics::DistributedMetrics;
use crate::runtime::{QueryRuntime, Task};
use crate::ServerConfig;

/// Batches buffered between a running plan and its consumer.
const RESULT_BUFFER_BATCHES: usize = 2;
/// How long after its deadline a consumer waits for a stuck plan before answering.
const DEADLINE_GRACE: Duration = Duration::from_millis(250);

/// Parameters of one execution.
#[derive(Debug, Clone, Default)]
pub enum Parameters {
    /// None given.
    #[default]
    None,
    /// `$1` (a JSON list) or `$name` (a JSON object), as the HTTP API takes them.
    Json(serde_json::Value),
    /// Values already decoded (a Flight SQL client's bound row).
    Values(ParamValues),
}

/// A query's place in the concurrency limit and its deadline. Planning and execution
/// both run under it; the slot is free once every part of the query that holds it is
/// gone.
#[derive(Debug, Clone)]
pub struct Admission {
    slot: Arc<OwnedSemaphorePermit>,
    clock: Clock,
}

/// A query's deadline and the timeout it came from.
#[derive(Debug, Clone, Copy)]
struct Clock {
    deadline: Instant,
    timeout: Duration,
}

impl Admission {
    /// When the query must be answered.
    pub fn deadline(&self) -> Instant {
        self.clock.deadline
    }

    /// The error of a query that ran past its deadline.
    pub fn timed_out(&self) -> ApiError {
        self.clock.timed_out()
    }
}

impl Clock {
    fn timed_out(&self) -> ApiError {
        ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            format!(
                "the query ran longer than {} ms and was cancelled",
                self.timeout.as_millis()
            ),
        )
    }
}

/// A statement planned over a pinned snapshot of the lake, parameters bound when given.
pub struct PlannedQuery {
    ctx: SessionContext,
    plan: LogicalPlan,
    /// The plan as the optimizer left it (when every parameter is bound), so running
    /// it does not optimize again.
    optimized: Option<LogicalPlan>,
    /// The result's columns as planned.
    pub schema: SchemaRef,
    /// Each result column's qualifier (the table or alias it comes from) and name.
    pub columns: Vec<(Option<String>, String)>,
    /// Placeholders (`$1`, `$name`) left unbound, with the type the plan infers for each.
    pub parameters: HashMap<String, Option<DataType>>,
    /// A digest of the statement, its parameters and the version of everything it
    /// reads: equal keys mean equal answers. `None` when the answer depends on the
    /// clock or on chance (`now()`, `random()`, …): such answers are never cached.
    pub cache_key: Option<String>,
}

/// What a finished execution read.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExecutionStats {
    /// Data files the plan read (after pruning).
    pub files_scanned: usize,
    /// Bytes read from storage.
    pub bytes_scanned: u64,
}

enum Item {
    Started {
        schema: SchemaRef,
        files_scanned: usize,
    },
    Batch(RecordBatch),
    Failed(ApiError),
    Finished(ExecutionStats),
}

/// Cancels a running query from elsewhere (Flight SQL's `CancelQuery`).
#[derive(Debug, Clone)]
pub struct CancelHandle {
    cancelled: Arc<AtomicBool>,
    task: tokio::task::AbortHandle,
}

impl CancelHandle {
    /// Stops the query; its consumer gets a `cancelled` error.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        self.task.abort();
    }
}

/// A running query's rows, cut off at its deadline. Dropping it cancels the query.
pub struct ResultStream {
    /// The result schema.
    pub schema: SchemaRef,
    rx: mpsc::Receiver<Item>,
    /// The deadline and timeout, without the slot: the producer holds that, so a
    /// consumer that stops reading does not keep it.
    clock: Clock,
    stats: ExecutionStats,
    done: bool,
    cancelled: Arc<AtomicBool>,
    task: Task<()>,
}

impl ResultStream {
    /// The next batch; `None` once every row was returned. After an error, nothing more.
    pub async fn next(&mut self) -> Option<Result<RecordBatch, ApiError>> {
        if self.done {
            return None;
        }
        let received =
            tokio::time::timeout_at(self.clock.deadline + DEADLINE_GRACE, self.rx.recv()).await;
        let outcome = match received {
            Ok(Some(Item::Batch(batch))) => return Some(Ok(batch)),
            Ok(Some(Item::Finished(stats))) => {
                self.stats = stats;
                None
            }
            Ok(Some(Item::Failed(e))) => Some(Err(e)),
            // The producer ended without a last word: cancelled, or cut off at its
            // deadline while the channel was full.
            Ok(Some(Item::Started { .. })) | Ok(None) | Err(_) => {
                if self.cancelled.load(Ordering::SeqCst) {
                    Some(Err(ApiError::new(
                        StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
                        "cancelled",
                        "the query was cancelled",
                    )))
                } else {
                    Some(Err(self.clock.timed_out()))
                }
            }
        };
        self.done = true;
        outcome
    }

    /// What the plan read; complete once [`next`](Self::next) returned `None`.
    pub fn stats(&self) -> ExecutionStats {
        self.stats
    }

    /// A handle that cancels the query from elsewhere (Flight SQL's `CancelQuery`).
    pub fn cancel_handle(&self) -> CancelHandle {
        CancelHandle {
            cancelled: self.cancelled.clone(),
            task: self.task.abort_handle(),
        }
    }

    /// The rows as a `Stream`, ending after the first error.
    pub fn into_stream(self) -> impl futures::Stream<Item = Result<RecordBatch, ApiError>> {
        futures::stream::unfold(self, |mut rows| async move {
            let next = rows.next().await?;
            Some((next, rows))
        })
    }
}

/// Plans and runs read-only SQL over a live lake within the server's limits.
pub struct QueryExecutor {
    live: Arc<LiveLake>,
    recommendations: OnceLock<Arc<RecommendationIndex>>,
    runtime: QueryRuntime,
    slots: Arc<Semaphore>,
    max_concurrent_queries: usize,
    timeout: Duration,
    limits: StatementLimits,
    distributed: DistributedMetrics,
}

impl std::fmt::Debug for QueryExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryExecutor")
            .field("max_concurrent_queries", &self.max_concurrent_queries)
            .field("timeout", &self.timeout)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// The far end of a timeout that does not overflow the clock.
fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(10 * 365 * 86_400))
}

impl QueryExecutor {
    /// An executor over `live` with the concurrency limit, timeout and statement limits
    /// of `config`, running its work on a runtime of its own (one thread per core).
    pub fn new(live: Arc<LiveLake>, config: &ServerConfig) -> std::io::Result<QueryExecutor> {
        Ok(QueryExecutor {
            live,
            recommendations: OnceLock::new(),
            runtime: QueryRuntime::per_core()?,
            slots: Arc::new(Semaphore::new(config.max_concurrent_queries)),
            max_concurrent_queries: config.max_concurrent_queries,
            timeout: config.query_timeout,
            limits: config.statement_limits,
            distributed: DistributedMetrics::default(),
        })
    }

    /// Outcomes of queries that ran on workers.
    pub(crate) fn distributed_metrics(&self) -> &DistributedMetrics {
        &self.distributed
    }

    /// Makes `user_recommendations('user')` answer from `index` (the first index set
    /// stays).
    pub fn set_recommendations(&self, index: Arc<RecommendationIndex>) {
        if self.recommendations.set(index).is_err() {
            tracing::debug!("recommendation index already set; keeping the first");
        }
    }

    /// The recommendation index, when lookups are on.
    pub fn recommendations(&self) -> Option<&Arc<RecommendationIndex>> {
        self.recommendations.get()
    }

    /// The live lake queries read.
    pub fn live(&self) -> &Arc<LiveLake> {
        &self.live
    }

    /// The server's query timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Takes a slot of the concurrency limit (or answers 429 at once) and starts the
    /// clock: `timeout` if the client asked for less than the server's.
    pub fn admit(&self, timeout: Option<Duration>) -> Result<Admission, ApiError> {
        let slot = self.slots.clone().try_acquire_owned().map_err(|_| {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_queries",
                format!(
                    "{} queries are already running; retry shortly",
                    self.max_concurrent_queries
                ),
            )
        })?;
        let timeout = timeout.map_or(self.timeout, |t| t.min(self.timeout));
        Ok(Admission {
            slot: Arc::new(slot),
            clock: Clock {
                deadline: deadline_after(timeout),
                timeout,
            },
        })
    }

    /// Plans `sql` (with `?` numbered as `$1, $2, …`) over the lake's newest versions,
    /// refuses anything but a read, and binds `parameters` — on the query runtime,
    /// under the admission's deadline.
    pub async fn plan(
        &self,
        admission: &Admission,
        sql: &str,
        parameters: Parameters,
    ) -> Result<PlannedQuery, ApiError> {
        if sql.trim().is_empty() {
            return Err(ApiError::bad_request("empty SQL"));
        }
        self.limits.check_size(sql).map_err(ApiError::from_limit)?;
        let live = self.live.clone();
        let recommendations = self.recommendations.get().cloned();
        let limits = self.limits;
        let sql = sql.to_string();
        let slot = admission.slot.clone();
        let task = self.runtime.spawn(async move {
            let _slot = slot;
            plan_statement(&live, recommendations, limits, &sql, parameters).await
        });
        match tokio::time::timeout_at(admission.deadline(), task).await {
            Err(_) => Err(admission.timed_out()),
            Ok(Err(join)) => Err(task_failed(join)),
            Ok(Ok(planned)) => planned,
        }
    }

    /// Runs a planned query. The first answer comes once the plan started (or failed);
    /// rows then stream until the end or the admission's deadline.
    pub async fn execute(
        &self,
        admission: Admission,
        planned: PlannedQuery,
    ) -> Result<ResultStream, ApiError> {
        let (tx, mut rx) = mpsc::channel(RESULT_BUFFER_BATCHES);
        let Admission { slot, clock } = admission;
        let deadline = clock.deadline;
        let timed_out = clock.timed_out();
        let distributed = self.distributed.clone();
        let workers = self.live.factory().workers().map(|w| w.pool.clone());
        let task = self.runtime.spawn(async move {
            let lost = WorkerLoss {
                metrics: &distributed,
                workers: workers.as_deref(),
            };
            let run = tokio::time::timeout_at(deadline, produce(planned, &tx, lost)).await;
            // The plan is gone: its slot is free before its last word is said, so a
            // client that reads the end of an answer finds the slot free.
            drop(slot);
            let last = match run {
                Ok(Ok(Some(stats))) => Item::Finished(stats),
                Ok(Ok(None)) => return, // the consumer went away
                Ok(Err(e)) => Item::Failed(e),
                Err(_) => {
                    // Past the deadline: a word if there is room; a stalled consumer
                    // learns from the channel closing instead.
                    let _ = tx.try_send(Item::Failed(timed_out));
                    return;
                }
            };
            // The last word waits for the consumer, until the deadline.
            let _ = tokio::time::timeout_at(deadline, tx.send(last)).await;
        });
        let first = tokio::time::timeout_at(deadline + DEADLINE_GRACE, rx.recv()).await;
        match first {
            Ok(Some(Item::Started {
                schema,
                files_scanned,
            })) => Ok(ResultStream {
                schema,
                rx,
                clock,
                stats: ExecutionStats {
                    files_scanned,
                    bytes_scanned: 0,
                },
                done: false,
                cancelled: Arc::new(AtomicBool::new(false)),
                task,
            }),
            Ok(Some(Item::Failed(e))) => Err(e),
            Ok(Some(_)) => Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the query answered before it started",
            )),
            // The producer ended without a word: it failed (a bug), or the deadline.
            Ok(None) => match task.await {
                Err(join) if join.is_panic() => Err(task_failed(join)),
                _ => Err(clock.timed_out()),
            },
            Err(_) => Err(clock.timed_out()),
        }
    }

    /// Plans and runs `sql` to the end, collecting its rows (for small results and
    /// tests).
    pub async fn collect(
        &self,
        sql: &str,
        parameters: Parameters,
    ) -> Result<(SchemaRef, Vec<RecordBatch>), ApiError> {
        let admission = self.admit(None)?;
        let planned = self.plan(&admission, sql, parameters).await?;
        let mut rows = self.execute(admission, planned).await?;
        let mut batches = Vec::new();
        while let Some(batch) = rows.next().await {
            batches.push(batch?);
        }
        Ok((rows.schema.clone(), batches))
    }
}

fn task_failed(join: tokio::task::JoinError) -> ApiError {
    if !join.is_panic() {
        return ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the query was cancelled",
        );
    }
    let panic = join.into_panic();
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(panic = %what, "a query panicked");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        format!("the query failed unexpectedly (a bug; the server keeps running): {what}"),
    )
}

/// Physical planning and the row pump; `None` if the consumer went away.
///
/// A plan that runs on workers and fails for want of a worker before its first row is
/// planned again on this server, once: the client never sees the lost worker. Once
/// rows were sent, the loss is a `503 worker_lost` (retrying the query is safe).
async fn produce(
    planned: PlannedQuery,
    tx: &mpsc::Sender<Item>,
    lost: WorkerLoss<'_>,
) -> Result<Option<ExecutionStats>, ApiError> {
    let PlannedQuery {
        ctx,
        plan,
        optimized,
        ..
    } = planned;
    let state = ctx.state();
    let optimized = match optimized {
        Some(optimized) => optimized,
        None => state.optimize(&plan).map_err(from_datafusion)?,
    };
    drop(plan);
    let mut physical: Arc<dyn ExecutionPlan> = state
        .query_planner()
        .create_physical_plan(&optimized, &state)
        .await
        .map_err(from_datafusion)?;
    let mut stream = execute_stream(physical.clone(), ctx.task_ctx()).map_err(from_datafusion)?;
    let on_workers = distributed::is_distributed(physical.as_ref());
    let mut first = None;
    if on_workers {
        let next = tokio::select! {
            biased;
            _ = tx.closed() => return Ok(None),
            next = stream.next() => next,
        };
        match next {
            Some(Err(e)) if distributed::is_worker_failure(&e) => {
                tracing::warn!(error = %e, "a query worker failed before the first row; \
                    running the query on the server instead");
                lost.observe("retried_locally").await;
                physical = DefaultPhysicalPlanner::default()
                    .create_physical_plan(&optimized, &state)
                    .await
                    .map_err(from_datafusion)?;
                stream =
                    execute_stream(physical.clone(), ctx.task_ctx()).map_err(from_datafusion)?;
            }
            next => first = Some(next),
        }
    }
    drop(optimized);
    let files_scanned = plan_info::files_scanned(physical.as_ref());
    let started = Item::Started {
        schema: stream.schema(),
        files_scanned,
    };
    if tx.send(started).await.is_err() {
        return Ok(None);
    }
    loop {
        let next = match first.take() {
            Some(next) => next,
            None => tokio::select! {
                biased;
                _ = tx.closed() => return Ok(None),
                next = stream.next() => next,
            },
        };
        match next {
            None => break,
            Some(Err(e)) if on_workers && distributed::is_worker_failure(&e) => {
                tracing::warn!(error = %e, "a query worker was lost mid-query");
                lost.observe("worker_lost").await;
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "worker_lost",
                    format!("a query worker was lost mid-query; retry the query ({e})"),
                ));
            }
            Some(Err(e)) => return Err(from_datafusion(e)),
            Some(Ok(batch)) => {
                if tx.send(Item::Batch(batch)).await.is_err() {
                    return Ok(None);
                }
            }
        }
    }
    if on_workers && distributed::is_distributed(physical.as_ref()) {
        lost.metrics.observe("ok");
    }
    Ok(Some(ExecutionStats {
        files_scanned,
        bytes_scanned: plan_info::bytes_scanned(physical.as_ref()),
    }))
}

/// What a query does when it loses a worker: counts the outcome, and checks the workers
/// at once, so the next query is not planned onto the lost one (the periodic check may
/// be a second away).
#[derive(Clone, Copy)]
struct WorkerLoss<'a> {
    metrics: &'a DistributedMetrics,
    workers: Option<&'a WorkerPool>,
}

impl WorkerLoss<'_> {
    async fn observe(self, outcome: &'static str) {
        self.metrics.observe(outcome);
        if let Some(pool) = self.workers {
            pool.check_now().await;
        }
    }
}

/// Parse (within the limits), plan, guard and bind: the part of a query before rows.
async fn plan_statement(
    live: &LiveLake,
    recommendations: Option<Arc<RecommendationIndex>>,
    limits: StatementLimits,
    sql: &str,
    parameters: Parameters,
) -> Result<PlannedQuery, ApiError> {
    let values = match &parameters {
        Parameters::None => None,
        Parameters::Json(json) => Some(params::from_json(json)?),
        Parameters::Values(values) => Some(values.clone()),
    };
    let numbered = placeholders::number_question_marks(sql)?;
    let mut statement = limits.parse(&numbered, &GenericDialect {})?;
    // Table functions take their arguments at planning time: bind them in the text.
    let bound_in_text = match &values {
        Some(values) => params::bind_table_function_args(&mut statement, values)?,
        None => Default::default(),
    };
    let (ctx, snapshot) = live.session().await?;
    let reads_index = match &recommendations {
        Some(index) => {
            ctx.register_udtf(
                "user_recommendations",
                Arc::new(UserRecommendationsFunction(index.clone())),
            );
            Some(index.version())
        }
        None => None,
    };
    let plan = ctx
        .state()
        .statement_to_plan(statement)
        .await
        .map_err(from_datafusion)?;
    guard::ensure_read_only(&plan)?;
    limits.check_plan(&plan).map_err(ApiError::from_limit)?;
    let plan = match values {
        Some(values) => params::bind(plan, values, &bound_in_text)?,
        None => plan,
    };
    let parameters_left = plan.get_parameter_types().map_err(from_datafusion)?;
    // Constants as the optimizer folds them (`repeat('x', 10000000)` becomes one value
    // copied into every row): bounded before anything runs. Unbound placeholders stay
    // unfolded until the statement runs with values.
    let optimized = if parameters_left.is_empty() {
        let optimized = ctx.state().optimize(&plan).map_err(from_datafusion)?;
        limits
            .check_constants(&optimized)
            .map_err(ApiError::from_limit)?;
        Some(optimized)
    } else {
        None
    };
    // An EXPLAIN shows where the plan runs now (which workers are up): not cached.
    let explains = matches!(plan, LogicalPlan::Explain(_) | LogicalPlan::Analyze(_));
    let cache_key = if explains || plan_info::is_time_or_randomness_dependent(&plan) {
        None
    } else if let Some(optimized) = &optimized {
        let versions = snapshot.versions();
        let mut digest = Sha256::new();
        digest.update(sql.as_bytes());
        digest.update([0]);
        if let Parameters::Json(p) = &parameters {
            digest.update(p.to_string().as_bytes());
        } else if let Parameters::Values(v) = &parameters {
            digest.update(format!("{v:?}").as_bytes());
        }
        let read = plan_info::tables_read(optimized);
        for table in &read {
            let version = versions.get(table.as_str()).copied();
            digest.update(format!("\0{table}@{version:?}").as_bytes());
        }
        // The catalog's own tables describe every table: any new table or version is
        // a new answer.
        if read.iter().any(|t| t.contains("information_schema")) {
            for (table, version) in &versions {
                digest.update(format!("\0catalog:{table}@{version}").as_bytes());
            }
        }
        // The lookup function reads the index, not a table: its version joins the key.
        if let Some(version) = reads_index {
            if sql.to_ascii_lowercase().contains("user_recommendations") {
                digest.update(format!("\0index@{version:?}").as_bytes());
            }
        }
        Some(hex::encode(&digest.finalize()[..16]))
    } else {
        // Placeholders left unbound: described, not run, so never cached.
        None
    };
    let schema = Arc::new(plan.schema().as_arrow().clone());
    let columns = plan
        .schema()
        .iter()
        .map(|(qualifier, field)| (qualifier.map(|q| q.to_string()), field.name().clone()))
        .collect();
    Ok(PlannedQuery {
        ctx,
        plan,
        optimized,
        schema,
        columns,
        parameters: parameters_left,
        cache_key,
    })
}
