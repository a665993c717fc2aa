//! Running one SQL request: plan, guard, parameters, cache key, execution under limits.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use axum::http::StatusCode;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::{execute_stream, ExecutionPlan, SendableRecordBatchStream};
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use hourlake_sql::{guard, params, placeholders, plan_info, LakeSnapshot, LiveLake};
use sha2::{Digest, Sha256};

use crate::error::{from_datafusion, ApiError};
use crate::format::{Format, Stats};
use crate::lookup::{RecommendationIndex, UserRecommendationsFunction};

/// A SQL request as the API receives it.
#[derive(Debug, Clone)]
pub struct SqlRequest {
    /// The statement.
    pub sql: String,
    /// `$1` (list) or `$name` (object) parameters.
    pub params: Option<serde_json::Value>,
    /// The result format.
    pub format: Format,
    /// The client's timeout, if shorter than the server's.
    pub timeout: Option<Duration>,
}

/// A planned request: what it reads, at which versions, and its cache key.
pub struct Planned {
    ctx: SessionContext,
    plan: LogicalPlan,
    /// The ETag: a digest of the SQL, parameters, format and the version of every table
    /// the plan reads. The same ETag means the same answer.
    pub etag: String,
}

/// A read statement planned over a pinned snapshot of the lake, parameters not yet bound.
pub struct Statement {
    /// The session holding the snapshot's tables.
    pub ctx: SessionContext,
    /// The logical plan, possibly with placeholders.
    pub plan: LogicalPlan,
    /// The table versions the plan reads.
    pub snapshot: LakeSnapshot,
}

/// Plans `sql` (with `?` placeholders numbered as `$1, $2, ...`) over the lake's newest
/// versions and refuses anything but a read. Used by every server path (HTTP, Flight
/// SQL, the REPL) so the same statements are allowed everywhere.
pub async fn prepare(
    live: &LiveLake,
    sql: &str,
    recommendations: Option<&Arc<RecommendationIndex>>,
) -> Result<Statement, ApiError> {
    if sql.trim().is_empty() {
        return Err(ApiError::bad_request("empty SQL"));
    }
    let (ctx, snapshot) = live.session().await?;
    if let Some(index) = recommendations {
        ctx.register_udtf(
            "user_recommendations",
            Arc::new(UserRecommendationsFunction(index.clone())),
        );
    }
    let plan = ctx
        .state()
        .create_logical_plan(&placeholders::number_question_marks(sql))
        .await
        .map_err(from_datafusion)?;
    guard::ensure_read_only(&plan)?;
    Ok(Statement {
        ctx,
        plan,
        snapshot,
    })
}

/// Plans `request` over the lake's newest versions and refuses anything but a read.
pub async fn plan(
    live: &LiveLake,
    request: &SqlRequest,
    recommendations: Option<&Arc<RecommendationIndex>>,
) -> Result<Planned, ApiError> {
    let Statement {
        ctx,
        mut plan,
        snapshot,
    } = prepare(live, &request.sql, recommendations).await?;
    if let Some(values) = &request.params {
        plan = params::bind(plan, params::from_json(values)?)?;
    }
    let state = ctx.state();
    let optimized = state.optimize(&plan).map_err(from_datafusion)?;
    let tables: Vec<String> = plan_info::tables_read(&optimized).into_iter().collect();
    let versions = snapshot.versions();
    let mut digest = Sha256::new();
    digest.update(request.sql.as_bytes());
    digest.update([0]);
    if let Some(p) = &request.params {
        digest.update(p.to_string().as_bytes());
    }
    digest.update([0]);
    digest.update(request.format.name().as_bytes());
    for t in &tables {
        let version = versions.get(t.as_str()).copied();
        digest.update(format!("\0{t}@{version:?}").as_bytes());
    }
    // The lookup function reads the index, not a table: its version joins the key.
    if let Some(index) = recommendations {
        if request
            .sql
            .to_ascii_lowercase()
            .contains("user_recommendations")
        {
            digest.update(format!("\0index@{:?}", index.version()).as_bytes());
        }
    }
    let etag = format!("\"{}\"", hex::encode(&digest.finalize()[..16]));
    Ok(Planned { ctx, plan, etag })
}

/// A finished query.
pub struct Executed {
    /// The result schema.
    pub schema: SchemaRef,
    /// The rows.
    pub batches: Vec<RecordBatch>,
    /// What it cost.
    pub stats: Stats,
}

/// A result too big to hold: the rows read so far and the rest of the running plan.
pub struct Streaming {
    /// The result schema.
    pub schema: SchemaRef,
    /// The rows read before streaming began.
    pub head: Vec<RecordBatch>,
    /// The rest of the rows, cancelled at the deadline.
    pub rest: SendableRecordBatchStream,
    /// When the query must be done.
    pub deadline: tokio::time::Instant,
    /// Rows in `head`.
    pub rows: usize,
}

/// How a query ended: whole in memory, or streaming because it grew big.
pub enum Outcome {
    /// Every row is here.
    Complete(Executed),
    /// Bigger than the streaming threshold: send what is here, then the rest.
    Streaming(Streaming),
}

fn timed_out(timeout: Duration) -> ApiError {
    ApiError::new(
        StatusCode::GATEWAY_TIMEOUT,
        "timeout",
        format!(
            "the query ran longer than {} ms and was cancelled",
            timeout.as_millis()
        ),
    )
}

/// Runs a planned query, cancelling it at `timeout`. Results over `max_rows` are
/// refused, unless they grew past `stream_after_bytes` first (when given): then the
/// caller streams them.
pub async fn execute(
    planned: Planned,
    timeout: Duration,
    max_rows: usize,
    stream_after_bytes: Option<usize>,
    started: Instant,
) -> Result<Outcome, ApiError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let state = planned.ctx.state();
    let physical: Arc<dyn ExecutionPlan> = state
        .create_physical_plan(&planned.plan)
        .await
        .map_err(from_datafusion)?;
    let files_scanned = plan_info::files_scanned(physical.as_ref());
    let schema = physical.schema();
    let mut stream =
        execute_stream(physical.clone(), planned.ctx.task_ctx()).map_err(from_datafusion)?;
    let mut batches = Vec::new();
    let mut rows = 0;
    let mut bytes = 0;
    loop {
        // Dropping the stream on timeout cancels every operator of the plan.
        let next = tokio::time::timeout_at(deadline, stream.next())
            .await
            .map_err(|_| timed_out(timeout))?;
        let Some(batch) = next else {
            break;
        };
        let batch = batch.map_err(from_datafusion)?;
        rows += batch.num_rows();
        bytes += batch.get_array_memory_size();
        batches.push(batch);
        if stream_after_bytes.is_some_and(|limit| bytes > limit) {
            return Ok(Outcome::Streaming(Streaming {
                schema,
                head: batches,
                rest: stream,
                deadline,
                rows,
            }));
        }
        if rows > max_rows {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "result_too_large",
                format!("the result has more than {max_rows} rows; add a LIMIT or aggregate"),
            ));
        }
    }
    Ok(Outcome::Complete(Executed {
        schema,
        batches,
        stats: Stats {
            rows,
            elapsed_ms: started.elapsed().as_millis() as u64,
            bytes_scanned: plan_info::bytes_scanned(physical.as_ref()),
            files_scanned,
        },
    }))
}
