//! Code generation: one dispatch per fused IR node, kernels specialised from the WGSL templates,
//! identical specialisations emitted once, every kernel validated by naga.

mod conv;
pub mod kernels;
mod layout;
mod plan;
pub mod template;

use std::collections::HashMap;

use crate::error::{CompileError, Result};
use crate::ir::{Graph, Op};
use crate::program::{Kernel, Port, Precision, Program, Resource, Stats, Step, Weight};
use crate::stats;
use kernels::{Bind, KernelKey, WORKGROUP};
use layout::Planes;
use plan::MemoryPlan;

/// Most workgroups in one dimension of a dispatch (WebGPU's default limit); larger counts spill
/// into the second dimension.
pub const MAX_WORKGROUPS_PER_DIM: u32 = 65535;

/// The program of an optimised graph, activations stored in f32.
pub fn generate(graph: &Graph) -> Result<Program> {
    generate_with(graph, Precision::F32)
}

/// The program of an optimised graph, activations and weights stored in `precision`.
pub fn generate_with(graph: &Graph, precision: Precision) -> Result<Program> {
    check_ports(graph)?;
    let planes = layout::planes(graph);
    let plan = plan::plan(graph, &planes)?;
    let (kernels, steps, weights) = dispatches(graph, &planes, &plan, precision)?;
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
    let mut program = Program { kernels, steps, buffers: plan.sizes, weights, input, outputs, normalises_input: graph.normalises_input, precision, stats };
    insert_headers(&mut program);
    Ok(program)
}

/// mfn runs models with one input and at least one output: an error naming the model's inputs
/// (or outputs) otherwise.
fn check_ports(graph: &Graph) -> Result<()> {
    let (inputs, outputs) = (graph.inputs.len(), graph.outputs.len());
    if inputs != 1 || outputs == 0 {
        let names = |ids: &[crate::ir::ValueId]| ids.iter().map(|&v| graph.value(v).name.clone()).collect::<Vec<_>>().join(", ");
        let message = format!("mfn runs models with one input and at least one output, this one has {inputs} and {outputs}");
        return Err(if inputs != 1 { CompileError::BadInput { name: names(&graph.inputs), message } } else { CompileError::BadOutput { name: names(&graph.outputs), message } });
    }
    Ok(())
}

/// The kernels, the steps (a dispatch a node, reshapes aside) and the weights of the graph:
/// identical kernel keys share one kernel.
fn dispatches(graph: &Graph, planes: &Planes, plan: &MemoryPlan, precision: Precision) -> Result<(Vec<Kernel>, Vec<Step>, Vec<Weight>)> {
    let mut kernels: Vec<Kernel> = Vec::new();
    let mut by_key: HashMap<String, usize> = HashMap::new();
    let mut weights: Vec<Weight> = Vec::new();
    let mut steps = Vec::new();
    for (i, node) in graph.nodes.iter().enumerate() {
        if node.op == Op::Reshape {
            continue;
        }
        let lowered = kernels::lower(graph, node, planes)?;
        let id = lowered.key.id();
        let kernel = match by_key.get(&id) {
            Some(&k) => k,
            None => {
                kernels.push(make_kernel(&lowered.key, kernels.len(), precision)?);
                by_key.insert(id, kernels.len() - 1);
                kernels.len() - 1
            }
        };
        let params = lowered.key.template.params_binding();
        let input_shapes = input_shapes(graph, &lowered.binds);
        steps.push(Step {
            kernel,
            nodes: node.names.clone(),
            bindings: resolve_bindings(lowered.binds, params, plan, &mut weights, precision),
            workgroups: split_workgroups(lowered.workgroups),
            input_shapes,
            output_shape: graph.shape(node.output)[1..].to_vec(),
            macs: stats::node_macs(graph, i),
        });
    }
    Ok((kernels, steps, weights))
}

/// The per-sample shapes of the activations a step reads: every bound value but the last binding
/// (the output).
fn input_shapes(graph: &Graph, binds: &[Bind]) -> Vec<Vec<usize>> {
    let reads = &binds[..binds.len().saturating_sub(1)];
    reads
        .iter()
        .filter_map(|b| match b {
            Bind::Value(v) => Some(graph.shape(*v)[1..].to_vec()),
            _ => None,
        })
        .collect()
}

/// A step's resources: values to their planned buffers, constant data to new weights (appended to
/// `weights`), binding `params` holding the per-channel parameters.
fn resolve_bindings(binds: Vec<Bind>, params: Option<usize>, plan: &MemoryPlan, weights: &mut Vec<Weight>, precision: Precision) -> Vec<Resource> {
    binds
        .into_iter()
        .enumerate()
        .map(|(i, b)| {
            let (name, data, texture) = match b {
                Bind::Value(v) => return Resource::Activation(plan.buffer(v)),
                Bind::Unused => return Resource::Unused,
                Bind::Data(name, data) => (name, data, None),
                Bind::Texture(name, data, width) => (name, data, Some(width)),
            };
            // The per-channel parameters stay f32 whatever the precision, buffer or texture.
            let precision = if params == Some(i) { Precision::F32 } else { precision };
            weights.push(Weight { name, data, precision, texture });
            Resource::Weight(weights.len() - 1)
        })
        .collect()
}

/// A dispatch's workgroups (at least one): those past MAX_WORKGROUPS_PER_DIM spill into the
/// second dimension.
fn split_workgroups(groups: u32) -> [u32; 2] {
    let groups = groups.max(1);
    if groups <= MAX_WORKGROUPS_PER_DIM {
        [groups, 1]
    } else {
        [MAX_WORKGROUPS_PER_DIM, groups.div_ceil(MAX_WORKGROUPS_PER_DIM)]
    }
}

/// Puts each kernel's header in front of its WGSL and its subgroup variant's. The header describes
/// every dispatch of a kernel: known once all steps are.
fn insert_headers(program: &mut Program) {
    for k in 0..program.kernels.len() {
        let header = program.kernel_header(k);
        let kernel = &mut program.kernels[k];
        kernel.wgsl.insert_str(0, &header);
        if let Some(variant) = &mut kernel.subgroup_wgsl {
            variant.insert_str(0, &header);
        }
    }
}

fn make_kernel(key: &KernelKey, index: usize, precision: Precision) -> Result<Kernel> {
    let name = format!("k{index:02}_{}", key.template.name());
    let wgsl = template::specialise(key.template, "", &key.constants, precision)?;
    template::validate(&name, &wgsl)?;
    let subgroup_wgsl = match key.template.subgroup_variant().filter(|_| kernels::subgroup_fits(key)) {
        Some(variant) => {
            let wgsl = template::specialise(variant, "", &key.constants, precision)?;
            template::validate(&format!("{name} (subgroup variant)"), &wgsl)?;
            Some(wgsl)
        }
        None => None,
    };
    let workgroup_size = key.u32("WG").unwrap_or(WORKGROUP);
    let unit_iterations = kernels::unit_iterations(key);
    Ok(Kernel {
        name,
        template: key.template.name().into(),
        wgsl,
        subgroup_wgsl,
        workgroup_size,
        bindings: key.template.bindings(),
        textures: key.template.textures(),
        unit_iterations,
    })
}
