//! Per-kernel GPU parity: tiny ONNX models, one pattern each, run on the GPU and compared with the
//! CPU evaluator on the *imported, unoptimised* graph (so the passes are checked as well as the
//! kernels), and with the evaluator on the optimised graph. Every case also states which kernels the
//! compiled program dispatches, in order: that is where a fusion that did (or did not) happen shows.
//!
//! The cases are tables of small builders ([`Net`]) with seeded random weights and inputs; the
//! harness ([`run_cases`]) checks every case and reports all failures at once.

#[path = "../common/mod.rs"]
mod common;
mod convolutions;
mod harness;
mod net;
mod other_layers;
mod session_options;

use mfn_compiler::Program;
use mfn_models::builder::{Attr, Dim, GraphBuilder};
use mfn_models::rng::Rng;
use mfn_runtime::{Session, SessionOptions};

use harness::*;
use net::*;

/// Relative tolerance, max |got - want| / max |want|. The longest accumulations here are dot
/// products of at most ~820 f32 terms (a 13x7x9 Gemm input, a 7x7 conv over 13 channels), summed
/// in a different order (or with BN, bias and the input normalisation folded into the weights) on
/// each side. Rounding errors of such sums grow like sqrt(K) ulps of the partial sums, ~1e-6 of the
/// output range; measured below 1e-6 on every case. 1e-5 leaves room for a GPU that contracts to
/// FMA or evaluates `exp` to its 3-ulp WGSL bound, and still fails any indexing or fusion bug,
/// which shows up as errors of order 1e-2 or more.
const TOLERANCE: f32 = 1e-5;
