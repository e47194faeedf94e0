//! Test support: locating the shared real datasets and models, skipping or failing as CI requires.
//!
//! Tests read the read-only shared data at `../shared` beside the repository, or wherever
//! `ROADSYNTH_SHARED` points. When it is absent a test skips with a message, except under
//! `CI=true`, where absence is a failure: CI must never pass by skipping.

use std::path::{Path, PathBuf};

/// The folder of the package whose test or example is running: cargo's `CARGO_MANIFEST_DIR` at
/// run time. The compile-time value is only a fallback: with a build folder shared between
/// checkouts (as `scripts/env.sh` sets up), a test binary built in one checkout can be reused by
/// another, and must read that other checkout's files.
pub fn package_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

/// The repository root: the nearest folder above [`package_dir`] holding `orchestrator.yaml`.
///
/// # Panics
/// When no such folder exists (the package is not inside a roadsynth checkout).
pub fn repo_root() -> PathBuf {
    let start = package_dir();
    start
        .ancestors()
        .find(|d| d.join("orchestrator.yaml").is_file())
        .map_or_else(
            || panic!("no orchestrator.yaml above {}", start.display()),
            Path::to_path_buf,
        )
}

/// The shared data root, if present.
pub fn shared_root() -> Option<PathBuf> {
    let root = match std::env::var_os("ROADSYNTH_SHARED") {
        Some(p) => PathBuf::from(p),
        None => repo_root().join("../shared"),
    };
    root.is_dir().then(|| root.canonicalize().unwrap_or(root))
}

/// A path under the shared root (`datasets/camvid`), or `None` after printing why the test skips.
///
/// # Panics
/// Under `CI=true` when the path is missing.
pub fn shared(rel: &str) -> Option<PathBuf> {
    let found = shared_root().map(|r| r.join(rel)).filter(|p| p.exists());
    if found.is_none() {
        let msg = format!(
            "shared data `{rel}` not found (set ROADSYNTH_SHARED or place it at ../shared)"
        );
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{msg}; under CI=true this is a failure"
        );
        eprintln!("SKIP: {msg}");
    }
    found
}

/// Is a Python module importable? Absent modules skip like absent data (and fail under CI).
///
/// # Panics
/// Under `CI=true` when the module cannot be imported.
pub fn python_module(module: &str) -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        let msg = format!("python module `{module}` not importable (scripts/setup.sh installs it)");
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{msg}; under CI=true this is a failure"
        );
        eprintln!("SKIP: {msg}");
    }
    ok
}
