//! Bad input gives an error that names what is wrong and where, never a panic: broken files,
//! operations and attribute values mfn does not implement, inconsistent tensors, wrong inputs at
//! run time, and the same through the command-line tool.

mod common;

use std::path::PathBuf;
use std::process::Command;

use mfn_models::builder::{self, Attr, Dim, GraphBuilder};
use mfn_models::rng::Rng;
use mfn_runtime::RuntimeError;
use onnx_protobuf::tensor_proto::{DataLocation, DataType};
use onnx_protobuf::{Message, ModelProto, StringStringEntryProto};

/// A small valid model: x [N, 3, 8, 8] -> Conv "conv" (3x3, pad 1) -> Relu "relu" -> y, with
/// `edit` applied to the builder after the nodes are added (so it can add, replace or corrupt
/// anything).
fn model_with(opset: i64, edit: impl FnOnce(&mut GraphBuilder)) -> Vec<u8> {
    let mut b = GraphBuilder::new(opset);
    b.input("x", &[Dim::param("N"), 3.into(), 8.into(), 8.into()])
        .initializer("w", &[4, 3, 3, 3], Rng::new(1).normal_vec(108, 0.2))
        .initializer("b", &[4], vec![0.1, -0.2, 0.3, 0.0])
        .named_node("conv", "Conv", &["x", "w", "b"], &["c"], vec![Attr::Ints("pads", vec![1; 4])])
        .named_node("relu", "Relu", &["c"], &["y"], vec![])
        .output("y", &[Dim::param("N"), 4.into(), 8.into(), 8.into()]);
    edit(&mut b);
    b.to_bytes()
}

fn model(edit: impl FnOnce(&mut GraphBuilder)) -> Vec<u8> {
    model_with(13, edit)
}

/// Replaces the attributes of the node named `node`.
fn set_attrs(b: &mut GraphBuilder, node: &str, attrs: &[Attr]) {
    let n = b.graph_mut().node.iter_mut().find(|n| n.name == node).expect("node exists");
    n.attribute = attrs.iter().map(Attr::to_proto).collect();
}

/// The initializer named `name`, for corruption.
fn initializer<'a>(b: &'a mut GraphBuilder, name: &str) -> &'a mut onnx_protobuf::TensorProto {
    b.graph_mut().initializer.iter_mut().find(|t| t.name == name).expect("initializer exists")
}

/// Inserts a node after the Conv, reading its output `c`; the Relu then reads the new node's `d`.
fn insert_after_conv(b: &mut GraphBuilder, node: onnx_protobuf::NodeProto) {
    let g = b.graph_mut();
    g.node.insert(1, node);
    g.node[2].input[0] = "d".into();
}

/// `onnx` parsed, edited as a `ModelProto` and serialised again (for the fields outside the graph).
fn edit_model(onnx: &[u8], edit: impl FnOnce(&mut ModelProto)) -> Vec<u8> {
    let mut m = ModelProto::parse_from_bytes(onnx).expect("valid model");
    edit(&mut m);
    m.write_to_bytes().expect("a proto3 message serialises")
}

/// The compile error of `onnx` as text; fails the test if it compiles.
fn compile_error(onnx: &[u8]) -> String {
    match mfn_compiler::compile(onnx, &Default::default()) {
        Ok(_) => panic!("compiled, but an error was expected"),
        Err(e) => e.to_string(),
    }
}

/// Each case: a name, the model bytes, and the fragments its error message must contain.
fn check_errors(cases: Vec<(&str, Vec<u8>, &[&str])>) {
    let mut failures = Vec::new();
    for (name, onnx, fragments) in &cases {
        let message = match mfn_compiler::compile(onnx, &Default::default()) {
            Ok(_) => {
                failures.push(format!("{name}: compiled, but an error was expected"));
                continue;
            }
            Err(e) => e.to_string(),
        };
        eprintln!("{name}: {message}");
        let missing: Vec<&&str> = fragments.iter().filter(|f| !message.contains(**f)).collect();
        if !missing.is_empty() {
            failures.push(format!("{name}: message {message:?} lacks {missing:?}"));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn the_base_model_is_valid() {
    let program = common::compile(&model(|_| {}));
    assert_eq!(program.input.shape, [3, 8, 8]);
}

#[test]
fn broken_files() {
    let valid = model(|_| {});
    let synthetic = mfn::synthetic_model(mfn::Variant::Mfn112x112);
    check_errors(vec![
        ("empty file", Vec::new(), &["not a valid ONNX model", "the file is empty"]),
        ("small model cut in half", valid[..valid.len() / 2].to_vec(), &["not a valid ONNX model"]),
        ("MobileFaceNet cut in half", synthetic[..synthetic.len() / 2].to_vec(), &["not a valid ONNX model"]),
        ("a text file", b"not ONNX at all\n".to_vec(), &["not a valid ONNX model"]),
        ("a model without graph", edit_model(&valid, |m| m.graph = Default::default()), &["has no graph"]),
        ("a graph without nodes", model(|b| b.graph_mut().node.clear()), &["has no graph"]),
    ]);
}

#[test]
fn random_bytes_are_rejected() {
    for seed in 0..50 {
        let mut rng = Rng::new(seed);
        let len = 1 + (rng.next_u64() % 4096) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        let message = compile_error(&bytes);
        assert!(!message.is_empty(), "seed {seed}: empty message");
    }
}

/// Every prefix of a small model and a few thousand single-byte corruptions of it: each either
/// compiles or returns an error; nothing panics (a panic fails this test).
#[test]
fn truncations_and_corruptions_never_panic() {
    let valid = model(|_| {});
    for len in 0..valid.len() {
        let _ = mfn_compiler::compile(&valid[..len], &Default::default());
    }
    let mut rng = Rng::new(7);
    for _ in 0..3000 {
        let mut bytes = valid.clone();
        let at = (rng.next_u64() % bytes.len() as u64) as usize;
        bytes[at] = rng.next_u64() as u8;
        if let Err(e) = mfn_compiler::compile(&bytes, &Default::default()) {
            assert!(!e.to_string().is_empty());
        }
    }
}

#[test]
fn unsupported_operations_and_attributes() {
    check_errors(vec![
        ("LSTM", model(|b| insert_after_conv(b, builder::node_proto("lstm_0", "LSTM", &["c"], &["d"], &[]))), &["node 'lstm_0'", "unsupported op 'LSTM'"]),
        (
            "Concat on the batch axis",
            model(|b| insert_after_conv(b, builder::node_proto("cat", "Concat", &["c", "c"], &["d"], &[Attr::Int("axis", 0)]))),
            &["node 'cat' (Concat)", "attribute 'axis' = 0", "the batch axis"],
        ),
        (
            "Concat of shapes that differ off the axis",
            model(|b| insert_after_conv(b, builder::node_proto("cat", "Concat", &["c", "x"], &["d"], &[Attr::Int("axis", 2)]))),
            &["node 'cat' (Concat)", "[1, 4, 8, 8] and [1, 3, 8, 8] differ outside axis 2"],
        ),
        (
            "Concat of an activation and a constant",
            model(|b| insert_after_conv(b, builder::node_proto("cat", "Concat", &["c", "b"], &["d"], &[Attr::Int("axis", 1)]))),
            &["node 'cat' (Concat)", "concatenating the activation 'c' with constants is not supported"],
        ),
        ("an op of another domain", model(|b| b.graph_mut().node[1].domain = "com.microsoft".into()), &["node 'relu'", "unsupported op 'com.microsoft:Relu'"]),
        ("an unnamed node", model(|b| insert_after_conv(b, builder::node_proto("", "LRN", &["c"], &["d"], &[]))), &["unnamed LRN -> d", "unsupported op 'LRN'"]),
        (
            "Conv dilations [2, 2]",
            model(|b| set_attrs(b, "conv", &[Attr::Ints("pads", vec![1; 4]), Attr::Ints("dilations", vec![2, 2])])),
            &["node 'conv' (Conv)", "attribute 'dilations' = [2, 2]", "only 1 is implemented"],
        ),
        ("Conv auto_pad FOO", model(|b| set_attrs(b, "conv", &[Attr::Str("auto_pad", "FOO".into())])), &["node 'conv' (Conv)", "attribute 'auto_pad' = FOO is not supported"]),
        ("Conv strides [0, 1]", model(|b| set_attrs(b, "conv", &[Attr::Ints("strides", vec![0, 1])])), &["node 'conv' (Conv)", "attribute 'strides' = [0, 1]", "positive"]),
        ("Conv pads of the wrong type", model(|b| set_attrs(b, "conv", &[Attr::Floats("pads", vec![1.0; 4])])), &["node 'conv' (Conv)", "attribute 'pads'", "expected type INTS"]),
        ("an unknown attribute", model(|b| set_attrs(b, "relu", &[Attr::Int("foo", 1)])), &["node 'relu' (Relu)", "attribute 'foo'", "mfn does not implement this attribute"]),
        (
            "BatchNormalization training_mode=1",
            model(|b| {
                for (name, v) in [("scale", 1.0), ("bias", 0.0), ("mean", 0.0), ("var", 1.0)] {
                    b.initializer(name, &[4], vec![v; 4]);
                }
                let attrs = [Attr::Int("training_mode", 1)];
                insert_after_conv(b, builder::node_proto("bn", "BatchNormalization", &["c", "scale", "bias", "mean", "var"], &["d"], &attrs));
            }),
            &["node 'bn' (BatchNormalization)", "attribute 'training_mode' = 1", "inference only"],
        ),
        (
            "Gemm transA=1",
            model(|b| {
                b.initializer("B", &[256, 2], vec![0.0; 512]);
                let g = b.graph_mut();
                g.node.push(builder::node_proto("flat", "Flatten", &["y"], &["f"], &[]));
                g.node.push(builder::node_proto("fc", "Gemm", &["f", "B"], &["z"], &[Attr::Int("transA", 1)]));
                g.output[0].name = "z".into();
            }),
            &["node 'fc' (Gemm)", "attribute 'transA' = 1"],
        ),
        (
            "Dropout with its mask output",
            model(|b| insert_after_conv(b, builder::node_proto("drop", "Dropout", &["c"], &["d", "mask"], &[]))),
            &["node 'drop' (Dropout)", "mask output"],
        ),
        (
            "Reshape across the batch",
            model(|b| {
                b.initializer_i64("shape", &[2], vec![-1, 64]);
                insert_after_conv(b, builder::node_proto("reshape", "Reshape", &["c", "shape"], &["d"], &[]));
            }),
            &["node 'reshape' (Reshape)", "moves data across the batch dimension"],
        ),
        ("Conv weight computed at run time", model(|b| b.graph_mut().node[0].input[1] = "x".into()), &["node 'conv' (Conv)", "input 'x' must be a constant"]),
        (
            "a 1-D convolution",
            model(|b| {
                let g = b.graph_mut();
                g.input[0] = builder::value_info("x", DataType::FLOAT, &[Dim::param("N"), 3.into(), 8.into()]);
                g.initializer[0] = builder::tensor_f32("w", &[4, 3, 3], &[0.0; 36]);
                g.node[0].attribute.clear();
            }),
            &["node 'conv' (Conv)", "only 2-D convolutions"],
        ),
        (
            "PRelu slope [C] on a feature map (numpy aligns it with the width)",
            model(|b| {
                b.initializer("slope", &[4], vec![0.25; 4]);
                insert_after_conv(b, builder::node_proto("prelu", "PRelu", &["c", "slope"], &["d"], &[]));
            }),
            &["node 'prelu' (PRelu)", "slope [4] must be a scalar or one value per channel"],
        ),
        (
            "Clip bound that is not a scalar",
            model(|b| {
                b.initializer("lo", &[2], vec![0.0, 1.0]);
                insert_after_conv(b, builder::node_proto("clip", "Clip", &["c", "lo"], &["d"], &[]));
            }),
            &["node 'clip' (Clip)", "bound 1 has shape [2]; it must be a scalar"],
        ),
        (
            "a kernel larger than the padded input",
            model(|b| {
                b.graph_mut().initializer[0] = builder::tensor_f32("w", &[4, 3, 11, 11], &[0.0; 4 * 3 * 121]);
            }),
            &["node 'conv' (Conv)", "kernel 11 is larger than the padded input 10"],
        ),
        ("Conv group that does not divide the channels", model(|b| set_attrs(b, "conv", &[Attr::Int("group", 2)])), &["node 'conv' (Conv)", "attribute 'group' = 2", "3 input"]),
        ("no graph output", model(|b| b.graph_mut().output.clear()), &["graph output ''", "one input and at least one output, this one has 1 and 0"]),
    ]);
}

#[test]
fn bad_graph_inputs() {
    let input = |dims: &[Dim]| model(|b| b.graph_mut().input[0] = builder::value_info("x", DataType::FLOAT, dims));
    check_errors(vec![
        ("a symbolic height", input(&[Dim::param("N"), 3.into(), Dim::param("H"), 8.into()]), &["graph input 'x'", "dimension 2 is symbolic", "--input-shape", "only the batch"]),
        ("an unknown width", input(&[Dim::param("N"), 3.into(), 8.into(), Dim::Unknown]), &["graph input 'x'", "dimension 3"]),
        ("a zero channel count", input(&[Dim::param("N"), 0.into(), 8.into(), 8.into()]), &["graph input 'x'", "dimension 1"]),
        ("a scalar input", input(&[]), &["graph input 'x'", "scalar"]),
        (
            "an int64 input",
            model(|b| b.graph_mut().input[0] = builder::value_info("x", DataType::INT64, &[Dim::param("N"), 3.into(), 8.into(), 8.into()])),
            &["graph input 'x'", "element type #7 is not supported"],
        ),
        ("an absurdly large input", input(&[Dim::param("N"), 3.into(), 1_000_000.into(), 1_000_000.into()]), &["'x'", "too large"]),
    ]);
}

#[test]
fn inconsistent_tensors_and_names() {
    check_errors(vec![
        ("raw_data shorter than the shape", model(|b| initializer(b, "w").raw_data.truncate(100)), &["tensor 'w'", "raw_data has 100 bytes, shape [4, 3, 3, 3] needs 432"]),
        (
            "a bias of the wrong size",
            model(|b| b.graph_mut().initializer[1] = builder::tensor_f32_float_data("b", &[5], &[0.0; 5])),
            &["node 'conv' (Conv)", "bias [5] does not match 4 output channels"],
        ),
        (
            "float_data count disagreeing with dims",
            model(|b| {
                let t = initializer(b, "b");
                t.raw_data.clear();
                t.float_data = vec![0.0; 3];
            }),
            &["tensor 'b'", "holds 3 values, shape [4] needs 4"],
        ),
        ("a negative dimension", model(|b| initializer(b, "b").dims = vec![-4]), &["tensor 'b'", "negative dimension -4"]),
        ("a float16 initializer", model(|b| initializer(b, "b").data_type = DataType::FLOAT16 as i32), &["tensor 'b'", "data type FLOAT16 is not supported"]),
        (
            "a Conv weight of integers",
            model(|b| {
                b.graph_mut().initializer[0] = builder::tensor_i64("w", &[4, 3, 3, 3], &[1; 108]);
            }),
            &["node 'conv' (Conv)", "input 'w' must be a float tensor"],
        ),
        (
            "BatchNormalization statistics of integers",
            model(|b| {
                b.initializer("scale", &[4], vec![1.0; 4]).initializer("bias", &[4], vec![0.0; 4]).initializer("mean", &[4], vec![0.0; 4]);
                b.initializer_i64("var", &[4], vec![1; 4]);
                insert_after_conv(b, builder::node_proto("bn", "BatchNormalization", &["c", "scale", "bias", "mean", "var"], &["d"], &[]));
            }),
            &["node 'bn' (BatchNormalization)", "input 'var' must be a float tensor"],
        ),
        (
            "external data",
            model(|b| {
                let t = initializer(b, "w");
                t.raw_data.clear();
                t.data_location = DataLocation::EXTERNAL.into();
                let mut location = StringStringEntryProto::new();
                location.key = "location".into();
                location.value = "weights.bin".into();
                t.external_data.push(location);
            }),
            &["tensor 'w'", "external data is not supported"],
        ),
        ("opset 7", model_with(7, |_| {}), &["ONNX opset 7", "not supported", "opsets 9 to 18"]),
        ("opset 20", model_with(20, |_| {}), &["ONNX opset 20", "not supported"]),
        ("no default-domain opset", edit_model(&model(|_| {}), |m| m.opset_import.clear()), &["imports no opset"]),
        (
            "a node reading an undefined name",
            model(|b| b.graph_mut().node[1].input[0] = "nope".into()),
            &["node 'relu' reads 'nope'", "no graph input, initializer or earlier node"],
        ),
        ("a cycle", model(|b| b.graph_mut().node[0].input[0] = "y".into()), &["node 'conv' reads 'y'", "cycle"]),
        ("a graph output no node computes", model(|b| b.graph_mut().output[0].name = "nowhere".into()), &["graph output 'nowhere'", "computed by no node"]),
    ]);
}

#[test]
fn wrong_input_size_at_run_time() {
    let program = common::compile(&model(|_| {}));
    let Some(session) = common::session(&program, 2) else { return };
    let per_sample = 3 * 8 * 8;
    for got in [0, 1, per_sample - 1, per_sample + 1, 3 * per_sample / 2] {
        match session.run(&vec![0.5; got]) {
            Err(e @ RuntimeError::InputSize { .. }) => {
                let message = e.to_string();
                let expected = format!("input has {got} values, which is not a whole batch of samples of shape [3, 8, 8] (192 values each)");
                assert_eq!(message, expected);
            }
            other => panic!("{got} values: expected RuntimeError::InputSize, got {other:?}"),
        }
    }
    // The session still works after refusing bad input.
    assert_eq!(session.run(&vec![0.5; 3 * per_sample]).expect("a whole batch runs").len(), 3 * 4 * 8 * 8);
}

/// A file under the temp directory, unique to this process and test, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, bytes: &[u8]) -> TempFile {
        let path = std::env::temp_dir().join(format!("mfn-malformed-{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).expect("temp file written");
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs the `mfn` tool; returns (success, stderr).
fn mfn(args: &[&std::ffi::OsStr]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mfn")).args(args).output().expect("mfn runs");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn cli_run_with_an_input_of_the_wrong_shape() {
    let model = TempFile::new("run-model.onnx", &model(|_| {}));
    let input = TempFile::new("run-input.npy", &mfn_models::npy::to_npy_bytes(&[2, 3, 7, 8], &[0.0; 2 * 3 * 7 * 8]));
    let out = std::env::temp_dir().join(format!("mfn-malformed-{}-run-out.npy", std::process::id()));
    let (ok, stderr) = mfn(&["run".as_ref(), model.0.as_os_str(), "--input".as_ref(), input.0.as_os_str(), "--out".as_ref(), out.as_os_str()]);
    assert!(!ok, "mfn run succeeded with a wrong input shape; stderr:\n{stderr}");
    assert!(stderr.contains("has shape [2, 3, 7, 8]") && stderr.contains("the model expects [N,3,8,8]"), "stderr:\n{stderr}");
    assert!(!out.exists(), "no output is written");
}

#[test]
fn cli_reports_a_broken_model_file() {
    let model = TempFile::new("info-model.onnx", b"not ONNX at all\n");
    let (ok, stderr) = mfn(&["info".as_ref(), model.0.as_os_str()]);
    assert!(!ok);
    assert!(stderr.starts_with("error: ") && stderr.contains("not a valid ONNX model"), "stderr:\n{stderr}");
    let missing = std::env::temp_dir().join(format!("mfn-malformed-{}-missing.onnx", std::process::id()));
    let (ok, stderr) = mfn(&["info".as_ref(), missing.as_os_str()]);
    assert!(!ok);
    assert!(stderr.contains("cannot read model file") && stderr.contains("missing.onnx"), "stderr:\n{stderr}");
}

#[test]
fn names_defined_twice_are_errors() {
    let conv = |g: &mut GraphBuilder, out: &str| {
        g.named_node(out, "Relu", &["x"], &[out], vec![]);
    };
    let mut g = GraphBuilder::new(13);
    g.input("x", &[Dim::param("N"), 2.into(), 4.into(), 4.into()]);
    conv(&mut g, "y");
    g.named_node("again", "Sigmoid", &["x"], &["y"], vec![]);
    g.output("y", &[Dim::param("N"), 2.into(), 4.into(), 4.into()]);
    let err = mfn_compiler::compile(&g.to_bytes(), &Default::default()).expect_err("duplicate output").to_string();
    assert!(err.contains("'again'") && err.contains("output 'y' is already defined"), "{err}");

    let mut g = GraphBuilder::new(13);
    g.input("x", &[Dim::param("N"), 2.into()]);
    g.initializer("w", &[2], vec![1.0, 2.0]);
    g.initializer("w", &[2], vec![3.0, 4.0]);
    g.node("Mul", &["x", "w"], &["y"], vec![]);
    g.output("y", &[Dim::param("N"), 2.into()]);
    let err = mfn_compiler::compile(&g.to_bytes(), &Default::default()).expect_err("duplicate initializer").to_string();
    assert!(err.contains("tensor 'w': two initializers have this name"), "{err}");
}
