//! `Add|Sub|Mul|Div(x, c)` with `c` constant per channel  =>  `Affine(x)`;
//! `Affine -> Affine`  =>  `Affine`.
//!
//! The input normalisation of face models ((x - 127.5) / 128 as Sub and Mul, or Div) becomes one
//! per-channel affine map, which later passes fold into the first convolution.

use super::{absorb, sole_consumer};
use crate::error::Result;
use crate::ir::broadcast::per_channel;
use crate::ir::{Affine, BinOp, Graph, Op};

pub fn run(graph: &mut Graph) -> Result<()> {
    for i in 0..graph.nodes.len() {
        if let Some(affine) = as_affine(graph, i) {
            let node = &mut graph.nodes[i];
            node.inputs.retain(|&v| graph.values[v.0 as usize].data.is_none());
            node.op = Op::Affine(affine);
        }
    }
    let mut i = 0;
    while i < graph.nodes.len() {
        if let (Op::Affine(first), Some(j)) = (&graph.nodes[i].op, sole_consumer(graph, i)) {
            if let Op::Affine(second) = &graph.nodes[j].op {
                let merged = first.then(second);
                graph.nodes[i].op = Op::Affine(merged);
                absorb(graph, i, j);
                continue;
            }
        }
        i += 1;
    }
    Ok(())
}

fn as_affine(graph: &Graph, i: usize) -> Option<Affine> {
    let node = &graph.nodes[i];
    let Op::Binary(op) = node.op else { return None };
    let (a, b) = (node.inputs[0], node.inputs[1]);
    let (x, c, const_first) = match (graph.is_const(a), graph.is_const(b)) {
        (false, true) => (a, b, false),
        (true, false) => (b, a, true),
        _ => return None,
    };
    let x_shape = graph.shape(x);
    let v = per_channel(graph.shape(c), graph.const_f32(c)?, x_shape)?;
    let n = v.len();
    let (scale, shift) = match (op, const_first) {
        (BinOp::Add, _) => (vec![1.0; n], v),
        (BinOp::Sub, false) => (vec![1.0; n], v.iter().map(|c| -c).collect()),
        (BinOp::Sub, true) => (vec![-1.0; n], v),
        (BinOp::Mul, _) => (v, vec![0.0; n]),
        (BinOp::Div, false) => (v.iter().map(|c| 1.0 / c).collect(), vec![0.0; n]),
        (BinOp::Div, true) => return None,
    };
    Some(Affine { scale, shift })
}
