use std::collections::HashMap;
use std::path::Path;

use rayon::prelude::*;
use roadsynth_types::{
    Annotation, BBox, Frame, FrameId, FrameRecord, Mask, Provenance, QuarantineKind, Quarantined,
};

use crate::files::quarantine;
use crate::pending::PendingFrame;
use crate::{PendingAnnotation, image_probe};

/// How thoroughly [`load`] checks images.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Decode every image fully instead of only checking its header and end (several times
    /// slower; catches corruption inside the compressed data).
    pub verify_decode: bool,
}

/// Reads and checks a frame's image and boxes.
///
/// Any problem quarantines the whole frame, and every problem is reported, one record each: a
/// frame whose bad labels were dropped would teach that the object is background.
pub fn load(pending: PendingFrame, opts: &LoadOptions) -> Result<FrameRecord, Vec<Quarantined>> {
    let mut problems = pending.label_errors;
    let split = pending.split.as_str();
    let bad_image = |path: &Path, reason: String| {
        quarantine(path, None, split, QuarantineKind::BadImage, reason)
    };

    let image = match std::fs::read(&pending.image_path) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            problems.push(match &pending.label_file {
                Some(label_file) if e.kind() == std::io::ErrorKind::NotFound => quarantine(
                    label_file,
                    None,
                    split,
                    QuarantineKind::LabelWithoutImage,
                    format!("image {} does not exist", pending.image_path.display()),
                ),
                _ => bad_image(&pending.image_path, format!("cannot read image: {e}")),
            });
            None
        }
    };
    let probed = image.as_deref().and_then(|bytes| {
        let checked = image_probe::probe(bytes).and_then(|probed| {
            if opts.verify_decode {
                image_probe::decode_check(bytes)?;
            }
            Ok(probed)
        });
        checked
            .map_err(|e| problems.push(bad_image(&pending.image_path, e.to_string())))
            .ok()
    });

    let mut annotations = Vec::with_capacity(pending.annotations.len());
    if let Some((_, width, height)) = probed {
        if let Some((declared_width, declared_height)) = pending.expected_size
            && (declared_width, declared_height) != (width, height)
        {
            let declared_in = pending.label_file.as_deref().unwrap_or(&pending.image_path);
            problems.push(quarantine(
                declared_in,
                None,
                split,
                QuarantineKind::Malformed,
                format!(
                    "labels declare {declared_width}x{declared_height} for {}, the image is {width}x{height}",
                    pending.image_name
                ),
            ));
        }
        for PendingAnnotation {
            mut annotation,
            loc,
        } in pending.annotations
        {
            if pending.normalized_coords {
                scale_to_pixels(&mut annotation, width, height);
            }
            match annotation.bbox.validated(width, height) {
                Ok(bbox) => {
                    annotation.bbox = bbox;
                    annotations.push(annotation);
                }
                Err(e) => {
                    let reason = match &loc.entry {
                        Some(entry) => format!("{entry} ({}): {e}", annotation.class),
                        None => format!("{}: {e}", annotation.class),
                    };
                    problems.push(quarantine(&loc.file, loc.line, split, (&e).into(), reason));
                }
            }
        }
    }

    let semantic_label = pending.semantic_label_path.as_deref().and_then(|path| {
        let checked = std::fs::read(path)
            .map_err(|e| format!("cannot read semantic label: {e}"))
            .and_then(|bytes| match image_probe::probe(&bytes) {
                Ok(_) => Ok(bytes),
                Err(e) => Err(format!("semantic label: {e}")),
            });
        checked
            .map_err(|reason| problems.push(bad_image(path, reason)))
            .ok()
    });

    let (Some(image), Some((image_format, width, height)), true) =
        (image, probed, problems.is_empty())
    else {
        // A problem with one box costs the whole frame: each says which frame went.
        for p in &mut problems {
            if !p.reason.contains(&pending.image_name) {
                p.reason = format!("{}; frame {} left out", p.reason, pending.image_name);
            }
        }
        return Err(problems);
    };
    let frame = Frame {
        id: FrameId::from_image_bytes(&image),
        split: pending.split,
        // Canonical, so the same file ingested through different relative paths gives the same bytes.
        source_uri: std::fs::canonicalize(&pending.image_path)
            .or_else(|_| std::path::absolute(&pending.image_path))
            .unwrap_or(pending.image_path)
            .to_string_lossy()
            .into_owned(),
        image_name: pending.image_name,
        image_format,
        width,
        height,
        camera: pending.camera,
        semantic_label: pending.semantic_label_name,
        sequence: pending.sequence,
        timestamp_ms: pending.timestamp_ms,
        attributes: pending.attributes,
        provenance: Provenance {
            source_format: pending.source_format.to_string(),
            parent: None,
            steps: Vec::new(),
        },
    };
    Ok(FrameRecord {
        frame,
        annotations,
        image: Some(image),
        semantic_label,
    })
}

/// Box and polygon coordinates from units of the image size to pixels.
fn scale_to_pixels(annotation: &mut Annotation, width: u32, height: u32) {
    let (w, h) = (f64::from(width), f64::from(height));
    let b = annotation.bbox;
    annotation.bbox = BBox::new(b.x0 * w, b.y0 * h, b.x1 * w, b.y1 * h);
    if let Some(Mask::Polygons(polygons)) = &mut annotation.mask {
        for polygon in polygons {
            for (i, v) in polygon.iter_mut().enumerate() {
                *v *= if i % 2 == 0 { w } else { h };
            }
        }
    }
}

/// Loads frames in parallel, `chunk` at a time, and hands each result to `sink` in input order.
///
/// Loading runs ahead of the sink by at most one chunk, on a named thread that fans each chunk out
/// over the rayon pool, so that reading and checking the next chunk overlaps with whatever the
/// sink does with this one (typically writing Parquet: half the time of an ingest, which ran
/// after the loading rather than beside it). At most three chunks are held at once.
///
/// An image whose bytes equal those of an earlier frame of this call is quarantined as a
/// duplicate (frame ids are the hash of the bytes, so both cannot be stored). A `sink` error
/// stops loading and is returned.
pub fn load_all<E>(
    frames: Vec<PendingFrame>,
    opts: &LoadOptions,
    chunk: usize,
    mut sink: impl FnMut(Result<FrameRecord, Vec<Quarantined>>) -> Result<(), E>,
) -> Result<(), E> {
    type Loaded = Vec<Result<FrameRecord, Vec<Quarantined>>>;
    let mut first_seen: HashMap<FrameId, String> = HashMap::new();
    let mut remaining = frames.into_iter();
    let batches = std::iter::from_fn(move || {
        let batch: Vec<PendingFrame> = remaining.by_ref().take(chunk.max(1)).collect();
        (!batch.is_empty()).then_some(batch)
    });
    let load_chunk = |batch: Vec<PendingFrame>| -> Loaded {
        batch
            .into_par_iter()
            .map(|pending| load(pending, opts))
            .collect()
    };
    if rayon::current_thread_index().is_some() {
        // Called from a rayon worker, which would wait here for a loader that needs the pool:
        // were every worker of the pool to do so, nothing would load. Load and sink in turn.
        for batch in batches {
            sink_chunk(load_chunk(batch), &mut first_seen, &mut sink)?;
        }
        return Ok(());
    }
    std::thread::scope(|scope| {
        // Capacity 1: one chunk waiting while the sink works through another and the loader
        // fills a third.
        let (loaded_tx, loaded_rx) = std::sync::mpsc::sync_channel::<Loaded>(1);
        let loader = std::thread::Builder::new()
            .name("ingest-loader".into())
            .spawn_scoped(scope, move || {
                for batch in batches {
                    // The sink stopped (an error): nothing more is wanted.
                    if loaded_tx.send(load_chunk(batch)).is_err() {
                        return;
                    }
                }
            })
            // Spawning fails only when the system is out of threads; loading cannot go on.
            .expect("spawn the ingest loader thread");
        let sunk = (|| {
            for results in &loaded_rx {
                sink_chunk(results, &mut first_seen, &mut sink)?;
            }
            Ok(())
        })();
        // Dropping the receiver ends a loader that is still running (after a sink error).
        drop(loaded_rx);
        if let Err(panic) = loader.join() {
            std::panic::resume_unwind(panic);
        }
        sunk
    })
}

/// Hands one loaded chunk to the sink, in order, quarantining images seen before.
fn sink_chunk<E>(
    results: Vec<Result<FrameRecord, Vec<Quarantined>>>,
    first_seen: &mut HashMap<FrameId, String>,
    sink: &mut impl FnMut(Result<FrameRecord, Vec<Quarantined>>) -> Result<(), E>,
) -> Result<(), E> {
    for result in results {
        let result = result.and_then(|record| {
            if let Some(first) = first_seen.get(&record.frame.id) {
                return Err(vec![Quarantined {
                    file: record.frame.source_uri.clone(),
                    line: None,
                    column: None,
                    split: record.frame.split.clone(),
                    kind: QuarantineKind::Duplicate,
                    reason: format!("same image bytes as {first} (frame {})", record.frame.id),
                }]);
            }
            first_seen.insert(record.frame.id.clone(), record.frame.source_uri.clone());
            Ok(record)
        });
        sink(result)?;
    }
    Ok(())
}
