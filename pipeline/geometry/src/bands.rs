//! Placement bands: the image rows, and the allowed pixels in them, where the foot point of an
//! object at a given depth range can go.

use std::ops::Range;

use crate::{DrivableMask, GroundModel};

/// The rows of a depth range `[z_near, z_far]` and the count of mask pixels in them.
///
/// A far depth projects nearer the horizon, so `row_top = v(z_far)` and `row_bottom = v(z_near)`.
/// Pixel row `j` belongs to the band when its centre `j + 0.5` lies in `[row_top, row_bottom]`.
/// The band does not own the mask: pass the same mask to [`Self::nth_pixel`] and
/// [`Self::pixels`].
#[derive(Debug, Clone, PartialEq)]
pub struct PlacementBand {
    pub z_near: f64,
    pub z_far: f64,
    /// `v(z_far)`, continuous; the horizon for an infinite `z_far`.
    pub row_top: f64,
    /// `v(z_near)`, continuous; may lie below the image.
    pub row_bottom: f64,
    /// The pixel rows of the band inside the image.
    pub rows: Range<u32>,
    mask_size: (u32, u32),
    /// Mask pixels in `rows.start..rows.start + i + 1`, per row of `rows`.
    cumulative: Vec<usize>,
}

impl PlacementBand {
    /// Number of mask pixels in the band.
    pub fn pixel_count(&self) -> usize {
        self.cumulative.last().copied().unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.pixel_count() == 0
    }

    /// The `k`-th mask pixel `(x, y)` of the band in row-major order, `k < pixel_count()`; `None`
    /// past the end or for a mask of another size. Sampling `k` uniformly samples the band's
    /// pixels uniformly.
    pub fn nth_pixel(&self, mask: &DrivableMask, k: usize) -> Option<(u32, u32)> {
        if (mask.width, mask.height) != self.mask_size || k >= self.pixel_count() {
            return None;
        }
        let i = self.cumulative.partition_point(|&c| c <= k);
        let before = if i == 0 { 0 } else { self.cumulative[i - 1] };
        let y = self.rows.start + i as u32;
        let x = mask
            .row(y)
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b != 0)
            .nth(k - before)
            .map(|(x, _)| x as u32)?;
        Some((x, y))
    }

    /// Every mask pixel `(x, y)` of the band, row-major (nothing for a mask of another size).
    pub fn pixels<'a>(&'a self, mask: &'a DrivableMask) -> impl Iterator<Item = (u32, u32)> + 'a {
        let rows = if (mask.width, mask.height) == self.mask_size {
            self.rows.clone()
        } else {
            0..0
        };
        rows.flat_map(move |y| {
            mask.row(y)
                .iter()
                .enumerate()
                .filter(|&(_, &b)| b != 0)
                .map(move |(x, _)| (x as u32, y))
        })
    }
}

/// The placement band of depths `[z_near, z_far]` metres (in either order; `z_far` may be
/// infinite) over `mask` (drivable or roadside).
pub fn placement_band(
    ground: &GroundModel,
    mask: &DrivableMask,
    z_near: f64,
    z_far: f64,
) -> PlacementBand {
    let (z_near, z_far) = if z_near <= z_far {
        (z_near, z_far)
    } else {
        (z_far, z_near)
    };
    let row_top = if z_far.is_finite() {
        ground.row_at_depth(z_far)
    } else {
        ground.horizon_row
    };
    let row_bottom = if z_near > 0.0 {
        ground.row_at_depth(z_near)
    } else {
        f64::INFINITY
    };
    let height = f64::from(mask.height);
    // Rows strictly below the horizon only: the horizon row has no finite depth.
    let first = (row_top - 0.5)
        .ceil()
        .max((ground.horizon_row - 0.5).floor() + 1.0)
        .clamp(0.0, height);
    let end = ((row_bottom - 0.5).floor() + 1.0).clamp(first, height);
    let rows = first as u32..end as u32;
    let mut total = 0;
    let cumulative = rows
        .clone()
        .map(|y| {
            total += mask.row(y).iter().filter(|&&b| b != 0).count();
            total
        })
        .collect();
    PlacementBand {
        z_near,
        z_far,
        row_top,
        row_bottom,
        rows,
        mask_size: (mask.width, mask.height),
        cumulative,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GeometrySource;

    #[test]
    fn band_rows_follow_the_ground_plane() {
        // v = 50 + 100 * 1.5 / z: z = 10 -> 65, z = 5 -> 80.
        let ground = GroundModel {
            horizon_row: 50.0,
            focal_px: 100.0,
            camera_height_m: 1.5,
            source: GeometrySource::Intrinsics {
                camera_height_m: 1.5,
                height_assumed: false,
            },
        };
        let mask = DrivableMask::from_fn(20, 100, |x, _| x % 2 == 0);
        let band = placement_band(&ground, &mask, 10.0, 5.0);
        assert_eq!(band.rows, 65..80);
        assert_eq!(band.pixel_count(), 15 * 10);
        assert_eq!(band.nth_pixel(&mask, 0), Some((0, 65)));
        assert_eq!(band.nth_pixel(&mask, 11), Some((2, 66)));
        assert_eq!(band.nth_pixel(&mask, 150), None);
        let all: Vec<_> = band.pixels(&mask).collect();
        assert_eq!(all.len(), 150);
        for (k, &p) in all.iter().enumerate() {
            assert_eq!(band.nth_pixel(&mask, k), Some(p));
            assert!(
                ground
                    .depth_at_row(f64::from(p.1) + 0.5)
                    .is_some_and(|z| (5.0..=10.0).contains(&z))
            );
        }
        // Unbounded far depth starts below the horizon; the image bottom bounds it.
        let band = placement_band(&ground, &mask, 0.0, f64::INFINITY);
        assert_eq!(band.rows, 50..100);
        let other = DrivableMask::new(10, 10);
        assert_eq!(band.nth_pixel(&other, 0), None);
        assert_eq!(band.pixels(&other).count(), 0);
    }
}
