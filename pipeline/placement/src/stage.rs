//! The plan stage: a scenario's `insert_objects` over a dataset, written as a plan table.

use std::ops::Range;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use roadsynth_dataset::{Dataset, DatasetError, Projection};
use roadsynth_geometry::{
    DatasetFit, DatasetGeometry, DrivableSegmenter, FitOptions, GeometryError, GroundMasks,
    GroundModel, MaskCache, MaskSource, SemanticRoadClasses, ground_masks,
};
use roadsynth_scenario::settings::{InsertObjects, Operation, Scenario};
use roadsynth_types::{Annotation, Frame, FrameRecord};

use crate::{ClassStats, ClassStatsBuilder, GroundGeometry, MaskView, PlanRow, Planner, Scene};

/// Settings of the plan stage beyond the scenario.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    pub fit: FitOptions,
    pub road_classes: SemanticRoadClasses,
    /// Where ground masks are cached; default `<dataset>/cache/masks`.
    pub mask_cache: Option<PathBuf>,
    /// Frames planned per parallel chunk.
    pub chunk: usize,
    /// Plan only the first frames of the scenario's splits (previews).
    pub max_frames: Option<usize>,
}

impl PlanOptions {
    /// The ground-mask cache of the dataset at `dataset_root`: `mask_cache` when set.
    pub fn mask_cache_of(&self, dataset_root: &Path) -> MaskCache {
        self.mask_cache
            .clone()
            .map_or_else(|| MaskCache::for_dataset(dataset_root), MaskCache::new)
    }
}

impl Default for PlanOptions {
    fn default() -> Self {
        Self {
            fit: FitOptions::default(),
            road_classes: SemanticRoadClasses::default(),
            mask_cache: None,
            chunk: 256,
            max_frames: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    #[error("frame {frame}: {source}")]
    Geometry {
        frame: String,
        #[source]
        source: GeometryError,
    },
    #[error("scenario {0:?} has no insert_objects operation to plan")]
    NothingToPlan(String),
    #[error(
        "dataset {}: scenario {scenario:?} works on splits {wanted:?}, none of which it has (it has {present:?})",
        .dataset.display()
    )]
    NoScenarioSplit {
        dataset: std::path::PathBuf,
        scenario: String,
        wanted: Vec<String>,
        present: Vec<String>,
    },
}

/// The scenario's splits that `dataset` has. None at all is an error (a misspelt split, or the
/// wrong dataset), which would otherwise run to completion having done nothing; a missing one
/// among others is only warned about, so one scenario can serve datasets with fewer splits.
pub fn scenario_splits(dataset: &Dataset, scenario: &Scenario) -> Result<Vec<String>, PlanError> {
    let present = dataset.manifest().split_names();
    let (found, missing): (Vec<String>, Vec<String>) = scenario
        .splits
        .iter()
        .cloned()
        .partition(|s| present.contains(s));
    if found.is_empty() {
        return Err(PlanError::NoScenarioSplit {
            dataset: dataset.version_dir().to_path_buf(),
            scenario: scenario.name.clone(),
            wanted: scenario.splits.clone(),
            present,
        });
    }
    for split in missing {
        tracing::warn!(
            "dataset {} has no split {split:?} of scenario {:?} (it has {present:?})",
            dataset.version_dir().display(),
            scenario.name
        );
    }
    Ok(found)
}

/// A frame's plan rows, objects not placed, whether its masks were cached, its geometry source.
type FrameOutcome = (Vec<PlanRow>, u64, bool, String);

/// What a plan run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlanSummary {
    pub frames: u64,
    pub objects: u64,
    pub unplaced: u64,
    /// Frames whose masks came from the cache.
    pub cached_masks: u64,
    /// Geometry source per frame count (`intrinsics`, `fitted`, `horizon`).
    pub geometry: std::collections::BTreeMap<String, u64>,
}

impl GroundGeometry for GroundModel {
    fn horizon_row(&self) -> f64 {
        self.horizon_row
    }
    fn row_at_depth(&self, z_m: f64) -> f64 {
        GroundModel::row_at_depth(self, z_m)
    }
    fn depth_at_row(&self, v: f64) -> Option<f64> {
        GroundModel::depth_at_row(self, v)
    }
    fn pixel_height(&self, h_m: f64, z_m: f64) -> f64 {
        GroundModel::pixel_height(self, h_m, z_m)
    }
    fn source(&self) -> &str {
        self.source.as_str()
    }
}

/// The geometry and the class statistics of a dataset's splits: one pass without image bytes.
pub fn dataset_geometry(
    dataset: &Dataset,
    splits: &[String],
    fit: &FitOptions,
) -> Result<(DatasetGeometry, Vec<ClassStats>), PlanError> {
    // Streamed: a frame's boxes are reduced to the few numbers the fits need, so memory does not
    // grow with the dataset's annotations.
    let mut geometry = DatasetFit::new(fit);
    let mut stats = ClassStatsBuilder::default();
    for split in splits
        .iter()
        .filter(|s| dataset.manifest().splits.contains_key(*s))
    {
        for r in dataset.frames(split, Projection::WithoutImages)? {
            let r = r?;
            geometry.add(&r.frame, &r.annotations);
            stats.add(&r.annotations);
        }
    }
    Ok((geometry.finish(), stats.finish()))
}

/// The ground masks of a frame from its best source: cached if present, else computed and cached.
/// Model masks are computed beforehand (serially, one session) and only read here.
fn masks_for(
    record: &FrameRecord,
    ground: &GroundModel,
    cache: &MaskCache,
    options: &PlanOptions,
    segmenter_name: Option<&str>,
) -> Result<(GroundMasks, bool), GeometryError> {
    let best = match (record.semantic_label.is_some(), segmenter_name) {
        (true, _) => MaskSource::SemanticLabels,
        (false, Some(name)) => MaskSource::Model {
            name: name.to_string(),
        },
        (false, None) => MaskSource::BelowHorizon,
    };
    if let Some(masks) = cache.read(&record.frame.id, &best)? {
        return Ok((masks, true));
    }
    let masks = ground_masks(record, ground, &options.road_classes, None)?;
    cache.write(&record.frame.id, &masks)?;
    Ok((masks, false))
}

/// Plans every `insert_objects` operation of `scenario` over the scenario's splits of `dataset`,
/// `variants_per_frame` times per frame, and returns the plan rows in a deterministic order.
///
/// A drivable-area model is only used through `segmenter` for frames without semantic labels; its
/// masks are computed one frame at a time (the model session is not shared across threads).
pub fn plan_dataset(
    dataset_root: &Path,
    scenario: &Scenario,
    options: &PlanOptions,
    segmenter: Option<&mut dyn DrivableSegmenter>,
) -> Result<(Vec<PlanRow>, PlanSummary), PlanError> {
    // Before the fit, which reads every box: nothing to plan is known without it.
    if !scenario
        .operations
        .iter()
        .any(|op| matches!(op, Operation::InsertObjects(_)))
    {
        return Err(PlanError::NothingToPlan(scenario.name.clone()));
    }
    let dataset = Dataset::open(dataset_root)?;
    scenario_splits(&dataset, scenario)?;
    let (geometry, stats) = dataset_geometry(&dataset, &scenario.splits, &options.fit)?;
    plan_with_geometry(
        dataset_root,
        &dataset,
        &geometry,
        &stats,
        scenario,
        options,
        segmenter,
    )
}

/// A scenario's `insert_objects` operations with the dataset's class statistics: plans one frame
/// at a time, so that a caller that reads every frame anyway (the augment stage) plans it where
/// it renders it, without a pass of its own. Every frame variant draws from its own seed, so a
/// frame's plan does not depend on which frames were planned before it.
#[derive(Debug, Clone)]
pub struct ScenarioPlanner {
    scenario: String,
    seed: u64,
    variants: u32,
    operations: Vec<InsertObjects>,
    stats: Vec<ClassStats>,
}

/// One frame's plan: per `insert_objects` operation (in scenario order), its rows for every
/// variant; and the objects that found no place.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FramePlanRows {
    pub operations: Vec<Vec<PlanRow>>,
    pub unplaced: u64,
}

impl FramePlanRows {
    /// The rows of one variant from the `operation`-th `insert_objects` operation (an
    /// operation's rows come variant by variant).
    pub fn rows(&self, operation: usize, variant: u32) -> &[PlanRow] {
        let Some(rows) = self.operations.get(operation) else {
            return &[];
        };
        let start = rows.partition_point(|r| r.variant < variant);
        let end = rows.partition_point(|r| r.variant <= variant);
        &rows[start..end]
    }
}

impl ScenarioPlanner {
    /// Fails when the scenario has no `insert_objects` operation.
    pub fn new(scenario: &Scenario, stats: &[ClassStats]) -> Result<Self, PlanError> {
        let operations: Vec<InsertObjects> = scenario
            .operations
            .iter()
            .filter_map(|op| match op {
                Operation::InsertObjects(i) => Some(i.clone()),
                _ => None,
            })
            .collect();
        if operations.is_empty() {
            return Err(PlanError::NothingToPlan(scenario.name.clone()));
        }
        Ok(Self {
            scenario: scenario.name.clone(),
            seed: scenario.seed,
            variants: scenario.variants_per_frame,
            operations,
            stats: stats.to_vec(),
        })
    }

    /// Plans every variant of one frame on its ground geometry and masks.
    pub fn plan_frame(
        &self,
        frame: &Frame,
        existing: &[Annotation],
        ground: &GroundModel,
        masks: &GroundMasks,
    ) -> FramePlanRows {
        let scene = Scene {
            frame_id: frame.id.as_str(),
            width: frame.width,
            height: frame.height,
            existing,
            ground,
            drivable: MaskView::from(&masks.drivable),
            roadside: MaskView::from(&masks.roadside),
        };
        let mask_source = masks.source.cache_key();
        let mut out = FramePlanRows::default();
        for operation in &self.operations {
            let planner = Planner::new(operation, self.seed, &self.stats);
            let mut rows = Vec::new();
            for plan in planner.plan_variants(&scene, self.variants) {
                out.unplaced += u64::from(plan.unplaced);
                rows.extend(PlanRow::rows_of(&plan, &self.scenario, &mask_source));
            }
            out.operations.push(rows);
        }
        out
    }
}

/// Computes the drivable-area model's masks of the frames without semantic labels among `frames`
/// (a split and the positions of its frames to cover, in stored order) and caches them, so that
/// planning and rendering, which run in parallel, only read them: the model runs one frame at a
/// time (its session is not shared across threads). Frames already cached are not read again.
/// Returns how many masks were computed.
pub fn cache_model_masks(
    dataset_root: &Path,
    dataset: &Dataset,
    geometry: &DatasetGeometry,
    frames: &[(&str, Range<usize>)],
    options: &PlanOptions,
    segmenter: &mut dyn DrivableSegmenter,
) -> Result<u64, PlanError> {
    let cache = options.mask_cache_of(dataset_root);
    let source = MaskSource::Model {
        name: segmenter.name().to_string(),
    };
    let mut computed = 0;
    for (split, range) in frames
        .iter()
        .filter(|(s, _)| dataset.manifest().splits.contains_key(*s))
    {
        let (skip, take) = (range.start, range.len());
        // Which frames need the model, from the labels alone; images only for those.
        let mut missing = std::collections::HashSet::new();
        for record in dataset
            .frames(split, Projection::SemanticLabelsOnly)?
            .skip(skip)
            .take(take)
        {
            let record = record?;
            if record.semantic_label.is_none() && !cache.path(&source, &record.frame.id).exists() {
                missing.insert(record.frame.id);
            }
        }
        if missing.is_empty() {
            continue;
        }
        for record in dataset
            .frames(split, Projection::Full)?
            .skip(skip)
            .take(take)
        {
            let record = record?;
            if !missing.contains(&record.frame.id) {
                continue;
            }
            let ground = geometry.for_frame(&record.frame);
            let mut model_masks = || -> Result<(), GeometryError> {
                let masks = ground_masks(
                    &record,
                    &ground,
                    &options.road_classes,
                    Some(&mut *segmenter),
                )?;
                cache.write(&record.frame.id, &masks)?;
                Ok(())
            };
            model_masks().map_err(|source| PlanError::Geometry {
                frame: record.frame.id.to_string(),
                source,
            })?;
            computed += 1;
        }
    }
    Ok(computed)
}

/// [`plan_dataset`] with the dataset's geometry and class statistics fitted.
fn plan_with_geometry(
    dataset_root: &Path,
    dataset: &Dataset,
    geometry: &DatasetGeometry,
    stats: &[ClassStats],
    scenario: &Scenario,
    options: &PlanOptions,
    segmenter: Option<&mut dyn DrivableSegmenter>,
) -> Result<(Vec<PlanRow>, PlanSummary), PlanError> {
    let planner = ScenarioPlanner::new(scenario, stats)?;
    let segmenter_name = segmenter.as_ref().map(|s| s.name().to_string());
    if let Some(seg) = segmenter {
        let first = 0..options.max_frames.unwrap_or(usize::MAX);
        let frames: Vec<(&str, Range<usize>)> = scenario
            .splits
            .iter()
            .map(|s| (s.as_str(), first.clone()))
            .collect();
        cache_model_masks(dataset_root, dataset, geometry, &frames, options, seg)?;
    }
    let cache = options.mask_cache_of(dataset_root);

    let mut rows = Vec::new();
    let mut summary = PlanSummary::default();
    for split in scenario
        .splits
        .iter()
        .filter(|s| dataset.manifest().splits.contains_key(*s))
    {
        let mut reader = dataset.frames(split, Projection::SemanticLabelsOnly)?;
        loop {
            let left = options
                .max_frames
                .map_or(usize::MAX, |m| m.saturating_sub(summary.frames as usize));
            let chunk: Vec<FrameRecord> = reader
                .by_ref()
                .take(options.chunk.min(left))
                .collect::<Result<_, _>>()?;
            if chunk.is_empty() {
                break;
            }
            let planned: Vec<Result<FrameOutcome, PlanError>> = chunk
                .par_iter()
                .map(|r| {
                    let ground = geometry.for_frame(&r.frame);
                    let (masks, cached) =
                        masks_for(r, &ground, &cache, options, segmenter_name.as_deref()).map_err(
                            |source| PlanError::Geometry {
                                frame: r.frame.id.to_string(),
                                source,
                            },
                        )?;
                    let planned = planner.plan_frame(&r.frame, &r.annotations, &ground, &masks);
                    Ok((
                        planned.operations.concat(),
                        planned.unplaced,
                        cached,
                        ground.source.as_str().to_string(),
                    ))
                })
                .collect();
            for p in planned {
                let (frame_rows, unplaced, cached, geometry_source) = p?;
                summary.frames += 1;
                summary.objects += frame_rows.len() as u64;
                summary.unplaced += unplaced;
                summary.cached_masks += u64::from(cached);
                *summary.geometry.entry(geometry_source).or_insert(0) += 1;
                rows.extend(frame_rows);
            }
        }
    }
    Ok((rows, summary))
}
