//! Errors of the compiler. Every variant names what is wrong and where (node, op, attribute,
//! tensor), so that a user can find it in their model.

use thiserror::Error;

/// Everything that can go wrong compiling a model: importing it, rewriting it or generating its
/// kernels.
#[derive(Debug, Error)]
pub enum CompileError {
    /// The bytes are not an ONNX model: empty, not a protobuf `ModelProto`, or importing no opset
    /// of the default domain. Holds what is wrong.
    #[error("not a valid ONNX model: {0}")]
    Parse(String),
    /// The model has no graph, or a graph without nodes.
    #[error("the ONNX model has no graph")]
    NoGraph,
    /// The model's opset of the default domain is outside [`OPSETS`](crate::onnx::OPSETS). Holds
    /// that opset.
    #[error("ONNX opset {0} of the default domain is not supported (mfn supports opsets 9 to 18)")]
    Opset(i64),
    /// A node's op type is not one the importer implements, or belongs to another domain.
    #[error("node '{node}': unsupported op '{op}'")]
    UnsupportedOp {
        /// The ONNX node's name (a label of its op type and outputs where it has none).
        node: String,
        /// The op type, prefixed by its domain (`domain:op`) where that is not the default one.
        op: String,
    },
    /// A node has an attribute its importer does not implement, an attribute of the wrong type, or
    /// a value of one that mfn does not support.
    #[error("node '{node}' ({op}): attribute '{attr}' = {value} is not supported{note}")]
    UnsupportedAttribute {
        /// The ONNX node's name, as in the model (empty where it has none).
        node: String,
        /// The node's op type.
        op: String,
        /// The attribute's name.
        attr: String,
        /// The value found, as text: the value itself, its type where the type is wrong, or
        /// `(present)` where the attribute is not implemented at all.
        value: String,
        /// Explanation appended to the message with its own separator (` (...)` or `: ...`); may
        /// be empty.
        note: String,
    },
    /// A node the importer cannot take as it is: an input missing, of the wrong shape or not the
    /// constant it must be, shapes that do not fit together, an output already defined, and the
    /// like.
    #[error("node '{node}' ({op}): {message}")]
    BadNode {
        /// The ONNX node's name (a label of its op type and outputs where it has none).
        node: String,
        /// The node's op type.
        op: String,
        /// What is wrong.
        message: String,
    },
    /// A tensor that cannot be used: an initialiser or `Constant` value that does not decode, two
    /// initialisers of one name, or a shape that is empty or too large.
    #[error("tensor '{name}': {message}")]
    BadTensor {
        /// The tensor's ONNX name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// A graph input that cannot be used (not a float tensor, a symbolic dimension with no shape
    /// given, a shape that disagrees with the requested one, a name given twice), a model with
    /// other than one input at code generation, or input data to [`crate::eval`] that is not a
    /// whole number of samples.
    #[error("graph input '{name}': {message}")]
    BadInput {
        /// The input's name; the names of all inputs, comma-separated, where their number is wrong.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// A graph output that no node computes, or a model without outputs at code generation.
    #[error("graph output '{name}': {message}")]
    BadOutput {
        /// The output's name; the names of all outputs, comma-separated, where their number is
        /// wrong.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// A node reads a value that no graph input, initialiser or earlier node defines (or the nodes
    /// form a cycle).
    #[error("node '{node}' reads '{value}', which no graph input, initializer or earlier node defines (or the graph has a cycle)")]
    UnknownValue {
        /// The ONNX node's name (a label of its op type and outputs where it has none).
        node: String,
        /// The name of the value it reads.
        value: String,
    },
    /// The code generator has no kernel for a node of the optimised graph: an operation the passes
    /// should have removed, a binary operation that broadcasts or reads a constant, a transpose of
    /// more than four axes a sample, or a graph output that is a constant or a graph input.
    #[error("node '{node}' ({op}): {message} is not supported by the code generator")]
    Unsupported {
        /// The node's primary ONNX name; for a graph output, the output's name.
        node: String,
        /// The IR operation's name ([`Op::name`](crate::ir::Op::name)); `output` for a graph
        /// output.
        op: String,
        /// What is not supported.
        message: String,
    },
    /// naga rejects a kernel: a generated specialisation that does not parse or validate (a
    /// compiler or template bug), or WGSL handed to [`crate::emit::emit`] that is not valid.
    #[error("generated kernel '{kernel}' is not valid WGSL: {message}")]
    InvalidWgsl {
        /// The kernel's name (such as `k03_pointwise`).
        kernel: String,
        /// naga's diagnostic, with the offending source lines.
        message: String,
    },
    /// naga cannot translate a valid kernel into another shading language
    /// ([`crate::emit::emit`]).
    #[error("kernel '{kernel}' cannot be translated to {language} by naga: {message}")]
    Translate {
        /// The kernel's name.
        kernel: String,
        /// The target language (`SPIR-V`, `MSL`, `HLSL`, `GLSL`), or `pipeline constants` where
        /// the kernel's `override`s could not take their defaults.
        language: String,
        /// naga's error.
        message: String,
    },
    /// A broken invariant of the compiler (a bug), such as a graph that fails
    /// [`Graph::verify`](crate::ir::Graph::verify) after a pass. Holds what broke.
    #[error("internal compiler error: {0}")]
    Internal(String),
}

impl CompileError {
    pub(crate) fn bad_node(node: &str, op: &str, message: impl Into<String>) -> Self {
        CompileError::BadNode { node: node.into(), op: op.into(), message: message.into() }
    }
}

/// The result of the compiler's fallible functions.
pub type Result<T, E = CompileError> = std::result::Result<T, E>;
