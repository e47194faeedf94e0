//! Per-image match tables: what hotcoco's per-image evaluation decided for every detection, kept
//! so that AP can be re-accumulated under any image weighting without matching again.
//!
//! pycocotools' `accumulate` walks each (category, area range)'s detections in score order and
//! needs, per detection and `IoU` threshold, only whether it was a true positive, a false positive or
//! ignored, plus the number of non-ignored ground truths. Those facts depend on the image alone, so
//! a bootstrap resample that draws image `i` `w_i` times is the same walk with each detection of
//! `i` counted `w_i` times and `w_i` times its ground truths. This module does that walk with
//! integer weights; with every weight 1 it is pycocotools' `accumulate` and `summarize` for the AP
//! figures (the tests check it against hotcoco to 1e-12).

use std::collections::HashMap;

use hotcoco::COCOeval;

/// The `IoU` thresholds' flags of one detection fit a `u16`.
const MAX_THRESHOLDS: usize = 16;

/// One detection that is not ignored at some threshold.
#[derive(Debug, Clone, Copy)]
struct Det {
    /// Image slot: index into the ground truth's images.
    image: u32,
    /// Bit `t`: a true positive at `IoU` threshold `t`.
    tp: u16,
    /// Bit `t`: a false positive at `IoU` threshold `t`.
    fp: u16,
}

/// One (category, area range): its detections in pycocotools' order and its ground-truth counts.
#[derive(Debug, Clone, Default)]
struct Cell {
    /// Score descending; ties by image (ascending id) then rank in the image, which is the order
    /// pycocotools' stable sort of the per-image concatenation gives.
    dets: Vec<Det>,
    /// `(image slot, ground truths that count toward recall)`, for images with any.
    gt: Vec<(u32, u32)>,
}

/// The indices of the summary figures a table computes.
#[derive(Debug, Clone, Copy)]
struct Axes {
    all: usize,
    small: Option<usize>,
    medium: Option<usize>,
    large: Option<usize>,
    t50: Option<usize>,
    t75: Option<usize>,
}

/// AP figures of one evaluation, re-accumulated under image weights.
#[derive(Debug, Clone)]
pub(crate) struct MatchTable {
    n_thr: usize,
    n_areas: usize,
    n_cats: usize,
    rec_thrs: Vec<f64>,
    axes: Axes,
    /// `k * n_areas + a`.
    cells: Vec<Cell>,
}

/// Number of figures [`MatchTable::stats`] returns before the per-class ones.
pub(crate) const SUMMARY_STATS: usize = 6;

impl MatchTable {
    /// Builds the table from an evaluated `COCOeval`. `slots` maps image ids to image slots (the
    /// ground truth's image order, ascending ids); `params.cat_ids` must be `1..=K`.
    pub fn build(ev: &COCOeval, slots: &HashMap<u64, u32>) -> Self {
        let params = &ev.params;
        let n_thr = params.iou_thrs.len();
        assert!(
            n_thr <= MAX_THRESHOLDS,
            "at most {MAX_THRESHOLDS} IoU thresholds"
        );
        let n_areas = params.area_ranges.len();
        let n_cats = params.cat_ids.len();
        let max_det = params.max_det();
        let cat_index: HashMap<u64, usize> = params
            .cat_ids
            .iter()
            .enumerate()
            .map(|(k, &id)| (id, k))
            .collect();
        let area_index = |range: [f64; 2]| {
            params.area_ranges.iter().position(|a| {
                a.range[0].to_bits() == range[0].to_bits()
                    && a.range[1].to_bits() == range[1].to_bits()
            })
        };
        let mut raw: Vec<Vec<(f64, u32, usize, Det)>> = vec![Vec::new(); n_cats * n_areas];
        let mut gt: Vec<Vec<(u32, u32)>> = vec![Vec::new(); n_cats * n_areas];
        for e in ev.eval_imgs().iter().flatten() {
            if e.max_det != max_det {
                continue;
            }
            let (Some(&k), Some(a), Some(&image)) = (
                cat_index.get(&e.category_id),
                area_index(e.area_rng),
                slots.get(&e.image_id),
            ) else {
                continue;
            };
            let cell = k * n_areas + a;
            let n_gt = e.num_gt_in_denominator() as u32;
            if n_gt > 0 {
                gt[cell].push((image, n_gt));
            }
            for (rank, &score) in e.dt_scores.iter().enumerate().take(max_det) {
                let mut det = Det {
                    image,
                    tp: 0,
                    fp: 0,
                };
                for t in 0..n_thr {
                    if e.dt_ignore[(t, rank)] {
                        continue;
                    }
                    if e.dt_matched[(t, rank)] {
                        det.tp |= 1 << t;
                    } else {
                        det.fp |= 1 << t;
                    }
                }
                if det.tp | det.fp != 0 {
                    raw[cell].push((score, image, rank, det));
                }
            }
        }
        let cells = raw
            .into_iter()
            .zip(gt)
            .map(|(mut dets, gt)| {
                dets.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
                Cell {
                    dets: dets.into_iter().map(|d| d.3).collect(),
                    gt,
                }
            })
            .collect();
        let axes = Axes {
            all: params.all_area_idx(),
            small: params.area_range_idx("small"),
            medium: params.area_range_idx("medium"),
            large: params.area_range_idx("large"),
            t50: params.iou_thr_idx(0.5),
            t75: params.iou_thr_idx(0.75),
        };
        Self {
            n_thr,
            n_areas,
            n_cats,
            rec_thrs: params.rec_thrs.clone(),
            axes,
            cells,
        }
    }

    /// Number of figures [`Self::stats`] returns.
    pub fn stat_count(&self) -> usize {
        SUMMARY_STATS + 2 * self.n_cats
    }

    /// The AP figures with image slot `i` counted `weights[i]` times: `[AP, AP50, AP75, APs,
    /// APm, APl]`, then per category `AP, AP50`. `NaN` where pycocotools would report `-1`
    /// (no ground truth counts toward recall).
    pub fn stats(&self, weights: &[u32], scratch: &mut Scratch) -> Vec<f64> {
        let mut out = vec![f64::NAN; self.stat_count()];
        // Per area range: per category, AP averaged over thresholds, and AP at 0.5 and 0.75.
        let mut by_area = |a: usize| -> Vec<Option<(f64, f64, f64)>> {
            (0..self.n_cats)
                .map(|k| {
                    let cell = &self.cells[k * self.n_areas + a];
                    let npig: f64 = cell
                        .gt
                        .iter()
                        .map(|&(image, n)| f64::from(weights[image as usize]) * f64::from(n))
                        .sum();
                    if npig == 0.0 {
                        return None;
                    }
                    let per_t: Vec<f64> = (0..self.n_thr)
                        .map(|t| self.ap_at(cell, t, weights, npig, scratch))
                        .collect();
                    let at = |t: Option<usize>| t.map_or(f64::NAN, |t| per_t[t]);
                    Some((
                        per_t.iter().sum::<f64>() / self.n_thr as f64,
                        at(self.axes.t50),
                        at(self.axes.t75),
                    ))
                })
                .collect()
        };
        let mean = |values: &mut dyn Iterator<Item = f64>| {
            let (sum, n) = values.fold((0.0, 0_usize), |(s, n), v| (s + v, n + 1));
            if n == 0 { f64::NAN } else { sum / n as f64 }
        };
        let all = by_area(self.axes.all);
        out[0] = mean(&mut all.iter().flatten().map(|v| v.0));
        out[1] = mean(&mut all.iter().flatten().map(|v| v.1));
        out[2] = mean(&mut all.iter().flatten().map(|v| v.2));
        for (slot, area) in [self.axes.small, self.axes.medium, self.axes.large]
            .into_iter()
            .enumerate()
        {
            if let Some(a) = area {
                out[3 + slot] = mean(&mut by_area(a).iter().flatten().map(|v| v.0));
            }
        }
        for (k, v) in all.iter().enumerate() {
            if let Some((ap, ap50, _)) = v {
                out[SUMMARY_STATS + 2 * k] = *ap;
                out[SUMMARY_STATS + 2 * k + 1] = *ap50;
            }
        }
        out
    }

    /// pycocotools' interpolated precision averaged over the recall grid, for one cell and `IoU`
    /// threshold: cumulative true and false positives in score order, precision made monotone from
    /// the right, read at the first point reaching each recall threshold (0 past the last point).
    fn ap_at(&self, cell: &Cell, t: usize, weights: &[u32], npig: f64, s: &mut Scratch) -> f64 {
        let bit = 1_u16 << t;
        s.recall.clear();
        s.precision.clear();
        let (mut tp, mut fp) = (0.0, 0.0);
        for d in &cell.dets {
            let w = weights[d.image as usize];
            if w == 0 {
                continue;
            }
            if d.tp & bit != 0 {
                tp += f64::from(w);
            } else if d.fp & bit != 0 {
                fp += f64::from(w);
            } else {
                // Ignored at this threshold: pycocotools adds a point equal to the one before,
                // which changes no interpolated value.
                continue;
            }
            s.recall.push(tp / npig);
            s.precision.push(tp / (fp + tp + f64::EPSILON));
        }
        let n = s.precision.len();
        for i in (1..n).rev() {
            if s.precision[i] > s.precision[i - 1] {
                s.precision[i - 1] = s.precision[i];
            }
        }
        let mut sum = 0.0;
        let mut i = 0;
        for &r in &self.rec_thrs {
            while i < n && s.recall[i] < r {
                i += 1;
            }
            if i == n {
                break;
            }
            sum += s.precision[i];
        }
        sum / self.rec_thrs.len() as f64
    }
}

/// Buffers reused across [`MatchTable::stats`] calls.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    recall: Vec<f64>,
    precision: Vec<f64>,
}
