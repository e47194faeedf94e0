//! `DeepLabv3` (`MobileNetV2`, PASCAL VOC): per-pixel masks of vehicles and animals inside a box,
//! for cutting objects out of real photos.

use std::path::Path;

use image::imageops::FilterType;
use image::{GrayImage, Luma, Rgb, RgbImage};
use ndarray::{Array2, Array4, ArrayView3, Axis};
use ort::session::Session;

use crate::ModelError;
use crate::session::{self, pixels};

/// The 21 PASCAL VOC 2012 classes, indexed by the model's class id.
pub const VOC_CLASSES: [&str; 21] = [
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
];

pub const VOC_BACKGROUND: u32 = 0;
pub const VOC_BICYCLE: u32 = 2;
pub const VOC_BIRD: u32 = 3;
pub const VOC_BUS: u32 = 6;
pub const VOC_CAR: u32 = 7;
pub const VOC_CAT: u32 = 8;
pub const VOC_COW: u32 = 10;
pub const VOC_DOG: u32 = 12;
pub const VOC_HORSE: u32 = 13;
pub const VOC_MOTORBIKE: u32 = 14;
pub const VOC_PERSON: u32 = 15;
pub const VOC_SHEEP: u32 = 17;

/// The road vehicles among the VOC classes: bus, car, motorbike.
pub const VOC_VEHICLES: [u32; 3] = [VOC_BUS, VOC_CAR, VOC_MOTORBIKE];
/// The animals among the VOC classes: bird, cat, cow, dog, horse, sheep.
pub const VOC_ANIMALS: [u32; 6] = [VOC_BIRD, VOC_CAT, VOC_COW, VOC_DOG, VOC_HORSE, VOC_SHEEP];

/// A semantic segmentation model for cutting vehicles and animals out of photos: `DeepLabv3`
/// with a `MobileNetV2` backbone, trained on PASCAL VOC 2012
/// (`../shared/models/deeplabv3-mobilenetv2-voc/SOURCE.txt`).
///
/// It runs on a crop (an object's box with some context): a whole road frame at 257x257 leaves
/// a distant object a few pixels wide. Input: `f32` `[1, H, W, 3]` (NHWC, 257x257), RGB,
/// `x / 127.5 - 1`, the crop resized to `W x H` (bilinear, no letterbox). Output: logits
/// `[1, H, W, 21]`. Back at the crop's size each pixel takes the class with the largest logit
/// after bilinear interpolation of the logits, which gives smooth edges when a crop is larger
/// than 257 pixels (nearest-neighbour labels would be blocky). Where the four network pixels
/// around a crop pixel agree on the class the interpolated argmax is that class, so only pixels
/// at class borders are interpolated.
#[derive(Debug)]
pub struct VehicleSegmenter {
    session: Session,
    name: String,
    input_name: String,
    output_name: String,
    input_width: u32,
    input_height: u32,
}

impl VehicleSegmenter {
    /// The recommended model, relative to the shared data root.
    pub const SHARED_PATH: &'static str =
        "models/deeplabv3-mobilenetv2-voc/deeplabv3_mnv2_pascalvoc_257.onnx";

    /// Loads a model with ONNX Runtime's default thread count.
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        Self::load_with_threads(path, None)
    }

    /// Loads a model, with `intra_threads` threads per operator when given. The input must be a
    /// fixed `[1, H, W, 3]` and the output `[1, H, W, 21]`.
    pub fn load_with_threads(
        path: &Path,
        intra_threads: Option<usize>,
    ) -> Result<Self, ModelError> {
        let (session, name) = session::open(path, intra_threads)?;
        let (input_name, (input_width, input_height)) = session::f32_input(
            &session,
            path,
            "an f32 tensor [1, H, W, 3] of fixed size",
            |dims| match *dims {
                [1, h, w, 3] => Some((pixels(w)?, pixels(h)?)),
                _ => None,
            },
        )?;
        let output_name = session::f32_output(
            &session,
            path,
            &[
                1,
                input_height as usize,
                input_width as usize,
                VOC_CLASSES.len(),
            ],
        )?;
        tracing::debug!(
            model = %name,
            input = %input_name,
            output = %output_name,
            input_width,
            input_height,
            "VOC segmentation model loaded"
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

    /// The model's name: its file stem (`deeplabv3_mnv2_pascalvoc_257`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The network's input size `(width, height)`.
    pub fn input_size(&self) -> (u32, u32) {
        (self.input_width, self.input_height)
    }

    /// The class names, indexed by class id.
    pub fn class_names(&self) -> &'static [&'static str] {
        &VOC_CLASSES
    }

    /// The VOC class of every pixel of a crop of `rgb`: an image of the crop's size whose pixel
    /// values are class ids (0 background, [`VOC_CAR`], ...). `crop` is `[x0, y0, x1, y1]` in
    /// pixels, `x1` and `y1` exclusive, inside the image.
    pub fn segment_labels(
        &mut self,
        rgb: &RgbImage,
        crop: [u32; 4],
    ) -> Result<GrayImage, ModelError> {
        let [x0, y0, x1, y1] = crop;
        let (width, height) = rgb.dimensions();
        if x0 >= x1 || y0 >= y1 || x1 > width || y1 > height {
            return Err(self.bad_input(format!(
                "crop {crop:?} is not a non-empty box inside the {width}x{height} image"
            )));
        }
        let view = image::imageops::crop_imm(rgb, x0, y0, x1 - x0, y1 - y0);
        let resized = image::imageops::resize(
            &*view,
            self.input_width,
            self.input_height,
            FilterType::Triangle,
        );
        let (w, h) = (self.input_width as usize, self.input_height as usize);
        let mut input = Array4::<f32>::zeros((1, h, w, 3));
        for (x, y, &Rgb(channels)) in resized.enumerate_pixels() {
            for (c, value) in channels.into_iter().enumerate() {
                input[[0, y as usize, x as usize, c]] = f32::from(value) / 127.5 - 1.0;
            }
        }
        let logits = session::run_f32(
            &mut self.session,
            &self.name,
            &self.input_name,
            &input,
            &self.output_name,
            &[1, h, w, VOC_CLASSES.len()],
        )?;
        let logits = logits
            .index_axis(Axis(0), 0)
            .into_dimensionality()
            .map_err(|e| ModelError::BadOutput {
                model: self.name.clone(),
                reason: e.to_string(),
            })?;
        Ok(labels_at(&logits, x1 - x0, y1 - y0))
    }

    /// A mask of a crop of `rgb`: 255 where the pixel's VOC class is one of `classes`
    /// ([`VOC_VEHICLES`], `&[VOC_CAR]`, ...), 0 elsewhere, at the crop's size.
    pub fn segment_classes(
        &mut self,
        rgb: &RgbImage,
        crop: [u32; 4],
        classes: &[u32],
    ) -> Result<GrayImage, ModelError> {
        if let Some(class) = classes.iter().find(|&&c| c as usize >= VOC_CLASSES.len()) {
            return Err(self.bad_input(format!(
                "class {class} is not a VOC class (0 to {})",
                VOC_CLASSES.len() - 1
            )));
        }
        let mut labels = self.segment_labels(rgb, crop)?;
        for Luma([value]) in labels.pixels_mut() {
            *value = if classes.contains(&u32::from(*value)) {
                255
            } else {
                0
            };
        }
        Ok(labels)
    }

    fn bad_input(&self, reason: String) -> ModelError {
        ModelError::BadInput {
            model: self.name.clone(),
            reason,
        }
    }
}

/// Where output pixel `i` of `out` pixels samples an axis of `n` network pixels (pixel centres
/// aligned, as image resizers do): the two neighbours and the weight of the second.
fn sample_axis(out: u32, n: usize) -> Vec<(usize, usize, f32)> {
    let last = n.saturating_sub(1);
    (0..out)
        .map(|i| {
            let src =
                ((f64::from(i) + 0.5) * n as f64 / f64::from(out) - 0.5).clamp(0.0, last as f64);
            let low = src.floor() as usize;
            (low, (low + 1).min(last), (src - low as f64) as f32)
        })
        .collect()
}

/// The index of the largest value (the first of equal ones).
fn argmax(values: impl Iterator<Item = f32>) -> u8 {
    values
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, v)| {
            if v > best.1 { (i, v) } else { best }
        })
        .0 as u8
}

/// Per-pixel classes at `out_width x out_height` from logits `[H, W, classes]`, by argmax of
/// the bilinearly interpolated logits.
fn labels_at(logits: &ArrayView3<'_, f32>, out_width: u32, out_height: u32) -> GrayImage {
    let (h, w, classes) = logits.dim();
    let coarse = Array2::from_shape_fn((h, w), |(y, x)| {
        argmax((0..classes).map(|k| logits[[y, x, k]]))
    });
    let columns = sample_axis(out_width, w);
    let rows = sample_axis(out_height, h);
    GrayImage::from_fn(out_width, out_height, |x, y| {
        let (x0, x1, fx) = columns[x as usize];
        let (y0, y1, fy) = rows[y as usize];
        let label = coarse[[y0, x0]];
        if coarse[[y0, x1]] == label && coarse[[y1, x0]] == label && coarse[[y1, x1]] == label {
            return Luma([label]);
        }
        let blended = (0..classes).map(|k| {
            let top = logits[[y0, x0, k]] * (1.0 - fx) + logits[[y0, x1, k]] * fx;
            let bottom = logits[[y1, x0, k]] * (1.0 - fx) + logits[[y1, x1, k]] * fx;
            top * (1.0 - fy) + bottom * fy
        });
        Luma([argmax(blended)])
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    #[test]
    fn class_constants_name_the_voc_classes() {
        let names =
            |ids: &[u32]| -> Vec<&str> { ids.iter().map(|&i| VOC_CLASSES[i as usize]).collect() };
        assert_eq!(names(&VOC_VEHICLES), ["bus", "car", "motorbike"]);
        assert_eq!(
            names(&VOC_ANIMALS),
            ["bird", "cat", "cow", "dog", "horse", "sheep"]
        );
        assert_eq!(names(&[VOC_BICYCLE, VOC_PERSON]), ["bicycle", "person"]);
    }

    #[test]
    fn labels_interpolate_logits_at_borders_only() {
        // Two network pixels: class 1 on the left, class 2 on the right, scaled to 4 pixels.
        let mut logits = Array3::<f32>::zeros((1, 2, 3));
        logits[[0, 0, 1]] = 4.0;
        logits[[0, 1, 2]] = 2.0;
        let labels = labels_at(&logits.view(), 4, 1);
        // Output x = 0..4 samples network x = 0, 0.25, 0.75, 1: at 0.75 the blend is
        // class 1 at 1.0, class 2 at 1.5.
        let row: Vec<u8> = labels.pixels().map(|p| p.0[0]).collect();
        assert_eq!(row, [1, 1, 2, 2]);
        // The same logits at network size are their argmax.
        let same: Vec<u8> = labels_at(&logits.view(), 2, 1)
            .pixels()
            .map(|p| p.0[0])
            .collect();
        assert_eq!(same, [1, 2]);
    }
}
