#!/usr/bin/env python3
"""Records onnxruntime's raw outputs of the YuNet detector on a fixed test pattern.

Usage: yunet_raw_reference.py MODELS_DIR OUT_DIR
Runs MODELS_DIR/yunet_n_dynamic.onnx on a 96x128 input (B, G, R planes) whose pixel values are
((c * 7919 + y * 131 + x * 17) mod 256), in fp32 on the CPU with graph optimisations disabled, and
writes OUT_DIR/yunet_n_dynamic-96x128.outputs.npy: the 12 outputs (cls, obj, bbox, kps for
strides 8, 16, 32, in the model's output order) flattened and concatenated. tests/detector.rs
builds the same pattern and compares our GPU run with it. Nothing of the model is copied here.
"""
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

H, W = 96, 128


def pattern(h: int, w: int) -> np.ndarray:
    c, y, x = np.meshgrid(np.arange(3), np.arange(h), np.arange(w), indexing="ij")
    return ((c * 7919 + y * 131 + x * 17) % 256).astype(np.float32)[None]


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    models, out = Path(sys.argv[1]), Path(sys.argv[2])
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(models / "yunet_n_dynamic.onnx"), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    outputs = session.run(names, {"input": pattern(H, W)})
    flat = np.concatenate([np.ascontiguousarray(o, dtype=np.float32).ravel() for o in outputs])
    np.save(out / f"yunet_n_dynamic-{H}x{W}.outputs.npy", flat)
    for n, o in zip(names, outputs):
        print(f"{n}: {list(o.shape)} min {o.min():+.4f} max {o.max():+.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
