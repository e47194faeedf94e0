//! The four ONNX networks: sessions, and what their inputs and outputs are, read from the models.
//!
//! Exports in the wild differ (diffusers' legacy script, optimum, hand-written ones): the timestep
//! is `int64 [B]`, a scalar `float`, or something in between; the VAE encoder returns a sampled
//! `latent_sample` or the distribution's `latent_parameters` (mean and log-variance concatenated).
//! Everything here is decided from the model's declared inputs and a probe run, never from names
//! alone.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, Outlet, Tensor, TensorElementType, TensorRef, ValueType};
use serde::Serialize;

use crate::DiffusionError;

/// An f32 tensor in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Array {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// One network's session and file, so errors can name the file.
#[derive(Debug)]
pub(crate) struct Net {
    pub session: Session,
    pub path: PathBuf,
}

impl Net {
    pub fn open(path: &Path, threads: Option<usize>) -> Result<Self, DiffusionError> {
        if !path.is_file() {
            return Err(DiffusionError::MissingFile {
                path: path.to_path_buf(),
            });
        }
        let environment = roadsynth_models::runtime()?;
        let mut builder =
            Session::builder(environment).map_err(ort_error(path, "session options"))?;
        if let Some(threads) = threads {
            builder = builder
                .with_intra_threads(threads)
                .map_err(ort_error(path, "thread count"))?;
        }
        let session = builder
            .commit_from_file(path)
            .map_err(ort_error(path, "loading the model"))?;
        Ok(Self {
            session,
            path: path.to_path_buf(),
        })
    }

    pub fn input_names(&self) -> Vec<String> {
        self.session
            .inputs()
            .iter()
            .map(|i| i.name().to_string())
            .collect()
    }

    /// Runs the network and returns output `output` as f32.
    pub fn run(
        &mut self,
        inputs: Vec<(Cow<'_, str>, SessionInputValue<'_>)>,
        output: &str,
    ) -> Result<Array, DiffusionError> {
        let outputs = self.session.run(inputs).map_err(|e| DiffusionError::Ort {
            model: self.path.clone(),
            context: "inference",
            message: e.to_string(),
        })?;
        let bad = |reason: String| DiffusionError::BadOutput {
            model: self.path.clone(),
            output: output.to_string(),
            reason,
        };
        let value = outputs
            .get(output)
            .ok_or_else(|| bad("missing from the results".into()))?;
        let (shape, data) = value
            .try_extract_tensor::<f32>()
            .map_err(|e| bad(format!("not an f32 tensor: {e}")))?;
        let shape = shape
            .iter()
            .map(|&d| usize::try_from(d).map_err(|_| bad(format!("dimension {d}"))))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Array {
            shape,
            data: data.to_vec(),
        })
    }
}

/// Maps an `ort` error (of any recovery type) to [`DiffusionError::Ort`].
fn ort_error<R>(
    model: &Path,
    context: &'static str,
) -> impl FnOnce(ort::Error<R>) -> DiffusionError {
    let model = model.to_path_buf();
    move |e| DiffusionError::Ort {
        model,
        context,
        message: e.to_string(),
    }
}

/// A borrowed f32 tensor as a session input.
pub(crate) fn f32_input<'v>(
    net: &Net,
    name: &str,
    shape: &[usize],
    data: &'v [f32],
) -> Result<SessionInputValue<'v>, DiffusionError> {
    TensorRef::from_array_view((shape.to_vec(), data))
        .map(SessionInputValue::from)
        .map_err(|e| DiffusionError::BadInput {
            model: net.path.clone(),
            input: name.to_string(),
            reason: e.to_string(),
        })
}

/// An input's element type and shape (`-1` for a dynamic dimension), or why it is not a tensor.
fn tensor_description(outlet: &Outlet) -> Option<(TensorElementType, Vec<i64>)> {
    match outlet.dtype() {
        ValueType::Tensor { ty, shape, .. } => Some((*ty, shape.to_vec())),
        _ => None,
    }
}

/// The element type of the `UNet`'s timestep input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TimestepType {
    Int64,
    Int32,
    Float32,
    Float64,
}

/// The timestep input's shape convention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestepShape {
    /// A 0-d scalar shared by the batch.
    Scalar,
    /// One value per batch row (`[B]`, dynamic).
    Batch,
    /// A fixed length (`[1]` broadcast by the model, or an export traced at one batch size).
    Fixed(usize),
}

/// How the `UNet` takes its timestep: the two conventions seen in the wild are `int64 [B]`
/// (optimum, the diffusers `OnnxStableDiffusion*` exports) and a scalar `float` (older
/// hand-written exports); the builder covers every combination of the types and shapes below.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TimestepInput {
    pub dtype: TimestepType,
    pub shape: TimestepShape,
}

/// Timestep values in the input's element type.
#[derive(Debug, Clone, PartialEq)]
pub enum TimestepValues {
    Int64(Vec<i64>),
    Int32(Vec<i32>),
    Float32(Vec<f32>),
    Float64(Vec<f64>),
}

impl TimestepInput {
    /// Reads the convention from an input's declared element type and shape (`-1` = dynamic).
    pub fn from_description(element: TensorElementType, shape: &[i64]) -> Result<Self, String> {
        let dtype = match element {
            TensorElementType::Int64 => TimestepType::Int64,
            TensorElementType::Int32 => TimestepType::Int32,
            TensorElementType::Float32 => TimestepType::Float32,
            TensorElementType::Float64 => TimestepType::Float64,
            other => {
                return Err(format!(
                    "element type {other:?}; supported: int64, int32, float32, float64 (export float16 models in float32)"
                ));
            }
        };
        let shape = match shape {
            [] => TimestepShape::Scalar,
            [d] if *d < 0 => TimestepShape::Batch,
            [d] if *d > 0 => TimestepShape::Fixed(*d as usize),
            _ => {
                return Err(format!(
                    "shape {shape:?}; expected a scalar or a vector [B]"
                ));
            }
        };
        Ok(Self { dtype, shape })
    }

    /// The tensor shape and values for timestep `t` and `batch` rows. Integer types take `t`
    /// rounded to nearest (Euler's fractional timesteps; DDIM and LCM timesteps are integers):
    /// diffusers' ONNX pipeline truncates instead, which is up to one training step further from
    /// the value the sampler meant.
    pub fn values(&self, t: f64, batch: usize) -> Result<(Vec<usize>, TimestepValues), String> {
        let (shape, n) = match self.shape {
            TimestepShape::Scalar => (vec![], 1),
            TimestepShape::Batch => (vec![batch], batch),
            TimestepShape::Fixed(1) => (vec![1], 1),
            TimestepShape::Fixed(n) if n == batch => (vec![n], n),
            TimestepShape::Fixed(n) => {
                return Err(format!(
                    "the model's timestep has a fixed length {n}; this call has {batch} rows"
                ));
            }
        };
        let values = match self.dtype {
            TimestepType::Int64 => TimestepValues::Int64(vec![t.round() as i64; n]),
            TimestepType::Int32 => TimestepValues::Int32(vec![t.round() as i32; n]),
            TimestepType::Float32 => TimestepValues::Float32(vec![t as f32; n]),
            TimestepType::Float64 => TimestepValues::Float64(vec![t; n]),
        };
        Ok((shape, values))
    }

    fn tensor(&self, t: f64, batch: usize) -> Result<DynValue, String> {
        let (shape, values) = self.values(t, batch)?;
        let result = match values {
            TimestepValues::Int64(v) => Tensor::from_array((shape, v)).map(Tensor::into_dyn),
            TimestepValues::Int32(v) => Tensor::from_array((shape, v)).map(Tensor::into_dyn),
            TimestepValues::Float32(v) => Tensor::from_array((shape, v)).map(Tensor::into_dyn),
            TimestepValues::Float64(v) => Tensor::from_array((shape, v)).map(Tensor::into_dyn),
        };
        result.map_err(|e| e.to_string())
    }
}

/// The text encoder: `input_ids` (int32 or int64, `[B, L]`) to `last_hidden_state` `[B, L, H]`.
#[derive(Debug)]
pub(crate) struct TextEncoder {
    pub net: Net,
    input: String,
    int64: bool,
    output: String,
    /// The sequence length, when the model fixes it.
    pub seq_len: Option<usize>,
}

impl TextEncoder {
    pub fn new(net: Net) -> Result<Self, DiffusionError> {
        let [input] = net.session.inputs() else {
            return Err(DiffusionError::Inputs {
                model: net.path.clone(),
                reason: "expected one input (input_ids)".into(),
                inputs: net.input_names(),
            });
        };
        let bad = |reason: String| DiffusionError::BadInput {
            model: net.path.clone(),
            input: input.name().to_string(),
            reason,
        };
        let (ty, shape) = tensor_description(input).ok_or_else(|| bad("not a tensor".into()))?;
        let int64 = match ty {
            TensorElementType::Int64 => true,
            TensorElementType::Int32 => false,
            other => {
                return Err(bad(format!(
                    "element type {other:?}; expected int32 or int64"
                )));
            }
        };
        let seq_len = match shape.as_slice() {
            [_, l] => usize::try_from(*l).ok().filter(|&l| l > 0),
            _ => return Err(bad(format!("shape {shape:?}; expected [B, L]"))),
        };
        let outputs: Vec<&str> = net.session.outputs().iter().map(Outlet::name).collect();
        let output = outputs
            .iter()
            .find(|n| **n == "last_hidden_state")
            .or_else(|| outputs.first())
            .map(|n| (*n).to_string())
            .ok_or_else(|| DiffusionError::BadOutput {
                model: net.path.clone(),
                output: "last_hidden_state".into(),
                reason: "the model has no outputs".into(),
            })?;
        Ok(Self {
            input: input.name().to_string(),
            int64,
            output,
            seq_len,
            net,
        })
    }

    /// Hidden states for rows of token ids (each the same length).
    pub fn encode(&mut self, rows: &[Vec<i64>]) -> Result<Array, DiffusionError> {
        let len = rows.first().map_or(0, Vec::len);
        let shape = vec![rows.len(), len];
        let flat: Vec<i64> = rows.iter().flatten().copied().collect();
        let bad = |e: ort::Error| DiffusionError::BadInput {
            model: self.net.path.clone(),
            input: self.input.clone(),
            reason: e.to_string(),
        };
        let value = if self.int64 {
            Tensor::from_array((shape, flat)).map_err(bad)?.into_dyn()
        } else {
            let flat: Vec<i32> = flat.iter().map(|&i| i as i32).collect();
            Tensor::from_array((shape, flat)).map_err(bad)?.into_dyn()
        };
        let input = self.input.clone();
        let output = self.output.clone();
        let hidden = self.net.run(
            vec![(Cow::Owned(input), SessionInputValue::from(value))],
            &output,
        )?;
        if hidden.shape.len() != 3 || hidden.shape[0] != rows.len() || hidden.shape[1] != len {
            return Err(DiffusionError::BadOutput {
                model: self.net.path.clone(),
                output,
                reason: format!(
                    "shape {:?}; expected [{}, {len}, H]",
                    hidden.shape,
                    rows.len()
                ),
            });
        }
        Ok(hidden)
    }
}

/// The inpainting `UNet`: `sample` `[B, 9, h, w]`, a timestep, `encoder_hidden_states`
/// `[B, L, H]`, to the prediction `[B, 4, h, w]`.
#[derive(Debug)]
pub(crate) struct Unet {
    pub net: Net,
    sample: String,
    timestep_name: String,
    pub timestep: TimestepInput,
    hidden: String,
    /// The cross-attention width, when fixed.
    pub hidden_size: Option<usize>,
    output: String,
}

/// Latent channels of the SD VAE; the inpainting `UNet` takes 2 x 4 + 1.
pub(crate) const LATENT_CHANNELS: usize = 4;
const UNET_CHANNELS: i64 = 2 * LATENT_CHANNELS as i64 + 1;

impl Unet {
    pub fn new(net: Net) -> Result<Self, DiffusionError> {
        let inputs = net.session.inputs();
        let names = net.input_names();
        let described = |outlet: &Outlet| {
            tensor_description(outlet).ok_or_else(|| DiffusionError::BadInput {
                model: net.path.clone(),
                input: outlet.name().to_string(),
                reason: "not a tensor".into(),
            })
        };
        let (mut sample, mut timestep, mut hidden) = (None, None, None);
        for outlet in inputs {
            let (ty, shape) = described(outlet)?;
            let slot = match shape.len() {
                4 => &mut sample,
                3 => &mut hidden,
                0 | 1 => &mut timestep,
                _ => {
                    return Err(DiffusionError::Inputs {
                        model: net.path.clone(),
                        reason: format!(
                            "input `{}` of shape {shape:?} is none of sample [B,9,h,w], timestep [B] or [], encoder_hidden_states [B,L,H] (SDXL-style added conditions are not supported)",
                            outlet.name()
                        ),
                        inputs: names.clone(),
                    });
                }
            };
            if slot.is_some() {
                return Err(DiffusionError::Inputs {
                    model: net.path.clone(),
                    reason: format!(
                        "input `{}` (shape {shape:?}) is a second candidate for the same role; extra conditioning inputs (timestep_cond, added_cond_kwargs) are not supported",
                        outlet.name()
                    ),
                    inputs: names.clone(),
                });
            }
            *slot = Some((outlet.name().to_string(), ty, shape));
        }
        let missing = |what: &str| DiffusionError::Inputs {
            model: net.path.clone(),
            reason: format!("no {what} input"),
            inputs: names.clone(),
        };
        let (sample, sample_ty, sample_shape) =
            sample.ok_or_else(|| missing("sample [B,9,h,w]"))?;
        let float_only = |name: &str, ty: TensorElementType| {
            if ty == TensorElementType::Float32 {
                Ok(())
            } else {
                Err(DiffusionError::BadInput {
                    model: net.path.clone(),
                    input: name.to_string(),
                    reason: format!("element type {ty:?}; only float32 models are supported"),
                })
            }
        };
        float_only(&sample, sample_ty)?;
        if sample_shape[1] >= 0 && sample_shape[1] != UNET_CHANNELS {
            return Err(DiffusionError::UnetChannels {
                model: net.path.clone(),
                input: sample,
                channels: sample_shape[1],
            });
        }
        if sample_shape[1] < 0 {
            tracing::warn!(model = %net.path.display(), "UNet channel count is dynamic; assuming 9");
        }
        let (hidden, hidden_ty, hidden_shape) =
            hidden.ok_or_else(|| missing("encoder_hidden_states [B,L,H]"))?;
        float_only(&hidden, hidden_ty)?;
        let (timestep_name, timestep_ty, timestep_shape) =
            timestep.ok_or_else(|| missing("timestep ([B] or scalar)"))?;
        let timestep =
            TimestepInput::from_description(timestep_ty, &timestep_shape).map_err(|reason| {
                DiffusionError::BadInput {
                    model: net.path.clone(),
                    input: timestep_name.clone(),
                    reason,
                }
            })?;
        let outputs: Vec<&str> = net.session.outputs().iter().map(Outlet::name).collect();
        let output = outputs
            .iter()
            .find(|n| **n == "out_sample")
            .or_else(|| outputs.first())
            .map(|n| (*n).to_string())
            .ok_or_else(|| DiffusionError::BadOutput {
                model: net.path.clone(),
                output: "out_sample".into(),
                reason: "the model has no outputs".into(),
            })?;
        Ok(Self {
            sample,
            timestep_name,
            timestep,
            hidden,
            hidden_size: usize::try_from(hidden_shape[2]).ok().filter(|&h| h > 0),
            output,
            net,
        })
    }

    /// The prediction for a batch of 9-channel inputs at one timestep.
    pub fn predict(
        &mut self,
        sample: &Array,
        t: f64,
        hidden: &Array,
    ) -> Result<Array, DiffusionError> {
        let batch = sample.shape[0];
        let timestep =
            self.timestep
                .tensor(t, batch)
                .map_err(|reason| DiffusionError::BadInput {
                    model: self.net.path.clone(),
                    input: self.timestep_name.clone(),
                    reason,
                })?;
        let inputs = vec![
            (
                Cow::Borrowed(self.sample.as_str()),
                f32_input(&self.net, &self.sample, &sample.shape, &sample.data)?,
            ),
            (
                Cow::Borrowed(self.timestep_name.as_str()),
                SessionInputValue::from(timestep),
            ),
            (
                Cow::Borrowed(self.hidden.as_str()),
                f32_input(&self.net, &self.hidden, &hidden.shape, &hidden.data)?,
            ),
        ];
        let output = self.output.clone();
        let path = self.net.path.clone();
        let prediction = self.net.run(inputs, &output)?;
        let expected = [batch, LATENT_CHANNELS, sample.shape[2], sample.shape[3]];
        if prediction.shape != expected {
            return Err(DiffusionError::BadOutput {
                model: path,
                output,
                reason: format!("shape {:?}; expected {expected:?}", prediction.shape),
            });
        }
        Ok(prediction)
    }
}

/// What the VAE encoder returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LatentOutput {
    /// Latents directly (`latent_sample`: the distribution's mean or a sample, as exported).
    Sample,
    /// `concat(mean, logvar)` over channels (`latent_parameters`); this crate takes the mean, as
    /// diffusers' `retrieve_latents(sample_mode="argmax")` does: deterministic, and the SD VAE's
    /// posterior standard deviation is small next to the latents' spread.
    ParametersMean,
}

/// The VAE encoder, `[B, 3, H, W]` in [-1, 1] to latents, with its downsampling factor found by a
/// probe run.
#[derive(Debug)]
pub(crate) struct VaeEncoder {
    pub net: Net,
    input: String,
    output: String,
    pub layout: LatentOutput,
    /// Pixels per latent along each axis (8 for Stable Diffusion's VAE).
    pub scale_factor: usize,
}

impl VaeEncoder {
    pub fn new(mut net: Net) -> Result<Self, DiffusionError> {
        let [input] = net.session.inputs() else {
            return Err(DiffusionError::Inputs {
                model: net.path.clone(),
                reason: "expected one input (sample [B,3,H,W])".into(),
                inputs: net.input_names(),
            });
        };
        let input_name = input.name().to_string();
        let bad = |reason: String| DiffusionError::BadInput {
            model: net.path.clone(),
            input: input_name.clone(),
            reason,
        };
        let (ty, shape) = tensor_description(input).ok_or_else(|| bad("not a tensor".into()))?;
        if ty != TensorElementType::Float32 || shape.len() != 4 || !(shape[1] == 3 || shape[1] < 0)
        {
            return Err(bad(format!(
                "{ty:?} {shape:?}; expected float32 [B, 3, H, W]"
            )));
        }
        // The probe size: the model's own if fixed, else 64 px (8 latents for SD's factor 8).
        let side = |d: i64| usize::try_from(d).ok().filter(|&d| d > 0).unwrap_or(64);
        let (ph, pw) = (side(shape[2]), side(shape[3]));
        let outputs: Vec<&str> = net.session.outputs().iter().map(Outlet::name).collect();
        let output = outputs
            .iter()
            .find(|n| **n == "latent_sample" || **n == "latent_parameters")
            .or_else(|| outputs.first())
            .map(|n| (*n).to_string())
            .ok_or_else(|| DiffusionError::BadOutput {
                model: net.path.clone(),
                output: "latent_sample".into(),
                reason: "the model has no outputs".into(),
            })?;
        let zeros = vec![0.0_f32; 3 * ph * pw];
        let probe_shape = [1, 3, ph, pw];
        let probe_input = f32_input(&net, &input_name, &probe_shape, &zeros)?;
        let probe = net.run(
            vec![(Cow::Borrowed(input_name.as_str()), probe_input)],
            &output,
        )?;
        let bad_output = |reason: String| DiffusionError::BadOutput {
            model: net.path.clone(),
            output: output.clone(),
            reason,
        };
        let [1, c, lh, lw] = probe.shape[..] else {
            return Err(bad_output(format!(
                "probe of {probe_shape:?} gave shape {:?}; expected [1, C, h, w]",
                probe.shape
            )));
        };
        let layout = match c {
            LATENT_CHANNELS => LatentOutput::Sample,
            c if c == 2 * LATENT_CHANNELS => LatentOutput::ParametersMean,
            c => {
                return Err(bad_output(format!(
                    "{c} channels; expected {LATENT_CHANNELS} (latent_sample) or {} (latent_parameters = mean, logvar)",
                    2 * LATENT_CHANNELS
                )));
            }
        };
        if lh == 0 || lw == 0 || ph % lh != 0 || pw % lw != 0 || ph / lh != pw / lw {
            return Err(bad_output(format!(
                "probe of {ph}x{pw} px gave {lh}x{lw} latents: no common integer scale factor"
            )));
        }
        let scale_factor = ph / lh;
        Ok(Self {
            input: input_name,
            output,
            layout,
            scale_factor,
            net,
        })
    }

    /// Unscaled latents `[B, 4, H/f, W/f]` of images `[B, 3, H, W]`.
    pub fn encode(&mut self, images: &Array) -> Result<Array, DiffusionError> {
        let input = f32_input(&self.net, &self.input, &images.shape, &images.data)?;
        let name = self.input.clone();
        let output = self.output.clone();
        let out = self.net.run(vec![(Cow::Owned(name), input)], &output)?;
        let [b, c, h, w] = out.shape[..] else {
            return Err(DiffusionError::BadOutput {
                model: self.net.path.clone(),
                output,
                reason: format!("shape {:?}", out.shape),
            });
        };
        match self.layout {
            LatentOutput::Sample if c == LATENT_CHANNELS => Ok(out),
            LatentOutput::ParametersMean if c == 2 * LATENT_CHANNELS => {
                let plane = LATENT_CHANNELS * h * w;
                let data = out
                    .data
                    .chunks_exact(2 * plane)
                    .flat_map(|row| row[..plane].iter().copied())
                    .collect();
                Ok(Array {
                    shape: vec![b, LATENT_CHANNELS, h, w],
                    data,
                })
            }
            _ => Err(DiffusionError::BadOutput {
                model: self.net.path.clone(),
                output,
                reason: format!("{c} channels, unlike the probe run"),
            }),
        }
    }
}

/// The VAE decoder, latents to `[B, 3, H, W]` in [-1, 1].
#[derive(Debug)]
pub(crate) struct VaeDecoder {
    pub net: Net,
    input: String,
    output: String,
}

impl VaeDecoder {
    pub fn new(net: Net) -> Result<Self, DiffusionError> {
        let [input] = net.session.inputs() else {
            return Err(DiffusionError::Inputs {
                model: net.path.clone(),
                reason: "expected one input (latent_sample [B,4,h,w])".into(),
                inputs: net.input_names(),
            });
        };
        let bad = |reason: String| DiffusionError::BadInput {
            model: net.path.clone(),
            input: input.name().to_string(),
            reason,
        };
        let (ty, shape) = tensor_description(input).ok_or_else(|| bad("not a tensor".into()))?;
        if ty != TensorElementType::Float32
            || shape.len() != 4
            || !(shape[1] == LATENT_CHANNELS as i64 || shape[1] < 0)
        {
            return Err(bad(format!(
                "{ty:?} {shape:?}; expected float32 [B, {LATENT_CHANNELS}, h, w]"
            )));
        }
        let outputs: Vec<&str> = net.session.outputs().iter().map(Outlet::name).collect();
        let output = outputs
            .iter()
            .find(|n| **n == "sample")
            .or_else(|| outputs.first())
            .map(|n| (*n).to_string())
            .ok_or_else(|| DiffusionError::BadOutput {
                model: net.path.clone(),
                output: "sample".into(),
                reason: "the model has no outputs".into(),
            })?;
        Ok(Self {
            input: input.name().to_string(),
            output,
            net,
        })
    }

    pub fn decode(&mut self, latents: &Array, scale: usize) -> Result<Array, DiffusionError> {
        let input = f32_input(&self.net, &self.input, &latents.shape, &latents.data)?;
        let name = self.input.clone();
        let output = self.output.clone();
        let out = self.net.run(vec![(Cow::Owned(name), input)], &output)?;
        let expected = [
            latents.shape[0],
            3,
            latents.shape[2] * scale,
            latents.shape[3] * scale,
        ];
        if out.shape != expected {
            return Err(DiffusionError::BadOutput {
                model: self.net.path.clone(),
                output,
                reason: format!("shape {:?}; expected {expected:?}", out.shape),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestep_int64_batch() -> Result<(), String> {
        let spec = TimestepInput::from_description(TensorElementType::Int64, &[-1])?;
        assert_eq!(spec.shape, TimestepShape::Batch);
        assert_eq!(
            spec.values(980.6, 3)?,
            (vec![3], TimestepValues::Int64(vec![981, 981, 981]))
        );
        Ok(())
    }

    #[test]
    fn timestep_scalar_float() -> Result<(), String> {
        let spec = TimestepInput::from_description(TensorElementType::Float32, &[])?;
        assert_eq!(spec.shape, TimestepShape::Scalar);
        assert_eq!(
            spec.values(946.4436, 4)?,
            (vec![], TimestepValues::Float32(vec![946.4436]))
        );
        Ok(())
    }

    #[test]
    fn timestep_fixed_lengths() -> Result<(), String> {
        let one = TimestepInput::from_description(TensorElementType::Int32, &[1])?;
        assert_eq!(
            one.values(1.0, 6)?,
            (vec![1], TimestepValues::Int32(vec![1]))
        );
        let two = TimestepInput::from_description(TensorElementType::Float64, &[2])?;
        assert_eq!(
            two.values(501.0, 2)?,
            (vec![2], TimestepValues::Float64(vec![501.0, 501.0]))
        );
        assert!(two.values(501.0, 4).is_err());
        Ok(())
    }

    #[test]
    fn timestep_rejects_other_types_and_ranks() {
        assert!(TimestepInput::from_description(TensorElementType::Float16, &[-1]).is_err());
        assert!(TimestepInput::from_description(TensorElementType::Int64, &[-1, 1]).is_err());
    }
}
