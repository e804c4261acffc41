//! What a dispatch costs on an adapter apart from its work: a chain of tiny 1x1 convolutions (8
//! channels on a 4x4 map, one workgroup and 1,024 multiply-adds each), run at batch 1 with 1 and
//! with DISPATCHES layers; the difference of the two medians over DISPATCHES - 1 is the cost of
//! one dispatch in a run (recording, the driver's per-dispatch work, the barrier between
//! dependent dispatches, waking and joining the driver's threads on a CPU adapter). A model's
//! batch-1 latency has this once per dispatch: `mfn info` says how many it has.
//!
//! ```sh
//! cargo run --release --example dispatch_cost -- [DISPATCHES] [RUNS]
//! LP_NUM_THREADS=1 cargo run --release --example dispatch_cost   # lavapipe with one thread
//! ```
//! DISPATCHES defaults to 100, RUNS (per chain, after 5 warm-up runs) to 50.

use std::time::Instant;

use anyhow::{ensure, Context, Result};
use mfn_compiler::{CompileOptions, Program};
use mfn_models::builder::{Attr, Dim, GraphBuilder};
use mfn_models::rng::Rng;
use mfn_runtime::{Session, SessionOptions};

/// Channels and side of the map every layer of the chain works on.
const CHANNELS: usize = 8;
const SIDE: usize = 4;

/// A chain of `layers` 1x1 convolutions, CHANNELS to CHANNELS on a SIDE x SIDE map.
fn chain(layers: usize) -> Result<Program> {
    let mut g = GraphBuilder::new(13);
    let mut rng = Rng::new(1);
    let dims = [Dim::param("N"), Dim::Fixed(CHANNELS as i64), Dim::Fixed(SIDE as i64), Dim::Fixed(SIDE as i64)];
    g.input("x0", &dims);
    for i in 0..layers {
        let c = CHANNELS as i64;
        g.initializer(&format!("w{i}"), &[c, c, 1, 1], rng.normal_vec(CHANNELS * CHANNELS, 0.3));
        let (x, w, y) = (format!("x{i}"), format!("w{i}"), format!("x{}", i + 1));
        g.node("Conv", &[&x, &w], &[&y], vec![Attr::Ints("kernel_shape", vec![1, 1])]);
    }
    g.output(&format!("x{layers}"), &dims);
    let program = mfn_compiler::compile(&g.to_bytes(), &CompileOptions::default())?;
    ensure!(program.steps.len() == layers, "a chain of {layers} layers compiled to {} dispatches", program.steps.len());
    Ok(program)
}

/// Median wall time of a batch-1 run, in milliseconds.
fn median_run(session: &Session, runs: usize) -> Result<f64> {
    let input = vec![0.5; CHANNELS * SIDE * SIDE];
    for _ in 0..5 {
        session.run(&input)?;
    }
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        session.run(&input)?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[runs / 2])
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let layers: usize = args.next().map(|n| n.parse()).transpose().context("DISPATCHES must be a number")?.unwrap_or(100);
    let runs: usize = args.next().map(|n| n.parse()).transpose().context("RUNS must be a number")?.unwrap_or(50);
    ensure!(layers >= 2 && runs >= 1, "DISPATCHES must be at least 2 and RUNS at least 1");

    let options = SessionOptions::default();
    let one = Session::new(&chain(1)?, &options)?;
    let many = Session::new(&chain(layers)?, &options)?;
    println!("adapter: {}", many.adapter());
    println!("tile sharers {}, warm cores {}, subgroups {}", many.tile_sharers(), many.warm_cores(), many.subgroups());
    let (t1, tn) = (median_run(&one, runs)?, median_run(&many, runs)?);
    let per = (tn - t1) / (layers - 1) as f64;
    println!("batch 1, medians of {runs} runs: 1 dispatch {t1:.3} ms, {layers} dispatches {tn:.3} ms");
    println!("a dispatch: {:.1} us (50 dispatches, as the pretrained MobileFaceNet has: {:.2} ms)", per * 1e3, per * 50.0);
    Ok(())
}
