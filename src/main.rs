//! `mfn`: compile, inspect and run MobileFaceNet ONNX models on any GPU through wgpu.

mod bench;
mod commands;
mod face_cli;
mod inspect;

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
    /// How activations and weights are stored on the GPU: f32, or f16 (opt-in; needs an adapter
    /// with SHADER_F16; about 5e-3 relative error against f32). Face commands: the face model's
    /// storage (the detector stays f32).
    #[arg(long, default_value = "f32")]
    precision: mfn_compiler::Precision,
    /// Folder of the pipeline cache (Vulkan): compiled pipelines kept between runs (default:
    /// $MFN_PIPELINE_CACHE, else $XDG_CACHE_HOME/mfn, else ~/.cache/mfn).
    #[arg(long, value_name = "DIR")]
    pipeline_cache: Option<std::path::PathBuf>,
    /// Compile every pipeline afresh; read and write no pipeline cache.
    #[arg(long, conflicts_with = "pipeline_cache")]
    no_pipeline_cache: bool,
    /// Run the plain kernels even where the adapter has subgroups (by default kernels with a
    /// subgroup variant use it on adapters with subgroups of at least 8 invocations).
    #[arg(long)]
    no_subgroups: bool,
    /// On a CPU adapter (lavapipe), let the CPUs halt between dispatches instead of keeping them
    /// busy with idle-priority threads while a run is in flight (default: busy, unless
    /// $MFN_WARM_CORES is 0).
    #[arg(long)]
    no_warm_cores: bool,
    /// On a CPU adapter (lavapipe), let the driver's threads compute fixed shares of every
    /// dispatch instead of sharing the tiles of the GEMMs, convolutions and depthwise kernels, the
    /// fast cores taking what the slow ones have not reached (default: shared among as many threads
    /// as the driver runs, unless $MFN_TILE_SHARERS is 0).
    #[arg(long)]
    no_shared_tiles: bool,
    /// Where the tiles are shared, dispatch every kernel on its own instead of running the
    /// kernels of a bottleneck block as one chain in one dispatch (default: chains, for batches
    /// whose tiles fit the driver's loop budget, unless $MFN_CHAINS is 0).
    #[arg(long)]
    no_chains: bool,
    /// On a CPU adapter with 64-bit integers (lavapipe), read activations as vectors of floats
    /// instead of 64-bit integers bitcast back (default: 64-bit, where the kernels allow, unless
    /// $MFN_WIDE_LOADS is 0; same results).
    #[arg(long)]
    no_wide_loads: bool,
    /// Build the kernels with wgpu's loop bounding, for an .mfn file from a source you do not
    /// trust (the compiler's kernels do not need it; pipeline creation takes longer with it).
    #[arg(long)]
    loop_bounding: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Compile a model and show it run: the main job. Uses the pretrained model from ../shared
    /// when present, else the project's own generated MobileFaceNet.
    Demo {
        /// Model: an .onnx or .mfn path or synthetic[:112x112|112x96|96x96|m|s].
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
    /// Compile a model to kernels (one file each, in every --emit language), plan.txt and graph.txt.
    Compile {
        /// Model: an .onnx or .mfn path or synthetic[:VARIANT].
        model: String,
        /// Input shape without the batch, for models with symbolic sizes (e.g. 3,640,640).
        #[arg(long)]
        input_shape: Option<String>,
        /// Output folder.
        #[arg(long)]
        out: std::path::PathBuf,
        /// Languages, comma-separated: wgsl (.wgsl), spirv (.spv, binary), msl (.metal), hlsl
        /// (.hlsl), glsl (.comp), translated by naga's back ends.
        #[arg(long, default_value = "wgsl")]
        emit: String,
        /// How activations and weights are stored on the GPU: f32 or f16.
        #[arg(long, default_value = "f32")]
        precision: mfn_compiler::Precision,
    },
    /// Compile a model once into one self-contained .mfn file (kernels, plan, weights) that the
    /// runtime loads without the compiler.
    Pack {
        /// Model: an .onnx path or synthetic[:VARIANT].
        model: String,
        /// Input shape without the batch, for models with symbolic sizes (e.g. 3,640,640).
        #[arg(long)]
        input_shape: Option<String>,
        #[arg(long)]
        out: std::path::PathBuf,
        /// How activations and weights are stored on the GPU: f32 or f16.
        #[arg(long, default_value = "f32")]
        precision: mfn_compiler::Precision,
    },
    /// The kernel table: kernel, template, fused nodes, shapes, workgroups, multiply-adds, bytes.
    Inspect {
        /// Model: an .onnx or .mfn path or synthetic[:VARIANT].
        model: String,
        /// Also measure the GPU time of every kernel (where the adapter has timestamp queries).
        #[arg(long)]
        profile: bool,
        /// Samples in the profiled batch.
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Write the optimised graph as Graphviz, fused groups clustered (needs the ONNX model).
        #[arg(long)]
        dot: Option<std::path::PathBuf>,
        #[command(flatten)]
        gpu: GpuArgs,
    },
    /// Print the optimised graph and its figures: parameters, multiply-adds, kernels, memory.
    Info {
        /// Model: an .onnx or .mfn path or synthetic[:VARIANT].
        model: String,
        /// Input shape without the batch, for models with symbolic sizes (e.g. 3,640,640).
        #[arg(long)]
        input_shape: Option<String>,
    },
    /// Run a model on the GPU: input and output are .npy files, batch first (a model with several
    /// outputs writes OUT_STEM.NAME.npy for each).
    Run {
        /// Model: an .onnx or .mfn path or synthetic[:VARIANT].
        model: String,
        /// Input shape without the batch, for models with symbolic sizes (e.g. 3,640,640).
        #[arg(long)]
        input_shape: Option<String>,
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
    /// Benchmark: batch latency (median, spread) and faces/s per batch size, cold start, and the
    /// GPU time of every kernel (where the adapter has timestamp queries).
    Bench {
        /// Model: an .onnx or .mfn path or synthetic[:VARIANT] (default: as for demo).
        #[arg(long)]
        model: Option<String>,
        /// Batch sizes, comma-separated.
        #[arg(long, default_value = "1,16,64")]
        batch: String,
        /// Timed runs per batch size.
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// Untimed warm-up runs per batch size (after the first run).
        #[arg(long, default_value_t = 2)]
        warmup: usize,
        /// Keep timing runs past --runs until they have taken at least this many seconds (per
        /// batch size), so that a median covers the same stretch of time as a slower engine's.
        #[arg(long, default_value_t = 0.0, value_name = "SECONDS", allow_negative_numbers = true)]
        min_time: f64,
        /// One JSON object per batch size instead of the report.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        gpu: GpuArgs,
    },
    /// One L2-normalised embedding per face: aligned crops as they are, photos through face
    /// detection and alignment (all on the GPU).
    Embed {
        #[command(flatten)]
        model: face_cli::ModelArgs,
        #[command(flatten)]
        faces: face_cli::FaceArgs,
        /// Images (JPEG or PNG): aligned crops of the model's input size, or photos.
        #[arg(required = true)]
        images: Vec<std::path::PathBuf>,
        /// Write the embeddings as .npy [N, D].
        #[arg(long, conflicts_with = "json")]
        out: Option<std::path::PathBuf>,
        /// Print the embeddings as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        gpu: GpuArgs,
    },
    /// Compare the faces of two images (aligned crops or photos): their cosine, SAME or DIFFERENT.
    Verify {
        #[command(flatten)]
        model: face_cli::ModelArgs,
        #[command(flatten)]
        faces: face_cli::FaceArgs,
        a: std::path::PathBuf,
        b: std::path::PathBuf,
        /// SAME when the cosine is above it (default: the best threshold on LFW).
        #[arg(long)]
        threshold: Option<f64>,
        #[command(flatten)]
        gpu: GpuArgs,
    },
    /// LFW verification accuracy (best threshold, 10-fold) and throughput on a pairs file.
    EvalLfw {
        #[command(flatten)]
        model: face_cli::ModelArgs,
        /// img1,img2,same[,cos_onnxruntime_fp32]; images under images/ beside it
        /// (default: ../shared/faces/lfw/pairs.csv).
        #[arg(long)]
        pairs: Option<std::path::PathBuf>,
        /// Faces per GPU submission.
        #[arg(long, default_value_t = 32)]
        batch: usize,
        /// Re-detect the face of every crop and re-align it to the ArcFace template first.
        #[arg(long)]
        realign: bool,
        #[command(flatten)]
        detector: face_cli::DetectorArgs,
        #[command(flatten)]
        gpu: GpuArgs,
    },
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo { model, batch, profile, gpu } => commands::demo(model.as_deref(), batch, profile, &gpu),
        Command::Compile { model, input_shape, out, emit, precision } => {
            commands::parse_languages(&emit).and_then(|langs| commands::compile(&model, input_shape.as_deref(), precision, &out, &langs))
        }
        Command::Pack { model, input_shape, out, precision } => commands::pack(&model, input_shape.as_deref(), precision, &out),
        Command::Inspect { model, profile, batch, dot, gpu } => inspect::inspect(&inspect::InspectArgs { model: &model, profile, batch, dot: dot.as_deref(), gpu: &gpu }),
        Command::Info { model, input_shape } => commands::info(&model, input_shape.as_deref()),
        Command::Run { model, input_shape, input, out, gpu } => commands::run(&model, input_shape.as_deref(), &input, &out, &gpu),
        Command::Synth { variant, out } => commands::synth(&variant, &out),
        Command::Adapters => commands::adapters(),
        Command::Bench { model, batch, runs, warmup, min_time, json, gpu } => {
            bench::bench(&bench::BenchArgs { model: model.as_deref(), batches: &batch, runs, warmup, min_time, json, gpu: &gpu })
        }
        Command::Embed { model, faces, images, out, json, gpu } => face_cli::embed(&model, &faces, &images, out.as_deref(), json, &gpu),
        Command::Verify { model, faces, a, b, threshold, gpu } => face_cli::verify(&model, &faces, &a, &b, threshold, &gpu),
        Command::EvalLfw { model, pairs, batch, realign, detector, gpu } => face_cli::eval_lfw(&model, pairs.as_deref(), batch, realign.then_some(&detector), &gpu),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
