#!/usr/bin/env python3
"""Baseline for the weather benchmark: albumentations RandomFog + RandomRain, one core.

Runs on the same frames as `cargo run -p roadsynth-weather --example weather_bench`: the first N
(sorted) CamVid val frames (480x360) and KITTI object frames (1242x375), decoded once, untimed.
Prints frames per second (by wall-clock time and by this thread's CPU time) of RandomFog followed
by RandomRain (both p=1, library defaults), the
albumentations analogue of our fog + rain, which draws fog as white circles and rain as straight
lines, with no depth.

    pip install -r pipeline/weather/bench/requirements.txt
    python3 pipeline/weather/bench/albumentations_bench.py [--frames 50] [--min-seconds 3]
"""

import os

# One core: no BLAS/OpenMP thread pools (set before numpy/cv2 load).
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[var] = "1"

import argparse  # noqa: E402
import glob  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402

cv2.setNumThreads(0)  # OpenCV runs its functions sequentially
cv2.ocl.setUseOpenCL(False)


def shared_root() -> Path:
    env = os.environ.get("ROADSYNTH_SHARED")
    if env:
        return Path(env)
    # pipeline/weather/bench -> repository root -> ../shared
    return Path(__file__).resolve().parents[3].parent / "shared"


def load(pattern: str, n: int) -> list:
    frames = []
    for path in sorted(glob.glob(pattern))[:n]:
        bgr = cv2.imread(path, cv2.IMREAD_COLOR)
        if bgr is not None:
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return frames


def run(frames: list, min_seconds: float) -> tuple:
    """Frames done, wall seconds in the transform, CPU seconds of this thread over the run."""
    transform = A.Compose([A.RandomFog(p=1.0), A.RandomRain(p=1.0)], seed=0)
    done, fog_rain = 0, 0.0
    cpu_start = time.thread_time()
    started = time.perf_counter()
    while done == 0 or time.perf_counter() - started < min_seconds:
        for image in frames:
            t0 = time.perf_counter()
            out = transform(image=image)["image"]
            fog_rain += time.perf_counter() - t0
            assert out.shape == image.shape
            done += 1
    return done, fog_rain, time.thread_time() - cpu_start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--min-seconds", type=float, default=3.0)
    args = parser.parse_args()
    root = shared_root() / "datasets"
    print(
        f"albumentations {A.__version__} RandomFog + RandomRain (defaults, p=1), one thread; "
        f"opencv {cv2.__version__}, numpy {np.__version__}, python {platform.python_version()}"
    )
    print("dataset  frames  size        total ms  fps (wall)  fps (cpu)")
    for name, pattern in (
        ("camvid", str(root / "camvid/images/val/*.jpg")),
        ("kitti", str(root / "kitti-object/image_2/*.png")),
    ):
        frames = load(pattern, args.frames)
        if not frames:
            print(f"{name:<8} (not found)")
            continue
        h, w = frames[0].shape[:2]
        done, seconds, cpu = run(frames, args.min_seconds)
        print(
            f"{name:<8} {len(frames):>6}  {f'{w}x{h}':<10} {1000 * seconds / done:>8.2f}  "
            f"{done / seconds:>10.1f}  {done / cpu:>9.1f}"
        )


if __name__ == "__main__":
    main()
