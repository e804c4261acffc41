//! `mfn pack` and the commands that take its `.mfn` files, the kernel headers, `compile --emit`
//! and `inspect`, through the command-line tool.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn mfn(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mfn")).args(args).output().expect("mfn runs");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mfn-pack-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

fn pack(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let (ok, out, err) = mfn(&["pack", "synthetic:s", "--out", s(&path)]);
    assert!(ok, "pack failed: {out}{err}");
    path
}

#[test]
fn packed_model_runs_like_the_onnx_it_came_from() {
    let dir = temp_dir("run");
    // Any name: a .mfn file is recognised by its magic number, not its extension.
    let packed = pack(&dir, "model.bin");
    let onnx = dir.join("model.onnx");
    std::fs::write(&onnx, mfn::synthetic_model(mfn::Variant::S)).expect("write onnx");
    let program = common::compile(&mfn::synthetic_model(mfn::Variant::S));
    assert_eq!(mfn_compiler::Program::from_mfn(&std::fs::read(&packed).expect("read")).expect("valid .mfn"), program);
    let input = dir.join("x.npy");
    let mut shape = vec![2];
    shape.extend(&program.input.shape);
    let x = mfn_models::rng::Rng::new(5).uniform_vec(2 * program.input.elements(), 0.0, 255.0);
    mfn_models::write_npy_file(&input, &shape, &x).expect("write input");
    let mut outputs = Vec::new();
    for model in [&onnx, &packed] {
        let y = dir.join("y.npy");
        let (ok, out, err) = mfn(&["run", s(model), "--input", s(&input), "--out", s(&y)]);
        if !ok && err.contains("no GPU adapter") && std::env::var("CI").is_err() {
            eprintln!("skipping the GPU part: {err}");
            return;
        }
        assert!(ok, "run {}: {out}{err}", model.display());
        outputs.push(mfn_models::read_npy_file(&y).expect("read output"));
    }
    assert_eq!(outputs[0], outputs[1], "the .mfn and the .onnx give different outputs");
    // The face commands and bench take it too.
    let face = dir.join("face.png");
    let pixels: Vec<u8> = (0..112 * 112 * 3).map(|i| (i * 7 % 251) as u8).collect();
    image::RgbImage::from_raw(112, 112, pixels).expect("image").save(&face).expect("write png");
    let embed = |model: &Path| {
        let (ok, out, err) = mfn(&["embed", "--model", s(model), s(&face), "--json"]);
        assert!(ok, "embed --model {}: {err}", model.display());
        out
    };
    assert_eq!(embed(&onnx), embed(&packed), "embed: the .mfn and the .onnx differ");
    let (ok, out, err) = mfn(&["verify", "--model", s(&packed), s(&face), s(&face)]);
    assert!(ok && out.contains("SAME"), "verify: {out}{err}");
    // --min-time keeps timing past --runs (a run takes milliseconds, not half a second).
    let (ok, out, err) = mfn(&["bench", "--model", s(&packed), "--batch", "1", "--runs", "1", "--min-time", "0.5", "--warmup", "0"]);
    assert!(ok && out.contains("batch   1"), "bench: {out}{err}");
    let runs: usize = out.split(" runs)").next().and_then(|head| head.rsplit(' ').next()).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("bench: no run count in {out}"));
    assert!(runs > 1, "bench --runs 1 --min-time 0.5 timed {runs} run(s): {out}");
    let (ok, _, err) = mfn(&["bench", "--model", s(&packed), "--batch", "1", "--min-time", "-1"]);
    assert!(!ok && err.contains("--min-time"), "bench --min-time -1: {err}");
    let (ok, out, err) = mfn(&["info", s(&packed)]);
    assert!(ok && out.contains("kernels:") && out.contains("holds no graph"), "{out}{err}");
}

#[test]
fn damaged_mfn_files_are_clear_errors_naming_the_file() {
    let dir = temp_dir("damaged");
    let bytes = std::fs::read(pack(&dir, "good.mfn")).expect("read");
    let mut other_version = bytes.clone();
    other_version[8] = 1;
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 2] ^= 0x10;
    let cases: [(&str, &[u8], &str); 4] = [
        ("inside-magic.mfn", &bytes[..5], "truncated"),
        ("truncated.mfn", &bytes[..bytes.len() - 100], "truncated"),
        ("version.mfn", &other_version, "version 1 is not supported"),
        ("flipped.mfn", &flipped, "corrupted"),
    ];
    for (name, contents, want) in cases {
        let path = dir.join(name);
        std::fs::write(&path, contents).expect("write");
        for command in ["info", "inspect", "compile"] {
            let mut args = vec![command, s(&path)];
            if command == "compile" {
                args.extend(["--out", s(&dir)]);
            }
            let (ok, out, err) = mfn(&args);
            assert!(!ok, "{command} {name} succeeded: {out}");
            assert!(err.contains(s(&path)) && err.contains(want), "{command} {name}: {err}");
            assert!(!err.contains("panicked"), "{command} {name} panicked: {err}");
        }
    }
}

/// Every kernel's header names exactly the dispatches that use it, with their figures.
#[test]
fn kernel_headers_describe_every_dispatch() {
    let program = common::compile(&mfn::synthetic_model(mfn::Variant::Mfn112x112));
    assert_eq!(program, common::compile(&mfn::synthetic_model(mfn::Variant::Mfn112x112)), "code generation is not deterministic");
    for (k, kernel) in program.kernels.iter().enumerate() {
        let header: Vec<&str> = kernel.wgsl.lines().take_while(|l| l.starts_with("// mfn kernel") || l.starts_with("//   ") || l.contains(" dispatch")).collect();
        assert!(header[0].starts_with(&format!("// mfn kernel {}: template shaders/{}.wgsl, workgroup size {}", kernel.name, kernel.template, kernel.workgroup_size)));
        let listed: Vec<usize> = header.iter().filter_map(|l| l.strip_prefix("//   step ")?.split(':').next()?.parse().ok()).collect();
        assert_eq!(listed, program.steps_of(k), "{}: header lists steps {listed:?}", kernel.name);
        assert!(!listed.is_empty());
        for &i in &listed {
            let step = &program.steps[i];
            let t = program.traffic(i);
            let text = header.join("\n");
            assert!(text.contains(&format!("//   step {i}: {}", step.nodes.join(" + "))), "{}: step {i} nodes", kernel.name);
            let out: Vec<String> = step.output_shape.iter().map(usize::to_string).collect();
            let figures = format!(
                "-> out [{}]; workgroups {}x{}xN; {} multiply-adds; reads {} B + {} B weights, writes {} B",
                out.join(","),
                step.workgroups[0],
                step.workgroups[1],
                step.macs,
                t.read_per_sample,
                t.weight_bytes,
                t.written_per_sample
            );
            assert!(text.contains(&figures), "{}: step {i} figures, want {figures}\n{text}", kernel.name);
        }
    }
    // The figures add up to the model's.
    assert_eq!(program.steps.iter().map(|s| s.macs).sum::<u64>(), program.stats.macs);
    let first = program.traffic(0);
    assert_eq!(first.read_per_sample, 4 * 3 * 112 * 112);
}

#[test]
fn compile_emits_every_language() {
    let dir = temp_dir("emit");
    let (ok, out, err) = mfn(&["compile", "synthetic:s", "--out", s(&dir), "--emit", "wgsl,spirv,msl,hlsl,glsl"]);
    assert!(ok, "{out}{err}");
    let program = common::compile(&mfn::synthetic_model(mfn::Variant::S));
    for kernel in &program.kernels {
        for ext in ["wgsl", "metal", "hlsl", "comp"] {
            let text = std::fs::read_to_string(dir.join(format!("{}.{ext}", kernel.name))).unwrap_or_else(|e| panic!("{}.{ext}: {e}", kernel.name));
            assert!(text.contains(&format!("// mfn kernel {}", kernel.name)) && text.contains("multiply-adds"), "{}.{ext} has no header", kernel.name);
        }
        let spirv = std::fs::read(dir.join(format!("{}.spv", kernel.name))).expect("spv written");
        assert_eq!(&spirv[..4], &0x0723_0203u32.to_le_bytes(), "{}.spv: SPIR-V magic", kernel.name);
        // The wide form of the loads (CPU adapters with 64-bit integers), in WGSL only.
        let wide = dir.join(format!("{}.subgroup.wide.wgsl", kernel.name));
        if kernel.template == "pointwise_vec4" {
            let text = std::fs::read_to_string(&wide).unwrap_or_else(|e| panic!("{}: {e}", wide.display()));
            assert!(text.contains("alias packed4 = vec2<u64>;") && text.contains("// mfn kernel"), "{}", wide.display());
            assert!(!dir.join(format!("{}.subgroup.wide.spv", kernel.name)).exists());
        } else {
            assert!(!wide.exists(), "{} has no wide form", kernel.name);
        }
    }
    assert!(out.contains("wide form"), "{out}");
    let (ok, _, err) = mfn(&["compile", "synthetic:s", "--out", s(&dir), "--emit", "dxil"]);
    assert!(!ok && err.contains("dxil"), "{err}");
}

#[test]
fn inspect_prints_the_kernel_table_and_the_graph() {
    let dir = temp_dir("inspect");
    let dot = dir.join("g.dot");
    let (ok, out, err) = mfn(&["inspect", "synthetic:s", "--dot", s(&dot)]);
    assert!(ok, "{out}{err}");
    let program = common::compile(&mfn::synthetic_model(mfn::Variant::S));
    for (i, step) in program.steps.iter().enumerate() {
        let name = &program.kernels[step.kernel].name;
        assert!(out.lines().any(|l| l.trim_start().starts_with(&format!("{i} {name}")) && l.contains(&step.nodes.join(" + "))), "no row for step {i}\n{out}");
    }
    let graph = std::fs::read_to_string(&dot).expect("dot written");
    assert!(graph.starts_with("digraph mfn {") && graph.trim_end().ends_with('}'));
    assert_eq!(graph.matches("subgraph cluster_").count(), program.steps.len(), "one cluster per dispatch");
    for step in &program.steps {
        for node in &step.nodes {
            assert!(graph.contains(&format!("[label=\"{node}\"]")), "{node} missing from the graph");
        }
    }
    // Graphviz itself, where installed, must accept it.
    if let Ok(status) = Command::new("dot").args(["-Tsvg", "-o", s(&dir.join("g.svg")), s(&dot)]).status() {
        assert!(status.success(), "dot -Tsvg rejects the graph");
    }
    // --dot needs the graph, which a .mfn file does not hold.
    let packed = pack(&dir, "m.mfn");
    let (ok, _, err) = mfn(&["inspect", s(&packed), "--dot", s(&dot)]);
    assert!(!ok && err.contains("needs the ONNX model"), "{err}");
}

#[test]
fn inspect_profile_times_every_kernel() {
    let (ok, out, err) = mfn(&["inspect", "synthetic:s", "--profile"]);
    if !ok && err.contains("no GPU adapter") && std::env::var("CI").is_err() {
        eprintln!("skipping: {err}");
        return;
    }
    assert!(ok, "{out}{err}");
    let program = common::compile(&mfn::synthetic_model(mfn::Variant::S));
    if out.contains("per-kernel GPU time") {
        let rows = out.lines().skip_while(|l| !l.starts_with("per-kernel GPU time")).skip(2).take_while(|l| !l.contains("by template")).count();
        assert_eq!(rows, program.steps.len(), "{out}");
    } else {
        assert!(out.contains("not available (the adapter has no timestamp queries)"), "{out}");
    }
}
