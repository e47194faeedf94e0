//! Detections in COCO's results format, and their translation into the ground truth's terms.

use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::EvalError;
use crate::ground_truth::GroundTruth;

/// One detection, as a COCO results file holds it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    /// Image id of `roadsynth dataset export --format coco` of the evaluated dataset.
    pub image_id: u64,
    /// Category id of the same export (1-based index into the manifest's sorted classes).
    pub category_id: u64,
    /// `[x, y, width, height]` in pixels.
    pub bbox: [f64; 4],
    pub score: f64,
}

/// A set of detections with where it came from, so that errors name the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Detections {
    source: String,
    items: Vec<Detection>,
}

/// A results file is a list; some tools wrap it as `{"annotations": [...]}`.
#[derive(Deserialize)]
#[serde(untagged)]
enum ResultsFile {
    List(Vec<Detection>),
    Wrapped { annotations: Vec<Detection> },
}

impl Detections {
    /// Reads a COCO results JSON file (fields other than the four above are ignored).
    pub fn read(path: &Path) -> Result<Self, EvalError> {
        let text = std::fs::read(path).map_err(|source| EvalError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let parsed: ResultsFile =
            serde_json::from_slice(&text).map_err(|source| EvalError::DetectionsJson {
                path: path.to_path_buf(),
                source,
            })?;
        let items = match parsed {
            ResultsFile::List(items) | ResultsFile::Wrapped { annotations: items } => items,
        };
        Ok(Self {
            source: path.display().to_string(),
            items,
        })
    }

    /// Detections made in memory; `source` names them in messages.
    pub fn new(source: impl Into<String>, items: Vec<Detection>) -> Self {
        Self {
            source: source.into(),
            items,
        }
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn items(&self) -> &[Detection] {
        &self.items
    }
}

/// What happened to the detections of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetectionCounts {
    /// Detections on evaluated images, of evaluated classes.
    pub evaluated: usize,
    /// Detections on images of the dataset that are not evaluated (another split).
    pub other_images: usize,
    /// Detections of a class the class map drops, or with no ground-truth object anywhere in the
    /// evaluated images (pycocotools would give that class no AP and leave it out of every mean).
    pub unevaluated_class: usize,
}

/// Detections in the ground truth's COCO numbering, in file order (the order breaks score ties,
/// as in pycocotools).
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    pub annotations: Vec<hotcoco::Annotation>,
    pub counts: DetectionCounts,
}

impl Prepared {
    pub fn new(gt: &GroundTruth, detections: &Detections) -> Result<Self, EvalError> {
        let image_ids: HashSet<u64> = gt.images.iter().map(|i| i.id).collect();
        // Source category id → evaluated category id (`None`: not evaluated).
        let categories: Vec<Option<u64>> = gt
            .source_classes
            .iter()
            .map(|class| {
                gt.class_map
                    .map(class)
                    .and_then(|name| {
                        gt.categories
                            .binary_search_by(|c| c.as_str().cmp(name))
                            .ok()
                    })
                    .map(|k| k as u64 + 1)
            })
            .collect();
        let mut counts = DetectionCounts::default();
        let mut annotations = Vec::with_capacity(detections.items.len());
        for (index, d) in detections.items.iter().enumerate() {
            let non_finite = |field, value: f64| EvalError::NonFinite {
                source_name: detections.source.clone(),
                index,
                field,
                value,
            };
            if !d.score.is_finite() {
                return Err(non_finite("score", d.score));
            }
            if let Some(v) = d.bbox.iter().find(|v| !v.is_finite()) {
                return Err(non_finite("bbox coordinate", *v));
            }
            let category = usize::try_from(d.category_id)
                .ok()
                .and_then(|id| id.checked_sub(1))
                .and_then(|i| categories.get(i));
            let Some(category) = category else {
                return Err(EvalError::UnknownCategory {
                    source_name: detections.source.clone(),
                    index,
                    category_id: d.category_id,
                    classes: gt.source_classes.len(),
                    names: gt.source_classes.join(", "),
                });
            };
            if d.image_id == 0 || d.image_id > gt.known_images {
                return Err(EvalError::UnknownImage {
                    source_name: detections.source.clone(),
                    index,
                    image_id: d.image_id,
                    images: gt.known_images,
                });
            }
            if !image_ids.contains(&d.image_id) {
                counts.other_images += 1;
                continue;
            }
            let Some(category_id) = *category else {
                counts.unevaluated_class += 1;
                continue;
            };
            counts.evaluated += 1;
            annotations.push(hotcoco::Annotation {
                image_id: d.image_id,
                category_id,
                bbox: Some(d.bbox),
                score: Some(d.score),
                ..Default::default()
            });
        }
        Ok(Self {
            annotations,
            counts,
        })
    }
}
