//! `Conv(depthwise, kernel = input H x W, no padding)`  =>  `GdConv`
//!
//! The global depthwise convolution of MobileFaceNet is a weighted sum over the whole feature map
//! per channel: a reduction, not a sliding window, so it gets its own kernel.

use crate::error::Result;
use crate::ir::{Graph, Op};

pub fn run(graph: &mut Graph) -> Result<()> {
    for i in 0..graph.nodes.len() {
        let x = graph.nodes[i].inputs[0];
        let x_shape = graph.shape(x).to_vec();
        if let Op::Conv(conv) = &graph.nodes[i].op {
            let c_out = graph.shape(graph.nodes[i].output)[1];
            let global = conv.kernel == [x_shape[2], x_shape[3]] && conv.pads == [0; 4];
            if global && conv.is_depthwise(x_shape[1], c_out) && conv.prologue.is_none() {
                graph.nodes[i].op = Op::GdConv(conv.epilogue.clone());
            }
        }
    }
    Ok(())
}
