//! Arrow Flight SQL: BI tools (the Flight SQL JDBC driver, ADBC, flightsql-dbapi) query
//! the lake over gRPC through the same executor, read-only guard, parameters and limits
//! as the HTTP API. Results stream in bounded messages in plain Arrow types.
//!
//! - this module: [`FlightSqlServer`] — running statements through the executor;
//! - `service`: the Flight SQL protocol (`FlightSqlService`): statements, prepared
//!   statements, catalog metadata, actions;
//! - `prepared`: prepared statements, bounded in count and bytes;
//! - `responses`: FlightInfo and stream builders, handles, fixed schemas;
//! - `commands`: every command decoded before dispatch (malformed → INVALID_ARGUMENT);
//! - `auth`: Basic handshake to bearer token, and the bearer check in front of it all;
//! - `metadata`: catalogs, tables, SqlInfo, XdbcTypeInfo, plain Arrow types.

mod auth;
mod commands;
pub(crate) mod metadata;
mod prepared;
mod responses;
mod service;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use arrow::datatypes::SchemaRef;
use arrow_flight::encode::{DictionaryHandling, FlightDataEncoderBuilder};
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use datafusion::common::ParamValues;
use futures::TryStreamExt;
use prometheus_client::registry::Registry;
use prost::bytes::Bytes;
use tonic::{Response, Status};

use crate::error::ApiError;
use crate::executor::{CancelHandle, Parameters, PlannedQuery, QueryExecutor};
use crate::lookup::RecommendationIndex;
use crate::metrics::FlightMetrics;
use crate::{ConfigError, ServerConfig};
use auth::BearerCheck;
use commands::CheckedCommands;
use hourlake_net::Tokens;
use metadata::{plain_batch, plain_schema};
use prepared::{Prepared, PreparedStatements};

/// Largest Arrow IPC message sent (results are split into messages of about this size).
const MAX_MESSAGE_BYTES: usize = 2 * 1024 * 1024;
/// Largest gRPC message accepted from a client.
const MAX_REQUEST_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// `ActionCancelQueryResult.result` values (the enum is not exported by arrow-flight).
const CANCEL_RESULT_CANCELLED: i32 = 1;
const CANCEL_RESULT_NOT_CANCELLABLE: i32 = 3;
/// The `CloseSession` action of Flight (answered: there is no session state to keep).
const CLOSE_SESSION: &str = "CloseSession";

type DoGetStream = <FlightSqlServer as FlightService>::DoGetStream;

/// The Flight SQL server over a live lake.
pub struct FlightSqlServer {
    executor: Arc<QueryExecutor>,
    config: ServerConfig,
    tokens: Arc<Tokens>,
    prepared: Mutex<PreparedStatements>,
    running: Arc<Mutex<HashMap<Bytes, CancelHandle>>>,
    metrics: FlightMetrics,
}

impl FlightSqlServer {
    /// A server answering through `executor` (shared with the HTTP API when both run,
    /// so both count against one concurrency limit) with the limits and tokens of
    /// `config`; its metrics join `registry` (`hourlake_flight_*`).
    pub fn new(
        executor: Arc<QueryExecutor>,
        config: ServerConfig,
        registry: &mut Registry,
    ) -> Result<Self, ConfigError> {
        let metrics = FlightMetrics::default();
        metrics.register(registry);
        Ok(FlightSqlServer {
            executor,
            tokens: Arc::new(Tokens::new(&config.tokens)?),
            prepared: Mutex::new(PreparedStatements::default()),
            running: Arc::new(Mutex::new(HashMap::new())),
            metrics,
            config,
        })
    }

    /// Makes `user_recommendations('user')` available to Flight SQL queries.
    pub fn with_recommendations(self, index: Arc<RecommendationIndex>) -> Self {
        self.executor.set_recommendations(index);
        self
    }

    /// Serves Flight SQL on `listener` until `shutdown` completes.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), tonic::transport::Error> {
        let tokens = self.tokens.clone();
        let client_timeout = self.config.client_timeout;
        let service = FlightServiceServer::new(CheckedCommands(self))
            .max_decoding_message_size(MAX_REQUEST_MESSAGE_BYTES)
            .max_encoding_message_size(64 * 1024 * 1024);
        tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(client_timeout))
            .http2_keepalive_timeout(Some(client_timeout))
            .add_service(BearerCheck::new(service, tokens))
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                shutdown,
            )
            .await
    }

    fn prepared(&self, handle: &Bytes) -> Result<Prepared, Status> {
        lock(&self.prepared)
            .statements
            .get(handle)
            .cloned()
            .ok_or_else(|| Status::not_found("no such prepared statement (closed or expired)"))
    }

    /// Plans `sql` (within the concurrency limit and the timeout), for its schema and
    /// parameters.
    async fn describe(&self, sql: &str) -> Result<(PlannedQuery, SchemaRef), Status> {
        let admission = self.executor.admit(None).map_err(to_status)?;
        let planned = self
            .executor
            .plan(&admission, sql, Parameters::None)
            .await
            .map_err(to_status)?;
        let schema = plain_schema(&planned.schema);
        Ok((planned, schema))
    }

    /// The result schema of `sql`, as results will be sent.
    async fn result_schema(&self, sql: &str) -> Result<SchemaRef, Status> {
        Ok(self.describe(sql).await?.1)
    }

    /// Runs `sql` and streams its rows, cancellable through `key` (the ticket's handle)
    /// and cut off at the query timeout, also when the client stops reading.
    async fn run(
        &self,
        key: Bytes,
        sql: &str,
        values: Option<ParamValues>,
    ) -> Result<Response<DoGetStream>, Status> {
        let started = async {
            let admission = self.executor.admit(None)?;
            let parameters = values.map_or(Parameters::None, Parameters::Values);
            let planned = self.executor.plan(&admission, sql, parameters).await?;
            self.executor.execute(admission, planned).await
        }
        .await;
        let rows = match started {
            Ok(rows) => rows,
            Err(e) => {
                let status = to_status(e);
                self.metrics.observe(code_name(status.code()));
                return Err(status);
            }
        };
        let schema = plain_schema(&rows.schema);
        lock(&self.running).insert(key.clone(), rows.cancel_handle());
        self.metrics.running.inc();
        let run = Running {
            key,
            registry: self.running.clone(),
            metrics: self.metrics.clone(),
            outcome: "cancelled",
        };
        let out_schema = schema.clone();
        let batches = futures::stream::unfold(Some((rows, run)), move |state| {
            let schema = out_schema.clone();
            async move {
                let (mut rows, mut run) = state?;
                let step = match rows.next().await {
                    None => Ok(None),
                    Some(Err(e)) => Err(to_status(e)),
                    Some(Ok(batch)) => plain_batch(batch, &schema)
                        .map(Some)
                        .map_err(|e| Status::internal(format!("converting a result: {e}"))),
                };
                match step {
                    Ok(Some(batch)) => {
                        run.metrics.rows.inc_by(batch.num_rows() as u64);
                        Some((Ok(batch), Some((rows, run))))
                    }
                    Ok(None) => {
                        run.outcome = "ok";
                        None
                    }
                    Err(status) => {
                        run.outcome = code_name(status.code());
                        Some((Err(FlightError::from(status)), None))
                    }
                }
            }
        });
        let flight = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .with_max_flight_data_size(MAX_MESSAGE_BYTES)
            .with_dictionary_handling(DictionaryHandling::Hydrate)
            .build(batches)
            .map_err(Status::from);
        Ok(Response::new(Box::pin(flight)))
    }
}

/// One running query: deregistered and counted when its stream ends or is dropped (the
/// client went away), which also drops — cancels — the query.
struct Running {
    key: Bytes,
    registry: Arc<Mutex<HashMap<Bytes, CancelHandle>>>,
    metrics: FlightMetrics,
    outcome: &'static str,
}

impl Drop for Running {
    fn drop(&mut self) {
        lock(&self.registry).remove(&self.key);
        self.metrics.running.dec();
        self.metrics.observe(self.outcome);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// An API error as the gRPC status a Flight client understands.
fn to_status(e: ApiError) -> Status {
    let message = format!("{}: {}", e.code, e.message);
    match e.status.as_u16() {
        400 | 422 => Status::invalid_argument(message),
        401 => Status::unauthenticated(message),
        403 => Status::permission_denied(message),
        404 => Status::not_found(message),
        408 | 504 => Status::deadline_exceeded(message),
        499 => Status::cancelled(message),
        413 | 429 => Status::resource_exhausted(message),
        503 => Status::unavailable(message),
        _ => Status::internal(message),
    }
}

fn code_name(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::Ok => "ok",
        tonic::Code::Cancelled => "cancelled",
        tonic::Code::InvalidArgument => "invalid_argument",
        tonic::Code::DeadlineExceeded => "deadline_exceeded",
        tonic::Code::NotFound => "not_found",
        tonic::Code::PermissionDenied => "permission_denied",
        tonic::Code::ResourceExhausted => "resource_exhausted",
        tonic::Code::Unauthenticated => "unauthenticated",
        tonic::Code::Unavailable => "unavailable",
        _ => "internal",
    }
}
