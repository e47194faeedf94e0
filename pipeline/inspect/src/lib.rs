//! Inspection: Rerun recordings and PNG previews of what each stage did.
//!
//! Real boxes are green, planned (generated) boxes orange, the horizon blue and depth bands white,
//! in both the PNGs and the Rerun recording (where an annotation context names the classes).
//!
//! [`Recording`] is the scenario preview's recording; [`RunRecording`] records whole runs
//! (augmentation, evaluation, training scalars) with bounded viewer memory.

mod encode;
mod run;

pub use encode::ImageRef;
pub use run::{
    AugmentedFrame, BoxKind, IGNORED_COLOUR, MASK_ALPHA, PREDICTED_COLOUR, Prediction, RateLimit,
    RecordingConfig, RecordingStats, RunRecording, WeatherMap, paths, timelines,
};

use std::path::Path;

use image::{Rgb, RgbImage};
use rerun::{
    AnnotationContext, Boxes2D, EncodedImage, LineStrips2D, RecordingStream,
    RecordingStreamBuilder, Rgba32,
};
use roadsynth_types::BBox;

pub const REAL_COLOUR: [u8; 3] = [60, 220, 90];
pub const PLANNED_COLOUR: [u8; 3] = [255, 150, 30];
pub const HORIZON_COLOUR: [u8; 3] = [70, 140, 255];
pub const BAND_COLOUR: [u8; 3] = [240, 240, 240];

/// Annotation-context class ids.
const CLASS_REAL: u16 = 1;
const CLASS_PLANNED: u16 = 2;

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("rerun recording {path}: {message}")]
    Recording { path: String, message: String },
    #[error("rerun viewer {url}: {message}")]
    Viewer { url: String, message: String },
    #[error("{0}")]
    Config(String),
    #[error("{what}: {source}")]
    Image {
        what: String,
        #[source]
        source: image::ImageError,
    },
    #[error("{what} is {got:?} pixels where the frame is {expected:?}")]
    Size {
        what: String,
        expected: (u32, u32),
        got: (u32, u32),
    },
}

/// A labelled box to draw.
#[derive(Debug, Clone)]
pub struct LabelledBox {
    pub bbox: BBox,
    pub label: String,
}

/// What a planning preview shows for one frame.
#[derive(Debug, Clone)]
pub struct PlanOverlay {
    pub real: Vec<LabelledBox>,
    pub planned: Vec<LabelledBox>,
    /// Horizon row, when the geometry has one.
    pub horizon_row: Option<f64>,
    /// `(row, depth in metres)` of ground-plane depth bands.
    pub depth_bands: Vec<(f64, f64)>,
}

fn hline(img: &mut RgbImage, y: f64, colour: [u8; 3]) {
    let y = y.round();
    if y < 0.0 || y >= f64::from(img.height()) {
        return;
    }
    for x in 0..img.width() {
        img.put_pixel(x, y as u32, Rgb(colour));
    }
}

fn rect(img: &mut RgbImage, b: &BBox, colour: [u8; 3]) {
    let (w, h) = (f64::from(img.width()), f64::from(img.height()));
    let x0 = b.x0.clamp(0.0, w - 1.0) as u32;
    let x1 = (b.x1 - 1.0).clamp(0.0, w - 1.0) as u32;
    let y0 = b.y0.clamp(0.0, h - 1.0) as u32;
    let y1 = (b.y1 - 1.0).clamp(0.0, h - 1.0) as u32;
    for t in 0..2 {
        for x in x0..=x1 {
            img.put_pixel(x, (y0 + t).min(y1), Rgb(colour));
            img.put_pixel(x, y1.saturating_sub(t).max(y0), Rgb(colour));
        }
        for y in y0..=y1 {
            img.put_pixel((x0 + t).min(x1), y, Rgb(colour));
            img.put_pixel(x1.saturating_sub(t).max(x0), y, Rgb(colour));
        }
    }
}

/// Draws the overlay onto a copy of the frame.
pub fn draw_plan(frame: &RgbImage, overlay: &PlanOverlay) -> RgbImage {
    let mut img = frame.clone();
    for (row, _) in &overlay.depth_bands {
        hline(&mut img, *row, BAND_COLOUR);
    }
    if let Some(v0) = overlay.horizon_row {
        hline(&mut img, v0, HORIZON_COLOUR);
    }
    for b in &overlay.real {
        rect(&mut img, &b.bbox, REAL_COLOUR);
    }
    for b in &overlay.planned {
        rect(&mut img, &b.bbox, PLANNED_COLOUR);
    }
    img
}

/// A Rerun recording written to an `.rrd` file.
#[derive(Debug)]
pub struct Recording {
    stream: RecordingStream,
    path: String,
}

fn rgba(c: [u8; 3]) -> Rgba32 {
    Rgba32::from_rgb(c[0], c[1], c[2])
}

impl Recording {
    /// Creates `path` and logs the annotation context (class names and colours).
    pub fn create(application: &'static str, path: &Path) -> Result<Self, InspectError> {
        let display = path.display().to_string();
        let err = |e: &dyn std::fmt::Display| InspectError::Recording {
            path: display.clone(),
            message: e.to_string(),
        };
        let stream = RecordingStreamBuilder::new(application)
            .save(path)
            .map_err(|e| err(&e))?;
        stream
            .log_static(
                "/",
                &AnnotationContext::new([
                    (CLASS_REAL, "real", rgba(REAL_COLOUR)),
                    (CLASS_PLANNED, "planned", rgba(PLANNED_COLOUR)),
                ]),
            )
            .map_err(|e| err(&e))?;
        Ok(Self {
            stream,
            path: display,
        })
    }

    fn err(&self, e: &dyn std::fmt::Display) -> InspectError {
        InspectError::Recording {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    /// Logs one frame of a planning preview under `frames/` at time step `index`: the encoded image
    /// as it is stored, real and planned boxes, horizon and depth bands.
    pub fn log_plan(
        &self,
        index: i64,
        encoded_image: &[u8],
        width: u32,
        overlay: &PlanOverlay,
    ) -> Result<(), InspectError> {
        let s = &self.stream;
        s.set_time_sequence("frame", index);
        s.log(
            "frames/image",
            &EncodedImage::from_file_contents(encoded_image.to_vec()),
        )
        .map_err(|e| self.err(&e))?;
        let boxes = |list: &[LabelledBox], class: u16| {
            Boxes2D::from_mins_and_sizes(
                list.iter().map(|b| (b.bbox.x0 as f32, b.bbox.y0 as f32)),
                list.iter()
                    .map(|b| (b.bbox.width() as f32, b.bbox.height() as f32)),
            )
            .with_labels(list.iter().map(|b| b.label.clone()))
            .with_class_ids(list.iter().map(|_| class))
        };
        s.log("frames/image/real", &boxes(&overlay.real, CLASS_REAL))
            .map_err(|e| self.err(&e))?;
        s.log(
            "frames/image/planned",
            &boxes(&overlay.planned, CLASS_PLANNED),
        )
        .map_err(|e| self.err(&e))?;
        let w = width as f32;
        if let Some(v0) = overlay.horizon_row {
            let v0 = v0 as f32;
            s.log(
                "frames/image/horizon",
                &LineStrips2D::new([[(0.0, v0), (w, v0)]]).with_colors([rgba(HORIZON_COLOUR)]),
            )
            .map_err(|e| self.err(&e))?;
        }
        let bands = LineStrips2D::new(
            overlay
                .depth_bands
                .iter()
                .map(|(row, _)| [(0.0, *row as f32), (w, *row as f32)]),
        )
        .with_labels(overlay.depth_bands.iter().map(|(_, z)| format!("{z:.0} m")))
        .with_colors(overlay.depth_bands.iter().map(|_| rgba(BAND_COLOUR)));
        s.log("frames/image/depth_bands", &bands)
            .map_err(|e| self.err(&e))?;
        Ok(())
    }

    /// Flushes everything to the file.
    pub fn finish(self) -> Result<(), InspectError> {
        self.stream.flush_blocking().map_err(|e| self.err(&e))
    }
}
