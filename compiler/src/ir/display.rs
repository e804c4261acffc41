//! A stable, line-per-node text dump of a graph, used by `mfn info` and the snapshot tests.

use std::fmt::{self, Display, Formatter, Write};

use super::{Act, Epilogue, Graph, Op, ValueId};

fn shape_str(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    format!("[{}]", dims.join(","))
}

fn epilogue_str(e: &Epilogue) -> String {
    let mut s = String::new();
    if let Some(act) = &e.act {
        let _ = write!(s, " act={}", act.kind_name());
        if let Act::Clip { min, max } = act {
            let _ = write!(s, "({min},{max})");
        }
    }
    if e.residual {
        s.push_str(" +residual");
    }
    s
}

fn op_str(op: &Op) -> String {
    match op {
        Op::Conv(c) => {
            let [kh, kw] = c.kernel;
            let [sh, sw] = c.stride;
            let [t, l, b, r] = c.pads;
            let pro = if c.prologue.is_some() { " prologue=affine" } else { "" };
            format!("Conv[k={kh}x{kw} s={sh}x{sw} p={t},{l},{b},{r} g={}{pro}{}]", c.group, epilogue_str(&c.epilogue))
        }
        Op::GdConv(e) => format!("GdConv[{}]", epilogue_str(e).trim_start()),
        Op::Linear(e) => format!("Linear[{}]", epilogue_str(e).trim_start()),
        Op::BatchNorm { epsilon } => format!("BatchNorm[eps={epsilon}]"),
        Op::Act(a) => format!("Act[{}]", a.kind_name()),
        other => other.name().to_string(),
    }
}

impl Graph {
    fn operand(&self, id: ValueId) -> String {
        let v = self.value(id);
        if v.data.is_some() {
            format!("{}{}", v.name, shape_str(&v.shape))
        } else {
            format!("%{}", v.name)
        }
    }
}

impl Display for Graph {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        for &i in &self.inputs {
            writeln!(f, "input %{}: {}", self.value(i).name, shape_str(self.shape(i)))?;
        }
        for node in &self.nodes {
            let args: Vec<String> = node.inputs.iter().map(|&i| self.operand(i)).collect();
            let out = self.value(node.output);
            writeln!(f, "%{} = {}({}) -> {}  # {}", out.name, op_str(&node.op), args.join(", "), shape_str(&out.shape), node.names.join(" + "))?;
        }
        for &o in &self.outputs {
            writeln!(f, "output %{}: {}", self.value(o).name, shape_str(self.shape(o)))?;
        }
        Ok(())
    }
}
