#!/usr/bin/env python3
"""Runs `roadsynth augment` sharded over a Ray cluster, then commits the shards into one version.

    python3 ray/driver.py --address auto --shards 8 [--num-cpus 1] [--num-gpus 0]
        [--max-retries 3] [--worker PATH] [--roadsynth PATH] [--shard-dir DIR] [--keep-shards]
        [--no-commit] -- --scenario S --dataset D --output O [more `roadsynth augment` options]

One Ray task per shard runs `roadsynth-worker augment ... --shard i/N --shard-dir DIR --workers C`
(C: --num-cpus rounded up) in the driver's working directory, with the driver's ROADSYNTH_*, ORT_*
and RUST_LOG environment, so relative paths and provenance are the same as on one machine. Every
node must see the data, the binaries and that directory at the same paths (docs/ray.md).

A shard whose command fails (any exit status but 0, or 2 for quarantined items) or whose Ray
worker dies is retried up to --max-retries times: Ray's own retries of tasks. A shard's output is
published by an atomic rename and holds no timestamps, so a retry writes the same bytes and a
killed attempt leaves only a hidden folder. Output lines of every shard stream to this driver as
Ray forwards them (prefixed with the shard), and each finished shard is reported with its count
of progress lines and the last one. When all are
done, `roadsynth dataset commit-shards` merges them into one version of the output, byte-identical
to an unsharded `roadsynth augment`, and removes the shard outputs.

Exit status: 0; 2 when items were quarantined (as `roadsynth augment`); 1 on failure.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import subprocess
import sys
import time
from typing import Any

# What a shard's process gets from the driver's environment (Ray workers inherit the
# environment of `ray start`, not the driver's).
FORWARDED_PREFIXES = ("ROADSYNTH_", "ORT_")
FORWARDED_NAMES = ("RUST_LOG", "RUST_BACKTRACE")

# Exit status of `roadsynth augment` and `commit-shards` when items were quarantined.
EXIT_QUARANTINED = 2


def forwarded_env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if k.startswith(FORWARDED_PREFIXES) or k in FORWARDED_NAMES
    }


def run_command(argv: list[str], cwd: str, env: dict[str, str], label: str) -> dict[str, Any]:
    """Runs `argv` to completion, printing its output line by line (Ray forwards a task's output
    to the driver). Raises on a failed exit status, which makes Ray retry the task."""
    import ray  # imported in the task's process

    started = time.monotonic()
    full_env = dict(os.environ)
    full_env.update(env)
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    assert proc.stdout is not None
    progress_lines, last_progress = 0, None
    for line in proc.stdout:
        line = line.rstrip()
        print(f"[{label}] {line}", flush=True)
        if line.startswith("progress:"):
            progress_lines, last_progress = progress_lines + 1, line
    rc = proc.wait()
    if rc not in (0, EXIT_QUARANTINED):
        raise RuntimeError(f"{label}: {argv[0]} exited with status {rc}")
    # Ray forwards the lines above as it gets to them (a driver that exits may miss the last);
    # the result carries what the driver must report for certain.
    return {
        "label": label,
        "rc": rc,
        "seconds": time.monotonic() - started,
        "node": ray.get_runtime_context().get_node_id()[:8],
        "progress_lines": progress_lines,
        "last_progress": last_progress,
    }


def shard_task(num_cpus: float, num_gpus: float, max_retries: int):
    """The Ray remote function every shard (and the benchmark's no-op task) runs through."""
    import ray

    return ray.remote(run_command).options(
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        max_retries=max_retries,
        # Retry a failed exit status too, not only a dead worker.
        retry_exceptions=True,
    )


def connect(address: str) -> None:
    try:
        import ray
    except ImportError:
        sys.exit("driver: the Python package `ray` is missing: pip install ray==2.60.0")
    # Every shard's progress lines, not Ray's deduplicated summary of similar ones.
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    ray.init(address=address, log_to_driver=True, logging_level="WARNING")


def option_value(args: list[str], name: str) -> str | None:
    """The value of `--name VALUE` or `--name=VALUE` in a command line."""
    for i, a in enumerate(args):
        if a == name and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(name + "="):
            return a[len(name) + 1 :]
    return None


def remove_other_shard_counts(shard_dir: str, shards: int) -> None:
    """Removes shard outputs of another shard count (a failed or kept earlier run with a
    different `shards`): the commit refuses mixed counts, so they would block every run."""
    if not os.path.isdir(shard_dir):
        return
    for name in os.listdir(shard_dir):
        m = re.fullmatch(r"shard-\d+-of-(\d+)", name)
        if m and int(m.group(1)) != shards:
            print(f"driver: removing {name} (from a run with {int(m.group(1))} shards)", flush=True)
            shutil.rmtree(os.path.join(shard_dir, name))


def run_shards(
    augment_args: list[str],
    shards: int,
    shard_dir: str,
    worker: str,
    num_cpus: float,
    num_gpus: float,
    max_retries: int,
) -> int:
    """Runs every shard; returns 0, EXIT_QUARANTINED, or 1 when a shard failed for good."""
    import ray

    remove_other_shard_counts(shard_dir, shards)
    task = shard_task(num_cpus, num_gpus, max_retries)
    cwd = os.getcwd()
    env = forwarded_env()
    threads = str(max(1, math.ceil(num_cpus)))
    started = time.monotonic()
    pending = {}
    for i in range(shards):
        argv = [worker, "augment", *augment_args]
        argv += ["--shard", f"{i}/{shards}", "--shard-dir", shard_dir, "--workers", threads]
        pending[task.remote(argv, cwd, env, f"shard {i}/{shards}")] = i
    print(f"driver: {shards} shard tasks submitted", flush=True)
    quarantined = False
    done_count = 0
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        for ref in done:
            i = pending.pop(ref)
            try:
                result = ray.get(ref)
            except Exception as e:  # Ray raises the task's error once its retries are spent
                print(
                    f"driver: shard {i}/{shards} failed after {max_retries} retries: {e}",
                    file=sys.stderr,
                    flush=True,
                )
                for other in pending:
                    ray.cancel(other, force=True)
                return 1
            done_count += 1
            quarantined |= result["rc"] == EXIT_QUARANTINED
            print(
                f"driver: shard {i}/{shards} done on node {result['node']} in "
                f"{result['seconds']:.1f} s ({done_count}/{shards} done, "
                f"{time.monotonic() - started:.1f} s; {result['progress_lines']} progress "
                f"lines, last: {result['last_progress']})",
                flush=True,
            )
    return EXIT_QUARANTINED if quarantined else 0


def main(argv: list[str]) -> int:
    if "--" not in argv:
        print("usage: driver.py [options] -- <roadsynth augment options>", file=sys.stderr)
        return 1
    split = argv.index("--")
    own, augment_args = argv[:split], argv[split + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--address", default="auto")
    parser.add_argument("--shards", type=int, required=True)
    parser.add_argument("--num-cpus", type=float, default=1.0)
    parser.add_argument("--num-gpus", type=float, default=0.0)
    parser.add_argument("--max-retries", type=int, default=3)
    parser.add_argument("--worker", default=shutil.which("roadsynth-worker") or "roadsynth-worker")
    parser.add_argument("--roadsynth", default=shutil.which("roadsynth") or "roadsynth")
    parser.add_argument("--shard-dir", help="default: <output>.shards")
    parser.add_argument("--keep-shards", action="store_true")
    parser.add_argument("--no-commit", action="store_true")
    opts = parser.parse_args(own)
    if opts.shards < 1:
        parser.error("--shards must be at least 1")
    output = option_value(augment_args, "--output")
    if output is None:
        parser.error("the augment options need --output")
    shard_dir = opts.shard_dir or output.rstrip("/") + ".shards"

    started = time.monotonic()
    connect(opts.address)
    status = run_shards(
        augment_args,
        opts.shards,
        shard_dir,
        opts.worker,
        opts.num_cpus,
        opts.num_gpus,
        opts.max_retries,
    )
    if status == 1:
        return 1
    shards_done = time.monotonic()
    if opts.no_commit:
        return status
    commit = [
        opts.roadsynth,
        "dataset",
        "commit-shards",
        "--output",
        output,
        "--shard-dir",
        shard_dir,
        "--shards",
        str(opts.shards),
    ]
    if opts.keep_shards:
        commit.append("--keep-shards")
    print(f"driver: committing: {' '.join(commit)}", flush=True)
    rc = subprocess.run(commit, check=False).returncode
    if rc not in (0, EXIT_QUARANTINED):
        print(f"driver: commit failed with status {rc}", file=sys.stderr, flush=True)
        return 1
    print(
        f"driver: shards {shards_done - started:.1f} s, commit "
        f"{time.monotonic() - shards_done:.1f} s",
        flush=True,
    )
    return EXIT_QUARANTINED if EXIT_QUARANTINED in (rc, status) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
