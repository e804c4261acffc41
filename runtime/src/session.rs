//! A [`Session`]: a compiled [`Program`] made resident on one device. Weights are uploaded,
//! pipelines and bind groups created once; [`Session::run`] records every dispatch into one
//! command encoder, submits once and reads back once.

use std::sync::{mpsc, Mutex};

use mfn_compiler::{Program, Resource};
use wgpu::util::DeviceExt;

use crate::adapter::{describe, select_adapter, AdapterOptions};
use crate::error::{Result, RuntimeError};
use crate::limits::{split_workgroups, Requirements};

/// Options of [`Session::new`].
#[derive(Clone, Debug)]
pub struct SessionOptions {
    pub adapter: AdapterOptions,
    /// Most samples one submission runs; larger batches are split. Lowered automatically when the
    /// adapter's storage-buffer binding limit would be exceeded.
    pub max_batch: usize,
    /// Bytes of GPU memory the session's buffers may take (wgpu reports no device memory size);
    /// the batch is lowered to fit, and a model that does not fit at batch 1 is refused before
    /// any buffer is created. `None`: only the adapter's per-buffer limits apply.
    pub memory_budget: Option<u64>,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions { adapter: AdapterOptions::from_env(), max_batch: 16, memory_budget: None }
    }
}

pub(crate) struct Dispatch {
    pub pipeline: usize,
    pub bind_group: wgpu::BindGroup,
    pub workgroups: [u32; 2],
}

pub struct Session {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    pub(crate) pipelines: Vec<wgpu::ComputePipeline>,
    pub(crate) dispatches: Vec<Dispatch>,
    pub(crate) activations: Vec<wgpu::Buffer>,
    readback: wgpu::Buffer,
    pub(crate) input: (usize, Vec<usize>),
    pub(crate) output: (usize, Vec<usize>),
    max_batch: usize,
    /// Runs share the activation buffers: one at a time.
    pub(crate) running: Mutex<()>,
    /// The image preprocessing pipeline of [`Session::run_images`], created on first use.
    pub(crate) preprocess: Mutex<Option<crate::preprocess::Preprocess>>,
}

impl Session {
    /// Opens a device on the adapter `options` selects and makes `program` resident on it.
    pub fn new(program: &Program, options: &SessionOptions) -> Result<Session> {
        let adapter = select_adapter(&options.adapter)?;
        let info = adapter.get_info();
        let req = Requirements::of(program, options.max_batch, &adapter.limits(), &info.name)?.fit_memory(program, options.memory_budget, &info.name)?;
        let desc = wgpu::DeviceDescriptor {
            label: Some("mfn"),
            required_limits: req.limits(&adapter.limits()),
            // Per-kernel profiling where the adapter can time dispatches; nothing else is needed.
            required_features: adapter.features() & wgpu::Features::TIMESTAMP_QUERY,
            ..Default::default()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&desc))
            .map_err(|e| RuntimeError::RequestDevice { adapter: info.name.clone(), message: e.to_string() })?;
        Self::build(program, device, queue, info, req.max_batch)
    }

    /// Makes `program` resident on a host application's device and queue (no second device).
    pub fn with_device(program: &Program, device: wgpu::Device, queue: wgpu::Queue, info: wgpu::AdapterInfo, max_batch: usize) -> Result<Session> {
        let req = Requirements::of(program, max_batch, &device.limits(), &info.name)?;
        Self::build(program, device, queue, info, req.max_batch)
    }

    fn build(program: &Program, device: wgpu::Device, queue: wgpu::Queue, info: wgpu::AdapterInfo, max_batch: usize) -> Result<Session> {
        // Out-of-memory and internal errors too: wgpu's default handler panics on uncaptured ones.
        let outer = [wgpu::ErrorFilter::OutOfMemory, wgpu::ErrorFilter::Internal].map(|f| device.push_error_scope(f));
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let storage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
        let activations: Vec<wgpu::Buffer> = program
            .buffers
            .iter()
            .enumerate()
            .map(|(i, &elements)| {
                device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(&format!("b{i}")),
                    size: (4 * elements * max_batch).max(4) as u64,
                    usage: storage,
                    mapped_at_creation: false,
                })
            })
            .collect();
        let weights: Vec<wgpu::Buffer> = program
            .weights
            .iter()
            .map(|w| {
                let data: &[f32] = if w.data.is_empty() { &[0.0] } else { &w.data };
                device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some(&w.name),
                    contents: bytemuck::cast_slice(data),
                    usage: wgpu::BufferUsages::STORAGE,
                })
            })
            .collect();
        let unused = device.create_buffer(&wgpu::BufferDescriptor { label: Some("unused"), size: 16, usage: storage, mapped_at_creation: false });
        let mut layouts = std::collections::HashMap::new();
        let pipelines: Vec<wgpu::ComputePipeline> = program
            .kernels
            .iter()
            .map(|k| {
                let layout = layouts.entry(k.bindings).or_insert_with(|| bind_group_layout(&device, k.bindings)).clone();
                let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(&k.name),
                    source: wgpu::ShaderSource::Wgsl(k.wgsl.as_str().into()),
                });
                let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                    label: Some(&k.name),
                    bind_group_layouts: &[Some(&layout)],
                    immediate_size: 0,
                });
                device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(&k.name),
                    layout: Some(&pipeline_layout),
                    module: &module,
                    entry_point: Some("main"),
                    compilation_options: Default::default(),
                    cache: None,
                })
            })
            .collect();
        // Requirements::of checked that every grid fits once split.
        let per_dim = device.limits().max_compute_workgroups_per_dimension;
        let dispatches = program
            .steps
            .iter()
            .map(|step| {
                let kernel = &program.kernels[step.kernel];
                let entries: Vec<wgpu::BindGroupEntry> = step
                    .bindings
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        let buffer = match *r {
                            Resource::Activation(b) => &activations[b],
                            Resource::Weight(w) => &weights[w],
                            Resource::Unused => &unused,
                        };
                        wgpu::BindGroupEntry { binding: i as u32, resource: buffer.as_entire_binding() }
                    })
                    .collect();
                let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some(&kernel.name),
                    layout: &layouts[&kernel.bindings],
                    entries: &entries,
                });
                let workgroups = split_workgroups(step.workgroups, per_dim).unwrap_or(step.workgroups);
                Dispatch { pipeline: step.kernel, bind_group, workgroups }
            })
            .collect();
        let out_bytes = 4 * program.output.elements() * max_batch;
        let readback = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: out_bytes.max(4) as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        // Scopes are popped innermost first, all of them, whatever they caught.
        let mut error = pollster::block_on(scope.pop());
        for guard in outer.into_iter().rev() {
            error = error.or(pollster::block_on(guard.pop()));
        }
        if let Some(e) = error {
            return Err(RuntimeError::Gpu { stage: "session creation", message: e.to_string() });
        }
        Ok(Session {
            device,
            queue,
            info,
            pipelines,
            dispatches,
            activations,
            readback,
            input: (program.input.buffer, program.input.shape.clone()),
            output: (program.output.buffer, program.output.shape.clone()),
            max_batch,
            running: Mutex::new(()),
            preprocess: Mutex::new(None),
        })
    }

    /// The adapter the session runs on, described in one line.
    pub fn adapter(&self) -> String {
        describe(&self.info)
    }

    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }

    /// Most samples in one submission (larger batches are split).
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// Shape of one input sample (without the batch).
    pub fn input_shape(&self) -> &[usize] {
        &self.input.1
    }

    /// Shape of one output sample (without the batch).
    pub fn output_shape(&self) -> &[usize] {
        &self.output.1
    }

    /// Runs a batch: `input` holds whole samples of [`Session::input_shape`], batch first; the
    /// result holds one output sample per input sample.
    pub fn run(&self, input: &[f32]) -> Result<Vec<f32>> {
        let per_sample: usize = self.input.1.iter().product();
        if input.is_empty() || !input.len().is_multiple_of(per_sample) {
            return Err(RuntimeError::InputSize { got: input.len(), shape: self.input.1.clone(), per_sample });
        }
        let _guard = self.running.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut output = Vec::with_capacity(input.len() / per_sample * self.output.1.iter().product::<usize>());
        for chunk in input.chunks(per_sample * self.max_batch) {
            output.extend(self.run_chunk(chunk, chunk.len() / per_sample)?);
        }
        Ok(output)
    }

    fn run_chunk(&self, input: &[f32], batch: usize) -> Result<Vec<f32>> {
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        self.queue.write_buffer(&self.activations[self.input.0], 0, bytemuck::cast_slice(input));
        self.record_and_read(batch, scope, &|_| {})
    }

    /// Records `prologue` (which may fill the input buffer) and every dispatch of the model into
    /// one compute pass, submits once and reads the output back.
    pub(crate) fn record_and_read(&self, batch: usize, scope: wgpu::ErrorScopeGuard, prologue: &dyn Fn(&mut wgpu::ComputePass<'_>)) -> Result<Vec<f32>> {
        let mut encoder = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("mfn run") });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("mfn"), timestamp_writes: None });
            prologue(&mut pass);
            for d in &self.dispatches {
                pass.set_pipeline(&self.pipelines[d.pipeline]);
                pass.set_bind_group(0, &d.bind_group, &[]);
                pass.dispatch_workgroups(d.workgroups[0], d.workgroups[1], batch as u32);
            }
        }
        let bytes = (4 * batch * self.output.1.iter().product::<usize>()) as u64;
        encoder.copy_buffer_to_buffer(&self.activations[self.output.0], 0, &self.readback, 0, bytes);
        self.queue.submit([encoder.finish()]);
        read_back(&self.device, &self.readback, bytes, scope)
    }
}

/// Waits for the submitted work, checks the error scope, and copies `bytes` of `buffer` (mappable)
/// to the CPU as f32.
pub(crate) fn read_back(device: &wgpu::Device, buffer: &wgpu::Buffer, bytes: u64, scope: wgpu::ErrorScopeGuard) -> Result<Vec<f32>> {
    let bytes = map_read(device, buffer, bytes, scope)?;
    Ok(bytemuck::cast_slice::<u8, f32>(&bytes).to_vec())
}

/// Maps `bytes` of `buffer` after the submitted work, checking the error scope first.
pub(crate) fn map_read(device: &wgpu::Device, buffer: &wgpu::Buffer, bytes: u64, scope: wgpu::ErrorScopeGuard) -> Result<Vec<u8>> {
    let slice = buffer.slice(..bytes);
    let (tx, rx) = mpsc::channel();
    slice.map_async(wgpu::MapMode::Read, move |r| {
        let _ = tx.send(r);
    });
    device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| RuntimeError::Gpu { stage: "run", message: e.to_string() })?;
    if let Some(e) = pollster::block_on(scope.pop()) {
        return Err(RuntimeError::Gpu { stage: "run", message: e.to_string() });
    }
    rx.recv().map_err(|e| RuntimeError::Readback(e.to_string()))?.map_err(|e| RuntimeError::Readback(e.to_string()))?;
    let view = slice.get_mapped_range().map_err(|e| RuntimeError::Readback(e.to_string()))?;
    let out = view.to_vec();
    drop(view);
    buffer.unmap();
    Ok(out)
}

pub(crate) fn bind_group_layout(device: &wgpu::Device, bindings: u32) -> wgpu::BindGroupLayout {
    let entries: Vec<wgpu::BindGroupLayoutEntry> = (0..bindings)
        .map(|i| wgpu::BindGroupLayoutEntry {
            binding: i,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage { read_only: i + 1 < bindings },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        })
        .collect();
    device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some("mfn"), entries: &entries })
}
