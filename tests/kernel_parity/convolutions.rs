//! Convolution cases: every geometry, the extras (grouping, padding, prologues), the epilogues,
//! inverted residual blocks and the padded planes of the vec4 GEMMs.

use super::*;

/// Every kernel size x stride x grouping, with the padding, spatial size, channel count, batch and
/// bias drawn from seeded decks (so each option appears several times).
#[test]
fn conv_geometry() {
    const PADS: [&str; 6] = ["none", "symmetric", "asymmetric", "SAME_UPPER", "SAME_LOWER", "VALID"];
    const SPATIAL: [[usize; 2]; 4] = [[7, 9], [13, 13], [11, 8], [9, 7]];
    let combos: Vec<(usize, usize, Group)> =
        [1, 3, 5, 7].into_iter().flat_map(|k| [1, 2].into_iter().flat_map(move |s| [Group::Dense, Group::Depthwise, Group::Groups(2)].map(|g| (k, s, g)))).collect();
    let n = combos.len();
    let mut rng = Rng::new(0xC0_4E);
    let (pads, spatial) = (deck(&mut rng, &PADS, n), deck(&mut rng, &SPATIAL, n));
    let (batches, biases) = (deck(&mut rng, &[1, 3], n), deck(&mut rng, &[true, false], n));
    let odd_channels = deck(&mut rng, &[3, 5, 13], n);
    let cases = combos
        .iter()
        .enumerate()
        .map(|(i, &(k, stride, group))| {
            // Grouped convs need an even channel count: 6 and 10 are not multiples of 4 either.
            let (c_in, c_out) = match group {
                Group::Groups(_) => ([6, 10][(i / 3) % 2], [10, 6, 2][(i / 3) % 3]),
                _ => (odd_channels[i], odd_channels[(i + 1) % n]),
            };
            let pad = match pads[i] {
                "none" => Pad::None,
                "symmetric" => Pad::Explicit([k / 2; 4]),
                "asymmetric" => Pad::Explicit([k / 2, 0, k - 1, k.div_ceil(2)]),
                auto => Pad::Auto(auto),
            };
            let mut spec = ConvSpec::new(c_out, k).stride(stride).group(group).pad(pad);
            if !biases[i] {
                spec = spec.no_bias();
            }
            let mut net = Net::new(i as u64, &[c_in, spatial[i][0], spatial[i][1]]);
            net.conv(spec);
            let templates = net.conv_templates.clone();
            let name = format!("conv k{k} s{stride} {group:?} {:?} {c_in}->{c_out} in {:?} batch {}", pad, spatial[i], batches[i]);
            Case::new(name, &mut net, &templates).batch(batches[i])
        })
        .collect();
    run_cases(cases);
}

/// Convolutions the table above does not reach: a depthwise conv with a channel multiplier
/// (group = C, 2C outputs), more than two groups, a 1x1 conv that is not pointwise (padded),
/// non-square kernels and strides (which catch a swapped axis), and a batch split in submissions.
#[test]
fn conv_extras() {
    let cases = vec![
        Case::new("depthwise x2 multiplier", Net::new(1, &[5, 9, 7]).conv(ConvSpec::new(10, 3).group(Group::Groups(5)).same(1)), &["conv2d"]),
        Case::new("3 groups, stride 2", Net::new(2, &[9, 13, 13]).conv(ConvSpec::new(6, 3).group(Group::Groups(3)).stride(2)), &["conv2d"]),
        Case::new("padded 1x1", Net::new(3, &[3, 7, 9]).conv(ConvSpec::new(5, 1).same(1)), &["conv2d"]),
        Case::new("1x3 kernel", Net::new(4, &[5, 7, 9]).conv(ConvSpec::new(3, 1).kernel(1, 3).pad(Pad::Explicit([0, 1, 0, 1]))), &["conv2d"]),
        Case::new("strides 1x2", Net::new(6, &[5, 9, 11]).conv(ConvSpec::new(13, 3).strides(1, 2).same(1)), &["conv2d"]).batch(3),
        Case::new("strides 2x1", Net::new(7, &[3, 13, 13]).conv(ConvSpec::new(5, 5).strides(2, 1).pad(Pad::Auto("SAME_LOWER"))), &["conv2d"]),
        // Tiles of 32 and 16 output channels (8 and 4 vectors of weights a tap): every lane of a
        // subgroup variant's broadcast is used.
        Case::new("3x3 stride 2, 3 -> 64 (2 tiles of 32)", Net::new(17, &[3, 18, 22]).conv(ConvSpec::new(64, 3).stride(2).same(1)), &["conv2d"]).batch(2),
        Case::new("3x3, 5 -> 48 (3 tiles of 16, 3 workgroups a tile)", Net::new(18, &[5, 11, 21]).conv(ConvSpec::new(48, 3).same(1)), &["conv2d"]),
        Case::new("3x3, 2 groups, 6 -> 40 (tiles of 4: 20 channels a group)", Net::new(19, &[6, 9, 9]).conv(ConvSpec::new(40, 3).group(Group::Groups(2))), &["conv2d"]),
        Case::new(
            "depthwise 5x3, strides 2x1",
            Net::new(8, &[13, 11, 9]).conv(ConvSpec::new(0, 0).kernel(5, 3).strides(2, 1).group(Group::Depthwise).pad(Pad::Auto("SAME_UPPER"))),
            &["depthwise"],
        ),
        Case::new(
            "depthwise 3x5, strides 1x2",
            Net::new(9, &[5, 9, 11]).conv(ConvSpec::new(0, 0).kernel(3, 5).strides(1, 2).group(Group::Depthwise).pad(Pad::Explicit([0, 2, 1, 1]))),
            &["depthwise"],
        )
        .batch(3),
        Case::new("batch 3 in submissions of 2", Net::new(5, &[13, 13, 13]).conv(ConvSpec::new(5, 1)), &["pointwise"]).batch(3).max_batch(2),
        Case::new(
            "depthwise 3x3 same, 3 vec4s a row, 5 rows (a partial band of 4)",
            Net::new(7, &[6, 5, 12]).conv(ConvSpec::new(0, 3).group(Group::Depthwise).same(1)),
            &["depthwise3x3_vec4"],
        )
        .batch(3),
        Case::new(
            "depthwise 3x3 stride 2, 16 -> 8 columns, 9 -> 5 rows",
            Net::new(10, &[5, 9, 16]).conv(ConvSpec::new(0, 3).group(Group::Depthwise).stride(2).same(1)),
            &["depthwise3x3_vec4"],
        )
        .batch(2),
        Case::new(
            "depthwise 3x3 stride 2, 24 -> 12 columns (3 vec4s: a half-empty chunk)",
            Net::new(11, &[3, 8, 24]).conv(ConvSpec::new(0, 3).group(Group::Depthwise).stride(2).same(1)),
            &["depthwise3x3_vec4"],
        ),
        Case::new(
            "depthwise 3x3 strides 2x1, pads top 0 bottom 2",
            Net::new(12, &[4, 11, 8]).conv(ConvSpec::new(0, 3).group(Group::Depthwise).strides(2, 1).pad(Pad::Explicit([0, 1, 2, 1]))),
            &["depthwise3x3_vec4"],
        ),
        // The 3x3 kernels walk at most 9 input rows a band (vertical strides 1 and 2): stride 3
        // goes to the general depthwise kernel.
        Case::new("depthwise 3x3 strides 3x1", Net::new(21, &[4, 13, 8]).conv(ConvSpec::new(0, 3).group(Group::Depthwise).strides(3, 1).same(1)), &["depthwise_vec4"]),
        Case::new(
            "depthwise 3x3 stride 2 on rows of 14 (MobileFaceNet's 14x14 -> 7x7)",
            Net::new(17, &[6, 14, 14]).conv(ConvSpec::new(0, 3).group(Group::Depthwise).stride(2).same(1)),
            &["depthwise3x3"],
        )
        .batch(2),
        Case::new(
            "depthwise 3x3 stride 2 on rows of 18 -> 9 (a chunk of 8 and one of 1)",
            Net::new(20, &[3, 9, 18]).conv(ConvSpec::new(0, 3).group(Group::Depthwise).stride(2).same(1)),
            &["depthwise3x3"],
        ),
        Case::new(
            "depthwise 3x3 on rows of 10 (a chunk of 8 and one of 2), 9 rows",
            Net::new(18, &[5, 9, 10]).conv(ConvSpec::new(0, 3).group(Group::Depthwise).same(1)),
            &["depthwise3x3"],
        ),
        Case::new(
            "depthwise 3x3 strides 2x1 on rows of 7, pads top 0 bottom 2",
            Net::new(19, &[4, 11, 7]).conv(ConvSpec::new(0, 3).group(Group::Depthwise).strides(2, 1).pad(Pad::Explicit([0, 1, 2, 1]))),
            &["depthwise3x3"],
        ),
        Case::new(
            "depthwise 3x3 strides 1x2, no right padding",
            Net::new(13, &[4, 6, 8]).conv(ConvSpec::new(0, 3).group(Group::Depthwise).strides(1, 2).pad(Pad::Explicit([1, 1, 1, 0]))),
            &["depthwise3x3_vec4"],
        ),
        Case::new(
            "vec4 depthwise 5x3, no padding, stride 2x1",
            Net::new(8, &[3, 11, 8]).conv(ConvSpec::new(0, 0).kernel(5, 1).strides(2, 1).group(Group::Depthwise)),
            &["depthwise_vec4"],
        ),
        Case::new(
            "vec4 depthwise 5x5, pads 2 (left 4, right 0)",
            Net::new(9, &[4, 6, 8]).conv(ConvSpec::new(0, 0).kernel(5, 5).group(Group::Depthwise).pad(Pad::Explicit([2, 4, 2, 0]))),
            &["depthwise_vec4"],
        ),
        Case::new("vec4 pointwise, batch 3 in submissions of 2", Net::new(6, &[13, 4, 5]).conv(ConvSpec::new(11, 1)), &["pointwise_vec4"]).batch(3).max_batch(2),
        Case::new("pointwise 7x7, 6 -> 300 (2 workgroups of 64 across the channels)", Net::new(21, &[6, 7, 7]).conv(ConvSpec::new(300, 1)), &["pointwise"]).batch(2),
        Case::new("pointwise 3x3, 9 -> 2 (a workgroup of 8, one invocation live)", Net::new(22, &[9, 3, 3]).conv(ConvSpec::new(2, 1)), &["pointwise"]),
        Case::new("vec4 pointwise, 3 workgroups of 32 a tile (24 idle), 2 tiles", Net::new(14, &[6, 24, 12]).conv(ConvSpec::new(37, 1)), &["pointwise_vec4"]),
        Case::new("vec4 pointwise, 2 workgroups of 32 a tile, 3 tiles (the last of 6 channels)", Net::new(15, &[5, 8, 30]).conv(ConvSpec::new(70, 1)), &["pointwise_vec4"])
            .batch(2),
        Case::new("vec4 pointwise, 9 groups of 4 input channels (odd, the last partial)", Net::new(16, &[35, 4, 8]).conv(ConvSpec::new(32, 1)), &["pointwise_vec4"]),
        // Many groups of input channels (16 loop iterations of 8 channels and a partial last
        // group) into 4 tiles.
        Case::new("vec4 pointwise, 4 tiles, 33 groups of 4 input channels", Net::new(22, &[130, 4, 8]).conv(ConvSpec::new(128, 1)), &["pointwise_vec4"]).batch(2),
        // Rows of 576 pixels: the subgroup variant touches the next iteration's cache lines, up to
        // channel 23 of 13 (clamped), on 5 workgroups of 32 a tile (the last half idle).
        Case::new("vec4 pointwise on rows of 576 pixels, 13 -> 40", Net::new(23, &[13, 24, 24]).conv(ConvSpec::new(40, 1)), &["pointwise_vec4"]).batch(2),
        // 64 tiles by 257 groups of input channels: 16448 rows, more than a weight texture of
        // every adapter holds (8192), so the other pointwise kernel (1028 rows of 512 texels).
        Case::new("pointwise too large for a weight texture, 1028 -> 2048 on 2x2", Net::new(24, &[1028, 2, 2]).conv(ConvSpec::new(2048, 1)), &["pointwise"]),
        // 8200 input channels on one pixel: too many rows for either pointwise kernel's texture.
        Case::new("pointwise on 8200 input channels (too many for a weight texture)", Net::new(26, &[8200, 1, 1]).conv(ConvSpec::new(2, 1)), &["conv2d"]),
        // 8200 channels: more filters than a weight texture has rows, so no depthwise 3x3 kernel.
        Case::new(
            "depthwise 3x3 on 8200 channels (too many for a weight texture)",
            Net::new(25, &[8200, 2, 4]).conv(ConvSpec::new(0, 3).group(Group::Depthwise).same(1)),
            &["depthwise_vec4"],
        ),
    ];
    run_cases(cases);
}

/// Conv -> BatchNormalization -> activation, on each conv kernel: one dispatch, BN folded into the
/// weights and the activation in the epilogue.
#[test]
fn conv_bn_activation_epilogues() {
    let acts = [Activation::None, Activation::Relu, Activation::Sigmoid, Activation::PRelu, Activation::PReluScalar, Activation::Clip];
    type Layer = (&'static str, [usize; 3], ConvSpec, &'static str);
    let layers: [Layer; 7] = [
        ("pointwise 5->13", [5, 7, 9], ConvSpec::new(13, 1).no_bias(), "pointwise"),
        ("depthwise 3x3", [13, 9, 7], ConvSpec::new(0, 3).group(Group::Depthwise).same(1).no_bias(), "depthwise3x3"),
        ("pointwise vec4 6->21", [6, 4, 6], ConvSpec::new(21, 1), "pointwise_vec4"),
        ("depthwise 3x3 on vec4 rows", [13, 6, 8], ConvSpec::new(0, 3).group(Group::Depthwise).same(1).no_bias(), "depthwise3x3_vec4"),
        ("depthwise 3x3 s2 on vec4 rows", [7, 6, 16], ConvSpec::new(0, 3).group(Group::Depthwise).stride(2).same(1), "depthwise3x3_vec4"),
        ("dense 3x3 s2", [5, 13, 13], ConvSpec::new(3, 3).stride(2).pad(Pad::Auto("SAME_UPPER")), "conv2d"),
        ("gdconv 7x7", [13, 7, 7], ConvSpec::new(0, 7).group(Group::Depthwise).no_bias(), "gdconv"),
    ];
    let mut cases = Vec::new();
    for (li, (layer, shape, spec, template)) in layers.iter().enumerate() {
        for (ai, &act) in acts.iter().enumerate() {
            let mut net = Net::new((li * 10 + ai) as u64, shape);
            net.conv(*spec).bn().act(act);
            let case = Case::new(format!("{layer} + BN + {act:?}"), &mut net, &[template]).batch(1 + 2 * (ai % 2));
            cases.push(case.dump_lacks("BatchNorm[").dump_lacks("Act["));
        }
    }
    // Clip with its bounds as attributes (opset 9), and with only a lower bound (opset 11).
    let mut net = Net::with_opset(50, 9, &[5, 7, 9]);
    net.conv(ConvSpec::new(13, 1)).bn().clip(Some(0.0), Some(0.5));
    cases.push(Case::new("pointwise + BN + Clip (opset 9 attributes)", &mut net, &["pointwise"]).dump_has("act=clip(0,0.5)"));
    let mut net = Net::with_opset(51, 9, &[5, 7, 9]);
    net.conv(ConvSpec::new(13, 3).same(1)).clip(Some(-0.25), None);
    cases.push(Case::new("conv + Clip min only (opset 9)", &mut net, &["conv2d"]).dump_has("act=clip"));
    let mut net = Net::new(52, &[13, 9, 7]);
    net.conv(ConvSpec::new(0, 3).group(Group::Depthwise).same(1)).clip(None, Some(0.25));
    cases.push(Case::new("depthwise + Clip max only (opset 11 inputs)", &mut net, &["depthwise3x3"]).dump_has("act=clip"));
    run_cases(cases);
}

/// Inverted-residual bottlenecks (expand, depthwise, project + Add of the block input): three
/// dispatches each, the Add in the projection's residual epilogue, whichever Add operand it is.
#[test]
fn inverted_residual_blocks() {
    let mut cases = Vec::new();
    for (i, skip_first) in [false, true].into_iter().enumerate() {
        let mut net = Net::new(60 + i as u64, &[3, 13, 13]);
        net.conv(ConvSpec::new(5, 3).stride(2).same(1).no_bias()).bn().act(Activation::PRelu);
        net.bottleneck(2, skip_first).bottleneck(3, !skip_first);
        let templates = ["conv2d", "pointwise", "depthwise3x3", "pointwise", "pointwise", "depthwise3x3", "pointwise"];
        let case = Case::new(format!("stem + 2 bottlenecks (shortcut first: {skip_first})"), &mut net, &templates);
        cases.push(case.batch(3).dump_has("+residual").dump_lacks("Add("));
    }
    // A block straight on the graph input: the residual binding is the input buffer.
    let mut net = Net::new(62, &[5, 7, 9]);
    net.bottleneck(2, false);
    cases.push(Case::new("bottleneck on the graph input", &mut net, &["pointwise", "depthwise3x3", "pointwise"]).dump_has("+residual"));
    run_cases(cases);
}

/// Maps whose pixels are not a multiple of 4 (MobileFaceNet's 7x7), stored with their planes
/// padded to one (`codegen::layout`) so that their pointwise convolutions take the vec4 kernel:
/// a stride-2 depthwise conv into the padded map, bottlenecks whose residual is padded, channel
/// counts that are not multiples of 4, the GDConv and GlobalAveragePool reading padded planes,
/// and a batch split in submissions (the padding of a reused buffer holds what an earlier value
/// left there, which no pixel may read). Where the map is a graph output, nothing before it on
/// that map can be padded: the scalar kernels as before.
#[test]
fn padded_planes() {
    let dw = |stride| ConvSpec::new(0, 3).group(Group::Depthwise).stride(stride).same(1).no_bias();
    let stage = |net: &mut Net| {
        net.conv(ConvSpec::new(13, 1)).act(Activation::PRelu).conv(dw(2)).bn().act(Activation::PRelu);
        net.conv(ConvSpec::new(12, 1).no_bias()).bn().bottleneck(2, false).bottleneck(3, true);
    };
    let padded = ["pointwise_vec4", "depthwise3x3", "pointwise_vec4", "pointwise_vec4", "depthwise3x3", "pointwise_vec4", "pointwise_vec4", "depthwise3x3", "pointwise_vec4"];
    let gd = ConvSpec::new(0, 0).kernel(7, 7).group(Group::Depthwise).no_bias();
    let mut cases = Vec::new();
    let mut net = Net::new(76, &[8, 14, 14]);
    stage(&mut net);
    net.conv(ConvSpec::new(20, 1)).act(Activation::PRelu).conv(gd).bn().flatten();
    let templates: Vec<_> = padded.iter().copied().chain(["pointwise_vec4", "gdconv"]).collect();
    cases.push(Case::new("7x7 stage and GDConv", &mut net, &templates).batch(3).max_batch(2));
    let mut net = Net::new(77, &[8, 10, 10]);
    stage(&mut net);
    net.global_average_pool().flatten();
    let templates: Vec<_> = padded.iter().copied().chain(["gdconv"]).collect();
    cases.push(Case::new("5x5 stage and GlobalAveragePool", &mut net, &templates).batch(2));
    let mut net = Net::new(78, &[8, 14, 14]);
    stage(&mut net);
    let unpadded = ["pointwise_vec4", "depthwise3x3", "pointwise", "pointwise", "depthwise3x3", "pointwise", "pointwise", "depthwise3x3", "pointwise"];
    cases.push(Case::new("7x7 stage as the graph output", &mut net, &unpadded).batch(2));
    run_cases(cases);
}

/// The subgroup GEMM pairs neighbouring lanes' pixel vec4s in its stores and residual loads,
/// within rows of a multiple of 8 pixels: a 14x14 map (196 pixels) is padded to 200 where every
/// kernel on it allows, and where it cannot be (the layer on the graph input) its GEMM has no
/// subgroup variant and runs the plain kernel. Checked against the CPU evaluator at an odd batch
/// (shared tiles running on across samples) in submissions of 2, with and without shared tiles
/// (on the grid, invocations take their pixels by subgroup and lane), with the same results.
#[test]
fn paired_stores_need_rows_of_8_pixels() {
    let mut net = Net::new(79, &[8, 14, 14]);
    net.conv(ConvSpec::new(16, 1)).act(Activation::PRelu);
    net.conv(ConvSpec::new(0, 3).group(Group::Depthwise).same(1)).conv(ConvSpec::new(24, 1)).act(Activation::PRelu);
    net.bottleneck(2, false).global_average_pool().flatten();
    let onnx = net.finish();
    let program = mfn_compiler::compile(&onnx, &Default::default()).expect("compiles");
    let gemms: Vec<_> = program.kernels.iter().filter(|k| k.template == "pointwise_vec4").collect();
    let planes: Vec<_> = gemms.iter().map(|k| k.wgsl.lines().find(|l| l.starts_with("const HW: u32")).expect("HW")).collect();
    assert_eq!(planes, ["const HW: u32 = 196u;", "const HW: u32 = 200u;", "const HW: u32 = 200u;", "const HW: u32 = 200u;"]);
    let variants: Vec<bool> = gemms.iter().map(|k| k.subgroup_wgsl.is_some()).collect();
    assert_eq!(variants, [false, true, true, true], "a subgroup variant only on rows of a multiple of 8 pixels");
    let imported = mfn_compiler::onnx::import(&onnx, 1, None).expect("imports");
    let input = Rng::new(79).normal_vec(3 * 8 * 14 * 14, 1.0);
    let want = mfn_compiler::eval::run(&imported, &input).expect("evaluates");
    let mut results = Vec::new();
    for sharers in [None, Some(0)] {
        let options = SessionOptions { max_batch: 2, tile_sharers: sharers, ..Default::default() };
        let Some(session) = common::session_with(&program, &options) else { return };
        let got = session.run(&input).expect("runs");
        let err = rel_err(&got, &want);
        assert!(err <= TOLERANCE, "tile sharers {sharers:?} on {}: differs from the CPU evaluator by {err:e}", session.adapter());
        results.push(got);
    }
    assert!(results[0] == results[1], "shared tiles change the result");
}
