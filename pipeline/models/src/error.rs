use std::path::PathBuf;

/// What can go wrong loading or running a model.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ModelError {
    #[error(
        "ONNX Runtime library not found: {reason} (set ORT_DYLIB_PATH to libonnxruntime.so, or install onnxruntime==1.31.1 with pip; scripts/setup.sh does)"
    )]
    RuntimeNotFound { reason: String },
    #[error("ONNX Runtime library {} does not exist (check ORT_DYLIB_PATH)", path.display())]
    RuntimeMissing { path: PathBuf },
    #[error("cannot load ONNX Runtime from {}: {reason}", path.display())]
    RuntimeLoad { path: PathBuf, reason: String },
    #[error("model file {} does not exist", path.display())]
    ModelMissing { path: PathBuf },
    #[error("model {}: {reason}", path.display())]
    BadModel { path: PathBuf, reason: String },
    #[error("model `{model}`: {context}: {message}")]
    Ort {
        model: String,
        context: &'static str,
        message: String,
    },
    #[error("model `{model}` output: {reason}")]
    BadOutput { model: String, reason: String },
    /// The caller's image, region or class list cannot be used (an empty image, a region outside
    /// it, a class the model does not have).
    #[error("model `{model}` input: {reason}")]
    BadInput { model: String, reason: String },
}
