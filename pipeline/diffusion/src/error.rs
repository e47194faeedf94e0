use std::path::PathBuf;

use roadsynth_models::ModelError;

/// What can go wrong loading an inpainting model or running a request.
///
/// Model errors name the file (`unet/model.onnx`) and, where one is at fault, the input or output
/// by the name the model gives it, so a user with a differently exported model sees what to change.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DiffusionError {
    /// ONNX Runtime itself could not be loaded.
    #[error(transparent)]
    Runtime(#[from] ModelError),
    /// A file of the standard layout is absent.
    #[error("{} is missing (expected the diffusers ONNX layout: text_encoder/, tokenizer/, unet/, vae_encoder/, vae_decoder/, scheduler_config.json)", path.display())]
    MissingFile { path: PathBuf },
    /// ONNX Runtime failed to create a session or to run one.
    #[error("{}: {context}: {message}", model.display())]
    Ort {
        model: PathBuf,
        context: &'static str,
        message: String,
    },
    /// A model input has a name, type or shape this pipeline cannot feed.
    #[error("{}: input `{input}`: {reason}", model.display())]
    BadInput {
        model: PathBuf,
        input: String,
        reason: String,
    },
    /// A model lacks an input this pipeline needs, or has one it does not know how to fill.
    #[error("{}: {reason} (inputs: {})", model.display(), inputs.join(", "))]
    Inputs {
        model: PathBuf,
        reason: String,
        inputs: Vec<String>,
    },
    /// The `UNet` does not take 9 channels (4 latent + 1 mask + 4 masked-image latent): it is not an
    /// inpainting `UNet`.
    #[error("{}: input `{input}` has {channels} channels; an inpainting UNet takes 9 (4 noisy latents, 1 mask, 4 masked-image latents){}", model.display(), if *channels == 4 { " — this looks like a text-to-image UNet" } else { "" })]
    UnetChannels {
        model: PathBuf,
        input: String,
        channels: i64,
    },
    /// A model output is missing or has an unexpected type or shape.
    #[error("{}: output `{output}`: {reason}", model.display())]
    BadOutput {
        model: PathBuf,
        output: String,
        reason: String,
    },
    /// The tokenizer files could not be read or used.
    #[error("tokenizer {}: {reason}", path.display())]
    Tokenizer { path: PathBuf, reason: String },
    /// `scheduler_config.json` is unreadable or asks for something not implemented.
    #[error("scheduler config {}: {reason}", path.display())]
    SchedulerConfig { path: PathBuf, reason: String },
    /// A scheduler cannot be built for these settings (zero steps, more steps than training steps).
    #[error("scheduler: {0}")]
    Scheduler(String),
    /// The model options do not fit the model (resolution not a multiple of the VAE factor).
    #[error("model options: {0}")]
    Options(String),
    /// The request is inconsistent (a box outside the image, a mask of another size).
    #[error("request: {0}")]
    Request(String),
}
