//! Per-step `UNet` latency of one inserted object at several working sizes: the object-centric
//! crop (the model's working size for crops) against a full 512 x 512 frame.
//!
//! ```text
//! cargo run -p roadsynth-diffusion --example diffusion_bench -- [MODEL_DIR] [--sizes 64,512] [--steps 3] [--threads N]
//! ```
//!
//! Each size loads the model at that working size, runs one warm-up request, then one request of
//! `--steps` steps without guidance (one `UNet` row per step) and one with guidance (two rows), and
//! prints the mean `UNet` time per call. FLOPs per call come from `bench/unet_flops.py`.

use std::path::PathBuf;
use std::time::Duration;

use image::{Rgb, RgbImage};
use roadsynth_diffusion::{InpaintModel, InpaintRequest, ModelOptions, ObjectRegion};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut model = None;
    let mut sizes = vec![64_u32, 512];
    let mut steps = 3_usize;
    let mut threads = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--sizes" => {
                sizes = value()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?;
            }
            "--steps" => steps = value()?.parse()?,
            "--threads" => threads = Some(value()?.parse()?),
            _ if !arg.starts_with("--") => model = Some(PathBuf::from(arg)),
            _ => return Err(format!("unknown option {arg}").into()),
        }
    }
    let model_dir = model.unwrap_or_else(|| {
        std::env::var_os("ROADSYNTH_SHARED")
            .map_or_else(
                || roadsynth_testkit::repo_root().join("../shared"),
                PathBuf::from,
            )
            .join("models/tiny-sd-inpaint")
    });
    // A 512 x 512 frame with one object; the crop around it is resized to each working size.
    let frame = RgbImage::from_fn(512, 512, |x, y| {
        Rgb([(x / 2) as u8, (y / 2) as u8, ((x + y) / 4) as u8])
    });
    let object = ObjectRegion::from_box([200.0, 260.0, 260.0, 300.0]);
    println!(
        "model {}, {} threads, {steps} steps",
        model_dir.display(),
        threads.map_or_else(|| "default".to_string(), |t: usize| t.to_string())
    );
    println!(
        "{:>8} {:>7} {:>16} {:>16}",
        "size px", "latent", "ms/call 1 row", "ms/call 2 rows"
    );
    let mut first = None;
    for size in sizes {
        let options = ModelOptions {
            threads,
            resolution: size,
            max_batch: 1,
            ..ModelOptions::default()
        };
        let mut model = InpaintModel::load(&model_dir, &options)?;
        let request = |guidance_scale: f32, steps: usize| InpaintRequest {
            steps,
            guidance_scale,
            ..InpaintRequest::new(&frame, vec![object.clone()], "a car")
        };
        model.inpaint(&request(1.0, 1))?; // warm-up: allocations, kernel selection
        let per_call = |t: Duration, calls: usize| t.as_secs_f64() * 1e3 / calls as f64;
        let plain = model.inpaint(&request(1.0, steps))?.timings;
        let guided = model.inpaint(&request(7.5, steps))?.timings;
        let plain_ms = per_call(plain.unet, plain.unet_calls);
        let guided_ms = per_call(guided.unet, guided.unet_calls);
        let base = *first.get_or_insert(plain_ms);
        println!(
            "{size:>8} {:>7} {plain_ms:>16.2} {guided_ms:>16.2}   ({:.1} x the first size)",
            size / model.vae_scale_factor(),
            plain_ms / base
        );
    }
    Ok(())
}
