//! Resolved, typed scenario settings: what the stages consume. Built from the wire structs only
//! after validation, so every value here is known to be in range.

use std::path::PathBuf;

/// A validated scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Name (the file stem unless the file sets `name`); recorded in provenance.
    pub name: String,
    pub seed: u64,
    /// Augmented copies made of each selected frame.
    pub variants_per_frame: u32,
    /// Splits the scenario applies to (`train` by default).
    pub splits: Vec<String>,
    pub operations: Vec<Operation>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    InsertObjects(InsertObjects),
    EditVehicles(EditVehicles),
    Weather(Weather),
}

/// Insert objects (animals, unusual vehicles) at places and sizes the scene's geometry allows.
#[derive(Debug, Clone, PartialEq)]
pub struct InsertObjects {
    pub classes: Vec<ObjectClass>,
    /// Objects per frame, drawn uniformly from `min..=max`.
    pub count_min: u32,
    pub count_max: u32,
    /// Distances from the camera the object's foot point may have, metres.
    pub distance_min_m: f64,
    pub distance_max_m: f64,
    pub region: PlacementRegion,
    pub occlusion: OcclusionPolicy,
    /// Asset bank folder (`roadsynth assets build`); `None` means the engine's default bank.
    pub assets: Option<PathBuf>,
    pub model: PlacementModel,
}

/// A class to insert, with its real-world size prior.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectClass {
    /// Name as written in the scenario (`deer`, `wild boar`): picks assets and size priors.
    pub name: String,
    /// Class written into generated annotations (`animal` to train an animal detector).
    pub label: String,
    /// Relative frequency among the scenario's classes.
    pub weight: f64,
    /// Height at the shoulder/top, metres: mean and standard deviation.
    pub height_m: Normal,
    pub length_m: Normal,
    pub width_m: Normal,
    /// Where the size numbers come from.
    pub source: String,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normal {
    pub mean: f64,
    pub std: f64,
}

/// Where foot points may fall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlacementRegion {
    /// On drivable space (the road).
    Drivable,
    /// Beside the road: ground pixels next to drivable space (pavement, verge).
    Roadside,
    /// Either.
    Ground,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OcclusionPolicy {
    /// Largest fraction of an existing object's box an inserted object may cover (0 forbids overlap).
    pub max_overlap: f64,
    /// Whether an inserted object may extend past the image border (then it is truncated).
    pub allow_truncation: bool,
}

/// How positions and sizes are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlacementModel {
    /// Depth from a per-class log-normal, foot point in the matching band of drivable space,
    /// height from the class prior at that depth, width from height.
    GeometryAware,
    /// The baseline: uniform position and scale anywhere (as in Copy-Paste).
    Naive,
}

/// Change the appearance of vehicles already in the frames.
#[derive(Debug, Clone, PartialEq)]
pub struct EditVehicles {
    /// Annotation classes to edit, as written; compared with the dataset's classes ignoring case.
    pub classes: Vec<String>,
    /// Smallest box height, pixels, of a vehicle to edit.
    pub min_height_px: u32,
    /// Largest fraction (`0..=1`) of the vehicle's box covered by the boxes of objects in front of
    /// it (box bottom lower in the image). A fraction rather than KITTI's occlusion levels (0 fully
    /// visible, 1 partly, 2 largely, 3 unknown) because COCO, YOLO and BDD100K have no levels.
    pub max_occlusion: f64,
    /// Fraction (`0 < f <= 1`) of the eligible vehicles edited in each variant.
    pub fraction: f64,
    pub appearance: Appearance,
    pub backend: EditBackend,
}

/// Target appearance of edited vehicles.
#[derive(Debug, Clone, PartialEq)]
pub struct Appearance {
    /// Each edited vehicle gets one of these, drawn uniformly. Never empty.
    pub colours: Vec<Colour>,
    pub finish: Finish,
}

/// A paint colour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Colour {
    /// As written in the scenario (`red`, `#c8102e`).
    pub name: String,
    /// 8-bit sRGB (gamma-encoded), red, green, blue.
    pub srgb: [u8; 3],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    Matte,
    Metallic,
    Gloss,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EditBackend {
    /// Recolour inside the vehicle's mask keeping its shading.
    Classical,
    /// Inpaint with a diffusion model.
    Diffusion,
}

/// Weather or lighting, with its physical parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum Weather {
    Fog(Fog),
    Rain(Rain),
    Snow(Snow),
    Night(Night),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fog {
    /// Meteorological visibility, metres (`1 <= v <= 10_000`): the distance at which contrast falls
    /// to 5 %.
    pub visibility_m: f64,
    /// Spatial variation of the density, `0` (uniform) to `1` (patchy).
    pub spatial_variation: f64,
}

impl Fog {
    /// Koschmieder's extinction coefficient β in m⁻¹: `t = exp(−β·d)` falls to 0.05 at the
    /// visibility, so `β = −ln(0.05) / V ≈ 3 / V` (Foggy Cityscapes' 0.005, 0.01, 0.02 m⁻¹ are
    /// about 600, 300, 150 m).
    pub fn extinction_per_m(&self) -> f64 {
        -(0.05_f64.ln()) / self.visibility_m
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rain {
    /// Rain rate, mm/h (`0 < r <= 300`; the heaviest rainfalls on record are about 300 mm/h).
    pub rate_mm_h: f64,
    /// Streak angle from vertical, degrees (`-60..=60`), positive leaning right.
    pub wind_deg: f64,
    /// Camera exposure time, milliseconds (`0 < e <= 100`): streak length is fall speed × exposure.
    pub exposure_ms: f64,
    /// Raindrops on the lens.
    pub lens_drops: bool,
    /// Wet-road darkening and reflections on drivable space.
    pub wet_road: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Snow {
    /// Snowfall rate as water equivalent, mm/h (`0..=30`); 0 means lying snow only.
    pub rate_mm_h: f64,
    /// Fraction (`0..=1`) of horizontal surfaces covered by lying snow.
    pub accumulation: f64,
    /// Flake angle from vertical, degrees (`-60..=60`), positive leaning right.
    pub wind_deg: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Night {
    /// Exposure change, EV (stops, `-10..=0`): each −1 halves the light.
    pub exposure_ev: f64,
    /// Colour temperature of the artificial light, kelvin (`1500..=10_000`).
    pub light_temperature_k: f64,
    /// Strength of signal-dependent sensor noise, `0` (none) to `1` (small sensor, maximum gain).
    pub sensor_noise: f64,
    /// Glows around bright sources (street lights, vehicle lights).
    pub glow: bool,
}
