//! Placement on synthetic scenes with exactly known geometry (the real-data checks live with the
//! `plan` command, which has the datasets and masks).

use roadsynth_placement::{GroundGeometry, MaskView, Planner, Scene, class_stats_from_annotations};
use roadsynth_scenario::settings::{
    InsertObjects, Normal, ObjectClass, OcclusionPolicy, PlacementModel, PlacementRegion,
};
use roadsynth_types::{Annotation, BBox, Kitti3d};

/// A level pinhole camera over a flat ground plane.
struct Pinhole {
    v0: f64,
    fy: f64,
    camera_height_m: f64,
}

impl GroundGeometry for Pinhole {
    fn horizon_row(&self) -> f64 {
        self.v0
    }
    fn row_at_depth(&self, z_m: f64) -> f64 {
        self.v0 + self.fy * self.camera_height_m / z_m
    }
    fn depth_at_row(&self, v: f64) -> Option<f64> {
        (v > self.v0).then(|| self.fy * self.camera_height_m / (v - self.v0))
    }
    fn pixel_height(&self, h_m: f64, z_m: f64) -> f64 {
        h_m * self.fy / z_m
    }
    fn source(&self) -> &'static str {
        "intrinsics"
    }
}

const W: u32 = 480;
const H: u32 = 360;

fn deer() -> ObjectClass {
    ObjectClass {
        name: "deer".into(),
        label: "animal".into(),
        weight: 1.0,
        height_m: Normal {
            mean: 1.0,
            std: 0.1,
        },
        length_m: Normal {
            mean: 1.6,
            std: 0.2,
        },
        width_m: Normal {
            mean: 0.5,
            std: 0.05,
        },
        source: "test".into(),
    }
}

fn settings(model: PlacementModel) -> InsertObjects {
    InsertObjects {
        classes: vec![deer()],
        count_min: 1,
        count_max: 3,
        distance_min_m: 5.0,
        distance_max_m: 40.0,
        region: PlacementRegion::Drivable,
        occlusion: OcclusionPolicy {
            max_overlap: 0.0,
            allow_truncation: false,
        },
        assets: None,
        model,
    }
}

/// A road: a trapezoid below the horizon, centred.
fn road_mask() -> Vec<u8> {
    let mut bits = vec![0u8; (W * H) as usize];
    for y in 200..H {
        let half = (f64::from(y - 180) * 1.5) as u32;
        for x in (240u32.saturating_sub(half))..(240 + half).min(W) {
            bits[(y * W + x) as usize] = 1;
        }
    }
    bits
}

fn scene<'a>(
    ground: &'a Pinhole,
    road: &'a [u8],
    none: &'a [u8],
    existing: &'a [Annotation],
    id: &'a str,
) -> Scene<'a> {
    Scene {
        frame_id: id,
        width: W,
        height: H,
        existing,
        ground,
        drivable: MaskView {
            width: W,
            height: H,
            bits: road,
        },
        roadside: MaskView {
            width: W,
            height: H,
            bits: none,
        },
    }
}

#[test]
fn foot_points_lie_on_the_road_and_sizes_follow_depth() {
    let ground = Pinhole {
        v0: 180.0,
        fy: 500.0,
        camera_height_m: 1.5,
    };
    let (road, none) = (road_mask(), vec![0u8; (W * H) as usize]);
    let s = settings(PlacementModel::GeometryAware);
    let planner = Planner::new(&s, 7, &[]);
    let mut placed = 0;
    for i in 0..200 {
        let id = format!("frame{i}");
        let plan = planner.plan(&scene(&ground, &road, &none, &[], &id), 0);
        assert_eq!(plan.geometry, "intrinsics");
        for o in &plan.objects {
            placed += 1;
            let (u, v) = o.foot;
            assert_eq!(
                road[(((v - 1.0) as u32) * W + u as u32) as usize],
                1,
                "foot point off the road: {o:?}"
            );
            let z = o.depth_m.expect("geometric plans have depth");
            assert!((5.0..=40.0).contains(&z), "depth {z}");
            // The box bottom is the foot row, whose ground depth is the planned depth.
            assert!((ground.depth_at_row(o.bbox.y1).expect("below horizon") - z).abs() < 1e-9);
            let expected_h = o.height_m * 500.0 / z;
            assert!((o.bbox.height() - expected_h).abs() < 1e-9);
            assert!(o.bbox.x0 >= 0.0 && o.bbox.x1 <= f64::from(W) && o.bbox.y0 >= 0.0);
        }
    }
    assert!(placed > 200, "placed {placed}");
}

#[test]
fn the_same_seed_gives_the_same_plan_and_another_seed_another() {
    let ground = Pinhole {
        v0: 180.0,
        fy: 500.0,
        camera_height_m: 1.5,
    };
    let (road, none) = (road_mask(), vec![0u8; (W * H) as usize]);
    let s = settings(PlacementModel::GeometryAware);
    let a = Planner::new(&s, 11, &[]).plan(&scene(&ground, &road, &none, &[], "f"), 2);
    let b = Planner::new(&s, 11, &[]).plan(&scene(&ground, &road, &none, &[], "f"), 2);
    let c = Planner::new(&s, 12, &[]).plan(&scene(&ground, &road, &none, &[], "f"), 2);
    assert_eq!(a, b);
    assert_ne!(a.seed, c.seed);
}

#[test]
fn no_overlap_with_existing_objects_when_the_policy_forbids_it() {
    let ground = Pinhole {
        v0: 180.0,
        fy: 500.0,
        camera_height_m: 1.5,
    };
    let (road, none) = (road_mask(), vec![0u8; (W * H) as usize]);
    let car = Annotation::real("car", BBox::new(150.0, 200.0, 330.0, 330.0));
    let existing = [car];
    let s = settings(PlacementModel::GeometryAware);
    let planner = Planner::new(&s, 3, &[]);
    for i in 0..100 {
        let id = format!("f{i}");
        let plan = planner.plan(&scene(&ground, &road, &none, &existing, &id), 0);
        for o in &plan.objects {
            assert!(o.bbox.intersection(&existing[0].bbox) <= 0.0, "{o:?}");
        }
        for (i, a) in plan.objects.iter().enumerate() {
            for b in &plan.objects[i + 1..] {
                assert!(a.bbox.intersection(&b.bbox) <= 0.0);
            }
        }
    }
}

#[test]
fn no_road_means_nothing_placed_but_the_naive_model_places_anywhere() {
    let ground = Pinhole {
        v0: 180.0,
        fy: 500.0,
        camera_height_m: 1.5,
    };
    let none = vec![0u8; (W * H) as usize];
    let s = settings(PlacementModel::GeometryAware);
    let plan = Planner::new(&s, 1, &[]).plan(&scene(&ground, &none, &none, &[], "f"), 0);
    assert!(plan.objects.is_empty() && plan.unplaced >= 1);
    let naive = settings(PlacementModel::Naive);
    let plan = Planner::new(&naive, 1, &[]).plan(&scene(&ground, &none, &none, &[], "f"), 0);
    assert!(!plan.objects.is_empty());
    assert_eq!(plan.geometry, "none");
    for o in &plan.objects {
        assert!(o.depth_m.is_none());
        assert!(
            o.bbox.x0 >= 0.0
                && o.bbox.x1 <= f64::from(W)
                && o.bbox.y0 >= 0.0
                && o.bbox.y1 <= f64::from(H)
        );
    }
}

#[test]
fn dataset_statistics_refine_the_priors() {
    let mut anns = Vec::new();
    for i in 0..20 {
        let mut a = Annotation::real("Deer", BBox::new(0.0, 0.0, 1.0, 1.0));
        a.kitti = Some(Kitti3d {
            alpha: 0.0,
            dimensions_hwl: [1.2, 0.5, 1.6],
            location_xyz: [0.0, 1.5, 10.0 + f64::from(i % 3)],
            rotation_y: 0.0,
            score: None,
        });
        anns.push(a);
    }
    let stats = class_stats_from_annotations(&anns);
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0].samples, 20);
    assert!((stats[0].height_mean - 1.2).abs() < 1e-12);
    // With the data's depths (10-12 m) every planned deer lands near 11 m.
    let ground = Pinhole {
        v0: 180.0,
        fy: 500.0,
        camera_height_m: 1.5,
    };
    let (road, none) = (road_mask(), vec![0u8; (W * H) as usize]);
    let s = settings(PlacementModel::GeometryAware);
    let planner = Planner::new(&s, 5, &stats);
    for i in 0..30 {
        let id = format!("f{i}");
        for o in planner
            .plan(&scene(&ground, &road, &none, &[], &id), 0)
            .objects
        {
            let z = o.depth_m.expect("depth");
            assert!((8.0..15.0).contains(&z), "{z}");
        }
    }
}

/// Placement on real CamVid frames (issue 3's checks): every foot point on a road pixel, planned
/// heights consistent with the scale fitted from the real cars, deterministic, and a golden plan.
mod camvid {
    use std::path::Path;

    use roadsynth_dataset::{DatasetWriter, WriteOptions};
    use roadsynth_formats::{LoadOptions, coco, load_all};
    use roadsynth_placement::{PlanOptions, PlanRow, dataset_geometry, plan_dataset};

    fn camvid_train(out: &Path) -> Option<()> {
        let camvid = roadsynth_testkit::shared("datasets/camvid")?;
        let scan = coco::scan(&camvid.join("annotations_train.json"), None, "train").expect("scan");
        let mut w = DatasetWriter::create(out, WriteOptions::default()).expect("writer");
        load_all(scan.frames, &LoadOptions::default(), 64, |r| {
            w.write(&r.expect("CamVid loads"))
        })
        .expect("load");
        w.commit(serde_json::json!({"test": "camvid"}))
            .expect("commit");
        Some(())
    }

    fn scenario(name: &str) -> roadsynth_scenario::Scenario {
        let path = roadsynth_testkit::package_dir()
            .join("../../scenarios")
            .join(name);
        roadsynth_scenario::load(&path).expect("shipped scenario is valid")
    }

    fn label_at(labels: &std::collections::HashMap<String, image::GrayImage>, row: &PlanRow) -> u8 {
        let img = &labels[&row.frame_id];
        img.get_pixel(row.foot_u.floor() as u32, (row.foot_v - 1.0).floor() as u32)
            .0[0]
    }

    #[test]
    fn issue_3_camvid_foot_points_on_road_heights_on_the_fitted_scale_and_golden() {
        let dir = tempfile::tempdir().expect("tempdir");
        if camvid_train(dir.path()).is_none() {
            return;
        }
        let sc = scenario("animals-on-roads.yaml");
        let (rows, summary) =
            plan_dataset(dir.path(), &sc, &PlanOptions::default(), None).expect("plan");
        assert_eq!(summary.frames, 367);
        assert!(
            rows.len() > 367,
            "{} objects planned over 367 frames x 2 variants",
            rows.len()
        );
        assert_eq!(
            summary.geometry.get("fitted"),
            Some(&367),
            "CamVid has no intrinsics: {:?}",
            summary.geometry
        );

        // 100% of foot points on road pixels (CamVid road = 3), read from the original label PNGs.
        let ds = roadsynth_dataset::Dataset::open(dir.path()).expect("open");
        let labels: std::collections::HashMap<String, image::GrayImage> = ds
            .frames("train", roadsynth_dataset::Projection::SemanticLabelsOnly)
            .expect("frames")
            .map(|r| {
                let r = r.expect("row");
                let png = r.semantic_label.expect("CamVid has labels");
                (
                    r.frame.id.to_string(),
                    image::load_from_memory(&png).expect("png").to_luma8(),
                )
            })
            .collect();
        let off_road: Vec<&PlanRow> = rows.iter().filter(|r| label_at(&labels, r) != 3).collect();
        assert!(
            off_road.is_empty(),
            "{} of {} foot points off the road: {:?}",
            off_road.len(),
            rows.len(),
            off_road.first()
        );

        // Planned heights follow the scale fitted from the real cars at the foot row.
        let (geometry, _) =
            dataset_geometry(&ds, &sc.splits, &PlanOptions::default().fit).expect("geometry");
        let frames: std::collections::HashMap<String, roadsynth_types::Frame> = ds
            .frames("train", roadsynth_dataset::Projection::WithoutImages)
            .expect("frames")
            .map(|r| {
                let r = r.expect("row");
                (r.frame.id.to_string(), r.frame)
            })
            .collect();
        for r in &rows {
            let model = geometry.for_frame(&frames[&r.frame_id]);
            let expected = r.height_m * model.pixels_per_metre_at_row(r.foot_v);
            let planned = r.y1 - r.y0;
            assert!(
                (planned - expected).abs() < 1e-6 * expected.max(1.0),
                "{r:?}: {planned} vs {expected}"
            );
            assert_eq!(r.geometry, "fitted");
            assert_eq!(r.mask_source, "labels");
            // Within the scenario's `distance_m`.
            let z = r.depth_m.expect("depth");
            assert!((2.0..=20.0).contains(&z), "{z}");
        }

        // Generated annotations carry the planned depth, real height and geometry source.
        let a = rows[0].annotation();
        assert_eq!(a.class, "animal");
        assert!(
            matches!(&a.origin, roadsynth_types::Origin::Generated { operation, .. } if operation == "insert_objects")
        );
        assert_eq!(
            a.attributes["depth_m"],
            serde_json::json!(rows[0].depth_m.expect("depth"))
        );
        assert_eq!(
            a.attributes["height_m"],
            serde_json::json!(rows[0].height_m)
        );
        assert_eq!(a.attributes["geometry"], serde_json::json!("fitted"));

        // Deterministic: a second run (masks now cached) gives the same rows.
        let (again, summary2) =
            plan_dataset(dir.path(), &sc, &PlanOptions::default(), None).expect("plan again");
        assert_eq!(summary2.cached_masks, 367);
        assert_eq!(again, rows);

        // Golden: the first frames' plan, rounded, as committed.
        let golden_path =
            roadsynth_testkit::package_dir().join("tests/golden/camvid_animals_plan.json");
        let round = |x: f64| (x * 1e4).round() / 1e4;
        let head: Vec<serde_json::Value> = rows
            .iter()
            .take(12)
            .map(|r| {
                serde_json::json!({
                    "frame_id": r.frame_id, "variant": r.variant, "object": r.object_index, "class": r.class,
                    "label": r.label, "box": [round(r.x0), round(r.y0), round(r.x1), round(r.y1)],
                    "depth_m": r.depth_m.map(round), "height_m": round(r.height_m), "seed": r.seed.to_string(),
                })
            })
            .collect();
        let text = serde_json::to_string_pretty(&head).expect("json") + "\n";
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&golden_path, &text).expect("write golden");
        }
        let golden = std::fs::read_to_string(&golden_path)
            .expect("golden file (run with UPDATE_GOLDEN=1 to create)");
        assert_eq!(
            text, golden,
            "plan changed; if intended, rerun with UPDATE_GOLDEN=1 and review the diff"
        );
    }

    #[test]
    fn naive_baseline_plans_ignore_the_road() {
        let dir = tempfile::tempdir().expect("tempdir");
        if camvid_train(dir.path()).is_none() {
            return;
        }
        let sc = scenario("animals-naive-baseline.yaml");
        let (rows, _) = plan_dataset(dir.path(), &sc, &PlanOptions::default(), None).expect("plan");
        assert!(!rows.is_empty());
        assert!(
            rows.iter()
                .all(|r| r.model == "naive" && r.depth_m.is_none() && r.geometry == "none")
        );
        assert!(
            rows.iter()
                .all(|r| r.x0 >= 0.0 && r.y0 >= 0.0 && r.x1 <= 480.0 && r.y1 <= 360.0)
        );
    }
}
