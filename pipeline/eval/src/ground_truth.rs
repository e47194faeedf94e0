//! Ground truth for evaluation: the objects of a dataset split (or of frame records) numbered as
//! `roadsynth dataset export --format coco` numbers them, so that a predictions file made against
//! that export can be scored without translation.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use roadsynth_dataset::{Dataset, Projection};
use roadsynth_types::{Annotation, Attributes, BBox, Frame, FrameRecord, Origin};

use crate::EvalError;

/// Renames (and optionally selects) classes before evaluation, on both sides: a detection's class
/// is looked up by its category id and then mapped exactly like a ground-truth object's.
///
/// Several source classes may map to one evaluated class (`Van=car,Car=car`). Ignore regions are
/// never dropped by a map: a region whose class is not evaluated applies to every class (see
/// [`GroundTruth`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClassMap {
    /// Source class name → evaluated class name.
    pub rename: BTreeMap<String, String>,
    /// Evaluate only the classes `rename` lists; others are dropped. Off: unlisted classes are
    /// evaluated under their own name.
    pub only_listed: bool,
}

impl ClassMap {
    /// Every class under its own name.
    pub fn identity() -> Self {
        Self::default()
    }

    /// Parses `Car=car,Van=car,Pedestrian=person`; a trailing `,*` keeps unlisted classes, which
    /// are otherwise dropped (a map written for a comparison names every class it wants).
    pub fn parse(spec: &str) -> Result<Self, EvalError> {
        let bad = |reason: String| EvalError::ClassMap {
            spec: spec.to_string(),
            reason,
        };
        let mut map = ClassMap {
            rename: BTreeMap::new(),
            only_listed: true,
        };
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if item == "*" {
                map.only_listed = false;
                continue;
            }
            let Some((from, to)) = item.split_once('=') else {
                return Err(bad(format!("{item:?} is not `source=evaluated`")));
            };
            let (from, to) = (from.trim(), to.trim());
            if from.is_empty() || to.is_empty() {
                return Err(bad(format!("{item:?} has an empty class name")));
            }
            if map
                .rename
                .insert(from.to_string(), to.to_string())
                .is_some()
            {
                return Err(bad(format!("{from:?} is mapped twice")));
            }
        }
        Ok(map)
    }

    /// The evaluated name of a source class, or `None` when the class is not evaluated.
    pub fn map<'a>(&'a self, class: &'a str) -> Option<&'a str> {
        match self.rename.get(class) {
            Some(to) => Some(to.as_str()),
            None if self.only_listed => None,
            None => Some(class),
        }
    }
}

/// One image of the ground truth.
#[derive(Debug, Clone)]
pub(crate) struct GtImage {
    /// COCO image id, as the export assigns it.
    pub id: u64,
    pub file_name: String,
    pub width: u32,
    pub height: u32,
    pub attributes: Attributes,
    pub source_format: String,
}

/// Which categories an object counts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// One evaluated category, by index into [`GroundTruth::categories`].
    Class(usize),
    /// Every category: an ignore region whose class is not evaluated (KITTI `DontCare`).
    AllClasses,
}

/// One ground-truth object or region.
#[derive(Debug, Clone)]
pub(crate) struct GtObject {
    /// Index into [`GroundTruth::images`].
    pub image: usize,
    pub target: Target,
    /// A crowd or ignore region (`iscrowd = 1`): a detection on it is neither a hit nor a miss.
    pub region: bool,
    pub bbox: BBox,
    /// COCO `area`: the stored `area` attribute (mask pixels, from COCO sources) when there is one,
    /// else the box area, as the export writes it. Decides small/medium/large.
    pub area: f64,
    pub attributes: Attributes,
    pub origin: Origin,
    pub truncated: Option<f32>,
    pub occluded: Option<u8>,
}

/// The ground truth of one evaluation, in COCO's terms.
///
/// # Numbering
///
/// Image ids and the category ids a predictions file uses are those of
/// `roadsynth dataset export --format coco` (`roadsynth_formats::export::to_coco`) of the same
/// dataset version: images are numbered from 1 over every split in
/// [`Manifest::split_names`](roadsynth_dataset::Manifest::split_names) order, each in stored
/// order, and category `i` is the `i`-th (from 1) of the manifest's sorted `classes`. This crate
/// mirrors that rule (the formats crate has no public function for it); the integration test
/// checks the mirror against a real export. Evaluating one split keeps the whole-dataset image
/// ids, so predictions for the full export can be scored on one split.
///
/// # Objects and regions
///
/// Crowd objects and ignore regions (`ignore`, KITTI `DontCare`) become `iscrowd = 1` ground
/// truth, so a detection on them is neither a true nor a false positive, as in COCO. A crowd
/// counts for its own class only. An ignore region counts for its own class when that class is
/// evaluated, and otherwise for every class: `DontCare` marks an area where nothing was labelled,
/// whatever the detector finds there. The evaluated categories are the (mapped) classes with at
/// least one object that is not a region; a class without one would have no AP in pycocotools
/// either (its `-1` is left out of every mean), so this leaves every number unchanged.
#[derive(Debug, Clone)]
pub struct GroundTruth {
    pub(crate) images: Vec<GtImage>,
    pub(crate) objects: Vec<GtObject>,
    pub(crate) categories: Vec<String>,
    /// Classes in the predictions' numbering: `category_id` `i` is `source_classes[i - 1]`.
    pub(crate) source_classes: Vec<String>,
    pub(crate) class_map: ClassMap,
    /// Image ids `1..=known_images` exist in the export; those not in `images` are other splits.
    pub(crate) known_images: u64,
    /// What this ground truth was read from, for messages.
    pub(crate) source: String,
}

impl GroundTruth {
    /// The ground truth of one split (`None`: every split, the whole export) of a dataset version.
    /// Reads annotations only, never image bytes.
    pub fn from_dataset(
        dataset: &Dataset,
        split: Option<&str>,
        class_map: &ClassMap,
    ) -> Result<Self, EvalError> {
        let manifest = dataset.manifest();
        let path = dataset.version_dir();
        let dataset_err = |source| EvalError::Dataset {
            path: path.to_path_buf(),
            source,
        };
        let (first_id, expected, reader) = match split {
            None => (
                1,
                manifest.frames(),
                dataset
                    .all_frames(Projection::WithoutImages)
                    .map_err(dataset_err)?,
            ),
            Some(split) => {
                let reader = dataset
                    .frames(split, Projection::WithoutImages)
                    .map_err(dataset_err)?;
                // Ids as the export gives them: the splits before this one come first.
                let first = manifest.first_export_id(split).unwrap_or(1);
                (first, manifest.splits[split].frames, reader)
            }
        };
        let mut builder = Builder::new(class_map);
        let mut id = first_id;
        for record in reader {
            let record = record.map_err(dataset_err)?;
            builder.add(id, &record.frame, &record.annotations);
            id += 1;
        }
        let read = id - first_id;
        if read != expected {
            return Err(EvalError::Inconsistent {
                path: path.to_path_buf(),
                reason: format!(
                    "the manifest counts {expected} frames{}, the files hold {read}",
                    split
                        .map(|s| format!(" in split {s:?}"))
                        .unwrap_or_default()
                ),
            });
        }
        let source = match split {
            Some(split) => format!("dataset {} (split {split})", path.display()),
            None => format!("dataset {}", path.display()),
        };
        Ok(builder.finish(manifest.classes.clone(), manifest.frames(), source))
    }

    /// The ground truth of frame records, numbered as the export would number them if these
    /// records, in this order, were the whole dataset: images from 1, categories by the sorted
    /// class names of all annotations.
    pub fn from_records<'a>(
        records: impl IntoIterator<Item = &'a FrameRecord>,
        class_map: &ClassMap,
    ) -> Self {
        let mut builder = Builder::new(class_map);
        let mut classes = BTreeSet::new();
        let mut id = 0;
        for record in records {
            id += 1;
            classes.extend(record.annotations.iter().map(|a| a.class.clone()));
            builder.add(id, &record.frame, &record.annotations);
        }
        builder.finish(classes.into_iter().collect(), id, "frame records".into())
    }

    /// Opens a dataset folder and reads one split (`None`: all); for `roadsynth eval`.
    pub fn open(dir: &Path, split: Option<&str>, class_map: &ClassMap) -> Result<Self, EvalError> {
        let dataset = Dataset::open(dir).map_err(|source| EvalError::Dataset {
            path: dir.to_path_buf(),
            source,
        })?;
        Self::from_dataset(&dataset, split, class_map)
    }

    /// Number of images evaluated.
    pub fn image_count(&self) -> usize {
        self.images.len()
    }

    /// The evaluated class names, sorted.
    pub fn categories(&self) -> &[String] {
        &self.categories
    }

    /// Class names in the numbering predictions use: `category_id` `i` names `source_classes()[i - 1]`.
    pub fn source_classes(&self) -> &[String] {
        &self.source_classes
    }

    /// Objects per evaluated category that are not regions.
    pub fn object_counts(&self) -> BTreeMap<String, usize> {
        let mut counts: BTreeMap<String, usize> =
            self.categories.iter().map(|c| (c.clone(), 0)).collect();
        for o in self.objects.iter().filter(|o| !o.region) {
            if let Target::Class(k) = o.target {
                *counts.entry(self.categories[k].clone()).or_default() += 1;
            }
        }
        counts
    }

    /// Whether every frame was ingested from KITTI, so that truncation and occlusion are
    /// KITTI's and the difficulty levels apply.
    pub fn is_kitti(&self) -> bool {
        !self.images.is_empty() && self.images.iter().all(|i| i.source_format == "kitti")
    }

    /// The ground truth as a COCO dataset with this crate's category numbering (the evaluated
    /// categories, from 1), objects whose index `hidden` marks get `area = -1`: COCO's area-range
    /// rule then ignores them in every range (a detection matching one is neither a hit nor a
    /// miss) while their box still takes part in matching.
    pub(crate) fn coco_dataset(&self, hidden: Option<&[bool]>) -> hotcoco::Dataset {
        let images = self
            .images
            .iter()
            .map(|i| hotcoco::Image {
                id: i.id,
                file_name: i.file_name.clone(),
                width: i.width,
                height: i.height,
                ..Default::default()
            })
            .collect();
        let categories = self
            .categories
            .iter()
            .zip(1..)
            .map(|(name, id)| hotcoco::Category {
                id,
                name: name.clone(),
                ..Default::default()
            })
            .collect();
        let mut annotations = Vec::with_capacity(self.objects.len());
        for (index, o) in self.objects.iter().enumerate() {
            let area = if hidden.is_some_and(|h| h[index]) {
                -1.0
            } else {
                o.area
            };
            let ks = match o.target {
                Target::Class(k) => k..k + 1,
                Target::AllClasses => 0..self.categories.len(),
            };
            for k in ks {
                annotations.push(hotcoco::Annotation {
                    id: annotations.len() as u64 + 1,
                    image_id: self.images[o.image].id,
                    category_id: k as u64 + 1,
                    bbox: Some(o.bbox.to_xywh()),
                    area: Some(area),
                    iscrowd: o.region,
                    ..Default::default()
                });
            }
        }
        hotcoco::Dataset {
            images,
            annotations,
            categories,
            ..Default::default()
        }
    }
}

/// An object before categories are known.
struct Pending {
    object: GtObject,
    class: Option<String>,
    ignore: bool,
}

/// Collects images and objects; categories are fixed by [`Builder::finish`], once every
/// non-region object has been seen.
struct Builder<'a> {
    class_map: &'a ClassMap,
    images: Vec<GtImage>,
    pending: Vec<Pending>,
}

impl<'a> Builder<'a> {
    fn new(class_map: &'a ClassMap) -> Self {
        Self {
            class_map,
            images: Vec::new(),
            pending: Vec::new(),
        }
    }

    fn add(&mut self, id: u64, frame: &Frame, annotations: &[Annotation]) {
        let image = self.images.len();
        self.images.push(GtImage {
            id,
            file_name: frame.image_name.clone(),
            width: frame.width,
            height: frame.height,
            attributes: frame.attributes.clone(),
            source_format: frame.provenance.source_format.clone(),
        });
        for a in annotations {
            let area = match a.attributes.get("area").and_then(serde_json::Value::as_f64) {
                Some(area) => area,
                None => a.bbox.area(),
            };
            self.pending.push(Pending {
                class: self.class_map.map(&a.class).map(str::to_string),
                ignore: a.ignore,
                object: GtObject {
                    image,
                    target: Target::AllClasses,
                    region: a.crowd || a.ignore,
                    bbox: a.bbox,
                    area,
                    attributes: a.attributes.clone(),
                    origin: a.origin.clone(),
                    truncated: a.truncated,
                    occluded: a.occluded,
                },
            });
        }
    }

    fn finish(self, source_classes: Vec<String>, known_images: u64, source: String) -> GroundTruth {
        let categories: Vec<String> = self
            .pending
            .iter()
            .filter(|p| !p.object.region)
            .filter_map(|p| p.class.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let index = |class: &Option<String>| {
            class
                .as_ref()
                .and_then(|c| categories.binary_search(c).ok())
        };
        let mut objects = Vec::with_capacity(self.pending.len());
        for Pending {
            mut object,
            class,
            ignore,
        } in self.pending
        {
            object.target = match (index(&class), ignore) {
                (Some(k), _) => Target::Class(k),
                // An ignore region of a class that is not evaluated covers every class.
                (None, true) => Target::AllClasses,
                // Objects and crowds of classes that are not evaluated are left out.
                (None, false) => continue,
            };
            objects.push(object);
        }
        GroundTruth {
            images: self.images,
            objects,
            categories,
            source_classes,
            class_map: self.class_map.clone(),
            known_images,
            source,
        }
    }
}
