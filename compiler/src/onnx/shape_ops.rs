//! Importers of the ops that move or describe data without arithmetic: Shape, Gather, Unsqueeze,
//! Squeeze, Concat and Transpose. On constants (the shape arithmetic of models exported with
//! dynamic sizes) they are folded at import; on activations they become Reshape or Transpose nodes.

use super::{Ctx, Importer};
use crate::error::Result;
use crate::ir::{numel, permute, Op, Shape, TensorData, ValueId};

/// Shape: the (specialised) shape of its input, as an int64 constant. `start`/`end` (opset 15).
pub fn shape(imp: &mut Importer, ctx: &mut Ctx) -> Result<ValueId> {
    let x = imp.required(ctx, 0)?;
    let dims: Vec<i64> = imp.graph.shape(x).iter().map(|&d| d as i64).collect();
    let rank = dims.len() as i64;
    let clamp = |v: i64| (if v < 0 { v + rank } else { v }).clamp(0, rank) as usize;
    let start = clamp(ctx.attrs.int_or("start", 0)?);
    let end = clamp(ctx.attrs.int_or("end", rank)?);
    let dims = dims[start..end.max(start)].to_vec();
    Ok(imp.emit_const(ctx, vec![dims.len()], TensorData::I64(dims)))
}

/// A normalised axis in `0..rank`.
fn axis(ctx: &Ctx, attr: &str, axis: i64, rank: usize) -> Result<usize> {
    let r = rank as i64;
    match if axis < 0 { axis + r } else { axis } {
        a if (0..r).contains(&a) => Ok(a as usize),
        _ => Err(ctx.attrs.error(attr, &axis.to_string(), &format!(" for a rank-{rank} tensor"))),
    }
}

/// Elements `data[.., i, ..]` of a row-major tensor, one slab per index along `axis`.
fn take<T: Copy>(data: &[T], shape: &[usize], axis: usize, indices: &[usize]) -> Vec<T> {
    let inner = numel(&shape[axis + 1..]);
    let outer = numel(&shape[..axis]);
    let mut out = Vec::with_capacity(outer * indices.len() * inner);
    for o in 0..outer {
        for &i in indices {
            out.extend_from_slice(&data[(o * shape[axis] + i) * inner..][..inner]);
        }
    }
    out
}

/// Gather of constant data by constant indices (shape arithmetic).
pub fn gather(imp: &mut Importer, ctx: &mut Ctx) -> Result<ValueId> {
    let data = imp.required(ctx, 0)?;
    let d = imp.graph.value(data).clone();
    let Some(values) = d.data else {
        return Err(ctx.err("gathering from an activation is not supported (only constants, as in shape arithmetic)"));
    };
    let (i_shape, idx) = imp.const_input(ctx, 1)?;
    let a = ctx.attrs.int_or("axis", 0)?;
    let axis = axis(ctx, "axis", a, d.shape.len().max(1))?;
    if d.shape.is_empty() {
        return Err(ctx.err("gathering from a scalar"));
    }
    let n = d.shape[axis] as i64;
    let idx = idx
        .iter()
        .map(|&i| {
            let i = i as i64;
            let j = if i < 0 { i + n } else { i };
            if (0..n).contains(&j) {
                Ok(j as usize)
            } else {
                Err(ctx.err(format!("index {i} is out of range for axis {axis} of size {n}")))
            }
        })
        .collect::<Result<Vec<_>>>()?;
    let mut shape = d.shape[..axis].to_vec();
    shape.extend(&i_shape);
    shape.extend(&d.shape[axis + 1..]);
    let out = match &values {
        TensorData::F32(v) => TensorData::F32(take(v, &d.shape, axis, &idx)),
        TensorData::I64(v) => TensorData::I64(take(v, &d.shape, axis, &idx)),
    };
    Ok(imp.emit_const(ctx, shape, out))
}

/// The `axes` of Unsqueeze/Squeeze: an attribute before opset 13, an optional input from 13 on.
fn axes(imp: &Importer, ctx: &mut Ctx) -> Result<Option<Vec<i64>>> {
    if imp.opset < 13 {
        return ctx.attrs.ints("axes");
    }
    match imp.input(ctx, 1)? {
        None => Ok(None),
        Some(_) => Ok(Some(imp.const_input(ctx, 1)?.1.iter().map(|&v| v as i64).collect())),
    }
}

/// Unsqueeze and Squeeze: a new shape for the same data.
pub fn squeeze(imp: &mut Importer, ctx: &mut Ctx) -> Result<ValueId> {
    let x = imp.required(ctx, 0)?;
    let in_shape = imp.graph.shape(x).to_vec();
    let axes = axes(imp, ctx)?;
    let batch_moves;
    let shape: Shape = if ctx.proto.op_type == "Unsqueeze" {
        let axes = axes.ok_or_else(|| ctx.err("the axes to insert are missing"))?;
        let rank = in_shape.len() + axes.len();
        let mut inserted = axes.iter().map(|&a| axis(ctx, "axes", a, rank)).collect::<Result<Vec<_>>>()?;
        inserted.sort_unstable();
        batch_moves = inserted.first() == Some(&0);
        if inserted.windows(2).any(|w| w[0] == w[1]) {
            return Err(ctx.err(format!("axes {axes:?} repeat an axis")));
        }
        let mut rest = in_shape.iter();
        (0..rank).map(|i| if inserted.contains(&i) { 1 } else { *rest.next().expect("rank counts the kept axes") }).collect()
    } else {
        let removed = match axes {
            Some(a) => a.iter().map(|&a| axis(ctx, "axes", a, in_shape.len())).collect::<Result<Vec<_>>>()?,
            None => (0..in_shape.len()).filter(|&i| in_shape[i] == 1).collect(),
        };
        batch_moves = removed.contains(&0);
        if let Some(&a) = removed.iter().find(|&&a| in_shape[a] != 1) {
            return Err(ctx.err(format!("axis {a} of {in_shape:?} is not 1 and cannot be squeezed")));
        }
        in_shape.iter().enumerate().filter(|(i, _)| !removed.contains(i)).map(|(_, &d)| d).collect()
    };
    if let Some(data) = imp.graph.value(x).data.clone() {
        return Ok(imp.emit_const(ctx, shape, data));
    }
    if batch_moves {
        return Err(ctx.err(format!("{in_shape:?} -> {shape:?} moves the batch away from axis 0; mfn runs every sample separately")));
    }
    imp.emit(ctx, Op::Reshape, vec![x], shape)
}

/// Concat of constants (shape arithmetic).
pub fn concat(imp: &mut Importer, ctx: &mut Ctx) -> Result<ValueId> {
    let n = ctx.proto.input.len();
    if n == 0 {
        return Err(ctx.err("no inputs"));
    }
    let mut parts = Vec::with_capacity(n);
    for i in 0..n {
        let id = imp.required(ctx, i)?;
        let v = imp.graph.value(id);
        match &v.data {
            Some(d) => parts.push((v.shape.clone(), d.clone())),
            None => return Err(ctx.err(format!("concatenating the activation '{}' is not supported (only constants, as in shape arithmetic)", v.name))),
        }
    }
    let rank = parts[0].0.len();
    let a = ctx.attrs.int("axis")?.ok_or_else(|| ctx.err("attribute 'axis' is missing"))?;
    let axis = axis(ctx, "axis", a, rank.max(1))?;
    let mut shape = parts[0].0.clone();
    if rank == 0 {
        return Err(ctx.err("concatenating scalars"));
    }
    shape[axis] = 0;
    for (s, _) in &parts {
        let same = s.len() == rank && (0..rank).all(|a| a == axis || s[a] == parts[0].0[a]);
        if !same {
            return Err(ctx.err(format!("input shapes {:?} and {s:?} differ outside axis {axis}", parts[0].0)));
        }
        shape[axis] += s[axis];
    }
    let (outer, all_i64) = (numel(&shape[..axis]), parts.iter().all(|(_, d)| matches!(d, TensorData::I64(_))));
    let data = if all_i64 {
        let mut out = Vec::with_capacity(numel(&shape));
        for o in 0..outer {
            for (s, d) in &parts {
                let TensorData::I64(d) = d else { unreachable!("all int64") };
                let slab = numel(&s[axis..]);
                out.extend_from_slice(&d[o * slab..][..slab]);
            }
        }
        TensorData::I64(out)
    } else {
        let mut out = Vec::with_capacity(numel(&shape));
        for o in 0..outer {
            for (s, d) in &parts {
                let slab = numel(&s[axis..]);
                match d {
                    TensorData::F32(d) => out.extend_from_slice(&d[o * slab..][..slab]),
                    TensorData::I64(d) => out.extend(d[o * slab..][..slab].iter().map(|&v| v as f32)),
                }
            }
        }
        TensorData::F32(out)
    };
    Ok(imp.emit_const(ctx, shape, data))
}

/// Transpose: folded on constants; on activations the batch must stay on axis 0.
pub fn transpose(imp: &mut Importer, ctx: &mut Ctx) -> Result<ValueId> {
    let x = imp.required(ctx, 0)?;
    let in_shape = imp.graph.shape(x).to_vec();
    let rank = in_shape.len();
    let perm: Vec<usize> = match ctx.attrs.ints("perm")? {
        None => (0..rank).rev().collect(),
        Some(p) => {
            let mut seen = vec![false; rank];
            let ok = p.len() == rank && p.iter().all(|&a| (0..rank as i64).contains(&a) && !std::mem::replace(&mut seen[a as usize], true));
            if !ok {
                return Err(ctx.attrs.error("perm", &format!("{p:?}"), &format!(" (not a permutation of the {rank} axes)")));
            }
            p.iter().map(|&a| a as usize).collect()
        }
    };
    let shape: Shape = perm.iter().map(|&a| in_shape[a]).collect();
    if let Some(data) = imp.graph.value(x).data.clone() {
        let permuted = match &data {
            TensorData::F32(d) => TensorData::F32(permute(d, &in_shape, &perm)),
            TensorData::I64(d) => TensorData::I64(permute(d, &in_shape, &perm)),
        };
        return Ok(imp.emit_const(ctx, shape, permuted));
    }
    if perm.first() != Some(&0) {
        return Err(ctx.attrs.error("perm", &format!("{perm:?}"), " (the batch, axis 0, must stay first: mfn runs every sample separately)"));
    }
    if perm.iter().enumerate().all(|(i, &a)| i == a) {
        return imp.emit(ctx, Op::Reshape, vec![x], shape);
    }
    if rank > 5 {
        return Err(ctx.err(format!("transposing a rank-{rank} tensor (at most 5 axes, the batch included)")));
    }
    imp.emit(ctx, Op::Transpose(perm), vec![x], shape)
}
