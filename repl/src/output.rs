//! How the REPL prints a result: a table, CSV, JSON lines, or one field per line.

use std::str::FromStr;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::util::display::{ArrayFormatter, FormatOptions};

/// The output formats of `\format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// An aligned table with a header.
    Table,
    /// CSV with a header line.
    Csv,
    /// One JSON object per row.
    Json,
    /// Each row as `column | value` lines, for wide rows.
    Vertical,
}

/// A `\format` argument that names no format.
#[derive(Debug, thiserror::Error)]
#[error("unknown format {0:?}: use table, csv, json or vertical")]
pub struct UnknownFormat(String);

impl FromStr for OutputFormat {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Self, UnknownFormat> {
        match s.trim().to_ascii_lowercase().as_str() {
            "table" => Ok(OutputFormat::Table),
            "csv" => Ok(OutputFormat::Csv),
            "json" => Ok(OutputFormat::Json),
            "vertical" => Ok(OutputFormat::Vertical),
            other => Err(UnknownFormat(other.to_string())),
        }
    }
}

/// `batches` rendered in `format` (an empty result still shows its columns as a table).
pub fn render(
    format: OutputFormat,
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> Result<String, ArrowError> {
    let mut out = Vec::new();
    match format {
        OutputFormat::Table => {
            let table = if batches.iter().all(|b| b.num_rows() == 0) {
                arrow::util::pretty::pretty_format_batches(&[RecordBatch::new_empty(
                    schema.clone(),
                )])?
            } else {
                arrow::util::pretty::pretty_format_batches(batches)?
            };
            out.extend(table.to_string().into_bytes());
            out.push(b'\n');
        }
        OutputFormat::Csv => {
            let mut writer = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut out);
            if batches.is_empty() {
                writer.write(&RecordBatch::new_empty(schema.clone()))?;
            }
            for batch in batches {
                writer.write(batch)?;
            }
        }
        OutputFormat::Json => {
            let mut writer = arrow::json::LineDelimitedWriter::new(&mut out);
            for batch in batches {
                writer.write(batch)?;
            }
            writer.finish()?;
        }
        OutputFormat::Vertical => {
            let options = FormatOptions::default().with_null("NULL");
            let width = schema
                .fields()
                .iter()
                .map(|f| f.name().chars().count())
                .max()
                .unwrap_or(0);
            let mut record = 0;
            for batch in batches {
                let formatters = batch
                    .columns()
                    .iter()
                    .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
                    .collect::<Result<Vec<_>, _>>()?;
                for row in 0..batch.num_rows() {
                    record += 1;
                    out.extend(format!("-[ RECORD {record} ]-\n").into_bytes());
                    for (field, formatter) in schema.fields().iter().zip(&formatters) {
                        out.extend(
                            format!("{:<width$} | {}\n", field.name(), formatter.value(row))
                                .into_bytes(),
                        );
                    }
                }
            }
        }
    }
    String::from_utf8(out).map_err(|e| ArrowError::ExternalError(Box::new(e)))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Int64Array, StringArray};

    use super::*;

    #[test]
    fn every_format() {
        let batch = RecordBatch::try_from_iter([
            ("n", Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef),
            (
                "name",
                Arc::new(StringArray::from(vec![Some("a"), None])) as ArrayRef,
            ),
        ])
        .unwrap();
        let schema = batch.schema();
        let table = render(OutputFormat::Table, &schema, std::slice::from_ref(&batch)).unwrap();
        assert!(table.contains("| n | name |"), "{table}");
        let csv = render(OutputFormat::Csv, &schema, std::slice::from_ref(&batch)).unwrap();
        assert_eq!(csv, "n,name\n1,a\n2,\n");
        let json = render(OutputFormat::Json, &schema, std::slice::from_ref(&batch)).unwrap();
        assert_eq!(json, "{\"n\":1,\"name\":\"a\"}\n{\"n\":2}\n");
        let vertical = render(OutputFormat::Vertical, &schema, &[batch]).unwrap();
        assert!(
            vertical.contains("-[ RECORD 2 ]-\nn    | 2\nname | NULL\n"),
            "{vertical}"
        );
        let empty = render(OutputFormat::Table, &schema, &[]).unwrap();
        assert!(empty.contains("| n | name |"), "{empty}");
        assert!("VERTICAL".parse::<OutputFormat>().is_ok());
        assert!("xml".parse::<OutputFormat>().is_err());
    }
}
