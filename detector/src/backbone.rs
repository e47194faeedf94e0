//! The frozen backbone: YOLOX-nano through ONNX Runtime, its anchor grid, and the letterbox that
//! feeds it (with the training augmentation: scale jitter, crop, flip).
//!
//! `roadsynth-models`' `CocoDetector` decodes the same model into COCO detections but keeps its
//! raw output private; the head needs every anchor's raw values, so this module opens its own
//! session on the process's runtime (`roadsynth_models::runtime`) and repeats the model's
//! letterbox exactly: resize by `min(416 / w, 416 / h)` to `floor(side * ratio)` (bilinear),
//! top left, pad 114, BGR, raw `0..=255`.

use std::path::Path;

use image::RgbImage;
use image::imageops::FilterType;
use ndarray::{Array2, Array4};
use ort::session::Session;
use roadsynth_models::ModelError;

/// Values per anchor in the model's output: `dx, dy, log w, log h, objectness`, 80 classes.
pub(crate) const RAW: usize = 85;
/// The output levels' strides, in output order.
pub(crate) const STRIDES: [u32; 3] = [8, 16, 32];
/// YOLOX's padding value.
const PAD: f32 = 114.0;

/// One output cell: its grid position and stride. YOLOX decodes a box centre as
/// `(d + grid) * stride` and samples targets around the cell centre `(grid + 0.5) * stride`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Anchor {
    pub gx: f32,
    pub gy: f32,
    pub stride: f32,
    pub level: usize,
}

impl Anchor {
    pub fn centre(&self) -> (f32, f32) {
        ((self.gx + 0.5) * self.stride, (self.gy + 0.5) * self.stride)
    }

    /// The backbone's own box for this cell (network pixels, `xyxy`) from its raw output row.
    pub fn decode(&self, raw: &[f32]) -> [f32; 4] {
        let cx = (raw[0] + self.gx) * self.stride;
        let cy = (raw[1] + self.gy) * self.stride;
        let w = raw[2].clamp(-10.0, 10.0).exp() * self.stride;
        let h = raw[3].clamp(-10.0, 10.0).exp() * self.stride;
        [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0]
    }
}

/// The anchors of a square `size x size` input, level by level, row by row (the output order).
pub(crate) fn anchors(size: u32) -> Vec<Anchor> {
    let mut out = Vec::new();
    for (level, &stride) in STRIDES.iter().enumerate() {
        let cells = size / stride;
        for gy in 0..cells {
            for gx in 0..cells {
                out.push(Anchor {
                    gx: gx as f32,
                    gy: gy as f32,
                    stride: stride as f32,
                    level,
                });
            }
        }
    }
    out
}

/// YOLOX-nano as a frozen feature extractor: one letterboxed frame in, `anchors x 85` raw values
/// out.
#[derive(Debug)]
pub(crate) struct Backbone {
    session: Session,
    name: String,
    input_name: String,
    output_name: String,
    size: u32,
    anchors: Vec<Anchor>,
}

impl Backbone {
    /// Opens the model; it must take a fixed square `f32 [1, 3, S, S]` (S a multiple of 32) and
    /// give `[1, anchors, 85]`.
    pub fn load(path: &Path, intra_threads: Option<usize>) -> Result<Self, ModelError> {
        let (session, name) = roadsynth_models::open_session(path, intra_threads)?;
        let bad = |reason: String| ModelError::BadModel {
            path: path.to_path_buf(),
            reason,
        };
        let [input] = session.inputs() else {
            return Err(bad("expected one input".into()));
        };
        let dims = input
            .dtype()
            .tensor_shape()
            .map(|s| s.to_vec())
            .unwrap_or_default();
        let size = match dims[..] {
            [1, 3, h, w] if h == w && h > 0 && h % 32 == 0 => h as u32,
            _ => {
                return Err(bad(format!(
                    "input `{}` has shape {dims:?}; expected a square [1, 3, S, S], S a multiple of 32",
                    input.name()
                )));
            }
        };
        let input_name = input.name().to_string();
        let output_name = session
            .outputs()
            .first()
            .map(|o| o.name().to_string())
            .ok_or_else(|| bad("the model has no outputs".into()))?;
        let anchors = anchors(size);
        Ok(Self {
            session,
            name,
            input_name,
            output_name,
            size,
            anchors,
        })
    }

    /// The square input side (416).
    pub fn size(&self) -> u32 {
        self.size
    }

    pub fn anchors(&self) -> &[Anchor] {
        &self.anchors
    }

    /// Runs one letterboxed input; the raw output, one row per anchor.
    pub fn run(&mut self, input: &Array4<f32>) -> Result<Array2<f32>, ModelError> {
        let anchors = self.anchors.len();
        let array = roadsynth_models::run_f32(
            &mut self.session,
            &self.name,
            &self.input_name,
            input,
            &self.output_name,
            &[1, anchors, RAW],
        )?;
        array
            .into_shape_with_order((anchors, RAW))
            .map_err(|e| ModelError::BadOutput {
                model: self.name.clone(),
                reason: e.to_string(),
            })
    }
}

/// Where a frame landed in the network input: per-axis scale from image to network pixels, the
/// flip, and the crop window's offset in the resized image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Placement {
    pub scale_x: f64,
    pub scale_y: f64,
    pub resized_width: u32,
    pub flip: bool,
    pub crop_x: u32,
    pub crop_y: u32,
    /// Visible part of the resized image in network pixels: `[0, visible_w] x [0, visible_h]`.
    pub visible_w: u32,
    pub visible_h: u32,
}

impl Placement {
    /// An image box (`xyxy` image pixels) in network pixels, clipped to the visible window, with
    /// the fraction of its area left visible (0 for a box entirely cut away).
    pub fn map_box(&self, b: [f64; 4]) -> ([f32; 4], f64) {
        let mut x0 = b[0] * self.scale_x;
        let mut x1 = b[2] * self.scale_x;
        if self.flip {
            let w = f64::from(self.resized_width);
            (x0, x1) = (w - x1, w - x0);
        }
        let (cx, cy) = (f64::from(self.crop_x), f64::from(self.crop_y));
        let raw = [
            x0 - cx,
            b[1] * self.scale_y - cy,
            x1 - cx,
            b[3] * self.scale_y - cy,
        ];
        let (vw, vh) = (f64::from(self.visible_w), f64::from(self.visible_h));
        let clipped = [
            raw[0].clamp(0.0, vw),
            raw[1].clamp(0.0, vh),
            raw[2].clamp(0.0, vw),
            raw[3].clamp(0.0, vh),
        ];
        let area = |r: [f64; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
        let full = area(raw);
        let visible = if full > 0.0 {
            area(clipped) / full
        } else {
            0.0
        };
        (clipped.map(|v| v as f32), visible)
    }

    /// A network box back in image pixels (inference only: no flip, no crop), clipped to the
    /// image.
    pub fn unmap_box(&self, b: [f32; 4], width: u32, height: u32) -> [f64; 4] {
        let (w, h) = (f64::from(width), f64::from(height));
        [
            (f64::from(b[0]) / self.scale_x).clamp(0.0, w),
            (f64::from(b[1]) / self.scale_y).clamp(0.0, h),
            (f64::from(b[2]) / self.scale_x).clamp(0.0, w),
            (f64::from(b[3]) / self.scale_y).clamp(0.0, h),
        ]
    }
}

/// The network input of an image: resized by `jitter` times the letterbox ratio, flipped when
/// asked, and, where the resized image is larger than the input, cut at `crop` (fractions of the
/// slack on each axis, `0..=1`). `jitter = 1`, no flip: exactly YOLOX's letterbox.
pub(crate) fn letterbox(
    rgb: &RgbImage,
    size: u32,
    jitter: f64,
    flip: bool,
    crop: (f64, f64),
) -> (Array4<f32>, Placement) {
    let (width, height) = rgb.dimensions();
    let ratio =
        (f64::from(size) / f64::from(width)).min(f64::from(size) / f64::from(height)) * jitter;
    let resized_width = ((f64::from(width) * ratio) as u32).max(1);
    let resized_height = ((f64::from(height) * ratio) as u32).max(1);
    let resized;
    let image = if (resized_width, resized_height) == (width, height) {
        rgb
    } else {
        resized = image::imageops::resize(rgb, resized_width, resized_height, FilterType::Triangle);
        &resized
    };
    let slack = |side: u32, fraction: f64| {
        let slack = side.saturating_sub(size);
        ((f64::from(slack) * fraction.clamp(0.0, 1.0)).round() as u32).min(slack)
    };
    let (crop_x, crop_y) = (slack(resized_width, crop.0), slack(resized_height, crop.1));
    let visible_w = resized_width.min(size);
    let visible_h = resized_height.min(size);
    let side = size as usize;
    let mut input = Array4::<f32>::from_elem((1, 3, side, side), PAD);
    let raw = image.as_raw();
    let row_len = resized_width as usize * 3;
    {
        let plane = input
            .as_slice_mut()
            .expect("a freshly made array is contiguous");
        let (blue, rest) = plane.split_at_mut(side * side);
        let (green, red) = rest.split_at_mut(side * side);
        for y in 0..visible_h as usize {
            let row = &raw[(y + crop_y as usize) * row_len..][..row_len];
            for x in 0..visible_w as usize {
                let source_x = if flip {
                    resized_width as usize - 1 - (x + crop_x as usize)
                } else {
                    x + crop_x as usize
                };
                let pixel = &row[source_x * 3..source_x * 3 + 3];
                let at = y * side + x;
                // BGR: the model was trained on OpenCV's channel order.
                blue[at] = f32::from(pixel[2]);
                green[at] = f32::from(pixel[1]);
                red[at] = f32::from(pixel[0]);
            }
        }
    }
    let placement = Placement {
        scale_x: f64::from(resized_width) / f64::from(width),
        scale_y: f64::from(resized_height) / f64::from(height),
        resized_width,
        flip,
        crop_x,
        crop_y,
        visible_w,
        visible_h,
    };
    (input, placement)
}

/// Decodes a stored image (JPEG or PNG) to RGB.
pub(crate) fn decode_image(
    bytes: &[u8],
    format: roadsynth_types::ImageFormat,
) -> Result<RgbImage, String> {
    let format = match format {
        roadsynth_types::ImageFormat::Jpeg => image::ImageFormat::Jpeg,
        roadsynth_types::ImageFormat::Png => image::ImageFormat::Png,
    };
    image::load_from_memory_with_format(bytes, format)
        .map(image::DynamicImage::into_rgb8)
        .map_err(|e| e.to_string())
}

/// Pixel at `(x, y)` of an input tensor as RGB (tests).
#[cfg(test)]
fn rgb_at(input: &Array4<f32>, x: usize, y: usize) -> [f32; 3] {
    [
        input[[0, 2, y, x]],
        input[[0, 1, y, x]],
        input[[0, 0, y, x]],
    ]
}

#[cfg(test)]
#[allow(
    clippy::float_cmp,
    reason = "pixel values are small integers, exact in f32"
)]
mod tests {
    use super::*;
    use image::Rgb;

    #[test]
    fn anchors_follow_the_output_order() {
        let a = anchors(416);
        assert_eq!(a.len(), 52 * 52 + 26 * 26 + 13 * 13);
        assert_eq!(
            a[53],
            Anchor {
                gx: 1.0,
                gy: 1.0,
                stride: 8.0,
                level: 0
            }
        );
        assert_eq!(a[2704].stride, 16.0);
        assert_eq!(
            a[3548],
            Anchor {
                gx: 12.0,
                gy: 12.0,
                stride: 32.0,
                level: 2
            }
        );
    }

    #[test]
    fn plain_letterbox_matches_yolox() {
        // 480x360 (CamVid) into 416: ratio 416/480, resized to 416x312, padding below.
        let mut rgb = RgbImage::from_pixel(480, 360, Rgb([10, 20, 30]));
        rgb.put_pixel(0, 0, Rgb([200, 100, 50]));
        let (input, p) = letterbox(&rgb, 416, 1.0, false, (0.5, 0.5));
        assert_eq!(
            (p.visible_w, p.visible_h, p.crop_x, p.crop_y),
            (416, 312, 0, 0)
        );
        assert_eq!(rgb_at(&input, 200, 311), [10.0, 20.0, 30.0]);
        assert_eq!(rgb_at(&input, 200, 312), [PAD; 3]);
        let (b, _) = p.map_box([48.0, 36.0, 96.0, 72.0]);
        assert!(
            (b[0] - 41.6).abs() < 1e-4 && (b[3] - 62.4).abs() < 1e-4,
            "{b:?}"
        );
        let back = p.unmap_box(b, 480, 360);
        assert!((back[0] - 48.0).abs() < 1e-4 && (back[3] - 72.0).abs() < 1e-4);
    }

    #[test]
    fn flip_and_crop_move_pixels_and_boxes_together() {
        // A white 20x10 block at x 100..120, y 50..60 of a 200x100 image; jitter 2 gives
        // 832x416, so the crop has 416 columns of slack and none vertically.
        let mut rgb = RgbImage::from_pixel(200, 100, Rgb([0, 0, 0]));
        for y in 50..60 {
            for x in 100..120 {
                rgb.put_pixel(x, y, Rgb([255, 255, 255]));
            }
        }
        let (input, p) = letterbox(&rgb, 416, 2.0, true, (0.25, 0.0));
        assert_eq!(
            (p.resized_width, p.crop_x, p.visible_w, p.visible_h),
            (832, 104, 416, 416)
        );
        let (b, visible) = p.map_box([100.0, 50.0, 120.0, 60.0]);
        // Resized x 416..499.2, flipped 332.8..416, minus the crop 104.
        let expected = [228.8, 208.0, 312.0, 249.6];
        for (got, want) in b.iter().zip(expected) {
            assert!((got - want).abs() < 1e-3, "{b:?}");
        }
        assert!((visible - 1.0).abs() < 1e-9);
        // Inside the box the pixels are white, outside black.
        assert_eq!(rgb_at(&input, 270, 228), [255.0; 3]);
        assert_eq!(rgb_at(&input, 220, 228), [0.0; 3]);
        // A box half outside the window keeps half its area visible.
        // Flipped, x 62.5..87.5 spans 468..572 of the resized image; the window ends at 520.
        let (_, half) = p.map_box([62.5, 0.0, 87.5, 10.0]);
        assert!((half - 0.5).abs() < 1e-9, "{half}");
    }
}
