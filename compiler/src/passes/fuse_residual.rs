//! `Add(Conv(..), r)`  =>  `Conv{epilogue.residual}(.., r)`
//!
//! The inverted-residual shortcut is added by the projection conv that produces one of the Add's
//! inputs, saving a kernel and a round trip through memory. The conv chosen is one whose output
//! the Add alone reads; its epilogue adds `r` after the activation (if any).

use super::{absorb, sole_consumer};
use crate::error::Result;
use crate::ir::{BinOp, Graph, Op};

pub fn run(graph: &mut Graph) -> Result<()> {
    let mut j = 0;
    while j < graph.nodes.len() {
        if let Some((mut i, r)) = candidate(graph, j) {
            // The producer will read `r`: when a later node computes `r`, move the producer down to
            // just before the Add (valid: the Add is its only reader, its inputs are computed earlier).
            if graph.producer(r).is_some_and(|p| p > i) {
                let node = graph.nodes.remove(i);
                graph.nodes.insert(j - 1, node);
                i = j - 1;
            }
            graph.nodes[i].inputs.push(r);
            if let Some(e) = graph.nodes[i].op.epilogue_mut() {
                e.residual = true;
            }
            absorb(graph, i, j);
            continue;
        }
        j += 1;
    }
    Ok(())
}

/// For an `Add` node `j` of two same-shaped activations, the producer to fuse it into and the
/// other operand. Prefers the later producer (the projection, not the shortcut).
fn candidate(graph: &Graph, j: usize) -> Option<(usize, crate::ir::ValueId)> {
    let node = &graph.nodes[j];
    if node.op != Op::Binary(BinOp::Add) || node.inputs.len() != 2 {
        return None;
    }
    let (a, b) = (node.inputs[0], node.inputs[1]);
    if graph.shape(a) != graph.shape(b) || graph.is_const(a) || graph.is_const(b) || a == b {
        return None;
    }
    let fusable = |v| {
        let p = graph.producer(v)?;
        let ok = matches!(graph.nodes[p].op, Op::Conv(_) | Op::Linear(_)) && graph.nodes[p].op.epilogue().is_some_and(|e| !e.residual) && sole_consumer(graph, p) == Some(j);
        ok.then_some(p)
    };
    match (fusable(a), fusable(b)) {
        (Some(pa), Some(pb)) if pa > pb => Some((pa, b)),
        (_, Some(pb)) => Some((pb, a)),
        (Some(pa), None) => Some((pa, b)),
        (None, None) => None,
    }
}
