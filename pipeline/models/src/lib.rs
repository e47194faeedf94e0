//! ONNX models through ONNX Runtime (ort): the runtime, loaded once, and the drivable-area segmentation model.
//!
//! This is the only crate that links `ort`. ONNX Runtime is loaded at run time from the shared
//! library that `ORT_DYLIB_PATH` names (`scripts/env.sh` points it at the one pip's
//! `onnxruntime==1.31.1` ships); without the variable, [`runtime_library_path`] asks `python3`
//! where that package is, as `scripts/env.sh` does. The runtime is initialised once per process.
//!
//! [`DrivableAreaModel`] runs `TwinLiteNet` (`../shared/models/twinlitenet`) and implements
//! `roadsynth-geometry`'s [`DrivableSegmenter`](roadsynth_geometry::DrivableSegmenter), so
//! geometry uses it without depending on ONNX Runtime.

mod drivable;
mod error;
mod runtime;

pub use drivable::DrivableAreaModel;
pub use error::ModelError;
pub use runtime::{ORT_DYLIB_ENV, init_runtime, runtime, runtime_library_path};
