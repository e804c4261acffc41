//! What wgpu reports goes through our API: a device destroyed between runs makes `Session::run`
//! return `RuntimeError::DeviceLost` (no panic, no hang), and a program wgpu refuses (invalid WGSL, a bind group
//! that does not match its layout) is a `RuntimeError::Gpu`, not a panic of wgpu's default
//! error handler.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use mfn_compiler::{Program, Resource};
use mfn_models::builder::{Attr, Dim, GraphBuilder};
use mfn_models::rng::Rng;
use mfn_runtime::{wgpu, RuntimeError, Session};

fn model() -> Vec<u8> {
    let mut rng = Rng::new(4);
    let mut g = GraphBuilder::new(13);
    g.input("x", &[Dim::param("N"), 3.into(), 8.into(), 8.into()]);
    g.initializer("w", &[4, 3, 3, 3], rng.normal_vec(108, 0.3));
    g.node("Conv", &["x", "w"], &["c"], vec![Attr::Ints("pads", vec![1, 1, 1, 1])]);
    g.node("Relu", &["c"], &["y"], vec![]);
    g.output("y", &[Dim::param("N"), 4.into(), 8.into(), 8.into()]);
    g.to_bytes()
}

/// A device of its own (so the test can destroy it), or `None` when there is no adapter.
fn device(program: &Program) -> Option<(wgpu::Device, wgpu::Queue, wgpu::AdapterInfo)> {
    common::session(program, 1)?;
    let adapter = mfn_runtime::select_adapter(&Default::default()).expect("an adapter");
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor::default())).expect("a device");
    Some((device, queue, adapter.get_info()))
}

/// `f` on another thread; fails the test if it does not finish within a minute (a hang).
fn within_a_minute<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|e| panic!("{what}: no answer within a minute ({e})"))
}

#[test]
fn a_destroyed_device_is_an_error_not_a_panic_or_hang() {
    let program = common::compile(&model());
    let Some((device, queue, info)) = device(&program) else { return };
    let lost = std::sync::Arc::new(std::sync::Mutex::new(None));
    let reported = std::sync::Arc::clone(&lost);
    device.set_device_lost_callback(move |reason, message| *reported.lock().unwrap() = Some((reason, message)));
    let session = Session::with_device(&program, device.clone(), queue, info, 2).expect("session");
    let input = Rng::new(1).normal_vec(2 * 3 * 8 * 8, 1.0);
    let first = session.run(&input).expect("runs before the loss");
    device.destroy();
    let (result, again) = within_a_minute("run after destroy", move || (session.run(&input), session.run(&input)));
    for (i, r) in [result, again].into_iter().enumerate() {
        match r {
            Err(e @ RuntimeError::DeviceLost { .. }) => eprintln!("run {i} after destroy: {e}"),
            Err(e) => panic!("run {i} after destroy: unexpected error kind: {e}"),
            Ok(out) => panic!("run {i} after destroy returned {} values (first run: {})", out.len(), first.len()),
        }
    }
    let reason = lost.lock().unwrap().clone();
    assert!(matches!(reason, Some((wgpu::DeviceLostReason::Destroyed, _))), "device lost callback: {reason:?}");
}

/// The session's own device (`Session::new`): its loss callback is the session's, and the error
/// carries wgpu's reason.
#[test]
fn the_loss_of_a_sessions_own_device_is_reported_with_its_reason() {
    let program = common::compile(&model());
    let Some(session) = common::session(&program, 2) else { return };
    let input = Rng::new(2).normal_vec(3 * 8 * 8, 1.0);
    session.run(&input).expect("runs before the loss");
    session.device().destroy();
    let (first, second) = within_a_minute("run after destroy", move || (session.run(&input), session.run(&input)));
    for (i, r) in [first, second].into_iter().enumerate() {
        match r {
            Err(e @ RuntimeError::DeviceLost { .. }) => {
                let message = e.to_string();
                assert!(message.contains("was lost") && message.contains("Destroyed"), "run {i}: {message}");
            }
            Err(e) => panic!("run {i} after destroy: unexpected error kind: {e}"),
            Ok(out) => panic!("run {i} after destroy returned {} values", out.len()),
        }
    }
}

#[test]
fn invalid_wgsl_is_a_gpu_error() {
    let mut program = common::compile(&model());
    let Some((device, queue, info)) = device(&program) else { return };
    program.kernels[0].wgsl.push_str("\nfn broken( {\n");
    match within_a_minute("session creation", move || Session::with_device(&program, device, queue, info, 1).map(|_| ())) {
        Err(e @ RuntimeError::Gpu { .. }) => assert!(e.to_string().contains("session creation"), "{e}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(()) => panic!("a session was made from invalid WGSL"),
    }
}

#[test]
fn a_bind_group_not_matching_its_layout_is_a_gpu_error() {
    let mut program = common::compile(&model());
    let Some((device, queue, info)) = device(&program) else { return };
    program.steps[0].bindings.push(Resource::Unused);
    match within_a_minute("session creation", move || Session::with_device(&program, device, queue, info, 1).map(|_| ())) {
        Err(e @ RuntimeError::Gpu { .. }) => assert!(e.to_string().contains("session creation"), "{e}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(()) => panic!("a session was made with a bind group of too many entries"),
    }
}

/// A readback recorded into a host's frame whose device is lost before the values come back:
/// `ReadbackHandle::try_take` gives `RuntimeError::DeviceLost`, without blocking.
#[test]
fn a_readback_on_a_device_lost_after_submission_is_a_device_lost_error() {
    let program = common::compile(&model());
    let Some((device, queue, info)) = device(&program) else { return };
    let session = Session::with_device(&program, device.clone(), queue.clone(), info, 1).expect("session");
    let input: Vec<u8> = Rng::new(3).normal_vec(3 * 8 * 8, 1.0).iter().flat_map(|v| v.to_le_bytes()).collect();
    let input =
        wgpu::util::DeviceExt::create_buffer_init(&device, &wgpu::util::BufferInitDescriptor { label: Some("host input"), contents: &input, usage: wgpu::BufferUsages::COPY_SRC });
    let mut encoder = device.create_command_encoder(&Default::default());
    let mut handle = session.encode_readback(&mut encoder, mfn_runtime::Input::Buffer { buffer: &input, batch: 1 }).expect("encode_readback");
    queue.submit([encoder.finish()]);
    device.destroy();
    let result = within_a_minute("try_take after destroy", move || {
        for _ in 0..30_000 {
            let _ = device.poll(wgpu::PollType::Poll);
            if let Some(result) = handle.try_take() {
                return result;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        panic!("the readback was never answered after the device was destroyed");
    });
    match result {
        Err(e @ RuntimeError::DeviceLost { .. }) => eprintln!("try_take after destroy: {e}"),
        Err(e) => panic!("try_take after destroy: unexpected error kind: {e}"),
        Ok(values) => panic!("try_take after destroy returned {} values", values.len()),
    }
}
