#!/usr/bin/env bash
# Regenerates models/reference/*.output.npy: builds the synthetic models with mfn-gen-models, then
# runs them with onnxruntime (CPU, fp32, no graph optimisations) in a venv under target/.
# Needs PyPI access once (for the venv); the outputs are committed so tests never need Python.
set -euo pipefail
cd "$(dirname "$0")/.."

SEED="${SEED:-2024}"
BATCH="${BATCH:-2}"
VENV=target/ort-venv

if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet onnxruntime numpy onnx
fi

cargo run --release -p mfn-models --bin mfn-gen-models -- --out target/synthetic --seed "$SEED" --batch "$BATCH"
"$VENV/bin/python" models/reference.py target/synthetic models/reference

# The YuNet detector's raw outputs on a fixed pattern (the model is read in place from ../shared,
# or $MFN_SHARED; nothing of it is copied here).
SHARED="${MFN_SHARED:-../shared}"
"$VENV/bin/python" models/yunet_raw_reference.py "$SHARED/models" models/reference
