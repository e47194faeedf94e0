//! The augment stage: a scenario over a dataset, as a new dataset version. Plans insertions
//! (placement), renders them (engine), edits vehicles, applies weather, filters insertions with the
//! detector, and writes the real frames plus every generated variant with its provenance.
//!
//! The ground geometry is fitted first, over the whole dataset (labels only), and a drivable-area
//! model's masks are computed and cached (the model runs one frame at a time). Then frames stream
//! through a [`Flow`]: a reader thread → workers (decode, plan, render the variants, weather,
//! encode; one [`Renderer`] per worker, since ONNX sessions are not shared between threads) → the
//! writer on the calling thread, which restores input order. The channels between them are
//! bounded by items and bytes, so memory does not grow with the dataset, and the output does not
//! depend on the number of workers.
//!
//! With a [`ShardTarget`] the stage reads only its shard's contiguous range of the input and writes
//! it as a shard output ([`roadsynth_dataset::shard`]); everything else is the same, so the shards'
//! commit is the unsharded version, byte for byte.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::{GrayImage, RgbImage};
use roadsynth_dataset::shard::{self, ItemRange, ShardId, ShardRun, ShardWriter};
use roadsynth_dataset::{Dataset, DatasetWriter, FrameReader, Projection};
use roadsynth_engine::BlendMode;
use roadsynth_geometry::{
    DatasetGeometry, GeometryError, GroundMasks, GroundModel, MaskCache, MaskSource,
    SemanticRoadClasses, ground_masks, masks_from_label_image,
};
use roadsynth_placement::{
    FramePlanRows, PlanOptions, PlanRow, ScenarioPlanner, cache_model_masks, dataset_geometry,
    scenario_splits, variant_seed,
};
use roadsynth_scenario::settings::{Operation, Scenario, Weather};
use roadsynth_types::{
    Annotation, BBox, FrameId, FrameRecord, ImageFormat, ProvenanceStep, TOOL_VERSION,
};
use roadsynth_weather::{DepthMap, PixelMask, WeatherContext, WeatherEffect, WeatherMaps};

use crate::StageError;
use crate::flow::{Flow, FlowOptions, ItemFailed, SinkError};
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
    /// How the exemplar renderer blends cut-outs: `Auto` (Poisson where a measurement says it
    /// helps, the default), `Feather` (about 6% faster a frame: no Poisson solve to measure) or
    /// `Poisson`.
    pub blend: BlendMode,
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
    /// Augment only the first N frames of each of the scenario's splits, and write only those of
    /// them (a quick, small output); other splits are copied whole.
    pub max_frames: Option<usize>,
    /// Leave the real frames out of the output.
    pub generated_only: bool,
    /// Workers and channel limits of the streaming flow; the output is the same for any of them.
    pub flow: FlowOptions,
    /// Called for every written variant, in output order (see [`VariantObserver`]).
    pub observer: Option<VariantObserver>,
    /// Process only this shard of the input and write it for `roadsynth dataset commit-shards`
    /// instead of a version of `output` (see [`roadsynth_dataset::shard`]).
    pub shard: Option<ShardTarget>,
}

/// One shard of a sharded run: which, and where shard outputs go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardTarget {
    pub id: ShardId,
    /// The run's shard folder (default `<output>.shards`).
    pub dir: PathBuf,
}

impl Default for AugmentConfig {
    /// No paths (give at least `dataset` and `output`), the exemplar renderer, the CLI's filter
    /// threshold, the default flow, no observer.
    fn default() -> Self {
        Self {
            dataset: PathBuf::new(),
            output: PathBuf::new(),
            assets: None,
            renderer: RendererKind::default(),
            blend: BlendMode::default(),
            diffusion_model: None,
            detector: None,
            filter_threshold: 0.25,
            vehicle_model: None,
            drivable_model: None,
            max_frames: None,
            generated_only: false,
            flow: FlowOptions::default(),
            observer: None,
            shard: None,
        }
    }
}

/// One written variant, for inspection (e.g. logging to a viewer). Everything is borrowed from the
/// writer for the duration of the call: clone what you keep.
#[derive(Debug, Clone, Copy)]
pub struct VariantEvent<'a> {
    /// Position of the real frame in the run's input order (over every split read, pass-through
    /// frames included): increases from one event to the next, equal for a frame's variants.
    pub sequence: u64,
    /// Split of the frame.
    pub split: &'a str,
    /// Variant number of the frame (`0..variants_per_frame`).
    pub variant: u32,
    /// The real frame as read: annotations, encoded image, semantic labels.
    pub real: &'a FrameRecord,
    /// The generated frame as written: PNG bytes, annotations, provenance.
    pub generated: &'a FrameRecord,
    /// The plan rows this variant's insertion used (empty when the scenario inserts nothing).
    pub plan: &'a [PlanRow],
    /// 255 where insertions or vehicle edits wrote pixels, 0 where the image is the real frame's
    /// bit for bit (before weather, which changes every pixel). `None` when neither ran.
    pub edit_mask: Option<&'a GrayImage>,
    /// The maps of the variant's weather effect (fog transmission, rain and snow particles);
    /// the last one when the scenario has several. `None` without weather.
    pub weather: Option<&'a WeatherMaps>,
    /// The frame's ground plane (horizon, focal length, camera height) that placement and weather
    /// used.
    pub ground: Option<&'a GroundModel>,
}

/// A callback for every written variant: called on the writer's thread, after the variant is
/// written, in output order. It runs inline, so a slow observer slows the writer and, through the
/// bounded channels, the whole stage (backpressure, not buffering: memory stays bounded). Masks
/// and weather maps are kept for the observer only when one is set.
#[derive(Clone)]
pub struct VariantObserver(Arc<dyn Fn(&VariantEvent<'_>) + Send + Sync>);

impl VariantObserver {
    pub fn new(f: impl Fn(&VariantEvent<'_>) + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    fn notify(&self, event: &VariantEvent<'_>) {
        (self.0)(event);
    }
}

impl std::fmt::Debug for VariantObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VariantObserver(..)")
    }
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
    /// Renders beyond each insertion's first, of insertions the filter rejected.
    pub insertions_rendered_again: u64,
    pub vehicles_edited: u64,
    pub weather_applied: u64,
    pub quarantined: u64,
    /// The new version; for a shard, its output folder.
    pub version: String,
}

/// Everything a worker needs to turn one real frame into its variants, shared by all workers.
struct Job {
    scenario: Scenario,
    /// Plans each frame's insertions where it is rendered; `None` when the scenario inserts
    /// nothing.
    planner: Option<ScenarioPlanner>,
    geometry: DatasetGeometry,
    road_classes: SemanticRoadClasses,
    masks: MaskCache,
    segmenter_name: Option<String>,
    settings: RenderSettings,
    /// Keep edit masks and weather maps for the observer.
    inspect: bool,
}

/// A frame as the reader hands it on.
struct FrameJob {
    split: Arc<str>,
    /// In one of the scenario's splits (otherwise copied through unchanged).
    augmented: bool,
    record: FrameRecord,
}

/// One variant of a frame: the generated frame, or `None` when nothing changed.
struct Variant {
    number: u32,
    record: Option<FrameRecord>,
    counts: VariantCounts,
    inspection: Inspection,
}

/// What the observer gets beyond the records (only collected when there is one).
#[derive(Default)]
struct Inspection {
    /// The plan rows the variant's insertions used.
    plan: Vec<PlanRow>,
    edit_mask: Option<GrayImage>,
    weather: Option<WeatherMaps>,
    ground: Option<GroundModel>,
}

/// A frame's variants, or why a variant could not be made.
type FrameOutput = Vec<Result<Variant, String>>;

#[derive(Debug, Clone, Copy, Default)]
struct VariantCounts {
    planned: u64,
    rendered: u64,
    filtered_out: u64,
    not_rendered: u64,
    rendered_again: u64,
    vehicles: u64,
    weather: u64,
}

/// Heap bytes of a record, roughly: its encoded images plus a guess per annotation. The channels
/// budget on this, so it needs to be in proportion, not exact.
fn record_bytes(r: &FrameRecord) -> usize {
    // Capacity, not length: an encoded frame's buffer is allocated for the raw frame.
    r.image.as_ref().map_or(0, Vec::capacity)
        + r.semantic_label.as_ref().map_or(0, Vec::len)
        + 512 * r.annotations.len()
        + 1024
}

fn output_bytes(output: &FrameOutput) -> usize {
    output
        .iter()
        .flatten()
        .map(|v| {
            v.record.as_ref().map_or(0, record_bytes)
                + v.inspection
                    .edit_mask
                    .as_ref()
                    .map_or(0, |m| m.as_raw().len())
                + v.inspection.weather.as_ref().map_or(0, |w| {
                    [&w.transmission, &w.raw_transmission, &w.particles]
                        .into_iter()
                        .flatten()
                        .map(|m| 4 * m.data.len())
                        .sum()
                })
        })
        .sum()
}

/// Runs `scenario` over `args.dataset` into a new version of `args.output`. Frames a stage cannot
/// process go to the quarantine table with the reason; the run goes on.
pub fn augment(args: &AugmentConfig, scenario: &Scenario) -> Result<AugmentSummary, StageError> {
    let dataset = Dataset::open(&args.dataset).map_err(|source| StageError::Dataset {
        path: args.dataset.clone(),
        source: Box::new(source),
    })?;
    scenario_splits(&dataset, scenario)?;
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
    // Fitted once: planning and rendering share the geometry. The asset bank loads meanwhile.
    let (fitted, settings) = std::thread::scope(|scope| {
        let settings = std::thread::Builder::new()
            .name("augment-settings".into())
            .spawn_scoped(scope, || RenderSettings::from_args(args, scenario))
            .map_err(StageError::Thread)?;
        let fitted = dataset_geometry(&dataset, &scenario.splits, &plan_options.fit);
        let settings = settings
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        Ok::<_, StageError>((fitted, settings))
    })?;
    let (geometry, stats) = fitted?;
    let settings = settings?;
    let planner = if inserts {
        Some(ScenarioPlanner::new(scenario, &stats)?)
    } else {
        None
    };
    let describe = settings.describe();
    let job = Arc::new(Job {
        scenario: scenario.clone(),
        planner,
        geometry,
        road_classes: plan_options.road_classes.clone(),
        masks: plan_options.mask_cache_of(&args.dataset),
        segmenter_name,
        settings,
        inspect: args.observer.is_some(),
    });

    let out_err = |source| StageError::Dataset {
        path: args.output.clone(),
        source: Box::new(source),
    };
    let in_err = |source| StageError::Dataset {
        path: args.dataset.clone(),
        source: Box::new(source),
    };
    // The unsharded output is written exactly as a commit of shards writes it.
    let (shard_writer, writer) = match &args.shard {
        Some(target) => {
            let (shard_writer, writer) =
                ShardWriter::create(&target.dir, target.id).map_err(|source| {
                    StageError::Dataset {
                        path: target.dir.clone(),
                        source: Box::new(source),
                    }
                })?;
            (Some(shard_writer), writer)
        }
        None => (
            None,
            DatasetWriter::create(&args.output, shard::output_options()).map_err(out_err)?,
        ),
    };

    // What the reader reads, in the order the writer writes it: every split in manifest order,
    // the scenario's splits cut to `max_frames`, the others copied through unless generated only.
    let mut parts: Vec<(&String, bool, u64)> = Vec::new();
    for (split, stats) in &dataset.manifest().splits {
        let augmented = scenario.splits.contains(split);
        if !augmented && args.generated_only {
            continue;
        }
        let limit = match args.max_frames {
            Some(m) if augmented => u64::try_from(m).unwrap_or(u64::MAX),
            _ => u64::MAX,
        };
        parts.push((split, augmented, stats.frames.min(limit)));
    }
    let total: u64 = parts.iter().map(|p| p.2).sum();
    // A shard reads only its contiguous range of that order.
    let range = match &args.shard {
        Some(target) => target
            .id
            .items(&parts.iter().map(|p| (p.2, p.1)).collect::<Vec<_>>()),
        None => 0..total,
    };
    let mut readers: Vec<(Arc<str>, bool, FrameReader, usize, usize)> = Vec::new();
    let mut position = 0u64;
    for (split, augmented, n) in parts {
        let first = range.start.clamp(position, position + n);
        let end = range.end.clamp(position, position + n);
        let skip = usize::try_from(first - position).unwrap_or(usize::MAX);
        let take = usize::try_from(end - first).unwrap_or(usize::MAX);
        position += n;
        if take == 0 {
            continue;
        }
        let reader = dataset.frames(split, Projection::Full).map_err(in_err)?;
        readers.push((Arc::from(split.as_str()), augmented, reader, skip, take));
    }
    // The model runs one frame at a time: the masks of the frames to augment (in a shard, its
    // own) are cached before the flow, then only read (by placement and weather).
    if let Some(model) = drivable.as_mut() {
        let augmented: Vec<(&str, std::ops::Range<usize>)> = readers
            .iter()
            .filter(|r| r.1)
            .map(|r| (&*r.0, r.3..r.3.saturating_add(r.4)))
            .collect();
        cache_model_masks(
            &args.dataset,
            &dataset,
            &job.geometry,
            &augmented,
            &plan_options,
            model,
        )?;
    }
    let frames = readers
        .into_iter()
        .flat_map(move |(split, augmented, reader, skip, take)| {
            reader.skip(skip).take(take).map(move |record| {
                record.map(|record| FrameJob {
                    split: split.clone(),
                    augmented,
                    record,
                })
            })
        });

    let mut flow = Flow::new("augment", args.flow)?;
    let (frames, reader) = flow.source("reader", frames, |f: &FrameJob| record_bytes(&f.record))?;
    let worker_job = job.clone();
    let outputs = flow.workers(
        "render",
        frames,
        || None,
        move |renderer: &mut Option<Result<Renderer, String>>, frame: &FrameJob| {
            if !frame.augmented {
                return Vec::new();
            }
            // Built on a worker's first frame to augment: a run that only copies builds none.
            let renderer = renderer.get_or_insert_with(|| Renderer::new(&worker_job.settings));
            variants_of(&worker_job, renderer, &frame.record)
        },
        output_bytes,
    )?;
    let mut output = Output {
        writer,
        summary: AugmentSummary::default(),
        args,
    };
    // Positions in the run's input, also in a shard (whose flow counts from 0).
    let sunk = flow.sink(outputs, |sequence, frame, variants| {
        output.frame(range.start + sequence, frame, variants)
    });
    let Output {
        writer,
        mut summary,
        ..
    } = output;
    let read = reader.join();
    let finished = flow.finish();
    match sunk {
        Ok(_) => {}
        Err(SinkError::Sink(e)) => return Err(e),
        Err(SinkError::Flow(e)) => return Err(e.into()),
    }
    read?.map_err(in_err)?;
    finished?;

    let input_version = dataset
        .version_dir()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    let provenance = serde_json::json!({
        "operation": "augment",
        "scenario": scenario.name,
        "seed": scenario.seed,
        "input": args.dataset,
        "input_version": input_version,
        "renderer": describe,
        "tool_version": TOOL_VERSION,
    });
    let Some((shard_writer, target)) = shard_writer.zip(args.shard.as_ref()) else {
        let manifest = writer.commit(provenance).map_err(out_err)?;
        summary.version.clone_from(&manifest.version);
        return Ok(summary);
    };
    let run = ShardRun {
        stage: "augment".into(),
        input: args.dataset.display().to_string(),
        input_version: input_version.unwrap_or_default(),
        scenario: scenario.name.clone(),
        scenario_hash: scenario_hash(scenario),
        seed: scenario.seed,
        settings: serde_json::json!({
            "max_frames": args.max_frames,
            "generated_only": args.generated_only,
        }),
        tool_version: TOOL_VERSION.into(),
        provenance,
    };
    let items = ItemRange {
        start: range.start,
        end: range.end,
        total,
    };
    let counts = serde_json::to_value(&summary).unwrap_or_default();
    let (dir, _) = shard_writer
        .finish(writer, items, run, counts)
        .map_err(|source| StageError::Dataset {
            path: target.dir.clone(),
            source: Box::new(source),
        })?;
    summary.version = dir.display().to_string();
    Ok(summary)
}

/// What makes two runs' scenarios the same: a hash of the resolved settings (seed included).
fn scenario_hash(scenario: &Scenario) -> String {
    blake3::hash(format!("{scenario:?}").as_bytes()).to_hex()[..32].to_string()
}

/// The writer's side of the flow (the calling thread).
struct Output<'a> {
    writer: DatasetWriter,
    summary: AugmentSummary,
    args: &'a AugmentConfig,
}

impl Output<'_> {
    /// One frame and its variants, in input order, into the new version; each written variant to
    /// the observer.
    fn frame(
        &mut self,
        sequence: u64,
        frame: FrameJob,
        output: Result<FrameOutput, ItemFailed>,
    ) -> Result<(), StageError> {
        let Output {
            writer,
            summary,
            args,
        } = self;
        let out_err = |source| StageError::Dataset {
            path: args.output.clone(),
            source: Box::new(source),
        };
        let FrameJob {
            split,
            augmented,
            record: real,
        } = frame;
        if !augmented {
            writer.write_owned(real).map_err(out_err)?;
            summary.real_frames_written += 1;
            return Ok(());
        }
        summary.frames_read += 1;
        let source_uri = real.frame.source_uri.clone();
        let variants =
            output.unwrap_or_else(|failed| vec![Err(format!("{source_uri}: {}", failed.message))]);
        // After it is written, only an observer needs the real frame: otherwise the writer takes
        // it whole (its image bytes are not copied).
        let real = match (args.generated_only, &args.observer) {
            (true, _) => Some(real),
            (false, Some(_)) => {
                writer.write(&real).map_err(out_err)?;
                summary.real_frames_written += 1;
                Some(real)
            }
            (false, None) => {
                writer.write_owned(real).map_err(out_err)?;
                summary.real_frames_written += 1;
                None
            }
        };
        for variant in variants {
            match variant {
                Ok(mut variant) => {
                    if let Some(record) = variant.record.take() {
                        // The observer sees the record first; the writer then takes it whole.
                        if let Some((observer, real)) = args.observer.as_ref().zip(real.as_ref()) {
                            observer.notify(&VariantEvent {
                                sequence,
                                split: &split,
                                variant: variant.number,
                                real,
                                generated: &record,
                                plan: &variant.inspection.plan,
                                edit_mask: variant.inspection.edit_mask.as_ref(),
                                weather: variant.inspection.weather.as_ref(),
                                ground: variant.inspection.ground.as_ref(),
                            });
                        }
                        writer.write_owned(record).map_err(out_err)?;
                        summary.variants_written += 1;
                    } else {
                        summary.variants_unchanged += 1;
                    }
                    let counts = variant.counts;
                    summary.insertions_planned += counts.planned;
                    summary.insertions_rendered += counts.rendered;
                    summary.insertions_filtered_out += counts.filtered_out;
                    summary.insertions_not_rendered += counts.not_rendered;
                    summary.insertions_rendered_again += counts.rendered_again;
                    summary.vehicles_edited += counts.vehicles;
                    summary.weather_applied += counts.weather;
                }
                Err(reason) => {
                    summary.quarantined += 1;
                    tracing::warn!("{reason}");
                    writer.quarantine(roadsynth_types::Quarantined {
                        file: source_uri.clone(),
                        line: None,
                        column: None,
                        split: split.to_string(),
                        kind: roadsynth_types::QuarantineKind::StageFailed,
                        reason,
                    });
                }
            }
        }
        Ok(())
    }
}

/// The variants of one real frame: each is the frame with the scenario's operations applied in
/// order, or `None` when nothing changed (every insertion filtered out and no other operation).
fn variants_of(
    job: &Job,
    renderer: &mut Result<Renderer, String>,
    record: &FrameRecord,
) -> FrameOutput {
    let renderer = match renderer {
        Ok(r) => r,
        Err(e) => return vec![Err(e.clone())],
    };
    let decoded = match record.image.as_deref().map(image::load_from_memory) {
        Some(Ok(img)) => img.into_rgb8(),
        Some(Err(e)) => {
            return vec![Err(format!(
                "{}: cannot decode: {e}",
                record.frame.source_uri
            ))];
        }
        None => return vec![Err(format!("{}: no image bytes", record.frame.source_uri))],
    };
    let ground = job.geometry.for_frame(&record.frame);
    // Semantic labels, decoded once, give the ground masks and tell the engine which pixels
    // belong to existing objects (occlusion).
    let (semantic, masks) = match frame_masks(job, record, &ground) {
        Ok(m) => m,
        Err(e) => {
            return vec![Err(format!(
                "{}: ground masks: {e}",
                record.frame.source_uri
            ))];
        }
    };
    let semantic = semantic.filter(|l| l.dimensions() == decoded.dimensions());
    let plan = job
        .planner
        .as_ref()
        .map(|p| p.plan_frame(&record.frame, &record.annotations, &ground, &masks));
    (0..job.scenario.variants_per_frame)
        .map(|variant| {
            let frame = FrameContext {
                record,
                decoded: &decoded,
                semantic: semantic.as_ref(),
                ground: &ground,
                masks: &masks,
                plan: plan.as_ref(),
            };
            variant_of(job, renderer, &frame, variant)
                .map_err(|e| format!("{} variant {variant}: {e}", record.frame.source_uri))
        })
        .collect()
}

/// The frame's decoded semantic labels, if it has them, and its ground masks from the best
/// source: the labels (cheaper to derive again than a cached mask is to decode), else the
/// drivable-area model's cached masks, else the ground below the horizon.
fn frame_masks(
    job: &Job,
    record: &FrameRecord,
    ground: &GroundModel,
) -> Result<(Option<GrayImage>, GroundMasks), roadsynth_geometry::GeometryError> {
    if let Some(png) = &record.semantic_label {
        let labels = match image::load_from_memory(png) {
            Ok(image::DynamicImage::ImageLuma8(labels)) => labels,
            Ok(other) => {
                return Err(GeometryError::BadLabelImage(format!(
                    "expected 8-bit grayscale class codes, found {:?}",
                    other.color()
                )));
            }
            Err(e) => return Err(GeometryError::BadLabelImage(e.to_string())),
        };
        let (width, height) = (record.frame.width, record.frame.height);
        if labels.dimensions() != (width, height) {
            return Err(GeometryError::SizeMismatch {
                mask_width: labels.width(),
                mask_height: labels.height(),
                width,
                height,
            });
        }
        let masks = masks_from_label_image(&labels, &job.road_classes, ground);
        return Ok((Some(labels), masks));
    }
    if let Some(name) = job.segmenter_name.as_deref() {
        let source = MaskSource::Model {
            name: name.to_string(),
        };
        // Cached before the flow for every frame read; gone only if removed meanwhile.
        return match job.masks.read(&record.frame.id, &source)? {
            Some(m) => Ok((None, m)),
            None => Err(GeometryError::CacheIo {
                path: job.masks.path(&source, &record.frame.id),
                source: std::io::ErrorKind::NotFound.into(),
            }),
        };
    }
    Ok((None, ground_masks(record, ground, &job.road_classes, None)?))
}

/// What every variant of a frame shares.
struct FrameContext<'a> {
    record: &'a FrameRecord,
    decoded: &'a RgbImage,
    semantic: Option<&'a GrayImage>,
    ground: &'a GroundModel,
    masks: &'a GroundMasks,
    /// The frame's planned insertions (every variant), when the scenario inserts objects.
    plan: Option<&'a FramePlanRows>,
}

fn variant_of(
    job: &Job,
    renderer: &mut Renderer,
    frame: &FrameContext<'_>,
    variant: u32,
) -> Result<Variant, String> {
    let scenario = &job.scenario;
    let record = frame.record;
    let seed = variant_seed(scenario.seed, record.frame.id.as_str(), variant);
    // Borrowed until an operation makes a new image: no copy of the decoded frame.
    let mut image: Cow<'_, RgbImage> = Cow::Borrowed(frame.decoded);
    let mut inserted = false;
    let mut annotations = record.annotations.clone();
    let mut steps: Vec<ProvenanceStep> = Vec::new();
    let mut counts = VariantCounts::default();
    let mut inspection = Inspection {
        ground: job.inspect.then(|| frame.ground.clone()),
        ..Inspection::default()
    };
    let mut changed = false;
    // The k-th `insert_objects` operation renders the k-th group of plan rows.
    let mut inserts_done = 0;
    for (index, operation) in scenario.operations.iter().enumerate() {
        let op_seed = operation_seed(seed, index);
        match operation {
            Operation::InsertObjects(_) => {
                let rows = frame
                    .plan
                    .map_or(&[][..], |p| p.rows(inserts_done, variant));
                inserts_done += 1;
                counts.planned += rows.len() as u64;
                if rows.is_empty() {
                    continue;
                }
                // Each plan row carries its own seed (placement derived it from the variant's).
                let outcome = renderer
                    .insert(&image, &annotations, frame.semantic, rows)
                    .map_err(|e| e.to_string())?;
                if job.inspect {
                    inspection.plan.extend_from_slice(rows);
                }
                counts.rendered += outcome.kept;
                counts.filtered_out += outcome.filtered_out;
                counts.rendered_again += outcome.rendered_again;
                counts.not_rendered += outcome.not_rendered;
                if outcome.kept > 0 {
                    changed = true;
                    inserted = true;
                    if job.inspect {
                        add_edits(&mut inspection.edit_mask, outcome.edit_mask);
                    }
                    image = Cow::Owned(outcome.image);
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
                    if job.inspect {
                        add_edits(&mut inspection.edit_mask, outcome.edit_mask);
                    }
                    image = Cow::Owned(outcome.image);
                    annotations = outcome.annotations;
                    steps.push(outcome.step);
                }
            }
            Operation::Weather(weather) => {
                let (out, step, maps) = apply_weather(
                    weather,
                    &image,
                    &mut annotations,
                    record,
                    frame.ground,
                    frame.masks,
                    frame.semantic,
                    &job.road_classes,
                    &scenario.name,
                    op_seed,
                    job.inspect,
                )?;
                image = Cow::Owned(out);
                steps.push(step);
                if job.inspect {
                    inspection.weather = Some(maps);
                }
                counts.weather += 1;
                changed = true;
            }
        }
    }
    if !changed {
        return Ok(Variant {
            number: variant,
            record: None,
            counts,
            inspection,
        });
    }
    Ok(Variant {
        number: variant,
        record: Some(generated_record(
            record,
            image.into_owned(),
            annotations,
            steps,
            &scenario.name,
            variant,
            inserted,
        )?),
        counts,
        inspection,
    })
}

/// Adds an operation's edit mask to the variant's: a pixel is edited if any operation wrote it.
fn add_edits(into: &mut Option<GrayImage>, mask: GrayImage) {
    match into {
        Some(edited) if edited.dimensions() == mask.dimensions() => {
            for (e, m) in edited.iter_mut().zip(mask.iter()) {
                *e = (*e).max(*m);
            }
        }
        _ => *into = Some(mask),
    }
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
    labels: Option<&GrayImage>,
    classes: &SemanticRoadClasses,
    scenario: &str,
    seed: u64,
    inspect: bool,
) -> Result<(RgbImage, ProvenanceStep, WeatherMaps), String> {
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
    // The real frame's labels, decoded once per frame (edits before the weather keep the size).
    // Without them, a drivable-area model's ground still says where upright scenery stands;
    // with neither, the scenery is assumed at a backdrop distance. Either way the sky is then
    // estimated from the image, else everything above the horizon would be infinitely far.
    if let Some(labels) = labels.filter(|l| l.dimensions() == (w, h)) {
        let ground_mask = drivable.union(&roadside).map_err(e)?;
        depth.with_vertical_structures(ground_mask).map_err(e)?;
        if !classes.sky.is_empty() {
            let sky = PixelMask::from_labels(w, h, labels.as_raw(), &classes.sky).map_err(e)?;
            depth.with_sky(sky).map_err(e)?;
        }
    } else {
        if matches!(masks.source, MaskSource::Model { .. }) {
            let ground_mask = drivable.union(&roadside).map_err(e)?;
            depth.with_vertical_structures(ground_mask).map_err(e)?;
        } else {
            depth.with_backdrop(roadsynth_weather::ASSUMED_BACKDROP_M);
        }
        depth.with_sky_from_image(image).map_err(e)?;
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
    // Maps that cost extra work only for an observer.
    let ctx = if inspect {
        ctx
    } else {
        ctx.without_diagnostic_maps()
    };
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
    Ok((out.image, step, out.maps))
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
    // Room for an incompressible frame: the encoder never reallocates and copies.
    let mut bytes = Vec::with_capacity(image.as_raw().len() + image.as_raw().len() / 8);
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
