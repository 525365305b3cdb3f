//! [`cell`]: one cell of an Arrow array as a JSON value, so that Parquet rows and JSONL
//! lines reach the stages as the same thing (strings, numbers, booleans, lists and
//! structs; `messages` columns are `list<struct<role, content>>`).

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type,
    UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrayRef};
use arrow_schema::DataType;
use serde_json::Value;

/// The value at `row` of `array`; `Err` names an unsupported type.
pub fn cell(array: &ArrayRef, row: usize) -> Result<Value, String> {
    cell_dyn(array.as_ref(), row)
}

fn cell_dyn(a: &dyn Array, row: usize) -> Result<Value, String> {
    if a.is_null(row) {
        return Ok(Value::Null);
    }
    macro_rules! num {
        ($t:ty) => {
            Value::from(a.as_primitive::<$t>().value(row))
        };
    }
    Ok(match a.data_type() {
        DataType::Utf8 => Value::from(a.as_string::<i32>().value(row)),
        DataType::LargeUtf8 => Value::from(a.as_string::<i64>().value(row)),
        DataType::Utf8View => Value::from(a.as_string_view().value(row)),
        DataType::Boolean => Value::from(a.as_boolean().value(row)),
        DataType::Int8 => num!(Int8Type),
        DataType::Int16 => num!(Int16Type),
        DataType::Int32 => num!(Int32Type),
        DataType::Int64 => num!(Int64Type),
        DataType::UInt8 => num!(UInt8Type),
        DataType::UInt16 => num!(UInt16Type),
        DataType::UInt32 => num!(UInt32Type),
        DataType::UInt64 => num!(UInt64Type),
        DataType::Float32 => num!(Float32Type),
        DataType::Float64 => num!(Float64Type),
        DataType::List(_) => list(a.as_list::<i32>().value(row).as_ref())?,
        DataType::LargeList(_) => list(a.as_list::<i64>().value(row).as_ref())?,
        DataType::Struct(fields) => {
            let s = a.as_struct();
            let mut obj = serde_json::Map::new();
            for (i, f) in fields.iter().enumerate() {
                obj.insert(f.name().clone(), cell_dyn(s.column(i).as_ref(), row)?);
            }
            Value::Object(obj)
        }
        other => return Err(format!("unsupported column type {other}")),
    })
}

fn list(values: &dyn Array) -> Result<Value, String> {
    (0..values.len())
        .map(|i| cell_dyn(values, i))
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}
