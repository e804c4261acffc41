#!/usr/bin/env bash
# Regenerates models/reference/yunet/*.json: the faces onnxruntime's YuNet finds in every photo of
# ../shared/faces/photos (or $MFN_SHARED/faces/photos), preprocessed and decoded as mfn's detector
# does (see models/yunet_reference.py). Needs PyPI access once (for the venv under target/).
set -euo pipefail
cd "$(dirname "$0")/.."

SHARED="${MFN_SHARED:-../shared}"
VENV=target/yunet-venv

if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet onnxruntime numpy pillow
fi

"$VENV/bin/python" models/yunet_reference.py "$SHARED/models/yunet_n_dynamic.onnx" "$SHARED/faces/photos" models/reference/yunet --canvas 640x640 --score-threshold 0.6
