//! A run: every dispatch of the model recorded into one compute pass, one submission, one
//! readback.

use std::sync::mpsc;

use super::Session;
use crate::error::{Result, RuntimeError};
use crate::scope::Scopes;

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

impl Session {
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
