//! `BatchNormalization` (not after a Conv or Linear)  =>  `Affine`, merged with neighbouring
//! affine maps.

use super::{arith_to_affine, fold_batchnorm::batchnorm_affine};
use crate::error::Result;
use crate::ir::{Graph, Op};

pub fn run(graph: &mut Graph) -> Result<()> {
    for j in 0..graph.nodes.len() {
        if let Op::BatchNorm { epsilon } = graph.nodes[j].op {
            let affine = batchnorm_affine(graph, j, epsilon);
            graph.nodes[j].op = Op::Affine(affine);
            graph.nodes[j].inputs.truncate(1);
        }
    }
    arith_to_affine::run(graph)
}
