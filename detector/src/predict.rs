//! Prediction: a trained model folder on an image, and on a dataset as COCO results JSON.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::Path;

use image::RgbImage;
use roadsynth_dataset::{Dataset, Projection};
use roadsynth_types::BBox;
use serde::{Deserialize, Serialize};

use crate::assign::{iou, refine};
use crate::backbone::{Backbone, letterbox};
use crate::config::{CONFIG_FILE, TrainConfig, checked_backbone_hash};
use crate::error::{DetectorError, dataset_at};
use crate::head::{Head, Standardize, features};
use crate::train::{WEIGHTS_FILE, frame_image};
use crate::weights::{TensorFile, write_atomic};

/// Thresholds of [`Predictor`]. The defaults are those of COCO-style evaluation (YOLOX's own
/// evaluation keeps scores down to 0.001 and suppresses at 0.65): AP integrates over the whole
/// precision-recall curve, so low-scoring boxes count. Raise `score_threshold` (0.3) to look at
/// the boxes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PredictOptions {
    /// Keep anchors whose `objectness * class probability` reaches this.
    pub score_threshold: f32,
    /// Non-maximum suppression drops a box overlapping a better one of the same class by more
    /// than this `IoU`.
    pub nms_iou: f32,
    /// At most this many boxes per image, best first (COCO's evaluation counts 100).
    pub max_detections: usize,
}

impl Default for PredictOptions {
    fn default() -> Self {
        Self {
            score_threshold: 0.01,
            nms_iou: 0.65,
            max_detections: 100,
        }
    }
}

/// One detected object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Index into the model's classes ([`Predictor::classes`]).
    pub class_id: usize,
    pub class: String,
    /// `objectness * class probability`, `0..=1`.
    pub score: f32,
    /// In the image's pixels, clipped to it.
    pub bbox: BBox,
}

/// A trained model folder, loaded: the frozen backbone and the trained head.
#[derive(Debug)]
pub struct Predictor {
    backbone: Backbone,
    standardize: Standardize,
    head: Head,
    config: TrainConfig,
    options: PredictOptions,
}

impl Predictor {
    /// Loads `model_dir/config.json` and `model_dir/weights.safetensors`; the backbone is the one
    /// the configuration names, checked against its recorded sha256.
    pub fn load(model_dir: &Path) -> Result<Self, DetectorError> {
        Self::load_with(model_dir, None, None)
    }

    /// As [`Predictor::load`], with the backbone at `backbone` instead of the recorded path (a
    /// model folder moved to another machine; the hash is still checked) and ONNX Runtime's
    /// thread count.
    pub fn load_with(
        model_dir: &Path,
        backbone: Option<&Path>,
        intra_threads: Option<usize>,
    ) -> Result<Self, DetectorError> {
        let mut config = TrainConfig::read(&model_dir.join(CONFIG_FILE))?;
        if let Some(path) = backbone {
            config.backbone.path = path.to_path_buf();
        }
        checked_backbone_hash(&config.backbone)?;
        let weights_path = model_dir.join(WEIGHTS_FILE);
        let file = TensorFile::read(&weights_path)?;
        let bad = |reason: String| DetectorError::BadWeights {
            path: weights_path.clone(),
            reason,
        };
        let standardize = Standardize::from_file(&file).map_err(bad)?;
        let head = Head::from_file(&file, "", config.hidden, config.classes.len()).map_err(bad)?;
        let backbone = Backbone::load(&config.backbone.path, intra_threads)?;
        Ok(Self {
            backbone,
            standardize,
            head,
            config,
            options: PredictOptions::default(),
        })
    }

    #[must_use]
    pub fn with_options(mut self, options: PredictOptions) -> Self {
        self.options = options;
        self
    }

    pub fn options(&self) -> PredictOptions {
        self.options
    }

    /// The detector's classes, indexed by [`Prediction::class_id`].
    pub fn classes(&self) -> &[String] {
        &self.config.classes
    }

    /// The configuration the model was trained with.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// The objects in an image, best score first. Each anchor proposes every class that reaches
    /// the threshold (not only its best, as YOLOX's evaluation does): a bicyclist's cells also
    /// read as a pedestrian, and keeping only the best class would leave the rarer one unfound.
    /// Suppression runs per class.
    pub fn predict(&mut self, rgb: &RgbImage) -> Result<Vec<Prediction>, DetectorError> {
        let (width, height) = rgb.dimensions();
        if width == 0 || height == 0 {
            return Err(DetectorError::Model(
                roadsynth_models::ModelError::BadInput {
                    model: "roadsynth-detector".into(),
                    reason: format!("the image is empty ({width}x{height})"),
                },
            ));
        }
        let (input, placement) = letterbox(rgb, self.backbone.size(), 1.0, false, (0.0, 0.0));
        let raw = self.backbone.run(&input)?;
        let anchors = self.backbone.anchors();
        let mut x = features(&raw, anchors);
        self.standardize.apply(&mut x);
        let out = self.head.forward(&x.view());
        let classes = self.config.classes.len();
        let mut candidates: Vec<(usize, f32, [f32; 4])> = Vec::new();
        for ((row, values), anchor) in out.outer_iter().zip(raw.outer_iter()).zip(anchors) {
            let objectness = sigmoid(row[0]);
            if objectness < self.options.score_threshold {
                continue;
            }
            let own = anchor.decode(values.as_slice().expect("rows are contiguous"));
            let refined = refine(
                own,
                [
                    row[1 + classes],
                    row[2 + classes],
                    row[3 + classes],
                    row[4 + classes],
                ],
            );
            for class in 0..classes {
                let score = objectness * sigmoid(row[1 + class]);
                if score >= self.options.score_threshold {
                    candidates.push((class, score, refined));
                }
            }
        }
        let kept = nms(
            candidates,
            self.options.nms_iou,
            self.options.max_detections,
        );
        Ok(kept
            .into_iter()
            .filter_map(|(class, score, b)| {
                let [x0, y0, x1, y1] = placement.unmap_box(b, width, height);
                (x0 < x1 && y0 < y1).then(|| Prediction {
                    class_id: class,
                    class: self.config.classes[class].clone(),
                    score,
                    bbox: BBox::new(x0, y0, x1, y1),
                })
            })
            .collect())
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Greedy suppression per class, then the best `max` of all, best first (ties broken by class
/// and position, so the order is reproducible).
fn nms(
    mut candidates: Vec<(usize, f32, [f32; 4])>,
    threshold: f32,
    max: usize,
) -> Vec<(usize, f32, [f32; 4])> {
    candidates.sort_by(|a, b| {
        b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)).then_with(|| {
            a.2.iter()
                .zip(&b.2)
                .map(|(p, q)| p.total_cmp(q))
                .find(|o| o.is_ne())
                .unwrap_or(std::cmp::Ordering::Equal)
        })
    });
    let mut kept: Vec<(usize, f32, [f32; 4])> = Vec::new();
    for candidate in candidates {
        if kept.len() == max {
            break;
        }
        let suppressed = kept
            .iter()
            .any(|k| k.0 == candidate.0 && iou(k.2, candidate.2) > threshold);
        if !suppressed {
            kept.push(candidate);
        }
    }
    kept
}

/// What [`predict_coco`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PredictSummary {
    pub frames: u64,
    /// Result entries written.
    pub detections: u64,
    /// Detections of a class the dataset has no category for (the model's `animal` on `CamVid`):
    /// left out, since COCO results can only name the dataset's categories.
    pub unmatched: BTreeMap<String, u64>,
}

/// The COCO category id (as `roadsynth dataset export --format coco` numbers them: the 1-based
/// index in the manifest's sorted classes) of each detector class, where the dataset has one: the
/// dataset class of the same name, else the first that the configuration maps to it.
fn category_ids(classes: &[String], config: &TrainConfig) -> Vec<Option<u64>> {
    config
        .classes
        .iter()
        .enumerate()
        .map(|(k, name)| {
            let exact = classes.iter().position(|c| c == name);
            let mapped = || {
                classes
                    .iter()
                    .position(|c| config.target_class(c) == Some(k))
            };
            exact.or_else(mapped).map(|i| i as u64 + 1)
        })
        .collect()
}

/// Predicts every frame of `splits` (all splits when `None`) of the dataset at `dataset_root` and
/// writes COCO results JSON (`[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}]`, one
/// entry per line) to `output`.
///
/// Image ids are those of `roadsynth dataset export --format coco` of the same dataset version:
/// `roadsynth_formats::export` numbers frames from 1 in [`Manifest::split_names`] order, each
/// split in stored order, so a frame's id is its position in its split plus the frame counts of
/// the splits before it.
///
/// [`Manifest::split_names`]: roadsynth_dataset::Manifest::split_names
pub fn predict_coco(
    predictor: &mut Predictor,
    dataset_root: &Path,
    splits: Option<&[String]>,
    output: &Path,
) -> Result<PredictSummary, DetectorError> {
    let dataset = Dataset::open(dataset_root).map_err(dataset_at(dataset_root))?;
    let manifest = dataset.manifest();
    for split in splits.unwrap_or_default() {
        if !manifest.splits.contains_key(split) {
            return Err(DetectorError::Dataset {
                path: dataset_root.to_path_buf(),
                source: roadsynth_dataset::DatasetError::NoSuchSplit(split.clone()),
            });
        }
    }
    let categories = category_ids(&manifest.classes, &predictor.config);
    let mut summary = PredictSummary::default();
    let mut text = String::from("[");
    let mut offset = 0_u64;
    let mut split_offsets = HashMap::new();
    for split in manifest.split_names() {
        let frames = manifest.splits[&split].frames;
        split_offsets.insert(split.clone(), offset);
        offset += frames;
    }
    for split in manifest.split_names() {
        if splits.is_some_and(|wanted| !wanted.contains(&split)) {
            continue;
        }
        let first_id = split_offsets[&split] + 1;
        let reader = dataset
            .frames(&split, Projection::Full)
            .map_err(dataset_at(dataset_root))?;
        for (index, record) in reader.enumerate() {
            let record = record.map_err(dataset_at(dataset_root))?;
            let rgb = frame_image(&record, dataset_root)?;
            let image_id = first_id + index as u64;
            for p in predictor.predict(&rgb)? {
                let Some(category_id) = categories[p.class_id] else {
                    *summary.unmatched.entry(p.class).or_insert(0) += 1;
                    continue;
                };
                let [x, y, w, h] = p.bbox.to_xywh();
                if summary.detections > 0 {
                    text.push(',');
                }
                let _ = write!(
                    text,
                    "\n{{\"image_id\": {image_id}, \"category_id\": {category_id}, \"bbox\": [{x:.2}, {y:.2}, {w:.2}, {h:.2}], \"score\": {:.5}}}",
                    p.score
                );
                summary.detections += 1;
            }
            summary.frames += 1;
        }
    }
    text.push_str("\n]\n");
    if let Some(parent) = output.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(crate::error::io_at(parent))?;
    }
    write_atomic(output, text.as_bytes())?;
    tracing::debug!(
        frames = summary.frames,
        detections = summary.detections,
        "wrote COCO results to {}",
        output.display()
    );
    Ok(summary)
}

/// [`predict_coco`] for a model folder: loads it and predicts.
pub fn predict_dataset(
    model_dir: &Path,
    dataset_root: &Path,
    splits: Option<&[String]>,
    output: &Path,
) -> Result<PredictSummary, DetectorError> {
    let mut predictor = Predictor::load(model_dir)?;
    predict_coco(&mut predictor, dataset_root, splits, output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nms_within_class_and_capped() {
        let kept = nms(
            vec![
                (0, 0.5, [0.0, 0.0, 10.0, 10.0]),
                (0, 0.9, [1.0, 0.0, 11.0, 10.0]),
                (1, 0.8, [0.0, 0.0, 10.0, 10.0]),
                (0, 0.3, [20.0, 0.0, 30.0, 10.0]),
            ],
            0.65,
            2,
        );
        let summary: Vec<(usize, f32)> = kept.iter().map(|k| (k.0, k.1)).collect();
        assert_eq!(summary, [(0, 0.9), (1, 0.8)]);
    }

    #[test]
    fn categories_follow_the_export_numbering() {
        let config = TrainConfig::default();
        // KITTI's sorted classes: the map sends Car, Pedestrian, Cyclist to ours.
        let kitti: Vec<String> = ["Car", "Cyclist", "DontCare", "Pedestrian", "Van"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            category_ids(&kitti, &config),
            [Some(1), Some(4), Some(2), None]
        );
        let camvid: Vec<String> = ["bicyclist", "car", "pedestrian"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            category_ids(&camvid, &config),
            [Some(2), Some(3), Some(1), None]
        );
    }
}
