//! The HTTP API (axum): `POST /v1/sql`, `GET /v1/sql`, `GET /health`, `GET /metrics`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hourlake_sql::LiveLake;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use tokio::sync::Semaphore;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::auth::Tokens;
use crate::cache::{CachedResult, ResultCache};
use crate::error::ApiError;
use crate::format::{encode, ChunkEncoder, Format};
use crate::lookup::RecommendationIndex;
use crate::metrics::QueryMetrics;
use crate::query::{execute, plan, Outcome, SqlRequest, Streaming};
use crate::ServerConfig;

struct AppState {
    live: Arc<LiveLake>,
    recommendations: std::sync::OnceLock<Arc<RecommendationIndex>>,
    config: ServerConfig,
    tokens: Tokens,
    slots: Arc<Semaphore>,
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
    /// A server over `live`; `registry` may already hold other metrics (ingest,
    /// compactor) that `/metrics` then shows too.
    pub fn new(live: Arc<LiveLake>, config: ServerConfig, mut registry: Registry) -> QueryServer {
        let metrics = QueryMetrics::default();
        metrics.register(&mut registry);
        QueryServer {
            state: Arc::new(AppState {
                live,
                recommendations: std::sync::OnceLock::new(),
                tokens: Tokens::new(&config.tokens),
                slots: Arc::new(Semaphore::new(config.max_concurrent_queries)),
                cache: ResultCache::new(config.cache_bytes),
                metrics,
                registry,
                draining: AtomicBool::new(false),
                config,
            }),
        }
    }

    /// Serves recommendation lookups from `index` (`GET /v1/users/{user_id}/recommendations`
    /// and the SQL table function `user_recommendations`).
    pub fn with_recommendations(self, index: Arc<RecommendationIndex>) -> QueryServer {
        if self.state.recommendations.set(index).is_err() {
            tracing::warn!("recommendation index already set; keeping the first");
        }
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
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .layer(DefaultBodyLimit::max(state.config.max_request_bytes))
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
    /// running ones finish.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let draining = QueryServer {
            state: self.state.clone(),
        };
        let router = self.router();
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                shutdown.await;
                draining.drain();
            })
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
    axum::extract::Path(user_id): axum::extract::Path<String>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let started = Instant::now();
    let response = (|| {
        let Some(index) = state.recommendations.get() else {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "lookups_off",
                "recommendation lookups are not enabled on this server",
            ));
        };
        let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
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
        Ok(axum::Json(serde_json::json!({
            "user_id": user_id,
            "recommendations": found,
            "table_version": version,
        }))
        .into_response())
    })()
    .unwrap_or_else(IntoResponse::into_response);
    state
        .metrics
        .observe_lookup(response.status().as_u16(), started.elapsed().as_secs_f64());
    response
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
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let started = Instant::now();
    let request = query
        .map_err(|e| ApiError::bad_request(e.body_text()))
        .and_then(|Query(q)| {
            let sql = q
                .get("sql")
                .cloned()
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
                format: Format::parse(q.get("format").map(String::as_str))?,
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

/// Streams a big result: the rows already read, then the rest as the plan produces them.
/// The status is sent first, so a failure later (timeout, too many rows, an execution
/// error) ends the body early; the client sees a truncated transfer, never a silent
/// partial success (the Arrow stream then lacks its end marker, CSV/NDJSON its last line).
fn stream_response(
    format: Format,
    streaming: Streaming,
    max_rows: usize,
    slot: tokio::sync::OwnedSemaphorePermit,
) -> Response {
    use futures::StreamExt;
    let Streaming {
        schema,
        head,
        mut rest,
        deadline,
        mut rows,
    } = streaming;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        // The query holds its concurrency slot until the last row is sent.
        let _slot = slot;
        let fail = |message: String| Err(std::io::Error::other(message));
        let mut encoder = ChunkEncoder::new(format, schema);
        for batch in &head {
            match encoder.batch(batch) {
                Ok(bytes) => {
                    if tx.send(Ok(Bytes::from(bytes))).await.is_err() {
                        return; // the client went away: dropping `rest` cancels the plan
                    }
                }
                Err(e) => {
                    let _ = tx.send(fail(e.message)).await;
                    return;
                }
            }
        }
        drop(head);
        loop {
            let next = match tokio::time::timeout_at(deadline, rest.next()).await {
                Ok(next) => next,
                Err(_) => {
                    let _ = tx
                        .send(fail("query timed out while streaming".into()))
                        .await;
                    return;
                }
            };
            let Some(batch) = next else {
                break;
            };
            let chunk = batch.map_err(|e| e.to_string()).and_then(|b| {
                rows += b.num_rows();
                if rows > max_rows {
                    Err(format!("the result has more than {max_rows} rows"))
                } else {
                    encoder.batch(&b).map_err(|e| e.message)
                }
            });
            match chunk {
                Ok(bytes) => {
                    if tx.send(Ok(Bytes::from(bytes))).await.is_err() {
                        return;
                    }
                }
                Err(message) => {
                    tracing::warn!(%message, "streamed query failed");
                    let _ = tx.send(fail(message)).await;
                    return;
                }
            }
        }
        match encoder.finish() {
            Ok(bytes) if !bytes.is_empty() => {
                let _ = tx.send(Ok(Bytes::from(bytes))).await;
            }
            Ok(_) => {}
            Err(e) => {
                let _ = tx.send(fail(e.message)).await;
            }
        }
    });
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
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

fn cached_response(etag: &str, result: &CachedResult) -> Response {
    let mut response = (
        [
            (header::CONTENT_TYPE, result.content_type.to_string()),
            (header::ETAG, etag.to_string()),
            (header::CACHE_CONTROL, "no-cache".to_string()),
        ],
        result.body.clone(),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&result.rows.to_string()) {
        response.headers_mut().insert("x-rows", v);
    }
    response
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
    let slot = state.slots.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_queries",
            format!(
                "{} queries are already running; retry shortly",
                state.config.max_concurrent_queries
            ),
        )
    })?;
    let planned = plan(&state.live, &request, state.recommendations.get()).await?;
    let etag = planned.etag.clone();
    if etag_matches(headers, &etag) {
        state.metrics.not_modified.inc();
        return Ok((
            StatusCode::NOT_MODIFIED,
            [
                (header::ETAG, etag),
                (header::CACHE_CONTROL, "no-cache".into()),
            ],
        )
            .into_response());
    }
    if let Some(hit) = state.cache.get(&etag) {
        state.metrics.cache_hits.inc();
        return Ok(cached_response(&etag, &hit));
    }
    let timeout = request.timeout.map_or(state.config.query_timeout, |t| {
        t.min(state.config.query_timeout)
    });
    // Whole JSON documents stay in memory (bounded by the limits); other formats
    // stream once a result grows past the cacheable size.
    let stream_after = (request.format != Format::Json).then_some(STREAM_AFTER_BYTES);
    let executed = match execute(
        planned,
        timeout,
        state.config.max_result_rows,
        stream_after,
        started,
    )
    .await?
    {
        Outcome::Complete(executed) => executed,
        Outcome::Streaming(streaming) => {
            return Ok(stream_response(
                request.format,
                streaming,
                state.config.max_result_rows,
                slot,
            ));
        }
    };
    let body = encode(
        request.format,
        &executed.schema,
        &executed.batches,
        &executed.stats,
    )?;
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
        rows: executed.stats.rows,
    };
    let mut response = cached_response(&etag, &result);
    let h = response.headers_mut();
    for (name, value) in [
        ("x-files-scanned", executed.stats.files_scanned.to_string()),
        ("x-bytes-scanned", executed.stats.bytes_scanned.to_string()),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    state.cache.insert(etag, result);
    drop(slot);
    Ok(response)
}
