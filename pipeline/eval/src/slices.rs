//! Slices of an evaluation: by an attribute's value, and KITTI's difficulty levels.
//!
//! A slice is evaluated the way COCO evaluates an area range: the objects outside it stay in
//! the ground truth as ignored objects (a detection matching one is neither a hit nor a miss, so
//! finding a real car is not a false positive of the "generated" slice), and every other detection
//! counts. See [`SliceSpec`] for which images a slice covers.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::EvalError;
use crate::ground_truth::{GroundTruth, GtObject};

/// The value label of objects (and images) that do not have the attribute.
pub const MISSING: &str = "(missing)";

/// A slice key: evaluate once per value of an attribute.
///
/// # Values
///
/// An object's value is its annotation attribute `key`, or, when it has none, its frame's
/// attribute `key` (BDD100K's `weather` is a frame attribute; an object inherits it). Special
/// keys: `origin` is `real` or `generated` ([`Origin`](roadsynth_types::Origin)),
/// `origin.operation` the generating operation (`insert_objects`, `weather`, ...) or `real`, and
/// `origin.scenario` the scenario name or `real`. Strings are used as they are, booleans and
/// numbers as their JSON text; with `bins` (ascending edges), numbers fall into buckets labelled
/// `<e0`, `[e0, e1)`, ..., `>=en`. An object without the attribute has the value [`MISSING`].
///
/// # Semantics
///
/// The slice of value `v` covers the images whose frame has value `v` or that hold an object of
/// value `v`. On those images, objects of value `v` are the ground truth, every other object is
/// ignored as COCO ignores an object outside the area range (kept for matching, so a detection of
/// it is neither a hit nor a false positive), crowd and ignore regions keep their role, and
/// unmatched detections are false positives. For a frame attribute this is simply "the images
/// with that weather"; for an object attribute such as `origin` it is "the images where such
/// objects are, scored on those objects". An image without objects and without the attribute on
/// its frame belongs to no slice of that key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SliceSpec {
    pub key: String,
    /// Bucket edges for numeric values, strictly ascending.
    pub bins: Option<Vec<f64>>,
}

impl SliceSpec {
    /// A slice by every distinct value of `key`.
    pub fn by(key: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            bins: None,
        }
    }

    /// Parses `weather` or `fog_visibility_m:150,300,600` (a key and its bucket edges).
    pub fn parse(spec: &str) -> Result<Self, EvalError> {
        let (key, bins) = match spec.split_once(':') {
            None => (spec.trim(), None),
            Some((key, edges)) => {
                let parsed: Result<Vec<f64>, _> =
                    edges.split(',').map(|e| e.trim().parse::<f64>()).collect();
                let bins = parsed.map_err(|e| EvalError::Slice {
                    key: key.to_string(),
                    reason: format!("bin edges {edges:?}: {e}"),
                })?;
                (key.trim(), Some(bins))
            }
        };
        let spec = Self {
            key: key.to_string(),
            bins,
        };
        spec.check()?;
        Ok(spec)
    }

    pub(crate) fn check(&self) -> Result<(), EvalError> {
        let bad = |reason: &str| EvalError::Slice {
            key: self.key.clone(),
            reason: reason.to_string(),
        };
        if self.key.is_empty() {
            return Err(bad("empty key"));
        }
        if let Some(bins) = &self.bins {
            if bins.is_empty() {
                return Err(bad("no bin edges"));
            }
            if bins.iter().any(|e| !e.is_finite()) {
                return Err(bad("bin edges must be finite"));
            }
            if bins.windows(2).any(|w| w[0] >= w[1]) {
                return Err(bad("bin edges must be strictly ascending"));
            }
        }
        Ok(())
    }

    /// The label of a JSON value under this spec.
    fn label(&self, value: &Value) -> String {
        match (value, &self.bins) {
            (Value::Null, _) => MISSING.to_string(),
            (Value::String(s), _) => s.clone(),
            (Value::Number(n), Some(bins)) => match n.as_f64() {
                Some(x) => bucket(x, bins),
                None => n.to_string(),
            },
            (other, _) => other.to_string(),
        }
    }

    /// The order of labels among the values of this spec: buckets in edge order, numbers by
    /// value, other text alphabetically, [`MISSING`] last.
    fn order(&self, a: &str, b: &str) -> std::cmp::Ordering {
        let key = |label: &str| {
            if label == MISSING {
                return (2, f64::NAN);
            }
            match &self.bins {
                Some(bins) => {
                    let position = (0..=bins.len()).position(|i| bucket_label(i, bins) == label);
                    position.map_or((1, f64::NAN), |p| (0, p as f64))
                }
                None => label.parse::<f64>().map_or((1, f64::NAN), |x| (0, x)),
            }
        };
        let (ka, kb) = (key(a), key(b));
        ka.0.cmp(&kb.0)
            .then(ka.1.total_cmp(&kb.1))
            .then_with(|| a.cmp(b))
    }

    pub(crate) fn object_value(&self, gt: &GroundTruth, o: &GtObject) -> String {
        use roadsynth_types::Origin;
        let generated =
            |field: fn(&Origin) -> Option<&str>| field(&o.origin).unwrap_or("real").to_string();
        match self.key.as_str() {
            "origin" => if o.origin.is_real() {
                "real"
            } else {
                "generated"
            }
            .to_string(),
            "origin.operation" => generated(|origin| match origin {
                Origin::Generated { operation, .. } => Some(operation.as_str()),
                Origin::Real => None,
            }),
            "origin.scenario" => generated(|origin| match origin {
                Origin::Generated { scenario, .. } => Some(scenario.as_str()),
                Origin::Real => None,
            }),
            key => match o
                .attributes
                .get(key)
                .or_else(|| gt.images[o.image].attributes.get(key))
            {
                Some(v) => self.label(v),
                None => MISSING.to_string(),
            },
        }
    }

    /// The frame's own value, when the frame has the attribute (never for the `origin` keys).
    pub(crate) fn image_value(&self, gt: &GroundTruth, image: usize) -> Option<String> {
        if matches!(
            self.key.as_str(),
            "origin" | "origin.operation" | "origin.scenario"
        ) {
            return None;
        }
        gt.images[image]
            .attributes
            .get(&self.key)
            .map(|v| self.label(v))
    }

    /// Every value of the key in the ground truth, in report order.
    pub(crate) fn values(&self, gt: &GroundTruth) -> Vec<String> {
        let mut values: BTreeSet<String> = gt
            .objects
            .iter()
            .filter(|o| !o.region)
            .map(|o| self.object_value(gt, o))
            .collect();
        values.extend((0..gt.images.len()).filter_map(|i| self.image_value(gt, i)));
        let mut values: Vec<String> = values.into_iter().collect();
        values.sort_by(|a, b| self.order(a, b));
        values
    }

    /// The view of value `value`.
    pub(crate) fn view(&self, gt: &GroundTruth, value: &str) -> View {
        let mut images: Vec<bool> = (0..gt.images.len())
            .map(|i| self.image_value(gt, i).as_deref() == Some(value))
            .collect();
        let hidden = gt
            .objects
            .iter()
            .map(|o| {
                if o.region {
                    return false;
                }
                let inside = self.object_value(gt, o) == value;
                if inside {
                    images[o.image] = true;
                }
                !inside
            })
            .collect();
        View {
            images,
            hidden,
            min_detection_height: None,
        }
    }
}

fn fmt_edge(e: f64) -> String {
    format!("{e}")
}

/// Label of bucket `i` of `bins.len() + 1`.
fn bucket_label(i: usize, bins: &[f64]) -> String {
    if i == 0 {
        format!("<{}", fmt_edge(bins[0]))
    } else if i == bins.len() {
        format!(">={}", fmt_edge(bins[bins.len() - 1]))
    } else {
        format!("[{}, {})", fmt_edge(bins[i - 1]), fmt_edge(bins[i]))
    }
}

fn bucket(x: f64, bins: &[f64]) -> String {
    bucket_label(bins.partition_point(|&e| e <= x), bins)
}

/// KITTI's difficulty levels, cumulative as in the KITTI object benchmark: an object of the easy
/// level is also in moderate and hard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KittiLevel {
    Easy,
    Moderate,
    Hard,
}

impl KittiLevel {
    pub const ALL: [KittiLevel; 3] = [KittiLevel::Easy, KittiLevel::Moderate, KittiLevel::Hard];

    pub fn as_str(self) -> &'static str {
        match self {
            KittiLevel::Easy => "easy",
            KittiLevel::Moderate => "moderate",
            KittiLevel::Hard => "hard",
        }
    }

    /// Smallest box height in pixels (KITTI devkit `MIN_HEIGHT`).
    pub fn min_height(self) -> f64 {
        match self {
            KittiLevel::Easy => 40.0,
            KittiLevel::Moderate | KittiLevel::Hard => 25.0,
        }
    }

    /// Largest occlusion level (0 fully visible, 1 partly, 2 largely; 3 unknown is never in).
    pub fn max_occlusion(self) -> u8 {
        match self {
            KittiLevel::Easy => 0,
            KittiLevel::Moderate => 1,
            KittiLevel::Hard => 2,
        }
    }

    /// Largest truncation. Compared as `f32`, the type it is stored in, so a label's `0.15` is in.
    pub fn max_truncation(self) -> f32 {
        match self {
            KittiLevel::Easy => 0.15,
            KittiLevel::Moderate => 0.3,
            KittiLevel::Hard => 0.5,
        }
    }

    /// Whether an object is evaluated at this level; an object without truncation or occlusion
    /// (not from KITTI) is not.
    pub(crate) fn admits(self, o: &GtObject) -> bool {
        o.bbox.height() >= self.min_height()
            && o.occluded.is_some_and(|v| v <= self.max_occlusion())
            && o.truncated.is_some_and(|v| v <= self.max_truncation())
    }

    /// Every image; objects not admitted are ignored, and unmatched detections lower than the
    /// level's minimum height are ignored, as the KITTI devkit does (else every small true
    /// object found would be a false positive of the easy level).
    pub(crate) fn view(self, gt: &GroundTruth) -> View {
        View {
            images: vec![true; gt.images.len()],
            hidden: gt
                .objects
                .iter()
                .map(|o| !o.region && !self.admits(o))
                .collect(),
            min_detection_height: Some(self.min_height()),
        }
    }
}

/// What one evaluation covers.
#[derive(Debug, Clone)]
pub(crate) struct View {
    /// Per ground-truth image: evaluated.
    pub images: Vec<bool>,
    /// Per ground-truth object: kept for matching but ignored (area −1, outside every range).
    pub hidden: Vec<bool>,
    /// Unmatched detections lower than this are ignored (their area is set to −1 likewise).
    pub min_detection_height: Option<f64>,
}

impl View {
    pub(crate) fn everything(gt: &GroundTruth) -> Self {
        Self {
            images: vec![true; gt.images.len()],
            hidden: vec![false; gt.objects.len()],
            min_detection_height: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_half_open() {
        let bins = [150.0, 300.0, 600.0];
        assert_eq!(bucket(100.0, &bins), "<150");
        assert_eq!(bucket(150.0, &bins), "[150, 300)");
        assert_eq!(bucket(299.9, &bins), "[150, 300)");
        assert_eq!(bucket(600.0, &bins), ">=600");
        assert_eq!(bucket(1e4, &bins), ">=600");
    }

    #[test]
    fn spec_parsing_checks_edges() {
        let spec = SliceSpec::parse("fog_visibility_m:150, 300,600").expect("valid");
        assert_eq!(spec.key, "fog_visibility_m");
        assert_eq!(spec.bins, Some(vec![150.0, 300.0, 600.0]));
        assert_eq!(SliceSpec::parse("weather").expect("valid").bins, None);
        assert!(SliceSpec::parse("v:300,150").is_err());
        assert!(SliceSpec::parse("v:1,x").is_err());
        assert!(SliceSpec::parse(":1").is_err());
    }
}
