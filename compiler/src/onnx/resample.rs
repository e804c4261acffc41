//! Importers of the spatial resampling ops: MaxPool and Resize (nearest, whole factors).

use super::{Ctx, Importer};
use crate::error::Result;
use crate::ir::{MaxPool, Op, TensorData, ValueId};

fn pair(ctx: &Ctx, attr: &str, v: Option<Vec<i64>>, default: usize) -> Result<[usize; 2]> {
    match v.as_deref() {
        None => Ok([default; 2]),
        Some([a, b]) if *a > 0 && *b > 0 => Ok([*a as usize, *b as usize]),
        Some(other) => Err(ctx.attrs.error(attr, &format!("{other:?}"), " (expected two positive values)")),
    }
}

fn input_4d(imp: &Importer, ctx: &Ctx) -> Result<(ValueId, Vec<usize>)> {
    let x = imp.required(ctx, 0)?;
    let shape = imp.graph.shape(x).to_vec();
    if shape.len() != 4 || imp.graph.is_const(x) {
        return Err(ctx.err(format!("the input must be a 4-D activation [N, C, H, W], got {shape:?}")));
    }
    Ok((x, shape))
}

/// MaxPool, 2-D: explicit pads or `auto_pad`, `ceil_mode`; dilations 1, storage order row-major.
pub fn max_pool(imp: &mut Importer, ctx: &mut Ctx) -> Result<ValueId> {
    let (x, shape) = input_4d(imp, ctx)?;
    let k = ctx.attrs.ints("kernel_shape")?.ok_or_else(|| ctx.err("attribute 'kernel_shape' is missing"))?;
    let kernel = pair(ctx, "kernel_shape", Some(k), 1)?;
    let strides = ctx.attrs.ints("strides")?;
    let stride = pair(ctx, "strides", strides, 1)?;
    if let Some(d) = ctx.attrs.ints("dilations")?.filter(|d| d.iter().any(|&v| v != 1)) {
        return Err(ctx.attrs.error("dilations", &format!("{d:?}"), " (only 1 is implemented)"));
    }
    if ctx.attrs.int_or("storage_order", 0)? != 0 {
        return Err(ctx.attrs.error("storage_order", "1", " (the indices output is not supported)"));
    }
    let ceil = ctx.attrs.int_or("ceil_mode", 0)? != 0;
    let explicit = ctx.attrs.ints("pads")?;
    let auto_pad = ctx.attrs.string("auto_pad")?.unwrap_or_else(|| "NOTSET".into());
    let (h, w) = (shape[2], shape[3]);
    let pads = match (auto_pad.as_str(), explicit) {
        ("NOTSET" | "VALID", None) => [0; 4],
        ("NOTSET", Some(p)) => match p.as_slice() {
            [t, l, b, r] if p.iter().all(|&v| v >= 0) && (*t as usize) < kernel[0] && (*b as usize) < kernel[0] && (*l as usize) < kernel[1] && (*r as usize) < kernel[1] => {
                [*t as usize, *l as usize, *b as usize, *r as usize]
            }
            _ => return Err(ctx.attrs.error("pads", &format!("{p:?}"), " (expected four non-negative values smaller than the kernel)")),
        },
        (mode @ ("SAME_UPPER" | "SAME_LOWER"), _) => {
            let same = |size: usize, k: usize, s: usize| ((size.div_ceil(s) - 1) * s + k).saturating_sub(size);
            let (ph, pw) = (same(h, kernel[0], stride[0]), same(w, kernel[1], stride[1]));
            if mode == "SAME_UPPER" {
                [ph / 2, pw / 2, ph - ph / 2, pw - pw / 2]
            } else {
                [ph - ph / 2, pw - pw / 2, ph / 2, pw / 2]
            }
        }
        (other, _) => return Err(ctx.attrs.error("auto_pad", other, "")),
    };
    let out_dim = |size: usize, k: usize, s: usize, p0: usize, p1: usize| -> Result<usize> {
        let padded = size + p0 + p1;
        if padded < k {
            return Err(ctx.err(format!("kernel {k} is larger than the padded input {padded}")));
        }
        let mut out = if ceil { (padded - k).div_ceil(s) + 1 } else { (padded - k) / s + 1 };
        // With ceil_mode, a last window that would start in the end padding is dropped.
        if ceil && (out - 1) * s >= size + p0 {
            out -= 1;
        }
        Ok(out)
    };
    let oh = out_dim(h, kernel[0], stride[0], pads[0], pads[2])?;
    let ow = out_dim(w, kernel[1], stride[1], pads[1], pads[3])?;
    imp.emit(ctx, Op::MaxPool(MaxPool { kernel, stride, pads }), vec![x], vec![shape[0], shape[1], oh, ow])
}

/// Source index of output index `y` of a nearest Resize, by the ONNX formulas.
fn nearest_source(y: usize, scale: f64, input: usize, output: usize, transform: &str, rounding: &str) -> Option<usize> {
    let y = y as f64;
    let x = match transform {
        "half_pixel" => (y + 0.5) / scale - 0.5,
        "pytorch_half_pixel" if output > 1 => (y + 0.5) / scale - 0.5,
        "pytorch_half_pixel" => 0.0,
        "align_corners" if output > 1 => y * (input as f64 - 1.0) / (output as f64 - 1.0),
        "align_corners" => 0.0,
        "asymmetric" => y / scale,
        "tf_half_pixel_for_nn" => (y + 0.5) / scale,
        _ => return None,
    };
    let r = match rounding {
        "round_prefer_floor" if x.fract() == 0.5 => x.floor(),
        "round_prefer_ceil" if x.fract() == 0.5 => x.ceil(),
        "round_prefer_floor" | "round_prefer_ceil" => x.round(),
        "floor" => x.floor(),
        "ceil" => x.ceil(),
        _ => return None,
    };
    Some(r.clamp(0.0, input as f64 - 1.0) as usize)
}

/// Resize (opsets 10 to 18) in nearest mode by whole factors on H and W, whichever coordinate
/// transform and rounding the model asks for, as long as they pick pixel `i / factor` (checked for
/// every output index); anything else is refused.
pub fn resize(imp: &mut Importer, ctx: &mut Ctx) -> Result<ValueId> {
    let (x, shape) = input_4d(imp, ctx)?;
    let mode = ctx.attrs.string("mode")?.unwrap_or_else(|| "nearest".into());
    let transform = ctx.attrs.string("coordinate_transformation_mode")?.unwrap_or_else(|| "half_pixel".into());
    let rounding = ctx.attrs.string("nearest_mode")?.unwrap_or_else(|| "round_prefer_floor".into());
    // Only meaningful for the cubic and crop modes refused below.
    ctx.attrs.ignore("cubic_coeff_a");
    ctx.attrs.ignore("exclude_outside");
    ctx.attrs.ignore("extrapolation_value");
    if mode != "nearest" {
        return Err(ctx.attrs.error("mode", &mode, " (only nearest is implemented)"));
    }
    if ctx.attrs.int_or("antialias", 0)? != 0 {
        return Err(ctx.attrs.error("antialias", "1", " (not implemented)"));
    }
    if ctx.attrs.ints("axes")?.is_some() {
        return Err(ctx.attrs.error("axes", "(present)", " (give scales or sizes for all four axes)"));
    }
    if let Some(p) = ctx.attrs.string("keep_aspect_ratio_policy")?.filter(|p| p != "stretch") {
        return Err(ctx.attrs.error("keep_aspect_ratio_policy", &p, " (only stretch is implemented)"));
    }
    let (scales_at, sizes_at) = if imp.opset < 11 { (1, usize::MAX) } else { (2, 3) };
    let non_empty = |imp: &Importer, ctx: &Ctx, i: usize| -> Result<Option<Vec<f64>>> {
        match imp.input(ctx, i)? {
            None => Ok(None),
            Some(id) => match &imp.graph.value(id).data {
                Some(TensorData::F32(v)) if v.is_empty() => Ok(None),
                Some(TensorData::I64(v)) if v.is_empty() => Ok(None),
                Some(TensorData::F32(v)) => Ok(Some(v.iter().map(|&s| s as f64).collect())),
                Some(TensorData::I64(v)) => Ok(Some(v.iter().map(|&s| s as f64).collect())),
                None => Err(ctx.err(format!("input {i} (scales or sizes) must be a constant"))),
            },
        }
    };
    let scales = non_empty(imp, ctx, scales_at)?;
    let sizes = if sizes_at == usize::MAX { None } else { non_empty(imp, ctx, sizes_at)? };
    let (out, scale): (Vec<usize>, Vec<f64>) = match (scales, sizes) {
        (Some(s), None) if s.len() == 4 && s.iter().all(|&v| v > 0.0) => (shape.iter().zip(&s).map(|(&d, &f)| (d as f64 * f).floor() as usize).collect(), s),
        (None, Some(z)) if z.len() == 4 && z.iter().all(|&v| v >= 1.0) => (z.iter().map(|&v| v as usize).collect(), z.iter().zip(&shape).map(|(&o, &i)| o / i as f64).collect()),
        (s, z) => return Err(ctx.err(format!("expected either 4 positive scales or 4 sizes, got scales {s:?} and sizes {z:?}"))),
    };
    if out[0] != shape[0] || out[1] != shape[1] {
        return Err(ctx.err(format!("resizing the batch or channel axes ({shape:?} -> {out:?})")));
    }
    let mut factor = [0; 2];
    for a in 0..2 {
        let (i, o) = (shape[2 + a], out[2 + a]);
        let whole = o.is_multiple_of(i) && o >= i;
        let f = o / i.max(1);
        let matches = whole && (0..o).all(|y| nearest_source(y, scale[2 + a], i, o, &transform, &rounding) == Some(y / f));
        if !matches {
            return Err(ctx.err(format!(
                "nearest resize {shape:?} -> {out:?} with coordinate_transformation_mode={transform}, nearest_mode={rounding} is not a whole-factor upsampling (the only kind implemented)"
            )));
        }
        factor[a] = f;
    }
    if factor == [1, 1] {
        return imp.emit(ctx, Op::Reshape, vec![x], out);
    }
    imp.emit(ctx, Op::Upsample { factor }, vec![x], out)
}
