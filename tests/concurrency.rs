//! One session shared by several threads, and several sessions on one device, runs interleaved:
//! every output equals the one a lone run gives, bit for bit.

mod common;

use std::sync::Arc;

use mfn_models::builder::{Attr, Dim, GraphBuilder};
use mfn_models::rng::Rng;
use mfn_runtime::{wgpu, Session};

/// A small conv -> PReLU -> GDConv network, quick on lavapipe.
fn model(seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut g = GraphBuilder::new(13);
    g.input("x", &[Dim::param("N"), 3.into(), 12.into(), 12.into()]);
    g.initializer("w", &[8, 3, 3, 3], rng.normal_vec(216, 0.3));
    g.initializer("slope", &[8, 1, 1], rng.uniform_vec(8, 0.1, 0.3));
    g.initializer("g", &[8, 1, 6, 6], rng.normal_vec(288, 0.2));
    g.node("Conv", &["x", "w"], &["c"], vec![Attr::Ints("strides", vec![2, 2]), Attr::Ints("pads", vec![1, 1, 1, 1])]);
    g.node("PRelu", &["c", "slope"], &["a"], vec![]);
    g.node("Conv", &["a", "g"], &["y"], vec![Attr::Int("group", 8)]);
    g.output("y", &[Dim::param("N"), 8.into(), 1.into(), 1.into()]);
    g.to_bytes()
}

fn inputs(n: usize) -> Vec<Vec<f32>> {
    let mut rng = Rng::new(99);
    (0..n).map(|i| rng.normal_vec((i % 3 + 1) * 3 * 12 * 12, 1.0)).collect()
}

#[test]
fn one_session_many_threads() {
    let program = common::compile(&model(1));
    let Some(session) = common::session(&program, 4) else { return };
    let session = Arc::new(session);
    let inputs = inputs(12);
    let alone: Vec<Vec<f32>> = inputs.iter().map(|x| session.run(x).expect("run")).collect();
    std::thread::scope(|s| {
        for t in 0..4 {
            let (session, inputs, alone) = (Arc::clone(&session), &inputs, &alone);
            s.spawn(move || {
                for round in 0..5 {
                    for i in (t..inputs.len()).step_by(2) {
                        assert_eq!(session.run(&inputs[i]).expect("run"), alone[i], "thread {t} round {round} input {i}");
                    }
                }
            });
        }
    });
}

#[test]
fn several_sessions_on_one_device() {
    let models: Vec<Vec<u8>> = (0..3).map(model).collect();
    let programs: Vec<_> = models.iter().map(|m| common::compile(m)).collect();
    let Some(first) = common::session(&programs[0], 4) else { return };
    let adapter = mfn_runtime::select_adapter(&Default::default()).expect("an adapter");
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor::default())).expect("device");
    let sessions: Vec<Session> =
        programs.iter().map(|p| Session::with_device(p, device.clone(), queue.clone(), adapter.get_info(), 4).expect("session on the shared device")).collect();
    let inputs = inputs(6);
    let want: Vec<Vec<Vec<f32>>> = models.iter().map(|m| inputs.iter().map(|x| mfn_compiler::eval::run(&common::imported(m), x).expect("eval")).collect()).collect();
    drop(first);
    std::thread::scope(|s| {
        for (k, session) in sessions.iter().enumerate() {
            let (inputs, want) = (&inputs, &want);
            s.spawn(move || {
                for (i, x) in inputs.iter().enumerate() {
                    let got = session.run(x).expect("run");
                    assert!(common::max_rel_diff(&got, &want[k][i]) <= 1e-5, "session {k} input {i}");
                }
            });
        }
    });
}

/// Sessions created, run and dropped on a device while another session on it runs from two
/// threads: the long-lived session's outputs stay bit-identical to its lone runs.
#[test]
fn sessions_come_and_go_while_another_runs() {
    let models: Vec<Vec<u8>> = (0..2).map(|k| model(10 + k)).collect();
    let programs: Vec<_> = models.iter().map(|m| common::compile(m)).collect();
    let Some(probe) = common::session(&programs[0], 4) else { return };
    drop(probe);
    let adapter = mfn_runtime::select_adapter(&Default::default()).expect("an adapter");
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor::default())).expect("device");
    let info = adapter.get_info();
    let steady = Session::with_device(&programs[0], device.clone(), queue.clone(), info.clone(), 4).expect("session");
    let inputs = inputs(6);
    let alone: Vec<Vec<f32>> = inputs.iter().map(|x| steady.run(x).expect("run")).collect();
    let want_other: Vec<f32> = mfn_compiler::eval::run(&common::imported(&models[1]), &inputs[0]).expect("eval");
    std::thread::scope(|s| {
        for t in 0..2 {
            let (steady, inputs, alone) = (&steady, &inputs, &alone);
            s.spawn(move || {
                for round in 0..4 {
                    for (i, x) in inputs.iter().enumerate() {
                        assert_eq!(&steady.run(x).expect("run"), &alone[i], "thread {t} round {round} input {i}");
                    }
                }
            });
        }
        s.spawn(|| {
            for round in 0..4 {
                let other = Session::with_device(&programs[1], device.clone(), queue.clone(), info.clone(), 2).expect("session");
                let got = other.run(&inputs[0]).expect("run");
                assert!(common::max_rel_diff(&got, &want_other) <= 1e-5, "short-lived session, round {round}");
            }
        });
    });
}
