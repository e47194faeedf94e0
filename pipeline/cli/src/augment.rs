//! `roadsynth augment`'s arguments. The stage runs in the worker (`roadsynth-stages`), which
//! links OpenCV; this module holds only what both binaries parse.

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Args, Clone)]
pub struct AugmentArgs {
    /// Scenario YAML (`scenarios/*.yaml`).
    #[arg(long)]
    pub scenario: PathBuf,
    /// Input dataset root (its current version is read).
    #[arg(long)]
    pub dataset: PathBuf,
    /// Output dataset root: a new version with the real frames and the generated variants.
    #[arg(long)]
    pub output: PathBuf,
    /// Override the scenario's seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Asset bank (`roadsynth assets build`); default: the scenario's `assets`.
    #[arg(long)]
    pub assets: Option<PathBuf>,
    /// How insertions are rendered: `exemplar` (harmonised cut-outs), `plain` (the naive-paste
    /// baseline: plain alpha) or `diffusion` (needs --diffusion-model).
    #[arg(long, default_value = "exemplar", value_parser = ["exemplar", "plain", "diffusion"])]
    pub renderer: String,
    /// Stable Diffusion inpainting model folder (standard ONNX layout) for `--renderer diffusion`
    /// and diffusion vehicle edits.
    #[arg(long)]
    pub diffusion_model: Option<PathBuf>,
    /// COCO detector (YOLOX ONNX) for the quality filter; without it insertions are not filtered.
    #[arg(long)]
    pub detector: Option<PathBuf>,
    /// Detector score an insertion needs to be kept.
    #[arg(long, default_value_t = 0.25)]
    pub filter_threshold: f32,
    /// Vehicle segmentation model (DeepLabV3 VOC ONNX) for vehicle edits; without it, GrabCut.
    #[arg(long)]
    pub vehicle_model: Option<PathBuf>,
    /// Drivable-area model for frames without semantic labels (ONNX).
    #[arg(long)]
    pub drivable_model: Option<PathBuf>,
    /// Augment only the first frames of the scenario's splits (quick looks, CI).
    #[arg(long)]
    pub max_frames: Option<usize>,
    /// Leave the real frames out of the output (only generated variants).
    #[arg(long)]
    pub generated_only: bool,
}
