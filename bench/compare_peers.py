"""Times mfn against its peers on one input: ncnn Vulkan (fp32 and ncnn's default fp16), ncnn CPU
and onnxruntime CPU. Run by bench/compare_peers.sh, which makes the virtual environment, builds mfn
and converts the model for ncnn; see there for the arguments.

Every engine gets the same batch of 16 random faces (uniform 0..255, seed 7), saved as input.npy in
the work folder. Batch 1 is the first face. Batch-1 latency and batch-16 time are medians of --runs
timed runs after --warmup untimed ones; ncnn has no batch dimension, so its batch 16 is 16
extractions in a row. Each peer's outputs on all 16 faces are compared with onnxruntime's.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np


def median_ms(fn, runs, warmup):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.median(times))


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
        "b1": median_ms(lambda: run(x[:1]), args.runs, args.warmup),
        "b16": median_ms(lambda: run(x), args.runs, args.warmup),
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
        "b1": median_ms(lambda: run(x[:1]), args.runs, args.warmup),
        "b16": median_ms(lambda: run(x), args.runs, args.warmup),
        "out": out,
        "options": what,
    }
    net.clear()
    return result


def mfn_engine(x, args):
    """Outputs from `mfn run` on input.npy, times from `mfn bench --json` (batch 1 and 16)."""
    inp, out = os.path.join(args.work, "input.npy"), os.path.join(args.work, "mfn_out.npy")
    gpu = ["--adapter", args.adapter]
    subprocess.run([args.mfn, "run", args.model, "--input", inp, "--out", out, *gpu], check=True, stdout=subprocess.DEVNULL)
    bench = subprocess.run(
        [args.mfn, "bench", "--model", args.model, "--batch", "1,16", "--runs", str(args.runs), "--warmup", str(args.warmup), "--json", *gpu],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rows = {r["batch"]: r for r in map(json.loads, bench.splitlines()) if r}
    return {
        "b1": rows[1]["median_ms"],
        "b16": rows[16]["median_ms"],
        "out": np.load(out).reshape(len(x), -1),
        "options": f"mfn bench --json, adapter {rows[1]['adapter']}; cold start {rows[1]['cold_start_ms']:.0f} ms",
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
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()

    import onnxruntime as ort

    shape = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"]).get_inputs()[0].shape[1:]
    x = np.random.default_rng(7).uniform(0, 255, size=(16, *shape)).astype(np.float32)
    np.save(os.path.join(args.work, "input.npy"), x)

    engines = [
        ("mfn (wgpu, fp32)", lambda: mfn_engine(x, args)),
        ("ncnn Vulkan fp32", lambda: ncnn_engine(args.ncnn_param, args.ncnn_bin, x, args, vulkan=True, fp16=False)),
        ("ncnn Vulkan fp16 (default)", lambda: ncnn_engine(args.ncnn_param, args.ncnn_bin, x, args, vulkan=True, fp16=True)),
        ("ncnn CPU", lambda: ncnn_engine(args.ncnn_param, args.ncnn_bin, x, args, vulkan=False, fp16=True)),
        ("onnxruntime CPU", lambda: onnxruntime_cpu(args.model, x, args)),
    ]
    results = {}
    for name, engine in engines:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        results[name] = engine()
    report(results, args)


def report(results, args):
    ours = results["mfn (wgpu, fp32)"]
    reference = results["onnxruntime CPU"]["out"]
    print(f"model: {args.model}; same input for all (16 faces, uniform 0..255, seed 7); medians of {args.runs} runs after {args.warmup} warm-up")
    print("ratio = peer's time / mfn's time (above 1: mfn is faster)")
    print()
    print("| engine | batch 1 (ms) | ratio | batch 16 (ms) | faces/s | ratio | max abs diff from onnxruntime |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    for name, r in results.items():
        diff = float(np.max(np.abs(r["out"] - reference)))
        rows.append({"engine": name, "batch1_ms": r["b1"], "batch16_ms": r["b16"], "max_abs_diff": diff, "options": r["options"]})
        ratio1 = "1" if r is ours else f"{r['b1'] / ours['b1']:.2f}"
        ratio16 = "1" if r is ours else f"{r['b16'] / ours['b16']:.2f}"
        print(f"| {name} | {r['b1']:.2f} | {ratio1} | {r['b16']:.1f} | {16e3 / r['b16']:.1f} | {ratio16} | {diff:.2e} |")
    print()
    for name, r in results.items():
        print(f"- {name}: {r['options']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": args.model, "runs": args.runs, "warmup": args.warmup, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
