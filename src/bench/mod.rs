//! `mfn bench`: batch latency and throughput per batch size, cold start (compile, session
//! creation, first run), and a per-kernel GPU profile where the adapter has timestamp queries.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use mfn_compiler::{CompileOptions, Program};
use mfn_runtime::{Session, SessionOptions};
use serde::Serialize;

use crate::commands::session_options;
use crate::GpuArgs;
use json::json_line;
pub(crate) use report::print_session_profile;
use report::{kernel_times, print_cache_start, print_profile, print_result};

mod json;
mod report;

/// What `mfn bench` measures.
pub struct BenchArgs<'a> {
    pub model: Option<&'a str>,
    /// e.g. "1,16,64".
    pub batches: &'a str,
    /// Timed runs per batch size (after the warm-up).
    pub runs: usize,
    /// Untimed runs per batch size before the timed ones (after the first run).
    pub warmup: usize,
    /// Seconds the timed runs of a batch size take at least: runs go on past `runs` until then.
    pub min_time: f64,
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
        let median = if times.len() % 2 == 1 { times[times.len() / 2] } else { (times[times.len() / 2 - 1] + times[times.len() / 2]) / 2.0 };
        Stats { median, min: times[0], max: times[times.len() - 1], p10: at(0.1), p90: at(0.9) }
    }
}

/// One row of the per-kernel profile.
#[derive(Serialize)]
struct KernelTime {
    kernel: String,
    nodes: Vec<String>,
    #[serde(serialize_with = "json::rounded")]
    ms: f64,
    #[serde(serialize_with = "json::rounded")]
    gflops: f64,
    #[serde(rename = "gbytes_per_s", serialize_with = "json::rounded")]
    gbytes: f64,
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
    if !(args.min_time.is_finite() && args.min_time >= 0.0) {
        bail!("--min-time must be a number of seconds, 0 or more (got {})", args.min_time);
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
        println!(
            "compiled in {compile_ms:.1} ms: {} kernels, {} dispatches, {:.1} M multiply-adds a sample",
            program.kernels.len(),
            program.steps.len(),
            program.stats.macs as f64 / 1e6
        );
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
    let mut times = Vec::with_capacity(args.runs);
    let started = Instant::now();
    while times.len() < args.runs || started.elapsed().as_secs_f64() < args.min_time {
        let t = Instant::now();
        session.run(&input)?;
        times.push(ms(t));
    }
    let max_batch = session.max_batch();
    let profile_batch = batch.min(max_batch);
    let profile = session.profile(&input[..profile_batch * per_sample])?.map(|times| kernel_times(program, &times, profile_batch));
    let (memory, dispatches) = (session.memory(), session.dispatch_count(profile_batch));
    let runs = times.len();
    let r = BatchResult { batch, max_batch, stats: Stats::of(times), runs, session_ms, first_run_ms, profile, memory, dispatches };
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

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn faces_per_s(r: &BatchResult) -> f64 {
    r.batch as f64 * 1e3 / r.stats.median
}

fn cold_start_ms(r: &BatchResult, compile_ms: f64) -> f64 {
    compile_ms + r.session_ms + r.first_run_ms
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
}
