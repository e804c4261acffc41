//! Helpers shared by the workspace tests: GPU sessions that fail (not skip) under CI when no
//! adapter is found, comparisons, and the project's shared material.
#![allow(dead_code)]

use mfn_compiler::{CompileOptions, Program};
use mfn_runtime::{RuntimeError, Session, SessionOptions};

/// A session for `program`, or `None` (with a note) when this machine has no GPU adapter.
/// Under CI (`CI=true`) a missing adapter is a failure: CI must always run the GPU tests.
pub fn session(program: &Program, max_batch: usize) -> Option<Session> {
    session_with(program, &SessionOptions { max_batch, ..Default::default() })
}

/// As [`session`], with the given options.
pub fn session_with(program: &Program, options: &SessionOptions) -> Option<Session> {
    match Session::new(program, options) {
        Ok(s) => Some(s),
        Err(e @ RuntimeError::NoAdapter { .. }) => {
            if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
                panic!("CI=true but no GPU adapter: {e}");
            }
            eprintln!("skipping GPU test: {e}");
            None
        }
        Err(e) => panic!("creating a session failed: {e}"),
    }
}

pub fn compile(onnx: &[u8]) -> Program {
    mfn_compiler::compile(onnx, &CompileOptions::default()).expect("model compiles")
}

/// The optimised graph of a model, for the CPU evaluator.
pub fn optimised(onnx: &[u8]) -> mfn_compiler::ir::Graph {
    mfn_compiler::optimise(onnx, &CompileOptions::default()).expect("model compiles")
}

/// The unoptimised (imported) graph of a model.
pub fn imported(onnx: &[u8]) -> mfn_compiler::ir::Graph {
    mfn_compiler::onnx::import(onnx, 1).expect("model imports")
}

#[allow(unused_imports)]
pub use mfn::face::cosine;

/// Largest absolute difference, scaled by the largest magnitude of the reference (at least 1).
pub fn max_rel_diff(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "output lengths differ");
    let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    got.iter().zip(want).map(|(g, w)| (g - w).abs()).fold(0.0, f32::max) / scale
}
