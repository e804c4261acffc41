#!/usr/bin/env bash
# The GPU checks for a machine with a hardware GPU and no network (such as the GPU machine this
# project's sessions are sometimes lent, which can reach nothing outside it): build here, run there.
#
#   bash bench/gpu_check.sh prepare   # here: release binaries and the Vulkan loader into .gpu/
#   bash bench/gpu_check.sh run       # there, from the repository root, with .gpu/ carried along
#
# `prepare` builds `mfn` and the self-contained GPU test binaries (kernel_parity, embed, limits:
# they need nothing from ../shared) in release mode, strips them into .gpu/bin (about 30 MiB), and
# downloads Debian's Vulkan loader package into .gpu/debs for machines that have a driver but no
# loader. `run` unpacks the loader where none is installed, points the loader at NVIDIA's driver
# where the machine has it in /usr/local/nvidia, and writes into $OUT (default target/gpu-check):
# adapters.txt, demo.txt (the generated MobileFaceNet on the GPU against the CPU evaluator),
# tests.txt (the test binaries, under CI=true so that a missing adapter fails), bench.txt and
# bench.json (batches 1, 16, 64 and 256 with the per-kernel table), bench-f16.txt where the adapter
# has SHADER_F16, and summary.txt. It exits non-zero if a test or the demo failed.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
gpu=.gpu
tests=(kernel_parity embed limits)

prepare() {
    mkdir -p "$gpu/bin" "$gpu/debs"
    cargo build --release --bin mfn
    cp target/release/mfn "$gpu/bin/mfn"
    local args=()
    for t in "${tests[@]}"; do args+=(--test "$t"); done
    # The test executables cargo built, one JSON line each.
    cargo test --release --no-run "${args[@]}" --message-format=json \
        | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["target"]["name"], m["executable"])' \
        | while read -r name exe; do cp "$exe" "$gpu/bin/$name"; done
    strip "$gpu"/bin/* 2>/dev/null || true
    { git rev-parse HEAD | tr -d '\n'; git diff --quiet HEAD -- . ':!.gpu' || printf ' (with uncommitted changes)'; echo; } > "$gpu/commit"
    # The Vulkan loader, for a machine whose driver comes without it (apt-get download needs no root).
    local lists=/tmp/mfn-gpu-apt
    mkdir -p "$lists/partial"
    local o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists="$lists")
    if apt-get "${o[@]}" update -qq && (cd "$gpu/debs" && apt-get "${o[@]}" download libvulkan1 >/dev/null); then
        echo "loader: $(ls "$gpu/debs")"
    else
        echo "warning: could not download libvulkan1; the GPU machine must have a Vulkan loader" >&2
    fi
    du -sh "$gpu"
    echo "prepared $(cat "$gpu/commit") in $gpu: run 'bash bench/gpu_check.sh run' there with $gpu carried"
}

run() {
    [ -x "$gpu/bin/mfn" ] || { echo "no $gpu/bin/mfn: run 'bash bench/gpu_check.sh prepare' first (here, with a network)" >&2; exit 2; }
    if ! ldconfig -p | grep -q 'libvulkan\.so\.1' && compgen -G "$gpu/debs/*.deb" >/dev/null; then
        for f in "$gpu"/debs/*.deb; do dpkg -x "$f" /; done
        ldconfig
    fi
    local nvidia=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
    if [ -f "$nvidia" ] && [ -z "${VK_DRIVER_FILES:-}" ] && ! ls /usr/share/vulkan/icd.d/nvidia_icd*.json /etc/vulkan/icd.d/nvidia_icd*.json >/dev/null 2>&1; then
        export VK_DRIVER_FILES=$nvidia
    fi
    export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/xdg-runtime-$(id -u)}"
    mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
    local out=${OUT:-target/gpu-check}
    mkdir -p "$out"
    local failed=()
    {
        echo "commit $(cat "$gpu/commit" 2>/dev/null || echo unknown), $(date -u +%FT%TZ)"
        command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
        "$gpu/bin/mfn" adapters
    } 2>&1 | tee "$out/adapters.txt"
    "$gpu/bin/mfn" demo 2>&1 | tee "$out/demo.txt" || failed+=(demo)
    : > "$out/tests.txt"
    for t in "${tests[@]}"; do
        echo "== $t" | tee -a "$out/tests.txt"
        CI=true "$gpu/bin/$t" 2>&1 | tee -a "$out/tests.txt" || failed+=("$t")
    done
    "$gpu/bin/mfn" bench --model synthetic --batch 1,16,64,256 --runs 20 2>&1 | tee "$out/bench.txt" || failed+=(bench)
    "$gpu/bin/mfn" bench --model synthetic --batch 1,16,64,256 --runs 20 --json > "$out/bench.json" 2>&1 || failed+=(bench-json)
    if "$gpu/bin/mfn" bench --model synthetic --batch 1,16 --runs 20 --precision f16 > "$out/bench-f16.txt" 2>&1; then
        :
    else
        echo "(f16 bench did not run: see bench-f16.txt)"
    fi
    {
        grep -h '^test result' "$out/tests.txt" || true
        grep -h 'batch .*median' "$out/bench.txt" || true
        if [ ${#failed[@]} -eq 0 ]; then echo "all passed"; else echo "FAILED: ${failed[*]}"; fi
    } | tee "$out/summary.txt"
    [ ${#failed[@]} -eq 0 ]
}

case "${1:-}" in
    prepare) prepare ;;
    run) run ;;
    *) sed -n '2,16p' "$0"; exit 2 ;;
esac
