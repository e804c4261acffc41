//! `Conv|Linear -> Affine`  =>  `Conv(w', b')` (a per-output-channel scale and shift merge into
//! the weights and bias, exactly).

use super::{absorb, const_of, set_const, sole_consumer};
use crate::error::Result;
use crate::ir::{Affine, Graph, Op};

pub fn run(graph: &mut Graph) -> Result<()> {
    let mut i = 0;
    while i < graph.nodes.len() {
        let plain = match &graph.nodes[i].op {
            Op::Conv(c) => c.epilogue.act.is_none() && !c.epilogue.residual,
            Op::Linear(e) => e.act.is_none() && !e.residual,
            _ => false,
        };
        if let (true, Some(j)) = (plain, sole_consumer(graph, i)) {
            if let Op::Affine(affine) = graph.nodes[j].op.clone() {
                fold(graph, i, j, &affine);
                continue;
            }
        }
        i += 1;
    }
    Ok(())
}

/// Folds `affine` (node `j`, reading node `i`'s output) into node `i`'s weights and bias.
pub fn fold(graph: &mut Graph, i: usize, j: usize, affine: &Affine) {
    let mut w = const_of(graph, i, 1);
    let mut b = const_of(graph, i, 2);
    let per_out = w.len() / b.len();
    for (o, chunk) in w.chunks_mut(per_out).enumerate() {
        chunk.iter_mut().for_each(|v| *v *= affine.scale[o]);
        b[o] = b[o] * affine.scale[o] + affine.shift[o];
    }
    set_const(graph, i, 1, w);
    set_const(graph, i, 2, b);
    absorb(graph, i, j);
}
