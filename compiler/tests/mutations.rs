//! The deterministic twin of the fuzz targets in `fuzz/`: seeded structure-aware mutations of the
//! generated MobileFaceNet (dimensions, attributes, initializer data, node inputs and outputs, op
//! types, graph inputs and outputs, opset) and seeded byte mutations of its file, each compiled.
//! Every one must give `Ok` or an error with a message, never a panic; the seeds that panicked are
//! listed together. The mutations are `mfn_models::mutate`, the same code the fuzzers use.

use std::panic::{catch_unwind, AssertUnwindSafe};

use mfn_compiler::{compile, Program};
use mfn_models::mutate::{mutate_bytes, mutate_model, Choices};
use mfn_models::rng::Rng;
use mfn_models::{mobilefacenet, Variant};
use onnx_protobuf::Message;

/// Compiles `onnx`; `Ok(true)` if it compiled, `Ok(false)` if it was refused with a message,
/// `Err` with the panic message if it panicked. A compiled program must survive the `.mfn`
/// round trip.
fn outcome(onnx: &[u8]) -> Result<bool, String> {
    catch_unwind(AssertUnwindSafe(|| match compile(onnx, &Default::default()) {
        Ok(program) => {
            // Compared as bytes: weights may be NaN, which `PartialEq` never finds equal.
            let bytes = program.to_mfn();
            let again = Program::from_mfn(&bytes).map(|p| p.to_mfn());
            assert!(again.as_ref() == Ok(&bytes), ".mfn round trip failed: {:?}", again.err());
            true
        }
        Err(e) => {
            assert!(!e.to_string().is_empty(), "an error without a message");
            false
        }
    }))
    .map_err(|panic| panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default())
}

/// Runs `cases` seeds through `mutate_and_compile`; fails listing every seed that panicked, or if
/// the mutations were all refused (or all accepted), which would mean they test nothing.
fn check(what: &str, cases: u64, mut mutate_and_compile: impl FnMut(&mut Rng) -> Result<bool, String>) {
    let (mut compiled, mut refused, mut panics) = (0, 0, Vec::new());
    for seed in 0..cases {
        match mutate_and_compile(&mut Rng::new(seed)) {
            Ok(true) => compiled += 1,
            Ok(false) => refused += 1,
            Err(message) => panics.push(format!("seed {seed}: {message}")),
        }
    }
    eprintln!("{what}: {cases} mutations, {compiled} compiled, {refused} refused, {} panicked", panics.len());
    assert!(panics.is_empty(), "{what}: {} of {cases} mutations panicked:\n{}", panics.len(), panics.join("\n"));
    assert!(compiled > 0 && refused > 0, "{what}: {compiled} compiled and {refused} refused: the mutations test nothing");
}

#[test]
fn structural_mutations_never_panic() {
    let base = mobilefacenet(Variant::Mfn112x112, 11);
    check("structural", 1500, |rng| {
        let mut model = base.clone();
        let count = 1 + rng.below(3);
        mutate_model(&mut model, rng, count);
        outcome(&model.write_to_bytes().expect("a proto3 message serialises"))
    });
}

#[test]
fn byte_mutations_never_panic() {
    let base = mobilefacenet(Variant::Mfn112x112, 12).write_to_bytes().expect("serialises");
    check("bytes", 1500, |rng| {
        let mut bytes = base.clone();
        let count = 1 + rng.below(4);
        mutate_bytes(&mut bytes, rng, count);
        outcome(&bytes)
    });
}

/// Found by the `onnx_mutate` fuzzer (a PRelu rewired to read a Conv weight): a node whose every
/// input is a constant reached the buffer plan, which has buffers only for computed values, and
/// panicked there. Now the importer refuses it, naming the node.
#[test]
fn fuzz_regression_node_on_constants_only() {
    use mfn_models::builder::{Dim, GraphBuilder};
    let mut rng = Rng::new(1);
    let mut model = |op: &str, inputs: &[&str]| {
        let mut b = GraphBuilder::new(13);
        b.input("x", &[Dim::param("N"), 4.into(), 8.into(), 8.into()])
            .initializer("k", &[1, 4, 8, 8], rng.normal_vec(256, 1.0))
            .initializer("s", &[4, 1, 1], vec![0.25; 4])
            .initializer("w", &[4, 4, 1, 1], rng.normal_vec(16, 1.0))
            .named_node("conv", "Conv", &["x", "w"], &["c"], vec![])
            .named_node("n", op, inputs, &["a"], vec![])
            .named_node("add", "Add", &["c", "a"], &["y"], vec![])
            .output("y", &[Dim::param("N"), 4.into(), 8.into(), 8.into()]);
        b.to_bytes()
    };
    for (op, inputs) in [("PRelu", &["k", "s"][..]), ("Relu", &["k"]), ("Conv", &["k", "w"]), ("GlobalAveragePool", &["k"])] {
        let err = compile(&model(op, inputs), &Default::default()).err().unwrap_or_else(|| panic!("{op} on constants compiled"));
        let message = err.to_string();
        assert!(message.contains(&format!("node 'n' ({op})")) && message.contains("every input is a constant"), "{op}: {message}");
    }
}
