//! `mfn inspect`: the kernel table of a model, measured GPU time per kernel with `--profile`, and
//! the optimised graph as Graphviz with `--dot`.

use std::path::Path;

use anyhow::{Context, Result};
use mfn_runtime::Session;

use crate::commands::session_options;
use crate::GpuArgs;

pub struct InspectArgs<'a> {
    pub model: &'a str,
    pub profile: bool,
    /// Samples in the profiled batch.
    pub batch: usize,
    pub dot: Option<&'a Path>,
    pub gpu: &'a GpuArgs,
}

pub fn inspect(args: &InspectArgs) -> Result<()> {
    let model = mfn::load_program(args.model)?;
    let program = &model.program;
    println!("{}: {} kernels, {} dispatches, {:.1} M multiply-adds a sample", model.name, program.kernels.len(), program.steps.len(), program.stats.macs as f64 / 1e6);
    println!("shapes a sample; workgroups x*y per sample (z = batch) and their size; bytes at batch 1, each input and weight read once\n");
    print!("{}", program.kernel_table());
    if let Some(path) = args.dot {
        let graph = model.graph("--dot")?;
        std::fs::write(path, mfn_compiler::dot::to_dot(graph, program)).with_context(|| format!("writing {}", path.display()))?;
        println!("\nwrote the optimised graph to {} (render: dot -Tsvg {} -o graph.svg)", path.display(), path.display());
    }
    if args.profile {
        let batch = args.batch.max(1);
        let session = Session::new(program, &session_options(args.gpu, batch))?;
        println!("\nadapter: {}", session.adapter());
        let per_sample = program.input.elements();
        let input = mfn_models::rng::Rng::new(7).uniform_vec(batch.min(session.max_batch()) * per_sample, 0.0, 255.0);
        session.run(&input)?; // warm-up: the first run pays for lazy pipeline work
        crate::bench::print_session_profile(program, &session, &input)?;
    }
    Ok(())
}
