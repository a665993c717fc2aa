//! The Flight SQL protocol over [`FlightSqlServer`]: statements, prepared statements,
//! catalog metadata, actions.

use std::pin::Pin;
use std::time::Instant;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema};
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
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
    Action, FlightDescriptor, FlightInfo, HandshakeRequest, HandshakeResponse, Ticket,
};
use futures::{Stream, StreamExt, TryStreamExt};
use hourlake_sql::params;
use prost::bytes::Bytes;
use prost::Message;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

use super::auth::basic_credentials;
use super::metadata::{append_tables, schemas, SQL_INFO, XDBC_TYPES};
use super::prepared::Prepared;
use super::responses::{
    batch_stream, command_info, empty_stream, flight_info, foreign_keys_schema,
    primary_keys_schema, read_only, schema_bytes, statement_handle, statement_sql,
};
use super::{
    lock, to_status, DoGetStream, FlightSqlServer, CANCEL_RESULT_CANCELLED,
    CANCEL_RESULT_NOT_CANCELLABLE, CLOSE_SESSION,
};
use hourlake_net::credentials;

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
        command_info(&schema, &cmd, request)
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        command_info(&schema, &query, request)
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        command_info(&schema, &query, request)
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        command_info(&schema, &query, request)
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        command_info(&schema, &query, request)
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder(&SQL_INFO).schema();
        command_info(&schema, &query, request)
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        command_info(&primary_keys_schema(), &query, request)
    }

    async fn get_flight_info_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        command_info(&foreign_keys_schema(), &query, request)
    }

    async fn get_flight_info_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        command_info(&foreign_keys_schema(), &query, request)
    }

    async fn get_flight_info_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        command_info(&foreign_keys_schema(), &query, request)
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder(&XDBC_TYPES).schema();
        command_info(&schema, &query, request)
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
                        .map(|t| super::metadata::plain_type(&t))
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
