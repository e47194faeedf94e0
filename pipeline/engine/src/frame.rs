//! The frame an operation works on, and the pixels of the objects already in it.

use image::{GrayImage, RgbImage};
use roadsynth_types::Annotation;
use serde::{Deserialize, Serialize};

use crate::EngineError;
use crate::raster::PixelRect;

/// One frame as the engine sees it: decoded pixels, its annotations and, when the dataset has
/// them, its semantic labels.
#[derive(Debug, Clone, Copy)]
pub struct FrameInput<'a> {
    pub image: &'a RgbImage,
    /// Every annotation of the frame (real and generated); kept unchanged in the output except for
    /// attributes that record what an operation did to them.
    pub annotations: &'a [Annotation],
    /// Per-pixel class ids of the frame's semantic labels (`CamVid`'s 0..=11), same size as
    /// `image`. Used for the pixels of existing objects that have a box but no instance mask.
    pub semantic: Option<&'a GrayImage>,
}

impl<'a> FrameInput<'a> {
    pub fn new(image: &'a RgbImage, annotations: &'a [Annotation]) -> Self {
        Self {
            image,
            annotations,
            semantic: None,
        }
    }

    #[must_use]
    pub fn with_semantic(mut self, semantic: Option<&'a GrayImage>) -> Self {
        self.semantic = semantic;
        self
    }

    pub fn width(&self) -> u32 {
        self.image.width()
    }

    pub fn height(&self) -> u32 {
        self.image.height()
    }

    pub(crate) fn validate(&self) -> Result<(), EngineError> {
        let (w, h) = self.image.dimensions();
        if w == 0 || h == 0 {
            return Err(EngineError::Frame(format!("the image is empty ({w}x{h})")));
        }
        if let Some(s) = self.semantic
            && s.dimensions() != (w, h)
        {
            return Err(EngineError::Frame(format!(
                "semantic labels are {}x{}, the image {w}x{h}",
                s.width(),
                s.height()
            )));
        }
        Ok(())
    }
}

/// Which semantic-label ids are movable objects (the things annotations box), so that their pixels
/// inside an annotation's box can stand for its mask. The default is `CamVid`'s (the 11-class
/// `SegNet` version): 8 car, 9 pedestrian, 10 bicyclist. Static classes (poles, fences, signs) are
/// left out: without depth there is no telling whether they stand in front.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SemanticObjects {
    pub ids: Vec<u8>,
}

impl Default for SemanticObjects {
    fn default() -> Self {
        Self {
            ids: vec![8, 9, 10],
        }
    }
}

/// Where the pixels of an existing object came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PixelSource {
    /// Its own instance mask.
    InstanceMask,
    /// The semantic labels' object pixels inside its box.
    SemanticLabels,
}

/// The pixels of one existing object, over a rectangle of the frame.
#[derive(Debug, Clone)]
pub(crate) struct ObjectPixels {
    pub rect: PixelRect,
    /// Row-major over `rect`, nonzero = the object.
    pub bits: Vec<u8>,
    pub source: PixelSource,
}

impl ObjectPixels {
    pub fn contains(&self, x: u32, y: u32) -> bool {
        x >= self.rect.x0
            && x < self.rect.x1
            && y >= self.rect.y0
            && y < self.rect.y1
            && self.bits[self.rect.index(x, y)] != 0
    }
}

/// The pixels of a frame's existing objects, worked out once per object and only when asked.
/// An object with neither an instance mask nor semantic labels has no pixels: a box alone never
/// cuts a rectangular hole into anything.
#[derive(Debug)]
pub(crate) struct ExistingObjects<'a> {
    frame: FrameInput<'a>,
    semantic: &'a SemanticObjects,
    cache: Vec<Cached>,
}

/// What is known about an object's pixels.
#[derive(Debug, Clone)]
enum Cached {
    NotYet,
    /// Neither a mask nor semantic labels say which pixels are the object's.
    Unknown,
    Known(ObjectPixels),
}

impl<'a> ExistingObjects<'a> {
    pub fn new(frame: FrameInput<'a>, semantic: &'a SemanticObjects) -> Self {
        Self {
            frame,
            semantic,
            cache: vec![Cached::NotYet; frame.annotations.len()],
        }
    }

    /// Indices of the annotations that stand nearer than a foot row (their box bottom is lower in
    /// the image, so on flat ground they are closer) and overlap `rect`.
    pub fn nearer_than(&self, foot_v: f64, rect: &PixelRect) -> Vec<usize> {
        let r = rect.to_bbox();
        self.frame
            .annotations
            .iter()
            .enumerate()
            .filter(|(_, a)| !a.ignore && a.bbox.y1 > foot_v + 0.5 && a.bbox.intersection(&r) > 0.0)
            .map(|(i, _)| i)
            .collect()
    }

    /// The pixels of annotation `index`, or `None` when nothing says which they are.
    pub fn pixels(&mut self, index: usize) -> Option<&ObjectPixels> {
        if matches!(self.cache[index], Cached::NotYet) {
            self.cache[index] = match self.compute(index) {
                Some(px) => Cached::Known(px),
                None => Cached::Unknown,
            };
        }
        match &self.cache[index] {
            Cached::Known(px) => Some(px),
            Cached::NotYet | Cached::Unknown => None,
        }
    }

    fn compute(&self, index: usize) -> Option<ObjectPixels> {
        let a = &self.frame.annotations[index];
        let (w, h) = (self.frame.width(), self.frame.height());
        let rect = PixelRect::covering(&a.bbox, 1.0, w, h);
        if rect.is_empty() {
            return None;
        }
        if let Some(mask) = &a.mask {
            match roadsynth_assets::mask::rasterize(mask, w, h) {
                Ok(full) => {
                    let mut bits = Vec::with_capacity(rect.area());
                    for y in rect.y0..rect.y1 {
                        for x in rect.x0..rect.x1 {
                            bits.push(u8::from(full.get(x, y)));
                        }
                    }
                    return Some(ObjectPixels {
                        rect,
                        bits,
                        source: PixelSource::InstanceMask,
                    });
                }
                Err(e) => tracing::debug!("annotation {index}: mask does not rasterise: {e}"),
            }
        }
        let semantic = self.frame.semantic?;
        let inner = PixelRect::covering(&a.bbox, 0.0, w, h);
        let mut bits = Vec::with_capacity(rect.area());
        for y in rect.y0..rect.y1 {
            for x in rect.x0..rect.x1 {
                let inside = x >= inner.x0 && x < inner.x1 && y >= inner.y0 && y < inner.y1;
                let id = semantic.get_pixel(x, y).0[0];
                bits.push(u8::from(inside && self.semantic.ids.contains(&id)));
            }
        }
        Some(ObjectPixels {
            rect,
            bits,
            source: PixelSource::SemanticLabels,
        })
    }
}
