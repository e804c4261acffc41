//! Making a program resident ([`Session::build`]): its buffers and weights, the kernels'
//! pipelines and bind groups, the tile counters of the kernels that share their tiles, and the
//! chains to build later.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use mfn_compiler::{Program, Resource};
use wgpu::util::DeviceExt;

use super::chains::{ChainBuild, Chains};
use super::pipelines::{create_pipelines, kernel_layout, layout_key, Job, LayoutKey};
use super::run::{encode, padded, Dispatch, Segment};
use super::Session;
use crate::cache::DiskCache;
use crate::error::Result;
use crate::limits::split_workgroups;
use crate::scope::Scopes;

/// How [`Session::build`] makes the pipelines: the on-disk pipeline cache, the subgroup
/// variants, loop bounding ([`SessionOptions`](super::SessionOptions)).
pub(super) struct Build<'a> {
    pub cache_dir: Option<&'a Path>,
    pub subgroups: bool,
    pub loop_bounding: bool,
    /// Threads sharing the kernels' tiles, 0 for none ([`SessionOptions::tile_sharers`](super::SessionOptions::tile_sharers)).
    pub tile_sharers: u32,
    /// Run kernels that share their tiles in chains ([`SessionOptions::chains`](super::SessionOptions::chains)), their links
    /// waiting at most this many iterations ([`SessionOptions::chain_wait`](super::SessionOptions::chain_wait)).
    pub chains: Option<u32>,
    /// Read activations as 64-bit integers where the kernels allow ([`SessionOptions::wide_loads`](super::SessionOptions::wide_loads)).
    pub wide_loads: bool,
}

impl Session {
    /// Makes `program` resident on `device` for batches of up to `max_batch` samples.
    pub(super) fn build(program: &Program, device: wgpu::Device, queue: wgpu::Queue, info: wgpu::AdapterInfo, max_batch: usize, how: Build<'_>) -> Result<Session> {
        let Build { cache_dir, subgroups, loop_bounding, tile_sharers, chains, wide_loads } = how;
        // A single thread has nothing to share, nor a program whose kernels (in the variants that
        // run) have no counters; a slot holds the counters of at most 16 threads (a counter out of
        // its binding would never grow).
        let shares = program.kernels.iter().any(|k| k.shares_tiles(subgroups));
        let tile_sharers = if shares && tile_sharers > 1 { tile_sharers.min(MAX_TILE_SHARERS) } else { 0 };
        let scopes = Scopes::push(&device);
        let data = Resources::upload(&device, &queue, program, max_batch);
        let disk_cache = cache_dir.and_then(|dir| DiskCache::open(&device, &info, dir));
        let mut layouts = HashMap::new();
        for k in &program.kernels {
            layouts.entry(layout_key(k)).or_insert_with(|| kernel_layout(&device, k));
        }
        // Requirements::of checked that every grid fits once split.
        let per_dim = device.limits().max_compute_workgroups_per_dimension;
        let shared = Shared::of_kernels(program, subgroups, tile_sharers, per_dim);
        // Steps that run as one dispatch where the tiles are shared (SessionOptions::chains).
        let budget = chains.filter(|_| tile_sharers > 0).map(|wait| crate::chain::Budget {
            loop_iterations: LOOP_BUDGET,
            lanes: info.subgroup_min_size.max(1),
            wait,
            max_storage: device.limits().max_storage_buffers_per_shader_stage.min(device.limits().max_buffers_and_acceleration_structures_per_shader_stage),
            max_textures: device.limits().max_sampled_textures_per_shader_stage,
        });
        let sources = kernel_sources(program, subgroups, wide_loads);
        let plan = crate::chain::Plan::new(&device, program, &|k| shared[k].is_some(), &sources, budget.as_ref());
        let jobs: Vec<Job> = (0..program.kernels.len()).map(|i| kernel_job(program, i, &sources[i], &layouts, shared[i], subgroups, tile_sharers)).collect();
        let pipelines = create_pipelines(&device, &jobs, loop_bounding, disk_cache.as_ref().map(|c| &c.cache), None)?;
        drop(jobs);
        // The chains' pipelines, built on a thread of their own (Chains).
        let chain_jobs = plan.jobs(tile_sharers, chains.unwrap_or(0));
        let build = if chain_jobs.is_empty() { ChainBuild::Done } else { ChainBuild::Waiting(chain_jobs) };
        let counters = Counters::new(&device, program);
        let chain_status =
            (!plan.links.is_empty()).then(|| device.create_buffer(&wgpu::BufferDescriptor { label: Some("chain status"), size: 16, usage: STORAGE, mapped_at_creation: false }));
        let pipeline_cache = disk_cache.map(DiskCache::save);
        let binder = Binder { program, data: &data, counters: &counters };
        let dispatches = binder.dispatches(&device, &layouts, &shared, per_dim);
        let (segments, chained) = binder.segments(&device, &plan, chain_status.as_ref(), tile_sharers);
        let readback = readback_buffer(&device, program, max_batch);
        scopes.check("session creation")?;
        Ok(Session {
            device,
            queue,
            info,
            pipelines,
            dispatches,
            segments,
            chains: Chains::new(build, loop_bounding),
            chain_status,
            activations: data.activations,
            readback,
            input: (program.input.buffer, program.input.shape.clone()),
            outputs: program.outputs.clone(),
            max_batch,
            precision: program.precision,
            running: Mutex::new(()),
            preprocess: Mutex::new(None),
            pipeline_cache,
            weight_bytes: data.weights.iter().map(|w| w.bytes).sum(),
            subgroups: subgroups && program.kernels.iter().any(|k| k.subgroup_wgsl.is_some()),
            wide_loads: sources.iter().any(|s| matches!(s, Cow::Owned(_))),
            lost: Arc::new(Mutex::new(None)),
            warm: None,
            tile_counters: counters.buffer.filter(|_| tile_sharers > 0),
            tile_sharers,
            chained,
            chain_retries: std::sync::atomic::AtomicUsize::new(0),
        })
    }
}

const STORAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_DST).union(wgpu::BufferUsages::COPY_SRC);

/// The buffers and textures a program's steps bind.
struct Resources {
    /// The activation buffers, each sized for `max_batch` samples.
    activations: Vec<wgpu::Buffer>,
    weights: Vec<Resident>,
    /// Bound where a kernel leaves a binding unused: as large as the largest element a kernel
    /// declares (the vec4 GEMM's pairs of pixel vec4s).
    unused: wgpu::Buffer,
}

impl Resources {
    fn upload(device: &wgpu::Device, queue: &wgpu::Queue, program: &Program, max_batch: usize) -> Resources {
        let element = program.precision.bytes();
        let activations = program
            .buffers
            .iter()
            .enumerate()
            .map(|(i, &elements)| {
                device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(&format!("b{i}")),
                    size: padded(element * elements * max_batch),
                    usage: STORAGE,
                    mapped_at_creation: false,
                })
            })
            .collect();
        let weights = program.weights.iter().map(|w| Resident::upload(device, queue, w)).collect();
        let unused = device.create_buffer(&wgpu::BufferDescriptor { label: Some("unused"), size: 32, usage: STORAGE, mapped_at_creation: false });
        Resources { activations, weights, unused }
    }
}

/// The source each kernel runs: its subgroup variant where those run, in the wide form of its
/// loads where that is used and the kernel has one (owned: the wide form).
fn kernel_sources(program: &Program, subgroups: bool, wide_loads: bool) -> Vec<Cow<'_, str>> {
    let precision = program.precision;
    program
        .kernels
        .iter()
        .map(|k| {
            let wgsl = k.subgroup_wgsl.as_ref().filter(|_| subgroups).unwrap_or(&k.wgsl);
            match mfn_compiler::wide::wide_loads(wgsl, precision).filter(|_| wide_loads) {
                Some(wide) => wide.into(),
                None => wgsl.as_str().into(),
            }
        })
        .collect()
}

/// The pipeline of kernel `i` (source `wgsl`), with the pipeline constants of its tile sharing:
/// the threads sharing (0 where the kernel's variant has the constant but does not share) and
/// the cap on an invocation's units.
fn kernel_job<'a>(
    program: &Program,
    i: usize,
    wgsl: &'a str,
    layouts: &'a HashMap<LayoutKey, wgpu::BindGroupLayout>,
    shared: Option<Shared>,
    subgroups: bool,
    tile_sharers: u32,
) -> Job<'a> {
    let k = &program.kernels[i];
    let constants = match shared {
        Some(share) => vec![(mfn_compiler::TILE_SHARERS.to_string(), f64::from(tile_sharers)), (mfn_compiler::UNIT_CAP.to_string(), f64::from(share.unit_cap))],
        None if k.shares_tiles(subgroups) => vec![(mfn_compiler::TILE_SHARERS.to_string(), 0.0)],
        None => Vec::new(),
    };
    Job { label: k.name.clone(), wgsl: wgsl.into(), layout: &layouts[&layout_key(k)], constants }
}

/// The readback buffer: the outputs, then the chains' status word.
fn readback_buffer(device: &wgpu::Device, program: &Program, max_batch: usize) -> wgpu::Buffer {
    let element = program.precision.bytes();
    let out_bytes: u64 = program.outputs.iter().map(|o| padded(element * o.elements() * max_batch)).sum::<u64>() + 16;
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("readback"),
        size: out_bytes,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

/// The tile counters: one slot (a multiple of the largest offset alignment WebGPU allows) for each
/// dispatch of a kernel with tile counters, bound even where the grid gives the tiles (the
/// counters then stay untouched).
struct Counters {
    buffer: Option<wgpu::Buffer>,
    /// Each step's slot, where its kernel has counters.
    slots: Vec<Option<u64>>,
}

impl Counters {
    fn new(device: &wgpu::Device, program: &Program) -> Counters {
        let mut slots = vec![None; program.steps.len()];
        let mut used = 0;
        for (s, step) in program.steps.iter().enumerate() {
            if program.kernels[step.kernel].tile_counters().is_some() {
                slots[s] = Some(used);
                used += 1;
            }
        }
        let buffer = (used > 0).then(|| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("tile counters"),
                size: TILE_SLOT * used,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        });
        Counters { buffer, slots }
    }
}

/// Makes the bind groups of a program's steps, alone or in chains.
struct Binder<'a> {
    program: &'a Program,
    data: &'a Resources,
    counters: &'a Counters,
}

impl<'a> Binder<'a> {
    /// The bind group entries of step `s`, from binding `base` on.
    fn entries(&self, s: usize, base: u32) -> Vec<wgpu::BindGroupEntry<'a>> {
        let step = &self.program.steps[s];
        let mut entries: Vec<wgpu::BindGroupEntry> = step
            .bindings
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let resource = match *r {
                    Resource::Activation(b) => self.data.activations[b].as_entire_binding(),
                    Resource::Weight(w) => self.data.weights[w].binding(),
                    Resource::Unused => self.data.unused.as_entire_binding(),
                };
                wgpu::BindGroupEntry { binding: base + i as u32, resource }
            })
            .collect();
        if let (Some(binding), Some(counters), Some(slot)) = (self.program.kernels[step.kernel].tile_counters(), &self.counters.buffer, self.counters.slots[s]) {
            let slice = wgpu::BufferBinding { buffer: counters, offset: TILE_SLOT * slot, size: std::num::NonZeroU64::new(TILE_SLOT) };
            entries.push(wgpu::BindGroupEntry { binding: base + binding, resource: wgpu::BindingResource::Buffer(slice) });
        }
        entries
    }

    /// Every step's dispatch: a workgroup per thread and sample (more where the units are many)
    /// where the kernel takes its tiles from the counters, else its grid, split to fit `per_dim`.
    fn dispatches(&self, device: &wgpu::Device, layouts: &HashMap<LayoutKey, wgpu::BindGroupLayout>, shared: &[Option<Shared>], per_dim: u32) -> Vec<Dispatch> {
        let steps = self.program.steps.iter().enumerate();
        steps
            .map(|(s, step)| {
                let kernel = &self.program.kernels[step.kernel];
                let workgroups = match shared[step.kernel] {
                    Some(share) => [share.workgroups, 1],
                    None => split_workgroups(step.workgroups, per_dim).unwrap_or(step.workgroups),
                };
                let entries = self.entries(s, 0);
                let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor { label: Some(&kernel.name), layout: &layouts[&layout_key(kernel)], entries: &entries });
                Dispatch { pipeline: step.kernel, bind_group, workgroups }
            })
            .collect()
    }

    /// What a run dispatches (a step, or the steps of a chain with one bind group for all its
    /// links and the status word last), and how many steps run in chains.
    fn segments(&self, device: &wgpu::Device, plan: &crate::chain::Plan, status: Option<&wgpu::Buffer>, tile_sharers: u32) -> (Vec<Segment>, usize) {
        let mut segments = Vec::with_capacity(plan.groups.len());
        let mut chained = 0;
        for ((g, max_batch), chain) in plan.groups.iter().zip(&plan.chain_of_group) {
            let (Some(c), Some(status)) = (*chain, status) else {
                segments.push(Segment::Step(g.start));
                continue;
            };
            let bases = mfn_compiler::chain::binding_bases(&plan.links[c]);
            let mut all: Vec<wgpu::BindGroupEntry> = g.clone().zip(&bases).flat_map(|(s, &base)| self.entries(s, base)).collect();
            all.push(wgpu::BindGroupEntry { binding: bases.last().copied().unwrap_or(0), resource: status.as_entire_binding() });
            let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor { label: Some("mfn chain"), layout: &plan.layouts[c], entries: &all });
            segments.push(Segment::Chain { steps: g.clone(), chain: c, bind_group, workgroups: tile_sharers, max_batch: *max_batch });
            chained += g.len();
        }
        (segments, chained)
    }
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
    /// How each kernel of `program` shares its tiles: where its shared dispatch fits `per_dim`.
    fn of_kernels(program: &Program, subgroups: bool, sharers: u32, per_dim: u32) -> Vec<Option<Shared>> {
        let kernels = program.kernels.iter().enumerate();
        kernels
            .map(|(i, k)| {
                // Every step of a kernel has its grid: the kernel's constants fix the shapes.
                let grid = program.steps.iter().find(|s| s.kernel == i).map_or(1, |s| s.workgroups[0].saturating_mul(s.workgroups[1]));
                Shared::of(k, grid, subgroups, sharers).filter(|s| s.workgroups <= per_dim)
            })
            .collect()
    }

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
