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
    assert!(biggest > 8, "the test needs a dispatch of more than 8 workgroups, has {biggest}");
    let Some((device, queue, info)) = small_device(8) else { return };
    let session = Session::with_device(&program, device, queue, info, 3).expect("split, not refused");
    let input = Rng::new(8).normal_vec(3 * 3 * 64 * 64, 1.0);
    let want = mfn_compiler::eval::run(&common::imported(&onnx), &input).expect("eval");
    let got = session.run(&input).expect("run");
    assert!(common::max_rel_diff(&got, &want) <= 1e-5);
}

#[test]
fn what_cannot_be_split_is_refused_clearly() {
    let program = common::compile(&model());
    let Some((device, queue, info)) = small_device(2) else { return };
    match Session::with_device(&program, device, queue, info, 1) {
        Err(e @ RuntimeError::Limit { .. }) => assert!(e.to_string().contains("workgroups of one dispatch"), "{e}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a 2x2 grid cannot hold this program's dispatches"),
    }
}

/// A device whose buffers may hold at most `bytes`: one sample of this model's largest activation
/// (16 x 64 x 64 floats, 256 KiB) does not fit in 128 KiB. Refused before any buffer is created,
/// naming the need and the limit.
#[test]
fn a_model_larger_than_the_buffer_limits_is_refused() {
    let program = common::compile(&model());
    let Some(_) = common::session(&program, 1) else { return };
    let adapter = mfn_runtime::select_adapter(&Default::default()).expect("an adapter");
    let limits = wgpu::Limits { max_buffer_size: 128 << 10, max_storage_buffer_binding_size: 128 << 10, ..wgpu::Limits::default() };
    let desc = wgpu::DeviceDescriptor { required_limits: limits, ..Default::default() };
    let (device, queue) = pollster::block_on(adapter.request_device(&desc)).expect("a device with lower limits");
    match Session::with_device(&program, device, queue, adapter.get_info(), 4) {
        Err(e @ RuntimeError::Limit { .. }) => {
            let message = e.to_string();
            assert!(message.contains("one sample's largest activation buffer (bytes) needs 262144, the adapter allows 131072"), "{message}");
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a 256 KiB buffer does not fit a 128 KiB limit"),
    }
}

/// A memory budget (wgpu reports no device memory size): too small for one sample is an error
/// naming the need and the budget; twice one sample's need lowers the batch to 2, and larger
/// batches are split with the same results.
#[test]
fn the_memory_budget_caps_the_batch() {
    let onnx = model();
    let program = common::compile(&onnx);
    let Some(_) = common::session(&program, 1) else { return };
    let options = |budget| mfn_runtime::SessionOptions { max_batch: 16, memory_budget: Some(budget), ..Default::default() };
    let one_sample = match Session::new(&program, &options(64 << 10)) {
        Err(RuntimeError::Limit { what, needed, available, .. }) => {
            assert!(what.contains("GPU buffer memory for one sample") && what.contains("memory budget"), "{what}");
            assert_eq!(available, 64 << 10);
            assert!(needed > (2 * 256) << 10, "one sample needs at least its input and output buffers, not {needed} bytes");
            needed
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a 64 KiB budget cannot hold a 256 KiB activation"),
    };
    let session = Session::new(&program, &options(2 * one_sample)).expect("two samples fit");
    assert_eq!(session.max_batch(), 2);
    let input = Rng::new(9).normal_vec(5 * 3 * 64 * 64, 1.0);
    let want = mfn_compiler::eval::run(&common::imported(&onnx), &input).expect("eval");
    assert!(common::max_rel_diff(&session.run(&input).expect("run"), &want) <= 1e-5);
}
