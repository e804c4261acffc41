//! Lowering of one IR node to a kernel specialisation: which template, its constants (the typed
//! cache key), what each binding holds, and how many workgroups a sample needs. Convolutions,
//! which have the most templates to choose from, are lowered in `conv.rs`.

use super::conv;
use super::layout::{Planes, PLANE_MULTIPLE};
use super::template::{Const, Template};
use crate::error::{CompileError, Result};
use crate::ir::{numel, Act, Epilogue, Graph, MaxPool, Node, Op, ValueId};

/// Workgroup size of every kernel.
pub const WORKGROUP: u32 = 64;

/// A kernel specialisation: the template and its constants. Identical keys share one kernel.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelKey {
    /// The template it specialises.
    pub template: Template,
    /// The constants' names and values: exactly those the template declares, in its order.
    pub constants: Vec<(&'static str, Const)>,
}

impl KernelKey {
    /// A hashable, printable form of the key (f32 constants by their bits).
    pub fn id(&self) -> String {
        let mut s = self.template.name().to_string();
        for (name, c) in &self.constants {
            let v = match c {
                Const::U32(v) => v.to_string(),
                Const::F32(v) => format!("{:08x}", v.to_bits()),
                Const::Bool(v) => v.to_string(),
                Const::Type(ty) => ty.to_string(),
                Const::Typed(_, expr) => expr.to_string(),
            };
            s.push_str(&format!(" {name}={v}"));
        }
        s
    }

    /// The value of the key's u32 constant `name`, if it has one.
    pub fn u32(&self, name: &str) -> Option<u32> {
        self.constants.iter().find_map(|(n, c)| match c {
            Const::U32(v) if *n == name => Some(*v),
            _ => None,
        })
    }
}

/// Whether a kernel can take its template's subgroup variant: the vec4 GEMM's pairs its lanes'
/// pixel vec4s within rows, and needs planes of a multiple of PLANE_MULTIPLE pixels (`layout`
/// pads them to that where it can).
pub fn subgroup_fits(key: &KernelKey) -> bool {
    match key.template {
        Template::PointwiseVec4 => key.u32("HW").is_some_and(|hw| (hw as usize).is_multiple_of(PLANE_MULTIPLE)),
        _ => true,
    }
}

/// The most loop iterations one unit of work of a kernel takes (see
/// [`crate::Kernel::unit_iterations`]): for a kernel that can share its tiles, the shared-tile
/// loop's own iteration and every back-edge of the loops inside a unit; for the others, every
/// back-edge of an invocation's loops; counted as if no loop were unrolled; 0 for templates without
/// loops.
/// - `pointwise_vec4` (subgroup variant, a tile of a subgroup): the loop over pairs of groups of 4
///   input channels, and 8 stores of 4 channels in a loop of 4 (the plain variant's; the subgroup
///   variant's stores take 2 pairs of channels a loop, 2 iterations: the larger count is kept);
/// - `pointwise` (subgroup variant, a grid workgroup's subgroup share): the loop over groups of 4
///   input channels, and 4 stores of a 4 by 4 loop nest;
/// - `conv2d` (subgroup variant): input channels of a group, by rows of taps, by taps, and up to
///   8 stores in a loop of 4;
/// - the depthwise 3x3 kernels (a band an invocation): no loop inside a band;
/// - `linear` and `gdconv`: the reduction, 8 products an iteration and the rest one a time;
/// - `depthwise` and `depthwise_vec4`: rows of taps, by the row's loads and by taps by the
///   invocation's 8 outputs, and the stores;
/// - `maxpool`: the window's rows by its columns.
pub fn unit_iterations(key: &KernelKey) -> u32 {
    let c_in = key.u32("C_IN").unwrap_or(0);
    match key.template {
        // The subgroup variant takes 4 input channels an iteration, the plain one 8: the larger.
        Template::PointwiseVec4 => 1 + c_in.div_ceil(4) + 8 * 4,
        Template::Pointwise => 1 + c_in.div_ceil(4) + 4 * (4 + 4 * 4),
        Template::Conv2d => {
            let c_in_group = c_in / key.u32("GROUP").unwrap_or(1).max(1);
            let (kh, kw) = (key.u32("KH").unwrap_or(1), key.u32("KW").unwrap_or(1));
            1u32.saturating_add(c_in_group.saturating_mul(1 + kh.saturating_mul(1 + kw))).saturating_add(8 * 4)
        }
        Template::Depthwise3x3 | Template::Depthwise3x3Vec4 => 1,
        Template::Linear => unrolled(key.u32("K").unwrap_or(0)),
        Template::GdConv => unrolled(key.u32("HW").unwrap_or(0)),
        Template::Depthwise | Template::DepthwiseVec4 => {
            let (kh, kw, sw) = (key.u32("KH").unwrap_or(1), key.u32("KW").unwrap_or(1), key.u32("SW").unwrap_or(1));
            // 8 outputs an invocation: a row reads the 7 * SW + KW inputs under them.
            let row = (7u32.saturating_mul(sw)).saturating_add(kw).saturating_add(kw.saturating_mul(1 + 8));
            kh.saturating_mul(1 + row).saturating_add(8)
        }
        Template::MaxPool => key.u32("KH").unwrap_or(1).saturating_mul(1 + key.u32("KW").unwrap_or(1)),
        _ => 0,
    }
}

/// Iterations of the loops of `linear.wgsl` and `gdconv.wgsl` over `n` products: 8 an iteration,
/// then one a time.
fn unrolled(n: u32) -> u32 {
    n / 8 + n % 8
}

/// What a binding of a lowered node holds.
#[derive(Clone, Debug)]
pub enum Bind {
    /// An activation: the graph value, bound to its planned buffer.
    Value(ValueId),
    /// Constant data created for this node (weights or packed per-channel parameters).
    Data(String, Vec<f32>),
    /// Constant data read as a 2D texture of RGBA texels, this many texels a row
    /// ([`crate::Weight::texture`]).
    Texture(String, Vec<f32>, u32),
    /// Nothing: a binding this specialisation never reads (no residual, an absent concat input).
    Unused,
}

/// A node lowered to a kernel: its specialisation, what each binding holds and the workgroups
/// of one sample.
pub struct Lowered {
    /// The specialisation; nodes with equal keys share one kernel.
    pub key: KernelKey,
    /// What each of the template's bindings holds, in binding order, the output last.
    pub binds: Vec<Bind>,
    /// Workgroups one sample needs.
    pub workgroups: u32,
}

pub(super) fn u(v: usize) -> Const {
    Const::U32(v as u32)
}

pub(super) fn epilogue_constants(e: &Epilogue) -> [(&'static str, Const); 4] {
    let (act, min, max) = act_constants(e.act.as_ref());
    [("ACT", act), ("CLIP_MIN", min), ("CLIP_MAX", max), ("HAS_RESIDUAL", Const::Bool(e.residual))]
}

fn act_constants(act: Option<&Act>) -> (Const, Const, Const) {
    let (code, min, max) = match act {
        None => (0, 0.0, 6.0),
        Some(Act::Relu) => (1, 0.0, 6.0),
        Some(Act::PRelu(_)) => (2, 0.0, 6.0),
        Some(Act::Clip { min, max }) => (3, *min, *max),
        Some(Act::Sigmoid) => (4, 0.0, 6.0),
    };
    (Const::U32(code), Const::F32(min), Const::F32(max))
}

/// `[bias; C] ++ [prelu slope or zeros; C]`: the per-channel parameters of an epilogue.
pub(super) fn channel_params(bias: &[f32], act: Option<&Act>) -> Vec<f32> {
    let mut p = bias.to_vec();
    match act {
        Some(Act::PRelu(slope)) => p.extend_from_slice(slope),
        _ => p.extend(std::iter::repeat_n(0.0, bias.len())),
    }
    p
}

pub(super) fn threads_to_groups(threads: usize) -> u32 {
    threads.div_ceil(WORKGROUP as usize) as u32
}

/// Bindings `x, w, params, residual, y` of the layer templates.
pub(super) fn layer_binds(graph: &Graph, node: &Node, params: Vec<f32>, residual: bool) -> Vec<Bind> {
    let w = node.inputs[1];
    let res = if residual { Bind::Value(*node.inputs.last().expect("residual input")) } else { Bind::Unused };
    vec![
        Bind::Value(node.inputs[0]),
        Bind::Data(graph.value(w).name.clone(), graph.const_f32(w).unwrap_or_default().to_vec()),
        Bind::Data(format!("{}.params", node.name()), params),
        res,
        Bind::Value(node.output),
    ]
}

/// The kernel of `node`, its activations laid out as `planes` says.
pub fn lower(graph: &Graph, node: &Node, planes: &Planes) -> Result<Lowered> {
    let x = graph.shape(node.inputs[0]).to_vec();
    let y = graph.shape(node.output).to_vec();
    match &node.op {
        Op::Conv(conv) => Ok(conv::lower_conv(graph, node, conv, planes, &x, &y)),
        Op::GdConv(e) => Ok(lower_gdconv(graph, node, e, planes, &x)),
        Op::GlobalAveragePool => Ok(lower_global_average_pool(graph, node, planes, &x)),
        Op::Linear(e) => Ok(lower_linear(graph, node, e, &x, &y)),
        Op::Act(_) | Op::Affine(_) | Op::Binary(_) => elementwise(graph, node, &y),
        Op::MaxPool(p) => Ok(lower_max_pool(node, p, &x, &y)),
        Op::Upsample { factor } => Ok(lower_upsample(node, factor, &x, &y)),
        Op::Concat { axis } => Ok(lower_concat(graph, node, *axis, &y)),
        Op::Transpose(perm) => lower_transpose(node, perm, &x, &y),
        other => Err(CompileError::Unsupported { node: node.name().into(), op: other.name().into(), message: "this operation after the passes".into() }),
    }
}

/// The node's bias (its third input) as f32s.
pub(super) fn node_bias(graph: &Graph, node: &Node) -> Vec<f32> {
    graph.const_f32(node.inputs[2]).unwrap_or_default().to_vec()
}

/// Global depthwise convolution: one invocation a channel.
fn lower_gdconv(graph: &Graph, node: &Node, e: &Epilogue, planes: &Planes, x: &[usize]) -> Lowered {
    let mut constants = vec![("C", u(x[1])), ("HW", u(x[2] * x[3])), ("PLANE", u(planes.plane(graph, node.inputs[0])))];
    constants.extend(epilogue_constants(e));
    constants.push(("WG", Const::U32(WORKGROUP)));
    let binds = layer_binds(graph, node, channel_params(&node_bias(graph, node), e.act.as_ref()), e.residual);
    Lowered { key: KernelKey { template: Template::GdConv, constants }, binds, workgroups: threads_to_groups(x[1]) }
}

/// Global average pooling: the GDConv kernel with every weight 1 / HW and no bias.
fn lower_global_average_pool(graph: &Graph, node: &Node, planes: &Planes, x: &[usize]) -> Lowered {
    let (c, hw) = (x[1], x[2] * x[3]);
    let mut constants = vec![("C", u(c)), ("HW", u(hw)), ("PLANE", u(planes.plane(graph, node.inputs[0])))];
    constants.extend(epilogue_constants(&Epilogue::default()));
    constants.push(("WG", Const::U32(WORKGROUP)));
    let binds = vec![
        Bind::Value(node.inputs[0]),
        Bind::Data(format!("{}.mean", node.name()), vec![1.0 / hw as f32; c * hw]),
        Bind::Data(format!("{}.params", node.name()), vec![0.0; 2 * c]),
        Bind::Unused,
        Bind::Value(node.output),
    ];
    Lowered { key: KernelKey { template: Template::GdConv, constants }, binds, workgroups: threads_to_groups(c) }
}

/// A fully connected layer: one invocation an output.
fn lower_linear(graph: &Graph, node: &Node, e: &Epilogue, x: &[usize], y: &[usize]) -> Lowered {
    let (k, m) = (x[1], y[1]);
    let mut constants = vec![("K", u(k)), ("M", u(m))];
    constants.extend(epilogue_constants(e));
    constants.push(("WG", Const::U32(WORKGROUP)));
    let binds = layer_binds(graph, node, channel_params(&node_bias(graph, node), e.act.as_ref()), e.residual);
    Lowered { key: KernelKey { template: Template::Linear, constants }, binds, workgroups: threads_to_groups(m) }
}

/// Max pooling: one invocation an output element.
fn lower_max_pool(node: &Node, p: &MaxPool, x: &[usize], y: &[usize]) -> Lowered {
    let constants = vec![
        ("C", u(x[1])),
        ("H_IN", u(x[2])),
        ("W_IN", u(x[3])),
        ("H_OUT", u(y[2])),
        ("W_OUT", u(y[3])),
        ("KH", u(p.kernel[0])),
        ("KW", u(p.kernel[1])),
        ("SH", u(p.stride[0])),
        ("SW", u(p.stride[1])),
        ("PAD_T", u(p.pads[0])),
        ("PAD_L", u(p.pads[1])),
        ("WG", Const::U32(WORKGROUP)),
    ];
    data_movement(Template::MaxPool, constants, node, numel(&y[1..]))
}

/// Nearest upsampling by whole factors: one invocation an output element.
fn lower_upsample(node: &Node, factor: &[usize; 2], x: &[usize], y: &[usize]) -> Lowered {
    let constants = vec![("C", u(x[1])), ("H_IN", u(x[2])), ("W_IN", u(x[3])), ("FH", u(factor[0])), ("FW", u(factor[1])), ("WG", Const::U32(WORKGROUP))];
    data_movement(Template::Upsample, constants, node, numel(&y[1..]))
}

/// Concatenation of up to four inputs: per sample, OUTER slabs of each input side by side (an
/// absent input's slab is 0 elements).
fn lower_concat(graph: &Graph, node: &Node, axis: usize, y: &[usize]) -> Lowered {
    let outer = numel(&y[1..axis]);
    let slab = |v: ValueId| numel(&graph.shape(v)[axis..]);
    let mut binds: Vec<Bind> = node.inputs.iter().map(|&v| Bind::Value(v)).collect();
    let mut constants = vec![("OUTER", u(outer))];
    for (k, name) in ["S_A", "S_B", "S_C", "S_D"].into_iter().enumerate() {
        constants.push((name, u(node.inputs.get(k).map_or(0, |&v| slab(v)))));
    }
    constants.push(("WG", Const::U32(WORKGROUP)));
    binds.resize(4, Bind::Unused);
    binds.push(Bind::Value(node.output));
    Lowered { key: KernelKey { template: Template::Concat, constants }, binds, workgroups: threads_to_groups(numel(&y[1..])) }
}

/// A permutation of the axes of a sample of up to four: each output axis's size and input stride.
fn lower_transpose(node: &Node, perm: &[usize], x: &[usize], y: &[usize]) -> Result<Lowered> {
    let sample = &x[1..];
    if sample.len() > 4 {
        return Err(CompileError::Unsupported { node: node.name().into(), op: "Transpose".into(), message: format!("a rank-{} sample", sample.len()) });
    }
    let mut strides = vec![1; sample.len()];
    for i in (0..sample.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * sample[i + 1];
    }
    // Output axis k of the sample is input axis perm[k + 1] - 1; pad to four axes in front.
    let pad = 4 - sample.len();
    let dim = |k: usize| if k < pad { 1 } else { sample[perm[k - pad + 1] - 1] };
    let stride = |k: usize| if k < pad { 0 } else { strides[perm[k - pad + 1] - 1] };
    let mut constants = Vec::new();
    for (k, (d, s)) in [("D0", "S0"), ("D1", "S1"), ("D2", "S2"), ("D3", "S3")].into_iter().enumerate() {
        constants.push((d, u(dim(k))));
        constants.push((s, u(stride(k))));
    }
    constants.sort_by_key(|(name, _)| name.starts_with('S'));
    constants.push(("WG", Const::U32(WORKGROUP)));
    Ok(data_movement(Template::Transpose, constants, node, numel(&y[1..])))
}

/// A kernel reading the node's one input and writing its output, one invocation per output element.
fn data_movement(template: Template, constants: Vec<(&'static str, Const)>, node: &Node, elements: usize) -> Lowered {
    let binds = vec![Bind::Value(node.inputs[0]), Bind::Value(node.output)];
    Lowered { key: KernelKey { template, constants }, binds, workgroups: threads_to_groups(elements) }
}

fn elementwise(graph: &Graph, node: &Node, y: &[usize]) -> Result<Lowered> {
    let c = y.get(1).copied().unwrap_or(1);
    let inner = numel(y.get(2..).unwrap_or(&[]));
    let unused = (Const::U32(0), Const::F32(0.0), Const::F32(6.0));
    let (mode, binop, (act, min, max), params, other) = match &node.op {
        Op::Act(a) => (0, 0, act_constants(Some(a)), Some(channel_params(&vec![0.0; c], Some(a))), Bind::Unused),
        Op::Affine(a) => (1, 0, unused, Some([a.scale.clone(), a.shift.clone()].concat()), Bind::Unused),
        Op::Binary(op) => {
            let (a, b) = (node.inputs[0], node.inputs[1]);
            if graph.shape(a) != graph.shape(b) || graph.is_const(a) || graph.is_const(b) {
                return Err(CompileError::Unsupported {
                    node: node.name().into(),
                    op: node.op.name().into(),
                    message: format!("broadcasting {:?} with {:?}", graph.shape(a), graph.shape(b)),
                });
            }
            (2, *op as u32, unused, None, Bind::Value(b))
        }
        _ => unreachable!("elementwise() is called for element-wise ops only"),
    };
    let constants = vec![
        ("C", u(c)),
        ("INNER", u(inner)),
        ("MODE", Const::U32(mode)),
        ("BINOP", Const::U32(binop)),
        ("ACT", act),
        ("CLIP_MIN", min),
        ("CLIP_MAX", max),
        ("WG", Const::U32(WORKGROUP)),
    ];
    let params = params.map_or(Bind::Unused, |p| Bind::Data(format!("{}.params", node.name()), p));
    let binds = vec![Bind::Value(node.inputs[0]), params, other, Bind::Value(node.output)];
    Ok(Lowered { key: KernelKey { template: Template::Elementwise, constants }, binds, workgroups: threads_to_groups(c * inner) })
}
