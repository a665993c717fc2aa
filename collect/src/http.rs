//! The collector's HTTP endpoint: `POST /v1/events` (a batch in, one answer once Kafka
//! holds every accepted event), `GET /v1/accepted`, `/health`, `/metrics`.

use std::error::Error as StdError;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hourlake_catalog::EventKind;
use hourlake_net::Tokens;
use prometheus_client::registry::Registry;
use serde_json::json;
use tokio::net::TcpListener;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutError};

use crate::batch::{self, CheckedBatch};
use crate::body::{self, BodyError, Encoding};
use crate::minutes::AcceptedPerMinute;
use crate::producer::{EventProducer, ProduceError};
use crate::{CollectError, CollectorConfig, CollectorMetrics};

/// The event collector: checks batches against the event contract and acknowledges
/// them only once Kafka has acknowledged every accepted event.
#[derive(Clone)]
pub struct Collector {
    shared: Arc<Shared>,
}

struct Shared {
    config: CollectorConfig,
    tokens: Tokens,
    producer: EventProducer,
    metrics: CollectorMetrics,
    registry: Registry,
    minutes: Mutex<AcceptedPerMinute>,
}

impl Collector {
    /// A collector for `config` (the producer connects on first use).
    pub fn new(config: CollectorConfig) -> Result<Collector, CollectError> {
        config.validate()?;
        let metrics = CollectorMetrics::default();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        Ok(Collector {
            shared: Arc::new(Shared {
                tokens: Tokens::new(&config.tokens)?,
                producer: EventProducer::new(&config)?,
                minutes: Mutex::new(AcceptedPerMinute::new(config.minutes_kept)),
                metrics,
                registry,
                config,
            }),
        })
    }

    /// The collector's metrics (to register them elsewhere too, e.g. in `hourlake up`).
    pub fn metrics(&self) -> &CollectorMetrics {
        &self.shared.metrics
    }

    /// The routes, with the body timeout and limits applied.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/v1/events", post(post_events))
            .route("/v1/accepted", get(accepted))
            .route("/health", get(|| async { "ok\n" }))
            .route("/metrics", get(metrics))
            .fallback(|| async {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    "no such endpoint; events go to POST /v1/events",
                )
                .into_response()
            })
            .layer(RequestBodyTimeoutLayer::new(
                self.shared.config.client_timeout,
            ))
            .with_state(self.shared.clone())
    }

    /// Serves on `listener` until `shutdown`, then lets open requests finish and waits
    /// for queued events to be acknowledged.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), CollectError> {
        let served = hourlake_net::serve(
            listener,
            self.router(),
            self.shared.config.client_timeout,
            shutdown,
        )
        .await;
        self.shared
            .producer
            .flush(self.shared.config.produce_timeout);
        Ok(served?)
    }
}

/// An error answer: `{"error": {"code", "message"}}`, as the query server's.
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u32>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    fn retry_after(mut self, seconds: u32) -> ApiError {
        self.retry_after = Some(seconds);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        let mut response = (self.status, Json(body)).into_response();
        if let Some(s) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<BodyError> for ApiError {
    fn from(e: BodyError) -> ApiError {
        let (status, code) = match e {
            BodyError::TooLarge { .. } | BodyError::TooManyEvents { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "too_large")
            }
            BodyError::UnsupportedEncoding(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_encoding")
            }
            BodyError::BadGzip(_) | BodyError::BadArray(_) | BodyError::Empty => {
                (StatusCode::BAD_REQUEST, "unreadable_body")
            }
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<ProduceError> for ApiError {
    fn from(e: ProduceError) -> ApiError {
        match e {
            ProduceError::QueueFull(_) => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "queue_full", e.to_string())
                    .retry_after(1)
            }
            ProduceError::Unavailable(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "kafka_unavailable",
                format!("{e}; nothing of this batch is acknowledged: resend it (duplicates are removed by event_id)"),
            )
            .retry_after(5),
        }
    }
}

async fn post_events(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let response = match shared.collect(request).await {
        Ok(answer) => answer.into_response(),
        Err(e) => e.into_response(),
    };
    shared.metrics.answered(response.status().as_u16());
    response
}

/// Whether `e` or anything that caused it is a `T`.
fn caused_by<T: StdError + 'static>(e: &(dyn StdError + 'static)) -> bool {
    let mut current = Some(e);
    while let Some(err) = current {
        if err.is::<T>() {
            return true;
        }
        current = err.source();
    }
    false
}

impl Shared {
    async fn collect(&self, request: Request) -> Result<Json<serde_json::Value>, ApiError> {
        let (parts, body) = request.into_parts();
        let authorization = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if !self.tokens.allows(authorization) {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid bearer token is required (Authorization: Bearer <token>)",
            ));
        }
        let encoding_header = parts.headers.get(header::CONTENT_ENCODING);
        let encoding = match encoding_header.map(|v| v.to_str()) {
            None => Encoding::Identity,
            Some(Ok(v)) => Encoding::from_header(Some(v))?,
            Some(Err(_)) => {
                return Err(BodyError::UnsupportedEncoding("<not text>".into()).into());
            }
        };
        let limit = self.config.max_body_bytes;
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(BodyError::TooLarge {
                limit,
                decompressed: false,
            }
            .into());
        }
        let bytes = read_body(body, limit).await?;
        let decoded = body::decode(&bytes, encoding, limit)?;
        let events = body::events(&decoded, self.config.max_batch_events)?;
        let now = chrono::Utc::now().timestamp_micros();
        let checked = batch::check(&events, &self.config.validation, now);
        self.metrics.batch_events.observe(events.len() as f64);
        for refused in &checked.refused {
            self.metrics
                .rejected
                .get_or_create(&vec![("reason", refused.reason_code)])
                .inc();
        }
        self.produce(&checked).await?;
        Ok(Json(json!({
            "accepted": checked.outgoing.len(),
            "rejected": checked.refused,
        })))
    }

    async fn produce(&self, checked: &CheckedBatch<'_>) -> Result<(), ApiError> {
        if checked.outgoing.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let sent = self.producer.send(&checked.outgoing).await;
        self.metrics.queued.set(self.producer.queued() as i64);
        sent?;
        self.metrics
            .produce_latency
            .observe(started.elapsed().as_secs_f64());
        let (mut engagement, mut recommendation) = (0u64, 0u64);
        let mut minutes = match self.minutes.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        for event in &checked.outgoing {
            match event.kind {
                EventKind::Engagement => engagement += 1,
                EventKind::Recommendation => recommendation += 1,
            }
            minutes.add(event.minute, 1);
        }
        drop(minutes);
        for (family, n) in [
            ("engagement", engagement),
            ("recommendation", recommendation),
        ] {
            if n > 0 {
                self.metrics
                    .accepted
                    .get_or_create(&vec![("family", family)])
                    .inc_by(n);
            }
        }
        Ok(())
    }
}

/// The whole body, at most `limit` bytes: 413 above it, 408 for a client too slow to
/// send it, 400 for a broken one.
async fn read_body(body: Body, limit: usize) -> Result<axum::body::Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        if caused_by::<http_body_util::LengthLimitError>(&e) {
            BodyError::TooLarge {
                limit,
                decompressed: false,
            }
            .into()
        } else if caused_by::<TimeoutError>(&e) {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "client_timeout",
                "the request body was not sent within the client timeout",
            )
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "unreadable_body",
                format!("the request body could not be read: {e}"),
            )
        }
    })
}

async fn accepted(State(shared): State<Arc<Shared>>) -> Response {
    let list = match shared.minutes.lock() {
        Ok(m) => m.list(),
        Err(poisoned) => poisoned.into_inner().list(),
    };
    Json(json!({ "minutes": list })).into_response()
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    shared.metrics.queued.set(shared.producer.queued() as i64);
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &shared.registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "metrics",
            format!("encoding metrics: {e}"),
        )
        .into_response(),
    }
}
