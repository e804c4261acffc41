"""Times mfn against its peers on one input: ncnn Vulkan (fp32 and ncnn's default fp16), ncnn CPU
and onnxruntime CPU. Run by bench/compare_peers.sh, which makes the virtual environment, builds mfn
and converts the model for ncnn; see there for the arguments.

Every engine gets the same batch of 16 random faces (uniform 0..255, seed 7), saved as input.npy in
the work folder. Batch 1 is the first face. Batch-1 latency and batch-16 time are medians of at
least --runs timed runs after --warmup untimed ones, timed for at least --min-time seconds each
(every engine alike, so that a fast engine's median does not rest on a fraction of a second of a
machine whose speed drifts while a slow one's spans seconds); ncnn has no batch dimension, so its
batch 16 is 16 extractions in a row. Each peer's outputs on all 16 faces are compared with
onnxruntime's.

With --rounds K the engines run K times in turn (mfn, ncnn, ..., mfn, ncnn, ...), so a machine
whose speed drifts over minutes (a shared or virtual one) slows them alike: the table gives each
engine's median over the rounds and each ratio as the median of the rounds' ratios, with their
range.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np


def median_ms(fn, args):
    """Median of at least args.runs timed calls of fn taking args.min_time seconds at least, after
    args.warmup untimed ones (as `mfn bench --runs --min-time --warmup`)."""
    for _ in range(args.warmup):
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < args.runs or time.perf_counter() - start < args.min_time:
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.median(times)), len(times)


def timed(batch1, batch16, args):
    """An engine's batch-1 and batch-16 medians (b1, b16) and how many runs each took."""
    (b1, n1), (b16, n16) = median_ms(batch1, args), median_ms(batch16, args)
    return {"b1": b1, "b16": b16, "runs": (n1, n16)}


def onnxruntime_cpu(model, x, args):
    import onnxruntime as ort

    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    fixed = session.get_inputs()[0].shape[0]
    if isinstance(fixed, int):
        # A fixed batch dimension: run the faces one at a time.
        run = lambda xs: np.concatenate([session.run(None, {name: xs[i : i + 1]})[0] for i in range(len(xs))])
    else:
        run = lambda xs: session.run(None, {name: xs})[0]
    out = run(x)
    return {
        **timed(lambda: run(x[:1]), lambda: run(x), args),
        "out": out.reshape(len(x), -1),
        "options": f"onnxruntime {ort.__version__}, CPUExecutionProvider, default threads",
    }


def vulkan_device(ncnn, adapter):
    """Index of the first ncnn GPU whose name contains `adapter` (case-insensitive)."""
    names = [ncnn.get_gpu_info(i).device_name() for i in range(ncnn.get_gpu_count())]
    for i, n in enumerate(names):
        if adapter.lower() in n.lower():
            return i, n
    sys.exit(f"compare_peers: ncnn finds no Vulkan device named like '{adapter}' (it finds: {names or 'none'})")


def ncnn_engine(param, binary, x, args, vulkan, fp16):
    import ncnn

    net = ncnn.Net()
    opt = net.opt
    what = f"ncnn {ncnn.__version__}"
    opt.use_vulkan_compute = vulkan
    if vulkan:
        index, name = vulkan_device(ncnn, args.adapter)
        net.set_vulkan_device(index)
        what += f", Vulkan device {index} ({name})"
    else:
        what += f", CPU, {opt.num_threads} threads"
    if not fp16:
        # fp32 everywhere: storage, arithmetic and packing.
        opt.use_fp16_packed = opt.use_fp16_storage = opt.use_fp16_arithmetic = False
        opt.use_bf16_storage = opt.use_bf16_packed = False
        what += ", fp16/bf16 off"
    else:
        what += f", ncnn defaults (fp16 packed/storage/arithmetic {int(opt.use_fp16_packed)}/{int(opt.use_fp16_storage)}/{int(opt.use_fp16_arithmetic)})"
    if net.load_param(param) != 0 or net.load_model(binary) != 0:
        sys.exit(f"compare_peers: ncnn cannot load {param} / {binary}")
    in_name, out_name = net.input_names()[0], net.output_names()[0]

    def one(face):
        with net.create_extractor() as ex:
            ex.input(in_name, ncnn.Mat(face).clone())
            ret, y = ex.extract(out_name)
            if ret != 0:
                sys.exit(f"compare_peers: ncnn extract failed ({ret})")
            return np.array(y).reshape(-1)

    run = lambda xs: np.stack([one(face) for face in xs])
    out = run(x)
    result = {
        **timed(lambda: run(x[:1]), lambda: run(x), args),
        "out": out,
        "options": what,
    }
    net.clear()
    return result


def mfn_engine(x, args, outputs):
    """Outputs from `mfn run` on input.npy (where `outputs`: the first round, the only one the
    table compares), times from `mfn bench --json` (batch 1 and 16)."""
    inp, out = os.path.join(args.work, "input.npy"), os.path.join(args.work, "mfn_out.npy")
    gpu = ["--adapter", args.adapter]
    if outputs:
        subprocess.run([args.mfn, "run", args.model, "--input", inp, "--out", out, *gpu], check=True, stdout=subprocess.DEVNULL)
    bench = subprocess.run(
        [args.mfn, "bench", "--model", args.model, "--batch", "1,16", "--runs", str(args.runs), "--min-time", str(args.min_time), "--warmup", str(args.warmup), "--json", *gpu],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rows = {r["batch"]: r for r in map(json.loads, bench.splitlines()) if r}
    return {
        "b1": rows[1]["median_ms"],
        "b16": rows[16]["median_ms"],
        "runs": (rows[1]["runs"], rows[16]["runs"]),
        "out": np.load(out).reshape(len(x), -1) if outputs else None,
        "options": f"mfn bench --json, adapter {rows[1]['adapter']}; cold start {rows[1]['cold_start_ms']:.0f} ms; "
        f"{rows[1].get('warm_cores', 0)} warm-core threads (MFN_WARM_CORES=0 or --no-warm-cores: none); "
        f"tiles shared among {rows[1].get('tile_sharers', 0)} driver threads (MFN_TILE_SHARERS=0 or --no-shared-tiles: fixed shares); "
        f"{rows[1].get('dispatches', '?')} dispatches at batch 1, {rows[16].get('dispatches', '?')} at 16 (MFN_CHAINS=0 or --no-chains: one a kernel); "
        f"wide loads {'on' if rows[1].get('wide_loads') else 'off'} (MFN_WIDE_LOADS=0 or --no-wide-loads: off)",
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="ONNX model")
    p.add_argument("--ncnn-param", required=True)
    p.add_argument("--ncnn-bin", required=True)
    p.add_argument("--mfn", required=True, help="the mfn binary")
    p.add_argument("--work", required=True, help="folder for input.npy and outputs")
    p.add_argument("--adapter", default="llvmpipe", help="part of the GPU's name, for mfn and ncnn alike")
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--min-time", type=float, default=1.0, help="seconds each engine's timed runs of a batch size take at least")
    p.add_argument("--rounds", type=int, default=1, help="times every engine runs, in turn")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()

    import onnxruntime as ort

    shape = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"]).get_inputs()[0].shape[1:]
    x = np.random.default_rng(7).uniform(0, 255, size=(16, *shape)).astype(np.float32)
    np.save(os.path.join(args.work, "input.npy"), x)

    engines = [
        ("mfn (wgpu, fp32)", lambda first: mfn_engine(x, args, outputs=first)),
        ("ncnn Vulkan fp32", lambda first: ncnn_engine(args.ncnn_param, args.ncnn_bin, x, args, vulkan=True, fp16=False)),
        ("ncnn Vulkan fp16 (default)", lambda first: ncnn_engine(args.ncnn_param, args.ncnn_bin, x, args, vulkan=True, fp16=True)),
        ("ncnn CPU", lambda first: ncnn_engine(args.ncnn_param, args.ncnn_bin, x, args, vulkan=False, fp16=True)),
        ("onnxruntime CPU", lambda first: onnxruntime_cpu(args.model, x, args)),
    ]
    # `first`: the round whose outputs the table compares (ncnn and onnxruntime compute theirs
    # in every round anyway, as a warm-up).
    rounds, n = [], max(args.rounds, 1)
    for k in range(n):
        results = {}
        for name, engine in engines:
            print(f"round {k + 1}/{n}: running {name} ...", file=sys.stderr, flush=True)
            results[name] = engine(k == 0)
        rounds.append(results)
    report(rounds, args)


def report(rounds, args):
    """The table: medians over the rounds, ratios per round (their median, and range if several)."""
    first = rounds[0]
    ours = "mfn (wgpu, fp32)"
    reference = first["onnxruntime CPU"]["out"]
    per = f"medians of at least {args.runs} runs and {args.min_time:g} s after {args.warmup} warm-up"
    if len(rounds) > 1:
        per += f", in each of {len(rounds)} rounds (times: median over the rounds; ratios: median of the rounds' ratios, [lowest, highest])"
    print(f"model: {args.model}; same input for all (16 faces, uniform 0..255, seed 7); {per}")
    print("ratio = peer's time / mfn's time (above 1: mfn is faster)")
    print()
    print("| engine | batch 1 (ms) | ratio | batch 16 (ms) | faces/s | ratio | max abs diff from onnxruntime |")
    print("|---|---|---|---|---|---|---|")
    rows = []

    def ratio(name, key):
        if name == ours:
            return "1", 1.0
        values = sorted(r[name][key] / r[ours][key] for r in rounds)
        mid = float(np.median(values))
        text = f"{mid:.2f}" if len(values) == 1 else f"{mid:.2f} [{values[0]:.2f}, {values[-1]:.2f}]"
        return text, mid

    for name, r in first.items():
        diff = float(np.max(np.abs(r["out"] - reference)))
        b1 = float(np.median([x[name]["b1"] for x in rounds]))
        b16 = float(np.median([x[name]["b16"] for x in rounds]))
        (r1, m1), (r16, m16) = ratio(name, "b1"), ratio(name, "b16")
        rows.append({
            "engine": name,
            "batch1_ms": b1,
            "batch16_ms": b16,
            "ratio1": m1,
            "ratio16": m16,
            "rounds": [{"batch1_ms": x[name]["b1"], "batch16_ms": x[name]["b16"], "batch1_runs": x[name]["runs"][0], "batch16_runs": x[name]["runs"][1]} for x in rounds],
            "max_abs_diff": diff,
            "options": r["options"],
        })
        print(f"| {name} | {b1:.2f} | {r1} | {b16:.1f} | {16e3 / b16:.1f} | {r16} | {diff:.2e} |")
    print()
    for name, r in first.items():
        runs = "; ".join(f"{x[name]['runs'][0]}/{x[name]['runs'][1]}" for x in rounds)
        print(f"- {name}: {r['options']}; timed runs at batch 1/16 by round: {runs}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": args.model, "runs": args.runs, "warmup": args.warmup, "rounds": len(rounds), "rows": rows}, f, indent=1)

if __name__ == "__main__":
    main()
