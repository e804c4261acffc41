//! Session options change speed, never results: subgroup variants, loop bounding, warm cores,
//! shared tiles, chains and wide loads, each against the plain session.

use super::*;

/// The subgroup variants really run where the adapter allows (so the cases above test them), and
/// lavapipe, the CI adapter, allows: a driver change there must not silently drop their coverage.
#[test]
fn subgroup_variants_run_where_the_adapter_has_subgroups() {
    let mut net = Net::new(16, &[8, 4, 8]);
    let program = mfn_compiler::compile(&net.conv(ConvSpec::new(16, 1)).finish(), &Default::default()).expect("compiles");
    assert!(program.kernels.iter().any(|k| k.subgroup_wgsl.is_some()), "the vec4 pointwise kernel has a subgroup variant");
    let Some(adapter) = common::adapter() else { return };
    let info = adapter.get_info();
    let usable = adapter.features().contains(mfn_runtime::wgpu::Features::SUBGROUP) && info.subgroup_min_size >= 8;
    if info.name.contains("llvmpipe") {
        assert!(usable, "lavapipe has subgroups of 8: {info:?}");
    }
    let Some(session) = common::session(&program, 1) else { return };
    assert_eq!(session.subgroups(), usable, "{}", session.adapter());
    let options = SessionOptions { max_batch: 1, subgroups: false, ..Default::default() };
    assert!(!common::session_with(&program, &options).expect("session").subgroups());
}

/// Loop bounding (kept or left out) and warm cores (on or off) change the speed of a session,
/// never its results; warm cores run on a CPU adapter such as lavapipe, and only there.
#[test]
fn loop_bounding_and_warm_cores_change_no_result() {
    let mut net = Net::new(16, &[8, 12, 12]);
    net.conv(ConvSpec::new(16, 1)).conv(ConvSpec::new(16, 3).group(Group::Depthwise).same(1)).conv(ConvSpec::new(24, 1));
    let program = mfn_compiler::compile(&net.finish(), &Default::default()).expect("compiles");
    let input = Rng::new(7).normal_vec(2 * 8 * 12 * 12, 1.0);
    let mut results = Vec::new();
    for (loop_bounding, warm_cores) in [(false, true), (true, false)] {
        let options = SessionOptions { max_batch: 2, loop_bounding, warm_cores, ..Default::default() };
        let Some(session) = common::session_with(&program, &options) else { return };
        let cpu = session.adapter_info().device_type == mfn_runtime::wgpu::DeviceType::Cpu;
        if warm_cores && cpu {
            assert_eq!(session.warm_cores(), mfn_runtime::warm_cpus(), "warm cores on {}", session.adapter());
        } else {
            assert_eq!(session.warm_cores(), 0, "warm cores on {} with warm_cores {warm_cores}", session.adapter());
        }
        results.push(session.run(&input).expect("runs"));
    }
    assert_eq!(results[0], results[1]);
}

/// Shared tiles (the tiles of the subgroup GEMMs and convolutions, and the depthwise 3x3 kernels'
/// bands, taken from counters by the driver's threads, on any number of threads, 16 at most)
/// change no result: the same tiles, the same sums. A batch of 5 in submissions of 2 checks that
/// every submission starts from zeroed counters; the layers cover every kernel kind that shares,
/// the depthwise ones both templates (rows of a multiple of 4 and not) and both strides; the last
/// run has no subgroups (the depthwise kernels share all the same).
#[test]
fn shared_tiles_change_no_result() {
    let mut net = Net::new(16, &[8, 12, 12]);
    net.conv(ConvSpec::new(16, 3).same(1)).conv(ConvSpec::new(40, 1)).conv(ConvSpec::new(40, 3).group(Group::Depthwise).same(1)).conv(ConvSpec::new(16, 1));
    net.conv(ConvSpec::new(16, 3).group(Group::Depthwise).stride(2).pad(Pad::Explicit([1, 1, 2, 2])));
    net.conv(ConvSpec::new(16, 3).group(Group::Depthwise).same(1)).conv(ConvSpec::new(24, 1));
    let program = mfn_compiler::compile(&net.finish(), &Default::default()).expect("compiles");
    let templates: Vec<&str> = program.kernels.iter().filter(|k| k.tile_counters().is_some()).map(|k| k.template.as_str()).collect();
    for template in ["conv2d", "pointwise_vec4", "depthwise3x3_vec4", "depthwise3x3", "pointwise"] {
        assert!(templates.contains(&template), "no {template} kernel with tile counters: {:?}", program.kernels.iter().map(|k| &k.name).collect::<Vec<_>>());
    }
    let input = Rng::new(11).normal_vec(5 * 8 * 12 * 12, 1.0);
    let mut results = Vec::new();
    for (sharers, subgroups) in [(Some(0), true), (None, true), (Some(3), true), (Some(7), true), (Some(100), true), (Some(2), false)] {
        let options = SessionOptions { max_batch: 2, tile_sharers: sharers, subgroups, ..Default::default() };
        let Some(session) = common::session_with(&program, &options) else { return };
        let cpu = session.adapter_info().device_type == mfn_runtime::wgpu::DeviceType::Cpu;
        let wanted = sharers.unwrap_or(if cpu { mfn_runtime::driver_threads() } else { 0 });
        // At most 16 threads share (one counter each, a cache line apart, in a dispatch's slot);
        // without subgroups the depthwise kernels still do.
        let expected = if wanted > 1 { wanted.min(16) } else { 0 };
        assert_eq!(session.tile_sharers(), expected, "tile sharers on {} asked {sharers:?}", session.adapter());
        results.push(session.run(&input).expect("runs"));
    }
    for (i, r) in results.iter().enumerate().skip(1) {
        assert!(r == &results[0], "run {i} differs from the one with fixed shares");
    }
}

/// Shared tiles on a layer whose units are many and long: a 3x3 convolution of 256 input channels
/// (3,361 loop iterations a unit: the input channels by rows of taps by taps) at 36x36, 8 samples,
/// 352 units. On lavapipe, whose every invocation ends its loops after 65,535 iterations in all,
/// one thread taking its share of them (176 units on 2 threads, 22 on 16) would stop half-way
/// through a unit and leave it wrong without a word; the runtime caps the units an invocation
/// takes and dispatches enough workgroups for all (`Kernel::unit_iterations`).
#[test]
fn shared_tiles_stay_within_the_drivers_loop_budget() {
    let mut net = Net::new(33, &[256, 36, 36]);
    net.conv(ConvSpec::new(32, 3).same(1));
    let program = mfn_compiler::compile(&net.finish(), &Default::default()).expect("compiles");
    let conv = program.kernels.iter().find(|k| k.template == "conv2d").expect("a conv2d kernel");
    let units = 8 * program.steps[0].workgroups[0] * program.steps[0].workgroups[1] * 4;
    assert!(u64::from(units / 16) * u64::from(conv.unit_iterations) > 65_535, "{units} units of {} iterations", conv.unit_iterations);
    let input = Rng::new(5).normal_vec(8 * 256 * 36 * 36, 1.0);
    let mut results = Vec::new();
    for sharers in [Some(0), None, Some(2)] {
        let options = SessionOptions { max_batch: 8, tile_sharers: sharers, ..Default::default() };
        let Some(session) = common::session_with(&program, &options) else { return };
        results.push(session.run(&input).expect("runs"));
    }
    for (i, r) in results.iter().enumerate().skip(1) {
        let differ = r.iter().zip(&results[0]).filter(|(a, b)| a != b).count();
        assert!(differ == 0, "run {i}: {differ} of {} outputs differ from the grid's", r.len());
    }
}

/// Reductions of one invocation past lavapipe's loop budget: a MatMul over 70,000 inputs and a
/// GlobalAveragePool of a 260x260 map (67,600 pixels). On lavapipe, which ends every loop of an
/// invocation after 65,535 iterations in all, their loops of one product an iteration came out
/// wrong without a word (relative errors 0.34 and 0.12 here); 8 an iteration reach 524,280. Past
/// that (a MatMul over 600,000 inputs), the session is refused there with an error naming the
/// kernel, where it would otherwise compute a wrong result.
#[test]
fn long_reductions_stay_within_the_drivers_loop_budget() {
    let mut net = Net::new(93, &[70_000, 1, 1]);
    net.flatten().matmul(4);
    let cases = vec![
        Case::new("MatMul over 70,000 inputs", &mut net, &["linear"]),
        Case::new("GlobalAveragePool of 260x260", Net::new(94, &[2, 260, 260]).global_average_pool(), &["gdconv"]).batch(2),
    ];
    run_cases(cases);
    let mut net = Net::new(95, &[600_000, 1, 1]);
    net.flatten().matmul(1);
    let program = mfn_compiler::compile(&net.finish(), &Default::default()).expect("compiles");
    let linear = &program.kernels[0];
    assert_eq!(linear.unit_iterations, 75_000, "the loop's iterations");
    let Some(adapter) = common::adapter() else { return };
    let name = adapter.get_info().name;
    match Session::new(&program, &SessionOptions::default()) {
        Err(e) if name.contains("llvmpipe") => {
            let text = e.to_string();
            assert!(text.contains("loop iterations") && text.contains(&linear.name) && text.contains("75000"), "{text}");
        }
        Ok(_) if name.contains("llvmpipe") => panic!("lavapipe took a kernel whose loop outlasts its budget"),
        Ok(_) => {}
        Err(e) => panic!("{name} refused a long loop: {e}"),
    }
}

/// Chains (the kernels of a bottleneck block in one dispatch, each link waiting for its tiles)
/// change no result: the stem, two bottlenecks, a stride-2 depthwise and a bottleneck and a
/// small-map GEMM past it, at a batch that every chain takes (1), one that only some take (30),
/// and one that none takes (240: the kernels' own pipelines, built on first need); with links that
/// give up
/// waiting at once (`chain_wait` 0: every batch runs again without chains); on 2, 3 and 16
/// threads; and a chain of five convolutions binding more buffers than wgpu allows by default; all
/// bit-identical to the grid's tiles.
#[test]
fn chains_change_no_result() {
    let mut net = Net::new(21, &[8, 20, 20]);
    net.conv(ConvSpec::new(16, 3).same(1)).bottleneck(2, false).bottleneck(2, true);
    net.conv(ConvSpec::new(0, 3).group(Group::Depthwise).stride(2).pad(Pad::Explicit([1, 1, 1, 1]))).bottleneck(2, false);
    net.conv(ConvSpec::new(0, 3).group(Group::Depthwise).stride(2).pad(Pad::Explicit([1, 1, 1, 1]))).conv(ConvSpec::new(24, 1));
    let program = mfn_compiler::compile(&net.finish(), &Default::default()).expect("compiles");
    let steps = program.steps.len();
    // Five links of 6 and 5 storage buffers (3x3 convolutions, depthwise between them): 29 with
    // the status word, past wgpu's default of 28 buffers a stage, which a chain may exceed only
    // on a device that asked for more.
    let mut wide = Net::new(22, &[8, 12, 12]);
    wide.conv(ConvSpec::new(8, 3).same(1)).conv(ConvSpec::new(0, 3).group(Group::Depthwise).same(1));
    wide.conv(ConvSpec::new(8, 3).same(1)).conv(ConvSpec::new(0, 3).group(Group::Depthwise).same(1)).conv(ConvSpec::new(8, 3).same(1));
    let wide = mfn_compiler::compile(&wide.finish(), &Default::default()).expect("compiles");
    let input = Rng::new(3).normal_vec(2 * 8 * 12 * 12, 1.0);
    let grid = SessionOptions { max_batch: 2, tile_sharers: Some(0), ..Default::default() };
    let Some(session) = common::session_with(&wide, &grid) else { return };
    let want = session.run(&input).expect("runs");
    let session = common::session_with(&wide, &SessionOptions { max_batch: 2, ..Default::default() }).expect("a session");
    session.wait_for_chains();
    assert!(session.run(&input).expect("runs") == want, "the five-link chain's outputs differ from the grid's");
    if session.adapter_info().device_type == mfn_runtime::wgpu::DeviceType::Cpu {
        assert_eq!(session.dispatch_count(2), 1, "the five convolutions are not one chain");
    }
    for batch in [1, 30, 240] {
        let input = Rng::new(batch as u64).normal_vec(batch * 8 * 20 * 20, 1.0);
        let grid = SessionOptions { max_batch: batch, tile_sharers: Some(0), ..Default::default() };
        let Some(session) = common::session_with(&program, &grid) else { return };
        let want = session.run(&input).expect("runs");
        let configurations: &[(Option<u32>, u32)] = if batch < 240 { &[(None, 2048), (Some(3), 2048), (Some(16), 2048), (None, 0)] } else { &[(None, 2048)] };
        for &(sharers, wait) in configurations {
            let options = SessionOptions { max_batch: batch, tile_sharers: sharers, chain_wait: wait, ..Default::default() };
            let session = common::session_with(&program, &options).expect("a session");
            session.wait_for_chains();
            let got = session.run(&input).expect("runs");
            let dispatches = session.dispatch_count(batch);
            eprintln!("batch {batch}, sharers {sharers:?}, wait {wait}: {dispatches} dispatches for {steps} steps, {} runs again", session.chain_retries());
            let cpu = session.adapter_info().device_type == mfn_runtime::wgpu::DeviceType::Cpu;
            // On lavapipe: every chain at batch 1, some at 30, none at 240.
            if cpu && batch == 1 {
                assert!(session.chained() > 0 && dispatches < steps, "no chain at batch 1 on {}", session.adapter());
            }
            if cpu && batch == 240 {
                assert_eq!(dispatches, steps, "a chain at batch 240");
            }
            if cpu && wait == 0 && dispatches < steps {
                assert_eq!(session.chain_retries(), 1, "a chain that gave up did not run again");
            }
            assert!(got == want, "batch {batch}, sharers {sharers:?}, wait {wait}: the outputs differ from the grid's");
        }
    }
}

/// Wide loads (activations read, and the GEMMs' and vec4 depthwise kernels' outputs written, as
/// 64-bit integers on CPU adapters with `SHADER_INT64`: `mfn_compiler::wide`) change no result:
/// GEMMs at 14x14 and on padded 7x7 planes, with and without residuals and with a channel count
/// that is not a multiple of 8, the depthwise 3x3 kernel for rows of any width (14x14 at stride 1,
/// 14x14 -> 7x7 at stride 2) and the one for rows of vec4s at strides 1 and 2 (16x16 and 8x8
/// maps, rows of 4 and 2 vec4s), at batches 1 and 3, with chains and without, in f32 and (where
/// the adapter has f16) in f16; bit-identical to the vectors of floats. On lavapipe the wide form
/// must run.
#[test]
fn wide_loads_change_no_result() {
    let mut net = Net::new(31, &[12, 14, 14]);
    net.conv(ConvSpec::new(16, 1)).act(Activation::PRelu).bottleneck(2, false).bottleneck(2, true);
    net.conv(ConvSpec::new(0, 3).group(Group::Depthwise).stride(2).same(1).no_bias()).bn().conv(ConvSpec::new(20, 1)).bottleneck(2, false);
    net.conv(ConvSpec::new(8, 1)).conv(ConvSpec::new(0, 0).kernel(7, 7).group(Group::Depthwise).no_bias()).flatten();
    // Each model with its input's elements a sample and the depthwise template it must run wide
    // (at least that many kernels of it).
    let gemms = (net.finish(), 12 * 14 * 14, "depthwise3x3", 2);
    let mut net = Net::new(32, &[8, 16, 16]);
    net.conv(ConvSpec::new(16, 1)).act(Activation::PRelu).bottleneck(2, false);
    net.conv(ConvSpec::new(0, 3).group(Group::Depthwise).stride(2).same(1)).act(Activation::PRelu).conv(ConvSpec::new(24, 1)).bottleneck(2, true).flatten();
    let depthwise = (net.finish(), 8 * 16 * 16, "depthwise3x3_vec4", 3);
    let Some(adapter) = common::adapter() else { return };
    let f16 = adapter.features().contains(mfn_runtime::wgpu::Features::SHADER_F16);
    for ((onnx, elements, template, least), precision) in [&gemms, &depthwise].into_iter().flat_map(|m| [(m, mfn_compiler::Precision::F32), (m, mfn_compiler::Precision::F16)]) {
        if precision == mfn_compiler::Precision::F16 && !f16 {
            eprintln!("{}: no SHADER_F16, f16 not checked", adapter.get_info().name);
            continue;
        }
        let program = mfn_compiler::compile(onnx, &mfn_compiler::CompileOptions { precision, ..Default::default() }).expect("compiles");
        let wide = |k: &mfn_compiler::Kernel| mfn_compiler::wide::wide_loads(k.subgroup_wgsl.as_ref().unwrap_or(&k.wgsl), precision).is_some();
        assert!(program.kernels.iter().any(|k| k.subgroup_wgsl.is_some() && wide(k)), "no GEMM with wide loads");
        // The depthwise kernels, all in the wide form: for rows of any width in the first model,
        // of vec4s in the second.
        let dw: Vec<_> = program.kernels.iter().filter(|k| k.template == *template).collect();
        assert!(dw.len() >= *least && dw.iter().all(|k| wide(k)), "{template} kernels, all wide: {:?}", program.kernels.iter().map(|k| &k.template).collect::<Vec<_>>());
        for batch in [1, 3] {
            let input = Rng::new(batch as u64 + 40).normal_vec(batch * elements, 1.0);
            for chains in [true, false] {
                let plain = SessionOptions { max_batch: batch, wide_loads: false, chains, ..Default::default() };
                let Some(session) = common::session_with(&program, &plain) else { return };
                assert!(!session.wide_loads(), "wide loads where the options say not");
                let want = session.run(&input).expect("runs");
                let session = common::session_with(&program, &SessionOptions { wide_loads: true, ..plain }).expect("a session");
                session.wait_for_chains();
                if session.adapter_info().name.contains("llvmpipe") {
                    assert!(session.wide_loads(), "lavapipe has SHADER_INT64, but the wide loads did not run");
                }
                let got = session.run(&input).expect("runs");
                let differ = got.iter().zip(&want).filter(|(a, b)| a != b).count();
                assert!(differ == 0, "{precision:?}, batch {batch}, chains {chains}: {differ} of {} outputs differ with wide loads", got.len());
            }
        }
    }
}
