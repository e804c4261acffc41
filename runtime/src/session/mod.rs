//! A [`Session`]: a compiled [`Program`] made resident on one device. Weights are uploaded,
//! pipelines and bind groups created once; [`Session::run`] records every dispatch into one
//! command encoder, submits once and reads back once.

mod build;
mod chains;
mod loss;
mod options;
mod pipelines;
mod run;

use std::sync::{Arc, Mutex};

use mfn_compiler::{Port, Program};

use crate::adapter::{describe, select_adapter};
use crate::cache::PipelineCacheStatus;
use crate::error::{Result, RuntimeError};
use crate::limits::Requirements;
use crate::scope::Scopes;
use crate::warm::WarmCores;
use build::Build;
pub(crate) use build::MAX_TILE_SHARERS;
use chains::Chains;
pub(crate) use loss::LossWatch;
use loss::{explain_loss, reason};
pub use options::{driver_threads, SessionOptions};
pub(crate) use pipelines::{bind_group_layout, compute_pipeline, storage_entry, texture_entry, OwnedJob};
pub(crate) use run::{decode, map_read, padded};
use run::{encode, Dispatch, Segment};

/// A compiled [`Program`] made resident on one device, ready to run batches of up to
/// [`Session::max_batch`] samples a submission (larger ones are split). Runs take turns: the
/// session's activation buffers serve one at a time.
pub struct Session {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    /// The kernels' pipelines, by kernel.
    pub(crate) pipelines: Vec<wgpu::ComputePipeline>,
    /// The program's steps, a dispatch each.
    pub(crate) dispatches: Vec<Dispatch>,
    /// What a run dispatches: the steps, some of them in chains.
    segments: Vec<Segment>,
    /// The chains' pipelines, once built.
    chains: Chains,
    /// The chains' status word (0, or 1 where a link gave up waiting), zeroed before every run.
    chain_status: Option<wgpu::Buffer>,
    pub(crate) activations: Vec<wgpu::Buffer>,
    readback: wgpu::Buffer,
    pub(crate) input: (usize, Vec<usize>),
    pub(crate) outputs: Vec<Port>,
    max_batch: usize,
    pub(crate) precision: mfn_compiler::Precision,
    /// Runs share the activation buffers: one at a time.
    pub(crate) running: Mutex<()>,
    /// The image preprocessing pipeline of [`Session::run_images`], created on first use.
    pub(crate) preprocess: Mutex<Option<crate::preprocess::Preprocess>>,
    pub(crate) pipeline_cache: Option<PipelineCacheStatus>,
    weight_bytes: u64,
    subgroups: bool,
    /// Whether some kernel reads its activations as 64-bit integers ([`SessionOptions::wide_loads`]).
    wide_loads: bool,
    /// Why the device was lost, once it was (set by the loss callback of a session's own device).
    lost: Arc<Mutex<Option<String>>>,
    /// Idle-priority threads that keep the CPUs busy during runs on a CPU adapter.
    warm: Option<WarmCores>,
    /// The tile counters of the dispatches that share their tiles (a slot of 1 KiB each),
    /// cleared at the start of every encoder; `None` where no dispatch shares.
    pub(crate) tile_counters: Option<wgpu::Buffer>,
    tile_sharers: u32,
    /// Steps that run in chains at batch 1.
    chained: usize,
    /// Runs of a chain whose link gave up waiting (each ran again without chains).
    chain_retries: std::sync::atomic::AtomicUsize,
}

impl Session {
    /// Opens a device on the adapter `options` selects and makes `program` resident on it.
    pub fn new(program: &Program, options: &SessionOptions) -> Result<Session> {
        let adapter = select_adapter(&options.adapter)?;
        let info = adapter.get_info();
        let req = Requirements::of(program, options.max_batch, &adapter.limits(), &info.name)?.fit_memory(program, options.memory_budget, &info.name)?;
        let needed = crate::limits::features(program, adapter.features(), &info.name)?;
        let subgroups = options.subgroups && crate::limits::subgroups_usable(program, adapter.features(), &info);
        let subgroup_feature = if subgroups { wgpu::Features::SUBGROUP } else { wgpu::Features::empty() };
        let cache_feature = if options.pipeline_cache.is_some() { wgpu::Features::PIPELINE_CACHE } else { wgpu::Features::empty() };
        let mut required_limits = req.limits(&adapter.limits());
        let cpu = info.device_type == wgpu::DeviceType::Cpu;
        let f16_packing = adapter.get_downlevel_capabilities().flags.contains(wgpu::DownlevelFlags::SHADER_F16_IN_F32);
        let wide_loads = options.wide_loads && crate::limits::wide_loads_usable(program, adapter.features(), &info, f16_packing);
        let int64_feature = if wide_loads { wgpu::Features::SHADER_INT64 } else { wgpu::Features::empty() };
        if cpu && options.chains {
            // A chain binds the storage buffers and textures of all its links.
            let (limits, adapter_limits) = (&mut required_limits, adapter.limits());
            limits.max_storage_buffers_per_shader_stage = limits.max_storage_buffers_per_shader_stage.max(adapter_limits.max_storage_buffers_per_shader_stage);
            limits.max_sampled_textures_per_shader_stage = limits.max_sampled_textures_per_shader_stage.max(adapter_limits.max_sampled_textures_per_shader_stage);
            limits.max_buffers_and_acceleration_structures_per_shader_stage =
                limits.max_buffers_and_acceleration_structures_per_shader_stage.max(adapter_limits.max_buffers_and_acceleration_structures_per_shader_stage);
        }
        let desc = wgpu::DeviceDescriptor {
            label: Some("mfn"),
            required_limits,
            // Per-kernel profiling where the adapter can time dispatches, the pipeline cache,
            // subgroups for the subgroup variants, 64-bit integers for wide loads, and f16 where
            // the program stores f16.
            required_features: (adapter.features() & (wgpu::Features::TIMESTAMP_QUERY | cache_feature)) | subgroup_feature | int64_feature | needed,
            ..Default::default()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&desc)).map_err(|e| RuntimeError::RequestDevice { adapter: info.name.clone(), message: e.to_string() })?;
        // The device is the session's own: its loss is recorded for the errors of later calls.
        let lost = Arc::new(Mutex::new(None));
        let record = Arc::clone(&lost);
        device.set_device_lost_callback(move |reason, message| {
            *record.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!("{reason:?}: {message}"));
        });
        let tile_sharers = options.tile_sharers.unwrap_or(if cpu { driver_threads() } else { 0 });
        let how = Build {
            cache_dir: options.pipeline_cache.as_deref(),
            subgroups,
            loop_bounding: options.loop_bounding,
            tile_sharers,
            chains: options.chains.then_some(options.chain_wait),
            wide_loads,
        };
        let mut session = Self::build(program, device, queue, info, req.max_batch, how)?;
        session.lost = lost;
        if options.warm_cores && session.info.device_type == wgpu::DeviceType::Cpu {
            session.warm = Some(WarmCores::start());
        }
        Ok(session)
    }

    /// Makes `program` resident on a host application's device and queue (no second device). The
    /// subgroup variants of kernels run where the device was created with `Features::SUBGROUP`
    /// and `info` (its adapter's) gives subgroups of at least 8 invocations. The device's loss
    /// callback stays the host's (wgpu keeps one): when a call fails, the session probes the
    /// device and reports a lost one as [`RuntimeError::DeviceLost`]. The kernels are built
    /// without loop bounding, as by default in [`Session::new`] ([`SessionOptions::loop_bounding`]),
    /// and read their activations as 64-bit integers where the adapter is a CPU, the device has
    /// `SHADER_INT64` and the program stores f32 ([`SessionOptions::wide_loads`]; an f16 program's
    /// wide form also needs f16 packing, which a device does not report).
    pub fn with_device(program: &Program, device: wgpu::Device, queue: wgpu::Queue, info: wgpu::AdapterInfo, max_batch: usize) -> Result<Session> {
        let req = Requirements::of(program, max_batch, &device.limits(), &info.name)?;
        crate::limits::features(program, device.features(), &info.name)?;
        let subgroups = crate::limits::subgroups_usable(program, device.features(), &info);
        let wide_loads = crate::limits::wide_loads_usable(program, device.features(), &info, false);
        Self::build(program, device, queue, info, req.max_batch, Build { cache_dir: None, subgroups, loop_bounding: false, tile_sharers: 0, chains: None, wide_loads })
    }

    /// Idle-priority threads keeping the CPUs busy during runs ([`SessionOptions::warm_cores`]):
    /// [`crate::warm_cpus`] on a CPU adapter, 0 on other adapters, on a host's device, and where
    /// the OS refuses idle priority.
    pub fn warm_cores(&self) -> usize {
        self.warm.as_ref().map_or(0, WarmCores::threads)
    }

    /// Threads among which the kernels that can share their tiles ([`SessionOptions::tile_sharers`]);
    /// 0 where the workgroup grid gives the tiles (GPUs, a host's device, programs with no such
    /// kernel).
    pub fn tile_sharers(&self) -> u32 {
        self.tile_sharers
    }

    /// Steps of the program that a run of one sample dispatches in chains, several kernels a
    /// dispatch ([`SessionOptions::chains`]), once their pipelines are built
    /// ([`Session::wait_for_chains`]); 0 where every kernel has a dispatch of its own.
    pub fn chained(&self) -> usize {
        if self.chains.pipelines.get().is_some() {
            self.chained
        } else {
            0
        }
    }

    /// Dispatches of a run of `batch` samples: the program's steps, fewer where some run in
    /// chains (once their pipelines are built).
    pub fn dispatch_count(&self, batch: usize) -> usize {
        let ready = self.chains.pipelines.get().is_some();
        let per = |s: &Segment| match s {
            Segment::Chain { steps, max_batch, .. } if !ready || batch > *max_batch => steps.len(),
            _ => 1,
        };
        self.segments.iter().map(per).sum()
    }

    /// Builds the chains' pipelines now, or waits for the thread that builds them after the
    /// first run while the session runs its kernels a dispatch each ([`SessionOptions::chains`]):
    /// for measurements of the steady state. Returns at once where there are none.
    pub fn wait_for_chains(&self) {
        self.chains.wait(&self.device);
    }

    /// Runs in which a chain's link gave up waiting for another thread's tiles (each ran again
    /// without chains: [`SessionOptions::chains`]).
    pub fn chain_retries(&self) -> usize {
        self.chain_retries.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Zeroes the tile counters, first in every encoder that runs the model's dispatches.
    pub(crate) fn clear_tile_counters(&self, encoder: &mut wgpu::CommandEncoder) {
        if let Some(counters) = &self.tile_counters {
            encoder.clear_buffer(counters, 0, None);
        }
        if let Some(status) = &self.chain_status {
            encoder.clear_buffer(status, 0, None);
        }
    }

    /// The adapter the session runs on, described in one line.
    pub fn adapter(&self) -> String {
        describe(&self.info)
    }

    /// The adapter the session runs on, as wgpu describes it.
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }

    /// The device the session runs on: its own ([`Session::new`]) or the host's
    /// ([`Session::with_device`]).
    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    /// Whether the session runs the subgroup variants of its kernels (see
    /// [`SessionOptions::subgroups`]).
    pub fn subgroups(&self) -> bool {
        self.subgroups
    }

    /// Whether some of the session's kernels read their activations as 64-bit integers (see
    /// [`SessionOptions::wide_loads`]).
    pub fn wide_loads(&self) -> bool {
        self.wide_loads
    }

    /// Most samples in one submission (larger batches are split).
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// GPU memory the session allocated: (activation bytes, weight bytes). Activations are sized
    /// for [`Session::max_batch`] samples.
    pub fn memory(&self) -> (u64, u64) {
        (self.activations.iter().map(wgpu::Buffer::size).sum(), self.weight_bytes)
    }

    /// Shape of one input sample (without the batch).
    pub fn input_shape(&self) -> &[usize] {
        &self.input.1
    }

    /// Shape of one sample of the first output (without the batch).
    pub fn output_shape(&self) -> &[usize] {
        &self.outputs[0].shape
    }

    /// The model's outputs (name, shape of one sample), in the order [`Session::run_all`] returns them.
    pub fn outputs(&self) -> &[Port] {
        &self.outputs
    }

    /// Runs a batch: `input` holds whole samples of [`Session::input_shape`], batch first; the
    /// result holds one sample of the first output per input sample (models with several outputs:
    /// [`Session::run_all`]).
    pub fn run(&self, input: &[f32]) -> Result<Vec<f32>> {
        Ok(self.run_all(input)?.swap_remove(0))
    }

    /// Like [`Session::run`], every output of the model, in the order of [`Session::outputs`], each
    /// holding one sample per input sample.
    pub fn run_all(&self, input: &[f32]) -> Result<Vec<Vec<f32>>> {
        let per_sample: usize = self.input.1.iter().product();
        if input.is_empty() || !input.len().is_multiple_of(per_sample) {
            return Err(RuntimeError::InputSize { got: input.len(), shape: self.input.1.clone(), per_sample });
        }
        let _guard = self.running.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        self.gpu_call(|| {
            let samples = input.len() / per_sample;
            let mut outputs: Vec<Vec<f32>> = self.outputs.iter().map(|o| Vec::with_capacity(samples * o.elements())).collect();
            for chunk in input.chunks(per_sample * self.max_batch) {
                for (all, part) in outputs.iter_mut().zip(self.run_chunk(chunk, chunk.len() / per_sample)?) {
                    all.extend(part);
                }
            }
            Ok(outputs)
        })
    }

    fn run_chunk(&self, input: &[f32], batch: usize) -> Result<Vec<Vec<f32>>> {
        self.record_and_read(batch, Scopes::push(&self.device), Some(&encode(input, self.precision)), &|_| {})
    }

    /// `work` (GPU work of a public call), refused at once on a device known to be lost, and with
    /// a GPU failure reported as [`RuntimeError::DeviceLost`] where the device turns out lost.
    pub(crate) fn gpu_call<T>(&self, work: impl FnOnce() -> Result<T>) -> Result<T> {
        if let Some(message) = self.lost_reason() {
            return Err(RuntimeError::DeviceLost { adapter: self.info.name.clone(), message });
        }
        let _warm = self.warm.as_ref().map(WarmCores::hold);
        work().map_err(|e| match e {
            RuntimeError::Gpu { .. } | RuntimeError::OutOfMemory { .. } | RuntimeError::Readback(_) => {
                explain_loss(&self.device, &self.info.name, &self.lost, wgpu::PollType::wait_indefinitely(), e)
            }
            e => e,
        })
    }

    /// Why the device was lost, where its loss callback (a session's own device) said so.
    fn lost_reason(&self) -> Option<String> {
        reason(&self.lost)
    }

    /// What a [`crate::ReadbackHandle`] needs to tell a lost device from another failure.
    pub(crate) fn loss_watch(&self) -> LossWatch {
        LossWatch { device: self.device.clone(), adapter: self.info.name.clone(), lost: Arc::clone(&self.lost) }
    }
}

impl Drop for Session {
    /// Stops the build of the chains' pipelines before its next pipeline.
    fn drop(&mut self) {
        self.chains.dropped.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}
