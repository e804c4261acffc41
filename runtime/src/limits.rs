//! What a program needs of a device, checked against the adapter's limits before anything is
//! created, so that a shortfall is a clear error rather than a failure inside wgpu.

use mfn_compiler::Program;

use crate::error::{Result, RuntimeError};

/// The loop iterations after which lavapipe (gallivm's `LP_MAX_TGSI_LOOP_ITERATIONS`) ends every
/// loop of an invocation.
pub(crate) const LAVAPIPE_LOOP_LIMIT: u32 = 65_535;

pub(crate) struct Requirements {
    pub max_batch: usize,
    binding_bytes: u64,
    storage_buffers: u32,
    sampled_textures: u32,
    texture_dimension: u32,
    workgroup_size: u32,
    workgroups_per_dim: u32,
}

/// The workgroup grid `[x, y]` of a dispatch re-laid so that neither side exceeds `limit`. Kernels
/// read their linear workgroup index as `x + y * num_workgroups.x` and ignore indices past their
/// work, so any grid of at least `x * y` workgroups computes the same result.
pub(crate) fn split_workgroups(grid: [u32; 2], limit: u32) -> Option<[u32; 2]> {
    let total = u64::from(grid[0]) * u64::from(grid[1]);
    if grid[0] <= limit && grid[1] <= limit {
        return Some(grid);
    }
    let x = total.min(u64::from(limit.max(1)));
    let y = total.div_ceil(x);
    (y <= u64::from(limit)).then_some([x as u32, y as u32])
}

/// Device features a program needs: `SHADER_F16` for f16 storage.
pub(crate) fn features(program: &Program, features: wgpu::Features, adapter: &str) -> Result<wgpu::Features> {
    if program.precision != mfn_compiler::Precision::F16 {
        return Ok(wgpu::Features::empty());
    }
    if !features.contains(wgpu::Features::SHADER_F16) {
        return Err(RuntimeError::MissingFeature { adapter: adapter.into(), feature: "SHADER_F16", why: "programs compiled with f16 precision" });
    }
    Ok(wgpu::Features::SHADER_F16)
}

/// Whether a device with `features`, on the adapter of `info`, can run the program's subgroup
/// variants: it has some, the device has subgroups, and every subgroup has at least
/// [`mfn_compiler::MIN_SUBGROUP_SIZE`] invocations.
pub(crate) fn subgroups_usable(program: &Program, features: wgpu::Features, info: &wgpu::AdapterInfo) -> bool {
    program.kernels.iter().any(|k| k.subgroup_wgsl.is_some()) && features.contains(wgpu::Features::SUBGROUP) && info.subgroup_min_size >= mfn_compiler::MIN_SUBGROUP_SIZE
}

/// Whether a device with `features`, on the adapter of `info`, runs the wide form of the
/// program's loads ([`mfn_compiler::wide`]): a CPU adapter (where loads cost by the component) with
/// 64-bit integers, and for an f16 program f16 packing (`f16_packing`: the adapter's
/// `SHADER_F16_IN_F32`).
pub(crate) fn wide_loads_usable(program: &Program, features: wgpu::Features, info: &wgpu::AdapterInfo, f16_packing: bool) -> bool {
    info.device_type == wgpu::DeviceType::Cpu && features.contains(wgpu::Features::SHADER_INT64) && (program.precision == mfn_compiler::Precision::F32 || f16_packing)
}

impl Requirements {
    /// The needs of `program` at the largest batch (at most `wanted`) its buffers allow.
    pub fn of(program: &Program, wanted: usize, limits: &wgpu::Limits, adapter: &str) -> Result<Requirements> {
        let limit = |what: &str, needed: u64, available: u64| -> Result<()> {
            if needed > available {
                return Err(RuntimeError::Limit { adapter: adapter.into(), what: what.into(), needed, available });
            }
            Ok(())
        };
        let max_binding = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size);
        // Saturating: a hostile .mfn may claim buffers of up to usize::MAX elements.
        let element = program.precision.bytes() as u64;
        let per_sample = (program.buffers.iter().copied().max().unwrap_or(1) as u64).saturating_mul(element);
        let buffers = program.weights.iter().filter(|w| w.texture.is_none());
        let weight_bytes = buffers.map(|w| (w.data.len() as u64).saturating_mul(w.precision.bytes() as u64)).max().unwrap_or(4);
        limit("the largest weight buffer (bytes)", weight_bytes, max_binding)?;
        let mut texture_dimension = 1;
        for (width, height) in program.weights.iter().filter_map(|w| w.texture_size()) {
            texture_dimension = texture_dimension.max(width).max(height);
        }
        limit("the largest weight texture's side (texels)", texture_dimension.into(), limits.max_texture_dimension_2d.into())?;
        limit("one sample's largest activation buffer (bytes)", per_sample, max_binding)?;
        let batch_cap = (max_binding / per_sample).min(u64::from(limits.max_compute_workgroups_per_dimension)) as usize;
        let max_batch = wanted.clamp(1, batch_cap.max(1));
        let workgroup_size = program.kernels.iter().map(|k| k.workgroup_size).max().unwrap_or(1);
        let storage_buffers = program.kernels.iter().map(|k| k.bindings - k.textures.count_ones().min(k.bindings)).max().unwrap_or(1);
        let sampled_textures = program.kernels.iter().map(|k| k.textures.count_ones()).max().unwrap_or(0);
        let per_dim = limits.max_compute_workgroups_per_dimension;
        let mut workgroups_per_dim = max_batch as u32;
        for step in &program.steps {
            let total = u64::from(step.workgroups[0]) * u64::from(step.workgroups[1]);
            let [x, y] = split_workgroups(step.workgroups, per_dim).ok_or_else(|| RuntimeError::Limit {
                adapter: adapter.into(),
                what: "workgroups of one dispatch (x * y)".into(),
                needed: total,
                available: u64::from(per_dim).pow(2),
            })?;
            workgroups_per_dim = workgroups_per_dim.max(x).max(y);
        }
        limit("storage buffers per shader stage", storage_buffers.into(), limits.max_storage_buffers_per_shader_stage.into())?;
        limit("sampled textures per shader stage", sampled_textures.into(), limits.max_sampled_textures_per_shader_stage.into())?;
        limit("workgroup size x", workgroup_size.into(), limits.max_compute_workgroup_size_x.into())?;
        limit("invocations per workgroup", workgroup_size.into(), limits.max_compute_invocations_per_workgroup.into())?;
        limit("workgroups per dimension", workgroups_per_dim.into(), limits.max_compute_workgroups_per_dimension.into())?;
        if adapter.contains("llvmpipe") {
            // Lavapipe ends every loop of an invocation once its loops have run this many
            // iterations in all, silently: a kernel whose one unit loops longer would compute a
            // wrong result (a dot product of more than about half a million terms, a 3x3
            // convolution of more than about 5,000 input channels in a group).
            for k in &program.kernels {
                limit(&format!("loop iterations of one invocation of kernel {} ({})", k.name, k.template), k.unit_iterations.into(), LAVAPIPE_LOOP_LIMIT.into())?;
            }
        }
        let binding_bytes = (per_sample * max_batch as u64).max(weight_bytes);
        Ok(Requirements { max_batch, binding_bytes, storage_buffers, sampled_textures, texture_dimension, workgroup_size, workgroups_per_dim })
    }

    /// Lowers the batch until every buffer the session creates fits in `budget` bytes of GPU memory
    /// (wgpu reports no device memory size, so the budget is the caller's); an error naming the
    /// need and the budget when not even one sample fits. Checked before any buffer is created.
    pub fn fit_memory(mut self, program: &Program, budget: Option<u64>, adapter: &str) -> Result<Requirements> {
        let Some(budget) = budget else { return Ok(self) };
        let fixed = memory_bytes(program, 0);
        let per_sample = memory_bytes(program, 1) - fixed;
        let fits = budget.checked_sub(fixed).map_or(0, |left| left / per_sample.max(1));
        if fits == 0 {
            let what = "GPU buffer memory for one sample (weights, activations, read-back), within the memory budget (bytes),";
            return Err(RuntimeError::Limit { adapter: adapter.into(), what: what.into(), needed: memory_bytes(program, 1), available: budget });
        }
        self.max_batch = self.max_batch.min(usize::try_from(fits).unwrap_or(usize::MAX));
        Ok(self)
    }

    /// Device limits to request: wgpu's defaults, raised to what the program needs.
    pub fn limits(&self, adapter: &wgpu::Limits) -> wgpu::Limits {
        let base = wgpu::Limits::default().using_resolution(adapter.clone());
        let mut l = wgpu::Limits { ..base };
        l.max_storage_buffer_binding_size = l.max_storage_buffer_binding_size.max(self.binding_bytes);
        l.max_buffer_size = l.max_buffer_size.max(self.binding_bytes);
        l.max_storage_buffers_per_shader_stage = l.max_storage_buffers_per_shader_stage.max(self.storage_buffers);
        l.max_sampled_textures_per_shader_stage = l.max_sampled_textures_per_shader_stage.max(self.sampled_textures);
        l.max_texture_dimension_2d = l.max_texture_dimension_2d.max(self.texture_dimension);
        l.max_compute_workgroup_size_x = l.max_compute_workgroup_size_x.max(self.workgroup_size);
        l.max_compute_invocations_per_workgroup = l.max_compute_invocations_per_workgroup.max(self.workgroup_size);
        l.max_compute_workgroups_per_dimension = l.max_compute_workgroups_per_dimension.max(self.workgroups_per_dim);
        l
    }
}

/// Bytes of every buffer a session of `program` creates for batches of up to `batch`: activation
/// buffers, weights, the read-back buffer and the placeholder for unused bindings.
pub(crate) fn memory_bytes(program: &Program, batch: usize) -> u64 {
    let element = program.precision.bytes() as u64;
    let bytes = |elements: usize, size: u64, batch: u64| (elements as u64).saturating_mul(size).saturating_mul(batch);
    let batch = batch as u64;
    let activations = program.buffers.iter().fold(0u64, |sum, &e| sum.saturating_add(bytes(e, element, batch)));
    let weights = program.weights.iter().fold(0u64, |sum, w| sum.saturating_add(bytes(w.data.len().max(1), w.precision.bytes() as u64, 1)));
    let readback = program.outputs.iter().fold(0u64, |sum, o| sum.saturating_add(bytes(o.elements(), element, batch)));
    activations.saturating_add(weights).saturating_add(readback).saturating_add(16)
}

#[cfg(test)]
mod tests {
    use mfn_compiler::{Kernel, Port, Precision, Program, Stats, Step, Weight};

    use super::*;

    /// A plan with one 1 MiB activation buffer a sample and a 4 KiB weight.
    fn program() -> Program {
        let port = |buffer| Port { name: "x".into(), shape: vec![262_144], buffer };
        Program {
            kernels: vec![Kernel {
                name: "k".into(),
                template: "elementwise".into(),
                wgsl: String::new(),
                subgroup_wgsl: None,
                workgroup_size: 64,
                bindings: 4,
                textures: 0,
                unit_iterations: 0,
            }],
            steps: vec![Step { kernel: 0, nodes: vec![], bindings: vec![], workgroups: [4096, 1], input_shapes: vec![], output_shape: vec![262_144], macs: 0 }],
            buffers: vec![262_144, 262_144],
            weights: vec![Weight { name: "w".into(), data: vec![0.0; 1024], precision: Precision::F32, texture: None }],
            input: port(0),
            outputs: vec![port(1)],
            normalises_input: false,
            precision: Precision::F32,
            stats: Stats::default(),
        }
    }

    #[test]
    fn batch_is_capped_by_the_binding_limit() {
        let limits = wgpu::Limits { max_storage_buffer_binding_size: 5 << 20, ..wgpu::Limits::default() };
        let req = Requirements::of(&program(), 64, &limits, "tiny").expect("fits at a smaller batch");
        assert_eq!(req.max_batch, 5);
    }

    #[test]
    fn large_grids_are_split_not_refused() {
        assert_eq!(split_workgroups([4096, 1], 65535), Some([4096, 1]));
        assert_eq!(split_workgroups([4096, 1], 1000), Some([1000, 5]));
        assert_eq!(split_workgroups([70000, 2], 65535), Some([65535, 3]));
        assert_eq!(split_workgroups([4096, 1], 50), None);
        let limits = wgpu::Limits { max_compute_workgroups_per_dimension: 1000, ..wgpu::Limits::default() };
        let req = Requirements::of(&program(), 64, &limits, "small grid").expect("split, not refused");
        assert_eq!(req.max_batch, 64);
    }

    #[test]
    fn batch_is_capped_by_the_memory_budget() {
        // 4 KiB of weights + 16 fixed; 3 MiB a sample (two 1 MiB buffers and a 1 MiB read-back).
        let p = program();
        assert_eq!(memory_bytes(&p, 0), 4096 + 16);
        assert_eq!(memory_bytes(&p, 2), 4096 + 16 + 2 * (3 << 20));
        let req = || Requirements::of(&p, 64, &wgpu::Limits::default(), "tiny").expect("fits the limits");
        assert_eq!(req().fit_memory(&p, None, "tiny").expect("no budget").max_batch, 64);
        assert_eq!(req().fit_memory(&p, Some(10 << 20), "tiny").expect("fits").max_batch, 3);
        let err = req().fit_memory(&p, Some(3 << 20), "tiny").err().expect("one sample does not fit").to_string();
        let want = format!(
            "GPU buffer memory for one sample (weights, activations, read-back), within the memory budget (bytes), needs {}, the adapter allows {}",
            4096 + 16 + (3 << 20),
            3 << 20
        );
        assert!(err.contains(&want) && err.contains("'tiny'"), "{err}");
    }

    /// A hostile `.mfn` may claim buffers of any size: refused, without overflow.
    #[test]
    fn absurd_buffer_sizes_do_not_overflow() {
        let mut p = program();
        p.buffers = vec![usize::MAX, 262_144];
        let err = Requirements::of(&p, 4, &wgpu::Limits::default(), "tiny").err().expect("too large").to_string();
        assert!(err.contains("largest activation buffer"), "{err}");
        assert_eq!(memory_bytes(&p, 1 << 20), u64::MAX);
    }

    #[test]
    fn what_does_not_fit_is_named() {
        let check = |limits: wgpu::Limits, what: &str| {
            let err = Requirements::of(&program(), 1, &limits, "tiny").err().expect("must not fit").to_string();
            assert!(err.contains(what) && err.contains("'tiny'"), "{err}");
        };
        check(wgpu::Limits { max_storage_buffer_binding_size: 1 << 19, ..Default::default() }, "largest activation buffer");
        check(wgpu::Limits { max_storage_buffer_binding_size: 1 << 11, ..Default::default() }, "largest weight buffer");
        check(wgpu::Limits { max_compute_workgroup_size_x: 32, ..Default::default() }, "workgroup size x");
        check(wgpu::Limits { max_compute_workgroups_per_dimension: 50, ..Default::default() }, "workgroups of one dispatch");
        check(wgpu::Limits { max_storage_buffers_per_shader_stage: 3, ..Default::default() }, "storage buffers per shader stage");
    }

    /// A weight texture of 32 texels by 4096 rows: its side is checked against the adapter's
    /// texture limit (not its buffer limits), and its kernel's texture binding counts as a sampled
    /// texture, not a storage buffer.
    #[test]
    fn weight_textures_are_checked_as_textures() {
        let mut p = program();
        p.weights[0] = Weight { name: "w".into(), data: vec![0.0; 32 * 4096 * 4], precision: Precision::F32, texture: Some(32) };
        p.kernels[0].textures = 1 << 1;
        let tight = wgpu::Limits { max_storage_buffer_binding_size: 1 << 20, max_storage_buffers_per_shader_stage: 3, ..Default::default() };
        let req = Requirements::of(&p, 1, &tight, "tiny").expect("a 2 MiB texture is no storage buffer");
        assert_eq!(req.limits(&wgpu::Limits::default()).max_texture_dimension_2d, 8192);
        let err = Requirements::of(&p, 1, &wgpu::Limits { max_texture_dimension_2d: 2048, ..Default::default() }, "tiny").err().expect("too tall").to_string();
        assert!(err.contains("largest weight texture's side (texels) needs 4096, the adapter allows 2048") && err.contains("'tiny'"), "{err}");
        let err = Requirements::of(&p, 1, &wgpu::Limits { max_sampled_textures_per_shader_stage: 0, ..Default::default() }, "tiny").err().expect("none").to_string();
        assert!(err.contains("sampled textures per shader stage"), "{err}");
    }
}
