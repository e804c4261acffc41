//! The optimised graph as Graphviz `dot` text: one cluster per fused group (one dispatch, named
//! after its kernel), holding the ONNX nodes it fuses; edges carry the activations' shapes.

use std::fmt::Write;

use crate::ir::{Graph, Op, ValueId};
use crate::program::Program;

/// `program` must be the one generated from `graph` (its steps are the graph's nodes, Reshapes
/// excepted, in order).
pub fn to_dot(graph: &Graph, program: &Program) -> String {
    let mut s = String::from("digraph mfn {\n  rankdir=TB;\n  node [shape=box, style=rounded, fontname=\"Helvetica\"];\n");
    // The dot node where each activation comes from, and the shape it carries.
    let mut source: Vec<Option<String>> = vec![None; graph.values.len()];
    for (i, &v) in graph.inputs.iter().enumerate() {
        let id = format!("input{i}");
        let _ = writeln!(s, "  {id} [shape=ellipse, label={}];", quote(&format!("input {}\n{}", graph.value(v).name, shape(graph, v))));
        source[v.0 as usize] = Some(id);
    }
    let mut steps = program.steps.iter().enumerate();
    for (n, node) in graph.nodes.iter().enumerate() {
        let first = format!("n{n}_0");
        let last = format!("n{n}_{}", node.names.len().saturating_sub(1));
        if node.op == Op::Reshape {
            let _ = writeln!(s, "  {first} [shape=plain, label={}];", quote(&format!("{} (Reshape, no kernel)", node.name())));
        } else {
            let (i, step) = steps.next().expect("a step for every node but Reshape");
            let kernel = &program.kernels[step.kernel];
            let label = format!("step {i}: {} ({})\n{} multiply-adds", kernel.name, node.op.name(), step.macs);
            let _ = writeln!(s, "  subgraph cluster_{n} {{\n    label={};\n    style=filled; color=lightgrey; fillcolor=\"#f4f4f4\";", quote(&label));
            for (j, name) in node.names.iter().enumerate() {
                let _ = writeln!(s, "    n{n}_{j} [label={}];", quote(name));
                if j > 0 {
                    let _ = writeln!(s, "    n{n}_{} -> n{n}_{j} [style=dashed];", j - 1);
                }
            }
            s.push_str("  }\n");
        }
        for &v in node.inputs.iter().filter(|&&v| !graph.is_const(v)) {
            if let Some(from) = &source[v.0 as usize] {
                let _ = writeln!(s, "  {from} -> {first} [label={}];", quote(&shape(graph, v)));
            }
        }
        source[node.output.0 as usize] = Some(last);
    }
    for (i, &v) in graph.outputs.iter().enumerate() {
        let _ = writeln!(s, "  output{i} [shape=ellipse, label={}];", quote(&format!("output {}", graph.value(v).name)));
        if let Some(from) = &source[v.0 as usize] {
            let _ = writeln!(s, "  {from} -> output{i} [label={}];", quote(&shape(graph, v)));
        }
    }
    s.push_str("}\n");
    s
}

fn shape(graph: &Graph, v: ValueId) -> String {
    let dims: Vec<String> = graph.shape(v)[1..].iter().map(usize::to_string).collect();
    format!("[N,{}]", dims.join(","))
}

/// A dot string literal (names are free text).
fn quote(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
