//! A device with artificially low limits: work larger than a dispatch dimension allows is split
//! (same results), and what cannot fit is refused with an error naming the limit.

mod common;

use mfn_models::builder::{Attr, Dim, GraphBuilder};
use mfn_models::rng::Rng;
use mfn_runtime::{wgpu, RuntimeError, Session};

fn model() -> Vec<u8> {
    let mut rng = Rng::new(5);
    let mut g = GraphBuilder::new(13);
    g.input("x", &[Dim::param("N"), 3.into(), 64.into(), 64.into()]);
    g.initializer("w", &[8, 3, 3, 3], rng.normal_vec(216, 0.3));
    g.initializer("p", &[16, 8, 1, 1], rng.normal_vec(128, 0.3));
    g.node("Conv", &["x", "w"], &["c"], vec![Attr::Ints("pads", vec![1, 1, 1, 1])]);
    g.node("Relu", &["c"], &["r"], vec![]);
    g.node("Conv", &["r", "p"], &["y"], vec![]);
    g.output("y", &[Dim::param("N"), 16.into(), 64.into(), 64.into()]);
    g.to_bytes()
}

/// A device whose dispatches may have at most `per_dim` workgroups a dimension.
fn small_device(per_dim: u32) -> Option<(wgpu::Device, wgpu::Queue, wgpu::AdapterInfo)> {
    let probe = common::compile(&model());
    common::session(&probe, 1)?;
    let adapter = mfn_runtime::select_adapter(&Default::default()).expect("an adapter");
    let limits = wgpu::Limits { max_compute_workgroups_per_dimension: per_dim, ..wgpu::Limits::default() };
    let desc = wgpu::DeviceDescriptor { required_limits: limits, ..Default::default() };
    let (device, queue) = pollster::block_on(adapter.request_device(&desc)).expect("a device with lower limits");
    Some((device, queue, adapter.get_info()))
}

#[test]
fn dispatches_beyond_the_limit_are_split() {
    let onnx = model();
    let program = common::compile(&onnx);
    let biggest = program.steps.iter().map(|s| s.workgroups[0] * s.workgroups[1]).max().unwrap_or(0);
    assert!(biggest > 16, "the test needs a dispatch of more than 16 workgroups, has {biggest}");
    let Some((device, queue, info)) = small_device(16) else { return };
    let session = Session::with_device(&program, device, queue, info, 3).expect("split, not refused");
    let input = Rng::new(8).normal_vec(3 * 3 * 64 * 64, 1.0);
    let want = mfn_compiler::eval::run(&common::imported(&onnx), &input).expect("eval");
    let got = session.run(&input).expect("run");
    assert!(common::max_rel_diff(&got, &want) <= 1e-5);
}

#[test]
fn what_cannot_be_split_is_refused_clearly() {
    let program = common::compile(&model());
    let Some((device, queue, info)) = small_device(4) else { return };
    match Session::with_device(&program, device, queue, info, 1) {
        Err(e @ RuntimeError::Limit { .. }) => assert!(e.to_string().contains("workgroups of one dispatch"), "{e}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a 4x4 grid cannot hold this program's dispatches"),
    }
}
