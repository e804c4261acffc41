//! The commands of the `mfn` tool.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use mfn_compiler::{CompileOptions, Program};
use mfn_runtime::{AdapterOptions, Session, SessionOptions};

use mfn::face::cosine;

use crate::GpuArgs;

pub(crate) fn session_options(gpu: &GpuArgs, max_batch: usize) -> SessionOptions {
    let env = AdapterOptions::from_env();
    SessionOptions {
        adapter: AdapterOptions { backend: gpu.backend.clone().or(env.backend), name: gpu.adapter.clone().or(env.name) },
        max_batch,
        memory_budget: None,
    }
}

fn compile_model(spec: &str) -> Result<(Vec<u8>, Program)> {
    let bytes = mfn::load_model(spec)?;
    let program = mfn_compiler::compile(&bytes, &CompileOptions::default()).with_context(|| format!("compiling {spec}"))?;
    Ok((bytes, program))
}

/// `0.99 M (993,346)`.
fn millions(n: u64) -> String {
    let digits = n.to_string();
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{:.2} M ({grouped})", n as f64 / 1e6)
}

fn print_figures(program: &Program) {
    let s = &program.stats;
    println!("parameters: {}", millions(s.parameters));
    println!("multiply-adds: {:.1} M", s.macs as f64 / 1e6);
    println!("kernels: {} unique, {} dispatches", program.kernels.len(), program.steps.len());
    println!(
        "peak activation memory: {:.2} MiB a sample ({} buffers; {:.2} MiB without reuse)",
        s.peak_activation_bytes as f64 / 1048576.0,
        program.buffers.len(),
        s.total_activation_bytes as f64 / 1048576.0
    );
    println!("input: {} [N,{}]  output: {} [N,{}]", program.input.name, dims(&program.input.shape), program.output.name, dims(&program.output.shape));
}

fn dims(shape: &[usize]) -> String {
    shape.iter().map(usize::to_string).collect::<Vec<_>>().join(",")
}

pub fn info(spec: &str) -> Result<()> {
    let bytes = mfn::load_model(spec)?;
    let graph = mfn_compiler::optimise(&bytes, &CompileOptions::default())?;
    let program = mfn_compiler::codegen::generate(&graph)?;
    println!("# optimised graph of {spec}\n{graph}");
    print_figures(&program);
    Ok(())
}

pub fn compile(spec: &str, out: &Path) -> Result<()> {
    let bytes = mfn::load_model(spec)?;
    let graph = mfn_compiler::optimise(&bytes, &CompileOptions::default())?;
    let program = mfn_compiler::codegen::generate(&graph)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for k in &program.kernels {
        let path = out.join(format!("{}.wgsl", k.name));
        std::fs::write(&path, &k.wgsl).with_context(|| format!("writing {}", path.display()))?;
    }
    std::fs::write(out.join("plan.txt"), program.plan_text())?;
    std::fs::write(out.join("graph.txt"), graph.to_string())?;
    println!("wrote {} kernels, plan.txt and graph.txt to {}", program.kernels.len(), out.display());
    print_figures(&program);
    Ok(())
}

pub fn run(spec: &str, input: &Path, out: &Path, gpu: &GpuArgs) -> Result<()> {
    let (_, program) = compile_model(spec)?;
    let (shape, data) = mfn_models::read_npy_file(input).with_context(|| format!("reading {}", input.display()))?;
    if shape.len() != program.input.shape.len() + 1 || shape[1..] != program.input.shape[..] {
        bail!("input {} has shape {shape:?}; the model expects [N,{}]", input.display(), dims(&program.input.shape));
    }
    let batch = shape[0];
    let session = Session::new(&program, &session_options(gpu, batch.max(1)))?;
    eprintln!("adapter: {}", session.adapter());
    let start = Instant::now();
    let y = session.run(&data)?;
    eprintln!("ran batch {batch} in {:.1} ms", start.elapsed().as_secs_f64() * 1e3);
    let mut out_shape = vec![batch];
    out_shape.extend(&program.output.shape);
    mfn_models::write_npy_file(out, &out_shape, &y).with_context(|| format!("writing {}", out.display()))?;
    println!("wrote {} [{}]", out.display(), dims(&out_shape));
    Ok(())
}

pub fn synth(variant: &str, out: &Path) -> Result<()> {
    let bytes = mfn::synthetic_model(mfn::parse_variant(variant)?);
    std::fs::write(out, &bytes).with_context(|| format!("writing {}", out.display()))?;
    println!("wrote {} ({} bytes)", out.display(), bytes.len());
    Ok(())
}

pub fn adapters() -> Result<()> {
    let list = mfn_runtime::list_adapters();
    if list.is_empty() {
        bail!("wgpu finds no adapter; on Linux without a GPU install Mesa's lavapipe (apt-get install mesa-vulkan-drivers)");
    }
    for info in list {
        println!("{}", mfn_runtime::describe(&info));
    }
    Ok(())
}

pub fn demo(model: Option<&str>, batch: usize, profile: bool, gpu: &GpuArgs) -> Result<()> {
    let batch = batch.max(1);
    let (bytes, what) = match model {
        Some(spec) => (mfn::load_model(spec)?, spec.to_string()),
        None => mfn::default_model(),
    };
    println!("model: {what}");
    let t = Instant::now();
    let graph = mfn_compiler::optimise(&bytes, &CompileOptions::default())?;
    let program = mfn_compiler::codegen::generate(&graph)?;
    println!("compiled in {:.0} ms", t.elapsed().as_secs_f64() * 1e3);
    print_figures(&program);
    let t = Instant::now();
    let session = Session::new(&program, &session_options(gpu, batch))?;
    println!("adapter: {}  (session ready in {:.0} ms)", session.adapter(), t.elapsed().as_secs_f64() * 1e3);
    let per_sample: usize = program.input.shape.iter().product();
    let mut rng = mfn_models::rng::Rng::new(7);
    let input = rng.uniform_vec(batch * per_sample, 0.0, 255.0);
    let gpu_out = session.run(&input)?;
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        session.run(&input)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    println!("GPU: batch {batch} in {:.1} ms (median of 5), {:.1} samples/s", times[2], batch as f64 * 1e3 / times[2]);
    let cpu_out = mfn_compiler::eval::run(&graph, &input)?;
    let per_out: usize = program.output.shape.iter().product();
    let worst = gpu_out.chunks(per_out).zip(cpu_out.chunks(per_out)).map(|(g, c)| cosine(g, c)).fold(1.0, f64::min);
    println!("parity with the CPU evaluator: lowest cosine over the batch {worst:.7}");
    if profile {
        crate::bench::print_session_profile(&program, &session, &input[..session.max_batch().min(batch) * per_sample])?;
    }
    Ok(())
}
