//! `Conv|Linear -> Relu|PRelu|Clip|Sigmoid`  =>  `Conv{epilogue.act}`
//!
//! The activation runs in the producing kernel's epilogue, on the value still in a register.

use super::{absorb, sole_consumer};
use crate::error::Result;
use crate::ir::{Graph, Op};

pub fn run(graph: &mut Graph) -> Result<()> {
    let mut i = 0;
    while i < graph.nodes.len() {
        let free = graph.nodes[i].op.epilogue().is_some_and(|e| e.act.is_none() && !e.residual);
        if let (true, Some(j)) = (free, sole_consumer(graph, i)) {
            if let Op::Act(act) = graph.nodes[j].op.clone() {
                if let Some(e) = graph.nodes[i].op.epilogue_mut() {
                    e.act = Some(act);
                }
                absorb(graph, i, j);
                continue;
            }
        }
        i += 1;
    }
    Ok(())
}
