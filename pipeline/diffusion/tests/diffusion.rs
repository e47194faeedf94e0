//! roadsynth-diffusion on the shared tiny inpainting model (`models/tiny-sd-inpaint`: random
//! weights, real structure), and the schedulers and tokenizer against values diffusers and
//! transformers computed (`tests/reference/make_reference.py`).
//!
//! The model's outputs are noise-like, so these tests check structure and guarantees (shapes,
//! seeds, guidance, batching, both export conventions, the untouched background), not quality.

use std::path::{Path, PathBuf};

use image::{GrayImage, Luma, Rgb, RgbImage};
use roadsynth_diffusion::{
    DiffusionError, InpaintModel, InpaintRequest, InpaintResult, LatentOutput, ModelOptions,
    ObjectRegion, PromptTokenizer, Scheduler, SchedulerConfig, SchedulerKind, TimestepShape,
    TimestepType,
};
use serde_json::Value;

const MODEL: &str = "models/tiny-sd-inpaint";

fn model_dir() -> Option<PathBuf> {
    roadsynth_testkit::shared(MODEL)
}

/// 64 px working size: 32 latents at the tiny VAE's factor 2.
fn options() -> ModelOptions {
    ModelOptions {
        threads: Some(1),
        resolution: 64,
        ..ModelOptions::default()
    }
}

fn load(dir: &Path, options: &ModelOptions) -> InpaintModel {
    InpaintModel::load(dir, options).unwrap_or_else(|e| panic!("loading {}: {e}", dir.display()))
}

/// A frame where every pixel differs from its neighbours, so any change shows.
fn scene() -> RgbImage {
    RgbImage::from_fn(120, 72, |x, y| {
        Rgb([
            (x * 2 + y) as u8,
            (y * 3 + x / 2) as u8,
            ((x * 7 + y * 5) % 251) as u8,
        ])
    })
}

fn request(image: &RgbImage) -> InpaintRequest<'_> {
    InpaintRequest {
        steps: 3,
        seed: 7,
        ..InpaintRequest::new(
            image,
            vec![
                ObjectRegion::from_box([10.0, 20.0, 30.0, 44.0]),
                ObjectRegion::from_box([70.5, 30.2, 95.0, 50.0]),
            ],
            "a red car on the road",
        )
    }
}

fn run(model: &mut InpaintModel, request: &InpaintRequest<'_>) -> InpaintResult {
    model
        .inpaint(request)
        .unwrap_or_else(|e| panic!("inpainting: {e}"))
}

/// Every pixel whose edit mask is 0 equals the input; returns how many differ inside the mask.
fn assert_background_exact(input: &RgbImage, result: &InpaintResult) -> usize {
    assert_eq!(result.image.dimensions(), input.dimensions());
    assert_eq!(result.edit_mask.dimensions(), input.dimensions());
    let mut changed_inside = 0;
    for (x, y, m) in result.edit_mask.enumerate_pixels() {
        let (a, b) = (input.get_pixel(x, y), result.image.get_pixel(x, y));
        if m.0[0] == 0 {
            assert_eq!(a, b, "pixel ({x}, {y}) outside the edit mask changed");
        } else if a != b {
            changed_inside += 1;
        }
    }
    changed_inside
}

#[test]
fn loads_and_reads_the_conventions_from_the_model() {
    let Some(dir) = model_dir() else { return };
    let model = load(&dir, &options());
    assert_eq!(model.vae_scale_factor(), 2, "the tiny VAE downsamples by 2");
    let t = model.timestep_input();
    assert_eq!(
        (t.dtype, t.shape),
        (TimestepType::Int64, TimestepShape::Batch)
    );
    assert_eq!(model.latent_output(), LatentOutput::Sample);
    assert_eq!(model.tokenizer().max_length(), 77);
    // 8 latents of factor 2 = 16 px: 72 is not a multiple.
    let err = InpaintModel::load(
        &dir,
        &ModelOptions {
            resolution: 72,
            ..options()
        },
    )
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(err.contains("multiple of 16"), "{err}");
}

#[test]
fn inpainting_changes_only_the_edit_mask_and_reports_crops() {
    let Some(dir) = model_dir() else { return };
    let mut model = load(&dir, &options());
    let input = scene();
    let req = request(&input);
    let result = run(&mut model, &req);
    let changed = assert_background_exact(&input, &result);
    assert!(
        changed > 400,
        "only {changed} pixels changed inside the objects"
    );
    assert_eq!(result.objects.len(), 2);
    for (object, region) in result.objects.iter().zip(&req.objects) {
        let c = object.crop;
        let [x0, y0, x1, y1] = region.bbox;
        assert!(
            f64::from(c.x) <= x0 && f64::from(c.y) <= y0,
            "{c:?} {region:?}"
        );
        assert!(f64::from(c.x + c.width) >= x1 && f64::from(c.y + c.height) >= y1);
        assert!(c.x + c.width <= input.width() && c.y + c.height <= input.height());
        assert!(object.edited_pixels > 0);
    }
    // Inside each box the mask is 255 (alpha 1); far from both boxes it is 0.
    assert_eq!(result.edit_mask.get_pixel(20, 32).0[0], 255);
    assert_eq!(result.edit_mask.get_pixel(80, 40).0[0], 255);
    assert_eq!(result.edit_mask.get_pixel(50, 5).0[0], 0);
    assert_eq!(result.edit_mask.get_pixel(119, 71).0[0], 0);
    assert_eq!(result.timings.unet_calls, 3);
    assert_eq!(result.timings.unet_rows, 3 * 2 * 2);
    assert_eq!(result.params["seed"], 7);
    assert_eq!(
        result.params["objects"][1]["crop"]["width"],
        result.objects[1].crop.width
    );
}

#[test]
fn a_mask_limits_the_edit_to_its_pixels() {
    let Some(dir) = model_dir() else { return };
    let mut model = load(&dir, &options());
    let input = scene();
    // A 6x6 mask inside a larger box: the edit stays within 2 * feather of the mask.
    let mut mask = GrayImage::new(input.width(), input.height());
    for y in 30..36 {
        for x in 50..56 {
            mask.put_pixel(x, y, Luma([255]));
        }
    }
    let req = InpaintRequest {
        objects: vec![ObjectRegion {
            bbox: [45.0, 25.0, 61.0, 41.0],
            mask: Some(mask),
            prompt: Some("a pedestrian".into()),
        }],
        feather: 2,
        ..request(&input)
    };
    let result = run(&mut model, &req);
    assert_background_exact(&input, &result);
    for (x, y, m) in result.edit_mask.enumerate_pixels() {
        let gap = |v: u32, lo: u32, hi: u32| lo.saturating_sub(v).max(v.saturating_sub(hi));
        let dist = gap(x, 50, 55).max(gap(y, 30, 35));
        if dist == 0 {
            assert_eq!(m.0[0], 255, "({x}, {y}) on the mask");
        } else if dist > 4 {
            assert_eq!(m.0[0], 0, "({x}, {y}) is {dist} px from the mask");
        }
    }
    // A mask of the wrong size is rejected.
    let bad = InpaintRequest {
        objects: vec![ObjectRegion {
            bbox: [45.0, 25.0, 61.0, 41.0],
            mask: Some(GrayImage::new(10, 10)),
            prompt: None,
        }],
        ..request(&input)
    };
    assert!(matches!(
        model.inpaint(&bad),
        Err(DiffusionError::Request(_))
    ));
    let outside = InpaintRequest {
        objects: vec![ObjectRegion::from_box([200.0, 10.0, 220.0, 20.0])],
        ..request(&input)
    };
    assert!(matches!(
        model.inpaint(&outside),
        Err(DiffusionError::Request(_))
    ));
}

#[test]
fn same_seed_same_bytes_different_seed_different() {
    let Some(dir) = model_dir() else { return };
    let mut model = load(&dir, &options());
    let input = scene();
    let a = run(&mut model, &request(&input));
    let b = run(&mut model, &request(&input));
    assert_eq!(a.image.as_raw(), b.image.as_raw());
    assert_eq!(a.edit_mask.as_raw(), b.edit_mask.as_raw());
    let other = InpaintRequest {
        seed: 8,
        ..request(&input)
    };
    let c = run(&mut model, &other);
    assert_ne!(a.image.as_raw(), c.image.as_raw());
    // A fresh load (new sessions) reproduces the bytes too.
    let mut again = load(&dir, &options());
    assert_eq!(
        run(&mut again, &request(&input)).image.as_raw(),
        a.image.as_raw()
    );
}

#[test]
fn guidance_scale_one_skips_the_unconditional_pass() {
    let Some(dir) = model_dir() else { return };
    let mut model = load(&dir, &options());
    let input = scene();
    let with = |guidance_scale: f32, negative: &str| InpaintRequest {
        guidance_scale,
        negative_prompt: negative.into(),
        ..request(&input)
    };
    let guided = run(&mut model, &with(7.5, ""));
    let plain = run(&mut model, &with(1.0, ""));
    assert_ne!(guided.image.as_raw(), plain.image.as_raw());
    assert_eq!(guided.timings.unet_rows, 2 * plain.timings.unet_rows);
    assert_eq!(plain.timings.unet_rows, 3 * 2);
    // Without guidance the negative prompt is never encoded; with it, it matters.
    let plain_negative = run(&mut model, &with(1.0, "blurry, cartoon"));
    assert_eq!(plain.image.as_raw(), plain_negative.image.as_raw());
    let guided_negative = run(&mut model, &with(7.5, "blurry, cartoon"));
    assert_ne!(guided.image.as_raw(), guided_negative.image.as_raw());
    assert_background_exact(&input, &guided_negative);
}

#[test]
fn batching_matches_one_object_per_call() {
    let Some(dir) = model_dir() else { return };
    let input = scene();
    let req = request(&input);
    let mut batched = load(&dir, &options());
    let mut single = load(
        &dir,
        &ModelOptions {
            max_batch: 1,
            ..options()
        },
    );
    let a = run(&mut batched, &req);
    let b = run(&mut single, &req);
    assert_eq!(a.timings.unet_calls, 3);
    assert_eq!(b.timings.unet_calls, 6);
    assert_eq!(a.edit_mask.as_raw(), b.edit_mask.as_raw());
    // Same noise per object (its own stream); ONNX Runtime computes each batch row as it computes
    // a batch of one, so the bytes agree.
    assert_eq!(a.image.as_raw(), b.image.as_raw());
}

#[test]
fn every_scheduler_runs_through_the_model() {
    let Some(dir) = model_dir() else { return };
    let mut model = load(&dir, &options());
    let input = scene();
    let mut images = Vec::new();
    for scheduler in [
        SchedulerKind::Ddim { eta: 0.0 },
        SchedulerKind::Ddim { eta: 1.0 },
        SchedulerKind::Lcm,
        SchedulerKind::EulerDiscrete,
    ] {
        let req = InpaintRequest {
            scheduler,
            steps: 2,
            ..request(&input)
        };
        let result = run(&mut model, &req);
        assert!(
            assert_background_exact(&input, &result) > 0,
            "{scheduler:?}"
        );
        assert_eq!(result.timings.unet_calls, 2);
        images.push(result.image.into_raw());
    }
    for i in 0..images.len() {
        for j in i + 1..images.len() {
            assert_ne!(images[i], images[j], "schedulers {i} and {j} agree");
        }
    }
}

#[test]
fn masked_img2img_runs_the_last_steps_from_the_encoded_crop() {
    let Some(dir) = model_dir() else { return };
    let mut model = load(&dir, &options());
    let input = scene();
    let full = run(
        &mut model,
        &InpaintRequest {
            steps: 4,
            ..request(&input)
        },
    );
    let edit = InpaintRequest {
        steps: 4,
        strength: 0.5,
        ..request(&input)
    };
    let result = run(&mut model, &edit);
    assert_eq!(result.timings.unet_calls, 2);
    assert_eq!(
        result.params["timesteps_run"],
        serde_json::json!([251.0, 1.0])
    );
    assert!(assert_background_exact(&input, &result) > 0);
    assert_ne!(result.image.as_raw(), full.image.as_raw());
    let tiny = InpaintRequest {
        strength: 0.1,
        ..edit
    };
    assert!(
        model.inpaint(&tiny).is_err(),
        "strength 0.1 of 4 steps runs no step"
    );
}

#[test]
fn no_objects_returns_the_frame_unchanged() {
    let Some(dir) = model_dir() else { return };
    let mut model = load(&dir, &options());
    let input = scene();
    let result = run(
        &mut model,
        &InpaintRequest {
            objects: Vec::new(),
            ..request(&input)
        },
    );
    assert_eq!(result.image.as_raw(), input.as_raw());
    assert!(result.edit_mask.as_raw().iter().all(|&m| m == 0));
    assert_eq!(result.timings.unet_calls, 0);
}

/// The scalar-float timestep and `latent_parameters` conventions, by rewriting the tiny model
/// (`tests/convert_conventions.py`): the same request gives the same bytes.
#[test]
fn both_export_conventions_give_the_same_result() {
    let Some(dir) = model_dir() else { return };
    if !roadsynth_testkit::python_module("onnx") {
        return;
    }
    let converted = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let script = roadsynth_testkit::package_dir().join("tests/convert_conventions.py");
    let status = std::process::Command::new("python3")
        .arg(&script)
        .arg(&dir)
        .arg(converted.path())
        .status()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    assert!(status.success(), "{} failed", script.display());
    let mut original = load(&dir, &options());
    let mut other = load(converted.path(), &options());
    let t = other.timestep_input();
    assert_eq!(
        (t.dtype, t.shape),
        (TimestepType::Float32, TimestepShape::Scalar)
    );
    assert_eq!(other.latent_output(), LatentOutput::ParametersMean);
    let input = scene();
    for scheduler in [SchedulerKind::default(), SchedulerKind::Lcm] {
        let req = InpaintRequest {
            scheduler,
            strength: 0.7,
            ..request(&input)
        };
        let a = run(&mut original, &req);
        let b = run(&mut other, &req);
        assert_eq!(a.image.as_raw(), b.image.as_raw(), "{scheduler:?}");
    }
}

#[test]
fn a_text_to_image_unet_is_rejected_by_channel_count() {
    let Some(dir) = model_dir() else { return };
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    for name in [
        "text_encoder",
        "tokenizer",
        "vae_encoder",
        "vae_decoder",
        "scheduler_config.json",
    ] {
        std::os::unix::fs::symlink(dir.join(name), tmp.path().join(name))
            .unwrap_or_else(|e| panic!("link: {e}"));
    }
    // The VAE decoder's input is [b, 4, h, w]: a 4-channel "UNet".
    std::fs::create_dir(tmp.path().join("unet")).unwrap_or_else(|e| panic!("mkdir: {e}"));
    std::os::unix::fs::symlink(
        dir.join("vae_decoder/model.onnx"),
        tmp.path().join("unet/model.onnx"),
    )
    .unwrap_or_else(|e| panic!("link: {e}"));
    match InpaintModel::load(tmp.path(), &options()) {
        Err(e @ DiffusionError::UnetChannels { channels: 4, .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("unet/model.onnx") && text.contains("latent_sample"),
                "{text}"
            );
            assert!(text.contains("takes 9"), "{text}");
        }
        other => panic!("expected a channel error, got {other:?}"),
    }
    // A missing network names its file.
    std::fs::remove_file(tmp.path().join("vae_decoder")).unwrap_or_else(|e| panic!("rm: {e}"));
    std::fs::remove_file(tmp.path().join("unet/model.onnx")).unwrap_or_else(|e| panic!("rm: {e}"));
    std::os::unix::fs::symlink(
        dir.join("unet/model.onnx"),
        tmp.path().join("unet/model.onnx"),
    )
    .unwrap_or_else(|e| panic!("link: {e}"));
    match InpaintModel::load(tmp.path(), &options()) {
        Err(DiffusionError::MissingFile { path }) => {
            assert!(
                path.ends_with("vae_decoder/model.onnx"),
                "{}",
                path.display()
            );
        }
        other => panic!("expected a missing-file error, got {other:?}"),
    }
}

fn reference(name: &str) -> Value {
    let path = roadsynth_testkit::package_dir()
        .join("tests/reference")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_f64().unwrap_or_else(|| panic!("not a number: {x}")) as f32)
        .collect()
}

/// `max |ours - theirs| <= 1e-6 * scale`, where `scale` is the largest magnitude among the
/// reference output and the step's `inputs`: relative to the size of the numbers the step works
/// on, because diffusers computes in float32 and its own rounding is relative to those (an Euler
/// step from `sigma = 157` to 0 subtracts two values near 157 to leave one near 2; float32 leaves
/// an error of a few 1e-6 of the result there, and our f64 arithmetic is the more exact one).
fn assert_close(ours: &[f32], theirs: &[f32], inputs: &[&[f32]], what: &str) {
    assert_eq!(ours.len(), theirs.len(), "{what}: lengths");
    let scale = theirs
        .iter()
        .chain(inputs.iter().flat_map(|v| v.iter()))
        .fold(0.0_f64, |m, &v| m.max(f64::from(v).abs()));
    let worst = ours
        .iter()
        .zip(theirs)
        .map(|(&a, &b)| (f64::from(a) - f64::from(b)).abs())
        .fold(0.0, f64::max);
    assert!(
        worst <= 1e-6 * scale.max(f64::MIN_POSITIVE),
        "{what}: max difference {worst:e} at scale {scale:e}\n ours   {ours:?}\n theirs {theirs:?}"
    );
}

#[test]
fn schedulers_match_diffusers() {
    let reference = reference("schedulers.json");
    let mut checked_steps = 0;
    for (name, alphas) in reference["alphas_cumprod"]
        .as_object()
        .unwrap_or_else(|| panic!("alphas_cumprod"))
    {
        let case = reference["cases"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["config_name"] == name.as_str()))
            .unwrap_or_else(|| panic!("no case for {name}"));
        let config: SchedulerConfig = serde_json::from_value(case["config"].clone())
            .unwrap_or_else(|e| panic!("config {name}: {e}"));
        let s = Scheduler::new(SchedulerKind::default(), &config, 10)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        // The noise table is built as PyTorch builds it: equal bit for bit.
        assert_eq!(
            s.alphas_cumprod(),
            floats(alphas).as_slice(),
            "{name} alphas_cumprod"
        );
    }
    for case in reference["cases"]
        .as_array()
        .unwrap_or_else(|| panic!("cases"))
    {
        let config: SchedulerConfig = serde_json::from_value(case["config"].clone())
            .unwrap_or_else(|e| panic!("config: {e}"));
        let kind = match case["kind"].as_str() {
            Some("ddim" | "ddim_eta") => SchedulerKind::Ddim {
                eta: case["eta"].as_f64().unwrap_or(0.0) as f32,
            },
            Some("lcm") => SchedulerKind::Lcm,
            Some("euler") => SchedulerKind::EulerDiscrete,
            other => panic!("kind {other:?}"),
        };
        let steps = case["steps"].as_u64().unwrap_or(0) as usize;
        let what = format!("{} {} {steps} steps", case["config_name"], case["kind"]);
        let s = Scheduler::new(kind, &config, steps).unwrap_or_else(|e| panic!("{what}: {e}"));
        let timesteps: Vec<f64> = floats(&case["timesteps"])
            .iter()
            .map(|&t| f64::from(t))
            .collect();
        assert_eq!(s.timesteps(), timesteps.as_slice(), "{what}: timesteps");
        if kind == SchedulerKind::EulerDiscrete {
            assert_close(
                s.sigmas(),
                &floats(&case["sigmas"]),
                &[],
                &format!("{what}: sigmas"),
            );
        }
        let sigma = case["init_noise_sigma"].as_f64().unwrap_or(f64::NAN);
        assert!(
            (s.init_noise_sigma() - sigma).abs() <= 1e-6 * sigma,
            "{what}: init_noise_sigma {} vs {sigma}",
            s.init_noise_sigma()
        );
        for step in case["steps_detail"].as_array().into_iter().flatten() {
            let i = step["index"].as_u64().unwrap_or(0) as usize;
            let what = format!("{what}, step {i}");
            let sample = floats(&step["sample"]);
            let mut scaled = sample.clone();
            s.scale_model_input(&mut scaled, i);
            let scaled_ref = floats(&step["scaled_input"]);
            assert_close(
                &scaled,
                &scaled_ref,
                &[&sample],
                &format!("{what}: scaled input"),
            );
            let noise = (!step["noise"].is_null()).then(|| floats(&step["noise"]));
            assert_eq!(s.needs_noise(i), noise.is_some(), "{what}: needs noise");
            let model_output = floats(&step["model_output"]);
            let prev = s
                .step(i, &model_output, &sample, noise.as_deref())
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            let inputs: [&[f32]; 3] = [&sample, &model_output, noise.as_deref().unwrap_or(&[])];
            let prev_ref = floats(&step["prev_sample"]);
            assert_close(&prev, &prev_ref, &inputs, &format!("{what}: prev_sample"));
            let (original, add) = (floats(&step["original"]), floats(&step["add_noise_noise"]));
            let noised = s.add_noise(&original, &add, i);
            let noised_ref = floats(&step["noised"]);
            assert_close(
                &noised,
                &noised_ref,
                &[&original, &add],
                &format!("{what}: add_noise"),
            );
            checked_steps += 1;
        }
    }
    assert!(checked_steps > 100, "only {checked_steps} steps checked");
}

#[test]
fn tokenizers_match_transformers() {
    let Some(dir) = model_dir() else { return };
    let reference = reference("tokenizer.json");
    let prompts: Vec<&str> = reference["prompts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let ids = |key: &str| -> Vec<Vec<i64>> {
        reference[key]
            .as_array()
            .into_iter()
            .flatten()
            .map(|row| {
                row.as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_i64)
                    .collect()
            })
            .collect()
    };
    let tokenizer_dir = dir.join("tokenizer");
    let json = PromptTokenizer::load(&tokenizer_dir, 77).unwrap_or_else(|e| panic!("{e}"));
    for (prompt, expected) in prompts.iter().zip(ids("tokenizer_json_ids")) {
        assert_eq!(
            json.encode(prompt).unwrap_or_else(|e| panic!("{e}")),
            expected,
            "{prompt:?}"
        );
    }
    // The legacy layout, written from the same vocabulary and merges.
    let spec: Value = serde_json::from_str(
        &std::fs::read_to_string(tokenizer_dir.join("tokenizer.json"))
            .unwrap_or_else(|e| panic!("{e}")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let legacy = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        legacy.path().join("vocab.json"),
        spec["model"]["vocab"].to_string(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut merges = String::from("#version: 0.2\n");
    for m in spec["model"]["merges"].as_array().into_iter().flatten() {
        let pair: Vec<&str> = m
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        merges.push_str(&pair.join(" "));
        merges.push('\n');
    }
    std::fs::write(legacy.path().join("merges.txt"), merges).unwrap_or_else(|e| panic!("{e}"));
    let clip = PromptTokenizer::load(legacy.path(), 77).unwrap_or_else(|e| panic!("{e}"));
    assert!(clip.source().ends_with("vocab.json"));
    for (prompt, expected) in prompts.iter().zip(ids("legacy_ids")) {
        assert_eq!(
            clip.encode(prompt).unwrap_or_else(|e| panic!("{e}")),
            expected,
            "{prompt:?}"
        );
    }
}
