#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian 12 machine: system libraries (OpenCV, clang for its bindings;
# chromium, which screenshots the experiment report in a test),
# the ONNX Runtime shared library (from the pinned PyPI wheel) and the Python packages the tests
# use to cross-check our output (pyarrow; rerun-sdk, whose CLI verifies our Rerun recordings;
# pycocotools, the reference for masks and mAP; onnx, which rewrites a test model into the other
# export conventions; ray, which runs sharded augmentations and their test cluster).
# Safe to run again: each step checks before it installs.
set -euo pipefail

ORT_VERSION=1.31.1
PYARROW_VERSION=19.0.1
RERUN_VERSION=0.36.3
PYCOCOTOOLS_VERSION=2.0.11
ONNX_VERSION=1.23.2
RAY_VERSION=2.60.0

need_apt=()
for pkg in libopencv-dev clang libclang-dev pkg-config chromium; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if ((${#need_apt[@]})); then
  echo "setup: installing ${need_apt[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

py_has() { python3 - "$1" "$2" <<'PY' 2>/dev/null
import importlib.metadata as m, sys
sys.exit(0 if m.version(sys.argv[1]) == sys.argv[2] else 1)
PY
}
py_want=()
py_has onnxruntime "$ORT_VERSION" || py_want+=("onnxruntime==$ORT_VERSION")
py_has pyarrow "$PYARROW_VERSION" || py_want+=("pyarrow==$PYARROW_VERSION")
py_has rerun-sdk "$RERUN_VERSION" || py_want+=("rerun-sdk==$RERUN_VERSION")
py_has pycocotools "$PYCOCOTOOLS_VERSION" || py_want+=("pycocotools==$PYCOCOTOOLS_VERSION")
py_has onnx "$ONNX_VERSION" || py_want+=("onnx==$ONNX_VERSION")
py_has ray "$RAY_VERSION" || py_want+=("ray==$RAY_VERSION")
if ((${#py_want[@]})); then
  echo "setup: pip installing ${py_want[*]}" >&2
  python3 -m pip install -q --disable-pip-version-check "${py_want[@]}"
fi
