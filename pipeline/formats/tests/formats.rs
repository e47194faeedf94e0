//! Ingest of every format: counts and fields on the shared real datasets, and every kind of bad
//! input on small datasets written to a temporary folder from real images.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use roadsynth_formats::{LoadOptions, Scan, bdd100k, coco, kitti, load_all, yolo};
use roadsynth_testkit::shared;
use roadsynth_types::{FrameRecord, Mask, QuarantineKind, Quarantined};
use tempfile::TempDir;

/// Everything an ingest produced: loaded frames and quarantined items, in order.
struct Loaded {
    records: Vec<FrameRecord>,
    quarantined: Vec<Quarantined>,
}

impl Loaded {
    fn image_names(&self) -> Vec<&str> {
        self.records
            .iter()
            .map(|r| r.frame.image_name.as_str())
            .collect()
    }

    fn box_count(&self) -> usize {
        self.records.iter().map(|r| r.annotations.len()).sum()
    }

    /// The single quarantined item, checked for kind, file and line.
    fn only_problem(&self, kind: QuarantineKind, file: &Path, line: Option<u32>) -> &Quarantined {
        assert_eq!(
            self.quarantined.len(),
            1,
            "expected one problem, got {:#?}",
            self.quarantined
        );
        let problem = &self.quarantined[0];
        assert_eq!(problem.kind, kind, "{problem}");
        assert_eq!(problem.file, file.display().to_string(), "{problem}");
        assert_eq!(problem.line, line, "{problem}");
        problem
    }
}

fn load_scan(scan: Scan) -> Loaded {
    load_scan_with(scan, &LoadOptions::default())
}

fn load_scan_with(scan: Scan, opts: &LoadOptions) -> Loaded {
    let mut loaded = Loaded {
        records: Vec::new(),
        quarantined: scan.quarantined,
    };
    let sunk: Result<(), ()> = load_all(scan.frames, opts, 2, |result| {
        match result {
            Ok(record) => loaded.records.push(record),
            Err(problems) => loaded.quarantined.extend(problems),
        }
        Ok(())
    });
    sunk.expect("the sink never fails");
    loaded
}

fn class_counts(loaded: &Loaded) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for annotation in loaded.records.iter().flat_map(|r| &r.annotations) {
        *counts.entry(annotation.class.clone()).or_insert(0) += 1;
    }
    counts
}

fn assert_close(actual: f64, expected: f64) {
    assert!((actual - expected).abs() < 1e-6, "{actual} != {expected}");
}

fn write(path: &Path, contents: impl AsRef<[u8]>) {
    std::fs::create_dir_all(path.parent().expect("a file has a folder")).expect("create folder");
    std::fs::write(path, contents).expect("write file");
}

fn copy(from: &Path, to: &Path) {
    write(to, std::fs::read(from).expect("read shared file"));
}

/// Keeps the first half of a file, as an interrupted copy would.
fn cut_in_half(path: &Path) {
    let bytes = std::fs::read(path).expect("read");
    write(path, &bytes[..bytes.len() / 2]);
}

/// Deterministic noise (xorshift), for a file that is no image at all.
fn noise(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect()
}

/// Three real `CamVid` frames (480x360 JPEG), or `None` when the shared data is absent.
fn camvid_images() -> Option<[PathBuf; 3]> {
    let dir = shared("datasets/camvid")?.join("images/train");
    Some(
        [
            "0001TP_006690.jpg",
            "0001TP_006720.jpg",
            "0001TP_006750.jpg",
        ]
        .map(|name| dir.join(name)),
    )
}

mod kitti_format {
    use super::*;

    const FRAMES: [&str; 3] = ["000000", "000001", "000002"];

    /// The first three shared KITTI frames, copied so that tests can break them.
    fn fixture() -> Option<TempDir> {
        let source = shared("datasets/kitti-object")?;
        let dir = tempfile::tempdir().expect("tempdir");
        for id in FRAMES {
            copy(
                &source.join(format!("image_2/{id}.png")),
                &dir.path().join(format!("image_2/{id}.png")),
            );
            copy(
                &source.join(format!("label_2/{id}.txt")),
                &dir.path().join(format!("label_2/{id}.txt")),
            );
            copy(
                &source.join(format!("calib/{id}.txt")),
                &dir.path().join(format!("calib/{id}.txt")),
            );
        }
        Some(dir)
    }

    fn load_fixture(dir: &TempDir) -> Loaded {
        load_scan(kitti::scan(dir.path(), "train").expect("scan"))
    }

    /// Replaces line 2 of `000001.txt` (a Car), keeping the other lines.
    fn replace_second_label_line(dir: &TempDir, line: &str) -> PathBuf {
        let path = dir.path().join("label_2/000001.txt");
        let text = std::fs::read_to_string(&path).expect("read label");
        let mut lines: Vec<&str> = text.lines().collect();
        lines[1] = line;
        write(&path, lines.join("\n"));
        path
    }

    fn assert_others_load(loaded: &Loaded) {
        assert_eq!(
            loaded.image_names(),
            ["image_2/000000.png", "image_2/000002.png"]
        );
    }

    #[test]
    fn shared_dataset_counts_calibration_and_fields() {
        let Some(root) = shared("datasets/kitti-object") else {
            return;
        };
        let loaded = load_scan(kitti::scan(&root, "train").expect("scan"));
        assert!(loaded.quarantined.is_empty(), "{:#?}", loaded.quarantined);
        assert_eq!(loaded.records.len(), 18);
        let expected: BTreeMap<String, usize> = [
            ("Car", 65),
            ("Pedestrian", 22),
            ("Cyclist", 12),
            ("Van", 2),
            ("Truck", 1),
            ("Misc", 1),
            ("DontCare", 37),
        ]
        .into_iter()
        .map(|(class, n)| (class.to_string(), n))
        .collect();
        assert_eq!(class_counts(&loaded), expected);
        let annotations = loaded.records.iter().flat_map(|r| &r.annotations);
        assert!(
            annotations
                .clone()
                .all(|a| a.ignore == (a.class == "DontCare"))
        );

        let first = &loaded.records[0];
        assert_eq!(first.frame.image_name, "image_2/000000.png");
        assert_eq!((first.frame.width, first.frame.height), (1224, 370));
        assert_eq!(first.frame.provenance.source_format, "kitti");
        let camera = first.frame.camera.expect("calibrated");
        assert_close(camera.fx, 707.0493);
        assert_close(camera.fy, 707.0493);
        assert_close(camera.cx, 604.0814);
        assert_close(camera.cy, 180.5066);
        assert_eq!(camera.height_m, Some(1.65));

        // Pedestrian 0.00 0 -0.20 712.40 143.00 810.73 307.92 1.89 0.48 1.20 1.84 1.47 8.41 0.01
        let pedestrian = &first.annotations[0];
        assert_eq!(pedestrian.class, "Pedestrian");
        assert_eq!(pedestrian.truncated, Some(0.0));
        assert_eq!(pedestrian.occluded, Some(0));
        assert!(!pedestrian.ignore && !pedestrian.crowd);
        let b = pedestrian.bbox;
        for (actual, expected) in [b.x0, b.y0, b.x1, b.y1]
            .into_iter()
            .zip([712.40, 143.00, 810.73, 307.92])
        {
            assert_close(actual, expected);
        }
        let kitti = pedestrian.kitti.expect("3D fields");
        assert_close(kitti.alpha, -0.20);
        for (actual, expected) in kitti.dimensions_hwl.into_iter().zip([1.89, 0.48, 1.20]) {
            assert_close(actual, expected);
        }
        for (actual, expected) in kitti.location_xyz.into_iter().zip([1.84, 1.47, 8.41]) {
            assert_close(actual, expected);
        }
        assert_close(kitti.rotation_y, 0.01);
        assert_eq!(kitti.score, None);
    }

    #[test]
    fn dont_care_has_no_truncation_or_occlusion() {
        let Some(dir) = fixture() else { return };
        let loaded = load_fixture(&dir);
        let dont_care = loaded.records[1]
            .annotations
            .iter()
            .find(|a| a.class == "DontCare")
            .expect("DontCare");
        assert!(dont_care.ignore);
        assert_eq!((dont_care.truncated, dont_care.occluded), (None, None));
        assert_close(dont_care.bbox.x0, 503.89);
    }

    #[test]
    fn label_line_with_wrong_field_count() {
        let Some(dir) = fixture() else { return };
        let label = replace_second_label_line(&dir, "Car 0.00 0 1.85 387.63 181.54 423.81");
        let loaded = load_fixture(&dir);
        let problem = loaded.only_problem(QuarantineKind::BadLabelLine, &label, Some(2));
        assert!(problem.reason.contains("found 7"), "{problem}");
        assert_others_load(&loaded);
    }

    #[test]
    fn label_line_with_unparsable_number() {
        let Some(dir) = fixture() else { return };
        let line =
            "Car 0.00 zero 1.85 387.63 181.54 423.81 203.12 1.67 1.87 3.69 -16.53 2.39 58.49 1.57";
        let label = replace_second_label_line(&dir, line);
        let loaded = load_fixture(&dir);
        let problem = loaded.only_problem(QuarantineKind::BadLabelLine, &label, Some(2));
        assert!(problem.reason.contains("occluded"), "{problem}");
        assert_others_load(&loaded);
    }

    #[test]
    fn nan_coordinates() {
        let Some(dir) = fixture() else { return };
        let line = "Car 0.00 0 1.85 nan 181.54 423.81 203.12 1.67 1.87 3.69 -16.53 2.39 58.49 1.57";
        let label = replace_second_label_line(&dir, line);
        let loaded = load_fixture(&dir);
        loaded.only_problem(QuarantineKind::NonFiniteBox, &label, Some(2));
        assert_others_load(&loaded);
    }

    #[test]
    fn inverted_box() {
        let Some(dir) = fixture() else { return };
        let line =
            "Car 0.00 0 1.85 423.81 181.54 387.63 203.12 1.67 1.87 3.69 -16.53 2.39 58.49 1.57";
        let label = replace_second_label_line(&dir, line);
        let loaded = load_fixture(&dir);
        loaded.only_problem(QuarantineKind::InvertedBox, &label, Some(2));
        assert_others_load(&loaded);
    }

    #[test]
    fn every_bad_line_of_a_frame_is_reported() {
        let Some(dir) = fixture() else { return };
        let label = dir.path().join("label_2/000001.txt");
        let good =
            "Car 0.00 0 1.85 387.63 181.54 423.81 203.12 1.67 1.87 3.69 -16.53 2.39 58.49 1.57";
        let outside =
            "Car 0.00 0 1.85 387.63 181.54 5000 203.12 1.67 1.87 3.69 -16.53 2.39 58.49 1.57";
        write(&label, format!("{good}\n\nCar 1 2 3\n{outside}\n{good}\n"));
        let loaded = load_fixture(&dir);
        let found: Vec<_> = loaded
            .quarantined
            .iter()
            .map(|q| (q.kind, q.line))
            .collect();
        assert_eq!(
            found,
            [
                (QuarantineKind::BadLabelLine, Some(3)),
                (QuarantineKind::BoxOutsideImage, Some(4))
            ]
        );
        assert!(
            loaded
                .quarantined
                .iter()
                .all(|q| q.file == label.display().to_string())
        );
        assert_others_load(&loaded);
    }

    #[test]
    fn label_without_image() {
        let Some(dir) = fixture() else { return };
        let orphan = dir.path().join("label_2/000099.txt");
        copy(&dir.path().join("label_2/000001.txt"), &orphan);
        let loaded = load_fixture(&dir);
        loaded.only_problem(QuarantineKind::LabelWithoutImage, &orphan, None);
        assert_eq!(loaded.records.len(), 3);
    }

    #[test]
    fn image_without_label_file() {
        let Some(dir) = fixture() else { return };
        std::fs::remove_file(dir.path().join("label_2/000001.txt")).expect("remove");
        let loaded = load_fixture(&dir);
        let problem = loaded.only_problem(
            QuarantineKind::Malformed,
            &dir.path().join("image_2/000001.png"),
            None,
        );
        assert_eq!(problem.reason, "image has no label file");
        assert_others_load(&loaded);
    }

    #[test]
    fn images_without_label_folder_are_unlabelled() {
        let Some(dir) = fixture() else { return };
        std::fs::remove_dir_all(dir.path().join("label_2")).expect("remove");
        let loaded = load_fixture(&dir);
        assert!(loaded.quarantined.is_empty(), "{:#?}", loaded.quarantined);
        assert_eq!((loaded.records.len(), loaded.box_count()), (3, 0));
    }

    #[test]
    fn missing_calibration() {
        let Some(dir) = fixture() else { return };
        let calib = dir.path().join("calib/000001.txt");
        std::fs::remove_file(&calib).expect("remove");
        let loaded = load_fixture(&dir);
        loaded.only_problem(QuarantineKind::BadCalibration, &calib, None);
        assert_others_load(&loaded);
    }

    #[test]
    fn calibration_with_short_p2() {
        let Some(dir) = fixture() else { return };
        let calib = dir.path().join("calib/000001.txt");
        write(
            &calib,
            "P0: 1 0 0 0 0 1 0 0 0 0 1 0\nP2: 7.0e+02 0 6.0e+02\n",
        );
        let loaded = load_fixture(&dir);
        loaded.only_problem(QuarantineKind::BadCalibration, &calib, Some(2));
        assert_others_load(&loaded);
    }

    #[test]
    fn truncated_png() {
        let Some(dir) = fixture() else { return };
        let image = dir.path().join("image_2/000001.png");
        cut_in_half(&image);
        let loaded = load_fixture(&dir);
        let problem = loaded.only_problem(QuarantineKind::BadImage, &image, None);
        assert!(problem.reason.contains("truncated PNG"), "{problem}");
        assert_others_load(&loaded);
    }

    #[test]
    fn corrupt_png_data_is_caught_only_by_full_decode() {
        let Some(dir) = fixture() else { return };
        let image = dir.path().join("image_2/000001.png");
        let mut bytes = std::fs::read(&image).expect("read");
        let middle = bytes.len() / 2;
        for byte in &mut bytes[middle..middle + 64] {
            *byte = !*byte;
        }
        write(&image, bytes);
        let structural = load_fixture(&dir);
        assert!(
            structural.quarantined.is_empty(),
            "{:#?}",
            structural.quarantined
        );
        let scan = kitti::scan(dir.path(), "train").expect("scan");
        let decoded = load_scan_with(
            scan,
            &LoadOptions {
                verify_decode: true,
            },
        );
        decoded.only_problem(QuarantineKind::BadImage, &image, None);
        assert_others_load(&decoded);
    }

    #[test]
    fn missing_input_is_fatal() {
        let result = kitti::scan(Path::new("/nonexistent/kitti"), "train");
        assert!(matches!(
            result,
            Err(roadsynth_formats::FormatError::NotFound { .. })
        ));
    }
}

/// `load_all` loads the next chunk while the sink works on this one (issue 6: ingest used one core
/// while it wrote).
mod load_all_pipeline {
    use super::*;

    fn kitti_frames() -> Option<Vec<roadsynth_formats::PendingFrame>> {
        let root = shared("datasets/kitti-object")?;
        Some(kitti::scan(&root, "train").expect("scan").frames)
    }

    fn names(frames: Vec<roadsynth_formats::PendingFrame>, chunk: usize) -> Vec<String> {
        let mut names = Vec::new();
        let sunk: Result<(), ()> = load_all(frames, &LoadOptions::default(), chunk, |r| {
            names.push(r.expect("the shared frames load").frame.image_name);
            Ok(())
        });
        sunk.expect("the sink never fails");
        names
    }

    #[test]
    fn issue_6_frames_reach_the_sink_in_input_order_for_any_chunk() {
        let Some(frames) = kitti_frames() else { return };
        // One frame at a time, no threads: the order to keep.
        let expected: Vec<String> = frames
            .iter()
            .map(|f| {
                roadsynth_formats::load(f.clone(), &LoadOptions::default())
                    .expect("the shared frames load")
                    .frame
                    .image_name
            })
            .collect();
        assert_eq!(expected.len(), 18);
        for chunk in [1, 4, 64] {
            assert_eq!(names(frames.clone(), chunk), expected, "chunk {chunk}");
        }
    }

    #[test]
    fn issue_6_a_sink_error_stops_loading_and_is_returned() {
        let Some(frames) = kitti_frames() else { return };
        let mut seen = 0;
        let sunk = load_all(frames, &LoadOptions::default(), 2, |_| {
            seen += 1;
            if seen == 5 { Err("disk full") } else { Ok(()) }
        });
        assert_eq!(sunk, Err("disk full"));
        assert_eq!(seen, 5, "nothing reaches the sink after its error");
    }

    #[test]
    fn issue_6_loading_from_every_thread_of_the_rayon_pool_at_once_finishes() {
        // Each call runs its sink on a worker of the global pool, so all of them are busy: a
        // loader that needed that pool would wait for ever.
        let Some(frames) = kitti_frames() else { return };
        let loaded = rayon::broadcast(|_| names(frames.clone(), 4));
        assert_eq!(loaded.len(), rayon::current_num_threads());
        assert!(loaded.iter().all(|names| names.len() == 18));
    }
}

mod coco_format {
    use super::*;

    fn load_coco(json: &Path, images_root: Option<&Path>) -> Loaded {
        load_scan(coco::scan(json, images_root, "train").expect("scan"))
    }

    #[test]
    fn shared_camvid_train() {
        let Some(root) = shared("datasets/camvid") else {
            return;
        };
        let loaded = load_coco(&root.join("annotations_train.json"), None);
        assert!(loaded.quarantined.is_empty(), "{:#?}", loaded.quarantined);
        assert_eq!((loaded.records.len(), loaded.box_count()), (367, 2811));
        let first = &loaded.records[0].frame;
        assert_eq!(first.image_name, "images/train/0001TP_006690.jpg");
        assert_eq!(
            first.semantic_label.as_deref(),
            Some("labels/train/0001TP_006690.png")
        );
        assert_eq!(
            first.attributes.get("coco_image_id"),
            Some(&serde_json::json!(1))
        );
        assert!(loaded.records.iter().all(|r| {
            r.semantic_label
                .as_ref()
                .is_some_and(|b| b.starts_with(b"\x89PNG"))
        }));
        let classes: Vec<String> = class_counts(&loaded).into_keys().collect();
        assert_eq!(classes, ["bicyclist", "car", "pedestrian"]);
    }

    #[test]
    fn shared_camvid_val() {
        let Some(root) = shared("datasets/camvid") else {
            return;
        };
        let loaded = load_coco(&root.join("annotations_val.json"), None);
        assert!(loaded.quarantined.is_empty(), "{:#?}", loaded.quarantined);
        assert_eq!((loaded.records.len(), loaded.box_count()), (101, 615));
    }

    #[test]
    fn shared_road_animals() {
        let Some(root) = shared("datasets/road-animals") else {
            return;
        };
        let loaded = load_coco(&root.join("annotations.json"), None);
        assert!(loaded.quarantined.is_empty(), "{:#?}", loaded.quarantined);
        assert_eq!((loaded.records.len(), loaded.box_count()), (10, 20));
        let annotations: Vec<_> = loaded.records.iter().flat_map(|r| &r.annotations).collect();
        assert_eq!(annotations.iter().filter(|a| a.crowd).count(), 6);
        assert!(annotations.iter().all(|a| {
            a.attributes
                .get("species")
                .is_some_and(serde_json::Value::is_string)
        }));
        assert!(
            loaded.records[0]
                .frame
                .attributes
                .contains_key("license_note")
        );
    }

    #[test]
    fn shared_coco_animals_vehicles_with_masks() {
        let Some(root) = shared("datasets/coco-animals-vehicles") else {
            return;
        };
        let loaded = load_coco(
            &root.join("instances_subset.json"),
            Some(&root.join("images")),
        );
        assert!(loaded.quarantined.is_empty(), "{:#?}", loaded.quarantined);
        assert_eq!((loaded.records.len(), loaded.box_count()), (116, 972));
        let annotations: Vec<_> = loaded.records.iter().flat_map(|r| &r.annotations).collect();
        assert!(
            annotations
                .iter()
                .any(|a| matches!(a.mask, Some(Mask::Polygons(_))))
        );
        assert!(
            annotations
                .iter()
                .any(|a| matches!(a.mask, Some(Mask::Rle(_))) && a.crowd)
        );
        assert!(
            annotations
                .iter()
                .all(|a| a.attributes.contains_key("coco_id") && a.attributes.contains_key("area"))
        );
        assert!(
            loaded
                .records
                .iter()
                .all(|r| r.frame.attributes.contains_key("coco_split"))
        );
    }

    /// Two `CamVid` frames in a COCO JSON; `annotations` and the images are replaceable per test.
    struct Fixture {
        dir: TempDir,
        json: PathBuf,
    }

    fn fixture(annotations: &str) -> Option<Fixture> {
        let images = camvid_images()?;
        let dir = tempfile::tempdir().expect("tempdir");
        copy(&images[0], &dir.path().join("images/a.jpg"));
        copy(&images[1], &dir.path().join("images/b.jpg"));
        let json = dir.path().join("instances.json");
        write(
            &json,
            format!(
                r#"{{
  "images": [
    {{"id": 1, "file_name": "images/a.jpg", "width": 480, "height": 360, "license": 3}},
    {{"id": 2, "file_name": "images/b.jpg", "width": 480, "height": 360}}
  ],
  "categories": [{{"id": 1, "name": "car"}}, {{"id": 2, "name": "animal"}}],
  "annotations": {annotations}
}}"#
            ),
        );
        Some(Fixture { dir, json })
    }

    const GOOD: &str = r#"[
    {"id": 10, "image_id": 1, "category_id": 1, "bbox": [10, 20, 30, 40], "area": 1200, "iscrowd": 0,
     "segmentation": [[10, 20, 40, 20, 40, 60]], "attributes": {"species": "cow"}, "track": 7},
    {"id": 11, "image_id": 2, "category_id": 2, "bbox": [0, 0, 480, 360], "iscrowd": 1,
     "segmentation": {"size": [360, 480], "counts": [0, 172800]}}
  ]"#;

    #[test]
    fn fields_are_kept() {
        let Some(fx) = fixture(GOOD) else { return };
        let loaded = load_coco(&fx.json, None);
        assert!(loaded.quarantined.is_empty(), "{:#?}", loaded.quarantined);
        let car = &loaded.records[0].annotations[0];
        assert_eq!(
            (car.bbox.x0, car.bbox.y0, car.bbox.x1, car.bbox.y1),
            (10.0, 20.0, 40.0, 60.0)
        );
        assert_eq!(
            car.mask,
            Some(Mask::Polygons(vec![vec![
                10.0, 20.0, 40.0, 20.0, 40.0, 60.0
            ]]))
        );
        let attribute = |key: &str| car.attributes.get(key).cloned();
        assert_eq!(attribute("species"), Some(serde_json::json!("cow")));
        assert_eq!(attribute("track"), Some(serde_json::json!(7)));
        assert_eq!(attribute("coco_id"), Some(serde_json::json!(10)));
        assert_eq!(attribute("area"), Some(serde_json::json!(1200)));
        assert_eq!(
            loaded.records[0].frame.attributes.get("license"),
            Some(&serde_json::json!(3))
        );
        let herd = &loaded.records[1].annotations[0];
        assert!(herd.crowd);
        assert!(matches!(&herd.mask, Some(Mask::Rle(rle)) if rle.size == [360, 480]));
        assert!(loaded.records[0].frame.source_uri.ends_with("images/a.jpg"));
        assert!(Path::new(&loaded.records[0].frame.source_uri).is_absolute());
    }

    #[test]
    fn unknown_category_id() {
        let annotations = r#"[{"id": 10, "image_id": 1, "category_id": 99, "bbox": [10, 20, 30, 40]},
                              {"id": 11, "image_id": 2, "category_id": 1, "bbox": [10, 20, 30, 40]}]"#;
        let Some(fx) = fixture(annotations) else {
            return;
        };
        let loaded = load_coco(&fx.json, None);
        let problem = loaded.only_problem(QuarantineKind::UnknownClass, &fx.json, None);
        assert!(
            problem.reason.contains("annotation id 10") && problem.reason.contains("99"),
            "{problem}"
        );
        assert_eq!(loaded.image_names(), ["images/b.jpg"]);
    }

    #[test]
    fn annotation_for_unknown_image_id() {
        let annotations = r#"[{"id": 10, "image_id": 5, "category_id": 1, "bbox": [10, 20, 30, 40]},
                              {"id": 11, "image_id": 2, "category_id": 1, "bbox": [10, 20, 30, 40]}]"#;
        let Some(fx) = fixture(annotations) else {
            return;
        };
        let loaded = load_coco(&fx.json, None);
        loaded.only_problem(QuarantineKind::LabelWithoutImage, &fx.json, None);
        assert_eq!(loaded.image_names(), ["images/a.jpg", "images/b.jpg"]);
        assert_eq!(loaded.box_count(), 1);
    }

    #[test]
    fn listed_image_missing_on_disk() {
        let Some(fx) = fixture(GOOD) else { return };
        std::fs::remove_file(fx.dir.path().join("images/a.jpg")).expect("remove");
        let loaded = load_coco(&fx.json, None);
        loaded.only_problem(QuarantineKind::LabelWithoutImage, &fx.json, None);
        assert_eq!(loaded.image_names(), ["images/b.jpg"]);
    }

    #[test]
    fn box_outside_image() {
        let annotations = r#"[{"id": 10, "image_id": 1, "category_id": 1, "bbox": [400, 20, 300, 40]},
                              {"id": 11, "image_id": 2, "category_id": 1, "bbox": [10, 20, 30, 40]}]"#;
        let Some(fx) = fixture(annotations) else {
            return;
        };
        let loaded = load_coco(&fx.json, None);
        let problem = loaded.only_problem(QuarantineKind::BoxOutsideImage, &fx.json, None);
        // The box as written and the frame it cost (a fresh-user review found neither).
        assert!(
            problem.reason.starts_with("annotation id 10 (car)")
                && problem.reason.contains("[400, 20, 700, 60] (x0 y0 x1 y1)")
                && problem.reason.ends_with("; frame images/a.jpg left out"),
            "{problem}"
        );
        assert_eq!(loaded.image_names(), ["images/b.jpg"]);
    }

    #[test]
    fn malformed_annotation_entry() {
        let annotations = r#"[{"id": 10, "image_id": 1, "category_id": 1, "bbox": [10, 20, "wide", 40]},
                              {"id": 11, "image_id": 2, "category_id": 1, "bbox": [10, 20, 30, 40]}]"#;
        let Some(fx) = fixture(annotations) else {
            return;
        };
        let loaded = load_coco(&fx.json, None);
        loaded.only_problem(QuarantineKind::Malformed, &fx.json, None);
        assert_eq!(loaded.image_names(), ["images/b.jpg"]);
    }

    #[test]
    fn declared_size_differs_from_image() {
        let Some(fx) = fixture("[]") else { return };
        let text = std::fs::read_to_string(&fx.json).expect("read");
        write(
            &fx.json,
            text.replacen(
                r#""width": 480, "height": 360, "license""#,
                r#""width": 640, "height": 360, "license""#,
                1,
            ),
        );
        let loaded = load_coco(&fx.json, None);
        let problem = loaded.only_problem(QuarantineKind::Malformed, &fx.json, None);
        assert!(
            problem.reason.contains("640x360") && problem.reason.contains("480x360"),
            "{problem}"
        );
        assert_eq!(loaded.image_names(), ["images/b.jpg"]);
    }

    #[test]
    fn malformed_json_has_line_and_column() {
        let Some(fx) = fixture("[]") else { return };
        // Line 3 lacks the comma after `"id": 1`; the parser stops at the quote of the next key, column 14.
        let text = std::fs::read_to_string(&fx.json).expect("read");
        write(
            &fx.json,
            text.replacen(r#"{"id": 1, "file_name""#, r#"{"id": 1 "file_name""#, 1),
        );
        let loaded = load_coco(&fx.json, None);
        let problem = &loaded.quarantined[0];
        assert_eq!(loaded.quarantined.len(), 1);
        assert_eq!(
            (problem.kind, problem.line, problem.column),
            (QuarantineKind::Malformed, Some(3), Some(14))
        );
        assert_eq!(problem.file, fx.json.display().to_string());
        assert!(loaded.records.is_empty());
    }
}

mod yolo_format {
    use super::*;

    /// `images/train/{a,b}.jpg` and `images/val/c.jpg` (real `CamVid` frames, 480x360), with labels
    /// for `a` and `b` only.
    struct Fixture {
        dir: TempDir,
    }

    impl Fixture {
        fn path(&self, rel: &str) -> PathBuf {
            self.dir.path().join(rel)
        }

        fn load(&self) -> Loaded {
            load_scan(yolo::scan(&self.path("data.yaml"), "train").expect("scan"))
        }
    }

    fn fixture() -> Option<Fixture> {
        let images = camvid_images()?;
        let fx = Fixture {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        copy(&images[0], &fx.path("images/train/a.jpg"));
        copy(&images[1], &fx.path("images/train/b.jpg"));
        copy(&images[2], &fx.path("images/val/c.jpg"));
        write(
            &fx.path("labels/train/a.txt"),
            "0 0.5 0.5 0.25 0.5\n1 0.1 0.2 0.3 0.2 0.2 0.4\n",
        );
        write(&fx.path("labels/train/b.txt"), "2 0.25 0.25 0.1 0.1\n");
        write(
            &fx.path("data.yaml"),
            "path: .\ntrain: images/train\nval: images/val\ntest:  # none\nnames: [car, pedestrian, bicyclist]\n",
        );
        Some(fx)
    }

    fn assert_others_load(loaded: &Loaded) {
        assert_eq!(
            loaded.image_names(),
            ["images/train/a.jpg", "images/val/c.jpg"]
        );
    }

    #[test]
    fn boxes_and_polygons_are_scaled_to_pixels() {
        let Some(fx) = fixture() else { return };
        let loaded = fx.load();
        assert!(loaded.quarantined.is_empty(), "{:#?}", loaded.quarantined);
        assert_eq!(
            loaded.image_names(),
            [
                "images/train/a.jpg",
                "images/train/b.jpg",
                "images/val/c.jpg"
            ]
        );
        let splits: Vec<_> = loaded
            .records
            .iter()
            .map(|r| r.frame.split.as_str())
            .collect();
        assert_eq!(splits, ["train", "train", "val"]);

        let a = &loaded.records[0].annotations;
        assert_eq!(a[0].class, "car");
        let b = a[0].bbox;
        for (actual, expected) in [b.x0, b.y0, b.x1, b.y1]
            .into_iter()
            .zip([180.0, 90.0, 300.0, 270.0])
        {
            assert_close(actual, expected);
        }
        assert_eq!(a[1].class, "pedestrian");
        let b = a[1].bbox;
        for (actual, expected) in [b.x0, b.y0, b.x1, b.y1]
            .into_iter()
            .zip([48.0, 72.0, 144.0, 144.0])
        {
            assert_close(actual, expected);
        }
        let Some(Mask::Polygons(polygons)) = &a[1].mask else {
            panic!("polygon mask expected")
        };
        for (actual, expected) in polygons[0]
            .iter()
            .zip([48.0, 72.0, 144.0, 72.0, 96.0, 144.0])
        {
            assert_close(*actual, expected);
        }
        assert_eq!(loaded.records[1].annotations[0].class, "bicyclist");
        // No label file: a background image.
        assert!(loaded.records[2].annotations.is_empty());
        assert_eq!(loaded.records[0].frame.provenance.source_format, "yolo");
    }

    #[test]
    fn names_as_map() {
        let Some(fx) = fixture() else { return };
        write(
            &fx.path("data.yaml"),
            "train: images/train\nnames:\n  0: car\n  1: pedestrian\n  2: bicyclist\n",
        );
        let loaded = fx.load();
        assert!(loaded.quarantined.is_empty(), "{:#?}", loaded.quarantined);
        assert_eq!(
            class_counts(&loaded).into_keys().collect::<Vec<_>>(),
            ["bicyclist", "car", "pedestrian"]
        );
    }

    #[test]
    fn label_line_with_wrong_field_count() {
        let Some(fx) = fixture() else { return };
        let label = fx.path("labels/train/b.txt");
        write(&label, "2 0.25 0.25 0.1 0.1\n1 0.5 0.5 0.1\n");
        let loaded = fx.load();
        loaded.only_problem(QuarantineKind::BadLabelLine, &label, Some(2));
        assert_others_load(&loaded);
    }

    #[test]
    fn nan_coordinates() {
        let Some(fx) = fixture() else { return };
        let label = fx.path("labels/train/b.txt");
        write(&label, "0 nan 0.5 0.1 0.1\n");
        let loaded = fx.load();
        loaded.only_problem(QuarantineKind::NonFiniteBox, &label, Some(1));
        assert_others_load(&loaded);
    }

    #[test]
    fn inverted_box() {
        let Some(fx) = fixture() else { return };
        let label = fx.path("labels/train/b.txt");
        write(&label, "\n0 0.5 0.5 -0.1 0.1\n");
        let loaded = fx.load();
        loaded.only_problem(QuarantineKind::InvertedBox, &label, Some(2));
        assert_others_load(&loaded);
    }

    #[test]
    fn box_outside_image() {
        let Some(fx) = fixture() else { return };
        let label = fx.path("labels/train/b.txt");
        write(&label, "2 0.25 0.25 0.1 0.1\n0 1.8 0.5 0.2 0.2\n");
        let loaded = fx.load();
        loaded.only_problem(QuarantineKind::BoxOutsideImage, &label, Some(2));
        assert_others_load(&loaded);
    }

    #[test]
    fn unknown_class_id() {
        let Some(fx) = fixture() else { return };
        let label = fx.path("labels/train/b.txt");
        write(&label, "7 0.5 0.5 0.1 0.1\n");
        let loaded = fx.load();
        loaded.only_problem(QuarantineKind::UnknownClass, &label, Some(1));
        assert_others_load(&loaded);
    }

    #[test]
    fn label_without_image() {
        let Some(fx) = fixture() else { return };
        let orphan = fx.path("labels/train/ghost.txt");
        write(&orphan, "0 0.5 0.5 0.1 0.1\n");
        let loaded = fx.load();
        loaded.only_problem(QuarantineKind::LabelWithoutImage, &orphan, None);
        assert_eq!(loaded.records.len(), 3);
    }

    #[test]
    fn truncated_jpeg() {
        let Some(fx) = fixture() else { return };
        let image = fx.path("images/train/b.jpg");
        cut_in_half(&image);
        let loaded = fx.load();
        let problem = loaded.only_problem(QuarantineKind::BadImage, &image, None);
        assert!(problem.reason.contains("truncated JPEG"), "{problem}");
        assert_others_load(&loaded);
    }

    #[test]
    fn undecodable_image() {
        let Some(fx) = fixture() else { return };
        let image = fx.path("images/train/b.jpg");
        write(&image, noise(4096));
        let loaded = fx.load();
        let problem = loaded.only_problem(QuarantineKind::BadImage, &image, None);
        assert!(problem.reason.contains("not a JPEG or PNG"), "{problem}");
        assert_others_load(&loaded);
    }

    #[test]
    fn duplicate_image() {
        let Some(fx) = fixture() else { return };
        let duplicate = fx.path("images/val/c.jpg");
        copy(&fx.path("images/train/a.jpg"), &duplicate);
        let loaded = fx.load();
        let problem = loaded.only_problem(QuarantineKind::Duplicate, &duplicate, None);
        assert!(problem.reason.contains("images/train/a.jpg"), "{problem}");
        assert_eq!(
            loaded.image_names(),
            ["images/train/a.jpg", "images/train/b.jpg"]
        );
    }

    #[test]
    fn malformed_yaml_has_line_and_column() {
        let Some(fx) = fixture() else { return };
        let yaml = fx.path("data.yaml");
        write(&yaml, "path: .\ntrain: images/train: oops\nnames: [car]\n");
        let loaded = fx.load();
        let problem = &loaded.quarantined[0];
        assert_eq!(loaded.quarantined.len(), 1);
        assert_eq!(
            (problem.kind, problem.line, problem.column),
            (QuarantineKind::Malformed, Some(2), Some(20))
        );
        assert_eq!(problem.file, yaml.display().to_string());
        assert!(loaded.records.is_empty());
    }

    #[test]
    fn missing_split_folder() {
        let Some(fx) = fixture() else { return };
        let yaml = fx.path("data.yaml");
        write(
            &yaml,
            "train: images/train\nval: images/nowhere\nnames: [car, pedestrian, bicyclist]\n",
        );
        let loaded = fx.load();
        let problem = loaded.only_problem(QuarantineKind::Malformed, &yaml, None);
        assert_eq!(problem.split, "val");
        assert_eq!(loaded.records.len(), 2);
    }
}

mod bdd100k_format {
    use super::*;

    /// Two `CamVid` frames with BDD100K labels; returns the folder and the labels JSON.
    fn fixture(labels: &str) -> Option<(TempDir, PathBuf)> {
        let images = camvid_images()?;
        let dir = tempfile::tempdir().expect("tempdir");
        copy(&images[0], &dir.path().join("images/a.jpg"));
        copy(&images[1], &dir.path().join("images/b.jpg"));
        let json = dir.path().join("labels.json");
        write(&json, labels);
        Some((dir, json))
    }

    const LABELS: &str = r#"[
  {"name": "a.jpg", "videoName": "clip-1", "timestamp": 10000, "frameIndex": 3,
   "attributes": {"weather": "rainy", "scene": "city street", "timeofday": "night"},
   "labels": [
     {"id": "1", "category": "car", "box2d": {"x1": 10.5, "y1": 20, "x2": 110, "y2": 90.25},
      "attributes": {"occluded": true, "truncated": false, "trafficLightColor": "none"}},
     {"id": "2", "category": "lane/single white", "poly2d": [{"vertices": [[0, 0], [10, 10]], "types": "LL"}]},
     {"id": "3", "category": "pedestrian", "box2d": {"x1": 200, "y1": 100, "x2": 220, "y2": 160}}
   ]},
  {"name": "b.jpg", "attributes": {"weather": "clear"}, "labels": null}
]"#;

    fn load_bdd(json: &Path, images_root: &Path) -> Loaded {
        load_scan(bdd100k::scan(json, Some(images_root), "val").expect("scan"))
    }

    #[test]
    fn boxes_and_attributes() {
        let Some((dir, json)) = fixture(LABELS) else {
            return;
        };
        let loaded = load_bdd(&json, &dir.path().join("images"));
        assert!(loaded.quarantined.is_empty(), "{:#?}", loaded.quarantined);
        assert_eq!(loaded.image_names(), ["a.jpg", "b.jpg"]);
        let a = &loaded.records[0];
        assert_eq!(a.frame.split, "val");
        assert_eq!(a.frame.sequence.as_deref(), Some("clip-1"));
        assert_eq!(a.frame.timestamp_ms, Some(10000.0));
        assert_eq!(
            a.frame.attributes.get("timeofday"),
            Some(&serde_json::json!("night"))
        );
        assert_eq!(
            a.frame.attributes.get("frameIndex"),
            Some(&serde_json::json!(3))
        );
        // The lane (poly2d only) is not an object.
        assert_eq!(a.annotations.len(), 2);
        let car = &a.annotations[0];
        assert_eq!(car.class, "car");
        assert_eq!(
            (car.bbox.x0, car.bbox.y0, car.bbox.x1, car.bbox.y1),
            (10.5, 20.0, 110.0, 90.25)
        );
        assert_eq!((car.occluded, car.truncated), (Some(1), Some(0.0)));
        assert_eq!(
            car.attributes.get("trafficLightColor"),
            Some(&serde_json::json!("none"))
        );
        assert_eq!(car.attributes.get("bdd_id"), Some(&serde_json::json!("1")));
        assert!(!car.attributes.contains_key("occluded"));
        let pedestrian = &a.annotations[1];
        assert_eq!((pedestrian.occluded, pedestrian.truncated), (None, None));
        assert!(loaded.records[1].annotations.is_empty());
        assert_eq!(loaded.records[1].frame.provenance.source_format, "bdd100k");
    }

    #[test]
    fn inverted_box() {
        let labels = LABELS.replace(
            r#""x1": 200, "y1": 100, "x2": 220"#,
            r#""x1": 220, "y1": 100, "x2": 200"#,
        );
        let Some((dir, json)) = fixture(&labels) else {
            return;
        };
        let loaded = load_bdd(&json, &dir.path().join("images"));
        let problem = loaded.only_problem(QuarantineKind::InvertedBox, &json, None);
        assert!(
            problem
                .reason
                .starts_with("frame a.jpg label id \"3\" (pedestrian)"),
            "{problem}"
        );
        assert_eq!(loaded.image_names(), ["b.jpg"]);
    }

    #[test]
    fn malformed_json_has_line_and_column() {
        // Line 3 lacks the comma after the name; the parser stops at the quote of the next key, column 20.
        let labels = "[\n  {\"name\": \"a.jpg\", \"labels\": []},\n  {\"name\": \"b.jpg\" \"labels\": []}\n]\n";
        let Some((dir, json)) = fixture(labels) else {
            return;
        };
        let loaded = load_bdd(&json, &dir.path().join("images"));
        let problem = &loaded.quarantined[0];
        assert_eq!(loaded.quarantined.len(), 1);
        assert_eq!(
            (problem.kind, problem.line, problem.column),
            (QuarantineKind::Malformed, Some(3), Some(20))
        );
        assert_eq!(problem.file, json.display().to_string());
    }

    #[test]
    fn malformed_frame_entry() {
        let labels = r#"[{"name": "a.jpg"}, {"labels": []}]"#;
        let Some((dir, json)) = fixture(labels) else {
            return;
        };
        let loaded = load_bdd(&json, &dir.path().join("images"));
        let problem = loaded.only_problem(QuarantineKind::Malformed, &json, None);
        assert!(problem.reason.starts_with("frame #1"), "{problem}");
        assert_eq!(loaded.image_names(), ["a.jpg"]);
    }
}

mod export_format {
    use super::*;

    use roadsynth_dataset::{Dataset, DatasetWriter, Projection, WriteOptions};
    use roadsynth_formats::export::{self, ExportError, ExportSummary};
    use roadsynth_types::{
        Annotation, Attributes, BBox, Camera, Frame, FrameId, ImageFormat, Kitti3d, Origin,
        Provenance, ProvenanceStep, Rle, RleCounts,
    };
    use serde_json::{Value, json};

    /// Writes what an ingest loads into a new dataset at `root`, which must quarantine nothing.
    fn ingest(scan: Scan, root: &Path) -> Dataset {
        let mut writer = DatasetWriter::create(root, WriteOptions::default()).expect("create");
        for item in scan.quarantined {
            writer.quarantine(item);
        }
        load_all(
            scan.frames,
            &LoadOptions::default(),
            16,
            |result| match result {
                Ok(record) => writer.write(&record),
                Err(problems) => {
                    for problem in problems {
                        writer.quarantine(problem);
                    }
                    Ok(())
                }
            },
        )
        .expect("write frames");
        let manifest = writer.commit(json!({"test": "export"})).expect("commit");
        assert_eq!(manifest.quarantined, 0);
        Dataset::open(root).expect("open")
    }

    fn read_json(path: &Path) -> Value {
        serde_json::from_slice(&std::fs::read(path).expect("read json")).expect("parse json")
    }

    fn array<'a>(json: &'a Value, key: &str) -> &'a Vec<Value> {
        json[key]
            .as_array()
            .unwrap_or_else(|| panic!("{key} is an array"))
    }

    /// The names in a folder, sorted (to see that no `.tmp-` folder is left behind).
    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn all_records(dataset: &Dataset) -> Vec<FrameRecord> {
        dataset
            .all_frames(Projection::Full)
            .expect("frames")
            .map(|r| r.expect("frame"))
            .collect()
    }

    #[test]
    fn coco_of_shared_camvid_val() {
        let Some(root) = shared("datasets/camvid") else {
            return;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let source_json = root.join("annotations_val.json");
        let scan = coco::scan(&source_json, None, "val").expect("scan");
        let dataset = ingest(scan, &dir.path().join("dataset"));
        let out = dir.path().join("coco");
        let summary = export::to_coco(&dataset, &out).expect("export");
        assert_eq!(
            summary,
            ExportSummary {
                frames: 101,
                annotations: 615,
                skipped: 0
            }
        );

        let exported = read_json(&out.join("annotations.json"));
        assert_eq!(
            exported["info"]["version"],
            json!(dataset.manifest().version)
        );
        let images = array(&exported, "images");
        let ids: Vec<u64> = images
            .iter()
            .map(|i| i["id"].as_u64().expect("id"))
            .collect();
        assert_eq!(ids, (1..=101).collect::<Vec<_>>());
        let categories: Vec<(u64, &str)> = array(&exported, "categories")
            .iter()
            .map(|c| {
                (
                    c["id"].as_u64().expect("id"),
                    c["name"].as_str().expect("name"),
                )
            })
            .collect();
        assert_eq!(
            categories,
            [(1, "bicyclist"), (2, "car"), (3, "pedestrian")]
        );

        // Every image byte-identical to its source file, named after it.
        for image in images {
            let file_name = image["file_name"].as_str().expect("file_name");
            let source_image = image["source_image"].as_str().expect("source_image");
            let stem = Path::new(source_image).file_stem().expect("stem");
            assert_eq!(
                file_name,
                format!("images/val/{}.jpg", stem.to_string_lossy())
            );
            let bytes = std::fs::read(out.join(file_name)).expect("exported image");
            assert!(
                bytes == std::fs::read(root.join(source_image)).expect("source image"),
                "{file_name} differs from {source_image}"
            );
            assert_eq!(
                image["frame_id"],
                json!(FrameId::from_image_bytes(&bytes).as_str())
            );
            assert_eq!(
                (image["width"].as_u64(), image["height"].as_u64()),
                (Some(480), Some(360))
            );
            assert_eq!(image["split"], json!("val"));
            assert_eq!(image["provenance"]["source_format"], json!("coco"));
            assert!(image["semantic_label"].is_string());
        }

        // Boxes, areas and categories as in the source, image by image, in order.
        let source = read_json(&source_json);
        let source_category: BTreeMap<u64, &str> = array(&source, "categories")
            .iter()
            .map(|c| {
                (
                    c["id"].as_u64().expect("id"),
                    c["name"].as_str().expect("name"),
                )
            })
            .collect();
        let source_file: BTreeMap<u64, &str> = array(&source, "images")
            .iter()
            .map(|i| {
                (
                    i["id"].as_u64().expect("id"),
                    i["file_name"].as_str().expect("name"),
                )
            })
            .collect();
        let exported_file: BTreeMap<u64, &str> = images
            .iter()
            .map(|i| {
                (
                    i["id"].as_u64().expect("id"),
                    i["source_image"].as_str().expect("name"),
                )
            })
            .collect();
        let by_image = |json: &Value,
                        files: &BTreeMap<u64, &str>,
                        categories: &BTreeMap<u64, &str>| {
            let mut out: BTreeMap<String, Vec<(String, Vec<f64>, f64)>> = BTreeMap::new();
            for a in array(json, "annotations") {
                let file = files[&a["image_id"].as_u64().expect("image_id")].to_string();
                let class = categories[&a["category_id"].as_u64().expect("category")].to_string();
                let bbox: Vec<f64> = a["bbox"]
                    .as_array()
                    .expect("bbox")
                    .iter()
                    .map(|v| v.as_f64().expect("number"))
                    .collect();
                let area = a["area"].as_f64().expect("area");
                out.entry(file).or_default().push((class, bbox, area));
            }
            out
        };
        let exported_categories: BTreeMap<u64, &str> = categories.iter().copied().collect();
        let expected = by_image(&source, &source_file, &source_category);
        let got = by_image(&exported, &exported_file, &exported_categories);
        assert_eq!(
            expected.keys().collect::<Vec<_>>(),
            got.keys().collect::<Vec<_>>()
        );
        for (file, expected) in &expected {
            let got = &got[file];
            assert_eq!(got.len(), expected.len(), "{file}");
            for ((gc, gb, ga), (ec, eb, ea)) in got.iter().zip(expected) {
                assert_eq!(gc, ec, "{file}");
                assert!(
                    gb.iter().zip(eb).all(|(g, e)| (g - e).abs() < 1e-9),
                    "{file}: {gb:?} != {eb:?}"
                );
                assert_close(*ga, *ea);
            }
        }
        let annotation_ids: Vec<u64> = array(&exported, "annotations")
            .iter()
            .map(|a| a["id"].as_u64().expect("id"))
            .collect();
        assert_eq!(annotation_ids, (1..=615).collect::<Vec<_>>());
        assert!(
            array(&exported, "annotations")
                .iter()
                .all(|a| a["attributes"]["origin"] == json!({"kind": "real"})
                    && a["iscrowd"] == json!(0))
        );

        // Stable ids: a second export is byte-identical.
        let again = dir.path().join("coco-again");
        export::to_coco(&dataset, &again).expect("export again");
        assert!(
            std::fs::read(out.join("annotations.json")).expect("first")
                == std::fs::read(again.join("annotations.json")).expect("second"),
            "two exports of one version differ"
        );
        assert_eq!(entries(dir.path()), ["coco", "coco-again", "dataset"]);
    }

    #[test]
    fn yolo_round_trip_of_shared_kitti() {
        let Some(root) = shared("datasets/kitti-object") else {
            return;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let dataset = ingest(
            kitti::scan(&root, "train").expect("scan"),
            &dir.path().join("dataset"),
        );
        let out = dir.path().join("yolo");
        let summary = export::to_yolo(&dataset, &out).expect("export");
        // 37 DontCare regions are not boxes for YOLO.
        assert_eq!(
            summary,
            ExportSummary {
                frames: 18,
                annotations: 103,
                skipped: 37
            }
        );
        let yaml: serde_norway::Value = serde_norway::from_slice(
            &std::fs::read(out.join("data.yaml")).expect("read data.yaml"),
        )
        .expect("parse data.yaml");
        let root = std::path::absolute(&out).expect("absolute");
        assert_eq!(yaml["path"].as_str(), root.to_str());
        assert_eq!(yaml["train"].as_str(), Some("images/train"));
        for (i, class) in dataset.manifest().classes.iter().enumerate() {
            assert_eq!(yaml["names"][i].as_str(), Some(class.as_str()));
        }

        let back = load_scan(yolo::scan(&out.join("data.yaml"), "train").expect("scan export"));
        assert!(back.quarantined.is_empty(), "{:#?}", back.quarantined);
        let original = all_records(&dataset);
        let ids = |records: &[FrameRecord]| -> Vec<FrameId> {
            records.iter().map(|r| r.frame.id.clone()).collect()
        };
        // Same bytes (the id is their hash), same order.
        assert_eq!(ids(&back.records), ids(&original));
        let mut expected_counts = BTreeMap::new();
        for a in original.iter().flat_map(|r| &r.annotations) {
            if !a.crowd && !a.ignore {
                *expected_counts.entry(a.class.clone()).or_insert(0) += 1;
            }
        }
        assert_eq!(class_counts(&back), expected_counts);
        for (got, expected) in back.records.iter().zip(&original) {
            assert!(got.image == expected.image);
            assert_eq!(got.frame.split, "train");
            let name = Path::new(&expected.frame.image_name)
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            assert_eq!(got.frame.image_name, format!("images/train/{name}"));
            let kept: Vec<&Annotation> = expected
                .annotations
                .iter()
                .filter(|a| !a.crowd && !a.ignore)
                .collect();
            assert_eq!(
                got.annotations.len(),
                kept.len(),
                "{}",
                got.frame.image_name
            );
            for (g, e) in got.annotations.iter().zip(kept) {
                assert_eq!(g.class, e.class);
                let (g, e) = (g.bbox, e.bbox);
                for (a, b) in [(g.x0, e.x0), (g.y0, e.y0), (g.x1, e.x1), (g.y1, e.y1)] {
                    assert!((a - b).abs() < 1e-3, "{g:?} != {e:?}");
                }
            }
        }
        assert_eq!(entries(dir.path()), ["dataset", "yolo"]);
    }

    /// A real PNG (export never decodes, but YOLO re-ingest does).
    fn png(width: u32, height: u32, seed: u8) -> Vec<u8> {
        let img =
            image::RgbImage::from_fn(width, height, |x, y| image::Rgb([seed, x as u8, y as u8]));
        let mut bytes = Vec::new();
        img.write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .expect("encode png");
        bytes
    }

    fn record(
        split: &str,
        image_name: &str,
        seed: u8,
        annotations: Vec<Annotation>,
    ) -> FrameRecord {
        let image = png(64, 48, seed);
        FrameRecord {
            frame: Frame {
                id: FrameId::from_image_bytes(&image),
                split: split.into(),
                source_uri: format!("/data/{image_name}"),
                image_name: image_name.into(),
                image_format: ImageFormat::Png,
                width: 64,
                height: 48,
                camera: None,
                semantic_label: None,
                sequence: None,
                timestamp_ms: None,
                attributes: Attributes::new(),
                provenance: Provenance {
                    source_format: "test".into(),
                    parent: None,
                    steps: Vec::new(),
                },
            },
            annotations,
            image: Some(image),
            semantic_label: None,
        }
    }

    /// Three frames: two in train whose names share the stem `a`, one in val; a real, a generated,
    /// a crowd and an ignore annotation.
    fn hand_made(root: &Path) -> Dataset {
        let mut car = Annotation::real("car", BBox::new(8.0, 4.0, 24.0, 20.0));
        car.truncated = Some(0.3);
        car.occluded = Some(1);
        car.kitti = Some(Kitti3d {
            alpha: -0.2,
            dimensions_hwl: [1.5, 1.6, 3.9],
            location_xyz: [1.0, 1.65, 20.0],
            rotation_y: 0.1,
            score: None,
        });
        let mut deer = Annotation::real("deer", BBox::new(30.0, 10.0, 40.0, 30.0));
        deer.origin = Origin::Generated {
            operation: "insert_objects".into(),
            scenario: "animals".into(),
            seed: 7,
        };
        deer.attributes.insert("depth_m".into(), json!(23.5));
        let mut herd = Annotation::real("sheep", BBox::new(0.0, 0.0, 4.0, 4.0));
        herd.crowd = true;
        herd.attributes.insert("area".into(), json!(16));
        herd.mask = Some(Mask::Rle(Rle {
            size: [4, 4],
            counts: RleCounts::Runs(vec![0, 16]),
        }));
        let mut dont_care = Annotation::real("car", BBox::new(50.0, 0.0, 60.0, 10.0));
        dont_care.ignore = true;

        let mut b = record("val", "images/val/b.png", 3, Vec::new());
        b.frame.camera = Some(Camera::from_projection([
            700.0, 0.0, 32.0, 0.0, 0.0, 700.0, 24.0, 0.0, 0.0, 0.0, 1.0, 0.0,
        ]));
        b.frame.semantic_label = Some("labels/val/b.png".into());
        b.frame.attributes.insert("weather".into(), json!("fog"));
        b.frame.provenance.steps.push(ProvenanceStep {
            operation: "fog".into(),
            scenario: Some("weather-fog".into()),
            seed: Some(1),
            params: json!({"visibility_m": 150.0}),
            tool_version: "0".into(),
        });

        let mut writer = DatasetWriter::create(root, WriteOptions::default()).expect("create");
        for r in [
            record("train", "cam1/a.png", 1, vec![car, deer, herd, dont_care]),
            record("train", "cam2/a.png", 2, Vec::new()),
            b,
        ] {
            writer.write(&r).expect("write");
        }
        writer.commit(json!({})).expect("commit");
        Dataset::open(root).expect("open")
    }

    #[test]
    fn coco_keeps_origin_crowd_ignore_and_frame_metadata() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dataset = hand_made(&dir.path().join("dataset"));
        let out = dir.path().join("coco");
        let summary = export::to_coco(&dataset, &out).expect("export");
        assert_eq!(
            summary,
            ExportSummary {
                frames: 3,
                annotations: 4,
                skipped: 0
            }
        );
        let exported = read_json(&out.join("annotations.json"));
        let images = array(&exported, "images");
        let second_id = images[1]["frame_id"].as_str().expect("frame_id");
        let file_names: Vec<&str> = images
            .iter()
            .map(|i| i["file_name"].as_str().expect("file_name"))
            .collect();
        assert_eq!(
            file_names,
            [
                "images/train/a.png".to_string(),
                format!("images/train/a-{}.png", &second_id[..8]),
                "images/val/b.png".to_string(),
            ]
        );
        for image in images {
            let file = image["file_name"].as_str().expect("file_name");
            let bytes = std::fs::read(out.join(file)).expect("image");
            assert_eq!(
                image["frame_id"],
                json!(FrameId::from_image_bytes(&bytes).as_str())
            );
        }
        let val = &images[2];
        assert_eq!(val["id"], json!(3));
        assert_eq!(val["source_image"], json!("images/val/b.png"));
        assert_eq!(val["camera"]["fx"], json!(700.0));
        assert_eq!(val["source_semantic_label"], json!("labels/val/b.png"));
        assert_eq!(val["attributes"], json!({"weather": "fog"}));
        assert_eq!(
            val["provenance"]["steps"][0],
            json!({"operation": "fog", "scenario": "weather-fog", "seed": 1,
                   "params": {"visibility_m": 150.0}, "tool_version": "0"})
        );
        assert!(images[0].get("camera").is_none() && images[0].get("semantic_label").is_none());

        let categories = array(&exported, "categories");
        assert_eq!(
            *categories,
            [
                json!({"id": 1, "name": "car"}),
                json!({"id": 2, "name": "deer"}),
                json!({"id": 3, "name": "sheep"})
            ]
        );
        let annotations = array(&exported, "annotations");
        let [car, deer, herd, dont_care] = &annotations[..] else {
            panic!("four annotations: {annotations:#?}")
        };
        assert_eq!(
            *car,
            json!({"id": 1, "image_id": 1, "category_id": 1, "bbox": [8.0, 4.0, 16.0, 16.0],
                   "area": 256.0, "iscrowd": 0,
                   "attributes": {"origin": {"kind": "real"}, "truncated": 0.3, "occluded": 1,
                                  "kitti": {"alpha": -0.2, "dimensions_hwl": [1.5, 1.6, 3.9],
                                            "location_xyz": [1.0, 1.65, 20.0], "rotation_y": 0.1}}})
        );
        assert_eq!(deer["category_id"], json!(2));
        assert_eq!(
            deer["attributes"],
            json!({"depth_m": 23.5, "origin": {"kind": "generated", "operation": "insert_objects",
                                                "scenario": "animals", "seed": 7}})
        );
        assert_eq!(herd["iscrowd"], json!(1));
        assert_eq!(herd["area"], json!(16));
        assert_eq!(
            herd["segmentation"],
            json!({"size": [4, 4], "counts": [0, 16]})
        );
        assert!(car.get("segmentation").is_none());
        assert_eq!(dont_care["iscrowd"], json!(1));
        assert_eq!(dont_care["attributes"]["ignore"], json!(true));
        assert_eq!(entries(dir.path()), ["coco", "dataset"]);
    }

    #[test]
    fn yolo_skips_crowd_and_ignore_and_writes_empty_label_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dataset = hand_made(&dir.path().join("dataset"));
        let out = dir.path().join("yolo");
        let summary = export::to_yolo(&dataset, &out).expect("export");
        assert_eq!(
            summary,
            ExportSummary {
                frames: 3,
                annotations: 2,
                skipped: 2
            }
        );
        let text = |rel: &str| std::fs::read_to_string(out.join(rel)).expect("read");
        assert_eq!(
            text("labels/train/a.txt"),
            "0 0.250000 0.250000 0.250000 0.333333\n1 0.546875 0.416667 0.156250 0.416667\n"
        );
        let second = &all_records(&dataset)[1].frame.id;
        let short = &second.as_str()[..8];
        assert_eq!(text(&format!("labels/train/a-{short}.txt")), "");
        assert!(out.join(format!("images/train/a-{short}.png")).is_file());
        assert_eq!(text("labels/val/b.txt"), "");
        assert_eq!(
            text("data.yaml"),
            format!(
                "path: {}\ntrain: images/train\nval: images/val\nnames:\n  0: car\n  1: deer\n  2: sheep\n",
                std::path::absolute(&out).expect("absolute").display()
            )
        );
        let back = load_scan(yolo::scan(&out.join("data.yaml"), "train").expect("scan"));
        assert!(back.quarantined.is_empty(), "{:#?}", back.quarantined);
        assert_eq!(back.records.len(), 3);
        assert_eq!(back.box_count(), 2);
    }

    #[test]
    fn exports_only_the_splits_asked_for() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dataset = hand_made(&dir.path().join("dataset"));
        let val = ["val".to_string()];
        let coco = dir.path().join("coco");
        let summary = export::to_coco_splits(&dataset, &coco, Some(&val)).expect("coco");
        assert_eq!(summary.frames, 1);
        let json: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(coco.join("annotations.json")).expect("read"),
        )
        .expect("json");
        assert_eq!(json["images"].as_array().map(Vec::len), Some(1));
        // The id the whole export gives it (after train's 2 frames), so predictions on this
        // export score against the dataset's val split.
        assert_eq!(json["images"][0]["id"], json!(3));
        assert_eq!(
            Some(3),
            dataset.manifest().first_export_id("val"),
            "the export's numbering"
        );
        assert_eq!(json["images"][0]["split"], json!("val"));
        for a in json["annotations"].as_array().expect("annotations") {
            assert_eq!(a["image_id"], json!(3));
        }
        assert!(!coco.join("images/train").exists());
        let yolo = dir.path().join("yolo");
        export::to_yolo_splits(&dataset, &yolo, Some(&val)).expect("yolo");
        let yaml = std::fs::read_to_string(yolo.join("data.yaml")).expect("data.yaml");
        assert!(
            yaml.contains("val: images/val") && !yaml.contains("train:"),
            "{yaml}"
        );
        let missing =
            export::to_coco_splits(&dataset, &dir.path().join("x"), Some(&["test".into()]))
                .expect_err("no such split");
        assert!(missing.to_string().contains("\"test\""), "{missing}");
        assert!(!dir.path().join("x").exists());
    }

    #[test]
    fn refuses_a_non_empty_output() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dataset = hand_made(&dir.path().join("dataset"));
        let out = dir.path().join("out");
        write(&out.join("keep.txt"), "mine");
        let refused = [
            export::to_coco(&dataset, &out),
            export::to_yolo(&dataset, &out),
        ];
        for result in refused {
            let err = result.expect_err("non-empty output");
            assert!(
                matches!(&err, ExportError::OutputNotEmpty { path } if *path == out),
                "{err}"
            );
            assert!(
                err.to_string().contains(&out.display().to_string()),
                "{err}"
            );
        }
        assert_eq!(entries(&out), ["keep.txt"]);
        // A file where the folder should go is refused too.
        let file = dir.path().join("file");
        write(&file, "x");
        assert!(matches!(
            export::to_yolo(&dataset, &file),
            Err(ExportError::OutputNotEmpty { .. })
        ));
        // An existing empty folder is fine.
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).expect("mkdir");
        export::to_coco(&dataset, &empty).expect("export into an empty folder");
        assert!(empty.join("annotations.json").is_file());
        assert_eq!(entries(dir.path()), ["dataset", "empty", "file", "out"]);
    }
}
