//! The commands of the `mfn` tool.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use mfn_compiler::emit::{emit, Emitted, Language};
use mfn_compiler::{CompileOptions, Program};
use mfn_runtime::{AdapterOptions, Session, SessionOptions};

use mfn::face::cosine;

use crate::GpuArgs;

pub(crate) fn session_options(gpu: &GpuArgs, max_batch: usize) -> SessionOptions {
    // The library's defaults, environment included ($MFN_BACKEND, $MFN_ADAPTER, $MFN_WARM_CORES,
    // $MFN_TILE_SHARERS, $MFN_CHAINS, $MFN_WIDE_LOADS); the command line overrides them.
    let defaults = SessionOptions::default();
    let env = defaults.adapter;
    SessionOptions {
        adapter: AdapterOptions { backend: gpu.backend.clone().or(env.backend), name: gpu.adapter.clone().or(env.name) },
        max_batch,
        pipeline_cache: if gpu.no_pipeline_cache { None } else { gpu.pipeline_cache.clone().or_else(default_pipeline_cache) },
        memory_budget: None,
        subgroups: !gpu.no_subgroups,
        warm_cores: !gpu.no_warm_cores && defaults.warm_cores,
        loop_bounding: gpu.loop_bounding,
        tile_sharers: if gpu.no_shared_tiles { Some(0) } else { defaults.tile_sharers },
        chains: !gpu.no_chains && defaults.chains,
        chain_wait: defaults.chain_wait,
        wide_loads: !gpu.no_wide_loads && defaults.wide_loads,
    }
}

/// Compile options: the input shape (`3,640,640`) models with symbolic sizes need, and the
/// storage precision.
pub(crate) fn compile_options(input_shape: Option<&str>, precision: mfn_compiler::Precision) -> Result<CompileOptions> {
    let input_shape = match input_shape {
        None => None,
        Some(text) => Some(
            text.split(',')
                .map(|d| d.trim().parse::<usize>().ok().filter(|&d| d > 0))
                .collect::<Option<Vec<_>>>()
                .with_context(|| format!("--input-shape {text:?}: expected positive sizes separated by commas, without the batch (e.g. 3,640,640)"))?,
        ),
    };
    Ok(CompileOptions { input_shape, precision, ..CompileOptions::default() })
}

/// `$MFN_PIPELINE_CACHE`, else `$XDG_CACHE_HOME/mfn`, else `~/.cache/mfn`.
fn default_pipeline_cache() -> Option<PathBuf> {
    let var = |k| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    var("MFN_PIPELINE_CACHE").or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("mfn"))).or_else(|| var("HOME").map(|h| h.join(".cache/mfn")))
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
    let outputs: Vec<String> = program.outputs.iter().map(|o| format!("{} [N,{}]", o.name, dims(&o.shape))).collect();
    let storage = if program.precision == mfn_compiler::Precision::F16 { "  (f16 storage)" } else { "" };
    println!("input: {} [N,{}]  output{}: {}{storage}", program.input.name, dims(&program.input.shape), if outputs.len() > 1 { "s" } else { "" }, outputs.join(", "));
}

pub(crate) fn dims(shape: &[usize]) -> String {
    shape.iter().map(usize::to_string).collect::<Vec<_>>().join(",")
}

pub fn info(spec: &str, input_shape: Option<&str>) -> Result<()> {
    let model = mfn::load_program_with(spec, &compile_options(input_shape, Default::default())?)?;
    match &model.graph {
        Some(graph) => println!("# optimised graph of {spec}\n{graph}"),
        None => println!("# {spec}: a compiled .mfn file (format version {}; it holds no graph)", mfn_compiler::format::VERSION),
    }
    print_figures(&model.program);
    Ok(())
}

/// `mfn pack`: compiles a model once and writes it as one `.mfn` file.
pub fn pack(spec: &str, input_shape: Option<&str>, precision: mfn_compiler::Precision, out: &Path) -> Result<()> {
    let model = mfn::load_program_with(spec, &compile_options(input_shape, precision)?)?;
    let bytes = model.program.to_mfn();
    std::fs::write(out, &bytes).with_context(|| format!("writing {}", out.display()))?;
    println!(
        "wrote {} ({:.2} MiB: {} kernels, {} dispatches, {} weight buffers; .mfn format version {})",
        out.display(),
        bytes.len() as f64 / 1048576.0,
        model.program.kernels.len(),
        model.program.steps.len(),
        model.program.weights.len(),
        mfn_compiler::format::VERSION
    );
    Ok(())
}

/// The languages of `--emit`, comma-separated.
pub fn parse_languages(list: &str) -> Result<Vec<Language>> {
    list.split(',').map(str::trim).map(|name| Language::parse(name).with_context(|| format!("--emit {name:?}: expected wgsl, spirv, msl, hlsl or glsl"))).collect()
}

pub fn compile(spec: &str, input_shape: Option<&str>, precision: mfn_compiler::Precision, out: &Path, languages: &[Language]) -> Result<()> {
    let model = mfn::load_program_with(spec, &compile_options(input_shape, precision)?)?;
    let program = &model.program;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    // Each kernel, and as NAME.subgroup.EXT the subgroup variant of those that have one.
    let kernels =
        program.kernels.iter().enumerate().flat_map(|(k, kernel)| {
            std::iter::once((k, kernel.name.clone(), &kernel.wgsl)).chain(kernel.subgroup_wgsl.as_ref().map(|v| (k, format!("{}.subgroup", kernel.name), v)))
        });
    let kernels: Vec<_> = kernels.collect();
    for &lang in languages {
        for (k, file, wgsl) in &kernels {
            let path = out.join(format!("{file}.{}", lang.extension()));
            let bytes = match emit(&program.kernels[*k].name, wgsl, lang)? {
                // The WGSL holds its header; naga's other back ends drop comments: put it back.
                Emitted::Text(text) if lang == Language::Wgsl => text.into_bytes(),
                Emitted::Text(text) => format!("{}{text}", program.kernel_header(*k)).into_bytes(),
                Emitted::Binary(words) => words,
            };
            std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        }
    }
    // What CPU adapters with 64-bit integers run (mfn_compiler::wide), in WGSL: only there is it
    // ever compiled, so no other language.
    let mut wide = 0;
    if languages.contains(&Language::Wgsl) {
        for (_, file, wgsl) in &kernels {
            if let Some(text) = mfn_compiler::wide::wide_loads(wgsl, program.precision) {
                let path = out.join(format!("{file}.wide.wgsl"));
                std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
                wide += 1;
            }
        }
    }
    std::fs::write(out.join("plan.txt"), program.plan_text())?;
    let names: Vec<&str> = languages.iter().map(|l| l.name()).collect();
    let mut variants = match kernels.len() - program.kernels.len() {
        0 => String::new(),
        n => format!(" and {n} subgroup variants (NAME.subgroup)"),
    };
    if wide > 0 {
        variants.push_str(&format!(", {wide} of them also in their wide form (NAME.subgroup.wide.wgsl: activations as 64-bit integers, for CPU adapters)"));
    }
    match &model.graph {
        Some(graph) => {
            std::fs::write(out.join("graph.txt"), graph.to_string())?;
            println!("wrote {} kernels{variants} ({}), plan.txt and graph.txt to {}", program.kernels.len(), names.join(", "), out.display());
        }
        None => {
            println!("wrote {} kernels{variants} ({}) and plan.txt to {} (no graph.txt: {spec} is a compiled .mfn file)", program.kernels.len(), names.join(", "), out.display())
        }
    }
    print_figures(program);
    Ok(())
}

/// Runs a model on an .npy batch. A model with several outputs writes one file each, named
/// `OUT_STEM.OUTPUT_NAME.npy` beside `out`.
pub fn run(spec: &str, input_shape: Option<&str>, input: &Path, out: &Path, gpu: &GpuArgs) -> Result<()> {
    let program = mfn::load_program_with(spec, &compile_options(input_shape, gpu.precision)?)?.program;
    let (shape, data) = mfn_models::read_npy_file(input).with_context(|| format!("reading {}", input.display()))?;
    if shape.len() != program.input.shape.len() + 1 || shape[1..] != program.input.shape[..] {
        bail!("input {} has shape {shape:?}; the model expects [N,{}]", input.display(), dims(&program.input.shape));
    }
    let batch = shape[0];
    let session = Session::new(&program, &session_options(gpu, batch.max(1)))?;
    eprintln!("adapter: {}", session.adapter());
    let start = Instant::now();
    let ys = session.run_all(&data)?;
    eprintln!("ran batch {batch} in {:.1} ms", start.elapsed().as_secs_f64() * 1e3);
    for (port, y) in program.outputs.iter().zip(&ys) {
        let path = if program.outputs.len() == 1 {
            out.to_path_buf()
        } else {
            let stem = out.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
            out.with_file_name(format!("{stem}.{}.npy", port.name.replace(['/', '\\'], "_")))
        };
        let mut out_shape = vec![batch];
        out_shape.extend(&port.shape);
        mfn_models::write_npy_file(&path, &out_shape, y).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {} [{}]", path.display(), dims(&out_shape));
    }
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
    let model = mfn::program_from_bytes_with(&bytes, &what, &compile_options(None, gpu.precision)?)?;
    let program = &model.program;
    println!("{} in {:.0} ms", if model.graph.is_some() { "compiled" } else { "loaded" }, t.elapsed().as_secs_f64() * 1e3);
    print_figures(program);
    let t = Instant::now();
    let session = Session::new(program, &session_options(gpu, batch))?;
    println!("adapter: {}  (session ready in {:.0} ms)", session.adapter(), t.elapsed().as_secs_f64() * 1e3);
    let per_sample: usize = program.input.shape.iter().product();
    let mut rng = mfn_models::rng::Rng::new(7);
    let input = rng.uniform_vec(batch * per_sample, 0.0, 255.0);
    let gpu_out = session.run(&input)?;
    // Time the steady state: with the chains a CPU adapter's session builds after a few runs.
    session.wait_for_chains();
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        session.run(&input)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    println!("GPU: batch {batch} in {:.1} ms (median of 5), {:.1} samples/s", times[2], batch as f64 * 1e3 / times[2]);
    match &model.graph {
        Some(graph) => {
            let cpu_out = mfn_compiler::eval::run(graph, &input)?;
            let per_out = program.output().elements();
            let worst = gpu_out.chunks(per_out).zip(cpu_out.chunks(per_out)).map(|(g, c)| cosine(g, c)).fold(1.0, f64::min);
            println!("parity with the CPU evaluator: lowest cosine over the batch {worst:.7}");
        }
        None => println!("parity with the CPU evaluator: not checked (a compiled .mfn file holds no graph to evaluate)"),
    }
    if profile {
        crate::bench::print_session_profile(program, &session, &input[..session.max_batch().min(batch) * per_sample])?;
    }
    Ok(())
}
