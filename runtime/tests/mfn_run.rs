//! `mfn-run`, the runtime-only tool: it runs a packed model as the runtime library does, and
//! rejects what is not a valid `.mfn` file with an error naming it.

use std::process::Command;

use mfn_runtime::{RuntimeError, Session, SessionOptions};

fn mfn_run(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mfn-run")).args(args).output().expect("mfn-run runs");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn runs_a_packed_model_like_the_library() {
    let onnx = onnx_protobuf::Message::write_to_bytes(&mfn_models::mobilefacenet(mfn_models::Variant::S, 1)).expect("serialises");
    let program = mfn_compiler::compile(&onnx, &Default::default()).expect("compiles");
    let dir = std::env::temp_dir().join(format!("mfn-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (model, x_path, y_path) = (dir.join("s.mfn"), dir.join("x.npy"), dir.join("y.npy"));
    std::fs::write(&model, program.to_mfn()).expect("write model");
    let x = mfn_models::sample_input(mfn_models::Variant::S, 2, 4);
    mfn_models::write_npy_file(&x_path, &[2, 3, 112, 112], &x).expect("write input");
    let session = match Session::new(&program, &SessionOptions { max_batch: 2, ..Default::default() }) {
        Err(e @ RuntimeError::NoAdapter { .. }) if std::env::var("CI").is_err() => return eprintln!("skipping: {e}"),
        other => other.expect("session"),
    };
    let (ok, out) = mfn_run(&[model.to_str().unwrap(), "--input", x_path.to_str().unwrap(), "--out", y_path.to_str().unwrap()]);
    assert!(ok, "{out}");
    let (shape, y) = mfn_models::read_npy_file(&y_path).expect("output");
    assert_eq!(shape, [2, 128]);
    assert_eq!(y, session.run(&x).expect("run"), "mfn-run and Session::run differ");

    let mut damaged = program.to_mfn();
    damaged.truncate(damaged.len() / 2);
    let bad = dir.join("half.mfn");
    std::fs::write(&bad, damaged).expect("write");
    let (ok, out) = mfn_run(&[bad.to_str().unwrap()]);
    assert!(!ok && out.contains("half.mfn") && out.contains("truncated") && !out.contains("panicked"), "{out}");
    let (ok, out) = mfn_run(&[x_path.to_str().unwrap()]);
    assert!(!ok && out.contains("not an .mfn file"), "{out}");
}
