#!/usr/bin/env bash
# Benchmarks (numbers for the notes, not pass/fail): ingest against copy+hash, annotation reads,
# planning, compositing, diffusion, weather, the augment stage against its floor, a training epoch.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
cargo run --locked -q -p roadsynth-formats --example ingest_bench
cargo run --locked -q -p roadsynth-placement --example plan_bench
cargo run --locked -q -p roadsynth-weather --example weather_bench
cargo run --locked -q -p roadsynth-engine --example composite_bench
cargo run --locked -q -p roadsynth-diffusion --example diffusion_bench -- --sizes 32,64,128 --steps 3 --threads 1
cargo run --locked -q -p roadsynth-stages --example augment_bench
cargo run --locked -q -p roadsynth-detector --example train_bench
