//! `Conv|Linear -> BatchNormalization`  =>  `Conv(w', b')`
//!
//! The paper folds BN into the convolution before deployment: with `s = gamma / sqrt(var + eps)`,
//! `w'[o] = w[o] * s[o]` and `b'[o] = (b[o] - mean[o]) * s[o] + beta[o]`.

use super::{fold_output_affine, sole_consumer};
use crate::error::Result;
use crate::ir::{Affine, Graph, Op};

pub fn run(graph: &mut Graph) -> Result<()> {
    let mut i = 0;
    while i < graph.nodes.len() {
        let foldable = matches!(graph.nodes[i].op, Op::Conv(_) | Op::Linear(_)) && graph.nodes[i].op.epilogue().is_some_and(|e| e.act.is_none() && !e.residual);
        if let (true, Some(j)) = (foldable, sole_consumer(graph, i)) {
            if let Op::BatchNorm { epsilon } = graph.nodes[j].op {
                let affine = batchnorm_affine(graph, j, epsilon);
                fold_output_affine::fold(graph, i, j, &affine);
                continue;
            }
        }
        i += 1;
    }
    Ok(())
}

/// The per-channel affine map a BatchNormalization node computes.
pub fn batchnorm_affine(graph: &Graph, j: usize, epsilon: f32) -> Affine {
    let inputs = &graph.nodes[j].inputs;
    let get = |k: usize| graph.const_f32(inputs[k]).unwrap_or_default();
    let (gamma, beta, mean, var) = (get(1), get(2), get(3), get(4));
    let scale: Vec<f32> = gamma.iter().zip(var).map(|(g, v)| g / (v + epsilon).sqrt()).collect();
    let shift = beta.iter().zip(mean).zip(&scale).map(|((b, m), s)| b - m * s).collect();
    Affine { scale, shift }
}
