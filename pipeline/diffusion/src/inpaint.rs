//! The inpainting pipeline: load once, then inpaint objects into frames.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use image::imageops::FilterType;
use image::{GrayImage, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde_json::{Value, json};

use crate::crop::{self, CropRect, ObjectMask};
use crate::onnx::{
    Array, LATENT_CHANNELS, LatentOutput, Net, TextEncoder, TimestepInput, Unet, VaeDecoder,
    VaeEncoder,
};
use crate::{DiffusionError, PromptTokenizer, Scheduler, SchedulerConfig, SchedulerKind};

/// Stable Diffusion's VAE latent scaling (`vae.config.scaling_factor` of SD 1.x and 2.x).
pub const SD_VAE_SCALING: f32 = 0.18215;

/// How a model is loaded and run.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelOptions {
    /// Intra-op threads per session (ONNX Runtime's default, one per core, when `None`).
    pub threads: Option<usize>,
    /// The square working size in pixels crops are generated at: 512 for SD 1.x/2.x inpainting.
    /// Must be a multiple of 8 latents (`8 x` the VAE factor), which every SD `UNet` accepts.
    pub resolution: u32,
    /// Latents are multiplied by this after encoding and divided before decoding (0.18215 for the
    /// SD VAE; SDXL's is 0.13025).
    pub vae_scaling: f32,
    /// Objects per `UNet` call; memory grows with it (each is two rows under guidance).
    pub max_batch: usize,
}

impl Default for ModelOptions {
    fn default() -> Self {
        Self {
            threads: None,
            resolution: 512,
            vae_scaling: SD_VAE_SCALING,
            max_batch: 4,
        }
    }
}

/// One object to insert: a box, optionally a finer mask, optionally its own prompt.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ObjectRegion {
    /// `[x0, y0, x1, y1]` in frame pixels (continuous coordinates, as `roadsynth-types`' boxes).
    pub bbox: [f64; 4],
    /// A frame-sized mask (`> 127` = regenerate); the box's pixels when `None`.
    pub mask: Option<GrayImage>,
    /// Overrides the request's prompt for this object.
    pub prompt: Option<String>,
}

impl ObjectRegion {
    /// An object filling its box.
    pub fn from_box(bbox: [f64; 4]) -> Self {
        Self {
            bbox,
            ..Self::default()
        }
    }
}

/// What to generate where.
///
/// `strength = 1` inpaints from pure noise (the masked content is replaced); `strength < 1` is
/// masked image-to-image for appearance edits (a vehicle's colour): the crop is encoded, noised to
/// `strength`, and only the last `floor(steps * strength)` steps run, so the result keeps the
/// original's layout. Either way only the mask (plus its feather ring) changes.
#[derive(Debug, Clone)]
pub struct InpaintRequest<'a> {
    pub image: &'a RgbImage,
    pub objects: Vec<ObjectRegion>,
    pub prompt: String,
    /// Used only under guidance (`guidance_scale > 1`).
    pub negative_prompt: String,
    /// Classifier-free guidance weight; `<= 1` runs the conditional pass only (half the `UNet`
    /// work), as diffusers does.
    pub guidance_scale: f32,
    pub steps: usize,
    pub scheduler: SchedulerKind,
    /// Object `i` draws its noise from `ChaCha8Rng::seed_from_u64(seed)` on stream `i`, so an
    /// object's result does not depend on how objects are batched.
    pub seed: u64,
    /// In (0, 1]; see above.
    pub strength: f32,
    /// Context around each object on every side, as a fraction of its longer side.
    pub context_margin: f64,
    /// Feather radius in frame pixels: the composite ramps from the mask to 0 over `2 * feather`
    /// pixels.
    pub feather: u32,
}

impl<'a> InpaintRequest<'a> {
    /// A request with diffusers-like defaults: no negative prompt, guidance 7.5, 25 DDIM steps,
    /// seed 0, strength 1, context margin 0.5, feather 4 px.
    pub fn new(image: &'a RgbImage, objects: Vec<ObjectRegion>, prompt: impl Into<String>) -> Self {
        Self {
            image,
            objects,
            prompt: prompt.into(),
            negative_prompt: String::new(),
            guidance_scale: 7.5,
            steps: 25,
            scheduler: SchedulerKind::default(),
            seed: 0,
            strength: 1.0,
            context_margin: 0.5,
            feather: 4,
        }
    }

    fn validate(&self) -> Result<(), DiffusionError> {
        let bad = |s: String| Err(DiffusionError::Request(s));
        if self.image.width() == 0 || self.image.height() == 0 {
            return bad("the image is empty".into());
        }
        if !(self.guidance_scale.is_finite() && self.guidance_scale >= 0.0) {
            return bad(format!(
                "guidance scale {} must be >= 0",
                self.guidance_scale
            ));
        }
        if !(self.strength > 0.0 && self.strength <= 1.0) {
            return bad(format!("strength {} must be in (0, 1]", self.strength));
        }
        if !(self.context_margin.is_finite() && self.context_margin >= 0.0) {
            return bad(format!(
                "context margin {} must be >= 0",
                self.context_margin
            ));
        }
        if self.steps == 0 {
            return bad("steps must be at least 1".into());
        }
        Ok(())
    }

    fn guided(&self) -> bool {
        self.guidance_scale > 1.0
    }
}

/// Where one object was generated and how much of the frame it changed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ObjectResult {
    /// The frame rectangle that was cropped, generated and pasted back.
    pub crop: CropRect,
    /// Pixels the composite wrote (alpha > 0).
    pub edited_pixels: u64,
}

/// Wall time per stage, and how much `UNet` work ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timings {
    pub text_encoder: Duration,
    pub vae_encoder: Duration,
    pub unet: Duration,
    pub vae_decoder: Duration,
    pub total: Duration,
    /// `UNet` invocations (one per step per batch of objects).
    pub unet_calls: usize,
    /// Batch rows through the `UNet`: objects x steps, twice under guidance.
    pub unet_rows: usize,
}

/// The edited frame.
#[derive(Debug, Clone)]
pub struct InpaintResult {
    pub image: RgbImage,
    /// 0 where `image` equals the input bit for bit; elsewhere `ceil(255 * alpha)` of the
    /// composite (255 on the objects' masks).
    pub edit_mask: GrayImage,
    pub objects: Vec<ObjectResult>,
    pub timings: Timings,
    /// Everything needed to reproduce the result (model, scheduler, settings, crops).
    pub params: Value,
}

/// A Stable Diffusion inpainting model in the diffusers ONNX layout, its four sessions created
/// once and reused for every request.
#[derive(Debug)]
pub struct InpaintModel {
    dir: PathBuf,
    options: ModelOptions,
    tokenizer: PromptTokenizer,
    text_encoder: TextEncoder,
    unet: Unet,
    vae_encoder: VaeEncoder,
    vae_decoder: VaeDecoder,
    scheduler_config: SchedulerConfig,
}

impl InpaintModel {
    /// Loads `dir`: `text_encoder/model.onnx`, `tokenizer/` (`tokenizer.json`, or `vocab.json` +
    /// `merges.txt`), `unet/model.onnx` (9 input channels), `vae_encoder/model.onnx`,
    /// `vae_decoder/model.onnx`, and `scheduler_config.json` (or `scheduler/scheduler_config.json`).
    /// The VAE's downsampling factor comes from one probe encode.
    pub fn load(dir: &Path, options: &ModelOptions) -> Result<Self, DiffusionError> {
        if options.max_batch == 0 {
            return Err(DiffusionError::Options(
                "max_batch must be at least 1".into(),
            ));
        }
        if !(options.vae_scaling.is_finite() && options.vae_scaling > 0.0) {
            return Err(DiffusionError::Options(format!(
                "vae_scaling {} must be > 0",
                options.vae_scaling
            )));
        }
        let net = |name: &str| Net::open(&dir.join(name).join("model.onnx"), options.threads);
        let unet = Unet::new(net("unet")?)?;
        let text_encoder = TextEncoder::new(net("text_encoder")?)?;
        let vae_encoder = VaeEncoder::new(net("vae_encoder")?)?;
        let vae_decoder = VaeDecoder::new(net("vae_decoder")?)?;
        let seq_len = text_encoder.seq_len.unwrap_or(77);
        let tokenizer = PromptTokenizer::load(&dir.join("tokenizer"), seq_len)?;
        let scheduler_path = [
            dir.join("scheduler_config.json"),
            dir.join("scheduler").join("scheduler_config.json"),
        ]
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| DiffusionError::MissingFile {
            path: dir.join("scheduler_config.json"),
        })?;
        let scheduler_config = SchedulerConfig::from_file(&scheduler_path)?;
        let unit = 8 * vae_encoder.scale_factor as u32;
        if options.resolution == 0 || !options.resolution.is_multiple_of(unit) {
            return Err(DiffusionError::Options(format!(
                "resolution {} must be a positive multiple of {unit} (8 latents of the VAE's factor {})",
                options.resolution, vae_encoder.scale_factor
            )));
        }
        tracing::debug!(
            model = %dir.display(),
            vae_scale_factor = vae_encoder.scale_factor,
            timestep = ?unet.timestep,
            latent_output = ?vae_encoder.layout,
            "inpainting model loaded"
        );
        Ok(Self {
            dir: dir.to_path_buf(),
            options: options.clone(),
            tokenizer,
            text_encoder,
            unet,
            vae_encoder,
            vae_decoder,
            scheduler_config,
        })
    }

    /// Pixels per latent (8 for Stable Diffusion; read from the model).
    pub fn vae_scale_factor(&self) -> u32 {
        self.vae_encoder.scale_factor as u32
    }

    /// The options the model was loaded with.
    pub fn options(&self) -> &ModelOptions {
        &self.options
    }

    /// The `UNet`'s timestep convention, as read from the model.
    pub fn timestep_input(&self) -> TimestepInput {
        self.unet.timestep
    }

    /// What the VAE encoder returns, as read from the model.
    pub fn latent_output(&self) -> LatentOutput {
        self.vae_encoder.layout
    }

    /// `scheduler_config.json`.
    pub fn scheduler_config(&self) -> &SchedulerConfig {
        &self.scheduler_config
    }

    /// The prompt tokenizer.
    pub fn tokenizer(&self) -> &PromptTokenizer {
        &self.tokenizer
    }

    /// A scheduler of `kind` for `steps` steps from the model's configuration.
    pub fn scheduler(
        &self,
        kind: SchedulerKind,
        steps: usize,
    ) -> Result<Scheduler, DiffusionError> {
        Scheduler::new(kind, &self.scheduler_config, steps)
    }

    /// Inpaints every object of `request` and composites them into a copy of the frame.
    ///
    /// Objects are generated from the input frame independently (up to `max_batch` per `UNet`
    /// call) and pasted in order, so where two objects' feathered regions overlap the later one
    /// wins.
    pub fn inpaint(
        &mut self,
        request: &InpaintRequest<'_>,
    ) -> Result<InpaintResult, DiffusionError> {
        let started = Instant::now();
        request.validate()?;
        let scheduler = self.scheduler(request.scheduler, request.steps)?;
        let start = if request.strength < 1.0 {
            scheduler.start_index(request.strength)?
        } else {
            0
        };
        let (w, h) = request.image.dimensions();
        let masks = request
            .objects
            .iter()
            .map(|o| ObjectMask::new(o.bbox, o.mask.as_ref(), w, h))
            .collect::<Result<Vec<_>, _>>()?;
        let mut timings = Timings::default();
        let mut output = request.image.clone();
        let mut edit_mask = GrayImage::new(w, h);
        let mut results = Vec::with_capacity(masks.len());
        if masks.is_empty() {
            timings.total = started.elapsed();
            return Ok(InpaintResult {
                image: output,
                edit_mask,
                objects: results,
                timings,
                params: self.provenance(request, &scheduler, start, &[]),
            });
        }

        // Text: one encoder call for every distinct prompt (and the negative one under guidance).
        let mut prompts: Vec<&str> = Vec::new();
        let mut cond_rows = Vec::with_capacity(masks.len());
        for object in &request.objects {
            let prompt = object.prompt.as_deref().unwrap_or(&request.prompt);
            cond_rows.push(row_of(prompt, &mut prompts));
        }
        let uncond_row = request
            .guided()
            .then(|| row_of(&request.negative_prompt, &mut prompts));
        let t = Instant::now();
        let ids = prompts
            .iter()
            .map(|p| self.tokenizer.encode(p))
            .collect::<Result<Vec<_>, _>>()?;
        let text = self.text_encoder.encode(&ids)?;
        timings.text_encoder = t.elapsed();
        if let Some(size) = self.unet.hidden_size
            && text.shape[2] != size
        {
            return Err(DiffusionError::BadOutput {
                model: self.text_encoder.net.path.clone(),
                output: "last_hidden_state".into(),
                reason: format!(
                    "hidden size {}, but the UNet's encoder_hidden_states take {size}",
                    text.shape[2]
                ),
            });
        }

        let crops: Vec<CropRect> = masks
            .iter()
            .map(|m| crop::crop_rect(m, request.context_margin, request.feather))
            .collect();
        let indices: Vec<usize> = (0..masks.len()).collect();
        for chunk in indices.chunks(self.options.max_batch) {
            let prepared: Vec<Prepared> = chunk
                .iter()
                .map(|&i| self.prepare(request, &masks[i], crops[i], i))
                .collect();
            let rows = TextRows {
                hidden: &text,
                cond: chunk.iter().map(|&i| cond_rows[i]).collect(),
                uncond: uncond_row,
            };
            let generated =
                self.generate(request, &scheduler, start, &prepared, &rows, &mut timings)?;
            for ((&i, item), image) in chunk.iter().zip(&prepared).zip(generated) {
                let crop = crops[i];
                let back = if image.dimensions() == (crop.width, crop.height) {
                    image
                } else {
                    image::imageops::resize(&image, crop.width, crop.height, FilterType::Triangle)
                };
                let edited = crop::composite(&mut output, &mut edit_mask, &back, crop, &item.alpha);
                results.push(ObjectResult {
                    crop,
                    edited_pixels: edited,
                });
            }
        }
        timings.total = started.elapsed();
        let params = self.provenance(request, &scheduler, start, &crops);
        Ok(InpaintResult {
            image: output,
            edit_mask,
            objects: results,
            timings,
            params,
        })
    }

    /// The model's inputs for one object: the crop at working size, its masked copy, the latent
    /// mask, the compositing alpha and the object's noise stream.
    fn prepare(
        &self,
        request: &InpaintRequest<'_>,
        mask: &ObjectMask,
        crop: CropRect,
        index: usize,
    ) -> Prepared {
        let r = self.options.resolution;
        let ru = r as usize;
        let factor = self.vae_encoder.scale_factor;
        let cropped =
            image::imageops::crop_imm(request.image, crop.x, crop.y, crop.width, crop.height)
                .to_image();
        let resized = if cropped.dimensions() == (r, r) {
            cropped
        } else {
            image::imageops::resize(&cropped, r, r, FilterType::Triangle)
        };
        let (cw, ch) = (crop.width as usize, crop.height as usize);
        let region = crop::model_mask(mask, crop, request.feather);
        let alpha = crop::feather_alpha(&region, cw, ch, request.feather as usize);
        // Nearest-neighbour mask at working size; masked pixels become 0 (mid-grey in [-1, 1]),
        // as diffusers' `image * (mask < 0.5)`.
        let pixel_mask: Vec<bool> = (0..ru)
            .flat_map(|y| (0..ru).map(move |x| (x, y)))
            .map(|(x, y)| {
                let sx = ((2 * x + 1) * cw / (2 * ru)).min(cw - 1);
                let sy = ((2 * y + 1) * ch / (2 * ru)).min(ch - 1);
                region[sy * cw + sx]
            })
            .collect();
        let plane = ru * ru;
        let mut image = vec![0.0_f32; 3 * plane];
        for (x, y, p) in resized.enumerate_pixels() {
            for c in 0..3 {
                image[c * plane + y as usize * ru + x as usize] =
                    f32::from(p.0[c]) / 255.0 * 2.0 - 1.0;
            }
        }
        let mut masked = image.clone();
        for c in 0..3 {
            for (i, &m) in pixel_mask.iter().enumerate() {
                if m {
                    masked[c * plane + i] = 0.0;
                }
            }
        }
        // A latent cell is masked if any of its pixels is: the model regenerates at least the
        // region whose pixels were blanked (diffusers' nearest downsampling can miss thin parts).
        let lr = ru / factor;
        let mut latent_mask = vec![0.0_f32; lr * lr];
        for (i, &m) in pixel_mask.iter().enumerate() {
            if m {
                let (x, y) = (i % ru, i / ru);
                latent_mask[(y / factor) * lr + x / factor] = 1.0;
            }
        }
        let mut rng = ChaCha8Rng::seed_from_u64(request.seed);
        rng.set_stream(index as u64);
        Prepared {
            image,
            masked,
            latent_mask,
            alpha,
            rng,
        }
    }

    /// Runs the diffusion loop for a batch of prepared objects; returns their crops at working
    /// size.
    fn generate(
        &mut self,
        request: &InpaintRequest<'_>,
        scheduler: &Scheduler,
        start: usize,
        items: &[Prepared],
        text: &TextRows<'_>,
        timings: &mut Timings,
    ) -> Result<Vec<RgbImage>, DiffusionError> {
        let n = items.len();
        let ru = self.options.resolution as usize;
        let lr = ru / self.vae_encoder.scale_factor;
        let latent_len = LATENT_CHANNELS * lr * lr;
        let scaling = self.options.vae_scaling;
        let batch = |pick: &dyn Fn(&Prepared) -> &[f32]| Array {
            shape: vec![n, 3, ru, ru],
            data: items.iter().flat_map(|p| pick(p).iter().copied()).collect(),
        };
        let t = Instant::now();
        let mut masked_latents = self.vae_encoder.encode(&batch(&|p| &p.masked))?;
        masked_latents.data.iter_mut().for_each(|v| *v *= scaling);
        let image_latents = if request.strength < 1.0 {
            let mut latents = self.vae_encoder.encode(&batch(&|p| &p.image))?;
            latents.data.iter_mut().for_each(|v| *v *= scaling);
            Some(latents)
        } else {
            None
        };
        timings.vae_encoder += t.elapsed();
        if masked_latents.shape != [n, LATENT_CHANNELS, lr, lr] {
            return Err(DiffusionError::BadOutput {
                model: self.vae_encoder.net.path.clone(),
                output: "latents".into(),
                reason: format!(
                    "shape {:?} for {ru} px; expected [{n}, {LATENT_CHANNELS}, {lr}, {lr}]",
                    masked_latents.shape
                ),
            });
        }

        let mut rngs: Vec<ChaCha8Rng> = items.iter().map(|p| p.rng.clone()).collect();
        let draw = |rng: &mut ChaCha8Rng| -> Vec<f32> {
            (0..latent_len)
                .map(|_| rng.sample(StandardNormal))
                .collect()
        };
        let mut latents: Vec<Vec<f32>> = Vec::with_capacity(n);
        for (j, rng) in rngs.iter_mut().enumerate() {
            let noise = draw(rng);
            latents.push(if let Some(image) = &image_latents {
                scheduler.add_noise(
                    &image.data[j * latent_len..(j + 1) * latent_len],
                    &noise,
                    start,
                )
            } else {
                let sigma = scheduler.init_noise_sigma();
                noise
                    .iter()
                    .map(|&v| (f64::from(v) * sigma) as f32)
                    .collect()
            });
        }

        // The text rows per UNet row: [uncond x n, cond x n] under guidance, else [cond x n].
        let guided = text.uncond.is_some();
        let row_len = text.hidden.shape[1] * text.hidden.shape[2];
        let text_row = |r: usize| &text.hidden.data[r * row_len..(r + 1) * row_len];
        let mut hidden_rows: Vec<usize> = Vec::new();
        if let Some(u) = text.uncond {
            hidden_rows.extend(std::iter::repeat_n(u, n));
        }
        hidden_rows.extend(&text.cond);
        let hidden = Array {
            shape: vec![
                hidden_rows.len(),
                text.hidden.shape[1],
                text.hidden.shape[2],
            ],
            data: hidden_rows
                .iter()
                .flat_map(|&r| text_row(r).iter().copied())
                .collect(),
        };
        let plane = lr * lr;
        let unet_rows = hidden_rows.len();
        let g = request.guidance_scale;
        for (index, &timestep) in scheduler.timesteps().iter().enumerate().skip(start) {
            // Each row: [scaled latents (4), mask (1), masked-image latents (4)], the channel order
            // of diffusers' inpainting pipeline.
            let mut rows = Vec::with_capacity(n * (2 * LATENT_CHANNELS + 1) * plane);
            for (j, item) in items.iter().enumerate() {
                let mut scaled = latents[j].clone();
                scheduler.scale_model_input(&mut scaled, index);
                rows.extend_from_slice(&scaled);
                rows.extend_from_slice(&item.latent_mask);
                rows.extend_from_slice(&masked_latents.data[j * latent_len..(j + 1) * latent_len]);
            }
            let sample = if guided { rows.repeat(2) } else { rows };
            let sample = Array {
                shape: vec![unet_rows, 2 * LATENT_CHANNELS + 1, lr, lr],
                data: sample,
            };
            let t = Instant::now();
            let prediction = self.unet.predict(&sample, timestep, &hidden)?;
            timings.unet += t.elapsed();
            timings.unet_calls += 1;
            timings.unet_rows += unet_rows;
            for (j, rng) in rngs.iter_mut().enumerate() {
                let row = |r: usize| &prediction.data[r * latent_len..(r + 1) * latent_len];
                let eps: Vec<f32> = if guided {
                    row(j)
                        .iter()
                        .zip(row(n + j))
                        .map(|(&u, &c)| u + g * (c - u))
                        .collect()
                } else {
                    row(j).to_vec()
                };
                let noise = scheduler.needs_noise(index).then(|| draw(rng));
                latents[j] = scheduler.step(index, &eps, &latents[j], noise.as_deref())?;
            }
        }

        let t = Instant::now();
        let latents = Array {
            shape: vec![n, LATENT_CHANNELS, lr, lr],
            data: latents.iter().flatten().map(|&v| v / scaling).collect(),
        };
        let decoded = self
            .vae_decoder
            .decode(&latents, self.vae_encoder.scale_factor)?;
        timings.vae_decoder += t.elapsed();
        let pixels = 3 * ru * ru;
        let plane = ru * ru;
        Ok(decoded
            .data
            .chunks_exact(pixels)
            .map(|chw| {
                RgbImage::from_fn(ru as u32, ru as u32, |x, y| {
                    let i = y as usize * ru + x as usize;
                    image::Rgb(std::array::from_fn(|c| to_u8(chw[c * plane + i])))
                })
            })
            .collect())
    }

    fn provenance(
        &self,
        request: &InpaintRequest<'_>,
        scheduler: &Scheduler,
        start: usize,
        crops: &[CropRect],
    ) -> Value {
        json!({
            "model_dir": self.dir.display().to_string(),
            "resolution": self.options.resolution,
            "vae_scale_factor": self.vae_encoder.scale_factor,
            "vae_scaling": self.options.vae_scaling,
            "latent_output": self.vae_encoder.layout,
            "timestep_input": self.unet.timestep,
            "scheduler": request.scheduler,
            "scheduler_config": self.scheduler_config,
            "steps": request.steps,
            "timesteps_run": scheduler.timesteps()[start..],
            "guidance_scale": request.guidance_scale,
            "prompt": request.prompt,
            "negative_prompt": request.guided().then_some(&request.negative_prompt),
            "seed": request.seed,
            "noise": "ChaCha8Rng::seed_from_u64(seed), stream = object index, rand_distr StandardNormal f32",
            "strength": request.strength,
            "context_margin": request.context_margin,
            "feather": request.feather,
            "objects": request.objects.iter().zip(crops).map(|(o, c)| json!({
                "bbox": o.bbox,
                "has_mask": o.mask.is_some(),
                "prompt": o.prompt,
                "crop": c,
            })).collect::<Vec<_>>(),
        })
    }
}

/// The index of `prompt` in `prompts`, appended if new.
fn row_of<'p>(prompt: &'p str, prompts: &mut Vec<&'p str>) -> usize {
    prompts
        .iter()
        .position(|q| *q == prompt)
        .unwrap_or_else(|| {
            prompts.push(prompt);
            prompts.len() - 1
        })
}

/// [-1, 1] to a byte, as diffusers' post-processing: `round(clamp(x / 2 + 0.5, 0, 1) * 255)`.
fn to_u8(v: f32) -> u8 {
    ((v / 2.0 + 0.5).clamp(0.0, 1.0) * 255.0).round() as u8
}

/// One object's prepared inputs.
struct Prepared {
    /// `[3, R, R]` in [-1, 1].
    image: Vec<f32>,
    /// The same with the model mask blanked.
    masked: Vec<f32>,
    /// `[R/f, R/f]`, 1 = regenerate.
    latent_mask: Vec<f32>,
    alpha: crop::Alpha,
    rng: ChaCha8Rng,
}

/// The text encoder's output and which row each object uses.
struct TextRows<'a> {
    hidden: &'a Array,
    cond: Vec<usize>,
    uncond: Option<usize>,
}
