//! What a [`Program`] does, per dispatch and per kernel: the figures of the comment header every
//! generated kernel starts with, and of `mfn inspect`'s kernel table. Computed from the program
//! alone, so a loaded `.mfn` file is inspected the same way as a freshly compiled model.

use std::fmt::Write;

use crate::program::{Program, Resource};

/// Memory traffic of one dispatch: what it must read and write at least (every input tensor and
/// weight once, the output once); caches make the real traffic of a kernel between this and more.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Traffic {
    /// Activation bytes read a sample.
    pub read_per_sample: u64,
    /// Weight bytes read (once a dispatch, whatever the batch).
    pub weight_bytes: u64,
    /// Bytes written a sample.
    pub written_per_sample: u64,
}

impl Traffic {
    /// Bytes read and written by a dispatch of `batch` samples.
    pub fn total(&self, batch: usize) -> u64 {
        (self.read_per_sample + self.written_per_sample) * batch as u64 + self.weight_bytes
    }
}

impl Program {
    /// Memory traffic of step `i`.
    pub fn traffic(&self, i: usize) -> Traffic {
        let step = &self.steps[i];
        let elements = |shape: &[usize]| shape.iter().product::<usize>() as u64;
        let element = self.precision.bytes() as u64;
        let weight_bytes = step
            .bindings
            .iter()
            .filter_map(|r| match *r {
                Resource::Weight(w) => Some((self.weights[w].precision.bytes() * self.weights[w].data.len()) as u64),
                _ => None,
            })
            .sum();
        Traffic { read_per_sample: step.input_shapes.iter().map(|s| element * elements(s)).sum(), weight_bytes, written_per_sample: element * elements(&step.output_shape) }
    }

    /// Indices of the steps that dispatch kernel `k`.
    pub fn steps_of(&self, k: usize) -> Vec<usize> {
        (0..self.steps.len()).filter(|&i| self.steps[i].kernel == k).collect()
    }

    /// The comment header of kernel `k`: its template and workgroup size, then one line per
    /// dispatch of it (a kernel is shared by every step with the same specialisation): the ONNX
    /// nodes it fuses, input and output shapes, workgroups, multiply-adds, bytes read and written.
    pub fn kernel_header(&self, k: usize) -> String {
        let kernel = &self.kernels[k];
        let steps = self.steps_of(k);
        let mut s = String::new();
        let _ = writeln!(s, "// mfn kernel {}: template shaders/{}.wgsl, workgroup size {}", kernel.name, kernel.template, kernel.workgroup_size);
        let _ = writeln!(
            s,
            "// {} dispatch{} (shapes a sample, [N,..] for a batch of N; workgroups x*y*N; bytes a sample, weights once):",
            steps.len(),
            if steps.len() == 1 { "" } else { "es" }
        );
        for i in steps {
            let step = &self.steps[i];
            let t = self.traffic(i);
            let inputs: Vec<String> = step.input_shapes.iter().map(|s| format!("[{}]", dims(s))).collect();
            let _ = writeln!(s, "//   step {i}: {}", comment_safe(&step.nodes.join(" + ")));
            let _ = writeln!(
                s,
                "//     in {} -> out [{}]; workgroups {}x{}xN; {} multiply-adds; reads {} B + {} B weights, writes {} B",
                inputs.join(" "),
                dims(&step.output_shape),
                step.workgroups[0],
                step.workgroups[1],
                step.macs,
                t.read_per_sample,
                t.weight_bytes,
                t.written_per_sample
            );
        }
        s
    }

    /// The kernel table of `mfn inspect`: one row per dispatch, in order.
    pub fn kernel_table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:>4} {:<22} {:<15} {:<28} {:<18} {:>10} {:>12} {:>10} {:>10}  fused ONNX nodes",
            "step", "kernel", "template", "inputs", "output", "workgroups", "MACs", "read B", "write B"
        );
        for (i, step) in self.steps.iter().enumerate() {
            let k = &self.kernels[step.kernel];
            let t = self.traffic(i);
            let inputs: Vec<String> = step.input_shapes.iter().map(|s| format!("[{}]", dims(s))).collect();
            let _ = writeln!(
                s,
                "{i:>4} {:<22} {:<15} {:<28} {:<18} {:>10} {:>12} {:>10} {:>10}  {}",
                k.name,
                k.template,
                inputs.join(" "),
                format!("[{}]", dims(&step.output_shape)),
                format!("{}x{} @{}", step.workgroups[0], step.workgroups[1], k.workgroup_size),
                step.macs,
                t.read_per_sample + t.weight_bytes,
                t.written_per_sample,
                step.nodes.join(" + ")
            );
        }
        s
    }
}

fn dims(shape: &[usize]) -> String {
    shape.iter().map(usize::to_string).collect::<Vec<_>>().join(",")
}

/// ONNX names are free text: keep a comment line one line.
fn comment_safe(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}
