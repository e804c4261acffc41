//! `mfn bench`: batch latency and throughput per batch size, cold start (compile, session
//! creation, first run), and a per-kernel GPU profile where the adapter has timestamp queries.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use mfn_compiler::{CompileOptions, Program};
use mfn_runtime::{Session, SessionOptions};

use crate::commands::session_options;
use crate::GpuArgs;

/// What `mfn bench` measures.
pub struct BenchArgs<'a> {
    pub model: Option<&'a str>,
    /// e.g. "1,16,64".
    pub batches: &'a str,
    /// Timed runs per batch size (after the warm-up).
    pub runs: usize,
    /// Untimed runs per batch size before the timed ones (after the first run).
    pub warmup: usize,
    pub json: bool,
    pub gpu: &'a GpuArgs,
}

/// Latency statistics of the timed runs, in milliseconds.
struct Stats {
    median: f64,
    min: f64,
    max: f64,
    p10: f64,
    p90: f64,
}

impl Stats {
    fn of(mut times: Vec<f64>) -> Stats {
        times.sort_by(f64::total_cmp);
        // Nearest-rank percentiles (exact for the median of an odd count).
        let at = |q: f64| times[((q * (times.len() - 1) as f64).round() as usize).min(times.len() - 1)];
        let median = if times.len() % 2 == 1 {
            times[times.len() / 2]
        } else {
            (times[times.len() / 2 - 1] + times[times.len() / 2]) / 2.0
        };
        Stats { median, min: times[0], max: times[times.len() - 1], p10: at(0.1), p90: at(0.9) }
    }
}

/// One row of the per-kernel profile.
#[derive(Serialize)]
struct KernelTime {
    kernel: String,
    nodes: Vec<String>,
    #[serde(serialize_with = "rounded")]
    ms: f64,
    #[serde(serialize_with = "rounded")]
    gflops: f64,
    #[serde(rename = "gbytes_per_s", serialize_with = "rounded")]
    gbytes: f64,
}

/// A figure of the JSON output, to 4 decimal places (null where not finite, as JSON has no NaN).
#[derive(Clone, Copy)]
struct Rounded(f64);

impl Serialize for Rounded {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64((self.0 * 1e4).round() / 1e4)
    }
}

fn rounded<S: serde::Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    Rounded(*v).serialize(s)
}

/// What the session a batch size ran on did: the adapter, whether the subgroup variants ran, the
/// warm-core threads, the driver threads sharing tiles, whether the wide loads ran.
#[derive(Serialize)]
struct SessionFacts {
    adapter: String,
    subgroups: bool,
    warm_cores: usize,
    tile_sharers: u32,
    wide_loads: bool,
}

impl SessionFacts {
    fn of(session: &Session) -> SessionFacts {
        SessionFacts {
            adapter: session.adapter(),
            subgroups: session.subgroups(),
            warm_cores: session.warm_cores(),
            tile_sharers: session.tile_sharers(),
            wide_loads: session.wide_loads(),
        }
    }

    fn print(&self) {
        let variants = if self.subgroups { "their subgroup variants" } else { "the plain kernels (no subgroups of 8 or more, or --no-subgroups)" };
        println!("adapter: {}; kernels with a subgroup variant run {variants}", self.adapter);
        if self.warm_cores > 0 {
            println!("warm cores: {} idle-priority threads keep the CPUs busy during runs (CPU adapter; --no-warm-cores to let them halt)", self.warm_cores);
        }
        if self.tile_sharers > 0 {
            println!("shared tiles: the GEMMs', convolutions' and depthwise kernels' tiles are shared among {} driver threads (CPU adapter; --no-shared-tiles for fixed shares)", self.tile_sharers);
        }
        if self.wide_loads {
            println!("wide loads: the kernels that allow it read activations as 64-bit integers (CPU adapter with SHADER_INT64; --no-wide-loads for vectors of floats)");
        }
    }
}

/// The result of one batch size.
struct BatchResult {
    batch: usize,
    /// Samples per submission (the session splits larger batches).
    max_batch: usize,
    stats: Stats,
    runs: usize,
    session_ms: f64,
    first_run_ms: f64,
    /// None where the adapter has no timestamp queries.
    profile: Option<Vec<KernelTime>>,
    /// GPU memory of the session: activation and weight bytes.
    memory: (u64, u64),
    /// Dispatches of a submission (fewer than the program's steps where kernels run in chains).
    dispatches: usize,
}

/// Session creation and first run with an empty and with a filled pipeline cache.
struct CacheStart {
    cold_session_ms: f64,
    warm_session_ms: f64,
    warm_first_run_ms: f64,
    /// Bytes written by the first session and loaded by the second.
    saved: usize,
    loaded: usize,
}

pub fn parse_batches(list: &str) -> Result<Vec<usize>> {
    let mut batches = Vec::new();
    for part in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let b: usize = part.parse().with_context(|| format!("batch size {part:?} in --batch {list:?}"))?;
        if b == 0 {
            bail!("batch sizes must be at least 1 (--batch {list:?})");
        }
        batches.push(b);
    }
    if batches.is_empty() {
        bail!("--batch needs at least one batch size, e.g. 1,16,64");
    }
    Ok(batches)
}

pub fn bench(args: &BenchArgs) -> Result<()> {
    let batches = parse_batches(args.batches)?;
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let (bytes, what) = match args.model {
        Some(spec) => (mfn::load_model(spec)?, spec.to_string()),
        None => mfn::default_model(),
    };
    let t = Instant::now();
    let options = CompileOptions { precision: args.gpu.precision, ..CompileOptions::default() };
    let program = mfn::program_from_bytes_with(&bytes, &what, &options)?.program;
    let compile_ms = ms(t);
    if !args.json {
        println!("model: {what} ({} storage)", program.precision.wgsl());
        println!("compiled in {compile_ms:.1} ms: {} kernels, {} dispatches, {:.1} M multiply-adds a sample", program.kernels.len(), program.steps.len(), program.stats.macs as f64 / 1e6);
    }
    let cache = cache_start(&program, args.gpu)?;
    if !args.json {
        print_cache_start(cache.as_ref(), compile_ms);
    }
    let mut facts: Option<SessionFacts> = None;
    let mut results = Vec::new();
    for &batch in &batches {
        let (r, session) = measure(&program, args, batch)?;
        let facts = facts.get_or_insert_with(|| {
            let facts = SessionFacts::of(&session);
            if !args.json {
                facts.print();
            }
            facts
        });
        if args.json {
            println!("{}", json_line(&r, compile_ms, cache.as_ref(), facts, &what)?);
        } else {
            print_result(&r, compile_ms);
        }
        results.push(r);
    }
    if !args.json {
        // The per-kernel table of the largest batch size.
        if let Some(r) = results.iter().max_by_key(|r| r.batch) {
            print_profile(r);
        }
    }
    Ok(())
}

/// One batch size on a session of its own, sized for it: its creation and first run are the cold
/// start, then the warm-up and the timed runs, and the per-kernel profile of one submission.
fn measure(program: &Program, args: &BenchArgs, batch: usize) -> Result<(BatchResult, Session)> {
    let t = Instant::now();
    // Without the pipeline cache: the cold start of a first run (see `cache_start`).
    let options = SessionOptions { pipeline_cache: None, ..session_options(args.gpu, batch) };
    let session = Session::new(program, &options)?;
    let session_ms = ms(t);
    let per_sample: usize = program.input.shape.iter().product();
    let input = mfn_models::rng::Rng::new(7).uniform_vec(batch * per_sample, 0.0, 255.0);
    let t = Instant::now();
    session.run(&input)?;
    let first_run_ms = ms(t);
    // The chains' pipelines, which the session builds after its first run (CPU adapters).
    session.wait_for_chains();
    for _ in 0..args.warmup {
        session.run(&input)?;
    }
    let times = (0..args.runs)
        .map(|_| {
            let t = Instant::now();
            session.run(&input).map(|_| ms(t))
        })
        .collect::<Result<Vec<f64>, _>>()?;
    let max_batch = session.max_batch();
    let profile_batch = batch.min(max_batch);
    let profile = session.profile(&input[..profile_batch * per_sample])?.map(|times| kernel_times(program, &times, profile_batch));
    let (memory, dispatches) = (session.memory(), session.dispatch_count(profile_batch));
    let r = BatchResult { batch, max_batch, stats: Stats::of(times), runs: args.runs, session_ms, first_run_ms, profile, memory, dispatches };
    Ok((r, session))
}

/// Creates a batch-1 session twice on a fresh pipeline cache folder (removed afterwards): first
/// with the cache empty, then filled. `None` where the adapter keeps no pipeline cache.
fn cache_start(program: &Program, gpu: &GpuArgs) -> Result<Option<CacheStart>> {
    let dir = std::env::temp_dir().join(format!("mfn-bench-pipeline-cache-{}", std::process::id()));
    let options = SessionOptions { pipeline_cache: Some(dir.clone()), ..session_options(gpu, 1) };
    let result = (|| -> Result<Option<CacheStart>> {
        let t = Instant::now();
        let cold = Session::new(program, &options)?;
        let cold_session_ms = ms(t);
        let Some(status) = cold.pipeline_cache() else { return Ok(None) };
        let saved = status.saved.clone().map_err(anyhow::Error::msg).context("writing the pipeline cache")?;
        drop(cold);
        let t = Instant::now();
        let warm = Session::new(program, &options)?;
        let warm_session_ms = ms(t);
        let loaded = warm.pipeline_cache().map_or(0, |s| s.loaded_bytes);
        let input = vec![0.0; program.input.elements()];
        let t = Instant::now();
        warm.run(&input)?;
        let warm_first_run_ms = ms(t);
        // Not beside the next measurements: the chains it builds after its first run.
        warm.wait_for_chains();
        Ok(Some(CacheStart { cold_session_ms, warm_session_ms, warm_first_run_ms, saved, loaded }))
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn print_cache_start(cache: Option<&CacheStart>, compile_ms: f64) {
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

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn faces_per_s(r: &BatchResult) -> f64 {
    r.batch as f64 * 1e3 / r.stats.median
}

fn cold_start_ms(r: &BatchResult, compile_ms: f64) -> f64 {
    compile_ms + r.session_ms + r.first_run_ms
}

fn print_result(r: &BatchResult, compile_ms: f64) {
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
    println!("           GPU memory {:.1} MiB = activations {:.1} (for {} samples a submission) + weights {:.1}", mib(r.memory.0 + r.memory.1), mib(r.memory.0), r.max_batch, mib(r.memory.1));
}

/// GPU time of every dispatch with its arithmetic and (approximate) memory throughput.
fn kernel_times(program: &Program, times: &[f64], batch: usize) -> Vec<KernelTime> {
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
            KernelTime {
                kernel: kernel.name.clone(),
                nodes: step.nodes.clone(),
                ms: t,
                gflops: 2.0 * step.macs as f64 * batch as f64 / secs * 1e-9,
                gbytes: bytes / secs * 1e-9,
            }
        })
        .collect()
}

fn print_profile(r: &BatchResult) {
    print_kernel_times(r.profile.as_deref(), r.batch.min(r.max_batch));
}

/// Times every kernel of `session` on one batch of `input` and prints the table `mfn bench` does.
pub(crate) fn print_session_profile(program: &Program, session: &Session, input: &[f32]) -> Result<()> {
    let batch = input.len() / program.input.elements();
    let rows = session.profile(input)?.map(|times| kernel_times(program, &times, batch));
    print_kernel_times(rows.as_deref(), batch);
    Ok(())
}

fn print_kernel_times(rows: Option<&[KernelTime]>, batch: usize) {
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

/// One line of `--json`: the figures of one batch size, with the cold start's parts, the batch-1
/// session creation with an empty and a filled pipeline cache (null: the adapter keeps none), and
/// the per-kernel profile (null: no timestamp queries). Non-finite numbers are null.
#[derive(Serialize)]
struct BatchJson<'a> {
    batch: usize,
    median_ms: Rounded,
    min_ms: Rounded,
    max_ms: Rounded,
    p10_ms: Rounded,
    p90_ms: Rounded,
    runs: usize,
    faces_per_s: Rounded,
    cold_start_ms: Rounded,
    compile_ms: Rounded,
    session_ms: Rounded,
    first_run_ms: Rounded,
    max_batch: usize,
    dispatches: usize,
    activation_bytes: u64,
    weight_bytes: u64,
    session_cold_cache_ms: Option<Rounded>,
    session_warm_cache_ms: Option<Rounded>,
    cold_start_warm_cache_ms: Option<Rounded>,
    #[serde(flatten)]
    session: &'a SessionFacts,
    model: &'a str,
    profile: Option<&'a [KernelTime]>,
}

fn json_line(r: &BatchResult, compile_ms: f64, cache: Option<&CacheStart>, session: &SessionFacts, model: &str) -> Result<String> {
    let s = &r.stats;
    let line = BatchJson {
        batch: r.batch,
        median_ms: Rounded(s.median),
        min_ms: Rounded(s.min),
        max_ms: Rounded(s.max),
        p10_ms: Rounded(s.p10),
        p90_ms: Rounded(s.p90),
        runs: r.runs,
        faces_per_s: Rounded(faces_per_s(r)),
        cold_start_ms: Rounded(cold_start_ms(r, compile_ms)),
        compile_ms: Rounded(compile_ms),
        session_ms: Rounded(r.session_ms),
        first_run_ms: Rounded(r.first_run_ms),
        max_batch: r.max_batch,
        dispatches: r.dispatches,
        activation_bytes: r.memory.0,
        weight_bytes: r.memory.1,
        session_cold_cache_ms: cache.map(|c| Rounded(c.cold_session_ms)),
        session_warm_cache_ms: cache.map(|c| Rounded(c.warm_session_ms)),
        cold_start_warm_cache_ms: cache.map(|c| Rounded(compile_ms + c.warm_session_ms + c.warm_first_run_ms)),
        session,
        model,
        profile: r.profile.as_deref(),
    };
    Ok(serde_json::to_string(&line)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_lists() {
        assert_eq!(parse_batches("1,16,64").unwrap(), vec![1, 16, 64]);
        assert_eq!(parse_batches(" 8 ").unwrap(), vec![8]);
        assert!(parse_batches("0").is_err());
        assert!(parse_batches("x").is_err());
        assert!(parse_batches("").is_err());
    }

    #[test]
    fn statistics() {
        let s = Stats::of(vec![5.0, 1.0, 3.0, 2.0, 4.0]);
        assert_eq!((s.median, s.min, s.max), (3.0, 1.0, 5.0));
        let s = Stats::of(vec![4.0, 2.0]);
        assert_eq!(s.median, 3.0);
    }

    #[test]
    fn json_lines() {
        let kernel = KernelTime { kernel: "k00_\"gemm\"".into(), nodes: vec!["a\\b".into()], ms: 1.5, gflops: f64::NAN, gbytes: 2.0 };
        let r = BatchResult {
            batch: 16,
            max_batch: 8,
            stats: Stats::of(vec![2.0, 4.0, 3.0]),
            runs: 3,
            session_ms: 10.0,
            first_run_ms: 5.0,
            profile: Some(vec![kernel]),
            memory: (100, 20),
            dispatches: 50,
        };
        let facts = SessionFacts { adapter: "llvmpipe\n(test)".into(), subgroups: true, warm_cores: 2, tile_sharers: 2, wide_loads: false };
        let line = json_line(&r, 1.0, None, &facts, "m.onnx").unwrap();
        assert!(!line.contains('\n'), "one line: {line}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!((v["batch"].as_u64(), v["median_ms"].as_f64(), v["faces_per_s"].as_f64()), (Some(16), Some(3.0), Some(5333.3333)));
        assert_eq!(v["cold_start_ms"].as_f64(), Some(16.0));
        assert!(v["session_cold_cache_ms"].is_null());
        assert_eq!((v["adapter"].as_str(), v["tile_sharers"].as_u64(), v["wide_loads"].as_bool()), (Some("llvmpipe\n(test)"), Some(2), Some(false)));
        let row = &v["profile"][0];
        assert_eq!((row["kernel"].as_str(), row["nodes"][0].as_str(), row["gbytes_per_s"].as_f64()), (Some("k00_\"gemm\""), Some("a\\b"), Some(2.0)));
        assert!(row["gflops"].is_null(), "NaN as null: {row}");
    }
}
