//! Scenario `weather` operations as effects: the scenario names what a user means (visibility,
//! rain rate, light colour), the effect carries every physical parameter. The mapping lives here,
//! beside the parameters it sets, and is recorded in provenance through the effect's parameters.

use roadsynth_scenario::Weather;

use crate::{Fog, Night, NightTint, Rain, Snow, WeatherEffect};

/// The effect's largest relative variation of the fog density.
const MAX_FOG_VARIATION: f32 = 0.9;
/// Lens drops drawn when a rain scenario asks for them.
const LENS_DROPS: u32 = 12;
/// Wetness of drivable pixels in a rain scenario with `wet_road`.
const WET_ROAD_WETNESS: f32 = 0.8;
/// Shot and read noise at `sensor_noise = 1` (a small sensor at maximum gain): four times the
/// defaults, which model a typical automotive sensor at night gain.
const MAX_NOISE_SHOT: f32 = 4e-3;
const MAX_NOISE_READ: f32 = 1.6e-5;

impl WeatherEffect {
    /// The effect a scenario's `weather` operation asks for; parameters the scenario does not name
    /// keep the effect's defaults.
    pub fn from_scenario(weather: &Weather) -> Self {
        match weather {
            Weather::Fog(f) => WeatherEffect::Fog(Fog {
                visibility_m: f.visibility_m as f32,
                // The scenario's 0..1 is "uniform" to "as patchy as it gets"; the effect's density
                // varies by up to +-90 %, beyond which patches would be fog-free.
                spatial_variation: MAX_FOG_VARIATION * f.spatial_variation as f32,
                ..Fog::default()
            }),
            Weather::Rain(r) => WeatherEffect::Rain(Rain {
                rate_mm_h: r.rate_mm_h as f32,
                wind_deg: r.wind_deg as f32,
                exposure_ms: r.exposure_ms as f32,
                lens_drops: if r.lens_drops { LENS_DROPS } else { 0 },
                wetness: if r.wet_road { WET_ROAD_WETNESS } else { 0.0 },
                ..Rain::default()
            }),
            Weather::Snow(s) => WeatherEffect::Snow(Snow {
                rate_mm_h: s.rate_mm_h as f32,
                accumulation: s.accumulation as f32,
                wind_deg: s.wind_deg as f32,
                ..Snow::default()
            }),
            Weather::Night(n) => {
                let noise = n.sensor_noise as f32;
                let defaults = Night::default();
                WeatherEffect::Night(Night {
                    exposure_ev: n.exposure_ev as f32,
                    tint: tint_of(n.light_temperature_k),
                    noise_shot: MAX_NOISE_SHOT * noise,
                    noise_read: MAX_NOISE_READ * noise * noise,
                    glow_strength: if n.glow { defaults.glow_strength } else { 0.0 },
                    ..defaults
                })
            }
        }
    }
}

/// The colour cast of a scene lit by artificial light of a colour temperature: sodium lamps are
/// about 2000 K, warm-white LEDs and halogen 2700-4000 K (close to what cameras balance for), cool
/// LEDs 5000 K and more, moonlight-like blue above 7000 K.
fn tint_of(kelvin: f64) -> NightTint {
    match kelvin {
        k if k < 2600.0 => NightTint::Sodium,
        k if k < 4500.0 => NightTint::Neutral,
        k if k < 7000.0 => NightTint::Led,
        _ => NightTint::Moonlight,
    }
}
