//! `mfn-run`: the runtime on its own. Loads a model compiled by `mfn pack` (an `.mfn` file) and
//! runs it, without the ONNX front end, the compiler's passes or naga: the smallest host of
//! `mfn-runtime`, and how its size is measured.
//!
//! ```text
//! mfn-run MODEL.mfn [--input X.npy] [--out Y.npy] [--batch N]
//! ```
//! Without `--input` it runs `--batch` (default 1) samples of a fixed test pattern.

use std::time::Instant;

use mfn_runtime::{Program, Session, SessionOptions};

type Error = Box<dyn std::error::Error>;

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let (mut model, mut input, mut out, mut batch) = (None, None, None, 1usize);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--input" => input = Some(value()?),
            "--out" => out = Some(value()?),
            "--batch" => batch = value()?.parse().map_err(|e| format!("--batch: {e}"))?,
            "-h" | "--help" => {
                println!("usage: mfn-run MODEL.mfn [--input X.npy] [--out Y.npy] [--batch N]");
                return Ok(());
            }
            _ if model.is_none() && !arg.starts_with('-') => model = Some(arg),
            _ => return Err(format!("unexpected argument '{arg}' (usage: mfn-run MODEL.mfn [--input X.npy] [--out Y.npy] [--batch N])").into()),
        }
    }
    let model = model.ok_or("usage: mfn-run MODEL.mfn [--input X.npy] [--out Y.npy] [--batch N]")?;
    let t = Instant::now();
    let bytes = std::fs::read(&model).map_err(|e| format!("cannot read {model}: {e}"))?;
    let program = Program::from_mfn(&bytes).map_err(|e| format!("{model}: {e} (mfn-run takes models compiled with `mfn pack`)"))?;
    let load_ms = ms(t);
    let per_sample = program.input.elements();
    let x = match &input {
        Some(path) => {
            let (shape, data) = read_npy(path)?;
            if shape.len() != program.input.shape.len() + 1 || shape[1..] != program.input.shape[..] {
                return Err(format!("{path} has shape {shape:?}; the model expects [N, {:?}]", program.input.shape).into());
            }
            data
        }
        None => (0..batch.max(1) * per_sample).map(|i| (i % 251) as f32).collect(),
    };
    let batch = x.len() / per_sample;
    let t = Instant::now();
    let session = Session::new(&program, &SessionOptions { max_batch: batch.max(1), ..Default::default() })?;
    let session_ms = ms(t);
    let t = Instant::now();
    let y = session.run(&x)?;
    println!("adapter: {}", session.adapter());
    println!("{model}: loaded in {load_ms:.1} ms, session {session_ms:.1} ms, batch {batch} ran in {:.1} ms", ms(t));
    let per_out = y.len() / batch;
    for (n, sample) in y.chunks(per_out).enumerate() {
        let head: Vec<String> = sample.iter().take(6).map(|v| format!("{v:.5}")).collect();
        println!("sample {n}: {} values [{}, ...]", per_out, head.join(", "));
    }
    if let Some(path) = out {
        let mut shape = vec![batch];
        shape.extend(session.output_shape());
        write_npy(&path, &shape, &y)?;
        println!("wrote {path}");
    }
    Ok(())
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// A little-endian f32, C-order `.npy` file (format 1.0 to 3.0).
fn read_npy(path: &str) -> Result<(Vec<usize>, Vec<f32>), Error> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let bad = |why: &str| -> Error { format!("{path}: {why}").into() };
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("not an .npy file"));
    }
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes(bytes[8..12].try_into()?) as usize, 12),
        _ => return Err(bad("unsupported .npy version")),
    };
    let header = std::str::from_utf8(bytes.get(start..start + len).ok_or_else(|| bad("truncated header"))?)?;
    if !header.contains("'<f4'") || header.contains("'fortran_order': True") {
        return Err(bad("expected little-endian float32 ('<f4') in C order"));
    }
    let dims = header.split("'shape':").nth(1).and_then(|s| s.split('(').nth(1)?.split(')').next()).ok_or_else(|| bad("no shape"))?;
    let shape = dims.split(',').map(str::trim).filter(|d| !d.is_empty()).map(|d| d.parse::<usize>().map_err(|_| bad("bad shape"))).collect::<Result<Vec<_>, _>>()?;
    let data = &bytes[start + len..];
    if data.len() != 4 * shape.iter().product::<usize>() {
        return Err(bad("data size does not match the shape"));
    }
    Ok((shape, data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()))
}

fn write_npy(path: &str, shape: &[usize], data: &[f32]) -> Result<(), Error> {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let comma = if shape.len() == 1 { "," } else { "" };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({}{comma}), }}", dims.join(", "));
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    data.iter().for_each(|v| bytes.extend(v.to_le_bytes()));
    std::fs::write(path, bytes).map_err(|e| format!("cannot write {path}: {e}").into())
}
