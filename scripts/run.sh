#!/usr/bin/env bash
# The main job: installs what it needs (idempotent), builds roadsynth and runs the repository's
# orchestrator.yaml (today: ingest the shared KITTI, CamVid and road-animals sets into datasets/
# and print their stats).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
cargo build --locked -p roadsynth
"$CARGO_TARGET_DIR/debug/roadsynth" run orchestrator.yaml
