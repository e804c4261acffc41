//! Hostile models: absurd, negative and zero dimensions, cycles, missing and duplicated names,
//! initializers whose bytes disagree with their shape, external data. Each is refused with an
//! error naming what and where, and before any large allocation: a counting allocator records
//! the largest allocation the compile made on this thread, which must stay small.
//! (`tests/malformed.rs` has the more ordinary broken files; the GPU memory limits are in
//! `tests/limits.rs`.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use mfn_models::builder::{self, Attr, Dim, GraphBuilder};
use mfn_models::rng::Rng;
use onnx_protobuf::tensor_proto::{DataLocation, DataType};
use onnx_protobuf::StringStringEntryProto;

/// The system allocator, noting the largest allocation of each thread.
struct Tracking;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
}

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Tracking = Tracking;

/// Largest single allocation a hostile model may cause: far below what its dimensions claim
/// (2^40 elements), above what compiling the small base model needs (a few KiB).
const ALLOCATION_BOUND: usize = 1 << 20;

/// The small valid model of `tests/malformed.rs`: x [N, 3, 8, 8] -> Conv "conv" -> Relu "relu"
/// -> y, with `edit` applied afterwards.
fn model(edit: impl FnOnce(&mut GraphBuilder)) -> Vec<u8> {
    let mut b = GraphBuilder::new(13);
    b.input("x", &[Dim::param("N"), 3.into(), 8.into(), 8.into()])
        .initializer("w", &[4, 3, 3, 3], Rng::new(1).normal_vec(108, 0.2))
        .initializer("b", &[4], vec![0.1, -0.2, 0.3, 0.0])
        .named_node("conv", "Conv", &["x", "w", "b"], &["c"], vec![Attr::Ints("pads", vec![1; 4])])
        .named_node("relu", "Relu", &["c"], &["y"], vec![])
        .output("y", &[Dim::param("N"), 4.into(), 8.into(), 8.into()]);
    edit(&mut b);
    b.to_bytes()
}

fn initializer<'a>(b: &'a mut GraphBuilder, name: &str) -> &'a mut onnx_protobuf::TensorProto {
    b.graph_mut().initializer.iter_mut().find(|t| t.name == name).expect("initializer exists")
}

/// Inserts `node` after the Conv; it reads `c` and the Relu then reads its `d`.
fn after_conv(b: &mut GraphBuilder, node: onnx_protobuf::NodeProto) {
    let g = b.graph_mut();
    g.node.insert(1, node);
    g.node[2].input[0] = "d".into();
}

/// Each case must be refused with every fragment in its message, allocating at most
/// [`ALLOCATION_BOUND`] bytes at once while compiling.
fn check_refused(cases: Vec<(&str, Vec<u8>, &[&str])>) {
    let mut failures = Vec::new();
    for (name, onnx, fragments) in &cases {
        LARGEST.with(|l| l.set(0));
        let result = mfn_compiler::compile(onnx, &Default::default());
        let largest = LARGEST.with(Cell::get);
        let message = match result {
            Ok(_) => {
                failures.push(format!("{name}: compiled, but an error was expected"));
                continue;
            }
            Err(e) => e.to_string(),
        };
        eprintln!("{name}: {message} (largest allocation {largest} bytes)");
        let missing: Vec<&&str> = fragments.iter().filter(|f| !message.contains(**f)).collect();
        if !missing.is_empty() {
            failures.push(format!("{name}: message {message:?} lacks {missing:?}"));
        }
        if largest > ALLOCATION_BOUND {
            failures.push(format!("{name}: allocated {largest} bytes at once before refusing"));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn the_base_model_compiles_in_small_allocations() {
    let onnx = model(|_| {});
    LARGEST.with(|l| l.set(0));
    mfn_compiler::compile(&onnx, &Default::default()).expect("the base model compiles");
    let largest = LARGEST.with(Cell::get);
    assert!(largest <= ALLOCATION_BOUND, "compiling the base model allocated {largest} bytes at once");
    // The tracker sees what this thread allocates.
    let big = std::hint::black_box(vec![1u8; 2 * ALLOCATION_BOUND]);
    assert!(LARGEST.with(Cell::get) >= big.len(), "the allocation tracker missed a {} byte allocation", big.len());
}

#[test]
fn absurd_dimensions() {
    const HUGE: i64 = 1 << 40;
    let input = |dims: &[Dim]| model(|b| b.graph_mut().input[0] = builder::value_info("x", DataType::FLOAT, dims));
    check_refused(vec![
        (
            "a 2^40-element initializer with 4 bytes of data",
            model(|b| initializer(b, "b").dims = vec![1 << 20, 1 << 20]),
            &["tensor 'b'", "shape [1048576, 1048576] has more than 268435456 elements"],
        ),
        (
            "a 2^40-element float_data initializer",
            model(|b| {
                let t = initializer(b, "b");
                t.raw_data.clear();
                t.float_data = vec![0.0; 4];
                t.dims = vec![HUGE];
            }),
            &["tensor 'b'", "more than 268435456 elements"],
        ),
        ("dimensions whose product overflows u64", model(|b| initializer(b, "b").dims = vec![i64::MAX, i64::MAX, 4]), &["tensor 'b'", "more than 268435456 elements"]),
        ("a 2^40-element graph input", input(&[Dim::param("N"), (1 << 20).into(), (1 << 20).into()]), &["'x'", "too large"]),
        ("a graph input of i64::MAX channels", input(&[Dim::param("N"), i64::MAX.into(), 8.into(), 8.into()]), &["'x'", "too large"]),
        (
            "a Reshape to 2^40 elements",
            model(|b| {
                b.initializer_i64("shape", &[2], vec![1, HUGE]);
                after_conv(b, builder::node_proto("reshape", "Reshape", &["c", "shape"], &["d"], &[]));
            }),
            &["node 'reshape' (Reshape)"],
        ),
        ("a Conv weight of 2^20 x 2^20 output channels", model(|b| initializer(b, "w").dims = vec![1 << 20, 1 << 20, 3, 3]), &["tensor 'w'", "more than 268435456 elements"]),
    ]);
}

#[test]
fn negative_and_zero_dimensions() {
    let input = |dims: &[Dim]| model(|b| b.graph_mut().input[0] = builder::value_info("x", DataType::FLOAT, dims));
    check_refused(vec![
        ("a negative input channel count", input(&[Dim::param("N"), (-3).into(), 8.into(), 8.into()]), &["graph input 'x'", "dimension 1 must be a fixed positive size"]),
        ("a zero input height", input(&[Dim::param("N"), 3.into(), 0.into(), 8.into()]), &["graph input 'x'", "dimension 2 must be a fixed positive size"]),
        ("a negative initializer dimension", model(|b| initializer(b, "w").dims = vec![4, 3, -3, -3]), &["tensor 'w'", "negative dimension -3"]),
        (
            "a Conv weight with zero output channels",
            model(|b| {
                let t = initializer(b, "w");
                t.dims = vec![0, 3, 3, 3];
                t.raw_data.clear();
            }),
            &["node 'conv' (Conv)"],
        ),
        (
            "a zero-size bias",
            model(|b| {
                let t = initializer(b, "b");
                t.dims = vec![0];
                t.raw_data.clear();
            }),
            &["node 'conv' (Conv)", "bias [0] does not match 4 output channels"],
        ),
        (
            "a Reshape to a negative size",
            model(|b| {
                b.initializer_i64("shape", &[2], vec![1, -5]);
                after_conv(b, builder::node_proto("reshape", "Reshape", &["c", "shape"], &["d"], &[]));
            }),
            &["node 'reshape' (Reshape)"],
        ),
        (
            "a Reshape to zero elements",
            model(|b| {
                b.initializer_i64("shape", &[2], vec![1, 0]);
                after_conv(b, builder::node_proto("reshape", "Reshape", &["c", "shape"], &["d"], &[]));
            }),
            &["node 'reshape' (Reshape)"],
        ),
    ]);
}

#[test]
fn cycles_and_names() {
    check_refused(vec![
        ("a node reading its own output", model(|b| b.graph_mut().node[1].input[0] = "y".into()), &["node 'relu' reads 'y'", "cycle"]),
        (
            "a two-node cycle beside the graph",
            model(|b| {
                let g = b.graph_mut();
                g.node.push(builder::node_proto("p", "Relu", &["q_out"], &["p_out"], &[]));
                g.node.push(builder::node_proto("q", "Relu", &["p_out"], &["q_out"], &[]));
            }),
            &["reads", "cycle"],
        ),
        ("a node reading the empty name as its data", model(|b| b.graph_mut().node[1].input[0] = String::new()), &["node 'relu' (Relu)", "input 0 is missing"]),
        ("a node without outputs", model(|b| b.graph_mut().node[1].output.clear()), &["node 'relu' (Relu)", "exactly one output"]),
        ("a node output with an empty name", model(|b| b.graph_mut().node[1].output[0] = String::new()), &["node 'relu' (Relu)", "empty name"]),
        ("a graph output without name", model(|b| b.graph_mut().output[0].name = String::new()), &["graph output ''"]),
        (
            "a node output named like the graph input",
            model(|b| {
                let g = b.graph_mut();
                g.node[1].output[0] = "x".into();
                g.output[0].name = "x".into();
            }),
            &["node 'relu' (Relu)", "output 'x' is already defined"],
        ),
        (
            "a node output named like an initializer",
            model(|b| {
                let g = b.graph_mut();
                g.node[1].output[0] = "w".into();
                g.output[0].name = "w".into();
            }),
            &["node 'relu' (Relu)", "output 'w' is already defined"],
        ),
        (
            "two nodes writing one name",
            model(|b| b.graph_mut().node.push(builder::node_proto("again", "Sigmoid", &["c"], &["y"], &[]))),
            &["'again'", "output 'y' is already defined"],
        ),
        (
            "two graph inputs of one name",
            model(|b| {
                let g = b.graph_mut();
                let copy = g.input[0].clone();
                g.input.push(copy);
            }),
            &["graph input 'x'", "two graph inputs have this name"],
        ),
    ]);
}

#[test]
fn initializer_bytes_disagreeing_with_shapes() {
    check_refused(vec![
        ("raw_data longer than the shape", model(|b| initializer(b, "b").raw_data.extend([0; 8])), &["tensor 'b'", "raw_data has 24 bytes, shape [4] needs 16"]),
        ("raw_data not a whole number of values", model(|b| initializer(b, "b").raw_data.truncate(15)), &["tensor 'b'", "raw_data has 15 bytes, shape [4] needs 16"]),
        (
            "an int64 shape of 12 bytes",
            model(|b| {
                b.initializer_i64("shape", &[2], vec![1, 256]);
                initializer(b, "shape").raw_data.truncate(12);
                after_conv(b, builder::node_proto("reshape", "Reshape", &["c", "shape"], &["d"], &[]));
            }),
            &["tensor 'shape'", "raw_data has 12 bytes, shape [2] needs 16"],
        ),
        (
            "raw_data of 4 bytes claiming 2^27 floats",
            model(|b| initializer(b, "b").dims = vec![1 << 27]),
            &["tensor 'b'", "raw_data has 16 bytes, shape [134217728] needs 536870912"],
        ),
        (
            "a Constant whose value disagrees with its dims",
            model(|b| {
                let mut t = builder::tensor_f32("k", &[4], &[1.0; 4]);
                t.dims = vec![5];
                after_conv(b, builder::node_proto("k", "Constant", &[], &["kd"], &[Attr::Tensor("value", Box::new(t))]));
                let g = b.graph_mut();
                g.node[2].input[0] = "c".into();
            }),
            &["tensor 'k'", "raw_data has 16 bytes, shape [5] needs 20"],
        ),
    ]);
}

#[test]
fn external_data_references() {
    let entry = |key: &str, value: &str| {
        let mut e = StringStringEntryProto::new();
        e.key = key.into();
        e.value = value.into();
        e
    };
    check_refused(vec![
        (
            "external_data without data_location",
            model(|b| {
                let t = initializer(b, "w");
                t.raw_data.clear();
                t.external_data.push(entry("location", "/etc/passwd"));
            }),
            &["tensor 'w'", "external data is not supported"],
        ),
        (
            "data_location EXTERNAL with an offset and length of 2^40",
            model(|b| {
                let t = initializer(b, "w");
                t.data_location = DataLocation::EXTERNAL.into();
                t.external_data.extend([entry("location", "w.bin"), entry("offset", "0"), entry("length", "1099511627776")]);
            }),
            &["tensor 'w'", "external data is not supported"],
        ),
    ]);
}
