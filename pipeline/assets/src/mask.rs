//! Instance masks rasterised exactly as pycocotools' `COCO.annToMask` does.
//!
//! The rasterisation is hotcoco's port of `maskApi.c`, not our own: polygon scan conversion has
//! rounding rules (vertices upsampled by 5, half-pixel tests) that decide every edge pixel, and a
//! cut-out that differs from the masks the rest of the ecosystem sees by a pixel ring would shift
//! areas and box statistics. The integration tests compare against pycocotools itself.

use hotcoco::mask as coco_mask;
use roadsynth_types::{Mask, RleCounts};

/// Why a mask could not be rasterised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaskError {
    #[error("RLE size {rle_width}x{rle_height} differs from the {width}x{height} image")]
    SizeMismatch {
        rle_width: u32,
        rle_height: u32,
        width: u32,
        height: u32,
    },
    #[error("mask does not decode: {0}")]
    Undecodable(String),
}

/// A binary mask over a whole image, row-major, one byte (0 or 1) per pixel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryMask {
    width: u32,
    height: u32,
    data: Vec<u8>,
}

/// A pixel rectangle, `x0..x1` by `y0..y1` (ends exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelRect {
    pub x0: u32,
    pub y0: u32,
    pub x1: u32,
    pub y1: u32,
}

impl PixelRect {
    pub fn width(&self) -> u32 {
        self.x1 - self.x0
    }

    pub fn height(&self) -> u32 {
        self.y1 - self.y0
    }

    pub fn area(&self) -> u64 {
        u64::from(self.width()) * u64::from(self.height())
    }
}

impl BinaryMask {
    /// An empty mask.
    pub fn new(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            data: vec![0; width as usize * height as usize],
        }
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    /// Row-major pixels, 0 or 1.
    pub fn as_raw(&self) -> &[u8] {
        &self.data
    }

    pub fn get(&self, x: u32, y: u32) -> bool {
        self.data[y as usize * self.width as usize + x as usize] != 0
    }

    /// Foreground pixels.
    pub fn area(&self) -> u64 {
        self.data.iter().map(|&v| u64::from(v)).sum()
    }

    /// The tight box of the foreground, `None` when the mask is empty.
    pub fn bounds(&self) -> Option<PixelRect> {
        let w = self.width as usize;
        if w == 0 {
            return None;
        }
        let mut rect: Option<PixelRect> = None;
        for (y, row) in self.data.chunks_exact(w).enumerate() {
            let Some(first) = row.iter().position(|&v| v != 0) else {
                continue;
            };
            let last = row.iter().rposition(|&v| v != 0).unwrap_or(first);
            let (y, first, last) = (y as u32, first as u32, last as u32);
            rect = Some(match rect {
                None => PixelRect {
                    x0: first,
                    y0: y,
                    x1: last + 1,
                    y1: y + 1,
                },
                Some(r) => PixelRect {
                    x0: r.x0.min(first),
                    y0: r.y0,
                    x1: r.x1.max(last + 1),
                    y1: y + 1,
                },
            });
        }
        rect
    }

    /// Sets every pixel that is set in `other` (same size).
    pub fn union_with(&mut self, other: &BinaryMask) {
        assert_eq!(
            (self.width, self.height),
            (other.width, other.height),
            "masks of different sizes"
        );
        for (a, &b) in self.data.iter_mut().zip(&other.data) {
            *a |= b;
        }
    }

    /// From hotcoco's column-major decode (pixel `(x, y)` at `y + h * x`).
    fn from_column_major(column_major: &[u8], width: u32, height: u32) -> Self {
        let (w, h) = (width as usize, height as usize);
        let mut data = vec![0u8; w * h];
        for (x, column) in column_major.chunks_exact(h.max(1)).take(w).enumerate() {
            for (y, &v) in column.iter().enumerate() {
                data[y * w + x] = u8::from(v != 0);
            }
        }
        Self {
            width,
            height,
            data,
        }
    }
}

/// Rasterises an annotation's mask for a `width x height` image as `COCO.annToMask` does:
/// polygons become one RLE each (`frPyObjects`), merged by union (`merge`), then decoded; an RLE,
/// run list or compressed string, is decoded as it is. An RLE whose size differs from the image
/// is refused (`annToMask` would return a mask of the RLE's size, which cannot be cut from this
/// image).
pub fn rasterize(mask: &Mask, width: u32, height: u32) -> Result<BinaryMask, MaskError> {
    let undecodable = |e: hotcoco::Error| MaskError::Undecodable(e.to_string());
    let rle = match mask {
        Mask::Polygons(polygons) => {
            coco_mask::fr_polys(polygons, height, width).map_err(undecodable)?
        }
        Mask::Rle(rle) => {
            let [rle_height, rle_width] = rle.size;
            if (rle_width, rle_height) != (width, height) {
                return Err(MaskError::SizeMismatch {
                    rle_width,
                    rle_height,
                    width,
                    height,
                });
            }
            match &rle.counts {
                RleCounts::Runs(runs) => coco_mask::RleRef::Runs {
                    counts: runs,
                    h: height,
                    w: width,
                },
                RleCounts::Compressed(text) => coco_mask::RleRef::Compressed {
                    counts: text,
                    h: height,
                    w: width,
                },
            }
            .to_rle()
            .map_err(undecodable)?
        }
    };
    Ok(BinaryMask::from_column_major(
        &coco_mask::decode(&rle),
        width,
        height,
    ))
}
