//! The training configuration, saved as `config.json` beside the weights so that a model folder
//! says exactly how it was made and a prediction run rebuilds the same head.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use roadsynth_models::CocoDetector;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{DetectorError, io_at};

/// File name of the configuration in a model folder.
pub const CONFIG_FILE: &str = "config.json";

/// How to train a head: which classes, from which dataset classes, for how long, with which
/// augmentation and seed, on which backbone. Every field has a default, so a partial JSON
/// configuration names only what it changes; unknown fields are an error (a typo must not
/// silently train with a default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// The detector's classes, in output order. The default is the shared data's classes, with
    /// `animal` included even when a dataset has none, so that every arm of an experiment
    /// predicts the same classes.
    pub classes: Vec<String>,
    /// Dataset class name to detector class. A dataset class that is neither mapped here nor a
    /// detector class itself becomes an ignore region: anchors on it are neither positive nor
    /// negative, because an unlisted class (KITTI's `Van`, `DontCare`) is not background.
    pub class_map: BTreeMap<String, String>,
    pub epochs: u32,
    /// Frames per optimizer step.
    pub batch: u32,
    /// Adam's learning rate at the start; it follows a cosine down to `lr * min_lr_ratio` at the
    /// last step.
    pub lr: f64,
    pub min_lr_ratio: f64,
    /// Decoupled weight decay (`AdamW`) per step, relative to the learning rate.
    pub weight_decay: f64,
    /// Seeds the head's initial weights, the frame order and every augmentation.
    pub seed: u64,
    pub augment: Augmentation,
    /// Width of the head's two hidden layers.
    pub hidden: usize,
    /// Frames held for shuffling while the split streams from Parquet: a split no larger than
    /// this is shuffled uniformly; a larger one is shuffled within a window of this many frames,
    /// which bounds memory by this many encoded images.
    pub shuffle_buffer: usize,
    /// Frames per epoch; `None`: the split's size. Set it to compare arms of different sizes at
    /// equal epochs *and* equal optimiser steps: a smaller split is passed over again (each pass
    /// reshuffled), a larger one is cut short.
    pub frames_per_epoch: Option<u64>,
    pub backbone: BackboneRef,
}

/// The frozen feature extractor and the hash of the file trained with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackboneRef {
    pub path: PathBuf,
    /// Hex sha256 of the file. Filled in by training when absent; checked when present, so a
    /// model is never run on a backbone other than its own.
    #[serde(default)]
    pub sha256: Option<String>,
}

/// Training-time augmentation. Scale jitter multiplies the letterbox ratio (the one that fits the
/// image into the network input): below 1 the image sits top-left in padding as at inference,
/// above 1 a random window of it is cut out.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Augmentation {
    /// Probability of a horizontal flip.
    pub hflip: f64,
    pub scale_min: f64,
    pub scale_max: f64,
    /// A box cut by the crop window below this fraction of its area becomes an ignore region:
    /// too little of it is visible to call it either object or background.
    pub min_visible: f64,
}

impl Default for Augmentation {
    fn default() -> Self {
        Self {
            hflip: 0.5,
            scale_min: 0.75,
            scale_max: 1.25,
            min_visible: 0.4,
        }
    }
}

impl Augmentation {
    /// No augmentation: every frame letterboxed as at inference.
    pub fn none() -> Self {
        Self {
            hflip: 0.0,
            scale_min: 1.0,
            scale_max: 1.0,
            min_visible: 0.4,
        }
    }
}

/// The shared YOLOX-nano: `$ROADSYNTH_SHARED/models/yolox-nano/yolox_nano.onnx`, or under
/// `../shared` when the variable is unset (the layout `scripts/env.sh` assumes).
pub fn default_backbone_path() -> PathBuf {
    let root = std::env::var_os("ROADSYNTH_SHARED")
        .filter(|p| !p.is_empty())
        .map_or_else(|| PathBuf::from("../shared"), PathBuf::from);
    root.join(CocoDetector::SHARED_PATH)
}

impl Default for TrainConfig {
    fn default() -> Self {
        let class_map = [
            ("Car", "car"),
            ("Pedestrian", "pedestrian"),
            ("Cyclist", "bicyclist"),
        ]
        .into_iter()
        .map(|(from, to)| (from.to_string(), to.to_string()))
        .collect();
        Self {
            classes: ["car", "pedestrian", "bicyclist", "animal"]
                .map(String::from)
                .to_vec(),
            class_map,
            epochs: 10,
            batch: 8,
            lr: 2e-3,
            min_lr_ratio: 0.05,
            weight_decay: 1e-4,
            seed: 0,
            augment: Augmentation::default(),
            hidden: 64,
            shuffle_buffer: 4096,
            frames_per_epoch: None,
            backbone: BackboneRef {
                path: default_backbone_path(),
                sha256: None,
            },
        }
    }
}

impl TrainConfig {
    /// The detector class index a dataset class trains as, or `None` for an ignore region.
    pub fn target_class(&self, dataset_class: &str) -> Option<usize> {
        let name = self
            .class_map
            .get(dataset_class)
            .map_or(dataset_class, String::as_str);
        self.classes.iter().position(|c| c == name)
    }

    /// Checks what serde cannot: classes present and distinct, the map pointing at them, sane
    /// numbers.
    pub fn validate(&self) -> Result<(), DetectorError> {
        let fail = |m: String| Err(DetectorError::Config(m));
        if self.classes.is_empty() {
            return fail("`classes` is empty".into());
        }
        for (i, class) in self.classes.iter().enumerate() {
            if self.classes[..i].contains(class) {
                return fail(format!("class {class:?} is listed twice"));
            }
        }
        for (from, to) in &self.class_map {
            if !self.classes.contains(to) {
                return fail(format!(
                    "`class_map` sends {from:?} to {to:?}, which is not one of the classes {:?}",
                    self.classes
                ));
            }
        }
        if self.epochs == 0 || self.batch == 0 || self.hidden == 0 || self.shuffle_buffer == 0 {
            return fail(
                "`epochs`, `batch`, `hidden` and `shuffle_buffer` must be positive".into(),
            );
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return fail(format!("`lr` {} must be positive", self.lr));
        }
        if !(0.0..=1.0).contains(&self.min_lr_ratio) || !(0.0..1.0).contains(&self.weight_decay) {
            return fail("`min_lr_ratio` must lie in 0..=1 and `weight_decay` in 0..1".into());
        }
        let a = &self.augment;
        if !(0.0..=1.0).contains(&a.hflip) || !(0.0..=1.0).contains(&a.min_visible) {
            return fail("`augment.hflip` and `augment.min_visible` must lie in 0..=1".into());
        }
        if !(a.scale_min > 0.0 && a.scale_min <= a.scale_max && a.scale_max <= 4.0) {
            return fail(format!(
                "`augment` scale range {}..{} must satisfy 0 < min <= max <= 4",
                a.scale_min, a.scale_max
            ));
        }
        Ok(())
    }

    /// Reads `config.json` of a model folder (or any configuration file).
    pub fn read(path: &Path) -> Result<Self, DetectorError> {
        let text = std::fs::read(path).map_err(io_at(path))?;
        let config: Self = serde_json::from_slice(&text).map_err(|source| DetectorError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Writes the configuration as pretty JSON (written to a temporary file and renamed, so a
    /// reader never sees half of it).
    pub fn write(&self, path: &Path) -> Result<(), DetectorError> {
        let mut text = serde_json::to_vec_pretty(self).map_err(|source| DetectorError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        text.push(b'\n');
        crate::weights::write_atomic(path, &text)
    }
}

/// Hex sha256 of a file.
pub fn sha256_file(path: &Path) -> Result<String, DetectorError> {
    let mut file = std::fs::File::open(path).map_err(io_at(path))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0_u8; 1 << 16];
    loop {
        let n = file.read(&mut buffer).map_err(io_at(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            use std::fmt::Write as _;
            let _ = write!(s, "{b:02x}");
            s
        }))
}

/// The backbone's hash, checked against the configuration's when it records one.
pub(crate) fn checked_backbone_hash(backbone: &BackboneRef) -> Result<String, DetectorError> {
    if !backbone.path.is_file() {
        return Err(DetectorError::Model(
            roadsynth_models::ModelError::ModelMissing {
                path: backbone.path.clone(),
            },
        ));
    }
    let found = sha256_file(&backbone.path)?;
    match &backbone.sha256 {
        Some(expected) if !expected.eq_ignore_ascii_case(&found) => {
            Err(DetectorError::BackboneChanged {
                path: backbone.path.clone(),
                expected: expected.clone(),
                found,
            })
        }
        _ => Ok(found),
    }
}
