//! Typed access to a node's attributes. Every attribute must be read by the op's importer; one that
//! is left over is an error, so that an attribute the compiler does not implement is never ignored.

use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::{AttributeProto, NodeProto};

use crate::error::{CompileError, Result};

pub struct Attrs<'a> {
    node: &'a NodeProto,
    used: Vec<bool>,
}

impl<'a> Attrs<'a> {
    pub fn new(node: &'a NodeProto) -> Self {
        Attrs { node, used: vec![false; node.attribute.len()] }
    }

    fn find(&mut self, name: &str, want: AttributeType) -> Result<Option<&'a AttributeProto>> {
        let Some(i) = self.node.attribute.iter().position(|a| a.name == name) else { return Ok(None) };
        self.used[i] = true;
        let attr = &self.node.attribute[i];
        if attr.type_.enum_value() != Ok(want) {
            return Err(self.error(name, &format!("{:?}", attr.type_), &format!(" (expected type {want:?})")));
        }
        Ok(Some(attr))
    }

    pub fn int(&mut self, name: &str) -> Result<Option<i64>> {
        Ok(self.find(name, AttributeType::INT)?.map(|a| a.i))
    }

    pub fn int_or(&mut self, name: &str, default: i64) -> Result<i64> {
        Ok(self.int(name)?.unwrap_or(default))
    }

    pub fn ints(&mut self, name: &str) -> Result<Option<Vec<i64>>> {
        Ok(self.find(name, AttributeType::INTS)?.map(|a| a.ints.clone()))
    }

    pub fn float_or(&mut self, name: &str, default: f32) -> Result<f32> {
        Ok(self.find(name, AttributeType::FLOAT)?.map_or(default, |a| a.f))
    }

    pub fn string(&mut self, name: &str) -> Result<Option<String>> {
        Ok(self.find(name, AttributeType::STRING)?.map(|a| String::from_utf8_lossy(&a.s).into_owned()))
    }

    pub fn tensor(&mut self, name: &str) -> Result<Option<&'a onnx_protobuf::TensorProto>> {
        Ok(self.find(name, AttributeType::TENSOR)?.and_then(|a| a.t.as_ref()))
    }

    /// Marks an attribute as read without interpreting it (for attributes that do not change the
    /// inference result, such as Dropout's `seed`).
    pub fn ignore(&mut self, name: &str) {
        if let Some(i) = self.node.attribute.iter().position(|a| a.name == name) {
            self.used[i] = true;
        }
    }

    /// An error for an attribute value the compiler does not implement.
    pub fn error(&self, attr: &str, value: &str, note: &str) -> CompileError {
        CompileError::UnsupportedAttribute { node: self.node.name.clone(), op: self.node.op_type.clone(), attr: attr.into(), value: value.into(), note: note.into() }
    }

    /// Fails on the first attribute no importer read.
    pub fn finish(self) -> Result<()> {
        match self.used.iter().position(|u| !u) {
            None => Ok(()),
            Some(i) => {
                let a = &self.node.attribute[i];
                Err(self.error(&a.name, "(present)", ": mfn does not implement this attribute"))
            }
        }
    }
}
