//! A [`Session`]: a compiled [`Program`] made resident on one device. Weights are uploaded,
//! pipelines and bind groups created once; [`Session::run`] records every dispatch into one
//! command encoder, submits once and reads back once.

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};

use mfn_compiler::{Port, Program, Resource};
use wgpu::util::DeviceExt;

use crate::adapter::{describe, select_adapter, AdapterOptions};
use crate::cache::{DiskCache, PipelineCacheStatus};
use crate::error::{Result, RuntimeError};
use crate::limits::{split_workgroups, Requirements};
use crate::scope::Scopes;
use crate::warm::WarmCores;

/// Options of [`Session::new`].
#[derive(Clone, Debug)]
pub struct SessionOptions {
    pub adapter: AdapterOptions,
    /// Most samples one submission runs; larger batches are split. Lowered automatically when the
    /// adapter's storage-buffer binding limit would be exceeded.
    pub max_batch: usize,
    /// Folder of the on-disk pipeline cache (Vulkan adapters; see [`Session::pipeline_cache`]);
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
    /// dispatch (Linux, up to 16 CPUs, no CPU quota: [`crate::warm_cpus`]; measured in README.md,
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

/// How [`Session::build`] makes the pipelines: the on-disk pipeline cache, the subgroup
/// variants, loop bounding ([`SessionOptions`]).
struct Build<'a> {
    cache_dir: Option<&'a Path>,
    subgroups: bool,
    loop_bounding: bool,
    /// Threads sharing the kernels' tiles, 0 for none ([`SessionOptions::tile_sharers`]).
    tile_sharers: u32,
    /// Run kernels that share their tiles in chains ([`SessionOptions::chains`]), their links
    /// waiting at most this many iterations ([`SessionOptions::chain_wait`]).
    chains: Option<u32>,
    /// Read activations as 64-bit integers where the kernels allow ([`SessionOptions::wide_loads`]).
    wide_loads: bool,
}

pub(crate) struct Dispatch {
    /// The kernel's index, its pipeline's in [`Session::pipelines`].
    pub pipeline: usize,
    pub bind_group: wgpu::BindGroup,
    pub workgroups: [u32; 2],
}

/// What a run dispatches, in turn.
pub(crate) enum Segment {
    /// One step ([`Session::dispatches`]).
    Step(usize),
    /// Steps that run as chain `chain` ([`Session::chains`]) in submissions of at most
    /// `max_batch` samples, one workgroup per thread and sample (else a dispatch a step).
    Chain { steps: std::ops::Range<usize>, chain: usize, bind_group: wgpu::BindGroup, workgroups: u32, max_batch: usize },
}

/// The chains' pipelines, built on a thread of their own once the session has run a few times,
/// while it goes on running a dispatch a kernel: a chain is as long to build as its kernels
/// together, and neither the session's creation nor its first runs (a process that embeds an
/// image or two, a test) need wait or share the CPU with the build.
pub(crate) struct Chains {
    pipelines: Arc<std::sync::OnceLock<Vec<wgpu::ComputePipeline>>>,
    build: Mutex<ChainBuild>,
    loop_bounding: bool,
    /// Runs so far that a chain would have taken (the build starts after [`RUNS_BEFORE_CHAINS`]).
    runs: std::sync::atomic::AtomicUsize,
    /// Set when the session is dropped: the build stops before its next pipeline.
    dropped: Arc<std::sync::atomic::AtomicBool>,
}

/// Runs of a session before it builds its chains' pipelines.
const RUNS_BEFORE_CHAINS: usize = 3;

enum ChainBuild {
    /// Before the first run ends: what to build.
    Waiting(Vec<OwnedJob>),
    Building(std::thread::JoinHandle<()>),
    Done,
}

impl Chains {
    /// Counts a run that a chain would have taken, and starts building the chains' pipelines after
    /// [`RUNS_BEFORE_CHAINS`] of them (a session that only runs batches too large for any chain
    /// never builds them).
    fn ran(&self, device: &wgpu::Device) {
        if self.runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1 >= RUNS_BEFORE_CHAINS {
            self.start(device);
        }
    }

    /// Starts building the chains' pipelines on `device`, unless begun already.
    fn start(&self, device: &wgpu::Device) {
        let mut build = self.build.lock().unwrap_or_else(|p| p.into_inner());
        if let ChainBuild::Waiting(jobs) = &mut *build {
            let jobs = std::mem::take(jobs);
            let (device, built, loop_bounding, dropped) = (device.clone(), Arc::clone(&self.pipelines), self.loop_bounding, Arc::clone(&self.dropped));
            *build = ChainBuild::Building(std::thread::spawn(move || {
                let jobs: Vec<Job> = jobs.iter().map(OwnedJob::job).collect();
                // A chain that cannot be built leaves the session to its kernels' dispatches.
                if let Ok(pipelines) = create_pipelines(&device, &jobs, loop_bounding, None, Some(&dropped)) {
                    let _ = built.set(pipelines);
                }
            }));
        }
    }

    /// Builds the chains' pipelines now, or waits for the thread building them.
    fn wait(&self, device: &wgpu::Device) {
        self.start(device);
        let mut build = self.build.lock().unwrap_or_else(|p| p.into_inner());
        if let ChainBuild::Building(thread) = std::mem::replace(&mut *build, ChainBuild::Done) {
            let _ = thread.join();
        }
    }
}

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
        let (device, queue) = pollster::block_on(adapter.request_device(&desc))
            .map_err(|e| RuntimeError::RequestDevice { adapter: info.name.clone(), message: e.to_string() })?;
        // The device is the session's own: its loss is recorded for the errors of later calls.
        let lost = Arc::new(Mutex::new(None));
        let record = Arc::clone(&lost);
        device.set_device_lost_callback(move |reason, message| {
            *record.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!("{reason:?}: {message}"));
        });
        let tile_sharers = options.tile_sharers.unwrap_or(if cpu { driver_threads() } else { 0 });
        let how = Build { cache_dir: options.pipeline_cache.as_deref(), subgroups, loop_bounding: options.loop_bounding, tile_sharers, chains: options.chains.then_some(options.chain_wait), wide_loads };
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

    fn build(
        program: &Program,
        device: wgpu::Device,
        queue: wgpu::Queue,
        info: wgpu::AdapterInfo,
        max_batch: usize,
        how: Build<'_>,
    ) -> Result<Session> {
        let Build { cache_dir, subgroups, loop_bounding, tile_sharers, chains, wide_loads } = how;
        // A single thread has nothing to share, nor a program whose kernels (in the variants that
        // run) have no counters; a slot holds the counters of at most 16 threads (a counter out of
        // its binding would never grow).
        let shares = program.kernels.iter().any(|k| k.shares_tiles(subgroups));
        let tile_sharers = if shares && tile_sharers > 1 { tile_sharers.min(MAX_TILE_SHARERS) } else { 0 };
        let scopes = Scopes::push(&device);
        let storage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
        let precision = program.precision;
        let element = precision.bytes();
        let activations: Vec<wgpu::Buffer> = program
            .buffers
            .iter()
            .enumerate()
            .map(|(i, &elements)| {
                device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(&format!("b{i}")),
                    size: padded(element * elements * max_batch),
                    usage: storage,
                    mapped_at_creation: false,
                })
            })
            .collect();
        let weights: Vec<Resident> = program.weights.iter().map(|w| Resident::upload(&device, &queue, w)).collect();
        // As large as the largest element a kernel declares (the vec4 GEMM's pairs of pixel vec4s).
        let unused = device.create_buffer(&wgpu::BufferDescriptor { label: Some("unused"), size: 32, usage: storage, mapped_at_creation: false });
        let weight_bytes = weights.iter().map(|w| w.bytes).sum();
        let disk_cache = cache_dir.and_then(|dir| DiskCache::open(&device, &info, dir));
        let mut layouts = std::collections::HashMap::new();
        for k in &program.kernels {
            layouts.entry(layout_key(k)).or_insert_with(|| kernel_layout(&device, k));
        }
        // Requirements::of checked that every grid fits once split.
        let per_dim = device.limits().max_compute_workgroups_per_dimension;
        let shared: Vec<Option<Shared>> = program
            .kernels
            .iter()
            .enumerate()
            .map(|(i, k)| {
                // Every step of a kernel has its grid: the kernel's constants fix the shapes.
                let grid = program.steps.iter().find(|s| s.kernel == i).map_or(1, |s| s.workgroups[0].saturating_mul(s.workgroups[1]));
                Shared::of(k, grid, subgroups, tile_sharers).filter(|s| s.workgroups <= per_dim)
            })
            .collect();
        // Steps that run as one dispatch where the tiles are shared (SessionOptions::chains).
        let budget = chains.filter(|_| tile_sharers > 0).map(|wait| crate::chain::Budget {
            loop_iterations: LOOP_BUDGET,
            lanes: info.subgroup_min_size.max(1),
            wait,
            max_storage: device.limits().max_storage_buffers_per_shader_stage.min(device.limits().max_buffers_and_acceleration_structures_per_shader_stage),
            max_textures: device.limits().max_sampled_textures_per_shader_stage,
        });
        // The source each kernel runs: its subgroup variant where those run, in the wide form of
        // its loads where that is used and the kernel has one.
        let sources: Vec<std::borrow::Cow<str>> = program
            .kernels
            .iter()
            .map(|k| {
                let wgsl = k.subgroup_wgsl.as_ref().filter(|_| subgroups).unwrap_or(&k.wgsl);
                match mfn_compiler::wide::wide_loads(wgsl, precision).filter(|_| wide_loads) {
                    Some(wide) => wide.into(),
                    None => wgsl.as_str().into(),
                }
            })
            .collect();
        let plan = crate::chain::Plan::new(&device, program, &|k| shared[k].is_some(), &sources, budget.as_ref());
        let kernel_job = |i: usize| {
            let k = &program.kernels[i];
            let wgsl: &str = &sources[i];
            // The threads sharing (0 where the kernel's variant has the constant but does not
            // share) and the cap on an invocation's units.
            let constants = match shared[i] {
                Some(share) => vec![(mfn_compiler::TILE_SHARERS.to_string(), f64::from(tile_sharers)), (mfn_compiler::UNIT_CAP.to_string(), f64::from(share.unit_cap))],
                None if k.shares_tiles(subgroups) => vec![(mfn_compiler::TILE_SHARERS.to_string(), 0.0)],
                None => Vec::new(),
            };
            Job { label: k.name.clone(), wgsl: wgsl.into(), layout: &layouts[&layout_key(k)], constants }
        };
        let jobs: Vec<Job> = (0..program.kernels.len()).map(kernel_job).collect();
        let pipelines = create_pipelines(&device, &jobs, loop_bounding, disk_cache.as_ref().map(|c| &c.cache), None)?;
        drop(jobs);
        // The chains' pipelines, built on a thread of their own (Chains).
        let chain_jobs = plan.jobs(tile_sharers, chains.unwrap_or(0));
        let build = if chain_jobs.is_empty() { ChainBuild::Done } else { ChainBuild::Waiting(chain_jobs) };
        // One slot (a multiple of the largest offset alignment WebGPU allows) for each dispatch of
        // a kernel with tile counters.
        let mut slots = vec![None; program.steps.len()];
        let mut used = 0;
        for (s, step) in program.steps.iter().enumerate() {
            if program.kernels[step.kernel].tile_counters().is_some() {
                slots[s] = Some(used);
                used += 1;
            }
        }
        // Bound even where the grid gives the tiles (the counters then stay untouched).
        let counters = (used > 0).then(|| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("tile counters"),
                size: TILE_SLOT * used,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        });
        let chain_status = (!plan.links.is_empty()).then(|| {
            device.create_buffer(&wgpu::BufferDescriptor { label: Some("chain status"), size: 16, usage: storage, mapped_at_creation: false })
        });
        let pipeline_cache = disk_cache.map(DiskCache::save);
        // The bind group entries of step `s`, from binding `base` on.
        let entries = |s: usize, base: u32| -> Vec<wgpu::BindGroupEntry> {
            let step = &program.steps[s];
            let mut entries: Vec<wgpu::BindGroupEntry> = step
                .bindings
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let resource = match *r {
                        Resource::Activation(b) => activations[b].as_entire_binding(),
                        Resource::Weight(w) => weights[w].binding(),
                        Resource::Unused => unused.as_entire_binding(),
                    };
                    wgpu::BindGroupEntry { binding: base + i as u32, resource }
                })
                .collect();
            if let (Some(binding), Some(counters), Some(slot)) = (program.kernels[step.kernel].tile_counters(), &counters, slots[s]) {
                let slice = wgpu::BufferBinding { buffer: counters, offset: TILE_SLOT * slot, size: std::num::NonZeroU64::new(TILE_SLOT) };
                entries.push(wgpu::BindGroupEntry { binding: base + binding, resource: wgpu::BindingResource::Buffer(slice) });
            }
            entries
        };
        let dispatches: Vec<Dispatch> = program
            .steps
            .iter()
            .enumerate()
            .map(|(s, step)| {
                let kernel = &program.kernels[step.kernel];
                // A workgroup per thread and sample (more where the units are many) where the
                // kernel takes its tiles from the counters.
                let workgroups = match shared[step.kernel] {
                    Some(share) => [share.workgroups, 1],
                    None => split_workgroups(step.workgroups, per_dim).unwrap_or(step.workgroups),
                };
                let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor { label: Some(&kernel.name), layout: &layouts[&layout_key(kernel)], entries: &entries(s, 0) });
                Dispatch { pipeline: step.kernel, bind_group, workgroups }
            })
            .collect();
        let mut segments = Vec::with_capacity(plan.groups.len());
        let mut chained = 0;
        for ((g, max_batch), chain) in plan.groups.iter().zip(&plan.chain_of_group) {
            let (Some(c), Some(status)) = (*chain, &chain_status) else {
                segments.push(Segment::Step(g.start));
                continue;
            };
            let bases = mfn_compiler::chain::binding_bases(&plan.links[c]);
            let mut all: Vec<wgpu::BindGroupEntry> = g.clone().zip(&bases).flat_map(|(s, &base)| entries(s, base)).collect();
            all.push(wgpu::BindGroupEntry { binding: bases.last().copied().unwrap_or(0), resource: status.as_entire_binding() });
            let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor { label: Some("mfn chain"), layout: &plan.layouts[c], entries: &all });
            segments.push(Segment::Chain { steps: g.clone(), chain: c, bind_group, workgroups: tile_sharers, max_batch: *max_batch });
            chained += g.len();
        }
        // The outputs, then the chains' status word.
        let out_bytes: u64 = program.outputs.iter().map(|o| padded(element * o.elements() * max_batch)).sum::<u64>() + 16;
        let readback = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: out_bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        scopes.check("session creation")?;
        Ok(Session {
            device,
            queue,
            info,
            pipelines,
            dispatches,
            segments,
            chains: Chains {
                pipelines: Arc::new(std::sync::OnceLock::new()),
                build: Mutex::new(build),
                loop_bounding,
                runs: std::sync::atomic::AtomicUsize::new(0),
                dropped: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            },
            chain_status,
            activations,
            readback,
            input: (program.input.buffer, program.input.shape.clone()),
            outputs: program.outputs.clone(),
            max_batch,
            precision,
            running: Mutex::new(()),
            preprocess: Mutex::new(None),
            pipeline_cache,
            weight_bytes,
            subgroups: subgroups && program.kernels.iter().any(|k| k.subgroup_wgsl.is_some()),
            wide_loads: sources.iter().any(|s| matches!(s, std::borrow::Cow::Owned(_))),
            lost: Arc::new(Mutex::new(None)),
            warm: None,
            tile_counters: counters.filter(|_| tile_sharers > 0),
            tile_sharers,
            chained,
            chain_retries: std::sync::atomic::AtomicUsize::new(0),
        })
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
        if self.chains.pipelines.get().is_some() { self.chained } else { 0 }
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

    /// Writes `input` (where given) to the input buffer, records `prologue` (which may fill it
    /// instead) and every dispatch of the model into one compute pass, submits once and reads every
    /// output back. Where a chain's link gave up waiting for another thread, does all of it again
    /// without chains.
    pub(crate) fn record_and_read(&self, batch: usize, scopes: Scopes, input: Option<&[u8]>, prologue: &dyn Fn(&mut wgpu::ComputePass<'_>)) -> Result<Vec<Vec<f32>>> {
        let (outputs, gave_up) = self.submit_and_read(batch, scopes, input, prologue, true)?;
        if self.segments.iter().any(|s| matches!(s, Segment::Chain { max_batch, .. } if batch <= *max_batch)) {
            self.chains.ran(&self.device);
        }
        if !gave_up {
            return Ok(outputs);
        }
        self.chain_retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(self.submit_and_read(batch, Scopes::push(&self.device), input, prologue, false)?.0)
    }

    /// [`Session::record_and_read`]'s one submission, with its chains where `chains` (those that
    /// run `batch` samples) and whether one of them gave up.
    fn submit_and_read(&self, batch: usize, scopes: Scopes, input: Option<&[u8]>, prologue: &dyn Fn(&mut wgpu::ComputePass<'_>), chains: bool) -> Result<(Vec<Vec<f32>>, bool)> {
        let built = self.chains.pipelines.get().filter(|_| chains);
        let runs_chain = |segment: &Segment| built.is_some() && matches!(segment, Segment::Chain { max_batch, .. } if batch <= *max_batch);
        let chained = self.segments.iter().any(runs_chain);
        if let Some(input) = input {
            self.queue.write_buffer(&self.activations[self.input.0], 0, input);
        }
        let mut encoder = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("mfn run") });
        self.clear_tile_counters(&mut encoder);
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("mfn"), timestamp_writes: None });
            prologue(&mut pass);
            let mut dispatch = |pipeline: &wgpu::ComputePipeline, bind_group: &wgpu::BindGroup, [x, y]: [u32; 2]| {
                pass.set_pipeline(pipeline);
                pass.set_bind_group(0, bind_group, &[]);
                pass.dispatch_workgroups(x, y, batch as u32);
            };
            for segment in &self.segments {
                match (segment, built) {
                    (Segment::Chain { chain, bind_group, workgroups, .. }, Some(built)) if runs_chain(segment) => dispatch(&built[*chain], bind_group, [*workgroups, 1]),
                    (Segment::Chain { steps, .. }, _) => {
                        for d in &self.dispatches[steps.clone()] {
                            dispatch(&self.pipelines[d.pipeline], &d.bind_group, d.workgroups);
                        }
                    }
                    (Segment::Step(s), _) => {
                        let d = &self.dispatches[*s];
                        dispatch(&self.pipelines[d.pipeline], &d.bind_group, d.workgroups);
                    }
                }
            }
        }
        // The outputs one after the other in the readback buffer, each padded to whole words,
        // then the chains' status word.
        let element = self.precision.bytes();
        let mut offset = 0;
        for o in &self.outputs {
            let bytes = padded(element * batch * o.elements());
            encoder.copy_buffer_to_buffer(&self.activations[o.buffer], 0, &self.readback, offset, bytes);
            offset += bytes;
        }
        let status = offset;
        if let (true, Some(buffer)) = (chained, &self.chain_status) {
            encoder.copy_buffer_to_buffer(buffer, 0, &self.readback, status, 16);
            offset += 16;
        }
        self.queue.submit([encoder.finish()]);
        let all = map_read(&self.device, &self.readback, offset, scopes)?;
        let mut outputs = Vec::with_capacity(self.outputs.len());
        let mut at = 0;
        for o in &self.outputs {
            let n = batch * o.elements();
            outputs.push(decode(&all[at..at + element * n], self.precision));
            at += padded(element * n) as usize;
        }
        let gave_up = chained && all[status as usize..status as usize + 4] != [0; 4];
        Ok((outputs, gave_up))
    }
}

impl Drop for Session {
    /// Stops the build of the chains' pipelines before its next pipeline.
    fn drop(&mut self) {
        self.chains.dropped.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// `bytes` rounded up to whole 16-byte units (vec4 of f32; buffer copies need 4-byte multiples).
pub(crate) fn padded(bytes: usize) -> u64 {
    bytes.max(1).div_ceil(16) as u64 * 16
}

/// f32 values as the bytes of `precision` (f16: rounded to nearest even), padded to 4 bytes.
pub(crate) fn encode(values: &[f32], precision: mfn_compiler::Precision) -> Vec<u8> {
    match precision {
        mfn_compiler::Precision::F32 => bytemuck::cast_slice(values).to_vec(),
        mfn_compiler::Precision::F16 => {
            let mut bytes: Vec<u8> = values.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect();
            bytes.resize(bytes.len().div_ceil(4) * 4, 0);
            bytes
        }
    }
}

/// Stored values of `precision` as f32.
pub(crate) fn decode(bytes: &[u8], precision: mfn_compiler::Precision) -> Vec<f32> {
    match precision {
        mfn_compiler::Precision::F32 => bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        mfn_compiler::Precision::F16 => bytes.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
    }
}

/// Maps `bytes` of `buffer` after the submitted work, checking the error scopes first.
pub(crate) fn map_read(device: &wgpu::Device, buffer: &wgpu::Buffer, bytes: u64, scopes: Scopes) -> Result<Vec<u8>> {
    let slice = buffer.slice(..bytes);
    let (tx, rx) = mpsc::channel();
    slice.map_async(wgpu::MapMode::Read, move |r| {
        let _ = tx.send(r);
    });
    device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| RuntimeError::Gpu { stage: "run", message: e.to_string() })?;
    scopes.check("run")?;
    rx.recv().map_err(|e| RuntimeError::Readback(e.to_string()))?.map_err(|e| RuntimeError::Readback(e.to_string()))?;
    let view = slice.get_mapped_range().map_err(|e| RuntimeError::Readback(e.to_string()))?;
    let out = view.to_vec();
    drop(view);
    buffer.unmap();
    Ok(out)
}

/// The compute pipeline of `module`'s entry point `main`, with one bind group of `layout`.
pub(crate) fn compute_pipeline(
    device: &wgpu::Device,
    label: &str,
    layout: &wgpu::BindGroupLayout,
    module: &wgpu::ShaderModule,
    constants: &[(&str, f64)],
    cache: Option<&wgpu::PipelineCache>,
) -> wgpu::ComputePipeline {
    let pipeline_layout =
        device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor { label: Some(label), bind_group_layouts: &[Some(layout)], immediate_size: 0 });
    device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(label),
        layout: Some(&pipeline_layout),
        module,
        entry_point: Some("main"),
        compilation_options: wgpu::PipelineCompilationOptions { constants, ..Default::default() },
        cache,
    })
}

/// A pipeline to build: a kernel's, or a chain's.
struct Job<'a> {
    label: String,
    wgsl: std::borrow::Cow<'a, str>,
    layout: &'a wgpu::BindGroupLayout,
    /// Pipeline constants (the WGSL overrides the runtime sets).
    constants: Vec<(String, f64)>,
}

/// A [`Job`] that owns its WGSL and layout (for the thread that builds the chains).
pub(crate) struct OwnedJob {
    pub label: String,
    pub wgsl: String,
    pub layout: wgpu::BindGroupLayout,
    pub constants: Vec<(String, f64)>,
}

impl OwnedJob {
    fn job(&self) -> Job<'_> {
        Job { label: self.label.clone(), wgsl: self.wgsl.as_str().into(), layout: &self.layout, constants: self.constants.clone() }
    }
}

/// The pipelines of `jobs`, in order, created on as many threads as the machine has cores: shader
/// translation and the driver's compilation take most of a session's creation (on lavapipe 5 to
/// 150 ms a kernel). Error scopes are per thread, so each thread catches its own errors.
/// `cancel`: stop (with an error) before the next pipeline once it is set.
fn create_pipelines(device: &wgpu::Device, jobs: &[Job], loop_bounding: bool, cache: Option<&wgpu::PipelineCache>, cancel: Option<&std::sync::atomic::AtomicBool>) -> Result<Vec<wgpu::ComputePipeline>> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, jobs.len().max(1));
    let work = || -> Result<Vec<(usize, wgpu::ComputePipeline)>> {
        let scopes = Scopes::push(device);
        let mut made = Vec::new();
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(job) = jobs.get(i) else { break };
            if cancel.is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed)) {
                return Err(RuntimeError::Gpu { stage: "pipelines", message: "cancelled".into() });
            }
            let source = wgpu::ShaderModuleDescriptor { label: Some(&job.label), source: wgpu::ShaderSource::Wgsl(job.wgsl.as_ref().into()) };
            let module = if loop_bounding {
                device.create_shader_module(source)
            } else {
                let mut checks = wgpu::ShaderRuntimeChecks::checked();
                checks.force_loop_bounding = false;
                // SAFETY: the one check left out is loop bounding, which requires that no loop
                // runs forever. Every loop of the compiler's templates counts up to a bound fixed
                // by the kernel's constants or its buffer sizes, but the shared-tile loops
                // (Kernel::tile_counters), whose every iteration takes one of a finite number of
                // tiles from a counter that only grows or finds one more of its SHARERS ranges
                // empty (SessionOptions::loop_bounding keeps the check for kernels of other
                // origins); a chain's links wait at most CHAIN_WAIT iterations.
                unsafe { device.create_shader_module_trusted(source, checks) }
            };
            let constants: Vec<(&str, f64)> = job.constants.iter().map(|(name, v)| (name.as_str(), *v)).collect();
            made.push((i, compute_pipeline(device, &job.label, job.layout, &module, &constants, cache)));
        }
        scopes.check("session creation (pipelines)")?;
        Ok(made)
    };
    let parts: Vec<Result<Vec<(usize, wgpu::ComputePipeline)>>> =
        std::thread::scope(|s| (0..threads).map(|_| s.spawn(work)).collect::<Vec<_>>().into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect());
    // Every index was taken by exactly one thread: in index order they are the jobs' pipelines.
    let mut made = Vec::with_capacity(jobs.len());
    for part in parts {
        made.extend(part?);
    }
    made.sort_by_key(|(i, _)| *i);
    Ok(made.into_iter().map(|(_, pipeline)| pipeline).collect())
}

/// A weight made resident: a storage buffer, or a texture where the compiler made it one
/// ([`mfn_compiler::Weight::texture`]).
struct Resident {
    resource: Stored,
    bytes: u64,
}

enum Stored {
    Buffer(wgpu::Buffer),
    Texture(wgpu::TextureView),
}

impl Resident {
    fn upload(device: &wgpu::Device, queue: &wgpu::Queue, w: &mfn_compiler::Weight) -> Resident {
        let data: &[f32] = if w.data.is_empty() { &[0.0] } else { &w.data };
        let contents = encode(data, w.precision);
        let bytes = contents.len() as u64;
        let Some((width, height)) = w.texture_size() else {
            let buffer = device.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: Some(&w.name), contents: &contents, usage: wgpu::BufferUsages::STORAGE });
            return Resident { resource: Stored::Buffer(buffer), bytes };
        };
        let format = match w.precision {
            mfn_compiler::Precision::F32 => wgpu::TextureFormat::Rgba32Float,
            mfn_compiler::Precision::F16 => wgpu::TextureFormat::Rgba16Float,
        };
        let desc = wgpu::TextureDescriptor {
            label: Some(&w.name),
            size: wgpu::Extent3d { width, height, depth_or_array_layers: 1 },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format,
            usage: wgpu::TextureUsages::TEXTURE_BINDING,
            view_formats: &[],
        };
        let texture = device.create_texture_with_data(queue, &desc, wgpu::util::TextureDataOrder::LayerMajor, &contents);
        Resident { resource: Stored::Texture(texture.create_view(&wgpu::TextureViewDescriptor::default())), bytes }
    }

    fn binding(&self) -> wgpu::BindingResource<'_> {
        match &self.resource {
            Stored::Buffer(b) => b.as_entire_binding(),
            Stored::Texture(v) => wgpu::BindingResource::TextureView(v),
        }
    }
}

/// Bytes between two threads' counters: a cache line (the templates' SPREAD of 16 `u32`s), so
/// that threads taking tiles from their own ranges do not contend for one line.
const COUNTER_BYTES: u64 = 64;

/// Most threads that share tiles: one counter each in a slot, the count of a chain link's finished
/// units after them (the templates' DONE, at 16 * SPREAD).
pub(crate) const MAX_TILE_SHARERS: u32 = 16;

/// Bytes of a dispatch's tile counters: a cache line for each of [`MAX_TILE_SHARERS`] threads and
/// one for a chain link's finished units, rounded up to a multiple of every storage-buffer offset
/// alignment WebGPU allows (256).
const TILE_SLOT: u64 = ((MAX_TILE_SHARERS as u64 + 1) * COUNTER_BYTES).div_ceil(256) * 256;

/// Loop iterations an invocation of a kernel that shares its tiles may spend on its units: lavapipe
/// ends every loop of an invocation once its loops have run
/// [`LAVAPIPE_LOOP_LIMIT`](crate::limits::LAVAPIPE_LOOP_LIMIT) iterations in all
/// (`LP_MAX_TGSI_LOOP_ITERATIONS`, whatever the loop), and the shared-tile loop also runs up to
/// [`MAX_TILE_SHARERS`] iterations that find a range empty. Without a cap, an invocation that
/// took the tiles of a large batch (64 samples of MobileFaceNet's 64 -> 128 GEMM at 56x56: 25088
/// tiles of 41 iterations) would leave the last ones half computed, silently.
const LOOP_BUDGET: u32 = 60_000;
const _: () = assert!(LOOP_BUDGET + MAX_TILE_SHARERS < crate::limits::LAVAPIPE_LOOP_LIMIT);

/// How a kernel shares its tiles in a session.
#[derive(Clone, Copy, Debug)]
struct Shared {
    /// Units an invocation takes at most ([`mfn_compiler::UNIT_CAP`]).
    unit_cap: u32,
    /// Workgroups dispatched per sample: one per thread, or as many as the capped invocations
    /// need to take every unit between them.
    workgroups: u32,
}

impl Shared {
    /// How kernel `k`, whose grid has `grid` workgroups a sample, shares its tiles among
    /// `sharers` threads (`None`: it does not, e.g. where sharers is 0).
    ///
    /// The units of a sample are at most the grid's workgroups times the subgroups of one (a
    /// subgroup's tile or share), or its invocations (a depthwise band each); a dispatched
    /// workgroup has as many subgroups or invocations, each taking up to `unit_cap` units, so
    /// `grid / unit_cap` workgroups a sample take them all.
    fn of(k: &mfn_compiler::Kernel, grid: u32, subgroups: bool, sharers: u32) -> Option<Shared> {
        if sharers == 0 || !k.shares_tiles(subgroups) || k.unit_iterations == 0 {
            return None;
        }
        let unit_cap = LOOP_BUDGET / k.unit_iterations;
        (unit_cap > 0).then(|| Shared { unit_cap, workgroups: sharers.max(grid.div_ceil(unit_cap)) })
    }
}

/// Kernels with the same bindings share a bind group layout: (bindings, textures, tile counters).
type LayoutKey = (u32, u32, Option<u32>);

fn layout_key(k: &mfn_compiler::Kernel) -> LayoutKey {
    (k.bindings, k.textures, k.tile_counters())
}

/// A kernel's bind group layout: [`bind_group_layout`], plus its tile counters (read-write storage).
fn kernel_layout(device: &wgpu::Device, k: &mfn_compiler::Kernel) -> wgpu::BindGroupLayout {
    let mut entries = layout_entries(k.bindings, k.textures);
    if let Some(binding) = k.tile_counters() {
        entries.push(storage_entry(binding, false));
    }
    device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some("mfn"), entries: &entries })
}

/// A compute stage's storage buffer at `binding`.
pub(crate) fn storage_entry(binding: u32, read_only: bool) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer { ty: wgpu::BufferBindingType::Storage { read_only }, has_dynamic_offset: false, min_binding_size: None },
        count: None,
    }
}

/// A compute stage's 2D texture of floats at `binding`, read with textureLoad.
pub(crate) fn texture_entry(binding: u32) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Texture { sample_type: wgpu::TextureSampleType::Float { filterable: false }, view_dimension: wgpu::TextureViewDimension::D2, multisampled: false },
        count: None,
    }
}

/// The layout of a kernel's bind group: `bindings` storage buffers, the last read-write, except
/// the textures of the `textures` mask (bit i: binding i, see [`mfn_compiler::Kernel::textures`]).
pub(crate) fn bind_group_layout(device: &wgpu::Device, bindings: u32, textures: u32) -> wgpu::BindGroupLayout {
    device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some("mfn"), entries: &layout_entries(bindings, textures) })
}

fn layout_entries(bindings: u32, textures: u32) -> Vec<wgpu::BindGroupLayoutEntry> {
    (0..bindings)
        .map(|i| {
            if i < 32 && textures & (1 << i) != 0 {
                texture_entry(i)
            } else {
                storage_entry(i, i + 1 < bindings)
            }
        })
        .collect()
}

/// Why the device was lost, where a loss callback recorded it.
fn reason(lost: &Mutex<Option<String>>) -> Option<String> {
    lost.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Whether `device` is lost, asked after a failure: a lost device raises no errors (WebGPU makes
/// its work silently invalid), but mapping a fresh buffer fails only there. With
/// `PollType::Poll` it never blocks, and a map not yet answered counts as not lost.
fn probe(device: &wgpu::Device, poll: wgpu::PollType) -> Option<String> {
    let scopes = Scopes::push(device);
    let buffer = device.create_buffer(&wgpu::BufferDescriptor { label: Some("mfn probe"), size: 16, usage: wgpu::BufferUsages::MAP_READ, mapped_at_creation: false });
    let (tx, rx) = mpsc::channel();
    buffer.slice(..).map_async(wgpu::MapMode::Read, move |r| {
        let _ = tx.send(r);
    });
    let polled = device.poll(poll);
    let mapped = rx.try_recv();
    scopes.pop();
    match (polled, mapped) {
        (Ok(_), Ok(Ok(()))) | (Ok(_), Err(mpsc::TryRecvError::Empty)) => None,
        (polled, mapped) => Some(format!("a fresh buffer cannot be mapped ({polled:?}, {mapped:?})")),
    }
}

/// A session's device, adapter name and loss record, for errors raised after the call that
/// recorded the work (a [`crate::ReadbackHandle`]).
pub(crate) struct LossWatch {
    device: wgpu::Device,
    adapter: String,
    lost: Arc<Mutex<Option<String>>>,
}

impl LossWatch {
    /// `e` as [`RuntimeError::DeviceLost`] where the device is lost (known, or found by a probe
    /// that never blocks), else as it is.
    pub(crate) fn explain(&self, e: RuntimeError) -> RuntimeError {
        explain_loss(&self.device, &self.adapter, &self.lost, wgpu::PollType::Poll, e)
    }
}

/// `e`, a failure on `device`, as [`RuntimeError::DeviceLost`] where the device is lost: known
/// from its loss callback (`lost`), or found by a probe (the host's device) polling with `poll`.
fn explain_loss(device: &wgpu::Device, adapter: &str, lost: &Mutex<Option<String>>, poll: wgpu::PollType, e: RuntimeError) -> RuntimeError {
    match reason(lost).or_else(|| probe(device, poll)) {
        Some(message) => RuntimeError::DeviceLost { adapter: adapter.to_owned(), message: format!("{message}; the call failed with: {e}") },
        None => e,
    }
}
