//! `roadsynth augment`'s arguments. The stage runs in the worker (`roadsynth-stages`), which
//! links OpenCV; this module holds only what both binaries parse.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Args;
use roadsynth_dataset::shard::ShardId;
use roadsynth_stages::{BlendMode, RendererKind};

use crate::orchestrator::{AugmentSpec, Orchestrator};

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
    #[arg(long, default_value = "exemplar", value_parser = RendererKind::NAMES)]
    pub renderer: String,
    /// How `--renderer exemplar` blends cut-outs: `auto` (Poisson where a measurement says it
    /// lowers the seam without washing the object's colours out, feathered alpha elsewhere),
    /// `feather` (about 6% faster a frame: no Poisson solve to measure) or `poisson`.
    #[arg(long, default_value = "auto", value_parser = BlendMode::NAMES)]
    pub blend: String,
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
    /// Augment only the first N frames of each of the scenario's splits and write only those of
    /// them (quick looks, CI); the dataset's other splits are copied whole.
    #[arg(long)]
    pub max_frames: Option<usize>,
    /// Leave the real frames out of the output (only generated variants).
    #[arg(long)]
    pub generated_only: bool,
    /// Process only shard i of N (0-based) of the input frames and write it under --shard-dir;
    /// `roadsynth dataset commit-shards` then merges the N shards into one version, identical to
    /// the unsharded run's.
    #[arg(long, value_name = "i/N")]
    pub shard: Option<ShardId>,
    /// Where shard outputs go (default: `<output>.shards` beside the output).
    #[arg(long, requires = "shard")]
    pub shard_dir: Option<PathBuf>,
    /// Render threads (default: one per core); the output is the same for any number.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub workers: Option<u16>,
}

impl AugmentArgs {
    /// One augmentation of an orchestrator file, as `roadsynth augment` runs it.
    pub fn for_spec(spec: &AugmentSpec, config: &Orchestrator) -> Self {
        let path =
            |m: &Option<crate::orchestrator::PinnedModel>| m.as_ref().map(|m| m.path.clone());
        Self {
            scenario: spec.scenario.clone(),
            dataset: config.datasets_root.join(&spec.dataset),
            output: config.datasets_root.join(&spec.name),
            seed: None,
            assets: spec.assets.as_ref().map(|a| config.assets_root.join(a)),
            renderer: spec.renderer.clone(),
            blend: spec.blend.clone(),
            diffusion_model: None,
            detector: if spec.filter {
                path(&config.models.detector)
            } else {
                None
            },
            filter_threshold: 0.25,
            vehicle_model: path(&config.models.vehicle_segmenter),
            drivable_model: path(&config.models.drivable_area),
            max_frames: spec.max_frames,
            generated_only: spec.generated_only,
            shard: None,
            shard_dir: None,
            workers: None,
        }
    }

    /// The command line (after `augment`) that parses back into these arguments, less the shard
    /// options: what a driver hands every shard, adding `--shard i/N`.
    pub fn command_line(&self) -> Vec<OsString> {
        let mut out: Vec<OsString> = Vec::new();
        let mut arg = |name: &str, value: OsString| {
            out.push(format!("--{name}").into());
            out.push(value);
        };
        arg("scenario", self.scenario.clone().into());
        arg("dataset", self.dataset.clone().into());
        arg("output", self.output.clone().into());
        arg("renderer", self.renderer.clone().into());
        arg("blend", self.blend.clone().into());
        arg("filter-threshold", self.filter_threshold.to_string().into());
        let paths = [
            ("assets", &self.assets),
            ("diffusion-model", &self.diffusion_model),
            ("detector", &self.detector),
            ("vehicle-model", &self.vehicle_model),
            ("drivable-model", &self.drivable_model),
        ];
        for (name, path) in paths {
            if let Some(p) = path {
                arg(name, p.clone().into());
            }
        }
        if let Some(seed) = self.seed {
            arg("seed", seed.to_string().into());
        }
        if let Some(n) = self.max_frames {
            arg("max-frames", n.to_string().into());
        }
        if self.generated_only {
            out.push("--generated-only".into());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::AugmentArgs;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: AugmentArgs,
    }

    #[test]
    fn the_command_line_parses_back_into_the_same_arguments() {
        let line = [
            "x",
            "--scenario",
            "s.yaml",
            "--dataset",
            "d",
            "--output",
            "o",
            "--seed",
            "7",
            "--assets",
            "a",
            "--renderer",
            "exemplar",
            "--blend",
            "feather",
            "--detector",
            "det.onnx",
            "--filter-threshold",
            "0.35",
            "--max-frames",
            "12",
            "--generated-only",
        ];
        let parsed = Cli::parse_from(line).args;
        let again = Cli::parse_from(std::iter::once("x".into()).chain(parsed.command_line())).args;
        assert_eq!(format!("{parsed:?}"), format!("{again:?}"));
        assert!(again.shard.is_none() && again.workers.is_none());
        let sharded = Cli::try_parse_from(line.iter().copied().chain(["--shard", "2/3"]))
            .expect("parses")
            .args;
        assert_eq!(sharded.shard.map(|s| s.to_string()).as_deref(), Some("2/3"));
        assert!(Cli::try_parse_from(line.iter().copied().chain(["--shard", "3/3"])).is_err());
    }
}
