//! Fog + rain throughput on one core, depth-aware, on the shared `CamVid` and KITTI frames.
//!
//! `cargo run -p roadsynth-weather --example weather_bench [-- --frames 50 --min-seconds 3 --out DIR]`
//!
//! Per frame it times what the pipeline would do: build the depth map (`CamVid`: assumed camera,
//! road and pavement as ground, vertical structures, sky from the semantic labels, boxes at their
//! foot points; KITTI: calibrated ground plane and boxes at their 3D label depth), fog (V = 150 m),
//! then rain (25 mm/h, with the wet road where a drivable mask exists) on the fogged frame. Image
//! decoding is not timed (albumentations' side gets decoded frames too). `--out` writes examples.
//! Frames per second are given by wall-clock time and by this thread's CPU time (the fairer
//! per-core number on a busy machine; `bench/albumentations_bench.py` reports the same pair).

use std::path::{Path, PathBuf};
use std::time::Instant;

use image::RgbImage;
use roadsynth_formats::{LoadOptions, Scan, coco, kitti, load_all};
use roadsynth_types::{BBox, FrameRecord};
use roadsynth_weather::{DepthMap, Fog, Intrinsics, PixelMask, Rain, WeatherContext};

/// One decoded frame with what the effects need.
struct Frame {
    name: String,
    image: RgbImage,
    boxes: Vec<BBox>,
    /// Boxes with a depth from 3D labels (KITTI).
    boxes_3d: Vec<(BBox, f32)>,
    labels: Option<Vec<u8>>,
    intrinsics: Option<Intrinsics>,
    camera_k: Option<(f64, f64)>,
}

const CAMVID_ROAD: u8 = 3;
const CAMVID_PAVEMENT: u8 = 4;
const CAMVID_SKY: u8 = 0;
const KITTI_CAMERA_HEIGHT_M: f64 = 1.65;

struct Inputs {
    depth: DepthMap,
    drivable: Option<PixelMask>,
}

fn build_inputs(f: &Frame) -> Result<Inputs, Box<dyn std::error::Error>> {
    let (w, h) = f.image.dimensions();
    let mut drivable = None;
    let mut depth = if let Some((v0, k)) = f.camera_k {
        DepthMap::from_ground_plane(w, h, v0, k)?
    } else {
        DepthMap::horizon_only(w, h, None)?
    };
    if let Some(labels) = &f.labels {
        let road = PixelMask::from_labels(w, h, labels, &[CAMVID_ROAD])?;
        let ground = PixelMask::from_labels(w, h, labels, &[CAMVID_ROAD, CAMVID_PAVEMENT])?;
        let sky = PixelMask::from_labels(w, h, labels, &[CAMVID_SKY])?;
        depth.with_vertical_structures(ground)?.with_sky(sky)?;
        drivable = Some(road);
    }
    depth.with_boxes(&f.boxes_3d);
    depth.with_boxes_on_ground(&f.boxes);
    Ok(Inputs { depth, drivable })
}

fn load(scan: Scan, keep: usize) -> Vec<FrameRecord> {
    let mut records = Vec::new();
    let _: Result<(), ()> = load_all(scan.frames, &LoadOptions::default(), 8, |r| {
        if let Ok(rec) = r {
            records.push(rec);
        }
        Ok(())
    });
    records.sort_by(|a, b| a.frame.image_name.cmp(&b.frame.image_name));
    records.truncate(keep);
    records
}

fn decode(rec: &FrameRecord) -> Option<RgbImage> {
    image::load_from_memory(rec.image.as_deref()?)
        .ok()
        .map(|i| i.to_rgb8())
}

fn camvid(root: &Path, n: usize) -> Vec<Frame> {
    let Ok(scan) = coco::scan(&root.join("annotations_val.json"), Some(root), "val") else {
        return Vec::new();
    };
    load(scan, n)
        .iter()
        .filter_map(|rec| {
            let image = decode(rec)?;
            let labels = rec
                .semantic_label
                .as_deref()
                .and_then(|b| image::load_from_memory(b).ok())
                .map(|l| l.to_luma8().into_raw());
            Some(Frame {
                name: rec.frame.image_name.clone(),
                image,
                boxes: rec.annotations.iter().map(|a| a.bbox).collect(),
                boxes_3d: Vec::new(),
                labels,
                intrinsics: None,
                camera_k: None,
            })
        })
        .collect()
}

fn kitti_frames(root: &Path, n: usize) -> Vec<Frame> {
    let Ok(scan) = kitti::scan(root, "train") else {
        return Vec::new();
    };
    load(scan, n)
        .iter()
        .filter_map(|rec| {
            let image = decode(rec)?;
            let cam = rec.frame.camera?;
            let objects: Vec<_> = rec.annotations.iter().filter(|a| !a.ignore).collect();
            Some(Frame {
                name: rec.frame.image_name.clone(),
                image,
                boxes: objects.iter().map(|a| a.bbox).collect(),
                boxes_3d: objects
                    .iter()
                    .filter_map(|a| Some((a.bbox, a.kitti?.location_xyz[2] as f32)))
                    .collect(),
                labels: None,
                intrinsics: Some(Intrinsics::from(&cam)),
                camera_k: Some((cam.cy, cam.fy * KITTI_CAMERA_HEIGHT_M)),
            })
        })
        .collect()
}

struct Timing {
    frames: usize,
    depth_s: f64,
    fog_s: f64,
    rain_s: f64,
    /// CPU time of this thread over the whole run (seconds), which contention from other
    /// processes on the machine does not inflate the way it does wall-clock time.
    cpu_s: f64,
}

/// CPU time this thread has run, in seconds (`/proc/thread-self/schedstat`, nanoseconds).
fn thread_cpu_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: f64 = stat.split_whitespace().next()?.parse().ok()?;
    Some(ns / 1e9)
}

fn run(
    frames: &[Frame],
    min_seconds: f64,
    out: Option<&Path>,
) -> Result<Timing, Box<dyn std::error::Error>> {
    let fog = Fog::with_visibility(150.0);
    let rain = Rain::with_rate(25.0);
    let mut t = Timing {
        frames: 0,
        depth_s: 0.0,
        fog_s: 0.0,
        rain_s: 0.0,
        cpu_s: 0.0,
    };
    let cpu_start = thread_cpu_s();
    let started = Instant::now();
    let mut round = 0u64;
    while t.frames == 0 || started.elapsed().as_secs_f64() < min_seconds {
        for (i, f) in frames.iter().enumerate() {
            let seed = round * 1000 + i as u64;
            let t0 = Instant::now();
            let inputs = build_inputs(f)?;
            let mut ctx = WeatherContext::new(&inputs.depth).with_boxes(&f.boxes);
            if let Some(k) = f.intrinsics {
                ctx = ctx.with_intrinsics(k);
            }
            if let Some(d) = &inputs.drivable {
                ctx = ctx.with_drivable(d);
            }
            let t1 = Instant::now();
            let fogged = fog.apply(&f.image, &ctx, seed)?;
            let t2 = Instant::now();
            let rained = rain.apply(&fogged.image, &ctx, seed)?;
            let t3 = Instant::now();
            t.depth_s += (t1 - t0).as_secs_f64();
            t.fog_s += (t2 - t1).as_secs_f64();
            t.rain_s += (t3 - t2).as_secs_f64();
            t.frames += 1;
            if round == 0
                && i < 3
                && let Some(dir) = out
            {
                let stem = f.name.replace(['/', '.'], "_");
                fogged.image.save(dir.join(format!("{stem}_fog.png")))?;
                rained
                    .image
                    .save(dir.join(format!("{stem}_fog_rain.png")))?;
                rain.apply(&f.image, &ctx, seed)?
                    .image
                    .save(dir.join(format!("{stem}_rain.png")))?;
            }
        }
        round += 1;
    }
    t.cpu_s = match (cpu_start, thread_cpu_s()) {
        (Some(a), Some(b)) => b - a,
        _ => f64::NAN,
    };
    Ok(t)
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = arg(&args, "--frames")
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let min_seconds: f64 = arg(&args, "--min-seconds")
        .and_then(|v| v.parse().ok())
        .unwrap_or(3.0);
    let out = arg(&args, "--out").map(PathBuf::from);
    if let Some(dir) = &out {
        std::fs::create_dir_all(dir)?;
    }
    let Some(shared) = roadsynth_testkit::shared_root() else {
        eprintln!("shared data not found (set ROADSYNTH_SHARED or place it at ../shared)");
        std::process::exit(2);
    };
    println!("roadsynth-weather fog (V=150 m) + rain (25 mm/h), depth-aware, one thread");
    println!(
        "dataset  frames  size        depth ms  fog ms  rain ms  total ms  fps (wall)  fps (cpu)"
    );
    for (name, frames) in [
        ("camvid", camvid(&shared.join("datasets/camvid"), n)),
        (
            "kitti",
            kitti_frames(&shared.join("datasets/kitti-object"), n),
        ),
    ] {
        let Some(first) = frames.first() else {
            println!("{name:<8} (not found)");
            continue;
        };
        let size = format!("{}x{}", first.image.width(), first.image.height());
        let t = run(&frames, min_seconds, out.as_deref())?;
        let per = |s: f64| 1000.0 * s / t.frames as f64;
        let total = t.depth_s + t.fog_s + t.rain_s;
        println!(
            "{name:<8} {:>6}  {size:<10} {:>8.2}  {:>6.2}  {:>7.2}  {:>8.2}  {:>10.1}  {:>9.1}",
            frames.len(),
            per(t.depth_s),
            per(t.fog_s),
            per(t.rain_s),
            per(total),
            t.frames as f64 / total,
            t.frames as f64 / t.cpu_s,
        );
    }
    Ok(())
}
