//! Importers of the layers with weights: Conv, BatchNormalization, Gemm, MatMul, and
//! GlobalAveragePool.

use super::{Ctx, Importer};
use crate::error::Result;
use crate::ir::{Conv, Epilogue, Op, ValueId};

fn pair(ctx: &Ctx, attr: &str, v: Option<Vec<i64>>, default: usize) -> Result<[usize; 2]> {
    match v.as_deref() {
        None => Ok([default; 2]),
        Some([a, b]) if *a > 0 && *b > 0 => Ok([*a as usize, *b as usize]),
        Some(other) => Err(ctx.attrs.error(attr, &format!("{other:?}"), " (expected two positive values)")),
    }
}

/// Conv: 2-D, dense, grouped or depthwise, explicit pads or `auto_pad`; dilations must be 1.
pub fn conv(imp: &mut Importer, ctx: &mut Ctx) -> Result<ValueId> {
    let x = imp.required(ctx, 0)?;
    let (w_shape, _) = imp.const_input(ctx, 1)?;
    let w = imp.f32_const(ctx, 1)?;
    let x_shape = imp.graph.shape(x).to_vec();
    if x_shape.len() != 4 || w_shape.len() != 4 {
        return Err(ctx.err(format!("only 2-D convolutions are supported (input {x_shape:?}, weight {w_shape:?})")));
    }
    let group = ctx.attrs.int_or("group", 1)?;
    if group < 1 || !x_shape[1].is_multiple_of(group as usize) || w_shape[0] % group as usize != 0 {
        return Err(ctx.attrs.error("group", &group.to_string(), &format!(" for {} input and {} output channels", x_shape[1], w_shape[0])));
    }
    let group = group as usize;
    if w_shape[1] * group != x_shape[1] {
        return Err(ctx.err(format!("weight {w_shape:?} with group {group} does not match {} input channels", x_shape[1])));
    }
    let kernel = match ctx.attrs.ints("kernel_shape")? {
        None => [w_shape[2], w_shape[3]],
        Some(k) if k.len() == 2 && k[0] as usize == w_shape[2] && k[1] as usize == w_shape[3] => [w_shape[2], w_shape[3]],
        Some(k) => return Err(ctx.attrs.error("kernel_shape", &format!("{k:?}"), &format!(" (the weight is {w_shape:?})"))),
    };
    let strides = ctx.attrs.ints("strides")?;
    let stride = pair(ctx, "strides", strides, 1)?;
    let dilations = ctx.attrs.ints("dilations")?;
    if dilations.as_ref().is_some_and(|d| d.iter().any(|&v| v != 1)) {
        return Err(ctx.attrs.error("dilations", &format!("{:?}", dilations.unwrap_or_default()), " (only 1 is implemented)"));
    }
    let (h, wd) = (x_shape[2], x_shape[3]);
    let pads = conv_pads(ctx, [h, wd], kernel, stride)?;
    let out_dim = |size: usize, k: usize, s: usize, p0: usize, p1: usize| -> Result<usize> {
        let padded = size + p0 + p1;
        if padded < k {
            return Err(ctx.err(format!("kernel {k} is larger than the padded input {padded}")));
        }
        Ok((padded - k) / s + 1)
    };
    let oh = out_dim(h, kernel[0], stride[0], pads[0], pads[2])?;
    let ow = out_dim(wd, kernel[1], stride[1], pads[1], pads[3])?;
    let c_out = w_shape[0];
    let b = conv_bias(imp, ctx, c_out)?;
    let op = Op::Conv(Conv { kernel, stride, pads, group, prologue: None, epilogue: Epilogue::default() });
    imp.emit(ctx, op, vec![x, w, b], vec![x_shape[0], c_out, oh, ow])
}

/// A convolution's pads (top, left, bottom, right) from `pads` or `auto_pad`, for an input of
/// `[h, w]` pixels.
fn conv_pads(ctx: &mut Ctx, [h, wd]: [usize; 2], kernel: [usize; 2], stride: [usize; 2]) -> Result<[usize; 4]> {
    let explicit = ctx.attrs.ints("pads")?;
    let auto_pad = ctx.attrs.string("auto_pad")?.unwrap_or_else(|| "NOTSET".into());
    let pads = match (auto_pad.as_str(), explicit) {
        ("NOTSET", None) => [0; 4],
        ("NOTSET", Some(p)) => match p.as_slice() {
            [t, l, b, r] if p.iter().all(|&v| v >= 0) => [*t as usize, *l as usize, *b as usize, *r as usize],
            _ => return Err(ctx.attrs.error("pads", &format!("{p:?}"), " (expected four non-negative values)")),
        },
        ("VALID", _) => [0; 4],
        (mode @ ("SAME_UPPER" | "SAME_LOWER"), _) => {
            let same = |size: usize, k: usize, s: usize| {
                let out = size.div_ceil(s);
                ((out - 1) * s + k).saturating_sub(size)
            };
            let (ph, pw) = (same(h, kernel[0], stride[0]), same(wd, kernel[1], stride[1]));
            let (small_h, small_w) = (ph / 2, pw / 2);
            if mode == "SAME_UPPER" {
                [small_h, small_w, ph - small_h, pw - small_w]
            } else {
                [ph - small_h, pw - small_w, small_h, small_w]
            }
        }
        (other, _) => return Err(ctx.attrs.error("auto_pad", other, "")),
    };
    Ok(pads)
}

/// A convolution's bias (input 2), or zeros where it has none.
fn conv_bias(imp: &mut Importer, ctx: &mut Ctx, c_out: usize) -> Result<ValueId> {
    Ok(match imp.input(ctx, 2)? {
        Some(_) => {
            let (b_shape, _) = imp.const_input(ctx, 2)?;
            if b_shape.iter().product::<usize>() != c_out {
                return Err(ctx.err(format!("bias {b_shape:?} does not match {c_out} output channels")));
            }
            imp.f32_const(ctx, 2)?
        }
        None => imp.graph.add_const(format!("{}.bias", ctx.name), vec![c_out], vec![0.0; c_out]),
    })
}

/// BatchNormalization in its inference form (scale, bias, mean and var constants).
pub fn batch_norm(imp: &mut Importer, ctx: &mut Ctx) -> Result<ValueId> {
    let x = imp.required(ctx, 0)?;
    let shape = imp.graph.shape(x).to_vec();
    if shape.len() < 2 {
        return Err(ctx.err(format!("input {shape:?} has no channel axis")));
    }
    let c = shape[1];
    let mut params = vec![x];
    for i in 1..5 {
        let (s, _) = imp.const_input(ctx, i)?;
        if s.iter().product::<usize>() != c {
            return Err(ctx.err(format!("input {i} has shape {s:?}, expected {c} values (one per channel)")));
        }
        params.push(imp.f32_const(ctx, i)?);
    }
    let epsilon = ctx.attrs.float_or("epsilon", 1e-5)?;
    ctx.attrs.ignore("momentum");
    if ctx.attrs.int_or("spatial", 1)? != 1 {
        return Err(ctx.attrs.error("spatial", "0", " (only spatial=1 is implemented)"));
    }
    if ctx.attrs.int_or("training_mode", 0)? != 0 {
        return Err(ctx.attrs.error("training_mode", "1", " (inference only)"));
    }
    imp.emit(ctx, Op::BatchNorm { epsilon }, params, shape)
}

/// Gemm with a constant B (and C): `alpha * A * op(B) + beta * C` as a linear layer.
pub fn gemm(imp: &mut Importer, ctx: &mut Ctx) -> Result<ValueId> {
    let a = imp.required(ctx, 0)?;
    let a_shape = imp.graph.shape(a).to_vec();
    let (b_shape, b) = imp.const_input(ctx, 1)?;
    if ctx.attrs.int_or("transA", 0)? != 0 {
        return Err(ctx.attrs.error("transA", "1", " (the activation must be [N, K])"));
    }
    let trans_b = ctx.attrs.int_or("transB", 0)? != 0;
    let alpha = ctx.attrs.float_or("alpha", 1.0)?;
    let beta = ctx.attrs.float_or("beta", 1.0)?;
    if a_shape.len() != 2 || b_shape.len() != 2 {
        return Err(ctx.err(format!("A {a_shape:?} and B {b_shape:?} must be 2-D")));
    }
    let (k, m) = if trans_b { (b_shape[1], b_shape[0]) } else { (b_shape[0], b_shape[1]) };
    if k != a_shape[1] {
        return Err(ctx.err(format!("A {a_shape:?} and B {b_shape:?} (transB={}) do not multiply", trans_b as u8)));
    }
    let bias = match imp.input(ctx, 2)? {
        None => vec![0.0; m],
        Some(_) => {
            let (c_shape, c) = imp.const_input(ctx, 2)?;
            match c.len() {
                1 => vec![beta * c[0]; m],
                n if n == m && c_shape.last() == Some(&m) => c.iter().map(|v| beta * v).collect(),
                _ => return Err(ctx.err(format!("C {c_shape:?} must broadcast along the {m} outputs only"))),
            }
        }
    };
    linear(imp, ctx, a, transpose_if(!trans_b, &b, k, m, alpha), bias, m)
}

/// MatMul of a 2-D activation by a constant `[K, M]` matrix, as a linear layer.
pub fn matmul(imp: &mut Importer, ctx: &mut Ctx) -> Result<ValueId> {
    let a = imp.required(ctx, 0)?;
    let a_shape = imp.graph.shape(a).to_vec();
    let (b_shape, b) = imp.const_input(ctx, 1)?;
    if a_shape.len() != 2 || b_shape.len() != 2 || a_shape[1] != b_shape[0] {
        return Err(ctx.err(format!("only [N, K] x [K, M] is supported, got {a_shape:?} x {b_shape:?}")));
    }
    let (k, m) = (b_shape[0], b_shape[1]);
    linear(imp, ctx, a, transpose_if(true, &b, k, m, 1.0), vec![0.0; m], m)
}

/// Scales `b` by `alpha`, transposing a `[K, M]` matrix to `[M, K]` when asked.
fn transpose_if(transpose: bool, b: &[f32], k: usize, m: usize, alpha: f32) -> Vec<f32> {
    if !transpose {
        return b.iter().map(|v| alpha * v).collect();
    }
    let mut out = vec![0.0; b.len()];
    for i in 0..k {
        for j in 0..m {
            out[j * k + i] = alpha * b[i * m + j];
        }
    }
    out
}

fn linear(imp: &mut Importer, ctx: &Ctx, a: ValueId, w: Vec<f32>, b: Vec<f32>, m: usize) -> Result<ValueId> {
    let k = w.len() / m;
    let w = imp.graph.add_const(format!("{}.weight", ctx.name), vec![m, k], w);
    let b = imp.graph.add_const(format!("{}.bias", ctx.name), vec![m], b);
    let batch = imp.graph.shape(a)[0];
    imp.emit(ctx, Op::Linear(Epilogue::default()), vec![a, w, b], vec![batch, m])
}

pub fn global_average_pool(imp: &mut Importer, ctx: &mut Ctx) -> Result<ValueId> {
    let x = imp.required(ctx, 0)?;
    let shape = imp.graph.shape(x).to_vec();
    if shape.len() != 4 {
        return Err(ctx.err(format!("input {shape:?} must be 4-D")));
    }
    imp.emit(ctx, Op::GlobalAveragePool, vec![x], vec![shape[0], shape[1], 1, 1])
}
