//! Per-kernel GPU timing with timestamp queries: each dispatch in its own compute pass, its start
//! and end written by the GPU. Available where the adapter has `TIMESTAMP_QUERY`.

use crate::error::{Result, RuntimeError};
use crate::session::{map_read, Session};

impl Session {
    /// Whether [`Session::profile`] can time kernels on this adapter.
    pub fn can_profile(&self) -> bool {
        self.device.features().contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// Runs one batch (at most [`Session::max_batch`] samples) and returns the GPU time of every
    /// dispatch, in milliseconds, in plan order; `None` where the adapter cannot time dispatches.
    pub fn profile(&self, input: &[f32]) -> Result<Option<Vec<f64>>> {
        if !self.can_profile() {
            return Ok(None);
        }
        let per_sample: usize = self.input.1.iter().product();
        let batch = input.len() / per_sample;
        if input.is_empty() || !input.len().is_multiple_of(per_sample) || batch > self.max_batch() {
            return Err(RuntimeError::InputSize { got: input.len(), shape: self.input.1.clone(), per_sample });
        }
        let _guard = self.running.lock().unwrap_or_else(|p| p.into_inner());
        self.gpu_call(|| self.profile_batch(input, batch))
    }

    fn profile_batch(&self, input: &[f32], batch: usize) -> Result<Option<Vec<f64>>> {
        let count = 2 * self.dispatches.len() as u32;
        let scopes = crate::scope::Scopes::push(&self.device);
        let queries = self.device.create_query_set(&wgpu::QuerySetDescriptor { label: Some("mfn profile"), ty: wgpu::QueryType::Timestamp, count });
        let size = 8 * u64::from(count);
        let resolve = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("mfn timestamps"),
            size,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let readback = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("mfn timestamps readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.queue.write_buffer(&self.activations[self.input.0], 0, bytemuck::cast_slice(input));
        let mut encoder = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("mfn profile") });
        self.clear_tile_counters(&mut encoder);
        for (i, d) in self.dispatches.iter().enumerate() {
            let writes =
                wgpu::ComputePassTimestampWrites { query_set: &queries, beginning_of_pass_write_index: Some(2 * i as u32), end_of_pass_write_index: Some(2 * i as u32 + 1) };
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes: Some(writes) });
            pass.set_pipeline(&self.pipelines[d.pipeline]);
            pass.set_bind_group(0, &d.bind_group, &[]);
            pass.dispatch_workgroups(d.workgroups[0], d.workgroups[1], batch as u32);
        }
        encoder.resolve_query_set(&queries, 0..count, &resolve, 0);
        encoder.copy_buffer_to_buffer(&resolve, 0, &readback, 0, size);
        self.queue.submit([encoder.finish()]);
        let bytes = map_read(&self.device, &readback, size, scopes)?;
        let ticks: &[u64] = bytemuck::cast_slice(&bytes);
        let period_ms = f64::from(self.queue.get_timestamp_period()) * 1e-6;
        Ok(Some(ticks.chunks(2).map(|t| t[1].saturating_sub(t[0]) as f64 * period_ms).collect()))
    }
}
