#!/usr/bin/env bash
# mfn against ncnn (Vulkan fp32, Vulkan fp16, CPU) and onnxruntime (CPU), in one run, on one input.
#
#   bash bench/compare_peers.sh [MODEL.onnx] [--runs N] [--min-time S] [--warmup N] [--rounds K] [--adapter NAME-PART]
#
# MODEL defaults to the pretrained model ($MFN_SHARED/models/mobilefacenet-insightface.onnx, else
# ../shared/...) and, when that is missing, to the project's generated MobileFaceNet (`mfn synth`).
# Makes a virtual environment in target/peers-venv (onnxruntime, ncnn, numpy, onnx and pnnx from
# pip), builds mfn in release mode, converts the model with pnnx (ONNX in, fp32 ncnn weights out)
# into target/peers/, and prints a markdown table: medians, each peer's time over mfn's, and each
# engine's largest absolute difference from onnxruntime on the same 16 faces. The table and its
# JSON go to target/peers/ as well. Every engine's medians are of at least N runs (default 10)
# taking at least S seconds (default 1), so that fast and slow engines are timed over alike
# stretches. --rounds K runs the engines K times in turn and reports the median round (for
# machines whose speed drifts).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
model=""
extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --runs | --min-time | --warmup | --rounds | --adapter) extra+=("$1" "$2"); shift 2 ;;
        -h | --help) sed -n '2,15p' "$0"; exit 0 ;;
        *) model=$1; shift ;;
    esac
done

venv=target/peers-venv
work=target/peers
mkdir -p "$work"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import onnxruntime, ncnn, numpy, onnx, importlib.util as u; assert u.find_spec("pnnx")' 2>/dev/null; then
    echo "== virtual environment $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip
    "$venv/bin/pip" install -q onnxruntime ncnn numpy onnx
    # pnnx's wheel lists torch (gigabytes, CUDA included) as a dependency, but only its Python
    # export helpers need it: the bundled pnnx binary converts ONNX on its own.
    "$venv/bin/pip" install -q --no-deps pnnx
fi
py=$venv/bin/python
pnnx=$("$py" -c 'import os, importlib.util as u; print(os.path.join(os.path.dirname(u.find_spec("pnnx").origin), "pnnx"))')

echo "== cargo build --release" >&2
cargo build --release -q
mfn=$root/target/release/mfn

shared=${MFN_SHARED:-$root/../shared}
if [ -z "$model" ]; then
    if [ -f "$shared/models/mobilefacenet-insightface.onnx" ]; then
        model=$shared/models/mobilefacenet-insightface.onnx
    else
        echo "no pretrained model at $shared/models/mobilefacenet-insightface.onnx: using the generated MobileFaceNet" >&2
        model=$work/synthetic.onnx
        "$mfn" synth --variant 112x112 --out "$model" >&2
    fi
fi
[ -f "$model" ] || { echo "compare_peers: no model file $model" >&2; exit 1; }

# pnnx writes next to the model it reads: convert a copy inside the work folder.
echo "== pnnx $model" >&2
cp "$model" "$work/model.onnx"
shape=$("$py" -c 'import onnx, sys; d = onnx.load(sys.argv[1]).graph.input[0].type.tensor_type.shape.dim; print(",".join(["1"] + [str(x.dim_value) for x in d[1:]]))' "$work/model.onnx")
(cd "$work" && "$pnnx" model.onnx "inputshape=[$shape]" fp16=0 ncnnparam=model.ncnn.param ncnnbin=model.ncnn.bin > pnnx.log 2>&1) \
    || { echo "compare_peers: pnnx failed, see $work/pnnx.log" >&2; exit 1; }

export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
echo "== load: $(uptime)" >&2
"$py" bench/compare_peers.py --model "$model" --ncnn-param "$work/model.ncnn.param" --ncnn-bin "$work/model.ncnn.bin" \
    --mfn "$mfn" --work "$work" --json "$work/compare.json" ${extra[@]+"${extra[@]}"} | tee "$work/compare.md"
echo "load after: $(uptime)" | tee -a "$work/compare.md"
