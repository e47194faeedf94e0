//! The plan stage: a scenario's `insert_objects` over a dataset, written as a plan table.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use roadsynth_dataset::{Dataset, DatasetError, Projection};
use roadsynth_geometry::{
    DatasetGeometry, DrivableSegmenter, FitOptions, GeometryError, GroundMasks, GroundModel,
    MaskCache, MaskSource, SemanticRoadClasses, fit_dataset, ground_masks,
};
use roadsynth_scenario::settings::{Operation, Scenario};
use roadsynth_types::{Annotation, Frame, FrameRecord};

use crate::{
    ClassStats, GroundGeometry, MaskView, PlanRow, Planner, Scene, class_stats_from_annotations,
};

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
    let mut frames: Vec<(Frame, Vec<Annotation>)> = Vec::new();
    for split in splits
        .iter()
        .filter(|s| dataset.manifest().splits.contains_key(*s))
    {
        for r in dataset.frames(split, Projection::WithoutImages)? {
            let r = r?;
            frames.push((r.frame, r.annotations));
        }
    }
    let geometry = fit_dataset(frames.iter().map(|(f, a)| (f, a.as_slice())), fit);
    let stats = class_stats_from_annotations(frames.iter().flat_map(|(_, a)| a));
    Ok((geometry, stats))
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

/// [`plan_dataset`] with the dataset's geometry and class statistics already fitted (by
/// [`dataset_geometry`] with `options.fit`), for a caller that needs them too: the fit reads
/// every box of the dataset.
pub fn plan_with_geometry(
    dataset_root: &Path,
    dataset: &Dataset,
    geometry: &DatasetGeometry,
    stats: &[ClassStats],
    scenario: &Scenario,
    options: &PlanOptions,
    mut segmenter: Option<&mut dyn DrivableSegmenter>,
) -> Result<(Vec<PlanRow>, PlanSummary), PlanError> {
    let operations: Vec<_> = scenario
        .operations
        .iter()
        .filter_map(|op| match op {
            Operation::InsertObjects(i) => Some(i),
            _ => None,
        })
        .collect();
    if operations.is_empty() {
        return Err(PlanError::NothingToPlan(scenario.name.clone()));
    }
    let planners: Vec<Planner<'_>> = operations
        .iter()
        .map(|op| Planner::new(op, scenario.seed, stats))
        .collect();
    let cache = options
        .mask_cache
        .clone()
        .map_or_else(|| MaskCache::for_dataset(dataset_root), MaskCache::new);
    let segmenter_name = segmenter.as_ref().map(|s| s.name().to_string());

    let mut rows = Vec::new();
    let mut summary = PlanSummary::default();
    let projection = if segmenter.is_some() {
        Projection::Full
    } else {
        Projection::SemanticLabelsOnly
    };
    for split in scenario
        .splits
        .iter()
        .filter(|s| dataset.manifest().splits.contains_key(*s))
    {
        let mut reader = dataset.frames(split, projection)?;
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
            // Model masks first, serially: one session, cached for the parallel pass.
            if let Some(seg) = segmenter.as_deref_mut() {
                for r in chunk.iter().filter(|r| r.semantic_label.is_none()) {
                    let ground = geometry.for_frame(&r.frame);
                    let source = MaskSource::Model {
                        name: seg.name().to_string(),
                    };
                    let mut model_masks = || -> Result<(), GeometryError> {
                        if cache.read(&r.frame.id, &source)?.is_none() {
                            let masks =
                                ground_masks(r, &ground, &options.road_classes, Some(&mut *seg))?;
                            cache.write(&r.frame.id, &masks)?;
                        }
                        Ok(())
                    };
                    model_masks().map_err(|source| PlanError::Geometry {
                        frame: r.frame.id.to_string(),
                        source,
                    })?;
                }
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
                    let scene = Scene {
                        frame_id: r.frame.id.as_str(),
                        width: r.frame.width,
                        height: r.frame.height,
                        existing: &r.annotations,
                        ground: &ground,
                        drivable: MaskView {
                            width: masks.drivable.width,
                            height: masks.drivable.height,
                            bits: &masks.drivable.bits,
                        },
                        roadside: MaskView {
                            width: masks.roadside.width,
                            height: masks.roadside.height,
                            bits: &masks.roadside.bits,
                        },
                    };
                    let mut out = Vec::new();
                    let mut unplaced = 0;
                    for planner in &planners {
                        for plan in planner.plan_variants(&scene, scenario.variants_per_frame) {
                            unplaced += u64::from(plan.unplaced);
                            out.extend(PlanRow::rows_of(
                                &plan,
                                &scenario.name,
                                &masks.source.cache_key(),
                            ));
                        }
                    }
                    Ok((out, unplaced, cached, ground.source.as_str().to_string()))
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
