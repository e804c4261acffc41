//! `Affine -> Conv`  =>  `Conv(w', b')` when the conv has no padding (exact), otherwise
//! `Conv{prologue: Affine}`.
//!
//! Folding `x * a + c` into a zero-padded conv would be wrong at the borders: the padding is zero
//! *after* normalisation, so a raw-pixel zero there would become `c`. The prologue applies the map
//! to in-bounds taps only, which keeps the result exact.

use super::{const_of, set_const, sole_consumer};
use crate::error::Result;
use crate::ir::{Graph, Op};

pub fn run(graph: &mut Graph) -> Result<()> {
    let mut i = 0;
    while i < graph.nodes.len() {
        let (Op::Affine(affine), Some(j)) = (graph.nodes[i].op.clone(), sole_consumer(graph, i)) else {
            i += 1;
            continue;
        };
        let Op::Conv(conv) = &graph.nodes[j].op else {
            i += 1;
            continue;
        };
        if conv.prologue.is_some() || graph.nodes[j].inputs[0] != graph.nodes[i].output {
            i += 1;
            continue;
        }
        if conv.pads == [0; 4] {
            fold_exact(graph, j, &affine.scale, &affine.shift, conv.group);
        } else if let Op::Conv(conv) = &mut graph.nodes[j].op {
            conv.prologue = Some(affine);
        }
        // The conv now reads the affine's input and stands for both nodes.
        let input = graph.nodes[i].inputs[0];
        let names = graph.nodes[i].names.clone();
        graph.nodes[j].inputs[0] = input;
        let node = &mut graph.nodes[j];
        node.names.splice(0..0, names);
        graph.nodes.remove(i);
    }
    Ok(())
}

/// `sum w * (x * a + c) + b = sum (w * a) * x + (b + sum w * c)`, per input channel of each group.
fn fold_exact(graph: &mut Graph, j: usize, scale: &[f32], shift: &[f32], group: usize) {
    let mut w = const_of(graph, j, 1);
    let mut b = const_of(graph, j, 2);
    let w_shape = graph.shape(graph.nodes[j].inputs[1]).to_vec();
    let (c_out, c_in_g, taps) = (w_shape[0], w_shape[1], w_shape[2] * w_shape[3]);
    let out_per_group = c_out / group;
    for (o, bias) in b.iter_mut().enumerate().take(c_out) {
        let g = o / out_per_group;
        for ci in 0..c_in_g {
            let c = g * c_in_g + ci;
            for t in 0..taps {
                let k = (o * c_in_g + ci) * taps + t;
                *bias += w[k] * shift[c];
                w[k] *= scale[c];
            }
        }
    }
    set_const(graph, j, 1, w);
    set_const(graph, j, 2, b);
}
