use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;

use crate::ModelError;

/// The environment variable naming the ONNX Runtime shared library.
pub const ORT_DYLIB_ENV: &str = "ORT_DYLIB_PATH";

static ENVIRONMENT: OnceLock<Environment> = OnceLock::new();
static INIT: Mutex<()> = Mutex::new(());

/// Asks `python3` for the newest `libonnxruntime.so*` of its `onnxruntime` package, as
/// `scripts/env.sh` does.
const PYTHON_LOOKUP: &str = "import onnxruntime, os, glob; \
print(sorted(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__), 'capi', 'libonnxruntime.so*')))[-1])";

/// The ONNX Runtime library to load: `ORT_DYLIB_PATH` when set, else the library of pip's
/// `onnxruntime` package as `python3` finds it.
pub fn runtime_library_path() -> Result<PathBuf, ModelError> {
    if let Some(path) = std::env::var_os(ORT_DYLIB_ENV).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let output = std::process::Command::new("python3")
        .args(["-c", PYTHON_LOOKUP])
        .output()
        .map_err(|e| ModelError::RuntimeNotFound {
            reason: format!("{ORT_DYLIB_ENV} is not set and python3 cannot run: {e}"),
        })?;
    let path = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if !output.status.success() || path.is_empty() {
        return Err(ModelError::RuntimeNotFound {
            reason: format!(
                "{ORT_DYLIB_ENV} is not set and python3 has no onnxruntime package ({})",
                String::from_utf8_lossy(&output.stderr)
                    .lines()
                    .last()
                    .unwrap_or("no output")
            ),
        });
    }
    Ok(PathBuf::from(path))
}

/// The process's ONNX Runtime environment, loading the library from [`runtime_library_path`] on
/// first use.
pub fn runtime() -> Result<&'static Environment, ModelError> {
    if let Some(environment) = ENVIRONMENT.get() {
        return Ok(environment);
    }
    init_runtime(&runtime_library_path()?)
}

/// Loads ONNX Runtime from `library` and creates the process's environment. Once that has
/// succeeded, later calls return the same environment (a process holds one ONNX Runtime);
/// `library` must still exist. A failure can be retried with another path.
pub fn init_runtime(library: &Path) -> Result<&'static Environment, ModelError> {
    if !library.is_file() {
        return Err(ModelError::RuntimeMissing {
            path: library.to_path_buf(),
        });
    }
    let _guard = INIT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(environment) = ENVIRONMENT.get() {
        return Ok(environment);
    }
    let load_error = |reason: String| ModelError::RuntimeLoad {
        path: library.to_path_buf(),
        reason,
    };
    let environment = ort::init_from(library)
        .map_err(|e| load_error(e.to_string()))?
        .with_name("roadsynth")
        .build()
        .map_err(|e| load_error(e.to_string()))?;
    tracing::debug!(library = %library.display(), "ONNX Runtime loaded");
    Ok(ENVIRONMENT.get_or_init(|| environment))
}
