//! Errors of the compiler. Every variant names what is wrong and where (node, op, attribute,
//! tensor), so that a user can find it in their model.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum CompileError {
    #[error("not a valid ONNX model: {0}")]
    Parse(String),
    #[error("the ONNX model has no graph")]
    NoGraph,
    #[error("ONNX opset {0} of the default domain is not supported (mfn supports opsets 9 to 18)")]
    Opset(i64),
    #[error("node '{node}': unsupported op '{op}'")]
    UnsupportedOp { node: String, op: String },
    #[error("node '{node}' ({op}): attribute '{attr}' = {value} is not supported{note}")]
    UnsupportedAttribute { node: String, op: String, attr: String, value: String, note: String },
    #[error("node '{node}' ({op}): {message}")]
    BadNode { node: String, op: String, message: String },
    #[error("tensor '{name}': {message}")]
    BadTensor { name: String, message: String },
    #[error("graph input '{name}': {message}")]
    BadInput { name: String, message: String },
    #[error("graph output '{name}': {message}")]
    BadOutput { name: String, message: String },
    #[error("node '{node}' reads '{value}', which no graph input, initializer or earlier node defines (or the graph has a cycle)")]
    UnknownValue { node: String, value: String },
    #[error("node '{node}' ({op}): {message} is not supported by the code generator")]
    Unsupported { node: String, op: String, message: String },
    #[error("generated kernel '{kernel}' is not valid WGSL: {message}")]
    InvalidWgsl { kernel: String, message: String },
    #[error("kernel '{kernel}' cannot be translated to {language} by naga: {message}")]
    Translate { kernel: String, language: String, message: String },
    #[error("internal compiler error: {0}")]
    Internal(String),
}

impl CompileError {
    pub(crate) fn bad_node(node: &str, op: &str, message: impl Into<String>) -> Self {
        CompileError::BadNode { node: node.into(), op: op.into(), message: message.into() }
    }
}

pub type Result<T, E = CompileError> = std::result::Result<T, E>;
