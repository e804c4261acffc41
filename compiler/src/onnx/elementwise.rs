//! Importers of the element-wise and data-movement ops: activations, arithmetic, Flatten/Reshape,
//! Identity/Dropout and Constant.

use super::{tensor, Ctx, Importer};
use crate::error::Result;
use crate::ir::broadcast::{broadcast_binary, broadcast_shape, per_channel};
use crate::ir::{numel, Act, BinOp, Op, TensorData, ValueId};

pub fn activation(imp: &mut Importer, ctx: &mut Ctx) -> Result<ValueId> {
    let x = imp.required(ctx, 0)?;
    let shape = imp.graph.shape(x).to_vec();
    let act = match ctx.proto.op_type.as_str() {
        "Relu" => Act::Relu,
        "Sigmoid" => Act::Sigmoid,
        "PRelu" => {
            let (s_shape, slope) = imp.const_input(ctx, 1)?;
            let slope = per_channel(&s_shape, &slope, &shape)
                .ok_or_else(|| ctx.err(format!("slope {s_shape:?} must be a scalar or one value per channel of input {shape:?} (e.g. [C,1,1])")))?;
            Act::PRelu(slope)
        }
        _ => clip_bounds(imp, ctx)?,
    };
    imp.emit(ctx, Op::Act(act), vec![x], shape)
}

/// Clip: bounds are attributes before opset 11 and optional constant inputs from 11 on.
fn clip_bounds(imp: &mut Importer, ctx: &mut Ctx) -> Result<Act> {
    if imp.opset < 11 {
        let min = ctx.attrs.float_or("min", f32::MIN)?;
        let max = ctx.attrs.float_or("max", f32::MAX)?;
        return Ok(Act::Clip { min, max });
    }
    let bound = |i: usize, default: f32| -> Result<f32> {
        match imp.input(ctx, i)? {
            None => Ok(default),
            Some(_) => {
                let (s, v) = imp.const_input(ctx, i)?;
                if v.len() != 1 {
                    return Err(ctx.err(format!("bound {i} has shape {s:?}; it must be a scalar")));
                }
                Ok(v[0])
            }
        }
    };
    Ok(Act::Clip { min: bound(1, f32::NEG_INFINITY)?, max: bound(2, f32::INFINITY)? })
}

pub fn binary(imp: &mut Importer, ctx: &mut Ctx) -> Result<ValueId> {
    let op = match ctx.proto.op_type.as_str() {
        "Add" => BinOp::Add,
        "Sub" => BinOp::Sub,
        "Mul" => BinOp::Mul,
        _ => BinOp::Div,
    };
    let (a, b) = (imp.required(ctx, 0)?, imp.required(ctx, 1)?);
    let (sa, sb) = (imp.graph.shape(a).to_vec(), imp.graph.shape(b).to_vec());
    let shape = broadcast_shape(&sa, &sb).ok_or_else(|| ctx.err(format!("shapes {sa:?} and {sb:?} do not broadcast")))?;
    if imp.graph.is_const(a) && imp.graph.is_const(b) {
        let (_, da) = imp.const_input(ctx, 0)?;
        let (_, db) = imp.const_input(ctx, 1)?;
        let (_, data) = broadcast_binary(op, &sa, &da, &sb, &db).expect("shapes broadcast (checked above)");
        return Ok(imp.emit_const(ctx, shape, TensorData::F32(data)));
    }
    let activation = if imp.graph.is_const(a) { &sb } else { &sa };
    if (imp.graph.is_const(a) || imp.graph.is_const(b)) && &shape != activation {
        return Err(ctx.err(format!("the constant operand would broadcast the activation {activation:?} to {shape:?}")));
    }
    imp.emit(ctx, Op::Binary(op), vec![a, b], shape)
}

/// Flatten and Reshape. Both must keep the batch on axis 0: mfn runs every sample separately.
pub fn reshape(imp: &mut Importer, ctx: &mut Ctx) -> Result<ValueId> {
    let x = imp.required(ctx, 0)?;
    let in_shape = imp.graph.shape(x).to_vec();
    let shape = if ctx.proto.op_type == "Flatten" {
        let rank = in_shape.len() as i64;
        let axis = ctx.attrs.int_or("axis", 1)?;
        let axis = if axis < 0 { axis + rank } else { axis };
        if !(0..=rank).contains(&axis) {
            return Err(ctx.attrs.error("axis", &axis.to_string(), &format!(" for a rank-{rank} input")));
        }
        let (head, tail) = in_shape.split_at(axis as usize);
        vec![numel(head), numel(tail)]
    } else {
        let target = match imp.graph.value(imp.required(ctx, 1)?).data.clone() {
            Some(TensorData::I64(t)) => t,
            _ => return Err(ctx.err("the target shape (input 1) must be a constant int64 tensor")),
        };
        let allow_zero = ctx.attrs.int_or("allowzero", 0)? != 0;
        resolve_reshape(ctx, &in_shape, &target, allow_zero)?
    };
    if let Some(TensorData::F32(d)) = imp.graph.value(x).data.clone() {
        return Ok(imp.emit_const(ctx, shape, TensorData::F32(d)));
    }
    if shape.first() != in_shape.first() || numel(&shape[1..]) != numel(&in_shape[1..]) {
        return Err(ctx.err(format!("{in_shape:?} -> {shape:?} moves data across the batch dimension (axis 0); mfn runs every sample separately")));
    }
    imp.emit(ctx, Op::Reshape, vec![x], shape)
}

fn resolve_reshape(ctx: &Ctx, input: &[usize], target: &[i64], allow_zero: bool) -> Result<Vec<usize>> {
    let mut shape = Vec::with_capacity(target.len());
    let mut infer = None;
    for (i, &d) in target.iter().enumerate() {
        match d {
            -1 if infer.is_none() => {
                infer = Some(i);
                shape.push(1);
            }
            0 if !allow_zero => shape.push(*input.get(i).ok_or_else(|| ctx.err(format!("shape {target:?}: 0 at axis {i} has no input axis to copy")))?),
            d if d > 0 => shape.push(d as usize),
            _ => return Err(ctx.err(format!("target shape {target:?} is not supported"))),
        }
    }
    let total = numel(input);
    if let Some(i) = infer {
        let known = numel(&shape);
        if known == 0 || !total.is_multiple_of(known) {
            return Err(ctx.err(format!("cannot reshape {input:?} to {target:?}")));
        }
        shape[i] = total / known;
    }
    if numel(&shape) != total {
        return Err(ctx.err(format!("cannot reshape {input:?} ({total} elements) to {target:?}")));
    }
    Ok(shape)
}

/// Identity and inference-mode Dropout pass their input through.
pub fn identity(imp: &mut Importer, ctx: &mut Ctx) -> Result<ValueId> {
    if ctx.proto.op_type == "Dropout" {
        ctx.attrs.ignore("seed");
        ctx.attrs.ignore("ratio");
        ctx.attrs.ignore("is_test");
        if imp.input(ctx, 2)?.is_some() {
            let (_, training) = imp.const_input(ctx, 2)?;
            if training.first().is_some_and(|&t| t != 0.0) {
                return Err(ctx.err("training_mode=true is not supported (inference only)"));
            }
        }
    }
    imp.required(ctx, 0)
}

pub fn constant(imp: &mut Importer, ctx: &mut Ctx) -> Result<ValueId> {
    if let Some(t) = ctx.attrs.tensor("value")? {
        let (shape, data) = tensor::decode(t)?;
        return Ok(imp.emit_const(ctx, shape, data));
    }
    let proto = ctx.proto;
    let attr = proto.attribute.first().map(|a| a.name.as_str()).unwrap_or("value");
    let (shape, data) = match attr {
        "value_float" => (vec![], TensorData::F32(vec![ctx.attrs.float_or("value_float", 0.0)?])),
        "value_int" => (vec![], TensorData::I64(vec![ctx.attrs.int_or("value_int", 0)?])),
        "value_ints" => {
            let v = ctx.attrs.ints("value_ints")?.unwrap_or_default();
            (vec![v.len()], TensorData::I64(v))
        }
        other => return Err(ctx.attrs.error(other, "(present)", ": this Constant form is not supported")),
    };
    Ok(imp.emit_const(ctx, shape, data))
}
