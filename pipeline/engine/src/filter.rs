//! The quality filter: an inserted object is kept only if a detector trained on real photos sees
//! it as what it should be. X-Paste filters its generated objects with CLIP; a CLIP (or any
//! other) scorer plugs in through [`QualityFilter`].

use image::RgbImage;
use roadsynth_models::{
    COCO_ANIMALS, COCO_CLASSES, COCO_VEHICLES, CocoDetector, DetectOptions, box_iou,
};
use roadsynth_types::BBox;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::EngineError;

/// What the filter is asked about one inserted object.
#[derive(Debug, Clone, Copy)]
pub struct Inserted<'a> {
    /// Tight box of the rendered object.
    pub bbox: BBox,
    /// The class written into its annotation (`animal`).
    pub label: &'a str,
    /// The scenario's class (`deer`).
    pub class: &'a str,
    /// The class of the cut-out it was made from (`horse`), when it was made from one.
    pub source_class: Option<&'a str>,
}

/// The filter's answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub keep: bool,
    /// The best score of an accepted class on the object, 0 when nothing accepted was found.
    pub score: f32,
    /// The class that scored.
    pub class: Option<String>,
    /// Overlap of that detection with the object's box.
    pub iou: f64,
}

/// A scorer of inserted objects. Implementations: [`DetectorFilter`] (COCO `YOLOX`-nano); a CLIP
/// image-text similarity (as X-Paste) would implement the same.
pub trait QualityFilter: Send {
    fn name(&self) -> &str;
    /// Judges one inserted object in the composed frame.
    fn judge(&mut self, image: &RgbImage, inserted: &Inserted<'_>) -> Result<Verdict, EngineError>;
    /// Settings, for provenance.
    fn params(&self) -> serde_json::Value;
}

/// Which detector classes count as a hit.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterClasses {
    /// From the object: any COCO animal for an animal (label `animal` or an animal cut-out), any
    /// road vehicle for a vehicle, else the COCO class of its name.
    #[default]
    ByLabel,
    /// These COCO-80 ids, whatever the object.
    Ids(Vec<u32>),
}

/// Settings of [`DetectorFilter`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FilterConfig {
    /// Score an accepted detection needs for the object to be kept.
    pub threshold: f32,
    /// Overlap a detection needs with the object's tight box to count as seeing it.
    pub min_iou: f64,
    pub classes: FilterClasses,
    /// Detections are computed down to this score, so that rejected objects' scores are recorded
    /// too (the detector's own default of 0.3 would hide them).
    pub report_floor: f32,
}

impl Default for FilterConfig {
    fn default() -> Self {
        Self {
            threshold: 0.25,
            min_iou: 0.5,
            classes: FilterClasses::ByLabel,
            report_floor: 0.05,
        }
    }
}

const VEHICLE_WORDS: [&str; 7] = [
    "car",
    "truck",
    "bus",
    "motorcycle",
    "van",
    "vehicle",
    "lorry",
];

fn coco_id(name: &str) -> Option<u32> {
    COCO_CLASSES
        .iter()
        .position(|c| c.eq_ignore_ascii_case(name))
        .map(|i| i as u32)
}

impl FilterClasses {
    /// The COCO-80 ids accepted for an object; empty means any.
    pub fn accepted(&self, inserted: &Inserted<'_>) -> Vec<u32> {
        match self {
            FilterClasses::Ids(ids) => ids.clone(),
            FilterClasses::ByLabel => {
                let names = [
                    Some(inserted.label),
                    Some(inserted.class),
                    inserted.source_class,
                ];
                let names: Vec<String> = names
                    .into_iter()
                    .flatten()
                    .map(|n| n.to_lowercase().replace('_', " "))
                    .collect();
                let animal = names.iter().any(|n| {
                    n == "animal" || coco_id(n).is_some_and(|i| COCO_ANIMALS.contains(&i))
                });
                if animal {
                    return COCO_ANIMALS.collect();
                }
                if names.iter().any(|n| VEHICLE_WORDS.contains(&n.as_str())) {
                    return COCO_VEHICLES.to_vec();
                }
                names.iter().filter_map(|n| coco_id(n)).collect()
            }
        }
    }
}

/// Keeps an inserted object when `YOLOX`-nano, run on the object's region with context, finds an
/// accepted class over its box above the threshold.
#[derive(Debug)]
pub struct DetectorFilter {
    detector: CocoDetector,
    config: FilterConfig,
}

impl DetectorFilter {
    pub fn new(mut detector: CocoDetector, config: FilterConfig) -> Result<Self, EngineError> {
        let ok = (0.0..=1.0).contains(&config.threshold)
            && (0.0..=1.0).contains(&config.min_iou)
            && (0.0..=1.0).contains(&config.report_floor);
        if !ok {
            return Err(EngineError::Config(format!(
                "filter settings out of range: {config:?}"
            )));
        }
        let options = detector.options();
        detector.set_options(DetectOptions {
            score_threshold: config.report_floor.min(config.threshold),
            ..options
        });
        Ok(Self { detector, config })
    }

    pub fn config(&self) -> &FilterConfig {
        &self.config
    }

    pub fn detector_mut(&mut self) -> &mut CocoDetector {
        &mut self.detector
    }
}

impl QualityFilter for DetectorFilter {
    fn name(&self) -> &'static str {
        "yolox_detector"
    }

    fn judge(&mut self, image: &RgbImage, inserted: &Inserted<'_>) -> Result<Verdict, EngineError> {
        let b = inserted.bbox;
        let region = [b.x0, b.y0, b.x1, b.y1];
        let detections = self.detector.detect_region(image, region)?;
        let accepted = self.config.classes.accepted(inserted);
        let best = detections
            .iter()
            .filter(|d| accepted.is_empty() || accepted.contains(&d.class_id))
            .map(|d| (d, box_iou(d.bbox, region)))
            .filter(|(_, iou)| *iou >= self.config.min_iou)
            .max_by(|a, b| a.0.score.total_cmp(&b.0.score));
        Ok(match best {
            Some((d, iou)) => Verdict {
                keep: d.score >= self.config.threshold,
                score: d.score,
                class: Some(d.class_name.to_string()),
                iou,
            },
            None => Verdict {
                keep: false,
                score: 0.0,
                class: None,
                iou: 0.0,
            },
        })
    }

    fn params(&self) -> serde_json::Value {
        json!({
            "filter": self.name(),
            "model": self.detector.name(),
            "config": self.config,
            "region_context": self.detector.options().region_context,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inserted<'a>(label: &'a str, class: &'a str, source: Option<&'a str>) -> Inserted<'a> {
        Inserted {
            bbox: BBox::new(0.0, 0.0, 1.0, 1.0),
            label,
            class,
            source_class: source,
        }
    }

    #[test]
    fn accepted_classes_follow_the_label() {
        let by = FilterClasses::ByLabel;
        let animals: Vec<u32> = COCO_ANIMALS.collect();
        assert_eq!(
            by.accepted(&inserted("animal", "deer", Some("horse"))),
            animals
        );
        assert_eq!(by.accepted(&inserted("obstacle", "cow", None)), animals);
        assert_eq!(
            by.accepted(&inserted("vehicle", "van", Some("truck"))),
            COCO_VEHICLES
        );
        assert_eq!(by.accepted(&inserted("thing", "stop sign", None)), vec![11]);
        assert_eq!(
            FilterClasses::Ids(vec![3]).accepted(&inserted("animal", "deer", None)),
            vec![3]
        );
    }
}
