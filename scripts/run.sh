#!/usr/bin/env bash
# The main job: installs what it needs (idempotent), builds roadsynth and runs the repository's
# orchestrator.yaml: ingest the shared KITTI, CamVid, COCO cut-out and road-animals sets into
# datasets/, build the animal asset bank, run the augmentations (the roadsynth and naive-paste
# training arms, the foggy test slice), then the experiment (train the detector on every arm and
# seed, score on the held-out real test sets, report in reports/<run id>/); stages whose inputs
# did not change are skipped. Each run leaves runs/<run id>/ledger.json and run.rrd.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
cargo build --locked -p roadsynth --bins
"$CARGO_TARGET_DIR/debug/roadsynth" run orchestrator.yaml
