#!/usr/bin/env python3
"""Runs the YuNet face detector with onnxruntime on every photo and records the faces as JSON.

Usage: yunet_reference.py MODEL.onnx PHOTOS_DIR OUT_DIR [--canvas WxH] [--score-threshold T]

The preprocessing and decoding are what `mfn::detect::Detector` does on the GPU, re-implemented in
numpy with the same formulas so the two can be compared face by face:
- decode: PIL (libjpeg-turbo, like mozjpeg on the Rust side) to 8-bit RGB; the CRC-32 of the pixels
  is recorded so the test can check both sides decoded the same pixels;
- letterbox into the canvas: scale = min(cw / w, ch / h); canvas pixel (x, y) samples the image at
  ((x + 0.5) / scale - 0.5, (y + 0.5) / scale - 0.5) (the f32 affine map of `Warp::letterbox`),
  bilinearly, zero outside the image; channels B, G, R, values 0..255, NCHW;
- decode per stride s (8, 16, 32) over the (H/s) x (W/s) grid, row-major, as OpenCV's
  FaceDetectorYN: score = sqrt(clamp(cls) * clamp(obj)); centre ((col + b0) s, (row + b1) s), size
  (exp(b2) s, exp(b3) s); landmark k ((kps[2k] + col) s, (kps[2k+1] + row) s);
- keep scores >= the threshold, the top_k best, then greedy NMS (IoU of the float boxes > 0.3
  suppresses); map back to the image: point p -> (p + 0.5) / scale - 0.5, lengths / scale;
  faces sorted by box area, largest first.
"""
import argparse
import json
import zlib
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

STRIDES = (8, 16, 32)
NMS_IOU = 0.3
TOP_K = 5000


def load_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def letterbox(rgb: np.ndarray, cw: int, ch: int):
    """The BGR NCHW canvas and the scale, exactly as shaders/preprocess.wgsl samples it."""
    h, w, _ = rgb.shape
    scale = min(cw / w, ch / h)
    inv, shift = np.float32(1.0 / scale), np.float32(0.5 / scale - 0.5)
    zero = np.float32(0.0)
    xs = np.arange(cw, dtype=np.float32)
    ys = np.arange(ch, dtype=np.float32)
    # m00 * x + m01 * y + m02 and m10 * x + m11 * y + m12 in f32, as on the GPU.
    fx = (inv * xs[None, :] + zero * ys[:, None]) + shift
    fy = (zero * xs[None, :] + inv * ys[:, None]) + shift
    inside = (fx > -1) & (fy > -1) & (fx < w) & (fy < h)
    x0f, y0f = np.floor(fx), np.floor(fy)
    wx, wy = (fx - x0f)[..., None], (fy - y0f)[..., None]
    x0 = np.where(inside, x0f, 0).astype(np.int64)
    y0 = np.where(inside, y0f, 0).astype(np.int64)
    src = rgb.astype(np.float32)

    def texel(x, y):
        ok = inside & (x >= 0) & (y >= 0) & (x < w) & (y < h)
        v = src[np.clip(y, 0, h - 1), np.clip(x, 0, w - 1)]
        return np.where(ok[..., None], v, np.float32(0.0))

    one = np.float32(1.0)
    top = texel(x0, y0) * (one - wx) + texel(x0 + 1, y0) * wx
    bottom = texel(x0, y0 + 1) * (one - wx) + texel(x0 + 1, y0 + 1) * wx
    canvas = top * (one - wy) + bottom * wy
    canvas = np.where(inside[..., None], canvas, np.float32(0.0))
    bgr = canvas[..., ::-1].transpose(2, 0, 1)[None]
    return np.ascontiguousarray(bgr, dtype=np.float32), scale


def decode(outputs: dict, cw: int, ch: int, threshold: float):
    """Candidate faces (score, x, y, w, h, ten landmark coordinates) on the canvas."""
    faces = []
    for s in STRIDES:
        cols, rows = cw // s, ch // s
        cls = outputs[f"cls_{s}"].reshape(-1)
        obj = outputs[f"obj_{s}"].reshape(-1)
        bbox = outputs[f"bbox_{s}"].reshape(-1, 4)
        kps = outputs[f"kps_{s}"].reshape(-1, 10)
        assert cls.size == rows * cols, (s, cls.size, rows, cols)
        score = np.sqrt(np.clip(cls, 0, 1) * np.clip(obj, 0, 1))
        for idx in np.nonzero(score >= threshold)[0]:
            r, c = divmod(int(idx), cols)
            b = bbox[idx].astype(np.float64)
            cx, cy = (c + b[0]) * s, (r + b[1]) * s
            w, h = np.exp(b[2]) * s, np.exp(b[3]) * s
            k = kps[idx].astype(np.float64)
            lms = [((k[2 * n] + c) * s, (k[2 * n + 1] + r) * s) for n in range(5)]
            faces.append((float(score[idx]), cx - w / 2, cy - h / 2, w, h, lms))
    return faces


def iou(a, b) -> float:
    ax, ay, aw, ah = a[1:5]
    bx, by, bw, bh = b[1:5]
    iw = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def nms(faces):
    order = sorted(faces, key=lambda f: -f[0])[:TOP_K]
    kept = []
    for f in order:
        if all(iou(f, k) <= NMS_IOU for k in kept):
            kept.append(f)
    return kept


def detect(session, rgb: np.ndarray, cw: int, ch: int, threshold: float):
    x, scale = letterbox(rgb, cw, ch)
    names = [o.name for o in session.get_outputs()]
    outputs = dict(zip(names, session.run(names, {"input": x})))
    faces = []
    for score, bx, by, bw, bh, lms in nms(decode(outputs, cw, ch, threshold)):
        back = lambda p: (p + 0.5) / scale - 0.5  # noqa: E731
        faces.append({
            "score": score,
            "box": [back(bx), back(by), bw / scale, bh / scale],
            "landmarks": [[back(px), back(py)] for px, py in lms],
        })
    faces.sort(key=lambda f: -f["box"][2] * f["box"][3])
    return faces, scale


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("photos", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--canvas", default="640x640")
    ap.add_argument("--score-threshold", type=float, default=0.6)
    args = ap.parse_args()
    cw, ch = (int(v) for v in args.canvas.split("x"))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
    args.out.mkdir(parents=True, exist_ok=True)
    for photo in sorted(args.photos.glob("*.jpg")):
        rgb = load_rgb(photo)
        faces, scale = detect(session, rgb, cw, ch, args.score_threshold)
        record = {
            "image": photo.name,
            "width": rgb.shape[1],
            "height": rgb.shape[0],
            "pixels_crc32": zlib.crc32(rgb.tobytes()),
            "canvas": [cw, ch],
            "scale": scale,
            "score_threshold": args.score_threshold,
            "nms_iou": NMS_IOU,
            "faces": faces,
        }
        (args.out / f"{photo.stem}.json").write_text(json.dumps(record, indent=1) + "\n")
        scores = ", ".join(f"{f['score']:.3f}" for f in faces)
        print(f"{photo.name}: {rgb.shape[1]}x{rgb.shape[0]}, scale {scale:.4f}, {len(faces)} faces ({scores})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
