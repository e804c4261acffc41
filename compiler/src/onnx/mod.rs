//! ONNX front end: protobuf bytes -> [`Graph`] with concrete shapes, specialised for one batch size.

mod attrs;
mod elementwise;
mod layers;
mod resample;
mod shape_ops;
mod tensor;

use std::collections::HashMap;

use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::{type_proto, Message, ModelProto, NodeProto, ValueInfoProto};
use protobuf::Enum;

use crate::error::{CompileError, Result};
use crate::ir::{Graph, Node, Op, Shape, TensorData, ValueId};
use attrs::Attrs;

/// ONNX opsets (default domain) the importer implements.
pub const OPSETS: std::ops::RangeInclusive<i64> = 9..=18;

/// Largest activation tensor accepted (elements per sample), far above any face model, to refuse
/// absurd dimensions before anything is allocated.
const MAX_ACTIVATION_ELEMENTS: usize = 1 << 30;

/// Parses an ONNX model and builds its graph with the batch dimension specialised to `batch`, and
/// any other symbolic input dimension taken from `sample_shape` (the input's shape without the
/// batch), which must also agree with the fixed ones.
pub fn import(bytes: &[u8], batch: usize, sample_shape: Option<&[usize]>) -> Result<Graph> {
    if bytes.is_empty() {
        return Err(CompileError::Parse("the file is empty".into()));
    }
    let model = ModelProto::parse_from_bytes(bytes).map_err(|e| CompileError::Parse(e.to_string()))?;
    let opset = default_opset(&model)?;
    let proto = model.graph.as_ref().ok_or(CompileError::NoGraph)?;
    if proto.node.is_empty() {
        return Err(CompileError::NoGraph);
    }
    let mut imp = Importer { graph: Graph { batch, ..Graph::default() }, names: HashMap::new(), opset };
    for init in &proto.initializer {
        let (shape, data) = tensor::decode(init)?;
        let id = imp.graph.add_value(init.name.clone(), shape, Some(data));
        if imp.names.insert(init.name.clone(), id).is_some() {
            return Err(CompileError::BadTensor { name: init.name.clone(), message: "two initializers have this name".into() });
        }
    }
    let mut input_names = std::collections::HashSet::new();
    for input in &proto.input {
        if !input_names.insert(input.name.as_str()) {
            return Err(CompileError::BadInput { name: input.name.clone(), message: "two graph inputs have this name".into() });
        }
        if !imp.names.contains_key(&input.name) {
            let shape = input_shape(input, batch, sample_shape)?;
            let id = imp.graph.add_value(input.name.clone(), shape, None);
            imp.graph.inputs.push(id);
            imp.names.insert(input.name.clone(), id);
        }
    }
    for node in topological_order(&proto.node, &imp.names)? {
        imp.node(node)?;
    }
    for output in &proto.output {
        let id = *imp.names.get(&output.name).ok_or_else(|| CompileError::BadOutput { name: output.name.clone(), message: "this graph output is computed by no node".into() })?;
        imp.graph.outputs.push(id);
    }
    imp.graph.normalises_input = imp.graph.inputs.first().is_some_and(|&x| {
        let readers = imp.graph.consumers(x);
        !readers.is_empty()
            && readers.iter().all(|&i| {
                let n = &imp.graph.nodes[i];
                matches!(n.op, Op::Binary(_)) && n.inputs.iter().any(|&v| imp.graph.is_const(v))
            })
    });
    imp.graph.verify()?;
    Ok(imp.graph)
}

fn default_opset(model: &ModelProto) -> Result<i64> {
    let version = model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .ok_or_else(|| CompileError::Parse("the model imports no opset of the default ONNX domain".into()))?;
    if !OPSETS.contains(&version) {
        return Err(CompileError::Opset(version));
    }
    Ok(version)
}

/// The input's shape with a symbolic (or fixed) first dimension specialised to `batch`, other
/// symbolic dimensions from `sample_shape`.
fn input_shape(input: &ValueInfoProto, batch: usize, sample_shape: Option<&[usize]>) -> Result<Shape> {
    let bad = |message: String| CompileError::BadInput { name: input.name.clone(), message };
    let Some(type_proto::Value::TensorType(t)) = input.type_.as_ref().and_then(|t| t.value.as_ref()) else {
        return Err(bad("is not a tensor".into()));
    };
    if DataType::from_i32(t.elem_type) != Some(DataType::FLOAT) {
        return Err(bad(format!("element type #{} is not supported (only float is)", t.elem_type)));
    }
    let dims = t.shape.as_ref().map(|s| s.dim.as_slice()).ok_or_else(|| bad("has no shape".into()))?;
    if dims.is_empty() {
        return Err(bad("is a scalar; mfn expects a batch of tensors".into()));
    }
    if let Some(s) = sample_shape.filter(|s| s.len() + 1 != dims.len()) {
        return Err(bad(format!("has {} axes; the requested input shape {s:?} (without the batch) has {}", dims.len(), s.len())));
    }
    let mut shape = vec![batch];
    for (axis, d) in dims.iter().enumerate().skip(1) {
        let requested = sample_shape.map(|s| s[axis - 1]);
        match (d.value.as_ref(), requested) {
            (Some(onnx_protobuf::tensor_shape_proto::dimension::Value::DimValue(v)), r) if *v > 0 => {
                if r.is_some_and(|r| r as i64 != *v) {
                    return Err(bad(format!(
                        "dimension {axis} is fixed at {v}; the requested input shape {:?} asks for {}",
                        sample_shape.unwrap_or_default(),
                        r.unwrap_or_default()
                    )));
                }
                shape.push(*v as usize)
            }
            (Some(onnx_protobuf::tensor_shape_proto::dimension::Value::DimValue(v)), _) => {
                return Err(bad(format!("dimension {axis} must be a fixed positive size, not {v}")));
            }
            (_, Some(r)) if r > 0 => shape.push(r),
            _ => {
                return Err(bad(format!(
                    "dimension {axis} is symbolic: give the input shape when compiling (e.g. `--input-shape 3,640,640`; only the batch, axis 0, may stay symbolic)"
                )))
            }
        }
    }
    check_size(&input.name, &shape)?;
    Ok(shape)
}

/// Refuses shapes whose element count is absurd or overflows.
pub(crate) fn check_size(name: &str, shape: &[usize]) -> Result<()> {
    let n = shape.iter().skip(1).try_fold(1usize, |acc, &d| acc.checked_mul(d));
    match n {
        Some(n) if n <= MAX_ACTIVATION_ELEMENTS && !shape.contains(&0) => Ok(()),
        _ => Err(CompileError::BadTensor { name: name.into(), message: format!("shape {shape:?} is empty or too large (more than {MAX_ACTIVATION_ELEMENTS} elements a sample)") }),
    }
}

/// The nodes in an order where every input is defined first (ONNX requires it, some tools forget).
fn topological_order<'a>(nodes: &'a [NodeProto], known: &HashMap<String, ValueId>) -> Result<Vec<&'a NodeProto>> {
    let mut defined: std::collections::HashSet<&str> = known.keys().map(String::as_str).collect();
    let mut order = Vec::with_capacity(nodes.len());
    let mut pending: Vec<&NodeProto> = nodes.iter().collect();
    while !pending.is_empty() {
        let before = pending.len();
        pending.retain(|n| {
            let ready = n.input.iter().all(|i| i.is_empty() || defined.contains(i.as_str()));
            if ready {
                defined.extend(n.output.iter().map(String::as_str));
                order.push(*n);
            }
            !ready
        });
        if pending.len() == before {
            let n = pending[0];
            let missing = n.input.iter().find(|i| !i.is_empty() && !defined.contains(i.as_str())).cloned().unwrap_or_default();
            return Err(CompileError::UnknownValue { node: node_label(n), value: missing });
        }
    }
    Ok(order)
}

fn node_label(n: &NodeProto) -> String {
    if n.name.is_empty() {
        format!("<unnamed {} -> {}>", n.op_type, n.output.join(","))
    } else {
        n.name.clone()
    }
}

/// The state of one import: the graph built so far and the ONNX name of every value.
pub(crate) struct Importer {
    pub graph: Graph,
    names: HashMap<String, ValueId>,
    pub opset: i64,
}

/// One ONNX node being imported: its name, op type and attribute reader.
pub(crate) struct Ctx<'a> {
    pub proto: &'a NodeProto,
    pub name: String,
    pub attrs: Attrs<'a>,
}

impl Ctx<'_> {
    pub fn err(&self, message: impl Into<String>) -> CompileError {
        CompileError::bad_node(&self.name, &self.proto.op_type, message)
    }
}

impl Importer {
    fn node(&mut self, proto: &NodeProto) -> Result<()> {
        if !(proto.domain.is_empty() || proto.domain == "ai.onnx") {
            return Err(CompileError::UnsupportedOp { node: node_label(proto), op: format!("{}:{}", proto.domain, proto.op_type) });
        }
        let mut ctx = Ctx { proto, name: node_label(proto), attrs: Attrs::new(proto) };
        let used_outputs = proto.output.iter().skip(1).filter(|o| !o.is_empty()).count();
        if proto.output.is_empty() || (used_outputs > 0 && proto.op_type != "Dropout") {
            return Err(ctx.err("mfn supports exactly one output per node"));
        }
        let out = match proto.op_type.as_str() {
            "Conv" => layers::conv(self, &mut ctx)?,
            "BatchNormalization" => layers::batch_norm(self, &mut ctx)?,
            "Gemm" => layers::gemm(self, &mut ctx)?,
            "MatMul" => layers::matmul(self, &mut ctx)?,
            "GlobalAveragePool" => layers::global_average_pool(self, &mut ctx)?,
            "Relu" | "Sigmoid" | "PRelu" | "Clip" => elementwise::activation(self, &mut ctx)?,
            "Add" | "Sub" | "Mul" | "Div" => elementwise::binary(self, &mut ctx)?,
            "Flatten" | "Reshape" => elementwise::reshape(self, &mut ctx)?,
            "Identity" | "Dropout" => elementwise::identity(self, &mut ctx)?,
            "Constant" => elementwise::constant(self, &mut ctx)?,
            "MaxPool" => resample::max_pool(self, &mut ctx)?,
            "Resize" => resample::resize(self, &mut ctx)?,
            "Shape" => shape_ops::shape(self, &mut ctx)?,
            "Gather" => shape_ops::gather(self, &mut ctx)?,
            "Unsqueeze" | "Squeeze" => shape_ops::squeeze(self, &mut ctx)?,
            "Concat" => shape_ops::concat(self, &mut ctx)?,
            "Transpose" => shape_ops::transpose(self, &mut ctx)?,
            op => return Err(CompileError::UnsupportedOp { node: ctx.name, op: op.into() }),
        };
        if proto.op_type == "Dropout" && used_outputs > 0 {
            return Err(ctx.err("the mask output is not supported (inference only)"));
        }
        let name = &proto.output[0];
        if name.is_empty() {
            return Err(ctx.err("its output has an empty name"));
        }
        if self.names.contains_key(name) {
            return Err(ctx.err(format!("its output '{name}' is already defined (by an initializer, a graph input or another node)")));
        }
        ctx.attrs.finish()?;
        self.names.insert(name.clone(), out);
        Ok(())
    }

    /// The value of input `i`, `None` when absent or given as the empty name.
    pub fn input(&self, ctx: &Ctx, i: usize) -> Result<Option<ValueId>> {
        match ctx.proto.input.get(i) {
            None => Ok(None),
            Some(name) if name.is_empty() => Ok(None),
            Some(name) => self.names.get(name).copied().map(Some).ok_or_else(|| CompileError::UnknownValue { node: ctx.name.clone(), value: name.clone() }),
        }
    }

    pub fn required(&self, ctx: &Ctx, i: usize) -> Result<ValueId> {
        self.input(ctx, i)?.ok_or_else(|| ctx.err(format!("input {i} is missing")))
    }

    /// Input `i` as f32 constant data.
    pub fn const_input(&self, ctx: &Ctx, i: usize) -> Result<(Shape, Vec<f32>)> {
        let id = self.required(ctx, i)?;
        let v = self.graph.value(id);
        match &v.data {
            Some(TensorData::F32(d)) => Ok((v.shape.clone(), d.clone())),
            Some(TensorData::I64(d)) => Ok((v.shape.clone(), d.iter().map(|&x| x as f32).collect())),
            None => Err(ctx.err(format!("input '{}' must be a constant (an initializer)", v.name))),
        }
    }

    /// Input `i`, which must be a float constant: the weights and statistics the passes and the
    /// code generator read as f32 (an integer tensor there is not valid ONNX).
    pub fn f32_const(&self, ctx: &Ctx, i: usize) -> Result<ValueId> {
        let id = self.required(ctx, i)?;
        let v = self.graph.value(id);
        match &v.data {
            Some(TensorData::F32(_)) => Ok(id),
            Some(TensorData::I64(_)) => Err(ctx.err(format!("input '{}' must be a float tensor, not an integer one", v.name))),
            None => Err(ctx.err(format!("input '{}' must be a constant (an initializer)", v.name))),
        }
    }

    /// Adds the node's single output value and the node computing it.
    pub fn emit(&mut self, ctx: &Ctx, op: Op, inputs: Vec<ValueId>, shape: Shape) -> Result<ValueId> {
        if inputs.iter().all(|&v| self.graph.is_const(v)) {
            return Err(ctx.err("every input is a constant: mfn folds no such node at compile time, its data must come from the graph input"));
        }
        let out_name = ctx.proto.output[0].clone();
        check_size(&out_name, &shape)?;
        let output = self.graph.add_value(out_name, shape, None);
        self.graph.nodes.push(Node { names: vec![ctx.name.clone()], op, inputs, output });
        Ok(output)
    }

    /// Adds a constant standing for the node's output (constant folding at import).
    pub fn emit_const(&mut self, ctx: &Ctx, shape: Shape, data: TensorData) -> ValueId {
        self.graph.add_value(ctx.proto.output[0].clone(), shape, Some(data))
    }
}
