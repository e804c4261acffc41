//! Graph rewrites, one per file, each with its pattern in its first doc comment. [`run_all`] runs
//! them in a fixed, readable order and checks the graph's invariants after each.

mod arith_to_affine;
mod dce;
mod fold_batchnorm;
mod fold_input_affine;
mod fold_output_affine;
mod fuse_activation;
mod fuse_residual;
mod gdconv;
mod lower_batchnorm;

use crate::error::{CompileError, Result};
use crate::ir::{Graph, TensorData, ValueId};

/// A named rewrite of the graph.
pub struct Pass {
    /// The pass's name, that of its module (errors found after the pass quote it).
    pub name: &'static str,
    /// The rewrite, in place.
    pub run: fn(&mut Graph) -> Result<()>,
}

/// The optimisation pipeline, in order.
pub const PASSES: &[Pass] = &[
    Pass { name: "arith_to_affine", run: arith_to_affine::run },
    Pass { name: "fold_batchnorm", run: fold_batchnorm::run },
    Pass { name: "lower_batchnorm", run: lower_batchnorm::run },
    Pass { name: "fold_output_affine", run: fold_output_affine::run },
    Pass { name: "fold_input_affine", run: fold_input_affine::run },
    Pass { name: "fuse_activation", run: fuse_activation::run },
    Pass { name: "fuse_residual", run: fuse_residual::run },
    Pass { name: "gdconv", run: gdconv::run },
    Pass { name: "dce", run: dce::run },
];

/// Runs every pass of [`PASSES`] in order.
pub fn run_all(graph: &mut Graph) -> Result<()> {
    for pass in PASSES {
        (pass.run)(graph)?;
        graph.verify().map_err(|e| CompileError::Internal(format!("after pass {}: {e}", pass.name)))?;
    }
    Ok(())
}

/// The node reading node `i`'s output when it is that output's only use (not a graph output).
fn sole_consumer(graph: &Graph, i: usize) -> Option<usize> {
    let out = graph.nodes[i].output;
    if graph.use_count(out) != 1 {
        return None;
    }
    graph.consumers(out).first().copied()
}

/// Fuses node `consumer` into node `producer`: the producer now computes the consumer's output and
/// carries its ONNX names; the consumer is removed.
fn absorb(graph: &mut Graph, producer: usize, consumer: usize) {
    let removed = graph.nodes.remove(consumer);
    let producer = if consumer < producer { producer - 1 } else { producer };
    let node = &mut graph.nodes[producer];
    node.output = removed.output;
    node.names.extend(removed.names);
}

/// Replaces input `slot` of node `i` with a new f32 constant (never mutating a constant that other
/// nodes may share).
fn set_const(graph: &mut Graph, i: usize, slot: usize, data: Vec<f32>) -> ValueId {
    let old = graph.value(graph.nodes[i].inputs[slot]).clone();
    let id = graph.add_value(old.name, old.shape, Some(TensorData::F32(data)));
    graph.nodes[i].inputs[slot] = id;
    id
}

/// The f32 data of constant input `slot` of node `i`.
fn const_of(graph: &Graph, i: usize, slot: usize) -> Vec<f32> {
    graph.const_f32(graph.nodes[i].inputs[slot]).map(<[f32]>::to_vec).unwrap_or_default()
}
