//! Shared by the integration tests and the examples: ingesting shared data into a temporary
//! dataset, and a small AP50 for checking what a trained head finds.
//!
//! The AP here is COCO's at a single `IoU` of 0.5 (greedy matching best score first, crowd and
//! ignore regions absorb detections without counting, 101-point interpolated precision, 100
//! detections per image): enough to measure the head, while reports use `roadsynth-eval`.

#![allow(dead_code, reason = "each user takes the parts it needs")]

use std::path::Path;

use roadsynth_dataset::{Dataset, DatasetWriter, Projection, WriteOptions};
use roadsynth_detector::Predictor;
use roadsynth_formats::{LoadOptions, coco, load_all};

/// A COCO file to ingest: its images under `images` (default: beside the file), into `split`,
/// only the first `keep` frames when given.
pub struct Source<'a> {
    pub json: &'a Path,
    pub images: Option<&'a Path>,
    pub split: &'a str,
    pub keep: Option<usize>,
}

impl<'a> Source<'a> {
    pub fn new(json: &'a Path, split: &'a str) -> Self {
        Self {
            json,
            images: None,
            split,
            keep: None,
        }
    }

    pub fn keep(self, keep: usize) -> Self {
        Self {
            keep: Some(keep),
            ..self
        }
    }
}

/// Ingests COCO files into one new dataset at `root`. Everything must load.
pub fn ingest_coco(root: &Path, sources: &[Source<'_>]) -> Dataset {
    let mut writer = DatasetWriter::create(root, WriteOptions::default()).expect("create dataset");
    for source in sources {
        let mut scan =
            coco::scan(source.json, source.images, source.split).expect("scan COCO json");
        assert!(scan.quarantined.is_empty(), "{:?}", scan.quarantined);
        if let Some(keep) = source.keep {
            scan.frames.truncate(keep);
        }
        load_all(scan.frames, &LoadOptions::default(), 16, |result| {
            writer.write(&result.expect("frame loads"))
        })
        .expect("write frames");
    }
    writer
        .commit(serde_json::json!({"test": "roadsynth-detector"}))
        .expect("commit");
    Dataset::open(root).expect("open")
}

#[derive(Debug, Clone)]
pub struct Gt {
    pub class: String,
    pub bbox: [f64; 4],
    pub ignore: bool,
}

#[derive(Debug, Clone)]
pub struct Det {
    pub class: String,
    pub score: f32,
    pub bbox: [f64; 4],
}

fn area(b: [f64; 4]) -> f64 {
    (b[2] - b[0]).max(0.0) * (b[3] - b[1]).max(0.0)
}

fn overlap(d: [f64; 4], g: [f64; 4], crowd: bool) -> f64 {
    let inter = area([
        d[0].max(g[0]),
        d[1].max(g[1]),
        d[2].min(g[2]),
        d[3].min(g[3]),
    ]);
    // COCO: a crowd region's "IoU" is the part of the detection inside it.
    let union = if crowd {
        area(d)
    } else {
        area(d) + area(g) - inter
    };
    if union > 0.0 { inter / union } else { 0.0 }
}

/// AP at `IoU` 0.5 of one class over images of `(ground truth, detections)`; `None` without
/// ground truth of the class.
pub fn ap50(images: &[(Vec<Gt>, Vec<Det>)], class: &str) -> Option<f64> {
    ap_at(images, class, 0.5)
}

/// The fraction of a class's boxes that some detection of the class (of any score, within the
/// 100 best per image) covers at `IoU` 0.5: what ranking cannot improve.
pub fn max_recall(images: &[(Vec<Gt>, Vec<Det>)], class: &str) -> f64 {
    let (mut found, mut total) = (0, 0);
    for (gts, dets) in images {
        for gt in gts.iter().filter(|g| g.class == class && !g.ignore) {
            total += 1;
            if dets
                .iter()
                .any(|d| d.class == class && overlap(d.bbox, gt.bbox, false) >= 0.5)
            {
                found += 1;
            }
        }
    }
    f64::from(found) / f64::from(total.max(1))
}

/// AP at an `IoU` threshold (a low one separates finding objects from boxing them exactly).
pub fn ap_at(images: &[(Vec<Gt>, Vec<Det>)], class: &str, threshold: f64) -> Option<f64> {
    let mut scored: Vec<(f32, bool)> = Vec::new();
    let mut positives = 0_usize;
    for (gts, dets) in images {
        let gts: Vec<&Gt> = gts.iter().filter(|g| g.class == class).collect();
        positives += gts.iter().filter(|g| !g.ignore).count();
        let mut dets: Vec<&Det> = dets.iter().filter(|d| d.class == class).collect();
        dets.sort_by(|a, b| b.score.total_cmp(&a.score));
        dets.truncate(100);
        let mut taken = vec![false; gts.len()];
        for det in dets {
            let mut best: Option<(usize, f64)> = None;
            // Real boxes first, then ignore regions, as COCO orders them.
            for pass_ignore in [false, true] {
                for (i, gt) in gts.iter().enumerate() {
                    if gt.ignore != pass_ignore || (taken[i] && !gt.ignore) {
                        continue;
                    }
                    let o = overlap(det.bbox, gt.bbox, gt.ignore);
                    if o >= threshold && best.is_none_or(|(_, b)| o > b) {
                        best = Some((i, o));
                    }
                }
                if best.is_some() {
                    break;
                }
            }
            match best {
                Some((i, _)) if gts[i].ignore => {}
                Some((i, _)) => {
                    taken[i] = true;
                    scored.push((det.score, true));
                }
                None => scored.push((det.score, false)),
            }
        }
    }
    if positives == 0 {
        return None;
    }
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut curve: Vec<(f64, f64)> = Vec::new();
    for (_, hit) in scored {
        if hit {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        curve.push((tp / positives as f64, tp / (tp + fp)));
    }
    // Precision made monotone from the right, sampled at recall 0, 0.01, ..., 1.
    for i in (0..curve.len().saturating_sub(1)).rev() {
        curve[i].1 = curve[i].1.max(curve[i + 1].1);
    }
    let mut sum = 0.0;
    for step in 0..=100 {
        let r = f64::from(step) / 100.0;
        if let Some(&(_, p)) = curve.iter().find(|(recall, _)| *recall >= r - 1e-12) {
            sum += p;
        }
    }
    Some(sum / 101.0)
}

/// Predicts every frame of a split and pairs the detections with the frame's boxes, classes
/// renamed by `rename` (the dataset's names to the detector's).
pub fn predict_split(
    predictor: &mut Predictor,
    dataset: &Dataset,
    split: &str,
    limit: Option<usize>,
    rename: impl Fn(&str) -> Option<String>,
) -> Vec<(Vec<Gt>, Vec<Det>)> {
    let mut out = Vec::new();
    for record in dataset
        .frames(split, Projection::Full)
        .expect("split")
        .take(limit.unwrap_or(usize::MAX))
    {
        let record = record.expect("frame");
        let rgb = image::load_from_memory(record.image.as_deref().expect("image bytes"))
            .expect("decode")
            .into_rgb8();
        let gts = record
            .annotations
            .iter()
            .filter_map(|a| {
                rename(&a.class).map(|class| Gt {
                    class,
                    bbox: [a.bbox.x0, a.bbox.y0, a.bbox.x1, a.bbox.y1],
                    ignore: a.crowd || a.ignore,
                })
            })
            .collect();
        let dets = predictor
            .predict(&rgb)
            .expect("predict")
            .into_iter()
            .map(|p| Det {
                class: p.class,
                score: p.score,
                bbox: [p.bbox.x0, p.bbox.y0, p.bbox.x1, p.bbox.y1],
            })
            .collect();
        out.push((gts, dets));
    }
    out
}
