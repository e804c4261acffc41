use super::*;
use crate::npy::read_npy;
use onnx_protobuf::{type_proto, GraphProto, Message};
use std::collections::HashSet;
use std::sync::OnceLock;

const SEED: u64 = 2024;

/// Generating is the slow part (a calibrated forward pass): do it once per variant.
fn generated(variant: Variant) -> &'static Generated {
    static ALL: OnceLock<Vec<Generated>> = OnceLock::new();
    let all = ALL.get_or_init(|| Variant::all().iter().map(|&v| generate(v, SEED)).collect());
    &all[Variant::all().iter().position(|&v| v == variant).unwrap()]
}

fn graph(variant: Variant) -> GraphProto {
    emit::to_model(variant, &generated(variant).steps).graph.unwrap()
}

fn dims_of(vi: &onnx_protobuf::ValueInfoProto) -> Vec<String> {
    let Some(type_proto::Value::TensorType(t)) = &vi.type_.value else { panic!("not a tensor") };
    t.shape.dim.iter().map(|d| format!("{:?}", d.value)).collect()
}

#[test]
fn variant_metadata() {
    let names: Vec<_> = Variant::all().iter().map(|v| v.name()).collect();
    assert_eq!(names.len(), names.iter().collect::<HashSet<_>>().len());
    assert_eq!(Variant::Mfn112x96.input_hw(), (112, 96));
    assert_eq!(Variant::M.embedding_dim(), 512);
    assert_eq!(Variant::S.embedding_dim(), 128);
}

#[test]
fn graph_has_the_exported_form() {
    for v in Variant::all() {
        let g = graph(v);
        let (h, w) = v.input_hw();
        assert_eq!(g.input.len(), 1);
        assert_eq!(dims_of(&g.input[0]), ["Some(DimParam(\"N\"))".to_string(), "Some(DimValue(3))".into(), format!("Some(DimValue({h}))"), format!("Some(DimValue({w}))")]);
        assert_eq!(g.output[0].name, "embedding");
        assert_eq!(dims_of(&g.output[0])[1], format!("Some(DimValue({}))", v.embedding_dim()));
        let names: HashSet<_> = g.node.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names.len(), g.node.len(), "node names unique");
        let ops: HashSet<_> = g.node.iter().map(|n| n.op_type.as_str()).collect();
        let allowed: HashSet<_> = ["Conv", "BatchNormalization", "PRelu", "Add", "Flatten"].into();
        assert_eq!(ops, allowed);
        let used: HashSet<_> = g.node.iter().flat_map(|n| n.input.iter().map(String::as_str)).collect();
        assert!(g.initializer.iter().all(|t| used.contains(t.name.as_str())));
        for n in g.node.iter().filter(|n| n.op_type == "Conv") {
            assert_eq!(n.input.len(), 2, "{}: no bias", n.name);
            assert_eq!(n.attribute.len(), 5, "{}: explicit attributes", n.name);
        }
        let adds = g.node.iter().filter(|n| n.op_type == "Add").count();
        assert_eq!(adds, 4 + 6 + 2, "{}: residual blocks", v.name());
    }
}

#[test]
fn gdconv_covers_the_whole_feature_map() {
    for (v, k) in [(Variant::Mfn112x112, [7, 7]), (Variant::Mfn112x96, [7, 6]), (Variant::Mfn96x96, [6, 6])] {
        let g = graph(v);
        let gd = g.node.iter().find(|n| n.name == "gdconv").unwrap();
        let ks = gd.attribute.iter().find(|a| a.name == "kernel_shape").unwrap();
        assert_eq!(ks.ints, k, "{}", v.name());
    }
    let s = graph(Variant::S);
    let w = s.initializer.iter().find(|t| t.name == "gdconv.conv.weight").unwrap();
    assert_eq!(w.dims, [128, 1, 7, 7]);
}

#[test]
fn parameter_count_matches_the_paper() {
    // The paper counts 0.99 M parameters after folding BN (weights + one bias per channel);
    // this graph has 993,344.
    let g = graph(Variant::Mfn112x112);
    let count: i64 = g
        .initializer
        .iter()
        .filter(|t| t.name.ends_with("conv.weight") || t.name.ends_with("bn.bias") || t.name.ends_with("prelu.weight"))
        .map(|t| t.dims.iter().product::<i64>())
        .sum();
    assert!((950_000..1_050_000).contains(&count), "{count} parameters");
}

#[test]
fn generation_is_deterministic() {
    let a = mobilefacenet(Variant::S, 7).write_to_bytes().unwrap();
    assert_eq!(a, mobilefacenet(Variant::S, 7).write_to_bytes().unwrap());
    assert_ne!(a, mobilefacenet(Variant::S, 8).write_to_bytes().unwrap());
    assert_eq!(sample_input(Variant::S, 2, 1), sample_input(Variant::S, 2, 1));
    assert_eq!(sample_input(Variant::Mfn96x96, 3, 1).len(), 3 * 3 * 96 * 96);
}

#[test]
fn activations_stay_order_one() {
    for v in Variant::all() {
        let gen = generated(v);
        for (name, std) in &gen.bn_stds {
            assert!((0.2..=5.0).contains(std), "{}: calibration std of {name} = {std}", v.name());
        }
        // On an input the calibration never saw, too.
        let (h, w) = v.input_hw();
        let x = Act::new(2, 3, h, w, sample_input(v, 2, SEED));
        let (out, stds) = forward(&gen.steps, x);
        for ((name, _), std) in gen.bn_stds.iter().zip(&stds) {
            assert!((0.2..=5.0).contains(std), "{}: std of {name} = {std}", v.name());
        }
        assert_eq!((out.n, out.c, out.h, out.w), (2, v.embedding_dim(), 1, 1));
        assert!((0.2..=5.0).contains(&out.std()), "{}: embedding std {}", v.name(), out.std());
    }
}

/// The committed onnxruntime outputs must match this crate's own f32 forward pass: catches both a
/// generator change that forgot to regenerate them and a wrong reference file.
#[test]
fn committed_reference_outputs_match_cpu_forward() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("reference");
    for v in Variant::all() {
        let path = dir.join(format!("{}.output.npy", v.name()));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}; regenerate with models/make_reference.sh", path.display()));
        let (shape, want) = read_npy(&bytes).unwrap();
        assert_eq!(shape, [2, v.embedding_dim()]);
        let (h, w) = v.input_hw();
        let (got, _) = forward(&generated(v).steps, Act::new(2, 3, h, w, sample_input(v, 2, SEED)));
        let max_ref = want.iter().fold(0f32, |m, x| m.max(x.abs()));
        let max_diff = got.data.iter().zip(&want).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(max_diff <= 1e-4 * max_ref.max(1.0), "{}: max diff {max_diff} (max |ref| {max_ref})", v.name());
    }
}
