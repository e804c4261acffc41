//! Writes generated MobileFaceNet steps as an ONNX graph, naming things the way a PyTorch export
//! of a `ConvBlock { conv, bn, prelu }` module tree would: initializers "block3_2.expand.conv.weight",
//! "block3_2.expand.bn.running_mean", ...; nodes "block3_2_expand", "block3_2_expand_bn", ...

use super::{ConvLayer, Step, Variant, BN_EPSILON, OPSET};
use crate::builder::{Attr, Dim, GraphBuilder};
use onnx_protobuf::ModelProto;

/// The model for `steps`, reading "input" and writing "embedding".
pub(super) fn to_model(variant: Variant, steps: &[Step]) -> ModelProto {
    let (h, w) = variant.input_hw();
    let mut b = GraphBuilder::new(OPSET);
    b.name(&variant.name().replace('-', "_"));
    b.input("input", &[Dim::param("N"), 3.into(), (h as i64).into(), (w as i64).into()]);
    let mut cur = "input".to_string();
    let mut saved = String::new();
    for step in steps {
        match step {
            Step::Conv(layer) => cur = conv_layer(&mut b, layer, &cur),
            Step::Save => saved = cur.clone(),
            Step::AddSaved { block } => {
                let out = format!("{block}.add_out");
                b.named_node(&format!("{block}_add"), "Add", &[&cur, &saved], &[&out], vec![]);
                cur = out;
            }
        }
    }
    b.named_node("flatten", "Flatten", &[&cur], &["embedding"], vec![Attr::Int("axis", 1)]);
    b.output("embedding", &[Dim::param("N"), (variant.embedding_dim() as i64).into()]);
    b.build()
}

/// Emits Conv -> BatchNormalization [-> PRelu] reading `input`; returns the output tensor name.
fn conv_layer(b: &mut GraphBuilder, layer: &ConvLayer, input: &str) -> String {
    let (name, g) = (&layer.name, &layer.geom);
    let node = name.replace('.', "_");
    let c = g.cout as i64;
    let weight_dims = [c, (g.cin / g.group) as i64, g.kh as i64, g.kw as i64];
    b.initializer(&format!("{name}.conv.weight"), &weight_dims, layer.weight.clone());
    let (s, p) = (g.stride as i64, g.pad as i64);
    // Every attribute written explicitly, in the alphabetical order PyTorch uses.
    let conv_attrs = vec![
        Attr::Ints("dilations", vec![1, 1]),
        Attr::Int("group", g.group as i64),
        Attr::Ints("kernel_shape", vec![g.kh as i64, g.kw as i64]),
        Attr::Ints("pads", vec![p, p, p, p]),
        Attr::Ints("strides", vec![s, s]),
    ];
    let conv_out = format!("{name}.conv_out");
    b.named_node(&node, "Conv", &[input, &format!("{name}.conv.weight")], &[&conv_out], conv_attrs);

    let bn = |field: &str| format!("{name}.bn.{field}");
    b.initializer(&bn("weight"), &[c], layer.gamma.clone());
    b.initializer(&bn("bias"), &[c], layer.beta.clone());
    b.initializer(&bn("running_mean"), &[c], layer.mean.clone());
    b.initializer(&bn("running_var"), &[c], layer.var.clone());
    let bn_out = format!("{name}.bn_out");
    let bn_inputs = [conv_out.as_str(), &bn("weight"), &bn("bias"), &bn("running_mean"), &bn("running_var")];
    // PyTorch also writes the (inference-irrelevant) momentum, as 1 - its own momentum.
    let bn_attrs = vec![Attr::Float("epsilon", BN_EPSILON), Attr::Float("momentum", 0.9)];
    b.named_node(&format!("{node}_bn"), "BatchNormalization", &bn_inputs, &[&bn_out], bn_attrs);

    let Some(slope) = &layer.slope else {
        return bn_out;
    };
    let slope_name = format!("{name}.prelu.weight");
    b.initializer(&slope_name, &[c, 1, 1], slope.clone());
    let prelu_out = format!("{name}.prelu_out");
    b.named_node(&format!("{node}_prelu"), "PRelu", &[&bn_out, &slope_name], &[&prelu_out], vec![]);
    prelu_out
}
