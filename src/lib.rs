//! The `mfn` package: the command-line tool and what its commands and the workspace tests share:
//! where the project's shared material lives, and loading a model from a path or the project's
//! own generated MobileFaceNet.

#![warn(missing_docs)]

pub mod align;
pub mod detect;
pub mod face;
pub mod image_io;
pub mod lfw;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use mfn_compiler::{ir::Graph, CompileOptions, Program};

pub use mfn_models::Variant;

/// The folder of real models and faces: `$MFN_SHARED`, else `../shared` beside the workspace root.
pub fn shared_dir() -> PathBuf {
    match std::env::var_os("MFN_SHARED") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"),
    }
}

/// A file under [`shared_dir`], or an error naming the missing path and how to point at it.
pub fn shared_file(relative: &str) -> Result<PathBuf> {
    let path = shared_dir().join(relative);
    if !path.exists() {
        bail!("missing shared file {}: put the project's shared material at ../shared beside the workspace or set MFN_SHARED", path.display());
    }
    Ok(path)
}

/// The pretrained MobileFaceNet in the shared folder.
pub const REAL_MODEL: &str = "models/mobilefacenet-insightface.onnx";

/// The YuNet face detector in the shared folder (any input size).
pub const DETECTOR_MODEL: &str = "models/yunet_n_dynamic.onnx";

/// Seed of the project's generated MobileFaceNets (the reference outputs in `models/reference`
/// were made with it).
pub const SYNTHETIC_SEED: u64 = 2024;

/// The bytes of a model given as a path (ONNX or `.mfn`), or ONNX bytes of `synthetic[:VARIANT]`,
/// the project's own seeded MobileFaceNet (variants: 112x112, 112x96, 96x96, m, s).
pub fn load_model(spec: &str) -> Result<Vec<u8>> {
    if let Some(rest) = spec.strip_prefix("synthetic") {
        let variant = parse_variant(rest.trim_start_matches(':'))?;
        return Ok(synthetic_model(variant));
    }
    std::fs::read(spec).with_context(|| format!("cannot read model file '{spec}'"))
}

/// The MobileFaceNet variant called `name`: its full name (`mobilefacenet-112x96`) or the part
/// after `mobilefacenet-` (`112x96`, `m`, `s`); empty means 112x112.
pub fn parse_variant(name: &str) -> Result<Variant> {
    let name = if name.is_empty() { "112x112" } else { name };
    Variant::all()
        .into_iter()
        .find(|v| v.name() == name || v.name().trim_start_matches("mobilefacenet-") == name)
        .with_context(|| format!("unknown MobileFaceNet variant '{name}' (112x112, 112x96, 96x96, m, s)"))
}

/// The project's generated MobileFaceNet (seeded random weights) as ONNX bytes.
pub fn synthetic_model(variant: Variant) -> Vec<u8> {
    use onnx_protobuf::Message;
    mfn_models::mobilefacenet(variant, SYNTHETIC_SEED).write_to_bytes().expect("a generated model serialises")
}

/// The real pretrained model if the shared folder has it, else the generated one; the second
/// value says which, for the user.
pub fn default_model() -> (Vec<u8>, String) {
    match shared_file(REAL_MODEL).and_then(|p| std::fs::read(&p).with_context(|| p.display().to_string())) {
        Ok(bytes) => (bytes, format!("{} (pretrained)", shared_dir().join(REAL_MODEL).display())),
        Err(e) => (synthetic_model(Variant::Mfn112x112), format!("the project's generated MobileFaceNet 112x112 (seed {SYNTHETIC_SEED}, random weights) because {e}")),
    }
}

/// A model ready to run: the compiled program, and the optimised graph when it was compiled here
/// from ONNX (an `.mfn` file holds only the program).
pub struct Model {
    /// The compiled model: kernels and execution plan.
    pub program: Program,
    /// The optimised graph; `None` for an `.mfn` file.
    pub graph: Option<Graph>,
    /// What the model is, for the user: the spec it was loaded from.
    pub name: String,
}

impl Model {
    /// The optimised graph, or an error saying that `what` needs the ONNX model.
    pub fn graph(&self, what: &str) -> Result<&Graph> {
        self.graph.as_ref().with_context(|| format!("{what} needs the ONNX model: {} is a compiled .mfn file, which holds the kernels and plan but not the graph", self.name))
    }
}

/// Loads `spec` (see [`load_model`]): an `.mfn` file, recognised by its magic number whatever its
/// name, is read as it is; anything else is compiled as ONNX.
pub fn load_program(spec: &str) -> Result<Model> {
    load_program_with(spec, &CompileOptions::default())
}

/// [`load_program`] with compile options (input shape, precision) for ONNX models; an `.mfn` file
/// must agree with them, as it was compiled already.
pub fn load_program_with(spec: &str, options: &CompileOptions) -> Result<Model> {
    program_from_bytes_with(&load_model(spec)?, spec, options)
}

/// A [`Model`] from the bytes of an `.mfn` file or an ONNX model; `name` names them in errors.
pub fn program_from_bytes(bytes: &[u8], name: &str) -> Result<Model> {
    program_from_bytes_with(bytes, name, &CompileOptions::default())
}

/// [`program_from_bytes`] with compile options.
pub fn program_from_bytes_with(bytes: &[u8], name: &str, options: &CompileOptions) -> Result<Model> {
    if mfn_compiler::format::is_mfn(bytes) {
        let program = Program::from_mfn(bytes).with_context(|| format!("reading the compiled model {name}"))?;
        if options.precision != program.precision {
            bail!("{name} was packed with {} storage; --precision {} applies when compiling an ONNX model", program.precision.wgsl(), options.precision.wgsl());
        }
        if let Some(shape) = options.input_shape.as_ref().filter(|s| **s != program.input.shape) {
            bail!("{name} was packed for input {:?}, not {shape:?}", program.input.shape);
        }
        return Ok(Model { program, graph: None, name: name.to_string() });
    }
    let graph = mfn_compiler::optimise(bytes, options).with_context(|| format!("compiling {name}"))?;
    let program = mfn_compiler::codegen::generate_with(&graph, options.precision).with_context(|| format!("compiling {name}"))?;
    Ok(Model { program, graph: Some(graph), name: name.to_string() })
}
