//! Weather effects: the physics they claim (Koschmieder transmittance, rain extinction, particle
//! density), on synthetic frames and on the shared KITTI frames with their 3D labels; determinism,
//! provenance and parameter validation.

#![allow(
    clippy::many_single_char_names,
    reason = "pixel tests name coordinates and sizes x, y, w, h"
)]

use image::RgbImage;
use roadsynth_formats::{LoadOptions, kitti, load_all};
use roadsynth_testkit::shared;
use roadsynth_types::{BBox, FrameRecord};
use roadsynth_weather::{
    CONTRAST_THRESHOLD_LN, DepthMap, DepthSource, Fog, Intrinsics, Night, PixelMask, Rain, Snow,
    WeatherContext, WeatherEffect, WeatherError, beta_from_visibility, decode_lut, luminance,
    rain_extinction_per_m, snow_extinction_per_m,
};

/// A textured synthetic street-like frame: sky-ish top, grey road, some structure everywhere.
fn frame(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let v = ((x * 7 + y * 13) % 97) as u8;
        if y < h / 3 {
            image::Rgb([170 + v / 3, 190 + v / 4, 220 + v / 5])
        } else {
            image::Rgb([60 + v, 62 + v, 64 + v / 2])
        }
    })
}

/// The shared KITTI frames with their labels and calibration, if the shared data is there.
fn kitti_records() -> Option<Vec<FrameRecord>> {
    let root = shared("datasets/kitti-object")?;
    let scan = kitti::scan(&root, "train").expect("scan");
    let mut records: Vec<FrameRecord> = Vec::new();
    let sunk: Result<(), ()> = load_all(scan.frames, &LoadOptions::default(), 4, |r| {
        records.extend(r.ok());
        Ok(())
    });
    sunk.expect("load");
    assert!(!records.is_empty());
    Some(records)
}

/// Linear luminance of every pixel inside a box.
fn box_luminances(image: &RgbImage, b: &BBox) -> Vec<f32> {
    let dec = decode_lut();
    let (w, h) = (image.width() as usize, image.height() as usize);
    let Some((x0, x1, y0, y1)) = roadsynth_weather::box_pixel_range(b, w, h) else {
        return Vec::new();
    };
    let raw = image.as_raw();
    (y0..y1)
        .flat_map(|y| (x0..x1).map(move |x| y * w + x))
        .map(|i| {
            luminance([
                dec[raw[3 * i] as usize],
                dec[raw[3 * i + 1] as usize],
                dec[raw[3 * i + 2] as usize],
            ])
        })
        .collect()
}

/// Root-mean-square contrast: standard deviation of linear luminance.
fn rms_contrast(values: &[f32]) -> f64 {
    let n = values.len().max(1) as f64;
    let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    (values
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / n)
        .sqrt()
}

mod fog {
    use super::*;

    /// One measured object: (distance, clear contrast, contrast ratio, recorded transmittance,
    /// standard deviation of the transmission inside its box).
    type Measured = (f64, f64, f64, f64, f64);

    #[test]
    fn transmittance_is_exp_minus_beta_d_at_a_known_depth() {
        let (w, h) = (96, 64);
        let image = frame(w, h);
        let depth = DepthMap::constant(w, h, 80.0).expect("depth");
        let fog = Fog::with_visibility(150.0);
        let beta = CONTRAST_THRESHOLD_LN / 150.0;
        assert!((beta_from_visibility(150.0) - beta).abs() < 1e-9);
        let expected = (-f64::from(beta) * 80.0).exp();
        let out = fog
            .apply(&image, &WeatherContext::new(&depth), 1)
            .expect("fog");
        let raw = out.maps.raw_transmission.expect("raw transmission");
        let smoothed = out.maps.transmission.expect("transmission");
        // Raw: exactly Koschmieder's t; smoothed: a constant depth is a fixed point of the
        // guided filter.
        for (name, map) in [("raw", &raw), ("guided", &smoothed)] {
            let worst = map
                .data
                .iter()
                .map(|&t| (f64::from(t) - expected).abs())
                .fold(0.0, f64::max);
            assert!(worst < 1e-6, "{name}: worst |t - exp(-beta d)| = {worst}");
        }

        // Along the viewing ray: with intrinsics the distance is z * sqrt(1 + x'^2 + y'^2).
        let k = Intrinsics {
            fx: 120.0,
            fy: 120.0,
            cx: 48.0,
            cy: 32.0,
        };
        let out = fog
            .apply(&image, &WeatherContext::new(&depth).with_intrinsics(k), 1)
            .expect("fog");
        let raw = out.maps.raw_transmission.expect("raw");
        for (x, y) in [(0u32, 0u32), (95, 63), (48, 32), (10, 50)] {
            let xr = (f64::from(x) + 0.5 - k.cx) / k.fx;
            let yr = (f64::from(y) + 0.5 - k.cy) / k.fy;
            let ray = 80.0 * (1.0 + xr * xr + yr * yr).sqrt();
            let t = f64::from(raw.get(x, y).expect("inside"));
            assert!(
                (t - (-f64::from(beta) * ray).exp()).abs() < 1e-6,
                "({x}, {y}): {t}"
            );
        }
    }

    #[test]
    fn pixels_follow_koschmieder_in_linear_light() {
        let (w, h) = (64, 48);
        let image = frame(w, h);
        let depth = DepthMap::constant(w, h, 100.0).expect("depth");
        let fog = Fog {
            atmospheric_light: Some([0.8, 0.8, 0.8]),
            guided_radius: 0,
            ..Fog::with_visibility(200.0)
        };
        let out = fog
            .apply(&image, &WeatherContext::new(&depth), 3)
            .expect("fog");
        let t = (-beta_from_visibility(200.0) * 100.0).exp();
        let dec = decode_lut();
        let air = roadsynth_weather::srgb_to_linear(0.8);
        for (before, after) in image.as_raw().iter().zip(out.image.as_raw()) {
            let expected = dec[*before as usize] * t + air * (1.0 - t);
            let code = roadsynth_weather::linear_to_srgb(expected) * 255.0;
            assert!(
                (f32::from(*after) - code).abs() <= 0.51,
                "{before} -> {after}, expected {code}"
            );
        }
    }

    #[test]
    fn nearer_is_clearer_on_the_ground_plane() {
        let (w, h) = (128, 96);
        let image = frame(w, h);
        let depth = DepthMap::from_ground_plane(w, h, 40.0, 150.0).expect("depth");
        assert_eq!(depth.source, DepthSource::GroundPlane);
        let out = Fog::with_visibility(100.0)
            .apply(&image, &WeatherContext::new(&depth), 0)
            .expect("fog");
        let t = out.maps.transmission.expect("t");
        let column: Vec<f32> = (41..96).map(|y| t.get(64, y).expect("in")).collect();
        assert!(
            column.windows(2).all(|p| p[1] >= p[0] - 1e-3),
            "t must grow toward the camera: {column:?}"
        );
        assert!(t.get(64, 10).expect("sky") < 1e-3, "sky is at infinity");
    }

    /// The shared KITTI frames: each object's box painted at its 3D label depth (z) on the
    /// calibrated ground plane (`v0 = cy`, `k = fy * 1.65`), fog of 150 m visibility. Under
    /// Koschmieder's law `I = R t + L (1 - t)` the RMS contrast (standard deviation of linear
    /// luminance) of an object with uniform `t` scales by exactly `t`, so it falls with distance.
    ///
    /// Checked twice: on the raw transmission, where each object's contrast ratio must equal its
    /// transmittance `exp(-beta * ray length)` up to 8-bit quantisation; and with the default
    /// guided filter, which spreads `t` across the rectangular box edges (boxes are not
    /// silhouettes), so `t` varies inside a box. Then `I = t_mean R + (t - t_mean)(R - L) + L ...`
    /// and, by Minkowski's inequality on standard deviations with `R, L` in `[0, 1]`,
    /// `|ratio - t_mean| <= sd(t in box) / clear contrast` (plus quantisation): that bound is
    /// checked per object, and the median ratio of textured objects per distance bin must fall
    /// monotonically.
    #[test]
    fn contrast_of_kitti_objects_falls_with_distance() {
        let Some(records) = kitti_records() else {
            return;
        };
        let beta = f64::from(beta_from_visibility(150.0));
        let guided = Fog::with_visibility(150.0);
        let raw = Fog {
            guided_radius: 0,
            ..guided.clone()
        };
        let mut measured: [Vec<Measured>; 2] = [Vec::new(), Vec::new()];
        for rec in &records {
            let image = image::load_from_memory(rec.image.as_deref().expect("bytes"))
                .expect("decode")
                .to_rgb8();
            let camera = rec.frame.camera.expect("calibrated");
            let (w, h) = image.dimensions();
            let mut depth = DepthMap::from_camera(w, h, &camera, 1.65).expect("depth");
            let labelled: Vec<_> = rec
                .annotations
                .iter()
                .filter(|a| !a.ignore && a.kitti.is_some())
                .collect();
            let painted: Vec<(BBox, f32)> = labelled
                .iter()
                .filter_map(|a| Some((a.bbox, a.kitti?.location_xyz[2] as f32)))
                .collect();
            depth.with_boxes(&painted);
            let boxes: Vec<BBox> = labelled.iter().map(|a| a.bbox).collect();
            let k = Intrinsics::from(&camera);
            let ctx = WeatherContext::new(&depth)
                .with_intrinsics(k)
                .with_boxes(&boxes);
            for (fog, results) in [&raw, &guided].into_iter().zip(measured.iter_mut()) {
                let out = fog.apply(&image, &ctx, 0).expect("fog");
                assert_eq!(out.per_box.len(), boxes.len());
                for (i, a) in labelled.iter().enumerate() {
                    if !["Car", "Pedestrian", "Cyclist"].contains(&a.class.as_str()) {
                        continue;
                    }
                    // Skip objects partly hidden by a nearer labelled one (they carry its depth
                    // in part), tiny boxes, and flat ones (no contrast to measure).
                    let z = a.kitti.expect("3d").location_xyz[2];
                    let hidden = labelled.iter().any(|o| {
                        o.kitti.expect("3d").location_xyz[2] < z
                            && o.bbox.intersection(&a.bbox) > 0.0
                    });
                    let clear = rms_contrast(&box_luminances(&image, &a.bbox));
                    if hidden || clear < 0.02 || a.bbox.area() < 100.0 {
                        continue;
                    }
                    let fogged = rms_contrast(&box_luminances(&out.image, &a.bbox));
                    let t = f64::from(out.per_box[i].transmittance);
                    let t_map = out.maps.transmission.as_ref().expect("t");
                    let (x0, x1, y0, y1) =
                        roadsynth_weather::box_pixel_range(&a.bbox, w as usize, h as usize)
                            .expect("inside");
                    let t_in: Vec<f32> = (y0..y1)
                        .flat_map(|y| (x0..x1).map(move |x| t_map.data[y * w as usize + x]))
                        .collect();
                    results.push((z, clear, fogged / clear, t, rms_contrast(&t_in)));
                    if fog.guided_radius == 0 {
                        // Koschmieder along the ray through the box centre, and its corners.
                        let ray = |u: f64, v: f64| {
                            let (x, y) = ((u - k.cx) / k.fx, (v - k.cy) / k.fy);
                            z * (1.0 + x * x + y * y).sqrt()
                        };
                        let b = a.bbox;
                        let rays = [
                            ray(b.x0, b.y0),
                            ray(b.x1, b.y0),
                            ray(b.x0, b.y1),
                            ray(b.x1, b.y1),
                        ];
                        let (near, far) = (
                            rays.iter()
                                .copied()
                                .fold(f64::INFINITY, f64::min)
                                .min(ray(f64::midpoint(b.x0, b.x1), f64::midpoint(b.y0, b.y1))),
                            rays.iter().copied().fold(0.0, f64::max),
                        );
                        assert!(
                            t <= (-beta * near).exp() + 1e-6 && t >= (-beta * far).exp() - 1e-6,
                            "{} at {z} m: t = {t}, ray {near:.1}..{far:.1} m",
                            a.class
                        );
                    }
                }
            }
        }
        let [raw_objects, guided_objects] = measured;
        assert!(
            raw_objects.len() >= 40,
            "only {} objects",
            raw_objects.len()
        );
        // 8-bit quantisation of the output: at most half a code, about 0.004 in linear light.
        let quantisation = 0.004;
        for (name, objects) in [("raw", &raw_objects), ("guided", &guided_objects)] {
            for &(z, clear, ratio, t, t_sd) in objects {
                let bound = (t_sd + quantisation) / clear + 0.01;
                assert!(
                    (ratio - t).abs() <= bound,
                    "{name}: object at {z:.1} m (clear contrast {clear:.3}): ratio {ratio:.3}, \
                     t {t:.3}, bound {bound:.3}"
                );
            }
            // Binned by distance, the median contrast ratio of textured objects (clear RMS
            // contrast >= 0.1, well above the airlight variation the guided filter brings into a
            // box) falls monotonically.
            let objects: Vec<_> = objects.iter().filter(|o| o.1 >= 0.1).collect();
            let edges = [0.0, 10.0, 20.0, 30.0, 45.0, f64::INFINITY];
            let medians: Vec<(f64, usize)> = edges
                .windows(2)
                .map(|e| {
                    let mut bin: Vec<f64> = objects
                        .iter()
                        .filter(|o| o.0 >= e[0] && o.0 < e[1])
                        .map(|o| o.2)
                        .collect();
                    bin.sort_by(f64::total_cmp);
                    (
                        bin.get(bin.len() / 2).copied().unwrap_or(f64::NAN),
                        bin.len(),
                    )
                })
                .filter(|(_, n)| *n > 0)
                .collect();
            eprintln!(
                "KITTI {name}: median contrast ratio by distance bin (median, count): {medians:?}"
            );
            assert!(
                medians.len() >= 4 && objects.len() >= 30,
                "{name}: {} objects, {medians:?}",
                objects.len()
            );
            assert!(
                medians.windows(2).all(|p| p[1].0 < p[0].0),
                "{name}: contrast must fall with distance: {medians:?}"
            );
        }
        // With the raw map, t is uniform in a box but for the ray length across it.
        assert!(
            raw_objects.iter().all(|o| o.4 < 0.01),
            "raw t varies inside a box"
        );
    }
}

/// Frames without semantic labels (KITTI, dashcams): the sky is estimated from the image and the
/// scenery assumed at a backdrop distance. Before, everything above the horizon was infinitely far
/// and fog turned buildings and trees there white.
mod without_labels {
    use super::*;
    use roadsynth_weather::{ASSUMED_BACKDROP_M, estimate_sky};

    /// Against `CamVid`'s labelled sky (code 0), horizon at mid-height: a mean intersection over
    /// union of 0.92 measured on val (0.79 on train, other sequences).
    #[test]
    fn issue_5_estimated_sky_matches_camvid_labels() {
        let Some(root) = shared("datasets/camvid") else {
            return;
        };
        let json: serde_json::Value = serde_json::from_slice(
            &std::fs::read(root.join("annotations_val.json")).expect("read"),
        )
        .expect("json");
        let images = json["images"].as_array().expect("images");
        let mut ious = Vec::new();
        for im in images.iter().step_by(4) {
            let path = |key: &str| root.join(im[key].as_str().expect("path"));
            let image = image::open(path("file_name")).expect("image").to_rgb8();
            let labels = image::open(path("semantic_label"))
                .expect("labels")
                .to_luma8();
            let sky = estimate_sky(&image, f64::from(image.height()) / 2.0);
            let (mut both, mut either) = (0u32, 0u32);
            for (&s, l) in sky.data.iter().zip(labels.pixels()) {
                let labelled = l.0[0] == 0;
                both += u32::from(s != 0 && labelled);
                either += u32::from(s != 0 || labelled);
            }
            ious.push(f64::from(both) / f64::from(either.max(1)));
        }
        let mean = ious.iter().sum::<f64>() / ious.len() as f64;
        assert!(
            ious.len() >= 20 && mean > 0.85,
            "mean IoU {mean:.3} over {}",
            ious.len()
        );
    }

    #[test]
    fn sky_is_smooth_bright_and_above_the_horizon() {
        // Bright smooth sky over a textured facade, the facade's top edge at row 20 except for a
        // one-column pole reaching the top edge (median-filtered away).
        let image = RgbImage::from_fn(40, 60, |x, y| {
            if (y < 20 && x != 17) || y >= 50 {
                image::Rgb([200, 215, 235])
            } else {
                let v = if (x + y) % 2 == 0 { 40 } else { 160 };
                image::Rgb([v, v, v])
            }
        });
        let sky = estimate_sky(&image, 45.0);
        let at = |x: usize, y: usize| sky.data[y * 40 + x] != 0;
        assert!(
            at(5, 0) && at(5, 18) && at(17, 5),
            "sky, the pole's column too"
        );
        assert!(!at(5, 21) && !at(5, 40), "the facade");
        assert!(!at(5, 55), "nothing below the horizon, however smooth");
        assert!(estimate_sky(&image, 0.0).data.iter().all(|&s| s == 0));
    }

    #[test]
    fn issue_5_fog_on_kitti_keeps_the_scenery_above_the_horizon_visible() {
        let Some(records) = kitti_records() else {
            return;
        };
        let fog = Fog::with_visibility(300.0);
        let backdrop_t = (-beta_from_visibility(300.0) * ASSUMED_BACKDROP_M).exp();
        let mut scenery = Vec::new();
        for rec in &records {
            let image = image::load_from_memory(rec.image.as_deref().expect("bytes"))
                .expect("decode")
                .to_rgb8();
            let camera = rec.frame.camera.expect("calibrated");
            let (w, h) = image.dimensions();
            let mut depth = DepthMap::from_camera(w, h, &camera, 1.65).expect("depth");
            depth
                .with_backdrop(ASSUMED_BACKDROP_M)
                .with_sky_from_image(&image)
                .expect("sky");
            let out = fog
                .apply(&image, &WeatherContext::new(&depth), 1)
                .expect("fog");
            assert_eq!(out.params["depth"]["sky"], "image");
            assert_eq!(
                out.params["depth"]["backdrop_m"],
                f64::from(ASSUMED_BACKDROP_M)
            );
            let t = out.maps.transmission.expect("transmission");
            let sky = estimate_sky(&image, camera.cy);
            let horizon = camera.cy as usize;
            let (mut sum, mut n) = (0.0f64, 0u32);
            for (i, (&tv, &s)) in t.data.iter().zip(&sky.data).enumerate() {
                if i / w as usize >= horizon {
                    break;
                }
                if s == 0 {
                    sum += f64::from(tv);
                    n += 1;
                }
            }
            if n > 0 {
                scenery.push(sum / f64::from(n));
            }
        }
        // Scenery above the horizon is fogged as at the backdrop (the guided filter blurs the
        // sky's edge into it a little), not white.
        let mean = scenery.iter().sum::<f64>() / scenery.len() as f64;
        assert!(
            mean > 0.8 * f64::from(backdrop_t),
            "mean transmission {mean:.3} of the scenery above the horizon, backdrop {backdrop_t:.3}"
        );
    }
}

mod rain {
    use super::*;

    #[test]
    fn attenuation_matches_the_halder_formula() {
        for rate in [5.0f32, 25.0, 100.0] {
            let beta = f64::from(rain_extinction_per_m(rate));
            let by_hand = 0.312 * f64::from(rate).powf(0.67) / 1000.0;
            assert!(
                (beta / by_hand - 1.0).abs() < 1e-6,
                "{rate}: {beta} vs {by_hand}"
            );
        }
        let (w, h) = (80, 60);
        let image = frame(w, h);
        let depth = DepthMap::constant(w, h, 200.0).expect("depth");
        let boxes = [BBox::new(10.0, 10.0, 30.0, 40.0)];
        let rain = Rain {
            max_streaks: 0,
            ..Rain::with_rate(25.0)
        };
        let out = rain
            .apply(&image, &WeatherContext::new(&depth).with_boxes(&boxes), 5)
            .expect("rain");
        let beta = f64::from(rain_extinction_per_m(25.0));
        let expected = (-beta * 200.0).exp();
        let t = out.maps.transmission.expect("t");
        assert!(
            t.data
                .iter()
                .all(|&v| (f64::from(v) - expected).abs() < 1e-6)
        );
        let b = out.per_box[0];
        assert!((f64::from(b.transmittance) - expected).abs() < 1e-6);
        assert!((f64::from(b.visibility_m) - f64::from(CONTRAST_THRESHOLD_LN) / beta).abs() < 1e-2);
    }

    /// More rain, more drops in the frustum (Marshall-Palmer), more streak pixels.
    #[test]
    fn streak_density_grows_with_rate() {
        let (w, h) = (640, 360);
        let image = RgbImage::from_pixel(w, h, image::Rgb([90, 90, 90]));
        let depth = DepthMap::from_ground_plane(w, h, 170.0, 500.0 * 1.5).expect("depth");
        let ctx = WeatherContext::new(&depth);
        let mut previous = (0usize, 0.0f64);
        for rate in [5.0f32, 25.0, 100.0] {
            let rain = Rain {
                focal_px: Some(500.0),
                ..Rain::with_rate(rate)
            };
            let out = rain.apply(&image, &ctx, 11).expect("rain");
            let layer = out.maps.particles.expect("particles");
            let streak_pixels = layer.data.iter().filter(|&&a| a > 0.02).count();
            let opacity: f64 = layer.data.iter().map(|&a| f64::from(a)).sum();
            eprintln!(
                "rain {rate} mm/h: {streak_pixels} streak pixels, total opacity {opacity:.0}"
            );
            assert!(
                streak_pixels > previous.0 && opacity > previous.1,
                "{rate} mm/h: {streak_pixels} pixels, opacity {opacity} after {previous:?}"
            );
            previous = (streak_pixels, opacity);
        }
        assert!(previous.0 > 1000);
    }

    #[test]
    fn wet_road_darkens_and_reflects_only_drivable_pixels() {
        let (w, h) = (120, 90);
        let image = frame(w, h);
        let depth = DepthMap::from_ground_plane(w, h, 30.0, 120.0).expect("depth");
        let road: Vec<u8> = (0..w * h).map(|i| u8::from(i / w >= 50)).collect();
        let road = PixelMask::new(w, h, road).expect("mask");
        let rain = Rain {
            max_streaks: 0,
            lens_drops: 0,
            ..Rain::with_rate(10.0)
        };
        let dry = rain
            .apply(&image, &WeatherContext::new(&depth), 2)
            .expect("rain");
        let wet = rain
            .apply(&image, &WeatherContext::new(&depth).with_drivable(&road), 2)
            .expect("rain");
        let changed =
            |y: u32| (0..w).any(|x| dry.image.get_pixel(x, y) != wet.image.get_pixel(x, y));
        assert!(
            (0..50).all(|y| !changed(y)),
            "non-drivable pixels must not change"
        );
        assert!((50..h).all(changed), "every drivable row changes");
        assert_eq!(wet.params["derived"]["wet_road"]["applied"], true);
    }
}

mod snow_and_night {
    use super::*;

    #[test]
    fn snow_covers_the_ground_and_reduces_contrast() {
        let (w, h) = (160, 120);
        let image = frame(w, h);
        let depth = DepthMap::from_ground_plane(w, h, 40.0, 200.0).expect("depth");
        let road: Vec<u8> = (0..w * h).map(|i| u8::from(i / w >= 60)).collect();
        let road = PixelMask::new(w, h, road).expect("mask");
        let snow = Snow::with_rate(2.0);
        let out = snow
            .apply(&image, &WeatherContext::new(&depth).with_drivable(&road), 4)
            .expect("snow");
        let mean = |img: &RgbImage| {
            let rows = img.as_raw().len() / 2;
            img.as_raw()[rows..]
                .iter()
                .map(|&v| f64::from(v))
                .sum::<f64>()
                / rows as f64
        };
        assert!(mean(&out.image) > mean(&image) + 20.0, "the road whitens");
        let beta = snow_extinction_per_m(2.0, 0.1);
        let v = f64::from(CONTRAST_THRESHOLD_LN / beta);
        // Derived, not fitted: about 0.9 R^-0.57 km at 0.1 g/cm3.
        assert!((500.0..800.0).contains(&v), "visibility {v} m at 2 mm/h");
        assert!(snow_extinction_per_m(5.0, 0.1) > beta);
        assert!(
            out.maps
                .particles
                .expect("flakes")
                .data
                .iter()
                .any(|&a| a > 0.1)
        );
    }

    #[test]
    fn night_darkens_and_lights_glow() {
        let (w, h) = (200, 120);
        let mut image = RgbImage::from_pixel(w, h, image::Rgb([120, 120, 120]));
        // A car with two red tail lights in the lower half of its box.
        let car = BBox::new(60.0, 40.0, 140.0, 100.0);
        for (cx, cy) in [(75u32, 85u32), (125, 85)] {
            for y in cy - 2..cy + 3 {
                for x in cx - 3..cx + 4 {
                    image.put_pixel(x, y, image::Rgb([210, 30, 25]));
                }
            }
        }
        let depth = DepthMap::constant(w, h, 20.0).expect("depth");
        let boxes = [car];
        let ctx = WeatherContext::new(&depth)
            .with_boxes(&boxes)
            .with_lights_in(&boxes);
        let night = Night {
            noise_shot: 0.0,
            noise_read: 0.0,
            ..Night::default()
        };
        let out = night.apply(&image, &ctx, 9).expect("night");
        assert_eq!(out.params["derived"]["vehicle_light_pixels"], 70);
        let dark = out.image.get_pixel(10, 10);
        assert!(dark.0.iter().all(|&c| c < 60), "background {dark:?}");
        // Around the light (outside it) the glow is red and brighter than the background.
        let halo = out.image.get_pixel(75, 90);
        assert!(halo[0] > dark[0] + 20 && halo[0] > halo[2], "halo {halo:?}");
        assert!(out.per_box[0].luminance < 0.1);
        assert!(out.per_box[0].visibility_m.is_infinite());
    }
}

mod determinism_and_validation {
    use super::*;

    fn effects() -> Vec<WeatherEffect> {
        vec![
            WeatherEffect::Fog(Fog {
                spatial_variation: 0.3,
                ..Fog::with_visibility(150.0)
            }),
            WeatherEffect::Rain(Rain {
                lens_drops: 3,
                ..Rain::with_rate(40.0)
            }),
            WeatherEffect::Snow(Snow::with_rate(1.0)),
            WeatherEffect::Night(Night::default()),
        ]
    }

    /// Fog computes its full-resolution raw transmission only for diagnostics: the image, the
    /// per-box figures and the provenance must not depend on whether it is asked for.
    #[test]
    fn diagnostic_maps_change_nothing_but_the_maps() {
        let (w, h) = (160, 96);
        let image = frame(w, h);
        let mut depth = DepthMap::from_ground_plane(w, h, 35.0, 180.0).expect("depth");
        let boxes = [
            BBox::new(40.0, 40.0, 80.0, 70.0),
            BBox::new(150.0, 60.0, 160.0, 96.0),
        ];
        depth.with_boxes_on_ground(&boxes);
        let k = Intrinsics {
            fx: 150.0,
            fy: 150.0,
            cx: 80.0,
            cy: 40.0,
        };
        let varying = |guided_radius| Fog {
            spatial_variation: 0.4,
            variation_scale: 0.3,
            guided_radius,
            ..Fog::with_visibility(120.0)
        };
        for fog in [varying(8), varying(0), Fog::with_visibility(300.0)] {
            for with_intrinsics in [false, true] {
                let ctx = WeatherContext::new(&depth).with_boxes(&boxes);
                let ctx = if with_intrinsics {
                    ctx.with_intrinsics(k)
                } else {
                    ctx
                };
                let full = fog.apply(&image, &ctx, 5).expect("with maps");
                let lean = fog
                    .apply(&image, &ctx.without_diagnostic_maps(), 5)
                    .expect("without maps");
                assert_eq!(full.image.as_raw(), lean.image.as_raw(), "{fog:?}");
                assert_eq!(full.per_box, lean.per_box, "{fog:?}");
                assert_eq!(full.params, lean.params, "{fog:?}");
                assert_eq!(full.maps.transmission, lean.maps.transmission, "{fog:?}");
                assert!(full.maps.raw_transmission.is_some());
                assert!(lean.maps.raw_transmission.is_none());
            }
        }
    }

    #[test]
    fn same_seed_same_bytes_different_seed_different_bytes() {
        let (w, h) = (160, 96);
        let image = frame(w, h);
        let mut depth = DepthMap::from_ground_plane(w, h, 35.0, 180.0).expect("depth");
        let boxes = [BBox::new(40.0, 40.0, 80.0, 70.0)];
        depth.with_boxes_on_ground(&boxes);
        let road: Vec<u8> = (0..w * h).map(|i| u8::from(i / w >= 70)).collect();
        let road = PixelMask::new(w, h, road).expect("mask");
        let ctx = WeatherContext::new(&depth)
            .with_boxes(&boxes)
            .with_drivable(&road)
            .with_lights_in(&boxes);
        for effect in effects() {
            let a = effect.apply(&image, &ctx, 7).expect("a");
            let b = effect.apply(&image, &ctx, 7).expect("b");
            let c = effect.apply(&image, &ctx, 8).expect("c");
            assert_eq!(a.image.as_raw(), b.image.as_raw(), "{}", effect.name());
            assert_eq!(a.params, b.params, "{}", effect.name());
            assert_eq!(a.per_box, b.per_box, "{}", effect.name());
            assert_ne!(a.image.as_raw(), c.image.as_raw(), "{}", effect.name());
            // Boxes are kept: one result per box, and the image keeps its size.
            assert_eq!(a.per_box.len(), boxes.len());
            assert_eq!(a.image.dimensions(), image.dimensions());
            // Provenance names the operation, the seed, every parameter and the depth source.
            assert_eq!(a.params["operation"], effect.name());
            assert_eq!(a.params["seed"], 7);
            assert_eq!(a.params["depth"]["source"], "ground_plane");
            let given = serde_json::to_value(&effect).expect("json");
            for key in given
                .as_object()
                .expect("object")
                .keys()
                .filter(|k| *k != "kind")
            {
                assert!(a.params["params"].get(key).is_some(), "{key} missing");
            }
        }
    }

    #[test]
    fn bad_parameters_are_rejected_with_the_field_named() {
        let fog = Fog::with_visibility(-50.0);
        let err = fog.validate().expect_err("negative visibility");
        let msg = err.to_string();
        assert!(
            msg.contains("fog.visibility_m") && msg.contains("-50"),
            "{msg}"
        );

        let rain = Rain::with_rate(10_000.0);
        let msg = rain.validate().expect_err("10000 mm/h").to_string();
        assert!(
            msg.contains("rain.rate_mm_h") && msg.contains("10000") && msg.contains("300"),
            "{msg}"
        );
        assert!(Rain::with_rate(0.0).validate().is_err());
        assert!(Rain::with_rate(300.0).validate().is_ok());
        assert!(Snow::with_rate(f32::NAN).validate().is_err());
        let night = Night {
            exposure_ev: 3.0,
            ..Night::default()
        };
        assert!(
            night
                .validate()
                .expect_err("ev")
                .to_string()
                .contains("night.exposure_ev")
        );

        // apply refuses too, with the same error, before touching the frame.
        let image = frame(8, 8);
        let depth = DepthMap::constant(8, 8, 10.0).expect("depth");
        let applied = rain.apply(&image, &WeatherContext::new(&depth), 0);
        assert!(matches!(
            applied,
            Err(WeatherError::InvalidParameter {
                field: "rate_mm_h",
                ..
            })
        ));

        // From scenario-style JSON: unknown fields and bad values are errors, not defaults.
        let parsed: Result<WeatherEffect, _> =
            serde_json::from_str(r#"{"kind": "rain", "rate_mm_h": 20, "colour": "blue"}"#);
        assert!(parsed.is_err());
        let parsed: WeatherEffect =
            serde_json::from_str(r#"{"kind": "fog", "visibility_m": -1}"#).expect("parses");
        assert!(parsed.validate().is_err());
    }

    #[test]
    fn inputs_of_the_wrong_size_are_errors() {
        let image = frame(16, 12);
        let depth = DepthMap::constant(16, 10, 10.0).expect("depth");
        let err = Fog::default()
            .apply(&image, &WeatherContext::new(&depth), 0)
            .expect_err("size");
        assert!(err.to_string().contains("depth map is 16x10"), "{err}");
        assert!(DepthMap::new(2, 2, vec![1.0, f32::NAN, 1.0, 1.0]).is_err());
        assert!(DepthMap::from_ground_plane(4, 4, 2.0, -1.0).is_err());
        assert!(PixelMask::new(4, 4, vec![0; 3]).is_err());
    }

    #[test]
    fn depth_helpers_paint_boxes_sky_and_structures() {
        let (w, h) = (40, 30);
        let mut depth = DepthMap::from_ground_plane(w, h, 10.0, 100.0).expect("depth");
        // Row 19: centre 19.5, 9.5 rows below the horizon.
        assert!((depth.metres()[19 * 40] - 100.0 / 9.5).abs() < 1e-4);
        assert!(depth.metres()[5 * 40].is_infinite());
        let near = BBox::new(5.0, 12.0, 15.0, 25.0);
        let far = BBox::new(10.0, 12.0, 20.0, 20.0);
        depth.with_boxes(&[(near, 8.0), (far, 30.0)]);
        assert!(
            (depth.metres()[14 * 40 + 12] - 8.0).abs() < 1e-6,
            "nearer box wins"
        );
        assert!((depth.metres()[14 * 40 + 17] - 30.0).abs() < 1e-6);
        assert_eq!(depth.boxes_painted, 2);
        let foot = depth.foot_point_depth(&far).expect("below horizon");
        assert!((foot - 10.0).abs() < 1e-4);

        let mut structures = DepthMap::from_ground_plane(w, h, 10.0, 100.0).expect("depth");
        // Ground below row 20; a wall above it in every column, sky above row 5.
        let ground = PixelMask::new(w, h, (0..w * h).map(|i| u8::from(i / w >= 20)).collect())
            .expect("ground");
        let sky =
            PixelMask::new(w, h, (0..w * h).map(|i| u8::from(i / w < 5)).collect()).expect("sky");
        structures
            .with_vertical_structures(ground)
            .expect("structures")
            .with_sky(sky)
            .expect("sky");
        let foot_depth = structures.metres()[20 * 40 + 3];
        assert!((structures.metres()[8 * 40 + 3] - foot_depth).abs() < 1e-6);
        assert!(structures.metres()[2 * 40 + 3].is_infinite());
        assert_eq!(structures.provenance()["vertical_structures"], true);
    }

    /// Fog samples depth at one pixel per block: at those pixels it is the full map's value, for
    /// dense and ground-plane bases and refinements in any order (structures twice, boxes before
    /// and after them, sky, a cap), with the full map computed before or not.
    #[test]
    fn depth_at_samples_is_the_full_map_there() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(6);
        for case in 0..60 {
            let (w, h) = (rng.random_range(3..30u32), rng.random_range(3..24u32));
            let n = (w * h) as usize;
            let mut depth = if case % 3 == 0 {
                let metres = (0..n).map(|_| rng.random_range(1.0..80.0f32)).collect();
                DepthMap::new(w, h, metres).expect("dense")
            } else {
                let horizon = rng.random_range(-2.0..f64::from(h));
                DepthMap::from_ground_plane(w, h, horizon, 900.0).expect("plane")
            };
            let mut mask = |p: f64| {
                let bits = (0..n).map(|_| u8::from(rng.random_bool(p))).collect();
                PixelMask::new(w, h, bits).expect("mask")
            };
            let (ground, ground2, sky) = (mask(0.5), mask(0.7), mask(0.1));
            let boxes = |rng: &mut rand_chacha::ChaCha8Rng| -> Vec<(BBox, f32)> {
                (0..rng.random_range(0..4))
                    .map(|_| {
                        let (x, y) = (
                            rng.random_range(-3.0..f64::from(w)),
                            rng.random_range(-3.0..f64::from(h)),
                        );
                        let size = rng.random_range(0.5..9.0);
                        (
                            BBox::new(x, y, x + size, y + size),
                            rng.random_range(2.0..50.0),
                        )
                    })
                    .collect()
            };
            let (before, after) = (boxes(&mut rng), boxes(&mut rng));
            depth.with_boxes(&before);
            depth.with_vertical_structures(ground).expect("structures");
            if case % 2 == 0 {
                depth.with_vertical_structures(ground2).expect("again");
            }
            depth.with_sky(sky).expect("sky");
            depth.with_boxes(&after);
            if case % 4 == 1 {
                depth.cap_depth(25.0);
            }
            let xs: Vec<usize> = (0..w as usize).filter(|_| rng.random_bool(0.4)).collect();
            let mut ys: Vec<usize> = (0..h as usize).filter(|_| rng.random_bool(0.4)).collect();
            ys.reverse();
            if let Some(&y) = ys.first() {
                ys.push(y);
            }
            let lazily = depth.at_grid(&xs, &ys);
            let full = depth.metres();
            let expected: Vec<f32> = ys
                .iter()
                .flat_map(|&y| xs.iter().map(move |&x| full[y * w as usize + x]))
                .collect();
            let bits = |v: &[f32]| v.iter().map(|d| d.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&lazily), bits(&expected), "case {case}");
            assert_eq!(
                bits(&depth.at_grid(&xs, &ys)),
                bits(&expected),
                "case {case}, computed"
            );
        }
    }
}

/// Issue 5: every weather a scenario accepts maps to an effect the weather library accepts (the
/// scenario's ranges and the effects' checks agree at their extremes), so a scenario that
/// validates never fails at render time.
#[test]
fn issue_5_scenario_weather_extremes_map_to_valid_effects() {
    let cases = [
        "fog: {visibility_m: 10000, spatial_variation: 1}",
        "fog: {visibility_m: 1}",
        "rain: {rate_mm_h: 300, wind_deg: 60, exposure_ms: 100, lens_drops: true}",
        "rain: {rate_mm_h: 0.1, wind_deg: -60, exposure_ms: 0.1, wet_road: false}",
        "snow: {rate_mm_h: 30, accumulation: 1, wind_deg: 60}",
        "snow: {rate_mm_h: 0, accumulation: 0.5}",
        "night: {exposure_ev: -10, light_temperature_k: 1500, sensor_noise: 1, glow: false}",
        "night: {exposure_ev: 0, light_temperature_k: 10000, sensor_noise: 0}",
    ];
    let image = frame(64, 48);
    let depth = DepthMap::from_ground_plane(64, 48, 20.0, 200.0).expect("depth");
    for case in cases {
        let text = format!("seed: 1\nsplits: [train]\noperations:\n  - weather:\n      {case}\n");
        let scenario = roadsynth_scenario::parse(std::path::Path::new("t.yaml"), &text)
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        let roadsynth_scenario::Operation::Weather(w) = &scenario.operations[0] else {
            panic!("{case}: not a weather operation");
        };
        let effect = roadsynth_weather::WeatherEffect::from_scenario(w);
        effect
            .validate()
            .unwrap_or_else(|e| panic!("{case}: scenario-valid but effect-invalid: {e}"));
        let out = effect
            .apply(&image, &WeatherContext::new(&depth), 7)
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_eq!(out.image.dimensions(), image.dimensions());
    }
    // Just past the scenario's range is rejected at validation, naming the field.
    let text = "seed: 1\nsplits: [train]\noperations:\n  - weather:\n      snow: {rate_mm_h: 31}\n";
    let err = roadsynth_scenario::parse(std::path::Path::new("t.yaml"), text)
        .expect_err("31 mm/h of snow");
    assert!(err.to_string().contains("rate_mm_h"), "{err}");
}
