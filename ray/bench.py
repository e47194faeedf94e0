#!/usr/bin/env python3
"""Benchmark of the Ray executor: render-stage throughput with 1 shard and with 2 shards on a local
one-node Ray cluster with two CPUs (goal: 2 shards >= 1.7x of 1 shard), and the driver's
per-task overhead.

    python3 ray/bench.py [--frames 192] [--work /tmp/roadsynth-ray-bench] [--bin-dir DIR]

Workload: `animals-on-roads` over the first --frames frames of CamVid train (planning, exemplar
rendering and the YOLOX filter: the default insertion path), two variants per frame. Each shard asks
Ray for one CPU and renders with one thread, so one shard uses one core and two shards use two.
Inputs (CamVid, the COCO cut-outs and their asset bank) are prepared once under --work from the
shared data ($ROADSYNTH_SHARED, else ../shared). Throughput is frames / wall time of the shard phase
(submission to the last shard's result: Ray worker start, process start, planning, rendering,
writing the shard); the slowest shard's own process time (start to exit) is shown beside it, and
the commit is timed apart. Both runs must commit the same version (it is checked). The default
192 frames keep each shard's fixed start (about a second: a fresh Ray worker process, the binary,
models and planning) small beside its rendering; with fewer frames the speedup falls toward 1.

Per-task overhead: a task running `true` through the driver's own task function, one at a time
(latency of one task) and 100 at once (cost per task when Ray is kept busy), with the cost of
starting `true` itself measured outside Ray; and the worker binary's own start (`--help`, which
loads OpenCV), which every shard pays on top.

Prints the machine (CPU model, cores) and its load before and after (`uptime`): the numbers are
only comparable on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
import driver  # noqa: E402  (the driver's task function is what is measured)


def shared_root() -> Path:
    return Path(os.environ.get("ROADSYNTH_SHARED", REPO.parent / "shared")).resolve()


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if out.returncode not in (0, 2):
        sys.exit(f"bench: {' '.join(cmd)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out


def prepare(work: Path, roadsynth: str) -> dict[str, Path]:
    shared = shared_root()
    data = {
        "camvid": work / "camvid",
        "cutouts": work / "cutouts",
        "assets": work / "animals",
        "detector": shared / "models/yolox-nano/yolox_nano.onnx",
    }
    if not (data["camvid"] / "CURRENT").exists():
        run([roadsynth, "ingest", "--format", "coco", "--input",
             str(shared / "datasets/camvid/annotations_train.json"),
             "--output", str(data["camvid"]), "--split", "train"])
    if not (data["assets"] / "bank.json").exists():
        cav = shared / "datasets/coco-animals-vehicles"
        run([roadsynth, "ingest", "--format", "coco", "--input", str(cav / "instances_subset.json"),
             "--images-root", str(cav / "images"), "--output", str(data["cutouts"])])
        run([roadsynth, "assets", "build", "--dataset", str(data["cutouts"]), "--classes",
             "bird,cat,dog,horse,sheep,cow,elephant,bear,zebra,giraffe",
             "--output", str(data["assets"])])
    return data


class Cluster:
    """`ray start --head --block` with two CPUs, as a child process; stopped with SIGTERM."""

    def __init__(self, work: Path):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.address = f"127.0.0.1:{port}"
        self.log = work / "ray-head.log"
        env = dict(os.environ, RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0",
                   RAY_USAGE_STATS_ENABLED="0")
        temp = work / "ray"
        shutil.rmtree(temp, ignore_errors=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
             "--port", str(port), "--num-cpus", "2",
             "--include-dashboard=false", "--disable-usage-stats",
             "--object-store-memory", "100000000", "--temp-dir", str(temp)],
            stdout=self.log.open("w"), stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 180
        while "Ray runtime started" not in self.log.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"bench: ray start failed:\n{self.log.read_text()}")
            time.sleep(0.2)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def sharded_run(shards: int, cluster: Cluster, data: dict[str, Path], frames: int, out: Path,
                bins: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, str(HERE / "driver.py"), "--address", cluster.address,
           "--shards", str(shards), "--num-cpus", "1",
           "--worker", str(bins / "roadsynth-worker"), "--roadsynth", str(bins / "roadsynth"),
           "--", "--scenario", str(REPO / "scenarios/animals-on-roads.yaml"),
           "--dataset", str(data["camvid"]), "--output", str(out),
           "--assets", str(data["assets"]), "--detector", str(data["detector"]),
           "--max-frames", str(frames)]
    started = time.monotonic()
    result = run(cmd, env=dict(os.environ, SOURCE_DATE_EPOCH="1700000000"))
    wall = time.monotonic() - started
    m = re.search(r"driver: shards ([\d.]+) s, commit ([\d.]+) s", result.stdout)
    version = re.search(r"version (v\d+-[0-9a-f]+)", result.stdout)
    # Each shard's own process time, from start to exit (no Ray scheduling, no worker start).
    process = [float(t) for t in re.findall(r"driver: shard \d+/\d+ done on node \w+ in ([\d.]+) s",
                                            result.stdout)]
    if not m or not version or len(process) != shards:
        sys.exit(f"bench: unexpected driver output:\n{result.stdout}\n{result.stderr}")
    return {"shards": shards, "shard_phase_s": float(m.group(1)), "commit_s": float(m.group(2)),
            "slowest_process_s": max(process), "wall_s": wall, "version": version.group(1)}


def overhead(cluster: Cluster, bins: Path) -> dict:
    import ray

    # Workers cannot import `driver` from here: ship its functions by value, as when it runs as
    # a script.
    ray.cloudpickle.register_pickle_by_value(driver)
    driver.connect(cluster.address)
    task = driver.shard_task(num_cpus=1, num_gpus=0, max_retries=0)
    env, cwd = driver.forwarded_env(), os.getcwd()
    ray.get(task.remote(["true"], cwd, env, "warm-up"))  # workers started, function shipped
    n = 20
    started = time.monotonic()
    for i in range(n):
        ray.get(task.remote(["true"], cwd, env, f"noop {i}"))
    serial = (time.monotonic() - started) / n
    m = 100
    started = time.monotonic()
    ray.get([task.remote(["true"], cwd, env, f"noop {i}") for i in range(m)])
    batch = (time.monotonic() - started) / m
    started = time.monotonic()
    for _ in range(n):
        subprocess.run(["true"], check=True)
    true_alone = (time.monotonic() - started) / n
    started = time.monotonic()
    for _ in range(5):
        subprocess.run([str(bins / "roadsynth-worker"), "--help"], capture_output=True, check=True)
    worker_start = (time.monotonic() - started) / 5
    ray.shutdown()
    return {"serial_task_s": serial, "batched_task_s": batch, "true_alone_s": true_alone,
            "worker_start_s": worker_start}


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "unknown CPU")
    return f"{model}, {os.cpu_count()} logical CPUs"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=192)
    p.add_argument("--work", type=Path, default=Path("/tmp/roadsynth-ray-bench"))
    target = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/roadsynth/target"))
    p.add_argument("--bin-dir", type=Path, default=target / "debug")
    opts = p.parse_args()
    opts.work.mkdir(parents=True, exist_ok=True)
    bins = opts.bin_dir
    load_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    data = prepare(opts.work, str(bins / "roadsynth"))
    cluster = Cluster(opts.work)
    try:
        runs = [sharded_run(s, cluster, data, opts.frames, opts.work / f"out-{s}", bins)
                for s in (1, 2)]
        cost = overhead(cluster, bins)
    finally:
        cluster.stop()
    load_after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()

    print(f"machine: {machine()}")
    print(f"load before: {load_before}")
    print(f"load after:  {load_after}")
    print(f"workload: animals-on-roads, {opts.frames} CamVid frames x 2 variants, "
          "one CPU per shard")
    for r in runs:
        print(f"  {r['shards']} shard(s): shard phase {r['shard_phase_s']:.1f} s "
              f"({opts.frames / r['shard_phase_s']:.2f} frames/s), slowest shard process "
              f"{r['slowest_process_s']:.1f} s, commit {r['commit_s']:.1f} s, "
              f"driver wall {r['wall_s']:.1f} s, version {r['version']}")
    speedup = runs[0]["shard_phase_s"] / runs[1]["shard_phase_s"]
    in_process = runs[0]["slowest_process_s"] / runs[1]["slowest_process_s"]
    print(f"  speedup 2 vs 1 shard: {speedup:.2f}x over the shard phase (goal >= 1.7x), "
          f"{in_process:.2f}x over the slowest shard's process")
    same = runs[0]["version"] == runs[1]["version"]
    print(f"  same committed version: {same}")
    print("driver per-task overhead (no-op task `true` through driver.run_command):")
    print(f"  one at a time: {cost['serial_task_s'] * 1000:.1f} ms per task "
          f"(`true` alone: {cost['true_alone_s'] * 1000:.1f} ms)")
    print(f"  100 at once:   {cost['batched_task_s'] * 1000:.1f} ms per task")
    print("  roadsynth-worker start (--help, loads OpenCV): "
          f"{cost['worker_start_s'] * 1000:.0f} ms")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
