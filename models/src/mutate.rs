//! Structure-aware and byte-level mutations of ONNX models, shared by the `onnx_mutate` fuzz
//! target (`fuzz/`) and the seeded mutation test that runs in `cargo test`
//! (`tests/mutations.rs`), so both try the same things.
//!
//! A mutation changes one field the importer reads — a dimension, an attribute, an initializer's
//! data or type, a node's inputs, outputs or op type, the graph's inputs and outputs, the opset —
//! to a value chosen to hit edge cases (0, -1, 2^31, 2^40, `i64::MAX`, a name defined elsewhere,
//! an op mfn does not implement). The choices come from a [`Choices`]: a seeded [`Rng`] in the test,
//! the fuzzer's input bytes in the fuzz target (so libFuzzer can minimise a crash).

use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::tensor_proto::DataLocation;
use onnx_protobuf::{tensor_shape_proto, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto, StringStringEntryProto, TensorProto};

use crate::rng::Rng;

/// A source of choices.
pub trait Choices {
    /// The next 64 bits to choose with; the other methods are built on it.
    fn next_u64(&mut self) -> u64;

    /// A number in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// One of `items` (which must not be empty).
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

impl Choices for Rng {
    fn next_u64(&mut self) -> u64 {
        Rng::next_u64(self)
    }
}

/// Choices read from a byte string, eight bytes at a time (zero-padded); zeros once it is spent.
pub struct ByteChoices<'a> {
    bytes: &'a [u8],
}

impl<'a> ByteChoices<'a> {
    /// Choices read from `bytes`, first byte first.
    pub fn new(bytes: &'a [u8]) -> Self {
        ByteChoices { bytes }
    }
}

impl ByteChoices<'_> {
    /// The next `len` (at most 8) bytes as a little-endian number, zero-padded.
    fn take(&mut self, len: usize) -> u64 {
        let n = self.bytes.len().min(len);
        let mut word = [0u8; 8];
        word[..n].copy_from_slice(&self.bytes[..n]);
        self.bytes = &self.bytes[n..];
        u64::from_le_bytes(word)
    }
}

impl Choices for ByteChoices<'_> {
    fn next_u64(&mut self) -> u64 {
        self.take(8)
    }

    /// Reads only the bytes `n` needs (one for up to 256 choices), so that short fuzzer inputs
    /// still make many choices.
    fn below(&mut self, n: usize) -> usize {
        let bytes = (usize::BITS - n.saturating_sub(1).leading_zeros()).div_ceil(8) as usize;
        if n == 0 {
            0
        } else {
            (self.take(bytes) % n as u64) as usize
        }
    }
}

/// Integers at the edges: what overflows, what is negative, what is absurdly large.
const INTERESTING: [i64; 16] = [0, 1, -1, 2, 3, 7, 64, 255, -2, 1 << 16, 1 << 20, 1 << 31, (1 << 31) - 1, 1 << 40, i64::MAX, i64::MIN];

/// Op types to swap in: what mfn implements, what it may implement, what it never will.
const OP_TYPES: [&str; 28] = [
    "Conv",
    "BatchNormalization",
    "PRelu",
    "Relu",
    "Clip",
    "Sigmoid",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Flatten",
    "Reshape",
    "Gemm",
    "MatMul",
    "GlobalAveragePool",
    "Identity",
    "Constant",
    "Dropout",
    "MaxPool",
    "Resize",
    "Transpose",
    "Concat",
    "Shape",
    "Gather",
    "Unsqueeze",
    "Softmax",
    "LSTM",
    "",
];

/// Attribute names the importer reads for some op.
const ATTR_NAMES: [&str; 16] =
    ["kernel_shape", "strides", "pads", "dilations", "group", "auto_pad", "axis", "alpha", "beta", "transA", "transB", "epsilon", "value", "min", "max", "perm"];

/// Applies `count` random structural mutations to `model`.
pub fn mutate_model(model: &mut ModelProto, choices: &mut impl Choices, count: usize) {
    for _ in 0..count {
        if choices.below(16) == 0 {
            mutate_opset(model, choices);
            continue;
        }
        let graph = model.graph.mut_or_insert_default();
        match choices.below(9) {
            0 => mutate_initializer_dims(graph, choices),
            1 => mutate_initializer_data(graph, choices),
            2 => mutate_attribute(graph, choices),
            3 => mutate_node_io(graph, choices),
            4 => mutate_op_type(graph, choices),
            5 => mutate_node_list(graph, choices),
            6 => mutate_graph_io(graph, choices),
            7 => mutate_initializer_list(graph, choices),
            _ => mutate_io_dims(graph, choices),
        }
    }
}

/// Applies `count` random byte-level mutations (overwrite, insert, delete, truncate, duplicate).
pub fn mutate_bytes(bytes: &mut Vec<u8>, choices: &mut impl Choices, count: usize) {
    for _ in 0..count {
        if bytes.is_empty() {
            bytes.push(choices.next_u64() as u8);
            continue;
        }
        let at = choices.below(bytes.len());
        match choices.below(6) {
            0 | 1 => bytes[at] = choices.next_u64() as u8,
            2 => bytes[at] ^= 1 << choices.below(8),
            3 => bytes.insert(at, choices.next_u64() as u8),
            4 => {
                let end = (at + 1 + choices.below(64)).min(bytes.len());
                bytes.drain(at..end);
            }
            _ => {
                // A protobuf varint of an interesting value, written over whatever was there.
                let v = choices.pick(&INTERESTING) as u64;
                let varint = varint(v);
                let end = (at + varint.len()).min(bytes.len());
                bytes.splice(at..end, varint);
            }
        }
    }
}

fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

fn mutate_opset(model: &mut ModelProto, c: &mut impl Choices) {
    match model.opset_import.len() {
        0 => {}
        n => model.opset_import[c.below(n)].version = c.pick(&[7, 9, 11, 13, 17, 18, 19, 0, -1, i64::MAX]),
    }
}

/// A new value for an integer: an interesting one, or one step from the old.
fn new_int(old: i64, c: &mut impl Choices) -> i64 {
    match c.below(3) {
        0 => old.wrapping_add(1),
        1 => old.wrapping_sub(1),
        _ => c.pick(&INTERESTING),
    }
}

fn mutate_ints(v: &mut Vec<i64>, c: &mut impl Choices) {
    match c.below(5) {
        0 => v.clear(),
        1 => v.push(c.pick(&INTERESTING)),
        2 if !v.is_empty() => {
            v.pop();
        }
        _ if !v.is_empty() => {
            let i = c.below(v.len());
            v[i] = new_int(v[i], c);
        }
        _ => v.push(new_int(1, c)),
    }
}

fn mutate_initializer_dims(g: &mut GraphProto, c: &mut impl Choices) {
    if let Some(t) = pick_mut(&mut g.initializer, c) {
        mutate_ints(&mut t.dims, c);
    }
}

fn mutate_initializer_data(g: &mut GraphProto, c: &mut impl Choices) {
    let Some(t) = pick_mut(&mut g.initializer, c) else { return };
    mutate_tensor_data(t, c);
}

fn mutate_tensor_data(t: &mut TensorProto, c: &mut impl Choices) {
    match c.below(8) {
        0 => {
            let keep = c.below(t.raw_data.len() + 1);
            t.raw_data.truncate(keep);
        }
        1 => t.raw_data.extend(std::iter::repeat_n(0u8, 1 + c.below(16))),
        2 => {
            // The same values moved to float_data (legal), or raw_data dropped (wrong length).
            if c.below(2) == 0 {
                t.float_data = t.raw_data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            }
            t.raw_data.clear();
        }
        3 => t.data_type = c.pick(&[0, 1, 2, 6, 7, 10, 11, 16, 99, -1]),
        4 => {
            t.data_location = DataLocation::EXTERNAL.into();
            let mut entry = StringStringEntryProto::new();
            entry.key = "location".into();
            entry.value = "weights.bin".into();
            t.external_data.push(entry);
        }
        5 => {
            // Non-finite weights: must compile (or be refused), never crash.
            if t.raw_data.len() >= 4 {
                let at = 4 * c.below(t.raw_data.len() / 4);
                let v = c.pick(&[f32::NAN, f32::INFINITY, f32::NEG_INFINITY, f32::MAX, f32::MIN_POSITIVE, -0.0]);
                t.raw_data[at..at + 4].copy_from_slice(&v.to_le_bytes());
            }
        }
        6 => t.int64_data.push(c.pick(&INTERESTING)),
        _ => t.name = c.pick(&["", "input", "embedding", "w"]).to_string(),
    }
}

fn mutate_attribute(g: &mut GraphProto, c: &mut impl Choices) {
    let Some(node) = pick_mut(&mut g.node, c) else { return };
    if node.attribute.is_empty() || c.below(4) == 0 {
        node.attribute.push(random_attribute(c));
        return;
    }
    let i = c.below(node.attribute.len());
    let a = &mut node.attribute[i];
    match c.below(7) {
        0 => {
            node.attribute.remove(i);
        }
        1 => mutate_ints(&mut a.ints, c),
        2 => a.i = new_int(a.i, c),
        3 => a.f = c.pick(&[0.0, -1.0, f32::NAN, f32::INFINITY, 1e30, 1e-30]),
        4 => a.type_ = c.pick(&[AttributeType::INT, AttributeType::INTS, AttributeType::FLOAT, AttributeType::STRING, AttributeType::TENSOR, AttributeType::UNDEFINED]).into(),
        5 => a.s = c.pick(&[&b"SAME_UPPER"[..], b"VALID", b"NOTSET", b"SAME_LOWER", b"", b"\xff\xfe"]).to_vec(),
        _ => {
            let mut t = a.t.take().unwrap_or_default();
            mutate_tensor_data(&mut t, c);
            mutate_ints(&mut t.dims, c);
            a.t = Some(t).into();
        }
    }
}

fn random_attribute(c: &mut impl Choices) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = c.pick(&ATTR_NAMES).to_string();
    match c.below(4) {
        0 => {
            a.type_ = AttributeType::INT.into();
            a.i = c.pick(&INTERESTING);
        }
        1 => {
            a.type_ = AttributeType::INTS.into();
            a.ints = (0..c.below(5)).map(|_| c.pick(&INTERESTING)).collect();
        }
        2 => {
            a.type_ = AttributeType::FLOAT.into();
            a.f = c.pick(&[0.0, 1.0, -1.0, f32::NAN]);
        }
        _ => {
            a.type_ = AttributeType::STRING.into();
            a.s = b"SAME_UPPER".to_vec();
        }
    }
    a
}

/// Every name the graph defines or reads, to rewire nodes to (cycles, duplicates, type clashes).
fn names(g: &GraphProto) -> Vec<String> {
    let mut names: Vec<String> = g.input.iter().map(|v| v.name.clone()).collect();
    names.extend(g.initializer.iter().map(|t| t.name.clone()));
    names.extend(g.node.iter().flat_map(|n| n.output.iter().cloned()));
    names.push(String::new());
    names.push("undefined".into());
    names
}

fn mutate_node_io(g: &mut GraphProto, c: &mut impl Choices) {
    let names = names(g);
    let Some(node) = pick_mut(&mut g.node, c) else { return };
    let name = names[c.below(names.len())].clone();
    let list = if c.below(3) == 0 { &mut node.output } else { &mut node.input };
    match c.below(4) {
        0 => list.push(name),
        1 if !list.is_empty() => {
            list.remove(c.below(list.len()));
        }
        _ if !list.is_empty() => {
            let i = c.below(list.len());
            list[i] = name;
        }
        _ => list.push(name),
    }
}

fn mutate_op_type(g: &mut GraphProto, c: &mut impl Choices) {
    let Some(node) = pick_mut(&mut g.node, c) else { return };
    if c.below(8) == 0 {
        node.domain = c.pick(&["com.microsoft", "ai.onnx", "ai.onnx.ml"]).to_string();
    } else {
        node.op_type = c.pick(&OP_TYPES).to_string();
    }
}

fn mutate_node_list(g: &mut GraphProto, c: &mut impl Choices) {
    let n = g.node.len();
    if n == 0 {
        return;
    }
    let (i, j) = (c.below(n), c.below(n));
    match c.below(4) {
        0 => {
            g.node.remove(i);
        }
        1 => {
            let copy: NodeProto = g.node[i].clone();
            g.node.insert(j, copy);
        }
        2 => g.node.swap(i, j),
        _ => g.node.truncate(i + 1),
    }
}

fn mutate_initializer_list(g: &mut GraphProto, c: &mut impl Choices) {
    let n = g.initializer.len();
    if n == 0 {
        return;
    }
    let i = c.below(n);
    match c.below(3) {
        0 => {
            g.initializer.remove(i);
        }
        1 => {
            let copy = g.initializer[i].clone();
            g.initializer.push(copy);
        }
        _ => {
            // A constant shadowing a node output or the graph input.
            let names = names(g);
            g.initializer[i].name = names[c.below(names.len())].clone();
        }
    }
}

fn mutate_graph_io(g: &mut GraphProto, c: &mut impl Choices) {
    let names = names(g);
    let name = names[c.below(names.len())].clone();
    let outputs = c.below(2) == 0;
    let list = if outputs { &mut g.output } else { &mut g.input };
    match c.below(3) {
        0 if !list.is_empty() => {
            let i = c.below(list.len());
            list[i].name = name;
        }
        1 if !list.is_empty() => {
            list.remove(c.below(list.len()));
        }
        _ => {
            let mut copy = list.first().cloned().unwrap_or_default();
            copy.name = name;
            list.push(copy);
        }
    }
}

/// Changes a dimension (or the element type) of a graph input or output.
fn mutate_io_dims(g: &mut GraphProto, c: &mut impl Choices) {
    let list = if c.below(3) == 0 { &mut g.output } else { &mut g.input };
    let Some(vi) = pick_mut(list, c) else { return };
    let Some(type_proto::Value::TensorType(t)) = vi.type_.mut_or_insert_default().value.as_mut() else { return };
    if c.below(6) == 0 {
        t.elem_type = c.pick(&[0, 1, 7, 10, 11]);
        return;
    }
    let dims = &mut t.shape.mut_or_insert_default().dim;
    use tensor_shape_proto::dimension::Value;
    match c.below(4) {
        0 if !dims.is_empty() => {
            dims.remove(c.below(dims.len()));
        }
        1 => dims.push(tensor_shape_proto::Dimension::new()),
        _ if !dims.is_empty() => {
            let i = c.below(dims.len());
            let old = match dims[i].value {
                Some(Value::DimValue(v)) => v,
                _ => 1,
            };
            dims[i].value = match c.below(4) {
                0 => Some(Value::DimParam("H".into())),
                1 => None,
                _ => Some(Value::DimValue(new_int(old, c))),
            };
        }
        _ => {}
    }
}

fn pick_mut<'a, T>(items: &'a mut [T], c: &mut impl Choices) -> Option<&'a mut T> {
    if items.is_empty() {
        return None;
    }
    let i = c.below(items.len());
    items.get_mut(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_choices_are_deterministic_and_end_in_zeros() {
        let mut c = ByteChoices::new(&[1, 0, 0, 0, 0, 0, 0, 0, 7, 9, 1, 2]);
        assert_eq!(c.next_u64(), 1);
        assert_eq!(c.below(5), 2);
        assert_eq!(c.below(300), 9 + 256);
        assert_eq!(c.below(1), 0);
        assert_eq!(c.next_u64(), 2);
        assert_eq!(c.next_u64(), 0);
    }

    #[test]
    fn mutations_change_the_model() {
        let base = crate::builder::GraphBuilder::new(13)
            .input("x", &[crate::Dim::param("N"), 4.into()])
            .node("Relu", &["x"], &["y"], vec![])
            .output("y", &[crate::Dim::param("N"), 4.into()])
            .build();
        let mut rng = Rng::new(3);
        let changed = (0..50)
            .filter(|_| {
                let mut m = base.clone();
                mutate_model(&mut m, &mut rng, 1);
                m != base
            })
            .count();
        assert!(changed > 25, "only {changed} of 50 mutations changed the model");
    }
}
