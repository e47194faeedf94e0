//! Training targets per anchor: which anchors are an object (of which class, towards which box),
//! which are background, and which are ignored.
//!
//! Candidates follow YOLOX's centre sampling: an anchor whose centre lies inside a box or within
//! 2.5 strides of its centre. Among them, `SimOTA`'s dynamic-k picks the positives by the `IoU` of the
//! frozen backbone's own box with the target (`k` = the sum of the 10 best `IoUs`, at least 1),
//! preferring anchors that are both inside the box and near its centre; an anchor claimed by
//! several boxes goes to the one it fits best. Because the backbone is frozen its boxes do not
//! move during training, so the assignment is fixed per augmented frame and picks the cells
//! where the backbone actually sees the object: targets there are learnable from the features,
//! where a cell that sees nothing of the object (a fine-level cell inside a large car) would
//! only add noise. Anchors that are not positive and whose centre lies in an ignore region
//! (crowd, `DontCare`, an unmapped class, a box mostly cut off by the crop) are neither positive
//! nor negative.

use ndarray::Array2;

use crate::backbone::Anchor;

/// Radius of the centre region, in strides (YOLOX's).
const CENTRE_RADIUS: f32 = 2.5;
/// How many of the best `IoUs` sum to a box's dynamic `k` (YOLOX's).
const TOP_IOUS: usize = 10;
/// Box refinement targets are clamped to this (a refinement of `e^4` in size is already absurd).
const MAX_DELTA: f32 = 4.0;

/// A target box in network pixels with its detector class.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct GtBox {
    pub bbox: [f32; 4],
    pub class: usize,
}

/// What an anchor is trained towards.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Target {
    Negative,
    Ignore,
    Positive {
        class: usize,
        /// `IoU` of the backbone's box with the target: the class target, so that the score
        /// ranks well-localised cells first (YOLOX's `IoU`-aware classification).
        iou: f32,
        /// Refinement of the backbone's box that reaches the target: centre offset in units of
        /// the box size, log size ratio.
        deltas: [f32; 4],
    },
}

pub(crate) fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    let area = |r: [f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let inter = area([
        a[0].max(b[0]),
        a[1].max(b[1]),
        a[2].min(b[2]),
        a[3].min(b[3]),
    ]);
    let union = area(a) + area(b) - inter;
    if union > 0.0 { inter / union } else { 0.0 }
}

/// The refinement taking box `from` to box `to` (both `xyxy`).
pub(crate) fn deltas(from: [f32; 4], to: [f32; 4]) -> [f32; 4] {
    let (fw, fh) = ((from[2] - from[0]).max(1e-3), (from[3] - from[1]).max(1e-3));
    let (tw, th) = ((to[2] - to[0]).max(1e-3), (to[3] - to[1]).max(1e-3));
    let d = [
        ((to[0] + to[2]) - (from[0] + from[2])) / 2.0 / fw,
        ((to[1] + to[3]) - (from[1] + from[3])) / 2.0 / fh,
        (tw / fw).ln(),
        (th / fh).ln(),
    ];
    d.map(|v| v.clamp(-MAX_DELTA, MAX_DELTA))
}

/// Applies a refinement to a box.
pub(crate) fn refine(from: [f32; 4], d: [f32; 4]) -> [f32; 4] {
    let (w, h) = (from[2] - from[0], from[3] - from[1]);
    let cx = f32::midpoint(from[0], from[2]) + d[0] * w;
    let cy = f32::midpoint(from[1], from[3]) + d[1] * h;
    let w = w * d[2].clamp(-MAX_DELTA, MAX_DELTA).exp();
    let h = h * d[3].clamp(-MAX_DELTA, MAX_DELTA).exp();
    [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0]
}

fn inside(b: [f32; 4], (x, y): (f32, f32)) -> bool {
    b[0] < x && x < b[2] && b[1] < y && y < b[3]
}

/// The target of every anchor of one frame, given the backbone's raw output.
pub(crate) fn assign(
    anchors: &[Anchor],
    raw: &Array2<f32>,
    boxes: &[GtBox],
    ignore: &[[f32; 4]],
) -> Vec<Target> {
    // (cost, gt index, iou) of the best claim on each anchor.
    let mut claims: Vec<Option<(f32, usize, f32)>> = vec![None; anchors.len()];
    let mut predicted: Vec<Option<[f32; 4]>> = vec![None; anchors.len()];
    for (g, gt) in boxes.iter().enumerate() {
        let b = gt.bbox;
        let centre = (f32::midpoint(b[0], b[2]), f32::midpoint(b[1], b[3]));
        let mut candidates: Vec<(f32, usize, f32)> = Vec::new();
        for (a, anchor) in anchors.iter().enumerate() {
            let c = anchor.centre();
            let r = CENTRE_RADIUS * anchor.stride;
            let in_box = inside(b, c);
            let in_centre = (c.0 - centre.0).abs() < r && (c.1 - centre.1).abs() < r;
            if !(in_box || in_centre) {
                continue;
            }
            let p = *predicted[a].get_or_insert_with(|| {
                anchor.decode(raw.row(a).as_slice().expect("rows are contiguous"))
            });
            let overlap = iou(p, b);
            let mut cost = -3.0 * (overlap + 1e-8).ln();
            if !(in_box && in_centre) {
                cost += 1e5;
            }
            candidates.push((cost, a, overlap));
        }
        let mut ious: Vec<f32> = candidates.iter().map(|c| c.2).collect();
        ious.sort_by(|x, y| y.total_cmp(x));
        let k = (ious.iter().take(TOP_IOUS).sum::<f32>() as usize).max(1);
        candidates.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
        for &(cost, a, overlap) in candidates.iter().take(k) {
            if claims[a].is_none_or(|(best, _, _)| cost < best) {
                claims[a] = Some((cost, g, overlap));
            }
        }
    }
    anchors
        .iter()
        .enumerate()
        .map(|(a, anchor)| match claims[a] {
            Some((_, g, overlap)) => Target::Positive {
                class: boxes[g].class,
                iou: overlap,
                deltas: deltas(predicted[a].expect("decoded when claimed"), boxes[g].bbox),
            },
            None if ignore.iter().any(|&r| inside(r, anchor.centre())) => Target::Ignore,
            None => Target::Negative,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backbone::{RAW, anchors};

    #[test]
    fn refine_inverts_deltas() {
        let from = [10.0, 20.0, 50.0, 40.0];
        let to = [12.0, 18.0, 60.0, 45.0];
        let back = refine(from, deltas(from, to));
        for (a, b) in back.iter().zip(to) {
            assert!((a - b).abs() < 1e-4, "{back:?}");
        }
    }

    #[test]
    fn positives_are_where_the_backbone_boxes_fit() {
        let grid = anchors(64);
        // Every cell predicts a tiny box (size e^-2 strides) at its corner; the stride-8 cell
        // (3, 3) predicts exactly the target 24..40 (centre 32, size 16).
        let mut raw = Array2::<f32>::zeros((grid.len(), RAW));
        raw.column_mut(2).fill(-2.0);
        raw.column_mut(3).fill(-2.0);
        let target = GtBox {
            bbox: [24.0, 24.0, 40.0, 40.0],
            class: 1,
        };
        let at = 3 * 8 + 3;
        raw[[at, 0]] = 1.0;
        raw[[at, 1]] = 1.0;
        raw[[at, 2]] = 2f32.ln();
        raw[[at, 3]] = 2f32.ln();
        let ignore = [[0.0, 48.0, 16.0, 64.0]];
        let targets = assign(&grid, &raw, &[target], &ignore);
        let positives: Vec<usize> = targets
            .iter()
            .enumerate()
            .filter(|(_, t)| matches!(t, Target::Positive { .. }))
            .map(|(a, _)| a)
            .collect();
        // The best IoU is 1, plus a few small ones: k = 1, the exact cell.
        assert_eq!(positives, [at]);
        let Target::Positive { class, iou, deltas } = targets[at] else {
            unreachable!()
        };
        assert_eq!(class, 1);
        assert!((iou - 1.0).abs() < 1e-6);
        assert!(deltas.iter().all(|d| d.abs() < 1e-6), "{deltas:?}");
        // Stride-8 cell (0, 7) has its centre (4, 60) in the ignore region.
        assert_eq!(targets[7 * 8], Target::Ignore);
        assert_eq!(targets[0], Target::Negative);
    }
}
