//! Replays an `onnx_mutate` input: applies the same mutations to the same model, writes the
//! mutated ONNX next to the input (`<input>.onnx`, to inspect with netron or onnx), and compiles it.
//!
//! MFN_SHARED=... cargo run --manifest-path fuzz/Cargo.toml --example replay -- artifacts/onnx_mutate/crash-...

use mfn_models::mutate::{mutate_model, ByteChoices, Choices};
use onnx_protobuf::{Message, ModelProto};

fn main() {
    let input = std::env::args().nth(1).expect("usage: replay <onnx_mutate input>");
    let data = std::fs::read(&input).expect("input readable");
    let shared = std::env::var("MFN_SHARED").unwrap_or_else(|_| "../shared".into());
    let path = std::path::Path::new(&shared).join("models/mobilefacenet-insightface.onnx");
    let base = match std::fs::read(&path) {
        Ok(bytes) => ModelProto::parse_from_bytes(&bytes).expect("the pretrained model parses"),
        Err(_) => mfn_models::mobilefacenet(mfn_models::Variant::Mfn112x112, 1),
    };
    let mut choices = ByteChoices::new(&data);
    let count = 1 + choices.below(4);
    let mut model = base.clone();
    mutate_model(&mut model, &mut choices, count);
    let (g0, g1) = (base.graph.as_ref().expect("graph"), model.graph.as_ref().expect("graph"));
    for (i, (a, b)) in g0.node.iter().zip(&g1.node).enumerate() {
        if a != b {
            println!("node {i} was {a:?}\n  is now {b:?}");
        }
    }
    println!("nodes {} -> {}, initializers {} -> {}", g0.node.len(), g1.node.len(), g0.initializer.len(), g1.initializer.len());
    let bytes = model.write_to_bytes().expect("serialises");
    std::fs::write(format!("{input}.onnx"), &bytes).expect("written");
    println!("{:?}", mfn_compiler::compile(&bytes, &Default::default()).map(|p| p.steps.len()));
}
