//! A naive f32 CPU evaluator of the IR: the oracle the GPU kernels are tested against. It runs any
//! graph, before or after the passes, one sample at a time; clarity over speed, with loops ordered
//! so the innermost runs over contiguous memory.

use crate::error::{CompileError, Result};
use crate::ir::broadcast::broadcast_binary;
use crate::ir::{numel, permute, Affine, BinOp, Conv, Epilogue, Graph, MaxPool, Node, Op, ValueId};

/// Runs `graph` on `input` (a batch of samples of the graph input's shape, batch first) and
/// returns the graph's first output for the whole batch.
pub fn run(graph: &Graph, input: &[f32]) -> Result<Vec<f32>> {
    Ok(run_all(graph, input)?.swap_remove(0))
}

/// Like [`run`], every graph output in order, each for the whole batch.
pub fn run_all(graph: &Graph, input: &[f32]) -> Result<Vec<Vec<f32>>> {
    let in_id = *graph.inputs.first().ok_or_else(|| CompileError::Internal("graph without input".into()))?;
    let per_sample = numel(&graph.shape(in_id)[1..]);
    if per_sample == 0 || !input.len().is_multiple_of(per_sample) {
        return Err(CompileError::BadInput { name: graph.value(in_id).name.clone(), message: format!("{} values is not a whole number of samples of {per_sample}", input.len()) });
    }
    let mut outputs = vec![Vec::new(); graph.outputs.len()];
    for sample in input.chunks(per_sample) {
        for (all, one) in outputs.iter_mut().zip(run_sample(graph, in_id, sample)?) {
            all.extend(one);
        }
    }
    if outputs.is_empty() {
        return Err(CompileError::Internal("graph without output".into()));
    }
    Ok(outputs)
}

fn run_sample(graph: &Graph, in_id: ValueId, sample: &[f32]) -> Result<Vec<Vec<f32>>> {
    let mut values: Vec<Option<Vec<f32>>> = vec![None; graph.values.len()];
    values[in_id.0 as usize] = Some(sample.to_vec());
    for node in &graph.nodes {
        let out = eval_node(graph, node, &values)?;
        values[node.output.0 as usize] = Some(out);
    }
    Ok(graph.outputs.iter().map(|o| values[o.0 as usize].clone().unwrap_or_default()).collect())
}

/// The per-sample shape of an activation (its shape without the batch).
fn sample_shape(graph: &Graph, v: ValueId) -> &[usize] {
    &graph.shape(v)[1..]
}

/// The output of `node` for one sample, its inputs in `values` (or constants).
fn eval_node(graph: &Graph, node: &Node, values: &[Option<Vec<f32>>]) -> Result<Vec<f32>> {
    let get = |v: ValueId| -> &[f32] {
        match graph.const_f32(v) {
            Some(d) => d,
            None => values[v.0 as usize].as_deref().unwrap_or(&[]),
        }
    };
    let x = get(node.inputs[0]);
    let out_shape = sample_shape(graph, node.output);
    let residual = |e: &Epilogue| e.residual.then(|| get(*node.inputs.last().expect("residual")));
    let mut y = match &node.op {
        Op::Conv(c) => conv(c, x, sample_shape(graph, node.inputs[0]), get(node.inputs[1]), get(node.inputs[2]), out_shape),
        Op::GdConv(_) => gdconv(x, get(node.inputs[1]), get(node.inputs[2])),
        Op::GlobalAveragePool => {
            let hw = x.len() / out_shape[0];
            x.chunks(hw).map(|ch| ch.iter().sum::<f32>() / hw as f32).collect()
        }
        Op::Linear(_) => linear(x, get(node.inputs[1]), get(node.inputs[2])),
        Op::BatchNorm { epsilon } => {
            let p: Vec<&[f32]> = (1..5).map(|i| get(node.inputs[i])).collect();
            affine(&batch_norm(p[0], p[1], p[2], p[3], *epsilon), x, out_shape)
        }
        Op::Affine(a) => affine(a, x, out_shape),
        Op::Act(_) => x.to_vec(),
        Op::Binary(op) => binary(*op, graph, node.inputs[0], node.inputs[1], x, get(node.inputs[1])),
        Op::MaxPool(p) => max_pool(p, x, sample_shape(graph, node.inputs[0]), out_shape),
        Op::Upsample { factor } => upsample(x, *factor, out_shape),
        Op::Transpose(perm) => {
            let per_sample: Vec<usize> = perm[1..].iter().map(|&a| a - 1).collect();
            permute(x, sample_shape(graph, node.inputs[0]), &per_sample)
        }
        Op::Concat { axis } => {
            let parts: Vec<(&[f32], usize)> = node.inputs.iter().map(|&v| (get(v), numel(&sample_shape(graph, v)[axis - 1..]))).collect();
            concat(&parts, numel(&out_shape[..axis - 1]), numel(out_shape))
        }
        Op::Reshape => x.to_vec(),
    };
    let (act, res) = match &node.op {
        Op::Act(a) => (Some(a), None),
        op => match op.epilogue() {
            Some(e) => (e.act.as_ref(), residual(e)),
            None => (None, None),
        },
    };
    if let Some(act) = act {
        let inner = numel(out_shape.get(1..).unwrap_or(&[]));
        for (i, v) in y.iter_mut().enumerate() {
            *v = act.apply(*v, i / inner.max(1));
        }
    }
    if let Some(r) = res {
        y.iter_mut().zip(r).for_each(|(v, r)| *v += r);
    }
    Ok(y)
}

/// Per channel `c`: `b[c]` plus the dot product of the channel's map with its filter (both `hw`
/// values).
fn gdconv(x: &[f32], w: &[f32], b: &[f32]) -> Vec<f32> {
    let hw = x.len() / b.len();
    (0..b.len()).map(|c| b[c] + (0..hw).map(|k| x[c * hw + k] * w[c * hw + k]).sum::<f32>()).collect()
}

/// `W x + b`, `W` as `[M, K]`.
fn linear(x: &[f32], w: &[f32], b: &[f32]) -> Vec<f32> {
    let k = x.len();
    (0..b.len()).map(|m| b[m] + w[m * k..(m + 1) * k].iter().zip(x).map(|(a, b)| a * b).sum::<f32>()).collect()
}

/// Inference-mode batch normalisation as a per-channel affine map.
fn batch_norm(gamma: &[f32], beta: &[f32], mean: &[f32], var: &[f32], epsilon: f32) -> Affine {
    let scale: Vec<f32> = gamma.iter().zip(var).map(|(g, v)| g / (v + epsilon).sqrt()).collect();
    let shift = beta.iter().zip(mean).zip(&scale).map(|((b, m), s)| b - m * s).collect();
    Affine { scale, shift }
}

/// Nearest-neighbour upsampling by whole `factor`s to `out_shape` (`[C, H, W]`).
fn upsample(x: &[f32], factor: [usize; 2], out_shape: &[usize]) -> Vec<f32> {
    let (h, w) = (out_shape[1], out_shape[2]);
    let (ih, iw) = (h / factor[0], w / factor[1]);
    let mut y = Vec::with_capacity(numel(out_shape));
    for c in 0..out_shape[0] {
        for i in 0..h {
            y.extend((0..w).map(|j| x[(c * ih + i / factor[0]) * iw + j / factor[1]]));
        }
    }
    y
}

/// `parts` (data, slab) joined: for each of `outer` blocks, every part's next slab in turn.
fn concat(parts: &[(&[f32], usize)], outer: usize, elements: usize) -> Vec<f32> {
    let mut y = Vec::with_capacity(elements);
    for o in 0..outer {
        for (data, slab) in parts {
            y.extend_from_slice(&data[o * slab..][..*slab]);
        }
    }
    y
}

fn affine(a: &Affine, x: &[f32], shape: &[usize]) -> Vec<f32> {
    let inner = numel(shape.get(1..).unwrap_or(&[])).max(1);
    x.iter().enumerate().map(|(i, v)| v * a.scale[i / inner] + a.shift[i / inner]).collect()
}

/// Element-wise with broadcasting, over per-sample shapes (a constant keeps its own shape; an
/// activation drops its batch axis).
fn binary(op: BinOp, graph: &Graph, a: ValueId, b: ValueId, xa: &[f32], xb: &[f32]) -> Vec<f32> {
    let shape_of = |v: ValueId| -> Vec<usize> {
        let s = graph.shape(v);
        if graph.is_const(v) && s.len() == graph.shape(if v == a { b } else { a }).len() {
            s[1..].to_vec()
        } else if graph.is_const(v) {
            s.to_vec()
        } else {
            s[1..].to_vec()
        }
    };
    let (sa, sb) = (shape_of(a), shape_of(b));
    broadcast_binary(op, &sa, xa, &sb, xb).map(|(_, data)| data).unwrap_or_default()
}

fn max_pool(p: &MaxPool, x: &[f32], x_shape: &[usize], out: &[usize]) -> Vec<f32> {
    let (h, w) = (x_shape[1] as isize, x_shape[2] as isize);
    let mut y = Vec::with_capacity(numel(out));
    for c in 0..out[0] {
        let plane = &x[c * (h * w) as usize..][..(h * w) as usize];
        for oy in 0..out[1] {
            for ox in 0..out[2] {
                let y0 = (oy * p.stride[0]) as isize - p.pads[0] as isize;
                let x0 = (ox * p.stride[1]) as isize - p.pads[1] as isize;
                let mut m = f32::NEG_INFINITY;
                for iy in y0.max(0)..(y0 + p.kernel[0] as isize).min(h) {
                    for ix in x0.max(0)..(x0 + p.kernel[1] as isize).min(w) {
                        m = m.max(plane[(iy * w + ix) as usize]);
                    }
                }
                y.push(m);
            }
        }
    }
    y
}

/// Direct convolution of one sample: `x [C_in, H, W]`, `w [C_out, C_in/g, kH, kW]`.
fn conv(c: &Conv, x: &[f32], x_shape: &[usize], w: &[f32], b: &[f32], out: &[usize]) -> Vec<f32> {
    let (c_in, h, wd) = (x_shape[0], x_shape[1], x_shape[2]);
    let (c_out, oh, ow) = (out[0], out[1], out[2]);
    let [kh, kw] = c.kernel;
    let [sh, sw] = c.stride;
    let (c_in_g, c_out_g) = (c_in / c.group, c_out / c.group);
    let normalised: Vec<f32>;
    let x = match &c.prologue {
        Some(p) => {
            normalised = affine(p, x, x_shape);
            &normalised[..]
        }
        None => x,
    };
    let mut y = vec![0.0f32; c_out * oh * ow];
    for co in 0..c_out {
        let plane = &mut y[co * oh * ow..(co + 1) * oh * ow];
        plane.iter_mut().for_each(|v| *v = b[co]);
        let g = co / c_out_g;
        for ci in 0..c_in_g {
            let xc = &x[(g * c_in_g + ci) * h * wd..][..h * wd];
            for ky in 0..kh {
                for kx in 0..kw {
                    let wv = w[((co * c_in_g + ci) * kh + ky) * kw + kx];
                    for oy in 0..oh {
                        let iy = (oy * sh + ky) as isize - c.pads[0] as isize;
                        if iy < 0 || iy >= h as isize {
                            continue;
                        }
                        let row = &xc[iy as usize * wd..][..wd];
                        let out_row = &mut plane[oy * ow..(oy + 1) * ow];
                        // Output columns whose tap `ix = ox * sw + kx - pad_left` is inside the row.
                        let shift = kx as isize - c.pads[1] as isize;
                        let lo = ((-shift).max(0) as usize).div_ceil(sw);
                        let hi = (((wd as isize - shift).max(0) as usize).div_ceil(sw)).min(ow);
                        if lo >= hi {
                            continue;
                        }
                        let start = (lo * sw) as isize + shift;
                        if sw == 1 {
                            let taps = &row[start as usize..start as usize + (hi - lo)];
                            out_row[lo..hi].iter_mut().zip(taps).for_each(|(o, x)| *o += wv * x);
                        } else {
                            let taps = row[start as usize..].iter().step_by(sw);
                            out_row[lo..hi].iter_mut().zip(taps).for_each(|(o, x)| *o += wv * x);
                        }
                    }
                }
            }
        }
    }
    y
}
