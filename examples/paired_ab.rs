//! A paired A/B of one session option on a machine whose speed drifts: two sessions of the same
//! model in one process, A with the option off and B with it on (as by default), run one after
//! the other, in alternating order, pair after pair. Each pair's two runs are tens of
//! milliseconds apart, so a drift of the machine's speed over seconds or minutes (a virtual
//! machine's vCPUs, a laptop's clock) slows both alike; the geometric mean of the pairs' ratios
//! measures the option. Alternating whole benchmark runs, seconds apart, measured the same
//! changes with rounds from 0.66 to 1.35 on the 2-core machine of the README's figures.
//!
//! ```sh
//! cargo run --release --example paired_ab -- [OPTION] [MODEL] [BATCH] [PAIRS]
//! ```
//! OPTION is `shared-tiles` (default), `warm-cores`, `subgroups`, `chains` or `wide-loads` (or one of the two
//! below); MODEL an .onnx or .mfn path
//! or `synthetic[:VARIANT]` (default: the pretrained model in ../shared where present, else the
//! generated MobileFaceNet); BATCH defaults to 1, PAIRS to 300. The two sessions' outputs must be
//! bit-identical: the options change speed, never results.
//!
//! OPTION `patch=FILE` measures a change of the kernels without a second build: B runs the
//! program with FILE's replacements applied to every kernel's WGSL (both variants), A the program
//! as compiled. FILE holds `FROM`, a line `-----`, `TO`, and further replacements after a line
//! `=====`; the largest difference between A's and B's outputs is reported.
//!
//! OPTION `program=FILE.mfn` measures a change of the compiler: B runs the packed program FILE
//! (`mfn pack` of another build, for the same model), A the model as this build compiles it.

use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use mfn_runtime::{Session, SessionOptions};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let option = args.next().unwrap_or_else(|| "shared-tiles".into());
    let model = match args.next() {
        Some(spec) => mfn::program_from_bytes(&mfn::load_model(&spec)?, &spec)?.program,
        None => {
            let (bytes, name) = mfn::default_model();
            println!("model: {name}");
            mfn::program_from_bytes(&bytes, &name)?.program
        }
    };
    let batch: usize = args.next().map(|b| b.parse()).transpose().context("BATCH must be a number")?.unwrap_or(1);
    let pairs: usize = args.next().map(|p| p.parse()).transpose().context("PAIRS must be a number")?.unwrap_or(300);
    ensure!(batch > 0 && pairs > 0, "BATCH and PAIRS must be at least 1");

    let on = SessionOptions { max_batch: batch, ..Default::default() };
    // B another program: the model patched, or a packed program.
    let other = if let Some(file) = option.strip_prefix("patch=") {
        Some(patched(&model, file)?)
    } else if let Some(file) = option.strip_prefix("program=") {
        let other = mfn_compiler::Program::from_mfn(&std::fs::read(file).with_context(|| format!("program file {file}"))?).with_context(|| format!("program file {file}"))?;
        ensure!(other.input.shape == model.input.shape, "{file} takes input {:?}, the model {:?}", other.input.shape, model.input.shape);
        println!("B: the program of {file}");
        Some(other)
    } else {
        None
    };
    if let Some(other) = other {
        let (a, b) = (Session::new(&model, &on)?, Session::new(&other, &on)?);
        a.wait_for_chains();
        b.wait_for_chains();
        return pairs_of(&a, &b, &model, batch, pairs, false);
    }
    let off = match option.as_str() {
        "shared-tiles" => SessionOptions { tile_sharers: Some(0), ..on.clone() },
        "warm-cores" => SessionOptions { warm_cores: false, ..on.clone() },
        "subgroups" => SessionOptions { subgroups: false, ..on.clone() },
        "chains" => SessionOptions { chains: false, ..on.clone() },
        "wide-loads" => SessionOptions { wide_loads: false, ..on.clone() },
        other => bail!("unknown option '{other}' (shared-tiles, warm-cores, subgroups, chains, wide-loads, patch=FILE, program=FILE.mfn)"),
    };
    let a = Session::new(&model, &off)?;
    let b = Session::new(&model, &on)?;
    // The steady state: with the chains' pipelines, which a session builds after its first run.
    a.wait_for_chains();
    b.wait_for_chains();
    println!(
        "A: {option} off; B: on (tile sharers {}, warm cores {}, subgroups {}, wide loads {}, {} dispatches at batch {batch}, A {})",
        b.tile_sharers(),
        b.warm_cores(),
        b.subgroups(),
        b.wide_loads(),
        b.dispatch_count(batch),
        a.dispatch_count(batch)
    );
    pairs_of(&a, &b, &model, batch, pairs, true)
}

/// `model` with the replacements of `file` (see the module's documentation) in its kernels.
fn patched(model: &mfn_compiler::Program, file: &str) -> Result<mfn_compiler::Program> {
    let text = std::fs::read_to_string(file).with_context(|| format!("patch file {file}"))?;
    let mut program = model.clone();
    let mut replaced = 0;
    for chunk in text.split("\n=====\n") {
        let (from, to) = chunk.split_once("\n-----\n").with_context(|| format!("{file}: a replacement without a line -----"))?;
        let to = to.trim_end_matches('\n');
        for k in &mut program.kernels {
            for wgsl in std::iter::once(&mut k.wgsl).chain(k.subgroup_wgsl.as_mut()) {
                replaced += wgsl.matches(from).count();
                *wgsl = wgsl.replace(from, to);
            }
        }
    }
    ensure!(replaced > 0, "{file}: no kernel holds any of its texts");
    println!("B: {file}, {replaced} places replaced");
    Ok(program)
}

/// Runs `a` and `b` in alternating pairs and prints the medians and the ratio B/A; `identical`:
/// their outputs must be bit-identical, else the largest difference is printed.
fn pairs_of(a: &Session, b: &Session, model: &mfn_compiler::Program, batch: usize, pairs: usize, identical: bool) -> Result<()> {
    println!("adapter: {}", b.adapter());
    let elements: usize = model.input.shape.iter().product::<usize>() * batch;
    let input: Vec<f32> = (0..elements).map(|i| (i * 7919 % 256) as f32).collect();
    let (ya, yb) = (a.run(&input)?, b.run(&input)?);
    if identical {
        ensure!(ya == yb, "the two sessions' outputs differ");
    } else {
        println!("largest difference between A's and B's outputs: {:e}", ya.iter().zip(&yb).map(|(p, q)| (p - q).abs()).fold(0.0f32, f32::max));
    }
    for _ in 0..3 {
        a.run(&input)?;
        b.run(&input)?;
    }
    let time = |s: &Session| -> Result<f64> {
        let start = Instant::now();
        s.run(&input)?;
        Ok(start.elapsed().as_secs_f64() * 1e3)
    };
    let (mut ta, mut tb, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..pairs {
        let (x, y) = if i % 2 == 0 {
            (time(a)?, time(b)?)
        } else {
            let y = time(b)?;
            (time(a)?, y)
        };
        ta.push(x);
        tb.push(y);
        ratios.push(y / x);
    }
    let geomean = (ratios.iter().map(|r| r.ln()).sum::<f64>() / pairs as f64).exp();
    if a.chain_retries() + b.chain_retries() > 0 {
        println!("runs again without chains (a chain's link gave up waiting): A {}, B {}", a.chain_retries(), b.chain_retries());
    }
    println!(
        "batch {batch}, {pairs} pairs: A median {:.2} ms, B median {:.2} ms; B/A geometric mean {geomean:.3}, median {:.3}",
        median(&mut ta),
        median(&mut tb),
        median(&mut ratios)
    );
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
