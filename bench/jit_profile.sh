#!/usr/bin/env bash
# Where one kernel's time goes inside lavapipe's machine code (Linux, llvmpipe, perf and gdb).
#
#   bash bench/jit_profile.sh KERNEL-BENCH-NAME [BIN-BYTES]
#
# Runs the criterion kernel bench whose name matches KERNEL-BENCH-NAME (`cargo bench --bench
# kernels -- --list` lists them; MFN_BENCH_BATCH sets the batch, default 1 here), samples it with
# `perf record` for 5 s, dumps the anonymous executable mapping that holds most samples (the JIT
# code of the kernel's pipeline) with gdb, disassembles it with objdump and prints the samples by
# address bins of BIN-BYTES (default 1024) with each bin's most frequent instructions: the
# per-lane load and store loops (`vpbroadcast*`, `cmp`/`jae` bounds checks, stack spills and
# `mov`s), the multiply-adds (`vmulps`/`vaddps`, lavapipe has no FMA) and the texel fetches
# (`vinserti128`/`vpextrd` gathers) stand out. The annotated disassembly is left in
# target/jit-profile/dis.txt (address, samples, instruction). docs/performance.md ("What bounds a
# kernel on lavapipe") reads such profiles. Needs perf_event_paranoid <= 2 (or root) and ptrace
# permission for gdb.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
name=${1:?usage: bash bench/jit_profile.sh KERNEL-BENCH-NAME [BIN-BYTES]}
bin_bytes=${2:-1024}
for tool in perf gdb objdump python3; do
    command -v "$tool" >/dev/null || { echo "jit_profile: needs $tool" >&2; exit 1; }
done
out=target/jit-profile
rm -rf "$out" && mkdir -p "$out"

cargo bench --bench kernels --no-run >/dev/null 2>&1
bench=$(ls -t target/release/deps/kernels-* | grep -v '\.d$' | head -1)
MFN_BENCH_BATCH=${MFN_BENCH_BATCH:-1} "$bench" --bench "$name" --measurement-time 40 >"$out/bench.log" 2>&1 &
runner=$!
trap 'kill $runner 2>/dev/null || true' EXIT
# Past pipeline creation and criterion's warm-up.
sleep 14
kill -0 $runner 2>/dev/null || { echo "jit_profile: the bench ended early (no kernel bench matches '$name'?):" >&2; cat "$out/bench.log" >&2; exit 1; }
perf record -o "$out/perf.data" -F 10000 -p $runner -- sleep 5 >/dev/null 2>&1
perf script -i "$out/perf.data" -F ip 2>/dev/null >"$out/ips.txt"
cp /proc/$runner/maps "$out/maps"

# The anonymous executable mapping with the most samples.
read -r lo hi < <(python3 - "$out" <<'PY'
import collections, sys
out = sys.argv[1]
ips = collections.Counter(int(l, 16) for l in open(f"{out}/ips.txt") if l.strip())
maps = []
for line in open(f"{out}/maps"):
    fields = line.split()
    a, b = (int(x, 16) for x in fields[0].split("-"))
    if "x" in fields[1] and len(fields) < 6:
        maps.append((a, b))
hits = collections.Counter()
for ip, n in ips.items():
    for a, b in maps:
        if a <= ip < b:
            hits[(a, b)] += n
if not hits:
    sys.exit("jit_profile: no samples in JIT code")
(a, b), _ = hits.most_common(1)[0]
print(hex(a), hex(b))
PY
)
gdb -p $runner -batch -ex "dump binary memory $out/code.bin $lo $hi" >/dev/null 2>&1
kill $runner 2>/dev/null || true

python3 - "$out" "$lo" "$bin_bytes" <<'PY'
import collections, re, subprocess, sys
out, base, bin_bytes = sys.argv[1], int(sys.argv[2], 16), int(sys.argv[3])
ips = collections.Counter(int(l, 16) for l in open(f"{out}/ips.txt") if l.strip())
size = len(open(f"{out}/code.bin", "rb").read())
local = {ip - base: n for ip, n in ips.items() if base <= ip < base + size}
total = sum(ips.values())
dis = subprocess.run(["objdump", "-D", "-b", "binary", "-mi386:x86-64", f"{out}/code.bin"],
                     capture_output=True, text=True, check=True).stdout
rows = []
for line in dis.splitlines():
    m = re.match(r"\s*([0-9a-f]+):\s+(?:[0-9a-f]{2} )+\s*(.*)", line)
    if m and m.group(2).strip():
        rows.append((int(m.group(1), 16), m.group(2).strip()))
with open(f"{out}/dis.txt", "w") as f:
    for addr, text in rows:
        f.write(f"{addr:6x} {local.get(addr, 0):5d}  {text}\n")
bins = collections.defaultdict(lambda: [0, collections.Counter()])
for addr, text in rows:
    b = bins[addr // bin_bytes * bin_bytes]
    b[0] += local.get(addr, 0)
    b[1][text.split()[0]] += 1
in_code = sum(local.values())
print(f"{total} samples, {in_code} ({100 * in_code / max(total, 1):.0f}%) in the kernel's JIT code; bins of {bin_bytes} bytes:")
for addr in sorted(bins):
    n, ops = bins[addr]
    if n >= in_code * 0.005:
        top = " ".join(f"{op}:{k}" for op, k in ops.most_common(7))
        print(f"{addr:6x} {100 * n / in_code:5.1f}%  {top}")
print(f"annotated disassembly: {out}/dis.txt")
PY
