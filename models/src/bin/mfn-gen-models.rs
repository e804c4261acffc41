//! Writes every synthetic MobileFaceNet variant and its sample input:
//! `mfn-gen-models --out DIR [--seed S] [--batch B]` produces `DIR/<name>.onnx` and
//! `DIR/<name>.input.npy` (input seeded with the same seed). Used by `models/make_reference.sh`.

use mfn_models::{mobilefacenet, sample_input, write_npy_file, Variant};
use onnx_protobuf::Message;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: mfn-gen-models --out DIR [--seed S (default 2024)] [--batch B (default 2)]";

struct Args {
    out: PathBuf,
    seed: u64,
    batch: usize,
}

fn parse_args() -> Result<Args, String> {
    let (mut out, mut seed, mut batch) = (None, 2024, 2);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.to_string());
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let bad = |_| format!("{flag}: not a number: {value}");
        match flag.as_str() {
            "--out" => out = Some(PathBuf::from(&value)),
            "--seed" => seed = value.parse().map_err(bad)?,
            "--batch" => batch = value.parse().map_err(bad)?,
            _ => return Err(format!("unknown argument {flag}\n{USAGE}")),
        }
    }
    let out = out.ok_or_else(|| format!("--out is required\n{USAGE}"))?;
    Ok(Args { out, seed, batch })
}

fn run(args: &Args) -> std::io::Result<()> {
    std::fs::create_dir_all(&args.out)?;
    for v in Variant::all() {
        let model = mobilefacenet(v, args.seed).write_to_bytes().map_err(std::io::Error::other)?;
        let onnx = args.out.join(format!("{}.onnx", v.name()));
        std::fs::write(&onnx, model)?;
        let (h, w) = v.input_hw();
        let input = sample_input(v, args.batch, args.seed);
        write_npy_file(args.out.join(format!("{}.input.npy", v.name())), &[args.batch, 3, h, w], &input)?;
        println!("wrote {} (seed {}, batch {})", onnx.display(), args.seed, args.batch);
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mfn-gen-models: {e}");
            ExitCode::FAILURE
        }
    }
}
