//! `mfn`: compile, inspect and run MobileFaceNet ONNX models on any GPU through wgpu.

mod commands;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "mfn", version, about = "MobileFaceNet compiler and GPU runtime (WGSL kernels on wgpu)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Adapter selection, shared by the commands that run on a GPU.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct GpuArgs {
    /// Backend: vulkan, metal, dx12 or gl (default: $MFN_BACKEND, else the best found).
    #[arg(long)]
    backend: Option<String>,
    /// Part of the adapter's name, e.g. "llvmpipe" (default: $MFN_ADAPTER, else the best found).
    #[arg(long)]
    adapter: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Compile a model and show it run: the main job. Uses the pretrained model from ../shared
    /// when present, else the project's own generated MobileFaceNet.
    Demo {
        /// Model: an .onnx path or synthetic[:112x112|112x96|96x96|m|s].
        #[arg(long)]
        model: Option<String>,
        /// Samples in the batch.
        #[arg(long, default_value_t = 4)]
        batch: usize,
        /// Also time every kernel on the GPU (where the adapter has timestamp queries).
        #[arg(long)]
        profile: bool,
        #[command(flatten)]
        gpu: GpuArgs,
    },
    /// Compile a model to WGSL kernels (one .wgsl file each), plan.txt and graph.txt.
    Compile {
        /// Model: an .onnx path or synthetic[:VARIANT].
        model: String,
        /// Output folder.
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Print the optimised graph and its figures: parameters, multiply-adds, kernels, memory.
    Info {
        /// Model: an .onnx path or synthetic[:VARIANT].
        model: String,
    },
    /// Run a model on the GPU: input and output are .npy files, batch first.
    Run {
        /// Model: an .onnx path or synthetic[:VARIANT].
        model: String,
        #[arg(long)]
        input: std::path::PathBuf,
        #[arg(long)]
        out: std::path::PathBuf,
        #[command(flatten)]
        gpu: GpuArgs,
    },
    /// Write the project's generated MobileFaceNet (seeded random weights) as ONNX.
    Synth {
        /// 112x112, 112x96, 96x96, m or s.
        #[arg(long, default_value = "112x112")]
        variant: String,
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// List the GPU adapters wgpu finds.
    Adapters,
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo { model, batch, profile, gpu } => commands::demo(model.as_deref(), batch, profile, &gpu),
        Command::Compile { model, out } => commands::compile(&model, &out),
        Command::Info { model } => commands::info(&model),
        Command::Run { model, input, out, gpu } => commands::run(&model, &input, &out, &gpu),
        Command::Synth { variant, out } => commands::synth(&variant, &out),
        Command::Adapters => commands::adapters(),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
