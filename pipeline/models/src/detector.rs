//! `YOLOX`-nano, a COCO-80 object detector: what a frame shows, and whether an inserted object
//! reads as the class it should (the quality filter's check).

use std::collections::BTreeMap;
use std::path::Path;

use image::imageops::FilterType;
use image::{Rgb, RgbImage};
use ndarray::{Array4, ArrayView2, Axis};
use ort::session::Session;

use crate::ModelError;
use crate::session::{self, pixels};

/// The COCO-80 class names, in the order of the model's class scores (zero-based ids), spelt as
/// COCO's own `instances_*.json` spell them so that detections match COCO-format labels by name.
/// (`../shared/models/yolox-nano/coco80_classes.txt` has the same order with VOC spellings:
/// `motorbike`, `aeroplane`, `sofa`, `pottedplant`, `diningtable`, `tvmonitor`.)
pub const COCO_CLASSES: [&str; 80] = [
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic light",
    "fire hydrant",
    "stop sign",
    "parking meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports ball",
    "kite",
    "baseball bat",
    "baseball glove",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted plant",
    "bed",
    "dining table",
    "toilet",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "hair drier",
    "toothbrush",
];

/// COCO-80 ids of the animals, `bird` (14) to `giraffe` (23): the classes the pipeline inserts
/// as animals.
pub const COCO_ANIMALS: std::ops::RangeInclusive<u32> = 14..=23;

/// COCO-80 ids of the road vehicles the pipeline inserts and checks: `car` (2), `motorcycle` (3),
/// `bus` (5), `truck` (7). `bicycle` is left out: COCO boxes a bicycle without its rider, so it
/// is not a vehicle's box in the sense the placement priors use; `train` and the others are
/// not road traffic.
pub const COCO_VEHICLES: [u32; 4] = [2, 3, 5, 7];

/// Is a COCO-80 id an animal (`bird` to `giraffe`)?
pub fn is_coco_animal(class_id: u32) -> bool {
    COCO_ANIMALS.contains(&class_id)
}

/// Is a COCO-80 id one of [`COCO_VEHICLES`]?
pub fn is_coco_vehicle(class_id: u32) -> bool {
    COCO_VEHICLES.contains(&class_id)
}

/// Intersection over union of two `xyxy` boxes (0 when either is empty).
pub fn box_iou(a: [f64; 4], b: [f64; 4]) -> f64 {
    let area = |r: [f64; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let inter = area([
        a[0].max(b[0]),
        a[1].max(b[1]),
        a[2].min(b[2]),
        a[3].min(b[3]),
    ]);
    let union = area(a) + area(b) - inter;
    if union > 0.0 { inter / union } else { 0.0 }
}

/// One detected object.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    /// Zero-based COCO-80 id (an index into [`COCO_CLASSES`]).
    pub class_id: u32,
    pub class_name: &'static str,
    /// Objectness times class probability, `0..=1`.
    pub score: f32,
    /// Pixel box in the image passed in, `xyxy`, continuous coordinates (the `BBox` convention),
    /// clipped to the image.
    pub bbox: [f64; 4],
}

impl Detection {
    pub fn is_animal(&self) -> bool {
        is_coco_animal(self.class_id)
    }

    pub fn is_vehicle(&self) -> bool {
        is_coco_vehicle(self.class_id)
    }
}

/// Thresholds of [`CocoDetector`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectOptions {
    /// Keep cells whose `objectness * class probability` reaches this. 0.3 is where the model's
    /// `SOURCE.txt` found every detection sensible on 60 COCO photos.
    pub score_threshold: f32,
    /// Non-maximum suppression drops a box overlapping a better one of the same class by more
    /// than this intersection over union (`YOLOX`'s demo uses 0.45).
    pub nms_iou: f64,
    /// [`CocoDetector::detect_region`] widens the region by this fraction of its width and
    /// height on each side, so the detector sees the object with its surroundings (as in the
    /// photos it was trained on) rather than a crop filled edge to edge.
    pub region_context: f64,
}

impl Default for DetectOptions {
    fn default() -> Self {
        Self {
            score_threshold: 0.3,
            nms_iou: 0.45,
            region_context: 0.5,
        }
    }
}

/// The strides of `YOLOX`'s three output levels; the output lists the cells of each level in
/// turn, row by row.
const STRIDES: [u32; 3] = [8, 16, 32];
/// Values per output cell before the class scores: `dx, dy, log w, log h, objectness`.
const BOX_FIELDS: usize = 5;
/// `YOLOX`'s letterbox padding value.
const PAD: f32 = 114.0;

/// A COCO-80 object detector: `YOLOX`-nano (`../shared/models/yolox-nano/SOURCE.txt`).
///
/// Input: `f32` `[1, 3, H, W]` (416x416 for the shared model), BGR, raw `0..=255` values without
/// mean or scale; the image is letterboxed: resized (bilinear) by one ratio to fit, placed at
/// the top left, the rest filled with 114. Output: `[1, cells, 5 + 80]`, the cells of strides
/// 8, 16 and 32 in turn; a cell's box is `centre = (d + grid) * stride`,
/// `size = exp(log size) * stride`; objectness and class scores are already probabilities.
/// Each cell keeps its best class, as `YOLOX`'s own evaluation does, when
/// `objectness * class probability` reaches the threshold; non-maximum suppression then runs
/// per class. Boxes are mapped back by the exact resize ratio of each axis.
#[derive(Debug)]
pub struct CocoDetector {
    session: Session,
    name: String,
    input_name: String,
    output_name: String,
    input_width: u32,
    input_height: u32,
    options: DetectOptions,
}

impl CocoDetector {
    /// The recommended model, relative to the shared data root.
    pub const SHARED_PATH: &'static str = "models/yolox-nano/yolox_nano.onnx";

    /// Loads a model with ONNX Runtime's default thread count.
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        Self::load_with_threads(path, None)
    }

    /// Loads a model, with `intra_threads` threads per operator when given. The input must be a
    /// fixed `[1, 3, H, W]` with sides a multiple of 32 (the coarsest stride) and the output
    /// `[1, cells, 85]`.
    pub fn load_with_threads(
        path: &Path,
        intra_threads: Option<usize>,
    ) -> Result<Self, ModelError> {
        let (session, name) = session::open(path, intra_threads)?;
        let (input_name, (input_width, input_height)) = session::f32_input(
            &session,
            path,
            "an f32 tensor [1, 3, H, W] of fixed size, H and W multiples of 32",
            |dims| match *dims {
                [1, 3, h, w] if h % 32 == 0 && w % 32 == 0 => Some((pixels(w)?, pixels(h)?)),
                _ => None,
            },
        )?;
        let expected = [
            1,
            cell_count(input_width, input_height),
            BOX_FIELDS + COCO_CLASSES.len(),
        ];
        let output_name = session::f32_output(&session, path, &expected)?;
        tracing::debug!(
            model = %name,
            input = %input_name,
            output = %output_name,
            input_width,
            input_height,
            "COCO detector loaded"
        );
        Ok(Self {
            session,
            name,
            input_name,
            output_name,
            input_width,
            input_height,
            options: DetectOptions::default(),
        })
    }

    /// The same detector with other thresholds.
    #[must_use]
    pub fn with_options(mut self, options: DetectOptions) -> Self {
        self.options = options;
        self
    }

    pub fn options(&self) -> DetectOptions {
        self.options
    }

    pub fn set_options(&mut self, options: DetectOptions) {
        self.options = options;
    }

    /// The model's name: its file stem (`yolox_nano`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The network's input size `(width, height)`.
    pub fn input_size(&self) -> (u32, u32) {
        (self.input_width, self.input_height)
    }

    /// The class names, indexed by [`Detection::class_id`].
    pub fn class_names(&self) -> &'static [&'static str] {
        &COCO_CLASSES
    }

    /// The objects in an image, best score first, boxes in the image's pixels.
    pub fn detect(&mut self, rgb: &RgbImage) -> Result<Vec<Detection>, ModelError> {
        let (width, height) = rgb.dimensions();
        if width == 0 || height == 0 {
            return Err(self.bad_input(format!("the image is empty ({width}x{height})")));
        }
        let (input, scale) = letterbox(rgb, self.input_width, self.input_height);
        let output = session::run_f32(
            &mut self.session,
            &self.name,
            &self.input_name,
            &input,
            &self.output_name,
            &[
                1,
                cell_count(self.input_width, self.input_height),
                BOX_FIELDS + COCO_CLASSES.len(),
            ],
        )?;
        let cells = output
            .index_axis(Axis(0), 0)
            .into_dimensionality()
            .map_err(|e| ModelError::BadOutput {
                model: self.name.clone(),
                reason: e.to_string(),
            })?;
        let candidates = decode(
            &cells,
            self.input_width,
            self.input_height,
            self.options.score_threshold,
            |[x0, y0, x1, y1]| {
                [
                    (x0 / scale.0).clamp(0.0, f64::from(width)),
                    (y0 / scale.1).clamp(0.0, f64::from(height)),
                    (x1 / scale.0).clamp(0.0, f64::from(width)),
                    (y1 / scale.1).clamp(0.0, f64::from(height)),
                ]
            },
        );
        Ok(nms_per_class(candidates, self.options.nms_iou))
    }

    /// The objects around one region of an image (an inserted object's box, `xyxy`): the region
    /// widened by [`DetectOptions::region_context`] on each side and clipped to the image is cut
    /// out and detected alone, so a small object is seen at the network's full resolution.
    /// Boxes come back in the whole image's pixels; detections elsewhere in the widened crop are
    /// included, so the caller matches them against the region (by [`box_iou`]).
    pub fn detect_region(
        &mut self,
        rgb: &RgbImage,
        region: [f64; 4],
    ) -> Result<Vec<Detection>, ModelError> {
        let (width, height) = rgb.dimensions();
        let [x0, y0, x1, y1] = region;
        if !region.iter().all(|v| v.is_finite()) || x0 >= x1 || y0 >= y1 {
            return Err(self.bad_input(format!("region {region:?} is not a box")));
        }
        let (mx, my) = (
            (x1 - x0) * self.options.region_context.max(0.0),
            (y1 - y0) * self.options.region_context.max(0.0),
        );
        let (image_w, image_h) = (f64::from(width), f64::from(height));
        let crop = [
            (x0 - mx).floor().clamp(0.0, image_w),
            (y0 - my).floor().clamp(0.0, image_h),
            (x1 + mx).ceil().clamp(0.0, image_w),
            (y1 + my).ceil().clamp(0.0, image_h),
        ];
        if crop[0] >= crop[2] || crop[1] >= crop[3] {
            return Err(self.bad_input(format!(
                "region {region:?} lies outside the {width}x{height} image"
            )));
        }
        let [cx0, cy0, cx1, cy1] = crop.map(|v| v as u32);
        let view = image::imageops::crop_imm(rgb, cx0, cy0, cx1 - cx0, cy1 - cy0).to_image();
        let mut detections = self.detect(&view)?;
        let (dx, dy) = (f64::from(cx0), f64::from(cy0));
        for detection in &mut detections {
            let [left, top, right, bottom] = detection.bbox;
            detection.bbox = [left + dx, top + dy, right + dx, bottom + dy];
        }
        Ok(detections)
    }

    fn bad_input(&self, reason: String) -> ModelError {
        ModelError::BadInput {
            model: self.name.clone(),
            reason,
        }
    }
}

/// The number of output cells for an input size: one per stride step at each level.
fn cell_count(width: u32, height: u32) -> usize {
    STRIDES
        .iter()
        .map(|s| (width / s) as usize * (height / s) as usize)
        .sum()
}

/// The letterboxed network input of an image and the scale `(x, y)` from image to network
/// pixels. The resized image is `floor(side * ratio)` pixels wide and high, as `YOLOX`'s
/// pre-processing makes it; the scale of each axis is that size over the image's, so boxes map
/// back exactly even where flooring changed the ratio a little.
fn letterbox(rgb: &RgbImage, net_width: u32, net_height: u32) -> (Array4<f32>, (f64, f64)) {
    let (width, height) = rgb.dimensions();
    let ratio =
        (f64::from(net_width) / f64::from(width)).min(f64::from(net_height) / f64::from(height));
    let resized_width = ((f64::from(width) * ratio) as u32).clamp(1, net_width);
    let resized_height = ((f64::from(height) * ratio) as u32).clamp(1, net_height);
    let resized;
    let image = if (resized_width, resized_height) == (width, height) {
        rgb
    } else {
        resized = image::imageops::resize(rgb, resized_width, resized_height, FilterType::Triangle);
        &resized
    };
    let mut input = Array4::<f32>::from_elem((1, 3, net_height as usize, net_width as usize), PAD);
    for (x, y, &Rgb([r, g, b])) in image.enumerate_pixels() {
        let (x, y) = (x as usize, y as usize);
        // BGR: the model was trained on OpenCV's channel order.
        input[[0, 0, y, x]] = f32::from(b);
        input[[0, 1, y, x]] = f32::from(g);
        input[[0, 2, y, x]] = f32::from(r);
    }
    let scale = (
        f64::from(resized_width) / f64::from(width),
        f64::from(resized_height) / f64::from(height),
    );
    (input, scale)
}

/// The cells whose best class scores at least `threshold`, as detections with their box
/// decoded in network pixels and mapped by `to_image`. Boxes empty after mapping (a cell in the
/// padding) are dropped.
fn decode(
    cells: &ArrayView2<'_, f32>,
    net_width: u32,
    net_height: u32,
    threshold: f32,
    to_image: impl Fn([f64; 4]) -> [f64; 4],
) -> Vec<Detection> {
    let grid = STRIDES.iter().flat_map(|&stride| {
        let (columns, rows) = (net_width / stride, net_height / stride);
        (0..rows).flat_map(move |gy| (0..columns).map(move |gx| (gx, gy, stride)))
    });
    let mut detections = Vec::new();
    for (cell, (gx, gy, stride)) in cells.outer_iter().zip(grid) {
        let objectness = cell[4];
        if objectness < threshold {
            continue;
        }
        let Some((class_id, class_score)) = cell
            .iter()
            .skip(BOX_FIELDS)
            .copied()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(&b.1))
        else {
            continue;
        };
        let score = objectness * class_score;
        if score < threshold {
            continue;
        }
        let s = f64::from(stride);
        let cx = (f64::from(cell[0]) + f64::from(gx)) * s;
        let cy = (f64::from(cell[1]) + f64::from(gy)) * s;
        let w = f64::from(cell[2]).exp() * s;
        let h = f64::from(cell[3]).exp() * s;
        let bbox = to_image([cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0]);
        if bbox[0] < bbox[2] && bbox[1] < bbox[3] {
            detections.push(Detection {
                class_id: class_id as u32,
                class_name: COCO_CLASSES[class_id],
                score,
                bbox,
            });
        }
    }
    detections
}

/// Greedy non-maximum suppression within each class (`powerboxesrs`), then all survivors best
/// score first (ties broken by class and box, so the order is reproducible).
fn nms_per_class(candidates: Vec<Detection>, iou_threshold: f64) -> Vec<Detection> {
    let mut by_class: BTreeMap<u32, Vec<Detection>> = BTreeMap::new();
    for detection in candidates {
        by_class
            .entry(detection.class_id)
            .or_default()
            .push(detection);
    }
    let mut kept = Vec::new();
    for class in by_class.into_values() {
        let boxes: Vec<f64> = class.iter().flat_map(|d| d.bbox).collect();
        let scores: Vec<f64> = class.iter().map(|d| f64::from(d.score)).collect();
        kept.extend(
            powerboxesrs::nms::nms_slice(&boxes, &scores, iou_threshold, 0.0)
                .into_iter()
                .map(|i| class[i]),
        );
    }
    kept.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(a.class_id.cmp(&b.class_id))
            .then_with(|| {
                a.bbox
                    .iter()
                    .zip(&b.bbox)
                    .map(|(p, q)| p.total_cmp(q))
                    .find(|o| o.is_ne())
                    .unwrap_or(std::cmp::Ordering::Equal)
            })
    });
    kept
}

#[cfg(test)]
#[allow(
    clippy::float_cmp,
    clippy::many_single_char_names,
    reason = "the compared values are exact in binary floating point; short names follow the maths"
)]
mod tests {
    use super::*;

    fn detection(class_id: u32, score: f32, bbox: [f64; 4]) -> Detection {
        Detection {
            class_id,
            class_name: COCO_CLASSES[class_id as usize],
            score,
            bbox,
        }
    }

    #[test]
    fn iou_of_known_boxes() {
        assert!(
            (box_iou([0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0]) - 1.0 / 3.0).abs() < 1e-12
        );
        assert_eq!(
            box_iou([0.0, 0.0, 10.0, 10.0], [10.0, 0.0, 20.0, 10.0]),
            0.0
        );
        assert_eq!(box_iou([0.0, 0.0, 0.0, 10.0], [0.0, 0.0, 0.0, 10.0]), 0.0);
    }

    #[test]
    fn nms_suppresses_within_a_class_only() {
        let candidates = vec![
            detection(2, 0.6, [0.0, 0.0, 100.0, 50.0]),
            detection(2, 0.9, [2.0, 1.0, 102.0, 51.0]),
            // The same place, another class: kept.
            detection(7, 0.5, [0.0, 0.0, 100.0, 50.0]),
            // Same class, IoU 1/3: kept.
            detection(2, 0.4, [50.0, 0.0, 150.0, 50.0]),
        ];
        let kept = nms_per_class(candidates, 0.45);
        let summary: Vec<(u32, f32)> = kept.iter().map(|d| (d.class_id, d.score)).collect();
        assert_eq!(summary, [(2, 0.9), (7, 0.5), (2, 0.4)]);
    }

    #[test]
    fn letterbox_places_the_image_top_left_and_scales_each_axis() {
        // 1242x375 (a KITTI frame) into 416x416: ratio 416/1242, resized to 416x125.
        let rgb = RgbImage::from_pixel(1242, 375, Rgb([10, 20, 30]));
        let (input, (sx, sy)) = letterbox(&rgb, 416, 416);
        assert_eq!(input.shape(), [1, 3, 416, 416]);
        assert!((sx - 416.0 / 1242.0).abs() < 1e-12);
        assert!((sy - 125.0 / 375.0).abs() < 1e-12);
        // BGR inside the resized image, padding below it.
        assert_eq!(
            [
                input[[0, 0, 124, 415]],
                input[[0, 1, 124, 415]],
                input[[0, 2, 124, 415]]
            ],
            [30.0, 20.0, 10.0]
        );
        assert_eq!(input[[0, 0, 125, 0]], PAD);
        assert_eq!(input[[0, 2, 415, 415]], PAD);
    }

    #[test]
    fn decode_reads_cells_level_by_level_row_by_row() {
        let (w, h) = (64, 32);
        let n = cell_count(w, h);
        // 8x4 cells at stride 8, 4x2 at 16, 2x1 at 32.
        assert_eq!(n, 32 + 8 + 2);
        let mut cells = ndarray::Array2::<f32>::zeros((n, 85));
        // Stride 16, row 1, column 2: index 32 + 1 * 4 + 2.
        let i = 32 + 4 + 2;
        cells[[i, 0]] = 0.5;
        cells[[i, 1]] = 0.25;
        cells[[i, 2]] = 0.0; // w = 16
        cells[[i, 3]] = 2f32.ln(); // h = 32
        cells[[i, 4]] = 0.9;
        cells[[i, 5 + 16]] = 0.8; // dog
        cells[[i, 5 + 17]] = 0.1;
        let found = decode(&cells.view(), w, h, 0.3, |b| b);
        assert_eq!(found.len(), 1);
        let d = found[0];
        assert_eq!((d.class_id, d.class_name), (16, "dog"));
        assert!((d.score - 0.72).abs() < 1e-6);
        // Centre ((0.5 + 2) * 16, (0.25 + 1) * 16) = (40, 20).
        let expected = [32.0, 4.0, 48.0, 36.0];
        for (a, b) in d.bbox.iter().zip(expected) {
            assert!((a - b).abs() < 1e-4, "{:?}", d.bbox);
        }
        // Below the threshold: nothing.
        assert!(decode(&cells.view(), w, h, 0.75, |b| b).is_empty());
    }

    #[test]
    fn class_groups() {
        let animals: Vec<&str> = COCO_CLASSES
            .iter()
            .enumerate()
            .filter(|(i, _)| is_coco_animal(*i as u32))
            .map(|(_, n)| *n)
            .collect();
        assert_eq!(
            animals,
            [
                "bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra",
                "giraffe"
            ]
        );
        let vehicles: Vec<&str> = COCO_VEHICLES
            .iter()
            .map(|&i| COCO_CLASSES[i as usize])
            .collect();
        assert_eq!(vehicles, ["car", "motorcycle", "bus", "truck"]);
    }
}
