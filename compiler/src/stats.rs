//! Figures of an optimised graph: learned parameters and multiply-adds.

use crate::ir::{numel, Act, Affine, Graph, Op};

/// Learned parameters: weights and biases of Conv, GdConv and Linear (after BN folding, so BN's
/// scale and shift are inside them), PReLU slopes, and affine maps (standalone or kept as a
/// prologue) in their most compact form: a scale or shift the same for every channel is one
/// number, an identity scale or zero shift none. The input normalisation `(x - 127.5) / 128` so
/// counts 2, as in the model file.
pub fn parameters(graph: &Graph) -> u64 {
    let mut total = 0;
    for node in &graph.nodes {
        let weights = |n: usize| node.inputs[1..=n].iter().map(|&v| numel(graph.shape(v))).sum::<usize>();
        let (count, epilogue) = match &node.op {
            Op::Conv(c) => (weights(2) + c.prologue.as_ref().map_or(0, affine_parameters), Some(&c.epilogue)),
            Op::GdConv(e) | Op::Linear(e) => (weights(2), Some(e)),
            Op::Affine(a) => (affine_parameters(a), None),
            Op::Act(Act::PRelu(slope)) => (slope.len(), None),
            _ => (0, None),
        };
        let slopes = match epilogue.and_then(|e| e.act.as_ref()) {
            Some(Act::PRelu(slope)) => slope.len(),
            _ => 0,
        };
        total += (count + slopes) as u64;
    }
    total
}

fn affine_parameters(a: &Affine) -> usize {
    let compact = |v: &[f32], identity: f32| match v {
        [] => 0,
        [first, ..] if v.iter().all(|x| x == first) => usize::from(*first != identity),
        _ => v.len(),
    };
    compact(&a.scale, 1.0) + compact(&a.shift, 0.0)
}

/// Multiply-adds of one node for one sample.
pub fn node_macs(graph: &Graph, i: usize) -> u64 {
    let node = &graph.nodes[i];
    let out = graph.shape(node.output);
    let per_sample_out = numel(&out[1..]) as u64;
    match &node.op {
        Op::Conv(_) => {
            let w = graph.shape(node.inputs[1]);
            per_sample_out * (w[1] * w[2] * w[3]) as u64
        }
        Op::GdConv(_) | Op::GlobalAveragePool => numel(&graph.shape(node.inputs[0])[1..]) as u64,
        Op::Linear(_) => numel(graph.shape(node.inputs[1])) as u64,
        _ => 0,
    }
}

/// Multiply-adds of the whole graph for one sample.
pub fn macs(graph: &Graph) -> u64 {
    (0..graph.nodes.len()).map(|i| node_macs(graph, i)).sum()
}
