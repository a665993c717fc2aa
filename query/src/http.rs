//! The HTTP API (axum): `POST /v1/sql`, `GET /v1/sql`, `GET /health`, `GET /metrics`.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::{Field, Schema, SchemaRef};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::timeout::RequestBodyTimeoutLayer;

use crate::cache::{CachedResult, ResultCache};
use crate::error::ApiError;
use crate::executor::{Parameters, QueryExecutor, ResultStream};
use crate::format::{unique_column_names, ChunkEncoder, Format, Stats};
use crate::lookup::RecommendationIndex;
use crate::metrics::QueryMetrics;
use crate::query_string::QueryString;
use crate::{ConfigError, ServerConfig};
use hourlake_net::Tokens;

/// A SQL request as the API receives it.
#[derive(Debug, Clone)]
struct SqlRequest {
    sql: String,
    params: Option<serde_json::Value>,
    format: Format,
    timeout: Option<Duration>,
}

struct AppState {
    executor: Arc<QueryExecutor>,
    config: ServerConfig,
    tokens: Tokens,
    cache: ResultCache,
    metrics: QueryMetrics,
    registry: Registry,
    draining: AtomicBool,
}

/// The HTTP query server over a live lake.
pub struct QueryServer {
    state: Arc<AppState>,
}

impl QueryServer {
    /// A server answering through `executor` (which it may share with Flight SQL and
    /// so share its limits); `registry` may already hold other metrics (ingest,
    /// compactor) that `/metrics` then shows too.
    pub fn new(
        executor: Arc<QueryExecutor>,
        config: ServerConfig,
        mut registry: Registry,
    ) -> Result<QueryServer, ConfigError> {
        let metrics = QueryMetrics::default();
        metrics.register(&mut registry);
        executor.distributed_metrics().register(&mut registry);
        Ok(QueryServer {
            state: Arc::new(AppState {
                executor,
                tokens: Tokens::new(&config.tokens)?,
                cache: ResultCache::new(config.cache_bytes),
                metrics,
                registry,
                draining: AtomicBool::new(false),
                config,
            }),
        })
    }

    /// Serves recommendation lookups from `index` (`GET /v1/users/{user_id}/recommendations`
    /// and the SQL table function `user_recommendations`).
    pub fn with_recommendations(self, index: Arc<RecommendationIndex>) -> QueryServer {
        self.state.executor.set_recommendations(index);
        self
    }

    /// The routes, with auth, CORS and the body limit.
    pub fn router(&self) -> Router {
        let state = self.state.clone();
        let mut router = Router::new()
            .route("/v1/sql", get(sql_get).post(sql_post))
            .route("/metrics", get(metrics))
            .route("/v1/users/{user_id}/recommendations", get(recommendations))
            .layer(middleware::from_fn_with_state(state.clone(), authenticate))
            .route("/health", get(health))
            .route("/", get(crate::dashboard::page))
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .layer(DefaultBodyLimit::max(state.config.max_request_bytes))
            // A body sent slower than this is cut off (the headers have their own limit).
            .layer(RequestBodyTimeoutLayer::new(state.config.client_timeout))
            .with_state(state.clone());
        if !state.config.cors_origins.is_empty() {
            let origins = if state.config.cors_origins.iter().any(|o| o == "*") {
                AllowOrigin::any()
            } else {
                AllowOrigin::list(
                    state
                        .config
                        .cors_origins
                        .iter()
                        .filter_map(|o| HeaderValue::from_str(o).ok()),
                )
            };
            router = router.layer(
                CorsLayer::new()
                    .allow_origin(origins)
                    .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
                    .allow_headers([
                        header::AUTHORIZATION,
                        header::CONTENT_TYPE,
                        header::IF_NONE_MATCH,
                    ])
                    .expose_headers([
                        header::ETAG,
                        header::HeaderName::from_static("x-query-id"),
                        header::HeaderName::from_static("x-elapsed-ms"),
                    ]),
            );
        }
        router
    }

    /// From now on new queries (and `/health`) answer 503 `shutting_down`; running ones
    /// finish. `serve` calls it when its shutdown signal fires.
    pub(crate) fn drain(&self) {
        self.state.draining.store(true, Ordering::SeqCst);
    }

    /// Serves on `listener` until `shutdown` completes; new queries then get 503 while
    /// running ones finish. A client that sends its request headers or body too slowly,
    /// or stops reading its answer, is cut off after `client_timeout`.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let draining = QueryServer {
            state: self.state.clone(),
        };
        let router = self.router();
        hourlake_net::serve(
            listener,
            router,
            self.state.config.client_timeout,
            async move {
                shutdown.await;
                draining.drain();
            },
        )
        .await
    }
}

async fn authenticate(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    if request.method() == Method::OPTIONS {
        return next.run(request).await;
    }
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if state.tokens.allows(authorization) {
        next.run(request).await
    } else {
        let mut response = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid `Authorization: Bearer <token>` header is required",
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        response
    }
}

async fn health(State(state): State<Arc<AppState>>) -> Response {
    if state.draining.load(Ordering::SeqCst) {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "shutting down",
        )
        .into_response();
    }
    axum::Json(serde_json::json!({"status": "ok"})).into_response()
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &state.registry) {
        return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "metrics", e.to_string())
            .into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn recommendations(
    State(state): State<Arc<AppState>>,
    user_id: Result<axum::extract::Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Response {
    let started = Instant::now();
    let response = (|| {
        let axum::extract::Path(user_id) = user_id.map_err(|e| {
            ApiError::bad_request(format!(
                "the user id in the path is not valid: {}",
                e.body_text()
            ))
        })?;
        let Some(index) = state.executor.recommendations() else {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "lookups_off",
                "recommendation lookups are not enabled on this server",
            ));
        };
        let q = QueryString::parse(query.as_deref())?;
        let limit = match q.get("limit") {
            None => 10,
            Some(l) => l
                .parse::<usize>()
                .ok()
                .filter(|l| (1..=100).contains(l))
                .ok_or_else(|| ApiError::bad_request("`limit` must be an integer from 1 to 100"))?,
        };
        let Some(version) = index.version() else {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "index_loading",
                "the recommendation index is still loading",
            ));
        };
        let found = index.lookup(&user_id, limit);
        Ok(axum::Json(LookupAnswer {
            recommendations: &found,
            table_version: version,
            user_id: &user_id,
        })
        .into_response())
    })()
    .unwrap_or_else(IntoResponse::into_response);
    state
        .metrics
        .observe_lookup(response.status().as_u16(), started.elapsed().as_secs_f64());
    response
}

/// The body of a recommendation lookup, serialized straight from the answer. (Fields in
/// alphabetical order, as the endpoint has always written them.)
#[derive(serde::Serialize)]
struct LookupAnswer<'a> {
    recommendations: &'a [crate::ServedRecommendations],
    table_version: u64,
    user_id: &'a str,
}

async fn not_found() -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint; try POST /v1/sql",
    )
    .into_response()
}

async fn method_not_allowed() -> Response {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not accept that method",
    )
    .into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlBody {
    sql: String,
    #[serde(default)]
    params: Option<serde_json::Value>,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

async fn sql_post(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let request = match body {
        Err(rejection) => Err(ApiError::new(
            rejection.status(),
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                "request_too_large"
            } else {
                "bad_request"
            },
            rejection.body_text(),
        )),
        Ok(bytes) => serde_json::from_slice::<SqlBody>(&bytes)
            .map_err(|e| {
                ApiError::bad_request(format!(
                    "the body must be JSON {{\"sql\": ..., \"params\": ..., \"format\": ..., \"timeout_ms\": ...}}: {e}"
                ))
            })
            .and_then(|b| {
                Ok(SqlRequest {
                    format: Format::parse(b.format.as_deref())?,
                    sql: b.sql,
                    params: b.params,
                    timeout: b.timeout_ms.map(Duration::from_millis),
                })
            }),
    };
    answer(&state, &headers, request, started).await
}

async fn sql_get(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let started = Instant::now();
    let request = QueryString::parse(query.as_deref()).and_then(|q| {
        let sql = q
            .get("sql")
            .map(str::to_string)
            .ok_or_else(|| ApiError::bad_request("missing query parameter `sql`"))?;
        let params = q
            .get("params")
            .map(|p| {
                serde_json::from_str(p)
                    .map_err(|e| ApiError::bad_request(format!("`params` is not JSON: {e}")))
            })
            .transpose()?;
        let timeout = q
            .get("timeout_ms")
            .map(|t| {
                t.parse::<u64>()
                    .map(Duration::from_millis)
                    .map_err(|_| ApiError::bad_request("`timeout_ms` must be an integer"))
            })
            .transpose()?;
        Ok(SqlRequest {
            sql,
            params,
            format: Format::parse(q.get("format"))?,
            timeout,
        })
    });
    answer(&state, &headers, request, started).await
}

async fn answer(
    state: &AppState,
    headers: &HeaderMap,
    request: Result<SqlRequest, ApiError>,
    started: Instant,
) -> Response {
    let query_id = uuid::Uuid::new_v4().to_string();
    let mut response = match run(state, headers, request, started).await {
        Ok(response) => response,
        Err(e) => {
            if e.status.is_server_error() {
                tracing::warn!(%query_id, error = %e, "query failed");
            }
            e.into_response()
        }
    };
    let elapsed = started.elapsed();
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&query_id) {
        h.insert("x-query-id", v);
    }
    if let Ok(v) = HeaderValue::from_str(&elapsed.as_millis().to_string()) {
        h.insert("x-elapsed-ms", v);
    }
    state
        .metrics
        .observe(response.status().as_u16(), elapsed.as_secs_f64());
    response
}

/// Results bigger than this (in Arrow memory) are streamed, not cached.
const STREAM_AFTER_BYTES: usize = 8 * 1024 * 1024;

/// `batch` under the result's (renamed) schema.
fn renamed(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, ApiError> {
    RecordBatch::try_new(schema.clone(), batch.columns().to_vec()).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("renaming result columns: {e}"),
        )
    })
}

/// Rows of a running query as the answer streams them: the schema renamed to unique
/// column names, the row limit enforced.
struct Answer {
    rows: ResultStream,
    schema: SchemaRef,
    count: usize,
    max_rows: usize,
}

impl Answer {
    fn new(rows: ResultStream, names: &[String], max_rows: usize) -> Answer {
        let fields: Vec<Field> = rows
            .schema
            .fields()
            .iter()
            .zip(names)
            .map(|(f, name)| f.as_ref().clone().with_name(name.as_str()))
            .collect();
        let schema = if fields.len() == rows.schema.fields().len() {
            Arc::new(Schema::new_with_metadata(
                fields,
                rows.schema.metadata().clone(),
            ))
        } else {
            rows.schema.clone()
        };
        Answer {
            rows,
            schema,
            count: 0,
            max_rows,
        }
    }

    async fn next(&mut self) -> Option<Result<RecordBatch, ApiError>> {
        let batch = match self.rows.next().await? {
            Ok(batch) => batch,
            Err(e) => return Some(Err(e)),
        };
        self.count += batch.num_rows();
        if self.count > self.max_rows {
            return Some(Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "result_too_large",
                format!(
                    "the result has more than {} rows; add a LIMIT or aggregate",
                    self.max_rows
                ),
            )));
        }
        Some(renamed(batch, &self.schema))
    }

    fn stats(&self, started: Instant) -> Stats {
        let read = self.rows.stats();
        Stats {
            rows: self.count,
            elapsed_ms: started.elapsed().as_millis() as u64,
            bytes_scanned: read.bytes_scanned,
            files_scanned: read.files_scanned,
        }
    }
}

/// Streams a big result: the rows already read, then the rest as the plan produces
/// them, encoded batch by batch as the client reads. The status is sent first, so a
/// failure later (timeout, too many rows, an execution error) ends the body early; the
/// client sees a truncated transfer, never a silent partial success (the Arrow stream
/// then lacks its end marker, JSON its closing bracket, CSV/NDJSON their last line).
/// The query's deadline covers the whole transfer: a client that stops reading keeps
/// nothing running past it.
fn stream_response(
    format: Format,
    head: Vec<RecordBatch>,
    answer: Answer,
    started: Instant,
) -> Response {
    struct Pump {
        head: std::vec::IntoIter<RecordBatch>,
        answer: Answer,
        encoder: ChunkEncoder,
        finished: bool,
    }
    let encoder = ChunkEncoder::new(format, answer.schema.clone());
    let pump = Pump {
        head: head.into_iter(),
        answer,
        encoder,
        finished: false,
    };
    let body = futures::stream::unfold(pump, move |mut pump| async move {
        if pump.finished {
            return None;
        }
        let batch = match pump.head.next() {
            Some(batch) => Some(Ok(batch)),
            None => pump.answer.next().await,
        };
        let chunk = match batch {
            Some(Ok(batch)) => pump.encoder.batch(&batch),
            Some(Err(e)) => Err(e),
            None => {
                pump.finished = true;
                let stats = pump.answer.stats(started);
                pump.encoder.finish(&stats)
            }
        };
        match chunk {
            Ok(bytes) => Some((Ok::<_, std::io::Error>(Bytes::from(bytes)), pump)),
            Err(e) => {
                tracing::warn!(error = %e, "streamed query failed");
                pump.finished = true;
                Some((Err(std::io::Error::other(e.to_string())), pump))
            }
        }
    });
    (
        [
            (header::CONTENT_TYPE, format.content_type()),
            (header::CACHE_CONTROL, "no-store"),
        ],
        axum::body::Body::from_stream(body),
    )
        .into_response()
}

fn etag_matches(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|candidate| {
            let c = candidate.trim();
            c == "*" || c.trim_start_matches("W/") == etag
        })
}

fn cached_response(etag: Option<&str>, result: &CachedResult) -> Response {
    let mut response = (
        [(header::CONTENT_TYPE, result.content_type.to_string())],
        result.body.clone(),
    )
        .into_response();
    let h = response.headers_mut();
    match etag.and_then(|e| HeaderValue::from_str(e).ok()) {
        Some(etag) => {
            h.insert(header::ETAG, etag);
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        }
        // An answer that depends on the clock or on chance is never reused.
        None => {
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
    }
    if let Ok(v) = HeaderValue::from_str(&result.rows.to_string()) {
        h.insert("x-rows", v);
    }
    response
}

/// The ETag of an answer: its cache key and the format it is encoded in.
fn etag_of(cache_key: &str, format: Format) -> String {
    let mut digest = Sha256::new();
    digest.update(cache_key.as_bytes());
    digest.update([0]);
    digest.update(format.name().as_bytes());
    format!("\"{}\"", hex::encode(&digest.finalize()[..16]))
}

async fn run(
    state: &AppState,
    headers: &HeaderMap,
    request: Result<SqlRequest, ApiError>,
    started: Instant,
) -> Result<Response, ApiError> {
    if state.draining.load(Ordering::SeqCst) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the server is shutting down",
        ));
    }
    let request = request?;
    let executor = &state.executor;
    let admission = executor.admit(request.timeout)?;
    let parameters = request.params.map_or(Parameters::None, Parameters::Json);
    let planned = executor.plan(&admission, &request.sql, parameters).await?;
    let etag = planned
        .cache_key
        .as_deref()
        .map(|key| etag_of(key, request.format));
    if let Some(etag) = &etag {
        if etag_matches(headers, etag) {
            state.metrics.not_modified.inc();
            return Ok((
                StatusCode::NOT_MODIFIED,
                [
                    (header::ETAG, etag.clone()),
                    (header::CACHE_CONTROL, "no-cache".into()),
                ],
            )
                .into_response());
        }
        if let Some(hit) = state.cache.get(etag) {
            state.metrics.cache_hits.inc();
            return Ok(cached_response(Some(etag), &hit));
        }
    }
    let names = unique_column_names(&planned.columns);
    let rows = executor.execute(admission, planned).await?;
    let mut answer = Answer::new(rows, &names, state.config.max_result_rows);
    let mut head = Vec::new();
    let mut bytes = 0;
    while let Some(batch) = answer.next().await {
        let batch = batch?;
        bytes += batch.get_array_memory_size();
        head.push(batch);
        if bytes > STREAM_AFTER_BYTES {
            return Ok(stream_response(request.format, head, answer, started));
        }
    }
    let stats = answer.stats(started);
    let mut encoder = ChunkEncoder::new(request.format, answer.schema.clone());
    let mut body = Vec::new();
    for batch in &head {
        body.extend(encoder.batch(batch)?);
    }
    body.extend(encoder.finish(&stats)?);
    if body.len() > state.config.max_result_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "result_too_large",
            format!(
                "the result is {} bytes, more than the {} allowed; add a LIMIT or aggregate",
                body.len(),
                state.config.max_result_bytes
            ),
        ));
    }
    let result = CachedResult {
        content_type: request.format.content_type(),
        body: Bytes::from(body),
        rows: stats.rows,
    };
    let mut response = cached_response(etag.as_deref(), &result);
    let h = response.headers_mut();
    for (name, value) in [
        ("x-files-scanned", stats.files_scanned.to_string()),
        ("x-bytes-scanned", stats.bytes_scanned.to_string()),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    if let Some(etag) = etag {
        state.cache.insert(etag, result);
    }
    Ok(response)
}

#[cfg(test)]
mod lookup_answer_tests {
    use super::LookupAnswer;
    use crate::{RecommendedItem, ServedRecommendations};

    #[test]
    fn the_lookup_body_is_byte_for_byte_what_a_json_value_made() {
        let found = vec![ServedRecommendations {
            items: vec![
                RecommendedItem {
                    clicked: true,
                    item_id: "i\"1".into(),
                    rank: Some(1),
                    score: Some(0.1 + 0.2),
                },
                RecommendedItem {
                    clicked: false,
                    item_id: "i2".into(),
                    rank: None,
                    score: None,
                },
            ],
            model_version: None,
            request_id: Some("req-1".into()),
            served_at: "2026-01-10T00:01:00.000Z".into(),
            surface: Some("home".into()),
        }];
        // What the endpoint wrote before it serialized its answer directly.
        let before = serde_json::json!({
            "user_id": "user-é",
            "recommendations": found,
            "table_version": 42u64,
        })
        .to_string();
        let now = serde_json::to_string(&LookupAnswer {
            recommendations: &found,
            table_version: 42,
            user_id: "user-é",
        })
        .unwrap();
        assert_eq!(now, before);
    }
}
