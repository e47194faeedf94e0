use serde::{Deserialize, Serialize};

/// An axis-aligned 2D box in pixel coordinates, `xyxy`, as floats.
///
/// **The convention, written once:** coordinates are continuous, the image spans
/// `[0, width] x [0, height]`, and pixel `(i, j)` covers `[i, i+1) x [j, j+1)`. A box that covers
/// pixel columns 10 to 19 inclusive has `x0 = 10, x1 = 20`, so `width() = x1 - x0` is its pixel
/// width. COCO's `[x, y, w, h]` maps to `x0 = x, x1 = x + w` with no ±1; KITTI's
/// `left top right bottom` and BDD100K's `x1 y1 x2 y2` are taken as `x0 y0 x1 y1`; YOLO's
/// normalised centre form is scaled by the image size.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BBox {
    pub x0: f64,
    pub y0: f64,
    pub x1: f64,
    pub y1: f64,
}

/// Why a box is not acceptable for an image.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BoxError {
    #[error("box has a non-finite coordinate ({0})")]
    NonFinite(BBox),
    #[error("box is inverted or empty: x0 {x0} >= x1 {x1} or y0 {y0} >= y1 {y1}", x0 = .0.x0, x1 = .0.x1, y0 = .0.y0, y1 = .0.y1)]
    Inverted(BBox),
    #[error("box {box_} lies outside the {width}x{height} image")]
    OutsideImage { box_: BBox, width: u32, height: u32 },
}

/// `x0 y0 x1 y1` as the user wrote them (the convention above): `[-50, 10, 120, 80]`.
impl std::fmt::Display for BBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[{}, {}, {}, {}] (x0 y0 x1 y1)",
            self.x0, self.y0, self.x1, self.y1
        )
    }
}

impl BBox {
    /// How far (in pixels) a box may stick out of the image and still be accepted (then clipped).
    /// Exporters round; COCO boxes computed from polygons often end a fraction past the border.
    pub const BORDER_TOLERANCE: f64 = 1.0;

    pub fn new(x0: f64, y0: f64, x1: f64, y1: f64) -> Self {
        Self { x0, y0, x1, y1 }
    }

    /// From COCO's `[x, y, width, height]`.
    pub fn from_xywh(x: f64, y: f64, w: f64, h: f64) -> Self {
        Self::new(x, y, x + w, y + h)
    }

    /// From a normalised centre form (YOLO): `cx cy w h` in `[0, 1]` of the image size.
    pub fn from_normalized_cxcywh(
        cx: f64,
        cy: f64,
        w: f64,
        h: f64,
        width: u32,
        height: u32,
    ) -> Self {
        let (iw, ih) = (f64::from(width), f64::from(height));
        Self::new(
            (cx - w / 2.0) * iw,
            (cy - h / 2.0) * ih,
            (cx + w / 2.0) * iw,
            (cy + h / 2.0) * ih,
        )
    }

    pub fn width(&self) -> f64 {
        self.x1 - self.x0
    }

    pub fn height(&self) -> f64 {
        self.y1 - self.y0
    }

    pub fn area(&self) -> f64 {
        self.width().max(0.0) * self.height().max(0.0)
    }

    /// `[x, y, w, h]`, COCO's form.
    pub fn to_xywh(&self) -> [f64; 4] {
        [self.x0, self.y0, self.width(), self.height()]
    }

    /// `[cx, cy, w, h]` normalised by the image size, YOLO's form.
    pub fn to_normalized_cxcywh(&self, width: u32, height: u32) -> [f64; 4] {
        let (iw, ih) = (f64::from(width), f64::from(height));
        [
            f64::midpoint(self.x0, self.x1) / iw,
            f64::midpoint(self.y0, self.y1) / ih,
            self.width() / iw,
            self.height() / ih,
        ]
    }

    pub fn intersection(&self, other: &BBox) -> f64 {
        let w = self.x1.min(other.x1) - self.x0.max(other.x0);
        let h = self.y1.min(other.y1) - self.y0.max(other.y0);
        if w <= 0.0 || h <= 0.0 { 0.0 } else { w * h }
    }

    pub fn iou(&self, other: &BBox) -> f64 {
        let inter = self.intersection(other);
        let union = self.area() + other.area() - inter;
        if union <= 0.0 { 0.0 } else { inter / union }
    }

    /// Checks the box against an image and clips it to the image when it sticks out by no more
    /// than [`Self::BORDER_TOLERANCE`].
    pub fn validated(self, width: u32, height: u32) -> Result<BBox, BoxError> {
        if ![self.x0, self.y0, self.x1, self.y1]
            .iter()
            .all(|v| v.is_finite())
        {
            return Err(BoxError::NonFinite(self));
        }
        if self.x0 >= self.x1 || self.y0 >= self.y1 {
            return Err(BoxError::Inverted(self));
        }
        let (w, h) = (f64::from(width), f64::from(height));
        let t = Self::BORDER_TOLERANCE;
        if self.x0 < -t || self.y0 < -t || self.x1 > w + t || self.y1 > h + t {
            return Err(BoxError::OutsideImage {
                box_: self,
                width,
                height,
            });
        }
        let clipped = BBox::new(
            self.x0.max(0.0),
            self.y0.max(0.0),
            self.x1.min(w),
            self.y1.min(h),
        );
        if clipped.x0 >= clipped.x1 || clipped.y0 >= clipped.y1 {
            return Err(BoxError::OutsideImage {
                box_: self,
                width,
                height,
            });
        }
        Ok(clipped)
    }
}

#[cfg(test)]
#[allow(
    clippy::float_cmp,
    reason = "these values are exact in binary floating point"
)]
mod tests {
    use super::*;

    #[test]
    fn coco_and_yolo_forms_round_trip() {
        let b = BBox::from_xywh(10.0, 20.0, 30.0, 40.0);
        assert_eq!(b, BBox::new(10.0, 20.0, 40.0, 60.0));
        assert_eq!(b.to_xywh(), [10.0, 20.0, 30.0, 40.0]);
        let [cx, cy, w, h] = b.to_normalized_cxcywh(100, 200);
        let back = BBox::from_normalized_cxcywh(cx, cy, w, h, 100, 200);
        assert!((back.x0 - b.x0).abs() < 1e-9 && (back.y1 - b.y1).abs() < 1e-9);
    }

    #[test]
    fn validation_rejects_bad_boxes_and_clips_small_overhang() {
        assert!(matches!(
            BBox::new(f64::NAN, 0.0, 1.0, 1.0).validated(10, 10),
            Err(BoxError::NonFinite(_))
        ));
        assert!(matches!(
            BBox::new(5.0, 0.0, 1.0, 1.0).validated(10, 10),
            Err(BoxError::Inverted(_))
        ));
        assert!(matches!(
            BBox::new(0.0, 0.0, 50.0, 5.0).validated(10, 10),
            Err(BoxError::OutsideImage { .. })
        ));
        assert_eq!(
            BBox::new(-0.5, 0.0, 10.4, 5.0).validated(10, 10),
            Ok(BBox::new(0.0, 0.0, 10.0, 5.0))
        );
    }

    #[test]
    fn iou_of_half_overlap() {
        let a = BBox::new(0.0, 0.0, 2.0, 1.0);
        let b = BBox::new(1.0, 0.0, 3.0, 1.0);
        assert!((a.iou(&b) - 1.0 / 3.0).abs() < 1e-12);
    }
}
