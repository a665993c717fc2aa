//! Result formats: JSON (columns, rows, stats), NDJSON, CSV and Arrow IPC stream.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use serde::Serialize;

use crate::error::ApiError;

/// How a result is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `{"columns": [...], "rows": [[...]], "stats": {...}}`.
    Json,
    /// One JSON object per row and line.
    Ndjson,
    /// CSV with a header line.
    Csv,
    /// An Arrow IPC stream.
    Arrow,
}

impl Format {
    /// Parses a format name (`json` when absent).
    pub fn parse(name: Option<&str>) -> Result<Format, ApiError> {
        match name.map(str::to_ascii_lowercase).as_deref() {
            None | Some("json") => Ok(Format::Json),
            Some("ndjson") | Some("jsonl") => Ok(Format::Ndjson),
            Some("csv") => Ok(Format::Csv),
            Some("arrow") => Ok(Format::Arrow),
            Some(other) => Err(ApiError::bad_request(format!(
                "unknown format {other:?}: use json, ndjson, csv or arrow"
            ))),
        }
    }

    /// The name used in cache keys.
    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Ndjson => "ndjson",
            Format::Csv => "csv",
            Format::Arrow => "arrow",
        }
    }

    /// The response content type.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Ndjson => "application/x-ndjson",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Arrow => "application/vnd.apache.arrow.stream",
        }
    }
}

/// What running the query cost.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Stats {
    /// Rows returned.
    pub rows: usize,
    /// Wall time of planning and running.
    pub elapsed_ms: u64,
    /// Bytes read from storage.
    pub bytes_scanned: u64,
    /// Data files read (after partition pruning).
    pub files_scanned: usize,
}

fn encode_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        "encode",
        format!("encoding the result: {e}"),
    )
}

fn rows_as_objects(
    batches: &[RecordBatch],
) -> Result<Vec<serde_json::Map<String, serde_json::Value>>, ApiError> {
    let mut buf = Vec::new();
    {
        let mut writer = arrow::json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, arrow::json::writer::JsonArray>(&mut buf);
        for b in batches {
            writer.write(b).map_err(encode_error)?;
        }
        writer.finish().map_err(encode_error)?;
    }
    if buf.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(&buf).map_err(encode_error)
}

/// Encodes a whole result.
pub fn encode(
    format: Format,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    stats: &Stats,
) -> Result<Vec<u8>, ApiError> {
    match format {
        Format::Json => {
            let columns: Vec<serde_json::Value> = schema
                .fields()
                .iter()
                .map(|f| serde_json::json!({"name": f.name(), "type": f.data_type().to_string()}))
                .collect();
            let rows: Vec<Vec<serde_json::Value>> = rows_as_objects(batches)?
                .into_iter()
                .map(|mut obj| {
                    schema
                        .fields()
                        .iter()
                        .map(|f| obj.remove(f.name()).unwrap_or(serde_json::Value::Null))
                        .collect()
                })
                .collect();
            serde_json::to_vec(
                &serde_json::json!({"columns": columns, "rows": rows, "stats": stats}),
            )
            .map_err(encode_error)
        }
        Format::Ndjson | Format::Csv | Format::Arrow => {
            let mut encoder = ChunkEncoder::new(format, schema.clone());
            let mut buf = Vec::new();
            for b in batches {
                buf.extend(encoder.batch(b)?);
            }
            buf.extend(encoder.finish()?);
            Ok(buf)
        }
    }
}

/// Encodes a result batch by batch, for streaming.
pub struct ChunkEncoder {
    format: Format,
    schema: SchemaRef,
    started: bool,
    ipc: Option<arrow::ipc::writer::StreamWriter<SharedBuffer>>,
    buffer: SharedBuffer,
}

/// A `Write` whose bytes can be taken out while a writer still holds it.
#[derive(Clone, Default)]
struct SharedBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for SharedBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl SharedBuffer {
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl ChunkEncoder {
    /// An encoder for `format` (ndjson, csv or arrow; JSON documents are never streamed).
    pub fn new(format: Format, schema: SchemaRef) -> ChunkEncoder {
        ChunkEncoder {
            format,
            schema,
            started: false,
            ipc: None,
            buffer: SharedBuffer::default(),
        }
    }

    /// The bytes of one more batch.
    pub fn batch(&mut self, batch: &RecordBatch) -> Result<Vec<u8>, ApiError> {
        let first = !self.started;
        self.started = true;
        match self.format {
            Format::Json | Format::Ndjson => {
                let mut buf = Vec::new();
                let mut writer = arrow::json::WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .build::<_, arrow::json::writer::LineDelimited>(&mut buf);
                writer.write(batch).map_err(encode_error)?;
                writer.finish().map_err(encode_error)?;
                drop(writer);
                Ok(buf)
            }
            Format::Csv => {
                let mut buf = Vec::new();
                {
                    let mut writer = arrow::csv::WriterBuilder::new()
                        .with_header(first)
                        .build(&mut buf);
                    writer.write(batch).map_err(encode_error)?;
                }
                Ok(buf)
            }
            Format::Arrow => {
                self.ipc_writer()?.write(batch).map_err(encode_error)?;
                Ok(self.buffer.take())
            }
        }
    }

    /// The Arrow stream writer, created (schema message first) on first use.
    fn ipc_writer(
        &mut self,
    ) -> Result<&mut arrow::ipc::writer::StreamWriter<SharedBuffer>, ApiError> {
        if self.ipc.is_none() {
            let writer =
                arrow::ipc::writer::StreamWriter::try_new(self.buffer.clone(), &self.schema)
                    .map_err(encode_error)?;
            self.ipc = Some(writer);
        }
        self.ipc
            .as_mut()
            .ok_or_else(|| encode_error("no Arrow writer"))
    }

    /// The closing bytes: the Arrow end-of-stream marker; for a result without rows,
    /// its columns still (the CSV header, the Arrow schema).
    pub fn finish(&mut self) -> Result<Vec<u8>, ApiError> {
        match self.format {
            Format::Arrow => {
                self.ipc_writer()?.finish().map_err(encode_error)?;
                Ok(self.buffer.take())
            }
            Format::Csv if !self.started => {
                let header: Vec<&str> = self
                    .schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect();
                Ok(format!("{}\n", header.join(",")).into_bytes())
            }
            _ => Ok(Vec::new()),
        }
    }
}
