//! What the Flight SQL handlers answer with: FlightInfos, one-batch and empty streams,
//! statement handles, the fixed schemas of the key commands.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::sql::ProstMessageExt;
use arrow_flight::{FlightDescriptor, FlightEndpoint, FlightInfo, IpcMessage, SchemaAsIpc, Ticket};
use futures::TryStreamExt;
use prost::bytes::Bytes;
use prost::Message;
use tonic::{Request, Response, Status};

use super::DoGetStream;

pub(super) fn schema_bytes(schema: &Schema) -> Result<Bytes, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &Default::default())
        .try_into()
        .map_err(|e: arrow::error::ArrowError| Status::internal(format!("schema: {e}")))?;
    Ok(bytes)
}

/// A FlightInfo whose one endpoint's ticket is `ticket`.
pub(super) fn flight_info(
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
pub(super) fn batch_stream(
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

pub(super) fn empty_stream(schema: SchemaRef) -> Response<DoGetStream> {
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(futures::stream::empty())
        .map_err(Status::from);
    Response::new(Box::pin(stream))
}

/// `GetPrimaryKeys`' result schema (the lake's tables have no keys: always empty).
pub(super) fn primary_keys_schema() -> SchemaRef {
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
pub(super) fn foreign_keys_schema() -> SchemaRef {
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
pub(super) fn statement_handle(sql: &str) -> Bytes {
    let mut handle = uuid::Uuid::new_v4().as_bytes().to_vec();
    handle.extend_from_slice(sql.as_bytes());
    Bytes::from(handle)
}

pub(super) fn statement_sql(handle: &[u8]) -> Result<&str, Status> {
    handle
        .get(16..)
        .and_then(|sql| std::str::from_utf8(sql).ok())
        .ok_or_else(|| Status::invalid_argument("malformed statement handle"))
}

pub(super) fn read_only() -> Status {
    Status::permission_denied("forbidden: this server is read-only (updates are not accepted)")
}

/// The FlightInfo of a metadata command: its result schema, and the command itself
/// (wrapped in `Any`) as the ticket.
pub(super) fn command_info(
    schema: &Schema,
    command: &impl ProstMessageExt,
    request: Request<FlightDescriptor>,
) -> Result<Response<FlightInfo>, Status> {
    flight_info(
        schema,
        command.as_any().encode_to_vec(),
        request.into_inner(),
    )
}
