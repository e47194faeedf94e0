//! `roadsynth scenario preview`: planned boxes, horizon and depth bands over a few frames, as PNGs
//! and a Rerun recording, so a scenario author sees what a change does in seconds.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use roadsynth_dataset::{Dataset, Projection};
use roadsynth_inspect::{LabelledBox, PlanOverlay, Recording, draw_plan};
use roadsynth_placement::{PlanOptions, PlanRow, dataset_geometry, plan_dataset};
use roadsynth_types::BBox;

/// Depths at which bands are drawn, metres.
const BAND_DEPTHS_M: [f64; 4] = [5.0, 10.0, 20.0, 40.0];

pub fn preview(scenario_path: &Path, dataset_root: &Path, frames: usize, out: &Path) -> Result<()> {
    let scenario = roadsynth_scenario::load(scenario_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let options = PlanOptions {
        max_frames: Some(frames),
        ..PlanOptions::default()
    };
    let (rows, _) = plan_dataset(dataset_root, &scenario, &options, None).with_context(|| {
        format!(
            "planning {} over {}",
            scenario_path.display(),
            dataset_root.display()
        )
    })?;
    let mut planned: HashMap<&str, Vec<&PlanRow>> = HashMap::new();
    for r in rows.iter().filter(|r| r.variant == 0) {
        planned.entry(r.frame_id.as_str()).or_default().push(r);
    }
    let dataset = Dataset::open(dataset_root)?;
    let (geometry, _) = dataset_geometry(&dataset, &scenario.splits, &options.fit)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let recording = Recording::create("roadsynth-preview", &out.join("preview.rrd"))?;

    let mut shown = 0;
    for split in scenario
        .splits
        .iter()
        .filter(|s| dataset.manifest().splits.contains_key(*s))
    {
        for record in dataset
            .frames(split, Projection::Full)?
            .take(frames - shown)
        {
            let record = record?;
            let bytes = record
                .image
                .as_deref()
                .context("frame read without image bytes")?;
            let image = image::load_from_memory(bytes)
                .with_context(|| format!("decoding frame {}", record.frame.id))?
                .into_rgb8();
            let ground = geometry.for_frame(&record.frame);
            let overlay = PlanOverlay {
                real: record
                    .annotations
                    .iter()
                    .filter(|a| !a.ignore)
                    .map(|a| LabelledBox {
                        bbox: a.bbox,
                        label: a.class.clone(),
                    })
                    .collect(),
                planned: planned
                    .get(record.frame.id.as_str())
                    .into_iter()
                    .flatten()
                    .map(|r| LabelledBox {
                        bbox: BBox::new(r.x0, r.y0, r.x1, r.y1),
                        label: format!("{} {:.0} m", r.class, r.depth_m.unwrap_or(f64::NAN)),
                    })
                    .collect(),
                horizon_row: Some(ground.horizon_row),
                depth_bands: BAND_DEPTHS_M
                    .iter()
                    .map(|&z| (ground.row_at_depth(z), z))
                    .collect(),
            };
            let png = out.join(format!("{shown:03}-{}.png", record.frame.id));
            draw_plan(&image, &overlay)
                .save(&png)
                .with_context(|| format!("writing {}", png.display()))?;
            recording.log_plan(shown as i64, bytes, record.frame.width, &overlay)?;
            shown += 1;
        }
    }
    recording.finish()?;
    println!(
        "previewed {shown} frames into {} (PNGs and preview.rrd)",
        out.display()
    );
    Ok(())
}
