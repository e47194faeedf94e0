//! Shape cues of a cut-out that stand in for its viewpoint.
//!
//! A 2D mask does not tell the 3D viewpoint, but its shape separates the cases that matter when
//! choosing an asset: a car seen from the side is wide (aspect well above 1), from behind nearly
//! square; a tilted principal axis means a slope or a camera roll that would look wrong on a flat
//! road. Where the object faces is not knowable from mass alone, so the cue is named for what it
//! measures: [`HeavierSide`], the side of the box the mask's mass leans to (for side views of
//! animals often the head and neck side, but that is a tendency, not a measurement of facing).

use image::GrayImage;
use serde::{Deserialize, Serialize};

/// Which side of its box centre a mask's centroid lies on.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum HeavierSide {
    Left,
    Right,
    /// Within [`Viewpoint::BALANCE_TOLERANCE`] of the centre.
    #[default]
    Balanced,
}

impl HeavierSide {
    pub fn as_str(self) -> &'static str {
        match self {
            HeavierSide::Left => "left",
            HeavierSide::Right => "right",
            HeavierSide::Balanced => "balanced",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [HeavierSide::Left, HeavierSide::Right, HeavierSide::Balanced]
            .into_iter()
            .find(|side| side.as_str() == s)
    }

    /// The side after a horizontal flip of the cut-out.
    #[must_use]
    pub fn mirrored(self) -> Self {
        match self {
            HeavierSide::Left => HeavierSide::Right,
            HeavierSide::Right => HeavierSide::Left,
            HeavierSide::Balanced => HeavierSide::Balanced,
        }
    }
}

/// Shape cues of a mask, measured over its tight box (see [`measure_viewpoint`]).
///
/// An empty mask gives all zeros and [`HeavierSide::Balanced`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Viewpoint {
    /// Tight box width over height.
    pub aspect: f64,
    /// Direction of the mask's major principal axis (second central moments), degrees in
    /// `(-90, 90]`: 0 is horizontal, positive turns clockwise on screen (image y points down).
    /// Arbitrary when `elongation` is near 1.
    pub axis_angle_deg: f64,
    /// Standard deviation along the major axis over that along the minor one, `>= 1`. Each pixel
    /// counts as a unit square (adding 1/12 to both variances), so a one-pixel line stays finite.
    pub elongation: f64,
    /// Mask centroid minus box centre, as a fraction of the box width, `-0.5..0.5`.
    pub centroid_offset_x: f64,
    /// Mask centroid minus box centre, as a fraction of the box height, `-0.5..0.5` (positive:
    /// the mass sits low, as for a car's body above thin roof pillars).
    pub centroid_offset_y: f64,
    pub heavier_side: HeavierSide,
}

impl Viewpoint {
    /// Centroid offsets (in box widths) within which a mask counts as balanced: below this the
    /// lean is within what polygon rounding alone moves it.
    pub const BALANCE_TOLERANCE: f64 = 0.02;
}

/// Measures the shape cues of the pixels of `alpha` that are above 0, each weighted by
/// `alpha / 255`, over their tight box.
pub fn measure_viewpoint(alpha: &GrayImage) -> Viewpoint {
    let (mut m, mut sx, mut sy) = (0.0, 0.0, 0.0);
    let (mut x0, mut y0, mut x1, mut y1) = (u32::MAX, u32::MAX, 0, 0);
    for (x, y, a) in alpha.enumerate_pixels() {
        if a.0[0] == 0 {
            continue;
        }
        let w = f64::from(a.0[0]) / 255.0;
        m += w;
        sx += w * (f64::from(x) + 0.5);
        sy += w * (f64::from(y) + 0.5);
        (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x + 1), y1.max(y + 1));
    }
    if m <= 0.0 {
        return Viewpoint::default();
    }
    let (cx, cy) = (sx / m, sy / m);
    let (mut xx, mut yy, mut xy) = (0.0, 0.0, 0.0);
    for (x, y, a) in alpha.enumerate_pixels() {
        if a.0[0] == 0 {
            continue;
        }
        let w = f64::from(a.0[0]) / 255.0;
        let (dx, dy) = (f64::from(x) + 0.5 - cx, f64::from(y) + 0.5 - cy);
        xx += w * dx * dx;
        yy += w * dy * dy;
        xy += w * dx * dy;
    }
    let pixel_variance = 1.0 / 12.0;
    let (xx, yy, xy) = (xx / m + pixel_variance, yy / m + pixel_variance, xy / m);
    let half_diff = (xx - yy) / 2.0;
    let radius = half_diff.hypot(xy);
    let mid = f64::midpoint(xx, yy);
    let (major, minor) = (mid + radius, (mid - radius).max(f64::MIN_POSITIVE));
    let mut angle = 0.5 * (2.0 * xy).atan2(xx - yy).to_degrees();
    if angle <= -90.0 {
        angle += 180.0;
    }
    let (width, height) = (f64::from(x1 - x0), f64::from(y1 - y0));
    let offset_x = (cx - f64::midpoint(f64::from(x0), f64::from(x1))) / width;
    let offset_y = (cy - f64::midpoint(f64::from(y0), f64::from(y1))) / height;
    let heavier_side = if offset_x < -Viewpoint::BALANCE_TOLERANCE {
        HeavierSide::Left
    } else if offset_x > Viewpoint::BALANCE_TOLERANCE {
        HeavierSide::Right
    } else {
        HeavierSide::Balanced
    };
    Viewpoint {
        aspect: width / height,
        axis_angle_deg: angle,
        elongation: (major / minor).sqrt(),
        centroid_offset_x: offset_x,
        centroid_offset_y: offset_y,
        heavier_side,
    }
}
