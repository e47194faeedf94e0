# Sourced by the scripts: where builds go and where the shared data and ONNX Runtime are.
# The build folder lives outside the clone so a fresh clone (CI) reuses a warm build.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/roadsynth/target}"
# CI builds each clone once: incremental caches would only pile up in the warm build folder
# (32 GB of them here after a few days of builds, until the disk was full).
if [ "${CI:-}" = "true" ]; then
  export CARGO_INCREMENTAL=0
fi
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ROADSYNTH_SHARED="${ROADSYNTH_SHARED:-$(cd "$repo_root/.." && pwd)/shared}"
if [ -z "${ORT_DYLIB_PATH:-}" ]; then
  ORT_DYLIB_PATH="$(python3 -c 'import onnxruntime, os, glob; print(sorted(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__), "capi", "libonnxruntime.so*")))[-1])' 2>/dev/null || true)"
  export ORT_DYLIB_PATH
fi
