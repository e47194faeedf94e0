//! Training: stream a split from Parquet, decode, augment and letterbox each frame, run the frozen
//! backbone, assign targets and step the head; a checkpoint per epoch, the final weights and the
//! configuration beside them.

use std::path::{Path, PathBuf};
use std::time::Instant;

use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use roadsynth_dataset::{Dataset, Projection};
use roadsynth_types::FrameRecord;
use serde::{Deserialize, Serialize};

use crate::assign::{GtBox, Target, assign};
use crate::backbone::{Backbone, decode_image, letterbox};
use crate::config::{CONFIG_FILE, TrainConfig, checked_backbone_hash};
use crate::error::{DetectorError, dataset_at, io_at};
use crate::head::{Adam, Head, Standardize, StandardizeFit, features};
use crate::weights::{TensorFile, write_atomic};

/// File name of the final weights in a model folder.
pub const WEIGHTS_FILE: &str = "weights.safetensors";
/// File name of the training summary (rewritten after every epoch).
pub const SUMMARY_FILE: &str = "summary.json";
/// `__metadata__` `format` of the files this crate writes.
pub(crate) const FORMAT: &str = "roadsynth-detector head v1";
/// Weight of the box refinement's L1 loss against the objectness and class losses.
const BOX_WEIGHT: f32 = 5.0;

/// The checkpoint written after epoch `epoch` (1-based).
pub fn checkpoint_file(epoch: u32) -> String {
    format!("checkpoint-epoch-{epoch}.safetensors")
}

/// How a run uses the machine and its folder; nothing here changes the weights a seed gives
/// (see [`TrainOptions::intra_threads`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrainOptions {
    /// ONNX Runtime threads for the backbone (its default: one per physical core).
    /// Measured: the backbone's output, and so the weights, are bitwise the same with 1 and 2
    /// threads on this model.
    pub intra_threads: Option<usize>,
    /// Continue a run in `out_dir` from its newest checkpoint (the configuration must be the
    /// same; a folder without a run starts one). Because every random draw derives from the seed, the epoch and the frame, a
    /// resumed run ends with the same weights as one that was never interrupted.
    pub resume: bool,
}

/// Losses and timing of one epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    /// 1-based.
    pub epoch: u32,
    /// Mean over the epoch's optimizer steps of the total loss (per positive anchor, as YOLOX
    /// normalises), and its parts.
    pub loss: f64,
    pub objectness_loss: f64,
    pub class_loss: f64,
    pub box_loss: f64,
    pub frames: u64,
    pub steps: u64,
    /// Positive anchors over the epoch.
    pub positives: u64,
    pub seconds: f64,
    /// Where the time went: image decoding and letterboxing, the backbone, the head.
    pub decode_seconds: f64,
    pub backbone_seconds: f64,
    pub head_seconds: f64,
}

/// What a run produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainSummary {
    pub model_dir: PathBuf,
    pub weights: PathBuf,
    /// The configuration as saved (`backbone.sha256` filled in).
    pub config: TrainConfig,
    pub dataset: PathBuf,
    pub dataset_version: String,
    pub split: String,
    pub frames_per_epoch: u64,
    pub steps: u64,
    pub epochs: Vec<EpochStats>,
}

/// Trains a head on `split` of the dataset at `dataset_root` into `out_dir` (created; it must not
/// hold a model yet). See [`train_with`].
pub fn train(
    dataset_root: &Path,
    split: &str,
    config: &TrainConfig,
    out_dir: &Path,
) -> Result<TrainSummary, DetectorError> {
    train_with(
        dataset_root,
        split,
        config,
        out_dir,
        TrainOptions::default(),
        |_| {},
    )
}

/// Trains a head, calling `on_epoch` after each epoch (the pipeline logs the losses from there).
///
/// Writes `out_dir/config.json` first, `checkpoint-epoch-N.safetensors` (weights and optimizer
/// state) and `summary.json` after every epoch, and `weights.safetensors` last. The same
/// configuration (seed included) and dataset give the same weights, byte for byte.
pub fn train_with(
    dataset_root: &Path,
    split: &str,
    config: &TrainConfig,
    out_dir: &Path,
    options: TrainOptions,
    mut on_epoch: impl FnMut(&EpochStats),
) -> Result<TrainSummary, DetectorError> {
    config.validate()?;
    let mut config = config.clone();
    config.backbone.sha256 = Some(checked_backbone_hash(&config.backbone)?);
    let dataset = Dataset::open(dataset_root).map_err(dataset_at(dataset_root))?;
    let split_frames = dataset
        .manifest()
        .splits
        .get(split)
        .map(|s| s.frames)
        .ok_or_else(|| DetectorError::Dataset {
            path: dataset_root.to_path_buf(),
            source: roadsynth_dataset::DatasetError::NoSuchSplit(split.to_string()),
        })?;
    let frames_per_epoch = config.frames_per_epoch.unwrap_or(split_frames);
    if split_frames == 0 || frames_per_epoch == 0 {
        return Err(DetectorError::EmptySplit {
            dataset: dataset_root.to_path_buf(),
            split: split.to_string(),
        });
    }
    let steps_per_epoch = frames_per_epoch.div_ceil(u64::from(config.batch));
    let total_steps = steps_per_epoch * u64::from(config.epochs);

    let mut backbone = Backbone::load(&config.backbone.path, options.intra_threads)?;
    let classes = config.classes.len();
    // Resuming a folder that holds no run yet starts one.
    let continuing = options.resume && out_dir.join(CONFIG_FILE).is_file();
    let resumed = if continuing {
        resume(out_dir, &config)?
    } else {
        prepare_out_dir(out_dir)?;
        None
    };
    let (standardize, mut head, mut adam, mut epochs) = match resumed {
        Some(state) => state,
        None => (
            fit_standardize(&dataset, dataset_root, split, &mut backbone)?,
            Head::init(config.hidden, classes, &mut rng_for(config.seed, &[INIT])),
            Adam::new(config.hidden, classes),
            Vec::new(),
        ),
    };
    if !continuing {
        config.write(&out_dir.join(CONFIG_FILE))?;
    }
    let mut summary = TrainSummary {
        model_dir: out_dir.to_path_buf(),
        weights: out_dir.join(WEIGHTS_FILE),
        config: config.clone(),
        dataset: dataset_root.to_path_buf(),
        dataset_version: dataset.manifest().version.clone(),
        split: split.to_string(),
        frames_per_epoch,
        steps: total_steps,
        epochs: Vec::new(),
    };
    let first_epoch = epochs.len() as u32 + 1;
    for epoch in first_epoch..=config.epochs {
        let mut run = EpochRun {
            config: &config,
            dataset: &dataset,
            dataset_root,
            backbone: &mut backbone,
            standardize: &standardize,
            head: &mut head,
            adam: &mut adam,
            epoch,
            total_steps,
            frames: frames_per_epoch,
            stats: EpochStats {
                epoch,
                loss: 0.0,
                objectness_loss: 0.0,
                class_loss: 0.0,
                box_loss: 0.0,
                frames: 0,
                steps: 0,
                positives: 0,
                seconds: 0.0,
                decode_seconds: 0.0,
                backbone_seconds: 0.0,
                head_seconds: 0.0,
            },
        };
        let stats = run.run(split)?;
        tracing::info!(
            epoch,
            loss = stats.loss,
            seconds = stats.seconds,
            "detector epoch done"
        );
        write_checkpoint(out_dir, epoch, &standardize, &head, &adam)?;
        epochs.push(stats);
        summary.epochs.clone_from(&epochs);
        write_summary(out_dir, &summary)?;
        on_epoch(epochs.last().expect("pushed above"));
    }
    let mut tensors = standardize.tensors();
    tensors.extend(head.tensors(""));
    let weights = TensorFile {
        tensors,
        metadata: [
            ("format".to_string(), FORMAT.to_string()),
            ("epochs".to_string(), config.epochs.to_string()),
        ]
        .into(),
    };
    weights.write(&summary.weights)?;
    summary.epochs = epochs;
    write_summary(out_dir, &summary)?;
    Ok(summary)
}

fn prepare_out_dir(out_dir: &Path) -> Result<(), DetectorError> {
    std::fs::create_dir_all(out_dir).map_err(io_at(out_dir))?;
    for file in [WEIGHTS_FILE, CONFIG_FILE, SUMMARY_FILE] {
        if out_dir.join(file).exists() {
            return Err(DetectorError::ModelDirNotEmpty {
                path: out_dir.to_path_buf(),
                file,
            });
        }
    }
    if out_dir.join(checkpoint_file(1)).exists() {
        return Err(DetectorError::ModelDirNotEmpty {
            path: out_dir.to_path_buf(),
            file: "checkpoints",
        });
    }
    Ok(())
}

/// The standardisation, head, optimizer and finished epochs of an interrupted run; `None` when
/// it finished no epoch.
#[allow(
    clippy::type_complexity,
    reason = "a private tuple, named where it is taken apart"
)]
fn resume(
    out_dir: &Path,
    config: &TrainConfig,
) -> Result<Option<(Standardize, Head, Adam, Vec<EpochStats>)>, DetectorError> {
    let saved = TrainConfig::read(&out_dir.join(CONFIG_FILE))?;
    if &saved != config {
        return Err(DetectorError::Config(format!(
            "cannot resume in {}: its {CONFIG_FILE} differs from this configuration",
            out_dir.display()
        )));
    }
    // The epochs the summary records (it is written after each checkpoint, so a crash between
    // the two leaves one checkpoint more: that epoch is trained again).
    let summary_path = out_dir.join(SUMMARY_FILE);
    let mut epochs = if summary_path.is_file() {
        let text = std::fs::read(&summary_path).map_err(io_at(&summary_path))?;
        let summary: TrainSummary =
            serde_json::from_slice(&text).map_err(|source| DetectorError::Json {
                path: summary_path.clone(),
                source,
            })?;
        summary.epochs
    } else {
        Vec::new()
    };
    let mut last = 0;
    while last < epochs.len() as u32 && out_dir.join(checkpoint_file(last + 1)).is_file() {
        last += 1;
    }
    if last == 0 {
        return Ok(None);
    }
    epochs.truncate(last as usize);
    let (hidden, classes) = (config.hidden, config.classes.len());
    let path = out_dir.join(checkpoint_file(last));
    let file = TensorFile::read(&path)?;
    let bad = |reason: String| DetectorError::BadWeights {
        path: path.clone(),
        reason,
    };
    let standardize = Standardize::from_file(&file).map_err(bad)?;
    let head = Head::from_file(&file, "", hidden, classes).map_err(bad)?;
    let step = file
        .metadata
        .get("step")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no `step` in the metadata".into()))?;
    let adam = Adam {
        m: Head::from_file(&file, "adam.m.", hidden, classes).map_err(bad)?,
        v: Head::from_file(&file, "adam.v.", hidden, classes).map_err(bad)?,
        step,
    };
    Ok(Some((standardize, head, adam, epochs)))
}

/// Frames (the split's first, unaugmented) that the feature standardisation is fitted on.
const STANDARDIZE_FRAMES: usize = 32;

/// Fits the feature standardisation on the split's first frames, letterboxed as at inference.
fn fit_standardize(
    dataset: &Dataset,
    dataset_root: &Path,
    split: &str,
    backbone: &mut Backbone,
) -> Result<Standardize, DetectorError> {
    let mut fit = StandardizeFit::default();
    let reader = dataset
        .frames(split, Projection::Full)
        .map_err(dataset_at(dataset_root))?;
    for record in reader.take(STANDARDIZE_FRAMES) {
        let record = record.map_err(dataset_at(dataset_root))?;
        let rgb = frame_image(&record, dataset_root)?;
        let (input, _) = letterbox(&rgb, backbone.size(), 1.0, false, (0.0, 0.0));
        let raw = backbone.run(&input)?;
        fit.add(&features(&raw, backbone.anchors()));
    }
    Ok(fit.finish())
}

/// A frame's decoded image.
pub(crate) fn frame_image(
    record: &FrameRecord,
    dataset_root: &Path,
) -> Result<image::RgbImage, DetectorError> {
    let frame = &record.frame;
    let bad_image = |reason: String| DetectorError::BadImage {
        dataset: dataset_root.to_path_buf(),
        frame_id: frame.id.to_string(),
        image_name: frame.image_name.clone(),
        reason,
    };
    let bytes = record
        .image
        .as_deref()
        .ok_or_else(|| bad_image("read without its image bytes".into()))?;
    decode_image(bytes, frame.image_format).map_err(bad_image)
}

fn write_checkpoint(
    out_dir: &Path,
    epoch: u32,
    standardize: &Standardize,
    head: &Head,
    adam: &Adam,
) -> Result<(), DetectorError> {
    let mut tensors = standardize.tensors();
    tensors.extend(head.tensors(""));
    tensors.extend(adam.m.tensors("adam.m."));
    tensors.extend(adam.v.tensors("adam.v."));
    TensorFile {
        tensors,
        metadata: [
            ("format".to_string(), FORMAT.to_string()),
            ("epoch".to_string(), epoch.to_string()),
            ("step".to_string(), adam.step.to_string()),
        ]
        .into(),
    }
    .write(&out_dir.join(checkpoint_file(epoch)))
}

fn write_summary(out_dir: &Path, summary: &TrainSummary) -> Result<(), DetectorError> {
    let path = out_dir.join(SUMMARY_FILE);
    let mut text = serde_json::to_vec_pretty(summary).map_err(|source| DetectorError::Json {
        path: path.clone(),
        source,
    })?;
    text.push(b'\n');
    write_atomic(&path, &text)
}

/// Random-stream tags, so that the streams of one seed never coincide.
const INIT: u64 = 1;
const SHUFFLE: u64 = 2;
const AUGMENT: u64 = 3;

/// A generator for one purpose of one run: the seed mixed with `parts` (`SplitMix64` steps).
pub(crate) fn rng_for(seed: u64, parts: &[u64]) -> ChaCha8Rng {
    let mix = |mut z: u64| {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let state = parts.iter().fold(mix(seed), |h, &p| mix(h ^ mix(p)));
    ChaCha8Rng::seed_from_u64(state)
}

/// A frame's key for its augmentation stream (FNV-1a of its id): augmentations depend on the
/// frame, not on where the shuffle put it.
fn frame_key(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A split's frames as training reads them.
type FrameStream<'a> = Box<dyn Iterator<Item = Result<FrameRecord, DetectorError>> + 'a>;

/// One frame ready for the head.
struct Sample {
    x: Array2<f32>,
    targets: Vec<Target>,
    positives: usize,
}

struct EpochRun<'a> {
    config: &'a TrainConfig,
    dataset: &'a Dataset,
    dataset_root: &'a Path,
    backbone: &'a mut Backbone,
    standardize: &'a Standardize,
    head: &'a mut Head,
    adam: &'a mut Adam,
    epoch: u32,
    total_steps: u64,
    /// Frames this epoch takes (passes over the split again if it is smaller).
    frames: u64,
    stats: EpochStats,
}

impl EpochRun<'_> {
    fn run(&mut self, split: &str) -> Result<EpochStats, DetectorError> {
        let start = Instant::now();
        let root = self.dataset_root;
        let dataset = self.dataset;
        let open = || -> Result<FrameStream<'_>, DetectorError> {
            let reader = dataset
                .frames(split, Projection::Full)
                .map_err(dataset_at(root))?;
            Ok(Box::new(reader.map(move |r| r.map_err(dataset_at(root)))))
        };
        let mut shuffle = rng_for(self.config.seed, &[SHUFFLE, u64::from(self.epoch)]);
        let mut reader = open()?;
        let mut buffer: Vec<FrameRecord> = Vec::new();
        let mut batch: Vec<Sample> = Vec::new();
        let mut taken = 0u64;
        let mut pass = 0u64;
        while taken < self.frames {
            while buffer.len() < self.config.shuffle_buffer {
                match reader.next() {
                    Some(record) => buffer.push(record?),
                    None => break,
                }
            }
            if buffer.is_empty() {
                // The split is smaller than the epoch: pass over it again, reshuffled.
                pass += 1;
                shuffle = rng_for(self.config.seed, &[SHUFFLE, u64::from(self.epoch), pass]);
                reader = open()?;
                continue;
            }
            taken += 1;
            let record = buffer.swap_remove(shuffle.random_range(0..buffer.len()));
            batch.push(self.sample(&record)?);
            if batch.len() == self.config.batch as usize {
                self.step(&batch);
                batch.clear();
            }
        }
        if !batch.is_empty() {
            self.step(&batch);
        }
        let steps = self.stats.steps.max(1) as f64;
        self.stats.loss /= steps;
        self.stats.objectness_loss /= steps;
        self.stats.class_loss /= steps;
        self.stats.box_loss /= steps;
        self.stats.seconds = start.elapsed().as_secs_f64();
        Ok(self.stats.clone())
    }

    /// Decodes, augments and letterboxes a frame, runs the backbone and assigns targets.
    fn sample(&mut self, record: &FrameRecord) -> Result<Sample, DetectorError> {
        let t0 = Instant::now();
        let frame = &record.frame;
        let rgb = frame_image(record, self.dataset_root)?;
        let augment = self.config.augment;
        let mut rng = rng_for(
            self.config.seed,
            &[AUGMENT, u64::from(self.epoch), frame_key(frame.id.as_str())],
        );
        // Every draw is made whatever the settings, so that changing one setting does not shift
        // the others' random streams.
        let jitter_draw: f64 = rng.random();
        let flip_draw: f64 = rng.random();
        let crop = (rng.random::<f64>(), rng.random::<f64>());
        let jitter = augment.scale_min + (augment.scale_max - augment.scale_min) * jitter_draw;
        let flip = flip_draw < augment.hflip;
        let (input, placement) = letterbox(&rgb, self.backbone.size(), jitter, flip, crop);
        let mut boxes = Vec::new();
        let mut ignore = Vec::new();
        for annotation in &record.annotations {
            let b = annotation.bbox;
            let (mapped, visible) = placement.map_box([b.x0, b.y0, b.x1, b.y1]);
            if visible <= 0.0 {
                continue;
            }
            let class = self.config.target_class(&annotation.class);
            let too_small = mapped[2] - mapped[0] < 1.0 || mapped[3] - mapped[1] < 1.0;
            match class {
                Some(class)
                    if !annotation.ignore
                        && !annotation.crowd
                        && visible >= augment.min_visible
                        && !too_small =>
                {
                    boxes.push(GtBox {
                        bbox: mapped,
                        class,
                    });
                }
                _ => ignore.push(mapped),
            }
        }
        let t1 = Instant::now();
        let raw = self.backbone.run(&input)?;
        let t2 = Instant::now();
        let mut x = features(&raw, self.backbone.anchors());
        self.standardize.apply(&mut x);
        let targets = assign(self.backbone.anchors(), &raw, &boxes, &ignore);
        let positives = targets
            .iter()
            .filter(|t| matches!(t, Target::Positive { .. }))
            .count();
        self.stats.decode_seconds += (t1 - t0).as_secs_f64();
        self.stats.backbone_seconds += (t2 - t1).as_secs_f64();
        self.stats.head_seconds += t2.elapsed().as_secs_f64();
        self.stats.frames += 1;
        Ok(Sample {
            x,
            targets,
            positives,
        })
    }

    /// One optimizer step over a batch; the loss is normalised by the batch's positives.
    fn step(&mut self, batch: &[Sample]) {
        let t = Instant::now();
        let positives: usize = batch.iter().map(|s| s.positives).sum();
        let norm = positives.max(1) as f32;
        let classes = self.config.classes.len();
        let mut grads = Head::zeros(self.config.hidden, classes);
        let mut parts = [0.0_f64; 3];
        for sample in batch {
            let acts = self.head.forward_train(&sample.x.view());
            let (losses, d_out) = loss_and_grad(&acts.out, &sample.targets, classes, norm);
            for (sum, part) in parts.iter_mut().zip(losses) {
                *sum += part;
            }
            self.head
                .backward(&sample.x.view(), &acts, &d_out, &mut grads);
        }
        let progress = self.adam.step as f64 / self.total_steps.max(1) as f64;
        let ratio = self.config.min_lr_ratio;
        let lr = self.config.lr
            * (ratio + (1.0 - ratio) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()));
        self.adam.update(
            self.head,
            &grads,
            lr as f32,
            self.config.weight_decay as f32,
        );
        self.stats.steps += 1;
        self.stats.positives += positives as u64;
        self.stats.objectness_loss += parts[0];
        self.stats.class_loss += parts[1];
        self.stats.box_loss += parts[2];
        self.stats.loss += parts.iter().sum::<f64>();
        self.stats.head_seconds += t.elapsed().as_secs_f64();
    }
}

/// Binary cross-entropy of a logit against a target probability.
fn bce(logit: f32, target: f32) -> f32 {
    logit.max(0.0) - logit * target + (-logit.abs()).exp().ln_1p()
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// The losses of one frame (objectness, class, box; each summed over anchors and divided by
/// `norm`) and their gradient by the head's outputs.
///
/// Objectness and every class are trained densely: all anchors that are not ignored, positives
/// towards 1 (classes towards the `IoU`), the rest towards 0. Training the classes on background
/// too (YOLOX trains them on positives only) keeps a class that a dataset never shows, such as
/// `animal` in the real-only arm, low everywhere rather than left at whatever its initial
/// weights give wherever objectness fires.
fn loss_and_grad(
    out: &Array2<f32>,
    targets: &[Target],
    classes: usize,
    norm: f32,
) -> ([f64; 3], Array2<f32>) {
    let mut d = Array2::<f32>::zeros(out.raw_dim());
    let mut sums = [0.0_f64; 3];
    for ((row, mut grad), target) in out.outer_iter().zip(d.outer_iter_mut()).zip(targets) {
        let (objectness, class_target) = match *target {
            Target::Ignore => continue,
            Target::Negative => (0.0, None),
            Target::Positive { class, iou, deltas } => {
                for (j, &want) in deltas.iter().enumerate() {
                    let diff = row[1 + classes + j] - want;
                    sums[2] += f64::from(BOX_WEIGHT * diff.abs() / norm);
                    grad[1 + classes + j] = BOX_WEIGHT * diff.signum() / norm;
                }
                (1.0, Some((class, iou.max(0.0))))
            }
        };
        sums[0] += f64::from(bce(row[0], objectness) / norm);
        grad[0] = (sigmoid(row[0]) - objectness) / norm;
        for k in 0..classes {
            let want = match class_target {
                Some((class, iou)) if class == k => iou,
                _ => 0.0,
            };
            sums[1] += f64::from(bce(row[1 + k], want) / norm);
            grad[1 + k] = (sigmoid(row[1 + k]) - want) / norm;
        }
    }
    (sums, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_gradient_matches_finite_differences() {
        let classes = 2;
        let out = Array2::from_shape_vec(
            (3, Head::outputs(classes)),
            vec![
                0.3, -1.0, 2.0, 0.1, -0.2, 0.3, 0.4, //
                -2.0, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, //
                1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0,
            ],
        )
        .expect("shape");
        let targets = [
            Target::Positive {
                class: 1,
                iou: 0.8,
                deltas: [0.5, -0.5, 0.05, 0.2],
            },
            Target::Negative,
            Target::Ignore,
        ];
        let (_, grad) = loss_and_grad(&out, &targets, classes, 2.0);
        let total = |o: &Array2<f32>| {
            loss_and_grad(o, &targets, classes, 2.0)
                .0
                .iter()
                .sum::<f64>()
        };
        for (i, j) in [(0, 0), (0, 1), (0, 2), (0, 3), (0, 6), (1, 0), (1, 2)] {
            let h = 1e-3;
            let mut plus = out.clone();
            plus[[i, j]] += h;
            let mut minus = out.clone();
            minus[[i, j]] -= h;
            let numeric = (total(&plus) - total(&minus)) / (2.0 * f64::from(h));
            assert!(
                (numeric - f64::from(grad[[i, j]])).abs() < 1e-2,
                "({i}, {j}): numeric {numeric}, analytic {}",
                grad[[i, j]]
            );
        }
        // Ignored anchors get no gradient at all.
        assert!(grad.row(2).iter().all(|&g| g == 0.0));
    }

    #[test]
    fn streams_differ_by_purpose_and_repeat_by_seed() {
        let a: u64 = rng_for(1, &[SHUFFLE, 1]).random();
        let b: u64 = rng_for(1, &[SHUFFLE, 1]).random();
        let c: u64 = rng_for(1, &[AUGMENT, 1]).random();
        let d: u64 = rng_for(2, &[SHUFFLE, 1]).random();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
    }
}
