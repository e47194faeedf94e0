//! Semantic checks of a parsed scenario and its resolution into typed settings.
//!
//! One pass does both: each value is checked where it is resolved, every problem goes to the
//! [`Checker`] at its field path, and the settings come back only when there was none.

use std::collections::HashSet;
use std::path::Path;

use roadsynth_config::{Checker, ConfigError, ConfigErrors, PathSeg, Source, parse_path};

use crate::priors::{self, SizePrior};
use crate::settings::{
    Appearance, Colour, EditBackend, EditVehicles, Finish, Fog, InsertObjects, Night, Normal,
    ObjectClass, OcclusionPolicy, Operation, PlacementModel, PlacementRegion, Rain, Scenario, Snow,
    Weather,
};
use crate::wire;

/// Defaults, in one place (the wire docs and the shipped YAML comments quote them).
pub(crate) mod defaults {
    pub const SEED: u64 = 0;
    pub const VARIANTS_PER_FRAME: u32 = 1;
    pub const SPLIT: &str = "train";
    pub const DISTANCE_M: [f64; 2] = [5.0, 60.0];
    pub const MAX_OVERLAP: f64 = 0.3;
    pub const EDIT_CLASS: &str = "car";
    pub const MIN_HEIGHT_PX: u32 = 40;
    pub const MAX_OCCLUSION: f64 = 0.3;
    pub const EDIT_FRACTION: f64 = 1.0;
    pub const RAIN_EXPOSURE_MS: f64 = 10.0;
    pub const LIGHT_TEMPERATURE_K: f64 = 3000.0;
    pub const SENSOR_NOISE: f64 = 0.5;
}

const MAX_VARIANTS: u32 = 1000;
const MAX_COUNT: u32 = 100;
const MAX_DISTANCE_M: f64 = 1000.0;
const MAX_SIZE_M: f64 = 30.0;
/// A size given as a mean only, for a class without a prior, gets this relative spread.
const CUSTOM_STD_FRACTION: f64 = 0.1;

/// Named paint colours: CSS Color Module Level 4 values.
const NAMED_COLOURS: &[(&str, [u8; 3])] = &[
    ("white", [255, 255, 255]),
    ("black", [0, 0, 0]),
    ("silver", [192, 192, 192]),
    ("grey", [128, 128, 128]),
    ("gray", [128, 128, 128]),
    ("red", [255, 0, 0]),
    ("maroon", [128, 0, 0]),
    ("blue", [0, 0, 255]),
    ("navy", [0, 0, 128]),
    ("green", [0, 128, 0]),
    ("yellow", [255, 255, 0]),
    ("orange", [255, 165, 0]),
    ("brown", [165, 42, 42]),
    ("beige", [245, 245, 220]),
    ("gold", [255, 215, 0]),
    ("purple", [128, 0, 128]),
];

/// A closed or open bound of a number's allowed range.
#[derive(Clone, Copy)]
enum Bound {
    /// `>= x` or `<= x`.
    Incl(f64),
    /// `> x` or `< x`.
    Excl(f64),
}

pub(crate) struct Validator<'a> {
    checker: Checker<'a>,
    source: &'a Source,
    /// Errors located at a key rather than a value (the checker locates values).
    at_keys: Vec<ConfigError>,
    /// Field paths removed after structural errors: nothing is "missing" there.
    removed: &'a [Vec<PathSeg>],
    base_dir: &'a Path,
}

/// Checks `wire` and resolves it. `removed` lists the paths dropped after structural errors
/// (already reported), `path` is the file (its stem names the scenario, its folder anchors
/// relative asset paths).
pub(crate) fn resolve(
    wire: &wire::Scenario,
    source: &Source,
    removed: &[Vec<PathSeg>],
    path: &Path,
) -> Result<Scenario, ConfigErrors> {
    let base_dir = path.parent().unwrap_or(Path::new(""));
    let mut v = Validator {
        checker: Checker::new(source),
        source,
        at_keys: Vec::new(),
        removed,
        base_dir,
    };
    let scenario = v.scenario(wire, path);
    let mut errors = match v.checker.finish() {
        Ok(()) => Vec::new(),
        Err(e) => e.0,
    };
    errors.append(&mut v.at_keys);
    // No error recorded means every part resolved.
    if errors.is_empty() {
        return Ok(scenario);
    }
    errors.sort_by_key(|e| (e.line, e.column));
    Err(ConfigErrors(errors))
}

impl Validator<'_> {
    fn error(&mut self, path: &str, message: impl Into<String>) {
        self.checker.error(path, message);
    }

    /// Whether `path`, an ancestor or a descendant of it was removed after a structural error.
    fn touched(&self, path: &str) -> bool {
        let segs = parse_path(path);
        self.removed
            .iter()
            .any(|r| r.starts_with(&segs) || segs.starts_with(r))
    }

    /// An error about the map at `path` as a whole, located at the key naming it (a block map's
    /// own position is the colon of its first key), or at the top of the file for the root.
    fn error_at_key(&mut self, path: &str, message: impl Into<String>) {
        let segs = parse_path(path);
        let (line, column) = match segs.last() {
            None => (1, 1),
            Some(PathSeg::Key(_)) => self.source.spans.locate_key(&segs),
            Some(PathSeg::Index(_)) => self.source.spans.locate_value(&segs),
        };
        self.at_keys.push(ConfigError {
            file: self.source.path.clone(),
            line,
            column,
            message: message.into(),
        });
    }

    /// A required field at `path` that is absent: an error at the key of the map that lacks it,
    /// unless a structural error removed it (already reported).
    fn missing(&mut self, path: &str, message: impl Into<String>) {
        if self.touched(path) {
            return;
        }
        let parent = match path.rfind(['.', '[']) {
            Some(i) => &path[..i],
            None => "",
        };
        self.error_at_key(parent, message);
    }

    /// A list item; a null one is an error unless it was removed after a structural error.
    fn item<'w, T>(&mut self, slot: &'w wire::Slot<T>, path: &str, what: &str) -> Option<&'w T> {
        if slot.0.is_none() && !self.touched(path) {
            self.error(path, format!("empty list item: expected {what}"));
        }
        slot.0.as_ref()
    }

    /// Checks that `x` is finite and within its bounds; when not, an error names the field (the
    /// last key of `path`), the bounds and the `unit`.
    fn number(&mut self, path: &str, x: f64, lo: Bound, hi: Bound, unit: &str) -> bool {
        let ok = x.is_finite()
            && match lo {
                Bound::Incl(l) => x >= l,
                Bound::Excl(l) => x > l,
            }
            && match hi {
                Bound::Incl(h) => x <= h,
                Bound::Excl(h) => x < h,
            };
        if !ok {
            let field = field_name(path);
            let lo = match lo {
                Bound::Incl(l) => format!("at least {l}"),
                Bound::Excl(l) => format!("more than {l}"),
            };
            let hi = match hi {
                Bound::Incl(h) if h.is_infinite() => String::new(),
                Bound::Incl(h) => format!(" and at most {h}"),
                Bound::Excl(h) => format!(" and less than {h}"),
            };
            let unit = if unit.is_empty() {
                String::new()
            } else {
                format!(" {unit}")
            };
            self.error(path, format!("{field} must be {lo}{hi}{unit}, got {x}"));
        }
        ok
    }

    fn non_empty(&mut self, path: &str, text: &str) -> bool {
        let ok = !text.trim().is_empty();
        if !ok {
            self.error(path, format!("{} is empty", field_name(path)));
        }
        ok
    }

    fn scenario(&mut self, w: &wire::Scenario, path: &Path) -> Scenario {
        let name = match &w.name {
            Some(n) => {
                self.non_empty("name", n);
                n.trim().to_string()
            }
            None => path
                .file_stem()
                .map_or_else(|| "scenario".into(), |s| s.to_string_lossy().into_owned()),
        };
        let variants_per_frame = w.variants_per_frame.unwrap_or(defaults::VARIANTS_PER_FRAME);
        if !(1..=MAX_VARIANTS).contains(&variants_per_frame) {
            self.error(
                "variants_per_frame",
                format!(
                    "variants_per_frame must be at least 1 and at most {MAX_VARIANTS}, got {variants_per_frame}"
                ),
            );
        }
        let splits = match &w.splits {
            None => vec![defaults::SPLIT.to_string()],
            Some(list) => self.names(list, "splits", "a split name"),
        };
        let operations = match &w.operations {
            None => {
                self.missing(
                    "operations",
                    "missing `operations`: a scenario needs at least one of insert_objects, edit_vehicles, weather",
                );
                Vec::new()
            }
            Some(ops) if ops.is_empty() => {
                self.error(
                    "operations",
                    "`operations` is empty: a scenario needs at least one of insert_objects, edit_vehicles, weather",
                );
                Vec::new()
            }
            Some(ops) => {
                let mut out = Vec::with_capacity(ops.len());
                for (i, slot) in ops.iter().enumerate() {
                    let p = format!("operations[{i}]");
                    if let Some(op) = self.item(slot, &p, "an operation") {
                        out.extend(self.operation(op, &p));
                    }
                }
                out
            }
        };
        Scenario {
            name,
            seed: w.seed.unwrap_or(defaults::SEED),
            variants_per_frame,
            splits,
            operations,
        }
    }

    /// A non-empty list of distinct, non-empty names.
    fn names(&mut self, list: &[wire::Slot<String>], path: &str, what: &str) -> Vec<String> {
        if list.is_empty() {
            let field = field_name(path);
            self.error(
                path,
                format!("`{field}` is empty: expected at least {what}"),
            );
        }
        let mut seen = HashSet::new();
        let mut out = Vec::with_capacity(list.len());
        for (i, slot) in list.iter().enumerate() {
            let p = format!("{path}[{i}]");
            let Some(name) = self.item(slot, &p, what) else {
                continue;
            };
            if !self.non_empty(&p, name) {
                continue;
            }
            let name = name.trim();
            if !seen.insert(name.to_lowercase()) {
                self.error(&p, format!("`{name}` is listed twice"));
            }
            out.push(name.to_string());
        }
        out
    }

    fn operation(&mut self, op: &wire::Operation, p: &str) -> Option<Operation> {
        match op {
            wire::Operation::InsertObjects(x) => self
                .insert_objects(x, &format!("{p}.insert_objects"))
                .map(Operation::InsertObjects),
            wire::Operation::EditVehicles(x) => self
                .edit_vehicles(x, &format!("{p}.edit_vehicles"))
                .map(Operation::EditVehicles),
            wire::Operation::Weather(x) => self
                .weather(x, &format!("{p}.weather"))
                .map(Operation::Weather),
            wire::Operation::Empty => {
                if !self.touched(p) {
                    self.error(
                        p,
                        "empty operation: expected one of insert_objects, edit_vehicles, weather",
                    );
                }
                None
            }
        }
    }

    fn insert_objects(&mut self, w: &wire::InsertObjects, p: &str) -> Option<InsertObjects> {
        if let Some(label) = &w.label {
            self.non_empty(&format!("{p}.label"), label);
        }
        let classes = match &w.classes {
            None => {
                self.missing(
                    &format!("{p}.classes"),
                    format!(
                        "missing `classes`: which objects to insert (known: {})",
                        priors::known_names().join(", ")
                    ),
                );
                Vec::new()
            }
            Some(list) => self.classes(list, w.label.as_deref(), p),
        };

        let (count_min, count_max) = match &w.count {
            None => (1, 1),
            Some(wire::Count::Exactly(n)) => {
                if *n == 0 || *n > MAX_COUNT {
                    self.error(
                        &format!("{p}.count"),
                        format!("count must be at least 1 and at most {MAX_COUNT}, got {n}"),
                    );
                }
                (*n, *n)
            }
            Some(wire::Count::Range(pair)) => {
                let cp = format!("{p}.count");
                let (min, max) = self.pair(pair, &cp, "a count")?;
                if min > max {
                    self.error(
                        &cp,
                        format!("count [{min}, {max}] is inverted: write [min, max]"),
                    );
                } else if max == 0 || max > MAX_COUNT {
                    self.error(
                        &format!("{cp}[1]"),
                        format!("count max must be at least 1 and at most {MAX_COUNT}, got {max}"),
                    );
                }
                (min, max)
            }
        };

        let (distance_min_m, distance_max_m) = match &w.distance_m {
            None => (defaults::DISTANCE_M[0], defaults::DISTANCE_M[1]),
            Some(pair) => {
                let dp = format!("{p}.distance_m");
                let (min, max) = self.pair(pair, &dp, "a distance in metres")?;
                let min_ok = self.number(
                    &format!("{dp}[0]"),
                    min,
                    Bound::Excl(0.0),
                    Bound::Incl(MAX_DISTANCE_M),
                    "m",
                );
                let max_ok = self.number(
                    &format!("{dp}[1]"),
                    max,
                    Bound::Excl(0.0),
                    Bound::Incl(MAX_DISTANCE_M),
                    "m",
                );
                if min_ok && max_ok && min >= max {
                    self.error(
                        &dp,
                        format!(
                            "distance_m [{min}, {max}] is {}: write [min, max] with min < max",
                            if min > max { "inverted" } else { "empty" }
                        ),
                    );
                }
                (min, max)
            }
        };

        let occlusion = w.occlusion.clone().unwrap_or_default();
        let max_overlap = occlusion.max_overlap.unwrap_or(defaults::MAX_OVERLAP);
        self.number(
            &format!("{p}.occlusion.max_overlap"),
            max_overlap,
            Bound::Incl(0.0),
            Bound::Incl(1.0),
            "",
        );

        let assets = w.assets.as_ref().map(|a| {
            if a.as_os_str().is_empty() {
                self.error(&format!("{p}.assets"), "assets is empty");
            }
            self.base_dir.join(a)
        });

        Some(InsertObjects {
            classes,
            count_min,
            count_max,
            distance_min_m,
            distance_max_m,
            region: match w.region.unwrap_or(wire::Region::Drivable) {
                wire::Region::Drivable => PlacementRegion::Drivable,
                wire::Region::Roadside => PlacementRegion::Roadside,
                wire::Region::Ground => PlacementRegion::Ground,
            },
            occlusion: OcclusionPolicy {
                max_overlap,
                allow_truncation: occlusion.allow_truncation.unwrap_or(false),
            },
            assets,
            model: match w.model.unwrap_or(wire::Model::Geometry) {
                wire::Model::Geometry => PlacementModel::GeometryAware,
                wire::Model::Naive => PlacementModel::Naive,
            },
        })
    }

    /// Both ends of a `[min, max]`; `None` when one is missing (a hole left by a structural error,
    /// or reported here).
    fn pair<T: Copy>(&mut self, pair: &wire::Pair<T>, p: &str, what: &str) -> Option<(T, T)> {
        let min = self.item(&pair.min, &format!("{p}[0]"), what).copied();
        let max = self.item(&pair.max, &format!("{p}[1]"), what).copied();
        Some((min?, max?))
    }

    fn classes(
        &mut self,
        list: &[wire::Slot<wire::ClassSpec>],
        op_label: Option<&str>,
        p: &str,
    ) -> Vec<ObjectClass> {
        let lp = format!("{p}.classes");
        if list.is_empty() {
            self.error(
                &lp,
                format!(
                    "`classes` is empty: expected at least one class (known: {})",
                    priors::known_names().join(", ")
                ),
            );
        }
        let mut seen = HashSet::new();
        let mut out = Vec::with_capacity(list.len());
        for (i, slot) in list.iter().enumerate() {
            let cp = format!("{lp}[{i}]");
            let Some(spec) = self.item(slot, &cp, "a class") else {
                continue;
            };
            let empty = wire::Class::default();
            let (name, detail, name_path) = match spec {
                wire::ClassSpec::Name(n) => (n, &empty, cp.clone()),
                wire::ClassSpec::Detailed(d) => {
                    let Some(n) = &d.name else {
                        self.missing(&format!("{cp}.name"), "missing `name` of the class");
                        continue;
                    };
                    (n, d, format!("{cp}.name"))
                }
            };
            if !self.non_empty(&name_path, name) {
                continue;
            }
            if !seen.insert(priors::normalise(name)) {
                self.error(
                    &name_path,
                    format!("class `{name}` is listed twice in this operation"),
                );
            }
            let prior = priors::lookup(name);
            if prior.is_none() {
                let absent: Vec<String> = [
                    ("height_m", &detail.height_m),
                    ("length_m", &detail.length_m),
                    ("width_m", &detail.width_m),
                ]
                .into_iter()
                .filter(|(_, size)| size.is_none())
                .map(|(field, _)| format!("`{field}`"))
                .collect();
                if absent.len() == 3 {
                    self.error(&name_path, unknown_class(name));
                    continue;
                }
                if !absent.is_empty() {
                    self.error(
                        &name_path,
                        format!(
                            "class `{name}` has no built-in size prior: give {} too",
                            absent.join(" and ")
                        ),
                    );
                    continue;
                }
            }
            let height_m = self.size(detail.height_m.as_ref(), prior, Axis::Height, &cp);
            let length_m = self.size(detail.length_m.as_ref(), prior, Axis::Length, &cp);
            let width_m = self.size(detail.width_m.as_ref(), prior, Axis::Width, &cp);
            let weight = detail.weight.unwrap_or(1.0);
            self.number(
                &format!("{cp}.weight"),
                weight,
                Bound::Excl(0.0),
                Bound::Incl(f64::INFINITY),
                "",
            );
            if let Some(label) = &detail.label {
                self.non_empty(&format!("{cp}.label"), label);
            }
            let label = detail
                .label
                .as_deref()
                .or(op_label)
                .or(prior.map(|p| p.label))
                .unwrap_or(name)
                .trim()
                .to_string();
            let source = match (prior, detail) {
                (Some(p), d)
                    if d.height_m.is_none() && d.length_m.is_none() && d.width_m.is_none() =>
                {
                    p.source.to_string()
                }
                (Some(p), _) => format!("scenario overrides; otherwise {}", p.source),
                (None, _) => "scenario".to_string(),
            };
            let (Some(height_m), Some(length_m), Some(width_m)) = (height_m, length_m, width_m)
            else {
                continue;
            };
            out.push(ObjectClass {
                name: name.trim().to_string(),
                label,
                weight,
                height_m,
                length_m,
                width_m,
                source,
            });
        }
        out
    }

    /// A size: the override resolved against the prior, or the prior.
    fn size(
        &mut self,
        spec: Option<&wire::Size>,
        prior: Option<&SizePrior>,
        axis: Axis,
        class_path: &str,
    ) -> Option<Normal> {
        let prior = prior.map(|p| match axis {
            Axis::Height => p.height_m(),
            Axis::Length => p.length_m(),
            Axis::Width => p.width_m(),
        });
        let p = format!("{class_path}.{}", axis.field());
        let positive = Bound::Excl(0.0);
        let at_most = Bound::Incl(MAX_SIZE_M);
        match spec {
            None => prior,
            Some(wire::Size::Mean(mean)) => {
                self.number(&p, *mean, positive, at_most, "m")
                    .then(|| Normal {
                        mean: *mean,
                        std: prior.map_or(CUSTOM_STD_FRACTION * mean, |n| n.std),
                    })
            }
            Some(wire::Size::Range(pair)) => {
                let (a, b) = self.pair(pair, &p, "a size in metres")?;
                let ok = self.number(&format!("{p}[0]"), a, positive, at_most, "m")
                    & self.number(&format!("{p}[1]"), b, positive, at_most, "m");
                if ok && a > b {
                    self.error(
                        &p,
                        format!("{} [{a}, {b}] is inverted: write [min, max]", axis.field()),
                    );
                    return None;
                }
                ok.then(|| priors::from_range([a, b]))
            }
            Some(wire::Size::Normal(n)) => {
                let Some(mean) = n.mean.or(prior.map(|n| n.mean)) else {
                    self.missing(
                        &format!("{p}.mean"),
                        "missing `mean`: this class has no built-in prior",
                    );
                    return None;
                };
                let std = n
                    .std
                    .or(prior.map(|n| n.std))
                    .unwrap_or(CUSTOM_STD_FRACTION * mean);
                let ok = self.number(&format!("{p}.mean"), mean, positive, at_most, "m")
                    & self.number(&format!("{p}.std"), std, Bound::Incl(0.0), at_most, "m");
                ok.then_some(Normal { mean, std })
            }
        }
    }

    fn edit_vehicles(&mut self, w: &wire::EditVehicles, p: &str) -> Option<EditVehicles> {
        let classes = match &w.classes {
            None => vec![defaults::EDIT_CLASS.to_string()],
            Some(list) => self.names(list, &format!("{p}.classes"), "a vehicle class"),
        };
        let max_occlusion = w.max_occlusion.unwrap_or(defaults::MAX_OCCLUSION);
        self.number(
            &format!("{p}.max_occlusion"),
            max_occlusion,
            Bound::Incl(0.0),
            Bound::Incl(1.0),
            "",
        );
        let fraction = w.fraction.unwrap_or(defaults::EDIT_FRACTION);
        self.number(
            &format!("{p}.fraction"),
            fraction,
            Bound::Excl(0.0),
            Bound::Incl(1.0),
            "",
        );
        let appearance = match &w.appearance {
            None => {
                self.missing(
                    &format!("{p}.appearance"),
                    "missing `appearance`: the target `colours` (and `finish`) of edited vehicles",
                );
                None
            }
            Some(a) => self.appearance(a, &format!("{p}.appearance")),
        };
        Some(EditVehicles {
            classes,
            min_height_px: w.min_height_px.unwrap_or(defaults::MIN_HEIGHT_PX),
            max_occlusion,
            fraction,
            appearance: appearance?,
            backend: match w.backend.unwrap_or(wire::Backend::Classical) {
                wire::Backend::Classical => EditBackend::Classical,
                wire::Backend::Diffusion => EditBackend::Diffusion,
            },
        })
    }

    fn appearance(&mut self, w: &wire::Appearance, p: &str) -> Option<Appearance> {
        let cp = format!("{p}.colours");
        let mut colours = Vec::new();
        match &w.colours {
            None => self.missing(
                &cp,
                "missing `colours`: a list of colour names or \"#rrggbb\"",
            ),
            Some(list) if list.is_empty() => {
                self.error(&cp, "`colours` is empty: expected at least one colour");
            }
            Some(list) => {
                for (i, slot) in list.iter().enumerate() {
                    let ip = format!("{cp}[{i}]");
                    let Some(text) = self.item(slot, &ip, "a colour") else {
                        continue;
                    };
                    match parse_colour(text) {
                        Some(srgb) => colours.push(Colour {
                            name: text.trim().to_string(),
                            srgb,
                        }),
                        None => self.error(
                            &ip,
                            format!(
                                "unknown colour `{text}`: use a name ({}) or sRGB hex in quotes, \"#rrggbb\"",
                                NAMED_COLOURS
                                    .iter()
                                    .map(|(n, _)| *n)
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        ),
                    }
                }
            }
        }
        if colours.is_empty() {
            return None;
        }
        Some(Appearance {
            colours,
            finish: match w.finish.unwrap_or(wire::Finish::Gloss) {
                wire::Finish::Matte => Finish::Matte,
                wire::Finish::Metallic => Finish::Metallic,
                wire::Finish::Gloss => Finish::Gloss,
            },
        })
    }

    fn weather(&mut self, w: &wire::Weather, p: &str) -> Option<Weather> {
        let unit = Bound::Incl(1.0);
        let zero = Bound::Incl(0.0);
        let wind = |v: &mut Self, path: &str, x: f64| {
            v.number(path, x, Bound::Incl(-60.0), Bound::Incl(60.0), "degrees")
        };
        match w {
            wire::Weather::Fog(f) => {
                let fp = format!("{p}.fog");
                let visibility_m = self.required(
                    f.visibility_m,
                    &fp,
                    "visibility_m",
                    "fog needs a visibility in metres (150 dense, 300 medium, 600 light)",
                )?;
                let ok = self.number(
                    &format!("{fp}.visibility_m"),
                    visibility_m,
                    Bound::Incl(1.0),
                    Bound::Incl(10_000.0),
                    "m",
                );
                let spatial_variation = f.spatial_variation.unwrap_or(0.0);
                let ok = ok
                    & self.number(
                        &format!("{fp}.spatial_variation"),
                        spatial_variation,
                        zero,
                        unit,
                        "",
                    );
                ok.then_some(Weather::Fog(Fog {
                    visibility_m,
                    spatial_variation,
                }))
            }
            wire::Weather::Rain(r) => {
                let rp = format!("{p}.rain");
                let rate_mm_h = self.required(
                    r.rate_mm_h,
                    &rp,
                    "rate_mm_h",
                    "rain needs a rate in mm/h (2.5 light, 10 moderate, 50 violent)",
                )?;
                let mut ok = self.number(
                    &format!("{rp}.rate_mm_h"),
                    rate_mm_h,
                    Bound::Excl(0.0),
                    Bound::Incl(300.0),
                    "mm/h (the heaviest rainfalls on record are about 300 mm/h)",
                );
                let wind_deg = r.wind_deg.unwrap_or(0.0);
                ok &= wind(self, &format!("{rp}.wind_deg"), wind_deg);
                let exposure_ms = r.exposure_ms.unwrap_or(defaults::RAIN_EXPOSURE_MS);
                ok &= self.number(
                    &format!("{rp}.exposure_ms"),
                    exposure_ms,
                    Bound::Excl(0.0),
                    Bound::Incl(100.0),
                    "ms",
                );
                ok.then_some(Weather::Rain(Rain {
                    rate_mm_h,
                    wind_deg,
                    exposure_ms,
                    lens_drops: r.lens_drops.unwrap_or(false),
                    wet_road: r.wet_road.unwrap_or(true),
                }))
            }
            wire::Weather::Snow(s) => {
                let sp = format!("{p}.snow");
                let rate_mm_h = self.required(
                    s.rate_mm_h,
                    &sp,
                    "rate_mm_h",
                    "snow needs a rate in mm/h water equivalent (1 light, 2.5 moderate, 5 heavy; 0 for lying snow only)",
                )?;
                let mut ok = self.number(
                    &format!("{sp}.rate_mm_h"),
                    rate_mm_h,
                    zero,
                    Bound::Incl(30.0),
                    "mm/h water equivalent (30 is beyond any recorded snowfall)",
                );
                let accumulation = s.accumulation.unwrap_or(0.0);
                ok &= self.number(&format!("{sp}.accumulation"), accumulation, zero, unit, "");
                let wind_deg = s.wind_deg.unwrap_or(0.0);
                ok &= wind(self, &format!("{sp}.wind_deg"), wind_deg);
                if ok && rate_mm_h == 0.0 && accumulation == 0.0 {
                    self.error_at_key(
                        &sp,
                        "snow with rate_mm_h 0 and accumulation 0 changes nothing",
                    );
                    ok = false;
                }
                ok.then_some(Weather::Snow(Snow {
                    rate_mm_h,
                    accumulation,
                    wind_deg,
                }))
            }
            wire::Weather::Night(n) => {
                let np = format!("{p}.night");
                let exposure_ev = self.required(
                    n.exposure_ev,
                    &np,
                    "exposure_ev",
                    "night needs an exposure change in EV (-3 dusk, -6 lit street, -9 unlit road)",
                )?;
                let mut ok = self.number(
                    &format!("{np}.exposure_ev"),
                    exposure_ev,
                    Bound::Incl(-10.0),
                    Bound::Incl(0.0),
                    "EV",
                );
                let light_temperature_k = n
                    .light_temperature_k
                    .unwrap_or(defaults::LIGHT_TEMPERATURE_K);
                ok &= self.number(
                    &format!("{np}.light_temperature_k"),
                    light_temperature_k,
                    Bound::Incl(1500.0),
                    Bound::Incl(10_000.0),
                    "K",
                );
                let sensor_noise = n.sensor_noise.unwrap_or(defaults::SENSOR_NOISE);
                ok &= self.number(&format!("{np}.sensor_noise"), sensor_noise, zero, unit, "");
                ok.then_some(Weather::Night(Night {
                    exposure_ev,
                    light_temperature_k,
                    sensor_noise,
                    glow: n.glow.unwrap_or(true),
                }))
            }
            wire::Weather::Empty => {
                if !self.touched(p) {
                    self.error(p, "empty weather: expected one of fog, rain, snow, night");
                }
                None
            }
        }
    }

    /// A required number of a weather kind.
    fn required(&mut self, x: Option<f64>, parent: &str, field: &str, why: &str) -> Option<f64> {
        if x.is_none() {
            self.missing(
                &format!("{parent}.{field}"),
                format!("missing `{field}`: {why}"),
            );
        }
        x
    }
}

#[derive(Clone, Copy)]
enum Axis {
    Height,
    Length,
    Width,
}

impl Axis {
    fn field(self) -> &'static str {
        match self {
            Axis::Height => "height_m",
            Axis::Length => "length_m",
            Axis::Width => "width_m",
        }
    }
}

fn unknown_class(name: &str) -> String {
    let hint = match priors::suggest(name).as_slice() {
        [] => String::new(),
        names => format!(
            " (did you mean {}?)",
            names
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(" or ")
        ),
    };
    format!(
        "unknown class `{name}`{hint}; known: {}; for a class of your own give `name`, `height_m`, `length_m` and `width_m`",
        priors::known_names().join(", ")
    )
}

/// The last key of a field path: what a message calls the value.
fn field_name(path: &str) -> &str {
    let last = path.rsplit('.').next().unwrap_or(path);
    last.split('[').next().unwrap_or(last)
}

/// A colour name or `#rrggbb`.
fn parse_colour(text: &str) -> Option<[u8; 3]> {
    let t = text.trim();
    if let Some(hex) = t.strip_prefix('#') {
        if hex.len() != 6 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).ok();
        return Some([byte(0)?, byte(2)?, byte(4)?]);
    }
    let lower = t.to_lowercase();
    NAMED_COLOURS
        .iter()
        .find(|(n, _)| *n == lower)
        .map(|(_, rgb)| *rgb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_parse_by_name_and_hex() {
        assert_eq!(parse_colour("Red"), Some([255, 0, 0]));
        assert_eq!(parse_colour("#c8102E"), Some([0xc8, 0x10, 0x2e]));
        assert_eq!(parse_colour("#c8102"), None);
        assert_eq!(parse_colour("#gg0000"), None);
        assert_eq!(parse_colour("teal-ish"), None);
    }

    #[test]
    fn field_names_come_from_paths() {
        assert_eq!(
            field_name("operations[0].weather.fog.visibility_m"),
            "visibility_m"
        );
        assert_eq!(
            field_name("operations[0].insert_objects.distance_m[1]"),
            "distance_m"
        );
        assert_eq!(field_name("seed"), "seed");
    }
}
