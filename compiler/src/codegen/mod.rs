//! Code generation: one dispatch per fused IR node, kernels specialised from the WGSL templates,
//! identical specialisations emitted once, every kernel validated by naga.

pub mod kernels;
mod plan;
pub mod template;

use std::collections::HashMap;

use crate::error::{CompileError, Result};
use crate::ir::{Graph, Op};
use crate::program::{Kernel, Port, Program, Resource, Stats, Step, Weight};
use crate::stats;
use kernels::{Bind, KernelKey, WORKGROUP};

/// Most workgroups in one dimension of a dispatch (WebGPU's default limit); larger counts spill
/// into the second dimension.
pub const MAX_WORKGROUPS_PER_DIM: u32 = 65535;

pub fn generate(graph: &Graph) -> Result<Program> {
    let (inputs, outputs) = (graph.inputs.len(), graph.outputs.len());
    if inputs != 1 || outputs == 0 {
        let names = |ids: &[crate::ir::ValueId]| ids.iter().map(|&v| graph.value(v).name.clone()).collect::<Vec<_>>().join(", ");
        let message = format!("mfn runs models with one input and at least one output, this one has {inputs} and {outputs}");
        return Err(if inputs != 1 {
            CompileError::BadInput { name: names(&graph.inputs), message }
        } else {
            CompileError::BadOutput { name: names(&graph.outputs), message }
        });
    }
    let plan = plan::plan(graph)?;
    let mut kernels: Vec<Kernel> = Vec::new();
    let mut by_key: HashMap<String, usize> = HashMap::new();
    let mut weights: Vec<Weight> = Vec::new();
    let mut steps = Vec::new();
    for (i, node) in graph.nodes.iter().enumerate() {
        if node.op == Op::Reshape {
            continue;
        }
        let lowered = kernels::lower(graph, node)?;
        let id = lowered.key.id();
        let kernel = match by_key.get(&id) {
            Some(&k) => k,
            None => {
                kernels.push(make_kernel(&lowered.key, kernels.len())?);
                by_key.insert(id, kernels.len() - 1);
                kernels.len() - 1
            }
        };
        let bindings = lowered
            .binds
            .into_iter()
            .map(|b| match b {
                Bind::Value(v) => Resource::Activation(plan.buffer(v)),
                Bind::Data(name, data) => {
                    weights.push(Weight { name, data });
                    Resource::Weight(weights.len() - 1)
                }
                Bind::Unused => Resource::Unused,
            })
            .collect();
        let groups = lowered.workgroups.max(1);
        let workgroups = if groups <= MAX_WORKGROUPS_PER_DIM {
            [groups, 1]
        } else {
            [MAX_WORKGROUPS_PER_DIM, groups.div_ceil(MAX_WORKGROUPS_PER_DIM)]
        };
        steps.push(Step {
            kernel,
            nodes: node.names.clone(),
            bindings,
            workgroups,
            output_shape: graph.shape(node.output)[1..].to_vec(),
            macs: stats::node_macs(graph, i),
        });
    }
    let port = |v| {
        let value = graph.value(v);
        Port { name: value.name.clone(), shape: value.shape[1..].to_vec(), buffer: plan.buffer(v) }
    };
    let stats = Stats {
        parameters: stats::parameters(graph),
        macs: stats::macs(graph),
        peak_activation_bytes: 4 * plan.sizes.iter().sum::<usize>() as u64,
        total_activation_bytes: 4 * plan.unshared as u64,
    };
    let input = port(graph.inputs[0]);
    let outputs = graph.outputs.iter().map(|&v| port(v)).collect();
    Ok(Program { kernels, steps, buffers: plan.sizes, weights, input, outputs, normalises_input: graph.normalises_input, stats })
}

fn make_kernel(key: &KernelKey, index: usize) -> Result<Kernel> {
    let name = format!("k{index:02}_{}", key.template.name());
    let header = format!("// mfn kernel {name}: template shaders/{}.wgsl, workgroup size {WORKGROUP}\n", key.template.name());
    let wgsl = template::specialise(key.template, &header, &key.constants)?;
    template::validate(&name, &wgsl)?;
    Ok(Kernel { name, template: key.template.name().into(), wgsl, workgroup_size: WORKGROUP, bindings: key.template.bindings() })
}
