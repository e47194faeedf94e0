//! Wire structs: exactly what a scenario file may say, nothing resolved.
//!
//! Every struct denies unknown fields, and every field is optional here: whether it is required,
//! and whether its value is in range, is checked afterwards (`validate`) so that one run reports
//! every problem of a file. List items are [`Slot`]s so that an item removed after a structural
//! error (see `roadsynth-config`) leaves a hole rather than a second error.
//!
//! The doc comments are the JSON Schema's descriptions: they speak to the scenario author.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::path::PathBuf;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::Deserialize;
use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A roadsynth scenario: which augmentations to apply to which frames. Operations run in order on
/// each variant of each frame of the chosen splits. Lengths are in metres, angles in degrees.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Name recorded in provenance. Default: the file name without `.yaml`.
    pub name: Option<String>,
    /// What the scenario is for (free text, for people).
    pub description: Option<String>,
    /// Seed of every random choice: the same seed and data give the same plan and pixels. Default: 0.
    pub seed: Option<u64>,
    /// Augmented copies made of each selected frame, 1 to 1000. Default: 1.
    #[schemars(range(min = 1, max = 1000))]
    pub variants_per_frame: Option<u32>,
    /// Dataset splits the scenario applies to. Default: `[train]`.
    pub splits: Option<Vec<Slot<String>>>,
    /// What to do, in order: one `insert_objects`, `edit_vehicles` or `weather` per list item.
    #[schemars(required)]
    pub operations: Option<Vec<Slot<Operation>>>,
}

/// One operation: a map with exactly one of `insert_objects`, `edit_vehicles`, `weather`.
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[schemars(rename_all = "snake_case")]
pub enum Operation {
    /// Insert objects (animals, unusual vehicles) at places and sizes the scene's geometry allows.
    InsertObjects(InsertObjects),
    /// Change the appearance (colour, finish) of vehicles already in the frames.
    EditVehicles(EditVehicles),
    /// Physically based weather or lighting: `fog`, `rain`, `snow` or `night`.
    Weather(Weather),
    /// An empty map, or one whose entry was removed after a structural error.
    #[schemars(skip)]
    Empty,
}

const OPERATIONS: &[&str] = &["insert_objects", "edit_vehicles", "weather"];

impl<'de> Deserialize<'de> for Operation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(OneKeyVisitor::<Operation>(PhantomData))
    }
}

/// Weather: a map with exactly one of `fog`, `rain`, `snow`, `night`.
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[schemars(rename_all = "snake_case")]
pub enum Weather {
    /// Fog by Koschmieder's law on scene depth: transmittance t = exp(−β·d) with
    /// β = −ln(0.05) / visibility ≈ 3 / visibility.
    Fog(Fog),
    /// Rain streaks from a particle model, rain attenuation by depth, wet road.
    Rain(Rain),
    /// Falling snow by depth and snow lying on horizontal surfaces.
    Snow(Snow),
    /// Night: less light, warmer artificial light, sensor noise, glows around lights.
    Night(Night),
    /// An empty map, or one whose entry was removed after a structural error.
    #[schemars(skip)]
    Empty,
}

const WEATHERS: &[&str] = &["fog", "rain", "snow", "night"];

impl<'de> Deserialize<'de> for Weather {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(OneKeyVisitor::<Weather>(PhantomData))
    }
}

/// An externally tagged enum read by hand: an empty map (left after a removal) is
/// [`Operation::Empty`] rather than a second error, an unknown key is reported at the key, and two
/// keys get a helpful message.
trait OneKey: Sized {
    const WHAT: &'static str;
    const KEYS: &'static [&'static str];
    const EMPTY: Self;
    fn value<'de, A: MapAccess<'de>>(key: &str, map: &mut A) -> Result<Self, A::Error>;
}

impl OneKey for Operation {
    const WHAT: &'static str = "an operation";
    const KEYS: &'static [&'static str] = OPERATIONS;
    const EMPTY: Self = Operation::Empty;
    fn value<'de, A: MapAccess<'de>>(key: &str, map: &mut A) -> Result<Self, A::Error> {
        Ok(match key {
            "insert_objects" => Operation::InsertObjects(map.next_value()?),
            "edit_vehicles" => Operation::EditVehicles(map.next_value()?),
            "weather" => Operation::Weather(map.next_value()?),
            other => return Err(de::Error::unknown_field(other, OPERATIONS)),
        })
    }
}

impl OneKey for Weather {
    const WHAT: &'static str = "a weather";
    const KEYS: &'static [&'static str] = WEATHERS;
    const EMPTY: Self = Weather::Empty;
    fn value<'de, A: MapAccess<'de>>(key: &str, map: &mut A) -> Result<Self, A::Error> {
        Ok(match key {
            "fog" => Weather::Fog(map.next_value()?),
            "rain" => Weather::Rain(map.next_value()?),
            "snow" => Weather::Snow(map.next_value()?),
            "night" => Weather::Night(map.next_value()?),
            other => return Err(de::Error::unknown_field(other, WEATHERS)),
        })
    }
}

struct OneKeyVisitor<T>(PhantomData<T>);

impl<'de, T: OneKey> Visitor<'de> for OneKeyVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} map with one key: {}", T::WHAT, T::KEYS.join(", "))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
        let Some(key) = map.next_key_seed(KeySeed::<T>::first())? else {
            return Ok(T::EMPTY);
        };
        let value = T::value(&key, &mut map)?;
        map.next_key_seed(KeySeed::<T>::after(&key))?;
        Ok(value)
    }
}

/// Reads the key of a one-key map, failing inside the key (so the error is located at it) when it
/// is unknown or a second one.
struct KeySeed<'k, T> {
    first: Option<&'k str>,
    kind: PhantomData<T>,
}

impl<'k, T> KeySeed<'k, T> {
    fn first() -> Self {
        Self {
            first: None,
            kind: PhantomData,
        }
    }
    fn after(first: &'k str) -> Self {
        Self {
            first: Some(first),
            kind: PhantomData,
        }
    }
}

impl<'de, T: OneKey> de::DeserializeSeed<'de> for KeySeed<'_, T> {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        let key = String::deserialize(d)?;
        if let Some(first) = self.first {
            return Err(de::Error::custom(format!(
                "{} has exactly one key, found `{first}` and `{key}`; start a new list item (`- {key}: ...`)",
                T::WHAT
            )));
        }
        if !T::KEYS.contains(&key.as_str()) {
            // Worded as for a struct, since the author wrote a key.
            return Err(de::Error::unknown_field(&key, T::KEYS));
        }
        Ok(key)
    }
}

/// Insert objects at geometry-aware places and sizes.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InsertObjects {
    /// Classes to insert: names with built-in real-world size priors (`deer`, `roe_deer`,
    /// `white_tailed_deer`, `moose`, `cow`, `sheep`, `horse`, `dog`, `wild_boar`, `fox`, `bear`,
    /// `kangaroo`), or maps `{name, label, weight, height_m, length_m, width_m}` that override the
    /// prior or describe a class of your own. Required.
    #[schemars(required)]
    pub classes: Option<Vec<Slot<ClassSpec>>>,
    /// Class written into the generated annotations for classes that set no `label`.
    /// Default: `animal` for the built-in animals, else the class name.
    pub label: Option<String>,
    /// Objects per frame variant: a number (`2`) or a range drawn uniformly (`[1, 3]`), at most 100.
    /// Default: 1.
    pub count: Option<Count>,
    /// Distance `[min, max]` in metres from the camera to the object's foot point, min > 0, max up
    /// to 1000. Default: `[5, 60]`.
    pub distance_m: Option<Pair<f64>>,
    /// Where foot points may fall. Default: `drivable`.
    #[serde(rename = "where")]
    pub region: Option<Region>,
    /// How much inserted objects may hide existing objects, and whether they may leave the image.
    pub occlusion: Option<Occlusion>,
    /// Asset bank folder (relative paths are relative to this file). Default: the engine's bank.
    pub assets: Option<PathBuf>,
    /// How positions and sizes are chosen. Default: `geometry`.
    pub model: Option<Model>,
}

/// A class to insert: a name, or a map with the name and overrides.
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[schemars(untagged)]
pub enum ClassSpec {
    /// A class with a built-in size prior, by name (case and `_`/`-`/space do not matter).
    Name(String),
    /// A class with overrides, or a class of your own (then `height_m`, `length_m` and `width_m`
    /// are required).
    Detailed(Class),
}

impl<'de> Deserialize<'de> for ClassSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ClassSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a class name, or a map with `name` and optionally `label`, `weight`, `height_m`, `length_m`, `width_m`",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ClassSpec, E> {
                Ok(ClassSpec::Name(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ClassSpec, A::Error> {
                Class::deserialize(MapAccessDeserializer::new(map)).map(ClassSpec::Detailed)
            }
        }
        d.deserialize_any(V)
    }
}

/// A class with overrides of its size prior.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Class {
    /// Class name: a built-in one (its prior fills what you leave out) or your own. Required.
    #[schemars(required)]
    pub name: Option<String>,
    /// Class written into generated annotations. Default: the operation's `label`.
    pub label: Option<String>,
    /// Relative frequency among the operation's classes, > 0. Default: 1.
    #[schemars(extend("exclusiveMinimum" = 0))]
    pub weight: Option<f64>,
    /// Height in metres (shoulder height for four-legged animals, top of the head for upright ones).
    pub height_m: Option<Size>,
    /// Length in metres (head and body, without the tail).
    pub length_m: Option<Size>,
    /// Width in metres.
    pub width_m: Option<Size>,
}

/// A real-world size: a mean (`1.1`), a range of typical adults (`[0.9, 1.3]`, read as mean ± 2
/// standard deviations), or `{mean, std}`.
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[schemars(untagged)]
pub enum Size {
    /// Mean in metres; the standard deviation stays the prior's (10 % of the mean for a class of
    /// your own).
    Mean(f64),
    /// `[min, max]` of typical adults in metres: mean = (min + max) / 2, std = (max − min) / 4.
    Range(Pair<f64>),
    /// Mean and standard deviation in metres; either may be left out to keep the prior's.
    Normal(NormalSpec),
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size in metres: a number, [min, max] or {mean, std}")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Size, E> {
                Ok(Size::Mean(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
                Ok(Size::Mean(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Size, E> {
                Ok(Size::Mean(v as f64))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Size, A::Error> {
                PairVisitor(PhantomData).visit_seq(seq).map(Size::Range)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Size, A::Error> {
                NormalSpec::deserialize(MapAccessDeserializer::new(map)).map(Size::Normal)
            }
        }
        d.deserialize_any(V)
    }
}

/// A normal distribution in metres.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NormalSpec {
    /// Mean, metres.
    pub mean: Option<f64>,
    /// Standard deviation, metres.
    pub std: Option<f64>,
}

/// Objects per frame variant: a number or a range `[min, max]`.
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[schemars(untagged)]
pub enum Count {
    /// Exactly this many.
    Exactly(u32),
    /// Drawn uniformly from `min..=max`.
    Range(Pair<u32>),
}

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Count;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a count (`2`) or a range (`[1, 3]`)")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Count, E> {
                u32::try_from(v)
                    .map(Count::Exactly)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Count, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::invalid_value(de::Unexpected::Signed(v), &self)),
                }
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Count, A::Error> {
                PairVisitor(PhantomData).visit_seq(seq).map(Count::Range)
            }
        }
        d.deserialize_any(V)
    }
}

/// Where foot points may fall.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Region {
    /// On drivable space (the road).
    Drivable,
    /// Beside the road: ground next to drivable space (pavement, verge).
    Roadside,
    /// Either.
    Ground,
}

/// How positions and sizes are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Model {
    /// Depth from a per-class log-normal, foot point where the scene has that depth, height from
    /// the class prior at that depth, width from height.
    Geometry,
    /// The baseline: uniform position and scale anywhere (as in Copy-Paste), for comparisons.
    Naive,
}

/// Occlusion policy of inserted objects.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Occlusion {
    /// Largest fraction (0 to 1) of an existing object's box an inserted object may cover; 0
    /// forbids any overlap. Default: 0.3.
    #[schemars(range(min = 0, max = 1))]
    pub max_overlap: Option<f64>,
    /// Whether an inserted object may extend past the image border (it is then truncated).
    /// Default: false.
    pub allow_truncation: Option<bool>,
}

/// Change the appearance of vehicles already in the frames.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EditVehicles {
    /// Annotation classes to edit, compared with the dataset's classes ignoring case (`car`
    /// matches KITTI's `Car`). Default: `[car]`.
    pub classes: Option<Vec<Slot<String>>>,
    /// Smallest box height in pixels a vehicle must have to be edited. Default: 40.
    pub min_height_px: Option<u32>,
    /// Largest fraction (0 to 1) of a vehicle's box that boxes of objects in front of it (lower in
    /// the image) may cover for it to be edited. A fraction, not KITTI's occlusion levels, because
    /// most datasets have no levels. Default: 0.3.
    #[schemars(range(min = 0, max = 1))]
    pub max_occlusion: Option<f64>,
    /// Fraction (more than 0, at most 1) of the eligible vehicles edited in each variant. Default: 1.
    #[schemars(range(max = 1), extend("exclusiveMinimum" = 0))]
    pub fraction: Option<f64>,
    /// Target appearance. Required.
    #[schemars(required)]
    pub appearance: Option<Appearance>,
    /// Editing method. Default: `classical`.
    pub backend: Option<Backend>,
}

/// Target appearance of edited vehicles.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Appearance {
    /// Paint colours; each edited vehicle gets one, drawn uniformly. A name (`white`, `black`,
    /// `silver`, `grey`, `red`, `maroon`, `blue`, `navy`, `green`, `yellow`, `orange`, `brown`,
    /// `beige`, `gold`, `purple`) or sRGB hex in quotes (`"#c8102e"`: YAML reads an unquoted `#` as
    /// a comment). Required.
    #[schemars(required)]
    pub colours: Option<Vec<Slot<String>>>,
    /// Paint finish. Default: `gloss`.
    pub finish: Option<Finish>,
}

/// Paint finish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Finish {
    /// Diffuse, no highlights.
    Matte,
    /// Highlights tinted by the paint colour, with flake sparkle.
    Metallic,
    /// Clear-coat highlights in the light's colour.
    Gloss,
}

/// Vehicle editing method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// Recolour inside the vehicle's mask keeping its shading (fast, CPU, deterministic).
    Classical,
    /// A diffusion model inpaints the vehicle in the target appearance (needs an accelerator).
    Diffusion,
}

/// Fog.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Fog {
    /// Meteorological visibility in metres (contrast falls to 5 %), at least 1, at most 10000:
    /// 150, 300 and 600 are the dense, medium and light fog of Foggy Cityscapes. Required.
    #[schemars(range(min = 1, max = 10_000))]
    #[schemars(required)]
    pub visibility_m: Option<f64>,
    /// Spatial variation of the fog density, 0 (uniform) to 1 (patchy). Default: 0.
    #[schemars(range(min = 0, max = 1))]
    pub spatial_variation: Option<f64>,
}

/// Rain.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rain {
    /// Rain rate in mm/h, more than 0, at most 300 (the heaviest rainfalls ever recorded): 2.5
    /// light, 10 moderate, 50 violent. Required.
    #[schemars(range(max = 300), extend("exclusiveMinimum" = 0))]
    #[schemars(required)]
    pub rate_mm_h: Option<f64>,
    /// Angle of the falling streaks from vertical in degrees, −60 to 60, positive leaning right
    /// (wind from the left). Default: 0.
    #[schemars(range(min = -60, max = 60))]
    pub wind_deg: Option<f64>,
    /// Camera exposure time in milliseconds (longer exposures draw longer streaks), more than 0, at
    /// most 100. Default: 10.
    #[schemars(range(max = 100), extend("exclusiveMinimum" = 0))]
    pub exposure_ms: Option<f64>,
    /// Draw raindrops on the lens. Default: false.
    pub lens_drops: Option<bool>,
    /// Darken the road and add reflections on drivable space. Default: true.
    pub wet_road: Option<bool>,
}

/// Snow.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Snow {
    /// Snowfall rate as water equivalent in mm/h, 0 to 30 (0: no falling snow, only what lies):
    /// 1 light, 2.5 moderate, 5 and more heavy. Required.
    #[schemars(range(min = 0, max = 30))]
    #[schemars(required)]
    pub rate_mm_h: Option<f64>,
    /// Fraction (0 to 1) of horizontal surfaces (road, pavement) covered by lying snow. Default: 0.
    #[schemars(range(min = 0, max = 1))]
    pub accumulation: Option<f64>,
    /// Angle of the falling flakes from vertical in degrees, −60 to 60, positive leaning right.
    /// Default: 0.
    #[schemars(range(min = -60, max = 60))]
    pub wind_deg: Option<f64>,
}

/// Night.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Night {
    /// Exposure change in EV (stops), −10 to 0: −1 halves the light; dusk about −3, a lit street
    /// at night about −6, an unlit road about −9. Required.
    #[schemars(range(min = -10, max = 0))]
    #[schemars(required)]
    pub exposure_ev: Option<f64>,
    /// Colour temperature of the artificial light in kelvin, 1500 to 10000: sodium street lamps
    /// about 2000, warm LED 3000, cool LED 5000. Default: 3000.
    #[schemars(range(min = 1500, max = 10_000))]
    pub light_temperature_k: Option<f64>,
    /// Strength of signal-dependent sensor noise, 0 (none) to 1 (a small automotive sensor at
    /// maximum gain). Default: 0.5.
    #[schemars(range(min = 0, max = 1))]
    pub sensor_noise: Option<f64>,
    /// Glows around bright sources (street lights, vehicle lights). Default: true.
    pub glow: Option<bool>,
}

/// A list item: `None` where the item was null (written `~` or left empty, or removed after a
/// structural error). Its schema is the item's.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct Slot<T>(pub Option<T>);

impl<T: JsonSchema> JsonSchema for Slot<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }
    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }
    fn schema_id() -> Cow<'static, str> {
        T::schema_id()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        T::json_schema(generator)
    }
}

/// `[min, max]`: a list of exactly two values.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair<T> {
    pub min: Slot<T>,
    pub max: Slot<T>,
}

impl<T: JsonSchema> JsonSchema for Pair<T> {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        format!("Pair_of_{}", T::schema_name()).into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let item = generator.subschema_for::<T>();
        json_schema!({
            "type": "array",
            "items": item,
            "minItems": 2,
            "maxItems": 2
        })
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Pair<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_seq(PairVisitor(PhantomData))
    }
}

struct PairVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for PairVisitor<T> {
    type Value = Pair<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of two values, [min, max]")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Pair<T>, A::Error> {
        let Some(min) = seq.next_element::<Slot<T>>()? else {
            return Err(de::Error::invalid_length(0, &self));
        };
        let Some(max) = seq.next_element::<Slot<T>>()? else {
            return Err(de::Error::invalid_length(1, &self));
        };
        let mut len = 2;
        while seq.next_element::<IgnoredAny>()?.is_some() {
            len += 1;
        }
        if len > 2 {
            return Err(de::Error::invalid_length(len, &self));
        }
        Ok(Pair { min, max })
    }
}
