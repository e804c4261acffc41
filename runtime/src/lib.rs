//! # mfn-runtime
//!
//! Runs a [`mfn_compiler::Program`] on any wgpu adapter (Vulkan, Metal, DX12; lavapipe on machines
//! without a GPU). Built on wgpu 30: a host application that shares its device must use the same
//! wgpu release.
//!
//! ```no_run
//! let onnx = std::fs::read("mobilefacenet.onnx")?;
//! let program = mfn_compiler::compile(&onnx, &Default::default())?;
//! let session = mfn_runtime::Session::new(&program, &Default::default())?;
//! let embeddings = session.run(&vec![0.0; 2 * 3 * 112 * 112])?; // a batch of two faces
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! 8-bit RGB images can be given as they are: [`Session::run_images`] converts, resizes and
//! normalises them on the GPU ([`Normalization`]) in the same submission as the model;
//! [`Session::run_warped`] samples each through its own 2x3 affine [`Warp`] (letterboxing for a
//! detector, alignment to a face template) in the channel order the model takes ([`PixelFormat`]).

#![warn(missing_docs)]

mod adapter;
mod cache;
mod chain;
mod embed;
mod error;
mod limits;
mod preprocess;
mod profile;
mod scope;
mod session;
mod warm;

pub use adapter::{describe, list_adapters, select_adapter, AdapterOptions};
pub use cache::PipelineCacheStatus;
pub use embed::{Input, ReadbackHandle, TextureInput, TextureWarp};
pub use error::{Result, RuntimeError};
/// The compiled program a session runs, and its `.mfn` file format (`Program::from_mfn`): a
/// runtime-only build loads `.mfn` files without the ONNX front end or naga.
pub use mfn_compiler::{format::FormatError, Program};
pub use preprocess::{Border, ChannelOrder, Image, Normalization, PixelFormat, Warp};
pub use session::{driver_threads, Session, SessionOptions};
pub use wgpu;

/// How many warm-core threads a session on a CPU adapter starts on this machine
/// ([`SessionOptions::warm_cores`]): one per CPU the process may run on; none on machines of more
/// than 16 CPUs, under a CPU quota, or outside Linux.
pub fn warm_cpus() -> usize {
    warm::warm_cpus().len()
}
