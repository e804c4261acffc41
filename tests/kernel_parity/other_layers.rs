//! The other layers: GDConv, pooling and linear, input normalisation, standalone elementwise
//! operations, residual variants, and the detector's operations.

use super::*;

/// The global depthwise convolution: kernel = the whole (square or not) feature map, on a channel
/// count that is not a multiple of 4, on more channels than a workgroup has invocations (one
/// invocation a channel: several workgroups, the last partly idle), with more taps than a
/// workgroup has invocations, and as in MobileFaceNet's head (GDConv, BN, 1x1 linear conv, BN,
/// Flatten).
#[test]
fn gdconv() {
    let gd = |kh, kw| ConvSpec::new(0, 0).kernel(kh, kw).group(Group::Depthwise).no_bias();
    let mut cases = vec![
        Case::new("7x7 on 5 channels", Net::new(70, &[5, 7, 7]).conv(gd(7, 7)), &["gdconv"]).batch(3),
        Case::new("7x6 on 13 channels + BN", Net::new(71, &[13, 7, 6]).conv(gd(7, 6)).bn(), &["gdconv"]),
        Case::new("7x7 on 133 channels + BN", Net::new(75, &[133, 7, 7]).conv(gd(7, 7)).bn(), &["gdconv"]).batch(2),
        Case::new("9x11 (99 taps > workgroup) + bias", Net::new(72, &[5, 9, 11]).conv(ConvSpec { bias: true, ..gd(9, 11) }.pad(Pad::Auto("VALID"))), &["gdconv"]).batch(3),
    ];
    let mut net = Net::new(73, &[13, 7, 7]);
    net.conv(gd(7, 7)).bn().conv(ConvSpec::new(7, 1).no_bias()).bn().flatten();
    cases.push(Case::new("MobileFaceNet head", &mut net, &["gdconv", "pointwise"]).batch(3).dump_has("GdConv[]"));
    // Padded, it is an ordinary depthwise conv.
    let mut net = Net::new(74, &[5, 7, 7]);
    net.conv(gd(7, 7).same(1));
    cases.push(Case::new("7x7 padded is not global", &mut net, &["depthwise"]));
    run_cases(cases);
}

/// GlobalAveragePool (lowered to the GDConv kernel with uniform weights), Gemm in all its forms and
/// MatMul, after Flatten or Reshape.
#[test]
fn pooling_and_linear() {
    let mut cases = vec![
        Case::new("GAP 13x7x9", Net::new(80, &[13, 7, 9]).global_average_pool(), &["gdconv"]).batch(3),
        Case::new("GAP 5x13x13", Net::new(81, &[5, 13, 13]).global_average_pool(), &["gdconv"]),
        Case::new("GAP 70x3x3", Net::new(82, &[70, 3, 3]).global_average_pool(), &["gdconv"]).batch(2),
    ];
    type GemmForm = (&'static str, bool, f32, f32, Option<&'static [usize]>);
    let forms: [GemmForm; 6] = [
        ("plain", false, 1.0, 1.0, None),
        ("transB", true, 1.0, 1.0, None),
        ("alpha 0.5, C [M]", false, 0.5, 1.0, Some(&[7])),
        ("transB, beta 2, C [1, M]", true, 1.0, 2.0, Some(&[1, 7])),
        ("alpha 2, beta 0.25, scalar C", true, 2.0, 0.25, Some(&[1])),
        ("transB, alpha -1, C [M]", true, -1.0, 1.0, Some(&[7])),
    ];
    for (i, (form, trans_b, alpha, beta, c)) in forms.into_iter().enumerate() {
        let mut net = Net::new(82 + i as u64, &[13, 7, 9]);
        if i % 2 == 0 {
            net.flatten();
        } else {
            net.global_average_pool().flatten();
        }
        net.gemm(7, trans_b, alpha, beta, c);
        let templates: &[&str] = if i % 2 == 0 { &["linear"] } else { &["gdconv", "linear"] };
        cases.push(Case::new(format!("Gemm {form}"), &mut net, templates).batch(1 + 2 * (i % 2)));
    }
    let mut net = Net::new(90, &[5, 7, 9]);
    net.reshape(&[0, -1]).matmul(13);
    cases.push(Case::new("Reshape [0,-1] + MatMul", &mut net, &["linear"]).batch(3));
    let mut net = Net::new(91, &[13, 1, 1]);
    net.flatten().matmul(5).act(Activation::Relu);
    cases.push(Case::new("Flatten + MatMul + Relu", &mut net, &["linear"]).dump_has("Linear[act=relu]"));
    let mut net = Net::new(92, &[13, 3, 3]);
    net.flatten().gemm(5, true, 1.0, 1.0, Some(&[5])).bn().act(Activation::PRelu);
    cases.push(Case::new("Gemm + BN + PRelu slope [C] on [N, C]", &mut net, &["linear"]).batch(3).dump_has("Linear[act=prelu]"));
    let mut net = Net::new(93, &[5, 3, 3]);
    net.flatten();
    let flat = net.cur.clone();
    net.gemm(45, true, 1.0, 1.0, Some(&[45])).binary("Add", &flat);
    cases.push(Case::new("Gemm + Add (residual of the flattened input)", &mut net, &["linear"]).dump_has("Linear[+residual]"));
    run_cases(cases);
}

/// The input normalisation `(x - 127.5) / 128` (as Sub then Mul, or per channel as Sub then Div):
/// folded into the weights of an unpadded conv, kept as a prologue of a zero-padded one (a raw
/// pixel 0 in the padding would otherwise become -127.5/128: wrong at every border pixel).
#[test]
fn input_normalisation() {
    let mut cases = Vec::new();
    let mut net = Net::new(100, &[3, 13, 13]);
    net.normalise().conv(ConvSpec::new(5, 3).same(1).no_bias()).bn().act(Activation::PRelu);
    cases.push(Case::new("into a zero-padded 3x3 conv", &mut net, &["conv2d"]).dump_has("prologue=affine"));
    let mut net = Net::new(101, &[3, 7, 9]);
    net.normalise().conv(ConvSpec::new(13, 3).stride(2).pad(Pad::Auto("SAME_UPPER")));
    cases.push(Case::new("into a SAME_UPPER stride-2 conv", &mut net, &["conv2d"]).batch(3).dump_has("prologue=affine"));
    let mut net = Net::new(102, &[3, 7, 9]);
    net.normalise().conv(ConvSpec::new(5, 3));
    cases.push(Case::new("into an unpadded 3x3 conv (folded)", &mut net, &["conv2d"]).dump_lacks("prologue").dump_lacks("Affine"));
    let mut net = Net::new(103, &[3, 7, 9]);
    net.normalise().conv(ConvSpec::new(5, 1)).act(Activation::Relu);
    cases.push(Case::new("into a 1x1 conv (folded)", &mut net, &["pointwise"]).batch(3).dump_lacks("prologue"));
    // Per-channel mean and std, into a padded depthwise conv: the prologue needs the conv2d kernel.
    let mut net = Net::new(104, &[3, 9, 7]);
    let mean = net.constant("mean", &[1, 3, 1, 1], vec![120.0, 110.0, 100.0]);
    let std = net.constant("std", &[3, 1, 1], vec![60.0, 64.0, 70.0]);
    net.binary("Sub", &mean).binary("Div", &std).conv(ConvSpec::new(0, 3).group(Group::Depthwise).same(1));
    cases.push(Case::new("per channel into a padded depthwise conv", &mut net, &["conv2d"]).dump_has("prologue=affine"));
    let mut net = Net::new(105, &[3, 9, 7]);
    net.normalise().conv(ConvSpec::new(0, 3).group(Group::Depthwise).pad(Pad::Auto("VALID")));
    cases.push(Case::new("into an unpadded depthwise conv (folded)", &mut net, &["depthwise"]).dump_lacks("prologue"));
    let mut cases: Vec<Case> = cases.into_iter().map(Case::pixels).collect();
    // A standalone BatchNormalization on the input is an affine map too.
    let mut net = Net::new(106, &[3, 9, 7]);
    net.bn().conv(ConvSpec::new(5, 3).pad(Pad::Explicit([1, 0, 2, 1])));
    cases.push(Case::new("BN of the input into an asymmetrically padded conv", &mut net, &["conv2d"]).dump_has("prologue=affine"));
    run_cases(cases);
}

/// Element-wise operations that cannot fuse into a producer run as their own kernel.
#[test]
fn standalone_elementwise() {
    let mut cases = Vec::new();
    // PRelu of a conv output that is read twice: the conv cannot absorb it.
    let mut net = Net::new(110, &[5, 7, 9]);
    net.conv(ConvSpec::new(13, 1));
    let y = net.cur.clone();
    net.act(Activation::PRelu).binary("Add", &y);
    cases.push(Case::new("PRelu of a conv output used twice", &mut net, &["pointwise", "elementwise", "elementwise"]));
    // Add (and Mul, Sub, Div) of two activations, neither produced by a conv.
    for (i, op) in ["Add", "Mul", "Sub", "Div"].into_iter().enumerate() {
        let mut net = Net::new(111 + i as u64, &[13, 7, 9]);
        net.unary("Sigmoid", &[], vec![]);
        let s = net.cur.clone();
        net.cur = "x".into();
        net.act(Activation::Relu).binary(op, &s);
        cases.push(Case::new(format!("{op} of Relu(x) and Sigmoid(x)"), &mut net, &["elementwise"; 3]).batch(3));
    }
    cases.push(Case::new("Relu of the graph input", Net::new(120, &[5, 7, 9]).act(Activation::Relu), &["elementwise"]).batch(3));
    cases.push(Case::new("Clip of the graph input", Net::new(121, &[5, 7, 9]).act(Activation::Clip), &["elementwise"]));
    cases.push(Case::new("PRelu of the graph input", Net::new(122, &[13, 3, 3]).act(Activation::PRelu), &["elementwise"]));
    cases.push(Case::new("Sigmoid of [N, C]", Net::new(123, &[13, 3, 3]).flatten().act(Activation::Sigmoid), &["elementwise"]));
    // Per-channel constants: one affine kernel, or folded into a conv that produces the operand.
    let constants: [(&str, &[usize]); 4] = [("Mul", &[5, 1, 1]), ("Div", &[1, 5, 1, 1]), ("Add", &[5, 1, 1]), ("Sub", &[1])];
    for (i, (op, dims)) in constants.into_iter().enumerate() {
        let mut net = Net::new(130 + i as u64, &[5, 7, 9]);
        let c = net.uniform("c", dims, 0.5, 2.0);
        net.binary(op, &c);
        cases.push(Case::new(format!("{op} by constant {dims:?}"), &mut net, &["elementwise"]).dump_has("Affine("));
        let mut net = Net::new(140 + i as u64, &[13, 7, 9]);
        net.conv(ConvSpec::new(5, 1));
        let c = net.uniform("c", dims, 0.5, 2.0);
        net.binary(op, &c);
        cases.push(Case::new(format!("conv then {op} by constant {dims:?} (folded)"), &mut net, &["pointwise"]).dump_lacks("Affine"));
    }
    let mut net = Net::new(150, &[5, 7, 9]);
    let c = net.uniform("c", &[5, 1, 1], 0.5, 2.0);
    net.binary("Mul", &c).act(Activation::Relu);
    cases.push(Case::new("Mul by constant then Relu", &mut net, &["elementwise", "elementwise"]));
    let mut net = Net::new(151, &[5, 7, 9]);
    net.bn();
    cases.push(Case::new("BatchNormalization of the graph input", &mut net, &["elementwise"]).batch(3));
    // The constant first: c - x is an affine map with scale -1.
    let mut net = Net::new(152, &[5, 7, 9]);
    let c = net.uniform("c", &[5, 1, 1], -1.0, 1.0);
    let x = net.cur.clone();
    net.node("Sub", &[&c, &x], vec![], vec![5, 7, 9]);
    cases.push(Case::new("constant minus x", &mut net, &["elementwise"]));
    // A conv output read by two activations, summed.
    let mut net = Net::new(153, &[5, 7, 9]);
    net.conv(ConvSpec::new(5, 3).same(1));
    let y = net.cur.clone();
    net.act(Activation::Sigmoid);
    let s = net.cur.clone();
    net.cur = y;
    net.act(Activation::Relu).binary("Add", &s);
    cases.push(Case::new("two activations of one conv, added", &mut net, &["conv2d", "elementwise", "elementwise", "elementwise"]));
    run_cases(cases);
}

/// Adds that meet convs in other ways than the bottleneck: two conv branches, an activation after
/// the Add (must stay outside the epilogue), and a shortcut computed after the conv.
#[test]
fn residual_variants() {
    let mut cases = Vec::new();
    let mut net = Net::new(160, &[5, 7, 9]);
    net.conv(ConvSpec::new(13, 1));
    let a = net.cur.clone();
    net.cur = "x".into();
    net.shape = vec![5, 7, 9];
    net.conv(ConvSpec::new(13, 3).same(1)).binary("Add", &a);
    cases.push(Case::new("Add of two conv branches", &mut net, &["pointwise", "conv2d"]).dump_has("+residual"));
    let mut net = Net::new(161, &[5, 7, 9]);
    net.conv(ConvSpec::new(5, 3).same(1)).binary("Add", "x").act(Activation::Relu);
    cases.push(Case::new("Relu after the Add", &mut net, &["conv2d", "elementwise"]).batch(3).dump_has("+residual"));
    let mut net = Net::new(163, &[6, 7, 12]);
    net.conv(ConvSpec::new(0, 3).group(Group::Depthwise).same(1)).act(Activation::PRelu).binary("Add", "x");
    cases.push(Case::new("depthwise 3x3 + PRelu + Add", &mut net, &["depthwise3x3_vec4"]).batch(2).dump_has("+residual"));
    // The shortcut is computed by a node that comes after the conv in the model.
    let mut net = Net::new(162, &[5, 7, 9]);
    net.conv(ConvSpec::new(5, 1));
    let y = net.cur.clone();
    net.cur = "x".into();
    net.act(Activation::Sigmoid).binary("Add", &y);
    cases.push(Case::new("shortcut computed after the conv", &mut net, &["elementwise", "pointwise"]).dump_has("+residual"));
    run_cases(cases);
}

impl Net {
    fn max_pool(&mut self, k: usize, s: usize, pads: Option<[i64; 4]>, ceil: bool) -> &mut Self {
        let (c, h, w) = (self.shape[0], self.shape[1], self.shape[2]);
        let p = pads.unwrap_or([0; 4]).map(|v| v as usize);
        let out = |size: usize, p0: usize, p1: usize| {
            let span = size + p0 + p1 - k;
            let mut o = if ceil { span.div_ceil(s) + 1 } else { span / s + 1 };
            if ceil && (o - 1) * s >= size + p0 {
                o -= 1;
            }
            o
        };
        let mut attrs = vec![Attr::Ints("kernel_shape", vec![k as i64; 2]), Attr::Ints("strides", vec![s as i64; 2])];
        if let Some(p) = pads {
            attrs.push(Attr::Ints("pads", p.to_vec()));
        }
        if ceil {
            attrs.push(Attr::Int("ceil_mode", 1));
        }
        let x = self.cur.clone();
        let shape = vec![c, out(h, p[0], p[2]), out(w, p[1], p[3])];
        self.node("MaxPool", &[&x], attrs, shape)
    }

    /// Resize (opset >= 11) in nearest mode by `scales` on H and W.
    fn upsample(&mut self, fh: usize, fw: usize, transform: &str, rounding: &str) -> &mut Self {
        let (c, h, w) = (self.shape[0], self.shape[1], self.shape[2]);
        let roi = self.constant("roi", &[0], vec![]);
        let scales = self.constant("scales", &[4], vec![1.0, 1.0, fh as f32, fw as f32]);
        let attrs = vec![Attr::Str("mode", "nearest".into()), Attr::Str("coordinate_transformation_mode", transform.into()), Attr::Str("nearest_mode", rounding.into())];
        let x = self.cur.clone();
        self.node("Resize", &[&x, &roi, &scales], attrs, vec![c, h * fh, w * fw])
    }

    fn transpose(&mut self, perm: &[usize]) -> &mut Self {
        let shape = perm[1..].iter().map(|&a| self.shape[a - 1]).collect();
        let x = self.cur.clone();
        self.node("Transpose", &[&x], vec![Attr::Ints("perm", perm.iter().map(|&a| a as i64).collect())], shape)
    }

    /// Reshape to `[N, -1, k]` with the target computed as YuNet's dynamic export does:
    /// Shape -> Gather(0) -> Unsqueeze -> Concat with constants.
    fn dynamic_reshape(&mut self, k: i64) -> &mut Self {
        let x = self.cur.clone();
        let (shape, n, n1, target) = (self.fresh("shape"), self.fresh("n"), self.fresh("n1"), self.fresh("target"));
        let (zero, minus, last) = (self.fresh("zero"), self.fresh("minus"), self.fresh("last"));
        self.builder.initializer_i64(&zero, &[], vec![0]);
        self.builder.initializer_i64(&minus, &[1], vec![-1]);
        self.builder.initializer_i64(&last, &[1], vec![k]);
        self.builder.node("Shape", &[&x], &[&shape], vec![]);
        self.builder.node("Gather", &[&shape, &zero], &[&n], vec![Attr::Int("axis", 0)]);
        self.builder.node("Unsqueeze", &[&n], &[&n1], vec![Attr::Ints("axes", vec![0])]);
        self.builder.node("Concat", &[&n1, &minus, &last], &[&target], vec![Attr::Int("axis", 0)]);
        let total: usize = self.shape.iter().product();
        self.node("Reshape", &[&x, &target], vec![], vec![total / k as usize, k as usize])
    }
}

/// The data-movement ops of a detector (YuNet): max pooling, nearest upsampling, transposes and
/// the shape arithmetic of a dynamic export folded at import.
#[test]
fn detector_ops() {
    let mut cases = vec![
        Case::new("MaxPool 2x2 s2", Net::new(100, &[5, 8, 12]).max_pool(2, 2, None, false), &["maxpool"]).batch(3).max_batch(2),
        Case::new("MaxPool 3x3 s2 pads 1 ceil", Net::new(101, &[3, 9, 11]).max_pool(3, 2, Some([1, 1, 1, 1]), true), &["maxpool"]),
        Case::new("MaxPool 3x3 s1 asymmetric pads", Net::new(102, &[4, 7, 6]).max_pool(3, 1, Some([0, 1, 2, 1]), false), &["maxpool"]),
        Case::new("MaxPool 2x2 s2 odd size, ceil", Net::new(103, &[2, 7, 9]).max_pool(2, 2, None, true), &["maxpool"]).batch(2),
        Case::new("Resize x2 asymmetric floor", Net::with_opset(104, 11, &[4, 5, 6]).upsample(2, 2, "asymmetric", "floor"), &["upsample"]).batch(2),
        Case::new("Resize x3,x2 half_pixel", Net::with_opset(105, 13, &[3, 4, 5]).upsample(3, 2, "half_pixel", "round_prefer_floor"), &["upsample"]),
        Case::new("Transpose NCHW -> NHWC", Net::new(106, &[5, 3, 7]).transpose(&[0, 2, 3, 1]), &["transpose"]).batch(2),
        Case::new("Transpose [0,3,1,2]", Net::new(107, &[5, 3, 7]).transpose(&[0, 3, 1, 2]), &["transpose"]),
        Case::new("Transpose [0,2,1] of [N,A,B]", Net::new(108, &[6, 11]).transpose(&[0, 2, 1]), &["transpose"]).batch(2),
    ];
    let mut net = Net::with_opset(109, 11, &[8, 8, 8]);
    net.conv(ConvSpec::new(8, 3).same(1)).act(Activation::Relu);
    let skip = net.cur.clone();
    net.max_pool(2, 2, None, false).conv(ConvSpec::new(8, 1)).upsample(2, 2, "asymmetric", "floor").binary("Add", &skip);
    cases.push(Case::new("FPN: conv, pool, conv, upsample, add", &mut net, &["conv2d", "maxpool", "pointwise_vec4", "upsample", "elementwise"]).batch(2));
    let mut net = Net::with_opset(110, 11, &[4, 6, 5]);
    net.conv(ConvSpec::new(4, 1)).transpose(&[0, 2, 3, 1]).dynamic_reshape(4).act(Activation::Sigmoid);
    cases
        .push(Case::new("YuNet head: transpose, dynamic reshape, sigmoid", &mut net, &["pointwise", "transpose", "elementwise"]).batch(3).dump_lacks("Shape").dump_lacks("Concat"));
    run_cases(cases);
}

impl Net {
    /// Concat of `inputs` (names of values of per-sample shapes `shapes`) along `axis` (batched).
    fn concat(&mut self, inputs: &[&str], shapes: &[Vec<usize>], axis: usize) -> &mut Self {
        let mut shape = shapes[0].clone();
        shape[axis - 1] = shapes.iter().map(|s| s[axis - 1]).sum();
        self.node("Concat", inputs, vec![Attr::Int("axis", axis as i64)], shape)
    }
}

/// Concatenation of activations: two branches joined on channels (an FPN or inception join), and
/// one value repeated six times along H (two chained kernels of at most four inputs).
#[test]
fn concat_activations() {
    let mut net = Net::new(120, &[4, 6, 10]);
    net.conv(ConvSpec::new(5, 1)).act(Activation::Relu);
    let (a, sa) = (net.cur.clone(), net.shape.clone());
    net.cur = "x".into();
    net.shape = vec![4, 6, 10];
    net.conv(ConvSpec::new(3, 3).same(1));
    let (b, sb) = (net.cur.clone(), net.shape.clone());
    net.concat(&[&a, &b], &[sa, sb], 1);
    let mut cases = vec![Case::new("two branches on channels", &mut net, &["pointwise_vec4", "conv2d", "concat"]).batch(3).max_batch(2)];
    let mut net = Net::new(121, &[2, 3, 5]);
    let six = vec!["x"; 6];
    net.concat(&six, &vec![vec![2, 3, 5]; 6], 2);
    cases.push(Case::new("six copies along H", &mut net, &["concat", "concat"]).batch(2));
    let mut net = Net::new(122, &[3, 7]);
    net.concat(&["x", "x", "x"], &vec![vec![3, 7]; 3], 2);
    cases.push(Case::new("rank 3, last axis", &mut net, &["concat"]));
    run_cases(cases);
}
