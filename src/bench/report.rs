//! The human-readable report of `mfn bench`: cold start, latency, memory, and the per-kernel
//! table (also `mfn demo --profile` and `mfn inspect --profile`).

use anyhow::Result;
use mfn_compiler::Program;
use mfn_runtime::Session;

use super::{cold_start_ms, faces_per_s, BatchResult, CacheStart, KernelTime, SessionFacts};

impl SessionFacts {
    /// Prints what the session ran, for the human-readable report.
    pub(super) fn print(&self) {
        let variants = if self.subgroups { "their subgroup variants" } else { "the plain kernels (no subgroups of 8 or more, or --no-subgroups)" };
        println!("adapter: {}; kernels with a subgroup variant run {variants}", self.adapter);
        if self.warm_cores > 0 {
            println!("warm cores: {} idle-priority threads keep the CPUs busy during runs (CPU adapter; --no-warm-cores to let them halt)", self.warm_cores);
        }
        if self.tile_sharers > 0 {
            println!(
                "shared tiles: the GEMMs', convolutions' and depthwise kernels' tiles are shared among {} driver threads (CPU adapter; --no-shared-tiles for fixed shares)",
                self.tile_sharers
            );
        }
        if self.wide_loads {
            println!("wide loads: the kernels that allow it read activations as 64-bit integers (CPU adapter with SHADER_INT64; --no-wide-loads for vectors of floats)");
        }
    }
}

pub(super) fn print_cache_start(cache: Option<&CacheStart>, compile_ms: f64) {
    match cache {
        None => println!("pipeline cache: not available on this adapter (wgpu keeps one on Vulkan only)"),
        Some(c) => println!(
            "pipeline cache (batch 1): session {:.1} ms with it empty (writes {} bytes), {:.1} ms filled (loads {} bytes); \
             cold start with it filled {:.1} ms = compile {compile_ms:.1} + session {:.1} + first run {:.1}",
            c.cold_session_ms,
            c.saved,
            c.warm_session_ms,
            c.loaded,
            compile_ms + c.warm_session_ms + c.warm_first_run_ms,
            c.warm_session_ms,
            c.warm_first_run_ms
        ),
    }
}

pub(super) fn print_result(r: &BatchResult, compile_ms: f64) {
    let s = &r.stats;
    let split = if r.max_batch < r.batch { format!(" (in submissions of {})", r.max_batch) } else { String::new() };
    println!(
        "batch {:>3}{split}: median {:.2} ms  (min {:.2}, p10 {:.2}, p90 {:.2}, max {:.2}; {} runs)  {:.1} faces/s",
        r.batch,
        s.median,
        s.min,
        s.p10,
        s.p90,
        s.max,
        r.runs,
        faces_per_s(r)
    );
    println!(
        "           cold start {:.1} ms = compile {:.1} + session (pipelines, weights) {:.1} + first run {:.1}",
        cold_start_ms(r, compile_ms),
        compile_ms,
        r.session_ms,
        r.first_run_ms
    );
    println!("           {} dispatches a submission (--no-chains: one a kernel)", r.dispatches);
    let mib = |b: u64| b as f64 / 1048576.0;
    println!(
        "           GPU memory {:.1} MiB = activations {:.1} (for {} samples a submission) + weights {:.1}",
        mib(r.memory.0 + r.memory.1),
        mib(r.memory.0),
        r.max_batch,
        mib(r.memory.1)
    );
}

/// GPU time of every dispatch with its arithmetic and (approximate) memory throughput.
pub(super) fn kernel_times(program: &Program, times: &[f64], batch: usize) -> Vec<KernelTime> {
    program
        .steps
        .iter()
        .zip(times)
        .enumerate()
        .map(|(i, (step, &t))| {
            let kernel = &program.kernels[step.kernel];
            // Bytes moved, at least: every input and weight read once, the output written once.
            let bytes = program.traffic(i).total(batch) as f64;
            let secs = (t * 1e-3).max(1e-12);
            KernelTime { kernel: kernel.name.clone(), nodes: step.nodes.clone(), ms: t, gflops: 2.0 * step.macs as f64 * batch as f64 / secs * 1e-9, gbytes: bytes / secs * 1e-9 }
        })
        .collect()
}

pub(super) fn print_profile(r: &BatchResult) {
    print_kernel_times(r.profile.as_deref(), r.batch.min(r.max_batch));
}

/// Times every kernel of `session` on one batch of `input` and prints the table `mfn bench` does.
pub(crate) fn print_session_profile(program: &Program, session: &Session, input: &[f32]) -> Result<()> {
    let batch = input.len() / program.input.elements();
    let rows = session.profile(input)?.map(|times| kernel_times(program, &times, batch));
    print_kernel_times(rows.as_deref(), batch);
    Ok(())
}

pub(super) fn print_kernel_times(rows: Option<&[KernelTime]>, batch: usize) {
    let Some(rows) = rows else {
        println!("per-kernel profile: not available (the adapter has no timestamp queries)");
        return;
    };
    let total: f64 = rows.iter().map(|k| k.ms).sum();
    println!("per-kernel GPU time, batch {batch} (timestamp queries, one pass a dispatch): {total:.2} ms");
    println!("  {:<22} {:>9} {:>6} {:>8} {:>7}  fused nodes", "kernel", "ms", "share", "GFLOP/s", "GB/s~");
    for k in rows {
        let mut nodes = k.nodes.join(" + ");
        if nodes.len() > 60 {
            nodes.truncate(57);
            nodes.push_str("...");
        }
        println!("  {:<22} {:>9.3} {:>5.1}% {:>8.2} {:>7.2}  {nodes}", k.kernel, k.ms, 100.0 * k.ms / total.max(1e-12), k.gflops, k.gbytes);
    }
    // Totals by template (the kernel name ends with it).
    let mut by_template: Vec<(String, f64, f64)> = Vec::new();
    for k in rows {
        let template = k.kernel.split_once('_').map_or(k.kernel.as_str(), |(_, t)| t).to_string();
        let flop = k.gflops * k.ms * 1e-3;
        match by_template.iter_mut().find(|(t, ..)| *t == template) {
            Some(e) => {
                e.1 += k.ms;
                e.2 += flop;
            }
            None => by_template.push((template, k.ms, flop)),
        }
    }
    by_template.sort_by(|a, b| b.1.total_cmp(&a.1));
    println!("  by template:");
    for (t, ms, gflop) in by_template {
        println!("    {t:<18} {ms:9.3} ms {:5.1}%  {:8.2} GFLOP/s", 100.0 * ms / total.max(1e-12), gflop / (ms * 1e-3).max(1e-12));
    }
}
