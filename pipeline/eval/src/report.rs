//! Running evaluations and the report they produce.

use std::collections::HashMap;
use std::fmt;

use hotcoco::params::{IouType, Params};
use hotcoco::{COCO, COCOeval};
use serde::{Deserialize, Serialize};

use crate::EvalError;
use crate::bootstrap::{Bootstrap, Interval};
use crate::detections::{DetectionCounts, Detections, Prepared};
use crate::ground_truth::{GroundTruth, Target};
use crate::slices::{KittiLevel, SliceSpec, View};
use crate::table::{MatchTable, SUMMARY_STATS, Scratch};

/// What to compute beyond the overall figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EvalOptions {
    /// Attribute slices, each evaluated once per value.
    pub slices: Vec<SliceSpec>,
    /// KITTI difficulty levels; `None`: when every frame was ingested from KITTI.
    pub kitti_difficulty: Option<bool>,
    /// Percentile intervals for every AP figure (overall, per class, per slice).
    pub bootstrap: Option<Bootstrap>,
}

/// pycocotools' twelve summary figures; `None` where pycocotools prints `-1` (nothing to
/// measure, e.g. no small objects).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// AP averaged over `IoU` 0.50:0.05:0.95 (COCO's mAP).
    pub ap: Option<f64>,
    pub ap50: Option<f64>,
    pub ap75: Option<f64>,
    pub ap_small: Option<f64>,
    pub ap_medium: Option<f64>,
    pub ap_large: Option<f64>,
    pub ar1: Option<f64>,
    pub ar10: Option<f64>,
    pub ar100: Option<f64>,
    pub ar_small: Option<f64>,
    pub ar_medium: Option<f64>,
    pub ar_large: Option<f64>,
}

impl Summary {
    /// Names of [`Self::stats`], in order.
    pub const NAMES: [&'static str; 12] = [
        "AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
    ];

    /// From pycocotools' `stats` vector (`-1` or less: not computed).
    pub fn from_stats(stats: &[f64]) -> Self {
        let at = |i: usize| stats.get(i).copied().filter(|v| *v >= 0.0);
        Self {
            ap: at(0),
            ap50: at(1),
            ap75: at(2),
            ap_small: at(3),
            ap_medium: at(4),
            ap_large: at(5),
            ar1: at(6),
            ar10: at(7),
            ar100: at(8),
            ar_small: at(9),
            ar_medium: at(10),
            ar_large: at(11),
        }
    }

    /// pycocotools' `COCOeval.stats`, `-1` for `None`.
    pub fn stats(&self) -> [f64; 12] {
        [
            self.ap,
            self.ap50,
            self.ap75,
            self.ap_small,
            self.ap_medium,
            self.ap_large,
            self.ar1,
            self.ar10,
            self.ar100,
            self.ar_small,
            self.ar_medium,
            self.ar_large,
        ]
        .map(|v| v.unwrap_or(-1.0))
    }
}

/// Bootstrap intervals of the AP figures of a [`Summary`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SummaryIntervals {
    pub ap: Option<Interval>,
    pub ap50: Option<Interval>,
    pub ap75: Option<Interval>,
    pub ap_small: Option<Interval>,
    pub ap_medium: Option<Interval>,
    pub ap_large: Option<Interval>,
}

/// AP of one class: over `IoU` 0.50:0.95 and at 0.50, area "all", 100 detections per image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    pub class: String,
    /// Ground-truth objects counted (not regions, not ignored by the slice).
    pub objects: usize,
    pub ap: Option<f64>,
    pub ap50: Option<f64>,
    pub ap_interval: Option<Interval>,
    pub ap50_interval: Option<Interval>,
}

/// The figures of one evaluation: the whole set, one slice value or one difficulty level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub images: usize,
    /// Ground-truth objects counted, all classes.
    pub objects: usize,
    pub summary: Summary,
    /// Present when bootstrapped.
    pub intervals: Option<SummaryIntervals>,
    pub per_class: Vec<ClassMetrics>,
}

/// One value of an attribute slice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SliceReport {
    pub key: String,
    pub value: String,
    pub metrics: Metrics,
}

/// One KITTI difficulty level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DifficultyReport {
    pub level: KittiLevel,
    pub metrics: Metrics,
}

/// The result of `roadsynth eval`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// What the ground truth was read from.
    pub ground_truth: String,
    /// What the detections were read from.
    pub predictions: String,
    /// Evaluated class names, sorted.
    pub categories: Vec<String>,
    pub detections: DetectionCounts,
    pub overall: Metrics,
    pub slices: Vec<SliceReport>,
    pub kitti_difficulty: Vec<DifficultyReport>,
    pub bootstrap: Option<Bootstrap>,
}

/// One figure of two arms on the same images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Difference {
    /// `AP`, `AP50`, `AP75`, `APs`, `APm`, `APl`, or `<class>/AP`, `<class>/AP50`.
    pub metric: String,
    pub a: Option<f64>,
    pub b: Option<f64>,
    /// `b - a`.
    pub difference: Option<f64>,
    /// Paired bootstrap interval of `b - a`.
    pub interval: Option<Interval>,
    /// Fraction of resamples in which `b - a > 0`.
    pub b_better: Option<f64>,
}

/// A paired comparison of two arms (e.g. a detector trained without and with augmentation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub ground_truth: String,
    pub a: String,
    pub b: String,
    pub images: usize,
    pub bootstrap: Bootstrap,
    pub differences: Vec<Difference>,
}

/// One class's precision-recall curve as pycocotools' `accumulate` gives it: the interpolated
/// (monotone) precision at each of COCO's 101 recall thresholds, area "all", 100 detections per
/// image, `0` beyond the highest recall reached. Its mean is the class's AP at `iou`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassPrCurve {
    pub class: String,
    /// The `IoU` threshold (one of COCO's 0.50:0.05:0.95) a detection had to reach to be a hit.
    pub iou: f64,
    /// COCO's recall thresholds, `0.00, 0.01, ..., 1.00`.
    pub recall: Vec<f64>,
    pub precision: Vec<f64>,
}

/// One evaluated view: hotcoco's evaluator after `evaluate`, `accumulate` and `summarize`.
pub(crate) struct Evaluated {
    pub(crate) ev: COCOeval,
}

/// Image id → image slot (index into the ground truth's images).
pub(crate) fn slots(gt: &GroundTruth) -> HashMap<u64, u32> {
    gt.images
        .iter()
        .enumerate()
        .map(|(slot, image)| (image.id, slot as u32))
        .collect()
}

/// Runs hotcoco on a view; `None` when the view has no image or there is no category (pycocotools
/// would report `-1` everywhere).
pub(crate) fn run_view(
    gt: &GroundTruth,
    detections: &Prepared,
    view: &View,
) -> Result<Option<Evaluated>, EvalError> {
    let image_ids: Vec<u64> = gt
        .images
        .iter()
        .zip(&view.images)
        .filter(|(_, inside)| **inside)
        .map(|(image, _)| image.id)
        .collect();
    if image_ids.is_empty() || gt.categories.is_empty() {
        return Ok(None);
    }
    let coco_gt = COCO::from_dataset(gt.coco_dataset(Some(&view.hidden)));
    let mut coco_dt = coco_gt.load_res_anns(detections.annotations.clone())?;
    if let Some(min_height) = view.min_detection_height {
        for a in &mut coco_dt.dataset.annotations {
            if a.bbox.is_some_and(|b| b[3] < min_height) {
                a.area = Some(-1.0);
            }
        }
        coco_dt.create_index();
    }
    let mut ev = COCOeval::new(coco_gt, coco_dt, IouType::Bbox);
    // An empty list would mean "all" to hotcoco; both are non-empty here.
    ev.params.img_ids = image_ids;
    ev.params.cat_ids = (1..=gt.categories.len() as u64).collect();
    ev.evaluate()?;
    ev.accumulate();
    // Computes `stats` without printing (`summarize` prints to stdout).
    ev.summarize_lines();
    Ok(Some(Evaluated { ev }))
}

impl Evaluated {
    pub(crate) fn summary(&self) -> Summary {
        Summary::from_stats(self.ev.stats().unwrap_or(&[]))
    }

    /// Per category (in ground-truth order): AP over every `IoU` threshold and AP at 0.5, read
    /// from the accumulated precision at area "all" and the largest detection cap, as
    /// pycocotools users compute it from `eval['precision']`.
    pub(crate) fn per_class(&self, n_cats: usize) -> Vec<(Option<f64>, Option<f64>)> {
        let mut out = vec![(None, None); n_cats];
        let Some(acc) = self.ev.accumulated() else {
            return out;
        };
        let params = &self.ev.params;
        let (area, cap) = (params.all_area_idx(), params.max_det_idx());
        let t50 = params.iou_thr_idx(0.5);
        let mean = |thresholds: &mut dyn Iterator<Item = usize>, k: usize| {
            let (mut sum, mut count) = (0.0, 0_usize);
            for t in thresholds {
                for r in 0..acc.shape.r {
                    let precision = acc.precision[acc.precision_idx(t, r, k, area, cap)];
                    // pycocotools' `-1`: not computed.
                    if precision > -1.0 {
                        sum += precision;
                        count += 1;
                    }
                }
            }
            (count > 0).then(|| sum / count as f64)
        };
        for (k, &cat_id) in acc.cat_ids.iter().enumerate() {
            let Some(slot) = out.get_mut((cat_id as usize).wrapping_sub(1)) else {
                continue;
            };
            *slot = (
                mean(&mut (0..acc.shape.t), k),
                mean(&mut t50.into_iter(), k),
            );
        }
        out
    }

    /// Per category with ground truth (in ground-truth order): the interpolated precision at each
    /// recall threshold at the `IoU` threshold of index `t`, area "all", the largest detection
    /// cap: pycocotools' `eval['precision'][t, :, k, 0, -1]`, read from hotcoco's accumulation.
    fn pr_curves(&self, categories: &[String], t: usize) -> Vec<ClassPrCurve> {
        let Some(acc) = self.ev.accumulated() else {
            return Vec::new();
        };
        let params = &self.ev.params;
        let (area, cap) = (params.all_area_idx(), params.max_det_idx());
        let mut out = Vec::new();
        for (k, &cat_id) in acc.cat_ids.iter().enumerate() {
            let Some(class) = categories.get((cat_id as usize).wrapping_sub(1)) else {
                continue;
            };
            let precision: Vec<f64> = (0..acc.shape.r)
                .map(|r| acc.precision[acc.precision_idx(t, r, k, area, cap)])
                .collect();
            // pycocotools' `-1`: a category without ground truth has no curve.
            if precision.iter().any(|p| *p <= -1.0) {
                continue;
            }
            out.push(ClassPrCurve {
                class: class.clone(),
                iou: params.iou_thrs[t],
                recall: params.rec_thrs.clone(),
                precision,
            });
        }
        out
    }
}

/// Counted objects of a view, per category.
fn object_counts(gt: &GroundTruth, view: &View) -> Vec<usize> {
    let mut counts = vec![0; gt.categories.len()];
    for (o, hidden) in gt.objects.iter().zip(&view.hidden) {
        if let (false, false, true, Target::Class(k)) =
            (o.region, *hidden, view.images[o.image], o.target)
        {
            counts[k] += 1;
        }
    }
    counts
}

/// Evaluates one view into [`Metrics`], with intervals when bootstrapping.
fn metrics(
    gt: &GroundTruth,
    detections: &Prepared,
    view: &View,
    bootstrap: Option<&Bootstrap>,
) -> Result<Metrics, EvalError> {
    let evaluated = run_view(gt, detections, view)?;
    let counts = object_counts(gt, view);
    let n_cats = gt.categories.len();
    let (summary, per_class) = match &evaluated {
        Some(e) => (e.summary(), e.per_class(n_cats)),
        None => (Summary::default(), vec![(None, None); n_cats]),
    };
    let intervals = match (&evaluated, bootstrap) {
        (Some(e), Some(b)) => {
            let table = MatchTable::build(&e.ev, &slots(gt));
            let units = units(view);
            let samples = b.samples(&units, gt.images.len(), |w| {
                table.stats(w, &mut Scratch::default())
            });
            Some(samples.iter().map(|s| b.interval(s)).collect::<Vec<_>>())
        }
        (None, Some(_)) => Some(vec![None; SUMMARY_STATS + 2 * n_cats]),
        _ => None,
    };
    let interval = |i: usize| intervals.as_ref().and_then(|v| v.get(i).copied().flatten());
    Ok(Metrics {
        images: view.images.iter().filter(|i| **i).count(),
        objects: counts.iter().sum(),
        summary,
        intervals: intervals.as_ref().map(|_| SummaryIntervals {
            ap: interval(0),
            ap50: interval(1),
            ap75: interval(2),
            ap_small: interval(3),
            ap_medium: interval(4),
            ap_large: interval(5),
        }),
        per_class: gt
            .categories
            .iter()
            .zip(per_class)
            .zip(counts)
            .enumerate()
            .map(|(k, ((class, (ap, ap50)), objects))| ClassMetrics {
                class: class.clone(),
                objects,
                ap,
                ap50,
                ap_interval: interval(SUMMARY_STATS + 2 * k),
                ap50_interval: interval(SUMMARY_STATS + 2 * k + 1),
            })
            .collect(),
    })
}

/// Image slots a view resamples.
fn units(view: &View) -> Vec<u32> {
    view.images
        .iter()
        .enumerate()
        .filter(|(_, inside)| **inside)
        .map(|(slot, _)| slot as u32)
        .collect()
}

/// Evaluates detections against a ground truth: COCO's figures overall and per class (equal to
/// pycocotools' on the same data), each slice value and KITTI difficulty level, and bootstrap
/// intervals when asked.
pub fn evaluate(
    gt: &GroundTruth,
    detections: &Detections,
    options: &EvalOptions,
) -> Result<EvalReport, EvalError> {
    if let Some(b) = &options.bootstrap {
        b.check()?;
    }
    for spec in &options.slices {
        spec.check()?;
    }
    let prepared = Prepared::new(gt, detections)?;
    let bootstrap = options.bootstrap.as_ref();
    let started = std::time::Instant::now();
    let overall = metrics(gt, &prepared, &View::everything(gt), bootstrap)?;
    let mut slices = Vec::new();
    for spec in &options.slices {
        for value in spec.values(gt) {
            let view = spec.view(gt, &value);
            slices.push(SliceReport {
                key: spec.key.clone(),
                value,
                metrics: metrics(gt, &prepared, &view, bootstrap)?,
            });
        }
    }
    let mut kitti_difficulty = Vec::new();
    if options.kitti_difficulty.unwrap_or_else(|| gt.is_kitti()) {
        for level in KittiLevel::ALL {
            kitti_difficulty.push(DifficultyReport {
                level,
                metrics: metrics(gt, &prepared, &level.view(gt), bootstrap)?,
            });
        }
    }
    tracing::debug!(
        images = gt.images.len(),
        detections = prepared.counts.evaluated,
        slices = slices.len(),
        elapsed_ms = started.elapsed().as_millis(),
        "evaluated {}",
        detections.source()
    );
    Ok(EvalReport {
        ground_truth: gt.source.clone(),
        predictions: detections.source().to_string(),
        categories: gt.categories.clone(),
        detections: prepared.counts,
        overall,
        slices,
        kitti_difficulty,
        bootstrap: options.bootstrap,
    })
}

/// Compares two arms on the same ground truth: every AP figure of both, `b - a`, and its paired
/// bootstrap interval (both arms re-accumulated on the same resampled image sets, so the
/// image-to-image variation they share cancels).
pub fn compare(
    gt: &GroundTruth,
    a: &Detections,
    b: &Detections,
    bootstrap: &Bootstrap,
) -> Result<Comparison, EvalError> {
    bootstrap.check()?;
    let view = View::everything(gt);
    let n_cats = gt.categories.len();
    let point = |evaluated: &Option<Evaluated>| -> Vec<Option<f64>> {
        let Some(evaluated) = evaluated else {
            return vec![None; SUMMARY_STATS + 2 * n_cats];
        };
        let summary = evaluated.summary();
        let mut values = vec![
            summary.ap,
            summary.ap50,
            summary.ap75,
            summary.ap_small,
            summary.ap_medium,
            summary.ap_large,
        ];
        values.extend(
            evaluated
                .per_class(n_cats)
                .into_iter()
                .flat_map(|(ap, ap50)| [ap, ap50]),
        );
        values
    };
    let ev_a = run_view(gt, &Prepared::new(gt, a)?, &view)?;
    let ev_b = run_view(gt, &Prepared::new(gt, b)?, &view)?;
    let (point_a, point_b) = (point(&ev_a), point(&ev_b));
    let samples = match (&ev_a, &ev_b) {
        (Some(ea), Some(eb)) => {
            let slots = slots(gt);
            let (ta, tb) = (
                MatchTable::build(&ea.ev, &slots),
                MatchTable::build(&eb.ev, &slots),
            );
            bootstrap.samples(&units(&view), gt.images.len(), |w| {
                let mut scratch = Scratch::default();
                let (sa, sb) = (ta.stats(w, &mut scratch), tb.stats(w, &mut scratch));
                sa.iter().zip(&sb).map(|(a, b)| b - a).collect()
            })
        }
        _ => vec![Vec::new(); point_a.len()],
    };
    let mut names: Vec<String> = Summary::NAMES[..SUMMARY_STATS]
        .iter()
        .map(|s| (*s).to_string())
        .collect();
    for class in &gt.categories {
        names.push(format!("{class}/AP"));
        names.push(format!("{class}/AP50"));
    }
    let differences = names
        .into_iter()
        .enumerate()
        .map(|(i, metric)| {
            let s = &samples[i];
            Difference {
                metric,
                a: point_a[i],
                b: point_b[i],
                difference: point_a[i].zip(point_b[i]).map(|(a, b)| b - a),
                interval: bootstrap.interval(s),
                b_better: (!s.is_empty())
                    .then(|| s.iter().filter(|d| **d > 0.0).count() as f64 / s.len() as f64),
            }
        })
        .collect();
    Ok(Comparison {
        ground_truth: gt.source.clone(),
        a: a.source().to_string(),
        b: b.source().to_string(),
        images: gt.images.len(),
        bootstrap: *bootstrap,
        differences,
    })
}

/// Precision-recall curves per evaluated class (ground-truth order) at `IoU` threshold `iou`,
/// which must be one of COCO's `0.50, 0.55, ..., 0.95`: pycocotools'
/// `eval['precision'][t, :, k, 0, -1]` for the whole ground truth, from the same hotcoco
/// evaluation as [`evaluate`], so at 0.5 each curve's mean is the class's AP50 there.
pub fn pr_curves(
    gt: &GroundTruth,
    detections: &Detections,
    iou: f64,
) -> Result<Vec<ClassPrCurve>, EvalError> {
    let t = Params::new(IouType::Bbox)
        .iou_thr_idx(iou)
        .ok_or(EvalError::IouThreshold { iou })?;
    let prepared = Prepared::new(gt, detections)?;
    Ok(run_view(gt, &prepared, &View::everything(gt))?
        .map(|e| e.pr_curves(&gt.categories, t))
        .unwrap_or_default())
}

fn fmt_value(v: Option<f64>) -> String {
    v.map_or_else(|| "    -".to_string(), |v| format!("{v:.3}"))
}

fn fmt_interval(i: Option<Interval>) -> String {
    i.map_or_else(String::new, |i| {
        format!(" [{:.3}, {:.3}]", i.lower, i.upper)
    })
}

impl Metrics {
    fn write(&self, f: &mut fmt::Formatter<'_>, indent: &str) -> fmt::Result {
        let s = &self.summary;
        let iv = self.intervals.unwrap_or_default();
        writeln!(
            f,
            "{indent}images {}  objects {}",
            self.images, self.objects
        )?;
        writeln!(
            f,
            "{indent}AP {}{}  AP50 {}{}  AP75 {}{}",
            fmt_value(s.ap),
            fmt_interval(iv.ap),
            fmt_value(s.ap50),
            fmt_interval(iv.ap50),
            fmt_value(s.ap75),
            fmt_interval(iv.ap75)
        )?;
        writeln!(
            f,
            "{indent}APs {}  APm {}  APl {}  AR1 {}  AR10 {}  AR100 {}",
            fmt_value(s.ap_small),
            fmt_value(s.ap_medium),
            fmt_value(s.ap_large),
            fmt_value(s.ar1),
            fmt_value(s.ar10),
            fmt_value(s.ar100)
        )?;
        for c in &self.per_class {
            writeln!(
                f,
                "{indent}  {:<16} {:>6} objects  AP {}{}  AP50 {}{}",
                c.class,
                c.objects,
                fmt_value(c.ap),
                fmt_interval(c.ap_interval),
                fmt_value(c.ap50),
                fmt_interval(c.ap50_interval)
            )?;
        }
        Ok(())
    }
}

/// A plain-text report for a terminal (`--json` prints the serde form instead).
impl fmt::Display for EvalReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "ground truth: {}", self.ground_truth)?;
        writeln!(
            f,
            "predictions: {} ({} evaluated, {} on other images, {} of unevaluated classes)",
            self.predictions,
            self.detections.evaluated,
            self.detections.other_images,
            self.detections.unevaluated_class
        )?;
        if let Some(b) = &self.bootstrap {
            writeln!(
                f,
                "intervals: {:.0}% bootstrap over images, {} resamples, seed {}",
                b.confidence * 100.0,
                b.resamples,
                b.seed
            )?;
        }
        writeln!(f, "overall")?;
        self.overall.write(f, "  ")?;
        for s in &self.slices {
            writeln!(f, "slice {} = {}", s.key, s.value)?;
            s.metrics.write(f, "  ")?;
        }
        for d in &self.kitti_difficulty {
            writeln!(f, "KITTI {}", d.level.as_str())?;
            d.metrics.write(f, "  ")?;
        }
        Ok(())
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "ground truth: {} ({} images)",
            self.ground_truth, self.images
        )?;
        writeln!(f, "a: {}", self.a)?;
        writeln!(f, "b: {}", self.b)?;
        writeln!(
            f,
            "paired {:.0}% bootstrap over images, {} resamples, seed {}",
            self.bootstrap.confidence * 100.0,
            self.bootstrap.resamples,
            self.bootstrap.seed
        )?;
        for d in &self.differences {
            writeln!(
                f,
                "  {:<24} a {}  b {}  b-a {}{}",
                d.metric,
                fmt_value(d.a),
                fmt_value(d.b),
                d.difference
                    .map_or_else(|| "     -".to_string(), |v| format!("{v:+.3}")),
                fmt_interval(d.interval)
            )?;
        }
        Ok(())
    }
}
