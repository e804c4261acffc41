//! Pipelines and bind group layouts: a kernel's or a chain's, built on as many threads as the
//! machine has cores.

use crate::error::{Result, RuntimeError};
use crate::scope::Scopes;

/// The compute pipeline of `module`'s entry point `main`, with one bind group of `layout`.
pub(crate) fn compute_pipeline(
    device: &wgpu::Device,
    label: &str,
    layout: &wgpu::BindGroupLayout,
    module: &wgpu::ShaderModule,
    constants: &[(&str, f64)],
    cache: Option<&wgpu::PipelineCache>,
) -> wgpu::ComputePipeline {
    let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor { label: Some(label), bind_group_layouts: &[Some(layout)], immediate_size: 0 });
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
pub(super) struct Job<'a> {
    pub label: String,
    pub wgsl: std::borrow::Cow<'a, str>,
    pub layout: &'a wgpu::BindGroupLayout,
    /// Pipeline constants (the WGSL overrides the runtime sets).
    pub constants: Vec<(String, f64)>,
}

/// A [`Job`] that owns its WGSL and layout (for the thread that builds the chains).
pub(crate) struct OwnedJob {
    pub label: String,
    pub wgsl: String,
    pub layout: wgpu::BindGroupLayout,
    pub constants: Vec<(String, f64)>,
}

impl OwnedJob {
    pub(super) fn job(&self) -> Job<'_> {
        Job { label: self.label.clone(), wgsl: self.wgsl.as_str().into(), layout: &self.layout, constants: self.constants.clone() }
    }
}

/// The pipelines of `jobs`, in order, created on as many threads as the machine has cores: shader
/// translation and the driver's compilation take most of a session's creation (on lavapipe 5 to
/// 150 ms a kernel). Error scopes are per thread, so each thread catches its own errors.
/// `cancel`: stop (with an error) before the next pipeline once it is set.
pub(super) fn create_pipelines(
    device: &wgpu::Device,
    jobs: &[Job],
    loop_bounding: bool,
    cache: Option<&wgpu::PipelineCache>,
    cancel: Option<&std::sync::atomic::AtomicBool>,
) -> Result<Vec<wgpu::ComputePipeline>> {
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

/// Kernels with the same bindings share a bind group layout: (bindings, textures, tile counters).
pub(super) type LayoutKey = (u32, u32, Option<u32>);

pub(super) fn layout_key(k: &mfn_compiler::Kernel) -> LayoutKey {
    (k.bindings, k.textures, k.tile_counters())
}

/// A kernel's bind group layout: [`bind_group_layout`], plus its tile counters (read-write storage).
pub(super) fn kernel_layout(device: &wgpu::Device, k: &mfn_compiler::Kernel) -> wgpu::BindGroupLayout {
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
    (0..bindings).map(|i| if i < 32 && textures & (1 << i) != 0 { texture_entry(i) } else { storage_entry(i, i + 1 < bindings) }).collect()
}
