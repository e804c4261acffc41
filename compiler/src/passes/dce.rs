//! Dead-node elimination: nodes whose output nothing reads are removed, then constants no node
//! reads are dropped from the value arena (their data is freed; ids stay valid).

use crate::error::Result;
use crate::ir::Graph;

pub fn run(graph: &mut Graph) -> Result<()> {
    loop {
        let before = graph.nodes.len();
        let mut live = vec![false; graph.values.len()];
        for &o in &graph.outputs {
            live[o.0 as usize] = true;
        }
        for node in &graph.nodes {
            for &i in &node.inputs {
                live[i.0 as usize] = true;
            }
        }
        graph.nodes.retain(|n| live[n.output.0 as usize]);
        if graph.nodes.len() == before {
            for (value, live) in graph.values.iter_mut().zip(live) {
                if !live && value.data.is_some() {
                    value.data = Some(crate::ir::TensorData::F32(Vec::new()));
                    value.shape = vec![0];
                }
            }
            return Ok(());
        }
    }
}
