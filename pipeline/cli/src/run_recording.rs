//! A run's Rerun recording, `<runs>/<id>/run.rrd` (and a live viewer with `--connect`): what the
//! augment stages wrote, frame by frame, and what the experiment trained and scored.
//!
//! The viewer's memory is bounded by sampling: each augment stage logs about
//! [`FRAMES_PER_STAGE`] of its input frames (every variant of those), evenly spread over the
//! dataset, as encoded JPEGs; the experiment logs scalars and a capped number of evaluated frames.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use roadsynth_inspect::{RateLimit, RecordingConfig, RunRecording};

/// About this many input frames of each augment stage reach the recording.
pub const FRAMES_PER_STAGE: u64 = 40;

/// How long the end of a run waits for a live viewer to take what is left.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(20);

/// The file name of a run's recording in its run folder.
pub const RECORDING_FILE: &str = "run.rrd";

/// Opens `<run_dir>/run.rrd`, also streaming to the viewer at `connect` when given.
pub fn open(run_dir: &Path, connect: Option<&str>) -> Result<(Arc<RunRecording>, PathBuf)> {
    std::fs::create_dir_all(run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    let path = run_dir.join(RECORDING_FILE);
    let config = RecordingConfig {
        // Augment stages sample their frames themselves (`observer`), so no cap here would
        // favour the first stage; this cap only guards against a runaway.
        augment: RateLimit {
            every: 1,
            max_frames: Some(2_000),
            min_interval: None,
        },
        ..RecordingConfig::default()
    };
    let recording = match connect {
        Some(addr) => RunRecording::create_and_connect("roadsynth", &path, addr, &config),
        None => RunRecording::create("roadsynth", &path, &config),
    }
    .with_context(|| format!("opening the run recording {}", path.display()))?;
    Ok((Arc::new(recording), path))
}

/// Where one augment stage's frames go on the recording's `frame` timeline.
#[derive(Debug, Clone, Copy)]
pub struct StageSlot {
    /// Timeline position of the stage's first frame: after every earlier stage's frames.
    pub first: u64,
    /// Timeline positions per input frame: one per variant.
    pub variants: u32,
    /// Log input frames whose position is a multiple of this.
    pub stride: u64,
}

impl StageSlot {
    /// The slot after `previous` (or the first, `previous_frames` being what it read) for a
    /// stage that reads `frames` frames and augments `augmented` of them into `variants` variants
    /// each. The stride spreads [`FRAMES_PER_STAGE`] over the augmented frames.
    pub fn next(
        previous: Option<&Self>,
        previous_frames: u64,
        frames: u64,
        augmented: u64,
        variants: u32,
    ) -> Self {
        let first = previous.map_or(0, |p| {
            p.first + previous_frames * u64::from(p.variants.max(1))
        });
        Self {
            first,
            variants: variants.max(1),
            stride: augmented.min(frames).div_ceil(FRAMES_PER_STAGE).max(1),
        }
    }
}

/// An augment stage's share of the run recording: the recording and where the stage's frames go
/// on its timeline. The worker turns it into the stage's observer (only it links the stages).
#[derive(Debug, Clone)]
pub struct StageRecording {
    pub recording: Arc<RunRecording>,
    pub slot: StageSlot,
}
