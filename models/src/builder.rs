//! A small ONNX graph builder, so tests anywhere in the project can write a model in a few lines.
//!
//! ```
//! use mfn_models::builder::{Attr, Dim, GraphBuilder};
//! let bytes = GraphBuilder::new(13)
//!     .input("x", &[Dim::param("N"), 4.into()])
//!     .node("Relu", &["x"], &["y"], vec![])
//!     .node("Flatten", &["y"], &["z"], vec![Attr::Int("axis", 1)])
//!     .output("z", &[Dim::param("N"), 4.into()])
//!     .to_bytes();
//! assert!(!bytes.is_empty());
//! ```
//!
//! Initializers are stored in `raw_data` (little-endian), as PyTorch's exporter does; use
//! [`GraphBuilder::initializer_float_data`] for the other legal encoding. [`GraphBuilder::build`]
//! returns a plain [`ModelProto`] and the free functions below build single protos, so a test can
//! corrupt any field before serialising.

use onnx_protobuf::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto, AttributeProto, GraphProto, Message, ModelProto, NodeProto, OperatorSetIdProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

/// IR version written by default: ONNX 1.13+, what PyTorch 2.x writes for opset 13.
pub const DEFAULT_IR_VERSION: i64 = 8;

/// One dimension of a graph input or output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dim {
    /// A fixed size.
    Fixed(i64),
    /// A symbolic size such as the batch `"N"`.
    Param(String),
    /// Present but neither fixed nor named (an empty `Dimension`).
    Unknown,
}

impl Dim {
    /// A symbolic dimension.
    pub fn param(name: &str) -> Dim {
        Dim::Param(name.to_string())
    }

    /// Fixed dimensions from plain sizes: `Dim::fixed(&[1, 3, 8, 8])`.
    pub fn fixed(sizes: &[i64]) -> Vec<Dim> {
        sizes.iter().map(|&s| Dim::Fixed(s)).collect()
    }
}

impl From<i64> for Dim {
    fn from(size: i64) -> Dim {
        Dim::Fixed(size)
    }
}

impl From<&str> for Dim {
    fn from(name: &str) -> Dim {
        Dim::param(name)
    }
}

/// A node attribute: the attribute name first, then its value.
#[derive(Clone, Debug, PartialEq)]
pub enum Attr {
    /// An `INT` attribute.
    Int(&'static str, i64),
    /// An `INTS` attribute.
    Ints(&'static str, Vec<i64>),
    /// A `FLOAT` attribute.
    Float(&'static str, f32),
    /// A `FLOATS` attribute.
    Floats(&'static str, Vec<f32>),
    /// A `STRING` attribute (stored as its UTF-8 bytes).
    Str(&'static str, String),
    /// A tensor value, e.g. for `Constant`'s `value` (boxed: a `TensorProto` is large).
    Tensor(&'static str, Box<TensorProto>),
}

impl Attr {
    /// The attribute as a proto, with its `type` field set as ONNX requires.
    pub fn to_proto(&self) -> AttributeProto {
        let mut a = AttributeProto::new();
        let ty = match self {
            Attr::Int(n, v) => {
                a.name = n.to_string();
                a.i = *v;
                AttributeType::INT
            }
            Attr::Ints(n, v) => {
                a.name = n.to_string();
                a.ints = v.clone();
                AttributeType::INTS
            }
            Attr::Float(n, v) => {
                a.name = n.to_string();
                a.f = *v;
                AttributeType::FLOAT
            }
            Attr::Floats(n, v) => {
                a.name = n.to_string();
                a.floats = v.clone();
                AttributeType::FLOATS
            }
            Attr::Str(n, v) => {
                a.name = n.to_string();
                a.s = v.as_bytes().to_vec();
                AttributeType::STRING
            }
            Attr::Tensor(n, t) => {
                a.name = n.to_string();
                a.t = Some(t.as_ref().clone()).into();
                AttributeType::TENSOR
            }
        };
        a.type_ = ty.into();
        a
    }
}

/// A float tensor with its data in `raw_data` (little-endian), like PyTorch writes.
pub fn tensor_f32(name: &str, dims: &[i64], data: &[f32]) -> TensorProto {
    check_len(name, dims, data.len());
    let mut t = tensor_header(name, dims, DataType::FLOAT);
    t.raw_data = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    t
}

/// A float tensor with its data in the `float_data` field instead of `raw_data`.
pub fn tensor_f32_float_data(name: &str, dims: &[i64], data: &[f32]) -> TensorProto {
    check_len(name, dims, data.len());
    let mut t = tensor_header(name, dims, DataType::FLOAT);
    t.float_data = data.to_vec();
    t
}

/// An int64 tensor with its data in `raw_data` (little-endian).
pub fn tensor_i64(name: &str, dims: &[i64], data: &[i64]) -> TensorProto {
    check_len(name, dims, data.len());
    let mut t = tensor_header(name, dims, DataType::INT64);
    t.raw_data = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    t
}

fn tensor_header(name: &str, dims: &[i64], ty: DataType) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = name.to_string();
    t.dims = dims.to_vec();
    t.data_type = ty as i32;
    t
}

/// A wrong element count is a bug in the test that wrote it: fail loudly where it was made.
fn check_len(name: &str, dims: &[i64], len: usize) {
    let expected: i64 = dims.iter().product();
    assert_eq!(expected as usize, len, "tensor {name}: dims {dims:?} need {expected} values, got {len}");
}

/// A `ValueInfoProto` for a dense tensor of element type `elem` and the given shape.
pub fn value_info(name: &str, elem: DataType, dims: &[Dim]) -> ValueInfoProto {
    let mut shape = TensorShapeProto::new();
    for d in dims {
        let mut dim = tensor_shape_proto::Dimension::new();
        dim.value = match d {
            Dim::Fixed(v) => Some(tensor_shape_proto::dimension::Value::DimValue(*v)),
            Dim::Param(p) => Some(tensor_shape_proto::dimension::Value::DimParam(p.clone())),
            Dim::Unknown => None,
        };
        shape.dim.push(dim);
    }
    let mut tensor = type_proto::Tensor::new();
    tensor.elem_type = elem as i32;
    tensor.shape = Some(shape).into();
    let mut ty = TypeProto::new();
    ty.value = Some(type_proto::Value::TensorType(tensor));
    let mut vi = ValueInfoProto::new();
    vi.name = name.to_string();
    vi.type_ = Some(ty).into();
    vi
}

/// A node in the default ONNX domain.
pub fn node_proto(name: &str, op_type: &str, inputs: &[&str], outputs: &[&str], attrs: &[Attr]) -> NodeProto {
    let mut n = NodeProto::new();
    n.name = name.to_string();
    n.op_type = op_type.to_string();
    n.input = inputs.iter().map(|s| s.to_string()).collect();
    n.output = outputs.iter().map(|s| s.to_string()).collect();
    n.attribute = attrs.iter().map(Attr::to_proto).collect();
    n
}

/// Wraps a graph in a model importing the default domain at `opset`, with no validation at all:
/// the starting point for tests that feed the importer deliberately broken models.
pub fn model_from_graph(graph: GraphProto, opset: i64, ir_version: i64) -> ModelProto {
    let mut opset_id = OperatorSetIdProto::new();
    opset_id.domain = String::new();
    opset_id.version = opset;
    let mut m = ModelProto::new();
    m.ir_version = ir_version;
    m.opset_import = vec![opset_id];
    m.producer_name = "mfn-models".to_string();
    m.producer_version = env!("CARGO_PKG_VERSION").to_string();
    m.graph = Some(graph).into();
    m
}

/// Builds a single-graph ONNX model node by node. Methods chain on `&mut self`, so the builder
/// works both in one expression and inside loops.
#[derive(Clone, Debug)]
pub struct GraphBuilder {
    opset: i64,
    ir_version: i64,
    graph: GraphProto,
}

impl GraphBuilder {
    /// An empty graph named "main" for the default domain at `opset`.
    pub fn new(opset: i64) -> Self {
        let mut graph = GraphProto::new();
        graph.name = "main".to_string();
        GraphBuilder { opset, ir_version: DEFAULT_IR_VERSION, graph }
    }

    /// Overrides the model's IR version (default [`DEFAULT_IR_VERSION`]).
    pub fn ir_version(&mut self, v: i64) -> &mut Self {
        self.ir_version = v;
        self
    }

    /// Names the graph.
    pub fn name(&mut self, name: &str) -> &mut Self {
        self.graph.name = name.to_string();
        self
    }

    /// A float graph input.
    pub fn input(&mut self, name: &str, dims: &[Dim]) -> &mut Self {
        self.input_typed(name, DataType::FLOAT, dims)
    }

    /// A graph input of any element type.
    pub fn input_typed(&mut self, name: &str, elem: DataType, dims: &[Dim]) -> &mut Self {
        self.graph.input.push(value_info(name, elem, dims));
        self
    }

    /// A float graph output.
    pub fn output(&mut self, name: &str, dims: &[Dim]) -> &mut Self {
        self.output_typed(name, DataType::FLOAT, dims)
    }

    /// A graph output of any element type.
    pub fn output_typed(&mut self, name: &str, elem: DataType, dims: &[Dim]) -> &mut Self {
        self.graph.output.push(value_info(name, elem, dims));
        self
    }

    /// A float initializer (stored in `raw_data`). Panics if `data` does not match `dims`.
    pub fn initializer(&mut self, name: &str, dims: &[i64], data: Vec<f32>) -> &mut Self {
        self.graph.initializer.push(tensor_f32(name, dims, &data));
        self
    }

    /// A float initializer stored in the `float_data` field.
    pub fn initializer_float_data(&mut self, name: &str, dims: &[i64], data: Vec<f32>) -> &mut Self {
        self.graph.initializer.push(tensor_f32_float_data(name, dims, &data));
        self
    }

    /// An int64 initializer (stored in `raw_data`), e.g. a `Reshape` shape.
    pub fn initializer_i64(&mut self, name: &str, dims: &[i64], data: Vec<i64>) -> &mut Self {
        self.graph.initializer.push(tensor_i64(name, dims, &data));
        self
    }

    /// A node named `<op_type>_<index>`.
    pub fn node(&mut self, op_type: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<Attr>) -> &mut Self {
        let name = format!("{op_type}_{}", self.graph.node.len());
        self.named_node(&name, op_type, inputs, outputs, attrs)
    }

    /// A node with an explicit name.
    pub fn named_node(&mut self, name: &str, op_type: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<Attr>) -> &mut Self {
        self.graph.node.push(node_proto(name, op_type, inputs, outputs, &attrs));
        self
    }

    /// The graph built so far, for direct edits.
    pub fn graph_mut(&mut self) -> &mut GraphProto {
        &mut self.graph
    }

    /// The model. The builder stays usable (it is cloned).
    pub fn build(&self) -> ModelProto {
        model_from_graph(self.graph.clone(), self.opset, self.ir_version)
    }

    /// The serialised model, as an `.onnx` file holds it.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.build().write_to_bytes().expect("a proto3 message always serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_bytes() {
        let mut b = GraphBuilder::new(13);
        b.input("x", &[Dim::param("N"), 3.into(), Dim::Unknown])
            .initializer("w", &[2], vec![1.0, -2.5])
            .initializer_i64("shape", &[2], vec![-1, 6])
            .named_node("mul", "Mul", &["x", "w"], &["y"], vec![])
            .node("Reshape", &["y", "shape"], &["z"], vec![Attr::Ints("k", vec![1, 2]), Attr::Str("s", "v".into())])
            .output("z", &[Dim::param("N"), 6.into()]);
        let c = Box::new(tensor_f32_float_data("c", &[1], &[2.0]));
        b.node("Constant", &[], &["c"], vec![Attr::Tensor("value", c)]);
        let m = ModelProto::parse_from_bytes(&b.to_bytes()).unwrap();
        assert_eq!(m, b.build());
        assert_eq!(m.ir_version, 8);
        assert_eq!(m.opset_import[0].version, 13);
        let g = m.graph.unwrap();
        assert_eq!(g.node[1].name, "Reshape_1");
        assert_eq!(g.node[1].attribute[0].type_.enum_value(), Ok(AttributeType::INTS));
        assert_eq!(g.initializer[0].raw_data, [1.0f32.to_le_bytes(), (-2.5f32).to_le_bytes()].concat());
        assert_eq!(g.initializer[1].data_type, DataType::INT64 as i32);
        assert_eq!(g.node[2].attribute[0].t.float_data, [2.0]);
        let Some(type_proto::Value::TensorType(t)) = &g.input[0].type_.value else { panic!() };
        assert_eq!(t.shape.dim.len(), 3);
        assert_eq!(t.shape.dim[2].value, None);
    }

    #[test]
    #[should_panic(expected = "need 4 values")]
    fn wrong_element_count_panics() {
        GraphBuilder::new(13).initializer("w", &[2, 2], vec![1.0]);
    }
}
