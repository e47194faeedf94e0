//! `TwinLiteNet`'s drivable-area head as a [`DrivableSegmenter`].

use std::path::Path;

use image::RgbImage;
use image::imageops::FilterType;
use ndarray::Array4;
use ort::session::Session;
use roadsynth_geometry::{DrivableMask, DrivableSegmenter, SegmenterError};

use crate::ModelError;
use crate::session;

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
        let (session, name) = session::open(path, intra_threads)?;
        let (input_name, (input_width, input_height)) = session::f32_input(
            &session,
            path,
            "an f32 tensor [1, 3, H, W] of fixed size",
            |dims| match *dims {
                [1, 3, h, w] => Some((session::pixels(w)?, session::pixels(h)?)),
                _ => None,
            },
        )?;
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
        let logits = session::run_f32(
            &mut self.session,
            &self.name,
            &self.input_name,
            &input,
            &self.output_name,
            &[1, 2, hu, wu],
        )?;
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
