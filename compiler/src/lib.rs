//! # mfn-compiler
//!
//! Compiles an ONNX MobileFaceNet (and networks built from the same operations) into a
//! [`Program`]: plain data holding WGSL compute kernels, the order to dispatch them in, a buffer plan
//! and the weights. The runtime (`mfn-runtime`) only creates pipelines and records dispatches.
//!
//! The stages, each in its own module:
//! 1. `onnx`: protobuf -> typed `ir::Graph` with concrete shapes (batch specialised);
//! 2. `passes`: an ordered list of small rewrites (BN folding, fusion, GDConv lowering, ...);
//! 3. `codegen`: one kernel per fused node from the WGSL templates in `shaders/`, validated by
//!    naga, identical specialisations emitted once, plus a liveness-based buffer plan (with the
//!    planes of maps whose pixels are not a multiple of 8 padded where the kernels allow).
//!
//! `eval` is a naive f32 CPU evaluator of the IR, the oracle of the tests. These need the
//! `frontend` feature (on by default); without it only the program data, its `.mfn` file format
//! ([`format`](mod@format)), [`inspect`], [`chain`] and [`wide`] remain: what the runtime needs.

#![warn(missing_docs)]

pub mod chain;
#[cfg(feature = "frontend")]
pub mod codegen;
#[cfg(feature = "frontend")]
pub mod dot;
#[cfg(feature = "frontend")]
pub mod emit;
#[cfg(feature = "frontend")]
pub mod error;
#[cfg(feature = "frontend")]
pub mod eval;
pub mod format;
pub mod inspect;
#[cfg(feature = "frontend")]
pub mod ir;
#[cfg(feature = "frontend")]
pub mod onnx;
#[cfg(feature = "frontend")]
pub mod passes;
mod program;
#[cfg(feature = "frontend")]
pub mod stats;
pub mod wide;

#[cfg(feature = "frontend")]
pub use error::CompileError;
pub use program::*;

/// Options of [`compile`].
#[cfg(feature = "frontend")]
#[derive(Clone, Debug)]
pub struct CompileOptions {
    /// Batch size used to specialise the symbolic batch dimension for shape inference and the IR
    /// dumps. Generated kernels take the batch from the dispatch, so a [`Program`] runs any batch.
    pub batch: usize,
    /// The input's shape without the batch (e.g. `[3, 640, 640]`), for models whose input has
    /// symbolic dimensions besides the batch (detectors exported for any image size). Must agree
    /// with the model's fixed dimensions.
    pub input_shape: Option<Vec<usize>>,
    /// How activations and weights are stored on the GPU (f16: opt-in, needs `SHADER_F16`).
    pub precision: Precision,
}

#[cfg(feature = "frontend")]
impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions { batch: 1, input_shape: None, precision: Precision::F32 }
    }
}

#[cfg(feature = "frontend")]
/// Imports an ONNX model and runs the optimisation passes: the graph the kernels are made from.
pub fn optimise(onnx: &[u8], options: &CompileOptions) -> Result<ir::Graph, CompileError> {
    let mut graph = onnx::import(onnx, options.batch, options.input_shape.as_deref())?;
    passes::run_all(&mut graph)?;
    Ok(graph)
}

#[cfg(feature = "frontend")]
/// Compiles ONNX bytes to a [`Program`].
pub fn compile(onnx: &[u8], options: &CompileOptions) -> Result<Program, CompileError> {
    let graph = optimise(onnx, options)?;
    codegen::generate_with(&graph, options.precision)
}
