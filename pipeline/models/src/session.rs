//! What every model here does the same way: open a session, check its input and output tensors,
//! run it on one `f32` tensor, and map `ort`'s errors to [`ModelError`].

use std::path::{Path, PathBuf};

use ndarray::{Array4, ArrayD};
use ort::session::Session;
use ort::value::{Outlet, TensorElementType, TensorRef};

use crate::{ModelError, runtime};

/// Opens a model: a session on the process's runtime, with `intra_threads` threads per operator
/// when given, and the model's name (its file stem) for errors and logs. Every ONNX model of the
/// workspace opens this way (the built-in detector's backbone too).
pub fn open(path: &Path, intra_threads: Option<usize>) -> Result<(Session, String), ModelError> {
    // Checked first so that a wrong path names the file, not ONNX Runtime's "failed to load".
    if !path.is_file() {
        return Err(ModelError::ModelMissing {
            path: path.to_path_buf(),
        });
    }
    let name = path
        .file_stem()
        .map_or_else(|| "model".to_string(), |s| s.to_string_lossy().into_owned());
    let environment = runtime()?;
    let mut builder = Session::builder(environment).map_err(ort_error(&name, "session options"))?;
    if let Some(threads) = intra_threads {
        builder = builder
            .with_intra_threads(threads)
            .map_err(ort_error(&name, "thread count"))?;
    }
    let session = builder
        .commit_from_file(path)
        .map_err(ort_error(&name, "loading the model"))?;
    Ok((session, name))
}

/// Maps an `ort` error (of any recovery type) to [`ModelError::Ort`].
pub fn ort_error<R>(
    model: &str,
    context: &'static str,
) -> impl FnOnce(ort::Error<R>) -> ModelError {
    let model = model.to_string();
    move |e| ModelError::Ort {
        model,
        context,
        message: e.to_string(),
    }
}

/// A [`ModelError::BadModel`] for the model at `path`.
pub(crate) fn bad_model(path: &Path, reason: String) -> ModelError {
    ModelError::BadModel {
        path: PathBuf::from(path),
        reason,
    }
}

/// The model's one input, which must be an `f32` tensor whose fixed dimensions `layout` accepts
/// (returning what it reads from them): the input's name and that reading. `expected` describes
/// the accepted layout for the error message.
pub(crate) fn f32_input<T>(
    session: &Session,
    path: &Path,
    expected: &str,
    layout: impl FnOnce(&[i64]) -> Option<T>,
) -> Result<(String, T), ModelError> {
    let [input] = session.inputs() else {
        return Err(bad_model(
            path,
            format!("expected one input, found {}", session.inputs().len()),
        ));
    };
    let read = f32_dims(input).and_then(|dims| layout(&dims));
    read.map(|value| (input.name().to_string(), value))
        .ok_or_else(|| {
            bad_model(
                path,
                format!(
                    "input `{}` is {:?}; expected {expected}",
                    input.name(),
                    input.dtype()
                ),
            )
        })
}

/// The model's first output, which must be an `f32` tensor of `expected` dimensions where the
/// model fixes them (a dynamic dimension, `-1`, is checked when the model runs instead).
pub(crate) fn f32_output(
    session: &Session,
    path: &Path,
    expected: &[usize],
) -> Result<String, ModelError> {
    let output = session
        .outputs()
        .first()
        .ok_or_else(|| bad_model(path, "the model has no outputs".into()))?;
    let matches = f32_dims(output).is_some_and(|dims| {
        dims.len() == expected.len()
            && dims
                .iter()
                .zip(expected)
                .all(|(&d, &e)| d < 0 || usize::try_from(d).is_ok_and(|d| d == e))
    });
    if matches {
        Ok(output.name().to_string())
    } else {
        Err(bad_model(
            path,
            format!(
                "output `{}` is {:?}; expected an f32 tensor {expected:?}",
                output.name(),
                output.dtype()
            ),
        ))
    }
}

/// An outlet's dimensions when it is an `f32` tensor.
fn f32_dims(outlet: &Outlet) -> Option<Vec<i64>> {
    let dtype = outlet.dtype();
    (dtype.tensor_type() == Some(TensorElementType::Float32))
        .then(|| dtype.tensor_shape().map(|s| s.to_vec()))
        .flatten()
}

/// Runs a one-input model and copies out the `f32` output `output_name`, which must have shape
/// `expected`. The copy frees the session for the next call while the caller decodes.
pub fn run_f32(
    session: &mut Session,
    model: &str,
    input_name: &str,
    input: &Array4<f32>,
    output_name: &str,
    expected: &[usize],
) -> Result<ArrayD<f32>, ModelError> {
    let tensor = TensorRef::from_array_view(input).map_err(ort_error(model, "input tensor"))?;
    let outputs = session
        .run(ort::inputs![input_name => tensor])
        .map_err(ort_error(model, "inference"))?;
    let bad = |reason: String| ModelError::BadOutput {
        model: model.to_string(),
        reason,
    };
    let value = outputs
        .get(output_name)
        .ok_or_else(|| bad(format!("no output `{output_name}`")))?;
    let array = value
        .try_extract_array::<f32>()
        .map_err(|e| bad(format!("`{output_name}` is not an f32 tensor: {e}")))?;
    if array.shape() != expected {
        return Err(bad(format!(
            "`{output_name}` has shape {:?}, expected {expected:?}",
            array.shape()
        )));
    }
    Ok(array.to_owned())
}

/// Reads a positive tensor dimension as a pixel size.
pub(crate) fn pixels(dim: i64) -> Option<u32> {
    u32::try_from(dim).ok().filter(|&d| d > 0)
}
