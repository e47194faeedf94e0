//! The augment stage: a scenario over a dataset, as a new dataset version. Plans insertions
//! (placement), renders them (engine), edits vehicles, applies weather, filters insertions with the
//! detector, and writes the real frames plus every generated variant with its provenance.
//!
//! Frames stream through in bounded chunks: the reader yields a chunk, the chunk's variants render
//! in parallel (one engine per worker thread), and the writer takes them in input order, so memory
//! is bounded by the chunk and the output does not depend on the thread count.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use image::RgbImage;
use rayon::prelude::*;
use roadsynth_dataset::{Dataset, DatasetWriter, Projection, WriteOptions};
use roadsynth_geometry::{
    DatasetGeometry, FitOptions, GroundMasks, GroundModel, MaskCache, MaskSource,
    SemanticRoadClasses, ground_masks,
};
use roadsynth_placement::{PlanOptions, PlanRow, dataset_geometry, plan_dataset, variant_seed};
use roadsynth_scenario::settings::{Operation, Scenario, Weather};
use roadsynth_types::{
    Annotation, BBox, FrameId, FrameRecord, ImageFormat, ProvenanceStep, TOOL_VERSION,
};
use roadsynth_weather::{DepthMap, PixelMask, WeatherContext, WeatherEffect};

use crate::StageError;
use crate::render::{RenderSettings, Renderer, RendererKind};

/// Settings of the augment stage.
#[derive(Debug, Clone)]
pub struct AugmentConfig {
    /// Input dataset root (its current version is read).
    pub dataset: PathBuf,
    /// Output dataset root: a new version with the real frames and the generated variants.
    pub output: PathBuf,
    /// Asset bank; default: the scenario's `assets`.
    pub assets: Option<PathBuf>,
    pub renderer: RendererKind,
    /// Stable Diffusion inpainting model folder (standard ONNX layout).
    pub diffusion_model: Option<PathBuf>,
    /// COCO detector (YOLOX ONNX) for the quality filter; `None`: insertions are not filtered.
    pub detector: Option<PathBuf>,
    /// Detector score an insertion needs to be kept.
    pub filter_threshold: f32,
    /// Vehicle segmentation model (`DeepLabV3` VOC ONNX); `None`: `GrabCut`.
    pub vehicle_model: Option<PathBuf>,
    /// Drivable-area model for frames without semantic labels.
    pub drivable_model: Option<PathBuf>,
    /// Augment only the first frames of the scenario's splits.
    pub max_frames: Option<usize>,
    /// Leave the real frames out of the output.
    pub generated_only: bool,
}

/// What one augment run did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct AugmentSummary {
    pub frames_read: u64,
    pub real_frames_written: u64,
    pub variants_written: u64,
    pub variants_unchanged: u64,
    pub insertions_planned: u64,
    pub insertions_rendered: u64,
    pub insertions_filtered_out: u64,
    pub insertions_not_rendered: u64,
    pub vehicles_edited: u64,
    pub weather_applied: u64,
    pub quarantined: u64,
    pub version: String,
}

/// Everything a worker needs to turn one real frame into its variants.
struct Job<'a> {
    scenario: &'a Scenario,
    plans: &'a HashMap<(String, u32), Vec<PlanRow>>,
    geometry: &'a DatasetGeometry,
    road_classes: &'a SemanticRoadClasses,
    masks: &'a MaskCache,
    segmenter_name: Option<&'a str>,
}

/// One frame's variants, or why a variant could not be made.
type FrameOutput = (
    Vec<Result<(Option<FrameRecord>, VariantCounts), String>>,
    FrameRecord,
);

#[derive(Debug, Clone, Copy, Default)]
struct VariantCounts {
    planned: u64,
    rendered: u64,
    filtered_out: u64,
    not_rendered: u64,
    vehicles: u64,
    weather: u64,
}

/// Runs `scenario` over `args.dataset` into a new version of `args.output`. Frames a stage cannot
/// process go to the quarantine table with the reason; the run goes on.
pub fn augment(args: &AugmentConfig, scenario: &Scenario) -> Result<AugmentSummary, StageError> {
    let dataset = Dataset::open(&args.dataset).map_err(|source| StageError::Dataset {
        path: args.dataset.clone(),
        source: Box::new(source),
    })?;
    let plan_options = PlanOptions {
        max_frames: args.max_frames,
        ..PlanOptions::default()
    };
    let mut drivable = match &args.drivable_model {
        Some(path) => {
            Some(roadsynth_models::DrivableAreaModel::load(path).map_err(StageError::Model)?)
        }
        None => None,
    };
    let segmenter_name = drivable.as_ref().map(|m| m.name().to_string());
    let inserts = scenario
        .operations
        .iter()
        .any(|op| matches!(op, Operation::InsertObjects(_)));
    let mut plans: HashMap<(String, u32), Vec<PlanRow>> = HashMap::new();
    let mut summary = AugmentSummary::default();
    if inserts {
        let segmenter = drivable
            .as_mut()
            .map(|m| m as &mut dyn roadsynth_geometry::DrivableSegmenter);
        let (rows, _) = plan_dataset(&args.dataset, scenario, &plan_options, segmenter)?;
        for row in rows {
            plans
                .entry((row.frame_id.clone(), row.variant))
                .or_default()
                .push(row);
        }
    }
    let (geometry, _) = dataset_geometry(&dataset, &scenario.splits, &FitOptions::default())?;
    let settings = RenderSettings::from_args(args, scenario)?;
    let masks = MaskCache::for_dataset(&args.dataset);
    let job = Job {
        scenario,
        plans: &plans,
        geometry: &geometry,
        road_classes: &plan_options.road_classes,
        masks: &masks,
        segmenter_name: segmenter_name.as_deref(),
    };

    let out_err = |source| StageError::Dataset {
        path: args.output.clone(),
        source: Box::new(source),
    };
    let in_err = |source| StageError::Dataset {
        path: args.dataset.clone(),
        source: Box::new(source),
    };
    let mut writer = DatasetWriter::create(
        &args.output,
        WriteOptions {
            carry_other_splits: false,
            ..WriteOptions::default()
        },
    )
    .map_err(out_err)?;
    let augmented: Vec<&String> = scenario
        .splits
        .iter()
        .filter(|s| dataset.manifest().splits.contains_key(*s))
        .collect();
    let chunk = rayon::current_num_threads().max(1) * 4;
    for split in dataset.manifest().splits.keys() {
        let is_augmented = augmented.contains(&split);
        if !is_augmented && args.generated_only {
            continue;
        }
        let mut reader = dataset.frames(split, Projection::Full).map_err(in_err)?;
        let mut taken = 0usize;
        loop {
            let left = if is_augmented {
                args.max_frames.map_or(usize::MAX, |m| m - taken.min(m))
            } else {
                usize::MAX
            };
            let records: Vec<FrameRecord> = reader
                .by_ref()
                .take(chunk.min(left))
                .collect::<Result<_, _>>()
                .map_err(in_err)?;
            if records.is_empty() {
                break;
            }
            taken += records.len();
            if !is_augmented {
                for r in &records {
                    writer.write(r).map_err(out_err)?;
                    summary.real_frames_written += 1;
                }
                continue;
            }
            summary.frames_read += records.len() as u64;
            let outputs: Vec<FrameOutput> = records
                .into_par_iter()
                .map_init(
                    || Renderer::new(&settings),
                    |renderer, record| (variants_of(&job, renderer, &record), record),
                )
                .collect();
            for (variants, real) in outputs {
                if !args.generated_only {
                    writer.write(&real).map_err(out_err)?;
                    summary.real_frames_written += 1;
                }
                for variant in variants {
                    match variant {
                        Ok((record, counts)) => {
                            if let Some(record) = record {
                                writer.write(&record).map_err(out_err)?;
                                summary.variants_written += 1;
                            } else {
                                summary.variants_unchanged += 1;
                            }
                            summary.insertions_planned += counts.planned;
                            summary.insertions_rendered += counts.rendered;
                            summary.insertions_filtered_out += counts.filtered_out;
                            summary.insertions_not_rendered += counts.not_rendered;
                            summary.vehicles_edited += counts.vehicles;
                            summary.weather_applied += counts.weather;
                        }
                        Err(reason) => {
                            summary.quarantined += 1;
                            tracing::warn!("{reason}");
                            writer.quarantine(roadsynth_types::Quarantined {
                                file: real.frame.source_uri.clone(),
                                line: None,
                                column: None,
                                split: split.clone(),
                                kind: roadsynth_types::QuarantineKind::StageFailed,
                                reason,
                            });
                        }
                    }
                }
            }
        }
    }
    let manifest = writer.commit(serde_json::json!({
        "operation": "augment",
        "scenario": scenario.name,
        "seed": scenario.seed,
        "input": args.dataset,
        "input_version": dataset.version_dir().file_name().map(|n| n.to_string_lossy().into_owned()),
        "renderer": settings.describe(),
        "tool_version": TOOL_VERSION,
    }))
    .map_err(out_err)?;
    summary.version.clone_from(&manifest.version);
    Ok(summary)
}

/// The variants of one real frame: each is the frame with the scenario's operations applied in
/// order, or `None` when nothing changed (every insertion filtered out and no other operation).
fn variants_of(
    job: &Job<'_>,
    renderer: &mut Result<Renderer, String>,
    record: &FrameRecord,
) -> Vec<Result<(Option<FrameRecord>, VariantCounts), String>> {
    let renderer = match renderer {
        Ok(r) => r,
        Err(e) => return vec![Err(e.clone())],
    };
    let decoded = match record.image.as_deref().map(image::load_from_memory) {
        Some(Ok(img)) => img.to_rgb8(),
        Some(Err(e)) => {
            return vec![Err(format!(
                "{}: cannot decode: {e}",
                record.frame.source_uri
            ))];
        }
        None => return vec![Err(format!("{}: no image bytes", record.frame.source_uri))],
    };
    // Semantic labels tell the engine which pixels belong to existing objects (occlusion).
    let semantic = record
        .semantic_label
        .as_deref()
        .and_then(|b| image::load_from_memory(b).ok())
        .map(|l| l.to_luma8())
        .filter(|l| l.dimensions() == decoded.dimensions());
    let ground = job.geometry.for_frame(&record.frame);
    let masks = match frame_masks(job, record, &ground) {
        Ok(m) => m,
        Err(e) => {
            return vec![Err(format!(
                "{}: ground masks: {e}",
                record.frame.source_uri
            ))];
        }
    };
    (0..job.scenario.variants_per_frame)
        .map(|variant| {
            let frame = FrameContext {
                record,
                decoded: &decoded,
                semantic: semantic.as_ref(),
                ground: &ground,
                masks: &masks,
            };
            variant_of(job, renderer, &frame, variant)
                .map_err(|e| format!("{} variant {variant}: {e}", record.frame.source_uri))
        })
        .collect()
}

fn frame_masks(
    job: &Job<'_>,
    record: &FrameRecord,
    ground: &GroundModel,
) -> Result<GroundMasks, roadsynth_geometry::GeometryError> {
    let best = match (record.semantic_label.is_some(), job.segmenter_name) {
        (true, _) => MaskSource::SemanticLabels,
        (false, Some(name)) => MaskSource::Model {
            name: name.to_string(),
        },
        (false, None) => MaskSource::BelowHorizon,
    };
    if let Some(m) = job.masks.read(&record.frame.id, &best)? {
        return Ok(m);
    }
    ground_masks(record, ground, job.road_classes, None)
}

/// What every variant of a frame shares.
struct FrameContext<'a> {
    record: &'a FrameRecord,
    decoded: &'a RgbImage,
    semantic: Option<&'a image::GrayImage>,
    ground: &'a GroundModel,
    masks: &'a GroundMasks,
}

fn variant_of(
    job: &Job<'_>,
    renderer: &mut Renderer,
    frame: &FrameContext<'_>,
    variant: u32,
) -> Result<(Option<FrameRecord>, VariantCounts), String> {
    let scenario = job.scenario;
    let record = frame.record;
    let seed = variant_seed(scenario.seed, record.frame.id.as_str(), variant);
    let mut image = frame.decoded.clone();
    let mut inserted = false;
    let mut annotations = record.annotations.clone();
    let mut steps: Vec<ProvenanceStep> = Vec::new();
    let mut counts = VariantCounts::default();
    let mut changed = false;
    for (index, operation) in scenario.operations.iter().enumerate() {
        let op_seed = operation_seed(seed, index);
        match operation {
            Operation::InsertObjects(_) => {
                let rows = job
                    .plans
                    .get(&(record.frame.id.as_str().to_string(), variant))
                    .map_or(&[][..], Vec::as_slice);
                counts.planned += rows.len() as u64;
                if rows.is_empty() {
                    continue;
                }
                // Each plan row carries its own seed (placement derived it from the variant's).
                let outcome = renderer
                    .insert(&image, &annotations, frame.semantic, rows)
                    .map_err(|e| e.to_string())?;
                counts.rendered += outcome.kept;
                counts.filtered_out += outcome.filtered_out;
                counts.not_rendered += outcome.not_rendered;
                if outcome.kept > 0 {
                    changed = true;
                    inserted = true;
                    image = outcome.image;
                    annotations = outcome.annotations;
                    steps.push(outcome.step);
                }
            }
            Operation::EditVehicles(edit) => {
                let outcome = renderer
                    .edit_vehicles(
                        &image,
                        &annotations,
                        frame.semantic,
                        edit,
                        &scenario.name,
                        op_seed,
                    )
                    .map_err(|e| e.to_string())?;
                if outcome.edited > 0 {
                    changed = true;
                    counts.vehicles += outcome.edited;
                    image = outcome.image;
                    annotations = outcome.annotations;
                    steps.push(outcome.step);
                }
            }
            Operation::Weather(weather) => {
                let (out, step) = apply_weather(
                    weather,
                    &image,
                    &mut annotations,
                    record,
                    frame.ground,
                    frame.masks,
                    job.road_classes,
                    &scenario.name,
                    op_seed,
                )?;
                image = out;
                steps.push(step);
                counts.weather += 1;
                changed = true;
            }
        }
    }
    if !changed {
        return Ok((None, counts));
    }
    Ok((
        Some(generated_record(
            record,
            image,
            annotations,
            steps,
            &scenario.name,
            variant,
            inserted,
        )?),
        counts,
    ))
}

/// Each operation of a variant draws from its own stream: adding an operation does not change the
/// random choices of the others.
fn operation_seed(variant_seed: u64, index: usize) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(&variant_seed.to_le_bytes());
    h.update(&(index as u64).to_le_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&h.finalize().as_bytes()[..8]);
    u64::from_le_bytes(first)
}

/// The weather context of a frame: depth from its ground plane, vertical structures above ground
/// and sky from the semantic labels when it has them, its boxes at their foot points.
#[allow(clippy::too_many_arguments)]
fn apply_weather(
    weather: &Weather,
    image: &RgbImage,
    annotations: &mut [Annotation],
    record: &FrameRecord,
    ground: &GroundModel,
    masks: &GroundMasks,
    classes: &SemanticRoadClasses,
    scenario: &str,
    seed: u64,
) -> Result<(RgbImage, ProvenanceStep), String> {
    let (w, h) = image.dimensions();
    let e = |e: roadsynth_weather::WeatherError| e.to_string();
    let mut depth = DepthMap::from_ground_plane(
        w,
        h,
        ground.horizon_row,
        ground.focal_px * ground.camera_height_m,
    )
    .map_err(e)?;
    let drivable = PixelMask::new(w, h, masks.drivable.bits.clone()).map_err(e)?;
    let roadside = PixelMask::new(w, h, masks.roadside.bits.clone()).map_err(e)?;
    let ground_mask = drivable.union(&roadside).map_err(e)?;
    if let Some(labels) = record
        .semantic_label
        .as_deref()
        .and_then(|b| image::load_from_memory(b).ok())
        .map(|l| l.to_luma8())
        .filter(|l| l.dimensions() == (w, h))
    {
        depth.with_vertical_structures(&ground_mask).map_err(e)?;
        if !classes.sky.is_empty() {
            let sky = PixelMask::from_labels(w, h, labels.as_raw(), &classes.sky).map_err(e)?;
            depth.with_sky(&sky).map_err(e)?;
        }
    }
    let boxes: Vec<BBox> = annotations.iter().map(|a| a.bbox).collect();
    depth.with_boxes_on_ground(&boxes);
    let vehicles: Vec<BBox> = annotations
        .iter()
        .filter(|a| is_vehicle(&a.class))
        .map(|a| a.bbox)
        .collect();
    let ctx = WeatherContext::new(&depth)
        .with_drivable(&drivable)
        .with_pavement(&roadside)
        .with_boxes(&boxes)
        .with_lights_in(&vehicles);
    let ctx = match &record.frame.camera {
        Some(c) => ctx.with_intrinsics(roadsynth_weather::Intrinsics {
            fx: c.fx,
            fy: c.fy,
            cx: c.cx,
            cy: c.cy,
        }),
        None => ctx,
    };
    let effect = WeatherEffect::from_scenario(weather);
    let out = effect.apply(image, &ctx, seed).map_err(e)?;
    for (a, b) in annotations.iter_mut().zip(&out.per_box) {
        a.attributes.insert(
            format!("{}_transmittance", effect.name()),
            serde_json::json!(b.transmittance),
        );
        a.attributes.insert(
            format!("{}_visibility_m", effect.name()),
            serde_json::json!(b.visibility_m),
        );
        a.attributes
            .insert("weather".into(), serde_json::json!(effect.name()));
    }
    let step = ProvenanceStep {
        operation: format!("weather.{}", effect.name()),
        scenario: Some(scenario.to_string()),
        seed: Some(seed),
        params: out.params,
        tool_version: TOOL_VERSION.to_string(),
    };
    Ok((out.image, step))
}

fn is_vehicle(class: &str) -> bool {
    matches!(
        class,
        "car"
            | "truck"
            | "bus"
            | "van"
            | "vehicle"
            | "motorcycle"
            | "Car"
            | "Van"
            | "Truck"
            | "Tram"
    )
}

/// A generated frame: PNG (lossless, so pixels outside the edit masks stay exactly the source's
/// decoded pixels), a content id, the real frame as parent, every step in provenance.
fn generated_record(
    real: &FrameRecord,
    image: RgbImage,
    annotations: Vec<Annotation>,
    steps: Vec<ProvenanceStep>,
    scenario: &str,
    variant: u32,
    inserted: bool,
) -> Result<FrameRecord, String> {
    let mut bytes = Vec::new();
    image::DynamicImage::ImageRgb8(image)
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .map_err(|e| format!("encoding PNG: {e}"))?;
    let mut frame = real.frame.clone();
    frame.id = FrameId::from_image_bytes(&bytes);
    frame.image_format = ImageFormat::Png;
    let stem = Path::new(&real.frame.image_name)
        .with_extension("")
        .to_string_lossy()
        .into_owned();
    frame.image_name = format!("{stem}__{scenario}_v{variant}.png");
    frame.provenance.parent = Some(real.frame.id.clone());
    if inserted {
        frame.semantic_label = None;
    }
    frame.provenance.steps.extend(steps);
    Ok(FrameRecord {
        frame,
        annotations,
        image: Some(bytes),
        // Inserted objects cover labelled pixels, so the labels no longer describe the frame;
        // weather and vehicle edits keep every pixel's class.
        semantic_label: if inserted {
            None
        } else {
            real.semantic_label.clone()
        },
    })
}
