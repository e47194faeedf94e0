//! Noise schedulers: DDIM, LCM and Euler (discrete), as diffusers 0.42 defines them.
//!
//! Each follows the published formulas in the form diffusers implements them, because the models
//! we run were trained and tuned against diffusers' numbers: the noise table is built the way
//! PyTorch builds it in `float32` (`torch.linspace` with a fused multiply-add, `cumprod`
//! accumulated in `f64` and stored in `f32`), so `alphas_cumprod` matches diffusers bit for bit;
//! timestep spacings round as numpy does (ties to even). The per-element step arithmetic runs in
//! `f64` on those `f32` constants and rounds once, within a few `f32` ulps of diffusers' `float32`
//! tensors. `tests/reference/` holds the values diffusers computes and the test that compares them.
//!
//! The API is index-based (`step(i, ..)` is the `i`-th step of [`Scheduler::timesteps`]) rather than
//! keyed by timestep value, and randomness comes in as explicit noise, so one object's latents in a
//! batch do not depend on the others.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::DiffusionError;

/// Which sampler to run; all three read the same `scheduler_config.json`, as diffusers'
/// `Scheduler.from_config` does (fields a scheduler lacks keep its defaults).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SchedulerKind {
    /// DDIM (Song et al. 2020). `eta = 0` is the deterministic sampler; `eta > 0` adds noise.
    Ddim { eta: f32 },
    /// Latent Consistency Model multistep sampling (Luo et al. 2023): 1–8 steps with LCM-distilled
    /// weights (or an LCM-LoRA merged into the `UNet`); ordinary weights need 20+ DDIM steps instead.
    Lcm,
    /// Euler's method on the probability-flow ODE in sigma space (Karras et al. 2022), without
    /// churn.
    EulerDiscrete,
}

impl Default for SchedulerKind {
    fn default() -> Self {
        Self::Ddim { eta: 0.0 }
    }
}

/// How the noise table is laid out over the training timesteps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BetaSchedule {
    /// `beta_t` linear from `beta_start` to `beta_end`.
    Linear,
    /// `sqrt(beta_t)` linear: Stable Diffusion's schedule.
    ScaledLinear,
    /// The cosine `alpha_bar` schedule of improved DDPM, betas capped at 0.999.
    #[serde(rename = "squaredcos_cap_v2")]
    SquaredCosCapV2,
}

/// What the `UNet` predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PredictionType {
    /// The added noise (SD 1.x, SD 2 base, inpainting models).
    Epsilon,
    /// The velocity `sqrt(a) * eps - sqrt(1 - a) * x0` (SD 2 768-px models).
    VPrediction,
    /// The clean sample itself.
    #[serde(alias = "original_sample")]
    Sample,
}

/// How inference timesteps are spread over the training timesteps (Lin et al. 2023, table 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestepSpacing {
    Leading,
    Trailing,
    Linspace,
}

/// `scheduler_config.json` as diffusers writes it; absent fields take the chosen scheduler's
/// diffusers default when the scheduler is built. Fields this crate does not implement are read
/// so that asking for them is an error rather than silently ignored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SchedulerConfig {
    #[serde(rename = "_class_name", skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_train_timesteps: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beta_start: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beta_end: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beta_schedule: Option<BetaSchedule>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trained_betas: Option<Vec<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clip_sample: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clip_sample_range: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_alpha_to_one: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps_offset: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prediction_type: Option<PredictionType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestep_spacing: Option<TimestepSpacing>,
    /// LCM: the length of the distillation schedule inference steps are taken from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_inference_steps: Option<usize>,
    /// LCM: scales the timestep in the boundary-condition scalings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestep_scaling: Option<f64>,
    /// Euler: only `linear` is implemented.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interpolation_type: Option<String>,
    /// Euler: only `zero` is implemented.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub final_sigmas_type: Option<String>,
    /// Euler: only `discrete` is implemented.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestep_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thresholding: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rescale_betas_zero_snr: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub use_karras_sigmas: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub use_exponential_sigmas: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub use_beta_sigmas: Option<bool>,
}

impl SchedulerConfig {
    /// Reads `scheduler_config.json` (the layout's `scheduler/scheduler_config.json` is the same
    /// file).
    pub fn from_file(path: &Path) -> Result<Self, DiffusionError> {
        let bad = |reason: String| DiffusionError::SchedulerConfig {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        serde_json::from_str(&text).map_err(|e| bad(e.to_string()))
    }

    /// Stable Diffusion 1.x/2.x inpainting's scheduler (`scaled_linear` 0.00085..0.012, 1000
    /// steps, `steps_offset` 1, `set_alpha_to_one` false, epsilon).
    pub fn stable_diffusion() -> Self {
        Self {
            num_train_timesteps: Some(1000),
            beta_start: Some(0.00085),
            beta_end: Some(0.012),
            beta_schedule: Some(BetaSchedule::ScaledLinear),
            clip_sample: Some(false),
            set_alpha_to_one: Some(false),
            steps_offset: Some(1),
            prediction_type: Some(PredictionType::Epsilon),
            ..Self::default()
        }
    }
}

/// The configuration with `kind`'s diffusers defaults filled in.
#[derive(Debug, Clone, PartialEq)]
struct Resolved {
    num_train_timesteps: usize,
    clip_sample: Option<f64>,
    set_alpha_to_one: bool,
    steps_offset: usize,
    prediction_type: PredictionType,
    timestep_spacing: TimestepSpacing,
    original_inference_steps: usize,
    timestep_scaling: f64,
}

impl SchedulerConfig {
    fn resolve(&self, kind: SchedulerKind) -> Result<(Resolved, Vec<f32>), DiffusionError> {
        let unsupported = |what: &str| {
            Err(DiffusionError::Scheduler(format!(
                "{what} is not implemented (scheduler config asks for it)"
            )))
        };
        for (flag, name) in [
            (self.thresholding, "thresholding"),
            (self.rescale_betas_zero_snr, "rescale_betas_zero_snr"),
            (self.use_karras_sigmas, "use_karras_sigmas"),
            (self.use_exponential_sigmas, "use_exponential_sigmas"),
            (self.use_beta_sigmas, "use_beta_sigmas"),
        ] {
            if flag == Some(true) {
                return unsupported(name);
            }
        }
        if kind == SchedulerKind::EulerDiscrete {
            for (value, name, only) in [
                (&self.interpolation_type, "interpolation_type", "linear"),
                (&self.final_sigmas_type, "final_sigmas_type", "zero"),
                (&self.timestep_type, "timestep_type", "discrete"),
            ] {
                if let Some(v) = value.as_deref().filter(|v| *v != only) {
                    return unsupported(&format!("Euler {name} `{v}` (only `{only}`)"));
                }
            }
        }
        // diffusers' per-class defaults: LCM's differ from DDIM's and Euler's.
        let lcm = kind == SchedulerKind::Lcm;
        let ddim = matches!(kind, SchedulerKind::Ddim { .. });
        let num_train_timesteps = self.num_train_timesteps.unwrap_or(1000);
        if num_train_timesteps < 2 {
            return Err(DiffusionError::Scheduler(format!(
                "num_train_timesteps {num_train_timesteps} is below 2"
            )));
        }
        let beta_start = self
            .beta_start
            .unwrap_or(if lcm { 0.00085 } else { 0.0001 });
        let beta_end = self.beta_end.unwrap_or(if lcm { 0.012 } else { 0.02 });
        let schedule = self.beta_schedule.unwrap_or(if lcm {
            BetaSchedule::ScaledLinear
        } else {
            BetaSchedule::Linear
        });
        let betas = match &self.trained_betas {
            Some(betas) => {
                if betas.len() != num_train_timesteps {
                    return Err(DiffusionError::Scheduler(format!(
                        "trained_betas has {} values for {num_train_timesteps} training steps",
                        betas.len()
                    )));
                }
                betas.iter().map(|&b| b as f32).collect()
            }
            None => betas(schedule, beta_start, beta_end, num_train_timesteps),
        };
        let clip = self.clip_sample.unwrap_or(ddim);
        let resolved = Resolved {
            num_train_timesteps,
            clip_sample: clip.then_some(self.clip_sample_range.unwrap_or(1.0)),
            set_alpha_to_one: self.set_alpha_to_one.unwrap_or(true),
            steps_offset: self.steps_offset.unwrap_or(0),
            prediction_type: self.prediction_type.unwrap_or(PredictionType::Epsilon),
            timestep_spacing: self.timestep_spacing.unwrap_or(
                if kind == SchedulerKind::EulerDiscrete {
                    TimestepSpacing::Linspace
                } else {
                    TimestepSpacing::Leading
                },
            ),
            original_inference_steps: self.original_inference_steps.unwrap_or(50),
            timestep_scaling: self.timestep_scaling.unwrap_or(10.0),
        };
        Ok((resolved, betas))
    }
}

/// `torch.linspace(start, end, n, dtype=float32)`: the step in `f32`, each value one fused
/// multiply-add from the nearer end (PyTorch's CPU kernel; this reproduces it bit for bit).
fn torch_linspace_f32(start: f64, end: f64, n: usize) -> Vec<f32> {
    let (s, e) = (start as f32, end as f32);
    let step = (e - s) / (n - 1) as f32;
    let halfway = n / 2;
    (0..n)
        .map(|i| {
            if i < halfway {
                step.mul_add(i as f32, s)
            } else {
                (-step).mul_add((n - i - 1) as f32, e)
            }
        })
        .collect()
}

/// The training betas, in `f32` as diffusers stores them.
fn betas(schedule: BetaSchedule, start: f64, end: f64, n: usize) -> Vec<f32> {
    match schedule {
        BetaSchedule::Linear => torch_linspace_f32(start, end, n),
        BetaSchedule::ScaledLinear => torch_linspace_f32(start.sqrt(), end.sqrt(), n)
            .into_iter()
            .map(|b| b * b)
            .collect(),
        BetaSchedule::SquaredCosCapV2 => {
            // diffusers' betas_for_alpha_bar (cosine), in Python floats, then float32.
            let alpha_bar = |t: f64| {
                ((t + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2)
                    .cos()
                    .powi(2)
            };
            (0..n)
                .map(|i| {
                    let t1 = i as f64 / n as f64;
                    let t2 = (i + 1) as f64 / n as f64;
                    (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(0.999) as f32
                })
                .collect()
        }
    }
}

/// A scheduler set up for a number of inference steps.
#[derive(Debug, Clone)]
pub struct Scheduler {
    kind: SchedulerKind,
    config: Resolved,
    alphas_cumprod: Vec<f32>,
    final_alpha_cumprod: f32,
    timesteps: Vec<f64>,
    /// Euler only: one sigma per step plus the final 0.
    sigmas: Vec<f32>,
}

impl Scheduler {
    /// Builds `kind` from `config` for `steps` inference steps (diffusers' `set_timesteps`).
    pub fn new(
        kind: SchedulerKind,
        config: &SchedulerConfig,
        steps: usize,
    ) -> Result<Self, DiffusionError> {
        let (config, betas) = config.resolve(kind)?;
        let big_t = config.num_train_timesteps;
        if steps == 0 || steps > big_t {
            return Err(DiffusionError::Scheduler(format!(
                "{steps} inference steps: need 1..={big_t} (the training steps)"
            )));
        }
        if let SchedulerKind::Ddim { eta } = kind
            && !(eta.is_finite() && eta >= 0.0)
        {
            return Err(DiffusionError::Scheduler(format!(
                "DDIM eta {eta} must be finite and >= 0"
            )));
        }
        // cumprod accumulated in f64, each value stored as f32 (torch's CPU cumprod).
        let mut acc = 1.0_f64;
        let alphas_cumprod: Vec<f32> = betas
            .iter()
            .map(|&b| {
                acc *= f64::from(1.0 - b);
                acc as f32
            })
            .collect();
        let final_alpha_cumprod = if config.set_alpha_to_one {
            1.0
        } else {
            alphas_cumprod[0]
        };
        let mut sigmas = Vec::new();
        let timesteps = match kind {
            SchedulerKind::Ddim { .. } => {
                spaced_timesteps(config.timestep_spacing, big_t, steps, config.steps_offset)
            }
            SchedulerKind::Lcm => lcm_timesteps(big_t, config.original_inference_steps, steps)?,
            SchedulerKind::EulerDiscrete => {
                // Euler keeps fractional timesteps (linspace), as float32.
                let timesteps: Vec<f64> = match config.timestep_spacing {
                    TimestepSpacing::Linspace => numpy_linspace(0.0, (big_t - 1) as f64, steps)
                        .into_iter()
                        .rev()
                        .map(|t| f64::from(t as f32))
                        .collect(),
                    spacing => spaced_timesteps(spacing, big_t, steps, config.steps_offset),
                };
                let table: Vec<f32> = alphas_cumprod
                    .iter()
                    .map(|&a| ((1.0 - a) / a).sqrt())
                    .collect();
                sigmas = timesteps
                    .iter()
                    .map(|&t| interp(t, &table) as f32)
                    .collect();
                sigmas.push(0.0);
                timesteps
            }
        };
        Ok(Self {
            kind,
            config,
            alphas_cumprod,
            final_alpha_cumprod,
            timesteps,
            sigmas,
        })
    }

    /// The sampler.
    pub fn kind(&self) -> SchedulerKind {
        self.kind
    }

    /// The timesteps, highest first, one per step: integers for DDIM and LCM, `f32` values for
    /// Euler's fractional spacing. The `UNet` is conditioned on these.
    pub fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    /// `alpha_bar_t` for every training timestep (diffusers' `alphas_cumprod`).
    pub fn alphas_cumprod(&self) -> &[f32] {
        &self.alphas_cumprod
    }

    /// Euler's noise levels, one per step plus the final 0; empty for the other samplers.
    pub fn sigmas(&self) -> &[f32] {
        &self.sigmas
    }

    /// The standard deviation of pure-noise initial latents: 1, except for Euler, whose latents
    /// live at scale `sigma_max` (`sqrt(sigma_max^2 + 1)` with `leading` spacing).
    pub fn init_noise_sigma(&self) -> f64 {
        match self.kind {
            SchedulerKind::EulerDiscrete => {
                let max = self.sigmas.iter().copied().fold(0.0_f32, f32::max);
                let max = f64::from(max);
                match self.config.timestep_spacing {
                    TimestepSpacing::Linspace | TimestepSpacing::Trailing => max,
                    TimestepSpacing::Leading => (max * max + 1.0).sqrt(),
                }
            }
            _ => 1.0,
        }
    }

    /// Scales the `UNet`'s latent input for step `index`: Euler divides by `sqrt(sigma^2 + 1)`;
    /// DDIM and LCM leave it unchanged.
    pub fn scale_model_input(&self, sample: &mut [f32], index: usize) {
        if self.kind == SchedulerKind::EulerDiscrete {
            let sigma = f64::from(self.sigmas[index]);
            let scale = (sigma * sigma + 1.0).sqrt();
            for x in sample {
                *x = (f64::from(*x) / scale) as f32;
            }
        }
    }

    /// Whether step `index` draws noise (LCM except its last step; DDIM with `eta > 0`).
    pub fn needs_noise(&self, index: usize) -> bool {
        match self.kind {
            SchedulerKind::Ddim { eta } => eta > 0.0,
            SchedulerKind::Lcm => index + 1 != self.timesteps.len(),
            SchedulerKind::EulerDiscrete => false,
        }
    }

    /// `x_t` from a clean `original` and unit Gaussian `noise` at the timestep of step `index`:
    /// the start of image-to-image from step `index`.
    pub fn add_noise(&self, original: &[f32], noise: &[f32], index: usize) -> Vec<f32> {
        let (a, b) = if self.kind == SchedulerKind::EulerDiscrete {
            (1.0, f64::from(self.sigmas[index]))
        } else {
            let ac = f64::from(self.alphas_cumprod[self.timesteps[index] as usize]);
            (ac.sqrt(), (1.0 - ac).sqrt())
        };
        original
            .iter()
            .zip(noise)
            .map(|(&x, &n)| (a * f64::from(x) + b * f64::from(n)) as f32)
            .collect()
    }

    /// One denoising step: `x_{t-1}` from the `UNet`'s `model_output` at step `index` and the
    /// current `sample`. `noise` (unit Gaussian, the sample's length) is required exactly when
    /// [`needs_noise`](Self::needs_noise) says so.
    pub fn step(
        &self,
        index: usize,
        model_output: &[f32],
        sample: &[f32],
        noise: Option<&[f32]>,
    ) -> Result<Vec<f32>, DiffusionError> {
        if index >= self.timesteps.len() {
            return Err(DiffusionError::Scheduler(format!(
                "step {index} of a {}-step schedule",
                self.timesteps.len()
            )));
        }
        if model_output.len() != sample.len() {
            return Err(DiffusionError::Scheduler(format!(
                "model output has {} values, sample {}",
                model_output.len(),
                sample.len()
            )));
        }
        let noise = match (self.needs_noise(index), noise) {
            (true, Some(n)) if n.len() == sample.len() => Some(n),
            (true, Some(n)) => {
                return Err(DiffusionError::Scheduler(format!(
                    "noise has {} values, sample {}",
                    n.len(),
                    sample.len()
                )));
            }
            (true, None) => {
                return Err(DiffusionError::Scheduler(format!(
                    "step {index} of {:?} needs noise",
                    self.kind
                )));
            }
            (false, _) => None,
        };
        Ok(match self.kind {
            SchedulerKind::Ddim { eta } => self.ddim_step(index, eta, model_output, sample, noise),
            SchedulerKind::Lcm => self.lcm_step(index, model_output, sample, noise),
            SchedulerKind::EulerDiscrete => self.euler_step(index, model_output, sample),
        })
    }

    fn alpha_at(&self, timestep: i64) -> f64 {
        if timestep >= 0 {
            f64::from(self.alphas_cumprod[timestep as usize])
        } else {
            f64::from(self.final_alpha_cumprod)
        }
    }

    /// `(x0, eps)` from the model output, per prediction type, with `x0` clipped if configured.
    fn predict(&self, alpha: f64, model_output: f64, sample: f64) -> (f64, f64) {
        let beta = 1.0 - alpha;
        let (x0, eps) = match self.config.prediction_type {
            PredictionType::Epsilon => (
                (sample - beta.sqrt() * model_output) / alpha.sqrt(),
                model_output,
            ),
            PredictionType::Sample => (
                model_output,
                (sample - alpha.sqrt() * model_output) / beta.sqrt(),
            ),
            PredictionType::VPrediction => (
                alpha.sqrt() * sample - beta.sqrt() * model_output,
                alpha.sqrt() * model_output + beta.sqrt() * sample,
            ),
        };
        let x0 = match self.config.clip_sample {
            Some(range) => x0.clamp(-range, range),
            None => x0,
        };
        (x0, eps)
    }

    /// DDIM, eq. 12 of Song et al., with diffusers' `prev_t = t - T / n`.
    fn ddim_step(
        &self,
        index: usize,
        eta: f32,
        model_output: &[f32],
        sample: &[f32],
        noise: Option<&[f32]>,
    ) -> Vec<f32> {
        let t = self.timesteps[index] as i64;
        let prev_t = t - (self.config.num_train_timesteps / self.timesteps.len()) as i64;
        let a_t = self.alpha_at(t);
        let a_prev = self.alpha_at(prev_t);
        let variance = ((1.0 - a_prev) / (1.0 - a_t)) * (1.0 - a_t / a_prev);
        let std = f64::from(eta) * variance.sqrt();
        let direction = (1.0 - a_prev - std * std).sqrt();
        (0..sample.len())
            .map(|i| {
                let (x0, eps) = self.predict(a_t, f64::from(model_output[i]), f64::from(sample[i]));
                let mut prev = a_prev.sqrt() * x0 + direction * eps;
                if let Some(noise) = noise {
                    prev += std * f64::from(noise[i]);
                }
                prev as f32
            })
            .collect()
    }

    /// LCM multistep: the consistency function's boundary-condition scalings, then re-noising to
    /// the next timestep (not on the last step).
    fn lcm_step(
        &self,
        index: usize,
        model_output: &[f32],
        sample: &[f32],
        noise: Option<&[f32]>,
    ) -> Vec<f32> {
        let t = self.timesteps[index];
        let prev_t = self.timesteps.get(index + 1).copied().unwrap_or(t);
        let a_t = self.alpha_at(t as i64);
        let a_prev = self.alpha_at(prev_t as i64);
        let sigma_data = 0.5_f64;
        let scaled = t * self.config.timestep_scaling;
        let c_skip = sigma_data * sigma_data / (scaled * scaled + sigma_data * sigma_data);
        let c_out = scaled / (scaled * scaled + sigma_data * sigma_data).sqrt();
        (0..sample.len())
            .map(|i| {
                let x = f64::from(sample[i]);
                let (x0, _) = self.predict(a_t, f64::from(model_output[i]), x);
                let denoised = c_out * x0 + c_skip * x;
                match noise {
                    Some(noise) => {
                        (a_prev.sqrt() * denoised + (1.0 - a_prev).sqrt() * f64::from(noise[i]))
                            as f32
                    }
                    None => denoised as f32,
                }
            })
            .collect()
    }

    /// Euler: `x + (x - x0) / sigma * (sigma_next - sigma)`.
    fn euler_step(&self, index: usize, model_output: &[f32], sample: &[f32]) -> Vec<f32> {
        let sigma = f64::from(self.sigmas[index]);
        let dt = f64::from(self.sigmas[index + 1]) - sigma;
        sample
            .iter()
            .zip(model_output)
            .map(|(&x, &m)| {
                let (x, m) = (f64::from(x), f64::from(m));
                let x0 = match self.config.prediction_type {
                    PredictionType::Epsilon => x - sigma * m,
                    PredictionType::VPrediction => {
                        m * (-sigma / (sigma * sigma + 1.0).sqrt()) + x / (sigma * sigma + 1.0)
                    }
                    PredictionType::Sample => m,
                };
                let derivative = (x - x0) / sigma;
                (x + derivative * dt) as f32
            })
            .collect()
    }

    /// The diffusers image-to-image rule: with `strength` in (0, 1], run the last
    /// `min(floor(steps * strength), steps)` steps; returns the index of the first. Errors when
    /// that leaves no step.
    pub fn start_index(&self, strength: f32) -> Result<usize, DiffusionError> {
        let n = self.timesteps.len();
        let init = ((n as f64 * f64::from(strength)).floor() as usize).min(n);
        if init == 0 {
            return Err(DiffusionError::Scheduler(format!(
                "strength {strength} with {n} steps runs no step (need strength >= 1/{n})"
            )));
        }
        Ok(n - init)
    }
}

/// DDIM-style integer timesteps for `leading`, `trailing` and `linspace` spacing.
fn spaced_timesteps(spacing: TimestepSpacing, big_t: usize, n: usize, offset: usize) -> Vec<f64> {
    match spacing {
        TimestepSpacing::Leading => {
            let ratio = big_t / n;
            (0..n).rev().map(|i| (i * ratio + offset) as f64).collect()
        }
        TimestepSpacing::Trailing => {
            // np.round(np.arange(T, 0, -T / n)) - 1, including numpy's length rule.
            let step = -(big_t as f64) / n as f64;
            let len = ((0.0 - big_t as f64) / step).ceil() as usize;
            (0..len)
                .map(|i| (big_t as f64 + i as f64 * step).round_ties_even() - 1.0)
                .collect()
        }
        TimestepSpacing::Linspace => numpy_linspace(0.0, (big_t - 1) as f64, n)
            .into_iter()
            .rev()
            .map(f64::round_ties_even)
            .collect(),
    }
}

/// LCM's schedule: `original_steps` evenly spaced training timesteps, then `n` of them at evenly
/// spaced indices (diffusers 0.42).
fn lcm_timesteps(
    big_t: usize,
    original_steps: usize,
    n: usize,
) -> Result<Vec<f64>, DiffusionError> {
    if original_steps == 0 || original_steps > big_t {
        return Err(DiffusionError::Scheduler(format!(
            "LCM original_inference_steps {original_steps} must be in 1..={big_t}"
        )));
    }
    if n > original_steps {
        return Err(DiffusionError::Scheduler(format!(
            "LCM: {n} steps exceed original_inference_steps {original_steps}"
        )));
    }
    let k = big_t / original_steps;
    let origin: Vec<usize> = (1..=original_steps).rev().map(|i| i * k - 1).collect();
    let len = origin.len() as f64;
    Ok((0..n)
        .map(|i| {
            let idx = (i as f64 * (len / n as f64)).floor() as usize;
            origin[idx] as f64
        })
        .collect())
}

/// `np.linspace(start, stop, n)` (with endpoint), in `f64`.
fn numpy_linspace(start: f64, stop: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![start];
    }
    let step = (stop - start) / (n - 1) as f64;
    let mut values: Vec<f64> = (0..n).map(|i| i as f64 * step + start).collect();
    values[n - 1] = stop;
    values
}

/// `np.interp(x, arange(len), table)` in `f64`.
fn interp(x: f64, table: &[f32]) -> f64 {
    let last = table.len() - 1;
    if x <= 0.0 {
        return f64::from(table[0]);
    }
    if x >= last as f64 {
        return f64::from(table[last]);
    }
    let j = x.floor() as usize;
    let (lo, hi) = (f64::from(table[j]), f64::from(table[j + 1]));
    let slope = hi - lo;
    slope * (x - j as f64) + lo
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sd() -> SchedulerConfig {
        SchedulerConfig::stable_diffusion()
    }

    #[test]
    fn ddim_leading_timesteps_are_offset_multiples() -> Result<(), DiffusionError> {
        let s = Scheduler::new(SchedulerKind::default(), &sd(), 4)?;
        assert_eq!(s.timesteps(), &[751.0, 501.0, 251.0, 1.0]);
        Ok(())
    }

    #[test]
    fn linspace_rounds_ties_to_even() {
        // np.linspace(0, 999, 3) = [0, 499.5, 999]; numpy rounds 499.5 to 500 (even), and
        // np.linspace(0, 9, 3) = [0, 4.5, 9] rounds 4.5 to 4.
        assert_eq!(
            spaced_timesteps(TimestepSpacing::Linspace, 10, 3, 0),
            vec![9.0, 4.0, 0.0]
        );
    }

    #[test]
    fn step_demands_noise_exactly_when_needed() -> Result<(), DiffusionError> {
        let lcm = Scheduler::new(SchedulerKind::Lcm, &sd(), 2)?;
        let x = [0.5_f32; 4];
        assert!(lcm.step(0, &x, &x, None).is_err());
        assert!(lcm.step(0, &x, &x, Some(&x[..3])).is_err());
        assert!(lcm.step(1, &x, &x, None).is_ok());
        let ddim = Scheduler::new(SchedulerKind::default(), &sd(), 2)?;
        assert!(!ddim.needs_noise(0));
        assert!(ddim.step(2, &x, &x, None).is_err());
        Ok(())
    }

    #[test]
    fn unsupported_options_are_errors() {
        let config = SchedulerConfig {
            use_karras_sigmas: Some(true),
            ..sd()
        };
        let err = Scheduler::new(SchedulerKind::EulerDiscrete, &config, 4)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("use_karras_sigmas"), "{err}");
        assert!(Scheduler::new(SchedulerKind::default(), &sd(), 0).is_err());
        assert!(Scheduler::new(SchedulerKind::Lcm, &sd(), 51).is_err());
    }

    #[test]
    fn strength_picks_the_last_steps() -> Result<(), DiffusionError> {
        let s = Scheduler::new(SchedulerKind::default(), &sd(), 10)?;
        assert_eq!(s.start_index(1.0)?, 0);
        assert_eq!(s.start_index(0.55)?, 5);
        assert!(s.start_index(0.05).is_err());
        Ok(())
    }
}
