//! Decoding of ONNX `TensorProto`s (initialisers and `Constant` values).

use onnx_protobuf::tensor_proto::{DataLocation, DataType};
use onnx_protobuf::TensorProto;
use protobuf::Enum;

use crate::error::{CompileError, Result};
use crate::ir::{Shape, TensorData};

/// Largest constant mfn accepts (elements); anything bigger is certainly not a MobileFaceNet weight
/// and must not be allocated.
const MAX_CONST_ELEMENTS: usize = 1 << 28;

fn bad(t: &TensorProto, message: impl Into<String>) -> CompileError {
    CompileError::BadTensor { name: t.name.clone(), message: message.into() }
}

pub fn dims(t: &TensorProto) -> Result<Shape> {
    let mut shape = Vec::with_capacity(t.dims.len());
    let mut total: usize = 1;
    for &d in &t.dims {
        let d = usize::try_from(d).map_err(|_| bad(t, format!("negative dimension {d} in {:?}", t.dims)))?;
        total = total.checked_mul(d).filter(|&n| n <= MAX_CONST_ELEMENTS).ok_or_else(|| bad(t, format!("shape {:?} has more than {MAX_CONST_ELEMENTS} elements", t.dims)))?;
        shape.push(d);
    }
    Ok(shape)
}

fn from_raw<const N: usize, T>(t: &TensorProto, n: usize, conv: impl Fn([u8; N]) -> T) -> Result<Vec<T>> {
    if t.raw_data.len() != n * N {
        return Err(bad(t, format!("raw_data has {} bytes, shape {:?} needs {}", t.raw_data.len(), t.dims, n * N)));
    }
    Ok(t.raw_data.chunks_exact(N).map(|c| conv(c.try_into().expect("chunk of N bytes"))).collect())
}

fn check_len<T>(t: &TensorProto, data: Vec<T>, n: usize) -> Result<Vec<T>> {
    if data.len() != n {
        return Err(bad(t, format!("holds {} values, shape {:?} needs {n}", data.len(), t.dims)));
    }
    Ok(data)
}

/// Decodes a tensor to f32 or i64 data, checking its length against its shape.
pub fn decode(t: &TensorProto) -> Result<(Shape, TensorData)> {
    if t.data_location.enum_value() == Ok(DataLocation::EXTERNAL) || !t.external_data.is_empty() {
        return Err(bad(t, "external data is not supported: save the model with its weights inside the file"));
    }
    let shape = dims(t)?;
    let n: usize = shape.iter().product();
    let raw = !t.raw_data.is_empty();
    let data = match DataType::from_i32(t.data_type) {
        Some(DataType::FLOAT) if raw => TensorData::F32(from_raw(t, n, f32::from_le_bytes)?),
        Some(DataType::FLOAT) => TensorData::F32(check_len(t, t.float_data.clone(), n)?),
        Some(DataType::DOUBLE) if raw => TensorData::F32(from_raw(t, n, f64::from_le_bytes)?.into_iter().map(|v| v as f32).collect()),
        Some(DataType::DOUBLE) => TensorData::F32(check_len(t, t.double_data.iter().map(|&v| v as f32).collect(), n)?),
        Some(DataType::INT64) if raw => TensorData::I64(from_raw(t, n, i64::from_le_bytes)?),
        Some(DataType::INT64) => TensorData::I64(check_len(t, t.int64_data.clone(), n)?),
        Some(DataType::INT32) if raw => TensorData::I64(from_raw(t, n, i32::from_le_bytes)?.into_iter().map(i64::from).collect()),
        Some(DataType::INT32) => TensorData::I64(check_len(t, t.int32_data.iter().map(|&v| v as i64).collect(), n)?),
        other => {
            let name = other.map_or_else(|| format!("#{}", t.data_type), |d| format!("{d:?}"));
            return Err(bad(t, format!("data type {name} is not supported (float, double, int32, int64 are)")));
        }
    };
    Ok((shape, data))
}
