#!/usr/bin/env python3
"""COCO-pretrained YOLOX-nano as an external "trainer" for roadsynth's experiment hook.

It trains nothing: it runs the COCO-pretrained model (../shared/models/yolox-nano, Apache-2.0)
with onnxruntime on the test images and maps COCO classes to the dataset's classes. That makes it
the pretrained reference an arm's trained detector can be held against, and a working example of
the hook's contract (README, "External trainers"):

    python3 detector/external/yolox_onnx_predict.py --images IMAGE_INFO.json --output RESULTS.json

IMAGE_INFO.json is a COCO image-info file (`images` with `id`, `file_name` relative to the file's
folder, `width`, `height`; `categories` with `id`, `name`), as the hook writes for each test set.
RESULTS.json gets COCO detection results (`image_id`, `category_id`, `bbox` [x, y, w, h],
`score`) in those ids.

Pre- and post-processing follow the model's SOURCE.txt (and YOLOX's own evaluation): BGR, raw
0..255 values, letterbox to 416x416 at the top left padded with 114 (bilinear resize as
cv2.INTER_LINEAR samples; cv2 when installed, else Pillow decoding and the same sampling in numpy);
output cells decoded as xy = (d + grid) * stride, wh = exp(log wh) * stride; score = objectness *
best class probability; per-class NMS at IoU 0.65 over scores of at least 0.01 (YOLOX's
`test_conf` and `nmsthre`), at most 100 boxes an image; boxes divided by the letterbox ratio.
"""

import argparse
import json
import os
import sys

import numpy as np
import onnxruntime as ort

COCO80 = [
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
]
ANIMALS = list(range(14, 24))  # bird .. giraffe

# A dataset class (lower case) -> the COCO-80 ids that stand for it. Classes named like a COCO
# class map to it; anything else gets no detections (and so AP 0, which is what it is).
ALIASES = {
    "car": [2],
    "pedestrian": [0],
    "person": [0],
    "bicyclist": [1],
    "cyclist": [1],
    "animal": ANIMALS,
}

INPUT = 416
STRIDES = (8, 16, 32)
PAD = 114.0


def default_model():
    shared = os.environ.get("ROADSYNTH_SHARED")
    if not shared:
        here = os.path.dirname(os.path.abspath(__file__))
        shared = os.path.join(here, "..", "..", "..", "shared")
    return os.path.join(shared, "models", "yolox-nano", "yolox_nano.onnx")


def class_map(categories):
    """COCO-80 id -> list of category ids it is reported as."""
    out = {}
    for cat in categories:
        name = cat["name"].strip().lower()
        ids = ALIASES.get(name)
        if ids is None and name in COCO80:
            ids = [COCO80.index(name)]
        for coco in ids or []:
            out.setdefault(coco, []).append(int(cat["id"]))
    return out


def have_cv2():
    try:
        import cv2  # noqa: F401

        return True
    except ImportError:
        return False


def read_bgr(path, backend):
    if backend == "cv2":
        import cv2

        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:
            raise OSError(f"cannot decode {path}")
        return image
    from PIL import Image

    with Image.open(path) as im:
        return np.ascontiguousarray(np.asarray(im.convert("RGB"))[:, :, ::-1])


def linear_taps(n_out, n_in):
    """OpenCV's INTER_LINEAR sampling: pixel centres aligned, no antialiasing, edges clamped."""
    x = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    x0 = np.floor(x)
    frac = (x - x0).astype(np.float32)
    x0 = x0.astype(np.int64)
    return np.clip(x0, 0, n_in - 1), np.clip(x0 + 1, 0, n_in - 1), frac


def resize(image, width, height, backend):
    if backend == "cv2":
        import cv2

        return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    # The same sampling as cv2.resize(INTER_LINEAR) in floating point (OpenCV rounds its weights
    # to 11 bits, so a pixel may differ by one level).
    y0, y1, fy = linear_taps(height, image.shape[0])
    x0, x1, fx = linear_taps(width, image.shape[1])
    src = image.astype(np.float32)
    rows = src[y0] * (1 - fy)[:, None, None] + src[y1] * fy[:, None, None]
    out = rows[:, x0] * (1 - fx)[None, :, None] + rows[:, x1] * fx[None, :, None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def letterbox(image, backend):
    h, w = image.shape[:2]
    ratio = min(INPUT / h, INPUT / w)
    rw, rh = int(w * ratio), int(h * ratio)
    padded = np.full((INPUT, INPUT, 3), PAD, dtype=np.float32)
    padded[:rh, :rw] = resize(image, rw, rh, backend).astype(np.float32)
    return padded.transpose(2, 0, 1)[None], ratio


def grids():
    cells, strides = [], []
    for s in STRIDES:
        n = INPUT // s
        ys, xs = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        cells.append(np.stack([xs, ys], -1).reshape(-1, 2))
        strides.append(np.full((n * n, 1), s))
    return np.concatenate(cells).astype(np.float32), np.concatenate(strides).astype(np.float32)


def nms(boxes, scores, iou):
    order = scores.argsort()[::-1]
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        x0 = np.maximum(boxes[i, 0], boxes[rest, 0])
        y0 = np.maximum(boxes[i, 1], boxes[rest, 1])
        x1 = np.minimum(boxes[i, 2], boxes[rest, 2])
        y1 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
        area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
        overlap = inter / np.maximum(area(boxes[i]) + area(boxes[rest]) - inter, 1e-12)
        order = rest[overlap <= iou]
    return keep


def detect(session, image, grid, stride, conf, nms_iou, max_dets, backend):
    """(COCO-80 id, score, [x0, y0, x1, y1]) in the image's pixels."""
    blob, ratio = letterbox(image, backend)
    out = session.run(None, {session.get_inputs()[0].name: blob})[0][0]
    xy = (out[:, :2] + grid) * stride
    wh = np.exp(out[:, 2:4]) * stride
    boxes = np.concatenate([xy - wh / 2, xy + wh / 2], 1) / ratio
    cls = out[:, 5:].argmax(1)
    score = out[:, 4] * out[np.arange(len(out)), 5 + cls]
    keep = score >= conf
    boxes, cls, score = boxes[keep], cls[keep], score[keep]
    found = []
    for c in np.unique(cls):
        idx = np.nonzero(cls == c)[0]
        for i in nms(boxes[idx], score[idx], nms_iou):
            j = idx[i]
            found.append((int(c), float(score[j]), boxes[j]))
    found.sort(key=lambda d: -d[1])
    return found[:max_dets]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", required=True, help="COCO image-info JSON of the test images")
    p.add_argument("--output", required=True, help="COCO results JSON to write")
    p.add_argument("--model", default=default_model())
    p.add_argument("--conf", type=float, default=0.01, help="minimum score (YOLOX test_conf)")
    p.add_argument("--nms", type=float, default=0.65, help="NMS IoU (YOLOX nmsthre)")
    p.add_argument("--max-dets", type=int, default=100)
    p.add_argument("--threads", type=int, default=0, help="onnxruntime threads (0: its own)")
    p.add_argument(
        "--backend",
        choices=["auto", "cv2", "numpy"],
        default="auto",
        help="image decoding and resizing: cv2 (what YOLOX itself uses; auto picks it when "
        "installed) or Pillow decoding with a numpy resize sampling as cv2 does",
    )
    args = p.parse_args()
    backend = args.backend
    if backend == "auto":
        backend = "cv2" if have_cv2() else "numpy"

    with open(args.images) as f:
        info = json.load(f)
    root = os.path.dirname(os.path.abspath(args.images))
    mapping = class_map(info.get("categories", []))
    if not mapping:
        names = [c["name"] for c in info.get("categories", [])]
        print(f"warning: no COCO class stands for any of {names}", file=sys.stderr)
    options = ort.SessionOptions()
    if args.threads:
        options.intra_op_num_threads = args.threads
    session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
    grid, stride = grids()
    results = []
    for image in info["images"]:
        path = os.path.join(root, image["file_name"])
        bgr = read_bgr(path, backend)
        h, w = bgr.shape[:2]
        found = detect(session, bgr, grid, stride, args.conf, args.nms, args.max_dets, backend)
        for coco, score, box in found:
            x0, y0 = max(float(box[0]), 0.0), max(float(box[1]), 0.0)
            x1, y1 = min(float(box[2]), float(w)), min(float(box[3]), float(h))
            if x1 <= x0 or y1 <= y0:
                continue
            for category_id in mapping.get(coco, []):
                results.append({
                    "image_id": int(image["id"]),
                    "category_id": category_id,
                    "bbox": [round(x0, 3), round(y0, 3), round(x1 - x0, 3), round(y1 - y0, 3)],
                    "score": round(score, 5),
                })
    tmp = args.output + ".tmp"
    with open(tmp, "w") as f:
        json.dump(results, f)
    os.replace(tmp, args.output)
    print(f"{len(info['images'])} images ({backend}), {len(results)} detections -> {args.output}")


if __name__ == "__main__":
    main()
