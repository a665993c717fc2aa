//! Feeding Arrow values into sketches with a stable hash: the raw bytes of strings
//! and binaries, the 64-bit value of integers and temporals, the canonical value of
//! floats (as the DataSketches libraries do), never a process-seeded hasher.

use arrow::array::{ArrayRef, AsArray};
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use datafusion::error::{DataFusionError, Result};
use datasketches::hash::value::{canonical_float, raw_bytes};
use datasketches::hll::Coupon;

/// Calls `f(row, coupon)` for each non-null row of `array`.
pub fn for_each_coupon(array: &ArrayRef, mut f: impl FnMut(usize, Coupon)) -> Result<()> {
    let mut bytes = |values: &mut dyn Iterator<Item = Option<&[u8]>>| {
        for (row, v) in values.enumerate() {
            if let Some(b) = v {
                f(row, Coupon::from_value(raw_bytes::from_slice(b)));
            }
        }
    };
    match array.data_type() {
        DataType::Utf8 => bytes(
            &mut array
                .as_string::<i32>()
                .iter()
                .map(|v| v.map(str::as_bytes)),
        ),
        DataType::LargeUtf8 => bytes(
            &mut array
                .as_string::<i64>()
                .iter()
                .map(|v| v.map(str::as_bytes)),
        ),
        DataType::Utf8View => {
            bytes(&mut array.as_string_view().iter().map(|v| v.map(str::as_bytes)))
        }
        DataType::Binary => bytes(&mut array.as_binary::<i32>().iter()),
        DataType::LargeBinary => bytes(&mut array.as_binary::<i64>().iter()),
        DataType::BinaryView => bytes(&mut array.as_binary_view().iter()),
        DataType::FixedSizeBinary(_) => bytes(&mut array.as_fixed_size_binary().iter()),
        DataType::Dictionary(_, value) => {
            let plain = arrow::compute::cast(array, value)?;
            return for_each_coupon(&plain, f);
        }
        DataType::Float16 | DataType::Float32 | DataType::Float64 | DataType::Decimal128(..) => {
            let floats = arrow::compute::cast(array, &DataType::Float64)?;
            for (row, v) in floats.as_primitive::<Float64Type>().iter().enumerate() {
                if let Some(v) = v {
                    f(row, Coupon::from_value(canonical_float::from_f64(v)));
                }
            }
        }
        DataType::Boolean | DataType::Null => {
            return Err(DataFusionError::Plan(format!(
                "sketches take strings, binaries, numbers and temporals, not {}",
                array.data_type()
            )))
        }
        _ => {
            // Integers, dates, times, timestamps, durations: their 64-bit value, hashed
            // as 8 little-endian bytes like a Java `long`.
            let ints = arrow::compute::cast(array, &DataType::Int64).map_err(|e| {
                DataFusionError::Plan(format!(
                    "cannot sketch values of type {}: {e}",
                    array.data_type()
                ))
            })?;
            for (row, v) in ints.as_primitive::<Int64Type>().iter().enumerate() {
                if let Some(v) = v {
                    f(row, Coupon::from_value(v));
                }
            }
        }
    }
    Ok(())
}

/// Calls `f(row, bytes)` for each non-null row of a Binary, LargeBinary or BinaryView array.
pub fn for_each_binary(
    array: &ArrayRef,
    mut f: impl FnMut(usize, &[u8]) -> Result<()>,
) -> Result<()> {
    let mut go = |values: &mut dyn Iterator<Item = Option<&[u8]>>| -> Result<()> {
        for (row, v) in values.enumerate() {
            if let Some(b) = v {
                f(row, b)?;
            }
        }
        Ok(())
    };
    match array.data_type() {
        DataType::Binary => go(&mut array.as_binary::<i32>().iter()),
        DataType::LargeBinary => go(&mut array.as_binary::<i64>().iter()),
        DataType::BinaryView => go(&mut array.as_binary_view().iter()),
        DataType::Null => Ok(()),
        other => Err(DataFusionError::Plan(format!(
            "expected a serialized sketch (Binary, LargeBinary or BinaryView), got {other}"
        ))),
    }
}
