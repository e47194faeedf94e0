//! Ground masks cached as PNGs beside the dataset, so planning reads them instead of recomputing.

use std::path::{Path, PathBuf};

use image::{DynamicImage, GrayImage};
use roadsynth_types::FrameId;

use crate::{DrivableMask, GeometryError, GroundMasks, MaskSource};

/// Pixel bit of drivable pixels in a cached PNG.
const DRIVABLE_BIT: u8 = 0x80;
/// Pixel bit of roadside pixels in a cached PNG.
const ROADSIDE_BIT: u8 = 0x40;

/// A folder of cached ground masks: `<root>/<source>/<frame id>.png`, where `<source>` is
/// [`MaskSource::cache_key`] (`labels`, `model-<name>`, `horizon`).
///
/// Each PNG is 8-bit grayscale at the frame's size holding both masks as bits: 128 drivable, 64
/// roadside (192 both), so the files also view as images. Frame ids are hashes of the image bytes,
/// so a cache stays valid across dataset versions. Writes are atomic (temporary file, rename).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskCache {
    root: PathBuf,
}

impl MaskCache {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The cache of a dataset folder (the one holding `versions/`): `<dataset>/cache/masks`.
    pub fn for_dataset(dataset_root: &Path) -> Self {
        Self::new(dataset_root.join("cache").join("masks"))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the masks of `frame_id` from `source` are cached.
    pub fn path(&self, source: &MaskSource, frame_id: &FrameId) -> PathBuf {
        self.root
            .join(source.cache_key())
            .join(format!("{}.png", frame_id.as_str()))
    }

    /// Writes (or replaces) the cached masks of a frame; returns the file's path.
    pub fn write(&self, frame_id: &FrameId, masks: &GroundMasks) -> Result<PathBuf, GeometryError> {
        let (w, h) = (masks.drivable.width, masks.drivable.height);
        if (masks.roadside.width, masks.roadside.height) != (w, h) {
            return Err(GeometryError::SizeMismatch {
                mask_width: masks.roadside.width,
                mask_height: masks.roadside.height,
                width: w,
                height: h,
            });
        }
        let pixels: Vec<u8> = masks
            .drivable
            .bits
            .iter()
            .zip(&masks.roadside.bits)
            .map(|(&d, &r)| {
                (if d != 0 { DRIVABLE_BIT } else { 0 }) | (if r != 0 { ROADSIDE_BIT } else { 0 })
            })
            .collect();
        let path = self.path(&masks.source, frame_id);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| GeometryError::CacheIo { path, source }
        };
        let image =
            GrayImage::from_raw(w, h, pixels).ok_or_else(|| GeometryError::CacheFormat {
                path: path.clone(),
                reason: format!("mask buffer does not match {w}x{h}"),
            })?;
        let dir = path.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let tmp = path.with_extension(format!("png.tmp-{}", std::process::id()));
        image
            .save_with_format(&tmp, image::ImageFormat::Png)
            .map_err(|e| GeometryError::CacheFormat {
                path: tmp.clone(),
                reason: e.to_string(),
            })?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        Ok(path)
    }

    /// The cached masks of a frame from `source`, or `None` when not cached.
    pub fn read(
        &self,
        frame_id: &FrameId,
        source: &MaskSource,
    ) -> Result<Option<GroundMasks>, GeometryError> {
        let path = self.path(source, frame_id);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(GeometryError::CacheIo { path, source }),
        };
        let bad = |reason: String| GeometryError::CacheFormat {
            path: path.clone(),
            reason,
        };
        let decoded = image::load_from_memory_with_format(&bytes, image::ImageFormat::Png)
            .map_err(|e| bad(e.to_string()))?;
        let DynamicImage::ImageLuma8(image) = decoded else {
            return Err(bad(format!(
                "expected an 8-bit grayscale PNG, found {:?}",
                decoded.color()
            )));
        };
        let (width, height) = image.dimensions();
        let raw = image.as_raw();
        let plane = |bit: u8| DrivableMask {
            width,
            height,
            bits: raw.iter().map(|&p| u8::from(p & bit != 0)).collect(),
        };
        Ok(Some(GroundMasks {
            drivable: plane(DRIVABLE_BIT),
            roadside: plane(ROADSIDE_BIT),
            source: source.clone(),
        }))
    }

    /// The first cached masks of a frame among `sources`, in their order (best source first).
    pub fn read_first(
        &self,
        frame_id: &FrameId,
        sources: &[MaskSource],
    ) -> Result<Option<GroundMasks>, GeometryError> {
        for source in sources {
            if let Some(masks) = self.read(frame_id, source)? {
                return Ok(Some(masks));
            }
        }
        Ok(None)
    }
}
