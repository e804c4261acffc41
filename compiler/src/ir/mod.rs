//! The typed intermediate representation.
//!
//! A [`Graph`] is an arena of [`Value`]s and [`Node`]s addressed by typed ids. Invariants, checked by
//! [`Graph::verify`] after import and after every pass:
//! - every value has a concrete shape; dimension 0 of every activation is the batch, specialised to
//!   the batch size the graph was compiled for (constants have no batch dimension);
//! - activations are `f32`, laid out row-major: NCHW for 4-D tensors, `[N, K]` for 2-D ones;
//!   convolution weights are OIHW (`[C_out, C_in / group, kH, kW]`), linear weights `[M, K]`;
//! - `nodes` is in topological order and every input of a node is a graph input, a constant or the
//!   output of an earlier node.

pub mod broadcast;
mod display;
mod op;

pub use op::{Act, Affine, BinOp, Conv, Epilogue, MaxPool, Op};

use crate::error::CompileError;

/// Index of a value in [`Graph::values`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(pub u32);

/// Index of a node in [`Graph::nodes`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

/// A concrete tensor shape.
pub type Shape = Vec<usize>;

/// Element count of a shape.
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Row-major `data` of `shape` with its axes permuted: output axis `i` is input axis `perm[i]`.
pub fn permute<T: Copy>(data: &[T], shape: &[usize], perm: &[usize]) -> Vec<T> {
    let rank = shape.len();
    let mut strides = vec![1; rank];
    for i in (0..rank.saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let mut index = vec![0usize; rank];
    let mut out = Vec::with_capacity(data.len());
    for _ in 0..data.len() {
        out.push(data[(0..rank).map(|i| index[i] * strides[perm[i]]).sum::<usize>()]);
        for i in (0..rank).rev() {
            index[i] += 1;
            if index[i] < out_shape[i] {
                break;
            }
            index[i] = 0;
        }
    }
    out
}

/// Constant data carried by a value (ONNX initialisers and `Constant` nodes).
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    /// Floats: weights, biases and the other constant operands of operations.
    F32(Vec<f32>),
    /// Integers: shapes, axes and indices the importer computes with (Reshape targets, Shape,
    /// Gather); no kernel reads them.
    I64(Vec<i64>),
}

/// A tensor of the graph: a graph input, a constant or the output of a node.
#[derive(Clone, Debug)]
pub struct Value {
    /// The ONNX name, kept for error messages, plans and dumps.
    pub name: String,
    /// Its concrete shape: an activation's begins with the batch; a constant's is its own, with no
    /// batch axis.
    pub shape: Shape,
    /// `Some` for constants; activations are computed at run time.
    pub data: Option<TensorData>,
}

impl Value {
    /// The f32 data of a constant value.
    pub fn f32_data(&self) -> Option<&[f32]> {
        match &self.data {
            Some(TensorData::F32(d)) => Some(d),
            _ => None,
        }
    }
}

/// One operation of the graph: `op` applied to `inputs` computes `output`.
#[derive(Clone, Debug)]
pub struct Node {
    /// ONNX node names this node stands for: one after import, several once passes fuse nodes.
    pub names: Vec<String>,
    /// The operation and its attributes.
    pub op: Op,
    /// The operands, in the order the [`Op`] variant documents (for a layer: the activation, the
    /// weights, the bias, then the residual where the epilogue has one).
    pub inputs: Vec<ValueId>,
    /// The one value it computes.
    pub output: ValueId,
}

impl Node {
    /// The first (primary) ONNX node name, used in error messages.
    pub fn name(&self) -> &str {
        self.names.first().map(String::as_str).unwrap_or("?")
    }
}

/// A model: the value arena, the nodes that compute values from values, and its inputs and
/// outputs. See the module documentation for the invariants.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    /// Every value, indexed by [`ValueId`]: graph inputs, constants and node outputs. A value no
    /// node reads any more stays (ids are indices).
    pub values: Vec<Value>,
    /// The nodes, in topological order.
    pub nodes: Vec<Node>,
    /// The graph inputs, in the model's order (initialisers the model also lists as inputs are
    /// constants, not inputs). Code generation needs exactly one.
    pub inputs: Vec<ValueId>,
    /// The graph outputs, in the model's order.
    pub outputs: Vec<ValueId>,
    /// The batch size dimension 0 of activations was specialised to.
    pub batch: usize,
    /// The imported model begins with constant arithmetic on its input (an input normalisation
    /// such as `(x - 127.5) / 128`), which the passes may have folded away since.
    pub normalises_input: bool,
}

impl Graph {
    /// The value `id`.
    pub fn value(&self, id: ValueId) -> &Value {
        &self.values[id.0 as usize]
    }

    /// The value `id`, mutable.
    pub fn value_mut(&mut self, id: ValueId) -> &mut Value {
        &mut self.values[id.0 as usize]
    }

    /// Adds a value, a constant where `data` is `Some`, and returns its id. It is neither a graph
    /// input nor a node's output until one is made to refer to it.
    pub fn add_value(&mut self, name: impl Into<String>, shape: Shape, data: Option<TensorData>) -> ValueId {
        self.values.push(Value { name: name.into(), shape, data });
        ValueId(self.values.len() as u32 - 1)
    }

    /// Adds an f32 constant.
    pub fn add_const(&mut self, name: impl Into<String>, shape: Shape, data: Vec<f32>) -> ValueId {
        self.add_value(name, shape, Some(TensorData::F32(data)))
    }

    /// The shape of value `id`.
    pub fn shape(&self, id: ValueId) -> &[usize] {
        &self.value(id).shape
    }

    /// Whether value `id` is a constant (carries data).
    pub fn is_const(&self, id: ValueId) -> bool {
        self.value(id).data.is_some()
    }

    /// The f32 data of a constant value, `None` for activations.
    pub fn const_f32(&self, id: ValueId) -> Option<&[f32]> {
        self.value(id).f32_data()
    }

    /// Index of the node producing `id`, if any.
    pub fn producer(&self, id: ValueId) -> Option<usize> {
        self.nodes.iter().position(|n| n.output == id)
    }

    /// How many times `id` is read: once per input slot of a node that reads it, plus once per graph output that is `id`.
    pub fn use_count(&self, id: ValueId) -> usize {
        let by_nodes = self.nodes.iter().flat_map(|n| &n.inputs).filter(|&&v| v == id).count();
        by_nodes + self.outputs.iter().filter(|&&v| v == id).count()
    }

    /// Indices of the nodes that read `id`.
    pub fn consumers(&self, id: ValueId) -> Vec<usize> {
        (0..self.nodes.len()).filter(|&i| self.nodes[i].inputs.contains(&id)).collect()
    }

    /// Makes every reader of `from` (nodes and graph outputs) read `to` instead.
    pub fn replace_uses(&mut self, from: ValueId, to: ValueId) {
        for node in &mut self.nodes {
            for input in &mut node.inputs {
                if *input == from {
                    *input = to;
                }
            }
        }
        for output in &mut self.outputs {
            if *output == from {
                *output = to;
            }
        }
    }

    /// Checks the invariants listed in the module documentation.
    pub fn verify(&self) -> Result<(), CompileError> {
        let mut defined = vec![false; self.values.len()];
        for &i in &self.inputs {
            defined[i.0 as usize] = true;
        }
        for (i, v) in self.values.iter().enumerate() {
            if v.data.is_some() {
                defined[i] = true;
            }
        }
        for node in &self.nodes {
            for &input in &node.inputs {
                if !defined[input.0 as usize] {
                    return Err(CompileError::Internal(format!("node '{}' reads '{}' before it is computed", node.name(), self.value(input).name)));
                }
            }
            defined[node.output.0 as usize] = true;
        }
        for &o in &self.outputs {
            if !defined[o.0 as usize] {
                return Err(CompileError::Internal(format!("graph output '{}' is never computed", self.value(o).name)));
            }
        }
        Ok(())
    }
}
