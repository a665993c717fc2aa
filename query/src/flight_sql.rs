//! Arrow Flight SQL: BI tools (the Flight SQL JDBC driver, ADBC, flightsql-dbapi) query
//! the lake over gRPC with the same session, read-only guard, parameters and limits as
//! the HTTP API. Results stream in bounded messages in plain Arrow types.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::{DictionaryHandling, FlightDataEncoderBuilder};
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::sql::metadata::{GetCatalogsBuilder, GetDbSchemasBuilder};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionCancelQueryRequest, ActionCancelQueryResult, ActionClosePreparedStatementRequest,
    ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult, Any, Command,
    CommandGetCatalogs, CommandGetCrossReference, CommandGetDbSchemas, CommandGetExportedKeys,
    CommandGetImportedKeys, CommandGetPrimaryKeys, CommandGetSqlInfo, CommandGetTableTypes,
    CommandGetTables, CommandGetXdbcTypeInfo, CommandPreparedStatementQuery,
    CommandPreparedStatementUpdate, CommandStatementQuery, CommandStatementUpdate,
    DoPutPreparedStatementResult, ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse,
    IpcMessage, SchemaAsIpc, Ticket,
};
use datafusion::common::ParamValues;
use futures::{Stream, StreamExt, TryStreamExt};
use hourlake_sql::params;
use prometheus_client::registry::Registry;
use prost::bytes::Bytes;
use prost::Message;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::{credentials, Tokens};
use crate::error::ApiError;
use crate::executor::{CancelHandle, Parameters, PlannedQuery, QueryExecutor};
use crate::flight_auth::{basic_credentials, BearerCheck};
use crate::flight_metadata::{
    append_tables, plain_batch, plain_schema, schemas, SQL_INFO, XDBC_TYPES,
};
use crate::lookup::RecommendationIndex;
use crate::metrics::FlightMetrics;
use crate::{ConfigError, ServerConfig};

/// Largest Arrow IPC message sent (results are split into messages of about this size).
const MAX_MESSAGE_BYTES: usize = 2 * 1024 * 1024;
/// Largest gRPC message accepted from a client.
const MAX_REQUEST_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// Bytes of SQL text all prepared statements together may keep.
const MAX_PREPARED_SQL_BYTES: usize = 64 * 1024 * 1024;
/// `ActionCancelQueryResult.result` values (the enum is not exported by arrow-flight).
const CANCEL_RESULT_CANCELLED: i32 = 1;
const CANCEL_RESULT_NOT_CANCELLABLE: i32 = 3;
/// The `CloseSession` action of Flight (answered: there is no session state to keep).
const CLOSE_SESSION: &str = "CloseSession";

type DoGetStream = <FlightSqlServer as FlightService>::DoGetStream;

/// A statement prepared by a client, with the parameters it last bound.
#[derive(Debug, Clone)]
struct Prepared {
    sql: String,
    params: Option<ParamValues>,
    created: Instant,
}

/// The prepared statements of all clients, bounded in count and in SQL bytes (the
/// oldest are forgotten first; a client then gets NOT_FOUND and prepares again).
#[derive(Debug, Default)]
struct PreparedStatements {
    statements: HashMap<Bytes, Prepared>,
    sql_bytes: usize,
}

impl PreparedStatements {
    fn insert(&mut self, handle: Bytes, prepared: Prepared, max_count: usize) {
        while !self.statements.is_empty()
            && (self.statements.len() >= max_count
                || self.sql_bytes + prepared.sql.len() > MAX_PREPARED_SQL_BYTES)
        {
            let oldest = self
                .statements
                .iter()
                .min_by_key(|(_, p)| p.created)
                .map(|(h, _)| h.clone());
            match oldest {
                Some(oldest) => {
                    self.remove(&oldest);
                }
                None => break,
            }
        }
        self.sql_bytes += prepared.sql.len();
        self.statements.insert(handle, prepared);
    }

    fn remove(&mut self, handle: &Bytes) {
        if let Some(p) = self.statements.remove(handle) {
            self.sql_bytes -= p.sql.len();
        }
    }
}

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

fn schema_bytes(schema: &Schema) -> Result<Bytes, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &Default::default())
        .try_into()
        .map_err(|e: arrow::error::ArrowError| Status::internal(format!("schema: {e}")))?;
    Ok(bytes)
}

/// A FlightInfo whose one endpoint's ticket is `ticket`.
fn flight_info(
    schema: &Schema,
    ticket: Vec<u8>,
    descriptor: FlightDescriptor,
) -> Result<Response<FlightInfo>, Status> {
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Status::internal(format!("schema: {e}")))?
        .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket)))
        .with_descriptor(descriptor);
    Ok(Response::new(info))
}

/// One metadata batch (or an empty result with its schema) as a Flight stream.
fn batch_stream(
    schema: SchemaRef,
    batch: Result<RecordBatch, FlightError>,
) -> Response<DoGetStream> {
    let batches = futures::stream::iter([batch]);
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(batches)
        .map_err(Status::from);
    Response::new(Box::pin(stream))
}

fn empty_stream(schema: SchemaRef) -> Response<DoGetStream> {
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(futures::stream::empty())
        .map_err(Status::from);
    Response::new(Box::pin(stream))
}

/// `GetPrimaryKeys`' result schema (the lake's tables have no keys: always empty).
fn primary_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ]))
}

/// The result schema of `GetExportedKeys`, `GetImportedKeys` and `GetCrossReference`.
fn foreign_keys_schema() -> SchemaRef {
    let text = |name: &str, nullable| Field::new(name, DataType::Utf8, nullable);
    Arc::new(Schema::new(vec![
        text("pk_catalog_name", true),
        text("pk_db_schema_name", true),
        text("pk_table_name", false),
        text("pk_column_name", false),
        text("fk_catalog_name", true),
        text("fk_db_schema_name", true),
        text("fk_table_name", false),
        text("fk_column_name", false),
        Field::new("key_sequence", DataType::Int32, false),
        text("fk_key_name", true),
        text("pk_key_name", true),
        Field::new("update_rule", DataType::UInt8, false),
        Field::new("delete_rule", DataType::UInt8, false),
    ]))
}

/// Statement handles carry their SQL: 16 bytes of id, then the text.
fn statement_handle(sql: &str) -> Bytes {
    let mut handle = uuid::Uuid::new_v4().as_bytes().to_vec();
    handle.extend_from_slice(sql.as_bytes());
    Bytes::from(handle)
}

fn statement_sql(handle: &[u8]) -> Result<&str, Status> {
    handle
        .get(16..)
        .and_then(|sql| std::str::from_utf8(sql).ok())
        .ok_or_else(|| Status::invalid_argument("malformed statement handle"))
}

fn read_only() -> Status {
    Status::permission_denied("forbidden: this server is read-only (updates are not accepted)")
}

#[tonic::async_trait]
impl FlightSqlService for FlightSqlServer {
    type FlightService = FlightSqlServer;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let token = if !self.tokens.required() {
            None
        } else {
            // Basic credentials in the header (JDBC, ADBC) or in the handshake payload.
            let mut password = header
                .as_deref()
                .and_then(basic_credentials)
                .map(|(_, p)| p);
            if password.is_none() {
                if let Some(Ok(first)) = request.into_inner().next().await {
                    password = arrow_flight::BasicAuth::decode(first.payload)
                        .ok()
                        .map(|b| b.password);
                }
            }
            match password {
                Some(p) if self.tokens.accepts(&p) => Some(p),
                _ if self.tokens.allows(header.as_deref()) => header
                    .as_deref()
                    .and_then(|h| credentials(h, "Bearer"))
                    .map(str::to_string),
                _ => {
                    return Err(Status::unauthenticated(
                        "invalid credentials: the password must be an accepted token",
                    ))
                }
            }
        };
        let payload = token.clone().unwrap_or_default();
        let output = futures::stream::iter([Ok::<_, Status>(HandshakeResponse {
            protocol_version: 0,
            payload: payload.into(),
        })]);
        let mut response: Response<Pin<Box<dyn Stream<Item = _> + Send>>> =
            Response::new(Box::pin(output));
        if let Some(token) = token {
            let value = MetadataValue::try_from(format!("Bearer {token}"))
                .map_err(|_| Status::internal("token is not a valid header value"))?;
            response.metadata_mut().insert("authorization", value);
        }
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = self.result_schema(&query.query).await?;
        let ticket = TicketStatementQuery {
            statement_handle: statement_handle(&query.query),
        };
        flight_info(
            &schema,
            ticket.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let prepared = self.prepared(&cmd.prepared_statement_handle)?;
        let schema = self.result_schema(&prepared.sql).await?;
        flight_info(&schema, cmd.as_any().encode_to_vec(), request.into_inner())
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        flight_info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        flight_info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        flight_info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        flight_info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder(&SQL_INFO).schema();
        flight_info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        flight_info(
            &primary_keys_schema(),
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn get_flight_info_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        flight_info(
            &foreign_keys_schema(),
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn get_flight_info_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        flight_info(
            &foreign_keys_schema(),
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn get_flight_info_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        flight_info(
            &foreign_keys_schema(),
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder(&XDBC_TYPES).schema();
        flight_info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let sql = statement_sql(&ticket.statement_handle)?.to_string();
        self.run(ticket.statement_handle, &sql, None).await
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let prepared = self.prepared(&query.prepared_statement_handle)?;
        self.run(
            query.prepared_statement_handle,
            &prepared.sql,
            prepared.params,
        )
        .await
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let (ctx, _) = self
            .executor
            .live()
            .session()
            .await
            .map_err(|e| to_status(e.into()))?;
        let mut builder: GetCatalogsBuilder = query.into_builder();
        let mut names = ctx.catalog_names();
        names.sort();
        for name in names {
            builder.append(name);
        }
        let schema = builder.schema();
        Ok(batch_stream(schema, builder.build()))
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let (ctx, _) = self
            .executor
            .live()
            .session()
            .await
            .map_err(|e| to_status(e.into()))?;
        let mut builder: GetDbSchemasBuilder = query.into_builder();
        let mut pairs = schemas(&ctx);
        pairs.sort();
        for (catalog, schema) in pairs {
            builder.append(catalog, schema);
        }
        let schema = builder.schema();
        Ok(batch_stream(schema, builder.build()))
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let (ctx, _) = self
            .executor
            .live()
            .session()
            .await
            .map_err(|e| to_status(e.into()))?;
        let mut builder = query.into_builder();
        append_tables(&ctx, &mut builder)
            .await
            .map_err(|e| Status::internal(format!("listing tables: {e}")))?;
        let schema = builder.schema();
        Ok(batch_stream(schema, builder.build()))
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let mut builder = query.into_builder();
        for table_type in ["LOCAL TEMPORARY", "TABLE", "VIEW"] {
            builder.append(table_type);
        }
        let schema = builder.schema();
        Ok(batch_stream(schema, builder.build()))
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let builder = query.into_builder(&SQL_INFO);
        let schema = builder.schema();
        Ok(batch_stream(schema, builder.build()))
    }

    async fn do_get_primary_keys(
        &self,
        _query: CommandGetPrimaryKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        Ok(empty_stream(primary_keys_schema()))
    }

    async fn do_get_exported_keys(
        &self,
        _query: CommandGetExportedKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        Ok(empty_stream(foreign_keys_schema()))
    }

    async fn do_get_imported_keys(
        &self,
        _query: CommandGetImportedKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        Ok(empty_stream(foreign_keys_schema()))
    }

    async fn do_get_cross_reference(
        &self,
        _query: CommandGetCrossReference,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        Ok(empty_stream(foreign_keys_schema()))
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let builder = query.into_builder(&XDBC_TYPES);
        let schema = builder.schema();
        Ok(batch_stream(schema, builder.build()))
    }

    async fn do_put_statement_update(
        &self,
        _ticket: CommandStatementUpdate,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(read_only())
    }

    async fn do_put_prepared_statement_update(
        &self,
        _query: CommandPreparedStatementUpdate,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(read_only())
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let handle = query.prepared_statement_handle;
        self.prepared(&handle)?;
        // Only the last row counts; keep no more than that, and read no more than a
        // request may hold.
        let mut stream = FlightRecordBatchStream::new_from_flight_data(
            request.into_inner().map_err(FlightError::from),
        );
        let mut last: Option<RecordBatch> = None;
        let mut received = 0usize;
        while let Some(batch) = stream.next().await {
            let batch =
                batch.map_err(|e| Status::invalid_argument(format!("bad_parameter: {e}")))?;
            received += batch.get_array_memory_size();
            if received > self.config.max_request_bytes {
                return Err(Status::resource_exhausted(format!(
                    "parameters_too_large: more than {} bytes of parameters",
                    self.config.max_request_bytes
                )));
            }
            if batch.num_rows() > 0 {
                last = Some(batch);
            }
        }
        let values = match last {
            Some(batch) => Some(
                params::from_batch(&batch)
                    .map_err(|e| Status::invalid_argument(format!("bad_parameter: {e}")))?,
            ),
            None => None,
        };
        if let Some(prepared) = lock(&self.prepared).statements.get_mut(&handle) {
            prepared.params = values;
        }
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(handle),
        })
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let (planned, schema) = self.describe(&query.query).await?;
        // `$1`, `$2`, ... in order; a type the plan cannot infer is asked as text.
        let mut names: Vec<&String> = planned.parameters.keys().collect();
        names.sort_by_key(|n| {
            n.trim_start_matches('$')
                .parse::<usize>()
                .unwrap_or(usize::MAX)
        });
        let parameters = Schema::new(
            names
                .iter()
                .map(|name| {
                    let data_type = planned
                        .parameters
                        .get(*name)
                        .cloned()
                        .flatten()
                        .map(|t| crate::flight_metadata::plain_type(&t))
                        .unwrap_or(DataType::Utf8);
                    Field::new(name.as_str(), data_type, true)
                })
                .collect::<Vec<_>>(),
        );
        let handle = Bytes::from(uuid::Uuid::new_v4().as_bytes().to_vec());
        lock(&self.prepared).insert(
            handle.clone(),
            Prepared {
                sql: query.query,
                params: None,
                created: Instant::now(),
            },
            self.config.max_prepared_statements,
        );
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle,
            dataset_schema: schema_bytes(&schema)?,
            parameter_schema: schema_bytes(&parameters)?,
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
        lock(&self.prepared).remove(&query.prepared_statement_handle);
        Ok(())
    }

    async fn do_action_cancel_query(
        &self,
        query: ActionCancelQueryRequest,
        _request: Request<Action>,
    ) -> Result<ActionCancelQueryResult, Status> {
        let info = FlightInfo::decode(query.info)
            .map_err(|e| Status::invalid_argument(format!("bad FlightInfo: {e}")))?;
        let mut result = CANCEL_RESULT_NOT_CANCELLABLE;
        for endpoint in &info.endpoint {
            let Some(ticket) = &endpoint.ticket else {
                continue;
            };
            let Ok(any) = Any::decode(ticket.ticket.clone()) else {
                continue;
            };
            let key = match Command::try_from(any) {
                Ok(Command::TicketStatementQuery(t)) => t.statement_handle,
                Ok(Command::CommandPreparedStatementQuery(p)) => p.prepared_statement_handle,
                _ => continue,
            };
            if let Some(cancel) = lock(&self.running).get(&key) {
                cancel.cancel();
                result = CANCEL_RESULT_CANCELLED;
            }
        }
        Ok(ActionCancelQueryResult { result })
    }

    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        if request.get_ref().r#type == CLOSE_SESSION {
            // CloseSessionResult { status: CLOSED } — nothing is kept per session.
            let closed = arrow_flight::Result {
                body: Bytes::from_static(&[0x08, 0x01]),
            };
            return Ok(Response::new(Box::pin(futures::stream::iter([Ok::<
                _,
                Status,
            >(
                closed
            )]))));
        }
        Err(Status::unimplemented(format!(
            "action {:?} is not supported",
            request.get_ref().r#type
        )))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

/// Checks that a command carried in a ticket, a descriptor or an action body decodes,
/// so a malformed one is the client's error (INVALID_ARGUMENT), not ours (INTERNAL,
/// as arrow-flight's dispatch would answer).
fn check_command(bytes: &[u8]) -> Result<(), Status> {
    let any = Any::decode(bytes)
        .map_err(|e| Status::invalid_argument(format!("malformed Flight SQL command: {e}")))?;
    Command::try_from(any)
        .map(|_| ())
        .map_err(|e| Status::invalid_argument(format!("malformed Flight SQL command: {e}")))
}

/// The Flight SQL actions whose bodies are Flight SQL commands.
const SQL_ACTIONS: [&str; 8] = [
    "CreatePreparedStatement",
    "ClosePreparedStatement",
    "CreatePreparedSubstraitPlan",
    "BeginTransaction",
    "BeginSavepoint",
    "EndTransaction",
    "EndSavepoint",
    "CancelQuery",
];

/// [`FlightSqlServer`] with every command checked before arrow-flight dispatches it.
struct CheckedCommands(FlightSqlServer);

type Inner = FlightSqlServer;

#[tonic::async_trait]
impl FlightService for CheckedCommands {
    type HandshakeStream = <Inner as FlightService>::HandshakeStream;
    type ListFlightsStream = <Inner as FlightService>::ListFlightsStream;
    type DoGetStream = <Inner as FlightService>::DoGetStream;
    type DoPutStream = <Inner as FlightService>::DoPutStream;
    type DoExchangeStream = <Inner as FlightService>::DoExchangeStream;
    type DoActionStream = <Inner as FlightService>::DoActionStream;
    type ListActionsStream = <Inner as FlightService>::ListActionsStream;

    async fn handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        FlightService::handshake(&self.0, request).await
    }

    async fn list_flights(
        &self,
        request: Request<arrow_flight::Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        FlightService::list_flights(&self.0, request).await
    }

    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        check_command(&request.get_ref().cmd)?;
        FlightService::get_flight_info(&self.0, request).await
    }

    async fn poll_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<arrow_flight::PollInfo>, Status> {
        FlightService::poll_flight_info(&self.0, request).await
    }

    async fn get_schema(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<arrow_flight::SchemaResult>, Status> {
        FlightService::get_schema(&self.0, request).await
    }

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        check_command(&request.get_ref().ticket)?;
        FlightService::do_get(&self.0, request).await
    }

    async fn do_put(
        &self,
        request: Request<Streaming<arrow_flight::FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        FlightService::do_put(&self.0, request).await
    }

    async fn do_exchange(
        &self,
        request: Request<Streaming<arrow_flight::FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        FlightService::do_exchange(&self.0, request).await
    }

    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        if SQL_ACTIONS.contains(&request.get_ref().r#type.as_str()) {
            check_command(&request.get_ref().body)?;
        }
        FlightService::do_action(&self.0, request).await
    }

    async fn list_actions(
        &self,
        request: Request<arrow_flight::Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        FlightService::list_actions(&self.0, request).await
    }
}
