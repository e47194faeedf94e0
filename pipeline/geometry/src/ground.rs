use roadsynth_types::Camera;
use serde::{Deserialize, Serialize};

use crate::GeometryError;

/// Horizontal field of view assumed when a frame has no intrinsics, degrees.
///
/// Forward automotive cameras have a horizontal field of view of roughly 50-90°: KITTI's
/// rectified colour camera 2 x atan(621 / 721) ≈ 81° (P2, 1242 px wide), nuScenes' `CAM_FRONT`
/// 2 x atan(800 / 1266) ≈ 65°; dash cameras and camcorders at their usual zoom are narrower. 60°
/// is a round value at the narrow side of that range. It sets only the focal length, and through
/// it metric depths; pixel heights at a row do not depend on it. The value used is recorded in
/// [`GeometrySource`].
pub const DEFAULT_HFOV_DEG: f64 = 60.0;

/// Focal length in pixels of a camera `image_width` pixels wide with horizontal field of view
/// `hfov_deg` (square pixels, principal point at the centre).
pub fn focal_from_hfov(image_width: u32, hfov_deg: f64) -> f64 {
    f64::from(image_width) / 2.0 / (hfov_deg.to_radians() / 2.0).tan()
}

/// Depths `(z_near, z_far)` of the footprint of a box `length_m` long and `width_m` wide centred
/// at depth `z`, turned by `yaw_rad` about the vertical axis (KITTI's `rotation_y`: 0 when its
/// length runs along the camera's x axis).
pub fn footprint_depths(z: f64, length_m: f64, width_m: f64, yaw_rad: f64) -> (f64, f64) {
    let (sin, cos) = yaw_rad.sin_cos();
    let half = (length_m * sin).abs() / 2.0 + (width_m * cos).abs() / 2.0;
    (z - half, z + half)
}

/// Where a [`GroundModel`]'s parameters came from; recorded with every plan and generated box.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum GeometrySource {
    /// The frame's intrinsics (`fy`, `cy`) and a camera height.
    Intrinsics {
        camera_height_m: f64,
        /// The height was assumed (the source gave intrinsics without it).
        height_assumed: bool,
    },
    /// A robust fit of the horizon and the row-to-scale relation on the dataset's own boxes of
    /// known-size classes; `fy` from an assumed field of view.
    FittedFromBoxes {
        /// Classes whose boxes were used.
        classes: Vec<String>,
        /// Number of boxes used.
        n: usize,
        /// Median relative error of the fitted heights on the boxes used, `|pred - h| / h`.
        residual: f64,
        /// The horizontal field of view assumed for the focal length, degrees.
        assumed_hfov_deg: f64,
    },
    /// No intrinsics and no usable boxes: the horizon at a fraction of the image height, an
    /// assumed camera height and field of view.
    HorizonPrior {
        horizon_fraction: f64,
        camera_height_m: f64,
        assumed_hfov_deg: f64,
    },
}

impl GeometrySource {
    /// Short name for recording: `intrinsics`, `fitted` or `horizon`.
    pub fn as_str(&self) -> &'static str {
        match self {
            GeometrySource::Intrinsics { .. } => "intrinsics",
            GeometrySource::FittedFromBoxes { .. } => "fitted",
            GeometrySource::HorizonPrior { .. } => "horizon",
        }
    }
}

/// A flat ground plane seen by a level pinhole camera (see the crate documentation).
///
/// Rows are continuous image coordinates (`BBox`'s convention: pixel row `j` spans `[j, j+1)`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroundModel {
    /// The horizon row `v0`: where the ground plane vanishes.
    pub horizon_row: f64,
    /// Vertical focal length `fy`, pixels.
    pub focal_px: f64,
    /// Camera height above the ground `h_cam`, metres.
    pub camera_height_m: f64,
    pub source: GeometrySource,
}

impl GroundModel {
    /// Camera height assumed for frames whose source does not give one, metres: a passenger
    /// car's roof or windscreen camera (KITTI 1.65 m, nuScenes 1.51 m, `BDD100K` dash cameras
    /// lower).
    pub const ASSUMED_CAMERA_HEIGHT_M: f64 = 1.5;

    /// Horizon fraction of the image height used by [`Self::horizon_prior`]: level dash cameras
    /// put the horizon near the middle of the frame.
    pub const PRIOR_HORIZON_FRACTION: f64 = 0.5;

    /// From a frame's intrinsics; the horizon of a level camera is the principal row `cy`.
    /// Without `height_m` in the camera, `default_height_m` is used and recorded as assumed.
    pub fn from_camera(camera: &Camera, default_height_m: f64) -> Result<Self, GeometryError> {
        let (camera_height_m, height_assumed) = match camera.height_m {
            Some(h) => (h, false),
            None => (default_height_m, true),
        };
        let model = Self {
            horizon_row: camera.cy,
            focal_px: camera.fy,
            camera_height_m,
            source: GeometrySource::Intrinsics {
                camera_height_m,
                height_assumed,
            },
        };
        model.checked()
    }

    /// The horizon at [`Self::PRIOR_HORIZON_FRACTION`] of the height, [`Self::ASSUMED_CAMERA_HEIGHT_M`],
    /// and `fy` from `hfov_deg`: the fallback when nothing better is known.
    pub fn horizon_prior(image_width: u32, image_height: u32, hfov_deg: f64) -> Self {
        Self {
            horizon_row: f64::from(image_height) * Self::PRIOR_HORIZON_FRACTION,
            focal_px: focal_from_hfov(image_width, hfov_deg),
            camera_height_m: Self::ASSUMED_CAMERA_HEIGHT_M,
            source: GeometrySource::HorizonPrior {
                horizon_fraction: Self::PRIOR_HORIZON_FRACTION,
                camera_height_m: Self::ASSUMED_CAMERA_HEIGHT_M,
                assumed_hfov_deg: hfov_deg,
            },
        }
    }

    pub(crate) fn checked(self) -> Result<Self, GeometryError> {
        let ok = self.horizon_row.is_finite()
            && self.focal_px.is_finite()
            && self.focal_px > 0.0
            && self.camera_height_m.is_finite()
            && self.camera_height_m > 0.0;
        if ok {
            Ok(self)
        } else {
            Err(GeometryError::InvalidModel(format!(
                "horizon {}, focal {} px, camera height {} m: need finite values, positive focal and height",
                self.horizon_row, self.focal_px, self.camera_height_m
            )))
        }
    }

    /// Ground-plane depth (metres) of image row `v`; `None` at or above the horizon.
    pub fn depth_at_row(&self, v: f64) -> Option<f64> {
        let below = v - self.horizon_row;
        (below > 0.0).then(|| self.focal_px * self.camera_height_m / below)
    }

    /// Image row of a ground point (a foot point) at depth `z` metres, `z > 0`.
    pub fn row_at_depth(&self, z: f64) -> f64 {
        self.horizon_row + self.focal_px * self.camera_height_m / z
    }

    /// Pixel height of an object `h_m` metres tall at depth `z` metres.
    pub fn pixel_height(&self, h_m: f64, z: f64) -> f64 {
        h_m * self.focal_px / z
    }

    /// Pixel height of an object `h_m` metres tall standing on row `v`; 0 at or above the horizon.
    pub fn pixel_height_at_row(&self, h_m: f64, v: f64) -> f64 {
        h_m * self.pixels_per_metre_at_row(v)
    }

    /// Rows `(top, bottom)` spanned by an upright object `h_m` metres tall whose footprint on the
    /// ground spans depths `z_near..=z_far` (see [`footprint_depths`]): its box bottom is the
    /// ground row of the nearest footprint point, its top the highest image row of its top edge
    /// (the far edge when the object is lower than the camera, the near edge when taller). For a
    /// flat object (`z_near == z_far`) the height is [`Self::pixel_height`].
    ///
    /// This is the 2D box a labeller draws: for a car 4 m long 10 m away it is about 8% taller
    /// than `H * fy / Z` at the car's centre.
    pub fn box_rows(&self, h_m: f64, z_near: f64, z_far: f64) -> (f64, f64) {
        let top_below_camera = self.camera_height_m - h_m;
        let top_at = |z: f64| self.horizon_row + self.focal_px * top_below_camera / z;
        (top_at(z_near).min(top_at(z_far)), self.row_at_depth(z_near))
    }

    /// Image scale (pixels per metre of object height) of an object standing on row `v`:
    /// `(v - v0) / h_cam`, 0 at or above the horizon.
    pub fn pixels_per_metre_at_row(&self, v: f64) -> f64 {
        ((v - self.horizon_row) / self.camera_height_m).max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kitti() -> GroundModel {
        let camera = Camera {
            height_m: Some(1.65),
            ..Camera::from_projection([
                721.5377,
                0.0,
                609.5593,
                44.85728,
                0.0,
                721.5377,
                172.854,
                0.216_379_1,
                0.0,
                0.0,
                1.0,
                0.002_745_884,
            ])
        };
        GroundModel::from_camera(&camera, 1.5).expect("valid camera")
    }

    #[test]
    fn row_and_depth_are_inverse() {
        let m = kitti();
        for z in [5.0, 12.5, 40.0, 80.0] {
            let v = m.row_at_depth(z);
            let back = m.depth_at_row(v).expect("below the horizon");
            assert!((back - z).abs() < 1e-9 * z);
            // The two height formulas agree on the ground plane.
            let a = m.pixel_height(1.5, z);
            let b = m.pixel_height_at_row(1.5, v);
            assert!((a - b).abs() < 1e-9 * a);
            let (top, bottom) = m.box_rows(1.5, z, z);
            assert!((bottom - top - a).abs() < 1e-9 * a);
        }
        // A 4 m car seen from behind, 10 m away, is taller in the image than at its centre.
        let (near, far) = footprint_depths(10.0, 4.0, 1.6, std::f64::consts::FRAC_PI_2);
        assert!((near - 8.0).abs() < 1e-9 && (far - 12.0).abs() < 1e-9);
        let (top, bottom) = m.box_rows(1.53, near, far);
        assert!(bottom - top > 1.05 * m.pixel_height(1.53, 10.0));
        assert_eq!(m.depth_at_row(m.horizon_row), None);
        assert_eq!(m.depth_at_row(m.horizon_row - 10.0), None);
        assert!(m.pixel_height_at_row(1.5, m.horizon_row - 10.0).abs() < f64::EPSILON);
        assert_eq!(m.source.as_str(), "intrinsics");
    }

    #[test]
    fn missing_height_is_assumed_and_recorded() {
        let camera = Camera::from_projection([
            700.0, 0.0, 600.0, 0.0, 0.0, 700.0, 180.0, 0.0, 0.0, 0.0, 1.0, 0.0,
        ]);
        let m = GroundModel::from_camera(&camera, 1.4).expect("valid camera");
        assert_eq!(
            m.source,
            GeometrySource::Intrinsics {
                camera_height_m: 1.4,
                height_assumed: true
            }
        );
        let bad = Camera { fy: -1.0, ..camera };
        assert!(GroundModel::from_camera(&bad, 1.4).is_err());
    }

    #[test]
    fn horizon_prior_uses_the_field_of_view() {
        let m = GroundModel::horizon_prior(480, 360, 60.0);
        assert!((m.horizon_row - 180.0).abs() < 1e-12);
        assert!((m.focal_px - 240.0 / 30f64.to_radians().tan()).abs() < 1e-9);
        assert_eq!(m.source.as_str(), "horizon");
    }
}
