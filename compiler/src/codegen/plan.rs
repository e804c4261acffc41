//! The activation memory plan: every computed value gets a buffer; a buffer is reused once the
//! last reader of its value has run. Reshapes alias their input. A node's output never shares a
//! buffer with its inputs.

use std::collections::HashMap;

use super::layout::Planes;
use crate::error::{CompileError, Result};
use crate::ir::{Graph, Op, ValueId};

pub struct MemoryPlan {
    /// Buffer of every activation value (aliases included).
    pub buffer_of: HashMap<ValueId, usize>,
    /// Size of each buffer, in f32 elements per sample.
    pub sizes: Vec<usize>,
    /// Sum of every value's size without reuse, in elements per sample.
    pub unshared: usize,
}

impl MemoryPlan {
    pub fn buffer(&self, v: ValueId) -> usize {
        self.buffer_of[&v]
    }
}

/// The value a (chain of) Reshape(s) reads its data from.
fn root(aliases: &HashMap<ValueId, ValueId>, mut v: ValueId) -> ValueId {
    while let Some(&r) = aliases.get(&v) {
        v = r;
    }
    v
}

/// The plan of `graph`, its values taking the room `planes` gives them.
pub fn plan(graph: &Graph, planes: &Planes) -> Result<MemoryPlan> {
    let mut aliases = HashMap::new();
    for node in &graph.nodes {
        if node.op == Op::Reshape {
            aliases.insert(node.output, node.inputs[0]);
        }
    }
    let mut last_use: HashMap<ValueId, usize> = HashMap::new();
    for (i, node) in graph.nodes.iter().enumerate() {
        for &v in &node.inputs {
            last_use.insert(root(&aliases, v), i);
        }
    }
    for &o in &graph.outputs {
        last_use.insert(root(&aliases, o), usize::MAX);
    }
    let per_sample = |v: ValueId| planes.per_sample(graph, v);
    let mut plan = MemoryPlan { buffer_of: HashMap::new(), sizes: Vec::new(), unshared: 0 };
    let mut free: Vec<usize> = Vec::new();
    for &input in &graph.inputs {
        allocate(&mut plan, &mut free, input, per_sample(input));
    }
    for (i, node) in graph.nodes.iter().enumerate() {
        if node.op == Op::Reshape {
            continue;
        }
        allocate(&mut plan, &mut free, node.output, per_sample(node.output));
        for &v in &node.inputs {
            let r = root(&aliases, v);
            if last_use.get(&r) == Some(&i) && !graph.is_const(r) {
                if let Some(&b) = plan.buffer_of.get(&r) {
                    if !free.contains(&b) {
                        free.push(b);
                    }
                }
            }
        }
    }
    for (&alias, _) in aliases.iter() {
        let r = root(&aliases, alias);
        if let Some(&b) = plan.buffer_of.get(&r) {
            plan.buffer_of.insert(alias, b);
        }
    }
    for &o in &graph.outputs {
        let r = root(&aliases, o);
        if graph.is_const(r) || graph.inputs.contains(&r) {
            return Err(CompileError::Unsupported { node: graph.value(o).name.clone(), op: "output".into(), message: "a graph output that is a constant or a graph input".into() });
        }
    }
    Ok(plan)
}

/// Gives `v` the smallest free buffer that fits, else grows the largest free one, else a new one.
fn allocate(plan: &mut MemoryPlan, free: &mut Vec<usize>, v: ValueId, size: usize) {
    plan.unshared += size;
    let fitting = free.iter().enumerate().filter(|(_, &b)| plan.sizes[b] >= size).min_by_key(|(_, &b)| plan.sizes[b]);
    let chosen = fitting.or_else(|| free.iter().enumerate().max_by_key(|(_, &b)| plan.sizes[b])).map(|(i, &b)| (i, b));
    let b = match chosen {
        Some((i, b)) => {
            free.swap_remove(i);
            plan.sizes[b] = plan.sizes[b].max(size);
            b
        }
        None => {
            plan.sizes.push(size);
            plan.sizes.len() - 1
        }
    };
    plan.buffer_of.insert(v, b);
}
