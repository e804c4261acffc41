//! What a [`Session`](super::Session) is made with: [`SessionOptions`], and the driver's thread count.

use std::path::PathBuf;

use crate::adapter::AdapterOptions;

/// Options of [`Session::new`](super::Session::new).
#[derive(Clone, Debug)]
pub struct SessionOptions {
    /// Which adapter to open ([`Session::with_device`](super::Session::with_device) takes the host's device instead).
    pub adapter: AdapterOptions,
    /// Most samples one submission runs; larger batches are split. Lowered automatically when the
    /// adapter's storage-buffer binding limit would be exceeded.
    pub max_batch: usize,
    /// Folder of the on-disk pipeline cache (Vulkan adapters; see [`Session::pipeline_cache`](super::Session::pipeline_cache));
    /// `None`: pipelines are compiled afresh by every session.
    pub pipeline_cache: Option<PathBuf>,
    /// Bytes of GPU memory the session's buffers may take (wgpu reports no device memory size);
    /// the batch is lowered to fit, and a model that does not fit at batch 1 is refused before
    /// any buffer is created. `None`: only the adapter's per-buffer limits apply.
    pub memory_budget: Option<u64>,
    /// Run the subgroup variants of kernels that have one (`Kernel::subgroup_wgsl`: same results
    /// up to rounding, about 1.5 times as fast on lavapipe) where the adapter has subgroups of at
    /// least 8 invocations. `false`: always the plain kernels.
    pub subgroups: bool,
    /// On a CPU adapter (lavapipe), keep the CPUs busy with idle-priority threads while a run is
    /// in flight, so that the driver's threads do not wait for a halted CPU to wake at every
    /// dispatch (Linux, up to 16 CPUs, no CPU quota: [`crate::warm_cpus`]; measured in docs/performance.md,
    /// "Threads, and CPUs that halt"). Default: on, unless `$MFN_WARM_CORES` is `0`.
    pub warm_cores: bool,
    /// Build the kernels with wgpu's loop bounding (a counter in every loop that guarantees it
    /// ends). The compiler's kernels do not need it: their loops all count up to fixed bounds, and
    /// without it pipeline creation takes 0.6 of the time on lavapipe. Set it for a `.mfn` file
    /// from a source you do not trust. Bounds checks of buffer and texture accesses stay either way.
    pub loop_bounding: bool,
    /// Threads of a CPU adapter's driver among which the kernels that can (the subgroup GEMMs and
    /// convolutions, the depthwise 3x3 kernels: [`mfn_compiler::Kernel::tile_counters`]) share
    /// their tiles: each thread starts on its own share and then takes what the others have left,
    /// so that a fast core does not wait for a slow one at every dispatch. `None`: on a CPU
    /// adapter, the driver's thread count ([`crate::driver_threads`]), elsewhere none; `Some(0)`:
    /// none (the workgroup grid gives the tiles, as on GPUs); `Some(n)`: n (at most 16), on any
    /// adapter (results are identical either way). Default: `None`, or `$MFN_TILE_SHARERS` where
    /// set.
    pub tile_sharers: Option<u32>,
    /// Where the kernels share their tiles ([`SessionOptions::tile_sharers`]), run the kernels of
    /// a bottleneck block as one dispatch, a chain of links each of which waits for all of its
    /// tiles before the next starts ([`mfn_compiler::chain`]): the driver's threads are then woken
    /// and joined once a chain instead of once a kernel. Same tiles, same sums: the results are
    /// identical. A chain runs batches whose tiles fit the driver's loop budget
    /// ([`mfn_compiler::Kernel::unit_iterations`]), larger ones a dispatch a kernel; a batch in
    /// which a link waited too long for another thread runs again without chains. Default: on,
    /// unless `$MFN_CHAINS` is `0`.
    pub chains: bool,
    /// Iterations a chain's link waits for the other threads' tiles at most, 32 polls each, before
    /// it gives up and the batch runs again without chains; it counts against the driver's loop
    /// budget with the tiles. Default: 2048 (several milliseconds on lavapipe).
    pub chain_wait: u32,
    /// On a CPU adapter with 64-bit integers (`SHADER_INT64`: lavapipe), read the activations of
    /// the kernels that allow it as 64-bit integers, bitcast back ([`mfn_compiler::wide`]): the
    /// same bits in half the components, where every component of a load costs the driver a
    /// bounds check and an insert. Same results. Default: on, unless `$MFN_WIDE_LOADS` is `0`.
    pub wide_loads: bool,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            adapter: AdapterOptions::from_env(),
            max_batch: 16,
            pipeline_cache: None,
            memory_budget: None,
            subgroups: true,
            warm_cores: std::env::var("MFN_WARM_CORES").map_or(true, |v| v.trim() != "0"),
            loop_bounding: false,
            tile_sharers: std::env::var("MFN_TILE_SHARERS").ok().and_then(|v| v.trim().parse().ok()),
            chains: std::env::var("MFN_CHAINS").map_or(true, |v| v.trim() != "0"),
            chain_wait: crate::chain::DEFAULT_CHAIN_WAIT,
            wide_loads: std::env::var("MFN_WIDE_LOADS").map_or(true, |v| v.trim() != "0"),
        }
    }
}

/// Threads lavapipe runs a dispatch's workgroups on: `$LP_NUM_THREADS` where set, else one per CPU
/// (at most 16, its limit). An overestimate only leaves some workgroups with nothing to do.
pub fn driver_threads() -> u32 {
    let set = std::env::var("LP_NUM_THREADS").ok().and_then(|v| v.trim().parse::<u32>().ok());
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    set.unwrap_or(cpus).min(16)
}
