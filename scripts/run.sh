#!/usr/bin/env bash
# The main job: installs what it needs (idempotent), builds roadsynth, ingests the shared KITTI and
# CamVid sets into datasets/ and prints their stats.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
cargo build --locked -p roadsynth
bin="$CARGO_TARGET_DIR/debug/roadsynth"
data="$ROADSYNTH_SHARED/datasets"

"$bin" ingest --format kitti --input "$data/kitti-object" --output datasets/kitti --split train --replace
"$bin" ingest --format coco --input "$data/camvid/annotations_train.json" --output datasets/camvid --split train --replace
"$bin" ingest --format coco --input "$data/camvid/annotations_val.json" --output datasets/camvid --split val
"$bin" dataset stats datasets/kitti
"$bin" dataset stats datasets/camvid
