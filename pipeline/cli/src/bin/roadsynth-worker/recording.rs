//! The worker's side of the run recording: an augment stage's observer, which logs a sample of
//! the variants it writes (the stage types live in `roadsynth-stages`, which only the worker
//! links).

use roadsynth_cli::run_recording::StageRecording;
use roadsynth_inspect::{AugmentedFrame, ImageRef, RunRecording, WeatherMap};
use roadsynth_stages::{VariantEvent, VariantObserver};
use roadsynth_types::Annotation;

/// Ground-plane depths marked on the augmented frames, metres.
const DEPTH_BANDS_M: [f64; 5] = [5.0, 10.0, 20.0, 40.0, 80.0];

/// An augment observer logging a sample of the stage's variants to `recording`. Logging errors
/// are warnings: the recording is for looking, and must not fail the run.
pub fn observer(stage: StageRecording) -> VariantObserver {
    let StageRecording { recording, slot } = stage;
    VariantObserver::new(move |event: &VariantEvent<'_>| {
        if !event.sequence.is_multiple_of(slot.stride) {
            return;
        }
        let seq = slot.first + event.sequence * u64::from(slot.variants) + u64::from(event.variant);
        if let Err(e) = log_variant(&recording, seq, event) {
            tracing::warn!("run recording: {e}");
        }
    })
}

fn log_variant(
    recording: &RunRecording,
    seq: u64,
    event: &VariantEvent<'_>,
) -> Result<(), roadsynth_inspect::InspectError> {
    let (Some(original), Some(augmented)) = (&event.real.image, &event.generated.image) else {
        return Ok(());
    };
    let frame = &event.generated.frame;
    let generated: Vec<Annotation> = event
        .generated
        .annotations
        .iter()
        .filter(|a| !a.origin.is_real())
        .cloned()
        .collect();
    let horizon_row = event.ground.map(|g| g.horizon_row);
    let depth_bands: Vec<(f64, f64)> = event.ground.map_or_else(Vec::new, |g| {
        DEPTH_BANDS_M
            .iter()
            .map(|&z| (g.row_at_depth(z), z))
            .filter(|&(row, _)| row >= 0.0 && row < f64::from(frame.height))
            .collect()
    });
    let mut maps = Vec::new();
    if let Some(w) = event.weather {
        if let Some(t) = &w.transmission {
            maps.push(WeatherMap {
                name: "transmission",
                width: t.width,
                height: t.height,
                data: &t.data,
                range: Some((0.0, 1.0)),
            });
        }
        if let Some(p) = &w.particles {
            maps.push(WeatherMap {
                name: "particles",
                width: p.width,
                height: p.height,
                data: &p.data,
                range: None,
            });
        }
    }
    recording.log_augmented(
        seq,
        &AugmentedFrame {
            original: ImageRef::Encoded(original),
            augmented: ImageRef::Encoded(augmented),
            width: frame.width,
            height: frame.height,
            real: &event.real.annotations,
            generated: &generated,
            edit_mask: event.edit_mask,
            horizon_row,
            depth_bands: &depth_bands,
            weather_maps: &maps,
        },
    )?;
    Ok(())
}
