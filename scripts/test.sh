#!/usr/bin/env bash
# The test command: installs what the tests need (idempotent), then checks formatting, lints and
# runs every test of the workspace. Tests read ../shared (or $ROADSYNTH_SHARED).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
