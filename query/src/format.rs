//! Result formats: JSON (columns, rows, stats), NDJSON, CSV and Arrow IPC stream.
//!
//! Every format is written batch by batch ([`ChunkEncoder`]), so encoding needs about
//! one batch's output in memory besides the result; [`encode`] concatenates the chunks.
//! Every Arrow type encodes in every format:
//!
//! - JSON and NDJSON follow the rules in `format_json.rs`: decimals and 64-bit
//!   integers beyond ±(2^53 − 1) are strings holding their exact value, NaN and
//!   ±infinity are `null`, binary is hex, maps are objects, a union value is its
//!   member's value — at every depth. JSON rows are arrays by column position, so
//!   columns with the same name all appear.
//! - CSV writes scalars as arrow-csv does (binary as hex, NaN as `NaN`, `inf`, null as
//!   an empty cell) and nested values (lists, structs, maps, unions, and dictionaries
//!   of them) as their JSON text under the same rules.
//! - Arrow IPC carries the batches unchanged.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, LargeStringBuilder, RecordBatch, RecordBatchOptions};
use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::json::writer::EncoderOptions;
use serde::Serialize;

use crate::error::ApiError;

#[path = "format_json.rs"]
mod json;

/// How a result is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `{"columns": [...], "rows": [[...]], "stats": {...}}`.
    Json,
    /// One JSON object per row and line, keyed by column name.
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

fn encode_error(format: Format, e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        "encode",
        format!("encoding the result as {}: {e}", format.name()),
    )
}

/// Unique names for a result's columns, given as (qualifier, name) pairs — the
/// qualifier being the table or alias the column comes from (`t1` in `t1.a`), if any.
///
/// The rule, applied in column order:
///
/// 1. A name no other column has stays as it is.
/// 2. A name several columns share becomes `qualifier.name` for each of those columns
///    whose qualifier is set (non-empty) and whose `qualifier.name` is neither some
///    column's name nor another column's `qualifier.name` (as when two columns of the
///    name have the same qualifier).
/// 3. The columns of a shared name left over (no qualifier, or the same qualifier
///    twice): the first keeps the bare name (no other column is left with it), the
///    next ones get the lowest free numeric suffix from 2 up: `name_2`, `name_3`, …
///    skipping any that is already a column's name or given earlier.
///
/// So `SELECT * FROM (SELECT 1 AS a) t1 CROSS JOIN (SELECT 2 AS a) t2` has the columns
/// `t1.a`, `t2.a`; `SELECT 1 AS a, 2 AS a` has `a`, `a_2`. The names are always
/// distinct, and a result whose names already are is left unchanged.
pub fn unique_column_names(fields: &[(Option<String>, String)]) -> Vec<String> {
    let mut count: HashMap<&str, usize> = HashMap::new();
    for (_, name) in fields {
        *count.entry(name.as_str()).or_default() += 1;
    }
    let shared = |name: &str| count.get(name).copied().unwrap_or(0) > 1;
    let qualified = |(qualifier, name): &(Option<String>, String)| {
        qualifier
            .as_deref()
            .filter(|q| !q.is_empty() && shared(name))
            .map(|q| format!("{q}.{name}"))
    };
    let mut proposed: HashMap<String, usize> = HashMap::new();
    for field in fields {
        if let Some(candidate) = qualified(field) {
            *proposed.entry(candidate).or_default() += 1;
        }
    }
    // Every existing name is reserved: no generated name may take one.
    let mut taken: HashSet<String> = fields.iter().map(|(_, name)| name.clone()).collect();
    let mut names: Vec<Option<String>> = fields
        .iter()
        .map(|field| {
            let (_, name) = field;
            if !shared(name) {
                return Some(name.clone());
            }
            let candidate = qualified(field)?;
            (proposed[&candidate] == 1 && taken.insert(candidate.clone())).then_some(candidate)
        })
        .collect();
    let mut bare_given: HashSet<&str> = HashSet::new();
    let mut next_suffix: HashMap<&str, usize> = HashMap::new();
    for (slot, (_, name)) in names.iter_mut().zip(fields) {
        if slot.is_some() {
            continue;
        }
        if bare_given.insert(name.as_str()) {
            *slot = Some(name.clone());
            continue;
        }
        let suffix = next_suffix.entry(name.as_str()).or_insert(2);
        loop {
            let candidate = format!("{name}_{suffix}");
            *suffix += 1;
            if taken.insert(candidate.clone()) {
                *slot = Some(candidate);
                break;
            }
        }
    }
    names.into_iter().flatten().collect()
}

/// Encodes a whole result: the chunks of a [`ChunkEncoder`], concatenated.
#[allow(dead_code)] // the HTTP API streams through ChunkEncoder itself; kept for whole results
pub fn encode(
    format: Format,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    stats: &Stats,
) -> Result<Vec<u8>, ApiError> {
    let mut encoder = ChunkEncoder::new(format, schema.clone());
    let mut out = Vec::new();
    for batch in batches {
        encoder.write_batch(batch, &mut out)?;
    }
    encoder.write_finish(stats, &mut out)?;
    Ok(out)
}

/// Encodes a result batch by batch, for streaming: [`batch`](Self::batch) for each
/// batch in order, then [`finish`](Self::finish) once. The chunks concatenated are the
/// whole answer:
///
/// - JSON: the first chunk opens the document with the columns
///   (`{"columns":[{"name":…,"type":…},…],"rows":[`), each batch adds its rows as
///   arrays (comma-separated across batches), `finish` closes it with the stats
///   (`],"stats":{…}}`);
/// - NDJSON: one object per row and line (keys made unique with
///   [`unique_column_names`] should names repeat);
/// - CSV: the header with the first chunk, then the rows;
/// - Arrow: the schema message with the first chunk, then a message per batch, the
///   end-of-stream marker from `finish`.
///
/// A result without batches (or only empty ones) still gets its columns: the JSON
/// document with `"rows":[]`, the CSV header, the Arrow schema.
pub struct ChunkEncoder {
    format: Format,
    schema: SchemaRef,
    /// The opening bytes (JSON head, CSV header, Arrow schema) are written.
    started: bool,
    /// A JSON row is written: the next one needs a comma.
    wrote_row: bool,
    json: EncoderOptions,
    /// NDJSON: each column's key, as a JSON string and a colon.
    keys: Vec<Vec<u8>>,
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
    /// An encoder of a result with this schema in `format`.
    pub fn new(format: Format, schema: SchemaRef) -> ChunkEncoder {
        let keys = if format == Format::Ndjson {
            let fields: Vec<(Option<String>, String)> = schema
                .fields()
                .iter()
                .map(|f| (None, f.name().clone()))
                .collect();
            unique_column_names(&fields)
                .iter()
                .map(|name| {
                    let mut key = Vec::with_capacity(name.len() + 3);
                    json::write_str(name, &mut key);
                    key.push(b':');
                    key
                })
                .collect()
        } else {
            Vec::new()
        };
        ChunkEncoder {
            format,
            schema,
            started: false,
            wrote_row: false,
            json: json::options(),
            keys,
            ipc: None,
            buffer: SharedBuffer::default(),
        }
    }

    /// The bytes of one more batch (with the opening bytes before the first).
    pub fn batch(&mut self, batch: &RecordBatch) -> Result<Vec<u8>, ApiError> {
        let mut out = Vec::new();
        self.write_batch(batch, &mut out)?;
        Ok(out)
    }

    /// The closing bytes: the JSON document's end with `stats` (the other formats do
    /// not use them), the Arrow end-of-stream marker; for a result without batches,
    /// the opening bytes before them.
    pub fn finish(&mut self, stats: &Stats) -> Result<Vec<u8>, ApiError> {
        let mut out = Vec::new();
        self.write_finish(stats, &mut out)?;
        Ok(out)
    }

    fn error(&self, e: impl std::fmt::Display) -> ApiError {
        encode_error(self.format, e)
    }

    fn write_batch(&mut self, batch: &RecordBatch, out: &mut Vec<u8>) -> Result<(), ApiError> {
        if batch.num_columns() != self.schema.fields().len() {
            return Err(self.error(format!(
                "a batch has {} columns, the result {}",
                batch.num_columns(),
                self.schema.fields().len()
            )));
        }
        match self.format {
            Format::Json => {
                self.write_json_head(out);
                let mut columns = json::Columns::try_new(batch, &self.json)
                    .map_err(|e| encode_error(Format::Json, e))?;
                for row in 0..batch.num_rows() {
                    if self.wrote_row {
                        out.push(b',');
                    }
                    self.wrote_row = true;
                    columns.write_array_row(row, out);
                }
            }
            Format::Ndjson => {
                let mut columns = json::Columns::try_new(batch, &self.json)
                    .map_err(|e| encode_error(Format::Ndjson, e))?;
                for row in 0..batch.num_rows() {
                    columns.write_object_row(&self.keys, row, out);
                    out.push(b'\n');
                }
            }
            Format::Csv => {
                let batch = self.csv_batch(batch)?;
                let mut writer = arrow::csv::WriterBuilder::new()
                    .with_header(!self.started)
                    .build(&mut *out);
                writer
                    .write(&batch)
                    .map_err(|e| encode_error(Format::Csv, e))?;
                self.started = true;
            }
            Format::Arrow => {
                self.ipc_writer()?
                    .write(batch)
                    .map_err(|e| encode_error(Format::Arrow, e))?;
                out.extend(self.buffer.take());
            }
        }
        Ok(())
    }

    fn write_finish(&mut self, stats: &Stats, out: &mut Vec<u8>) -> Result<(), ApiError> {
        match self.format {
            Format::Json => {
                self.write_json_head(out);
                out.extend_from_slice(b"],\"stats\":");
                // Through a `Value`: its keys come sorted, as they always have.
                let stats = serde_json::to_value(stats).map_err(|e| self.error(e))?;
                serde_json::to_writer(&mut *out, &stats).map_err(|e| self.error(e))?;
                out.push(b'}');
            }
            Format::Ndjson => {}
            Format::Csv => {
                if !self.started {
                    let empty = RecordBatch::new_empty(self.schema.clone());
                    self.write_batch(&empty, out)?;
                }
            }
            Format::Arrow => {
                self.ipc_writer()?
                    .finish()
                    .map_err(|e| encode_error(Format::Arrow, e))?;
                out.extend(self.buffer.take());
            }
        }
        Ok(())
    }

    /// `{"columns":[…],"rows":[`, once.
    fn write_json_head(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        out.extend_from_slice(b"{\"columns\":[");
        for (i, field) in self.schema.fields().iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"name\":");
            json::write_str(field.name(), out);
            out.extend_from_slice(b",\"type\":");
            json::write_str(&field.data_type().to_string(), out);
            out.push(b'}');
        }
        out.extend_from_slice(b"],\"rows\":[");
    }

    /// The batch as arrow-csv can write it: nested columns (which it refuses) replaced
    /// by their JSON text, null staying null (an empty cell); the result's names.
    fn csv_batch(&self, batch: &RecordBatch) -> Result<RecordBatch, ApiError> {
        let mut fields = Vec::with_capacity(batch.num_columns());
        let mut columns = Vec::with_capacity(batch.num_columns());
        for ((field, column), name) in batch
            .schema_ref()
            .fields()
            .iter()
            .zip(batch.columns())
            .zip(self.schema.fields().iter().map(|f| f.name()))
        {
            let column = if column.data_type().is_nested() {
                json_text(field, column.as_ref(), &self.json)
                    .map_err(|e| encode_error(Format::Csv, e))?
            } else {
                column.clone()
            };
            fields.push(Field::new(name, column.data_type().clone(), true));
            columns.push(column);
        }
        RecordBatch::try_new_with_options(
            Arc::new(Schema::new(fields)),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
        )
        .map_err(|e| self.error(e))
    }

    /// The Arrow stream writer, created (schema message first) on first use.
    fn ipc_writer(
        &mut self,
    ) -> Result<&mut arrow::ipc::writer::StreamWriter<SharedBuffer>, ApiError> {
        if self.ipc.is_none() {
            let writer =
                arrow::ipc::writer::StreamWriter::try_new(self.buffer.clone(), &self.schema)
                    .map_err(|e| encode_error(Format::Arrow, e))?;
            self.ipc = Some(writer);
        }
        self.ipc
            .as_mut()
            .ok_or_else(|| encode_error(Format::Arrow, "no Arrow writer"))
    }
}

/// An array's values as their JSON text (null where they are null).
fn json_text(
    field: &arrow::datatypes::FieldRef,
    array: &dyn Array,
    options: &EncoderOptions,
) -> Result<ArrayRef, arrow::error::ArrowError> {
    let mut encoder = json::encoder(field, array, options)?;
    let mut builder = LargeStringBuilder::with_capacity(array.len(), 0);
    let mut value = Vec::new();
    for row in 0..array.len() {
        if encoder.is_null(row) {
            builder.append_null();
        } else {
            value.clear();
            encoder.encode(row, &mut value);
            builder.append_value(String::from_utf8_lossy(&value));
        }
    }
    Ok(Arc::new(builder.finish()))
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use arrow::array::builder::{
        Decimal128Builder, Int32Builder, Int64Builder, MapBuilder, StringBuilder,
    };
    use arrow::array::types::Int32Type;
    use arrow::array::{
        BinaryArray, BinaryViewArray, BooleanArray, Date32Array, Decimal128Array, Decimal256Array,
        Decimal32Array, Decimal64Array, DictionaryArray, DurationSecondArray, FixedSizeBinaryArray,
        FixedSizeListArray, Float32Array, Float64Array, Int32Array, Int64Array,
        IntervalDayTimeArray, IntervalMonthDayNanoArray, IntervalYearMonthArray, LargeBinaryArray,
        LargeListArray, LargeStringArray, ListArray, ListViewArray, NullArray, RunArray,
        StringArray, StringViewArray, StructArray, Time64MicrosecondArray,
        TimestampMillisecondArray, UInt64Array, UnionArray,
    };
    use arrow::buffer::{NullBuffer, OffsetBuffer, ScalarBuffer};
    use arrow::datatypes::{
        i256, DataType, Field, Fields, IntervalDayTime, IntervalMonthDayNano, UnionFields,
    };
    use arrow::ipc::reader::StreamReader;
    use serde_json::{json, Value};

    use super::*;

    const STATS: Stats = Stats {
        rows: 3,
        elapsed_ms: 7,
        bytes_scanned: 11,
        files_scanned: 2,
    };
    const STATS_JSON: &str = r#"{"bytes_scanned":11,"elapsed_ms":7,"files_scanned":2,"rows":3}"#;
    const FORMATS: [Format; 4] = [Format::Json, Format::Ndjson, Format::Csv, Format::Arrow];
    /// 2^53 − 1, the biggest integer JSON numbers keep exactly.
    const SAFE: i64 = (1 << 53) - 1;

    fn arc(array: impl Array + 'static) -> ArrayRef {
        Arc::new(array)
    }

    /// A batch of these columns (names may repeat).
    fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
        let fields: Vec<Field> = columns
            .iter()
            .map(|(name, array)| Field::new(*name, array.data_type().clone(), true))
            .collect();
        let arrays = columns.into_iter().map(|(_, array)| array).collect();
        RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).unwrap()
    }

    fn encoded(format: Format, schema: &SchemaRef, batches: &[RecordBatch]) -> Vec<u8> {
        encode(format, schema, batches, &STATS)
            .unwrap_or_else(|e| panic!("encoding as {}: {e}", format.name()))
    }

    /// A small RFC 4180 reader: records of cells (quoted cells unquoted).
    fn parse_csv(text: &str) -> Vec<Vec<String>> {
        let (mut records, mut record, mut cell) = (Vec::new(), Vec::new(), String::new());
        let mut quoted = false;
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match (quoted, c) {
                (true, '"') if chars.peek() == Some(&'"') => {
                    chars.next();
                    cell.push('"');
                }
                (true, '"') => quoted = false,
                (true, c) => cell.push(c),
                (false, '"') => quoted = true,
                (false, ',') => record.push(std::mem::take(&mut cell)),
                (false, '\n') => {
                    record.push(std::mem::take(&mut cell));
                    records.push(std::mem::take(&mut record));
                }
                (false, c) => cell.push(c),
            }
        }
        assert!(!quoted && cell.is_empty() && record.is_empty(), "{text:?}");
        records
    }

    /// A result in every format, each checked to be well formed.
    struct Every {
        json: Value,
        ndjson: Vec<Value>,
        csv: Vec<Vec<String>>,
    }

    /// Encodes `batches` in every format: JSON and NDJSON parse, CSV has a header and a
    /// record per row of as many cells as columns, the Arrow stream reads back equal.
    fn every_format(schema: &SchemaRef, batches: &[RecordBatch]) -> Every {
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let json: Value = serde_json::from_slice(&encoded(Format::Json, schema, batches))
            .expect("the JSON document parses");
        assert_eq!(json["rows"].as_array().map(Vec::len), Some(rows), "{json}");
        assert_eq!(
            json["stats"],
            serde_json::from_str::<Value>(STATS_JSON).unwrap()
        );
        let ndjson: Vec<Value> = String::from_utf8(encoded(Format::Ndjson, schema, batches))
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).expect("an NDJSON line parses"))
            .collect();
        assert_eq!(ndjson.len(), rows);
        let csv = parse_csv(&String::from_utf8(encoded(Format::Csv, schema, batches)).unwrap());
        assert_eq!(csv.len(), rows + 1, "{csv:?}");
        assert!(
            csv.iter().all(|r| r.len() == schema.fields().len()),
            "{csv:?}"
        );
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(csv[0], names);
        let reader =
            StreamReader::try_new(Cursor::new(encoded(Format::Arrow, schema, batches)), None)
                .unwrap();
        assert_eq!(reader.schema(), *schema);
        let read: Vec<RecordBatch> = reader.collect::<Result<_, _>>().unwrap();
        assert_eq!(read, batches, "the Arrow stream reads back equal");
        Every { json, ndjson, csv }
    }

    /// What a column encodes to: its JSON value per row and, for CSV, its cell text
    /// (`None`: a nested value, whose cell is the JSON text of its value — empty when
    /// that is null).
    struct Expected {
        name: &'static str,
        json: Vec<Value>,
        csv: Option<Vec<&'static str>>,
    }

    fn scalar(name: &'static str, json: Value, csv: Vec<&'static str>) -> Expected {
        let Value::Array(json) = json else {
            panic!("one JSON value per row")
        };
        Expected {
            name,
            json,
            csv: Some(csv),
        }
    }

    fn nested(name: &'static str, json: Value) -> Expected {
        let Value::Array(json) = json else {
            panic!("one JSON value per row")
        };
        Expected {
            name,
            json,
            csv: None,
        }
    }

    /// Checks every format of a batch against the values expected of each column, and
    /// of the batch without its first row (a slice, as `LIMIT`/`OFFSET` produce).
    fn check(batch: &RecordBatch, expected: &[Expected]) {
        check_rows(batch, expected);
        let sliced: Vec<Expected> = expected
            .iter()
            .map(|c| Expected {
                name: c.name,
                json: c.json[1..].to_vec(),
                csv: c.csv.as_ref().map(|cells| cells[1..].to_vec()),
            })
            .collect();
        check_rows(&batch.slice(1, batch.num_rows() - 1), &sliced);
    }

    fn check_rows(batch: &RecordBatch, expected: &[Expected]) {
        assert_eq!(batch.num_columns(), expected.len());
        let every = every_format(batch.schema_ref(), std::slice::from_ref(batch));
        let columns: Vec<Value> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| json!({"name": f.name(), "type": f.data_type().to_string()}))
            .collect();
        assert_eq!(every.json["columns"], Value::Array(columns));
        for row in 0..batch.num_rows() {
            let values: Vec<Value> = expected.iter().map(|c| c.json[row].clone()).collect();
            for (column, value) in expected.iter().zip(&values) {
                let at = format!("column {}, row {row}", column.name);
                assert_eq!(
                    every.json["rows"][row].as_array().unwrap().len(),
                    values.len()
                );
                let index = expected.iter().position(|c| c.name == column.name).unwrap();
                assert_eq!(&every.json["rows"][row][index], value, "JSON {at}");
                assert_eq!(&every.ndjson[row][column.name], value, "NDJSON {at}");
                let cell = &every.csv[row + 1][index];
                match &column.csv {
                    Some(cells) => assert_eq!(cell, cells[row], "CSV {at}"),
                    None if value.is_null() => assert_eq!(cell, "", "CSV {at}"),
                    None => {
                        let parsed: Value = serde_json::from_str(cell)
                            .unwrap_or_else(|e| panic!("CSV {at}: {cell:?}: {e}"));
                        assert_eq!(&parsed, value, "CSV {at}");
                    }
                }
            }
            assert_eq!(every.ndjson[row].as_object().unwrap().len(), values.len());
        }
    }

    #[test]
    fn format_parse_names() {
        assert_eq!(Format::parse(None).unwrap(), Format::Json);
        assert_eq!(Format::parse(Some("NDJSON")).unwrap(), Format::Ndjson);
        assert_eq!(Format::parse(Some("jsonl")).unwrap(), Format::Ndjson);
        assert_eq!(Format::parse(Some("csv")).unwrap(), Format::Csv);
        assert_eq!(Format::parse(Some("arrow")).unwrap(), Format::Arrow);
        assert!(Format::parse(Some("xml")).is_err());
    }

    fn unique(fields: &[(Option<&str>, &str)]) -> Vec<String> {
        let fields: Vec<(Option<String>, String)> = fields
            .iter()
            .map(|(q, n)| (q.map(str::to_string), n.to_string()))
            .collect();
        unique_column_names(&fields)
    }

    #[test]
    fn format_unique_column_names_qualify_or_number_duplicates() {
        // Unique names stay, qualified or not.
        assert_eq!(unique(&[(Some("t1"), "a"), (None, "b")]), ["a", "b"]);
        // The cross join of the bug report, and a self-join.
        assert_eq!(
            unique(&[(Some("t1"), "a"), (Some("t2"), "a")]),
            ["t1.a", "t2.a"]
        );
        assert_eq!(
            unique(&[
                (Some("l"), "id"),
                (Some("l"), "name"),
                (Some("r"), "id"),
                (Some("r"), "name"),
                (Some("r"), "extra"),
            ]),
            ["l.id", "l.name", "r.id", "r.name", "extra"]
        );
        // Without qualifiers: numbered, the first keeping the name.
        assert_eq!(
            unique(&[(None, "a"), (None, "a"), (None, "a")]),
            ["a", "a_2", "a_3"]
        );
        // An empty qualifier counts as none.
        assert_eq!(unique(&[(Some(""), "a"), (None, "a")]), ["a", "a_2"]);
        // A qualifier shared by two columns of the name does not tell them apart.
        assert_eq!(
            unique(&[(Some("t1"), "a"), (Some("t1"), "a"), (Some("t2"), "a")]),
            ["a", "a_2", "t2.a"]
        );
        // Some qualified, some not.
        assert_eq!(
            unique(&[(None, "a"), (Some("t1"), "a"), (None, "a")]),
            ["a", "t1.a", "a_2"]
        );
        // Generated names never take an existing column's name.
        assert_eq!(
            unique(&[(None, "a"), (None, "a"), (None, "a_2")]),
            ["a", "a_3", "a_2"]
        );
        assert_eq!(
            unique(&[(Some("t1"), "a"), (Some("t2"), "a"), (None, "t1.a")]),
            ["a", "t2.a", "t1.a"]
        );
        assert_eq!(
            unique(&[(None, "a_2"), (None, "a"), (None, "a"), (None, "a_2")]),
            ["a_2", "a", "a_3", "a_2_2"]
        );
        // Two qualified names that would coincide: neither is used.
        assert_eq!(
            unique(&[
                (Some("x"), "y.a"),
                (Some("x.y"), "a"),
                (None, "y.a"),
                (None, "a")
            ]),
            ["y.a", "a", "y.a_2", "a_2"]
        );
        assert!(unique(&[]).is_empty());
    }

    #[test]
    fn format_unique_column_names_are_always_distinct() {
        let qualifiers = [None, Some(""), Some("t1"), Some("t2"), Some("t1.a")];
        let names = ["a", "b", "a_2", "t1.a", "t2.a", "a_3", "t1.a.a"];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for _ in 0..2000 {
            let len = next(8);
            let fields: Vec<(Option<&str>, &str)> = (0..len)
                .map(|_| (qualifiers[next(qualifiers.len())], names[next(names.len())]))
                .collect();
            let out = unique(&fields);
            assert_eq!(out.len(), fields.len());
            let distinct: HashSet<&String> = out.iter().collect();
            assert_eq!(distinct.len(), out.len(), "{fields:?} → {out:?}");
            for ((_, name), given) in fields.iter().zip(&out) {
                if fields.iter().filter(|(_, n)| n == name).count() == 1 {
                    assert_eq!(given, name, "{fields:?} → {out:?}");
                }
            }
            // Applying the rule again changes nothing.
            let again: Vec<(Option<&str>, &str)> =
                out.iter().map(|n| (Some("t9"), n.as_str())).collect();
            assert_eq!(unique(&again), out);
        }
    }

    #[test]
    fn format_duplicate_column_names_keep_every_column() {
        // `SELECT * FROM (SELECT 1 AS a) t1 CROSS JOIN (SELECT 2 AS a) t2` as it comes
        // from DataFusion: two columns named `a`.
        let b = batch(vec![
            ("a", arc(Int64Array::from(vec![1, 3]))),
            ("a", arc(Int64Array::from(vec![2, 4]))),
            ("b", arc(StringArray::from(vec![Some("x"), None]))),
        ]);
        let every = every_format(b.schema_ref(), std::slice::from_ref(&b));
        assert_eq!(
            every.json["columns"],
            json!([
                {"name": "a", "type": "Int64"},
                {"name": "a", "type": "Int64"},
                {"name": "b", "type": "Utf8"},
            ])
        );
        assert_eq!(every.json["rows"], json!([[1, 2, "x"], [3, 4, null]]));
        // NDJSON keys are made unique even when the caller has not renamed.
        assert_eq!(
            every.ndjson,
            [
                json!({"a": 1, "a_2": 2, "b": "x"}),
                json!({"a": 3, "a_2": 4, "b": null})
            ]
        );
        assert_eq!(
            every.csv,
            [["a", "a", "b"], ["1", "2", "x"], ["3", "4", ""]]
        );
    }

    #[test]
    fn format_renamed_duplicate_columns_in_every_format() {
        // As the HTTP API does: the result's fields renamed by `unique_column_names`.
        let qualified = [
            (Some("t1".to_string()), "a".to_string()),
            (Some("t2".to_string()), "a".to_string()),
        ];
        let names = unique_column_names(&qualified);
        let b = batch(vec![
            (names[0].as_str(), arc(Int64Array::from(vec![1]))),
            (names[1].as_str(), arc(Int64Array::from(vec![2]))),
        ]);
        let every = every_format(b.schema_ref(), std::slice::from_ref(&b));
        assert_eq!(
            every.json["columns"],
            json!([{"name": "t1.a", "type": "Int64"}, {"name": "t2.a", "type": "Int64"}])
        );
        assert_eq!(every.json["rows"], json!([[1, 2]]));
        assert_eq!(every.ndjson, [json!({"t1.a": 1, "t2.a": 2})]);
        assert_eq!(every.csv, [["t1.a", "t2.a"], ["1", "2"]]);
    }

    #[test]
    fn format_decimals_are_exact_strings() {
        let big = 12_345_678_901_234_567_890_123_456_789_012_345_678i128;
        let d128 = Decimal128Array::from(vec![Some(big), Some(-1), None, Some(0)])
            .with_precision_and_scale(38, 3)
            .unwrap();
        let wide = i256::from_string(
            "1234567890123456789012345678901234567890123456789012345678901234567890123456",
        )
        .unwrap();
        let d256 = Decimal256Array::from(vec![Some(wide), Some(wide.wrapping_neg()), None, None])
            .with_precision_and_scale(76, 10)
            .unwrap();
        let d32 = Decimal32Array::from(vec![Some(1_234_567), None, Some(-5), Some(0)])
            .with_precision_and_scale(9, 2)
            .unwrap();
        let d64 = Decimal64Array::from(vec![Some(123_456_789_012_345_678), None, None, Some(1)])
            .with_precision_and_scale(18, 4)
            .unwrap();
        let negative_scale = Decimal128Array::from(vec![Some(123), Some(-4), None, Some(0)])
            .with_precision_and_scale(5, -2)
            .unwrap();
        let b = batch(vec![
            ("d128", arc(d128)),
            ("d256", arc(d256)),
            ("d32", arc(d32)),
            ("d64", arc(d64)),
            ("neg_scale", arc(negative_scale)),
        ]);
        let w = "123456789012345678901234567890123456789012345678901234567890123456.7890123456";
        let minus_w =
            "-123456789012345678901234567890123456789012345678901234567890123456.7890123456";
        check(
            &b,
            &[
                scalar(
                    "d128",
                    json!([
                        "12345678901234567890123456789012345.678",
                        "-0.001",
                        null,
                        "0.000"
                    ]),
                    vec![
                        "12345678901234567890123456789012345.678",
                        "-0.001",
                        "",
                        "0.000",
                    ],
                ),
                scalar(
                    "d256",
                    json!([w, minus_w, null, null]),
                    vec![w, minus_w, "", ""],
                ),
                scalar(
                    "d32",
                    json!(["12345.67", null, "-0.05", "0.00"]),
                    vec!["12345.67", "", "-0.05", "0.00"],
                ),
                scalar(
                    "d64",
                    json!(["12345678901234.5678", null, null, "0.0001"]),
                    vec!["12345678901234.5678", "", "", "0.0001"],
                ),
                // A negative scale: Arrow's text (as CAST to VARCHAR gives), zeros kept.
                scalar(
                    "neg_scale",
                    json!(["12300", "-400", null, "000"]),
                    vec!["12300", "-400", "", "000"],
                ),
            ],
        );
    }

    #[test]
    fn format_big_integers_are_strings_small_ones_numbers() {
        let i = Int64Array::from(vec![
            Some(SAFE),
            Some(SAFE + 1),
            Some(-SAFE),
            Some(-SAFE - 1),
            Some(i64::MIN),
            Some(i64::MAX),
            Some(0),
            None,
        ]);
        let u = UInt64Array::from(vec![
            Some(SAFE as u64),
            Some(SAFE as u64 + 1),
            Some(u64::MAX),
            Some(0),
            Some(42),
            None,
            Some(1 << 60),
            Some(7),
        ]);
        let n = Int32Array::from(vec![1, -2, i32::MAX, i32::MIN, 0, 5, 6, 7]);
        let b = batch(vec![("i", arc(i)), ("u", arc(u)), ("count", arc(n))]);
        check(
            &b,
            &[
                scalar(
                    "i",
                    json!([
                        9007199254740991i64,
                        "9007199254740992",
                        -9007199254740991i64,
                        "-9007199254740992",
                        "-9223372036854775808",
                        "9223372036854775807",
                        0,
                        null
                    ]),
                    vec![
                        "9007199254740991",
                        "9007199254740992",
                        "-9007199254740991",
                        "-9007199254740992",
                        "-9223372036854775808",
                        "9223372036854775807",
                        "0",
                        "",
                    ],
                ),
                scalar(
                    "u",
                    json!([
                        9007199254740991u64,
                        "9007199254740992",
                        "18446744073709551615",
                        0,
                        42,
                        null,
                        "1152921504606846976",
                        7
                    ]),
                    vec![
                        "9007199254740991",
                        "9007199254740992",
                        "18446744073709551615",
                        "0",
                        "42",
                        "",
                        "1152921504606846976",
                        "7",
                    ],
                ),
                scalar(
                    "count",
                    json!([1, -2, 2147483647, -2147483648, 0, 5, 6, 7]),
                    vec!["1", "-2", "2147483647", "-2147483648", "0", "5", "6", "7"],
                ),
            ],
        );
        // The raw JSON text: small integers are numbers, not strings.
        let text = String::from_utf8(encoded(
            Format::Json,
            b.schema_ref(),
            std::slice::from_ref(&b),
        ))
        .unwrap();
        assert!(
            text.contains(r#"[9007199254740991,9007199254740991,1]"#),
            "{text}"
        );
    }

    /// `List<Struct<d: Decimal128(38, 3), n: Int64, s: Utf8>>`: rows of two structs,
    /// none, and a null list.
    fn list_of_structs() -> ArrayRef {
        let d = Decimal128Array::from(vec![
            12_345_678_901_234_567_890_123_456_789_012_345_678i128,
            1500,
        ])
        .with_precision_and_scale(38, 3)
        .unwrap();
        let fields = Fields::from(vec![
            Field::new("d", d.data_type().clone(), true),
            Field::new("n", DataType::Int64, true),
            Field::new("s", DataType::Utf8, true),
        ]);
        let structs = StructArray::new(
            fields.clone(),
            vec![
                arc(d),
                arc(Int64Array::from(vec![i64::MAX, 5])),
                arc(StringArray::from(vec![Some("x,\"y\"\n"), None])),
            ],
            None,
        );
        arc(ListArray::new(
            Arc::new(Field::new_list_field(DataType::Struct(fields), true)),
            OffsetBuffer::from_lengths([2, 0, 0]),
            arc(structs),
            Some(NullBuffer::from(vec![true, true, false])),
        ))
    }

    #[test]
    fn format_nested_values_follow_the_json_rules() {
        let mut strings = MapBuilder::new(None, StringBuilder::new(), Int64Builder::new());
        strings.keys().append_value("k");
        strings.values().append_value(SAFE + 1);
        strings.keys().append_value("z");
        strings.values().append_null();
        strings.append(true).unwrap();
        strings.append(true).unwrap();
        strings.append(false).unwrap();
        let decimal = DataType::Decimal128(38, 3);
        let mut ints = MapBuilder::new(
            None,
            Int32Builder::new(),
            Decimal128Builder::new().with_data_type(decimal.clone()),
        );
        ints.keys().append_value(1);
        ints.values().append_value(500);
        ints.append(true).unwrap();
        ints.append(false).unwrap();
        ints.keys().append_value(-2);
        ints.values().append_value(i128::from(i64::MAX) * 1000);
        ints.keys().append_value(3);
        ints.values().append_null();
        ints.append(true).unwrap();

        let struct_fields = Fields::from(vec![
            Field::new("a", DataType::UInt64, true),
            Field::new_list("b", Field::new_list_field(DataType::Int64, true), true),
        ]);
        let b_lists = ListArray::new(
            Arc::new(Field::new_list_field(DataType::Int64, true)),
            OffsetBuffer::from_lengths([2, 0, 0]),
            arc(Int64Array::from(vec![Some(1), Some(i64::MIN)])),
            Some(NullBuffer::from(vec![true, true, false])),
        );
        let structs = StructArray::new(
            struct_fields,
            vec![arc(UInt64Array::from(vec![u64::MAX, 0, 1])), arc(b_lists)],
            Some(NullBuffer::from(vec![true, false, true])),
        );

        let union_fields = UnionFields::try_new(
            [0, 1],
            [
                Field::new("i", DataType::Int64, true),
                Field::new("s", DataType::Utf8, true),
            ],
        )
        .unwrap();
        let sparse = UnionArray::try_new(
            union_fields.clone(),
            ScalarBuffer::from(vec![0i8, 1, 0]),
            None,
            vec![
                arc(Int64Array::from(vec![Some(i64::MAX), Some(0), None])),
                arc(StringArray::from(vec!["", "hello", ""])),
            ],
        )
        .unwrap();
        let dense = UnionArray::try_new(
            union_fields,
            ScalarBuffer::from(vec![1i8, 0, 0]),
            Some(ScalarBuffer::from(vec![0i32, 1, 0])),
            vec![
                arc(Int64Array::from(vec![Some(-SAFE - 1), Some(3)])),
                arc(StringArray::from(vec!["só"])),
            ],
        )
        .unwrap();

        let fixed = FixedSizeListArray::new(
            Arc::new(Field::new_list_field(DataType::Int64, true)),
            2,
            arc(Int64Array::from(vec![
                Some(1),
                Some(SAFE + 1),
                None,
                None,
                Some(5),
                None,
            ])),
            Some(NullBuffer::from(vec![true, false, true])),
        );
        let large = LargeListArray::new(
            Arc::new(Field::new_list_field(decimal.clone(), true)),
            OffsetBuffer::from_lengths([1, 1, 0]),
            arc(Decimal128Array::from(vec![Some(1), None])
                .with_precision_and_scale(38, 3)
                .unwrap()),
            None,
        );
        let view = ListViewArray::new(
            Arc::new(Field::new_list_field(DataType::UInt64, true)),
            ScalarBuffer::from(vec![1i32, 0, 0]),
            ScalarBuffer::from(vec![1i32, 2, 0]),
            arc(UInt64Array::from(vec![u64::MAX, 2])),
            None,
        );
        let dictionary_of_structs = DictionaryArray::<Int32Type>::try_new(
            Int32Array::from(vec![Some(0), Some(0), None]),
            arc(StructArray::new(
                Fields::from(vec![Field::new("x", DataType::Int64, true)]),
                vec![arc(Int64Array::from(vec![1i64 << 60]))],
                None,
            )),
        )
        .unwrap();

        let b = batch(vec![
            ("events", list_of_structs()),
            ("by_name", arc(strings.finish())),
            ("by_int", arc(ints.finish())),
            ("record", arc(structs)),
            ("sparse", arc(sparse)),
            ("dense", arc(dense)),
            ("pairs", arc(fixed)),
            ("large", arc(large)),
            ("view", arc(view)),
            ("dict", arc(dictionary_of_structs)),
        ]);
        check(
            &b,
            &[
                nested(
                    "events",
                    json!([
                        [
                            {"d": "12345678901234567890123456789012345.678", "n": "9223372036854775807", "s": "x,\"y\"\n"},
                            {"d": "1.500", "n": 5, "s": null}
                        ],
                        [],
                        null
                    ]),
                ),
                nested(
                    "by_name",
                    json!([{"k": "9007199254740992", "z": null}, {}, null]),
                ),
                nested(
                    "by_int",
                    json!([{"1": "0.500"}, null, {"-2": "9223372036854775807.000", "3": null}]),
                ),
                nested(
                    "record",
                    json!([
                        {"a": "18446744073709551615", "b": [1, "-9223372036854775808"]},
                        null,
                        {"a": 1, "b": null}
                    ]),
                ),
                nested("sparse", json!(["9223372036854775807", "hello", null])),
                nested("dense", json!(["só", 3, "-9007199254740992"])),
                nested("pairs", json!([[1, "9007199254740992"], null, [5, null]])),
                nested("large", json!([["0.001"], [null], []])),
                nested("view", json!([[2], ["18446744073709551615", 2], []])),
                nested(
                    "dict",
                    json!([{"x": "1152921504606846976"}, {"x": "1152921504606846976"}, null]),
                ),
            ],
        );
    }

    #[test]
    fn format_scalar_types_encode_everywhere() {
        let run_ends = Int32Array::from(vec![2, 3]);
        let runs =
            RunArray::<Int32Type>::try_new(&run_ends, &StringArray::from(vec![Some("run"), None]))
                .unwrap();
        let b = batch(vec![
            (
                "binary",
                arc(BinaryArray::from(vec![
                    Some(&b"hi"[..]),
                    Some(&[0, 255][..]),
                    None,
                ])),
            ),
            (
                "large_binary",
                arc(LargeBinaryArray::from(vec![
                    Some(&b""[..]),
                    None,
                    Some(&[16][..]),
                ])),
            ),
            (
                "fixed",
                arc(FixedSizeBinaryArray::try_from_sparse_iter_with_size(
                    vec![Some(vec![0xab, 0xcd]), None, Some(vec![0, 1])].into_iter(),
                    2,
                )
                .unwrap()),
            ),
            (
                "binary_view",
                arc(BinaryViewArray::from(vec![
                    Some(&b"a longer value than twelve bytes"[..]),
                    None,
                    Some(&[1][..]),
                ])),
            ),
            (
                "large_text",
                arc(LargeStringArray::from(vec![
                    Some("é \"q\"\nline"),
                    Some(""),
                    None,
                ])),
            ),
            (
                "text_view",
                arc(StringViewArray::from(vec![
                    Some("a string longer than twelve bytes"),
                    None,
                    Some("a,b"),
                ])),
            ),
            (
                "dict",
                arc(DictionaryArray::<Int32Type>::try_new(
                    Int32Array::from(vec![Some(0), None, Some(1)]),
                    arc(StringArray::from(vec![Some("red"), None])),
                )
                .unwrap()),
            ),
            (
                "date",
                arc(Date32Array::from(vec![Some(19723), None, Some(0)])),
            ),
            (
                "ts",
                arc(
                    TimestampMillisecondArray::from(vec![Some(0), Some(1_704_067_200_123), None])
                        .with_timezone("+02:00"),
                ),
            ),
            (
                "time",
                arc(Time64MicrosecondArray::from(vec![
                    Some(3_723_000_001),
                    None,
                    Some(0),
                ])),
            ),
            (
                "duration",
                arc(DurationSecondArray::from(vec![Some(90), None, Some(-1)])),
            ),
            (
                "months",
                arc(IntervalYearMonthArray::from(vec![Some(14), None, Some(0)])),
            ),
            (
                "day_time",
                arc(IntervalDayTimeArray::from(vec![
                    Some(IntervalDayTime::new(1, 500)),
                    None,
                    Some(IntervalDayTime::new(0, 0)),
                ])),
            ),
            (
                "month_day_nano",
                arc(IntervalMonthDayNanoArray::from(vec![
                    Some(IntervalMonthDayNano::new(1, 2, 3_000_000_000)),
                    None,
                    Some(IntervalMonthDayNano::new(0, 0, 0)),
                ])),
            ),
            ("nothing", arc(NullArray::new(3))),
            (
                "float",
                arc(Float64Array::from(vec![
                    f64::NAN,
                    f64::INFINITY,
                    f64::NEG_INFINITY,
                ])),
            ),
            (
                "half",
                arrow::compute::cast(
                    &Float32Array::from(vec![Some(1.5), Some(f32::NAN), None]),
                    &DataType::Float16,
                )
                .unwrap(),
            ),
            (
                "flag",
                arc(BooleanArray::from(vec![Some(true), Some(false), None])),
            ),
            ("runs", arc(runs)),
        ]);
        check(
            &b,
            &[
                scalar(
                    "binary",
                    json!(["6869", "00ff", null]),
                    vec!["6869", "00ff", ""],
                ),
                scalar("large_binary", json!(["", null, "10"]), vec!["", "", "10"]),
                scalar(
                    "fixed",
                    json!(["abcd", null, "0001"]),
                    vec!["abcd", "", "0001"],
                ),
                scalar(
                    "binary_view",
                    json!([
                        "61206c6f6e6765722076616c7565207468616e207477656c7665206279746573",
                        null,
                        "01"
                    ]),
                    vec![
                        "61206c6f6e6765722076616c7565207468616e207477656c7665206279746573",
                        "",
                        "01",
                    ],
                ),
                scalar(
                    "large_text",
                    json!(["é \"q\"\nline", "", null]),
                    vec!["é \"q\"\nline", "", ""],
                ),
                scalar(
                    "text_view",
                    json!(["a string longer than twelve bytes", null, "a,b"]),
                    vec!["a string longer than twelve bytes", "", "a,b"],
                ),
                // A null key and a key to a null value are both null.
                scalar("dict", json!(["red", null, null]), vec!["red", "", ""]),
                scalar(
                    "date",
                    json!(["2024-01-01", null, "1970-01-01"]),
                    vec!["2024-01-01", "", "1970-01-01"],
                ),
                scalar(
                    "ts",
                    json!([
                        "1970-01-01T02:00:00+02:00",
                        "2024-01-01T02:00:00.123+02:00",
                        null
                    ]),
                    vec![
                        "1970-01-01T02:00:00+02:00",
                        "2024-01-01T02:00:00.123+02:00",
                        "",
                    ],
                ),
                scalar(
                    "time",
                    json!(["01:02:03.000001", null, "00:00:00"]),
                    vec!["01:02:03.000001", "", "00:00:00"],
                ),
                scalar(
                    "duration",
                    json!(["PT90S", null, "-PT1S"]),
                    vec!["PT90S", "", "-PT1S"],
                ),
                scalar(
                    "months",
                    json!(["1 years 2 mons", null, "0 years 0 mons"]),
                    vec!["1 years 2 mons", "", "0 years 0 mons"],
                ),
                scalar(
                    "day_time",
                    json!(["1 days 0.500 secs", null, "0 secs"]),
                    vec!["1 days 0.500 secs", "", "0 secs"],
                ),
                scalar(
                    "month_day_nano",
                    json!(["1 mons 2 days 3.000000000 secs", null, "0 secs"]),
                    vec!["1 mons 2 days 3.000000000 secs", "", "0 secs"],
                ),
                scalar("nothing", json!([null, null, null]), vec!["", "", ""]),
                // JSON has no NaN or infinity: null. CSV keeps their text.
                scalar(
                    "float",
                    json!([null, null, null]),
                    vec!["NaN", "inf", "-inf"],
                ),
                scalar("half", json!([1.5, null, null]), vec!["1.5", "NaN", ""]),
                scalar(
                    "flag",
                    json!([true, false, null]),
                    vec!["true", "false", ""],
                ),
                scalar("runs", json!(["run", "run", null]), vec!["run", "run", ""]),
            ],
        );
    }

    #[test]
    fn format_empty_results_keep_their_columns() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("x,y", DataType::Utf8, true),
            Field::new("events", list_of_structs().data_type().clone(), true),
        ]));
        let columns = json!([
            {"name": "n", "type": "Int64"},
            {"name": "x,y", "type": "Utf8"},
            {"name": "events", "type": list_of_structs().data_type().to_string()},
        ]);
        for batches in [vec![], vec![RecordBatch::new_empty(schema.clone())]] {
            for format in FORMATS {
                let chunks = stream(format, &schema, &batches);
                assert_eq!(chunks.concat(), encoded(format, &schema, &batches));
            }
            let json: Value =
                serde_json::from_slice(&encoded(Format::Json, &schema, &batches)).unwrap();
            assert_eq!(
                json,
                json!({"columns": columns, "rows": [], "stats": serde_json::from_str::<Value>(STATS_JSON).unwrap()})
            );
            assert!(encoded(Format::Ndjson, &schema, &batches).is_empty());
            assert_eq!(
                String::from_utf8(encoded(Format::Csv, &schema, &batches)).unwrap(),
                "n,\"x,y\",events\n"
            );
            let every = every_format(&schema, &batches);
            assert_eq!(every.csv, [["n", "x,y", "events"]]);
        }
    }

    /// The chunks of a ChunkEncoder: one per batch, then `finish`'s.
    fn stream(format: Format, schema: &SchemaRef, batches: &[RecordBatch]) -> Vec<Vec<u8>> {
        let mut encoder = ChunkEncoder::new(format, schema.clone());
        let mut chunks: Vec<Vec<u8>> = batches.iter().map(|b| encoder.batch(b).unwrap()).collect();
        chunks.push(encoder.finish(&STATS).unwrap());
        chunks
    }

    #[test]
    fn format_streamed_chunks_concatenate_to_the_whole_answer() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new(
                "color",
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                true,
            ),
        ]));
        let part = |n: Vec<i64>, keys: Vec<i32>, values: Vec<&str>| {
            let colors = DictionaryArray::<Int32Type>::try_new(
                Int32Array::from(keys),
                arc(StringArray::from(values)),
            )
            .unwrap();
            RecordBatch::try_new(schema.clone(), vec![arc(Int64Array::from(n)), arc(colors)])
                .unwrap()
        };
        let batches = vec![
            part(vec![1, SAFE + 1], vec![0, 1], vec!["red", "blue"]),
            part(vec![], vec![], vec![]),
            part(vec![3], vec![0], vec!["green"]),
        ];
        for format in FORMATS {
            let chunks = stream(format, &schema, &batches);
            assert_eq!(
                chunks.concat(),
                encoded(format, &schema, &batches),
                "{format:?}"
            );
        }
        // JSON: the head with the first batch, rows comma-separated across batches, the
        // stats at the end.
        let chunks: Vec<String> = stream(Format::Json, &schema, &batches)
            .into_iter()
            .map(|c| String::from_utf8(c).unwrap())
            .collect();
        assert_eq!(
            chunks,
            [
                r#"{"columns":[{"name":"n","type":"Int64"},{"name":"color","type":"Dictionary(Int32, Utf8)"}],"rows":[[1,"red"],["9007199254740992","blue"]"#.to_string(),
                String::new(),
                r#",[3,"green"]"#.to_string(),
                format!(r#"],"stats":{STATS_JSON}}}"#),
            ]
        );
        let every = every_format(&schema, &batches);
        assert_eq!(
            every.json["rows"],
            json!([[1, "red"], ["9007199254740992", "blue"], [3, "green"]])
        );
        assert_eq!(
            every.ndjson,
            [
                json!({"n": 1, "color": "red"}),
                json!({"n": "9007199254740992", "color": "blue"}),
                json!({"n": 3, "color": "green"}),
            ]
        );
        assert_eq!(
            every.csv,
            [
                ["n", "color"],
                ["1", "red"],
                ["9007199254740992", "blue"],
                ["3", "green"]
            ]
        );
        // CSV: the header once, with the first chunk.
        let csv = stream(Format::Csv, &schema, &batches);
        assert_eq!(csv[0], b"n,color\n1,red\n9007199254740992,blue\n");
        assert_eq!(csv[2], b"3,green\n");
        assert!(csv[3].is_empty());
    }

    #[test]
    fn format_json_document_keeps_its_structure() {
        let b = batch(vec![
            ("user_id", arc(StringArray::from(vec!["u1", "u2"]))),
            ("n", arc(Int64Array::from(vec![6, 6]))),
            ("score", arc(Float64Array::from(vec![0.5, 2.0]))),
        ]);
        let text = String::from_utf8(encoded(
            Format::Json,
            b.schema_ref(),
            std::slice::from_ref(&b),
        ))
        .unwrap();
        assert_eq!(
            text,
            format!(
                r#"{{"columns":[{{"name":"user_id","type":"Utf8"}},{{"name":"n","type":"Int64"}},{{"name":"score","type":"Float64"}}],"rows":[["u1",6,0.5],["u2",6,2.0]],"stats":{STATS_JSON}}}"#
            )
        );
        let ndjson = String::from_utf8(encoded(
            Format::Ndjson,
            b.schema_ref(),
            std::slice::from_ref(&b),
        ))
        .unwrap();
        assert_eq!(
            ndjson,
            "{\"user_id\":\"u1\",\"n\":6,\"score\":0.5}\n{\"user_id\":\"u2\",\"n\":6,\"score\":2.0}\n"
        );
    }

    #[test]
    fn format_rejects_a_batch_of_another_shape() {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true)]));
        let b = batch(vec![
            ("a", arc(Int64Array::from(vec![1]))),
            ("b", arc(Int64Array::from(vec![2]))),
        ]);
        for format in FORMATS {
            let e = ChunkEncoder::new(format, schema.clone())
                .batch(&b)
                .unwrap_err();
            assert_eq!(e.code, "encode");
            assert!(e.message.contains("2 columns"), "{}", e.message);
        }
    }
}
