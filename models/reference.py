#!/usr/bin/env python3
"""Runs every synthetic MobileFaceNet with onnxruntime and records its output as .npy.

Usage: reference.py SYNTHETIC_DIR OUT_DIR
Reads SYNTHETIC_DIR/<name>.onnx and <name>.input.npy (written by mfn-gen-models), checks each model
with onnx.checker, runs it on the CPU in fp32 with every graph optimisation disabled (so nothing
is fused or reordered: the plainest possible oracle), and writes OUT_DIR/<name>.output.npy.
"""
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

VARIANTS = [
    "mobilefacenet-112x112",
    "mobilefacenet-112x96",
    "mobilefacenet-96x96",
    "mobilefacenet-m",
    "mobilefacenet-s",
]


def run_variant(src: Path, out: Path, name: str) -> None:
    model_path = src / f"{name}.onnx"
    onnx.checker.check_model(onnx.load(str(model_path)), full_check=True)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    x = np.load(src / f"{name}.input.npy")
    assert x.dtype == np.float32, x.dtype
    (y,) = session.run(["embedding"], {"input": x})
    y = np.ascontiguousarray(y, dtype=np.float32)
    np.save(out / f"{name}.output.npy", y)
    print(f"{name}: input {list(x.shape)} -> output {list(y.shape)}, "
          f"mean {y.mean():+.6f}, std {y.std():.6f}, min {y.min():+.4f}, max {y.max():+.4f}")


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    src, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    print(f"onnxruntime {ort.__version__}, onnx {onnx.__version__}, numpy {np.__version__}")
    for name in VARIANTS:
        run_variant(src, out, name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
