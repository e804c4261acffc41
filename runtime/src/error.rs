//! Errors of the runtime: what the adapter lacks, what input was wrong, what the GPU reported.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error("no GPU adapter found{filter} (available: {available}); on Linux without a GPU, install Mesa's lavapipe (apt-get install mesa-vulkan-drivers)")]
    NoAdapter { filter: String, available: String },
    #[error("unknown backend '{0}' in MFN_BACKEND or --backend (expected vulkan, metal, dx12 or gl)")]
    UnknownBackend(String),
    #[error("the adapter '{adapter}' does not support this program: {what} needs {needed}, the adapter allows {available}")]
    Limit { adapter: String, what: String, needed: u64, available: u64 },
    #[error("the adapter '{adapter}' lacks {feature}, which {why} need; compile with f32 precision instead")]
    MissingFeature { adapter: String, feature: &'static str, why: &'static str },
    #[error("{0} is not available for programs compiled with f16 precision")]
    F16Unsupported(&'static str),
    #[error("could not open the device on '{adapter}': {message}")]
    RequestDevice { adapter: String, message: String },
    #[error("input has {got} values, which is not a whole batch of samples of shape {shape:?} ({per_sample} values each)")]
    InputSize { got: usize, shape: Vec<usize>, per_sample: usize },
    #[error("image {index}: {reason}")]
    BadImage { index: usize, reason: String },
    #[error("the model's input {shape:?} is not one RGB image (expected [3, H, W])")]
    NotImageInput { shape: Vec<usize> },
    #[error("the GPU reported an error during {stage}: {message}")]
    Gpu { stage: &'static str, message: String },
    #[error("the GPU ran out of memory during {stage}: {message}; lower the batch (max_batch) or set a memory budget")]
    OutOfMemory { stage: &'static str, message: String },
    #[error("the GPU device on '{adapter}' was lost ({message}): the driver was reset, the device destroyed or the GPU removed; create a new Session")]
    DeviceLost { adapter: String, message: String },
    #[error("cannot encode the model into the host's commands: {0}")]
    Encode(String),
    #[error("reading the result back from the GPU failed: {0}")]
    Readback(String),
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;
