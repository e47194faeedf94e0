//! `TwinLiteNet`'s drivable-area head as a [`DrivableSegmenter`].

use std::path::{Path, PathBuf};

use image::RgbImage;
use image::imageops::FilterType;
use ndarray::Array4;
use ort::session::Session;
use ort::value::{TensorElementType, TensorRef};
use roadsynth_geometry::{DrivableMask, DrivableSegmenter, SegmenterError};

use crate::{ModelError, runtime};

/// A drivable-area segmentation model: `TwinLiteNet` trained on `BDD100K`
/// (`../shared/models/twinlitenet/SOURCE.txt`).
///
/// Input: one `f32` tensor `[1, 3, H, W]`, RGB, values `x / 255`, the frame resized to `W x H`
/// (bilinear, no letterbox). Output: drivable-area logits `[1, 2, H, W]` (the output named `da`,
/// or `drivable_area` in the 320x320 export, else the first); a pixel is drivable where class 1
/// has the larger logit. The mask is resized back to the frame by nearest neighbour. Input and
/// output names and the input size are read from the model.
#[derive(Debug)]
pub struct DrivableAreaModel {
    session: Session,
    name: String,
    input_name: String,
    output_name: String,
    input_width: u32,
    input_height: u32,
}

impl DrivableAreaModel {
    /// The recommended model, relative to the shared data root.
    pub const SHARED_PATH: &'static str = "models/twinlitenet/twinlitenet_bdd100k_360x640.onnx";

    /// Loads a model with ONNX Runtime's default thread count.
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        Self::load_with_threads(path, None)
    }

    /// Loads a model, with `intra_threads` threads per operator when given.
    pub fn load_with_threads(
        path: &Path,
        intra_threads: Option<usize>,
    ) -> Result<Self, ModelError> {
        if !path.is_file() {
            return Err(ModelError::ModelMissing {
                path: path.to_path_buf(),
            });
        }
        let name = path
            .file_stem()
            .map_or_else(|| "model".to_string(), |s| s.to_string_lossy().into_owned());
        let environment = runtime()?;
        let mut builder =
            Session::builder(environment).map_err(ort_error(&name, "session options"))?;
        if let Some(threads) = intra_threads {
            builder = builder
                .with_intra_threads(threads)
                .map_err(ort_error(&name, "thread count"))?;
        }
        let session = builder
            .commit_from_file(path)
            .map_err(ort_error(&name, "loading the model"))?;
        let (input_name, input_width, input_height) = image_input(&session, path)?;
        let output_name = drivable_output(&session, path)?;
        tracing::debug!(
            model = %name,
            input = %input_name,
            output = %output_name,
            input_width,
            input_height,
            "drivable-area model loaded"
        );
        Ok(Self {
            session,
            name,
            input_name,
            output_name,
            input_width,
            input_height,
        })
    }

    /// The model's name: its file stem (`twinlitenet_bdd100k_360x640`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The network's input size `(width, height)`.
    pub fn input_size(&self) -> (u32, u32) {
        (self.input_width, self.input_height)
    }

    /// The drivable mask of a frame, at the frame's size.
    pub fn predict(&mut self, rgb: &RgbImage) -> Result<DrivableMask, ModelError> {
        let (w, h) = (self.input_width, self.input_height);
        let resized;
        let input_image = if rgb.dimensions() == (w, h) {
            rgb
        } else {
            resized = image::imageops::resize(rgb, w, h, FilterType::Triangle);
            &resized
        };
        let (wu, hu) = (w as usize, h as usize);
        let mut input = Array4::<f32>::zeros((1, 3, hu, wu));
        for (x, y, pixel) in input_image.enumerate_pixels() {
            for (c, &value) in pixel.0.iter().enumerate() {
                input[[0, c, y as usize, x as usize]] = f32::from(value) / 255.0;
            }
        }
        let tensor =
            TensorRef::from_array_view(&input).map_err(ort_error(&self.name, "input tensor"))?;
        let outputs = self
            .session
            .run(ort::inputs![self.input_name.as_str() => tensor])
            .map_err(ort_error(&self.name, "inference"))?;
        let bad = |reason: String| ModelError::BadOutput {
            model: self.name.clone(),
            reason,
        };
        let value = outputs
            .get(&self.output_name)
            .ok_or_else(|| bad(format!("no output `{}`", self.output_name)))?;
        let logits = value
            .try_extract_array::<f32>()
            .map_err(|e| bad(format!("`{}` is not an f32 tensor: {e}", self.output_name)))?;
        if logits.shape() != [1, 2, hu, wu] {
            return Err(bad(format!(
                "`{}` has shape {:?}, expected [1, 2, {hu}, {wu}]",
                self.output_name,
                logits.shape()
            )));
        }
        let mask = DrivableMask::from_fn(w, h, |x, y| {
            let (x, y) = (x as usize, y as usize);
            logits[[0, 1, y, x]] > logits[[0, 0, y, x]]
        });
        let (frame_w, frame_h) = rgb.dimensions();
        Ok(mask.resized_nearest(frame_w, frame_h))
    }
}

impl DrivableSegmenter for DrivableAreaModel {
    fn name(&self) -> &str {
        &self.name
    }

    fn drivable(&mut self, rgb: &RgbImage) -> Result<DrivableMask, SegmenterError> {
        Ok(self.predict(rgb)?)
    }
}

/// Maps an `ort` error (of any recovery type) to [`ModelError::Ort`].
fn ort_error<R>(model: &str, context: &'static str) -> impl FnOnce(ort::Error<R>) -> ModelError {
    let model = model.to_string();
    move |e| ModelError::Ort {
        model,
        context,
        message: e.to_string(),
    }
}

/// The model's one image input: its name and static `[1, 3, H, W]` `f32` size.
fn image_input(session: &Session, path: &Path) -> Result<(String, u32, u32), ModelError> {
    let bad = |reason: String| ModelError::BadModel {
        path: PathBuf::from(path),
        reason,
    };
    let [input] = session.inputs() else {
        return Err(bad(format!(
            "expected one input, found {}",
            session.inputs().len()
        )));
    };
    let dtype = input.dtype();
    let shape = dtype.tensor_shape().map(|s| s.to_vec());
    match (dtype.tensor_type(), shape.as_deref()) {
        (Some(TensorElementType::Float32), Some(&[1, 3, h, w])) if h > 0 && w > 0 => {
            let dim =
                |d: i64| u32::try_from(d).map_err(|_| bad(format!("input size {d} too large")));
            Ok((input.name().to_string(), dim(w)?, dim(h)?))
        }
        _ => Err(bad(format!(
            "input `{}` is {dtype:?}; expected an f32 tensor [1, 3, H, W] of fixed size",
            input.name()
        ))),
    }
}

/// The drivable-area output's name: `da` (the 360x640 export), `drivable_area` (the 320x320
/// export), else the first output.
fn drivable_output(session: &Session, path: &Path) -> Result<String, ModelError> {
    let names: Vec<&str> = session
        .outputs()
        .iter()
        .map(ort::value::Outlet::name)
        .collect();
    names
        .iter()
        .find(|n| **n == "da" || n.contains("drivable"))
        .or_else(|| names.first())
        .map(|n| (*n).to_string())
        .ok_or_else(|| ModelError::BadModel {
            path: path.to_path_buf(),
            reason: "the model has no outputs".into(),
        })
}
