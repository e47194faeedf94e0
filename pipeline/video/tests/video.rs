//! Video ingest on the shared dashcam clips.

use roadsynth_video::{VideoOptions, VideoSummary, ingest_video};

fn ingest(rel: &str, every: u32) -> Option<(VideoSummary, Vec<roadsynth_types::FrameRecord>)> {
    let path = roadsynth_testkit::shared(rel)?;
    let mut frames = Vec::new();
    let summary = ingest_video::<roadsynth_video::VideoError>(
        &path,
        &VideoOptions {
            split: "train".into(),
            every,
        },
        |item| {
            frames.push(item.expect("shared clips decode"));
            Ok(())
        },
    )
    .expect("ingest");
    Some((summary, frames))
}

#[test]
fn udacity_test_video_has_38_frames_with_timestamps() {
    let Some((summary, frames)) = ingest(
        "datasets/dashcam/udacity_vehicle_detection/test_video.mp4",
        1,
    ) else {
        return;
    };
    assert_eq!(
        summary,
        VideoSummary {
            decoded: 38,
            kept: 38
        }
    );
    let f = &frames[37].frame;
    assert_eq!((f.width, f.height), (1280, 720));
    // 25 fps: frame 37 is at 1480 ms.
    assert!((f.timestamp_ms.expect("timestamp") - 1480.0).abs() < 1e-6);
    assert_eq!(f.image_name, "test_video_000037.jpg");
    let bytes = frames[0].image.as_ref().expect("bytes");
    assert_eq!(&bytes[..2], &[0xFF, 0xD8], "frames are stored as JPEG");
}

#[test]
fn every_nth_frame_of_solid_white_right() {
    let Some((summary, frames)) =
        ingest("datasets/dashcam/udacity_lanelines/solidWhiteRight.mp4", 10)
    else {
        return;
    };
    assert_eq!(summary.decoded, 221);
    assert_eq!(summary.kept, 23);
    let stamps: Vec<f64> = frames
        .iter()
        .map(|r| r.frame.timestamp_ms.expect("timestamp"))
        .collect();
    assert!(
        stamps
            .windows(2)
            .all(|w| (w[1] - w[0] - 400.0).abs() < 1e-6),
        "{stamps:?}"
    );
}

#[test]
fn unreadable_video_is_quarantined_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("broken.mp4");
    std::fs::write(&path, b"this is not a video").expect("write");
    let mut items = Vec::new();
    let summary = ingest_video::<roadsynth_video::VideoError>(
        &path,
        &VideoOptions {
            split: "train".into(),
            every: 1,
        },
        |item| {
            items.push(item);
            Ok(())
        },
    )
    .expect("ingest");
    assert_eq!(summary.kept, 0);
    let q = items.pop().expect("one item").expect_err("quarantined");
    assert!(q.file.ends_with("broken.mp4"), "{q}");
}

/// A clip cut short used to be ingested as if it were whole: its first frames kept, nothing
/// quarantined, status 0. The frames it has are still kept; the shortfall is quarantined.
#[test]
fn issue_2_a_truncated_clip_keeps_its_frames_and_quarantines_the_rest() {
    let Some(clip) =
        roadsynth_testkit::shared("datasets/dashcam/udacity_vehicle_detection/test_video.mp4")
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cut.mp4");
    let bytes = std::fs::read(&clip).expect("read");
    std::fs::write(&path, &bytes[..bytes.len() * 3 / 8]).expect("write");
    let (mut kept, mut quarantined) = (0, Vec::new());
    let summary = ingest_video::<roadsynth_video::VideoError>(
        &path,
        &VideoOptions {
            split: "train".into(),
            every: 1,
        },
        |item| {
            match item {
                Ok(_) => kept += 1,
                Err(q) => quarantined.push(q),
            }
            Ok(())
        },
    )
    .expect("ingest");
    assert!(kept > 0 && kept < 38, "{summary:?}");
    let [q] = quarantined.as_slice() else {
        panic!("one item quarantined: {quarantined:?}");
    };
    assert!(
        q.file.ends_with("cut.mp4") && q.reason.contains("of the 38 frames"),
        "{q}"
    );
}
