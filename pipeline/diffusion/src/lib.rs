//! Diffusion inpainting through ONNX Runtime: Stable Diffusion inpainting models in the standard ONNX layout, DDIM, LCM and Euler schedulers, object-centric crops.
//!
//! [`InpaintModel`] loads user-supplied Stable Diffusion inpainting weights in the diffusers ONNX
//! layout (`text_encoder/`, `tokenizer/`, `unet/` with 9 input channels, `vae_encoder/`,
//! `vae_decoder/`, `scheduler_config.json`) once, and inserts objects into frames: each object's box
//! plus context is cropped, resized to the model's working size, generated (several objects per
//! `UNet` call), resized back and composited in pixel space through a feathered mask, so every pixel
//! outside the returned edit mask is the input's, bit for bit.
//!
//! Input names, element types and conventions (timestep `int64 [B]` or scalar `float`; VAE encoder
//! returning `latent_sample` or `latent_parameters`; the VAE's downsampling factor) are read from
//! the models, not assumed. ONNX Runtime comes from `roadsynth-models`' process-wide environment.
//!
//! The schedulers ([`Scheduler`]: DDIM, LCM, Euler) reproduce diffusers 0.42; `tests/reference/`
//! holds the values diffusers computes and the script that computed them.

mod crop;
mod error;
mod inpaint;
mod onnx;
mod scheduler;
mod tokenizer;

pub use crop::CropRect;
pub use error::DiffusionError;
pub use inpaint::{
    InpaintModel, InpaintRequest, InpaintResult, ModelOptions, ObjectRegion, ObjectResult,
    SD_VAE_SCALING, Timings,
};
pub use onnx::{LatentOutput, TimestepInput, TimestepShape, TimestepType, TimestepValues};
pub use scheduler::{
    BetaSchedule, PredictionType, Scheduler, SchedulerConfig, SchedulerKind, TimestepSpacing,
};
pub use tokenizer::PromptTokenizer;
