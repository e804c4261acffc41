//! Padded planes: where a feature map's pixel count is not a multiple of 4 (MobileFaceNet's 7x7
//! maps: 49), the pointwise convolutions cannot read and write it as vec4s of 4 pixels and take
//! the scalar kernel, whose loads carry a quarter of the work each (on lavapipe, where every load
//! is a loop over the SIMD lanes, 11 to 17 GFLOP/s against 25 to 30 for the vec4 kernel). Such a
//! value can instead be stored with its channels' planes padded to the next multiple of 8 pixels
//! (`[C, plane]` per sample, 56 for 7x7), if every kernel that reads or writes it takes a plane
//! stride: the vec4 pointwise kernel (which then computes the padding pixels too, from whatever
//! the padding of its input holds, into the padding of its output, where no pixel of the map ever
//! reads them), the depthwise 3x3 kernel (rows within a plane, planes PLANE apart) and the GDConv
//! (global pooling) kernel. A pointwise convolution's input, output and residual are padded
//! together or not at all; graph inputs and outputs, and values a Reshape reads, never are.
//!
//! Maps of a multiple of 4 pixels but not of 8 (14x14: 196) are padded too, to 200: the subgroup
//! variant of the vec4 kernel pairs neighbouring pixel vec4s, 8 pixels of a row, in its stores
//! (`pointwise_vec4_subgroup.wgsl`: on lavapipe, with this padding, the pretrained model took
//! 0.949 of the time at batch 1 and 0.988 at batch 16). Where such a map cannot be padded, its kernels have no subgroup
//! variant ([`super::kernels::subgroup_fits`]).

use std::collections::{HashMap, HashSet};

use super::conv::{depthwise3x3_fits, pointwise_vec4_fits};
use crate::ir::{numel, Epilogue, Graph, Node, Op, ValueId};

/// Padded planes hold a multiple of this many pixels.
pub(super) const PLANE_MULTIPLE: usize = 8;

/// Smallest map that is padded: a smaller one would compute a larger share of padding pixels
/// (a 3x3 map 12 pixels for 9).
const MIN_PIXELS: usize = 16;

/// The values stored with padded planes, and their planes.
#[derive(Debug, Default)]
pub struct Planes {
    padded: HashMap<ValueId, usize>,
}

impl Planes {
    /// Elements of one channel of `v` in memory (its pixels, and the padding).
    pub fn plane(&self, graph: &Graph, v: ValueId) -> usize {
        self.padded.get(&v).copied().unwrap_or_else(|| numel(graph.shape(v).get(2..).unwrap_or(&[])))
    }

    /// Elements of one sample of `v` in memory.
    pub fn per_sample(&self, graph: &Graph, v: ValueId) -> usize {
        match self.padded.get(&v) {
            Some(plane) => graph.shape(v)[1] * plane,
            None => numel(&graph.shape(v)[1..]),
        }
    }
}

/// How a node's activations may be padded: `None` where its kernel takes no plane stride; else
/// the sets of its activations that must be padded alike (each padded or not independently of
/// the other sets).
fn together(graph: &Graph, node: &Node) -> Option<Vec<Vec<ValueId>>> {
    let residual = |e: &Epilogue| if e.residual { node.inputs.last().copied() } else { None };
    match &node.op {
        Op::Conv(conv) => {
            let (c_in, c_out) = (graph.shape(node.inputs[0])[1], graph.shape(node.output)[1]);
            let res = residual(&conv.epilogue);
            if conv.is_pointwise() && conv.prologue.is_none() && pointwise_vec4_fits(c_in, c_out) {
                Some(vec![[node.inputs[0], node.output].into_iter().chain(res).collect()])
            } else if depthwise3x3_fits(conv, c_in, c_out) {
                Some(vec![vec![node.inputs[0]], [node.output].into_iter().chain(res).collect()])
            } else {
                None
            }
        }
        Op::GdConv(e) if !e.residual => Some(vec![vec![node.inputs[0]], vec![node.output]]),
        Op::GlobalAveragePool => Some(vec![vec![node.inputs[0]], vec![node.output]]),
        _ => None,
    }
}

/// Which values to pad: those whose maps are not a multiple of PLANE_MULTIPLE pixels, that feed
/// or come out of a pointwise convolution, and that only kernels with a plane stride read and write.
pub fn planes(graph: &Graph) -> Planes {
    let rounded = |v: ValueId| {
        let shape = graph.shape(v);
        let hw = numel(shape.get(2..).unwrap_or(&[]));
        (shape.len() == 4 && hw >= MIN_PIXELS && !hw.is_multiple_of(PLANE_MULTIPLE)).then(|| hw.next_multiple_of(PLANE_MULTIPLE))
    };
    let fixed: HashSet<ValueId> =
        graph.inputs.iter().chain(&graph.outputs).copied().chain(graph.nodes.iter().filter(|n| n.op == Op::Reshape).flat_map(|n| [n.inputs[0], n.output])).collect();
    let mut candidates: HashSet<ValueId> = graph.nodes.iter().map(|n| n.output).filter(|&v| !fixed.contains(&v) && rounded(v).is_some()).collect();
    // Only where a pointwise convolution gains.
    let pointwise: HashSet<ValueId> = graph
        .nodes
        .iter()
        .filter(|n| matches!(&n.op, Op::Conv(c) if c.is_pointwise()))
        .flat_map(|n| n.inputs.iter().copied().filter(|&v| !graph.is_const(v)).chain([n.output]))
        .collect();
    candidates.retain(|v| pointwise.contains(v));
    // Drop what a kernel cannot take padded, and what must be padded with a value that is not,
    // until nothing changes.
    loop {
        let before = candidates.len();
        for node in &graph.nodes {
            let activations = || node.inputs.iter().copied().filter(|&v| !graph.is_const(v)).chain([node.output]);
            match together(graph, node) {
                None => activations().for_each(|v| {
                    candidates.remove(&v);
                }),
                Some(sets) => {
                    for set in sets {
                        if !set.iter().all(|v| candidates.contains(v)) {
                            set.iter().for_each(|v| {
                                candidates.remove(v);
                            });
                        }
                    }
                }
            }
        }
        if candidates.len() == before {
            break;
        }
    }
    Planes { padded: candidates.into_iter().filter_map(|v| Some((v, rounded(v)?))).collect() }
}
