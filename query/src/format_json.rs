//! JSON values of Arrow arrays, for the JSON and NDJSON formats and for the nested
//! cells of CSV: arrow-json's encoders, with an [`EncoderFactory`] that applies our
//! rules wherever a value sits (top level, list element, struct field, map value,
//! dictionary value, union member):
//!
//! - decimals (`Decimal32/64/128/256`) are JSON strings holding their exact value
//!   (`"12345678901234567890123456789012345.678"`): a JSON number would be read as a
//!   double by most clients and lose digits;
//! - `Int64` / `UInt64` values beyond ±(2^53 − 1) are JSON strings, smaller ones stay
//!   JSON numbers: a double (JavaScript's only number) holds integers exactly up to 2^53;
//! - floats that are NaN or ±infinity are `null` (arrow-json's behaviour, kept: JSON has
//!   no literal for them);
//! - binary values are lowercase hex strings (arrow-json's behaviour);
//! - maps are JSON objects; a key that is not a string is written as the text of its
//!   JSON value (`{"1": …}`) — arrow-json alone refuses such maps; a key present twice
//!   is written twice (valid JSON, though most parsers keep the last);
//! - a union value is the value of its member (arrow-json alone refuses unions);
//! - a dictionary value that is null (not only a null key) is `null`.

use std::io::Write;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::buffer::{OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, FieldRef, Int64Type, UInt64Type};
use arrow::error::ArrowError;
use arrow::json::writer::{make_encoder, Encoder, EncoderFactory, EncoderOptions, NullableEncoder};
use arrow::util::display::{ArrayFormatter, FormatOptions};

/// The biggest integer a double holds exactly, and all below it: 2^53 − 1.
pub(super) const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// The encoder options of every JSON value we write: nulls explicit, our rules.
pub(super) fn options() -> EncoderOptions {
    EncoderOptions::default()
        .with_explicit_nulls(true)
        .with_encoder_factory(Arc::new(Rules))
}

/// Writes `s` as a JSON string.
pub(super) fn write_str(s: &str, out: &mut Vec<u8>) {
    // Writing to a Vec cannot fail, and a &str is always valid to serialize.
    let _ = serde_json::to_writer(out, s);
}

/// The encoder of one array's JSON values.
pub(super) fn encoder<'a>(
    field: &'a FieldRef,
    array: &'a dyn Array,
    options: &'a EncoderOptions,
) -> Result<NullableEncoder<'a>, ArrowError> {
    make_encoder(field, array, options).map_err(|e| {
        ArrowError::JsonError(format!(
            "column {:?} of type {}: {e}",
            field.name(),
            field.data_type()
        ))
    })
}

/// The encoders of a batch's columns, by position (never by name).
pub(super) struct Columns<'a> {
    encoders: Vec<NullableEncoder<'a>>,
}

impl<'a> Columns<'a> {
    /// Encoders for every column of `batch`.
    pub(super) fn try_new(
        batch: &'a RecordBatch,
        options: &'a EncoderOptions,
    ) -> Result<Columns<'a>, ArrowError> {
        let encoders = batch
            .schema_ref()
            .fields()
            .iter()
            .zip(batch.columns())
            .map(|(field, column)| encoder(field, column.as_ref(), options))
            .collect::<Result<_, _>>()?;
        Ok(Columns { encoders })
    }

    /// Writes row `row` as a JSON array of its values, in column order.
    pub(super) fn write_array_row(&mut self, row: usize, out: &mut Vec<u8>) {
        out.push(b'[');
        for (i, encoder) in self.encoders.iter_mut().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_value(encoder, row, out);
        }
        out.push(b']');
    }

    /// Writes row `row` as a JSON object; `keys[i]` is column i's key, already encoded
    /// as a JSON string followed by `:`.
    pub(super) fn write_object_row(&mut self, keys: &[Vec<u8>], row: usize, out: &mut Vec<u8>) {
        out.push(b'{');
        for (i, (encoder, key)) in self.encoders.iter_mut().zip(keys).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(key);
            write_value(encoder, row, out);
        }
        out.push(b'}');
    }
}

/// Writes the JSON value at `idx`: `null` or the encoder's value.
pub(super) fn write_value(encoder: &mut NullableEncoder<'_>, idx: usize, out: &mut Vec<u8>) {
    if encoder.is_null(idx) {
        out.extend_from_slice(b"null");
    } else {
        encoder.encode(idx, out);
    }
}

/// Our encoders, for the types where arrow-json's defaults lose information or fail.
/// arrow-json asks the factory first for every array it encodes, nested ones included,
/// so the rules hold at every depth.
#[derive(Debug)]
struct Rules;

impl EncoderFactory for Rules {
    fn make_default_encoder<'a>(
        &self,
        field: &'a FieldRef,
        array: &'a dyn Array,
        options: &'a EncoderOptions,
    ) -> Result<Option<NullableEncoder<'a>>, ArrowError> {
        let (encoder, nulls): (Box<dyn Encoder + 'a>, _) = match array.data_type() {
            DataType::Int64 => {
                let values = array.as_primitive::<Int64Type>().values().clone();
                (Box::new(Int64Encoder(values)), array.nulls().cloned())
            }
            DataType::UInt64 => {
                let values = array.as_primitive::<UInt64Type>().values().clone();
                (Box::new(UInt64Encoder(values)), array.nulls().cloned())
            }
            DataType::Decimal32(_, _)
            | DataType::Decimal64(_, _)
            | DataType::Decimal128(_, _)
            | DataType::Decimal256(_, _) => {
                let format = FormatOptions::new().with_display_error(true);
                let formatter = ArrayFormatter::try_new(array, &format)?;
                (Box::new(DecimalEncoder(formatter)), array.nulls().cloned())
            }
            DataType::Dictionary(_, _) => {
                let dictionary = array.as_any_dictionary();
                let values = make_encoder(field, dictionary.values().as_ref(), options)?;
                // `normalized_keys` needs values; without any, every key is null.
                let keys = if dictionary.values().is_empty() {
                    Vec::new()
                } else {
                    dictionary.normalized_keys()
                };
                // Null where the key is null or points to a null value.
                (
                    Box::new(DictionaryEncoder { keys, values }),
                    array.logical_nulls(),
                )
            }
            DataType::Map(_, _) => {
                let map = array.as_map();
                let keys = make_encoder(field, map.keys().as_ref(), options)?;
                let values = make_encoder(field, map.values().as_ref(), options)?;
                let encoder = MapEncoder {
                    offsets: map.offsets().clone(),
                    keys,
                    values,
                    key: Vec::new(),
                };
                (Box::new(encoder), array.nulls().cloned())
            }
            DataType::Union(fields, _) => {
                let union = array.as_union();
                let mut members: Vec<Option<NullableEncoder<'a>>> =
                    (0..=i8::MAX).map(|_| None).collect();
                for (type_id, field) in fields.iter() {
                    let slot = usize::try_from(type_id).map_err(|_| {
                        ArrowError::JsonError(format!("union type id {type_id} is negative"))
                    })?;
                    members[slot] =
                        Some(make_encoder(field, union.child(type_id).as_ref(), options)?);
                }
                let encoder = UnionEncoder {
                    type_ids: union.type_ids().clone(),
                    offsets: union.offsets().cloned(),
                    members,
                };
                // A union has no validity of its own: a row is null when its member is.
                (Box::new(encoder), array.logical_nulls())
            }
            _ => return Ok(None),
        };
        Ok(Some(NullableEncoder::new(encoder, nulls)))
    }
}

/// `Int64`: a number within ±(2^53 − 1), else a string.
struct Int64Encoder(ScalarBuffer<i64>);

impl Encoder for Int64Encoder {
    fn encode(&mut self, idx: usize, out: &mut Vec<u8>) {
        let v = self.0[idx];
        if v.unsigned_abs() <= MAX_SAFE_INTEGER {
            let _ = write!(out, "{v}");
        } else {
            let _ = write!(out, "\"{v}\"");
        }
    }
}

/// `UInt64`: a number up to 2^53 − 1, else a string.
struct UInt64Encoder(ScalarBuffer<u64>);

impl Encoder for UInt64Encoder {
    fn encode(&mut self, idx: usize, out: &mut Vec<u8>) {
        let v = self.0[idx];
        if v <= MAX_SAFE_INTEGER {
            let _ = write!(out, "{v}");
        } else {
            let _ = write!(out, "\"{v}\"");
        }
    }
}

/// Decimals: their exact text (digits, `-`, `.`: nothing to escape) as a string.
struct DecimalEncoder<'a>(ArrayFormatter<'a>);

impl Encoder for DecimalEncoder<'_> {
    fn encode(&mut self, idx: usize, out: &mut Vec<u8>) {
        out.push(b'"');
        let _ = write!(out, "{}", self.0.value(idx));
        out.push(b'"');
    }
}

struct DictionaryEncoder<'a> {
    keys: Vec<usize>,
    values: NullableEncoder<'a>,
}

impl Encoder for DictionaryEncoder<'_> {
    fn encode(&mut self, idx: usize, out: &mut Vec<u8>) {
        match self.keys.get(idx) {
            Some(&key) => write_value(&mut self.values, key, out),
            None => out.extend_from_slice(b"null"),
        }
    }
}

/// A map as a JSON object, with explicit nulls; keys that are not JSON strings
/// (numbers, booleans, …) become the string of their JSON text.
struct MapEncoder<'a> {
    offsets: OffsetBuffer<i32>,
    keys: NullableEncoder<'a>,
    values: NullableEncoder<'a>,
    key: Vec<u8>,
}

impl Encoder for MapEncoder<'_> {
    fn encode(&mut self, idx: usize, out: &mut Vec<u8>) {
        let start = self.offsets[idx] as usize;
        let end = self.offsets[idx + 1] as usize;
        out.push(b'{');
        for entry in start..end {
            if entry > start {
                out.push(b',');
            }
            self.key.clear();
            write_value(&mut self.keys, entry, &mut self.key);
            if self.key.first() == Some(&b'"') {
                out.extend_from_slice(&self.key);
            } else {
                write_str(&String::from_utf8_lossy(&self.key), out);
            }
            out.push(b':');
            write_value(&mut self.values, entry, out);
        }
        out.push(b'}');
    }
}

/// A union value: the value of the member it holds.
struct UnionEncoder<'a> {
    type_ids: ScalarBuffer<i8>,
    /// Dense unions: where each value is in its member; sparse: at the same index.
    offsets: Option<ScalarBuffer<i32>>,
    members: Vec<Option<NullableEncoder<'a>>>,
}

impl Encoder for UnionEncoder<'_> {
    fn encode(&mut self, idx: usize, out: &mut Vec<u8>) {
        let offset = match &self.offsets {
            Some(offsets) => offsets[idx] as usize,
            None => idx,
        };
        let member = usize::try_from(self.type_ids[idx])
            .ok()
            .and_then(|slot| self.members.get_mut(slot))
            .and_then(Option::as_mut);
        match member {
            Some(encoder) => write_value(encoder, offset, out),
            None => out.extend_from_slice(b"null"),
        }
    }
}
