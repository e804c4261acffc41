//! Errors of the runtime: what the adapter lacks, what input was wrong, what the GPU reported.

use thiserror::Error;

/// What can go wrong in the runtime; every message names what and where.
#[derive(Debug, Error)]
pub enum RuntimeError {
    /// No adapter matches the options.
    #[error("no GPU adapter found{filter} (available: {available}); on Linux without a GPU, install Mesa's lavapipe (apt-get install mesa-vulkan-drivers)")]
    NoAdapter {
        /// What the options asked for, as a phrase (empty: any adapter).
        filter: String,
        /// The adapters wgpu found.
        available: String,
    },
    /// A backend name other than vulkan, metal, dx12 or gl.
    #[error("unknown backend '{0}' in MFN_BACKEND or --backend (expected vulkan, metal, dx12 or gl)")]
    UnknownBackend(String),
    /// The program needs more of a device limit than the adapter has.
    #[error("the adapter '{adapter}' does not support this program: {what} needs {needed}, the adapter allows {available}")]
    Limit {
        /// The adapter's name.
        adapter: String,
        /// The limit, and what needs it.
        what: String,
        /// What the program needs.
        needed: u64,
        /// What the adapter allows.
        available: u64,
    },
    /// The program needs a feature the adapter lacks (f16 storage: `SHADER_F16`).
    #[error("the adapter '{adapter}' lacks {feature}, which {why} need; compile with f32 precision instead")]
    MissingFeature {
        /// The adapter's name.
        adapter: String,
        /// The wgpu feature.
        feature: &'static str,
        /// What needs it.
        why: &'static str,
    },
    /// A call that takes f32 programs only was given an f16 one (the argument names the call).
    #[error("{0} is not available for programs compiled with f16 precision")]
    F16Unsupported(&'static str),
    /// The adapter refused to open a device.
    #[error("could not open the device on '{adapter}': {message}")]
    RequestDevice {
        /// The adapter's name.
        adapter: String,
        /// wgpu's message.
        message: String,
    },
    /// The input is not a whole number of samples.
    #[error("input has {got} values, which is not a whole batch of samples of shape {shape:?} ({per_sample} values each)")]
    InputSize {
        /// Values given.
        got: usize,
        /// The shape of one sample.
        shape: Vec<usize>,
        /// Values in one sample.
        per_sample: usize,
    },
    /// An image or warp given to the GPU preprocessing is unusable.
    #[error("image {index}: {reason}")]
    BadImage {
        /// Its position in the batch.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// Images were given to a model whose input is not one RGB image.
    #[error("the model's input {shape:?} is not one RGB image (expected [3, H, W])")]
    NotImageInput {
        /// The model's input shape, one sample.
        shape: Vec<usize>,
    },
    /// wgpu reported a validation or internal error.
    #[error("the GPU reported an error during {stage}: {message}")]
    Gpu {
        /// What the runtime was doing.
        stage: &'static str,
        /// wgpu's message.
        message: String,
    },
    /// The GPU ran out of memory.
    #[error("the GPU ran out of memory during {stage}: {message}; lower the batch (max_batch) or set a memory budget")]
    OutOfMemory {
        /// What the runtime was doing.
        stage: &'static str,
        /// wgpu's message.
        message: String,
    },
    /// The device was lost (driver reset, device destroyed, GPU removed): the session cannot run again.
    #[error("the GPU device on '{adapter}' was lost ({message}): the driver was reset, the device destroyed or the GPU removed; create a new Session")]
    DeviceLost {
        /// The adapter's name.
        adapter: String,
        /// Why, as far as wgpu or the probe tells.
        message: String,
    },
    /// Recording the model into a host's command encoder failed.
    #[error("cannot encode the model into the host's commands: {0}")]
    Encode(String),
    /// Mapping the results for reading failed.
    #[error("reading the result back from the GPU failed: {0}")]
    Readback(String),
}

/// The runtime's results.
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;
